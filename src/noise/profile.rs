//! Camera noise profiles: calibration files holding the Poisson-Gaussian
//! model var(x) = a·x + b per colour as a function of ISO, looked up by
//! make/model (format documented in `calibration/README.md`).
//!
//! ISO dependence (the physical model behind Foi et al. 2008 and the DNG
//! NoiseProfile): the shot-noise scale grows with the analogue gain, the
//! read noise has a part before the gain and one after it, so
//! a(iso) = a_per_iso · iso and b(iso) = b0 + b_per_iso2 · iso².

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::raw::NoiseProfile;
use crate::yaml;

/// Current profile format version.
pub const VERSION: u32 = 1;

/// One measured level: the model of the frames taken at one ISO (or of one
/// frame whose ISO is unknown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// ISO of the frames; absent when the frames do not say.
    #[serde(default)]
    pub iso: Option<u32>,
    /// Shot-noise scale per colour (R, G, B), normalised units.
    pub a: [f64; 3],
    /// Signal-independent variance per colour (R, G, B), normalised units².
    pub b: [f64; 3],
    /// The frames this level was measured on (file names).
    #[serde(default)]
    pub frames: Vec<String>,
}

impl Level {
    /// The level as a [`NoiseProfile`].
    pub fn profile(&self) -> NoiseProfile {
        NoiseProfile {
            a: self.a,
            b: self.b,
        }
    }
}

/// The fitted ISO dependence per colour (R, G, B).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsoFit {
    /// a(iso) = a_per_iso · iso.
    pub a_per_iso: [f64; 3],
    /// b(iso) = b0 + b_per_iso2 · iso².
    pub b0: [f64; 3],
    pub b_per_iso2: [f64; 3],
}

impl IsoFit {
    /// The model at `iso`.
    pub fn at(&self, iso: f64) -> NoiseProfile {
        let mut p = NoiseProfile {
            a: [0.0; 3],
            b: [0.0; 3],
        };
        for c in 0..3 {
            p.a[c] = self.a_per_iso[c] * iso;
            p.b[c] = self.b0[c] + self.b_per_iso2[c] * iso * iso;
        }
        p
    }
}

/// A calibration file `calibration/noise/NAME.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraNoiseProfile {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// Camera make and model as the decoder reports them (matched
    /// case-insensitively, surrounding spaces ignored).
    pub make: String,
    pub model: String,
    /// Free text: how and from what the profile was made, how far to trust it.
    #[serde(default)]
    pub notes: String,
    /// Measured levels, one per ISO.
    pub levels: Vec<Level>,
    /// ISO dependence fitted to the levels with a known ISO (needs two
    /// distinct ISOs).
    #[serde(default)]
    pub iso_fit: Option<IsoFit>,
}

fn finite_nonneg(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite() && *x >= 0.0)
}

