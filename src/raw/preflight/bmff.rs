//! Pre-flight walk of ISO BMFF boxes (Canon CR3), as rawler's BMFF reader
//! steps through them: boxes that do not fit their parent and sample tables
//! larger than the file are refused.

use rawler::rawsource::RawSource;

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
pub(super) fn check_bmff_boxes(src: &RawSource, bytes: &[u8]) -> std::result::Result<(), String> {
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
