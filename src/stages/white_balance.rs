//! `white_balance`: per-colour multipliers on the mosaic, with highlight
//! clipping so that saturated areas stay neutral instead of turning
//! magenta (dcraw's default highlight mode: clip every channel where the
//! least-amplified channel saturates).

use rayon::prelude::*;
use serde::Deserialize;

use super::row_kernel::{run_mosaic_rows, Header, MosaicRowFn, RowKernel, RowShape};
use super::{check_range, one_input, parse_params, take_mosaic, RunCtx, Stage};
use crate::backend::device_step::DeviceStep;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value, ValueDesc, ValueKind};
use crate::raw::{CfaPattern, RawMeta};

/// How the multipliers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WbMode {
    /// As-shot multipliers when the file has them, else gray world.
    #[default]
    Auto,
    /// The file's as-shot multipliers (error when absent).
    AsShot,
    /// Gray-world estimate from the frame (unsaturated pixels).
    GrayWorld,
    /// The `gains` parameter.
    Manual,
    /// No white balance.
    None,
}

/// YAML params of `white_balance`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub mode: WbMode,
    /// R, G, B multipliers for `mode: manual`.
    pub gains: Option<[f32; 3]>,
    /// Clip highlights so saturated pixels stay neutral.
    pub clip_highlights: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mode: WbMode::Auto,
            gains: None,
            clip_highlights: true,
        }
    }
}

