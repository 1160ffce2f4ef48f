//! `demosaic_ahd`: Adaptive Homogeneity-Directed demosaicing, Hirakawa &
//! Parks 2005 ("Adaptive homogeneity-directed demosaicing algorithm",
//! IEEE Trans. Image Processing 14(3)); LibRaw's and dcraw's default
//! demosaic (`-q 3`). Written from the paper's description.
//!
//! 1. Two full green planes, one interpolated only along rows
//!    (horizontal) and one only along columns (vertical): at a red/blue
//!    site, the mean of the two green neighbours plus a quarter of the
//!    site colour's second difference, `(G[-1] + G[+1]) / 2 + (2 C[0] -
//!    C[-2] - C[+2]) / 4`, bounded by the two green neighbours (so noise
//!    and edges cannot overshoot).
//! 2. For each direction, red and blue from that direction's green by
//!    bilinear interpolation of the colour differences R - G and B - G
//!    (two cardinal neighbours at green sites, four diagonal neighbours
//!    at red/blue sites): two full candidate images.
//! 3. Both candidates to CIELAB (the frame's camera -> sRGB matrix, then
//!    sRGB -> XYZ, D65 white).
//! 4. Homogeneity: for each pixel and direction, how many of its four
//!    cardinal neighbours lie within `eps_l` in L* and within `eps_c` in
//!    a*b* of it in that direction's image. The thresholds adapt per
//!    pixel as in the paper: `eps_l` is the smaller of the largest L*
//!    step to the horizontal neighbours in the horizontal image and to
//!    the vertical neighbours in the vertical image; `eps_c` the same for
//!    the a*b* distance.
//! 5. Each direction's homogeneity summed over the 3x3 window around the
//!    pixel; the pixel takes the direction with the larger sum, the mean
//!    of both on a tie.
//!
//! The paper's optional artifact reduction (iterated medians of the colour
//! differences) is not part of this op: follow it with
//! `false_color_suppress` for that.
//!
//! Input: a mosaic, normalised (1.0 = white, the units the CIELAB step
//! assumes) or in DN (scaled by 1 / white level for the CIELAB step only),
//! white balance applied upstream for meaningful colour distances (the
//! pipelines' order). Output: planar camera RGB, same size, same units.
//! Runs on 2-D tiles with a 6-pixel mirrored halo, which covers the
//! method's 5-pixel dependency radius; rayon runs the row bands in
//! parallel.
//!
//! Cost (`rawgraph bench --synthetic 4000x3000 -p
//! pipelines/libraw_like.yaml`, 1 thread, AMD EPYC under load 6): 2.65 s
//! per 12 MP frame (3.1 s with `f32::cbrt` instead of the CIELAB table).

use serde::Deserialize;

use super::demosaic_bilinear::{demosaiced, infer_demosaic};
use super::row_kernel::{DemosaicFn, Header, RowKernel, RowShape};
use super::{mosaic_ref, parse_params, RunCtx, Stage};
use crate::backend::cpu::{
    demosaic_band_tiles, demosaic_tiles_scratch, scratch_plane as plane, Tile, TileScratch,
};
use crate::color::{self, Mat3};
use crate::error::{Error, Result};
use crate::frame::{MosaicScale, Value, ValueDesc};
use crate::raw::RawMeta;

/// YAML params of `demosaic_ahd` (none: the paper's thresholds adapt per
/// pixel).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `demosaic_ahd` op.
#[derive(Debug)]
pub struct DemosaicAhd;

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let _: Params = parse_params(params)?;
    Ok(Box::new(DemosaicAhd))
}

/// Halo (pixels, even) covering the dependency radius (5) of the method:
/// green 2, red/blue 3, homogeneity 4, its 3x3 sum 5.
const HALO: usize = 6;
/// Output rows per strip (one rayon task).
const STRIP: usize = 32;
/// Output columns per tile within a strip (keeps a tile's planes in L2).
const TILE_W: usize = 256;

