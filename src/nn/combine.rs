//! Channel concatenation and element-wise addition of NCHW tensors.

use super::{BufferPool, Tensor};
use crate::error::{Error, Result};

/// Concatenates tensors along the channel axis; N, H and W must agree.
pub fn concat(xs: &[&Tensor]) -> Result<Tensor> {
    concat_pooled(xs, &BufferPool::new())
}

/// [`concat`] with the output on a buffer from `pool`.
pub fn concat_pooled(xs: &[&Tensor], pool: &BufferPool) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::invalid("concat of no tensors"))?;
    let [n, _, h, w] = first.shape();
    let mut c = 0;
    for x in xs {
        let [xn, xc, xh, xw] = x.shape();
        if (xn, xh, xw) != (n, h, w) {
            return Err(Error::invalid(format!(
                "concat: shape {:?} does not match {:?}",
                x.shape(),
                first.shape()
            )));
        }
        c += xc;
    }
    let mut out = pool.zeros([n, c, h, w])?;
    for b in 0..n {
        let mut co = 0;
        for x in xs {
            for ci in 0..x.c() {
                out.plane_mut(b, co).copy_from_slice(x.plane(b, ci));
                co += 1;
            }
        }
    }
    Ok(out)
}

/// `a += b` element-wise; shapes must be equal.
pub fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::invalid(format!(
            "add: shape {:?} != {:?}",
            a.shape(),
            b.shape()
        )));
    }
    a.data_mut()
        .iter_mut()
        .zip(b.data())
        .for_each(|(x, y)| *x += y);
    Ok(())
}

/// `a + b` element-wise; shapes must be equal.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let mut out = a.clone();
    add_assign(&mut out, b)?;
    Ok(out)
}
