//! `rawgraph::nn`: every op against a naive reference on random inputs, the
//! whole `dmdn` model against PyTorch (tests/fixtures/nn_dmdn_tiny*, written
//! by `training/train_dmdn.py fixture`), and typed errors for bad weights.

mod common;
use common::write_st;
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rawgraph::nn::combine::{add, concat};
use rawgraph::nn::dmdn::{parse_cfa, phase_offset};
use rawgraph::nn::shuffle::{pixel_shuffle, pixel_unshuffle};
use rawgraph::nn::{Activation, Conv2d, Dmdn, NoiseInput, Padding, Tensor, Weights};
use rawgraph::Error;

fn rand_tensor(rng: &mut ChaCha8Rng, shape: [usize; 4]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn conv2d_matches_naive() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Sigmoid,
    ];
    let mut case = 0;
    for &k in &[1usize, 3, 5] {
        for &stride in &[1usize, 2] {
            for pad in [
                Padding::Zero(0),
                Padding::Zero(1),
                Padding::Reflect(1),
                Padding::Zero(2),
            ] {
                for &(n, cin, cout, h, w) in
                    &[(1, 3, 5, 9, 11), (2, 7, 16, 17, 6), (1, 1, 3, 40, 33)]
                {
                    let x = rand_tensor(&mut rng, [n, cin, h, w]);
                    let wt = rand_tensor(&mut rng, [cout, cin, k, k]).into_vec();
                    let b = rand_tensor(&mut rng, [1, 1, 1, cout]).into_vec();
                    let conv = Conv2d::new(wt, b, [cout, cin, k, k], stride, pad).unwrap();
                    let act = acts[case % acts.len()];
                    case += 1;
                    let fast = conv.forward(&x, act).unwrap();
                    let slow = conv.forward_naive(&x, act).unwrap();
                    let d = fast.max_abs_diff(&slow);
                    assert!(
                        d < 1e-4,
                        "k{k} s{stride} {pad:?} {n}x{cin}x{h}x{w}->{cout}: diff {d}"
                    );
                }
            }
        }
    }
}

#[test]
fn conv2d_large_band_split_matches_naive() {
    // Wide enough that one output is split in several bands across threads.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = rand_tensor(&mut rng, [1, 16, 37, 300]);
    let wt = rand_tensor(&mut rng, [24, 16, 3, 3]).into_vec();
    let b = rand_tensor(&mut rng, [1, 1, 1, 24]).into_vec();
    let conv = Conv2d::new(wt, b, [24, 16, 3, 3], 1, Padding::Zero(1)).unwrap();
    let d = conv
        .forward(&x, Activation::Relu)
        .unwrap()
        .max_abs_diff(&conv.forward_naive(&x, Activation::Relu).unwrap());
    assert!(d < 1e-4, "diff {d}");
}

#[test]
fn conv2d_rejects_bad_shapes() {
    assert!(Conv2d::new(
        vec![0.0; 5],
        vec![0.0; 1],
        [1, 1, 3, 3],
        1,
        Padding::Zero(1)
    )
    .is_err());
    let conv = Conv2d::new(
        vec![0.0; 18],
        vec![0.0; 1],
        [1, 2, 3, 3],
        1,
        Padding::Zero(1),
    )
    .unwrap();
    let x = Tensor::zeros([1, 3, 4, 4]).unwrap();
    assert!(conv.forward(&x, Activation::None).is_err());
    let tiny = Tensor::zeros([1, 2, 1, 1]).unwrap();
    let reflect = Conv2d::new(
        vec![0.0; 18],
        vec![0.0; 1],
        [1, 2, 3, 3],
        1,
        Padding::Reflect(1),
    )
    .unwrap();
    assert!(reflect.forward(&tiny, Activation::None).is_err());
}

#[test]
fn activations_match_formulas() {
    for v in [-3.0f32, -0.5, 0.0, 0.25, 4.0] {
        assert_eq!(Activation::Relu.eval(v), v.max(0.0));
        assert_eq!(
            Activation::LeakyRelu(0.2).eval(v),
            if v < 0.0 { 0.2 * v } else { v }
        );
        assert!((Activation::Sigmoid.eval(v) - 1.0 / (1.0 + (-v).exp())).abs() < 1e-6);
        assert_eq!(Activation::None.eval(v), v);
    }
}

