//! `tone_curve`: scene-linear -> display-linear highlight roll-off.
//!
//! `filmic`: identity below `knee`, then an exponential shoulder with unit
//! slope at the knee (C1-continuous), normalised so that `white_point`
//! maps to 1.0. Applied per channel on linear sRGB, so highlights
//! desaturate gracefully instead of clipping hard. `linear` passes the
//! image through (clipping happens at encode).
//!
//! An optional second input, the `exposure_control` of an `exposure_meter`
//! stage, raises the white point to the meter's highlight-protection value
//! (`max(white_point, control.white_point)`), so protected highlights such
//! as a bright sky are compressed instead of clipped.

use std::sync::Arc;

use serde::Deserialize;

use super::row_kernel::{run_image_rows, Header, ImageRowFn, RowKernel, RowShape};
use super::{check_range, parse_params, take_image, RunCtx, Stage};
use crate::backend::device_step::DeviceStep;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Value, ValueDesc, ValueKind};

/// Curve family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Curve {
    #[default]
    Filmic,
    Linear,
}

/// YAML params of `tone_curve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub curve: Curve,
    /// Linear value where the shoulder starts, in (0, 1).
    pub knee: f32,
    /// Linear value that maps to display white.
    pub white_point: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            curve: Curve::Filmic,
            knee: 0.6,
            white_point: 1.0,
        }
    }
}

/// The compiled `tone_curve` op.
#[derive(Debug)]
pub struct ToneCurve {
    p: Params,
    /// [`ToneCurve::lut`], computed once when the curve is built.
    table: Arc<[f32]>,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("knee", self.knee, 0.05, 0.95)?;
        check_range("white_point", self.white_point, 0.1, 64.0)?;
        if self.white_point <= self.knee {
            return Err(crate::stages::CompileError::Params(format!(
                "white_point {} must be above knee {}",
                self.white_point, self.knee
            )));
        }
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    Ok(Box::new(build(params)?))
}

/// The compiled op as its concrete type (for callers that need its LUT,
/// e.g. the fused CUDA chain).
pub fn build(
    params: serde_json::Value,
) -> std::result::Result<ToneCurve, crate::stages::CompileError> {
    let p: Params = parse_params(params)?;
    Ok(ToneCurve::new(p))
}

/// The filmic shoulder, not normalised.
#[inline(always)]
fn shoulder(x: f32, k: f32) -> f32 {
    if x <= k {
        x
    } else {
        let s = 1.0 - k;
        k + s * (1.0 - (-(x - k) / s).exp())
    }
}

impl ToneCurve {
    /// The curve as a function of one linear value.
    pub fn eval(&self, x: f32) -> f32 {
        match self.p.curve {
            Curve::Linear => x,
            Curve::Filmic => {
                let k = self.p.knee;
                shoulder(x.max(0.0), k) / shoulder(self.p.white_point, k)
            }
        }
    }
}

