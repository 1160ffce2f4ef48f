//! Synthetic raw captures with known ground truth (test, demo and
//! training data; a layer above `raw`, which it produces [`RawFrame`]s
//! for).
//!
//! This file: [`demo_scene`] draws a built-in test scene (colour chart,
//! grey ramp, zone plate, sky gradient) in linear sRGB; [`mosaic_scene`]
//! turns a linear sRGB image into a raw Bayer capture through a camera
//! matrix, as-shot white balance, Poisson-Gaussian noise and quantisation,
//! so that the default pipeline's ideal output is known exactly.
//!
//! [`unprocess`]: sRGB images into realistic raw captures by inverting the
//! default pipeline (Brooks et al., CVPR 2019), with the files it writes.

pub mod charts;
pub mod unprocess;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::color::{self, Mat3};
use crate::error::{Error, Result};
use crate::frame::SensorSamples;
use crate::raw::{
    BlackLevel, CfaPattern, ColorMatrix, Illuminant, NoiseProfile, RawFrame, RawMeta,
};

/// XYZ -> camera matrix of a typical DSLR under D65 (Adobe DNG
/// ColorMatrix2 of the Canon EOS 5D Mark II).
pub const DEFAULT_XYZ_TO_CAM: Mat3 = [
    [0.4716, 0.0603, -0.0830],
    [-0.7798, 1.5474, 0.2480],
    [-0.1496, 0.1937, 0.6651],
];

/// Linear sRGB values of the 24 ColorChecker patches (row-major, 4x6).
const CHART: [[f32; 3]; 24] = [
    [0.173, 0.086, 0.058],
    [0.544, 0.303, 0.223],
    [0.123, 0.192, 0.336],
    [0.106, 0.150, 0.053],
    [0.237, 0.215, 0.434],
    [0.131, 0.513, 0.407],
    [0.672, 0.202, 0.026],
    [0.075, 0.102, 0.386],
    [0.541, 0.083, 0.121],
    [0.109, 0.044, 0.141],
    [0.333, 0.501, 0.047],
    [0.769, 0.365, 0.022],
    [0.028, 0.048, 0.282],
    [0.062, 0.292, 0.066],
    [0.444, 0.030, 0.041],
    [0.836, 0.579, 0.011],
    [0.513, 0.083, 0.291],
    [0.000, 0.231, 0.378],
    [0.885, 0.885, 0.878],
    [0.586, 0.589, 0.589],
    [0.360, 0.362, 0.362],
    [0.198, 0.199, 0.199],
    [0.091, 0.091, 0.092],
    [0.031, 0.032, 0.032],
];

/// A linear sRGB image, planar CHW (3 planes of width * height).
#[derive(Debug, Clone)]
pub struct LinearImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// The built-in demo scene in linear sRGB, values in [0, 1].
pub fn demo_scene(width: usize, height: usize) -> LinearImage {
    let n = width * height;
    let mut data = vec![0f32; 3 * n];
    let (wf, hf) = (width as f32, height as f32);
    let chart_x0 = 0.05 * wf;
    let chart_y0 = 0.45 * hf;
    let cell = (0.07 * wf).min(0.12 * hf);
    let zp_cx = 0.78 * wf;
    let zp_cy = 0.62 * hf;
    let zp_r = 0.18 * hf.min(wf);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = yf / hf;
            // Sky gradient on top, warm ground below.
            let mut rgb = if t < 0.4 {
                let k = t / 0.4;
                [0.20 + 0.25 * k, 0.35 + 0.25 * k, 0.75 - 0.1 * k]
            } else {
                let k = (t - 0.4) / 0.6;
                [0.18 - 0.08 * k, 0.14 - 0.06 * k, 0.08 - 0.04 * k]
            };
            // Sun: a clipped highlight.
            let (sx, sy) = (0.85 * wf, 0.12 * hf);
            if (xf - sx).hypot(yf - sy) < 0.04 * hf {
                rgb = [4.0, 3.8, 3.2];
            }
            // Colour chart.
            let (cx, cy) = ((xf - chart_x0) / cell, (yf - chart_y0) / cell);
            if (0.0..6.0).contains(&cx) && (0.0..4.0).contains(&cy) {
                let (i, j) = (cx as usize, cy as usize);
                let inside = cx.fract() > 0.08 && cy.fract() > 0.08;
                rgb = if inside { CHART[j * 6 + i] } else { [0.01; 3] };
            }
            // Grey ramp under the chart.
            if yf > chart_y0 + 4.3 * cell
                && yf < chart_y0 + 4.9 * cell
                && xf > chart_x0
                && xf < chart_x0 + 6.0 * cell
            {
                let v = (xf - chart_x0) / (6.0 * cell);
                rgb = [v * v; 3];
            }
            // Zone plate: frequency rising with radius (demosaic stress).
            let (dx, dy) = (xf - zp_cx, yf - zp_cy);
            let r2 = dx * dx + dy * dy;
            if r2 < zp_r * zp_r {
                let v = 0.5 + 0.5 * (std::f32::consts::PI * r2 / (2.0 * zp_r)).cos();
                rgb = [0.05 + 0.6 * v; 3];
            }
            let i = y * width + x;
            data[i] = rgb[0];
            data[n + i] = rgb[1];
            data[2 * n + i] = rgb[2];
        }
    }
    LinearImage {
        width,
        height,
        data,
    }
}

