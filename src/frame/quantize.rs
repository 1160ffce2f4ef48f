//! Quantisation of finished images to the integer samples that files and
//! arrays hold: `[0, 1]` floats -> 8- or 16-bit interleaved RGB.
//!
//! One rounding rule everywhere: clamp to `[0, 1]` (NaN -> 0), scale by
//! the maximum code, add 0.5, truncate. The PNG/TIFF/JPEG writers, the
//! Python arrays and the fused executor's delivered outputs
//! ([`crate::graph::RunOptions::deliver`]) all quantise through
//! [`quantize_rows`], so a frame quantised at the end of the last fused
//! segment is bit-identical to one quantised after the reference path.
//! With AVX2 the 8-bit and 16-bit kernels work 8 pixels at a time
//! (interleaving by byte shuffles), with the same arithmetic (separate
//! multiply and add, no FMA) as the scalar path.

use std::sync::Arc;

use super::{ColorSpace, Image};
use crate::memory::par_filled;
use crate::raw::RawMeta;

/// Bits per sample of a quantised image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Depth {
    /// 8-bit samples (PNG, JPEG).
    #[value(name = "u8")]
    U8,
    /// 16-bit samples (16-bit PNG and TIFF).
    #[value(name = "u16")]
    U16,
}

/// Interleaved RGB samples (HWC: `r, g, b` per pixel, rows top to bottom),
/// `3 * width * height` of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

impl Samples {
    /// The depth of these samples.
    pub fn depth(&self) -> Depth {
        match self {
            Samples::U8(_) => Depth::U8,
            Samples::U16(_) => Depth::U16,
        }
    }

    /// Number of samples (3 per pixel).
    pub fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A finished image quantised for output: what a fused pipeline delivers
/// when [`crate::graph::RunOptions::deliver`] asks for integer samples.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    pub width: usize,
    pub height: usize,
    /// The colour encoding of the values before quantisation.
    pub space: ColorSpace,
    pub samples: Samples,
    pub meta: Arc<RawMeta>,
}

/// A consumer of a delivered output's samples while they are made. With
/// [`crate::graph::RunOptions::stream`] set, the fused segment that
/// quantises the pipeline's first output hands each band of rows over as
/// soon as it is quantised instead of keeping the whole frame, so a file
/// writer can write them while the rest are computed (a 12 MP 16-bit frame
/// is 72 MB).
pub trait SampleStream: Send + Sync {
    /// The frame about to come: `width` x `height` pixels, interleaved RGB
    /// samples of `depth`. Called once, before any [`SampleStream::rows`].
    fn begin(&self, width: usize, height: usize, depth: Depth);

    /// Rows from `y0` on, whole rows of 3 samples per pixel (`samples.len()
    /// / (3 * width)` of them). Bands come from several threads, roughly
    /// but not strictly in row order; every row comes exactly once.
    fn rows(&self, y0: usize, samples: Samples);
}

impl std::fmt::Debug for dyn SampleStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampleStream")
    }
}

