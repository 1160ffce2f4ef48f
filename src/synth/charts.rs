//! Procedural test charts for demosaic evaluation: the two scenes where
//! demosaic methods collapse in ways natural photos hide.
//!
//! - [`Chart::ZonePlate`]: a grey circular zone plate whose frequency grows
//!   with the radius and reaches the sampling Nyquist frequency at the
//!   corners (luminance aliasing, maze and zipper artefacts).
//! - [`Chart::DeadLeaves`]: overlapping discs of random colours, radii drawn
//!   from a 1/r³ law (scale-invariant statistics, as natural images; the
//!   ISO 19567-2 texture chart), with many saturated colour edges (false
//!   colour, direction choice).
//!
//! Both are sRGB-encoded [`SrgbInput`]s (planar CHW, values in [0, 1]), so
//! [`super::unprocess`] turns them into raw captures with known truth like
//! any photo (`rawgraph synth --chart NAME`).

use super::unprocess::SrgbInput;
use crate::error::{Error, Result};

/// A procedural chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    ZonePlate,
    DeadLeaves,
}

impl Chart {
    /// Every chart, in the order `synth --chart all` writes them.
    pub const ALL: [Chart; 2] = [Chart::ZonePlate, Chart::DeadLeaves];

    /// The chart's name on the command line and its files' stem.
    pub fn name(self) -> &'static str {
        match self {
            Chart::ZonePlate => "zone_plate",
            Chart::DeadLeaves => "dead_leaves",
        }
    }

    /// Parses `zone_plate` / `zone-plate` / `dead_leaves` / `dead-leaves`.
    pub fn parse(s: &str) -> Result<Chart> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Chart::ALL
            .into_iter()
            .find(|c| c.name() == norm)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown chart '{s}' (expected zone_plate, dead_leaves or all)"
                ))
            })
    }

    /// Draws the chart at `width` x `height` pixels; `seed` places the
    /// dead-leaves discs (the zone plate has no randomness).
    pub fn draw(self, width: usize, height: usize, seed: u64) -> SrgbInput {
        match self {
            Chart::ZonePlate => zone_plate(width, height),
            Chart::DeadLeaves => dead_leaves(width, height, seed),
        }
    }
}

/// A planar sRGB image from a per-pixel function of (x, y) returning
/// sRGB-encoded (R, G, B) in [0, 1].
pub fn from_fn(w: usize, h: usize, f: impl Fn(usize, usize) -> [f32; 3]) -> SrgbInput {
    let n = w * h;
    let mut data = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            let v = f(x, y);
            for (c, &vc) in v.iter().enumerate() {
                data[c * n + y * w + x] = vc;
            }
        }
    }
    SrgbInput {
        width: w,
        height: h,
        data,
    }
}

/// Grey zone plate, 0.5 ± 0.4 (sRGB-encoded), cos(k r²) with the phase
/// rate 2 k r reaching π per pixel (Nyquist) at the corners.
pub fn zone_plate(w: usize, h: usize) -> SrgbInput {
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let rmax = (cx * cx + cy * cy).sqrt().max(1.0);
    let k = 0.5 * std::f32::consts::PI / rmax;
    from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let v = 0.5 + 0.4 * (k * (dx * dx + dy * dy)).cos();
        [v, v, v]
    })
}

/// Dead leaves: 2,500 discs of radius 2..40 px (p(r) ~ r⁻³), each of a
/// uniform random colour in [0.05, 0.95]³ (sRGB-encoded), painted in
/// order on a 0.5 grey ground. Deterministic in `seed`.
pub fn dead_leaves(w: usize, h: usize, seed: u64) -> SrgbInput {
    let mut s = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
    let mut rnd = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut paint = vec![[0.5f32; 3]; w * h];
    let (rmin, rmax) = (2.0f32, 40.0f32);
    for _ in 0..2500 {
        let (cx, cy) = (rnd() * w as f32, rnd() * h as f32);
        // Inverse CDF of p(r) ~ r^-3 on [rmin, rmax].
        let u = rnd();
        let r =
            1.0 / (1.0 / (rmin * rmin) - u * (1.0 / (rmin * rmin) - 1.0 / (rmax * rmax))).sqrt();
        let col = [0.05 + 0.9 * rnd(), 0.05 + 0.9 * rnd(), 0.05 + 0.9 * rnd()];
        let (x0, x1) = ((cx - r).max(0.0) as usize, ((cx + r) as usize + 1).min(w));
        let (y0, y1) = ((cy - r).max(0.0) as usize, ((cy + r) as usize + 1).min(h));
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    paint[y * w + x] = col;
                }
            }
        }
    }
    from_fn(w, h, |x, y| paint[y * w + x])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for c in Chart::ALL {
            assert_eq!(Chart::parse(c.name()).unwrap(), c);
        }
        assert_eq!(Chart::parse("Dead-Leaves").unwrap(), Chart::DeadLeaves);
        assert!(Chart::parse("siemens").is_err());
    }

    #[test]
    fn zone_plate_is_grey_and_reaches_high_frequency_at_the_corners() {
        let img = zone_plate(64, 48);
        let n = 64 * 48;
        assert!(img.data[..n] == img.data[n..2 * n] && img.data[..n] == img.data[2 * n..]);
        // Centre flat, corner alternating fast.
        let at = |x: usize, y: usize| img.data[y * 64 + x];
        assert!((at(32, 24) - 0.9).abs() < 1e-6);
        let corner_step = (at(1, 0) - at(0, 0)).abs() + (at(2, 0) - at(1, 0)).abs();
        let centre_step = (at(33, 24) - at(32, 24)).abs() + (at(34, 24) - at(33, 24)).abs();
        assert!(
            corner_step > 0.3 && centre_step < 0.01,
            "{corner_step} {centre_step}"
        );
    }

    #[test]
    fn dead_leaves_is_deterministic_colourful_and_in_range() {
        let (a, b, c) = (
            dead_leaves(96, 64, 5),
            dead_leaves(96, 64, 5),
            dead_leaves(96, 64, 6),
        );
        assert_eq!(a.data, b.data);
        assert_ne!(a.data, c.data);
        assert!(a.data.iter().all(|v| (0.05..=0.95).contains(v)));
        // Mostly covered by discs, many distinct colours.
        let n = 96 * 64;
        let ground = (0..n)
            .filter(|&i| a.data[i] == 0.5 && a.data[n + i] == 0.5)
            .count();
        assert!(ground < n / 10, "{ground} ground pixels");
        let mut reds: Vec<u32> = a.data[..n].iter().map(|v| v.to_bits()).collect();
        reds.sort_unstable();
        reds.dedup();
        assert!(reds.len() > 50, "{} distinct reds", reds.len());
    }
}
