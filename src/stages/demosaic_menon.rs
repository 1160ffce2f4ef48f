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
use crate::backend::cpu::{make_tile, reflect, Tile};
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

/// A plane the size of the tile with mirrored access.
struct P<'a> {
    d: &'a [f32],
    w: isize,
    h: isize,
}

impl P<'_> {
    #[inline(always)]
    fn at(&self, x: isize, y: isize) -> f32 {
        self.d[reflect(y, self.h) * self.w as usize + reflect(x, self.w)]
    }
    /// Zero outside the plane (scipy `mode='constant'`).
    #[inline(always)]
    fn at0(&self, x: isize, y: isize) -> f32 {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            0.0
        } else {
            self.d[y as usize * self.w as usize + x as usize]
        }
    }
    /// [0.5, 0, 0.5] horizontally.
    #[inline(always)]
    fn kb_h(&self, x: isize, y: isize) -> f32 {
        0.5 * (self.at(x - 1, y) + self.at(x + 1, y))
    }
    #[inline(always)]
    fn kb_v(&self, x: isize, y: isize) -> f32 {
        0.5 * (self.at(x, y - 1) + self.at(x, y + 1))
    }
    /// [1, 1, 1] / 3 horizontally.
    #[inline(always)]
    fn fir_h(&self, x: isize, y: isize) -> f32 {
        (self.at(x - 1, y) + self.at(x, y) + self.at(x + 1, y)) * (1.0 / 3.0)
    }
    #[inline(always)]
    fn fir_v(&self, x: isize, y: isize) -> f32 {
        (self.at(x, y - 1) + self.at(x, y) + self.at(x, y + 1)) * (1.0 / 3.0)
    }
}