/// One float sample to 8 bits (the rule in the module docs).
#[inline(always)]
pub fn q8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// One float sample to 16 bits (the rule in the module docs).
#[inline(always)]
pub fn q16(v: f32) -> u16 {
    (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16
}

/// Destination rows of [`quantize_rows`]: `3 * r.len()` samples.
pub enum RowsOut<'a> {
    U8(&'a mut [u8]),
    U16(&'a mut [u16]),
}

/// Quantises equal-length planar runs `[r, g, b]` (whole rows) into
/// interleaved samples `out` (`3 * r.len()` long).
pub fn quantize_rows([r, g, b]: [&[f32]; 3], out: RowsOut) {
    let n = r.len().min(g.len()).min(b.len());
    match out {
        RowsOut::U8(o) => {
            let o = &mut o[..3 * n];
            let done = simd_u8(r, g, b, o);
            for i in done..n {
                o[3 * i] = q8(r[i]);
                o[3 * i + 1] = q8(g[i]);
                o[3 * i + 2] = q8(b[i]);
            }
        }
        RowsOut::U16(o) => {
            let o = &mut o[..3 * n];
            let done = simd_u16(r, g, b, o);
            for i in done..n {
                o[3 * i] = q16(r[i]);
                o[3 * i + 1] = q16(g[i]);
                o[3 * i + 2] = q16(b[i]);
            }
        }
    }
}

/// Allocates `n` interleaved samples of `depth` and fills them in
/// parallel: `fill(i, chunk)` writes chunk `i` (`chunk` samples; the last
/// may be shorter). The one place the 8- and 16-bit outputs are built, for
/// [`quantize_image`] and the fused executor.
pub fn par_samples(
    depth: Depth,
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, RowsOut) + Sync,
) -> Samples {
    // Each chunk is zeroed by its own task just before `fill` (no serial
    // pass over the whole output: 72 MB of fresh pages at 12 MP, 16-bit).
    match depth {
        Depth::U8 => Samples::U8(par_filled(n, chunk, |i, o| fill(i, RowsOut::U8(o)))),
        Depth::U16 => Samples::U16(par_filled(n, chunk, |i, o| fill(i, RowsOut::U16(o)))),
    }
}

impl RowsOut<'_> {
    /// Samples in this run.
    pub fn len(&self) -> usize {
        match self {
            RowsOut::U8(o) => o.len(),
            RowsOut::U16(o) => o.len(),
        }
    }

    /// The samples `r` of this run.
    pub fn range(&mut self, r: std::ops::Range<usize>) -> RowsOut<'_> {
        match self {
            RowsOut::U8(o) => RowsOut::U8(&mut o[r]),
            RowsOut::U16(o) => RowsOut::U16(&mut o[r]),
        }
    }

    /// Whether the run is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Quantises a whole planar image, rows in parallel.
pub fn quantize_image(img: &Image, depth: Depth) -> EncodedImage {
    let [r, g, b] = img.planes();
    let w = img.width.max(1);
    let samples = par_samples(depth, 3 * r.len(), 3 * w, |y, row| {
        let s = y * w..y * w + row.len() / 3;
        quantize_rows([&r[s.clone()], &g[s.clone()], &b[s]], row);
    });
    EncodedImage {
        width: img.width,
        height: img.height,
        space: img.space,
        samples,
        meta: img.meta.clone(),
    }
}

/// The 8-bit AVX2 kernel over a prefix of the pixels; returns how many
/// pixels it wrote (0 without AVX2).
fn simd_u8(r: &[f32], g: &[f32], b: &[f32], o: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::backend::simd::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2::u8_rows(r, g, b, o) };
        }
    }
    let _ = (r, g, b, o);
    0
}