impl CameraNoiseProfile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<CameraNoiseProfile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses profile YAML; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<CameraNoiseProfile> {
        let file = path.display().to_string();
        let p: CameraNoiseProfile = yaml::parse(text, &file)?;
        let bad = |msg: String| yaml::invalid(&file, msg);
        if p.version != VERSION {
            return Err(bad(format!(
                "noise profile version {} (this build reads {VERSION})",
                p.version
            )));
        }
        if p.levels.is_empty() {
            return Err(bad("noise profile has no levels".into()));
        }
        for (i, l) in p.levels.iter().enumerate() {
            if !finite_nonneg(&l.a) || !finite_nonneg(&l.b) {
                return Err(bad(format!("level {i}: a and b must be finite and >= 0")));
            }
        }
        if let Some(f) = &p.iso_fit {
            if !finite_nonneg(&f.a_per_iso)
                || !finite_nonneg(&f.b0)
                || !finite_nonneg(&f.b_per_iso2)
            {
                return Err(bad("iso_fit: values must be finite and >= 0".into()));
            }
        }
        Ok(p)
    }

    /// YAML text of the profile (as `calibrate noise` writes it).
    pub fn to_yaml(&self) -> Result<String> {
        // serde-saphyr serialises; keep a header comment naming the model.
        let body = serde_saphyr::to_string(self)
            .map_err(|e| Error::invalid(format!("cannot serialise noise profile: {e}")))?;
        Ok(format!(
            "# rawgraph camera noise profile (see calibration/README.md):\n\
             # var(x) = a*x + b per colour (R, G, B) on the normalised signal x.\n{body}"
        ))
    }

    /// Whether the profile is for this camera.
    pub fn matches(&self, make: &str, model: &str) -> bool {
        let eq = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        eq(&self.make, make) && eq(&self.model, model)
    }

    /// The model for a frame at `iso` (None = unknown), and how it was
    /// chosen: the ISO fit when the ISO is known and a fit exists; else the
    /// level at that exact ISO; else the nearest level scaled to the ISO
    /// (a ∝ iso, b ∝ iso²); for an unknown ISO the median (by noise at
    /// mid-grey) of the levels with no ISO, else the median-ISO level.
    pub fn at_iso(&self, iso: Option<u32>) -> (NoiseProfile, String) {
        if let Some(iso) = iso.filter(|&i| i > 0) {
            if let Some(f) = &self.iso_fit {
                return (f.at(iso as f64), format!("iso fit at ISO {iso}"));
            }
            if let Some(l) = self.levels.iter().find(|l| l.iso == Some(iso)) {
                return (l.profile(), format!("level ISO {iso}"));
            }
            let near = self
                .levels
                .iter()
                .filter_map(|l| l.iso.filter(|&i| i > 0).map(|i| (i, l)))
                .min_by(|(i, _), (j, _)| {
                    let d = |k: u32| (k as f64 / iso as f64).ln().abs();
                    d(*i).total_cmp(&d(*j))
                });
            if let Some((li, l)) = near {
                let r = iso as f64 / li as f64;
                let mut p = l.profile();
                for c in 0..3 {
                    p.a[c] *= r;
                    p.b[c] *= r * r;
                }
                return (p, format!("level ISO {li} scaled to ISO {iso}"));
            }
        }
        let mut unknown: Vec<&Level> = self.levels.iter().filter(|l| l.iso.is_none()).collect();
        if !unknown.is_empty() {
            // The median of the unknown-ISO levels by noise at mid-grey.
            let g = |l: &Level| super::std_at(&l.profile(), 1, super::MID_GREY);
            unknown.sort_by(|p, q| g(p).total_cmp(&g(q)));
            let l = unknown[unknown.len() / 2];
            return (
                l.profile(),
                format!(
                    "level with unknown ISO ({} of {})",
                    l.frames.join(", "),
                    unknown.len()
                ),
            );
        }
        let mut isos: Vec<&Level> = self.levels.iter().collect();
        isos.sort_by_key(|l| l.iso);
        let l = isos[isos.len() / 2];
        (
            l.profile(),
            format!("median level (ISO {:?}), frame ISO unknown", l.iso),
        )
    }
}

