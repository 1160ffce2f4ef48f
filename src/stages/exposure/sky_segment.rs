//! `sky_segment`: a per-pixel sky probability map of a linear frame.
//!
//! Models:
//! - `classical`: a cue model in the spirit of the sky detectors of
//!   Schmitt & Priese 2009 ("Sky detection in CSC-segmented color images")
//!   and Zafarifar & de With 2008 ("Blue sky detection for picture quality
//!   enhancement"): the product of four soft cues per pixel — brightness
//!   (log luminance above the frame's log-average), colour (blue or neutral,
//!   not green/red/yellow), smoothness (low local deviation of log
//!   luminance) and position (upper part of the frame) — then the guided
//!   filter below;
//! - `learned` (default): the small CNN of `training/train_sky.py`
//!   ([`crate::nn::sky_seg`], weights `calibration/models/sky.safetensors`,
//!   trained on CamVid), run at `net_side` pixels, or a path to another
//!   `.safetensors` of the same architecture.
//!
//! Both run on a box-downscaled copy (`map_side` pixels on the longer side)
//! and the coarse probability is upsampled to that map with a guided filter
//! (He, Sun & Tang 2010) guided by the frame's normalised luminance, so
//! the map follows the skyline. The map covers the whole frame.
//!
//! Input: a linear image. Output: a `sky_map` value ([`SkyMap`]).

use crate::stages::Validate;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::guided_filter::{box_mean, guided_filter, resize_bilinear};
use super::{area_downscale, grid_size, planar_image, SkyMap};
use crate::color::{luminance, srgb_encode};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc, ValueKind};
use crate::nn::sky_seg::{prepare_input, SkySeg};
use crate::stages::{check_range, parse_params, RunCtx, Stage};

/// YAML params of `sky_segment`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// `learned` (shipped weights), `classical`, or a `.safetensors` path.
    pub model: String,
    /// Longer side of the output map, pixels.
    pub map_side: usize,
    /// Longer side of the network input (learned), pixels; rounded to a
    /// multiple of 8.
    pub net_side: usize,
    /// Guided-filter radius, map pixels.
    pub radius: usize,
    /// Guided-filter regulariser (guide in [0, 1]).
    pub eps: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            model: "learned".into(),
            map_side: 256,
            net_side: 128,
            radius: 4,
            eps: 1e-3,
        }
    }
}

/// Where `learned` resolves to.
pub fn model_path(model: &str) -> PathBuf {
    if model == "learned" {
        let dir = std::env::var_os("RAWGRAPH_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models")
            });
        dir.join("sky.safetensors")
    } else {
        PathBuf::from(model)
    }
}

/// The compiled `sky_segment` op.
#[derive(Debug)]
pub struct SkySegment {
    p: Params,
    net: Option<Arc<SkySeg>>,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if !(32..=4096).contains(&self.map_side) {
            return Err(crate::stages::CompileError::params(format!(
                "map_side = {} is outside [32, 4096]",
                self.map_side
            )));
        }
        if !(32..=1024).contains(&self.net_side) {
            return Err(crate::stages::CompileError::params(format!(
                "net_side = {} is outside [32, 1024]",
                self.net_side
            )));
        }
        if !(1..=64).contains(&self.radius) {
            return Err(crate::stages::CompileError::params(format!(
                "radius = {} is outside [1, 64]",
                self.radius
            )));
        }
        check_range("eps", self.eps, 1e-6, 1.0)?;
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    Ok(Box::new(SkySegment::new(parse_params(params)?)?))
}

impl SkySegment {
    /// Validates params and loads the network (unless classical).
    pub fn new(p: Params) -> std::result::Result<SkySegment, crate::stages::CompileError> {
        p.validate()?;
        let net = if p.model == "classical" {
            None
        } else {
            Some(Arc::new(
                SkySeg::load(model_path(&p.model)).map_err(|e| e.to_string())?,
            ))
        };
        Ok(SkySegment { p, net })
    }

    /// The sky map of a linear image.
    pub fn segment(&self, img: &Image) -> Result<SkyMap> {
        if img.width == 0 || img.height == 0 {
            return Err(Error::invalid("empty image"));
        }
        let (mw, mh) = grid_size(img.width, img.height, self.p.map_side);
        let mut small = area_downscale(img, mw, mh);
        small
            .iter_mut()
            .filter(|v| !v.is_finite())
            .for_each(|v| *v = 0.0);
        let n = mw * mh;
        // Exposure-normalised, sRGB-encoded luminance: the guide in [0, 1].
        let lum: Vec<f32> = (0..n)
            .map(|i| {
                let l = luminance(small[i], small[n + i], small[2 * n + i]);
                if l.is_finite() {
                    l.max(0.0)
                } else {
                    0.0
                }
            })
            .collect();
        let la =
            (lum.iter().map(|&l| (l.max(1e-4) as f64).ln()).sum::<f64>() / n as f64).exp() as f32;
        let k = (0.18 / la).clamp(2f32.powi(-8), 2f32.powi(8));
        let guide: Vec<f32> = lum.iter().map(|&l| srgb_encode(l * k)).collect();
        let coarse = match &self.net {
            Some(net) => self.learned(net, &small, mw, mh)?,
            None => classical(&small, &lum, k, mw, mh),
        };
        let prob: Vec<f32> = guided_filter(&guide, &coarse, mw, mh, self.p.radius, self.p.eps)
            .into_iter()
            .map(|v| v.clamp(0.0, 1.0))
            .collect();
        Ok(SkyMap {
            width: mw,
            height: mh,
            frame_width: img.width,
            frame_height: img.height,
            prob,
            model: if self.net.is_some() {
                "learned"
            } else {
                "classical"
            }
            .into(),
        })
    }

