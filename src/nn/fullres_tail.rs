//! The full-resolution refinement of [`super::dmdn_unet`] streamed in row
//! bands: `y = bilinear(masked) + up + fr2(fr1(cat))`, with a classical
//! base then `y += g (base - y)`, one band of rows at a time.
//!
//! Layout: `cat` is fr1's input `[1, nin, H, W]` whose planes 0..3 are the
//! masked mosaic (R, G, B) and planes 3..6 `up`
//! (`pixel_shuffle(head(d1))`), 6..9 `base - bilinear` with a classical
//! base; `base` is the base window (3 planes of `H x W`) and `g` its gate
//! (1 plane, after the sigmoid). The output is `[1, 3, H, W]`.
//!
//! Arithmetic: the same operations in the same order as the whole-tile
//! passes it replaces, so the same bits: fr1's rows by the layer's own
//! band kernel ([`Conv2d::forward_rows_into`], ReLU), fr2's from those by
//! its GEMM (`acc + bias`), then per value `+ up`, `+ bilinear` (the
//! row sums of [`super::dmdn_unet`]'s `bilinear_rows`) and `+ g (b - y)`.
//! fr1's 8 output planes of the whole window (44 MB at a 1,664-px window)
//! are never written, nor fr2's before the adds: each band's live only in
//! a per-thread buffer that stays in cache, and `y` is written once.

use std::cell::RefCell;

use rayon::prelude::*;

use super::dmdn_unet::bilinear_rows_range;
use super::{Activation, BufferPool, Conv2d, Tensor};
use crate::error::{Error, Result};

/// Output pixels per band (a band's fr1 output, `fullres_width` planes of
/// its rows, then stays within L2).
const BAND_PIXELS: usize = 16_384;

