//! The Rust sky segmenter reproduces PyTorch (training/train_sky.py
//! `fixture`: a tiny random-weight model, an input and its output).

use std::path::Path;

use rawgraph::nn::sky_seg::SkySeg;
use rawgraph::nn::{Tensor, Weights};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn sky_seg_matches_pytorch() {
    let m = SkySeg::load(fixture("nn_sky_tiny.safetensors")).unwrap();
    assert_eq!(m.widths(), [4, 6, 8]);
    let mut io = Weights::load(fixture("nn_sky_tiny_io.safetensors")).unwrap();
    let x = io.take("input", &[4, 24, 40]).unwrap();
    let want = io.take("output", &[1, 12, 20]).unwrap();
    let y = m
        .forward(&Tensor::from_vec([1, 4, 24, 40], x).unwrap())
        .unwrap();
    assert_eq!(y.shape(), [1, 1, 12, 20]);
    let w = Tensor::from_vec([1, 1, 12, 20], want).unwrap();
    let d = y.max_abs_diff(&w);
    assert!(d < 2e-4, "max abs diff {d}");
}

#[test]
fn shipped_sky_model_loads_and_rejects_bad_sizes() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/models/sky.safetensors");
    let m = SkySeg::load(&p).unwrap();
    assert_eq!(m.widths(), [16, 32, 48]);
    assert!(m
        .metadata()
        .get("data")
        .is_some_and(|d| d.contains("CamVid")));
    let x = Tensor::zeros([1, 4, 20, 20]).unwrap();
    assert!(m.forward(&x).is_err());
    // A weights file of another architecture is a typed error.
    let e = SkySeg::load(fixture("nn_dmdn_tiny.safetensors")).unwrap_err();
    assert!(e.to_string().contains("sky_seg"), "{e}");
}
