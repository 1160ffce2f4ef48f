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

use std::cell::RefCell;

use rayon::prelude::*;
use serde::Deserialize;

use super::row_kernel::{Header, RowKernel, RowShape, RowSource, StencilFn};
use super::{check_range, one_input, parse_params, take_image, RunCtx, Stage, ROWS_PER_TASK};
use crate::backend::cpu::reflect;
use crate::backend::median::median3x3_row;
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc, ValueKind};
use crate::raw::{PixelLayout, RawMeta};

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

impl FalseColorSuppress {
    /// The per-frame filter for a `w x h` image with metadata `meta`; an
    /// error (naming stage `id`) when `keep_native` needs a Bayer phase
    /// the image cannot have.
    fn filter(&self, meta: &RawMeta, w: usize, h: usize, id: &str) -> Result<Filter> {
        // A LinearRaw frame (demosaiced in the camera) has no native
        // samples to keep: every pixel is rebuilt, as with keep_native off.
        let linear_raw = meta.layout == PixelLayout::LinearRgb;
        let mut native: [[Vec<u32>; 2]; 2] = Default::default();
        if self.p.keep_native && !linear_raw {
            if meta.width != w || meta.height != h {
                return Err(Error::invalid(format!(
                    "stage '{id}': false_color_suppress with keep_native needs the image right \
                     after a demosaic ({w}x{h} image, {}x{} mosaic); set keep_native: false",
                    meta.width, meta.height
                )));
            }
            let cfa = meta.cfa()?;
            for (py, [is_r, is_b]) in native.iter_mut().enumerate() {
                let mask = |c: usize| {
                    (0..w).map(move |x| u32::from(cfa.color_at(py, x) == c).wrapping_neg())
                };
                *is_r = mask(0).collect();
                *is_b = mask(2).collect();
            }
        } else {
            for [is_r, is_b] in native.iter_mut() {
                *is_r = vec![0; w];
                *is_b = vec![0; w];
            }
        }
        Ok(Filter {
            w,
            rad: self.p.window / 2,
            strength: self.p.strength,
            native,
        })
    }
}

impl Stage for FalseColorSuppress {
    fn op(&self) -> &'static str {
        "false_color_suppress"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        one_input(inputs, ValueKind::Image)
    }

    /// Each pass writes a new frame, rows in parallel, with the same
    /// [`Filter::strip`] as the fused stencil.
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
        let filter = self.filter(&img.meta, w, h, ctx.stage_id)?;
        let n = w * h;
        for _ in 0..self.p.passes {
            let mut out = vec![0f32; 3 * n];
            {
                let src = Frame {
                    planes: img.planes(),
                    w,
                    h,
                };
                let (r, gb) = out.split_at_mut(n);
                let (g, b) = gb.split_at_mut(n);
                let band = w * ROWS_PER_TASK;
                r.par_chunks_mut(band)
                    .zip(g.par_chunks_mut(band))
                    .zip(b.par_chunks_mut(band))
                    .enumerate()
                    .for_each(|(k, ((r, g), b))| {
                        SCRATCH.with(|s| {
                            filter.strip(&src, k * ROWS_PER_TASK, [r, g, b], &mut s.borrow_mut())
                        })
                    });
            }
            img.data = out;
        }
        Ok(Value::Image(img.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: self.p.window / 2,
            row_align: 1,
        })
    }

    /// One pass as a stencil over the demosaiced strips (the same
    /// [`Filter::strip`] as `run_cpu`, so the same pixels). Several passes,
    /// tiny frames, or an image whose Bayer phase is unknown run on their
    /// own (`Ok(None)`; `run_cpu` then reports what is wrong).
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space().is_none() {
            return Err(Error::invalid("expected an image"));
        }
        let (w, h) = (input.width, input.height);
        if self.p.passes != 1 || w < 2 || h < 2 {
            return Ok(None);
        }
        let Ok(filter) = self.filter(&input.meta, w, h, "") else {
            return Ok(None);
        };
        let halo = filter.rad;
        let f: StencilFn = Box::new(move |src, y0, out, _carry| {
            SCRATCH.with(|s| filter.strip(src, y0, out, &mut s.borrow_mut()))
        });
        Ok(Some((RowKernel::Stencil { halo, f }, input.clone())))
    }
}

