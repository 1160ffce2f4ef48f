//! `face_detect`: face boxes (with scores, and landmarks where the
//! detector gives them) on a downscaled copy of the linear frame.
//!
//! Detectors:
//! - `seetaface` (default, no download): the funnel-structured cascade of
//!   Wu et al. 2016, "Funnel-Structured Cascade for Multi-View Face
//!   Detection with Alignment-Awareness" (SeetaFace Detection), through
//!   the `rustface` crate; its BSD-2 model (from the crate package) is
//!   compiled into the binary from `calibration/models/`.
//! - `yunet`: YuNet (Wu, Peng & Yu 2023, "YuNet: A Tiny Millisecond-level
//!   Face Detector"), an ONNX model the user downloads (see README), run by
//!   [`super::yunet`] (cargo feature `yunet`).
//!
//! The frame is box-downscaled so its longer side is at most `max_side`
//! pixels, its exposure normalised (log-average luminance to 0.18, the
//! frame may be far from the final exposure) and sRGB-encoded to 8 bits,
//! then detected; boxes are returned in the input frame's pixels.
//!
//! Input: a linear image. Output: a `faces` value ([`Faces`]).

use crate::stages::Validate;
use std::path::PathBuf;

use serde::Deserialize;

use super::{area_downscale, grid_size, FaceBox, Faces};
use crate::color::{luminance, srgb_encode};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc, ValueKind};
use crate::stages::{check_range, parse_params, RunCtx, Stage};

/// The SeetaFace frontal model shipped with rustface 0.1.7 (BSD-2, see
/// calibration/models/seeta_fd_frontal_v1.0.LICENSE).
static SEETA_MODEL: &[u8] = include_bytes!("../../../calibration/models/seeta_fd_frontal_v1.0.bin");

/// Which detector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    #[default]
    Seetaface,
    Yunet,
}

/// YAML params of `face_detect`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub detector: Detector,
    /// YuNet ONNX file (required for `yunet`), e.g.
    /// `../shared/data/face/yunet/yunet_n_640_640.onnx`.
    pub model: Option<PathBuf>,
    /// Longer side of the detection image, pixels.
    pub max_side: usize,
    /// Smallest face searched, pixels of the detection image (SeetaFace).
    pub min_face: u32,
    /// Score threshold: SeetaFace classifier score (default 2.0) or YuNet
    /// confidence in [0, 1] (default 0.6).
    pub score_threshold: Option<f32>,
    /// IoU above which YuNet boxes are merged by non-maximum suppression
    /// (also used to merge the two passes).
    pub nms_iou: f32,
    /// A second pass on the detection image brightened by this many EV
    /// (and denoised by `extra_blur`, rescaled by `extra_scale`) finds
    /// faces darker and noisier than the frame (backlit portraits,
    /// underexposed captures); its boxes are added where they overlap no
    /// first-pass box. The pass runs when any of the three differs from
    /// its neutral value (0, 1, 0). Defaults 1.0 EV, blur 1.5 px: on
    /// `rawgraph eval-exposure` faces within ±1/3 EV go from 89.3 % to
    /// 92.9 % (samples) and 82.1 % to 91.7 % (backlit); blur 1.0-2.0 and
    /// 0-1 EV all land within 92.9-94.0 % / 85.7-91.7 %.
    pub extra_ev: f32,
    /// Scale of the extra pass's detection image relative to the first
    /// (area-averaged, in (0, 1]): below 1 it averages noise away, which is
    /// what finds faces in underexposed, noisy frames (at 0.5 the smallest
    /// face found is `2·min_face` detection pixels).
    pub extra_scale: f32,
    /// Gaussian blur of the extra pass's detection image, sigma in its
    /// pixels (0 = none): denoises dark frames before the detector, whose
    /// own pyramid does not.
    pub extra_blur: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            detector: Detector::Seetaface,
            model: None,
            max_side: 640,
            min_face: 20,
            score_threshold: None,
            nms_iou: 0.3,
            extra_ev: 1.0,
            extra_scale: 1.0,
            extra_blur: 1.5,
        }
    }
}

