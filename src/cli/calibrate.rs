//! `rawgraph calibrate lsc FLATS... --out lsc.yaml [--grid 17x13] [--ct K]`:
//! fits lens-shading gain tables (the `lens_shading` op's `file:`) from
//! flat-field frames; see [`fit_flat`].
//!
//! `rawgraph calibrate dpc DARKS... --out defects.txt [--flats FLATS...]`:
//! finds hot, dead and stuck photosites for the `defect_correct` op's
//! `map:`; see [`dpc`].
//!
//! `rawgraph calibrate noise IN... -o calibration/noise/NAME.yaml`: fits the
//! Poisson-Gaussian noise model of a camera (a, b per colour as functions
//! of ISO) from raw frames and writes a profile the `noise_estimate` stage
//! finds by make/model (format: calibration/README.md).
//!
//! Each frame is decoded (`input::open`, sidecars honoured), normalised by
//! the `black_level` stage and measured by the single-frame estimator
//! ([`crate::noise::raw_estimator`]). Frames of the same ISO are pooled:
//! their binned measurements are fitted by one line per colour. Frames that
//! record no ISO (and get no `--iso`) each make a level of their own. With two or
//! more distinct ISOs, a(iso) and b(iso) are fitted too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::InputArgs;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value};
use crate::graph;
use crate::input;
use crate::noise::profile::{self, CameraNoiseProfile, Level};
use crate::noise::raw_estimator::{self, BinPoint, EstimatorParams, RawNoiseFit};
use crate::noise::{std_at, MID_GREY};
use crate::raw::RawFrame;
use crate::stages::{self, lens_shading, RunCtx};

pub mod dpc;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    #[command(subcommand)]
    pub what: CalibrateWhat,
}

#[derive(Debug, Subcommand)]
pub enum CalibrateWhat {
    /// Fit a camera noise profile (a, b vs ISO) from raw frames.
    Noise(NoiseCalibArgs),
    /// Fit lens-shading gain tables (the lens_shading op's file) from
    /// flat-field frames.
    Lsc(LscCalibArgs),
    /// Find hot, dead and stuck photosites (the defect_correct op's
    /// `map:`) from dark frames and, optionally, flat frames.
    Dpc(dpc::DpcCalibArgs),
}

/// How a calibration opens its input frames.
#[derive(Debug, Args)]
pub struct CalibInputs {
    /// One sidecar per input, in order (headerless dumps of different
    /// packings); overrides --sidecar.
    #[arg(long, num_args = 1..)]
    pub sidecars: Vec<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Args)]
pub struct LscCalibArgs {
    /// Flat-field frames (an evenly lit diffuser or wall filling the
    /// frame, not clipped), raw files or headerless dumps of ONE camera
    /// and lens setting.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Calibration YAML to write (the lens_shading op's `file:`).
    #[arg(short = 'o', long = "out", visible_alias = "output")]
    pub out: PathBuf,
    /// Grid points per table, COLSxROWS (both >= 2).
    #[arg(long, default_value = "17x13")]
    pub grid: String,
    /// Colour temperature in kelvin of the flats: once for all, or once
    /// per input in order (default: each frame's as-shot white balance).
    #[arg(long)]
    pub ct: Vec<f32>,
    /// Keep the tables of an existing --out file at colour temperatures
    /// the new flats do not measure.
    #[arg(long)]
    pub merge: bool,
    /// Free text stored in the file (lens, aperture, light source).
    #[arg(long, default_value = "")]
    pub notes: String,
    #[command(flatten)]
    pub frames: CalibInputs,
}

#[derive(Debug, Args)]
pub struct NoiseCalibArgs {
    /// Raw files or headerless dumps, all of ONE camera.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Profile YAML to write (e.g. calibration/noise/huawei_p9.yaml).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Camera make (default: from the frames, which must agree).
    #[arg(long)]
    pub make: Option<String>,
    /// Camera model (default: from the frames).
    #[arg(long)]
    pub model: Option<String>,
    /// ISO of frames that record none.
    #[arg(long)]
    pub iso: Option<u32>,
    /// Free text stored in the profile (how far to trust it, conditions).
    #[arg(long, default_value = "")]
    pub notes: String,
    #[command(flatten)]
    pub frames: CalibInputs,
}

