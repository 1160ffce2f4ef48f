//! `demosaic_ari`: Adaptive Residual Interpolation, after Monno, Kiku,
//! Tanaka and Okutomi, "Adaptive residual interpolation for color and
//! multispectral image demosaicking" (Sensors 17(12), 2017; ICIP 2015),
//! built on residual interpolation (Kiku et al. 2013) and its
//! minimized-Laplacian form MLRI (Kiku et al. 2014).
//!
//! Residual interpolation: a guided filter predicts a colour plane from
//! another (`q = a * guide + b`, `a`, `b` fitted in local windows), the
//! residual `observed - q` at the sampled sites is interpolated linearly
//! and added back. Residuals are smoother than colour differences, so
//! this keeps detail where the channels are weakly correlated
//! (McMaster-like scenes) as well as where they are strongly correlated
//! (Kodak-like scenes).
//!
//! 1. Green, per direction (horizontal; vertical on the transposed tile):
//!    1-D linear interpolation gives tentative G and R/B along every row.
//!    Then `iterations` rounds of both RI (covariance guided filter) and
//!    MLRI (the slope `a` minimises the Laplacian energy of the residual)
//!    refine G and R/B with growing windows; at every pixel the round with
//!    the smallest criterion (smoothed |guide - tentative|² x its
//!    gradient) is kept (ARI's adaptive selection). The four estimates
//!    (RI/MLRI x H/V) are blended with weights 1 / criterion (ARI's
//!    adaptive combination). Windows only gather rows (columns) of the same
//!    Bayer parity, so a horizontal window never mixes R rows with B rows.
//! 2. Red and blue: an MLRI guided filter with the full green plane as
//!    guide, fitted on the quarter-resolution lattice of the colour's
//!    samples (2-D Laplacians); its coefficients and the residual are
//!    interpolated bilinearly to full resolution and applied to green
//!    ("guided upsampling"). The windows' coefficients are averaged with
//!    the inverse-fit-error weights of ARI's guided filter.
//!
//! All box sums are separable O(window) row passes over f32 planes of a
//! tile; tiles (`backend::cpu::demosaic_tiles`) carry a mirrored halo
//! that covers the dependency radius, which grows with `iterations`.
//!
//! Input: a mosaic, normalised (1.0 = white) or in DN (the regularisation
//! constants are scaled by the white level). Output: planar camera RGB,
//! same size; native samples pass through unchanged.
//!
//! Quality (sRGB protocol, 10-px border, kodak24 / mcmaster18): 38.96 /
//! 37.27 dB alone at the default 3 rounds (1 round 37.05 / 36.84, 2 rounds
//! 38.17 / 37.10, 5 rounds 39.73 / 37.23); 40.11 / 37.15 followed by
//! `false_color_suppress` at strength 0.5 (pipelines/quality_classical.yaml).
//! Cost: about 10-13 s per 12 MP frame on one shared EPYC vCPU (AVX2
//! copy, 512-row strips; 13.5-19 s before): ARI is the slow,
//! best-quality classical choice, not a preview path.

use serde::Deserialize;

use super::demosaic_bilinear::infer_demosaic;
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::{demosaic_tiles, Tile};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, MosaicScale, Value, ValueDesc};

/// Largest accepted `iterations` (the paper's green step uses 11).
pub const MAX_ITERATIONS: usize = 11;

/// YAML params of `demosaic_ari`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Rounds of the iterative green step (1..=11). More rounds: larger
    /// windows to choose from per pixel, a wider halo, more time.
    pub iterations: usize,
    /// Growth of the green windows' radius per round, pixels (1..=4; the
    /// paper uses 1). Larger steps reach large windows in fewer rounds.
    pub window_step: usize,
    /// Lattice radius of the red/blue guided filter windows (1..=4; a
    /// window spans (2r+1)² samples of the colour, (4r+1)² pixels).
    pub rb_radius: usize,
    /// Red/blue at green sites by the directional adaptive step (as
    /// green) instead of the bilinear guided upsampling alone.
    pub rb_directional: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            iterations: 3,
            window_step: 1,
            rb_radius: 2,
            rb_directional: false,
        }
    }
}

impl crate::stages::Validate for Params {
    /// Checks the ranges.
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(crate::stages::CompileError::params(format!(
                "iterations must be in 1..={MAX_ITERATIONS}, got {}",
                self.iterations
            )));
        }
        if !(1..=4).contains(&self.window_step) {
            return Err(crate::stages::CompileError::params(format!(
                "window_step must be in 1..=4, got {}",
                self.window_step
            )));
        }
        if !(1..=4).contains(&self.rb_radius) {
            return Err(crate::stages::CompileError::params(format!(
                "rb_radius must be in 1..=4, got {}",
                self.rb_radius
            )));
        }
        Ok(())
    }
}

