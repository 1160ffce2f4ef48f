//! The segment runner: a chain of row-kernel stages (see
//! [`super::schedule`]) run as one pass over strips of rows, so the
//! intermediates between its members never exist as whole frames.
//!
//! Three shapes of segment exist:
//! - mosaic kernels only: every row through every member, in place;
//! - mosaic kernels, a demosaic, image kernels: per strip of
//!   output rows (the demosaic's `strip_rows`), the mirrored-halo tile is built from the
//!   *input* rows (integer samples widened to f32 on the way) run through the mosaic members, demosaiced straight into
//!   the output planes, and the image members run on those rows while they
//!   are in cache;
//! - image kernels only: every band of rows through every member.
//!
//! A demosaicking segment may hold one image stencil (`sharpen`,
//! `false_color_suppress`), followed by image kernels only: each band then
//! also demosaics the stencil's halo rows beyond its ends, keeps the
//! strips of the members before the stencil while the stencil still needs
//! them, and the stencil writes the band's output rows once their context
//! below exists; the image kernels after it run on those rows, and an
//! encoder last (`yuv_encode`) takes them from the scratch in whole row
//! groups while they are in cache.
//!
//! A mosaic stencil (`defect_correct`) may be one of the mosaic members:
//! in a demosaicking segment the rows the members before it made are kept
//! ([`MosaicRows`]) while it needs them; a mosaic-only segment with one
//! makes the new mosaic's rows in chunks of [`STENCIL_ROWS`] and corrects
//! each chunk in place, writing only the samples the stencil changes
//! ([`Segment::stencil_chunk`]).
//!
//! Members run the same kernels as their unfused `run_cpu`, so the output
//! is identical to the unfused path (checked by tests/golden.rs). Each
//! member's time is measured per call and summed over threads; the
//! segment's wall time is shared out in those proportions.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::backend::cpu::{reflect, Tile};
use crate::error::{Error, Result};
use crate::frame::quantize::{
    par_samples, quantize_rows, Depth, EncodedImage, RowsOut, SampleStream, Samples,
};
use crate::frame::{ColorSpace, Mosaic, SensorSamples, Value};
use crate::stages::row_kernel::{Encoder, Header, RowKernel, RowSource, StencilCarry};
use crate::stages::{take_image, take_mosaic, ROWS_PER_TASK};

/// Output rows per parallel work item of a demosaicking segment: a band
/// of strips (each the demosaic's `strip_rows`: 16 rows of a 4000-pixel
/// frame keep the bilinear tile, ~320 KB, and the strip's three output
/// planes, ~770 KB, near the L2 cache) runs in order, carrying the halo
/// rows from tile to tile.
pub const BAND_ROWS: usize = 128;

/// Mosaic rows per parallel chunk of a mosaic-only segment with a
/// stencil: 32 rows of a 4000-wide f32 mosaic (512 KB) stay in the L2
/// cache from widening to correction, and the stencil's context rows
/// made twice (2 above, 2 below for `defect_correct`) add 1/8 to the
/// members before it.
pub const STENCIL_ROWS: usize = 32;

/// A prepared segment: each member's kernel, in order, and the header of
/// the last member's output.
#[derive(Debug)]
pub struct Segment {
    pub kernels: Vec<RowKernel>,
    pub out: Header,
    /// Quantise the segment's image output to integer samples as its last
    /// step (the executor sets this when the value goes straight to a
    /// pipeline output and the run asks for delivered samples).
    pub deliver: Option<Depth>,
    /// With `deliver`: hand the quantised bands to this stream as they are
    /// made instead of keeping the frame (see
    /// [`crate::graph::RunOptions::stream`]; demosaicking segments only).
    pub stream: Option<Arc<dyn SampleStream>>,
}

/// What the kernels of a segment take and give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Mosaic,
    /// Mosaic members with a mosaic stencil among them.
    MosaicStencil,
    Demosaic,
    Image,
    /// A demosaic segment with an image stencil, then image kernels
    /// only.
    Stencil,
    /// A demosaic segment ending in an encoder.
    Encode,
}

/// Which shape a run of kernels forms; `None` for an order the runner
/// does not handle.
fn classify<'a>(kernels: impl IntoIterator<Item = &'a RowKernel>) -> Option<Shape> {
    let mut shape = Shape::Mosaic;
    for (k, kern) in kernels.into_iter().enumerate() {
        shape = match (shape, kern) {
            (Shape::Mosaic, RowKernel::Mosaic(_)) => Shape::Mosaic,
            (Shape::Mosaic, RowKernel::MosaicStencil { .. })
            | (Shape::MosaicStencil, RowKernel::Mosaic(_)) => Shape::MosaicStencil,
            (Shape::Mosaic | Shape::MosaicStencil, RowKernel::Demosaic { .. }) => Shape::Demosaic,
            (Shape::Mosaic, RowKernel::Image(_)) if k == 0 => Shape::Image,
            (Shape::Demosaic | Shape::Image, RowKernel::Image(_)) => shape,
            (Shape::Demosaic, RowKernel::Stencil { .. }) => Shape::Stencil,
            (Shape::Stencil, RowKernel::Image(_)) => Shape::Stencil,
            (Shape::Demosaic | Shape::Stencil, RowKernel::Encode(_)) => Shape::Encode,
            _ => return None,
        };
    }
    Some(shape)
}

impl Segment {
    /// Whether the segment's value is an image (not an encoder's value),
    /// which the runner may deliver as quantised samples.
    pub fn makes_image(&self) -> bool {
        !matches!(self.kernels.last(), Some(RowKernel::Encode(_)))
    }

    /// Whether `next` may follow the kernels already here.
    pub fn accepts(&self, next: &RowKernel) -> bool {
        classify(self.kernels.iter().chain(std::iter::once(next))).is_some()
    }

