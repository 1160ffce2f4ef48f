//! `local_laplacian`: local tone mapping of linear HDR RGB by the local
//! Laplacian filter (Paris, Hasinoff & Kautz 2011, "Local Laplacian
//! Filters: Edge-aware Image Processing with a Laplacian Pyramid"), in its
//! fast form (Aubry, Paris, Hasinoff, Kautz & Durand 2014, "Fast Local
//! Laplacian Filters: Theory and Applications"): the point-wise remapping is
//! sampled at `levels` reference intensities, a Laplacian pyramid is built
//! for each remapped image, and every output coefficient is interpolated
//! between the two references that bracket the input's Gaussian-pyramid
//! value at that pixel and level.
//!
//! Signal: `l = log2(max(Y, 2^-16)) + exposure` with `Y` the Rec.709
//! luminance of the linear input (units: stops, 0 = display white before
//! compression). Remapping around a reference `g` (Paris et al. eq. 3-5):
//! differences `|l - g| <= sigma_r` are details, raised to the power
//! `detail` (below 1 boosts them; blended with the identity near zero so
//! noise is not amplified without bound); larger differences are edges,
//! scaled by `contrast`. The pyramid residual (the coarsest level) is
//! compressed by `contrast` around middle grey (log2 0.18), so the global
//! range shrinks as well as the edges. Output colour: the input RGB scaled
//! by `2^l_out / Y`, clamped to [0, 1]: display-referred linear RGB in the
//! input's primaries, to be followed by `srgb_encode`.
//!
//! This is the slow, high-quality teacher that `hdrnet` learns to
//! reproduce; it is also a stage in its own right. Rayon-parallel over rows
//! in every pyramid pass.

use crate::stages::Validate;
use rayon::prelude::*;
use serde::Deserialize;

use super::{check_range, one_input, parse_params, take_image, RunCtx, Stage, ROWS_PER_TASK};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Value, ValueDesc, ValueKind};

/// Smallest luminance considered (linear units, 2^-16): log2 of black.
pub const MIN_LUMINANCE: f32 = 1.0 / 65536.0;
/// Middle grey (linear), the fixed point of the residual compression.
pub const MIDDLE_GREY: f32 = 0.18;
/// Entries of the detail-curve table over [0, 1] (relative difference).
const DETAIL_LUT: usize = 1024;

/// YAML params of `local_laplacian`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Detail exponent alpha: < 1 enhances local detail, 1 keeps it, > 1
    /// smooths it. Range [0.1, 4].
    pub detail: f32,
    /// Range compression beta for edges and the residual: 1 keeps the
    /// range, 0.5 halves it (in stops). Range [0, 1].
    pub contrast: f32,
    /// Exposure offset in EV applied before the filter. Range [-10, 10].
    pub exposure: f32,
    /// Detail/edge threshold sigma_r in stops (log2 units). Range [0.05, 8].
    pub sigma_r: f32,
    /// Number of sampled reference intensities (Aubry's K). Range [2, 64].
    pub levels: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            detail: 0.6,
            contrast: 0.5,
            exposure: 0.0,
            sigma_r: 1.0,
            levels: 10,
        }
    }
}

impl crate::stages::Validate for Params {
    /// Checks every range; the message names the field.
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("detail", self.detail, 0.1, 4.0)?;
        check_range("contrast", self.contrast, 0.0, 1.0)?;
        check_range("exposure", self.exposure, -10.0, 10.0)?;
        check_range("sigma_r", self.sigma_r, 0.05, 8.0)?;
        if !(2..=64).contains(&self.levels) {
            return Err(crate::stages::CompileError::params(format!(
                "levels = {} is outside [2, 64]",
                self.levels
            )));
        }
        Ok(())
    }
}

/// The compiled `local_laplacian` op.
#[derive(Debug)]
pub struct LocalLaplacian {
    p: Params,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(LocalLaplacian { p }))
}

impl LocalLaplacian {
    /// A compiled op from checked params.
    pub fn new(p: Params) -> std::result::Result<Self, crate::stages::CompileError> {
        p.validate()?;
        Ok(LocalLaplacian { p })
    }
}

