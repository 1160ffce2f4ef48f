//! `srgb_encode`: linear sRGB -> sRGB transfer-encoded values in [0, 1]
//! (IEC 61966-2-1), clamped.
//!
//! On the CPU the power segment is evaluated without tables in memory:
//! `v = m · 2^e` (m in [1, 2)), `v^(1/2.4) = m^(5/12) · 2^(5e/12)` with a
//! degree-6 minimax polynomial for `m^(5/12)` and a 16-entry register table
//! for `2^(5e/12)`; within 1e-6 of the formula, and 8 lanes at a time with
//! AVX2+FMA (no gathers: the table lookup is a lane permute). The CUDA
//! kernel interpolates a 4096-entry table (within 2e-5 of the formula),
//! which [`SrgbEncode::lut`] provides.

use serde::Deserialize;

use super::row_kernel::{run_image_rows, Header, HeaderKind, ImageRowFn, RowKernel, RowShape};
use super::{one_input, parse_params, take_image, RunCtx, Stage};
use crate::backend::device_step::DeviceStep;
use crate::color::srgb_encode;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Value, ValueDesc, ValueKind};

/// YAML params of `srgb_encode` (none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `srgb_encode` op.
#[derive(Debug)]
pub struct SrgbEncode;

/// Entries of the table handed to the CUDA kernel ([`SrgbEncode::lut`]).
const N: usize = 4096;

/// Upper end of the linear segment of the transfer function.
const LINEAR_MAX: f32 = 0.003_130_8;

/// `m^(5/12)` for `m` in [1, 2) as a polynomial in `t = 2m - 3` (lowest
/// order first): a degree-6 minimax fit, error below 3e-7.
const POLY: [f32; 7] = [
    1.184_053_7,
    0.164_453_13,
    -0.015_989_654,
    0.002_802_941_7,
    -0.000_600_332_3,
    0.000_163_660_5,
    -0.000_043_726_337,
];

/// `2^(5e/12)` for the binary exponents `e = -15 ..= 0` (index `e + 15`);
/// values above the linear segment have `e >= -9`.
const POW2: [f32; 16] = [
    0.013_139_007,
    0.017_538_47,
    0.023_411_049,
    0.031_25,
    0.041_713_744,
    0.055_681_17,
    0.074_325_44,
    0.099_212_565,
    0.132_432_9,
    0.176_776_7,
    0.235_968_57,
    0.314_980_27,
    0.420_448_2,
    0.561_231,
    0.749_153_55,
    1.0,
];

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let _: Params = parse_params(params)?;
    Ok(Box::new(SrgbEncode))
}

impl SrgbEncode {
    /// The per-pixel kernel: every plane encoded in place.
    fn kernel(&self) -> ImageRowFn {
        Box::new(|planes| {
            for p in planes {
                encode_slice(p);
            }
        })
    }

    /// Encodes one linear value (clamped to [0, 1]; NaN encodes as 0).
    #[inline(always)]
    pub fn encode(&self, v: f32) -> f32 {
        encode_one(v)
    }

    /// The encode table for the CUDA kernel: `N + 1` samples of the
    /// formula over [0, 1], interpolated linearly there.
    pub fn lut(&self) -> Vec<f32> {
        (0..=N).map(|i| srgb_encode(i as f32 / N as f32)).collect()
    }
}

/// The scalar encode, operation for operation the same as the AVX2 lanes
/// (`mul_add` where they use FMA), so both give identical results. NaN
/// encodes as 0 (as the CUDA kernel's `fmaxf` does).
#[inline(always)]
fn encode_one(v: f32) -> f32 {
    // NaN, negatives and -0.0 become +0.0 (as `max_ps(v, 0)` makes them).
    let v = if v > 0.0 { v.min(1.0) } else { 0.0 };
    if v <= LINEAR_MAX {
        return v * 12.92;
    }
    let bits = v.to_bits();
    // v > LINEAR_MAX > 2^-9, so the index is in 6..=15.
    let e = ((bits >> 23) as usize).saturating_sub(112).min(15);
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let t = m.mul_add(2.0, -3.0);
    let mut p = POLY[6];
    for c in POLY[..6].iter().rev() {
        p = p.mul_add(t, *c);
    }
    (p * POW2[e]).mul_add(1.055, -0.055)
}

