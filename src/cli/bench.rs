//! `rawgraph bench`: per-stage latency over repeated runs of one frame
//! (decode excluded): median, p95 and min per stage, plus total and MP/s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::InputArgs;
use crate::error::{Error, Result};
use crate::frame::quantize::Depth;
use crate::graph::{self, Pipeline, RunOptions};
use crate::input;
use crate::raw::RawFrame;
use crate::synth::{demo_scene, mosaic_scene, CaptureParams};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Raw file or dump (omit with --synthetic).
    pub input: Option<PathBuf>,
    /// Use the built-in scene at WIDTHxHEIGHT (e.g. 4000x3000) instead of a file.
    #[arg(long)]
    pub synthetic: Option<String>,
    /// Shipped pipeline name (any file stem in pipelines/: default, fast,
    /// auto, learned, hdrnet ...) or a YAML file.
    #[arg(short, long, default_value = "default")]
    pub pipeline: String,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// What the pipeline's image outputs are delivered as: 8-bit samples
    /// (what `process` writes to PNG or JPEG; the last fused segment
    /// quantises as it goes), 16-bit (16-bit PNG / TIFF), or planar f32
    /// (the API's float frames).
    #[arg(long, value_enum, default_value_t = Deliver::U8)]
    pub deliver: Deliver,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub inputs: InputArgs,
}

/// `bench --deliver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Deliver {
    U8,
    U16,
    F32,
}

impl Deliver {
    fn depth(self) -> Option<Depth> {
        match self {
            Deliver::U8 => Some(Depth::U8),
            Deliver::U16 => Some(Depth::U16),
            Deliver::F32 => None,
        }
    }
}

/// Summary statistics of one stage, milliseconds.
#[derive(Debug, Serialize)]
pub struct StageStats {
    pub id: String,
    pub op: String,
    /// "cpu", "cuda", or "cpu*" when `auto` (or a run-wide `cuda`) fell
    /// back to the CPU.
    pub backend: String,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub min_ms: f64,
    /// Median device time (CUDA events) of CUDA stages and copies.
    pub device_median_ms: Option<f64>,
    /// The fused segment the stage ran in (its times are then its share
    /// of the segment, see `StageTiming::fused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<String>,
}

/// The bench result.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub schema_version: crate::output::SchemaVersion,
    pub pipeline: String,
    pub source: String,
    pub width: usize,
    pub height: usize,
    pub iters: usize,
    /// What the image outputs were delivered as (`--deliver`).
    pub deliver: Deliver,
    pub stages: Vec<StageStats>,
    pub total_median_ms: f64,
    pub total_p95_ms: f64,
    pub total_min_ms: f64,
    pub megapixels_per_s: f64,
    /// Why stages marked `cpu*` fell back to the CPU (see
    /// `Timings::fallback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// With `--no-fuse`: the same frame through the unfused reference
    /// path (every stage on its own), measured right after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfused: Option<Box<BenchReport>>,
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    let p95 = v[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1];
    (med, p95, v[0])
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::invalid(format!(
            "--synthetic '{s}': expected WIDTHxHEIGHT, e.g. 4000x3000"
        ))
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (usize, usize) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if w < 16 || h < 16 || w * h > 200_000_000 {
        return Err(bad());
    }
    Ok((w, h))
}

pub fn run(a: BenchArgs) -> Result<i32> {
    let pipeline = Pipeline::resolve(&a.pipeline)?;
    let frame = match (&a.input, &a.synthetic) {
        (Some(p), None) => input::open(p, a.inputs.sidecar.as_deref(), &a.inputs.limits())?,
        (None, Some(s)) => {
            let (w, h) = parse_size(s)?;
            mosaic_scene(
                &demo_scene(w, h),
                &CaptureParams::default(),
                &format!("synthetic {w}x{h}"),
            )?
        }
        _ => {
            return Err(Error::invalid(
                "bench needs exactly one of INPUT or --synthetic WxH",
            ))
        }
    };
    let opts = RunOptions {
        backend: a.inputs.backend,
        no_fuse: false,
        deliver: a.deliver.depth(),
        stream: None,
    };
    let mut report = bench_frame(&pipeline, &frame, &opts, a.warmup, a.iters)?;
    if a.inputs.no_fuse {
        let reference = RunOptions {
            no_fuse: true,
            ..opts
        };
        report.unfused = Some(Box::new(bench_frame(
            &pipeline, &frame, &reference, a.warmup, a.iters,
        )?));
    }
    let (w, h) = (report.width, report.height);
    let tm = report.total_median_ms;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Error::invalid(e.to_string()))?
        );
    } else {
        println!(
            "pipeline '{}' on {} ({}x{}, {:.1} MP), {} iterations after {} warm-up, output delivered as {}",
            report.pipeline,
            report.source,
            w,
            h,
            (w * h) as f64 / 1e6,
            a.iters,
            a.warmup,
            match a.deliver {
                Deliver::U8 => "8-bit samples",
                Deliver::U16 => "16-bit samples",
                Deliver::F32 => "planar f32",
            }
        );
        print_table(&report);
        if let Some(u) = &report.unfused {
            println!("\nunfused (--no-fuse, every stage on its own over whole frames):");
            print_table(u);
            println!(
                "fused {:.2} ms vs unfused {:.2} ms (median): {:.2}x",
                tm,
                u.total_median_ms,
                u.total_median_ms / tm.max(1e-9)
            );
        }
        if report.stages.iter().any(|s| s.backend.ends_with('*')) {
            println!(
                "* fell back to the CPU: {}",
                report
                    .fallback
                    .as_deref()
                    .unwrap_or("no CUDA device or no kernel for the op")
            );
        }
    }
    Ok(0)
}

