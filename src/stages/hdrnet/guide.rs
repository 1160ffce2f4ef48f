//! The HDRnet guide (Gharbi et al. 2017, sec. 3.4.1, "pointwise"
//! guide): per pixel, a learned 3x3 colour matrix plus bias, a learned
//! piecewise-linear curve per channel (a sum of shifted ReLUs,
//! `curve_c(y) = Σ_k slope[c][k] · max(y - shift[c][k], 0)`), a 1x1 mix of
//! the three curves plus bias, clamped to [0, 1]. The guide is the luma
//! coordinate of the bilateral-grid lookup ([`super::slice_apply`]).
//!
//! Input: linear RGB (negative / non-finite values count as 0, as in
//! training). Evaluated row by row inside the slice pass. The portable
//! path follows the formula above in 8-pixel lanes; the AVX2+FMA path
//! ([`avx2`]) folds the mix into the curves, `g = Σ_c Σ_k w[c][k] ·
//! max(y_c, shift[c][k]) + const` with `w = mix_w[c]·slope[c][k]` and
//! `const = mix_b - Σ w·shift` (the same function, two operations per knot
//! instead of four; equal to the portable path within 1e-5 for inputs up to
//! 64x white).

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
    /// `[3][knots]`: `mix_w[c]·slopes[c][k]` (the folded form).
    folded_w: Vec<f32>,
    /// `mix_b - Σ folded_w·shifts` (the folded form).
    folded_const: f32,
}

const LANES: usize = 8;

impl Guide {
    /// From trained weights.
    pub fn new(w: &GuideWeights) -> Guide {
        Guide::compile(
            w.ccm,
            w.ccm_bias,
            w.shifts.clone(),
            w.slopes.clone(),
            w.mix_w,
            w.mix_b,
            w.knots,
        )
    }

    fn compile(
        ccm: [[f32; 3]; 3],
        ccm_bias: [f32; 3],
        shifts: Vec<f32>,
        slopes: Vec<f32>,
        mix_w: [f32; 3],
        mix_b: f32,
        knots: usize,
    ) -> Guide {
        let mut folded_w = vec![0f32; 3 * knots];
        // The constant in f64: it is a sum of 3·knots products.
        let mut folded_const = mix_b as f64;
        for (i, fw) in folded_w.iter_mut().enumerate() {
            *fw = mix_w[i / knots] * slopes[i];
            folded_const -= *fw as f64 * shifts[i] as f64;
        }
        Guide {
            ccm,
            ccm_bias,
            shifts,
            slopes,
            mix_w,
            mix_b,
            knots,
            folded_w,
            folded_const: folded_const as f32,
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
        Guide::compile(
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            [0.0; 3],
            vec![0.0; 3 * knots],
            slopes,
            [0.2126, 0.7152, 0.0722],
            0.0,
            knots,
        )
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
                // which is all `avx2::row` is compiled for.
                unsafe { avx2::row(self, r, g, b, out) };
                return;
            }
        }
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

/// The AVX2+FMA guide: 8 pixels per vector, mix folded into the curves.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::Guide;

