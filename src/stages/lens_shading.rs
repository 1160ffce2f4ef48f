//! `lens_shading`: lens-shading correction (vignetting and colour shading)
//! on the black-level-corrected mosaic. Every photosite is multiplied by a
//! gain taken from a coarse grid for its CFA site, bilinearly interpolated
//! to the pixel; with `clip` (the default) the product is limited to 1.0
//! (white), as the DNG SDK's GainMap does.
//!
//! Where the gains come from (`source`):
//! - `dng`: the frame's DNG GainMaps (opcode 9 of OpcodeList2, DNG 1.4
//!   spec section 7.4; `RawMeta::gain_maps`, see
//!   [`crate::raw::dng_opcodes::GainMap`] for their coordinates), applied
//!   as the DNG SDK's `dng_opcode_GainMap` applies them;
//! - `file`: a calibration file (`file: lsc.yaml`, written by `rawgraph
//!   calibrate lsc`, format [`LscCalibration`]) holding one grid per
//!   Bayer colour (R, Gr, Gb, B) per colour temperature; the frame's
//!   tables are interpolated linearly in CT between the two nearest, as
//!   libcamera's LSC algorithms (RPi ALSC, rkisp1) do, clamped outside the
//!   measured range. The CT is the `ct` param, else the frame's as-shot
//!   white balance ([`RawMeta::as_shot_cct`]), else [`DEFAULT_CT`];
//! - `auto` (default): the GainMaps when the frame has usable ones, else
//!   the file when one is given, else nothing: the frame passes through
//!   unchanged and its timing row says so (`lens_shading (skipped: ...)`).
//!
//! Input and output: a normalised mosaic (`black_level` applied, 1.0 =
//! white, white balance not yet applied), same size and phase. Place it
//! after `black_level` and before `white_balance`.

use crate::stages::Validate;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::row_kernel::{run_mosaic_rows, Header, MosaicRowFn, RowKernel, RowShape};
use super::{check_range, one_input, parse_params, take_mosaic, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{MosaicScale, Value, ValueDesc, ValueKind};
use crate::raw::dng_opcodes::GainMap;
use crate::raw::CfaPattern;
use crate::yaml;

/// Colour temperature (kelvin) used for a calibration file when neither
/// the `ct` param nor the frame's white balance gives one.
pub const DEFAULT_CT: f32 = 5000.0;

/// Version of the calibration file format this build reads and writes.
pub const VERSION: u32 = 1;

/// Where the gains come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// DNG GainMaps, else the file, else pass-through.
    #[default]
    Auto,
    /// The frame's DNG GainMaps (error when it has none).
    Dng,
    /// The calibration file (`file`).
    File,
}

/// YAML params of `lens_shading`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub source: Source,
    /// Calibration file (see [`LscCalibration`]); read when the pipeline
    /// is built.
    pub file: Option<PathBuf>,
    /// Colour temperature in kelvin for choosing the file's tables;
    /// default: the frame's as-shot white balance.
    pub ct: Option<f32>,
    /// Limit corrected values to 1.0 (white), as the DNG SDK does.
    pub clip: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            source: Source::Auto,
            file: None,
            ct: None,
            clip: true,
        }
    }
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if let Some(ct) = self.ct {
            check_range("ct", ct, 1000.0, 40000.0)?;
        }
        if self.source == Source::Dng && self.file.is_some() {
            return Err(crate::stages::CompileError::params(
                "`file` is not used with source: dng",
            ));
        }
        Ok(())
    }
}

/// A lens-shading calibration file: gain grids per Bayer colour per
/// colour temperature.
///
/// ```yaml
/// version: 1
/// make: Canon          # optional, informative
/// model: EOS 550D
/// notes: ""
/// tables:              # one per colour temperature, any order
///   - ct: 3000         # kelvin
///     r:  [[1.42, 1.31, ...], ...]   # rows x cols gains (unitless)
///     gr: [[...], ...]               # green photosites on red rows
///     gb: [[...], ...]               # green photosites on blue rows
///     b:  [[...], ...]
/// ```
///
/// Grid point (i, j) of a `rows x cols` grid sits at (i / (rows - 1) *
/// height, j / (cols - 1) * width) in pixel-edge coordinates: the first
/// and last rows and columns of points lie on the image's edges (the DNG
/// GainMap convention with origin 0 and spacing 1 / (points - 1)). Every
/// table has the same grid size, at least 2 x 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LscCalibration {
    pub version: u32,
    #[serde(default)]
    pub make: String,
    #[serde(default)]
    pub model: String,
    /// Free text (conditions, lens, aperture).
    #[serde(default)]
    pub notes: String,
    pub tables: Vec<LscTable>,
}

/// The gains at one colour temperature; each grid is `rows` vectors of
/// `cols` gains, row-major from the top-left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LscTable {
    /// Colour temperature in kelvin.
    pub ct: f32,
    pub r: Vec<Vec<f32>>,
    pub gr: Vec<Vec<f32>>,
    pub gb: Vec<Vec<f32>>,
    pub b: Vec<Vec<f32>>,
}

