//! Gated smoothing: a per-pixel convex blend of an image and its box means,
//! the output stage of the gated `dmdn_unet` (`fastg`; `gate` in
//! training/train_dmdn.py's `DMDNUNet.forward`).
//!
//! For `y` (`[1, C, H, W]`) and logits `z` (`[1, K, H, W]`), one plane per
//! box radius `r_k`:
//! ```text
//! w   = softmax(0, z_1, ..., z_K)                      per pixel
//! out = w_0 * y + Σ_k w_k * box_{r_k}(y)               per channel
//! ```
//! `box_r(y)` is the mean of `y` over the `(2r+1) x (2r+1)` window, the
//! window clipped to the tensor (PyTorch `avg_pool2d`, stride 1, padding r,
//! `count_include_pad=False`).
//!
//! Every box sum is direct, in a fixed order (column sums over rows
//! `y-r ..= y+r` top to bottom, then those sums over columns `x-r ..= x+r`
//! left to right, then one division by the window's pixel count), so a
//! pixel's value depends only on its neighbourhood and not on where the
//! tensor starts: tiles with a halo of at least `r` reproduce the whole
//! frame bit for bit (running sums would not). Loops run across columns
//! and vectorise; the softmax uses [`exp_nonpos`], a branch-free
//! polynomial `exp` that vectorises too. Cost per pixel and channel:
//! `2(2r+1)` adds and a division per box, and the blend.

use super::Tensor;
use crate::error::{Error, Result};

/// Largest box radius a file may declare.
pub const MAX_RADIUS: usize = 16;
/// Most boxes (logit planes) a file may declare.
pub const MAX_BOXES: usize = 4;

/// `exp(x)` for `x <= 0` (results below `exp(-87)` flush to that), within
/// ~2 ulp of `f32::exp`; branch-free so loops over it vectorise.
///
/// `x = k ln2 + r` with `k` rounded to nearest (|r| <= ln2 / 2), `exp(r)` by
/// its degree-6 Taylor polynomial (truncation error < 1.2e-7 relative), the
/// result scaled by `2^k` through the exponent bits.
#[inline(always)]
pub fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with few bits so k * LN2_HI is exact
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 0.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // k in -126..=0: a normal power of two.
    let scale = f32::from_bits((((k as i32) + 127) as u32) << 23);
    p * scale
}

/// Box mean of every plane of `y` (`[N, C, H, W]`) with radius `r`, windows
/// clipped to the tensor; see the module doc for the summation order.
pub fn box_mean(y: &Tensor, r: usize) -> Result<Tensor> {
    let [n, c, h, w] = y.shape();
    let mut out = Tensor::zeros([n, c, h, w])?;
    let mut bufs = BoxRow::new(w, r);
    for b in 0..n {
        for ch in 0..c {
            let src = y.plane(b, ch);
            let dst = out.plane_mut(b, ch);
            for (yy, row) in dst.chunks_exact_mut(w).enumerate() {
                row.copy_from_slice(bufs.mean(src, h, yy));
            }
        }
    }
    Ok(out)
}

/// Row buffers of one box radius: column sums, window sums, and the
/// window's pixel count per column (clipped at the left and right edges).
struct BoxRow {
    r: usize,
    col: Vec<f32>,
    row: Vec<f32>,
    ncols: Vec<f32>,
}

impl BoxRow {
    fn new(w: usize, r: usize) -> Self {
        BoxRow {
            r,
            col: vec![0f32; w],
            row: vec![0f32; w],
            ncols: (0..w)
                .map(|x| ((x + r + 1).min(w) - x.saturating_sub(r)) as f32)
                .collect(),
        }
    }

    /// Row `yy` of the box mean of the row-major `h x w` plane `src`.
    #[inline(always)]
    fn mean(&mut self, src: &[f32], h: usize, yy: usize) -> &[f32] {
        let (r, w) = (self.r, self.col.len());
        let (y0, y1) = (yy.saturating_sub(r), (yy + r + 1).min(h));
        self.col.fill(0.0);
        for sy in y0..y1 {
            self.col
                .iter_mut()
                .zip(&src[sy * w..(sy + 1) * w])
                .for_each(|(a, &v)| *a += v);
        }
        horizontal_sum(&self.col, r, &mut self.row);
        let nrows = (y1 - y0) as f32;
        self.row
            .iter_mut()
            .zip(&self.ncols)
            .for_each(|(s, &nc)| *s /= nrows * nc);
        &self.row
    }
}

