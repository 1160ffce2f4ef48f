//! Headerless sensor dumps described by a YAML sidecar file.
//!
//! Bring-up boards write bare mosaics with no header. A sidecar gives what
//! the file cannot: geometry, packing, CFA phase and levels.
//!
//! ```yaml
//! width: 1920
//! height: 1080
//! packing: raw10        # u8 | u16le | u16be | raw10 | raw12 | png16
//! stride: 2400          # optional: bytes per row (default: packed width)
//! offset: 0             # optional: bytes to skip at the start
//! cfa: RGGB
//! black_level: 64       # or 4 values, one per 2x2 site (row-major)
//! white_level: 1023
//! wb_gains: [1.9, 1.0, 1.6]          # optional, R G B
//! cam_to_srgb: [[1.6,-0.4,-0.2],[-0.3,1.5,-0.2],[0,-0.5,1.5]]  # optional
//! ```
//! MIPI CSI-2 RAW10 packs 4 pixels in 5 bytes (4 MSB bytes, then a byte of
//! 2-bit LSBs with pixel k in bits 2k..2k+1); RAW12 packs 2 pixels in 3
//! bytes (2 MSB bytes, then LSB nibbles with pixel 0 in the low nibble).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{check_dimensions, BlackLevel, CfaPattern, PixelLayout, RawFrame, RawMeta};
use crate::error::{Error, Result};

/// Sample packing of a headerless dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    /// One byte per sample.
    U8,
    /// Two bytes per sample, little-endian.
    U16le,
    /// Two bytes per sample, big-endian.
    U16be,
    /// MIPI CSI-2 RAW10: 4 samples in 5 bytes.
    Raw10,
    /// MIPI CSI-2 RAW12: 2 samples in 3 bytes.
    Raw12,
    /// A 16-bit (or 8-bit) grayscale PNG holding the mosaic.
    Png16,
}

impl Packing {
    /// Bytes needed for one row of `width` samples (without padding).
    pub fn row_bytes(self, width: usize) -> Option<usize> {
        match self {
            Packing::U8 => Some(width),
            Packing::U16le | Packing::U16be => width.checked_mul(2),
            Packing::Raw10 => width.checked_mul(5).map(|v| v.div_ceil(4)),
            Packing::Raw12 => width.checked_mul(3).map(|v| v.div_ceil(2)),
            Packing::Png16 => None,
        }
    }
}

/// Black level as one value or one per 2x2 CFA site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlackSpec {
    One(f32),
    PerSite([f32; 4]),
}

/// The sidecar description of a headerless dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub width: usize,
    pub height: usize,
    pub packing: Packing,
    /// Bytes per row including padding; default is the packed row size.
    #[serde(default)]
    pub stride: Option<usize>,
    /// Bytes to skip at the start of the file.
    #[serde(default)]
    pub offset: usize,
    /// Bayer phase, e.g. "RGGB".
    pub cfa: String,
    #[serde(default = "default_black")]
    pub black_level: BlackSpec,
    /// Saturation level in DN.
    pub white_level: f32,
    /// As-shot white-balance multipliers R, G, B.
    #[serde(default)]
    pub wb_gains: Option<[f32; 3]>,
    /// Camera RGB -> linear sRGB, row-major 3x3.
    #[serde(default)]
    pub cam_to_srgb: Option<[[f32; 3]; 3]>,
    #[serde(default)]
    pub make: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub iso: Option<u32>,
    /// Significant bits of the samples (derived from white_level if absent).
    #[serde(default)]
    pub bits: Option<u32>,
}

fn default_black() -> BlackSpec {
    BlackSpec::One(0.0)
}

