//! `rawgraph calibrate dpc DARKS... --out defects.txt [--flats FLATS...]
//! [--sigma 6] [--min-frames-frac 0.5]`: finds defective photosites from
//! dark and flat frames and writes the static map the `defect_correct`
//! op reads (`map: FILE`, `x y` per line in mosaic coordinates).
//!
//! Method (the usual sensor-test recipe, e.g. EMVA 1288's defect-pixel
//! counts, with a median/MAD scale instead of a mean/std one so the
//! defects do not inflate their own threshold):
//! * darks (lens cap, any exposure): per frame and per CFA site (R, Gr,
//!   Gb, B) the median and the MAD of the black-subtracted levels; a
//!   photosite is above in that frame when it exceeds
//!   `median + max(sigma * 1.4826 * MAD, DARK_FLOOR)` (hot or stuck
//!   bright);
//! * flats (evenly lit mid-grey frames, not clipped): each photosite's
//!   level relative to the one its 5x5 same-colour neighbourhood (24
//!   sites, fewer on the border) predicts: their median after removing
//!   the local gradient, so vignetting flags nothing, corners included; per
//!   frame and CFA site, the same median/MAD rule on that relative level
//!   below (dead, stuck dark) and above (stuck bright), with
//!   [`FLAT_FLOOR`] as the floor;
//! * a photosite is listed when it is flagged in at least
//!   `--min-frames-frac` of the darks (or of the flats), and in at least
//!   one: random noise spikes of a single frame are not listed unless
//!   that frame is the only one.

use std::path::PathBuf;

use clap::Args;
use rayon::prelude::*;

use super::{display_name, normalised_mosaic, open_input, refuse_input_as_output, write_text};
use super::{CalibInputs, LSC_CLIPPED};
use crate::error::{Error, Result};
use crate::frame::{Mosaic, MosaicScale};
use crate::stages::defect_correct;
use crate::stages::lens_shading::{site_colour, COLOURS};

#[derive(Debug, Args)]
pub struct DpcCalibArgs {
    /// Dark frames (lens cap on, any exposure), raw files or headerless
    /// dumps of ONE camera; may be left out when --flats are given.
    pub darks: Vec<PathBuf>,
    /// Defect map to write (the defect_correct op's `map:`).
    #[arg(short = 'o', long = "out", visible_alias = "output")]
    pub out: PathBuf,
    /// Flat frames (evenly lit, mid-grey, not clipped) to find dead and
    /// stuck photosites too.
    #[arg(long, num_args = 1..)]
    pub flats: Vec<PathBuf>,
    /// Threshold in robust standard deviations (1.4826 x MAD) of each
    /// frame's CFA site.
    #[arg(long, default_value_t = 6.0)]
    pub sigma: f32,
    /// Fraction of the darks (and of the flats) in which a photosite must
    /// be flagged to be listed (at least one frame).
    #[arg(long, default_value_t = 0.5)]
    pub min_frames_frac: f32,
    #[command(flatten)]
    pub frames: CalibInputs,
}

/// MAD of a Gaussian times this is its standard deviation.
pub const MAD_TO_SIGMA: f32 = 1.4826;

/// Smallest excess (normalised, 1.0 = white; about 4 DN of a 12-bit
/// sensor) over a dark's median that counts as hot, so a noiseless dark
/// (MAD 0) flags nothing.
pub const DARK_FLOOR: f32 = 0.001;

/// A dark whose median level (normalised) of some CFA site is above this
/// is refused as not dark (about 190 DN of a 12-bit sensor).
pub const DARK_MAX_LEVEL: f32 = 0.05;

/// Smallest relative deviation from the local same-colour median (0.02 =
/// 2 % of the local level) that counts as dead or stuck bright in a flat.
pub const FLAT_FLOOR: f32 = 0.02;

/// Half-size of the flat neighbourhood in same-colour sites (2: 5x5 sites,
/// 9x9 photosites).
const FLAT_RADIUS: isize = 2;

/// A flat whose median level (normalised) of some CFA site is below this
/// is too dark to measure.
const FLAT_MIN_LEVEL: f32 = 0.02;

/// What kind of defect a flag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Above its dark frames' level (hot, stuck bright).
    Hot,
    /// Below its flat neighbourhood (dead, stuck dark).
    Dead,
    /// Above its flat neighbourhood (stuck bright).
    Bright,
}