thread_local! {
    /// Per-thread band buffers: fr1's output rows and fr2's.
    static BANDS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Output pointer shared by the bands; each band writes its own rows.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only dereferenced for disjoint row ranges of the output buffer,
// which outlives the parallel loop.
unsafe impl Send for OutPtr {}
// SAFETY: as above; no two threads touch the same element.
unsafe impl Sync for OutPtr {}

/// `bilinear(masked) + up + fr2(fr1(cat))`, then with `base = Some((b,
/// g))` blended `y + g (b - y)` (see the module doc); the output on a
/// buffer from `pool`. `fr1` must map `cat`'s channels to `fr2`'s input,
/// 3x3 with output the input's size; `fr2` 1x1 to 3 channels.
pub fn fullres_tail(
    fr1: &Conv2d,
    fr2: &Conv2d,
    cat: &Tensor,
    base: Option<(&[f32], &[f32])>,
    pool: &BufferPool,
) -> Result<Tensor> {
    let [n, nin, h, w] = cat.shape();
    let hw = h * w;
    let mid = fr1.cout();
    if n != 1
        || nin < 6
        || fr1.cin() != nin
        || fr1.kernel() != (3, 3)
        || fr2.cin() != mid
        || fr2.cout() != 3
        || fr2.kernel() != (1, 1)
        || fr1.output_size(h, w)? != (h, w)
    {
        return Err(Error::invalid(format!(
            "fullres_tail: fr1 {}->{} and fr2 {}->{} do not fit fr1's input {:?}",
            fr1.cin(),
            mid,
            fr2.cin(),
            fr2.cout(),
            cat.shape()
        )));
    }
    if let Some((b, g)) = base {
        if b.len() != 3 * hw || g.len() != hw {
            return Err(Error::invalid(format!(
                "fullres_tail: base of {} and gate of {} values for a {h}x{w} window",
                b.len(),
                g.len()
            )));
        }
    }
    if hw == 0 {
        return Tensor::from_vec([1, 3, h, w], Vec::new());
    }
    let rows = (BAND_PIXELS / w).clamp(1, h);
    let bands: Vec<(usize, usize)> = (0..h)
        .step_by(rows)
        .map(|y0| (y0, (y0 + rows).min(h)))
        .collect();
    let mut out = pool.take(3 * hw);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let masked = &cat.data()[..3 * hw];
    let up = &cat.data()[3 * hw..6 * hw];
    bands.par_iter().try_for_each(|&(y0, y1)| -> Result<()> {
        let nr = y1 - y0;
        BANDS.with(|bufs| -> Result<()> {
            let mut bufs = bufs.borrow_mut();
            let (fv, yv) = &mut *bufs;
            // fr1's rows, as a [1, mid, nr, w] tensor for fr2
            let mut f = std::mem::take(fv);
            f.resize(mid * nr * w, 0.0);
            fr1.forward_rows_into(cat, y0, y1, &mut f, Activation::Relu)?;
            let ft = Tensor::from_vec([1, mid, nr, w], f)?;
            yv.resize(3 * nr * w, 0.0);
            let fr2_rows = fr2.forward_rows_into(&ft, 0, nr, yv, Activation::None);
            *fv = ft.into_vec();
            fr2_rows?;
            let ys: &[f32] = yv;
            bilinear_rows_range(masked, h, w, y0, y1, |c, yy, acc| {
                let at = c * hw + yy * w;
                let fy = &ys[(c * nr + yy - y0) * w..(c * nr + yy - y0 + 1) * w];
                let ptr = out_ptr;
                // SAFETY: row yy of plane c lies inside the 3 h w values
                // of `out`'s capacity and belongs to this band only (the
                // bands' rows are disjoint); `out` outlives the loop.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        ptr.0.add(at).cast::<std::mem::MaybeUninit<f32>>(),
                        w,
                    )
                };
                let sums = dst.iter_mut().zip(fy).zip(&up[at..at + w]).zip(acc);
                match base {
                    Some((b, g)) => {
                        let bg = b[at..at + w].iter().zip(&g[yy * w..(yy + 1) * w]);
                        for ((((d, &fv), &uv), &av), (&bv, &gv)) in sums.zip(bg) {
                            let mut v = fv;
                            v += uv;
                            v += av;
                            v += gv * (bv - v);
                            d.write(v);
                        }
                    }
                    None => {
                        for (((d, &fv), &uv), &av) in sums {
                            let mut v = fv;
                            v += uv;
                            v += av;
                            d.write(v);
                        }
                    }
                }
            });
            Ok(())
        })
    })?;
    // SAFETY: the bands cover rows 0..h, and each wrote its rows of all
    // three planes (bilinear_rows_range calls back once per colour and
    // row), so all 3 h w values are initialised.
    unsafe { out.set_len(3 * hw) };
    Tensor::from_vec([1, 3, h, w], out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::dmdn_unet::add_bilinear;
    use crate::nn::Padding;

    /// Deterministic values in -1..1.
    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn layer(cout: usize, cin: usize, k: usize, seed: u64) -> Conv2d {
        let w: Vec<f32> = vals(cout * cin * k * k, seed)
            .iter()
            .map(|v| v * 0.4)
            .collect();
        let b = vals(cout, seed + 1);
        Conv2d::new(w, b, [cout, cin, k, k], 1, Padding::Zero(k / 2)).expect("layer")
    }

    /// The banded tail equals the whole-tile passes it replaced (fr1, fr2,
    /// `+ up`, `+ bilinear`, the base blend) bit for bit, with and without
    /// a classical base, for one band, several and a short last one.
    #[test]
    fn banded_tail_equals_the_whole_tile_passes() {
        for (h, w) in [(7, 9), (300, 100), (1000, 33)] {
            for nin in [6, 9] {
                let hw = h * w;
                let fr1 = layer(8, nin, 3, 7 + nin as u64);
                let fr2 = layer(3, 8, 1, 11);
                let mut c = vals(nin * hw, 3);
                // the masked mosaic: zeros off the CFA sites
                for (i, v) in c[..3 * hw].iter_mut().enumerate() {
                    let (p, y, x) = (i / hw, i % hw / w, i % w);
                    let col = [0, 1, 1, 2][(y % 2) * 2 + x % 2];
                    if col != p {
                        *v = 0.0;
                    }
                }
                let cat = Tensor::from_vec([1, nin, h, w], c).expect("cat");
                let base = vals(3 * hw, 5);
                let g: Vec<f32> = vals(hw, 9).iter().map(|v| 0.5 + 0.5 * v).collect();
                let masked =
                    Tensor::from_vec([1, 3, h, w], cat.data()[..3 * hw].to_vec()).expect("masked");
                let f = fr1.forward(&cat, Activation::Relu).expect("fr1");
                let mut want = fr2.forward(&f, Activation::None).expect("fr2");
                want.data_mut()
                    .iter_mut()
                    .zip(&cat.data()[3 * hw..6 * hw])
                    .for_each(|(v, &u)| *v += u);
                add_bilinear(&mut want, &masked);
                let plain = want.clone();
                for (i, v) in want.data_mut().iter_mut().enumerate() {
                    *v += g[i % hw] * (base[i] - *v);
                }
                let pool = BufferPool::new();
                let got = fullres_tail(&fr1, &fr2, &cat, None, &pool).expect("tail");
                let got_b = fullres_tail(&fr1, &fr2, &cat, Some((&base, &g)), &pool).expect("tail");
                for (name, got, want) in [("plain", &got, &plain), ("base", &got_b, &want)] {
                    assert_eq!(got.shape(), [1, 3, h, w]);
                    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
                        assert_eq!(a.to_bits(), b.to_bits(), "{name} {h}x{w} nin {nin} at {i}");
                    }
                }
            }
        }
    }

    /// Mismatched layers and planes are errors, not panics.
    #[test]
    fn mismatched_shapes_are_errors() {
        let pool = BufferPool::new();
        let cat = Tensor::zeros([1, 6, 8, 8]).expect("cat");
        let (fr1, fr2) = (layer(8, 6, 3, 1), layer(3, 8, 1, 2));
        assert!(fullres_tail(&layer(8, 9, 3, 1), &fr2, &cat, None, &pool).is_err());
        assert!(fullres_tail(&fr1, &layer(3, 4, 1, 2), &cat, None, &pool).is_err());
        let short = vec![0.0; 10];
        assert!(fullres_tail(&fr1, &fr2, &cat, Some((&short, &short)), &pool).is_err());
        assert!(fullres_tail(&fr1, &fr2, &cat, None, &pool).is_ok());
    }
}
