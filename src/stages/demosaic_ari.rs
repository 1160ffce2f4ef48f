//! `demosaic_ari`: Adaptive Residual Interpolation, after Monno, Kiku,
//! Tanaka and Okutomi, "Adaptive residual interpolation for color and
//! multispectral image demosaicking" (Sensors 17(12), 2017; ICIP 2015),
//! built on residual interpolation (Kiku et al. 2013) and its
//! minimized-Laplacian form MLRI (Kiku et al. 2014).
//!
//! Residual interpolation: a guided filter predicts a colour plane from
//! another (`q = a * guide + b`, `a`, `b` fitted in local windows), the
//! residual `observed - q` at the sampled sites is interpolated linearly
//! and added back. Residuals are smoother than colour differences, so
//! this keeps detail where the channels are weakly correlated
//! (McMaster-like scenes) as well as where they are strongly correlated
//! (Kodak-like scenes).
//!
//! 1. Green, per direction (horizontal; vertical on the transposed tile):
//!    1-D linear interpolation gives tentative G and R/B along every row.
//!    Then `iterations` rounds of both RI (covariance guided filter) and
//!    MLRI (the slope `a` minimises the Laplacian energy of the residual)
//!    refine G and R/B with growing windows; at every pixel the round with
//!    the smallest criterion (smoothed |guide - tentative|² x its
//!    gradient) is kept (ARI's adaptive selection). The four estimates
//!    (RI/MLRI x H/V) are blended with weights 1 / criterion (ARI's
//!    adaptive combination). Windows only gather rows (columns) of the same
//!    Bayer parity, so a horizontal window never mixes R rows with B rows.
//! 2. Red and blue: an MLRI guided filter with the full green plane as
//!    guide, fitted on the quarter-resolution lattice of the colour's
//!    samples (2-D Laplacians); its coefficients and the residual are
//!    interpolated bilinearly to full resolution and applied to green
//!    ("guided upsampling"). The windows' coefficients are averaged with
//!    the inverse-fit-error weights of ARI's guided filter.
//!
//! The guided filters stream row by row: per input row the window sums
//! along the row (one pass of `window - 1` adds per sample for windows up
//! to 13 wide, doubling partial sums above) of all moments a filter pair
//! needs (RI / MLRI of green from the other channel and back share i, p,
//! i², p², i p; MLRI's horizontal Laplacians are computed per row,
//! [`LapOf::Rows`]) go into rings of rows, the per-window fits follow a
//! window's height behind, and their weighted coefficients are averaged
//! the same way; a round's criterion and guide update follow row by row
//! behind the filters. No box-sum or Laplacian plane is held; the CFA
//! masks are 2 x 2 patterns ([`Mask`]), and MLRI's window sums of its
//! mask are counted from the pattern; a round touches each full plane a
//! few times. Hot helpers are
//! functions or `#[inline(always)]` trait methods, not closures: a
//! closure that is not inlined loses [`ari_tile`]'s AVX2 code
//! generation. Tiles (`backend::cpu::demosaic_tiles_scratch`, up to 1536
//! x 2048 output pixels, [`strip_rows`]) carry a mirrored halo that covers the dependency
//! radius, which grows with `iterations`; all planes, rings and row
//! buffers come from one [`Pool`] per worker thread and frame, so a tile
//! allocates nothing once the first has run.
//!
//! Input: a mosaic, normalised (1.0 = white) or in DN (the regularisation
//! constants are scaled by the white level). Output: planar camera RGB,
//! same size; native samples pass through unchanged.
//!
//! Quality (sRGB protocol, 10-px border, kodak24 / mcmaster18): 38.96 /
//! 37.27 dB alone at the default 3 rounds (1 round 37.05 / 36.84, 2 rounds
//! 38.17 / 37.10, 5 rounds 39.73 / 37.23); 40.11 / 37.15 followed by
//! `false_color_suppress` at strength 0.5 (pipelines/quality_classical.yaml).
//! Cost: about 3.0 s of CPU per 12 MP frame on one thread (AMD EPYC with
//! AVX-512, `perf stat` task-clock of `bench --synthetic 4000x3000 -p
//! quality_classical --iters 5 --warmup 1`, the previous version 4.1 s;
//! wall medians on the shared 2-vCPU machine at load ~4.5: 4.5-4.8 s with
//! 1 or 2 threads, before 5.9-6.1 s), so still ~8x above issue 16's 400 ms:
//! ARI is the slow, best-quality classical choice, not a preview path.
//! Then, with the same bits, ~13 % less CPU (task-clock of that bench
//! 19.7 -> 17.1 s at 1 thread, 20.4 -> 17.6 s at 2, medians of 5
//! interleaved runs, AMD EPYC at load 3-5; `dm` wall medians 4.6 -> 3.9 s
//! and 4.8 -> 4.1 s): strips of up to 1536 rows ([`strip_rows`]; 768-row ones
//! spent 15 % of the frame on halo rows), 8 x 8 AVX transposes, plane
//! rows window-summed in place, the guides' update fused with the
//! criterion smoothing. Tried, no gain: a third, AVX-512 copy of the
//! tile kernel (this EPYC runs 512-bit vectors as two 256-bit halves),
//! full-width tiles (4000 + halo columns: less halo, more cache misses),
//! the fits in 256-column blocks (window moments kept in L1).
//! Then, again with the same bits (golden digests unchanged), the masks as
//! patterns and counted mask sums (9 moment rows per MLRI round, not 11),
//! the Laplacians per row (two planes fewer per MLRI round) and a first
//! round that reads the initial guides in place (no plane copies or
//! fills): ~11 % less CPU (task-clock of that 12 MP bench 17.6 -> 15.5 s
//! at 1 thread, 17.8 -> 15.9 s at 2, medians of 3 interleaved runs, AMD
//! EPYC at load 4-5; `dm` wall medians 4.02 -> 3.61 s and 4.09 -> 3.76 s;
//! peak RSS 566 -> 501 MB and 873 -> 741 MB).
//! Where the time goes (perf, one thread, before that step): the
//! horizontal window sums ~17 % of the process, the vertical ~8 %, the
//! fits ~6 %, the guides' update and criterion ~10 %, the rest in many
//! passes of 1-3 % each: a flat profile.
//! Why issue 16's 400 ms is not in reach by re-arranging this method:
//! a frame takes ~1450 window-sum taps per sample (12 rounds of 5 or 9
//! moment rows and 2 x 3 coefficient rows, summed over 5..13 samples
//! along the row, then 1..5 rows across). Direct 8-lane sums cost ~N/8
//! adds and loads per sample; a running (O(1)) sum along a row is a
//! serial chain unless 8 rows go through 8 x 8 transposes (~1.5 shuffles
//! per sample), which by that count only wins at 11-13 taps, by < 2x
//! (estimated, not built), and the vertical spans are too short to gain. Fusing a round into a few register-resident
//! passes saves memory traffic (the steps above took what was cheap to
//! take), not arithmetic. Fits on a subsampled grid (He and Sun; every
//! other column along the long window) would halve the fits and the
//! moment and coefficient sums: an estimated ~12 % of the frame, with a
//! quality change. 400 ms on this CPU needs far fewer rounds or filters
//! (a different method), not this one rearranged.

use serde::Deserialize;

use super::demosaic_bilinear::{demosaiced, infer_demosaic};
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::{demosaic_tiles_scratch, Tile, TileScratch};
use crate::error::{Error, Result};
use crate::frame::{MosaicScale, Value, ValueDesc};

/// Largest accepted `iterations` (the paper's green step uses 11).
pub const MAX_ITERATIONS: usize = 11;

/// Largest vertical window radius of a guided filter (rows): green's
/// `(window_step * (iterations - 1) + 2) / 2` and red/blue's `rb_radius`.
const MAX_RY: usize = (4 * (MAX_ITERATIONS - 1) + 2) / 2;

/// YAML params of `demosaic_ari`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Rounds of the iterative green step (1..=11). More rounds: larger
    /// windows to choose from per pixel, a wider halo, more time.
    pub iterations: usize,
    /// Growth of the green windows' radius per round, pixels (1..=4; the
    /// paper uses 1). Larger steps reach large windows in fewer rounds.
    pub window_step: usize,
    /// Lattice radius of the red/blue guided filter windows (1..=4; a
    /// window spans (2r+1)² samples of the colour, (4r+1)² pixels).
    pub rb_radius: usize,
    /// Red/blue at green sites by the directional adaptive step (as
    /// green) instead of the bilinear guided upsampling alone.
    pub rb_directional: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            iterations: 3,
            window_step: 1,
            rb_radius: 2,
            rb_directional: false,
        }
    }
}

impl crate::stages::Validate for Params {
    /// Checks the ranges.
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(crate::stages::CompileError::params(format!(
                "iterations must be in 1..={MAX_ITERATIONS}, got {}",
                self.iterations
            )));
        }
        if !(1..=4).contains(&self.window_step) {
            return Err(crate::stages::CompileError::params(format!(
                "window_step must be in 1..=4, got {}",
                self.window_step
            )));
        }
        if !(1..=4).contains(&self.rb_radius) {
            return Err(crate::stages::CompileError::params(format!(
                "rb_radius must be in 1..=4, got {}",
                self.rb_radius
            )));
        }
        Ok(())
    }
}

impl Params {
    /// Dependency radius (pixels) of the method under these params.
    fn radius(&self) -> usize {
        let (k, s) = (self.iterations, self.window_step);
        // Green: per round, MLRI's Laplacian (2) + two boxes of radius
        // 4 + step x round + the residual interpolation (1); then the criterion
        // smoothing (3). Red/blue: Laplacian (4) + two lattice boxes (4r)
        // + the bilinear step (2).
        let green = 11 * k + s * k * (k - 1) + 3;
        let rb = 6 + 4 * self.rb_radius;
        if self.rb_directional {
            2 * green + rb
        } else {
            green + rb
        }
    }
}

/// The compiled `demosaic_ari` op.
#[derive(Debug)]
pub struct DemosaicAri {
    params: Params,
    halo: usize,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let params: Params = parse_params(params)?;
    let halo = (params.radius() + 2) & !1;
    Ok(Box::new(DemosaicAri { params, halo }))
}

/// Largest output rows per strip (one rayon task; tall, as the halo is
/// about 60 rows per side: 768-row strips spent 15 % of a 3000-row frame
/// on halo rows, 1500-row ones 8 %, measured 7 % faster; the price is
/// memory: peak RSS of a 12 MP `bench` at 2 threads 0.59 -> 0.90 GB).
/// See [`strip_rows`].
const STRIP: usize = 1536;

