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
//! The Gaussian is applied as two symmetric 1-D passes (vertical, then
//! horizontal, the taps at `-j` and `+j` added before their weight, each
//! weight a fused multiply-add: `f32::mul_add` in the scalar code, the
//! same bits on every CPU, AVX-512, AVX2 or neither); it equals the
//! pixel-by-pixel definition within f32 rounding (tests: <= 1e-5).
//!
//! Input and output: planar RGB, same size and colour space; place it
//! after `srgb_encode` to sharpen perceptually (units of `threshold` and
//! `overshoot` are those of the image values, 1.0 = white). Row strips
//! with halos run in parallel; after a demosaic the op is a fused
//! segment's last member (a [`RowKernel::Stencil`]), sharpening each
//! strip while its rows are in cache. Both paths run [`Mask::strip`]:
//! identical pixels.
//!
//! Speed (12 MP synthetic frame, 1 thread, fused after `srgb_encode`,
//! 8-bit delivery; Intel Xeon, AVX-512, machine shared at load 4-4.5):
//! about 12 ms of CPU time per frame (perf task-clock samples in this op,
//! medians of 5-10 runs interleaved with the build before: 14.9 ms
//! before the 3x3 range was computed only for the vectors where the clamp
//! can bind, out of the main loop, 13.5 ms before the blur's fused
//! multiply-adds, 12.6 ms with chunks of 256 columns; then 12.2 -> 11.8
//! ms, wall 13.7 -> 12.8 ms, with the vectors started on the output's
//! cache lines and the finite check as `v - v`), still above issue 16's
//! 10 ms at 1 thread; two threads met it before. Per 16 pixels the
//! vector kernels do about 33 float operations (luminance 5 and 2 for the
//! finite check, vertical pass 7, mask about 19 where the clamp cannot
//! bind) and ~25 vector loads and 5 stores. The kernel is bound by issuing
//! those, not by memory: run alone on rows that stay in the L2 cache it
//! takes ~10 ms of CPU time (a copy of the same R, G, B bytes, 288 MB per
//! frame, ~3 ms); a vertical pass reading one ring row instead of seven
//! (all in L1) saved only ~0.6 ms; a branch-free list of the vectors to
//! clamp, with their steps kept, saved nothing. Buffers off cache lines
//! cost: outputs 16 bytes off ~1.1 ms, inputs ~0.8 ms (the fused segment's
//! scratch and strips were plain `Vec`s, 48 and 32 or 48 bytes off; the
//! ring and blur rows follow the output's phase).
//!
//! Then (load 4-5, where wall medians moved by several ms from run to
//! run; CPU time from perf samples, 2-4 kHz over 32 frames, interleaved):
//! the fused segment's strips and scratch planes put on cache lines
//! (`src/graph/fuse.rs`, `Lined`) took the op from 14.2 and 13.6 ms to
//! 12.5 and 12.7 (mask rows ~10 ms, luminance ~2.6); at a busier moment
//! 15.4, 16.4, 15.2 -> 15.6, 14.7, 14.7, and at 2 threads (CPU time of
//! both) 15.9, 16.6 -> 14.8, 15.0 (the machine's other work slows the
//! same code by 10-20 % in CPU time too). Column tiles down the
//! strip were tried and dropped: per group of 16 output rows (a ring of
//! `16 + 2 kr` luminance rows, so no slot a group reads is rewritten while
//! it runs), tiles left to right, each computing the luminance and vertical
//! blur of its columns and a line beyond, the luminance and output rows
//! interleaved, identical bits: 17.8 ms at tiles of 256 columns, 15.0 at
//! 1024, 15.6 at one tile, against 13.4 before (without the aligned
//! strips); the work per tile row outside the vector loops (row look-ups
//! through `RowSource`, the window, the kernels' set-up, ~80 ns) cost more
//! than the L1 cache saved. What rows in L1 can save, measured on narrow
//! frames of the same 12 MP: mask rows 11.0 ms at 4000 px wide, 8.8 at
//! 1024, 8.0 at 256; luminance 2.8, 2.5, 2.2. So tiles whose row loop runs
//! inside the vector kernel (pointers set once per group) might reach
//! ~10.5 ms of CPU time at 1 thread, not clearly below issue 16's 10.
//!
//! With `yuv_encode` after it in the same segment (the encoder takes the
//! stencil's rows from the L2-sized scratch instead of the op writing a
//! 144 MB frame; `src/graph/fuse.rs`), `bench --synthetic 4000x3000
//! --iters 5 --warmup 2`, 1 thread, AMD EPYC with AVX-512, a training job
//! on the other core: 9.17 / 9.43 ms -> 7.15 / 7.76 / 6.82 ms
//! (`yuv_encode` 9.86 / 9.04 -> 6.56 / 6.79 / 6.46 ms).

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Deserialize;

use super::row_kernel::{Header, RowKernel, RowShape, RowSource, StencilCarry, StencilFn};
use super::{check_range, one_input, parse_params, take_image, RunCtx, Stage};
use crate::backend::cpu::reflect;
use crate::backend::simd::Level;
#[cfg(target_arch = "x86_64")]
use crate::backend::simd::{has_avx2, has_avx512f};
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
                // The in-place path reads the frame's luminance: no carry.
                let mut carry = StencilCarry::default();
                SCRATCH.with(|s| {
                    mask.strip(
                        input,
                        w,
                        k * STRIP,
                        [r, g, b],
                        &mut s.borrow_mut(),
                        &mut carry,
                    )
                });
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
    /// strip's rows and their halo (the rows above kept in the carry from
    /// the call before, when it was the strip above), then the same
    /// arithmetic as the whole-frame path (identical pixels).
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space().is_none() {
            return Err(Error::invalid("expected an image"));
        }
        let (w, h) = (input.width, input.height);
        let mask = self.mask.clone();
        let kr = mask.kr();
        let skip = w < 2 || h < 2 || self.p.amount == 0.0;
        let f: StencilFn = Box::new(move |src, y0, [r, g, b], carry| {
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
            SCRATCH.with(|s| {
                mask.strip(
                    Input::Rows(src),
                    w,
                    y0,
                    [r, g, b],
                    &mut s.borrow_mut(),
                    carry,
                )
            });
        });
        Ok(Some((RowKernel::Stencil { halo: kr, f }, input.clone())))
    }
}

