//! 16-bit TIFF written while the pipeline runs.
//!
//! [`TiffStream`] is a [`SampleStream`]: the fused segment that quantises
//! the output hands it bands of rows as they are made (see
//! [`crate::graph::RunOptions::stream`]), and a writer thread puts them in
//! row order and writes them as the TIFF's strips to the temporary file
//! of an atomic write, starting their disk write-back as it goes
//! ([`super::writeback`]). So the encode, the copy into the page cache and
//! the disk write overlap the computation, and the frame's 72 MB (12 MP)
//! of samples never exist at once. The bytes are those of
//! [`super::write_rgb`] (the same `tiff` encoder, the same strips); the
//! file is synced and renamed into place only when every row arrived.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use tiff::encoder::{colortype::RGB16, TiffEncoder};

use super::writeback::Writeback;
use super::{atomic_temp, commit_atomic};
use crate::error::{Error, Result};
use crate::frame::quantize::{Depth, SampleStream, Samples};

/// What the pipeline side sends the writer thread.
enum Msg {
    Begin {
        width: usize,
        height: usize,
        depth: Depth,
    },
    Rows {
        y0: usize,
        samples: Samples,
    },
}

/// What the writer thread made of the stream: nothing (never begun; its
/// temporary file is gone), or the complete file, not yet synced.
type Written = std::io::Result<Option<tempfile::NamedTempFile>>;

/// A 16-bit RGB TIFF of `path`, written from a stream of sample bands
/// (see the module docs). Pass it as the run's stream, run, then call
/// [`TiffStream::finish`].
#[derive(Debug)]
pub struct TiffStream {
    path: PathBuf,
    tx: Mutex<Option<Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<Written>>>,
}

