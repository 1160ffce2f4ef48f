//! Raw captures: the mosaic plus typed metadata.
//!
//! A [`RawFrame`] is what every decoder (rawler for DNG and camera raws,
//! [`sidecar`] for headerless sensor dumps, [`crate::synth`] for synthetic
//! scenes) produces and what the `raw_source` stage feeds into a pipeline.

pub mod ciff;
pub mod decode;
pub mod dng_opcodes;
pub mod dng_write;
pub mod gpr;
pub mod guard;
pub mod headerless_kodak;
mod preflight;
pub mod provenance;
pub mod sidecar;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest frame accepted by default, in megapixels. Checked before any
/// pixel buffer is allocated.
pub const DEFAULT_MAX_MEGAPIXELS: f64 = 200.0;

/// The colour of one photosite: 0 = red, 1 = green, 2 = blue.
pub type CfaColor = usize;

/// The 2x2 Bayer phase, named by the colours of the top-left 2x2 block read
/// row by row (`Rggb` = R G / G B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CfaPattern {
    Rggb,
    Bggr,
    Grbg,
    Gbrg,
}

impl CfaPattern {
    /// All four Bayer phases.
    pub const ALL: [CfaPattern; 4] = [
        CfaPattern::Rggb,
        CfaPattern::Bggr,
        CfaPattern::Grbg,
        CfaPattern::Gbrg,
    ];

    /// Colours of the 2x2 block as `[row0col0, row0col1, row1col0, row1col1]`.
    pub const fn layout(self) -> [CfaColor; 4] {
        match self {
            CfaPattern::Rggb => [0, 1, 1, 2],
            CfaPattern::Bggr => [2, 1, 1, 0],
            CfaPattern::Grbg => [1, 0, 2, 1],
            CfaPattern::Gbrg => [1, 2, 0, 1],
        }
    }

    /// Colour of the photosite at row `y`, column `x`.
    #[inline(always)]
    pub fn color_at(self, y: usize, x: usize) -> CfaColor {
        self.layout()[((y & 1) << 1) | (x & 1)]
    }

    /// The pattern seen after dropping `dx` columns and `dy` rows from the
    /// top-left corner (a crop that starts at an odd offset).
    pub fn shifted(self, dx: usize, dy: usize) -> CfaPattern {
        let l = self.layout();
        let at = |y: usize, x: usize| l[(((y + dy) & 1) << 1) | ((x + dx) & 1)];
        Self::from_layout([at(0, 0), at(0, 1), at(1, 0), at(1, 1)]).unwrap_or(self)
    }

    /// The pattern with the given 2x2 colour layout, if it is a Bayer one.
    pub fn from_layout(l: [CfaColor; 4]) -> Option<CfaPattern> {
        Self::ALL.into_iter().find(|p| p.layout() == l)
    }

    /// Parses "RGGB", "bggr", ... .
    pub fn parse(s: &str) -> Option<CfaPattern> {
        match s.to_ascii_uppercase().as_str() {
            "RGGB" => Some(CfaPattern::Rggb),
            "BGGR" => Some(CfaPattern::Bggr),
            "GRBG" => Some(CfaPattern::Grbg),
            "GBRG" => Some(CfaPattern::Gbrg),
            _ => None,
        }
    }

    /// Upper-case name, e.g. "RGGB".
    pub fn name(self) -> &'static str {
        match self {
            CfaPattern::Rggb => "RGGB",
            CfaPattern::Bggr => "BGGR",
            CfaPattern::Grbg => "GRBG",
            CfaPattern::Gbrg => "GBRG",
        }
    }
}

/// How the samples of a raw frame are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelLayout {
    /// One sample per pixel behind a 2x2 Bayer colour filter.
    Bayer(CfaPattern),
    /// Three interleaved samples per pixel (a DNG LinearRaw: already
    /// demosaiced camera RGB).
    LinearRgb,
}

/// Black level in DN, as a repeating `width x height` pattern over the
/// mosaic (DNG BlackLevelRepeatDim); `values` is row-major, len = w*h.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlackLevel {
    pub repeat_width: usize,
    pub repeat_height: usize,
    pub values: Vec<f32>,
}

