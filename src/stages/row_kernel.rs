//! The row-kernel stage contract read by the fused executor
//! (`graph::schedule`, `graph::fuse`).
//!
//! A stage that can work a strip of rows at a time declares its
//! [`RowShape`] (statically, for the scheduling pass) and, once the frame's
//! header is known, hands out a [`RowKernel`] with every per-frame constant
//! (gains, matrices, tables) computed once. Its own `run_cpu` runs the same
//! kernel over the whole frame, so the fused and unfused paths share their
//! arithmetic and give identical pixels.

use std::sync::Arc;

use crate::backend::cpu::Tile;
use crate::frame::{ColorSpace, Image, Mosaic, MosaicScale, Value};
use crate::raw::{CfaPattern, RawMeta};

/// Geometry of a row stage: what the scheduler needs to cut strips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowShape {
    /// Rows (and columns) of context needed on each side, mirrored at the
    /// frame border; 0 for per-pixel stages.
    pub halo: usize,
    /// Strips must start on a multiple of this row (2 for Bayer stencils).
    pub row_align: usize,
}

impl RowShape {
    /// A per-pixel stage.
    pub const POINT: RowShape = RowShape {
        halo: 0,
        row_align: 1,
    };
}

/// What a value is, without its pixels: enough to prepare the next
/// member's kernel in a fused segment.
#[derive(Debug, Clone)]
pub struct Header {
    pub width: usize,
    pub height: usize,
    pub kind: HeaderKind,
    /// White-balance multipliers (R, G, B) applied upstream.
    pub wb_applied: Option<[f32; 3]>,
    pub meta: Arc<RawMeta>,
}

/// Mosaic or image, with the fields that describe its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Mosaic { cfa: CfaPattern, scale: MosaicScale },
    Image { space: ColorSpace },
}

impl Header {
    /// The header of a pixel value; `None` for non-pixel values.
    pub fn of(v: &Value) -> Option<Header> {
        match v {
            Value::Mosaic(m) => Some(Header::of_mosaic(m)),
            Value::Image(i) => Some(Header {
                width: i.width,
                height: i.height,
                kind: HeaderKind::Image { space: i.space },
                wb_applied: i.wb_applied,
                meta: i.meta.clone(),
            }),
            Value::Encoded(e) => Some(Header {
                width: e.width,
                height: e.height,
                kind: HeaderKind::Image { space: e.space },
                wb_applied: None,
                meta: e.meta.clone(),
            }),
            _ => None,
        }
    }

    /// The header of a mosaic.
    pub fn of_mosaic(m: &Mosaic) -> Header {
        Header {
            width: m.width,
            height: m.height,
            kind: HeaderKind::Mosaic {
                cfa: m.cfa,
                scale: m.scale,
            },
            wb_applied: m.wb_applied,
            meta: m.meta.clone(),
        }
    }

    /// The mosaic's Bayer phase and scale, or `None` for an image.
    pub fn mosaic(&self) -> Option<(CfaPattern, MosaicScale)> {
        match self.kind {
            HeaderKind::Mosaic { cfa, scale } => Some((cfa, scale)),
            HeaderKind::Image { .. } => None,
        }
    }

    /// The header a demosaic gives for this mosaic: a camera-RGB image of
    /// the same size and metadata; an error when this is not a mosaic.
    pub fn demosaiced(&self) -> crate::error::Result<Header> {
        if self.mosaic().is_none() {
            return Err(crate::error::Error::invalid("expected a mosaic"));
        }
        let mut out = self.clone();
        out.kind = HeaderKind::Image {
            space: ColorSpace::Camera,
        };
        Ok(out)
    }

    /// The image's colour space, or `None` for a mosaic.
    pub fn space(&self) -> Option<ColorSpace> {
        match self.kind {
            HeaderKind::Image { space } => Some(space),
            HeaderKind::Mosaic { .. } => None,
        }
    }

    /// Applies this header's descriptive fields to a mosaic whose pixels
    /// were produced under it.
    pub fn stamp_mosaic(&self, m: &mut Mosaic) {
        if let HeaderKind::Mosaic { cfa, scale } = self.kind {
            m.cfa = cfa;
            m.scale = scale;
        }
        m.wb_applied = self.wb_applied;
    }

    /// An image with this header and `data` (planar CHW).
    pub fn image(&self, data: Vec<f32>) -> Image {
        Image {
            width: self.width,
            height: self.height,
            data,
            space: self.space().unwrap_or(ColorSpace::Camera),
            wb_applied: self.wb_applied,
            meta: self.meta.clone(),
        }
    }
}

