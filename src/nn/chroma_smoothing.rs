//! Chroma smoothing: gated box means of the colour differences at constant
//! luminance, the second output stage of the `dmdn_unet` `fastc` (after
//! the gated smoothing; `chroma` in training/train_dmdn.py's
//! `DMDNUNet.forward`).
//!
//! For RGB `x` (`[1, 3, H, W]`, R, G, B planes) and logits `z`
//! (`[1, K, H, W]`, one plane per box radius `r_k`):
//! ```text
//! L   = (R + 2G + B) * 0.25                            per pixel
//! C   = gated_smoothing([R - G, B - G], z, radii)      (2, H, W)
//! G'  = L - (C_0 + C_1) * 0.25
//! out = (C_0 + G', G', C_1 + G')
//! ```
//! [`super::gated_smoothing`] is the same per-pixel convex blend of the
//! two difference planes and their box means (weights `softmax(0, z)`), so
//! where the weights leave the differences as they are the output is `x`
//! (up to rounding): the stage moves colour, not luminance, letting flat
//! areas average chroma noise over wide windows (`fastc`: radii 4, 12)
//! while the luminance keeps its detail. The box sums clamp values to
//! ±[`super::gated_smoothing::BOX_LIMIT`] (24), far beyond colour
//! differences of linear RGB.
//!
//! The arithmetic follows PyTorch's order (`(R + 2G) + B`, then `* 0.25`;
//! no fused multiply-adds), so the stage matches training within f32
//! rounding; tiles with a halo covering the largest radius (on top of the
//! network's and the gated smoothing's) reproduce the whole frame bit for
//! bit, as the box sums are exact ([`super::gated_smoothing`]).
//!
//! Cost per pixel: 2 subtractions, the gated smoothing of two planes, ~8
//! operations for the luminance and back; two `2 x H x W` temporaries
//! from the run's [`BufferPool`]. The pointwise passes run across columns
//! and vectorise; an AVX-512 or AVX2 build of them (bit for bit the
//! baseline's: the same operations, no FMA) runs where the CPU has it.

use super::gated_smoothing::gated_smoothing_into;
use super::{BufferPool, Tensor};
use crate::error::{Error, Result};

/// Chroma smoothing of `x` (`[1, 3, H, W]` RGB) in place with logits `z`
/// (`[1, K, H, W]`, `K = radii.len()`, radii in
/// `1..=`[`super::gated_smoothing::MAX_RADIUS`]): see the module doc.
/// Temporaries come from `pool` and go back to it.
pub fn chroma_smoothing_in_place(
    x: &mut Tensor,
    z: &Tensor,
    radii: &[usize],
    pool: &BufferPool,
) -> Result<()> {
    let [n, c, h, w] = x.shape();
    if n != 1 || c != 3 {
        return Err(Error::invalid(format!(
            "chroma smoothing: input {:?} is not [1, 3, H, W]",
            x.shape()
        )));
    }
    let hw = h * w;
    let mut d = pool.take(2 * hw);
    differences(x.data(), &mut d, hw);
    let d = Tensor::from_vec([1, 2, h, w], d)?;
    let mut s = pool.zeros([1, 2, h, w])?;
    let smoothed = gated_smoothing_into(&d, z, radii, &mut s);
    pool.give(d);
    if let Err(e) = smoothed {
        pool.give(s);
        return Err(e);
    }
    recombine(x.data_mut(), s.data(), hw);
    pool.give(s);
    Ok(())
}

/// `(R - G, B - G)` of the planar RGB `x` (`3 x hw`) appended to `d`
/// (empty: then `2 x hw`), so its buffer is written once, not zeroed first.
fn differences(x: &[f32], d: &mut Vec<f32>, hw: usize) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked above).
        unsafe { differences_avx512(x, d, hw) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        unsafe { differences_avx2(x, d, hw) };
        return;
    }
    differences_body(x, d, hw)
}

/// [`differences_body`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn differences_avx512(x: &[f32], d: &mut Vec<f32>, hw: usize) {
    differences_body(x, d, hw)
}

/// [`differences_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn differences_avx2(x: &[f32], d: &mut Vec<f32>, hw: usize) {
    differences_body(x, d, hw)
}

#[inline(always)]
fn differences_body(x: &[f32], d: &mut Vec<f32>, hw: usize) {
    let (r, gb) = x[..3 * hw].split_at(hw);
    let (g, b) = gb.split_at(hw);
    d.extend(r.iter().zip(g).map(|(&rv, &gv)| rv - gv));
    d.extend(b.iter().zip(g).map(|(&bv, &gv)| bv - gv));
}

/// `x = (C_0 + G', G', C_1 + G')` with `G' = L - (C_0 + C_1) * 0.25` and
/// `L` the luminance of `x` (`3 x hw`); `s` = `C` (`2 x hw`).
fn recombine(x: &mut [f32], s: &[f32], hw: usize) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked above).
        unsafe { recombine_avx512(x, s, hw) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        unsafe { recombine_avx2(x, s, hw) };
        return;
    }
    recombine_body(x, s, hw)
}

/// [`recombine_body`] compiled for AVX-512F (no FMA: bit for bit the
/// baseline's).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn recombine_avx512(x: &mut [f32], s: &[f32], hw: usize) {
    recombine_body(x, s, hw)
}

/// [`recombine_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn recombine_avx2(x: &mut [f32], s: &[f32], hw: usize) {
    recombine_body(x, s, hw)
}

