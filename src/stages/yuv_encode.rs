//! `yuv_encode`: R'G'B' -> Y'CbCr 4:2:0 as a video encoder or display
//! pipeline expects (ITU-R BT.601 / BT.709 / BT.2020 non-constant
//! luminance matrices, full or limited "studio" range).
//!
//! `Y' = Kr R' + (1 - Kr - Kb) G' + Kb B'`, `Cb = (B' - Y') / (2 (1 - Kb))`,
//! `Cr = (R' - Y') / (2 (1 - Kr))` on the transfer-encoded input (place it
//! after `srgb_encode`; values clamped to [0, 1]). Quantisation to `n`
//! bits: full range `Y = Y' (2^n - 1)`, `C = 2^(n-1) + C' (2^n - 1)`;
//! limited range `Y = (16 + 219 Y') 2^(n-8)`, `C = (128 + 224 C') 2^(n-8)`.
//! Chroma is the mean of each 2x2 block (centred siting, as JPEG/MPEG-1);
//! odd sizes round the chroma planes up.
//!
//! Output: a [`YuvFrame`] value, written by `rawgraph process` to `.yuv`
//! / `.nv12` / `.i420` / `.p010` files as raw planes ([`YuvFrame::to_bytes`]):
//! NV12 = 8-bit Y plane then interleaved CbCr; I420 = 8-bit Y, Cb, Cr
//! planes; P010 = 16-bit little-endian words holding 10-bit samples in the
//! high bits, Y plane then interleaved CbCr. [`YuvFrame::from_bytes`] and
//! [`YuvFrame::to_image`] read such files back.
//!
//! As a row kernel ([`RowKernel::Encode`]) it is the last member of a
//! demosaicking segment, after a stencil (`sharpen`) too: the strips'
//! float rows are encoded while in cache and the frame's RGB planes are
//! never made. 12 MP, 1 thread, after `sharpen` (AMD EPYC, AVX-512): 9.0 -
//! 9.9 ms as its own pass over the frame, 6.5 - 6.8 ms fused.

use std::any::Any;

use rayon::prelude::*;
use serde::Deserialize;

use super::row_kernel::{EncodeFn, Encoder, FinishFn, Header, RowKernel, RowShape};
use super::{one_input, parse_params, take_image, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{AnyValue, ColorSpace, Image, Value, ValueDesc, ValueKind};

/// Kind name of the [`YuvFrame`] value.
pub const YUV_FRAME: &str = "yuv_frame";

/// The luma/chroma matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Matrix {
    Bt601,
    #[default]
    Bt709,
    Bt2020,
}

impl Matrix {
    /// (Kr, Kb).
    pub fn coeffs(self) -> (f32, f32) {
        match self {
            Matrix::Bt601 => (0.299, 0.114),
            Matrix::Bt709 => (0.2126, 0.0722),
            Matrix::Bt2020 => (0.2627, 0.0593),
        }
    }
}

/// Quantisation range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Range {
    Full,
    /// Studio swing: Y 16..235, C 16..240 (8-bit).
    #[default]
    Limited,
}

/// Memory layout of the 4:2:0 planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum YuvFormat {
    #[default]
    Nv12,
    I420,
    P010,
}

impl YuvFormat {
    /// Bits per sample.
    pub fn bits(self) -> u32 {
        match self {
            YuvFormat::Nv12 | YuvFormat::I420 => 8,
            YuvFormat::P010 => 10,
        }
    }
}

/// YAML params of `yuv_encode`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub matrix: Matrix,
    pub range: Range,
    pub format: YuvFormat,
}

/// A 4:2:0 Y'CbCr frame: integer samples of `format.bits()` bits.
#[derive(Debug, Clone, PartialEq)]
pub struct YuvFrame {
    pub width: usize,
    pub height: usize,
    pub matrix: Matrix,
    pub range: Range,
    pub format: YuvFormat,
    /// Luma, `width * height`, row-major.
    pub y: Vec<u16>,
    /// Cb and Cr, `cw * ch` each with `cw = ceil(width / 2)`,
    /// `ch = ceil(height / 2)`.
    pub cb: Vec<u16>,
    pub cr: Vec<u16>,
}

