//! Canon CRW (CIFF) capture settings that rawler does not expose: ISO,
//! shutter, aperture, focal length, capture time and the white-balance
//! index, read the way dcraw / LibRaw's `parse_ciff` reads them.
//!
//! CIFF layout (Canon's "Camera Image File Format" 1997): a heap is a run
//! of values followed by a directory (u16 count, then 10-byte records) whose
//! offset is the heap's last u32. A record is u16 tag (bits 14-15: storage,
//! 0 = in the heap at (size, offset), 0x4000 = 8 bytes in the record; bits
//! 11-13: data type, 0x2800/0x3000 = sub-heap). All little-endian. Every
//! read is bounds-checked: a malformed file yields `None` fields, never a
//! panic.

/// One directory record: tag (storage bits cleared), where its data
/// starts in the file and how many bytes it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub tag: u16,
    pub at: usize,
    pub size: usize,
}

fn le16(b: &[u8], o: usize) -> Option<u16> {
    let s = b.get(o..o.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Whether `bytes` is a CIFF (CRW) file.
pub fn is_ciff(bytes: &[u8]) -> bool {
    bytes.get(6..14) == Some(b"HEAPCCDR")
}

/// Every record of every heap, breadth-first (a heap's own records before
/// its sub-heaps'), at most 4096 heaps and 10 levels deep.
pub fn entries(bytes: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    if !is_ciff(bytes) {
        return out;
    }
    let Some(first) = le32(bytes, 2) else {
        return out;
    };
    let mut heaps = std::collections::VecDeque::from([(first as usize, bytes.len(), 1u32)]);
    let mut visited = 0;
    while let Some((start, end, depth)) = heaps.pop_front() {
        visited += 1;
        if visited > 4096 {
            break;
        }
        let Some(values) = end.checked_sub(4).and_then(|o| le32(bytes, o)) else {
            continue;
        };
        let Some(dir) = start.checked_add(values as usize) else {
            continue;
        };
        let Some(n) = le16(bytes, dir) else {
            continue;
        };
        for i in 0..n as usize {
            let e = dir + 2 + i * 10;
            let Some(p) = le16(bytes, e) else {
                break;
            };
            let (tag, typ) = (p & 0x3fff, p & 0x3800);
            let (size, at) = match p & 0xc000 {
                0x0000 => match (le32(bytes, e + 2), le32(bytes, e + 6)) {
                    (Some(sz), Some(o)) => (sz as usize, (o as usize).saturating_add(start)),
                    _ => break,
                },
                0x4000 => (8, e + 2),
                _ => continue,
            };
            if typ == 0x2800 || typ == 0x3000 {
                if depth < 10 {
                    heaps.push_back((at, at.saturating_add(size), depth + 1));
                }
            } else {
                out.push(Entry { tag, at, size });
            }
        }
    }
    out
}

/// Capture settings of a CRW file (dcraw `parse_ciff` semantics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CiffInfo {
    /// ISO speed (ShotInfo 0x102a: 50 * 2^(v/32 - 4)).
    pub iso: Option<u32>,
    /// Exposure time, seconds (ShotInfo: 2^(-v/32)).
    pub exposure_time: Option<f32>,
    /// f-number (ShotInfo: 2^(v/64)).
    pub f_number: Option<f32>,
    /// Focal length, mm (0x5029 stored in the record, so 0x1029 once the
    /// storage bits are cleared: u16 FocalType, u16 length; a zoom's length
    /// is in the focal units of CameraSettings 0x102d entry 25).
    pub focal_length_mm: Option<f32>,
    /// Capture time, seconds since 1970 in camera-local time (0x180e).
    pub timestamp: Option<u32>,
    /// White-balance index (ShotInfo; 0 = auto, as dcraw clamps > 17 to 0).
    pub wbi: Option<u16>,
    /// Whether the file has a WhiteBalance table (0x10a9), ColorInfo2
    /// (0x102c) and ColorInfo1 (0x0032), and ColorInfo1's size.
    pub has_wb_table: bool,
    pub has_color_info2: bool,
    pub color_info1_size: Option<usize>,
}

impl CiffInfo {
    /// Reads the settings from a CRW file; default (all `None`) when it is
    /// not CIFF.
    pub fn read(bytes: &[u8]) -> CiffInfo {
        let mut info = CiffInfo::default();
        // Focal length in focal units (CameraSettings 0x102d, entry 25)
        // when the lens is a zoom (FocalType 2), as LibRaw.
        let mut focal: Option<(u16, u16)> = None;
        let mut focal_units: Option<u16> = None;
        for e in entries(bytes) {
            match e.tag {
                0x102a if e.size >= 16 => {
                    let u = |k: usize| le16(bytes, e.at + 2 * k);
                    let i = |k: usize| u(k).map(|v| v as i16);
                    if let Some(v) = u(2).filter(|&v| v > 0) {
                        let iso = 50.0 * 2f64.powf(v as f64 / 32.0 - 4.0);
                        info.iso = Some(iso.round() as u32).filter(|&v| v > 0);
                    }
                    info.f_number = i(4)
                        .map(|v| 2f32.powf(v as f32 / 64.0))
                        .filter(|v| v.is_finite() && (0.5..=256.0).contains(v) && *v > 0.7);
                    info.exposure_time = i(5)
                        .map(|v| 2f32.powf(-(v as f32) / 32.0))
                        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e6);
                    info.wbi = u(7).map(|w| if w > 17 { 0 } else { w });
                }
                0x1029 => {
                    focal = le16(bytes, e.at).zip(le16(bytes, e.at + 2));
                }
                0x102d if e.size >= 52 => {
                    focal_units = le16(bytes, e.at + 50).filter(|&u| u > 0);
                }
                0x180e => info.timestamp = le32(bytes, e.at).filter(|&t| t > 0),
                0x10a9 => info.has_wb_table = true,
                0x102c => info.has_color_info2 = true,
                0x0032 => info.color_info1_size = Some(e.size),
                _ => {}
            }
        }
        info.focal_length_mm = focal.and_then(|(typ, v)| {
            let units = if typ == 2 {
                focal_units.unwrap_or(1)
            } else {
                1
            };
            (v > 0).then(|| v as f32 / units as f32)
        });
        info
    }

    /// Whether LibRaw would flag the stored multipliers as unusable: shot
    /// in auto white balance (index 0) with the multipliers taken from the
    /// ColorInfo1 table (EOS D30's 768-byte table, or when no WhiteBalance
    /// table / ColorInfo2 precedes it), which then holds a preset, not the
    /// balance the camera applied. LibRaw sets `cam_mul[0] = -1` and falls
    /// back to its auto white balance.
    pub fn wb_flagged_invalid(&self) -> bool {
        if self.wbi != Some(0) || self.has_wb_table {
            return false;
        }
        match self.color_info1_size {
            Some(768) => true,
            Some(_) => !self.has_color_info2,
            None => false,
        }
    }
}

