//! Chroma smoothing by guided filters: the last stage of the `fastc`
//! `dmdn_unet` (`chroma` in training/train_dmdn.py's `DMDNUNet.forward`,
//! `guided_chroma`).
//!
//! For RGB `y` (`[1, 3, H, W]`, after the gated smoothing), the noise std
//! map `n` (`[1, nc, H/2, W/2]`, the network's noise input; channel 0 is
//! used) and logits `z` (`[1, K, H, W]`, one plane per radius `r_k`):
//! ```text
//! L   = ((R + 2G) + B) * 0.25            luminance, kept
//! C   = (R - G, B - G)                   chroma, 2 planes
//! V   = n²  nearest-upsampled to H x W   noise variance
//! per radius r (box_r: mean over the (2r+1)² window clipped to the tensor):
//!   a_j  = (box(L C_j) - box(L) box(C_j)) / ((box(L L) - box(L)²) + k box(V) + floor)
//!   b_j  = box(C_j) - a_j box(L)
//!   F_rj = box(a_j) L + box(b_j)         guided filter of C_j, guide L (He et al. 2010)
//! w   = softmax(0, z_1, ..., z_K)         per pixel
//! C'_j = w_0 C_j + Σ_k w_k F_{r_k, j}
//! G'  = L - (C'_0 + C'_1) * 0.25;  out = (C'_0 + G', G', C'_1 + G')
//! ```
//! `k` and `floor` are the file's `chroma_eps_k` and `chroma_eps_floor`.
//! Where the luminance is flat at the noise level, `a` falls to 0 and the
//! filter is the local chroma mean; across a luminance edge `a` follows the
//! edge, so colour stays inside the edge instead of bleeding over it, which
//! box means of chroma cannot do.
//!
//! Box sums are direct (no running sums): the vertical sum adds the rows
//! of the window top to bottom, the horizontal sum the columns left to
//! right, then one multiplication by the reciprocal of the window's
//! pixel count. A pixel's result
//! is therefore a function of its window alone, not of where the tensor
//! starts: tiles whose halo covers the reach (2 r, plus the network's)
//! reproduce the whole frame bit for bit. No fused multiply-adds, so the
//! AVX-512, AVX2 and baseline builds give the same bits.
//!
//! Cost per pixel and radius: 7 box means of the inputs and 4 of the
//! coefficients, each `2 (2r + 1)` adds and a multiply (r = 2: 10 adds, r
//! = 4: 18), about 20 more operations for the coefficients and the blend;
//! per pixel `K + 1` exponentials ([`super::gated_smoothing::exp_nonpos`]).
//! The stage runs in strips of 32 rows so its temporaries stay in cache.
//! Measured (Intel Xeon, AVX-512, 1 thread, one 928 x 928 tile, radii 2
//! and 4, machine loaded by training): 38 ms, 45 ns per pixel, of which
//! the 22 box means are about 60 %; in a 12 MP `fastc` run that is ~0.6 s
//! of CPU time, so `fastc` runs ~35 % slower than `fastb`. Exact O(1)
//! box sums (integer running sums, as [`super::gated_smoothing`], but in
//! 64 bits: the variance needs ~1e-9 resolution) are the next step.

use super::gated_smoothing::exp_nonpos;
use super::{BufferPool, Tensor};
use crate::error::{Error, Result};

/// Largest guided-filter radius a file may declare.
pub const MAX_CHROMA_RADIUS: usize = 8;
/// Most guided filters (logit planes) a file may declare.
pub const MAX_CHROMA_FILTERS: usize = 4;

/// The chroma stage's constants, from the weights' metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ChromaGuided {
    /// Guided-filter radii (`chroma_radii`), 1..=[`MAX_CHROMA_FILTERS`]
    /// values in 1..=[`MAX_CHROMA_RADIUS`] pixels.
    pub radii: Vec<usize>,
    /// Regulariser per unit of local noise variance (`chroma_eps_k`).
    pub eps_k: f32,
    /// Regulariser floor, image units squared (`chroma_eps_floor`).
    pub eps_floor: f32,
}