/// Prints one report's per-stage table and totals.
fn print_table(report: &BenchReport) {
    let (tm, tp, tmin) = (
        report.total_median_ms,
        report.total_p95_ms,
        report.total_min_ms,
    );
    println!(
        "{:<14} {:<22} {:<7} {:>10} {:>10} {:>10} {:>10}",
        "stage", "op", "backend", "median ms", "p95 ms", "min ms", "device ms"
    );
    for s in &report.stages {
        let dev = s
            .device_median_ms
            .map(|d| format!("{d:.3}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<22} {:<7} {:>10.2} {:>10.2} {:>10.2} {:>10}",
            s.id, s.op, s.backend, s.median_ms, s.p95_ms, s.min_ms, dev
        );
    }
    println!(
        "{:<14} {:<22} {:<7} {:>10.2} {:>10.2} {:>10.2}   {:.1} MP/s",
        "total", "", "", tm, tp, tmin, report.megapixels_per_s
    );
    let mut segments: Vec<&str> = report
        .stages
        .iter()
        .filter_map(|s| s.fused.as_deref())
        .collect();
    segments.dedup();
    if !segments.is_empty() {
        println!(
            "fused segments (one strip pass each; member times are shares): {}",
            segments.join(", ")
        );
    }
}

/// Runs `pipeline` on copies of `frame`: `warmup` untimed runs, then
/// `iters` timed ones; per-stage and total statistics.
pub fn bench_frame(
    pipeline: &Pipeline,
    frame: &RawFrame,
    opts: &RunOptions,
    warmup: usize,
    iters: usize,
) -> Result<BenchReport> {
    if iters == 0 {
        return Err(Error::invalid("--iters must be at least 1"));
    }
    let (w, h) = (frame.meta.width, frame.meta.height);
    type Row = (String, String, String, Vec<f64>, Vec<f64>, Option<String>);
    let mut per_stage: BTreeMap<usize, Row> = BTreeMap::new();
    let mut totals = Vec::new();
    let mut fallback = None;
    for it in 0..warmup + iters {
        let out = graph::run(pipeline, frame.clone(), opts)?;
        if it < warmup {
            continue;
        }
        fallback = out.timings.fallback;
        totals.push(out.timings.total_ms);
        for (k, t) in out.timings.stages.iter().enumerate() {
            let row = per_stage.entry(k).or_insert_with(|| {
                let backend = if t.fell_back {
                    format!("{}*", t.backend)
                } else {
                    t.backend.clone()
                };
                (
                    t.id.clone(),
                    t.op.clone(),
                    backend,
                    Vec::new(),
                    Vec::new(),
                    t.fused.clone(),
                )
            });
            row.3.push(t.host_ms);
            row.4.extend(t.device_ms);
        }
    }
    let stages: Vec<StageStats> = per_stage
        .into_values()
        .map(|(id, op, backend, mut v, mut dev, fused)| {
            let (median_ms, p95_ms, min_ms) = stats(&mut v);
            let device_median_ms = (!dev.is_empty()).then(|| stats(&mut dev).0);
            StageStats {
                id,
                op,
                backend,
                median_ms,
                p95_ms,
                min_ms,
                device_median_ms,
                fused,
            }
        })
        .collect();
    let (tm, tp, tmin) = stats(&mut totals);
    let report = BenchReport {
        schema_version: crate::output::SchemaVersion,
        pipeline: pipeline.name.clone(),
        source: frame.meta.source.clone(),
        width: w,
        height: h,
        iters,
        deliver: match opts.deliver {
            Some(Depth::U8) => Deliver::U8,
            Some(Depth::U16) => Deliver::U16,
            None => Deliver::F32,
        },
        stages,
        total_median_ms: tm,
        total_p95_ms: tp,
        total_min_ms: tmin,
        megapixels_per_s: (w * h) as f64 / 1e6 / (tm / 1e3),
        fallback,
        unfused: None,
    };
    Ok(report)
}