impl Sidecar {
    /// Reads and validates a sidecar YAML file.
    pub fn load(path: &Path) -> Result<Sidecar> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses sidecar YAML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Sidecar> {
        let s: Sidecar = crate::yaml::from_str(text).map_err(|e| Error::Sidecar {
            path: path.into(),
            reason: e.to_string(),
        })?;
        s.validate(path)?;
        Ok(s)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Error::Sidecar {
            path: path.into(),
            reason,
        };
        if CfaPattern::parse(&self.cfa).is_none() {
            return Err(bad(format!(
                "cfa '{}' is not one of RGGB, BGGR, GRBG, GBRG",
                self.cfa
            )));
        }
        if self.width < 2 || self.height < 2 {
            return Err(bad(format!(
                "width and height must be at least 2 (got {}x{})",
                self.width, self.height
            )));
        }
        let blacks: Vec<f32> = match &self.black_level {
            BlackSpec::One(v) => vec![*v],
            BlackSpec::PerSite(v) => v.to_vec(),
        };
        if !self.white_level.is_finite() || blacks.iter().any(|b| !b.is_finite() || *b < 0.0) {
            return Err(bad("levels must be finite and non-negative".into()));
        }
        let bmax = blacks.iter().cloned().fold(0.0, f32::max);
        if self.white_level <= bmax {
            return Err(bad(format!(
                "white_level {} must be above black_level {bmax}",
                self.white_level
            )));
        }
        if let Some(g) = self.wb_gains {
            if g.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(bad(format!("wb_gains {g:?} must be positive")));
            }
        }
        if let Some(m) = self.cam_to_srgb {
            if m.iter().flatten().any(|v| !v.is_finite()) {
                return Err(bad("cam_to_srgb must be finite".into()));
            }
        }
        if let (Some(stride), Some(row)) = (self.stride, self.packing.row_bytes(self.width)) {
            if stride < row {
                return Err(bad(format!(
                    "stride {stride} is smaller than one packed row ({row} bytes)"
                )));
            }
        }
        if self.packing != Packing::Png16 && self.expected_bytes().is_none() {
            return Err(bad(format!(
                "{}x{} samples with stride {:?} and offset {} describe an impossibly large file",
                self.width, self.height, self.stride, self.offset
            )));
        }
        Ok(())
    }

    /// Expected file size in bytes (offset + rows); None for PNG mosaics.
    pub fn expected_bytes(&self) -> Option<usize> {
        let row = self.packing.row_bytes(self.width)?;
        let stride = self.stride.unwrap_or(row);
        // The last row needs no padding. None also when the size does not
        // fit in usize (found by fuzzing: a huge stride or offset).
        stride
            .checked_mul(self.height.checked_sub(1)?)?
            .checked_add(row)?
            .checked_add(self.offset)
    }
}

/// Finds the sidecar for a dump: `IN.yaml` next to `IN.raw`, or
/// `IN.raw.yaml`.
pub fn find_sidecar(dump: &Path) -> Option<PathBuf> {
    let a = PathBuf::from(format!("{}.yaml", dump.display()));
    if a.is_file() {
        return Some(a);
    }
    let b = dump.with_extension("yaml");
    b.is_file().then_some(b)
}

/// Decodes a headerless dump with its sidecar.
pub fn decode_dump(path: &Path, sidecar: &Sidecar, max_mp: f64) -> Result<RawFrame> {
    let shown = path.display().to_string();
    check_dimensions(&shown, sidecar.width as u64, sidecar.height as u64, max_mp)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_dump_bytes(&bytes, path, sidecar, max_mp)
}

