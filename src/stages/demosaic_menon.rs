//! `demosaic_menon`: Menon, Andriani & Calvagno 2007, "Demosaicing with
//! directional filtering and a posteriori decision" (IEEE TIP), with the
//! paper's refining step.
//!
//! Green is interpolated both horizontally and vertically; the direction
//! with the smaller local colour-difference gradient wins per pixel (the
//! a-posteriori decision); red and blue follow the chosen direction on the
//! colour differences; the refining step smooths the colour differences
//! along the chosen direction. Runs on row strips with a 12-pixel halo,
//! which covers the whole dependency radius of the method.

use serde::Deserialize;

use super::demosaic_bilinear::{demosaiced, infer_demosaic};
use super::row_kernel::{DemosaicFn, Header, RowKernel, RowShape};
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::{
    demosaic_band_tiles, demosaic_tiles_scratch, scratch_plane as plane, Tile, TileScratch,
};
use crate::backend::device_step::DeviceStep;
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc};

/// YAML params of `demosaic_menon`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Apply the paper's refining step (recommended).
    pub refine: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params { refine: true }
    }
}

/// The compiled `demosaic_menon` op.
#[derive(Debug)]
pub struct DemosaicMenon {
    p: Params,
}

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    Ok(Box::new(DemosaicMenon {
        p: parse_params(params)?,
    }))
}

/// Halo (pixels) that covers every dependency of the method.
const HALO: usize = 12;
/// Output rows per strip (one rayon task).
const STRIP: usize = 64;
/// Output columns per tile within a strip (keeps a tile's dozen
/// intermediate planes in L2).
const TILE_W: usize = 384;

impl Stage for DemosaicMenon {
    fn op(&self) -> &'static str {
        "demosaic_menon"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let refine = self.p.refine;
        let data = demosaic_tiles_scratch(m, HALO, STRIP, TILE_W, |t, s: &mut Scratch| {
            menon_tile(t, refine, s)
        });
        Ok(demosaiced(m, data))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: HALO,
            row_align: 2,
        })
    }

    /// Fused: each full-width band tile of [`STRIP`] rows is worked in
    /// [`TILE_W`]-column tiles, as `run_cpu` works the frame, so both give
    /// the same pixels.
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let out = input.demosaiced()?;
        let refine = self.p.refine;
        // One scratch and column-tile buffer per strip, reused across
        // its column tiles (the heap keeps the blocks for the next strip).
        let f: DemosaicFn = Box::new(move |band, out| {
            let (mut scratch, mut buf) = (Scratch::default(), Vec::new());
            demosaic_band_tiles(
                band,
                TILE_W,
                |t, s: &mut Scratch| menon_tile(t, refine, s),
                &mut scratch,
                &mut buf,
                out,
            )
        });
        Ok(Some((
            RowKernel::Demosaic {
                halo: HALO,
                strip_rows: STRIP,
                f,
            },
            out,
        )))
    }

    /// The Menon passes, as [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let method = crate::backend::cuda::DemosaicMethod::Menon {
            refine: self.p.refine,
        };
        Ok(Some((DeviceStep::Demosaic(method), input.demosaiced()?)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// The passes of kernels/demosaic_menon.cu.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let method = crate::backend::cuda::DemosaicMethod::Menon {
            refine: self.p.refine,
        };
        let (data, _) = crate::backend::cuda::demosaic(m, method)?;
        Ok(demosaiced(m, data))
    }
}

/// Colour masks of one tile row: 1.0 where the site has that colour.
struct RowMasks {
    r: Vec<f32>,
    g: Vec<f32>,
    b: Vec<f32>,
}

fn row_masks(cfa: crate::raw::CfaPattern, y: usize, w: usize) -> RowMasks {
    let m = |c: usize| {
        (0..w)
            .map(|x| (cfa.color_at(y, x) == c) as u8 as f32)
            .collect()
    };
    RowMasks {
        r: m(0),
        g: m(1),
        b: m(2),
    }
}

