//! `demosaic_bilinear`: bilinear interpolation of each colour plane
//! (the classical baseline; equivalent to convolving the masked planes with
//! [0 1 0; 1 4 1; 0 1 0]/4 for green and [1 2 1; 2 4 2; 1 2 1]/4 for red and
//! blue, mirrored borders).

use serde::Deserialize;

use super::row_kernel::{DemosaicFn, Header, RowKernel, RowShape};
use super::{mosaic_ref, one_input, parse_params, RunCtx, Stage};
use crate::backend::cpu::demosaic_strips;
use crate::backend::device_step::DeviceStep;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Mosaic, Value, ValueDesc, ValueKind};

/// YAML params of `demosaic_bilinear` (none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `demosaic_bilinear` op.
#[derive(Debug)]
pub struct DemosaicBilinear;

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let _: Params = parse_params(params)?;
    Ok(Box::new(DemosaicBilinear))
}

/// Infers the image produced by any demosaic op.
pub(crate) fn infer_demosaic(inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
    let d = one_input(inputs, ValueKind::Mosaic)?;
    Ok(ValueDesc::image(d.width, d.height, ColorSpace::Camera))
}

/// The image a demosaic op returns for mosaic `m`: `data` is three planes
/// (R, G, B, each `m.width * m.height` row-major) in camera RGB and the
/// mosaic's units; white balance state and metadata carry over.
pub(crate) fn demosaiced(m: &Mosaic, data: Vec<f32>) -> Value {
    Value::Image(
        Image {
            width: m.width,
            height: m.height,
            data,
            space: ColorSpace::Camera,
            wb_applied: m.wb_applied,
            meta: m.meta.clone(),
        }
        .into(),
    )
}

impl Stage for DemosaicBilinear {
    fn op(&self) -> &'static str {
        "demosaic_bilinear"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let data = demosaic_strips(m, HALO, 32, |t, _y0, out| fill(t, out));
        Ok(demosaiced(m, data))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: HALO,
            row_align: 2,
        })
    }

    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let out = input.demosaiced()?;
        let f: DemosaicFn = Box::new(fill);
        Ok(Some((
            RowKernel::Demosaic {
                halo: HALO,
                strip_rows: 16,
                f,
            },
            out,
        )))
    }

    /// `demosaic_bilinear_f32`, as [`Stage::run_cuda`].
    fn device_step(&self, input: &Header) -> Result<Option<(DeviceStep, Header)>> {
        let method = crate::backend::cuda::DemosaicMethod::Bilinear;
        Ok(Some((DeviceStep::Demosaic(method), input.demosaiced()?)))
    }

    fn has_cuda(&self) -> bool {
        true
    }

    /// `demosaic_bilinear_f32` in kernels/demosaic.cu.
    fn run_cuda(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let (data, _) =
            crate::backend::cuda::demosaic(m, crate::backend::cuda::DemosaicMethod::Bilinear)?;
        Ok(demosaiced(m, data))
    }
}

/// Mirrored context around each strip (rows and columns; even).
const HALO: usize = 2;

/// Fills the interior rows of tile `t` (every output pixel of the strip).
fn fill(t: &crate::backend::cpu::Tile, [r, g, b]: [&mut [f32]; 3]) {
    let w = t.w - 2 * t.halo;
    if w == 0 {
        return;
    }
    let (tw, halo) = (t.w, t.halo);
    let rows = r.len() / w;
    for oy in 0..rows {
        let ty = oy + halo;
        let o = oy * w;
        let (ro, go, bo) = (&mut r[o..o + w], &mut g[o..o + w], &mut b[o..o + w]);
        // Rows above, at and below, from one column left of output x = 0.
        let row = |y: usize| &t.data[y * tw + halo - 1..y * tw + halo + w + 1];
        let (up, mid, dn) = (row(ty - 1), row(ty), row(ty + 1));
        let done = avx2_row(
            site(t.cfa, ty, halo),
            [up, mid, dn],
            [&mut *ro, &mut *go, &mut *bo],
        );
        let (up, mid, dn) = (&up[done..], &mid[done..], &dn[done..]);
        let (ro, go, bo) = (&mut ro[done..], &mut go[done..], &mut bo[done..]);
        // `done` is even, so the remaining pixels keep their parity.
        match site(t.cfa, ty, halo) {
            Site::R => fill_row::<0, 2>(up, mid, dn, ro, go, bo),
            Site::GRedRow => fill_row::<2, 0>(up, mid, dn, ro, go, bo),
            Site::B => fill_row::<1, 3>(up, mid, dn, ro, go, bo),
            Site::GBlueRow => fill_row::<3, 1>(up, mid, dn, ro, go, bo),
        }
    }
}

/// The output (R, G, B) of a site of kind `S` (0 R, 1 B, 2 G in a red
/// row, 3 G in a blue row) from its value `c`, the horizontal and
/// vertical neighbour means `h`, `v`, their mean `cross` and the diagonal
/// mean `diag`.
#[inline(always)]
fn pick<const S: u8>(c: f32, h: f32, v: f32, cross: f32, diag: f32) -> [f32; 3] {
    match S {
        0 => [c, cross, diag],
        1 => [diag, cross, c],
        2 => [h, c, v],
        _ => [v, c, h],
    }
}

