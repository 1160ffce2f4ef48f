//! CPU helpers shared by stencil stages: row strips with mirrored halos,
//! processed in parallel by rayon so intermediates stay in cache.

use rayon::prelude::*;

use crate::frame::Mosaic;
use crate::raw::CfaPattern;

/// Mirror index into `0..n` without repeating the edge sample
/// (d c b | a b c d | c b a), as scipy's `mode='mirror'`. Keeps Bayer
/// parity. `n` must be >= 2.
#[inline(always)]
pub fn reflect(i: isize, n: isize) -> usize {
    // Fast path: one reflection at most (stencil offsets are small).
    let r = if i < 0 { -i } else { i };
    let r = if r >= n { 2 * (n - 1) - r } else { r };
    if (0..n).contains(&r) {
        return r as usize;
    }
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// A strip of a mosaic padded by `halo` mirrored pixels on every side.
#[derive(Debug)]
pub struct Tile {
    /// Tile width = image width + 2 * halo.
    pub w: usize,
    /// Tile height = strip rows + 2 * halo.
    pub h: usize,
    /// Row-major samples, len = w * h.
    pub data: Vec<f32>,
    /// Bayer phase at tile (0, 0).
    pub cfa: CfaPattern,
    pub halo: usize,
}

impl Tile {
    /// Sample at tile coordinates, mirrored at the tile border.
    #[inline(always)]
    pub fn at(&self, x: isize, y: isize) -> f32 {
        self.data[reflect(y, self.h as isize) * self.w + reflect(x, self.w as isize)]
    }
}

/// Builds the padded tile for image rows `y0..y1` and columns `x0..x1`
/// (a 2-D tile keeps a stencil's intermediates in cache). `x0` and `halo`
/// must be even so the tile's Bayer phase follows from the image's.
pub fn make_tile_2d(m: &Mosaic, y0: usize, y1: usize, x0: usize, x1: usize, halo: usize) -> Tile {
    make_tile_2d_in(m, y0, y1, x0, x1, halo, Vec::new())
}

/// [`make_tile_2d`] into the storage of `buf` (reused across tiles, so no
/// allocation once it is large enough; every element is overwritten).
pub fn make_tile_2d_in(
    m: &Mosaic,
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
    halo: usize,
    buf: Vec<f32>,
) -> Tile {
    let (w, h) = (m.width as isize, m.height as isize);
    let tw = (x1 - x0) + 2 * halo;
    let th = (y1 - y0) + 2 * halo;
    let mut data = buf;
    data.resize(tw * th, 0.0);
    let cols: Vec<usize> = (0..tw)
        .map(|tx| reflect(x0 as isize + tx as isize - halo as isize, w))
        .collect();
    for ty in 0..th {
        let sy = reflect(y0 as isize + ty as isize - halo as isize, h);
        let src = m.data.f32_range(sy * m.width, m.width);
        let dst = &mut data[ty * tw..(ty + 1) * tw];
        if x0 >= halo && x1 + halo <= m.width {
            dst.copy_from_slice(&src[x0 - halo..x1 + halo]);
        } else {
            for (d, &c) in dst.iter_mut().zip(&cols) {
                *d = src[c];
            }
        }
    }
    // Parity of (y0 - halo), without underflow when the halo exceeds
    // the frame (a 2x2 frame under a 12-pixel halo).
    let dy = (y0 + halo) % 2;
    let dx = (x0 + halo) % 2;
    Tile {
        w: tw,
        h: th,
        data,
        cfa: m.cfa.shifted(dx, dy),
        halo,
    }
}

/// Builds the padded tile for image rows `y0..y1`.
pub fn make_tile(m: &Mosaic, y0: usize, y1: usize, halo: usize) -> Tile {
    let (w, h) = (m.width as isize, m.height as isize);
    let tw = m.width + 2 * halo;
    let th = (y1 - y0) + 2 * halo;
    let mut data = vec![0f32; tw * th];
    for ty in 0..th {
        let sy = reflect(y0 as isize + ty as isize - halo as isize, h);
        let src = m.data.f32_range(sy * m.width, m.width);
        let dst = &mut data[ty * tw..(ty + 1) * tw];
        dst[halo..halo + m.width].copy_from_slice(&src);
        for k in 0..halo {
            dst[halo - 1 - k] = src[reflect(-(k as isize) - 1, w)];
            dst[halo + m.width + k] = src[reflect(w + k as isize, w)];
        }
    }
    // Halo and strip starts are even, so parity matches the image.
    let dy = (y0 + halo) % 2;
    let dx = halo % 2;
    Tile {
        w: tw,
        h: th,
        data,
        cfa: m.cfa.shifted(dx, dy),
        halo,
    }
}

/// Runs a demosaic kernel over row strips in parallel and returns the
/// three output planes (R, G, B), each `width * height`, row-major.
///
/// `kernel(tile, y0, out)` fills `out[c][(y - y0) * width + x]` for the
/// strip's rows from the padded tile (image pixel (x, y) is tile pixel
/// (x + halo, y - y0 + halo)).
pub fn demosaic_strips<F>(m: &Mosaic, halo: usize, strip_rows: usize, kernel: F) -> Vec<f32>
where
    F: Fn(&Tile, usize, [&mut [f32]; 3]) + Sync,
{
    let (w, h) = (m.width, m.height);
    let strip_rows = strip_rows.max(2) & !1;
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    let (r, gb) = out.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    r.par_chunks_mut(w * strip_rows)
        .zip(g.par_chunks_mut(w * strip_rows))
        .zip(b.par_chunks_mut(w * strip_rows))
        .enumerate()
        .for_each(|(i, ((r, g), b))| {
            let y0 = i * strip_rows;
            let y1 = (y0 + strip_rows).min(h);
            let tile = make_tile(m, y0, y1, halo);
            kernel(&tile, y0, [r, g, b]);
        });
    out
}

/// Runs a whole-tile demosaic over 2-D tiles (row strips of `strip_rows`
/// split into `tile_w`-column tiles, each padded by `halo` mirrored
/// pixels) in parallel, and returns the three output planes (R, G, B),
/// each `width * height`, row-major.
///
/// `kernel(tile)` returns three planes of the tile's full padded size
/// (`tile.w * tile.h`); only the interior (`halo` in from every side) is
/// copied out, so `halo` must cover the method's dependency radius.
/// `halo`, `strip_rows` and `tile_w` must be even.
pub fn demosaic_tiles<F>(
    m: &Mosaic,
    halo: usize,
    strip_rows: usize,
    tile_w: usize,
    kernel: F,
) -> Vec<f32>
where
    F: Fn(&Tile) -> [Vec<f32>; 3] + Sync,
{
    let (w, h) = (m.width, m.height);
    let strip_rows = strip_rows.max(2) & !1;
    let tile_w = tile_w.max(2) & !1;
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    let (r, gb) = out.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    r.par_chunks_mut(w * strip_rows)
        .zip(g.par_chunks_mut(w * strip_rows))
        .zip(b.par_chunks_mut(w * strip_rows))
        .enumerate()
        .for_each(|(i, ((r, g), b))| {
            let y0 = i * strip_rows;
            let y1 = (y0 + strip_rows).min(h);
            let mut x0 = 0;
            while x0 < w {
                let x1 = (x0 + tile_w).min(w);
                let tile = make_tile_2d(m, y0, y1, x0, x1, halo);
                let [tr, tg, tb] = kernel(&tile);
                let len = x1 - x0;
                for oy in 0..y1 - y0 {
                    let src = (oy + halo) * tile.w + halo;
                    let dst = oy * w + x0;
                    r[dst..dst + len].copy_from_slice(&tr[src..src + len]);
                    g[dst..dst + len].copy_from_slice(&tg[src..src + len]);
                    b[dst..dst + len].copy_from_slice(&tb[src..src + len]);
                }
                x0 = x1;
            }
        });
    out
}

/// Runs a whole-tile demosaic over one full-width mirrored-halo band tile
/// (as the fused executor builds them, see `graph::fuse`) in column tiles
/// of `tile_w` output columns, and writes the interior into `out` (three
/// planes of the band's rows, each `rows * width`, row-major, where
/// `width = band.w - 2 * halo`). `kernel(tile, scratch)` leaves each
/// tile's planes in `scratch`, as for [`demosaic_tiles_scratch`]; `buf` is
/// the reused column-tile buffer.
///
/// Each column tile is cut from the band with its `halo` columns on both
/// sides, so it holds the same samples as [`make_tile_2d`] would build
/// from the frame: the result equals [`demosaic_tiles_scratch`]' for those
/// rows. `tile_w` must be even (so every column tile keeps the band's
/// phase).
pub fn demosaic_band_tiles<S, F>(
    band: &Tile,
    tile_w: usize,
    kernel: F,
    scratch: &mut S,
    buf: &mut Vec<f32>,
    out: [&mut [f32]; 3],
) where
    S: TileScratch,
    F: Fn(&Tile, &mut S),
{
    let halo = band.halo;
    let w = band.w.saturating_sub(2 * halo);
    let rows = band.h.saturating_sub(2 * halo);
    let tile_w = tile_w.max(2) & !1;
    let mut x0 = 0;
    while x0 < w {
        let x1 = (x0 + tile_w).min(w);
        let tw = x1 - x0 + 2 * halo;
        let mut data = std::mem::take(buf);
        data.clear();
        for row in band.data.chunks_exact(band.w) {
            data.extend_from_slice(&row[x0..x0 + tw]);
        }
        let tile = Tile {
            w: tw,
            h: band.h,
            data,
            cfa: band.cfa.shifted(x0 % 2, 0),
            halo,
        };
        kernel(&tile, scratch);
        let len = x1 - x0;
        for (c, src) in scratch.planes().into_iter().enumerate() {
            for oy in 0..rows {
                let s = (oy + halo) * tw + halo;
                let d = oy * w + x0;
                out[c][d..d + len].copy_from_slice(&src[s..s + len]);
            }
        }
        *buf = tile.data;
        x0 = x1;
    }
}

/// A tile kernel's scratch plane `v` resized to `n` samples. Old contents
/// are kept, not cleared: the kernels using it write every sample a later
/// pass reads before reading it (samples outside those regions are never
/// read or only feed lanes that are discarded), so values of an earlier
/// tile never reach the output.
#[inline(always)]
pub fn scratch_plane(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// Per-task scratch of a tile kernel run by [`demosaic_tiles_scratch`]:
/// its planes are reused from tile to tile.
pub trait TileScratch: Default + Send {
    /// The R, G, B planes of the last tile, each `tile.w * tile.h`,
    /// row-major (at least that long; only the interior is read).
    fn planes(&self) -> [&[f32]; 3];
}

/// [`demosaic_tiles`] without per-tile allocations: each rayon task keeps
/// one scratch `S` and one tile buffer for all its tiles, `kernel(tile,
/// scratch)` leaves the tile's planes in the scratch, and the output frame
/// is written once, never zero-filled first.
pub fn demosaic_tiles_scratch<S, F>(
    m: &Mosaic,
    halo: usize,
    strip_rows: usize,
    tile_w: usize,
    kernel: F,
) -> Vec<f32>
where
    S: TileScratch,
    F: Fn(&Tile, &mut S) + Sync,
{
    let (w, h) = (m.width, m.height);
    let strip_rows = strip_rows.max(2) & !1;
    let tile_w = tile_w.max(2) & !1;
    let n = w * h;
    let mut out: Vec<f32> = Vec::with_capacity(3 * n);
    if n == 0 {
        return out;
    }
    let spare = &mut out.spare_capacity_mut()[..3 * n];
    let (r, gb) = spare.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    r.par_chunks_mut(w * strip_rows)
        .zip(g.par_chunks_mut(w * strip_rows))
        .zip(b.par_chunks_mut(w * strip_rows))
        .enumerate()
        .for_each_init(
            || (S::default(), Vec::new()),
            |(scratch, buf), (i, ((r, g), b))| {
                let y0 = i * strip_rows;
                let y1 = (y0 + strip_rows).min(h);
                let mut x0 = 0;
                while x0 < w {
                    let x1 = (x0 + tile_w).min(w);
                    let tile = make_tile_2d_in(m, y0, y1, x0, x1, halo, std::mem::take(buf));
                    kernel(&tile, scratch);
                    let len = x1 - x0;
                    for (dst, src) in [&mut *r, &mut *g, &mut *b]
                        .into_iter()
                        .zip(scratch.planes())
                    {
                        for oy in 0..y1 - y0 {
                            let s = (oy + halo) * tile.w + halo;
                            let d = oy * w + x0;
                            for (d, s) in dst[d..d + len].iter_mut().zip(&src[s..s + len]) {
                                d.write(*s);
                            }
                        }
                    }
                    *buf = tile.data;
                    x0 = x1;
                }
            },
        );
    // SAFETY: the strips cover rows 0..h and each strip's tiles columns
    // 0..w, so every one of the 3 * n elements was written above (a panic
    // in a kernel propagates before this point and drops `out` empty).
    unsafe { out.set_len(3 * n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_without_edge_repeat() {
        let v: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(v, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect(-1, 2), 1);
        assert_eq!(reflect(5, 2), 1);
    }

    /// Regression (found by tests/cuda_emu.rs on a 2x2 frame): a halo
    /// wider than the frame underflowed the tile's phase arithmetic, a
    /// panic in debug builds (`demosaic_menon` uses a 12-pixel halo).
    #[test]
    fn tiles_of_a_frame_smaller_than_the_halo_keep_the_phase() {
        use crate::synth::{demo_scene, mosaic_scene, CaptureParams};
        let f = mosaic_scene(&demo_scene(8, 8), &CaptureParams::default(), "t").unwrap();
        let crate::frame::Value::Mosaic(m) = crate::graph::exec::frame_to_value(f).unwrap() else {
            panic!("not a mosaic")
        };
        for cfa in CfaPattern::ALL {
            let m = Mosaic {
                width: 2,
                height: 2,
                cfa,
                data: vec![1.0, 2.0, 3.0, 4.0].into(),
                ..(*m).clone()
            };
            for halo in [2usize, 12] {
                let t = make_tile_2d(&m, 0, 2, 0, 2, halo);
                assert_eq!(t.cfa, cfa, "halo {halo}");
                assert_eq!(t.at(halo as isize + 1, halo as isize), 2.0);
                assert_eq!(make_tile(&m, 0, 2, halo).cfa, cfa, "halo {halo}");
            }
        }
    }
}
