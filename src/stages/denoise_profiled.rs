//! `denoise_profiled`: profiled raw denoising of the Bayer mosaic before
//! white balance and demosaicing.
//!
//! Method (the shape of darktable's "profiled denoise", on the raw planes):
//! 1. the mosaic is split into its four half-resolution CFA planes (one per
//!    2x2 site, any Bayer phase);
//! 2. each plane is variance-stabilised with the generalised Anscombe
//!    transformation for its colour's Poisson-Gaussian model
//!    var(x) = a·x + b ([`crate::noise::anscombe`]), so the noise has unit
//!    variance everywhere;
//! 3. non-local means (Buades, Coll & Morel 2005) with joint 4-plane block
//!    matching: the patch distance sums over all four planes (the planes
//!    share the scene's edges, so four times the evidence per patch), and
//!    the weights average all four planes alike. The weight is
//!    `exp(-max(d² - 2, 0) / h²)` with d² the mean squared difference per
//!    sample (2 for two patches that differ only by unit noise) and
//!    `h = 0.95 · strength`; the centre pixel gets the largest weight of
//!    its neighbours. Computed per offset with box sums (Darbon et al.
//!    2008), in tiles with halos across rayon threads;
//! 4. the exact unbiased inverse (Mäkitalo & Foi 2011/2013, closed form)
//!    maps the result back to the normalised signal.
//!
//! Input 1: a normalised mosaic (after `black_level`, 1.0 = white),
//! preferably before white balance; a white-balanced one works too (the
//! model is scaled by the applied gains). Optional input 2: a
//! `noise_estimate` value whose model (in the mosaic's units) is used.
//! Without it the model is the frame's NoiseProfile (DNG tag / sidecar,
//! scaled by any applied white balance), else it is estimated on the frame
//! with [`crate::noise::raw_estimator`] as `noise_estimate` does. The
//! sigma map of a noise-estimate input is not used: the model gives the
//! noise at every pixel.
//!
//! Output: the mosaic with the same geometry, phase and metadata except
//! the NoiseProfile (`profile_out`): downstream noise-aware stages
//! (`demosaic_denoise_learned`, `noise_estimate` with `source: profile`)
//! read it as the noise of the mosaic they receive, which after this stage
//! is far lower than the sensor's. By default (`residual`) the profile is
//! replaced by the sensor model scaled by the mean residual variance factor
//! of the non-local means, r² = mean over pixels of Σw²/(Σw)² (the variance
//! left of unit noise averaged with those weights, neglecting the weights'
//! dependence on the noise), in the raw's pre-white-balance units as the
//! tag is. `clear` removes it; `keep` leaves the sensor model.
//!
//! A frame whose model has no noise in some colour (a = b = 0) passes
//! through unchanged. Odd last rows/columns (outside whole 2x2 blocks) pass
//! through unchanged.

use std::sync::Arc;

use rayon::prelude::*;
use serde::Deserialize;

use super::{check_range, mosaic_and_optional_noise, parse_params, take_mosaic, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{Mosaic, MosaicScale, Value, ValueDesc};
use crate::noise::anscombe::Vst;
use crate::noise::raw_estimator::{self, EstimatorParams};
use crate::noise::scale_profile;
use crate::raw::{NoiseProfile, RawMeta};

/// What happens to the frame's NoiseProfile metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileOut {
    /// The model actually used, scaled by the residual variance factor.
    #[default]
    Residual,
    /// No profile: downstream stages estimate or assume none.
    Clear,
    /// The sensor's profile unchanged.
    Keep,
}

