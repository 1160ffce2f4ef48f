//! YuNet face detector (Wu, Peng & Yu 2023, "YuNet: A Tiny
//! Millisecond-level Face Detector", Machine Intelligence Research; model
//! files from libfacedetection.train / the OpenCV model zoo, Apache-2.0):
//! ONNX inference through `tract-onnx` (cargo feature `yunet`), then the
//! decoding and non-maximum suppression of OpenCV's `FaceDetectorYN`
//! (opencv/modules/objdetect/src/face_detect.cpp), which are plain Rust
//! here and always built.
//!
//! Model contract (the 2023 YuNet exports): input `[1, 3, H, W]` BGR,
//! values 0..255, H and W multiples of 32 (fixed 320/640 exports, or any
//! size for the `dynamic` one); twelve outputs `cls_8, cls_16, cls_32,
//! obj_8, obj_16, obj_32, bbox_8, bbox_16, bbox_32, kps_8, kps_16,
//! kps_32`, each `[1, (H/s)·(W/s), C]` with C = 1, 1, 4, 10 in row-major
//! anchor order.

use std::path::Path;

use super::FaceBox;
use crate::error::{Error, Result};

/// Feature strides of the three heads.
pub const STRIDES: [usize; 3] = [8, 16, 32];

/// Raw head outputs for one stride, row-major anchors.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Stride in input pixels.
    pub stride: usize,
    /// Class score per anchor, len n.
    pub cls: &'a [f32],
    /// Objectness per anchor, len n.
    pub obj: &'a [f32],
    /// (dx, dy, log w, log h) per anchor, len 4n.
    pub bbox: &'a [f32],
    /// Five (dx, dy) landmark offsets per anchor, len 10n.
    pub kps: &'a [f32],
}

/// Decodes the heads of an input `width` pixels wide (padded size) into
/// boxes with score >= `threshold` (score = sqrt(cls · obj), both clamped
/// to [0, 1]), in input pixels.
pub fn decode(heads: &[Head], width: usize, threshold: f32) -> Result<Vec<FaceBox>> {
    let mut out = Vec::new();
    for h in heads {
        let cols = width / h.stride;
        let n = h.cls.len();
        if cols == 0
            || h.obj.len() != n
            || h.bbox.len() != 4 * n
            || h.kps.len() != 10 * n
            || n % cols != 0
        {
            return Err(Error::invalid(format!(
                "YuNet stride {} outputs have inconsistent sizes ({} anchors, {} columns)",
                h.stride, n, cols
            )));
        }
        let s = h.stride as f32;
        for i in 0..n {
            let score = (h.cls[i].clamp(0.0, 1.0) * h.obj[i].clamp(0.0, 1.0)).sqrt();
            if score.is_nan() || score < threshold {
                continue;
            }
            let (r, c) = ((i / cols) as f32, (i % cols) as f32);
            let bb = &h.bbox[4 * i..4 * i + 4];
            let cx = (c + bb[0]) * s;
            let cy = (r + bb[1]) * s;
            let w = bb[2].exp() * s;
            let hh = bb[3].exp() * s;
            let mut lm = [[0f32; 2]; 5];
            for (k, p) in lm.iter_mut().enumerate() {
                p[0] = (h.kps[10 * i + 2 * k] + c) * s;
                p[1] = (h.kps[10 * i + 2 * k + 1] + r) * s;
            }
            out.push(FaceBox {
                x: cx - w / 2.0,
                y: cy - hh / 2.0,
                w,
                h: hh,
                score,
                landmarks: Some(lm),
            });
        }
    }
    Ok(out)
}

/// Greedy non-maximum suppression: boxes sorted by score, a box is kept
/// unless it overlaps a kept one by more than `iou` (OpenCV's
/// `dnn::NMSBoxes`, as `FaceDetectorYN` uses), at most `top_k` kept.
pub fn nms(mut boxes: Vec<FaceBox>, iou: f32, top_k: usize) -> Vec<FaceBox> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<FaceBox> = Vec::new();
    for b in boxes {
        if keep.len() >= top_k {
            break;
        }
        if keep.iter().all(|k| k.iou(&b) <= iou) {
            keep.push(b);
        }
    }
    keep
}

/// A loaded YuNet model.
pub struct YuNet {
    path: std::path::PathBuf,
    #[cfg(feature = "yunet")]
    inner: tract::Inner,
}

