//! Headerless Kodak raws, recognised by their file size as LibRaw does
//! (rawler has no decoder for them: "No decoder found").
//!
//! These files carry no header at all: LibRaw's identification keeps a
//! table of file sizes with the make, model, geometry and loader of each,
//! and this module keeps the entries rawler lacks ([`KNOWN`]). Only files
//! rawler cannot identify are looked up here, so a real raw of the same
//! size is never taken for one of these.
//!
//! Kodak EasyShare C330 ("RAW_KODAK_C330_FORMAT_NONE_YRGB", 2,247,168
//! bytes): not a mosaic but the camera's processed, white-balanced image
//! as 8-bit YCbCr 4:2:2, 1232 x 912 pixels, each pair of pixels stored as
//! `Y0 Cb Y1 Cr` (Cb, Cr offset by 128). Per pixel (LibRaw's
//! `kodak_c330_load_raw` documents the same transform):
//! `G = Y - floor((Cb + Cr + 2) / 4)`, `B = G + Cb`, `R = G + Cr`, each
//! clamped to 0..255 and linearised through the camera's tone curve, the
//! inverse of an 8-bit encoding with a linear toe of slope 3.875 joined to
//! a logarithmic segment (LibRaw: `gamma_curve(0, 3.875, 1, 255)`; see
//! [`tone_curve`]). The visible picture is the left 1216 columns (LibRaw's
//! right margin of 16). The result is a [`PixelLayout::LinearRgb`] frame:
//! white 65535, black 0, colour already camera RGB ~ sRGB (identity
//! matrix, as LibRaw uses), no white balance recorded (`Missing`: gray
//! world, which is what LibRaw's `-w` falls back to for this file; the
//! camera already balanced the data, so gains 1/1/1 would keep its look).

use std::path::Path;

use super::{check_dimensions, PixelLayout, Provenance, RawFrame, RawMeta, WbSource};
use crate::error::{Error, Result};

/// How a known headerless file stores its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// 8-bit YCbCr 4:2:2 (`Y0 Cb Y1 Cr` per pixel pair) through a
    /// log-toe tone curve (Kodak C330).
    YCbCr422,
}

/// One headerless format, identified by its exact file size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownSize {
    /// File size in bytes.
    pub bytes: u64,
    pub make: &'static str,
    pub model: &'static str,
    /// Stored pixels per row and rows.
    pub raw_width: usize,
    pub raw_height: usize,
    /// Visible pixels per row (from the left edge).
    pub width: usize,
    pub storage: Storage,
}

/// The headerless sizes rawgraph knows (LibRaw's table entries that
/// rawler does not read).
pub const KNOWN: &[KnownSize] = &[KnownSize {
    bytes: 2_247_168,
    make: "Kodak",
    model: "C330",
    raw_width: 1232,
    raw_height: 912,
    width: 1216,
    storage: Storage::YCbCr422,
}];

/// The known headerless format of a file of `len` bytes, if any.
pub fn identify(len: u64) -> Option<&'static KnownSize> {
    KNOWN.iter().find(|k| k.bytes == len)
}

/// Slope of the C330 tone curve's linear toe (encoded / linear).
const C330_TOE_SLOPE: f64 = 3.875;

/// The C330 tone curve: 8-bit code -> linear value in 0..=1.
///
/// The encoding is `v = slope * x` below the knee and `v = 1 + k ln x`
/// above it (BT.709-style toe, logarithmic shoulder; LibRaw's
/// `gamma_curve` with power 0). The knee `k` (encoded value, code / 255)
/// makes both segments give the same linear value there,
/// `k / slope = exp(1 - 1/k)`, solved by bisection; the inverse is
/// `x = v / slope` below `k` and `x = exp((v - 1) / k)` above, so code 255
/// maps to exactly 1.
pub fn tone_curve() -> [f32; 256] {
    // f(k) = k exp(1/k - 1) falls from +inf (k -> 0) to 1 (k = 1): find
    // f(k) = slope.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let k = 0.5 * (lo + hi);
        if k * (1.0 / k - 1.0).exp() < C330_TOE_SLOPE {
            hi = k;
        } else {
            lo = k;
        }
    }
    let k = 0.5 * (lo + hi);
    let mut lut = [0f32; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        let r = i as f64 / 255.0;
        *v = if r < k {
            r / C330_TOE_SLOPE
        } else {
            ((r - 1.0) / k).exp()
        } as f32;
    }
    lut
}

