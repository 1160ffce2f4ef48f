//! `rawgraph calibrate noise IN... -o calibration/noise/NAME.yaml`: fits the
//! Poisson-Gaussian noise model of a camera (a, b per colour as functions
//! of ISO) from raw frames and writes a profile the `noise_estimate` stage
//! finds by make/model (format: calibration/README.md).
//!
//! Each frame is decoded (`input::open`, sidecars honoured), normalised by
//! the `black_level` stage and measured by the single-frame estimator
//! ([`crate::noise::raw_estimator`]). Frames of the same ISO (frames that
//! record no ISO count as one group, unless `--iso` gives one) are pooled:
//! their binned measurements are fitted by one line per colour. With two or
//! more distinct ISOs, a(iso) and b(iso) are fitted too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::InputArgs;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value};
use crate::graph::{self, Pipeline, RunOptions};
use crate::input;
use crate::noise::profile::{self, CameraNoiseProfile, Level};
use crate::noise::raw_estimator::{self, BinPoint, EstimatorParams, RawNoiseFit};
use crate::noise::{std_at, MID_GREY};
use crate::raw::RawFrame;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    #[command(subcommand)]
    pub what: CalibrateWhat,
}

#[derive(Debug, Subcommand)]
pub enum CalibrateWhat {
    /// Fit a camera noise profile (a, b vs ISO) from raw frames.
    Noise(NoiseCalibArgs),
}

