//! Adapter over the `rawler` crate: DNG and camera raws into a [`RawFrame`].
//!
//! rawler can panic on malformed files, sometimes inside its own worker
//! threads. Every call into it runs under [`guarded`], which turns a panic
//! into a typed [`Error::Decode`] and keeps the panic text off the user's
//! terminal.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use rawler::decoders::RawDecodeParams;
use rawler::formats::tiff::Value as TiffValue;
use rawler::rawimage::{RawImageData, RawPhotometricInterpretation};
use rawler::rawsource::RawSource;

use super::ciff::{format_timestamp, CiffInfo};
use super::provenance::{decide_wb, Format};
use super::{
    check_dimensions, BlackLevel, CaptureInfo, CfaPattern, ColorMatrix, Illuminant, NoiseProfile,
    Orientation, PixelLayout, Provenance, RawFrame, RawMeta, Rect,
};
use crate::error::{Error, Result};

/// Number of guarded sections running right now (any thread).
static GUARDED: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Runs `f`, converting a panic into `Err(message)`. While any guarded
/// section runs, panic messages (also from helper threads a decoder spawns)
/// are not printed; panics elsewhere still print as usual.
pub fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
    GUARDED.fetch_add(1, Ordering::SeqCst);
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.fetch_sub(1, Ordering::SeqCst);
    r.map_err(|e| {
        let msg = e
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("decoder crashed ({})", msg.lines().next().unwrap_or(""))
    })
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
    decode_bytes(&bytes, path, max_mp)
}

