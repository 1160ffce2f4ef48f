//! Quality evaluation against ground truth: metrics ([`metrics`]) and the
//! protocols that produce test inputs ([`srgb_protocol`]).

pub mod ciede2000;
pub mod exposure;
pub mod metrics;
pub mod report;
pub mod srgb_protocol;
pub mod synth_protocol;
pub mod tonemap_protocol;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::graph::Timings;
use metrics::Rgb8;
use srgb_protocol::ImageScore;

/// Image files (PNG, TIFF, JPEG) in a folder, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            matches!(
                ext.as_str(),
                "png" | "tif" | "tiff" | "jpg" | "jpeg" | "bmp"
            )
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The shared data folder: `$RAWGRAPH_DATA`, else `../shared/data`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("RAWGRAPH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}

/// Scores an output against its ground truth (CPSNR, SSIM, CIEDE2000 and
/// per-channel mean ratios with a `crop`-pixel border); errors name the image.
pub fn score_pair(
    name: &str,
    truth: &Rgb8,
    got: &Rgb8,
    crop: usize,
    timings: Timings,
) -> Result<ImageScore> {
    let named = |e: Error| Error::invalid(format!("{name}: {e}"));
    if (truth.width, truth.height) != (got.width, got.height) {
        return Err(Error::invalid(format!(
            "{name}: output is {}x{} but the ground truth is {}x{}",
            got.width, got.height, truth.width, truth.height
        )));
    }
    Ok(ImageScore {
        image: name.to_string(),
        cpsnr: metrics::cpsnr(truth, got, crop).map_err(named)?,
        ssim: metrics::ssim(truth, got, crop).map_err(named)?,
        ciede2000: ciede2000::ciede2000_mean(truth, got, crop).map_err(named)?,
        channel_ratio: metrics::channel_mean_ratio(truth, got, crop).map_err(named)?,
        timings,
    })
}