#[test]
fn pixel_shuffle_matches_index_formula_and_roundtrips() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let r = 2;
    let x = rand_tensor(&mut rng, [2, 12, 5, 7]);
    let y = pixel_shuffle(&x, r).unwrap();
    assert_eq!(y.shape(), [2, 3, 10, 14]);
    for b in 0..2 {
        for c in 0..3 {
            for yy in 0..10 {
                for xx in 0..14 {
                    let src = x.at(b, c * r * r + (yy % r) * r + xx % r, yy / r, xx / r);
                    assert_eq!(y.at(b, c, yy, xx), src);
                }
            }
        }
    }
    assert_eq!(pixel_unshuffle(&y, r).unwrap(), x);
    assert!(pixel_shuffle(&x, 5).is_err());
    assert!(pixel_unshuffle(&rand_tensor(&mut rng, [1, 1, 3, 4]), 2).is_err());
}

#[test]
fn concat_and_add() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let a = rand_tensor(&mut rng, [2, 2, 3, 4]);
    let b = rand_tensor(&mut rng, [2, 3, 3, 4]);
    let c = concat(&[&a, &b]).unwrap();
    assert_eq!(c.shape(), [2, 5, 3, 4]);
    for n in 0..2 {
        assert_eq!(c.plane(n, 1), a.plane(n, 1));
        assert_eq!(c.plane(n, 4), b.plane(n, 2));
    }
    let s = add(&a, &a).unwrap();
    for (x, y) in s.data().iter().zip(a.data()) {
        assert_eq!(*x, 2.0 * y);
    }
    assert!(add(&a, &b).is_err());
    assert!(concat(&[&a, &rand_tensor(&mut rng, [2, 1, 4, 4])]).is_err());
}

#[test]
fn cfa_phase_offsets() {
    let rggb = parse_cfa("RGGB").unwrap();
    let grbg = parse_cfa("grbg").unwrap();
    let gbrg = parse_cfa("gbrg").unwrap();
    let bggr = parse_cfa("bggr").unwrap();
    assert_eq!(phase_offset(rggb, rggb), Some((0, 0)));
    assert_eq!(phase_offset(rggb, grbg), Some((0, 1)));
    assert_eq!(phase_offset(rggb, gbrg), Some((1, 0)));
    assert_eq!(phase_offset(rggb, bggr), Some((1, 1)));
    assert!(parse_cfa("rgbb").is_none());
    assert!(parse_cfa("xtrans").is_none());
    assert_eq!(phase_offset([0, 0, 1, 2], rggb), None);
}