    /// Network probability upsampled bilinearly to the map (`mw x mh`).
    fn learned(&self, net: &SkySeg, small: &[f32], mw: usize, mh: usize) -> Result<Vec<f32>> {
        let long = mw.max(mh) as f32;
        let side = self.p.net_side as f32;
        let r8 = |v: usize| ((v as f32 * side / long / 8.0).round() as usize).max(1) * 8;
        let (nw, nh) = (r8(mw), r8(mh));
        let map_img = planar_image(mw, mh, small.to_vec(), ColorSpace::LinearSrgb);
        let net_rgb = area_downscale(&map_img, nw, nh);
        let x = prepare_input(&net_rgb, nw, nh)?;
        let logit = net.forward(&x)?;
        let [_, _, lh, lw] = logit.shape();
        let p: Vec<f32> = logit
            .data()
            .iter()
            .map(|&v| 1.0 / (1.0 + (-v).exp()))
            .collect();
        Ok(resize_bilinear(&p, lw, lh, mw, mh))
    }
}

/// Classical cue model on the map (`small`: planar linear RGB `w x h`,
/// `lum` its luminance, `k` the exposure normalisation).
fn classical(small: &[f32], lum: &[f32], k: f32, w: usize, h: usize) -> Vec<f32> {
    let n = w * h;
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    let logl: Vec<f32> = lum.iter().map(|&l| (l * k).max(1e-4).log2()).collect();
    let sq: Vec<f32> = logl.iter().map(|v| v * v).collect();
    let m = box_mean(&logl, w, h, 2);
    let m2 = box_mean(&sq, w, h, 2);
    (0..n)
        .map(|i| {
            let (r, g, b) = (small[i], small[n + i], small[2 * n + i]);
            let s = (r + g + b).max(1e-6);
            // Brightness: sky sits above mid grey (0.18 = log2 -2.47).
            let bright = sig((logl[i] + 1.5) / 0.5);
            // Colour: blue or neutral; green, red and yellow are not sky.
            let blue = (b - r) / s;
            let green = (g - 0.5 * (r + b)) / s;
            let colour = sig((blue + 0.04) / 0.03) * sig((0.06 - green) / 0.03);
            // Smoothness: local std of log2 luminance (5x5).
            let sd = (m2[i] - m[i] * m[i]).max(0.0).sqrt();
            let smooth = (-(sd / 0.25).powi(2)).exp();
            // Position: the upper part of the frame.
            let y = (i / w) as f32 / h.max(1) as f32;
            let pos = sig((0.55 - y) / 0.08);
            bright * colour * smooth * pos
        })
        .collect()
}

impl Stage for SkySegment {
    fn op(&self) -> &'static str {
        "sky_segment"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = crate::stages::one_input(inputs, ValueKind::Image)?;
        if d.space == Some(ColorSpace::Srgb) {
            return Err("expects a linear image, got an sRGB-encoded one".into());
        }
        Ok(ValueDesc::other(ValueKind::Other(super::SKY_MAP)))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        match inputs.first() {
            Some(Value::Image(img)) => Ok(Value::Other(Arc::new(self.segment(img)?))),
            _ => Err(Error::invalid("expects an image input")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(w: usize, h: usize) -> Image {
        // Blue bright sky above 40 %, textured green-brown ground below.
        let n = w * h;
        let mut d = vec![0f32; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let px = if y < h * 2 / 5 {
                    [0.35, 0.5, 0.8]
                } else {
                    let t = if (x / 3 + y / 2) % 2 == 0 { 0.06 } else { 0.02 };
                    [t, t * 1.3, t * 0.6]
                };
                for c in 0..3 {
                    d[c * n + i] = px[c];
                }
            }
        }
        planar_image(w, h, d, ColorSpace::LinearSrgb)
    }

    #[test]
    fn classical_model_finds_a_blue_sky() {
        let s = SkySegment::new(Params {
            model: "classical".into(),
            ..Params::default()
        })
        .unwrap();
        let m = s.segment(&scene(200, 150)).unwrap();
        assert_eq!((m.frame_width, m.frame_height), (200, 150));
        let top = m.sample(100.0, 20.0);
        let bottom = m.sample(100.0, 130.0);
        assert!(top > 0.7 && bottom < 0.1, "top {top} bottom {bottom}");
    }

    #[test]
    fn degenerate_frames_give_valid_maps() {
        let s = SkySegment::new(Params {
            model: "classical".into(),
            ..Params::default()
        })
        .unwrap();
        for v in [0.0, 1.0, f32::NAN] {
            let img = planar_image(40, 30, vec![v; 3 * 1200], ColorSpace::LinearSrgb);
            let m = s.segment(&img).unwrap();
            assert!(m.prob.iter().all(|p| (0.0..=1.0).contains(p)));
        }
    }

    #[test]
    fn missing_weights_are_an_error_naming_the_file() {
        let e = SkySegment::new(Params {
            model: "/nonexistent/sky.safetensors".into(),
            ..Params::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/sky.safetensors"),
            "{e}"
        );
    }
}
