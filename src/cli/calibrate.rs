//! `rawgraph calibrate noise IN... -o calibration/noise/NAME.yaml`: fits the
//! Poisson-Gaussian noise model of a camera (a, b per colour as functions
//! of ISO) from raw frames and writes a profile the `noise_estimate` stage
//! finds by make/model (format: calibration/README.md).
//!
//! Each frame is decoded (`input::open`, sidecars honoured), normalised by
//! the `black_level` stage and measured by the single-frame estimator
//! ([`crate::noise::raw_estimator`]). Frames of the same ISO are pooled:
//! their binned measurements are fitted by one line per colour. Frames that
//! record no ISO (and get no `--iso`) each make a level of their own. With two or
//! more distinct ISOs, a(iso) and b(iso) are fitted too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::InputArgs;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value};
use crate::graph;
use crate::input;
use crate::noise::profile::{self, CameraNoiseProfile, Level};
use crate::noise::raw_estimator::{self, BinPoint, EstimatorParams, RawNoiseFit};
use crate::noise::{std_at, MID_GREY};
use crate::raw::RawFrame;
use crate::stages::{self, RunCtx};

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
    /// One sidecar per input, in order (headerless dumps of different
    /// packings); overrides --sidecar.
    #[arg(long, num_args = 1..)]
    pub sidecars: Vec<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(a: CalibrateArgs) -> Result<i32> {
    match a.what {
        CalibrateWhat::Noise(n) => run_noise(n),
    }
}

/// Helper shared with `rawgraph noise`: runs the `black_level` stage on a
/// frame (as the `raw_source` value) and returns the normalised mosaic.
pub(crate) fn normalised_mosaic(frame: RawFrame) -> Result<Arc<Mosaic>> {
    let stage = stages::compile("black_level", serde_json::Value::Null).map_err(Error::invalid)?;
    let ctx = RunCtx { stage_id: "bl" };
    match stage.run_cpu(&ctx, vec![graph::exec::frame_to_value(frame)?])? {
        Value::Mosaic(m) => Ok(m),
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
    if !a.sidecars.is_empty() && a.sidecars.len() != a.inputs.len() {
        return Err(Error::invalid(format!(
            "--sidecars gives {} files for {} inputs (one per input, in order)",
            a.sidecars.len(),
            a.inputs.len()
        )));
    }
    for (k, path) in a.inputs.iter().enumerate() {
        let sidecar = a
            .sidecars
            .get(k)
            .map(PathBuf::as_path)
            .or(a.input.sidecar.as_deref());
        let frame = input::open(path, sidecar, &a.input.limits())?;
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
        let fit =
            raw_estimator::estimate(&mosaic.data, mosaic.width, mosaic.height, mosaic.cfa, &ep)
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
    // Frames that record no ISO (and got no --iso) may be at any gain: each
    // is a level of its own.
    let mut isos: Vec<Option<u32>> = frames.iter().filter_map(|f| f.iso.map(Some)).collect();
    isos.sort();
    isos.dedup();
    let mut groups: Vec<(Option<u32>, Vec<&Measured>)> = isos
        .into_iter()
        .map(|iso| (iso, frames.iter().filter(|f| f.iso == iso).collect()))
        .collect();
    groups.extend(
        frames
            .iter()
            .filter(|f| f.iso.is_none())
            .map(|f| (None, vec![f])),
    );
    let mut levels = Vec::new();
    for (iso, group) in groups {
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
