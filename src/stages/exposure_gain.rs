//! `exposure_gain`: multiplies a linear image by 2^EV.
//!
//! `mode: manual` uses `ev`; `mode: auto` meters the frame (the geometric
//! mean of luminance over the unclipped pixels, on a subsampled grid) and
//! places it at `target` (default 0.18, middle grey), limited to
//! [`min_ev`, `max_ev`], plus `ev` as a bias, and never so high that more
//! than `1 - protect_percentile` of the pixels would clip (a mostly-white
//! scene is not pushed to grey). An optional second input (a scalar in EV,
//! or the `exposure_control` of an `exposure_meter` stage) replaces the
//! computed gain; `ev` is added to it as a bias.

use rayon::prelude::*;
use serde::Deserialize;

use super::row_kernel::{run_image_rows, Header, ImageRowFn, RowKernel, RowShape};
use super::{check_range, parse_params, take_image, RunCtx, Stage};
use crate::backend::device_step::DeviceStep;
use crate::color::luminance;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc, ValueKind};

/// How the gain is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExposureMode {
    #[default]
    Manual,
    Auto,
}

/// YAML params of `exposure_gain`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub mode: ExposureMode,
    /// Exposure in EV (manual) or bias added to the metered EV (auto).
    pub ev: f32,
    /// Target for the metered mean luminance (linear).
    pub target: f32,
    pub min_ev: f32,
    pub max_ev: f32,
    /// Percentile (0..1) of the per-pixel max channel kept at or below 1.0
    /// in auto mode.
    pub protect_percentile: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mode: ExposureMode::Manual,
            ev: 0.0,
            target: 0.18,
            min_ev: -4.0,
            max_ev: 4.0,
            protect_percentile: 0.99,
        }
    }
}

/// The compiled `exposure_gain` op.
#[derive(Debug)]
pub struct ExposureGain {
    p: Params,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("ev", self.ev, -16.0, 16.0)?;
        check_range("target", self.target, 0.001, 1.0)?;
        check_range("min_ev", self.min_ev, -16.0, 0.0)?;
        check_range("max_ev", self.max_ev, 0.0, 16.0)?;
        check_range("protect_percentile", self.protect_percentile, 0.5, 1.0)?;
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(ExposureGain { p }))
}

/// Log-average luminance of the unclipped pixels, sampled every `step`
/// pixels; `None` when nothing usable is left.
pub fn log_average_luminance(img: &Image, step: usize) -> Option<f32> {
    let w = img.width;
    let [r, g, b] = img.planes();
    let (sum, count) = (0..img.height)
        .into_par_iter()
        .step_by(step)
        .map(|y| {
            let mut s = 0f64;
            let mut c = 0usize;
            for x in (0..w).step_by(step) {
                let i = y * w + x;
                let (rv, gv, bv) = (r[i], g[i], b[i]);
                if rv.max(gv).max(bv) >= 0.99 {
                    continue;
                }
                let l = luminance(rv, gv, bv).max(1e-5);
                s += (l as f64).ln();
                c += 1;
            }
            (s, c)
        })
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    (count > 0).then(|| (sum / count as f64).exp() as f32)
}

/// Percentile `q` (0..1) of the per-pixel maximum channel over a grid
/// sampled every `step` pixels (a pixel clips when its largest channel
/// does).
pub fn max_channel_percentile(img: &Image, step: usize, q: f32) -> f32 {
    let w = img.width;
    let [r, g, b] = img.planes();
    let mut v: Vec<f32> = (0..img.height)
        .step_by(step)
        .flat_map(|y| (0..w).step_by(step).map(move |x| y * w + x))
        .map(|i| r[i].max(g[i]).max(b[i]))
        .filter(|l| l.is_finite())
        .collect();
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() as f32 * q) as usize).min(v.len() - 1);
    let (_, kth, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *kth
}

