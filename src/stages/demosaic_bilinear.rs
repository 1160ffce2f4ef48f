//! `demosaic_bilinear`: bilinear interpolation of each colour plane
//! (the classical baseline; equivalent to convolving the masked planes with
//! [0 1 0; 1 4 1; 0 1 0]/4 for green and [1 2 1; 2 4 2; 1 2 1]/4 for red and
//! blue, mirrored borders).

use serde::Deserialize;

use super::{mosaic_ref, one_input, parse_params, RunCtx, Stage};
use crate::backend::cpu::demosaic_strips;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc, ValueKind};

/// YAML params of `demosaic_bilinear` (none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `demosaic_bilinear` op.
#[derive(Debug)]
pub struct DemosaicBilinear;

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    let _: Params = parse_params(params)?;
    Ok(Box::new(DemosaicBilinear))
}

/// Infers the image produced by any demosaic op.
pub(crate) fn infer_demosaic(inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
    let d = one_input(inputs, ValueKind::Mosaic)?;
    Ok(ValueDesc::image(d.width, d.height, ColorSpace::Camera))
}

impl Stage for DemosaicBilinear {
    fn op(&self) -> &'static str {
        "demosaic_bilinear"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let w = m.width;
        let data = demosaic_strips(m, 2, 32, |t, _y0, [r, g, b]| {
            let tw = t.w;
            let rows = r.len() / w;
            for oy in 0..rows {
                let ty = oy + t.halo;
                for ox in 0..w {
                    let tx = ox + t.halo;
                    let i = ty * tw + tx;
                    let d = &t.data;
                    let c = t.cfa.color_at(ty, tx);
                    let cross = 0.25 * (d[i - 1] + d[i + 1] + d[i - tw] + d[i + tw]);
                    let diag =
                        0.25 * (d[i - tw - 1] + d[i - tw + 1] + d[i + tw - 1] + d[i + tw + 1]);
                    let horiz = 0.5 * (d[i - 1] + d[i + 1]);
                    let vert = 0.5 * (d[i - tw] + d[i + tw]);
                    let o = oy * w + ox;
                    let (rv, gv, bv) = match c {
                        0 => (d[i], cross, diag),
                        2 => (diag, cross, d[i]),
                        _ => {
                            // Green: is red to the left/right?
                            if t.cfa.color_at(ty, tx + 1) == 0 {
                                (horiz, d[i], vert)
                            } else {
                                (vert, d[i], horiz)
                            }
                        }
                    };
                    r[o] = rv;
                    g[o] = gv;
                    b[o] = bv;
                }
            }
        });
        Ok(Value::Image(
            Image {
                width: m.width,
                height: m.height,
                data,
                space: ColorSpace::Camera,
                wb_applied: m.wb_applied,
                meta: m.meta.clone(),
            }
            .into(),
        ))
    }
}
