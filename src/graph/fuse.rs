//! The segment runner: a chain of row-kernel stages (see
//! [`super::schedule`]) run as one pass over strips of rows, so the
//! intermediates between its members never exist as whole frames.
//!
//! Three shapes of segment exist:
//! - mosaic kernels only: every row through every member, in place;
//! - mosaic kernels, a demosaic, image kernels: per strip of
//!   [`STRIP_ROWS`] output rows, the mirrored-halo tile is built from the
//!   *input* rows run through the mosaic members, demosaiced straight into
//!   the output planes, and the image members run on those rows while they
//!   are in cache;
//! - image kernels only: every band of rows through every member.
//!
//! Members run the same kernels as their unfused `run_cpu`, so the output
//! is identical to the unfused path (checked by tests/golden.rs). Each
//! member's time is measured per call and summed over threads; the
//! segment's wall time is shared out in those proportions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::backend::cpu::{reflect, Tile};
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value};
use crate::stages::row_kernel::{Header, RowKernel};
use crate::stages::{take_image, take_mosaic, ROWS_PER_TASK};

/// Output rows per strip of a demosaicking segment (even). 16 rows of a
/// 4000-pixel frame keep the tile (~320 KB) and the strip's three output
/// planes (~770 KB) near the L2 cache.
pub const STRIP_ROWS: usize = 16;

/// Strips per parallel work item of a demosaicking segment: a band of
/// strips runs in order, carrying the halo rows from tile to tile.
pub const BAND_STRIPS: usize = 8;

/// A prepared segment: each member's kernel, in order, and the header of
/// the last member's output.
#[derive(Debug)]
pub struct Segment {
    pub kernels: Vec<RowKernel>,
    pub out: Header,
}

/// What the kernels of a segment take and give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Mosaic,
    Demosaic,
    Image,
}

/// Which shape a run of kernels forms; `None` for an order the runner
/// does not handle.
fn classify<'a>(kernels: impl IntoIterator<Item = &'a RowKernel>) -> Option<Shape> {
    let mut shape = Shape::Mosaic;
    for (k, kern) in kernels.into_iter().enumerate() {
        shape = match (shape, kern) {
            (Shape::Mosaic, RowKernel::Mosaic(_)) => Shape::Mosaic,
            (Shape::Mosaic, RowKernel::Demosaic { .. }) => Shape::Demosaic,
            (Shape::Mosaic, RowKernel::Image(_)) if k == 0 => Shape::Image,
            (Shape::Demosaic | Shape::Image, RowKernel::Image(_)) => shape,
            _ => return None,
        };
    }
    Some(shape)
}

impl Segment {
    /// Whether `next` may follow the kernels already here.
    pub fn accepts(&self, next: &RowKernel) -> bool {
        classify(self.kernels.iter().chain(std::iter::once(next))).is_some()
    }

    /// Runs the segment on `input` (the first member's input value).
    /// Returns the last member's value and each member's summed kernel
    /// time in nanoseconds.
    pub fn run(&self, input: Value) -> Result<(Value, Vec<u64>)> {
        let times: Vec<AtomicU64> = self.kernels.iter().map(|_| AtomicU64::new(0)).collect();
        let shape = classify(&self.kernels)
            .ok_or_else(|| Error::invalid("fused segment has kernels in an order it cannot run"))?;
        let out = match shape {
            Shape::Mosaic => {
                let mut m = take_mosaic(input)?;
                self.run_mosaic(&mut m, &times);
                self.out.stamp_mosaic(&mut m);
                Value::Mosaic(m.into())
            }
            Shape::Image => {
                let mut img = take_image(input)?;
                let band = img.width.max(1) * ROWS_PER_TASK;
                let [r, g, b] = img.planes_mut();
                r.par_chunks_mut(band)
                    .zip(g.par_chunks_mut(band))
                    .zip(b.par_chunks_mut(band))
                    .for_each(|((r, g), b)| self.run_image(0, [r, g, b], &times));
                if let Some(space) = self.out.space() {
                    img.space = space;
                }
                img.wb_applied = self.out.wb_applied;
                Value::Image(img.into())
            }
            Shape::Demosaic => {
                let Value::Mosaic(m) = input else {
                    return Err(Error::invalid("fused demosaic segment needs a mosaic"));
                };
                Value::Image(self.out.image(self.run_demosaic(&m, &times)).into())
            }
        };
        Ok((
            out,
            times.iter().map(|t| t.load(Ordering::Relaxed)).collect(),
        ))
    }