impl BlackLevel {
    /// The same level at every photosite.
    pub fn uniform(v: f32) -> Self {
        BlackLevel {
            repeat_width: 1,
            repeat_height: 1,
            values: vec![v],
        }
    }

    /// Level at row `y`, column `x` (DN).
    #[inline(always)]
    pub fn at(&self, y: usize, x: usize) -> f32 {
        self.values[(y % self.repeat_height) * self.repeat_width + (x % self.repeat_width)]
    }

    /// Mean level (DN).
    pub fn mean(&self) -> f32 {
        self.values.iter().sum::<f32>() / self.values.len().max(1) as f32
    }
}

/// EXIF orientation (1..=8). `Normal` is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    #[default]
    Normal,
    FlipH,
    Rotate180,
    FlipV,
    Transpose,
    Rotate90,
    Transverse,
    Rotate270,
}

impl Orientation {
    /// From the EXIF value 1..=8 (anything else is `Normal`).
    pub fn from_exif(v: u16) -> Orientation {
        match v {
            2 => Orientation::FlipH,
            3 => Orientation::Rotate180,
            4 => Orientation::FlipV,
            5 => Orientation::Transpose,
            6 => Orientation::Rotate90,
            7 => Orientation::Transverse,
            8 => Orientation::Rotate270,
            _ => Orientation::Normal,
        }
    }

    /// The EXIF value 1..=8.
    pub fn to_exif(self) -> u16 {
        match self {
            Orientation::Normal => 1,
            Orientation::FlipH => 2,
            Orientation::Rotate180 => 3,
            Orientation::FlipV => 4,
            Orientation::Transpose => 5,
            Orientation::Rotate90 => 6,
            Orientation::Transverse => 7,
            Orientation::Rotate270 => 8,
        }
    }
}

/// A rectangle in pixels, origin top-left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Rect {
    /// True when the rectangle is at least 2x2 and lies inside a
    /// `width` x `height` frame (no arithmetic overflow on hostile values).
    pub fn fits_in(&self, width: usize, height: usize) -> bool {
        let fits = |o: usize, len: usize, total: usize| {
            len >= 2 && o.checked_add(len).is_some_and(|end| end <= total)
        };
        fits(self.x, self.width, width) && fits(self.y, self.height, height)
    }

    /// The reason a crop does not fit, for error messages.
    pub fn misfit(&self, width: usize, height: usize) -> String {
        format!(
            "default crop {}x{} at ({}, {}) does not fit in the {width}x{height} frame",
            self.width, self.height, self.x, self.y
        )
    }
}

/// Standard illuminants a colour matrix can be calibrated for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Illuminant {
    StdA,
    D50,
    D55,
    D65,
    D75,
    Other(u16),
}

impl Illuminant {
    /// From the EXIF LightSource code used by DNG CalibrationIlluminant.
    pub fn from_exif(code: u16) -> Illuminant {
        match code {
            17 | 3 => Illuminant::StdA,
            23 => Illuminant::D50,
            20 | 1 | 4 | 9 => Illuminant::D55,
            21 => Illuminant::D65,
            22 => Illuminant::D75,
            c => Illuminant::Other(c),
        }
    }

    /// The EXIF LightSource code.
    pub fn to_exif(self) -> u16 {
        match self {
            Illuminant::StdA => 17,
            Illuminant::D50 => 23,
            Illuminant::D55 => 20,
            Illuminant::D65 => 21,
            Illuminant::D75 => 22,
            Illuminant::Other(c) => c,
        }
    }

    /// Correlated colour temperature in kelvin (approximate for `Other`).
    pub fn cct(self) -> f32 {
        match self {
            Illuminant::StdA => 2856.0,
            Illuminant::D50 => 5003.0,
            Illuminant::D55 => 5503.0,
            Illuminant::D65 => 6504.0,
            Illuminant::D75 => 7504.0,
            Illuminant::Other(_) => 5500.0,
        }
    }
}