/// Output rows per strip for a frame of `h` rows on `threads` threads:
/// the fewest strips of at most about [`STRIP`] rows, their count
/// rounded up to a multiple of the threads so that each thread gets as
/// many (a 3000-row frame: 2 strips of 1500; 4000 rows on 2 threads: 4
/// of 1000). Even, so that every strip starts on the same CFA phase.
fn strip_rows(h: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    let n = h.div_ceil(STRIP).max(1).div_ceil(threads) * threads;
    (h.div_ceil(n) + 1) & !1
}
/// Output columns per tile within a strip (2 tiles across a 4000-wide
/// frame; narrower tiles measured slower, the halo outweighs the cache).
const TILE_W: usize = 2048;
/// Floor of the local variance / Laplacian energy (normalised units²).
const VAR_FLOOR: f32 = 1e-6;
/// Floor of a window's RMS fit error (normalised units; 0.001 / 255).
const DIF_FLOOR: f32 = 0.001 / 255.0;
/// Guard of the inverse-criterion weights (normalised units³).
const CRIT_EPS: f32 = 1e-18;

impl Stage for DemosaicAri {
    fn op(&self) -> &'static str {
        "demosaic_ari"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let unit = match m.scale {
            MosaicScale::Normalized => 1.0,
            MosaicScale::Dn => m.meta.white.iter().fold(1.0f32, |a, &b| a.max(b)),
        };
        let strip = strip_rows(m.height, rayon::current_num_threads());
        let data = run_tiles(m, self.halo, (strip, TILE_W), &self.params, unit);
        Ok(demosaiced(m, data))
    }
}

/// Demosaics `m` in strips of `strip` rows and tiles of `tile_w` columns
/// (padded by `halo`), in parallel; returns the R, G, B planes. One
/// buffer pool per worker thread serves the whole frame (rayon may start
/// a fresh task scratch per split; the pools outlive them).
fn run_tiles(
    m: &crate::frame::Mosaic,
    halo: usize,
    (strip, tile_w): (usize, usize),
    p: &Params,
    unit: f32,
) -> Vec<f32> {
    let pools: Vec<std::sync::Mutex<Pool>> = (0..rayon::current_num_threads().max(1))
        .map(|_| std::sync::Mutex::new(Pool::default()))
        .collect();
    demosaic_tiles_scratch(m, halo, strip, tile_w, |t, s: &mut Scratch| {
        let i = rayon::current_thread_index().unwrap_or(0) % pools.len();
        // Each worker locks only its own pool: never contended.
        let mut pool = pools[i].lock().unwrap_or_else(|e| e.into_inner());
        ari_tile(t, p, unit, s, &mut pool)
    })
}

/// Regularisation constants in the data's units.
#[derive(Clone, Copy)]
pub(crate) struct Consts {
    var_floor: f32,
    dif_floor: f32,
    crit_eps: f32,
}

impl Consts {
    pub(crate) fn new(unit: f32) -> Consts {
        Consts {
            var_floor: VAR_FLOOR * unit * unit,
            dif_floor: DIF_FLOOR * unit,
            crit_eps: CRIT_EPS * unit * unit * unit,
        }
    }
}

/// Reusable `f32` buffers of one rayon task: planes and rings are taken
/// from here and given back, so that a tile allocates (and the kernel
/// zero-fills fresh pages) only on a task's first tile.
#[derive(Default)]
pub(crate) struct Pool {
    free: Vec<Vec<f32>>,
}

impl Pool {
    /// A buffer of `n` samples with arbitrary contents: the caller writes
    /// every sample before it reads it.
    pub(crate) fn get(&mut self, n: usize) -> Vec<f32> {
        // The smallest free buffer that holds `n` (else the largest, grown).
        let fit = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= n)
            .min_by_key(|&i| self.free[i].capacity());
        let pick = fit.or_else(|| (0..self.free.len()).max_by_key(|&i| self.free[i].capacity()));
        let mut v = match pick {
            Some(i) => self.free.swap_remove(i),
            None => Vec::new(),
        };
        v.resize(n, 0.0);
        v
    }

    /// A buffer of `n` samples, all `value`.
    fn filled(&mut self, n: usize, value: f32) -> Vec<f32> {
        let mut v = self.get(n);
        v.fill(value);
        v
    }

    /// Gives buffers back.
    pub(crate) fn put<const N: usize>(&mut self, vs: [Vec<f32>; N]) {
        self.free.extend(vs);
    }
}

/// Per-task scratch of [`ari_tile`]: the last tile's R, G, B planes
/// (each `tile.w * tile.h`, row-major).
#[derive(Default)]
struct Scratch {
    out: [Vec<f32>; 3],
}

impl TileScratch for Scratch {
    fn planes(&self) -> [&[f32]; 3] {
        [&self.out[0], &self.out[1], &self.out[2]]
    }
}

// ---------------------------------------------------------------------
// Plane helpers (row-major w x h f32 planes).

/// Number of `j` in `-r..=r` with `0 <= y + s * j < n`.
#[inline(always)]
fn count_in(y: usize, r: usize, s: usize, n: usize) -> usize {
    let below = (y / s).min(r);
    let above = ((n - 1 - y) / s).min(r);
    below + above + 1
}

/// `out[x] = buf[x] + ... + buf[x + len - 1]` for `x < out.len()`
/// (`buf.len() == out.len() + len - 1`), by doubling partial sums:
/// `log2(len) + popcount(len)` adds per output, in an order fixed per
/// output (so the bits do not depend on where a row starts). `buf` and
/// `t` (same length) are overwritten.
#[inline(always)]
fn window_sum(buf: &mut [f32], len: usize, t: &mut [f32], out: &mut [f32]) {
    match len {
        3 => return window_sum_n::<3>(buf, out),
        5 => return window_sum_n::<5>(buf, out),
        7 => return window_sum_n::<7>(buf, out),
        9 => return window_sum_n::<9>(buf, out),
        11 => return window_sum_n::<11>(buf, out),
        13 => return window_sum_n::<13>(buf, out),
        _ => {}
    }
    let w = out.len();
    let total = buf.len();
    let mut cur: &mut [f32] = buf;
    let mut nxt: &mut [f32] = t;
    let (mut pow, mut off, mut first) = (1usize, 0usize, true);
    loop {
        if len & pow != 0 {
            let src = &cur[off..off + w];
            if first {
                out.copy_from_slice(src);
                first = false;
            } else {
                for (o, &s) in out.iter_mut().zip(src) {
                    *o += s;
                }
            }
            off += pow;
        }
        if pow * 2 > len {
            break;
        }
        // Sums of 2 * pow adjacent samples from sums of pow.
        let nv = total + 1 - 2 * pow;
        let (lo, hi) = (&cur[..nv], &cur[pow..pow + nv]);
        for ((o, &a), &b) in nxt[..nv].iter_mut().zip(lo).zip(hi) {
            *o = a + b;
        }
        std::mem::swap(&mut cur, &mut nxt);
        pow *= 2;
    }
}

/// [`window_sum`] for a fixed `N`: `out[x] = buf[x] + ... + buf[x + N - 1]`
/// summed left to right in one pass (`buf.len() >= out.len() + N - 1`).
#[inline(always)]
fn window_sum_n<const N: usize>(buf: &[f32], out: &mut [f32]) {
    let w = out.len();
    let buf = &buf[..w + N - 1];
    for (x, o) in out.iter_mut().enumerate() {
        let win = &buf[x..x + N];
        let mut s = win[0];
        for &v in &win[1..] {
            s += v;
        }
        *o = s;
    }
}

/// `out[x] = row[x - rx] + ... + row[x + rx]`, `row` zero-padded by `rx`
/// at both ends, for the single-pass lengths of [`window_sum`] (3..=13):
/// the interior straight from `row`, the `rx` outputs at each end from a
/// padded copy of the row's end in `edge` (at least `3 rx` long). The
/// same values summed in the same order as [`window_sum`] over a padded
/// copy of the whole row: the same bits. Returns false, writing nothing,
/// for other lengths or a row shorter than `2 rx`.
#[inline(always)]
fn window_sum_padded(row: &[f32], rx: usize, edge: &mut [f32], out: &mut [f32]) -> bool {
    match 2 * rx + 1 {
        3 => window_sum_padded_n::<3>(row, edge, out),
        5 => window_sum_padded_n::<5>(row, edge, out),
        7 => window_sum_padded_n::<7>(row, edge, out),
        9 => window_sum_padded_n::<9>(row, edge, out),
        11 => window_sum_padded_n::<11>(row, edge, out),
        13 => window_sum_padded_n::<13>(row, edge, out),
        _ => false,
    }
}

/// [`window_sum_padded`] for a fixed `N = 2 rx + 1`.
#[inline(always)]
fn window_sum_padded_n<const N: usize>(row: &[f32], edge: &mut [f32], out: &mut [f32]) -> bool {
    let r = N / 2;
    let w = out.len();
    if row.len() != w || w < 2 * r || edge.len() < 3 * r {
        return false;
    }
    window_sum_n::<N>(row, &mut out[r..w - r]);
    let e = &mut edge[..3 * r];
    e[..r].fill(0.0);
    e[r..].copy_from_slice(&row[..2 * r]);
    window_sum_n::<N>(e, &mut out[..r]);
    e[..2 * r].copy_from_slice(&row[w - 2 * r..]);
    e[2 * r..].fill(0.0);
    window_sum_n::<N>(e, &mut out[w - r..]);
    true
}

/// `out[x] = sum of rows[j][x]` over the `rows` (at least one), in one
/// pass per three rows.
#[inline(always)]
fn sum_rows(rows: &[&[f32]], out: &mut [f32]) {
    let w = out.len();
    let mut it = rows.chunks(3);
    if let Some(first) = it.next() {
        match *first {
            [a] => out.copy_from_slice(&a[..w]),
            [a, b] => {
                for ((o, &a), &b) in out.iter_mut().zip(&a[..w]).zip(&b[..w]) {
                    *o = a + b;
                }
            }
            [a, b, c, ..] => {
                let it = out.iter_mut().zip(&a[..w]).zip(&b[..w]);
                for (((o, &a), &b), &c) in it.zip(&c[..w]) {
                    *o = a + b + c;
                }
            }
            [] => {}
        }
    }
    for more in it {
        match *more {
            [a] => {
                for (o, &a) in out.iter_mut().zip(&a[..w]) {
                    *o += a;
                }
            }
            [a, b] => {
                for ((o, &a), &b) in out.iter_mut().zip(&a[..w]).zip(&b[..w]) {
                    *o += a + b;
                }
            }
            [a, b, c, ..] => {
                let it = out.iter_mut().zip(&a[..w]).zip(&b[..w]);
                for (((o, &a), &b), &c) in it.zip(&c[..w]) {
                    *o += a + b + c;
                }
            }
            [] => {}
        }
    }
}

