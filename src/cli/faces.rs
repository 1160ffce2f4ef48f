//! `rawgraph faces`: runs the `face_detect` stage on photos (JPEG / PNG,
//! linearised from sRGB) and prints the boxes, or writes them as JSON (the
//! YuNet parity script, training/yunet_parity.py, reads that file).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::stages::exposure::face_detect::{Detector, FaceDetect, Params};
use crate::stages::exposure::{image_from_srgb8, FaceBox};

#[derive(Debug, Args)]
pub struct FacesArgs {
    /// Photos or folders of photos (jpg, jpeg, png).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// seetaface (built in) or yunet (needs --model and the `yunet` feature).
    #[arg(long, default_value = "seetaface")]
    pub detector: String,
    /// YuNet ONNX file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Longer side of the detection image, pixels.
    #[arg(long, default_value_t = 640)]
    pub max_side: usize,
    /// Second detection pass this many EV brighter (0 = one pass, as the
    /// YuNet parity check needs).
    #[arg(long, default_value_t = 0.0)]
    pub extra_ev: f32,
    /// Gaussian blur (sigma, detection pixels) of the second pass (0 with
    /// --extra-ev 0 = one pass).
    #[arg(long, default_value_t = 0.0)]
    pub extra_blur: f32,
    /// Score threshold (detector default when absent).
    #[arg(long)]
    pub score_threshold: Option<f32>,
    /// Write every image's boxes as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write each detection image (what the detector sees) as PNG here.
    #[arg(long)]
    pub dump_input: Option<PathBuf>,
}

/// What `faces --json` writes.
#[derive(Debug, Serialize)]
pub struct FacesReport {
    pub schema_version: crate::output::SchemaVersion,
    /// `seetaface` or `yunet`.
    pub detector: String,
    pub images: Vec<ImageFaces>,
}

/// Boxes of one image.
#[derive(Debug, Serialize)]
pub struct ImageFaces {
    pub file: String,
    pub width: usize,
    pub height: usize,
    /// Size of the detection image (the frame downscaled to `max_side`).
    pub det_width: usize,
    pub det_height: usize,
    pub boxes: Vec<FaceBox>,
}

/// Photos in the inputs (folders expanded, sorted).
pub fn photos(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let is_photo = |p: &Path| {
        matches!(
            p.extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .as_deref(),
            Some("jpg" | "jpeg" | "png")
        )
    };
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            v.retain(|f| is_photo(f));
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Decodes a photo into a linear sRGB image.
pub fn load_photo(p: &Path) -> Result<crate::Image> {
    let im = image::open(p)
        .map_err(|e| Error::decode(p, e.to_string()))?
        .to_rgb8();
    let (w, h) = (im.width() as usize, im.height() as usize);
    Ok(image_from_srgb8(w, h, im.as_raw()))
}

pub fn run(a: FacesArgs) -> Result<i32> {
    let detector = match a.detector.as_str() {
        "seetaface" => Detector::Seetaface,
        "yunet" => Detector::Yunet,
        d => {
            return Err(Error::invalid(format!(
                "--detector {d}: expected seetaface or yunet"
            )))
        }
    };
    let det = FaceDetect::new(Params {
        detector,
        model: a.model.clone(),
        max_side: a.max_side,
        score_threshold: a.score_threshold,
        extra_ev: a.extra_ev,
        extra_blur: a.extra_blur,
        extra_scale: 1.0,
        ..Params::default()
    })
    .map_err(Error::invalid)?;
    let files = photos(&a.inputs);
    if files.is_empty() {
        return Err(Error::invalid("no photos (jpg, jpeg, png) in the inputs"));
    }
    let mut all = Vec::new();
    let mut total = 0;
    for f in &files {
        let img = load_photo(f)?;
        let faces = det.detect(&img)?;
        if let Some(dir) = &a.dump_input {
            let (dw, dh, rgb8) = det.detection_input(&img);
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let out = dir.join(format!("{stem}.png"));
            image::save_buffer(&out, &rgb8, dw as u32, dh as u32, image::ColorType::Rgb8)
                .map_err(|e| Error::invalid(format!("{}: {e}", out.display())))?;
        }
        let (dw, dh) = crate::stages::exposure::grid_size(img.width, img.height, a.max_side);
        total += faces.boxes.len();
        println!("{}: {} face(s)", f.display(), faces.boxes.len());
        for b in &faces.boxes {
            println!(
                "  x {:.1} y {:.1} w {:.1} h {:.1} score {:.3}",
                b.x, b.y, b.w, b.h, b.score
            );
        }
        all.push(ImageFaces {
            file: f.display().to_string(),
            width: img.width,
            height: img.height,
            det_width: dw,
            det_height: dh,
            boxes: faces.boxes,
        });
    }
    println!(
        "{} image(s), {total} face(s), detector {}",
        files.len(),
        a.detector
    );
    if let Some(j) = &a.json {
        let report = FacesReport {
            schema_version: crate::output::SchemaVersion,
            detector: a.detector.to_string(),
            images: all,
        };
        let s = serde_json::to_string_pretty(&report).map_err(|e| Error::invalid(e.to_string()))?;
        crate::output::write_atomic(j, |w| std::io::Write::write_all(w, s.as_bytes()))?;
    }
    Ok(0)
}
