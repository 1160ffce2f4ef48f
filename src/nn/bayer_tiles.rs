//! Whole-frame execution of a Bayer network in overlapping square tiles.
//!
//! A network that maps a canonical-phase mosaic `[1, 1, H, W]` plus a
//! half-resolution noise map `[1, nc, H/2, W/2]` to RGB `[1, 3, H, W]`
//! ([`super::dmdn`], [`super::dmdn_unet`]) runs on a frame of any size and
//! Bayer phase tile by tile. Each tile's input window extends `halo` pixels
//! beyond the tile (the network's receptive radius) and is mirrored outside
//! the frame without repeating the edge, which keeps the CFA parity. Window
//! origins sit at `-(halo + dy) mod align` in frame coordinates, `(dy, dx)`
//! being the shift that brings the frame's phase to the model's, so every
//! window starts in the model's phase and, for networks with stride-2
//! stages, on the same down-sampling grid as one pass over the whole
//! reflect-padded frame: the result equals that single pass exactly,
//! whatever the tile size, while memory stays bounded. A full-resolution
//! RGB frame may travel with the mosaic (the classical demosaic a network
//! refines, computed once over the whole frame): its windows are cut with
//! the same origins and mirroring, pixel for pixel.

use rayon::prelude::*;

use super::{BufferPool, Tensor};
use crate::error::{Error, Result};

/// Colour index (0 = R, 1 = G, 2 = B) of the 2x2 CFA cell in raster order
/// `[(0,0), (0,1), (1,0), (1,1)]`, e.g. RGGB = `[0, 1, 1, 2]`.
pub type Cfa2x2 = [u8; 4];

/// Parses "rggb" / "grbg" / "gbrg" / "bggr" (any case).
pub fn parse_cfa(s: &str) -> Option<Cfa2x2> {
    let mut out = [0u8; 4];
    let b = s.as_bytes();
    if b.len() != 4 {
        return None;
    }
    for (o, c) in out.iter_mut().zip(b) {
        *o = match c.to_ascii_lowercase() {
            b'r' => 0,
            b'g' => 1,
            b'b' => 2,
            _ => return None,
        };
    }
    let mut counts = [0; 3];
    out.iter().for_each(|&c| counts[c as usize] += 1);
    (counts == [1, 2, 1]).then_some(out)
}

/// Noise level fed to the network, as a standard deviation in the units of
/// the input mosaic (e.g. σ/255 for the 8-bit sRGB protocol).
#[derive(Clone, Copy, Debug)]
pub enum NoiseInput<'a> {
    /// One σ for the whole frame.
    Uniform(f32),
    /// Per-pixel σ, row-major `H x W` like the mosaic; the network sees its
    /// RMS over each 2x2 cell.
    Map(&'a [f32]),
}

/// How a network is tiled.
#[derive(Clone, Copy, Debug)]
pub struct TileSpec {
    /// The model's canonical phase.
    pub phase: Cfa2x2,
    /// Noise-map input channels (each a copy of the σ map).
    pub noise_channels: usize,
    /// Receptive radius in full-resolution pixels, even (keeps the CFA
    /// phase). It need not be a multiple of `align`: tile origins are, so
    /// every window starts at `-(halo + dy)` modulo `align`, the origin of
    /// the whole reflect-padded frame.
    pub halo: usize,
    /// Window origins (relative to that padded frame) and sizes are
    /// multiples of this (2 for a packed-Bayer net, 8 for one with three
    /// resolution levels, 16 with four); a power of two >= 2.
    pub align: usize,
}

/// A whole Bayer frame and its noise level.
#[derive(Clone, Copy, Debug)]
pub struct BayerFrame<'a> {
    /// Row-major `h x w` samples.
    pub mosaic: &'a [f32],
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Colours of the top-left 2x2 cell.
    pub cfa: Cfa2x2,
    /// Noise std in the mosaic's units.
    pub noise: NoiseInput<'a>,
    /// A classical demosaic of the whole frame for networks that refine
    /// one (`dmdn_unet` over a classical base): planar RGB, `3 x h x w`
    /// row-major (R plane, G, B), in the mosaic's units; `None` otherwise.
    pub base: Option<&'a [f32]>,
}

