//! Acceptance protocol of the semantic exposure (issue 7), shared by
//! `rawgraph eval-exposure` and tests/exposure_eval.rs.
//!
//! Frames are rendered from synthetic raws: an sRGB photo is linearised,
//! scaled by `2^(offset - 3)` (the nominal capture sits 3 EV under sensor
//! white, so offsets -3..+3 span 2^-6..2^0 of full scale and +3 puts the
//! photo's white at the clipping point), mosaicked through the default
//! camera matrix with Poisson-Gaussian noise at 14 bits
//! ([`crate::synth::mosaic_scene`]), and developed by a pipeline to
//! linear sRGB (black level, as-shot WB, bilinear demosaic, colour matrix);
//! `face_detect` and `sky_segment` run on that frame, then every metering
//! mode meters it.
//!
//! Sets:
//! - `faces`: face/samples photos; the reference faces are SeetaFace's
//!   boxes on the original photo. Error = log2(median luminance of the
//!   reference boxes' central 60 % after the gain / face target).
//! - `camvid`: CamVid val frames with sky labels (every `camvid_step`-th);
//!   clipped sky = labelled sky pixels whose tone-mapped max channel
//!   (filmic, knee 0.6, white point max(1, meter's)) reaches 254.5/255.
//! - `backlit`: the largest face of each sample photo pasted (bottom
//!   centre, 40 % of the height) into one of the four CamVid val frames
//!   with the most sky, scaled so the face's median luminance is 2 EV
//!   below the sky's; both measures apply.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::frame::Value;
use crate::graph::{self, Pipeline, RunOptions};
use crate::stages::exposure::exposure_meter::{meter, MeterMode};
use crate::stages::exposure::face_detect::{FaceDetect, Params as FaceParams};
use crate::stages::exposure::guided_filter::resize_bilinear;
use crate::stages::exposure::tuning::Tuning;
use crate::stages::exposure::{downcast, image_from_srgb8, FaceBox, Faces, SkyMap};
use crate::synth::{mosaic_scene, CaptureParams, LinearImage};
use crate::Image;

/// The development pipeline of the protocol (outputs: linear frame, faces,
/// sky map).
pub const DEVELOP: &str = "version: 1
name: eval_exposure
stages:
  - { id: raw, op: raw_source }
  - { id: bl, op: black_level }
  - { id: wb, op: white_balance, params: { mode: as_shot } }
  - { id: dm, op: demosaic_bilinear }
  - { id: cc, op: color_correct }
  - { id: faces, op: face_detect, in: [cc] }
  - { id: sky, op: sky_segment, in: [cc] }
outputs: [cc, faces, sky]
";

/// EV offsets evaluated.
pub const OFFSETS: [f32; 7] = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0];

/// Metering modes compared.
pub const MODES: [MeterMode; 3] = [
    MeterMode::Semantic,
    MeterMode::Average,
    MeterMode::CentreWeighted,
];

/// One metered case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub set: &'static str,
    pub image: String,
    pub offset_ev: f32,
    pub mode: &'static str,
    pub ev: f32,
    pub white_point: f32,
    pub faces_detected: usize,
    /// Face luminance error after the gain, EV (face sets).
    pub face_error_ev: Option<f32>,
    /// Fraction of labelled sky pixels clipped after tone mapping.
    pub sky_clipped: Option<f32>,
}

/// Per (set, mode) summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub set: &'static str,
    pub mode: &'static str,
    pub cases: usize,
    /// Fraction of face cases within ±1/3 EV.
    pub face_within_third_ev: Option<f32>,
    pub face_mean_abs_error_ev: Option<f32>,
    /// Mean fraction of sky pixels clipped, and the fraction of cases with
    /// at most 1 % clipped.
    pub sky_clipped_mean: Option<f32>,
    pub sky_cases_at_most_1pct: Option<f32>,
}

/// Protocol options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shared data root ($RAWGRAPH_DATA).
    pub data: PathBuf,
    /// Every n-th CamVid val frame.
    pub camvid_step: usize,
    pub tuning: Tuning,
}

