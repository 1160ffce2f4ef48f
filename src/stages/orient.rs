//! `orient`: applies the raw's default crop and EXIF orientation to an
//! image (any colour space).

use serde::Deserialize;

use super::{one_input, parse_params, take_image, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{Image, Value, ValueDesc, ValueKind};
use crate::raw::Orientation;

/// YAML params of `orient`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Apply the file's default crop.
    pub crop: bool,
    /// Apply the file's orientation.
    pub rotate: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            crop: true,
            rotate: true,
        }
    }
}

/// The compiled `orient` op.
#[derive(Debug)]
pub struct Orient {
    p: Params,
}

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    Ok(Box::new(Orient {
        p: parse_params(params)?,
    }))
}

/// Output (width, height) of an orientation applied to w x h.
fn oriented_size(o: Orientation, w: usize, h: usize) -> (usize, usize) {
    match o {
        Orientation::Transpose
        | Orientation::Rotate90
        | Orientation::Transverse
        | Orientation::Rotate270 => (h, w),
        _ => (w, h),
    }
}

/// Source pixel (x, y) for output pixel (ox, oy) under orientation `o` of a
/// w x h source.
#[inline(always)]
fn source_of(o: Orientation, ox: usize, oy: usize, w: usize, h: usize) -> (usize, usize) {
    match o {
        Orientation::Normal => (ox, oy),
        Orientation::FlipH => (w - 1 - ox, oy),
        Orientation::Rotate180 => (w - 1 - ox, h - 1 - oy),
        Orientation::FlipV => (ox, h - 1 - oy),
        Orientation::Transpose => (oy, ox),
        Orientation::Rotate90 => (oy, h - 1 - ox),
        Orientation::Transverse => (w - 1 - oy, h - 1 - ox),
        Orientation::Rotate270 => (w - 1 - oy, ox),
    }
}

impl Stage for Orient {
    fn op(&self) -> &'static str {
        "orient"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        // The crop and orientation come from the frame: the executor
        // re-infers with the actual metadata; shapes here are upper bounds.
        one_input(inputs, ValueKind::Image)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let img = take_image(
            inputs
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("no input"))?,
        )?;
        let crop = if self.p.crop { img.meta.crop } else { None }
            .filter(|c| c.x + c.width <= img.width && c.y + c.height <= img.height);
        let o = if self.p.rotate {
            img.meta.orientation
        } else {
            Orientation::Normal
        };
        if crop.is_none() && o == Orientation::Normal {
            return Ok(Value::Image(img.into()));
        }
        let (cx, cy, cw, ch) = crop
            .map(|c| (c.x, c.y, c.width, c.height))
            .unwrap_or((0, 0, img.width, img.height));
        let (ow, oh) = oriented_size(o, cw, ch);
        let mut data = vec![0f32; 3 * ow * oh];
        let n_in = img.plane_len();
        for c in 0..3 {
            let src = &img.data[c * n_in..(c + 1) * n_in];
            let dst = &mut data[c * ow * oh..(c + 1) * ow * oh];
            for oy in 0..oh {
                for ox in 0..ow {
                    let (sx, sy) = source_of(o, ox, oy, cw, ch);
                    dst[oy * ow + ox] = src[(sy + cy) * img.width + sx + cx];
                }
            }
        }
        Ok(Value::Image(
            Image {
                width: ow,
                height: oh,
                data,
                ..img
            }
            .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_are_permutations() {
        let (w, h) = (5, 3);
        for o in [
            Orientation::Normal,
            Orientation::FlipH,
            Orientation::Rotate180,
            Orientation::FlipV,
            Orientation::Transpose,
            Orientation::Rotate90,
            Orientation::Transverse,
            Orientation::Rotate270,
        ] {
            let (ow, oh) = oriented_size(o, w, h);
            let mut seen = vec![false; w * h];
            for oy in 0..oh {
                for ox in 0..ow {
                    let (x, y) = source_of(o, ox, oy, w, h);
                    assert!(x < w && y < h, "{o:?}");
                    assert!(!seen[y * w + x]);
                    seen[y * w + x] = true;
                }
            }
        }
        // Rotate90 (EXIF 6): the top-left output pixel is the bottom-left source.
        assert_eq!(source_of(Orientation::Rotate90, 0, 0, w, h), (0, h - 1));
    }
}
