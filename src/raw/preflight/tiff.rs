//! Pre-flight walk of the TIFF structures in a raw file: every directory
//! rawler would read (the file's own TIFF, embedded TIFF headers, maker
//! notes, RAF and MRW blocks), refusing entries whose data would not fit in
//! the file and collecting the image sizes the directories give.

use super::{read_u16, read_u32};

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
pub(super) fn check_tiff_entries(bytes: &[u8]) -> std::result::Result<Vec<(u64, u64)>, String> {
    let mut sizes = Vec::new();
    let mut dng = false;
    if let Some(m) = bytes.get(..2).filter(|m| *m == b"II" || *m == b"MM") {
        dng = walk_tiff(bytes, 0, m == b"II", true, &mut sizes)?;
    }
    // Embedded TIFF headers (maker notes, vendor blocks): rawler's DNG
    // decoder reads none of them, and in a DNG they are most likely pixel
    // data (our own writer stores arbitrary samples), so a DNG skips them.
    // The first 257 such offsets, in file order, found with SIMD substring
    // search (a byte-by-byte scan of a 24 MB DNG took ~40 ms).
    let mut bases = Vec::new();
    if !dng {
        for pat in [b"II*\0", b"MM\0*"] {
            bases.extend(
                memchr::memmem::find_iter(bytes, pat)
                    .filter(|&i| i >= 1)
                    .take(257),
            );
        }
    }
    // CR3 metadata boxes: rawler takes any II/MM there as a TIFF (magic
    // 42, 85 or Olympus' two), so a box's data is a base too.
    bases.extend(
        memchr::memmem::find_iter(bytes, b"CMT")
            .map(|j| j + 4)
            .filter(|&i| {
                matches!(bytes.get(i - 1), Some(b'1'..=b'4'))
                    && i + 4 <= bytes.len()
                    && matches!(bytes.get(i..i + 2), Some(b"II" | b"MM"))
            })
            .take(257),
    );
    bases.sort_unstable();
    bases.dedup();
    bases.truncate(257);
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