impl TiffStream {
    /// Creates the temporary file next to `path` and starts the writer.
    pub fn create(path: &Path) -> Result<TiffStream> {
        let tmp = atomic_temp(path)?;
        let (tx, rx) = channel();
        let writer = std::thread::Builder::new()
            .name("tiff-writer".into())
            .spawn(move || write_stream(rx, tmp))
            .map_err(|e| Error::io(path, e))?;
        Ok(TiffStream {
            path: path.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Ends the stream after the run: `Ok(true)` when the image was
    /// streamed whole and is now in place at `path` (synced, renamed),
    /// `Ok(false)` when the run never began the stream (nothing written;
    /// the caller writes the output itself), an error when the stream
    /// began but the file could not be completed.
    pub fn finish(&self) -> Result<bool> {
        drop(take(&self.tx));
        let Some(writer) = take(&self.writer) else {
            return Ok(false);
        };
        let written = writer
            .join()
            .map_err(|_| Error::invalid(format!("{}: TIFF writer failed", self.path.display())))?;
        match written.map_err(|e| Error::io(&self.path, e))? {
            None => Ok(false),
            Some(tmp) => {
                commit_atomic(tmp, &self.path)?;
                Ok(true)
            }
        }
    }

    fn send(&self, msg: Msg) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = tx.as_ref() {
            // A writer that stopped reports why from `finish`.
            let _ = tx.send(msg);
        }
    }
}

/// Takes the value out of a mutex (poisoned or not).
fn take<T>(m: &Mutex<Option<T>>) -> Option<T> {
    m.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl Drop for TiffStream {
    /// An unfinished stream (a failed run) stops its writer, which removes
    /// the temporary file.
    fn drop(&mut self) {
        drop(take(&self.tx));
        if let Some(w) = take(&self.writer) {
            let _ = w.join();
        }
    }
}

impl SampleStream for TiffStream {
    fn begin(&self, width: usize, height: usize, depth: Depth) {
        self.send(Msg::Begin {
            width,
            height,
            depth,
        });
    }

    fn rows(&self, y0: usize, samples: Samples) {
        self.send(Msg::Rows { y0, samples });
    }
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn tiff_io(e: tiff::TiffError) -> std::io::Error {
    match e {
        tiff::TiffError::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// The writer thread: the image's rows, in row order, as TIFF strips.
fn write_stream(rx: Receiver<Msg>, mut tmp: tempfile::NamedTempFile) -> Written {
    let (width, height) = match rx.recv() {
        // Never begun: the caller writes the output itself.
        Err(_) => return Ok(None),
        Ok(Msg::Begin {
            width,
            height,
            depth: Depth::U16,
        }) => (width, height),
        Ok(Msg::Begin { .. }) => return Err(invalid("a 16-bit TIFF needs 16-bit samples")),
        Ok(Msg::Rows { .. }) => return Err(invalid("rows before the image size")),
    };
    let (w, h) = (
        u32::try_from(width).map_err(|_| invalid("image too wide"))?,
        u32::try_from(height).map_err(|_| invalid("image too tall"))?,
    );
    let row = 3 * width;
    {
        let mut bw = BufWriter::new(Writeback::new(tmp.as_file_mut()));
        let mut enc = TiffEncoder::new(&mut bw).map_err(tiff_io)?;
        let mut img = enc.new_image::<RGB16>(w, h).map_err(tiff_io)?;
        // Bands that came before the rows above them, by first row.
        let mut early: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
        // The start of a strip whose rest is in the next band.
        let mut part: Vec<u16> = Vec::new();
        let mut next = 0; // first row not yet written
        while next < height {
            match rx.recv() {
                Ok(Msg::Rows {
                    y0,
                    samples: Samples::U16(v),
                }) if y0 >= next && row > 0 && v.len() % row == 0 => {
                    early.insert(y0, v);
                }
                Ok(_) => return Err(invalid("unexpected rows in the sample stream")),
                Err(_) => return Err(invalid("the pipeline stopped before the last row")),
            }
            while let Some(v) = early.remove(&next) {
                next += v.len() / row;
                if next > height {
                    return Err(invalid("more rows than the image has"));
                }
                let mut data = v.as_slice();
                while !data.is_empty() {
                    let n = usize::try_from(img.next_strip_sample_count())
                        .map_err(|_| invalid("strip too large"))?;
                    if n == 0 {
                        return Err(invalid("more samples than the image has"));
                    }
                    if part.is_empty() && data.len() >= n {
                        img.write_strip(&data[..n]).map_err(tiff_io)?;
                        data = &data[n..];
                        continue;
                    }
                    let take = (n - part.len()).min(data.len());
                    part.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if part.len() == n {
                        img.write_strip(&part).map_err(tiff_io)?;
                        part.clear();
                    }
                }
            }
        }
        img.finish().map_err(tiff_io)?;
        bw.flush()?;
    }
    Ok(Some(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{write_rgb, OutFormat, RgbSamples};

    /// Bands in any order (and sizes that cut strips anywhere) give the
    /// bytes of the whole-image writer.
    #[test]
    fn streamed_tiff_matches_the_whole_image_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h) = (333, 517);
        let px: Vec<u16> = (0..3 * w * h).map(|i| (i * 7919 % 65536) as u16).collect();
        let whole = dir.path().join("whole.tif");
        write_rgb(&whole, w, h, RgbSamples::U16(&px), OutFormat::Tiff16).unwrap();
        let want = std::fs::read(&whole).unwrap();
        for band in [1, 37, 128, h] {
            let starts: Vec<usize> = (0..h).step_by(band).collect();
            // Neighbours swapped (1, 0, 3, 2 ...), and last to first.
            let swapped: Vec<usize> = starts
                .chunks(2)
                .flat_map(|c| c.iter().rev().copied())
                .collect();
            let reversed: Vec<usize> = starts.iter().rev().copied().collect();
            for (k, order) in [swapped, reversed].into_iter().enumerate() {
                let out = dir.path().join(format!("streamed{band}_{k}.tif"));
                let s = TiffStream::create(&out).unwrap();
                s.begin(w, h, Depth::U16);
                for y0 in order {
                    let rows = band.min(h - y0);
                    let v = px[3 * w * y0..3 * w * (y0 + rows)].to_vec();
                    s.rows(y0, Samples::U16(v));
                }
                assert!(s.finish().unwrap(), "band {band}");
                assert_eq!(std::fs::read(&out).unwrap(), want, "band {band} order {k}");
            }
        }
    }

    #[test]
    fn never_begun_writes_nothing_and_a_short_stream_fails() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.tif");
        let s = TiffStream::create(&out).unwrap();
        assert!(!s.finish().unwrap());
        let s = TiffStream::create(&out).unwrap();
        s.begin(4, 4, Depth::U16);
        s.rows(0, Samples::U16(vec![0; 3 * 4 * 2]));
        assert!(s.finish().is_err());
        let s = TiffStream::create(&out).unwrap();
        s.begin(4, 4, Depth::U8);
        assert!(s.finish().is_err());
        drop(s);
        // No output, no temporary left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
