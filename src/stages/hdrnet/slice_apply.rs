//! `bilateral_slice_apply` of HDRnet (Gharbi et al. 2017, sec. 3.3-3.4;
//! the bilateral grid of Chen, Paris & Durand 2007): for every full-
//! resolution pixel, trilinear lookup of a 3x4 affine colour transform in
//! the grid at (x, y, guide), then `out = A · [r, g, b, 1]`.
//!
//! Grid coordinates (the paper's and PyTorch `grid_sample(...,
//! align_corners=False, padding_mode="border")`): `gx = (x + 0.5)·G/W -
//! 0.5`, `gy = (y + 0.5)·G/H - 0.5`, `gz = guide·L - 0.5`, each clamped to
//! the grid, so borders repeat the outermost cell and an image smaller than
//! one cell is still defined.
//!
//! CPU path: rows in parallel (rayon); per row the grid is interpolated in
//! y once, then pixels run in 8-wide lanes within each span of columns
//! that shares its pair of x cells, so the cell values are broadcasts and
//! the luma tent weights are computed without gathers for the bins between
//! the lanes' lowest and highest. Compiled for
//! AVX2+FMA when the CPU has it (runtime check), portable otherwise.

use rayon::prelude::*;

use super::guide::Guide;
use crate::error::{Error, Result};

/// Rows of the affine transform (output channels R, G, B).
pub const AFFINE_ROWS: usize = 3;
/// Columns of the affine transform: inputs R, G, B, then the bias.
pub const AFFINE_COLS: usize = 4;
/// Column holding the bias term.
pub const BIAS_COL: usize = 3;
/// Coefficients per grid cell (3x4).
pub const COEFFS: usize = AFFINE_ROWS * AFFINE_COLS;

/// Index of coefficient `A[out][inp]` within a cell (`inp` = [`BIAS_COL`]
/// for the bias).
pub const fn coeff_index(out: usize, inp: usize) -> usize {
    out * AFFINE_COLS + inp
}

/// A bilateral grid of affine transforms.
///
/// Layout: `data[((gy·width + gx)·depth + z)·COEFFS + coeff_index(o, i)]`,
/// i.e. rows of cells, then cells, then luma bins, then the 12
/// coefficients (row-major 3x4). Units: output = display-linear RGB per
/// unit of linear input.
#[derive(Debug, Clone, PartialEq)]
pub struct BilateralGrid {
    /// Cells along x.
    pub width: usize,
    /// Cells along y.
    pub height: usize,
    /// Luma bins.
    pub depth: usize,
    pub data: Vec<f32>,
}

impl BilateralGrid {
    /// A grid whose every cell is the identity transform (out = in).
    pub fn identity(width: usize, height: usize, depth: usize) -> Self {
        let mut cell = [0f32; COEFFS];
        for o in 0..AFFINE_ROWS {
            cell[coeff_index(o, o)] = 1.0;
        }
        let data = (0..width * height * depth).flat_map(|_| cell).collect();
        BilateralGrid {
            width,
            height,
            depth,
            data,
        }
    }

    /// Checks dimensions and length.
    pub fn check(&self) -> Result<()> {
        let n = self
            .width
            .checked_mul(self.height)
            .and_then(|v| v.checked_mul(self.depth))
            .and_then(|v| v.checked_mul(COEFFS));
        if self.width == 0 || self.height == 0 || self.depth == 0 || n != Some(self.data.len()) {
            return Err(Error::invalid(format!(
                "bilateral grid {}x{}x{} with {} values",
                self.width,
                self.height,
                self.depth,
                self.data.len()
            )));
        }
        Ok(())
    }

    fn cell(&self, gy: usize, gx: usize) -> &[f32] {
        let s = (gy * self.width + gx) * self.depth * COEFFS;
        &self.data[s..s + self.depth * COEFFS]
    }
}

/// Clamped grid coordinate of sample `i` of `n` on a `cells`-cell axis:
/// (lower cell, upper cell, fraction).
#[inline(always)]
fn axis(i: usize, n: usize, cells: usize) -> (usize, usize, f32) {
    let c = ((i as f32 + 0.5) * cells as f32 / n as f32 - 0.5).clamp(0.0, (cells - 1) as f32);
    let lo = (c as usize).min(cells - 1);
    let hi = (lo + 1).min(cells - 1);
    (lo, hi, c - lo as f32)
}

const LANES: usize = 8;

