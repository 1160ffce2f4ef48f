//! Additive white Gaussian noise (AWGN) level of one image, in 8-bit units.
//!
//! Method (this crate's; builds on Donoho & Johnstone 1994, "Ideal spatial
//! adaptation by wavelet shrinkage": noise sigma from the finest diagonal
//! wavelet subband, and on weak-texture selection after Liu, Tanaka &
//! Okutomi 2013, "Single-image noise level estimation for blind denoising"):
//! 1. One level of the orthonormal separable Daubechies-4 wavelet transform
//!    (8 taps, 4 vanishing moments: smooth shading up to cubic vanishes from
//!    the detail bands). For white Gaussian noise of std σ every coefficient
//!    of every band is N(0, σ²) and, the transform being orthonormal, the
//!    bands are mutually independent.
//! 2. Blocks of `block`x`block` coefficients. A block's texture is scored by
//!    its horizontal and vertical detail energy (LH, HL); the noise is
//!    measured on its diagonal detail (HH) only. Because HH's noise is
//!    independent of LH/HL's, choosing the flattest blocks does not bias the
//!    measured noise low (the bias that selecting on the measured signal
//!    itself causes in Liu-style estimators).
//! 3. Iterate: keep blocks whose LH/HL energy is at most (1 + κ)·σ̂² (at least
//!    the flattest `min_fraction`), σ̂² = mean HH energy of the kept blocks,
//!    outlier blocks (HH energy over 3x the median) dropped.
//! 4. Blocks touching a clipping plateau (a value at the image's exact
//!    minimum or maximum shared by many pixels, e.g. 0 and 255 in a clipped
//!    8-bit image) are left out; under heavy clipping the least-clipped
//!    tenth is used (then the estimate is biased low).

use crate::error::{Error, Result};

use super::DB4_LO;

/// Tuning of [`estimate_sigma`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwgnParams {
    /// Block side in wavelet coefficients (one coefficient = 2x2 pixels).
    pub block: usize,
    /// Texture tolerance κ: keep blocks with LH/HL energy <= (1 + κ)·σ̂².
    pub kappa: f64,
    /// Keep at least this fraction of the blocks (the flattest).
    pub min_fraction: f64,
}

impl Default for AwgnParams {
    fn default() -> Self {
        // Tuned on the first 60 images of train/cbsd432 (not on the
        // kodak24/mcmaster18 acceptance sets): test `awgn_tune_cbsd432`.
        AwgnParams {
            block: 8,
            kappa: 0.1,
            min_fraction: 0.02,
        }
    }
}

/// The result of [`estimate_sigma`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AwgnEstimate {
    /// Noise standard deviation in the input's units (8-bit code values for
    /// an 8-bit image).
    pub sigma: f64,
    /// Blocks the final estimate used, and blocks available.
    pub blocks_used: usize,
    pub blocks_total: usize,
}

/// Per-block energies of the one-level wavelet transform.
struct BlockEnergy {
    /// Mean HH² of the block.
    hh: f64,
    /// Mean (LH² + HL²)/2 of the block.
    detail: f64,
}

/// One level of the separable orthonormal wavelet transform over the valid
/// region (no boundary extension). Returns (cols, rows, [LL, LH, HL, HH])
/// with each band row-major `rows x cols`. `img` is `w x h` row-major.
fn dwt_level(img: &[f32], w: usize, h: usize) -> (usize, usize, [Vec<f32>; 4]) {
    let lo = DB4_LO;
    let l = lo.len();
    let hi = super::DB4_HI;
    let cw = (w - l) / 2 + 1;
    let ch = (h - l) / 2 + 1;
    // Rows: low and high pass, decimated horizontally; h x cw each.
    let mut rl = vec![0f32; h * cw];
    let mut rh = vec![0f32; h * cw];
    for y in 0..h {
        let row = &img[y * w..(y + 1) * w];
        for j in 0..cw {
            let (mut a, mut b) = (0f64, 0f64);
            for k in 0..l {
                let v = row[2 * j + k] as f64;
                a += lo[k] * v;
                b += hi[k] * v;
            }
            rl[y * cw + j] = a as f32;
            rh[y * cw + j] = b as f32;
        }
    }
    // Columns.
    let mut bands = [
        vec![0f32; ch * cw],
        vec![0f32; ch * cw],
        vec![0f32; ch * cw],
        vec![0f32; ch * cw],
    ];
    for i in 0..ch {
        for j in 0..cw {
            let (mut ll, mut lh, mut hl, mut hh) = (0f64, 0f64, 0f64, 0f64);
            for k in 0..l {
                let idx = (2 * i + k) * cw + j;
                let (a, b) = (rl[idx] as f64, rh[idx] as f64);
                ll += lo[k] * a;
                lh += hi[k] * a;
                hl += lo[k] * b;
                hh += hi[k] * b;
            }
            let o = i * cw + j;
            bands[0][o] = ll as f32;
            bands[1][o] = lh as f32;
            bands[2][o] = hl as f32;
            bands[3][o] = hh as f32;
        }
    }
    (cw, ch, bands)
}