    /// Runs the segment on `input` (the first member's input value).
    /// Returns the last member's value and each member's summed kernel
    /// time in nanoseconds, then (with `deliver`) the quantisation's.
    pub fn run(&self, input: Value) -> Result<(Value, Vec<u64>)> {
        let slots = self.kernels.len() + usize::from(self.deliver.is_some());
        let times: Vec<AtomicU64> = (0..slots).map(|_| AtomicU64::new(0)).collect();
        let shape = classify(&self.kernels)
            .ok_or_else(|| Error::invalid("fused segment has kernels in an order it cannot run"))?;
        let out = match shape {
            Shape::Mosaic | Shape::MosaicStencil => {
                let mut m = take_mosaic(input)?;
                self.run_mosaic(&mut m, &times);
                self.out.stamp_mosaic(&mut m);
                Value::Mosaic(m.into())
            }
            Shape::Image => {
                let mut img = take_image(input)?;
                if let Some(space) = self.out.space() {
                    img.space = space;
                }
                img.wb_applied = self.out.wb_applied;
                match self.deliver {
                    None => {
                        let band = img.width.max(1) * ROWS_PER_TASK;
                        let [r, g, b] = img.planes_mut();
                        r.par_chunks_mut(band)
                            .zip(g.par_chunks_mut(band))
                            .zip(b.par_chunks_mut(band))
                            .for_each(|((r, g), b)| {
                                self.run_image(0, usize::MAX, [r, g, b], &times)
                            });
                        Value::Image(img.into())
                    }
                    Some(depth) => Value::Encoded(self.image_encoded(img, depth, &times).into()),
                }
            }
            Shape::Demosaic | Shape::Stencil | Shape::Encode => {
                let Value::Mosaic(m) = input else {
                    return Err(Error::invalid("fused demosaic segment needs a mosaic"));
                };
                match self.run_demosaic(&m, &times, self.deliver) {
                    Pixels::Planes(data) => Value::Image(self.out.image(data).into()),
                    Pixels::Value(v) => v,
                    Pixels::Streamed(depth) => Value::Encoded(
                        EncodedImage {
                            width: m.width,
                            height: m.height,
                            space: self.out.space().unwrap_or(ColorSpace::Camera),
                            samples: match depth {
                                Depth::U8 => Samples::U8(Vec::new()),
                                Depth::U16 => Samples::U16(Vec::new()),
                            },
                            meta: self.out.meta.clone(),
                        }
                        .into(),
                    ),
                    Pixels::Samples(samples) => Value::Encoded(
                        EncodedImage {
                            width: m.width,
                            height: m.height,
                            space: self.out.space().unwrap_or(ColorSpace::Camera),
                            samples,
                            meta: self.out.meta.clone(),
                        }
                        .into(),
                    ),
                }
            }
        };
        Ok((
            out,
            times.iter().map(|t| t.load(Ordering::Relaxed)).collect(),
        ))
    }