/// Slices `grid` with the guide of each pixel and applies the affine
/// transforms in place. `planes`: planar CHW linear RGB (3 planes of
/// `w·h`); negative and non-finite inputs count as 0 (as in training).
/// The output is clamped to [0, 1]. Returns an error if sizes disagree.
pub fn slice_apply(
    grid: &BilateralGrid,
    guide: &Guide,
    planes: &mut [f32],
    w: usize,
    h: usize,
) -> Result<()> {
    grid.check()?;
    let n = w
        .checked_mul(h)
        .ok_or_else(|| Error::invalid("hdrnet: image size overflows"))?;
    if n == 0 || planes.len() != 3 * n {
        return Err(Error::invalid(format!(
            "hdrnet: {w}x{h} image needs {} values, got {}",
            3 * n,
            planes.len()
        )));
    }
    // Column spans that share their pair of x cells.
    let cols: Vec<(usize, usize, f32)> = (0..w).map(|x| axis(x, w, grid.width)).collect();
    let mut spans: Vec<(usize, usize, usize, usize)> = Vec::new(); // (x0, x1, lo, hi)
    for (x, &(lo, hi, _)) in cols.iter().enumerate() {
        match spans.last_mut() {
            Some(s) if s.2 == lo && s.3 == hi => s.1 = x + 1,
            _ => spans.push((x, x + 1, lo, hi)),
        }
    }
    let fx: Vec<f32> = cols.iter().map(|c| c.2).collect();
    let (r, gb) = planes.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    let ctx = RowCtx {
        grid,
        guide,
        spans: &spans,
        fx: &fx,
        h,
    };
    r.par_chunks_mut(w)
        .zip(g.par_chunks_mut(w))
        .zip(b.par_chunks_mut(w))
        .enumerate()
        .for_each_init(
            || RowScratch {
                row_grid: vec![0f32; grid.width * grid.depth * COEFFS],
                guide: vec![0f32; w],
            },
            |s, (y, ((r, g), b))| ctx.run(y, r, g, b, s),
        );
    Ok(())
}

struct RowScratch {
    /// The grid interpolated at this row's y: `[gx][z][c]`.
    row_grid: Vec<f32>,
    /// The row's guide values.
    guide: Vec<f32>,
}

struct RowCtx<'a> {
    grid: &'a BilateralGrid,
    guide: &'a Guide,
    spans: &'a [(usize, usize, usize, usize)],
    fx: &'a [f32],
    h: usize,
}

impl RowCtx<'_> {
    fn run(&self, y: usize, r: &mut [f32], g: &mut [f32], b: &mut [f32], s: &mut RowScratch) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above),
                // which is all `run_avx2` is compiled for.
                unsafe { self.run_avx2(y, r, g, b, s) };
                return;
            }
        }
        self.run_generic(y, r, g, b, s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(
        &self,
        y: usize,
        r: &mut [f32],
        g: &mut [f32],
        b: &mut [f32],
        s: &mut RowScratch,
    ) {
        self.run_generic(y, r, g, b, s)
    }

    #[inline(always)]
    fn run_generic(
        &self,
        y: usize,
        r: &mut [f32],
        g: &mut [f32],
        b: &mut [f32],
        s: &mut RowScratch,
    ) {
        let grid = self.grid;
        let (d, gw) = (grid.depth, grid.width);
        let (y0, y1, fy) = axis(y, self.h, grid.height);
        let cell_len = d * COEFFS;
        for gx in 0..gw {
            let a = grid.cell(y0, gx);
            let c = grid.cell(y1, gx);
            let o = &mut s.row_grid[gx * cell_len..(gx + 1) * cell_len];
            for i in 0..cell_len {
                o[i] = a[i] + fy * (c[i] - a[i]);
            }
        }
        self.guide.row_impl(r, g, b, &mut s.guide);
        let zmax = (d - 1) as f32;
        for &(x0, x1, lo, hi) in self.spans {
            let ga = &s.row_grid[lo * cell_len..(lo + 1) * cell_len];
            let gb = &s.row_grid[hi * cell_len..(hi + 1) * cell_len];
            let mut x = x0;
            while x < x1 {
                let m = LANES.min(x1 - x);
                let mut fx = [0f32; LANES];
                // Lower luma bin (as f32) and fraction per lane; the tent
                // weights (1 - f, f) sum to exactly 1 in f32, so an
                // identity grid is exact.
                let mut z0 = [0f32; LANES];
                let mut fz = [0f32; LANES];
                let mut px = [[0f32; LANES]; 3];
                for l in 0..m {
                    fx[l] = self.fx[x + l];
                    let cz = (s.guide[x + l] * d as f32 - 0.5).clamp(0.0, zmax);
                    // cz >= 0: truncation is floor (and vectorises).
                    z0[l] = (cz as i32) as f32;
                    fz[l] = cz - z0[l];
                    px[0][l] = clean(r[x + l]);
                    px[1][l] = clean(g[x + l]);
                    px[2][l] = clean(b[x + l]);
                }
                let mut coef = [[0f32; LANES]; COEFFS];
                // Only the bins some lane touches.
                let (mut zlo, mut zhi) = (z0[0], z0[0]);
                for &z in &z0[1..m] {
                    zlo = zlo.min(z);
                    zhi = zhi.max(z);
                }
                let zend = (zhi as usize + 2).min(d);
                for z in zlo as usize..zend {
                    let mut wz = [0f32; LANES];
                    let zf = z as f32;
                    for l in 0..LANES {
                        wz[l] = if zf == z0[l] {
                            1.0 - fz[l]
                        } else if zf == z0[l] + 1.0 {
                            fz[l]
                        } else {
                            0.0
                        };
                    }
                    let ca = &ga[z * COEFFS..(z + 1) * COEFFS];
                    let cb = &gb[z * COEFFS..(z + 1) * COEFFS];
                    for c in 0..COEFFS {
                        let (va, dv) = (ca[c], cb[c] - ca[c]);
                        for l in 0..LANES {
                            coef[c][l] += wz[l] * (va + fx[l] * dv);
                        }
                    }
                }
                let mut out = [[0f32; LANES]; 3];
                for (o, oc) in out.iter_mut().enumerate() {
                    for l in 0..LANES {
                        let v = coef[coeff_index(o, 0)][l] * px[0][l]
                            + coef[coeff_index(o, 1)][l] * px[1][l]
                            + coef[coeff_index(o, 2)][l] * px[2][l]
                            + coef[coeff_index(o, BIAS_COL)][l];
                        oc[l] = v.clamp(0.0, 1.0);
                    }
                }
                r[x..x + m].copy_from_slice(&out[0][..m]);
                g[x..x + m].copy_from_slice(&out[1][..m]);
                b[x..x + m].copy_from_slice(&out[2][..m]);
                x += m;
            }
        }
    }
}

