//! Golden tests on the real camera raws in $RAWGRAPH_DATA/raw/real (issue
//! 18, item 6).
//!
//! - `metadata_matches_the_golden_records`: for each file, the decoded
//!   metadata (camera, geometry, levels and where they came from, white
//!   balance and why, capture settings) equals the committed record in
//!   tests/real_raws/<file>.json, as rawler's analyze.yaml records do; a
//!   file that does not decode yet has an expected-error record holding the
//!   exact error, so the test documents the state. `RAWGRAPH_BLESS=1`
//!   rewrites the records (review the diff).
//! - `renders_like_libraw`: each file through `-p default`, against LibRaw
//!   (`dcraw_emu -w -o 1 -T -Z`, installed by .ci/run from libraw-bin) after
//!   exposure normalisation: same size and orientation, luminance SSIM >=
//!   0.98, mean chroma difference (CIELAB a*b*, 8-bit sRGB inputs) <= 3, no
//!   dark or garbage border. Skipped, saying so, without `dcraw_emu`. Known
//!   gaps are listed in `KNOWN_GAPS` with the measured numbers; a gap that
//!   closes fails the test so the list is kept true.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rawgraph::input::{open, Limits};
use rawgraph::{Pipeline, RunOptions, Value};
use serde_json::{json, Value as Json};

/// The corpus (MANIFEST.md in the data folder lists camera and source).
const FILES: &[&str] = &[
    "canon_powershot_g2_CRW_0304.crw",
    "canon_powershot_s40_CRW_0101.crw",
    "gopro_hero6_GOPR0024.gpr",
    "kodak_dc120_P003908.kdc",
    "kodak_dc120_P003911.kdc",
    "kodak_dc50_DC0008L.kdc",
    "kodak_easyshare_c330_RAW_KODAK_C330_FORMAT_NONE_YRGB.raw",
    "lg_g4_h815_sample_1mp.dng",
];

/// An open gap against LibRaw, by file, with why. The render test asserts
/// each still shows (a fix must update this list) and that the numbers do
/// not get worse than the floors measured when it was recorded.
struct Gap {
    file: &'static str,
    /// The file neither decodes nor renders through `-p default`.
    no_render: bool,
    /// Output size differs from LibRaw's.
    size: bool,
    /// Floors for a colour / structure gap: SSIM at least, chroma at most
    /// (the acceptance bounds 0.98 / 3 where there is no such gap).
    min_ssim: f64,
    max_chroma: f64,
    why: &'static str,
}

const fn gap(file: &'static str, why: &'static str) -> Gap {
    Gap {
        file,
        no_render: false,
        size: false,
        min_ssim: 0.98,
        max_chroma: 3.0,
        why,
    }
}

const KNOWN_GAPS: &[Gap] = &[
    // DC120 (8-bit, noisy): decode, CFA phase, WB (gray world, LibRaw's
    // fallback), matrix and geometry agree: at sensor resolution (orient
    // `aspect: false` vs `dcraw_emu -j`) ours bilinear vs LibRaw bilinear
    // SSIM 0.998 / 0.997, chroma 0.44 / 0.90. What is left is the demosaic
    // on 8-bit noise: LibRaw's own bilinear / VNG / DCB / DHT vs its AHD
    // score SSIM 0.953 / 0.960 / 0.955 / 0.907 (P003908) and 0.963 /
    // 0.973 / 0.970 / 0.920 (P003911), chroma 2.2-4.3; ours
    // (`demosaic_rcd_mlri`, the default since 2026-12-06) vs AHD 0.931 /
    // 0.965, chroma 3.04 / 2.71 (RCD + false-colour suppression, the
    // default before: 0.952 / 0.970, chroma 2.77 / 2.71; Menon before that:
    // 0.919 / 0.953): without a false-colour pass more of the 8-bit chroma
    // noise stays, where AHD smooths it. Where it is lost: textured areas
    // (window sd of 8-bit luma 4..16: SSIM 0.88-0.93) more than flat noisy
    // ones (sd < 4: 0.97-0.98); at 1/2 and 1/4 size 0.979 / 0.993, so the
    // difference is pixel-scale texture, AHD's own rendering of the noise.
    // Our AHD (`demosaic_ahd`, pipelines/libraw_like.yaml) matches it:
    // 0.9804 / 0.9804 (`libraw_like_matches_libraw`); the best other
    // demosaic, ours or LibRaw's, 0.960 (LibRaw VNG) / 0.974 (LibRaw AAHD);
    // ours ARI + false-colour suppression 0.959 / 0.970.
    Gap {
        min_ssim: 0.925,
        max_chroma: 3.1,
        ..gap(
            "kodak_dc120_P003908.kdc",
            "demosaic only on 8-bit noisy data: SSIM 0.931, chroma 3.04 (demosaic_rcd_mlri vs \
             AHD; RCD + false-colour suppression 0.952 / 2.77); ours bilinear vs LibRaw \
             bilinear at sensor size 0.998 / 0.44; LibRaw's own demosaics vs its AHD \
             0.91-0.96, chroma 2.2-4.3",
        )
    },
    Gap {
        min_ssim: 0.96,
        ..gap(
            "kodak_dc120_P003911.kdc",
            "as P003908, JPEG-compressed: SSIM 0.965 (demosaic_rcd_mlri vs AHD; RCD + \
             false-colour suppression 0.970), chroma 2.71 passes; ours bilinear vs LibRaw \
             bilinear at sensor size 0.997 / 0.90",
        )
    },
];

