//! DNG writer: a Bayer [`RawFrame`] as a DNG 1.4 file, uncompressed or
//! lossless-JPEG compressed.
//!
//! Follows the Adobe DNG Specification 1.4 (2012): one IFD0 holding the raw
//! CFA image (NewSubFileType 0; 16-bit samples in uncompressed strips or
//! tiles, or lossless JPEG tiles, [`DngCompression`]) and the colour
//! metadata:
//!
//! | tag | value written |
//! |---|---|
//! | CFARepeatPatternDim / CFAPattern / CFAPlaneColor / CFALayout | 2x2 Bayer phase, planes R G B, rectangular |
//! | BlackLevelRepeatDim / BlackLevel | the black pattern (LONG when integral, else RATIONAL /1000) |
//! | WhiteLevel | one LONG (the smallest of the three channel levels) |
//! | ColorMatrix1/2 + CalibrationIlluminant1/2 | XYZ -> camera, SRATIONAL /10^6 |
//! | AsShotNeutral | 1 / WB gain per channel, RATIONAL /10^6 |
//! | NoiseProfile | (S, O) per plane R, G, B as DOUBLE |
//! | OpcodeList2 | the frame's GainMaps (`RawMeta::gain_maps`), UNDEFINED |
//! | Make / Model / UniqueCameraModel / Software | ASCII |
//! | Orientation, ISOSpeedRatings, ExposureTime, DefaultCropOrigin/Size | when known (ISO and exposure also in an Exif IFD) |
//!
//! Strips are the default and what every reader takes; tiles are read by
//! rawler but not by dcraw 9.28 or LibRaw 0.20, which read uncompressed
//! DNG pixels as one contiguous run (measured with Debian's packages).
//!
//! Uncompressed samples are stored as 16-bit regardless of `RawMeta::bits`
//! (lossless JPEG at the precision the largest sample needs): the
//! significant range is carried by WhiteLevel. A frame whose metadata has a
//! direct camera -> sRGB matrix (sidecars) and no ColorMatrix gets
//! `ColorMatrix1 = inverse(cam_to_srgb) x XYZ_to_sRGB` (D65), which renders
//! identically through `color_correct` whenever `cam_to_srgb` maps white
//! to white; a frame with no colour information at all gets the matrix of
//! "camera RGB = linear sRGB".
//!
//! [`dng_representable`] gives the metadata exactly as a reader will see it
//! after the rational encodings above; writing that and decoding the file
//! with [`super::decode`] returns it bit for bit.

use std::io::Cursor;
use std::path::Path;

use tiff::encoder::{Rational, SRational, TiffEncoder};
use tiff::tags::Tag;

use super::{BlackLevel, ColorMatrix, Illuminant, PixelLayout, RawFrame, RawMeta};
use crate::color::{self, Mat3};
use crate::error::{Error, Result};
use crate::frame::SensorSamples;

/// Denominator of the ColorMatrix SRATIONALs.
pub const MATRIX_DENOM: i32 = 1_000_000;
/// Denominator of the AsShotNeutral RATIONALs.
pub const NEUTRAL_DENOM: u32 = 1_000_000;
/// Denominator of a non-integral BlackLevel RATIONAL.
pub const BLACK_DENOM: u32 = 1000;

/// A TIFF UNDEFINED (type 7) byte string, as the DNG spec types the
/// opcode lists.
struct Undefined<'a>(&'a [u8]);

impl tiff::encoder::TiffValue for Undefined<'_> {
    const BYTE_LEN: u8 = 1;
    const FIELD_TYPE: tiff::tags::Type = tiff::tags::Type::UNDEFINED;

    fn count(&self) -> usize {
        self.0.len()
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.0)
    }
}

/// How the pixel data is split in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DngTiling {
    /// Horizontal strips of `rows_per_strip` rows (StripOffsets).
    Strips { rows_per_strip: u32 },
    /// Square tiles of `size` x `size` pixels, `size` a multiple of 16
    /// (TileOffsets); edge tiles are padded with zeros.
    Tiles { size: u32 },
}

/// How the samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DngCompression {
    /// 16-bit samples as they are (Compression 1).
    #[default]
    None,
    /// Lossless JPEG (ITU T.81 process 14, predictor 1; Compression 7),
    /// what cameras and Adobe's converter write: every tile one JPEG of two
    /// interleaved components (each row's Bayer pairs), the precision the
    /// frame's largest sample needs. Needs [`DngTiling::Tiles`].
    LosslessJpeg,
}

