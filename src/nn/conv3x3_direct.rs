//! Direct (register-blocked) 3x3 stride-1 zero-padded convolution for
//! layers with few output channels, bit for bit the row-shift GEMM of
//! [`super::Conv2d`].
//!
//! The GEMM path copies every input row three times (one per kernel
//! column) into an im2col matrix and runs one GEMM per kernel row; with
//! 8 or 16 output channels the GEMM is narrow and the copies and the
//! output's bias fill and activation pass dominate. Here a band of output
//! rows reads its input rows in place (zero-bordered copies of the
//! columns of the first and last strips only; copying whole rows into a
//! zero-bordered band buffer was 4 % of a 1-thread `bench -p learned`
//! profile, now about 2 %, see [`super::dmdn_unet`]'s "Measured") and
//! keeps blocks of output channels x pixels in registers.
//!
//! Arithmetic (the `gemm` crate's, so results equal the GEMM path's): per
//! output value, starting from the bias `o = b`, for each kernel row `ky`
//! a partial sum `s = 0`, then `s = fma(x, w, s)` over the taps in
//! `(ci, kx)` order (input channel outer), then `o = o + s`; the
//! activation last. Inputs and outputs are NCHW planes (rows of `w` f32
//! values, pixels contiguous).
//!
//! Dispatch ([`Kernel::best`], used by [`super::Conv2d`]): AVX-512F,
//! else AVX2 + FMA, else none (the GEMM path; the scalar twin is the
//! tests' reference). With AVX-512, blocks of 8 output channels
//! ([`strip_wide_avx512`]: 16 accumulators, the running output in the
//! destination) while 8 are left, else 4. `fastd_raw` at 12 MP, 1 thread,
//! perf samples in this module over 4 frames (load ~4): 3,328 / 3,363 ->
//! 3,170 / 3,113 (-6 %).
//!
//! With AVX2 + FMA (16 registers of 8 lanes; AMD Zen 2/3), blocks of 12
//! output channels in register blocks of 6 channels x 16 pixels (12
//! accumulators, 2 input vectors, a weight) while 12 are left, else 4 as
//! 4 x 16; the running output in the destination ([`strip_avx2`]).
//! Measured on this machine (AMD EPYC family 26 (Zen 5), 2 vCPUs, AVX2
//! forced; load ~4.5 from a training job; 1 thread, medians of 3 runs of
//! medians of 5; `gemm` built without its `x86-v4` feature, i.e. the GEMM
//! of AVX2-only CPUs; `cargo test --release --lib
//! nn::conv2d::tests::direct_3x3_timing -- --ignored --nocapture`), ms
//! for e1a 16<-5 at 832x832, e1b/d1 16<-16 at 832x832, e2b/d2 32<-32 at
//! 416x416, fr1 8<-9 at 1664x1664: GEMM 18.0 / 46.5 / 39.1 / 62.3; this
//! kernel 12.9 / 33.7 / 31.4 / 44.3 (-28 / -28 / -20 / -29 %); 4 x 16
//! for all channels 15.9 / 38.5 / 33.8 / 44.8; for comparison the AVX-512
//! kernels 10.5 / 21.2 / 17.3 / 30.3 and the AVX-512 GEMM (one run) 12.0 /
//! 27.8 / 22.0 / 45.1. Earlier runs (timings then including the output's
//! allocation): 8 x 8 and 2 x 32 5-15 % slower than 4 x 16; 3 x 32 and
//! 4 x 32 (12 or 16 accumulators plus 4 input vectors: spills) 1.2-2.6x
//! slower. Whole frame, `RAYON_NUM_THREADS=1 rawgraph bench --synthetic
//! 4000x3000 -p pipelines/learned_fastd.yaml --iters 3 --warmup 1` with
//! the AVX-512 kernels switched off (a temporary switch, since removed) and that
//! `gemm`: `demosaic_denoise_learned` median of 5 interleaved runs
//! 3,223 ms on the GEMM path -> 3,013 ms (-6.5 %). Not measured on a
//! Zen 2/3 CPU itself.

use super::Activation;

