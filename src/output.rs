//! Writing images: PNG (8/16-bit), TIFF (16-bit), JPEG. Every write goes
//! to a temporary file in the destination folder and is renamed into
//! place, so a failure never leaves a half-written file.

pub mod png;
pub mod tiff_stream;
pub mod writeback;

use std::io::{BufWriter, Write};
use std::path::Path;

use image::{ExtendedColorType, ImageEncoder};
use tiff::encoder::{colortype::RGB16, TiffEncoder};

use crate::error::{Error, Result};
use crate::frame::quantize::{quantize_image, Depth, EncodedImage, Samples};
use crate::frame::Image;

/// Version of the JSON the CLI writes (`schema_version` in every object
/// it prints or saves); raised when a field changes meaning or goes away.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// A field that always serialises as [`JSON_SCHEMA_VERSION`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaVersion;

impl serde::Serialize for SchemaVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u32(JSON_SCHEMA_VERSION)
    }
}

/// `value` with `schema_version` as its first field (for JSON objects the
/// CLI writes whose type has no such field of its own).
#[derive(Debug, serde::Serialize)]
pub struct Versioned<'a, T: serde::Serialize> {
    pub schema_version: SchemaVersion,
    #[serde(flatten)]
    pub value: &'a T,
}

impl<'a, T: serde::Serialize> Versioned<'a, T> {
    pub fn new(value: &'a T) -> Self {
        Versioned {
            schema_version: SchemaVersion,
            value,
        }
    }
}

/// Output encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Png8,
    Png16,
    Tiff16,
    /// JPEG with quality 1..=100.
    Jpeg(u8),
    /// Raw 4:2:0 Y'CbCr planes (`.yuv`, `.nv12`, `.i420`, `.p010`) from a
    /// pipeline ending in `yuv_encode`; the op's `format` sets the layout.
    Yuv,
}

impl OutFormat {
    /// The sample depth this format stores; `None` for YUV (written by
    /// `yuv_encode` itself).
    pub fn depth(self) -> Option<Depth> {
        match self {
            OutFormat::Png8 | OutFormat::Jpeg(_) => Some(Depth::U8),
            OutFormat::Png16 | OutFormat::Tiff16 => Some(Depth::U16),
            OutFormat::Yuv => None,
        }
    }

    /// Picks the format from the file extension; `bits` (8 or 16) selects
    /// the PNG depth (default 8; TIFF is always 16, JPEG always 8).
    pub fn for_path(path: &Path, bits: Option<u8>) -> Result<OutFormat> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        match (ext.as_str(), bits) {
            ("png", None | Some(8)) => Ok(OutFormat::Png8),
            ("png", Some(16)) => Ok(OutFormat::Png16),
            ("tif" | "tiff", None | Some(16)) => Ok(OutFormat::Tiff16),
            ("jpg" | "jpeg", None | Some(8)) => Ok(OutFormat::Jpeg(92)),
            ("yuv" | "nv12" | "i420" | "p010", None) => Ok(OutFormat::Yuv),
            ("png" | "tif" | "tiff" | "jpg" | "jpeg", Some(b)) => Err(Error::invalid(format!(
                "{}: {b}-bit output is not available for .{ext} (png: 8/16, tiff: 16, jpeg: 8)",
                path.display()
            ))),
            _ => Err(Error::invalid(format!(
                "{}: unknown output extension '{ext}' (use .png, .tif, .jpg, or .yuv/.nv12/.i420/.p010 after yuv_encode)",
                path.display()
            ))),
        }
    }
}

/// Interleaved 8-bit RGB, values clamped to [0, 1] and rounded
/// (`frame::quantize`).
pub fn to_rgb8(img: &Image) -> Vec<u8> {
    match quantize_image(img, Depth::U8).samples {
        Samples::U8(v) => v,
        Samples::U16(v) => v.iter().map(|&s| (s >> 8) as u8).collect(),
    }
}

/// Interleaved 16-bit RGB, values clamped to [0, 1] and rounded
/// (`frame::quantize`).
pub fn to_rgb16(img: &Image) -> Vec<u16> {
    match quantize_image(img, Depth::U16).samples {
        Samples::U16(v) => v,
        Samples::U8(v) => v.iter().map(|&s| u16::from(s) * 257).collect(),
    }
}