/// One frame's thresholds per CFA site (R, Gr, Gb, B): the median and
/// the flagging margin above (and, for flats, below) it.
#[derive(Debug, Clone, Copy)]
pub struct FrameStats {
    /// Median level per site (darks: normalised, 1.0 = white; flats:
    /// relative deviation from the local median).
    pub median: [f32; 4],
    /// `max(sigma * 1.4826 * MAD, floor)` per site, same units.
    pub margin: [f32; 4],
    /// Photosites flagged (above, below) in this frame.
    pub flagged: (usize, usize),
}

/// Accumulates per-photosite flag counts over frames of one size.
#[derive(Debug)]
pub struct Detector {
    width: usize,
    height: usize,
    sigma: f32,
    /// Frames in which each photosite was above its dark's threshold.
    hot: Vec<u16>,
    /// Frames in which each photosite was below / above its flat
    /// neighbourhood.
    dead: Vec<u16>,
    bright: Vec<u16>,
    darks: usize,
    flats: usize,
}

/// The defects found, as (x, y) mosaic coordinates sorted by row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DefectMap {
    pub hot: Vec<(usize, usize)>,
    pub dead: Vec<(usize, usize)>,
    pub bright: Vec<(usize, usize)>,
}

impl DefectMap {
    /// All defects, each once, sorted by (y, x) as `defect_correct`'s
    /// parser returns them.
    pub fn all(&self) -> Vec<(usize, usize)> {
        let mut v: Vec<_> = [&self.hot, &self.dead, &self.bright]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        v.sort_by_key(|&(x, y)| (y, x));
        v.dedup();
        v
    }
}

/// Median and robust standard deviation (1.4826 x MAD) of `v`, which is
/// reordered; (0, 0) when empty.
fn robust(v: &mut [f32]) -> (f32, f32) {
    let Some(med) = median(v) else {
        return (0.0, 0.0);
    };
    v.iter_mut().for_each(|x| *x = (*x - med).abs());
    (med, MAD_TO_SIGMA * median(v).unwrap_or(0.0))
}

/// The CFA site (R, Gr, Gb, B) of each of the four 2x2 phases, indexed
/// `(y & 1) * 2 + (x & 1)`.
fn sites(m: &Mosaic) -> [usize; 4] {
    std::array::from_fn(|p| site_colour(m.cfa, p / 2, p % 2))
}

/// Per-site robust thresholds of `values` (a `w`-wide mosaic-shaped
/// array; `site` as from [`sites`]): median and margin = `max(sigma *
/// robust std, floor)`; non-finite values are left out.
fn site_stats(values: &[f32], w: usize, site: [usize; 4], sigma: f32, floor: f32) -> FrameStats {
    let mut planes: [Vec<f32>; 4] = Default::default();
    for (row, line) in values.chunks(w).enumerate() {
        for (x, &v) in line.iter().enumerate() {
            if v.is_finite() {
                planes[site[(row & 1) * 2 + (x & 1)]].push(v);
            }
        }
    }
    let mut stats = FrameStats {
        median: [0.0; 4],
        margin: [0.0; 4],
        flagged: (0, 0),
    };
    for (c, plane) in planes.iter_mut().enumerate() {
        let (med, sd) = robust(plane);
        stats.median[c] = med;
        stats.margin[c] = (sigma * sd).max(floor);
    }
    stats
}

/// Counts the flags `stats` raises on `values`: `hi[i] += 1` where
/// `values[i] > median + margin`, and with `lo`, `lo[i] += 1` where
/// `values[i] < median - margin`; the totals go to `stats.flagged`.
/// Non-finite values are never flagged.
fn flag_outliers(
    values: &[f32],
    w: usize,
    site: [usize; 4],
    stats: &mut FrameStats,
    hi: &mut [u16],
    mut lo: Option<&mut [u16]>,
) {
    for (i, &v) in values.iter().enumerate() {
        let c = site[((i / w) & 1) * 2 + ((i % w) & 1)];
        let (med, margin) = (stats.median[c], stats.margin[c]);
        if v > med + margin {
            hi[i] = hi[i].saturating_add(1);
            stats.flagged.0 += 1;
        } else if v < med - margin {
            if let Some(lo) = lo.as_deref_mut() {
                lo[i] = lo[i].saturating_add(1);
                stats.flagged.1 += 1;
            }
        }
    }
}