/// The compiled `face_detect` op.
#[derive(Debug)]
pub struct FaceDetect {
    p: Params,
    threshold: f32,
    engine: Engine,
}

enum Engine {
    Seeta(rustface::Model),
    #[cfg_attr(not(feature = "yunet"), allow(dead_code))]
    Yunet(Box<super::yunet::YuNet>),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Seeta(_) => f.write_str("SeetaFace"),
            Engine::Yunet(y) => write!(f, "{y:?}"),
        }
    }
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if !(32..=4096).contains(&self.max_side) {
            return Err(crate::stages::CompileError::params(format!(
                "max_side = {} is outside [32, 4096]",
                self.max_side
            )));
        }
        if !(12..=1024).contains(&self.min_face) {
            return Err(crate::stages::CompileError::params(format!(
                "min_face = {} is outside [12, 1024]",
                self.min_face
            )));
        }
        check_range("nms_iou", self.nms_iou, 0.05, 0.95)?;
        check_range("extra_ev", self.extra_ev, 0.0, 6.0)?;
        check_range("extra_scale", self.extra_scale, 0.1, 1.0)?;
        check_range("extra_blur", self.extra_blur, 0.0, 8.0)?;
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    Ok(Box::new(FaceDetect::new(parse_params(params)?)?))
}

impl FaceDetect {
    /// Validates params and loads the model.
    pub fn new(p: Params) -> std::result::Result<FaceDetect, crate::stages::CompileError> {
        p.validate()?;
        let (engine, threshold) = match p.detector {
            Detector::Seetaface => {
                if p.model.is_some() {
                    return Err(crate::stages::CompileError::params(
                        "model: seetaface uses its built-in model",
                    ));
                }
                let m = rustface::read_model(std::io::Cursor::new(SEETA_MODEL))
                    .map_err(|e| format!("built-in SeetaFace model: {e}"))?;
                (Engine::Seeta(m), p.score_threshold.unwrap_or(2.0))
            }
            Detector::Yunet => {
                let path = p.model.as_ref().ok_or(crate::stages::CompileError::params(
                    "model: yunet needs the path of its ONNX file",
                ))?;
                let y = super::yunet::YuNet::load(path).map_err(|e| e.to_string())?;
                let t = p.score_threshold.unwrap_or(0.6);
                check_range("score_threshold", t, 0.0, 1.0)?;
                (Engine::Yunet(Box::new(y)), t)
            }
        };
        Ok(FaceDetect {
            p,
            threshold,
            engine,
        })
    }

    /// The 8-bit detection image of a linear frame: `(width, height,
    /// interleaved sRGB)`, what the detector sees.
    pub fn detection_input(&self, img: &Image) -> (usize, usize, Vec<u8>) {
        let (dw, dh) = grid_size(img.width, img.height, self.p.max_side);
        let small = area_downscale(img, dw, dh);
        (dw, dh, display_rgb8(&small, dw * dh, 0.0))
    }

    fn run_engine(&self, rgb8: &[u8], dw: usize, dh: usize) -> Result<Vec<FaceBox>> {
        match &self.engine {
            Engine::Seeta(m) => self.seeta(m, rgb8, dw, dh),
            Engine::Yunet(y) => y.detect(rgb8, dw, dh, self.threshold, self.p.nms_iou),
        }
    }