/// Camera RGB (in the mosaic's units) -> XYZ relative to the D65 white
/// (X / Xn, Y / Yn, Z / Zn), row-major: the frame's camera -> sRGB matrix
/// (identity when the frame has none or it is singular: it only steers
/// the direction choice), sRGB -> XYZ, the white point, and 1 / white
/// level for a DN mosaic.
fn lab_matrix(meta: &RawMeta, scale: MosaicScale) -> Mat3 {
    let cam = meta.camera_to_srgb().unwrap_or(color::IDENTITY);
    let mut m = color::mul(&color::SRGB_TO_XYZ, &cam);
    let k = match scale {
        MosaicScale::Normalized => 1.0,
        MosaicScale::Dn => 1.0 / meta.white.iter().copied().fold(1.0f32, f32::max),
    };
    for (row, white) in m.iter_mut().zip(color::D65) {
        for v in row.iter_mut() {
            *v *= k / white;
        }
    }
    m
}

impl Stage for DemosaicAhd {
    fn op(&self) -> &'static str {
        "demosaic_ahd"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        infer_demosaic(inputs)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs.first().ok_or_else(|| Error::invalid("no input"))?;
        let m = mosaic_ref(v)?;
        let lab = lab_matrix(&m.meta, m.scale);
        let data = demosaic_tiles_scratch(m, HALO, STRIP, TILE_W, |t, s: &mut Scratch| {
            ahd_tile(t, &lab, s)
        });
        Ok(demosaiced(m, data))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: HALO,
            row_align: 2,
        })
    }

    /// Fused: each full-width band tile of [`STRIP`] rows is worked in
    /// [`TILE_W`]-column tiles by the same [`ahd_tile`] as `run_cpu`;
    /// every output pixel depends only on the mosaic within [`HALO`]
    /// pixels of it, so both paths give the same pixels.
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let out = input.demosaiced()?;
        let scale = match input.kind {
            super::row_kernel::HeaderKind::Mosaic { scale, .. } => scale,
            super::row_kernel::HeaderKind::Image { .. } => {
                return Err(Error::invalid("demosaic_ahd: expected a mosaic"))
            }
        };
        let lab = lab_matrix(&input.meta, scale);
        let f: DemosaicFn = Box::new(move |band, out| {
            SCRATCH.with(|s| {
                let (scratch, buf) = &mut *s.borrow_mut();
                demosaic_band_tiles(band, TILE_W, |t, s| ahd_tile(t, &lab, s), scratch, buf, out)
            })
        });
        Ok(Some((
            RowKernel::Demosaic {
                halo: HALO,
                strip_rows: STRIP,
                f,
            },
            out,
        )))
    }
}

thread_local! {
    /// Per-thread planes of the fused kernel and its column-tile buffer,
    /// reused across strips and frames (no allocation per strip).
    static SCRATCH: std::cell::RefCell<(Scratch, Vec<f32>)> =
        std::cell::RefCell::new((Scratch::default(), Vec::new()));
}

/// Per-tile planes, each `tile.w * tile.h` row-major, reused from tile to
/// tile; index 0 is the horizontal direction, 1 the vertical.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Green interpolated along rows / columns (step 1).
    green: [Vec<f32>; 2],
    /// The two candidate images, R, G, B planes each (step 2).
    rgb: [[Vec<f32>; 3]; 2],
    /// Their CIELAB L*, a*, b* (step 3).
    lab: [[Vec<f32>; 3]; 2],
    /// Homogeneity: neighbours (0..=4) within both thresholds (step 4).
    hom: [Vec<u8>; 2],
    /// Output planes.
    out: [Vec<f32>; 3],
}

impl TileScratch for Scratch {
    fn planes(&self) -> [&[f32]; 3] {
        [&self.out[0], &self.out[1], &self.out[2]]
    }
}

/// CIELAB's companding `f(t)` (CIE 15): cube root above (6/29)^3, linear
/// below.
#[inline(always)]
fn lab_f_exact(t: f32) -> f32 {
    if t > 0.008_856 {
        t.cbrt()
    } else {
        7.787 * t + 16.0 / 116.0
    }
}

/// Entries per unit of `t` in [`lab_lut`].
const LUT_N: usize = 4096;

