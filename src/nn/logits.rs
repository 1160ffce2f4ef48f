//! Per-pixel logit planes of the learned demosaic's smoothing gates, at
//! full resolution or packed as the network's 1x1 conv leaves them.
//!
//! The gates' 1x1 convs run at half resolution and give `4K` planes that
//! `pixel_shuffle(·, 2)` turns into `K` full-resolution logit planes. A
//! consumer that reads the logits row by row can take the packed planes
//! instead and interleave each row's two source rows into an L1-sized row
//! buffer as it needs it: the same values, without writing and reading
//! back `K` full-resolution planes (24 bytes per pixel for `fastd`'s six
//! chroma and luminance planes).
//!
//! Measured (`fastd_raw`, `bench --synthetic 4000x3000 -p
//! pipelines/learned_fastd.yaml --iters 3 --warmup 1`, 1 thread, perf at
//! 1,999 Hz over the 4 frames, AMD EPYC with AVX-512, machine loaded by a
//! training job and a build): the chroma and gate stages, the shuffles and
//! their iterator loops took 4,328 samples with the 8 gate, chroma and
//! luminance logit planes shuffled to full resolution, 3,470 reading them
//! packed (with [`super::shuffle`]'s interleave by 16-lane permutes):
//! ~107 ms less per frame, ~3 %; the same bits (golden digests unchanged).

use super::shuffle::interleave2_into;
use super::Tensor;

/// Logit planes `K x H x W` of one item.
#[derive(Clone, Copy, Debug)]
pub enum Logits<'a> {
    /// `[1, K, H, W]`.
    Full(&'a Tensor),
    /// `[1, 4K, H/2, W/2]` in PyTorch's `pixel_shuffle` order: logit `k`
    /// of pixel `(2i + dy, 2j + dx)` is plane `4k + 2dy + dx` at `(i, j)`.
    Packed(&'a Tensor),
}

impl<'a> Logits<'a> {
    /// `[1, K, H, W]`: the full-resolution shape the logits stand for.
    pub fn shape(&self) -> [usize; 4] {
        match self {
            Logits::Full(t) => t.shape(),
            Logits::Packed(t) => {
                let [n, c, h, w] = t.shape();
                if c % 4 == 0 {
                    [n, c / 4, 2 * h, 2 * w]
                } else {
                    // no full-resolution shape: fits no check
                    [n, usize::MAX, 0, 0]
                }
            }
        }
    }

    /// The planes `K`.
    pub fn planes(&self) -> usize {
        self.shape()[1]
    }

    /// Columns `0..buf.len()` of full-resolution row `y` of logit plane
    /// `k`: a slice of the tensor (full) or `buf` filled by interleaving
    /// the row's two packed source rows (packed). `buf.len()` must not
    /// exceed the width `W`, `k < K`, `y < H`.
    pub fn row<'s>(&'s self, k: usize, y: usize, buf: &'s mut [f32]) -> &'s [f32]
    where
        'a: 's,
    {
        match self {
            Logits::Full(t) => {
                let w = t.w();
                &t.plane(0, k)[y * w..y * w + buf.len()]
            }
            Logits::Packed(t) => {
                let wh = t.w();
                let (i, dy) = (y / 2, y % 2);
                let src = |dx: usize| &t.plane(0, 4 * k + 2 * dy + dx)[i * wh..(i + 1) * wh];
                interleave2_into(buf, src(0), src(1));
                buf
            }
        }
    }

    /// Columns `0..w` of full-resolution row `y` of every plane: slices of
    /// the tensor (full) or `bufs` (at least `K` buffers of at least `w`
    /// values) filled as [`Self::row`] does (packed).
    pub fn rows<'s>(&'s self, y: usize, w: usize, bufs: &'s mut [Vec<f32>]) -> LogitRows<'s>
    where
        'a: 's,
    {
        match self {
            Logits::Full(t) => {
                let tw = t.w();
                LogitRows::Tensor {
                    t,
                    at: y * tw..y * tw + w,
                }
            }
            Logits::Packed(_) => {
                for (k, b) in bufs.iter_mut().enumerate().take(self.planes()) {
                    self.row(k, y, &mut b[..w]);
                }
                LogitRows::Bufs { bufs, w }
            }
        }
    }
}

/// One full-resolution row of every logit plane ([`Logits::rows`]).
pub enum LogitRows<'s> {
    /// Values `at` of each plane of a full-resolution tensor.
    Tensor {
        t: &'s Tensor,
        at: std::ops::Range<usize>,
    },
    /// The first `w` values of each buffer.
    Bufs { bufs: &'s [Vec<f32>], w: usize },
}

impl LogitRows<'_> {
    /// The row of plane `k`.
    #[inline(always)]
    pub fn get(&self, k: usize) -> &[f32] {
        match self {
            LogitRows::Tensor { t, at } => &t.plane(0, k)[at.clone()],
            LogitRows::Bufs { bufs, w } => &bufs[k][..*w],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::shuffle::pixel_unshuffle;

    /// Packed rows equal the full planes' rows, every plane, row and
    /// width (odd prefixes included).
    #[test]
    fn packed_rows_equal_full_rows() {
        let (k, h, w) = (3, 6, 10);
        let full = Tensor::from_vec(
            [1, k, h, w],
            (0..k * h * w).map(|i| (i as f32 * 0.37).sin()).collect(),
        )
        .expect("full");
        let packed = pixel_unshuffle(&full, 2).expect("packed");
        let (f, p) = (Logits::Full(&full), Logits::Packed(&packed));
        assert_eq!(f.shape(), p.shape());
        assert_eq!(p.planes(), k);
        for c in 0..k {
            for y in 0..h {
                for n in [w, w - 1, 1] {
                    let (mut a, mut b) = (vec![0f32; n], vec![f32::NAN; n]);
                    assert_eq!(
                        f.row(c, y, &mut a),
                        p.row(c, y, &mut b),
                        "k {c} y {y} n {n}"
                    );
                }
            }
        }
        let mut bufs = vec![vec![0f32; w]; k];
        for y in 0..h {
            let fr = f.rows(y, w, &mut []);
            let want: Vec<Vec<f32>> = (0..k).map(|c| fr.get(c).to_vec()).collect();
            let pr = p.rows(y, w, &mut bufs);
            for (c, want) in want.iter().enumerate() {
                assert_eq!(pr.get(c), &want[..], "rows k {c} y {y}");
            }
        }
        let odd = Tensor::from_vec([1, 3, 2, 2], vec![0.0; 12]).expect("odd");
        assert_eq!(Logits::Packed(&odd).shape()[1], usize::MAX);
    }
}