/// Runs `forward` (canonical-phase mosaic `[1, 1, h, w]`, noise
/// `[1, nc, h/2, w/2]`, the window of `frame.base` as `[1, 3, h, w]` when
/// there is one, given to `forward` to keep or reuse -> `[1, 3, h, w]`, `h`, `w` multiples of `spec.align`)
/// over `frame`, in output tiles of at most `tile` pixels a
/// side (rounded up to a multiple of `align`, at least 16; equalised along
/// each dimension, see [`balanced`]). Tiles run in parallel. Returns
/// `[1, 3, h, w]`.
pub fn run_tiled<F>(
    frame: BayerFrame<'_>,
    tile: usize,
    spec: TileSpec,
    forward: F,
) -> Result<Tensor>
where
    F: Fn(&Tensor, &Tensor, Option<Tensor>) -> Result<Tensor> + Sync,
{
    run_tiled_pooled(frame, tile, spec, |m, n, b, _| forward(m, n, b))
}

/// Output pointer shared by the tiles; each tile writes a disjoint
/// rectangle of every plane.
#[derive(Clone, Copy)]
struct FramePtr(*mut f32);
// SAFETY: only dereferenced for the disjoint tile rectangles of the output
// buffer, which outlives the parallel loop.
unsafe impl Send for FramePtr {}
// SAFETY: as above; no two tiles touch the same element.
unsafe impl Sync for FramePtr {}