impl Stage for LocalLaplacian {
    fn op(&self) -> &'static str {
        "local_laplacian"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = one_input(inputs, ValueKind::Image)?;
        match d.space {
            Some(ColorSpace::Srgb) => Err("expects linear RGB, got an sRGB-encoded image".into()),
            s => Ok(ValueDesc::image(
                d.width,
                d.height,
                s.unwrap_or(ColorSpace::LinearSrgb),
            )),
        }
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut img = take_image(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        if img.space == ColorSpace::Srgb {
            return Err(Error::invalid(
                "local_laplacian expects linear RGB, got an sRGB-encoded image",
            ));
        }
        img.data = tone_map(&img.data, img.width, img.height, &self.p)?;
        Ok(Value::Image(img.into()))
    }
}

/// A single-channel row-major plane.
#[derive(Debug, Clone)]
struct Plane {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

/// Burt-Adelson 5-tap binomial kernel [1, 4, 6, 4, 1] / 16.
const K5: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];

/// Blur with [`K5`] and keep every second sample: `(w+1)/2 x (h+1)/2`,
/// edges replicated.
fn downsample(p: &Plane) -> Plane {
    let (w, h) = (p.w, p.h);
    let (w2, h2) = (w.div_ceil(2), h.div_ceil(2));
    // Horizontal pass on every source row -> w2 columns.
    let mut tmp = vec![0f32; w2 * h];
    tmp.par_chunks_mut(w2 * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(ci, chunk)| {
            for (ri, out) in chunk.chunks_mut(w2).enumerate() {
                let y = ci * ROWS_PER_TASK + ri;
                let row = &p.data[y * w..(y + 1) * w];
                for (i, o) in out.iter_mut().enumerate() {
                    let c = 2 * i as isize;
                    let mut acc = 0.0;
                    for (t, k) in K5.iter().enumerate() {
                        let x = (c + t as isize - 2).clamp(0, w as isize - 1) as usize;
                        acc += k * row[x];
                    }
                    *o = acc;
                }
            }
        });
    // Vertical pass on every second row.
    let mut out = vec![0f32; w2 * h2];
    out.par_chunks_mut(w2).enumerate().for_each(|(i, o)| {
        let c = 2 * i as isize;
        o.fill(0.0);
        for (t, k) in K5.iter().enumerate() {
            let y = (c + t as isize - 2).clamp(0, h as isize - 1) as usize;
            let src = &tmp[y * w2..(y + 1) * w2];
            o.iter_mut().zip(src).for_each(|(o, s)| *o += k * s);
        }
    });
    Plane {
        w: w2,
        h: h2,
        data: out,
    }
}

/// Expands `p` to `w x h` (the size it was downsampled from): zero-insertion
/// followed by 4·[`K5`], i.e. even samples `(c[i-1] + 6 c[i] + c[i+1]) / 8`,
/// odd samples `(c[i] + c[i+1]) / 2`, edges replicated.
fn upsample(p: &Plane, w: usize, h: usize) -> Plane {
    let (sw, sh) = (p.w, p.h);
    let at = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    // Horizontal: sh rows of w samples.
    let mut tmp = vec![0f32; w * sh];
    tmp.par_chunks_mut(w * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(ci, chunk)| {
            for (ri, out) in chunk.chunks_mut(w).enumerate() {
                let y = ci * ROWS_PER_TASK + ri;
                let row = &p.data[y * sw..(y + 1) * sw];
                for (x, o) in out.iter_mut().enumerate() {
                    let i = (x / 2) as isize;
                    *o = if x % 2 == 0 {
                        (row[at(i - 1, sw)] + 6.0 * row[at(i, sw)] + row[at(i + 1, sw)]) * 0.125
                    } else {
                        (row[at(i, sw)] + row[at(i + 1, sw)]) * 0.5
                    };
                }
            }
        });
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, o)| {
        let i = (y / 2) as isize;
        let r = |j: isize| &tmp[at(j, sh) * w..(at(j, sh) + 1) * w];
        if y % 2 == 0 {
            let (a, b, c) = (r(i - 1), r(i), r(i + 1));
            for x in 0..w {
                o[x] = (a[x] + 6.0 * b[x] + c[x]) * 0.125;
            }
        } else {
            let (a, b) = (r(i), r(i + 1));
            for x in 0..w {
                o[x] = (a[x] + b[x]) * 0.5;
            }
        }
    });
    Plane { w, h, data: out }
}