pub fn run(a: CalibrateArgs) -> Result<i32> {
    match a.what {
        CalibrateWhat::Noise(n) => run_noise(n),
        CalibrateWhat::Lsc(l) => run_lsc(l),
        CalibrateWhat::Dpc(d) => dpc::run_dpc(d),
    }
}

/// Refuses an output path that is one of the inputs.
fn refuse_input_as_output(output: &Path, inputs: &[PathBuf]) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    if let Some(out) = canon(output) {
        if inputs.iter().any(|i| canon(i).as_ref() == Some(&out)) {
            return Err(Error::invalid(format!(
                "{}: the output is one of the inputs",
                output.display()
            )));
        }
    }
    Ok(())
}

/// Opens input `k` with its own sidecar (`--sidecars`, one per input) or
/// the shared `--sidecar`.
fn open_input(inputs: &[PathBuf], k: usize, frames: &CalibInputs) -> Result<RawFrame> {
    let sidecars = &frames.sidecars;
    if !sidecars.is_empty() && sidecars.len() != inputs.len() {
        return Err(Error::invalid(format!(
            "--sidecars gives {} files for {} inputs (one per input, in order)",
            sidecars.len(),
            inputs.len()
        )));
    }
    let path = inputs
        .get(k)
        .ok_or_else(|| Error::invalid(format!("no input {k}")))?;
    let sidecar = sidecars
        .get(k)
        .map(PathBuf::as_path)
        .or(frames.input.sidecar.as_deref());
    input::open(path, sidecar, &frames.input.limits())
}

/// The file name of `path` (the whole path when it has none), for
/// progress lines and file headers.
fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string())
}

/// Writes `text` to `path` atomically, creating its folder.
fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::output::write_atomic(path, |f| {
        use std::io::Write;
        f.write_all(text.as_bytes())
    })?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Helper shared with `rawgraph noise`: runs the `black_level` stage on a
/// frame (as the `raw_source` value) and returns the normalised mosaic.
pub(crate) fn normalised_mosaic(frame: RawFrame) -> Result<Arc<Mosaic>> {
    let stage = stages::compile("black_level", serde_json::Value::Null)
        .map_err(|e| Error::invalid(e.to_string()))?;
    let ctx = RunCtx { stage_id: "bl" };
    match stage.run_cpu(&ctx, vec![graph::exec::frame_to_value(frame)?])? {
        Value::Mosaic(m) => Ok(m),
        _ => Err(Error::invalid("black_level produced no mosaic")),
    }
}

/// One measured frame.
struct Measured {
    name: String,
    iso: Option<u32>,
    fit: RawNoiseFit,
}

fn print_fit(name: &str, iso: Option<u32>, fit: &RawNoiseFit) {
    let p = &fit.profile;
    let iso = iso.map_or("?".to_string(), |i| i.to_string());
    println!("{name}  (ISO {iso})");
    for (c, cn) in ["R", "G", "B"].iter().enumerate() {
        println!(
            "  {cn}: a {:.4e}  b {:.4e}  std@{MID_GREY} {:.5}  ({} blocks, {} bins)",
            p.a[c],
            p.b[c],
            std_at(p, c, MID_GREY),
            fit.blocks[c],
            fit.points[c].len()
        );
    }
    for n in &fit.notes {
        println!("  note: {n}");
    }
}