/// Output pixels per register strip (two AVX-512 or four AVX2 vectors).
const STRIP: usize = 32;
/// Output channels per register block.
const CO_BLOCK: usize = 4;
/// Output channels per block of [`strip_wide_avx512`] (its 16
/// accumulators; the running output in memory).
const WIDE_BLOCK: usize = 8;
/// Output channels per block of [`strip_avx2`] while that many are left
/// (register blocks of 6 channels x 16 pixels: 12 accumulators, 2 input
/// vectors and a weight of AVX2's 16 registers), else [`CO_BLOCK`]
/// (blocks of 4 x 16).
const AVX2_BLOCK: usize = 12;
/// Largest output channel count the direct path takes (wider layers run
/// efficiently as GEMMs; `fastb` at 12 MP, 1 thread, user CPU: direct up
/// to 16, 32 and 64 channels 8.7, 8.5 and 8.5 s against 9.3 s for the
/// GEMM path).
pub const MAX_COUT: usize = 32;

/// One band of output rows of a 3x3 stride-1 convolution with zero
/// padding 1 (output the input's size).
pub struct DirectBand<'a> {
    /// Input item: `cin` planes of `h x w`, row-major.
    pub x: &'a [f32],
    /// Input (and output) rows.
    pub h: usize,
    /// Input (and output) columns.
    pub w: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels (a multiple of [`CO_BLOCK`]).
    pub cout: usize,
    /// `[cout, cin, 3, 3]` row-major (PyTorch OIHW).
    pub weight: &'a [f32],
    /// `[cout]`.
    pub bias: &'a [f32],
    /// First output row of the band.
    pub y0: usize,
    /// One past the last output row of the band.
    pub y1: usize,
    /// Output element `(co, y0, 0)`; channel planes `plane_out` apart, rows
    /// `w` apart; written (not read) for rows `y0..y1` of every channel.
    pub dst: *mut f32,
    /// Distance between output channel planes (elements).
    pub plane_out: usize,
    /// Applied to every output value last.
    pub act: Activation,
}

/// Whether the direct path computes a layer of `cout` output channels
/// with a `kh x kw` kernel, `stride` and zero padding `pad`.
pub fn supports(cout: usize, kh: usize, kw: usize, stride: usize, pad: usize) -> bool {
    kh == 3
        && kw == 3
        && stride == 1
        && pad == 1
        && cout.is_multiple_of(CO_BLOCK)
        && cout <= MAX_COUT
}

/// Which strip kernel [`band`] runs (all give the same bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The portable scalar twin (the reference the tests compare).
    Scalar,
    /// AVX2 + FMA, 8 lanes ([`strip_avx2`]).
    Avx2,
    /// AVX-512F, 16 lanes ([`strip_avx512`], [`strip_wide_avx512`]).
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs: AVX-512F, else AVX2 + FMA, else
    /// scalar.
    pub fn best() -> Kernel {
        if Kernel::Avx512.available() {
            Kernel::Avx512
        } else if Kernel::Avx2.available() {
            Kernel::Avx2
        } else {
            Kernel::Scalar
        }
    }

    /// Whether this CPU runs the kernel.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Kernel::Scalar => true,
                Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                Kernel::Avx512 => is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Kernel::Scalar
        }
    }
}

/// Whether this CPU runs a SIMD kernel (AVX-512F or AVX2 + FMA, see
/// [`Kernel::best`]); elsewhere [`super::Conv2d`] keeps its GEMM path
/// (same results; the scalar twin, [`band`] with [`Kernel::Scalar`], is
/// the reference the tests compare).
pub fn simd_available() -> bool {
    Kernel::best() != Kernel::Scalar
}