/// Demosaics a whole tile (borders mirrored at the tile edge; the halo
/// absorbs the difference). Returns R, G, B planes of the tile's size.
fn menon_tile(t: &Tile, refine: bool) -> [Vec<f32>; 3] {
    let (w, h) = (t.w, t.h);
    let (wi, hi) = (w as isize, h as isize);
    let n = w * h;
    let cfa = t.cfa;
    let color = |x: usize, y: usize| cfa.color_at(y, x);
    let src = P {
        d: &t.data,
        w: wi,
        h: hi,
    };

    // 1. Directional green estimates; colour differences C = X - G at R/B.
    let mut gh = vec![0f32; n];
    let mut gv = vec![0f32; n];
    let mut ch = vec![0f32; n];
    let mut cv = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let v = t.data[i];
            if color(x, y) == 1 {
                gh[i] = v;
                gv[i] = v;
            } else {
                let (xi, yi) = (x as isize, y as isize);
                gh[i] = 0.5 * (src.at(xi - 1, yi) + src.at(xi + 1, yi)) + 0.5 * v
                    - 0.25 * (src.at(xi - 2, yi) + src.at(xi + 2, yi));
                gv[i] = 0.5 * (src.at(xi, yi - 1) + src.at(xi, yi + 1)) + 0.5 * v
                    - 0.25 * (src.at(xi, yi - 2) + src.at(xi, yi + 2));
                ch[i] = v - gh[i];
                cv[i] = v - gv[i];
            }
        }
    }
    // 2. Gradients of the colour differences two pixels apart.
    let mut dh = vec![0f32; n];
    let mut dv = vec![0f32; n];
    {
        let chp = P {
            d: &ch,
            w: wi,
            h: hi,
        };
        let cvp = P {
            d: &cv,
            w: wi,
            h: hi,
        };
        for y in 0..hi {
            for x in 0..wi {
                let i = (y * wi + x) as usize;
                dh[i] = (ch[i] - chp.at(x + 2, y)).abs();
                dv[i] = (cv[i] - cvp.at(x, y + 2)).abs();
            }
        }
    }
    // 3. Classifier: accumulate the gradients over the paper's window and
    // pick the direction with the smaller sum.
    let mut g = vec![0f32; n];
    let mut horiz = vec![false; n];
    {
        let a = P {
            d: &dh,
            w: wi,
            h: hi,
        };
        let b = P {
            d: &dv,
            w: wi,
            h: hi,
        };
        for y in 0..hi {
            for x in 0..wi {
                let i = (y * wi + x) as usize;
                let sh = a.at0(x, y + 2)
                    + a.at0(x - 2, y + 2)
                    + a.at0(x - 1, y + 1)
                    + 3.0 * a.at0(x, y)
                    + 3.0 * a.at0(x - 2, y)
                    + a.at0(x - 1, y - 1)
                    + a.at0(x, y - 2)
                    + a.at0(x - 2, y - 2);
                let sv = b.at0(x + 2, y)
                    + b.at0(x + 2, y - 2)
                    + b.at0(x + 1, y - 1)
                    + 3.0 * b.at0(x, y)
                    + 3.0 * b.at0(x, y - 2)
                    + b.at0(x - 1, y - 1)
                    + b.at0(x - 2, y)
                    + b.at0(x - 2, y - 2);
                let hz = sv >= sh;
                horiz[i] = hz;
                g[i] = if hz { gh[i] } else { gv[i] };
            }
        }
    }
    drop((gh, gv, ch, cv, dh, dv));

    // 4. Red and blue. Start from the masked CFA planes.
    let mut r = vec![0f32; n];
    let mut b = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            match color(x, y) {
                0 => r[i] = t.data[i],
                2 => b[i] = t.data[i],
                _ => {}
            }
        }
    }
    // Row/column colour of green sites: in a red row, R is left/right.
    let red_row = |y: usize| color(0, y) == 0 || color(1, y) == 0;
    {
        let gp = P {
            d: &g,
            w: wi,
            h: hi,
        };
        let r0 = r.clone();
        let b0 = b.clone();
        let rp = P {
            d: &r0,
            w: wi,
            h: hi,
        };
        let bp = P {
            d: &b0,
            w: wi,
            h: hi,
        };
        for y in 0..h {
            for x in 0..w {
                if color(x, y) != 1 {
                    continue;
                }
                let i = y * w + x;
                let (xi, yi) = (x as isize, y as isize);
                if red_row(y) {
                    r[i] = g[i] + rp.kb_h(xi, yi) - gp.kb_h(xi, yi);
                    b[i] = g[i] + bp.kb_v(xi, yi) - gp.kb_v(xi, yi);
                } else {
                    r[i] = g[i] + rp.kb_v(xi, yi) - gp.kb_v(xi, yi);
                    b[i] = g[i] + bp.kb_h(xi, yi) - gp.kb_h(xi, yi);
                }
            }
        }
    }
    {
        let r1 = r.clone();
        let b1 = b.clone();
        let rp = P {
            d: &r1,
            w: wi,
            h: hi,
        };
        let bp = P {
            d: &b1,
            w: wi,
            h: hi,
        };
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let (xi, yi) = (x as isize, y as isize);
                match color(x, y) {
                    2 => {
                        r[i] = if horiz[i] {
                            b1[i] + rp.kb_h(xi, yi) - bp.kb_h(xi, yi)
                        } else {
                            b1[i] + rp.kb_v(xi, yi) - bp.kb_v(xi, yi)
                        }
                    }
                    0 => {
                        b[i] = if horiz[i] {
                            r1[i] + bp.kb_h(xi, yi) - rp.kb_h(xi, yi)
                        } else {
                            r1[i] + bp.kb_v(xi, yi) - rp.kb_v(xi, yi)
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if refine {
        refine_step(w, h, &color, &horiz, &mut r, &mut g, &mut b);
    }
    [r, g, b]
}

/// Menon 2007 refining step: smooth colour differences along the chosen
/// direction, first for green, then red/blue at green sites, then red/blue
/// at blue/red sites.
fn refine_step(
    w: usize,
    h: usize,
    color: &dyn Fn(usize, usize) -> usize,
    horiz: &[bool],
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    let (wi, hi) = (w as isize, h as isize);
    let n = w * h;
    let red_row = |y: usize| color(0, y) == 0 || color(1, y) == 0;
    // Green update at R and B sites.
    let rg: Vec<f32> = (0..n).map(|i| r[i] - g[i]).collect();
    let bg: Vec<f32> = (0..n).map(|i| b[i] - g[i]).collect();
    {
        let rgp = P {
            d: &rg,
            w: wi,
            h: hi,
        };
        let bgp = P {
            d: &bg,
            w: wi,
            h: hi,
        };
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let (xi, yi) = (x as isize, y as isize);
                match color(x, y) {
                    0 => {
                        let m = if horiz[i] {
                            rgp.fir_h(xi, yi)
                        } else {
                            rgp.fir_v(xi, yi)
                        };
                        g[i] = r[i] - m;
                    }
                    2 => {
                        let m = if horiz[i] {
                            bgp.fir_h(xi, yi)
                        } else {
                            bgp.fir_v(xi, yi)
                        };
                        g[i] = b[i] - m;
                    }
                    _ => {}
                }
            }
        }
    }
    // Red and blue at green sites.
    let rg: Vec<f32> = (0..n).map(|i| r[i] - g[i]).collect();
    let bg: Vec<f32> = (0..n).map(|i| b[i] - g[i]).collect();
    {
        let rgp = P {
            d: &rg,
            w: wi,
            h: hi,
        };
        let bgp = P {
            d: &bg,
            w: wi,
            h: hi,
        };
        for y in 0..h {
            for x in 0..w {
                if color(x, y) != 1 {
                    continue;
                }
                let i = y * w + x;
                let (xi, yi) = (x as isize, y as isize);
                if red_row(y) {
                    r[i] = g[i] + rgp.kb_h(xi, yi);
                    b[i] = g[i] + bgp.kb_v(xi, yi);
                } else {
                    r[i] = g[i] + rgp.kb_v(xi, yi);
                    b[i] = g[i] + bgp.kb_h(xi, yi);
                }
            }
        }
    }
    // Red at blue sites and blue at red sites.
    let rb: Vec<f32> = (0..n).map(|i| r[i] - b[i]).collect();
    let rbp = P {
        d: &rb,
        w: wi,
        h: hi,
    };
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (xi, yi) = (x as isize, y as isize);
            let c = color(x, y);
            if c == 1 {
                continue;
            }
            let m = if horiz[i] {
                rbp.fir_h(xi, yi)
            } else {
                rbp.fir_v(xi, yi)
            };
            if c == 2 {
                r[i] = b[i] + m;
            } else {
                b[i] = r[i] - m;
            }
        }
    }
}
