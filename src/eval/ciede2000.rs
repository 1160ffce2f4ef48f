//! CIEDE2000 colour difference (CIE 142-2001), implemented after Sharma,
//! Wu & Dalal, "The CIEDE2000 Color-Difference Formula: Implementation
//! Notes, Supplementary Test Data, and Mathematical Observations" (Color
//! Research & Application, 2005), with kL = kC = kH = 1.
//!
//! Images are 8-bit sRGB (IEC 61966-2-1); they are decoded to linear RGB,
//! converted to XYZ (D65) and to CIELAB relative to the D65 white.

use super::metrics::Rgb8;
use crate::error::{Error, Result};

/// CIELAB (L*, a*, b*).
pub type Lab = [f64; 3];

/// D65 white, XYZ with Y = 1 (same as [`crate::color::D65`]).
const WHITE: [f64; 3] = [0.950_47, 1.0, 1.088_83];

fn srgb_to_linear(v: f64) -> f64 {
    if v <= 0.040_45 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// An 8-bit sRGB triple to CIELAB (D65 white).
pub fn srgb8_to_lab(rgb: [u8; 3]) -> Lab {
    let l = rgb.map(|v| srgb_to_linear(v as f64 / 255.0));
    let m = crate::color::SRGB_TO_XYZ;
    let xyz: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|j| m[i][j] as f64 * l[j]).sum::<f64>() / WHITE[i])
        .collect();
    let f = |t: f64| {
        let d = 6.0f64 / 29.0;
        if t > d * d * d {
            t.cbrt()
        } else {
            t / (3.0 * d * d) + 4.0 / 29.0
        }
    };
    let (fx, fy, fz) = (f(xyz[0]), f(xyz[1]), f(xyz[2]));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// CIEDE2000 difference of two CIELAB colours.
pub fn delta_e2000(lab1: Lab, lab2: Lab) -> f64 {
    use std::f64::consts::PI;
    let [l1, a1, b1] = lab1;
    let [l2, a2, b2] = lab2;
    let c1 = a1.hypot(b1);
    let c2 = a2.hypot(b2);
    let cbar = (c1 + c2) / 2.0;
    let c7 = cbar.powi(7);
    let g = 0.5 * (1.0 - (c7 / (c7 + 25f64.powi(7))).sqrt());
    let a1p = (1.0 + g) * a1;
    let a2p = (1.0 + g) * a2;
    let c1p = a1p.hypot(b1);
    let c2p = a2p.hypot(b2);
    let hue = |b: f64, a: f64| {
        if a == 0.0 && b == 0.0 {
            0.0
        } else {
            let h = b.atan2(a).to_degrees();
            if h < 0.0 {
                h + 360.0
            } else {
                h
            }
        }
    };
    let h1p = hue(b1, a1p);
    let h2p = hue(b2, a2p);
    let dlp = l2 - l1;
    let dcp = c2p - c1p;
    let dhp = if c1p * c2p == 0.0 {
        0.0
    } else if (h2p - h1p).abs() <= 180.0 {
        h2p - h1p
    } else if h2p - h1p > 180.0 {
        h2p - h1p - 360.0
    } else {
        h2p - h1p + 360.0
    };
    let dhp_big = 2.0 * (c1p * c2p).sqrt() * (dhp.to_radians() / 2.0).sin();
    let lbp = (l1 + l2) / 2.0;
    let cbp = (c1p + c2p) / 2.0;
    let hbp = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    let t = 1.0 - 0.17 * (hbp - 30.0).to_radians().cos()
        + 0.24 * (2.0 * hbp).to_radians().cos()
        + 0.32 * (3.0 * hbp + 6.0).to_radians().cos()
        - 0.20 * (4.0 * hbp - 63.0).to_radians().cos();
    let dtheta = 30.0 * (-((hbp - 275.0) / 25.0).powi(2)).exp();
    let cbp7 = cbp.powi(7);
    let rc = 2.0 * (cbp7 / (cbp7 + 25f64.powi(7))).sqrt();
    let l50 = (lbp - 50.0).powi(2);
    let sl = 1.0 + 0.015 * l50 / (20.0 + l50).sqrt();
    let sc = 1.0 + 0.045 * cbp;
    let sh = 1.0 + 0.015 * cbp * t;
    let rt = -(2.0 * dtheta * PI / 180.0).sin() * rc;
    let (x, y, z) = (dlp / sl, dcp / sc, dhp_big / sh);
    (x * x + y * y + z * z + rt * y * z).sqrt()
}

/// Mean CIEDE2000 over the pixels of two 8-bit sRGB images, excluding a
/// border of `crop` pixels.
pub fn ciede2000_mean(a: &Rgb8, b: &Rgb8, crop: usize) -> Result<f64> {
    if a.width != b.width || a.height != b.height {
        return Err(Error::invalid(format!(
            "size mismatch: {}x{} vs {}x{}",
            a.width, a.height, b.width, b.height
        )));
    }
    if a.width <= 2 * crop || a.height <= 2 * crop {
        return Err(Error::invalid(format!(
            "image {}x{} is too small for a {crop}-pixel border crop",
            a.width, a.height
        )));
    }
    // 8-bit sRGB has 2^24 colours: cache Lab per distinct value would be
    // large; images are small enough to convert directly.
    let mut sum = 0f64;
    let mut n = 0usize;
    for y in crop..a.height - crop {
        for x in crop..a.width - crop {
            let i = 3 * (y * a.width + x);
            let pa = [a.data[i], a.data[i + 1], a.data[i + 2]];
            let pb = [b.data[i], b.data[i + 1], b.data[i + 2]];
            if pa != pb {
                sum += delta_e2000(srgb8_to_lab(pa), srgb8_to_lab(pb));
            }
            n += 1;
        }
    }
    Ok(sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharma_2005_test_pairs() {
        // (Lab1, Lab2, dE00) from Sharma et al.'s supplementary data.
        let cases: [(Lab, Lab, f64); 6] = [
            ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
            ([50.0, 3.1571, -77.2803], [50.0, 0.0, -82.7485], 2.8615),
            ([50.0, 2.5, 0.0], [50.0, 0.0, -2.5], 4.3065),
            ([50.0, 2.5, 0.0], [73.0, 25.0, -18.0], 27.1492),
            (
                [60.2574, -34.0099, 36.2677],
                [60.4626, -34.1751, 39.4387],
                1.2644,
            ),
            (
                [22.7233, 20.0904, -46.6940],
                [23.0331, 14.9730, -42.5619],
                2.0373,
            ),
        ];
        for (a, b, want) in cases {
            let got = delta_e2000(a, b);
            assert!((got - want).abs() < 1e-4, "{a:?} {b:?}: {got} vs {want}");
            assert!((delta_e2000(b, a) - want).abs() < 1e-4);
        }
    }

    #[test]
    fn white_is_l100_and_mean_is_zero_for_identical() {
        let l = srgb8_to_lab([255, 255, 255]);
        assert!(
            (l[0] - 100.0).abs() < 0.01 && l[1].abs() < 0.05 && l[2].abs() < 0.05,
            "{l:?}"
        );
        let img = Rgb8 {
            width: 30,
            height: 30,
            data: (0..2700).map(|i| (i % 256) as u8).collect(),
        };
        assert_eq!(ciede2000_mean(&img, &img, 5).unwrap(), 0.0);
    }
}
