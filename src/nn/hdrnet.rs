//! `hdrnet`: the low-resolution coefficient network of HDRnet (Gharbi,
//! Chen, Barron, Hasinoff & Durand 2017, "Deep Bilateral Learning for
//! Real-Time Image Enhancement", SIGGRAPH), plus the learned guide's
//! weights. Trained by `training/train_hdrnet.py`, which documents the same
//! graph in PyTorch; the two must stay identical.
//!
//! Graph (S = `net_size`, G = `grid`, L = `luma_bins`, cm = channel
//! multiplier, F = 8·cm·L):
//! ```text
//! thumb (1, 3, S, S)   log-encoded thumbnail (see stages/hdrnet/coeffs.rs)
//!   splat_i: conv3x3 stride 2 pad 1 + ReLU, i = 0..log2(S/G), cm·L·2^i channels
//!   local:   conv3x3 + ReLU, conv3x3 (no bias)                 (1, F, G, G)
//!   global:  2 x (conv3x3 stride 2 pad 1 + ReLU)               (1, F, G/4, G/4)
//!            flatten (C, H, W order), fc 32·cm·L + ReLU, fc 16·cm·L + ReLU, fc F
//!   fused = relu(local + global)                               broadcast over G x G
//!   pred:    conv1x1 -> (1, 12·L, G, G), channel = c·L + z
//! ```
//! The guide (per-pixel 3x3 colour matrix + bias, per-channel piecewise-
//! linear curves, 1x1 mix) is evaluated at full resolution by
//! `stages/hdrnet/guide.rs`; its weights are loaded here with the rest.

use std::path::Path;

use super::{Activation, Conv2d, Padding, Tensor, Weights};
use crate::error::{Error, Result};

/// Hyper-parameters, read from the weights file's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HdrnetConfig {
    /// Side of the square thumbnail the network sees, pixels (paper: 256).
    pub net_size: usize,
    /// Spatial cells of the grid per side (paper: 16).
    pub grid: usize,
    /// Luma bins of the grid (paper: 8).
    pub luma_bins: usize,
    /// Channel multiplier (paper: 1).
    pub channel_multiplier: usize,
    /// Knots of each guide curve (paper: 16).
    pub guide_knots: usize,
}

impl HdrnetConfig {
    /// Strided splat convolutions: log2(net_size / grid).
    pub fn splat_layers(&self) -> usize {
        (self.net_size / self.grid).trailing_zeros() as usize
    }
    /// Channels of the local / global / fusion features, 8·cm·L.
    pub fn features(&self) -> usize {
        8 * self.channel_multiplier * self.luma_bins
    }
}

/// Guide weights: `y = ccm·x + ccm_bias`, `curve_c = Σ_k slopes[c][k] ·
/// relu(y_c - shifts[c][k])`, `g = clamp(Σ_c mix_w[c]·curve_c + mix_b, 0, 1)`.
#[derive(Clone, Debug)]
pub struct GuideWeights {
    /// 3x3 colour matrix, row-major (output channel, input channel).
    pub ccm: [[f32; 3]; 3],
    /// Per output channel.
    pub ccm_bias: [f32; 3],
    /// `[3][knots]` curve knot positions (input units), row-major.
    pub shifts: Vec<f32>,
    /// `[3][knots]` slope increments, row-major.
    pub slopes: Vec<f32>,
    /// Mix weights per channel.
    pub mix_w: [f32; 3],
    /// Mix bias.
    pub mix_b: f32,
    /// Knots per curve.
    pub knots: usize,
}

/// A fully-connected layer: `y = W x + b`, W row-major `[out, in]`.
#[derive(Clone, Debug)]
struct Linear {
    cin: usize,
    cout: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Linear {
    fn forward(&self, x: &[f32], act: Activation) -> Vec<f32> {
        let mut y: Vec<f32> = (0..self.cout)
            .map(|o| {
                let w = &self.weight[o * self.cin..(o + 1) * self.cin];
                self.bias[o] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
            })
            .collect();
        act.apply(&mut y);
        y
    }
}

/// A loaded HDRnet model: coefficient network + guide weights.
#[derive(Clone, Debug)]
pub struct Hdrnet {
    cfg: HdrnetConfig,
    splat: Vec<Conv2d>,
    local1: Conv2d,
    local2: Conv2d,
    global_conv: Vec<Conv2d>,
    fc: Vec<Linear>,
    pred: Conv2d,
    guide: GuideWeights,
    metadata: std::collections::HashMap<String, String>,
}

fn conv(
    w: &mut Weights,
    name: &str,
    shape: [usize; 4],
    stride: usize,
    bias: bool,
) -> Result<Conv2d> {
    let weight = w.take(&format!("{name}.weight"), &shape)?;
    let b = if bias {
        w.take(&format!("{name}.bias"), &[shape[0]])?
    } else {
        vec![0.0; shape[0]]
    };
    let pad = Padding::Zero(shape[2] / 2);
    Conv2d::new(weight, b, shape, stride, pad)
}

fn linear(w: &mut Weights, name: &str, cin: usize, cout: usize) -> Result<Linear> {
    Ok(Linear {
        cin,
        cout,
        weight: w.take(&format!("{name}.weight"), &[cout, cin])?,
        bias: w.take(&format!("{name}.bias"), &[cout])?,
    })
}

impl Hdrnet {
    /// Loads and validates a weights file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_weights(Weights::load(path)?)
    }

