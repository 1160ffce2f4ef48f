//! Unprocessing: sRGB images -> realistic raw Bayer captures with known
//! ground truth (Brooks, Mildenhall, Xue, Chen, Sharlet & Barron,
//! "Unprocessing Images for Learned Raw Denoising", CVPR 2019).
//!
//! Steps, each the exact inverse of a stage of the shipped `default`
//! pipeline (black_level -> white_balance -> demosaic -> color_correct ->
//! exposure_gain 0 EV -> srgb_encode), so that the ideal rendering is known:
//!
//! 1. inverse sRGB transfer (IEC 61966-2-1); no inverse tone curve, as the
//!    default pipeline applies none;
//! 2. inverse colour correction: camera = R . linear_sRGB with
//!    R = normalize_rows(ColorMatrix . sRGB_to_XYZ), exactly the matrix whose
//!    inverse `color_correct` applies (dcraw's convention). The XYZ -> camera
//!    ColorMatrix is fixed or a random convex combination of Brooks' four
//!    camera matrices;
//! 3. inverse white balance and digital exposure gain with Brooks'
//!    highlight-safe inversion (pixels whose grey level is above 0.9 get
//!    gains blended towards 1, so bright whites stay at saturation instead
//!    of turning into coloured, never-clipping raw values); camera values are
//!    clipped to [0, 1] (sensor saturation). This is the ground truth
//!    *linear camera RGB*;
//! 4. Bayer mosaic in any of the four phases;
//! 5. Poisson-Gaussian noise: variance(x) = shot * x + read on the
//!    normalised signal (DNG NoiseProfile semantics), Poisson photon counts
//!    (Gaussian approximation above 100 expected events) plus Gaussian read
//!    noise; given, derived from an ISO, or sampled as in Brooks (log-uniform
//!    shot, log-linear read with jitter);
//! 6. quantisation to 10-16 bits above a black level.
//!
//! The ideal rendering ([`ideal_rendering`]) is what the default pipeline
//! produces from the noise-free, unquantised camera RGB with a perfect
//! demosaic: WB gains normalised to a minimum of 1 with highlight clipping
//! at 1, the inverse of R, no exposure change, sRGB encoding. The digital
//! exposure gain undone in step 3 is *not* re-applied by the default
//! pipeline (as in Brooks' own forward pipeline): the rendering is darker
//! than the input by `exposure_gain` (recorded as `exposure_ev`).
//!
//! Everything is deterministic for a given seed: parameters come from one
//! ChaCha8 stream, and the noise of row `y` from its own stream seeded by
//! (seed, y), so results do not depend on the thread count.
//!
//! Files written by [`write_capture`] for an input `NAME`:
//! - `NAME.dng`: the raw capture (see [`crate::raw::dng_write`]);
//! - `NAME.truth.npy`: linear camera RGB ground truth, NumPy v1.0 `.npy`,
//!   little-endian float32, shape (height, width, 3), black level removed,
//!   1.0 = white level, before noise and quantisation;
//! - `NAME.ideal.png`: the ideal sRGB rendering, 16-bit RGB PNG;
//! - `NAME.json`: every parameter ([`SynthParams`]) and the file names.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{camera_response, DEFAULT_XYZ_TO_CAM};
use crate::color::{self, Mat3};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image};
use crate::output::{write_atomic, write_image, OutFormat};
use crate::raw::dng_write::{dng_representable, write_dng, DngOptions};
use crate::raw::{
    BlackLevel, CfaPattern, ColorMatrix, Illuminant, NoiseProfile, RawFrame, RawMeta,
    DEFAULT_MAX_MEGAPIXELS,
};

/// XYZ -> camera matrices Brooks et al. sample from (their `random_ccm`).
pub const BROOKS_XYZ_TO_CAMS: [Mat3; 4] = [
    [
        [1.0234, -0.2969, -0.2266],
        [-0.5625, 1.6328, -0.0469],
        [-0.0703, 0.2188, 0.6406],
    ],
    [
        [0.4913, -0.0541, -0.0202],
        [-0.613, 1.3513, 0.2906],
        [-0.1564, 0.2151, 0.7183],
    ],
    [
        [0.838, -0.263, -0.0639],
        [-0.2887, 1.0725, 0.2496],
        [-0.0627, 0.1427, 0.5438],
    ],
    [
        [0.6596, -0.2079, -0.0562],
        [-0.4782, 1.3016, 0.1933],
        [-0.097, 0.1581, 0.5181],
    ],
];