impl ChromaGuided {
    /// Checks the radii and the regulariser (finite, non-negative, and a
    /// positive floor so no division is by zero).
    pub fn new(radii: Vec<usize>, eps_k: f32, eps_floor: f32) -> Result<Self> {
        if radii.is_empty()
            || radii.len() > MAX_CHROMA_FILTERS
            || radii.iter().any(|&r| r == 0 || r > MAX_CHROMA_RADIUS)
        {
            return Err(Error::invalid(format!(
                "chroma_radii {radii:?} must be 1..={MAX_CHROMA_FILTERS} values in 1..={MAX_CHROMA_RADIUS}"
            )));
        }
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
        })
    }

    /// Reach of the stage in pixels (a box of the coefficients' boxes).
    pub fn reach(&self) -> usize {
        2 * self.radii.iter().copied().max().unwrap_or(0)
    }

    /// Runs the stage (module doc) on `y` into `out` (the shape of `y`,
    /// every value overwritten), its temporaries from `pool`.
    pub fn run_into(
        &self,
        y: &Tensor,
        noise: &Tensor,
        z: &Tensor,
        pool: &BufferPool,
        out: &mut Tensor,
    ) -> Result<()> {
        let [n, c, h, w] = y.shape();
        let k = self.radii.len();
        let [nn, nc, nh, nw] = noise.shape();
        if n != 1
            || c != 3
            || z.shape() != [1, k, h, w]
            || out.shape() != y.shape()
            || nn != 1
            || nc == 0
            || nh != h.div_ceil(2)
            || nw != w.div_ceil(2)
        {
            return Err(Error::invalid(format!(
                "chroma smoothing: image {:?}, noise {:?}, logits {:?} or output {:?} do not fit {k} radii",
                y.shape(),
                noise.shape(),
                z.shape(),
                out.shape()
            )));
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            unsafe { run_avx512(self, y, noise, z, pool, out) };
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            unsafe { run_avx2(self, y, noise, z, pool, out) };
            return Ok(());
        }
        run(self, y, noise, z, pool, out);
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
    z: &Tensor,
    pool: &BufferPool,
    out: &mut Tensor,
) {
    run(p, y, noise, z, pool, out)
}