    /// Mosaic members over every row, in place; into a new mosaic when a
    /// stencil is among them (it reads rows its neighbours rewrite), made
    /// chunk by chunk ([`Segment::stencil_chunk`]).
    fn run_mosaic(&self, m: &mut Mosaic, times: &[AtomicU64]) {
        let w = m.width;
        if w == 0 {
            return;
        }
        let stencil = self
            .kernels
            .iter()
            .enumerate()
            .find_map(|(k, kern)| match kern {
                RowKernel::MosaicStencil { halo, .. } => Some((k, *halo)),
                _ => None,
            });
        if let Some((sk, halo)) = stencil {
            let src: &Mosaic = m;
            let out = crate::memory::par_made(src.height * w, w * STENCIL_ROWS, |chunk, buf| {
                // The input rows widened straight into the new mosaic.
                let own = src.data.copy_f32_uninit(chunk * STENCIL_ROWS * w, buf);
                self.stencil_chunk(src, chunk * STENCIL_ROWS, own, (sk, halo), times);
                own
            });
            m.data = SensorSamples::F32(out);
            return;
        }
        m.data
            .f32_mut()
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

    /// The mosaic members on the rows `y0 ..` of a mosaic-only segment
    /// with a stencil (member `sk`, `halo` rows of context): `own` holds
    /// those rows of `src` (as floats) and ends holding the segment's
    /// output. The members before the stencil run on `own` in place; the
    /// context rows above and below the chunk are made from `src` the
    /// same way into scratch rows; the stencil lists each row's edits
    /// while `own` is only read, and they are written after its last row
    /// (so every row reads its neighbours' values before correction); the
    /// members after it then run on `own`.
    fn stencil_chunk(
        &self,
        src: &Mosaic,
        y0: usize,
        own: &mut [f32],
        (sk, halo): (usize, usize),
        times: &[AtomicU64],
    ) {
        let (w, h) = (src.width, src.height);
        let y1 = y0 + own.len() / w;
        for (r, row) in own.chunks_exact_mut(w).enumerate() {
            point_members(&self.kernels, 0..sk, y0 + r, row, times);
        }
        let Some(RowKernel::MosaicStencil { f, .. }) = self.kernels.get(sk) else {
            return;
        };
        let at = |t: isize| reflect(t, h as isize);
        // Context rows outside the chunk (mirrored), made once each.
        let mut outside: Vec<(usize, Vec<f32>)> = Vec::new();
        let (above, below) = (
            y0 as isize - halo as isize..y0 as isize,
            y1 as isize..(y1 + halo) as isize,
        );
        for r in above.chain(below).map(at) {
            if (y0..y1).contains(&r) || outside.iter().any(|o| o.0 == r) {
                continue;
            }
            let mut row = vec![0f32; w];
            src.data.copy_f32(r * w, &mut row);
            point_members(&self.kernels, 0..sk, r, &mut row, times);
            outside.push((r, row));
        }
        // Edits as (offset in `own`, value).
        let mut edits: Vec<(usize, f32)> = Vec::new();
        {
            let own: &[f32] = own;
            let row = |r: usize| -> &[f32] {
                if (y0..y1).contains(&r) {
                    &own[(r - y0) * w..(r - y0 + 1) * w]
                } else {
                    outside.iter().find(|o| o.0 == r).map_or(&[], |o| &o.1)
                }
            };
            let mut win: Vec<&[f32]> = Vec::with_capacity(2 * halo + 1);
            let mut row_edits = Vec::new();
            let t0 = Instant::now();
            for y in y0..y1 {
                win.clear();
                win.extend((0..=2 * halo).map(|t| row(at((y + t) as isize - halo as isize))));
                row_edits.clear();
                f(y, &win, None, &mut row_edits);
                let base = (y - y0) * w;
                let valid = row_edits.iter().filter(|e| e.0 < w);
                edits.extend(valid.map(|&(x, v)| (base + x, v)));
            }
            add(&times[sk], t0);
        }
        for (i, v) in edits {
            own[i] = v;
        }
        for (r, row) in own.chunks_exact_mut(w).enumerate() {
            point_members(
                &self.kernels,
                sk + 1..self.kernels.len(),
                y0 + r,
                row,
                times,
            );
        }
    }

    /// Image members over `img` band by band, each band copied into a
    /// reused scratch strip, run there while in cache and quantised into
    /// the output samples (the input frame is only read).
    fn image_encoded(
        &self,
        img: crate::frame::Image,
        depth: Depth,
        times: &[AtomicU64],
    ) -> EncodedImage {
        let w = img.width.max(1);
        let rows = ROWS_PER_TASK;
        let [pr, pg, pb] = img.planes();
        let band = |i: usize, out: RowsOut| {
            let span = i * rows * w..((i + 1) * rows * w).min(pr.len());
            let len = span.len();
            let mut scratch = Vec::with_capacity(3 * len);
            for p in [pr, pg, pb] {
                scratch.extend_from_slice(&p[span.clone()]);
            }
            let (r, gb) = scratch.split_at_mut(len);
            let (g, b) = gb.split_at_mut(len);
            self.run_image(0, usize::MAX, [&mut *r, &mut *g, &mut *b], times);
            let t0 = Instant::now();
            quantize_rows([&*r, &*g, &*b], out);
            add(&times[self.kernels.len()], t0);
        };
        let samples = par_samples(depth, 3 * pr.len(), 3 * rows * w, band);
        EncodedImage {
            width: img.width,
            height: img.height,
            space: img.space,
            samples,
            meta: img.meta.clone(),
        }
    }

    /// Image members of kernel indices `from..to`, over one band of rows.
    fn run_image(&self, from: usize, to: usize, [r, g, b]: [&mut [f32]; 3], times: &[AtomicU64]) {
        for (k, kern) in self.kernels.iter().enumerate().take(to).skip(from) {
            let RowKernel::Image(f) = kern else { continue };
            let t0 = Instant::now();
            f([&mut *r, &mut *g, &mut *b]);
            add(&times[k], t0);
        }
    }

    /// Mosaic members, demosaic and image members, strip by strip; returns
    /// the planar output, or the quantised samples when `deliver` is set
    /// (the float rows then live only in a per-band scratch strip).
    fn run_demosaic(&self, m: &Mosaic, times: &[AtomicU64], deliver: Option<Depth>) -> Pixels {
        let (w, h) = (m.width, m.height);
        let n = w * h;
        let dm = self
            .kernels
            .iter()
            .position(|k| matches!(k, RowKernel::Demosaic { .. }))
            .unwrap_or(0);
        let (halo, strip, demosaic) = match &self.kernels[dm] {
            RowKernel::Demosaic {
                halo,
                strip_rows,
                f,
            } if w > 0 && h > 0 => (*halo, (*strip_rows).max(2) & !1, f),
            _ => {
                return match self.kernels.last() {
                    Some(RowKernel::Encode(enc)) => Pixels::Value((enc.finish)(
                        enc.planes.iter().map(|&(_, n)| vec![0; n]).collect(),
                    )),
                    _ => Pixels::empty(n, deliver),
                }
            }
        };
        let cut = Cut {
            halo,
            strip,
            band_rows: BAND_ROWS.div_ceil(strip) * strip,
        };
        let run = |i: usize, sink: Sink| self.demosaic_band(m, times, dm, cut, demosaic, i, sink);
        if let Some(RowKernel::Encode(enc)) = self.kernels.last() {
            // The encoder's planes, cut into the parts each band owns. They
            // are not zeroed up front (one serial pass over 36 MB for 12 MP
            // NV12): each band zeroes its parts just before encoding into
            // them, so their fresh pages are first touched in parallel.
            let mut planes: Vec<Vec<u16>> = enc
                .planes
                .iter()
                .map(|&(_, n)| Vec::with_capacity(n))
                .collect();
            let bands = h.div_ceil(cut.band_rows);
            let mut parts: Vec<Vec<&mut [MaybeUninit<u16>]>> =
                (0..bands).map(|_| Vec::new()).collect();
            for ((plane, &(_, n)), span) in planes
                .iter_mut()
                .zip(&enc.planes)
                .zip(enc.span(0, cut.band_rows))
            {
                let mut chunks = plane.spare_capacity_mut()[..n].chunks_mut(span.len().max(1));
                for band in parts.iter_mut() {
                    if let Some(part) = chunks.next() {
                        band.push(part);
                    }
                }
                // None are left (a plane has one part per band); zeroed
                // here if there were.
                for rest in chunks {
                    crate::memory::zero_in_place(rest);
                }
            }
            parts.into_par_iter().enumerate().for_each(|(i, parts)| {
                let rows = cut.band_rows.min(h - i * cut.band_rows);
                let parts = parts
                    .into_iter()
                    .map(crate::memory::zero_in_place)
                    .collect();
                run(i, Sink::Encode { rows, parts, enc })
            });
            for (plane, &(_, n)) in planes.iter_mut().zip(&enc.planes) {
                // SAFETY: the plane's first `n` elements are its parts,
                // every one of them initialised by `zero_in_place` (in its
                // band or just above) before the encoder wrote into it.
                unsafe { plane.set_len(n) };
            }
            return Pixels::Value((enc.finish)(planes));
        }
        // Bands of strips in parallel (see `demosaic_band`).
        let band = w * cut.band_rows;
        match deliver {
            None => {
                // The output is not zeroed up front (one serial pass over
                // 144 MB at 12 MP): each strip zeroes its rows just before
                // the demosaic writes them, while they are in cache.
                let mut out: Vec<f32> = Vec::with_capacity(3 * n);
                let (r, gb) = out.spare_capacity_mut()[..3 * n].split_at_mut(n);
                let (g, b) = gb.split_at_mut(n);
                r.par_chunks_mut(band)
                    .zip(g.par_chunks_mut(band))
                    .zip(b.par_chunks_mut(band))
                    .enumerate()
                    .for_each(|(i, ((r, g), b))| run(i, Sink::Planes([r, g, b])));
                // SAFETY: the bands cover all 3 * n elements and every
                // strip initialised its rows (`zero_in_place`) before
                // writing them.
                unsafe { out.set_len(3 * n) };
                Pixels::Planes(out)
            }
            Some(depth) => match &self.stream {
                None => Pixels::Samples(par_samples(depth, 3 * n, 3 * band, |i, o| {
                    run(i, Sink::Samples(o))
                })),
                Some(stream) => {
                    // Bands are taken in row order (`par_bridge` hands
                    // them out one at a time), each quantised into its own
                    // buffer and passed on; the frame's samples never
                    // exist whole.
                    stream.begin(w, h, depth);
                    (0..h.div_ceil(cut.band_rows)).par_bridge().for_each(|i| {
                        let y0 = i * cut.band_rows;
                        let len = 3 * w * cut.band_rows.min(h - y0);
                        let samples = match depth {
                            Depth::U8 => {
                                let mut o = vec![0u8; len];
                                run(i, Sink::Samples(RowsOut::U8(&mut o)));
                                Samples::U8(o)
                            }
                            Depth::U16 => {
                                let mut o = vec![0u16; len];
                                run(i, Sink::Samples(RowsOut::U16(&mut o)));
                                Samples::U16(o)
                            }
                        };
                        stream.rows(y0, samples);
                    });
                    Pixels::Streamed(depth)
                }
            },
        }
    }

    /// Band `i` of a demosaicking segment: its strips in order, each tile
    /// taking its top halo rows from the bottom of the previous tile
    /// instead of recomputing them, the strip's rows written to `sink`
    /// (through the stencil and the image kernels after it, when the
    /// segment has one; into the scratch, the stencil's calls cover
    /// [`SCRATCH_BYTES`] of rows each, so what it writes is still cached
    /// when the quantiser reads it and when it writes the scratch again).
    #[allow(clippy::too_many_arguments)]
    fn demosaic_band(
        &self,
        m: &Mosaic,
        times: &[AtomicU64],
        dm: usize,
        cut: Cut,
        demosaic: &crate::stages::row_kernel::DemosaicFn,
        i: usize,
        sink: Sink,
    ) {
        let (w, h) = (m.width, m.height);
        let Cut { halo, strip, .. } = cut;
        let tw = w + 2 * halo;
        let b0 = i * cut.band_rows;
        let b1 = b0 + sink.rows(w);
        let last = self.kernels.len() - 1;
        // The stencil's index, halo and kernel, if the segment has one.
        let stencil = self
            .kernels
            .iter()
            .enumerate()
            .find_map(|(k, kern)| match kern {
                RowKernel::Stencil { halo, f } => Some((k, *halo, f)),
                _ => None,
            });
        // Image members before the stencil (all of them without one).
        let pre = stencil.map_or(self.kernels.len(), |(st, _, _)| st);
        // Rows demosaiced: the band's, plus the stencil's context beyond
        // its ends (even, so strips keep their Bayer row parity).
        let extra = stencil.map_or(0, |(_, sh, _)| sh + sh % 2);
        let (ys, ye) = (b0.saturating_sub(extra), (b1 + extra).min(h));
        let mut made = MosaicRows::new(&self.kernels[..dm], m);
        // This thread's buffers from its last band (taken, so a band run
        // re-entrantly on the same thread starts with empty ones).
        let (mut data, mut scratch, spare, mut carry) =
            BAND_BUFS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        // The stencil's calls on this band continue from one another.
        carry.restart();
        let mut prev_rows = 0; // rows of the tile in `data`
        let mut sink = sink;
        let mut kept = Strips {
            strips: Default::default(),
            spare,
        };
        let mut next_out = b0; // first band row the stencil has not written
        let mut y0 = ys;
        while y0 < ye {
            // A short last strip (the stencil's extra rows below a band)
            // would cost a whole halo for a few rows: fold it into this
            // one.
            let left = ye - y0;
            let rows = if left < strip + strip / 4 {
                left
            } else {
                strip
            };
            let th = rows + 2 * halo;
            // Carried rows: image rows y0 - halo .. y0 + halo.
            let carried = if prev_rows >= 2 * halo && y0 > ys {
                data.copy_within((prev_rows - 2 * halo) * tw..prev_rows * tw, 0);
                2 * halo
            } else {
                0
            };
            data.resize(th * tw, 0.0);
            for ty in carried..th {
                let sy = reflect(y0 as isize + ty as isize - halo as isize, h as isize);
                let dst = &mut data[ty * tw..(ty + 1) * tw];
                // u16 DN are widened there, row by row (exact).
                made.row(sy, &mut dst[halo..halo + w], times);
                for k in 0..halo {
                    dst[halo - 1 - k] = dst[halo + reflect(-(k as isize) - 1, w as isize)];
                    dst[halo + w + k] = dst[halo + reflect((w + k) as isize, w as isize)];
                }
            }
            // As backend::cpu::make_tile: the halo is even, so the tile's
            // phase follows from the strip's first row.
            let tile = Tile {
                w: tw,
                h: th,
                data: std::mem::take(&mut data),
                cfa: m.cfa.shifted(halo % 2, (y0 + halo) % 2),
                halo,
            };
            let Some((st, sh, f)) = stencil else {
                if let Sink::Encode { parts, enc, .. } = &mut sink {
                    // The strip's rows in the scratch, then encoded.
                    let [r, g, b] = planes3(&mut scratch, rows * w);
                    let t0 = Instant::now();
                    demosaic(&tile, [&mut *r, &mut *g, &mut *b]);
                    add(&times[dm], t0);
                    self.run_image(dm + 1, pre, [&mut *r, &mut *g, &mut *b], times);
                    let t0 = Instant::now();
                    encode_into(enc, parts, y0 - b0, y0, rows, [&*r, &*g, &*b]);
                    add(&times[last], t0);
                } else {
                    let span = (y0 - b0) * w..(y0 - b0 + rows) * w;
                    let ([r, g, b], quantized) = sink.strip(span, &mut scratch);
                    let t0 = Instant::now();
                    demosaic(&tile, [&mut *r, &mut *g, &mut *b]);
                    add(&times[dm], t0);
                    self.run_image(dm + 1, pre, [&mut *r, &mut *g, &mut *b], times);
                    if let Some(q) = quantized {
                        let t0 = Instant::now();
                        quantize_rows([&*r, &*g, &*b], q);
                        add(&times[last + 1], t0);
                    }
                }
                data = tile.data;
                prev_rows = th;
                y0 += rows;
                continue;
            };
            {
                let [r, g, b] = kept.push(y0, rows, w);
                let t0 = Instant::now();
                demosaic(&tile, [&mut *r, &mut *g, &mut *b]);
                add(&times[dm], t0);
                self.run_image(dm + 1, pre, [&mut *r, &mut *g, &mut *b], times);
            }
            data = tile.data;
            prev_rows = th;
            y0 += rows;
            // Band rows whose context is all here (the frame's last rows
            // mirror rows above them).
            let mut ready = if y0 >= h {
                b1
            } else {
                b1.min(y0.saturating_sub(sh))
            };
            // Rows into the scratch (quantised output, the encoder) go a
            // few at a time, so the stencil's output is still in the L2
            // cache when the members after it, the quantiser or the
            // encoder read it and when the stencil writes the scratch
            // again (its carry continues from call to call); rows into
            // the output planes go at once.
            let mut step = match sink {
                Sink::Planes(_) => usize::MAX,
                _ => (SCRATCH_BYTES / (12 * w.max(1))).max(1),
            };
            if let Sink::Encode { enc, .. } = &sink {
                // The encoder takes whole groups of rows (from the band's
                // first row, a multiple of the strip height), but for the
                // band's end.
                let g = enc.group.max(1);
                step = step.div_ceil(g) * g;
                if ready < b1 {
                    ready = b0 + (ready.max(b0) - b0) / g * g;
                }
            }
            while ready > next_out {
                let end = ready.min(next_out.saturating_add(step));
                let span = (next_out - b0) * w..(end - b0) * w;
                let rows = Rows { kept: &kept, w, h };
                if let Sink::Encode { parts, enc, .. } = &mut sink {
                    let [r, g, b] = planes3(&mut scratch, span.len());
                    let t0 = Instant::now();
                    f(&rows, next_out, [&mut *r, &mut *g, &mut *b], &mut carry);
                    add(&times[st], t0);
                    self.run_image(st + 1, usize::MAX, [&mut *r, &mut *g, &mut *b], times);
                    let t0 = Instant::now();
                    let rgb = [&*r, &*g, &*b];
                    encode_into(enc, parts, next_out - b0, next_out, end - next_out, rgb);
                    add(&times[last], t0);
                    next_out = end;
                    continue;
                }
                let ([r, g, b], quantized) = sink.strip(span, &mut scratch);
                let t0 = Instant::now();
                f(&rows, next_out, [&mut *r, &mut *g, &mut *b], &mut carry);
                add(&times[st], t0);
                self.run_image(st + 1, usize::MAX, [&mut *r, &mut *g, &mut *b], times);
                if let Some(q) = quantized {
                    let t0 = Instant::now();
                    quantize_rows([&*r, &*g, &*b], q);
                    add(&times[last + 1], t0);
                }
                next_out = end;
            }
            kept.drop_below(next_out.saturating_sub(sh));
        }
        let mut spare = kept.spare;
        spare.extend(kept.strips.into_iter().map(|(_, _, buf)| buf));
        BAND_BUFS.with(|b| *b.borrow_mut() = (data, scratch, spare, carry));
    }
}

/// Encodes image rows `y0 .. y0 + rows` (`rgb`, `rows` rows each; row
/// `band_y` of their band) into the band's `parts` of the encoder's planes.
fn encode_into(
    enc: &Encoder,
    parts: &mut [&mut [u16]],
    band_y: usize,
    y0: usize,
    rows: usize,
    rgb: [&[f32]; 3],
) {
    let mut sub: Vec<&mut [u16]> = parts
        .iter_mut()
        .zip(enc.span(band_y, rows))
        .map(|(p, s)| {
            let n = p.len();
            &mut p[s.start.min(n)..s.end.min(n)]
        })
        .collect();
    (enc.f)(y0, rgb, &mut sub);
}

/// Bytes of float rows (R, G, B) per stencil call of
/// [`Segment::demosaic_band`] into its scratch: a fraction of an L2 cache.
const SCRATCH_BYTES: usize = 256 * 1024;

/// The band buffers of [`Segment::demosaic_band`]: the tile rows, the
/// scratch strip, the stencil's spare strips and its carry (restarted per
/// band). Kept per thread from band to band and frame to frame, so a band
/// does not allocate and zero them again (every sample is written before
/// it is read).
type BandBufs = (Vec<f32>, Vec<f32>, Vec<Vec<f32>>, StencilCarry);

thread_local! {
    static BAND_BUFS: std::cell::RefCell<BandBufs> = std::cell::RefCell::new(Default::default());
}

/// The strips of a band's image rows (before its stencil) that the
/// stencil may still read, in row order, with spent buffers for reuse.
#[derive(Default)]
struct Strips {
    /// (first image row, rows, planar R, G, B rows of the strip)
    strips: std::collections::VecDeque<(usize, usize, Vec<f32>)>,
    spare: Vec<Vec<f32>>,
}

impl Strips {
    /// Room for a strip of `rows` rows of `w` pixels from image row `y0`
    /// (its planes laid out as [`planes3`] does).
    fn push(&mut self, y0: usize, rows: usize, w: usize) -> [&mut [f32]; 3] {
        let mut buf = self.spare.pop().unwrap_or_default();
        let n = rows * w;
        let [r, g, b] = Lined::of(&mut buf, n).ranges(n);
        self.strips.push_back((y0, rows, buf));
        match self.strips.back_mut() {
            Some((_, _, buf)) => {
                let (head, b) = buf.split_at_mut(b.start);
                let (head, g) = head.split_at_mut(g.start);
                [&mut head[r], &mut g[..n], &mut b[..n]]
            }
            None => [&mut [], &mut [], &mut []],
        }
    }

