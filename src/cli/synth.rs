//! `rawgraph synth`: sRGB images (files or folders) -> synthetic raw
//! captures with ground truth, by unprocessing (Brooks et al. 2019; see
//! [`crate::synth::unprocess`] for the model and the files written).
//!
//! A failing input is reported on its own line and the run goes on; the
//! exit code is 1 when any input failed.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::color::Mat3;
use crate::error::{Error, Result};
use crate::raw::dng_write::DngOptions;
use crate::raw::CfaPattern;
use crate::synth::charts::Chart;
use crate::synth::unprocess::{
    image_seed, resolve_params, unprocess, write_capture, CfaSpec, ExposureSpec, MatrixSpec,
    NoiseSpec, SrgbInput, UnprocessConfig, WbSpec,
};
use crate::synth::{demo_scene, DEFAULT_XYZ_TO_CAM};

/// Camera and exposure options of unprocessing (shared by `synth` and
/// `eval --protocol synth`).
#[derive(Debug, Clone, Args)]
pub struct UnprocessArgs {
    /// Quantisation bits (10, 12, 14, 16).
    #[arg(long, default_value_t = 12)]
    pub bits: u32,
    /// Black level in DN (default 64 << (bits - 10)).
    #[arg(long)]
    pub black: Option<f32>,
    /// Camera matrix: `fixed` (Canon 5D Mark II, D65), `brooks` (random
    /// mix of Brooks et al.'s four) or nine comma-separated XYZ -> camera
    /// values, row-major.
    #[arg(long, default_value = "fixed")]
    pub matrix: String,
    /// White balance: `brooks` (red U(1.9,2.4), blue U(1.5,1.9)), `matrix`
    /// (the camera's D65 neutral) or `R,B` gains.
    #[arg(long, default_value = "brooks")]
    pub wb: String,
    /// Digital exposure gain divided out: a number, or `brooks`
    /// (1 / N(0.8, 0.1)).
    #[arg(long, default_value = "1")]
    pub exposure: String,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// sRGB images (PNG, TIFF, JPEG) or folders of them.
    pub inputs: Vec<PathBuf>,
    /// Output: a folder (created if needed; each capture is written as
    /// STEM.dng with STEM.truth.npy, STEM.ideal.png and STEM.json beside
    /// it), or, for exactly one capture, a file path ending in `.dng` that
    /// is not an existing folder: the DNG is written there and its truth
    /// files beside it (OUT.truth.npy, OUT.ideal.png, OUT.json).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also synthesise the built-in demo scene (`demo.*`).
    #[arg(long)]
    pub demo: bool,
    /// Demo scene size, WIDTHxHEIGHT.
    #[arg(long, default_value = "768x512")]
    pub demo_size: String,
    /// Also synthesise procedural demosaic test charts: `zone_plate`,
    /// `dead_leaves` or `all` (repeatable; written as NAME.*).
    #[arg(long = "chart", value_name = "NAME")]
    pub charts: Vec<String>,
    /// Chart size, WIDTHxHEIGHT.
    #[arg(long, default_value = "512x384")]
    pub chart_size: String,
    /// Run seed (each image mixes it with its file name).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bayer phase: RGGB, BGGR, GRBG, GBRG or random.
    #[arg(long, default_value = "RGGB")]
    pub cfa: String,
    #[command(flatten)]
    pub camera: UnprocessArgs,
    /// Noise: none, iso:N, iso:MIN-MAX (sampled), or shot:S,read:R
    /// (variance = S * x + R on the normalised signal).
    #[arg(long, default_value = "iso:400")]
    pub noise: String,
    /// Write the DNG in square tiles of this size (multiple of 16)
    /// instead of strips (rawler reads them; dcraw 9.28 and LibRaw 0.20
    /// do not).
    #[arg(long)]
    pub tiles: Option<u32>,
    /// Compress the pixels with lossless JPEG, as cameras and DNG
    /// converters do (in 256-px tiles unless --tiles is given; read by
    /// rawler, LibRaw and dcraw).
    #[arg(long)]
    pub lossless: bool,
}

/// Parses "WxH".
fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::invalid(format!("size '{s}' is not WIDTHxHEIGHT"));
    let (a, b) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (usize, usize) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if !(16..=20_000).contains(&w) || !(16..=20_000).contains(&h) {
        return Err(Error::invalid(format!("size {w}x{h} is outside 16..20000")));
    }
    Ok((w, h))
}