/// A camera colour matrix as DNG ColorMatrixN: XYZ -> camera RGB, row-major,
/// for the given calibration illuminant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColorMatrix {
    pub illuminant: Illuminant,
    pub xyz_to_cam: [[f32; 3]; 3],
}

/// Poisson-Gaussian noise model per colour (R, G, B):
/// variance(x) = a * x + b on the signal x normalised to [0, 1] after black
/// level subtraction (DNG NoiseProfile semantics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseProfile {
    /// Shot-noise scale `a` per colour (R, G, B).
    pub a: [f64; 3],
    /// Read-noise variance `b` per colour (R, G, B).
    pub b: [f64; 3],
}

/// Everything known about a capture except its pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawMeta {
    /// Where the frame came from (path or a description such as "demo").
    pub source: String,
    /// Pixels per row of the mosaic as stored in the frame.
    pub width: usize,
    /// Rows of the mosaic.
    pub height: usize,
    pub layout: PixelLayout,
    /// Black level in DN.
    pub black: BlackLevel,
    /// Saturation level in DN per colour (R, G, B).
    pub white: [f32; 3],
    /// Significant bits of the samples (10, 12, 14, 16...).
    pub bits: u32,
    /// As-shot white-balance multipliers (R, G, B), normalised to G = 1.
    pub wb_gains: Option<[f32; 3]>,
    /// Camera colour matrices, one per calibration illuminant.
    pub color_matrices: Vec<ColorMatrix>,
    /// A direct camera -> linear sRGB matrix (row-major), when the source
    /// gives one (sidecars); it wins over `color_matrices`.
    pub cam_to_srgb: Option<[[f32; 3]; 3]>,
    /// Default crop in frame coordinates, applied after demosaicing.
    pub crop: Option<Rect>,
    pub orientation: Orientation,
    pub noise_profile: Option<NoiseProfile>,
    pub make: String,
    pub model: String,
    pub iso: Option<u32>,
    /// Exposure time in seconds.
    pub exposure_time: Option<f32>,
    /// Capture settings beyond ISO and exposure (EXIF / maker notes).
    #[serde(default)]
    pub capture: CaptureInfo,
    /// Where the white balance, black and white levels came from, and why.
    #[serde(default)]
    pub provenance: Provenance,
    /// Pixel aspect ratio, width / height of one photosite as displayed
    /// (DNG DefaultScale h / v, or the maker's equivalent): 1 for square
    /// pixels; `orient` resamples the width by it (Kodak DC120: 976 / 0.75 / 848 =
    /// 1.5346, its 848x976 frame shown at 4:3).
    #[serde(default = "one")]
    pub pixel_aspect: f32,
    /// The DNG opcodes in the file's OpcodeList1/2/3, in order, and
    /// whether rawgraph applies each (empty for other formats).
    #[serde(default)]
    pub dng_opcodes: Vec<DngOpcode>,
    /// The GainMaps of the file's OpcodeList2 (lens shading, in the
    /// coordinates of this frame's mosaic), applied by the `lens_shading`
    /// stage, not at decode; empty when the file has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gain_maps: Vec<dng_opcodes::GainMap>,
}

/// One opcode of a DNG opcode list (DNG 1.6 spec, chapter 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DngOpcode {
    /// 1, 2 or 3: OpcodeList1 (raw, before linearisation), 2 (after
    /// linearisation), 3 (after demosaicing).
    pub list: u8,
    /// The opcode id (1 WarpRectilinear ... 14 WarpRectilinear2).
    pub id: u32,
    /// Its name in the spec, or "unknown".
    pub name: String,
    /// Whether decoding applies it.
    pub applied: bool,
    /// The op that applies it when the pipeline has that stage (GainMap:
    /// `lens_shading`); `None` when no op does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
}

fn one() -> f32 {
    1.0
}

