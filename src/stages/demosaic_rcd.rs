//! `demosaic_rcd`: Ratio Corrected Demosaicing, Luis Sanz Rodríguez
//! (2011-2017, release 2.3; the default demosaic of RawTherapee and
//! darktable). Fast, and clean on real sensor noise.
//!
//! 1. Vertical/horizontal discrimination from squared 7-tap high-pass
//!    responses of the mosaic (`VH = V / (V + H)`).
//! 2. A 3x3 low-pass "luminance" of the mosaic at red/blue sites.
//! 3. Green at red/blue sites: the four cardinal green neighbours scaled
//!    by the low-pass ratio between the site and the site two pixels away
//!    (the "ratio correction"), weighted by inverse gradients, blended
//!    vertically/horizontally by the refined discrimination.
//! 4. Red at blue and blue at red sites from diagonal colour differences
//!    (P/Q diagonal discrimination, same shape as step 1), then red and
//!    blue at green sites from cardinal colour differences.
//!
//! Input: a mosaic, normalised (1.0 = white) or in DN (the `eps`
//! constants assume normalised values but only guard divisions). Output:
//! planar camera RGB, same size. Runs on 2-D tiles with a 12-pixel
//! mirrored halo, which covers the method's 10-pixel dependency radius.

use serde::Deserialize;

use super::demosaic_bilinear::{demosaiced, infer_demosaic};
use super::row_kernel::{DemosaicFn, Header, RowKernel, RowShape};
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::{
    demosaic_band_tiles, demosaic_tiles_scratch, scratch_plane as plane, Tile, TileScratch,
};
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc};

/// YAML params of `demosaic_rcd` (none: the method has no tuning knobs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `demosaic_rcd` op.
#[derive(Debug)]
pub struct DemosaicRcd;

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let _: Params = parse_params(params)?;
    Ok(Box::new(DemosaicRcd))
}

/// Halo (pixels, even) covering the dependency radius (10) of the method.
const HALO: usize = 10;
/// Output rows per strip (one rayon task).
const STRIP: usize = 64;
/// Output columns per tile within a strip (keeps a tile's planes in L2).
const TILE_W: usize = 512;
/// Division guard (normalised units).
const EPS: f32 = 1e-5;
/// Floor of the squared high-pass statistics.
const EPSSQ: f32 = 1e-10;

impl Stage for DemosaicRcd {
    fn op(&self) -> &'static str {
        "demosaic_rcd"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let data = demosaic_tiles_scratch(m, HALO, STRIP, TILE_W, rcd_tile);
        Ok(demosaiced(m, data))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: HALO,
            row_align: 2,
        })
    }

    /// Fused: each full-width band tile of [`STRIP`] rows is worked in
    /// [`TILE_W`]-column tiles by the same [`rcd_tile`] as `run_cpu`; every
    /// output pixel depends only on the mosaic within [`HALO`] pixels of
    /// it, so both paths give the same pixels.
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let out = input.demosaiced()?;
        let f: DemosaicFn = Box::new(move |band, out| {
            SCRATCH.with(|s| {
                let (scratch, buf) = &mut *s.borrow_mut();
                demosaic_band_tiles(band, TILE_W, rcd_tile, scratch, buf, out)
            })
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
}

thread_local! {
    /// Per-thread planes of the fused kernel and its column-tile buffer,
    /// reused across strips and frames (no allocation per strip).
    static SCRATCH: std::cell::RefCell<(Scratch, Vec<f32>)> =
        std::cell::RefCell::new((Scratch::default(), Vec::new()));
}

/// First column at or after `from` whose parity is `parity`.
#[inline(always)]
fn first_at(from: usize, parity: usize) -> usize {
    from + ((from ^ parity) & 1)
}

/// Squared response of the 7-tap high-pass [1 -3 -1 6 -1 -3 1] from its
/// taps at offsets -3..=3 (`m3` .. `p3`) along one direction.
#[inline(always)]
fn hp2(m3: f32, m2: f32, m1: f32, c: f32, p1: f32, p2: f32, p3: f32) -> f32 {
    let v = (m3 - m1 - p1 + p3) - 3.0 * (m2 + p2) + 6.0 * c;
    v * v
}

/// The refined discrimination: the diagonal neighbours' mean `nb` when
/// it is more decided (further from 0.5) than the centre `c`.
#[inline(always)]
fn refine(c: f32, nb: f32) -> f32 {
    if (0.5 - c).abs() < (0.5 - nb).abs() {
        nb
    } else {
        c
    }
}

/// Step 4.3 at one green site for one colour: `[gc, dn, ds, dw, de, d]`
/// (green, its absolute differences two sites N/S/W/E, the refined V/H
/// discrimination), green one site N/S/W/E, the colour one site and three
/// sites N/S/W/E.
#[inline(always)]
fn est43(
    [gc, dn, ds, dw, de, d]: [f32; 6],
    [gn, gs, gw, ge]: [f32; 4],
    [cn, cs, cw, ce]: [f32; 4],
    [cn3, cs3, cw3, ce3]: [f32; 4],
) -> f32 {
    let sn = (cn - cs).abs();
    let ew = (cw - ce).abs();
    let ng = EPS + sn + dn + (cn - cn3).abs();
    let sg = EPS + sn + ds + (cs - cs3).abs();
    let wg = EPS + ew + dw + (cw - cw3).abs();
    let eg = EPS + ew + de + (ce - ce3).abs();
    let (ne, se) = (cn - gn, cs - gs);
    let (we, ee) = (cw - gw, ce - ge);
    let v_est = (ng * se + sg * ne) / (ng + sg);
    let h_est = (eg * we + wg * ee) / (eg + wg);
    gc + d * h_est + (1.0 - d) * v_est
}

/// Deinterleaves one mosaic row into its even columns `e` and odd
/// columns `o` (`o` one longer than the odd columns when the row length
/// is odd: that pad sample is set to 0). Blocks of 16 samples go through
/// AVX2 shuffles where the CPU has them (a pure data move, same bits).
#[inline(always)]
fn split_row(src: &[f32], e: &mut [f32], o: &mut [f32]) {
    let done = split_wide(src, e, o);
    let mut pairs = src[2 * done..].chunks_exact(2);
    for ((p, e), o) in (&mut pairs)
        .zip(e[done..].iter_mut())
        .zip(o[done..].iter_mut())
    {
        *e = p[0];
        *o = p[1];
    }
    if let [last] = pairs.remainder() {
        let k = src.len() / 2;
        e[k] = *last;
        o[k] = 0.0;
    }
}

/// Interleaves even columns `e` and odd columns `o` into one row `dst`
/// (the inverse of [`split_row`]; AVX2 shuffles as there).
#[inline(always)]
fn merge_row(e: &[f32], o: &[f32], dst: &mut [f32]) {
    let done = merge_wide(e, o, dst);
    let mut pairs = dst[2 * done..].chunks_exact_mut(2);
    for ((p, e), o) in (&mut pairs).zip(&e[done..]).zip(&o[done..]) {
        p[0] = *e;
        p[1] = *o;
    }
    if let [last] = pairs.into_remainder() {
        *last = e[e.len() - 1];
    }
}

/// The first pairs of [`split_row`] (whole blocks of 8) on AVX2; returns
/// how many pairs it split (0 without AVX2).
#[inline(always)]
fn split_wide(src: &[f32], e: &mut [f32], o: &mut [f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::simd::has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2::split(src, e, o) };
    }
    let _ = (src, e, o);
    0
}