/// Negative and non-finite inputs count as 0.
#[inline(always)]
pub fn clean(v: f32) -> f32 {
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_grid_returns_input_exactly() {
        let guide = Guide::luminance(4);
        for (w, h) in [(1, 1), (5, 3), (37, 20), (64, 48)] {
            let n = w * h;
            let img: Vec<f32> = (0..3 * n).map(|i| ((i * 37) % 97) as f32 / 97.0).collect();
            let mut out = img.clone();
            slice_apply(&BilateralGrid::identity(16, 16, 8), &guide, &mut out, w, h).unwrap();
            assert_eq!(out, img, "{w}x{h}");
        }
    }

    #[test]
    fn constant_grid_applies_its_transform_and_clamps() {
        // Every cell: out_r = 0.5 r + 0.1, out_g = 2 g, out_b = b - 0.5 + r.
        let mut grid = BilateralGrid::identity(4, 4, 2);
        for cell in grid.data.chunks_mut(COEFFS) {
            cell.fill(0.0);
            cell[coeff_index(0, 0)] = 0.5;
            cell[coeff_index(0, BIAS_COL)] = 0.1;
            cell[coeff_index(1, 1)] = 2.0;
            cell[coeff_index(2, 2)] = 1.0;
            cell[coeff_index(2, 0)] = 1.0;
            cell[coeff_index(2, BIAS_COL)] = -0.5;
        }
        let mut img = vec![0.4, 0.8, 0.6, 0.2, 0.1, 0.3, f32::NAN, -1.0, 0.9];
        let (w, h) = (3, 1);
        slice_apply(&grid, &Guide::luminance(4), &mut img, w, h).unwrap();
        // Planar: r = [0.4, 0.8, 0.6], g = [0.2, 0.1, 0.3], b = [NaN, -1, 0.9].
        let want = [0.3, 0.5, 0.4, 0.4, 0.2, 0.6, 0.0, 0.3, 1.0];
        for (a, b) in img.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{img:?}");
        }
    }

    #[test]
    fn grid_varies_along_x_and_luma() {
        // Cell gain = 1 + gx (per column of cells), depth 2: bin 1 adds 0.25.
        let (gw, gh, d) = (4, 2, 2);
        let mut grid = BilateralGrid::identity(gw, gh, d);
        for gy in 0..gh {
            for gx in 0..gw {
                for z in 0..d {
                    let s = ((gy * gw + gx) * d + z) * COEFFS;
                    let cell = &mut grid.data[s..s + COEFFS];
                    cell.fill(0.0);
                    for o in 0..3 {
                        cell[coeff_index(o, BIAS_COL)] = 0.1 * gx as f32 + 0.25 * z as f32;
                    }
                }
            }
        }
        let (w, h) = (8, 2);
        let mut img = vec![0.0; 3 * w * h];
        slice_apply(&grid, &Guide::luminance(4), &mut img, w, h).unwrap();
        // Black pixels: guide 0 -> bin 0; x cell coordinate (x + 0.5)/2 - 0.5.
        for (x, v) in img.iter().enumerate().take(w) {
            let c = ((x as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, 3.0);
            assert!((v - 0.1 * c).abs() < 1e-6, "x {x}: {v}");
        }
        assert!(slice_apply(&grid, &Guide::luminance(4), &mut img, 5, 5).is_err());
    }
}