/// One output row whose even pixels are sites of kind `E` and odd pixels
/// of kind `O`. `up`, `mid`, `dn` start one column left of output x = 0
/// (`len = r.len() + 2`). Works 16 pixels at a time with every candidate
/// computed for every lane and the site's pick fixed per lane, so the loop
/// vectorises; each value is the same expression as the scalar tail.
#[inline(always)]
fn fill_row<const E: u8, const O: u8>(
    up: &[f32],
    mid: &[f32],
    dn: &[f32],
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    const L: usize = 16;
    #[inline(always)]
    fn px<const E: u8, const O: u8>(
        u: &[f32],
        m: &[f32],
        d: &[f32],
        k: usize,
        even: bool,
    ) -> [f32; 3] {
        let c = m[k + 1];
        let h = 0.5 * (m[k] + m[k + 2]);
        let v = 0.5 * (u[k + 1] + d[k + 1]);
        let cross = 0.5 * (h + v);
        let diag = 0.25 * (u[k] + u[k + 2] + d[k] + d[k + 2]);
        if even {
            pick::<E>(c, h, v, cross, diag)
        } else {
            pick::<O>(c, h, v, cross, diag)
        }
    }
    let w = r.len();
    let full = w / L * L;
    for x0 in (0..full).step_by(L) {
        let u: &[f32; L + 2] = up[x0..x0 + L + 2].try_into().unwrap();
        let m: &[f32; L + 2] = mid[x0..x0 + L + 2].try_into().unwrap();
        let d: &[f32; L + 2] = dn[x0..x0 + L + 2].try_into().unwrap();
        let ro: &mut [f32; L] = (&mut r[x0..x0 + L]).try_into().unwrap();
        let go: &mut [f32; L] = (&mut g[x0..x0 + L]).try_into().unwrap();
        let bo: &mut [f32; L] = (&mut b[x0..x0 + L]).try_into().unwrap();
        for k in 0..L {
            let [pr, pg, pb] = px::<E, O>(u, m, d, k, k % 2 == 0);
            ro[k] = pr;
            go[k] = pg;
            bo[k] = pb;
        }
    }
    for x in full..w {
        [r[x], g[x], b[x]] = px::<E, O>(up, mid, dn, x, x % 2 == 0);
    }
}

/// The AVX2 kernel over a prefix of one output row whose first pixel is a
/// site of kind `first`; returns the pixels written (a multiple of 8; 0
/// without AVX2). Same expressions, in the same order, as [`fill_row`].
fn avx2_row(first: Site, rows: [&[f32]; 3], out: [&mut [f32]; 3]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::backend::simd::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe {
                match first {
                    Site::R => avx2::row::<0, 2>(rows, out),
                    Site::GRedRow => avx2::row::<2, 0>(rows, out),
                    Site::B => avx2::row::<1, 3>(rows, out),
                    Site::GBlueRow => avx2::row::<3, 1>(rows, out),
                }
            };
        }
    }
    let _ = (first, rows, out);
    0
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Which candidate (0 c, 1 h, 2 v, 3 cross, 4 diag) output channel
    /// `ch` of a site of kind `S` takes (as `super::pick`).
    const fn cand(s: u8, ch: usize) -> usize {
        match (s, ch) {
            (0, 0) | (1, 2) | (2, 1) | (3, 1) => 0,
            (0, 1) | (1, 1) => 3,
            (0, 2) | (1, 0) => 4,
            (2, 0) | (3, 2) => 1,
            _ => 2,
        }
    }

    /// 8 pixels per step: every candidate for every lane, then even lanes
    /// take site `E`'s pick and odd lanes site `O`'s (a blend).
    #[target_feature(enable = "avx2")]
    pub unsafe fn row<const E: u8, const O: u8>(
        [up, mid, dn]: [&[f32]; 3],
        [r, g, b]: [&mut [f32]; 3],
    ) -> usize {
        let w = r.len().min(g.len()).min(b.len());
        let w = w
            .min(up.len().saturating_sub(2))
            .min(mid.len().saturating_sub(2));
        let w = w.min(dn.len().saturating_sub(2));
        let (half, quarter) = (_mm256_set1_ps(0.5), _mm256_set1_ps(0.25));
        let mut x = 0;
        while x + 8 <= w {
            // SAFETY: x + 8 <= w, so inputs x..x + 10 and outputs
            // x..x + 8 are in bounds.
            macro_rules! ld {
                ($s:expr, $k:expr) => {
                    _mm256_loadu_ps($s.as_ptr().add(x + $k))
                };
            }
            let (u0, u1, u2) = (ld!(up, 0), ld!(up, 1), ld!(up, 2));
            let (m0, m1, m2) = (ld!(mid, 0), ld!(mid, 1), ld!(mid, 2));
            let (d0, d1, d2) = (ld!(dn, 0), ld!(dn, 1), ld!(dn, 2));
            let h = _mm256_mul_ps(half, _mm256_add_ps(m0, m2));
            let v = _mm256_mul_ps(half, _mm256_add_ps(u1, d1));
            let cross = _mm256_mul_ps(half, _mm256_add_ps(h, v));
            let diag = _mm256_mul_ps(
                quarter,
                _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(u0, u2), d0), d2),
            );
            let c = [m1, h, v, cross, diag];
            for (ch, o) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
                let px = _mm256_blend_ps::<0b1010_1010>(c[cand(E, ch)], c[cand(O, ch)]);
                _mm256_storeu_ps(o.as_mut_ptr().add(x), px);
            }
            x += 8;
        }
        x
    }
}

/// What a photosite is, and for green where its red neighbours lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    R,
    B,
    /// Green with red to the left and right.
    GRedRow,
    /// Green with red above and below.
    GBlueRow,
}

/// Classifies tile pixel (tx, ty).
#[inline(always)]
pub(crate) fn site(cfa: crate::raw::CfaPattern, ty: usize, tx: usize) -> Site {
    match cfa.color_at(ty, tx) {
        0 => Site::R,
        2 => Site::B,
        _ if cfa.color_at(ty, tx + 1) == 0 => Site::GRedRow,
        _ => Site::GBlueRow,
    }
}