/// Decodes dump contents already in memory; `path` names it in errors.
pub fn decode_dump_bytes(
    bytes: &[u8],
    path: &Path,
    sidecar: &Sidecar,
    max_mp: f64,
) -> Result<RawFrame> {
    let shown = path.display().to_string();
    check_dimensions(&shown, sidecar.width as u64, sidecar.height as u64, max_mp)?;
    let (w, h) = (sidecar.width, sidecar.height);
    let data = if sidecar.packing == Packing::Png16 {
        decode_png_mosaic(bytes, path, w, h)?
    } else {
        unpack(bytes, sidecar).map_err(|reason| Error::Sidecar {
            path: path.into(),
            reason,
        })?
    };
    let cfa = CfaPattern::parse(&sidecar.cfa).ok_or_else(|| Error::Sidecar {
        path: path.into(),
        reason: format!("bad cfa '{}'", sidecar.cfa),
    })?;
    let black = match &sidecar.black_level {
        BlackSpec::One(v) => BlackLevel::uniform(*v),
        BlackSpec::PerSite(v) => BlackLevel {
            repeat_width: 2,
            repeat_height: 2,
            values: v.to_vec(),
        },
    };
    let bits = sidecar
        .bits
        .unwrap_or_else(|| (sidecar.white_level.max(1.0) + 1.0).log2().ceil() as u32);
    let mut meta = RawMeta::bayer(&shown, w, h, cfa);
    meta.layout = PixelLayout::Bayer(cfa);
    meta.black = black;
    meta.white = [sidecar.white_level; 3];
    meta.bits = bits;
    meta.wb_gains = sidecar.wb_gains.map(|g| [g[0] / g[1], 1.0, g[2] / g[1]]);
    meta.cam_to_srgb = sidecar.cam_to_srgb;
    meta.make = sidecar.make.clone().unwrap_or_default();
    meta.model = sidecar.model.clone().unwrap_or_default();
    meta.iso = sidecar.iso;
    let frame = RawFrame {
        meta,
        data: data.into(),
    };
    frame.validate()?;
    Ok(frame)
}

fn decode_png_mosaic(bytes: &[u8], path: &Path, w: usize, h: usize) -> Result<Vec<f32>> {
    use image::ImageDecoder;
    let decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .into_decoder()
        .map_err(|e| Error::decode(path, e.to_string()))?;
    // The header's size first: nothing is allocated for a mismatch.
    let (iw, ih) = decoder.dimensions();
    if iw as usize != w || ih as usize != h {
        return Err(Error::Sidecar {
            path: path.into(),
            reason: format!("image is {iw}x{ih} but the sidecar says {w}x{h}"),
        });
    }
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| Error::decode(path, e.to_string()))?;
    Ok(img
        .into_luma16()
        .into_raw()
        .iter()
        .map(|&v| v as f32)
        .collect())
}

/// Unpacks the samples of a dump into DN values (row-major).
pub fn unpack(bytes: &[u8], s: &Sidecar) -> std::result::Result<Vec<f32>, String> {
    let (w, h) = (s.width, s.height);
    let row = s
        .packing
        .row_bytes(w)
        .ok_or_else(|| "packing has no fixed row size".to_string())?;
    let stride = s.stride.unwrap_or(row);
    let need = s.expected_bytes().ok_or_else(|| {
        format!(
            "{w}x{h} {:?} samples (stride {stride}, offset {}) describe an impossibly large file",
            s.packing, s.offset
        )
    })?;
    // A dump may also carry the padding after its last row.
    let padded = stride.checked_mul(h).and_then(|v| v.checked_add(s.offset));
    if bytes.len() != need && !(s.stride.is_some() && Some(bytes.len()) == padded) {
        return Err(format!(
            "file is {} bytes but the sidecar ({}x{} {:?}{}) implies {need}",
            bytes.len(),
            w,
            h,
            s.packing,
            if s.offset > 0 {
                format!(", offset {}", s.offset)
            } else {
                String::new()
            }
        ));
    }
    let mut out = vec![0f32; w * h];
    for (y, dst) in out.chunks_exact_mut(w).enumerate() {
        let start = s.offset + y * stride;
        let src = &bytes[start..start + row];
        match s.packing {
            Packing::U8 => dst.iter_mut().zip(src).for_each(|(d, &b)| *d = b as f32),
            Packing::U16le => dst
                .iter_mut()
                .zip(src.chunks_exact(2))
                .for_each(|(d, b)| *d = u16::from_le_bytes([b[0], b[1]]) as f32),
            Packing::U16be => dst
                .iter_mut()
                .zip(src.chunks_exact(2))
                .for_each(|(d, b)| *d = u16::from_be_bytes([b[0], b[1]]) as f32),
            Packing::Raw10 => {
                for (x, d) in dst.iter_mut().enumerate() {
                    let g = (x / 4) * 5;
                    let k = x % 4;
                    let msb = src[g + k] as u16;
                    let lsb = ((src.get(g + 4).copied().unwrap_or(0) >> (2 * k)) & 3) as u16;
                    *d = ((msb << 2) | lsb) as f32;
                }
            }
            Packing::Raw12 => {
                for (x, d) in dst.iter_mut().enumerate() {
                    let g = (x / 2) * 3;
                    let k = x % 2;
                    let msb = src[g + k] as u16;
                    let lsb = ((src.get(g + 2).copied().unwrap_or(0) >> (4 * k)) & 15) as u16;
                    *d = ((msb << 4) | lsb) as f32;
                }
            }
            Packing::Png16 => return Err("png16 is not a byte packing".into()),
        }
    }
    Ok(out)
}

