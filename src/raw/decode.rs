//! Adapter over the `rawler` crate: DNG and camera raws into a [`RawFrame`].
//!
//! The file's bytes first pass the pre-flight checks (`raw/preflight/`:
//! sizes and container structures that would make rawler allocate without
//! bound). rawler can panic on malformed files, sometimes inside its own
//! worker threads: every call into it runs under [`guarded`], which turns a
//! panic into a typed [`Error::Decode`] and keeps the panic text off the
//! user's terminal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rawler::decoders::{RawDecodeParams, RawLoader};
use rawler::formats::tiff::reader::TiffReader;
use rawler::formats::tiff::{GenericTiffReader, Value as TiffValue, IFD};
use rawler::rawimage::{RawImageData, RawPhotometricInterpretation};
use rawler::rawsource::RawSource;

use super::ciff::{format_timestamp, CiffInfo};
use super::guard::guarded;
use super::preflight;
use super::provenance::{decide_wb, Format};
use super::{
    check_dimensions, BlackLevel, CaptureInfo, CfaPattern, ColorMatrix, Illuminant, NoiseProfile,
    Orientation, PixelLayout, Provenance, RawFrame, RawMeta, Rect,
};
use crate::error::{Error, Result};
use crate::frame::SensorSamples;

/// Builds rawler's camera table (its ~300 KB TOML, parsed once per
/// process on the first decode: 25-40 ms of one core) on a background
/// thread, so that it overlaps reading the file and the pre-flight checks.
/// For the commands that decode raw files; a decode that starts first waits
/// for it. With `first` (the first file the command will decode) the
/// thread first reads that file's TIFF directory and builds nothing when
/// the file is a DNG that decodes without the table
/// ([`dng_without_camera_table`]): on 2 vCPUs the unneeded build slowed a
/// 12 MP `process` run by ~15 % and raised its peak memory by ~25 MB.
pub fn prewarm(first: Option<PathBuf>) {
    let spawned = std::thread::Builder::new()
        .name("rawler-cameras".into())
        .spawn(move || {
            if first.is_some_and(|p| file_is_tableless_dng(&p)) {
                return;
            }
            // A panic while building the table is reported by the decode
            // that needs it.
            let _ = guarded(|| {
                rawler::global_loader();
            });
        });
    // Without a thread the first decode builds the table itself.
    drop(spawned);
}