/// Grey level above which the inverse gains fade towards 1 (Brooks).
pub const HIGHLIGHT_INFLECTION: f32 = 0.9;

/// Shot-noise scale at ISO 100 on the normalised signal: Brooks' sampling
/// range [1e-4, 1.2e-2] then spans ISO 100 to 12000.
pub const SHOT_AT_ISO100: f64 = 1e-4;

/// Bayer phase: fixed or drawn from the four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfaSpec {
    Fixed(CfaPattern),
    Sampled,
}

/// The camera's XYZ -> camera matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatrixSpec {
    Fixed(Mat3),
    /// Random convex combination of [`BROOKS_XYZ_TO_CAMS`].
    Brooks,
}

/// White-balance gains the unprocessing inverts (R, B; G = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WbSpec {
    Fixed {
        red: f32,
        blue: f32,
    },
    /// The camera's own D65 neutral, as [`camera_response`] (a D65 scene).
    Matrix,
    /// Brooks: red U(1.9, 2.4), blue U(1.5, 1.9).
    Brooks,
}

/// Digital exposure gain the unprocessing divides out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExposureSpec {
    Fixed(f32),
    /// Brooks: 1 / N(0.8, 0.1) (clamped to 1 / [0.5, 1.2]).
    Brooks,
}

/// Sensor noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoiseSpec {
    None,
    /// Given (shot, read) on the normalised signal.
    Fixed {
        shot: f64,
        read: f64,
    },
    /// shot = 1e-4 * ISO / 100, read from Brooks' log-linear fit.
    Iso(u32),
    /// ISO log-uniform in [min, max], read with Brooks' jitter (sigma 0.26).
    IsoRange(u32, u32),
}