fn run_noise(a: NoiseCalibArgs) -> Result<i32> {
    refuse_input_as_output(&a.output, &a.inputs)?;
    let (mut make, mut model) = (a.make.clone(), a.model.clone());
    let mut frames = Vec::new();
    for (k, path) in a.inputs.iter().enumerate() {
        let frame = open_input(&a.inputs, k, &a.frames)?;
        let m = &frame.meta;
        let mismatch = |what: &str, want: &str, got: &str| {
            Error::invalid(format!(
                "{}: {what} '{got}' differs from '{want}' of the other frames (one camera per profile; \
                 pass --make/--model to override)",
                path.display()
            ))
        };
        match (&a.make, &make) {
            (None, Some(mk)) if !mk.eq_ignore_ascii_case(m.make.trim()) => {
                return Err(mismatch("make", mk, &m.make))
            }
            (None, None) => make = Some(m.make.trim().to_string()),
            _ => {}
        }
        match (&a.model, &model) {
            (None, Some(md)) if !md.eq_ignore_ascii_case(m.model.trim()) => {
                return Err(mismatch("model", md, &m.model))
            }
            (None, None) => model = Some(m.model.trim().to_string()),
            _ => {}
        }
        let iso = m.iso.or(a.iso);
        let mosaic = normalised_mosaic(frame)?;
        let ep = EstimatorParams {
            // Calibration is offline: use every block.
            max_blocks: usize::MAX,
            ..EstimatorParams::default()
        };
        let fit = raw_estimator::estimate(
            &mosaic.data.f32(),
            mosaic.width,
            mosaic.height,
            mosaic.cfa,
            &ep,
        )
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let name = display_name(path);
        print_fit(&name, iso, &fit);
        frames.push(Measured { name, iso, fit });
    }
    let (make, model) = (make.unwrap_or_default(), model.unwrap_or_default());
    if make.is_empty() && model.is_empty() {
        return Err(Error::invalid(
            "the frames name no camera: pass --make and --model",
        ));
    }

    // Pool frames per ISO and fit one line per colour over their bins.
    // Frames that record no ISO (and got no --iso) may be at any gain: each
    // is a level of its own.
    let mut isos: Vec<Option<u32>> = frames.iter().filter_map(|f| f.iso.map(Some)).collect();
    isos.sort();
    isos.dedup();
    let mut groups: Vec<(Option<u32>, Vec<&Measured>)> = isos
        .into_iter()
        .map(|iso| (iso, frames.iter().filter(|f| f.iso == iso).collect()))
        .collect();
    groups.extend(
        frames
            .iter()
            .filter(|f| f.iso.is_none())
            .map(|f| (None, vec![f])),
    );
    let mut levels = Vec::new();
    for (iso, group) in groups {
        let mut level = Level {
            iso,
            a: [0.0; 3],
            b: [0.0; 3],
            frames: group.iter().map(|f| f.name.clone()).collect(),
        };
        for c in 0..3 {
            let pts: Vec<BinPoint> = group.iter().flat_map(|f| f.fit.points[c].clone()).collect();
            let (ac, bc, _) = raw_estimator::fit_line(&pts);
            level.a[c] = ac;
            level.b[c] = bc;
        }
        if group.len() > 1 {
            let p = level.profile();
            println!(
                "pooled ISO {}: {} frames, std@{MID_GREY} R {:.5} G {:.5} B {:.5}",
                iso.map_or("?".into(), |i| i.to_string()),
                group.len(),
                std_at(&p, 0, MID_GREY),
                std_at(&p, 1, MID_GREY),
                std_at(&p, 2, MID_GREY)
            );
        }
        levels.push(level);
    }
    let prof = CameraNoiseProfile {
        version: profile::VERSION,
        make,
        model,
        notes: a.notes.clone(),
        iso_fit: profile::fit_iso(&levels),
        levels,
    };
    let text = prof.to_yaml()?;
    // Round-trip check before writing: what we write, the stage can read.
    CameraNoiseProfile::parse(&text, &a.output)?;
    write_text(&a.output, &text)?;
    Ok(0)
}

/// Normalised level (1.0 = white) from which a flat's photosite counts as
/// clipped and is left out of the fit.
pub const LSC_CLIPPED: f32 = 0.98;

/// The lens-shading fit of one flat field.
#[derive(Debug, Clone)]
pub struct FlatFit {
    /// Gains per Bayer colour (R, Gr, Gb, B; see
    /// [`lens_shading::site_colour`]), `rows x cols` row-major, on the
    /// grid of [`lens_shading::LscCalibration`].
    pub gains: [Vec<f32>; 4],
    /// The brightest grid level per colour (normalised, 1.0 = white): the
    /// level every point is brought up to.
    pub peak: [f32; 4],
    /// Fraction of the photosites left out as clipped.
    pub clipped: f64,
}

/// The trimmed-mean level of one block of one CFA site, at the mean
/// relative position (v, h) of its samples.
#[derive(Debug, Clone, Copy)]
struct BlockLevel {
    v: f64,
    h: f64,
    level: f64,
}