/// Decodes a headerless file `known` identified (`bytes` is the whole
/// file; `path` names it in errors; `max_mp` bounds the frame).
pub fn decode(bytes: &[u8], path: &Path, known: &KnownSize, max_mp: f64) -> Result<RawFrame> {
    let shown = path.display().to_string();
    let (rw, rh, w) = (known.raw_width, known.raw_height, known.width);
    check_dimensions(&shown, w as u64, rh as u64, max_mp)?;
    let row_bytes = rw * 2;
    if (bytes.len() as u64) != known.bytes || bytes.len() < row_bytes * rh || w > rw {
        return Err(Error::decode(
            path,
            format!(
                "{} {} headerless raw must be {} bytes, not {}",
                known.make,
                known.model,
                known.bytes,
                bytes.len()
            ),
        ));
    }
    let data = match known.storage {
        Storage::YCbCr422 => ycbcr422_to_linear(bytes, rw, rh, w),
    };
    let mut meta = RawMeta::bayer(&shown, w, rh, super::CfaPattern::Rggb);
    meta.layout = PixelLayout::LinearRgb;
    meta.white = [65535.0; 3];
    meta.bits = 16;
    meta.make = known.make.into();
    meta.model = known.model.into();
    // No white balance is recorded: gray world, as LibRaw's `-w` falls
    // back to its auto WB here (chroma 0.33 against it; keeping the
    // camera's own balance, gains 1/1/1, gives 7.67).
    meta.wb_gains = None;
    meta.cam_to_srgb = Some([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    meta.provenance = Provenance {
        wb: WbSource::Missing,
        wb_why: "headerless file, no white balance recorded: gray world (LibRaw's -w falls back \
                 to its auto WB too); the camera's own balance is in the data"
            .into(),
        black: "0: processed YCbCr data (LibRaw's headerless-size table)".into(),
        white: format!(
            "65535: 8-bit {} {} tone curve linearised to 16 bits (LibRaw's headerless-size table)",
            known.make, known.model
        ),
    };
    let frame = RawFrame {
        meta,
        data: data.into(),
    };
    frame.validate()?;
    Ok(frame)
}

/// 8-bit YCbCr 4:2:2 rows (`Y0 Cb Y1 Cr`, `rw` pixels a row, `rh` rows)
/// to linear RGB in 0..65535, interleaved, the left `w` columns.
fn ycbcr422_to_linear(bytes: &[u8], rw: usize, rh: usize, w: usize) -> Vec<f32> {
    let lut = tone_curve();
    let mut out = Vec::with_capacity(w * rh * 3);
    for row in bytes.chunks_exact(rw * 2).take(rh) {
        for x in 0..w {
            let pair = &row[(2 * x) & !3..((2 * x) & !3) + 4];
            let y = row[2 * x] as i32;
            let (cb, cr) = (pair[1] as i32 - 128, pair[3] as i32 - 128);
            let g = y - ((cb + cr + 2) >> 2);
            for v in [g + cr, g, g + cb] {
                out.push(lut[v.clamp(0, 255) as usize] * 65535.0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_curve_is_monotonic_continuous_and_spans_0_to_1() {
        let c = tone_curve();
        assert_eq!(c[0], 0.0);
        assert_eq!(c[255], 1.0);
        assert!(c.windows(2).all(|w| w[1] > w[0]));
        // Toe: linear with slope 1/3.875 per code/255.
        assert!((c[10] - 10.0 / 255.0 / 3.875).abs() < 1e-6);
        // No jump at the knee: neighbouring steps differ by < 10 %.
        let d: Vec<f32> = c.windows(2).map(|w| w[1] - w[0]).collect();
        for (i, p) in d.windows(2).enumerate() {
            assert!((p[1] / p[0] - 1.0).abs() < 0.1, "step {i}: {p:?}");
        }
    }

    #[test]
    fn ycbcr_pairs_convert_to_rgb() {
        // One row of 4 pixels: grey (Cb = Cr = 128), then a red-ish pair.
        let row = [100u8, 128, 100, 128, 100, 118, 100, 168];
        let rgb = ycbcr422_to_linear(&row, 4, 1, 4);
        let lut = tone_curve();
        let at = |v: i32| lut[v as usize] * 65535.0;
        assert_eq!(&rgb[..6], &[at(100); 6]);
        // cb = -10, cr = 40: g = 100 - 8 = 92, r = 132, b = 82.
        assert_eq!(&rgb[6..9], &[at(132), at(92), at(82)]);
        assert_eq!(&rgb[9..12], &[at(132), at(92), at(82)]);
    }

    #[test]
    fn only_the_exact_size_is_known() {
        assert_eq!(identify(2_247_168).map(|k| k.model), Some("C330"));
        assert!(identify(2_247_167).is_none());
        let k = identify(2_247_168).unwrap();
        let e = decode(&[0u8; 10], Path::new("x.raw"), k, 100.0).unwrap_err();
        assert!(e.to_string().contains("2247168"), "{e}");
    }
}
