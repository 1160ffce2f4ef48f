//! `rawgraph process`: one file, or a batch over files and folders.
//!
//! Batch semantics: files run with a bounded number in flight (`--jobs`);
//! each output is written to a temporary file and renamed into place; an
//! existing output is skipped unless `--overwrite`; inputs are never
//! written; a failing file is reported (file, stage, reason) and the batch
//! goes on; Ctrl-C stops taking new files and lets the ones in flight
//! finish, so no partial output is ever left and a rerun resumes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::InputArgs;
use crate::error::{Error, Result};
use crate::graph::{self, Pipeline, RunOptions, Timings};
use crate::input;
use crate::output::tiff_stream::TiffStream;
use crate::output::{write_encoded, write_image, OutFormat};
use crate::Value;

#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Raw files, dumps, or folders of them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Shipped pipeline name (any file stem in pipelines/: default, fast,
    /// auto, learned, hdrnet ...) or a YAML file.
    #[arg(short, long, default_value = "default")]
    pub pipeline: String,
    /// Output file (one input) or folder (several inputs or a folder).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Output extension for batches: png, tif or jpg.
    #[arg(long, default_value = "png")]
    pub format: String,
    /// Bits per sample (PNG: 8 or 16).
    #[arg(long)]
    pub bits: Option<u8>,
    /// Print the per-stage timing table.
    #[arg(long)]
    pub timings: bool,
    /// Write the timings (all files) as JSON.
    #[arg(long)]
    pub timings_json: Option<PathBuf>,
    /// Replace existing outputs (batches skip them by default).
    #[arg(long)]
    pub overwrite: bool,
    /// Files processed at the same time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Write a machine-readable batch report.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// The inputs are consecutive frames of one sequence: they run one at
    /// a time in name order and stateful stages carry state from frame to
    /// frame (the exposure meter smooths its EV over time). Frames skipped
    /// because their output exists do not advance that state.
    #[arg(long)]
    pub sequence: bool,
    /// Process only shard K of N (0 <= K < N) of the inputs: each input
    /// belongs to the shard given by a stable hash of its path, so N jobs
    /// (a Kubernetes indexed job, a Slurm array) started with the same
    /// inputs and output folder split them with no overlap.
    #[arg(long, value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub inputs_opts: InputArgs,
}

/// One of N disjoint parts of a batch (`--shard K/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index, below `count`.
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses "K/N" with 0 <= K < N.
    pub fn parse(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("'{s}': expected K/N with 0 <= K < N, e.g. 0/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether `path` (as given or found in a folder) belongs to this
    /// shard: FNV-1a (64-bit) of the path's bytes, modulo N. The hash is
    /// fixed, so every job of a batch agrees on the split.
    pub fn contains(&self, path: &Path) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in path.as_os_str().as_encoded_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % self.count == self.index
    }
}

/// Outcome of one input.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub input: String,
    pub output: String,
    /// "ok", "skipped" or "failed".
    pub status: &'static str,
    pub error: Option<String>,
    pub ms: f64,
}

/// The whole batch.
#[derive(Debug, Serialize)]
pub struct BatchReport {
    pub schema_version: crate::output::SchemaVersion,
    pub pipeline: String,
    pub ok: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Folder entries left out because they do not look like raw files or
    /// dumps with sidecars (images, truth files, JSON ...).
    pub not_raw: usize,
    pub interrupted: bool,
    pub files: Vec<FileReport>,
}

/// File extensions (lower case) that name camera raw files: a folder given
/// to `process` expands to these, plus headerless dumps that have a
/// sidecar next to them. Files named explicitly on the command line are
/// always tried, whatever their extension.
pub const RAW_EXTENSIONS: &[&str] = &[
    "3fr", "ari", "arw", "bay", "cap", "cr2", "cr3", "crw", "dcr", "dcs", "dng", "drf", "eip",
    "erf", "fff", "gpr", "iiq", "k25", "kdc", "mdc", "mef", "mos", "mrw", "nef", "nrw", "orf",
    "pef", "ptx", "pxn", "r3d", "raf", "raw", "rw2", "rwl", "rwz", "sr2", "srf", "srw", "sti",
    "x3f",
];

/// Whether a file found in a folder is a processing input: a known raw
/// extension, or a dump with a sidecar (`IN.yaml` / `IN.raw.yaml`). An
/// entry with a raw extension that cannot be read (a folder, no
/// permission) is kept, so the batch reports it as failed.
pub fn looks_like_input(f: &Path) -> bool {
    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') {
        return false;
    }
    let ext = f
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "yaml" | "yml") {
        return false;
    }
    RAW_EXTENSIONS.contains(&ext.as_str()) || crate::raw::sidecar::find_sidecar(f).is_some()
}