fn parse_floats(s: &str, n: usize, what: &str) -> Result<Vec<f32>> {
    let v: std::result::Result<Vec<f32>, _> = s.split(',').map(|t| t.trim().parse()).collect();
    match v {
        Ok(v) if v.len() == n && v.iter().all(|x| x.is_finite()) => Ok(v),
        _ => Err(Error::invalid(format!(
            "{what} '{s}' is not {n} comma-separated numbers"
        ))),
    }
}

impl UnprocessArgs {
    /// The unprocessing configuration for a Bayer phase name (or
    /// "random"), a seed and a noise specification.
    pub fn config(&self, cfa: &str, seed: u64, noise: NoiseSpec) -> Result<UnprocessConfig> {
        let a = self;
        let cfa = if cfa.eq_ignore_ascii_case("random") {
            CfaSpec::Sampled
        } else {
            CfaSpec::Fixed(CfaPattern::parse(cfa).ok_or_else(|| {
                Error::invalid(format!(
                    "--cfa '{cfa}' is not RGGB, BGGR, GRBG, GBRG or random"
                ))
            })?)
        };
        let matrix = match a.matrix.to_ascii_lowercase().as_str() {
            "fixed" => MatrixSpec::Fixed(DEFAULT_XYZ_TO_CAM),
            "brooks" | "random" => MatrixSpec::Brooks,
            other => {
                let v = parse_floats(other, 9, "--matrix")?;
                let m: Mat3 = [[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]];
                MatrixSpec::Fixed(m)
            }
        };
        let wb = match a.wb.to_ascii_lowercase().as_str() {
            "brooks" | "random" => WbSpec::Brooks,
            "matrix" => WbSpec::Matrix,
            other => {
                let v = parse_floats(other, 2, "--wb")?;
                WbSpec::Fixed {
                    red: v[0],
                    blue: v[1],
                }
            }
        };
        let exposure = match a.exposure.to_ascii_lowercase().as_str() {
            "brooks" | "random" => ExposureSpec::Brooks,
            other => ExposureSpec::Fixed(parse_floats(other, 1, "--exposure")?[0]),
        };
        Ok(UnprocessConfig {
            cfa,
            matrix,
            wb,
            exposure,
            noise,
            bits: a.bits,
            black: a.black,
            seed,
        })
    }
}

/// Builds the unprocessing configuration from the command line.
pub fn config_from_args(a: &SynthArgs) -> Result<UnprocessConfig> {
    if !a.tiles.is_none_or(|t| t > 0 && t % 16 == 0) {
        return Err(Error::invalid("--tiles must be a positive multiple of 16"));
    }
    a.camera.config(&a.cfa, a.seed, NoiseSpec::parse(&a.noise)?)
}

/// Image files named by the inputs (folders expanded, sorted).
pub fn expand_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            out.extend(crate::eval::image_files(p)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn stem_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into())
}

/// Where captures go: a folder (captures keep their input stems), or one
/// named DNG file (folder + stem of that file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthTarget {
    Folder(PathBuf),
    File { dir: PathBuf, stem: String },
}

impl SynthTarget {
    /// `-o OUT`: a single-file target when OUT ends in `.dng` (any case)
    /// and is not an existing folder, else a folder. `captures` is how
    /// many captures the run makes: a file target needs exactly one.
    pub fn resolve(out: &Path, captures: usize) -> Result<SynthTarget> {
        let is_dng = out
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("dng"));
        if !is_dng || out.is_dir() {
            return Ok(SynthTarget::Folder(out.to_path_buf()));
        }
        if captures != 1 {
            return Err(Error::invalid(format!(
                "{}: a .dng output names one file, but this run makes {captures} captures \
                 (give one image, or an output folder)",
                out.display()
            )));
        }
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(SynthTarget::File {
            dir,
            stem: stem_of(out),
        })
    }

    /// The folder to create.
    fn dir(&self) -> &Path {
        match self {
            SynthTarget::Folder(d) => d,
            SynthTarget::File { dir, .. } => dir,
        }
    }

    /// Folder and stem for a capture whose own stem is `stem`.
    fn place<'a>(&'a self, stem: &'a str) -> (&'a Path, &'a str) {
        match self {
            SynthTarget::Folder(d) => (d, stem),
            SynthTarget::File { dir, stem } => (dir, stem),
        }
    }
}