/// The minimized-Laplacian terms of an MLRI guided filter.
#[derive(Clone, Copy)]
struct Lap<'a> {
    /// Laplacian of the guide.
    li: LapOf<'a>,
    /// Laplacian of the input.
    lp: LapOf<'a>,
    /// 1.0 where the input's Laplacian uses only observed samples.
    mask: &'a Mask,
}

/// Where the rows of a Laplacian come from.
#[derive(Clone, Copy)]
enum LapOf<'a> {
    /// A plane of Laplacians.
    Plane(&'a [f32]),
    /// The horizontal Laplacians ([`lap_row`]) of a plane's rows, each
    /// computed as the filter reaches its row (no Laplacian plane).
    Rows(&'a [f32]),
}

/// Where [`guided_rows`] finds a Laplacian's row: a plane's row
/// (`Err(plane)`) or its row buffer `Ok(j)`, `j` indexing `planes`, the
/// distinct planes whose Laplacian rows it computes (each once per row).
fn lap_slot<'a>(
    s: LapOf<'a>,
    planes: &mut Vec<&'a [f32]>,
) -> std::result::Result<usize, &'a [f32]> {
    match s {
        LapOf::Plane(p) => Err(p),
        LapOf::Rows(p) => match planes.iter().position(|&q| std::ptr::eq(q, p)) {
            Some(j) => Ok(j),
            None => {
                planes.push(p);
                Ok(planes.len() - 1)
            }
        },
    }
}

/// Row `y` (`w` samples) of a Laplacian located by [`lap_slot`]; `rows`
/// holds the computed rows, `w` each.
#[inline(always)]
fn lap_row_of<'a>(
    s: std::result::Result<usize, &'a [f32]>,
    rows: &'a [f32],
    y: usize,
    w: usize,
) -> &'a [f32] {
    match s {
        Ok(j) => &rows[j * w..(j + 1) * w],
        Err(p) => &p[y * w..(y + 1) * w],
    }
}

/// A 0/1 mask with the CFA's 2 x 2 period, `pat[y & 1][x & 1]`, held as
/// its two distinct rows (`w` samples each) instead of a plane.
struct Mask {
    w: usize,
    pat: [[f32; 2]; 2],
    rows: Vec<f32>,
}

impl Mask {
    fn new(pat: [[f32; 2]; 2], w: usize) -> Mask {
        let rows = (0..2 * w)
            .map(|k| pat[k / w.max(1)][(k % w.max(1)) & 1])
            .collect();
        Mask { w, pat, rows }
    }

    /// Row `y` (`w` samples).
    #[inline(always)]
    fn row(&self, y: usize) -> &[f32] {
        let o = (y & 1) * self.w;
        &self.rows[o..o + self.w]
    }

    /// `1 - mask`.
    fn complement(&self) -> Mask {
        Mask::new(self.pat.map(|r| r.map(|v| 1.0 - v)), self.w)
    }

    /// The mask of the transposed plane (rows of `h`, the plane's height).
    fn transposed(&self, h: usize) -> Mask {
        let p = self.pat;
        Mask::new([[p[0][0], p[1][0]], [p[0][1], p[1][1]]], h)
    }

    /// Sums of the mask over the zero-padded windows `x - rx ..= x + rx`
    /// of a row of parity `ph`, for every `x` (integers, exact in `f32`).
    fn window_counts(&self, ph: usize, rx: usize, out: &mut [f32]) {
        let w = self.w;
        for (x, o) in out[..w].iter_mut().enumerate() {
            let (lo, hi) = (x.saturating_sub(rx), (x + rx).min(w - 1));
            // Even and odd columns in lo..=hi.
            let n = hi - lo + 1;
            let even = (hi / 2 + 1) - lo.div_ceil(2);
            let odd = n - even;
            *o = even as f32 * self.pat[ph & 1][0] + odd as f32 * self.pat[ph & 1][1];
        }
    }
}

/// How a guided filter fits its slope: covariance (RI) or Laplacian
/// energy (MLRI).
#[derive(Clone, Copy)]
enum Fit<'a> {
    Ri,
    Mlri(Lap<'a>),
}

/// A per-pixel quantity whose window sums a guided filter needs (planes
/// of one size).
#[derive(Clone, Copy)]
enum Moment<'a> {
    /// `a`.
    Copy(&'a [f32]),
    /// `a²`.
    Sq(&'a [f32]),
    /// `a b`.
    Mul(&'a [f32], &'a [f32]),
}

impl Moment<'_> {
    /// Writes the quantity over row `y` of its `w`-wide planes into `o`.
    #[inline(always)]
    fn row(&self, y: usize, w: usize, o: &mut [f32]) {
        let rr = y * w..(y + 1) * w;
        match *self {
            Moment::Copy(a) => o.copy_from_slice(&a[rr]),
            Moment::Sq(a) => {
                for (o, &a) in o.iter_mut().zip(&a[rr]) {
                    *o = a * a;
                }
            }
            Moment::Mul(a, b) => {
                for ((o, &a), &b) in o.iter_mut().zip(&a[rr.clone()]).zip(&b[rr]) {
                    *o = a * b;
                }
            }
        }
    }
}

/// Zeroes the `rx` samples at both ends of `buf` (`w + 2 rx` long) and
/// returns the `w` between them.
#[inline(always)]
fn padded(buf: &mut [f32], rx: usize, w: usize) -> &mut [f32] {
    buf[..rx].fill(0.0);
    buf[rx + w..].fill(0.0);
    &mut buf[rx..rx + w]
}

/// Rounds of the iterative green step and the growth of their windows.
#[derive(Clone, Copy)]
struct Sched {
    iters: usize,
    step: usize,
}

/// Window of a guided filter: radii and vertical row step.
#[derive(Clone, Copy)]
struct Win {
    rx: usize,
    ry: usize,
    sy: usize,
}

/// Ring of `rows` row buffers of `w` samples per quantity, indexed by
/// the image row modulo `rows`.
struct Ring {
    w: usize,
    rows: usize,
    data: Vec<f32>,
}

impl Ring {
    fn new(quantities: usize, rows: usize, w: usize, pool: &mut Pool) -> Ring {
        Ring {
            w,
            rows,
            data: pool.filled(quantities * rows * w, 0.0),
        }
    }

    #[inline(always)]
    fn row(&self, q: usize, y: usize) -> &[f32] {
        let o = (q * self.rows + y % self.rows) * self.w;
        &self.data[o..o + self.w]
    }

    #[inline(always)]
    fn row_mut(&mut self, q: usize, y: usize) -> &mut [f32] {
        let o = (q * self.rows + y % self.rows) * self.w;
        &mut self.data[o..o + self.w]
    }

    /// Zero-padded vertical window sum of quantity `q` at row `y` (rows
    /// `y + j * win.sy`, `|j| <= win.ry`, inside `0..h`) into `out`.
    #[inline(always)]
    fn vsum(&self, q: usize, y: usize, h: usize, win: Win, out: &mut [f32]) {
        let mut rows: [&[f32]; 2 * MAX_RY + 1] = [&[]; 2 * MAX_RY + 1];
        let mut k = 0;
        for j in (1..=win.ry.min(MAX_RY)).rev() {
            let d = j * win.sy;
            if y >= d {
                rows[k] = self.row(q, y - d);
                k += 1;
            }
        }
        rows[k] = self.row(q, y);
        k += 1;
        for j in 1..=win.ry.min(MAX_RY) {
            let d = j * win.sy;
            if y + d < h {
                rows[k] = self.row(q, y + d);
                k += 1;
            }
        }
        sum_rows(&rows[..k], out);
    }
}

/// Receiver of a guided filter's averaged coefficient rows (a trait
/// with `#[inline(always)]` methods rather than a closure: closures do not
/// inherit [`ari_tile`]'s AVX2 code generation).
trait CoefSink {
    /// Filter `k`'s coefficient rows of image row `y` as weighted sums:
    /// the averaged coefficients are `a[x] * (1 / wt[x])` and
    /// `b[x] * (1 / wt[x])` (the sink normalises them as it uses them,
    /// saving a pass).
    fn row(&mut self, y: usize, k: usize, a: &[f32], b: &[f32], wt: &[f32]);
}

/// Collects the coefficients of a single filter into `w`-wide planes.
struct Planes<'a> {
    w: usize,
    a: &'a mut [f32],
    b: &'a mut [f32],
}

impl CoefSink for Planes<'_> {
    #[inline(always)]
    fn row(&mut self, y: usize, _k: usize, a: &[f32], b: &[f32], wt: &[f32]) {
        let rr = y * self.w..(y + 1) * self.w;
        let it = self.a[rr.clone()].iter_mut().zip(&mut self.b[rr]);
        for ((oa, ob), ((&a, &b), &wt)) in it.zip(a.iter().zip(b).zip(wt)) {
            let inv = 1.0 / wt;
            *oa = a * inv;
            *ob = b * inv;
        }
    }
}

