//! Chroma and luminance smoothing by guided filters: the last stage of the
//! `fastc` and `fastd` `dmdn_unet` (`chroma` in training/train_dmdn.py's
//! `DMDNUNet.forward`, `guided_chroma`, `guided_self`, `lum_stats`).
//!
//! For RGB `y` (`[1, 3, H, W]`, after the gated smoothing), the noise std
//! map `n` (`[1, nc, H/2, W/2]`, the network's noise input; channel 0 is
//! used), chroma logits `z` (`[1, K, H, W]`, one plane per radius `r_k`)
//! and, with luminance smoothing (`fastd`), luminance logits `zl`
//! (`[1, M, H, W]`, one plane per radius `s_m`):
//! ```text
//! L   = ((R + 2G) + B) * 0.25            luminance (the guide)
//! C   = (R - G, B - G)                   chroma, 2 planes
//! V   = n²  nearest-upsampled to H x W   noise variance
//! per radius r (box_r: mean over the (2r+1)² window clipped to the tensor):
//!   vL   = box(L L) - box(L)²
//!   a_j  = (box(L C_j) - box(L) box(C_j)) / ((vL + k box(V)) + floor)
//!   b_j  = box(C_j) - a_j box(L)
//!   F_rj = box(a_j) L + box(b_j)         guided filter of C_j, guide L (He et al. 2010)
//! w   = softmax(0, z_1, ..., z_K)         per pixel
//! C'_j = w_0 C_j + Σ_k w_k F_{r_k, j}
//! with luminance smoothing, per radius s:
//!   a   = vL / ((vL + kl box(V)) + floor);  b = box(L) - a box(L)
//!   S_s = box(a) L + box(b)              guided filter of L by itself
//! wl  = softmax(0, zl_1, ..., zl_M);  L' = wl_0 L + Σ_m wl_m S_{s_m}
//! (without it L' = L)
//! G'  = L' - (C'_0 + C'_1) * 0.25;  out = (C'_0 + G', G', C'_1 + G')
//! ```
//! `k`, `kl` and `floor` are the file's `chroma_eps_k`, `lum_eps_k` and
//! `chroma_eps_floor`. Both filters use the original `L` as their guide;
//! a radius used by both shares `box(L)`, `vL` and `box(V)`.
//! Where the luminance is flat at the noise level, `a` falls to 0 and the
//! chroma filter is the local chroma mean (the luminance filter the local
//! luminance mean); across a luminance edge `a` follows the edge, so
//! colour stays inside the edge instead of bleeding over it, which box
//! means of chroma cannot do, and the luminance edge is kept.
//!
//! Column sums are exact, so a column window's sum does not depend on the
//! order it is taken in: every box input (`L`, `C_j`, `V`, `L L`, `L C_j`,
//! and the coefficients `a`, `b`, all `f32` planes) is rounded, as it
//! enters the sum, to a multiple of 2^-[`QUANT_BITS`] (clamped to
//! ±[`QUANT_LIMIT`], NaN to its low end) in `f64`, where every partial sum
//! of a column window and one row more (`(2·8 + 2) · 1024 < 2^19 = 2^53 ·
//! 2^-34`) is exact. Column sums are therefore running sums (each row
//! adds the row entering the window and subtracts the one leaving it:
//! O(1) in r), rounded to `f32`; row sums a ladder of pair sums over them
//! (`P_2 = c[x] + c[x+1]`, `P_4`, ..., the window the sum of the levels of
//! `2r + 1`'s binary digits, over column sums padded by `r` zeros so the
//! clipped windows come out the same way: a fixed sum tree per window,
//! `log2(2r + 1) + popcount(2r + 1) - 1` adds), then one multiplication by
//! the reciprocal of the window's pixel count. A pixel's result is
//! therefore a function of its window alone, not of where the tensor or
//! the strip starts: tiles whose halo covers the reach (2 r, plus the
//! network's) reproduce the whole frame bit for bit. The rounding moves
//! only values below 2^-11 in magnitude (an `f32` at or above that is
//! already on the grid), by at most 2^-35 (3e-11): far below the variance
//! terms' ~1e-9 resolution. No fused multiply-adds, so the AVX-512, AVX2
//! and baseline builds give the same bits.
//!
//! Cost per pixel and radius: 7 box means of the inputs, 4 of the chroma
//! coefficients and 2 of the luminance ones, each two roundings and two
//! `f64` adds for the column sum, 3 (r = 2), 4 (r = 4) or 5 (r = 8) `f32`
//! adds for the row sum and a multiply; about 20 more operations for the
//! coefficients and the blends; per pixel `K + M + 2` exponentials
//! ([`super::gated_smoothing::exp_nonpos`]). Box means are computed only
//! on the rows that need them (the input means within `r` of the kept
//! rows, the coefficient means on the kept rows). The stage runs in strips
//! of [`STRIP`] rows so its temporaries stay in cache.
//! Measured (Intel Xeon, AVX-512, 1 thread, one 1120 x 1120 tile,
//! benches/nn_dmdn.rs `nn_chroma_smoothing`, 2 vCPUs loaded 2.3-3 by
//! training): radii 2, 4: 64-68 ms, ~53 ns per pixel (the direct sums
//! measured 45 ns on a quieter machine); `fastd`'s chroma radii 2, 4, 8
//! with luminance radii 2, 4, 8: 132-146 ms, ~110 ns per pixel. 12 MP
//! `rawgraph bench`, `dm` row, 1 thread, interleaved: `fastc` 4.63-4.83 s
//! against 4.78-4.90 s with the direct sums, `fastd` 5.69-6.14 s.
//!
//! At half resolution ([`ChromaGuided::with_subsample`] 2: He and Sun's
//! fast guided filter, `fastd` since run 36) the statistics and
//! coefficients are those of the 2x2 means (`((x00 + x01) + (x10 +
//! x11)) / 4`) of `L` and `C_j` and of the noise variance at its own
//! half resolution, at radius `r / 2`; `box(a_j)` and `box(b_j)` are then
//! upsampled bilinearly (PyTorch's `align_corners=False`: per axis, output
//! `2i` takes `1/4` of sample `i - 1` and `3/4` of `i`, `2i + 1` `3/4` of `i`
//! and `1/4` of `i + 1`, clamped at the edges; horizontal first) and
//! applied to the full-resolution `L`: `F = up(box(a)) L + up(box(b))`.
//! The box sums are the exact ones above; strips start on even rows, so a
//! pixel's result is still a function of its window alone (tensors of even
//! height and width, as the network's padded tiles are). The box work is a
//! quarter of the full-resolution filters'; what stays at full resolution
//! (L and C, the softmaxes, the upsampling's vertical pass and the
//! blends) is now most of the cost. Measured (`cargo bench --bench
//! nn_dmdn -- nn_chroma_smoothing`, one 1120 x 1120 tile, 1 thread,
//! Intel Xeon AVX-512, load ~4 from training and a helper's builds, so
//! only the ratio means anything): `fastd`'s radii 546 ms at full
//! resolution, 318 ms at half (0.58x). 12 MP `rawgraph bench`, `dm` row,
//! `learned_fastd.yaml`, two interleaved rounds: 1 thread 4,670 / 4,728
//! ms -> 3,984 / 4,216, 2 threads 3,289 / 3,060 -> 2,920 / 2,828
//! (`learned.yaml`: 3,071 / 2,994 and 1,970 / 1,880).
//!
//! The half-resolution path keeps its buffers for the whole call
//! ([`HalfScratch`], zeroed once, not per strip) and ends in one pass per
//! output row: the softmax weights, `L`, `C` and the three accumulators of
//! a row stay in the L1 cache, and each filter's coefficient means are
//! upsampled horizontally once per half-resolution row into a two-row
//! ring and vertically as they are applied (before, two full-resolution
//! planes per filter were written and read back). Same bits (the golden
//! digests are unchanged). 1-thread perf samples in the stage over 4
//! frames of 12 MP, `tile: 1536`, load ~4: 1,645 / 1,657 -> 1,569 /
//! 1,519 (-7 %). What is left: the box means (~40 %: the column sums'
//! rounding and `f64` adds, the row ladders), the 8 exponentials per pixel
//! (~20 %), `L` and `C` (~10 %), the recombination (~7 %).

use super::gated_smoothing::exp_nonpos;
use super::logits::{LogitRows, Logits};
use super::window_sums::window_sums;
use super::{BufferPool, Tensor};
use crate::error::{Error, Result};

/// Largest guided-filter radius a file may declare.
pub const MAX_CHROMA_RADIUS: usize = 8;
/// Most guided filters (logit planes) a file may declare, per kind.
pub const MAX_CHROMA_FILTERS: usize = 4;
/// Box inputs are rounded to multiples of `2^-QUANT_BITS` (module doc).
pub const QUANT_BITS: i32 = 34;
/// Box inputs are clamped to `±QUANT_LIMIT` (image units, or image units
/// squared for `L L`, `L C`): the range over which every partial window
/// sum stays exact.
pub const QUANT_LIMIT: f64 = 1024.0;

/// The luminance smoothing's constants (`fastd`), from the weights'
/// metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LumGuided {
    /// Guided-filter radii (`lum_radii`), 1..=[`MAX_CHROMA_FILTERS`]
    /// values in 1..=[`MAX_CHROMA_RADIUS`] pixels.
    pub radii: Vec<usize>,
    /// Regulariser per unit of local noise variance (`lum_eps_k`).
    pub eps_k: f32,
}

/// The chroma stage's constants, from the weights' metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ChromaGuided {
    /// Guided-filter radii (`chroma_radii`), 1..=[`MAX_CHROMA_FILTERS`]
    /// values in 1..=[`MAX_CHROMA_RADIUS`] pixels.
    pub radii: Vec<usize>,
    /// Regulariser per unit of local noise variance (`chroma_eps_k`).
    pub eps_k: f32,
    /// Regulariser floor, image units squared (`chroma_eps_floor`; the
    /// luminance filters' too).
    pub eps_floor: f32,
    /// The luminance smoothing, if the file has one (`lum_radii`).
    pub lum: Option<LumGuided>,
    /// Resolution divisor of the coefficients (`guided_subsample`): 1, or
    /// 2 (module doc; every radius even).
    pub subsample: usize,
}

/// Checks a list of guided-filter radii (`what`: the metadata key).
fn check_radii(what: &str, radii: &[usize]) -> Result<()> {
    if radii.is_empty()
        || radii.len() > MAX_CHROMA_FILTERS
        || radii.iter().any(|&r| r == 0 || r > MAX_CHROMA_RADIUS)
    {
        return Err(Error::invalid(format!(
            "{what} {radii:?} must be 1..={MAX_CHROMA_FILTERS} values in 1..={MAX_CHROMA_RADIUS}"
        )));
    }
    Ok(())
}