impl AnyValue for YuvFrame {
    fn kind(&self) -> &'static str {
        YUV_FRAME
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Chroma plane size of a `w x h` frame.
pub fn chroma_size(w: usize, h: usize) -> (usize, usize) {
    (w.div_ceil(2), h.div_ceil(2))
}

/// (offset, scale) of luma and chroma for a range and bit depth.
fn quant(range: Range, bits: u32) -> ((f32, f32), (f32, f32)) {
    let max = ((1u32 << bits) - 1) as f32;
    let half = (1u32 << (bits - 1)) as f32;
    let k = (1u32 << (bits - 8)) as f32;
    match range {
        Range::Full => ((0.0, max), (half, max)),
        Range::Limited => ((16.0 * k, 219.0 * k), (128.0 * k, 224.0 * k)),
    }
}

/// Per-frame constants of the encode: luma weights, the chroma divisors
/// and the quantisation (offset, scale, code maximum).
#[derive(Clone, Copy)]
struct Coeffs {
    kr: f32,
    kg: f32,
    kb: f32,
    /// `2 (1 - kb)` and `2 (1 - kr)`.
    db: f32,
    dr: f32,
    yo: f32,
    ys: f32,
    co: f32,
    cs: f32,
    max: f32,
}

impl Coeffs {
    /// The constants of one matrix, range and sample format.
    fn new(matrix: Matrix, range: Range, format: YuvFormat) -> Self {
        let (kr, kb) = matrix.coeffs();
        let bits = format.bits();
        let ((yo, ys), (co, cs)) = quant(range, bits);
        Coeffs {
            kr,
            kg: 1.0 - kr - kb,
            kb,
            db: 2.0 * (1.0 - kb),
            dr: 2.0 * (1.0 - kr),
            yo,
            ys,
            co,
            cs,
            max: ((1u32 << bits) - 1) as f32,
        }
    }

    /// `v` rounded (half away from zero) and clamped to `0 ..= max`; NaN
    /// gives 0. Written with selects and the integer read from the bits
    /// of `v + 2^23` (exact for integers below 2^23), not `f32::clamp`
    /// and `as` (a bounds check and a saturating conversion that keep
    /// the row loops from vectorising); the same codes.
    #[inline(always)]
    fn q(&self, v: f32) -> u16 {
        let v = v.round();
        let v = if v >= 0.0 { v } else { 0.0 };
        let v = if v > self.max { self.max } else { v };
        ((v + 8_388_608.0).to_bits() & 0xffff) as u16
    }

    #[inline(always)]
    fn luma(&self, r: f32, g: f32, b: f32) -> f32 {
        self.kr * r.clamp(0.0, 1.0) + self.kg * g.clamp(0.0, 1.0) + self.kb * b.clamp(0.0, 1.0)
    }

    /// (Cb, Cr) of one pixel, before averaging and quantisation.
    #[inline(always)]
    fn chroma(&self, r: f32, g: f32, b: f32) -> (f32, f32) {
        let (rv, gv, bv) = (r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0));
        let l = self.kr * rv + self.kg * gv + self.kb * bv;
        ((bv - l) / self.db, (rv - l) / self.dr)
    }

    /// Quantised (Cb, Cr) of the chroma sample (`cx`, `cy`): the mean over
    /// its 2x2 block, cut by the frame's edge (planes `w` x `h`).
    fn chroma_block(&self, p: [&[f32]; 3], w: usize, h: usize, cx: usize, cy: usize) -> (u16, u16) {
        let (mut sb, mut sr, mut n) = (0f32, 0f32, 0f32);
        for yy in 2 * cy..(2 * cy + 2).min(h) {
            for xx in 2 * cx..(2 * cx + 2).min(w) {
                let i = yy * w + xx;
                let (b, r) = self.chroma(p[0][i], p[1][i], p[2][i]);
                sb += b;
                sr += r;
                n += 1.0;
            }
        }
        (
            self.q(self.co + self.cs * sb / n),
            self.q(self.co + self.cs * sr / n),
        )
    }
}

/// One row of quantised luma from the R', G', B' rows.
#[inline(always)]
fn luma_row(r: &[f32], g: &[f32], b: &[f32], out: &mut [u16], k: &Coeffs) {
    let n = out.len();
    let (r, g, b) = (&r[..n], &g[..n], &b[..n]);
    for i in 0..n {
        out[i] = k.q(k.yo + k.ys * k.luma(r[i], g[i], b[i]));
    }
}

crate::avx2_dispatch!(fn luma_row_wide(r: &[f32], g: &[f32], b: &[f32], out: &mut [u16], k: &Coeffs) => luma_row);

