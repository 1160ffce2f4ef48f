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
        m.data
            .par_chunks_mut(w * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (r, row) in rows.chunks_exact_mut(w).enumerate() {
                    let y = chunk * ROWS_PER_TASK + r;
                    // Per row: two alternating (black, 1/range) pairs for the
                    // Bayer sites when the black pattern repeats within 2.
                    for (x, v) in row.iter_mut().enumerate() {
                        let b = black.at(y, x);
                        let range = white[cfa.color_at(y, x)] - b;
                        let o = (*v - b) / range;
                        *v = if clip { o.max(0.0) } else { o };
                    }
                }
            });
        m.scale = MosaicScale::Normalized;
        Ok(Value::Mosaic(m.into()))
    }
}
