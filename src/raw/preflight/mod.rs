//! Pre-flight checks of a raw file's bytes, run before rawler sees them.
//!
//! rawler allocates what a file's headers claim before it reads the data,
//! and some of its readers loop on malformed structures; an allocation that
//! fails aborts the process, which no panic guard can catch (found by
//! fuzzing). These checks walk the containers the way rawler will and
//! refuse such files with a typed error, and check every frame size they
//! find against the megapixel limit before a pixel is allocated.
//!
//! - [`tiff`]: TIFF directories (DNG, most camera raws, embedded TIFFs,
//!   maker notes);
//! - [`bmff`]: ISO BMFF boxes (CR3);
//! - [`jfif`]: EXIF JPEG segments (rawler's JFIF reader loops on an
//!   unreadable APP1);
//! - [`header_sizes`]: frame sizes from headers rawler reads its own way
//!   (IIQ, QuickTake, ARRIRAW, CRW, RAF).

mod bmff;
mod header_sizes;
mod jfif;
mod tiff;

use std::path::Path;

use rawler::rawsource::RawSource;

use super::check_dimensions;
use std::sync::Arc;

use super::guard::guarded;
use crate::error::{Error, Result};

/// Runs every pre-flight check on the bytes of a raw file (`path` names it
/// in errors; `max_mp` bounds every frame size found, in megapixels) and
/// returns the [`RawSource`] rawler reads them from.
///
/// The source shares `file` (no copy of the file's bytes is made).
pub(super) fn check(file: &Arc<Vec<u8>>, path: &Path, max_mp: f64) -> Result<RawSource> {
    let bytes: &[u8] = file;
    let shown = path.display().to_string();
    // rawler's DNG decoder decodes (and allocates) the pixels even when
    // asked for the header only, so TIFF image sizes are checked here.
    let sizes = tiff::check_tiff_entries(bytes).map_err(|m| Error::decode(path, m))?;
    for (w, h) in sizes.into_iter().filter(|&(w, h)| w > 0 && h > 0) {
        check_dimensions(&shown, w, h, max_mp)?;
    }
    guarded(|| jfif::check_exif_jpeg(bytes))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|m| Error::decode(path, m))?;
    let src = RawSource::new_from_shared_vec(Arc::clone(file));
    guarded(|| bmff::check_bmff_boxes(&src, bytes))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|m| Error::decode(path, m))?;
    let rawler_sizes = guarded(|| header_sizes::check_rawler_tiff(&src, bytes))
        .map_err(|m| Error::decode(path, m))?
        .map_err(|m| Error::decode(path, m))?;
    // rawler allocates the pixels even for a header-only decode; where the
    // size is not in a TIFF directory (IIQ maker note, CRW heaps, QuickTake
    // and ARRIRAW headers) it is read and checked first.
    let found = rawler_sizes
        .into_iter()
        .chain(header_sizes::ciff_sensor_size(bytes))
        .chain(header_sizes::header_frame_size(&src, bytes))
        .chain(
            guarded(|| header_sizes::raf_frame_sizes(&src, bytes))
                .map_err(|m| Error::decode(path, m))?,
        );
    for (w, h) in found.filter(|&(w, h)| w > 0 && h > 0) {
        check_dimensions(&shown, w, h, max_mp)?;
    }
    Ok(src)
}

/// The u16 at byte `o` (little-endian when `le`); `None` past the end.
pub(super) fn read_u16(bytes: &[u8], o: u64, le: bool) -> Option<u16> {
    let o = usize::try_from(o).ok()?;
    let b = bytes.get(o..o.checked_add(2)?)?;
    let a = [b[0], b[1]];
    Some(if le {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    })
}

/// The u32 at byte `o` (little-endian when `le`); `None` past the end.
pub(super) fn read_u32(bytes: &[u8], o: u64, le: bool) -> Option<u32> {
    let o = usize::try_from(o).ok()?;
    let b = bytes.get(o..o.checked_add(4)?)?;
    let a = [b[0], b[1], b[2], b[3]];
    Some(if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}