/// YAML params of `denoise_profiled`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Filter strength, 0..=4 (0 = off, 1 = tuned on the synthetic
    /// evaluation sets): scales the weight bandwidth h.
    pub strength: f32,
    /// Search window radius in half-resolution plane pixels, 1..=12
    /// (a 2r+1 square; cost grows with its area). Default 5 (11x11 plane
    /// pixels = 22x22 photosites); 7 gains ~0.1 dB for twice the time.
    pub search_radius: usize,
    /// Patch radius in half-resolution plane pixels, 1..=4. Default 1
    /// (3x3 per plane, x4 planes = 36 samples per distance), which beat 2
    /// and 3 by 0.3-0.9 dB on the synthetic evaluation.
    pub patch_radius: usize,
    /// The NoiseProfile written into the output metadata.
    pub profile_out: ProfileOut,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            strength: 1.0,
            search_radius: 5,
            patch_radius: 1,
            profile_out: ProfileOut::Residual,
        }
    }
}

/// The compiled `denoise_profiled` op.
#[derive(Debug)]
pub struct DenoiseProfiled {
    p: Params,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("strength", self.strength, 0.0, 4.0)?;
        check_range("search_radius", self.search_radius as f32, 1.0, 12.0)?;
        check_range("patch_radius", self.patch_radius as f32, 1.0, 4.0)?;
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(DenoiseProfiled { p }))
}

/// h at strength 1 (stabilised units; see the module docs).
const H_AT_STRENGTH_1: f32 = 0.95;

/// Output tile of the non-local means, half-resolution pixels.
const TILE_H: usize = 32;
const TILE_W: usize = 256;

/// The noise model in the mosaic's units and where it came from.
fn model(m: &Mosaic, noise: Option<&Value>) -> Result<(NoiseProfile, &'static str)> {
    if let Some(Value::Noise(n)) = noise {
        return Ok((n.profile, "noise input"));
    }
    if let Some(p) = m.meta.noise_profile {
        return Ok((
            match m.wb_applied {
                Some(g) => scale_profile(&p, g),
                None => p,
            },
            "profile",
        ));
    }
    let gains = m.wb_applied.unwrap_or([1.0; 3]);
    let ep = EstimatorParams {
        white: gains,
        quant_var: raw_estimator::quantisation_variance(m.meta.white, m.meta.black.mean(), gains),
        ..EstimatorParams::default()
    };
    let fit = raw_estimator::estimate(&m.data.f32(), m.width, m.height, m.cfa, &ep)?;
    Ok((fit.profile, "estimate"))
}

/// Index `i` reflected into [0, n) (mirror without repeating the edge),
/// clamped for windows wider than the plane.
#[inline]
fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    let j = if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    };
    j.clamp(0, n - 1) as usize
}

/// The four stabilised half-resolution planes, padded by `pad` on every
/// side: `planes[k]` is row-major `(hh + 2·pad) x (hw + 2·pad)`, plane k
/// holding the photosites at (2·py + k/2, 2·px + k%2).
fn pack(m: &Mosaic, vst: &[Vst; 4], pad: usize) -> [Vec<f32>; 4] {
    let (hw, hh) = (m.width / 2, m.height / 2);
    let (pw, ph) = (hw + 2 * pad, hh + 2 * pad);
    let w = m.width;
    let data = m.data.f32();
    std::array::from_fn(|k| {
        let (dy, dx) = (k / 2, k % 2);
        let v = vst[k];
        let mut out = vec![0f32; pw * ph];
        out.par_chunks_mut(pw).enumerate().for_each(|(py, row)| {
            let sy = mirror(py as isize - pad as isize, hh);
            let src = &data[(2 * sy + dy) * w..];
            for (px, o) in row.iter_mut().enumerate() {
                let sx = mirror(px as isize - pad as isize, hw);
                *o = v.forward(src[2 * sx + dx]);
            }
        });
        out
    })
}