impl ChromaGuided {
    /// Checks the radii and the regulariser (finite, non-negative, and a
    /// positive floor so no division is by zero). No luminance smoothing.
    pub fn new(radii: Vec<usize>, eps_k: f32, eps_floor: f32) -> Result<Self> {
        check_radii("chroma_radii", &radii)?;
        let ok_k = eps_k.is_finite() && eps_k >= 0.0;
        let ok_floor = eps_floor.is_finite() && eps_floor > 0.0;
        if !(ok_k && ok_floor) {
            return Err(Error::invalid(format!(
                "chroma_eps_k {eps_k} must be finite and >= 0, chroma_eps_floor {eps_floor} finite and > 0"
            )));
        }
        Ok(ChromaGuided {
            radii,
            eps_k,
            eps_floor,
            lum: None,
            subsample: 1,
        })
    }

    /// Sets the coefficients' resolution divisor: 1 (full resolution) or
    /// 2 (module doc), which must divide every radius, chroma and
    /// luminance (call after [`Self::with_lum`], or it checks again there).
    pub fn with_subsample(mut self, subsample: usize) -> Result<Self> {
        self.subsample = subsample;
        self.check_subsample()?;
        Ok(self)
    }

    fn check_subsample(&self) -> Result<()> {
        let s = self.subsample;
        let lum = self.lum.as_ref().map_or(&[][..], |l| &l.radii[..]);
        if !(s == 1 || s == 2) || self.radii.iter().chain(lum).any(|r| r % s != 0) {
            return Err(Error::invalid(format!(
                "guided_subsample {s} must be 1 or 2 and divide every guided-filter radius (chroma {:?}, luminance {lum:?})",
                self.radii
            )));
        }
        Ok(())
    }

    /// Adds the luminance smoothing (`lum_radii`, `lum_eps_k`: finite and
    /// non-negative).
    pub fn with_lum(mut self, radii: Vec<usize>, eps_k: f32) -> Result<Self> {
        check_radii("lum_radii", &radii)?;
        if !(eps_k.is_finite() && eps_k >= 0.0) {
            return Err(Error::invalid(format!(
                "lum_eps_k {eps_k} must be finite and >= 0"
            )));
        }
        self.lum = Some(LumGuided { radii, eps_k });
        self.check_subsample()?;
        Ok(self)
    }

    /// Every radius once, as `(r, chroma filter, luminance filter)`: the
    /// chroma ones in order (with the luminance filter of the same radius),
    /// then the luminance ones not among them.
    fn radius_order(&self) -> Vec<(usize, Option<usize>, Option<usize>)> {
        let lum = self.lum.as_ref().map_or(&[][..], |l| &l.radii[..]);
        let at = |r: usize| lum.iter().position(|&s| s == r);
        let chroma = self
            .radii
            .iter()
            .enumerate()
            .map(|(j, &r)| (r, Some(j), at(r)));
        let extra = lum
            .iter()
            .filter(|r| !self.radii.contains(r))
            .map(|&r| (r, None, at(r)));
        chroma.chain(extra).collect()
    }

    /// Luminance logit planes the stage takes (0 without luminance
    /// smoothing).
    pub fn lum_filters(&self) -> usize {
        self.lum.as_ref().map_or(0, |l| l.radii.len())
    }

    /// Reach of the stage in pixels (a box of the coefficients' boxes; at
    /// half resolution one low-resolution sample more for the upsampling).
    pub fn reach(&self) -> usize {
        let lum = self.lum.as_ref().map_or(&[][..], |l| &l.radii[..]);
        let r = 2 * self.radii.iter().chain(lum).copied().max().unwrap_or(0);
        if self.subsample == 2 {
            r + 2
        } else {
            r
        }
    }

    /// Runs the stage (module doc) on `y` into `out` (the shape of `y`,
    /// every value overwritten), its temporaries from `pool`. `zl`: the
    /// luminance logits, required with luminance smoothing and refused
    /// without it.
    pub fn run_into(
        &self,
        y: &Tensor,
        noise: &Tensor,
        z: Logits<'_>,
        zl: Option<Logits<'_>>,
        pool: &BufferPool,
        out: &mut Tensor,
    ) -> Result<()> {
        let [n, c, h, w] = y.shape();
        let k = self.radii.len();
        let [nn, nc, nh, nw] = noise.shape();
        let zl_ok = match (&self.lum, zl) {
            (Some(l), Some(t)) => t.shape() == [1, l.radii.len(), h, w],
            (None, None) => true,
            _ => false,
        };
        if n != 1
            || c != 3
            || z.shape() != [1, k, h, w]
            || !zl_ok
            || out.shape() != y.shape()
            || nn != 1
            || nc == 0
            || nh != h.div_ceil(2)
            || nw != w.div_ceil(2)
            || (self.subsample == 2 && (h % 2 != 0 || w % 2 != 0))
        {
            return Err(Error::invalid(format!(
                "chroma smoothing: image {:?}, noise {:?}, logits {:?}, luminance logits {:?} or output {:?} do not fit {k} + {} radii (at half resolution: even height and width)",
                y.shape(),
                noise.shape(),
                z.shape(),
                zl.map(|t| t.shape()),
                out.shape(),
                self.lum_filters()
            )));
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            unsafe { run_avx512(self, y, noise, z, zl, pool, out) };
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            unsafe { run_avx2(self, y, noise, z, zl, pool, out) };
            return Ok(());
        }
        run(self, y, noise, z, zl, pool, out);
        Ok(())
    }
}

/// [`run`] compiled for AVX-512F (the same operations, so the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(
    p: &ChromaGuided,
    y: &Tensor,
    noise: &Tensor,
    z: Logits<'_>,
    zl: Option<Logits<'_>>,
    pool: &BufferPool,
    out: &mut Tensor,
) {
    run(p, y, noise, z, zl, pool, out)
}

/// [`run`] compiled for AVX2 (the same operations, so the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(
    p: &ChromaGuided,
    y: &Tensor,
    noise: &Tensor,
    z: Logits<'_>,
    zl: Option<Logits<'_>>,
    pool: &BufferPool,
    out: &mut Tensor,
) {
    run(p, y, noise, z, zl, pool, out)
}

/// Values `span` of plane `c` of `t` (`[1, C, H, W]`).
fn rows<'a>(t: &'a Tensor, c: usize, span: &std::ops::Range<usize>) -> &'a [f32] {
    &t.plane(0, c)[span.clone()]
}

/// A zero-filled `len` buffer from the pool.
fn buf(pool: &BufferPool, len: usize) -> Vec<f32> {
    let mut v = pool.take(len);
    v.resize(len, 0.0);
    v
}

/// Output rows per strip: the stage runs strip by strip (each with a
/// margin of its reach above and below, computed again where needed), so
/// its temporaries stay in cache instead of streaming a tile's worth of
/// memory per pass.
pub const STRIP: usize = 32;

/// `v` on the box sums' grid: clamped to `±QUANT_LIMIT` (NaN to the low
/// end), rounded to the nearest multiple of `2^-QUANT_BITS` (adding
/// `1.5 · 2^(52 - QUANT_BITS)` leaves no finer bits; ties to even).
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp keeps NaN; max/min map it to the low end
fn quant(v: f32) -> f64 {
    const ROUND: f64 = 1.5 * (1u64 << (52 - QUANT_BITS)) as f64;
    ((v as f64).max(-QUANT_LIMIT).min(QUANT_LIMIT) + ROUND) - ROUND
}

/// Box inputs of one strip besides `L` and `C` (`[h][w]` each, rounded
/// onto the grid as they enter the column sums).
struct Quant {
    v: Vec<f32>,
    ll: Vec<f32>,
    lc0: Vec<f32>,
    lc1: Vec<f32>,
    /// Coefficients `a_0, b_0, a_1, b_1` (the luminance filter uses the
    /// first two).
    coef: [Vec<f32>; 4],
}

/// The body of [`ChromaGuided::run_into`], shapes checked: strips of
/// [`STRIP`] rows. A strip's windows are clipped to the strip, which
/// differs from the tensor only within its margin (discarded), so every
/// kept value is the whole tensor's, bit for bit.
#[inline(always)]
fn run(
    p: &ChromaGuided,
    y: &Tensor,
    noise: &Tensor,
    z: Logits<'_>,
    zl: Option<Logits<'_>>,
    pool: &BufferPool,
    out: &mut Tensor,
) {
    let [_, _, h, w] = y.shape();
    let m = p.reach();
    if p.subsample == 2 {
        // even strips and margins (STRIP and the reach are even)
        let mut bx = BoxScratch::new(w / 2);
        let mut sc = HalfScratch::new(p, h, w);
        for (range, keep) in strips(h, m) {
            strip_half(p, (y, noise, z, zl), range, keep, (&mut sc, &mut bx), out);
        }
        return;
    }
    let len = (STRIP + 2 * m).min(h) * w;
    let plane = || vec![0f32; len];
    let mut q = Quant {
        v: plane(),
        ll: plane(),
        lc0: plane(),
        lc1: plane(),
        coef: [plane(), plane(), plane(), plane()],
    };
    let mut bx = BoxScratch::new(w);
    for (range, keep) in strips(h, m) {
        strip(
            p,
            (y, noise, z, zl),
            range,
            keep,
            pool,
            (&mut q, &mut bx),
            out,
        );
    }
}

/// The strips of a tensor `h` rows tall, as `(rows computed, rows kept)`:
/// [`STRIP`] kept rows each, computed with a margin of `m` rows above and
/// below where the tensor has them.
fn strips(h: usize, m: usize) -> impl Iterator<Item = ((usize, usize), (usize, usize))> {
    (0..h).step_by(STRIP).map(move |ys| {
        let ye = (ys + STRIP).min(h);
        ((ys.saturating_sub(m), (ye + m).min(h)), (ys, ye))
    })
}