/// [`run_tiled`] whose `forward` also gets the run's [`BufferPool`]: the
/// windows (mosaic, noise, base) are on its buffers, and so may be the
/// tensors `forward` makes; the buffers `forward` gives back and the one it
/// returns serve the next tiles. Each tile's crop goes straight into the
/// output frame.
pub fn run_tiled_pooled<F>(
    frame: BayerFrame<'_>,
    tile: usize,
    spec: TileSpec,
    forward: F,
) -> Result<Tensor>
where
    F: Fn(&Tensor, &Tensor, Option<Tensor>, &BufferPool) -> Result<Tensor> + Sync,
{
    let BayerFrame {
        mosaic,
        h,
        w,
        cfa,
        noise,
        base,
    } = frame;
    let align = spec.align;
    if align < 2 || !align.is_power_of_two() || !spec.halo.is_multiple_of(2) {
        return Err(Error::invalid(format!(
            "tiling: halo {} is odd or the alignment {align} is not a power of two >= 2",
            spec.halo
        )));
    }
    if h < 2 || w < 2 || mosaic.len() != h * w {
        return Err(Error::invalid(format!(
            "network: mosaic of {} values is not {h}x{w} (at least 2x2)",
            mosaic.len()
        )));
    }
    if let NoiseInput::Map(m) = noise {
        if m.len() != h * w {
            return Err(Error::invalid(
                "network: noise map size differs from mosaic",
            ));
        }
    }
    if let Some(b) = base {
        if b.len() != 3 * h * w {
            return Err(Error::invalid(format!(
                "network: base of {} values is not 3x{h}x{w}",
                b.len()
            )));
        }
    }
    let (dy, dx) = phase_offset(cfa, spec.phase)
        .ok_or_else(|| Error::invalid(format!("network: CFA {cfa:?} is not a Bayer pattern")))?;
    let tile = ceil_to(tile.max(16), align);
    let (tile_h, tile_w) = (balanced(h, tile, align), balanced(w, tile, align));
    let halo = spec.halo;
    let tiles: Vec<(usize, usize)> = (0..h)
        .step_by(tile_h)
        .flat_map(|y| (0..w).step_by(tile_w).map(move |x| (y, x)))
        .collect();
    let pool = BufferPool::new();
    // Not zeroed: the tiles cover the frame, each writing its rectangle of
    // every plane once.
    let len = Tensor::numel([1, 3, h, w])?;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let out_ptr = FramePtr(out.as_mut_ptr());
    tiles.par_iter().try_for_each(|&(ty, tx)| -> Result<()> {
        let th = tile_h.min(h - ty);
        let tw = tile_w.min(w - tx);
        // Window origin in frame coordinates: model phase, padded-frame grid.
        let y0 = ty as isize - halo as isize - ((ty + dy) % align) as isize;
        let x0 = tx as isize - halo as isize - ((tx + dx) % align) as isize;
        let ih = ceil_to(((ty + th + halo) as isize - y0) as usize, align);
        let iw = ceil_to(((tx + tw + halo) as isize - x0) as usize, align);
        // Source column of every window column (mirrored at the edges),
        // computed once per tile.
        let cols: Vec<usize> = (0..iw).map(|xx| reflect(x0 + xx as isize, w)).collect();
        // Window columns a..b are frame columns x0 + a.. in order (no
        // mirroring): copied as one run.
        let a = (-x0).clamp(0, iw as isize) as usize;
        let b = (w as isize - x0).clamp(a as isize, iw as isize) as usize;
        let (x_a, x_b) = ((x0 + a as isize) as usize, (x0 + b as isize) as usize);
        // Appends the window of the `h x w` plane `src` to `dst`, row by
        // row: every value written once, no zero fill first.
        let gather = |dst: &mut Vec<f32>, src: &[f32]| {
            for yy in 0..ih {
                let sy = reflect(y0 + yy as isize, h);
                let row = &src[sy * w..(sy + 1) * w];
                dst.extend(cols[..a].iter().map(|&c| row[c]));
                dst.extend_from_slice(&row[x_a..x_b]);
                dst.extend(cols[b..].iter().map(|&c| row[c]));
            }
        };
        let mut mv = pool.take(ih * iw);
        gather(&mut mv, mosaic);
        let m = Tensor::from_vec([1, 1, ih, iw], mv)?;
        let bw = match base {
            Some(bf) => {
                let mut v = pool.take(3 * ih * iw);
                for c in 0..3 {
                    gather(&mut v, &bf[c * h * w..(c + 1) * h * w]);
                }
                Some(Tensor::from_vec([1, 3, ih, iw], v)?)
            }
            None => None,
        };
        let mut n2 = pool.take(ih * iw);
        if let NoiseInput::Map(nm) = noise {
            gather(&mut n2, nm);
        }
        let (hh, hw) = (ih / 2, iw / 2);
        // Every value written below (a fill or one RMS per 2x2 cell).
        let mut nv = pool.take(spec.noise_channels * hh * hw);
        for _ in 0..spec.noise_channels {
            match noise {
                NoiseInput::Uniform(s) => nv.resize(nv.len() + hh * hw, s),
                NoiseInput::Map(_) => {
                    for yy in 0..hh {
                        nv.extend((0..hw).map(|xx| {
                            let i = 2 * yy * iw + 2 * xx;
                            let s2 = n2[i] * n2[i]
                                + n2[i + 1] * n2[i + 1]
                                + n2[i + iw] * n2[i + iw]
                                + n2[i + iw + 1] * n2[i + iw + 1];
                            (s2 / 4.0).sqrt()
                        }));
                    }
                }
            }
        }
        let nz = Tensor::from_vec([1, spec.noise_channels, hh, hw], nv)?;
        pool.give_vec(n2);
        let t = forward(&m, &nz, bw, &pool)?;
        pool.give(m);
        pool.give(nz);
        if t.shape() != [1, 3, ih, iw] {
            return Err(Error::invalid(format!(
                "network: a {ih}x{iw} window gave {:?}, not [1, 3, {ih}, {iw}]",
                t.shape()
            )));
        }
        // The tile's output: rows oy.., columns ox.. of the window.
        let (oy, ox) = ((ty as isize - y0) as usize, (tx as isize - x0) as usize);
        for c in 0..3 {
            let src = t.plane(0, c);
            for y in 0..th {
                let s = &src[(oy + y) * iw + ox..(oy + y) * iw + ox + tw];
                let ptr = out_ptr;
                // SAFETY: row ty + y, columns tx..tx + tw of plane c lie
                // inside the 3 x h x w output's capacity (ty + th <= h,
                // tx + tw <= w) and belong to this tile only; `out`
                // outlives the loop and nothing reads it meanwhile.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        s.as_ptr(),
                        ptr.0.add(c * h * w + (ty + y) * w + tx),
                        tw,
                    )
                };
            }
        }
        pool.give(t);
        Ok(())
    })?;
    // SAFETY: every tile wrote its th x tw rectangle of all three planes,
    // and the tiles cover rows 0..h and columns 0..w (`tiles` steps over
    // both by the tile edge), so all `len` values are initialised.
    unsafe { out.set_len(len) };
    Tensor::from_vec([1, 3, h, w], out)
}