/// A scene in linear sRGB plus what is known about it.
struct Scene {
    name: String,
    set: &'static str,
    img: Image,
    faces: Vec<FaceBox>,
    /// Sky label per pixel (CamVid), row-major.
    sky: Option<Vec<bool>>,
}

fn load_rgb8(p: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let im = image::open(p)
        .map_err(|e| Error::decode(p, e.to_string()))?
        .to_rgb8();
    Ok((im.width() as usize, im.height() as usize, im.into_raw()))
}

fn load_label(p: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let im = image::open(p)
        .map_err(|e| Error::decode(p, e.to_string()))?
        .to_luma8();
    Ok((im.width() as usize, im.height() as usize, im.into_raw()))
}

fn sorted(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    v.sort();
    Ok(v)
}

/// A CamVid frame: name, linear image, sky label and labelled mask per
/// pixel (row-major).
pub type CamvidFrame = (String, Image, Vec<bool>, Vec<bool>);

/// CamVid val frames with their sky labels (label 0), every `step`-th.
pub fn camvid_val(data: &Path, step: usize) -> Result<Vec<CamvidFrame>> {
    let dir = data.join("sky/camvid");
    let mut out = Vec::new();
    for (k, p) in sorted(&dir.join("val"), "png")?
        .into_iter()
        .chain(sorted(&dir.join("val"), "jpg")?)
        .enumerate()
    {
        if k % step.max(1) != 0 {
            continue;
        }
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let (w, h, rgb) = load_rgb8(&p)?;
        let lp = dir.join("valannot").join(format!("{stem}.png"));
        let (lw, lh, lab) = load_label(&lp)?;
        if (lw, lh) != (w, h) {
            return Err(Error::invalid(format!(
                "{}: label is {lw}x{lh}, image {w}x{h}",
                lp.display()
            )));
        }
        let sky: Vec<bool> = lab.iter().map(|&l| l == 0).collect();
        let valid: Vec<bool> = lab.iter().map(|&l| l != 11).collect();
        out.push((stem, image_from_srgb8(w, h, &rgb), sky, valid));
    }
    Ok(out)
}

fn scenes(o: &Options) -> Result<Vec<Scene>> {
    // Reference boxes: one pass on the clean photo (no extra pass).
    let det = FaceDetect::new(FaceParams {
        extra_ev: 0.0,
        extra_blur: 0.0,
        ..FaceParams::default()
    })
    .map_err(Error::invalid)?;
    let mut out = Vec::new();
    let faces_dir = o.data.join("face/samples");
    let photos = sorted(&faces_dir, "jpg")?;
    let camvid = camvid_val(&o.data, o.camvid_step)?;
    // Backgrounds for the backlit set: the four frames with most sky
    // (CamVid val skies cover ~8-10 % of a frame).
    let mut skyful: Vec<&CamvidFrame> = camvid.iter().collect();
    skyful.sort_by_key(|c| std::cmp::Reverse(c.2.iter().filter(|&&s| s).count()));
    skyful.truncate(4);
    for (k, p) in photos.iter().enumerate() {
        let (w, h, rgb) = load_rgb8(p)?;
        let img = image_from_srgb8(w, h, &rgb);
        let faces = det.detect(&img)?.boxes;
        let name = p
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if let (Some(big), false) = (
            faces.iter().max_by(|a, b| a.area().total_cmp(&b.area())),
            skyful.is_empty(),
        ) {
            let bg = skyful[k % skyful.len()];
            if let Some(s) = backlit(&name, &img, big, bg) {
                out.push(s);
            }
        }
        out.push(Scene {
            name,
            set: "faces",
            img,
            faces,
            sky: None,
        });
    }
    for (name, img, sky, _) in camvid {
        out.push(Scene {
            name,
            set: "camvid",
            img,
            faces: Vec::new(),
            sky: Some(sky),
        });
    }
    Ok(out)
}