impl Params {
    /// Dependency radius (pixels) of the method under these params.
    fn radius(&self) -> usize {
        let (k, s) = (self.iterations, self.window_step);
        // Green: per round, MLRI's Laplacian (2) + two boxes of radius
        // 4 + step x round + the residual interpolation (1); then the criterion
        // smoothing (3). Red/blue: Laplacian (4) + two lattice boxes (4r)
        // + the bilinear step (2).
        let green = 11 * k + s * k * (k - 1) + 3;
        let rb = 6 + 4 * self.rb_radius;
        if self.rb_directional {
            2 * green + rb
        } else {
            green + rb
        }
    }
}

/// The compiled `demosaic_ari` op.
#[derive(Debug)]
pub struct DemosaicAri {
    params: Params,
    halo: usize,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let params: Params = parse_params(params)?;
    let halo = (params.radius() + 2) & !1;
    Ok(Box::new(DemosaicAri { params, halo }))
}

/// Output rows per strip (one rayon task; tall, as the halo is about 60
/// rows).
const STRIP: usize = 512;
/// Output columns per tile within a strip.
const TILE_W: usize = 1024;
/// Floor of the local variance / Laplacian energy (normalised units²).
const VAR_FLOOR: f32 = 1e-6;
/// Floor of a window's RMS fit error (normalised units; 0.001 / 255).
const DIF_FLOOR: f32 = 0.001 / 255.0;
/// Guard of the inverse-criterion weights (normalised units³).
const CRIT_EPS: f32 = 1e-18;

impl Stage for DemosaicAri {
    fn op(&self) -> &'static str {
        "demosaic_ari"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let unit = match m.scale {
            MosaicScale::Normalized => 1.0,
            MosaicScale::Dn => m.meta.white.iter().fold(1.0f32, |a, &b| a.max(b)),
        };
        let p = &self.params;
        let data = demosaic_tiles(m, self.halo, STRIP, TILE_W, |t| ari_tile(t, p, unit));
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

/// Regularisation constants in the data's units.
#[derive(Clone, Copy)]
struct Consts {
    var_floor: f32,
    dif_floor: f32,
    crit_eps: f32,
}

impl Consts {
    fn new(unit: f32) -> Consts {
        Consts {
            var_floor: VAR_FLOOR * unit * unit,
            dif_floor: DIF_FLOOR * unit,
            crit_eps: CRIT_EPS * unit * unit * unit,
        }
    }
}

// ---------------------------------------------------------------------
// Plane helpers (row-major w x h f32 planes).

/// Number of `j` in `-r..=r` with `0 <= y + s * j < n`.
#[inline(always)]
fn count_in(y: usize, r: usize, s: usize, n: usize) -> usize {
    let below = (y / s).min(r);
    let above = ((n - 1 - y) / s).min(r);
    below + above + 1
}

/// Box sum with zero padding: horizontal radius `rx` over adjacent
/// columns, vertical radius `ry` over rows `sy` apart (`sy` = 2 keeps a
/// row-parity family). `tmp` and `dst` are `w * h`.
#[inline(always)]
fn box_sum(src: &[f32], w: usize, h: usize, win: Win, tmp: &mut [f32], dst: &mut [f32]) {
    let Win { rx, ry, sy } = win;
    // Vertical pass into tmp.
    for y in 0..h {
        let out = &mut tmp[y * w..(y + 1) * w];
        out.copy_from_slice(&src[y * w..(y + 1) * w]);
        for j in 1..=ry {
            let d = j * sy;
            if y >= d {
                let r = &src[(y - d) * w..(y - d + 1) * w];
                for (o, &v) in out.iter_mut().zip(r) {
                    *o += v;
                }
            }
            if y + d < h {
                let r = &src[(y + d) * w..(y + d + 1) * w];
                for (o, &v) in out.iter_mut().zip(r) {
                    *o += v;
                }
            }
        }
    }
    // Horizontal pass into dst.
    for y in 0..h {
        let row = &tmp[y * w..(y + 1) * w];
        let out = &mut dst[y * w..(y + 1) * w];
        if w <= 2 * rx {
            for (x, o) in out.iter_mut().enumerate() {
                let a = x.saturating_sub(rx);
                let b = (x + rx).min(w - 1);
                *o = row[a..=b].iter().sum();
            }
            continue;
        }
        // Interior: out[x] = sum row[x - rx ..= x + rx], x in rx..w-rx.
        // Blocks of 16 outputs accumulate in registers (one store each),
        // in the same order as a plain left-to-right sum.
        let n = w - 2 * rx;
        let inner = &mut out[rx..w - rx];
        const B: usize = 16;
        let full = n / B * B;
        for (bi, ob) in inner[..full].chunks_exact_mut(B).enumerate() {
            let x0 = bi * B;
            let mut acc = [0f32; B];
            acc.copy_from_slice(&row[x0..x0 + B]);
            for d in 1..=2 * rx {
                let src = &row[x0 + d..x0 + d + B];
                for j in 0..B {
                    acc[j] += src[j];
                }
            }
            ob.copy_from_slice(&acc);
        }
        for x in full..n {
            let mut a = row[x];
            for d in 1..=2 * rx {
                a += row[x + d];
            }
            inner[x] = a;
        }
        for x in (0..rx).chain(w - rx..w) {
            let a = x.saturating_sub(rx);
            let b = (x + rx).min(w - 1);
            out[x] = row[a..=b].iter().sum();
        }
    }
}

/// Scratch for [`guided`].
struct Scratch {
    tmp: Vec<f32>,
    sums: [Vec<f32>; 8],
    prod: Vec<f32>,
    /// Set by the caller when the next [`guided`] call swaps the guide and
    /// the input of the previous one over the same window: the window
    /// moments are then reused instead of recomputed.
    swapped: bool,
}

impl Scratch {
    fn new(n: usize) -> Scratch {
        Scratch {
            tmp: vec![0.0; n],
            sums: std::array::from_fn(|_| vec![0.0; n]),
            prod: vec![0.0; n],
            swapped: false,
        }
    }
}

/// The minimized-Laplacian terms of an MLRI guided filter.
struct Lap<'a> {
    /// Laplacian of the guide.
    li: &'a [f32],
    /// Laplacian of the input.
    lp: &'a [f32],
    /// 1.0 where the input's Laplacian uses only observed samples.
    mask: &'a [f32],
}