    /// Lets go of the strips wholly above image row `y`.
    fn drop_below(&mut self, y: usize) {
        while matches!(self.strips.front(), Some(&(y0, rows, _)) if y0 + rows <= y) {
            if let Some((_, _, buf)) = self.strips.pop_front() {
                self.spare.push(buf);
            }
        }
    }
}

/// A stencil's view of the kept strips of a `w` x `h` frame.
struct Rows<'a> {
    kept: &'a Strips,
    w: usize,
    h: usize,
}

impl RowSource for Rows<'_> {
    /// The row from the strip holding it; empty if none does (the runner
    /// keeps every row within the stencil's halo).
    fn row(&self, c: usize, y: isize) -> &[f32] {
        let y = reflect(y, self.h as isize);
        let w = self.w;
        for (y0, rows, buf) in &self.kept.strips {
            if (*y0..y0 + rows).contains(&y) {
                let Some(plane) = Lined::at(buf, rows * w).ranges(rows * w).get(c).cloned() else {
                    return &[];
                };
                let at = plane.start + (y - y0) * w;
                return &buf[at..at + w];
            }
        }
        &[]
    }
}

/// How a demosaicking segment cuts the frame: the demosaic's halo and
/// strip height, and the rows of one parallel band (whole strips).
#[derive(Debug, Clone, Copy)]
struct Cut {
    halo: usize,
    strip: usize,
    band_rows: usize,
}

