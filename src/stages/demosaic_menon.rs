//! `demosaic_menon`: Menon, Andriani & Calvagno 2007, "Demosaicing with
//! directional filtering and a posteriori decision" (IEEE TIP), with the
//! paper's refining step.
//!
//! Green is interpolated both horizontally and vertically; the direction
//! with the smaller local colour-difference gradient wins per pixel (the
//! a-posteriori decision); red and blue follow the chosen direction on the
//! colour differences; the refining step smooths the colour differences
//! along the chosen direction. Runs on row strips with a 12-pixel halo,
//! which covers the whole dependency radius of the method.

use rayon::prelude::*;
use serde::Deserialize;

use super::demosaic_bilinear::infer_demosaic;
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::{make_tile, Tile};
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc};

/// YAML params of `demosaic_menon`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Apply the paper's refining step (recommended).
    pub refine: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params { refine: true }
    }
}

/// The compiled `demosaic_menon` op.
#[derive(Debug)]
pub struct DemosaicMenon {
    p: Params,
}

pub fn compile(params: serde_json::Value) -> std::result::Result<Box<dyn Stage>, String> {
    Ok(Box::new(DemosaicMenon {
        p: parse_params(params)?,
    }))
}

/// Halo (pixels) that covers every dependency of the method.
const HALO: usize = 12;
/// Output rows per strip.
const STRIP: usize = 48;

impl Stage for DemosaicMenon {
    fn op(&self) -> &'static str {
        "demosaic_menon"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let (w, h) = (m.width, m.height);
        let n = w * h;
        let mut data = vec![0f32; 3 * n];
        let (r, gb) = data.split_at_mut(n);
        let (g, b) = gb.split_at_mut(n);
        let refine = self.p.refine;
        r.par_chunks_mut(w * STRIP)
            .zip(g.par_chunks_mut(w * STRIP))
            .zip(b.par_chunks_mut(w * STRIP))
            .enumerate()
            .for_each(|(i, ((r, g), b))| {
                let y0 = i * STRIP;
                let y1 = (y0 + STRIP).min(h);
                let tile = make_tile(m, y0, y1, HALO);
                let [tr, tg, tb] = menon_tile(&tile, refine);
                for oy in 0..y1 - y0 {
                    let src = (oy + HALO) * tile.w + HALO;
                    let dst = oy * w;
                    r[dst..dst + w].copy_from_slice(&tr[src..src + w]);
                    g[dst..dst + w].copy_from_slice(&tg[src..src + w]);
                    b[dst..dst + w].copy_from_slice(&tb[src..src + w]);
                }
            });
        Ok(Value::Image(
            Image {
                width: w,
                height: h,
                data,
                space: ColorSpace::Camera,
                wb_applied: m.wb_applied,
                meta: m.meta.clone(),
            }
            .into(),
        ))
    }
}

