//! `demosaic_rcd_mlri`: a fast hybrid of Ratio Corrected Demosaicing
//! (RCD, Sanz Rodríguez 2017) for green, Freeman's median of colour
//! differences (US patent 4,724,395, 1988) as a green correction, and
//! minimized-Laplacian residual interpolation (MLRI, Kiku, Monno, Tanaka
//! and Okutomi 2014) for red and blue.
//!
//! 1. RCD demosaics the tile ([`rcd_tile`]): green `G0` and red/blue
//!    `R0`, `B0` (from colour differences).
//! 2. Green at red (blue) sites is rebuilt from the native sample and the
//!    3 x 3 median of the colour difference `R0 - G0` (`B0 - G0`), as
//!    `false_color_suppress` does, but with a per-pixel strength
//!    `1 / (1 + (s / knee)²)`: `s` is the local saturation, `(|median
//!    R-G| + |median B-G|) / (|G0| + 0.02 white)`. Grey, fine texture (where
//!    RCD's green zippers and aliases) gets the full median; saturated
//!    colour detail, where colour differences are not locally flat
//!    (McMaster-like scenes), keeps RCD's green.
//! 3. Red and blue: MLRI guided upsampling from their quarter-resolution
//!    lattices with the corrected green as guide (the red/blue step of
//!    `demosaic_ari`, [`rb_plane`]), averaged with the colour-difference
//!    estimate `G1 + (R0 - G0)` (weight `mlri_weight`): residual
//!    interpolation keeps decorrelated colour edges, colour differences
//!    keep correlated detail.
//!
//! Native samples pass through unchanged. Input: a mosaic, normalised
//! (1.0 = white) or in DN (the constants are scaled by the white level).
//! Output: planar camera RGB, same size. Runs on 2-D tiles with a
//! mirrored halo that covers the dependency radius (RCD 10 + median 1 +
//! MLRI `6 + 4 rb_radius` pixels).
//!
//! Quality (sRGB protocol, 10-px border, kodak24 / mcmaster18, default
//! params): 39.88 / 36.54 dB, issue 16's >= 39.8 / >= 36.5 (RCD 36.98 /
//! 36.11, RCD + `false_color_suppress` 39.93 / 35.52, `demosaic_ari` +
//! `false_color_suppress` 0.5 40.11 / 37.15). Without the saturation gate
//! 40.10 / 36.03; `saturation_knee` 1.0: 39.82 / 36.61; 1.5 (with
//! `rb_radius` 2): 39.97 / 36.58; `rb_radius` 2: 39.90 / 36.53. Tried and
//! dropped (all on a worse Kodak/McMaster trade-off): RCD + MLRI red/blue
//! alone (36.29 / 36.48) and then `false_color_suppress` at 0.5..1 (38.22
//! / 36.71 .. 39.52 / 35.97), a median gated on the RCD/MLRI disagreement
//! or on the spike size, the median on red/blue only (37.13 / 36.03: the
//! Kodak gain of the median is its green correction), MLRI-only red/blue
//! after the correction (40.14 / 35.62).
//! Speed (`bench --synthetic 4000x3000`, `dm` medians of 3 interleaved
//! runs of 5 iterations, AMD EPYC with AVX-512, 2 vCPUs at load 3.2-3.8):
//! ~360 ms on 1 thread, ~375 ms on 2 (ARI + `false_color_suppress` 0.5:
//! ~2.66 s / ~2.82 s; RCD + `false_color_suppress` ~139 / ~137 ms).
//! Larger tiles (512 x 2048) and smaller ones (192 x 640) measured
//! slower. About a quarter of the bench process is [`rb_plane`] (its
//! bilinear upsampling gathers are the largest single line), an eighth
//! RCD, the gated median a few per cent.

use serde::Deserialize;

use super::demosaic_ari::{rb_plane, Consts, Pool};
use super::demosaic_bilinear::{demosaiced, infer_demosaic};
use super::demosaic_rcd::{rcd_tile, Scratch as RcdScratch};
use super::{check_range, mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::{demosaic_tiles_scratch, Tile, TileScratch};
use crate::backend::median::median3x3_row;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, MosaicScale, Value, ValueDesc};

/// YAML params of `demosaic_rcd_mlri`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Lattice radius of the red/blue MLRI windows (1..=4; a window spans
    /// (2r+1)² samples of the colour, (4r+1)² pixels).
    pub rb_radius: usize,
    /// Relative saturation (unitless, > 0) at which the green median
    /// correction falls to half strength; larger: more correction.
    pub saturation_knee: f32,
    /// Weight of the MLRI red/blue against the colour-difference
    /// estimate, 0..=1.
    pub mlri_weight: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            rb_radius: 1,
            saturation_knee: 1.2,
            mlri_weight: 0.5,
        }
    }
}