/// `lab_f_exact` at `t = i / LUT_N`, `i` in `0..=LUT_N + 1` (the cube root
/// is most of the method's arithmetic otherwise).
fn lab_lut() -> &'static [f32] {
    static LUT: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    LUT.get_or_init(|| {
        (0..=LUT_N + 1)
            .map(|i| lab_f_exact(i as f32 / LUT_N as f32))
            .collect()
    })
}

/// [`lab_f_exact`], by linear interpolation in `lut` ([`lab_lut`]) for
/// `t` in `[0, 1)` (error below 1e-5, i.e. 0.001 in L*; checked by a
/// test), exactly elsewhere.
#[inline(always)]
fn lab_f(t: f32, lut: &[f32]) -> f32 {
    if (0.0..1.0).contains(&t) {
        let p = t * LUT_N as f32;
        let i = (p as usize).min(LUT_N);
        let fr = p - i as f32;
        lut[i] + fr * (lut[i + 1] - lut[i])
    } else {
        lab_f_exact(t)
    }
}

/// Squared a*b* distance between pixels `i` and `j` of one CIELAB image.
#[inline(always)]
fn chroma2(a: &[f32], b: &[f32], i: usize, j: usize) -> f32 {
    let (da, db) = (a[i] - a[j], b[i] - b[j]);
    da * da + db * db
}