/// Guided filters of ARI's form over one window, streamed row by row:
/// per window the linear fit `p ~ a * i + b` (covariance fit for RI,
/// Laplacian-energy fit for MLRI), then `a`, `b` averaged over the
/// windows covering a pixel, weighted by 1 / the window's RMS fit error.
/// Filter 0 predicts `p` from the guide `i`; filter 1, when `fits` has
/// two entries, predicts `i` from the guide `p` (the window moments are
/// shared). Box sums are zero-padded: horizontal radius `rx` over
/// adjacent columns, vertical radius `ry` over rows `sy` apart (`sy` = 2
/// keeps a row-parity family). Only rings of `4 ry sy + 2` rows are
/// held, never a plane. `sink.row(y, k, a, b, wt)` receives filter `k`'s weighted
/// coefficient rows for image row `y` (each `w` long), rows in order.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn guided_rows(
    i: &[f32],
    p: &[f32],
    fits: &[Fit],
    (w, h): (usize, usize),
    win: Win,
    c: Consts,
    sink: &mut impl CoefSink,
    pool: &mut Pool,
) {
    let Win { rx, ry, sy } = win;
    let len = 2 * rx + 1;
    let d = ry * sy;
    let span = 2 * d + 1;
    // Quantities: 0 sum i, 1 sum p, 2 sum i², 3 sum p², 4 sum i p, then per
    // MLRI filter: sum li lp m, sum li² m (sum m, a count, from the
    // mask's pattern: `hcount`).
    let lap_at: Vec<Option<usize>> = {
        let mut next = 5;
        fits.iter()
            .map(|f| match f {
                Fit::Ri => None,
                Fit::Mlri(_) => {
                    next += 2;
                    Some(next - 2)
                }
            })
            .collect()
    };
    let nq = 5 + 2 * lap_at.iter().flatten().count();
    let nf = fits.len();
    let mut ra = Ring::new(nq, span, w, pool);
    let mut rb = Ring::new(3 * nf, span, w, pool);
    let mut buf = pool.filled(w + 2 * rx, 0.0);
    let mut tmp = pool.filled(w + 2 * rx, 0.0);
    let mut vs = pool.filled(nq * w, 0.0);
    // Coefficient rows, zero-padded by `rx` at both ends (`wp` each).
    let wp = w + 2 * rx;
    let mut coef = pool.filled(3 * nf * wp, 0.0);
    // 1 / the horizontal window sizes.
    let mut icx = pool.get(w);
    for (x, v) in icx.iter_mut().enumerate() {
        *v = 1.0 / count_in(x, rx, 1, w) as f32;
    }
    // Per filter, the horizontal window sums of its mask in rows of
    // either parity (`2 w`; zeros for RI, which has no mask).
    let mut hcount = pool.filled(2 * nf * w, 0.0);
    for (f, hc) in fits.iter().zip(hcount.chunks_exact_mut(2 * w)) {
        if let Fit::Mlri(l) = f {
            let (h0, h1) = hc.split_at_mut(w);
            l.mask.window_counts(0, rx, h0);
            l.mask.window_counts(1, rx, h1);
        }
    }
    let mut ln = pool.filled(w, 0.0);
    // Each MLRI filter's Laplacian rows (see `lap_slot`) and its mask.
    let mut lap_planes: Vec<&[f32]> = Vec::new();
    let lap_src: Vec<Option<_>> = fits
        .iter()
        .map(|f| match f {
            Fit::Mlri(l) => Some((
                lap_slot(l.li, &mut lap_planes),
                lap_slot(l.lp, &mut lap_planes),
                l.mask,
            )),
            Fit::Ri => None,
        })
        .collect();
    let mut lrows = pool.filled(lap_planes.len() * w, 0.0);
    // The quantities whose window sums stage 1 takes (then per MLRI
    // filter li lp m and li² m).
    let mut srcs = vec![
        Moment::Copy(i),
        Moment::Copy(p),
        Moment::Sq(i),
        Moment::Sq(p),
    ];
    srcs.push(Moment::Mul(i, p));
    for t in 0..h + 2 * d {
        // Stage 1: horizontal sums of the moments of row t.
        if t < h {
            for (q, src) in srcs.iter().enumerate() {
                let rr = t * w..(t + 1) * w;
                if let Moment::Copy(a) = *src {
                    // A plane's own row: summed in place, no padded copy.
                    if window_sum_padded(&a[rr.clone()], rx, &mut buf, ra.row_mut(q, t)) {
                        continue;
                    }
                }
                src.row(t, w, padded(&mut buf, rx, w));
                window_sum(&mut buf, len, &mut tmp, ra.row_mut(q, t));
            }
            let rr = t * w..(t + 1) * w;
            for (j, pl) in lap_planes.iter().enumerate() {
                lap_row(&pl[rr.clone()], &mut lrows[j * w..(j + 1) * w]);
            }
            for (src, q) in lap_src.iter().zip(&lap_at) {
                if let (Some((li, lp, mask)), Some(q)) = (*src, *q) {
                    let li = lap_row_of(li, &lrows, t, w);
                    let lp = lap_row_of(lp, &lrows, t, w);
                    let m = mask.row(t);
                    let o = padded(&mut buf, rx, w);
                    for (((o, &a), &b), &m) in o.iter_mut().zip(li).zip(lp).zip(m) {
                        *o = a * b * m;
                    }
                    window_sum(&mut buf, len, &mut tmp, ra.row_mut(q, t));
                    let o = padded(&mut buf, rx, w);
                    for ((o, &a), &m) in o.iter_mut().zip(li).zip(m) {
                        *o = a * a * m;
                    }
                    window_sum(&mut buf, len, &mut tmp, ra.row_mut(q + 1, t));
                }
            }
        }
        // Stage 2: window moments of row t - d, the per-window fits and
        // their weighted coefficients, summed along the row.
        if t >= d && t - d < h {
            let y = t - d;
            for q in 0..nq {
                ra.vsum(q, y, h, win, &mut vs[q * w..(q + 1) * w]);
            }
            let icy = 1.0 / count_in(y, ry, sy, h) as f32;
            // Rows of either parity in the window.
            let mut rows_of = [0usize; 2];
            for j in 0..2 * ry + 1 {
                let yy = (y + j * sy).checked_sub(ry * sy);
                if let Some(yy) = yy.filter(|&yy| yy < h) {
                    rows_of[yy & 1] += 1;
                }
            }
            let rows_of = rows_of.map(|n| n as f32);
            let (s_i, rest) = vs.split_at(w);
            let (s_p, rest) = rest.split_at(w);
            let (s_ii, rest) = rest.split_at(w);
            let (s_pp, rest) = rest.split_at(w);
            let (s_ip, laps) = rest.split_at(w);
            for (k, (f, q)) in fits.iter().zip(&lap_at).enumerate() {
                // Filter 1 swaps the roles of i and p.
                let (si, sp, sii, spp) = if k == 0 {
                    (s_i, s_p, s_ii, s_pp)
                } else {
                    (s_p, s_i, s_pp, s_ii)
                };
                let cf = &mut coef[3 * k * wp..3 * (k + 1) * wp];
                let (ca, rest) = cf.split_at_mut(wp);
                let (cb, cw) = rest.split_at_mut(wp);
                let (ca, cb, cw) = (padded(ca, rx, w), padded(cb, rx, w), padded(cw, rx, w));
                let mo = [&si[..w], &sp[..w], &sii[..w], &spp[..w], &s_ip[..w]];
                match (f, q) {
                    (Fit::Mlri(_), Some(q)) => {
                        let l1 = &laps[(q - 5) * w..(q - 4) * w];
                        let l2 = &laps[(q - 4) * w..(q - 3) * w];
                        // The window sum of the mask: a count, exact.
                        let (h0, h1) = hcount[2 * k * w..2 * (k + 1) * w].split_at(w);
                        for ((o, &c0), &c1) in ln.iter_mut().zip(h0).zip(h1) {
                            *o = rows_of[0] * c0 + rows_of[1] * c1;
                        }
                        fit_row::<true>(mo, [l1, l2, &ln], &icx, icy, c, (ca, cb, cw));
                    }
                    _ => fit_row::<false>(mo, [si; 3], &icx, icy, c, (ca, cb, cw)),
                }
                for j in 0..3 {
                    let row = &mut coef[(3 * k + j) * wp..(3 * k + j + 1) * wp];
                    window_sum(row, len, &mut tmp, rb.row_mut(3 * k + j, y));
                }
            }
        }
        // Stage 3: the coefficients of row t - 2d averaged over the
        // windows covering each pixel.
        if t >= 2 * d && t - 2 * d < h {
            let y = t - 2 * d;
            for k in 0..nf {
                let (sa, rest) = vs.split_at_mut(w);
                let (sb, rest) = rest.split_at_mut(w);
                let sw = &mut rest[..w];
                rb.vsum(3 * k, y, h, win, sa);
                rb.vsum(3 * k + 1, y, h, win, sb);
                rb.vsum(3 * k + 2, y, h, win, sw);
                sink.row(y, k, sa, sb, sw);
            }
        }
    }
    pool.put([ra.data, rb.data, buf, tmp, vs, coef, icx, hcount, ln, lrows]);
}

/// The per-window fits of one row: window sums `[i, p, i², p², i p]`,
/// 1 / window sizes `icx[x] * icy`; the slope by the covariance (RI) or, with
/// `MLRI`, from the window sums `[li lp m, li² m, m]` of the Laplacian
/// terms; writes `a * wt`, `b * wt` and `wt` (`wt` = 1 / the window's RMS
/// fit error).
#[inline(always)]
fn fit_row<const MLRI: bool>(
    [si, sp, sii, spp, sip]: [&[f32]; 5],
    [l1, l2, ln]: [&[f32]; 3],
    icx: &[f32],
    icy: f32,
    c: Consts,
    (ca, cb, cw): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let w = ca.len();
    let (si, sp, sii, spp, sip) = (&si[..w], &sp[..w], &sii[..w], &spp[..w], &sip[..w]);
    let (l1, l2, ln, icx) = (&l1[..w], &l2[..w], &ln[..w], &icx[..w]);
    let (cb, cw) = (&mut cb[..w], &mut cw[..w]);
    for x in 0..w {
        let inv = icx[x] * icy;
        let (mi, mp) = (si[x] * inv, sp[x] * inv);
        let a = if MLRI {
            l1[x] / l2[x].max(c.var_floor * ln[x].max(1.0))
        } else {
            let cov = sip[x] * inv - mi * mp;
            let var = sii[x] * inv - mi * mi;
            cov / var.max(c.var_floor)
        };
        let b = mp - a * mi;
        // Mean squared fit error over the window (`b² n / n` = `b²`).
        let e =
            (a * a * sii[x] + spp[x] + 2.0 * a * b * si[x] - 2.0 * b * sp[x] - 2.0 * a * sip[x])
                * inv
                + b * b;
        let wt = 1.0 / e.max(0.0).sqrt().max(c.dif_floor);
        ca[x] = a * wt;
        cb[x] = b * wt;
        cw[x] = wt;
    }
}

/// Horizontal neighbour means of a row: `out[x] = (v[x-1] + v[x+1]) / 2`, mirrored
/// at the ends (`v.len() >= 2`).
#[inline(always)]
fn hmean_row(v: &[f32], out: &mut [f32]) {
    let w = v.len().min(out.len());
    if w < 2 {
        out[..w].copy_from_slice(&v[..w]);
        return;
    }
    out[0] = 0.5 * (v[1] + v[1]);
    out[w - 1] = 0.5 * (v[w - 2] + v[w - 2]);
    let it = out[1..w - 1]
        .iter_mut()
        .zip(v[..w - 2].iter().zip(&v[2..w]));
    for (o, (&l, &r)) in it {
        *o = 0.5 * (l + r);
    }
}