/// Rounds of the iterative green step and the growth of their windows.
#[derive(Clone, Copy)]
struct Sched {
    iters: usize,
    step: usize,
}

/// Window of a guided filter: radii and vertical row step.
#[derive(Clone, Copy)]
struct Win {
    rx: usize,
    ry: usize,
    sy: usize,
}

/// Guided filter of `p` by guide `i` (ARI's form): per window the linear
/// fit `p ~ a * i + b` (covariance fit for RI, Laplacian-energy fit for
/// MLRI when `lap` is given), then `a`, `b` averaged over the windows
/// covering a pixel, weighted by 1 / the window's RMS fit error.
/// Returns the averaged `(a, b)` planes.
#[inline(always)]
fn guided(
    i: &[f32],
    p: &[f32],
    lap: Option<Lap>,
    (w, h): (usize, usize),
    win: Win,
    c: Consts,
    s: &mut Scratch,
) -> (Vec<f32>, Vec<f32>) {
    let n = w * h;
    let Win { rx, ry, sy } = win;
    if s.swapped {
        s.sums.swap(0, 1);
        s.sums.swap(2, 3);
    }
    let Scratch {
        tmp,
        sums,
        prod,
        swapped,
    } = s;
    let [si, sp, sii, spp, sip, sl1, sl2, sln] = sums;
    if !std::mem::take(swapped) {
        box_sum(i, w, h, win, tmp, si);
        box_sum(p, w, h, win, tmp, sp);
        for (o, &v) in prod.iter_mut().zip(i) {
            *o = v * v;
        }
        box_sum(prod, w, h, win, tmp, sii);
        for (o, &v) in prod.iter_mut().zip(p) {
            *o = v * v;
        }
        box_sum(prod, w, h, win, tmp, spp);
        for ((o, &a), &b) in prod.iter_mut().zip(i).zip(p) {
            *o = a * b;
        }
        box_sum(prod, w, h, win, tmp, sip);
    }
    let mlri = lap.is_some();
    if let Some(l) = &lap {
        for (((o, &a), &b), &m) in prod.iter_mut().zip(l.li).zip(l.lp).zip(l.mask) {
            *o = a * b * m;
        }
        box_sum(prod, w, h, win, tmp, sl1);
        for ((o, &a), &m) in prod.iter_mut().zip(l.li).zip(l.mask) {
            *o = a * a * m;
        }
        box_sum(prod, w, h, win, tmp, sl2);
        box_sum(l.mask, w, h, win, tmp, sln);
    }
    let cx: Vec<f32> = (0..w).map(|x| count_in(x, rx, 1, w) as f32).collect();
    // a -> sl1, b -> sl2, weight -> sln (reused in place). Row slices of
    // equal length let the compiler drop bounds checks and vectorise.
    for y in 0..h {
        let cy = count_in(y, ry, sy, h) as f32;
        let rr = y * w..(y + 1) * w;
        let (si, sp) = (&si[rr.clone()], &sp[rr.clone()]);
        let (sii, spp, sip) = (&sii[rr.clone()], &spp[rr.clone()], &sip[rr.clone()]);
        let (l1, l2, ln) = (&mut sl1[rr.clone()], &mut sl2[rr.clone()], &mut sln[rr]);
        let cx = &cx[..w];
        for x in 0..w {
            let nn = cx[x] * cy;
            let inv = 1.0 / nn;
            let (mi, mp) = (si[x] * inv, sp[x] * inv);
            let a = if mlri {
                let nl = ln[x].max(1.0);
                l1[x] / l2[x].max(c.var_floor * nl)
            } else {
                let cov = sip[x] * inv - mi * mp;
                let var = sii[x] * inv - mi * mi;
                cov / var.max(c.var_floor)
            };
            let b = mp - a * mi;
            let e = (a * a * sii[x] + b * b * nn + spp[x] + 2.0 * a * b * si[x]
                - 2.0 * b * sp[x]
                - 2.0 * a * sip[x])
                * inv;
            let wt = 1.0 / e.max(0.0).sqrt().max(c.dif_floor);
            l1[x] = a * wt;
            l2[x] = b * wt;
            ln[x] = wt;
        }
    }
    let mut ma = vec![0f32; n];
    let mut mb = vec![0f32; n];
    box_sum(sl1, w, h, win, tmp, &mut ma);
    box_sum(sl2, w, h, win, tmp, &mut mb);
    box_sum(sln, w, h, win, tmp, prod);
    for ((a, b), &wt) in ma.iter_mut().zip(mb.iter_mut()).zip(prod.iter()) {
        let inv = 1.0 / wt;
        *a *= inv;
        *b *= inv;
    }
    (ma, mb)
}