/// Fits lens-shading gains to a flat field: `m` is a normalised mosaic
/// (`black_level` applied) of an evenly lit, unclipped surface.
///
/// Per CFA site, the frame is cut into blocks (up to 4 x 4 per grid
/// interval) and each block's level is the mean of the middle 80% of its
/// unclipped photosites (robust to dust and hot pixels; photosites at or
/// above [`LSC_CLIPPED`] are left out). Each grid point's level is then a
/// weighted least-squares quadratic surface through the block levels
/// within 1.5 grid intervals (2 when the blocks are whole intervals) of
/// it, evaluated at the point: this smooths lightly and reaches the
/// points on the frame's edges without the bias of one-sided averages.
/// The gain is the colour's brightest grid level over the point's level,
/// so gains are >= 1 and the centre's white balance is kept.
pub fn fit_flat(m: &Mosaic, rows: usize, cols: usize) -> std::result::Result<FlatFit, String> {
    use rayon::prelude::*;
    let (w, h) = (m.width, m.height);
    if rows < 2 || cols < 2 {
        return Err(format!("grid {cols}x{rows}: needs at least 2x2 points"));
    }
    if m.scale != crate::frame::MosaicScale::Normalized {
        return Err("the flat must be black-level corrected".into());
    }
    if h < 4 * (rows - 1) || w < 4 * (cols - 1) {
        return Err(format!(
            "the {w}x{h} frame is too small for a {cols}x{rows} grid"
        ));
    }
    let sub = (h / (8 * (rows - 1))).min(w / (8 * (cols - 1))).clamp(1, 4);
    let (nbv, nbh) = (sub * (rows - 1), sub * (cols - 1));
    let block_of = |p: usize, n: usize, nb: usize| {
        (((p as f64 + 0.5) / n as f64 * nb as f64) as usize).min(nb - 1)
    };
    let bx: Vec<usize> = (0..w).map(|x| block_of(x, w, nbh)).collect();
    let by: Vec<usize> = (0..h).map(|y| block_of(y, h, nbv)).collect();
    // Per block row: per (site, block column) the block level, and the
    // clipped / total photosite counts.
    type Row = (Vec<Option<BlockLevel>>, usize, usize);
    let block_rows: Vec<Row> = (0..nbv)
        .into_par_iter()
        .map(|bi| {
            let mut vals: Vec<Vec<f32>> = vec![Vec::new(); 4 * nbh];
            let mut pos = vec![(0f64, 0f64); 4 * nbh];
            let mut totals = vec![0usize; 4 * nbh];
            let mut clipped = 0usize;
            for y in (0..h).filter(|&y| by[y] == bi) {
                let row = m.data.f32_range(y * w, w);
                for (x, &v) in row.iter().enumerate() {
                    let k = lens_shading::site_colour(m.cfa, y & 1, x & 1) * nbh + bx[x];
                    totals[k] += 1;
                    if !v.is_finite() || v >= LSC_CLIPPED {
                        clipped += 1;
                        continue;
                    }
                    vals[k].push(v);
                    pos[k].0 += (y as f64 + 0.5) / h as f64;
                    pos[k].1 += (x as f64 + 0.5) / w as f64;
                }
            }
            let levels = vals
                .iter_mut()
                .zip(&pos)
                .zip(&totals)
                .map(|((v, &(sv, sh)), &total)| {
                    let n = v.len();
                    if n < 2 || 2 * n < total {
                        return None;
                    }
                    // Trimmed mean: the middle 80% of the sorted levels.
                    v.sort_unstable_by(f32::total_cmp);
                    let cut = n / 10;
                    let kept = &v[cut..n - cut];
                    let level = kept.iter().map(|&x| x as f64).sum::<f64>() / kept.len() as f64;
                    Some(BlockLevel {
                        v: sv / n as f64,
                        h: sh / n as f64,
                        level,
                    })
                })
                .collect();
            (levels, clipped, totals.iter().sum())
        })
        .collect();
    let clipped = block_rows.iter().map(|r| r.1).sum::<usize>() as f64
        / block_rows.iter().map(|r| r.2).sum::<usize>().max(1) as f64;
    if clipped > 0.5 {
        return Err(format!(
            "{:.0}% of the photosites are clipped: expose the flat lower",
            100.0 * clipped
        ));
    }
    // Fit windows in grid intervals: 1.5, or 2 when a block is a whole
    // interval (small frames).
    let win = if sub >= 2 { 1.5 } else { 2.0 };
    let (sv, sh) = (1.0 / (rows - 1) as f64, 1.0 / (cols - 1) as f64);
    let mut gains: [Vec<f32>; 4] = Default::default();
    let mut peak = [0f32; 4];
    for c in 0..4 {
        let mut levels = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                let (gv, gh) = (i as f64 * sv, j as f64 * sh);
                let near: Vec<(f64, f64, f64)> = block_rows
                    .iter()
                    .flat_map(|r| r.0[c * nbh..(c + 1) * nbh].iter().flatten())
                    .map(|b| ((b.v - gv) / sv, (b.h - gh) / sh, b.level))
                    .filter(|&(dv, dh, _)| dv.abs() <= win && dh.abs() <= win)
                    .collect();
                let level = local_fit(&near, win).ok_or_else(|| {
                    format!(
                        "no usable photosites of colour {} near grid point ({i}, {j}) (clipped or missing)",
                        lens_shading::COLOURS[c]
                    )
                })?;
                levels.push(level);
            }
        }
        let top = levels.iter().cloned().fold(0.0, f64::max);
        if top < 0.02 {
            return Err(format!(
                "the flat is too dark: colour {} peaks at {:.4} of white",
                lens_shading::COLOURS[c],
                top
            ));
        }
        let g: Vec<f32> = levels
            .iter()
            .map(|&l| (top / l.max(top / 1e3)) as f32)
            .collect();
        if let Some(worst) = g.iter().cloned().find(|v| !(v.is_finite() && *v <= 16.0)) {
            return Err(format!(
                "colour {} needs a gain of {worst:.1} (> 16): the flat is not evenly lit or not a flat",
                lens_shading::COLOURS[c]
            ));
        }
        gains[c] = g;
        peak[c] = top as f32;
    }
    Ok(FlatFit {
        gains,
        peak,
        clipped,
    })
}