/// How [`mosaic_scene`] builds the raw capture.
#[derive(Debug, Clone)]
pub struct CaptureParams {
    pub cfa: CfaPattern,
    /// XYZ -> camera under D65.
    pub xyz_to_cam: Mat3,
    /// Quantisation bits (10, 12, 14, 16).
    pub bits: u32,
    /// Black level in DN.
    pub black: f32,
    /// Noise per colour on the normalised signal (None: noise-free).
    pub noise: Option<NoiseProfile>,
    pub seed: u64,
}

impl Default for CaptureParams {
    fn default() -> Self {
        CaptureParams {
            cfa: CfaPattern::Rggb,
            xyz_to_cam: DEFAULT_XYZ_TO_CAM,
            bits: 12,
            black: 256.0,
            noise: Some(NoiseProfile {
                a: [2e-4; 3],
                b: [2e-6; 3],
            }),
            seed: 1,
        }
    }
}

/// The camera's response to linear sRGB: raw = M . srgb with
/// M = XYZ_to_cam . sRGB_to_XYZ, scaled so white saturates green exactly.
/// Returns (M scaled, as-shot WB gains normalised to G = 1).
pub fn camera_response(xyz_to_cam: &Mat3) -> Result<(Mat3, [f32; 3])> {
    let m = color::mul(xyz_to_cam, &color::SRGB_TO_XYZ);
    let sums: Vec<f32> = m.iter().map(|r| r.iter().sum()).collect();
    if sums.iter().any(|s| *s <= 1e-6) {
        return Err(Error::invalid(
            "camera matrix maps white outside the positive octant",
        ));
    }
    let g = sums[1];
    let mut ms = m;
    ms.iter_mut().flatten().for_each(|v| *v /= g);
    Ok((ms, [g / sums[0], 1.0, g / sums[2]]))
}

/// Turns a linear sRGB image into a raw Bayer capture (see module docs).
/// The samples are whole DN; up to 16 bits they are held as `u16`, as a
/// decoded camera raw's are.
pub fn mosaic_scene(img: &LinearImage, p: &CaptureParams, source: &str) -> Result<RawFrame> {
    let (w, h) = (img.width, img.height);
    if w < 2 || h < 2 || img.data.len() != 3 * w * h {
        return Err(Error::invalid("scene image has a bad size"));
    }
    if !(8..=16).contains(&p.bits) {
        return Err(Error::invalid(format!(
            "bits must be 8..16, got {}",
            p.bits
        )));
    }
    let (m, wb) = camera_response(&p.xyz_to_cam)?;
    let white = ((1u32 << p.bits) - 1) as f32;
    let range = white - p.black;
    if range <= 0.0 {
        return Err(Error::invalid("black level is not below the white level"));
    }
    let n = w * h;
    let mut data = vec![0f32; n];
    data.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ ((y as u64) << 20) ^ 0x9e37_79b9);
        let std = Normal::new(0.0f32, 1.0).ok();
        for (x, out) in row.iter_mut().enumerate() {
            let i = y * w + x;
            let c = p.cfa.color_at(y, x);
            let rgb = [img.data[i], img.data[n + i], img.data[2 * n + i]];
            let mut v = (m[c][0] * rgb[0] + m[c][1] * rgb[1] + m[c][2] * rgb[2]).clamp(0.0, 1.0);
            if let (Some(np), Some(d)) = (&p.noise, &std) {
                let var = (np.a[c] * v as f64 + np.b[c]).max(0.0);
                v += var.sqrt() as f32 * d.sample(&mut rng);
            }
            *out = (v * range + p.black).round().clamp(0.0, white);
        }
    });
    let mut meta = RawMeta::bayer(source, w, h, p.cfa);
    meta.black = BlackLevel::uniform(p.black);
    meta.white = [white; 3];
    meta.bits = p.bits;
    meta.wb_gains = Some(wb);
    meta.color_matrices = vec![ColorMatrix {
        illuminant: Illuminant::D65,
        xyz_to_cam: p.xyz_to_cam,
    }];
    meta.noise_profile = p.noise;
    meta.make = "rawgraph".into();
    meta.model = "synthetic".into();
    meta.iso = Some(100);
    // Whole numbers in 0..=white: exact in u16 when white fits.
    let data: SensorSamples = if white <= f32::from(u16::MAX) {
        data.par_iter()
            .map(|&v| v as u16)
            .collect::<Vec<u16>>()
            .into()
    } else {
        data.into()
    };
    let frame = RawFrame { meta, data };
    frame.validate()?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_free_capture_is_deterministic_and_in_range() {
        let scene = demo_scene(64, 48);
        let p = CaptureParams {
            noise: None,
            ..Default::default()
        };
        let a = mosaic_scene(&scene, &p, "t").unwrap();
        let b = mosaic_scene(&scene, &p, "t").unwrap();
        assert_eq!(a.data, b.data);
        assert!(matches!(a.data, SensorSamples::U16(_)));
        assert!(a.data.f32().iter().all(|v| (256.0..=4095.0).contains(v)));
        let wb = a.meta.wb_gains.unwrap();
        assert!(wb[0] > 1.0 && wb[2] > 1.0, "{wb:?}");
    }
}