/// Taps of the 5-tap Gaussian (sigma 2) that smooths the criterion.
const GAUSS5: [f32; 5] = [0.152_469, 0.221_841, 0.251_379, 0.221_841, 0.152_469];

/// Horizontal pass of the separable 5x5 Gaussian on one row, with
/// clamped ends: `out[x] = sum_d K[d] row[clamp(x + d - 2)]`, summed in
/// the order of `d`.
#[inline(always)]
fn gauss5_row(row: &[f32], out: &mut [f32]) {
    let w = row.len().min(out.len());
    if w > 4 {
        let [k0, k1, k2, k3, k4] = GAUSS5;
        let n = w - 4;
        let (v0, v1, v2) = (&row[..n], &row[1..n + 1], &row[2..n + 2]);
        let (v3, v4) = (&row[3..n + 3], &row[4..n + 4]);
        let out = &mut out[2..n + 2];
        for x in 0..n {
            out[x] = 0.0 + k0 * v0[x] + k1 * v1[x] + k2 * v2[x] + k3 * v3[x] + k4 * v4[x];
        }
    }
    for x in (0..2.min(w)).chain(w.saturating_sub(2).max(2.min(w))..w) {
        let mut s = 0.0;
        for (d, &k) in GAUSS5.iter().enumerate() {
            let xx = (x + d).saturating_sub(2).min(w - 1);
            s += k * row[xx];
        }
        out[x] = s;
    }
}

/// Horizontal Laplacian `2 v[x] - v[x-2] - v[x+2]` of a row into `o`
/// (same length; 0 within 2 px of the row's ends).
#[inline(always)]
fn lap_row(row: &[f32], o: &mut [f32]) {
    let w = row.len().min(o.len());
    let (row, o) = (&row[..w], &mut o[..w]);
    o.fill(0.0);
    if w > 4 {
        let it = o[2..w - 2].iter_mut().zip(&row[2..w - 2]);
        for ((o, &v), (&l, &r)) in it.zip(row[..w - 4].iter().zip(&row[4..])) {
            *o = 2.0 * v - l - r;
        }
    }
}

/// The per-round state of [`green_dir`] after the guided filters: the
/// selection criterion, smoothed in rolling rings of 5 rows, and the
/// guides' update, both row by row behind the filters' output.
struct RoundRows {
    w: usize,
    h: usize,
    /// Horizontally smoothed |guide - tentative| rows, ring of 5.
    cri: Vec<f32>,
    /// Horizontally smoothed gradient rows of it, ring of 5.
    dif: Vec<f32>,
    /// Row scratch (`w` each).
    r0: Vec<f32>,
    r1: Vec<f32>,
    r2: Vec<f32>,
    r3: Vec<f32>,
    r4: Vec<f32>,
    r5: Vec<f32>,
}

impl RoundRows {
    fn new(w: usize, h: usize) -> RoundRows {
        RoundRows {
            w,
            h,
            cri: vec![0.0; 5 * w],
            dif: vec![0.0; 5 * w],
            r0: vec![0.0; w],
            r1: vec![0.0; w],
            r2: vec![0.0; w],
            r3: vec![0.0; w],
            r4: vec![0.0; w],
            r5: vec![0.0; w],
        }
    }

    /// Criterion rows of image row `y`: |guide - tentative| summed over
    /// both channels and its horizontal central gradient, each smoothed
    /// horizontally into the rings. `rows` = (gg, tg, cc, tc) rows of `y`.
    #[inline(always)]
    fn criterion(&mut self, y: usize, (gr, tgr, cr, tcr): (&[f32], &[f32], &[f32], &[f32])) {
        let w = self.w;
        let (eg, ec) = (&mut self.r0[..w], &mut self.r1[..w]);
        let (crow, drow) = (&mut self.r2[..w], &mut self.r3[..w]);
        let (gr, tgr, cr, tcr) = (&gr[..w], &tgr[..w], &cr[..w], &tcr[..w]);
        for x in 0..w {
            eg[x] = gr[x] - tgr[x];
            ec[x] = cr[x] - tcr[x];
            crow[x] = eg[x].abs() + ec[x].abs();
        }
        let d = |l: usize, r: usize| (eg[r] - eg[l]).abs() + (ec[r] - ec[l]).abs();
        drow[0] = d(0, 1.min(w - 1));
        if w > 1 {
            drow[w - 1] = d(w - 2, w - 1);
        }
        if w > 2 {
            let it = drow[1..w - 1]
                .iter_mut()
                .zip(eg[..w - 2].iter().zip(&eg[2..]));
            for ((o, (&gl, &gr)), (&cl, &cr)) in it.zip(ec[..w - 2].iter().zip(&ec[2..])) {
                *o = (gr - gl).abs() + (cr - cl).abs();
            }
        }
        let s = (y % 5) * w;
        gauss5_row(crow, &mut self.cri[s..s + w]);
        gauss5_row(drow, &mut self.dif[s..s + w]);
    }

    /// Row `y` of the next round: the guides (observed samples +
    /// interpolated residuals) into `gg2` and, when `both`, `cc2`; where
    /// the smoothed criterion of this round beats `crit`, `crit` and
    /// `best` take it and the new green. Needs the criterion rows up to
    /// `y + 2`. `inp` = (mosaic, is_g, is_c, tg, tc). `FIRST` (the first
    /// round): `crit` and `best` are not read but taken as `f32::MAX` and
    /// `g0` (the initial green).
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn update<const FIRST: bool>(
        &mut self,
        y: usize,
        (m, is_g, is_c, tg, tc): (&[f32], &Mask, &Mask, &[f32], &[f32]),
        both: bool,
        g0: &[f32],
        (gg2, cc2, crit, best): (&mut [f32], &mut [f32], &mut [f32], &mut [f32]),
    ) {
        let (w, h) = (self.w, self.h);
        let rr = y * w..(y + 1) * w;
        let (mr, gmask, cmask) = (&m[rr.clone()], is_g.row(y), is_c.row(y));
        let (tgr, tcr) = (&tg[rr.clone()], &tc[rr.clone()]);
        let (rg, rc) = (&mut self.r0[..w], &mut self.r1[..w]);
        for x in 0..w {
            rg[x] = (mr[x] - tgr[x]) * gmask[x];
            rc[x] = (mr[x] - tcr[x]) * cmask[x];
        }
        let (hg, hc) = (&mut self.r4[..w], &mut self.r5[..w]);
        hmean_row(rg, hg);
        hmean_row(rc, hc);
        let (hg, hc) = (&hg[..w], &hc[..w]);
        // The criterion rings' rows for the vertical Gaussian at row `y`
        // (clamped to the plane).
        #[inline(always)]
        fn ring_row(r: &[f32], (w, h, y): (usize, usize, usize), d: usize) -> &[f32] {
            let s = ((y + d).saturating_sub(2).min(h - 1) % 5) * w;
            &r[s..s + w]
        }
        let ring = |r, d| ring_row(r, (w, h, y), d);
        let (c0, c1, c2, c3, c4) = (
            ring(&self.cri, 0),
            ring(&self.cri, 1),
            ring(&self.cri, 2),
            ring(&self.cri, 3),
            ring(&self.cri, 4),
        );
        let (d0, d1, d2, d3, d4) = (
            ring(&self.dif, 0),
            ring(&self.dif, 1),
            ring(&self.dif, 2),
            ring(&self.dif, 3),
            ring(&self.dif, 4),
        );
        let [k0, k1, k2, k3, k4] = GAUSS5;
        // One pass: the new green row, the smoothed criterion (vertical
        // Gaussian of the rings) and the selection.
        let ggr = &mut gg2[rr.clone()];
        let (crit, best) = (&mut crit[rr.clone()], &mut best[rr.clone()]);
        let (ggr, crit, best, mr, gmask, tgr) = (
            &mut ggr[..w],
            &mut crit[..w],
            &mut best[..w],
            &mr[..w],
            &gmask[..w],
            &tgr[..w],
        );
        let g0r = &g0[rr.clone()][..w];
        for x in 0..w {
            let site = gmask[x] > 0.5;
            let g = if site { mr[x] } else { tgr[x] + hg[x] };
            ggr[x] = g;
            let s = 0.0 + k0 * c0[x] + k1 * c1[x] + k2 * c2[x] + k3 * c3[x] + k4 * c4[x];
            let d = 0.0 + k0 * d0[x] + k1 * d1[x] + k2 * d2[x] + k3 * d3[x] + k4 * d4[x];
            let cr = s * s * d;
            let (old_cr, old_g) = if FIRST {
                (f32::MAX, g0r[x])
            } else {
                (crit[x], best[x])
            };
            let take = cr < old_cr;
            crit[x] = if take { cr } else { old_cr };
            best[x] = if take { g } else { old_g };
        }
        if both {
            let ccr = &mut cc2[rr][..w];
            let tcr = &tcr[..w];
            for x in 0..w {
                let site = gmask[x] > 0.5;
                ccr[x] = if site { tcr[x] + hc[x] } else { mr[x] };
            }
        }
    }
}

/// One round of [`green_dir`] as the guided filters' row sink: the
/// tentative rows `a * guide + b`, then the criterion of the row and the
/// next round's row two behind it.
struct Round<'a> {
    rows: &'a mut RoundRows,
    /// Filters per round (2; 1 when the other channel is a given guide).
    nf: usize,
    /// The other channel is estimated too (no guide given).
    both: bool,
    /// This round's guides (green, other channel).
    old: (&'a [f32], &'a [f32]),
    /// Mosaic plane, is_g, is_c masks.
    inp: (&'a [f32], &'a Mask, &'a Mask),
    /// Tentative green and other channel.
    tent: (&'a mut [f32], &'a mut [f32]),
    /// Next round's guides, the running criterion minimum and its green.
    next: (&'a mut [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32]),
    /// The first round (the criterion minimum and its green start as
    /// `f32::MAX` and `g0`, not read from `next`).
    first: bool,
    /// The initial green.
    g0: &'a [f32],
}

impl Round<'_> {
    /// Row `y` of the next round (criterion rows up to `y + 2` done).
    #[inline(always)]
    fn finish(&mut self, y: usize) {
        let (m, is_g, is_c) = self.inp;
        let (tg, tc) = (&*self.tent.0, &*self.tent.1);
        let (gg2, cc2, crit, best) = &mut self.next;
        let planes = (&mut **gg2, &mut **cc2, &mut **crit, &mut **best);
        let inp = (m, is_g, is_c, tg, tc);
        if self.first {
            self.rows.update::<true>(y, inp, self.both, self.g0, planes);
        } else {
            self.rows
                .update::<false>(y, inp, self.both, self.g0, planes);
        }
    }
}

