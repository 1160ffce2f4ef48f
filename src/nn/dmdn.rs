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

use rayon::prelude::*;

use super::combine::concat;
use super::shuffle::{pixel_shuffle, pixel_unshuffle};
use super::{Activation, Conv2d, Padding, Tensor, Weights};
use crate::error::{Error, Result};

/// Colour index (0 = R, 1 = G, 2 = B) of the 2x2 CFA cell in raster order
/// `[(0,0), (0,1), (1,0), (1,1)]`, e.g. RGGB = `[0, 1, 1, 2]`.
pub type Cfa2x2 = [u8; 4];

/// Parses "rggb" / "grbg" / "gbrg" / "bggr" (any case).
pub fn parse_cfa(s: &str) -> Option<Cfa2x2> {
    let mut out = [0u8; 4];
    let b = s.as_bytes();
    if b.len() != 4 {
        return None;
    }
    for (o, c) in out.iter_mut().zip(b) {
        *o = match c.to_ascii_lowercase() {
            b'r' => 0,
            b'g' => 1,
            b'b' => 2,
            _ => return None,
        };
    }
    let mut counts = [0; 3];
    out.iter().for_each(|&c| counts[c as usize] += 1);
    (counts == [1, 2, 1]).then_some(out)
}

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

/// Noise level fed to the network, as a standard deviation in the units of
/// the input mosaic (e.g. σ/255 for the 8-bit sRGB protocol).
#[derive(Clone, Copy, Debug)]
pub enum NoiseInput<'a> {
    /// One σ for the whole frame.
    Uniform(f32),
    /// Per-pixel σ, row-major `H x W` like the mosaic.
    Map(&'a [f32]),
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
        let [_, _, h, w] = mosaic.shape();
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
        let mut masked = Tensor::zeros([1, 3, h, w])?;
        for y in 0..h {
            for xx in 0..w {
                let c = self.cfg.phase[(y % 2) * 2 + xx % 2] as usize;
                masked.plane_mut(0, c)[y * w + xx] = mosaic.data()[y * w + xx];
            }
        }
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
        if h < 2 || w < 2 || mosaic.len() != h * w {
            return Err(Error::invalid(format!(
                "dmdn: mosaic of {} values is not {h}x{w} (at least 2x2)",
                mosaic.len()
            )));
        }
        if let NoiseInput::Map(m) = noise {
            if m.len() != h * w {
                return Err(Error::invalid("dmdn: noise map size differs from mosaic"));
            }
        }
        let (dy, dx) = phase_offset(cfa, self.cfg.phase)
            .ok_or_else(|| Error::invalid(format!("dmdn: CFA {cfa:?} is not a Bayer pattern")))?;
        let tile = (tile.max(16) + 1) & !1;
        let halo = self.halo();
        let tiles: Vec<(usize, usize)> = (0..h)
            .step_by(tile)
            .flat_map(|y| (0..w).step_by(tile).map(move |x| (y, x)))
            .collect();
        let results: Vec<Result<Tensor>> = tiles
            .par_iter()
            .map(|&(ty, tx)| {
                let th = tile.min(h - ty);
                let tw = tile.min(w - tx);
                // Input window in image coordinates, origin with parity (dy, dx).
                let y0 = ty as isize - halo as isize - ((ty + dy) % 2) as isize;
                let x0 = tx as isize - halo as isize - ((tx + dx) % 2) as isize;
                let ih = even_ceil((ty + th + halo) as isize - y0);
                let iw = even_ceil((tx + tw + halo) as isize - x0);
                let mut m = Tensor::zeros([1, 1, ih, iw])?;
                let mut n2 = vec![0.0f32; ih * iw];
                for yy in 0..ih {
                    let sy = reflect(y0 + yy as isize, h);
                    for xx in 0..iw {
                        let sx = reflect(x0 + xx as isize, w);
                        m.data_mut()[yy * iw + xx] = mosaic[sy * w + sx];
                        if let NoiseInput::Map(nm) = noise {
                            n2[yy * iw + xx] = nm[sy * w + sx];
                        }
                    }
                }
                let nc = self.cfg.noise_channels;
                let (hh, hw) = (ih / 2, iw / 2);
                let mut nz = Tensor::zeros([1, nc, hh, hw])?;
                for c in 0..nc {
                    let plane = nz.plane_mut(0, c);
                    match noise {
                        NoiseInput::Uniform(s) => plane.fill(s),
                        NoiseInput::Map(_) => {
                            for yy in 0..hh {
                                for xx in 0..hw {
                                    let i = 2 * yy * iw + 2 * xx;
                                    let s2 = n2[i] * n2[i]
                                        + n2[i + 1] * n2[i + 1]
                                        + n2[i + iw] * n2[i + iw]
                                        + n2[i + iw + 1] * n2[i + iw + 1];
                                    plane[yy * hw + xx] = (s2 / 4.0).sqrt();
                                }
                            }
                        }
                    }
                }
                let out = self.forward(&m, &nz)?;
                out.crop(
                    (ty as isize - y0) as usize,
                    (tx as isize - x0) as usize,
                    th,
                    tw,
                )
            })
            .collect();
        let mut out = Tensor::zeros([1, 3, h, w])?;
        for (&(ty, tx), r) in tiles.iter().zip(results) {
            let t = r?;
            let (th, tw) = (t.h(), t.w());
            for c in 0..3 {
                let src = t.plane(0, c);
                let dst = out.plane_mut(0, c);
                for y in 0..th {
                    dst[(ty + y) * w + tx..(ty + y) * w + tx + tw]
                        .copy_from_slice(&src[y * tw..(y + 1) * tw]);
                }
            }
        }
        Ok(out)
    }
}

fn conv(w: &mut Weights, name: &str, shape: [usize; 4]) -> Result<Conv2d> {
    let weight = w.take(&format!("{name}.weight"), &shape)?;
    let bias = w.take(&format!("{name}.bias"), &shape[..1])?;
    let pad = Padding::Zero(shape[2] / 2);
    Conv2d::new(weight, bias, shape, 1, pad)
}

fn even_ceil(v: isize) -> usize {
    (v.max(2) as usize + 1) & !1
}

/// Mirror index without repeating the edge; keeps parity (period 2(n-1)).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let r = i.rem_euclid(period);
    (if r >= n as isize { period - r } else { r }) as usize
}

/// `(dy, dx)` such that image pixel `(y+dy, x+dx)` has colour `model[y, x]`.
pub fn phase_offset(image: Cfa2x2, model: Cfa2x2) -> Option<(usize, usize)> {
    for dy in 0..2 {
        for dx in 0..2 {
            let ok = (0..4).all(|k| {
                let (py, px) = (k / 2, k % 2);
                image[((py + dy) % 2) * 2 + (px + dx) % 2] == model[k]
            });
            if ok {
                return Some((dy, dx));
            }
        }
    }
    None
}
