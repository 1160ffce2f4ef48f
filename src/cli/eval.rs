//! `rawgraph eval`: scores a pipeline (or a single demosaic op) against
//! ground truth over folders of images, per image and as a mean.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::eval::srgb_protocol::{score_image, single_op_pipeline, ImageScore, SrgbProtocol};
use crate::eval::{data_dir, image_files};
use crate::graph::Pipeline;
use crate::raw::CfaPattern;

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
    /// Gaussian noise levels in 8-bit units, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub sigma: Vec<f32>,
    /// Border excluded from the metrics, pixels.
    #[arg(long, default_value_t = 10)]
    pub crop: usize,
    /// Bayer phase of the test mosaic.
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
    /// Write all results as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// Mean scores of one set at one noise level.
#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    pub set: String,
    pub sigma: f32,
    pub images: usize,
    pub failed: usize,
    pub mean_cpsnr: f64,
    pub mean_ssim: f64,
    pub mean_ms: f64,
}

/// Everything `eval` measured.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub method: String,
    pub protocol: &'static str,
    pub crop: usize,
    pub summaries: Vec<SetSummary>,
    pub images: Vec<(String, f32, ImageScore)>,
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

/// Runs the evaluation and returns the report (the CLI prints it).
pub fn evaluate(a: &EvalArgs) -> Result<EvalReport> {
    let (pipeline, method) = match (&a.op, &a.pipeline) {
        (Some(op), None) => (single_op_pipeline(op)?, op.clone()),
        (None, Some(p)) => {
            let pl = Pipeline::resolve(p)?;
            let name = pl.name.clone();
            (pl, name)
        }
        _ => return Err(Error::invalid("eval needs --op OP or --pipeline P")),
    };
    let cfa = CfaPattern::parse(&a.cfa).ok_or_else(|| {
        Error::invalid(format!("--cfa '{}' is not RGGB, BGGR, GRBG or GBRG", a.cfa))
    })?;
    let mut report = EvalReport {
        method,
        protocol: "srgb",
        crop: a.crop,
        summaries: Vec::new(),
        images: Vec::new(),
        errors: Vec::new(),
    };
    for set in &a.sets {
        let dir = resolve_set(set);
        let files = image_files(&dir)?;
        if files.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no images found",
                dir.display()
            )));
        }
        for &sigma in &a.sigma {
            if !(0.0..=255.0).contains(&sigma) {
                return Err(Error::invalid(format!(
                    "--sigma {sigma} is outside [0, 255]"
                )));
            }
            let proto = SrgbProtocol {
                cfa,
                sigma,
                crop: a.crop,
                seed: a.seed,
            };
            let mut scores = Vec::new();
            let mut failed = 0;
            for f in &files {
                match score_image(f, &pipeline, &proto) {
                    Ok(s) => scores.push(s),
                    Err(e) => {
                        failed += 1;
                        report.errors.push(e.to_string());
                    }
                }
            }
            let n = scores.len().max(1) as f64;
            report.summaries.push(SetSummary {
                set: set.clone(),
                sigma,
                images: scores.len(),
                failed,
                mean_cpsnr: scores.iter().map(|s| s.cpsnr).sum::<f64>() / n,
                mean_ssim: scores.iter().map(|s| s.ssim).sum::<f64>() / n,
                mean_ms: scores.iter().map(|s| s.timings.total_ms).sum::<f64>() / n,
            });
            report
                .images
                .extend(scores.into_iter().map(|s| (set.clone(), sigma, s)));
        }
    }
    Ok(report)
}

pub fn run(a: EvalArgs) -> Result<i32> {
    let report = evaluate(&a)?;
    if !a.summary {
        println!(
            "{:<12} {:>6} {:<40} {:>9} {:>8} {:>9}",
            "set", "sigma", "image", "CPSNR dB", "SSIM", "ms"
        );
        for (set, sigma, s) in &report.images {
            let name = std::path::Path::new(&s.image)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            println!(
                "{:<12} {:>6.1} {:<40} {:>9.3} {:>8.4} {:>9.1}",
                set, sigma, name, s.cpsnr, s.ssim, s.timings.total_ms
            );
        }
    }
    println!(
        "method: {} (protocol {}, {}-px border)",
        report.method, report.protocol, report.crop
    );
    println!(
        "{:<12} {:>6} {:>7} {:>9} {:>8} {:>9}",
        "set", "sigma", "images", "CPSNR dB", "SSIM", "ms/img"
    );
    for s in &report.summaries {
        println!(
            "{:<12} {:>6.1} {:>7} {:>9.3} {:>8.4} {:>9.1}",
            s.set, s.sigma, s.images, s.mean_cpsnr, s.mean_ssim, s.mean_ms
        );
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if let Some(p) = &a.json {
        let s = serde_json::to_string_pretty(&report).map_err(|e| Error::invalid(e.to_string()))?;
        crate::output::write_atomic(p, |f| std::io::Write::write_all(f, s.as_bytes()))?;
    }
    if let Some(p) = &a.csv {
        let mut s = String::from("set,sigma,image,cpsnr,ssim,ms\n");
        for (set, sigma, r) in &report.images {
            s += &format!(
                "{set},{sigma},{},{:.4},{:.5},{:.2}\n",
                r.image, r.cpsnr, r.ssim, r.timings.total_ms
            );
        }
        crate::output::write_atomic(p, |f| std::io::Write::write_all(f, s.as_bytes()))?;
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}
