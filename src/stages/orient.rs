//! `orient`: applies the raw's default crop, pixel aspect ratio and EXIF
//! orientation to an image (any colour space).
//!
//! Non-square pixels (`RawMeta::pixel_aspect` != 1, e.g. the Kodak DC120's
//! 1.5346) are corrected by resampling the sensor's x axis with a Lanczos-3
//! filter (Duchon 1979; support widened by the scale when shrinking),
//! after the crop and before the rotation.

use serde::Deserialize;

use super::row_kernel::Header;
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
    /// Correct non-square pixels (the file's pixel aspect ratio).
    pub aspect: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            crop: true,
            rotate: true,
            aspect: true,
        }
    }
}

/// The compiled `orient` op.
#[derive(Debug)]
pub struct Orient {
    p: Params,
}

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    Ok(Box::new(Orient {
        p: parse_params(params)?,
    }))
}

/// The `crop` window of `img` (all of it when `None`).
fn crop_image(img: Image, crop: Option<crate::raw::Rect>) -> Image {
    let Some(c) = crop else {
        return img;
    };
    let n_in = img.plane_len();
    let mut data = Vec::with_capacity(3 * c.width * c.height);
    for p in 0..3 {
        for y in c.y..c.y + c.height {
            let row = p * n_in + y * img.width + c.x;
            data.extend_from_slice(&img.data[row..row + c.width]);
        }
    }
    Image {
        width: c.width,
        height: c.height,
        data,
        ..img
    }
}

/// Lanczos-3 kernel.
fn lanczos3(x: f64) -> f64 {
    if x.abs() < 1e-9 {
        1.0
    } else if x.abs() >= 3.0 {
        0.0
    } else {
        let px = std::f64::consts::PI * x;
        3.0 * px.sin() * (px / 3.0).sin() / (px * px)
    }
}

/// Resamples every row of `img` to `w` pixels (Lanczos-3, pixel centres
/// aligned, edges clamped, weights normalised).
fn resample_x(img: Image, w: usize) -> Image {
    let (sw, h) = (img.width, img.height);
    let scale = w as f64 / sw as f64;
    let support = 3.0 * (1.0 / scale).max(1.0);
    let taps: Vec<Vec<f32>> = (0..w)
        .map(|ox| {
            let centre = (ox as f64 + 0.5) / scale - 0.5;
            let lo = (centre - support).floor() as i64;
            let hi = (centre + support).ceil() as i64;
            let f = scale.min(1.0);
            let mut wts: Vec<f64> = (lo..=hi)
                .map(|sx| lanczos3((sx as f64 - centre) * f))
                .collect();
            let s: f64 = wts.iter().sum();
            for v in wts.iter_mut() {
                *v /= s;
            }
            wts.iter().map(|v| *v as f32).collect()
        })
        .collect();
    let first: Vec<i64> = (0..w)
        .map(|ox| {
            let centre = (ox as f64 + 0.5) / scale - 0.5;
            (centre - support).floor() as i64
        })
        .collect();
    let n_in = img.plane_len();
    let mut data = vec![0f32; 3 * w * h];
    for p in 0..3 {
        for y in 0..h {
            let src = &img.data[p * n_in + y * sw..p * n_in + (y + 1) * sw];
            let dst = &mut data[p * w * h + y * w..p * w * h + (y + 1) * w];
            for (ox, d) in dst.iter_mut().enumerate() {
                let wts = &taps[ox];
                let mut acc = 0f32;
                for (k, wt) in wts.iter().enumerate() {
                    let sx = (first[ox] + k as i64).clamp(0, sw as i64 - 1) as usize;
                    acc += wt * src[sx];
                }
                *d = acc;
            }
        }
    }
    Image {
        width: w,
        height: h,
        data,
        ..img
    }
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

/// What `orient` does to a frame.
struct Geometry {
    /// The default crop, when applied and inside the frame.
    crop: Option<crate::raw::Rect>,
    /// The rotation / mirroring applied.
    o: Orientation,
    /// Whether non-square pixels are resampled.
    stretch: bool,
}

impl Orient {
    /// The work for a `width` x `height` image of a frame with `meta`.
    fn geometry(&self, width: usize, height: usize, meta: &crate::raw::RawMeta) -> Geometry {
        let crop = if self.p.crop { meta.crop } else { None }
            .filter(|c| c.x + c.width <= width && c.y + c.height <= height);
        let o = if self.p.rotate {
            meta.orientation
        } else {
            Orientation::Normal
        };
        let aspect = meta.pixel_aspect;
        let stretch = self.p.aspect && aspect.is_finite() && (aspect - 1.0).abs() > 1e-3;
        Geometry { crop, o, stretch }
    }
}

impl Stage for Orient {
    fn skip_reason(&self, input: &Header) -> Option<String> {
        let g = self.geometry(input.width, input.height, &input.meta);
        (input.space().is_some() && g.crop.is_none() && g.o == Orientation::Normal && !g.stretch)
            .then(|| "upright, no crop, square pixels".to_string())
    }

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
        let Geometry { crop, o, stretch } = self.geometry(img.width, img.height, &img.meta);
        let aspect = img.meta.pixel_aspect;
        if crop.is_none() && o == Orientation::Normal && !stretch {
            return Ok(Value::Image(img.into()));
        }
        let img = if stretch {
            // Crop first (in sensor pixels), then stretch.
            let cropped = crop_image(img, crop);
            let w = ((cropped.width as f32 * aspect).round() as usize).clamp(1, 1 << 16);
            resample_x(cropped, w)
        } else {
            img
        };
        let crop = if stretch { None } else { crop };
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

    #[test]
    fn non_square_pixels_are_stretched_smoothly() {
        use crate::raw::{CfaPattern, RawMeta};
        let (w, h) = (20, 4);
        let mut meta = RawMeta::bayer("t", w, h, CfaPattern::Rggb);
        meta.pixel_aspect = 80.0 / 52.0;
        // A horizontal ramp on every plane.
        let data: Vec<f32> = (0..3 * w * h)
            .map(|i| (i % w) as f32 / (w - 1) as f32)
            .collect();
        let img = Image {
            width: w,
            height: h,
            data,
            space: crate::frame::ColorSpace::Srgb,
            wb_applied: None,
            meta: std::sync::Arc::new(meta),
        };
        let st = compile(serde_json::json!({})).unwrap();
        let ctx = RunCtx { stage_id: "o" };
        let out = st.run_cpu(&ctx, vec![Value::Image(img.into())]).unwrap();
        let Value::Image(o) = out else { panic!() };
        assert_eq!((o.width, o.height), (31, 4));
        let row = &o.planes()[1][o.width..2 * o.width];
        // Monotonic inside (no ringing on a ramp), ends near 0 and 1.
        for x in 1..row.len() {
            assert!(row[x] >= row[x - 1] - 1e-3, "{row:?}");
        }
        assert!(row[0] < 0.03 && row[row.len() - 1] > 0.97, "{row:?}");
        // aspect: false keeps the width.
        let st = compile(serde_json::json!({ "aspect": false })).unwrap();
        let Value::Image(o2) = st.run_cpu(&ctx, vec![Value::Image(o.clone())]).unwrap() else {
            panic!()
        };
        assert_eq!(o2.width, 31);
    }
}