/// Interleaved RGB samples of an image about to be encoded.
#[derive(Debug, Clone, Copy)]
pub enum RgbSamples<'a> {
    /// 8-bit, len = 3 * width * height.
    U8(&'a [u8]),
    /// 16-bit, len = 3 * width * height.
    U16(&'a [u16]),
}

/// Writes `img` to `path` atomically in the given format.
pub fn write_image(img: &Image, path: &Path, fmt: OutFormat) -> Result<()> {
    let (w, h) = (img.width, img.height);
    match fmt {
        OutFormat::Png8 | OutFormat::Jpeg(_) => {
            write_rgb(path, w, h, RgbSamples::U8(&to_rgb8(img)), fmt)
        }
        OutFormat::Png16 | OutFormat::Tiff16 => {
            write_rgb(path, w, h, RgbSamples::U16(&to_rgb16(img)), fmt)
        }
        OutFormat::Yuv => Err(Error::invalid(format!(
            "{}: a YUV output needs a pipeline that ends in yuv_encode",
            path.display()
        ))),
    }
}

/// Writes an image already quantised for output (a delivered pipeline
/// output, see `RunOptions::deliver`) to `path` atomically; its depth
/// must be the format's.
pub fn write_encoded(img: &EncodedImage, path: &Path, fmt: OutFormat) -> Result<()> {
    let px = match &img.samples {
        Samples::U8(v) => RgbSamples::U8(v),
        Samples::U16(v) => RgbSamples::U16(v),
    };
    write_rgb(path, img.width, img.height, px, fmt)
}

/// Writes interleaved RGB samples (`width` x `height`, rows top to
/// bottom) to `path` atomically. The sample depth must match the format:
/// 8-bit for PNG8 and JPEG, 16-bit for PNG16 and TIFF.
pub fn write_rgb(
    path: &Path,
    width: usize,
    height: usize,
    px: RgbSamples,
    fmt: OutFormat,
) -> Result<()> {
    let n = width
        .checked_mul(height)
        .and_then(|v| v.checked_mul(3))
        .ok_or_else(|| Error::invalid(format!("{}: image too large", path.display())))?;
    let len = match px {
        RgbSamples::U8(v) => v.len(),
        RgbSamples::U16(v) => v.len(),
    };
    if len != n {
        return Err(Error::invalid(format!(
            "{}: {len} samples for a {width}x{height} RGB image",
            path.display()
        )));
    }
    let (w, h) = (
        u32::try_from(width).map_err(|_| Error::invalid("image too wide"))?,
        u32::try_from(height).map_err(|_| Error::invalid("image too tall"))?,
    );
    write_atomic(path, |file| {
        let mut bw = BufWriter::new(writeback::Writeback::new(file));
        let res = match (fmt, px) {
            (OutFormat::Png8, RgbSamples::U8(v)) => {
                png::encode(&mut bw, w, h, png::Samples::U8(v))?;
                Ok(())
            }
            (OutFormat::Png16, RgbSamples::U16(v)) => {
                png::encode(&mut bw, w, h, png::Samples::U16(v))?;
                Ok(())
            }
            // Straight from the samples (the `image` wrapper would first
            // copy all of them into a byte buffer: 72 MB at 12 MP).
            (OutFormat::Tiff16, RgbSamples::U16(v)) => TiffEncoder::new(&mut bw)
                .and_then(|mut t| t.write_image::<RGB16>(w, h, v))
                .map_err(|e| image::ImageError::IoError(std::io::Error::other(e.to_string()))),
            (OutFormat::Jpeg(q), RgbSamples::U8(v)) => {
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bw, q).write_image(
                    v,
                    w,
                    h,
                    ExtendedColorType::Rgb8,
                )
            }
            _ => {
                return Err(std::io::Error::other(
                    "sample depth does not match the output format",
                ))
            }
        };
        res.map_err(|e| std::io::Error::other(e.to_string()))?;
        bw.flush()
    })
}

/// Runs `write` on a temporary file next to `path`, then renames it over
/// `path`. On any error the temporary file is removed.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let mut tmp = atomic_temp(path)?;
    write(tmp.as_file_mut()).map_err(|e| Error::io(path, e))?;
    commit_atomic(tmp, path)
}

/// The temporary file an atomic write of `path` goes to: hidden
/// (`.rawgraph-*.partial`) in `path`'s folder, removed when dropped.
pub fn atomic_temp(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() {
        return Err(Error::invalid(format!(
            "{}: is a directory",
            path.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(".rawgraph-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))
}

/// Finishes an atomic write: flushes the written temporary file to the
/// disk, gives it the usual permissions and renames it over `path`.
pub fn commit_atomic(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // Temporary files are created private (0600); outputs get the usual
    // permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