/// Capture settings read from EXIF or the maker's own tags; `None` when the
/// file does not record them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// Aperture as an f-number (f/2.8 -> 2.8).
    pub f_number: Option<f32>,
    /// Focal length in millimetres (real, not 35 mm equivalent).
    pub focal_length_mm: Option<f32>,
    /// Lens make and model as recorded.
    pub lens: Option<String>,
    /// Capture time as recorded by the camera, "YYYY:MM:DD HH:MM:SS"
    /// (camera-local, no time zone).
    pub timestamp: Option<String>,
}

/// Which white-balance multipliers a frame carries in `wb_gains`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WbSource {
    /// The file's as-shot multipliers.
    AsShot,
    /// The data is already white-balanced in the file: gains 1/1/1.
    PreBalanced,
    /// The file's multipliers are flagged unusable (e.g. a CRW shot in auto
    /// WB whose table is not the applied balance): `wb_gains` is `None`,
    /// so `white_balance` (mode auto) falls back to gray world.
    FlaggedInvalid,
    /// No usable white balance in the file: `None` (gray world).
    Missing,
    /// No white balance in the file, and the format's convention (LibRaw's)
    /// is unity multipliers: gains 1/1/1 (Kodak DC50 KDC).
    UnityDefault,
    /// Given by the producer of the frame (synthetic data, a sidecar).
    #[default]
    Given,
}

/// Where a frame's colour levels came from, for `rawgraph info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub wb: WbSource,
    /// Why that white balance was chosen (one line).
    pub wb_why: String,
    /// Where the black level came from (one line).
    pub black: String,
    /// Where the white level came from (one line).
    pub white: String,
}

impl RawMeta {
    /// A minimal description for a Bayer frame of the given geometry.
    pub fn bayer(source: &str, width: usize, height: usize, cfa: CfaPattern) -> RawMeta {
        RawMeta {
            source: source.to_string(),
            width,
            height,
            layout: PixelLayout::Bayer(cfa),
            black: BlackLevel::uniform(0.0),
            white: [1.0; 3],
            bits: 16,
            wb_gains: None,
            color_matrices: Vec::new(),
            cam_to_srgb: None,
            crop: None,
            orientation: Orientation::Normal,
            noise_profile: None,
            make: String::new(),
            model: String::new(),
            iso: None,
            exposure_time: None,
            capture: CaptureInfo::default(),
            provenance: Provenance::default(),
            pixel_aspect: 1.0,
            dng_opcodes: Vec::new(),
            gain_maps: Vec::new(),
        }
    }

    /// The Bayer phase, or an error naming the source for LinearRaw frames.
    pub fn cfa(&self) -> Result<CfaPattern> {
        match self.layout {
            PixelLayout::Bayer(p) => Ok(p),
            PixelLayout::LinearRgb => Err(Error::Unsupported {
                path: self.source.clone().into(),
                reason: "LinearRaw (already demosaiced) frames cannot run through \
                         mosaic stages; only Bayer CFA frames are supported"
                    .into(),
            }),
        }
    }

    /// The camera -> linear sRGB matrix for this frame: the direct
    /// `cam_to_srgb` when the source gives one, else
    /// [`crate::color::camera_to_srgb`] of the colour matrix whose
    /// illuminant is closest to D65, else identity (no colour information).
    pub fn camera_to_srgb(&self) -> Result<crate::color::Mat3> {
        if let Some(m) = self.cam_to_srgb {
            return Ok(m);
        }
        let Some(cm) = self.color_matrices.iter().min_by(|a, b| {
            let da = (a.illuminant.cct() - 6504.0).abs();
            let db = (b.illuminant.cct() - 6504.0).abs();
            da.total_cmp(&db)
        }) else {
            return Ok(crate::color::IDENTITY);
        };
        crate::color::camera_to_srgb(&cm.xyz_to_cam).ok_or_else(|| {
            Error::invalid(format!(
                "{}: the camera colour matrix is singular",
                self.source
            ))
        })
    }

