//! The visual report of `rawgraph eval --report DIR`: one HTML page
//! (`DIR/index.html`, no scripts, no external resources) with the mean
//! scores, a per-stage latency bar chart (inline SVG) and, per image, crops
//! of ground truth / output / error map side by side (PNG files in
//! `DIR/img/`). The crop window is centred on the image's worst 32x32 block
//! so the error map shows what the numbers mean.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageEncoder};

use super::metrics::Rgb8;
use crate::error::{Error, Result};
use crate::output::write_atomic;

/// Side of the square crops, pixels (smaller images are shown whole).
pub const CROP: usize = 256;

/// Crops of one image for the report.
#[derive(Debug, Clone)]
pub struct ReportImage {
    pub set: String,
    /// Noise level / condition label.
    pub level: String,
    pub name: String,
    pub cpsnr: f64,
    pub ssim: f64,
    pub ciede2000: f64,
    /// Top-left corner of the crop in the full image.
    pub origin: (usize, usize),
    pub truth: Rgb8,
    pub output: Rgb8,
    /// Absolute error, amplified x4, as a heat map (black -> red -> yellow
    /// -> white).
    pub error: Rgb8,
}

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub set: String,
    pub level: String,
    pub images: usize,
    pub failed: usize,
    pub cpsnr: f64,
    pub ssim: f64,
    pub ciede2000: f64,
}

/// Mean host time of one stage, milliseconds.
#[derive(Debug, Clone)]
pub struct StageBar {
    pub id: String,
    pub op: String,
    pub ms: f64,
}

fn sub(img: &Rgb8, x0: usize, y0: usize, w: usize, h: usize) -> Rgb8 {
    let mut data = Vec::with_capacity(3 * w * h);
    for y in y0..y0 + h {
        let s = 3 * (y * img.width + x0);
        data.extend_from_slice(&img.data[s..s + 3 * w]);
    }
    Rgb8 {
        width: w,
        height: h,
        data,
    }
}

fn heat(v: f32) -> [u8; 3] {
    let t = v.clamp(0.0, 1.0) * 3.0;
    let c = |x: f32| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(t), c(t - 1.0), c(t - 2.0)]
}

impl ReportImage {
    /// Cuts the crops from a full-size (truth, output) pair of equal size.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        set: &str,
        level: &str,
        name: &str,
        cpsnr: f64,
        ssim: f64,
        ciede2000: f64,
        truth: &Rgb8,
        output: &Rgb8,
    ) -> Result<ReportImage> {
        if (truth.width, truth.height) != (output.width, output.height) {
            return Err(Error::invalid(format!(
                "{name}: truth and output sizes differ"
            )));
        }
        let (w, h) = (truth.width, truth.height);
        let err: Vec<f32> = truth
            .data
            .chunks_exact(3)
            .zip(output.data.chunks_exact(3))
            .map(|(a, b)| {
                (0..3)
                    .map(|c| (a[c] as f32 - b[c] as f32).abs())
                    .fold(0.0, f32::max)
            })
            .collect();
        // Worst 32x32 block (sum of squared error), 10-px border excluded.
        let (cw, ch) = (CROP.min(w), CROP.min(h));
        let mut best = (0f64, w / 2, h / 2);
        let b = 32;
        let mut y = 10.min(h);
        while y + b + 10 <= h {
            let mut x = 10.min(w);
            while x + b + 10 <= w {
                let mut s = 0f64;
                for yy in y..y + b {
                    for v in &err[yy * w + x..yy * w + x + b] {
                        s += (*v as f64) * (*v as f64);
                    }
                }
                if s > best.0 {
                    best = (s, x + b / 2, y + b / 2);
                }
                x += b;
            }
            y += b;
        }
        let x0 = best.1.saturating_sub(cw / 2).min(w - cw);
        let y0 = best.2.saturating_sub(ch / 2).min(h - ch);
        let mut emap = Vec::with_capacity(3 * cw * ch);
        for y in y0..y0 + ch {
            for x in x0..x0 + cw {
                emap.extend_from_slice(&heat(4.0 * err[y * w + x] / 255.0));
            }
        }
        Ok(ReportImage {
            set: set.to_string(),
            level: level.to_string(),
            name: name.to_string(),
            cpsnr,
            ssim,
            ciede2000,
            origin: (x0, y0),
            truth: sub(truth, x0, y0, cw, ch),
            output: sub(output, x0, y0, cw, ch),
            error: Rgb8 {
                width: cw,
                height: ch,
                data: emap,
            },
        })
    }
}