/// Softmax(0, z_1..z_K) of the logit planes `z` on rows `y0..y1` (`w`
/// wide): `K + 1` weight planes of `(y1 - y0) w` values from `pool`.
#[inline(always)]
fn softmax_planes(
    z: Logits<'_>,
    (y0, y1): (usize, usize),
    w: usize,
    pool: &BufferPool,
) -> Vec<Vec<f32>> {
    let k = z.planes();
    let mut mx = buf(pool, w);
    let mut sum = buf(pool, w);
    let mut zb: Vec<Vec<f32>> = (0..k).map(|_| buf(pool, w)).collect();
    let mut wts: Vec<Vec<f32>> = (0..=k).map(|_| buf(pool, (y1 - y0) * w)).collect();
    for yy in y0..y1 {
        let zr = z.rows(yy, w, &mut zb);
        softmax_into(&zr, k, (&mut mx, &mut sum), &mut wts, (yy - y0) * w);
    }
    pool.give_vec(mx);
    pool.give_vec(sum);
    zb.into_iter().for_each(|v| pool.give_vec(v));
    wts
}

/// Softmax(0, z_1..z_K) of one row of the `K` logit planes `z` (`n =
/// mx.len()` values each) into values `off..off + n` of the `K + 1`
/// planes `wts`; `mx` and `sum` are scratch.
#[inline(always)]
fn softmax_into(
    z: &LogitRows<'_>,
    k: usize,
    (mx, sum): (&mut [f32], &mut [f32]),
    wts: &mut [Vec<f32>],
    off: usize,
) {
    let n = mx.len();
    let at = off..off + n;
    mx.fill(0.0);
    for j in 0..k {
        mx.iter_mut()
            .zip(z.get(j))
            .for_each(|(m, &v)| *m = m.max(v));
    }
    wts[0][at.clone()]
        .iter_mut()
        .zip(mx.iter())
        .for_each(|(e, &m)| *e = exp_nonpos(-m));
    sum.copy_from_slice(&wts[0][at.clone()]);
    for j in 0..k {
        wts[j + 1][at.clone()]
            .iter_mut()
            .zip(z.get(j))
            .zip(mx.iter())
            .zip(sum.iter_mut())
            .for_each(|(((e, &v), &m), s)| {
                *e = exp_nonpos(v - m);
                *s += *e;
            });
    }
    sum.iter_mut().for_each(|s| *s = 1.0 / *s);
    for wt in wts[..=k].iter_mut() {
        wt[at.clone()]
            .iter_mut()
            .zip(sum.iter())
            .for_each(|(e, &s)| *e *= s);
    }
}

/// `L = ((R + 2G) + B) / 4`, `C = (R - G, B - G)` of the values `span`
/// of `y`'s planes into `lum`, `c0`, `c1` (`span.len()` each).
#[inline(always)]
fn lum_chroma(
    y: &Tensor,
    span: &std::ops::Range<usize>,
    (lum, c0, c1): (&mut [f32], &mut [f32], &mut [f32]),
) {
    lum.iter_mut()
        .zip(c0.iter_mut().zip(c1.iter_mut()))
        .zip(
            rows(y, 0, span)
                .iter()
                .zip(rows(y, 1, span))
                .zip(rows(y, 2, span)),
        )
        .for_each(|((l, (a, b)), ((&r, &g), &bl))| {
            *l = ((r + 2.0 * g) + bl) * 0.25;
            *a = r - g;
            *b = bl - g;
        });
}

/// The chroma filters' coefficients on `nr` from the box means
/// `[box(L C_0), box(L C_1), box(C_0), box(C_1), box(L), var(L), box(V)]`
/// (module doc): `a_j`, `b_j` into `[a_0, b_0, a_1, b_1]`.
#[inline(always)]
fn chroma_coefs(
    [lc0, lc1, c0, c1, l, vl, v]: [&[f32]; 7],
    nr: std::ops::Range<usize>,
    (eps_k, floor): (f32, f32),
    [qa0, qb0, qa1, qb1]: [&mut [f32]; 4],
) {
    lc0[nr.clone()]
        .iter()
        .zip(lc1[nr.clone()].iter())
        .zip(c0[nr.clone()].iter().zip(c1[nr.clone()].iter()))
        .zip(
            l[nr.clone()]
                .iter()
                .zip(vl[nr.clone()].iter().zip(&v[nr.clone()])),
        )
        .zip(
            qa0[nr.clone()]
                .iter_mut()
                .zip(qb0[nr.clone()].iter_mut())
                .zip(qa1[nr.clone()].iter_mut().zip(qb1[nr].iter_mut())),
        )
        .for_each(
            |((((&lc0, &lc1), (&mc0, &mc1)), (&ml, (&vl, &mv))), ((a0q, b0q), (a1q, b1q)))| {
                let den = (vl + eps_k * mv) + floor;
                let a0 = (lc0 - ml * mc0) / den;
                let a1 = (lc1 - ml * mc1) / den;
                *a0q = a0;
                *b0q = mc0 - a0 * ml;
                *a1q = a1;
                *b1q = mc1 - a1 * ml;
            },
        );
}

/// The luminance filter's coefficients on `nr` from `[box(L), var(L),
/// box(V)]` (module doc): `a`, `b` into `[a, b]`.
#[inline(always)]
fn lum_coefs(
    [l, vl, v]: [&[f32]; 3],
    nr: std::ops::Range<usize>,
    (eps, floor): (f32, f32),
    [qa, qb]: [&mut [f32]; 2],
) {
    l[nr.clone()]
        .iter()
        .zip(vl[nr.clone()].iter().zip(&v[nr.clone()]))
        .zip(qa[nr.clone()].iter_mut().zip(qb[nr].iter_mut()))
        .for_each(|((&ml, (&vl, &mv)), (aq, bq))| {
            let a = vl / ((vl + eps * mv) + floor);
            *aq = a;
            *bq = ml - a * ml;
        });
}

/// `G' = L' - (C'_0 + C'_1) / 4`, `out = (C'_0 + G', G', C'_1 + G')` on
/// the values `dst` of `out`'s planes (`lum` and `acc` hold those values).
#[inline(always)]
fn recombine(
    out: &mut Tensor,
    dst: std::ops::Range<usize>,
    lum: &[f32],
    (acc0, acc1): (&[f32], &[f32]),
) {
    let [_, _, h, w] = out.shape();
    let (ro, rest) = out.data_mut().split_at_mut(h * w);
    let (go, bo) = rest.split_at_mut(h * w);
    ro[dst.clone()]
        .iter_mut()
        .zip(go[dst.clone()].iter_mut().zip(bo[dst].iter_mut()))
        .zip(lum.iter().zip(acc0.iter().zip(acc1)))
        .for_each(|((r, (g, b)), (&l, (&a0, &a1)))| {
            let g2 = l - (a0 + a1) * 0.25;
            *r = a0 + g2;
            *g = g2;
            *b = a1 + g2;
        });
}

/// `(C'_0, C'_1, L')` started at `(w_0 C_0, w_0 C_1, wl_0 L)` (`L'` empty
/// without luminance weights `wls`), from `pool`.
#[inline(always)]
fn start_blends(
    (wts, wls): (&[Vec<f32>], Option<&[Vec<f32>]>),
    (c0, c1, lum): (&[f32], &[f32], &[f32]),
    pool: &BufferPool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = c0.len();
    let mut acc0 = buf(pool, n);
    let mut acc1 = buf(pool, n);
    acc0.iter_mut()
        .zip(acc1.iter_mut())
        .zip(wts[0].iter().zip(c0.iter().zip(c1)))
        .for_each(|((a0, a1), (&wt, (&x0, &x1)))| {
            *a0 = wt * x0;
            *a1 = wt * x1;
        });
    let accl = match wls {
        Some(wl) => {
            let mut v = buf(pool, n);
            v.iter_mut()
                .zip(&wl[0])
                .zip(lum)
                .for_each(|((o, &wt), &l)| *o = wt * l);
            v
        }
        None => Vec::new(),
    };
    (acc0, acc1, accl)
}