impl std::fmt::Debug for YuNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "YuNet({})", self.path.display())
    }
}

impl YuNet {
    /// Loads an ONNX file (errors name the file).
    pub fn load(path: &Path) -> Result<YuNet> {
        if !path.exists() {
            return Err(Error::Model {
                path: path.to_path_buf(),
                reason: "file not found (YuNet ONNX models: \
                         https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet)"
                    .into(),
            });
        }
        #[cfg(feature = "yunet")]
        {
            Ok(YuNet {
                path: path.to_path_buf(),
                inner: tract::Inner::load(path)?,
            })
        }
        #[cfg(not(feature = "yunet"))]
        {
            Err(Error::Model {
                path: path.to_path_buf(),
                reason: "this rawgraph was built without the `yunet` feature \
                         (cargo build --features yunet)"
                    .into(),
            })
        }
    }

    /// Detects faces in interleaved 8-bit RGB `w x h`; boxes in its pixels.
    pub fn detect(
        &self,
        rgb8: &[u8],
        w: usize,
        h: usize,
        threshold: f32,
        nms_iou: f32,
    ) -> Result<Vec<FaceBox>> {
        #[cfg(feature = "yunet")]
        {
            let (pw, ph, input) = self.inner.input_for(rgb8, w, h)?;
            let outs = self.inner.run(input, pw, ph)?;
            let heads: Vec<Head> = (0..3)
                .map(|k| Head {
                    stride: STRIDES[k],
                    cls: &outs[k],
                    obj: &outs[3 + k],
                    bbox: &outs[6 + k],
                    kps: &outs[9 + k],
                })
                .collect();
            let boxes = decode(&heads, pw, threshold)?;
            Ok(nms(boxes, nms_iou, 5000)
                .into_iter()
                .filter(|b| b.x < w as f32 && b.y < h as f32)
                .collect())
        }
        #[cfg(not(feature = "yunet"))]
        {
            let _ = (rgb8, w, h, threshold, nms_iou);
            Err(Error::invalid(format!(
                "{}: built without the `yunet` feature",
                self.path.display()
            )))
        }
    }
}

/// Builds the network input: BGR planes 0..255 padded with zeros to
/// `pw x ph` (right and bottom), `[1, 3, ph, pw]` row-major.
pub fn bgr_input(rgb8: &[u8], w: usize, h: usize, pw: usize, ph: usize) -> Vec<f32> {
    let n = pw * ph;
    let mut x = vec![0f32; 3 * n];
    for y in 0..h.min(ph) {
        for xx in 0..w.min(pw) {
            let s = 3 * (y * w + xx);
            if s + 2 >= rgb8.len() {
                continue;
            }
            let d = y * pw + xx;
            x[d] = rgb8[s + 2] as f32;
            x[n + d] = rgb8[s + 1] as f32;
            x[2 * n + d] = rgb8[s] as f32;
        }
    }
    x
}

#[cfg(feature = "yunet")]
mod tract {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use tract_onnx::prelude::*;

    use crate::error::{Error, Result};

    type Plan = Arc<TypedRunnableModel>;

    /// The parsed model, a fixed input size if the file has one, and one
    /// optimised plan per padded input size.
    pub struct Inner {
        path: PathBuf,
        proto: InferenceModel,
        fixed: Option<(usize, usize)>,
        plans: Mutex<HashMap<(usize, usize), Plan>>,
    }

    fn err(path: &Path, e: impl std::fmt::Display) -> Error {
        Error::Model {
            path: path.to_path_buf(),
            reason: format!("YuNet ONNX: {e}"),
        }
    }

    impl Inner {
        pub fn load(path: &Path) -> Result<Inner> {
            let proto = tract_onnx::onnx()
                .model_for_path(path)
                .map_err(|e| err(path, e))?;
            let fact = proto.input_fact(0).map_err(|e| err(path, e))?;
            let fixed = fact
                .shape
                .as_concrete_finite()
                .ok()
                .flatten()
                .and_then(|s| (s.len() == 4).then(|| (s[3], s[2])));
            if proto.outputs.len() != 12 {
                return Err(err(
                    path,
                    format!("expected 12 outputs, found {}", proto.outputs.len()),
                ));
            }
            Ok(Inner {
                path: path.to_path_buf(),
                proto,
                fixed,
                plans: Mutex::new(HashMap::new()),
            })
        }