/// A whole planar frame as the rows a [`Filter`] reads.
struct Frame<'a> {
    planes: [&'a [f32]; 3],
    w: usize,
    h: usize,
}

impl RowSource for Frame<'_> {
    fn row(&self, c: usize, y: isize) -> &[f32] {
        let y = reflect(y, self.h as isize);
        &self.planes[c][y * self.w..(y + 1) * self.w]
    }
}

/// Per-thread working rows of [`Filter::strip`], reused across strips
/// and frames.
#[derive(Default)]
struct Scratch {
    /// Ring of the window's R-G rows, then of its B-G rows, then the two
    /// median rows.
    rows: Vec<f32>,
    /// Window values of one pixel (5x5 windows).
    sel: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One pass of the filter with its per-frame constants.
#[derive(Debug)]
struct Filter {
    /// Image width, pixels.
    w: usize,
    /// Window radius, pixels (1 or 2).
    rad: usize,
    /// Blend of the filtered colour differences, 0..=1.
    strength: f32,
    /// Per row parity: masks of the columns of native red and native
    /// blue sites (all ones there, zero elsewhere; all zero where every
    /// pixel is rebuilt).
    native: [[Vec<u32>; 2]; 2],
}

impl Filter {
    /// Filters image rows `y0 ..` into `out` (planar R, G, B rows, `w`
    /// wide) from the input rows of `src` (mirrored at the frame's top and
    /// bottom). The colour differences of each input row are computed once
    /// into a ring of the window's rows; each output row is its medians
    /// blended with its differences and rebuilt around the kept colour.
    fn strip(&self, src: &dyn RowSource, y0: usize, out: [&mut [f32]; 3], s: &mut Scratch) {
        let w = self.w;
        let [or, og, ob] = out;
        let rows = or.len() / w.max(1);
        let rad = self.rad;
        let taps = 2 * rad + 1;
        s.rows.resize((2 * taps + 2) * w, 0.0);
        let (ring_r, rest) = s.rows.split_at_mut(taps * w);
        let (ring_b, rest) = rest.split_at_mut(taps * w);
        let (mr, mb) = rest.split_at_mut(w);
        for t in 0..rows + 2 * rad {
            let y = y0 as isize + t as isize - rad as isize;
            let slot = (t % taps) * w..(t % taps + 1) * w;
            let g = src.row(1, y);
            diff_row_wide(src.row(0, y), g, &mut ring_r[slot.clone()]);
            diff_row_wide(src.row(2, y), g, &mut ring_b[slot]);
            let Some(oy) = t.checked_sub(2 * rad) else {
                continue;
            };
            // The window's rows, top to bottom.
            let at = |k: usize| ((oy + k.min(taps - 1)) % taps) * w;
            let (ring_r, ring_b) = (&*ring_r, &*ring_b);
            let wr: [&[f32]; 5] = std::array::from_fn(|k| &ring_r[at(k)..at(k) + w]);
            let wb: [&[f32]; 5] = std::array::from_fn(|k| &ring_b[at(k)..at(k) + w]);
            median_row(&wr[..taps], rad, mr, &mut s.sel);
            median_row(&wb[..taps], rad, mb, &mut s.sel);
            let yc = y0 + oy;
            let c = at(rad);
            let [is_r, is_b] = &self.native[yc & 1];
            let row = oy * w..(oy + 1) * w;
            rebuild_row_wide(
                [
                    src.row(0, yc as isize),
                    src.row(1, yc as isize),
                    src.row(2, yc as isize),
                ],
                [&ring_r[c..c + w], &ring_b[c..c + w]],
                [&*mr, &*mb],
                [is_r, is_b],
                self.strength,
                [&mut or[row.clone()], &mut og[row.clone()], &mut ob[row]],
            );
        }
    }
}

/// `out = a - b`, sample by sample.
#[inline(always)]
fn diff_row(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

crate::avx2_dispatch!(
    /// [`diff_row`], 8 lanes wide on AVX2 machines.
    fn diff_row_wide(a: &[f32], b: &[f32], out: &mut [f32]) => diff_row
);

/// `a` where the mask `m` is all ones, `b` where it is zero (bit-exact,
/// branch-free).
#[inline(always)]
fn select(m: u32, a: f32, b: f32) -> f32 {
    f32::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
}

/// One output row: the colour differences `d` (R-G, B-G) of the input row
/// `rgb` blended towards their medians `m` by `s`, then R, G, B rebuilt
/// from them, keeping red at native red sites (`is_r` all ones) and blue
/// at native blue sites (`is_b` all ones) and green elsewhere. Every
/// candidate is computed and the kept one selected bit by bit, so the
/// loop vectorises with the arithmetic of a per-pixel branch.
#[inline(always)]
fn rebuild_row(
    [r, g, b]: [&[f32]; 3],
    [dr, db]: [&[f32]; 2],
    [mr, mb]: [&[f32]; 2],
    [is_r, is_b]: [&[u32]; 2],
    s: f32,
    [or, og, ob]: [&mut [f32]; 3],
) {
    let n = or.len();
    let (r, g, b, dr, db) = (&r[..n], &g[..n], &b[..n], &dr[..n], &db[..n]);
    let (mr, mb, is_r, is_b) = (&mr[..n], &mb[..n], &is_r[..n], &is_b[..n]);
    let (og, ob) = (&mut og[..n], &mut ob[..n]);
    let full = s >= 1.0;
    let blend = |d: f32, m: f32| if full { m } else { d + s * (m - d) };
    for i in 0..n {
        let (fr, fb) = (blend(dr[i], mr[i]), blend(db[i], mb[i]));
        let gn = select(is_r[i], r[i] - fr, select(is_b[i], b[i] - fb, g[i]));
        or[i] = select(is_r[i], r[i], gn + fr);
        og[i] = gn;
        ob[i] = select(is_b[i], b[i], gn + fb);
    }
}

crate::avx2_dispatch!(
    /// [`rebuild_row`], 8 lanes wide on AVX2 machines.
    fn rebuild_row_wide(
        rgb: [&[f32]; 3],
        d: [&[f32]; 2],
        m: [&[f32]; 2],
        native: [&[u32]; 2],
        s: f32,
        out: [&mut [f32]; 3],
    ) => rebuild_row
);

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

crate::avx2_dispatch!(
    /// [`median3x3_row`] (exact, so the bits of [`median9`]), 8 lanes wide
    /// on AVX2 machines.
    fn median3_row_wide(rows: [&[f32]; 3], cols: &mut [f32], out: &mut [f32]) => median3x3_row
);

/// Medians over the `(2 rad + 1)^2` windows of one row: `rows` are the
/// window's `2 rad + 1` rows top to bottom (each `out.len()` wide), and
/// columns are mirrored at the row's ends; NaN-free inputs assumed (NaN
/// sorts arbitrarily). `buf` is reused working memory.
fn median_row(rows: &[&[f32]], rad: usize, out: &mut [f32], buf: &mut Vec<f32>) {
    let w = out.len();
    let wi = w as isize;
    // The value at column `x`, mirrored as a whole-frame filter would.
    let at = |x: usize, buf: &mut Vec<f32>| -> f32 {
        let xi = x as isize;
        if rad == 1 {
            let (a, b, c) = if x >= 1 && x + 1 < w {
                (x - 1, x, x + 1)
            } else {
                (reflect(xi - 1, wi), x, reflect(xi + 1, wi))
            };
            median9([
                rows[0][a], rows[0][b], rows[0][c], rows[1][a], rows[1][b], rows[1][c], rows[2][a],
                rows[2][b], rows[2][c],
            ])
        } else {
            buf.clear();
            for r in rows {
                for d in -(rad as isize)..=rad as isize {
                    buf.push(r[reflect(xi + d, wi)]);
                }
            }
            let mid = buf.len() / 2;
            let (_, m, _) = buf.select_nth_unstable_by(mid, f32::total_cmp);
            *m
        }
    };
    if rad == 1 && w >= 3 {
        buf.resize(3 * w, 0.0);
        median3_row_wide([rows[0], rows[1], rows[2]], buf, out);
        out[0] = at(0, buf);
        out[w - 1] = at(w - 1, buf);
    } else {
        for (x, o) in out.iter_mut().enumerate() {
            *o = at(x, buf);
        }
    }
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

    /// The filter as it was written first: whole-frame difference
    /// planes, their medians (every 3 x 3 one by [`median9`], not the
    /// op's column-sorted rows), then the blend and rebuild pixel by
    /// pixel. The row kernel must give its bits.
    mod reference {
        use super::super::median9;
        use crate::backend::cpu::reflect;
        use crate::raw::CfaPattern;

        pub fn median_plane(src: &[f32], w: usize, h: usize, rad: usize) -> Vec<f32> {
            let mut out = vec![0f32; w * h];
            let (wi, hi) = (w as isize, h as isize);
            let mut buf = Vec::with_capacity(25);
            for (y, row) in out.chunks_mut(w).enumerate() {
                let y = y as isize;
                let rows: Vec<&[f32]> = (-(rad as isize)..=rad as isize)
                    .map(|d| {
                        let sy = reflect(y + d, hi);
                        &src[sy * w..(sy + 1) * w]
                    })
                    .collect();
                for (x, o) in row.iter_mut().enumerate() {
                    let xi = x as isize;
                    let interior = x >= rad && x + rad < w;
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
            out
        }

        /// Planar RGB `data` (`w x h`) filtered `passes` times.
        #[allow(clippy::too_many_arguments)]
        pub fn filter(
            data: &mut [f32],
            w: usize,
            h: usize,
            rad: usize,
            passes: usize,
            s: f32,
            cfa: Option<CfaPattern>,
        ) {
            let n = w * h;
            if w < 2 || h < 2 {
                return;
            }
            for _ in 0..passes {
                let (r, gb) = data.split_at_mut(n);
                let (g, b) = gb.split_at_mut(n);
                let mut dr: Vec<f32> = r.iter().zip(&*g).map(|(r, g)| r - g).collect();
                let mut db: Vec<f32> = b.iter().zip(&*g).map(|(b, g)| b - g).collect();
                let (mr, mb) = (median_plane(&dr, w, h, rad), median_plane(&db, w, h, rad));
                if s >= 1.0 {
                    (dr, db) = (mr, mb);
                } else {
                    for (d, m) in dr.iter_mut().zip(&mr).chain(db.iter_mut().zip(&mb)) {
                        *d += s * (m - *d);
                    }
                }
                for y in 0..h {
                    for x in 0..w {
                        let i = y * w + x;
                        match cfa.map(|c| c.color_at(y, x)) {
                            Some(0) => {
                                g[i] = r[i] - dr[i];
                                b[i] = g[i] + db[i];
                            }
                            Some(2) => {
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

    /// Random images (signed zeros and negative values included), every
    /// Bayer phase, both windows, one and two passes, several strengths,
    /// sizes down to 2x2: the row kernel gives the reference's bits.
    #[test]
    fn matches_the_whole_frame_reference_bit_for_bit() {
        let mut seed = 0x9e37_79b9u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        for (k, cfa) in CfaPattern::ALL.into_iter().enumerate() {
            for (w, h) in [(67, 45), (16, 40), (5, 4), (2, 2), (3, 7)] {
                let mut img = image(w, h, &|_, _| [0.0; 3]);
                img.meta = Arc::new(RawMeta::bayer("t", w, h, cfa));
                for v in img.data.iter_mut() {
                    let u = next();
                    *v = match u % 41 {
                        0 => 0.0,
                        1 => -0.0,
                        _ => (u >> 8) as f32 / (1u32 << 24) as f32 * 1.3 - 0.1,
                    };
                }
                for (window, passes, strength, keep) in [
                    (3, 1, 0.5, true),
                    (3, 1, 1.0, false),
                    (5, 2, 0.25, true),
                    (3, 2, 0.0, k % 2 == 0),
                ] {
                    let p = serde_json::json!({
                        "window": window,
                        "passes": passes,
                        "strength": strength,
                        "keep_native": keep,
                    });
                    let got = run(p, img.clone());
                    let mut want = img.data.clone();
                    reference::filter(
                        &mut want,
                        w,
                        h,
                        window / 2,
                        passes,
                        strength,
                        keep.then_some(cfa),
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert!(
                        bits(&got.data) == bits(&want),
                        "{cfa:?} {w}x{h} window {window} passes {passes} strength {strength} \
                         keep {keep}"
                    );
                }
            }
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