/// `a * i + b`, element-wise.
#[inline(always)]
fn apply(a: &[f32], b: &[f32], i: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .zip(i)
        .map(|((&a, &b), &i)| a * i + b)
        .collect()
}

/// Separable 5x5 Gaussian (sigma 2) with clamped borders, in place.
#[inline(always)]
fn gauss5(p: &mut [f32], w: usize, h: usize, tmp: &mut [f32]) {
    const K: [f32; 5] = [0.152_469, 0.221_841, 0.251_379, 0.221_841, 0.152_469];
    for y in 0..h {
        let row = &p[y * w..(y + 1) * w];
        let out = &mut tmp[y * w..(y + 1) * w];
        if w > 4 {
            let n = w - 4;
            let inner = &mut out[2..w - 2];
            inner.fill(0.0);
            for (d, &k) in K.iter().enumerate() {
                for (o, &v) in inner.iter_mut().zip(&row[d..d + n]) {
                    *o += k * v;
                }
            }
        }
        for x in (0..2.min(w)).chain(w.saturating_sub(2).max(2.min(w))..w) {
            let mut s = 0.0;
            for (d, &k) in K.iter().enumerate() {
                let xx = (x + d).saturating_sub(2).min(w - 1);
                s += k * row[xx];
            }
            out[x] = s;
        }
    }
    for y in 0..h {
        let out = &mut p[y * w..(y + 1) * w];
        out.fill(0.0);
        for (d, &k) in K.iter().enumerate() {
            let yy = (y + d).saturating_sub(2).min(h - 1);
            for (o, &v) in out.iter_mut().zip(&tmp[yy * w..(yy + 1) * w]) {
                *o += k * v;
            }
        }
    }
}

/// Horizontal neighbour mean `(v[x-1] + v[x+1]) / 2`, mirrored at the
/// row ends.
#[inline(always)]
fn hmean(v: &[f32], w: usize, y: usize, x: usize) -> f32 {
    let row = &v[y * w..(y + 1) * w];
    let l = if x > 0 { row[x - 1] } else { row[1] };
    let r = if x + 1 < w { row[x + 1] } else { row[w - 2] };
    0.5 * (l + r)
}