impl CoefSink for Round<'_> {
    #[inline(always)]
    fn row(&mut self, y: usize, f: usize, a: &[f32], b: &[f32], wt: &[f32]) {
        let w = self.rows.w;
        let rr = y * w..(y + 1) * w;
        let (gg, cc) = self.old;
        let (dst, src) = if f == 0 {
            (&mut self.tent.0[rr.clone()], &cc[rr.clone()])
        } else {
            (&mut self.tent.1[rr.clone()], &gg[rr.clone()])
        };
        for (((d, &s), &a), (&b, &wt)) in dst.iter_mut().zip(src).zip(a).zip(b.iter().zip(wt)) {
            let inv = 1.0 / wt;
            *d = (a * inv) * s + b * inv;
        }
        if f + 1 < self.nf {
            return;
        }
        if !self.both {
            self.tent.1[rr.clone()].copy_from_slice(&cc[rr.clone()]);
        }
        let cur = (
            &gg[rr.clone()],
            &self.tent.0[rr.clone()],
            &cc[rr.clone()],
            &self.tent.1[rr],
        );
        self.rows.criterion(y, cur);
        if y >= 2 {
            self.finish(y - 2);
        }
    }
}

/// Horizontal-direction green of the ARI green step on a `w x h` plane
/// whose rows alternate green and one other colour. `is_g` is 1.0 at
/// green sites. Returns the RI and MLRI green planes (valid at non-green
/// sites) and their selection criteria.
///
/// Each round streams: the guided filters emit rows of the tentative
/// planes, the criterion of a row follows at once and the guides' update
/// two rows behind it (the criterion's smoothing radius), written to the
/// next round's planes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn green_dir(
    m: &[f32],
    is_g: &Mask,
    guide: Option<&[f32]>,
    w: usize,
    h: usize,
    sched: Sched,
    c: Consts,
    pool: &mut Pool,
) -> [(Vec<f32>, Vec<f32>); 2] {
    let n = w * h;
    let is_c = is_g.complement();
    // Initial guides: 1-D linear interpolation along the rows.
    let mut g0 = pool.get(n);
    let mut c0 = pool.get(n);
    let mut lin = pool.get(w);
    for y in 0..h {
        let rr = y * w..(y + 1) * w;
        hmean_row(&m[rr.clone()], &mut lin);
        let (mr, gm) = (&m[rr.clone()], is_g.row(y));
        let (g0r, c0r) = (&mut g0[rr.clone()], &mut c0[rr]);
        for x in 0..w {
            let site = gm[x] > 0.5;
            g0r[x] = if site { mr[x] } else { lin[x] };
            c0r[x] = if site { lin[x] } else { mr[x] };
        }
    }
    // The first round's guides: `g0` and `c0` or the given guide.
    let c_first: &[f32] = guide.unwrap_or(&c0);
    let (mut tg, mut tc) = (pool.get(n), pool.get(n));
    let (mut gg2, mut cc2) = (pool.get(n), pool.get(n));
    let mut rows = RoundRows::new(w, h);
    let nf = if guide.is_some() { 1 } else { 2 };
    let mut out: [(Vec<f32>, Vec<f32>); 2] = Default::default();
    for (method, slot) in out.iter_mut().enumerate() {
        let mlri = method == 1;
        // This round's guides when not the first's (`g0`, `c_first`).
        let (mut gg, mut cc): (Option<Vec<f32>>, Option<Vec<f32>>) = (None, None);
        // Written in full by the first round.
        let (mut best, mut crit) = (pool.get(n), pool.get(n));
        for k in 0..sched.iters {
            let gcur = gg.as_deref().unwrap_or(&g0);
            let ccur = cc.as_deref().unwrap_or(c_first);
            let win = if mlri {
                Win {
                    rx: 4 + sched.step * k,
                    ry: (sched.step * k).div_ceil(2),
                    sy: 2,
                }
            } else {
                Win {
                    rx: 2 + sched.step * k,
                    ry: (sched.step * k + 2) / 2,
                    sy: 2,
                }
            };
            // Tentative green from the other channel (filter 0) and, with
            // no guide given, the other channel from green (filter 1).
            let fits: [Fit; 2] = if mlri {
                [
                    Fit::Mlri(Lap {
                        li: LapOf::Rows(ccur),
                        lp: LapOf::Rows(gcur),
                        mask: is_g,
                    }),
                    Fit::Mlri(Lap {
                        li: LapOf::Rows(gcur),
                        lp: LapOf::Rows(ccur),
                        mask: &is_c,
                    }),
                ]
            } else {
                [Fit::Ri, Fit::Ri]
            };
            let mut sink = Round {
                rows: &mut rows,
                nf,
                both: guide.is_none(),
                old: (gcur, ccur),
                inp: (m, is_g, &is_c),
                tent: (&mut tg, &mut tc),
                next: (&mut gg2, &mut cc2, &mut crit, &mut best),
                first: k == 0,
                g0: &g0,
            };
            guided_rows(ccur, gcur, &fits[..nf], (w, h), win, c, &mut sink, pool);
            for y in h.saturating_sub(2)..h {
                sink.finish(y);
            }
            // The new guides become this round's; the old ones (none
            // after the first round) the next round's output.
            let new_g = std::mem::take(&mut gg2);
            gg2 = gg.replace(new_g).unwrap_or_else(|| pool.get(n));
            if guide.is_none() {
                let new_c = std::mem::take(&mut cc2);
                cc2 = cc.replace(new_c).unwrap_or_else(|| pool.get(n));
            }
        }
        for v in [gg, cc].into_iter().flatten() {
            pool.put([v]);
        }
        *slot = (best, crit);
    }
    pool.put([g0, c0, lin, tg, tc, gg2, cc2]);
    out
}

/// Transposes a `w x h` plane into `h x w`: 8 x 8 blocks in AVX
/// registers where the CPU has AVX2 ([`transpose_blocks_avx`]), the
/// remaining edge rows and columns (and everything elsewhere) by
/// [`transpose_scalar`]. A copy: the same bits either way.
#[inline(always)]
fn transpose(src: &[f32], w: usize, h: usize, pool: &mut Pool) -> Vec<f32> {
    let mut o = pool.get(w * h);
    let (mut bw, mut bh) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if crate::backend::simd::has_avx2() && src.len() >= w * h {
        // SAFETY: AVX2 (hence AVX) is present (checked just above) and
        // both planes hold `w * h` samples.
        unsafe { transpose_blocks_avx(src, w, h, &mut o) };
        (bw, bh) = (w & !7, h & !7);
    }
    transpose_scalar(src, w, h, (bw, bh), &mut o);
    o
}

/// The part of [`transpose`] outside the top-left `bw x bh` corner
/// (already done): 16 source columns at a time, so that the writes go to
/// 16 contiguous destination rows.
#[inline(always)]
fn transpose_scalar(src: &[f32], w: usize, h: usize, (bw, bh): (usize, usize), o: &mut [f32]) {
    const B: usize = 16;
    for (bi, dst) in o[..w * h].chunks_mut(B * h).enumerate() {
        let x0 = bi * B;
        let cols = dst.len() / h;
        for (y, row) in src.chunks_exact(w).enumerate() {
            // Columns below `bw` of rows below `bh` are done.
            let skip = if y < bh {
                bw.saturating_sub(x0).min(cols)
            } else {
                0
            };
            for j in skip..cols {
                dst[j * h + y] = row[x0 + j];
            }
        }
    }
}

/// Transposes the top-left `(w & !7) x (h & !7)` samples of the `w x h`
/// plane `src` into the `h x w` plane `dst`, 8 x 8 blocks at a time
/// (8 row loads, 24 shuffles, 8 row stores).
///
/// # Safety
/// The CPU must support AVX; `src` and `dst` must hold `w * h` samples.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_blocks_avx(src: &[f32], w: usize, h: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    if src.len() < w * h || dst.len() < w * h {
        return;
    }
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for x in (0..w & !7).step_by(8) {
        for y in (0..h & !7).step_by(8) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, v) in r.iter_mut().enumerate() {
                // SAFETY: x + 7 < w and y + i < h: 8 samples inside `src`.
                *v = unsafe { _mm256_loadu_ps(sp.add((y + i) * w + x)) };
            }
            let [r0, r1, r2, r3, r4, r5, r6, r7] = r;
            let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
            let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
            let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
            let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (j, c) in cols.into_iter().enumerate() {
                // SAFETY: x + j < w and y + 7 < h: 8 samples inside `dst`.
                unsafe { _mm256_storeu_ps(dp.add((x + j) * h + y), c) };
            }
        }
    }
}

/// The indices before and after `i` in `0..n`, mirrored at the ends.
#[inline(always)]
fn mirrored_neighbours(i: usize, n: usize) -> (usize, usize) {
    let before = if i > 0 { i - 1 } else { (i + 1).min(n - 1) };
    let after = if i + 1 < n {
        i + 1
    } else {
        i.saturating_sub(1)
    };
    (before, after)
}

/// 2-D Laplacian `4 v - (4 neighbours)` of a `wl x hl` lattice plane,
/// mirrored at its edges.
#[inline(always)]
fn lap_lattice(v: &[f32], wl: usize, hl: usize, pool: &mut Pool) -> Vec<f32> {
    let nl = wl * hl;
    let mut o = pool.get(nl);
    for yy in 0..hl {
        let (u, d) = mirrored_neighbours(yy, hl);
        for xx in 0..wl {
            let (l, rr) = mirrored_neighbours(xx, wl);
            let k = yy * wl + xx;
            o[k] = 4.0 * v[k] - v[u * wl + xx] - v[d * wl + xx] - v[yy * wl + l] - v[yy * wl + rr];
        }
    }
    o
}

/// Lattice taps of full-resolution coordinate `v` for samples at
/// `o + 2 q`, `q < nlat`: (q, q) on a sample, its two neighbours between.
#[inline(always)]
fn taps(v: usize, o: usize, nlat: usize) -> (usize, usize) {
    if v < o {
        (0, 0)
    } else if (v - o).is_multiple_of(2) {
        let q = ((v - o) / 2).min(nlat - 1);
        (q, q)
    } else {
        let q = ((v - o) / 2).min(nlat - 1);
        (q, (q + 1).min(nlat - 1))
    }
}