/// The first pairs of [`merge_row`] (whole blocks of 8) on AVX2; returns
/// how many pairs it merged (0 without AVX2).
#[inline(always)]
fn merge_wide(e: &[f32], o: &[f32], dst: &mut [f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::simd::has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2::merge(e, o, dst) };
    }
    let _ = (e, o, dst);
    0
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Splits 8 pairs per step: from `a = e0 o0 e1 o1 | e2 o2 e3 o3` and
    /// `b = e4 o4 e5 o5 | e6 o6 e7 o7`, a shuffle per 128-bit half gives
    /// `e0 e1 e4 e5 | e2 e3 e6 e7` (and the odd ones alike), a 64-bit
    /// permutation puts them in order. Returns the pairs split.
    #[target_feature(enable = "avx2")]
    pub unsafe fn split(src: &[f32], e: &mut [f32], o: &mut [f32]) -> usize {
        let blocks = (src.len() / 16).min(e.len() / 8).min(o.len() / 8);
        for k in 0..blocks {
            // SAFETY: samples 16k..16k + 16 of `src` and 8k..8k + 8 of `e`
            // and `o` are inside the slices (k < blocks).
            let a = _mm256_loadu_ps(src.as_ptr().add(16 * k));
            let b = _mm256_loadu_ps(src.as_ptr().add(16 * k + 8));
            let ev = _mm256_shuffle_ps(a, b, 0b10_00_10_00);
            let od = _mm256_shuffle_ps(a, b, 0b11_01_11_01);
            let order = |v: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0b11_01_10_00))
            };
            _mm256_storeu_ps(e.as_mut_ptr().add(8 * k), order(ev));
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * k), order(od));
        }
        8 * blocks
    }

    /// Merges 8 pairs per step: the unpacks give `e0 o0 e1 o1 | e4 o4 e5
    /// o5` and `e2 o2 e3 o3 | e6 o6 e7 o7`, two 128-bit permutations put
    /// the halves in order. Returns the pairs merged.
    #[target_feature(enable = "avx2")]
    pub unsafe fn merge(e: &[f32], o: &[f32], dst: &mut [f32]) -> usize {
        let blocks = (dst.len() / 16).min(e.len() / 8).min(o.len() / 8);
        for k in 0..blocks {
            // SAFETY: samples 8k..8k + 8 of `e` and `o` and 16k..16k + 16
            // of `dst` are inside the slices (k < blocks).
            let ev = _mm256_loadu_ps(e.as_ptr().add(8 * k));
            let od = _mm256_loadu_ps(o.as_ptr().add(8 * k));
            let lo = _mm256_unpacklo_ps(ev, od);
            let hi = _mm256_unpackhi_ps(ev, od);
            let out = dst.as_mut_ptr().add(16 * k);
            _mm256_storeu_ps(out, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps(lo, hi, 0x31));
        }
        8 * blocks
    }
}

/// Per-thread planes of [`rcd_tile`], reused from tile to tile. The
/// working planes use the column-split layout of a `w x h` tile: with
/// `half = ceil(w / 2)`, row `y`'s even columns are at `[2 * y * half,
/// 2 * y * half + half)` and its odd columns follow at `[(2 * y + 1) *
/// half, ..)`, so the sites of one Bayer colour in a row are contiguous.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The tile's mosaic, split.
    cfa: Vec<f32>,
    /// Vertical high-pass squares (step 1), then the P diagonal ones.
    a: Vec<f32>,
    /// The low-pass (step 2), then the Q diagonal high-pass squares.
    lq: Vec<f32>,
    /// V/H discrimination.
    vh: Vec<f32>,
    /// P/Q discrimination.
    pq: Vec<f32>,
    /// Output planes, split.
    r: Vec<f32>,
    g: Vec<f32>,
    b: Vec<f32>,
    /// One or two split rows of intermediates.
    row: Vec<f32>,
    /// Output planes, `w * h` row-major (interleaved back).
    out: [Vec<f32>; 3],
}

impl TileScratch for Scratch {
    fn planes(&self) -> [&[f32]; 3] {
        [&self.out[0], &self.out[1], &self.out[2]]
    }
}

crate::avx2_dispatch!(
    /// [`rcd_tile_body`], 8 lanes wide on AVX2 machines.
    pub(crate) fn rcd_tile(t: &Tile, s: &mut Scratch) => rcd_tile_body
);

