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
//! with halos run in parallel; after a demosaic the op is a fused
//! segment's last member (a [`RowKernel::Stencil`]), sharpening each
//! strip while its rows are in cache. Both paths run [`Mask::strip`]:
//! identical pixels.

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Deserialize;

use super::row_kernel::{Header, RowKernel, RowShape, RowSource, StencilFn};
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

/// The compiled `sharpen` op: the validated params and the mask's
/// per-frame constants.
#[derive(Debug)]
pub struct Sharpen {
    p: Params,
    mask: Arc<Mask>,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let mask = Arc::new(Mask {
        kernel: gaussian(p.radius),
        amount: p.amount,
        thr: p.threshold,
        os: p.overshoot,
    });
    Ok(Box::new(Sharpen { p, mask }))
}

/// The normalised Gaussian taps of sigma `radius` pixels: `2 kr + 1` of
/// them, `kr = ceil(3 radius)`, the weight at offset `k - kr` at `k`.
fn gaussian(radius: f32) -> Vec<f32> {
    let kr = (3.0 * radius).ceil() as isize;
    let mut kernel: Vec<f32> = (-kr..=kr)
        .map(|k| (-(k * k) as f32 / (2.0 * radius * radius)).exp())
        .collect();
    let s: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|v| *v /= s);
    kernel
}

/// Output rows per rayon task of the whole-frame path.
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
        // Luminance of the whole frame (read-only while strips write RGB)
        // and which of its rows are all finite.
        let mut y_plane = vec![0f32; w * h];
        let mut finite = vec![false; h];
        {
            let [r, g, b] = img.planes();
            y_plane
                .par_chunks_mut(w)
                .zip(finite.par_iter_mut())
                .enumerate()
                .for_each(|(y, (out, fin))| {
                    let s = y * w..(y + 1) * w;
                    *fin = luma_row_wide(&r[s.clone()], &g[s.clone()], &b[s], out);
                });
        }
        let (yp, fin) = (&y_plane, &finite);
        let mask = &self.mask;
        let [r, g, b] = img.planes_mut();
        r.par_chunks_mut(w * STRIP)
            .zip(g.par_chunks_mut(w * STRIP))
            .zip(b.par_chunks_mut(w * STRIP))
            .enumerate()
            .for_each(|(k, ((r, g), b))| {
                let input = Input::InPlace {
                    luma: yp,
                    finite: fin,
                    h,
                };
                SCRATCH.with(|s| mask.strip(input, w, k * STRIP, [r, g, b], &mut s.borrow_mut()));
            });
        Ok(Value::Image(img.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: self.mask.kr(),
            row_align: 1,
        })
    }

    /// The unsharp mask as a stencil: per strip, the luminance of the
    /// strip's rows and their halo, then the same arithmetic as the
    /// whole-frame path (identical pixels).
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space().is_none() {
            return Err(Error::invalid("expected an image"));
        }
        let (w, h) = (input.width, input.height);
        let mask = self.mask.clone();
        let kr = mask.kr();
        let skip = w < 2 || h < 2 || self.p.amount == 0.0;
        let f: StencilFn = Box::new(move |src, y0, [r, g, b]| {
            if skip {
                for (c, plane) in [r, g, b].into_iter().enumerate() {
                    for (y, dst) in (y0..).zip(plane.chunks_exact_mut(w)) {
                        for (d, &v) in dst.iter_mut().zip(src.row(c, y as isize)) {
                            *d = v;
                        }
                    }
                }
                return;
            }
            SCRATCH.with(|s| mask.strip(Input::Rows(src), w, y0, [r, g, b], &mut s.borrow_mut()));
        });
        Ok(Some((RowKernel::Stencil { halo: kr, f }, input.clone())))
    }
}