impl NoiseSpec {
    /// Parses `none`, `iso:800`, `iso:100-6400`, `shot:1e-3,read:1e-5`
    /// (or `1e-3/1e-5`).
    pub fn parse(s: &str) -> Result<NoiseSpec> {
        let bad = || {
            Error::invalid(format!(
                "noise '{s}': use none, iso:N, iso:MIN-MAX or shot:S,read:R"
            ))
        };
        let s_l = s.trim().to_ascii_lowercase();
        if s_l == "none" || s_l == "0" {
            return Ok(NoiseSpec::None);
        }
        if let Some(v) = s_l.strip_prefix("iso:") {
            if let Some((a, b)) = v.split_once('-') {
                let (a, b): (u32, u32) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a == 0 || b < a || b > 1_000_000 {
                    return Err(bad());
                }
                return Ok(NoiseSpec::IsoRange(a, b));
            }
            let iso: u32 = v.trim().parse().map_err(|_| bad())?;
            if iso == 0 || iso > 1_000_000 {
                return Err(bad());
            }
            return Ok(NoiseSpec::Iso(iso));
        }
        let body = s_l.replace("shot:", "").replace("read:", "");
        let (a, b) = body
            .split_once(',')
            .or_else(|| body.split_once('/'))
            .ok_or_else(bad)?;
        let (shot, read): (f64, f64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if !(0.0..1.0).contains(&shot) || !(0.0..1.0).contains(&read) {
            return Err(bad());
        }
        Ok(NoiseSpec::Fixed { shot, read })
    }

    /// A short label, e.g. `iso800`, for file names and tables.
    pub fn label(&self) -> String {
        match self {
            NoiseSpec::None => "clean".into(),
            NoiseSpec::Fixed { shot, read } => format!("shot{shot:e}_read{read:e}"),
            NoiseSpec::Iso(i) => format!("iso{i}"),
            NoiseSpec::IsoRange(a, b) => format!("iso{a}-{b}"),
        }
    }
}

/// Read-noise variance from shot noise, Brooks' fit (log-log line).
pub fn brooks_read_from_shot(shot: f64) -> f64 {
    (2.18 * shot.ln() + 1.20).exp()
}

/// How [`resolve_params`] builds a capture.
#[derive(Debug, Clone)]
pub struct UnprocessConfig {
    pub cfa: CfaSpec,
    pub matrix: MatrixSpec,
    pub wb: WbSpec,
    pub exposure: ExposureSpec,
    pub noise: NoiseSpec,
    /// Quantisation bits, 10..=16.
    pub bits: u32,
    /// Black level in DN; default 64 << (bits - 10) (64, 256, 1024 ...).
    pub black: Option<f32>,
    pub seed: u64,
}

impl Default for UnprocessConfig {
    fn default() -> Self {
        UnprocessConfig {
            cfa: CfaSpec::Fixed(CfaPattern::Rggb),
            matrix: MatrixSpec::Fixed(DEFAULT_XYZ_TO_CAM),
            wb: WbSpec::Brooks,
            exposure: ExposureSpec::Fixed(1.0),
            noise: NoiseSpec::Iso(400),
            bits: 12,
            black: None,
            seed: 1,
        }
    }
}

/// Every parameter of one synthetic capture (written as `NAME.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthParams {
    /// What was unprocessed (a path or "demo scene").
    pub source: String,
    pub width: usize,
    pub height: usize,
    /// Seed of this image (the run seed mixed with the image name).
    pub seed: u64,
    pub cfa: CfaPattern,
    pub bits: u32,
    /// Black level, DN.
    pub black: f32,
    /// White level, DN (2^bits - 1).
    pub white: f32,
    /// XYZ -> camera (DNG ColorMatrix1, D65), as stored in the DNG.
    pub xyz_to_cam: Mat3,
    /// R = normalize_rows(xyz_to_cam . sRGB_to_XYZ): linear sRGB -> camera.
    pub srgb_to_cam: Mat3,
    /// As-shot WB gains (R, G, B), G = 1, as the DNG stores them.
    pub wb_gains: [f32; 3],
    /// Digital gain divided out (>1 darkens the raw).
    pub exposure_gain: f32,
    /// log2(exposure_gain): the EV a pipeline must add to match the input.
    pub exposure_ev: f32,
    /// Grey level where the highlight-safe gain inversion starts.
    pub highlight_inflection: f32,
    /// Shot-noise scale (variance per unit signal), normalised signal.
    pub shot: f64,
    /// Read-noise variance, normalised signal.
    pub read: f64,
    /// ISO the noise corresponds to (shot = 1e-4 * ISO / 100), if any.
    pub iso: Option<u32>,
    /// The noise specification as given.
    pub noise_spec: String,
}

/// A synthetic capture and its ground truth.
#[derive(Debug, Clone)]
pub struct SynthCapture {
    pub params: SynthParams,
    /// The raw capture; its metadata is exactly what a DNG reader returns.
    pub frame: RawFrame,
    /// Linear camera RGB, HWC interleaved, len = 3 * width * height,
    /// normalised (0 = black, 1 = white level), noise-free, unquantised.
    pub truth: Vec<f32>,
    /// Ideal sRGB rendering (planar, encoded, [0, 1]).
    pub ideal: Image,
}

