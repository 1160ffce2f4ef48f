//! `noise_estimate`: the Poisson-Gaussian noise model var(x) = a·x + b per
//! CFA colour of one normalised mosaic, plus a per-tile sigma map, as a
//! `Value::Noise` for a denoiser. The maths is in
//! [`crate::noise::raw_estimator`] (Foi et al. 2008 binned fit over
//! Daubechies-4 HH energies, with weak-texture selection on the independent
//! LH/HL bands and CFA sites).
//!
//! Input: a mosaic after `black_level` (normalised, 1.0 = white), optionally
//! white-balanced. The stage does not pass the mosaic on: fan the mosaic
//! edge out to this stage and to the next pixel stage, e.g.
//! ```yaml
//! - { id: bl, op: black_level, in: [raw] }
//! - { id: wb, op: white_balance, in: [bl] }
//! - { id: ne, op: noise_estimate, in: [wb] }
//! - { id: dm, op: demosaic_denoise_learned, in: [wb, ne] }
//! ```
//! The model is in the units of the input mosaic; estimate after the white
//! balance when a consumer applies it to the white-balanced mosaic.
//!
//! `source` picks where the numbers come from:
//! - `estimate` (default): measured on the frame;
//! - `profile`: the `profile_file` param if set, else the frame's DNG
//!   NoiseProfile tag, else the calibration profile for the frame's
//!   make/model in `calibration_dir` (at the frame's ISO); an error when
//!   none exists;
//! - `auto`: the profile as for `profile` when one exists (DNG tag,
//!   profile file or calibration), otherwise measured on the frame: what a
//!   denoiser wants on any input (camera raws with a NoiseProfile use it,
//!   sensor dumps and raws without one get an estimate);
//! - `estimate_and_compare`: measured, and compared at mid-grey with the
//!   profile found as above; the comparison is written into the value's
//!   `source` string (`estimate; vs dng_profile: std ratio R 1.03 G 0.98
//!   B 1.05, max 5.0%`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{check_range, mosaic_ref, one_input, parse_params, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{Mosaic, MosaicScale, NoiseEstimate, Value, ValueDesc, ValueKind};
use crate::noise::raw_estimator::{self, EstimatorParams};
use crate::noise::{compare, profile, scale_profile};
use crate::raw::NoiseProfile;

/// Where the stage's model comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Estimate,
    Profile,
    /// The profile when one is found, else an estimate.
    Auto,
    EstimateAndCompare,
}

/// YAML params of `noise_estimate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub source: Source,
    /// A calibration profile YAML to use instead of the DNG tag / lookup.
    pub profile_file: Option<PathBuf>,
    /// Folder searched for a calibration profile matching make/model.
    pub calibration_dir: PathBuf,
    /// Sigma-map tile edge in mosaic pixels (even, 8..=1024).
    pub tile: usize,
    /// Most estimator blocks per CFA site plane (speed vs precision).
    pub max_blocks: usize,
    /// Fraction of the least-textured blocks kept per intensity bin.
    pub keep_fraction: f32,
}

impl Default for Params {
    fn default() -> Self {
        let e = EstimatorParams::default();
        Params {
            source: Source::Estimate,
            profile_file: None,
            calibration_dir: PathBuf::from("calibration/noise"),
            tile: 64,
            max_blocks: e.max_blocks,
            keep_fraction: e.keep_fraction as f32,
        }
    }
}

/// The compiled `noise_estimate` op.
#[derive(Debug)]
pub struct NoiseEstimateStage {
    p: Params,
    /// The profile file, loaded at compile time when given.
    file_profile: Option<(String, profile::CameraNoiseProfile)>,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("tile", self.tile as f32, 8.0, 1024.0)?;
        check_range("max_blocks", self.max_blocks as f32, 16.0, 1e7)?;
        check_range("keep_fraction", self.keep_fraction, 0.01, 1.0)?;
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let file_profile = match &p.profile_file {
        Some(f) => Some((
            f.display().to_string(),
            profile::CameraNoiseProfile::load(f)
                .map_err(|e| crate::stages::CompileError::params(format!("profile_file: {e}")))?,
        )),
        None => None,
    };
    Ok(Box::new(NoiseEstimateStage { p, file_profile }))
}