/// Pastes the face `f` of `src` (box expanded 1.6x) into `bg`, bottom
/// centre, 40 % of the frame height, scaled so the face median is 2 EV
/// below the sky median.
fn backlit(name: &str, src: &Image, f: &FaceBox, bg: &CamvidFrame) -> Option<Scene> {
    let (bgi, sky) = (&bg.1, &bg.2);
    let (bw, bh) = (bgi.width, bgi.height);
    let cx = f.x + f.w / 2.0;
    let cy = f.y + f.h / 2.0;
    let half = 0.8 * f.w.max(f.h);
    let x0 = (cx - half).max(0.0) as usize;
    let y0 = (cy - half).max(0.0) as usize;
    let x1 = ((cx + half) as usize).min(src.width);
    let y1 = ((cy + half) as usize).min(src.height);
    if x1 <= x0 + 8 || y1 <= y0 + 8 {
        return None;
    }
    let (cw, ch) = (x1 - x0, y1 - y0);
    let th = bh * 2 / 5;
    let tw = (cw * th / ch).min(bw);
    let (ox, oy) = ((bw - tw) / 2, bh - th);
    let sn = src.plane_len();
    let mut planes = Vec::new();
    for c in 0..3 {
        let crop: Vec<f32> = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| y * src.width + x))
            .map(|i| src.data[c * sn + i])
            .collect();
        planes.push(resize_bilinear(&crop, cw, ch, tw, th));
    }
    // The face box in the pasted crop.
    let s = tw as f32 / cw as f32;
    let fb = FaceBox {
        x: ox as f32 + (f.x - x0 as f32) * s,
        y: oy as f32 + (f.y - y0 as f32) * s,
        w: f.w * s,
        h: f.h * s,
        score: f.score,
        landmarks: None,
    };
    let lum = |r: f32, g: f32, b: f32| crate::color::luminance(r, g, b);
    let n = bw * bh;
    let mut sky_l: Vec<f32> = (0..n)
        .filter(|&i| sky[i])
        .map(|i| lum(bgi.data[i], bgi.data[n + i], bgi.data[2 * n + i]))
        .collect();
    let mut face_l = inner_values(&fb, tw, th, ox, oy, |i| {
        lum(planes[0][i], planes[1][i], planes[2][i])
    });
    let sky_med = median(&mut sky_l);
    let face_med = median(&mut face_l);
    if sky_med <= 0.0 || face_med <= 0.0 {
        return None;
    }
    let k = sky_med / 4.0 / face_med;
    let mut data = bgi.data.clone();
    let mut labels = sky.clone();
    for y in 0..th {
        for x in 0..tw {
            let (i, j) = ((oy + y) * bw + ox + x, y * tw + x);
            for c in 0..3 {
                data[c * n + i] = (planes[c][j] * k).min(1.0);
            }
            labels[i] = false;
        }
    }
    Some(Scene {
        name: format!("{name}+{}", bg.0),
        set: "backlit",
        img: crate::stages::exposure::planar_image(
            bw,
            bh,
            data,
            crate::frame::ColorSpace::LinearSrgb,
        ),
        faces: vec![fb],
        sky: Some(labels),
    })
}

/// Values of `f(index in the crop)` over the central 60 % of `b` (frame
/// coordinates), for a crop `tw x th` placed at (ox, oy).
fn inner_values(
    b: &FaceBox,
    tw: usize,
    th: usize,
    ox: usize,
    oy: usize,
    f: impl Fn(usize) -> f32,
) -> Vec<f32> {
    let mut v = Vec::new();
    for (x, y) in inner_pixels(b) {
        if x >= ox && y >= oy && x < ox + tw && y < oy + th {
            v.push(f((y - oy) * tw + x - ox));
        }
    }
    v
}

