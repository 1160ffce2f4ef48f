//! Poisson-Gaussian noise estimation from ONE raw mosaic.
//!
//! Model (Foi, Trimeche, Katkovnik & Egiazarian 2008, "Practical
//! Poissonian-Gaussian noise modeling and fitting for single-image raw-data",
//! and the DNG NoiseProfile tag): var(x) = a·x + b per CFA colour on the
//! normalised signal x (black removed, 1.0 = white).
//!
//! Method, after Foi et al.'s local-statistics-then-fit scheme:
//! 1. Blocks of `block`x`block` coefficients of one level of the orthonormal
//!    Daubechies-4 wavelet transform of each of the four half-resolution CFA
//!    site planes (a sparse grid of blocks on large frames, so 12 MP costs
//!    milliseconds). Per block and site: the mean (intensity), the diagonal
//!    detail (HH) energy, which is the noise variance on flat content (4
//!    vanishing moments: shading and lens vignetting up to cubic vanish), and
//!    the horizontal/vertical detail (LH, HL) energy. The wavelet-HH noise
//!    measure follows Donoho & Johnstone 1994; Immerkær 1996's Laplacian
//!    residual was the first version and leaked more texture.
//! 2. Weak-texture selection without selection bias (this crate's variant):
//!    on white Gaussian noise the bands of an orthonormal transform are
//!    independent, and so are the four CFA sites. A block's site s is ranked
//!    by its own LH/HL energy (pass 1: the flattest `keep_fraction` of each
//!    bin) and then by the LH/HL energy of all four sites relative to the
//!    current model (texture-to-noise ratio <= 1 + kappa); none of it
//!    involves site s's HH noise, so choosing flat blocks does not bias the
//!    measured noise low.
//! 3. Per-bin refinement, after Liu, Tanaka & Okutomi 2013 ("Single-image
//!    noise level estimation for blind denoising", IEEE TIP): each
//!    intensity bin iterates its own threshold, (1 + kappa) times its own
//!    current level on the site's LH/HL energy (the other three sites stay
//!    judged against the pass-1 model), and its level is the HH energy of
//!    the blocks under it, until it stops moving (`iterations`). It starts
//!    from the pass-1 model, an over-estimate on texture, and converges
//!    from above; on white noise the level is a fixed point (HH is
//!    independent of the selection). A bin with fewer than `min_blocks`
//!    blocks under its threshold measures texture, not noise, and leaves
//!    the fit; a colour with no bin left keeps its pass-1 model. Per-bin
//!    thresholds never come from another bin's extrapolated line, so an
//!    under-fitted line cannot starve the bright bins (the first version of
//!    this step used one line for all, and did). Then two bounds from the
//!    model: the noise variance does not fall as the signal rises and
//!    texture only adds to a measurement, so a brighter bin's level (plus
//!    three standard errors) caps every darker bin's, and the fitted line's
//!    slope is lowered where it passes above a bin's cap.
//! 4. Clipping: blocks touching the white level, or a floor/ceiling plateau
//!    (many blocks sharing the exact minimum/maximum value: a sensor that
//!    clips at black or a white level set too high), are dropped.
//! 5. Per colour, equal-count intensity bins; in each, the selected blocks,
//!    outliers above 4x the median dropped, their mean variance (or, with
//!    `quantile`, a bias-corrected low quantile; off by default: it read
//!    ISO 6400 frames up to 40 % low).
//! 6. A robust weighted line fit var = a·x + b (IRLS, Tukey biweight, weights
//!    n/var²), constrained to a >= 0 and b >= the quantisation noise
//!    variance `quant_var` (a step q has variance q²/12: no sensor reads
//!    below it).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::raw::{CfaPattern, NoiseProfile};

/// Tuning of [`estimate`]. Defaults are the values the acceptance numbers in
/// `calibration/README.md` were measured with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimatorParams {
    /// Block side in DB4 coefficients of one CFA site plane (4: 14x14
    /// site-plane pixels, 28x28 mosaic pixels, per block). Frames too small
    /// for 16 blocks use smaller ones.
    pub block: usize,
    /// Most blocks examined per site plane; larger frames are sampled on a
    /// regular sparse grid of blocks.
    pub max_blocks: usize,
    /// Intensity bins per colour.
    pub bins: usize,
    /// Pass 1: fraction of each bin's blocks kept (the least textured).
    pub keep_fraction: f64,
    /// Texture tolerance: pass 1 keeps blocks whose detail energy is at most
    /// (1 + kappa) times the pass-0 model's noise variance in all 4 sites;
    /// the refinement the same against each bin's own level.
    pub kappa: f64,
    /// Pass 1: keep at least this fraction of each bin (the flattest).
    pub min_fraction: f64,
    /// Refinement: a bin needs at least this many blocks under its
    /// threshold to stay in the fit.
    pub min_blocks: usize,
    /// Most refinement rounds (0: none, the pass-1 fit of the first
    /// version).
    pub iterations: usize,
    /// Quantisation noise variance per colour (R, G, B) in normalised
    /// units² (q²/12 for a step q): the floor of the fitted `b`.
    pub quant_var: [f64; 3],
    /// Per-bin statistic: 0 for the mean of the kept blocks' HH energies
    /// (outliers above 4x their median dropped); else this quantile of
    /// them (0.05..=0.95), divided by the same quantile of a block's energy
    /// on white noise (chi-square with `block`² degrees of freedom, over
    /// that), so that it reads the noise variance without bias.
    pub quantile: f64,
    /// Values at or above `clip_high · white[c]` are treated as clipped.
    pub clip_high: f32,
    /// White level per colour (R, G, B) in the input's units: 1.0 for a
    /// normalised mosaic, the gains for a white-balanced one.
    pub white: [f32; 3],
}