/// Computes one band into `a.dst` using `scratch` for the zero-bordered
/// edge columns of the input rows, a zero row and a partial strip's
/// outputs. `kernel` selects the strip kernel; one this CPU does not run
/// ([`Kernel::available`]) falls back to the scalar twin. All give the
/// same bits.
///
/// # Safety
/// `a.dst` must be valid for writes of rows `y0..y1` (each `w` values) of
/// `cout` planes `plane_out` apart, written by no one else meanwhile; the
/// shapes of `a` must agree (`x.len() >= cin·h·w`, `weight.len() ==
/// cout·cin·9`, `bias.len() == cout`, `y1 <= h`).
pub unsafe fn band(a: &DirectBand<'_>, scratch: &mut Vec<f32>, kernel: Kernel) {
    let (h, w, cin, cout) = (a.h, a.w, a.cin, a.cout);
    let npw = w.div_ceil(STRIP) * STRIP;
    let prow = a.y1 - a.y0 + 2;
    // Strips x0 in STRIP..xr read their input rows in place (columns
    // x0 - 1 ..= x0 + STRIP all inside the row); the first strip and
    // those from xr on read zero-bordered copies of their columns only
    // (all strips when the rows are narrow).
    let xr = match w.checked_sub(STRIP + 1) {
        Some(v) => (v / STRIP + 1) * STRIP,
        None => 0,
    };
    let xr = if xr <= STRIP { 0 } else { xr };
    // Segments of padded columns (padded index i = column i - 1): the
    // strips x0 in xs..xe read padded indices xs..xe + 2.
    let segs: [(usize, usize); 2] = if xr == 0 {
        [(0, npw), (npw, npw)]
    } else {
        [(0, STRIP), (xr, npw)]
    };
    let seg_len = |(xs, xe): (usize, usize)| if xe > xs { xe - xs + 2 } else { 0 };
    let lens = [seg_len(segs[0]), seg_len(segs[1])];
    let pad_len: usize = lens.iter().map(|l| cin * prow * l).sum();
    // zeros for the in-place strips' rows outside the input
    let zero_len = npw + 2;
    let need = pad_len + zero_len + WIDE_BLOCK.max(AVX2_BLOCK) * STRIP;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (pad, rest) = scratch[..need].split_at_mut(pad_len);
    let (zeros, tmp) = rest.split_at_mut(zero_len);
    zeros.fill(0.0);
    // input row y0 - 1 + pr of channel ci, None outside the input
    let in_row = |ci: usize, pr: usize| {
        (a.y0 + pr)
            .checked_sub(1)
            .filter(|&y| y < h)
            .map(|iy| &a.x[(ci * h + iy) * w..(ci * h + iy + 1) * w])
    };
    // Row tables, entry ci·prow + pr: a pointer p such that p + x0 + i is
    // padded index x0 + i of input row y0 - 1 + pr, for the strips the
    // table serves (wrapping arithmetic: only those sums are dereferenced,
    // and they lie inside the row or its copy).
    let mut tables: [Vec<*const f32>; 3] = Default::default();
    let mut off = 0;
    for (k, (&(xs, _), &len)) in segs.iter().zip(&lens).enumerate() {
        if len == 0 {
            continue;
        }
        let seg = &mut pad[off..off + cin * prow * len];
        for ci in 0..cin {
            for pr in 0..prow {
                let d = &mut seg[(ci * prow + pr) * len..(ci * prow + pr + 1) * len];
                // d[i] = column xs + i - 1
                match in_row(ci, pr) {
                    Some(src) => {
                        let lo = usize::from(xs == 0);
                        d[..lo].fill(0.0);
                        let c0 = xs + lo - 1;
                        let n = w.saturating_sub(c0).min(len - lo);
                        d[lo..lo + n].copy_from_slice(&src[c0..c0 + n]);
                        d[lo + n..].fill(0.0);
                    }
                    None => d.fill(0.0),
                }
                tables[k].push(d.as_ptr().wrapping_sub(xs));
            }
        }
        off += cin * prow * len;
    }
    if xr > STRIP {
        for ci in 0..cin {
            for pr in 0..prow {
                let p = match in_row(ci, pr) {
                    Some(src) => src.as_ptr().wrapping_sub(1),
                    None => zeros.as_ptr(),
                };
                tables[2].push(p);
            }
        }
    }
    let kernel = if kernel.available() {
        kernel
    } else {
        Kernel::Scalar
    };
    for r in 0..a.y1 - a.y0 {
        // SAFETY: row y0 + r of every plane is inside the band's output
        // (the caller's contract).
        let row = unsafe { a.dst.add(r * w) };
        for x0 in (0..npw).step_by(STRIP) {
            let rows = if x0 < segs[0].1 {
                &tables[0]
            } else if x0 >= segs[1].0 {
                &tables[1]
            } else {
                &tables[2]
            };
            // Whole strips go straight to the output, the last (partial)
            // one through `tmp` (WIDE_BLOCK x STRIP). With AVX-512, blocks
            // of WIDE_BLOCK channels while that many are left.
            let whole = x0 + STRIP <= w;
            let mut cb = 0;
            while cb < cout {
                let s = Strip {
                    rows,
                    prow,
                    r,
                    x0,
                    cin,
                    weight: a.weight,
                    bias: a.bias,
                    cb,
                };
                let sink = if whole {
                    Sink {
                        // SAFETY: as above; x0 + STRIP <= w.
                        ptr: unsafe { row.add(cb * a.plane_out + x0) },
                        cs: a.plane_out,
                    }
                } else {
                    Sink {
                        ptr: tmp.as_mut_ptr(),
                        cs: STRIP,
                    }
                };
                let wide = cout - cb >= WIDE_BLOCK;
                let n = match kernel {
                    // SAFETY (every arm): the kernel is available (checked
                    // above); the sink is valid for the strip's reads and
                    // writes (whole strips: inside the band's output;
                    // partial ones: `tmp`, WIDE_BLOCK x STRIP).
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 if wide => {
                        unsafe { strip_wide_avx512(&s, sink) };
                        WIDE_BLOCK
                    }
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => {
                        unsafe { strip_avx512(&s, sink) };
                        CO_BLOCK
                    }
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 if cout - cb >= AVX2_BLOCK => {
                        unsafe { strip_avx2::<AVX2_BLOCK, 6, 2>(&s, sink) };
                        AVX2_BLOCK
                    }
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => {
                        unsafe { strip_avx2::<CO_BLOCK, 4, 2>(&s, sink) };
                        CO_BLOCK
                    }
                    _ => {
                        unsafe { strip_scalar(&s, sink) };
                        CO_BLOCK
                    }
                };
                if !whole {
                    tail(tmp, row, (cb, n), x0, w, a.plane_out);
                }
                cb += n;
            }
        }
        for co in 0..cout {
            // SAFETY: row y0 + r of plane co, written above.
            let d = unsafe { std::slice::from_raw_parts_mut(row.add(co * a.plane_out), w) };
            a.act.apply(d);
        }
    }
}

