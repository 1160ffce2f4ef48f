//! The full-resolution refinement of [`super::dmdn_unet`] streamed in row
//! bands: `y = bilinear(masked) + up + fr2(fr1(cat))`, with a classical
//! base then `y += g (base - y)`, one band of rows at a time, fr1's input
//! `cat` built for the band's rows only.
//!
//! Inputs: the window's mosaic `[1, 1, H, W]` in the model's phase, the
//! head's output `[1, 12, H/2, W/2]` (`up = pixel_shuffle(head, 2)`), and
//! with a classical base the base window (3 planes of `H x W`) and its
//! gate `g` (1 plane, after the sigmoid). fr1's input `cat` is `concat(
//! masked, up)` (masked: the mosaic spread to its colour planes, R, G, B),
//! with a base `concat(masked, up, base - bilinear(masked))`. The output
//! is `[1, 3, H, W]`.
//!
//! Arithmetic: the same operations in the same order as the whole-tile
//! passes it replaces, so the same bits: each band builds `cat` for its
//! rows and one more each side (two more of `masked`, for the bilinear
//! sums of those), fr1's rows by the layer's own band kernel
//! ([`Conv2d::forward_rows_into`], ReLU; a row of `cat` outside the band
//! block is outside the window, where the conv's zero padding stands, as
//! over the whole window), fr2's from those by its GEMM (`acc + bias`),
//! then per value `+ up`, `+ bilinear` (the row sums of
//! [`super::dmdn_unet`]'s `bilinear_rows`) and `+ g (b - y)`. fr1's input
//! (9 planes, 100 MB at a 1,664-px window) and output (8 planes) of the
//! whole window are never written, nor fr2's before the adds: each band's
//! live only in per-thread buffers that stay in cache, and `y` is written
//! once.
//!
//! Measured (`bench --synthetic 4000x3000`, learned_fastd.yaml with
//! `tile: 1536`, `fastd_raw`; Intel Xeon with AVX-512, 2 vCPUs shared
//! with a training job and another session, load 3.5-4.5; perf samples of
//! 1-thread runs, iters 5 minus iters 1, / 4 = per frame): the stages this
//! replaced and their neighbours (conv3x3_direct, the shuffles, memmove /
//! memset, the GEMM path's bias and activation passes, the masked mosaic,
//! the bilinear sums and adds) took 1,738-1,762 ms per frame before (3
//! runs) and 1,635-1,710 after (4 runs, band sizes 16 K and 32 K pixels),
//! about -80 ms (-2 % of the ~3.5 s frame; whole-process user time per
//! frame 3,511-3,577 -> 3,340-3,526 ms). `dm` wall medians on this loaded
//! machine moved within their noise (3 rounds, interleaved: 1 thread
//! 3,448 -> 3,414 ms, 2 threads 3,657 -> 3,577 ms).

use std::cell::RefCell;

use rayon::prelude::*;

use super::bayer_tiles::{masked_mosaic_rows_extend, Cfa2x2};
use super::dmdn_unet::bilinear_rows_range;
use super::shuffle::pixel_shuffle2_rows_extend;
use super::{Activation, BufferPool, Conv2d, Tensor};
use crate::error::{Error, Result};

/// Output pixels per band: ~20 rows of a 1,664-px window, whose fr1
/// input and output (9 and 8 planes of those rows, ~2.3 MB) stay in
/// cache; the band's own margins (2 rows of the masked mosaic and 1 of
/// fr1's input each side) cost ~10 % more of those cheap rows. 16 K
/// pixels measured no better (1-thread perf samples, within the noise).
const BAND_PIXELS: usize = 32_768;

/// A band's buffers: the masked mosaic's rows, fr1's input and output
/// rows, fr2's.
#[derive(Default)]
struct Bufs {
    masked: Vec<f32>,
    cat: Vec<f32>,
    f: Vec<f32>,
    y: Vec<f32>,
}

thread_local! {
    /// Per-thread band buffers.
    static BANDS: RefCell<Bufs> = RefCell::new(Bufs::default());
}

/// Output pointer shared by the bands; each band writes its own rows.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only dereferenced for disjoint row ranges of the output buffer,
// which outlives the parallel loop.
unsafe impl Send for OutPtr {}
// SAFETY: as above; no two threads touch the same element.
unsafe impl Sync for OutPtr {}

/// The tail's inputs (see the module doc).
#[derive(Clone, Copy)]
pub struct TailInputs<'a> {
    /// The window's mosaic `[1, 1, H, W]`, origin in `phase`.
    pub mosaic: &'a Tensor,
    /// The model's CFA phase.
    pub phase: Cfa2x2,
    /// The head's output `[1, 12, H/2, W/2]`.
    pub head: &'a Tensor,
    /// With a classical base: the base window (3 planes of `H x W`) and
    /// its gate (1 plane).
    pub base: Option<(&'a [f32], &'a [f32])>,
}

