//! The CUDA backend's API in builds without the `cuda` feature: the same
//! types and functions as `src/backend/cuda/`, each returning
//! [`Error::CudaUnavailable`]. Stages call into `crate::backend::cuda`
//! unconditionally; the executor never places a stage on CUDA here because
//! [`available`] says no.

use crate::backend::DeviceTimes;
use crate::color::Mat3;
use crate::error::{Error, Result};
use crate::frame::Mosaic;
use crate::raw::CfaPattern;

/// Whether this build has the CUDA backend.
pub const ENABLED: bool = false;

const WHY: &str = "rawgraph was built without the `cuda` feature (cargo build --features cuda)";

fn unavailable<T>() -> Result<T> {
    Err(Error::CudaUnavailable(WHY.into()))
}

/// Always `Err`: this build has no CUDA backend.
pub fn available() -> std::result::Result<(), String> {
    Err(WHY.into())
}

/// Always `Err`: this build has no NVRTC.
pub fn nvrtc_available() -> std::result::Result<(), String> {
    Err(WHY.into())
}

/// Always `Err`.
pub fn compile_all(_arch: &str) -> Result<Vec<(&'static str, usize)>> {
    unavailable()
}

/// See the CUDA build's `RawPrep`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RawPrep {
    pub black_level: bool,
    pub clip_negative: bool,
    pub gains: Option<[f32; 3]>,
    pub clip_highlights: bool,
}

/// See the CUDA build's `DemosaicMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemosaicMethod {
    Bilinear,
    Mhc,
    Menon { refine: bool },
}

/// See the CUDA build's `ColorSteps`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColorSteps {
    pub matrix: Option<Mat3>,
    pub gain: Option<f32>,
    pub tone_lut: Option<Vec<f32>>,
    pub tone_max: f32,
    pub srgb_lut: Option<Vec<f32>>,
}

/// See the CUDA build's `ClassicalChain`.
#[derive(Debug, Clone)]
pub struct ClassicalChain {
    pub prep: RawPrep,
    pub demosaic: DemosaicMethod,
    pub color: ColorSteps,
}

/// See the CUDA build's `ChainTimes`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChainTimes {
    pub upload_ms: f64,
    pub raw_prep_ms: f64,
    pub demosaic_ms: f64,
    pub color_ms: f64,
    pub download_ms: f64,
}

impl ClassicalChain {
    /// Always `Err`.
    pub fn run(&self, _m: &Mosaic) -> Result<(Vec<f32>, ChainTimes)> {
        unavailable()
    }
}

/// The Bayer phase as four 2-bit colour codes (as the CUDA build).
pub fn cfa_code(c: CfaPattern) -> i32 {
    c.layout()
        .iter()
        .enumerate()
        .fold(0, |a, (i, &col)| a | ((col as i32) << (2 * i)))
}

/// Always `Err`.
pub fn raw_prep(_m: &mut Mosaic, _p: &RawPrep) -> Result<DeviceTimes> {
    unavailable()
}

/// Always `Err`.
pub fn demosaic(_m: &Mosaic, _method: DemosaicMethod) -> Result<(Vec<f32>, DeviceTimes)> {
    unavailable()
}

/// Always `Err`.
pub fn color_pipeline(_data: &mut [f32], _steps: &ColorSteps) -> Result<DeviceTimes> {
    unavailable()
}

/// Always `Err`.
pub fn synchronize() -> Result<()> {
    unavailable()
}

/// Always `Err`.
pub fn bilateral_slice_apply(
    _planes: &mut [f32],
    _w: usize,
    _h: usize,
    _grid: &[f32],
    _grid_dims: [usize; 3],
    _guide: &crate::nn::hdrnet::GuideWeights,
) -> Result<DeviceTimes> {
    unavailable()
}
