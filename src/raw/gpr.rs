//! GoPro GPR: DNGs whose raw tiles are VC-5 compressed (SMPTE ST 2073,
//! DNG Compression 9), which rawler refuses ("Unsupported DNG
//! compression").
//!
//! A GPR is an ordinary DNG except for its pixel data: each tile (or strip)
//! of the raw IFD holds one VC-5 bitstream, a three-level 2-D wavelet of
//! the Bayer mosaic's four half-resolution channels (G sum, R - G, B - G,
//! G difference), entropy coded with the standard's run/value code book
//! and mapped back to linear sensor values through VC-5's inverse-log
//! curve. The bitstream is decoded by `flashraw_codecs::vc5` (safe Rust;
//! MIT OR Apache-2.0); this adapter finds the VC-5 IFD, decodes every tile
//! into a u16 mosaic and hands rawler the same DNG with those tiles stored
//! uncompressed (Compression 1, 16 bits per sample, the decoded tiles
//! appended to the file and the tile offsets and byte counts rewritten).
//! Everything else (black and white levels, CFA, as-shot neutral, colour
//! matrices, orientation, crops, opcode lists, EXIF) is then read by the
//! DNG path exactly as for any other DNG.
//!
//! The output bit depth of the inverse-log curve follows the DNG
//! WhiteLevel (16383 -> 14-bit samples), as GoPro's and rawspeed's
//! decoders do. Every size is checked before anything is allocated, and a
//! corrupt bitstream is a typed error, never a panic (tests/
//! fuzz_regressions.rs, fuzz/fuzz_targets/gpr_vc5.rs).

use flashraw_codecs::vc5::{self, CfaPhase};

use super::preflight::{read_u16, read_u32};

/// DNG Compression value of VC-5 (GoPro GPR).
const COMPRESSION_VC5: u32 = 9;

/// TIFF tags this adapter reads or rewrites.
mod tag {
    pub const NEW_SUBFILE_TYPE: u16 = 254;
    pub const IMAGE_WIDTH: u16 = 256;
    pub const IMAGE_LENGTH: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const STRIP_OFFSETS: u16 = 273;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const ROWS_PER_STRIP: u16 = 278;
    pub const STRIP_BYTE_COUNTS: u16 = 279;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_LENGTH: u16 = 323;
    pub const TILE_OFFSETS: u16 = 324;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const SUB_IFDS: u16 = 330;
    pub const CFA_REPEAT_PATTERN_DIM: u16 = 33421;
    pub const CFA_PATTERN: u16 = 33422;
    pub const WHITE_LEVEL: u16 = 50717;
}

/// Most directories walked looking for the VC-5 IFD (IFD chain + SubIFDs).
const MAX_IFDS: usize = 64;

/// One directory entry: where it sits in the file and what it says.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// TIFF field type (3 SHORT, 4 LONG, ...).
    typ: u16,
    count: u32,
    /// Byte offset of the value: inside the entry when it fits in 4 bytes,
    /// else where the entry's offset field points.
    value_at: u64,
}

/// The TIFF file being read: its bytes and byte order.
struct Tiff<'a> {
    bytes: &'a [u8],
    le: bool,
}

