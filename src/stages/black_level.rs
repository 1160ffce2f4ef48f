//! `black_level`: subtracts the per-site black level (with its repeat
//! pattern) and scales so that the white level becomes 1.0.
//!
//! out = (dn - black(y, x)) / (white(c) - black(y, x)), per photosite.

use rayon::prelude::*;
use serde::Deserialize;

use super::{one_input, parse_params, take_mosaic, RunCtx, Stage, ROWS_PER_TASK};
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

/// The compiled `black_level` op.
#[derive(Debug)]
pub struct BlackLevel {
    p: Params,
}

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    Ok(Box::new(BlackLevel {
        p: parse_params(params)?,
    }))
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
        if m.scale == MosaicScale::Normalized {
            return Err(Error::invalid("black level is already applied"));
        }
        let (w, cfa) = (m.width, m.cfa);
        let black = m.meta.black.clone();
        let white = m.meta.white;
        let clip = self.p.clip_negative;
        let (rw, rh) = (black.repeat_width, black.repeat_height);
        m.data
            .par_chunks_mut(w * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                // Per row: offset and scale for each column of the
                // combined (black repeat x Bayer) period, so the inner loop
                // is a multiply-add.
                let period = if rw % 2 == 0 { rw } else { 2 * rw };
                let mut off = vec![0f32; period];
                let mut scale = vec![0f32; period];
                for (r, row) in rows.chunks_exact_mut(w).enumerate() {
                    let y = chunk * ROWS_PER_TASK + r;
                    for k in 0..period {
                        let b = black.values[(y % rh) * rw + (k % rw)];
                        let s = 1.0 / (white[cfa.color_at(y, k)] - b);
                        off[k] = -b * s;
                        scale[k] = s;
                    }
                    for vs in row.chunks_mut(period) {
                        for ((v, o), s) in vs.iter_mut().zip(&off).zip(&scale) {
                            let t = *v * s + o;
                            *v = if clip { t.max(0.0) } else { t };
                        }
                    }
                }
            });
        m.scale = MosaicScale::Normalized;
        Ok(Value::Mosaic(m.into()))
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