/// `out[x] = Σ_{x' = x-r ..= x+r, clipped} col[x']`, the terms added left to
/// right starting from 0.0 for every `x`.
#[inline(always)]
fn horizontal_sum(col: &[f32], r: usize, out: &mut [f32]) {
    let w = col.len();
    out.fill(0.0);
    // Interior columns r .. w-r: the full window, one shifted slice per tap.
    if w > 2 * r {
        let inner = w - 2 * r;
        for d in 0..=2 * r {
            out[r..r + inner]
                .iter_mut()
                .zip(&col[d..d + inner])
                .for_each(|(a, &v)| *a += v);
        }
    }
    // Edge columns (clipped windows), same order.
    let left = r.min(w);
    for x in (0..left).chain(w.saturating_sub(r).max(left)..w) {
        let mut s = 0f32;
        for &v in &col[x.saturating_sub(r)..(x + r + 1).min(w)] {
            s += v;
        }
        out[x] = s;
    }
}

/// Gated smoothing of `y` (`[1, C, H, W]`) with logits `z` (`[1, K, H, W]`,
/// `K = radii.len()`): see the module doc.
pub fn gated_smoothing(y: &Tensor, z: &Tensor, radii: &[usize]) -> Result<Tensor> {
    let mut out = Tensor::zeros(y.shape())?;
    gated_smoothing_into(y, z, radii, &mut out)?;
    Ok(out)
}

/// [`gated_smoothing`] into `out` (the shape of `y`; every value is
/// overwritten, so any dead tensor of that shape serves). Row at a time:
/// row buffers only, no full-size temporaries.
pub fn gated_smoothing_into(
    y: &Tensor,
    z: &Tensor,
    radii: &[usize],
    out: &mut Tensor,
) -> Result<()> {
    let [n, _, h, w] = y.shape();
    let k = radii.len();
    if z.shape() != [n, k, h, w] || n != 1 || out.shape() != y.shape() {
        return Err(Error::invalid(format!(
            "gated smoothing: logits {:?} or output {:?} do not fit {:?} with {k} radii",
            z.shape(),
            out.shape(),
            y.shape(),
        )));
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        unsafe { smooth_avx2(y, z, radii, out) };
        return Ok(());
    }
    smooth(y, z, radii, out);
    Ok(())
}

/// [`smooth`] compiled for AVX2 (8 lanes; the same operations in the same
/// order, no FMA, so bit for bit the result of the baseline build).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn smooth_avx2(y: &Tensor, z: &Tensor, radii: &[usize], out: &mut Tensor) {
    smooth(y, z, radii, out)
}

