//! `rawgraph tonemap`: data and scores for the learned tone mapper.
//!
//! - `pairs`: training pairs for `training/train_hdrnet.py`. Every image of
//!   the given sets becomes linear scene-referred HDR frames
//!   ([`crate::eval::tonemap_protocol`]) at `--per-image` exposure offsets
//!   drawn uniformly from `--ev-min..--ev-max` (seeded per file name), each
//!   tone-mapped by the engine's own `local_laplacian` stage (default
//!   params: the teacher). Written per pair, NumPy `.npy` float32 HWC:
//!   `SET_STEM_k.in.npy` (linear input) and `SET_STEM_k.out.npy` (the
//!   teacher's display-linear output in [0, 1]), plus one line per pair in
//!   `pairs.tsv` (name, ev, width, height).
//!
//! - `eval`: HDRnet against the teacher on held-out images (default
//!   kodak24 + mcmaster18) at native size and several exposure offsets:
//!   both outputs sRGB-encoded and quantised to 8 bits, CPSNR / SSIM /
//!   CIEDE2000 per image ([`crate::eval::score_pair`], no border crop),
//!   means per set and EV and overall, host times of both operators; with
//!   `--report DIR` an HTML page of side-by-side crops (teacher, HDRnet,
//!   error map).
//!
//! A failing input is reported on its own line and the run goes on; the
//! exit code is 1 when any input failed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::color::srgb_encode;
use crate::error::{Error, Result};
use crate::eval::metrics::Rgb8;
use crate::eval::report::{write_report, ReportImage, ReportSummary, StageBar};
use crate::eval::score_pair;
use crate::eval::tonemap_protocol::{load_linear, to_hwc};
use crate::eval::{data_dir, image_files};
use crate::graph::Timings;
use crate::stages::hdrnet::{model_path, Hdrnet};
use crate::stages::local_laplacian::{tone_map, Params as LlfParams};
use crate::synth::unprocess::{image_seed, write_npy_f32};

#[derive(Debug, Args)]
pub struct TonemapArgs {
    #[command(subcommand)]
    pub command: TonemapCommand,
}

#[derive(Debug, Subcommand)]
pub enum TonemapCommand {
    /// Write (linear input, local_laplacian output) training pairs as .npy.
    Pairs(PairsArgs),
    /// Score HDRnet against local_laplacian on held-out images.
    Eval(TmEvalArgs),
}