/// The 16-bit AVX2 kernel, as [`simd_u8`].
fn simd_u16(r: &[f32], g: &[f32], b: &[f32], o: &mut [u16]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::backend::simd::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2::u16_rows(r, g, b, o) };
        }
    }
    let _ = (r, g, b, o);
    0
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// 8 samples to integer codes: `trunc(min(max(v, 0), 1) * scale + 0.5)`.
    /// `max` first with `v` as its first operand sends NaN to 0, as
    /// `f32::clamp` + `as` do.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn codes(p: *const f32, scale: __m256) -> __m256i {
        let v = _mm256_loadu_ps(p);
        let c = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(1.0));
        _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(c, scale), _mm256_set1_ps(0.5)))
    }

    /// 8-bit: 8 pixels per step as `r | g << 8 | b << 16` in 32-bit lanes,
    /// a byte shuffle packs each 128-bit half's 4 pixels into 12 bytes, and
    /// two overlapping 16-byte stores write them (so a step needs 4 bytes
    /// of room past its 24). Returns the pixels written.
    #[target_feature(enable = "avx2")]
    pub unsafe fn u8_rows(r: &[f32], g: &[f32], b: &[f32], o: &mut [u8]) -> usize {
        let n = r.len().min(g.len()).min(b.len()).min(o.len() / 3);
        let scale = _mm256_set1_ps(255.0);
        let pack = _mm256_setr_epi8(
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12,
            13, 14, -1, -1, -1, -1,
        );
        let mut i = 0;
        while i + 8 <= n && 3 * i + 28 <= o.len() {
            // SAFETY: pixels i..i + 8 are inside r, g, b (i + 8 <= n) and
            // bytes 3i..3i + 28 inside o (checked by the loop condition).
            let (cr, cg, cb) = (
                codes(r.as_ptr().add(i), scale),
                codes(g.as_ptr().add(i), scale),
                codes(b.as_ptr().add(i), scale),
            );
            let v = _mm256_or_si256(
                _mm256_or_si256(cr, _mm256_slli_epi32(cg, 8)),
                _mm256_slli_epi32(cb, 16),
            );
            let s = _mm256_shuffle_epi8(v, pack);
            let dst = o.as_mut_ptr().add(3 * i);
            _mm_storeu_si128(dst.cast(), _mm256_castsi256_si128(s));
            _mm_storeu_si128(dst.add(12).cast(), _mm256_extracti128_si256(s, 1));
            i += 8;
        }
        i
    }

    /// 16-bit: 8 pixels per step. Per 128-bit half, `r0..r3 g0..g3` and
    /// `b0..b3` (16-bit) are shuffled into `r0 g0 b0 r1 g1 b1 r2 g2` and
    /// `b2 r3 g3 b3`, stored as 16 + 8 bytes. Returns the pixels written.
    #[target_feature(enable = "avx2")]
    pub unsafe fn u16_rows(r: &[f32], g: &[f32], b: &[f32], o: &mut [u16]) -> usize {
        let n = r.len().min(g.len()).min(b.len()).min(o.len() / 3);
        let scale = _mm256_set1_ps(65535.0);
        // Byte indices into `rg` (r0..r3 = words 0..3, g0..g3 = words 4..7)
        // and into `bz` (b0..b3 = words 0..3); -1 gives a zero byte.
        const Z: i8 = -1;
        let first_rg = _mm256_setr_epi8(
            0, 1, 8, 9, Z, Z, 2, 3, 10, 11, Z, Z, 4, 5, 12, 13, 0, 1, 8, 9, Z, Z, 2, 3, 10, 11, Z,
            Z, 4, 5, 12, 13,
        );
        let first_b = _mm256_setr_epi8(
            Z, Z, Z, Z, 0, 1, Z, Z, Z, Z, 2, 3, Z, Z, Z, Z, Z, Z, Z, Z, 0, 1, Z, Z, Z, Z, 2, 3, Z,
            Z, Z, Z,
        );
        let second_rg = _mm256_setr_epi8(
            Z, Z, 6, 7, 14, 15, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, 6, 7, 14, 15, Z, Z, Z, Z, Z, Z,
            Z, Z, Z, Z,
        );
        let second_b = _mm256_setr_epi8(
            4, 5, Z, Z, Z, Z, 6, 7, Z, Z, Z, Z, Z, Z, Z, Z, 4, 5, Z, Z, Z, Z, 6, 7, Z, Z, Z, Z, Z,
            Z, Z, Z,
        );
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: pixels i..i + 8 are inside r, g, b and samples
            // 3i..3i + 24 inside o (i + 8 <= n <= o.len() / 3).
            let (cr, cg, cb) = (
                codes(r.as_ptr().add(i), scale),
                codes(g.as_ptr().add(i), scale),
                codes(b.as_ptr().add(i), scale),
            );
            // Codes are within 0..=65535, so the saturating packs are exact.
            let rg = _mm256_packus_epi32(cr, cg);
            let bz = _mm256_packus_epi32(cb, _mm256_setzero_si256());
            let first = _mm256_or_si256(
                _mm256_shuffle_epi8(rg, first_rg),
                _mm256_shuffle_epi8(bz, first_b),
            );
            let second = _mm256_or_si256(
                _mm256_shuffle_epi8(rg, second_rg),
                _mm256_shuffle_epi8(bz, second_b),
            );
            let dst = o.as_mut_ptr().add(3 * i);
            _mm_storeu_si128(dst.cast(), _mm256_castsi256_si128(first));
            _mm_storel_epi64(dst.add(8).cast(), _mm256_castsi256_si128(second));
            _mm_storeu_si128(dst.add(12).cast(), _mm256_extracti128_si256(first, 1));
            _mm_storel_epi64(dst.add(20).cast(), _mm256_extracti128_si256(second, 1));
            i += 8;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that hit every rounding edge: exact codes, half-way points
    /// and their float neighbours, out of range, NaN, infinities.
    fn edge_values() -> Vec<f32> {
        let mut v = vec![
            0.0,
            1.0,
            -0.0,
            -1e-9,
            1.0 + 1e-7,
            2.0,
            -3.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for k in 0..=255u32 {
            for d in [-0.5f32, 0.0, 0.5] {
                let x = (k as f32 + d) / 255.0;
                v.extend([
                    x,
                    f32::from_bits(x.to_bits() + 1),
                    f32::from_bits(x.to_bits().saturating_sub(1)),
                ]);
            }
        }
        let mut s = 0x1234_5678u32;
        for _ in 0..5000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            v.push((s >> 8) as f32 / (1u32 << 24) as f32 * 1.2 - 0.1);
        }
        v
    }

    #[test]
    fn rows_match_the_scalar_rule_at_every_length() {
        let v = edge_values();
        let n = v.len() / 3;
        let (r, g, b) = (&v[..n], &v[n..2 * n], &v[2 * n..3 * n]);
        // Lengths around the 8-pixel step and its 4-byte overhang.
        for len in (0..40).chain([n - 1, n]) {
            let mut o8 = vec![7u8; 3 * len];
            quantize_rows([&r[..len], &g[..len], &b[..len]], RowsOut::U8(&mut o8));
            let mut o16 = vec![7u16; 3 * len];
            quantize_rows([&r[..len], &g[..len], &b[..len]], RowsOut::U16(&mut o16));
            for i in 0..len {
                assert_eq!(
                    o8[3 * i..3 * i + 3],
                    [q8(r[i]), q8(g[i]), q8(b[i])],
                    "u8 len {len} px {i}"
                );
                assert_eq!(
                    o16[3 * i..3 * i + 3],
                    [q16(r[i]), q16(g[i]), q16(b[i])],
                    "u16 len {len} px {i}"
                );
            }
        }
    }

    #[test]
    fn scalar_rule_rounds_to_nearest_and_clamps() {
        assert_eq!(q8(0.5 / 255.0 - 1e-6), 0);
        assert_eq!(q8(0.5 / 255.0 + 1e-6), 1);
        assert_eq!(q8(1.5), 255);
        assert_eq!(q8(-1.0), 0);
        assert_eq!(q8(f32::NAN), 0);
        assert_eq!(q16(1.0), 65535);
        assert_eq!(q16(0.25), 16384);
    }

    #[test]
    fn image_quantisation_interleaves_planes() {
        let meta = RawMeta::bayer("test", 3, 2, crate::raw::CfaPattern::Rggb);
        let img = Image {
            width: 3,
            height: 2,
            data: (0..18).map(|k| k as f32 / 17.0).collect(),
            space: ColorSpace::Srgb,
            wb_applied: None,
            meta: Arc::new(meta),
        };
        let e = quantize_image(&img, Depth::U8);
        let Samples::U8(s) = &e.samples else {
            panic!("8-bit samples expected");
        };
        assert_eq!(s.len(), 18);
        // Pixel 4 (x 1, y 1): plane values 4, 10, 16 of 17.
        assert_eq!(
            s[12..15],
            [q8(4.0 / 17.0), q8(10.0 / 17.0), q8(16.0 / 17.0)]
        );
        assert_eq!(quantize_image(&img, Depth::U16).samples.len(), 18);
    }
}
