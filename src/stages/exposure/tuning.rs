//! The exposure meter's tuning file (YAML): targets, weights, limits and
//! temporal smoothing. The shipped file is
//! `calibration/exposure/semantic.yaml` (compiled into the binary); a
//! pipeline may name another with the meter's `tuning:` param. Every
//! section denies unknown keys and every number is range-checked, so a
//! typo is an error naming the file, line and column.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::yaml;

/// The shipped tuning file.
pub const SHIPPED: &str = include_str!("../../../calibration/exposure/semantic.yaml");

/// Whole tuning file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Format version; only 1 exists.
    pub version: u32,
    /// Longer side of the metering grid, pixels.
    pub grid: usize,
    /// Linear luminance the scene's log-average is placed at.
    pub mid_grey: f32,
    pub face: FaceTuning,
    pub sky: SkyTuning,
    /// Percentile (0..1) of the max channel kept at or below the white
    /// point when there is no sky.
    pub highlight_percentile: f32,
    /// Most EV above 1.0 the tone curve may compress (white point <= 2^this).
    pub max_highlight_ev: f32,
    /// White point = protected highlight after the gain times this factor.
    pub white_margin: f32,
    /// Fraction of clipped pixels above which the frame counts as blown out.
    pub clipped_fraction: f32,
    /// Centre-weighted baseline: Gaussian sigma, fraction of the diagonal.
    pub centre_sigma: f32,
    pub limits: Limits,
    pub temporal: Temporal,
}

/// Face metering.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaceTuning {
    /// Linear luminance the median face luminance is placed at.
    pub target: f32,
    /// Central fraction (0..1] of each box's width and height metered.
    pub inner: f32,
    /// Weight (0..1) of the face EV against the scene EV.
    pub weight: f32,
    /// Boxes smaller than this fraction of the frame area are ignored.
    pub min_area: f32,
}

/// Sky handling.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SkyTuning {
    /// Probability at or above which a pixel is sky.
    pub threshold: f32,
    /// Percentile (0..1) of the sky's max channel protected from clipping.
    pub percentile: f32,
    /// Sky fraction of the frame below which the sky is ignored.
    pub min_fraction: f32,
    /// Without faces: most EV of sky compression accepted before the EV is
    /// lowered.
    pub max_compression_ev: f32,
}

/// EV limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub min_ev: f32,
    pub max_ev: f32,
}

/// Temporal smoothing over sequences.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Temporal {
    /// Fraction (0..1] of the remaining error corrected per frame.
    pub speed: f32,
    /// Errors at or below this many EV are not corrected (hysteresis).
    pub deadband_ev: f32,
    /// Largest change per frame, EV.
    pub max_step_ev: f32,
}

impl Tuning {
    /// The shipped tuning.
    pub fn shipped() -> Result<Tuning> {
        Tuning::parse(SHIPPED, "calibration/exposure/semantic.yaml")
    }

    /// Loads a tuning file.
    pub fn load(path: &Path) -> Result<Tuning> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Tuning::parse(&text, &path.display().to_string())
    }

    /// Parses and validates tuning YAML; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Tuning> {
        let t: Tuning = yaml::parse(text, file)?;
        t.validate()
            .map_err(|msg| yaml::invalid(file, msg.to_string()))?;
        Ok(t)
    }

    /// Range checks; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        use super::super::check_range as r;
        if self.version != 1 {
            return Err(crate::stages::CompileError::params(format!(
                "unsupported tuning version {} (expected 1)",
                self.version
            )));
        }
        if !(16..=4096).contains(&self.grid) {
            return Err(crate::stages::CompileError::params(format!(
                "grid = {} is outside [16, 4096]",
                self.grid
            )));
        }
        r("mid_grey", self.mid_grey, 0.01, 0.9)?;
        r("face.target", self.face.target, 0.01, 0.9)?;
        r("face.inner", self.face.inner, 0.1, 1.0)?;
        r("face.weight", self.face.weight, 0.0, 1.0)?;
        r("face.min_area", self.face.min_area, 0.0, 0.5)?;
        r("sky.threshold", self.sky.threshold, 0.01, 0.99)?;
        r("sky.percentile", self.sky.percentile, 0.5, 1.0)?;
        r("sky.min_fraction", self.sky.min_fraction, 0.0, 0.9)?;
        r(
            "sky.max_compression_ev",
            self.sky.max_compression_ev,
            0.0,
            6.0,
        )?;
        r("highlight_percentile", self.highlight_percentile, 0.5, 1.0)?;
        r("max_highlight_ev", self.max_highlight_ev, 0.0, 6.0)?;
        r("white_margin", self.white_margin, 1.0, 4.0)?;
        r("clipped_fraction", self.clipped_fraction, 0.1, 1.0)?;
        r("centre_sigma", self.centre_sigma, 0.02, 2.0)?;
        r("limits.min_ev", self.limits.min_ev, -16.0, 0.0)?;
        r("limits.max_ev", self.limits.max_ev, 0.0, 16.0)?;
        r("temporal.speed", self.temporal.speed, 0.01, 1.0)?;
        r("temporal.deadband_ev", self.temporal.deadband_ev, 0.0, 2.0)?;
        r(
            "temporal.max_step_ev",
            self.temporal.max_step_ev,
            0.01,
            16.0,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tuning_is_valid() {
        let t = Tuning::shipped().unwrap();
        assert_eq!(t.version, 1);
        assert!(t.face.target > 0.0);
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let bad = SHIPPED.replace("  inner: 0.6", "  iner: 0.6");
        let e = Tuning::parse(&bad, "t.yaml").unwrap_err().to_string();
        assert!(e.starts_with("t.yaml:") && e.contains("iner"), "{e}");
    }

    #[test]
    fn out_of_range_is_an_error() {
        let bad = SHIPPED.replace("  target: 0.20", "  target: 7.0");
        let e = Tuning::parse(&bad, "t.yaml").unwrap_err().to_string();
        assert!(e.contains("face.target"), "{e}");
    }
}
