//! LinearRaw frames (DNG PhotometricInterpretation 34892: already
//! demosaiced camera RGB, as phones and DNG converters write them) through
//! a pipeline made for mosaics.
//!
//! The mosaic-only stages (every stage that takes a mosaic: black level,
//! white balance, noise estimate, demosaic ...) are skipped and reported
//! as skipped in the timings. What they would have done that applies to
//! RGB is done here when the frame is loaded: black and white levels
//! (per channel, to [0, 1]) and the white balance (the file's as-shot
//! multipliers, else gray world; highlights clipped so that saturated
//! areas stay neutral, as `white_balance` does). The first stage that turns
//! a mosaic into an image (the demosaic) hands on that image instead; the
//! stages after it (colour, exposure, tone, encode, orient) run as usual.
//! A pipeline where a stage after the demosaic needs a mosaic-only
//! stage's value (e.g. a noise estimate) is refused with the reason.

use std::sync::Arc;

use super::build::Pipeline;
use super::exec::Step;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc, ValueKind};
use crate::raw::RawFrame;

/// The image a LinearRaw frame enters the pipeline as (levels and white
/// balance applied, linear camera RGB), and what to do with every node.
/// `Value::Scalar(0.0)` stands in for the (skipped) `raw_source` value.
pub fn prepare(p: &Pipeline, frame: RawFrame) -> Result<(Value, Vec<Step>)> {
    let (w, h) = (frame.meta.width, frame.meta.height);
    let descs = p.plan(ValueDesc::mosaic(w, h))?;
    let image = Value::Image(Arc::new(to_image(frame)?));
    let mut steps = Vec::with_capacity(p.nodes.len());
    let mut replaced = false;
    for (i, nd) in p.nodes.iter().enumerate() {
        let mosaic_in = i == p.source
            || nd
                .inputs
                .iter()
                .any(|&j| descs[j].kind == ValueKind::Mosaic);
        let step = if !mosaic_in {
            for &j in &nd.inputs {
                if let Step::Skip { value: None, .. } = &steps[j] {
                    return Err(Error::Pipeline {
                        file: p.file.clone(),
                        line: nd.line,
                        column: nd.column,
                        msg: format!(
                            "stage '{}' ({}) needs the value of '{}' ({}), a mosaic-only stage \
                             that LinearRaw (already demosaiced) frames skip",
                            nd.id, nd.op, p.nodes[j].id, p.nodes[j].op
                        ),
                    });
                }
            }
            Step::Run
        } else if descs[i].kind == ValueKind::Image {
            replaced = true;
            Step::Skip {
                value: Some(image.clone()),
                why: "LinearRaw frame is already demosaiced; levels and white balance \
                      applied at load"
                    .into(),
            }
        } else {
            Step::Skip {
                value: None,
                why: "mosaic-only stage; LinearRaw frame".into(),
            }
        };
        steps.push(step);
    }
    if !replaced {
        return Err(Error::invalid(format!(
            "pipeline '{}' has no demosaic stage to hand a LinearRaw frame's image to",
            p.name
        )));
    }
    Ok((Value::Scalar(0.0), steps))
}

/// Interleaved LinearRaw samples in DN -> planar camera RGB in [0, 1]
/// (black removed, white = 1), white-balanced (see module docs).
pub fn to_image(frame: RawFrame) -> Result<Image> {
    let m = &frame.meta;
    let (w, h) = (m.width, m.height);
    let n = w * h;
    if frame.data.len() != 3 * n {
        return Err(Error::decode(
            &m.source,
            format!(
                "LinearRaw buffer holds {} samples, expected {}",
                frame.data.len(),
                3 * n
            ),
        ));
    }
    let src = frame.data.f32();
    let mut data = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let black = m.black.at(y, x);
            for c in 0..3 {
                let range = (m.white[c] - black).max(1e-6);
                data[c * n + i] = ((src[3 * i + c] - black) / range).max(0.0);
            }
        }
    }
    let gains = match m.wb_gains {
        Some(g) => g,
        None => gray_world(&data, n),
    };
    let min = gains.iter().cloned().fold(f32::MAX, f32::min).max(1e-6);
    let g = [gains[0] / min, gains[1] / min, gains[2] / min];
    for (c, plane) in data.chunks_exact_mut(n).enumerate() {
        for v in plane {
            *v = (*v * g[c]).min(1.0);
        }
    }
    Ok(Image {
        width: w,
        height: h,
        data,
        space: ColorSpace::Camera,
        wb_applied: Some(g),
        meta: Arc::new(frame.meta),
    })
}

/// Gray-world multipliers (G = 1) from the unsaturated pixels of planar
/// RGB in [0, 1].
fn gray_world(data: &[f32], n: usize) -> [f32; 3] {
    let mut s = [0f64; 3];
    for i in 0..n {
        let p = [data[i], data[n + i], data[2 * n + i]];
        if p.iter().all(|v| *v > 0.0 && *v < 0.95) {
            for c in 0..3 {
                s[c] += p[c] as f64;
            }
        }
    }
    if s.iter().any(|v| *v <= 0.0) {
        return [1.0; 3];
    }
    [(s[1] / s[0]) as f32, 1.0, (s[1] / s[2]) as f32]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{PixelLayout, RawMeta};

    fn linear_frame(w: usize, h: usize, rgb: [f32; 3], gains: Option<[f32; 3]>) -> RawFrame {
        let mut meta = RawMeta::bayer("t", w, h, crate::raw::CfaPattern::Rggb);
        meta.layout = PixelLayout::LinearRgb;
        meta.black = crate::raw::BlackLevel::uniform(16.0);
        meta.white = [1023.0; 3];
        meta.wb_gains = gains;
        let data = (0..w * h).flat_map(|_| rgb).collect::<Vec<f32>>().into();
        RawFrame { meta, data }
    }

    #[test]
    fn levels_and_wb_applied() {
        let f = linear_frame(
            4,
            2,
            [
                16.0 + 1007.0 * 0.2,
                16.0 + 1007.0 * 0.4,
                16.0 + 1007.0 * 0.3,
            ],
            Some([2.0, 1.0, 1.5]),
        );
        let img = to_image(f).unwrap();
        let [r, g, b] = img.planes();
        // Gains normalised to min 1: [2, 1, 1.5].
        assert!(
            (r[0] - 0.4).abs() < 1e-4 && (g[0] - 0.4).abs() < 1e-4,
            "{r:?} {g:?}"
        );
        assert!((b[0] - 0.45).abs() < 1e-4, "{b:?}");
        assert_eq!(img.space, ColorSpace::Camera);
    }

    #[test]
    fn default_pipeline_runs_and_reports_skips() {
        let p = Pipeline::resolve("default").unwrap();
        let f = linear_frame(32, 24, [300.0, 500.0, 400.0], None);
        let out = crate::graph::run(&p, f, &Default::default()).unwrap();
        let Some((_, Value::Image(img))) = out.outputs.first() else {
            panic!("no image");
        };
        assert_eq!((img.width, img.height), (32, 24));
        // Gray world made the flat frame neutral.
        let [r, g, b] = img.planes();
        assert!((r[5] - g[5]).abs() < 0.02 && (b[5] - g[5]).abs() < 0.02);
        let skipped: Vec<&str> = out
            .timings
            .stages
            .iter()
            .filter(|t| t.op.contains("skipped"))
            .map(|t| t.id.as_str())
            .collect();
        // orient has nothing to do on an upright, uncropped frame.
        assert_eq!(skipped, ["raw", "bl", "lsc", "wb", "dm", "orient"]);
    }
}