/// Synthesises one input into `outdir` as `stem.*`; the noise and camera
/// draws are seeded by `seed_stem` (the input's own stem, so naming the
/// output does not change the capture). Returns a one-line summary.
#[allow(clippy::too_many_arguments)]
fn synth_one(
    img: &SrgbInput,
    source: &str,
    seed_stem: &str,
    stem: &str,
    cfg: &UnprocessConfig,
    outdir: &Path,
    opts: &DngOptions,
) -> Result<String> {
    let seed = image_seed(cfg.seed, seed_stem);
    let p = resolve_params(cfg, img.width, img.height, source, seed)?;
    let cap = unprocess(img, &p)?;
    let files = write_capture(&cap, outdir, stem, opts)?;
    Ok(format!(
        "{source} -> {} ({}x{}, {}, {} bit, wb [{:.3}, 1, {:.3}], noise {}: shot {:.3e} read {:.3e})",
        files.dng.display(),
        p.width,
        p.height,
        p.cfa.name(),
        p.bits,
        p.wb_gains[0],
        p.wb_gains[2],
        p.noise_spec,
        p.shot,
        p.read
    ))
}

/// The charts named on the command line (`all` = every chart), each once,
/// in the order given.
fn parse_charts(names: &[String]) -> Result<Vec<Chart>> {
    let mut out = Vec::new();
    for n in names {
        let add: Vec<Chart> = if n.trim().eq_ignore_ascii_case("all") {
            Chart::ALL.to_vec()
        } else {
            vec![Chart::parse(n).map_err(|e| Error::invalid(format!("--chart: {e}")))?]
        };
        for c in add {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

pub fn run(a: SynthArgs) -> Result<i32> {
    let cfg = config_from_args(&a)?;
    let opts = DngOptions::from_cli(a.tiles, a.lossless);
    let files = expand_images(&a.inputs)?;
    let charts = parse_charts(&a.charts)?;
    if files.is_empty() && !a.demo && charts.is_empty() {
        return Err(Error::invalid(
            "synth: no input images (give files or folders, --demo or --chart)",
        ));
    }
    // Built-in scenes: (image, label, stem).
    let mut scenes: Vec<(SrgbInput, String, &str)> = Vec::new();
    if a.demo {
        let (w, h) = parse_size(&a.demo_size)?;
        let scene = demo_scene(w, h);
        let img = SrgbInput::from_linear(w, h, &scene.data);
        scenes.push((img, "demo scene".into(), "demo"));
    }
    if !charts.is_empty() {
        let (w, h) = parse_size(&a.chart_size)?;
        for c in &charts {
            let img = c.draw(w, h, a.seed);
            scenes.push((img, format!("{} chart", c.name()), c.name()));
        }
    }
    let target = SynthTarget::resolve(&a.output, files.len() + scenes.len())?;
    std::fs::create_dir_all(target.dir()).map_err(|e| Error::io(target.dir(), e))?;
    let mut failed = 0usize;
    let mut ok = 0usize;
    for (img, label, own) in &scenes {
        let (dir, stem) = target.place(own);
        match synth_one(img, label, own, stem, &cfg, dir, &opts) {
            Ok(line) => {
                ok += 1;
                println!("{line}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {label}: {e}");
            }
        }
    }
    for f in &files {
        let shown = f.display().to_string();
        let own = stem_of(f);
        let (dir, stem) = target.place(&own);
        let res = SrgbInput::load(f)
            .and_then(|img| synth_one(&img, &shown, &own, stem, &cfg, dir, &opts));
        match res {
            Ok(line) => {
                ok += 1;
                println!("{line}");
            }
            Err(e) => {
                failed += 1;
                let msg = e.to_string();
                if msg.contains(&shown) {
                    eprintln!("error: {msg}");
                } else {
                    eprintln!("error: {shown}: {msg}");
                }
            }
        }
    }
    eprintln!("{ok} synthesised, {failed} failed");
    Ok(if failed > 0 { 1 } else { 0 })
}