/// Names of the four Bayer colours, in the order of
/// [`LscTable::grids`].
pub const COLOURS: [&str; 4] = ["r", "gr", "gb", "b"];

impl LscTable {
    /// The grids in the order R, Gr, Gb, B.
    pub fn grids(&self) -> [&Vec<Vec<f32>>; 4] {
        [&self.r, &self.gr, &self.gb, &self.b]
    }

    /// A table from four flattened row-major grids (R, Gr, Gb, B) of
    /// `rows x cols` gains.
    pub fn from_flat(ct: f32, rows: usize, cols: usize, g: &[Vec<f32>; 4]) -> LscTable {
        let grid = |v: &Vec<f32>| {
            v.chunks(cols.max(1))
                .take(rows)
                .map(<[f32]>::to_vec)
                .collect()
        };
        LscTable {
            ct,
            r: grid(&g[0]),
            gr: grid(&g[1]),
            gb: grid(&g[2]),
            b: grid(&g[3]),
        }
    }

    /// (rows, cols) of the R grid.
    pub fn dims(&self) -> (usize, usize) {
        (self.r.len(), self.r.first().map_or(0, Vec::len))
    }
}

impl LscCalibration {
    /// Parses and validates a calibration file's text; errors name `path`
    /// (and the line and column for YAML errors). Tables come out sorted
    /// by CT.
    pub fn parse(text: &str, path: &Path) -> Result<LscCalibration> {
        let file = path.display().to_string();
        let mut c: LscCalibration = yaml::parse(text, &file)?;
        c.validate().map_err(|msg| yaml::invalid(file, msg))?;
        c.tables.sort_by(|a, b| a.ct.total_cmp(&b.ct));
        Ok(c)
    }

    /// Reads and parses a calibration file.
    pub fn load(path: &Path) -> Result<LscCalibration> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Checks the version, the grid sizes and every gain.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.version != VERSION {
            return Err(format!(
                "lens-shading calibration version {} (this build reads {VERSION})",
                self.version
            ));
        }
        let first = self
            .tables
            .first()
            .ok_or("lens-shading calibration has no tables")?;
        let (rows, cols) = first.dims();
        if rows < 2 || cols < 2 {
            return Err(format!(
                "table ct {}: grid is {rows}x{cols}, needs at least 2x2",
                first.ct
            ));
        }
        for (k, t) in self.tables.iter().enumerate() {
            if !(t.ct.is_finite() && (1000.0..=40000.0).contains(&t.ct)) {
                return Err(format!("table {k}: ct {} is outside [1000, 40000] K", t.ct));
            }
            if self.tables[..k].iter().any(|o| o.ct == t.ct) {
                return Err(format!("two tables for ct {}", t.ct));
            }
            for (name, g) in COLOURS.iter().zip(t.grids()) {
                if g.len() != rows || g.iter().any(|r| r.len() != cols) {
                    return Err(format!(
                        "table ct {}: `{name}` is not a {rows}x{cols} grid like the first table's `r`",
                        t.ct
                    ));
                }
                if let Some(v) = g
                    .iter()
                    .flatten()
                    .find(|v| !(v.is_finite() && **v > 0.0 && **v <= 16.0))
                {
                    return Err(format!(
                        "table ct {}: `{name}` holds gain {v}, outside (0, 16]",
                        t.ct
                    ));
                }
            }
        }
        Ok(())
    }

    /// (rows, cols) of the grids.
    pub fn dims(&self) -> (usize, usize) {
        self.tables.first().map_or((0, 0), LscTable::dims)
    }

    /// The four grids (R, Gr, Gb, B; flattened row-major) at colour
    /// temperature `ct`: linear in CT between the two nearest tables,
    /// the nearest table outside their range. Expects sorted tables.
    pub fn at_ct(&self, ct: f32) -> [Vec<f32>; 4] {
        let flat = |t: &LscTable, c: usize| -> Vec<f32> {
            t.grids()[c].iter().flatten().copied().collect()
        };
        let n = self.tables.len();
        let hi = self.tables.iter().position(|t| t.ct >= ct).unwrap_or(n);
        let (a, b, w) = match hi {
            0 => (0, 0, 0.0),
            h if h >= n => (n.saturating_sub(1), n.saturating_sub(1), 0.0),
            h => {
                let (lo, up) = (&self.tables[h - 1], &self.tables[h]);
                (h - 1, h, (ct - lo.ct) / (up.ct - lo.ct))
            }
        };
        std::array::from_fn(|c| {
            let (ga, gb) = (flat(&self.tables[a], c), flat(&self.tables[b], c));
            ga.iter().zip(&gb).map(|(x, y)| x + (y - x) * w).collect()
        })
    }

    /// The file's text: a header comment, then YAML with one flow
    /// sequence per grid row (gains to 5 decimals).
    pub fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut s = String::from(
            "# rawgraph lens-shading calibration (`lens_shading` op, `file:`): gains per\n\
             # Bayer colour (r, gr = greens on red rows, gb, b) on a rows x cols grid whose\n\
             # outer points lie on the image edges, one table per colour temperature (K).\n",
        );
        s += &format!("version: {}\n", self.version);
        s += &format!(
            "make: {}\nmodel: {}\nnotes: {}\n",
            q(&self.make),
            q(&self.model),
            q(&self.notes)
        );
        s += "tables:\n";
        for t in &self.tables {
            s += &format!("  - ct: {}\n", t.ct);
            for (name, g) in COLOURS.iter().zip(t.grids()) {
                s += &format!("    {name}:\n");
                for row in g {
                    let v: Vec<String> = row.iter().map(|v| format!("{v:.5}")).collect();
                    s += &format!("      - [{}]\n", v.join(", "));
                }
            }
        }
        s
    }
}