thread_local! {
    /// Per-thread scratch reused across strips and frames: [`Mask::strip`]'s
    /// working rows.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The mask's per-frame constants: Gaussian taps (`kernel[k]` is the
/// weight at offset `k - kr`), gain, threshold and overshoot (image
/// units).
#[derive(Debug)]
struct Mask {
    kernel: Vec<f32>,
    amount: f32,
    thr: f32,
    os: f32,
}

impl Mask {
    /// Radius of the blur in pixels (>= 1: also the 3x3 clamp's reach).
    fn kr(&self) -> usize {
        (self.kernel.len() / 2).max(1)
    }

    /// Sharpens the image rows `y0 ..` of `out` (planar rows of R, G, B,
    /// `w` wide) from `input`. The rows of the window (image rows `y0 -
    /// kr ..`, mirrored) stream through rolling buffers: each row's
    /// luminance, its horizontal blur and its 3-wide minima and maxima
    /// once, then each output row as soon as its `2 kr + 1` rows are in.
    /// `scratch` is reused working memory.
    fn strip(
        &self,
        input: Input,
        w: usize,
        y0: usize,
        [r, g, b]: [&mut [f32]; 3],
        scratch: &mut Vec<f32>,
    ) {
        let kr = self.kr();
        let taps = self.kernel.len();
        let rows = r.len() / w.max(1);
        if w < 2 || taps != 2 * kr + 1 {
            return;
        }
        // Ring slots of the window rows (the oldest needed is 2 kr back),
        // then the vertical blur row and, in place, the input row's copy.
        let slots = taps + 1;
        scratch.resize((4 * slots + 4) * w, 0.0);
        let (rings, rest) = scratch.split_at_mut(4 * slots * w);
        let (blur, copy) = rest.split_at_mut(w);
        let (luma, rest) = rings.split_at_mut(slots * w);
        let (hb, rest) = rest.split_at_mut(slots * w);
        let (mn, mx) = rest.split_at_mut(slots * w);
        let mut finite = vec![false; slots];
        let k = [self.amount, self.thr, self.os];
        let at = |t: usize| (t % slots) * w..(t % slots + 1) * w;
        for t in 0..rows + 2 * kr {
            let y = y0 as isize + t as isize - kr as isize;
            let l = &mut luma[at(t)];
            finite[t % slots] = match input {
                Input::Rows(src) => luma_row_wide(src.row(0, y), src.row(1, y), src.row(2, y), l),
                Input::InPlace { luma, finite, h } => {
                    let sy = reflect(y, h as isize);
                    for (d, &v) in l.iter_mut().zip(&luma[sy * w..(sy + 1) * w]) {
                        *d = v;
                    }
                    finite[sy]
                }
            };
            let l = &luma[at(t)];
            hblur_row_wide(l, &self.kernel, &mut hb[at(t)]);
            range_row_wide(l, &mut mn[at(t)], &mut mx[at(t)]);
            let Some(oy) = t.checked_sub(2 * kr) else {
                continue;
            };
            // Output row oy: window rows oy ..= t.
            let hrows: Vec<&[f32]> = (oy..=t).map(|u| &hb[at(u)]).collect();
            vblur_row_wide(&hrows, &self.kernel, blur);
            let c = oy + kr;
            let o = oy * w..(oy + 1) * w;
            let out = [&mut r[o.clone()], &mut g[o.clone()], &mut b[o]];
            let (src_rows, out) = match input {
                Input::Rows(src) => {
                    let y = (y0 + oy) as isize;
                    ([src.row(0, y), src.row(1, y), src.row(2, y)], out)
                }
                Input::InPlace { .. } => {
                    let (cr, cgb) = copy.split_at_mut(w);
                    let (cg, cb) = cgb.split_at_mut(w);
                    for (d, s) in [&mut *cr, &mut *cg, &mut *cb].into_iter().zip(&out) {
                        d.copy_from_slice(&s[..w]);
                    }
                    ([&*cr, &*cg, &*cb], out)
                }
            };
            let (near, lm, lx) = (
                [&luma[at(c - 1)], &luma[at(c)], &luma[at(c + 1)]],
                [&mn[at(c - 1)], &mn[at(c)], &mn[at(c + 1)]],
                [&mx[at(c - 1)], &mx[at(c)], &mx[at(c + 1)]],
            );
            if (oy..=t).all(|u| finite[u % slots]) {
                apply_row_wide(near[1], blur, lm, lx, src_rows, out, k);
            } else {
                apply_row_exact(near, blur, src_rows, out, k);
            }
        }
    }
}

/// Where [`Mask::strip`] reads its rows.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// A segment's rows (R, G, B); luminance computed here.
    Rows(&'a dyn RowSource),
    /// The output rows themselves hold the input (sharpened in place),
    /// with the frame's luminance plane (`h` rows) and which of its rows
    /// are all finite.
    InPlace {
        luma: &'a [f32],
        finite: &'a [bool],
        h: usize,
    },
}

/// `out = 0.2126 r + 0.7152 g + 0.0722 b`; whether every value is finite.
#[inline(always)]
fn luma_row(r: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) -> bool {
    let mut bad = 0u32;
    for (((o, &r), &g), &b) in out.iter_mut().zip(r).zip(g).zip(b) {
        let v = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        bad |= u32::from(!v.is_finite());
        *o = v;
    }
    bad == 0
}

crate::avx2_dispatch!(fn luma_row_wide(r: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) -> bool => luma_row);

/// Outputs per step of the blurs: four AVX2 vectors of sums.
const BLOCK: usize = 32;

/// Horizontal Gaussian of one row (`kern` of odd length `2 kr + 1`),
/// mirrored at the ends; every sum accumulates the taps in order from 0.
#[inline(always)]
fn hblur_row(src: &[f32], kern: &[f32], dst: &mut [f32]) {
    let w = src.len().min(dst.len());
    let kr = kern.len() / 2;
    let inner = w.saturating_sub(2 * kr);
    // Interior, BLOCK outputs at a time with the sums in registers
    // (independent chains, so the adds' latency overlaps).
    let blocks = inner / BLOCK;
    let body = if inner > 0 {
        kr..kr + blocks * BLOCK
    } else {
        0..0
    };
    for (i, d) in dst[body].chunks_exact_mut(BLOCK).enumerate() {
        let mut acc = [0f32; BLOCK];
        for (t, &c) in kern.iter().enumerate() {
            let s = &src[i * BLOCK + t..i * BLOCK + t + BLOCK];
            for (a, &v) in acc.iter_mut().zip(s) {
                *a += v * c;
            }
        }
        d.copy_from_slice(&acc);
    }
    for x in kr + blocks * BLOCK..kr + inner {
        let mut acc = 0f32;
        for (&a, &c) in src[x - kr..x + kr + 1].iter().zip(kern) {
            acc += a * c;
        }
        dst[x] = acc;
    }
    // Mirrored ends.
    let lo = kr.min(w);
    let hi = if inner > 0 { w - kr } else { lo };
    for x in (0..lo).chain(hi..w) {
        let mut acc = 0f32;
        for (t, &c) in kern.iter().enumerate() {
            let sx = reflect(x as isize + t as isize - kr as isize, w as isize);
            acc += src[sx] * c;
        }
        dst[x] = acc;
    }
}

crate::avx2_dispatch!(fn hblur_row_wide(src: &[f32], kern: &[f32], dst: &mut [f32]) => hblur_row);

/// Vertical Gaussian: `out[x] = sum_t rows[t][x] kern[t]` over the
/// `kern.len()` rows (each at least `out.len()` wide), summed in order
/// from 0.
#[inline(always)]
fn vblur_row(rows: &[&[f32]], kern: &[f32], out: &mut [f32]) {
    let w = out.len();
    if rows.len() < kern.len() || rows.iter().any(|r| r.len() < w) {
        return;
    }
    let blocks = w / BLOCK;
    for (i, d) in out[..blocks * BLOCK].chunks_exact_mut(BLOCK).enumerate() {
        let mut acc = [0f32; BLOCK];
        for (row, &c) in rows.iter().zip(kern) {
            let s = &row[i * BLOCK..i * BLOCK + BLOCK];
            for (a, &v) in acc.iter_mut().zip(s) {
                *a += v * c;
            }
        }
        d.copy_from_slice(&acc);
    }
    for x in blocks * BLOCK..w {
        let mut acc = 0f32;
        for (row, &c) in rows.iter().zip(kern) {
            acc += row[x] * c;
        }
        out[x] = acc;
    }
}

crate::avx2_dispatch!(fn vblur_row_wide(rows: &[&[f32]], kern: &[f32], out: &mut [f32]) => vblur_row);

/// Minimum and maximum of each value and its left and right neighbours
/// (clamped at the ends) of a finite row.
#[inline(always)]
fn range_row(src: &[f32], lo: &mut [f32], hi: &mut [f32]) {
    let w = src.len().min(lo.len()).min(hi.len());
    if w < 2 {
        return;
    }
    let min = |a: f32, b: f32| if b < a { b } else { a };
    let max = |a: f32, b: f32| if b > a { b } else { a };
    let n = w - 2;
    let (l, m, r) = (&src[..n], &src[1..n + 1], &src[2..n + 2]);
    for ((((lo, hi), &l), &m), &r) in lo[1..n + 1]
        .iter_mut()
        .zip(&mut hi[1..n + 1])
        .zip(l)
        .zip(m)
        .zip(r)
    {
        *lo = min(min(l, m), r);
        *hi = max(max(l, m), r);
    }
    lo[0] = min(src[0], src[1]);
    hi[0] = max(src[0], src[1]);
    lo[w - 1] = min(src[w - 2], src[w - 1]);
    hi[w - 1] = max(src[w - 2], src[w - 1]);
}

crate::avx2_dispatch!(fn range_row_wide(src: &[f32], lo: &mut [f32], hi: &mut [f32]) => range_row);

/// One output row where every value involved is finite: `mid` the row's
/// luminance, `blur` its Gaussian, `mn`/`mx` the row minima/maxima of
/// the rows above, at and below, `src` the row's R, G, B and `dst` where
/// the sharpened row goes; `k` = (amount, threshold, overshoot). Equals
/// [`apply_row_exact`] on such rows.
#[inline(always)]
fn apply_row(
    mid: &[f32],
    blur: &[f32],
    mn: [&[f32]; 3],
    mx: [&[f32]; 3],
    src: [&[f32]; 3],
    [r, g, b]: [&mut [f32]; 3],
    [amount, thr, os]: [f32; 3],
) {
    let w = mid
        .len()
        .min(blur.len())
        .min(r.len())
        .min(g.len())
        .min(b.len());
    let w = [mn, mx, src]
        .iter()
        .flatten()
        .fold(w, |w, s| w.min(s.len()));
    let (mid, blur, r, g, b) = (&mid[..w], &blur[..w], &mut r[..w], &mut g[..w], &mut b[..w]);
    let ([m0, m1, m2], [x0, x1, x2]) = (mn.map(|s| &s[..w]), mx.map(|s| &s[..w]));
    let [sr, sg, sb] = src.map(|s| &s[..w]);
    for x in 0..w {
        // Every load up front as a plain value: selects between loads in
        // place become masked (slow) memory access when vectorised.
        let (yv, bl) = (mid[x], blur[x]);
        let (a0, a1, a2, z0, z1, z2) = (m0[x], m1[x], m2[x], x0[x], x1[x], x2[x]);
        let (rv, gv, bv) = (sr[x], sg[x], sb[x]);
        let d = yv - bl;
        let m = d.abs() - thr;
        let m = if m > 0.0 { m } else { 0.0 };
        let dt = m.copysign(d);
        let lo = if a1 < a0 { a1 } else { a0 };
        let lo = if a2 < lo { a2 } else { lo };
        let hi = if z1 > z0 { z1 } else { z0 };
        let hi = if z2 > hi { z2 } else { hi };
        let ny = yv + amount * dt;
        let ny = if ny < lo - os { lo - os } else { ny };
        let ny = if ny > hi + os { hi + os } else { ny };
        let delta = ny - yv;
        let keep = dt == 0.0;
        r[x] = if keep { rv } else { rv + delta };
        g[x] = if keep { gv } else { gv + delta };
        b[x] = if keep { bv } else { bv + delta };
    }
}

crate::avx2_dispatch!(fn apply_row_wide(mid: &[f32], blur: &[f32], mn: [&[f32]; 3], mx: [&[f32]; 3], src: [&[f32]; 3], out: [&mut [f32]; 3], k: [f32; 3]) => apply_row);

/// One output row by the definition, pixel by pixel (any values: rows
/// holding NaN or infinities): `luma` the rows above, at and below;
/// otherwise as [`apply_row`].
fn apply_row_exact(
    [up, mid, dn]: [&[f32]; 3],
    blur: &[f32],
    src: [&[f32]; 3],
    [r, g, b]: [&mut [f32]; 3],
    [amount, thr, os]: [f32; 3],
) {
    let w = mid.len();
    for (d, s) in [&mut *r, &mut *g, &mut *b].into_iter().zip(src) {
        for (d, &v) in d.iter_mut().zip(s) {
            *d = v;
        }
    }
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
        let mut ny = yv + amount * dt;
        if ny < lo - os {
            ny = lo - os;
        }
        if ny > hi + os {
            ny = hi + os;
        }
        let delta = ny - yv;
        r[x] += delta;
        g[x] += delta;
        b[x] += delta;
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

    /// The unsharp mask by its definition, pixel by pixel (the op's
    /// original whole-frame code): every output must match it bit for bit.
    fn reference(p: &Params, img: &Image) -> Vec<f32> {
        let (w, h) = (img.width, img.height);
        let n = w * h;
        let kern = gaussian(p.radius);
        let kr = kern.len() / 2;
        let d = &img.data;
        let yp: Vec<f32> = (0..n)
            .map(|i| 0.2126 * d[i] + 0.7152 * d[n + i] + 0.0722 * d[2 * n + i])
            .collect();
        let rf = |i: isize, n: usize| reflect(i, n as isize);
        let mut hb = vec![0f32; n];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0f32;
                for (t, c) in kern.iter().enumerate() {
                    acc += yp[y * w + rf(x as isize + t as isize - kr as isize, w)] * c;
                }
                hb[y * w + x] = acc;
            }
        }
        let mut out = d.clone();
        for y in 0..h {
            for x in 0..w {
                let mut blur = 0f32;
                for (t, c) in kern.iter().enumerate() {
                    blur += hb[rf(y as isize + t as isize - kr as isize, h) * w + x] * c;
                }
                let yv = yp[y * w + x];
                let dd = yv - blur;
                let dt = dd.signum() * (dd.abs() - p.threshold).max(0.0);
                if dt == 0.0 {
                    continue;
                }
                let (mut lo, mut hi) = (yv, yv);
                for yy in [rf(y as isize - 1, h), y, rf(y as isize + 1, h)] {
                    for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                        lo = lo.min(yp[yy * w + xx]);
                        hi = hi.max(yp[yy * w + xx]);
                    }
                }
                let ny = (yv + p.amount * dt).clamp(lo - p.overshoot, hi + p.overshoot);
                for c in 0..3 {
                    out[c * n + y * w + x] += ny - yv;
                }
            }
        }
        out
    }

    /// Busy texture: a hash pattern over a soft edge, values 0..1.
    fn texture(x: usize, y: usize) -> [f32; 3] {
        let hsh = |k: usize| ((x * 73 + y * 151 + k * 17) * 2654435761usize % 1000) as f32 / 1000.0;
        let e = soft_edge(x, y);
        [
            0.5 * e[0] + 0.5 * hsh(0),
            0.6 * e[1] + 0.4 * hsh(1),
            0.7 * e[2] + 0.3 * hsh(2),
        ]
    }

    fn params(v: serde_json::Value) -> Params {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn whole_frame_matches_the_definition_bit_for_bit() {
        for (w, h) in [(37, 23), (70, 41), (5, 3), (2, 9)] {
            for v in [
                serde_json::json!({}),
                serde_json::json!({ "amount": 0.5, "radius": 0.8, "threshold": 0.004, "overshoot": 0.02 }),
                serde_json::json!({ "amount": 3.0, "radius": 0.3, "threshold": 0.0, "overshoot": 0.0 }),
                serde_json::json!({ "amount": 1.5, "radius": 2.5, "threshold": 0.01, "overshoot": 0.3 }),
            ] {
                let img = image(w, h, &texture);
                let want = reference(&params(v.clone()), &img);
                let got = run(v.clone(), img).data;
                let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{w}x{h} {v}");
            }
        }
    }

    /// A whole image as a stencil's row source.
    struct Whole<'a>(&'a Image);

    impl RowSource for Whole<'_> {
        fn row(&self, c: usize, y: isize) -> &[f32] {
            let (w, h) = (self.0.width, self.0.height);
            let y = reflect(y, h as isize);
            &self.0.data[c * w * h + y * w..c * w * h + (y + 1) * w]
        }
    }

    #[test]
    fn stencil_kernel_equals_the_whole_frame_path_on_any_values() {
        let (w, h) = (45, 31);
        let mut img = image(w, h, &texture);
        // Non-finite values take the by-definition path of their rows.
        img.data[7 * w + 3] = f32::NAN;
        img.data[w * h + 19 * w + 30] = f32::INFINITY;
        let v = serde_json::json!({ "amount": 0.9, "radius": 1.2, "threshold": 0.002 });
        let want = run(v.clone(), img.clone()).data;
        let st = compile(v).unwrap();
        let (Some((RowKernel::Stencil { halo, f }, _)), Some(shape)) = (
            st.row_kernel(&Header::of(&Value::Image(img.clone().into())).unwrap())
                .unwrap(),
            st.row_shape(),
        ) else {
            panic!("sharpen has a stencil kernel");
        };
        assert_eq!(halo, shape.halo);
        for strip in [1, 4, 16, 31] {
            let mut got = vec![-1f32; 3 * w * h];
            let n = w * h;
            let (r, gb) = got.split_at_mut(n);
            let (g, b) = gb.split_at_mut(n);
            for ((k, r), (g, b)) in r
                .chunks_mut(strip * w)
                .enumerate()
                .zip(g.chunks_mut(strip * w).zip(b.chunks_mut(strip * w)))
            {
                f(&Whole(&img), k * strip, [r, g, b]);
            }
            let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "strips of {strip}");
        }
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(compile(serde_json::json!({ "amount": -1.0 })).is_err());
        assert!(compile(serde_json::json!({ "radius": 0.0 })).is_err());
        assert!(compile(serde_json::json!({ "sigma": 1.0 })).is_err());
    }
}