/// One strip: rows `range.0..range.1` of the tensor computed as their own
/// image, rows `keep.0..keep.1` (inside, at least the reach from a cut
/// edge) written to `out`. Every loop is a zip over slices (no indexing),
/// so it vectorises.
#[inline(always)]
fn strip(
    p: &ChromaGuided,
    (y, noise, z, zl): (&Tensor, &Tensor, Logits<'_>, Option<Logits<'_>>),
    range: (usize, usize),
    keep: (usize, usize),
    pool: &BufferPool,
    (q, bx): (&mut Quant, &mut BoxScratch),
    out: &mut Tensor,
) {
    let [_, _, _, w] = y.shape();
    let (a, b) = range;
    let h = b - a;
    let hw = h * w;
    let nw = noise.shape()[3];
    let span = a * w..b * w;
    // kept rows, strip-local
    let (ka, kb) = (keep.0 - a, keep.1 - a);
    let kept = ka * w..kb * w;
    // L, C_0, C_1 (f32, kept for the blends) and the rounded box inputs
    let mut lum = buf(pool, hw);
    let mut c0 = buf(pool, hw);
    let mut c1 = buf(pool, hw);
    lum_chroma(y, &span, (&mut lum, &mut c0, &mut c1));
    lum.iter()
        .zip(c0.iter().zip(&c1))
        .zip(q.ll.iter_mut().zip(q.lc0.iter_mut().zip(q.lc1.iter_mut())))
        .for_each(|((&l, (&x0, &x1)), (qll, (qlc0, qlc1)))| {
            *qll = l * l;
            *qlc0 = l * x0;
            *qlc1 = l * x1;
        });
    let n0 = noise.plane(0, 0);
    for (yy, vrow) in (a..b).zip(q.v.chunks_exact_mut(w)) {
        let src = &n0[(yy / 2) * nw..(yy / 2 + 1) * nw];
        for (pair, &s) in vrow.chunks_mut(2).zip(src) {
            pair.fill(s * s);
        }
    }
    // The blend weights on the kept rows: softmax(0, z), softmax(0, zl).
    let wts = softmax_planes(z, keep, w, pool);
    let wls = zl.map(|t| softmax_planes(t, keep, w, pool));
    let (mut acc0, mut acc1, mut accl) = start_blends(
        (&wts, wls.as_deref()),
        (&c0[kept.clone()], &c1[kept.clone()], &lum[kept.clone()]),
        pool,
    );
    let [mut m_l, mut m_ll, mut m_v, mut m_c0, mut m_c1, mut m_lc0, mut m_lc1] =
        std::array::from_fn(|_| buf(pool, hw));
    let (eps_k, floor) = (p.eps_k, p.eps_floor);
    let lum_eps = p.lum.as_ref().map_or(0.0, |l| l.eps_k);
    for (rad, cj, lj) in p.radius_order() {
        // input means on the rows whose coefficients the kept rows need
        let need = (ka.saturating_sub(rad), (kb + rad).min(h));
        let nr = need.0 * w..need.1 * w;
        box_mean(&lum, h, w, rad, need, bx, &mut m_l);
        box_mean(&q.ll, h, w, rad, need, bx, &mut m_ll);
        box_mean(&q.v, h, w, rad, need, bx, &mut m_v);
        // var(L) over m_ll
        m_ll[nr.clone()]
            .iter_mut()
            .zip(&m_l[nr.clone()])
            .for_each(|(v, &ml)| *v -= ml * ml);
        if let Some(j) = cj {
            box_mean(&c0, h, w, rad, need, bx, &mut m_c0);
            box_mean(&c1, h, w, rad, need, bx, &mut m_c1);
            box_mean(&q.lc0, h, w, rad, need, bx, &mut m_lc0);
            box_mean(&q.lc1, h, w, rad, need, bx, &mut m_lc1);
            let [qa0, qb0, qa1, qb1] = &mut q.coef;
            chroma_coefs(
                [&m_lc0, &m_lc1, &m_c0, &m_c1, &m_l, &m_ll, &m_v],
                nr.clone(),
                (eps_k, floor),
                [qa0, qb0, qa1, qb1],
            );
            // box(a), box(b) on the kept rows, then C'_j += w_k (box(a) L + box(b))
            let wk = &wts[j + 1];
            for (ca, cb, acc) in [(0, 1, &mut acc0), (2, 3, &mut acc1)] {
                box_mean(&q.coef[ca], h, w, rad, (ka, kb), bx, &mut m_c0);
                box_mean(&q.coef[cb], h, w, rad, (ka, kb), bx, &mut m_c1);
                acc.iter_mut()
                    .zip(wk)
                    .zip(
                        m_c0[kept.clone()]
                            .iter()
                            .zip(lum[kept.clone()].iter().zip(&m_c1[kept.clone()])),
                    )
                    .for_each(|((a, &wt), (&ma, (&l, &mb)))| *a += wt * (ma * l + mb));
            }
        }
        if let (Some(j), Some(wl)) = (lj, &wls) {
            let [qa, qb, _, _] = &mut q.coef;
            lum_coefs([&m_l, &m_ll, &m_v], nr.clone(), (lum_eps, floor), [qa, qb]);
            box_mean(&q.coef[0], h, w, rad, (ka, kb), bx, &mut m_c0);
            box_mean(&q.coef[1], h, w, rad, (ka, kb), bx, &mut m_c1);
            accl.iter_mut()
                .zip(&wl[j + 1])
                .zip(
                    m_c0[kept.clone()]
                        .iter()
                        .zip(lum[kept.clone()].iter().zip(&m_c1[kept.clone()])),
                )
                .for_each(|((a, &wt), (&ma, (&l, &mb)))| *a += wt * (ma * l + mb));
        }
    }
    // L' is the luminance blend with luminance smoothing, else L
    let lum_out: &[f32] = if wls.is_some() {
        &accl
    } else {
        &lum[kept.clone()]
    };
    recombine(out, keep.0 * w..keep.1 * w, lum_out, (&acc0, &acc1));
    for v in [
        lum, c0, c1, acc0, acc1, accl, m_l, m_c0, m_c1, m_ll, m_lc0, m_lc1, m_v,
    ]
    .into_iter()
    .chain(wts)
    .chain(wls.into_iter().flatten())
    {
        pool.give_vec(v);
    }
}

