//! Colour maths shared by stages and tools: 3x3 matrices, sRGB transfer
//! functions, white points and Bradford adaptation.

/// A row-major 3x3 matrix.
pub type Mat3 = [[f32; 3]; 3];

/// Linear sRGB (D65) -> CIE XYZ (D65), IEC 61966-2-1.
pub const SRGB_TO_XYZ: Mat3 = [
    [0.412_456_4, 0.357_576_1, 0.180_437_5],
    [0.212_672_9, 0.715_152_2, 0.072_175],
    [0.019_333_9, 0.119_192, 0.950_304_1],
];

/// D65 white point, XYZ with Y = 1.
pub const D65: [f32; 3] = [0.950_47, 1.0, 1.088_83];
/// D50 white point, XYZ with Y = 1.
pub const D50: [f32; 3] = [0.964_22, 1.0, 0.825_21];

/// Bradford cone response matrix.
const BRADFORD: Mat3 = [
    [0.8951, 0.2664, -0.1614],
    [-0.7502, 1.7135, 0.0367],
    [0.0389, -0.0685, 1.0296],
];

/// The identity matrix.
pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Matrix product `a * b`.
pub fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut o = [[0f32; 3]; 3];
    for (i, row) in o.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    o
}

/// Matrix times vector.
#[inline(always)]
pub fn apply(m: &Mat3, v: [f32; 3]) -> [f32; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

/// Inverse of a 3x3 matrix; `None` when (nearly) singular.
pub fn invert(m: &Mat3) -> Option<Mat3> {
    let m64 = |i: usize, j: usize| m[i][j] as f64;
    let c00 = m64(1, 1) * m64(2, 2) - m64(1, 2) * m64(2, 1);
    let c01 = m64(1, 2) * m64(2, 0) - m64(1, 0) * m64(2, 2);
    let c02 = m64(1, 0) * m64(2, 1) - m64(1, 1) * m64(2, 0);
    let det = m64(0, 0) * c00 + m64(0, 1) * c01 + m64(0, 2) * c02;
    let scale = m
        .iter()
        .flatten()
        .map(|v| v.abs() as f64)
        .fold(0.0, f64::max);
    if !det.is_finite() || det.abs() <= 1e-12 * scale.powi(3).max(1e-30) {
        return None;
    }
    let inv = [
        [
            c00,
            m64(0, 2) * m64(2, 1) - m64(0, 1) * m64(2, 2),
            m64(0, 1) * m64(1, 2) - m64(0, 2) * m64(1, 1),
        ],
        [
            c01,
            m64(0, 0) * m64(2, 2) - m64(0, 2) * m64(2, 0),
            m64(0, 2) * m64(1, 0) - m64(0, 0) * m64(1, 2),
        ],
        [
            c02,
            m64(0, 1) * m64(2, 0) - m64(0, 0) * m64(2, 1),
            m64(0, 0) * m64(1, 1) - m64(0, 1) * m64(1, 0),
        ],
    ];
    let mut o = [[0f32; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            o[i][j] = (inv[i][j] / det) as f32;
        }
    }
    Some(o)
}

/// Scales each row so it sums to 1 (white maps to white).
pub fn normalize_rows(m: &Mat3) -> Mat3 {
    let mut o = *m;
    for row in o.iter_mut() {
        let s: f32 = row.iter().sum();
        if s.abs() > 1e-8 {
            row.iter_mut().for_each(|v| *v /= s);
        }
    }
    o
}

/// Camera RGB -> linear sRGB (D65) from a DNG ColorMatrix (`xyz_to_cam`,
/// XYZ -> camera), as dcraw builds it: cam_from_srgb = ColorMatrix x
/// sRGB_to_XYZ with rows normalised to sum 1 (white-balanced camera white
/// maps to sRGB white), inverted. `None` when that matrix is singular.
pub fn camera_to_srgb(xyz_to_cam: &Mat3) -> Option<Mat3> {
    let cam_from_srgb = normalize_rows(&mul(xyz_to_cam, &SRGB_TO_XYZ));
    invert(&cam_from_srgb)
}

/// Bradford chromatic adaptation matrix (XYZ -> XYZ) from white `src` to
/// white `dst` (XYZ, Y = 1).
pub fn bradford(src: [f32; 3], dst: [f32; 3]) -> Mat3 {
    let s = apply(&BRADFORD, src);
    let d = apply(&BRADFORD, dst);
    let diag = [
        [d[0] / s[0], 0.0, 0.0],
        [0.0, d[1] / s[1], 0.0],
        [0.0, 0.0, d[2] / s[2]],
    ];
    let inv = invert(&BRADFORD).unwrap_or(IDENTITY);
    mul(&inv, &mul(&diag, &BRADFORD))
}

/// sRGB transfer function (linear -> encoded), input clamped to [0, 1].
#[inline]
pub fn srgb_encode(v: f32) -> f32 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.003_130_8 {
        12.92 * v
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// Inverse sRGB transfer function (encoded -> linear).
#[inline]
pub fn srgb_decode(v: f32) -> f32 {
    if v <= 0.040_45 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// Correlated colour temperature in kelvin of a CIE 1931 chromaticity
/// (x, y), McCamy's cubic (McCamy 1992; within ~2 K of the exact CCT on
/// the Planckian locus from 2,856 to 6,504 K). `None` for a degenerate
/// input (y = 0.1858, non-finite).
pub fn cct_from_xy(x: f32, y: f32) -> Option<f32> {
    let d = 0.1858 - y;
    if !x.is_finite() || !y.is_finite() || d.abs() < 1e-9 {
        return None;
    }
    let n = (x - 0.3320) / d;
    let t = 449.0 * n * n * n + 3525.0 * n * n + 6823.3 * n + 5520.33;
    t.is_finite().then_some(t)
}

/// Chromaticity (x, y) of an XYZ colour; `None` when X + Y + Z is not
/// positive.
pub fn xy_of(xyz: [f32; 3]) -> Option<(f32, f32)> {
    let s = xyz[0] + xyz[1] + xyz[2];
    (s.is_finite() && s > 1e-12).then(|| (xyz[0] / s, xyz[1] / s))
}

/// Rec.709 / sRGB luminance of linear RGB.
#[inline(always)]
pub fn luminance(r: f32, g: f32, b: f32) -> f32 {
    0.2126 * r + 0.7152 * g + 0.0722 * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_roundtrip() {
        let inv = invert(&SRGB_TO_XYZ).unwrap();
        let id = mul(&SRGB_TO_XYZ, &inv);
        for i in 0..3 {
            for j in 0..3 {
                assert!((id[i][j] - IDENTITY[i][j]).abs() < 1e-5);
            }
        }
        assert!(invert(&[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 0.0, 1.0]]).is_none());
    }

    #[test]
    fn bradford_maps_white_to_white() {
        let m = bradford(D50, D65);
        let w = apply(&m, D50);
        for c in 0..3 {
            assert!((w[c] - D65[c]).abs() < 1e-4, "{w:?}");
        }
    }

    #[test]
    fn mccamy_cct_of_standard_whites() {
        for (xyz, cct) in [(D65, 6504.0), (D50, 5003.0)] {
            let (x, y) = xy_of(xyz).unwrap();
            let t = cct_from_xy(x, y).unwrap();
            assert!((t - cct).abs() < 15.0, "{t} vs {cct}");
        }
        // Illuminant A, x = 0.44757, y = 0.40745: 2856 K.
        let t = cct_from_xy(0.44757, 0.40745).unwrap();
        assert!((t - 2856.0).abs() < 5.0, "{t}");
        assert!(cct_from_xy(0.3, 0.1858).is_none());
        assert!(xy_of([0.0; 3]).is_none());
    }

    #[test]
    fn srgb_transfer_roundtrip() {
        for i in 0..=100 {
            let v = i as f32 / 100.0;
            assert!((srgb_decode(srgb_encode(v)) - v).abs() < 1e-5);
        }
    }
}