/// The body of [`gated_smoothing_into`], shapes checked.
#[inline(always)]
fn smooth(y: &Tensor, z: &Tensor, radii: &[usize], out: &mut Tensor) {
    let [_, c, h, w] = y.shape();
    let k = radii.len();
    let mut boxes: Vec<BoxRow> = radii.iter().map(|&r| BoxRow::new(w, r)).collect();
    // Softmax weights of (0, z_1 .. z_K) for one row, K + 1 rows of w.
    let mut wts = vec![0f32; (k + 1) * w];
    let mut mx = vec![0f32; w];
    let mut sum = vec![0f32; w];
    for yy in 0..h {
        let zrow = |j: usize| &z.plane(0, j)[yy * w..(yy + 1) * w];
        // Stable: the max of (0, z) subtracted before exp.
        mx.fill(0.0);
        for j in 0..k {
            mx.iter_mut().zip(zrow(j)).for_each(|(m, &v)| *m = m.max(v));
        }
        let (w0, wk) = wts.split_at_mut(w);
        w0.iter_mut()
            .zip(&mx)
            .for_each(|(e, &m)| *e = exp_nonpos(-m));
        sum.copy_from_slice(w0);
        for (j, wj) in wk.chunks_exact_mut(w).enumerate() {
            wj.iter_mut()
                .zip(zrow(j))
                .zip(&mx)
                .zip(sum.iter_mut())
                .for_each(|(((e, &v), &m), s)| {
                    *e = exp_nonpos(v - m);
                    *s += *e;
                });
        }
        for wp in wts.chunks_exact_mut(w) {
            wp.iter_mut().zip(&sum).for_each(|(e, &s)| *e /= s);
        }
        for ch in 0..c {
            let src = y.plane(0, ch);
            let dst = &mut out.plane_mut(0, ch)[yy * w..(yy + 1) * w];
            dst.iter_mut()
                .zip(&src[yy * w..(yy + 1) * w])
                .zip(&wts[..w])
                .for_each(|((d, &v), &wt)| *d = wt * v);
            for (j, b) in boxes.iter_mut().enumerate() {
                dst.iter_mut()
                    .zip(b.mean(src, h, yy))
                    .zip(&wts[(j + 1) * w..(j + 2) * w])
                    .for_each(|((d, &v), &wt)| *d += wt * v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpos_matches_std_exp() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (a, b) = (exp_nonpos(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 4e-7, "max relative error {worst}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert!(exp_nonpos(-1e30) > 0.0 && exp_nonpos(-1e30) < 2e-38);
    }

    /// The box mean equals the per-pixel definition (clipped window, mean
    /// of the pixels inside) and a tile of the input, cut with a margin of
    /// `r`, gives the same interior bit for bit.
    #[test]
    fn box_mean_is_the_clipped_window_mean_and_tiles_exactly() {
        let (h, w) = (11, 23);
        let vals: Vec<f32> = (0..2 * h * w)
            .map(|i| (i * 7919 % 1013) as f32 / 97.0 - 3.0)
            .collect();
        let y = Tensor::from_vec([1, 2, h, w], vals).expect("shape");
        for r in [1, 2, 6] {
            let b = box_mean(&y, r).expect("box");
            for c in 0..2 {
                for yy in 0..h {
                    for xx in 0..w {
                        let (y0, y1) = (yy.saturating_sub(r), (yy + r + 1).min(h));
                        let (x0, x1) = (xx.saturating_sub(r), (xx + r + 1).min(w));
                        let mut s = 0f64;
                        for sy in y0..y1 {
                            for sx in x0..x1 {
                                s += y.at(0, c, sy, sx) as f64;
                            }
                        }
                        let want = s / ((y1 - y0) * (x1 - x0)) as f64;
                        let got = b.at(0, c, yy, xx) as f64;
                        assert!((got - want).abs() < 1e-5, "r {r} c {c} y {yy} x {xx}");
                    }
                }
            }
            let (ty, tx) = (3, 5);
            let crop = y.crop(ty, tx, h - ty, w - tx).expect("crop");
            let bc = box_mean(&crop, r).expect("box");
            for c in 0..2 {
                for yy in ty + r..h - r {
                    for xx in tx + r..w - r {
                        assert_eq!(
                            bc.at(0, c, yy - ty, xx - tx).to_bits(),
                            b.at(0, c, yy, xx).to_bits(),
                            "r {r} c {c} y {yy} x {xx}"
                        );
                    }
                }
            }
        }
    }

    /// The AVX2 build of the body gives the baseline build's bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_body_equals_the_baseline_bit_for_bit() {
        if !is_x86_feature_detected!("avx2") {
            eprintln!("SKIPPED: no AVX2");
            return;
        }
        let (h, w) = (21, 37);
        let y: Vec<f32> = (0..3 * h * w)
            .map(|i| (i * 7919 % 1013) as f32 / 517.0 - 0.4)
            .collect();
        let z: Vec<f32> = (0..2 * h * w)
            .map(|i| (i * 104_729 % 997) as f32 / 40.0 - 15.0)
            .collect();
        let y = Tensor::from_vec([1, 3, h, w], y).expect("shape");
        let z = Tensor::from_vec([1, 2, h, w], z).expect("shape");
        let mut a = Tensor::zeros(y.shape()).expect("shape");
        let mut b = Tensor::zeros(y.shape()).expect("shape");
        smooth(&y, &z, &[2, 6], &mut a);
        // SAFETY: AVX2 checked above.
        unsafe { smooth_avx2(&y, &z, &[2, 6], &mut b) };
        assert!(a
            .data()
            .iter()
            .zip(b.data())
            .all(|(p, q)| p.to_bits() == q.to_bits()));
        assert!(a.max_abs_diff(&y) > 1e-3);
    }

    /// Blend weights: very negative logits keep `y`, a dominant logit gives
    /// that box mean, equal logits average; wrong logit shapes are errors.
    #[test]
    fn gated_smoothing_blends_by_softmax() {
        let (h, w) = (6, 7);
        let vals: Vec<f32> = (0..3 * h * w).map(|i| (i * 31 % 17) as f32).collect();
        let y = Tensor::from_vec([1, 3, h, w], vals).expect("shape");
        let radii = [1, 2];
        let logits = |a: f32, b: f32| {
            let mut v = vec![a; h * w];
            v.extend(std::iter::repeat_n(b, h * w));
            Tensor::from_vec([1, 2, h, w], v).expect("shape")
        };
        let b1 = box_mean(&y, 1).expect("box");
        let b2 = box_mean(&y, 2).expect("box");
        let keep = gated_smoothing(&y, &logits(-200.0, -200.0), &radii).expect("gate");
        assert!(keep.max_abs_diff(&y) < 1e-5);
        let second = gated_smoothing(&y, &logits(-200.0, 200.0), &radii).expect("gate");
        assert!(second.max_abs_diff(&b2) < 1e-5);
        let third = gated_smoothing(&y, &logits(0.0, 0.0), &radii).expect("gate");
        for i in 0..3 * h * w {
            let want = (y.data()[i] + b1.data()[i] + b2.data()[i]) / 3.0;
            assert!((third.data()[i] - want).abs() < 1e-4, "pixel {i}");
        }
        assert!(gated_smoothing(&y, &logits(0.0, 0.0), &[1]).is_err());
    }
}