/// [`run`] compiled for AVX2 (the same operations, so the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(
    p: &ChromaGuided,
    y: &Tensor,
    noise: &Tensor,
    z: &Tensor,
    pool: &BufferPool,
    out: &mut Tensor,
) {
    run(p, y, noise, z, pool, out)
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
/// margin of its reach above and below, computed again), so its ~20
/// planes of temporaries stay in cache instead of streaming a tile's
/// worth of memory per pass.
const STRIP: usize = 32;

/// The body of [`ChromaGuided::run_into`], shapes checked: strips of
/// [`STRIP`] rows. A strip's windows are clipped to the strip, which
/// differs from the tensor only within its margin (discarded), so every
/// kept value is the whole tensor's, bit for bit.
#[inline(always)]
fn run(
    p: &ChromaGuided,
    y: &Tensor,
    noise: &Tensor,
    z: &Tensor,
    pool: &BufferPool,
    out: &mut Tensor,
) {
    let h = y.shape()[2];
    let m = p.reach();
    let mut ys = 0;
    while ys < h {
        let ye = (ys + STRIP).min(h);
        strip(
            p,
            y,
            noise,
            z,
            (ys.saturating_sub(m), (ye + m).min(h)),
            (ys, ye),
            pool,
            out,
        );
        ys = ye;
    }
}

/// One strip: rows `range.0..range.1` of the tensor computed as their own
/// image, rows `keep.0..keep.1` (inside, at least the reach from a cut
/// edge) written to `out`. Every loop is a zip over slices (no indexing),
/// so it vectorises.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn strip(
    p: &ChromaGuided,
    y: &Tensor,
    noise: &Tensor,
    z: &Tensor,
    range: (usize, usize),
    keep: (usize, usize),
    pool: &BufferPool,
    out: &mut Tensor,
) {
    let [_, _, full_h, w] = y.shape();
    let (a, b) = range;
    let h = b - a;
    let hw = h * w;
    let nw = noise.shape()[3];
    let span = a * w..b * w;
    // L, C_0, C_1, V
    let mut lum = buf(pool, hw);
    let mut c0 = buf(pool, hw);
    let mut c1 = buf(pool, hw);
    let mut var = buf(pool, hw);
    lum.iter_mut()
        .zip(c0.iter_mut().zip(c1.iter_mut()))
        .zip(
            rows(y, 0, &span)
                .iter()
                .zip(rows(y, 1, &span))
                .zip(rows(y, 2, &span)),
        )
        .for_each(|((l, (a, b)), ((&r, &g), &bl))| {
            *l = ((r + 2.0 * g) + bl) * 0.25;
            *a = r - g;
            *b = bl - g;
        });
    let n0 = noise.plane(0, 0);
    for (yy, vrow) in (a..b).zip(var.chunks_exact_mut(w)) {
        let src = &n0[(yy / 2) * nw..(yy / 2 + 1) * nw];
        for (pair, &s) in vrow.chunks_mut(2).zip(src) {
            pair.fill(s * s);
        }
    }
    // The blend weights softmax(0, z), one plane each: w_0, w_1 .. w_K.
    let k = p.radii.len();
    let mut mx = buf(pool, hw);
    for j in 0..k {
        mx.iter_mut()
            .zip(rows(z, j, &span))
            .for_each(|(m, &v)| *m = m.max(v));
    }
    let mut wts: Vec<Vec<f32>> = (0..=k).map(|_| buf(pool, hw)).collect();
    let mut sum = buf(pool, hw);
    wts[0]
        .iter_mut()
        .zip(&mx)
        .for_each(|(e, &m)| *e = exp_nonpos(-m));
    sum.copy_from_slice(&wts[0]);
    for j in 0..k {
        wts[j + 1]
            .iter_mut()
            .zip(rows(z, j, &span))
            .zip(&mx)
            .zip(sum.iter_mut())
            .for_each(|(((e, &v), &m), s)| {
                *e = exp_nonpos(v - m);
                *s += *e;
            });
    }
    sum.iter_mut().for_each(|s| *s = 1.0 / *s);
    for wt in wts.iter_mut() {
        wt.iter_mut().zip(&sum).for_each(|(e, &s)| *e *= s);
    }
    // C'_j starts at w_0 C_j
    let mut acc0 = buf(pool, hw);
    let mut acc1 = buf(pool, hw);
    acc0.iter_mut()
        .zip(acc1.iter_mut())
        .zip(wts[0].iter().zip(c0.iter().zip(&c1)))
        .for_each(|((a0, a1), (&wt, (&x0, &x1)))| {
            *a0 = wt * x0;
            *a1 = wt * x1;
        });
    let mut prod = buf(pool, hw);
    let mut row = buf(pool, w);
    let mut m_l = buf(pool, hw);
    let mut m_c0 = buf(pool, hw);
    let mut m_c1 = buf(pool, hw);
    let mut m_ll = buf(pool, hw);
    let mut m_lc0 = buf(pool, hw);
    let mut m_lc1 = buf(pool, hw);
    let mut m_v = buf(pool, hw);
    let (eps_k, floor) = (p.eps_k, p.eps_floor);
    for (j, &rad) in p.radii.iter().enumerate() {
        box_mean(&lum, h, w, rad, &mut row, &mut m_l);
        box_mean(&c0, h, w, rad, &mut row, &mut m_c0);
        box_mean(&c1, h, w, rad, &mut row, &mut m_c1);
        box_mean(&var, h, w, rad, &mut row, &mut m_v);
        prod.iter_mut().zip(&lum).for_each(|(o, &l)| *o = l * l);
        box_mean(&prod, h, w, rad, &mut row, &mut m_ll);
        prod.iter_mut()
            .zip(&lum)
            .zip(&c0)
            .for_each(|((o, &l), &c)| *o = l * c);
        box_mean(&prod, h, w, rad, &mut row, &mut m_lc0);
        prod.iter_mut()
            .zip(&lum)
            .zip(&c1)
            .for_each(|((o, &l), &c)| *o = l * c);
        box_mean(&prod, h, w, rad, &mut row, &mut m_lc1);
        // a_j over m_lc_j, b_j over m_c_j (their inputs are then dead)
        m_lc0
            .iter_mut()
            .zip(m_lc1.iter_mut())
            .zip(m_c0.iter_mut().zip(m_c1.iter_mut()))
            .zip(m_l.iter().zip(m_ll.iter().zip(&m_v)))
            .for_each(|(((lc0, lc1), (mc0, mc1)), (&ml, (&mll, &mv)))| {
                let den = ((mll - ml * ml) + eps_k * mv) + floor;
                let a0 = (*lc0 - ml * *mc0) / den;
                let a1 = (*lc1 - ml * *mc1) / den;
                *mc0 -= a0 * ml;
                *mc1 -= a1 * ml;
                *lc0 = a0;
                *lc1 = a1;
            });
        // box(a), box(b) into dead planes, then C'_j += w_k (box(a) L + box(b))
        let wk = &wts[j + 1];
        for (coef_a, coef_b, acc) in [(&m_lc0, &m_c0, &mut acc0), (&m_lc1, &m_c1, &mut acc1)] {
            box_mean(coef_a, h, w, rad, &mut row, &mut m_ll);
            box_mean(coef_b, h, w, rad, &mut row, &mut prod);
            acc.iter_mut()
                .zip(wk)
                .zip(m_ll.iter().zip(lum.iter().zip(&prod)))
                .for_each(|((a, &wt), (&ma, (&l, &mb)))| *a += wt * (ma * l + mb));
        }
    }
    let (ro, rest) = out.data_mut().split_at_mut(full_h * w);
    let (go, bo) = rest.split_at_mut(full_h * w);
    let dst = keep.0 * w..keep.1 * w;
    let src = (keep.0 - a) * w..(keep.1 - a) * w;
    ro[dst.clone()]
        .iter_mut()
        .zip(go[dst.clone()].iter_mut().zip(bo[dst].iter_mut()))
        .zip(
            lum[src.clone()]
                .iter()
                .zip(acc0[src.clone()].iter().zip(&acc1[src])),
        )
        .for_each(|((r, (g, b)), (&l, (&a0, &a1)))| {
            let g2 = l - (a0 + a1) * 0.25;
            *r = a0 + g2;
            *g = g2;
            *b = a1 + g2;
        });
    for v in [
        lum, c0, c1, var, mx, sum, acc0, acc1, prod, row, m_l, m_c0, m_c1, m_ll, m_lc0, m_lc1, m_v,
    ]
    .into_iter()
    .chain(wts)
    {
        pool.give_vec(v);
    }
}

