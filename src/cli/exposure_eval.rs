//! `rawgraph eval-exposure` and `rawgraph eval-sky`: the semantic exposure
//! acceptance protocol ([`crate::eval::exposure`]) on the shared data.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::eval::exposure;
use crate::stages::exposure::tuning::Tuning;

#[derive(Debug, Args)]
pub struct EvalExposureArgs {
    /// Shared data folder (default $RAWGRAPH_DATA or ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use every n-th CamVid val frame.
    #[arg(long, default_value_t = 5)]
    pub camvid_step: usize,
    /// Meter tuning file (default: the shipped one).
    #[arg(long)]
    pub tuning: Option<PathBuf>,
    /// Write every case and the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalSkyArgs {
    /// Shared data folder (default $RAWGRAPH_DATA or ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// sky_segment models to score: learned, classical or .safetensors paths.
    #[arg(long, default_values_t = ["learned".to_string(), "classical".to_string()])]
    pub model: Vec<String>,
    /// Use every n-th CamVid val frame.
    #[arg(long, default_value_t = 1)]
    pub step: usize,
}

pub fn run_exposure(a: EvalExposureArgs) -> Result<i32> {
    let tuning = match &a.tuning {
        Some(p) => Tuning::load(p)?,
        None => Tuning::shipped()?,
    };
    let o = exposure::Options {
        data: a.data.unwrap_or_else(crate::eval::data_dir),
        camvid_step: a.camvid_step,
        tuning,
    };
    let (cases, sums) = exposure::run(&o)?;
    print!("{}", exposure::table(&sums));
    if let Some(j) = &a.json {
        let v = serde_json::json!({
            "schema_version": crate::output::JSON_SCHEMA_VERSION,
            "summary": sums,
            "cases": cases,
        });
        let s = serde_json::to_string_pretty(&v).map_err(|e| Error::invalid(e.to_string()))?;
        crate::output::write_atomic(j, |w| std::io::Write::write_all(w, s.as_bytes()))?;
    }
    Ok(0)
}

pub fn run_sky(a: EvalSkyArgs) -> Result<i32> {
    let data = a.data.unwrap_or_else(crate::eval::data_dir);
    println!("| model | CamVid val images | sky IoU | ms / frame (480x360) |\n|---|---|---|---|");
    for m in &a.model {
        let s = exposure::sky_iou(&data, m, a.step)?;
        println!(
            "| {} | {} | {:.4} | {:.1} |",
            s.model, s.images, s.iou, s.ms_per_frame
        );
    }
    Ok(0)
}