/// `bilinear(masked) + up + fr2(fr1(cat))`, then with a base blended `y +
/// g (b - y)` (see the module doc); the output on a buffer from `pool`.
/// `fr1` must be 3x3 from `cat`'s 6 (9 with a base) channels to `fr2`'s
/// input, `fr2` 1x1 to 3 channels.
pub fn fullres_tail(
    fr1: &Conv2d,
    fr2: &Conv2d,
    inp: TailInputs<'_>,
    pool: &BufferPool,
) -> Result<Tensor> {
    let [mn, mc, h, w] = inp.mosaic.shape();
    let hw = h * w;
    let mid = fr1.cout();
    let nin = if inp.base.is_some() { 9 } else { 6 };
    if mn != 1
        || mc != 1
        || inp.head.shape() != [1, 12, h / 2, w / 2]
        || h % 2 != 0
        || w % 2 != 0
        || fr1.cin() != nin
        || fr1.kernel() != (3, 3)
        || fr2.cin() != mid
        || fr2.cout() != 3
        || fr2.kernel() != (1, 1)
        || fr1.output_size(h.max(1), w.max(1))? != (h.max(1), w.max(1))
    {
        return Err(Error::invalid(format!(
            "fullres_tail: fr1 {}->{} and fr2 {}->{} do not fit the mosaic {:?} and head {:?}",
            fr1.cin(),
            mid,
            fr2.cin(),
            fr2.cout(),
            inp.mosaic.shape(),
            inp.head.shape()
        )));
    }
    if let Some((b, g)) = inp.base {
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
    bands.par_iter().try_for_each(|&(y0, y1)| -> Result<()> {
        BANDS.with(|bufs| band(fr1, fr2, inp, (y0, y1), &mut bufs.borrow_mut(), out_ptr))
    })?;
    // SAFETY: the bands cover rows 0..h, and each wrote its rows of all
    // three planes (bilinear_rows_range calls back once per colour and
    // row), so all 3 h w values are initialised.
    unsafe { out.set_len(3 * hw) };
    Tensor::from_vec([1, 3, h, w], out)
}

/// Output rows `y0..y1` of [`fullres_tail`] into `out` (3 planes of `H x
/// W`, those rows written by this band only).
fn band(
    fr1: &Conv2d,
    fr2: &Conv2d,
    inp: TailInputs<'_>,
    (y0, y1): (usize, usize),
    bufs: &mut Bufs,
    out: OutPtr,
) -> Result<()> {
    let [_, _, h, w] = inp.mosaic.shape();
    let (hw, nr, mid) = (h * w, y1 - y0, fr1.cout());
    // masked rows m0..m1, cat rows t0..t1 (the band and one row each side,
    // clipped to the window; masked one more for the bilinear sums)
    let (m0, m1) = (y0.saturating_sub(2), (y1 + 2).min(h));
    let (t0, t1) = (y0.saturating_sub(1), (y1 + 1).min(h));
    let (hm, ht) = (m1 - m0, t1 - t0);
    bufs.masked.clear();
    masked_mosaic_rows_extend(inp.mosaic, inp.phase, m0, m1, &mut bufs.masked);
    let masked: &[f32] = &bufs.masked;
    // cat rows t0..t1: masked, up, base - bilinear(masked)
    let mut cat = std::mem::take(&mut bufs.cat);
    cat.clear();
    for c in 0..3 {
        let at = (c * hm + t0 - m0) * w;
        cat.extend_from_slice(&masked[at..at + ht * w]);
    }
    pixel_shuffle2_rows_extend(inp.head, t0, t1, &mut cat)?;
    if let Some((b, _)) = inp.base {
        bilinear_rows_range(masked, hm, w, t0 - m0, t1 - m0, |c, ly, acc| {
            let at = c * hw + (ly + m0) * w;
            cat.extend(b[at..at + w].iter().zip(acc).map(|(&bv, &a)| bv - a));
        });
    }
    let cat = Tensor::from_vec([1, fr1.cin(), ht, w], cat)?;
    // fr1's rows, as a [1, mid, nr, w] tensor for fr2
    let mut f = std::mem::take(&mut bufs.f);
    f.resize(mid * nr * w, 0.0);
    let fr1_rows = fr1.forward_rows_into(&cat, y0 - t0, y1 - t0, &mut f, Activation::Relu);
    let cat = cat.into_vec();
    fr1_rows?;
    let ft = Tensor::from_vec([1, mid, nr, w], f)?;
    bufs.y.resize(3 * nr * w, 0.0);
    let fr2_rows = fr2.forward_rows_into(&ft, 0, nr, &mut bufs.y, Activation::None);
    bufs.f = ft.into_vec();
    fr2_rows?;
    let ys: &[f32] = &bufs.y;
    let up = &cat[3 * ht * w..6 * ht * w];
    bilinear_rows_range(masked, hm, w, y0 - m0, y1 - m0, |c, ly, acc| {
        let yy = ly + m0;
        let at = c * hw + yy * w;
        let fy = &ys[(c * nr + yy - y0) * w..(c * nr + yy - y0 + 1) * w];
        let ua = (c * ht + yy - t0) * w;
        let ptr = out;
        // SAFETY: row yy of plane c lies inside the 3 h w values of the
        // output's capacity and belongs to this band only (the bands' rows
        // are disjoint); the output outlives the bands.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(ptr.0.add(at).cast::<std::mem::MaybeUninit<f32>>(), w)
        };
        let sums = dst.iter_mut().zip(fy).zip(&up[ua..ua + w]).zip(acc);
        match inp.base {
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
    bufs.cat = cat;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::bayer_tiles::masked_mosaic;
    use crate::nn::dmdn_unet::{add_bilinear, sub_bilinear};
    use crate::nn::shuffle::pixel_shuffle;
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

    /// The banded tail equals the whole-tile passes it replaced (the
    /// masked mosaic, the shuffled head, base - bilinear, fr1, fr2, `+ up`,
    /// `+ bilinear`, the base blend) bit for bit, with and without a
    /// classical base, for one band, several and a short last one, in
    /// every CFA phase.
    #[test]
    fn banded_tail_equals_the_whole_tile_passes() {
        let phases = [[0u8, 1, 1, 2], [1, 0, 2, 1], [1, 2, 0, 1], [2, 1, 1, 0]];
        for ((h, w), phase) in [(8, 10), (700, 100), (1000, 34)].into_iter().zip(phases) {
            for nin in [6, 9] {
                let hw = h * w;
                let fr1 = layer(8, nin, 3, 7 + nin as u64);
                let fr2 = layer(3, 8, 1, 11);
                let mosaic = Tensor::from_vec([1, 1, h, w], vals(hw, 3)).expect("mosaic");
                let head = Tensor::from_vec([1, 12, h / 2, w / 2], vals(3 * hw, 4)).expect("head");
                let base = vals(3 * hw, 5);
                let g: Vec<f32> = vals(hw, 9).iter().map(|v| 0.5 + 0.5 * v).collect();
                // the whole-tile passes
                let masked = masked_mosaic(&mosaic, phase).expect("masked");
                let up = pixel_shuffle(&head, 2).expect("up");
                let mut cat = masked.data().to_vec();
                cat.extend_from_slice(up.data());
                if nin == 9 {
                    let mut d = Tensor::from_vec([1, 3, h, w], base.clone()).expect("base");
                    sub_bilinear(&mut d, &masked);
                    cat.extend_from_slice(d.data());
                }
                let cat = Tensor::from_vec([1, nin, h, w], cat).expect("cat");
                let f = fr1.forward(&cat, Activation::Relu).expect("fr1");
                let mut want = fr2.forward(&f, Activation::None).expect("fr2");
                want.data_mut()
                    .iter_mut()
                    .zip(up.data())
                    .for_each(|(v, &u)| *v += u);
                add_bilinear(&mut want, &masked);
                if nin == 9 {
                    for (i, v) in want.data_mut().iter_mut().enumerate() {
                        *v += g[i % hw] * (base[i] - *v);
                    }
                }
                let inp = TailInputs {
                    mosaic: &mosaic,
                    phase,
                    head: &head,
                    base: (nin == 9).then_some((&base[..], &g[..])),
                };
                let got = fullres_tail(&fr1, &fr2, inp, &BufferPool::new()).expect("tail");
                assert_eq!(got.shape(), [1, 3, h, w]);
                for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{h}x{w} nin {nin} at {i}");
                }
            }
        }
    }

    /// Mismatched layers and planes are errors, not panics.
    #[test]
    fn mismatched_shapes_are_errors() {
        let pool = BufferPool::new();
        let mosaic = Tensor::zeros([1, 1, 8, 8]).expect("mosaic");
        let head = Tensor::zeros([1, 12, 4, 4]).expect("head");
        let inp = TailInputs {
            mosaic: &mosaic,
            phase: [0, 1, 1, 2],
            head: &head,
            base: None,
        };
        let (fr1, fr2) = (layer(8, 6, 3, 1), layer(3, 8, 1, 2));
        assert!(fullres_tail(&layer(8, 9, 3, 1), &fr2, inp, &pool).is_err());
        assert!(fullres_tail(&fr1, &layer(3, 4, 1, 2), inp, &pool).is_err());
        let short = vec![0.0; 10];
        let with_short = TailInputs {
            base: Some((&short, &short)),
            ..inp
        };
        assert!(fullres_tail(&layer(8, 9, 3, 1), &fr2, with_short, &pool).is_err());
        let bad_head = TailInputs {
            head: &mosaic,
            ..inp
        };
        assert!(fullres_tail(&fr1, &fr2, bad_head, &pool).is_err());
        assert!(fullres_tail(&fr1, &fr2, inp, &pool).is_ok());
    }
}
