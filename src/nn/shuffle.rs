//! Pixel shuffle / unshuffle (Shi et al. 2016, "Real-time single image and
//! video super-resolution using an efficient sub-pixel CNN"), PyTorch order.
//!
//! `pixel_shuffle`: `(N, C·r², H, W) -> (N, C, H·r, W·r)` with
//! `out[c, y·r+dy, x·r+dx] = in[c·r² + dy·r + dx, y, x]`;
//! `pixel_unshuffle` is its inverse (used to pack a Bayer mosaic into four
//! half-resolution planes in raster order of the 2x2 block).

use super::{BufferPool, Tensor};
use crate::error::{Error, Result};

/// `(N, C·r², H, W) -> (N, C, H·r, W·r)`.
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    pixel_shuffle_pooled(x, r, &BufferPool::new())
}

/// [`pixel_shuffle`] with the output on a buffer from `pool`. Output row
/// by output row (each written once, interleaving its `r` source rows).
pub fn pixel_shuffle_pooled(x: &Tensor, r: usize, pool: &BufferPool) -> Result<Tensor> {
    shuffle_into(x, r, None, pool)
}

/// `pixel_shuffle(x, r) + addend` (element-wise, `addend` of the shuffled
/// shape) on a buffer from `pool`: one pass instead of a shuffle and an
/// add, the same values (`shuffled + addend`, as [`super::combine::add_assign`]
/// on the shuffled tensor).
pub fn pixel_shuffle_add_pooled(
    x: &Tensor,
    r: usize,
    addend: &Tensor,
    pool: &BufferPool,
) -> Result<Tensor> {
    shuffle_into(x, r, Some(addend), pool)
}

/// [`pixel_shuffle`]`(x, r)` appended to `dst` (its planes after what
/// `dst` holds), written in place without a zero fill or a row buffer.
pub fn pixel_shuffle_extend(x: &Tensor, r: usize, dst: &mut Vec<f32>) -> Result<()> {
    let shape = shuffled_shape(x, r)?;
    extend_shuffled(x, r, None, shape, dst)
}

/// Appends rows `y0..y1` of every plane of [`pixel_shuffle`]`(x, 2)` to
/// `dst` (item 0; per output channel its `y1 - y0` rows), every value
/// written once. Errors when the channels do not divide by 4 or the rows
/// are not inside the output.
pub fn pixel_shuffle2_rows_extend(
    x: &Tensor,
    y0: usize,
    y1: usize,
    dst: &mut Vec<f32>,
) -> Result<()> {
    let [n, c, ho, wo] = shuffled_shape(x, 2)?;
    if n == 0 || y0 > y1 || y1 > ho {
        return Err(Error::invalid(format!(
            "pixel_shuffle: rows {y0}..{y1} of a {ho}-row output of {:?}",
            x.shape()
        )));
    }
    let w = x.w();
    dst.reserve(c * (y1 - y0) * wo);
    for co in 0..c {
        for yo in y0..y1 {
            let (y, dy) = (yo / 2, yo % 2);
            let src = |dx: usize| &x.plane(0, co * 4 + dy * 2 + dx)[y * w..(y + 1) * w];
            let start = dst.len();
            interleave2(&mut dst.spare_capacity_mut()[..wo], src(0), src(1));
            // SAFETY: the `wo` = 2 w values after `start` were all written
            // above, inside the capacity reserved for all the rows.
            unsafe { dst.set_len(start + wo) };
        }
    }
    Ok(())
}

/// The output shape of `pixel_shuffle(x, r)`, or an error when the
/// channels do not divide by `r²`.
fn shuffled_shape(x: &Tensor, r: usize) -> Result<[usize; 4]> {
    let [n, cr, h, w] = x.shape();
    if r == 0 || cr % (r * r) != 0 {
        return Err(Error::invalid(format!(
            "pixel_shuffle: {cr} channels not divisible by {r}^2"
        )));
    }
    Ok([n, cr / (r * r), h * r, w * r])
}

fn shuffle_into(
    x: &Tensor,
    r: usize,
    addend: Option<&Tensor>,
    pool: &BufferPool,
) -> Result<Tensor> {
    let shape = shuffled_shape(x, r)?;
    if let Some(a) = addend {
        if a.shape() != shape {
            return Err(Error::invalid(format!(
                "pixel_shuffle: addend {:?} is not {shape:?}",
                a.shape()
            )));
        }
    }
    let mut v = pool.take(Tensor::numel(shape)?);
    extend_shuffled(x, r, addend, shape, &mut v)?;
    Tensor::from_vec(shape, v)
}

