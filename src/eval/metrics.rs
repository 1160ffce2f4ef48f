//! Image quality metrics on 8-bit RGB.
//!
//! - CPSNR: PSNR over all three channels jointly, on images rounded to 8
//!   bit, excluding a border of `crop` pixels (the demosaicking
//!   literature's convention).
//! - SSIM: Wang, Bovik, Sheikh & Simoncelli 2004, 11x11 Gaussian window
//!   (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, mean over the three
//!   channels, same border crop.

use crate::error::{Error, Result};

/// An interleaved 8-bit RGB image.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB, len = 3 * width * height.
    pub data: Vec<u8>,
}

impl Rgb8 {
    /// Loads any image the `image` crate reads, converted to RGB8.
    pub fn load(path: &std::path::Path) -> Result<Rgb8> {
        let img = image::ImageReader::open(path)
            .map_err(|e| Error::io(path, e))?
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))?
            .decode()
            .map_err(|e| Error::invalid(format!("{}: cannot read image: {e}", path.display())))?
            .into_rgb8();
        Ok(Rgb8 {
            width: img.width() as usize,
            height: img.height() as usize,
            data: img.into_raw(),
        })
    }

    /// From a planar [0, 1] image (rounded, clamped).
    pub fn from_planar(width: usize, height: usize, planar: &[f32]) -> Rgb8 {
        let n = width * height;
        let mut data = Vec::with_capacity(3 * n);
        for i in 0..n {
            for c in 0..3 {
                data.push((planar[c * n + i].clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        Rgb8 {
            width,
            height,
            data,
        }
    }
}

fn check_pair(a: &Rgb8, b: &Rgb8, crop: usize) -> Result<()> {
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
    Ok(())
}

/// Colour PSNR in dB (infinite when identical).
pub fn cpsnr(a: &Rgb8, b: &Rgb8, crop: usize) -> Result<f64> {
    check_pair(a, b, crop)?;
    let mut se = 0f64;
    let mut n = 0usize;
    for y in crop..a.height - crop {
        let row = 3 * y * a.width;
        for i in row + 3 * crop..row + 3 * (a.width - crop) {
            let d = a.data[i] as f64 - b.data[i] as f64;
            se += d * d;
            n += 1;
        }
    }
    let mse = se / n as f64;
    Ok(if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    })
}

/// Per-channel mean of `got` divided by that of `truth` (R, G, B) over the
/// image minus a `crop`-pixel border: 1.0 everywhere means no tint. A
/// channel whose truth mean is 0 gives 1.0 when `got`'s is 0 too, else
/// infinity.
pub fn channel_mean_ratio(truth: &Rgb8, got: &Rgb8, crop: usize) -> Result<[f64; 3]> {
    check_pair(truth, got, crop)?;
    let (mut st, mut sg) = ([0u64; 3], [0u64; 3]);
    for y in crop..truth.height - crop {
        let row = 3 * y * truth.width;
        for i in row + 3 * crop..row + 3 * (truth.width - crop) {
            st[i % 3] += truth.data[i] as u64;
            sg[i % 3] += got.data[i] as u64;
        }
    }
    Ok(std::array::from_fn(|c| match (sg[c], st[c]) {
        (0, 0) => 1.0,
        (g, t) => g as f64 / t as f64,
    }))
}

/// Largest deviation of a channel mean ratio from 1, in percent.
pub fn tint_pct(ratio: [f64; 3]) -> f64 {
    ratio
        .iter()
        .map(|r| (r - 1.0).abs() * 100.0)
        .fold(0.0, f64::max)
}

/// Mean SSIM over the three channels.
pub fn ssim(a: &Rgb8, b: &Rgb8, crop: usize) -> Result<f64> {
    check_pair(a, b, crop)?;
    let (w, h) = (a.width - 2 * crop, a.height - 2 * crop);
    if w < 11 || h < 11 {
        return Err(Error::invalid("image too small for SSIM"));
    }
    // 1-D Gaussian, 11 taps, sigma 1.5.
    let g: Vec<f64> = (0..11)
        .map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / gs).collect();
    let (c1, c2) = ((0.01 * 255.0f64).powi(2), (0.03 * 255.0f64).powi(2));
    let mut total = 0f64;
    for c in 0..3 {
        let get = |img: &Rgb8, x: usize, y: usize| {
            img.data[3 * ((y + crop) * img.width + x + crop) + c] as f64
        };
        // Separable blur of x, y, x², y², xy ('valid' region).
        let planes: [Vec<f64>; 5] = {
            let mut p: [Vec<f64>; 5] = Default::default();
            for (k, v) in p.iter_mut().enumerate() {
                *v = (0..h)
                    .flat_map(|y| (0..w).map(move |x| (x, y)))
                    .map(|(x, y)| {
                        let (u, v) = (get(a, x, y), get(b, x, y));
                        match k {
                            0 => u,
                            1 => v,
                            2 => u * u,
                            3 => v * v,
                            _ => u * v,
                        }
                    })
                    .collect();
            }
            p
        };
        let (ow, oh) = (w - 10, h - 10);
        let blur = |p: &Vec<f64>| -> Vec<f64> {
            let mut tmp = vec![0f64; ow * h];
            for y in 0..h {
                for x in 0..ow {
                    tmp[y * ow + x] = (0..11).map(|k| g[k] * p[y * w + x + k]).sum();
                }
            }
            let mut out = vec![0f64; ow * oh];
            for y in 0..oh {
                for x in 0..ow {
                    out[y * ow + x] = (0..11).map(|k| g[k] * tmp[(y + k) * ow + x]).sum();
                }
            }
            out
        };
        let [mx, my, mxx, myy, mxy] = planes.each_ref().map(blur);
        let mut s = 0f64;
        for i in 0..ow * oh {
            let (ux, uy) = (mx[i], my[i]);
            let (vx, vy, cxy) = (mxx[i] - ux * ux, myy[i] - uy * uy, mxy[i] - ux * uy);
            s += ((2.0 * ux * uy + c1) * (2.0 * cxy + c2))
                / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
        }
        total += s / (ow * oh) as f64;
    }
    Ok(total / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize, f: impl Fn(usize) -> u8) -> Rgb8 {
        Rgb8 {
            width: w,
            height: h,
            data: (0..3 * w * h).map(f).collect(),
        }
    }

    #[test]
    fn channel_ratio_finds_a_blue_tint_inside_the_crop() {
        let truth = img(8, 8, |_| 100);
        // Blue 10 % high inside the 1-px border, wild outside it.
        let got = img(8, 8, |i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = (p % 8, p / 8);
            let inside = (1..7).contains(&x) && (1..7).contains(&y);
            match (inside, c) {
                (false, _) => 0,
                (true, 2) => 110,
                _ => 100,
            }
        });
        let r = channel_mean_ratio(&truth, &got, 1).unwrap();
        assert!(
            (r[0] - 1.0).abs() < 1e-12 && (r[1] - 1.0).abs() < 1e-12,
            "{r:?}"
        );
        assert!((r[2] - 1.1).abs() < 1e-12, "{r:?}");
        assert!((tint_pct(r) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn psnr_known_value() {
        let a = img(40, 30, |_| 100);
        let b = img(40, 30, |_| 110);
        // MSE = 100 -> 10 log10(65025 / 100) = 28.13 dB.
        let p = cpsnr(&a, &b, 10).unwrap();
        assert!((p - 28.1308).abs() < 1e-3, "{p}");
        assert!(cpsnr(&a, &a, 10).unwrap().is_infinite());
        assert!(cpsnr(&a, &img(20, 30, |_| 0), 0).is_err());
    }

    #[test]
    fn ssim_identity_and_degradation() {
        let a = img(64, 64, |i| ((i * 37) % 251) as u8);
        assert!((ssim(&a, &a, 0).unwrap() - 1.0).abs() < 1e-9);
        let b = img(64, 64, |i| {
            (((i * 37) % 251) as u8).saturating_add(((i * 13) % 40) as u8)
        });
        let s = ssim(&a, &b, 0).unwrap();
        assert!(s < 0.99 && s > 0.0, "{s}");
    }
}