/// Index into (R, Gr, Gb, B) of the CFA site at (`dy`, `dx`) of the 2x2
/// block.
pub fn site_colour(cfa: CfaPattern, dy: usize, dx: usize) -> usize {
    match cfa.color_at(dy, dx) {
        0 => 0,
        2 => 3,
        // A green: Gr when its row holds red photosites.
        _ if cfa.color_at(dy, 0) == 0 || cfa.color_at(dy, 1) == 0 => 1,
        _ => 2,
    }
}

/// One grid of gains bound to the photosites it covers, with its
/// per-column interpolation weights computed once per frame.
#[derive(Debug, Clone)]
struct Layer {
    top: usize,
    bottom: usize,
    row_pitch: usize,
    left: usize,
    right: usize,
    col_pitch: usize,
    /// Grid points_v x points_h, row-major.
    gains: Vec<f32>,
    points_v: usize,
    points_h: usize,
    /// Relative position of grid row 0 and the spacing between rows.
    origin_v: f64,
    spacing_v: f64,
    /// Frame height in pixels.
    height: usize,
    /// For each covered column `left + k * col_pitch`: the weight of the
    /// second of the two grid columns around it.
    fx: Vec<f32>,
    /// Runs `k0..k1` of covered columns between the same two grid
    /// columns `j0`, `j1`: (k0, k1, j0, j1).
    runs: Vec<(usize, usize, usize, usize)>,
}

/// Grid indices and weight of the second for relative position `rel`
/// along an axis of `points` map points (the DNG SDK's rule: the edge
/// values hold outside the grid).
fn grid_pos(rel: f64, origin: f64, spacing: f64, points: usize) -> (u32, u32, f32) {
    let f = (rel - origin) / spacing;
    let last = points.saturating_sub(1);
    if f.is_nan() || f <= 0.0 {
        return (0, 0, 0.0);
    }
    let i = f as usize;
    if i >= last {
        return (last as u32, last as u32, 0.0);
    }
    (i as u32, i as u32 + 1, (f - i as f64) as f32)
}

impl Layer {
    /// A layer for map plane 0 of a GainMap on a `width x height` mosaic;
    /// `None` when it covers no photosite of a one-plane (CFA) image.
    fn from_gain_map(g: &GainMap, width: usize, height: usize) -> Option<Layer> {
        let (bottom, right) = (g.area.bottom.min(height), g.area.right.min(width));
        let empty =
            g.points_v == 0 || g.points_h == 0 || g.area.top >= bottom || g.area.left >= right;
        if g.area.plane != 0 || g.area.planes == 0 || empty {
            return None;
        }
        let gains: Vec<f32> = (0..g.points_v)
            .flat_map(|i| (0..g.points_h).map(move |j| g.at(i, j, 0)))
            .collect();
        let col_pitch = g.area.col_pitch.max(1);
        let (mut fx, mut runs) = (Vec::new(), Vec::<(usize, usize, usize, usize)>::new());
        for (k, x) in (g.area.left..right).step_by(col_pitch).enumerate() {
            let rel = (x as f64 + 0.5) / width as f64;
            let (j0, j1, f) = grid_pos(rel, g.origin_h, g.spacing_h, g.points_h);
            fx.push(f);
            match runs.last_mut() {
                Some(r) if (r.2, r.3) == (j0 as usize, j1 as usize) => r.1 = k + 1,
                _ => runs.push((k, k + 1, j0 as usize, j1 as usize)),
            }
        }
        Some(Layer {
            top: g.area.top,
            bottom,
            row_pitch: g.area.row_pitch.max(1),
            left: g.area.left,
            right,
            col_pitch,
            gains,
            points_v: g.points_v,
            points_h: g.points_h,
            origin_v: g.origin_v,
            spacing_v: g.spacing_v,
            height,
            fx,
            runs,
        })
    }

