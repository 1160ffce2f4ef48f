//! `sharpen`: unsharp mask on luminance with a noise threshold and halo
//! control (the sharpening block of camera ISPs: Halide camera_pipe,
//! fast-openISP's EEH, libcamera's software ISP).
//!
//! Per pixel: `Y = 0.2126 R + 0.7152 G + 0.0722 B`; `d = Y - gauss(Y,
//! radius)`; details smaller than `threshold` are dropped (soft
//! threshold, `d' = sign(d) max(|d| - threshold, 0)`); `Y' = Y + amount
//! d'`, clamped to the 3x3 range of `Y` widened by `overshoot` (no bright
//! or dark halos beyond that); the change `Y' - Y` is added to R, G and B
//! alike so hue and the colour differences are unchanged.
//!
//! Input and output: planar RGB, same size and colour space; place it
//! after `srgb_encode` to sharpen perceptually (units of `threshold` and
//! `overshoot` are those of the image values, 1.0 = white). Row strips
//! with halos run in parallel.

use rayon::prelude::*;
use serde::Deserialize;

use super::{check_range, one_input, parse_params, take_image, RunCtx, Stage};
use crate::backend::cpu::reflect;
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc, ValueKind};

/// YAML params of `sharpen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Gain on the detail layer, 0..=5.
    pub amount: f32,
    /// Gaussian sigma of the blur, pixels, 0.3..=5.
    pub radius: f32,
    /// Details below this (image units) are left alone, 0..=0.5.
    pub threshold: f32,
    /// Largest overshoot beyond the local 3x3 luminance range, 0..=1.
    pub overshoot: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            amount: 0.6,
            radius: 1.0,
            threshold: 0.005,
            overshoot: 0.02,
        }
    }
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("amount", self.amount, 0.0, 5.0)?;
        check_range("radius", self.radius, 0.3, 5.0)?;
        check_range("threshold", self.threshold, 0.0, 0.5)?;
        check_range("overshoot", self.overshoot, 0.0, 1.0)
    }
}

/// The compiled `sharpen` op: the validated params and the normalised
/// Gaussian taps (`kernel[k]` is the weight at offset `k - radius`).
#[derive(Debug)]
pub struct Sharpen {
    p: Params,
    kernel: Vec<f32>,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let kr = (3.0 * p.radius).ceil() as isize;
    let mut kernel: Vec<f32> = (-kr..=kr)
        .map(|k| (-(k * k) as f32 / (2.0 * p.radius * p.radius)).exp())
        .collect();
    let s: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|v| *v /= s);
    Ok(Box::new(Sharpen { p, kernel }))
}

/// Output rows per rayon task.
const STRIP: usize = 32;

