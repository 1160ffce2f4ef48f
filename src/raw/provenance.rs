//! Colour decisions per file: which white balance, black and white level a
//! decoded frame carries, and why (shown by `rawgraph info`). The rules
//! follow what each format means, as LibRaw (dcraw) reads it:
//!
//! - as-shot multipliers when the file has usable ones;
//! - multipliers of exactly 1/1/1 in the file: the data is pre-balanced;
//! - CRW shot in auto WB whose multipliers come from a preset table:
//!   flagged unusable (`wb_gains = None`, gray world downstream), as
//!   LibRaw's `cam_mul[0] = -1`;
//! - no white balance in the file: the daylight (D65) neutral of the
//!   colour matrix (LibRaw's `pre_mul` from `cam_xyz_coeff`), or gray world
//!   when there is no matrix either.

use super::ciff::CiffInfo;
use super::{ColorMatrix, Illuminant, Provenance, WbSource};

/// CIE XYZ of the D65 white point (Y = 1).
const D65_XYZ: [f32; 3] = [0.950_47, 1.0, 1.088_83];

/// Where a DNG's black level comes from.
pub const DNG_BLACK: &str = "the file (DNG BlackLevel)";

/// Where a DNG's white level `white` comes from.
pub fn dng_white(white: f32) -> String {
    format!("{white} from the file (DNG WhiteLevel, else 2^BitsPerSample - 1)")
}

/// The provenance a DNG with these as-shot gains and white level decodes
/// with (shared by the decoder and `dng_write::dng_representable`).
pub fn for_dng(wb_gains: Option<[f32; 3]>, white: f32) -> Provenance {
    let coeffs = wb_gains.map_or([f32::NAN; 4], |g| [g[0], g[1], g[2], f32::NAN]);
    let (_, wb, wb_why) = decide_wb(Format::Dng, coeffs, &CiffInfo::default(), &[]);
    Provenance {
        wb,
        wb_why,
        black: DNG_BLACK.into(),
        white: dng_white(white),
    }
}

/// What the decoder says about the file, for the decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dng,
    Crw,
    /// A Kodak DC50 KDC: rawler stores 1/1/1 because the file has no white
    /// balance; LibRaw keeps unity pre-multipliers (its `-w` output equals
    /// its output without `-w`).
    KodakNoWb,
    /// A Kodak DC120 KDC: no white balance in the file either, but LibRaw's
    /// `-w` falls back to its automatic white balance for this camera (its
    /// `-w` output equals its `-a` output, per-channel means equal within
    /// 0.1 %, on both DC120 files of raw/real).
    KodakDc120,
    Other,
}

/// Multipliers (R, G, B; G = 1) that make the D65 white neutral through
/// the XYZ -> camera matrix closest to D65; `None` without a usable one.
pub fn daylight_gains(matrices: &[ColorMatrix]) -> Option<[f32; 3]> {
    let m = matrices
        .iter()
        .min_by_key(|m| (m.illuminant.cct() - Illuminant::D65.cct()).abs() as i64)?;
    let cam: Vec<f32> = (0..3)
        .map(|r| (0..3).map(|c| m.xyz_to_cam[r][c] * D65_XYZ[c]).sum())
        .collect();
    if cam.iter().any(|v| !v.is_finite() || *v <= 1e-6) {
        return None;
    }
    Some([cam[1] / cam[0], 1.0, cam[1] / cam[2]])
}

