//! DNG OpcodeList2 MapPolynomial (opcode 8), which rawler does not apply,
//! and GainMap (opcode 9), parsed here and applied by the `lens_shading`
//! stage.
//!
//! DNG 1.4 spec, chapter 7: OpcodeList2 runs on the raw data once it is
//! mapped to linear reference values (black removed, white = 1);
//! MapPolynomial replaces each value x of an area / plane range by
//! sum_k c_k x^k, clipped to [0, 1]. DNG converters store 8-bit lossy
//! LinearRaw data gamma-encoded and white-balanced and use one polynomial
//! per plane to map it back (the LG G4 sample: x^3-like curves whose ends,
//! 0.51 / 1.0 / 0.71, are the as-shot neutral); skipping it renders such a
//! file too bright and balanced twice (magenta).
//!
//! Layout (big-endian): u32 count, then per opcode u32 id, u32 version,
//! u32 flags, u32 byte count, parameters. MapPolynomial parameters: u32
//! top, left, bottom, right, plane, planes, row pitch, column pitch,
//! degree, then (degree + 1) f64 coefficients. Other opcodes are left
//! alone (their ids are returned by [`parse`]).
//!
//! GainMap parameters (DNG 1.4 spec, 7.4; 76 bytes + 4 per gain): u32
//! top, left, bottom, right, plane, planes, row pitch, column pitch, map
//! points v, map points h; f64 map spacing v, h, map origin v, h; u32 map
//! planes; then points_v * points_h * map_planes f32 gains, row-major with
//! the map plane fastest. See [`GainMap`] for the coordinates.

use serde::{Deserialize, Serialize};

/// The area an opcode works on (the first eight parameters of the
/// MapPolynomial and GainMap opcodes): rows `top..bottom` stepping by
/// `row_pitch`, columns `left..right` stepping by `col_pitch`, planes
/// `plane..plane + planes`, in pixels of the stage-2 image (the active
/// area). Pitches are at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpcodeArea {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
    pub plane: usize,
    pub planes: usize,
    pub row_pitch: usize,
    pub col_pitch: usize,
}

impl OpcodeArea {
    /// Bytes of the eight big-endian u32 parameters.
    pub const BYTES: usize = 32;

    /// Reads the eight parameters at the start of `p`; `None` if truncated.
    fn read(p: &[u8]) -> Option<OpcodeArea> {
        let u = |k: usize| be32(p, 4 * k).map(|v| v as usize);
        Some(OpcodeArea {
            top: u(0)?,
            left: u(1)?,
            bottom: u(2)?,
            right: u(3)?,
            plane: u(4)?,
            planes: u(5)?,
            row_pitch: u(6)?.max(1),
            col_pitch: u(7)?.max(1),
        })
    }

    /// The eight parameters as big-endian u32s.
    fn write(&self, b: &mut Vec<u8>) {
        for v in [
            self.top,
            self.left,
            self.bottom,
            self.right,
            self.plane,
            self.planes,
            self.row_pitch,
            self.col_pitch,
        ] {
            b.extend((v as u32).to_be_bytes());
        }
    }
}

/// One MapPolynomial.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPolynomial {
    pub area: OpcodeArea,
    /// c_0 .. c_degree.
    pub coefficients: Vec<f64>,
}

/// One GainMap (opcode 9): gains on a grid, bilinearly interpolated and
/// multiplied into the samples of an area (the DNG SDK's
/// `dng_opcode_GainMap`, which clips the product at 1.0 = white).
///
/// Area: rows `top..bottom` stepping by `row_pitch`, columns
/// `left..right` stepping by `col_pitch`, planes `plane..plane + planes`
/// (a Bayer mosaic has one plane, 0; phones and Adobe's converter write
/// four maps with pitch 2, one per CFA site). Pixel coordinates are those
/// of the stage-2 image (the active area).
///
/// Map: point (i, j) sits at relative position (`origin_v + i *
/// spacing_v`, `origin_h + j * spacing_h`) of the whole image, where
/// relative position of the centre of pixel (row, col) is ((row + 0.5) /
/// height, (col + 0.5) / width). Outside the points the edge values hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GainMap {
    pub area: OpcodeArea,
    /// Map points vertically (rows of the grid), >= 1.
    pub points_v: usize,
    /// Map points horizontally (columns of the grid), >= 1.
    pub points_h: usize,
    /// Vertical distance between map rows, relative to the image height (> 0).
    pub spacing_v: f64,
    /// Horizontal distance between map columns, relative to the width (> 0).
    pub spacing_h: f64,
    /// Relative vertical position of map row 0.
    pub origin_v: f64,
    /// Relative horizontal position of map column 0.
    pub origin_h: f64,
    /// Planes of the map (>= 1); image plane p uses map plane
    /// min(p, map_planes - 1).
    pub map_planes: usize,
    /// points_v * points_h * map_planes gains (unitless multipliers),
    /// index `(i * points_h + j) * map_planes + p`.
    pub gains: Vec<f32>,
}