/// Decodes raw file contents already in memory; `path` names it in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, max_mp: f64) -> Result<RawFrame> {
    let shown = path.display().to_string();
    // rawler's DNG decoder decodes (and allocates) the pixels even when
    // asked for the header only, so TIFF image sizes are checked here.
    let sizes = check_tiff_entries(bytes).map_err(|m| Error::decode(path, m))?;
    for (w, h) in sizes.into_iter().filter(|&(w, h)| w > 0 && h > 0) {
        check_dimensions(&shown, w, h, max_mp)?;
    }
    let src = RawSource::new_from_slice(bytes);
    guarded(|| check_bmff_boxes(&src, bytes))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|m| Error::decode(path, m))?;
    let params = RawDecodeParams::default();
    let rawler_sizes = guarded(|| check_rawler_tiff(&src, bytes))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|m| Error::decode(path, m))?;
    // rawler allocates the pixels even for a header-only decode; where the
    // size is not in a TIFF directory (IIQ maker note, CRW heaps, QuickTake
    // and ARRIRAW headers) it is read and checked first.
    let found = rawler_sizes
        .into_iter()
        .chain(ciff_sensor_size(bytes))
        .chain(header_frame_size(&src, bytes));
    for (w, h) in found.filter(|&(w, h)| w > 0 && h > 0) {
        check_dimensions(&shown, w, h, max_mp)?;
    }

    // Header first: refuse absurd dimensions before the pixels are decoded.
    let decoder = guarded(|| rawler::get_decoder(&src))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|e| Error::decode(path, clean_rawler_error(&e.to_string())))?;
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
    let data: Vec<f32> = match &img.data {
        RawImageData::Integer(v) => {
            use rayon::prelude::*;
            v.par_iter().map(|&x| x as f32).collect()
        }
        RawImageData::Float(v) => v.clone(),
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
        rawler::decoders::FormatHint::KDC
            if matches!(img.clean_model.as_str(), "DC120" | "DC50") =>
        {
            Format::KodakNoWb
        }
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
            let mut out = Vec::with_capacity(a.width * a.height * spp);
            for y in a.y..a.y + a.height {
                let row = (y * w + a.x) * spp;
                out.extend_from_slice(&frame_data[row..row + a.width * spp]);
            }
            frame_data = out;
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

    let frame = RawFrame {
        meta,
        data: frame_data,
    };
    frame.validate()?;
    Ok(frame)
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
    data: &mut [f32],
    dims: (usize, usize, usize),
) {
    let Some(list) = opcode_list(decoder, rawler::tags::DngTag::OpcodeList2) else {
        return;
    };
    let (maps, other) = super::dng_opcodes::parse(&list);
    if !maps.is_empty() {
        let black = meta.black.clone();
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
    data: &[f32],
    hint: rawler::decoders::FormatHint,
) -> ([f32; 3], String) {
    if format == Format::KodakNoWb && img.clean_model == "DC120" && white[0] <= 255.0 {
        let w = img.width;
        let cfa = match &img.photometric {
            RawPhotometricInterpretation::Cfa(c) => Some(c.cfa.clone()),
            _ => None,
        };
        let jpeg = cfa.is_some_and(|c| {
            let mut any_odd = false;
            let mut over = false;
            for (i, &v) in data.iter().enumerate() {
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

/// Refuses files with a TIFF directory entry that claims more data than
/// the whole file holds.
///
/// rawler allocates `count x size` for every entry before it reads the
/// data, so a 100-byte file with a DOUBLE entry of count 2^32 - 1 asks for
/// 32 GiB; when that allocation fails the process aborts, which no panic
/// guard can catch (found by fuzzing, in DNG and in the TIFF embedded in
/// MRW). Walks the TIFF at the start of the file (any magic: ORF and RW2
/// use their own) and every embedded `II*\0` / `MM\0*` header (MRW, RAF,
/// CR3 boxes, maker notes), following IFD chains and the SubIFD, Exif, GPS
/// and Interoperability IFDs. Anything it cannot follow is left to rawler.
///
/// Returns the ImageWidth x ImageLength of every directory it walked.
fn check_tiff_entries(bytes: &[u8]) -> std::result::Result<Vec<(u64, u64)>, String> {
    let mut sizes = Vec::new();
    let mut dng = false;
    if let Some(m) = bytes.get(..2).filter(|m| *m == b"II" || *m == b"MM") {
        dng = walk_tiff(bytes, 0, m == b"II", true, &mut sizes)?;
    }
    // Embedded TIFF headers (maker notes, vendor blocks): rawler's DNG
    // decoder reads none of them, and in a DNG they are most likely pixel
    // data (our own writer stores arbitrary samples), so a DNG skips them.
    let mut bases = Vec::new();
    for (i, w) in bytes.windows(4).enumerate().skip(1) {
        // CR3 metadata boxes: rawler takes any II/MM there as a TIFF
        // (magic 42, 85 or Olympus' two), so a box's data is a base too.
        let cmt = i >= 4
            && matches!(&bytes[i - 4..i], b"CMT1" | b"CMT2" | b"CMT3" | b"CMT4")
            && (w.starts_with(b"II") || w.starts_with(b"MM"));
        if ((w == b"II*\0" || w == b"MM\0*") && !dng) || cmt {
            bases.push(i);
            if bases.len() > 256 {
                break;
            }
        }
    }
    for base in bases {
        let le = bytes.get(base..base + 2) == Some(b"II");
        // CR3 metadata boxes (CMT1..CMT4) hold a TIFF rawler always parses.
        let cmt = base >= 4
            && matches!(
                &bytes[base - 4..base],
                b"CMT1" | b"CMT2" | b"CMT3" | b"CMT4"
            );
        walk_tiff(bytes, base, le, cmt, &mut sizes)?;
    }
    // Fujifilm RAF: the TIFF the header points at (offset 84) is parsed
    // whatever its first directory looks like.
    if bytes.starts_with(b"FUJIFILM") {
        if let Some(b) = bytes.get(84..88) {
            let base = (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).saturating_add(12);
            if let Some(m) = bytes.get(base..base.saturating_add(2)) {
                walk_tiff(bytes, base, m == b"II", true, &mut sizes)?;
            }
        }
    }
    // Minolta MRW: rawler parses the TTW block as a big-endian TIFF
    // whatever its header says.
    if bytes.get(..4) == Some(b"\0MRM") {
        let be32 = |o: usize| -> Option<usize> {
            let b = bytes.get(o..o.checked_add(4)?)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let data_offset = be32(4).map_or(0, |v| v.saturating_add(8));
        // The last TTW block wins; with none rawler reads from offset 0.
        let (mut pos, mut tiff) = (8usize, 0usize);
        while pos.saturating_add(20) < data_offset {
            let (Some(tag), Some(n)) = (be32(pos), be32(pos + 4)) else {
                break;
            };
            if tag == 0x0054_5457 {
                tiff = pos + 8;
            }
            // PRD block: the frame size rawler allocates for (height at
            // +16, width at +18), even for the header-only decode.
            if tag == 0x0050_5244 {
                let be16 = |o: usize| read_u16(bytes, o as u64, false);
                if let (Some(h), Some(w)) = (be16(pos + 16), be16(pos + 18)) {
                    sizes.push((w as u64, h as u64));
                }
            }
            pos = pos.saturating_add(n).saturating_add(8);
        }
        walk_tiff(bytes, tiff, false, true, &mut sizes)?;
    }
    Ok(sizes)
}

/// ISO BMFF (CR3): refuses a box whose size is smaller than its header
/// or reaches past its parent (or the file), in every container rawler's
/// BMFF reader walks.
///
/// rawler steps from box to box by seeking to `offset + size`: a size of 0
/// (ISO's "to the end of the file") or one that wraps around makes it read
/// the same box forever, pushing to a list until memory runs out (found by
/// fuzzing). Payload offsets of the containers follow rawler's readers.
///
/// rawler tries its BMFF reader on every file no magic number claimed
/// first (MRW, RAF, ARRI, QuickTake, CIFF, X3F), `ftyp` or not, so those
/// files are walked too, but only the boxes that stall the reader (size 0,
/// wrap-around) are refused there: a TIFF's first "box" is `II*\0`, about
/// 1.2 GB long, which ends the walk at once.
fn check_bmff_boxes(src: &RawSource, bytes: &[u8]) -> std::result::Result<(), String> {
    use rawler::decoders::{ari::is_ari, mrw::is_mrw, qtk::is_qtk, raf::is_raf, x3f::is_x3f};
    use rawler::formats::ciff::is_ciff;
    // The probes rawler's get_decoder runs before its BMFF reader.
    let claimed =
        is_mrw(src) || is_raf(src) || is_ari(src) || is_qtk(src) || is_ciff(src) || is_x3f(src);
    if claimed {
        return Ok(());
    }
    let strict = bytes.get(4..8) == Some(b"ftyp");
    walk_boxes(bytes, 0, bytes.len() as u64, 0, strict, b"")
}

const CR3_DESC_UUID: [u8; 16] = [
    0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0, 0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48,
];

/// `strict`: the file says it is BMFF (`ftyp`), so every box must fit its
/// header and parent; otherwise only a box that stalls rawler is refused.
/// `parent`: the type of the enclosing box (empty at the top level).
fn walk_boxes(
    bytes: &[u8],
    start: u64,
    end: u64,
    depth: u32,
    strict: bool,
    parent: &[u8],
) -> std::result::Result<(), String> {
    let be = |o: u64, n: usize| -> Option<u64> {
        let o = usize::try_from(o).ok()?;
        let b = bytes.get(o..o.checked_add(n)?)?;
        Some(b.iter().fold(0u64, |a, &x| (a << 8) | x as u64))
    };
    let mut pos = start;
    // Fewer than 8 bytes left: rawler's read fails cleanly.
    while pos.saturating_add(8) <= end {
        let (Some(size32), Some(typ)) = (be(pos, 4), bytes.get(pos as usize + 4..pos as usize + 8))
        else {
            return Ok(());
        };
        let name = String::from_utf8_lossy(typ).escape_debug().to_string();
        let mut header = 8u64;
        let mut size = size32;
        if size32 == 1 {
            let Some(large) = be(pos + 8, 8) else {
                return Ok(());
            };
            size = large;
            header += 8;
        }
        let uuid = if typ == b"uuid" {
            let u = bytes.get(pos as usize + header as usize..pos as usize + header as usize + 16);
            header += 16;
            u
        } else {
            None
        };
        // Inside moov, rawler reads a uuid box other than the CR3
        // description by its header only and goes on parsing boxes from
        // its payload (found by fuzzing).
        if parent == b"moov" && typ == b"uuid" && uuid != Some(&CR3_DESC_UUID[..]) {
            pos += header;
            continue;
        }
        let box_end = pos
            .checked_add(size)
            .filter(|&e| !strict || e <= end)
            .filter(|_| size >= header || (!strict && size > 0));
        let Some(box_end) = box_end else {
            return Err(format!(
                "BMFF box '{name}' at byte {pos} has size {size}, which does not fit between its {header}-byte header and byte {end}"
            ));
        };
        let payload = pos + header;
        // Sample tables (and CR3's CTMD): rawler reserves room for the
        // entry count the box gives before reading an entry (found by
        // fuzzing: 2.3 GB for a co64 box), so the entries must fit in the
        // file. (where the count is, bytes per entry on disk)
        let table = match typ {
            b"co64" | b"stts" => Some((payload + 4, 8)),
            b"stsc" => Some((payload + 4, 12)),
            b"stsz" => Some((payload + 8, 4)),
            b"CTMD" => Some((payload + 8, 8)),
            _ => None,
        };
        if let Some((at, per)) = table {
            let count = be(at, 4).unwrap_or(0);
            let room = (bytes.len() as u64).saturating_sub(at + 4);
            if count * per > room {
                return Err(format!(
                    "BMFF box '{name}' at byte {pos} claims {count} entries of {per} bytes, more than the file holds after it ({room} bytes)"
                ));
            }
        }
        let children = match typ {
            b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => Some(payload),
            b"stsd" | b"CCTP" => Some(payload + if typ == b"stsd" { 8 } else { 12 }),
            b"CDI1" => Some(payload + 4),
            b"CRAW" => Some(payload + 82),
            b"uuid" if uuid == Some(&CR3_DESC_UUID[..]) => Some(payload),
            _ => None,
        };
        if let Some(c) = children.filter(|_| depth < 8) {
            walk_boxes(bytes, c, box_end.min(end), depth + 1, strict, typ)?;
        }
        pos = box_end;
    }
    Ok(())
}

/// Frame sizes as rawler's own TIFF reader sees them, read before any
/// decoder runs (rawler allocates the pixels even for a header-only
/// decode): ImageWidth x ImageLength of every directory in its parse of the
/// file (first value, any numeric type, as its decoders take it), and the
/// Width / Height of a Phase One / Leaf IIQ maker note.
///
/// IIQ: rawler also sizes its maker-note buffer from the entry count in
/// the file (`16·count` bytes, allocated before it is read), so a count
/// that points past the end of the file is refused here. The file is IIQ
/// to rawler when it is a TIFF without DNGVersion whose Make is one of the
/// IIQ makes (the same test, made with rawler's own TIFF reader).
fn check_rawler_tiff(
    src: &RawSource,
    bytes: &[u8],
) -> std::result::Result<Vec<(u64, u64)>, String> {
    use rawler::formats::tiff::reader::TiffReader;
    use rawler::formats::tiff::GenericTiffReader;
    use rawler::tags::{DngTag, TiffCommonTag};
    let Ok(tiff) = GenericTiffReader::new(&mut src.reader(), 0, 0, None, &[]) else {
        return Ok(Vec::new());
    };
    let first = |ifd: &rawler::formats::tiff::IFD, tag: TiffCommonTag| -> Option<u64> {
        let v = ifd.get_entry(tag)?.value.get_usize(0).ok()??;
        Some(v as u64)
    };
    let mut sizes: Vec<(u64, u64)> = tiff
        .find_ifds_with_tag(TiffCommonTag::ImageWidth)
        .into_iter()
        .filter_map(|ifd| {
            Some((
                first(ifd, TiffCommonTag::ImageWidth)?,
                first(ifd, TiffCommonTag::ImageLength)?,
            ))
        })
        .collect();
    if tiff.has_entry(DngTag::DNGVersion) {
        return Ok(sizes);
    }
    let make = tiff
        .get_entry(TiffCommonTag::Make)
        .and_then(|e| e.value.as_string().map(|s| s.trim_end().to_string()));
    if !matches!(
        make.as_deref(),
        Some("Phase One" | "Phase One A/S" | "Leaf")
    ) {
        return Ok(sizes);
    }
    let le32 = |o: u64| -> Option<u64> {
        let o = usize::try_from(o).ok()?;
        let b = bytes.get(o..o.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    // Makernote at offset 8: its directory offset at 16, then (count,
    // skipped u32, count x 16-byte entries) at 8 + offset.
    let Some(dir) = le32(16).map(|d| d + 8) else {
        return Err("IIQ makernote header is truncated".into());
    };
    let Some(count) = le32(dir) else {
        return Err(format!(
            "IIQ makernote directory at byte {dir} is past the end of the file"
        ));
    };
    let end = dir + 8 + 16 * count;
    if end > bytes.len() as u64 {
        return Err(format!(
            "IIQ makernote claims {count} entries, ending at byte {end}, past the end of the file ({} bytes)",
            bytes.len()
        ));
    }
    // Entries (tag, type, byte count, data): rawler allocates an ASCII
    // entry's byte count before reading it, and takes the frame size from
    // Width (0x108) / Height (0x109), allocating the pixels even for the
    // header-only decode: both are checked here.
    let (mut w, mut h) = (None, None);
    for k in 0..count {
        let e = dir + 8 + 16 * k;
        let (Some(tag), Some(typ), Some(n), Some(data)) =
            (le32(e), le32(e + 4), le32(e + 8), le32(e + 12))
        else {
            break;
        };
        if typ == 1 && tag != 0x110 && n > bytes.len() as u64 {
            return Err(format!(
                "IIQ makernote entry 0x{tag:x} claims {n} bytes, more than the file holds ({} bytes)",
                bytes.len()
            ));
        }
        if matches!(typ, 2 | 4) {
            match tag {
                0x108 => w = Some(data),
                0x109 => h = Some(data),
                _ => {}
            }
        }
    }
    sizes.extend(w.zip(h));
    Ok(sizes)
}

/// Frame sizes of the headers rawler reads its own way and allocates for
/// even in a header-only decode: Apple QuickTake (`qktk` / `qktn`:
/// big-endian height, width at byte 544; rawler swaps them when the
/// height is larger) and ARRIRAW (`ARRI`: little-endian width at 0x14,
/// height at 0x18). `None` for other files or a header cut short.
fn header_frame_size(src: &RawSource, bytes: &[u8]) -> Option<(u64, u64)> {
    use rawler::decoders::{ari::is_ari, qtk::is_qtk};
    if is_qtk(src) {
        let be16 = |o: u64| read_u16(bytes, o, false).map(u64::from);
        let (h, w) = (be16(544)?, be16(546)?);
        return Some((w.max(h), w.min(h)));
    }
    if is_ari(src) {
        return Some((
            read_u32(bytes, 0x14, true)? as u64,
            read_u32(bytes, 0x18, true)? as u64,
        ));
    }
    None
}

/// Canon CRW (CIFF): the frame size rawler allocates for, even for the
/// header-only decode (SensorInfo 0x1031, values 1 and 2), read the way
/// rawler's CIFF reader walks the heaps. `None` when it is not CIFF or has
/// no readable SensorInfo.
fn ciff_sensor_size(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.get(6..14) != Some(b"HEAPCCDR") {
        return None;
    }
    let le16 = |o: usize| -> Option<usize> {
        let b = bytes.get(o..o.checked_add(2)?)?;
        Some(u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let le32 = |o: usize| -> Option<usize> {
        let b = bytes.get(o..o.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut found = None;
    // (heap start, heap end, depth); rawler searches a heap's own entries
    // before its sub-heaps, which this breadth-first order follows.
    let mut heaps = std::collections::VecDeque::from([(le32(2)?, bytes.len(), 1u32)]);
    let mut visited = 0;
    while let Some((start, end, depth)) = heaps.pop_front() {
        visited += 1;
        if visited > 4096 {
            break;
        }
        let Some(values) = end.checked_sub(4).and_then(le32) else {
            continue;
        };
        let Some(dir) = start.checked_add(values) else {
            continue;
        };
        let Some(n) = le16(dir) else {
            continue;
        };
        for i in 0..n {
            let e = dir + 2 + i * 10;
            let Some(p) = le16(e) else {
                break;
            };
            let (tag, typ) = (p & 0x3fff, p & 0x3800);
            let (size, at) = match p & 0xc000 {
                0x0000 => match (le32(e + 2), le32(e + 6)) {
                    (Some(sz), Some(o)) => (sz, o.saturating_add(start)),
                    _ => break,
                },
                0x4000 => (8, e + 2),
                _ => continue,
            };
            if typ == 0x2800 || typ == 0x3000 {
                if depth < 10 {
                    heaps.push_back((at, at.saturating_add(size), depth + 1));
                }
            } else if tag == 0x1031 && found.is_none() {
                let v = |k: usize| -> Option<u64> {
                    Some(match typ {
                        0x0000 | 0x8000 => *bytes.get(at.checked_add(k)?)? as u64,
                        0x1000 => le16(at.checked_add(2 * k)?)? as u64,
                        _ => le32(at.checked_add(4 * k)?)? as u64,
                    })
                };
                found = v(1).zip(v(2));
            }
        }
        if found.is_some() {
            break;
        }
    }
    found
}

/// Walks the TIFF whose header is at `base`; `forced`: rawler parses it
/// whatever it looks like (else it must read as a directory). Returns
/// whether it is a DNG (DNGVersion in a directory it walked).
fn walk_tiff(
    bytes: &[u8],
    base: usize,
    le: bool,
    forced: bool,
    sizes: &mut Vec<(u64, u64)>,
) -> std::result::Result<bool, String> {
    // MRW's TIFF: rawler starts at offset 8 without reading the header.
    let mrw = bytes.get(..4) == Some(b"\0MRM");
    let first = if mrw && forced && !le {
        Some(8)
    } else {
        read_u32(bytes, base as u64 + 4, le)
    };
    let Some(first) = first.filter(|&f| f != 0) else {
        return Ok(false);
    };
    let mut notes = Notes::default();
    walk_ifds(
        bytes,
        base,
        le,
        forced,
        first as u64,
        sizes,
        Some(&mut notes),
    )?;
    // Maker notes: the decoders of these makes parse the directory an Exif
    // MakerNote points at whatever bytes they find there (no TIFF header
    // needed); the DNG decoder does not read maker notes.
    let make = notes.make.as_deref().unwrap_or("").trim_end();
    let parsed = bytes.starts_with(b"FUJIFILM")
        || [
            "NIKON",
            "Nikon",
            "SONY",
            "SAMSUNG",
            "PENTAX",
            "RICOH",
            "OLYMPUS",
            "OM Digital",
        ]
        .iter()
        .any(|m| make.starts_with(m))
        || matches!(
            make,
            "SEIKO EPSON CORP." | "EASTMAN KODAK COMPANY" | "Eastman Kodak Company" | "FUJIFILM"
        );
    if notes.dng {
        return Ok(true);
    }
    // Canon (CR2): the decoder reads the maker note as a plain directory
    // where the MakerNote data starts, offsets relative to the file.
    if make == "Canon" && base == 0 {
        for (at, exif_le) in notes.at.into_iter().take(16) {
            walk_ifds(bytes, 0, exif_le, true, at, sizes, None)?;
        }
        return Ok(false);
    }
    if !parsed {
        return Ok(false);
    }
    for (at, exif_le) in notes.at.into_iter().take(16) {
        if let Some((ifd, mn_base, mn_le)) = makernote_ifd(bytes, at, exif_le) {
            walk_ifds(bytes, mn_base, mn_le, true, ifd, sizes, None)?;
        }
    }
    Ok(false)
}

fn read_u16(bytes: &[u8], o: u64, le: bool) -> Option<u16> {
    let o = usize::try_from(o).ok()?;
    let b = bytes.get(o..o.checked_add(2)?)?;
    let a = [b[0], b[1]];
    Some(if le {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    })
}

fn read_u32(bytes: &[u8], o: u64, le: bool) -> Option<u32> {
    let o = usize::try_from(o).ok()?;
    let b = bytes.get(o..o.checked_add(4)?)?;
    let a = [b[0], b[1], b[2], b[3]];
    Some(if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}

/// Where rawler (`IFD::parse_makernote`) reads the maker-note directory
/// whose data starts at byte `at`: (directory offset, base it is relative
/// to, little-endian). Vendor prefixes are skipped as rawler skips them.
fn makernote_ifd(bytes: &[u8], at: u64, le: bool) -> Option<(u64, usize, bool)> {
    let at = usize::try_from(at).ok()?;
    let data = bytes.get(at..)?;
    let has = |p: &[u8]| data.starts_with(p);
    let endian_at = |o: usize| data.get(o..o + 2) == Some(b"II");
    if has(b"Nikon\0\x02") {
        return Some((8, at.checked_add(10)?, endian_at(10)));
    }
    let mut off = 0usize;
    if has(b"OLYMP") {
        off += if has(b"OLYMPUS") { 12 } else { 8 };
    }
    if has(b"EPSON") {
        off += 8;
    }
    if has(b"FUJIFILM") || has(b"SONY DSC ") {
        off += 12;
    }
    if has(b"AOC\0") {
        off += 4;
    }
    if has(b"PENTAX") {
        return Some(((at + 10) as u64, 0, endian_at(8)));
    }
    let mut le = le;
    match data.get(off..off + 2) {
        Some(b"II") => {
            off += 2;
            le = true;
        }
        Some(b"MM") => {
            off += 2;
            le = false;
        }
        _ => {}
    }
    Some(((at + off) as u64, 0, le))
}

/// What a TIFF walk learns about maker notes: where Exif MakerNote data
/// starts (absolute offset, byte order of its directory), the Make of the
/// first directory, and whether the file is a DNG (DNGVersion present).
#[derive(Default)]
struct Notes {
    at: Vec<(u64, bool)>,
    make: Option<String>,
    dng: bool,
}

/// Checks the directories reachable from `first` (relative to `base`).
/// `notes`: what to learn about maker notes (see [`Notes`]); `None` inside
/// a maker note, which is checked leniently (its data offsets follow
/// vendor rules).
fn walk_ifds(
    bytes: &[u8],
    base: usize,
    le: bool,
    forced: bool,
    first: u64,
    sizes: &mut Vec<(u64, u64)>,
    mut notes: Option<&mut Notes>,
) -> std::result::Result<(), String> {
    let len = bytes.len() as u64;
    let in_makernote = notes.is_none();
    let u16_at = |o: u64| -> Option<u16> { read_u16(bytes, o.checked_add(base as u64)?, le) };
    let u32_at = |o: u64| -> Option<u32> { read_u32(bytes, o.checked_add(base as u64)?, le) };
    // (directory offset, lenient, in the IFD chain). Lenient directories
    // are the ones rawler reads as a side effect (an ICC profile or an
    // UNDEFINED blob taken as a sub-IFD, a maker note): whatever bytes are
    // there. Like rawler, only the chain's directories lead on (next IFD,
    // sub-IFDs); a sub-IFD is one directory, so a web of junk pointers
    // cannot exhaust the walk.
    let mut todo = vec![(first, in_makernote, !in_makernote)];
    let mut seen = std::collections::HashSet::new();
    while let Some((ifd, lenient, chain)) = todo.pop() {
        if !seen.insert((ifd, chain)) || seen.len() > 4096 {
            continue;
        }
        // The file's own TIFF: truncations are refused, not only allocations.
        let strict = base == 0 && !lenient;
        let follow = chain;
        // rawler skips an entry it cannot read, so a junk entry in a
        // lenient directory is refused only when its allocation would hurt
        // (256 MiB), not merely for claiming more than the file.
        let limit = if lenient { len.max(256 << 20) } else { len };
        let Some(n) = u16_at(ifd).filter(|&n| n > 0) else {
            continue;
        };
        let mut entries = Vec::new();
        for i in 0..n as u64 {
            let e = ifd + 2 + 12 * i;
            match (u16_at(e), u16_at(e + 2), u32_at(e + 4)) {
                (Some(tag), Some(typ), Some(count)) => entries.push((e, tag, typ, count)),
                _ => break,
            }
        }
        if strict && entries.len() < n as usize {
            return Err(format!(
                "truncated: the TIFF directory at byte {ifd} has {n} entries but the file ends after {}",
                entries.len()
            ));
        }
        // An embedded header may be random bytes in pixel data: walk it
        // only when it reads as a directory (few entries, one of a known type).
        // rawler also allocates for unknown types, so the file's own TIFF
        // is always checked in full.
        let plausible = n <= 200
            && (ifd as usize).saturating_add(base) < bytes.len()
            && entries.iter().any(|e| matches!(e.2, 1..=13 | 16..=18));
        if !forced && !lenient && !plausible {
            continue;
        }
        let mut size = (None, None);
        for &(e, tag, typ, count) in &entries {
            if matches!(tag, 256 | 257) && count == 1 {
                let v = match typ {
                    3 => u16_at(e + 8).map(u64::from),
                    4 => u32_at(e + 8).map(u64::from),
                    _ => None,
                };
                if tag == 256 {
                    size.0 = v;
                } else {
                    size.1 = v;
                }
            }
            let size: u64 = match typ {
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 | 16..=18 => 8,
                _ => 1,
            };
            let claimed = count as u64 * size;
            if claimed > limit {
                let what = if in_makernote {
                    "maker note tag"
                } else {
                    "TIFF tag"
                };
                return Err(format!(
                    "{what} {tag} claims {claimed} bytes of data but the file holds {len}"
                ));
            }
            if strict && claimed > 4 {
                let end = u32_at(e + 8).map_or(u64::MAX, |o| o as u64 + claimed);
                if end > len {
                    return Err(format!(
                        "truncated: the data of TIFF tag {tag} ends at byte {end} but the file holds {len}"
                    ));
                }
            }
            // SubIFDs, Exif, GPS, Interoperability: more entries to check.
            // rawler parses a sub-IFD even at offset 0 (the file header,
            // read as a directory of 0x4949 entries): only the next-IFD
            // link uses 0 as the end. CR2's Kodak IFD (33424) is read by
            // the Canon decoder, leniently here as other decoders skip it.
            let sub = |v: u32| (v as u64, tag == 33424 || v == 0, false);
            if follow && matches!(tag, 330 | 34665 | 34853 | 40965 | 33424) && matches!(typ, 4 | 13)
            {
                if count == 1 {
                    todo.extend(u32_at(e + 8).map(sub));
                } else if let Some(at) = u32_at(e + 8) {
                    for k in 0..(count as u64).min(len / 4) {
                        todo.extend(u32_at(at as u64 + 4 * k).map(sub));
                    }
                }
            }
            // rawler's own sub-IFD rule (SubIFDs, Exif, GPS, ICC profile):
            // an UNDEFINED value is a directory where its data starts, a
            // value of unknown type one at the offset its first byte gives.
            if follow && matches!(tag, 330 | 34665 | 34853 | 34675 | 33424) {
                let data = if count <= 4 {
                    Some(e + 8)
                } else {
                    u32_at(e + 8).map(u64::from)
                };
                let at = match typ {
                    7 => data,
                    0 | 13.. => data
                        .and_then(|d| bytes.get(usize::try_from(d).ok()?.checked_add(base)?))
                        .map(|&b| b as u64),
                    4 if tag == 34675 && count == 1 => u32_at(e + 8).map(u64::from),
                    _ => None,
                };
                todo.extend(at.map(|a| (a, true, false)));
            }
            if let Some(notes) = notes.as_deref_mut() {
                // Exif MakerNote (UNDEFINED, long enough to hold a directory).
                if tag == 37500 && count >= 10 {
                    if let Some(at) = u32_at(e + 8) {
                        notes.at.push((base as u64 + at as u64, le));
                    }
                }
                notes.dng |= tag == 50706;
                if tag == 271 && typ == 2 && notes.make.is_none() {
                    let at = if count <= 4 {
                        Some(e + 8)
                    } else {
                        u32_at(e + 8).map(u64::from)
                    };
                    notes.make = at.and_then(|a| {
                        let a = usize::try_from(a).ok()?.checked_add(base)?;
                        let n = (count as usize).min(64);
                        let raw = bytes.get(a..a.checked_add(n)?)?;
                        let text = raw.split(|&c| c == 0).next()?;
                        Some(String::from_utf8_lossy(text).into_owned())
                    });
                }
            }
        }
        if let (Some(w), Some(h)) = size {
            sizes.push((w, h));
        }
        // Pixel data past the end of the file: a truncated transfer that
        // rawler would decode with the missing part left at zero.
        if strict {
            let array = |tag: u16| -> Option<Vec<u64>> {
                let &(e, _, typ, count) = entries.iter().find(|x| x.1 == tag)?;
                let size = match typ {
                    3 => 2u64,
                    4 => 4,
                    _ => return None,
                };
                let at = if count as u64 * size <= 4 {
                    e + 8
                } else {
                    u32_at(e + 8)? as u64
                };
                (0..count as u64)
                    .map(|k| match typ {
                        3 => u16_at(at + 2 * k).map(u64::from),
                        _ => u32_at(at + 4 * k).map(u64::from),
                    })
                    .collect()
            };
            for (offs, counts) in [(273, 279), (324, 325)] {
                if let (Some(o), Some(c)) = (array(offs), array(counts)) {
                    for (k, (o, c)) in o.iter().zip(&c).enumerate() {
                        if o + c > len {
                            return Err(format!(
                                "truncated: image data block {k} ends at byte {} but the file holds {len}",
                                o + c
                            ));
                        }
                    }
                }
            }
        }
        let next = u32_at(ifd + 2 + 12 * n as u64);
        if strict && next.is_none() {
            return Err(format!(
                "truncated: the file ends inside the TIFF directory at byte {ifd}"
            ));
        }
        if let Some(next) = next.filter(|&v| follow && v != 0).map(u64::from) {
            // rawler's TIFF reader follows the chain until a 0 link: one
            // that loops back would have it push directories until memory
            // runs out (found by fuzzing).
            if forced && seen.contains(&(next, true)) {
                return Err(format!(
                    "the TIFF directory chain loops back to the directory at byte {next}"
                ));
            }
            todo.push((next, false, true));
        }
    }
    Ok(())
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
