//! Values that travel on graph edges: mosaics, images, statistics.
//!
//! Pixel buffers are `f32`, normalised so that the sensor's white level is
//! 1.0 once black level has been applied; a mosaic still in DN may hold its
//! samples as the decoder's `u16` ([`SensorSamples`]). Images are planar (CHW): plane `c`
//! is `data[c * width * height ..][.. width * height]`, rows top to bottom.

pub mod quantize;
pub mod sensor_samples;

pub use sensor_samples::SensorSamples;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::raw::{CfaPattern, NoiseProfile, RawMeta};

/// What the numbers in a mosaic mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MosaicScale {
    /// Raw DN as decoded, black level not removed.
    Dn,
    /// Black level removed, divided by (white - black): 1.0 = saturation.
    Normalized,
}

/// A Bayer mosaic on a graph edge.
#[derive(Debug, Clone)]
pub struct Mosaic {
    pub width: usize,
    pub height: usize,
    /// Bayer phase of `data`'s top-left corner.
    pub cfa: CfaPattern,
    /// One sample per pixel, row-major, len = width * height: `u16` DN
    /// straight from an integer decoder (only while `scale` is `Dn`), else
    /// f32 in the units of `scale`.
    pub data: SensorSamples,
    pub scale: MosaicScale,
    /// White-balance multipliers (R, G, B) already applied to `data`.
    pub wb_applied: Option<[f32; 3]>,
    pub meta: Arc<RawMeta>,
}

impl Mosaic {
    /// A black-level-normalised mosaic (0 = black, 1.0 = white) without
    /// white balance applied: `data` row-major, `width * height` samples,
    /// `cfa` the phase of its top-left corner.
    pub fn normalized(
        width: usize,
        height: usize,
        cfa: CfaPattern,
        data: Vec<f32>,
        meta: RawMeta,
    ) -> Mosaic {
        Mosaic {
            width,
            height,
            cfa,
            data: data.into(),
            scale: MosaicScale::Normalized,
            wb_applied: None,
            meta: Arc::new(meta),
        }
    }
}

/// The colour encoding of an image's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorSpace {
    /// Linear camera RGB (after demosaicing, before colour correction).
    Camera,
    /// Linear sRGB / Rec.709 primaries, D65 white.
    LinearSrgb,
    /// sRGB transfer-encoded values in [0, 1], ready to quantise.
    Srgb,
}

/// A three-channel planar image on a graph edge.
#[derive(Debug, Clone)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// Planar CHW, 3 planes, len = 3 * width * height.
    pub data: Vec<f32>,
    pub space: ColorSpace,
    /// White-balance multipliers already applied upstream (R, G, B).
    pub wb_applied: Option<[f32; 3]>,
    pub meta: Arc<RawMeta>,
}

impl Image {
    /// Pixels per plane.
    pub fn plane_len(&self) -> usize {
        self.width * self.height
    }

    /// The three planes (R, G, B).
    pub fn planes(&self) -> [&[f32]; 3] {
        let n = self.plane_len();
        let (r, gb) = self.data.split_at(n);
        let (g, b) = gb.split_at(n);
        [r, g, b]
    }

    /// The three planes, mutable.
    pub fn planes_mut(&mut self) -> [&mut [f32]; 3] {
        let n = self.plane_len();
        let (r, gb) = self.data.split_at_mut(n);
        let (g, b) = gb.split_at_mut(n);
        [r, g, b]
    }
}

/// Noise level of a frame: the Poisson-Gaussian model per colour plus an
/// optional per-tile sigma map (units: normalised signal, same as the
/// mosaic's values).
#[derive(Debug, Clone, Serialize)]
pub struct NoiseEstimate {
    pub profile: NoiseProfile,
    /// Where the numbers came from ("estimate", "dng_profile", "config").
    pub source: String,
    /// Tile size in pixels of `sigma_map` (0 when absent).
    pub tile: usize,
    pub map_width: usize,
    pub map_height: usize,
    /// Noise standard deviation per tile, row-major.
    pub sigma_map: Vec<f32>,
}

/// Any other typed value a stage produces (grids, boxes, masks, gains).
/// Implementors name their kind for error messages and descriptors.
pub trait AnyValue: Any + Send + Sync + fmt::Debug {
    /// Stable kind name, e.g. "bilateral_grid".
    fn kind(&self) -> &'static str;
    /// Upcast for downcasting by consumers.
    fn as_any(&self) -> &dyn Any;
}

/// A value on a graph edge. Buffers are reference-counted so fan-out costs
/// nothing; a stage that is the last consumer takes ownership and works in
/// place (`Arc::try_unwrap` / `make_mut`).
#[derive(Debug, Clone)]
pub enum Value {
    Mosaic(Arc<Mosaic>),
    Image(Arc<Image>),
    /// A finished image quantised to integer samples: what a run delivers
    /// for its image outputs when asked to (`RunOptions::deliver`). Typed
    /// as an image for graph checks; only pass-through stages see it.
    Encoded(Arc<quantize::EncodedImage>),
    Noise(Arc<NoiseEstimate>),
    /// A scalar control value (e.g. an exposure gain in EV).
    Scalar(f64),
    Other(Arc<dyn AnyValue>),
}

/// The kind of a value, for build-time type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    Mosaic,
    Image,
    Noise,
    Scalar,
    Other(&'static str),
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Mosaic => f.write_str("mosaic"),
            ValueKind::Image => f.write_str("image"),
            ValueKind::Noise => f.write_str("noise estimate"),
            ValueKind::Scalar => f.write_str("scalar"),
            ValueKind::Other(k) => f.write_str(k),
        }
    }
}

/// Shape and type of a value, inferred before any pixel work.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValueDesc {
    pub kind: ValueKind,
    /// Pixels per row (0 for non-image values).
    pub width: usize,
    /// Rows (0 for non-image values).
    pub height: usize,
    /// Colour space of images.
    pub space: Option<ColorSpace>,
}

impl ValueDesc {
    /// A mosaic of the given size.
    pub fn mosaic(width: usize, height: usize) -> Self {
        ValueDesc {
            kind: ValueKind::Mosaic,
            width,
            height,
            space: None,
        }
    }

    /// An image of the given size and space.
    pub fn image(width: usize, height: usize, space: ColorSpace) -> Self {
        ValueDesc {
            kind: ValueKind::Image,
            width,
            height,
            space: Some(space),
        }
    }

    /// A non-pixel value.
    pub fn other(kind: ValueKind) -> Self {
        ValueDesc {
            kind,
            width: 0,
            height: 0,
            space: None,
        }
    }

    /// Megapixels of an image-like value.
    pub fn megapixels(&self) -> f64 {
        (self.width * self.height) as f64 / 1e6
    }
}

impl Value {
    /// The kind of this value.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Mosaic(_) => ValueKind::Mosaic,
            Value::Image(_) | Value::Encoded(_) => ValueKind::Image,
            Value::Noise(_) => ValueKind::Noise,
            Value::Scalar(_) => ValueKind::Scalar,
            Value::Other(o) => ValueKind::Other(o.kind()),
        }
    }

    /// The descriptor of this value.
    pub fn desc(&self) -> ValueDesc {
        match self {
            Value::Mosaic(m) => ValueDesc::mosaic(m.width, m.height),
            Value::Image(i) => ValueDesc::image(i.width, i.height, i.space),
            Value::Encoded(e) => ValueDesc::image(e.width, e.height, e.space),
            v => ValueDesc::other(v.kind()),
        }
    }
}