/// Whether the file at `path` is a DNG whose decode does not need rawler's
/// camera table, judged from its TIFF directories alone (read from the
/// file, not the pixels). Any doubt or error answers false.
fn file_is_tableless_dng(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut r = std::io::BufReader::new(f);
    let mut head = [0u8; 4];
    if std::io::Read::read_exact(&mut r, &mut head).is_err()
        || !tiff_magic(&head)
        || std::io::Seek::rewind(&mut r).is_err()
    {
        return false;
    }
    guarded(|| {
        let tiff = GenericTiffReader::new(&mut r, 0, 0, None, &[]).ok()?;
        let dng = tiff.has_entry(rawler::tags::DngTag::DNGVersion);
        Some(dng && dng_without_camera_table(tiff.root_ifd()))
    })
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// The little- and big-endian TIFF signatures (DNG and most camera raws).
fn tiff_magic(head: &[u8]) -> bool {
    head == b"II*\0" || head == b"MM\0*"
}

/// Decodes a DNG or camera raw file.
///
/// `max_mp` bounds the frame size (megapixels) and `max_bytes` the file
/// size; both are checked before the pixels are decoded.
pub fn decode_file(path: &Path, max_mp: f64, max_bytes: u64) -> Result<RawFrame> {
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if md.is_dir() {
        return Err(Error::decode(path, "is a directory, not a raw file"));
    }
    if md.len() == 0 {
        return Err(Error::decode(path, "file is empty"));
    }
    if md.len() > max_bytes {
        return Err(Error::Limit {
            path: path.into(),
            reason: format!(
                "file is {} bytes, over the limit of {max_bytes} (raise --max-file-mb)",
                md.len()
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let frame = decode_owned(Arc::new(bytes), path, max_mp);
    // The file's bytes are gone; their pages would stay resident beside
    // the frame (see `memory::release_freed`).
    crate::memory::release_freed();
    frame
}

/// Decodes raw file contents already in memory; `path` names it in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, max_mp: f64) -> Result<RawFrame> {
    decode_owned(Arc::new(bytes.to_vec()), path, max_mp)
}

/// Decodes a file's contents, which rawler reads in place (no copy); the
/// decoded integer pixels become the frame's samples as they are (u16).
fn decode_owned(file: Arc<Vec<u8>>, path: &Path, max_mp: f64) -> Result<RawFrame> {
    let bytes: &[u8] = &file;
    let shown = path.display().to_string();
    let src = preflight::check(&file, path, max_mp)?;
    // GoPro GPR: VC-5 tiles decoded here, the rest read as any DNG.
    let gpr = guarded(|| super::gpr::transcode(bytes, max_mp))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|m| Error::decode(path, m))?;
    // The rewritten offsets and counts of a hostile file can land on other
    // entries (overlapping IFD structures): the new bytes pass the same
    // pre-flight checks (found by fuzzing).
    let transcoded = gpr.is_some();
    let src = match gpr {
        Some(b) => preflight::check(&Arc::new(b), path, max_mp)?,
        None => src,
    };
    let params = RawDecodeParams::default();

    // Header first: refuse absurd dimensions before the pixels are decoded.
    // A DNG from a camera rawler's table does not list decodes identically
    // without the table (see `tableless_dng`), so it does not wait for it.
    let no_cameras = RawLoader::default();
    let decoder = match tableless_dng(&src, &no_cameras) {
        Some(d) => Ok(d),
        None => guarded(|| rawler::get_decoder(&src)).map_err(|m| Error::decode(path, m))?,
    };
    let decoder = match decoder {
        Ok(d) => d,
        // Headerless files LibRaw knows by their size (rawler has no
        // decoder for them).
        Err(e) => match super::headerless_kodak::identify(bytes.len() as u64) {
            Some(k) => return super::headerless_kodak::decode(bytes, path, k, max_mp),
            None => return Err(Error::decode(path, clean_rawler_error(&e.to_string()))),
        },
    };
    // A DNG's sizes are its TIFF directories' (checked above), and
    // rawler's header-only DNG decode decodes every pixel: skipping it
    // halves the decode time.
    if decoder.format_hint() != rawler::decoders::FormatHint::DNG {
        let header = guarded(|| decoder.raw_image(&src, &params, true))
            .map_err(|m| Error::decode(path, m))?
            .map_err(|e| Error::decode(path, clean_rawler_error(&e.to_string())))?;
        check_dimensions(&shown, header.width as u64, header.height as u64, max_mp)?;
        drop(header);
    }

    let img = guarded(|| decoder.raw_image(&src, &params, false))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|e| Error::decode(path, clean_rawler_error(&e.to_string())))?;
    let exif = guarded(|| decoder.raw_metadata(&src, &params))
        .ok()
        .and_then(|r| r.ok())
        .map(|m| m.exif);
    let mut img = img;

    let cpp = img.cpp;
    let layout = match &img.photometric {
        RawPhotometricInterpretation::Cfa(cfg) => {
            let c = &cfg.cfa;
            if c.width != 2 || c.height != 2 {
                return Err(Error::Unsupported {
                    path: path.into(),
                    reason: format!(
                        "colour filter array '{}' ({}x{}) is not a 2x2 Bayer pattern (X-Trans and others are not supported)",
                        c.name, c.width, c.height
                    ),
                });
            }
            let l = [
                c.color_at(0, 0),
                c.color_at(0, 1),
                c.color_at(1, 0),
                c.color_at(1, 1),
            ];
            let p = CfaPattern::from_layout(l).ok_or_else(|| Error::Unsupported {
                path: path.into(),
                reason: format!("colour filter array '{}' is not RGB Bayer", c.name),
            })?;
            PixelLayout::Bayer(p)
        }
        RawPhotometricInterpretation::LinearRaw if cpp == 3 => PixelLayout::LinearRgb,
        RawPhotometricInterpretation::BlackIsZero if cpp == 1 => {
            return Err(Error::Unsupported {
                path: path.into(),
                reason: "monochrome raw (no colour filter array)".into(),
            })
        }
        other => {
            return Err(Error::Unsupported {
                path: path.into(),
                reason: format!("photometric interpretation {other:?} with {cpp} samples/pixel"),
            })
        }
    };
    let spp = if layout == PixelLayout::LinearRgb {
        3
    } else {
        1
    };
    let (w, h) = (img.width, img.height);
    let expected = w
        .checked_mul(h)
        .and_then(|v| v.checked_mul(spp))
        .ok_or_else(|| Error::decode(path, "dimensions overflow"))?;
    // Integer samples stay u16 (no widening pass, half the memory); the
    // stages widen them as they read them.
    let data: SensorSamples = match &mut img.data {
        RawImageData::Integer(v) => std::mem::take(v).into(),
        RawImageData::Float(v) => std::mem::take(v).into(),
    };
    if data.len() < expected {
        return Err(Error::decode(
            path,
            format!("decoder returned {} samples for {w}x{h}", data.len()),
        ));
    }

    // Black level: rawler gives a repeat pattern (x cpp).
    let bl = &img.blacklevel;
    let black = if bl.levels.is_empty() || bl.width == 0 || bl.height == 0 {
        BlackLevel::uniform(0.0)
    } else {
        let vals: Vec<f32> = bl.levels.iter().map(|r| r.as_f32()).collect();
        if bl.cpp == 1 && vals.len() == bl.width * bl.height {
            BlackLevel {
                repeat_width: bl.width,
                repeat_height: bl.height,
                values: vals,
            }
        } else {
            BlackLevel::uniform(vals.iter().sum::<f32>() / vals.len() as f32)
        }
    };
    let wl: Vec<f32> = img.whitelevel.0.iter().map(|&v| v as f32).collect();
    let white = match wl.len() {
        0 => [((1u64 << img.bps.clamp(1, 16)) - 1) as f32; 3],
        1 | 2 => [wl[0]; 3],
        _ => [wl[0], wl[1], wl[2]],
    };

    let mut color_matrices = Vec::new();
    let mut ills: Vec<_> = img.color_matrix.iter().collect();
    ills.sort_by_key(|(k, _)| **k as u16);
    for (ill, m) in ills {
        if m.len() >= 9 && m.iter().take(9).all(|v| v.is_finite()) {
            color_matrices.push(ColorMatrix {
                illuminant: Illuminant::from_exif(*ill as u16),
                xyz_to_cam: [[m[0], m[1], m[2]], [m[3], m[4], m[5]], [m[6], m[7], m[8]]],
            });
        }
    }

    let hint = decoder.format_hint();
    let format = match hint {
        rawler::decoders::FormatHint::DNG => Format::Dng,
        rawler::decoders::FormatHint::CRW => Format::Crw,
        rawler::decoders::FormatHint::KDC if img.clean_model == "DC50" => Format::KodakNoWb,
        rawler::decoders::FormatHint::KDC if img.clean_model == "DC120" => Format::KodakDc120,
        _ => Format::Other,
    };
    let ciff = if format == Format::Crw {
        CiffInfo::read(bytes)
    } else {
        CiffInfo::default()
    };
    // WB: rawler reports multipliers normalised to an arbitrary channel and
    // a 4th entry that may be NaN; `decide_wb` normalises to green.
    let (wb_gains, wb_source, wb_why) = decide_wb(format, img.wb_coeffs, &ciff, &color_matrices);
    let (white, white_why) = white_level(&img, white, format, &data, hint);
    let black_why = black_source(&img, format);

    // rawler keeps DNG raw-IFD tags out of `dng_tags`; read NoiseProfile
    // from the raw IFD itself (DNG only; other decoders return None).
    let noise_profile = noise_profile_from_tags(&img.dng_tags).or_else(|| {
        let ifd = guarded(|| decoder.ifd(rawler::decoders::WellKnownIFD::Raw))
            .ok()?
            .ok()??;
        let entry = ifd.get_entry(rawler::tags::DngTag::NoiseProfile)?;
        noise_profile_from_tags(&HashMap::from([(51041u16, entry.value.clone())]))
    });

    let mut meta = RawMeta {
        source: shown,
        width: w,
        height: h,
        layout,
        black,
        white,
        bits: significant_bits(white[0].max(white[1]).max(white[2])),
        wb_gains,
        color_matrices,
        cam_to_srgb: None,
        crop: None,
        orientation: Orientation::from_exif(img.orientation.to_u16()),
        noise_profile,
        make: img.clean_make.clone(),
        model: img.clean_model.clone(),
        iso: exif
            .as_ref()
            .and_then(|e| e.iso_speed_ratings.map(u32::from).or(e.iso_speed))
            .filter(|&v| v > 0),
        exposure_time: exif
            .as_ref()
            .and_then(|e| e.exposure_time.map(|r| r.n as f32 / r.d.max(1) as f32))
            .filter(|&v| v > 0.0)
            .or(ciff.exposure_time),
        capture: capture_info(exif.as_ref(), &ciff),
        pixel_aspect: pixel_aspect(&img.camera.default_scale.0),
        provenance: Provenance {
            wb: wb_source,
            wb_why,
            black: black_why,
            white: white_why,
        },
        dng_opcodes: Vec::new(),
        gain_maps: Vec::new(),
    };
    if meta.iso.is_none() {
        meta.iso = ciff.iso;
    }
    if transcoded {
        meta.provenance.white.push_str(&format!(
            "; GoPro VC-5 tiles decoded to {} bits (inverse-log curve)",
            meta.bits
        ));
    }
    let mut frame_data = data;
    frame_data.truncate(expected);
    if format == Format::Dng {
        apply_opcode_list2(decoder.as_ref(), &mut meta, &mut frame_data, (w, h, spp));
        meta.dng_opcodes = dng_opcodes(decoder.as_ref());
        meta.gain_maps = opcode_list(decoder.as_ref(), rawler::tags::DngTag::OpcodeList2)
            .map(|l| super::dng_opcodes::parse_gain_maps(&l))
            .unwrap_or_default();
        if let Some(a) = dng_default_scale(decoder.as_ref()) {
            meta.pixel_aspect = a;
        }
    }

    // Crop to the active area (drops masked pixels), keep the default crop
    // as metadata relative to it.
    let active = img
        .active_area
        .map(|r| Rect {
            x: r.p.x,
            y: r.p.y,
            width: r.d.w,
            height: r.d.h,
        })
        .filter(|r| r.fits_in(w, h));
    if let Some(a) = active {
        if (a.x, a.y, a.width, a.height) != (0, 0, w, h) {
            frame_data = frame_data.window(w, spp, (a.x, a.y), (a.width, a.height));
            if let PixelLayout::Bayer(p) = meta.layout {
                meta.layout = PixelLayout::Bayer(p.shifted(a.x, a.y));
            }
            meta.black = shift_black(&meta.black, a.x, a.y);
            meta.width = a.width;
            meta.height = a.height;
        }
    }
    // rawler's DC120 colour matrix is a placeholder (sRGB "for lack of a
    // better one"); dcraw / LibRaw carry a measured camera -> sRGB matrix
    // for this camera (rows sum to 1), applied after white balance.
    if (meta.make.as_str(), meta.model.as_str()) == ("Kodak", "DC120") {
        meta.cam_to_srgb = Some(KODAK_DC120_CAM_TO_SRGB);
    }
    // Visible-area corrections where rawler's camera table keeps rows that
    // LibRaw's (and the camera's) visible area does not.
    if let Some(bottom) = extra_bottom_rows(&meta.make, &meta.model) {
        if meta.height > bottom + 2 {
            meta.height -= bottom;
            frame_data.truncate(meta.width * meta.height * spp);
        }
    }
    let (ox, oy) = active.map(|a| (a.x, a.y)).unwrap_or((0, 0));
    meta.crop = img.crop_area.and_then(|r| {
        let (x, y) = (r.p.x.checked_sub(ox)?, r.p.y.checked_sub(oy)?);
        let rect = Rect {
            x,
            y,
            width: r.d.w,
            height: r.d.h,
        };
        let full = (0, 0, meta.width, meta.height) == (x, y, r.d.w, r.d.h);
        (rect.fits_in(meta.width, meta.height) && !full).then_some(rect)
    });
    // Kodak DC50: rawler's table crops 6/4 px per side, but the whole
    // 768x512 frame is picture (LibRaw's visible area, and its edges hold
    // no masked or garbage pixels).
    if (meta.make.as_str(), meta.model.as_str()) == ("Kodak", "DC50") {
        meta.crop = None;
    }
    // Kodak DC120: rawler's table crops 8 px per side and stretches by
    // 80/52 (832x960 -> 1280x960); the whole 848x976 frame is picture
    // (LibRaw's visible area; its edge rows and columns follow the scene),
    // shown at 4:3 as LibRaw does: pixel aspect 976 / 0.75 / 848 (1.5346,
    // 1301x976).
    if (meta.make.as_str(), meta.model.as_str()) == ("Kodak", "DC120") {
        meta.crop = None;
        meta.pixel_aspect = dc120_pixel_aspect(meta.width, meta.height);
    }

    let frame = RawFrame {
        meta,
        data: frame_data,
    };
    frame.validate()?;
    Ok(frame)
}

/// A decoder for a DNG that decodes without rawler's camera table
/// ([`dng_without_camera_table`]), built on `empty` (a loader with no
/// cameras) so that it never waits for the table; `None` for every other
/// file, which then goes through rawler's global loader.
fn tableless_dng<'a>(
    src: &RawSource,
    empty: &'a RawLoader,
) -> Option<Box<dyn rawler::decoders::Decoder + 'a>> {
    if !tiff_magic(src.buf().get(..4)?) {
        return None;
    }
    let decoder = guarded(|| empty.get_decoder(src)).ok()?.ok()?;
    if decoder.format_hint() != rawler::decoders::FormatHint::DNG {
        return None;
    }
    let root = guarded(|| decoder.ifd(rawler::decoders::WellKnownIFD::Root))
        .ok()?
        .ok()??;
    dng_without_camera_table(&root).then_some(decoder)
}

