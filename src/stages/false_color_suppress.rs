//! `false_color_suppress`: median filtering of the colour differences
//! R-G and B-G after any demosaic (Freeman 1988, US patent 4,724,395; the
//! `-m` passes of dcraw and RawTherapee's false-colour suppression).
//!
//! Demosaicing errors show as isolated spikes in the colour-difference
//! planes (zippering, coloured fringes on fine detail); a small median
//! removes them while leaving colour edges in place. With
//! `keep_native: true` (default, Freeman's form) each pixel keeps the
//! colour its photosite measured and only the two interpolated colours are
//! rebuilt from it and the filtered differences; this needs the frame's
//! Bayer phase (from the image's raw metadata) and an image of the
//! mosaic's size, i.e. the op placed right after a demosaic. With
//! `keep_native: false` (dcraw's form) R and B are rebuilt from G at every
//! pixel. LinearRaw frames (demosaiced in the camera) have no native
//! samples, so every pixel is rebuilt whatever `keep_native` says.
//!
//! Input and output: planar RGB of any colour space, same size.

use rayon::prelude::*;
use serde::Deserialize;

use super::{check_range, one_input, parse_params, take_image, RunCtx, Stage, ROWS_PER_TASK};
use crate::backend::cpu::reflect;
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc, ValueKind};
use crate::raw::PixelLayout;

/// YAML params of `false_color_suppress`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Median window side, pixels: 3 or 5.
    pub window: usize,
    /// Number of passes, 1..=5 (dcraw `-m N`).
    pub passes: usize,
    /// Keep each photosite's measured colour (Freeman); needs the image
    /// right after a demosaic.
    pub keep_native: bool,
    /// How much of the filtered colour differences to use, 0..=1 (1 =
    /// the full median; 0.5 = halfway between input and filtered).
    pub strength: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window: 3,
            passes: 1,
            keep_native: true,
            strength: 1.0,
        }
    }
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if self.window != 3 && self.window != 5 {
            return Err(crate::stages::CompileError::params(format!(
                "window = {} must be 3 or 5",
                self.window
            )));
        }
        check_range("passes", self.passes as f32, 1.0, 5.0)?;
        check_range("strength", self.strength, 0.0, 1.0)
    }
}

/// The compiled `false_color_suppress` op.
#[derive(Debug)]
pub struct FalseColorSuppress {
    p: Params,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(FalseColorSuppress { p }))
}