/// A segment's pixels: planar floats, samples quantised for output, or
/// the value its encoder made.
enum Pixels {
    Planes(Vec<f32>),
    Samples(Samples),
    Value(Value),
    /// Samples of this depth, all handed to the segment's stream.
    Streamed(Depth),
}

impl Pixels {
    /// Zeroed pixels (`n` per plane) of the requested kind.
    fn empty(n: usize, deliver: Option<Depth>) -> Pixels {
        match deliver {
            None => Pixels::Planes(vec![0.0; 3 * n]),
            Some(Depth::U8) => Pixels::Samples(Samples::U8(vec![0; 3 * n])),
            Some(Depth::U16) => Pixels::Samples(Samples::U16(vec![0; 3 * n])),
        }
    }
}

/// Where one band of a demosaicking segment writes its rows.
enum Sink<'a> {
    /// The band's rows of the three output planes (not yet initialised).
    Planes([&'a mut [MaybeUninit<f32>]; 3]),
    /// The band's interleaved 8- or 16-bit samples (3 per pixel).
    Samples(RowsOut<'a>),
    /// The band's `rows` rows go to the segment's encoder, which writes
    /// its own planes: `parts` are the samples of each that the band owns.
    Encode {
        rows: usize,
        parts: Vec<&'a mut [u16]>,
        enc: &'a Encoder,
    },
}

impl Sink<'_> {
    /// Rows in the band, for frame width `w`.
    fn rows(&self, w: usize) -> usize {
        match self {
            Sink::Planes([r, _, _]) => r.len() / w,
            Sink::Samples(o) => o.len() / (3 * w),
            Sink::Encode { rows, .. } => *rows,
        }
    }

    /// The float planes for the pixels `span` of the band (row-major
    /// offsets) and where their quantised samples go: the output's own
    /// rows (zeroed) and nothing, or the reused scratch and the band's
    /// samples for those pixels.
    fn strip<'s>(
        &'s mut self,
        span: std::ops::Range<usize>,
        scratch: &'s mut Vec<f32>,
    ) -> ([&'s mut [f32]; 3], Option<RowsOut<'s>>) {
        let out = 3 * span.start..3 * span.end;
        let len = span.len();
        match self {
            Sink::Planes(planes) => (
                planes
                    .each_mut()
                    .map(|p| crate::memory::zero_in_place(&mut p[span.clone()])),
                None,
            ),
            Sink::Samples(o) => (planes3(scratch, len), Some(o.range(out))),
            Sink::Encode { .. } => (planes3(scratch, len), None),
        }
    }
}

/// Mosaic rows through a segment's mosaic members (`kernels`, each a
/// [`RowKernel::Mosaic`] or at most one [`RowKernel::MosaicStencil`]),
/// row by row. The rows the members before a stencil made are kept in a
/// few slots while the stencil needs them (rows arrive mostly in order,
/// so each is made once, but where mirrored at the frame's edges).
struct MosaicRows<'a> {
    kernels: &'a [RowKernel],
    m: &'a Mosaic,
    /// The stencil's index in `kernels` and its halo.
    stencil: Option<(usize, usize)>,
    /// (image row, its samples before the stencil, last use).
    slots: Vec<(usize, Vec<f32>, u64)>,
    clock: u64,
    /// The stencil's edits of the current row.
    edits: Vec<(usize, f32)>,
}

