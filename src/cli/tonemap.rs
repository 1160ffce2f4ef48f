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
//! A failing input is reported on its own line and the run goes on; the
//! exit code is 1 when any input failed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::eval::tonemap_protocol::{load_linear, to_hwc};
use crate::eval::{data_dir, image_files};
use crate::raw::unprocess::{image_seed, write_npy_f32};
use crate::stages::local_laplacian::{tone_map, Params as LlfParams};

#[derive(Debug, Args)]
pub struct TonemapArgs {
    #[command(subcommand)]
    pub command: TonemapCommand,
}

#[derive(Debug, Subcommand)]
pub enum TonemapCommand {
    /// Write (linear input, local_laplacian output) training pairs as .npy.
    Pairs(PairsArgs),
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