/// Demosaics a whole tile. Each pass only computes the region whose
/// inputs are valid (the margin grows with every stencil), so no bounds
/// logic runs per pixel; the 12-pixel halo covers the total margin, and
/// the tile was mirror-padded at image borders.
fn menon_tile(t: &Tile, refine: bool) -> [Vec<f32>; 3] {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let cfa = t.cfa;
    let src = &t.data;
    // Per-row colour of even/odd columns, and whether a row holds red.
    let col = |y: usize, x: usize| cfa.color_at(y, x);
    let red_row = |y: usize| col(y, 0) == 0 || col(y, 1) == 0;

    // 1. Directional green estimates (margin 2); colour differences C at
    // R/B sites, 0 at G sites.
    let mut gh = vec![0f32; n];
    let mut gv = vec![0f32; n];
    let mut ch = vec![0f32; n];
    let mut cv = vec![0f32; n];
    for y in 2..h - 2 {
        for x in 2..w - 2 {
            let i = y * w + x;
            let v = src[i];
            if col(y, x) == 1 {
                gh[i] = v;
                gv[i] = v;
            } else {
                gh[i] =
                    0.5 * (src[i - 1] + src[i + 1]) + 0.5 * v - 0.25 * (src[i - 2] + src[i + 2]);
                gv[i] = 0.5 * (src[i - w] + src[i + w]) + 0.5 * v
                    - 0.25 * (src[i - 2 * w] + src[i + 2 * w]);
                ch[i] = v - gh[i];
                cv[i] = v - gv[i];
            }
        }
    }
    // 2. Gradients of the colour differences two pixels apart (margin 4).
    let mut dh = vec![0f32; n];
    let mut dv = vec![0f32; n];
    for y in 2..h - 4 {
        for x in 2..w - 4 {
            let i = y * w + x;
            dh[i] = (ch[i] - ch[i + 2]).abs();
            dv[i] = (cv[i] - cv[i + 2 * w]).abs();
        }
    }
    drop((ch, cv));
    // 3. Classifier over the paper's window (margin 6): horizontal when
    // the vertical gradient sum is not smaller.
    let mut g = vec![0f32; n];
    let mut horiz = vec![false; n];
    for y in 6..h - 6 {
        for x in 6..w - 6 {
            let i = y * w + x;
            let sh = dh[i + 2 * w]
                + dh[i + 2 * w - 2]
                + dh[i + w - 1]
                + 3.0 * dh[i]
                + 3.0 * dh[i - 2]
                + dh[i - w - 1]
                + dh[i - 2 * w]
                + dh[i - 2 * w - 2];
            let sv = dv[i + 2]
                + dv[i - 2 * w + 2]
                + dv[i - w + 1]
                + 3.0 * dv[i]
                + 3.0 * dv[i - 2 * w]
                + dv[i - w - 1]
                + dv[i - 2]
                + dv[i - 2 * w - 2];
            let hz = sv >= sh;
            horiz[i] = hz;
            g[i] = if hz { gh[i] } else { gv[i] };
        }
    }
    drop((gh, gv, dh, dv));

    // 4. Red and blue at green sites from the colour differences of the
    // direct neighbours (margin 7).
    let mut r = vec![0f32; n];
    let mut b = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            match col(y, x) {
                0 => r[i] = src[i],
                2 => b[i] = src[i],
                _ => {}
            }
        }
    }
    for y in 7..h - 7 {
        let rr = red_row(y);
        for x in 7..w - 7 {
            if col(y, x) != 1 {
                continue;
            }
            let i = y * w + x;
            let (gh2, gv2) = (0.5 * (g[i - 1] + g[i + 1]), 0.5 * (g[i - w] + g[i + w]));
            let (sh, sv) = (
                0.5 * (src[i - 1] + src[i + 1]),
                0.5 * (src[i - w] + src[i + w]),
            );
            if rr {
                r[i] = g[i] + sh - gh2;
                b[i] = g[i] + sv - gv2;
            } else {
                r[i] = g[i] + sv - gv2;
                b[i] = g[i] + sh - gh2;
            }
        }
    }
    // 5. Red at blue and blue at red sites along the chosen direction
    // (margin 8).
    for y in 8..h - 8 {
        for x in 8..w - 8 {
            let i = y * w + x;
            let c = col(y, x);
            if c == 1 {
                continue;
            }
            let (o1, o2) = if horiz[i] {
                (i - 1, i + 1)
            } else {
                (i - w, i + w)
            };
            if c == 2 {
                r[i] = b[i] + 0.5 * (r[o1] + r[o2]) - 0.5 * (b[o1] + b[o2]);
            } else {
                b[i] = r[i] + 0.5 * (b[o1] + b[o2]) - 0.5 * (r[o1] + r[o2]);
            }
        }
    }
    if refine {
        refine_step(t, &horiz, &mut r, &mut g, &mut b);
    }
    [r, g, b]
}

/// Menon 2007 refining step: smooth colour differences along the chosen
/// direction, first for green (margin 9), then red/blue at green sites
/// (margin 10), then red/blue at blue/red sites (margin 11).
fn refine_step(t: &Tile, horiz: &[bool], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let cfa = t.cfa;
    let col = |y: usize, x: usize| cfa.color_at(y, x);
    let red_row = |y: usize| col(y, 0) == 0 || col(y, 1) == 0;
    let third = 1.0f32 / 3.0;
    let fir = |d: &[f32], i: usize, hz: bool| {
        if hz {
            (d[i - 1] + d[i] + d[i + 1]) * third
        } else {
            (d[i - w] + d[i] + d[i + w]) * third
        }
    };
    // Green at R and B sites.
    let mut diff: Vec<f32> = vec![0f32; n];
    let mut diff2: Vec<f32> = vec![0f32; n];
    for i in 0..n {
        diff[i] = r[i] - g[i];
        diff2[i] = b[i] - g[i];
    }
    for y in 9..h - 9 {
        for x in 9..w - 9 {
            let i = y * w + x;
            match col(y, x) {
                0 => g[i] = r[i] - fir(&diff, i, horiz[i]),
                2 => g[i] = b[i] - fir(&diff2, i, horiz[i]),
                _ => {}
            }
        }
    }
    // Red and blue at green sites.
    for i in 0..n {
        diff[i] = r[i] - g[i];
        diff2[i] = b[i] - g[i];
    }
    for y in 10..h - 10 {
        let rr = red_row(y);
        for x in 10..w - 10 {
            if col(y, x) != 1 {
                continue;
            }
            let i = y * w + x;
            let (rh, rv) = (
                0.5 * (diff[i - 1] + diff[i + 1]),
                0.5 * (diff[i - w] + diff[i + w]),
            );
            let (bh, bv) = (
                0.5 * (diff2[i - 1] + diff2[i + 1]),
                0.5 * (diff2[i - w] + diff2[i + w]),
            );
            if rr {
                r[i] = g[i] + rh;
                b[i] = g[i] + bv;
            } else {
                r[i] = g[i] + rv;
                b[i] = g[i] + bh;
            }
        }
    }
    // Red at blue sites and blue at red sites.
    for i in 0..n {
        diff[i] = r[i] - b[i];
    }
    for y in 11..h - 11 {
        for x in 11..w - 11 {
            let i = y * w + x;
            match col(y, x) {
                2 => r[i] = b[i] + fir(&diff, i, horiz[i]),
                0 => b[i] = r[i] - fir(&diff, i, horiz[i]),
                _ => {}
            }
        }
    }
}
