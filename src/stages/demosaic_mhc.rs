//! `demosaic_mhc`: Malvar, He & Cutler 2004, "High-quality linear
//! interpolation for demosaicing of Bayer-patterned color images"
//! (ICASSP). Bilinear plus a Laplacian correction from the centre channel,
//! as four fixed 5x5 kernels.

use serde::Deserialize;

use super::demosaic_bilinear::infer_demosaic;
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::demosaic_strips;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc};

/// YAML params of `demosaic_mhc` (none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `demosaic_mhc` op.
#[derive(Debug)]
pub struct DemosaicMhc;

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    let _: Params = parse_params(params)?;
    Ok(Box::new(DemosaicMhc))
}

impl Stage for DemosaicMhc {
    fn op(&self) -> &'static str {
        "demosaic_mhc"
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
                    let p = |dy: isize, dx: isize| d[(i as isize + dy * tw as isize + dx) as usize];
                    let c0 = d[i];
                    let cross1 = p(-1, 0) + p(1, 0) + p(0, -1) + p(0, 1);
                    let cross2 = p(-2, 0) + p(2, 0) + p(0, -2) + p(0, 2);
                    let diag = p(-1, -1) + p(-1, 1) + p(1, -1) + p(1, 1);
                    let h1 = p(0, -1) + p(0, 1);
                    let v1 = p(-1, 0) + p(1, 0);
                    let h2 = p(0, -2) + p(0, 2);
                    let v2 = p(-2, 0) + p(2, 0);
                    // G at R/B: [0 0 -1 0 0; 0 0 2 0 0; -1 2 4 2 -1; ...]/8
                    let g_at_rb = (4.0 * c0 + 2.0 * cross1 - cross2) * 0.125;
                    // R/B at B/R: [0 0 -3/2 ..; 0 2 0 2 0; -3/2 0 6 0 -3/2]/8
                    let rb_at_br = (6.0 * c0 + 2.0 * diag - 1.5 * cross2) * 0.125;
                    // At green, the colour on the horizontal neighbours:
                    // [0 0 1/2 0 0; 0 -1 0 -1 0; -1 4 5 4 -1; ...]/8
                    let at_g_h = (5.0 * c0 + 4.0 * h1 - diag - h2 + 0.5 * v2) * 0.125;
                    // ... and on the vertical neighbours (transpose).
                    let at_g_v = (5.0 * c0 + 4.0 * v1 - diag - v2 + 0.5 * h2) * 0.125;
                    let o = oy * w + ox;
                    let (rv, gv, bv) = match t.cfa.color_at(ty, tx) {
                        0 => (c0, g_at_rb, rb_at_br),
                        2 => (rb_at_br, g_at_rb, c0),
                        _ => {
                            if t.cfa.color_at(ty, tx + 1) == 0 {
                                (at_g_h, c0, at_g_v)
                            } else {
                                (at_g_v, c0, at_g_h)
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
