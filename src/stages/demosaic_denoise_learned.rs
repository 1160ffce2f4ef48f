//! `demosaic_denoise_learned`: joint demosaicking and denoising with the
//! noise-conditioned `dmdn` network (Gharbi et al. 2016, "Deep Joint
//! Demosaicking and Denoising"; noise-map conditioning as FFDNet, Zhang et
//! al. 2018). The network and its tiling live in [`crate::nn::dmdn`]; the
//! weights in `calibration/models/demosaic_<model>.safetensors`, trained by
//! `training/train_dmdn.py`.
//!
//! Input 1: a normalised (black level removed, 1.0 = white), usually
//! white-balanced Bayer mosaic, any phase. Optional input 2: a noise estimate
//! (the `noise_estimate` stage). Output: an RGB image in the mosaic's units
//! (linear camera RGB on the raw path).
//!
//! A raw-path model over a classical base (weights metadata `base`, e.g.
//! `rcd_mlri` for `fastb`; [`crate::nn::dmdn_unet`]) first runs that
//! classical demosaic (`demosaic_<base>`, default params) on the whole
//! input mosaic, then the network tiles with the base windowed as the
//! mosaic; the classical op's time is part of this stage's.
//!
//! Noise level fed to the network, first that applies:
//! 1. `sigma` param: one std for the frame, in the mosaic's units;
//! 2. the noise-estimate input: per-pixel std from its Poisson-Gaussian model;
//! 3. the frame's NoiseProfile (DNG tag / sidecar), scaled by the applied WB;
//! 4. zero (noise-free).
//!
//! `strength` multiplies whichever std applies before the network sees it
//! (the noise-level-map control of FFDNet): below 1 keeps more texture and
//! more noise, above 1 smooths more. 1.0 is what the network was trained
//! for.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::demosaic_bilinear::demosaiced;
use super::{check_range, mosaic_and_optional_noise, mosaic_ref, parse_params, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Mosaic, Value, ValueDesc};
use crate::nn::{BayerFrame, DemosaicNet, NoiseInput};
use crate::noise::scale_profile;
use crate::raw::NoiseProfile;

/// YAML params of `demosaic_denoise_learned`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `fast`, `quality`, `qualityd` (sRGB regime), `fast_raw`, `fastc_raw`,
    /// `fastd_raw`, `quality_raw`, `qualityd_raw` (raw regime; shipped models
    /// in `$RAWGRAPH_MODELS` or `calibration/models/`) or a path to a
    /// `.safetensors` file.
    #[serde(default = "default_model")]
    pub model: String,
    /// Noise std in the mosaic's units (e.g. 10/255 for σ = 10 on 8-bit data);
    /// absent = from the noise input / the frame's NoiseProfile / zero.
    #[serde(default)]
    pub sigma: Option<f32>,
    /// Output tile edge in pixels (memory vs halo overhead); absent = the
    /// model's default (`DemosaicNet::default_tile`: 256..=512 for the flat
    /// `dmdn`, 32 halos up to 1536 for the U-Nets).
    #[serde(default)]
    pub tile: Option<usize>,
    /// Multiplier on the conditioning noise std, 0..=4 (1.0 = as measured).
    #[serde(default = "default_strength")]
    pub strength: f32,
}

fn default_strength() -> f32 {
    1.0
}

fn default_model() -> String {
    "fast".into()
}

impl Default for Params {
    fn default() -> Self {
        Params {
            model: default_model(),
            sigma: None,
            tile: None,
            strength: default_strength(),
        }
    }
}

/// Where a model name resolves to.
pub fn model_path(model: &str) -> PathBuf {
    if matches!(
        model,
        "fast"
            | "quality"
            | "qualityd"
            | "fast_raw"
            | "fastc_raw"
            | "fastd_raw"
            | "quality_raw"
            | "qualityd_raw"
    ) {
        let dir = std::env::var_os("RAWGRAPH_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models")
            });
        dir.join(format!("demosaic_{model}.safetensors"))
    } else {
        PathBuf::from(model)
    }
}

/// The compiled op: params checked and the model loaded.
#[derive(Debug)]
pub struct DemosaicDenoiseLearned {
    params: Params,
    model: Arc<DemosaicNet>,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if let Some(s) = self.sigma {
            check_range("sigma", s, 0.0, 1.0)?;
        }
        check_range("strength", self.strength, 0.0, 4.0)?;
        if let Some(t) = self.tile {
            if !(16..=4096).contains(&t) {
                return Err(super::CompileError::Params(format!(
                    "tile = {t} is outside [16, 4096]"
                )));
            }
        }
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let model = DemosaicNet::load(model_path(&p.model)).map_err(|e| e.to_string())?;
    Ok(Box::new(DemosaicDenoiseLearned {
        params: p,
        model: Arc::new(model),
    }))
}

impl DemosaicDenoiseLearned {
    /// The loaded network.
    pub fn model(&self) -> &DemosaicNet {
        &self.model
    }
}

/// Per-pixel std from a Poisson-Gaussian model, times `k`:
/// k·sqrt(a_c·max(x, 0) + b_c).
fn std_map(m: &Mosaic, p: &NoiseProfile, k: f64) -> Vec<f32> {
    let data = m.data.f32();
    let mut out = vec![0.0f32; data.len()];
    for (y, row) in out.chunks_mut(m.width.max(1)).enumerate() {
        for (x, o) in row.iter_mut().enumerate() {
            let c = m.cfa.color_at(y, x);
            let v = data[y * m.width + x].max(0.0) as f64;
            *o = (k * (p.a[c] * v + p.b[c]).max(0.0).sqrt()) as f32;
        }
    }
    out
}

impl Stage for DemosaicDenoiseLearned {
    fn op(&self) -> &'static str {
        "demosaic_denoise_learned"
    }

    fn arity(&self) -> (usize, usize) {
        (1, 2)
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = mosaic_and_optional_noise(inputs)?;
        Ok(ValueDesc::image(d.width, d.height, ColorSpace::Camera))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let profile = match (self.params.sigma, inputs.get(1)) {
            (Some(_), _) => None,
            (None, Some(Value::Noise(n))) => Some(n.profile),
            // x' = g·x gives var' = g·a·x' + g²·b.
            (None, _) => m.meta.noise_profile.map(|p| match m.wb_applied {
                Some(g) => scale_profile(&p, g),
                None => p,
            }),
        };
        let k = self.params.strength;
        let map = profile.map(|p| std_map(m, &p, k as f64));
        let noise = match (&map, self.params.sigma) {
            (Some(map), _) => NoiseInput::Map(map),
            (None, s) => NoiseInput::Uniform(k * s.unwrap_or(0.0)),
        };
        let cfa = m.cfa.layout().map(|c| c as u8);
        let tile = self
            .params
            .tile
            .unwrap_or_else(|| self.model.default_tile());
        // The classical base of the frame as received (its own phase),
        // before any padding.
        let base = match (self.model.classical_base(), v) {
            (Some(b), Value::Mosaic(arc)) => Some(b.run_mosaic(arc.clone())?),
            _ => None,
        };
        let data = m.data.f32();
        let frame = BayerFrame {
            mosaic: &data,
            h: m.height,
            w: m.width,
            cfa,
            noise,
            base: base.as_deref(),
        };
        let out = self.model.run_frame(frame, tile)?;
        Ok(demosaiced(m, out.into_vec()))
    }
}