/// Horizontal-direction green of the ARI green step on a `w x h` plane
/// whose rows alternate green and one other colour. `is_g[k]` is 1.0 at
/// green sites. Returns the RI and MLRI green planes (valid at non-green
/// sites) and their selection criteria.
#[inline(always)]
fn green_dir(
    m: &[f32],
    is_g: &[f32],
    guide: Option<&[f32]>,
    w: usize,
    h: usize,
    sched: Sched,
    c: Consts,
) -> [(Vec<f32>, Vec<f32>); 2] {
    let n = w * h;
    let mut s = Scratch::new(n);
    let mut tmp = vec![0f32; n];
    let is_c: Vec<f32> = is_g.iter().map(|&g| 1.0 - g).collect();
    // Initial guides: 1-D linear interpolation along the rows.
    let mut g0 = vec![0f32; n];
    let mut c0 = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let k = y * w + x;
            let lin = hmean(m, w, y, x);
            if is_g[k] > 0.5 {
                g0[k] = m[k];
                c0[k] = lin;
            } else {
                g0[k] = lin;
                c0[k] = m[k];
            }
        }
    }
    if let Some(gd) = guide {
        c0.copy_from_slice(gd);
    }
    let lap = |v: &[f32]| -> Vec<f32> {
        let mut o = vec![0f32; n];
        for y in 0..h {
            for x in 2..w.saturating_sub(2) {
                let k = y * w + x;
                o[k] = 2.0 * v[k] - v[k - 2] - v[k + 2];
            }
        }
        o
    };
    let mut out: [(Vec<f32>, Vec<f32>); 2] = Default::default();
    for (method, slot) in out.iter_mut().enumerate() {
        let mlri = method == 1;
        let (mut gg, mut cc) = (g0.clone(), c0.clone());
        let mut best = g0.clone();
        let mut crit = vec![f32::MAX; n];
        for k in 0..sched.iters {
            let win = if mlri {
                Win {
                    rx: 4 + sched.step * k,
                    ry: (sched.step * k).div_ceil(2),
                    sy: 2,
                }
            } else {
                Win {
                    rx: 2 + sched.step * k,
                    ry: (sched.step * k + 2) / 2,
                    sy: 2,
                }
            };
            let (tg, tc) = if mlri {
                let (lg, lc) = (lap(&gg), lap(&cc));
                let (a, b) = guided(
                    &cc,
                    &gg,
                    Some(Lap {
                        li: &lc,
                        lp: &lg,
                        mask: is_g,
                    }),
                    (w, h),
                    win,
                    c,
                    &mut s,
                );
                let tg = apply(&a, &b, &cc);
                if guide.is_some() {
                    (tg, cc.clone())
                } else {
                    s.swapped = true;
                    let (a, b) = guided(
                        &gg,
                        &cc,
                        Some(Lap {
                            li: &lg,
                            lp: &lc,
                            mask: &is_c,
                        }),
                        (w, h),
                        win,
                        c,
                        &mut s,
                    );
                    (tg, apply(&a, &b, &gg))
                }
            } else {
                let (a, b) = guided(&cc, &gg, None, (w, h), win, c, &mut s);
                let tg = apply(&a, &b, &cc);
                if guide.is_some() {
                    (tg, cc.clone())
                } else {
                    s.swapped = true;
                    let (a, b) = guided(&gg, &cc, None, (w, h), win, c, &mut s);
                    (tg, apply(&a, &b, &gg))
                }
            };
            // Residuals at the observed sites.
            let rg: Vec<f32> = (0..n).map(|k| (m[k] - tg[k]) * is_g[k]).collect();
            let rc: Vec<f32> = (0..n).map(|k| (m[k] - tc[k]) * is_c[k]).collect();
            // Criterion: |guide - tentative| and its horizontal gradient.
            let eg: Vec<f32> = (0..n).map(|k| gg[k] - tg[k]).collect();
            let ec: Vec<f32> = (0..n).map(|k| cc[k] - tc[k]).collect();
            let mut cri = vec![0f32; n];
            let mut dif = vec![0f32; n];
            for y in 0..h {
                for x in 0..w {
                    let k = y * w + x;
                    cri[k] = eg[k].abs() + ec[k].abs();
                    let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
                    let row = y * w;
                    dif[k] = (eg[row + r] - eg[row + l]).abs() + (ec[row + r] - ec[row + l]).abs();
                }
            }
            gauss5(&mut cri, w, h, &mut tmp);
            gauss5(&mut dif, w, h, &mut tmp);
            // Updated guides: observed samples + interpolated residuals.
            for y in 0..h {
                for x in 0..w {
                    let k = y * w + x;
                    if is_g[k] > 0.5 {
                        gg[k] = m[k];
                        if guide.is_none() {
                            cc[k] = tc[k] + hmean(&rc, w, y, x);
                        }
                    } else {
                        gg[k] = tg[k] + hmean(&rg, w, y, x);
                        if guide.is_none() {
                            cc[k] = m[k];
                        }
                    }
                    let cr = cri[k] * cri[k] * dif[k];
                    if cr < crit[k] {
                        crit[k] = cr;
                        best[k] = gg[k];
                    }
                }
            }
        }
        *slot = (best, crit);
    }
    out
}

/// Transposes a `w x h` plane into `h x w`.
#[inline(always)]
fn transpose(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut o = vec![0f32; w * h];
    const B: usize = 32;
    for y0 in (0..h).step_by(B) {
        for x0 in (0..w).step_by(B) {
            for y in y0..(y0 + B).min(h) {
                for x in x0..(x0 + B).min(w) {
                    o[x * h + y] = src[y * w + x];
                }
            }
        }
    }
    o
}