/// Copies a partial strip's columns `x0..w` from `tmp` (`n x STRIP`) to
/// channels `cb..cb + n` of the output row at `row`.
fn tail(
    tmp: &[f32],
    row: *mut f32,
    (cb, n): (usize, usize),
    x0: usize,
    w: usize,
    plane_out: usize,
) {
    for c in 0..n {
        // SAFETY: columns x0..w of row `row` of plane cb + c are inside the
        // band's output ([`band`]'s contract).
        unsafe {
            std::ptr::copy_nonoverlapping(
                tmp[c * STRIP..].as_ptr(),
                row.add((cb + c) * plane_out + x0),
                w - x0,
            )
        };
    }
}

/// One register block: output row `r` of the band, pixels `x0..x0 +
/// STRIP`, channels from `cb` on (as many as the kernel's block).
struct Strip<'a> {
    /// Row table (see [`band`]): `rows[ci·prow + pr] + x0 + i` is padded
    /// index `x0 + i` (column `x0 + i - 1`) of the band's input row `pr`
    /// of channel `ci`, readable for `i` in `0..STRIP + 2`.
    rows: &'a [*const f32],
    prow: usize,
    r: usize,
    x0: usize,
    cin: usize,
    weight: &'a [f32],
    bias: &'a [f32],
    cb: usize,
}

/// Where a strip's `CO_BLOCK x STRIP` outputs go: channel `c`'s 32 values
/// at `ptr + c·cs`, valid for those writes.
#[derive(Clone, Copy)]
struct Sink {
    ptr: *mut f32,
    cs: usize,
}

