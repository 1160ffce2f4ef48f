//! Early write-back for large output files.
//!
//! Every output is flushed to the disk (`fsync`) before it is renamed into
//! place (`write_atomic`). Written in one go and then synced, a 72 MB TIFF
//! first fills the page cache and then waits for the disk to take all of
//! it: on the 2-vCPU machines here the sync alone took ~36 ms of a ~250 ms
//! `process` run. [`Writeback`] asks the kernel to start writing each
//! [`CHUNK`] to the disk as soon as it is in the page cache
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so the
//! disk works while the rest of the file is copied in, and the final sync
//! only waits for the tail. Durability is unchanged: that sync still runs
//! before the rename. Elsewhere than Linux it is a plain pass-through.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

/// Bytes written between two write-back requests (8 MiB).
pub const CHUNK: u64 = 8 << 20;

/// A file writer that starts the disk write-back of every [`CHUNK`] of
/// bytes written at increasing offsets (see the module docs). Seeks pass
/// through; bytes rewritten behind the last request (a header patched at
/// the end) are left to the final sync.
#[derive(Debug)]
pub struct Writeback<'a> {
    file: &'a mut File,
    /// Current file offset, bytes.
    pos: u64,
    /// End of the range already handed to the kernel, bytes.
    requested: u64,
}

impl<'a> Writeback<'a> {
    /// Wraps `file`, positioned at offset 0 (a new, empty file).
    pub fn new(file: &'a mut File) -> Self {
        Writeback {
            file,
            pos: 0,
            requested: 0,
        }
    }

    /// Starts the write-back of `[requested, pos)` once it holds a
    /// [`CHUNK`]. A refusal (a file system without the call) only loses
    /// the overlap: the final sync writes everything anyway.
    fn request(&mut self) {
        if self.pos < self.requested + CHUNK {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(off), Ok(len)) = (
                self.requested.try_into(),
                (self.pos - self.requested).try_into(),
            ) else {
                return;
            };
            // SAFETY: the descriptor is open for the life of `self.file`;
            // the call only reads its arguments and starts I/O on pages of
            // this file.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        self.requested = self.pos;
    }
}

impl Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        self.request();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Writeback<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = self.file.seek(to)?;
        self.pos = at;
        // Bytes behind the last request are not requested again.
        self.requested = self.requested.max(at);
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_and_seeks_like_the_file() {
        let mut tmp = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..(3 * CHUNK as usize + 1234))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        {
            let mut w = Writeback::new(&mut tmp);
            w.write_all(&data[..10]).expect("write");
            for part in data[10..].chunks(1_000_003) {
                w.write_all(part).expect("write");
            }
            // Requested up to a write boundary less than a chunk short
            // of the end.
            assert!(w.requested >= 2 * CHUNK && w.pos - w.requested < CHUNK);
            w.seek(SeekFrom::Start(4)).expect("seek");
            w.write_all(b"abcd").expect("patch");
            assert_eq!(w.pos, 8);
            w.seek(SeekFrom::End(0)).expect("seek");
            w.write_all(b"tail").expect("write");
            w.flush().expect("flush");
        }
        let mut want = data.clone();
        want[4..8].copy_from_slice(b"abcd");
        want.extend_from_slice(b"tail");
        let mut got = Vec::new();
        tmp.seek(SeekFrom::Start(0)).expect("rewind");
        tmp.read_to_end(&mut got).expect("read");
        assert_eq!(got, want);
    }
}