    /// Negative and non-finite lanes to 0 (as [`super::clean`]).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn clean8(v: __m256) -> __m256 {
        // max(NaN, 0) = 0 (maxps returns its second operand on NaN);
        // +inf fails `v < inf`.
        let pos = _mm256_max_ps(v, _mm256_setzero_ps());
        let finite = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_set1_ps(f32::INFINITY));
        _mm256_and_ps(pos, finite)
    }

    /// Guide values of 8 cleaned pixels, in [0, 1] (NaN to 0).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn guide8(gd: &Guide, r: __m256, g: __m256, b: __m256) -> __m256 {
        let k = gd.knots;
        // Four accumulators in registers: the knots' FMAs are independent.
        let mut a0 = _mm256_set1_ps(gd.folded_const);
        let (mut a1, mut a2, mut a3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let term = |w: f32, y: __m256, s: f32, a: __m256| {
            _mm256_fmadd_ps(_mm256_set1_ps(w), _mm256_max_ps(y, _mm256_set1_ps(s)), a)
        };
        for c in 0..3 {
            let m = gd.ccm[c];
            let y = _mm256_fmadd_ps(
                _mm256_set1_ps(m[0]),
                r,
                _mm256_fmadd_ps(
                    _mm256_set1_ps(m[1]),
                    g,
                    _mm256_fmadd_ps(_mm256_set1_ps(m[2]), b, _mm256_set1_ps(gd.ccm_bias[c])),
                ),
            );
            let sh = gd.shifts[c * k..(c + 1) * k].chunks_exact(4);
            let wt = gd.folded_w[c * k..(c + 1) * k].chunks_exact(4);
            for (s, w) in sh.remainder().iter().zip(wt.remainder()) {
                a0 = term(*w, y, *s, a0);
            }
            for (s, w) in sh.zip(wt) {
                a0 = term(w[0], y, s[0], a0);
                a1 = term(w[1], y, s[1], a1);
                a2 = term(w[2], y, s[2], a2);
                a3 = term(w[3], y, s[3], a3);
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(1.0))
    }

    /// [`Guide::row`] on AVX2+FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn row(gd: &Guide, r: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) {
        let n = out.len().min(r.len()).min(g.len()).min(b.len());
        let mut x = 0;
        while x + 8 <= n {
            // SAFETY: x + 8 <= n <= every slice's length.
            unsafe {
                let v = guide8(
                    gd,
                    clean8(_mm256_loadu_ps(r.as_ptr().add(x))),
                    clean8(_mm256_loadu_ps(g.as_ptr().add(x))),
                    clean8(_mm256_loadu_ps(b.as_ptr().add(x))),
                );
                _mm256_storeu_ps(out.as_mut_ptr().add(x), v);
            }
            x += 8;
        }
        if x < n {
            let m = n - x;
            let mut px = [[0f32; 8]; 3];
            px[0][..m].copy_from_slice(&r[x..n]);
            px[1][..m].copy_from_slice(&g[x..n]);
            px[2][..m].copy_from_slice(&b[x..n]);
            let mut o = [0f32; 8];
            // SAFETY: the arrays hold 8 values each.
            unsafe {
                let v = guide8(
                    gd,
                    clean8(_mm256_loadu_ps(px[0].as_ptr())),
                    clean8(_mm256_loadu_ps(px[1].as_ptr())),
                    clean8(_mm256_loadu_ps(px[2].as_ptr())),
                );
                _mm256_storeu_ps(o.as_mut_ptr(), v);
            }
            out[x..n].copy_from_slice(&o[..m]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector path (folded curves) equals the portable formula.
    #[test]
    fn vector_path_matches_portable_path() {
        let mut rng = 12345u64;
        let mut next = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 40) as f32) / (1u64 << 24) as f32
        };
        let k = 16;
        let w = GuideWeights {
            ccm: [[0.9, 0.1, -0.05], [0.2, 0.7, 0.1], [-0.1, 0.3, 0.8]],
            ccm_bias: [0.01, -0.02, 0.0],
            shifts: (0..3 * k)
                .map(|i| (i % k) as f32 / k as f32 + 0.01 * next())
                .collect(),
            slopes: (0..3 * k).map(|_| next() - 0.4).collect(),
            mix_w: [0.3, 0.5, 0.2],
            mix_b: 0.05,
            knots: k,
        };
        let gd = Guide::new(&w);
        let n = 203;
        let scale = [1.0, 4.0, 64.0];
        let mut px: Vec<Vec<f32>> = (0..3)
            .map(|c| {
                (0..n)
                    .map(|i| next() * scale[i % 3] - 0.1 * c as f32)
                    .collect()
            })
            .collect();
        px[1][7] = f32::NAN;
        px[2][8] = f32::INFINITY;
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        gd.row(&px[0], &px[1], &px[2], &mut a);
        gd.row_impl(&px[0], &px[1], &px[2], &mut b);
        for (x, (u, v)) in a.iter().zip(&b).enumerate() {
            assert!((u - v).abs() < 1e-5, "x {x}: {u} vs {v}");
        }
    }

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
