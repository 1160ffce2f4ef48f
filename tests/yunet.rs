//! YuNet through tract-onnx (cargo feature `yunet`) on the sample photos:
//! it runs, finds faces in every photo, and agrees with SeetaFace (almost
//! every SeetaFace box is matched by a YuNet box at IoU >= 0.5; measured
//! 103 of 104 with onnxruntime, training/yunet_parity.py). Parity with
//! onnxruntime itself is checked by that script.
#![cfg(feature = "yunet")]

mod common;

use rawgraph::cli::faces::{load_photo, photos};
use rawgraph::stages::exposure::face_detect::{Detector, FaceDetect, Params};

#[test]
fn yunet_finds_the_sample_faces_and_agrees_with_seetaface() {
    let (Some(samples), Some(model)) = (
        common::data("face/samples"),
        common::data("face/yunet/yunet_n_640_640.onnx"),
    ) else {
        return;
    };
    let yunet = FaceDetect::new(Params {
        detector: Detector::Yunet,
        model: Some(model),
        ..Params::default()
    })
    .unwrap();
    let seeta = FaceDetect::new(Params::default()).unwrap();
    let (mut total_y, mut total_s, mut matched) = (0, 0, 0);
    for f in photos(&[samples]) {
        let img = load_photo(&f).unwrap();
        let y = yunet.detect(&img).unwrap();
        let s = seeta.detect(&img).unwrap();
        assert!(!y.boxes.is_empty(), "{}: YuNet found no face", f.display());
        assert!(y
            .boxes
            .iter()
            .all(|b| b.landmarks.is_some() && (0.0..=1.0).contains(&b.score)));
        total_y += y.boxes.len();
        total_s += s.boxes.len();
        matched += s
            .boxes
            .iter()
            .filter(|b| y.boxes.iter().any(|c| c.iou(b) >= 0.5))
            .count();
        eprintln!(
            "{}: yunet {} seetaface {}",
            f.display(),
            y.boxes.len(),
            s.boxes.len()
        );
    }
    eprintln!("yunet {total_y}, seetaface {total_s}, seetaface boxes matched {matched}");
    assert!(total_y >= total_s);
    assert!(matched as f32 >= 0.9 * total_s as f32);
}