/// The scalar twin of [`strip_avx512`].
///
/// # Safety
/// `sink` must be valid for the strip's writes.
unsafe fn strip_scalar(s: &Strip<'_>, sink: Sink) {
    let mut out = [[0f32; STRIP]; CO_BLOCK];
    for (c, o) in out.iter_mut().enumerate() {
        *o = [s.bias[s.cb + c]; STRIP];
    }
    for ky in 0..3 {
        let mut acc = [[0f32; STRIP]; CO_BLOCK];
        for ci in 0..s.cin {
            // SAFETY: the row table's contract (see [`Strip::rows`]).
            let row = unsafe {
                std::slice::from_raw_parts(
                    s.rows[ci * s.prow + s.r + ky].wrapping_add(s.x0),
                    STRIP + 2,
                )
            };
            for kx in 0..3 {
                for (c, a) in acc.iter_mut().enumerate() {
                    let wv = s.weight[((s.cb + c) * s.cin + ci) * 9 + ky * 3 + kx];
                    for (j, v) in a.iter_mut().enumerate() {
                        *v = row[kx + j].mul_add(wv, *v);
                    }
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            o.iter_mut().zip(a).for_each(|(o, &a)| *o += a);
        }
    }
    for (c, o) in out.iter().enumerate() {
        // SAFETY: the caller's contract (see [`Sink`]).
        unsafe { std::ptr::copy_nonoverlapping(o.as_ptr(), sink.ptr.add(c * sink.cs), STRIP) };
    }
}

/// One kernel row `ky` of a strip's `N` channels from `s.cb` on: the
/// partial sums `s = 0`, `s = fma(x, w, s)` over the taps in `(ci, kx)`
/// order, two vectors (32 pixels) per channel.
///
/// # Safety
/// AVX-512F must be available (inlined into the `avx512f` kernels below);
/// the row table's contract (see [`Strip::rows`]) and `(cb + N)·cin·9 <=
/// weight.len()`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn row_partials<const N: usize>(
    s: &Strip<'_>,
    ky: usize,
) -> [[std::arch::x86_64::__m512; 2]; N] {
    use std::arch::x86_64::*;
    debug_assert!((s.cin - 1) * s.prow + s.r + 2 < s.rows.len());
    debug_assert!((s.cb + N) * s.cin * 9 <= s.weight.len());
    let wp = s.weight.as_ptr();
    // SAFETY (every block below): the caller's contract; the loads read
    // padded indices x0 .. x0 + 34 of the rows, the weights below
    // (cb + N)·cin·9.
    let mut acc = unsafe { [[_mm512_setzero_ps(); 2]; N] };
    for ci in 0..s.cin {
        let row = unsafe {
            s.rows
                .get_unchecked(ci * s.prow + s.r + ky)
                .wrapping_add(s.x0)
        };
        for kx in 0..3 {
            let (v0, v1) = unsafe {
                (
                    _mm512_loadu_ps(row.add(kx)),
                    _mm512_loadu_ps(row.add(kx + 16)),
                )
            };
            for (c, a) in acc.iter_mut().enumerate() {
                unsafe {
                    let wv = _mm512_set1_ps(*wp.add(((s.cb + c) * s.cin + ci) * 9 + ky * 3 + kx));
                    a[0] = _mm512_fmadd_ps(v0, wv, a[0]);
                    a[1] = _mm512_fmadd_ps(v1, wv, a[1]);
                }
            }
        }
    }
    acc
}

/// [`strip_scalar`] with AVX-512F: the same fused multiply-adds and adds
/// in the same order, 16 lanes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn strip_avx512(s: &Strip<'_>, sink: Sink) {
    use std::arch::x86_64::*;
    let mut out = [[_mm512_setzero_ps(); 2]; CO_BLOCK];
    for (c, o) in out.iter_mut().enumerate() {
        *o = [_mm512_set1_ps(s.bias[s.cb + c]); 2];
    }
    for ky in 0..3 {
        // SAFETY: AVX-512F is available; [`band`] sizes the row tables
        // and checks the weights so.
        let acc = unsafe { row_partials::<CO_BLOCK>(s, ky) };
        for (o, a) in out.iter_mut().zip(&acc) {
            o[0] = _mm512_add_ps(o[0], a[0]);
            o[1] = _mm512_add_ps(o[1], a[1]);
        }
    }
    for (c, o) in out.iter().enumerate() {
        // SAFETY: the caller's contract (see [`Sink`]).
        unsafe {
            let d = sink.ptr.add(c * sink.cs);
            _mm512_storeu_ps(d, o[0]);
            _mm512_storeu_ps(d.add(16), o[1]);
        }
    }
}

/// [`strip_avx512`] for [`WIDE_BLOCK`] output channels: 16 accumulators
/// (8 channels x 32 pixels) hide the fused multiply-adds' latency better
/// and each input vector feeds 8 channels, not 4. The running output
/// (bias, then plus each kernel row's partial sum) lives in the sink
/// instead of registers: the same operations in the same order, so the
/// same bits.
///
/// # Safety
/// `sink` must be valid for reads and writes of the strip's
/// `WIDE_BLOCK x STRIP` values; AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn strip_wide_avx512(s: &Strip<'_>, sink: Sink) {
    use std::arch::x86_64::*;
    for ky in 0..3 {
        // SAFETY: as in [`strip_avx512`].
        let acc = unsafe { row_partials::<WIDE_BLOCK>(s, ky) };
        for (c, a) in acc.iter().enumerate() {
            // SAFETY: the caller's contract (see [`Sink`]).
            unsafe {
                let d = sink.ptr.add(c * sink.cs);
                // o = bias, then o = o + s per kernel row
                let (o0, o1) = if ky == 0 {
                    let b = _mm512_set1_ps(s.bias[s.cb + c]);
                    (b, b)
                } else {
                    (_mm512_loadu_ps(d), _mm512_loadu_ps(d.add(16)))
                };
                _mm512_storeu_ps(d, _mm512_add_ps(o0, a[0]));
                _mm512_storeu_ps(d.add(16), _mm512_add_ps(o1, a[1]));
            }
        }
    }
}