/// Appends `pixel_shuffle(x, r)` (`+ addend`, of the shuffled `shape`) to
/// `dst` output row by output row, each value written once straight into
/// `dst`'s spare capacity.
fn extend_shuffled(
    x: &Tensor,
    r: usize,
    addend: Option<&Tensor>,
    shape: [usize; 4],
    dst: &mut Vec<f32>,
) -> Result<()> {
    let [n, c, ho, wo] = shape;
    let w = x.w();
    dst.reserve(Tensor::numel(shape)?);
    for b in 0..n {
        for co in 0..c {
            let plane = (b * c + co) * ho * wo;
            for yo in 0..ho {
                let (y, dy) = (yo / r, yo % r);
                let src = |dx: usize| {
                    let p = x.plane(b, co * r * r + dy * r + dx);
                    &p[y * w..(y + 1) * w]
                };
                let start = dst.len();
                let row = &mut dst.spare_capacity_mut()[..wo];
                if r == 2 {
                    interleave2(row, src(0), src(1));
                } else {
                    for dx in 0..r {
                        for (d, &v) in row[dx..].iter_mut().step_by(r).zip(src(dx)) {
                            d.write(v);
                        }
                    }
                }
                // SAFETY: the `wo` values after `start` were all written
                // above (r·w = wo of them, `row` being inside the capacity
                // reserved for the whole output).
                unsafe { dst.set_len(start + wo) };
                if let Some(a) = addend {
                    let at = plane + yo * wo;
                    dst[start..]
                        .iter_mut()
                        .zip(&a.data()[at..at + wo])
                        .for_each(|(d, &e)| *d += e);
                }
            }
        }
    }
    Ok(())
}

/// `dst[2i] = a[i]`, `dst[2i + 1] = b[i]` for `i` below the shortest of
/// `a`, `b` and half of `dst` (the rows of a shuffle by 2). Four pairs at
/// a time with SSE2's unpacks on x86-64 (part of its baseline), the rest
/// (and other targets) one pair at a time; a pure copy, so the same values
/// either way.
fn interleave2(dst: &mut [std::mem::MaybeUninit<f32>], a: &[f32], b: &[f32]) {
    let n = a.len().min(b.len()).min(dst.len() / 2);
    #[allow(unused_mut)]
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available (checked above); a, b hold at
        // least n values and dst at least 2n.
        i = unsafe {
            interleave2_avx512(dst.as_mut_ptr().cast::<f32>(), a.as_ptr(), b.as_ptr(), n)
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps, _mm_unpackhi_ps, _mm_unpacklo_ps};
        while i + 4 <= n {
            // SAFETY: i + 4 <= n, so a[i..i + 4], b[i..i + 4] and
            // dst[2i..2i + 8] are in bounds (f32 and MaybeUninit<f32> share
            // a layout); SSE2 is always present on x86-64.
            unsafe {
                let va = _mm_loadu_ps(a.as_ptr().add(i));
                let vb = _mm_loadu_ps(b.as_ptr().add(i));
                let d = dst.as_mut_ptr().add(2 * i).cast::<f32>();
                _mm_storeu_ps(d, _mm_unpacklo_ps(va, vb));
                _mm_storeu_ps(d.add(4), _mm_unpackhi_ps(va, vb));
            }
            i += 4;
        }
    }
    for j in i..n {
        dst[2 * j].write(a[j]);
        dst[2 * j + 1].write(b[j]);
    }
}

/// The pairs `0..16 floor(n / 16)` of [`interleave2`] by 16-lane
/// permutes (two 64-byte stores per 16 pairs; the SSE2 loop does 4);
/// returns how many pairs it wrote.
///
/// # Safety
/// AVX-512F must be available; `a` and `b` valid for reads of `n` values,
/// `dst` for writes of `2n`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave2_avx512(dst: *mut f32, a: *const f32, b: *const f32, n: usize) -> usize {
    use std::arch::x86_64::*;
    // lanes 0..16 pick from a, 16..32 from b
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n (the caller's contract for the ranges).
        unsafe {
            let (va, vb) = (_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)));
            _mm512_storeu_ps(dst.add(2 * i), _mm512_permutex2var_ps(va, lo, vb));
            _mm512_storeu_ps(dst.add(2 * i + 16), _mm512_permutex2var_ps(va, hi, vb));
        }
        i += 16;
    }
    i
}

