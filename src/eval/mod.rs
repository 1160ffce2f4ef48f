//! Quality evaluation against ground truth: metrics ([`metrics`]) and the
//! protocols that produce test inputs ([`srgb_protocol`]).

pub mod metrics;
pub mod srgb_protocol;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