/// The compiled `white_balance` op.
#[derive(Debug)]
pub struct WhiteBalance {
    p: Params,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        match (self.mode, self.gains) {
            (WbMode::Manual, None) => {
                return Err(crate::stages::CompileError::params(
                    "mode manual needs `gains: [r, g, b]`",
                ))
            }
            (WbMode::Manual, Some(g)) => {
                for (i, v) in g.iter().enumerate() {
                    check_range(&format!("gains[{i}]"), *v, 0.01, 100.0)?;
                }
            }
            (_, Some(_)) => {
                return Err(crate::stages::CompileError::params(
                    "`gains` is only used with mode: manual",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(WhiteBalance { p }))
}

/// Gray-world multipliers (G = 1) from the unsaturated photosites.
pub fn gray_world(m: &Mosaic) -> [f32; 3] {
    let (w, cfa) = (m.width, m.cfa);
    let data = m.data.f32();
    let sums = data
        .par_chunks(w)
        .enumerate()
        .map(|(y, row)| {
            let mut s = [0f64; 3];
            for (x, &v) in row.iter().enumerate() {
                if v > 0.0 && v < 0.95 {
                    s[cfa.color_at(y, x)] += v as f64;
                }
            }
            s
        })
        .reduce(|| [0.0; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
    // Each Bayer 2x2 has two greens: compare means, not sums.
    let mean = [sums[0], sums[1] / 2.0, sums[2]];
    if mean.iter().any(|v| *v <= 0.0) {
        return [1.0; 3];
    }
    [
        (mean[1] / mean[0]).clamp(0.1, 10.0) as f32,
        1.0,
        (mean[1] / mean[2]).clamp(0.1, 10.0) as f32,
    ]
}

impl Stage for WhiteBalance {
    fn op(&self) -> &'static str {
        "white_balance"
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
        let Some(g) = self.normalized_gains(&m)? else {
            return Ok(Value::Mosaic(m.into()));
        };
        let f = gain_kernel(m.cfa, g, self.p.clip_highlights);
        run_mosaic_rows(&mut m, &f);
        m.wb_applied = Some(g);
        Ok(Value::Mosaic(m.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape::POINT)
    }

    /// `None` when the gains come from the frame's pixels (gray world).
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let (cfa, _) = input
            .mosaic()
            .ok_or_else(|| Error::invalid("expected a mosaic"))?;
        let gains = match self.p.mode {
            WbMode::None => {
                return Ok(Some((
                    RowKernel::Mosaic(Box::new(|_, _| {})),
                    input.clone(),
                )))
            }
            WbMode::GrayWorld => return Ok(None),
            WbMode::Auto if input.meta.wb_gains.is_none() => return Ok(None),
            _ => self.gains_from_meta(&input.meta)?,
        };
        let g = normalize(gains);
        let mut out = input.clone();
        out.wb_applied = Some(g);
        Ok(Some((
            RowKernel::Mosaic(gain_kernel(cfa, g, self.p.clip_highlights)),
            out,
        )))
    }

    /// Raw prep's gain step, as [`Stage::run_cuda`]; `None` where the
    /// gains need the pixels (gray world).
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let Some((_, out)) = self.row_kernel(input)? else {
            return Ok(None);
        };
        let step = match (self.p.mode, out.wb_applied) {
            (WbMode::None, _) | (_, None) => DeviceStep::Nothing,
            (_, Some(gains)) => DeviceStep::WhiteBalance {
                gains,
                clip_highlights: self.p.clip_highlights,
            },
        };
        Ok(Some((step, out)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// kernels/raw_prep.cu with only the gains (and highlight clip) enabled.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut m = take_mosaic(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        let Some(g) = self.normalized_gains(&m)? else {
            return Ok(Value::Mosaic(m.into()));
        };
        let prep = crate::backend::cuda::RawPrep {
            gains: Some(g),
            clip_highlights: self.p.clip_highlights,
            ..Default::default()
        };
        crate::backend::cuda::raw_prep(&mut m, &prep)?;
        m.wb_applied = Some(g);
        Ok(Value::Mosaic(m.into()))
    }
}

impl WhiteBalance {
    /// The multipliers for `m`, normalised so the smallest is 1 (the clip
    /// level is then 1.0, where the least-amplified channel saturates);
    /// `None` for `mode: none`.
    fn normalized_gains(&self, m: &Mosaic) -> Result<Option<[f32; 3]>> {
        let gains = match self.p.mode {
            WbMode::None => return Ok(None),
            WbMode::GrayWorld => gray_world(m),
            WbMode::Auto if m.meta.wb_gains.is_none() => gray_world(m),
            _ => self.gains_from_meta(&m.meta)?,
        };
        Ok(Some(normalize(gains)))
    }

    /// The manual or as-shot multipliers (the modes that need no pixels).
    fn gains_from_meta(&self, meta: &RawMeta) -> Result<[f32; 3]> {
        Ok(match self.p.mode {
            WbMode::Manual => self.p.gains.unwrap_or([1.0; 3]),
            _ => meta.wb_gains.ok_or_else(|| {
                Error::invalid(format!(
                    "{}: no as-shot white balance in the file (use mode: auto or gray_world)",
                    meta.source
                ))
            })?,
        })
    }
}

/// Multipliers scaled so the smallest is 1.
fn normalize(gains: [f32; 3]) -> [f32; 3] {
    let min = gains.iter().cloned().fold(f32::MAX, f32::min);
    [gains[0] / min, gains[1] / min, gains[2] / min]
}

/// The per-row kernel: each photosite times its colour's gain, clipped at
/// 1.0 when `clip` (mosaic phase `cfa` at row 0, column 0).
fn gain_kernel(cfa: CfaPattern, g: [f32; 3], clip: bool) -> MosaicRowFn {
    Box::new(move |y, row| {
        // 16 fixed lanes of alternating gains: the loop vectorises.
        let (g0, g1) = (g[cfa.color_at(y, 0)], g[cfa.color_at(y, 1)]);
        let gains: [f32; 16] = std::array::from_fn(|k| if k % 2 == 0 { g0 } else { g1 });
        gain_row(row, &gains, clip)
    })
}

crate::avx2_dispatch!(
    /// Multiplies `row` by the 16-lane repeating `gains`, clipped at 1.0
    /// when `clip`, 8 lanes wide on AVX2 machines.
    fn gain_row(row: &mut [f32], gains: &[f32; 16], clip: bool) => gain_row_body
);

/// The body of [`gain_row`]: a fixed lane count and no branch in the
/// loops, so they vectorise.
#[inline(always)]
fn gain_row_body(row: &mut [f32], gains: &[f32; 16], clip: bool) {
    if clip {
        gain_row_lanes::<true>(row, gains)
    } else {
        gain_row_lanes::<false>(row, gains)
    }
}

/// [`gain_row`] for one value of `clip`.
#[inline(always)]
fn gain_row_lanes<const CLIP: bool>(row: &mut [f32], gains: &[f32; 16]) {
    let apply = |v: &mut f32, g: f32| {
        *v *= g;
        if CLIP {
            *v = v.min(1.0);
        }
    };
    let mut chunks = row.chunks_exact_mut(16);
    for vs in &mut chunks {
        for k in 0..16 {
            apply(&mut vs[k], gains[k]);
        }
    }
    for (k, v) in chunks.into_remainder().iter_mut().enumerate() {
        apply(v, gains[k]);
    }
}