/// Red or blue at full resolution by MLRI guided upsampling: the colour's
/// samples sit on the lattice `(2Y + oy, 2X + ox)`; `g` is the full green
/// plane.
#[inline(always)]
fn rb_plane(
    m: &[f32],
    g: &[f32],
    w: usize,
    h: usize,
    (oy, ox): (usize, usize),
    r: usize,
    c: Consts,
) -> Vec<f32> {
    let hl = (h - oy).div_ceil(2);
    let wl = (w - ox).div_ceil(2);
    let nl = hl * wl;
    let at = |yy: usize, xx: usize| (2 * yy + oy) * w + 2 * xx + ox;
    let mut gl = vec![0f32; nl];
    let mut cl = vec![0f32; nl];
    for yy in 0..hl {
        for xx in 0..wl {
            gl[yy * wl + xx] = g[at(yy, xx)];
            cl[yy * wl + xx] = m[at(yy, xx)];
        }
    }
    // 2-D Laplacians on the lattice (mirrored at its edges).
    let lap = |v: &[f32]| -> Vec<f32> {
        let mut o = vec![0f32; nl];
        for yy in 0..hl {
            let (u, d) = (
                if yy > 0 { yy - 1 } else { (yy + 1).min(hl - 1) },
                if yy + 1 < hl {
                    yy + 1
                } else {
                    yy.saturating_sub(1)
                },
            );
            for xx in 0..wl {
                let (l, rr) = (
                    if xx > 0 { xx - 1 } else { (xx + 1).min(wl - 1) },
                    if xx + 1 < wl {
                        xx + 1
                    } else {
                        xx.saturating_sub(1)
                    },
                );
                let k = yy * wl + xx;
                o[k] =
                    4.0 * v[k] - v[u * wl + xx] - v[d * wl + xx] - v[yy * wl + l] - v[yy * wl + rr];
            }
        }
        o
    };
    let (lg, lc) = (lap(&gl), lap(&cl));
    let ones = vec![1f32; nl];
    let mut s = Scratch::new(nl);
    let win = Win {
        rx: r,
        ry: r,
        sy: 1,
    };
    let (ma, mb) = guided(
        &gl,
        &cl,
        Some(Lap {
            li: &lg,
            lp: &lc,
            mask: &ones,
        }),
        (wl, hl),
        win,
        c,
        &mut s,
    );
    let res: Vec<f32> = (0..nl).map(|k| cl[k] - (ma[k] * gl[k] + mb[k])).collect();
    // Bilinear interpolation of (a, b, residual) to full resolution.
    let taps = |v: usize, o: usize, nlat: usize| -> (usize, usize) {
        if v < o {
            (0, 0)
        } else if (v - o) % 2 == 0 {
            let q = ((v - o) / 2).min(nlat - 1);
            (q, q)
        } else {
            let q = ((v - o) / 2).min(nlat - 1);
            (q, (q + 1).min(nlat - 1))
        }
    };
    let xt: Vec<(usize, usize)> = (0..w).map(|x| taps(x, ox, wl)).collect();
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let (y0, y1) = taps(y, oy, hl);
        for (x, &(x0, x1)) in xt.iter().enumerate() {
            let bil = |p: &[f32]| {
                0.25 * (p[y0 * wl + x0] + p[y0 * wl + x1] + p[y1 * wl + x0] + p[y1 * wl + x1])
            };
            let k = y * w + x;
            out[k] = bil(&ma) * g[k] + bil(&mb) + bil(&res);
        }
    }
    out
}

crate::avx2_dispatch!(
    /// [`ari_tile_body`], 8 lanes wide on AVX2 machines.
    fn ari_tile(t: &Tile, p: &Params, unit: f32) -> [Vec<f32>; 3] => ari_tile_body
);

/// Demosaics one padded tile; returns full-tile R, G, B planes valid
/// `radius()` pixels in from every side. Every helper it calls is
/// `#[inline(always)]`, so that [`ari_tile`]'s AVX2 copy compiles them
/// all (no FMA: the same bits as the baseline copy).
#[inline(always)]
fn ari_tile_body(t: &Tile, p: &Params, unit: f32) -> [Vec<f32>; 3] {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let m = &t.data;
    let c = Consts::new(unit);
    let is_g: Vec<f32> = (0..n)
        .map(|k| f32::from(u8::from(t.cfa.color_at(k / w, k % w) == 1)))
        .collect();
    let g = adaptive_hv(
        m,
        &is_g,
        None,
        w,
        h,
        Sched {
            iters: p.iterations,
            step: p.window_step,
        },
        c,
    );
    // Red and blue by guided upsampling from their lattices.
    let site = |col: usize| -> (usize, usize) {
        for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            if t.cfa.color_at(oy, ox) == col {
                return (oy, ox);
            }
        }
        (0, 0)
    };
    let (ry, rx) = site(0);
    let (by, bx) = site(2);
    let r = rb_plane(m, &g, w, h, (ry, rx), p.rb_radius, c);
    let b = rb_plane(m, &g, w, h, (by, bx), p.rb_radius, c);
    if !p.rb_directional {
        return [r, g, b];
    }
    // Second step: R (B) at green sites by the directional adaptive
    // residual interpolation, R (B) now known at every non-green site.
    let not_g: Vec<f32> = is_g.iter().map(|&v| 1.0 - v).collect();
    let rb_at_g = |plane: &[f32]| -> Vec<f32> {
        let pm: Vec<f32> = (0..n)
            .map(|k| if is_g[k] > 0.5 { g[k] } else { plane[k] })
            .collect();
        adaptive_hv(
            &pm,
            &not_g,
            Some(&g),
            w,
            h,
            Sched {
                iters: p.iterations,
                step: p.window_step,
            },
            c,
        )
    };
    let (r, b) = (rb_at_g(&r), rb_at_g(&b));
    [r, g, b]
}

