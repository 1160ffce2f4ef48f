//! HDRnet coefficient prediction (Gharbi et al. 2017, sec. 3.1-3.2): the
//! full-resolution input is reduced to a fixed `S x S` thumbnail (area
//! average, PyTorch `adaptive_avg_pool2d` bins: rows
//! `floor(i·H/S) .. ceil((i+1)·H/S)`, likewise columns; the aspect ratio is
//! not kept, as in the paper), log-encoded as `(log2(t + 2^-8) + 8) / 10`,
//! and run through the network of [`crate::nn::hdrnet`]; its `12·L x G x G`
//! prediction is reordered into a [`BilateralGrid`].
//!
//! Cost is independent of the frame size except for the thumbnail pass,
//! which reads every input pixel once (rows in parallel).

use rayon::prelude::*;

use super::slice_apply::{clean, BilateralGrid, COEFFS};
use crate::error::{Error, Result};
use crate::nn::hdrnet::Hdrnet;
use crate::nn::Tensor;

/// Added before the log of the thumbnail (linear units): 2^-8.
pub const LOG_EPS: f32 = 1.0 / 256.0;

/// Area-averaged `s x s` thumbnail of a planar linear RGB image
/// (`3 x h x w`), negative / non-finite values as 0; then log-encoded.
/// Returns `[1, 3, s, s]`.
pub fn thumbnail(planes: &[f32], w: usize, h: usize, s: usize) -> Result<Tensor> {
    let n = w * h;
    if n == 0 || s == 0 || planes.len() != 3 * n {
        return Err(Error::invalid(format!(
            "hdrnet: {w}x{h} image needs {} values, got {}",
            3 * n,
            planes.len()
        )));
    }
    let bins = |i: usize, len: usize| (i * len / s, ((i + 1) * len).div_ceil(s));
    let cols: Vec<(usize, usize)> = (0..s).map(|j| bins(j, w)).collect();
    let mut out = vec![0f32; 3 * s * s];
    // One task per (channel, output row).
    out.par_chunks_mut(s).enumerate().for_each(|(ci, orow)| {
        let (c, i) = (ci / s, ci % s);
        let plane = &planes[c * n..(c + 1) * n];
        let (y0, y1) = bins(i, h);
        let mut acc = vec![0f32; w];
        for y in y0..y1 {
            for (a, v) in acc.iter_mut().zip(&plane[y * w..(y + 1) * w]) {
                *a += clean(*v);
            }
        }
        for (o, &(x0, x1)) in orow.iter_mut().zip(&cols) {
            let sum: f32 = acc[x0..x1].iter().sum();
            let mean = sum / ((x1 - x0) * (y1 - y0)) as f32;
            *o = ((mean + LOG_EPS).log2() + 8.0) / 10.0;
        }
    });
    Tensor::from_vec([1, 3, s, s], out)
}

/// Reorders the network's prediction (`[1, 12·L, G, G]`, channel = c·L + z)
/// into the grid layout of [`BilateralGrid`].
pub fn to_grid(pred: &Tensor, luma_bins: usize) -> Result<BilateralGrid> {
    let [nb, ch, gh, gw] = pred.shape();
    if nb != 1 || ch != COEFFS * luma_bins {
        return Err(Error::invalid(format!(
            "hdrnet: prediction shape {:?}, expected [1, {}, G, G]",
            pred.shape(),
            COEFFS * luma_bins
        )));
    }
    let mut data = vec![0f32; gw * gh * luma_bins * COEFFS];
    for c in 0..COEFFS {
        for z in 0..luma_bins {
            let p = pred.plane(0, c * luma_bins + z);
            for gy in 0..gh {
                for gx in 0..gw {
                    data[((gy * gw + gx) * luma_bins + z) * COEFFS + c] = p[gy * gw + gx];
                }
            }
        }
    }
    Ok(BilateralGrid {
        width: gw,
        height: gh,
        depth: luma_bins,
        data,
    })
}

/// Predicts the bilateral grid of a planar linear RGB image (`3 x h x w`).
pub fn predict(model: &Hdrnet, planes: &[f32], w: usize, h: usize) -> Result<BilateralGrid> {
    let cfg = model.config();
    let thumb = thumbnail(planes, w, h, cfg.net_size)?;
    to_grid(&model.forward(&thumb)?, cfg.luma_bins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_bins_match_adaptive_pooling() {
        // 3x2 image to 2x2: rows [0,1), [1,2); columns [0,2), [1,3).
        let (w, h) = (3, 2);
        let mut planes = vec![0f32; 3 * w * h];
        planes[..6].copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, -6.0]);
        let t = thumbnail(&planes, w, h, 2).unwrap();
        let enc = |m: f32| ((m + LOG_EPS).log2() + 8.0) / 10.0;
        let want = [enc(1.5), enc(2.5), enc(4.5), enc(2.5)];
        for (a, b) in t.plane(0, 0).iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
        // Upsampling a 1x1 image repeats it.
        let t = thumbnail(&[0.5, 0.25, 0.0], 1, 1, 4).unwrap();
        assert!(t.plane(0, 1).iter().all(|&v| (v - enc(0.25)).abs() < 1e-6));
        assert!(thumbnail(&[0.0; 4], 1, 1, 4).is_err());
    }

    #[test]
    fn grid_reorder() {
        let lb = 2;
        let (g, n) = (4, COEFFS * 2);
        let data: Vec<f32> = (0..n * g * g).map(|i| i as f32).collect();
        let pred = Tensor::from_vec([1, n, g, g], data).unwrap();
        let grid = to_grid(&pred, lb).unwrap();
        // c = 5, z = 1, gy = 2, gx = 3 <- channel 11, pixel 11.
        let v = grid.data[((2 * g + 3) * lb + 1) * COEFFS + 5];
        assert_eq!(v, ((5 * lb + 1) * g * g + 2 * g + 3) as f32);
    }
}