    /// The correlated colour temperature (kelvin) of the as-shot white
    /// balance: the camera neutral (1 / `wb_gains`) taken to XYZ through
    /// the colour matrices (two matrices interpolated in 1/CCT, as the DNG
    /// SDK does, by fixed-point iteration), then McCamy's formula.
    /// `None` without as-shot gains or colour matrices (a direct
    /// `cam_to_srgb` works on balanced data and says nothing about the
    /// light), or for a result outside 1,000..40,000 K.
    pub fn as_shot_cct(&self) -> Option<f32> {
        let g = self.wb_gains?;
        if self.cam_to_srgb.is_some() || g.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return None;
        }
        let neutral = [1.0 / g[0], 1.0 / g[1], 1.0 / g[2]];
        let cct_of = |xyz_to_cam: &crate::color::Mat3| {
            let cam_to_xyz = crate::color::invert(xyz_to_cam)?;
            let (x, y) = crate::color::xy_of(crate::color::apply(&cam_to_xyz, neutral))?;
            crate::color::cct_from_xy(x, y)
        };
        let mut ms: Vec<&ColorMatrix> = self.color_matrices.iter().take(2).collect();
        ms.sort_by(|a, b| a.illuminant.cct().total_cmp(&b.illuminant.cct()));
        let t = match ms.as_slice() {
            [] => None,
            [m] => cct_of(&m.xyz_to_cam),
            [lo, hi] => {
                let (t_lo, t_hi) = (lo.illuminant.cct(), hi.illuminant.cct());
                let mut t = 0.5 * (t_lo + t_hi);
                for _ in 0..20 {
                    // Weight of the low-CCT matrix, linear in 1/CCT.
                    let w = if (1.0 / t_lo - 1.0 / t_hi).abs() < 1e-12 {
                        0.5
                    } else {
                        ((1.0 / t - 1.0 / t_hi) / (1.0 / t_lo - 1.0 / t_hi)).clamp(0.0, 1.0)
                    };
                    let mut m = lo.xyz_to_cam;
                    for (r, row) in m.iter_mut().enumerate() {
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = w * *v + (1.0 - w) * hi.xyz_to_cam[r][c];
                        }
                    }
                    let next = cct_of(&m)?;
                    let done = (next - t).abs() < 0.5;
                    t = next;
                    if done {
                        break;
                    }
                }
                Some(t)
            }
            _ => None,
        }?;
        (1000.0..=40000.0).contains(&t).then_some(t)
    }

    /// Samples per pixel (1 for Bayer, 3 for LinearRaw).
    pub fn samples_per_pixel(&self) -> usize {
        match self.layout {
            PixelLayout::Bayer(_) => 1,
            PixelLayout::LinearRgb => 3,
        }
    }
}

/// A decoded raw frame: metadata plus the samples in DN.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub meta: RawMeta,
    /// Samples in DN, row-major; `samples_per_pixel` interleaved values per
    /// pixel; len = width * height * samples_per_pixel. Integer decoders
    /// deliver `u16`, float DNGs and synthetic frames f32.
    pub data: crate::frame::SensorSamples,
}

impl RawFrame {
    /// Checks that the buffer matches the geometry and that levels are sane.
    pub fn validate(&self) -> Result<()> {
        let m = &self.meta;
        let bad = |reason: String| Error::Decode {
            path: m.source.clone().into(),
            reason,
        };
        let n = m
            .width
            .checked_mul(m.height)
            .and_then(|v| v.checked_mul(m.samples_per_pixel()))
            .ok_or_else(|| bad("dimensions overflow".into()))?;
        if m.width < 2 || m.height < 2 {
            return Err(bad(format!("frame too small ({}x{})", m.width, m.height)));
        }
        if self.data.len() != n {
            return Err(bad(format!(
                "pixel buffer holds {} samples, expected {n}",
                self.data.len()
            )));
        }
        if m.black.values.is_empty()
            || m.black.repeat_width == 0
            || m.black.repeat_height == 0
            || m.black.values.len() != m.black.repeat_width * m.black.repeat_height
        {
            return Err(bad("malformed black level pattern".into()));
        }
        for (c, &w) in m.white.iter().enumerate() {
            let bmax = m.black.values.iter().cloned().fold(f32::MIN, f32::max);
            if !w.is_finite() || w <= bmax {
                return Err(bad(format!(
                    "white level {w} of channel {c} is not above the black level {bmax}"
                )));
            }
        }
        if let Some(g) = m.wb_gains {
            if g.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(bad(format!("invalid white balance gains {g:?}")));
            }
        }
        if let Some(c) = m.crop.filter(|c| !c.fits_in(m.width, m.height)) {
            return Err(bad(c.misfit(m.width, m.height)));
        }
        Ok(())
    }
}

