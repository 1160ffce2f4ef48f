//! `demosaic_bilinear`: bilinear interpolation of each colour plane
//! (the classical baseline; equivalent to convolving the masked planes with
//! [0 1 0; 1 4 1; 0 1 0]/4 for green and [1 2 1; 2 4 2; 1 2 1]/4 for red and
//! blue, mirrored borders).

use serde::Deserialize;

use super::row_kernel::{DemosaicFn, Header, HeaderKind, RowKernel, RowShape};
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
        let data = demosaic_strips(m, HALO, 32, |t, _y0, out| fill(t, out));
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

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: HALO,
            row_align: 2,
        })
    }

    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.mosaic().is_none() {
            return Err(Error::invalid("expected a mosaic"));
        }
        let mut out = input.clone();
        out.kind = HeaderKind::Image {
            space: ColorSpace::Camera,
        };
        let f: DemosaicFn = Box::new(fill);
        Ok(Some((RowKernel::Demosaic { halo: HALO, f }, out)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// `demosaic_bilinear_f32` in kernels/demosaic.cu.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let (data, _) =
            crate::backend::cuda::demosaic(m, crate::backend::cuda::DemosaicMethod::Bilinear)?;
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

/// Mirrored context around each strip (rows and columns; even).
const HALO: usize = 2;

/// Fills the interior rows of tile `t` (every output pixel of the strip).
fn fill(t: &crate::backend::cpu::Tile, [r, g, b]: [&mut [f32]; 3]) {
    let w = t.w - 2 * t.halo;
    if w == 0 {
        return;
    }
    let rows = r.len() / w;
    for oy in 0..rows {
        let ty = oy + t.halo;
        let o = oy * w;
        let (ro, go, bo) = (&mut r[o..o + w], &mut g[o..o + w], &mut b[o..o + w]);
        for start in 0..2 {
            let tx0 = start + t.halo;
            match site(t.cfa, ty, tx0) {
                Site::R => row_sites::<0>(t, ty, start, ro, go, bo),
                Site::B => row_sites::<1>(t, ty, start, ro, go, bo),
                Site::GRedRow => row_sites::<2>(t, ty, start, ro, go, bo),
                Site::GBlueRow => row_sites::<3>(t, ty, start, ro, go, bo),
            }
        }
    }
}

/// What a photosite is, and for green where its red neighbours lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    R,
    B,
    /// Green with red to the left and right.
    GRedRow,
    /// Green with red above and below.
    GBlueRow,
}

/// Classifies tile pixel (tx, ty).
#[inline(always)]
pub(crate) fn site(cfa: crate::raw::CfaPattern, ty: usize, tx: usize) -> Site {
    match cfa.color_at(ty, tx) {
        0 => Site::R,
        2 => Site::B,
        _ if cfa.color_at(ty, tx + 1) == 0 => Site::GRedRow,
        _ => Site::GBlueRow,
    }
}

/// Fills every second output pixel of a row from `start`, all of the same
/// site kind `S` (0 R, 1 B, 2 G in a red row, 3 G in a blue row).
#[inline(always)]
fn row_sites<const S: u8>(
    t: &crate::backend::cpu::Tile,
    ty: usize,
    start: usize,
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    let tw = t.w;
    let d = &t.data[(ty - 1) * tw..(ty + 2) * tw];
    let (up, mid, dn) = (&d[..tw], &d[tw..2 * tw], &d[2 * tw..]);
    let mut ox = start;
    while ox < r.len() {
        let x = ox + t.halo;
        let c = mid[x];
        let h = 0.5 * (mid[x - 1] + mid[x + 1]);
        let v = 0.5 * (up[x] + dn[x]);
        match S {
            0 | 1 => {
                let cross = 0.5 * (h + v);
                let diag = 0.25 * (up[x - 1] + up[x + 1] + dn[x - 1] + dn[x + 1]);
                g[ox] = cross;
                if S == 0 {
                    r[ox] = c;
                    b[ox] = diag;
                } else {
                    b[ox] = c;
                    r[ox] = diag;
                }
            }
            2 => {
                r[ox] = h;
                g[ox] = c;
                b[ox] = v;
            }
            _ => {
                r[ox] = v;
                g[ox] = c;
                b[ox] = h;
            }
        }
        ox += 2;
    }
}