/// Median (the upper one of an even count) of `v`, which is reordered;
/// `None` when empty.
fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    Some(*v.select_nth_unstable_by(mid, f32::total_cmp).1)
}

/// Sites per side of the flat neighbourhood (5: 5x5 same-colour sites).
const FLAT_SIDE: usize = 2 * FLAT_RADIUS as usize + 1;

/// The level a photosite should have, from its same-colour neighbours
/// `nb` (`nb[dy][dx]`, offsets in sites from -[`FLAT_RADIUS`], NaN where
/// missing, the centre left out): the local gradient per site along x
/// and y is the median of the differences of adjacent neighbours, and the
/// level is the median of the neighbours moved to the centre along it.
/// Removing the gradient keeps the one-sided neighbourhoods of the
/// border and corners unbiased on a vignetted flat; medians keep a
/// defect next to the photosite from moving the estimate. `None`
/// without neighbours.
fn predicted_level(nb: &[[f32; FLAT_SIDE]; FLAT_SIDE]) -> Option<f32> {
    const N: usize = FLAT_SIDE * FLAT_SIDE;
    let (mut gx, mut gy) = ([0f32; N], [0f32; N]);
    let (mut nx, mut ny) = (0, 0);
    let horizontal = nb
        .iter()
        .flat_map(|row| row.windows(2).map(|p| p[1] - p[0]));
    for d in horizontal.filter(|d| d.is_finite()) {
        gx[nx] = d;
        nx += 1;
    }
    let vertical = nb
        .windows(2)
        .flat_map(|rows| rows[0].iter().zip(&rows[1]).map(|(a, b)| b - a));
    for d in vertical.filter(|d| d.is_finite()) {
        gy[ny] = d;
        ny += 1;
    }
    let gx = median(&mut gx[..nx]).unwrap_or(0.0);
    let gy = median(&mut gy[..ny]).unwrap_or(0.0);
    let mut pred = [0f32; N];
    let mut n = 0;
    for (j, row) in nb.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            if v.is_finite() {
                let (dx, dy) = (i as f32 - FLAT_RADIUS as f32, j as f32 - FLAT_RADIUS as f32);
                pred[n] = v - gx * dx - gy * dy;
                n += 1;
            }
        }
    }
    median(&mut pred[..n])
}

/// Each photosite's level relative to the one predicted from its 5x5
/// same-colour neighbourhood ([`predicted_level`]; fewer sites on the
/// border): `v / predicted - 1`, 0 without neighbours or where the
/// prediction is black. `m` is a normalised flat.
pub fn flat_residuals(m: &Mosaic) -> Vec<f32> {
    let (w, h) = (m.width, m.height);
    let r = FLAT_RADIUS;
    let data = m.data.f32();
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w.max(1))
        .enumerate()
        .for_each(|(y, row)| {
            for (x, o) in row.iter_mut().enumerate() {
                let mut nb = [[f32::NAN; FLAT_SIDE]; FLAT_SIDE];
                for (j, nrow) in nb.iter_mut().enumerate() {
                    let sy = y as isize + 2 * (j as isize - r);
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    for (i, v) in nrow.iter_mut().enumerate() {
                        let sx = x as isize + 2 * (i as isize - r);
                        if (i as isize, j as isize) != (r, r) && sx >= 0 && sx < w as isize {
                            *v = data[sy as usize * w + sx as usize];
                        }
                    }
                }
                if let Some(p) = predicted_level(&nb).filter(|&p| p > 1e-4) {
                    *o = data[y * w + x] / p - 1.0;
                }
            }
        });
    out
}

impl Detector {
    /// A detector for `width x height` mosaics flagging beyond `sigma`
    /// robust standard deviations.
    pub fn new(width: usize, height: usize, sigma: f32) -> Detector {
        Detector {
            width,
            height,
            sigma,
            hot: vec![0; width * height],
            dead: Vec::new(),
            bright: Vec::new(),
            darks: 0,
            flats: 0,
        }
    }