fn real_dir() -> Option<PathBuf> {
    common::data("raw/real")
}

fn golden_path(file: &str) -> PathBuf {
    common::root()
        .join("tests/real_raws")
        .join(format!("{file}.json"))
}

fn round(v: f64, places: i32) -> Json {
    let k = 10f64.powi(places);
    json!((v * k).round() / k)
}

fn opt_round(v: Option<f32>, places: i32) -> Json {
    v.map_or(Json::Null, |v| round(v as f64, places))
}

/// The metadata record of one file (or its error, with the data folder
/// removed from paths).
fn record(dir: &Path, file: &str) -> Json {
    let path = dir.join(file);
    match open(&path, None, &Limits::default()) {
        Err(e) => {
            let msg = e.to_string().replace(&format!("{}/", dir.display()), "");
            json!({ "file": file, "error": msg })
        }
        Ok(f) => {
            let m = &f.meta;
            json!({
                "file": file,
                "make": m.make,
                "model": m.model,
                "width": m.width,
                "height": m.height,
                "layout": serde_json::to_value(m.layout).unwrap(),
                "bits": m.bits,
                "black_mean": round(m.black.mean() as f64, 2),
                "black_source": m.provenance.black,
                "white": m.white.iter().map(|v| round(*v as f64, 1)).collect::<Vec<_>>(),
                "white_source": m.provenance.white,
                "wb_source": serde_json::to_value(m.provenance.wb).unwrap(),
                "wb_why": m.provenance.wb_why,
                "wb_gains": m.wb_gains.map(|g| g.iter().map(|v| round(*v as f64, 3)).collect::<Vec<_>>()),
                "crop": m.crop.map(|c| [c.x, c.y, c.width, c.height]),
                "pixel_aspect": round(m.pixel_aspect as f64, 4),
                "orientation": serde_json::to_value(m.orientation).unwrap(),
                "iso": m.iso,
                "exposure_time": opt_round(m.exposure_time, 6),
                "f_number": opt_round(m.capture.f_number, 2),
                "focal_length_mm": opt_round(m.capture.focal_length_mm, 2),
                "lens": m.capture.lens,
                "timestamp": m.capture.timestamp,
            })
        }
    }
}

#[test]
fn metadata_matches_the_golden_records() {
    let Some(dir) = real_dir() else { return };
    let bless = std::env::var_os("RAWGRAPH_BLESS").is_some();
    let mut bad = Vec::new();
    for file in FILES {
        let got = record(&dir, file);
        let gp = golden_path(file);
        if bless {
            std::fs::create_dir_all(gp.parent().unwrap()).unwrap();
            let s = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&gp, s).unwrap();
            continue;
        }
        let want: Json = serde_json::from_str(
            &std::fs::read_to_string(&gp)
                .unwrap_or_else(|e| panic!("{}: {e} (RAWGRAPH_BLESS=1 writes it)", gp.display())),
        )
        .unwrap();
        if got != want {
            bad.push(format!("{file}:\n  got  {got}\n  want {want}"));
        }
    }
    assert!(bad.is_empty(), "metadata differs:\n{}", bad.join("\n"));
}

