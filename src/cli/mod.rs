//! The `rawgraph` command line: thin layers over the library.

pub mod bench;
pub mod calibrate;
pub mod compare;
pub mod completions;
pub mod convert;
pub mod demo;
pub mod eval;
pub mod exposure_eval;
pub mod faces;
pub mod info;
pub mod noise;
pub mod process;
pub mod synth;
pub mod tonemap;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::BackendChoice;
use crate::error::Result;
use crate::input::Limits;

/// rawgraph: raw captures through YAML stage graphs, timed per stage.
#[derive(Debug, Parser)]
#[command(name = "rawgraph", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One capture through several pipelines: a side-by-side PNG and the
    /// noise each leaves on a flat patch.
    Compare(compare::CompareArgs),
    /// Run a pipeline over raw files or folders of them.
    Process(process::ProcessArgs),
    /// Render the built-in synthetic scene and print the stage timings.
    Demo(demo::DemoArgs),
    /// Score a pipeline or demosaic op against ground truth.
    Eval(eval::EvalArgs),
    /// Detect faces in photos (SeetaFace built in, or YuNet ONNX).
    Faces(faces::FacesArgs),
    /// Semantic exposure acceptance: faces, CamVid skies and backlit
    /// scenes rendered from synthetic raws at -3..+3 EV.
    EvalExposure(exposure_eval::EvalExposureArgs),
    /// Sky mask IoU on CamVid val and stage time.
    EvalSky(exposure_eval::EvalSkyArgs),
    /// Print a raw file's decoded metadata.
    Info(info::InfoArgs),
    /// Time a pipeline per stage over repeated runs of one frame.
    Bench(bench::BenchArgs),
    /// Fit calibration data from frames (camera noise profiles).
    Calibrate(calibrate::CalibrateArgs),
    /// Print the noise level of images (AWGN sigma) or raw frames (a, b).
    Noise(noise::NoiseArgs),
    /// Unprocess sRGB images into synthetic raw DNGs with ground truth.
    Synth(synth::SynthArgs),
    /// Convert a sensor dump (with its sidecar) or raw file to DNG.
    Convert(convert::ConvertArgs),
    /// Learned tone mapping: training pairs and scores against the teacher.
    Tonemap(tonemap::TonemapArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
}

/// Options shared by commands that open inputs.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Sidecar YAML describing headerless sensor dumps (default: IN.yaml
    /// or IN.raw.yaml next to each input).
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// Refuse frames larger than this many megapixels.
    #[arg(long, default_value_t = crate::raw::DEFAULT_MAX_MEGAPIXELS)]
    pub max_megapixels: f64,
    /// Refuse input files larger than this many MiB.
    #[arg(long, default_value_t = 1024)]
    pub max_file_mb: u64,
    /// Backend for every stage (overrides the pipeline's).
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Run every stage on its own over whole frames (the reference path)
    /// instead of fusing chains of row stages into strip-scheduled
    /// segments; pixels are identical either way.
    #[arg(long)]
    pub no_fuse: bool,
}

impl InputArgs {
    /// The resource limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_megapixels: self.max_megapixels,
            max_file_bytes: self.max_file_mb.saturating_mul(1 << 20),
        }
    }
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    // rawler's camera table, built while the command starts; `process`
    // names its first input, which may not need it (a DNG of a camera the
    // table does not list).
    let first = match &cli.command {
        Command::Process(a) => Some(a.inputs.first().cloned()),
        Command::Info(a) => Some(Some(a.input.clone())),
        Command::Bench(_) | Command::Compare(_) => Some(None),
        _ => None,
    };
    if let Some(first) = first {
        crate::raw::decode::prewarm(first);
    }
    match cli.command {
        Command::Process(a) => process::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Faces(a) => faces::run(a),
        Command::EvalExposure(a) => exposure_eval::run_exposure(a),
        Command::EvalSky(a) => exposure_eval::run_sky(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Noise(a) => noise::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Tonemap(a) => tonemap::run(a),
        Command::Completions(a) => completions::run(a),
    }
}
