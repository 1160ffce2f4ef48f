//! `rawgraph compare`: one capture through several pipelines, side by side.
//!
//! Renders the input with each pipeline, writes one 8-bit PNG with the
//! results left to right (optionally cropped, 8-pixel white gaps) and
//! measures the noise each leaves on a flat patch: the standard deviation
//! per channel, in 8-bit sRGB units, of the output minus a least-squares
//! plane over the patch (so shading does not count as noise). The patch is
//! given (`--flat-patch`) or found on the first pipeline's output as the
//! 32x32 block whose 8x8-box-smoothed content varies least, among blocks
//! that are neither dark (< 0.08) nor clipped (> 0.92 on any channel).
//! Meant for captures without ground truth (sensor dumps, camera raws):
//! classical against learned at a glance, with a number.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::InputArgs;
use crate::error::{Error, Result};
use crate::frame::Image;
use crate::graph::{self, Pipeline, RunOptions};
use crate::input;
use crate::output::{write_atomic, write_image, OutFormat};
use crate::Value;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A raw file or sensor dump.
    pub input: PathBuf,
    /// Pipelines (names or YAML files), rendered left to right.
    #[arg(short, long = "pipeline", required = true, num_args = 1..)]
    pub pipelines: Vec<String>,
    /// Side-by-side PNG to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Crop of each rendering shown, `x,y,w,h` in output pixels.
    #[arg(long)]
    pub crop: Option<String>,
    /// Patch for the noise measurement, `x,y,w,h` (default: found, see docs).
    #[arg(long)]
    pub flat_patch: Option<String>,
    /// Write the measurements as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub inputs_opts: InputArgs,
}

/// A rectangle in output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

impl Rect {
    fn parse(what: &str, s: &str) -> Result<Rect> {
        let v: Vec<usize> = s
            .split(',')
            .map(|t| t.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::invalid(format!("{what} '{s}': use x,y,w,h (pixels)")))?;
        match v[..] {
            [x, y, w, h] if w >= 2 && h >= 2 => Ok(Rect { x, y, w, h }),
            _ => Err(Error::invalid(format!(
                "{what} '{s}': use x,y,w,h with w, h >= 2"
            ))),
        }
    }

    fn check(self, what: &str, img: &Image) -> Result<Rect> {
        if self.x + self.w > img.width || self.y + self.h > img.height {
            return Err(Error::invalid(format!(
                "{what} {},{},{},{} lies outside the {}x{} output",
                self.x, self.y, self.w, self.h, img.width, img.height
            )));
        }
        Ok(self)
    }
}

/// One pipeline's rendering and its noise on the flat patch.
#[derive(Debug, Clone, Serialize)]
pub struct Rendering {
    pub pipeline: String,
    /// Residual std per channel (R, G, B), 8-bit sRGB units.
    pub noise_std: [f64; 3],
    /// Pipeline time without decoding, ms.
    pub ms: f64,
}

/// What `compare` measured.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub schema_version: u32,
    pub input: String,
    pub flat_patch: Rect,
    pub renderings: Vec<Rendering>,
}

/// Std per channel (8-bit units) of `img` minus its least-squares plane
/// over `r`.
pub fn plane_residual_std(img: &Image, r: Rect) -> [f64; 3] {
    let n = (r.w * r.h) as f64;
    let (cx, cy) = ((r.w as f64 - 1.0) / 2.0, (r.h as f64 - 1.0) / 2.0);
    // Centred coordinates make the normal equations diagonal.
    let sxx: f64 = (0..r.w).map(|x| (x as f64 - cx).powi(2)).sum::<f64>() * r.h as f64;
    let syy: f64 = (0..r.h).map(|y| (y as f64 - cy).powi(2)).sum::<f64>() * r.w as f64;
    let mut out = [0f64; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let plane = &img.data[c * img.plane_len()..(c + 1) * img.plane_len()];
        let px = |x: usize, y: usize| plane[(r.y + y) * img.width + r.x + x] as f64 * 255.0;
        let (mut s, mut sx, mut sy) = (0f64, 0f64, 0f64);
        for y in 0..r.h {
            for x in 0..r.w {
                let v = px(x, y);
                s += v;
                sx += v * (x as f64 - cx);
                sy += v * (y as f64 - cy);
            }
        }
        let (m, gx, gy) = (s / n, sx / sxx, sy / syy);
        let mut ss = 0f64;
        for y in 0..r.h {
            for x in 0..r.w {
                let d = px(x, y) - (m + gx * (x as f64 - cx) + gy * (y as f64 - cy));
                ss += d * d;
            }
        }
        *o = (ss / (n - 3.0).max(1.0)).sqrt();
    }
    out
}