/// An sRGB-encoded input image, planar CHW, values in [0, 1].
#[derive(Debug, Clone)]
pub struct SrgbInput {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl SrgbInput {
    /// Loads an 8- or 16-bit image (PNG, TIFF, JPEG ...) as sRGB values.
    pub fn load(path: &Path) -> Result<SrgbInput> {
        let shown = path.display().to_string();
        let reader = image::ImageReader::open(path)
            .map_err(|e| Error::io(path, e))?
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))?;
        let (w, h) = reader
            .into_dimensions()
            .map_err(|e| Error::invalid(format!("{shown}: cannot read image: {e}")))?;
        crate::raw::check_dimensions(&shown, w as u64, h as u64, DEFAULT_MAX_MEGAPIXELS)?;
        let img = image::ImageReader::open(path)
            .map_err(|e| Error::io(path, e))?
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))?
            .decode()
            .map_err(|e| Error::invalid(format!("{shown}: cannot read image: {e}")))?
            .into_rgb32f();
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w < 2 || h < 2 {
            return Err(Error::invalid(format!(
                "{shown}: image {w}x{h} is too small"
            )));
        }
        let n = w * h;
        let mut data = vec![0f32; 3 * n];
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                data[c * n + i] = px.0[c].clamp(0.0, 1.0);
            }
        }
        Ok(SrgbInput {
            width: w,
            height: h,
            data,
        })
    }

    /// A linear sRGB image (e.g. [`super::demo_scene`]) clipped to
    /// [0, 1] and sRGB-encoded.
    pub fn from_linear(width: usize, height: usize, linear: &[f32]) -> SrgbInput {
        SrgbInput {
            width,
            height,
            data: linear.iter().map(|&v| color::srgb_encode(v)).collect(),
        }
    }
}

/// splitmix64: decorrelates seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of one image: the run seed mixed with a name (FNV-1a), so a
/// file's capture does not depend on which other files are in the run.
pub fn image_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(seed ^ h)
}