impl Stage for ExposureGain {
    fn op(&self) -> &'static str {
        "exposure_gain"
    }

    fn arity(&self) -> (usize, usize) {
        (1, 2)
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = inputs.first().ok_or("expects an image input")?;
        if d.kind != ValueKind::Image || d.space == Some(ColorSpace::Srgb) {
            return Err("expects a linear image as first input".into());
        }
        if let Some(s) = inputs.get(1) {
            if s.kind != ValueKind::Scalar
                && s.kind != ValueKind::Other(super::exposure::EXPOSURE_CONTROL)
            {
                return Err(format!(
                    "second input must be a scalar (EV) or an exposure_control, got a {}",
                    s.kind
                ));
            }
        }
        Ok(*d)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut it = inputs.into_iter();
        let mut img = take_image(it.next().ok_or_else(|| Error::invalid("no input"))?)?;
        let gain = self.gain(&img, it.next())?;
        if gain != 1.0 {
            run_image_rows(&mut img, &gain_kernel(gain));
        }
        Ok(Value::Image(img.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape::POINT)
    }

    /// A row kernel in manual mode (the gain needs no pixels); metering
    /// (auto) makes the stage a segment boundary. With a second input
    /// (EV or exposure control) the stage never reaches a segment: the
    /// scheduler fuses single-input stages only.
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space().is_none_or(|s| s == ColorSpace::Srgb) {
            return Err(Error::invalid("expected a linear image"));
        }
        if self.p.mode != ExposureMode::Manual {
            return Ok(None);
        }
        let ev = self.p.ev;
        if !ev.is_finite() {
            return Err(Error::invalid(format!("exposure of {ev} EV is not finite")));
        }
        Ok(Some((
            RowKernel::Image(gain_kernel(2f32.powf(ev))),
            input.clone(),
        )))
    }

    /// The colour pipeline's gain step (manual mode; auto exposure meters
    /// the pixels on the host first), as [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let Some((_, out)) = self.row_kernel(input)? else {
            return Ok(None);
        };
        let gain = 2f32.powf(self.p.ev);
        let step = if gain == 1.0 {
            DeviceStep::Nothing
        } else {
            DeviceStep::Gain(gain)
        };
        Ok(Some((step, out)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// Metering (auto mode) on the host, the gain in
    /// kernels/color_pipeline.cu.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut it = inputs.into_iter();
        let mut img = take_image(it.next().ok_or_else(|| Error::invalid("no input"))?)?;
        let gain = self.gain(&img, it.next())?;
        if gain != 1.0 {
            let steps = crate::backend::cuda::ColorSteps {
                gain: Some(gain),
                ..Default::default()
            };
            crate::backend::cuda::color_pipeline(&mut img.data, &steps)?;
        }
        Ok(Value::Image(img.into()))
    }
}

/// The per-pixel kernel: every value times `gain`.
fn gain_kernel(gain: f32) -> ImageRowFn {
    Box::new(move |planes| {
        if gain != 1.0 {
            for p in planes {
                p.iter_mut().for_each(|v| *v *= gain);
            }
        }
    })
}

impl ExposureGain {
    /// The linear gain for `img`, from the optional EV input, the manual
    /// EV or the metering.
    fn gain(&self, img: &Image, ev_input: Option<Value>) -> Result<f32> {
        let ev = match (ev_input, self.p.mode) {
            (Some(Value::Scalar(ev)), _) => ev as f32 + self.p.ev,
            (Some(v), _) => match super::exposure::downcast::<super::exposure::ExposureControl>(&v)
            {
                Some(c) => c.ev + self.p.ev,
                None => {
                    return Err(Error::invalid(format!(
                        "second input must be a scalar or an exposure_control, got a {}",
                        v.kind()
                    )))
                }
            },
            (_, ExposureMode::Manual) => self.p.ev,
            (_, ExposureMode::Auto) => {
                let step = ((img.width.max(img.height)) / 512).max(1);
                let metered = log_average_luminance(img, step).unwrap_or(self.p.target);
                let mut ev = (self.p.target / metered).log2();
                let hi = max_channel_percentile(img, step, self.p.protect_percentile);
                if hi > 1e-6 {
                    ev = ev.min((1.0 / hi).log2());
                }
                ev.clamp(self.p.min_ev, self.p.max_ev) + self.p.ev
            }
        };
        if !ev.is_finite() {
            return Err(Error::invalid(format!("exposure of {ev} EV is not finite")));
        }
        Ok(2f32.powf(ev))
    }
}