    /// Mosaic members over every row, in place.
    fn run_mosaic(&self, m: &mut Mosaic, times: &[AtomicU64]) {
        let w = m.width;
        if w == 0 {
            return;
        }
        m.data
            .par_chunks_mut(w * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (k, kern) in self.kernels.iter().enumerate() {
                    let RowKernel::Mosaic(f) = kern else { continue };
                    let t0 = Instant::now();
                    for (r, row) in rows.chunks_exact_mut(w).enumerate() {
                        f(chunk * ROWS_PER_TASK + r, row);
                    }
                    add(&times[k], t0);
                }
            });
    }

    /// Image members from kernel index `from` on, over one band of rows.
    fn run_image(&self, from: usize, [r, g, b]: [&mut [f32]; 3], times: &[AtomicU64]) {
        for (k, kern) in self.kernels.iter().enumerate().skip(from) {
            let RowKernel::Image(f) = kern else { continue };
            let t0 = Instant::now();
            f([&mut *r, &mut *g, &mut *b]);
            add(&times[k], t0);
        }
    }

    /// Mosaic members, demosaic and image members, strip by strip; returns
    /// the planar output.
    fn run_demosaic(&self, m: &Mosaic, times: &[AtomicU64]) -> Vec<f32> {
        let (w, h) = (m.width, m.height);
        let n = w * h;
        let mut out = vec![0f32; 3 * n];
        let dm = self
            .kernels
            .iter()
            .position(|k| matches!(k, RowKernel::Demosaic { .. }))
            .unwrap_or(0);
        let RowKernel::Demosaic { halo, f: demosaic } = &self.kernels[dm] else {
            return out;
        };
        let halo = *halo;
        if w == 0 || h == 0 {
            return out;
        }
        // Bands of strips in parallel; inside a band the strips run in
        // order and each tile takes its top halo rows from the bottom of
        // the previous tile instead of recomputing them.
        let band = w * STRIP_ROWS * BAND_STRIPS;
        let (r, gb) = out.split_at_mut(n);
        let (g, b) = gb.split_at_mut(n);
        r.par_chunks_mut(band)
            .zip(g.par_chunks_mut(band))
            .zip(b.par_chunks_mut(band))
            .enumerate()
            .for_each(|(i, ((r, g), b))| {
                let tw = w + 2 * halo;
                let mut data: Vec<f32> = Vec::new();
                let mut prev_rows = 0; // rows of the tile in `data`
                let strip = w * STRIP_ROWS;
                for (s, ((r, g), b)) in r
                    .chunks_mut(strip)
                    .zip(g.chunks_mut(strip))
                    .zip(b.chunks_mut(strip))
                    .enumerate()
                {
                    let y0 = i * STRIP_ROWS * BAND_STRIPS + s * STRIP_ROWS;
                    let rows = r.len() / w;
                    let th = rows + 2 * halo;
                    // Carried rows: image rows y0 - halo .. y0 + halo.
                    let carried = if prev_rows >= 2 * halo && s > 0 {
                        data.copy_within((prev_rows - 2 * halo) * tw..prev_rows * tw, 0);
                        2 * halo
                    } else {
                        0
                    };
                    data.resize(th * tw, 0.0);
                    for ty in carried..th {
                        let sy = reflect(y0 as isize + ty as isize - halo as isize, h as isize);
                        let dst = &mut data[ty * tw..(ty + 1) * tw];
                        dst[halo..halo + w].copy_from_slice(&m.data[sy * w..(sy + 1) * w]);
                        for (k, kern) in self.kernels[..dm].iter().enumerate() {
                            if let RowKernel::Mosaic(f) = kern {
                                let t0 = Instant::now();
                                f(sy, &mut dst[halo..halo + w]);
                                add(&times[k], t0);
                            }
                        }
                        for k in 0..halo {
                            dst[halo - 1 - k] = dst[halo + reflect(-(k as isize) - 1, w as isize)];
                            dst[halo + w + k] = dst[halo + reflect((w + k) as isize, w as isize)];
                        }
                    }
                    // As backend::cpu::make_tile: the halo is even, so the
                    // tile's phase follows from the strip's first row.
                    let tile = Tile {
                        w: tw,
                        h: th,
                        data: std::mem::take(&mut data),
                        cfa: m.cfa.shifted(halo % 2, (y0 + halo) % 2),
                        halo,
                    };
                    let t0 = Instant::now();
                    demosaic(&tile, [&mut *r, &mut *g, &mut *b]);
                    add(&times[dm], t0);
                    data = tile.data;
                    prev_rows = th;
                    self.run_image(dm + 1, [r, g, b], times);
                }
            });
        out
    }
}

/// Adds the time since `t0` to a member's counter.
#[inline]
fn add(counter: &AtomicU64, t0: Instant) {
    counter.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
}