/// The flattest 32x32 block of `img` (see module docs), if the frame has one.
pub fn find_flat_patch(img: &Image) -> Option<Rect> {
    const B: usize = 32;
    const S: usize = 8;
    let (w, h) = (img.width, img.height);
    if w < B || h < B {
        return None;
    }
    // 8x8 box means of each channel on an 8-pixel grid.
    let (gw, gh) = (w / S, h / S);
    let mut means = vec![[0f64; 3]; gw * gh];
    for (c, p) in img.data.chunks_exact(img.plane_len()).enumerate().take(3) {
        for gy in 0..gh {
            for gx in 0..gw {
                let mut s = 0f64;
                for y in 0..S {
                    let row = &p[(gy * S + y) * w + gx * S..(gy * S + y) * w + gx * S + S];
                    s += row.iter().map(|&v| v as f64).sum::<f64>();
                }
                means[gy * gw + gx][c] = s / (S * S) as f64;
            }
        }
    }
    let k = B / S;
    let mut best: Option<(f64, Rect)> = None;
    for gy in 0..=gh.saturating_sub(k) {
        for gx in 0..=gw.saturating_sub(k) {
            let cells: Vec<[f64; 3]> = (0..k)
                .flat_map(|dy| (0..k).map(move |dx| (gy + dy) * gw + gx + dx))
                .map(|i| means[i])
                .collect();
            if cells.iter().flatten().any(|&v| !(0.08..=0.92).contains(&v)) {
                continue;
            }
            let mut var = 0f64;
            for c in 0..3 {
                let m = cells.iter().map(|v| v[c]).sum::<f64>() / cells.len() as f64;
                var += cells.iter().map(|v| (v[c] - m).powi(2)).sum::<f64>();
            }
            let r = Rect {
                x: gx * S,
                y: gy * S,
                w: B,
                h: B,
            };
            if best.is_none_or(|(b, _)| var < b) {
                best = Some((var, r));
            }
        }
    }
    best.map(|(_, r)| r)
}

/// `img` cropped to `r` (planar).
fn crop(img: &Image, r: Rect) -> Image {
    let mut data = Vec::with_capacity(3 * r.w * r.h);
    for p in img.data.chunks_exact(img.plane_len()).take(3) {
        for y in r.y..r.y + r.h {
            data.extend_from_slice(&p[y * img.width + r.x..y * img.width + r.x + r.w]);
        }
    }
    Image {
        width: r.w,
        height: r.h,
        data,
        ..img.clone()
    }
}

/// Images left to right with `gap` white columns, top-aligned.
fn side_by_side(imgs: &[Image], gap: usize) -> Image {
    let h = imgs.iter().map(|i| i.height).max().unwrap_or(0);
    let w = imgs.iter().map(|i| i.width).sum::<usize>() + gap * imgs.len().saturating_sub(1);
    let mut data = vec![1f32; 3 * w * h];
    let mut x0 = 0;
    for img in imgs {
        for c in 0..3 {
            for y in 0..img.height {
                let src = &img.data[c * img.plane_len() + y * img.width..][..img.width];
                data[c * w * h + y * w + x0..][..img.width].copy_from_slice(src);
            }
        }
        x0 += img.width + gap;
    }
    Image {
        width: w,
        height: h,
        data,
        ..imgs[0].clone()
    }
}