/// Estimates the AWGN standard deviation of a single-channel image.
///
/// `img`: `width * height` row-major values in any units (8-bit code
/// values for the published comparisons; see [`luma_bt601`]). Typed errors
/// for images under 32x32, wrong buffer sizes and non-finite values; a
/// noise-free (e.g. constant) image gives sigma 0.
pub fn estimate_sigma(
    img: &[f32],
    width: usize,
    height: usize,
    params: &AwgnParams,
) -> Result<AwgnEstimate> {
    if img.len() != width.saturating_mul(height) {
        return Err(Error::invalid(format!(
            "awgn estimate: buffer holds {} values, expected {width}x{height}",
            img.len()
        )));
    }
    if width < 32 || height < 32 {
        return Err(Error::invalid(format!(
            "awgn estimate: image {width}x{height} is too small (needs at least 32x32)"
        )));
    }
    if img.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "awgn estimate: image holds NaN or infinite values",
        ));
    }
    // Clipping plateaus.
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in img {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let (nlo, nhi) = img.iter().fold((0usize, 0usize), |(a, b), &v| {
        (a + (v == lo) as usize, b + (v == hi) as usize)
    });
    let plateau = |n: usize| n as f64 >= (1e-3 * img.len() as f64).max(4.0);
    let (clip_lo, clip_hi) = (plateau(nlo) && lo < hi, plateau(nhi) && lo < hi);

    let (cw, ch, bands) = dwt_level(img, width, height);
    let b = params.block.clamp(2, 64).min(cw).min(ch);
    let (nbx, nby) = (cw / b, ch / b);
    let l = DB4_LO.len();
    let mut blocks = Vec::with_capacity(nbx * nby);
    let mut clip_counts = Vec::with_capacity(nbx * nby);
    for by in 0..nby {
        for bx in 0..nbx {
            // Pixels under the block's coefficients.
            let (py0, px0) = (2 * by * b, 2 * bx * b);
            let (py1, px1) = (2 * (by + 1) * b + l - 2, 2 * (bx + 1) * b + l - 2);
            let mut nclip = 0usize;
            if clip_lo || clip_hi {
                for y in py0..py1.min(height) {
                    nclip += img[y * width + px0..y * width + px1.min(width)]
                        .iter()
                        .filter(|&&v| (clip_lo && v == lo) || (clip_hi && v == hi))
                        .count();
                }
            }
            let (mut hh, mut d) = (0f64, 0f64);
            for i in by * b..(by + 1) * b {
                for j in bx * b..(bx + 1) * b {
                    let o = i * cw + j;
                    let (lh, hl, x) = (bands[1][o] as f64, bands[2][o] as f64, bands[3][o] as f64);
                    hh += x * x;
                    d += lh * lh + hl * hl;
                }
            }
            let n = (b * b) as f64;
            blocks.push(BlockEnergy {
                hh: hh / n,
                detail: d / (2.0 * n),
            });
            clip_counts.push(nclip);
        }
    }
    // Blocks touching clipped pixels are left out; when that leaves too few
    // (heavy clipping), the least-clipped tenth is kept (biased low, but an
    // answer).
    if clip_lo || clip_hi {
        let mut sorted = clip_counts.clone();
        sorted.sort_unstable();
        let allowed = if sorted.is_empty() {
            0
        } else {
            sorted[(sorted.len() / 10).min(sorted.len() - 1)]
        };
        let mut k = 0;
        blocks.retain(|_| {
            let keep = clip_counts[k] <= allowed;
            k += 1;
            keep
        });
    }
    let total = blocks.len();
    if total == 0 {
        return Err(Error::invalid(
            "awgn estimate: no unclipped block (image clipped or too small)",
        ));
    }
    blocks.sort_by(|p, q| p.detail.total_cmp(&q.detail));
    let min_keep = ((total as f64 * params.min_fraction).ceil() as usize).clamp(1, total);
    // Start from the flattest blocks.
    let mut var = mean_hh(&blocks[..min_keep]);
    let mut used = min_keep;
    for _ in 0..6 {
        let thr = (1.0 + params.kappa) * var;
        let keep = blocks.partition_point(|p| p.detail <= thr).max(min_keep);
        let v = mean_hh(&blocks[..keep]);
        used = keep;
        if (v - var).abs() <= 1e-9 * var.max(1e-30) {
            var = v;
            break;
        }
        var = v;
    }
    Ok(AwgnEstimate {
        sigma: var.max(0.0).sqrt(),
        blocks_used: used,
        blocks_total: total,
    })
}