/// Draws the capture parameters for one `width x height` image with
/// `seed` (use [`image_seed`] for per-file seeds). Matrix and gains are
/// quantised to what the DNG stores, so the file, the truth and the ideal
/// rendering agree exactly.
pub fn resolve_params(
    cfg: &UnprocessConfig,
    width: usize,
    height: usize,
    source: &str,
    seed: u64,
) -> Result<SynthParams> {
    if !(10..=16).contains(&cfg.bits) {
        return Err(Error::invalid(format!(
            "bits must be 10..=16, got {}",
            cfg.bits
        )));
    }
    let white = ((1u32 << cfg.bits) - 1) as f32;
    let black = cfg.black.unwrap_or((64u32 << (cfg.bits - 10)) as f32);
    if !(0.0..white * 0.5).contains(&black) || black.fract() != 0.0 {
        return Err(Error::invalid(format!(
            "black level {black} must be a whole number in [0, {})",
            white * 0.5
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed));
    let cfa = match cfg.cfa {
        CfaSpec::Fixed(p) => p,
        CfaSpec::Sampled => CfaPattern::ALL[rng.random_range(0..4)],
    };
    let xyz_to_cam = match cfg.matrix {
        MatrixSpec::Fixed(m) => m,
        MatrixSpec::Brooks => {
            let w: Vec<f32> = (0..4).map(|_| rng.random_range(1e-8f32..1.0)).collect();
            let s: f32 = w.iter().sum();
            let mut m = [[0f32; 3]; 3];
            for (k, cam) in BROOKS_XYZ_TO_CAMS.iter().enumerate() {
                for i in 0..3 {
                    for j in 0..3 {
                        m[i][j] += w[k] / s * cam[i][j];
                    }
                }
            }
            m
        }
    };
    let wb = match cfg.wb {
        WbSpec::Fixed { red, blue } => [red, 1.0, blue],
        WbSpec::Matrix => camera_response(&xyz_to_cam)?.1,
        WbSpec::Brooks => [
            rng.random_range(1.9f32..2.4),
            1.0,
            rng.random_range(1.5f32..1.9),
        ],
    };
    if wb.iter().any(|g| !g.is_finite() || *g < 0.05 || *g > 20.0) {
        return Err(Error::invalid(format!(
            "white balance gains {wb:?} are outside [0.05, 20]"
        )));
    }
    let exposure_gain = match cfg.exposure {
        ExposureSpec::Fixed(g) => g,
        ExposureSpec::Brooks => {
            let n = Normal::new(0.8f32, 0.1).map_err(|e| Error::invalid(e.to_string()))?;
            1.0 / n.sample(&mut rng).clamp(0.5, 1.2)
        }
    };
    if !exposure_gain.is_finite() || !(0.0625..=16.0).contains(&exposure_gain) {
        return Err(Error::invalid(format!(
            "exposure gain {exposure_gain} is outside [1/16, 16]"
        )));
    }
    let (shot, read, iso) = match cfg.noise {
        NoiseSpec::None => (0.0, 0.0, None),
        NoiseSpec::Fixed { shot, read } => (shot, read, None),
        NoiseSpec::Iso(iso) => {
            let shot = SHOT_AT_ISO100 * iso as f64 / 100.0;
            (shot, brooks_read_from_shot(shot), Some(iso))
        }
        NoiseSpec::IsoRange(a, b) => {
            let l = rng.random_range((a as f64).ln()..=(b as f64).ln());
            let iso = l.exp().round() as u32;
            let shot = SHOT_AT_ISO100 * iso as f64 / 100.0;
            let jitter = Normal::new(0.0f64, 0.26)
                .map_err(|e| Error::invalid(e.to_string()))?
                .sample(&mut rng);
            (shot, (2.18 * shot.ln() + 1.20 + jitter).exp(), Some(iso))
        }
    };
    if !(0.0..1.0).contains(&shot) || !(0.0..1.0).contains(&read) {
        return Err(Error::invalid(format!(
            "noise (shot {shot}, read {read}) is outside [0, 1)"
        )));
    }

    // Quantise to the DNG encodings (matrix, AsShotNeutral).
    let mut meta = RawMeta::bayer(source, width, height, cfa);
    meta.black = BlackLevel::uniform(black);
    meta.white = [white; 3];
    meta.wb_gains = Some(wb);
    meta.color_matrices = vec![ColorMatrix {
        illuminant: Illuminant::D65,
        xyz_to_cam,
    }];
    let q = dng_representable(&meta)?;
    let xyz_to_cam = q.color_matrices[0].xyz_to_cam;
    let wb_gains = q.wb_gains.unwrap_or(wb);
    let srgb_to_cam = color::normalize_rows(&color::mul(&xyz_to_cam, &color::SRGB_TO_XYZ));
    if color::invert(&srgb_to_cam).is_none() {
        return Err(Error::invalid("camera colour matrix is singular"));
    }
    Ok(SynthParams {
        source: source.to_string(),
        width,
        height,
        seed,
        cfa,
        bits: cfg.bits,
        black,
        white,
        xyz_to_cam,
        srgb_to_cam,
        wb_gains,
        exposure_gain,
        exposure_ev: exposure_gain.log2(),
        highlight_inflection: HIGHLIGHT_INFLECTION,
        shot,
        read,
        iso,
        noise_spec: cfg.noise.label(),
    })
}

/// The raw metadata of a capture (as a DNG reader returns it).
pub fn capture_meta(p: &SynthParams) -> RawMeta {
    let mut meta = RawMeta::bayer(&p.source, p.width, p.height, p.cfa);
    meta.black = BlackLevel::uniform(p.black);
    meta.white = [p.white; 3];
    meta.bits = p.bits;
    meta.wb_gains = Some(p.wb_gains);
    meta.color_matrices = vec![ColorMatrix {
        illuminant: Illuminant::D65,
        xyz_to_cam: p.xyz_to_cam,
    }];
    meta.noise_profile = (p.shot > 0.0 || p.read > 0.0).then_some(NoiseProfile {
        a: [p.shot; 3],
        b: [p.read; 3],
    });
    meta.make = "rawgraph".into();
    meta.model = "unprocessed".into();
    meta.iso = p.iso;
    meta
}

/// Steps 1-3: sRGB input -> ground-truth linear camera RGB (HWC).
pub fn unprocess_to_camera(img: &SrgbInput, p: &SynthParams) -> Result<Vec<f32>> {
    let (w, h) = (img.width, img.height);
    if img.data.len() != 3 * w * h || (w, h) != (p.width, p.height) {
        return Err(Error::invalid(format!(
            "{}: image is {w}x{h} with {} values, parameters are for {}x{}",
            p.source,
            img.data.len(),
            p.width,
            p.height
        )));
    }
    let n = w * h;
    let r = &p.srgb_to_cam;
    let inv_gain = [
        1.0 / p.wb_gains[0] / p.exposure_gain,
        1.0 / p.wb_gains[1] / p.exposure_gain,
        1.0 / p.wb_gains[2] / p.exposure_gain,
    ];
    let infl = p.highlight_inflection;
    let mut out = vec![0f32; 3 * n];
    out.par_chunks_mut(3 * w).enumerate().for_each(|(y, row)| {
        for x in 0..w {
            let i = y * w + x;
            let lin = [
                color::srgb_decode(img.data[i]),
                color::srgb_decode(img.data[n + i]),
                color::srgb_decode(img.data[2 * n + i]),
            ];
            let cam = color::apply(r, lin);
            let gray = (cam[0] + cam[1] + cam[2]) / 3.0;
            let t = ((gray - infl).max(0.0) / (1.0 - infl)).min(1.0);
            let mask = t * t;
            for c in 0..3 {
                let safe = (mask + (1.0 - mask) * inv_gain[c]).max(inv_gain[c]);
                row[3 * x + c] = (cam[c] * safe).clamp(0.0, 1.0);
            }
        }
    });
    Ok(out)
}

/// The default pipeline's rendering of noise-free camera RGB (HWC,
/// normalised) with a perfect demosaic, from the frame metadata: WB gains
/// normalised to a minimum of 1 and clipped at 1 (white_balance with
/// clip_highlights), `color_correct`'s matrix, 0 EV, sRGB encoding.
pub fn ideal_rendering(truth: &[f32], meta: &RawMeta) -> Result<Image> {
    let (w, h) = (meta.width, meta.height);
    if truth.len() != 3 * w * h {
        return Err(Error::invalid(format!(
            "{}: truth holds {} values, expected {}",
            meta.source,
            truth.len(),
            3 * w * h
        )));
    }
    let g = meta.wb_gains.unwrap_or([1.0; 3]);
    let min = g.iter().cloned().fold(f32::MAX, f32::min);
    let g = [g[0] / min, g[1] / min, g[2] / min];
    let m = meta.camera_to_srgb()?;
    let n = w * h;
    let mut data = vec![0f32; 3 * n];
    {
        let (r, gb) = data.split_at_mut(n);
        let (gp, bp) = gb.split_at_mut(n);
        r.par_chunks_mut(w)
            .zip(gp.par_chunks_mut(w))
            .zip(bp.par_chunks_mut(w))
            .enumerate()
            .for_each(|(y, ((r, gp), bp))| {
                for x in 0..w {
                    let t = &truth[3 * (y * w + x)..3 * (y * w + x) + 3];
                    let wb = [
                        (t[0] * g[0]).min(1.0),
                        (t[1] * g[1]).min(1.0),
                        (t[2] * g[2]).min(1.0),
                    ];
                    let o = color::apply(&m, wb);
                    r[x] = color::srgb_encode(o[0]);
                    gp[x] = color::srgb_encode(o[1]);
                    bp[x] = color::srgb_encode(o[2]);
                }
            });
    }
    Ok(Image {
        width: w,
        height: h,
        data,
        space: ColorSpace::Srgb,
        wb_applied: None,
        meta: std::sync::Arc::new(meta.clone()),
    })
}

/// Steps 4-6 on a clean normalised mosaic (row-major, one value per site,
/// [0, 1]): Poisson-Gaussian noise with variance `shot * x + read`, then
/// quantisation to DN = round(x * (white - black) + black) clamped to
/// [0, white]. Row `y` draws from its own stream seeded by (seed, y).
pub fn noisy_quantised(
    clean: &[f32],
    width: usize,
    shot: f64,
    read: f64,
    black: f32,
    white: f32,
    seed: u64,
) -> Vec<f32> {
    let range = (white - black) as f64;
    let read_sd = read.max(0.0).sqrt();
    let mut out = vec![0f32; clean.len()];
    out.par_chunks_mut(width.max(1))
        .zip(clean.par_chunks(width.max(1)))
        .enumerate()
        .for_each(|(y, (row, src))| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ mix(y as u64 + 1)));
            let std = Normal::new(0.0f64, 1.0).ok();
            for (o, &x) in row.iter_mut().zip(src) {
                let x = x as f64;
                let mut v = x;
                if let Some(d) = &std {
                    if shot > 0.0 && x > 0.0 {
                        let lambda = x / shot;
                        v = if lambda < 100.0 {
                            match Poisson::new(lambda) {
                                Ok(p) => p.sample(&mut rng) * shot,
                                Err(_) => x,
                            }
                        } else {
                            x + (shot * x).sqrt() * d.sample(&mut rng)
                        };
                    }
                    if read > 0.0 {
                        v += read_sd * d.sample(&mut rng);
                    }
                }
                *o = (v * range + black as f64).round().clamp(0.0, white as f64) as f32;
            }
        });
    out
}