    /// Detects faces in a linear image.
    pub fn detect(&self, img: &Image) -> Result<Faces> {
        let (dw, dh) = grid_size(img.width, img.height, self.p.max_side);
        let small = area_downscale(img, dw, dh);
        let (sx, sy) = (img.width as f32 / dw as f32, img.height as f32 / dh as f32);
        let mut boxes = self.run_engine(&display_rgb8(&small, dw * dh, 0.0), dw, dh)?;
        if self.p.extra_ev > 0.0 || self.p.extra_scale < 1.0 || self.p.extra_blur > 0.0 {
            let (ew, eh) = (
                ((dw as f32 * self.p.extra_scale).round() as usize).max(1),
                ((dh as f32 * self.p.extra_scale).round() as usize).max(1),
            );
            let mut tiny = if (ew, eh) == (dw, dh) {
                small.clone()
            } else {
                area_downscale(
                    &super::planar_image(dw, dh, small.clone(), img.space),
                    ew,
                    eh,
                )
            };
            if self.p.extra_blur > 0.0 {
                for plane in tiny.chunks_exact_mut(ew * eh) {
                    gaussian_blur(plane, ew, eh, self.p.extra_blur);
                }
            }
            let mut more =
                self.run_engine(&display_rgb8(&tiny, ew * eh, self.p.extra_ev), ew, eh)?;
            let (kx, ky) = (dw as f32 / ew as f32, dh as f32 / eh as f32);
            for b in more.iter_mut() {
                b.scale(kx, ky);
            }
            for b in more {
                if boxes.iter().all(|k| k.iou(&b) <= self.p.nms_iou) {
                    boxes.push(b);
                }
            }
        }
        for b in boxes.iter_mut() {
            b.scale(sx, sy);
        }
        boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(Faces {
            width: img.width,
            height: img.height,
            detector: match self.p.detector {
                Detector::Seetaface => "seetaface",
                Detector::Yunet => "yunet",
            }
            .into(),
            boxes,
        })
    }

    fn seeta(
        &self,
        model: &rustface::Model,
        rgb8: &[u8],
        w: usize,
        h: usize,
    ) -> Result<Vec<FaceBox>> {
        if w < self.p.min_face as usize || h < self.p.min_face as usize {
            return Ok(Vec::new());
        }
        let gray: Vec<u8> = rgb8
            .chunks_exact(3)
            .map(|p| {
                // Rec.601 luma of the encoded values, as the model was trained.
                (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
                    .round()
                    .clamp(0.0, 255.0) as u8
            })
            .collect();
        let mut det = rustface::create_detector_with_model(model.clone());
        det.set_min_face_size(self.p.min_face);
        det.set_score_thresh(self.threshold as f64);
        det.set_pyramid_scale_factor(0.8);
        det.set_slide_window_step(4, 4);
        let (wu, hu) = (
            u32::try_from(w).map_err(|_| Error::invalid("frame too wide"))?,
            u32::try_from(h).map_err(|_| Error::invalid("frame too tall"))?,
        );
        // rustface asserts on images it cannot handle; keep a panic a
        // typed error.
        let faces = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            det.detect(&rustface::ImageData::new(&gray, wu, hu))
        }))
        .map_err(|_| Error::invalid("SeetaFace detector failed on this frame"))?;
        Ok(faces
            .iter()
            .map(|f| {
                let b = f.bbox();
                FaceBox {
                    x: b.x() as f32,
                    y: b.y() as f32,
                    w: b.width() as f32,
                    h: b.height() as f32,
                    score: f.score() as f32,
                    landmarks: None,
                }
            })
            .collect())
    }
}

/// Separable Gaussian blur of one `w x h` plane in place, `sigma` in
/// pixels (kernel radius 3·sigma, borders clamped).
pub fn gaussian_blur(plane: &mut [f32], w: usize, h: usize, sigma: f32) {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
    let clampi = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0f32; w * h];
    for y in 0..h {
        let row = &plane[y * w..(y + 1) * w];
        for x in 0..w {
            tmp[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * row[clampi(x as isize + j as isize - r, w)])
                .sum();
        }
    }
    for y in 0..h {
        for x in 0..w {
            plane[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * tmp[clampi(y as isize + j as isize - r, h) * w + x])
                .sum();
        }
    }
}