    /// Builds the model from parsed weights, checking metadata and shapes.
    pub fn from_weights(mut w: Weights) -> Result<Self> {
        if w.meta("arch")? != "hdrnet" {
            return Err(w.err(format!("arch '{}' is not 'hdrnet'", w.meta("arch")?)));
        }
        if w.meta("version")? != "1" {
            return Err(w.err(format!(
                "hdrnet version '{}' not supported",
                w.meta("version")?
            )));
        }
        let cfg = HdrnetConfig {
            net_size: w.meta_usize("net_size", 16, 2048)?,
            grid: w.meta_usize("grid", 4, 256)?,
            luma_bins: w.meta_usize("luma_bins", 1, 64)?,
            channel_multiplier: w.meta_usize("channel_multiplier", 1, 16)?,
            guide_knots: w.meta_usize("guide_knots", 1, 256)?,
        };
        let ratio = cfg.net_size / cfg.grid;
        if !cfg.grid.is_multiple_of(4)
            || cfg.grid * ratio != cfg.net_size
            || !ratio.is_power_of_two()
        {
            return Err(w.err(format!(
                "net_size {} must be grid {} times a power of two, grid a multiple of 4",
                cfg.net_size, cfg.grid
            )));
        }
        let (cm, lb, f) = (cfg.channel_multiplier, cfg.luma_bins, cfg.features());
        let mut splat = Vec::new();
        let mut cin = 3;
        for i in 0..cfg.splat_layers() {
            let cout = (cm * lb) << i;
            splat.push(conv(
                &mut w,
                &format!("splat.{i}"),
                [cout, cin, 3, 3],
                2,
                true,
            )?);
            cin = cout;
        }
        let global_conv = vec![
            conv(&mut w, "global_conv.0", [f, cin, 3, 3], 2, true)?,
            conv(&mut w, "global_conv.1", [f, f, 3, 3], 2, true)?,
        ];
        let g4 = cfg.grid / 4;
        let fc = vec![
            linear(&mut w, "fc.0", f * g4 * g4, 32 * cm * lb)?,
            linear(&mut w, "fc.1", 32 * cm * lb, 16 * cm * lb)?,
            linear(&mut w, "fc.2", 16 * cm * lb, f)?,
        ];
        let local1 = conv(&mut w, "local1", [f, cin, 3, 3], 1, true)?;
        let local2 = conv(&mut w, "local2", [f, f, 3, 3], 1, false)?;
        let pred = conv(&mut w, "pred", [12 * lb, f, 1, 1], 1, true)?;
        let k = cfg.guide_knots;
        let ccm = w.take("guide.ccm", &[3, 3])?;
        let ccm_bias = w.take("guide.ccm_bias", &[3])?;
        let mix_w = w.take("guide.mix_w", &[3])?;
        let mix_b = w.take("guide.mix_b", &[1])?;
        let guide = GuideWeights {
            ccm: [
                [ccm[0], ccm[1], ccm[2]],
                [ccm[3], ccm[4], ccm[5]],
                [ccm[6], ccm[7], ccm[8]],
            ],
            ccm_bias: [ccm_bias[0], ccm_bias[1], ccm_bias[2]],
            shifts: w.take("guide.shifts", &[3, k])?,
            slopes: w.take("guide.slopes", &[3, k])?,
            mix_w: [mix_w[0], mix_w[1], mix_w[2]],
            mix_b: mix_b[0],
            knots: k,
        };
        w.finish()?;
        Ok(Hdrnet {
            cfg,
            splat,
            local1,
            local2,
            global_conv,
            fc,
            pred,
            guide,
            metadata: w.metadata().clone(),
        })
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &HdrnetConfig {
        &self.cfg
    }

    /// Guide weights.
    pub fn guide(&self) -> &GuideWeights {
        &self.guide
    }

    /// The weights file's metadata.
    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.metadata
    }

    /// Runs the network on an encoded thumbnail `[1, 3, S, S]`; returns
    /// the raw prediction `[1, 12·L, G, G]` (channel = c·L + z).
    pub fn forward(&self, thumb: &Tensor) -> Result<Tensor> {
        let s = self.cfg.net_size;
        if thumb.shape() != [1, 3, s, s] {
            return Err(Error::invalid(format!(
                "hdrnet: thumbnail shape {:?}, expected [1, 3, {s}, {s}]",
                thumb.shape()
            )));
        }
        let mut x = thumb.clone();
        for c in &self.splat {
            x = c.forward(&x, Activation::Relu)?;
        }
        let local = self.local2.forward(
            &self.local1.forward(&x, Activation::Relu)?,
            Activation::None,
        )?;
        let mut g = x;
        for c in &self.global_conv {
            g = c.forward(&g, Activation::Relu)?;
        }
        let mut v = g.into_vec();
        v = self.fc[0].forward(&v, Activation::Relu);
        v = self.fc[1].forward(&v, Activation::Relu);
        v = self.fc[2].forward(&v, Activation::None);
        let mut fused = local;
        let plane = fused.plane_len();
        for (c, gv) in v.iter().enumerate() {
            for e in fused.plane_mut(0, c) {
                *e = (*e + gv).max(0.0);
            }
        }
        debug_assert_eq!(plane, self.cfg.grid * self.cfg.grid);
        self.pred.forward(&fused, Activation::None)
    }
}