impl crate::stages::Validate for Params {
    /// Checks the ranges.
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("rb_radius", self.rb_radius as f32, 1.0, 4.0)?;
        check_range("saturation_knee", self.saturation_knee, 0.01, 1000.0)?;
        check_range("mlri_weight", self.mlri_weight, 0.0, 1.0)
    }
}

/// The compiled `demosaic_rcd_mlri` op.
#[derive(Debug)]
pub struct DemosaicRcdMlri {
    p: Params,
    halo: usize,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let halo = (RCD_RADIUS + 1 + 6 + 4 * p.rb_radius + 1) & !1;
    Ok(Box::new(DemosaicRcdMlri { p, halo }))
}

/// Pixels in from a tile's sides where RCD's planes are valid.
const RCD_RADIUS: usize = 10;
/// Output rows per strip (one rayon task).
const STRIP: usize = 256;
/// Output columns per tile within a strip.
const TILE_W: usize = 1024;
/// Floor of the green level in the saturation measure (normalised).
const GREEN_FLOOR: f32 = 0.02;

/// Per-task scratch: the last tile's R, G, B planes (each `tile.w *
/// tile.h`, row-major).
#[derive(Default)]
struct Scratch {
    out: [Vec<f32>; 3],
}

impl TileScratch for Scratch {
    fn planes(&self) -> [&[f32]; 3] {
        [&self.out[0], &self.out[1], &self.out[2]]
    }
}

impl Stage for DemosaicRcdMlri {
    fn op(&self) -> &'static str {
        "demosaic_rcd_mlri"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let data = run_tiles(m, self.halo, (STRIP, TILE_W), &self.p);
        Ok(demosaiced(m, data))
    }
}

/// Demosaics `m` in strips of `strip` rows and tiles of `tile_w` columns
/// (padded by `halo`), in parallel; returns the R, G, B planes.
fn run_tiles(m: &Mosaic, halo: usize, (strip, tile_w): (usize, usize), p: &Params) -> Vec<f32> {
    let unit = match m.scale {
        MosaicScale::Normalized => 1.0,
        MosaicScale::Dn => m.meta.white.iter().fold(1.0f32, |a, &b| a.max(b)),
    };
    demosaic_tiles_scratch(m, halo, strip, tile_w, |t, s: &mut Scratch| {
        WORK.with(|work| {
            let (pool, rcd) = &mut *work.borrow_mut();
            hybrid_tile(t, p, unit, rcd, s, pool)
        })
    })
}

thread_local! {
    /// Per-thread buffer pool and RCD planes, reused across tiles and
    /// frames (no allocation, so no fresh pages, once warm).
    static WORK: std::cell::RefCell<(Pool, RcdScratch)> =
        std::cell::RefCell::new((Pool::default(), RcdScratch::default()));
}

crate::avx2_dispatch!(
    /// [`hybrid_tile_body`], 8 lanes wide on AVX2 machines.
    fn hybrid_tile(t: &Tile, p: &Params, unit: f32, rcd: &mut RcdScratch, s: &mut Scratch, pool: &mut Pool) => hybrid_tile_body
);

/// Rows `y - 1`, `y`, `y + 1` of a `w`-wide plane (`1 <= y`, `y + 1` a
/// row of it).
#[inline(always)]
fn rows_around(d: &[f32], w: usize, y: usize) -> [&[f32]; 3] {
    [y - 1, y, y + 1].map(|yy| &d[yy * w..(yy + 1) * w])
}

/// Tile offset `(oy, ox)` of colour `col` (0 red, 2 blue) in the tile's
/// top-left 2 x 2 block.
fn site_of(t: &Tile, col: usize) -> (usize, usize) {
    for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        if t.cfa.color_at(oy, ox) == col {
            return (oy, ox);
        }
    }
    (0, 0)
}