thread_local! {
    /// Per-thread scratch reused across strips and frames: [`Mask::strip`]'s
    /// working rows.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Most blur taps on each side (`radius` 5 needs 15).
const MAX_KR: usize = 15;

/// Floats per 64-byte cache line.
const LINE: usize = 16;

/// The first index `i` in `at .. at + LINE` where a cache line starts in
/// `buf`'s memory (the caller leaves room for the skipped values).
fn aligned(buf: &[f32], at: usize) -> usize {
    let line = (buf.as_ptr() as usize / std::mem::size_of::<f32>() + at) % LINE;
    at + (LINE - line) % LINE
}

/// Columns from `p` to the first that starts a cache line, modulo
/// `lanes` (the vector width in floats, a divisor of [`LINE`]): where a
/// row's vectors of `lanes` floats go whole into cache lines.
fn head(p: *const f32, lanes: usize) -> usize {
    let line = (p as usize / std::mem::size_of::<f32>()) % LINE;
    (LINE - line) % LINE % lanes.max(1)
}

/// The phase of `p` in its cache line, in floats (0 .. [`LINE`]).
fn phase(p: *const f32) -> usize {
    (p as usize / std::mem::size_of::<f32>()) % LINE
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
    /// `w` wide) from `input`. The luminance rows of the window (image
    /// rows `y0 - kr ..`, mirrored) stream through a ring of `2 kr + 1`
    /// rows in `carry` (image row `y` in slot `(y + kr) % (2 kr + 1)`; a
    /// call that continues the carry's last one finds the `2 kr` rows
    /// above its first there and computes only the rows below); per output
    /// row, [`mask_row`] (the window's vertical blur, padded with `kr`
    /// mirrored columns each side, then the horizontal blur, threshold and
    /// clamp per pixel, chunk by chunk; the 3x3 range only where the clamp
    /// can bind). `scratch` is reused working memory.
    fn strip(
        &self,
        input: Input,
        w: usize,
        y0: usize,
        [r, g, b]: [&mut [f32]; 3],
        scratch: &mut Vec<f32>,
        carry: &mut StencilCarry,
    ) {
        let kr = self.kernel.len() / 2;
        let taps = 2 * kr + 1;
        let rows = r.len() / w.max(1);
        if w < 2 || kr == 0 || kr > MAX_KR || taps != self.kernel.len() {
            return;
        }
        // The taps from the centre out: half[j] weighs offsets -j and +j.
        let half = &self.kernel[kr..];
        let k = [self.amount, self.thr, self.os];
        let level = Level::best();
        // The vector kernels start each row at its first column whose red
        // output begins a cache line ([`head`]); the working rows share the
        // output's phase `ph` in their lines, so that column starts one in
        // them too and their vector loads and stores do not straddle two.
        let ph = phase(r.as_ptr());
        // The padded vertical blur (column 0 at phase `ph`), the blur for
        // rows with non-finite values and the in-place path's copy of its
        // input.
        scratch.resize((w + 2 * kr) + 4 * w + 2 * LINE, 0.0);
        let rest = &mut scratch[..];
        let at = aligned(rest, kr) - kr + ph;
        let (vb, rest) = rest[at..].split_at_mut(w + 2 * kr);
        let (blur, rest) = rest.split_at_mut(w);
        let copy = &mut rest[..3 * w];
        // Window rows already in the ring (a continued call: the 2 kr rows
        // above y0 + kr), and whether each slot's row is all finite.
        let mut in_place_finite = [false; 2 * MAX_KR + 1];
        // Ring rows start at phase `ph` of a cache line, the one of the
        // call that started the ring (`carry.phase`; `stride` floats apart;
        // the buffer keeps its address while its length does, so a
        // continued call finds its rows at the same offset).
        let stride = w.next_multiple_of(LINE);
        let (first, ring, finite) = match input {
            Input::Rows(_) => {
                let cont = carry.next == Some(y0)
                    && carry.buf.len() == taps * stride + 2 * LINE
                    && carry.flags.len() == taps
                    && carry.phase < LINE;
                carry.next = None;
                carry.buf.resize(taps * stride + 2 * LINE, 0.0);
                carry.flags.resize(taps, false);
                if !cont {
                    carry.phase = ph;
                }
                let at = aligned(&carry.buf, 0) + carry.phase;
                (
                    if cont { 2 * kr } else { 0 },
                    &mut carry.buf[at..at + taps * stride],
                    &mut carry.flags[..],
                )
            }
            Input::InPlace { .. } => (0, &mut [][..], &mut in_place_finite[..taps]),
        };
        let slot = |y: usize| (y % taps) * stride..(y % taps) * stride + w;
        for t in first..rows + 2 * kr {
            // Window position t: image row y0 + t - kr, ring slot (y0 + t) % taps.
            let y = y0 as isize + t as isize - kr as isize;
            finite[(y0 + t) % taps] = match input {
                Input::Rows(src) => luma_row_wide(
                    src.row(0, y),
                    src.row(1, y),
                    src.row(2, y),
                    &mut ring[slot(y0 + t)],
                ),
                Input::InPlace { finite, h, .. } => finite[reflect(y, h as isize)],
            };
            let Some(oy) = t.checked_sub(2 * kr) else {
                continue;
            };
            // Output row oy: window positions oy ..= t, centre oy + kr.
            let ring = &*ring;
            let win: [&[f32]; 2 * MAX_KR + 1] = std::array::from_fn(|i| {
                if i >= taps {
                    return &[][..];
                }
                match input {
                    Input::Rows(_) => &ring[slot(y0 + oy + i)],
                    Input::InPlace { luma, h, .. } => {
                        let sy = reflect((y0 + oy + i) as isize - kr as isize, h as isize);
                        &luma[sy * w..(sy + 1) * w]
                    }
                }
            });
            let win = &win[..taps];
            let o = oy * w..(oy + 1) * w;
            let out = [&mut r[o.clone()], &mut g[o.clone()], &mut b[o]];
            let src_rows = match input {
                Input::Rows(src) => {
                    let y = (y0 + oy) as isize;
                    Some([src.row(0, y), src.row(1, y), src.row(2, y)])
                }
                Input::InPlace { .. } => None,
            };
            let src_rows = match src_rows {
                Some(rows) => rows,
                None => {
                    let (cr, cgb) = copy.split_at_mut(w);
                    let (cg, cb) = cgb.split_at_mut(w);
                    for (d, s) in [&mut *cr, &mut *cg, &mut *cb].into_iter().zip(&out) {
                        d.copy_from_slice(&s[..w]);
                    }
                    [&*cr, &*cg, &*cb]
                }
            };
            if (oy..=t).all(|u| finite[(y0 + u) % taps]) {
                mask_row(level, win, half, k, vb, src_rows, out);
                continue;
            }
            vblur_row(level, win, half, &mut vb[kr..kr + w]);
            mirror_pad(vb, kr);
            for (x, v) in blur.iter_mut().enumerate() {
                *v = hblur_at(vb, half, x);
            }
            let near = [win[kr - 1], win[kr], win[kr + 1]];
            apply_row_exact(near, blur, src_rows, out, k);
        }
        if let Input::Rows(_) = input {
            carry.next = Some(y0 + rows);
        }
    }
}

/// Columns per step of [`mask_row`]: the vertical pass of one chunk, then
/// the mask of the chunk before it, so the blurred values it passes on
/// (512 bytes per chunk) are read back from the L1 cache (128 measured
/// about 0.5 ms faster per 12 MP frame than 256, and 512 slower).
const CHUNK: usize = 128;

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
    // `v - v` is +0.0 (bits 0) for every finite `v`, NaN for infinities
    // and NaN: two vector operations per 16 values, no compare.
    let mut bad = 0u32;
    for (((o, &r), &g), &b) in out.iter_mut().zip(r).zip(g).zip(b) {
        let v = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        // On purpose: zero for finite values only.
        #[allow(clippy::eq_op)]
        let z = v - v;
        bad |= z.to_bits();
        *o = v;
    }
    bad == 0
}

