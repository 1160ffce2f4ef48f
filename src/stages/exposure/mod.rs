//! Semantic exposure: face detection, sky segmentation and the exposure
//! meter that reads both (the control algorithm, in the libcamera IPA
//! sense: it reads statistics and writes a control value, it never changes
//! pixels).
//!
//! | file | op / helper |
//! |---|---|
//! | face_detect.rs | `face_detect`: SeetaFace (rustface) or YuNet boxes |
//! | yunet.rs | YuNet ONNX inference (feature `yunet`), decoding, NMS |
//! | sky_segment.rs | `sky_segment`: classical cue model or the learned segmenter |
//! | exposure_meter.rs | `exposure_meter`: EV + highlight white point |
//! | exposure_debug.rs | `exposure_debug`: frame with boxes and sky overlaid |
//! | guided_filter.rs | guided filter (He et al. 2010) used by the sky stage |
//! | tuning.rs | the meter's YAML tuning file |
//!
//! The typed values these stages put on graph edges live here:
//! [`Faces`], [`SkyMap`] and [`ExposureControl`].

pub mod exposure_debug;
pub mod exposure_meter;
pub mod face_detect;
pub mod guided_filter;
pub mod sky_segment;
pub mod tuning;
pub mod yunet;

use std::any::Any;

use rayon::prelude::*;
use serde::Serialize;

use crate::frame::{AnyValue, ColorSpace, Image, Value};

/// One detected face, in pixel coordinates of the frame the detector was
/// given (x right, y down, origin at the top-left corner of the top-left
/// pixel).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceBox {
    /// Left edge, pixels.
    pub x: f32,
    /// Top edge, pixels.
    pub y: f32,
    /// Width, pixels.
    pub w: f32,
    /// Height, pixels.
    pub h: f32,
    /// Detector confidence (detector-specific scale; YuNet in [0, 1],
    /// SeetaFace an unbounded classifier score).
    pub score: f32,
    /// Five landmarks (right eye, left eye, nose tip, right and left mouth
    /// corner) as (x, y) pixels, when the detector provides them.
    pub landmarks: Option<[[f32; 2]; 5]>,
}

