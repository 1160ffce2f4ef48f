//! `resize`: separable image scaling with a quality filter.
//!
//! `filter: auto` (default) uses, per axis, an exact area (box-coverage)
//! filter when shrinking, as OpenCV's INTER_AREA, and Lanczos-3 (a = 3
//! windowed sinc, Duchon 1979) when enlarging; `area` and `lanczos3`
//! force one (Lanczos on a shrinking axis widens its support by the
//! scale factor, so it still anti-aliases). Pixel centres are aligned
//! (`x_src = (x_dst + 0.5) / scale - 0.5`), borders clamp.
//!
//! Size: `width` and/or `height`; with one given the other follows the
//! aspect ratio; with both, `fit: contain` (default) keeps the aspect
//! ratio inside that box, `fit: exact` stretches to it; `contain` only
//! shrinks unless `enlarge: true`. Input and
//! output: planar RGB of any colour space. Place it after `orient` (the
//! raw metadata's crop is in the unscaled frame's coordinates).

use rayon::prelude::*;
use serde::Deserialize;

use super::{one_input, parse_params, take_image, RunCtx, Stage, ROWS_PER_TASK};
use crate::error::{Error, Result};
use crate::frame::{Image, Value, ValueDesc, ValueKind};

/// How the output size follows from `width` and `height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Largest size with the input's aspect ratio inside the box.
    #[default]
    Contain,
    /// Exactly width x height.
    Exact,
}

/// Interpolation filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Area when shrinking, Lanczos-3 when enlarging (per axis).
    #[default]
    Auto,
    Area,
    Lanczos3,
}

/// YAML params of `resize`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Output width in pixels.
    pub width: Option<usize>,
    /// Output height in pixels.
    pub height: Option<usize>,
    pub fit: Fit,
    pub filter: Filter,
    /// Allow a size larger than the input (`contain` and one-side modes;
    /// default false: an image that already fits is passed through).
    pub enlarge: bool,
}