/// One pair of rows `2 cy`, `2 cy + 1` in one pass: `top` and `bottom`
/// are their (R', G', B') rows, each at least `2 ob.len()` wide; the
/// luma codes of their first `2 ob.len()` pixels go to `yt` and `yb`
/// (at least that long) and the chroma codes of their whole 2x2 blocks
/// to `ob` and `or`. Per run of [`CHUNK`] blocks, every pixel's clamped
/// R'G'B', Y' (hence its luma code, as [`luma_row`]) and (Cb, Cr) are
/// computed once in one contiguous pass, then the block sums in
/// [`Coeffs::chroma_block`]'s order, so the codes are the same.
#[inline(always)]
fn pair_row(
    top: [&[f32]; 3],
    bottom: [&[f32]; 3],
    [yt, yb]: [&mut [u16]; 2],
    ob: &mut [u16],
    or: &mut [u16],
    k: &Coeffs,
) {
    let n = ob.len().min(or.len());
    // Per-pixel chroma of the two rows: [row][pixel].
    let mut cb = [[0f32; 2 * CHUNK]; 2];
    let mut cr = [[0f32; 2 * CHUNK]; 2];
    for c0 in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - c0);
        let xs = 2 * c0..2 * (c0 + m);
        for (row, ([pr, pg, pb], oy)) in [(top, &mut *yt), (bottom, &mut *yb)]
            .into_iter()
            .enumerate()
        {
            let (pr, pg, pb) = (&pr[xs.clone()], &pg[xs.clone()], &pb[xs.clone()]);
            let oy = &mut oy[xs.clone()];
            let (cb, cr) = (&mut cb[row][..2 * m], &mut cr[row][..2 * m]);
            for (((((o, b_), r_), &r), &g), &b) in oy
                .iter_mut()
                .zip(cb.iter_mut())
                .zip(cr.iter_mut())
                .zip(pr)
                .zip(pg)
                .zip(pb)
            {
                let (rv, gv, bv) = (r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0));
                // `Coeffs::luma` and `Coeffs::chroma`, sharing the clamps
                // and Y'.
                let l = k.kr * rv + k.kg * gv + k.kb * bv;
                *o = k.q(k.yo + k.ys * l);
                (*b_, *r_) = ((bv - l) / k.db, (rv - l) / k.dr);
            }
        }
        for j in 0..m {
            let sb = 0f32 + cb[0][2 * j] + cb[0][2 * j + 1] + cb[1][2 * j] + cb[1][2 * j + 1];
            let sr = 0f32 + cr[0][2 * j] + cr[0][2 * j + 1] + cr[1][2 * j] + cr[1][2 * j + 1];
            ob[c0 + j] = k.q(k.co + k.cs * sb / 4.0);
            or[c0 + j] = k.q(k.co + k.cs * sr / 4.0);
        }
    }
}

/// Blocks per step of [`pair_row`] (its per-pixel chroma stays in L1).
const CHUNK: usize = 128;

/// [`pair_row`] over the row pair: 8 blocks (16 pixels of each row) at a
/// time on AVX2, the blocks left over by [`pair_row`] itself.
fn pair_row_wide(
    top: [&[f32]; 3],
    bottom: [&[f32]; 3],
    [yt, yb]: [&mut [u16]; 2],
    ob: &mut [u16],
    or: &mut [u16],
    k: &Coeffs,
) {
    let n = ob.len().min(or.len());
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::backend::simd::has_avx2()
        && top.iter().chain(&bottom).all(|s| s.len() >= 2 * n)
        && yt.len() >= 2 * n
        && yb.len() >= 2 * n
    {
        // SAFETY: AVX2 checked at run time; the lengths just above.
        j = unsafe { avx2::pair_row(top, bottom, [&mut *yt, &mut *yb], ob, or, k) };
    }
    if j < n {
        let x = 2 * j;
        pair_row(
            top.map(|s| &s[x..]),
            bottom.map(|s| &s[x..]),
            [&mut yt[x..], &mut yb[x..]],
            &mut ob[j..n],
            &mut or[j..n],
            k,
        );
    }
}