impl FaceBox {
    /// Scales the box and its landmarks by `sx` along x and `sy` along y
    /// (from detection-image to frame pixels).
    pub fn scale(&mut self, sx: f32, sy: f32) {
        self.x *= sx;
        self.y *= sy;
        self.w *= sx;
        self.h *= sy;
        if let Some(l) = self.landmarks.as_mut() {
            for p in l.iter_mut() {
                p[0] *= sx;
                p[1] *= sy;
            }
        }
    }

    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union with another box.
    pub fn iou(&self, o: &FaceBox) -> f32 {
        let x0 = self.x.max(o.x);
        let y0 = self.y.max(o.y);
        let x1 = (self.x + self.w).min(o.x + o.w);
        let y1 = (self.y + self.h).min(o.y + o.h);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + o.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// Faces found in a frame: the `faces` value on a graph edge.
#[derive(Debug, Clone, Serialize)]
pub struct Faces {
    /// Size of the frame the boxes refer to, pixels.
    pub width: usize,
    pub height: usize,
    /// Which detector produced them ("seetaface", "yunet").
    pub detector: String,
    /// Boxes sorted by descending score.
    pub boxes: Vec<FaceBox>,
}

impl AnyValue for Faces {
    fn kind(&self) -> &'static str {
        "faces"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Per-pixel sky probability: the `sky_map` value on a graph edge. The map
/// is usually smaller than the frame; it covers the whole frame (sample it
/// at `(x + 0.5) * width / frame_width - 0.5`).
#[derive(Debug, Clone, Serialize)]
pub struct SkyMap {
    /// Map size, pixels.
    pub width: usize,
    pub height: usize,
    /// Size of the frame the map covers, pixels.
    pub frame_width: usize,
    pub frame_height: usize,
    /// Probability of sky in [0, 1], row-major, len = width * height.
    #[serde(skip)]
    pub prob: Vec<f32>,
    /// Which model produced it ("classical", "learned").
    pub model: String,
}

impl SkyMap {
    /// Bilinear sample at frame coordinates (pixel centres at +0.5).
    pub fn sample(&self, fx: f32, fy: f32) -> f32 {
        if self.width == 0 || self.height == 0 || self.frame_width == 0 || self.frame_height == 0 {
            return 0.0;
        }
        let sx = self.width as f32 / self.frame_width as f32;
        let sy = self.height as f32 / self.frame_height as f32;
        let x = ((fx * sx) - 0.5).clamp(0.0, (self.width - 1) as f32);
        let y = ((fy * sy) - 0.5).clamp(0.0, (self.height - 1) as f32);
        let (x0, y0) = (x as usize, y as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (ax, ay) = (x - x0 as f32, y - y0 as f32);
        let p = |xx: usize, yy: usize| self.prob[yy * self.width + xx];
        let top = p(x0, y0) + ax * (p(x1, y0) - p(x0, y0));
        let bot = p(x0, y1) + ax * (p(x1, y1) - p(x0, y1));
        top + ay * (bot - top)
    }
}

impl AnyValue for SkyMap {
    fn kind(&self) -> &'static str {
        "sky_map"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What the meter decided: the `exposure_control` value on a graph edge,
/// read by `exposure_gain` (the gain) and `tone_curve` (the white point).
#[derive(Debug, Clone, Serialize)]
pub struct ExposureControl {
    /// Exposure gain in EV (linear gain = 2^ev), after temporal smoothing.
    pub ev: f32,
    /// Linear value, after the gain, that tone mapping should map to
    /// display white (>= 1; above 1 the tone curve compresses highlights
    /// instead of clipping them): the highlight-protection value.
    pub white_point: f32,
    /// Metering method that decided the EV ("faces", "sky", "histogram",
    /// "average", "centre_weighted", "none").
    pub method: &'static str,
    /// EV this frame asked for before temporal smoothing.
    pub frame_ev: f32,
    /// Combined median face luminance (linear, before the gain), if faces.
    pub face_luminance: Option<f32>,
    /// The protected highlight (semantic mode): the tuning's percentile of
    /// the max channel over the sky pixels, or over the frame without sky;
    /// linear, before the gain.
    /// `white_point = clamp(highlight * 2^ev * white_margin, 1, 2^max)`.
    pub highlight: Option<f32>,
}

impl AnyValue for ExposureControl {
    fn kind(&self) -> &'static str {
        "exposure_control"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Kind names of the values above, for `infer` checks.
pub const FACES: &str = "faces";
pub const SKY_MAP: &str = "sky_map";
pub const EXPOSURE_CONTROL: &str = "exposure_control";

/// Downcasts an `Other` value.
pub fn downcast<T: 'static>(v: &Value) -> Option<&T> {
    match v {
        Value::Other(o) => o.as_any().downcast_ref::<T>(),
        _ => None,
    }
}

/// Size of a grid whose longer side is at most `max_side` pixels, keeping
/// the aspect ratio (never larger than the frame, never empty).
pub fn grid_size(width: usize, height: usize, max_side: usize) -> (usize, usize) {
    let long = width.max(height).max(1);
    if long <= max_side {
        return (width.max(1), height.max(1));
    }
    let s = max_side as f64 / long as f64;
    (
        ((width as f64 * s).round() as usize).max(1),
        ((height as f64 * s).round() as usize).max(1),
    )
}

/// Area (box) downscale of an image's three planes to `tw x th`: each
/// output pixel is the mean of the source pixels whose index maps into it
/// (`x * tw / width`), as adaptive average pooling. Output planar CHW,
/// len = 3 * tw * th. Reads every source pixel once, rows in parallel.
pub fn area_downscale(img: &Image, tw: usize, th: usize) -> Vec<f32> {
    let (w, h) = (img.width, img.height);
    let mut out = vec![0f32; 3 * tw * th];
    if w == 0 || h == 0 || tw == 0 || th == 0 {
        return out;
    }
    // Bin b covers source columns xs[b]..xs[b + 1] (x * tw / w == b).
    let mut xs = vec![0usize; tw + 1];
    for (b, v) in xs.iter_mut().enumerate() {
        *v = (b * w).div_ceil(tw).min(w);
    }
    let xcount: Vec<f32> = (0..tw).map(|b| (xs[b + 1] - xs[b]).max(1) as f32).collect();
    let planes = img.planes();
    let rows: Vec<[Vec<f32>; 3]> = (0..th)
        .into_par_iter()
        .map(|ty| {
            let y0 = ty * h / th;
            let y1 = ((ty + 1) * h / th).max(y0 + 1).min(h);
            let mut acc = [vec![0f32; tw], vec![0f32; tw], vec![0f32; tw]];
            for y in y0..y1 {
                for (c, a) in acc.iter_mut().enumerate() {
                    let row = &planes[c][y * w..(y + 1) * w];
                    for (bin, v) in a.iter_mut().enumerate() {
                        *v += row[xs[bin]..xs[bin + 1]].iter().sum::<f32>();
                    }
                }
            }
            let ny = (y1 - y0) as f32;
            for a in acc.iter_mut() {
                for (v, n) in a.iter_mut().zip(&xcount) {
                    *v /= n * ny;
                }
            }
            acc
        })
        .collect();
    let n = tw * th;
    for (ty, r) in rows.iter().enumerate() {
        for c in 0..3 {
            out[c * n + ty * tw..c * n + (ty + 1) * tw].copy_from_slice(&r[c]);
        }
    }
    out
}

/// Wraps planar linear RGB (CHW, len 3 * width * height) as an image with
/// placeholder metadata (for photos, synthetic frames and tests).
pub fn planar_image(width: usize, height: usize, data: Vec<f32>, space: ColorSpace) -> Image {
    Image {
        width,
        height,
        data,
        space,
        wb_applied: None,
        meta: std::sync::Arc::new(crate::raw::RawMeta::bayer(
            "image",
            width,
            height,
            crate::raw::CfaPattern::Rggb,
        )),
    }
}

/// Linear sRGB image from 8-bit sRGB-encoded interleaved RGB (a photo).
pub fn image_from_srgb8(width: usize, height: usize, rgb: &[u8]) -> Image {
    let lut: Vec<f32> = (0..256)
        .map(|v| crate::color::srgb_decode(v as f32 / 255.0))
        .collect();
    let n = width * height;
    let mut data = vec![0f32; 3 * n];
    for (i, px) in rgb.chunks_exact(3).take(n).enumerate() {
        for c in 0..3 {
            data[c * n + i] = lut[px[c] as usize];
        }
    }
    planar_image(width, height, data, ColorSpace::LinearSrgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_downscale_is_the_box_mean() {
        let (w, h) = (6, 4);
        let mut data = vec![0f32; 3 * w * h];
        for (i, v) in data.iter_mut().enumerate() {
            *v = i as f32;
        }
        let img = planar_image(w, h, data, ColorSpace::LinearSrgb);
        let d = area_downscale(&img, 3, 2);
        // Plane 0, output (0,0) averages pixels (0..2, 0..2): 0,1,6,7.
        assert_eq!(d[0], 3.5);
        // Plane 2, output (2,1): pixels x 4..6, y 2..4 of plane 2 (offset 48).
        let want = (48.0 + 16.0 + 17.0 + 22.0 + 23.0 + 48.0 * 3.0) / 4.0;
        assert_eq!(d[2 * 6 + 5], want);
    }

    #[test]
    fn iou_of_boxes() {
        let a = FaceBox {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
            score: 1.0,
            landmarks: None,
        };
        let b = FaceBox { x: 5.0, ..a };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&a), 1.0);
    }

    #[test]
    fn grid_keeps_aspect() {
        assert_eq!(grid_size(4000, 3000, 256), (256, 192));
        assert_eq!(grid_size(100, 50, 256), (100, 50));
    }
}