impl GainMap {
    /// Bytes of the parameters before the gains.
    pub const HEADER_BYTES: usize = 76;

    /// The gain at map point (i, j) of map plane `p` (indices clamped).
    pub fn at(&self, i: usize, j: usize, p: usize) -> f32 {
        let i = i.min(self.points_v.saturating_sub(1));
        let j = j.min(self.points_h.saturating_sub(1));
        let p = p.min(self.map_planes.saturating_sub(1));
        self.gains
            .get((i * self.points_h + j) * self.map_planes + p)
            .copied()
            .unwrap_or(1.0)
    }

    /// Four GainMaps of pitch 2 over a `width x height` mosaic, one per
    /// site (dy, dx) of the 2x2 CFA block, as phones and Adobe's converter
    /// write them: each a `rows x cols` grid (row-major, `grid(dy, dx)`)
    /// whose outer points lie on the image edges (origin 0, spacing
    /// 1 / (points - 1)).
    pub fn bayer_sites(
        width: usize,
        height: usize,
        (rows, cols): (usize, usize),
        grid: impl Fn(usize, usize) -> Vec<f32>,
    ) -> Vec<GainMap> {
        let spacing = |n: usize| 1.0 / (n.max(2) - 1) as f64;
        [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|&(dy, dx)| GainMap {
                area: OpcodeArea {
                    top: dy,
                    left: dx,
                    bottom: height,
                    right: width,
                    plane: 0,
                    planes: 1,
                    row_pitch: 2,
                    col_pitch: 2,
                },
                points_v: rows,
                points_h: cols,
                spacing_v: spacing(rows),
                spacing_h: spacing(cols),
                origin_v: 0.0,
                origin_h: 0.0,
                map_planes: 1,
                gains: grid(dy, dx),
            })
            .collect()
    }

    /// The opcode's parameter bytes (what [`parse_gain_maps`] reads back).
    pub fn to_params(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::HEADER_BYTES + 4 * self.gains.len());
        self.area.write(&mut b);
        for v in [self.points_v, self.points_h] {
            b.extend((v as u32).to_be_bytes());
        }
        for v in [self.spacing_v, self.spacing_h, self.origin_v, self.origin_h] {
            b.extend(v.to_be_bytes());
        }
        b.extend((self.map_planes as u32).to_be_bytes());
        for g in &self.gains {
            b.extend(g.to_be_bytes());
        }
        b
    }

    /// Reads one GainMap's parameters; `None` when they are truncated or
    /// invalid (no points, spacing <= 0, non-finite gains, size mismatch).
    fn from_params(p: &[u8]) -> Option<GainMap> {
        let u = |k: usize| be32(p, 4 * k).map(|v| v as usize);
        let f = |k: usize| be_f64(p, 40 + 8 * k).filter(|v| v.is_finite());
        let (points_v, points_h) = (u(8)?, u(9)?);
        let map_planes = be32(p, 72)? as usize;
        if points_v == 0 || points_h == 0 || map_planes == 0 {
            return None;
        }
        let n = points_v.checked_mul(points_h)?.checked_mul(map_planes)?;
        if p.len() != Self::HEADER_BYTES.checked_add(n.checked_mul(4)?)? {
            return None;
        }
        // As the DNG SDK: a single point along an axis has spacing 1,
        // origin 0.
        let (spacing_v, origin_v) = if points_v == 1 {
            (1.0, 0.0)
        } else {
            (f(0)?, f(2)?)
        };
        let (spacing_h, origin_h) = if points_h == 1 {
            (1.0, 0.0)
        } else {
            (f(1)?, f(3)?)
        };
        if spacing_v <= 0.0 || spacing_h <= 0.0 {
            return None;
        }
        let gains: Option<Vec<f32>> = (0..n)
            .map(|k| {
                let s = p.get(Self::HEADER_BYTES + 4 * k..Self::HEADER_BYTES + 4 * k + 4)?;
                Some(f32::from_be_bytes(s.try_into().ok()?)).filter(|g| g.is_finite())
            })
            .collect();
        Some(GainMap {
            area: OpcodeArea::read(p)?,
            points_v,
            points_h,
            spacing_v,
            spacing_h,
            origin_v,
            origin_h,
            map_planes,
            gains: gains?,
        })
    }
}

/// An opcode list holding `maps` as GainMap opcodes (DNG 1.3 opcode
/// version 1.3.0.0, flags 0), as a DNG writer stores OpcodeList2.
pub fn gain_map_list(maps: &[GainMap]) -> Vec<u8> {
    let mut b = (maps.len() as u32).to_be_bytes().to_vec();
    for m in maps {
        let p = m.to_params();
        for v in [9u32, 0x0103_0000, 0, p.len() as u32] {
            b.extend(v.to_be_bytes());
        }
        b.extend(p);
    }
    b
}

