//! The HDRnet guide (Gharbi et al. 2017, sec. 3.4.1, "pointwise"
//! guide): per pixel, a learned 3x3 colour matrix plus bias, a learned
//! piecewise-linear curve per channel (a sum of shifted ReLUs,
//! `curve_c(y) = Σ_k slope[c][k] · max(y - shift[c][k], 0)`), a 1x1 mix of
//! the three curves plus bias, clamped to [0, 1]. The guide is the luma
//! coordinate of the bilateral-grid lookup ([`super::slice_apply`]).
//!
//! Input: linear RGB (negative / non-finite values count as 0, as in
//! training). Evaluated row by row inside the slice pass, in 8-pixel lanes
//! the compiler vectorises.

use crate::nn::hdrnet::GuideWeights;

use super::slice_apply::clean;

/// A compiled guide: the weights laid out for the inner loop.
#[derive(Debug, Clone)]
pub struct Guide {
    ccm: [[f32; 3]; 3],
    ccm_bias: [f32; 3],
    /// `[3][knots]`.
    shifts: Vec<f32>,
    /// `[3][knots]`.
    slopes: Vec<f32>,
    mix_w: [f32; 3],
    mix_b: f32,
    knots: usize,
}

const LANES: usize = 8;

impl Guide {
    /// From trained weights.
    pub fn new(w: &GuideWeights) -> Guide {
        Guide {
            ccm: w.ccm,
            ccm_bias: w.ccm_bias,
            shifts: w.shifts.clone(),
            slopes: w.slopes.clone(),
            mix_w: w.mix_w,
            mix_b: w.mix_b,
            knots: w.knots,
        }
    }

    /// A fixed guide: Rec.709 luminance of the input, clamped to [0, 1]
    /// (identity curves); for tests and grids built by hand.
    pub fn luminance(knots: usize) -> Guide {
        let knots = knots.max(1);
        let mut slopes = vec![0f32; 3 * knots];
        for c in 0..3 {
            slopes[c * knots] = 1.0;
        }
        Guide {
            ccm: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            ccm_bias: [0.0; 3],
            shifts: vec![0.0; 3 * knots],
            slopes,
            mix_w: [0.2126, 0.7152, 0.0722],
            mix_b: 0.0,
            knots,
        }
    }

    /// Guide values of one row: `out[x]` in [0, 1] from the row's R, G, B.
    /// Compiled for AVX2+FMA when the CPU has it (runtime check).
    pub fn row(&self, r: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above),
                // which is all `row_avx2` is compiled for.
                unsafe { self.row_avx2(r, g, b, out) };
                return;
            }
        }
        self.row_impl(r, g, b, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2(&self, r: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) {
        self.row_impl(r, g, b, out)
    }

    /// The portable body of [`Guide::row`], inlined into the AVX2 callers.
    #[inline(always)]
    pub(crate) fn row_impl(&self, r: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) {
        let n = out.len().min(r.len()).min(g.len()).min(b.len());
        let k = self.knots;
        let mut x = 0;
        while x < n {
            let m = LANES.min(n - x);
            let mut px = [[0f32; LANES]; 3];
            for l in 0..m {
                px[0][l] = clean(r[x + l]);
                px[1][l] = clean(g[x + l]);
                px[2][l] = clean(b[x + l]);
            }
            let mut acc = [self.mix_b; LANES];
            for c in 0..3 {
                let m3 = self.ccm[c];
                let mut y = [0f32; LANES];
                for l in 0..LANES {
                    y[l] =
                        m3[0] * px[0][l] + m3[1] * px[1][l] + m3[2] * px[2][l] + self.ccm_bias[c];
                }
                let mut curve = [0f32; LANES];
                let sh = &self.shifts[c * k..(c + 1) * k];
                let sl = &self.slopes[c * k..(c + 1) * k];
                for (s, a) in sh.iter().zip(sl) {
                    for l in 0..LANES {
                        curve[l] += a * (y[l] - s).max(0.0);
                    }
                }
                for l in 0..LANES {
                    acc[l] += self.mix_w[c] * curve[l];
                }
            }
            for l in 0..m {
                let v = acc[l];
                out[x + l] = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
            }
            x += m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luminance_guide_and_learned_curve() {
        let g = Guide::luminance(3);
        let mut out = [0f32; 3];
        g.row(
            &[1.0, 0.0, 5.0],
            &[1.0, 0.5, 5.0],
            &[1.0, 0.0, 5.0],
            &mut out,
        );
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!((out[1] - 0.3576).abs() < 1e-6);
        assert_eq!(out[2], 1.0);
        // One curve with a knee at 0.5: slope 1 then 0 (slope increment -1).
        let w = GuideWeights {
            ccm: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            ccm_bias: [0.0; 3],
            shifts: vec![0.0, 0.5, 0.0, 0.0, 0.0, 0.0],
            slopes: vec![1.0, -1.0, 0.0, 0.0, 0.0, 0.0],
            mix_w: [1.0, 0.0, 0.0],
            mix_b: 0.1,
            knots: 2,
        };
        let g = Guide::new(&w);
        let mut out = [0f32; 4];
        g.row(&[0.2, 0.7, -3.0, f32::NAN], &[0.0; 4], &[0.0; 4], &mut out);
        let want = [0.3, 0.6, 0.1, 0.1];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }
}