#[test]
fn info_json_has_iso_and_exposure_where_exif_has_them() {
    let Some(dir) = real_dir() else { return };
    // Files whose EXIF / maker notes record both (LibRaw reads the same
    // values); the DC120/DC50 KDCs record exposure but no ISO tag.
    for (file, iso, exposure) in [
        ("canon_powershot_g2_CRW_0304.crw", Some(50), 1.0 / 50.4),
        ("canon_powershot_s40_CRW_0101.crw", Some(50), 1.0 / 100.9),
        ("lg_g4_h815_sample_1mp.dng", Some(50), 1.0 / 2000.0),
        ("kodak_dc120_P003908.kdc", None, 1.0 / 274.7),
        ("kodak_dc50_DC0008L.kdc", None, 1.0 / 43.0),
        ("gopro_hero6_GOPR0024.gpr", Some(100), 1.0 / 455.0),
    ] {
        let o = Command::new(common::bin())
            .args(["info", "--json"])
            .arg(dir.join(file))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Json = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["iso"].as_u64(), iso, "{file}: {v}");
        let t = v["exposure_time"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (t / exposure - 1.0).abs() < 0.01,
            "{file}: exposure {t} vs {exposure}"
        );
        assert!(v["capture"]["f_number"].is_number(), "{file}: {v}");
        assert!(v["capture"]["timestamp"].is_string(), "{file}: {v}");
        assert!(v["provenance"]["wb_why"].is_string(), "{file}: {v}");
        // The LG DNG maps its 8-bit data back through three MapPolynomials
        // (OpcodeList2, applied at decode); the other files have no opcodes.
        let ops = v["dng_opcodes"].as_array().unwrap();
        if file.ends_with(".dng") {
            assert_eq!(ops.len(), 3, "{file}: {v}");
            for o in ops {
                assert_eq!(o["name"], "MapPolynomial", "{file}: {o}");
                assert_eq!(o["list"], 2, "{file}: {o}");
                assert_eq!(o["applied"], true, "{file}: {o}");
            }
        } else if file.ends_with(".gpr") {
            // GoPro's lens shading: four GainMaps (one per Bayer plane),
            // applied by the lens_shading stage.
            assert_eq!(ops.len(), 4, "{file}: {v}");
            for o in ops {
                assert_eq!(o["name"], "GainMap", "{file}: {o}");
                assert_eq!(o["op"], "lens_shading", "{file}: {o}");
            }
        } else {
            assert!(ops.is_empty(), "{file}: {v}");
        }
    }
}

