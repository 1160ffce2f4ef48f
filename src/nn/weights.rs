//! Model weights from a safetensors file, validated before use.
//!
//! The file's `__metadata__` carries the architecture hyper-parameters as
//! strings (e.g. `{"arch": "dmdn", "version": "1", "depth": "5", ...}`).
//! Tensors may be stored as F32, F16 or BF16 and are converted to f32.
//! Every problem with the file's content — unreadable, truncated, bad header,
//! missing tensor, wrong shape, bad metadata — is an [`Error::Model`] naming
//! the file; nothing here panics on file content.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// Largest weights file accepted (bytes); the shipped models are < 5 MB.
pub const MAX_WEIGHTS_BYTES: u64 = 256 << 20;

/// One stored tensor converted to f32 (row-major, `shape` as stored).
#[derive(Clone, Debug)]
pub struct WeightTensor {
    /// Shape as stored (PyTorch order, e.g. OIHW for conv weights).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// All tensors and the metadata of one weights file.
#[derive(Clone, Debug)]
pub struct Weights {
    path: PathBuf,
    metadata: HashMap<String, String>,
    tensors: HashMap<String, WeightTensor>,
}

impl Weights {
    /// Reads and parses `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if len > MAX_WEIGHTS_BYTES {
            return Err(model_err(
                path,
                format!("file is {len} bytes, limit {MAX_WEIGHTS_BYTES}"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses an in-memory safetensors buffer; `path` is only used in errors.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self> {
        let path = path.as_ref();
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| model_err(path, format!("not a valid safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| model_err(path, format!("not a valid safetensors file: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let mut tensors = HashMap::new();
        for (name, view) in st.iter() {
            let shape = view.shape().to_vec();
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(model_err(
                        path,
                        format!("tensor '{name}' has unsupported dtype {other:?}"),
                    ))
                }
            };
            let numel: usize = shape.iter().product();
            if data.len() != numel {
                return Err(model_err(
                    path,
                    format!(
                        "tensor '{name}' holds {} values, shape {shape:?}",
                        data.len()
                    ),
                ));
            }
            if data.iter().any(|v| !v.is_finite()) {
                return Err(model_err(
                    path,
                    format!("tensor '{name}' has non-finite values"),
                ));
            }
            tensors.insert(name.to_string(), WeightTensor { shape, data });
        }
        Ok(Weights {
            path: path.to_path_buf(),
            metadata,
            tensors,
        })
    }

    /// The file these weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `__metadata__` map (empty when the file has none).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Names of all stored tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Stored shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Metadata string `key`, or a typed error if it is missing.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.err(format!("metadata key '{key}' missing")))
    }

    /// Metadata `key` parsed as an integer in `lo..=hi`.
    pub fn meta_usize(&self, key: &str, lo: usize, hi: usize) -> Result<usize> {
        let s = self.meta(key)?;
        let v: usize = s
            .trim()
            .parse()
            .map_err(|_| self.err(format!("metadata '{key}' = '{s}' is not an integer")))?;
        if v < lo || v > hi {
            return Err(self.err(format!("metadata '{key}' = {v} outside {lo}..={hi}")));
        }
        Ok(v)
    }

    /// Metadata `key` parsed as `true` / `false`.
    pub fn meta_bool(&self, key: &str) -> Result<bool> {
        match self.meta(key)? {
            "true" => Ok(true),
            "false" => Ok(false),
            s => Err(self.err(format!("metadata '{key}' = '{s}' is not true/false"))),
        }
    }

    /// Removes and returns tensor `name`, checking that its shape is `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| self.err(format!("tensor '{name}' missing")))?;
        if t.shape != shape {
            return Err(self.err(format!(
                "tensor '{name}' has shape {:?}, architecture needs {shape:?}",
                t.shape
            )));
        }
        Ok(t.data)
    }

    /// Errors if tensors remain that the architecture did not use.
    pub fn finish(&self) -> Result<()> {
        if let Some(name) = self.tensors.keys().min() {
            return Err(self.err(format!(
                "unexpected tensor '{name}' (architecture does not use it)"
            )));
        }
        Ok(())
    }

    /// An [`Error::Model`] for this file.
    pub fn err(&self, reason: impl Into<String>) -> Error {
        model_err(&self.path, reason)
    }
}

fn model_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