crate::avx512_dispatch!(fn luma_row_wide(r: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) -> bool => luma_row);

// The blur and the mask per row: a scalar definition (`*_tail`, also the
// vector kernels' last columns) and vector copies (AVX2, AVX-512) that
// compute the same operations in the same order per column, so both give
// identical bits (the blur's weights as fused multiply-adds everywhere,
// `f32::mul_add` in the scalar code; no other fusing). The blur is
// separable and symmetric: per direction `half[0] v[0] + sum_j half[j]
// (v[-j] + v[+j])`, summed in order of `j`, vertically first.

/// Vertical Gaussian of the window's luminance rows, `out[x] = half[0]
/// rows[kr][x] + sum_j half[j] (rows[kr - j][x] + rows[kr + j][x])`
/// (`kr = half.len() - 1`), for the columns `x0 ..`.
#[inline(always)]
fn vblur_tail(rows: &[&[f32]], half: &[f32], out: &mut [f32], x0: usize) {
    let kr = half.len() - 1;
    for x in x0..out.len() {
        let mut acc = rows[kr][x] * half[0];
        for j in 1..=kr {
            acc = (rows[kr - j][x] + rows[kr + j][x]).mul_add(half[j], acc);
        }
        out[x] = acc;
    }
}

/// The 3-row minimum and maximum of column `x` of the rows above, at and
/// below (`c.min(u)`, then `d.min(..)`, as the vector kernels).
#[inline(always)]
fn col_range([up, mid, dn]: [&[f32]; 3], x: usize) -> (f32, f32) {
    let (u, c, d) = (up[x], mid[x], dn[x]);
    let m = if c < u { c } else { u };
    let m = if d < m { d } else { m };
    let z = if c > u { c } else { u };
    let z = if d > z { d } else { z };
    (m, z)
}

/// The 3x3 luminance range at column `x` of a `w`-wide row (columns
/// beyond the ends repeat them) widened by `os`: `(min - os, max + os)`,
/// the centre column's values taken first, then the left's, then the
/// right's (as the vector kernels).
#[inline(always)]
fn range_at(near: [&[f32]; 3], w: usize, x: usize, os: f32) -> (f32, f32) {
    let (xl, xr) = (x.saturating_sub(1), (x + 1).min(w - 1));
    let (cm, cz) = col_range(near, x);
    let (lm, lz) = col_range(near, xl);
    let (rm, rz) = col_range(near, xr);
    let l = if cm < lm { cm } else { lm };
    let l = if rm < l { rm } else { l };
    let h = if cz > lz { cz } else { lz };
    let h = if rz > h { rz } else { h };
    (l - os, h + os)
}

/// Horizontal Gaussian at column `x` of a padded row (`vb[kr + x]` is
/// column `x`, `kr` mirrored values each side), summed as [`vblur_tail`].
#[inline(always)]
fn hblur_at(vb: &[f32], half: &[f32], x: usize) -> f32 {
    let kr = half.len() - 1;
    let mut acc = vb[kr + x] * half[0];
    for j in 1..=kr {
        acc = (vb[kr + x - j] + vb[kr + x + j]).mul_add(half[j], acc);
    }
    acc
}

/// Output pixels `x0 ..` of one row whose values are all finite: `vb` the
/// padded vertical blur, `near` the luminance rows above, at and below
/// (the centre `mid` the row's own), `src` its R, G, B; `k` = (amount,
/// threshold, overshoot). The soft threshold is `d - clamp(d, -threshold,
/// threshold)` (three operations; the same values as `sign(d) max(|d| -
/// threshold, 0)`). The clamp to the widened 3x3 range is computed only
/// where the step `amount d'` exceeds the overshoot: elsewhere the range
/// holds `y + step` (it holds `y +- os`, and rounding is monotonic), so
/// the clamp would return its input.
#[inline(always)]
fn apply_tail(
    vb: &[f32],
    half: &[f32],
    near: [&[f32]; 3],
    src: [&[f32]; 3],
    out: [&mut [f32]; 3],
    k: [f32; 3],
    x0: usize,
) {
    apply_cols(vb, half, near, src, out, k, x0, near[1].len());
}

/// [`apply_tail`] for the columns `x0 .. x1` only (`x1 <= w`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn apply_cols(
    vb: &[f32],
    half: &[f32],
    near: [&[f32]; 3],
    src: [&[f32]; 3],
    [r, g, b]: [&mut [f32]; 3],
    [amount, thr, os]: [f32; 3],
    x0: usize,
    x1: usize,
) {
    let mid = near[1];
    let w = mid.len();
    for x in x0..x1.min(w) {
        let y = mid[x];
        let d = y - hblur_at(vb, half, x);
        // The soft threshold sign(d) max(|d| - thr, 0) as d - clamp(d,
        // -thr, thr) (the same values: d - thr and d + thr round alike).
        let c = if d < thr { d } else { thr };
        let c = if c > -thr { c } else { -thr };
        let step = amount * (d - c);
        let mut ny = y + step;
        if step.abs() > os {
            let (l, h) = range_at(near, w, x, os);
            ny = if l > ny { l } else { ny };
            ny = if h < ny { h } else { ny };
        }
        // Zero where the detail is below the threshold (the range holds y).
        let dl = ny - y;
        r[x] = src[0][x] + dl;
        g[x] = src[1][x] + dl;
        b[x] = src[2][x] + dl;
    }
}