impl Tiff<'_> {
    fn u16(&self, o: u64) -> Option<u16> {
        read_u16(self.bytes, o, self.le)
    }

    fn u32(&self, o: u64) -> Option<u32> {
        read_u32(self.bytes, o, self.le)
    }

    /// The entries of the directory at `ifd` (`None` when it does not fit).
    fn entries(&self, ifd: u64) -> Option<Vec<(u16, Entry)>> {
        let n = self.u16(ifd)? as u64;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let at = ifd + 2 + 12 * i;
            let (t, typ, count) = (self.u16(at)?, self.u16(at + 2)?, self.u32(at + 4)?);
            let size = match typ {
                1 | 2 | 6 | 7 => 1u64,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 => 8,
                _ => 0,
            };
            let value_at = if size * count as u64 <= 4 {
                at + 8
            } else {
                self.u32(at + 8)? as u64
            };
            out.push((
                t,
                Entry {
                    typ,
                    count,
                    value_at,
                },
            ));
        }
        Some(out)
    }

    /// Value `i` of a SHORT or LONG (or BYTE) entry.
    fn int(&self, e: &Entry, i: u32) -> Option<u64> {
        if i >= e.count {
            return None;
        }
        let i = i as u64;
        match e.typ {
            1 | 7 => self
                .bytes
                .get(usize::try_from(e.value_at + i).ok()?)
                .map(|&b| b as u64),
            3 => self.u16(e.value_at + 2 * i).map(u64::from),
            4 | 13 => self.u32(e.value_at + 4 * i).map(u64::from),
            _ => None,
        }
    }

    /// The offset of the next directory in the chain after `ifd`.
    fn next_ifd(&self, ifd: u64) -> Option<u64> {
        let n = self.u16(ifd)? as u64;
        self.u32(ifd + 2 + 12 * n).map(u64::from)
    }
}

fn find(entries: &[(u16, Entry)], t: u16) -> Option<&Entry> {
    entries.iter().find(|(k, _)| *k == t).map(|(_, e)| e)
}

/// Whether `bytes` is a TIFF/DNG whose full-resolution raw IFD is VC-5
/// compressed (a GoPro GPR).
pub fn is_vc5_dng(bytes: &[u8]) -> bool {
    matches!(find_vc5_ifd(bytes), Ok(Some(_)))
}

/// The byte order and offset of the VC-5 raw IFD, if any.
fn find_vc5_ifd(bytes: &[u8]) -> Result<Option<(bool, u64)>, String> {
    let le = match bytes.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Ok(None),
    };
    let t = Tiff { bytes, le };
    if t.u16(2) != Some(42) {
        return Ok(None);
    }
    let mut todo: Vec<u64> = t.u32(4).map(u64::from).into_iter().collect();
    let mut seen = Vec::new();
    while let Some(ifd) = todo.pop() {
        if ifd == 0 || seen.contains(&ifd) || seen.len() >= MAX_IFDS {
            continue;
        }
        seen.push(ifd);
        let Some(entries) = t.entries(ifd) else {
            continue;
        };
        let compression = find(&entries, tag::COMPRESSION).and_then(|e| t.int(e, 0));
        let reduced = find(&entries, tag::NEW_SUBFILE_TYPE)
            .and_then(|e| t.int(e, 0))
            .is_some_and(|v| v & 1 != 0);
        if compression == Some(COMPRESSION_VC5 as u64) && !reduced {
            return Ok(Some((le, ifd)));
        }
        if let Some(e) = find(&entries, tag::SUB_IFDS) {
            for i in 0..e.count.min(MAX_IFDS as u32) {
                if let Some(o) = t.int(e, i) {
                    todo.push(o);
                }
            }
        }
        if let Some(n) = t.next_ifd(ifd) {
            todo.push(n);
        }
    }
    Ok(None)
}

/// Where a decoded segment goes: the entry to rewrite and the segment's
/// pixel size.
struct Layout {
    /// Segment (tile or strip) width and height, in pixels.
    seg_w: usize,
    seg_h: usize,
    offsets: Entry,
    counts: Entry,
    segments: u32,
}