/// One kernel row `ky` of `C` channels from `s.cb + c0` on and `8·V`
/// pixels from `s.x0 + p0` on: the partial sums `s = 0`, `s = fma(x, w,
/// s)` over the taps in `(ci, kx)` order, `V` 8-lane vectors per channel.
///
/// # Safety
/// AVX2 and FMA must be available (inlined into [`strip_avx2`]); the row
/// table's contract (see [`Strip::rows`]), `p0 + 8·V <= STRIP` and `(cb +
/// c0 + C)·cin·9 <= weight.len()`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn row_partials_avx2<const C: usize, const V: usize>(
    s: &Strip<'_>,
    ky: usize,
    c0: usize,
    p0: usize,
) -> [[std::arch::x86_64::__m256; V]; C] {
    use std::arch::x86_64::*;
    debug_assert!((s.cin - 1) * s.prow + s.r + 2 < s.rows.len());
    debug_assert!((s.cb + c0 + C) * s.cin * 9 <= s.weight.len());
    debug_assert!(p0 + 8 * V <= STRIP);
    let wp = s.weight.as_ptr();
    // SAFETY (every block below): the caller's contract; the loads read
    // padded indices x0 + p0 .. x0 + p0 + 8·V + 2 <= x0 + 34 of the rows,
    // the weights below (cb + c0 + C)·cin·9.
    let mut acc = unsafe { [[_mm256_setzero_ps(); V]; C] };
    for ci in 0..s.cin {
        let row = unsafe {
            s.rows
                .get_unchecked(ci * s.prow + s.r + ky)
                .wrapping_add(s.x0 + p0)
        };
        for kx in 0..3 {
            let mut xv = unsafe { [_mm256_setzero_ps(); V] };
            for (v, x) in xv.iter_mut().enumerate() {
                *x = unsafe { _mm256_loadu_ps(row.add(kx + 8 * v)) };
            }
            for (c, a) in acc.iter_mut().enumerate() {
                unsafe {
                    let wv =
                        _mm256_set1_ps(*wp.add(((s.cb + c0 + c) * s.cin + ci) * 9 + ky * 3 + kx));
                    for (av, &x) in a.iter_mut().zip(&xv) {
                        *av = _mm256_fmadd_ps(x, wv, *av);
                    }
                }
            }
        }
    }
    acc
}

/// [`strip_scalar`] with AVX2 + FMA for `N` channels from `s.cb` on: the
/// same fused multiply-adds and adds in the same order, 8 lanes at a
/// time, in register blocks of `C` channels x `8·V` pixels (the last
/// `STRIP mod 8·V` pixels by blocks of `C` x 8). The running output (bias,
/// then plus each kernel row's partial sum) lives in the sink, as in
/// [`strip_wide_avx512`], leaving 16 - `C·V` registers for the input
/// vectors and the broadcast weight.
///
/// # Safety
/// `sink` must be valid for reads and writes of the strip's `N x STRIP`
/// values; AVX2 and FMA must be available; `(cb + N)·cin·9 <=
/// weight.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn strip_avx2<const N: usize, const C: usize, const V: usize>(s: &Strip<'_>, sink: Sink) {
    let mut c0 = 0;
    while c0 < N {
        let mut p0 = 0;
        while p0 < STRIP {
            // SAFETY: the caller's contract; c0 + C <= N, p0 + 8·V <= STRIP.
            if STRIP - p0 >= 8 * V {
                unsafe { block_avx2::<C, V>(s, sink, c0, p0) };
                p0 += 8 * V;
            } else {
                unsafe { block_avx2::<C, 1>(s, sink, c0, p0) };
                p0 += 8;
            }
        }
        c0 += C;
    }
}