impl Stage for Sharpen {
    fn op(&self) -> &'static str {
        "sharpen"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        one_input(inputs, ValueKind::Image)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("no input"))?;
        let mut img = take_image(v)?;
        let (w, h) = (img.width, img.height);
        if w < 2 || h < 2 || self.p.amount == 0.0 {
            return Ok(Value::Image(img.into()));
        }
        let n = w * h;
        // Luminance of the whole frame (read-only while strips write RGB).
        let mut y_plane = vec![0f32; n];
        {
            let [r, g, b] = img.planes();
            y_plane
                .par_chunks_mut(w * STRIP)
                .enumerate()
                .for_each(|(k, out)| {
                    let o = k * w * STRIP;
                    for (j, v) in out.iter_mut().enumerate() {
                        let i = o + j;
                        *v = 0.2126 * r[i] + 0.7152 * g[i] + 0.0722 * b[i];
                    }
                });
        }
        let yp = &y_plane;
        let kern = &self.kernel;
        let kr = kern.len() / 2;
        let (amount, thr, os) = (self.p.amount, self.p.threshold, self.p.overshoot);
        let [r, g, b] = img.planes_mut();
        r.par_chunks_mut(w * STRIP)
            .zip(g.par_chunks_mut(w * STRIP))
            .zip(b.par_chunks_mut(w * STRIP))
            .enumerate()
            .for_each(|(k, ((r, g), b))| {
                let y0 = k * STRIP;
                let rows = r.len() / w;
                // Horizontal blur of rows y0 - kr ..< y0 + rows + kr.
                let th = rows + 2 * kr;
                let mut hb = vec![0f32; th * w];
                for ty in 0..th {
                    let sy = reflect(y0 as isize + ty as isize - kr as isize, h as isize);
                    let src = &yp[sy * w..(sy + 1) * w];
                    let dst = &mut hb[ty * w..(ty + 1) * w];
                    for (x, d) in dst.iter_mut().enumerate() {
                        let mut acc = 0f32;
                        if x >= kr && x + kr < w {
                            let s = &src[x - kr..x + kr + 1];
                            for (a, c) in s.iter().zip(kern) {
                                acc += a * c;
                            }
                        } else {
                            for (t, c) in kern.iter().enumerate() {
                                let sx = reflect(x as isize + t as isize - kr as isize, w as isize);
                                acc += src[sx] * c;
                            }
                        }
                        *d = acc;
                    }
                }
                let mut blur = vec![0f32; w];
                for oy in 0..rows {
                    let y = y0 + oy;
                    blur.iter_mut().for_each(|v| *v = 0.0);
                    for (t, c) in kern.iter().enumerate() {
                        let src = &hb[(oy + t) * w..(oy + t + 1) * w];
                        for (a, s) in blur.iter_mut().zip(src) {
                            *a += s * c;
                        }
                    }
                    let up = &yp[reflect(y as isize - 1, h as isize) * w..][..w];
                    let mid = &yp[y * w..(y + 1) * w];
                    let dn = &yp[reflect(y as isize + 1, h as isize) * w..][..w];
                    let o = oy * w;
                    for x in 0..w {
                        let (xl, xr) = (x.saturating_sub(1), (x + 1).min(w - 1));
                        let yv = mid[x];
                        let d = yv - blur[x];
                        let dt = d.signum() * (d.abs() - thr).max(0.0);
                        if dt == 0.0 {
                            continue;
                        }
                        let mut lo = yv;
                        let mut hi = yv;
                        for row in [up, mid, dn] {
                            for &v in &row[xl..=xr] {
                                lo = lo.min(v);
                                hi = hi.max(v);
                            }
                        }
                        let ny = (yv + amount * dt).clamp(lo - os, hi + os);
                        let delta = ny - yv;
                        r[o + x] += delta;
                        g[o + x] += delta;
                        b[o + x] += delta;
                    }
                }
            });
        Ok(Value::Image(img.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ColorSpace, Image};
    use crate::raw::{CfaPattern, RawMeta};
    use std::sync::Arc;

    fn image(w: usize, h: usize, f: &dyn Fn(usize, usize) -> [f32; 3]) -> Image {
        let n = w * h;
        let mut data = vec![0f32; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let v = f(x, y);
                for c in 0..3 {
                    data[c * n + y * w + x] = v[c];
                }
            }
        }
        Image {
            width: w,
            height: h,
            data,
            space: ColorSpace::Srgb,
            wb_applied: None,
            meta: Arc::new(RawMeta::bayer("t", w, h, CfaPattern::ALL[0])),
        }
    }

    fn run(p: serde_json::Value, img: Image) -> Image {
        let st = compile(p).unwrap();
        let ctx = RunCtx { stage_id: "sh" };
        match st.run_cpu(&ctx, vec![Value::Image(img.into())]).unwrap() {
            Value::Image(i) => (*i).clone(),
            _ => panic!("not an image"),
        }
    }

    /// A soft vertical edge (a blurred step) from 0.2 to 0.7.
    fn soft_edge(x: usize, _y: usize) -> [f32; 3] {
        let t = 1.0 / (1.0 + (-(x as f32 - 20.5) / 1.5).exp());
        let v = 0.2 + 0.5 * t;
        [v, v * 0.9, v * 0.5]
    }

    #[test]
    fn flat_images_are_unchanged() {
        let img = image(37, 23, &|_, _| [0.4, 0.5, 0.6]);
        let out = run(
            serde_json::json!({ "amount": 2.0, "threshold": 0.0 }),
            img.clone(),
        );
        for (a, b) in img.data.iter().zip(&out.data) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn edges_get_steeper_without_overshooting_the_clamp() {
        let img = image(40, 24, &soft_edge);
        let p = serde_json::json!({ "amount": 2.0, "radius": 1.5, "threshold": 0.0, "overshoot": 0.01 });
        let out = run(p, img.clone());
        let (w, n) = (40, 40 * 24);
        let (a, b) = (&img.data, &out.data);
        let y = 12 * w;
        // Steeper across the edge centre.
        let slope = |d: &[f32]| d[y + 22] - d[y + 19];
        assert!(slope(b) > slope(a) * 1.2, "{} vs {}", slope(b), slope(a));
        // Never more than the overshoot beyond the input's range.
        for (i, &v) in b[..n].iter().enumerate() {
            assert!((0.2 - 0.011..=0.7 + 0.011).contains(&v), "px {i}: {v}");
        }
        // Colour differences are kept.
        for i in 0..n {
            let (d0, d1) = (a[i] - a[n + i], b[i] - b[n + i]);
            assert!((d0 - d1).abs() < 1e-5);
        }
    }

    #[test]
    fn threshold_leaves_fine_noise_alone() {
        let noisy = |x: usize, y: usize| {
            let v = 0.5 + 0.002 * (((x * 7 + y * 3) % 5) as f32 - 2.0);
            [v, v, v]
        };
        let img = image(32, 32, &noisy);
        let out = run(
            serde_json::json!({ "amount": 3.0, "threshold": 0.01 }),
            img.clone(),
        );
        assert_eq!(img.data, out.data);
        let out = run(
            serde_json::json!({ "amount": 3.0, "threshold": 0.0 }),
            img.clone(),
        );
        assert_ne!(img.data, out.data);
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(compile(serde_json::json!({ "amount": -1.0 })).is_err());
        assert!(compile(serde_json::json!({ "radius": 0.0 })).is_err());
        assert!(compile(serde_json::json!({ "sigma": 1.0 })).is_err());
    }
}