/// Encodes a run of values in place: 8 lanes at a time with AVX2+FMA where
/// the CPU has them, else [`encode_one`] (identical results).
fn encode_slice(data: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above),
            // the features `encode_avx2` is compiled for.
            unsafe { encode_avx2(data) };
            return;
        }
    }
    data.iter_mut().for_each(|v| *v = encode_one(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn encode_avx2(data: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = data.chunks_exact_mut(8);
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    let lin_max = _mm256_set1_ps(LINEAR_MAX);
    let slope = _mm256_set1_ps(12.92);
    let mant = _mm256_set1_epi32(0x007f_ffff);
    let unit = _mm256_set1_epi32(0x3f80_0000);
    let bias = _mm256_set1_epi32(112);
    let (two, three) = (_mm256_set1_ps(2.0), _mm256_set1_ps(-3.0));
    let (a, b) = (_mm256_set1_ps(1.055), _mm256_set1_ps(-0.055));
    let poly = POLY.map(|c| _mm256_set1_ps(c));
    // SAFETY: POW2 has 16 entries: two unaligned 8-lane loads.
    let (pow_lo, pow_hi) = unsafe {
        (
            _mm256_loadu_ps(POW2.as_ptr()),
            _mm256_loadu_ps(POW2.as_ptr().add(8)),
        )
    };
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 f32 (chunks_exact_mut); unaligned
        // loads and stores are used.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        // max(v, 0) returns the second operand (0) for NaN, like encode_one.
        let v = _mm256_min_ps(_mm256_max_ps(v, zero), one);
        let bits = _mm256_castps_si256(v);
        // Lanes on the linear segment take `lin` below, whatever the index.
        let e = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), bias);
        let m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, mant), unit));
        let t = _mm256_fmadd_ps(m, two, three);
        let mut p = poly[6];
        for k in (0..6).rev() {
            p = _mm256_fmadd_ps(p, t, poly[k]);
        }
        // 16-entry lookup: the low 3 index bits pick within each half,
        // bit 3 (moved to the sign bit) picks the half.
        let pw = _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(pow_lo, e),
            _mm256_permutevar8x32_ps(pow_hi, e),
            _mm256_castsi256_ps(_mm256_slli_epi32::<28>(e)),
        );
        let enc = _mm256_fmadd_ps(_mm256_mul_ps(p, pw), a, b);
        let lin = _mm256_mul_ps(v, slope);
        let out = _mm256_blendv_ps(enc, lin, _mm256_cmp_ps::<_CMP_LE_OQ>(v, lin_max));
        // SAFETY: as the load above.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), out) };
    }
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|v| *v = encode_one(*v));
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

    /// The colour pipeline's sRGB step with the stage's own table, as
    /// [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let Some((_, out)) = self.row_kernel(input)? else {
            return Ok(None);
        };
        Ok(Some((DeviceStep::Srgb { lut: self.lut() }, out)))
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
            srgb_lut: Some(self.lut()),
            ..Default::default()
        };
        crate::backend::cuda::color_pipeline(&mut img.data, &steps)?;
        img.space = ColorSpace::Srgb;
        Ok(Value::Image(img.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_formula() {
        let s = SrgbEncode;
        for i in 0..=200_000 {
            let v = i as f32 / 200_000.0;
            assert!((s.encode(v) - srgb_encode(v)).abs() < 1e-6, "{v}");
        }
        // Around the segment boundary and at the binary exponents.
        for e in -15..=0 {
            for v in [
                2f32.powi(e),
                2f32.powi(e) * 1.999_999,
                LINEAR_MAX,
                0.003_131,
            ] {
                assert!((s.encode(v) - srgb_encode(v)).abs() < 1e-6, "{v}");
            }
        }
        assert_eq!(s.encode(-1.0), 0.0);
        assert_eq!(s.encode(0.0), 0.0);
        assert!((s.encode(2.0) - 1.0).abs() < 1e-6);
        assert_eq!(s.encode(f32::NAN), 0.0);
    }

    #[test]
    fn tables_hold_what_they_say() {
        for (k, &p) in POW2.iter().enumerate() {
            let want = 2f64.powf(5.0 * (k as f64 - 15.0) / 12.0);
            assert!((p as f64 - want).abs() <= want * 1e-7, "2^(5e/12) at {k}");
        }
        let lut = SrgbEncode.lut();
        assert_eq!(lut.len(), N + 1);
        assert_eq!(lut[0], 0.0);
        assert!((lut[N] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn vector_path_equals_scalar_path() {
        // Odd length (a remainder), values outside [0, 1], NaN, infinities,
        // the segment boundary, binary exponents and the top end.
        let mut data: Vec<f32> = (0..100_003)
            .map(|i| i as f32 / 99_997.0 * 1.2 - 0.1)
            .collect();
        data.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0, 0.0, 0.5]);
        data.extend([LINEAR_MAX, 0.003_130_9, 1e-30, -0.0]);
        data.extend((-20..=0).map(|e| 2f32.powi(e)));
        let want: Vec<f32> = data.iter().map(|&v| encode_one(v)).collect();
        encode_slice(&mut data);
        for (k, (a, b)) in data.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {k}: {a} vs {b}");
        }
    }
}