/// Red or blue at full resolution by MLRI guided upsampling: the colour's
/// samples sit on the lattice `(2Y + oy, 2X + ox)`; `g` is the full green
/// plane.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn rb_plane(
    m: &[f32],
    g: &[f32],
    w: usize,
    h: usize,
    (oy, ox): (usize, usize),
    r: usize,
    c: Consts,
    pool: &mut Pool,
) -> Vec<f32> {
    let hl = (h - oy).div_ceil(2);
    let wl = (w - ox).div_ceil(2);
    let nl = hl * wl;
    let at = |yy: usize, xx: usize| (2 * yy + oy) * w + 2 * xx + ox;
    let mut gl = pool.get(nl);
    let mut cl = pool.get(nl);
    for yy in 0..hl {
        for xx in 0..wl {
            gl[yy * wl + xx] = g[at(yy, xx)];
            cl[yy * wl + xx] = m[at(yy, xx)];
        }
    }
    let (lg, lc) = (
        lap_lattice(&gl, wl, hl, pool),
        lap_lattice(&cl, wl, hl, pool),
    );
    let ones = Mask::new([[1.0; 2]; 2], wl);
    let win = Win {
        rx: r,
        ry: r,
        sy: 1,
    };
    let (mut ma, mut mb) = (pool.get(nl), pool.get(nl));
    let fit = [Fit::Mlri(Lap {
        li: LapOf::Plane(&lg),
        lp: LapOf::Plane(&lc),
        mask: &ones,
    })];
    let mut sink = Planes {
        w: wl,
        a: &mut ma,
        b: &mut mb,
    };
    guided_rows(&gl, &cl, &fit, (wl, hl), win, c, &mut sink, pool);
    let mut res = pool.get(nl);
    for (k, o) in res.iter_mut().enumerate() {
        *o = cl[k] - (ma[k] * gl[k] + mb[k]);
    }
    // Bilinear interpolation of (a, b, residual) to full resolution.
    let xt: Vec<(usize, usize)> = (0..w).map(|x| taps(x, ox, wl)).collect();
    let mut out = pool.get(w * h);
    // Per row: the three lattice planes blended vertically (`wl` each),
    // then horizontally to full width (`w` each).
    let mut vrow = pool.get(3 * wl);
    let mut hrow = pool.get(3 * w);
    for y in 0..h {
        let (y0, y1) = taps(y, oy, hl);
        let (r0, r1) = (y0 * wl..(y0 + 1) * wl, y1 * wl..(y1 + 1) * wl);
        for (plane, v) in [&ma, &mb, &res].into_iter().zip(vrow.chunks_exact_mut(wl)) {
            for ((o, &p0), &p1) in v.iter_mut().zip(&plane[r0.clone()]).zip(&plane[r1.clone()]) {
                *o = 0.5 * (p0 + p1);
            }
        }
        for (v, hr) in vrow.chunks_exact(wl).zip(hrow.chunks_exact_mut(w)) {
            for (o, &(x0, x1)) in hr.iter_mut().zip(&xt) {
                *o = 0.5 * (v[x0] + v[x1]);
            }
        }
        let (ha, rest) = hrow.split_at(w);
        let (hb, hres) = rest.split_at(w);
        let it = out[y * w..(y + 1) * w]
            .iter_mut()
            .zip(&g[y * w..(y + 1) * w]);
        for (((o, &gv), &a), (&b, &r)) in it.zip(ha).zip(hb.iter().zip(hres)) {
            *o = a * gv + b + r;
        }
    }
    pool.put([gl, cl, lg, lc, ma, mb, res, vrow, hrow]);
    out
}

crate::avx2_dispatch!(
    /// [`ari_tile_body`], 8 lanes wide on AVX2 machines.
    fn ari_tile(t: &Tile, p: &Params, unit: f32, s: &mut Scratch, pool: &mut Pool) => ari_tile_body
);

/// Demosaics one padded tile into `s.out` (buffers from `pool`; the
/// previous tile's planes go back to it): full-tile R, G, B planes
/// (each `t.w * t.h`, row-major) valid `radius()` pixels in from every
/// side. Every helper it calls is `#[inline(always)]`, so that
/// [`ari_tile`]'s AVX2 copy compiles them all (no FMA: the same bits as
/// the baseline copy).
#[inline(always)]
fn ari_tile_body(t: &Tile, p: &Params, unit: f32, s: &mut Scratch, pool: &mut Pool) {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let m = &t.data;
    let c = Consts::new(unit);
    pool.put(std::mem::take(&mut s.out));
    let is_g = Mask::new(
        [0, 1].map(|y| [0, 1].map(|x| f32::from(u8::from(t.cfa.color_at(y, x) == 1)))),
        w,
    );
    let sched = Sched {
        iters: p.iterations,
        step: p.window_step,
    };
    let g = adaptive_hv(m, &is_g, None, w, h, sched, c, pool);
    // Red and blue by guided upsampling from their lattices.
    let site = |col: usize| -> (usize, usize) {
        for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            if t.cfa.color_at(oy, ox) == col {
                return (oy, ox);
            }
        }
        (0, 0)
    };
    let (ry, rx) = site(0);
    let (by, bx) = site(2);
    let r = rb_plane(m, &g, w, h, (ry, rx), p.rb_radius, c, pool);
    let b = rb_plane(m, &g, w, h, (by, bx), p.rb_radius, c, pool);
    if !p.rb_directional {
        s.out = [r, g, b];
        return;
    }
    // Second step: R (B) at green sites by the directional adaptive
    // residual interpolation, R (B) now known at every non-green site.
    let not_g = is_g.complement();
    let rb_at_g = |plane: Vec<f32>, pool: &mut Pool| -> Vec<f32> {
        let mut pm = pool.get(n);
        for (y, prow) in pm.chunks_exact_mut(w).enumerate() {
            let rr = y * w..(y + 1) * w;
            let it = prow.iter_mut().zip(is_g.row(y)).zip(&g[rr.clone()]);
            for (((o, &site), &gv), &pv) in it.zip(&plane[rr]) {
                *o = if site > 0.5 { gv } else { pv };
            }
        }
        let out = adaptive_hv(&pm, &not_g, Some(&g), w, h, sched, c, pool);
        pool.put([pm, plane]);
        out
    };
    let r = rb_at_g(r, pool);
    let b = rb_at_g(b, pool);
    s.out = [r, g, b];
}

