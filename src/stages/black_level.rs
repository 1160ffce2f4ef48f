//! `black_level`: subtracts the per-site black level (with its repeat
//! pattern) and scales so that the white level becomes 1.0.
//!
//! out = (dn - black(y, x)) / (white(c) - black(y, x)), per photosite.

use serde::Deserialize;

use super::row_kernel::{run_mosaic_rows, Header, HeaderKind, MosaicRowFn, RowKernel, RowShape};
use super::{one_input, parse_params, take_mosaic, RunCtx, Stage};
use crate::backend::device_step::DeviceStep;
use crate::error::{Error, Result};
use crate::frame::{MosaicScale, Value, ValueDesc, ValueKind};

/// YAML params of `black_level`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Clamp negative results (noise below black) to 0. Off by default:
    /// denoisers and noise estimation want the unbiased values.
    pub clip_negative: bool,
}

/// Lane width of the vectorised row loop (a multiple of every common
/// black-level period: 1, 2, 4, 8, 16).
const LANES: usize = 16;

/// The compiled `black_level` op.
#[derive(Debug)]
pub struct BlackLevel {
    p: Params,
}

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    Ok(Box::new(BlackLevel {
        p: parse_params(params)?,
    }))
}

impl BlackLevel {
    /// The per-row kernel for a mosaic described by `hdr` (raw DN), and
    /// the header of its output (normalised).
    fn kernel(&self, hdr: &Header) -> Result<(MosaicRowFn, Header)> {
        let (cfa, scale) = hdr
            .mosaic()
            .ok_or_else(|| Error::invalid("expected a mosaic"))?;
        if scale == MosaicScale::Normalized {
            return Err(Error::invalid("black level is already applied"));
        }
        let black = hdr.meta.black.clone();
        let white = hdr.meta.white;
        let clip = self.p.clip_negative;
        let (rw, rh) = (black.repeat_width.max(1), black.repeat_height.max(1));
        // Offset and scale for each column of the combined (black repeat x
        // Bayer) period, so the inner loop is a multiply-add.
        let period = if rw % 2 == 0 { rw } else { 2 * rw };
        let f: MosaicRowFn = Box::new(move |y, row| {
            let at = |k: usize| {
                let b = black.values[(y % rh) * rw + (k % rw)];
                let s = 1.0 / (white[cfa.color_at(y, k)] - b);
                (-b * s, s)
            };
            let apply = |v: &mut f32, (o, s): (f32, f32)| {
                let t = *v * s + o;
                *v = if clip { t.max(0.0) } else { t };
            };
            if LANES.is_multiple_of(period) {
                // Fixed-width lanes (the period divides them): vectorises.
                let mut off = [0f32; LANES];
                let mut scale = [0f32; LANES];
                for k in 0..LANES {
                    (off[k], scale[k]) = at(k);
                }
                offset_scale_row(row, &off, &scale, clip)
            } else {
                let os: Vec<(f32, f32)> = (0..period).map(at).collect();
                for vs in row.chunks_mut(period) {
                    for (v, &os) in vs.iter_mut().zip(&os) {
                        apply(v, os);
                    }
                }
            }
        });
        let mut out = hdr.clone();
        out.kind = HeaderKind::Mosaic {
            cfa,
            scale: MosaicScale::Normalized,
        };
        Ok((f, out))
    }
}

crate::avx2_dispatch!(
    /// `v * scale + off` over `row` with the per-lane constants repeating
    /// every [`LANES`] samples, clamped at 0 when `clip`: the same
    /// expression as the general path, 8 lanes wide on AVX2 machines.
    fn offset_scale_row(row: &mut [f32], off: &[f32; LANES], scale: &[f32; LANES], clip: bool)
        => offset_scale_body
);

/// The body of [`offset_scale_row`].
#[inline(always)]
fn offset_scale_body(row: &mut [f32], off: &[f32; LANES], scale: &[f32; LANES], clip: bool) {
    if clip {
        offset_scale_lanes::<true>(row, off, scale)
    } else {
        offset_scale_lanes::<false>(row, off, scale)
    }
}

/// [`offset_scale_row`] for one value of `clip`; a fixed lane count and no
/// branch in the loop, so it vectorises.
#[inline(always)]
fn offset_scale_lanes<const CLIP: bool>(row: &mut [f32], off: &[f32; LANES], scale: &[f32; LANES]) {
    let apply = |v: &mut f32, o: f32, s: f32| {
        let t = *v * s + o;
        *v = if CLIP { t.max(0.0) } else { t };
    };
    let mut chunks = row.chunks_exact_mut(LANES);
    for vs in &mut chunks {
        for k in 0..LANES {
            apply(&mut vs[k], off[k], scale[k]);
        }
    }
    for (k, v) in chunks.into_remainder().iter_mut().enumerate() {
        apply(v, off[k], scale[k]);
    }
}

impl Stage for BlackLevel {
    fn op(&self) -> &'static str {
        "black_level"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        one_input(inputs, ValueKind::Mosaic)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut m = take_mosaic(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        let hdr = Header::of_mosaic(&m);
        let (f, out) = self.kernel(&hdr)?;
        run_mosaic_rows(&mut m, &f);
        out.stamp_mosaic(&mut m);
        Ok(Value::Mosaic(m.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape::POINT)
    }

    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let (f, out) = self.kernel(input)?;
        Ok(Some((RowKernel::Mosaic(f), out)))
    }

    /// Raw prep's black-level step, as [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let (_, out) = self.kernel(input)?;
        let step = DeviceStep::BlackLevel {
            clip_negative: self.p.clip_negative,
        };
        Ok(Some((step, out)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// kernels/raw_prep.cu with only the black-level step enabled.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut m = take_mosaic(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        if m.scale == MosaicScale::Normalized {
            return Err(Error::invalid("black level is already applied"));
        }
        let prep = crate::backend::cuda::RawPrep {
            black_level: true,
            clip_negative: self.p.clip_negative,
            ..Default::default()
        };
        crate::backend::cuda::raw_prep(&mut m, &prep)?;
        m.scale = MosaicScale::Normalized;
        Ok(Value::Mosaic(m.into()))
    }
}