/// When `bytes` is a DNG whose raw IFD is VC-5 compressed, returns the
/// same DNG with the raw tiles decoded and stored uncompressed (16-bit
/// samples, in the file's byte order); `Ok(None)` for any other file.
///
/// `max_mp` bounds the image and every tile (megapixels) before a pixel
/// is allocated. Errors are one-line reasons (the caller adds the path).
pub fn transcode(bytes: &[u8], max_mp: f64) -> Result<Option<Vec<u8>>, String> {
    let Some((le, ifd)) = find_vc5_ifd(bytes)? else {
        return Ok(None);
    };
    let t = Tiff { bytes, le };
    let entries = t
        .entries(ifd)
        .ok_or("GPR: raw IFD does not fit in the file")?;
    let int = |k: u16| find(&entries, k).and_then(|e| t.int(e, 0));
    let need = |k: u16, what: &str| int(k).ok_or_else(|| format!("GPR: raw IFD has no {what}"));
    let (w, h) = (
        need(tag::IMAGE_WIDTH, "ImageWidth")? as usize,
        need(tag::IMAGE_LENGTH, "ImageLength")? as usize,
    );
    let limit = (max_mp * 1e6) as u64;
    if w == 0 || h == 0 || (w as u64) * (h as u64) > limit {
        return Err(format!(
            "GPR: image size {w}x{h} is empty or over the {max_mp} MP limit"
        ));
    }
    if int(tag::SAMPLES_PER_PIXEL).unwrap_or(1) != 1 {
        return Err("GPR: VC-5 raw IFD with more than one sample per pixel".into());
    }
    let phase = cfa_phase(&t, &entries)?;
    // Output bits of the inverse-log curve follow the white level.
    let white = match int(tag::WHITE_LEVEL) {
        Some(v) => v,
        None => {
            let bits = int(tag::BITS_PER_SAMPLE).unwrap_or(16).clamp(1, 16);
            (1u64 << bits) - 1
        }
    };
    if !(1..=0xFFFF).contains(&white) {
        return Err(format!("GPR: white level {white} out of range"));
    }

    let layout = segment_layout(&t, &entries, w, h)?;
    let (sw, sh) = (layout.seg_w, layout.seg_h);
    if (sw as u64) * (sh as u64) > limit {
        return Err(format!(
            "GPR: tile size {sw}x{sh} is over the {max_mp} MP limit"
        ));
    }
    let seg_bytes = sw * sh * 2;
    let total = seg_bytes
        .checked_mul(layout.segments as usize)
        .and_then(|v| v.checked_add(bytes.len() + 1))
        .filter(|&v| v <= u32::MAX as usize)
        .ok_or("GPR: decoded image would not fit in a 32-bit TIFF")?;

    // Decode every segment; the output keeps the original bytes (all
    // metadata) and appends the decoded tiles, 2-byte aligned.
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(bytes);
    if out.len() % 2 == 1 {
        out.push(0);
    }
    let base = out.len();
    let mut mosaic = vec![0u16; sw * sh];
    let mut new_offsets = Vec::with_capacity(layout.segments as usize);
    for i in 0..layout.segments {
        let (o, n) = (t.int(&layout.offsets, i), t.int(&layout.counts, i));
        let (Some(o), Some(n)) = (o, n) else {
            return Err(format!("GPR: tile {i} has no offset or byte count"));
        };
        let data = usize::try_from(o)
            .ok()
            .zip(usize::try_from(n).ok())
            .and_then(|(o, n)| bytes.get(o..o.checked_add(n)?))
            .ok_or_else(|| {
                format!("GPR: tile {i} ({n} bytes at {o}) lies past the end of the file")
            })?;
        vc5::decode(data, sw, sh, white as u32, phase, &mut mosaic, true)
            .map_err(|e| format!("GPR: tile {i}: VC-5 {e}"))?;
        new_offsets.push((out.len()) as u32);
        if le {
            out.extend(mosaic.iter().flat_map(|v| v.to_le_bytes()));
        } else {
            out.extend(mosaic.iter().flat_map(|v| v.to_be_bytes()));
        }
    }
    debug_assert_eq!(out.len(), base + seg_bytes * layout.segments as usize);

    // Rewrite the raw IFD: uncompressed, 16-bit, new offsets and counts.
    let mut patch = Patcher { out: &mut out, le };
    for (k, e) in &entries {
        match *k {
            tag::COMPRESSION => patch.int(e, 0, 1)?,
            tag::BITS_PER_SAMPLE => patch.int(e, 0, 16)?,
            _ => {}
        }
    }
    for (i, off) in new_offsets.iter().enumerate() {
        patch.int(&layout.offsets, i as u32, *off as u64)?;
        patch.int(&layout.counts, i as u32, seg_bytes as u64)?;
    }
    Ok(Some(out))
}

