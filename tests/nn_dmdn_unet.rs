//! The raw-path `dmdn_unet` network: Rust reproduces PyTorch's single pass
//! over the reflect-padded frame (fixture written by
//! `training/train_dmdn.py fixture`) for every tile size, the shipped raw
//! models load with their declared cost, and bad files are typed errors.

use std::collections::HashMap;

mod common;
use common::write_st;
use std::path::PathBuf;

use rawgraph::nn::dmdn::parse_cfa;
use rawgraph::nn::{DemosaicNet, DmdnUnet, NoiseInput, Tensor, Weights};
use rawgraph::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_io() -> (Vec<f32>, Vec<f32>, Tensor, usize, usize) {
    let mut w = Weights::load(fixture("nn_dmdn_unet_tiny_io.safetensors")).unwrap();
    let (h, wd) = (45, 70);
    let mosaic = w.take("mosaic", &[h, wd]).unwrap();
    let noise = w.take("noise_std", &[h, wd]).unwrap();
    let out = w.take("output", &[3, h, wd]).unwrap();
    (
        mosaic,
        noise,
        Tensor::from_vec([1, 3, h, wd], out).unwrap(),
        h,
        wd,
    )
}

#[test]
fn unet_matches_pytorch_for_every_tiling() {
    let model = DmdnUnet::load(fixture("nn_dmdn_unet_tiny.safetensors")).unwrap();
    assert_eq!(model.config().widths, [4, 6, 8]);
    assert_eq!(model.halo() % 8, 0);
    let (mosaic, noise, expected, h, w) = load_io();
    // The fixture's frame is GRBG, the model's phase GBRG; 45 rows (odd).
    let grbg = parse_cfa("grbg").unwrap();
    for tile in [1024, 16, 24, 40] {
        let out = model
            .run(&mosaic, h, w, grbg, NoiseInput::Map(&noise), tile)
            .unwrap();
        let d = out.max_abs_diff(&expected);
        assert!(d < 2e-4, "tile {tile}: max diff to PyTorch {d}");
    }
    // The wrong phase gives a different result (the test can fail).
    let rggb = parse_cfa("rggb").unwrap();
    let out = model
        .run(&mosaic, h, w, rggb, NoiseInput::Map(&noise), 1024)
        .unwrap();
    assert!(out.max_abs_diff(&expected) > 1e-2);
}

#[test]
fn unet_through_the_dispatching_loader() {
    let net = DemosaicNet::load(fixture("nn_dmdn_unet_tiny.safetensors")).unwrap();
    assert!(matches!(net, DemosaicNet::Unet(_)));
    let flat = DemosaicNet::load(fixture("nn_dmdn_tiny.safetensors")).unwrap();
    assert!(matches!(flat, DemosaicNet::Flat(_)));
    let (mosaic, _, _, h, w) = load_io();
    let cfa = parse_cfa("bggr").unwrap();
    let a = net
        .run(&mosaic, h, w, cfa, NoiseInput::Uniform(0.05), 16)
        .unwrap();
    let map = vec![0.05f32; h * w];
    let b = net
        .run(&mosaic, h, w, cfa, NoiseInput::Map(&map), 64)
        .unwrap();
    assert!(a.max_abs_diff(&b) < 1e-5);
    // Frames smaller than the halo and odd sizes work.
    let m = vec![0.5f32; 3 * 5];
    let t = net
        .run(&m, 3, 5, cfa, NoiseInput::Uniform(0.0), 16)
        .unwrap();
    assert_eq!(t.shape(), [1, 3, 3, 5]);
    assert!(net.flops_per_pixel() > 0.0);
}

fn model_err(r: rawgraph::Result<DmdnUnet>) -> String {
    match r {
        Err(Error::Model { reason, .. }) => reason,
        Err(e) => panic!("expected Error::Model, got {e}"),
        Ok(_) => panic!("expected Error::Model, got a model"),
    }
}

#[test]
fn bad_unet_files_are_typed_errors() {
    let path = fixture("nn_dmdn_unet_tiny.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let mut w = Weights::from_bytes(&path, &bytes).unwrap();
    let meta = w.metadata().clone();
    let mut names: Vec<String> = w.names().map(String::from).collect();
    names.sort();
    let mut tensors = Vec::new();
    for n in &names {
        let shape = w.shape(n).unwrap().to_vec();
        let data = w.take(n, &shape).unwrap();
        tensors.push((n.clone(), shape, data));
    }
    let build = |t: &[(String, Vec<usize>, Vec<f32>)], m: &HashMap<String, String>| {
        DmdnUnet::from_weights(Weights::from_bytes("x", &write_st(t, m)).unwrap())
    };
    assert!(build(&tensors, &meta).is_ok());
    // Metadata that does not match the tensors, or is malformed.
    for (k, v) in [
        ("widths", "4,6"),
        ("widths", "4,6,9"),
        ("widths", "a,b,c"),
        ("bottom", "2"),
        ("halo", "12"),
        ("phase", "rgbx"),
        ("arch", "dmdn"),
        ("version", "2"),
        ("fullres_width", "0"),
        ("base", "none"),
    ] {
        let mut m = meta.clone();
        m.insert(k.into(), v.into());
        let r = model_err(build(&tensors, &m));
        assert!(!r.is_empty(), "{k}={v}");
    }
    // Missing and wrongly shaped tensors name the tensor.
    let bad: Vec<_> = tensors
        .iter()
        .filter(|t| t.0 != "u2.bias")
        .cloned()
        .collect();
    let r = model_err(build(&bad, &meta));
    assert!(r.contains("u2.bias"), "{r}");
    let mut bad = tensors.clone();
    let i = bad.iter().position(|t| t.0 == "e2a.weight").unwrap();
    bad[i].1 = vec![6, 4, 1, 9];
    let r = model_err(build(&bad, &meta));
    assert!(r.contains("e2a.weight"), "{r}");
    // Truncated file through the dispatching loader.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() - 50]).unwrap();
    assert!(matches!(DemosaicNet::load(&p), Err(Error::Model { .. })));
}

/// The shipped raw-path models, when present, load, are `dmdn_unet` and
/// stay within the compute budgets (multiply-adds per pixel).
#[test]
fn shipped_raw_models_load_within_budget() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models");
    for (name, max_macs) in [("fast_raw", 5_200.0), ("quality_raw", 20_000.0)] {
        let p = dir.join(format!("demosaic_{name}.safetensors"));
        if !p.exists() {
            eprintln!("SKIPPED: {} not present", p.display());
            continue;
        }
        let m = DmdnUnet::load(&p).unwrap();
        let macs = m.flops_per_pixel() / 2.0;
        assert!(macs <= max_macs, "{name}: {macs} MAC/px");
        let declared: f64 = m.metadata()["macs_per_pixel"].parse().unwrap();
        assert!(
            (declared - macs).abs() < 2.0,
            "{name}: metadata {declared} vs {macs}"
        );
    }
}