/// Demosaics one padded tile into `s.out` (full tile size; values valid
/// from 5 pixels in from every side, which the 6-pixel halo covers).
/// Each step runs over the region its inputs are valid in: green 2 in
/// from the tile border, the candidates and their CIELAB 3, homogeneity
/// 4, the choice 5; nothing outside those regions is read.
fn ahd_tile(t: &Tile, lab_m: &Mat3, s: &mut Scratch) {
    let (w, h) = (t.w, t.h);
    let n = w * h;
    let d = &t.data;
    // Tiles are at least 2 * HALO + 1 = 13 pixels on each side.
    debug_assert!(w > 2 * HALO && h > 2 * HALO);
    let color = |y: usize, x: usize| t.cfa.color_at(y, x);
    let lut = lab_lut();

    // Step 1: the two green planes.
    for (dir, g) in s.green.iter_mut().enumerate() {
        let g = plane(g, n);
        let step = if dir == 0 { 1 } else { w };
        for y in 2..h - 2 {
            for x in 2..w - 2 {
                let i = y * w + x;
                g[i] = if color(y, x) == 1 {
                    d[i]
                } else {
                    let (g0, g1) = (d[i - step], d[i + step]);
                    let est =
                        0.5 * (g0 + g1) + 0.25 * (2.0 * d[i] - d[i - 2 * step] - d[i + 2 * step]);
                    est.clamp(g0.min(g1), g0.max(g1))
                };
            }
        }
    }

    // Steps 2 and 3: red and blue from each direction's colour
    // differences, then CIELAB.
    for dir in 0..2 {
        let g = &s.green[dir];
        let [pr, pg, pb] = &mut s.rgb[dir];
        let (pr, pg, pb) = (plane(pr, n), plane(pg, n), plane(pb, n));
        let [pl, pa, pbb] = &mut s.lab[dir];
        let (pl, pa, pbb) = (plane(pl, n), plane(pa, n), plane(pbb, n));
        for y in 3..h - 3 {
            for x in 3..w - 3 {
                let i = y * w + x;
                let gc = g[i];
                // Colour difference at a neighbour (a native red/blue site).
                let diff = |j: usize| d[j] - g[j];
                let (r, b) = match color(y, x) {
                    1 => {
                        // Green site: the colour of this row from its two
                        // horizontal neighbours, the other from the two
                        // vertical ones.
                        let hd = 0.5 * (diff(i - 1) + diff(i + 1));
                        let vd = 0.5 * (diff(i - w) + diff(i + w));
                        if color(y, x + 1) == 0 {
                            (gc + hd, gc + vd)
                        } else {
                            (gc + vd, gc + hd)
                        }
                    }
                    c => {
                        let other = gc
                            + 0.25
                                * (diff(i - w - 1)
                                    + diff(i - w + 1)
                                    + diff(i + w - 1)
                                    + diff(i + w + 1));
                        if c == 0 {
                            (d[i], other)
                        } else {
                            (other, d[i])
                        }
                    }
                };
                pr[i] = r;
                pg[i] = gc;
                pb[i] = b;
                let [fx, fy, fz] = color::apply(lab_m, [r, gc, b]).map(|t| lab_f(t, lut));
                pl[i] = 116.0 * fy - 16.0;
                pa[i] = 500.0 * (fx - fy);
                pbb[i] = 200.0 * (fy - fz);
            }
        }
    }

    // Step 4: homogeneity with the adaptive thresholds.
    {
        let [lh, ah, bh] = &s.lab[0];
        let [lv, av, bv] = &s.lab[1];
        let [hh, hv] = &mut s.hom;
        hh.resize(n, 0);
        hv.resize(n, 0);
        for y in 4..h - 4 {
            for x in 4..w - 4 {
                let i = y * w + x;
                let (l, r, u, dn) = (i - 1, i + 1, i - w, i + w);
                let eps_l = f32::max((lh[i] - lh[l]).abs(), (lh[i] - lh[r]).abs())
                    .min(f32::max((lv[i] - lv[u]).abs(), (lv[i] - lv[dn]).abs()));
                let eps_c = f32::max(chroma2(ah, bh, i, l), chroma2(ah, bh, i, r))
                    .min(f32::max(chroma2(av, bv, i, u), chroma2(av, bv, i, dn)));
                let count = |pl: &[f32], pa: &[f32], pb: &[f32]| -> u8 {
                    [l, r, u, dn]
                        .iter()
                        .map(|&j| {
                            u8::from(
                                (pl[i] - pl[j]).abs() <= eps_l && chroma2(pa, pb, i, j) <= eps_c,
                            )
                        })
                        .sum()
                };
                hh[i] = count(lh, ah, bh);
                hv[i] = count(lv, av, bv);
            }
        }
    }

    // Step 5: the direction more homogeneous over the 3x3 window.
    let [hh, hv] = &s.hom;
    let [[rh, gh, bh], [rv, gv, bv]] = &s.rgb;
    let [or, og, ob] = &mut s.out;
    let (or, og, ob) = (plane(or, n), plane(og, n), plane(ob, n));
    for y in 5..h - 5 {
        for x in 5..w - 5 {
            let i = y * w + x;
            let (mut sh, mut sv) = (0u32, 0u32);
            for j in [i - w, i, i + w] {
                for k in [j - 1, j, j + 1] {
                    sh += u32::from(hh[k]);
                    sv += u32::from(hv[k]);
                }
            }
            let (r, g, b) = match sh.cmp(&sv) {
                std::cmp::Ordering::Greater => (rh[i], gh[i], bh[i]),
                std::cmp::Ordering::Less => (rv[i], gv[i], bv[i]),
                std::cmp::Ordering::Equal => (
                    0.5 * (rh[i] + rv[i]),
                    0.5 * (gh[i] + gv[i]),
                    0.5 * (bh[i] + bv[i]),
                ),
            };
            or[i] = r;
            og[i] = g;
            ob[i] = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::demosaic_tiles;
    use crate::frame::{Image, Mosaic};
    use crate::raw::CfaPattern;
    use crate::stages::demosaic_testing::{assert_flat_fields_exact, mosaic_of, mse, run_op};

    fn run(m: Mosaic) -> Image {
        run_op("demosaic_ahd", serde_json::Value::Null, m)
    }

    #[test]
    fn flat_colour_fields_are_exact_in_every_phase_and_odd_sizes() {
        assert_flat_fields_exact("demosaic_ahd", 1e-5);
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
                    assert_eq!(p[c][y * 33 + x], raw[y * 33 + x], "{cfa:?} ({x}, {y})");
                }
            }
        }
    }

    /// Horizontal and vertical stripes (one direction's interpolation is
    /// right, the other's crosses every edge), a steep and a diagonal
    /// edge, and a smooth colour ramp: in every phase the homogeneity
    /// picks the right direction, well below bilinear's error.
    #[test]
    fn edges_beat_bilinear_in_every_phase() {
        type Scene<'a> = &'a dyn Fn(usize, usize) -> [f32; 3];
        let scenes: [(&str, Scene); 5] = [
            ("vertical stripes", &|x, _| {
                let v = if (x / 3) % 2 == 0 { 0.8 } else { 0.2 };
                [v, v * 0.9, v * 0.7]
            }),
            ("horizontal stripes", &|_, y| {
                let v = if (y / 3) % 2 == 0 { 0.75 } else { 0.15 };
                [v * 0.6, v, v * 0.8]
            }),
            ("steep edge", &|x, y| {
                if x * 4 + y > 150 {
                    [0.7, 0.6, 0.45]
                } else {
                    [0.2, 0.15, 0.1]
                }
            }),
            ("diagonal edge", &|x, y| {
                if x + y > 56 {
                    [0.7, 0.6, 0.45]
                } else {
                    [0.2, 0.15, 0.1]
                }
            }),
            ("ramp", &|x, y| {
                let (xf, yf) = (x as f32 / 64.0, y as f32 / 48.0);
                [0.2 + 0.6 * xf, 0.3 + 0.4 * yf, 0.5 + 0.3 * (xf - yf)]
            }),
        ];
        for cfa in CfaPattern::ALL {
            for (name, scene) in scenes {
                let ahd = mse(&run(mosaic_of(scene, 64, 48, cfa)), scene, 4);
                let bil = mse(
                    &run_op(
                        "demosaic_bilinear",
                        serde_json::Value::Null,
                        mosaic_of(scene, 64, 48, cfa),
                    ),
                    scene,
                    4,
                );
                if name == "ramp" {
                    // Linear in x and y: both exact up to rounding.
                    assert!(ahd < 1e-9, "{cfa:?} {name}: {ahd}");
                } else {
                    // Measured: 0.03-0.2 of bilinear's error.
                    assert!(
                        ahd < 0.25 * bil,
                        "{cfa:?} {name}: ahd {ahd} vs bilinear {bil}"
                    );
                }
            }
        }
    }

    /// Strips and column tiles much smaller than the shipped ones (a short
    /// last strip, a narrow last tile) give the bits of one tile holding
    /// the whole frame: the halo covers the dependency radius. The fused
    /// band path is the same function on the same samples.
    #[test]
    fn tiling_does_not_change_the_bits() {
        let scene = |x: usize, y: usize| -> [f32; 3] {
            let (xf, yf) = (x as f32, y as f32);
            let v = 0.5 + 0.4 * (xf * 0.37 + yf * yf * 0.011).sin();
            let edge = if x * 2 + y > 180 { 0.3 } else { 0.0 };
            [v * 0.8 + edge, 0.6 * v + 0.1, (1.0 - v) * 0.7 + edge * 0.5]
        };
        for cfa in CfaPattern::ALL {
            let m = mosaic_of(&scene, 230, 150, cfa);
            let lab = lab_matrix(&m.meta, m.scale);
            let tile = |t: &Tile| {
                let mut s = Scratch::default();
                ahd_tile(t, &lab, &mut s);
                s.out
            };
            let whole = demosaic_tiles(&m, HALO, 1 << 20, 1 << 20, tile);
            let tiled = demosaic_tiles(&m, HALO, 14, 18, tile);
            let shipped = run(m).data;
            assert_eq!(whole.len(), tiled.len());
            for (i, ((a, b), c)) in whole.iter().zip(&tiled).zip(&shipped).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{cfa:?} sample {i}: {a} vs {b}");
                assert_eq!(a.to_bits(), c.to_bits(), "{cfa:?} sample {i}: {a} vs {c}");
            }
        }
    }

    #[test]
    fn the_lab_table_is_within_1e5_of_the_cube_root() {
        let lut = lab_lut();
        for i in -1000..=1_200_000 {
            let t = i as f32 * 1e-6;
            let (a, b) = (lab_f(t, lut), lab_f_exact(t));
            assert!((a - b).abs() < 1e-5, "t {t}: {a} vs {b}");
        }
    }

    #[test]
    fn params_are_checked() {
        assert!(compile(serde_json::json!({ "radius": 2 })).is_err());
        assert!(compile(serde_json::Value::Null).is_ok());
    }
}