/// Mosaic -> mosaic per photosite: `f(y, row)` rewrites image row `y`
/// (full width, row-major samples) in place.
pub type MosaicRowFn = Box<dyn Fn(usize, &mut [f32]) + Send + Sync>;

/// Mosaic -> mosaic over a neighbourhood of rows, changing few samples
/// (a correction such as `defect_correct`): `f(y, rows, edits)` appends
/// to `edits` the samples of mosaic row `y` that change, as (column, new
/// value), computed from `rows`, the input rows `y - halo ..= y + halo`
/// (`2 halo + 1` of them, mirrored at the frame's top and bottom as
/// [`crate::backend::cpu::reflect`] does; columns are the kernel's own
/// business). Every other sample of the output row is `rows[halo]`'s; a
/// column listed twice gets the later value. The runner may so correct a
/// mosaic in place, writing a row's edits once no row still to come reads
/// its input values. Called as `f(y, rows, Some(out), edits)`, the kernel
/// also copies `rows[halo]` into `out` (`width` samples; it may do so while
/// it reads the row), and the runner applies the edits there.
pub type MosaicStencilFn =
    Box<dyn Fn(usize, &[&[f32]], Option<&mut [f32]>, &mut Vec<(usize, f32)>) + Send + Sync>;

/// Mosaic -> camera RGB from a mirrored-halo tile: `f(tile, [r, g, b])`
/// fills the tile's interior rows (each plane `rows * width`, row-major).
pub type DemosaicFn = Box<dyn Fn(&Tile, [&mut [f32]; 3]) + Send + Sync>;

/// Image -> image per pixel: `f([r, g, b])` rewrites equal-length runs of
/// the three planes in place.
pub type ImageRowFn = Box<dyn Fn([&mut [f32]; 3]) + Send + Sync>;

/// Read access to the rows an image stencil works from (the output of the
/// segment member before it, or a whole frame).
pub trait RowSource {
    /// Plane `c` (0 R, 1 G, 2 B) of image row `y`, mirrored into the frame
    /// as [`crate::backend::cpu::reflect`] does (`-1` is row 1): `width`
    /// samples. Every row within the stencil's halo of the strip it is
    /// asked for is available.
    fn row(&self, c: usize, y: isize) -> &[f32];
}

/// Image -> image over a neighbourhood: `f(rows, y0, [r, g, b], carry)`
/// writes every sample of output rows `y0 ..` (each plane `rows * width`,
/// row-major) from the input's rows within the kernel's halo, read
/// through `rows`; `carry` is working memory kept from call to call (see
/// [`StencilCarry`]).
pub type StencilFn =
    Box<dyn Fn(&dyn RowSource, usize, [&mut [f32]; 3], &mut StencilCarry) + Send + Sync>;

/// What an image stencil may keep from one call to the next: values it
/// computed from the input rows of its last call (such as the
/// luminance of the rows its next call needs as context above).
///
/// The caller hands the same carry to consecutive calls on the rows of one
/// frame, and calls [`StencilCarry::restart`] before any other call (a new
/// band, a new frame, another thread's rows): a kernel may then trust what
/// it left in `buf` and `flags` when `next` equals the first row it is asked
/// for, and must not otherwise.
#[derive(Debug, Default)]
pub struct StencilCarry {
    /// The image row the kernel's last call stopped before, once it left
    /// values it can continue from; `None` after a restart.
    pub next: Option<usize>,
    /// The kernel's values (its own layout).
    pub buf: Vec<f32>,
    /// The kernel's flags (its own layout).
    pub flags: Vec<bool>,
    /// Where in `buf` the kernel's values start (its own use).
    pub phase: usize,
}

impl StencilCarry {
    /// Forgets the kept values (the buffers stay allocated for reuse).
    pub fn restart(&mut self) {
        self.next = None;
    }
}

/// Image -> encoded planes: `f(y0, [r, g, b], parts)` encodes image rows
/// `y0 ..` (each plane `rows * width`; `y0` and `rows` whole groups of
/// [`Encoder::group`] rows, but for the frame's last rows) into `parts[k]`,
/// the samples of output plane `k` that those groups own.
pub type EncodeFn = Box<dyn Fn(usize, [&[f32]; 3], &mut [&mut [u16]]) + Send + Sync>;