#[derive(Debug, Args)]
pub struct TmEvalArgs {
    /// Folders of sRGB images (names are looked up in $RAWGRAPH_DATA).
    #[arg(default_values_t = ["kodak24".to_string(), "mcmaster18".to_string()])]
    pub sets: Vec<String>,
    /// Exposure offsets, EV, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "-3,-1.5,0,1,2",
        allow_hyphen_values = true
    )]
    pub evs: Vec<f32>,
    /// HDRnet model: `default` or a .safetensors path.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Longer side limit, pixels (0 = native size).
    #[arg(long, default_value_t = 0)]
    pub max_side: usize,
    /// Write an HTML report with crops to this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the per-image rows.
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct PairsArgs {
    /// Folders of sRGB images (a name such as `train/cbsd432` is looked up
    /// in $RAWGRAPH_DATA, default ../shared/data).
    #[arg(required = true)]
    pub sets: Vec<String>,
    /// Output folder (created if needed).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Longer side of the frames, pixels (integer box downscale; 0 = keep).
    #[arg(long, default_value_t = 512)]
    pub max_side: usize,
    /// Exposure offsets per image.
    #[arg(long, default_value_t = 2)]
    pub per_image: usize,
    /// Lowest exposure offset, EV.
    #[arg(long, default_value_t = -3.0, allow_hyphen_values = true)]
    pub ev_min: f32,
    /// Highest exposure offset, EV.
    #[arg(long, default_value_t = 2.0, allow_hyphen_values = true)]
    pub ev_max: f32,
    /// Run seed (mixed with each file name).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Resolves a set name or path.
pub fn resolve_set(s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.is_dir() {
        p
    } else {
        data_dir().join(s)
    }
}

pub fn run(a: TonemapArgs) -> Result<i32> {
    match a.command {
        TonemapCommand::Pairs(p) => pairs(p),
        TonemapCommand::Eval(e) => eval(e),
    }
}

fn pairs(a: PairsArgs) -> Result<i32> {
    let evs_ok = a.ev_min.is_finite() && a.ev_max.is_finite() && a.ev_min <= a.ev_max;
    if a.per_image == 0 || !evs_ok || a.ev_min < -10.0 || a.ev_max > 10.0 {
        return Err(Error::invalid(
            "tonemap pairs: need --per-image >= 1 and -10 <= --ev-min <= --ev-max <= 10",
        ));
    }
    std::fs::create_dir_all(&a.output).map_err(|e| Error::io(&a.output, e))?;
    let teacher = LlfParams::default();
    let mut lines = String::from("name\tev\twidth\theight\n");
    let (mut ok, mut failed) = (0usize, 0usize);
    for set in &a.sets {
        let dir = resolve_set(set);
        let set_tag = set.replace(['/', '\\'], "_");
        for path in image_files(&dir)? {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("image")
                .to_string();
            match pairs_one(&path, &set_tag, &stem, &a, &teacher, &mut lines) {
                Ok(n) => ok += n,
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
    }
    let tsv = a.output.join("pairs.tsv");
    crate::output::write_atomic(&tsv, |f| f.write_all(lines.as_bytes()))?;
    println!(
        "{ok} pairs in {} ({failed} inputs failed)",
        a.output.display()
    );
    Ok(if failed > 0 { 1 } else { 0 })
}

fn pairs_one(
    path: &Path,
    set: &str,
    stem: &str,
    a: &PairsArgs,
    teacher: &LlfParams,
    lines: &mut String,
) -> Result<usize> {
    let frame = load_linear(path, a.max_side)?;
    let (w, h) = (frame.width, frame.height);
    let mut rng = ChaCha8Rng::seed_from_u64(image_seed(a.seed, &format!("{set}/{stem}")));
    for k in 0..a.per_image {
        let u: f32 = rng.random();
        let ev = ((a.ev_min + u * (a.ev_max - a.ev_min)) * 10.0).round() / 10.0;
        let input = frame.exposed(ev);
        let out = tone_map(&input, w, h, teacher)?;
        let name = format!("{set}_{stem}_{k}");
        write_npy_f32(
            &a.output.join(format!("{name}.in.npy")),
            &[h, w, 3],
            &to_hwc(&input, w, h),
        )?;
        write_npy_f32(
            &a.output.join(format!("{name}.out.npy")),
            &[h, w, 3],
            &to_hwc(&out, w, h),
        )?;
        lines.push_str(&format!("{name}\t{ev}\t{w}\t{h}\n"));
    }
    Ok(a.per_image)
}

fn encode8(planar: &[f32], w: usize, h: usize) -> Rgb8 {
    let enc: Vec<f32> = planar.iter().map(|&v| srgb_encode(v)).collect();
    Rgb8::from_planar(w, h, &enc)
}

/// Mean scores of one (set, EV) group.
#[derive(Default)]
struct Group {
    n: usize,
    failed: usize,
    psnr: f64,
    ssim: f64,
    de: f64,
}

fn eval(a: TmEvalArgs) -> Result<i32> {
    if a.evs.is_empty() || a.evs.iter().any(|e| !e.is_finite() || e.abs() > 10.0) {
        return Err(Error::invalid(
            "tonemap eval: --evs must be finite, within +-10",
        ));
    }
    let model = crate::nn::hdrnet::Hdrnet::load(model_path(&a.model))?;
    let student = Hdrnet::new(model);
    let teacher = LlfParams::default();
    let mut summaries = Vec::new();
    let mut images = Vec::new();
    let mut errors = Vec::new();
    let (mut all_psnr, mut all_n) = (0f64, 0usize);
    let (mut t_llf, mut t_hdr, mut t_n) = (0f64, 0f64, 0usize);
    println!("set          EV      images  CPSNR dB  SSIM    CIEDE2000");
    for set in &a.sets {
        let dir = resolve_set(set);
        let files = image_files(&dir)?;
        let frames: Vec<_> = files
            .iter()
            .map(|p| (p.clone(), load_linear(p, a.max_side)))
            .collect();
        for &ev in &a.evs {
            let mut g = Group::default();
            for (k, (path, frame)) in frames.iter().enumerate() {
                let name = path
                    .file_name()
                    .and_then(|s| s.to_str())
                    .unwrap_or("image")
                    .to_string();
                let res = frame
                    .as_ref()
                    .map_err(|e| Error::invalid(e.to_string()))
                    .and_then(|f| {
                        let (w, h) = (f.width, f.height);
                        let input = f.exposed(ev);
                        let t0 = std::time::Instant::now();
                        let target = tone_map(&input, w, h, &teacher)?;
                        let t1 = std::time::Instant::now();
                        let mut out = input;
                        student.apply(&mut out, w, h)?;
                        let t2 = std::time::Instant::now();
                        let (tt, ot) = (encode8(&target, w, h), encode8(&out, w, h));
                        let s = score_pair(&name, &tt, &ot, 0, Timings::default())?;
                        Ok((s, tt, ot, (t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64()))
                    });
                match res {
                    Ok((s, tt, ot, dl, dh)) => {
                        if a.verbose {
                            println!("  {set}/{name} {ev:+.1} EV: {:.2} dB, SSIM {:.4}, dE {:.3}, llf {:.1} ms, hdrnet {:.1} ms",
                                s.cpsnr, s.ssim, s.ciede2000, dl * 1e3, dh * 1e3);
                        }
                        g.n += 1;
                        g.psnr += s.cpsnr;
                        g.ssim += s.ssim;
                        g.de += s.ciede2000;
                        t_llf += dl;
                        t_hdr += dh;
                        t_n += 1;
                        if a.report.is_some() && k < 2 {
                            images.push(ReportImage::new(
                                set,
                                &format!("{ev:+.1} EV"),
                                &name,
                                s.cpsnr,
                                s.ssim,
                                s.ciede2000,
                                &tt,
                                &ot,
                            )?);
                        }
                    }
                    Err(e) => {
                        g.failed += 1;
                        eprintln!("error: {set}/{name}: {e}");
                        errors.push(format!("{set}/{name}: {e}"));
                    }
                }
            }
            let n = g.n.max(1) as f64;
            println!(
                "{set:<12} {ev:+5.1}  {:>6}  {:>8.2}  {:.4}  {:.3}",
                g.n,
                g.psnr / n,
                g.ssim / n,
                g.de / n
            );
            all_psnr += g.psnr;
            all_n += g.n;
            summaries.push(ReportSummary {
                set: set.clone(),
                level: format!("{ev:+.1} EV"),
                images: g.n,
                failed: g.failed,
                cpsnr: g.psnr / n,
                ssim: g.ssim / n,
                ciede2000: g.de / n,
            });
        }
    }
    let tn = t_n.max(1) as f64;
    println!(
        "mean CPSNR {:.2} dB over {all_n} image-exposures; mean host time local_laplacian {:.1} ms, hdrnet {:.1} ms",
        all_psnr / all_n.max(1) as f64,
        t_llf / tn * 1e3,
        t_hdr / tn * 1e3
    );
    if let Some(dir) = &a.report {
        let bars = vec![
            StageBar {
                id: "teacher".into(),
                op: "local_laplacian".into(),
                ms: t_llf / tn * 1e3,
            },
            StageBar {
                id: "student".into(),
                op: "hdrnet".into(),
                ms: t_hdr / tn * 1e3,
            },
        ];
        let page = write_report(
            dir,
            "HDRnet vs local_laplacian (truth = teacher)",
            &summaries,
            &bars,
            &images,
            &errors,
        )?;
        println!("report: {}", page.display());
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}