/// The mosaic spread to its colour planes: `[1, 3, H, W]`, zero where a
/// colour is not sampled; `mosaic` is `[1, 1, H, W]` in `phase`.
pub fn masked_mosaic(mosaic: &Tensor, phase: Cfa2x2) -> Result<Tensor> {
    let [_, _, h, w] = mosaic.shape();
    let mut masked = Vec::with_capacity(3 * h * w);
    masked_mosaic_extend(mosaic, phase, &mut masked);
    Tensor::from_vec([1, 3, h, w], masked)
}

/// Appends [`masked_mosaic`]'s three planes of `H x W` (R, G, B) to
/// `dst`, every value written once (no zero fill first).
pub fn masked_mosaic_extend(mosaic: &Tensor, phase: Cfa2x2, dst: &mut Vec<f32>) {
    masked_mosaic_rows_extend(mosaic, phase, 0, mosaic.h(), dst)
}

/// Appends rows `y0..y1` (clipped to the mosaic) of [`masked_mosaic`]'s
/// three planes to `dst`: three planes of `y1 - y0` rows, every value
/// written once.
pub fn masked_mosaic_rows_extend(
    mosaic: &Tensor,
    phase: Cfa2x2,
    y0: usize,
    y1: usize,
    dst: &mut Vec<f32>,
) {
    let [_, _, h, w] = mosaic.shape();
    let y1 = y1.min(h);
    if w == 0 || y0 >= y1 {
        return;
    }
    dst.reserve(3 * (y1 - y0) * w);
    let rows = &mosaic.data()[y0 * w..y1 * w];
    for c in 0..3 {
        for (y, srow) in (y0..).zip(rows.chunks_exact(w)) {
            // Colour of the even and odd columns of this row.
            let (ce, co) = (phase[(y % 2) * 2] as usize, phase[(y % 2) * 2 + 1] as usize);
            dst.extend(srow.iter().enumerate().map(|(x, &v)| {
                let cx = if x % 2 == 0 { ce } else { co };
                if cx == c {
                    v
                } else {
                    0.0
                }
            }));
        }
    }
}

/// The tile edge along a dimension of `n` pixels: as many tiles as `tile`
/// needs, made equal (a multiple of `align`, at most `tile`), so no thin
/// last tile pays a whole halo for a few pixels and threads get equal work.
fn balanced(n: usize, tile: usize, align: usize) -> usize {
    let count = n.div_ceil(tile).max(1);
    ceil_to(n.div_ceil(count), align).min(tile)
}

fn ceil_to(v: usize, a: usize) -> usize {
    v.max(a).div_ceil(a) * a
}

/// Mirror index without repeating the edge; keeps parity (period 2(n-1)).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let r = i.rem_euclid(period);
    (if r >= n as isize { period - r } else { r }) as usize
}

