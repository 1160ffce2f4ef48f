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
//! The box sums are exact: `y` is rounded to fixed point (`Q` = 2^16
//! steps per unit, values clamped to ±[`BOX_LIMIT`]) and summed in `i32`,
//! where addition is exact and associative. So the sum over a window does
//! not depend on the order it is taken in, and the cheap orders serve:
//! column sums are running sums (each row adds the row entering the window
//! and subtracts the one leaving it), and row sums are a ladder of pair
//! sums (`P_2 = c[x] + c[x+1]`, `P_4`, `P_8`, ..., the window then the sum
//! of the ladder levels of the binary digits of `2r + 1`). A pixel's box
//! sum is therefore a function of its window alone, not of where the
//! tensor starts: tiles with a halo of at least `r` reproduce the whole
//! frame bit for bit. No sum exceeds a window and one row more
//! (`(2·16 + 2) · (2·16 + 1) · 24 · 2^16 < 2^31`), so nothing overflows;
//! the adds are written wrapping, which is exact modulo 2^32 either way.
//! The mean's error is at most half a step (7.6e-6) plus one f32
//! rounding.
//!
//! Cost per pixel and channel: one rounding, two adds per box for the
//! column sums, `log2(2r + 1) + popcount(2r + 1) - 1` adds per box for the
//! row sums (3 for r = 2, 5 for r = 6), a conversion and a multiply-add per
//! box; per pixel (shared by the channels) the softmax: `K + 1` [`exp_nonpos`]
//! (a branch-free polynomial `exp` that vectorises), one division, and the
//! window counts folded into the weights. Everything runs across columns
//! and vectorises; [`gated_smoothing_into`] runs an AVX-512 or AVX2 build
//! of the same operations (bit for bit the baseline's) when the CPU has it.

use super::logits::Logits;
use super::window_sums::window_sums;
use super::Tensor;
use crate::error::{Error, Result};

/// Largest box radius a file may declare.
pub const MAX_RADIUS: usize = 16;
/// Most boxes (logit planes) a file may declare.
pub const MAX_BOXES: usize = 4;
/// Values enter the box sums clamped to `±BOX_LIMIT` (image units; linear
/// camera RGB is ~0..1, highlights a few units): the range over which the
/// fixed-point window sums cannot overflow.
pub const BOX_LIMIT: f32 = 24.0;
/// Fixed-point steps per image unit in the box sums.
const Q: f32 = 65_536.0;

/// `exp(x)` for `x <= 0` (results below `exp(-87)` flush to that), within
/// ~2 ulp of `f32::exp`; branch-free so loops over it vectorise.
///
/// `x = k ln2 + r` with `k` rounded to nearest (|r| <= ln2 / 2), `exp(r)` by
/// its degree-6 Taylor polynomial (truncation error < 1.2e-7 relative), the
/// result scaled by `2^k` through the exponent bits.
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp keeps NaN; max/min map it to -87
pub fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with few bits so k * LN2_HI is exact
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // max/min (not clamp): NaN becomes -87, and the loop stays vector code.
    let x = x.max(-87.0).min(0.0);
    let (k, ki) = round_even(x * LOG2E);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // k in -126..=0: a normal power of two.
    let scale = f32::from_bits(((ki + 127) as u32) << 23);
    p * scale
}

/// `x` rounded to the nearest integer, ties to even, as `f32` and `i32`,
/// for `|x| < 2^22`: adding 1.5 · 2^23 leaves no fraction bits, and the
/// integer is then the sum's low mantissa bits (no saturating `as` cast,
/// so loops over it vectorise).
#[inline(always)]
fn round_even(x: f32) -> (f32, i32) {
    const ROUND: f32 = 12_582_912.0;
    let t = x + ROUND;
    (t - ROUND, t.to_bits() as i32 - ROUND.to_bits() as i32)
}

/// `v` in fixed point: clamped to `±BOX_LIMIT` (NaN to `-BOX_LIMIT`),
/// times [`Q`], rounded to nearest.
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp keeps NaN; max/min map it to the low end
fn fixed(v: f32) -> i32 {
    round_even(v.max(-BOX_LIMIT).min(BOX_LIMIT) * Q).1
}

/// Box mean of every plane of `y` (`[N, C, H, W]`) with radius `r`, windows
/// clipped to the tensor (the exact fixed-point sums of the module doc).
pub fn box_mean(y: &Tensor, r: usize) -> Result<Tensor> {
    let [n, c, h, w] = y.shape();
    let mut out = Tensor::zeros([n, c, h, w])?;
    let mut rows = QuantRows::new(1, w, r);
    let mut bx = BoxSums::new(1, w, r);
    for b in 0..n {
        for ch in 0..c {
            let src = y.plane(b, ch);
            rows.restart();
            for yy in 0..h {
                rows.advance(|_| src, h, yy);
                let dst = &mut out.plane_mut(b, ch)[yy * w..(yy + 1) * w];
                dst.iter_mut()
                    .zip(bx.sums(&rows, 0, h, yy))
                    .for_each(|(d, &s)| *d = s as f32);
                dst.iter_mut()
                    .zip(bx.row_scale(h, yy))
                    .for_each(|(d, &k)| *d *= k);
            }
        }
    }
    Ok(out)
}