/// Demosaics one padded tile into `s.out` (buffers from `pool`; the
/// previous tile's planes go back to it): full-tile R, G, B planes
/// (each `t.w * t.h`, row-major) valid `halo` pixels in from every side.
/// Helpers are `#[inline(always)]`, so [`hybrid_tile`]'s AVX2 copy
/// compiles them all (no FMA: the same bits as the baseline copy).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn hybrid_tile_body(
    t: &Tile,
    p: &Params,
    unit: f32,
    rcd: &mut RcdScratch,
    s: &mut Scratch,
    pool: &mut Pool,
) {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let m = &t.data[..n];
    pool.put(std::mem::take(&mut s.out));
    rcd_tile(t, rcd);
    let [r0, g0, b0] = rcd.planes();
    let (r0, g0, b0) = (&r0[..n], &g0[..n], &b0[..n]);
    let e = RCD_RADIUS;
    // Green: RCD's where it is valid, the mosaic outside (finite values
    // for the halo; no output depends on them). Colour differences R0 -
    // G0, B0 - G0 where valid, 0 outside.
    let mut g = pool.get(n);
    g.copy_from_slice(m);
    let mut dr = pool.get(n);
    let mut db = pool.get(n);
    dr.fill(0.0);
    db.fill(0.0);
    if w > 2 * e && h > 2 * e {
        for y in e..h - e {
            let row = y * w + e..(y + 1) * w - e;
            g[row.clone()].copy_from_slice(&g0[row.clone()]);
            for (((dr, db), &r), (&gv, &b)) in dr[row.clone()]
                .iter_mut()
                .zip(&mut db[row.clone()])
                .zip(&r0[row.clone()])
                .zip(g0[row.clone()].iter().zip(&b0[row.clone()]))
            {
                *dr = r - gv;
                *db = b - gv;
            }
        }
    }
    // Green at red/blue sites from the gated medians.
    let e1 = e + 1;
    if w > 2 * e1 && h > 2 * e1 {
        let inv_knee = 1.0 / p.saturation_knee;
        let floor = GREEN_FLOOR * unit;
        let mut med = pool.get(6 * w);
        let (mr, rest) = med.split_at_mut(w);
        let (mb, rest) = rest.split_at_mut(w);
        let (cand, cols) = rest.split_at_mut(w);
        for y in e1..h - e1 {
            median3x3_row(rows_around(&dr, w, y), cols, mr);
            median3x3_row(rows_around(&db, w, y), cols, mb);
            // The row's red or blue sites: every other column from `x0`.
            let x0 = usize::from(t.cfa.color_at(y, 0) == 1);
            let (d, md) = if t.cfa.color_at(y, x0) == 0 {
                (&dr, &*mr)
            } else {
                (&db, &*mb)
            };
            let row = y * w..(y + 1) * w;
            let it = cand.iter_mut().zip(&m[row.clone()]).zip(&g0[row.clone()]);
            for (x, ((o, &mv), &gv)) in it.enumerate() {
                let sat = (mr[x].abs() + mb[x].abs()) / (gv.abs() + floor) * inv_knee;
                let k = 1.0 / (1.0 + sat * sat);
                let dv = d[y * w + x];
                *o = mv - (dv + k * (md[x] - dv));
            }
            let first = e1 + ((e1 ^ x0) & 1);
            let grow = &mut g[row];
            for x in (first..w - e1).step_by(2) {
                grow[x] = cand[x];
            }
        }
        pool.put([med]);
    }
    // Red and blue: MLRI on the corrected green, averaged with the
    // colour-difference estimate; native samples kept.
    let c = Consts::new(unit);
    let mut r = rb_plane(m, &g, w, h, site_of(t, 0), p.rb_radius, c, pool);
    let mut b = rb_plane(m, &g, w, h, site_of(t, 2), p.rb_radius, c, pool);
    let wt = p.mlri_weight;
    for (plane, d) in [(&mut r, &dr), (&mut b, &db)] {
        for ((o, &gv), &dv) in plane.iter_mut().zip(&g[..n]).zip(&d[..n]) {
            *o = wt * *o + (1.0 - wt) * (gv + dv);
        }
    }
    for y in 0..h {
        for x in 0..w.min(2) {
            let col = t.cfa.color_at(y, x);
            let plane = match col {
                0 => &mut r,
                2 => &mut b,
                _ => &mut g,
            };
            for xx in (x..w).step_by(2) {
                plane[y * w + xx] = m[y * w + xx];
            }
        }
    }
    pool.put([dr, db]);
    s.out = [r, g, b];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::make_tile_2d;
    use crate::frame::Image;
    use crate::raw::CfaPattern;
    use crate::stages::demosaic_testing::{assert_flat_fields_exact, mosaic_of, mse, run_op};

    fn run(m: Mosaic) -> Image {
        run_op("demosaic_rcd_mlri", serde_json::Value::Null, m)
    }

    fn halo() -> usize {
        (RCD_RADIUS + 1 + 6 + 4 * Params::default().rb_radius + 1) & !1
    }

    /// Fine grey texture, a saturated colour edge and smooth colour.
    fn scene(x: usize, y: usize) -> [f32; 3] {
        let (xf, yf) = (x as f32, y as f32);
        let v = 0.5 + 0.4 * (xf * 0.37 + yf * yf * 0.011).sin();
        let edge = if x * 2 + y > 180 { 0.3 } else { 0.0 };
        [v * 0.8 + edge, 0.6 * v + 0.1, (1.0 - v) * 0.7 + edge * 0.5]
    }

    #[test]
    fn flat_colour_fields_are_exact_in_every_phase_and_odd_sizes() {
        assert_flat_fields_exact("demosaic_rcd_mlri", 1e-4);
    }

    #[test]
    fn native_samples_pass_through() {
        for cfa in CfaPattern::ALL {
            let m = mosaic_of(&scene, 53, 41, cfa);
            let raw = m.data.clone().into_f32();
            let img = run(m);
            let p = img.planes();
            for y in 0..41 {
                for x in 0..53 {
                    let c = cfa.color_at(y, x);
                    let (got, want) = (p[c][y * 53 + x], raw[y * 53 + x]);
                    assert_eq!(got.to_bits(), want.to_bits(), "{cfa:?} ({x}, {y})");
                }
            }
        }
    }

    /// A zone plate (chirped rings up to ~0.35 cycles/px) with a tint and
    /// a sharp diagonal edge.
    fn zone(x: usize, y: usize) -> [f32; 3] {
        let (dx, dy) = (x as f32 - 48.0, y as f32 - 40.0);
        let l = 0.5 + 0.4 * (0.018 * (dx * dx + dy * dy)).cos();
        let e = if x + y > 90 { 0.1 } else { 0.0 };
        [0.9 * l + e, l, 0.7 * l + 0.05]
    }

    #[test]
    fn zone_plate_beats_bilinear_and_rcd_in_every_phase() {
        for cfa in CfaPattern::ALL {
            let ours = mse(&run(mosaic_of(&zone, 96, 80, cfa)), &zone, 4);
            let other = |op: &str| {
                let img = run_op(op, serde_json::Value::Null, mosaic_of(&zone, 96, 80, cfa));
                mse(&img, &zone, 4)
            };
            let (bil, rcd) = (other("demosaic_bilinear"), other("demosaic_rcd"));
            assert!(ours < 0.5 * bil, "{cfa:?}: {ours} vs bilinear {bil}");
            assert!(ours < rcd, "{cfa:?}: {ours} vs rcd {rcd}");
        }
    }

    #[test]
    fn dn_scaled_input_matches_normalised_input() {
        let cfa = CfaPattern::Grbg;
        let norm = run(mosaic_of(&scene, 60, 44, cfa));
        let mut m = mosaic_of(&scene, 60, 44, cfa);
        m.data.f32_mut().iter_mut().for_each(|v| *v *= 4000.0);
        m.scale = MosaicScale::Dn;
        let mut meta = (*m.meta).clone();
        meta.white = [4000.0; 3];
        m.meta = std::sync::Arc::new(meta);
        let dn = run(m);
        for (a, b) in norm.data.iter().zip(&dn.data) {
            assert!((a * 4000.0 - b).abs() < 1.0, "{a} x 4000 vs {b}");
        }
    }

    /// Small strips and column tiles (a short last strip, a narrow last
    /// tile) give the bits of one tile holding the whole frame.
    #[test]
    fn tiling_does_not_change_the_bits() {
        let p = Params::default();
        for cfa in [CfaPattern::ALL[0], CfaPattern::ALL[3]] {
            let m = mosaic_of(&scene, 230, 150, cfa);
            let whole = run_tiles(&m, halo(), (1 << 20, 1 << 20), &p);
            let tiled = run_tiles(&m, halo(), (64, 96), &p);
            assert_eq!(whole.len(), tiled.len());
            for (i, (a, b)) in whole.iter().zip(&tiled).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{cfa:?} sample {i}: {a} vs {b}");
            }
        }
    }

    /// The AVX2 copy of the tile kernel gives the scalar copy's bits.
    #[test]
    fn dispatched_kernel_matches_the_scalar_one() {
        let p = Params::default();
        for cfa in CfaPattern::ALL {
            let m = mosaic_of(&scene, 120, 90, cfa);
            let t = make_tile_2d(&m, 0, 90, 0, 120, halo());
            let (mut s1, mut s2) = (Scratch::default(), Scratch::default());
            let (mut p1, mut p2) = (Pool::default(), Pool::default());
            let (mut r1, mut r2) = (RcdScratch::default(), RcdScratch::default());
            hybrid_tile(&t, &p, 1.0, &mut r1, &mut s1, &mut p1);
            hybrid_tile_body(&t, &p, 1.0, &mut r2, &mut s2, &mut p2);
            for (a, b) in s1.planes().iter().zip(s2.planes()) {
                for (x, y) in a.iter().zip(b) {
                    assert_eq!(x.to_bits(), y.to_bits());
                }
            }
        }
    }

    #[test]
    fn params_are_checked() {
        use crate::stages::Validate;
        let bad = [
            Params {
                rb_radius: 0,
                ..Params::default()
            },
            Params {
                saturation_knee: 0.0,
                ..Params::default()
            },
            Params {
                mlri_weight: 1.5,
                ..Params::default()
            },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert!(Params::default().validate().is_ok());
    }
}