    /// Refuses a mosaic of another size or not black-level corrected.
    fn check(&self, m: &Mosaic) -> std::result::Result<(), String> {
        if (m.width, m.height) != (self.width, self.height) {
            return Err(format!(
                "{}x{} differs from the {}x{} of the first frame (one sensor mode per map)",
                m.width, m.height, self.width, self.height
            ));
        }
        if m.scale != MosaicScale::Normalized || m.data.len() != m.width * m.height {
            return Err("not a black-level-corrected mosaic".into());
        }
        Ok(())
    }

    /// Counts the photosites of a normalised dark frame above its
    /// thresholds; refuses a frame that is not dark (a site's median above
    /// [`DARK_MAX_LEVEL`]).
    pub fn add_dark(&mut self, m: &Mosaic) -> std::result::Result<FrameStats, String> {
        self.check(m)?;
        let site = sites(m);
        let mut stats = site_stats(&m.data.f32(), m.width, site, self.sigma, DARK_FLOOR);
        if let Some(c) = (0..4).find(|&c| stats.median[c] > DARK_MAX_LEVEL) {
            return Err(format!(
                "not a dark frame: the {} sites' median is {:.4} of white (> {DARK_MAX_LEVEL}; lens cap on?)",
                COLOURS[c], stats.median[c]
            ));
        }
        flag_outliers(
            &m.data.f32(),
            m.width,
            site,
            &mut stats,
            &mut self.hot,
            None,
        );
        self.darks += 1;
        Ok(stats)
    }

    /// Counts the photosites of a normalised flat frame below and above
    /// their neighbourhood; refuses a dark or clipped flat.
    pub fn add_flat(&mut self, m: &Mosaic) -> std::result::Result<FrameStats, String> {
        self.check(m)?;
        let site = sites(m);
        let levels = site_stats(&m.data.f32(), m.width, site, 0.0, 0.0).median;
        for (c, &level) in levels.iter().enumerate() {
            if level < FLAT_MIN_LEVEL {
                return Err(format!(
                    "too dark for a flat: the {} sites' median is {level:.4} of white (>= {FLAT_MIN_LEVEL} needed)",
                    COLOURS[c]
                ));
            }
            if level >= LSC_CLIPPED {
                return Err(format!(
                    "clipped: the {} sites' median is {level:.4} of white: expose the flat lower",
                    COLOURS[c]
                ));
            }
        }
        if self.dead.is_empty() {
            self.dead = vec![0; self.width * self.height];
            self.bright = vec![0; self.width * self.height];
        }
        self.flats += 1;
        let residuals = flat_residuals(m);
        let mut stats = site_stats(&residuals, m.width, site, self.sigma, FLAT_FLOOR);
        flag_outliers(
            &residuals,
            m.width,
            site,
            &mut stats,
            &mut self.bright,
            Some(&mut self.dead),
        );
        Ok(stats)
    }

    /// How many of `n` frames a photosite must be flagged in: at least
    /// `frac * n`, and at least one.
    pub fn needed(frac: f32, n: usize) -> u16 {
        let k = (f64::from(frac) * n as f64 - 1e-9).ceil().max(1.0);
        k.min(f64::from(u16::MAX)) as u16
    }

    /// The photosites flagged in at least `frac` of the darks / flats.
    pub fn finish(&self, frac: f32) -> DefectMap {
        let w = self.width.max(1);
        let pick = |counts: &[u16], n: usize| -> Vec<(usize, usize)> {
            if n == 0 {
                return Vec::new();
            }
            let need = Detector::needed(frac, n);
            counts
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c >= need)
                .map(|(i, _)| (i % w, i / w))
                .collect()
        };
        DefectMap {
            hot: pick(&self.hot, self.darks),
            dead: pick(&self.dead, self.flats),
            bright: pick(&self.bright, self.flats),
        }
    }
}

/// Keeps user text (file names, arguments) on one comment line.
fn one_line(s: &str) -> String {
    s.replace('\n', "\\n").replace('\r', "\\r")
}