/// A ring of the last `2R + 2` rows of each plane in fixed point: rows
/// `yy - R - 1 ..= yy + R` are present while output row `yy` is made.
struct QuantRows {
    c: usize,
    w: usize,
    /// Ring length `2R + 2` (rows).
    len: usize,
    reach: usize,
    /// `[C][len][W]`.
    q: Vec<i32>,
    /// Rows `0..next` have been rounded in.
    next: usize,
}

impl QuantRows {
    fn new(c: usize, w: usize, reach: usize) -> Self {
        let len = 2 * reach + 2;
        QuantRows {
            c,
            w,
            len,
            reach,
            q: vec![0; c * len * w],
            next: 0,
        }
    }

    fn restart(&mut self) {
        self.next = 0;
    }

    /// Rounds in the rows up to `yy + R` (clipped to `h`) of every plane,
    /// `plane(ch)` giving the row-major `h x w` plane `ch`.
    #[inline(always)]
    fn advance<'a>(&mut self, plane: impl Fn(usize) -> &'a [f32], h: usize, yy: usize) {
        let want = (yy + self.reach + 1).min(h);
        while self.next < want {
            let sy = self.next;
            for ch in 0..self.c {
                let src = &plane(ch)[sy * self.w..(sy + 1) * self.w];
                let at = (ch * self.len + sy % self.len) * self.w;
                self.q[at..at + self.w]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(q, &v)| *q = fixed(v));
            }
            self.next += 1;
        }
    }

    /// Fixed-point row `sy` of plane `ch` (must be in the ring).
    #[inline(always)]
    fn row(&self, ch: usize, sy: usize) -> &[i32] {
        let at = (ch * self.len + sy % self.len) * self.w;
        &self.q[at..at + self.w]
    }
}

/// Box sums of one radius for `C` planes: running column sums (one per
/// plane, padded by `r` zeros each side), the pair-sum ladder, the window
/// sums, and the per-pixel scale `1 / (Q · count)` for the current row.
struct BoxSums {
    r: usize,
    w: usize,
    /// `[C][W + 2r]`, zeros in the `r` columns each side.
    col: Vec<i32>,
    /// Ladder levels `P_2, P_4, ...` over one padded column-sum row.
    ladder: Vec<Vec<i32>>,
    sum: Vec<i32>,
    /// Columns in the clipped window of each `x`.
    ncols: Vec<f32>,
    scale: Vec<f32>,
    /// Rows in the window `scale` was made for (0: none yet).
    scale_rows: usize,
}

impl BoxSums {
    fn new(c: usize, w: usize, r: usize) -> Self {
        let span = 2 * r + 1;
        let levels = usize::BITS - 1 - span.leading_zeros(); // floor(log2 span)
        BoxSums {
            r,
            w,
            col: vec![0; c * (w + 2 * r)],
            ladder: (0..levels).map(|_| vec![0; w + 2 * r]).collect(),
            sum: vec![0; w],
            ncols: (0..w)
                .map(|x| ((x + r + 1).min(w) - x.saturating_sub(r)) as f32)
                .collect(),
            scale: vec![0.0; w],
            scale_rows: 0,
        }
    }

    /// `1 / (Q · rows · cols)` of each pixel of row `yy` (window clipped).
    #[inline(always)]
    fn row_scale(&mut self, h: usize, yy: usize) -> &[f32] {
        let rows = (yy + self.r + 1).min(h) - yy.saturating_sub(self.r);
        if rows != self.scale_rows {
            let qr = Q * rows as f32;
            self.scale
                .iter_mut()
                .zip(&self.ncols)
                .for_each(|(s, &nc)| *s = 1.0 / (qr * nc));
            self.scale_rows = rows;
        }
        &self.scale
    }