/// The GainMaps of an opcode list, in order. Malformed GainMaps are left
/// out; a malformed list ends the walk (what was read so far is kept).
pub fn parse_gain_maps(list: &[u8]) -> Vec<GainMap> {
    let mut out = Vec::new();
    walk(list, |id, params| {
        if id == 9 {
            if let Some(m) = GainMap::from_params(params) {
                out.push(m);
            }
        }
    });
    out
}

/// Calls `f(id, parameter bytes)` for each opcode of a list, in order; a
/// malformed list ends the walk.
fn walk(list: &[u8], mut f: impl FnMut(u32, &[u8])) {
    let Some(n) = be32(list, 0) else {
        return;
    };
    let mut pos = 4usize;
    for _ in 0..n.min(1024) {
        let (Some(id), Some(size)) = (be32(list, pos), be32(list, pos + 12)) else {
            break;
        };
        let p = pos + 16;
        let Some(next) = p.checked_add(size as usize).filter(|&e| e <= list.len()) else {
            break;
        };
        f(id, &list[p..next]);
        pos = next;
    }
}

fn be32(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be_f64(b: &[u8], o: usize) -> Option<f64> {
    let s = b.get(o..o.checked_add(8)?)?;
    Some(f64::from_be_bytes(s.try_into().ok()?))
}

/// The opcode ids of a list, in order (a malformed list ends the walk).
pub fn ids(list: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    walk(list, |id, _| out.push(id));
    out
}

/// The DNG spec's name of an opcode id.
pub fn name(id: u32) -> &'static str {
    match id {
        1 => "WarpRectilinear",
        2 => "WarpFisheye",
        3 => "FixVignetteRadial",
        4 => "FixBadPixelsConstant",
        5 => "FixBadPixelsList",
        6 => "TrimBounds",
        7 => "MapTable",
        8 => "MapPolynomial",
        9 => "GainMap",
        10 => "DeltaPerRow",
        11 => "DeltaPerColumn",
        12 => "ScalePerRow",
        13 => "ScalePerColumn",
        14 => "WarpRectilinear2",
        _ => "unknown",
    }
}

/// The MapPolynomials of an opcode list, and the ids of the opcodes that
/// are not MapPolynomial. Malformed lists end the parse (what was read so
/// far is kept).
pub fn parse(list: &[u8]) -> (Vec<MapPolynomial>, Vec<u32>) {
    let (mut maps, mut other) = (Vec::new(), Vec::new());
    walk(list, |id, p| {
        if id != 8 {
            other.push(id);
            return;
        }
        let (Some(area), Some(degree)) = (OpcodeArea::read(p), be32(p, OpcodeArea::BYTES)) else {
            return;
        };
        let degree = degree as usize;
        if degree > 8 || 36 + 8 * (degree + 1) > p.len() {
            return;
        }
        let coefficients: Option<Vec<f64>> = (0..=degree).map(|k| be_f64(p, 36 + 8 * k)).collect();
        if let Some(c) = coefficients.filter(|c| c.iter().all(|v| v.is_finite())) {
            maps.push(MapPolynomial {
                area,
                coefficients: c,
            });
        }
    });
    (maps, other)
}