/// Pixels of the central 60 % of a box.
fn inner_pixels(b: &FaceBox) -> Vec<(usize, usize)> {
    let m = 0.2;
    let x0 = (b.x + m * b.w).max(0.0) as usize;
    let y0 = (b.y + m * b.h).max(0.0) as usize;
    let x1 = (b.x + (1.0 - m) * b.w).max(0.0) as usize;
    let y1 = (b.y + (1.0 - m) * b.h).max(0.0) as usize;
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .collect()
}

fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let k = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *m
}

/// Renders a scene at an offset through a synthetic raw and develops it.
fn develop(p: &Pipeline, s: &Scene, offset: f32, seed: u64) -> Result<(Image, Faces, SkyMap)> {
    let k = 2f32.powf(offset - 3.0);
    let lin = LinearImage {
        width: s.img.width,
        height: s.img.height,
        data: s.img.data.iter().map(|v| v * k).collect(),
    };
    let cp = CaptureParams {
        bits: 14,
        black: 1024.0,
        seed,
        ..CaptureParams::default()
    };
    let frame = mosaic_scene(&lin, &cp, &s.name)?;
    let out = graph::run(p, frame, &RunOptions::default())?;
    let get = |id: &str| {
        out.outputs
            .iter()
            .find(|(o, _)| o == id)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::invalid(format!("no output {id}")))
    };
    let img = match get("cc")? {
        Value::Image(i) => (*i).clone(),
        v => return Err(Error::invalid(format!("cc is a {}", v.kind()))),
    };
    let faces = downcast::<Faces>(&get("faces")?)
        .cloned()
        .ok_or_else(|| Error::invalid("faces output missing"))?;
    let sky = downcast::<SkyMap>(&get("sky")?)
        .cloned()
        .ok_or_else(|| Error::invalid("sky output missing"))?;
    Ok((img, faces, sky))
}

/// Runs the whole protocol.
pub fn run(o: &Options) -> Result<(Vec<Case>, Vec<Summary>)> {
    let p = Pipeline::from_yaml(DEVELOP, "eval_exposure")?;
    let mut cases = Vec::new();
    for (si, s) in scenes(o)?.iter().enumerate() {
        for (oi, &off) in OFFSETS.iter().enumerate() {
            let (img, faces, sky) = develop(&p, s, off, (si * 31 + oi) as u64 + 1)?;
            let n = img.plane_len();
            let lum: Vec<f32> = (0..n)
                .map(|i| crate::color::luminance(img.data[i], img.data[n + i], img.data[2 * n + i]))
                .collect();
            for mode in MODES {
                let c = meter(&img, Some(&faces), Some(&sky), mode, &o.tuning);
                let gain = 2f32.powf(c.ev);
                let face_error_ev = if s.faces.is_empty() {
                    None
                } else {
                    let mut v: Vec<f32> = s
                        .faces
                        .iter()
                        .flat_map(inner_pixels)
                        .filter(|&(x, y)| x < img.width && y < img.height)
                        .map(|(x, y)| lum[y * img.width + x])
                        .collect();
                    let m = median(&mut v) * gain;
                    Some((m.max(1e-6) / o.tuning.face.target).log2())
                };
                let sky_clipped = match &s.sky {
                    Some(labels) => {
                        let wp = c.white_point.max(1.0);
                        let curve = crate::stages::tone_curve::build(serde_json::json!({
                            "curve": "filmic", "knee": 0.6, "white_point": wp.min(64.0)
                        }))
                        .map_err(|e| Error::invalid(e.to_string()))?;
                        let (mut tot, mut clip) = (0usize, 0usize);
                        for i in (0..n).filter(|&i| labels[i]) {
                            let mx = img.data[i].max(img.data[n + i]).max(img.data[2 * n + i]);
                            tot += 1;
                            if curve.eval(mx * gain) >= 254.5 / 255.0 {
                                clip += 1;
                            }
                        }
                        (tot > 0).then(|| clip as f32 / tot as f32)
                    }
                    None => None,
                };
                cases.push(Case {
                    set: s.set,
                    image: s.name.clone(),
                    offset_ev: off,
                    mode: mode.name(),
                    ev: c.ev,
                    white_point: c.white_point,
                    faces_detected: faces.boxes.len(),
                    face_error_ev,
                    sky_clipped,
                });
            }
        }
    }
    let mut sums = Vec::new();
    for set in ["faces", "backlit", "camvid"] {
        for mode in MODES {
            let cs: Vec<&Case> = cases
                .iter()
                .filter(|c| c.set == set && c.mode == mode.name())
                .collect();
            if cs.is_empty() {
                continue;
            }
            let fe: Vec<f32> = cs.iter().filter_map(|c| c.face_error_ev).collect();
            let sc: Vec<f32> = cs.iter().filter_map(|c| c.sky_clipped).collect();
            let frac = |v: &[f32], f: &dyn Fn(f32) -> bool| {
                (!v.is_empty()).then(|| v.iter().filter(|&&x| f(x)).count() as f32 / v.len() as f32)
            };
            let mean = |v: &[f32]| (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32);
            let abs: Vec<f32> = fe.iter().map(|e| e.abs()).collect();
            sums.push(Summary {
                set,
                mode: mode.name(),
                cases: cs.len(),
                face_within_third_ev: frac(&fe, &|e| e.abs() <= 1.0 / 3.0),
                face_mean_abs_error_ev: mean(&abs),
                sky_clipped_mean: mean(&sc),
                sky_cases_at_most_1pct: frac(&sc, &|x| x <= 0.01),
            });
        }
    }
    Ok((cases, sums))
}