/// exp(-t) for t >= 0, to about 1e-4 relative, 0 from `T_CUT` on: a
/// power-of-two split and a degree-4 polynomial in plain arithmetic, so the
/// weight loops vectorise (no table gathers, no branches).
#[inline(always)]
fn exp_neg(t: f32) -> f32 {
    // 2^x with x = -t·log2(e) in [-125, 0]: truncating x - 1/2 toward zero
    // rounds it up, so i = ceil(x - 1/2) and f = x - i lies in (-1/2, 1/2],
    // where the degree-4 Taylor polynomial of 2^f is within 5e-5.
    let x = (-t * std::f32::consts::LOG2_E).max(-125.0);
    let i = (x - 0.5) as i32;
    let f = x - i as f32;
    let p = 1.0
        + f * (std::f32::consts::LN_2 + f * (0.240_226_5 + f * (0.055_504_1 + f * 0.009_618_1)));
    let w = f32::from_bits(((i + 127) as u32) << 23) * p;
    if t < T_CUT {
        w
    } else {
        0.0
    }
}

/// Weights below exp(-T_CUT) are dropped.
const T_CUT: f32 = 12.0;

/// One output tile: rows `y0..y0 + th`, columns `x0..x0 + tw` of the
/// unpadded half-resolution planes.
#[derive(Debug, Clone, Copy)]
struct Tile {
    y0: usize,
    x0: usize,
    th: usize,
    tw: usize,
}

/// The shared inputs of every tile.
struct NlmCtx<'a> {
    /// The four padded stabilised planes (row stride `pw`, padding `pad`).
    planes: &'a [Vec<f32>; 4],
    pw: usize,
    pad: usize,
    /// Search and patch radius.
    s: usize,
    p: usize,
    /// 1 / h².
    inv_h2: f32,
}

/// Non-local means of one tile; see [`nlm_tile_body`].
fn nlm_tile(cx: &NlmCtx, t: Tile) -> ([Vec<f32>; 4], f64) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { nlm_tile_avx2(cx, t) };
    }
    nlm_tile_body(cx, t)
}

/// [`nlm_tile_body`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn nlm_tile_avx2(cx: &NlmCtx, t: Tile) -> ([Vec<f32>; 4], f64) {
    nlm_tile_body(cx, t)
}

