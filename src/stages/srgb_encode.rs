//! `srgb_encode`: linear sRGB -> sRGB transfer-encoded values in [0, 1]
//! (IEC 61966-2-1), clamped. A 4096-entry table (L1-resident) with linear
//! interpolation keeps it within 2e-5 of the formula (about one 16-bit code).

use rayon::prelude::*;
use serde::Deserialize;

use super::{one_input, parse_params, take_image, RunCtx, Stage, ROWS_PER_TASK};
use crate::color::srgb_encode;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Value, ValueDesc, ValueKind};

/// YAML params of `srgb_encode` (none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `srgb_encode` op; holds its table.
#[derive(Debug)]
pub struct SrgbEncode {
    lut: Box<[f32; N + 1]>,
}

const N: usize = 4096;

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    let _: Params = parse_params(params)?;
    Ok(Box::new(SrgbEncode { lut: table() }))
}

/// The encode table: N + 1 samples over [0, 1].
fn table() -> Box<[f32; N + 1]> {
    let mut t = Box::new([0f32; N + 1]);
    for (i, v) in t.iter_mut().enumerate() {
        *v = srgb_encode(i as f32 / N as f32);
    }
    t
}

impl SrgbEncode {
    /// Encodes one linear value (clamped to [0, 1]).
    #[inline(always)]
    pub fn encode(&self, v: f32) -> f32 {
        encode_with(&self.lut, v)
    }
}

/// Table lookup with linear interpolation; the fixed-size table lets the
/// compiler drop the bounds checks.
#[inline(always)]
fn encode_with(lut: &[f32; N + 1], v: f32) -> f32 {
    let t = v.clamp(0.0, 1.0) * N as f32;
    let i = (t as usize).min(N - 1);
    let f = t - i as f32;
    let (a, b) = (lut[i], lut[i + 1]);
    a + f * (b - a)
}

impl Stage for SrgbEncode {
    fn op(&self) -> &'static str {
        "srgb_encode"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = one_input(inputs, ValueKind::Image)?;
        if d.space == Some(ColorSpace::Srgb) {
            return Err("image is already sRGB-encoded".into());
        }
        Ok(ValueDesc::image(d.width, d.height, ColorSpace::Srgb))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut img = take_image(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        img.data
            .par_chunks_mut(img.width * ROWS_PER_TASK)
            .for_each(|c| {
                let lut: &[f32; N + 1] = &self.lut;
                c.iter_mut().for_each(|v| *v = encode_with(lut, *v))
            });
        img.space = ColorSpace::Srgb;
        Ok(Value::Image(img.into()))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// The same table, interpolated by kernels/color_pipeline.cu.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut img = take_image(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        let steps = crate::backend::cuda::ColorSteps {
            srgb_lut: Some(self.lut.to_vec()),
            ..Default::default()
        };
        crate::backend::cuda::color_pipeline(&mut img.data, &steps)?;
        img.space = ColorSpace::Srgb;
        Ok(Value::Image(img.into()))
    }
}

impl SrgbEncode {
    /// The encode table: `N + 1` entries over [0, 1].
    pub fn lut(&self) -> &[f32] {
        &self.lut[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lut_matches_formula() {
        let s = SrgbEncode { lut: table() };
        for i in 0..=10_000 {
            let v = i as f32 / 10_000.0;
            assert!((s.encode(v) - srgb_encode(v)).abs() < 2e-5, "{v}");
        }
        assert_eq!(s.encode(-1.0), 0.0);
        assert!((s.encode(2.0) - 1.0).abs() < 1e-6);
    }
}