/// The summary as a Markdown table.
pub fn table(sums: &[Summary]) -> String {
    let f = |v: Option<f32>, pct: bool| match v {
        Some(x) if pct => format!("{:.1} %", 100.0 * x),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    };
    let mut s = String::from(
        "| set | metering | cases | faces within ±1/3 EV | mean abs face error (EV) | sky clipped (mean) | cases with ≤ 1 % sky clipped |\n|---|---|---|---|---|---|---|\n",
    );
    for m in sums {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            m.set,
            m.mode,
            m.cases,
            f(m.face_within_third_ev, true),
            f(m.face_mean_abs_error_ev, false),
            f(m.sky_clipped_mean, true),
            f(m.sky_cases_at_most_1pct, true)
        ));
    }
    s
}

/// Sky mask quality on CamVid val.
#[derive(Debug, Clone, Serialize)]
pub struct SkyScore {
    pub model: String,
    pub images: usize,
    /// Dataset IoU of (probability >= 0.5) vs label 0, label 11 ignored.
    pub iou: f32,
    /// Mean wall time of the stage per frame, ms (this machine, loaded or not).
    pub ms_per_frame: f64,
}

/// Scores a `sky_segment` configuration on CamVid val (every `step`-th
/// frame), the map computed at label resolution (`map_side` 480).
pub fn sky_iou(data: &Path, model: &str, step: usize) -> Result<SkyScore> {
    use crate::stages::exposure::sky_segment::{Params, SkySegment};
    let seg = SkySegment::new(Params {
        model: model.to_string(),
        map_side: 480,
        ..Params::default()
    })
    .map_err(Error::invalid)?;
    let (mut inter, mut union, mut ms) = (0u64, 0u64, 0f64);
    let frames = camvid_val(data, step)?;
    for (_, img, sky, valid) in &frames {
        let t0 = std::time::Instant::now();
        let m = seg.segment(img)?;
        ms += t0.elapsed().as_secs_f64() * 1e3;
        let w = img.width;
        for (i, (&gt, &ok)) in sky.iter().zip(valid).enumerate() {
            if !ok {
                continue;
            }
            let pred = m.sample((i % w) as f32 + 0.5, (i / w) as f32 + 0.5) >= 0.5;
            inter += (pred && gt) as u64;
            union += (pred || gt) as u64;
        }
    }
    Ok(SkyScore {
        model: model.to_string(),
        images: frames.len(),
        iou: inter as f32 / union.max(1) as f32,
        ms_per_frame: ms / frames.len().max(1) as f64,
    })
}