/// 8-bit sRGB, interleaved RGB.
struct Rgb {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

fn srgb_to_linear(v: f64) -> f64 {
    let v = v / 255.0;
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb(v: f64) -> f64 {
    let v = v.clamp(0.0, 1.0);
    255.0
        * if v <= 0.003_130_8 {
            12.92 * v
        } else {
            1.055 * v.powf(1.0 / 2.4) - 0.055
        }
}

/// LibRaw's default output curve is BT.709 (dcraw `-g 2.222 4.5`):
/// V = 1.099 L^0.45 - 0.099 above L = 0.018, else 4.5 L.
fn bt709_to_linear(v: f64) -> f64 {
    let v = v / 255.0;
    if v < 0.081 {
        v / 4.5
    } else {
        ((v + 0.099) / 1.099).powf(1.0 / 0.45)
    }
}

/// Linear RGB per pixel, through `decode` (8-bit code -> linear).
fn linear(img: &Rgb, decode: fn(f64) -> f64) -> Vec<[f64; 3]> {
    let lut: Vec<f64> = (0..256).map(|v| decode(v as f64)).collect();
    img.px
        .chunks_exact(3)
        .map(|p| [lut[p[0] as usize], lut[p[1] as usize], lut[p[2] as usize]])
        .collect()
}

fn luminance(p: &[f64; 3]) -> f64 {
    0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2]
}

/// CIELAB (D65) a*, b* of a linear sRGB pixel.
fn ab(p: &[f64; 3]) -> (f64, f64) {
    let x = (0.4124 * p[0] + 0.3576 * p[1] + 0.1805 * p[2]) / 0.950_47;
    let y = 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2];
    let z = (0.0193 * p[0] + 0.1192 * p[1] + 0.9505 * p[2]) / 1.088_83;
    let f = |t: f64| {
        if t > 0.008_856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    (500.0 * (f(x) - f(y)), 200.0 * (f(y) - f(z)))
}

/// SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01,
/// K2 0.03) of two luma planes in 0..255, averaged over the valid area.
fn ssim(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    let g: Vec<f64> = (-5..=5)
        .map(|i: i32| (-(i * i) as f64 / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / gs).collect();
    // Separable filter over the valid area (no padding).
    let blur = |x: &[f64]| -> (Vec<f64>, usize, usize) {
        let (ow, oh) = (w - 10, h - 10);
        let mut t = vec![0.0; ow * h];
        for y in 0..h {
            for ox in 0..ow {
                t[y * ow + ox] = (0..11).map(|k| g[k] * x[y * w + ox + k]).sum();
            }
        }
        let mut o = vec![0.0; ow * oh];
        for oy in 0..oh {
            for ox in 0..ow {
                o[oy * ow + ox] = (0..11).map(|k| g[k] * t[(oy + k) * ow + ox]).sum();
            }
        }
        (o, ow, oh)
    };
    if w < 11 || h < 11 {
        return 0.0;
    }
    let prod = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(x, y)| x * y).collect::<Vec<_>>();
    let (ma, ..) = blur(a);
    let (mb, ..) = blur(b);
    let (saa, ..) = blur(&prod(a, a));
    let (sbb, ..) = blur(&prod(b, b));
    let (sab, ow, oh) = blur(&prod(a, b));
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0;
    for i in 0..ow * oh {
        let (va, vb) = (saa[i] - ma[i] * ma[i], sbb[i] - mb[i] * mb[i]);
        let cov = sab[i] - ma[i] * mb[i];
        total += ((2.0 * ma[i] * mb[i] + c1) * (2.0 * cov + c2))
            / ((ma[i] * ma[i] + mb[i] * mb[i] + c1) * (va + vb + c2));
    }
    total / (ow * oh) as f64
}

/// Mean luminance of the 2-px strip at each edge over the strip 4..12 px
/// in: [top, bottom, left, right]. A dark or garbage border shows as a
/// ratio far from LibRaw's.
fn edge_ratios(lin: &[[f64; 3]], w: usize, h: usize) -> [f64; 4] {
    let mean = |xs: &mut dyn Iterator<Item = (usize, usize)>| {
        let (mut s, mut n) = (0.0, 0usize);
        for (x, y) in xs {
            s += luminance(&lin[y * w + x]);
            n += 1;
        }
        s / n.max(1) as f64
    };
    let r = |outer: f64, inner: f64| (outer + 1e-3) / (inner + 1e-3);
    let rows = |ys: std::ops::Range<usize>| {
        let ys: Vec<usize> = ys.collect();
        mean(&mut ys.iter().flat_map(|&y| (0..w).map(move |x| (x, y))))
    };
    let cols = |xs: std::ops::Range<usize>| {
        let xs: Vec<usize> = xs.collect();
        mean(&mut xs.iter().flat_map(|&x| (0..h).map(move |y| (x, y))))
    };
    [
        r(rows(0..2), rows(4..12)),
        r(rows(h - 2..h), rows(h - 12..h - 4)),
        r(cols(0..2), cols(4..12)),
        r(cols(w - 2..w), cols(w - 12..w - 4)),
    ]
}

/// Our render with `-p default`, as 8-bit sRGB, and the decoded frame's
/// size and default-crop size, in sensor pixels.
type Rendered = (Rgb, (usize, usize, usize, usize));

fn render(path: &Path) -> Result<Rendered, String> {
    let pl = Pipeline::resolve("default").map_err(|e| e.to_string())?;
    render_with(path, &pl)
}

fn render_with(path: &Path, pl: &Pipeline) -> Result<Rendered, String> {
    let frame = open(path, None, &Limits::default()).map_err(|e| e.to_string())?;
    let m = &frame.meta;
    let (cw, ch) = m.crop.map_or((m.width, m.height), |c| (c.width, c.height));
    let full = (m.width, m.height, cw, ch);
    let out = rawgraph::graph::run(pl, frame, &RunOptions::default()).map_err(|e| e.to_string())?;
    match out.outputs.into_iter().next() {
        Some((_, Value::Image(img))) => Ok((
            Rgb {
                w: img.width,
                h: img.height,
                px: rawgraph::output::to_rgb8(&img),
            },
            full,
        )),
        _ => Err("no image output".into()),
    }
}

/// LibRaw's render (`dcraw_emu -w -o 1 -T -Z OUT IN`: camera WB, sRGB,
/// 8-bit TIFF).
fn libraw(path: &Path, tmp: &Path) -> Result<Rgb, String> {
    libraw_with(path, tmp, &[])
}

/// LibRaw's render with `extra` options before the defaults' (e.g. `-q 0`
/// bilinear demosaic, `-j` no pixel-aspect stretch).
fn libraw_with(path: &Path, tmp: &Path, extra: &[&str]) -> Result<Rgb, String> {
    let out = tmp.join(format!(
        "{}{}.tif",
        path.file_name().unwrap().to_string_lossy(),
        extra.concat()
    ));
    let o = Command::new("dcraw_emu")
        .args(extra)
        .args(["-w", "-o", "1", "-T", "-Z"])
        .arg(&out)
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() || !out.exists() {
        return Err(format!(
            "dcraw_emu failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let img = image::open(&out).map_err(|e| e.to_string())?.to_rgb8();
    Ok(Rgb {
        w: img.width() as usize,
        h: img.height() as usize,
        px: img.into_raw(),
    })
}

/// The centre `w x h` window of an image.
fn centre(img: &Rgb, w: usize, h: usize) -> Rgb {
    let (x0, y0) = ((img.w - w) / 2, (img.h - h) / 2);
    let mut px = Vec::with_capacity(3 * w * h);
    for y in y0..y0 + h {
        px.extend_from_slice(&img.px[3 * (y * img.w + x0)..3 * (y * img.w + x0 + w)]);
    }
    Rgb { w, h, px }
}

/// Area-average resample (only to compare colour where the sizes differ
/// by a pixel aspect that is a known gap).
fn resample(img: &Rgb, w: usize, h: usize) -> Rgb {
    let mut px = Vec::with_capacity(3 * w * h);
    for y in 0..h {
        let (y0, y1) = (y * img.h / h, ((y + 1) * img.h / h).max(y * img.h / h + 1));
        for x in 0..w {
            let (x0, x1) = (x * img.w / w, ((x + 1) * img.w / w).max(x * img.w / w + 1));
            let mut s = [0u32; 3];
            let mut n = 0;
            for sy in y0..y1.min(img.h) {
                for sx in x0..x1.min(img.w) {
                    let at = 3 * (sy * img.w + sx);
                    for (acc, v) in s.iter_mut().zip(&img.px[at..at + 3]) {
                        *acc += *v as u32;
                    }
                    n += 1;
                }
            }
            let n = n.max(1);
            px.extend(s.iter().map(|v| ((v + n / 2) / n) as u8));
        }
    }
    Rgb { w, h, px }
}

/// Measured comparison of one file.
#[derive(Debug)]
struct Score {
    ours: (usize, usize),
    theirs: (usize, usize),
    ssim: f64,
    chroma: f64,
    edges_ours: [f64; 4],
    edges_theirs: [f64; 4],
}

/// `geom`: our frame's size and crop size in sensor pixels (LibRaw shows
/// the whole frame of the files where sizes differ).
/// `theirs_curve` decodes the reference's 8-bit codes to linear (LibRaw:
/// BT.709; darktable: sRGB).
fn compare(
    ours: &Rgb,
    theirs: &Rgb,
    geom: (usize, usize, usize, usize),
    theirs_curve: fn(f64) -> f64,
) -> Score {
    let sizes = ((ours.w, ours.h), (theirs.w, theirs.h));
    // Align (known-gap files only): LibRaw's window that our crop covers,
    // resampled to our size where LibRaw also corrected the pixel aspect.
    let (a, b) = if sizes.0 == sizes.1 {
        (
            centre(ours, ours.w, ours.h),
            centre(theirs, theirs.w, theirs.h),
        )
    } else {
        let ww = (theirs.w * geom.2 / geom.0.max(1)).clamp(1, theirs.w);
        let wh = (theirs.h * geom.3 / geom.1.max(1)).clamp(1, theirs.h);
        let win = centre(theirs, ww, wh);
        (centre(ours, ours.w, ours.h), resample(&win, ours.w, ours.h))
    };
    let (la, lb) = (linear(&a, srgb_to_linear), linear(&b, theirs_curve));
    // Exposure normalisation: LibRaw brightens so that 1 % of the pixels
    // clip; scale ours by the median luminance ratio over the pixels that
    // are neither dark nor near clipping in both.
    let mut ratios: Vec<f64> = la
        .iter()
        .zip(&lb)
        .map(|(p, q)| (luminance(p), luminance(q)))
        .filter(|(ya, yb)| (0.02..0.8).contains(ya) && (0.02..0.8).contains(yb))
        .map(|(ya, yb)| yb / ya)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let k = ratios.get(ratios.len() / 2).copied().unwrap_or(1.0);
    let la: Vec<[f64; 3]> = la.iter().map(|p| [p[0] * k, p[1] * k, p[2] * k]).collect();
    let luma = |l: &[[f64; 3]]| {
        l.iter()
            .map(|p| linear_to_srgb(luminance(p)))
            .collect::<Vec<_>>()
    };
    let s = ssim(&luma(&la), &luma(&lb), a.w, a.h);
    let mut chroma = 0.0;
    for (p, q) in la.iter().zip(&lb) {
        let clip = |p: &[f64; 3]| [p[0].min(1.0), p[1].min(1.0), p[2].min(1.0)];
        let ((a1, b1), (a2, b2)) = (ab(&clip(p)), ab(&clip(q)));
        chroma += ((a1 - a2).powi(2) + (b1 - b2).powi(2)).sqrt();
    }
    Score {
        ours: sizes.0,
        theirs: sizes.1,
        ssim: s,
        chroma: chroma / la.len() as f64,
        edges_ours: edge_ratios(&la, a.w, a.h),
        edges_theirs: edge_ratios(&lb, b.w, b.h),
    }
}

#[test]
fn renders_like_libraw() {
    let Some(dir) = real_dir() else { return };
    if Command::new("dcraw_emu").arg("-h").output().is_err() {
        eprintln!("SKIPPED: dcraw_emu (LibRaw, apt libraw-bin) is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut table = vec![format!(
        "{:<58} {:>10} {:>10} {:>6} {:>6}  status",
        "file", "ours", "libraw", "ssim", "chroma"
    )];
    for file in FILES {
        let path = dir.join(file);
        let gap = KNOWN_GAPS.iter().find(|g| g.file == *file);
        let (min_ssim, max_chroma) = gap.map_or((0.98, 3.0), |g| (g.min_ssim, g.max_chroma));
        let ours = render(&path);
        let theirs = libraw(&path, tmp.path());
        let (ours, theirs) = match (ours, theirs) {
            (Ok(o), Ok(t)) => (o, t),
            (Err(e), _) => {
                table.push(format!("{file:<58} does not render: {e}"));
                if !gap.is_some_and(|g| g.no_render) {
                    failures.push(format!("{file}: does not render: {e}"));
                }
                continue;
            }
            (Ok(_), Err(e)) => {
                table.push(format!("{file:<58} renders; LibRaw does not: {e}"));
                continue;
            }
        };
        if gap.is_some_and(|g| g.no_render) {
            failures.push(format!("{file}: renders now; update KNOWN_GAPS"));
        }
        let s = compare(&ours.0, &theirs, ours.1, bt709_to_linear);
        let same_size = s.ours == s.theirs;
        let border_ok = s
            .edges_ours
            .iter()
            .zip(&s.edges_theirs)
            .all(|(a, b)| (a - b).abs() < 0.25);
        let mut why = Vec::new();
        if same_size == gap.is_some_and(|g| g.size) {
            why.push(if same_size {
                "same size now; update KNOWN_GAPS".to_string()
            } else {
                format!("size {:?} vs {:?}", s.ours, s.theirs)
            });
        }
        if s.ssim < min_ssim {
            why.push(format!("SSIM {:.4} < {min_ssim}", s.ssim));
        }
        if s.chroma > max_chroma {
            why.push(format!("chroma {:.2} > {max_chroma}", s.chroma));
        }
        if !border_ok {
            why.push(format!(
                "border ratios {:?} vs LibRaw {:?}",
                s.edges_ours, s.edges_theirs
            ));
        }
        table.push(format!(
            "{file:<58} {:>10} {:>10} {:>6.4} {:>6.2}  {}{}",
            format!("{}x{}", s.ours.0, s.ours.1),
            format!("{}x{}", s.theirs.0, s.theirs.1),
            s.ssim,
            s.chroma,
            if why.is_empty() {
                "ok".to_string()
            } else {
                why.join("; ")
            },
            gap.map_or(String::new(), |g| format!(" (known gap: {})", g.why)),
        ));
        if !why.is_empty() {
            failures.push(format!("{file}: {}", why.join("; ")));
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `pipelines/libraw_like.yaml` (the default with AHD, `demosaic_ahd`,
/// and no false-colour suppression) renders like LibRaw's default on every
/// file LibRaw decodes, the DC120 gaps included: same size, luminance
/// SSIM >= 0.98, chroma <= 3, no border. Measured (SSIM / chroma):
/// Canon G2 0.9983 / 0.41, Canon S40 0.9980 / 0.42, DC120 P003908 0.9804
/// / 1.25, P003911 0.9804 / 1.66, DC50 0.9976 / 1.98, EasyShare C330
/// 0.9992 / 0.33, LG G4 DNG 0.9993 / 0.34 (the GPR is LibRaw-less). On the
/// DC120 what is left is mostly the aspect stretch: at sensor size (ours
/// `aspect: false`, LibRaw `-j`) 0.9877 / 0.9857, and ours stretched like
/// dcraw's `stretch()` (2-tap linear interpolation in linear light, where
/// `orient` uses Lanczos-3 on the encoded values) 0.9854 / 0.9844.
#[test]
fn libraw_like_matches_libraw() {
    let Some(dir) = real_dir() else { return };
    if Command::new("dcraw_emu").arg("-h").output().is_err() {
        eprintln!("SKIPPED: dcraw_emu (LibRaw, apt libraw-bin) is not installed");
        return;
    }
    let pl = Pipeline::resolve("libraw_like").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (mut bad, mut compared) = (Vec::new(), 0);
    for file in FILES {
        let path = dir.join(file);
        let Ok(theirs) = libraw(&path, tmp.path()) else {
            // GPR: LibRaw does not decode it (gpr_renders_like_rawspeed).
            eprintln!("{file}: LibRaw does not render it");
            continue;
        };
        let (ours, geom) = render_with(&path, &pl).unwrap();
        let s = compare(&ours, &theirs, geom, bt709_to_linear);
        let border_ok = s
            .edges_ours
            .iter()
            .zip(&s.edges_theirs)
            .all(|(a, b)| (a - b).abs() < 0.25);
        eprintln!(
            "{file}: libraw_like vs LibRaw SSIM {:.4}, chroma {:.2}",
            s.ssim, s.chroma
        );
        compared += 1;
        if s.ours != s.theirs || s.ssim < 0.98 || s.chroma > 3.0 || !border_ok {
            bad.push(format!("{file}: {s:?}"));
        }
    }
    assert!(
        compared >= FILES.len() - 1,
        "LibRaw rendered {compared} files"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The known SSIM gaps are the demosaic's alone: with the demosaic made
/// the same on both sides (ours `demosaic_bilinear` in `default` otherwise
/// unchanged, LibRaw `-q 0`) and at sensor resolution (ours `orient` with
/// `aspect: false`, LibRaw `-j`), each file matches LibRaw: decode, CFA
/// phase, crop, levels, white balance, colour matrix and the comparison
/// agree. Measured: DC120 P003908 0.998 / 0.44, P003911 0.997 / 0.90
/// (SSIM / chroma). (The Canon S40's gap, Menon against LibRaw's AHD at
/// SSIM 0.978, closed when the default moved to RCD: 0.9876;
/// `demosaic_rcd_mlri` 0.9822.)
#[test]
fn known_gaps_are_demosaic_only() {
    let Some(dir) = real_dir() else { return };
    if Command::new("dcraw_emu").arg("-h").output().is_err() {
        eprintln!("SKIPPED: dcraw_emu (LibRaw, apt libraw-bin) is not installed");
        return;
    }
    let text = std::fs::read_to_string(common::root().join("pipelines/default.yaml")).unwrap();
    let swap = |t: &str, from: &str, to: &str| {
        assert!(t.contains(from), "pipelines/default.yaml has no `{from}`");
        t.replace(from, to)
    };
    let bilinear = swap(
        &text,
        "{ id: dm, op: demosaic_rcd_mlri }",
        "{ id: dm, op: demosaic_bilinear }",
    );
    let sensor = swap(
        &bilinear,
        "{ id: orient, op: orient }",
        "{ id: orient, op: orient, params: { aspect: false } }",
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    for (file, yaml, extra) in [
        ("kodak_dc120_P003908.kdc", &sensor, &["-j", "-q", "0"][..]),
        ("kodak_dc120_P003911.kdc", &sensor, &["-j", "-q", "0"][..]),
    ] {
        assert!(KNOWN_GAPS.iter().any(|g| g.file == file), "{file}: no gap");
        let path = dir.join(file);
        let pl = Pipeline::from_yaml(yaml, "bilinear.yaml").unwrap();
        let (ours, geom) = render_with(&path, &pl).unwrap();
        let theirs = libraw_with(&path, tmp.path(), extra).unwrap();
        assert_eq!((ours.w, ours.h), (theirs.w, theirs.h), "{file}: sizes");
        let s = compare(&ours, &theirs, geom, bt709_to_linear);
        eprintln!(
            "{file}: bilinear vs LibRaw bilinear SSIM {:.4}, chroma {:.2}",
            s.ssim, s.chroma
        );
        if s.ssim < 0.99 || s.chroma > 1.5 {
            bad.push(format!(
                "{file}: SSIM {:.4}, chroma {:.2}",
                s.ssim, s.chroma
            ));
        }
    }
    assert!(bad.is_empty(), "not demosaic-only: {}", bad.join("; "));
}

/// darktable's render (`darktable-cli`, no default workflow modules: camera
/// WB, the DNG colour matrix, sRGB out; 8-bit TIFF). darktable decodes GPR
/// with rawspeed's VC-5 decoder, an implementation independent of ours.
fn darktable(path: &Path, tmp: &Path) -> Result<Rgb, String> {
    let out = tmp.join("darktable.tif");
    let o = Command::new("darktable-cli")
        .arg(path)
        .arg(&out)
        .arg("--core")
        .arg("--configdir")
        .arg(tmp.join("darktable-conf"))
        .args(["--conf", "plugins/darkroom/workflow=none"])
        .args(["--conf", "plugins/imageio/format/tiff/bpp=8"])
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() || !out.exists() {
        return Err(format!(
            "darktable-cli failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let img = image::open(&out).map_err(|e| e.to_string())?.to_rgb8();
    Ok(Rgb {
        w: img.width() as usize,
        h: img.height() as usize,
        px: img.into_raw(),
    })
}

/// The `w x h` window of `img` at (`x0`, `y0`).
fn window(img: &Rgb, x0: usize, y0: usize, w: usize, h: usize) -> Rgb {
    let mut px = Vec::with_capacity(3 * w * h);
    for y in y0..y0 + h {
        px.extend_from_slice(&img.px[3 * (y * img.w + x0)..3 * (y * img.w + x0 + w)]);
    }
    Rgb { w, h, px }
}

/// GoPro GPR (VC-5 tiles, issue 18): LibRaw cannot decode it and the file
/// carries no embedded preview (one IFD, no JPEG), so our render is checked
/// against darktable's, whose rawspeed VC-5 decoder is independent of ours
/// (flashraw-codecs). Same orientation (FlipH), luminance SSIM >= 0.98 and
/// mean chroma difference <= 3 after exposure normalisation. darktable
/// drops one sensor column (3999x2999 against the DNG's 4000x3000 crop):
/// the window of ours that matches best (of the <= 2 px offsets) is
/// compared. Skipped, saying so, without `darktable-cli`.
#[test]
fn gpr_renders_like_rawspeed() {
    let Some(dir) = real_dir() else { return };
    let path = dir.join("gopro_hero6_GOPR0024.gpr");
    let (ours, geom) = render(&path).expect("GPR renders");
    assert_eq!((ours.w, ours.h), (4000, 3000));
    if Command::new("darktable-cli")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: darktable-cli (apt darktable) is not installed: GPR not compared");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let theirs = darktable(&path, tmp.path()).unwrap();
    assert!(
        ours.w - theirs.w <= 2 && ours.h - theirs.h <= 2,
        "sizes {}x{} vs darktable {}x{}",
        ours.w,
        ours.h,
        theirs.w,
        theirs.h
    );
    let lum =
        |img: &Rgb| -> Vec<f64> { linear(img, srgb_to_linear).iter().map(luminance).collect() };
    let lt = lum(&theirs);
    let mut best = (f64::MAX, 0, 0);
    for y0 in 0..=ours.h - theirs.h {
        for x0 in 0..=ours.w - theirs.w {
            let lo = lum(&window(&ours, x0, y0, theirs.w, theirs.h));
            let d = lo.iter().zip(&lt).map(|(a, b)| (a - b).abs()).sum::<f64>();
            if d < best.0 {
                best = (d, x0, y0);
            }
        }
    }
    let a = window(&ours, best.1, best.2, theirs.w, theirs.h);
    let s = compare(&a, &theirs, geom, srgb_to_linear);
    // At a quarter of the size (4x4 area average) the two demosaics (ours
    // Menon, darktable PPG) no longer differ: what is left is the decode.
    let (qw, qh) = (theirs.w / 4, theirs.h / 4);
    let q = compare(
        &resample(&a, qw, qh),
        &resample(&theirs, qw, qh),
        geom,
        srgb_to_linear,
    );
    eprintln!(
        "GPR vs darktable (rawspeed): offset ({}, {}), SSIM {:.4}, chroma {:.2}; \
         at 1/4 size SSIM {:.4}, chroma {:.2}; edges {:?} vs {:?}",
        best.1, best.2, s.ssim, s.chroma, q.ssim, q.chroma, s.edges_ours, s.edges_theirs
    );
    assert!(s.ssim >= 0.98, "SSIM {:.4} < 0.98", s.ssim);
    assert!(s.chroma <= 3.0, "chroma {:.2} > 3", s.chroma);
    assert!(q.ssim >= 0.99, "SSIM at 1/4 size {:.4} < 0.99", q.ssim);
    let border_ok = s
        .edges_ours
        .iter()
        .zip(&s.edges_theirs)
        .all(|(a, b)| (a - b).abs() < 0.25);
    assert!(
        border_ok,
        "border {:?} vs {:?}",
        s.edges_ours, s.edges_theirs
    );
}