#[derive(Debug, Args)]
pub struct NoiseCalibArgs {
    /// Raw files or headerless dumps, all of ONE camera.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Profile YAML to write (e.g. calibration/noise/huawei_p9.yaml).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Camera make (default: from the frames, which must agree).
    #[arg(long)]
    pub make: Option<String>,
    /// Camera model (default: from the frames).
    #[arg(long)]
    pub model: Option<String>,
    /// ISO of frames that record none.
    #[arg(long)]
    pub iso: Option<u32>,
    /// Free text stored in the profile (how far to trust it, conditions).
    #[arg(long, default_value = "")]
    pub notes: String,
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(a: CalibrateArgs) -> Result<i32> {
    match a.what {
        CalibrateWhat::Noise(n) => run_noise(n),
    }
}

/// Decodes-side helper shared with `rawgraph noise`: runs `raw_source ->
/// black_level` on a frame and returns the normalised mosaic.
pub(crate) fn normalised_mosaic(frame: RawFrame) -> Result<Arc<Mosaic>> {
    const NORMALISE: &str = "version: 1\nname: normalise\nstages:\n  \
        - { id: raw, op: raw_source }\n  - { id: bl, op: black_level }\noutputs: [bl]\n";
    let p = Pipeline::from_yaml(NORMALISE, "normalise")?;
    let out = graph::run(&p, frame, &RunOptions::default())?;
    match out.outputs.into_iter().next() {
        Some((_, Value::Mosaic(m))) => Ok(m),
        _ => Err(Error::invalid("black_level produced no mosaic")),
    }
}

/// One measured frame.
struct Measured {
    name: String,
    iso: Option<u32>,
    fit: RawNoiseFit,
}

fn print_fit(name: &str, iso: Option<u32>, fit: &RawNoiseFit) {
    let p = &fit.profile;
    let iso = iso.map_or("?".to_string(), |i| i.to_string());
    println!("{name}  (ISO {iso})");
    for (c, cn) in ["R", "G", "B"].iter().enumerate() {
        println!(
            "  {cn}: a {:.4e}  b {:.4e}  std@{MID_GREY} {:.5}  ({} blocks, {} bins)",
            p.a[c],
            p.b[c],
            std_at(p, c, MID_GREY),
            fit.blocks[c],
            fit.points[c].len()
        );
    }
    for n in &fit.notes {
        println!("  note: {n}");
    }
}

fn run_noise(a: NoiseCalibArgs) -> Result<i32> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    if let Some(out) = canon(&a.output) {
        if a.inputs.iter().any(|i| canon(i).as_ref() == Some(&out)) {
            return Err(Error::invalid(format!(
                "{}: the output is one of the inputs",
                a.output.display()
            )));
        }
    }
    let (mut make, mut model) = (a.make.clone(), a.model.clone());
    let mut frames = Vec::new();
    for path in &a.inputs {
        let frame = input::open(path, a.input.sidecar.as_deref(), &a.input.limits())?;
        let m = &frame.meta;
        let mismatch = |what: &str, want: &str, got: &str| {
            Error::invalid(format!(
                "{}: {what} '{got}' differs from '{want}' of the other frames (one camera per profile; \
                 pass --make/--model to override)",
                path.display()
            ))
        };
        match (&a.make, &make) {
            (None, Some(mk)) if !mk.eq_ignore_ascii_case(m.make.trim()) => {
                return Err(mismatch("make", mk, &m.make))
            }
            (None, None) => make = Some(m.make.trim().to_string()),
            _ => {}
        }
        match (&a.model, &model) {
            (None, Some(md)) if !md.eq_ignore_ascii_case(m.model.trim()) => {
                return Err(mismatch("model", md, &m.model))
            }
            (None, None) => model = Some(m.model.trim().to_string()),
            _ => {}
        }
        let iso = m.iso.or(a.iso);
        let mosaic = normalised_mosaic(frame)?;
        let ep = EstimatorParams {
            // Calibration is offline: use every block.
            max_blocks: usize::MAX,
            ..EstimatorParams::default()
        };
        let fit = raw_estimator::estimate(&mosaic.data, mosaic.width, mosaic.height, mosaic.cfa, &ep)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| path.display().to_string());
        print_fit(&name, iso, &fit);
        frames.push(Measured { name, iso, fit });
    }
    let (make, model) = (make.unwrap_or_default(), model.unwrap_or_default());
    if make.is_empty() && model.is_empty() {
        return Err(Error::invalid(
            "the frames name no camera: pass --make and --model",
        ));
    }

    // Pool frames per ISO and fit one line per colour over their bins.
    let mut isos: Vec<Option<u32>> = frames.iter().map(|f| f.iso).collect();
    isos.sort();
    isos.dedup();
    let mut levels = Vec::new();
    for iso in isos {
        let group: Vec<&Measured> = frames.iter().filter(|f| f.iso == iso).collect();
        let mut level = Level {
            iso,
            a: [0.0; 3],
            b: [0.0; 3],
            frames: group.iter().map(|f| f.name.clone()).collect(),
        };
        for c in 0..3 {
            let pts: Vec<BinPoint> = group.iter().flat_map(|f| f.fit.points[c].clone()).collect();
            let (ac, bc, _) = raw_estimator::fit_line(&pts);
            level.a[c] = ac;
            level.b[c] = bc;
        }
        if group.len() > 1 {
            let p = level.profile();
            println!(
                "pooled ISO {}: {} frames, std@{MID_GREY} R {:.5} G {:.5} B {:.5}",
                iso.map_or("?".into(), |i| i.to_string()),
                group.len(),
                std_at(&p, 0, MID_GREY),
                std_at(&p, 1, MID_GREY),
                std_at(&p, 2, MID_GREY)
            );
        }
        levels.push(level);
    }
    let prof = CameraNoiseProfile {
        version: profile::VERSION,
        make,
        model,
        notes: a.notes.clone(),
        iso_fit: profile::fit_iso(&levels),
        levels,
    };
    let text = prof.to_yaml()?;
    // Round-trip check before writing: what we write, the stage can read.
    CameraNoiseProfile::parse(&text, &a.output)?;
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::output::write_atomic(&a.output, |f| {
        use std::io::Write;
        f.write_all(text.as_bytes())
    })?;
    println!("wrote {}", a.output.display());
    Ok(0)
}
