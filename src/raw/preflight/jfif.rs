//! EXIF JPEGs as rawler's JFIF reader walks them.
//!
//! rawler reads a file that starts `FF D8 FF E1` (an EXIF JPEG: Minolta's
//! JPEG-wrapped MRW) with `formats::jfif::Jfif::parse` before choosing a
//! decoder. When it fails to read an APP1 segment it tries the same read
//! again without reading the next marker, so at the end of the file it
//! loops forever (found by fuzzing: 9 bytes `FF D8 FF E1 II*\0 ..`). This
//! walks the segments as that reader does, with rawler's own segment
//! readers, and refuses a file whose APP1 segment cannot be read.

use std::io::{Cursor, Read, Seek, SeekFrom};

use rawler::formats::jfif::{App0, App1, ReadSegment, SOS};

/// The big-endian u16 at the reader's position; `None` at the end.
fn read_marker(r: &mut Cursor<&[u8]>) -> Option<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b).ok()?;
    Some(u16::from_be_bytes(b))
}

/// Refuses an EXIF JPEG (`FF D8 FF E1 ...`) whose APP1 segment rawler's
/// JFIF reader cannot read (it would loop on it forever). Any other file,
/// and any other error of that reader (which it returns), passes.
pub(super) fn check_exif_jpeg(bytes: &[u8]) -> std::result::Result<(), String> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF, 0xE1]) {
        return Ok(());
    }
    let mut r = Cursor::new(bytes);
    let mut marker = read_marker(&mut r);
    while let Some(m) = marker {
        let at = r.position() - 2;
        let readable = match m {
            0xFFD8 => true,
            0xFFD9 => break,
            0xFFE0 => App0::read_segment(&mut r, m).is_ok(),
            0xFFE1 => {
                if App1::read_segment(&mut r, m).is_err() {
                    return Err(format!(
                        "malformed EXIF JPEG: the APP1 segment at byte {at} cannot be read"
                    ));
                }
                true
            }
            0xFFDA => SOS::read_segment(&mut r, m).is_ok(),
            _ => read_marker(&mut r)
                .is_some_and(|len| r.seek(SeekFrom::Current(len as i64 - 2)).is_ok()),
        };
        // rawler stops with an error here: nothing loops.
        if !readable {
            return Ok(());
        }
        marker = read_marker(&mut r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_app1_is_refused_and_plain_files_pass() {
        // The fuzz find: APP1 with a length of 0x4949 and a 3-byte body.
        let hang = [0xFF, 0xD8, 0xFF, 0xE1, b'I', b'I', b'*', 0, 8];
        let e = check_exif_jpeg(&hang).unwrap_err();
        assert!(e.contains("APP1 segment at byte 2"), "{e}");
        // An APP1 that reads (unknown payload), then EOI.
        let ok = [
            0xFF, 0xD8, 0xFF, 0xE1, 0, 8, b'a', b'b', b'c', b'd', b'e', b'f', 0xFF, 0xD9,
        ];
        assert_eq!(check_exif_jpeg(&ok), Ok(()));
        // Not an EXIF JPEG: not walked.
        assert_eq!(check_exif_jpeg(&hang[1..]), Ok(()));
        assert_eq!(check_exif_jpeg(b"II*\0"), Ok(()));
    }
}
