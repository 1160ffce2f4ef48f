//! The generalised Anscombe transformation (GAT) for Poisson-Gaussian noise
//! and its exact unbiased inverse.
//!
//! Forward (Murtagh, Starck & Bijaoui 1995; Mäkitalo & Foi 2013): for a
//! signal x observed with var(x) = a·x + b (a: shot-noise scale, b: read
//! variance, both on the normalised signal),
//! `f(x) = 2 · sqrt(max(x/a + 3/8 + b/a², 0))`, which has (approximately)
//! unit variance everywhere. In "Poisson units" z = x/a and σ² = b/a² this
//! is the textbook `2·sqrt(z + 3/8 + σ²)`.
//!
//! Inverse: the algebraic inverse `(D/2)² − 3/8 − σ²` is biased at low
//! counts (E[f(z)] ≠ f(E[z])). Mäkitalo & Foi (IEEE TIP 2011, "Optimal
//! inversion of the Anscombe transformation in low-count Poisson image
//! denoising"; IEEE TIP 2013, "Optimal inversion of the generalized
//! Anscombe transformation for Poisson-Gaussian noise") give the exact
//! unbiased inverse and its closed-form approximation
//! `I(D, σ) = D²/4 + ¼·sqrt(3/2)·D⁻¹ − 11/8·D⁻² + 5/8·sqrt(3/2)·D⁻³ − 1/8 − σ²`,
//! used here. The formula is exactly 0 (before the −σ²) at D = 2·sqrt(3/8),
//! the transform of an empty pixel; below that we return the value at that
//! point (the true inverse is flat there, and the rational terms would turn
//! back up).
//!
//! When the shot term vanishes (a ≤ 0 or σ² very large, i.e. Gaussian
//! noise) the transform falls back to the linear `x / sqrt(b)`, whose
//! inverse is exact.

use crate::raw::NoiseProfile;

/// D = 2·sqrt(3/8): the transform of a zero-count pixel.
const D_ZERO: f64 = 1.224_744_871_391_589;

/// σ² (in Poisson units) above which the noise is treated as Gaussian.
const GAUSSIAN_LIMIT: f64 = 1e4;

/// A variance-stabilising transform for one colour's noise model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Vst {
    /// Generalised Anscombe with shot scale `a` and σ² = b/a² (Poisson units).
    Anscombe { a: f64, sigma2: f64 },
    /// Pure Gaussian noise of std `sd`: x / sd.
    Gaussian { sd: f64 },
}

impl Vst {
    /// The transform for var(x) = a·x + b; `None` when the model has no
    /// noise at all (a ≤ 0 and b ≤ 0) or is not finite.
    pub fn new(a: f64, b: f64) -> Option<Vst> {
        if !a.is_finite() || !b.is_finite() {
            return None;
        }
        let b = b.max(0.0);
        if a > 0.0 {
            let sigma2 = b / (a * a);
            if sigma2 <= GAUSSIAN_LIMIT {
                return Some(Vst::Anscombe { a, sigma2 });
            }
        }
        (b > 0.0).then(|| Vst::Gaussian { sd: b.sqrt() })
    }

    /// The transform of colour `c` (0 = R, 1 = G, 2 = B) of a profile.
    pub fn for_color(p: &NoiseProfile, c: usize) -> Option<Vst> {
        Vst::new(p.a[c], p.b[c])
    }

    /// Forward transform of a normalised sample: unit noise variance.
    #[inline]
    pub fn forward(&self, x: f32) -> f32 {
        match *self {
            Vst::Anscombe { a, sigma2 } => {
                let z = x as f64 / a;
                (2.0 * (z + 0.375 + sigma2).max(0.0).sqrt()) as f32
            }
            Vst::Gaussian { sd } => (x as f64 / sd) as f32,
        }
    }