/// Mean HH energy over blocks, ignoring blocks above 3x the median.
fn mean_hh(blocks: &[BlockEnergy]) -> f64 {
    let mut v: Vec<f64> = blocks.iter().map(|b| b.hh).collect();
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        if x <= 3.0 * med {
            s += x;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B of interleaved 8-bit RGB,
/// in 8-bit units (not rounded).
pub fn luma_bt601(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect()
}

/// Loads an image file (PNG, JPEG, TIFF; any bit depth, converted to 8-bit
/// RGB) as BT.601 luma in 8-bit units: (width, height, values).
pub fn load_luma(path: &std::path::Path) -> Result<(usize, usize, Vec<f32>)> {
    let img = image::open(path)
        .map_err(|e| Error::decode(path, e.to_string()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((w, h, luma_bt601(img.as_raw())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn db4_is_orthonormal() {
        let h = DB4_LO;
        let s2: f64 = h.iter().map(|v| v * v).sum();
        assert!((s2 - 1.0).abs() < 1e-12);
        for m in 1..4 {
            let s: f64 = (0..8 - 2 * m).map(|k| h[k] * h[k + 2 * m]).sum();
            assert!(s.abs() < 1e-12, "shift {m}: {s}");
        }
        assert!((h.iter().sum::<f64>() - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn recovers_sigma_on_ramp_plus_noise() {
        let (w, h) = (256, 256);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = Normal::new(0.0f32, 1.0).unwrap();
        for sigma in [2.0f32, 10.0, 40.0] {
            let img: Vec<f32> = (0..w * h)
                .map(|i| {
                    let (x, y) = ((i % w) as f32, (i / w) as f32);
                    40.0 + 0.5 * x + 0.2 * y + sigma * n.sample(&mut rng)
                })
                .collect();
            let e = estimate_sigma(&img, w, h, &AwgnParams::default()).unwrap();
            assert!(
                (e.sigma / sigma as f64 - 1.0).abs() < 0.03,
                "{sigma}: {e:?}"
            );
        }
    }

    #[test]
    fn degenerate_inputs() {
        let p = AwgnParams::default();
        let e = estimate_sigma(&vec![128.0; 64 * 64], 64, 64, &p).unwrap();
        assert!(e.sigma < 1e-6, "{e:?}");
        assert!(estimate_sigma(&[1.0; 16 * 16], 16, 16, &p).is_err());
        assert!(estimate_sigma(&[1.0; 10], 64, 64, &p).is_err());
        let mut v = vec![1.0; 64 * 64];
        v[5] = f32::NAN;
        assert!(estimate_sigma(&v, 64, 64, &p).is_err());
        // Half black, half white (clipped everywhere): typed error or finite.
        let v: Vec<f32> = (0..64 * 64)
            .map(|i| if i % 64 < 32 { 0.0 } else { 255.0 })
            .collect();
        if let Ok(e) = estimate_sigma(&v, 64, 64, &p) {
            assert!(e.sigma.is_finite());
        }
    }
}