/// Per-thread planes of [`menon_tile`], each `tile.w * tile.h` row-major,
/// reused from tile to tile.
#[derive(Debug, Default)]
pub struct Scratch {
    gh: Vec<f32>,
    gv: Vec<f32>,
    /// Colour differences (steps 1-2), then R - G (refining step).
    ch: Vec<f32>,
    /// Colour differences (steps 1-2), then B - G (refining step).
    cv: Vec<f32>,
    dh: Vec<f32>,
    dv: Vec<f32>,
    hz: Vec<f32>,
    r: Vec<f32>,
    g: Vec<f32>,
    b: Vec<f32>,
    /// Two rows: R and B of the row being updated in place, as they were.
    rows: Vec<f32>,
}

impl TileScratch for Scratch {
    fn planes(&self) -> [&[f32]; 3] {
        [&self.r, &self.g, &self.b]
    }
}

crate::avx2_dispatch!(
    /// [`menon_tile_body`], 8 lanes wide on AVX2 machines.
    fn menon_tile(t: &Tile, refine: bool, s: &mut Scratch) => menon_tile_body
);

/// Demosaics a whole tile. Each pass only computes the region whose
/// inputs are valid (the margin grows with every stencil), so no bounds
/// logic runs per pixel; the 12-pixel halo covers the total margin, and
/// the tile was mirror-padded at image borders. Passes are written with
/// colour masks instead of branches so the compiler vectorises them.
#[inline(always)]
fn menon_tile_body(t: &Tile, refine: bool, s: &mut Scratch) {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let src = &t.data;
    // Masks for even and odd rows (the Bayer pattern repeats every 2).
    let masks = [row_masks(t.cfa, 0, w), row_masks(t.cfa, 1, w)];
    let red_row = |y: usize| masks[y & 1].r.iter().any(|&v| v > 0.0);

    // 1. Directional green estimates (margin 2); colour differences C at
    // R/B sites, 0 at G sites.
    let gh = plane(&mut s.gh, n);
    let gv = plane(&mut s.gv, n);
    let ch = plane(&mut s.ch, n);
    let cv = plane(&mut s.cv, n);
    for y in 2..h - 2 {
        // Columns 2..w-2, as slices shifted by -2..=2.
        let len = w - 4;
        let mg = &masks[y & 1].g[2..2 + len];
        let row = |dy: usize, x0: usize| &src[(y + dy - 2) * w + x0..][..len];
        let (u2, u1, d1, d2) = (row(0, 2), row(1, 2), row(3, 2), row(4, 2));
        let (l2, l1, s0, r1, r2) = (row(2, 0), row(2, 1), row(2, 2), row(2, 3), row(2, 4));
        let out = y * w + 2..y * w + 2 + len;
        let (gh_r, gv_r) = (&mut gh[out.clone()], &mut gv[out.clone()]);
        let (ch_r, cv_r) = (&mut ch[out.clone()], &mut cv[out]);
        for x in 0..len {
            let v = s0[x];
            let isg = mg[x];
            let eh = 0.5 * (l1[x] + r1[x]) + 0.5 * v - 0.25 * (l2[x] + r2[x]);
            let ev = 0.5 * (u1[x] + d1[x]) + 0.5 * v - 0.25 * (u2[x] + d2[x]);
            let a = isg * v + (1.0 - isg) * eh;
            let b = isg * v + (1.0 - isg) * ev;
            gh_r[x] = a;
            gv_r[x] = b;
            ch_r[x] = (1.0 - isg) * (v - a);
            cv_r[x] = (1.0 - isg) * (v - b);
        }
    }
    // 2. Gradients of the colour differences two pixels apart (margin 4).
    let dh = plane(&mut s.dh, n);
    let dv = plane(&mut s.dv, n);
    for y in 2..h - 4 {
        let (c0, c2) = (&ch[y * w..(y + 1) * w], &cv[(y + 2) * w..(y + 3) * w]);
        let cv0 = &cv[y * w..(y + 1) * w];
        let (dh_r, dv_r) = (&mut dh[y * w..(y + 1) * w], &mut dv[y * w..(y + 1) * w]);
        for x in 2..w - 4 {
            dh_r[x] = (c0[x] - c0[x + 2]).abs();
            dv_r[x] = (cv0[x] - c2[x]).abs();
        }
    }
    // 3. Classifier over the paper's window (margin 6): horizontal (1.0)
    // when the vertical gradient sum is not smaller.
    let g = plane(&mut s.g, n);
    let hz = plane(&mut s.hz, n);
    for y in 6..h - 6 {
        let r = |k: isize| -> std::ops::Range<usize> {
            let s = (y as isize + k) as usize * w;
            s..s + w
        };
        let (h2, h1, h0, hm1, hm2) = (&dh[r(2)], &dh[r(1)], &dh[r(0)], &dh[r(-1)], &dh[r(-2)]);
        let (v0, vm1, vm2) = (&dv[r(0)], &dv[r(-1)], &dv[r(-2)]);
        let (gh0, gv0) = (&gh[r(0)], &gv[r(0)]);
        let row = y * w..(y + 1) * w;
        let (g_r, hz_r) = (&mut g[row.clone()], &mut hz[row]);
        for x in 6..w - 6 {
            let sh = h2[x]
                + h2[x - 2]
                + h1[x - 1]
                + 3.0 * h0[x]
                + 3.0 * h0[x - 2]
                + hm1[x - 1]
                + hm2[x]
                + hm2[x - 2];
            let sv = v0[x + 2]
                + vm2[x + 2]
                + vm1[x + 1]
                + 3.0 * v0[x]
                + 3.0 * vm2[x]
                + vm1[x - 1]
                + v0[x - 2]
                + vm2[x - 2];
            let k = (sv >= sh) as u8 as f32;
            hz_r[x] = k;
            g_r[x] = k * gh0[x] + (1.0 - k) * gv0[x];
        }
    }

    // 4. Red and blue at green sites from the colour differences of the
    // direct neighbours (margin 7). R and B start as the masked CFA.
    let r = plane(&mut s.r, n);
    let b = plane(&mut s.b, n);
    for y in 0..h {
        let m = &masks[y & 1];
        let row = y * w..(y + 1) * w;
        let (r_r, b_r, s_r) = (&mut r[row.clone()], &mut b[row.clone()], &src[row]);
        for x in 0..w {
            r_r[x] = m.r[x] * s_r[x];
            b_r[x] = m.b[x] * s_r[x];
        }
    }
    for y in 7..h - 7 {
        let m = &masks[y & 1];
        let rr = red_row(y);
        // Columns 7..w-7, as slices shifted by -1..=1.
        let len = w - 14;
        let mg = &m.g[7..7 + len];
        let at = |dy: usize, x0: usize| (y + dy - 1) * w + x0..(y + dy - 1) * w + x0 + len;
        let (su, sd) = (&src[at(0, 7)], &src[at(2, 7)]);
        let (sw, se) = (&src[at(1, 6)], &src[at(1, 8)]);
        let (gu, g0, gd) = (&g[at(0, 7)], &g[at(1, 7)], &g[at(2, 7)]);
        let (gw, ge) = (&g[at(1, 6)], &g[at(1, 8)]);
        let out = y * w + 7..y * w + 7 + len;
        let (r_r, b_r) = (&mut r[out.clone()], &mut b[out]);
        for x in 0..len {
            let isg = mg[x];
            let hd = 0.5 * (sw[x] + se[x]) - 0.5 * (gw[x] + ge[x]);
            let vd = 0.5 * (su[x] + sd[x]) - 0.5 * (gu[x] + gd[x]);
            // Red rows take red from the row and blue from the column.
            let (dr, db) = if rr { (hd, vd) } else { (vd, hd) };
            let (rn, bn) = (g0[x] + dr, g0[x] + db);
            r_r[x] = isg * rn + (1.0 - isg) * r_r[x];
            b_r[x] = isg * bn + (1.0 - isg) * b_r[x];
        }
    }
    // 5. Red at blue and blue at red sites along the chosen direction
    // (margin 8). A kept site reads only green-site values, which this
    // pass leaves as they are (x + 0 * y), so each row is computed from a
    // copy of itself as it was, and vectorises.
    let (old_r, old_b) = plane(&mut s.rows, 2 * w).split_at_mut(w);
    for y in 8..h - 8 {
        let m = &masks[y & 1];
        let len = w - 16;
        let (above_r, rest_r) = r.split_at_mut(y * w);
        let (cur_r, below_r) = rest_r.split_at_mut(w);
        let (above_b, rest_b) = b.split_at_mut(y * w);
        let (cur_b, below_b) = rest_b.split_at_mut(w);
        old_r.copy_from_slice(cur_r);
        old_b.copy_from_slice(cur_b);
        let (ru, rdn) = (&above_r[(y - 1) * w + 8..][..len], &below_r[8..8 + len]);
        let (bu, bdn) = (&above_b[(y - 1) * w + 8..][..len], &below_b[8..8 + len]);
        let (rw, rc, re) = (&old_r[7..7 + len], &old_r[8..8 + len], &old_r[9..9 + len]);
        let (bw, bc, be) = (&old_b[7..7 + len], &old_b[8..8 + len], &old_b[9..9 + len]);
        let (mr, mb) = (&m.r[8..8 + len], &m.b[8..8 + len]);
        let hzr = &hz[y * w + 8..][..len];
        let (out_r, out_b) = (&mut cur_r[8..8 + len], &mut cur_b[8..8 + len]);
        for x in 0..len {
            let (isr, isb, k) = (mr[x], mb[x], hzr[x]);
            let rh = 0.5 * (rw[x] + re[x]);
            let rv = 0.5 * (ru[x] + rdn[x]);
            let bh = 0.5 * (bw[x] + be[x]);
            let bv = 0.5 * (bu[x] + bdn[x]);
            let rd = k * (rh - bh) + (1.0 - k) * (rv - bv);
            // At B: R = B + (R - B)~ ; at R: B = R - (R - B)~.
            let rn = isb * (bc[x] + rd) + (1.0 - isb) * rc[x];
            out_r[x] = rn;
            out_b[x] = isr * (rn - rd) + (1.0 - isr) * bc[x];
        }
    }
    if refine {
        refine_step(t, &masks, hz, r, g, b, [&mut s.ch, &mut s.cv]);
    }
}
/// Menon 2007 refining step: smooth colour differences along the chosen
/// direction, first for green (margin 9), then red/blue at green sites
/// (margin 10), then red/blue at blue/red sites (margin 11). Each pass
/// writes a site from that site's own values and from difference planes
/// computed before the pass, so rows of shifted slices give the
/// site-by-site loop's bits.
#[inline(always)]
fn refine_step(
    t: &Tile,
    masks: &[RowMasks; 2],
    hz: &[f32],
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
    [rg, bg]: [&mut Vec<f32>; 2],
) {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let red_row = |y: usize| masks[y & 1].r.iter().any(|&v| v > 0.0);
    let third = 1.0f32 / 3.0;
    let (rg, bg) = (plane(rg, n), plane(bg, n));
    let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
    // Row `y`, `len` samples from column `x0`.
    let at = |y: usize, x0: usize, len: usize| y * w + x0..y * w + x0 + len;
    let diff = |d: &mut [f32], a: &[f32], c: &[f32]| {
        for ((d, a), c) in d.iter_mut().zip(a).zip(c) {
            *d = a - c;
        }
    };
    // Green at R and B sites: G = X - mean3(X - G) along the direction.
    diff(rg, r, g);
    diff(bg, b, g);
    for y in 9..h - 9 {
        let m = &masks[y & 1];
        let len = w - 18;
        let (mr, mb, mg) = (&m.r[9..9 + len], &m.b[9..9 + len], &m.g[9..9 + len]);
        let k_r = &hz[at(y, 9, len)];
        let (rgw, rgc, rge) = (&rg[at(y, 8, len)], &rg[at(y, 9, len)], &rg[at(y, 10, len)]);
        let (rgn, rgs) = (&rg[at(y - 1, 9, len)], &rg[at(y + 1, 9, len)]);
        let (bgw, bgc, bge) = (&bg[at(y, 8, len)], &bg[at(y, 9, len)], &bg[at(y, 10, len)]);
        let (bgn, bgs) = (&bg[at(y - 1, 9, len)], &bg[at(y + 1, 9, len)]);
        let (rr, br) = (&r[at(y, 9, len)], &b[at(y, 9, len)]);
        let gr = &mut g[at(y, 9, len)];
        for x in 0..len {
            let k = k_r[x];
            let frg = k * (rgw[x] + rgc[x] + rge[x]) * third
                + (1.0 - k) * (rgn[x] + rgc[x] + rgs[x]) * third;
            let fbg = k * (bgw[x] + bgc[x] + bge[x]) * third
                + (1.0 - k) * (bgn[x] + bgc[x] + bgs[x]) * third;
            gr[x] = mr[x] * (rr[x] - frg) + mb[x] * (br[x] - fbg) + mg[x] * gr[x];
        }
    }
    // Red and blue at green sites.
    diff(rg, r, g);
    diff(bg, b, g);
    for y in 10..h - 10 {
        let m = &masks[y & 1];
        let rrow = red_row(y);
        let len = w - 20;
        let mg = &m.g[10..10 + len];
        let (rgw, rge) = (&rg[at(y, 9, len)], &rg[at(y, 11, len)]);
        let (rgn, rgs) = (&rg[at(y - 1, 10, len)], &rg[at(y + 1, 10, len)]);
        let (bgw, bge) = (&bg[at(y, 9, len)], &bg[at(y, 11, len)]);
        let (bgn, bgs) = (&bg[at(y - 1, 10, len)], &bg[at(y + 1, 10, len)]);
        let gr = &g[at(y, 10, len)];
        let (rr, br) = (&mut r[at(y, 10, len)], &mut b[at(y, 10, len)]);
        for x in 0..len {
            let isg = mg[x];
            let (rh, rv) = (0.5 * (rgw[x] + rge[x]), 0.5 * (rgn[x] + rgs[x]));
            let (bh, bv) = (0.5 * (bgw[x] + bge[x]), 0.5 * (bgn[x] + bgs[x]));
            let (rn, bn) = if rrow {
                (gr[x] + rh, gr[x] + bv)
            } else {
                (gr[x] + rv, gr[x] + bh)
            };
            rr[x] = isg * rn + (1.0 - isg) * rr[x];
            br[x] = isg * bn + (1.0 - isg) * br[x];
        }
    }
    // Red at blue sites and blue at red sites.
    let rb = rg;
    diff(rb, r, b);
    for y in 11..h - 11 {
        let m = &masks[y & 1];
        let len = w - 22;
        let (mr, mb) = (&m.r[11..11 + len], &m.b[11..11 + len]);
        let k_r = &hz[at(y, 11, len)];
        let (rbw, rbc, rbe) = (
            &rb[at(y, 10, len)],
            &rb[at(y, 11, len)],
            &rb[at(y, 12, len)],
        );
        let (rbn, rbs) = (&rb[at(y - 1, 11, len)], &rb[at(y + 1, 11, len)]);
        let (rr, br) = (&mut r[at(y, 11, len)], &mut b[at(y, 11, len)]);
        for x in 0..len {
            let k = k_r[x];
            let f = k * (rbw[x] + rbc[x] + rbe[x]) * third
                + (1.0 - k) * (rbn[x] + rbc[x] + rbs[x]) * third;
            let rn = mb[x] * (br[x] + f) + (1.0 - mb[x]) * rr[x];
            rr[x] = rn;
            br[x] = mr[x] * (rn - f) + (1.0 - mr[x]) * br[x];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Mosaic;
    use crate::raw::{CfaPattern, RawMeta};
    use std::sync::Arc;

    /// The implementation this file replaced (site-by-site in-place pass
    /// 5 and refining loops, one allocation per plane per tile), kept as
    /// the oracle of the bit-for-bit test below.
    mod reference {
        use super::super::{row_masks, RowMasks, Tile};

        /// Demosaics a whole tile. Each pass only computes the region whose
        /// inputs are valid (the margin grows with every stencil), so no bounds
        /// logic runs per pixel; the 12-pixel halo covers the total margin, and
        /// the tile was mirror-padded at image borders. Passes are written with
        /// colour masks instead of branches so the compiler vectorises them.
        pub fn menon_tile(t: &Tile, refine: bool) -> [Vec<f32>; 3] {
            let (w, h) = (t.w, t.h);
            let n = w * h;
            let src = &t.data;
            // Masks for even and odd rows (the Bayer pattern repeats every 2).
            let masks = [row_masks(t.cfa, 0, w), row_masks(t.cfa, 1, w)];
            let red_row = |y: usize| masks[y & 1].r.iter().any(|&v| v > 0.0);

            // 1. Directional green estimates (margin 2); colour differences C at
            // R/B sites, 0 at G sites.
            let mut gh = vec![0f32; n];
            let mut gv = vec![0f32; n];
            let mut ch = vec![0f32; n];
            let mut cv = vec![0f32; n];
            for y in 2..h - 2 {
                let mg = &masks[y & 1].g;
                let (u2, u1, s0, d1, d2) = (
                    &src[(y - 2) * w..(y - 1) * w],
                    &src[(y - 1) * w..y * w],
                    &src[y * w..(y + 1) * w],
                    &src[(y + 1) * w..(y + 2) * w],
                    &src[(y + 2) * w..(y + 3) * w],
                );
                let row = y * w..(y + 1) * w;
                let (gh_r, gv_r) = (&mut gh[row.clone()], &mut gv[row.clone()]);
                let (ch_r, cv_r) = (&mut ch[row.clone()], &mut cv[row]);
                for x in 2..w - 2 {
                    let v = s0[x];
                    let isg = mg[x];
                    let eh =
                        0.5 * (s0[x - 1] + s0[x + 1]) + 0.5 * v - 0.25 * (s0[x - 2] + s0[x + 2]);
                    let ev = 0.5 * (u1[x] + d1[x]) + 0.5 * v - 0.25 * (u2[x] + d2[x]);
                    let a = isg * v + (1.0 - isg) * eh;
                    let b = isg * v + (1.0 - isg) * ev;
                    gh_r[x] = a;
                    gv_r[x] = b;
                    ch_r[x] = (1.0 - isg) * (v - a);
                    cv_r[x] = (1.0 - isg) * (v - b);
                }
            }
            // 2. Gradients of the colour differences two pixels apart (margin 4).
            let mut dh = vec![0f32; n];
            let mut dv = vec![0f32; n];
            for y in 2..h - 4 {
                let (c0, c2) = (&ch[y * w..(y + 1) * w], &cv[(y + 2) * w..(y + 3) * w]);
                let cv0 = &cv[y * w..(y + 1) * w];
                let (dh_r, dv_r) = (&mut dh[y * w..(y + 1) * w], &mut dv[y * w..(y + 1) * w]);
                for x in 2..w - 4 {
                    dh_r[x] = (c0[x] - c0[x + 2]).abs();
                    dv_r[x] = (cv0[x] - c2[x]).abs();
                }
            }
            drop((ch, cv));
            // 3. Classifier over the paper's window (margin 6): horizontal (1.0)
            // when the vertical gradient sum is not smaller.
            let mut g = vec![0f32; n];
            let mut hz = vec![0f32; n];
            for y in 6..h - 6 {
                let r = |_d: &[f32], k: isize| -> std::ops::Range<usize> {
                    let s = (y as isize + k) as usize * w;
                    s..s + w
                };
                let (h2, h1, h0, hm1, hm2) = (
                    &dh[r(&dh, 2)],
                    &dh[r(&dh, 1)],
                    &dh[r(&dh, 0)],
                    &dh[r(&dh, -1)],
                    &dh[r(&dh, -2)],
                );
                let (v0, vm1, vm2) = (&dv[r(&dv, 0)], &dv[r(&dv, -1)], &dv[r(&dv, -2)]);
                let (gh0, gv0) = (&gh[r(&gh, 0)], &gv[r(&gv, 0)]);
                let row = y * w..(y + 1) * w;
                let (g_r, hz_r) = (&mut g[row.clone()], &mut hz[row]);
                for x in 6..w - 6 {
                    let sh = h2[x]
                        + h2[x - 2]
                        + h1[x - 1]
                        + 3.0 * h0[x]
                        + 3.0 * h0[x - 2]
                        + hm1[x - 1]
                        + hm2[x]
                        + hm2[x - 2];
                    let sv = v0[x + 2]
                        + vm2[x + 2]
                        + vm1[x + 1]
                        + 3.0 * v0[x]
                        + 3.0 * vm2[x]
                        + vm1[x - 1]
                        + v0[x - 2]
                        + vm2[x - 2];
                    let k = (sv >= sh) as u8 as f32;
                    hz_r[x] = k;
                    g_r[x] = k * gh0[x] + (1.0 - k) * gv0[x];
                }
            }
            drop((gh, gv, dh, dv));

            // 4. Red and blue at green sites from the colour differences of the
            // direct neighbours (margin 7). R and B start as the masked CFA.
            let mut r = vec![0f32; n];
            let mut b = vec![0f32; n];
            for y in 0..h {
                let m = &masks[y & 1];
                for x in 0..w {
                    let i = y * w + x;
                    r[i] = m.r[x] * src[i];
                    b[i] = m.b[x] * src[i];
                }
            }
            for y in 7..h - 7 {
                let m = &masks[y & 1];
                let rr = red_row(y);
                let (su, s0, sd) = (
                    &src[(y - 1) * w..y * w],
                    &src[y * w..(y + 1) * w],
                    &src[(y + 1) * w..(y + 2) * w],
                );
                let (gu, g0, gd) = (
                    &g[(y - 1) * w..y * w],
                    &g[y * w..(y + 1) * w],
                    &g[(y + 1) * w..(y + 2) * w],
                );
                let row = y * w..(y + 1) * w;
                let (r_r, b_r) = (&mut r[row.clone()], &mut b[row]);
                for x in 7..w - 7 {
                    let isg = m.g[x];
                    let hd = 0.5 * (s0[x - 1] + s0[x + 1]) - 0.5 * (g0[x - 1] + g0[x + 1]);
                    let vd = 0.5 * (su[x] + sd[x]) - 0.5 * (gu[x] + gd[x]);
                    let (rn, bn) = if rr {
                        (g0[x] + hd, g0[x] + vd)
                    } else {
                        (g0[x] + vd, g0[x] + hd)
                    };
                    r_r[x] = isg * rn + (1.0 - isg) * r_r[x];
                    b_r[x] = isg * bn + (1.0 - isg) * b_r[x];
                }
            }
            // 5. Red at blue and blue at red sites along the chosen direction
            // (margin 8); reads only green-site values, so it works in place.
            for y in 8..h - 8 {
                let m = &masks[y & 1];
                for x in 8..w - 8 {
                    let i = y * w + x;
                    let (isr, isb, k) = (m.r[x], m.b[x], hz[i]);
                    let rh = 0.5 * (r[i - 1] + r[i + 1]);
                    let rv = 0.5 * (r[i - w] + r[i + w]);
                    let bh = 0.5 * (b[i - 1] + b[i + 1]);
                    let bv = 0.5 * (b[i - w] + b[i + w]);
                    let rd = k * (rh - bh) + (1.0 - k) * (rv - bv);
                    // At B: R = B + (R - B)~ ; at R: B = R - (R - B)~.
                    r[i] = isb * (b[i] + rd) + (1.0 - isb) * r[i];
                    b[i] = isr * (r[i] - rd) + (1.0 - isr) * b[i];
                }
            }
            if refine {
                refine_step(t, &masks, &hz, &mut r, &mut g, &mut b);
            }
            [r, g, b]
        }

        /// Menon 2007 refining step: smooth colour differences along the chosen
        /// direction, first for green (margin 9), then red/blue at green sites
        /// (margin 10), then red/blue at blue/red sites (margin 11).
        fn refine_step(
            t: &Tile,
            masks: &[RowMasks; 2],
            hz: &[f32],
            r: &mut [f32],
            g: &mut [f32],
            b: &mut [f32],
        ) {
            let (w, h) = (t.w, t.h);
            let n = w * h;
            let red_row = |y: usize| masks[y & 1].r.iter().any(|&v| v > 0.0);
            let third = 1.0f32 / 3.0;
            // Green at R and B sites: G = X - mean3(X - G) along the direction.
            let mut rg = vec![0f32; n];
            let mut bg = vec![0f32; n];
            for i in 0..n {
                rg[i] = r[i] - g[i];
                bg[i] = b[i] - g[i];
            }
            for y in 9..h - 9 {
                let m = &masks[y & 1];
                for x in 9..w - 9 {
                    let i = y * w + x;
                    let k = hz[i];
                    let frg = k * (rg[i - 1] + rg[i] + rg[i + 1]) * third
                        + (1.0 - k) * (rg[i - w] + rg[i] + rg[i + w]) * third;
                    let fbg = k * (bg[i - 1] + bg[i] + bg[i + 1]) * third
                        + (1.0 - k) * (bg[i - w] + bg[i] + bg[i + w]) * third;
                    g[i] = m.r[x] * (r[i] - frg) + m.b[x] * (b[i] - fbg) + m.g[x] * g[i];
                }
            }
            // Red and blue at green sites.
            for i in 0..n {
                rg[i] = r[i] - g[i];
                bg[i] = b[i] - g[i];
            }
            for y in 10..h - 10 {
                let m = &masks[y & 1];
                let rr = red_row(y);
                for x in 10..w - 10 {
                    let i = y * w + x;
                    let isg = m.g[x];
                    let (rh, rv) = (0.5 * (rg[i - 1] + rg[i + 1]), 0.5 * (rg[i - w] + rg[i + w]));
                    let (bh, bv) = (0.5 * (bg[i - 1] + bg[i + 1]), 0.5 * (bg[i - w] + bg[i + w]));
                    let (rn, bn) = if rr {
                        (g[i] + rh, g[i] + bv)
                    } else {
                        (g[i] + rv, g[i] + bh)
                    };
                    r[i] = isg * rn + (1.0 - isg) * r[i];
                    b[i] = isg * bn + (1.0 - isg) * b[i];
                }
            }
            // Red at blue sites and blue at red sites.
            let rb = &mut rg;
            for i in 0..n {
                rb[i] = r[i] - b[i];
            }
            for y in 11..h - 11 {
                let m = &masks[y & 1];
                for x in 11..w - 11 {
                    let i = y * w + x;
                    let k = hz[i];
                    let f = k * (rb[i - 1] + rb[i] + rb[i + 1]) * third
                        + (1.0 - k) * (rb[i - w] + rb[i] + rb[i + w]) * third;
                    r[i] = m.b[x] * (b[i] + f) + (1.0 - m.b[x]) * r[i];
                    b[i] = m.r[x] * (r[i] - f) + (1.0 - m.r[x]) * b[i];
                }
            }
        }
    }

    /// A mosaic of pseudo-random samples in [-0.05, 1.2) (negatives,
    /// zeros and clipped values included), no structure at all.
    fn noise_mosaic(w: usize, h: usize, cfa: CfaPattern, seed: u64) -> Mosaic {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut data = Vec::with_capacity(w * h);
        for k in 0..w * h {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 40) as f32 / (1u64 << 24) as f32;
            data.push(if k % 97 == 0 { 0.0 } else { u * 1.25 - 0.05 });
        }
        Mosaic::normalized(w, h, cfa, data, RawMeta::bayer("t", w, h, cfa))
    }

    /// Several strips and tiles (a narrow last tile and a short last
    /// strip), every Bayer phase, with and without refining, tiny frames:
    /// the row-vectorised kernel with its reused scratch gives the
    /// reference's bits everywhere.
    #[test]
    fn matches_the_site_by_site_reference_bit_for_bit() {
        for (k, cfa) in CfaPattern::ALL.into_iter().enumerate() {
            for (w, h) in [(850, 150), (37, 29), (2, 2), (5, 3)] {
                for refine in [true, false] {
                    let m = noise_mosaic(w, h, cfa, k as u64 * 31 + w as u64);
                    let want = crate::backend::cpu::demosaic_tiles(&m, HALO, STRIP, TILE_W, |t| {
                        reference::menon_tile(t, refine)
                    });
                    let st = compile(serde_json::json!({ "refine": refine })).unwrap();
                    let ctx = RunCtx { stage_id: "dm" };
                    let Value::Image(img) =
                        st.run_cpu(&ctx, vec![Value::Mosaic(Arc::new(m))]).unwrap()
                    else {
                        panic!("not an image")
                    };
                    assert_eq!(img.data.len(), want.len());
                    for (i, (a, b)) in img.data.iter().zip(&want).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{cfa:?} {w}x{h} refine {refine} sample {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