/// Whether a DNG with root directory `ifd0` decodes the same without
/// rawler's camera table as with it.
///
/// rawler's DNG decoder uses the table (~300 KB of TOML, built once per
/// process: 25-40 ms of one core) only to look the camera up by IFD0's
/// Make and Model (modes "dng" and ""): on a hit it copies the table's
/// clean names, hints and parameters into the image; on a miss it keeps
/// the file's own. A model whose quoted string appears nowhere in the
/// table's text cannot be a hit (every model and model alias there is a
/// quoted TOML string), so such a file decodes identically without the
/// table. Models TOML might write escaped (quotes, backslashes, control or
/// non-ASCII characters) and an absent model are not judged: false.
fn dng_without_camera_table(ifd0: &IFD) -> bool {
    let model = ifd0
        .get_entry(rawler::tags::TiffCommonTag::Model)
        .and_then(|e| e.value.as_string())
        .map(|m| m.trim_end())
        .unwrap_or("");
    model_absent_from_table(model, rawler::decoders::CAMERAS_TOML)
}

/// Whether `model` is certainly not a model or model alias of the camera
/// table `toml`: it is non-empty printable ASCII with no quote or
/// backslash, and appears in the text neither as a basic ("...") nor as a
/// literal ('...') string.
fn model_absent_from_table(model: &str, toml: &str) -> bool {
    let plain = !model.is_empty()
        && model
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\' && b != b'\'');
    plain
        && [format!("\"{model}\""), format!("'{model}'")]
            .iter()
            .all(|q| memchr::memmem::find(toml.as_bytes(), q.as_bytes()).is_none())
}