/// `dst[2i] = a[i]`, `dst[2i + 1] = b[i]` for the first `dst.len()`
/// values (`dst.len() <= 2 min(a.len(), b.len()) + 1`; an odd last value
/// comes from `a`).
pub(super) fn interleave2_into(dst: &mut [f32], a: &[f32], b: &[f32]) {
    // SAFETY: f32 and MaybeUninit<f32> share a layout; every value written
    // is an initialised f32, so `dst` stays initialised.
    let d = unsafe {
        std::slice::from_raw_parts_mut(
            dst.as_mut_ptr().cast::<std::mem::MaybeUninit<f32>>(),
            dst.len(),
        )
    };
    interleave2(d, a, b);
    if dst.len() % 2 == 1 {
        let i = dst.len() / 2;
        dst[2 * i] = a[i];
    }
}

/// `(N, C, H, W) -> (N, C·r², H/r, W/r)`; H and W must be multiples of `r`.
pub fn pixel_unshuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    pixel_unshuffle_pooled(x, r, &BufferPool::new())
}

/// [`pixel_unshuffle`] with the output on a buffer from `pool`.
pub fn pixel_unshuffle_pooled(x: &Tensor, r: usize, pool: &BufferPool) -> Result<Tensor> {
    let [n, c, h, w] = x.shape();
    let shape = [n, c * r * r, h / r.max(1), w / r.max(1)];
    let mut v = pool.take(Tensor::numel(shape)?);
    pixel_unshuffle_extend(x, r, &mut v)?;
    Tensor::from_vec(shape, v)
}

/// [`pixel_unshuffle`]`(x, r)` appended to `dst` (its planes after what
/// `dst` holds), every value written once (no zero fill first).
pub fn pixel_unshuffle_extend(x: &Tensor, r: usize, dst: &mut Vec<f32>) -> Result<()> {
    let [n, c, h, w] = x.shape();
    if r == 0 || h % r != 0 || w % r != 0 {
        return Err(Error::invalid(format!(
            "pixel_unshuffle: {h}x{w} not divisible by {r}"
        )));
    }
    let (ho, wo) = (h / r, w / r);
    dst.reserve(n * c * h * w);
    for b in 0..n {
        for ci in 0..c {
            let src = x.plane(b, ci);
            for dy in 0..r {
                for dx in 0..r {
                    for y in 0..ho {
                        let srow = &src[(y * r + dy) * w..(y * r + dy + 1) * w];
                        dst.extend(srow[dx..].iter().step_by(r).take(wo));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interleave (SIMD body and scalar tail) for every length up to 19.
    #[test]
    fn interleave2_pairs_every_value() {
        for n in (0..40).chain([63, 64, 65, 100]) {
            let a: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let b: Vec<f32> = (0..n).map(|i| -(i as f32) - 0.25).collect();
            let mut d = vec![std::mem::MaybeUninit::new(f32::NAN); 2 * n];
            interleave2(&mut d, &a, &b);
            for i in 0..n {
                // SAFETY: every value was initialised (NaN, then written).
                let (x, y) = unsafe { (d[2 * i].assume_init(), d[2 * i + 1].assume_init()) };
                assert_eq!((x, y), (a[i], b[i]), "n {n} i {i}");
            }
        }
    }

    /// Shuffles by 2 and 3 (with and without an addend) equal the
    /// definition `out[c, y·r + dy, x·r + dx] = in[c·r² + dy·r + dx, y, x]`.
    #[test]
    fn pixel_shuffle_matches_the_definition() {
        for (r, h, w) in [(2, 3, 7), (2, 2, 9), (3, 2, 5)] {
            let c = 2;
            let x = Tensor::from_vec(
                [1, c * r * r, h, w],
                (0..c * r * r * h * w)
                    .map(|i| i as f32 * 0.5 - 3.0)
                    .collect(),
            )
            .expect("x");
            let shape = [1, c, h * r, w * r];
            let add = Tensor::from_vec(
                shape,
                (0..c * h * r * w * r).map(|i| (i % 7) as f32).collect(),
            )
            .expect("addend");
            let s = pixel_shuffle(&x, r).expect("shuffle");
            let sa = pixel_shuffle_add_pooled(&x, r, &add, &BufferPool::new()).expect("add");
            assert_eq!(s.shape(), shape);
            for co in 0..c {
                for yo in 0..h * r {
                    for xo in 0..w * r {
                        let want = x.at(0, co * r * r + (yo % r) * r + xo % r, yo / r, xo / r);
                        assert_eq!(s.at(0, co, yo, xo), want, "r {r} {co} {yo} {xo}");
                        let want = want + add.at(0, co, yo, xo);
                        assert_eq!(sa.at(0, co, yo, xo), want, "add r {r} {co} {yo} {xo}");
                    }
                }
            }
        }
    }
}