/// The AVX2 copy of [`pair_row`]: per pixel and per block the same
/// operations in the same order (no fused multiply-add), so the same
/// codes.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Coeffs;
    use std::arch::x86_64::*;

    /// The per-frame constants as vectors.
    struct K {
        zero: __m256,
        one: __m256,
        kr: __m256,
        kg: __m256,
        kb: __m256,
        db: __m256,
        dr: __m256,
        yo: __m256,
        ys: __m256,
        co: __m256,
        cs: __m256,
        quarter: __m256,
        max: __m256,
        sign: __m256,
        below_half: __m256,
        magic: __m256,
        low16: __m256i,
    }

    /// [`Coeffs::q`] of 8 values, as 32-bit lanes: `round` (half away
    /// from zero) as `trunc(v + copysign(0.5 - 2^-25, v))` (the compiler's
    /// own expansion of it), then the same selects and bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q(k: &K, v: __m256) -> __m256i {
        let h = _mm256_or_ps(_mm256_and_ps(v, k.sign), k.below_half);
        let v = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_add_ps(v, h));
        // v >= 0 ? v : 0 (NaN gives 0), then max < v ? max : v.
        let v = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(v, k.zero), v);
        let v = _mm256_min_ps(k.max, v);
        _mm256_and_si256(_mm256_castps_si256(_mm256_add_ps(v, k.magic)), k.low16)
    }

    /// One row's 16 pixels from `x`: their luma codes stored at `oy`,
    /// their (Cb, Cr) returned as (pixels 0..8, 8..16).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pixels(
        k: &K,
        [r, g, b]: [*const f32; 3],
        oy: *mut u16,
        x: usize,
    ) -> ([__m256; 2], [__m256; 2]) {
        let mut cb = [k.zero; 2];
        let mut cr = [k.zero; 2];
        let mut codes = [_mm256_setzero_si256(); 2];
        for h in 0..2 {
            let at = x + 8 * h;
            // f32::clamp(0, 1): x < 0 ? 0 : x, then x > 1 ? 1 : x (NaN kept).
            let clamp = |p: *const f32| {
                _mm256_min_ps(k.one, _mm256_max_ps(k.zero, _mm256_loadu_ps(p.add(at))))
            };
            let (rv, gv, bv) = (clamp(r), clamp(g), clamp(b));
            let l = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(k.kr, rv), _mm256_mul_ps(k.kg, gv)),
                _mm256_mul_ps(k.kb, bv),
            );
            codes[h] = q(k, _mm256_add_ps(k.yo, _mm256_mul_ps(k.ys, l)));
            cb[h] = _mm256_div_ps(_mm256_sub_ps(bv, l), k.db);
            cr[h] = _mm256_div_ps(_mm256_sub_ps(rv, l), k.dr);
        }
        // 16 codes in pixel order (packus interleaves the 128-bit lanes).
        let packed =
            _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(codes[0], codes[1]));
        _mm256_storeu_si256(oy.add(x) as *mut __m256i, packed);
        (cb, cr)
    }

    /// The codes of 8 blocks from the per-pixel chroma of their top and
    /// bottom rows (16 pixels each): sum `0 + top left + top right +
    /// bottom left + bottom right`, then `q(co + cs s / 4)`; stored at `o`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn blocks(k: &K, t: [__m256; 2], b: [__m256; 2], o: *mut u16) {
        // Left and right pixels of the blocks, in block order 0 1 4 5 |
        // 2 3 6 7 (per 128-bit lane).
        let left = |v: [__m256; 2]| _mm256_shuffle_ps::<0b10_00_10_00>(v[0], v[1]);
        let right = |v: [__m256; 2]| _mm256_shuffle_ps::<0b11_01_11_01>(v[0], v[1]);
        let s = _mm256_add_ps(k.zero, left(t));
        let s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s, right(t)), left(b)), right(b));
        // Block order 0 ..= 7 (swap the middle 64-bit pairs).
        let s = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s)));
        // `/ 4` is exact, as `* 0.25`.
        let c = q(
            k,
            _mm256_add_ps(k.co, _mm256_mul_ps(_mm256_mul_ps(k.cs, s), k.quarter)),
        );
        let c = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packus_epi32(c, c));
        _mm_storeu_si128(o as *mut __m128i, _mm256_castsi256_si128(c));
    }

    /// [`super::pair_row`] for the first multiple of 8 of its blocks;
    /// returns how many blocks it wrote.
    ///
    /// # Safety
    /// The CPU has AVX2; with `n = min(ob.len(), or.len())`, every row of
    /// `top` and `bottom` and both `yt` and `yb` at least `2 n` long.
    #[target_feature(enable = "avx2")]
    pub unsafe fn pair_row(
        top: [&[f32]; 3],
        bottom: [&[f32]; 3],
        [yt, yb]: [&mut [u16]; 2],
        ob: &mut [u16],
        or: &mut [u16],
        c: &Coeffs,
    ) -> usize {
        let n = ob.len().min(or.len()) / 8 * 8;
        let k = K {
            zero: _mm256_setzero_ps(),
            one: _mm256_set1_ps(1.0),
            kr: _mm256_set1_ps(c.kr),
            kg: _mm256_set1_ps(c.kg),
            kb: _mm256_set1_ps(c.kb),
            db: _mm256_set1_ps(c.db),
            dr: _mm256_set1_ps(c.dr),
            yo: _mm256_set1_ps(c.yo),
            ys: _mm256_set1_ps(c.ys),
            co: _mm256_set1_ps(c.co),
            cs: _mm256_set1_ps(c.cs),
            quarter: _mm256_set1_ps(0.25),
            max: _mm256_set1_ps(c.max),
            sign: _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN)),
            below_half: _mm256_set1_ps(f32::from_bits(0.5f32.to_bits() - 1)),
            magic: _mm256_set1_ps(8_388_608.0),
            low16: _mm256_set1_epi32(0xffff),
        };
        let (t, b) = (top.map(|s| s.as_ptr()), bottom.map(|s| s.as_ptr()));
        let (pt, pb) = (yt.as_mut_ptr(), yb.as_mut_ptr());
        let (qb, qr) = (ob.as_mut_ptr(), or.as_mut_ptr());
        let mut j = 0;
        while j < n {
            let (cbt, crt) = pixels(&k, t, pt, 2 * j);
            let (cbb, crb) = pixels(&k, b, pb, 2 * j);
            blocks(&k, cbt, cbb, qb.add(j));
            blocks(&k, crt, crb, qr.add(j));
            j += 8;
        }
        n
    }
}