/// Packs DN samples (row-major, `width` per row) the way [`unpack`] reads
/// them; used by tests and by tools that write dumps.
pub fn pack(samples: &[u16], width: usize, packing: Packing) -> Vec<u8> {
    let mut out = Vec::new();
    for row in samples.chunks(width) {
        match packing {
            Packing::U8 => out.extend(row.iter().map(|&v| v.min(255) as u8)),
            Packing::U16le => row.iter().for_each(|v| out.extend(v.to_le_bytes())),
            Packing::U16be => row.iter().for_each(|v| out.extend(v.to_be_bytes())),
            Packing::Raw10 => {
                for g in row.chunks(4) {
                    let mut lsb = 0u8;
                    for (k, &v) in g.iter().enumerate() {
                        out.push((v.min(1023) >> 2) as u8);
                        lsb |= ((v & 3) as u8) << (2 * k);
                    }
                    out.push(lsb);
                }
            }
            Packing::Raw12 => {
                for g in row.chunks(2) {
                    let mut lsb = 0u8;
                    for (k, &v) in g.iter().enumerate() {
                        out.push((v.min(4095) >> 4) as u8);
                        lsb |= ((v & 15) as u8) << (4 * k);
                    }
                    out.push(lsb);
                }
            }
            Packing::Png16 => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(w: usize, h: usize, packing: Packing) -> Sidecar {
        Sidecar {
            width: w,
            height: h,
            packing,
            stride: None,
            offset: 0,
            cfa: "RGGB".into(),
            black_level: BlackSpec::One(0.0),
            white_level: 4095.0,
            wb_gains: None,
            cam_to_srgb: None,
            make: None,
            model: None,
            iso: None,
            bits: None,
        }
    }

    #[test]
    fn pack_unpack_roundtrip_all_packings() {
        let (w, h) = (8, 3);
        for (packing, max) in [
            (Packing::U8, 255u16),
            (Packing::U16le, 65535),
            (Packing::U16be, 65535),
            (Packing::Raw10, 1023),
            (Packing::Raw12, 4095),
        ] {
            let samples: Vec<u16> = (0..w * h)
                .map(|i| ((i as u32 * 97 + 13) % (u32::from(max) + 1)) as u16)
                .collect();
            let bytes = pack(&samples, w, packing);
            let s = sidecar(w, h, packing);
            assert_eq!(bytes.len(), s.expected_bytes().unwrap());
            let back = unpack(&bytes, &s).unwrap();
            let back: Vec<u16> = back.iter().map(|&v| v as u16).collect();
            assert_eq!(back, samples, "{packing:?}");
        }
    }

    #[test]
    fn raw10_bit_order() {
        // Pixels 0..3 = 0x3FF, 0x001, 0x200, 0x002 -> MSBs, then LSB byte.
        let bytes = [0xFF, 0x00, 0x80, 0x00, 0b10_00_01_11];
        let s = sidecar(4, 1, Packing::Raw10);
        let mut s2 = s.clone();
        s2.height = 1;
        let v = unpack(&bytes, &s2).unwrap();
        assert_eq!(v, vec![1023.0, 1.0, 512.0, 2.0]);
    }

    #[test]
    fn wrong_size_is_an_error() {
        let s = sidecar(8, 8, Packing::U16le);
        let e = unpack(&[0u8; 10], &s).unwrap_err();
        assert!(e.contains("10 bytes"), "{e}");
    }
}
