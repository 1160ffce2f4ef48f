//! Frame sizes read from raw headers before any decoder runs, for the
//! formats where rawler allocates the pixels even for a header-only decode:
//! directories as rawler's own TIFF reader sees them (with the Phase One /
//! Leaf IIQ maker note), Apple QuickTake, ARRIRAW and Canon CRW (CIFF).

use rawler::rawsource::RawSource;

use super::{read_u16, read_u32};

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
pub(super) fn check_rawler_tiff(
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
pub(super) fn header_frame_size(src: &RawSource, bytes: &[u8]) -> Option<(u64, u64)> {
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
pub(super) fn ciff_sensor_size(bytes: &[u8]) -> Option<(u64, u64)> {
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

/// Fujifilm models whose RAF rawler rotates 45° (SuperCCD: the cameras
/// with a `fuji_rotation` / `fuji_rotation_alt` hint in rawler 0.8's
/// camera table, by EXIF Model).
const RAF_ROTATED_MODELS: &[&str] = &[
    "DBP for GX680",
    "FinePix E550",
    "FinePix E900",
    "FinePix F700",
    "FinePix S100FS",
    "FinePix S3Pro",
    "FinePix S5000",
    "FinePix S5200",
    "FinePix S5600",
    "FinePix S5Pro",
    "FinePix S6500fd",
    "FinePix S7000",
    "FinePix S9500",
    "FinePix S9600",
    "FinePixS2Pro",
];

/// Frame sizes of a Fujifilm RAF as rawler's RAF decoder reads them, even
/// for a header-only decode (found by fuzzing: a mutated S5Pro stub made it
/// allocate gigabytes): RawImageFullSize (tag 0x100, height then width) of
/// the RAF data block whose offset is at byte 92, and RawImageFullWidth /
/// Height (0xF001 / 0xF002) of the Fuji directory at the offset at byte
/// 100. For the SuperCCD models rawler also allocates the 45°-rotated
/// frame, about (height + width / 2)² pixels: that size is returned too.
pub(super) fn raf_frame_sizes(src: &RawSource, bytes: &[u8]) -> Vec<(u64, u64)> {
    use rawler::formats::tiff::IFD;
    use rawler::tags::TiffCommonTag;
    if !rawler::decoders::raf::is_raf(src) {
        return Vec::new();
    }
    let mut sizes = Vec::new();
    // The RAF data block: u32 count, then (u16 tag, u16 length, data).
    if let Some(off) = read_u32(bytes, 92, false) {
        let n = read_u32(bytes, off as u64, false).unwrap_or(0).min(4000);
        let mut p = off as u64 + 4;
        for _ in 0..n {
            let (Some(tag), Some(len)) = (read_u16(bytes, p, false), read_u16(bytes, p + 2, false))
            else {
                break;
            };
            if tag == 0x100 && len >= 4 {
                if let (Some(h), Some(w)) =
                    (read_u16(bytes, p + 4, false), read_u16(bytes, p + 6, false))
                {
                    sizes.push((w as u64, h as u64));
                }
            }
            p += 4 + len as u64;
        }
    }
    // The Fuji directory (0xF000) of the second TIFF structure.
    if let Some(ioff) = read_u32(bytes, 100, false) {
        if let Ok(ifd) = IFD::new_root_with_correction(&mut src.reader(), 0, ioff, 0, 10, &[0xF000])
        {
            let subs = ifd.sub_ifds().get(&0xF000).cloned().unwrap_or_default();
            for d in std::iter::once(&ifd).chain(subs.iter()) {
                let get = |t: u16| -> Option<u64> {
                    Some(d.entries().get(&t)?.value.get_usize(0).ok()?? as u64)
                };
                if let (Some(w), Some(h)) = (get(0xF001), get(0xF002)) {
                    sizes.push((w, h));
                }
            }
        }
    }
    // The main IFD's Model (the embedded JPEG's TIFF at the offset at byte
    // 84, plus 12), as rawler matches its camera table.
    let rotated = read_u32(bytes, 84, false)
        .and_then(|o| IFD::new_root(&mut src.reader(), o.checked_add(12)?).ok())
        .and_then(|ifd| {
            let m = ifd
                .get_entry(TiffCommonTag::Model)?
                .value
                .as_string()?
                .trim_end()
                .to_string();
            Some(RAF_ROTATED_MODELS.contains(&m.as_str()))
        })
        .unwrap_or(false);
    if rotated {
        let extra: Vec<(u64, u64)> = sizes
            .iter()
            .map(|&(w, h)| {
                let r = (h + w / 2).max(w + h / 2);
                (r, r.saturating_sub(1))
            })
            .collect();
        sizes.extend(extra);
    }
    sizes
}