/// `(dy, dx)` such that image pixel `(y+dy, x+dx)` has colour `model[y, x]`.
pub fn phase_offset(image: Cfa2x2, model: Cfa2x2) -> Option<(usize, usize)> {
    for dy in 0..2 {
        for dx in 0..2 {
            let ok = (0..4).all(|k| {
                let (py, px) = (k / 2, k % 2);
                image[((py + dy) % 2) * 2 + (px + dx) % 2] == model[k]
            });
            if ok {
                return Some((dy, dx));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_tiles_are_equal_aligned_and_no_larger() {
        assert_eq!(balanced(4000, 1024, 8), 1000);
        assert_eq!(balanced(3000, 1024, 8), 1000);
        assert_eq!(balanced(1025, 1024, 8), 520);
        assert_eq!(balanced(100, 1024, 8), 104);
        for n in [1usize, 7, 64, 999, 4000, 6001] {
            for tile in [16usize, 256, 1024] {
                let t = balanced(n, tile, 8);
                assert!(t.is_multiple_of(8) && t <= tile, "{n} {tile}: {t}");
                assert_eq!(n.div_ceil(t), n.div_ceil(tile), "{n} {tile}: {t}");
            }
        }
    }

    #[test]
    fn reflect_keeps_parity_far_outside() {
        for n in [2usize, 3, 7, 10] {
            for i in -40isize..40 {
                let r = reflect(i, n);
                assert!(r < n);
                assert_eq!((r as isize - i).rem_euclid(2), 0, "n {n} i {i}");
            }
        }
    }

    #[test]
    fn identity_network_reproduces_the_frame_for_any_tile_and_phase() {
        // A "network" that returns the mosaic in all three channels: the
        // tiled output must be the input, whatever the tiling and phase.
        let (h, w) = (37, 53);
        let mosaic: Vec<f32> = (0..h * w).map(|i| (i as f32 * 0.37).sin()).collect();
        for cfa in ["rggb", "grbg", "gbrg", "bggr"] {
            for (tile, align) in [(16, 2), (24, 8), (64, 8)] {
                let spec = TileSpec {
                    phase: parse_cfa("rggb").unwrap(),
                    noise_channels: 1,
                    halo: 8,
                    align,
                };
                let frame = BayerFrame {
                    mosaic: &mosaic,
                    h,
                    w,
                    cfa: parse_cfa(cfa).unwrap(),
                    noise: NoiseInput::Uniform(0.1),
                    base: None,
                };
                let out = run_tiled(frame, tile, spec, |m, n, b| {
                    assert!(b.is_none());
                    assert_eq!(m.h() % align, 0);
                    assert_eq!((n.h(), n.w()), (m.h() / 2, m.w() / 2));
                    let mut o = Tensor::zeros([1, 3, m.h(), m.w()])?;
                    for c in 0..3 {
                        o.plane_mut(0, c).copy_from_slice(m.data());
                    }
                    Ok(o)
                })
                .unwrap();
                for c in 0..3 {
                    assert_eq!(out.plane(0, c), &mosaic[..]);
                }
            }
        }
    }

    /// The base frame's windows are the mosaic's, pixel for pixel (same
    /// origin and mirroring): a base made of scaled copies of the mosaic
    /// arrives as those copies of the mosaic window, and a network that
    /// returns its base window reproduces the base.
    #[test]
    fn base_windows_follow_the_mosaic() {
        let (h, w) = (29, 45);
        let mosaic: Vec<f32> = (0..h * w).map(|i| (i as f32 * 0.61).cos()).collect();
        let base: Vec<f32> = (0..3)
            .flat_map(|c| mosaic.iter().map(move |v| v * (c + 1) as f32))
            .collect();
        for cfa in ["rggb", "gbrg"] {
            for tile in [16, 40] {
                let spec = TileSpec {
                    phase: parse_cfa("grbg").unwrap(),
                    noise_channels: 1,
                    halo: 10,
                    align: 8,
                };
                let frame = BayerFrame {
                    mosaic: &mosaic,
                    h,
                    w,
                    cfa: parse_cfa(cfa).unwrap(),
                    noise: NoiseInput::Uniform(0.0),
                    base: Some(&base),
                };
                let out = run_tiled(frame, tile, spec, |m, _, b| {
                    let b = b.expect("base window");
                    assert_eq!(b.shape(), [1, 3, m.h(), m.w()]);
                    for c in 0..3 {
                        let k = (c + 1) as f32;
                        assert!(b.plane(0, c).iter().zip(m.data()).all(|(x, y)| *x == k * y));
                    }
                    Ok(b)
                })
                .unwrap();
                assert_eq!(out.data(), &base[..], "cfa {cfa} tile {tile}");
            }
        }
        // A base of the wrong size is refused.
        let frame = BayerFrame {
            mosaic: &mosaic,
            h,
            w,
            cfa: parse_cfa("rggb").unwrap(),
            noise: NoiseInput::Uniform(0.0),
            base: Some(&base[1..]),
        };
        let spec = TileSpec {
            phase: parse_cfa("rggb").unwrap(),
            noise_channels: 1,
            halo: 8,
            align: 8,
        };
        assert!(run_tiled(frame, 16, spec, |_, _, b| Ok(b.unwrap())).is_err());
    }

    #[test]
    fn bad_halo_is_an_error() {
        let spec = TileSpec {
            phase: [0, 1, 1, 2],
            noise_channels: 1,
            halo: 13,
            align: 8,
        };
        let frame = BayerFrame {
            mosaic: &[0.0; 16],
            h: 4,
            w: 4,
            cfa: [0, 1, 1, 2],
            noise: NoiseInput::Uniform(0.0),
            base: None,
        };
        let r = run_tiled(frame, 16, spec, |m, _, _| Ok(m.clone()));
        assert!(r.is_err());
    }
}