/// Builds the stage's value from its filled output planes.
pub type FinishFn = Box<dyn Fn(Vec<Vec<u16>>) -> Value + Send + Sync>;

/// A stage that turns image rows into integer sample planes of its own
/// layout (`yuv_encode`): the last member of a segment, writing its
/// planes from each strip while the strip is in cache.
pub struct Encoder {
    /// Image rows per group (2 for 4:2:0 chroma); strips start on a
    /// multiple of it.
    pub group: usize,
    /// Per output plane: (samples per group of rows, samples in all).
    /// Group `g` owns samples `g * per .. (g + 1) * per`, cut at the end.
    pub planes: Vec<(usize, usize)>,
    pub f: EncodeFn,
    pub finish: FinishFn,
}

impl Encoder {
    /// The samples of each plane that rows `y0 .. y0 + rows` own (`y0` a
    /// group boundary), counted from row 0 of the part of the frame they
    /// are in (cut where the plane ends).
    pub fn span(&self, y0: usize, rows: usize) -> Vec<std::ops::Range<usize>> {
        let g = self.group.max(1);
        let (g0, g1) = (y0 / g, (y0 + rows).div_ceil(g));
        self.planes
            .iter()
            .map(|&(per, _)| g0 * per..g1 * per)
            .collect()
    }
}

/// A stage's per-strip work with its per-frame constants bound.
pub enum RowKernel {
    Mosaic(MosaicRowFn),
    /// `halo` rows of context above and below each row (see
    /// [`MosaicStencilFn`]). In a segment it is one of the mosaic members
    /// (at most one per segment): the runner keeps the rows the members
    /// before it made while the stencil still needs them.
    MosaicStencil {
        halo: usize,
        f: MosaicStencilFn,
    },
    /// `halo` rows and columns of mirrored context (even); the runner
    /// hands `f` tiles of `strip_rows` output rows (even; the last strip
    /// of a frame may be shorter), the strip height the method works best
    /// at (a wide halo wants taller strips, so less of each tile is
    /// context).
    Demosaic {
        halo: usize,
        strip_rows: usize,
        f: DemosaicFn,
    },
    Image(ImageRowFn),
    /// `halo` rows of context above and below each output row (mirrored
    /// at the frame's top and bottom; columns are the kernel's own
    /// business). In a segment it comes after a demosaic, followed by
    /// image kernels and at most an encoder (at most one stencil per
    /// segment).
    Stencil {
        halo: usize,
        f: StencilFn,
    },
    /// The segment's last member after a demosaic (and the image members
    /// or stencil after it), making a non-image value.
    Encode(Encoder),
}

impl std::fmt::Debug for RowKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowKernel::Mosaic(_) => f.write_str("RowKernel::Mosaic"),
            RowKernel::MosaicStencil { halo, .. } => {
                write!(f, "RowKernel::MosaicStencil(halo {halo})")
            }
            RowKernel::Demosaic {
                halo, strip_rows, ..
            } => write!(
                f,
                "RowKernel::Demosaic(halo {halo}, strips of {strip_rows} rows)"
            ),
            RowKernel::Image(_) => f.write_str("RowKernel::Image"),
            RowKernel::Stencil { halo, .. } => write!(f, "RowKernel::Stencil(halo {halo})"),
            RowKernel::Encode(e) => write!(f, "RowKernel::Encode(groups of {} rows)", e.group),
        }
    }
}

/// Runs a mosaic row kernel over a whole mosaic, rows in parallel.
pub fn run_mosaic_rows(m: &mut Mosaic, f: &MosaicRowFn) {
    use rayon::prelude::*;
    let w = m.width;
    if w == 0 {
        return;
    }
    m.data
        .f32_mut()
        .par_chunks_mut(w * super::ROWS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, rows)| {
            for (r, row) in rows.chunks_exact_mut(w).enumerate() {
                f(chunk * super::ROWS_PER_TASK + r, row);
            }
        });
}

/// Runs an image kernel over a whole image, row bands in parallel.
pub fn run_image_rows(img: &mut Image, f: &ImageRowFn) {
    use rayon::prelude::*;
    let band = img.width.max(1) * super::ROWS_PER_TASK;
    let [r, g, b] = img.planes_mut();
    r.par_chunks_mut(band)
        .zip(g.par_chunks_mut(band))
        .zip(b.par_chunks_mut(band))
        .for_each(|((r, g), b)| f([r, g, b]));
}