/// ARI's adaptive combination of the horizontal and vertical RI / MLRI
/// estimates of the channel observed where `is_t` is 1.0 (kept there),
/// weighted by 1 / criterion. `guide`: the other channel when it is known
/// everywhere (else it is interpolated from `m` too).
#[inline(always)]
fn adaptive_hv(
    m: &[f32],
    is_t: &[f32],
    guide: Option<&[f32]>,
    w: usize,
    h: usize,
    sched: Sched,
    c: Consts,
) -> Vec<f32> {
    let n = w * h;
    let [(ri_h, cr_ri_h), (ml_h, cr_ml_h)] = green_dir(m, is_t, guide, w, h, sched, c);
    let mt = transpose(m, w, h);
    let is_tt = transpose(is_t, w, h);
    let gt = guide.map(|g| transpose(g, w, h));
    let [(ri_v, cr_ri_v), (ml_v, cr_ml_v)] = green_dir(&mt, &is_tt, gt.as_deref(), h, w, sched, c);
    let (ri_v, cr_ri_v) = (transpose(&ri_v, h, w), transpose(&cr_ri_v, h, w));
    let (ml_v, cr_ml_v) = (transpose(&ml_v, h, w), transpose(&cr_ml_v, h, w));
    let mut g = vec![0f32; n];
    for k in 0..n {
        if is_t[k] > 0.5 {
            g[k] = m[k];
            continue;
        }
        let ws = [cr_ri_h[k], cr_ri_v[k], cr_ml_h[k], cr_ml_v[k]].map(|cr| 1.0 / (cr + c.crit_eps));
        let vs = [ri_h[k], ri_v[k], ml_h[k], ml_v[k]];
        let (mut num, mut den) = (0f32, 0f32);
        for (wt, v) in ws.iter().zip(vs) {
            num += wt * v;
            den += wt;
        }
        g[k] = num / den;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Mosaic;
    use crate::raw::{CfaPattern, RawMeta};
    use std::sync::Arc;

    type Scene<'a> = &'a dyn Fn(usize, usize) -> [f32; 3];

    fn mosaic_of(rgb: Scene, w: usize, h: usize, cfa: CfaPattern) -> Mosaic {
        let mut data = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                data.push(rgb(x, y)[cfa.color_at(y, x)]);
            }
        }
        Mosaic::normalized(w, h, cfa, data, RawMeta::bayer("t", w, h, cfa))
    }

    fn run_op(op: &str, params: serde_json::Value, m: Mosaic) -> Image {
        let st = crate::stages::registry::compile(op, params).unwrap();
        let ctx = RunCtx { stage_id: "dm" };
        match st.run_cpu(&ctx, vec![Value::Mosaic(Arc::new(m))]).unwrap() {
            Value::Image(i) => (*i).clone(),
            _ => panic!("not an image"),
        }
    }

    fn run(m: Mosaic) -> Image {
        run_op("demosaic_ari", serde_json::Value::Null, m)
    }

    /// Mean squared error against the truth, `border` px excluded.
    fn mse(img: &Image, truth: Scene, border: usize) -> f64 {
        let (w, h) = (img.width, img.height);
        let p = img.planes();
        let (mut s, mut k) = (0f64, 0usize);
        for y in border..h - border {
            for x in border..w - border {
                let t = truth(x, y);
                for c in 0..3 {
                    let d = (p[c][y * w + x] - t[c]) as f64;
                    s += d * d;
                }
                k += 3;
            }
        }
        s / k as f64
    }

    #[test]
    fn flat_colour_fields_are_exact_in_every_phase_and_odd_sizes() {
        let col = [0.31f32, 0.55, 0.18];
        for cfa in CfaPattern::ALL {
            for (w, h) in [(64, 48), (37, 29), (5, 3), (2, 2)] {
                let img = run(mosaic_of(&|_, _| col, w, h, cfa));
                for (c, plane) in img.planes().iter().enumerate() {
                    for (k, &v) in plane.iter().enumerate() {
                        assert!(
                            (v - col[c]).abs() < 1e-4,
                            "{cfa:?} {w}x{h} plane {c} px {k}: {v} vs {}",
                            col[c]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dn_scaled_input_matches_normalised_input() {
        // The same scene in DN (white 4000) gives the same image x 4000.
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let v = 0.5 + 0.3 * ((x as f32 * 0.4).sin() * (y as f32 * 0.3).cos());
            [v * 0.8, v, v * 0.6 + 0.1]
        };
        let cfa = CfaPattern::Grbg;
        let norm = run(mosaic_of(&scene, 40, 30, cfa));
        let mut m = mosaic_of(&scene, 40, 30, cfa);
        m.data.f32_mut().iter_mut().for_each(|v| *v *= 4000.0);
        m.scale = MosaicScale::Dn;
        let mut meta = (*m.meta).clone();
        meta.white = [4000.0; 3];
        m.meta = Arc::new(meta);
        let dn = run(m);
        for (a, b) in norm.data.iter().zip(&dn.data) {
            // f32 rounding of the box sums: 1e-4 relative to white.
            assert!((a * 4000.0 - b).abs() < 0.4, "{a} x 4000 vs {b}");
        }
    }

    /// A zone plate (chirped rings, frequency rising to ~0.35 cycles/px at
    /// the corners) with a colour tint, plus a sharp diagonal edge.
    fn zone(x: usize, y: usize) -> [f32; 3] {
        let (dx, dy) = (x as f32 - 48.0, y as f32 - 40.0);
        let l = 0.5 + 0.4 * (0.018 * (dx * dx + dy * dy)).cos();
        let e = if x + y > 90 { 0.1 } else { 0.0 };
        [0.9 * l + e, l, 0.7 * l + 0.05]
    }

    #[test]
    fn zone_plate_beats_bilinear_in_every_phase() {
        for cfa in CfaPattern::ALL {
            let ari = run(mosaic_of(&zone, 96, 80, cfa));
            let bil = run_op(
                "demosaic_bilinear",
                serde_json::Value::Null,
                mosaic_of(&zone, 96, 80, cfa),
            );
            let (e_ari, e_bil) = (mse(&ari, &zone, 4), mse(&bil, &zone, 4));
            assert!(
                e_ari < 0.5 * e_bil,
                "{cfa:?}: ari {e_ari} vs bilinear {e_bil}"
            );
        }
    }

    #[test]
    fn edges_beat_menon_and_rcd_where_channels_decorrelate() {
        // Colour edges whose channels move independently (McMaster-like):
        // residual interpolation keeps them where colour differences smear.
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let a = if (x / 5 + y / 9) % 2 == 0 { 0.8 } else { 0.2 };
            let b = if x * 2 + y > 100 { 0.7 } else { 0.1 };
            let g = 0.3 + 0.2 * ((x as f32) * 0.21).sin();
            [a, g, b]
        };
        let cfa = CfaPattern::Rggb;
        let ari = mse(&run(mosaic_of(&scene, 80, 64, cfa)), &scene, 6);
        let rcd = mse(
            &run_op(
                "demosaic_rcd",
                serde_json::Value::Null,
                mosaic_of(&scene, 80, 64, cfa),
            ),
            &scene,
            6,
        );
        let bil = mse(
            &run_op(
                "demosaic_bilinear",
                serde_json::Value::Null,
                mosaic_of(&scene, 80, 64, cfa),
            ),
            &scene,
            6,
        );
        assert!(ari < bil, "ari {ari} vs bilinear {bil}");
        assert!(ari < rcd, "ari {ari} vs rcd {rcd}");
    }

    #[test]
    fn native_samples_pass_through() {
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let v = ((x * 7 + y * 13) % 17) as f32 / 17.0;
            [v, 1.0 - v, 0.5 * v]
        };
        for cfa in CfaPattern::ALL {
            let m = mosaic_of(&scene, 33, 21, cfa);
            let raw = m.data.clone().into_f32();
            let img = run(m);
            let p = img.planes();
            for y in 0..21 {
                for x in 0..33 {
                    let c = cfa.color_at(y, x);
                    let (got, want) = (p[c][y * 33 + x], raw[y * 33 + x]);
                    assert!(
                        (got - want).abs() < 1e-5,
                        "{cfa:?} ({x}, {y}): {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Strips and column tiles much smaller than the shipped ones (and a
    /// short last strip, a narrow last tile) give the bits of one tile
    /// holding the whole frame: the halo covers the dependency radius.
    #[test]
    fn tiling_does_not_change_the_bits() {
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let (xf, yf) = (x as f32, y as f32);
            let v = 0.5 + 0.4 * (xf * 0.37 + yf * yf * 0.011).sin();
            let edge = if x * 2 + y > 180 { 0.3 } else { 0.0 };
            [v * 0.8 + edge, 0.6 * v + 0.1, (1.0 - v) * 0.7 + edge * 0.5]
        };
        let p = Params::default();
        let halo = (p.radius() + 2) & !1;
        for cfa in [CfaPattern::ALL[0], CfaPattern::ALL[3]] {
            let m = mosaic_of(&scene, 230, 150, cfa);
            let whole = demosaic_tiles(&m, halo, 1 << 20, 1 << 20, |t| ari_tile(t, &p, 1.0));
            let tiled = demosaic_tiles(&m, halo, 64, 96, |t| ari_tile(t, &p, 1.0));
            assert_eq!(whole.len(), tiled.len());
            for (i, (a, b)) in whole.iter().zip(&tiled).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{cfa:?} sample {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn params_are_checked() {
        assert!(compile(serde_json::json!({ "refine": true })).is_err());
        assert!(compile(serde_json::json!({ "iterations": 0 })).is_err());
        assert!(compile(serde_json::json!({ "iterations": 12 })).is_err());
        assert!(compile(serde_json::json!({ "rb_radius": 5 })).is_err());
        assert!(compile(serde_json::json!({ "iterations": 2, "rb_directional": true })).is_ok());
    }
}
