//! `color_correct`: white-balanced camera RGB -> linear sRGB (D65).
//!
//! The matrix comes from the raw's DNG ColorMatrix (XYZ -> camera) as dcraw
//! builds it: cam_from_srgb = ColorMatrix x sRGB_to_XYZ, rows normalised to
//! sum 1 so that white-balanced camera white maps to sRGB white (a von
//! Kries adaptation in camera space to D65), then inverted. Where the
//! source gives a camera -> sRGB matrix directly (sidecars), that is used.
//! With two calibration illuminants, the one closest to D65 is taken.
//! ([`RawMeta::camera_to_srgb`] picks the matrix; the maths is
//! [`crate::color::camera_to_srgb`].)

use serde::Deserialize;

use super::row_kernel::{run_image_rows, Header, HeaderKind, ImageRowFn, RowKernel, RowShape};
use super::{one_input, parse_params, take_image, RunCtx, Stage};
use crate::backend::device_step::DeviceStep;
use crate::color::{self, Mat3};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Value, ValueDesc, ValueKind};
use crate::raw::RawMeta;

/// Which matrix to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MatrixSource {
    /// The file's own matrix; identity when it has none.
    #[default]
    Auto,
    /// Treat camera RGB as linear sRGB.
    Identity,
    /// The `matrix` parameter (camera -> sRGB, row-major).
    Custom,
}

/// YAML params of `color_correct`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub source: MatrixSource,
    /// Camera RGB -> linear sRGB for `source: custom`.
    pub matrix: Option<Mat3>,
}

/// The compiled `color_correct` op.
#[derive(Debug)]
pub struct ColorCorrect {
    p: Params,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        match (self.source, &self.matrix) {
            (MatrixSource::Custom, None) => {
                return Err(crate::stages::CompileError::params(
                    "source custom needs `matrix: [[..],[..],[..]]`",
                ))
            }
            (MatrixSource::Custom, Some(m)) if m.iter().flatten().any(|v| !v.is_finite()) => {
                return Err(crate::stages::CompileError::params("matrix must be finite"))
            }
            (MatrixSource::Custom, _) => {}
            (_, Some(_)) => {
                return Err(crate::stages::CompileError::params(
                    "`matrix` is only used with source: custom",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(ColorCorrect { p }))
}

impl Stage for ColorCorrect {
    fn op(&self) -> &'static str {
        "color_correct"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = one_input(inputs, ValueKind::Image)?;
        if d.space != Some(ColorSpace::Camera) {
            return Err(format!(
                "expects a camera-RGB image, got {:?}",
                d.space.unwrap_or(ColorSpace::Camera)
            ));
        }
        Ok(ValueDesc::image(d.width, d.height, ColorSpace::LinearSrgb))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut img = take_image(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        let f = matrix_kernel(self.matrix(&img.meta)?);
        run_image_rows(&mut img, &f);
        img.space = ColorSpace::LinearSrgb;
        Ok(Value::Image(img.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape::POINT)
    }

    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space() != Some(ColorSpace::Camera) {
            return Err(Error::invalid("expected a camera-RGB image"));
        }
        let mut out = input.clone();
        out.kind = HeaderKind::Image {
            space: ColorSpace::LinearSrgb,
        };
        Ok(Some((
            RowKernel::Image(matrix_kernel(self.matrix(&input.meta)?)),
            out,
        )))
    }

    /// The colour pipeline's matrix step, as [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let Some((_, out)) = self.row_kernel(input)? else {
            return Ok(None);
        };
        Ok(Some((DeviceStep::Matrix(self.matrix(&input.meta)?), out)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// kernels/color_pipeline.cu with only the matrix step enabled.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut img = take_image(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        let steps = crate::backend::cuda::ColorSteps {
            matrix: Some(self.matrix(&img.meta)?),
            ..Default::default()
        };
        crate::backend::cuda::color_pipeline(&mut img.data, &steps)?;
        img.space = ColorSpace::LinearSrgb;
        Ok(Value::Image(img.into()))
    }
}

/// The per-pixel kernel: `out = m * [r, g, b]`.
fn matrix_kernel(m: Mat3) -> ImageRowFn {
    Box::new(move |[r, g, b]| matrix_rows(&m, r, g, b))
}

crate::avx2_dispatch!(
    /// `m` times every pixel of the planar runs `r`, `g`, `b` (equal
    /// lengths), in place; 8 pixels at a time on AVX2 machines.
    fn matrix_rows(m: &Mat3, r: &mut [f32], g: &mut [f32], b: &mut [f32]) => matrix_rows_body
);

/// The body of [`matrix_rows`].
#[inline(always)]
fn matrix_rows_body(m: &Mat3, r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    let n = r.len().min(g.len()).min(b.len());
    let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
    for i in 0..n {
        let o = color::apply(m, [r[i], g[i], b[i]]);
        r[i] = o[0];
        g[i] = o[1];
        b[i] = o[2];
    }
}

impl ColorCorrect {
    /// The camera -> linear sRGB matrix this op applies to a frame.
    pub fn matrix(&self, meta: &RawMeta) -> Result<Mat3> {
        Ok(match self.p.source {
            MatrixSource::Auto => meta.camera_to_srgb()?,
            MatrixSource::Identity => color::IDENTITY,
            MatrixSource::Custom => self.p.matrix.unwrap_or(color::IDENTITY),
        })
    }
}