/// Inputs expanded: folders to their raw-looking files (sorted, not
/// recursive), explicit files kept as given. Returns the files and how
/// many folder entries were left out as not raw.
pub fn expand(inputs: &[PathBuf]) -> (Vec<PathBuf>, usize) {
    let mut out = Vec::new();
    let mut not_raw = 0usize;
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            // Subfolders are not descended into; one named like a raw
            // file is kept and fails with a clear error.
            files.retain(|f| !f.is_dir() || looks_like_input(f));
            let before = files.len();
            files.retain(|f| looks_like_input(f));
            not_raw += before - files.len();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    (out, not_raw)
}

/// True when `a` and `b` name the same file (b may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let ca = match a.canonicalize() {
        Ok(c) => c,
        Err(_) => return false,
    };
    if let Ok(cb) = b.canonicalize() {
        return ca == cb;
    }
    let parent = match b.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match (parent.canonicalize(), b.file_name()) {
        (Ok(p), Some(n)) => p.join(n) == ca,
        _ => false,
    }
}

/// Runs one input through the pipeline and writes its first output.
fn process_one(
    pipeline: &Pipeline,
    input_path: &Path,
    out: &Path,
    fmt: OutFormat,
    a: &ProcessArgs,
) -> Result<Timings> {
    if same_file(input_path, out) {
        return Err(Error::invalid(format!(
            "{}: output path is the input file; refusing to overwrite an input",
            out.display()
        )));
    }
    // A 16-bit TIFF is written while the pipeline runs when its last
    // fused segment makes the output (see `output::tiff_stream`).
    let stream = match fmt {
        OutFormat::Tiff16 => Some(Arc::new(TiffStream::create(out)?)),
        _ => None,
    };
    let t0 = Instant::now();
    let frame = input::open(
        input_path,
        a.inputs_opts.sidecar.as_deref(),
        &a.inputs_opts.limits(),
    )?;
    let decode_ms = t0.elapsed().as_secs_f64() * 1e3;
    let opts = RunOptions {
        backend: a.inputs_opts.backend,
        no_fuse: a.inputs_opts.no_fuse,
        deliver: fmt.depth(),
        stream: stream
            .clone()
            .map(|s| -> Arc<dyn crate::frame::quantize::SampleStream> { s }),
    };
    let mut res = graph::run(pipeline, frame, &opts)?;
    drop(opts);
    res.timings.decode_ms = Some(decode_ms);
    if let Some(s) = stream {
        if s.finish()? {
            return Ok(res.timings);
        }
    }
    match res.outputs.first() {
        Some((_, Value::Image(img))) => write_image(img, out, fmt)?,
        Some((_, Value::Encoded(img))) => write_encoded(img, out, fmt)?,
        Some((id, Value::Other(o))) if fmt == OutFormat::Yuv => {
            let f = o
                .as_any()
                .downcast_ref::<crate::stages::yuv_encode::YuvFrame>()
                .ok_or_else(|| {
                    Error::invalid(format!("output '{id}' is a {}, not a YUV frame", o.kind()))
                })?;
            let bytes = f.to_bytes();
            crate::output::write_atomic(out, |file| std::io::Write::write_all(file, &bytes))?;
        }
        Some((id, v)) => {
            return Err(Error::invalid(format!(
                "output '{id}' is a {}, not an image",
                v.kind()
            )))
        }
        None => return Err(Error::invalid("pipeline produced no output")),
    }
    Ok(res.timings)
}

/// Prefixes an error with the input file unless it already names it.
fn describe(input: &Path, e: &Error) -> String {
    let msg = e.to_string();
    let shown = input.display().to_string();
    if msg.contains(&shown) {
        msg
    } else {
        format!("{shown}: {msg}")
    }
}

pub fn run(a: ProcessArgs) -> Result<i32> {
    let pipeline = Pipeline::resolve(&a.pipeline)?;
    if a.sequence {
        pipeline.start_sequence();
    }
    let any_dir = a.inputs.iter().any(|p| p.is_dir());
    let batch = a.inputs.len() > 1 || any_dir || a.output.is_dir() || a.shard.is_some();
    if !batch {
        let input_path = &a.inputs[0];
        if same_file(input_path, &a.output) {
            return Err(Error::invalid(format!(
                "{}: output path is the input file; refusing to overwrite an input",
                a.output.display()
            )));
        }
        let fmt = OutFormat::for_path(&a.output, a.bits)?;
        let timings = process_one(&pipeline, input_path, &a.output, fmt, &a)
            .map_err(|e| Error::invalid(describe(input_path, &e)))?;
        if a.timings {
            print!("{}", timings.table());
        }
        if let Some(j) = &a.timings_json {
            write_json(j, &timings)?;
        }
        return Ok(0);
    }
    run_batch(&a, &pipeline)
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::invalid(e.to_string()))?;
    crate::output::write_atomic(path, |f| std::io::Write::write_all(f, s.as_bytes()))
}