/// The full unprocessing of one image with resolved parameters.
pub fn unprocess(img: &SrgbInput, p: &SynthParams) -> Result<SynthCapture> {
    let truth = unprocess_to_camera(img, p)?;
    let (w, h) = (p.width, p.height);
    let clean: Vec<f32> = (0..w * h)
        .map(|i| truth[3 * i + p.cfa.color_at(i / w, i % w)])
        .collect();
    let data = noisy_quantised(&clean, w, p.shot, p.read, p.black, p.white, p.seed);
    let meta = capture_meta(p);
    let ideal = ideal_rendering(&truth, &meta)?;
    let frame = RawFrame {
        meta,
        data: data.into(),
    };
    frame.validate()?;
    Ok(SynthCapture {
        params: p.clone(),
        frame,
        truth,
        ideal,
    })
}

/// Writes a `.npy` (NumPy format 1.0) file of little-endian float32 with
/// the given C-order shape, atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::invalid(format!(
            "{}: shape {shape:?} does not match {} values",
            path.display(),
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with
    // spaces and a newline to a multiple of 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, |f| f.write_all(&bytes))
}

/// Reads a float32 little-endian C-order `.npy` file: (shape, values).
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |r: &str| Error::invalid(format!("{}: not a float32 .npy file: {r}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown version")),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(bad("only little-endian float32 in C order is supported"));
    }
    let shape_txt = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape overflows"))?;
    let body = &bytes[start + hlen..];
    if body.len() != count * 4 {
        return Err(bad(&format!(
            "{} data bytes for shape {shape:?}",
            body.len()
        )));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, data))
}