/// Finds the profile for `make`/`model` among the `*.yaml` files of `dir`.
/// Ok(None) when none matches or the directory does not exist; files that
/// fail to parse are errors (a broken calibration must not pass silently).
pub fn find(dir: &Path, make: &str, model: &str) -> Result<Option<(PathBuf, CameraNoiseProfile)>> {
    if make.trim().is_empty() && model.trim().is_empty() {
        return Ok(None);
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    for p in paths {
        let prof = CameraNoiseProfile::load(&p)?;
        if prof.matches(make, model) {
            return Ok(Some((p, prof)));
        }
    }
    Ok(None)
}

/// Fits the ISO dependence to levels with a known ISO, per colour: a
/// through the origin against ISO, b as b0 + b2·ISO² (least squares with
/// relative weights, both clamped at 0). None with fewer than two distinct
/// ISOs.
pub fn fit_iso(levels: &[Level]) -> Option<IsoFit> {
    let pts: Vec<(f64, &Level)> = levels
        .iter()
        .filter_map(|l| l.iso.filter(|&i| i > 0).map(|i| (i as f64, l)))
        .collect();
    let mut distinct: Vec<f64> = pts.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 2 {
        return None;
    }
    let mut f = IsoFit {
        a_per_iso: [0.0; 3],
        b0: [0.0; 3],
        b_per_iso2: [0.0; 3],
    };
    for c in 0..3 {
        // a = k·iso, relative error weights 1/a².
        let (mut num, mut den) = (0.0, 0.0);
        for (iso, l) in &pts {
            let w = 1.0 / (l.a[c] * l.a[c]).max(1e-30);
            num += w * iso * l.a[c];
            den += w * iso * iso;
        }
        f.a_per_iso[c] = if den > 0.0 { (num / den).max(0.0) } else { 0.0 };
        // b = b0 + b2·u with u = iso², weights 1/b².
        let (mut s, mut su, mut sy, mut suu, mut suy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (iso, l) in &pts {
            let u = iso * iso;
            let w = 1.0 / (l.b[c] * l.b[c]).max(1e-30);
            s += w;
            su += w * u;
            sy += w * l.b[c];
            suu += w * u * u;
            suy += w * u * l.b[c];
        }
        let det = s * suu - su * su;
        let (mut b0, mut b2) = if det.abs() > 0.0 {
            ((suu * sy - su * suy) / det, (s * suy - su * sy) / det)
        } else {
            (sy / s.max(1e-300), 0.0)
        };
        if b2 < 0.0 {
            b2 = 0.0;
            b0 = sy / s;
        } else if b0 < 0.0 {
            b0 = 0.0;
            b2 = if suu > 0.0 { (suy / suu).max(0.0) } else { 0.0 };
        }
        f.b0[c] = b0;
        f.b_per_iso2[c] = b2;
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(iso: Option<u32>, a: f64, b: f64) -> Level {
        Level {
            iso,
            a: [a; 3],
            b: [b; 3],
            frames: vec![],
        }
    }

    #[test]
    fn iso_fit_recovers_physical_model() {
        let levels: Vec<Level> = [100u32, 400, 1600]
            .iter()
            .map(|&i| {
                let i_f = i as f64;
                level(Some(i), 2e-6 * i_f, 1e-7 + 1e-11 * i_f * i_f)
            })
            .collect();
        let f = fit_iso(&levels).unwrap();
        assert!((f.a_per_iso[1] - 2e-6).abs() < 1e-12);
        assert!((f.b0[1] - 1e-7).abs() < 1e-10, "{f:?}");
        assert!((f.b_per_iso2[1] - 1e-11).abs() < 1e-15);
        assert!(fit_iso(&levels[..1]).is_none());
    }

    #[test]
    fn yaml_roundtrip_and_lookup() {
        let mut p = CameraNoiseProfile {
            version: VERSION,
            make: "Huawei".into(),
            model: "P9".into(),
            notes: "test".into(),
            levels: vec![level(Some(100), 1e-4, 1e-6), level(Some(800), 8e-4, 2e-5)],
            iso_fit: None,
        };
        let text = p.to_yaml().unwrap();
        let q = CameraNoiseProfile::parse(&text, Path::new("t.yaml")).unwrap();
        assert_eq!(p, q);
        assert!(q.matches(" huawei", "p9 "));
        assert_eq!(q.at_iso(Some(800)).0.a, [8e-4; 3]);
        let (s, how) = q.at_iso(Some(200));
        assert!((s.a[0] - 2e-4).abs() < 1e-12, "{how}");
        assert_eq!(q.at_iso(None).0.a, [8e-4; 3]);
        p.iso_fit = fit_iso(&p.levels);
        assert!(p.at_iso(Some(400)).1.contains("fit"));
        // Errors: unknown field, bad values, wrong version.
        assert!(
            CameraNoiseProfile::parse(&text.replace("notes:", "nots:"), Path::new("t")).is_err()
        );
        assert!(CameraNoiseProfile::parse(
            "version: 2\nmake: a\nmodel: b\nlevels: []\n",
            Path::new("t")
        )
        .is_err());
    }
}