fn load_io() -> (Vec<f32>, Vec<f32>, Tensor, usize, usize) {
    let w = Weights::load(fixture("nn_dmdn_tiny_io.safetensors")).unwrap();
    let mut w = w;
    let (h, wd) = (20, 26);
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
fn dmdn_matches_pytorch() {
    let model = Dmdn::load(fixture("nn_dmdn_tiny.safetensors")).unwrap();
    assert_eq!(model.config().depth, 3);
    let (mosaic, noise, expected, h, w) = load_io();
    let rggb = parse_cfa("rggb").unwrap();
    // One big tile, and many small tiles: both must equal PyTorch's single pass.
    for tile in [1024, 16, 18] {
        let out = model
            .run(&mosaic, h, w, rggb, NoiseInput::Map(&noise), tile)
            .unwrap();
        let d = out.max_abs_diff(&expected);
        assert!(d < 2e-4, "tile {tile}: max diff to PyTorch {d}");
    }
}

#[test]
fn dmdn_uniform_noise_equals_constant_map() {
    let model = Dmdn::load(fixture("nn_dmdn_tiny.safetensors")).unwrap();
    let (mosaic, _, _, h, w) = load_io();
    let cfa = parse_cfa("bggr").unwrap();
    let a = model
        .run(&mosaic, h, w, cfa, NoiseInput::Uniform(0.05), 16)
        .unwrap();
    let map = vec![0.05f32; h * w];
    let b = model
        .run(&mosaic, h, w, cfa, NoiseInput::Map(&map), 64)
        .unwrap();
    assert!(a.max_abs_diff(&b) < 1e-5);
    // Tiny and odd-sized frames work too.
    let m = vec![0.5f32; 3 * 5];
    let t = model
        .run(&m, 3, 5, cfa, NoiseInput::Uniform(0.0), 16)
        .unwrap();
    assert_eq!(t.shape(), [1, 3, 3, 5]);
    assert!(model
        .run(&m, 4, 5, cfa, NoiseInput::Uniform(0.0), 16)
        .is_err());
}

fn model_err(r: rawgraph::Result<Dmdn>) -> String {
    match r {
        Err(Error::Model { reason, .. }) => reason,
        Err(e) => panic!("expected Error::Model, got {e}"),
        Ok(_) => panic!("expected Error::Model, got a model"),
    }
}

#[test]
fn bad_weight_files_are_typed_errors() {
    let path = fixture("nn_dmdn_tiny.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let good = Weights::from_bytes(&path, &bytes).unwrap();
    let meta = good.metadata().clone();
    let dir = tempfile::tempdir().unwrap();

    // Truncated file.
    let p = dir.path().join("trunc.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let r = model_err(Dmdn::load(&p));
    assert!(r.contains("safetensors"), "{r}");
    // Garbage and empty files.
    std::fs::write(&p, b"hello world, not a model").unwrap();
    model_err(Dmdn::load(&p));
    std::fs::write(&p, b"").unwrap();
    model_err(Dmdn::load(&p));
    // Missing file is an I/O error naming the path.
    assert!(matches!(
        Dmdn::load(dir.path().join("nope.safetensors")),
        Err(Error::Io { .. })
    ));

    // Re-serialise with edits.
    let mut w = Weights::from_bytes(&path, &bytes).unwrap();
    let mut names: Vec<String> = w.names().map(String::from).collect();
    names.sort();
    let mut tensors = Vec::new();
    for n in &names {
        let shape = w.shape(n).unwrap().to_vec();
        let data = w.take(n, &shape).unwrap();
        tensors.push((n.clone(), shape, data));
    }
    let ok = write_st(&tensors, &meta);
    assert!(Dmdn::from_weights(Weights::from_bytes("ok", &ok).unwrap()).is_ok());

    // Wrong shape.
    let mut bad = tensors.clone();
    let i = bad.iter().position(|t| t.0 == "body.1.weight").unwrap();
    bad[i].1 = vec![8, 8, 3, 3, 1];
    let r = model_err(Dmdn::from_weights(
        Weights::from_bytes("x", &write_st(&bad, &meta)).unwrap(),
    ));
    assert!(r.contains("body.1.weight") && r.contains("shape"), "{r}");
    // Missing tensor.
    let bad: Vec<_> = tensors
        .iter()
        .filter(|t| t.0 != "fr2.bias")
        .cloned()
        .collect();
    let r = model_err(Dmdn::from_weights(
        Weights::from_bytes("x", &write_st(&bad, &meta)).unwrap(),
    ));
    assert!(r.contains("fr2.bias") && r.contains("missing"), "{r}");
    // Extra tensor.
    let mut bad = tensors.clone();
    bad.push(("extra".into(), vec![1], vec![0.0]));
    let r = model_err(Dmdn::from_weights(
        Weights::from_bytes("x", &write_st(&bad, &meta)).unwrap(),
    ));
    assert!(r.contains("extra"), "{r}");
    // Metadata that does not match the tensors, or is malformed.
    for (k, v) in [
        ("width", "9"),
        ("depth", "abc"),
        ("arch", "unet"),
        ("phase", "rgbx"),
        ("gated", "yes"),
    ] {
        let mut m = meta.clone();
        m.insert(k.into(), v.into());
        let r = model_err(Dmdn::from_weights(
            Weights::from_bytes("x", &write_st(&tensors, &m)).unwrap(),
        ));
        assert!(!r.is_empty());
    }
    let mut m = meta.clone();
    m.remove("noise_channels");
    let r = model_err(Dmdn::from_weights(
        Weights::from_bytes("x", &write_st(&tensors, &m)).unwrap(),
    ));
    assert!(r.contains("noise_channels"), "{r}");
    // Non-finite weights.
    let mut bad = tensors.clone();
    bad[0].2[0] = f32::NAN;
    assert!(matches!(
        Weights::from_bytes("x", &write_st(&bad, &meta)),
        Err(Error::Model { .. })
    ));
}

/// The shipped models, when present, load and have the declared sizes.
#[test]
fn shipped_models_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models");
    for name in ["demosaic_fast.safetensors", "demosaic_quality.safetensors"] {
        let p = dir.join(name);
        if !p.exists() {
            eprintln!("SKIPPED: {} not present", p.display());
            continue;
        }
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size < 5 << 20, "{name} is {size} bytes");
        let m = Dmdn::load(&p).unwrap();
        assert!(m.flops_per_pixel() > 0.0);
    }
}

/// Timing probe (not a gate): `cargo test --release --test nn_ops -- --ignored --nocapture`.
/// Conv GFLOP/s for the 64-channel 3x3 shape and the shipped models on
/// synthetic mosaics (12 MP for `fast`, 2 MP for `quality`).
#[test]
#[ignore]
fn speed_probe() {
    use std::time::Instant;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for &(c, hw) in &[(64usize, 256usize), (24, 512)] {
        let x = rand_tensor(&mut rng, [1, c, hw, hw]);
        let wt = rand_tensor(&mut rng, [c, c, 3, 3]).into_vec();
        let conv = Conv2d::new(wt, vec![0.0; c], [c, c, 3, 3], 1, Padding::Zero(1)).unwrap();
        conv.forward(&x, Activation::Relu).unwrap();
        let t = Instant::now();
        let reps = 5;
        for _ in 0..reps {
            conv.forward(&x, Activation::Relu).unwrap();
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        let gf = (conv.flops_per_output_pixel() * hw * hw) as f64 / s / 1e9;
        eprintln!(
            "conv3x3 {c}->{c} {hw}x{hw}: {:.2} ms, {gf:.1} GFLOP/s",
            s * 1e3
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models");
    for (name, w, h) in [("fast", 4000usize, 3000usize), ("quality", 1600, 1200)] {
        let p = dir.join(format!("demosaic_{name}.safetensors"));
        let Ok(m) = Dmdn::load(&p) else {
            eprintln!("SKIPPED {name}: no model");
            continue;
        };
        let mosaic: Vec<f32> = (0..w * h).map(|_| rng.random_range(0.0..1.0)).collect();
        let cfa = parse_cfa("rggb").unwrap();
        for tile in [256usize, 384, 512] {
            let t = Instant::now();
            m.run(&mosaic, h, w, cfa, NoiseInput::Uniform(0.02), tile)
                .unwrap();
            let s = t.elapsed().as_secs_f64();
            let mp = (w * h) as f64 / 1e6;
            eprintln!(
                "dmdn {name} {w}x{h} tile {tile}: {s:.3} s, {:.3} s/MP, {:.1} GFLOP/s (model flops)",
                s / mp,
                m.flops_per_pixel() * mp * 1e6 / s / 1e9
            );
        }
    }
}

/// The registry compiles `demosaic_denoise_learned`, checks its params, and the
/// stage turns a flat grey mosaic of any phase into a flat grey image.
#[test]
fn learned_stage_runs_and_checks_params() {
    use rawgraph::frame::{Mosaic, MosaicScale, Value};
    use rawgraph::raw::{CfaPattern, RawMeta};
    use rawgraph::stages::{self, RunCtx};
    use std::sync::Arc;

    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("calibration/models/demosaic_fast.safetensors");
    if !model.exists() {
        eprintln!("SKIPPED: {} not present", model.display());
        return;
    }
    assert!(stages::compile("demosaic_denoise_learned", serde_json::json!({"bogus": 1})).is_err());
    assert!(stages::compile(
        "demosaic_denoise_learned",
        serde_json::json!({"sigma": -1.0})
    )
    .is_err());
    let e = stages::compile(
        "demosaic_denoise_learned",
        serde_json::json!({"model": "/nonexistent.safetensors"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("nonexistent"), "{e}");
    let tiny = fixture("nn_dmdn_tiny.safetensors");
    assert!(stages::compile(
        "demosaic_denoise_learned",
        serde_json::json!({"model": tiny, "tile": 32})
    )
    .is_ok());

    let stage = stages::compile(
        "demosaic_denoise_learned",
        serde_json::json!({"model": "fast", "sigma": 0.0}),
    )
    .unwrap();
    let (w, h) = (70, 50);
    for cfa in CfaPattern::ALL {
        let m = Mosaic {
            width: w,
            height: h,
            cfa,
            data: vec![0.5; w * h].into(),
            scale: MosaicScale::Normalized,
            wb_applied: Some([1.0; 3]),
            meta: Arc::new(RawMeta::bayer("test", w, h, cfa)),
        };
        let out = stage
            .run_cpu(&RunCtx { stage_id: "dm" }, vec![Value::Mosaic(Arc::new(m))])
            .unwrap();
        let Value::Image(img) = out else {
            panic!("not an image")
        };
        assert_eq!((img.width, img.height, img.data.len()), (w, h, 3 * w * h));
        let worst = img.data.iter().fold(0.0f32, |a, v| a.max((v - 0.5).abs()));
        assert!(worst < 0.03, "{cfa:?}: flat grey off by {worst}");
    }
}

/// `strength` multiplies the conditioning std: strength 2 on a profile
/// gives the same pixels as strength 1 on a profile with 4x the variance
/// (and as a `sigma` twice as large), it changes the output, and values
/// outside 0..=4 are refused.
#[test]
fn learned_stage_strength_scales_the_noise_map() {
    use rawgraph::frame::{Mosaic, MosaicScale, Value};
    use rawgraph::raw::{CfaPattern, NoiseProfile, RawMeta};
    use rawgraph::stages::{self, RunCtx};
    use std::sync::Arc;

    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("calibration/models/demosaic_fast_raw.safetensors");
    if !model.exists() {
        eprintln!("SKIPPED: {} not present", model.display());
        return;
    }
    for bad in [-0.5, 4.5] {
        assert!(stages::compile(
            "demosaic_denoise_learned",
            serde_json::json!({"model": "fast_raw", "strength": bad})
        )
        .is_err());
    }
    let (w, h) = (48, 40);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let data: Vec<f32> = (0..w * h)
        .map(|i| 0.3 + 0.2 * ((i % w) as f32 / w as f32) + rng.random_range(-0.05..0.05))
        .collect();
    let run = |params: serde_json::Value, profile: Option<NoiseProfile>| {
        let stage = stages::compile("demosaic_denoise_learned", params).unwrap();
        let mut meta = RawMeta::bayer("test", w, h, CfaPattern::Rggb);
        meta.noise_profile = profile;
        let m = Mosaic {
            width: w,
            height: h,
            cfa: CfaPattern::Rggb,
            data: data.clone().into(),
            scale: MosaicScale::Normalized,
            wb_applied: None,
            meta: Arc::new(meta),
        };
        match stage
            .run_cpu(&RunCtx { stage_id: "dm" }, vec![Value::Mosaic(Arc::new(m))])
            .unwrap()
        {
            Value::Image(img) => img.data.clone(),
            _ => panic!("not an image"),
        }
    };
    let p = NoiseProfile {
        a: [2e-3, 1e-3, 1.5e-3],
        b: [4e-5, 2e-5, 3e-5],
    };
    let p4 = NoiseProfile {
        a: p.a.map(|v| 4.0 * v),
        b: p.b.map(|v| 4.0 * v),
    };
    let one = run(serde_json::json!({"model": "fast_raw"}), Some(p));
    let two = run(
        serde_json::json!({"model": "fast_raw", "strength": 2.0}),
        Some(p),
    );
    let four_var = run(serde_json::json!({"model": "fast_raw"}), Some(p4));
    assert_eq!(two, four_var);
    assert!(one.iter().zip(&two).any(|(a, b)| (a - b).abs() > 1e-4));
    let s2 = run(
        serde_json::json!({"model": "fast_raw", "sigma": 0.02, "strength": 2.0}),
        None,
    );
    let s4 = run(
        serde_json::json!({"model": "fast_raw", "sigma": 0.04}),
        None,
    );
    assert_eq!(s2, s4);
}