/// Writes integer values into entries of the copied file.
struct Patcher<'a> {
    out: &'a mut Vec<u8>,
    le: bool,
}

impl Patcher<'_> {
    /// Sets value `i` of a SHORT or LONG entry to `v`.
    fn int(&mut self, e: &Entry, i: u32, v: u64) -> Result<(), String> {
        let (size, fits) = match e.typ {
            3 => (2usize, v <= u16::MAX as u64),
            4 | 13 => (4, v <= u32::MAX as u64),
            t => return Err(format!("GPR: cannot rewrite a TIFF entry of type {t}")),
        };
        if !fits {
            return Err(format!("GPR: value {v} does not fit its TIFF entry"));
        }
        let at = usize::try_from(e.value_at)
            .ok()
            .and_then(|a| a.checked_add(size * i as usize))
            .filter(|a| a.saturating_add(size) <= self.out.len())
            .ok_or("GPR: TIFF entry lies past the end of the file")?;
        let bytes: Vec<u8> = match (size, self.le) {
            (2, true) => (v as u16).to_le_bytes().to_vec(),
            (2, false) => (v as u16).to_be_bytes().to_vec(),
            (_, true) => (v as u32).to_le_bytes().to_vec(),
            (_, false) => (v as u32).to_be_bytes().to_vec(),
        };
        self.out[at..at + size].copy_from_slice(&bytes);
        Ok(())
    }
}

/// The tiles (or strips) of the raw IFD: their size and entries. Every
/// segment of a DNG has the full tile size (edge tiles are padded).
fn segment_layout(
    t: &Tiff,
    entries: &[(u16, Entry)],
    w: usize,
    h: usize,
) -> Result<Layout, String> {
    let int = |k: u16| find(entries, k).and_then(|e| t.int(e, 0));
    let (seg_w, seg_h, offsets, counts) = if let (Some(o), Some(c)) = (
        find(entries, tag::TILE_OFFSETS),
        find(entries, tag::TILE_BYTE_COUNTS),
    ) {
        let tw = int(tag::TILE_WIDTH).ok_or("GPR: tiled raw IFD has no TileWidth")? as usize;
        let th = int(tag::TILE_LENGTH).ok_or("GPR: tiled raw IFD has no TileLength")? as usize;
        (tw, th, *o, *c)
    } else if let (Some(o), Some(c)) = (
        find(entries, tag::STRIP_OFFSETS),
        find(entries, tag::STRIP_BYTE_COUNTS),
    ) {
        let rows = int(tag::ROWS_PER_STRIP).unwrap_or(h as u64).min(h as u64) as usize;
        (w, rows, *o, *c)
    } else {
        return Err("GPR: raw IFD has neither tiles nor strips".into());
    };
    if seg_w == 0 || seg_h == 0 || seg_w % 2 != 0 || seg_h % 2 != 0 {
        return Err(format!(
            "GPR: VC-5 tile size {seg_w}x{seg_h} is not a positive even size"
        ));
    }
    let needed = (w.div_ceil(seg_w) as u64) * (h.div_ceil(seg_h) as u64);
    if offsets.count as u64 != needed || counts.count as u64 != needed {
        return Err(format!(
            "GPR: {} tile offsets and {} byte counts for {needed} tiles of {seg_w}x{seg_h}",
            offsets.count, counts.count
        ));
    }
    Ok(Layout {
        seg_w,
        seg_h,
        offsets,
        counts,
        segments: needed as u32,
    })
}

