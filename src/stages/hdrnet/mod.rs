//! `hdrnet`: learned local tone mapping by deep bilateral learning (Gharbi,
//! Chen, Barron, Hasinoff & Durand 2017, "Deep Bilateral Learning for
//! Real-Time Image Enhancement"). A small network on a fixed-size thumbnail
//! predicts a bilateral grid of 3x4 affine colour transforms; a learned
//! per-pixel guide picks the luma coordinate; every full-resolution pixel
//! is transformed by the trilinearly interpolated affine. The shipped model
//! (`calibration/models/hdrnet.safetensors`, trained by
//! `training/train_hdrnet.py`) reproduces the `local_laplacian` stage with
//! its default params at a fraction of its cost.
//!
//! Input: linear RGB (scene-referred, any exposure; values above 1 are
//! fine). Output: display-referred linear RGB in [0, 1], same size and
//! primaries: follow it with `srgb_encode`.
//!
//! | file | part |
//! |---|---|
//! | coeffs.rs | thumbnail + coefficient network -> [`BilateralGrid`] |
//! | guide.rs | per-pixel guide (colour matrix, curves, mix) |
//! | slice_apply.rs | trilinear slice + per-pixel affine, rayon rows |

pub mod coeffs;
pub mod guide;
pub mod slice_apply;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{one_input, parse_params, take_image, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Value, ValueDesc, ValueKind};
use crate::nn::hdrnet::Hdrnet as HdrnetModel;
pub use guide::Guide;
pub use slice_apply::BilateralGrid;

/// YAML params of `hdrnet`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `default` (the shipped model in `$RAWGRAPH_MODELS` or
    /// `calibration/models/hdrnet.safetensors`) or a path to a
    /// `.safetensors` file.
    #[serde(default = "default_model")]
    pub model: String,
}

fn default_model() -> String {
    "default".into()
}

impl Default for Params {
    fn default() -> Self {
        Params {
            model: default_model(),
        }
    }
}

/// Where a model name resolves to.
pub fn model_path(model: &str) -> PathBuf {
    if model == "default" {
        let dir = std::env::var_os("RAWGRAPH_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models")
            });
        dir.join("hdrnet.safetensors")
    } else {
        PathBuf::from(model)
    }
}

/// The compiled op: the model and its guide.
#[derive(Debug)]
pub struct Hdrnet {
    model: Arc<HdrnetModel>,
    guide: Guide,
}

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let model = HdrnetModel::load(model_path(&p.model)).map_err(|e| e.to_string())?;
    Ok(Box::new(Hdrnet::new(model)))
}

impl Hdrnet {
    /// Wraps a loaded model.
    pub fn new(model: HdrnetModel) -> Hdrnet {
        let guide = Guide::new(model.guide());
        Hdrnet {
            model: Arc::new(model),
            guide,
        }
    }

    /// The loaded network.
    pub fn model(&self) -> &HdrnetModel {
        &self.model
    }

    /// The compiled guide.
    pub fn guide(&self) -> &Guide {
        &self.guide
    }

    /// Tone-maps a planar linear RGB image (`3 x h x w`) in place.
    pub fn apply(&self, planes: &mut [f32], w: usize, h: usize) -> Result<()> {
        let grid = coeffs::predict(&self.model, planes, w, h)?;
        slice_apply::slice_apply(&grid, &self.guide, planes, w, h)
    }
}

impl Stage for Hdrnet {
    fn op(&self) -> &'static str {
        "hdrnet"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = one_input(inputs, ValueKind::Image)?;
        match d.space {
            Some(ColorSpace::Srgb) => Err("expects linear RGB, got an sRGB-encoded image".into()),
            s => Ok(ValueDesc::image(
                d.width,
                d.height,
                s.unwrap_or(ColorSpace::LinearSrgb),
            )),
        }
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut img = linear_input(inputs)?;
        let (w, h) = (img.width, img.height);
        self.apply(&mut img.data, w, h)?;
        Ok(Value::Image(img.into()))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// The coefficient network runs on the host (a 256x256 thumbnail, a
    /// few milliseconds); the full-resolution guide + slice + apply runs
    /// fused on the device (`kernels/bilateral_slice.cu`).
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut img = linear_input(inputs)?;
        let (w, h) = (img.width, img.height);
        let grid = coeffs::predict(&self.model, &img.data, w, h)?;
        crate::backend::cuda::bilateral_slice_apply(
            &mut img.data,
            w,
            h,
            &grid.data,
            [grid.width, grid.height, grid.depth],
            self.model.guide(),
        )?;
        Ok(Value::Image(img.into()))
    }
}

/// The stage's one input, owned, refused when it is already sRGB-encoded.
fn linear_input(inputs: Vec<Value>) -> Result<crate::frame::Image> {
    let img = take_image(
        inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("no input"))?,
    )?;
    if img.space == ColorSpace::Srgb {
        return Err(Error::invalid(
            "hdrnet expects linear RGB, got an sRGB-encoded image",
        ));
    }
    Ok(img)
}
