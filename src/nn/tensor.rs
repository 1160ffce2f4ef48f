//! `Tensor`: a dense f32 buffer in NCHW order.
//!
//! Layout: element `(n, c, y, x)` lives at `((n * C + c) * H + y) * W + x`,
//! i.e. each channel of each batch item is one contiguous row-major plane.

use crate::error::{Error, Result};

/// Dense NCHW f32 tensor. `shape = [N, C, H, W]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: [usize; 4],
    data: Vec<f32>,
}

/// Number of elements of `shape`, or an error if it overflows `usize`.
fn numel(shape: [usize; 4]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("tensor shape {shape:?} overflows")))
}

impl Tensor {
    /// Number of values of a tensor of `shape`, or an error on overflow.
    pub fn numel(shape: [usize; 4]) -> Result<usize> {
        numel(shape)
    }

    /// All-zero tensor of `shape = [N, C, H, W]`.
    pub fn zeros(shape: [usize; 4]) -> Result<Self> {
        Ok(Tensor {
            shape,
            data: vec![0.0; numel(shape)?],
        })
    }

    /// Wraps `data` (NCHW order); its length must equal the product of `shape`.
    pub fn from_vec(shape: [usize; 4], data: Vec<f32>) -> Result<Self> {
        let n = numel(shape)?;
        if data.len() != n {
            return Err(Error::invalid(format!(
                "tensor shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }
    /// Batch size N.
    pub fn n(&self) -> usize {
        self.shape[0]
    }
    /// Channels C.
    pub fn c(&self) -> usize {
        self.shape[1]
    }
    /// Height H (rows).
    pub fn h(&self) -> usize {
        self.shape[2]
    }
    /// Width W (columns).
    pub fn w(&self) -> usize {
        self.shape[3]
    }
    /// All values in NCHW order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// All values in NCHW order, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// Consumes the tensor, returning its NCHW buffer.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Elements in one H x W plane.
    pub fn plane_len(&self) -> usize {
        self.shape[2] * self.shape[3]
    }

    /// Plane `(n, c)` as a row-major H x W slice. Panics if out of range
    /// (an internal indexing bug, never user input).
    pub fn plane(&self, n: usize, c: usize) -> &[f32] {
        let p = self.plane_len();
        let i = (n * self.shape[1] + c) * p;
        &self.data[i..i + p]
    }

    /// Plane `(n, c)`, mutable.
    pub fn plane_mut(&mut self, n: usize, c: usize) -> &mut [f32] {
        let p = self.plane_len();
        let i = (n * self.shape[1] + c) * p;
        &mut self.data[i..i + p]
    }

    /// Value at `(n, c, y, x)`.
    pub fn at(&self, n: usize, c: usize, y: usize, x: usize) -> f32 {
        self.data[((n * self.shape[1] + c) * self.shape[2] + y) * self.shape[3] + x]
    }

    /// Copies the window rows `y0..y0+h`, columns `x0..x0+w` of every plane.
    pub fn crop(&self, y0: usize, x0: usize, h: usize, w: usize) -> Result<Tensor> {
        if y0 + h > self.h() || x0 + w > self.w() {
            return Err(Error::invalid(format!(
                "crop {h}x{w}+{y0}+{x0} outside {}x{}",
                self.h(),
                self.w()
            )));
        }
        let mut out = Tensor::zeros([self.n(), self.c(), h, w])?;
        for n in 0..self.n() {
            for c in 0..self.c() {
                let src = self.plane(n, c);
                let dst = out.plane_mut(n, c);
                for y in 0..h {
                    let s = (y0 + y) * self.shape[3] + x0;
                    dst[y * w..(y + 1) * w].copy_from_slice(&src[s..s + w]);
                }
            }
        }
        Ok(out)
    }

    /// Largest absolute element-wise difference to `other` (same shape), or
    /// `f32::INFINITY` when the shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        self.data
            .iter()
            .zip(&other.data)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
    }
}