/// ARI's adaptive combination of the horizontal and vertical RI / MLRI
/// estimates of the channel observed where `is_t` is 1.0 (kept there),
/// weighted by 1 / criterion. `guide`: the other channel when it is known
/// everywhere (else it is interpolated from `m` too).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adaptive_hv(
    m: &[f32],
    is_t: &Mask,
    guide: Option<&[f32]>,
    w: usize,
    h: usize,
    sched: Sched,
    c: Consts,
    pool: &mut Pool,
) -> Vec<f32> {
    let n = w * h;
    let [(ri_h, cr_ri_h), (ml_h, cr_ml_h)] = green_dir(m, is_t, guide, w, h, sched, c, pool);
    let mt = transpose(m, w, h, pool);
    let is_tt = is_t.transposed(h);
    let gt = guide.map(|g| transpose(g, w, h, pool));
    let [(ri_vt, cr_ri_vt), (ml_vt, cr_ml_vt)] =
        green_dir(&mt, &is_tt, gt.as_deref(), h, w, sched, c, pool);
    pool.put([mt]);
    if let Some(gt) = gt {
        pool.put([gt]);
    }
    let (ri_v, cr_ri_v) = (
        transpose(&ri_vt, h, w, pool),
        transpose(&cr_ri_vt, h, w, pool),
    );
    let (ml_v, cr_ml_v) = (
        transpose(&ml_vt, h, w, pool),
        transpose(&cr_ml_vt, h, w, pool),
    );
    pool.put([ri_vt, cr_ri_vt, ml_vt, cr_ml_vt]);
    let mut g = pool.get(n);
    let m = &m[..n];
    let ests = [&ri_h[..n], &ri_v[..n], &ml_h[..n], &ml_v[..n]];
    let crits = [&cr_ri_h[..n], &cr_ri_v[..n], &cr_ml_h[..n], &cr_ml_v[..n]];
    for (y, grow) in g.chunks_exact_mut(w).enumerate() {
        let trow = is_t.row(y);
        for (x, o) in grow.iter_mut().enumerate() {
            let k = y * w + x;
            let (mut num, mut den) = (0f32, 0f32);
            for (e, cr) in ests.iter().zip(&crits) {
                let wt = 1.0 / (cr[k] + c.crit_eps);
                num += wt * e[k];
                den += wt;
            }
            *o = if trow[x] > 0.5 { m[k] } else { num / den };
        }
    }
    pool.put([ri_h, cr_ri_h, ml_h, cr_ml_h, ri_v, cr_ri_v, ml_v, cr_ml_v]);
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Image, Mosaic};
    use crate::raw::CfaPattern;
    use crate::stages::demosaic_testing::{assert_flat_fields_exact, mosaic_of, mse, run_op};
    use std::sync::Arc;

    fn run(m: Mosaic) -> Image {
        run_op("demosaic_ari", serde_json::Value::Null, m)
    }

    #[test]
    fn flat_colour_fields_are_exact_in_every_phase_and_odd_sizes() {
        assert_flat_fields_exact("demosaic_ari", 1e-4);
    }

    #[test]
    fn dn_scaled_input_matches_normalised_input() {
        // The same scene in DN (white 4000) gives the same image x 4000.
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let v = 0.5 + 0.3 * ((x as f32 * 0.4).sin() * (y as f32 * 0.3).cos());
            [v * 0.8, v, v * 0.6 + 0.1]
        };
        let cfa = CfaPattern::Grbg;
        let norm = run(mosaic_of(&scene, 40, 30, cfa));
        let mut m = mosaic_of(&scene, 40, 30, cfa);
        m.data.f32_mut().iter_mut().for_each(|v| *v *= 4000.0);
        m.scale = MosaicScale::Dn;
        let mut meta = (*m.meta).clone();
        meta.white = [4000.0; 3];
        m.meta = Arc::new(meta);
        let dn = run(m);
        for (a, b) in norm.data.iter().zip(&dn.data) {
            // f32 rounding of the window moments (the variance is a
            // difference of them): 2.5e-4 relative to white.
            assert!((a * 4000.0 - b).abs() < 1.0, "{a} x 4000 vs {b}");
        }
    }

    /// A zone plate (chirped rings, frequency rising to ~0.35 cycles/px at
    /// the corners) with a colour tint, plus a sharp diagonal edge.
    fn zone(x: usize, y: usize) -> [f32; 3] {
        let (dx, dy) = (x as f32 - 48.0, y as f32 - 40.0);
        let l = 0.5 + 0.4 * (0.018 * (dx * dx + dy * dy)).cos();
        let e = if x + y > 90 { 0.1 } else { 0.0 };
        [0.9 * l + e, l, 0.7 * l + 0.05]
    }

    #[test]
    fn zone_plate_beats_bilinear_in_every_phase() {
        for cfa in CfaPattern::ALL {
            let ari = run(mosaic_of(&zone, 96, 80, cfa));
            let bil = run_op(
                "demosaic_bilinear",
                serde_json::Value::Null,
                mosaic_of(&zone, 96, 80, cfa),
            );
            let (e_ari, e_bil) = (mse(&ari, &zone, 4), mse(&bil, &zone, 4));
            assert!(
                e_ari < 0.5 * e_bil,
                "{cfa:?}: ari {e_ari} vs bilinear {e_bil}"
            );
        }
    }

    #[test]
    fn edges_beat_menon_and_rcd_where_channels_decorrelate() {
        // Colour edges whose channels move independently (McMaster-like):
        // residual interpolation keeps them where colour differences smear.
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let a = if (x / 5 + y / 9).is_multiple_of(2) {
                0.8
            } else {
                0.2
            };
            let b = if x * 2 + y > 100 { 0.7 } else { 0.1 };
            let g = 0.3 + 0.2 * ((x as f32) * 0.21).sin();
            [a, g, b]
        };
        let cfa = CfaPattern::Rggb;
        let ari = mse(&run(mosaic_of(&scene, 80, 64, cfa)), &scene, 6);
        let rcd = mse(
            &run_op(
                "demosaic_rcd",
                serde_json::Value::Null,
                mosaic_of(&scene, 80, 64, cfa),
            ),
            &scene,
            6,
        );
        let bil = mse(
            &run_op(
                "demosaic_bilinear",
                serde_json::Value::Null,
                mosaic_of(&scene, 80, 64, cfa),
            ),
            &scene,
            6,
        );
        assert!(ari < bil, "ari {ari} vs bilinear {bil}");
        assert!(ari < rcd, "ari {ari} vs rcd {rcd}");
    }

    #[test]
    fn native_samples_pass_through() {
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let v = ((x * 7 + y * 13) % 17) as f32 / 17.0;
            [v, 1.0 - v, 0.5 * v]
        };
        for cfa in CfaPattern::ALL {
            let m = mosaic_of(&scene, 33, 21, cfa);
            let raw = m.data.clone().into_f32();
            let img = run(m);
            let p = img.planes();
            for y in 0..21 {
                for x in 0..33 {
                    let c = cfa.color_at(y, x);
                    let (got, want) = (p[c][y * 33 + x], raw[y * 33 + x]);
                    assert!(
                        (got - want).abs() < 1e-5,
                        "{cfa:?} ({x}, {y}): {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Strips and column tiles much smaller than the shipped ones (and a
    /// short last strip, a narrow last tile) give the bits of one tile
    /// holding the whole frame: the halo covers the dependency radius.
    #[test]
    fn tiling_does_not_change_the_bits() {
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let (xf, yf) = (x as f32, y as f32);
            let v = 0.5 + 0.4 * (xf * 0.37 + yf * yf * 0.011).sin();
            let edge = if x * 2 + y > 180 { 0.3 } else { 0.0 };
            [v * 0.8 + edge, 0.6 * v + 0.1, (1.0 - v) * 0.7 + edge * 0.5]
        };
        let p = Params::default();
        let halo = (p.radius() + 2) & !1;
        for cfa in [CfaPattern::ALL[0], CfaPattern::ALL[3]] {
            let m = mosaic_of(&scene, 230, 150, cfa);
            let whole = run_tiles(&m, halo, (1 << 20, 1 << 20), &p, 1.0);
            let tiled = run_tiles(&m, halo, (64, 96), &p, 1.0);
            assert_eq!(whole.len(), tiled.len());
            for (i, (a, b)) in whole.iter().zip(&tiled).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{cfa:?} sample {i}: {a} vs {b}");
            }
        }
    }

    /// The one-pass window sums (lengths up to 13) and the doubling
    /// partial sums (longer windows) against a plain f64 sum.
    #[test]
    fn window_sums_match_a_plain_sum() {
        let w = 37;
        for len in 1..=19 {
            let src: Vec<f32> = (0..w + len - 1)
                .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.3)
                .collect();
            let (mut buf, mut t) = (src.clone(), vec![0f32; src.len()]);
            let mut out = vec![0f32; w];
            window_sum(&mut buf, len, &mut t, &mut out);
            for (x, &o) in out.iter().enumerate() {
                let want: f64 = src[x..x + len].iter().map(|&v| v as f64).sum();
                assert!(
                    (o as f64 - want).abs() < 1e-5,
                    "len {len} x {x}: {o} vs {want}"
                );
            }
        }
    }

    /// The in-place sums of a row against [`window_sum`] over a padded
    /// copy: the same bits, at every length and down to rows of 2 rx.
    #[test]
    fn padded_window_sums_match_the_padded_copy() {
        for rx in 1..=6 {
            for w in [2 * rx, 2 * rx + 1, 2 * rx + 5, 40] {
                let row: Vec<f32> = (0..w)
                    .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.3)
                    .collect();
                let mut buf = vec![0f32; w + 2 * rx];
                buf[rx..rx + w].copy_from_slice(&row);
                let (mut t, mut want) = (vec![0f32; w + 2 * rx], vec![0f32; w]);
                window_sum(&mut buf, 2 * rx + 1, &mut t, &mut want);
                let (mut edge, mut got) = (vec![0f32; w + 2 * rx], vec![f32::NAN; w]);
                assert!(window_sum_padded(&row, rx, &mut edge, &mut got));
                for (x, (g, v)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), v.to_bits(), "rx {rx} w {w} x {x}: {g} vs {v}");
                }
            }
        }
        // Too short a row or too long a window: declined.
        assert!(!window_sum_padded(
            &[1.0; 3],
            2,
            &mut [0.0; 8],
            &mut [0.0; 3]
        ));
        assert!(!window_sum_padded(
            &[1.0; 40],
            7,
            &mut [0.0; 60],
            &mut [0.0; 40]
        ));
    }

    /// The mask's window counts against a plain sum of its rows, for
    /// every pattern, parity, radius and short rows (windows past both
    /// ends); the transposed and complementary masks against their
    /// definitions.
    #[test]
    fn mask_window_counts_match_a_plain_sum() {
        for bits in 0..16u32 {
            let pat = [0, 1].map(|y| [0, 1].map(|x| ((bits >> (2 * y + x)) & 1) as f32));
            for w in [1, 2, 3, 6, 11] {
                let m = Mask::new(pat, w);
                for ph in 0..2 {
                    let row = m.row(ph);
                    assert!(row.iter().enumerate().all(|(x, &v)| v == pat[ph][x & 1]));
                    for rx in 0..=6 {
                        let mut got = vec![f32::NAN; w];
                        m.window_counts(ph, rx, &mut got);
                        for (x, &g) in got.iter().enumerate() {
                            let lo = x.saturating_sub(rx);
                            let want: f32 = row[lo..(x + rx + 1).min(w)].iter().sum();
                            assert_eq!(g, want, "{pat:?} w {w} ph {ph} rx {rx} x {x}");
                        }
                    }
                }
                let (t, c) = (m.transposed(5), m.complement());
                for (y, prow) in pat.iter().enumerate() {
                    for (x, &v) in prow.iter().enumerate().take(w) {
                        assert_eq!(t.row(x)[y], v);
                        assert_eq!(c.row(y)[x], 1.0 - v);
                    }
                }
            }
        }
    }

    #[test]
    fn row_sums_match_a_plain_sum() {
        let w = 21;
        let rows: Vec<Vec<f32>> = (0..8)
            .map(|r| (0..w).map(|x| (r * 31 + x * 17) as f32 * 0.01).collect())
            .collect();
        for k in 1..=rows.len() {
            let refs: Vec<&[f32]> = rows[..k].iter().map(|r| r.as_slice()).collect();
            let mut out = vec![0f32; w];
            sum_rows(&refs, &mut out);
            for (x, &o) in out.iter().enumerate() {
                let want: f32 = rows[..k].iter().map(|r| r[x]).sum();
                assert!((o - want).abs() < 1e-4, "{k} rows x {x}: {o} vs {want}");
            }
        }
    }

    #[test]
    fn transpose_matches_a_plain_transpose() {
        let mut pool = Pool::default();
        for (w, h) in [(1, 1), (8, 8), (13, 21), (24, 9), (7, 16), (37, 40)] {
            let src: Vec<f32> = (0..w * h).map(|i| i as f32 * 0.5 - 3.0).collect();
            let t = transpose(&src, w, h, &mut pool);
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(
                        t[x * h + y].to_bits(),
                        src[y * w + x].to_bits(),
                        "{w}x{h} ({x}, {y})"
                    );
                }
            }
            pool.put([t]);
        }
    }

    #[test]
    fn strips_split_the_frame_evenly_between_threads() {
        assert_eq!(strip_rows(3000, 1), 1500);
        assert_eq!(strip_rows(3000, 2), 1500);
        assert_eq!(strip_rows(4000, 2), 1000);
        assert_eq!(strip_rows(4000, 1), 1334);
        assert_eq!(strip_rows(21, 2), 12);
        assert_eq!(strip_rows(1, 4), 2);
        for h in [1, 2, 99, 1536, 1537, 3000, 4000, 6000] {
            for t in 1..=4 {
                let s = strip_rows(h, t);
                assert!(
                    s.is_multiple_of(2) && s <= STRIP + 2,
                    "{h} rows, {t} threads: {s}"
                );
            }
        }
    }

    #[test]
    fn params_are_checked() {
        assert!(compile(serde_json::json!({ "refine": true })).is_err());
        assert!(compile(serde_json::json!({ "iterations": 0 })).is_err());
        assert!(compile(serde_json::json!({ "iterations": 12 })).is_err());
        assert!(compile(serde_json::json!({ "rb_radius": 5 })).is_err());
        assert!(compile(serde_json::json!({ "iterations": 2, "rb_directional": true })).is_ok());
    }
}