/// The Bayer phase from CFARepeatPatternDim / CFAPattern (RGGB when the
/// tags are absent, as GoPro writes it).
fn cfa_phase(t: &Tiff, entries: &[(u16, Entry)]) -> Result<CfaPhase, String> {
    if let Some(d) = find(entries, tag::CFA_REPEAT_PATTERN_DIM) {
        if (t.int(d, 0), t.int(d, 1)) != (Some(2), Some(2)) {
            return Err("GPR: VC-5 needs a 2x2 Bayer pattern".into());
        }
    }
    let Some(p) = find(entries, tag::CFA_PATTERN) else {
        return Ok(CfaPhase::Rggb);
    };
    let c: Vec<u64> = (0..4).filter_map(|i| t.int(p, i)).collect();
    // DNG CFA colours: 0 red, 1 green, 2 blue.
    Ok(match c.as_slice() {
        [0, 1, 1, 2] => CfaPhase::Rggb,
        [1, 0, 2, 1] => CfaPhase::Grbg,
        [1, 2, 0, 1] => CfaPhase::Gbrg,
        [2, 1, 1, 0] => CfaPhase::Bggr,
        other => return Err(format!("GPR: CFA pattern {other:?} is not RGB Bayer")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian TIFF with one IFD of (tag, type, count, value)
    /// entries whose values fit in 4 bytes, followed by `tail`.
    fn tiff(entries: &[(u16, u16, u32, u32)], tail: &[u8]) -> Vec<u8> {
        let mut b = b"II*\0".to_vec();
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for &(t, typ, n, v) in entries {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&typ.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(tail);
        b
    }

    fn header_len(n: usize) -> u32 {
        (8 + 2 + 12 * n + 4) as u32
    }

    #[test]
    fn other_files_pass_through() {
        assert_eq!(transcode(b"not a tiff", 100.0), Ok(None));
        let plain = tiff(&[(259, 3, 1, 1), (256, 4, 1, 64), (257, 4, 1, 64)], &[]);
        assert_eq!(transcode(&plain, 100.0), Ok(None));
        assert!(!is_vc5_dng(&plain));
    }

    #[test]
    fn vc5_ifd_is_found_and_garbage_is_an_error() {
        let n = 10;
        let data_at = header_len(n);
        let e = [
            (256, 4, 1, 64),
            (257, 4, 1, 64),
            (258, 3, 1, 16),
            (259, 3, 1, 9),
            (277, 3, 1, 1),
            (322, 4, 1, 64),
            (323, 4, 1, 64),
            (324, 4, 1, data_at),
            (325, 4, 1, 16),
            (50717, 3, 1, 4095),
        ];
        let f = tiff(&e, b"VC-5garbage-data");
        assert!(is_vc5_dng(&f));
        let err = transcode(&f, 100.0).unwrap_err();
        assert!(err.contains("tile 0"), "{err}");
        // A tile past the end of the file.
        let mut e2 = e;
        e2[8] = (325, 4, 1, 1 << 30);
        let err = transcode(&tiff(&e2, b"VC-5"), 100.0).unwrap_err();
        assert!(err.contains("past the end"), "{err}");
        // Huge dimensions are refused before anything is allocated.
        let mut e3 = e;
        e3[0] = (256, 4, 1, 1 << 30);
        let err = transcode(&tiff(&e3, b""), 100.0).unwrap_err();
        assert!(err.contains("MP limit"), "{err}");
        // Tile counts that do not match the image.
        let mut e4 = e;
        e4[5] = (322, 4, 1, 32);
        let err = transcode(&tiff(&e4, b""), 100.0).unwrap_err();
        assert!(err.contains("tiles of"), "{err}");
    }

    #[test]
    fn cfa_patterns_map_to_phases() {
        for (pat, want) in [
            ([0u8, 1, 1, 2], CfaPhase::Rggb),
            ([1, 0, 2, 1], CfaPhase::Grbg),
            ([1, 2, 0, 1], CfaPhase::Gbrg),
            ([2, 1, 1, 0], CfaPhase::Bggr),
        ] {
            let f = tiff(&[(33422, 1, 4, u32::from_le_bytes(pat))], &[]);
            let t = Tiff {
                bytes: &f,
                le: true,
            };
            let entries = t.entries(8).unwrap();
            assert_eq!(cfa_phase(&t, &entries), Ok(want));
        }
        let f = tiff(&[(33422, 1, 4, u32::from_le_bytes([0, 1, 1, 1]))], &[]);
        let t = Tiff {
            bytes: &f,
            le: true,
        };
        assert!(cfa_phase(&t, &t.entries(8).unwrap()).is_err());
    }
}