/// `(i0, i1, w0, w1)` of output index `x` when a plane of `n` samples is
/// upsampled 2x bilinearly (PyTorch's `align_corners=False`: source
/// position `(x + 0.5) / 2 - 0.5`, clamped at 0; `i1` clamped at `n - 1`).
#[inline(always)]
fn taps2(x: usize, n: usize) -> (usize, usize, f32, f32) {
    let src = ((x as f32 + 0.5) * 0.5 - 0.5).max(0.0);
    let i0 = (src as usize).min(n - 1);
    let i1 = (i0 + 1).min(n - 1);
    let l1 = src - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

/// Bilinear 2x horizontal upsampling (see [`taps2`]) of the
/// half-resolution row `s` (`wh` values) into `d` (`2 wh` values).
#[inline(always)]
fn upsample_row(s: &[f32], d: &mut [f32]) {
    let (wh, w) = (s.len(), d.len());
    // the edges through the general taps, the interior in pairs:
    // d[2j] = 1/4 s[j - 1] + 3/4 s[j], d[2j + 1] = 3/4 s[j] + 1/4 s[j + 1]
    for x in [0, 1, w - 2, w - 1] {
        let (i0, i1, w0, w1) = taps2(x, wh);
        d[x] = w0 * s[i0] + w1 * s[i1];
    }
    if wh > 2 {
        d[2..w - 2]
            .chunks_exact_mut(2)
            .zip(s.windows(3))
            .for_each(|(o, t)| {
                o[0] = 0.25 * t[0] + 0.75 * t[1];
                o[1] = 0.75 * t[1] + 0.25 * t[2];
            });
    }
}

/// Which accumulator a half-resolution guided filter adds to.
#[derive(Clone, Copy)]
enum Blend {
    /// `C'_0` (weights `softmax(0, z)`).
    C0,
    /// `C'_1` (weights `softmax(0, z)`).
    C1,
    /// `L'` (weights `softmax(0, zl)`).
    L,
}

/// One guided filter of the half-resolution path's final pass: `acc +=
/// w_j (up(box(a)) L + up(box(b)))`.
#[derive(Clone, Copy)]
struct Step {
    acc: Blend,
    /// Weight plane index (`j + 1`).
    wt: usize,
    /// Planes of [`HalfScratch::cmeans`] holding `box(a)`, `box(b)`.
    a: usize,
    b: usize,
}

/// The half-resolution path's buffers, allocated (and zeroed) once per
/// [`ChromaGuided::run_into`] call and reused by every strip: planes of
/// the largest strip's `H/2 x W/2`, rows `W` wide.
struct HalfScratch {
    /// 2x2 means `L, C_0, C_1`, the noise variance `V` and the products
    /// `L L, L C_0, L C_1` (the box inputs).
    inp: [Vec<f32>; 7],
    /// Box means of [`Self::inp`] (`box(L L)` becomes `var(L)`).
    means: [Vec<f32>; 7],
    /// Coefficients `a_0, b_0, a_1, b_1` of one radius (the luminance
    /// filter uses the first two).
    coef: [Vec<f32>; 4],
    /// `box(a)`, `box(b)` of every filter, in [`Self::steps`]' order.
    cmeans: Vec<Vec<f32>>,
    /// The final pass's filters, in the order each accumulator adds them.
    steps: Vec<Step>,
    /// Two horizontally upsampled rows per plane of [`Self::cmeans`]
    /// (`2 W` values each, slot `i % 2` holding half-resolution row `i`).
    ring: Vec<Vec<f32>>,
    /// The half-resolution row in each ring slot (`usize::MAX`: none).
    slot: [usize; 2],
    /// `L, C_0, C_1` of a row pair (full width) for the 2x2 means.
    pair: [Vec<f32>; 6],
    /// One output row: `L, C_0, C_1`, the accumulators `C'_0, C'_1, L'`
    /// and the softmax scratch `mx`, `sum`.
    row: [Vec<f32>; 8],
    /// One output row's chroma and luminance weights (`K + 1`, `M + 1`).
    wts: Vec<Vec<f32>>,
    wls: Vec<Vec<f32>>,
    /// One output row of each packed logit plane, interleaved
    /// ([`Logits::rows`]; `max(K, M)` rows `W` wide).
    zrow: Vec<Vec<f32>>,
}

impl HalfScratch {
    /// Buffers for `p` on tensors `h x w` cut in strips of at most
    /// `STRIP + 2 reach` rows.
    fn new(p: &ChromaGuided, h: usize, w: usize) -> Self {
        let hw2 = (STRIP + 2 * p.reach()).min(h) / 2 * (w / 2);
        let plane = |n: usize| vec![0f32; n];
        let mut steps = Vec::new();
        for (_, cj, lj) in p.radius_order() {
            let n = 2 * steps.len();
            if let Some(j) = cj {
                steps.push(Step {
                    acc: Blend::C0,
                    wt: j + 1,
                    a: n,
                    b: n + 1,
                });
                steps.push(Step {
                    acc: Blend::C1,
                    wt: j + 1,
                    a: n + 2,
                    b: n + 3,
                });
            }
            if let Some(j) = lj {
                let n = 2 * steps.len();
                steps.push(Step {
                    acc: Blend::L,
                    wt: j + 1,
                    a: n,
                    b: n + 1,
                });
            }
        }
        let np = 2 * steps.len();
        HalfScratch {
            inp: std::array::from_fn(|_| plane(hw2)),
            means: std::array::from_fn(|_| plane(hw2)),
            coef: std::array::from_fn(|_| plane(hw2)),
            cmeans: (0..np).map(|_| plane(hw2)).collect(),
            steps,
            ring: (0..np).map(|_| plane(2 * w)).collect(),
            slot: [usize::MAX; 2],
            pair: std::array::from_fn(|_| plane(w)),
            row: std::array::from_fn(|_| plane(w)),
            wts: (0..=p.radii.len()).map(|_| plane(w)).collect(),
            wls: (0..=p.lum_filters()).map(|_| plane(w)).collect(),
            zrow: (0..p.radii.len().max(p.lum_filters()))
                .map(|_| plane(w))
                .collect(),
        }
    }

    /// Makes ring slot `i % 2` hold half-resolution row `i` of every
    /// coefficient mean (planes `wh` wide).
    #[inline(always)]
    fn fill(&mut self, i: usize, wh: usize) {
        let s = i % 2;
        if self.slot[s] == i {
            return;
        }
        let w = 2 * wh;
        for (m, r) in self.cmeans.iter().zip(self.ring.iter_mut()) {
            upsample_row(&m[i * wh..(i + 1) * wh], &mut r[s * w..(s + 1) * w]);
        }
        self.slot[s] = i;
    }
}

/// One strip with the coefficients at half resolution (module doc):
/// rows `range.0..range.1` (even) of the tensor computed as their own
/// image, rows `keep.0..keep.1` written to `out`; `bx` is for planes
/// `W / 2` wide.
///
/// The coefficient means of every filter are kept at half resolution;
/// the final pass then runs row by row: each output row's `L`, `C`,
/// softmax weights and accumulators stay in the L1 cache, and each
/// coefficient row is upsampled horizontally once into a two-row ring,
/// vertically as it is applied (no full-resolution planes per filter).
#[inline(always)]
fn strip_half(
    p: &ChromaGuided,
    (y, noise, z, zl): (&Tensor, &Tensor, Logits<'_>, Option<Logits<'_>>),
    range: (usize, usize),
    keep: (usize, usize),
    (sc, bx): (&mut HalfScratch, &mut BoxScratch),
    out: &mut Tensor,
) {
    let [_, _, _, w] = y.shape();
    let (a, b) = range;
    let (hh, wh) = ((b - a) / 2, w / 2);
    let nw = noise.shape()[3];
    // kept rows, strip-local (even at both ends but the tensor's last)
    let (ka, kb) = (keep.0 - a, keep.1 - a);
    // 2x2 means of L and C over the strip, V at its own half resolution,
    // and the products
    let n0 = noise.plane(0, 0);
    {
        let [lh, c0h, c1h, vh, llh, lc0h, lc1h] = &mut sc.inp;
        for i in 0..hh {
            for (o, dst) in sc.pair.chunks_exact_mut(3).enumerate() {
                let at = (a + 2 * i + o) * w..(a + 2 * i + o + 1) * w;
                let [l, x0, x1] = dst else { continue };
                lum_chroma(y, &at, (l, x0, x1));
            }
            let pair = &sc.pair;
            for (k, dst) in [&mut *lh, &mut *c0h, &mut *c1h].into_iter().enumerate() {
                dst[i * wh..(i + 1) * wh]
                    .iter_mut()
                    .zip(pair[k].chunks_exact(2).zip(pair[k + 3].chunks_exact(2)))
                    .for_each(|(d, (t, u))| *d = ((t[0] + t[1]) + (u[0] + u[1])) * 0.25);
            }
            let src = &n0[(a / 2 + i) * nw..(a / 2 + i) * nw + wh];
            vh[i * wh..(i + 1) * wh]
                .iter_mut()
                .zip(src)
                .for_each(|(v, &s)| *v = s * s);
        }
        let hw2 = hh * wh;
        lh[..hw2]
            .iter()
            .zip(c0h[..hw2].iter().zip(&c1h[..hw2]))
            .zip(llh.iter_mut().zip(lc0h.iter_mut().zip(lc1h.iter_mut())))
            .for_each(|((&l, (&x0, &x1)), (qll, (qlc0, qlc1)))| {
                *qll = l * l;
                *qlc0 = l * x0;
                *qlc1 = l * x1;
            });
    }
    // coefficient means on the half-resolution rows the kept rows'
    // upsampling reads
    let need_c = ((ka / 2).saturating_sub(1), (kb / 2 + 1).min(hh));
    let (eps_k, floor) = (p.eps_k, p.eps_floor);
    let lum_eps = p.lum.as_ref().map_or(0.0, |l| l.eps_k);
    let mut next = 0;
    for (rad, cj, lj) in p.radius_order() {
        let rh = rad / 2;
        // input means on the rows whose coefficients `need_c` needs
        let need = (need_c.0.saturating_sub(rh), (need_c.1 + rh).min(hh));
        let nr = need.0 * wh..need.1 * wh;
        let [lh, c0h, c1h, vh, llh, lc0h, lc1h] = &sc.inp;
        let [m_l, m_ll, m_v, m_c0, m_c1, m_lc0, m_lc1] = &mut sc.means;
        box_mean(lh, hh, wh, rh, need, bx, m_l);
        box_mean(llh, hh, wh, rh, need, bx, m_ll);
        box_mean(vh, hh, wh, rh, need, bx, m_v);
        m_ll[nr.clone()]
            .iter_mut()
            .zip(&m_l[nr.clone()])
            .for_each(|(v, &ml)| *v -= ml * ml);
        if cj.is_some() {
            box_mean(c0h, hh, wh, rh, need, bx, m_c0);
            box_mean(c1h, hh, wh, rh, need, bx, m_c1);
            box_mean(lc0h, hh, wh, rh, need, bx, m_lc0);
            box_mean(lc1h, hh, wh, rh, need, bx, m_lc1);
            let [qa0, qb0, qa1, qb1] = &mut sc.coef;
            chroma_coefs(
                [m_lc0, m_lc1, m_c0, m_c1, m_l, m_ll, m_v],
                nr.clone(),
                (eps_k, floor),
                [qa0, qb0, qa1, qb1],
            );
            for q in &sc.coef {
                box_mean(q, hh, wh, rh, need_c, bx, &mut sc.cmeans[next]);
                next += 1;
            }
        }
        if lj.is_some() {
            let [qa, qb, _, _] = &mut sc.coef;
            lum_coefs([m_l, m_ll, m_v], nr.clone(), (lum_eps, floor), [qa, qb]);
            for q in &sc.coef[..2] {
                box_mean(q, hh, wh, rh, need_c, bx, &mut sc.cmeans[next]);
                next += 1;
            }
        }
    }
    // the final pass, row by row
    sc.slot = [usize::MAX; 2];
    for yy in ka..kb {
        let (i0, i1, w0, w1) = taps2(yy, hh);
        sc.fill(i0, wh);
        sc.fill(i1, wh);
        let span = (a + yy) * w..(a + yy + 1) * w;
        let [lum, c0, c1, acc0, acc1, accl, mx, sum] = &mut sc.row;
        lum_chroma(y, &span, (lum, c0, c1));
        // the blend weights: softmax(0, z), softmax(0, zl)
        let zr = z.rows(a + yy, w, &mut sc.zrow);
        softmax_into(&zr, z.planes(), (mx, sum), &mut sc.wts, 0);
        if let Some(t) = zl {
            let zr = t.rows(a + yy, w, &mut sc.zrow);
            softmax_into(&zr, t.planes(), (mx, sum), &mut sc.wls, 0);
        }
        // (C'_0, C'_1, L') started at (w_0 C_0, w_0 C_1, wl_0 L)
        acc0.iter_mut()
            .zip(acc1.iter_mut())
            .zip(sc.wts[0].iter().zip(c0.iter().zip(c1.iter())))
            .for_each(|((o0, o1), (&wt, (&x0, &x1)))| {
                *o0 = wt * x0;
                *o1 = wt * x1;
            });
        if zl.is_some() {
            accl.iter_mut()
                .zip(&sc.wls[0])
                .zip(lum.iter())
                .for_each(|((o, &wt), &l)| *o = wt * l);
        }
        let (s0, s1) = (i0 % 2 * w..i0 % 2 * w + w, i1 % 2 * w..i1 % 2 * w + w);
        for st in &sc.steps {
            let (acc, wt) = match st.acc {
                Blend::C0 => (&mut *acc0, &sc.wts[st.wt]),
                Blend::C1 => (&mut *acc1, &sc.wts[st.wt]),
                Blend::L => (&mut *accl, &sc.wls[st.wt]),
            };
            let (ra, rb) = (&sc.ring[st.a], &sc.ring[st.b]);
            // acc += wt (up(box(a)) L + up(box(b))), up vertical here:
            // w0 (row i0) + w1 (row i1)
            acc.iter_mut()
                .zip(wt)
                .zip(ra[s0.clone()].iter().zip(&ra[s1.clone()]))
                .zip(lum.iter().zip(rb[s0.clone()].iter().zip(&rb[s1.clone()])))
                .for_each(|(((o, &wt), (&a0, &a1)), (&l, (&b0, &b1)))| {
                    let ma = w0 * a0 + w1 * a1;
                    let mb = w0 * b0 + w1 * b1;
                    *o += wt * (ma * l + mb);
                });
        }
        // L' is the luminance blend with luminance smoothing, else L
        let lum_out: &[f32] = if zl.is_some() { accl } else { lum };
        recombine(out, span, lum_out, (acc0, acc1));
    }
}

/// Scratch rows of [`box_mean`] for planes `w` wide (any radius up to
/// [`MAX_CHROMA_RADIUS`]).
struct BoxScratch {
    /// Exact running column sums.
    col: Vec<f64>,
    /// The column sums rounded to `f32`, `r` zeros each side: `W + 2r`
    /// values used.
    padded: Vec<f32>,
    /// Ladder levels `P_2, P_4, P_8` (`P_16` too at r = 8).
    ladder: Vec<Vec<f32>>,
    /// Window sums of one row.
    sum: Vec<f32>,
    /// `1 / count` of each column's clipped window for one row.
    scale: Vec<f32>,
}

impl BoxScratch {
    fn new(w: usize) -> Self {
        let padded = w + 2 * MAX_CHROMA_RADIUS;
        let span = 2 * MAX_CHROMA_RADIUS + 1;
        let levels = (usize::BITS - 1 - span.leading_zeros()) as usize;
        BoxScratch {
            col: vec![0.0; w],
            padded: vec![0.0; padded],
            ladder: (0..levels).map(|_| vec![0.0; padded]).collect(),
            sum: vec![0.0; w],
            scale: vec![0.0; w],
        }
    }
}

/// Mean of `src` (`h x w`, row-major) over the `(2r+1)²` window clipped
/// to the plane, for rows `rows.0..rows.1`, into those rows of `dst`
/// (`h x w`): exact running column sums of the values on the grid of
/// [`quant`], rounded to `f32`, the pair-sum ladder, times `1 / count`
/// (module doc).
#[inline(always)]
fn box_mean(
    src: &[f32],
    h: usize,
    w: usize,
    r: usize,
    rows: (usize, usize),
    s: &mut BoxScratch,
    dst: &mut [f32],
) {
    let span = 2 * r + 1;
    let levels = (usize::BITS - 1 - span.leading_zeros()) as usize;
    let col = &mut s.col[..w];
    col.fill(0.0);
    let padded = &mut s.padded[..w + 2 * r];
    padded.fill(0.0);
    let mut prev_rows = 0;
    for yy in rows.0..rows.1 {
        if yy == rows.0 {
            for sy in yy.saturating_sub(r)..(yy + r + 1).min(h) {
                col.iter_mut()
                    .zip(&src[sy * w..(sy + 1) * w])
                    .for_each(|(a, &v)| *a += quant(v));
            }
        } else {
            if yy + r < h {
                col.iter_mut()
                    .zip(&src[(yy + r) * w..(yy + r + 1) * w])
                    .for_each(|(a, &v)| *a += quant(v));
            }
            if yy > r {
                col.iter_mut()
                    .zip(&src[(yy - r - 1) * w..(yy - r) * w])
                    .for_each(|(a, &v)| *a -= quant(v));
            }
        }
        padded[r..r + w]
            .iter_mut()
            .zip(col.iter())
            .for_each(|(p, &c)| *p = c as f32);
        let ny = (yy + r + 1).min(h) - yy.saturating_sub(r);
        if ny != prev_rows {
            s.scale.iter_mut().enumerate().for_each(|(x, k)| {
                let nx = (x + r + 1).min(w) - x.saturating_sub(r);
                *k = 1.0 / (ny * nx) as f32;
            });
            prev_rows = ny;
        }
        window_sums(padded, &mut s.ladder[..levels], span, &mut s.sum);
        dst[yy * w..(yy + 1) * w]
            .iter_mut()
            .zip(s.sum.iter().zip(&s.scale))
            .for_each(|(d, (&v, &k))| *d = v * k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Image, noise, chroma logits (2 planes) and luminance logits (2
    /// planes) of a `h x w` frame.
    fn frame(h: usize, w: usize, seed: usize) -> (Tensor, Tensor, Tensor, Tensor) {
        frame_k(h, w, seed, 2, 2)
    }

    /// [`frame`] with `kc` chroma and `kl` luminance logit planes.
    fn frame_k(
        h: usize,
        w: usize,
        seed: usize,
        kc: usize,
        kl: usize,
    ) -> (Tensor, Tensor, Tensor, Tensor) {
        // a smooth colour ramp with an edge, plus hash noise
        let mut y = vec![0f32; 3 * h * w];
        for c in 0..3 {
            for yy in 0..h {
                for xx in 0..w {
                    let i = (c * h + yy) * w + xx;
                    let edge = if xx * 3 > w + yy { 0.4 } else { 0.0 };
                    let noise = ((i * 7919 + seed * 104_729) % 1013) as f32 / 1013.0 - 0.5;
                    y[i] = 0.2 + 0.1 * c as f32 + edge * (c as f32 - 1.0) + 0.05 * noise;
                }
            }
        }
        let (nh, nw) = (h.div_ceil(2), w.div_ceil(2));
        let n: Vec<f32> = (0..nh * nw)
            .map(|i| 0.01 + 0.03 * ((i * 31 + seed) % 17) as f32 / 17.0)
            .collect();
        let logits = |k: usize, mul: usize| -> Tensor {
            let v = (0..k * h * w)
                .map(|i| ((i * mul + seed * 7) % 97) as f32 / 97.0 * 6.0 - 3.0)
                .collect();
            Tensor::from_vec([1, k, h, w], v).expect("logits")
        };
        (
            Tensor::from_vec([1, 3, h, w], y).expect("y"),
            Tensor::from_vec([1, 1, nh, nw], n).expect("noise"),
            logits(kc, 131),
            logits(kl, 59),
        )
    }

    fn stage() -> ChromaGuided {
        ChromaGuided::new(vec![2, 4], 0.5, 1e-6).expect("params")
    }

    /// With luminance smoothing: one radius shared with the chroma
    /// filters, one of its own.
    fn stage_lum() -> ChromaGuided {
        stage().with_lum(vec![4, 1], 0.25).expect("lum params")
    }

    /// softmax(0, z) of the logits at one pixel.
    fn softmax(z: &Tensor, i: usize) -> Vec<f64> {
        let zs: Vec<f64> = (0..z.shape()[1]).map(|k| z.plane(0, k)[i] as f64).collect();
        let m = zs.iter().fold(0f64, |a, &b| a.max(b));
        let es: Vec<f64> = std::iter::once(-m)
            .chain(zs.iter().map(|&v| v - m))
            .map(f64::exp)
            .collect();
        let tot: f64 = es.iter().sum();
        es.iter().map(|e| e / tot).collect()
    }

    /// The module doc's formula, per pixel in f64 with clipped windows.
    fn reference(
        p: &ChromaGuided,
        y: &Tensor,
        n: &Tensor,
        z: &Tensor,
        zl: Option<&Tensor>,
    ) -> Vec<f64> {
        let [_, _, h, w] = y.shape();
        let nw = n.shape()[3];
        let at = |c: usize, yy: usize, xx: usize| y.plane(0, c)[yy * w + xx] as f64;
        let lum = |yy, xx| (at(0, yy, xx) + 2.0 * at(1, yy, xx) + at(2, yy, xx)) * 0.25;
        let chroma = |j: usize, yy, xx| at(2 * j, yy, xx) - at(1, yy, xx);
        let var = |yy: usize, xx: usize| (n.plane(0, 0)[(yy / 2) * nw + xx / 2] as f64).powi(2);
        let boxm = |f: &dyn Fn(usize, usize) -> f64, yy: usize, xx: usize, r: usize| {
            let (y0, y1) = (yy.saturating_sub(r), (yy + r + 1).min(h));
            let (x0, x1) = (xx.saturating_sub(r), (xx + r + 1).min(w));
            let mut s = 0.0;
            for sy in y0..y1 {
                for sx in x0..x1 {
                    s += f(sy, sx);
                }
            }
            s / ((y1 - y0) * (x1 - x0)) as f64
        };
        // box(L), var(L), box(V) at (sy, sx), radius r
        let stats = |sy: usize, sx: usize, r: usize| {
            let ml = boxm(&lum, sy, sx, r);
            let vl = boxm(&|a, b| lum(a, b) * lum(a, b), sy, sx, r) - ml * ml;
            (ml, vl, boxm(&var, sy, sx, r))
        };
        let mut out = vec![0f64; 3 * h * w];
        for yy in 0..h {
            for xx in 0..w {
                let i = yy * w + xx;
                let wc = softmax(z, i);
                let mut cj = [0f64; 2];
                for (j, c) in cj.iter_mut().enumerate() {
                    *c = wc[0] * chroma(j, yy, xx);
                    for (k, &r) in p.radii.iter().enumerate() {
                        let coef = |sy: usize, sx: usize| {
                            let (ml, vl, mv) = stats(sy, sx, r);
                            let mc = boxm(&|a, b| chroma(j, a, b), sy, sx, r);
                            let cv = boxm(&|a, b| lum(a, b) * chroma(j, a, b), sy, sx, r) - ml * mc;
                            let den = vl + p.eps_k as f64 * mv + p.eps_floor as f64;
                            let a = cv / den;
                            (a, mc - a * ml)
                        };
                        let ma = boxm(&|a, b| coef(a, b).0, yy, xx, r);
                        let mb = boxm(&|a, b| coef(a, b).1, yy, xx, r);
                        *c += wc[k + 1] * (ma * lum(yy, xx) + mb);
                    }
                }
                let l2 = match (&p.lum, zl) {
                    (Some(lp), Some(zl)) => {
                        let wl = softmax(zl, i);
                        let mut l2 = wl[0] * lum(yy, xx);
                        for (k, &r) in lp.radii.iter().enumerate() {
                            let coef = |sy: usize, sx: usize| {
                                let (ml, vl, mv) = stats(sy, sx, r);
                                let a = vl / (vl + lp.eps_k as f64 * mv + p.eps_floor as f64);
                                (a, ml - a * ml)
                            };
                            let ma = boxm(&|a, b| coef(a, b).0, yy, xx, r);
                            let mb = boxm(&|a, b| coef(a, b).1, yy, xx, r);
                            l2 += wl[k + 1] * (ma * lum(yy, xx) + mb);
                        }
                        l2
                    }
                    _ => lum(yy, xx),
                };
                let g2 = l2 - (cj[0] + cj[1]) * 0.25;
                out[i] = cj[0] + g2;
                out[h * w + i] = g2;
                out[2 * h * w + i] = cj[1] + g2;
            }
        }
        out
    }

    /// The stage on a `h x w` frame against [`reference`].
    fn assert_matches_reference(p: &ChromaGuided, h: usize, w: usize, seed: usize) {
        let (y, n, z, zl) = frame(h, w, seed);
        let zl = p.lum.as_ref().map(|_| &zl);
        let mut out = Tensor::zeros(y.shape()).expect("out");
        p.run_into(
            &y,
            &n,
            Logits::Full(&z),
            zl.map(Logits::Full),
            &BufferPool::new(),
            &mut out,
        )
        .expect("run");
        let want = reference(p, &y, &n, &z, zl);
        let worst = out
            .data()
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0f64, f64::max);
        assert!(worst < 2e-5, "{h}x{w}: max abs error {worst}");
    }

    #[test]
    fn matches_the_per_pixel_definition() {
        // clipped windows everywhere at r = 4
        assert_matches_reference(&stage(), 13, 19, 1);
    }

    #[test]
    fn luminance_smoothing_matches_the_per_pixel_definition() {
        assert_matches_reference(&stage_lum(), 13, 19, 6);
    }

    /// The luminance stage changes the result (so the test above checks
    /// it, not only the chroma stage).
    #[test]
    fn luminance_smoothing_changes_the_image() {
        let (y, n, z, zl) = frame(16, 18, 7);
        let pool = BufferPool::new();
        let mut a = Tensor::zeros(y.shape()).expect("out");
        let mut b = Tensor::zeros(y.shape()).expect("out");
        stage()
            .run_into(&y, &n, Logits::Full(&z), None, &pool, &mut a)
            .expect("run");
        stage_lum()
            .run_into(
                &y,
                &n,
                Logits::Full(&z),
                Some(Logits::Full(&zl)),
                &pool,
                &mut b,
            )
            .expect("run");
        let most = a
            .data()
            .iter()
            .zip(b.data())
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(most > 1e-3, "max change {most}");
    }

    /// Taller than a strip: the strips' seams give the definition too.
    #[test]
    fn strips_match_the_per_pixel_definition() {
        assert_matches_reference(&stage(), 2 * STRIP + 11, 9, 5);
        assert_matches_reference(&stage_lum(), 2 * STRIP + 11, 9, 8);
    }

    /// A window cut from the frame with a margin of the stage's reach
    /// gives the frame's interior bit for bit.
    fn assert_tiles_reproduce_the_frame(p: &ChromaGuided, h: usize, w: usize) {
        let (y, n, z, zl) = frame_k(h, w, 2, p.radii.len(), p.lum_filters().max(1));
        let pool = BufferPool::new();
        let mut whole = Tensor::zeros(y.shape()).expect("out");
        p.run_into(
            &y,
            &n,
            Logits::Full(&z),
            p.lum.as_ref().map(|_| Logits::Full(&zl)),
            &pool,
            &mut whole,
        )
        .expect("run");
        // windows at even offsets (the noise map is at half resolution)
        for (oy, ox, th, tw) in [(10, 12, 24, 30), (4, 2, h - 8, 40), (0, 0, 40, w)] {
            let cut = |t: &Tensor, ch: usize, s: usize| {
                let [_, _, _, tw0] = t.shape();
                let mut v = Vec::new();
                for c in 0..ch {
                    for yy in 0..th / s {
                        let start = (oy / s + yy) * tw0 + ox / s;
                        v.extend_from_slice(&t.plane(0, c)[start..start + tw / s]);
                    }
                }
                Tensor::from_vec([1, ch, th / s, tw / s], v).expect("cut")
            };
            let (yt, nt, zt, zlt) = (
                cut(&y, 3, 1),
                cut(&n, 1, 2),
                cut(&z, z.shape()[1], 1),
                cut(&zl, zl.shape()[1], 1),
            );
            let mut tile = Tensor::zeros(yt.shape()).expect("out");
            p.run_into(
                &yt,
                &nt,
                Logits::Full(&zt),
                p.lum.as_ref().map(|_| Logits::Full(&zlt)),
                &pool,
                &mut tile,
            )
            .expect("run");
            let m = p.reach();
            // rows and columns at least the reach from a cut edge
            let lo = |o: usize| if o == 0 { 0 } else { m };
            let hi = |o: usize, t: usize, full: usize| if o + t == full { t } else { t - m };
            for c in 0..3 {
                for yy in lo(oy)..hi(oy, th, h) {
                    for xx in lo(ox)..hi(ox, tw, w) {
                        assert_eq!(
                            tile.plane(0, c)[yy * tw + xx].to_bits(),
                            whole.plane(0, c)[(oy + yy) * w + ox + xx].to_bits(),
                            "tile ({oy}, {ox}) channel {c} at ({yy}, {xx})"
                        );
                    }
                }
            }
        }
    }

    /// The half-resolution stage (module doc) per pixel in f64: 2x2 means,
    /// the filters at radius r / 2 with clipped windows, the coefficient
    /// means upsampled as PyTorch's bilinear `align_corners=False`.
    fn reference_half(
        p: &ChromaGuided,
        y: &Tensor,
        n: &Tensor,
        z: &Tensor,
        zl: Option<&Tensor>,
    ) -> Vec<f64> {
        let [_, _, h, w] = y.shape();
        let (hh, wh) = (h / 2, w / 2);
        let at = |c: usize, yy: usize, xx: usize| y.plane(0, c)[yy * w + xx] as f64;
        let lum = |yy, xx| (at(0, yy, xx) + 2.0 * at(1, yy, xx) + at(2, yy, xx)) * 0.25;
        let chroma = |j: usize, yy, xx| at(2 * j, yy, xx) - at(1, yy, xx);
        let half = |f: &dyn Fn(usize, usize) -> f64| -> Vec<f64> {
            (0..hh * wh)
                .map(|k| {
                    let (i, j) = (k / wh, k % wh);
                    (f(2 * i, 2 * j)
                        + f(2 * i, 2 * j + 1)
                        + f(2 * i + 1, 2 * j)
                        + f(2 * i + 1, 2 * j + 1))
                        / 4.0
                })
                .collect()
        };
        let lh = half(&lum);
        let ch = [half(&|a, b| chroma(0, a, b)), half(&|a, b| chroma(1, a, b))];
        let vh: Vec<f64> = (0..hh * wh).map(|k| (n.data()[k] as f64).powi(2)).collect();
        let boxm = |f: &dyn Fn(usize) -> f64, k: usize, r: usize| {
            let (i, j) = (k / wh, k % wh);
            let (y0, y1) = (i.saturating_sub(r), (i + r + 1).min(hh));
            let (x0, x1) = (j.saturating_sub(r), (j + r + 1).min(wh));
            let mut s = 0.0;
            for sy in y0..y1 {
                for sx in x0..x1 {
                    s += f(sy * wh + sx);
                }
            }
            s / ((y1 - y0) * (x1 - x0)) as f64
        };
        let taps = |x: usize, n: usize| {
            let src = ((x as f64 + 0.5) * 0.5 - 0.5).max(0.0);
            let i0 = src as usize;
            (i0, (i0 + 1).min(n - 1), src - i0 as f64)
        };
        let up = |m: &[f64], yy: usize, xx: usize| {
            let (i0, i1, ly) = taps(yy, hh);
            let (j0, j1, lx) = taps(xx, wh);
            let row = |i: usize| (1.0 - lx) * m[i * wh + j0] + lx * m[i * wh + j1];
            (1.0 - ly) * row(i0) + ly * row(i1)
        };
        // up(box(a)), up(box(b)) of the chroma filter j (None: luminance) at radius r
        let filter = |j: Option<usize>, r: usize, eps_k: f64| -> (Vec<f64>, Vec<f64>) {
            let r = r / 2;
            let (mut ca, mut cb) = (vec![0f64; hh * wh], vec![0f64; hh * wh]);
            for k in 0..hh * wh {
                let ml = boxm(&|q| lh[q], k, r);
                let vl = boxm(&|q| lh[q] * lh[q], k, r) - ml * ml;
                let den = vl + eps_k * boxm(&|q| vh[q], k, r) + p.eps_floor as f64;
                (ca[k], cb[k]) = match j {
                    Some(j) => {
                        let mc = boxm(&|q| ch[j][q], k, r);
                        let a = (boxm(&|q| lh[q] * ch[j][q], k, r) - ml * mc) / den;
                        (a, mc - a * ml)
                    }
                    None => {
                        let a = vl / den;
                        (a, ml - a * ml)
                    }
                };
            }
            let ma: Vec<f64> = (0..hh * wh).map(|k| boxm(&|q| ca[q], k, r)).collect();
            let mb: Vec<f64> = (0..hh * wh).map(|k| boxm(&|q| cb[q], k, r)).collect();
            let full =
                |m: &[f64]| -> Vec<f64> { (0..h * w).map(|i| up(m, i / w, i % w)).collect() };
            (full(&ma), full(&mb))
        };
        let eps_k = p.eps_k as f64;
        let cf: Vec<[(Vec<f64>, Vec<f64>); 2]> = p
            .radii
            .iter()
            .map(|&r| [filter(Some(0), r, eps_k), filter(Some(1), r, eps_k)])
            .collect();
        let lf: Vec<(Vec<f64>, Vec<f64>)> = p.lum.as_ref().map_or(Vec::new(), |l| {
            l.radii
                .iter()
                .map(|&r| filter(None, r, l.eps_k as f64))
                .collect()
        });
        let mut out = vec![0f64; 3 * h * w];
        for i in 0..h * w {
            let (yy, xx) = (i / w, i % w);
            let l = lum(yy, xx);
            let wc = softmax(z, i);
            let mut cj = [0f64; 2];
            for (j, c) in cj.iter_mut().enumerate() {
                *c = wc[0] * chroma(j, yy, xx);
                for (k, f) in cf.iter().enumerate() {
                    *c += wc[k + 1] * (f[j].0[i] * l + f[j].1[i]);
                }
            }
            let l2 = match zl {
                Some(zl) if !lf.is_empty() => {
                    let wl = softmax(zl, i);
                    let mut l2 = wl[0] * l;
                    for (k, f) in lf.iter().enumerate() {
                        l2 += wl[k + 1] * (f.0[i] * l + f.1[i]);
                    }
                    l2
                }
                _ => l,
            };
            let g2 = l2 - (cj[0] + cj[1]) * 0.25;
            out[i] = cj[0] + g2;
            out[h * w + i] = g2;
            out[2 * h * w + i] = cj[1] + g2;
        }
        out
    }

    /// `fastd`'s shape at half resolution: chroma radii 2, 4, 8 and
    /// luminance 4, 2 (one order of its own).
    fn stage_half() -> ChromaGuided {
        ChromaGuided::new(vec![2, 4, 8], 0.5, 1e-6)
            .and_then(|c| c.with_lum(vec![4, 2], 0.25))
            .and_then(|c| c.with_subsample(2))
            .expect("params")
    }

    /// Packed logits (the 1x1 convs' planes before `pixel_shuffle`) give
    /// their full-resolution planes' bits, on the full- and the
    /// half-resolution paths, over several strips.
    #[test]
    fn packed_logits_give_the_full_planes_bits() {
        for p in [stage(), stage_lum(), stage_half()] {
            let kl = p.lum_filters().max(1);
            let (y, n, z, zl) = frame_k(2 * STRIP + 14, 22, 5, p.radii.len(), kl);
            let lum = p.lum.is_some();
            let pool = BufferPool::new();
            let mut a = Tensor::zeros(y.shape()).expect("out");
            let zlf = lum.then_some(Logits::Full(&zl));
            p.run_into(&y, &n, Logits::Full(&z), zlf, &pool, &mut a)
                .expect("full");
            let zp = crate::nn::shuffle::pixel_unshuffle(&z, 2).expect("zp");
            let zlp = crate::nn::shuffle::pixel_unshuffle(&zl, 2).expect("zlp");
            let mut b = Tensor::zeros(y.shape()).expect("out");
            let zlq = lum.then_some(Logits::Packed(&zlp));
            p.run_into(&y, &n, Logits::Packed(&zp), zlq, &pool, &mut b)
                .expect("packed");
            assert!(a.data() == b.data(), "lum {lum}, subsample {}", p.subsample);
        }
    }

    /// The half-resolution stage against [`reference_half`], on a frame
    /// smaller than the windows and on one taller than a strip.
    #[test]
    fn half_resolution_matches_its_definition() {
        let p = stage_half();
        for (h, w, seed) in [(14, 20, 3), (2 * STRIP + 12, 10, 4)] {
            let (y, n, z, zl) = frame_k(h, w, seed, 3, 2);
            let mut out = Tensor::zeros(y.shape()).expect("out");
            p.run_into(
                &y,
                &n,
                Logits::Full(&z),
                Some(Logits::Full(&zl)),
                &BufferPool::new(),
                &mut out,
            )
            .expect("run");
            let want = reference_half(&p, &y, &n, &z, Some(&zl));
            let worst = out
                .data()
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0f64, f64::max);
            assert!(worst < 2e-5, "{h}x{w}: max abs error {worst}");
            // and it is not the full-resolution stage
            let mut full = Tensor::zeros(y.shape()).expect("out");
            let pf = ChromaGuided {
                subsample: 1,
                ..p.clone()
            };
            pf.run_into(
                &y,
                &n,
                Logits::Full(&z),
                Some(Logits::Full(&zl)),
                &BufferPool::new(),
                &mut full,
            )
            .expect("run");
            assert!(out.max_abs_diff(&full) > 1e-4, "{h}x{w}");
        }
    }

    /// Tiles at even offsets reproduce the frame bit for bit, and every
    /// SIMD build gives the baseline's bits.
    #[test]
    fn half_resolution_tiles_and_builds_agree() {
        assert_tiles_reproduce_the_frame(&stage_half(), 2 * STRIP + 60, 70);
        let p = stage_half();
        let (y, n, z, zl) = frame_k(STRIP + 46, 62, 9, 3, 2);
        let pool = BufferPool::new();
        let mut base = Tensor::zeros(y.shape()).expect("out");
        run(
            &p,
            &y,
            &n,
            Logits::Full(&z),
            Some(Logits::Full(&zl)),
            &pool,
            &mut base,
        );
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                let mut o = Tensor::zeros(y.shape()).expect("out");
                // SAFETY: the CPU supports AVX2 (checked above).
                unsafe {
                    run_avx2(
                        &p,
                        &y,
                        &n,
                        Logits::Full(&z),
                        Some(Logits::Full(&zl)),
                        &pool,
                        &mut o,
                    )
                };
                assert!(o.data() == base.data(), "AVX2 differs");
            }
            if is_x86_feature_detected!("avx512f") {
                let mut o = Tensor::zeros(y.shape()).expect("out");
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe {
                    run_avx512(
                        &p,
                        &y,
                        &n,
                        Logits::Full(&z),
                        Some(Logits::Full(&zl)),
                        &pool,
                        &mut o,
                    )
                };
                assert!(o.data() == base.data(), "AVX-512 differs");
            }
        }
    }

    #[test]
    fn half_resolution_refuses_odd_radii_and_frames() {
        assert!(stage().with_subsample(3).is_err());
        assert!(stage().with_subsample(0).is_err());
        assert!(ChromaGuided::new(vec![2, 3], 0.5, 1e-6)
            .and_then(|c| c.with_subsample(2))
            .is_err());
        // an odd luminance radius added after the subsample
        let half = stage().with_subsample(2).expect("even radii");
        assert!(half.clone().with_lum(vec![2, 1], 0.25).is_err());
        let (y, n, z, _) = frame(15, 16, 4);
        let mut out = Tensor::zeros(y.shape()).expect("out");
        let r = half.run_into(&y, &n, Logits::Full(&z), None, &BufferPool::new(), &mut out);
        assert!(r.is_err_and(|e| e.to_string().contains("even height")));
    }

    #[test]
    fn tiles_reproduce_the_frame() {
        assert_tiles_reproduce_the_frame(&stage(), 40, 52);
    }

    /// Radius 8 and the luminance filters, over frames taller than a strip.
    #[test]
    fn tiles_reproduce_the_frame_with_luminance_smoothing() {
        let p = ChromaGuided::new(vec![2, 4, 8], 0.5, 1e-6)
            .and_then(|c| c.with_lum(vec![2, 4, 8], 0.25))
            .expect("params");
        assert_tiles_reproduce_the_frame(&p, 2 * STRIP + 60, 70);
        assert_tiles_reproduce_the_frame(&stage_lum(), 40, 52);
    }

    /// The baseline, AVX2 and AVX-512 builds give the same bits (those the
    /// CPU has).
    #[test]
    fn every_build_gives_the_same_bits() {
        let p = ChromaGuided::new(vec![2, 4, 8], 0.5, 1e-6)
            .and_then(|c| c.with_lum(vec![2, 4, 8], 0.25))
            .expect("params");
        let (y, n, z, zl) = frame_k(STRIP + 45, 61, 9, 3, 3);
        let pool = BufferPool::new();
        let mut base = Tensor::zeros(y.shape()).expect("out");
        run(
            &p,
            &y,
            &n,
            Logits::Full(&z),
            Some(Logits::Full(&zl)),
            &pool,
            &mut base,
        );
        #[cfg(target_arch = "x86_64")]
        {
            let mut checked = 0;
            if is_x86_feature_detected!("avx2") {
                let mut o = Tensor::zeros(y.shape()).expect("out");
                // SAFETY: the CPU supports AVX2 (checked above).
                unsafe {
                    run_avx2(
                        &p,
                        &y,
                        &n,
                        Logits::Full(&z),
                        Some(Logits::Full(&zl)),
                        &pool,
                        &mut o,
                    )
                };
                assert!(o.data() == base.data(), "AVX2 differs");
                checked += 1;
            }
            if is_x86_feature_detected!("avx512f") {
                let mut o = Tensor::zeros(y.shape()).expect("out");
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe {
                    run_avx512(
                        &p,
                        &y,
                        &n,
                        Logits::Full(&z),
                        Some(Logits::Full(&zl)),
                        &pool,
                        &mut o,
                    )
                };
                assert!(o.data() == base.data(), "AVX-512 differs");
                checked += 1;
            }
            eprintln!("{checked} SIMD builds compared with the baseline");
        }
    }

    /// With the gates shut the stage only round-trips RGB through (L, C).
    #[test]
    fn a_shut_gate_keeps_the_image() {
        let (y, n, _, _) = frame(16, 16, 3);
        let z = Tensor::from_vec([1, 2, 16, 16], vec![-200.0; 2 * 256]).expect("z");
        for (p, zl) in [(stage(), None), (stage_lum(), Some(&z))] {
            let mut out = Tensor::zeros(y.shape()).expect("out");
            p.run_into(
                &y,
                &n,
                Logits::Full(&z),
                zl.map(Logits::Full),
                &BufferPool::new(),
                &mut out,
            )
            .expect("run");
            let worst = out
                .data()
                .iter()
                .zip(y.data())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "max abs change {worst}");
        }
    }

    /// The rounding grid: f32 values at or above 2^-11 are on it, smaller
    /// ones move by at most half a step, the clamp holds, NaN goes low.
    #[test]
    fn quant_keeps_image_values() {
        for v in [0.5f32, -0.75, 1.0 / 2048.0, 2.718_75, 1000.25, 0.123_456_79] {
            assert_eq!(quant(v), v as f64, "{v}");
        }
        let step = (-QUANT_BITS as f64).exp2();
        for v in [1e-5f32, -3.3e-7, 1.2345e-9] {
            let d = (quant(v) - v as f64).abs();
            assert!(d <= step / 2.0 && d > 0.0, "{v}: moved {d}");
            assert_eq!((quant(v) / step).fract(), 0.0);
        }
        assert_eq!(quant(5000.0), QUANT_LIMIT);
        assert_eq!(quant(f32::NEG_INFINITY), -QUANT_LIMIT);
        assert_eq!(quant(f32::NAN), -QUANT_LIMIT);
    }

    /// The box mean against its definition, for every radius, and on rows
    /// started anywhere (the exact running sums give the same bits).
    #[test]
    fn box_mean_matches_its_definition_from_any_start() {
        let (h, w) = (23, 29);
        let src: Vec<f32> = (0..h * w)
            .map(|i| ((i * 7919) % 1013) as f32 / 101.3 - 4.0)
            .collect();
        let mut s = BoxScratch::new(w);
        for r in 1..=MAX_CHROMA_RADIUS {
            let mut all = vec![0f32; h * w];
            box_mean(&src, h, w, r, (0, h), &mut s, &mut all);
            for yy in 0..h {
                for xx in 0..w {
                    let (y0, y1) = (yy.saturating_sub(r), (yy + r + 1).min(h));
                    let (x0, x1) = (xx.saturating_sub(r), (xx + r + 1).min(w));
                    let mut sum = 0.0;
                    for sy in y0..y1 {
                        sum += src[sy * w + x0..sy * w + x1]
                            .iter()
                            .map(|&v| v as f64)
                            .sum::<f64>();
                    }
                    let want = sum / ((y1 - y0) * (x1 - x0)) as f64;
                    let got = all[yy * w + xx] as f64;
                    assert!(
                        (got - want).abs() < 2e-6,
                        "r {r} ({yy}, {xx}): {got} vs {want}"
                    );
                }
            }
            let mut part = vec![0f32; h * w];
            box_mean(&src, h, w, r, (5, 17), &mut s, &mut part);
            assert_eq!(part[5 * w..17 * w], all[5 * w..17 * w], "r {r}");
        }
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        assert!(ChromaGuided::new(vec![], 0.5, 1e-6).is_err());
        assert!(ChromaGuided::new(vec![9], 0.5, 1e-6).is_err());
        assert!(ChromaGuided::new(vec![2], -1.0, 1e-6).is_err());
        assert!(ChromaGuided::new(vec![2], 0.5, 0.0).is_err());
        assert!(ChromaGuided::new(vec![2], f32::NAN, 1e-6).is_err());
        assert!(stage().with_lum(vec![], 0.25).is_err());
        assert!(stage().with_lum(vec![0], 0.25).is_err());
        assert!(stage().with_lum(vec![9], 0.25).is_err());
        assert!(stage().with_lum(vec![1, 2, 3, 4, 5], 0.25).is_err());
        assert!(stage().with_lum(vec![2], -0.25).is_err());
        assert!(stage().with_lum(vec![2], f32::INFINITY).is_err());
        let (y, n, z, zl) = frame(16, 16, 4);
        let p = stage();
        let mut out = Tensor::zeros(y.shape()).expect("out");
        let pool = BufferPool::new();
        let z1 = Tensor::zeros([1, 1, 16, 16]).expect("z");
        assert!(p
            .run_into(&y, &n, Logits::Full(&z1), None, &pool, &mut out)
            .is_err());
        let n1 = Tensor::zeros([1, 1, 7, 8]).expect("noise");
        assert!(p
            .run_into(&y, &n1, Logits::Full(&z), None, &pool, &mut out)
            .is_err());
        let mut o1 = Tensor::zeros([1, 3, 16, 15]).expect("out");
        assert!(p
            .run_into(&y, &n, Logits::Full(&z), None, &pool, &mut o1)
            .is_err());
        // luminance logits: refused without the stage, required (and of
        // the stage's plane count) with it
        assert!(p
            .run_into(
                &y,
                &n,
                Logits::Full(&z),
                Some(Logits::Full(&zl)),
                &pool,
                &mut out
            )
            .is_err());
        let pl = stage_lum();
        assert!(pl
            .run_into(&y, &n, Logits::Full(&z), None, &pool, &mut out)
            .is_err());
        assert!(pl
            .run_into(
                &y,
                &n,
                Logits::Full(&z),
                Some(Logits::Full(&z1)),
                &pool,
                &mut out
            )
            .is_err());
        assert!(pl
            .run_into(
                &y,
                &n,
                Logits::Full(&z),
                Some(Logits::Full(&zl)),
                &pool,
                &mut out
            )
            .is_ok());
    }
}