impl<'a> MosaicRows<'a> {
    fn new(kernels: &'a [RowKernel], m: &'a Mosaic) -> Self {
        let stencil = kernels.iter().enumerate().find_map(|(k, kern)| match kern {
            RowKernel::MosaicStencil { halo, .. } => Some((k, *halo)),
            _ => None,
        });
        MosaicRows {
            kernels,
            m,
            stencil,
            slots: Vec::new(),
            clock: 0,
            edits: Vec::new(),
        }
    }

    /// Writes mosaic row `y` through every member into `dst` (`width`
    /// samples), timing each member into `times`.
    fn row(&mut self, y: usize, dst: &mut [f32], times: &[AtomicU64]) {
        let (w, h) = (self.m.width, self.m.height);
        let Some((sk, halo)) = self.stencil else {
            self.m.data.copy_f32(y * w, dst);
            point_members(self.kernels, 0..self.kernels.len(), y, dst, times);
            return;
        };
        self.clock += 1;
        let now = self.clock;
        let need = |t: usize| reflect(y as isize + t as isize - halo as isize, h as isize);
        for t in 0..=2 * halo {
            let r = need(t);
            if let Some(slot) = self.slots.iter_mut().find(|s| s.0 == r) {
                slot.2 = now;
                continue;
            }
            // A new slot, or the least recently used one this row does
            // not need (there are more slots than rows needed).
            let free = if self.slots.len() < 2 * halo + 2 {
                None
            } else {
                self.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.2 != now)
                    .min_by_key(|(_, s)| s.2)
                    .map(|(i, _)| i)
            };
            let i = match free {
                Some(i) => i,
                None => {
                    self.slots.push((r, vec![0.0; w], now));
                    self.slots.len() - 1
                }
            };
            let slot = &mut self.slots[i];
            (slot.0, slot.2) = (r, now);
            self.m.data.copy_f32(r * w, &mut slot.1);
            point_members(self.kernels, 0..sk, r, &mut slot.1, times);
        }
        let rows: Vec<&[f32]> = (0..=2 * halo)
            .filter_map(|t| {
                let r = need(t);
                self.slots.iter().find(|s| s.0 == r).map(|s| s.1.as_slice())
            })
            .collect();
        if let RowKernel::MosaicStencil { f, .. } = &self.kernels[sk] {
            let t0 = Instant::now();
            self.edits.clear();
            f(y, &rows, Some(&mut *dst), &mut self.edits);
            for &(x, v) in &self.edits {
                if let Some(d) = dst.get_mut(x) {
                    *d = v;
                }
            }
            add(&times[sk], t0);
        }
        point_members(self.kernels, sk + 1..self.kernels.len(), y, dst, times);
    }
}

/// The per-photosite members ([`RowKernel::Mosaic`]) among
/// `kernels[span]` on mosaic row `y`, in place, member `k` timed into
/// `times[k]`.
fn point_members(
    kernels: &[RowKernel],
    span: std::ops::Range<usize>,
    y: usize,
    row: &mut [f32],
    times: &[AtomicU64],
) {
    for (k, kern) in kernels.iter().enumerate().take(span.end).skip(span.start) {
        if let RowKernel::Mosaic(f) = kern {
            let t0 = Instant::now();
            f(y, row);
            add(&times[k], t0);
        }
    }
}

/// `scratch` as three planes of `len` samples, each on a cache line
/// ([`Lined`]; the buffer grown as needed).
fn planes3(scratch: &mut Vec<f32>, len: usize) -> [&mut [f32]; 3] {
    let [r, g, b] = Lined::of(scratch, len).ranges(len);
    let (head, b) = scratch.split_at_mut(b.start);
    let (head, g) = head.split_at_mut(g.start);
    [&mut head[r], &mut g[..len], &mut b[..len]]
}