    /// Multiplies the covered photosites of image row `y` by their gains.
    #[inline]
    fn apply(&self, y: usize, row: &mut [f32], clip: bool) {
        if y < self.top || y >= self.bottom || !(y - self.top).is_multiple_of(self.row_pitch) {
            return;
        }
        let rel = (y as f64 + 0.5) / self.height as f64;
        let (i0, i1, fy) = grid_pos(rel, self.origin_v, self.spacing_v, self.points_v);
        let (a, b) = (i0 as usize * self.points_h, i1 as usize * self.points_h);
        // The grid row interpolated to this image row.
        let g: Vec<f32> = (0..self.points_h)
            .map(|j| {
                let (ga, gb) = (self.gains[a + j], self.gains[b + j]);
                ga + (gb - ga) * fy
            })
            .collect();
        let end = self.right.min(row.len());
        let Some(px) = row.get_mut(self.left..end) else {
            return;
        };
        let pitch = self.col_pitch;
        for &(k0, k1, j0, j1) in &self.runs {
            // Between two grid columns the gain is linear in fx.
            let (g0, g1) = (g[j0], g[j1]);
            let Some(run) = px.get_mut(k0 * pitch..) else {
                break;
            };
            for (v, &fx) in run.iter_mut().step_by(pitch).zip(&self.fx[k0..k1]) {
                let t = *v * (g0 + (g1 - g0) * fx);
                *v = if clip { t.min(1.0) } else { t };
            }
        }
    }
}

/// What the op does to one frame.
enum Plan {
    /// Nothing: the reason.
    Identity(String),
    /// These layers, in order.
    Apply(Vec<Layer>),
}

/// The compiled `lens_shading` op.
#[derive(Debug)]
pub struct LensShading {
    p: Params,
    /// The calibration file, read at build time.
    calibration: Option<LscCalibration>,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    if p.source == Source::File && p.file.is_none() {
        return Err(crate::stages::CompileError::params(
            "source: file needs `file: PATH`",
        ));
    }
    let calibration = match &p.file {
        Some(path) => Some(
            LscCalibration::load(path)
                .map_err(|e| crate::stages::CompileError::params(format!("file: {e}")))?,
        ),
        None => None,
    };
    Ok(Box::new(LensShading { p, calibration }))
}

impl LensShading {
    /// The op for an already-loaded calibration (tests, tools).
    pub fn with_calibration(p: Params, calibration: Option<LscCalibration>) -> Result<LensShading> {
        p.validate().map_err(Error::invalid)?;
        if p.source == Source::File && calibration.is_none() {
            return Err(Error::invalid("source: file needs a calibration"));
        }
        Ok(LensShading { p, calibration })
    }

    /// The layers of the frame's DNG GainMaps (empty when it has none
    /// that cover a CFA plane).
    fn dng_layers(hdr: &Header) -> Vec<Layer> {
        hdr.meta
            .gain_maps
            .iter()
            .filter_map(|g| Layer::from_gain_map(g, hdr.width, hdr.height))
            .collect()
    }

    /// The four layers (one per CFA site, pitch 2) of the calibration at
    /// the frame's colour temperature.
    fn file_layers(&self, c: &LscCalibration, hdr: &Header, cfa: CfaPattern) -> Vec<Layer> {
        let ct = self
            .p
            .ct
            .or_else(|| hdr.meta.as_shot_cct())
            .unwrap_or(DEFAULT_CT);
        let grids = c.at_ct(ct);
        let (w, h) = (hdr.width, hdr.height);
        GainMap::bayer_sites(w, h, c.dims(), |dy, dx| {
            grids[site_colour(cfa, dy, dx)].clone()
        })
        .iter()
        .filter_map(|g| Layer::from_gain_map(g, w, h))
        .collect()
    }

    /// What to do with the frame described by `hdr`.
    fn plan(&self, hdr: &Header) -> Result<Plan> {
        let (cfa, scale) = hdr
            .mosaic()
            .ok_or_else(|| Error::invalid("expected a mosaic"))?;
        if scale != MosaicScale::Normalized {
            return Err(Error::invalid(
                "lens_shading needs a black-level-corrected mosaic: place it after black_level",
            ));
        }
        if hdr.wb_applied.is_some() {
            return Err(Error::invalid(
                "lens_shading works before white balance: place it between black_level and white_balance",
            ));
        }
        let from_dng = || Self::dng_layers(hdr);
        let from_file = |c: &LscCalibration| self.file_layers(c, hdr, cfa);
        Ok(match self.p.source {
            Source::Dng => {
                let l = from_dng();
                if l.is_empty() {
                    return Err(Error::invalid(format!(
                        "source: dng, but {} has no DNG GainMap (OpcodeList2) for its CFA plane",
                        hdr.meta.source
                    )));
                }
                Plan::Apply(l)
            }
            Source::File => match &self.calibration {
                Some(c) => Plan::Apply(from_file(c)),
                None => {
                    return Err(Error::invalid(
                        "source: file, but no calibration was loaded",
                    ))
                }
            },
            Source::Auto => {
                let l = from_dng();
                match &self.calibration {
                    _ if !l.is_empty() => Plan::Apply(l),
                    Some(c) => Plan::Apply(from_file(c)),
                    None => Plan::Identity(
                        "no lens-shading map (no DNG GainMap in the frame, no `file`)".into(),
                    ),
                }
            }
        })
    }