/// "YYYY:MM:DD HH:MM:SS" for seconds since 1970 (no time zone applied).
pub fn format_timestamp(secs: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}:{m:02}:{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0), "1970:01:01 00:00:00");
        // 2022-01-20 08:13:24 (the G2 sample's EXIF time).
        assert_eq!(format_timestamp(1_642_666_404), "2022:01:20 08:13:24");
        assert_eq!(format_timestamp(951_782_400), "2000:02:29 00:00:00");
    }

    #[test]
    fn garbage_is_not_ciff_and_never_panics() {
        assert!(entries(b"not a crw").is_empty());
        let mut b = vec![0u8; 64];
        b[6..14].copy_from_slice(b"HEAPCCDR");
        b[2..6].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(CiffInfo::read(&b), CiffInfo::default());
        for cut in 0..b.len() {
            let _ = CiffInfo::read(&b[..cut]);
        }
    }

    #[test]
    fn auto_wb_flag_follows_libraw() {
        let d30 = CiffInfo {
            wbi: Some(0),
            color_info1_size: Some(768),
            ..Default::default()
        };
        assert!(d30.wb_flagged_invalid());
        let daylight = CiffInfo {
            wbi: Some(1),
            ..d30.clone()
        };
        assert!(!daylight.wb_flagged_invalid());
        let g2 = CiffInfo {
            wbi: Some(0),
            has_color_info2: true,
            color_info1_size: Some(200),
            ..Default::default()
        };
        assert!(!g2.wb_flagged_invalid());
    }
}