/// Display-referred 8-bit RGB (interleaved) of a planar linear image of
/// `n` pixels: scaled so the log-average luminance is 0.18 (gain limited
/// to 2^±8), then by `2^ev`, clipped and sRGB-encoded.
pub fn display_rgb8(planar: &[f32], n: usize, ev: f32) -> Vec<u8> {
    let (r, rest) = planar.split_at(n);
    let (g, b) = rest.split_at(n);
    let mut s = 0f64;
    for i in 0..n {
        let l = luminance(r[i], g[i], b[i]);
        s += (if l.is_finite() { l.max(1e-4) } else { 1e-4 } as f64).ln();
    }
    let la = (s / n.max(1) as f64).exp() as f32;
    let k = (0.18 / la).clamp(2f32.powi(-8), 2f32.powi(8)) * 2f32.powf(ev);
    let lut: Vec<u8> = (0..=4096)
        .map(|i| (srgb_encode(i as f32 / 4096.0) * 255.0).round() as u8)
        .collect();
    let enc = |v: f32| {
        let t = if v.is_finite() { v * k } else { 0.0 };
        lut[(t.clamp(0.0, 1.0) * 4096.0) as usize]
    };
    let mut out = Vec::with_capacity(3 * n);
    for i in 0..n {
        out.extend_from_slice(&[enc(r[i]), enc(g[i]), enc(b[i])]);
    }
    out
}

impl Stage for FaceDetect {
    fn op(&self) -> &'static str {
        "face_detect"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = crate::stages::one_input(inputs, ValueKind::Image)?;
        if d.space == Some(ColorSpace::Srgb) {
            return Err("expects a linear image, got an sRGB-encoded one".into());
        }
        Ok(ValueDesc::other(ValueKind::Other(super::FACES)))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        match inputs.first() {
            Some(Value::Image(img)) => Ok(Value::Other(std::sync::Arc::new(self.detect(img)?))),
            _ => Err(Error::invalid("expects an image input")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_model_loads_and_blank_frames_have_no_faces() {
        let d = FaceDetect::new(Params::default()).unwrap();
        for v in [0.0, 0.2, 1.0] {
            let img = super::super::planar_image(
                320,
                240,
                vec![v; 3 * 320 * 240],
                ColorSpace::LinearSrgb,
            );
            let f = d.detect(&img).unwrap();
            assert!(f.boxes.is_empty(), "{f:?}");
            assert_eq!((f.width, f.height), (320, 240));
        }
        // Smaller than the smallest face: no search, no panic.
        let tiny = super::super::planar_image(8, 8, vec![0.5; 3 * 64], ColorSpace::LinearSrgb);
        assert!(d.detect(&tiny).unwrap().boxes.is_empty());
    }

    #[test]
    fn gaussian_blur_keeps_constants_and_mass() {
        let (w, h) = (9, 7);
        let mut flat = vec![0.25f32; w * h];
        gaussian_blur(&mut flat, w, h, 1.5);
        assert!(flat.iter().all(|v| (v - 0.25).abs() < 1e-6));
        // An impulse away from the borders keeps its mass and spreads.
        let (w, h) = (31, 31);
        let mut imp = vec![0f32; w * h];
        imp[15 * w + 15] = 1.0;
        gaussian_blur(&mut imp, w, h, 1.5);
        let sum: f32 = imp.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        assert!(imp[15 * w + 15] < 0.1 && imp[15 * w + 16] > 0.04);
        assert!((imp[15 * w + 14] - imp[15 * w + 16]).abs() < 1e-7);
    }

    #[test]
    fn bad_params_are_errors() {
        let e = compile(serde_json::json!({"detector": "yunet"})).unwrap_err();
        assert!(e.to_string().contains("model"), "{e}");
        let e = compile(serde_json::json!({"max_side": 5})).unwrap_err();
        assert!(e.to_string().contains("max_side"), "{e}");
        let e = compile(serde_json::json!({"extra_blur": -1.0})).unwrap_err();
        assert!(e.to_string().contains("extra_blur"), "{e}");
        let e = compile(serde_json::json!({"extra_scale": 0.0})).unwrap_err();
        assert!(e.to_string().contains("extra_scale"), "{e}");
    }
}