#[inline(always)]
fn recombine_body(x: &mut [f32], s: &[f32], hw: usize) {
    let (r, gb) = x[..3 * hw].split_at_mut(hw);
    let (g, b) = gb.split_at_mut(hw);
    let (c0, c1) = s[..2 * hw].split_at(hw);
    for ((((rv, gv), bv), &c0v), &c1v) in r.iter_mut().zip(g).zip(b).zip(c0).zip(c1) {
        let lum = (*rv + 2.0 * *gv + *bv) * 0.25;
        let g2 = lum - (c0v + c1v) * 0.25;
        *rv = c0v + g2;
        *gv = g2;
        *bv = c1v + g2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gated_smoothing::gated_smoothing;

    fn rgb(h: usize, w: usize) -> Tensor {
        let v = (0..3 * h * w)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0).powf(1.3) * 1.5 - 0.2)
            .collect();
        Tensor::from_vec([1, 3, h, w], v).expect("shape")
    }

    fn logits(k: usize, h: usize, w: usize) -> Tensor {
        let v = (0..k * h * w)
            .map(|i| ((i * 37 % 101) as f32 / 101.0) * 8.0 - 4.0)
            .collect();
        Tensor::from_vec([1, k, h, w], v).expect("shape")
    }

    /// The stage equals its definition written out with
    /// [`gated_smoothing`] on full-size tensors, bit for bit, in any
    /// dispatch (the SIMD builds do the same operations).
    #[test]
    fn equals_the_definition() {
        let (h, w) = (23, 37);
        let x = rgb(h, w);
        let z = logits(2, h, w);
        let radii = [4, 12];
        let hw = h * w;
        let mut d = Vec::with_capacity(2 * hw);
        for i in 0..hw {
            d.push(x.plane(0, 0)[i] - x.plane(0, 1)[i]);
        }
        for i in 0..hw {
            d.push(x.plane(0, 2)[i] - x.plane(0, 1)[i]);
        }
        let d = Tensor::from_vec([1, 2, h, w], d).expect("shape");
        let c = gated_smoothing(&d, &z, &radii).expect("smooth");
        let mut got = x.clone();
        let pool = BufferPool::new();
        chroma_smoothing_in_place(&mut got, &z, &radii, &pool).expect("chroma");
        for i in 0..hw {
            let (r, g, b) = (x.plane(0, 0)[i], x.plane(0, 1)[i], x.plane(0, 2)[i]);
            let lum = (r + 2.0 * g + b) * 0.25;
            let (c0, c1) = (c.plane(0, 0)[i], c.plane(0, 1)[i]);
            let g2 = lum - (c0 + c1) * 0.25;
            let want = [c0 + g2, g2, c1 + g2];
            for (ch, wv) in want.iter().enumerate() {
                assert_eq!(got.plane(0, ch)[i].to_bits(), wv.to_bits(), "c {ch} i {i}");
            }
        }
        // The scalar bodies give the same bits as the dispatched builds.
        let mut scalar = x.clone();
        let mut ds = Vec::new();
        differences_body(x.data(), &mut ds, hw);
        assert_eq!(&ds[..], d.data());
        recombine_body(scalar.data_mut(), c.data(), hw);
        assert!(scalar.data() == got.data());
    }

    /// Luminance is kept (to rounding) and, with the boxes shut (logits at
    /// -87, `exp` flushed), so is the colour; open boxes move the colour.
    #[test]
    fn keeps_luminance_and_moves_only_colour() {
        let (h, w) = (19, 26);
        let x = rgb(h, w);
        let pool = BufferPool::new();
        let lum = |t: &Tensor, i: usize| {
            (t.plane(0, 0)[i] + 2.0 * t.plane(0, 1)[i] + t.plane(0, 2)[i]) * 0.25
        };
        let shut = Tensor::from_vec([1, 1, h, w], vec![-100.0; h * w]).expect("shape");
        let mut y = x.clone();
        chroma_smoothing_in_place(&mut y, &shut, &[4], &pool).expect("chroma");
        assert!(y.max_abs_diff(&x) < 1e-6, "{}", y.max_abs_diff(&x));
        let open = Tensor::from_vec([1, 1, h, w], vec![10.0; h * w]).expect("shape");
        let mut y = x.clone();
        chroma_smoothing_in_place(&mut y, &open, &[4], &pool).expect("chroma");
        assert!(y.max_abs_diff(&x) > 0.1);
        for i in 0..h * w {
            assert!((lum(&y, i) - lum(&x, i)).abs() < 1e-6, "i {i}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let pool = BufferPool::new();
        let mut two = Tensor::zeros([1, 2, 8, 8]).expect("shape");
        let z = Tensor::zeros([1, 1, 8, 8]).expect("shape");
        assert!(chroma_smoothing_in_place(&mut two, &z, &[4], &pool).is_err());
        let mut x = Tensor::zeros([1, 3, 8, 8]).expect("shape");
        assert!(chroma_smoothing_in_place(&mut x, &z, &[4, 12], &pool).is_err());
        assert!(chroma_smoothing_in_place(&mut x, &z, &[0], &pool).is_err());
        let small = Tensor::zeros([1, 1, 8, 7]).expect("shape");
        assert!(chroma_smoothing_in_place(&mut x, &small, &[4], &pool).is_err());
        assert!(chroma_smoothing_in_place(&mut x, &z, &[4], &pool).is_ok());
    }
}