/// Paths of the files [`write_capture`] writes for `stem` in `dir`.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureFiles {
    pub dng: PathBuf,
    pub truth: PathBuf,
    pub ideal: PathBuf,
    pub params: PathBuf,
}

impl CaptureFiles {
    pub fn new(dir: &Path, stem: &str) -> CaptureFiles {
        CaptureFiles {
            dng: dir.join(format!("{stem}.dng")),
            truth: dir.join(format!("{stem}.truth.npy")),
            ideal: dir.join(format!("{stem}.ideal.png")),
            params: dir.join(format!("{stem}.json")),
        }
    }
}

/// The JSON written next to a capture.
#[derive(Debug, Serialize)]
struct CaptureRecord<'a> {
    schema_version: crate::output::SchemaVersion,
    params: &'a SynthParams,
    files: FileNames,
    truth_layout: &'static str,
    ideal_definition: &'static str,
}

#[derive(Debug, Serialize)]
struct FileNames {
    dng: String,
    truth: String,
    ideal: String,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Writes the DNG, truth `.npy`, ideal PNG (16-bit) and parameter JSON of
/// a capture into `dir` (see module docs), each atomically.
pub fn write_capture(
    cap: &SynthCapture,
    dir: &Path,
    stem: &str,
    opts: &DngOptions,
) -> Result<CaptureFiles> {
    let files = CaptureFiles::new(dir, stem);
    write_dng(&cap.frame, &files.dng, opts)?;
    write_npy_f32(
        &files.truth,
        &[cap.params.height, cap.params.width, 3],
        &cap.truth,
    )?;
    write_image(&cap.ideal, &files.ideal, OutFormat::Png16)?;
    let rec = CaptureRecord {
        schema_version: crate::output::SchemaVersion,
        params: &cap.params,
        files: FileNames {
            dng: file_name(&files.dng),
            truth: file_name(&files.truth),
            ideal: file_name(&files.ideal),
        },
        truth_layout: "linear camera RGB, float32 little-endian, shape (height, width, 3), \
                       black level removed, 1.0 = white level, noise-free, unquantised",
        ideal_definition: "default pipeline on the truth with a perfect demosaic: WB gains / \
                           min(gains) clipped at 1, color_correct matrix, 0 EV, sRGB encoding; \
                           16-bit PNG",
    };
    let s = serde_json::to_string_pretty(&rec).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&files.params, |f| f.write_all(s.as_bytes()))?;
    Ok(files)
}

