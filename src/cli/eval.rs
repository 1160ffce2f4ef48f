//! `rawgraph eval`: scores a pipeline (or a single demosaic op) against
//! ground truth over folders of images, per image and as a mean.
//!
//! Protocols:
//! - `srgb` (default): the literature's sRGB-domain demosaicking protocol
//!   ([`crate::eval::srgb_protocol`]), noise levels `--sigma`;
//! - `synth`: each sRGB image is unprocessed into a synthetic raw
//!   ([`crate::synth::unprocess`]) at every `--noise` level, run through the
//!   pipeline and compared with its ideal rendering;
//! - `dng`: a folder of synthetic DNGs written by `rawgraph synth`, each
//!   compared with its `NAME.ideal.png`.
//!
//! Metrics: CPSNR and SSIM (8-bit, `--crop` border), mean CIEDE2000, and
//! the per-stage host time. A failing image (unreadable, mismatched truth
//! size, pipeline error) is reported on its own row and the run goes on;
//! the exit code is 1 when anything failed.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::synth::UnprocessArgs;
use crate::error::{Error, Result};
use crate::eval::metrics::Rgb8;
use crate::eval::report::{write_report, ReportImage, ReportSummary, StageBar};
use crate::eval::srgb_protocol::{render_image, single_op_pipeline, ImageScore, SrgbProtocol};
use crate::eval::synth_protocol::{dng_files, render_dng, render_unprocessed};
use crate::eval::{data_dir, image_files};
use crate::graph::Pipeline;
use crate::raw::CfaPattern;
use crate::synth::unprocess::NoiseSpec;

/// Where the test inputs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Mosaic the 8-bit sRGB images directly (published demosaic tables).
    Srgb,
    /// Unprocess sRGB images into synthetic raws (Brooks et al. 2019).
    Synth,
    /// Synthetic DNGs with their NAME.ideal.png ground truth.
    Dng,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Folders of ground-truth images (a name such as `kodak24` is looked
    /// up in $RAWGRAPH_DATA, default ../shared/data).
    #[arg(required = true)]
    pub sets: Vec<String>,
    /// Evaluate a single op (`raw_source -> OP`), e.g. demosaic_menon.
    #[arg(long, conflicts_with = "pipeline")]
    pub op: Option<String>,
    /// Pipeline name or YAML file whose raw_source gets the test mosaic.
    #[arg(short, long)]
    pub pipeline: Option<String>,
    /// Input protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Srgb)]
    pub protocol: Protocol,
    /// Gaussian noise levels in 8-bit units, comma-separated (srgb).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub sigma: Vec<f32>,
    /// Noise levels of the synthetic raws, separated by ';' or spaces
    /// (synth): none, iso:N, iso:MIN-MAX, shot:S,read:R.
    #[arg(long, default_value = "none")]
    pub noise: String,
    #[command(flatten)]
    pub camera: UnprocessArgs,
    /// Border excluded from the metrics, pixels.
    #[arg(long, default_value_t = 10)]
    pub crop: usize,
    /// Bayer phase of the test mosaic (synth: also `random`).
    #[arg(long, default_value = "RGGB")]
    pub cfa: String,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hide the per-image rows.
    #[arg(long)]
    pub summary: bool,
    /// Write all results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write all results as CSV (one row per image, failures included).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write an HTML report (crops, error maps, stage latency chart) into
    /// this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Mean host time of one stage over the scored images.
#[derive(Debug, Clone, Serialize)]
pub struct StageMean {
    pub id: String,
    pub op: String,
    pub mean_ms: f64,
}

/// Mean scores of one set at one noise level.
#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    pub set: String,
    /// Noise level label ("sigma=5", "iso800", "file").
    pub level: String,
    /// Gaussian sigma of the srgb protocol.
    pub sigma: Option<f32>,
    pub images: usize,
    pub failed: usize,
    pub mean_cpsnr: f64,
    pub mean_ssim: f64,
    pub mean_ciede2000: f64,
    /// Mean over the images of each channel's mean ratio output / truth
    /// (R, G, B): the set's tint.
    pub channel_ratio: [f64; 3],
    /// `channel_ratio`'s largest deviation from 1, percent.
    pub tint_pct: f64,
    /// The largest per-image tint (largest channel deviation), percent.
    pub worst_image_tint_pct: f64,
    pub mean_ms: f64,
    pub stages: Vec<StageMean>,
}

/// One scored image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub set: String,
    pub level: String,
    pub sigma: Option<f32>,
    #[serde(flatten)]
    pub score: ImageScore,
}