/// Demosaics one padded tile into the R, G, B planes `s.out` (full tile
/// size; values valid 10 pixels in from every side, and written only in
/// rows 10..h-10). Every pass runs over the column-split planes (see
/// [`Scratch`]): a value needed at red/blue (or green) sites only is
/// computed at those sites only, over contiguous equal-length slices so
/// that it vectorises, with the arithmetic of a site-by-site loop, so the
/// same bits.
#[inline(always)]
fn rcd_tile_body(t: &Tile, s: &mut Scratch) {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    if w < 21 || h < 21 {
        // Unreachable with the 10-pixel halo (tiles are at least 21 px):
        // the native samples only.
        for (p, c) in s.out.iter_mut().zip(0..) {
            let p = plane(p, n);
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    p[i] = if t.cfa.color_at(y, x) == c {
                        t.data[i]
                    } else {
                        0.0
                    };
                }
            }
        }
        return;
    }
    let half = w.div_ceil(2);
    // Samples per split row and per split plane.
    let stride = 2 * half;
    let n_split = stride * h;
    // Split-plane range of `len` sites of row `y` from column `x`, every
    // other column.
    let sp = |y: usize, x: usize, len: usize| {
        let s = (2 * y + (x & 1)) * half + (x >> 1);
        s..s + len
    };
    // First column and count of the sites of column parity `q` in
    // columns `from..to`.
    let sites = |from: usize, to: usize, q: usize| {
        let x0 = first_at(from, q);
        (x0, to.saturating_sub(x0).div_ceil(2))
    };
    // Column parity of the red/blue sites of row y.
    let rb_par = |y: usize| usize::from(t.cfa.color_at(y, 0) == 1);

    let cfa = plane(&mut s.cfa, n_split);
    for (src, dst) in t.data[..n]
        .chunks_exact(w)
        .zip(cfa.chunks_exact_mut(stride))
    {
        let (e, o) = dst.split_at_mut(half);
        split_row(src, e, o);
    }
    let cfa = &*cfa;

    // Step 1: vertical/horizontal discrimination (valid 4 in). The
    // vertical taps of both parities are whole split rows.
    let bv = plane(&mut s.a, n_split);
    for y in 3..h - 3 {
        let r = |dy: usize| &cfa[(y + dy - 3) * stride..][..stride];
        let (m3, m2, m1, c0, p1, p2, p3) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6));
        for (x, o) in bv[y * stride..][..stride].iter_mut().enumerate() {
            *o = hp2(m3[x], m2[x], m1[x], c0[x], p1[x], p2[x], p3[x]);
        }
    }
    let vh = plane(&mut s.vh, n_split);
    let bh = plane(&mut s.row, stride);
    for y in 4..h - 4 {
        // Horizontal high-pass of row y at columns 3..w-3.
        for q in 0..2 {
            let (x0, len) = sites(3, w - 3, q);
            let c = |dx: usize| &cfa[sp(y, x0 + dx - 3, len)];
            let (m3, m2, m1, c0, p1, p2, p3) = (c(0), c(1), c(2), c(3), c(4), c(5), c(6));
            for (x, o) in bh[sp(0, x0, len)].iter_mut().enumerate() {
                *o = hp2(m3[x], m2[x], m1[x], c0[x], p1[x], p2[x], p3[x]);
            }
        }
        for q in 0..2 {
            let (x0, len) = sites(4, w - 4, q);
            let (hw, hc, he) = (
                &bh[sp(0, x0 - 1, len)],
                &bh[sp(0, x0, len)],
                &bh[sp(0, x0 + 1, len)],
            );
            let (vn, vc, vs) = (
                &bv[sp(y - 1, x0, len)],
                &bv[sp(y, x0, len)],
                &bv[sp(y + 1, x0, len)],
            );
            for (x, o) in vh[sp(y, x0, len)].iter_mut().enumerate() {
                let vsum = (vn[x] + vc[x] + vs[x]).max(EPSSQ);
                let hsum = (hw[x] + hc[x] + he[x]).max(EPSSQ);
                *o = vsum / (vsum + hsum);
            }
        }
    }

    // Step 2: low-pass at red/blue sites, from the mosaic clamped at zero
    // so the ratios below stay bounded (valid 1 in; step 3 reads rows and
    // columns 3..-3).
    let lpf = plane(&mut s.lq, n_split);
    for y in 2..h - 2 {
        let (x0, len) = sites(1, w - 1, rb_par(y));
        let r = |dy: usize, dx: usize| &cfa[sp(y + dy - 1, x0 + dx - 1, len)];
        let (nw, nn, ne) = (r(0, 0), r(0, 1), r(0, 2));
        let (ww, cc, ee) = (r(1, 0), r(1, 1), r(1, 2));
        let (sw, ss, se) = (r(2, 0), r(2, 1), r(2, 2));
        for (x, o) in lpf[sp(y, x0, len)].iter_mut().enumerate() {
            let z = |v: &[f32]| v[x].max(0.0);
            *o = z(cc)
                + 0.5 * (z(nn) + z(ss) + z(ww) + z(ee))
                + 0.25 * (z(nw) + z(ne) + z(sw) + z(se));
        }
    }

    // Step 3: green at red/blue sites (valid 5 in).
    let g = plane(&mut s.g, n_split);
    g.copy_from_slice(cfa);
    for y in 5..h - 5 {
        let (x0, len) = sites(5, w - 5, rb_par(y));
        // Sites of row `y + dy` from column x0 + dx.
        let row =
            |dy: isize, dx: isize| sp((y as isize + dy) as usize, (x0 as isize + dx) as usize, len);
        let c = &cfa[row(0, 0)];
        let (n1, n2, n3, n4) = (
            &cfa[row(-1, 0)],
            &cfa[row(-2, 0)],
            &cfa[row(-3, 0)],
            &cfa[row(-4, 0)],
        );
        let (s1, s2, s3, s4) = (
            &cfa[row(1, 0)],
            &cfa[row(2, 0)],
            &cfa[row(3, 0)],
            &cfa[row(4, 0)],
        );
        let (w1, w2, w3, w4) = (
            &cfa[row(0, -1)],
            &cfa[row(0, -2)],
            &cfa[row(0, -3)],
            &cfa[row(0, -4)],
        );
        let (e1, e2, e3, e4) = (
            &cfa[row(0, 1)],
            &cfa[row(0, 2)],
            &cfa[row(0, 3)],
            &cfa[row(0, 4)],
        );
        let lc = &lpf[row(0, 0)];
        let (ln, ls) = (&lpf[row(-2, 0)], &lpf[row(2, 0)]);
        let (lw, le) = (&lpf[row(0, -2)], &lpf[row(0, 2)]);
        let dc = &vh[row(0, 0)];
        let (dnw, dne) = (&vh[row(-1, -1)], &vh[row(-1, 1)]);
        let (dsw, dse) = (&vh[row(1, -1)], &vh[row(1, 1)]);
        for (k, o) in g[row(0, 0)].iter_mut().enumerate() {
            let cc = c[k];
            let sn = (n1[k] - s1[k]).abs();
            let ew = (w1[k] - e1[k]).abs();
            let ng = EPS + sn + (cc - n2[k]).abs() + (n1[k] - n3[k]).abs() + (n2[k] - n4[k]).abs();
            let sg = EPS + sn + (cc - s2[k]).abs() + (s1[k] - s3[k]).abs() + (s2[k] - s4[k]).abs();
            let wg = EPS + ew + (cc - w2[k]).abs() + (w1[k] - w3[k]).abs() + (w2[k] - w4[k]).abs();
            let eg = EPS + ew + (cc - e2[k]).abs() + (e1[k] - e3[k]).abs() + (e2[k] - e4[k]).abs();
            let l2 = 2.0 * lc[k];
            let ne = n1[k] * l2 / (EPS + lc[k] + ln[k]);
            let se = s1[k] * l2 / (EPS + lc[k] + ls[k]);
            let we = w1[k] * l2 / (EPS + lc[k] + lw[k]);
            let ee = e1[k] * l2 / (EPS + lc[k] + le[k]);
            let v_est = (sg * ne + ng * se) / (ng + sg);
            let h_est = (wg * ee + eg * we) / (eg + wg);
            let dv = dc[k];
            let nb = 0.25 * (dnw[k] + dne[k] + dsw[k] + dse[k]);
            let d = refine(dv, nb);
            *o = d * h_est + (1.0 - d) * v_est;
        }
    }
    let g = &*g;

    // Step 4.0/4.1: P (NW-SE) / Q (NE-SW) diagonal high-pass squares at
    // red/blue sites (valid 3 in) and their discrimination there (valid
    // 4 in; the diagonal neighbours of a red/blue site are red/blue
    // sites).
    let p = plane(&mut s.a, n_split);
    let q = plane(&mut s.lq, n_split);
    for y in 3..h - 3 {
        let (x0, len) = sites(3, w - 3, rb_par(y));
        // Sites of row y + dy - 3 from column x0 + dx - 3.
        let r = |dy: usize, dx: usize| &cfa[sp(y + dy - 3, x0 + dx - 3, len)];
        let c0 = r(3, 3);
        let (a3, a2, a1) = (r(0, 0), r(1, 1), r(2, 2));
        let (a4, a5, a6) = (r(4, 4), r(5, 5), r(6, 6));
        for (x, o) in p[sp(y, x0, len)].iter_mut().enumerate() {
            *o = hp2(a3[x], a2[x], a1[x], c0[x], a4[x], a5[x], a6[x]);
        }
        let (b3, b2, b1) = (r(0, 6), r(1, 5), r(2, 4));
        let (b4, b5, b6) = (r(4, 2), r(5, 1), r(6, 0));
        for (x, o) in q[sp(y, x0, len)].iter_mut().enumerate() {
            *o = hp2(b3[x], b2[x], b1[x], c0[x], b4[x], b5[x], b6[x]);
        }
    }
    let pq = plane(&mut s.pq, n_split);
    for y in 4..h - 4 {
        let (x0, len) = sites(4, w - 4, rb_par(y));
        let (pnw, pc, pse) = (
            &p[sp(y - 1, x0 - 1, len)],
            &p[sp(y, x0, len)],
            &p[sp(y + 1, x0 + 1, len)],
        );
        let (qne, qc, qsw) = (
            &q[sp(y - 1, x0 + 1, len)],
            &q[sp(y, x0, len)],
            &q[sp(y + 1, x0 - 1, len)],
        );
        for (x, o) in pq[sp(y, x0, len)].iter_mut().enumerate() {
            let ps = (pnw[x] + pc[x] + pse[x]).max(EPSSQ);
            let qs = (qne[x] + qc[x] + qsw[x]).max(EPSSQ);
            *o = ps / (ps + qs);
        }
    }

    // R and B start as the mosaic at their own sites (the green sites
    // are all written below before the output reads them).
    let r = plane(&mut s.r, n_split);
    let b = plane(&mut s.b, n_split);
    for y in 0..h {
        let par = rb_par(y);
        let dst = if t.cfa.color_at(y, par) == 0 {
            &mut *r
        } else {
            &mut *b
        };
        let (x0, len) = sites(0, w, par);
        dst[sp(y, x0, len)].copy_from_slice(&cfa[sp(y, x0, len)]);
    }

    // Step 4.2: blue at red and red at blue sites (valid 7 in); the
    // diagonal neighbours hold the missing colour in the mosaic.
    for y in 7..h - 7 {
        let par = rb_par(y);
        let (x0, len) = sites(7, w - 7, par);
        let row =
            |dy: isize, dx: isize| sp((y as isize + dy) as usize, (x0 as isize + dx) as usize, len);
        let gcr = &g[row(0, 0)];
        let (cnw, cne, csw, cse) = (
            &cfa[row(-1, -1)],
            &cfa[row(-1, 1)],
            &cfa[row(1, -1)],
            &cfa[row(1, 1)],
        );
        let (gnw, gne, gsw, gse) = (
            &g[row(-1, -1)],
            &g[row(-1, 1)],
            &g[row(1, -1)],
            &g[row(1, 1)],
        );
        let (cnw3, cne3, csw3, cse3) = (
            &cfa[row(-3, -3)],
            &cfa[row(-3, 3)],
            &cfa[row(3, -3)],
            &cfa[row(3, 3)],
        );
        let (gnw2, gne2, gsw2, gse2) = (
            &g[row(-2, -2)],
            &g[row(-2, 2)],
            &g[row(2, -2)],
            &g[row(2, 2)],
        );
        let dc = &pq[row(0, 0)];
        let (dnw, dne) = (&pq[row(-1, -1)], &pq[row(-1, 1)]);
        let (dsw, dse) = (&pq[row(1, -1)], &pq[row(1, 1)]);
        // Blue is missing in a red row, red in a blue row.
        let dst = if t.cfa.color_at(y, par) == 0 {
            &mut *b
        } else {
            &mut *r
        };
        for (k, o) in dst[row(0, 0)].iter_mut().enumerate() {
            let gc = gcr[k];
            let pd = (cnw[k] - cse[k]).abs();
            let qd = (cne[k] - csw[k]).abs();
            let nwg = EPS + pd + (cnw[k] - cnw3[k]).abs() + (gc - gnw2[k]).abs();
            let neg = EPS + qd + (cne[k] - cne3[k]).abs() + (gc - gne2[k]).abs();
            let swg = EPS + qd + (csw[k] - csw3[k]).abs() + (gc - gsw2[k]).abs();
            let seg = EPS + pd + (cse[k] - cse3[k]).abs() + (gc - gse2[k]).abs();
            let (nwe, nee) = (cnw[k] - gnw[k], cne[k] - gne[k]);
            let (swe, see) = (csw[k] - gsw[k], cse[k] - gse[k]);
            let p_est = (nwg * see + seg * nwe) / (nwg + seg);
            let q_est = (neg * swe + swg * nee) / (neg + swg);
            let dv = dc[k];
            let nb = 0.25 * (dnw[k] + dne[k] + dsw[k] + dse[k]);
            let d = refine(dv, nb);
            *o = gc + d * q_est + (1.0 - d) * p_est;
        }
    }

    // Step 4.3: red and blue at green sites (valid 10 in); the sites it
    // reads (red/blue ones) are never written here, and red and blue
    // share the direction and green terms.
    let (est_r, est_b) = plane(&mut s.row, stride).split_at_mut(half);
    for y in 10..h - 10 {
        let (x0, len) = sites(10, w - 10, 1 - rb_par(y));
        let row =
            |dy: isize, dx: isize| sp((y as isize + dy) as usize, (x0 as isize + dx) as usize, len);
        let gcr = &g[row(0, 0)];
        let (gn, gs, gw, ge) = (&g[row(-1, 0)], &g[row(1, 0)], &g[row(0, -1)], &g[row(0, 1)]);
        let (gn2, gs2, gw2, ge2) = (&g[row(-2, 0)], &g[row(2, 0)], &g[row(0, -2)], &g[row(0, 2)]);
        let dc = &vh[row(0, 0)];
        let (dnw, dne) = (&vh[row(-1, -1)], &vh[row(-1, 1)]);
        let (dsw, dse) = (&vh[row(1, -1)], &vh[row(1, 1)]);
        let taps = [
            row(-1, 0),
            row(1, 0),
            row(0, -1),
            row(0, 1),
            row(-3, 0),
            row(3, 0),
            row(0, -3),
            row(0, 3),
        ];
        let [rn, rs, rw, re, rn3, rs3, rw3, re3] = taps.clone().map(|t| &r[t]);
        let [bn, bs, bw, be, bn3, bs3, bw3, be3] = taps.map(|t| &b[t]);
        for (k, (or, ob)) in est_r[..len].iter_mut().zip(&mut est_b[..len]).enumerate() {
            let dv = dc[k];
            let nb = 0.25 * (dnw[k] + dne[k] + dsw[k] + dse[k]);
            let d = refine(dv, nb);
            let gc = gcr[k];
            let (dn, ds) = ((gc - gn2[k]).abs(), (gc - gs2[k]).abs());
            let (dw, de) = ((gc - gw2[k]).abs(), (gc - ge2[k]).abs());
            let gt = [gn[k], gs[k], gw[k], ge[k]];
            let gd = [gc, dn, ds, dw, de, d];
            *or = est43(
                gd,
                gt,
                [rn[k], rs[k], rw[k], re[k]],
                [rn3[k], rs3[k], rw3[k], re3[k]],
            );
            *ob = est43(
                gd,
                gt,
                [bn[k], bs[k], bw[k], be[k]],
                [bn3[k], bs3[k], bw3[k], be3[k]],
            );
        }
        r[row(0, 0)].copy_from_slice(&est_r[..len]);
        b[row(0, 0)].copy_from_slice(&est_b[..len]);
    }

    // Back to row-major planes, in the rows the caller reads.
    for (out, split) in s.out.iter_mut().zip([&*r, g, &*b]) {
        let out = plane(out, n);
        for y in 10..h - 10 {
            let (e, o) = split[y * stride..][..stride].split_at(half);
            merge_row(e, &o[..w / 2], &mut out[y * w..][..w]);
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Image, Mosaic};
    use crate::raw::{CfaPattern, RawMeta};
    use crate::stages::demosaic_testing::{assert_flat_fields_exact, mosaic_of, mse, run_op};
    use std::sync::Arc;

    fn run(m: Mosaic) -> Image {
        run_op("demosaic_rcd", serde_json::Value::Null, m)
    }

    #[test]
    fn flat_colour_fields_are_exact_in_every_phase_and_odd_sizes() {
        assert_flat_fields_exact("demosaic_rcd", 1e-4);
    }

    #[test]
    fn beats_bilinear_on_edges_and_rings_in_every_phase() {
        // Sharp diagonal and vertical edges plus a smooth colour gradient
        // and a low-frequency ring pattern.
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let (xf, yf) = (x as f32, y as f32);
            let edge = if x * 3 + y * 2 > 150 { 0.7 } else { 0.15 };
            let bar = if (x / 7).is_multiple_of(2) { 0.1 } else { 0.0 };
            let rr = ((xf - 40.0).powi(2) + (yf - 30.0).powi(2)).sqrt();
            let ring = 0.1 * (rr * 0.35).sin();
            let l = edge + bar + ring;
            [l * 0.9 + 0.02 * xf / 80.0, l, l * 0.7 + 0.05]
        };
        for cfa in CfaPattern::ALL {
            let rcd = run(mosaic_of(&scene, 80, 60, cfa));
            let st = super::super::demosaic_bilinear::compile(serde_json::Value::Null).unwrap();
            let m = Arc::new(mosaic_of(&scene, 80, 60, cfa));
            let ctx = RunCtx { stage_id: "bl" };
            let Value::Image(bil) = st.run_cpu(&ctx, vec![Value::Mosaic(m)]).unwrap() else {
                panic!("not an image")
            };
            let (e_rcd, e_bil) = (mse(&rcd, &scene, 4), mse(&bil, &scene, 4));
            assert!(
                e_rcd < 0.6 * e_bil,
                "{cfa:?}: rcd {e_rcd} vs bilinear {e_bil}"
            );
        }
    }

    #[test]
    fn native_samples_pass_through() {
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let v = ((x * 7 + y * 13) % 17) as f32 / 17.0;
            [v, 1.0 - v, 0.5 * v]
        };
        let cfa = CfaPattern::ALL[2];
        let m = mosaic_of(&scene, 33, 21, cfa);
        let raw = m.data.clone().into_f32();
        let img = run(m);
        let p = img.planes();
        for y in 0..21 {
            for x in 0..33 {
                let c = cfa.color_at(y, x);
                assert_eq!(p[c][y * 33 + x], raw[y * 33 + x], "({x}, {y})");
            }
        }
    }

    /// The site-by-site implementation this file replaced (12-pixel
    /// halo, one allocation per plane per tile), kept as the oracle of
    /// the bit-for-bit test below.
    mod reference {
        use super::super::{Tile, EPS, EPSSQ};

        /// First column at or after `from` whose parity is `parity`.
        #[inline(always)]
        fn first_at(from: usize, parity: usize) -> usize {
            from + ((from ^ parity) & 1)
        }

        /// Squared response of the 7-tap high-pass [1 -3 -1 6 -1 -3 1] (taps at
        /// offsets -3..=3 of stride `s` around `i`).
        #[inline(always)]
        fn hpf2(c: &[f32], i: usize, s: usize) -> f32 {
            let v = (c[i - 3 * s] - c[i - s] - c[i + s] + c[i + 3 * s])
                - 3.0 * (c[i - 2 * s] + c[i + 2 * s])
                + 6.0 * c[i];
            v * v
        }

        /// The refined discrimination: the diagonal neighbours' mean `nb` when
        /// it is more decided (further from 0.5) than the centre `c`.
        #[inline(always)]
        fn refine(c: f32, nb: f32) -> f32 {
            if (0.5 - c).abs() < (0.5 - nb).abs() {
                nb
            } else {
                c
            }
        }

        /// Demosaics one padded tile; returns full-tile R, G, B planes whose
        /// values are valid 10 pixels in from every side.
        pub fn rcd_tile(t: &Tile) -> [Vec<f32>; 3] {
            let (w, h) = (t.w, t.h);
            let n = w * h;
            let cfa = &t.data;
            // Column parity of the red/blue sites of row y.
            let rb_par = |y: usize| usize::from(t.cfa.color_at(y, 0) == 1);

            // Step 1: vertical/horizontal discrimination (valid 4 in).
            let mut bv = vec![0f32; n];
            for y in 3..h - 3 {
                let row = y * w..(y + 1) * w;
                for (i, v) in row.clone().zip(&mut bv[row]) {
                    *v = hpf2(cfa, i, w);
                }
            }
            let mut bh = vec![0f32; n];
            for y in 0..h {
                let row = y * w + 3..(y + 1) * w - 3;
                for (i, v) in row.clone().zip(&mut bh[row]) {
                    *v = hpf2(cfa, i, 1);
                }
            }
            let mut vh = vec![0.5f32; n];
            for y in 4..h - 4 {
                for i in y * w + 4..(y + 1) * w - 4 {
                    let vs = (bv[i - w] + bv[i] + bv[i + w]).max(EPSSQ);
                    let hs = (bh[i - 1] + bh[i] + bh[i + 1]).max(EPSSQ);
                    vh[i] = vs / (vs + hs);
                }
            }

            // Step 2: low-pass at every site (used at red/blue sites), from the
            // mosaic clamped at zero so the ratios below stay bounded.
            let mut lpf = vec![0f32; n];
            let cz = |i: usize| cfa[i].max(0.0);
            for y in 1..h - 1 {
                let row = y * w + 1..(y + 1) * w - 1;
                for (i, v) in row.clone().zip(&mut lpf[row]) {
                    *v = cz(i)
                        + 0.5 * (cz(i - w) + cz(i + w) + cz(i - 1) + cz(i + 1))
                        + 0.25 * (cz(i - w - 1) + cz(i - w + 1) + cz(i + w - 1) + cz(i + w + 1));
                }
            }

            // Step 3: green at red/blue sites (valid 5 in). Evaluated at every
            // column of a row from equal-length shifted slices (so the loop
            // vectorises), then kept at the red/blue columns only: the same
            // arithmetic per site as a site-by-site loop, so the same bits.
            let mut g = cfa.clone();
            if w > 10 {
                let len = w - 10;
                let mut est = vec![0f32; len];
                for y in 5..h - 5 {
                    // Row `y + dy` from column 5 + dx, `len` long.
                    let row = |dy: isize, dx: isize| -> std::ops::Range<usize> {
                        let s = ((y as isize + dy) * w as isize + 5 + dx) as usize;
                        s..s + len
                    };
                    let c = &cfa[row(0, 0)];
                    let (n1, n2, n3, n4) = (
                        &cfa[row(-1, 0)],
                        &cfa[row(-2, 0)],
                        &cfa[row(-3, 0)],
                        &cfa[row(-4, 0)],
                    );
                    let (s1, s2, s3, s4) = (
                        &cfa[row(1, 0)],
                        &cfa[row(2, 0)],
                        &cfa[row(3, 0)],
                        &cfa[row(4, 0)],
                    );
                    let (w1, w2, w3, w4) = (
                        &cfa[row(0, -1)],
                        &cfa[row(0, -2)],
                        &cfa[row(0, -3)],
                        &cfa[row(0, -4)],
                    );
                    let (e1, e2, e3, e4) = (
                        &cfa[row(0, 1)],
                        &cfa[row(0, 2)],
                        &cfa[row(0, 3)],
                        &cfa[row(0, 4)],
                    );
                    let lc = &lpf[row(0, 0)];
                    let (ln, ls) = (&lpf[row(-2, 0)], &lpf[row(2, 0)]);
                    let (lw, le) = (&lpf[row(0, -2)], &lpf[row(0, 2)]);
                    let dc = &vh[row(0, 0)];
                    let (dnw, dne) = (&vh[row(-1, -1)], &vh[row(-1, 1)]);
                    let (dsw, dse) = (&vh[row(1, -1)], &vh[row(1, 1)]);
                    let est = &mut est[..len];
                    for k in 0..len {
                        let cc = c[k];
                        let sn = (n1[k] - s1[k]).abs();
                        let ew = (w1[k] - e1[k]).abs();
                        let ng = EPS
                            + sn
                            + (cc - n2[k]).abs()
                            + (n1[k] - n3[k]).abs()
                            + (n2[k] - n4[k]).abs();
                        let sg = EPS
                            + sn
                            + (cc - s2[k]).abs()
                            + (s1[k] - s3[k]).abs()
                            + (s2[k] - s4[k]).abs();
                        let wg = EPS
                            + ew
                            + (cc - w2[k]).abs()
                            + (w1[k] - w3[k]).abs()
                            + (w2[k] - w4[k]).abs();
                        let eg = EPS
                            + ew
                            + (cc - e2[k]).abs()
                            + (e1[k] - e3[k]).abs()
                            + (e2[k] - e4[k]).abs();
                        let l2 = 2.0 * lc[k];
                        let ne = n1[k] * l2 / (EPS + lc[k] + ln[k]);
                        let se = s1[k] * l2 / (EPS + lc[k] + ls[k]);
                        let we = w1[k] * l2 / (EPS + lc[k] + lw[k]);
                        let ee = e1[k] * l2 / (EPS + lc[k] + le[k]);
                        let v_est = (sg * ne + ng * se) / (ng + sg);
                        let h_est = (wg * ee + eg * we) / (eg + wg);
                        let dv = dc[k];
                        let nb = 0.25 * (dnw[k] + dne[k] + dsw[k] + dse[k]);
                        let d = refine(dv, nb);
                        est[k] = d * h_est + (1.0 - d) * v_est;
                    }
                    let mut x = first_at(5, rb_par(y));
                    while x < w - 5 {
                        g[y * w + x] = est[x - 5];
                        x += 2;
                    }
                }
            }
            drop((bv, bh, lpf));

            // Step 4.0/4.1: P (NW-SE) / Q (NE-SW) discrimination at red/blue
            // sites (valid 4 in).
            let mut p = vec![0f32; n];
            let mut q = vec![0f32; n];
            for y in 3..h - 3 {
                let mut x = first_at(3, rb_par(y));
                while x < w - 3 {
                    let i = y * w + x;
                    p[i] = hpf2(cfa, i, w + 1);
                    q[i] = hpf2(cfa, i, w - 1);
                    x += 2;
                }
            }
            let mut pq = vec![0.5f32; n];
            for y in 4..h - 4 {
                let mut x = first_at(4, rb_par(y));
                while x < w - 4 {
                    let i = y * w + x;
                    let ps = (p[i - w - 1] + p[i] + p[i + w + 1]).max(EPSSQ);
                    let qs = (q[i - w + 1] + q[i] + q[i + w - 1]).max(EPSSQ);
                    pq[i] = ps / (ps + qs);
                    x += 2;
                }
            }
            drop((p, q));

            // R and B start as the masked mosaic.
            let mut r = vec![0f32; n];
            let mut b = vec![0f32; n];
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    match t.cfa.color_at(y, x) {
                        0 => r[i] = cfa[i],
                        2 => b[i] = cfa[i],
                        _ => {}
                    }
                }
            }

            // Step 4.2: blue at red and red at blue sites (valid 7 in); the
            // diagonal neighbours hold the missing colour in the mosaic. Row-wise
            // at every column as in step 3 (reads only `cfa`, `g`, `pq`), kept at
            // the red/blue columns.
            if w > 14 {
                let len = w - 14;
                let mut est = vec![0f32; len];
                for y in 7..h - 7 {
                    let row = |dy: isize, dx: isize| -> std::ops::Range<usize> {
                        let s = ((y as isize + dy) * w as isize + 7 + dx) as usize;
                        s..s + len
                    };
                    let gcr = &g[row(0, 0)];
                    let (cnw, cne, csw, cse) = (
                        &cfa[row(-1, -1)],
                        &cfa[row(-1, 1)],
                        &cfa[row(1, -1)],
                        &cfa[row(1, 1)],
                    );
                    let (gnw, gne, gsw, gse) = (
                        &g[row(-1, -1)],
                        &g[row(-1, 1)],
                        &g[row(1, -1)],
                        &g[row(1, 1)],
                    );
                    let (cnw3, cne3, csw3, cse3) = (
                        &cfa[row(-3, -3)],
                        &cfa[row(-3, 3)],
                        &cfa[row(3, -3)],
                        &cfa[row(3, 3)],
                    );
                    let (gnw2, gne2, gsw2, gse2) = (
                        &g[row(-2, -2)],
                        &g[row(-2, 2)],
                        &g[row(2, -2)],
                        &g[row(2, 2)],
                    );
                    let dc = &pq[row(0, 0)];
                    let (dnw, dne) = (&pq[row(-1, -1)], &pq[row(-1, 1)]);
                    let (dsw, dse) = (&pq[row(1, -1)], &pq[row(1, 1)]);
                    let est = &mut est[..len];
                    for k in 0..len {
                        let gc = gcr[k];
                        let pd = (cnw[k] - cse[k]).abs();
                        let qd = (cne[k] - csw[k]).abs();
                        let nwg = EPS + pd + (cnw[k] - cnw3[k]).abs() + (gc - gnw2[k]).abs();
                        let neg = EPS + qd + (cne[k] - cne3[k]).abs() + (gc - gne2[k]).abs();
                        let swg = EPS + qd + (csw[k] - csw3[k]).abs() + (gc - gsw2[k]).abs();
                        let seg = EPS + pd + (cse[k] - cse3[k]).abs() + (gc - gse2[k]).abs();
                        let (nwe, nee) = (cnw[k] - gnw[k], cne[k] - gne[k]);
                        let (swe, see) = (csw[k] - gsw[k], cse[k] - gse[k]);
                        let p_est = (nwg * see + seg * nwe) / (nwg + seg);
                        let q_est = (neg * swe + swg * nee) / (neg + swg);
                        let dv = dc[k];
                        let nb = 0.25 * (dnw[k] + dne[k] + dsw[k] + dse[k]);
                        let d = refine(dv, nb);
                        est[k] = gc + d * q_est + (1.0 - d) * p_est;
                    }
                    let mut x = first_at(7, rb_par(y));
                    while x < w - 7 {
                        let v = est[x - 7];
                        if t.cfa.color_at(y, x) == 0 {
                            b[y * w + x] = v;
                        } else {
                            r[y * w + x] = v;
                        }
                        x += 2;
                    }
                }
            }
            drop(pq);

            // Step 4.3: red and blue at green sites (valid 10 in). Row-wise at
            // every column as in step 3, kept at the green columns; the sites it
            // reads (red/blue ones) are never written here, so evaluating a row
            // before writing it gives the site-by-site loop's bits.
            if w > 20 {
                let len = w - 20;
                let mut est = vec![0f32; len];
                for y in 10..h - 10 {
                    let row = |dy: isize, dx: isize| -> std::ops::Range<usize> {
                        let s = ((y as isize + dy) * w as isize + 10 + dx) as usize;
                        s..s + len
                    };
                    let gcr = &g[row(0, 0)];
                    let (gn, gs, gw, ge) =
                        (&g[row(-1, 0)], &g[row(1, 0)], &g[row(0, -1)], &g[row(0, 1)]);
                    let (gn2, gs2, gw2, ge2) =
                        (&g[row(-2, 0)], &g[row(2, 0)], &g[row(0, -2)], &g[row(0, 2)]);
                    let dc = &vh[row(0, 0)];
                    let (dnw, dne) = (&vh[row(-1, -1)], &vh[row(-1, 1)]);
                    let (dsw, dse) = (&vh[row(1, -1)], &vh[row(1, 1)]);
                    let gpar = 1 - rb_par(y);
                    for c in [&mut r, &mut b] {
                        let (cn, cs, cw, ce) =
                            (&c[row(-1, 0)], &c[row(1, 0)], &c[row(0, -1)], &c[row(0, 1)]);
                        let (cn3, cs3, cw3, ce3) =
                            (&c[row(-3, 0)], &c[row(3, 0)], &c[row(0, -3)], &c[row(0, 3)]);
                        let est = &mut est[..len];
                        for k in 0..len {
                            let dv = dc[k];
                            let nb = 0.25 * (dnw[k] + dne[k] + dsw[k] + dse[k]);
                            let d = refine(dv, nb);
                            let gc = gcr[k];
                            let (dn, ds) = ((gc - gn2[k]).abs(), (gc - gs2[k]).abs());
                            let (dw, de) = ((gc - gw2[k]).abs(), (gc - ge2[k]).abs());
                            let sn = (cn[k] - cs[k]).abs();
                            let ew = (cw[k] - ce[k]).abs();
                            let ng = EPS + sn + dn + (cn[k] - cn3[k]).abs();
                            let sg = EPS + sn + ds + (cs[k] - cs3[k]).abs();
                            let wg = EPS + ew + dw + (cw[k] - cw3[k]).abs();
                            let eg = EPS + ew + de + (ce[k] - ce3[k]).abs();
                            let (ne, se) = (cn[k] - gn[k], cs[k] - gs[k]);
                            let (we, ee) = (cw[k] - gw[k], ce[k] - ge[k]);
                            let v_est = (ng * se + sg * ne) / (ng + sg);
                            let h_est = (eg * we + wg * ee) / (eg + wg);
                            est[k] = gc + d * h_est + (1.0 - d) * v_est;
                        }
                        let mut x = first_at(10, gpar);
                        while x < w - 10 {
                            c[y * w + x] = est[x - 10];
                            x += 2;
                        }
                    }
                }
            }
            [r, g, b]
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
            data.push(match k % 97 {
                0 => 0.0,
                1 => -0.0,
                _ => u * 1.25 - 0.05,
            });
        }
        Mosaic::normalized(w, h, cfa, data, RawMeta::bayer("t", w, h, cfa))
    }

    /// Several strips and tiles (a narrow last tile and a short last
    /// strip), every Bayer phase, tiny frames: the vectorised tile kernel
    /// with its reused scratch gives the reference's bits everywhere.
    #[test]
    fn matches_the_site_by_site_reference_bit_for_bit() {
        for (k, cfa) in CfaPattern::ALL.into_iter().enumerate() {
            for (w, h) in [(1090, 150), (37, 29), (2, 2), (5, 3)] {
                let m = noise_mosaic(w, h, cfa, k as u64 * 31 + w as u64);
                let want =
                    crate::backend::cpu::demosaic_tiles(&m, 12, STRIP, TILE_W, reference::rcd_tile);
                let got = run(m).data;
                assert_eq!(got.len(), want.len());
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{cfa:?} {w}x{h} sample {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// The AVX2 split and merge move the same samples as pair-by-pair
    /// loops, for every row length up to a few blocks (odd ones included).
    #[test]
    fn split_and_merge_match_pairwise_loops() {
        for w in 1..70usize {
            let src: Vec<f32> = (0..w).map(|i| i as f32 * 1.5 - 3.0).collect();
            let half = w.div_ceil(2);
            let (mut e, mut o) = (vec![9.0f32; half], vec![9.0f32; half]);
            split_row(&src, &mut e, &mut o);
            for x in 0..w {
                let v = if x % 2 == 0 { e[x / 2] } else { o[x / 2] };
                assert_eq!(v.to_bits(), src[x].to_bits(), "split w {w} x {x}");
            }
            if w % 2 == 1 {
                assert_eq!(o[w / 2], 0.0);
            }
            let mut back = vec![7.0f32; w];
            merge_row(&e, &o[..w / 2], &mut back);
            assert_eq!(back, src, "merge w {w}");
        }
    }

    #[test]
    fn unknown_params_are_rejected() {
        assert!(compile(serde_json::json!({ "refine": true })).is_err());
    }
}