/// Floats per 64-byte cache line.
const LINE: usize = 16;

/// Where three planes of `len` floats lie in a buffer so that each starts
/// on a cache line (the row kernels' vector loads and stores then do not
/// straddle two lines where the rows' width is a multiple of [`LINE`]):
/// the first at `start`, the next ones `stride` floats apart.
struct Lined {
    start: usize,
    stride: usize,
}

impl Lined {
    /// The layout in `buf`, grown (zeroed) to hold it.
    fn of(buf: &mut Vec<f32>, len: usize) -> Lined {
        let stride = len.next_multiple_of(LINE);
        if buf.len() < 3 * stride + LINE {
            buf.resize(3 * stride + LINE, 0.0);
        }
        Lined::at(buf, len)
    }

    /// The layout of a buffer [`Lined::of`] grew for `len`.
    fn at(buf: &[f32], len: usize) -> Lined {
        let phase = (buf.as_ptr() as usize / std::mem::size_of::<f32>()) % LINE;
        Lined {
            start: (LINE - phase) % LINE,
            stride: len.next_multiple_of(LINE),
        }
    }

    /// The three planes' ranges.
    fn ranges(&self, len: usize) -> [std::ops::Range<usize>; 3] {
        std::array::from_fn(|c| {
            let at = self.start + c * self.stride;
            at..at + len
        })
    }
}