/// Mean of `src` (`h x w`, row-major) over the `(2r+1)²` window clipped to
/// the plane, into `dst`; `row`: `w` scratch values. The vertical sum adds
/// the window's rows top to bottom, the horizontal one its columns left to
/// right (so a pixel's value depends on its window only), then one
/// multiplication by the reciprocal of the pixel count.
#[inline(always)]
fn box_mean(src: &[f32], h: usize, w: usize, r: usize, row: &mut [f32], dst: &mut [f32]) {
    for yy in 0..h {
        let (y0, y1) = (yy.saturating_sub(r), (yy + r + 1).min(h));
        row.copy_from_slice(&src[y0 * w..(y0 + 1) * w]);
        for sy in y0 + 1..y1 {
            row.iter_mut()
                .zip(&src[sy * w..(sy + 1) * w])
                .for_each(|(a, &v)| *a += v);
        }
        let ny = (y1 - y0) as f32;
        let d = &mut dst[yy * w..(yy + 1) * w];
        // columns whose window is clipped: left to right over what is inside
        let clipped = |xx: usize| {
            let (x0, x1) = (xx.saturating_sub(r), (xx + r + 1).min(w));
            let mut s = row[x0];
            for &v in &row[x0 + 1..x1] {
                s += v;
            }
            s * (1.0 / (ny * (x1 - x0) as f32))
        };
        if w > 2 * r {
            let inner = w - 2 * r;
            let inv = 1.0 / (ny * (2 * r + 1) as f32);
            let di = &mut d[r..r + inner];
            di.copy_from_slice(&row[..inner]);
            for dx in 1..=2 * r {
                di.iter_mut()
                    .zip(&row[dx..dx + inner])
                    .for_each(|(a, &v)| *a += v);
            }
            di.iter_mut().for_each(|a| *a *= inv);
            for xx in (0..r).chain(w - r..w) {
                d[xx] = clipped(xx);
            }
        } else {
            for (xx, o) in d.iter_mut().enumerate() {
                *o = clipped(xx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(h: usize, w: usize, seed: usize) -> (Tensor, Tensor, Tensor) {
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
        let z: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i * 131 + seed * 7) % 97) as f32 / 97.0 * 6.0 - 3.0)
            .collect();
        (
            Tensor::from_vec([1, 3, h, w], y).expect("y"),
            Tensor::from_vec([1, 1, nh, nw], n).expect("noise"),
            Tensor::from_vec([1, 2, h, w], z).expect("z"),
        )
    }

    fn stage() -> ChromaGuided {
        ChromaGuided::new(vec![2, 4], 0.5, 1e-6).expect("params")
    }

    /// The module doc's formula, per pixel in f64 with clipped windows.
    fn reference(p: &ChromaGuided, y: &Tensor, n: &Tensor, z: &Tensor) -> Vec<f64> {
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
        let mut out = vec![0f64; 3 * h * w];
        for yy in 0..h {
            for xx in 0..w {
                let zs: Vec<f64> = (0..p.radii.len())
                    .map(|k| z.plane(0, k)[yy * w + xx] as f64)
                    .collect();
                let m = zs.iter().fold(0f64, |a, &b| a.max(b));
                let e0 = (-m).exp();
                let es: Vec<f64> = zs.iter().map(|&v| (v - m).exp()).collect();
                let tot = e0 + es.iter().sum::<f64>();
                let mut cj = [0f64; 2];
                for (j, c) in cj.iter_mut().enumerate() {
                    *c = e0 / tot * chroma(j, yy, xx);
                    for (k, &r) in p.radii.iter().enumerate() {
                        let coef = |sy: usize, sx: usize| {
                            let ml = boxm(&lum, sy, sx, r);
                            let mc = boxm(&|a, b| chroma(j, a, b), sy, sx, r);
                            let vl = boxm(&|a, b| lum(a, b) * lum(a, b), sy, sx, r) - ml * ml;
                            let cv = boxm(&|a, b| lum(a, b) * chroma(j, a, b), sy, sx, r) - ml * mc;
                            let den =
                                vl + p.eps_k as f64 * boxm(&var, sy, sx, r) + p.eps_floor as f64;
                            let a = cv / den;
                            (a, mc - a * ml)
                        };
                        let ma = boxm(&|a, b| coef(a, b).0, yy, xx, r);
                        let mb = boxm(&|a, b| coef(a, b).1, yy, xx, r);
                        *c += es[k] / tot * (ma * lum(yy, xx) + mb);
                    }
                }
                let g2 = lum(yy, xx) - (cj[0] + cj[1]) * 0.25;
                out[yy * w + xx] = cj[0] + g2;
                out[(h + yy) * w + xx] = g2;
                out[(2 * h + yy) * w + xx] = cj[1] + g2;
            }
        }
        out
    }

    /// The stage on a `h x w` frame against [`reference`].
    fn assert_matches_reference(h: usize, w: usize, seed: usize) {
        let (y, n, z) = frame(h, w, seed);
        let p = stage();
        let mut out = Tensor::zeros(y.shape()).expect("out");
        p.run_into(&y, &n, &z, &BufferPool::new(), &mut out)
            .expect("run");
        let want = reference(&p, &y, &n, &z);
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
        assert_matches_reference(13, 19, 1);
    }

    /// Taller than a strip: the strips' seams give the definition too.
    #[test]
    fn strips_match_the_per_pixel_definition() {
        assert_matches_reference(2 * STRIP + 11, 9, 5);
    }

    /// A window cut from the frame with a margin of the stage's reach
    /// gives the frame's interior bit for bit.
    #[test]
    fn tiles_reproduce_the_frame() {
        let (h, w) = (40, 52);
        let (y, n, z) = frame(h, w, 2);
        let p = stage();
        let pool = BufferPool::new();
        let mut whole = Tensor::zeros(y.shape()).expect("out");
        p.run_into(&y, &n, &z, &pool, &mut whole).expect("run");
        // a window at even offsets (the noise map is at half resolution)
        let (oy, ox, th, tw) = (10, 12, 24, 30);
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
        let (yt, nt, zt) = (cut(&y, 3, 1), cut(&n, 1, 2), cut(&z, 2, 1));
        let mut tile = Tensor::zeros(yt.shape()).expect("out");
        p.run_into(&yt, &nt, &zt, &pool, &mut tile).expect("run");
        let m = p.reach();
        for c in 0..3 {
            for yy in m..th - m {
                for xx in m..tw - m {
                    assert_eq!(
                        tile.plane(0, c)[yy * tw + xx].to_bits(),
                        whole.plane(0, c)[(oy + yy) * w + ox + xx].to_bits(),
                        "channel {c} at ({yy}, {xx})"
                    );
                }
            }
        }
    }

    /// With the gate shut the stage only round-trips RGB through (L, C).
    #[test]
    fn a_shut_gate_keeps_the_image() {
        let (y, n, _) = frame(16, 16, 3);
        let z = Tensor::from_vec([1, 2, 16, 16], vec![-200.0; 2 * 256]).expect("z");
        let mut out = Tensor::zeros(y.shape()).expect("out");
        stage()
            .run_into(&y, &n, &z, &BufferPool::new(), &mut out)
            .expect("run");
        let worst = out
            .data()
            .iter()
            .zip(y.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "max abs change {worst}");
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        assert!(ChromaGuided::new(vec![], 0.5, 1e-6).is_err());
        assert!(ChromaGuided::new(vec![9], 0.5, 1e-6).is_err());
        assert!(ChromaGuided::new(vec![2], -1.0, 1e-6).is_err());
        assert!(ChromaGuided::new(vec![2], 0.5, 0.0).is_err());
        assert!(ChromaGuided::new(vec![2], f32::NAN, 1e-6).is_err());
        let (y, n, z) = frame(16, 16, 4);
        let p = stage();
        let mut out = Tensor::zeros(y.shape()).expect("out");
        let pool = BufferPool::new();
        let z1 = Tensor::zeros([1, 1, 16, 16]).expect("z");
        assert!(p.run_into(&y, &n, &z1, &pool, &mut out).is_err());
        let n1 = Tensor::zeros([1, 1, 7, 8]).expect("noise");
        assert!(p.run_into(&y, &n1, &z, &pool, &mut out).is_err());
        let mut o1 = Tensor::zeros([1, 3, 16, 15]).expect("out");
        assert!(p.run_into(&y, &n, &z, &pool, &mut o1).is_err());
    }
}