/// The vector copies of [`vblur_tail`] and [`apply_tail`], `KR` taps each
/// side (unrolled per radius by [`by_kr`]), and of [`mask_row`]: one body
/// generic over the vector type ([`wide::Lanes`]), compiled per level in
/// [`wide::avx2`] (8 lanes) and [`wide::avx512`] (16 lanes).
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{CHUNK, MAX_KR};
    use std::arch::x86_64::*;

    /// A vector of f32 lanes and the operations the kernels use, one
    /// instruction each, the same per lane at every width.
    ///
    /// # Safety
    /// The methods run only inlined into a function compiled for the
    /// type's instruction set, on a CPU that has it.
    pub trait Lanes: Copy {
        /// Lanes per vector.
        const N: usize;
        unsafe fn splat(v: f32) -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn store(self, p: *mut f32);
        unsafe fn add(self, b: Self) -> Self;
        unsafe fn sub(self, b: Self) -> Self;
        unsafe fn mul(self, b: Self) -> Self;
        /// `self * b + c`, rounded once (fused multiply-add).
        unsafe fn fma(self, b: Self, c: Self) -> Self;
        /// `self < b ? self : b` per lane (the scalar code's `if`).
        unsafe fn min(self, b: Self) -> Self;
        /// `self > b ? self : b` per lane.
        unsafe fn max(self, b: Self) -> Self;
        /// The sign bit cleared.
        unsafe fn abs(self) -> Self;
        /// Whether `self > b` in any lane.
        unsafe fn any_gt(self, b: Self) -> bool;
    }

    /// `impl Lanes` for one vector type: the lane count, the intrinsics of
    /// splat / load / store and of the binary operations, and `abs` /
    /// `any_gt` as written.
    macro_rules! lanes {
        ($t:ty, $n:expr, $set1:ident, $load:ident, $store:ident,
         [$($op:ident = $f:ident),*], { $($bits:item)* }) => {
            impl Lanes for $t {
                const N: usize = $n;
                #[inline(always)]
                unsafe fn splat(v: f32) -> Self {
                    $set1(v)
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    $load(p)
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    $store(p, self)
                }
                $(
                    #[inline(always)]
                    unsafe fn $op(self, b: Self) -> Self {
                        $f(self, b)
                    }
                )*
                $($bits)*
            }
        };
    }

    lanes!(
        __m256,
        8,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        [
            add = _mm256_add_ps,
            sub = _mm256_sub_ps,
            mul = _mm256_mul_ps,
            min = _mm256_min_ps,
            max = _mm256_max_ps
        ],
        {
            #[inline(always)]
            unsafe fn fma(self, b: Self, c: Self) -> Self {
                _mm256_fmadd_ps(self, b, c)
            }
            #[inline(always)]
            unsafe fn abs(self) -> Self {
                _mm256_and_ps(self, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)))
            }
            #[inline(always)]
            unsafe fn any_gt(self, b: Self) -> bool {
                _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(self, b)) != 0
            }
        }
    );

    // AVX-512F alone (no DQ): the bit operations on the integer view.
    lanes!(
        __m512,
        16,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        [
            add = _mm512_add_ps,
            sub = _mm512_sub_ps,
            mul = _mm512_mul_ps,
            min = _mm512_min_ps,
            max = _mm512_max_ps
        ],
        {
            #[inline(always)]
            unsafe fn fma(self, b: Self, c: Self) -> Self {
                _mm512_fmadd_ps(self, b, c)
            }
            #[inline(always)]
            unsafe fn abs(self) -> Self {
                let m = _mm512_set1_epi32(0x7fff_ffff);
                _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(self), m))
            }
            #[inline(always)]
            unsafe fn any_gt(self, b: Self) -> bool {
                _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self, b) != 0
            }
        }
    );

    /// Runs `$step!(x)` on the vectors (`$n` lanes) of columns `$x0 ..
    /// $x1`, two per turn (the loop's own work and the reloads of row
    /// pointers the registers cannot hold count once per two vectors),
    /// then one; returns the first column not done.
    macro_rules! two_per_turn {
        ($step:ident, $n:expr, $x0:expr, $x1:expr) => {{
            let (mut x, x1, n) = ($x0, $x1, $n);
            while x + 2 * n <= x1 {
                $step!(x);
                $step!(x + n);
                x += 2 * n;
            }
            while x + n <= x1 {
                $step!(x);
                x += n;
            }
            x
        }};
    }

    /// The window rows' pointers and the taps as vectors.
    type Taps<V> = ([*const f32; 2 * MAX_KR + 1], [V; MAX_KR + 1]);

    #[inline(always)]
    unsafe fn taps<V: Lanes>(rows: &[&[f32]], half: &[f32]) -> Taps<V> {
        let mut p = [std::ptr::null::<f32>(); 2 * MAX_KR + 1];
        for (p, r) in p.iter_mut().zip(rows) {
            *p = r.as_ptr();
        }
        let mut hv = [V::splat(0.0); MAX_KR + 1];
        for (h, &c) in hv.iter_mut().zip(half) {
            *h = V::splat(c);
        }
        (p, hv)
    }

    /// [`super::vblur_tail`] on whole vectors of the columns `x0 .. x1`;
    /// returns the first column not done.
    #[inline(always)]
    unsafe fn vblur_span<V: Lanes, const KR: usize>(
        (p, hv): &Taps<V>,
        out: &mut [f32],
        x0: usize,
        x1: usize,
    ) -> usize {
        let o = out.as_mut_ptr();
        // One vector of columns from `x`.
        macro_rules! step {
            ($x:expr) => {{
                let x = $x;
                let mut a = V::load(p[KR].add(x)).mul(hv[0]);
                for j in 1..=KR {
                    let s = V::load(p[KR - j].add(x)).add(V::load(p[KR + j].add(x)));
                    a = s.fma(hv[j], a);
                }
                a.store(o.add(x));
            }};
        }
        two_per_turn!(step, V::N, x0, x1)
    }

    /// The widened 3x3 range of the vector of columns from `x` (`w` the
    /// rows' width, `p` the rows above, at and below): [`super::range_at`]
    /// per lane. Inside the row, from the columns' 3-row minima and maxima
    /// at `x - 1`, `x` and `x + 1`; at its ends, lane by lane.
    #[inline(always)]
    unsafe fn range<V: Lanes>(p: [*const f32; 3], w: usize, x: usize, os: f32) -> (V, V) {
        let osv = V::splat(os);
        if x >= 1 && x + V::N < w {
            // c.min(u) = c < u ? c : u, as the scalar code.
            let col = |x: usize| {
                let (u, c, d) = (
                    V::load(p[0].add(x)),
                    V::load(p[1].add(x)),
                    V::load(p[2].add(x)),
                );
                (d.min(c.min(u)), d.max(c.max(u)))
            };
            let (cm, cz) = col(x);
            let (lm, lz) = col(x - 1);
            let (rm, rz) = col(x + 1);
            return (rm.min(cm.min(lm)).sub(osv), rz.max(cz.max(lz)).add(osv));
        }
        let near = p.map(|q| std::slice::from_raw_parts(q, w));
        let (mut l, mut h) = ([0f32; 16], [0f32; 16]);
        for i in 0..V::N.min(16) {
            (l[i], h[i]) = super::range_at(near, w, x + i, os);
        }
        (V::load(l.as_ptr()), V::load(h.as_ptr()))
    }

    /// [`super::apply_tail`] on whole vectors of the columns `x0 .. x1`
    /// (`k` = amount, threshold, overshoot; `near` the luminance rows
    /// above, at and below); returns the first column not done. A vector
    /// whose steps `amount d'` all stay within the overshoot skips the
    /// clamp (it would return its input, see [`super::apply_tail`]); one
    /// where any does clamps every lane (the same bits).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn apply_span<V: Lanes, const KR: usize>(
        (_, hv): &Taps<V>,
        vb: &[f32],
        near: [&[f32]; 3],
        src: [&[f32]; 3],
        [r, g, b]: [&mut [f32]; 3],
        k: [f32; 3],
        x0: usize,
        x1: usize,
    ) -> usize {
        let v = vb.as_ptr().add(KR);
        let w = near[1].len();
        let np = near.map(|s| s.as_ptr());
        let yp = np[1];
        let [sr, sg, sb] = src.map(|s| s.as_ptr());
        let (dr, dg, db) = (r.as_mut_ptr(), g.as_mut_ptr(), b.as_mut_ptr());
        let amount = V::splat(k[0]);
        let thr = V::splat(k[1]);
        let nthr = V::splat(-k[1]);
        let os = V::splat(k[2]);
        // The luminance of the vector of columns from `x` and its step
        // `amount d'`.
        macro_rules! detail {
            ($x:expr) => {{
                let x = $x;
                let mut bl = V::load(v.add(x)).mul(hv[0]);
                // Indexed (not an iterator over `hv`): the loop stays
                // unrolled with the taps in registers.
                #[allow(clippy::needless_range_loop)]
                for j in 1..=KR {
                    let s = V::load(v.add(x).sub(j)).add(V::load(v.add(x + j)));
                    bl = s.fma(hv[j], bl);
                }
                let y = V::load(yp.add(x));
                let d = y.sub(bl);
                // d.min(thr) = d < thr ? d : thr, as the scalar code.
                let m = d.sub(d.min(thr).max(nthr));
                (y, amount.mul(m))
            }};
        }
        // The output from the new luminance `ny` of the columns from `x`.
        macro_rules! put {
            ($x:expr, $y:expr, $ny:expr) => {{
                let (x, dl) = ($x, $ny.sub($y));
                V::load(sr.add(x)).add(dl).store(dr.add(x));
                V::load(sg.add(x)).add(dl).store(dg.add(x));
                V::load(sb.add(x)).add(dl).store(db.add(x));
            }};
        }
        // Per block of CHUNK columns: every vector unclamped, noting those
        // with a step beyond the overshoot (elsewhere the clamp changes
        // nothing: the widened range holds y +- os), then those again with
        // the clamp (out of the main loop: its registers stay for it).
        let mut fix = [0usize; CHUNK / 8];
        let mut x = x0;
        while x < x1 {
            let end = (x + CHUNK).min(x1);
            let mut nf = 0;
            macro_rules! step {
                ($x:expr) => {{
                    let x = $x;
                    let (y, step) = detail!(x);
                    if step.abs().any_gt(os) {
                        // SAFETY: one entry per vector of the block, at
                        // most CHUNK / 8.
                        *fix.get_unchecked_mut(nf) = x;
                        nf += 1;
                    }
                    put!(x, y, y.add(step));
                }};
            }
            let done = two_per_turn!(step, V::N, x, end);
            for &x in fix.get_unchecked(..nf) {
                let (y, step) = detail!(x);
                let (l, h) = range::<V>(np, w, x, k[2]);
                put!(x, y, h.min(l.max(y.add(step))));
            }
            if done < end {
                return done;
            }
            x = end;
        }
        x
    }

    /// [`super::vblur_tail`] a vector at a time (the preconditions of the
    /// per-level entry points below).
    #[inline(always)]
    unsafe fn vblur<V: Lanes, const KR: usize>(rows: &[&[f32]], half: &[f32], out: &mut [f32]) {
        let t = taps::<V>(rows, half);
        let w = out.len();
        let x = vblur_span::<V, KR>(&t, out, 0, w);
        super::vblur_tail(rows, half, out, x);
    }

    /// [`super::apply_tail`] a vector at a time.
    #[inline(always)]
    unsafe fn apply<V: Lanes, const KR: usize>(
        vb: &[f32],
        half: &[f32],
        near: [&[f32]; 3],
        src: [&[f32]; 3],
        [r, g, b]: [&mut [f32]; 3],
        k: [f32; 3],
    ) {
        let t = taps::<V>(&[], half);
        let w = near[1].len();
        let out = [&mut *r, &mut *g, &mut *b];
        let x = apply_span::<V, KR>(&t, vb, near, src, out, k, 0, w);
        super::apply_tail(vb, half, near, src, [r, g, b], k, x);
    }

    /// [`super::mask_row`]: per chunk of [`CHUNK`] columns, the vertical
    /// pass, then the mask of the chunk before (whose horizontal taps reach
    /// into this one), the pads once their columns exist. The chunks start
    /// at the first column whose red output is on a cache line ([`head`]);
    /// the columns before it go by the scalar code, so where the buffers
    /// share that phase (the caller arranges it for its own) every vector
    /// store and most loads touch one cache line, not two.
    #[inline(always)]
    unsafe fn mask_row<V: Lanes, const KR: usize>(
        rows: &[&[f32]],
        half: &[f32],
        k: [f32; 3],
        vb: &mut [f32],
        src: [&[f32]; 3],
        [r, g, b]: [&mut [f32]; 3],
    ) {
        let w = r.len();
        let t = taps::<V>(rows, half);
        let near = [rows[KR - 1], rows[KR], rows[KR + 1]];
        let a = super::head(r.as_ptr(), V::N).min(w);
        // The columns before the first vector, by the scalar code.
        super::vblur_tail(rows, half, &mut vb[KR..KR + a], 0);
        let chunks = (w - a).div_ceil(CHUNK);
        if chunks == 0 {
            super::mirror_pad(vb, KR);
            super::apply_tail(vb, half, near, src, [r, g, b], k, 0);
            return;
        }
        for c in 0..chunks {
            let (x0, x1) = (a + c * CHUNK, (a + (c + 1) * CHUNK).min(w));
            let x = vblur_span::<V, KR>(&t, &mut vb[KR..KR + w], x0, x1);
            if c == 0 && chunks > 1 {
                // Columns 1 ..= KR are done (KR < CHUNK).
                super::mirror_left(vb, KR);
            }
            if c + 1 < chunks {
                let out = [&mut *r, &mut *g, &mut *b];
                if c > 0 {
                    apply_span::<V, KR>(&t, vb, near, src, out, k, x0 - CHUNK, x0);
                } else {
                    super::apply_cols(vb, half, near, src, out, k, 0, a);
                }
                continue;
            }
            // The last chunk: the columns left of the vertical pass, the
            // right pads (and the left ones of a one-chunk row), the masks
            // still to do.
            super::vblur_tail(rows, half, &mut vb[KR..KR + w], x);
            if chunks == 1 {
                super::mirror_left(vb, KR);
            }
            super::mirror_right(vb, KR);
            let out = [&mut *r, &mut *g, &mut *b];
            if c > 0 {
                apply_span::<V, KR>(&t, vb, near, src, out, k, x0 - CHUNK, x0);
            } else {
                super::apply_cols(vb, half, near, src, out, k, 0, a);
            }
            let out = [&mut *r, &mut *g, &mut *b];
            let x = apply_span::<V, KR>(&t, vb, near, src, out, k, x0, x1);
            super::apply_tail(vb, half, near, src, [r, g, b], k, x);
        }
    }

    /// The entry points of one level: the generic bodies above compiled
    /// with its instruction set enabled.
    macro_rules! level {
        ($(#[$m:meta])* $name:ident, $feature:literal, $v:ty) => {
            $(#[$m])*
            pub mod $name {
                use super::*;

                /// [`super::super::vblur_tail`] a vector at a time.
                ///
                /// # Safety
                /// The CPU has the level's instruction set; `half.len() ==
                /// KR + 1 <= MAX_KR + 1`, `rows.len() == 2 KR + 1`, every
                /// row at least `out.len()` long.
                #[target_feature(enable = $feature)]
                pub unsafe fn vblur<const KR: usize>(rows: &[&[f32]], half: &[f32], out: &mut [f32]) {
                    super::vblur::<$v, KR>(rows, half, out)
                }

                /// [`super::super::apply_tail`] a vector at a time.
                ///
                /// # Safety
                /// The CPU has the level's instruction set; `half.len() ==
                /// KR + 1 <= MAX_KR + 1`; the `near` rows `w` long (`w >=
                /// 1`), `vb` at least `w + 2 KR`, the `src` and `out` rows
                /// at least `w`.
                #[target_feature(enable = $feature)]
                pub unsafe fn apply<const KR: usize>(
                    vb: &[f32],
                    half: &[f32],
                    near: [&[f32]; 3],
                    src: [&[f32]; 3],
                    out: [&mut [f32]; 3],
                    k: [f32; 3],
                ) {
                    super::apply::<$v, KR>(vb, half, near, src, out, k)
                }

                /// [`super::super::mask_row`] [`CHUNK`] columns at a time.
                ///
                /// # Safety
                /// The CPU has the level's instruction set; `half.len() ==
                /// KR + 1 <= MAX_KR + 1`, `KR < CHUNK`, `rows.len() ==
                /// 2 KR + 1`; the rows, `src` and `out` `w` long (`w >= 1`),
                /// `vb` `w + 2 KR`.
                #[target_feature(enable = $feature)]
                pub unsafe fn mask_row<const KR: usize>(
                    rows: &[&[f32]],
                    half: &[f32],
                    k: [f32; 3],
                    vb: &mut [f32],
                    src: [&[f32]; 3],
                    out: [&mut [f32]; 3],
                ) {
                    super::mask_row::<$v, KR>(rows, half, k, vb, src, out)
                }
            }
        };
    }

    level!(
        /// AVX2 and FMA, 8 lanes.
        avx2,
        "avx2,fma",
        __m256
    );
    level!(
        /// AVX-512F (and FMA), 16 lanes.
        avx512,
        "avx512f,fma",
        __m512
    );
}

/// Whether this CPU has AVX2 and FMA (the 8-lane kernels' instruction
/// sets).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    has_avx2() && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU has AVX-512F and FMA (the 16-lane kernels' instruction
/// sets; every AVX-512F CPU has FMA, but the kernels are compiled for both).
#[cfg(target_arch = "x86_64")]
fn has_avx512f_fma() -> bool {
    has_avx512f() && std::arch::is_x86_feature_detected!("fma")
}

/// Calls `f::<KR>(args)` with the const `KR` equal to `kr` (1 ..= 15).
#[cfg(target_arch = "x86_64")]
macro_rules! by_kr {
    ($kr:expr, $($f:ident)::+ ($($a:expr),*)) => {
        match $kr {
            1 => $($f)::+::<1>($($a),*),
            2 => $($f)::+::<2>($($a),*),
            3 => $($f)::+::<3>($($a),*),
            4 => $($f)::+::<4>($($a),*),
            5 => $($f)::+::<5>($($a),*),
            6 => $($f)::+::<6>($($a),*),
            7 => $($f)::+::<7>($($a),*),
            8 => $($f)::+::<8>($($a),*),
            9 => $($f)::+::<9>($($a),*),
            10 => $($f)::+::<10>($($a),*),
            11 => $($f)::+::<11>($($a),*),
            12 => $($f)::+::<12>($($a),*),
            13 => $($f)::+::<13>($($a),*),
            14 => $($f)::+::<14>($($a),*),
            _ => $($f)::+::<15>($($a),*),
        }
    };
}

/// One output row whose window rows are all finite: `win` the `2 kr + 1`
/// luminance rows (`w` wide, centre `win[kr]`), `k` = (amount, threshold,
/// overshoot), `vb` (`w + 2 kr`) a working row, `src` the row's R, G, B
/// and `out` its sharpened R, G, B. The same values as [`vblur_row`],
/// [`mirror_pad`] and [`apply_row`] over the whole row;
/// the vector copies (`level`, where the CPU has it) make them [`CHUNK`]
/// columns at a time, so what the vertical pass hands the mask is still in
/// the L1 cache.
fn mask_row(
    level: Level,
    win: &[&[f32]],
    half: &[f32],
    k: [f32; 3],
    vb: &mut [f32],
    src: [&[f32]; 3],
    [r, g, b]: [&mut [f32]; 3],
) {
    let kr = half.len().saturating_sub(1);
    let w = r.len();
    if kr == 0
        || kr > MAX_KR
        || w == 0
        || win.len() != 2 * kr + 1
        || win.iter().any(|row| row.len() != w)
        || vb.len() != w + 2 * kr
        || src.iter().any(|p| p.len() != w)
        || [&*g, &*b].iter().any(|p| p.len() != w)
    {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let out = [r, g, b];
        // SAFETY: each level's instruction set checked at run time; the
        // lengths just above (kr <= MAX_KR < CHUNK).
        match level {
            Level::Avx512 if has_avx512f_fma() => unsafe {
                by_kr!(kr, wide::avx512::mask_row(win, half, k, vb, src, out))
            },
            Level::Avx2 | Level::Avx512 if has_avx2_fma() => unsafe {
                by_kr!(kr, wide::avx2::mask_row(win, half, k, vb, src, out))
            },
            _ => mask_row_scalar(win, half, k, vb, src, out),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    mask_row_scalar(win, half, k, vb, src, [r, g, b]);
}

/// [`mask_row`] by the scalar definition (the lengths checked there).
fn mask_row_scalar(
    win: &[&[f32]],
    half: &[f32],
    k: [f32; 3],
    vb: &mut [f32],
    src: [&[f32]; 3],
    out: [&mut [f32]; 3],
) {
    let kr = half.len() - 1;
    let w = vb.len() - 2 * kr;
    vblur_row(Level::Scalar, win, half, &mut vb[kr..kr + w]);
    mirror_pad(vb, kr);
    let near = [win[kr - 1], win[kr], win[kr + 1]];
    apply_row(Level::Scalar, vb, half, near, src, out, k);
}

/// [`vblur_tail`] over the columns of `out` (the rows `out.len()` wide),
/// by the vector copy of `level` where the CPU has it.
fn vblur_row(level: Level, rows: &[&[f32]], half: &[f32], out: &mut [f32]) {
    let w = out.len();
    let kr = half.len().saturating_sub(1);
    if kr == 0 || kr > MAX_KR || rows.len() != 2 * kr + 1 || rows.iter().any(|r| r.len() < w) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: each level's instruction set checked at run time; the
    // lengths just above.
    match level {
        Level::Avx512 if has_avx512f_fma() => unsafe {
            by_kr!(kr, wide::avx512::vblur(rows, half, out))
        },
        Level::Avx2 | Level::Avx512 if has_avx2_fma() => unsafe {
            by_kr!(kr, wide::avx2::vblur(rows, half, out))
        },
        _ => vblur_tail(rows, half, out, 0),
    }
    #[cfg(not(target_arch = "x86_64"))]
    vblur_tail(rows, half, out, 0);
}

/// [`apply_tail`] over the row (all values finite; `near` the luminance
/// rows above, at and below, `w` wide), by the vector copy of `level`
/// where the CPU has it.
fn apply_row(
    level: Level,
    vb: &[f32],
    half: &[f32],
    near: [&[f32]; 3],
    src: [&[f32]; 3],
    out: [&mut [f32]; 3],
    k: [f32; 3],
) {
    let w = near[1].len();
    let kr = half.len().saturating_sub(1);
    if kr == 0
        || kr > MAX_KR
        || w == 0
        || near.iter().any(|s| s.len() != w)
        || vb.len() < w + 2 * kr
        || src.iter().any(|s| s.len() < w)
        || out.iter().any(|s| s.len() < w)
    {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: each level's instruction set checked at run time; the
    // lengths just above.
    match level {
        Level::Avx512 if has_avx512f_fma() => unsafe {
            by_kr!(kr, wide::avx512::apply(vb, half, near, src, out, k))
        },
        Level::Avx2 | Level::Avx512 if has_avx2_fma() => unsafe {
            by_kr!(kr, wide::avx2::apply(vb, half, near, src, out, k))
        },
        _ => apply_tail(vb, half, near, src, out, k, 0),
    }
    #[cfg(not(target_arch = "x86_64"))]
    apply_tail(vb, half, near, src, out, k, 0);
}

/// Fills a padded row's `kr` values beyond each end by mirroring
/// (`row[kr + x]` is column `x` of `row.len() - 2 kr`).
fn mirror_pad(row: &mut [f32], kr: usize) {
    mirror_left(row, kr);
    mirror_right(row, kr);
}

/// [`mirror_pad`]'s left end (reads columns `1 ..= kr` when the row is
/// wider than `kr`).
fn mirror_left(row: &mut [f32], kr: usize) {
    let w = row.len() - 2 * kr;
    for k in 0..kr {
        row[kr - 1 - k] = row[kr + reflect(-(k as isize) - 1, w as isize)];
    }
}

/// [`mirror_pad`]'s right end.
fn mirror_right(row: &mut [f32], kr: usize) {
    let w = row.len() - 2 * kr;
    for k in 0..kr {
        row[kr + w + k] = row[kr + reflect((w + k) as isize, w as isize)];
    }
}

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
    /// original whole-frame code: 2-D blur as a horizontal then a vertical
    /// pass, each tap in order): the op sums the symmetric taps in pairs
    /// and blurs vertically first, so its outputs match within rounding.
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

    /// Largest difference from [`reference`] allowed, image units (1.0 =
    /// white; 1/255 is one 8-bit level): the blur's rounding, f32.
    const TOL: f32 = 1e-5;

    #[test]
    fn whole_frame_matches_the_definition() {
        for (w, h) in [(37, 23), (70, 41), (5, 3), (2, 9)] {
            for v in [
                serde_json::json!({}),
                serde_json::json!({ "amount": 0.5, "radius": 0.8, "threshold": 0.004, "overshoot": 0.02 }),
                serde_json::json!({ "amount": 3.0, "radius": 0.3, "threshold": 0.0, "overshoot": 0.0 }),
                serde_json::json!({ "amount": 1.5, "radius": 2.5, "threshold": 0.01, "overshoot": 0.3 }),
            ] {
                let img = image(w, h, &texture);
                let want = reference(&params(v.clone()), &img);
                let got = run(v.clone(), img.clone()).data;
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= TOL, "{w}x{h} {v}: off by {worst}");
                // The mask did change the image (the comparison means something).
                if w > 5 {
                    assert_ne!(got, img.data, "{w}x{h} {v}");
                }
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

    /// Strips of every height, each call continuing the carry of the one
    /// before (as the fused runner makes them) or starting afresh, on a
    /// frame narrower than a chunk and one of three chunks (the last
    /// narrower than the blur's reach).
    #[test]
    fn stencil_kernel_equals_the_whole_frame_path_on_any_values() {
        for (w, h) in [(45, 31), (2 * CHUNK + 3, 23)] {
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
                for keep in [false, true] {
                    let mut got = vec![-1f32; 3 * w * h];
                    let n = w * h;
                    let (r, gb) = got.split_at_mut(n);
                    let (g, b) = gb.split_at_mut(n);
                    let mut carry = StencilCarry::default();
                    for ((k, r), (g, b)) in r
                        .chunks_mut(strip * w)
                        .enumerate()
                        .zip(g.chunks_mut(strip * w).zip(b.chunks_mut(strip * w)))
                    {
                        if !keep {
                            carry.restart();
                        }
                        f(&Whole(&img), k * strip, [r, g, b], &mut carry);
                    }
                    let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{w}x{h}, strips of {strip}, {keep}"
                    );
                }
            }
        }
    }

    /// A carry left by other rows of the frame (not the strip just above)
    /// is not used: the output is the same as from a fresh one.
    #[test]
    fn stencil_ignores_a_carry_from_other_rows() {
        let (w, h) = (40, 30);
        let img = image(w, h, &texture);
        let v = serde_json::json!({ "amount": 1.5, "radius": 1.0, "threshold": 0.0 });
        let want = run(v.clone(), img.clone()).data;
        let st = compile(v).unwrap();
        let Some((RowKernel::Stencil { f, .. }, _)) = st
            .row_kernel(&Header::of(&Value::Image(img.clone().into())).unwrap())
            .unwrap()
        else {
            panic!("sharpen has a stencil kernel");
        };
        let n = w * h;
        let mut got = vec![-1f32; 3 * n];
        let mut carry = StencilCarry::default();
        // Rows 20 .. 30 first, then 0 .. 10 and 10 .. 20 (continuing).
        for y0 in [20, 0, 10] {
            let rows = y0 * w..(y0 + 10) * w;
            let (r, gb) = got.split_at_mut(n);
            let (g, b) = gb.split_at_mut(n);
            let out = [&mut r[rows.clone()], &mut g[rows.clone()], &mut b[rows]];
            f(&Whole(&img), y0, out, &mut carry);
        }
        assert_eq!(got, want);
    }

    fn split3(o: &mut [f32], w: usize) -> [&mut [f32]; 3] {
        let (r, gb) = o.split_at_mut(w);
        let (g, b) = gb.split_at_mut(w);
        [r, g, b]
    }

    /// The vector levels this CPU runs (a line for each it lacks).
    fn vector_levels() -> Vec<Level> {
        [Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|l| {
                let ok = l.available();
                if !ok {
                    println!("skipped: this CPU lacks {l:?}");
                }
                ok
            })
            .collect()
    }

    /// The vector kernels (AVX2, AVX-512) against their scalar definitions
    /// on the same rows: identical bits (same operations in the same
    /// order), every radius, widths with and without a partial last vector.
    #[test]
    fn vector_rows_equal_the_scalar_definition() {
        for level in vector_levels() {
            vector_rows_equal_the_scalar_definition_at(level);
        }
    }

    fn vector_rows_equal_the_scalar_definition_at(level: Level) {
        for radius in [0.3f32, 0.8, 1.7, 5.0] {
            let kern = gaussian(radius);
            let kr = kern.len() / 2;
            let half = &kern[kr..];
            for w in [9usize, 16, 37, 203, 16 * 9 + 7] {
                let img = image(w, 2 * kr + 1, &texture);
                let n = w * (2 * kr + 1);
                let rows: Vec<&[f32]> = (0..2 * kr + 1)
                    .map(|y| &img.data[n + y * w..n + (y + 1) * w])
                    .collect();
                let mut a = vec![0f32; w + 2 * kr];
                let mut b = a.clone();
                vblur_row(level, &rows, half, &mut a[kr..kr + w]);
                mirror_pad(&mut a, kr);
                vblur_tail(&rows, half, &mut b[kr..kr + w], 0);
                mirror_pad(&mut b, kr);
                assert_eq!(a, b, "{level:?} vertical, radius {radius}, {w} wide");
                let src: [&[f32]; 3] = std::array::from_fn(|c| &img.data[c * n..c * n + w]);
                let near = [rows[kr - 1], rows[kr], rows[kr + 1]];
                // The clamp binding almost everywhere, and here and there.
                for k in [[2.5, 0.001, 0.004], [0.6, 0.005, 0.05]] {
                    let (mut o1, mut o2) = (vec![0f32; 3 * w], vec![0f32; 3 * w]);
                    apply_row(level, &a, half, near, src, split3(&mut o1, w), k);
                    apply_tail(&a, half, near, src, split3(&mut o2, w), k, 0);
                    let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&o1),
                        bits(&o2),
                        "{level:?} apply {k:?}, radius {radius}, {w} wide"
                    );
                }
            }
        }
    }

    /// The chunked row ([`mask_row`], from the segment's rows or in
    /// place) against the scalar definition over the whole row: identical
    /// bits for rows of one chunk, a chunk and a bit, and several chunks
    /// whose last is narrower than the blur's reach, the output at every
    /// phase of a cache line, at every vector level this CPU runs.
    #[test]
    fn chunked_rows_equal_the_whole_row_definition() {
        for level in vector_levels() {
            chunked_rows_equal_the_whole_row_definition_at(level);
        }
    }

    fn chunked_rows_equal_the_whole_row_definition_at(level: Level) {
        for radius in [0.3f32, 1.0, 5.0] {
            let kern = gaussian(radius);
            let kr = kern.len() / 2;
            let half = &kern[kr..];
            for w in [9usize, CHUNK, CHUNK + 1, 2 * CHUNK + 2, 3 * CHUNK - 5] {
                let img = image(w, 2 * kr + 1, &texture);
                let n = w * (2 * kr + 1);
                let rows: Vec<&[f32]> = (0..2 * kr + 1)
                    .map(|y| &img.data[n + y * w..n + (y + 1) * w])
                    .collect();
                let k = [2.5, 0.001, 0.004];
                // The definition: every column's vertical pass, the pads,
                // then every column's mask.
                let mut vb = vec![0f32; w + 2 * kr];
                vblur_tail(&rows, half, &mut vb[kr..kr + w], 0);
                mirror_pad(&mut vb, kr);
                let src: [&[f32]; 3] = std::array::from_fn(|c| &img.data[c * n..c * n + w]);
                let near = [rows[kr - 1], rows[kr], rows[kr + 1]];
                let mut want = vec![0f32; 3 * w];
                apply_tail(&vb, half, near, src, split3(&mut want, w), k, 0);
                let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                // The output at every phase of a cache line (the vectors
                // start at its first column on one; the scalar code does
                // the columns before).
                let mut buf = vec![0f32; 3 * w + LINE];
                for off in 0..LINE {
                    let got = &mut buf[off..off + 3 * w];
                    got.fill(0.0);
                    let mut work = vec![0f32; w + 2 * kr];
                    mask_row(level, &rows, half, k, &mut work, src, split3(got, w));
                    assert_eq!(
                        bits(got),
                        bits(&want),
                        "{level:?}, radius {radius}, {w} wide, offset {off}"
                    );
                    assert_ne!(got, &src.concat()[..], "the mask did something");
                }
            }
        }
    }

    /// The luminance rows' finiteness flag: false for a NaN or an
    /// infinity anywhere (in a whole vector or the scalar tail), true for
    /// finite rows of any magnitude.
    #[test]
    fn luma_rows_flag_non_finite_values() {
        let w = 16 * 3 + 5;
        let base: Vec<f32> = (0..w).map(|i| i as f32 * 0.01 - 0.2).collect();
        let mut out = vec![0f32; w];
        assert!(luma_row_wide(&base, &base, &base, &mut out));
        let big = vec![1e37f32; w];
        assert!(luma_row_wide(&big, &base, &big, &mut out));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 7, 16, 47, w - 1] {
                let mut g = base.clone();
                g[at] = bad;
                assert!(!luma_row_wide(&base, &g, &base, &mut out), "{bad} at {at}");
            }
        }
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(compile(serde_json::json!({ "amount": -1.0 })).is_err());
        assert!(compile(serde_json::json!({ "radius": 0.0 })).is_err());
        assert!(compile(serde_json::json!({ "sigma": 1.0 })).is_err());
    }
}