/// Reads the parameters of a capture from its JSON file.
pub fn read_params(path: &Path) -> Result<SynthParams> {
    #[derive(Deserialize)]
    struct Rec {
        params: SynthParams,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let r: Rec = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: bad synth parameters: {e}", path.display())))?;
    Ok(r.params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray_ramp(w: usize, h: usize) -> SrgbInput {
        let n = w * h;
        let mut data = vec![0f32; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let v = x as f32 / (w - 1) as f32;
                let i = y * w + x;
                data[i] = v;
                data[n + i] = (v * 0.8 + 0.1 * (y % 3) as f32).min(1.0);
                data[2 * n + i] = 1.0 - v;
            }
        }
        SrgbInput {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn noise_spec_parsing() {
        assert_eq!(NoiseSpec::parse("none").unwrap(), NoiseSpec::None);
        assert_eq!(NoiseSpec::parse("iso:800").unwrap(), NoiseSpec::Iso(800));
        assert_eq!(
            NoiseSpec::parse("iso:100-3200").unwrap(),
            NoiseSpec::IsoRange(100, 3200)
        );
        assert_eq!(
            NoiseSpec::parse("shot:1e-3,read:2e-5").unwrap(),
            NoiseSpec::Fixed {
                shot: 1e-3,
                read: 2e-5
            }
        );
        assert!(NoiseSpec::parse("iso:0").is_err());
        assert!(NoiseSpec::parse("loud").is_err());
    }

    #[test]
    fn ideal_of_unprocessed_midtones_is_the_input() {
        // No exposure gain, gains >= 1: mid-tones come back exactly.
        let img = gray_ramp(32, 8);
        let cfg = UnprocessConfig {
            noise: NoiseSpec::None,
            ..Default::default()
        };
        let p = resolve_params(&cfg, 32, 8, "t", 3).unwrap();
        let cap = unprocess(&img, &p).unwrap();
        let n = 32 * 8;
        for i in 0..n {
            let inp = [img.data[i], img.data[n + i], img.data[2 * n + i]];
            let bright = inp.iter().any(|v| *v > 0.85);
            if bright {
                continue;
            }
            for (c, want) in inp.iter().enumerate() {
                let got = cap.ideal.data[c * n + i];
                assert!(
                    (got - want).abs() < 2e-3,
                    "pixel {i} c {c}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn npy_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let v: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        write_npy_f32(&p, &[2, 4, 3], &v).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 96) % 4, 0);
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        let (s, back) = read_npy_f32(&p).unwrap();
        assert_eq!(s, vec![2, 4, 3]);
        assert_eq!(back, v);
    }

    #[test]
    fn sampled_params_are_deterministic_and_in_range() {
        let cfg = UnprocessConfig {
            cfa: CfaSpec::Sampled,
            matrix: MatrixSpec::Brooks,
            wb: WbSpec::Brooks,
            exposure: ExposureSpec::Brooks,
            noise: NoiseSpec::IsoRange(100, 6400),
            ..Default::default()
        };
        for s in 0..20 {
            let a = resolve_params(&cfg, 16, 16, "x", s).unwrap();
            let b = resolve_params(&cfg, 16, 16, "x", s).unwrap();
            assert_eq!(a, b);
            assert!((1.9..=2.4).contains(&a.wb_gains[0]), "{:?}", a.wb_gains);
            assert!((1.5..=1.9).contains(&a.wb_gains[2]), "{:?}", a.wb_gains);
            let iso = a.iso.unwrap();
            assert!((100..=6400).contains(&iso));
            for row in a.srgb_to_cam {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }
}