/// Encodes rows of an image `w` wide (`rgb` each `rows * w`, starting on
/// an even image row; an odd `rows` only at the frame's bottom edge) into
/// their luma rows and their chroma rows (`ceil(rows / 2)` rows of
/// `ceil(w / 2)` samples in each of `[y, cb, cr]`).
fn encode_rows(k: &Coeffs, w: usize, [r, g, b]: [&[f32]; 3], [oy, ob, or]: [&mut [u16]; 3]) {
    if w == 0 {
        return;
    }
    let rows = (r.len() / w).min(oy.len() / w);
    let cw = w.div_ceil(2);
    let at = |y: usize| {
        let s = y * w..(y + 1) * w;
        [&r[s.clone()], &g[s.clone()], &b[s]]
    };
    for (cy, (ob, or)) in ob
        .chunks_mut(cw)
        .zip(or.chunks_mut(cw))
        .enumerate()
        .take(rows.div_ceil(2))
    {
        // Row pairs: luma and whole blocks eight lanes wide in one pass;
        // the luma of a last odd column and of a last odd row, and the
        // cut blocks at the right and bottom edges, after.
        let y0 = 2 * cy;
        let (full, luma_from) = if y0 + 1 < rows && w >= 2 {
            let (yt, yb) = oy[y0 * w..(y0 + 2) * w].split_at_mut(w);
            let n = w / 2;
            pair_row_wide(at(y0), at(y0 + 1), [yt, yb], &mut ob[..n], &mut or[..n], k);
            (n, 2 * n)
        } else {
            (0, 0)
        };
        for y in y0..(y0 + 2).min(rows) {
            if luma_from < w {
                let [pr, pg, pb] = at(y);
                luma_row_wide(
                    &pr[luma_from..],
                    &pg[luma_from..],
                    &pb[luma_from..],
                    &mut oy[y * w + luma_from..(y + 1) * w],
                    k,
                );
            }
        }
        for cx in full..ob.len().min(or.len()) {
            (ob[cx], or[cx]) = k.chroma_block([r, g, b], w, rows, cx, cy);
        }
    }
}

impl YuvFrame {
    /// Encodes an R'G'B' image.
    pub fn encode(img: &Image, matrix: Matrix, range: Range, format: YuvFormat) -> YuvFrame {
        let (w, h) = (img.width, img.height);
        let k = Coeffs::new(matrix, range, format);
        let [r, g, b] = img.planes();
        let (cw, ch) = chroma_size(w, h);
        let mut y = vec![0u16; w * h];
        let mut cb = vec![0u16; cw * ch];
        let mut cr = vec![0u16; cw * ch];
        // Bands of BAND rows (whole 2x2 blocks but at the bottom edge).
        const BAND: usize = 16;
        y.par_chunks_mut((BAND * w).max(1))
            .zip(cb.par_chunks_mut((BAND / 2 * cw).max(1)))
            .zip(cr.par_chunks_mut((BAND / 2 * cw).max(1)))
            .enumerate()
            .for_each(|(i, ((oy, ob), or))| {
                let s = i * BAND * w..((i + 1) * BAND * w).min(r.len());
                let rows = [&r[s.clone()], &g[s.clone()], &b[s]];
                encode_rows(&k, w, rows, [oy, ob, or]);
            });
        YuvFrame::from_planes(
            w,
            h,
            Params {
                matrix,
                range,
                format,
            },
            [y, cb, cr],
        )
    }

    /// A `w` x `h` frame of `p`'s kind from its Y, Cb and Cr planes.
    fn from_planes(w: usize, h: usize, p: Params, [y, cb, cr]: [Vec<u16>; 3]) -> YuvFrame {
        YuvFrame {
            width: w,
            height: h,
            matrix: p.matrix,
            range: p.range,
            format: p.format,
            y,
            cb,
            cr,
        }
    }