/// Options of [`encode_dng`].
#[derive(Debug, Clone)]
pub struct DngOptions {
    pub tiling: DngTiling,
    pub compression: DngCompression,
    /// Software tag.
    pub software: String,
}

impl DngOptions {
    /// Tile size of lossless JPEG files when none is given, pixels (as
    /// Adobe's converter and rawler's writer use).
    pub const LJPEG_TILE: u32 = 256;

    /// The options the `synth` and `convert` command lines give: strips,
    /// or `tiles`-pixel tiles; lossless JPEG in tiles (256 px unless
    /// `tiles` says otherwise).
    pub fn from_cli(tiles: Option<u32>, lossless: bool) -> Self {
        let (tiling, compression) = match (tiles, lossless) {
            (Some(size), l) => (
                DngTiling::Tiles { size },
                if l {
                    DngCompression::LosslessJpeg
                } else {
                    DngCompression::None
                },
            ),
            (None, true) => (
                DngTiling::Tiles {
                    size: Self::LJPEG_TILE,
                },
                DngCompression::LosslessJpeg,
            ),
            (None, false) => (Self::default().tiling, DngCompression::None),
        };
        DngOptions {
            tiling,
            compression,
            ..Default::default()
        }
    }
}

impl Default for DngOptions {
    fn default() -> Self {
        DngOptions {
            tiling: DngTiling::Strips { rows_per_strip: 64 },
            compression: DngCompression::None,
            software: format!("rawgraph {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// XYZ (D65) -> linear sRGB, the inverse of [`color::SRGB_TO_XYZ`].
fn xyz_to_srgb() -> Mat3 {
    color::invert(&color::SRGB_TO_XYZ).unwrap_or(color::IDENTITY)
}

/// The colour matrices the file will carry (see module docs).
fn matrices_for(meta: &RawMeta) -> Result<Vec<ColorMatrix>> {
    if !meta.color_matrices.is_empty() {
        return Ok(meta.color_matrices.iter().take(2).cloned().collect());
    }
    let xyz_to_cam = match &meta.cam_to_srgb {
        Some(m) => {
            let inv = color::invert(m).ok_or_else(|| {
                Error::invalid(format!(
                    "{}: camera -> sRGB matrix is singular",
                    meta.source
                ))
            })?;
            color::mul(&inv, &xyz_to_srgb())
        }
        None => xyz_to_srgb(),
    };
    Ok(vec![ColorMatrix {
        illuminant: Illuminant::D65,
        xyz_to_cam,
    }])
}

fn matrix_rationals(m: &Mat3, source: &str) -> Result<Vec<SRational>> {
    m.iter()
        .flatten()
        .map(|&v| {
            let n = (v as f64 * MATRIX_DENOM as f64).round();
            if !n.is_finite() || n.abs() > i32::MAX as f64 {
                return Err(Error::invalid(format!(
                    "{source}: colour matrix entry {v} cannot be stored in a DNG"
                )));
            }
            Ok(SRational {
                n: n as i32,
                d: MATRIX_DENOM,
            })
        })
        .collect()
}

/// Numerators of AsShotNeutral (1 / gain, over [`NEUTRAL_DENOM`]).
fn neutral_numerators(g: [f32; 3]) -> Option<[u32; 3]> {
    let mut out = [0u32; 3];
    for (o, v) in out.iter_mut().zip(g) {
        let n = (NEUTRAL_DENOM as f64 / v as f64).round();
        if !n.is_finite() || n < 1.0 || n > u32::MAX as f64 {
            return None;
        }
        *o = n as u32;
    }
    Some(out)
}

fn black_is_integral(b: &BlackLevel) -> bool {
    b.values
        .iter()
        .all(|v| v.fract() == 0.0 && *v >= 0.0 && *v <= u32::MAX as f32)
}

/// ExposureTime as a RATIONAL: 1/n below one second, n/1000 above.
fn exposure_rational(t: f32) -> Option<Rational> {
    if !t.is_finite() || t <= 0.0 || t > 1e6 {
        return None;
    }
    Some(if t < 1.0 {
        Rational {
            n: 1,
            d: (1.0 / t as f64).round().max(1.0) as u32,
        }
    } else {
        Rational {
            n: (t as f64 * 1000.0).round() as u32,
            d: 1000,
        }
    })
}

/// The metadata exactly as a DNG reader (rawler, through
/// [`super::decode::decode_bytes`]) returns it after [`encode_dng`]: colour
/// matrices, WB gains, black/white levels and exposure time quantised to
/// their rational encodings (evaluated in f32 as rawler does), a sidecar's
/// `cam_to_srgb` turned into a ColorMatrix, `bits` = 16 (the storage
/// depth), a crop covering the whole frame dropped. Source, width, height,
/// CFA, noise profile, other crops, orientation,
/// make, model, ISO and GainMaps pass through unchanged; the opcode list
/// is the GainMaps' (other opcodes are not written).
pub fn dng_representable(meta: &RawMeta) -> Result<RawMeta> {
    let mut m = meta.clone();
    // rawler keys the matrices by illuminant (a LightSource code it does
    // not know reads as D65; the same illuminant twice keeps the later
    // matrix) and we list them by code.
    let mut by_code = std::collections::BTreeMap::new();
    for cm in matrices_for(meta)? {
        let mut q = cm.xyz_to_cam;
        for v in q.iter_mut().flatten() {
            let n = (*v as f64 * MATRIX_DENOM as f64).round() as i32;
            *v = n as f32 / MATRIX_DENOM as f32;
        }
        let code = cm.illuminant.to_exif();
        let known = rawler::imgop::xyz::Illuminant::try_from(code).is_ok();
        by_code.insert(if known { code } else { 21 }, q);
    }
    m.color_matrices = by_code
        .into_iter()
        .map(|(code, xyz_to_cam)| ColorMatrix {
            illuminant: Illuminant::from_exif(code),
            xyz_to_cam,
        })
        .collect();
    m.cam_to_srgb = None;
    // A crop covering the whole frame is no crop (readers drop it).
    m.crop = meta
        .crop
        .filter(|c| (c.x, c.y, c.width, c.height) != (0, 0, meta.width, meta.height));
    m.wb_gains = meta.wb_gains.and_then(neutral_numerators).map(|n| {
        let c: Vec<f32> = n
            .iter()
            .map(|&k| 1.0 / (k as f32 / NEUTRAL_DENOM as f32))
            .collect();
        [c[0] / c[1], 1.0, c[2] / c[1]]
    });
    if !black_is_integral(&meta.black) {
        for v in m.black.values.iter_mut() {
            let n = (*v as f64 * BLACK_DENOM as f64).round().max(0.0) as u32;
            *v = n as f32 / BLACK_DENOM as f32;
        }
    }
    let white = white_level(meta);
    m.white = [white as f32; 3];
    m.exposure_time = meta
        .exposure_time
        .and_then(exposure_rational)
        .map(|r| r.n as f32 / r.d as f32);
    m.iso = meta.iso.filter(|&i| i > 0 && i <= u16::MAX as u32);
    m.bits = super::decode::significant_bits(white as f32);
    m.provenance = super::provenance::for_dng(m.wb_gains, white as f32);
    // The file's only opcodes are the GainMaps, for lens_shading.
    m.dng_opcodes = meta
        .gain_maps
        .iter()
        .map(|_| super::DngOpcode {
            list: 2,
            id: 9,
            name: super::dng_opcodes::name(9).to_string(),
            applied: false,
            op: Some("lens_shading".into()),
        })
        .collect();
    Ok(m)
}

fn white_level(meta: &RawMeta) -> u32 {
    let w = meta.white.iter().cloned().fold(f32::MAX, f32::min);
    w.round().clamp(1.0, 65535.0) as u32
}

fn tiff_err(path: &str, e: tiff::TiffError) -> Error {
    Error::invalid(format!("{path}: cannot encode DNG: {e}"))
}

/// Encodes a Bayer frame as DNG bytes (see module docs). Samples are
/// rounded and clamped to 0..=65535.
pub fn encode_dng(frame: &RawFrame, opts: &DngOptions) -> Result<Vec<u8>> {
    let meta = &frame.meta;
    let src = meta.source.as_str();
    if let Some(c) = meta.crop.filter(|c| !c.fits_in(meta.width, meta.height)) {
        return Err(Error::invalid(format!(
            "{src}: {}",
            c.misfit(meta.width, meta.height)
        )));
    }
    frame.validate()?;
    // What the file will hold must still be a valid frame: the white level
    // is stored in 16 bits, so a black level at or above 65535 cannot be.
    let stored = dng_representable(meta)?;
    let black_max = stored.black.values.iter().cloned().fold(0.0f32, f32::max);
    if black_max >= stored.white[0] {
        return Err(Error::invalid(format!(
            "{src}: black level {black_max} is not below the white level {} a 16-bit DNG can store",
            stored.white[0]
        )));
    }
    let cfa = match meta.layout {
        PixelLayout::Bayer(p) => p,
        PixelLayout::LinearRgb => {
            return Err(Error::Unsupported {
                path: src.into(),
                reason: "the DNG writer only writes Bayer CFA frames".into(),
            })
        }
    };
    let (w, h) = (meta.width, meta.height);
    if w > u32::MAX as usize || h > u32::MAX as usize {
        return Err(Error::invalid(format!("{src}: frame too large for TIFF")));
    }
    let samples: Vec<u16> = match &frame.data {
        SensorSamples::U16(v) => v.clone(),
        SensorSamples::F32(v) => v
            .iter()
            .map(|v| v.round().clamp(0.0, 65535.0) as u16)
            .collect(),
    };
    // Uncompressed samples are stored in 16 bits; a lossless JPEG's
    // precision is what the largest sample needs.
    let bits: u8 = match opts.compression {
        DngCompression::None => 16,
        DngCompression::LosslessJpeg => {
            let max = samples.iter().copied().max().unwrap_or(0);
            (16 - max.leading_zeros() as u8).max(2)
        }
    };
    let matrices = matrices_for(meta)?;
    let t = |n: u16| Tag::from_u16_exhaustive(n);
    let e = |err| tiff_err(src, err);

    let mut buf = Cursor::new(Vec::with_capacity(2 * samples.len() + 4096));
    {
        let mut enc = TiffEncoder::new(&mut buf).map_err(e)?;
        // ISO and exposure time also go into an Exif IFD, where dcraw and
        // LibRaw look for them (rawler reads either place).
        let exposure = meta.exposure_time.and_then(exposure_rational);
        let iso = meta.iso.filter(|&i| i > 0 && i <= u16::MAX as u32);
        let exif_ifd = if exposure.is_some() || iso.is_some() {
            let mut ex = enc.extra_directory().map_err(e)?;
            if let Some(r) = exposure.clone() {
                ex.write_tag(t(33434), r).map_err(e)?; // ExposureTime
            }
            if let Some(iso) = iso {
                ex.write_tag(t(34855), iso as u16).map_err(e)?; // ISOSpeedRatings
            }
            Some(ex.finish_with_offsets().map_err(e)?.offset)
        } else {
            None
        };
        let mut dir = enc.image_directory().map_err(e)?;
        if let Some(off) = exif_ifd {
            dir.write_tag(t(34665), off).map_err(e)?; // ExifIFD
        }

        // Pixel data first, so the directory can point at it.
        match opts.tiling {
            DngTiling::Strips { .. } if opts.compression != DngCompression::None => {
                return Err(Error::invalid(format!(
                    "{src}: lossless JPEG DNGs are written in tiles (give a tile size)"
                )));
            }
            DngTiling::Strips { rows_per_strip } => {
                let rps = (rows_per_strip.max(1) as usize).min(h);
                let mut offsets = Vec::new();
                let mut counts = Vec::new();
                for rows in samples.chunks(rps * w) {
                    offsets.push(dir.write_data(rows).map_err(e)? as u32);
                    counts.push((rows.len() * 2) as u32);
                }
                dir.write_tag(t(278), rps as u32).map_err(e)?; // RowsPerStrip
                dir.write_tag(t(273), &offsets[..]).map_err(e)?; // StripOffsets
                dir.write_tag(t(279), &counts[..]).map_err(e)?; // StripByteCounts
            }
            DngTiling::Tiles { size } => {
                if size == 0 || size % 16 != 0 {
                    return Err(Error::invalid(format!(
                        "{src}: DNG tile size {size} is not a positive multiple of 16"
                    )));
                }
                let ts = size as usize;
                let mut offsets = Vec::new();
                let mut counts = Vec::new();
                if opts.compression == DngCompression::LosslessJpeg {
                    for t in ljpeg_tiles(&samples, w, h, ts, bits, src)? {
                        offsets.push(dir.write_data(&t[..]).map_err(e)? as u32);
                        counts.push(t.len() as u32);
                    }
                } else {
                    let mut tile = vec![0u16; ts * ts];
                    for ty in (0..h).step_by(ts) {
                        for tx in (0..w).step_by(ts) {
                            tile_of(&samples, w, h, tx, ty, ts, &mut tile);
                            offsets.push(dir.write_data(&tile[..]).map_err(e)? as u32);
                            counts.push((ts * ts * 2) as u32);
                        }
                    }
                }
                dir.write_tag(t(322), size).map_err(e)?; // TileWidth
                dir.write_tag(t(323), size).map_err(e)?; // TileLength
                dir.write_tag(t(324), &offsets[..]).map_err(e)?; // TileOffsets
                dir.write_tag(t(325), &counts[..]).map_err(e)?; // TileByteCounts
            }
        }

        dir.write_tag(t(254), 0u32).map_err(e)?; // NewSubFileType: main image
        dir.write_tag(t(256), w as u32).map_err(e)?; // ImageWidth
        dir.write_tag(t(257), h as u32).map_err(e)?; // ImageLength
        dir.write_tag(t(258), bits as u16).map_err(e)?; // BitsPerSample
        let compression: u16 = match opts.compression {
            DngCompression::None => 1,
            DngCompression::LosslessJpeg => 7,
        };
        dir.write_tag(t(259), compression).map_err(e)?; // Compression
        dir.write_tag(t(262), 32803u16).map_err(e)?; // Photometric: CFA
        if !meta.make.is_empty() {
            dir.write_tag(t(271), meta.make.as_str()).map_err(e)?;
        }
        if !meta.model.is_empty() {
            dir.write_tag(t(272), meta.model.as_str()).map_err(e)?;
        }
        dir.write_tag(t(274), meta.orientation.to_exif())
            .map_err(e)?;
        dir.write_tag(t(277), 1u16).map_err(e)?; // SamplesPerPixel
        dir.write_tag(t(284), 1u16).map_err(e)?; // PlanarConfiguration
        dir.write_tag(t(305), opts.software.as_str()).map_err(e)?;
        dir.write_tag(t(33421), [2u16, 2]).map_err(e)?; // CFARepeatPatternDim
        let l = cfa.layout();
        dir.write_tag(t(33422), [l[0] as u8, l[1] as u8, l[2] as u8, l[3] as u8])
            .map_err(e)?; // CFAPattern
        if let Some(r) = exposure {
            dir.write_tag(t(33434), r).map_err(e)?; // ExposureTime
        }
        if let Some(iso) = iso {
            dir.write_tag(t(34855), iso as u16).map_err(e)?; // ISOSpeedRatings
        }
        dir.write_tag(t(50706), [1u8, 4, 0, 0]).map_err(e)?; // DNGVersion
        dir.write_tag(t(50707), [1u8, 1, 0, 0]).map_err(e)?; // DNGBackwardVersion
        let unique = format!("{} {}", meta.make, meta.model);
        let unique = if unique.trim().is_empty() {
            "rawgraph"
        } else {
            unique.trim()
        };
        dir.write_tag(t(50708), unique).map_err(e)?; // UniqueCameraModel
        dir.write_tag(t(50710), [0u8, 1, 2]).map_err(e)?; // CFAPlaneColor
        dir.write_tag(t(50711), 1u16).map_err(e)?; // CFALayout: rectangular
        let b = &meta.black;
        if b.repeat_width > u16::MAX as usize || b.repeat_height > u16::MAX as usize {
            return Err(Error::invalid(format!(
                "{src}: black level pattern too large"
            )));
        }
        dir.write_tag(t(50713), [b.repeat_height as u16, b.repeat_width as u16])
            .map_err(e)?; // BlackLevelRepeatDim (rows, cols)
        if black_is_integral(b) {
            let v: Vec<u32> = b.values.iter().map(|&v| v as u32).collect();
            dir.write_tag(t(50714), &v[..]).map_err(e)?;
        } else {
            let v: Vec<Rational> = b
                .values
                .iter()
                .map(|&v| Rational {
                    n: (v as f64 * BLACK_DENOM as f64).round().max(0.0) as u32,
                    d: BLACK_DENOM,
                })
                .collect();
            dir.write_tag(t(50714), &v[..]).map_err(e)?;
        }
        dir.write_tag(t(50717), white_level(meta)).map_err(e)?; // WhiteLevel
        if !meta.gain_maps.is_empty() {
            let list = super::dng_opcodes::gain_map_list(&meta.gain_maps);
            dir.write_tag(t(51009), Undefined(&list)).map_err(e)?; // OpcodeList2
        }
        for (i, cm) in matrices.iter().enumerate() {
            let r = matrix_rationals(&cm.xyz_to_cam, src)?;
            dir.write_tag(t(50721 + i as u16), &r[..]).map_err(e)?; // ColorMatrixN
            dir.write_tag(t(50778 + i as u16), cm.illuminant.to_exif())
                .map_err(e)?; // CalibrationIlluminantN
        }
        if let Some(g) = meta.wb_gains {
            let n = neutral_numerators(g).ok_or_else(|| {
                Error::invalid(format!("{src}: white balance gains {g:?} cannot be stored"))
            })?;
            let r: Vec<Rational> = n
                .iter()
                .map(|&n| Rational {
                    n,
                    d: NEUTRAL_DENOM,
                })
                .collect();
            dir.write_tag(t(50728), &r[..]).map_err(e)?; // AsShotNeutral
        }
        if let Some(c) = meta.crop {
            dir.write_tag(t(50719), [c.x as u32, c.y as u32])
                .map_err(e)?; // DefaultCropOrigin
            dir.write_tag(t(50720), [c.width as u32, c.height as u32])
                .map_err(e)?; // DefaultCropSize
        }
        if let Some(np) = meta.noise_profile {
            let v = [np.a[0], np.b[0], np.a[1], np.b[1], np.a[2], np.b[2]];
            if v.iter().any(|x| !x.is_finite() || *x < 0.0) {
                return Err(Error::invalid(format!(
                    "{src}: noise profile {v:?} has negative or non-finite entries"
                )));
            }
            dir.write_tag(t(51041), &v[..]).map_err(e)?; // NoiseProfile
        }
        dir.finish().map_err(e)?;
    }
    Ok(buf.into_inner())
}

/// Copies the `ts` x `ts` tile at (`tx`, `ty`) of the `w` x `h` samples
/// into `tile` (row-major), zero-padding past the frame's edges.
fn tile_of(samples: &[u16], w: usize, h: usize, tx: usize, ty: usize, ts: usize, tile: &mut [u16]) {
    tile.iter_mut().for_each(|v| *v = 0);
    let n = (tx + ts).min(w) - tx;
    for y in ty..(ty + ts).min(h) {
        let dst = (y - ty) * ts;
        tile[dst..dst + n].copy_from_slice(&samples[y * w + tx..y * w + tx + n]);
    }
}

/// Every `ts` x `ts` tile of the samples (row-major tile order) as one
/// lossless JPEG of `ts / 2` x `ts` two-component pixels at `bits`
/// precision, encoded in parallel by rawler's LJPEG-92 encoder.
fn ljpeg_tiles(
    samples: &[u16],
    w: usize,
    h: usize,
    ts: usize,
    bits: u8,
    src: &str,
) -> Result<Vec<Vec<u8>>> {
    use rayon::prelude::*;
    let cols = w.div_ceil(ts);
    let n = cols * h.div_ceil(ts);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut tile = vec![0u16; ts * ts];
            tile_of(
                samples,
                w,
                h,
                (i % cols) * ts,
                (i / cols) * ts,
                ts,
                &mut tile,
            );
            rawler::ljpeg92::LjpegCompressor::new(&tile, ts / 2, ts, 2, bits, 1, 0, 0)
                .and_then(|c| c.encode())
                .map_err(|err| Error::invalid(format!("{src}: lossless JPEG encoding: {err}")))
        })
        .collect()
}

/// Writes `frame` to `path` as DNG, atomically (temp file + rename).
pub fn write_dng(frame: &RawFrame, path: &Path, opts: &DngOptions) -> Result<()> {
    let bytes = encode_dng(frame, opts)?;
    crate::output::write_atomic(path, |f| std::io::Write::write_all(f, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::CfaPattern;

    #[test]
    fn neutral_roundtrip_is_close() {
        let m = RawMeta {
            wb_gains: Some([2.1, 1.0, 1.7]),
            ..RawMeta::bayer("t", 4, 4, CfaPattern::Rggb)
        };
        let q = dng_representable(&m).unwrap();
        let g = q.wb_gains.unwrap();
        assert!(
            (g[0] - 2.1).abs() < 1e-5 && (g[2] - 1.7).abs() < 1e-5,
            "{g:?}"
        );
    }

    #[test]
    fn exposure_encodings() {
        let r = exposure_rational(0.01).unwrap();
        assert_eq!((r.n, r.d), (1, 100));
        let r = exposure_rational(2.5).unwrap();
        assert_eq!((r.n, r.d), (2500, 1000));
        assert!(exposure_rational(-1.0).is_none());
    }
}