fn write_png(img: &Rgb8, path: &Path) -> Result<()> {
    write_atomic(path, |f| {
        image::codecs::png::PngEncoder::new(std::io::BufWriter::new(f))
            .write_image(
                &img.data,
                img.width as u32,
                img.height as u32,
                ExtendedColorType::Rgb8,
            )
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn db(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "inf".into()
    }
}

/// The per-stage latency chart as an inline SVG (horizontal bars).
pub fn stage_chart_svg(stages: &[StageBar]) -> String {
    let row = 24;
    let (label_w, bar_w) = (260, 420);
    let h = row * stages.len().max(1) + 10;
    let max = stages.iter().map(|s| s.ms).fold(0.0, f64::max).max(1e-9);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" \
         role=\"img\" aria-label=\"mean host time per stage\">",
        label_w + bar_w + 90
    );
    for (i, st) in stages.iter().enumerate() {
        let y = 5 + i * row;
        let len = (st.ms / max * bar_w as f64).max(1.0);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"13\" \
             font-family=\"monospace\">{} ({})</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{len:.1}\" height=\"{}\" fill=\"#3b7dd8\"/>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"13\" font-family=\"monospace\">{:.2} ms</text>",
            label_w - 8,
            y + 16,
            esc(&st.id),
            esc(&st.op),
            y + 3,
            row - 6,
            label_w as f64 + len + 6.0,
            y + 16,
            st.ms
        );
    }
    s.push_str("</svg>");
    s
}

/// Writes `dir/index.html` and the crop PNGs; returns the page's path.
pub fn write_report(
    dir: &Path,
    title: &str,
    summaries: &[ReportSummary],
    stages: &[StageBar],
    images: &[ReportImage],
    errors: &[String],
) -> Result<PathBuf> {
    let img_dir = dir.join("img");
    std::fs::create_dir_all(&img_dir).map_err(|e| Error::io(&img_dir, e))?;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>\
         body{{font-family:sans-serif;margin:20px;color:#222}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#eee}}td.l{{text-align:left}}\
         .row{{display:flex;gap:8px;margin:6px 0 18px}}figure{{margin:0}}\
         figcaption{{font-size:12px;color:#555}}img{{image-rendering:pixelated;border:1px solid #999}}\
         .err{{color:#b00}}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(title)
    );
    html.push_str("<h2>Mean scores</h2>\n<table><tr><th>set</th><th>level</th><th>images</th><th>failed</th><th>CPSNR dB</th><th>SSIM</th><th>CIEDE2000</th></tr>\n");
    for s in summaries {
        let _ = writeln!(
            html,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.3}</td></tr>",
            esc(&s.set),
            esc(&s.level),
            s.images,
            s.failed,
            db(s.cpsnr),
            s.ssim,
            s.ciede2000
        );
    }
    html.push_str("</table>\n<h2>Mean host time per stage</h2>\n");
    html.push_str(&stage_chart_svg(stages));
    html.push('\n');
    if !errors.is_empty() {
        html.push_str("<h2>Failures</h2>\n<ul>\n");
        for e in errors {
            let _ = writeln!(html, "<li class=\"err\">{}</li>", esc(e));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("<h2>Per image: ground truth / output / error (|diff| x4)</h2>\n");
    for (i, im) in images.iter().enumerate() {
        let base = format!("{i:04}");
        let files = [
            (format!("{base}_truth.png"), &im.truth, "ground truth"),
            (format!("{base}_output.png"), &im.output, "output"),
            (format!("{base}_error.png"), &im.error, "error x4"),
        ];
        for (f, img, _) in &files {
            write_png(img, &img_dir.join(f))?;
        }
        let _ = writeln!(
            html,
            "<h3>{} <small>({}, {})</small></h3><p>CPSNR {} dB, SSIM {:.4}, CIEDE2000 {:.3}; \
             crop at ({}, {})</p><div class=\"row\">",
            esc(&im.name),
            esc(&im.set),
            esc(&im.level),
            db(im.cpsnr),
            im.ssim,
            im.ciede2000,
            im.origin.0,
            im.origin.1
        );
        for (f, img, cap) in &files {
            let _ = write!(
                html,
                "<figure><img src=\"img/{f}\" width=\"{}\" height=\"{}\" alt=\"{cap}\">\
                 <figcaption>{cap}</figcaption></figure>",
                img.width, img.height
            );
        }
        html.push_str("</div>\n");
    }
    html.push_str("</body></html>\n");
    let page = dir.join("index.html");
    write_atomic(&page, |f| std::io::Write::write_all(f, html.as_bytes()))?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_follow_the_worst_block_and_page_is_written() {
        let (w, h) = (400, 300);
        let truth = Rgb8 {
            width: w,
            height: h,
            data: vec![128; 3 * w * h],
        };
        let mut out = truth.clone();
        for y in 200..230 {
            for x in 300..330 {
                out.data[3 * (y * w + x)] = 0;
            }
        }
        let r = ReportImage::new("s", "clean", "a<b>.png", 30.0, 0.9, 1.5, &truth, &out).unwrap();
        let (x0, y0) = r.origin;
        assert!(
            x0 <= 300 && x0 + CROP >= 330 && y0 <= 200 && y0 + CROP >= 230,
            "{:?}",
            r.origin
        );
        assert_eq!(r.error.width, CROP);
        let dir = tempfile::tempdir().unwrap();
        let bars = vec![StageBar {
            id: "dm".into(),
            op: "demosaic_menon".into(),
            ms: 12.5,
        }];
        let page = write_report(dir.path(), "t", &[], &bars, &[r], &["x: failed".into()]).unwrap();
        let html = std::fs::read_to_string(page).unwrap();
        assert!(html.contains("<svg") && html.contains("a&lt;b&gt;.png"));
        assert!(dir.path().join("img/0000_error.png").is_file());
    }
}
