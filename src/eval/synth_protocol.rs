//! Synthetic-raw evaluation: score a whole pipeline (decode to sRGB)
//! against the ideal rendering of a synthetic capture
//! ([`crate::synth::unprocess`]).
//!
//! Two sources of captures:
//! - sRGB images, unprocessed in memory with a configuration (noise level,
//!   camera, seed; each image's seed mixes the run seed with its file stem,
//!   so scores are reproducible and independent of the other files);
//! - a folder of synthetic DNGs written by `rawgraph synth`, each with its
//!   `NAME.ideal.png` ground truth next to it.
//!
//! The ideal rendering is what the default pipeline would produce with a
//! perfect demosaic and no noise, so the score measures demosaicking,
//! denoising and any departure from the default colour rendering.

use std::path::{Path, PathBuf};

use super::metrics::Rgb8;
use super::srgb_protocol::ImageScore;
use crate::error::{Error, Result};
use crate::graph::{self, Pipeline, RunOptions};
use crate::input::{self, Limits};
use crate::synth::unprocess::{image_seed, resolve_params, unprocess, SrgbInput, UnprocessConfig};
use crate::Value;

/// Runs `pipeline` on `frame` and returns its first output as 8-bit RGB.
fn render(
    pipeline: &Pipeline,
    frame: crate::RawFrame,
    name: &str,
) -> Result<(Rgb8, crate::graph::Timings)> {
    let out = graph::run(pipeline, frame, &RunOptions::default())
        .map_err(|e| Error::invalid(format!("{name}: {e}")))?;
    match out.outputs.first() {
        Some((_, Value::Image(i))) => {
            Ok((Rgb8::from_planar(i.width, i.height, &i.data), out.timings))
        }
        _ => Err(Error::invalid(format!(
            "{name}: pipeline output is not an image"
        ))),
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Unprocesses the sRGB image at `path` with `cfg`, runs `pipeline` and
/// scores it against the ideal rendering. Returns (score, ideal, output).
pub fn render_unprocessed(
    path: &Path,
    pipeline: &Pipeline,
    cfg: &UnprocessConfig,
    crop: usize,
) -> Result<(ImageScore, Rgb8, Rgb8)> {
    let name = path.display().to_string();
    let img = SrgbInput::load(path)?;
    let seed = image_seed(cfg.seed, &stem(path));
    let p = resolve_params(cfg, img.width, img.height, &name, seed)
        .map_err(|e| Error::invalid(format!("{name}: {e}")))?;
    let cap = unprocess(&img, &p).map_err(|e| Error::invalid(format!("{name}: {e}")))?;
    let ideal = Rgb8::from_planar(cap.ideal.width, cap.ideal.height, &cap.ideal.data);
    let (got, timings) = render(pipeline, cap.frame, &name)?;
    let score = super::score_pair(&name, &ideal, &got, crop, timings)?;
    Ok((score, ideal, got))
}

/// `NAME.ideal.png` next to `NAME.dng`.
pub fn ideal_path(dng: &Path) -> PathBuf {
    dng.with_file_name(format!("{}.ideal.png", stem(dng)))
}

/// The `.dng` files of a folder, sorted by name.
pub fn dng_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("dng"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Decodes a synthetic DNG, runs `pipeline` and scores it against its
/// `NAME.ideal.png`. Returns (score, ideal, output).
pub fn render_dng(
    path: &Path,
    pipeline: &Pipeline,
    crop: usize,
    limits: &Limits,
) -> Result<(ImageScore, Rgb8, Rgb8)> {
    let name = path.display().to_string();
    let ideal_file = ideal_path(path);
    if !ideal_file.is_file() {
        return Err(Error::invalid(format!(
            "{name}: no ground truth {} next to it",
            ideal_file.display()
        )));
    }
    let t = SrgbInput::load(&ideal_file)?;
    let ideal = Rgb8::from_planar(t.width, t.height, &t.data);
    let t0 = std::time::Instant::now();
    let frame = input::open(path, None, limits)?;
    let decode_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (got, mut timings) = render(pipeline, frame, &name)?;
    timings.decode_ms = Some(decode_ms);
    let score = super::score_pair(&name, &ideal, &got, crop, timings)?;
    Ok((score, ideal, got))
}
