//! Opening inputs: raw files through rawler, headerless dumps through a
//! sidecar, with resource limits checked first.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::raw::sidecar::{decode_dump, find_sidecar, Sidecar};
use crate::raw::{decode, RawFrame, DEFAULT_MAX_MEGAPIXELS};

/// Resource limits applied to every input before decoding pixels.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted frame, megapixels.
    pub max_megapixels: f64,
    /// Largest accepted file, bytes.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_megapixels: DEFAULT_MAX_MEGAPIXELS,
            max_file_bytes: 1 << 30,
        }
    }
}

/// Decodes `path`: as a headerless dump when a sidecar is given or found
/// next to it (`IN.yaml` / `IN.raw.yaml`), else as a raw file.
pub fn open(path: &Path, sidecar: Option<&Path>, limits: &Limits) -> Result<RawFrame> {
    let found: Option<PathBuf> = match sidecar {
        Some(s) => Some(s.to_path_buf()),
        None => find_sidecar(path),
    };
    match found {
        Some(s) => {
            let sc = Sidecar::load(&s)?;
            if let Ok(md) = std::fs::metadata(path) {
                if md.len() > limits.max_file_bytes {
                    return Err(crate::error::Error::Limit {
                        path: path.into(),
                        reason: format!(
                            "file is {} bytes, over the limit of {} (raise --max-file-mb)",
                            md.len(),
                            limits.max_file_bytes
                        ),
                    });
                }
            }
            decode_dump(path, &sc, limits.max_megapixels)
        }
        None => decode::decode_file(path, limits.max_megapixels, limits.max_file_bytes),
    }
}
