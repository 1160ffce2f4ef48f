//! `rawgraph demo`: renders the built-in synthetic scene with a pipeline.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::graph::{self, Pipeline, RunOptions};
use crate::output::{write_image, OutFormat};
use crate::synth::{demo_scene, mosaic_scene, CaptureParams};
use crate::Value;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output image.
    #[arg(short, long, default_value = "rawgraph-demo.png")]
    pub output: PathBuf,
    /// Shipped pipeline name (any file stem in pipelines/: default, fast,
    /// auto, learned, hdrnet ...) or a YAML file.
    #[arg(short, long, default_value = "default")]
    pub pipeline: String,
    /// Scene width in pixels.
    #[arg(long, default_value_t = 1920)]
    pub width: usize,
    /// Scene height in pixels.
    #[arg(long, default_value_t = 1280)]
    pub height: usize,
}

pub fn run(a: DemoArgs) -> Result<i32> {
    if a.width < 16 || a.height < 16 || a.width * a.height > 100_000_000 {
        return Err(crate::Error::invalid(
            "demo size must be between 16x16 and 100 MP",
        ));
    }
    let fmt = OutFormat::for_path(&a.output, None)?;
    let pipeline = Pipeline::resolve(&a.pipeline)?;
    let scene = demo_scene(a.width, a.height);
    let frame = mosaic_scene(&scene, &CaptureParams::default(), "demo scene")?;
    let out = graph::run(&pipeline, frame, &RunOptions::default())?;
    if let Some((_, Value::Image(img))) = out.outputs.first() {
        write_image(img, &a.output, fmt)?;
    }
    println!(
        "rendered the {}x{} synthetic scene with pipeline '{}' -> {}",
        a.width,
        a.height,
        pipeline.name,
        a.output.display()
    );
    print!("{}", out.timings.table());
    Ok(0)
}
