//! Compiled pipeline stages: one file (or folder) per op; the file name is
//! the YAML `op:` name and the timing label. This module holds the
//! [`Stage`] trait and the helpers stages share; [`registry`] maps op names
//! to their `compile` functions; [`row_kernel`] is the contract of the
//! fused executor.
//!
//! A stage is compiled once from its YAML params ([`compile`]), checks its
//! input types and shapes before any pixel work ([`Stage::infer`]) and then
//! runs on the CPU ([`Stage::run_cpu`]) or, where it has a kernel, on CUDA
//! ([`Stage::run_cuda`]).

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::backend::device_step::DeviceStep;
use crate::error::{Error, Result};
use crate::frame::{Image, Mosaic, Value, ValueDesc};
pub use registry::{compile, OPS};
use row_kernel::{Header, RowKernel, RowShape};

pub mod black_level;
pub mod color_correct;
pub mod defect_correct;
pub mod demosaic_ahd;
pub mod demosaic_ari;
pub mod demosaic_bilinear;
pub mod demosaic_denoise_learned;
pub mod demosaic_menon;
pub mod demosaic_mhc;
pub mod demosaic_rcd;
pub mod demosaic_rcd_mlri;
#[cfg(test)]
mod demosaic_testing;
pub mod denoise_profiled;
pub mod exposure;
pub mod exposure_gain;
pub mod false_color_suppress;
pub mod hdrnet;
pub mod lens_shading;
pub mod local_laplacian;
pub mod noise_estimate;
pub mod orient;
pub mod raw_source;
pub mod registry;
pub mod resize;
pub mod row_kernel;
pub mod sharpen;
pub mod srgb_encode;
pub mod tone_curve;
pub mod white_balance;
pub mod yuv_encode;

/// Per-call context handed to a running stage.
#[derive(Debug, Clone, Copy)]
pub struct RunCtx<'a> {
    /// The stage id from the pipeline file.
    pub stage_id: &'a str,
}

/// A compiled op: parameters validated, ready to run on any frame.
pub trait Stage: Send + Sync + std::fmt::Debug {
    /// The op name (== file name == timing label).
    fn op(&self) -> &'static str;

    /// Accepted number of inputs `(min, max)`.
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    /// Output type and shape from the input descriptors; errors explain the
    /// mismatch (the caller adds file/stage context).
    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String>;

    /// Runs on the CPU. `inputs` are owned: the last consumer of a buffer
    /// may reuse it in place.
    fn run_cpu(&self, ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value>;

    /// Row geometry when the op can run as a row kernel inside a fused
    /// segment (see [`Stage::row_kernel`]); `None`, the default, makes the
    /// stage a segment boundary for the scheduling pass.
    fn row_shape(&self) -> Option<RowShape> {
        None
    }

    /// The op's row kernel for a frame whose input is described by
    /// `input`, with its per-frame constants computed once, plus the
    /// header of its output. `Ok(None)` when this frame needs whole-frame
    /// pixels first (a gray-world white balance): the executor then runs
    /// the stage on its own. Implemented by the ops with a
    /// [`Stage::row_shape`]; their `run_cpu` runs the same kernel.
    fn row_kernel(&self, _input: &Header) -> Result<Option<(RowKernel, Header)>> {
        Ok(None)
    }

    /// Why the frame whose input is described by `input` passes through
    /// this stage unchanged, when it does (a `lens_shading` stage with no
    /// map for the frame). The executor then hands the input on as the
    /// stage's value without running it, and its timing row reads `op
    /// (skipped: why)`, as for the stages a LinearRaw frame skips. `None`,
    /// the default: the stage runs.
    fn skip_reason(&self, _input: &Header) -> Option<String> {
        None
    }

    /// This op's step of a device-resident classical segment (see
    /// [`crate::backend::device_step`]) for a frame whose input is
    /// described by `input`, with its per-frame constants, plus the header
    /// of its output. `Ok(None)`, the default: the op has no such step, or
    /// this frame needs host work first (a gray-world white balance, auto
    /// exposure); the segment then ends before this member. The step does
    /// what [`Stage::run_cuda`] does, so a segment's pixels equal the
    /// member-by-member CUDA run.
    fn device_step(&self, _input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        Ok(None)
    }

    /// Whether [`Stage::run_cuda`] is implemented.
    fn has_cuda(&self) -> bool {
        false
    }

    /// A run over a sequence of frames starts (`process --sequence`):
    /// stateful control stages (temporal exposure smoothing) reset their
    /// history and carry state from frame to frame until the process
    /// ends. Pixel stages ignore it.
    fn start_sequence(&self) {}

    /// Runs on CUDA; the default reports that the op has no kernel.
    fn run_cuda(&self, ctx: &RunCtx, _inputs: Vec<Value>) -> Result<Value> {
        Err(Error::NoBackend {
            stage: ctx.stage_id.to_string(),
            op: self.op().to_string(),
            backend: "cuda".into(),
        })
    }
}

/// An op's typed params: what serde cannot check (ranges, sizes, paths
/// that must come together), checked once when the pipeline is built.
/// Every op's params type implements it ([`parse_params`] requires it),
/// so a bad value is a [`CompileError::Params`] at the YAML line, never a
/// failure in the middle of a run; a type whose every value is valid
/// keeps the default (no checks).
pub trait Validate {
    /// `Err` names the offending field and its allowed values.
    fn validate(&self) -> std::result::Result<(), CompileError> {
        Ok(())
    }
}

/// Deserialises a params block (absent = all defaults; serde reports
/// unknown fields and wrong types), then validates it.
pub(crate) fn parse_params<P: DeserializeOwned + Default + Validate>(
    v: serde_json::Value,
) -> std::result::Result<P, CompileError> {
    let p = if v.is_null() {
        P::default()
    } else {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            CompileError::Params(if path == "." || path.is_empty() {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            })
        })?
    };
    p.validate()?;
    Ok(p)
}