impl NoiseEstimateStage {
    /// The reference model for `m` (see module docs), in the mosaic's units,
    /// with a short name of where it came from.
    fn reference(&self, m: &Mosaic) -> Result<Option<(NoiseProfile, String)>> {
        let meta = &m.meta;
        let found = if let Some((name, prof)) = &self.file_profile {
            let (p, how) = prof.at_iso(meta.iso);
            Some((p, format!("profile_file {name} ({how})")))
        } else if let Some(p) = meta.noise_profile {
            Some((p, "dng_profile".to_string()))
        } else {
            profile::find(&self.p.calibration_dir, &meta.make, &meta.model)?.map(|(path, prof)| {
                let (p, how) = prof.at_iso(meta.iso);
                (p, format!("calibration {} ({how})", path.display()))
            })
        };
        Ok(found.map(|(p, s)| match m.wb_applied {
            Some(g) => (scale_profile(&p, g), s),
            None => (p, s),
        }))
    }
}

impl Stage for NoiseEstimateStage {
    fn op(&self) -> &'static str {
        "noise_estimate"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        one_input(inputs, ValueKind::Mosaic)?;
        Ok(ValueDesc::other(ValueKind::Noise))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        if m.scale != MosaicScale::Normalized {
            return Err(Error::invalid(
                "expects a normalised mosaic: put black_level before noise_estimate",
            ));
        }
        let estimated = |m: &Mosaic| -> Result<(NoiseProfile, String)> {
            let gains = m.wb_applied.unwrap_or([1.0; 3]);
            let ep = EstimatorParams {
                max_blocks: self.p.max_blocks,
                keep_fraction: self.p.keep_fraction as f64,
                white: gains,
                quant_var: raw_estimator::quantisation_variance(
                    m.meta.white,
                    m.meta.black.mean(),
                    gains,
                ),
                ..EstimatorParams::default()
            };
            let fit = raw_estimator::estimate(&m.data.f32(), m.width, m.height, m.cfa, &ep)?;
            let mut s = "estimate".to_string();
            if !fit.notes.is_empty() {
                s.push_str(&format!(" ({})", fit.notes.join("; ")));
            }
            Ok((fit.profile, s))
        };
        let (prof, source) = match self.p.source {
            Source::Estimate => estimated(m)?,
            Source::Profile => self.reference(m)?.ok_or_else(|| {
                Error::invalid(format!(
                    "source: profile, but the frame has no DNG NoiseProfile and no \
                     calibration profile in {} matches make '{}' model '{}'",
                    self.p.calibration_dir.display(),
                    m.meta.make,
                    m.meta.model
                ))
            })?,
            Source::Auto => match self.reference(m)? {
                Some(found) => found,
                None => {
                    let (est, s) = estimated(m)?;
                    (est, format!("{s}; no profile found"))
                }
            },
            Source::EstimateAndCompare => {
                let (est, mut s) = estimated(m)?;
                match self.reference(m)? {
                    Some((r, name)) => {
                        let d = compare(&est, &r);
                        s.push_str(&format!(
                            "; vs {name}: std ratio at mid-grey R {:.3} G {:.3} B {:.3}, max {:.1}%",
                            d.std_ratio[0],
                            d.std_ratio[1],
                            d.std_ratio[2],
                            100.0 * d.max_rel
                        ));
                    }
                    None => s.push_str("; no reference profile to compare with"),
                }
                (est, s)
            }
        };
        let (mw, mh, map) =
            raw_estimator::sigma_map(&m.data.f32(), m.width, m.height, m.cfa, &prof, self.p.tile);
        Ok(Value::Noise(Arc::new(NoiseEstimate {
            profile: prof,
            source,
            tile: (self.p.tile + 1) & !1,
            map_width: mw,
            map_height: mh,
            sigma_map: map,
        })))
    }
}