/// One image that could not be scored.
#[derive(Debug, Clone, Serialize)]
pub struct FailedRow {
    pub set: String,
    pub level: String,
    pub image: String,
    pub error: String,
}

/// Everything `eval` measured.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub method: String,
    pub protocol: Protocol,
    pub crop: usize,
    pub seed: u64,
    pub summaries: Vec<SetSummary>,
    pub images: Vec<ImageRow>,
    pub failures: Vec<FailedRow>,
    pub errors: Vec<String>,
}

fn resolve_set(s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.is_dir() {
        p
    } else {
        data_dir().join(s)
    }
}

/// One evaluation condition of a set.
#[derive(Debug, Clone)]
enum Level {
    Sigma(f32),
    Noise(NoiseSpec),
    File,
}

impl Level {
    fn label(&self) -> String {
        match self {
            Level::Sigma(s) => format!("sigma={s}"),
            Level::Noise(n) => n.label(),
            Level::File => "file".into(),
        }
    }

    fn sigma(&self) -> Option<f32> {
        match self {
            Level::Sigma(s) => Some(*s),
            _ => None,
        }
    }
}

fn levels(a: &EvalArgs) -> Result<Vec<Level>> {
    Ok(match a.protocol {
        Protocol::Srgb => {
            for &s in &a.sigma {
                if !(0.0..=255.0).contains(&s) {
                    return Err(Error::invalid(format!("--sigma {s} is outside [0, 255]")));
                }
            }
            a.sigma.iter().map(|&s| Level::Sigma(s)).collect()
        }
        Protocol::Synth => a
            .noise
            .split([';', ' '])
            .filter(|t| !t.trim().is_empty())
            .map(|t| NoiseSpec::parse(t).map(Level::Noise))
            .collect::<Result<_>>()?,
        Protocol::Dng => vec![Level::File],
    })
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Mean host time per stage id (in pipeline order, file decoding first as
/// "(decode)" when the protocol decodes files) over `scores`.
pub fn stage_means<'a>(scores: impl Iterator<Item = &'a ImageScore> + Clone) -> Vec<StageMean> {
    let mut out: Vec<StageMean> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for s in scores {
        let decode = s
            .timings
            .decode_ms
            .map(|ms| crate::graph::timing::StageTiming {
                id: "(decode)".into(),
                op: "decode".into(),
                backend: "cpu".into(),
                host_ms: ms,
                device_ms: None,
                megapixels: 0.0,
                fell_back: false,
                fused: None,
            });
        for t in decode.iter().chain(&s.timings.stages) {
            match out.iter().position(|m| m.id == t.id) {
                Some(i) => {
                    out[i].mean_ms += t.host_ms;
                    counts[i] += 1;
                }
                None => {
                    out.push(StageMean {
                        id: t.id.clone(),
                        op: t.op.clone(),
                        mean_ms: t.host_ms,
                    });
                    counts.push(1);
                }
            }
        }
    }
    for (m, c) in out.iter_mut().zip(counts) {
        m.mean_ms /= c as f64;
    }
    out
}

/// The sRGB protocol feeds the pipeline an already normalised mosaic
/// (black level subtracted, 1.0 = white, white-balanced): a pipeline that
/// starts from raw DN would fail on every image with the same error, so it
/// is refused once, before any image, with the reason and the way out.
fn srgb_protocol_accepts(pipeline: &Pipeline) -> Result<()> {
    match pipeline.nodes.iter().find(|n| n.op == "black_level") {
        Some(n) => Err(Error::invalid(format!(
            "pipeline '{}' starts from raw sensor values (stage '{}' is black_level), but the \
             srgb protocol feeds a normalised, white-balanced mosaic: use --protocol synth for \
             whole raw pipelines, or --op/a pipeline of raw_source -> demosaic for the srgb protocol",
            pipeline.name, n.id
        ))),
        None => Ok(()),
    }
}

fn file_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| p.to_string())
}