/// Why an op could not be compiled from its YAML entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// No op of this name exists.
    UnknownOp(String),
    /// The `params` mapping does not parse into the op's typed params
    /// (unknown field, wrong type, value out of range); the message names
    /// the field. Reported at the `params:` line of the YAML.
    Params(String),
    /// The params parse but cannot be used (a model file that does not
    /// load, an inconsistent combination).
    Invalid(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::UnknownOp(op) => {
                write!(
                    f,
                    "unknown op '{op}' (known ops: {})",
                    registry::OPS.join(", ")
                )
            }
            CompileError::Params(m) => write!(f, "params: {m}"),
            CompileError::Invalid(m) => f.write_str(m),
        }
    }
}

impl CompileError {
    /// A [`CompileError::Params`] with this message (the field first).
    pub fn params(m: impl Into<String>) -> Self {
        CompileError::Params(m.into())
    }
}

impl From<String> for CompileError {
    fn from(m: String) -> Self {
        CompileError::Invalid(m)
    }
}

impl From<CompileError> for String {
    fn from(e: CompileError) -> String {
        e.to_string()
    }
}

impl std::error::Error for CompileError {}

impl From<&str> for CompileError {
    fn from(m: &str) -> Self {
        CompileError::Invalid(m.to_string())
    }
}

/// What an op's `compile` returns.
pub type CompileResult = std::result::Result<Box<dyn Stage>, CompileError>;

/// Checks a numeric parameter range.
pub(crate) fn check_range(
    name: &str,
    v: f32,
    lo: f32,
    hi: f32,
) -> std::result::Result<(), CompileError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(CompileError::Params(format!(
            "{name} = {v} is outside [{lo}, {hi}]"
        )))
    }
}

/// Expects exactly one input of the given kind.
pub(crate) fn one_input(
    inputs: &[ValueDesc],
    kind: crate::frame::ValueKind,
) -> std::result::Result<ValueDesc, String> {
    match inputs {
        [d] if d.kind == kind => Ok(*d),
        [d] => Err(format!("expects a {kind} input, got a {}", d.kind)),
        _ => Err(format!("expects 1 input, got {}", inputs.len())),
    }
}

/// Shape check of a stage taking a mosaic and, optionally, a noise estimate
/// (`noise_estimate`) as its second input; returns the mosaic's description.
pub(crate) fn mosaic_and_optional_noise(
    inputs: &[ValueDesc],
) -> std::result::Result<ValueDesc, String> {
    use crate::frame::ValueKind;
    let d = match inputs {
        [d] | [d, _] if d.kind == ValueKind::Mosaic => *d,
        [d, ..] => return Err(format!("expects a mosaic input first, got a {}", d.kind)),
        [] => return Err("expects a mosaic input".into()),
    };
    if let Some(n) = inputs.get(1) {
        if n.kind != ValueKind::Noise {
            return Err(format!(
                "second input must be a noise estimate, got a {}",
                n.kind
            ));
        }
    }
    Ok(d)
}

/// Takes the mosaic out of a value, cloning only if it is shared.
pub(crate) fn take_mosaic(v: Value) -> Result<Mosaic> {
    match v {
        Value::Mosaic(m) => Ok(Arc::try_unwrap(m).unwrap_or_else(|a| (*a).clone())),
        other => Err(Error::invalid(format!(
            "expected a mosaic, got a {}",
            other.kind()
        ))),
    }
}

/// Takes the image out of a value, cloning only if it is shared.
pub(crate) fn take_image(v: Value) -> Result<Image> {
    match v {
        Value::Image(m) => Ok(Arc::try_unwrap(m).unwrap_or_else(|a| (*a).clone())),
        Value::Encoded(_) => Err(Error::invalid(
            "expected a float image, got one already quantised for output",
        )),
        other => Err(Error::invalid(format!(
            "expected an image, got a {}",
            other.kind()
        ))),
    }
}

/// Borrows the mosaic in a value.
pub(crate) fn mosaic_ref(v: &Value) -> Result<&Mosaic> {
    match v {
        Value::Mosaic(m) => Ok(m),
        other => Err(Error::invalid(format!(
            "expected a mosaic, got a {}",
            other.kind()
        ))),
    }
}

/// Rows per rayon work item for row-parallel passes.
pub(crate) const ROWS_PER_TASK: usize = 16;