/// Adds the time since `t0` to a member's counter.
#[inline]
fn add(counter: &AtomicU64, t0: Instant) {
    counter.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::quantize::Depth;
    use crate::frame::SensorSamples;
    use crate::graph::{run, Pipeline, RunOptions};
    use crate::raw::{CfaPattern, RawFrame};
    use crate::synth::{demo_scene, mosaic_scene, CaptureParams};

    /// Every output of `p` on `frame`, as bits (floats) or samples.
    fn render(p: &Pipeline, frame: RawFrame, opts: &RunOptions) -> Vec<(String, Vec<u32>)> {
        let out = run(p, frame, opts).unwrap();
        out.outputs
            .into_iter()
            .map(|(id, v)| {
                let bits = match v {
                    Value::Image(i) => i.data.iter().map(|x| x.to_bits()).collect(),
                    Value::Mosaic(m) => m.data.f32().iter().map(|x| x.to_bits()).collect(),
                    Value::Encoded(e) => match &e.samples {
                        Samples::U8(s) => s.iter().map(|&x| u32::from(x)).collect(),
                        Samples::U16(s) => s.iter().map(|&x| u32::from(x)).collect(),
                    },
                    other => panic!("unexpected output {other:?}"),
                };
                (id, bits)
            })
            .collect()
    }

    /// `defect_correct` as a mosaic stencil in each shape of segment (with
    /// a demosaic and image members, with an image stencil last, mosaic
    /// members only before an unfused demosaic) gives the unfused pixels,
    /// on frames with hot and dead photosites, delivered or not.
    #[test]
    fn mosaic_stencil_segments_equal_the_unfused_path() {
        let head = "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  \
             - { id: bl, op: black_level }\n  \
             - { id: dpc, op: defect_correct, params: { threshold: 0.05 } }\n";
        let tails = [
            "  - { id: wb, op: white_balance }\n  - { id: dm, op: demosaic_bilinear }\n  \
             - { id: cc, op: color_correct }\n  - { id: out, op: srgb_encode }\noutputs: [out]\n",
            "  - { id: dm, op: demosaic_bilinear }\n  - { id: out, op: srgb_encode }\n  \
             - { id: sh, op: sharpen }\noutputs: [sh]\n",
            "  - { id: wb, op: white_balance }\n  - { id: dm, op: demosaic_rcd }\noutputs: [dm]\n",
            // A mosaic-only segment (MHC has no row kernel), with a member
            // after the stencil.
            "  - { id: wb, op: white_balance }\n  - { id: dm, op: demosaic_mhc }\noutputs: [dm]\n",
        ];
        for (cfa, (w, h)) in [
            (CfaPattern::Grbg, (67, 45)),
            (CfaPattern::Rggb, (40, 34)),
            (CfaPattern::Bggr, (50, 3 * STENCIL_ROWS + 7)),
        ] {
            let p = CaptureParams {
                cfa,
                ..Default::default()
            };
            let mut frame = mosaic_scene(&demo_scene(w, h), &p, "t").unwrap();
            let SensorSamples::U16(v) = &mut frame.data else {
                panic!("integer mosaic expected");
            };
            let hot = v.iter().copied().max().unwrap();
            for (k, i) in (0..v.len()).step_by(97).enumerate() {
                v[i] = if k % 2 == 0 { hot } else { 0 };
            }
            for tail in tails {
                let pipe = Pipeline::from_yaml(&format!("{head}{tail}"), "t.yaml").unwrap();
                for deliver in [None, Some(Depth::U16)] {
                    let opts = |no_fuse| RunOptions {
                        no_fuse,
                        deliver,
                        ..Default::default()
                    };
                    let out = run(&pipe, frame.clone(), &opts(false)).unwrap();
                    let dpc = out.timings.stages.iter().find(|s| s.id == "dpc").unwrap();
                    assert!(dpc.fused.is_some(), "{tail}: defect_correct not fused");
                    if tail.contains("mhc") {
                        assert_eq!(dpc.fused.as_deref(), Some("bl+dpc+wb"));
                    }
                    let a = render(&pipe, frame.clone(), &opts(false));
                    let b = render(&pipe, frame.clone(), &opts(true));
                    assert!(!a.is_empty());
                    assert!(a == b, "{cfa:?} {tail} deliver {deliver:?}");
                }
            }
        }
    }

    /// RCD then false-colour suppression (a stencil followed by image
    /// kernels) fused into one segment with the colour pipeline gives the
    /// unfused pixels, delivered or not, for both windows and both forms
    /// of the filter, on every Bayer phase.
    #[test]
    fn rcd_and_false_color_fused_render_as_unfused() {
        let yaml = |fc: &str| {
            format!(
                "version: 1\nstages:\n  - {{ id: raw, op: raw_source }}\n  \
                 - {{ id: bl, op: black_level }}\n  \
                 - {{ id: wb, op: white_balance, params: {{ mode: auto, clip_highlights: true }} }}\n  \
                 - {{ id: dm, op: demosaic_rcd }}\n  \
                 - {{ id: fc, op: false_color_suppress, params: {{ {fc} }} }}\n  \
                 - {{ id: cc, op: color_correct }}\n  \
                 - {{ id: exp, op: exposure_gain, params: {{ mode: manual, ev: 0.0 }} }}\n  \
                 - {{ id: out, op: srgb_encode }}\noutputs: [out]\n"
            )
        };
        let pipes: Vec<Pipeline> = [
            "strength: 0.5",
            "strength: 1.0, keep_native: false",
            "window: 5, strength: 0.75",
        ]
        .iter()
        .map(|fc| Pipeline::from_yaml(&yaml(fc), "rcd_fc.yaml").unwrap())
        .collect();
        for (cfa, (w, h)) in [
            (CfaPattern::Grbg, (67, 45)),
            (CfaPattern::Rggb, (40, 34)),
            (CfaPattern::Bggr, (150, 301)),
            (CfaPattern::Gbrg, (33, 290)),
        ] {
            let p = CaptureParams {
                cfa,
                ..Default::default()
            };
            let frame = mosaic_scene(&demo_scene(w, h), &p, "t").unwrap();
            for pipe in &pipes {
                for deliver in [None, Some(Depth::U8)] {
                    let fused = RunOptions {
                        deliver,
                        ..Default::default()
                    };
                    let unfused = RunOptions {
                        no_fuse: true,
                        ..fused.clone()
                    };
                    let out = run(pipe, frame.clone(), &fused).unwrap();
                    let fc = out.timings.stages.iter().find(|t| t.id == "fc").unwrap();
                    assert_eq!(fc.fused.as_deref(), Some("bl+wb+dm+fc+cc+exp+out"));
                    let a = render(pipe, frame.clone(), &fused);
                    let b = render(pipe, frame.clone(), &unfused);
                    assert!(!a.is_empty());
                    assert!(a == b, "{cfa:?} {w}x{h} {} deliver {deliver:?}", pipe.name);
                }
            }
        }
    }

    /// Integer (u16) and float storage of the same DN give the same
    /// pixels, fused (the tile rows widened as they are read) and unfused
    /// (the first stage widening the frame), delivered or not.
    #[test]
    fn u16_and_f32_mosaics_render_identically() {
        // A demosaic without a row kernel straight on the DN mosaic.
        let dn_demosaic = "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  \
             - { id: dm, op: demosaic_rcd }\noutputs: [dm]\n";
        let mut pipes: Vec<Pipeline> = ["default", "fast", "balanced", "preview"]
            .iter()
            .map(|n| Pipeline::resolve(n).unwrap())
            .collect();
        pipes.push(Pipeline::from_yaml(dn_demosaic, "dn.yaml").unwrap());
        for (cfa, (w, h)) in [(CfaPattern::Grbg, (67, 45)), (CfaPattern::Rggb, (40, 34))] {
            let p = CaptureParams {
                cfa,
                ..Default::default()
            };
            let ints = mosaic_scene(&demo_scene(w, h), &p, "t").unwrap();
            assert!(matches!(ints.data, SensorSamples::U16(_)));
            let floats = RawFrame {
                meta: ints.meta.clone(),
                data: ints.data.f32().into_owned().into(),
            };
            for pipe in &pipes {
                for no_fuse in [false, true] {
                    for deliver in [None, Some(Depth::U16)] {
                        let opts = RunOptions {
                            no_fuse,
                            deliver,
                            ..Default::default()
                        };
                        let a = render(pipe, ints.clone(), &opts);
                        let b = render(pipe, floats.clone(), &opts);
                        assert!(!a.is_empty());
                        assert!(
                            a == b,
                            "{} {cfa:?} no_fuse {no_fuse} deliver {deliver:?}",
                            pipe.name
                        );
                    }
                }
            }
        }
    }

    /// Collects a stream's bands in row order.
    #[derive(Default)]
    struct Collect {
        size: std::sync::Mutex<Option<(usize, usize, Depth)>>,
        bands: std::sync::Mutex<Vec<(usize, Samples)>>,
    }

    impl SampleStream for Collect {
        fn begin(&self, width: usize, height: usize, depth: Depth) {
            *self.size.lock().unwrap() = Some((width, height, depth));
        }
        fn rows(&self, y0: usize, samples: Samples) {
            self.bands.lock().unwrap().push((y0, samples));
        }
    }

    /// A streamed run hands over exactly the samples a delivered run
    /// returns (bands in any order, a short last band), and returns the
    /// output with its size but no samples; shapes that do not stream
    /// never begin the stream.
    #[test]
    fn streamed_bands_are_the_delivered_samples() {
        let frame = mosaic_scene(&demo_scene(150, 300), &CaptureParams::default(), "t").unwrap();
        for name in ["default", "fast", "balanced", "preview"] {
            let pipe = Pipeline::resolve(name).unwrap();
            let whole = RunOptions {
                deliver: Some(Depth::U16),
                ..Default::default()
            };
            let want = render(&pipe, frame.clone(), &whole);
            let collect = Arc::new(Collect::default());
            let streamed = RunOptions {
                stream: Some(collect.clone()),
                ..whole.clone()
            };
            let out = run(&pipe, frame.clone(), &streamed).unwrap();
            let Some((w, h, depth)) = *collect.size.lock().unwrap() else {
                // Not streamed: the output came back whole. `fast` and
                // `balanced` (demosaic to sRGB in one segment) stream;
                // `default`'s whole-frame demosaic (`demosaic_rcd_mlri`)
                // leaves an image-only colour segment, which does not.
                assert!(!matches!(name, "fast" | "balanced"), "{name}");
                assert_eq!(render(&pipe, frame.clone(), &streamed), want, "{name}");
                continue;
            };
            assert_eq!((w, h, depth), (150, 300, Depth::U16), "{name}");
            match &out.outputs[0].1 {
                Value::Encoded(e) => {
                    assert_eq!((e.width, e.height), (w, h));
                    assert!(e.samples.is_empty(), "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
            let mut bands = std::mem::take(&mut *collect.bands.lock().unwrap());
            assert!(bands.len() > 2, "{name}");
            bands.sort_by_key(|b| b.0);
            let mut got = Vec::new();
            for (y0, b) in bands {
                assert_eq!(y0, got.len() / (3 * w), "{name}");
                let Samples::U16(v) = b else {
                    panic!("{name}: 8-bit band")
                };
                got.extend(v.iter().map(|&x| u32::from(x)));
            }
            assert_eq!(got, want[0].1, "{name}");
        }
    }
}