impl Default for EstimatorParams {
    fn default() -> Self {
        EstimatorParams {
            block: 4,
            max_blocks: 4_096,
            bins: 16,
            keep_fraction: 0.3,
            kappa: 0.5,
            min_fraction: 0.1,
            min_blocks: 4,
            iterations: 8,
            quant_var: [0.0; 3],
            quantile: 0.0,
            clip_high: 0.999,
            white: [1.0; 3],
        }
    }
}

/// One intensity bin's measurement: mean signal, noise variance, blocks.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BinPoint {
    /// Mean normalised signal of the bin's kept blocks.
    pub x: f64,
    /// Their mean noise variance (normalised units²).
    pub var: f64,
    /// Blocks kept.
    pub n: usize,
}

/// The result of [`estimate`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct RawNoiseFit {
    /// Fitted (a, b) per colour (R, G, B).
    pub profile: NoiseProfile,
    /// The binned measurements each colour's line was fitted to.
    pub points: [Vec<BinPoint>; 3],
    /// Usable (unclipped) blocks per colour before texture selection.
    pub blocks: [usize; 3],
    /// Caveats: degenerate fits, borrowed channels.
    pub notes: Vec<String>,
}

/// Statistics of one block: per site s (= 2·dy + dx of the 2x2 CFA cell)
/// the mean signal, the mean squared diagonal (HH) and horizontal/vertical
/// (LH, HL) Daubechies-4 detail coefficients, the minimum and the maximum.
#[derive(Debug, Clone, Copy)]
struct BlockStat {
    mean: [f32; 4],
    hh: [f32; 4],
    detail: [f32; 4],
    min: [f32; 4],
    max: [f32; 4],
}

/// Extra site-plane pixels a block of `bc` x `bc` coefficients reads beyond
/// `2·bc` (filter length - 2).
const SUPPORT_EXTRA: usize = 6;

/// Per-block statistics on a sparse grid of blocks of `bc` x `bc`
/// coefficients of one DB4 level of each site plane (support
/// `2·bc + 6` site-plane pixels). `data` is the w x h row-major mosaic.
fn block_stats(data: &[f32], w: usize, h: usize, bc: usize, max_blocks: usize) -> Vec<BlockStat> {
    let (pw, ph) = (w / 2, h / 2);
    let sup = 2 * bc + SUPPORT_EXTRA;
    if pw < sup || ph < sup {
        return Vec::new();
    }
    let (nbx, nby) = (
        (pw - SUPPORT_EXTRA) / (2 * bc),
        (ph - SUPPORT_EXTRA) / (2 * bc),
    );
    let total = nbx * nby;
    let step = if total > max_blocks {
        ((total as f64 / max_blocks as f64).sqrt().ceil() as usize).max(1)
    } else {
        1
    };
    let lo = super::DB4_LO.map(|v| v as f32);
    let hi = super::DB4_HI.map(|v| v as f32);
    let rows: Vec<usize> = (0..nby).step_by(step).collect();
    let ncoef = (bc * bc) as f32;
    rows.par_iter()
        .enumerate()
        .flat_map_iter(|(ri, &by)| {
            // Stagger the columns row to row so that the sample covers the
            // frame evenly.
            let start = (ri * step / 2) % step;
            (start..nbx).step_by(step).map(move |bx| {
                let mut st = BlockStat {
                    mean: [0.0; 4],
                    hh: [0.0; 4],
                    detail: [0.0; 4],
                    min: [f32::INFINITY; 4],
                    max: [f32::NEG_INFINITY; 4],
                };
                let (y0, x0) = (4 * by * bc, 4 * bx * bc);
                // Site-plane patch (sup x sup, at most 22 x 22) and its row
                // low/high passes (sup x bc).
                let mut p = [0f32; 484];
                let mut rl = [0f32; 22 * 8];
                let mut rh = [0f32; 22 * 8];
                for s in 0..4 {
                    let (dy, dx) = (s >> 1, s & 1);
                    let (mut sum, mut mn, mut mx) = (0f32, f32::INFINITY, f32::NEG_INFINITY);
                    for i in 0..sup {
                        let row = &data[(y0 + 2 * i + dy) * w + x0 + dx..];
                        for j in 0..sup {
                            let v = row[2 * j];
                            p[i * sup + j] = v;
                            sum += v;
                            mn = mn.min(v);
                            mx = mx.max(v);
                        }
                    }
                    for i in 0..sup {
                        let r = &p[i * sup..(i + 1) * sup];
                        for jc in 0..bc {
                            let (mut a, mut b) = (0f32, 0f32);
                            for k in 0..8 {
                                a += lo[k] * r[2 * jc + k];
                                b += hi[k] * r[2 * jc + k];
                            }
                            rl[i * bc + jc] = a;
                            rh[i * bc + jc] = b;
                        }
                    }
                    let (mut ehh, mut edet) = (0f32, 0f32);
                    for ic in 0..bc {
                        for jc in 0..bc {
                            let (mut lh, mut hl, mut hh) = (0f32, 0f32, 0f32);
                            for k in 0..8 {
                                let o = (2 * ic + k) * bc + jc;
                                lh += hi[k] * rl[o];
                                hl += lo[k] * rh[o];
                                hh += hi[k] * rh[o];
                            }
                            ehh += hh * hh;
                            edet += lh * lh + hl * hl;
                        }
                    }
                    st.mean[s] = sum / (sup * sup) as f32;
                    st.hh[s] = ehh / ncoef;
                    st.detail[s] = edet / (2.0 * ncoef);
                    st.min[s] = mn;
                    st.max[s] = mx;
                }
                st
            })
        })
        .collect()
}