    /// Exact unbiased inverse (closed-form approximation) of a denoised
    /// value `d` in the stabilised domain, back to the normalised signal.
    #[inline]
    pub fn inverse(&self, d: f32) -> f32 {
        match *self {
            Vst::Anscombe { a, sigma2 } => {
                let d = (d as f64).max(D_ZERO);
                let s = 1.5f64.sqrt();
                let (i1, i2) = (1.0 / d, 1.0 / (d * d));
                let z = 0.25 * d * d + 0.25 * s * i1 - 1.375 * i2 + 0.625 * s * i1 * i2
                    - 0.125
                    - sigma2;
                (a * z) as f32
            }
            Vst::Gaussian { sd } => (d as f64 * sd) as f32,
        }
    }

    /// The plain algebraic inverse (biased at low counts); for comparison.
    pub fn inverse_algebraic(&self, d: f32) -> f32 {
        match *self {
            Vst::Anscombe { a, sigma2 } => {
                let d = d as f64;
                (a * (0.25 * d * d - 0.375 - sigma2)) as f32
            }
            Vst::Gaussian { sd } => (d as f64 * sd) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal, Poisson};

    /// Samples of x with var = a·x + b (Poisson counts scaled by a plus
    /// Gaussian read noise), as the synthetic raws draw them.
    fn samples(x: f64, a: f64, b: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let g = Normal::new(0.0, 1.0).unwrap();
        let p = Poisson::new(x / a).unwrap();
        (0..n)
            .map(|_| p.sample(&mut rng) * a + b.sqrt() * g.sample(&mut rng))
            .collect()
    }

    #[test]
    fn forward_stabilises_variance() {
        let (a, b) = (1e-3, 1e-6);
        let v = Vst::new(a, b).unwrap();
        for x in [0.01, 0.05, 0.2, 0.6] {
            let t: Vec<f64> = samples(x, a, b, 40_000, 7)
                .iter()
                .map(|&s| v.forward(s as f32) as f64)
                .collect();
            let m = t.iter().sum::<f64>() / t.len() as f64;
            let var = t.iter().map(|d| (d - m).powi(2)).sum::<f64>() / t.len() as f64;
            assert!((var - 1.0).abs() < 0.06, "x {x}: var {var}");
        }
    }

    #[test]
    fn unbiased_inverse_of_the_expected_transform() {
        // The exact unbiased inverse maps E[f(x)] back to x, also at a few
        // counts where the algebraic inverse is visibly biased.
        let (a, b) = (1e-2, 2e-5);
        let v = Vst::new(a, b).unwrap();
        for x in [0.03, 0.1, 0.4] {
            let s = samples(x, a, b, 200_000, 3);
            let ef = s.iter().map(|&s| v.forward(s as f32) as f64).sum::<f64>() / s.len() as f64;
            let got = v.inverse(ef as f32) as f64;
            let alg = v.inverse_algebraic(ef as f32) as f64;
            assert!((got - x).abs() < 0.01 * x + 2e-4, "x {x}: unbiased {got}");
            if x < 0.05 {
                assert!(
                    (alg - x).abs() > 2.0 * (got - x).abs(),
                    "x {x}: {alg} {got}"
                );
            }
        }
    }

    #[test]
    fn inverse_is_monotone_and_floors() {
        let v = Vst::new(1e-3, 1e-6).unwrap();
        let mut last = f32::NEG_INFINITY;
        for i in 0..400 {
            let d = i as f32 * 0.05;
            let x = v.inverse(d);
            assert!(x.is_finite() && x >= last, "d {d}: {x} < {last}");
            last = x;
        }
    }

    #[test]
    fn gaussian_and_degenerate_models() {
        assert_eq!(Vst::new(0.0, 0.0), None);
        assert_eq!(Vst::new(f64::NAN, 1e-4), None);
        let g = Vst::new(0.0, 1e-4).unwrap();
        assert!(matches!(g, Vst::Gaussian { .. }));
        assert!((g.inverse(g.forward(0.3)) - 0.3).abs() < 1e-6);
        assert!(matches!(
            Vst::new(1e-9, 1e-4).unwrap(),
            Vst::Gaussian { .. }
        ));
    }
}