/// Refuses frames over `max_mp` megapixels before anything is allocated.
pub fn check_dimensions(path: &str, width: u64, height: u64, max_mp: f64) -> Result<()> {
    let mp = width as f64 * height as f64 / 1e6;
    if width == 0 || height == 0 {
        return Err(Error::Decode {
            path: path.into(),
            reason: format!("invalid dimensions {width}x{height}"),
        });
    }
    if mp > max_mp {
        return Err(Error::Limit {
            path: path.into(),
            reason: format!(
                "{width}x{height} is {mp:.1} MP, over the limit of {max_mp} MP (raise --max-megapixels)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_patterns() {
        assert_eq!(CfaPattern::Rggb.shifted(1, 0), CfaPattern::Grbg);
        assert_eq!(CfaPattern::Rggb.shifted(0, 1), CfaPattern::Gbrg);
        assert_eq!(CfaPattern::Rggb.shifted(1, 1), CfaPattern::Bggr);
        for p in CfaPattern::ALL {
            assert_eq!(p.shifted(2, 2), p);
            for y in 0..4 {
                for x in 0..4 {
                    assert_eq!(p.shifted(1, 1).color_at(y, x), p.color_at(y + 1, x + 1));
                }
            }
        }
    }

    #[test]
    fn huge_dimensions_refused() {
        assert!(check_dimensions("x", 100_000, 100_000, DEFAULT_MAX_MEGAPIXELS).is_err());
        assert!(check_dimensions("x", 4000, 3000, DEFAULT_MAX_MEGAPIXELS).is_ok());
        assert!(check_dimensions("x", 0, 3000, DEFAULT_MAX_MEGAPIXELS).is_err());
    }

    #[test]
    fn as_shot_cct_from_neutral_and_matrices() {
        let m65: crate::color::Mat3 = [
            [0.62, -0.11, -0.05],
            [-0.41, 1.32, 0.1],
            [-0.06, 0.21, 0.61],
        ];
        let ma: crate::color::Mat3 = [[0.7, -0.15, -0.02], [-0.35, 1.25, 0.12], [-0.02, 0.15, 0.8]];
        let white_a = [1.0985f32, 1.0, 0.35585];
        // Camera gains that neutralise `white` seen through `m`.
        let gains = |m: &crate::color::Mat3, white: [f32; 3]| {
            let n = crate::color::apply(m, white);
            [n[1] / n[0], 1.0, n[1] / n[2]]
        };
        let mut meta = RawMeta::bayer("t", 4, 4, CfaPattern::Rggb);
        assert_eq!(meta.as_shot_cct(), None);
        meta.color_matrices = vec![ColorMatrix {
            illuminant: Illuminant::D65,
            xyz_to_cam: m65,
        }];
        meta.wb_gains = Some(gains(&m65, crate::color::D65));
        let t = meta.as_shot_cct().unwrap();
        assert!((t - 6504.0).abs() < 20.0, "{t}");
        // Two matrices: illuminant A light through A's matrix is 2856 K.
        meta.color_matrices.push(ColorMatrix {
            illuminant: Illuminant::StdA,
            xyz_to_cam: ma,
        });
        meta.wb_gains = Some(gains(&ma, white_a));
        let t = meta.as_shot_cct().unwrap();
        assert!((t - 2856.0).abs() < 20.0, "{t}");
        // A direct camera -> sRGB matrix says nothing about the light.
        meta.cam_to_srgb = Some(crate::color::IDENTITY);
        assert_eq!(meta.as_shot_cct(), None);
    }
}