/// The command line as typed (arguments with spaces quoted).
fn command_line() -> String {
    let args: Vec<String> = std::env::args_os()
        .map(|a| {
            let a = a.to_string_lossy().to_string();
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect();
    one_line(&args.join(" "))
}

/// One header line per frame: its kind, name and thresholds per site.
fn frame_line(kind: &str, name: &str, s: &FrameStats) -> String {
    let sites: Vec<String> = COLOURS
        .iter()
        .enumerate()
        .map(|(c, cn)| format!("{cn} {:.5}+-{:.5}", s.median[c], s.margin[c]))
        .collect();
    let flagged = match kind {
        "dark" => format!("{} above", s.flagged.0),
        _ => format!("{} above, {} below", s.flagged.0, s.flagged.1),
    };
    format!(
        "# {kind} {}: median+-margin {}; {flagged}",
        one_line(name),
        sites.join(", ")
    )
}

/// The map file: header comments, then `x y` per defect sorted by row.
fn map_text(
    a: &DpcCalibArgs,
    size: (usize, usize),
    det: &Detector,
    lines: &[String],
    map: &DefectMap,
) -> String {
    let all = map.all();
    let need = |n: usize| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{} of {n}", Detector::needed(a.min_frames_frac, n))
        }
    };
    let mut t = String::new();
    t.push_str(
        "# rawgraph defect map (defect_correct `map:`): `x y` per line, mosaic coordinates\n",
    );
    t.push_str(&format!("# command: {}\n", command_line()));
    t.push_str(&format!(
        "# frames: {} dark, {} flat; mosaic {}x{}\n",
        det.darks, det.flats, size.0, size.1
    ));
    t.push_str(&format!(
        "# thresholds: median + max({} x {MAD_TO_SIGMA} x MAD, floor) per frame and CFA site; \
         dark floor {DARK_FLOOR} of white, flat floor {FLAT_FLOOR} of the level predicted by the 5x5 same-colour sites; \
         listed when flagged in {} darks, {} flats (--min-frames-frac {})\n",
        a.sigma,
        need(det.darks),
        need(det.flats),
        a.min_frames_frac
    ));
    for l in lines {
        t.push_str(l);
        t.push('\n');
    }
    t.push_str(&format!(
        "# counts: hot {}, dead {}, bright {}; {} listed\n",
        map.hot.len(),
        map.dead.len(),
        map.bright.len(),
        all.len()
    ));
    // `x y 0`: the third column is dcraw -P's timestamp (0 = always
    // applies), so dcraw and LibRaw read the file too; defect_correct
    // ignores it.
    t.push_str("# x y timestamp (dcraw -P format)\n");
    for (x, y) in &all {
        t.push_str(&format!("{x} {y} 0\n"));
    }
    t
}