/// Pixel aspect from the raw IFD's DefaultScale (h, v), which rawler does
/// not read.
fn dng_default_scale(decoder: &(dyn rawler::decoders::Decoder + '_)) -> Option<f32> {
    let ifd = guarded(|| decoder.ifd(rawler::decoders::WellKnownIFD::Raw))
        .ok()?
        .ok()??;
    let e = ifd.get_entry(rawler::tags::DngTag::DefaultScale)?;
    match &e.value {
        TiffValue::Rational(r) if r.len() >= 2 => {
            let a = pixel_aspect(&[[r[0].n, r[0].d], [r[1].n, r[1].d]]);
            Some(a)
        }
        _ => None,
    }
}

/// Applies the raw IFD's OpcodeList2 MapPolynomials (rawler skips them)
/// and notes it in the white-level provenance.
fn apply_opcode_list2(
    decoder: &(dyn rawler::decoders::Decoder + '_),
    meta: &mut RawMeta,
    data: &mut SensorSamples,
    dims: (usize, usize, usize),
) {
    let Some(list) = opcode_list(decoder, rawler::tags::DngTag::OpcodeList2) else {
        return;
    };
    let (maps, other) = super::dng_opcodes::parse(&list);
    if !maps.is_empty() {
        let black = meta.black.clone();
        // The polynomials give fractional DN: the samples become floats.
        let data = data.f32_mut();
        super::dng_opcodes::apply(&maps, data, dims, &|y, x| black.at(y, x), meta.white);
        meta.provenance.white.push_str(&format!(
            "; OpcodeList2: {} MapPolynomial applied",
            maps.len()
        ));
    }
    // GainMaps (9) are applied by the lens_shading stage.
    let other: Vec<u32> = other.into_iter().filter(|&id| id != 9).collect();
    if !other.is_empty() {
        meta.provenance
            .white
            .push_str(&format!("; OpcodeList2 opcodes not applied: {other:?}"));
    }
}

/// The bytes of one of the raw IFD's opcode lists, when present.
fn opcode_list(
    decoder: &(dyn rawler::decoders::Decoder + '_),
    tag: rawler::tags::DngTag,
) -> Option<Vec<u8>> {
    let ifd = guarded(|| decoder.ifd(rawler::decoders::WellKnownIFD::Raw))
        .ok()?
        .ok()??;
    ifd.get_entry(tag).and_then(|e| match &e.value {
        TiffValue::Undefined(b) | TiffValue::Byte(b) => Some(b.clone()),
        _ => None,
    })
}

/// The opcodes of the raw IFD's OpcodeList1/2/3, marking the
/// MapPolynomials of list 2 that [`apply_opcode_list2`] applied and the
/// GainMaps of list 2 that the `lens_shading` stage applies.
fn dng_opcodes(decoder: &(dyn rawler::decoders::Decoder + '_)) -> Vec<super::DngOpcode> {
    use rawler::tags::DngTag;
    let mut out = Vec::new();
    for (list, tag) in [
        (1u8, DngTag::OpcodeList1),
        (2, DngTag::OpcodeList2),
        (3, DngTag::OpcodeList3),
    ] {
        let Some(bytes) = opcode_list(decoder, tag) else {
            continue;
        };
        let mut maps_left = if list == 2 {
            super::dng_opcodes::parse(&bytes).0.len()
        } else {
            0
        };
        let mut gain_maps_left = if list == 2 {
            super::dng_opcodes::parse_gain_maps(&bytes).len()
        } else {
            0
        };
        for id in super::dng_opcodes::ids(&bytes) {
            let applied = id == 8 && maps_left > 0;
            if applied {
                maps_left -= 1;
            }
            // Well-formed GainMaps of list 2 go to the lens_shading stage.
            let op = (id == 9 && gain_maps_left > 0).then(|| {
                gain_maps_left -= 1;
                "lens_shading".to_string()
            });
            out.push(super::DngOpcode {
                list,
                id,
                name: super::dng_opcodes::name(id).to_string(),
                applied,
                op,
            });
        }
    }
    out
}

/// Width / height of a displayed pixel from a DefaultScale
/// `[[h_num, h_den], [v_num, v_den]]`; 1 when absent or absurd.
fn pixel_aspect(s: &[[u32; 2]; 2]) -> f32 {
    let r = |v: [u32; 2]| (v[1] != 0).then(|| v[0] as f32 / v[1] as f32);
    match (r(s[0]), r(s[1])) {
        (Some(h), Some(v)) if v > 0.0 && (0.25..=4.0).contains(&(h / v)) => h / v,
        _ => 1.0,
    }
}

/// The pixel aspect (width / height of one pixel) that shows a
/// `width` x `height` frame at 4:3, as LibRaw's DC120 entry
/// (`height / 0.75 / width`): 1.5346 for the DC120's 848x976.
fn dc120_pixel_aspect(width: usize, height: usize) -> f32 {
    if width == 0 {
        return 1.0;
    }
    let a = height as f32 / 0.75 / width as f32;
    if (0.25..=4.0).contains(&a) {
        a
    } else {
        1.0
    }
}

/// Kodak DC120 camera RGB -> linear sRGB (row-major), as dcraw / LibRaw
/// use it (`raw-identify -v`: "Camera2RGB matrix").
const KODAK_DC120_CAM_TO_SRGB: [[f32; 3]; 3] = [
    [1.4815, -0.3210, -0.1605],
    [-0.0495, 1.2640, -0.2145],
    [0.0545, -0.3985, 1.3440],
];

/// Rows at the bottom of the active area that are not picture, per camera
/// (LibRaw's visible area): Canon EOS D30 CRW, active area 1450 rows,
/// visible 1448 (LibRaw: top margin 6, bottom margin 2).
fn extra_bottom_rows(make: &str, model: &str) -> Option<usize> {
    match (make, model) {
        ("Canon", "EOS D30") => Some(2),
        _ => None,
    }
}

/// Significant bits of samples whose saturation level is `white` DN
/// (1023 -> 10, 255 -> 8, 510 -> 9, 16383 -> 14), at least 1, at most 32.
pub fn significant_bits(white: f32) -> u32 {
    if !white.is_finite() || white < 1.0 {
        return 1;
    }
    let w = white.round().min(u32::MAX as f32) as u64;
    (64 - w.leading_zeros()).clamp(1, 32)
}

/// The white level and where it came from. rawler's camera table wins over
/// what its DC120 decoder found, so a JPEG-compressed Kodak DC120 (green
/// samples doubled, red/blue the sum of two 8-bit samples: every green
/// sample is even) is read at 255 where LibRaw's `kodak_jpeg_load_raw`
/// uses 510; that is corrected here.
fn white_level(
    img: &rawler::RawImage,
    white: [f32; 3],
    format: Format,
    data: &SensorSamples,
    hint: rawler::decoders::FormatHint,
) -> ([f32; 3], String) {
    if format == Format::KodakDc120 && white[0] <= 255.0 {
        let w = img.width;
        let cfa = match &img.photometric {
            RawPhotometricInterpretation::Cfa(c) => Some(c.cfa.clone()),
            _ => None,
        };
        let jpeg = cfa.is_some_and(|c| {
            let mut any_odd = false;
            let mut over = false;
            for (i, v) in (0..data.len()).filter_map(|i| Some((i, data.get(i)?))) {
                over |= v > 255.0;
                if c.color_at(i / w.max(1), i % w.max(1)) == 1 && (v as u32) & 1 == 1 {
                    any_odd = true;
                    break;
                }
            }
            over || !any_odd
        });
        if jpeg {
            return (
                [510.0; 3],
                "510: JPEG-compressed DC120 (green doubled, red/blue sums of two 8-bit \
                 samples), as LibRaw's kodak_jpeg_load_raw"
                    .into(),
            );
        }
    }
    if hint == rawler::decoders::FormatHint::DNG {
        return (white, super::provenance::dng_white(white[0]));
    }
    let from = if img.camera.whitelevel.is_some() {
        "rawler's camera table"
    } else {
        "the decoder"
    };
    (white, format!("{} from {from}", white[0]))
}

/// Where rawler's black level came from.
fn black_source(img: &rawler::RawImage, format: Format) -> String {
    if format == Format::Dng {
        super::provenance::DNG_BLACK.into()
    } else if img.camera.blacklevel.is_some() {
        "rawler's camera table".into()
    } else if !img.blackareas.is_empty() {
        format!(
            "measured on {} masked border area(s) of the sensor",
            img.blackareas.len()
        )
    } else {
        "the decoder (0 when the format has none)".into()
    }
}

/// Aperture, focal length, lens and time from EXIF, else from the CRW
/// heap.
fn capture_info(exif: Option<&rawler::exif::Exif>, ciff: &CiffInfo) -> CaptureInfo {
    let ratio = |r: &rawler::formats::tiff::Rational| {
        (r.d != 0)
            .then(|| r.n as f32 / r.d as f32)
            .filter(|v| *v > 0.0)
    };
    let mut c = CaptureInfo::default();
    if let Some(e) = exif {
        c.f_number = e.fnumber.as_ref().and_then(ratio).or_else(|| {
            // APEX aperture value: f = 2^(Av / 2).
            e.aperture_value
                .as_ref()
                .and_then(ratio)
                .map(|av| 2f32.powf(av / 2.0))
        });
        c.focal_length_mm = e.focal_length.as_ref().and_then(ratio);
        let lens = [e.lens_make.as_deref(), e.lens_model.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        c.lens = (!lens.is_empty()).then_some(lens);
        c.timestamp = e
            .date_time_original
            .clone()
            .or_else(|| e.create_date.clone())
            .or_else(|| e.modify_date.clone())
            .map(|s| s.trim_end_matches('\0').trim().to_string())
            .filter(|s| !s.is_empty());
    }
    c.f_number = c.f_number.or(ciff.f_number);
    c.focal_length_mm = c.focal_length_mm.or(ciff.focal_length_mm);
    c.timestamp = c.timestamp.or_else(|| ciff.timestamp.map(format_timestamp));
    c
}

fn shift_black(b: &BlackLevel, dx: usize, dy: usize) -> BlackLevel {
    let (rw, rh) = (b.repeat_width, b.repeat_height);
    let mut values = Vec::with_capacity(b.values.len());
    for y in 0..rh {
        for x in 0..rw {
            values.push(b.at(y + dy, x + dx));
        }
    }
    BlackLevel {
        repeat_width: rw,
        repeat_height: rh,
        values,
    }
}

/// Reads the DNG NoiseProfile tag (51041): pairs (S, O) per colour plane,
/// or one pair for all planes.
fn noise_profile_from_tags(tags: &HashMap<u16, TiffValue>) -> Option<NoiseProfile> {
    let v = tiff_f64s(tags.get(&51041)?)?;
    if v.len() < 2 || v.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return None;
    }
    let pair = |i: usize| -> (f64, f64) {
        if v.len() >= 2 * (i + 1) {
            (v[2 * i], v[2 * i + 1])
        } else {
            (v[0], v[1])
        }
    };
    let (r, g, b) = (pair(0), pair(1), pair(2));
    Some(NoiseProfile {
        a: [r.0, g.0, b.0],
        b: [r.1, g.1, b.1],
    })
}

/// A numeric TIFF value as f64s.
pub(crate) fn tiff_f64s(v: &TiffValue) -> Option<Vec<f64>> {
    Some(match v {
        TiffValue::Byte(x) => x.iter().map(|&a| a as f64).collect(),
        TiffValue::Short(x) => x.iter().map(|&a| a as f64).collect(),
        TiffValue::Long(x) => x.iter().map(|&a| a as f64).collect(),
        TiffValue::SShort(x) => x.iter().map(|&a| a as f64).collect(),
        TiffValue::SLong(x) => x.iter().map(|&a| a as f64).collect(),
        TiffValue::Rational(x) => x.iter().map(|r| r.n as f64 / (r.d.max(1)) as f64).collect(),
        TiffValue::SRational(x) => x
            .iter()
            .map(|r| r.n as f64 / (if r.d == 0 { 1 } else { r.d }) as f64)
            .collect(),
        TiffValue::Float(x) => x.iter().map(|&a| a as f64).collect(),
        TiffValue::Double(x) => x.clone(),
        _ => return None,
    })
}

/// rawler errors can be long and multi-line; keep the first line.
fn clean_rawler_error(s: &str) -> String {
    let first = s.lines().next().unwrap_or("unknown error").trim();
    if first.is_empty() {
        "unknown decoder error".into()
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::dng_write::{encode_dng, DngOptions};

    #[test]
    fn models_absent_from_a_table() {
        let toml = "[[cameras]]\nmake = \"Canon\"\nmodel = \"Canon EOS 5D\"\n\
                    model_aliases = [[\"EOS 5D Classic\", \"5D\"]]\n\
                    [[cameras]]\nmodel = 'Literal Cam'\n";
        for listed in ["Canon EOS 5D", "EOS 5D Classic", "5D", "Literal Cam"] {
            assert!(!model_absent_from_table(listed, toml), "{listed}");
        }
        for unlisted in ["rawgraph", "EOS", "Canon EOS 5D Mark II"] {
            assert!(model_absent_from_table(unlisted, toml), "{unlisted}");
        }
        // Not judged: empty, or characters TOML may write escaped.
        for odd in ["", "a\"b", "a\\b", "caf\u{e9}", "tab\there", "it's"] {
            assert!(!model_absent_from_table(odd, toml), "{odd:?}");
        }
        // rawler's own table lists this model.
        assert!(!model_absent_from_table(
            "Canon EOS 5D Mark II",
            rawler::decoders::CAMERAS_TOML
        ));
    }

    fn dng(make: &str, model: &str) -> Vec<u8> {
        let (w, h) = (64, 48);
        let mut meta = RawMeta::bayer("t", w, h, CfaPattern::Rggb);
        meta.white = [16383.0; 3];
        meta.bits = 14;
        meta.wb_gains = Some([2.0, 1.0, 1.5]);
        meta.make = make.into();
        meta.model = model.into();
        let data = (0..w * h).map(|i| (64 + (i * 37) % 16000) as f32).collect();
        let frame = RawFrame { meta, data };
        encode_dng(&frame, &DngOptions::default()).unwrap()
    }

    /// A DNG of an unlisted camera decodes without the table to exactly
    /// what rawler's global loader decodes; a listed one takes the table
    /// (its clean model name comes back).
    #[test]
    fn tableless_dng_decodes_as_the_global_loader() {
        let dir = tempfile::tempdir().unwrap();
        for (make, model, tableless) in [
            ("rawgraph", "test cam", true),
            ("Canon", "Canon EOS 5D Mark II", false),
        ] {
            let bytes = dng(make, model);
            let path = dir.path().join(format!("{tableless}.dng"));
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(file_is_tableless_dng(&path), tableless, "{model}");
            let src = RawSource::new_from_shared_vec(Arc::new(bytes.clone()));
            let empty = RawLoader::default();
            assert_eq!(tableless_dng(&src, &empty).is_some(), tableless);
            let params = RawDecodeParams::default();
            let global = rawler::get_decoder(&src)
                .unwrap()
                .raw_image(&src, &params, false)
                .unwrap();
            if tableless {
                let d = tableless_dng(&src, &empty).unwrap();
                let img = d.raw_image(&src, &params, false).unwrap();
                assert_eq!(format!("{img:?}"), format!("{global:?}"));
            }
            let frame = decode_bytes(&bytes, &path, 100.0).unwrap();
            assert_eq!(frame.meta.model, global.clean_model);
            let want = if tableless { model } else { "EOS 5D Mark II" };
            assert_eq!(frame.meta.model, want);
        }
        // Not TIFF, or not a file: the table is built.
        let junk = dir.path().join("junk.dng");
        std::fs::write(&junk, b"not a raw file").unwrap();
        assert!(!file_is_tableless_dng(&junk));
        assert!(!file_is_tableless_dng(dir.path()));
    }
}