impl Stage for FalseColorSuppress {
    fn op(&self) -> &'static str {
        "false_color_suppress"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        one_input(inputs, ValueKind::Image)
    }

    fn run_cpu(&self, ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("no input"))?;
        let mut img = take_image(v)?;
        let (w, h) = (img.width, img.height);
        if w < 2 || h < 2 {
            return Ok(Value::Image(img.into()));
        }
        // A LinearRaw frame (demosaiced in the camera) has no native
        // samples to keep: every pixel is rebuilt, as with keep_native off.
        let linear_raw = img.meta.layout == PixelLayout::LinearRgb;
        let cfa = if self.p.keep_native && !linear_raw {
            if img.meta.width != w || img.meta.height != h {
                return Err(Error::invalid(format!(
                    "stage '{}': false_color_suppress with keep_native needs the image right \
                     after a demosaic ({w}x{h} image, {}x{} mosaic); set keep_native: false",
                    ctx.stage_id, img.meta.width, img.meta.height
                )));
            }
            Some(img.meta.cfa()?)
        } else {
            None
        };
        let n = w * h;
        let rad = self.p.window / 2;
        for _ in 0..self.p.passes {
            let [r, g, b] = img.planes();
            let mut dr: Vec<f32> = r.iter().zip(g).map(|(r, g)| r - g).collect();
            let mut db: Vec<f32> = b.iter().zip(g).map(|(b, g)| b - g).collect();
            let (mr, mb) = (median_plane(&dr, w, h, rad), median_plane(&db, w, h, rad));
            let s = self.p.strength;
            if s >= 1.0 {
                (dr, db) = (mr, mb);
            } else {
                for (d, m) in dr.iter_mut().zip(&mr).chain(db.iter_mut().zip(&mb)) {
                    *d += s * (m - *d);
                }
            }
            let [r, g, b] = img.planes_mut();
            match cfa {
                None => {
                    for i in 0..n {
                        r[i] = g[i] + dr[i];
                        b[i] = g[i] + db[i];
                    }
                }
                Some(cfa) => {
                    for y in 0..h {
                        for x in 0..w {
                            let i = y * w + x;
                            match cfa.color_at(y, x) {
                                0 => {
                                    g[i] = r[i] - dr[i];
                                    b[i] = g[i] + db[i];
                                }
                                2 => {
                                    g[i] = b[i] - db[i];
                                    r[i] = g[i] + dr[i];
                                }
                                _ => {
                                    r[i] = g[i] + dr[i];
                                    b[i] = g[i] + db[i];
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(Value::Image(img.into()))
    }
}

/// Sorts two values in place (a compare-exchange of a sorting network).
#[inline(always)]
fn cx(v: &mut [f32; 9], a: usize, b: usize) {
    let (x, y) = (v[a], v[b]);
    v[a] = x.min(y);
    v[b] = x.max(y);
}

/// Median of 9 values with the 19-exchange network of Paeth / Devillard.
#[inline(always)]
fn median9(mut p: [f32; 9]) -> f32 {
    let v = &mut p;
    cx(v, 1, 2);
    cx(v, 4, 5);
    cx(v, 7, 8);
    cx(v, 0, 1);
    cx(v, 3, 4);
    cx(v, 6, 7);
    cx(v, 1, 2);
    cx(v, 4, 5);
    cx(v, 7, 8);
    cx(v, 0, 3);
    cx(v, 5, 8);
    cx(v, 4, 7);
    cx(v, 3, 6);
    cx(v, 1, 4);
    cx(v, 2, 5);
    cx(v, 4, 7);
    cx(v, 4, 2);
    cx(v, 6, 4);
    cx(v, 4, 2);
    v[4]
}

/// 3x3 medians along one row: `out[i]` is the median of `r0`, `r1`, `r2`
/// at columns `i..i + 3` (rows `out.len() + 2` long; the values in the
/// order [`median_plane`] takes them, so the same bits).
#[inline(always)]
fn median3_row(r0: &[f32], r1: &[f32], r2: &[f32], out: &mut [f32]) {
    let n = out.len();
    let (a0, b0, c0) = (&r0[..n], &r0[1..n + 1], &r0[2..n + 2]);
    let (a1, b1, c1) = (&r1[..n], &r1[1..n + 1], &r1[2..n + 2]);
    let (a2, b2, c2) = (&r2[..n], &r2[1..n + 1], &r2[2..n + 2]);
    for (i, o) in out.iter_mut().enumerate() {
        *o = median9([
            a0[i], b0[i], c0[i], a1[i], b1[i], c1[i], a2[i], b2[i], c2[i],
        ]);
    }
}

crate::avx2_dispatch!(
    /// [`median3_row`], 8 lanes wide on AVX2 machines.
    fn median3_row_wide(r0: &[f32], r1: &[f32], r2: &[f32], out: &mut [f32]) => median3_row
);

/// Median over a `(2 rad + 1)^2` window of a `w x h` plane, mirrored at
/// the borders; NaN-free inputs assumed (NaN sorts arbitrarily).
pub(crate) fn median_plane(src: &[f32], w: usize, h: usize, rad: usize) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    let (wi, hi) = (w as isize, h as isize);
    out.par_chunks_mut(w * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(k, chunk)| {
            let y0 = k * ROWS_PER_TASK;
            let mut buf = Vec::with_capacity(25);
            for (oy, row) in chunk.chunks_mut(w).enumerate() {
                let y = (y0 + oy) as isize;
                let rows: Vec<&[f32]> = (-(rad as isize)..=rad as isize)
                    .map(|d| {
                        let sy = reflect(y + d, hi);
                        &src[sy * w..(sy + 1) * w]
                    })
                    .collect();
                if rad == 1 && w >= 3 {
                    median3_row_wide(rows[0], rows[1], rows[2], &mut row[1..w - 1]);
                }
                for (x, o) in row.iter_mut().enumerate() {
                    let xi = x as isize;
                    let interior = x >= rad && x + rad < w;
                    if rad == 1 && w >= 3 && interior {
                        continue;
                    }
                    if rad == 1 {
                        let (a, b, c) = if interior {
                            (x - 1, x, x + 1)
                        } else {
                            (reflect(xi - 1, wi), x, reflect(xi + 1, wi))
                        };
                        *o = median9([
                            rows[0][a], rows[0][b], rows[0][c], rows[1][a], rows[1][b], rows[1][c],
                            rows[2][a], rows[2][b], rows[2][c],
                        ]);
                    } else {
                        buf.clear();
                        for r in &rows {
                            for d in -(rad as isize)..=rad as isize {
                                buf.push(r[reflect(xi + d, wi)]);
                            }
                        }
                        let mid = buf.len() / 2;
                        let (_, m, _) = buf.select_nth_unstable_by(mid, f32::total_cmp);
                        *o = *m;
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ColorSpace, Image};
    use crate::raw::{CfaPattern, RawMeta};
    use std::sync::Arc;

    #[test]
    fn median9_matches_a_sort() {
        let mut s = 12345u32;
        for _ in 0..2000 {
            let mut v = [0f32; 9];
            for x in v.iter_mut() {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *x = (s >> 16) as f32;
            }
            let mut sorted = v;
            sorted.sort_by(f32::total_cmp);
            assert_eq!(median9(v), sorted[4], "{v:?}");
        }
    }

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
            space: ColorSpace::Camera,
            wb_applied: None,
            meta: Arc::new(RawMeta::bayer("t", w, h, CfaPattern::ALL[0])),
        }
    }

    fn run(p: serde_json::Value, img: Image) -> Image {
        let st = compile(p).unwrap();
        let ctx = RunCtx { stage_id: "fc" };
        match st.run_cpu(&ctx, vec![Value::Image(img.into())]).unwrap() {
            Value::Image(i) => (*i).clone(),
            _ => panic!("not an image"),
        }
    }

    #[test]
    fn linear_raw_images_are_filtered_without_native_samples() {
        let flat = |_x: usize, _y: usize| [0.4, 0.5, 0.3];
        let mut img = image(12, 10, &flat);
        let mut meta = (*img.meta).clone();
        meta.layout = PixelLayout::LinearRgb;
        img.meta = Arc::new(meta);
        // A spike on red at (4, 4): a red site of the RGGB phase, which
        // keep_native would keep on a Bayer frame.
        img.data[4 * 12 + 4] += 0.3;
        let out = run(serde_json::json!({ "keep_native": true }), img.clone());
        let plain = run(serde_json::json!({ "keep_native": false }), img);
        assert_eq!(out.data, plain.data);
        assert!((out.planes()[0][4 * 12 + 4] - 0.4).abs() < 1e-6);
    }

    #[test]
    fn removes_an_isolated_colour_spike_and_keeps_edges() {
        let truth = |x: usize, _y: usize| {
            if x < 10 {
                [0.2, 0.3, 0.4]
            } else {
                [0.7, 0.5, 0.1]
            }
        };
        let mut img = image(20, 16, &truth);
        // A false-colour spike at (4, 6): red raised at a green site.
        let (w, n) = (20, 320);
        img.data[6 * w + 5] += 0.3;
        img.data[2 * n + 6 * w + 5] -= 0.2;
        for keep in [true, false] {
            let out = run(serde_json::json!({ "keep_native": keep }), img.clone());
            let p = out.planes();
            for y in 0..16 {
                for x in 0..20 {
                    let t = truth(x, y);
                    for c in 0..3 {
                        let v = p[c][y * w + x];
                        assert!((v - t[c]).abs() < 1e-6, "keep {keep} ({x},{y}) c{c}: {v}");
                    }
                }
            }
        }
    }

    #[test]
    fn native_samples_are_kept() {
        let f = |x: usize, y: usize| {
            let v = ((x * 5 + y * 3) % 11) as f32 / 11.0;
            [v, 0.5 * v + 0.1, 1.0 - v]
        };
        let img = image(17, 13, &f);
        let out = run(serde_json::json!({ "window": 5, "passes": 2 }), img.clone());
        let cfa = CfaPattern::ALL[0];
        let (a, b) = (img.planes(), out.planes());
        let mut changed = 0;
        for y in 0..13 {
            for x in 0..17 {
                let i = y * 17 + x;
                let c = cfa.color_at(y, x);
                assert_eq!(a[c][i], b[c][i], "({x},{y})");
                changed += (0..3).filter(|&k| a[k][i] != b[k][i]).count();
            }
        }
        assert!(changed > 0, "the filter must change interpolated colours");
    }

    #[test]
    fn strength_blends_input_and_filtered_linearly() {
        let f = |x: usize, y: usize| {
            let v = ((x * 5 + y * 3) % 11) as f32 / 11.0;
            [v, 0.5 * v + 0.1, 1.0 - v]
        };
        let img = image(17, 13, &f);
        let full = run(serde_json::json!({}), img.clone());
        let none = run(serde_json::json!({ "strength": 0.0 }), img.clone());
        let half = run(serde_json::json!({ "strength": 0.5 }), img.clone());
        for (a, b) in img.data.iter().zip(&none.data) {
            assert!(
                (a - b).abs() < 1e-6,
                "strength 0 leaves the image as it is: {a} {b}"
            );
        }
        assert_ne!(full.data, img.data);
        for ((a, b), h) in img.data.iter().zip(&full.data).zip(&half.data) {
            assert!((0.5 * (a + b) - h).abs() < 1e-6, "{a} {b} -> {h}");
        }
        assert!(compile(serde_json::json!({ "strength": 1.5 })).is_err());
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(compile(serde_json::json!({ "window": 4 })).is_err());
        assert!(compile(serde_json::json!({ "passes": 0 })).is_err());
        assert!(compile(serde_json::json!({ "radius": 1 })).is_err());
    }
}