        /// Padded size and input tensor for an image.
        pub fn input_for(
            &self,
            rgb8: &[u8],
            w: usize,
            h: usize,
        ) -> Result<(usize, usize, Vec<f32>)> {
            let (pw, ph) = match self.fixed {
                Some((fw, fh)) => {
                    if w > fw || h > fh {
                        return Err(Error::invalid(format!(
                            "{}: the model takes {fw}x{fh}; set face_detect max_side <= {}",
                            self.path.display(),
                            fw.min(fh)
                        )));
                    }
                    (fw, fh)
                }
                None => (w.div_ceil(32) * 32, h.div_ceil(32) * 32),
            };
            Ok((pw, ph, super::bgr_input(rgb8, w, h, pw, ph)))
        }

        fn plan(&self, pw: usize, ph: usize) -> Result<Plan> {
            let mut plans = self
                .plans
                .lock()
                .map_err(|_| Error::invalid("YuNet plan cache poisoned"))?;
            if let Some(p) = plans.get(&(pw, ph)) {
                return Ok(p.clone());
            }
            let p = self
                .proto
                .clone()
                .with_input_fact(0, f32::fact([1, 3, ph, pw]).into())
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
                .map_err(|e| err(&self.path, e))?;
            plans.insert((pw, ph), p.clone());
            Ok(p)
        }

        /// Runs the network; the twelve outputs flattened, in file order.
        pub fn run(&self, input: Vec<f32>, pw: usize, ph: usize) -> Result<Vec<Vec<f32>>> {
            let plan = self.plan(pw, ph)?;
            let t = Tensor::from_shape(&[1, 3, ph, pw], &input).map_err(|e| err(&self.path, e))?;
            let outs = plan.run(tvec!(t.into())).map_err(|e| err(&self.path, e))?;
            outs.iter()
                .map(|o| {
                    o.to_plain_array_view::<f32>()
                        .map(|a| a.iter().copied().collect())
                        .map_err(|e| err(&self.path, e))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_places_anchor_offsets_on_the_stride_grid() {
        // One 64x32 input, stride 32: 2 columns x 1 row.
        let cls = [0.9, 0.1];
        let obj = [0.9, 0.9];
        let bbox = [0.5, 0.5, 0.0, 1f32.ln(), 0.0, 0.0, 0.0, 0.0];
        let kps = [0.5f32; 20];
        let h = Head {
            stride: 32,
            cls: &cls,
            obj: &obj,
            bbox: &bbox,
            kps: &kps,
        };
        let b = decode(&[h], 64, 0.5).unwrap();
        assert_eq!(b.len(), 1);
        let f = b[0];
        assert!((f.score - 0.9).abs() < 1e-6);
        // Centre (0.5 * 32, 0.5 * 32) = (16, 16), size 32 x 32.
        assert!(
            (f.x - 0.0).abs() < 1e-4 && (f.y - 0.0).abs() < 1e-4,
            "{f:?}"
        );
        assert!((f.w - 32.0).abs() < 1e-4 && (f.h - 32.0).abs() < 1e-4);
        assert_eq!(f.landmarks.unwrap()[0], [16.0, 16.0]);
        // Inconsistent sizes are an error, not a panic.
        let bad = Head {
            cls: &cls[..1],
            ..h
        };
        assert!(decode(&[bad], 64, 0.5).is_err());
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let b = |x: f32, s: f32| FaceBox {
            x,
            y: 0.0,
            w: 10.0,
            h: 10.0,
            score: s,
            landmarks: None,
        };
        let kept = nms(vec![b(0.0, 0.8), b(1.0, 0.9), b(30.0, 0.7)], 0.3, 10);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].x, 30.0);
    }

    #[test]
    fn input_is_bgr_and_zero_padded() {
        let rgb = [10u8, 20, 30, 40, 50, 60];
        let x = bgr_input(&rgb, 2, 1, 4, 2);
        assert_eq!(x.len(), 24);
        assert_eq!((x[0], x[8], x[16]), (30.0, 20.0, 10.0));
        assert_eq!(x[1], 60.0);
        assert_eq!(x[2], 0.0);
    }
}
