//! `srgb_encode`: linear sRGB -> sRGB transfer-encoded values in [0, 1]
//! (IEC 61966-2-1), clamped. A 4096-entry table (L1-resident) with linear
//! interpolation keeps it within 2e-5 of the formula (about one 16-bit code).

use std::sync::Arc;

use serde::Deserialize;

use super::row_kernel::{run_image_rows, Header, HeaderKind, ImageRowFn, RowKernel, RowShape};
use super::{one_input, parse_params, take_image, RunCtx, Stage};
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
    lut: Arc<[f32; N + 1]>,
}

const N: usize = 4096;

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    let _: Params = parse_params(params)?;
    Ok(Box::new(SrgbEncode {
        lut: table().into(),
    }))
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
    /// The per-pixel kernel: every plane through the table.
    fn kernel(&self) -> ImageRowFn {
        let lut = self.lut.clone();
        Box::new(move |planes| {
            for p in planes {
                encode_slice(&lut, p);
            }
        })
    }

    /// Encodes one linear value (clamped to [0, 1]).
    #[inline(always)]
    pub fn encode(&self, v: f32) -> f32 {
        encode_with(&self.lut, v)
    }
}

/// Table lookup with linear interpolation; the fixed-size table lets the
/// compiler drop the bounds checks. NaN encodes as 0 (as the CUDA kernel's
/// `fmaxf` does).
#[inline(always)]
fn encode_with(lut: &[f32; N + 1], v: f32) -> f32 {
    let t = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) } * N as f32;
    let i = (t as usize).min(N - 1);
    let f = t - i as f32;
    let (a, b) = (lut[i], lut[i + 1]);
    a + f * (b - a)
}

/// Encodes a run of values in place: 8 lanes at a time with AVX2 gathers
/// where the CPU has them (the scalar loop cannot vectorise its two table
/// reads), the same arithmetic as [`encode_with`] (no FMA contraction), so
/// both paths give identical results.
fn encode_slice(lut: &[f32; N + 1], data: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only
            // feature `encode_avx2` is compiled for.
            unsafe { encode_avx2(lut, data) };
            return;
        }
    }
    data.iter_mut().for_each(|v| *v = encode_with(lut, *v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn encode_avx2(lut: &[f32; N + 1], data: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = data.chunks_exact_mut(8);
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    let scale = _mm256_set1_ps(N as f32);
    let last = _mm256_set1_epi32(N as i32 - 1);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 f32 (chunks_exact_mut); unaligned
        // loads and stores are used.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        // max(v, 0) returns the second operand (0) for NaN, like encode_with.
        let t = _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(v, zero), one), scale);
        // t is in [0, N]: truncation equals the scalar `as usize`.
        let i = _mm256_min_epi32(_mm256_cvttps_epi32(t), last);
        let f = _mm256_sub_ps(t, _mm256_cvtepi32_ps(i));
        // SAFETY: every index is in [0, N - 1], so `i` and `i + 1` are
        // inside the N + 1 entry table.
        let (a, b) = unsafe {
            (
                _mm256_i32gather_ps::<4>(lut.as_ptr(), i),
                _mm256_i32gather_ps::<4>(lut.as_ptr().add(1), i),
            )
        };
        let out = _mm256_add_ps(a, _mm256_mul_ps(f, _mm256_sub_ps(b, a)));
        // SAFETY: as the load above.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), out) };
    }
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|v| *v = encode_with(lut, *v));
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
        run_image_rows(&mut img, &self.kernel());
        img.space = ColorSpace::Srgb;
        Ok(Value::Image(img.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape::POINT)
    }

    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space().is_none_or(|s| s == ColorSpace::Srgb) {
            return Err(Error::invalid("expected a linear image"));
        }
        let mut out = input.clone();
        out.kind = HeaderKind::Image {
            space: ColorSpace::Srgb,
        };
        Ok(Some((RowKernel::Image(self.kernel()), out)))
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
        let s = SrgbEncode {
            lut: table().into(),
        };
        for i in 0..=10_000 {
            let v = i as f32 / 10_000.0;
            assert!((s.encode(v) - srgb_encode(v)).abs() < 2e-5, "{v}");
        }
        assert_eq!(s.encode(-1.0), 0.0);
        assert!((s.encode(2.0) - 1.0).abs() < 1e-6);
        assert_eq!(s.encode(f32::NAN), 0.0);
    }

    #[test]
    fn vector_path_equals_scalar_path() {
        let lut = table();
        // Odd length (a remainder), values outside [0, 1], NaN, infinities,
        // exact table knots and the top end.
        let mut data: Vec<f32> = (0..1003).map(|i| i as f32 / 997.0 * 1.2 - 0.1).collect();
        data.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0, 0.0, 0.5]);
        data.extend((0..=N).step_by(97).map(|k| k as f32 / N as f32));
        let want: Vec<f32> = data.iter().map(|&v| encode_with(&lut, v)).collect();
        encode_slice(&lut, &mut data);
        for (k, (a, b)) in data.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {k}: {a} vs {b}");
        }
    }
}
