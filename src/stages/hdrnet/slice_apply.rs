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
//! the lanes' lowest and highest. On x86-64 with AVX2+FMA (runtime check)
//! a hand-vectorised row ([`avx2`]) fuses the guide into the same pass;
//! the portable row is the reference it is tested against.

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
    slice_apply_with(grid, guide, planes, w, h, false)
}

/// [`slice_apply`], optionally forcing the portable path.
fn slice_apply_with(
    grid: &BilateralGrid,
    guide: &Guide,
    planes: &mut [f32],
    w: usize,
    h: usize,
    portable: bool,
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
        portable,
    };
    r.par_chunks_mut(w)
        .zip(g.par_chunks_mut(w))
        .zip(b.par_chunks_mut(w))
        .enumerate()
        .for_each_init(
            || RowScratch {
                row_grid: vec![0f32; grid.width * grid.depth * COEFFS],
                span: vec![0f32; 2 * grid.depth * COEFFS],
                guide: vec![0f32; w],
            },
            |s, (y, ((r, g), b))| ctx.run(y, r, g, b, s),
        );
    Ok(())
}

struct RowScratch {
    /// The grid interpolated at this row's y: `[gx][z][c]`.
    row_grid: Vec<f32>,
    /// One span's lower-cell values and upper - lower differences,
    /// `[2][z][c]` (AVX2 path).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    span: Vec<f32>,
    /// The row's guide values (portable path).
    guide: Vec<f32>,
}

struct RowCtx<'a> {
    grid: &'a BilateralGrid,
    guide: &'a Guide,
    spans: &'a [(usize, usize, usize, usize)],
    fx: &'a [f32],
    h: usize,
    /// Skip the SIMD path (tests compare the two).
    portable: bool,
}

