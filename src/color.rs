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
    fn srgb_transfer_roundtrip() {
        for i in 0..=100 {
            let v = i as f32 / 100.0;
            assert!((srgb_decode(srgb_encode(v)) - v).abs() < 1e-5);
        }
    }
}