    /// The row kernel applying `layers` in order.
    fn layers_kernel(&self, layers: Vec<Layer>) -> MosaicRowFn {
        let clip = self.p.clip;
        Box::new(move |y, row| {
            for l in &layers {
                l.apply(y, row, clip);
            }
        })
    }
}

impl Stage for LensShading {
    fn op(&self) -> &'static str {
        "lens_shading"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        one_input(inputs, ValueKind::Mosaic)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("no input"))?;
        let hdr = Header::of(&v).ok_or_else(|| Error::invalid("expected a mosaic"))?;
        let layers = match self.plan(&hdr)? {
            Plan::Identity(_) => return Ok(v),
            Plan::Apply(layers) => layers,
        };
        let mut m = take_mosaic(v)?;
        run_mosaic_rows(&mut m, &self.layers_kernel(layers));
        Ok(Value::Mosaic(m.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape::POINT)
    }

    /// A frame with no map gets a no-op kernel (the executor skips the
    /// stage for it anyway, see [`Stage::skip_reason`]).
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let f: MosaicRowFn = match self.plan(input)? {
            Plan::Identity(_) => Box::new(|_, _| {}),
            Plan::Apply(layers) => self.layers_kernel(layers),
        };
        Ok(Some((RowKernel::Mosaic(f), input.clone())))
    }

    fn skip_reason(&self, input: &Header) -> Option<String> {
        match self.plan(input) {
            Ok(Plan::Identity(why)) => Some(why),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::frame::Mosaic;
    use crate::raw::{ColorMatrix, Illuminant, RawMeta};

    /// cos^4-like falloff (1 + r^2)^-2 of colour `c` (R, Gr, Gb, B) at
    /// pixel-edge coordinates (px, py) of a w x h frame: a different
    /// radius per colour and an optical centre off the middle for B.
    fn vignette(c: usize, px: f64, py: f64, w: usize, h: usize) -> f64 {
        let hd = ((w * w + h * h) as f64).sqrt() / 2.0;
        let f = [1.2, 1.35, 1.3, 1.5][c] * hd;
        let (cx, cy) = if c == 3 {
            (0.55 * w as f64, 0.45 * h as f64)
        } else {
            (0.5 * w as f64, 0.5 * h as f64)
        };
        let r2 = ((px - cx).powi(2) + (py - cy).powi(2)) / (f * f);
        1.0 / (1.0 + r2).powi(2)
    }

    /// A mosaic value of `data` (w x h) with `meta`.
    fn mosaic(cfa: CfaPattern, (w, h): (usize, usize), data: Vec<f32>, meta: RawMeta) -> Value {
        Value::Mosaic(Arc::new(Mosaic::normalized(w, h, cfa, data, meta)))
    }

    /// A normalised flat field of `level` under [`vignette`].
    fn flat(cfa: CfaPattern, w: usize, h: usize, level: f64, meta: RawMeta) -> Value {
        let data = (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    let c = site_colour(cfa, y & 1, x & 1);
                    (level * vignette(c, x as f64 + 0.5, y as f64 + 0.5, w, h)) as f32
                })
            })
            .collect();
        mosaic(cfa, (w, h), data, meta)
    }

    /// The exact inverse of [`vignette`] on a rows x cols grid whose
    /// outer points lie on the frame's edges, flattened row-major.
    fn inverse_grid(c: usize, rows: usize, cols: usize, w: usize, h: usize) -> Vec<f32> {
        (0..rows)
            .flat_map(|i| {
                (0..cols).map(move |j| {
                    let py = i as f64 / (rows - 1) as f64 * h as f64;
                    let px = j as f64 / (cols - 1) as f64 * w as f64;
                    (1.0 / vignette(c, px, py, w, h)) as f32
                })
            })
            .collect()
    }

    fn calibration(tables: Vec<LscTable>) -> LscCalibration {
        LscCalibration {
            version: VERSION,
            make: String::new(),
            model: String::new(),
            notes: String::new(),
            tables,
        }
    }

    fn constant_table(ct: f32, g: f32) -> LscTable {
        let grid = vec![vec![g; 3]; 2];
        LscTable {
            ct,
            r: grid.clone(),
            gr: grid.clone(),
            gb: grid.clone(),
            b: grid,
        }
    }

    fn run(stage: &LensShading, v: Value) -> Result<Vec<f32>> {
        match stage.run_cpu(&RunCtx { stage_id: "lsc" }, vec![v])? {
            Value::Mosaic(m) => Ok(m.data.clone().into_f32()),
            _ => panic!("not a mosaic"),
        }
    }

    /// Largest |v / level - 1| over the frame.
    fn flatness(out: &[f32], level: f64) -> f64 {
        out.iter()
            .map(|&v| (v as f64 / level - 1.0).abs())
            .fold(0.0, f64::max)
    }

    fn params(source: Source) -> Params {
        Params {
            source,
            ..Params::default()
        }
    }

    #[test]
    fn file_map_flattens_a_vignetted_flat_field() {
        let (rows, cols) = (13, 17);
        for (cfa, w, h) in [
            (CfaPattern::Rggb, 320, 240),
            (CfaPattern::Bggr, 161, 121),
            (CfaPattern::Grbg, 200, 150),
            (CfaPattern::Gbrg, 97, 131),
        ] {
            let grids: [Vec<f32>; 4] = std::array::from_fn(|c| inverse_grid(c, rows, cols, w, h));
            let cal = calibration(vec![LscTable::from_flat(5000.0, rows, cols, &grids)]);
            let stage = LensShading::with_calibration(params(Source::File), Some(cal)).unwrap();
            let input = flat(cfa, w, h, 0.5, RawMeta::bayer("flat", w, h, cfa));
            let Value::Mosaic(m) = &input else {
                unreachable!()
            };
            let raw = flatness(&m.data.f32(), 0.5);
            assert!(raw > 0.4, "{cfa:?}: the test frame is vignetted ({raw})");
            let after = flatness(&run(&stage, input).unwrap(), 0.5);
            assert!(after < 0.01, "{cfa:?} {w}x{h}: max error {after}");
        }
    }

    /// Four GainMaps of pitch 2 (one per CFA site) as phones write them.
    fn gain_maps(cfa: CfaPattern, w: usize, h: usize) -> Vec<GainMap> {
        let (rows, cols) = (13, 17);
        GainMap::bayer_sites(w, h, (rows, cols), |dy, dx| {
            inverse_grid(site_colour(cfa, dy, dx), rows, cols, w, h)
        })
    }

    #[test]
    fn dng_gain_maps_flatten_and_win_over_the_file_in_auto() {
        let (cfa, w, h) = (CfaPattern::Grbg, 240, 180);
        let mut meta = RawMeta::bayer("dng", w, h, cfa);
        meta.gain_maps = gain_maps(cfa, w, h);
        for (source, cal) in [
            (Source::Dng, None),
            (Source::Auto, None),
            (
                Source::Auto,
                Some(calibration(vec![constant_table(5000.0, 2.0)])),
            ),
        ] {
            let stage = LensShading::with_calibration(params(source), cal).unwrap();
            let out = run(&stage, flat(cfa, w, h, 0.4, meta.clone())).unwrap();
            let e = flatness(&out, 0.4);
            assert!(e < 0.01, "{source:?}: max error {e}");
        }
        // A GainMap for another plane does not apply to a CFA mosaic.
        meta.gain_maps.iter_mut().for_each(|g| g.area.plane = 1);
        let stage = LensShading::with_calibration(params(Source::Dng), None).unwrap();
        let e = run(&stage, flat(cfa, w, h, 0.4, meta)).unwrap_err();
        assert!(e.to_string().contains("no DNG GainMap"), "{e}");
    }

    #[test]
    fn gain_map_interpolation_follows_the_dng_sdk() {
        // One 2x2 map over the whole 8x4 one-plane frame, pitch 1, origin
        // 0.25 / spacing 0.5: pixel centres before the first point keep
        // its value, the rest interpolate.
        use crate::raw::dng_opcodes::OpcodeArea;
        let (w, h) = (8, 4);
        let mut meta = RawMeta::bayer("sdk", w, h, CfaPattern::Rggb);
        meta.gain_maps = vec![GainMap {
            area: OpcodeArea {
                top: 0,
                left: 0,
                bottom: h,
                right: w,
                plane: 0,
                planes: 1,
                row_pitch: 1,
                col_pitch: 1,
            },
            points_v: 2,
            points_h: 2,
            spacing_v: 0.5,
            spacing_h: 0.5,
            origin_v: 0.25,
            origin_h: 0.25,
            map_planes: 1,
            gains: vec![1.0, 2.0, 3.0, 4.0],
        }];
        let v = mosaic(CfaPattern::Rggb, (w, h), vec![0.1; w * h], meta);
        let stage = LensShading::with_calibration(params(Source::Dng), None).unwrap();
        let out = run(&stage, v).unwrap();
        let gain = |x: usize, y: usize| out[y * w + x] / 0.1;
        // The SDK: (row + 0.5) / h, (col + 0.5) / w, then (rel - origin) / spacing.
        let expect = |x: usize, y: usize| {
            let fy = (((y as f32 + 0.5) / h as f32 - 0.25) / 0.5).clamp(0.0, 1.0);
            let fx = (((x as f32 + 0.5) / w as f32 - 0.25) / 0.5).clamp(0.0, 1.0);
            let top = 1.0 + fx;
            let bottom = 3.0 + fx;
            top + (bottom - top) * fy
        };
        for y in 0..h {
            for x in 0..w {
                assert!(
                    (gain(x, y) - expect(x, y)).abs() < 1e-5,
                    "({x}, {y}): {} vs {}",
                    gain(x, y),
                    expect(x, y)
                );
            }
        }
        assert!((gain(0, 0) - 1.0).abs() < 1e-6);
        assert!((gain(7, 3) - 4.0).abs() < 1e-6);
    }

    #[test]
    fn tables_interpolate_linearly_in_colour_temperature() {
        let cal = calibration(vec![
            constant_table(6000.0, 2.0),
            constant_table(3000.0, 1.0),
        ]);
        let text = cal.to_yaml();
        let cal = LscCalibration::parse(&text, Path::new("t.yaml")).unwrap();
        assert_eq!(cal.tables[0].ct, 3000.0, "sorted by ct");
        for (ct, g) in [
            (4500.0, 1.5),
            (3750.0, 1.25),
            (2000.0, 1.0),
            (9000.0, 2.0),
            (6000.0, 2.0),
        ] {
            let grids = cal.at_ct(ct);
            for grid in &grids {
                assert!(
                    grid.iter().all(|&v| (v - g).abs() < 1e-6),
                    "ct {ct}: {grid:?}"
                );
            }
        }
        // Through the op: the `ct` param, the frame's white balance, the
        // default.
        let (w, h) = (6, 4);
        let const_frame = |meta: RawMeta| mosaic(CfaPattern::Rggb, (w, h), vec![0.2; w * h], meta);
        let with_ct = |ct: Option<f32>| {
            let p = Params {
                ct,
                ..params(Source::File)
            };
            LensShading::with_calibration(p, Some(cal.clone())).unwrap()
        };
        let plain = RawMeta::bayer("t", w, h, CfaPattern::Rggb);
        let out = run(&with_ct(Some(4500.0)), const_frame(plain.clone())).unwrap();
        assert!(out.iter().all(|&v| (v - 0.3).abs() < 1e-6), "{out:?}");
        // No white balance: DEFAULT_CT (5000 K) -> 1 + 2/3.
        let out = run(&with_ct(None), const_frame(plain.clone())).unwrap();
        assert!(
            out.iter().all(|&v| (v - 0.2 * (5.0 / 3.0)).abs() < 1e-5),
            "{out:?}"
        );
        // A frame balanced for D65 light (6504 K): the 6000 K table.
        let m: crate::color::Mat3 = [
            [0.62, -0.11, -0.05],
            [-0.41, 1.32, 0.1],
            [-0.06, 0.21, 0.61],
        ];
        let n = crate::color::apply(&m, crate::color::D65);
        let mut d65 = plain;
        d65.color_matrices = vec![ColorMatrix {
            illuminant: Illuminant::D65,
            xyz_to_cam: m,
        }];
        d65.wb_gains = Some([n[1] / n[0], 1.0, n[1] / n[2]]);
        let out = run(&with_ct(None), const_frame(d65)).unwrap();
        assert!(out.iter().all(|&v| (v - 0.4).abs() < 1e-6), "{out:?}");
    }

    #[test]
    fn clip_limits_to_white() {
        let cal = calibration(vec![constant_table(5000.0, 1.5)]);
        let meta = RawMeta::bayer("t", 4, 4, CfaPattern::Rggb);
        let v = || mosaic(CfaPattern::Rggb, (4, 4), vec![0.9; 16], meta.clone());
        let clipped =
            LensShading::with_calibration(params(Source::File), Some(cal.clone())).unwrap();
        assert!(run(&clipped, v()).unwrap().iter().all(|&x| x == 1.0));
        let p = Params {
            clip: false,
            ..params(Source::File)
        };
        let free = LensShading::with_calibration(p, Some(cal)).unwrap();
        assert!(run(&free, v())
            .unwrap()
            .iter()
            .all(|&x| (x - 1.35).abs() < 1e-6));
    }

    #[test]
    fn auto_without_a_map_is_the_identity_and_says_so() {
        let (cfa, w, h) = (CfaPattern::Rggb, 10, 8);
        let stage = LensShading::with_calibration(params(Source::Auto), None).unwrap();
        let v = flat(cfa, w, h, 0.5, RawMeta::bayer("t", w, h, cfa));
        let hdr = Header::of(&v).unwrap();
        let why = stage.skip_reason(&hdr).unwrap();
        assert!(why.contains("no lens-shading map"), "{why}");
        let Value::Mosaic(before) = v.clone() else {
            unreachable!()
        };
        let Value::Mosaic(after) = stage.run_cpu(&RunCtx { stage_id: "lsc" }, vec![v]).unwrap()
        else {
            panic!("not a mosaic");
        };
        assert!(Arc::ptr_eq(&before, &after), "pass-through without a copy");
        // With a map it runs.
        let mut meta = RawMeta::bayer("t", w, h, cfa);
        meta.gain_maps = gain_maps(cfa, w, h);
        let v = flat(cfa, w, h, 0.5, meta);
        assert!(stage.skip_reason(&Header::of(&v).unwrap()).is_none());
    }

    #[test]
    fn wrong_inputs_are_typed_errors() {
        let (cfa, w, h) = (CfaPattern::Rggb, 6, 4);
        let mut meta = RawMeta::bayer("t", w, h, cfa);
        meta.gain_maps = gain_maps(cfa, w, h);
        let stage = LensShading::with_calibration(params(Source::Dng), None).unwrap();
        let frame = |scale, wb| {
            Value::Mosaic(Arc::new(Mosaic {
                width: w,
                height: h,
                cfa,
                data: vec![0.1; w * h].into(),
                scale,
                wb_applied: wb,
                meta: Arc::new(meta.clone()),
            }))
        };
        let e = run(&stage, frame(MosaicScale::Dn, None)).unwrap_err();
        assert!(
            matches!(e, Error::Invalid(_)) && e.to_string().contains("after black_level"),
            "{e}"
        );
        let e = run(
            &stage,
            frame(MosaicScale::Normalized, Some([2.0, 1.0, 1.5])),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("before white balance")
                || e.to_string()
                    .contains("between black_level and white_balance"),
            "{e}"
        );
        // No GainMap with source: dng.
        let plain = flat(cfa, w, h, 0.5, RawMeta::bayer("plain.dng", w, h, cfa));
        let e = run(&stage, plain).unwrap_err();
        assert!(
            e.to_string().contains("plain.dng has no DNG GainMap"),
            "{e}"
        );
    }

    #[test]
    fn bad_params_and_files_are_refused_at_build_time() {
        let c = |v: serde_json::Value| compile(v).map(|_| ()).unwrap_err();
        assert!(c(serde_json::json!({"source": "file"}))
            .to_string()
            .contains("needs `file"));
        assert!(c(serde_json::json!({"source": "dng", "file": "x.yaml"}))
            .to_string()
            .contains("not used"));
        assert!(c(serde_json::json!({"ct": 200})).to_string().contains("ct"));
        assert!(c(serde_json::json!({"strength": 1}))
            .to_string()
            .contains("unknown field"));
        assert!(c(serde_json::json!({"source": "magic"}))
            .to_string()
            .contains("unknown variant"));
        let e = c(serde_json::json!({"file": "/nonexistent/lsc.yaml"}));
        assert!(e.to_string().contains("/nonexistent/lsc.yaml"), "{e}");
        assert!(compile(serde_json::Value::Null).is_ok());

        let good = calibration(vec![
            constant_table(3000.0, 1.2),
            constant_table(6500.0, 1.1),
        ])
        .to_yaml();
        let p = Path::new("lsc.yaml");
        assert!(LscCalibration::parse(&good, p).is_ok());
        for (bad, why) in [
            (good.replace("version: 1", "version: 2"), "version 2"),
            (good.replacen("[1.20000, 1.20000, 1.20000]", "[1.20000, 1.20000]", 1), "is not a 2x"),
            (good.replacen("1.20000", "0.00000", 1), "outside (0, 16]"),
            (good.replacen("1.20000", "-3", 1), "outside (0, 16]"),
            (good.replace("ct: 6500", "ct: 3000"), "two tables"),
            (good.replace("ct: 6500", "ct: 99"), "outside [1000, 40000]"),
            (good.replace("notes:", "colour: 1\nnotes:"), "unknown field"),
            ("version: 1\ntables: []\n".to_string(), "no tables"),
            ("version: 1\ntables:\n  - ct: 5000\n    r: [[1]]\n    gr: [[1]]\n    gb: [[1]]\n    b: [[1]]\n".to_string(), "at least 2x2"),
            ("[".to_string(), "lsc.yaml:"),
        ] {
            let e = LscCalibration::parse(&bad, p).unwrap_err();
            let s = e.to_string();
            assert!(matches!(e, Error::Pipeline { .. }), "{s}");
            assert!(s.contains(why) && s.starts_with("lsc.yaml:") && !s.contains('\n'), "{why}: {s}");
        }
    }

    #[test]
    fn yaml_round_trip_keeps_the_tables() {
        let (rows, cols, w, h) = (5, 7, 64, 48);
        let grids: [Vec<f32>; 4] = std::array::from_fn(|c| inverse_grid(c, rows, cols, w, h));
        let mut cal = calibration(vec![LscTable::from_flat(4100.0, rows, cols, &grids)]);
        cal.make = "Maker \"quoted\"".into();
        cal.notes = "line one\nline two".into();
        let back = LscCalibration::parse(&cal.to_yaml(), Path::new("t.yaml")).unwrap();
        assert_eq!(
            (back.make.as_str(), back.notes.as_str()),
            (cal.make.as_str(), cal.notes.as_str())
        );
        assert_eq!(back.dims(), (rows, cols));
        let (a, b) = (cal.at_ct(4100.0), back.at_ct(4100.0));
        for c in 0..4 {
            for (x, y) in a[c].iter().zip(&b[c]) {
                assert!((x - y).abs() < 1e-5);
            }
        }
    }
}