/// Gaussian pyramid with `n` levels (level 0 = `base`).
fn gaussian_pyramid(base: Plane, n: usize) -> Vec<Plane> {
    let mut pyr = vec![base];
    while pyr.len() < n {
        let next = downsample(&pyr[pyr.len() - 1]);
        pyr.push(next);
    }
    pyr
}

/// Pyramid depth for a `w x h` image: the coarsest level is about 8-16
/// pixels on its short side (at least one level).
pub fn pyramid_levels(w: usize, h: usize) -> usize {
    let m = w.min(h).max(1) as f64;
    (m.log2().floor() as isize - 2).clamp(1, 12) as usize
}

/// Detail curve `f(x)` on relative differences `x = |d| / sigma_r` in
/// [0, 1]: `x^alpha`, blended towards `x` below 0.01·sigma_r-equivalent
/// (Paris et al. sec. 5.1) so the slope at zero stays finite.
fn detail_table(alpha: f32, sigma_r: f32) -> Vec<f32> {
    (0..=DETAIL_LUT)
        .map(|i| {
            let x = i as f32 / DETAIL_LUT as f32;
            let a = x * sigma_r;
            // smoothstep(0.01, 0.02, |d|) in stops
            let t = ((a - 0.01) / 0.01).clamp(0.0, 1.0);
            let tau = t * t * (3.0 - 2.0 * t);
            tau * x.powf(alpha) + (1.0 - tau) * x
        })
        .collect()
}

/// The point-wise remapping `r(l; g)` of Paris et al.
#[inline(always)]
fn remap(l: f32, g: f32, sigma_r: f32, beta: f32, lut: &[f32]) -> f32 {
    let d = l - g;
    let a = d.abs();
    let s = if d < 0.0 { -1.0 } else { 1.0 };
    if a <= sigma_r {
        let t = a / sigma_r * DETAIL_LUT as f32;
        let i = (t as usize).min(DETAIL_LUT - 1);
        let f = t - i as f32;
        let v = lut[i] + f * (lut[i + 1] - lut[i]);
        g + s * sigma_r * v
    } else {
        g + s * (beta * (a - sigma_r) + sigma_r)
    }
}