/// Applies `maps` to interleaved samples in DN (`spp` per pixel, `w x h`),
/// mapping through the per-plane black and white levels.
pub fn apply(
    maps: &[MapPolynomial],
    data: &mut [f32],
    (w, h, spp): (usize, usize, usize),
    black: &dyn Fn(usize, usize) -> f32,
    white: [f32; 3],
) {
    for m in maps {
        let a = &m.area;
        for y in (a.top..a.bottom.min(h)).step_by(a.row_pitch) {
            for x in (a.left..a.right.min(w)).step_by(a.col_pitch) {
                let b = black(y, x);
                for p in a.plane..(a.plane + a.planes).min(spp) {
                    let i = (y * w + x) * spp + p;
                    let range = (white[p.min(2)] - b).max(1e-6);
                    let v = ((data[i] - b) / range) as f64;
                    let mut acc = 0.0;
                    for c in m.coefficients.iter().rev() {
                        acc = acc * v + c;
                    }
                    data[i] = b + acc.clamp(0.0, 1.0) as f32 * range;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_walk_the_whole_list() {
        // GainMap (4 parameter bytes), then an unknown opcode 99 (0 bytes),
        // then a truncated entry that ends the walk.
        let mut l: Vec<u8> = 3u32.to_be_bytes().to_vec();
        for (id, size) in [(9u32, 4u32), (99, 0)] {
            for v in [id, 1, 0, size] {
                l.extend(v.to_be_bytes());
            }
            l.extend(vec![0u8; size as usize]);
        }
        l.extend(8u32.to_be_bytes());
        assert_eq!(ids(&l), vec![9, 99]);
        assert_eq!(name(9), "GainMap");
        assert_eq!(name(99), "unknown");
        assert!(ids(&[0, 0]).is_empty());
    }

    fn list(coeffs: &[f64], plane: u32) -> Vec<u8> {
        let mut b = 1u32.to_be_bytes().to_vec();
        for v in [8u32, 0x0103_0000, 0, 36 + 8 * coeffs.len() as u32] {
            b.extend(v.to_be_bytes());
        }
        for v in [0u32, 0, 2, 2, plane, 1, 1, 1, coeffs.len() as u32 - 1] {
            b.extend(v.to_be_bytes());
        }
        for c in coeffs {
            b.extend(c.to_be_bytes());
        }
        b
    }

    #[test]
    fn cubic_on_one_plane() {
        let (maps, other) = parse(&list(&[0.0, 0.0, 0.0, 1.0], 1));
        assert!(other.is_empty());
        assert_eq!(maps.len(), 1);
        // 2x2 RGB, black 0, white 100: plane 1 x -> x^3.
        let mut d = vec![50.0f32; 12];
        apply(&maps, &mut d, (2, 2, 3), &|_, _| 0.0, [100.0; 3]);
        assert_eq!(d[0], 50.0);
        assert!((d[1] - 12.5).abs() < 1e-4, "{d:?}");
        assert_eq!(d[2], 50.0);
    }

    #[test]
    fn truncated_lists_never_panic() {
        let l = list(&[0.1, 0.9], 0);
        for cut in 0..l.len() {
            let _ = parse(&l[..cut]);
        }
    }

    /// A GainMap opcode written out field by field (not through
    /// `to_params`), after a MapPolynomial that must be skipped.
    fn hand_built_gain_map_list() -> Vec<u8> {
        let mut l = 2u32.to_be_bytes().to_vec();
        l.extend(&list(&[0.0, 1.0], 0)[4..]);
        let gains = [1.0f32, 1.5, 2.0, 1.25, 1.75, 2.5];
        for v in [9u32, 0x0103_0000, 0, 76 + 4 * gains.len() as u32] {
            l.extend(v.to_be_bytes());
        }
        // top left bottom right plane planes rowpitch colpitch pv ph
        for v in [1u32, 0, 100, 200, 0, 1, 2, 2, 2, 3] {
            l.extend(v.to_be_bytes());
        }
        for v in [1.0f64, 0.5, 0.0, 0.0] {
            l.extend(v.to_be_bytes());
        }
        l.extend(1u32.to_be_bytes());
        for g in gains {
            l.extend(g.to_be_bytes());
        }
        l
    }

    #[test]
    fn gain_map_parsed_from_hand_built_bytes() {
        let l = hand_built_gain_map_list();
        assert_eq!(ids(&l), vec![8, 9]);
        let maps = parse_gain_maps(&l);
        assert_eq!(maps.len(), 1);
        let m = &maps[0];
        let a = &m.area;
        assert_eq!((a.top, a.left, a.bottom, a.right), (1, 0, 100, 200));
        assert_eq!((a.plane, a.planes, a.row_pitch, a.col_pitch), (0, 1, 2, 2));
        assert_eq!((m.points_v, m.points_h, m.map_planes), (2, 3, 1));
        assert_eq!((m.spacing_v, m.spacing_h), (1.0, 0.5));
        assert_eq!((m.origin_v, m.origin_h), (0.0, 0.0));
        // Row-major: row 1, column 2 is the last gain.
        assert_eq!(m.at(1, 2, 0), 2.5);
        assert_eq!(m.at(0, 1, 0), 1.5);
        // The MapPolynomial walk is unaffected; the GainMap is "other".
        let (polys, other) = parse(&l);
        assert_eq!((polys.len(), other), (1, vec![9]));
        // Writing it back gives the same bytes.
        assert_eq!(gain_map_list(&maps)[4..], l[4 + 16 + 52..]);
    }

    #[test]
    fn bad_gain_maps_are_dropped_never_panic() {
        let l = hand_built_gain_map_list();
        for cut in 0..l.len() {
            let maps = parse_gain_maps(&l[..cut]);
            assert!(maps.is_empty(), "cut {cut}");
        }
        // Zero spacing with two points along an axis: dropped.
        let mut m = parse_gain_maps(&l).remove(0);
        m.spacing_h = 0.0;
        assert!(parse_gain_maps(&gain_map_list(&[m.clone()])).is_empty());
        // A NaN gain: dropped.
        m.spacing_h = 0.5;
        m.gains[3] = f32::NAN;
        assert!(parse_gain_maps(&gain_map_list(&[m])).is_empty());
    }
}
