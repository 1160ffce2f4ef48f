//! DNG OpcodeList2 MapPolynomial (opcode 8), which rawler does not apply.
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
//! alone (listed by [`unsupported`]).

/// One MapPolynomial.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPolynomial {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
    pub plane: usize,
    pub planes: usize,
    pub row_pitch: usize,
    pub col_pitch: usize,
    /// c_0 .. c_degree.
    pub coefficients: Vec<f64>,
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
    let Some(n) = be32(list, 0) else {
        return out;
    };
    let mut pos = 4usize;
    for _ in 0..n.min(1024) {
        let (Some(id), Some(size)) = (be32(list, pos), be32(list, pos + 12)) else {
            break;
        };
        let Some(next) = (pos + 16)
            .checked_add(size as usize)
            .filter(|&e| e <= list.len())
        else {
            break;
        };
        out.push(id);
        pos = next;
    }
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
    let Some(n) = be32(list, 0) else {
        return (maps, other);
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
        if id == 8 {
            let u = |k: usize| be32(list, p + 4 * k).map(|v| v as usize);
            let fields: Option<Vec<usize>> = (0..9).map(u).collect();
            if let Some(f) = fields {
                let degree = f[8];
                if degree <= 8 && 36 + 8 * (degree + 1) <= size as usize {
                    let coefficients: Option<Vec<f64>> =
                        (0..=degree).map(|k| be_f64(list, p + 36 + 8 * k)).collect();
                    if let Some(c) = coefficients.filter(|c| c.iter().all(|v| v.is_finite())) {
                        maps.push(MapPolynomial {
                            top: f[0],
                            left: f[1],
                            bottom: f[2],
                            right: f[3],
                            plane: f[4],
                            planes: f[5],
                            row_pitch: f[6].max(1),
                            col_pitch: f[7].max(1),
                            coefficients: c,
                        });
                    }
                }
            }
        } else {
            other.push(id);
        }
        pos = next;
    }
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
        for y in (m.top..m.bottom.min(h)).step_by(m.row_pitch) {
            for x in (m.left..m.right.min(w)).step_by(m.col_pitch) {
                let b = black(y, x);
                for p in m.plane..(m.plane + m.planes).min(spp) {
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
}
