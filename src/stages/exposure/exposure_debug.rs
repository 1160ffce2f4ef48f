//! `exposure_debug`: what the meter saw — the frame with the sky map
//! overlaid as a tint and the face boxes drawn, so a person can check the
//! detections behind an exposure decision.
//!
//! Method: alpha blending of a tint colour weighted by the sky probability
//! (`alpha * p`), then 1-pixel-per-`line`-width rectangle outlines (and
//! landmark dots) in the face colour; values are written in the image's
//! own units, so it works on linear or sRGB-encoded frames (use it after
//! `srgb_encode` to see the final rendering).
//!
//! Inputs: an image, then a `faces` and/or a `sky_map` value (any order).
//! Output: an image of the same size and colour space.

use serde::Deserialize;

use super::{downcast, Faces, SkyMap, FACES, SKY_MAP};
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc, ValueKind};
use crate::stages::{check_range, parse_params, take_image, RunCtx, Stage};

/// YAML params of `exposure_debug`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Sky tint (R, G, B) in the image's units.
    pub sky_color: [f32; 3],
    /// Tint opacity at probability 1.
    pub sky_alpha: f32,
    /// Face box colour.
    pub face_color: [f32; 3],
    /// Box line width, pixels (0 = relative: 1/300 of the longer side).
    pub line: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            sky_color: [0.1, 0.3, 1.0],
            sky_alpha: 0.5,
            face_color: [0.0, 1.0, 0.0],
            line: 0,
        }
    }
}

/// The compiled `exposure_debug` op.
#[derive(Debug)]
pub struct ExposureDebug {
    p: Params,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("sky_alpha", self.sky_alpha, 0.0, 1.0)?;
        for (name, c) in [
            ("sky_color", self.sky_color),
            ("face_color", self.face_color),
        ] {
            for v in c {
                check_range(name, v, 0.0, 16.0)?;
            }
        }
        if self.line > 64 {
            return Err(crate::stages::CompileError::Params(format!(
                "line = {} is outside [0, 64]",
                self.line
            )));
        }
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    Ok(Box::new(ExposureDebug { p }))
}

impl Stage for ExposureDebug {
    fn op(&self) -> &'static str {
        "exposure_debug"
    }

    fn arity(&self) -> (usize, usize) {
        (2, 3)
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = inputs.first().ok_or("expects an image input")?;
        if d.kind != ValueKind::Image {
            return Err(format!("first input must be an image, got a {}", d.kind));
        }
        let mut seen = Vec::new();
        for s in &inputs[1..] {
            match s.kind {
                ValueKind::Other(k) if (k == FACES || k == SKY_MAP) && !seen.contains(&k) => {
                    seen.push(k)
                }
                k => {
                    return Err(format!(
                    "inputs after the image must be one faces and/or one sky_map value, got a {k}"
                ))
                }
            }
        }
        Ok(*d)
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let mut it = inputs.into_iter();
        let mut img = take_image(it.next().ok_or_else(|| Error::invalid("no input"))?)?;
        let rest: Vec<Value> = it.collect();
        let (w, h) = (img.width, img.height);
        if let Some(m) = rest.iter().find_map(downcast::<SkyMap>) {
            let a = self.p.sky_alpha;
            let col = self.p.sky_color;
            let (fw, fh) = (
                m.frame_width as f32 / w as f32,
                m.frame_height as f32 / h as f32,
            );
            let planes = img.planes_mut();
            let mut alpha = vec![0f32; w * h];
            for y in 0..h {
                for x in 0..w {
                    alpha[y * w + x] = a * m.sample((x as f32 + 0.5) * fw, (y as f32 + 0.5) * fh);
                }
            }
            for (c, pl) in planes.into_iter().enumerate() {
                for (v, &t) in pl.iter_mut().zip(&alpha) {
                    *v = *v * (1.0 - t) + col[c] * t;
                }
            }
        }
        if let Some(f) = rest.iter().find_map(downcast::<Faces>) {
            let line = if self.p.line == 0 {
                (w.max(h) / 300).max(1)
            } else {
                self.p.line
            };
            let (sx, sy) = (
                w as f32 / f.width.max(1) as f32,
                h as f32 / f.height.max(1) as f32,
            );
            let col = self.p.face_color;
            let mut planes = img.planes_mut();
            let mut put = |x: isize, y: isize| {
                if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                    let i = y as usize * w + x as usize;
                    for (c, pl) in planes.iter_mut().enumerate() {
                        pl[i] = col[c];
                    }
                }
            };
            for b in &f.boxes {
                if !(b.x.is_finite() && b.y.is_finite() && b.w.is_finite() && b.h.is_finite()) {
                    continue;
                }
                let x0 = (b.x * sx) as isize;
                let y0 = (b.y * sy) as isize;
                let x1 = ((b.x + b.w) * sx) as isize;
                let y1 = ((b.y + b.h) * sy) as isize;
                let (x1, y1) = (x1.min(x0 + 2 * w as isize), y1.min(y0 + 2 * h as isize));
                for t in 0..line as isize {
                    for x in x0..=x1 {
                        put(x, y0 + t);
                        put(x, y1 - t);
                    }
                    for y in y0..=y1 {
                        put(x0 + t, y);
                        put(x1 - t, y);
                    }
                }
                for l in b.landmarks.iter().flatten() {
                    let (lx, ly) = ((l[0] * sx) as isize, (l[1] * sy) as isize);
                    for dy in -(line as isize)..=line as isize {
                        for dx in -(line as isize)..=line as isize {
                            put(lx + dx, ly + dy);
                        }
                    }
                }
            }
        }
        Ok(Value::Image(img.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{planar_image, FaceBox};
    use super::*;
    use crate::frame::ColorSpace;
    use std::sync::Arc;

    #[test]
    fn draws_boxes_and_tints_sky() {
        let st = compile(serde_json::Value::Null).unwrap();
        let img = planar_image(40, 30, vec![0.5; 3 * 1200], ColorSpace::Srgb);
        let faces = Faces {
            width: 40,
            height: 30,
            detector: "t".into(),
            boxes: vec![FaceBox {
                x: 10.0,
                y: 10.0,
                w: 10.0,
                h: 10.0,
                score: 1.0,
                landmarks: None,
            }],
        };
        let sky = SkyMap {
            width: 4,
            height: 3,
            frame_width: 40,
            frame_height: 30,
            prob: vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            model: "t".into(),
        };
        let out = st
            .run_cpu(
                &RunCtx { stage_id: "d" },
                vec![
                    Value::Image(Arc::new(img)),
                    Value::Other(Arc::new(faces)),
                    Value::Other(Arc::new(sky)),
                ],
            )
            .unwrap();
        let Value::Image(o) = out else {
            panic!("not an image")
        };
        let n = 1200;
        // Box outline is green.
        assert_eq!(
            [
                o.data[10 * 40 + 15],
                o.data[n + 10 * 40 + 15],
                o.data[2 * n + 10 * 40 + 15]
            ],
            [0.0, 1.0, 0.0]
        );
        // Top row tinted toward blue, bottom row untouched.
        assert!(o.data[2 * n + 40 + 2] > 0.7 && o.data[40 + 2] < 0.35);
        assert_eq!(o.data[2 * n + 29 * 40 + 2], 0.5);
    }
}