/// Largest output side accepted.
const MAX_SIDE: usize = 65_536;

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if self.width.is_none() && self.height.is_none() {
            return Err(crate::stages::CompileError::params(
                "give width and/or height",
            ));
        }
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if let Some(v) = v {
                if v == 0 || v > MAX_SIDE {
                    return Err(crate::stages::CompileError::params(format!(
                        "{name} = {v} is outside [1, {MAX_SIDE}]"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Params {
    /// Output size for a `w x h` input.
    pub fn out_size(&self, w: usize, h: usize) -> (usize, usize) {
        let (wf, hf) = (w.max(1) as f64, h.max(1) as f64);
        let side = |v: f64| (v.round() as usize).clamp(1, MAX_SIDE);
        let (ow, oh) = match (self.width, self.height) {
            (Some(tw), Some(th)) if self.fit == Fit::Exact => (tw, th),
            (Some(tw), Some(th)) => {
                let s = (tw as f64 / wf).min(th as f64 / hf);
                (side(wf * s).min(tw), side(hf * s).min(th))
            }
            (Some(tw), None) => (tw, side(hf * tw as f64 / wf)),
            (None, Some(th)) => (side(wf * th as f64 / hf), th),
            (None, None) => (w, h),
        };
        if self.fit == Fit::Contain && !self.enlarge && (ow > w || oh > h) {
            (w, h)
        } else {
            (ow, oh)
        }
    }
}

/// The compiled `resize` op.
#[derive(Debug)]
pub struct Resize {
    p: Params,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(Resize { p }))
}

/// Filter taps of one axis: output `i` reads `len[i]` source samples from
/// `start[i]` with weights `weights[i * stride ..]` (summing to 1).
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights: Vec<f32>,
}

fn lanczos3(x: f64) -> f64 {
    let x = x.abs();
    if x < 1e-8 {
        1.0
    } else if x >= 3.0 {
        0.0
    } else {
        let px = std::f64::consts::PI * x;
        3.0 * px.sin() * (px / 3.0).sin() / (px * px)
    }
}

/// Taps mapping `n_in` samples to `n_out`.
fn taps(n_in: usize, n_out: usize, filter: Filter) -> Taps {
    let scale = n_out as f64 / n_in as f64;
    let area = match filter {
        Filter::Area => true,
        Filter::Lanczos3 => false,
        Filter::Auto => n_out < n_in,
    };
    let mut per: Vec<(usize, Vec<f64>)> = Vec::with_capacity(n_out);
    for i in 0..n_out {
        if area {
            // Output pixel i covers source [a, b).
            let inv = 1.0 / scale;
            let a = i as f64 * inv;
            let b = (i as f64 + 1.0) * inv;
            let j0 = a.floor() as usize;
            let j1 = (b.ceil() as usize).min(n_in).max(j0 + 1);
            let ws = (j0..j1)
                .map(|j| (b.min(j as f64 + 1.0) - a.max(j as f64)).max(0.0))
                .collect();
            per.push((j0.min(n_in - 1), ws));
        } else {
            let f = scale.min(1.0);
            let support = 3.0 / f;
            let c = (i as f64 + 0.5) / scale - 0.5;
            let j0 = (c - support).ceil() as isize;
            let j1 = (c + support).floor() as isize;
            // Clamp source indices; fold weights of clamped taps.
            let lo = j0.clamp(0, n_in as isize - 1) as usize;
            let hi = j1.clamp(0, n_in as isize - 1) as usize;
            let mut ws = vec![0f64; hi - lo + 1];
            for j in j0..=j1 {
                let k = j.clamp(0, n_in as isize - 1) as usize - lo;
                ws[k] += lanczos3((j as f64 - c) * f);
            }
            per.push((lo, ws));
        }
    }
    let stride = per.iter().map(|p| p.1.len()).max().unwrap_or(1);
    let mut t = Taps {
        start: Vec::with_capacity(n_out),
        len: Vec::with_capacity(n_out),
        stride,
        weights: vec![0f32; stride * n_out],
    };
    for (i, (s, ws)) in per.into_iter().enumerate() {
        let sum: f64 = ws.iter().sum();
        let norm = if sum.abs() > 1e-12 { 1.0 / sum } else { 0.0 };
        for (k, wv) in ws.iter().enumerate() {
            t.weights[i * stride + k] = (wv * norm) as f32;
        }
        t.start.push(s);
        t.len.push(ws.len());
    }
    t
}

/// Resamples one `w x h` plane to `ow x oh` (horizontal pass, then
/// vertical).
fn resample(
    src: &[f32],
    w: usize,
    h: usize,
    tx: &Taps,
    ty: &Taps,
    ow: usize,
    oh: usize,
) -> Vec<f32> {
    let mut tmp = vec![0f32; ow * h];
    tmp.par_chunks_mut(ow * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(k, chunk)| {
            for (r, out) in chunk.chunks_mut(ow).enumerate() {
                let y = k * ROWS_PER_TASK + r;
                let row = &src[y * w..(y + 1) * w];
                for (i, o) in out.iter_mut().enumerate() {
                    let s = &row[tx.start[i]..tx.start[i] + tx.len[i]];
                    let wt = &tx.weights[i * tx.stride..];
                    *o = s.iter().zip(wt).map(|(a, b)| a * b).sum();
                }
            }
        });
    let mut out = vec![0f32; ow * oh];
    out.par_chunks_mut(ow).enumerate().for_each(|(i, row)| {
        let wt = &ty.weights[i * ty.stride..];
        for k in 0..ty.len[i] {
            let s = &tmp[(ty.start[i] + k) * ow..][..ow];
            let c = wt[k];
            for (o, v) in row.iter_mut().zip(s) {
                *o += c * v;
            }
        }
    });
    out
}

impl Stage for Resize {
    fn op(&self) -> &'static str {
        "resize"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = one_input(inputs, ValueKind::Image)?;
        let (w, h) = self.p.out_size(d.width, d.height);
        Ok(ValueDesc {
            width: w,
            height: h,
            ..d
        })
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("no input"))?;
        let img = take_image(v)?;
        let (w, h) = (img.width, img.height);
        if w == 0 || h == 0 {
            return Err(Error::invalid("resize: empty image"));
        }
        let (ow, oh) = self.p.out_size(w, h);
        if (ow, oh) == (w, h) {
            return Ok(Value::Image(img.into()));
        }
        let tx = taps(w, ow, self.p.filter);
        let ty = taps(h, oh, self.p.filter);
        let mut data = Vec::with_capacity(3 * ow * oh);
        for plane in img.planes() {
            data.extend(resample(plane, w, h, &tx, &ty, ow, oh));
        }
        Ok(Value::Image(
            Image {
                width: ow,
                height: oh,
                data,
                ..img
            }
            .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ColorSpace;
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
        let ctx = RunCtx { stage_id: "rs" };
        match st.run_cpu(&ctx, vec![Value::Image(img.into())]).unwrap() {
            Value::Image(i) => (*i).clone(),
            _ => panic!("not an image"),
        }
    }

    #[test]
    fn sizes_follow_width_height_and_fit() {
        let p = |v: serde_json::Value| -> Params { serde_json::from_value(v).unwrap() };
        assert_eq!(
            p(serde_json::json!({ "width": 400 })).out_size(4000, 3000),
            (400, 300)
        );
        assert_eq!(
            p(serde_json::json!({ "height": 300 })).out_size(4000, 3000),
            (400, 300)
        );
        let c = p(serde_json::json!({ "width": 1920, "height": 1080 }));
        assert_eq!(c.out_size(4000, 3000), (1440, 1080));
        let e = p(serde_json::json!({ "width": 1920, "height": 1080, "fit": "exact" }));
        assert_eq!(e.out_size(4000, 3000), (1920, 1080));
        assert_eq!(c.out_size(640, 480), (640, 480));
        let up = p(serde_json::json!({ "width": 1920, "height": 1080, "enlarge": true }));
        assert_eq!(up.out_size(640, 480), (1440, 1080));
        assert!(compile(serde_json::json!({})).is_err());
        assert!(compile(serde_json::json!({ "width": 0 })).is_err());
        assert!(compile(serde_json::json!({ "width": 10, "fit": "cover" })).is_err());
        assert!(compile(serde_json::json!({ "widht": 10 })).is_err());
    }

    #[test]
    fn area_downscale_by_two_is_the_2x2_mean() {
        let f = |x: usize, y: usize| [(x * 3 + y * 5) as f32, x as f32, y as f32];
        let img = image(8, 6, &f);
        let out = run(serde_json::json!({ "width": 4 }), img);
        assert_eq!((out.width, out.height), (4, 3));
        let p = out.planes();
        for y in 0..3 {
            for x in 0..4 {
                let mut m = [0f32; 3];
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let v = f(2 * x + dx, 2 * y + dy);
                    (0..3).for_each(|c| m[c] += 0.25 * v[c]);
                }
                for c in 0..3 {
                    assert!((p[c][y * 4 + x] - m[c]).abs() < 1e-4, "({x},{y}) c{c}");
                }
            }
        }
    }

    #[test]
    fn flat_stays_flat_and_linear_ramps_stay_linear_when_enlarged() {
        for filter in ["auto", "area", "lanczos3"] {
            let img = image(13, 9, &|_, _| [0.25, 0.5, 0.75]);
            let out = run(
                serde_json::json!({ "width": 29, "height": 7, "fit": "exact", "filter": filter }),
                img,
            );
            for (c, plane) in out.planes().iter().enumerate() {
                for v in plane.iter() {
                    assert!((v - [0.25, 0.5, 0.75][c]).abs() < 1e-5, "{filter}: {v}");
                }
            }
        }
        // Lanczos-3 reproduces a linear ramp away from the borders.
        let img = image(20, 4, &|x, _| [x as f32, 0.0, 0.0]);
        let out = run(
            serde_json::json!({ "width": 40, "height": 4, "fit": "exact" }),
            img,
        );
        let r = out.planes()[0];
        for (x, &v) in r.iter().enumerate().take(32).skip(8) {
            let want = (x as f32 + 0.5) / 2.0 - 0.5;
            assert!((v - want).abs() < 0.02, "x {x}: {v} vs {want}");
        }
    }
}