/// The value at (0, 0) of a weighted least-squares surface through
/// `pts` (dv, dh, level), offsets in grid intervals within `win`: a
/// quadratic with 9 points or more, a plane with 4 or more, else the
/// weighted mean; `None` without points or for a singular system.
fn local_fit(pts: &[(f64, f64, f64)], win: f64) -> Option<f64> {
    let weight = |dv: f64, dh: f64| (1.0 - 0.5 * dv.abs() / win) * (1.0 - 0.5 * dh.abs() / win);
    let terms = match pts.len() {
        0 => return None,
        1..=3 => 1,
        4..=8 => 3,
        _ => 6,
    };
    let basis = |dv: f64, dh: f64| [1.0, dv, dh, dv * dv, dv * dh, dh * dh];
    let mut a = [[0f64; 7]; 6];
    for &(dv, dh, l) in pts {
        let (b, wt) = (basis(dv, dh), weight(dv, dh));
        for r in 0..terms {
            for k in 0..terms {
                a[r][k] += wt * b[r] * b[k];
            }
            a[r][6] += wt * b[r] * l;
        }
    }
    // Gaussian elimination with partial pivoting on the augmented rows.
    for col in 0..terms {
        let piv = (col..terms).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        let pivot = a[col];
        for (r, row) in a.iter_mut().enumerate().take(terms) {
            if r != col {
                let f = row[col] / pivot[col];
                for (x, p) in row[col..].iter_mut().zip(&pivot[col..]) {
                    *x -= f * p;
                }
            }
        }
    }
    let v = a[0][6] / a[0][0];
    v.is_finite().then_some(v)
}

/// Parses `--grid COLSxROWS` into (rows, cols).
fn parse_grid(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::invalid(format!(
            "--grid {s}: expected COLSxROWS, e.g. 17x13, each 2..=257"
        ))
    };
    let (c, r) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let n = |t: &str| {
        t.trim()
            .parse::<usize>()
            .ok()
            .filter(|v| (2..=257).contains(v))
    };
    Ok((n(r).ok_or_else(bad)?, n(c).ok_or_else(bad)?))
}