    /// The file bytes (layouts in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.format {
            YuvFormat::Nv12 => {
                out.extend(self.y.iter().map(|&v| v as u8));
                for (b, r) in self.cb.iter().zip(&self.cr) {
                    out.extend([*b as u8, *r as u8]);
                }
            }
            YuvFormat::I420 => {
                out.extend(self.y.iter().map(|&v| v as u8));
                out.extend(self.cb.iter().map(|&v| v as u8));
                out.extend(self.cr.iter().map(|&v| v as u8));
            }
            YuvFormat::P010 => {
                for &v in &self.y {
                    out.extend((v << 6).to_le_bytes());
                }
                for (b, r) in self.cb.iter().zip(&self.cr) {
                    out.extend((b << 6).to_le_bytes());
                    out.extend((r << 6).to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads a file written by [`YuvFrame::to_bytes`]; the size must match.
    pub fn from_bytes(
        bytes: &[u8],
        width: usize,
        height: usize,
        format: YuvFormat,
        matrix: Matrix,
        range: Range,
    ) -> Result<YuvFrame> {
        let (cw, ch) = chroma_size(width, height);
        let (n, nc) = (width * height, cw * ch);
        let per = if format == YuvFormat::P010 { 2 } else { 1 };
        let want = (n + 2 * nc) * per;
        if bytes.len() != want {
            return Err(Error::invalid(format!(
                "{format:?} {width}x{height} needs {want} bytes, got {}",
                bytes.len()
            )));
        }
        let (mut y, mut cb, mut cr) = (
            Vec::with_capacity(n),
            Vec::with_capacity(nc),
            Vec::with_capacity(nc),
        );
        match format {
            YuvFormat::Nv12 => {
                y.extend(bytes[..n].iter().map(|&v| v as u16));
                for p in bytes[n..].chunks_exact(2) {
                    cb.push(p[0] as u16);
                    cr.push(p[1] as u16);
                }
            }
            YuvFormat::I420 => {
                y.extend(bytes[..n].iter().map(|&v| v as u16));
                cb.extend(bytes[n..n + nc].iter().map(|&v| v as u16));
                cr.extend(bytes[n + nc..].iter().map(|&v| v as u16));
            }
            YuvFormat::P010 => {
                let words: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|p| u16::from_le_bytes([p[0], p[1]]) >> 6)
                    .collect();
                y.extend_from_slice(&words[..n]);
                for p in words[n..].chunks_exact(2) {
                    cb.push(p[0]);
                    cr.push(p[1]);
                }
            }
        }
        Ok(YuvFrame {
            width,
            height,
            matrix,
            range,
            format,
            y,
            cb,
            cr,
        })
    }

    /// Decodes back to R'G'B' (nearest-neighbour chroma upsampling).
    pub fn to_image(&self, meta: std::sync::Arc<crate::raw::RawMeta>) -> Image {
        let (w, h) = (self.width, self.height);
        let (kr, kb) = self.matrix.coeffs();
        let kg = 1.0 - kr - kb;
        let ((yo, ys), (co, cs)) = quant(self.range, self.format.bits());
        let (cw, _) = chroma_size(w, h);
        let n = w * h;
        let mut data = vec![0f32; 3 * n];
        for yy in 0..h {
            for xx in 0..w {
                let i = yy * w + xx;
                let c = (yy / 2) * cw + xx / 2;
                let l = (self.y[i] as f32 - yo) / ys;
                let pb = (self.cb[c] as f32 - co) / cs;
                let pr = (self.cr[c] as f32 - co) / cs;
                let r = l + 2.0 * (1.0 - kr) * pr;
                let b = l + 2.0 * (1.0 - kb) * pb;
                let g = (l - kr * r - kb * b) / kg;
                data[i] = r;
                data[n + i] = g;
                data[2 * n + i] = b;
            }
        }
        Image {
            width: w,
            height: h,
            data,
            space: ColorSpace::Srgb,
            wb_applied: None,
            meta,
        }
    }
}

/// The compiled `yuv_encode` op.
#[derive(Debug)]
pub struct YuvEncode {
    p: Params,
}

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    Ok(Box::new(YuvEncode {
        p: parse_params(params)?,
    }))
}

impl Stage for YuvEncode {
    fn op(&self) -> &'static str {
        "yuv_encode"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = one_input(inputs, ValueKind::Image)?;
        if d.space.is_some() && d.space != Some(ColorSpace::Srgb) {
            return Err("expects a transfer-encoded image (place it after srgb_encode)".into());
        }
        Ok(ValueDesc {
            kind: ValueKind::Other(YUV_FRAME),
            ..d
        })
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("no input"))?;
        let img = take_image(v)?;
        let f = YuvFrame::encode(&img, self.p.matrix, self.p.range, self.p.format);
        Ok(Value::Other(std::sync::Arc::new(f)))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: 0,
            row_align: 2,
        })
    }

    /// The encoder as a segment's last member: each strip's luma rows and
    /// chroma rows by [`encode_rows`], as [`YuvFrame::encode`] does them.
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        if input.space() != Some(ColorSpace::Srgb) {
            return Err(Error::invalid(
                "expects a transfer-encoded image (place it after srgb_encode)",
            ));
        }
        let (w, h) = (input.width, input.height);
        let (cw, ch) = chroma_size(w, h);
        let p = self.p;
        let k = Coeffs::new(p.matrix, p.range, p.format);
        let f: EncodeFn = Box::new(move |_y0, rows, parts| {
            if let [oy, ob, or] = parts {
                encode_rows(&k, w, rows, [&mut **oy, &mut **ob, &mut **or]);
            }
        });
        let finish: FinishFn = Box::new(move |planes| {
            let mut planes = planes.into_iter();
            let mut next = || planes.next().unwrap_or_default();
            let planes = [next(), next(), next()];
            Value::Other(std::sync::Arc::new(YuvFrame::from_planes(w, h, p, planes)))
        });
        let enc = Encoder {
            group: 2,
            planes: vec![(2 * w, w * h), (cw, cw * ch), (cw, cw * ch)],
            f,
            finish,
        };
        Ok(Some((RowKernel::Encode(enc), input.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{CfaPattern, RawMeta};
    use std::sync::Arc;

    fn meta(w: usize, h: usize) -> Arc<RawMeta> {
        Arc::new(RawMeta::bayer("t", w, h, CfaPattern::ALL[0]))
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
            space: ColorSpace::Srgb,
            wb_applied: None,
            meta: meta(w, h),
        }
    }

    /// The vectorisable quantiser gives the codes of `round`, `clamp` and
    /// `as` on any value.
    #[test]
    fn quantisation_equals_round_clamp_and_cast() {
        for format in [YuvFormat::Nv12, YuvFormat::P010] {
            let k = Coeffs::new(Matrix::Bt709, Range::Full, format);
            let mut vals = vec![
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -0.0,
                0.0,
                -0.5,
                0.5,
            ];
            vals.extend((0..20000).map(|i| i as f32 * 0.0625 - 100.0));
            for v in vals {
                let want = v.round().clamp(0.0, k.max) as u16;
                assert_eq!(k.q(v), want, "{v}");
            }
        }
    }

    /// The row kernels give the codes of the per-block definition at every
    /// sample, odd sizes (cut edge blocks) included.
    /// The AVX2 row pairs against the scalar [`pair_row`] on values that
    /// round at exact halves (0.5, 0.25, ...), clamp (below 0, above 1),
    /// and NaN / infinities, every format and range; widths with a
    /// partial last group of blocks.
    #[test]
    fn vector_row_pairs_equal_the_scalar_definition() {
        let pool = [
            0.0f32,
            -0.0,
            0.5,
            0.25,
            0.75,
            1.0,
            0.125,
            0.375,
            -0.2,
            1.3,
            0.999,
            0.001,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut x = 0x9e37_79b9u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if x.is_multiple_of(3) {
                pool[(x >> 8) as usize % pool.len()]
            } else {
                (x >> 8) as f32 / (1u32 << 24) as f32
            }
        };
        for format in [YuvFormat::Nv12, YuvFormat::P010] {
            for range in [Range::Full, Range::Limited] {
                for matrix in [Matrix::Bt601, Matrix::Bt709, Matrix::Bt2020] {
                    let k = Coeffs::new(matrix, range, format);
                    for n in [1usize, 8, 13, 200] {
                        let rows: Vec<Vec<f32>> = (0..6)
                            .map(|_| (0..2 * n).map(|_| rnd()).collect())
                            .collect();
                        let top = [&rows[0][..], &rows[1][..], &rows[2][..]];
                        let bottom = [&rows[3][..], &rows[4][..], &rows[5][..]];
                        let run = |wide: bool| {
                            let (mut y, mut cb, mut cr) =
                                (vec![0u16; 4 * n], vec![0u16; n], vec![0u16; n]);
                            let (yt, yb) = y.split_at_mut(2 * n);
                            if wide {
                                pair_row_wide(top, bottom, [yt, yb], &mut cb, &mut cr, &k);
                            } else {
                                pair_row(top, bottom, [yt, yb], &mut cb, &mut cr, &k);
                            }
                            (y, cb, cr)
                        };
                        let (want, got) = (run(false), run(true));
                        assert_eq!(got, want, "{format:?} {range:?} {matrix:?} {n} blocks");
                    }
                }
            }
        }
    }

    #[test]
    fn row_kernels_equal_per_block_encoding() {
        for (w, h) in [(1, 1), (2, 3), (33, 17), (64, 9), (301, 5)] {
            let img = image(w, h, &|x, y| {
                let t = (x * 7 + y * 13) as f32;
                [
                    (t * 0.013).sin().abs() * 1.1 - 0.05,
                    (t * 0.029).cos().abs(),
                    (t * 0.007).fract(),
                ]
            });
            for format in [YuvFormat::Nv12, YuvFormat::P010] {
                for range in [Range::Full, Range::Limited] {
                    let f = YuvFrame::encode(&img, Matrix::Bt709, range, format);
                    let k = Coeffs::new(Matrix::Bt709, range, format);
                    let p = img.planes();
                    for (i, &code) in f.y.iter().enumerate() {
                        assert_eq!(code, k.q(k.yo + k.ys * k.luma(p[0][i], p[1][i], p[2][i])));
                    }
                    let (cw, ch) = chroma_size(w, h);
                    for cy in 0..ch {
                        for cx in 0..cw {
                            let want = k.chroma_block(p, w, h, cx, cy);
                            assert_eq!(
                                (f.cb[cy * cw + cx], f.cr[cy * cw + cx]),
                                want,
                                "{w}x{h} ({cx},{cy})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reference_levels() {
        let white = image(2, 2, &|_, _| [1.0, 1.0, 1.0]);
        let black = image(2, 2, &|_, _| [0.0, 0.0, 0.0]);
        let red = image(2, 2, &|_, _| [1.0, 0.0, 0.0]);
        let lim = |i: &Image, m| YuvFrame::encode(i, m, Range::Limited, YuvFormat::Nv12);
        let full = |i: &Image, m| YuvFrame::encode(i, m, Range::Full, YuvFormat::Nv12);
        let f = lim(&white, Matrix::Bt709);
        assert_eq!((f.y[0], f.cb[0], f.cr[0]), (235, 128, 128));
        let f = lim(&black, Matrix::Bt709);
        assert_eq!((f.y[0], f.cb[0], f.cr[0]), (16, 128, 128));
        // Red: Y = 219 Kr + 16, Cr = 128 + 112.
        let f = lim(&red, Matrix::Bt709);
        assert_eq!(
            (f.y[0], f.cr[0]),
            ((16.0f32 + 219.0 * 0.2126).round() as u16, 240)
        );
        let f = lim(&red, Matrix::Bt601);
        assert_eq!(f.y[0], (16.0f32 + 219.0 * 0.299).round() as u16);
        let f = full(&red, Matrix::Bt2020);
        assert_eq!(f.y[0], (255.0f32 * 0.2627).round() as u16);
        let f = YuvFrame::encode(&white, Matrix::Bt709, Range::Limited, YuvFormat::P010);
        assert_eq!((f.y[0], f.cb[0]), (940, 512));
    }

    #[test]
    fn every_format_round_trips_through_bytes() {
        let f = |x: usize, y: usize| {
            let (u, v) = (x as f32 / 100.0, y as f32 / 60.0);
            [0.2 + 0.6 * u, 0.5 + 0.3 * v * u, 0.9 - 0.7 * v]
        };
        for (w, h) in [(32, 18), (31, 17)] {
            let img = image(w, h, &f);
            for format in [YuvFormat::Nv12, YuvFormat::I420, YuvFormat::P010] {
                for range in [Range::Full, Range::Limited] {
                    for matrix in [Matrix::Bt601, Matrix::Bt709, Matrix::Bt2020] {
                        let enc = YuvFrame::encode(&img, matrix, range, format);
                        let bytes = enc.to_bytes();
                        let (cw, ch) = chroma_size(w, h);
                        let per = if format == YuvFormat::P010 { 2 } else { 1 };
                        assert_eq!(bytes.len(), (w * h + 2 * cw * ch) * per);
                        let back =
                            YuvFrame::from_bytes(&bytes, w, h, format, matrix, range).unwrap();
                        assert_eq!(back, enc);
                        let dec = back.to_image(meta(w, h));
                        // Quantisation plus the 4:2:0 chroma mean of a
                        // gradient of up to 0.012 per pixel.
                        let tol = 0.02;
                        for (a, b) in dec.data.iter().zip(&img.data) {
                            assert!(
                                (a - b).abs() < tol,
                                "{format:?} {range:?} {matrix:?}: {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
        assert!(YuvFrame::from_bytes(
            &[0u8; 10],
            4,
            4,
            YuvFormat::Nv12,
            Matrix::Bt709,
            Range::Full
        )
        .is_err());
    }

    #[test]
    fn rejects_linear_input_and_unknown_params() {
        let st = compile(serde_json::Value::Null).unwrap();
        let d = ValueDesc::image(8, 8, ColorSpace::LinearSrgb);
        assert!(st.infer(&[d]).is_err());
        assert!(compile(serde_json::json!({ "format": "yuy2" })).is_err());
        assert!(compile(serde_json::json!({ "bits": 8 })).is_err());
    }
}
