//! `white_balance`: per-colour multipliers on the mosaic, with highlight
//! clipping so that saturated areas stay neutral instead of turning
//! magenta (dcraw's default highlight mode: clip every channel where the
//! least-amplified channel saturates).

use rayon::prelude::*;
use serde::Deserialize;

use super::{check_range, one_input, parse_params, take_mosaic, RunCtx, Stage, ROWS_PER_TASK};
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value, ValueDesc, ValueKind};

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

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    let p: Params = parse_params(params)?;
    match (p.mode, p.gains) {
        (WbMode::Manual, None) => return Err("params: mode manual needs `gains: [r, g, b]`".into()),
        (WbMode::Manual, Some(g)) => {
            for (i, v) in g.iter().enumerate() {
                check_range(&format!("gains[{i}]"), *v, 0.01, 100.0)?;
            }
        }
        (_, Some(_)) => return Err("params: `gains` is only used with mode: manual".into()),
        _ => {}
    }
    Ok(Box::new(WhiteBalance { p }))
}

/// Gray-world multipliers (G = 1) from the unsaturated photosites.
pub fn gray_world(m: &Mosaic) -> [f32; 3] {
    let (w, cfa) = (m.width, m.cfa);
    let sums = m
        .data
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
        let (w, cfa, clip) = (m.width, m.cfa, self.p.clip_highlights);
        m.data
            .par_chunks_mut(w * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (r, row) in rows.chunks_exact_mut(w).enumerate() {
                    let y = chunk * ROWS_PER_TASK + r;
                    let (g0, g1) = (g[cfa.color_at(y, 0)], g[cfa.color_at(y, 1)]);
                    for pair in row.chunks_mut(2) {
                        pair[0] *= g0;
                        if clip {
                            pair[0] = pair[0].min(1.0);
                        }
                        if let Some(v) = pair.get_mut(1) {
                            *v *= g1;
                            if clip {
                                *v = v.min(1.0);
                            }
                        }
                    }
                }
            });
        m.wb_applied = Some(g);
        Ok(Value::Mosaic(m.into()))
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
            WbMode::Manual => self.p.gains.unwrap_or([1.0; 3]),
            WbMode::AsShot => m.meta.wb_gains.ok_or_else(|| {
                Error::invalid(format!(
                    "{}: no as-shot white balance in the file (use mode: auto or gray_world)",
                    m.meta.source
                ))
            })?,
            WbMode::Auto => match m.meta.wb_gains {
                Some(g) => g,
                None => gray_world(m),
            },
            WbMode::GrayWorld => gray_world(m),
        };
        let min = gains.iter().cloned().fold(f32::MAX, f32::min);
        Ok(Some([gains[0] / min, gains[1] / min, gains[2] / min]))
    }
}