impl RowCtx<'_> {
    fn run(&self, y: usize, r: &mut [f32], g: &mut [f32], b: &mut [f32], s: &mut RowScratch) {
        #[cfg(target_arch = "x86_64")]
        {
            if !self.portable
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above),
                // which is all `avx2::row` is compiled for.
                unsafe { avx2::row(self, y, r, g, b, s) };
                return;
            }
        }
        self.run_generic(y, r, g, b, s)
    }

    /// The grid interpolated at row `y` into `s.row_grid` (`[gx][z][c]`).
    #[inline(always)]
    fn interpolate_row(&self, y: usize, s: &mut RowScratch) {
        let grid = self.grid;
        let (y0, y1, fy) = axis(y, self.h, grid.height);
        let cell_len = grid.depth * COEFFS;
        for gx in 0..grid.width {
            let a = grid.cell(y0, gx);
            let c = grid.cell(y1, gx);
            let o = &mut s.row_grid[gx * cell_len..(gx + 1) * cell_len];
            for i in 0..cell_len {
                o[i] = a[i] + fy * (c[i] - a[i]);
            }
        }
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
        let d = self.grid.depth;
        let cell_len = d * COEFFS;
        self.interpolate_row(y, s);
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

/// The AVX2+FMA row: the guide is evaluated in registers
/// ([`super::guide::avx2::guide8`]), each 8-pixel group visits only the
/// luma bins its lanes touch, with tent weights `max(0, 1 - |gz - z|)`
/// (exactly `1 - f` and `f` on the two neighbouring bins, so an identity
/// grid is still exact), and the x interpolation is one FMA per
/// coefficient against the span's precomputed `(lower cell, upper -
/// lower)` pair. The last group of a span runs on zero-padded copies.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{coeff_index, RowCtx, RowScratch, BIAS_COL, COEFFS};
    use crate::stages::hdrnet::guide::avx2::{clean8, guide8};

    /// Horizontal (min, max) of 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn min_max8(v: __m256) -> (f32, f32) {
        let sw = _mm256_permute2f128_ps::<1>(v, v);
        let (mut lo, mut hi) = (_mm256_min_ps(v, sw), _mm256_max_ps(v, sw));
        lo = _mm256_min_ps(lo, _mm256_permute_ps::<0b0100_1110>(lo));
        hi = _mm256_max_ps(hi, _mm256_permute_ps::<0b0100_1110>(hi));
        lo = _mm256_min_ps(lo, _mm256_permute_ps::<0b1011_0001>(lo));
        hi = _mm256_max_ps(hi, _mm256_permute_ps::<0b1011_0001>(hi));
        (_mm256_cvtss_f32(lo), _mm256_cvtss_f32(hi))
    }

    /// One group of 8 pixels: `px` cleaned R, G, B; `fx` x fractions;
    /// `span` = `[z][c]` lower-cell values then `[z][c]` upper - lower.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn group8(ctx: &RowCtx<'_>, span: &[f32], fx: __m256, px: [__m256; 3]) -> [__m256; 3] {
        let d = ctx.grid.depth;
        let cell_len = d * COEFFS;
        let gv = guide8(ctx.guide, px[0], px[1], px[2]);
        let zero = _mm256_setzero_ps();
        let one = _mm256_set1_ps(1.0);
        let cz = _mm256_min_ps(
            _mm256_max_ps(
                _mm256_fmsub_ps(gv, _mm256_set1_ps(d as f32), _mm256_set1_ps(0.5)),
                zero,
            ),
            _mm256_set1_ps((d - 1) as f32),
        );
        let (zlo, zhi) = min_max8(_mm256_floor_ps(cz));
        let zend = (zhi as usize + 2).min(d);
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut coef = [zero; COEFFS];
        for z in zlo as usize..zend {
            let dz = _mm256_sub_ps(cz, _mm256_set1_ps(z as f32));
            let wz = _mm256_max_ps(_mm256_sub_ps(one, _mm256_and_ps(dz, abs_mask)), zero);
            let va = &span[z * COEFFS..(z + 1) * COEFFS];
            let dv = &span[cell_len + z * COEFFS..cell_len + (z + 1) * COEFFS];
            for c in 0..COEFFS {
                let v = _mm256_fmadd_ps(fx, _mm256_set1_ps(dv[c]), _mm256_set1_ps(va[c]));
                coef[c] = _mm256_fmadd_ps(wz, v, coef[c]);
            }
        }
        let mut out = [zero; 3];
        for (o, v) in out.iter_mut().enumerate() {
            let a = _mm256_fmadd_ps(
                coef[coeff_index(o, 0)],
                px[0],
                _mm256_fmadd_ps(
                    coef[coeff_index(o, 1)],
                    px[1],
                    _mm256_fmadd_ps(
                        coef[coeff_index(o, 2)],
                        px[2],
                        coef[coeff_index(o, BIAS_COL)],
                    ),
                ),
            );
            *v = _mm256_min_ps(_mm256_max_ps(a, zero), one);
        }
        out
    }

    /// [`RowCtx::run`] on AVX2+FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn row(
        ctx: &RowCtx<'_>,
        y: usize,
        r: &mut [f32],
        g: &mut [f32],
        b: &mut [f32],
        s: &mut RowScratch,
    ) {
        ctx.interpolate_row(y, s);
        let cell_len = ctx.grid.depth * COEFFS;
        let w = r.len().min(g.len()).min(b.len()).min(ctx.fx.len());
        for &(x0, x1, lo, hi) in ctx.spans {
            let x1 = x1.min(w);
            let (ga, gb) = (
                &s.row_grid[lo * cell_len..(lo + 1) * cell_len],
                &s.row_grid[hi * cell_len..(hi + 1) * cell_len],
            );
            let span = &mut s.span[..2 * cell_len];
            for i in 0..cell_len {
                span[i] = ga[i];
                span[cell_len + i] = gb[i] - ga[i];
            }
            let span = &s.span[..2 * cell_len];
            let mut x = x0;
            while x + 8 <= x1 {
                // SAFETY: x + 8 <= x1 <= w <= every slice's length.
                unsafe {
                    let px = [
                        clean8(_mm256_loadu_ps(r.as_ptr().add(x))),
                        clean8(_mm256_loadu_ps(g.as_ptr().add(x))),
                        clean8(_mm256_loadu_ps(b.as_ptr().add(x))),
                    ];
                    let fx = _mm256_loadu_ps(ctx.fx.as_ptr().add(x));
                    let o = group8(ctx, span, fx, px);
                    _mm256_storeu_ps(r.as_mut_ptr().add(x), o[0]);
                    _mm256_storeu_ps(g.as_mut_ptr().add(x), o[1]);
                    _mm256_storeu_ps(b.as_mut_ptr().add(x), o[2]);
                }
                x += 8;
            }
            if x < x1 {
                let m = x1 - x;
                // Padding lanes repeat the first pixel: they add no bins.
                let mut buf = [[r[x]; 8], [g[x]; 8], [b[x]; 8], [ctx.fx[x]; 8]];
                buf[0][..m].copy_from_slice(&r[x..x1]);
                buf[1][..m].copy_from_slice(&g[x..x1]);
                buf[2][..m].copy_from_slice(&b[x..x1]);
                buf[3][..m].copy_from_slice(&ctx.fx[x..x1]);
                let mut out = [[0f32; 8]; 3];
                // SAFETY: the arrays hold 8 values each.
                unsafe {
                    let px = [
                        clean8(_mm256_loadu_ps(buf[0].as_ptr())),
                        clean8(_mm256_loadu_ps(buf[1].as_ptr())),
                        clean8(_mm256_loadu_ps(buf[2].as_ptr())),
                    ];
                    let o = group8(ctx, span, _mm256_loadu_ps(buf[3].as_ptr()), px);
                    for (dst, v) in out.iter_mut().zip(o) {
                        _mm256_storeu_ps(dst.as_mut_ptr(), v);
                    }
                }
                r[x..x1].copy_from_slice(&out[0][..m]);
                g[x..x1].copy_from_slice(&out[1][..m]);
                b[x..x1].copy_from_slice(&out[2][..m]);
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

    /// The SIMD path equals the portable one on a random grid, a trained-
    /// looking guide, HDR and hostile inputs, and sizes that leave partial
    /// groups in every span.
    #[test]
    fn simd_path_matches_portable_path() {
        let mut rng = 99u64;
        let mut next = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 40) as f32) / (1u64 << 24) as f32
        };
        let (gw, gh, d) = (16, 16, 8);
        let mut grid = BilateralGrid::identity(gw, gh, d);
        for v in grid.data.iter_mut() {
            *v += 0.3 * (next() - 0.5);
        }
        let guide = Guide::luminance(16);
        for (w, h) in [(1, 1), (7, 3), (37, 20), (203, 61), (640, 17)] {
            let n = w * h;
            let mut img: Vec<f32> = (0..3 * n).map(|_| next() * 2.0 - 0.2).collect();
            img[0] = f32::NAN;
            img[3 * n - 1] = f32::INFINITY;
            let mut a = img.clone();
            slice_apply_with(&grid, &guide, &mut a, w, h, false).unwrap();
            slice_apply_with(&grid, &guide, &mut img, w, h, true).unwrap();
            for (i, (u, v)) in a.iter().zip(&img).enumerate() {
                assert!((u - v).abs() < 1e-5, "{w}x{h} [{i}]: {u} vs {v}");
            }
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
