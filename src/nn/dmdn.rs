//! `dmdn`: joint demosaicking and denoising network, noise-conditioned.
//!
//! Method: Gharbi, Chaurasia, Paris & Durand 2016, "Deep Joint Demosaicking
//! and Denoising" (SIGGRAPH Asia), with a noise-level map input as in FFDNet
//! (Zhang et al. 2018). Trained by `training/train_dmdn.py`, which documents
//! the same graph in PyTorch; the two must stay identical.
//!
//! Graph (every conv is 3x3 'same' zero-padded unless noted; H, W even):
//! ```text
//! mosaic (1, H, W) in the model's canonical Bayer phase
//!   packed = pixel_unshuffle(mosaic, 2)            (4, H/2, W/2), raster order of the 2x2 block
//!   x = concat(packed, noise)                      (4 + nc, H/2, W/2), noise = std in input units
//!   x = relu(conv_i(x)), i = 0..depth              width channels (2·width for the last if gated)
//!   gated: x = x[:width] * x[width:]
//!   up = pixel_shuffle(head_1x1(x), 2)             (3, H, W)
//!   y = fr2_1x1(relu(fr1(concat(masked, up))))     masked = mosaic spread to its colour plane (3, H, W)
//!   out = y (+ up if fullres_residual)
//! ```
//! Whole frames run in square tiles with a halo of `2·depth + 2` pixels (the
//! receptive radius), so memory stays bounded (no full-resolution 64-channel
//! activation for a 24 MP frame) and the result equals a single pass over the
//! reflect-padded frame. Outside the frame the mosaic is mirrored without
//! repeating the edge, which keeps the CFA parity; a mosaic whose phase
//! differs from the model's is handled by starting the tiles one row/column
//! earlier so that every tile origin has the canonical phase.

use std::path::Path;

use super::bayer_tiles::{masked_mosaic, run_tiled, BayerFrame, TileSpec};
pub use super::bayer_tiles::{parse_cfa, phase_offset, Cfa2x2, NoiseInput};
use super::combine::concat;
use super::shuffle::{pixel_shuffle, pixel_unshuffle};
use super::{Activation, Conv2d, Padding, Tensor, Weights};
use crate::error::Result;

/// Hyper-parameters, read from the weights file's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmdnConfig {
    /// Number of 3x3 convs at half resolution.
    pub depth: usize,
    /// Channels of the half-resolution body.
    pub width: usize,
    /// Last body conv has 2·width outputs multiplied pairwise (demosaicnet).
    pub gated: bool,
    /// Channels of the full-resolution refinement conv.
    pub fullres_width: usize,
    /// Output = refinement + upsampled body output.
    pub fullres_residual: bool,
    /// Canonical CFA phase the model was trained on.
    pub phase: Cfa2x2,
    /// Number of noise-map input channels (each = the noise std).
    pub noise_channels: usize,
}

/// A loaded `dmdn` model.
#[derive(Clone, Debug)]
pub struct Dmdn {
    cfg: DmdnConfig,
    body: Vec<Conv2d>,
    head: Conv2d,
    fr1: Conv2d,
    fr2: Conv2d,
    metadata: std::collections::HashMap<String, String>,
}