    /// Window sums of row `yy` of plane `ch`: the running column sums moved
    /// to row `yy` (rows taken from `rows`, which must hold rows up to
    /// `yy + r`; rows must be visited in order from 0), then the ladder.
    #[inline(always)]
    fn sums(&mut self, rows: &QuantRows, ch: usize, h: usize, yy: usize) -> &[i32] {
        let (r, w) = (self.r, self.w);
        let col = &mut self.col[ch * (w + 2 * r)..(ch + 1) * (w + 2 * r)][r..r + w];
        if yy == 0 {
            col.fill(0);
            for sy in 0..(r + 1).min(h) {
                add_row(col, rows.row(ch, sy));
            }
        } else {
            if yy + r < h {
                add_row(col, rows.row(ch, yy + r));
            }
            if yy > r {
                col.iter_mut()
                    .zip(rows.row(ch, yy - r - 1))
                    .for_each(|(a, &v)| *a = a.wrapping_sub(v));
            }
        }
        let padded = &self.col[ch * (w + 2 * r)..(ch + 1) * (w + 2 * r)];
        window_sums(padded, &mut self.ladder, 2 * r + 1, &mut self.sum);
        &self.sum
    }
}

#[inline(always)]
fn add_row(acc: &mut [i32], row: &[i32]) {
    acc.iter_mut()
        .zip(row)
        .for_each(|(a, &v)| *a = a.wrapping_add(v));
}

/// Gated smoothing of `y` (`[1, C, H, W]`) with logits `z` (`[1, K, H, W]`,
/// `K = radii.len()`): see the module doc.
pub fn gated_smoothing(y: &Tensor, z: &Tensor, radii: &[usize]) -> Result<Tensor> {
    let mut out = Tensor::zeros(y.shape())?;
    gated_smoothing_into(y, Logits::Full(z), radii, &mut out)?;
    Ok(out)
}

/// [`gated_smoothing`] into `out` (the shape of `y`; every value is
/// overwritten, so any dead tensor of that shape serves), the logits at
/// full resolution or packed as the gate's 1x1 conv leaves them
/// ([`Logits`]; the same values). Row at a time: row buffers only, no
/// full-size temporaries.
pub fn gated_smoothing_into(
    y: &Tensor,
    z: Logits<'_>,
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
    if let Some(&r) = radii.iter().find(|&&r| r == 0 || r > MAX_RADIUS) {
        return Err(Error::invalid(format!(
            "gated smoothing: box radius {r} is not in 1..={MAX_RADIUS}"
        )));
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked above).
        unsafe { smooth_avx512(y, z, radii, out) };
        return Ok(());
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

/// [`smooth`] compiled for AVX-512F (16 lanes; bit for bit the baseline's,
/// as [`smooth_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn smooth_avx512(y: &Tensor, z: Logits<'_>, radii: &[usize], out: &mut Tensor) {
    smooth(y, z, radii, out)
}

/// [`smooth`] compiled for AVX2 (8 lanes; the same operations in the same
/// order, no FMA, so bit for bit the result of the baseline build).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn smooth_avx2(y: &Tensor, z: Logits<'_>, radii: &[usize], out: &mut Tensor) {
    smooth(y, z, radii, out)
}

