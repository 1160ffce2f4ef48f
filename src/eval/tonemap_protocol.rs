//! Test and training inputs for tone mapping: linear scene-referred HDR
//! frames made from sRGB images.
//!
//! An 8- or 16-bit sRGB image is decoded to linear sRGB (inverse
//! IEC 61966-2-1 transfer; values in [0, 1], so the source's saturated
//! pixels are clipped highlights), optionally box-downscaled in linear
//! light by an integer factor so its longer side fits `max_side`, then
//! multiplied by `2^ev`: an exposure offset of `ev` stops whose highlights
//! stay clipped at `2^ev`. Planar CHW f32 throughout (see [`crate::frame`]).

use std::path::Path;

use crate::color::srgb_decode;
use crate::error::{Error, Result};
use crate::synth::unprocess::SrgbInput;

/// A planar linear RGB frame: `data.len() == 3 * width * height`.
#[derive(Debug, Clone)]
pub struct LinearFrame {
    pub width: usize,
    pub height: usize,
    /// Planar CHW, linear sRGB, 1.0 = the source's white.
    pub data: Vec<f32>,
}

impl LinearFrame {
    /// A copy exposed by `ev` stops (values scaled by `2^ev`).
    pub fn exposed(&self, ev: f32) -> Vec<f32> {
        let g = ev.exp2();
        self.data.iter().map(|v| v * g).collect()
    }
}

/// Loads `path` as linear sRGB; downsizes by the smallest integer factor
/// that brings the longer side to at most `max_side` (0 = never).
pub fn load_linear(path: &Path, max_side: usize) -> Result<LinearFrame> {
    let img = SrgbInput::load(path)?;
    let (w, h) = (img.width, img.height);
    let lin: Vec<f32> = img.data.iter().map(|&v| srgb_decode(v)).collect();
    let f = if max_side == 0 {
        1
    } else {
        w.max(h).div_ceil(max_side).max(1)
    };
    if f == 1 {
        return Ok(LinearFrame {
            width: w,
            height: h,
            data: lin,
        });
    }
    let (w2, h2) = (w / f, h / f);
    if w2 == 0 || h2 == 0 {
        return Err(Error::invalid(format!(
            "{}: {w}x{h} is too small to downsize by {f}",
            path.display()
        )));
    }
    let mut out = vec![0f32; 3 * w2 * h2];
    let norm = 1.0 / (f * f) as f32;
    for c in 0..3 {
        let src = &lin[c * w * h..(c + 1) * w * h];
        let dst = &mut out[c * w2 * h2..(c + 1) * w2 * h2];
        for y in 0..h2 {
            for x in 0..w2 {
                let mut acc = 0f32;
                for dy in 0..f {
                    let row = &src[(y * f + dy) * w + x * f..][..f];
                    acc += row.iter().sum::<f32>();
                }
                dst[y * w2 + x] = acc * norm;
            }
        }
    }
    Ok(LinearFrame {
        width: w2,
        height: h2,
        data: out,
    })
}

/// Planar CHW -> interleaved HWC (the `.npy` training layout).
pub fn to_hwc(planar: &[f32], w: usize, h: usize) -> Vec<f32> {
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    for i in 0..n {
        for c in 0..3 {
            out[3 * i + c] = planar[c * n + i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_scales_and_hwc_interleaves() {
        let f = LinearFrame {
            width: 2,
            height: 1,
            data: vec![0.5, 1.0, 0.25, 0.1, 0.0, 0.2],
        };
        assert_eq!(f.exposed(1.0), vec![1.0, 2.0, 0.5, 0.2, 0.0, 0.4]);
        assert_eq!(to_hwc(&f.data, 2, 1), vec![0.5, 0.25, 0.0, 1.0, 0.1, 0.2]);
    }
}