/// Runs the evaluation and returns the report (the CLI prints it) plus the
/// report crops when `keep_crops`.
pub fn evaluate_with_crops(
    a: &EvalArgs,
    keep_crops: bool,
) -> Result<(EvalReport, Vec<ReportImage>)> {
    let (pipeline, method) = match (&a.op, &a.pipeline) {
        (Some(op), None) => (single_op_pipeline(op)?, op.clone()),
        (None, Some(p)) => {
            let pl = Pipeline::resolve(p)?;
            let name = pl.name.clone();
            (pl, name)
        }
        _ => return Err(Error::invalid("eval needs --op OP or --pipeline P")),
    };
    let levels = levels(a)?;
    let srgb_cfa = CfaPattern::parse(&a.cfa);
    if a.protocol == Protocol::Srgb && srgb_cfa.is_none() {
        return Err(Error::invalid(format!(
            "--cfa '{}' is not RGGB, BGGR, GRBG or GBRG",
            a.cfa
        )));
    }
    if a.protocol == Protocol::Srgb {
        srgb_protocol_accepts(&pipeline)?;
    }
    // Validate the camera options once, before any image.
    if a.protocol == Protocol::Synth {
        a.camera.config(&a.cfa, a.seed, NoiseSpec::None)?;
    }
    let mut report = EvalReport {
        method,
        protocol: a.protocol,
        crop: a.crop,
        seed: a.seed,
        summaries: Vec::new(),
        images: Vec::new(),
        failures: Vec::new(),
        errors: Vec::new(),
    };
    let mut crops = Vec::new();
    let limits = crate::input::Limits::default();
    for set in &a.sets {
        let dir = resolve_set(set);
        let files = match a.protocol {
            Protocol::Dng => dng_files(&dir),
            _ => image_files(&dir).map(|v| {
                v.into_iter()
                    .filter(|p| !p.to_string_lossy().ends_with(".ideal.png"))
                    .collect()
            }),
        };
        let files = match files {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => {
                report
                    .errors
                    .push(format!("{}: no images found", dir.display()));
                continue;
            }
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        for level in &levels {
            let first = report.images.len();
            let mut failed = 0;
            for f in &files {
                let res: Result<(ImageScore, Rgb8, Rgb8)> = match level {
                    Level::Sigma(sigma) => {
                        let proto = SrgbProtocol {
                            cfa: srgb_cfa.unwrap_or(CfaPattern::Rggb),
                            sigma: *sigma,
                            crop: a.crop,
                            seed: a.seed,
                        };
                        render_image(f, &pipeline, &proto)
                    }
                    Level::Noise(noise) => a
                        .camera
                        .config(&a.cfa, a.seed, *noise)
                        .and_then(|cfg| render_unprocessed(f, &pipeline, &cfg, a.crop)),
                    Level::File => render_dng(f, &pipeline, a.crop, &limits),
                };
                match res {
                    Ok((score, truth, got)) => {
                        if keep_crops {
                            crops.push(ReportImage::new(
                                set,
                                &level.label(),
                                &file_name(&score.image),
                                score.cpsnr,
                                score.ssim,
                                score.ciede2000,
                                &truth,
                                &got,
                            )?);
                        }
                        report.images.push(ImageRow {
                            set: set.clone(),
                            level: level.label(),
                            sigma: level.sigma(),
                            score,
                        });
                    }
                    Err(e) => {
                        failed += 1;
                        let shown = f.display().to_string();
                        let msg = e.to_string();
                        let msg = if msg.contains(&shown) {
                            msg
                        } else {
                            format!("{shown}: {msg}")
                        };
                        report.failures.push(FailedRow {
                            set: set.clone(),
                            level: level.label(),
                            image: shown,
                            error: msg.clone(),
                        });
                        report.errors.push(msg);
                    }
                }
            }
            let rows = &report.images[first..];
            let channel_ratio: [f64; 3] =
                std::array::from_fn(|c| mean(rows.iter().map(|r| r.score.channel_ratio[c])));
            report.summaries.push(SetSummary {
                set: set.clone(),
                level: level.label(),
                sigma: level.sigma(),
                images: rows.len(),
                failed,
                mean_cpsnr: mean(rows.iter().map(|r| r.score.cpsnr)),
                mean_ssim: mean(rows.iter().map(|r| r.score.ssim)),
                mean_ciede2000: mean(rows.iter().map(|r| r.score.ciede2000)),
                channel_ratio,
                tint_pct: crate::eval::metrics::tint_pct(channel_ratio),
                worst_image_tint_pct: rows
                    .iter()
                    .map(|r| crate::eval::metrics::tint_pct(r.score.channel_ratio))
                    .fold(0.0, f64::max),
                mean_ms: mean(rows.iter().map(|r| r.score.timings.total_ms)),
                stages: stage_means(rows.iter().map(|r| &r.score)),
            });
        }
    }
    Ok((report, crops))
}

/// Runs the evaluation and returns the report (the CLI prints it).
pub fn evaluate(a: &EvalArgs) -> Result<EvalReport> {
    evaluate_with_crops(a, false).map(|r| r.0)
}

/// The per-image CSV (failures included, one column per stage).
pub fn csv(report: &EvalReport) -> String {
    let stages = stage_means(report.images.iter().map(|r| &r.score));
    let mut s = String::from("set,level,image,status,cpsnr,ssim,ciede2000,total_ms");
    for st in &stages {
        s += &format!(",ms_{}", st.id.trim_matches(['(', ')']));
    }
    s += ",error\n";
    let q = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    for r in &report.images {
        s += &format!(
            "{},{},{},ok,{:.4},{:.5},{:.4},{:.2}",
            q(&r.set),
            q(&r.level),
            q(&r.score.image),
            r.score.cpsnr,
            r.score.ssim,
            r.score.ciede2000,
            r.score.timings.total_ms
        );
        for st in &stages {
            let ms = if st.id == "(decode)" {
                r.score.timings.decode_ms
            } else {
                r.score
                    .timings
                    .stages
                    .iter()
                    .find(|t| t.id == st.id)
                    .map(|t| t.host_ms)
            };
            let ms = ms.map(|v| format!("{v:.3}")).unwrap_or_default();
            s += &format!(",{ms}");
        }
        s += ",\n";
    }
    for f in &report.failures {
        s += &format!(
            "{},{},{},failed,,,,{}{}\n",
            q(&f.set),
            q(&f.level),
            q(&f.image),
            ",".repeat(stages.len()),
            q(&f.error)
        );
    }
    s
}

pub fn run(a: EvalArgs) -> Result<i32> {
    let (report, crops) = evaluate_with_crops(&a, a.report.is_some())?;
    if !a.summary {
        println!(
            "{:<12} {:<10} {:<36} {:>9} {:>8} {:>8} {:>9}",
            "set", "level", "image", "CPSNR dB", "SSIM", "dE00", "ms"
        );
        for r in &report.images {
            let s = &r.score;
            println!(
                "{:<12} {:<10} {:<36} {:>9.3} {:>8.4} {:>8.3} {:>9.1}",
                r.set,
                r.level,
                file_name(&s.image),
                s.cpsnr,
                s.ssim,
                s.ciede2000,
                s.timings.total_ms
            );
        }
        for f in &report.failures {
            println!(
                "{:<12} {:<10} {:<36} FAILED",
                f.set,
                f.level,
                file_name(&f.image)
            );
        }
    }
    println!(
        "method: {} (protocol {:?}, {}-px border, seed {})",
        report.method, report.protocol, report.crop, report.seed
    );
    println!(
        "{:<12} {:<10} {:>7} {:>6} {:>9} {:>8} {:>8} {:>7} {:>9}",
        "set", "level", "images", "failed", "CPSNR dB", "SSIM", "dE00", "tint %", "ms/img"
    );
    for s in &report.summaries {
        println!(
            "{:<12} {:<10} {:>7} {:>6} {:>9.3} {:>8.4} {:>8.3} {:>7.2} {:>9.1}",
            s.set,
            s.level,
            s.images,
            s.failed,
            s.mean_cpsnr,
            s.mean_ssim,
            s.mean_ciede2000,
            s.tint_pct,
            s.mean_ms
        );
    }
    let stages = stage_means(report.images.iter().map(|r| &r.score));
    if !stages.is_empty() {
        println!("mean host time per stage:");
        for st in &stages {
            println!("  {:<14} {:<26} {:>9.2} ms", st.id, st.op, st.mean_ms);
        }
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if let Some(p) = &a.json {
        let s = serde_json::to_string_pretty(&crate::output::Versioned::new(&report))
            .map_err(|e| Error::invalid(e.to_string()))?;
        crate::output::write_atomic(p, |f| std::io::Write::write_all(f, s.as_bytes()))?;
    }
    if let Some(p) = &a.csv {
        let s = csv(&report);
        crate::output::write_atomic(p, |f| std::io::Write::write_all(f, s.as_bytes()))?;
    }
    if let Some(dir) = &a.report {
        let summaries: Vec<ReportSummary> = report
            .summaries
            .iter()
            .map(|s| ReportSummary {
                set: s.set.clone(),
                level: s.level.clone(),
                images: s.images,
                failed: s.failed,
                cpsnr: s.mean_cpsnr,
                ssim: s.mean_ssim,
                ciede2000: s.mean_ciede2000,
            })
            .collect();
        let bars: Vec<StageBar> = stages
            .iter()
            .map(|s| StageBar {
                id: s.id.clone(),
                op: s.op.clone(),
                ms: s.mean_ms,
            })
            .collect();
        let title = format!(
            "rawgraph eval: {} ({:?} protocol)",
            report.method, report.protocol
        );
        let page = write_report(dir, &title, &summaries, &bars, &crops, &report.errors)?;
        println!("report: {}", page.display());
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}