/// Tone-maps a planar (CHW, 3 planes, `w x h`) linear RGB image; returns
/// display-referred linear RGB in [0, 1], same layout. Non-finite or
/// negative inputs count as black.
pub fn tone_map(rgb: &[f32], w: usize, h: usize, p: &Params) -> Result<Vec<f32>> {
    let n = w
        .checked_mul(h)
        .ok_or_else(|| Error::invalid("local_laplacian: image size overflows"))?;
    if n == 0 || rgb.len() != 3 * n {
        return Err(Error::invalid(format!(
            "local_laplacian: {w}x{h} image needs {} values, got {}",
            3 * n,
            rgb.len()
        )));
    }
    let (r, gb) = rgb.split_at(n);
    let (g, b) = gb.split_at(n);
    let clean = |v: f32| if v.is_finite() { v.max(0.0) } else { 0.0 };
    // Log luminance (stops, exposure applied).
    let mut lum = vec![0f32; n];
    lum.par_iter_mut().enumerate().for_each(|(i, o)| {
        let y = 0.2126 * clean(r[i]) + 0.7152 * clean(g[i]) + 0.0722 * clean(b[i]);
        *o = y.max(MIN_LUMINANCE).log2() + p.exposure;
    });
    let nlev = pyramid_levels(w, h);
    let (lo, hi) = lum
        .par_iter()
        .fold(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |(a, b), &v| (a.min(v), b.max(v)),
        )
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |(a, b), (c, d)| (a.min(c), b.max(d)),
        );
    let gauss = gaussian_pyramid(
        Plane {
            w,
            h,
            data: lum.clone(),
        },
        nlev,
    );
    let lut = detail_table(p.detail, p.sigma_r);
    let k = p.levels;
    let span = (hi - lo).max(1e-6);
    let step = span / (k - 1) as f32;
    // Output Laplacian levels 0..nlev-1 (the last one is the residual).
    let mut out: Vec<Plane> = gauss
        .iter()
        .map(|g| Plane {
            w: g.w,
            h: g.h,
            data: vec![0.0; g.data.len()],
        })
        .collect();
    if nlev > 1 && hi - lo > 1e-6 {
        for ki in 0..k {
            let gref = lo + ki as f32 * step;
            let mut remapped = vec![0f32; n];
            remapped
                .par_iter_mut()
                .zip(lum.par_iter())
                .for_each(|(o, &l)| *o = remap(l, gref, p.sigma_r, p.contrast, &lut));
            let rp = gaussian_pyramid(
                Plane {
                    w,
                    h,
                    data: remapped,
                },
                nlev,
            );
            for lev in 0..nlev - 1 {
                let up = upsample(&rp[lev + 1], rp[lev].w, rp[lev].h);
                let gin = &gauss[lev].data;
                let fine = &rp[lev].data;
                out[lev].data.par_iter_mut().enumerate().for_each(|(i, o)| {
                    // Hat weight of reference ki at this pixel's value.
                    let t = (gin[i] - lo) / step;
                    let wgt = (1.0 - (t - ki as f32).abs()).max(0.0);
                    if wgt > 0.0 {
                        *o += wgt * (fine[i] - up.data[i]);
                    }
                });
            }
        }
    }
    // Residual: compressed around middle grey.
    let anchor = MIDDLE_GREY.log2();
    let last = nlev - 1;
    let res = &gauss[last].data;
    out[last]
        .data
        .iter_mut()
        .zip(res)
        .for_each(|(o, &v)| *o = anchor + p.contrast * (v - anchor));
    // Collapse.
    let mut acc = out.pop().ok_or_else(|| Error::invalid("empty pyramid"))?;
    while let Some(mut lev) = out.pop() {
        let up = upsample(&acc, lev.w, lev.h);
        lev.data
            .par_iter_mut()
            .zip(up.data.par_iter())
            .for_each(|(o, u)| *o += u);
        acc = lev;
    }
    // Colour: scale the input by the luminance ratio.
    let mut res = vec![0f32; 3 * n];
    let (or, ogb) = res.split_at_mut(n);
    let (og, ob) = ogb.split_at_mut(n);
    or.par_chunks_mut(w)
        .zip(og.par_chunks_mut(w))
        .zip(ob.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, ((rr, gg), bb))| {
            for x in 0..w {
                let i = y * w + x;
                let (cr, cg, cb) = (clean(r[i]), clean(g[i]), clean(b[i]));
                let yin = (0.2126 * cr + 0.7152 * cg + 0.0722 * cb).max(MIN_LUMINANCE);
                let yout = acc.data[i].exp2();
                let s = if yout.is_finite() { yout / yin } else { 0.0 };
                rr[x] = (cr * s).clamp(0.0, 1.0);
                gg[x] = (cg * s).clamp(0.0, 1.0);
                bb[x] = (cb * s).clamp(0.0, 1.0);
            }
        });
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(w: usize, h: usize, v: [f32; 3]) -> Vec<f32> {
        let n = w * h;
        (0..3 * n).map(|i| v[i / n]).collect()
    }

    /// A linear scene with 6 stops of range and fine texture.
    fn scene(w: usize, h: usize) -> Vec<f32> {
        let n = w * h;
        let mut v = vec![0f32; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let base = (2f32).powf(-6.0 + 6.0 * x as f32 / w as f32);
                let tex = 1.0 + 0.2 * (((x * 7 + y * 3) % 5) as f32 - 2.0) / 2.0;
                let i = y * w + x;
                v[i] = base * tex;
                v[n + i] = base * tex * 0.9;
                v[2 * n + i] = base * 0.8;
            }
        }
        v
    }

    #[test]
    fn pyramid_round_trip_is_exact() {
        // Laplacian pyramid of a random plane collapses to the plane.
        let (w, h) = (37, 23);
        let data: Vec<f32> = (0..w * h)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0)
            .collect();
        let g = gaussian_pyramid(
            Plane {
                w,
                h,
                data: data.clone(),
            },
            4,
        );
        let mut acc = g[3].clone();
        for lev in (0..3).rev() {
            let up = upsample(&acc, g[lev].w, g[lev].h);
            let up2 = upsample(&g[lev + 1], g[lev].w, g[lev].h);
            let mut d = g[lev].clone();
            for i in 0..d.data.len() {
                d.data[i] = g[lev].data[i] - up2.data[i] + up.data[i];
            }
            acc = d;
        }
        for (a, b) in acc.data.iter().zip(&data) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let (w, h) = (64, 48);
        let p = Params::default();
        let out = tone_map(&constant(w, h, [0.3, 0.3, 0.3]), w, h, &p).unwrap();
        // Residual compression only: log2 y' = a + beta (log2 0.3 - a).
        let a = MIDDLE_GREY.log2();
        let want = (a + p.contrast * (0.3f32.log2() - a)).exp2();
        for v in &out {
            assert!((v - want).abs() < 1e-4, "{v} vs {want}");
        }
    }

    #[test]
    fn black_white_tiny_are_finite() {
        let p = Params::default();
        for (w, h, v) in [
            (16, 16, [0.0, 0.0, 0.0]),
            (16, 16, [1.0, 1.0, 1.0]),
            (16, 16, [50.0, 50.0, 50.0]),
            (1, 1, [0.5, 0.2, 0.1]),
            (3, 2, [0.5, 0.2, 0.1]),
        ] {
            let out = tone_map(&constant(w, h, v), w, h, &p).unwrap();
            assert!(out.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
        }
        let black = tone_map(&constant(8, 8, [0.0; 3]), 8, 8, &p).unwrap();
        assert!(black.iter().all(|&x| x == 0.0));
        let mut nan = scene(20, 10);
        nan[5] = f32::NAN;
        nan[7] = f32::INFINITY;
        let out = tone_map(&nan, 20, 10, &p).unwrap();
        assert!(out.iter().all(|x| x.is_finite()));
        assert!(tone_map(&[0.0; 5], 2, 2, &p).is_err());
    }

    #[test]
    fn detail_param_changes_output_and_contrast_compresses() {
        let (w, h) = (96, 64);
        let img = scene(w, h);
        let a = tone_map(&img, w, h, &Params::default()).unwrap();
        let b = tone_map(
            &img,
            w,
            h,
            &Params {
                detail: 1.0,
                ..Params::default()
            },
        )
        .unwrap();
        let diff: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
        assert!(diff > 1e-3, "detail had no effect: {diff}");
        // Range of the G plane in stops shrinks with contrast 0.5.
        let n = w * h;
        let range = |v: &[f32]| {
            let (lo, hi) = v[n..2 * n]
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            (hi / lo.max(1e-9)).log2()
        };
        assert!(
            range(&b) < 0.75 * range(&img),
            "{} vs {}",
            range(&b),
            range(&img)
        );
        // Identity parameters (no detail change, no compression) keep
        // luminance up to clipping.
        let id = tone_map(
            &img,
            w,
            h,
            &Params {
                detail: 1.0,
                contrast: 1.0,
                ..Params::default()
            },
        )
        .unwrap();
        for (x, y) in id.iter().zip(&img) {
            assert!((x - y.min(1.0)).abs() < 1e-3 * (1.0 + y), "{x} {y}");
        }
    }

    #[test]
    fn params_are_checked() {
        assert!(compile(serde_json::json!({"detail": 0.0})).is_err());
        assert!(compile(serde_json::json!({"levels": 1})).is_err());
        assert!(compile(serde_json::json!({"bogus": 1})).is_err());
        assert!(compile(serde_json::json!({"contrast": 0.7, "exposure": 1.0})).is_ok());
    }
}