impl Stage for ToneCurve {
    fn op(&self) -> &'static str {
        "tone_curve"
    }

    fn arity(&self) -> (usize, usize) {
        (1, 2)
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = super::one_input(&inputs[..inputs.len().min(1)], ValueKind::Image)?;
        if let Some(c) = inputs.get(1) {
            if c.kind != ValueKind::Other(super::exposure::EXPOSURE_CONTROL) {
                return Err(format!(
                    "second input must be an exposure_control, got a {}",
                    c.kind
                ));
            }
        }
        if d.space == Some(ColorSpace::Srgb) {
            return Err("expects a linear image, got an sRGB-encoded one".into());
        }
        Ok(d)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let (img, this) = self.with_control(inputs)?;
        let mut img = take_image(img)?;
        if this.p.curve == Curve::Linear {
            return Ok(Value::Image(img.into()));
        }
        run_image_rows(&mut img, &this.kernel());
        Ok(Value::Image(img.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape::POINT)
    }

    /// With one input (no exposure control) the curve is this stage's own,
    /// its table computed at build time.
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space().is_none_or(|s| s == ColorSpace::Srgb) {
            return Err(Error::invalid("expected a linear image"));
        }
        let f: ImageRowFn = if self.p.curve == Curve::Linear {
            Box::new(|_| {})
        } else {
            self.kernel()
        };
        Ok(Some((RowKernel::Image(f), input.clone())))
    }

    /// The colour pipeline's tone step with the stage's own LUT, as
    /// [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let Some((_, out)) = self.row_kernel(input)? else {
            return Ok(None);
        };
        let step = if self.p.curve == Curve::Linear {
            DeviceStep::Nothing
        } else {
            DeviceStep::Tone {
                lut: self.table.to_vec(),
                max: self.p.white_point,
            }
        };
        Ok(Some((step, out)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// The same LUT, interpolated by kernels/color_pipeline.cu.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let (img, this) = self.with_control(inputs)?;
        let mut img = take_image(img)?;
        if this.p.curve == Curve::Linear {
            return Ok(Value::Image(img.into()));
        }
        let steps = crate::backend::cuda::ColorSteps {
            tone_lut: Some(this.table.to_vec()),
            tone_max: this.p.white_point,
            ..Default::default()
        };
        crate::backend::cuda::color_pipeline(&mut img.data, &steps)?;
        Ok(Value::Image(img.into()))
    }
}

impl ToneCurve {
    /// Splits the inputs into the image and the curve to apply: this one,
    /// or a copy with the white point raised by an exposure control.
    fn with_control(&self, inputs: Vec<Value>) -> Result<(Value, ToneCurve)> {
        let mut it = inputs.into_iter();
        let img = it.next().ok_or_else(|| Error::invalid("no input"))?;
        let mut p = self.p.clone();
        if let Some(v) = it.next() {
            let c = super::exposure::downcast::<super::exposure::ExposureControl>(&v).ok_or_else(
                || {
                    Error::invalid(format!(
                        "second input must be an exposure_control, got a {}",
                        v.kind()
                    ))
                },
            )?;
            if c.white_point.is_finite() {
                p.white_point = p.white_point.max(c.white_point.min(64.0));
            }
        }
        Ok((img, ToneCurve::new(p)))
    }
}

/// Intervals of the tone LUT.
const LUT_SIZE: usize = 4096;

impl ToneCurve {
    /// A curve with its table.
    fn new(p: Params) -> ToneCurve {
        let mut c = ToneCurve {
            p,
            table: Arc::from(Vec::new()),
        };
        c.table = c.lut().into();
        c
    }

    /// The per-pixel kernel: every value through the table, linearly
    /// interpolated (inputs clamped to [0, white_point]).
    fn kernel(&self) -> ImageRowFn {
        const N: usize = LUT_SIZE;
        let lut = self.table.clone();
        let scale = N as f32 / self.p.white_point;
        Box::new(move |planes| {
            for p in planes {
                for v in p.iter_mut() {
                    let t = (v.max(0.0) * scale).min(N as f32);
                    let i = (t as usize).min(N - 1);
                    let f = t - i as f32;
                    *v = lut[i] + f * (lut[i + 1] - lut[i]);
                }
            }
        })
    }

    /// The curve as a table of `LUT_SIZE + 1` entries over
    /// [0, white_point], interpolated linearly by both backends.
    pub fn lut(&self) -> Vec<f32> {
        let wp = self.p.white_point;
        (0..=LUT_SIZE)
            .map(|i| self.eval(i as f32 / LUT_SIZE as f32 * wp))
            .collect()
    }

    /// The input value of the LUT's last entry (the white point).
    pub fn lut_max(&self) -> f32 {
        self.p.white_point
    }

    /// Whether the curve is the identity (`curve: linear`).
    pub fn is_linear(&self) -> bool {
        self.p.curve == Curve::Linear
    }
}