impl Dmdn {
    /// Loads and validates a weights file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_weights(Weights::load(path)?)
    }

    /// Builds the model from parsed weights, checking metadata and shapes.
    pub fn from_weights(mut w: Weights) -> Result<Self> {
        if w.meta("arch")? != "dmdn" {
            return Err(w.err(format!("arch '{}' is not 'dmdn'", w.meta("arch")?)));
        }
        if w.meta("version")? != "1" {
            return Err(w.err(format!(
                "dmdn version '{}' not supported",
                w.meta("version")?
            )));
        }
        let phase_s = w.meta("phase")?.to_string();
        let cfg = DmdnConfig {
            depth: w.meta_usize("depth", 1, 64)?,
            width: w.meta_usize("width", 1, 512)?,
            gated: w.meta_bool("gated")?,
            fullres_width: w.meta_usize("fullres_width", 1, 512)?,
            fullres_residual: w.meta_bool("fullres_residual")?,
            phase: parse_cfa(&phase_s)
                .ok_or_else(|| w.err(format!("phase '{phase_s}' is not a Bayer pattern")))?,
            noise_channels: w.meta_usize("noise_channels", 0, 16)?,
        };
        let metadata = w.metadata().clone();
        let mut body = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let cin = if i == 0 {
                4 + cfg.noise_channels
            } else {
                cfg.width
            };
            let cout = if cfg.gated && i + 1 == cfg.depth {
                2 * cfg.width
            } else {
                cfg.width
            };
            body.push(conv(&mut w, &format!("body.{i}"), [cout, cin, 3, 3])?);
        }
        let head = conv(&mut w, "head", [12, cfg.width, 1, 1])?;
        let fr1 = conv(&mut w, "fr1", [cfg.fullres_width, 6, 3, 3])?;
        let fr2 = conv(&mut w, "fr2", [3, cfg.fullres_width, 1, 1])?;
        w.finish()?;
        Ok(Dmdn {
            cfg,
            body,
            head,
            fr1,
            fr2,
            metadata,
        })
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &DmdnConfig {
        &self.cfg
    }

    /// The weights file's metadata (licence, training regime, ...).
    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.metadata
    }

    /// Receptive radius in full-resolution pixels (even).
    pub fn halo(&self) -> usize {
        2 * self.cfg.depth + 2
    }

    /// Output tile edge that keeps the halo overhead near 25 %: 16 halos,
    /// clamped to 256..=512 (memory per tile stays below ~100 MB).
    pub fn default_tile(&self) -> usize {
        (16 * self.halo()).clamp(256, 512)
    }

    /// Floating-point operations per full-resolution output pixel (conv
    /// multiply-adds x2, excluding halo overlap).
    pub fn flops_per_pixel(&self) -> f64 {
        let half: usize = self
            .body
            .iter()
            .chain(std::iter::once(&self.head))
            .map(Conv2d::flops_per_output_pixel)
            .sum();
        half as f64 / 4.0
            + (self.fr1.flops_per_output_pixel() + self.fr2.flops_per_output_pixel()) as f64
    }

    /// Runs the network on one canonical-phase tile.
    ///
    /// `mosaic`: `[1, 1, H, W]` (H, W even, origin in the model's phase);
    /// `noise`: `[1, noise_channels, H/2, W/2]`. Returns `[1, 3, H, W]`.
    pub fn forward(&self, mosaic: &Tensor, noise: &Tensor) -> Result<Tensor> {
        let packed = pixel_unshuffle(mosaic, 2)?;
        let mut x = if self.cfg.noise_channels > 0 {
            concat(&[&packed, noise])?
        } else {
            packed
        };
        for conv in &self.body {
            x = conv.forward(&x, Activation::Relu)?;
        }
        if self.cfg.gated {
            let wd = self.cfg.width;
            let p = x.plane_len();
            let mut g = Tensor::zeros([1, wd, x.h(), x.w()])?;
            let (f, m) = x.data()[..2 * wd * p].split_at(wd * p);
            g.data_mut()
                .iter_mut()
                .zip(f.iter().zip(m))
                .for_each(|(o, (a, b))| *o = a * b);
            x = g;
        }
        let up = pixel_shuffle(&self.head.forward(&x, Activation::None)?, 2)?;
        drop(x);
        let masked = masked_mosaic(mosaic, self.cfg.phase)?;
        let f = self
            .fr1
            .forward(&concat(&[&masked, &up])?, Activation::Relu)?;
        let mut y = self.fr2.forward(&f, Activation::None)?;
        if self.cfg.fullres_residual {
            super::combine::add_assign(&mut y, &up)?;
        }
        Ok(y)
    }

    /// Demosaics and denoises a whole frame.
    ///
    /// `mosaic`: row-major `h x w` Bayer samples whose top-left 2x2 cell is
    /// `cfa`; `noise`: σ in the mosaic's units. `tile`: output tile edge in
    /// pixels (rounded up to even, at least 16). Returns `[1, 3, h, w]` RGB.
    pub fn run(
        &self,
        mosaic: &[f32],
        h: usize,
        w: usize,
        cfa: Cfa2x2,
        noise: NoiseInput<'_>,
        tile: usize,
    ) -> Result<Tensor> {
        let spec = TileSpec {
            phase: self.cfg.phase,
            noise_channels: self.cfg.noise_channels,
            halo: self.halo(),
            align: 2,
        };
        let frame = BayerFrame {
            mosaic,
            h,
            w,
            cfa,
            noise,
            base: None,
        };
        run_tiled(frame, tile, spec, |m, n, _| self.forward(m, n))
    }
}

fn conv(w: &mut Weights, name: &str, shape: [usize; 4]) -> Result<Conv2d> {
    let weight = w.take(&format!("{name}.weight"), &shape)?;
    let bias = w.take(&format!("{name}.bias"), &shape[..1])?;
    let pad = Padding::Zero(shape[2] / 2);
    Conv2d::new(weight, bias, shape, 1, pad)
}
