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
                    let (s0, s1) = (src(0), src(1));
                    for (d, (&a, &bv)) in row.chunks_exact_mut(2).zip(s0.iter().zip(s1)) {
                        d[0].write(a);
                        d[1].write(bv);
                    }
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
