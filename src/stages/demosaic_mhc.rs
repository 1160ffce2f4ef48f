//! `demosaic_mhc`: Malvar, He & Cutler 2004, "High-quality linear
//! interpolation for demosaicing of Bayer-patterned color images"
//! (ICASSP). Bilinear plus a Laplacian correction from the centre channel,
//! as four fixed 5x5 kernels.

use serde::Deserialize;

use super::demosaic_bilinear::{demosaiced, infer_demosaic, site, Site};
use super::row_kernel::Header;
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::demosaic_strips;
use crate::backend::device_step::DeviceStep;
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc};

/// YAML params of `demosaic_mhc` (none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `demosaic_mhc` op.
#[derive(Debug)]
pub struct DemosaicMhc;

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
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
            let rows = r.len() / w;
            for oy in 0..rows {
                let ty = oy + t.halo;
                let o = oy * w;
                let (ro, go, bo) = (&mut r[o..o + w], &mut g[o..o + w], &mut b[o..o + w]);
                for start in 0..2 {
                    match site(t.cfa, ty, start + t.halo) {
                        Site::R => mhc_row::<0>(t, ty, start, ro, go, bo),
                        Site::B => mhc_row::<1>(t, ty, start, ro, go, bo),
                        Site::GRedRow => mhc_row::<2>(t, ty, start, ro, go, bo),
                        Site::GBlueRow => mhc_row::<3>(t, ty, start, ro, go, bo),
                    }
                }
            }
        });
        Ok(demosaiced(m, data))
    }
    /// `demosaic_mhc_f32`, as [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let method = crate::backend::cuda::DemosaicMethod::Mhc;
        Ok(Some((DeviceStep::Demosaic(method), input.demosaiced()?)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// `demosaic_mhc_f32` in kernels/demosaic.cu.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let (data, _) =
            crate::backend::cuda::demosaic(m, crate::backend::cuda::DemosaicMethod::Mhc)?;
        Ok(demosaiced(m, data))
    }
}

/// MHC for every second pixel of a row from `start`, all of site kind `S`
/// (0 R, 1 B, 2 G in a red row, 3 G in a blue row).
#[inline(always)]
fn mhc_row<const S: u8>(
    t: &crate::backend::cpu::Tile,
    ty: usize,
    start: usize,
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    let tw = t.w;
    let d = &t.data[(ty - 2) * tw..(ty + 3) * tw];
    let (u2, u1, mid, d1, d2) = (
        &d[..tw],
        &d[tw..2 * tw],
        &d[2 * tw..3 * tw],
        &d[3 * tw..4 * tw],
        &d[4 * tw..],
    );
    let mut ox = start;
    while ox < r.len() {
        let x = ox + t.halo;
        let c0 = mid[x];
        let h1 = mid[x - 1] + mid[x + 1];
        let v1 = u1[x] + d1[x];
        let h2 = mid[x - 2] + mid[x + 2];
        let v2 = u2[x] + d2[x];
        let diag = u1[x - 1] + u1[x + 1] + d1[x - 1] + d1[x + 1];
        match S {
            0 | 1 => {
                // G at R/B: [0 0 -1 0 0; 0 0 2 0 0; -1 2 4 2 -1; ...]/8
                let gv = (4.0 * c0 + 2.0 * (h1 + v1) - (h2 + v2)) * 0.125;
                // B/R at R/B: [0 0 -3/2 ..; 0 2 0 2 0; -3/2 0 6 0 -3/2; ...]/8
                let other = (6.0 * c0 + 2.0 * diag - 1.5 * (h2 + v2)) * 0.125;
                g[ox] = gv;
                if S == 0 {
                    r[ox] = c0;
                    b[ox] = other;
                } else {
                    b[ox] = c0;
                    r[ox] = other;
                }
            }
            _ => {
                // The colour on the horizontal neighbours:
                // [0 0 1/2 0 0; 0 -1 0 -1 0; -1 4 5 4 -1; ...]/8, and its
                // transpose for the vertical neighbours.
                let at_h = (5.0 * c0 + 4.0 * h1 - diag - h2 + 0.5 * v2) * 0.125;
                let at_v = (5.0 * c0 + 4.0 * v1 - diag - v2 + 0.5 * h2) * 0.125;
                g[ox] = c0;
                if S == 2 {
                    r[ox] = at_h;
                    b[ox] = at_v;
                } else {
                    r[ox] = at_v;
                    b[ox] = at_h;
                }
            }
        }
        ox += 2;
    }
}
