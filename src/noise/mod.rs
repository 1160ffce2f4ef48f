//! Noise-level estimation and camera noise profiles.
//!
//! - [`anscombe`]: the generalised Anscombe variance-stabilising transform
//!   and its exact unbiased inverse (the `denoise_profiled` stage's VST).
//! - [`raw_estimator`]: the Poisson-Gaussian model var(x) = a·x + b per CFA
//!   colour, estimated from ONE normalised mosaic (the `noise_estimate`
//!   stage's maths).
//! - [`awgn`]: a single additive-white-Gaussian sigma from an 8-bit image
//!   (sRGB domain), for comparison with published estimators.
//! - [`profile`]: calibration profile files (`calibration/noise/*.yaml`):
//!   (a, b) as functions of ISO per camera, looked up by make/model, and the
//!   fit that `rawgraph calibrate noise` writes them with.
//!
//! Units: the raw model lives on the normalised signal x in [0, 1] (black
//! level removed, 1.0 = white level), exactly as the DNG NoiseProfile tag;
//! the AWGN sigma is in 8-bit code values (0..255).

pub mod anscombe;
pub mod awgn;
pub mod profile;
pub mod raw_estimator;

use crate::raw::NoiseProfile;

/// Daubechies-4 (8 taps, 4 vanishing moments) orthonormal low-pass
/// decomposition filter (Daubechies 1988); the high-pass is
/// g[k] = (-1)^k · h[7 - k] ([`DB4_HI`]).
pub(crate) const DB4_LO: [f64; 8] = [
    0.230_377_813_308_896_5,
    0.714_846_570_552_915_7,
    0.630_880_767_929_858_9,
    -0.027_983_769_416_859_854,
    -0.187_034_811_719_093_1,
    0.030_841_381_835_560_764,
    0.032_883_011_666_885_2,
    -0.010_597_401_785_069_032,
];

/// The Daubechies-4 high-pass decomposition filter.
pub(crate) const DB4_HI: [f64; 8] = [
    DB4_LO[7], -DB4_LO[6], DB4_LO[5], -DB4_LO[4], DB4_LO[3], -DB4_LO[2], DB4_LO[1], -DB4_LO[0],
];

/// The signal level called "mid-grey" when comparing two noise models: 18 %
/// of the white level on the normalised signal.
pub const MID_GREY: f64 = 0.18;

/// Noise standard deviation of `p` for colour `c` (0 = R, 1 = G, 2 = B) at
/// the normalised signal `x`; negative variances read as 0.
pub fn std_at(p: &NoiseProfile, c: usize, x: f64) -> f64 {
    (p.a[c] * x + p.b[c]).max(0.0).sqrt()
}

/// How far two noise models disagree at mid-grey: the ratio of their noise
/// standard deviations per colour.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Disagreement {
    /// std(estimate) / std(reference) at [`MID_GREY`] per colour (R, G, B);
    /// 1.0 when both are zero, `f64::INFINITY` when only the reference is.
    pub std_ratio: [f64; 3],
    /// max over colours of |std_ratio - 1|.
    pub max_rel: f64,
}

/// Compares an estimated model with a reference one (a DNG tag or a
/// calibration profile) at mid-grey.
pub fn compare(estimate: &NoiseProfile, reference: &NoiseProfile) -> Disagreement {
    let mut std_ratio = [1.0; 3];
    for (c, r) in std_ratio.iter_mut().enumerate() {
        let (e, f) = (
            std_at(estimate, c, MID_GREY),
            std_at(reference, c, MID_GREY),
        );
        *r = if f > 0.0 {
            e / f
        } else if e > 0.0 {
            f64::INFINITY
        } else {
            1.0
        };
    }
    let max_rel = std_ratio
        .iter()
        .map(|r| (r - 1.0).abs())
        .fold(0.0, f64::max);
    Disagreement { std_ratio, max_rel }
}

/// The model after white-balance gains `g` (R, G, B) were applied to the
/// signal: x' = g·x gives var' = g·a·x' + g²·b.
pub fn scale_profile(p: &NoiseProfile, g: [f32; 3]) -> NoiseProfile {
    let mut out = *p;
    for c in 0..3 {
        let g = g[c] as f64;
        out.a[c] = p.a[c] * g;
        out.b[c] = p.b[c] * g * g;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_identical_and_zero() {
        let p = NoiseProfile {
            a: [1e-3; 3],
            b: [1e-5; 3],
        };
        let d = compare(&p, &p);
        assert_eq!(d.max_rel, 0.0);
        let z = NoiseProfile {
            a: [0.0; 3],
            b: [0.0; 3],
        };
        assert_eq!(compare(&z, &z).max_rel, 0.0);
        assert!(compare(&p, &z).max_rel.is_infinite());
    }

    #[test]
    fn wb_scaling_matches_definition() {
        let p = NoiseProfile {
            a: [1e-3; 3],
            b: [1e-5; 3],
        };
        let s = scale_profile(&p, [2.0, 1.0, 1.5]);
        // var of 2x at x' = 2x: 4 * (a x + b) = 2a x' + 4b.
        let x = 0.3;
        assert!((s.a[0] * 2.0 * x + s.b[0] - 4.0 * (p.a[0] * x + p.b[0])).abs() < 1e-15);
    }
}