/// The white balance for a decoded frame: `coeffs` are rawler's (R, G, B,
/// E) multipliers. Returns the gains for `RawMeta::wb_gains`, the source
/// and a one-line reason.
pub fn decide_wb(
    format: Format,
    coeffs: [f32; 4],
    ciff: &CiffInfo,
    _matrices: &[ColorMatrix],
) -> (Option<[f32; 3]>, WbSource, String) {
    let usable = coeffs[..3].iter().all(|v| v.is_finite() && *v > 0.0);
    if format == Format::KodakNoWb {
        return (
            Some([1.0; 3]),
            WbSource::UnityDefault,
            "the file stores no white balance; unity multipliers, as LibRaw (its table for \
             this camera has no XYZ matrix, so its daylight multipliers are 1/1/1)"
                .into(),
        );
    }
    if format == Format::KodakDc120 {
        return (
            None,
            WbSource::Missing,
            "the file stores no white balance; gray world, as LibRaw (its camera-WB \
             render of a DC120 is its automatic white balance)"
                .into(),
        );
    }
    if !usable {
        // Gray world rather than the matrix's daylight neutral: a scene
        // estimate is the safer guess for an unknown illuminant, and it
        // keeps what DNGs without AsShotNeutral rendered before.
        return (
            None,
            WbSource::Missing,
            "the file has no usable as-shot white balance; gray world".into(),
        );
    }
    if format == Format::Crw && ciff.wb_flagged_invalid() {
        return (
            None,
            WbSource::FlaggedInvalid,
            "shot in auto white balance; the stored multipliers are a preset table, \
             not the applied balance (LibRaw flags them unusable); gray world"
                .into(),
        );
    }
    let g = [coeffs[0] / coeffs[1], 1.0, coeffs[2] / coeffs[1]];
    if g.iter().all(|v| (v - 1.0).abs() < 1e-4) {
        return (
            Some([1.0; 3]),
            WbSource::PreBalanced,
            "the file's multipliers are 1/1/1: the data is already white-balanced".into(),
        );
    }
    let what = match format {
        Format::Dng => "DNG AsShotNeutral",
        Format::Crw => "CRW maker-note white balance",
        _ => "the maker's as-shot white balance",
    };
    (Some(g), WbSource::AsShot, format!("as shot ({what})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srgb_matrix() -> Vec<ColorMatrix> {
        vec![ColorMatrix {
            illuminant: Illuminant::D65,
            xyz_to_cam: [
                [3.24045, -1.53713, -0.49853],
                [-0.96926, 1.87601, 0.04155],
                [0.05564, -0.20402, 1.05722],
            ],
        }]
    }

    #[test]
    fn rules() {
        let none = CiffInfo::default();
        let (g, s, _) = decide_wb(Format::Dng, [2.0, 1.0, 1.5, f32::NAN], &none, &[]);
        assert_eq!((g, s), (Some([2.0, 1.0, 1.5]), WbSource::AsShot));
        // Normalised to green whatever rawler normalised to.
        let (g, _, _) = decide_wb(Format::Other, [4.0, 2.0, 3.0, f32::NAN], &none, &[]);
        assert_eq!(g, Some([2.0, 1.0, 1.5]));
        let (g, s, _) = decide_wb(Format::Other, [1.0, 1.0, 1.0, f32::NAN], &none, &[]);
        assert_eq!((g, s), (Some([1.0; 3]), WbSource::PreBalanced));
        let (g, s, _) = decide_wb(Format::Other, [f32::NAN; 4], &none, &[]);
        assert_eq!((g, s), (None, WbSource::Missing));
        let (g, s, _) = decide_wb(Format::KodakNoWb, [1.0; 4], &none, &srgb_matrix());
        assert_eq!((g, s), (Some([1.0; 3]), WbSource::UnityDefault));
        let (g, s, _) = decide_wb(Format::KodakDc120, [1.0; 4], &none, &srgb_matrix());
        assert_eq!((g, s), (None, WbSource::Missing));
        // An sRGB "camera" has a 1/1/1 daylight neutral.
        let g = daylight_gains(&srgb_matrix()).unwrap();
        assert!(g.iter().all(|v| (v - 1.0).abs() < 2e-3), "{g:?}");
        let auto = CiffInfo {
            wbi: Some(0),
            color_info1_size: Some(768),
            ..Default::default()
        };
        let (g, s, _) = decide_wb(Format::Crw, [2.0, 1.0, 1.5, 1.0], &auto, &[]);
        assert_eq!((g, s), (None, WbSource::FlaggedInvalid));
    }

    #[test]
    fn daylight_of_a_real_matrix_is_plausible() {
        // Canon PowerShot G2 D65 matrix; LibRaw derives 2.08 / 0.93 / 1.09
        // (green-normalised: R 2.25, B 1.18).
        let m = vec![ColorMatrix {
            illuminant: Illuminant::D65,
            xyz_to_cam: [
                [0.9194, -0.2787, -0.1059],
                [-0.8098, 1.5657, 0.2608],
                [-0.261, 0.3064, 0.7867],
            ],
        }];
        let g = daylight_gains(&m).unwrap();
        assert!(
            (g[0] - 2.25).abs() < 0.05 && (g[2] - 1.18).abs() < 0.05,
            "{g:?}"
        );
    }
}