pub fn run_dpc(a: DpcCalibArgs) -> Result<i32> {
    if a.darks.is_empty() && a.flats.is_empty() {
        return Err(Error::invalid(
            "calibrate dpc: no frames: give dark frames (DARKS...) and/or --flats FLATS...",
        ));
    }
    if !(a.sigma.is_finite() && (1.0..=100.0).contains(&a.sigma)) {
        return Err(Error::invalid(format!(
            "--sigma {}: outside 1..100",
            a.sigma
        )));
    }
    if !(a.min_frames_frac > 0.0 && a.min_frames_frac <= 1.0) {
        return Err(Error::invalid(format!(
            "--min-frames-frac {}: outside (0, 1]",
            a.min_frames_frac
        )));
    }
    // Darks then flats, so --sidecars is one per input in that order.
    let inputs: Vec<PathBuf> = a.darks.iter().chain(&a.flats).cloned().collect();
    refuse_input_as_output(&a.out, &inputs)?;
    let mut det: Option<Detector> = None;
    let mut lines = Vec::new();
    for (k, path) in inputs.iter().enumerate() {
        let is_dark = k < a.darks.len();
        let mosaic = normalised_mosaic(open_input(&inputs, k, &a.frames)?)?;
        let d = det.get_or_insert_with(|| Detector::new(mosaic.width, mosaic.height, a.sigma));
        let stats = if is_dark {
            d.add_dark(&mosaic)
        } else {
            d.add_flat(&mosaic)
        }
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let kind = if is_dark { "dark" } else { "flat" };
        let line = frame_line(kind, &display_name(path), &stats);
        println!("{}", line.trim_start_matches("# "));
        lines.push(line);
    }
    let det = det.ok_or_else(|| Error::invalid("calibrate dpc: no frames"))?;
    let map = det.finish(a.min_frames_frac);
    let text = map_text(&a, (det.width, det.height), &det, &lines, &map);
    // Round-trip check before writing: what we write, the op reads.
    let back = defect_correct::parse_map(&text)
        .map_err(|e| Error::invalid(format!("{}: {e}", a.out.display())))?;
    if back != map.all() {
        return Err(Error::invalid(format!(
            "{}: the map does not read back as written",
            a.out.display()
        )));
    }
    println!(
        "hot {}, dead {}, bright {}: {} defects",
        map.hot.len(),
        map.dead.len(),
        map.bright.len(),
        back.len()
    );
    write_text(&a.out, &text)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{CfaPattern, RawMeta};

    fn mosaic(w: usize, h: usize, data: Vec<f32>) -> Mosaic {
        let cfa = CfaPattern::Grbg;
        Mosaic::normalized(w, h, cfa, data, RawMeta::bayer("t", w, h, cfa))
    }

    #[test]
    fn robust_stats_ignore_outliers() {
        let mut v: Vec<f32> = (0..101).map(|i| (i % 11) as f32).collect();
        v[3] = 1e6;
        let (m, s) = robust(&mut v);
        assert_eq!(m, 5.0);
        assert!((s - 3.0 * MAD_TO_SIGMA).abs() < 1e-5, "{s}");
        assert_eq!(robust(&mut []), (0.0, 0.0));
    }

    #[test]
    fn a_linear_ramp_is_predicted_exactly_in_the_corners_too() {
        let (w, h) = (30, 20);
        let ramp: Vec<f32> = (0..w * h)
            .map(|i| 0.2 + 0.01 * (i % w) as f32 + 0.004 * (i / w) as f32)
            .collect();
        let r = flat_residuals(&mosaic(w, h, ramp));
        let worst = r.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn needed_frames() {
        assert_eq!(Detector::needed(0.5, 1), 1);
        assert_eq!(Detector::needed(0.5, 3), 2);
        assert_eq!(Detector::needed(0.5, 4), 2);
        assert_eq!(Detector::needed(1.0, 5), 5);
        assert_eq!(Detector::needed(0.01, 5), 1);
    }

    #[test]
    fn noiseless_dark_flags_only_the_hot_pixel_per_site() {
        let (w, h) = (20, 10);
        let mut d = vec![0f32; w * h];
        d[3 * w + 7] = 0.0009; // below the floor
        d[5 * w + 4] = 0.01;
        let mut det = Detector::new(w, h, 6.0);
        let s = det.add_dark(&mosaic(w, h, d)).unwrap();
        assert_eq!(s.flagged, (1, 0));
        assert_eq!(det.finish(0.5).hot, vec![(4, 5)]);
        assert!(det
            .add_dark(&mosaic(w, h + 2, vec![0.0; w * (h + 2)]))
            .unwrap_err()
            .contains("20x12 differs from the 20x10"));
        let e = det.add_dark(&mosaic(w, h, vec![0.3; w * h])).unwrap_err();
        assert!(e.contains("not a dark frame"), "{e}");
        assert_eq!(det.finish(0.5).hot, vec![(4, 5)]);
    }

    #[test]
    fn vignetted_flat_flags_its_dead_and_bright_sites_only() {
        let (w, h) = (120, 90);
        let mut d: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - 60.0, (i / w) as f32 - 45.0);
                let v = 0.5 / (1.0 + (x * x + y * y) / 4000.0).powi(2);
                // +-0.5% deterministic texture.
                v * (1.0 + 0.005 * ((i * 7919 % 101) as f32 / 50.0 - 1.0))
            })
            .collect();
        d[1] = 0.0; // dead in the corner
        d[40 * w + 61] *= 0.7;
        d[80 * w + 100] = 0.9;
        let mut det = Detector::new(w, h, 6.0);
        det.add_flat(&mosaic(w, h, d)).unwrap();
        let map = det.finish(0.5);
        assert_eq!(map.dead, vec![(1, 0), (61, 40)]);
        assert_eq!(map.bright, vec![(100, 80)]);
        assert!(map.hot.is_empty());
        assert_eq!(map.all().len(), 3);
        let e = det.add_flat(&mosaic(w, h, vec![0.99; w * h])).unwrap_err();
        assert!(e.contains("clipped"), "{e}");
        let e = det.add_flat(&mosaic(w, h, vec![0.0; w * h])).unwrap_err();
        assert!(e.contains("too dark"), "{e}");
    }
}
