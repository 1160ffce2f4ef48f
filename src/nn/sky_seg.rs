//! `sky_seg`: the small sky segmenter of `training/train_sky.py` (same
//! graph, PyTorch layer names): three stride-2 3x3 convs (encoder), two
//! 3x3 convs at 1/8 resolution, two sub-pixel-convolution upsamplers (Shi
//! et al. 2016) with additive skips (U-Net style, Ronneberger et al. 2015)
//! and a 3x3 head giving one sky logit at half the input resolution.
//!
//! Input `[1, 4, H, W]` (H, W multiples of 8): sRGB-encoded RGB of the
//! exposure-normalised linear frame plus a row-position plane (see
//! [`prepare_input`]); output `[1, 1, H/2, W/2]` logits. Widths (a, b, c)
//! come from the weights' metadata (`widths = "16,32,48"`).

use std::path::Path;

use super::{combine, shuffle, Activation, Conv2d, Padding, Tensor, Weights};
use crate::color::{luminance, srgb_encode};
use crate::error::{Error, Result};

/// A loaded sky segmenter.
#[derive(Clone, Debug)]
pub struct SkySeg {
    widths: [usize; 3],
    e1: Conv2d,
    e2: Conv2d,
    e3: Conv2d,
    b1: Conv2d,
    b2: Conv2d,
    u2: Conv2d,
    u1: Conv2d,
    head: Conv2d,
    metadata: std::collections::HashMap<String, String>,
}

fn conv(w: &mut Weights, name: &str, shape: [usize; 4], stride: usize) -> Result<Conv2d> {
    let weight = w.take(&format!("{name}.weight"), &shape)?;
    let bias = w.take(&format!("{name}.bias"), &shape[..1])?;
    Conv2d::new(weight, bias, shape, stride, Padding::Zero(1))
}

impl SkySeg {
    /// Loads and validates a weights file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_weights(Weights::load(path)?)
    }

    /// Builds the model from parsed weights, checking metadata and shapes.
    pub fn from_weights(mut w: Weights) -> Result<Self> {
        if w.meta("arch")? != "sky_seg" {
            return Err(w.err(format!("arch '{}' is not 'sky_seg'", w.meta("arch")?)));
        }
        if w.meta("version")? != "1" {
            return Err(w.err(format!(
                "sky_seg version '{}' not supported",
                w.meta("version")?
            )));
        }
        let ws: Vec<usize> = w
            .meta("widths")?
            .split(',')
            .map(|s| s.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| w.err("widths must be three integers"))?;
        let [a, b, c] = match ws.as_slice() {
            [a, b, c] if [*a, *b, *c].iter().all(|v| (1..=512).contains(v)) => [*a, *b, *c],
            _ => return Err(w.err(format!("widths {ws:?} must be three values in 1..=512"))),
        };
        let metadata = w.metadata().clone();
        let m = SkySeg {
            widths: [a, b, c],
            e1: conv(&mut w, "e1", [a, 4, 3, 3], 2)?,
            e2: conv(&mut w, "e2", [b, a, 3, 3], 2)?,
            e3: conv(&mut w, "e3", [c, b, 3, 3], 2)?,
            b1: conv(&mut w, "b1", [c, c, 3, 3], 1)?,
            b2: conv(&mut w, "b2", [c, c, 3, 3], 1)?,
            u2: conv(&mut w, "u2", [4 * b, c, 3, 3], 1)?,
            u1: conv(&mut w, "u1", [4 * a, b, 3, 3], 1)?,
            head: conv(&mut w, "head", [1, a, 3, 3], 1)?,
            metadata,
        };
        w.finish()?;
        Ok(m)
    }

    /// Channel widths (a, b, c).
    pub fn widths(&self) -> [usize; 3] {
        self.widths
    }

    /// The file's metadata.
    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.metadata
    }

    /// Logits `[1, 1, H/2, W/2]` for an input `[1, 4, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = x.shape();
        if n != 1 || c != 4 || h % 8 != 0 || w % 8 != 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!(
                "sky_seg: input {:?} must be [1, 4, H, W] with H, W multiples of 8",
                x.shape()
            )));
        }
        let e1 = self.e1.forward(x, Activation::Relu)?;
        let e2 = self.e2.forward(&e1, Activation::Relu)?;
        let e3 = self.e3.forward(&e2, Activation::Relu)?;
        let t = self.b1.forward(&e3, Activation::Relu)?;
        let t = self.b2.forward(&t, Activation::Relu)?;
        let mut t = shuffle::pixel_shuffle(&self.u2.forward(&t, Activation::None)?, 2)?;
        combine::add_assign(&mut t, &e2)?;
        Activation::Relu.apply(t.data_mut());
        let mut t = shuffle::pixel_shuffle(&self.u1.forward(&t, Activation::None)?, 2)?;
        combine::add_assign(&mut t, &e1)?;
        Activation::Relu.apply(t.data_mut());
        self.head.forward(&t, Activation::None)
    }
}

/// Network input from planar linear RGB `w x h` (already downscaled to the
/// network size): scaled so the log-average luminance is 0.18 (gain within
/// 2^±8), clipped, sRGB-encoded; fourth plane `y / (h - 1)`. Same maths as
/// `net_input` in training/train_sky.py.
pub fn prepare_input(planar: &[f32], w: usize, h: usize) -> Result<Tensor> {
    let n = w * h;
    if planar.len() != 3 * n || n == 0 {
        return Err(Error::invalid(format!(
            "sky_seg: {} values for a {w}x{h} RGB image",
            planar.len()
        )));
    }
    let (r, rest) = planar.split_at(n);
    let (g, b) = rest.split_at(n);
    let fin = |v: f32| if v.is_finite() { v } else { 0.0 };
    let mut s = 0f64;
    for i in 0..n {
        s += (luminance(fin(r[i]), fin(g[i]), fin(b[i])).max(1e-4) as f64).ln();
    }
    let la = (s / n as f64).exp() as f32;
    let k = (0.18 / la).clamp(2f32.powi(-8), 2f32.powi(8));
    let mut data = vec![0f32; 4 * n];
    for (c, src) in [r, g, b].iter().enumerate() {
        for (d, v) in data[c * n..(c + 1) * n].iter_mut().zip(src.iter()) {
            *d = srgb_encode(fin(*v) * k);
        }
    }
    let den = (h.max(2) - 1) as f32;
    for y in 0..h {
        data[3 * n + y * w..3 * n + (y + 1) * w].fill(y as f32 / den);
    }
    Tensor::from_vec([1, 4, h, w], data)
}