/// The body of [`gated_smoothing_into`], shapes and radii checked.
#[inline(always)]
fn smooth(y: &Tensor, z: Logits<'_>, radii: &[usize], out: &mut Tensor) {
    let [_, c, h, w] = y.shape();
    let k = radii.len();
    let reach = radii.iter().copied().max().unwrap_or(0);
    let mut rows = QuantRows::new(c, w, reach);
    let mut boxes: Vec<BoxSums> = radii.iter().map(|&r| BoxSums::new(c, w, r)).collect();
    // Blend weights of (y, box_1 .. box_K) for one row, K + 1 rows of w;
    // the box weights include the box's 1 / (Q · count).
    let mut wts = vec![0f32; (k + 1) * w];
    let mut mx = vec![0f32; w];
    let mut sum = vec![0f32; w];
    // one row of each packed logit plane ([`Logits::rows`])
    let mut zb = vec![vec![0f32; w]; k];
    for yy in 0..h {
        let zr = z.rows(yy, w, &mut zb);
        let zrow = |j: usize| zr.get(j);
        // softmax(0, z): the max of (0, z) subtracted before exp.
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
        sum.iter_mut().for_each(|s| *s = 1.0 / *s);
        w0.iter_mut().zip(&sum).for_each(|(e, &s)| *e *= s);
        for (wj, b) in wk.chunks_exact_mut(w).zip(boxes.iter_mut()) {
            wj.iter_mut()
                .zip(&sum)
                .zip(b.row_scale(h, yy))
                .for_each(|((e, &s), &q)| *e = *e * s * q);
        }
        rows.advance(|ch| y.plane(0, ch), h, yy);
        for ch in 0..c {
            let src = &y.plane(0, ch)[yy * w..(yy + 1) * w];
            let dst = &mut out.plane_mut(0, ch)[yy * w..(yy + 1) * w];
            dst.iter_mut()
                .zip(src)
                .zip(&wts[..w])
                .for_each(|((d, &v), &wt)| *d = wt * v);
            for (j, b) in boxes.iter_mut().enumerate() {
                dst.iter_mut()
                    .zip(b.sums(&rows, ch, h, yy))
                    .zip(&wts[(j + 1) * w..(j + 2) * w])
                    .for_each(|((d, &s), &wt)| *d += wt * s as f32);
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
        let (h, w) = (41, 53); // interior tiles even at r = 16
        let vals: Vec<f32> = (0..2 * h * w)
            .map(|i| (i * 7919 % 1013) as f32 / 97.0 - 3.0)
            .collect();
        let y = Tensor::from_vec([1, 2, h, w], vals).expect("shape");
        for r in [1, 2, 3, 6, 16] {
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

    /// Values enter the box sums clamped to ±BOX_LIMIT (NaN as the low
    /// end); at the limit with the largest radius nothing overflows.
    #[test]
    fn box_sums_clamp_and_do_not_overflow() {
        let (h, w) = (40, 45);
        for (v, want) in [
            (BOX_LIMIT, BOX_LIMIT),
            (-BOX_LIMIT, -BOX_LIMIT),
            (1e9, BOX_LIMIT),
            (f32::NEG_INFINITY, -BOX_LIMIT),
            (f32::NAN, -BOX_LIMIT),
        ] {
            let y = Tensor::from_vec([1, 1, h, w], vec![v; h * w]).expect("shape");
            let b = box_mean(&y, MAX_RADIUS).expect("box");
            assert!(
                b.data().iter().all(|&m| (m - want).abs() < 1e-5),
                "{v} -> {:?}",
                &b.data()[..3]
            );
        }
    }

    /// An `h x w` RGB frame and two logit planes of the same size, filled
    /// with scrambled values.
    fn frame_and_logits(h: usize, w: usize) -> (Tensor, Tensor) {
        let y: Vec<f32> = (0..3 * h * w)
            .map(|i| (i * 7919 % 1013) as f32 / 517.0 - 0.4)
            .collect();
        let z: Vec<f32> = (0..2 * h * w)
            .map(|i| (i * 104_729 % 997) as f32 / 40.0 - 15.0)
            .collect();
        (
            Tensor::from_vec([1, 3, h, w], y).expect("shape"),
            Tensor::from_vec([1, 2, h, w], z).expect("shape"),
        )
    }

    /// Packed logits (the gate's 1x1 conv output before `pixel_shuffle`)
    /// give the full-resolution planes' bits.
    #[test]
    fn packed_logits_give_the_full_planes_bits() {
        let (h, w) = (22, 38);
        let (y, z) = frame_and_logits(h, w);
        let zp = crate::nn::shuffle::pixel_unshuffle(&z, 2).expect("packed");
        let mut a = Tensor::zeros(y.shape()).expect("shape");
        let mut b = Tensor::zeros(y.shape()).expect("shape");
        gated_smoothing_into(&y, Logits::Full(&z), &[2, 6], &mut a).expect("full");
        gated_smoothing_into(&y, Logits::Packed(&zp), &[2, 6], &mut b).expect("packed");
        assert!(a.data() == b.data());
        assert!(a.max_abs_diff(&y) > 1e-3);
        let odd = Tensor::zeros([1, 6, h / 2, w / 2]).expect("shape");
        assert!(gated_smoothing_into(&y, Logits::Packed(&odd), &[2, 6], &mut b).is_err());
    }

    /// The AVX2 and AVX-512 builds of the body give the baseline build's bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_bodies_equal_the_baseline_bit_for_bit() {
        if !is_x86_feature_detected!("avx2") {
            eprintln!("SKIPPED: no AVX2");
            return;
        }
        let (h, w) = (21, 37);
        let (y, z) = frame_and_logits(h, w);
        let mut a = Tensor::zeros(y.shape()).expect("shape");
        let mut b = Tensor::zeros(y.shape()).expect("shape");
        smooth(&y, Logits::Full(&z), &[2, 6], &mut a);
        let same = |a: &Tensor, b: &Tensor| {
            a.data()
                .iter()
                .zip(b.data())
                .all(|(p, q)| p.to_bits() == q.to_bits())
        };
        // SAFETY: AVX2 checked above.
        unsafe { smooth_avx2(&y, Logits::Full(&z), &[2, 6], &mut b) };
        assert!(same(&a, &b));
        assert!(a.max_abs_diff(&y) > 1e-3);
        if is_x86_feature_detected!("avx512f") {
            let mut c = Tensor::zeros(y.shape()).expect("shape");
            // SAFETY: AVX-512F checked above.
            unsafe { smooth_avx512(&y, Logits::Full(&z), &[2, 6], &mut c) };
            assert!(same(&a, &c));
        } else {
            eprintln!("SKIPPED (AVX-512 part): no AVX-512F");
        }
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