pub fn run(a: CompareArgs) -> Result<i32> {
    let limits = a.inputs_opts.limits();
    let frame = input::open(&a.input, a.inputs_opts.sidecar.as_deref(), &limits)?;
    let opts = RunOptions {
        backend: a.inputs_opts.backend,
        no_fuse: a.inputs_opts.no_fuse,
        deliver: None,
        stream: None,
    };
    let mut outs = Vec::new();
    for name in &a.pipelines {
        let p = Pipeline::resolve(name)?;
        let t = std::time::Instant::now();
        let res = graph::run(&p, frame.clone(), &opts)
            .map_err(|e| Error::invalid(format!("{name}: {e}")))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match res.outputs.into_iter().next() {
            Some((_, Value::Image(img))) => outs.push((name.clone(), (*img).clone(), ms)),
            _ => {
                return Err(Error::invalid(format!(
                    "{name}: the pipeline's first output is not an image"
                )))
            }
        }
    }
    let first = &outs[0].1;
    if outs
        .iter()
        .any(|(_, i, _)| (i.width, i.height) != (first.width, first.height))
    {
        return Err(Error::invalid("the pipelines' outputs differ in size"));
    }
    let patch = match &a.flat_patch {
        Some(s) => Rect::parse("--flat-patch", s)?.check("--flat-patch", first)?,
        None => find_flat_patch(first).ok_or_else(|| {
            Error::invalid("no flat, unclipped 32x32 patch found: give --flat-patch x,y,w,h")
        })?,
    };
    let view = match &a.crop {
        Some(s) => Some(Rect::parse("--crop", s)?.check("--crop", first)?),
        None => None,
    };
    let mut report = CompareReport {
        schema_version: 1,
        input: a.input.display().to_string(),
        flat_patch: patch,
        renderings: Vec::new(),
    };
    println!(
        "noise on the flat patch {},{},{},{} (residual std, 8-bit sRGB units):",
        patch.x, patch.y, patch.w, patch.h
    );
    for (name, img, ms) in &outs {
        let s = plane_residual_std(img, patch);
        println!(
            "  {name:<28} R {:6.2}  G {:6.2}  B {:6.2}   ({ms:.0} ms)",
            s[0], s[1], s[2]
        );
        report.renderings.push(Rendering {
            pipeline: name.clone(),
            noise_std: s,
            ms: *ms,
        });
    }
    let shown: Vec<Image> = outs
        .iter()
        .map(|(_, i, _)| view.map_or_else(|| i.clone(), |r| crop(i, r)))
        .collect();
    write_image(&side_by_side(&shown, 8), &a.output, OutFormat::Png8)?;
    println!("wrote {}", a.output.display());
    if let Some(j) = &a.json {
        let s = serde_json::to_string_pretty(&report).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(j, |f| std::io::Write::write_all(f, s.as_bytes()))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ColorSpace;
    use crate::raw::{CfaPattern, RawMeta};
    use std::sync::Arc;

    fn image(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> f32) -> Image {
        let mut data = vec![0f32; 3 * w * h];
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    data[c * w * h + y * w + x] = f(c, x, y);
                }
            }
        }
        Image {
            width: w,
            height: h,
            data,
            space: ColorSpace::Srgb,
            wb_applied: None,
            meta: Arc::new(RawMeta::bayer("t", w, h, CfaPattern::Rggb)),
        }
    }

    #[test]
    fn plane_fit_removes_shading_and_keeps_noise() {
        // A ramp alone has no residual; a checkerboard of +-2/255 has std 2.
        let ramp = image(40, 40, |c, x, y| {
            0.2 + 0.004 * x as f32 + 0.002 * y as f32 + 0.1 * c as f32
        });
        let r = Rect {
            x: 4,
            y: 4,
            w: 32,
            h: 32,
        };
        for s in plane_residual_std(&ramp, r) {
            assert!(s < 1e-3, "{s}");
        }
        let noisy = image(40, 40, |_, x, y| {
            0.5 + if (x + y) % 2 == 0 { 2.0 } else { -2.0 } / 255.0
        });
        for s in plane_residual_std(&noisy, r) {
            assert!((s - 2.0).abs() < 0.1, "{s}");
        }
    }

    #[test]
    fn flat_patch_avoids_texture_and_clipping() {
        // Left half textured, top-right clipped, bottom-right flat grey.
        let img = image(128, 128, |_, x, y| {
            if x < 64 {
                0.5 + 0.3 * ((x as f32 * 0.9).sin() * (y as f32 * 0.7).cos())
            } else if y < 64 {
                1.0
            } else {
                0.4
            }
        });
        let p = find_flat_patch(&img).unwrap();
        assert!(p.x >= 64 && p.y >= 64, "{p:?}");
        assert!(find_flat_patch(&image(16, 16, |_, _, _| 0.5)).is_none());
        assert!(Rect::parse("--crop", "1,2,3").is_err());
        assert!(Rect::parse("--crop", "0,0,40,40")
            .unwrap()
            .check("--crop", &img)
            .is_ok());
        assert!(Rect::parse("--crop", "100,0,40,40")
            .unwrap()
            .check("--crop", &img)
            .is_err());
    }
}