/// Non-local means of one output tile. Returns the 4 denoised planes of
/// the tile (row-major th x tw each, stabilised units) and Σ over its
/// pixels of Σw²/(Σw)². Every offset of the search window is one pass:
/// squared differences summed over the planes, box sums over the patch
/// (vertical running column sums, horizontal running row sums), weights,
/// accumulation.
#[inline(always)]
fn nlm_tile_body(cx: &NlmCtx, t: Tile) -> ([Vec<f32>; 4], f64) {
    let (planes, pw, pad, s, p) = (cx.planes, cx.pw, cx.pad, cx.s, cx.p);
    let Tile { y0, x0, th, tw } = t;
    let n = th * tw;
    let mut acc: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0f32; n]);
    let mut sw = vec![0f32; n];
    let mut sw2 = vec![0f32; n];
    let mut wmax = vec![0f32; n];
    let (dw, dh) = (tw + 2 * p, th + 2 * p);
    let mut diff = vec![0f32; dw * dh];
    let mut colsum = vec![0f32; dw];
    let mut wrow = vec![0f32; tw];
    let inv_n = 1.0 / (4 * (2 * p + 1) * (2 * p + 1)) as f32;
    let inv_h2 = cx.inv_h2;
    // Padded coordinates of the diff region's top-left sample.
    let (ry, rx) = (y0 + pad - p, x0 + pad - p);
    let si = s as isize;
    for dy in -si..=si {
        for dx in -si..=si {
            if dy == 0 && dx == 0 {
                continue;
            }
            // Squared differences summed over the four planes.
            diff.fill(0.0);
            for pl in planes {
                for j in 0..dh {
                    let a = &pl[(ry + j) * pw + rx..][..dw];
                    let q = ((ry + j) as isize + dy) as usize * pw + (rx as isize + dx) as usize;
                    let b = &pl[q..][..dw];
                    for ((d, &u), &v) in diff[j * dw..][..dw].iter_mut().zip(a).zip(b) {
                        let e = u - v;
                        *d += e * e;
                    }
                }
            }
            colsum.fill(0.0);
            for j in 0..=2 * p {
                for (c, &d) in colsum.iter_mut().zip(&diff[j * dw..][..dw]) {
                    *c += d;
                }
            }
            for r in 0..th {
                if r > 0 {
                    let add = &diff[(r + 2 * p) * dw..][..dw];
                    let sub = &diff[(r - 1) * dw..][..dw];
                    for ((c, &a), &b) in colsum.iter_mut().zip(add).zip(sub) {
                        *c += a - b;
                    }
                }
                // Patch distances of this row (running sums), then weights.
                let mut run: f32 = colsum[..=2 * p].iter().sum();
                for (i, o) in wrow.iter_mut().enumerate() {
                    *o = run;
                    if i + 1 < tw {
                        run += colsum[i + 2 * p + 1] - colsum[i];
                    }
                }
                for w in wrow.iter_mut() {
                    *w = exp_neg((*w * inv_n - 2.0).max(0.0) * inv_h2);
                }
                let o = r * tw;
                for ((a, b), (m, &w)) in sw[o..o + tw]
                    .iter_mut()
                    .zip(&mut sw2[o..o + tw])
                    .zip(wmax[o..o + tw].iter_mut().zip(&wrow))
                {
                    *a += w;
                    *b += w * w;
                    *m = m.max(w);
                }
                let q = ((y0 + r + pad) as isize + dy) as usize * pw
                    + ((x0 + pad) as isize + dx) as usize;
                for (ac, pl) in acc.iter_mut().zip(planes) {
                    for ((a, &v), &w) in ac[o..o + tw].iter_mut().zip(&pl[q..q + tw]).zip(&wrow) {
                        *a += w * v;
                    }
                }
            }
        }
    }
    // The centre pixel weighs as its most similar neighbour.
    let mut resid = 0f64;
    for r in 0..th {
        let crow = (y0 + r + pad) * pw + x0 + pad;
        for i in 0..tw {
            let k = r * tw + i;
            let wc = if wmax[k] > 0.0 { wmax[k] } else { 1.0 };
            let tot = sw[k] + wc;
            for c in 0..4 {
                acc[c][k] = (acc[c][k] + wc * planes[c][crow + i]) / tot;
            }
            resid += ((sw2[k] + wc * wc) / (tot * tot)) as f64;
        }
    }
    (acc, resid)
}

/// Denoises the full 2x2 blocks of `m` in place with the model `prof` (in
/// the mosaic's units). Returns the mean residual variance factor r², or
/// `None` when the model has no noise in some colour (nothing done).
fn denoise(m: &mut Mosaic, prof: &NoiseProfile, p: &Params) -> Option<f64> {
    let layout = m.cfa.layout();
    let vst: [Vst; 4] = {
        let v: Vec<Vst> = layout
            .iter()
            .filter_map(|&c| Vst::for_color(prof, c))
            .collect();
        v.try_into().ok()?
    };
    let (hw, hh) = (m.width / 2, m.height / 2);
    if hw == 0 || hh == 0 || p.strength <= 0.0 {
        return Some(1.0);
    }
    let (s, pr) = (p.search_radius, p.patch_radius);
    let pad = s + pr;
    let planes = pack(m, &vst, pad);
    let pw = hw + 2 * pad;
    let h = H_AT_STRENGTH_1 * p.strength;
    let cx = NlmCtx {
        planes: &planes,
        pw,
        pad,
        s,
        p: pr,
        inv_h2: 1.0 / (h * h),
    };
    let tiles: Vec<Tile> = (0..hh)
        .step_by(TILE_H)
        .flat_map(|y0| {
            (0..hw).step_by(TILE_W).map(move |x0| Tile {
                y0,
                x0,
                th: TILE_H.min(hh - y0),
                tw: TILE_W.min(hw - x0),
            })
        })
        .collect();
    let results: Vec<([Vec<f32>; 4], f64)> = tiles.par_iter().map(|&t| nlm_tile(&cx, t)).collect();
    drop(planes);
    let w = m.width;
    let data = m.data.f32_mut();
    let mut resid = 0f64;
    for (&Tile { y0, x0, th, tw }, (out, r)) in tiles.iter().zip(&results) {
        resid += r;
        for (k, plane) in out.iter().enumerate() {
            let (dy, dx) = (k / 2, k % 2);
            let v = vst[k];
            for r in 0..th {
                let row = &mut data[(2 * (y0 + r) + dy) * w..];
                for (i, &d) in plane[r * tw..][..tw].iter().enumerate() {
                    row[2 * (x0 + i) + dx] = v.inverse(d);
                }
            }
        }
    }
    Some(resid / (hw * hh) as f64)
}