fn run_batch(a: &ProcessArgs, pipeline: &Pipeline) -> Result<i32> {
    let outdir = &a.output;
    std::fs::create_dir_all(outdir).map_err(|e| Error::io(outdir, e))?;
    // Stale temporaries from a killed earlier run are never outputs.
    if let Ok(rd) = std::fs::read_dir(outdir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with(".rawgraph-") && n.ends_with(".partial") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let ext = a.format.trim_start_matches('.').to_ascii_lowercase();
    let fake = format!("x.{ext}");
    let fmt = OutFormat::for_path(Path::new(&fake), a.bits).map_err(|e| {
        let why = e.to_string();
        let why = why.strip_prefix(&format!("{fake}: ")).unwrap_or(&why);
        Error::invalid(format!("--format {}: {why}", a.format))
    })?;
    let (all_files, not_raw) = expand(&a.inputs);
    // Output names: stem.ext, or name.ext when two inputs share a stem
    // (decided over all inputs, so every shard names a file alike).
    let stems: Vec<String> = all_files
        .iter()
        .map(|f| {
            f.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        })
        .collect();
    let all_outs: Vec<PathBuf> = all_files
        .iter()
        .zip(&stems)
        .map(|(f, s)| {
            let dup = stems.iter().filter(|t| *t == s).count() > 1;
            let base = if dup {
                f.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            } else {
                s.clone()
            };
            outdir.join(format!("{base}.{ext}"))
        })
        .collect();
    let (files, outs): (Vec<PathBuf>, Vec<PathBuf>) = all_files
        .into_iter()
        .zip(all_outs)
        .filter(|(f, _)| a.shard.is_none_or(|s| s.contains(f)))
        .unzip();

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C exits at once; outputs are still never partial
        // (temporaries are hidden and removed by the next run).
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<Option<FileReport>>> = Mutex::new(vec![None; files.len()]);
    let all_timings: Mutex<Vec<Timings>> = Mutex::new(Vec::new());
    let jobs = if a.sequence { 1 } else { a.jobs.clamp(1, 64) };
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if interrupted.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= files.len() {
                    break;
                }
                let (f, out) = (&files[i], &outs[i]);
                bar.set_message(f.display().to_string());
                let t0 = Instant::now();
                let (status, error) = if out.exists() && !a.overwrite {
                    ("skipped", None)
                } else {
                    match process_one(pipeline, f, out, fmt, a) {
                        Ok(t) => {
                            if let Ok(mut v) = all_timings.lock() {
                                v.push(t);
                            }
                            ("ok", None)
                        }
                        Err(e) => {
                            let msg = describe(f, &e);
                            bar.suspend(|| eprintln!("error: {msg}"));
                            ("failed", Some(msg))
                        }
                    }
                };
                let rep = FileReport {
                    input: f.display().to_string(),
                    output: out.display().to_string(),
                    status,
                    error,
                    ms: t0.elapsed().as_secs_f64() * 1e3,
                };
                if let Ok(mut r) = reports.lock() {
                    r[i] = Some(rep);
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let files_rep: Vec<FileReport> = reports
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let count = |s: &str| files_rep.iter().filter(|r| r.status == s).count();
    let report = BatchReport {
        schema_version: crate::output::SchemaVersion,
        pipeline: pipeline.name.clone(),
        ok: count("ok"),
        skipped: count("skipped"),
        failed: count("failed"),
        not_raw,
        interrupted: interrupted.load(Ordering::SeqCst),
        files: files_rep,
    };
    let timings = all_timings.into_inner().unwrap_or_default();
    if a.timings {
        for t in &timings {
            println!("{}", t.source);
            print!("{}", t.table());
        }
    }
    if let Some(j) = &a.timings_json {
        write_json(j, &timings)?;
    }
    if let Some(j) = &a.report_json {
        write_json(j, &report)?;
    }
    let pending = files.len() - report.ok - report.skipped - report.failed;
    eprintln!(
        "{} ok, {} skipped (output exists), {} failed, {} not raw (skipped){}",
        report.ok,
        report.skipped,
        report.failed,
        report.not_raw,
        if report.interrupted {
            format!(", interrupted with {pending} not started (rerun to resume)")
        } else {
            String::new()
        }
    );
    Ok(if report.interrupted {
        130
    } else if report.failed > 0 {
        1
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_input_once() {
        let paths: Vec<PathBuf> = (0..1000)
            .map(|i| PathBuf::from(format!("in/IMG_{i:04}.dng")))
            .collect();
        for n in [1, 2, 3, 7] {
            let shards: Vec<Shard> = (0..n).map(|k| Shard { index: k, count: n }).collect();
            for p in &paths {
                assert_eq!(shards.iter().filter(|s| s.contains(p)).count(), 1);
            }
            for s in &shards {
                let share = paths.iter().filter(|p| s.contains(p)).count();
                assert!(share > 1000 / n as usize / 2, "shard {s:?}: {share}");
            }
        }
    }

    #[test]
    fn shard_parse() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "1/0", "x/2", "1", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