/// One fitted flat.
struct FittedFlat {
    name: String,
    ct: f32,
    fit: FlatFit,
}

fn run_lsc(a: LscCalibArgs) -> Result<i32> {
    use lens_shading::{LscCalibration, LscTable, COLOURS};
    refuse_input_as_output(&a.out, &a.inputs)?;
    let (rows, cols) = parse_grid(&a.grid)?;
    if a.ct.len() > 1 && a.ct.len() != a.inputs.len() {
        return Err(Error::invalid(format!(
            "--ct is given {} times for {} inputs (once for all, or once per input)",
            a.ct.len(),
            a.inputs.len()
        )));
    }
    if let Some(ct) = a.ct.iter().find(|t| !(1000.0..=40000.0).contains(*t)) {
        return Err(Error::invalid(format!("--ct {ct}: outside 1000..40000 K")));
    }
    let (mut make, mut model) = (String::new(), String::new());
    let mut flats = Vec::new();
    for (k, path) in a.inputs.iter().enumerate() {
        let frame = open_input(&a.inputs, k, &a.frames)?;
        if k == 0 {
            make = frame.meta.make.trim().to_string();
            model = frame.meta.model.trim().to_string();
        }
        let ct = match a.ct.get(k).or(a.ct.first()) {
            Some(&ct) => ct,
            None => frame.meta.as_shot_cct().ok_or_else(|| {
                Error::invalid(format!(
                    "{}: no colour temperature in its metadata (no as-shot white balance with \
                     colour matrices): pass --ct K",
                    path.display()
                ))
            })?,
        };
        let mosaic = normalised_mosaic(frame)?;
        let fit = fit_flat(&mosaic, rows, cols)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let name = display_name(path);
        println!("{name}  ({ct:.0} K, {:.2}% clipped)", 100.0 * fit.clipped);
        for (c, cn) in COLOURS.iter().enumerate() {
            let g = &fit.gains[c];
            let max = g.iter().cloned().fold(0.0, f32::max);
            let corner = g.first().copied().unwrap_or(1.0);
            println!(
                "  {cn:<2}: peak {:.4} of white, gain up to {max:.3}, top-left corner {corner:.3}",
                fit.peak[c]
            );
        }
        flats.push(FittedFlat { name, ct, fit });
    }
    // Flats within 1% of each other's CT make one table (mean gains).
    let mut tables: Vec<LscTable> = Vec::new();
    let mut used = vec![false; flats.len()];
    for k in 0..flats.len() {
        if used[k] {
            continue;
        }
        let members: Vec<usize> = (k..flats.len())
            .filter(|&j| !used[j] && (flats[j].ct - flats[k].ct).abs() <= 0.01 * flats[k].ct)
            .collect();
        members.iter().for_each(|&j| used[j] = true);
        let group: Vec<&FittedFlat> = members.iter().map(|&j| &flats[j]).collect();
        let n = group.len() as f32;
        let ct = (group.iter().map(|f| f.ct).sum::<f32>() / n).round();
        let mean: [Vec<f32>; 4] = std::array::from_fn(|c| {
            (0..rows * cols)
                .map(|p| group.iter().map(|f| f.fit.gains[c][p]).sum::<f32>() / n)
                .collect()
        });
        if group.len() > 1 {
            let names: Vec<&str> = group.iter().map(|f| f.name.as_str()).collect();
            println!("table {ct} K: mean of {}", names.join(", "));
        }
        tables.push(LscTable::from_flat(ct, rows, cols, &mean));
    }
    if a.merge && a.out.exists() {
        let old = LscCalibration::load(&a.out)?;
        if old.dims() != (rows, cols) {
            return Err(Error::invalid(format!(
                "{}: its grid is {}x{} (COLSxROWS), not {cols}x{rows}: cannot merge",
                a.out.display(),
                old.dims().1,
                old.dims().0
            )));
        }
        let new_cts: Vec<f32> = tables.iter().map(|t| t.ct).collect();
        for t in old.tables {
            if new_cts.iter().all(|&n| (n - t.ct).abs() > 0.01 * n) {
                println!("kept table {} K from {}", t.ct, a.out.display());
                tables.push(t);
            }
        }
    }
    tables.sort_by(|x, y| x.ct.total_cmp(&y.ct));
    let cal = LscCalibration {
        version: lens_shading::VERSION,
        make,
        model,
        notes: a.notes.clone(),
        tables,
    };
    let text = cal.to_yaml();
    // Round-trip check before writing: what we write, the stage can read.
    LscCalibration::parse(&text, &a.out)?;
    write_text(&a.out, &text)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::raw::{CfaPattern, RawMeta};

    /// (1 + r^2)^-2 falloff per colour (R, Gr, Gb, B), at pixel-edge
    /// coordinates (px, py) of a w x h frame.
    fn vignette(c: usize, px: f64, py: f64, w: usize, h: usize) -> f64 {
        let hd = ((w * w + h * h) as f64).sqrt() / 2.0;
        let f = [1.2, 1.35, 1.3, 1.5][c] * hd;
        let cx = if c == 0 { 0.45 } else { 0.5 } * w as f64;
        let r2 = ((px - cx).powi(2) + (py - 0.5 * h as f64).powi(2)) / (f * f);
        1.0 / (1.0 + r2).powi(2)
    }

    #[test]
    fn fit_recovers_the_injected_vignetting() {
        let (w, h, rows, cols) = (640, 480, 13, 17);
        let cfa = CfaPattern::Gbrg;
        // Deterministic noise (+-2% of the level) and a few hot pixels.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12345);
        let mut noise = move || rng.random::<f64>() - 0.5;
        let mut data = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let c = lens_shading::site_colour(cfa, y & 1, x & 1);
                let v = 0.6
                    * vignette(c, x as f64 + 0.5, y as f64 + 0.5, w, h)
                    * (1.0 + 0.04 * noise());
                data.push(if (x * 7 + y * 13) % 997 == 0 {
                    1.0
                } else {
                    v as f32
                });
            }
        }
        let m = Mosaic::normalized(w, h, cfa, data, RawMeta::bayer("flat", w, h, cfa));
        let fit = fit_flat(&m, rows, cols).unwrap();
        let mut worst = 0f64;
        for c in 0..4 {
            // The injected map, normalised to its brightest grid point.
            let inv: Vec<f64> = (0..rows * cols)
                .map(|p| {
                    let (i, j) = (p / cols, p % cols);
                    let (py, px) = (
                        i as f64 / (rows - 1) as f64 * h as f64,
                        j as f64 / (cols - 1) as f64 * w as f64,
                    );
                    1.0 / vignette(c, px, py, w, h)
                })
                .collect();
            let min = inv.iter().cloned().fold(f64::MAX, f64::min);
            for (g, t) in fit.gains[c].iter().zip(&inv) {
                worst = worst.max((*g as f64 / (t / min) - 1.0).abs());
            }
        }
        println!("fit_flat: max gain error {:.3}%", 100.0 * worst);
        assert!(worst < 0.01, "max gain error {worst}");
        assert!(fit.clipped > 0.0 && fit.clipped < 0.01, "{}", fit.clipped);
    }

    #[test]
    fn clipped_dark_or_tiny_flats_are_refused() {
        let flat = |w: usize, h: usize, v: f32| {
            Mosaic::normalized(
                w,
                h,
                CfaPattern::Rggb,
                vec![v; w * h],
                RawMeta::bayer("flat", w, h, CfaPattern::Rggb),
            )
        };
        assert!(fit_flat(&flat(200, 150, 1.0), 13, 17)
            .unwrap_err()
            .contains("clipped"));
        assert!(fit_flat(&flat(200, 150, 0.001), 13, 17)
            .unwrap_err()
            .contains("too dark"));
        assert!(fit_flat(&flat(40, 30, 0.5), 13, 17)
            .unwrap_err()
            .contains("too small"));
        // An even flat: all gains 1.
        let fit = fit_flat(&flat(200, 150, 0.5), 13, 17).unwrap();
        assert!(fit.gains.iter().flatten().all(|g| (g - 1.0).abs() < 1e-6));
        assert_eq!(parse_grid("17x13").unwrap(), (13, 17));
        assert!(
            parse_grid("17").is_err() && parse_grid("1x5").is_err() && parse_grid("axb").is_err()
        );
    }
}