/// `meta` with its NoiseProfile replaced.
fn with_profile(meta: &RawMeta, p: Option<NoiseProfile>) -> Arc<RawMeta> {
    let mut m = meta.clone();
    m.noise_profile = p;
    Arc::new(m)
}

impl Stage for DenoiseProfiled {
    fn op(&self) -> &'static str {
        "denoise_profiled"
    }

    fn arity(&self) -> (usize, usize) {
        (1, 2)
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = mosaic_and_optional_noise(inputs)?;
        Ok(d)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut it = inputs.into_iter();
        let first = it.next().ok_or_else(|| Error::invalid("no input"))?;
        let noise = it.next();
        let mut m = take_mosaic(first)?;
        if m.scale != MosaicScale::Normalized {
            return Err(Error::invalid(
                "expects a normalised mosaic: put black_level before denoise_profiled",
            ));
        }
        if m.data.len() != m.width.saturating_mul(m.height) {
            return Err(Error::invalid(format!(
                "mosaic buffer holds {} samples, expected {}x{}",
                m.data.len(),
                m.width,
                m.height
            )));
        }
        if m.data.f32_mut().par_iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "denoise_profiled: the mosaic holds NaN or infinite samples",
            ));
        }
        let (prof, _from) = model(&m, noise.as_ref())?;
        let r2 = denoise(&mut m, &prof, &self.p);
        let out_profile = match (self.p.profile_out, r2) {
            (ProfileOut::Keep, _) => m.meta.noise_profile,
            (ProfileOut::Clear, _) => None,
            (ProfileOut::Residual, None) => m.meta.noise_profile,
            (ProfileOut::Residual, Some(r2)) => {
                // Back to the raw's pre-white-balance units: x = x'/g gives
                // a = a'/g, b = b'/g².
                let g = m.wb_applied.unwrap_or([1.0; 3]).map(|g| g as f64);
                Some(NoiseProfile {
                    a: [0, 1, 2].map(|c| prof.a[c] * r2 / g[c]),
                    b: [0, 1, 2].map(|c| prof.b[c] * r2 / (g[c] * g[c])),
                })
            }
        };
        if out_profile != m.meta.noise_profile {
            m.meta = with_profile(&m.meta, out_profile);
        }
        Ok(Value::Mosaic(m.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::CfaPattern;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal, Poisson};

    /// A clean test scene on the normalised signal: flat areas at several
    /// levels (dark to bright), a ramp and sharp vertical/diagonal edges,
    /// with per-colour scales so the CFA planes differ as in a raw.
    fn scene(w: usize, h: usize, cfa: CfaPattern) -> Vec<f32> {
        let scale = [0.5f32, 1.0, 0.7];
        (0..w * h)
            .map(|i| {
                let (y, x) = (i / w, i % w);
                let base = if x < w / 4 {
                    [0.02f32, 0.1, 0.3][(y * 3 / h).min(2)]
                } else if x < w / 2 {
                    0.05 + 0.6 * y as f32 / h as f32
                } else if (x + y) % 64 < 32 {
                    0.6
                } else {
                    0.15
                };
                base * scale[cfa.color_at(y, x)]
            })
            .collect()
    }

    fn noisy(clean: &[f32], a: f64, b: f64, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let g = Normal::new(0.0, 1.0).unwrap();
        clean
            .iter()
            .map(|&x| {
                let p = Poisson::new((x as f64 / a).max(1e-9)).unwrap();
                (p.sample(&mut rng) * a + b.sqrt() * g.sample(&mut rng)) as f32
            })
            .collect()
    }

    fn mosaic(
        data: Vec<f32>,
        w: usize,
        h: usize,
        cfa: CfaPattern,
        prof: Option<NoiseProfile>,
    ) -> Mosaic {
        let mut meta = RawMeta::bayer("test", w, h, cfa);
        meta.noise_profile = prof;
        Mosaic::normalized(w, h, cfa, data, meta)
    }

    fn run(m: Mosaic, params: serde_json::Value) -> Mosaic {
        let st = compile(params).unwrap();
        let ctx = RunCtx { stage_id: "dn" };
        match st.run_cpu(&ctx, vec![Value::Mosaic(m.into())]).unwrap() {
            Value::Mosaic(m) => Arc::try_unwrap(m).unwrap(),
            _ => panic!("not a mosaic"),
        }
    }

    fn rms(a: &[f32], b: &[f32]) -> f64 {
        (a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            / a.len() as f64)
            .sqrt()
    }

    #[test]
    fn reduces_noise_and_keeps_means_on_every_phase() {
        let (w, h) = (192, 144);
        let (a, b) = (2e-3, 4e-6);
        let prof = NoiseProfile {
            a: [a; 3],
            b: [b; 3],
        };
        for (i, cfa) in CfaPattern::ALL.into_iter().enumerate() {
            let clean = scene(w, h, cfa);
            let noisy = noisy(&clean, a, b, 11 + i as u64);
            let out = run(
                mosaic(noisy.clone(), w, h, cfa, Some(prof)),
                serde_json::Value::Null,
            );
            let (before, after) = (rms(&noisy, &clean), rms(&out.data.f32(), &clean));
            assert!(after < before / 2.5, "{cfa:?}: rms {before} -> {after}");
            // The residual profile is lower than the sensor's.
            let rp = out.meta.noise_profile.unwrap();
            assert!(rp.a[1] < a / 4.0 && rp.a[1] > 0.0, "{rp:?}");
        }
    }

    #[test]
    fn fast_exp_matches() {
        for i in 0..2000 {
            let t = i as f32 * 0.01;
            let (got, want) = (exp_neg(t), (-t).exp());
            if t < T_CUT {
                assert!((got - want).abs() <= 1e-4 * want, "t {t}: {got} vs {want}");
            } else {
                assert_eq!(got, 0.0);
            }
        }
    }

    #[test]
    fn flat_means_preserved_at_low_counts() {
        // 512x512 flat frames at 3..300 expected photo-electrons: the mean
        // after denoising stays within 0.5 % of the truth (sampling error of
        // the mean here: <= 0.26 %), which needs the exact unbiased inverse
        // at the low counts (the algebraic inverse is about 9 % low at 3 counts).
        let (w, h) = (512, 512);
        let (a, b) = (2e-3, 4e-6);
        let prof = NoiseProfile {
            a: [a; 3],
            b: [b; 3],
        };
        for (i, counts) in [3.0, 10.0, 50.0, 300.0].into_iter().enumerate() {
            let x = (counts * a) as f32;
            let clean = vec![x; w * h];
            let data = noisy(&clean, a, b, 40 + i as u64);
            let out = run(
                mosaic(data.clone(), w, h, CfaPattern::Rggb, Some(prof)),
                serde_json::Value::Null,
            );
            let mean = out.data.f32().iter().map(|&v| v as f64).sum::<f64>() / (w * h) as f64;
            let rel = mean / x as f64 - 1.0;
            assert!(rel.abs() < 0.005, "{counts} counts: mean off by {rel}");
            assert!(rms(&out.data.f32(), &clean) < rms(&data, &clean) / 3.0);
        }
    }

    #[test]
    fn estimates_when_no_profile_and_noise_input_wins() {
        let (w, h) = (160, 160);
        let (a, b) = (3e-3, 1e-5);
        let cfa = CfaPattern::Grbg;
        let clean = scene(w, h, cfa);
        let noisy = noisy(&clean, a, b, 5);
        let before = rms(&noisy, &clean);
        let est = run(
            mosaic(noisy.clone(), w, h, cfa, None),
            serde_json::json!({"profile_out": "clear"}),
        );
        assert!(rms(&est.data.f32(), &clean) < before / 2.0);
        assert!(est.meta.noise_profile.is_none());
        // A noise input with a tiny model barely changes the frame.
        let tiny = crate::frame::NoiseEstimate {
            profile: NoiseProfile {
                a: [1e-7; 3],
                b: [1e-10; 3],
            },
            source: "test".into(),
            tile: 0,
            map_width: 0,
            map_height: 0,
            sigma_map: vec![],
        };
        let st = compile(serde_json::Value::Null).unwrap();
        let ctx = RunCtx { stage_id: "dn" };
        let out = st
            .run_cpu(
                &ctx,
                vec![
                    Value::Mosaic(mosaic(noisy.clone(), w, h, cfa, None).into()),
                    Value::Noise(Arc::new(tiny)),
                ],
            )
            .unwrap();
        let Value::Mosaic(out) = out else { panic!() };
        assert!(rms(&out.data.f32(), &noisy) < before / 10.0);
    }

    #[test]
    fn odd_sizes_noise_free_and_bad_input() {
        // Odd edges pass through; a tiny frame works.
        for (w, h) in [(7, 5), (33, 21), (2, 2), (1, 1)] {
            let cfa = CfaPattern::Rggb;
            let clean = scene(w, h, cfa);
            let data = noisy(&clean, 1e-3, 1e-6, 1);
            let prof = NoiseProfile {
                a: [1e-3; 3],
                b: [1e-6; 3],
            };
            let out = run(
                mosaic(data.clone(), w, h, cfa, Some(prof)),
                serde_json::Value::Null,
            );
            assert_eq!(out.data.len(), w * h);
            assert!(out.data.f32().iter().all(|v| v.is_finite()));
            if w % 2 == 1 {
                for y in 0..h {
                    assert_eq!(out.data.f32()[y * w + w - 1], data[y * w + w - 1]);
                }
            }
        }
        // A noise-free model: unchanged.
        let (w, h) = (32, 32);
        let clean = scene(w, h, CfaPattern::Rggb);
        let zero = NoiseProfile {
            a: [0.0; 3],
            b: [0.0; 3],
        };
        let out = run(
            mosaic(clean.clone(), w, h, CfaPattern::Rggb, Some(zero)),
            serde_json::Value::Null,
        );
        assert_eq!(*out.data.f32(), *clean);
        // NaN, a DN-scale mosaic and bad params are typed errors.
        let st = compile(serde_json::Value::Null).unwrap();
        let ctx = RunCtx { stage_id: "dn" };
        let mut bad = clean.clone();
        bad[3] = f32::NAN;
        let m = mosaic(bad, w, h, CfaPattern::Rggb, Some(zero));
        assert!(st.run_cpu(&ctx, vec![Value::Mosaic(m.into())]).is_err());
        let mut m = mosaic(clean, w, h, CfaPattern::Rggb, Some(zero));
        m.scale = MosaicScale::Dn;
        assert!(st.run_cpu(&ctx, vec![Value::Mosaic(m.into())]).is_err());
        for bad in [
            serde_json::json!({"strength": 9.0}),
            serde_json::json!({"search_radius": 0}),
            serde_json::json!({"patch_radius": 7}),
            serde_json::json!({"strenght": 1.0}),
            serde_json::json!({"profile_out": "maybe"}),
        ] {
            assert!(compile(bad).is_err());
        }
    }
}