/// One register block of [`strip_avx2`]: channels `s.cb + c0 ..` (`C`),
/// pixels `p0 .. p0 + 8·V` of the strip, all three kernel rows.
///
/// # Safety
/// As [`strip_avx2`], for the block's values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block_avx2<const C: usize, const V: usize>(
    s: &Strip<'_>,
    sink: Sink,
    c0: usize,
    p0: usize,
) {
    use std::arch::x86_64::*;
    for ky in 0..3 {
        // SAFETY: the caller's contract (AVX2 + FMA, the row tables, the
        // weights).
        let acc = unsafe { row_partials_avx2::<C, V>(s, ky, c0, p0) };
        for (c, a) in acc.iter().enumerate() {
            let b = s.bias[s.cb + c0 + c];
            for (v, &av) in a.iter().enumerate() {
                // SAFETY: the caller's contract (see [`Sink`]).
                unsafe {
                    let d = sink.ptr.add((c0 + c) * sink.cs + p0 + 8 * v);
                    // o = bias, then o = o + s per kernel row
                    let o = if ky == 0 {
                        _mm256_set1_ps(b)
                    } else {
                        _mm256_loadu_ps(d)
                    };
                    _mm256_storeu_ps(d, _mm256_add_ps(o, av));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in -0.5..0.5, every 7th zero.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut r = seed;
        (0..n)
            .map(|i| {
                r = r.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i % 7 == 0 {
                    0.0
                } else {
                    (r >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                }
            })
            .collect()
    }

    /// `cout` planes of `h x w` from [`band`] with `kernel`, one band per
    /// `rows` output rows.
    fn run(
        (cout, cin, h, w): (usize, usize, usize, usize),
        rows: usize,
        act: Activation,
        kernel: Kernel,
    ) -> Vec<f32> {
        let x = values(cin * h * w, 3);
        let weight = values(cout * cin * 9, 5);
        let bias = values(cout, 11);
        let mut out = vec![f32::NAN; cout * h * w];
        let mut scratch = Vec::new();
        for y0 in (0..h).step_by(rows) {
            let a = DirectBand {
                x: &x,
                h,
                w,
                cin,
                cout,
                weight: &weight,
                bias: &bias,
                y0,
                y1: (y0 + rows).min(h),
                dst: out[y0 * w..].as_mut_ptr(),
                plane_out: h * w,
                act,
            };
            // SAFETY: `out` holds cout planes of h x w; the band writes
            // rows y0..y1 of each; the shapes agree.
            unsafe { band(&a, &mut scratch, kernel) };
        }
        out
    }

    /// The AVX2 and AVX-512 strips (where this CPU runs them) give the
    /// scalar twin's bits: every channel blocking (4, 8, 12 and their
    /// remainders), narrow rows (all strips zero-bordered copies), rows
    /// with in-place strips, partial last strips, bands of one and several
    /// rows, ReLU and none.
    #[test]
    fn simd_kernels_equal_the_scalar_twin_bit_for_bit() {
        for (shape, rows) in [
            ((4, 1, 3, 5), 2),
            ((8, 9, 13, 37), 4),
            ((12, 7, 5, 97), 2),
            ((16, 5, 7, 70), 1),
            ((16, 16, 9, 33), 9),
            ((20, 3, 6, 131), 4),
            ((24, 4, 4, 64), 3),
            ((28, 2, 5, 100), 5),
            ((32, 32, 6, 66), 3),
        ] {
            for act in [Activation::Relu, Activation::None] {
                let want = run(shape, rows, act, Kernel::Scalar);
                assert!(want.iter().all(|v| v.is_finite()), "{shape:?}");
                assert!(want.iter().any(|&v| v != 0.0), "{shape:?}");
                for kernel in [Kernel::Avx2, Kernel::Avx512] {
                    if !kernel.available() {
                        continue;
                    }
                    let got = run(shape, rows, act, kernel);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            e.to_bits(),
                            "{shape:?} {act:?} {kernel:?}: element {i}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    /// [`Kernel::best`] is one this CPU runs, and [`simd_available`] says
    /// whether it is a SIMD one.
    #[test]
    fn best_kernel_is_available() {
        assert!(Kernel::best().available());
        assert!(Kernel::Scalar.available());
        assert_eq!(simd_available(), Kernel::best() != Kernel::Scalar);
    }
}