/// One block of one site as a fitting candidate.
#[derive(Debug, Clone, Copy)]
struct Cand {
    x: f32,
    v: f32,
    /// Texture score (lower = flatter): pass 0 the site's own LH/HL energy,
    /// pass 1 the largest LH/HL energy of the four sites over the model.
    score: f32,
}

/// Weighted least squares var = a·x + b with a, b >= 0 over `(x, y, w)`.
/// Returns None when there is nothing to fit.
fn wls(pts: &[(f64, f64, f64)]) -> Option<(f64, f64, bool)> {
    let (mut s, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, y, w) in pts {
        s += w;
        sx += w * x;
        sy += w * y;
        sxx += w * x * x;
        sxy += w * x * y;
    }
    if s <= 0.0 || !s.is_finite() {
        return None;
    }
    let det = s * sxx - sx * sx;
    // A line needs distinct levels: a weighted std of x over 2 % of full
    // scale or a quarter of the mean level.
    let x_std = (det.max(0.0)).sqrt() / s;
    let spread_ok = x_std > 0.02 || x_std > 0.25 * (sx / s).abs();
    let through_origin = |sxy: f64, sxx: f64| if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
    if !spread_ok {
        // One intensity level: a and b are not separable. Shot noise only
        // when the level is clearly above black, else read noise only.
        let xm = sx / s;
        return Some(if xm > 1e-3 {
            (through_origin(sxy, sxx), 0.0, false)
        } else {
            (0.0, (sy / s).max(0.0), false)
        });
    }
    let a = (s * sxy - sx * sy) / det;
    let b = (sxx * sy - sx * sxy) / det;
    Some(if a < 0.0 {
        (0.0, (sy / s).max(0.0), true)
    } else if b < 0.0 {
        (through_origin(sxy, sxx), 0.0, true)
    } else {
        (a, b, true)
    })
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Robust line fit of binned points (IRLS with Tukey's biweight on the
/// relative residuals). Returns (a, b, separable).
pub fn fit_line(points: &[BinPoint]) -> (f64, f64, bool) {
    if points.is_empty() {
        return (0.0, 0.0, false);
    }
    let tiny = points.iter().map(|p| p.var).fold(0.0, f64::max) * 1e-6 + 1e-30;
    let mut pred: Vec<f64> = points.iter().map(|p| p.var.max(tiny)).collect();
    let mut robust = vec![1.0; points.len()];
    let mut fit = (0.0, 0.0, false);
    for _ in 0..8 {
        let pts: Vec<(f64, f64, f64)> = points
            .iter()
            .zip(&pred)
            .zip(&robust)
            .map(|((p, &q), &r)| (p.x, p.var, r * p.n as f64 / (q * q)))
            .collect();
        let Some(f) = wls(&pts) else { break };
        fit = f;
        for (q, p) in pred.iter_mut().zip(points) {
            *q = (fit.0 * p.x + fit.1).max(tiny);
        }
        let rel: Vec<f64> = points
            .iter()
            .zip(&pred)
            .map(|(p, &q)| (p.var - q) / q * (p.n as f64).sqrt())
            .collect();
        let mut abs: Vec<f64> = rel.iter().map(|r| r.abs()).collect();
        let scale = (1.4826 * median(&mut abs)).max(1e-3);
        for (w, r) in robust.iter_mut().zip(&rel) {
            let u = r / (4.685 * scale);
            *w = if u.abs() < 1.0 {
                (1.0 - u * u).powi(2)
            } else {
                0.0
            };
        }
    }
    fit
}

/// The `q` quantile of chi-square(k) / k (Wilson & Hilferty 1931's cube
/// approximation, with Tukey's lambda approximation of the normal quantile;
/// under 1 % error for k >= 4 and q in [0.05, 0.95]).
fn chi2_over_k_quantile(q: f64, k: f64) -> f64 {
    let q = q.clamp(0.05, 0.95);
    let z = 4.91 * (q.powf(0.14) - (1.0 - q).powf(0.14));
    let c = 2.0 / (9.0 * k.max(1.0));
    (1.0 - c + z * c.sqrt()).max(1e-3).powi(3)
}

/// One bin's point from its kept blocks: the mean HH energy with outliers
/// above 4x the median dropped, or with `quantile` = (q, unit) the q
/// quantile of the energies over its white-noise value `unit`.
fn measure(kept: &[Cand], quantile: Option<(f64, f64)>) -> Option<BinPoint> {
    if kept.is_empty() {
        return None;
    }
    let mut vs: Vec<f64> = kept.iter().map(|c| c.v as f64).collect();
    let med = median(&mut vs);
    if let Some((q, unit)) = quantile {
        // vs is sorted by median().
        let at = q * (vs.len() - 1) as f64;
        let (i, t) = (at.floor() as usize, at.fract());
        let v = vs[i] * (1.0 - t) + vs[(i + 1).min(vs.len() - 1)] * t;
        return Some(BinPoint {
            x: kept.iter().map(|c| c.x as f64).sum::<f64>() / kept.len() as f64,
            var: v / unit,
            n: kept.len(),
        });
    }
    let (mut sx, mut sv, mut n) = (0.0, 0.0, 0usize);
    for c in kept {
        if (c.v as f64) <= 4.0 * med {
            sx += c.x as f64;
            sv += c.v as f64;
            n += 1;
        }
    }
    (n > 0).then(|| BinPoint {
        x: sx / n as f64,
        var: sv / n as f64,
        n,
    })
}

/// Bins candidates by intensity and measures each bin (see module docs):
/// within a bin, the blocks with `score <= max_score` are kept, but at least
/// the `min_fraction` and at least `min_blocks` (all, in a smaller bin)
/// with the lowest scores.
fn bin_points(
    cands: &mut [Cand],
    bins: usize,
    max_score: f32,
    min_fraction: f64,
    min_blocks: usize,
    quantile: Option<(f64, f64)>,
) -> Vec<BinPoint> {
    const MIN_PER_BIN: usize = 12;
    if cands.is_empty() {
        return Vec::new();
    }
    cands.sort_by(|p, q| p.x.total_cmp(&q.x));
    let nb = bins.min(cands.len() / MIN_PER_BIN).max(1);
    let mut out = Vec::with_capacity(nb);
    for k in 0..nb {
        let (lo, hi) = (k * cands.len() / nb, (k + 1) * cands.len() / nb);
        let bin = &mut cands[lo..hi];
        bin.sort_by(|p, q| p.score.total_cmp(&q.score));
        let min_keep = ((bin.len() as f64 * min_fraction).ceil() as usize)
            .max(min_blocks.max(1))
            .min(bin.len());
        let keep = bin.partition_point(|c| c.score <= max_score).max(min_keep);
        if let Some(p) = measure(&bin[..keep], quantile) {
            out.push(p);
        }
    }
    out
}

/// Estimates var(x) = a·x + b per CFA colour from one normalised mosaic.
///
/// `data`: `width * height` row-major samples, black level removed and
/// scaled so that 1.0 is the white level (the output of `black_level`);
/// `cfa`: the Bayer phase of the top-left photosite. Errors (typed, never a
/// panic) for frames under 8x8, non-finite samples, or frames with no usable
/// block at all (e.g. entirely clipped).
pub fn estimate(
    data: &[f32],
    width: usize,
    height: usize,
    cfa: CfaPattern,
    params: &EstimatorParams,
) -> Result<RawNoiseFit> {
    if data.len() != width.saturating_mul(height) {
        return Err(Error::invalid(format!(
            "noise estimate: buffer holds {} samples, expected {width}x{height}",
            data.len()
        )));
    }
    let too_small = || {
        Error::invalid(format!(
            "noise estimate: frame {width}x{height} is too small (needs at least 20x20)"
        ))
    };
    let (pw, ph) = (width / 2, height / 2);
    if pw < 2 + SUPPORT_EXTRA || ph < 2 + SUPPORT_EXTRA {
        return Err(too_small());
    }
    // Blocks of bc x bc coefficients; smaller ones on small frames.
    let mut bc = params.block.clamp(1, 8);
    while bc > 1 {
        let n = |d: usize| d.saturating_sub(SUPPORT_EXTRA) / (2 * bc);
        if n(pw) * n(ph) >= 16 {
            break;
        }
        bc /= 2;
    }
    let stats = block_stats(data, width, height, bc, params.max_blocks.max(16));
    if stats.is_empty() {
        return Err(too_small());
    }
    if stats.iter().any(|s| {
        s.mean
            .iter()
            .chain(&s.hh)
            .chain(&s.detail)
            .any(|v| !v.is_finite())
    }) {
        return Err(Error::invalid(
            "noise estimate: the mosaic holds NaN or infinite samples",
        ));
    }

    // Clipping, per colour: values at or above clip_high·white, and a floor
    // or ceiling plateau shared by many blocks (exact repeats of the extreme
    // value: a sensor clipping at black, a white level set too high, or a
    // clipped white balance).
    let colors = cfa.layout();
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    let mut nsites = [0usize; 3];
    for st in &stats {
        for (s, &c) in colors.iter().enumerate() {
            lo[c] = lo[c].min(st.min[s]);
            hi[c] = hi[c].max(st.max[s]);
            nsites[c] += 1;
        }
    }
    let (mut floor_clip, mut ceil_clip) = ([false; 3], [false; 3]);
    for c in 0..3 {
        let plateau = |cnt: usize| cnt as f64 >= (0.005 * nsites[c] as f64).max(3.0);
        let (mut nlo, mut nhi) = (0, 0);
        for st in &stats {
            for s in (0..4).filter(|&s| colors[s] == c) {
                nlo += (st.min[s] == lo[c]) as usize;
                nhi += (st.max[s] == hi[c]) as usize;
            }
        }
        // A constant colour is not clipped, just flat.
        floor_clip[c] = lo[c] < hi[c] && plateau(nlo);
        ceil_clip[c] = lo[c] < hi[c] && plateau(nhi);
    }
    let clip_at = params.white.map(|w| w * params.clip_high);
    let clipped = |st: &BlockStat, s: usize| {
        let c = colors[s];
        st.max[s] >= clip_at[c]
            || (floor_clip[c] && st.min[s] <= lo[c])
            || (ceil_clip[c] && st.max[s] >= hi[c])
    };

    let mut notes = Vec::new();
    // Pass 0: within each bin, the blocks with the least own LH/HL detail
    // energy. Pass 1: blocks whose detail energy, in every site, is at most
    // (1 + kappa) times the pass-0 model's noise variance there. Then the
    // per-bin refinement (module docs, step 3).
    let mut profile = NoiseProfile {
        a: [0.0; 3],
        b: [0.0; 3],
    };
    let mut points: [Vec<BinPoint>; 3] = Default::default();
    let mut blocks = [0usize; 3];
    let mut fitted = [false; 3];
    let mut separable = [true; 3];
    let max_score = 1.0 + params.kappa as f32;
    let bins = params.bins.max(1);
    let quant = params.quant_var.map(|q| q.max(0.0));
    // Largest detail energy over the model among the sites of `st` other
    // than `s` (clipped sites are flat for the wrong reason: they do not
    // vote), and the own site's.
    let texture = |st: &BlockStat, s: usize, m: &NoiseProfile| -> (f32, f32) {
        let ratio = |o: usize| {
            let oc = colors[o];
            let model = (m.a[oc] * st.mean[o] as f64 + m.b[oc]).max(1e-20) as f32;
            st.detail[o] / model
        };
        let others = (0..4)
            .filter(|&o| o != s && !clipped(st, o))
            .map(ratio)
            .fold(0f32, f32::max);
        (ratio(s), others)
    };
    // Fits colour c's line to `pts` into `profile`; returns whether a and b
    // were separable.
    let fit_colour = |c: usize, pts: &[BinPoint], profile: &mut NoiseProfile| -> bool {
        let (a, bb, sep) = fit_line(pts);
        profile.a[c] = a;
        profile.b[c] = bb.max(quant[c]);
        sep
    };
    for pass in 0..2 {
        let prev = profile;
        let mut next = prev;
        for c in 0..3 {
            let mut cands = Vec::new();
            for st in &stats {
                for s in (0..4).filter(|&s| colors[s] == c) {
                    if clipped(st, s) {
                        continue;
                    }
                    let score = if pass == 0 {
                        st.detail[s]
                    } else {
                        let (own, others) = texture(st, s, &prev);
                        own.max(others)
                    };
                    cands.push(Cand {
                        x: st.mean[s],
                        v: st.hh[s],
                        score,
                    });
                }
            }
            blocks[c] = cands.len();
            let pts = if pass == 0 {
                bin_points(
                    &mut cands,
                    bins,
                    f32::NEG_INFINITY,
                    params.keep_fraction,
                    4,
                    None,
                )
            } else {
                bin_points(&mut cands, bins, max_score, params.min_fraction, 4, None)
            };
            if !pts.is_empty() {
                separable[c] = fit_colour(c, &pts, &mut next);
                fitted[c] = true;
                points[c] = pts;
            }
        }
        profile = next;
    }

    // Per-bin refinement: each bin's own threshold from its own level,
    // starting from the pass-1 model (an over-estimate on texture) and
    // converging from above; the other sites are judged against the
    // pass-1 model, so that no colour's extrapolated line can starve
    // another colour's bins. A bin with fewer than `min_blocks` blocks
    // under its threshold measures texture and leaves the fit.
    let m1 = profile;
    let quantile = (params.quantile > 0.0).then(|| {
        let q = params.quantile.clamp(0.05, 0.95);
        (q, chi2_over_k_quantile(q, (bc * bc) as f64))
    });
    for c in (0..3).filter(|&c| fitted[c] && params.iterations > 0) {
        // (x, HH, own detail, other sites' texture score)
        let mut cands: Vec<(Cand, f32)> = Vec::new();
        for st in &stats {
            for s in (0..4).filter(|&s| colors[s] == c) {
                if clipped(st, s) {
                    continue;
                }
                let (_, others) = texture(st, s, &m1);
                cands.push((
                    Cand {
                        x: st.mean[s],
                        v: st.hh[s],
                        score: st.detail[s],
                    },
                    others,
                ));
            }
        }
        cands.sort_by(|p, q| p.0.x.total_cmp(&q.0.x));
        let nb = bins.min(cands.len() / 12).max(1);
        let mut level: Vec<Option<f64>> = (0..nb)
            .map(|k| {
                let seg = &cands[k * cands.len() / nb..(k + 1) * cands.len() / nb];
                let xm = seg.iter().map(|c| c.0.x as f64).sum::<f64>() / seg.len().max(1) as f64;
                Some((m1.a[c] * xm + m1.b[c]).max(quant[c]).max(1e-20))
            })
            .collect();
        let mut pts: Vec<Option<BinPoint>> = vec![None; nb];
        for _ in 0..params.iterations {
            let mut moved = false;
            for k in 0..nb {
                let Some(v) = level[k] else { continue };
                let seg = &cands[k * cands.len() / nb..(k + 1) * cands.len() / nb];
                let thr = max_score * v as f32;
                let kept: Vec<Cand> = seg
                    .iter()
                    .filter(|(c, others)| *others <= max_score && c.score <= thr)
                    .map(|(c, _)| *c)
                    .collect();
                let p = if kept.len() >= params.min_blocks.max(1) {
                    measure(&kept, quantile)
                } else {
                    None
                };
                match p {
                    Some(p) => {
                        moved |= (p.var - v).abs() > 0.01 * v;
                        level[k] = Some(p.var.max(quant[c]).max(1e-20));
                        pts[k] = Some(p);
                    }
                    None => {
                        moved = true;
                        level[k] = None;
                        pts[k] = None;
                    }
                }
            }
            if !moved {
                break;
            }
        }
        let mut pts: Vec<BinPoint> = pts.into_iter().flatten().collect();
        // The noise variance does not fall as the signal rises (a, b >= 0)
        // and texture only adds to it: a brighter bin's measurement bounds
        // every darker bin's, with three standard errors of slack (a bin's
        // mean of n blocks of bc² HH coefficients has relative standard
        // error sqrt(2 / (n·bc²)) on white noise). The bins are in x order.
        let bound = |p: &BinPoint| {
            let se = (2.0 / ((bc * bc * p.n.max(1)) as f64)).sqrt();
            p.var * (1.0 + 3.0 * se)
        };
        let mut cap = f64::INFINITY;
        for p in pts.iter_mut().rev() {
            p.var = p.var.min(cap);
            cap = cap.min(bound(p));
        }
        if pts.is_empty() {
            notes.push(format!(
                "{}: no bin with {} flat blocks, first-pass model kept",
                ["R", "G", "B"][c],
                params.min_blocks
            ));
        } else {
            separable[c] = fit_colour(c, &pts, &mut profile);
            // Nor may the line's slope carry it above a bin's bound (the
            // robust fit follows the many dark bins and can overshoot a
            // bright one): lower a where the intercept alone is under the
            // bound. Lowering a never breaks an earlier bound.
            for p in &pts {
                let (a, b, lim) = (profile.a[c], profile.b[c], bound(p));
                if a * p.x + b > lim && b <= lim && p.x > 0.0 {
                    profile.a[c] = (lim - b) / p.x;
                }
            }
            points[c] = pts;
        }
    }
    for c in 0..3 {
        if fitted[c] && !separable[c] {
            notes.push(format!(
                "{}: one intensity level only, a and b not separable",
                ["R", "G", "B"][c]
            ));
        }
    }
    if !fitted.iter().any(|&f| f) {
        return Err(Error::invalid(
            "noise estimate: no usable block (frame clipped or too small)",
        ));
    }
    // A colour with no usable block borrows the mean of the others.
    let n_ok = fitted.iter().filter(|&&f| f).count() as f64;
    let (ma, mb) = (0..3).filter(|&c| fitted[c]).fold((0.0, 0.0), |(a, b), c| {
        (a + profile.a[c] / n_ok, b + profile.b[c] / n_ok)
    });
    for c in 0..3 {
        if !fitted[c] {
            profile.a[c] = ma;
            profile.b[c] = mb;
            notes.push(format!(
                "{}: no usable block, mean of the other colours used",
                ["R", "G", "B"][c]
            ));
        }
    }
    Ok(RawNoiseFit {
        profile,
        points,
        blocks,
        notes,
    })
}

/// Quantisation noise variance per colour (R, G, B) of a mosaic that was
/// normalised from integer DN by `black_level` ((dn - black) / (white -
/// black)) and then multiplied by the white-balance `gains`: a step of
/// g / (white - black) has variance step²/12. Zero for a colour whose range
/// spans under 16 DN (floating-point raws: no integer step to speak of) or
/// is not finite.
pub fn quantisation_variance(white: [f32; 3], black: f32, gains: [f32; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for c in 0..3 {
        let range = white[c] as f64 - black as f64;
        let g = gains[c] as f64;
        if range.is_finite() && range >= 16.0 && g.is_finite() && g > 0.0 {
            let q = g / range;
            out[c] = q * q / 12.0;
        }
    }
    out
}

/// A per-tile noise map from a model: for each `tile`x`tile` tile of the
/// mosaic, the mean over the four CFA sites of sqrt(a·μ + b), μ being the
/// site's mean signal in the tile (sampled on a 2x2-cell grid with a stride
/// of 4 cells). Returns (map width, map height, row-major sigmas in
/// normalised units).
pub fn sigma_map(
    data: &[f32],
    width: usize,
    height: usize,
    cfa: CfaPattern,
    profile: &NoiseProfile,
    tile: usize,
) -> (usize, usize, Vec<f32>) {
    let tile = (tile.max(2) + 1) & !1;
    if width < 2 || height < 2 || data.len() != width * height {
        return (0, 0, Vec::new());
    }
    let (mw, mh) = (width.div_ceil(tile), height.div_ceil(tile));
    let colors = cfa.layout();
    let stride = (tile / 8).max(1) * 2;
    let mut map = vec![0f32; mw * mh];
    map.par_chunks_mut(mw).enumerate().for_each(|(ty, row)| {
        for (tx, out) in row.iter_mut().enumerate() {
            let (y0, x0) = (ty * tile, tx * tile);
            let (y1, x1) = (((ty + 1) * tile).min(height), ((tx + 1) * tile).min(width));
            let mut sum = [0f64; 4];
            let mut n = 0usize;
            let mut y = y0;
            while y + 1 < y1 {
                let mut x = x0;
                while x + 1 < x1 {
                    sum[0] += data[y * width + x] as f64;
                    sum[1] += data[y * width + x + 1] as f64;
                    sum[2] += data[(y + 1) * width + x] as f64;
                    sum[3] += data[(y + 1) * width + x + 1] as f64;
                    n += 1;
                    x += stride;
                }
                y += stride;
            }
            if n == 0 {
                continue;
            }
            let mut s = 0f64;
            for site in 0..4 {
                let c = colors[site];
                let mu = sum[site] / n as f64;
                s += (profile.a[c] * mu + profile.b[c]).max(0.0).sqrt();
            }
            *out = (s / 4.0) as f32;
        }
    });
    (mw, mh, map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    /// A smooth ramp (plus optional texture) with Poisson-Gaussian noise.
    fn synth(w: usize, h: usize, a: f64, b: f64, texture: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = Normal::new(0.0f64, 1.0).unwrap();
        let mut out = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let base = 0.05 + 0.8 * x as f32 / w as f32;
                let t = texture * ((x as f32 * 0.9).sin() * (y as f32 * 1.3).cos());
                let v = (base + t).clamp(0.0, 1.0) as f64;
                out[y * w + x] = (v + (a * v + b).sqrt() * n.sample(&mut rng)) as f32;
            }
        }
        out
    }

    #[test]
    fn ramp_is_recovered() {
        let (a, b) = (2e-3, 2e-5);
        let d = synth(512, 384, a, b, 0.0, 3);
        let f = estimate(&d, 512, 384, CfaPattern::Rggb, &EstimatorParams::default()).unwrap();
        for c in 0..3 {
            let e = crate::noise::std_at(&f.profile, c, 0.18);
            let t = (a * 0.18 + b).sqrt();
            assert!(
                (e / t - 1.0).abs() < 0.08,
                "c{c}: {e} vs {t} ({:?})",
                f.profile
            );
        }
    }

    /// Left half a ramp with Poisson-Gaussian noise, right half the same
    /// plus strong texture (one random value per 2x2 cell, so every CFA
    /// site sees it): the textured intensity bins leave the fit and the
    /// std stays right where there is flat signal and above it.
    #[test]
    fn texture_does_not_inflate_the_estimate() {
        let (w, h, a, b) = (512, 384, 1e-4, 1e-6);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = Normal::new(0.0f64, 1.0).unwrap();
        let cells: Vec<f64> = (0..(w / 2) * (h / 2)).map(|_| n.sample(&mut rng)).collect();
        let mut d = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let base = 0.05 + 0.8 * x as f64 / w as f64;
                let t = if x >= w / 2 {
                    0.05 * cells[(y / 2) * (w / 2) + x / 2]
                } else {
                    0.0
                };
                let v = (base + t).clamp(0.0, 1.0);
                d[y * w + x] = (v + (a * v + b).sqrt() * n.sample(&mut rng)) as f32;
            }
        }
        let truth = NoiseProfile {
            a: [a; 3],
            b: [b; 3],
        };
        let f = estimate(&d, w, h, CfaPattern::Rggb, &EstimatorParams::default()).unwrap();
        for c in 0..3 {
            for x in [0.18, 0.5] {
                let r = crate::noise::std_at(&f.profile, c, x) / crate::noise::std_at(&truth, c, x);
                assert!(
                    (r - 1.0).abs() < 0.15,
                    "c{c} x={x}: ratio {r} ({:?})",
                    f.profile
                );
            }
        }
    }

    #[test]
    fn quantisation_floor_and_chi2_quantiles() {
        let q = quantisation_variance([4095.0, 4095.0, 0.5], 256.0, [2.0, 1.0, 1.0]);
        assert!((q[0] - (2.0f64 / 3839.0).powi(2) / 12.0).abs() < 1e-18);
        assert!((q[1] - (1.0f64 / 3839.0).powi(2) / 12.0).abs() < 1e-18);
        assert_eq!(q[2], 0.0);
        // chi-square(16) / 16: median 15.338 / 16, 25 % 11.912 / 16.
        assert!((chi2_over_k_quantile(0.5, 16.0) - 15.338 / 16.0).abs() < 0.01);
        assert!((chi2_over_k_quantile(0.25, 16.0) - 11.912 / 16.0).abs() < 0.01);
        // A floor on b: a noise-free ramp reads the quantisation variance.
        let (w, h) = (256, 192);
        let d: Vec<f32> = (0..w * h)
            .map(|i| (((0.1 + 0.5 * (i % w) as f64 / w as f64) * 1000.0).round() / 1000.0) as f32)
            .collect();
        let p = EstimatorParams {
            quant_var: [1e-6 / 12.0; 3],
            ..EstimatorParams::default()
        };
        let f = estimate(&d, w, h, CfaPattern::Rggb, &p).unwrap();
        for c in 0..3 {
            assert!(f.profile.b[c] >= 1e-6 / 12.0, "{:?}", f.profile);
        }
    }

    #[test]
    fn line_fit_exact_points() {
        let pts: Vec<BinPoint> = (1..10)
            .map(|i| BinPoint {
                x: i as f64 / 10.0,
                var: 1e-3 * i as f64 / 10.0 + 1e-5,
                n: 20,
            })
            .collect();
        let (a, b, sep) = fit_line(&pts);
        assert!(sep);
        assert!(
            (a - 1e-3).abs() < 1e-9 && (b - 1e-5).abs() < 1e-10,
            "{a} {b}"
        );
    }

    #[test]
    fn degenerate_frames_never_nan() {
        let p = EstimatorParams::default();
        // Constant.
        let f = estimate(&vec![0.3; 64 * 64], 64, 64, CfaPattern::Rggb, &p).unwrap();
        assert_eq!(f.profile.a, [0.0; 3]);
        assert_eq!(f.profile.b, [0.0; 3]);
        // Flat noisy (one level: a, b not separable, but std right).
        let d: Vec<f32> = synth(64, 64, 0.0, 1e-4, 0.0, 1)
            .iter()
            .map(|v| v - 0.05 + 0.3)
            .collect();
        let f = estimate(&d, 64, 64, CfaPattern::Grbg, &p).unwrap();
        for c in 0..3 {
            assert!(f.profile.a[c].is_finite() && f.profile.b[c].is_finite());
        }
        // Fully clipped.
        assert!(estimate(&vec![1.0; 64 * 64], 64, 64, CfaPattern::Rggb, &p).is_err());
        // Too small, wrong size, NaN.
        assert!(estimate(&[0.5; 16], 4, 4, CfaPattern::Rggb, &p).is_err());
        assert!(estimate(&[0.5; 15], 4, 4, CfaPattern::Rggb, &p).is_err());
        let mut d = vec![0.5; 64 * 64];
        d[100] = f32::NAN;
        assert!(estimate(&d, 64, 64, CfaPattern::Rggb, &p).is_err());
        // Strong texture: finite, no panic.
        let d = synth(64, 64, 1e-3, 1e-5, 0.3, 2);
        let f = estimate(&d, 64, 64, CfaPattern::Rggb, &p).unwrap();
        assert!(f
            .profile
            .a
            .iter()
            .chain(&f.profile.b)
            .all(|v| v.is_finite()));
    }

    #[test]
    fn sigma_map_shape_and_values() {
        let prof = NoiseProfile {
            a: [1e-3; 3],
            b: [0.0; 3],
        };
        let d = vec![0.25f32; 100 * 70];
        let (mw, mh, m) = sigma_map(&d, 100, 70, CfaPattern::Rggb, &prof, 32);
        assert_eq!((mw, mh), (4, 3));
        for v in m {
            assert!((v - (1e-3f32 * 0.25).sqrt()).abs() < 1e-6);
        }
    }
}
