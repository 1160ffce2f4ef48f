//! HDRnet in Rust against PyTorch (tests/fixtures/hdrnet_tiny*, written by
//! `training/train_hdrnet.py fixture`: a tiny random model with a 27x21
//! input), the stage through the registry, edge cases (constant, black,
//! saturated white, smaller than one grid cell, sizes that are not
//! multiples of 16) and typed errors for bad weights.

use std::path::PathBuf;
use std::sync::Arc;

use rawgraph::frame::{ColorSpace, Image, Value, ValueDesc};
use rawgraph::nn::hdrnet::Hdrnet as Model;
use rawgraph::nn::Weights;
use rawgraph::raw::{CfaPattern, RawMeta};
use rawgraph::stages::hdrnet::slice_apply::COEFFS;
use rawgraph::stages::hdrnet::{coeffs, Hdrnet};
use rawgraph::stages::{compile, RunCtx};
use rawgraph::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Io {
    w: usize,
    h: usize,
    input: Vec<f32>,
    grid: Vec<f32>,
    guide: Vec<f32>,
    output: Vec<f32>,
}

fn io() -> Io {
    let mut t = Weights::load(fixture("hdrnet_tiny_io.safetensors")).unwrap();
    let shape = t.shape("input").unwrap().to_vec();
    let (h, w) = (shape[1], shape[2]);
    let gshape = t.shape("grid").unwrap().to_vec();
    Io {
        w,
        h,
        input: t.take("input", &[3, h, w]).unwrap(),
        grid: t.take("grid", &gshape).unwrap(),
        guide: t.take("guide", &[h, w]).unwrap(),
        output: t.take("output", &[3, h, w]).unwrap(),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn coefficients_guide_and_output_match_pytorch() {
    let model = Model::load(fixture("hdrnet_tiny.safetensors")).unwrap();
    let cfg = model.config().clone();
    assert_eq!((cfg.net_size, cfg.grid, cfg.luma_bins), (32, 8, 4));
    let io = io();
    // Grid: PyTorch (12, L, G, G) vs the Rust layout [gy][gx][z][c].
    let grid = coeffs::predict(&model, &io.input, io.w, io.h).unwrap();
    let (g, lb) = (cfg.grid, cfg.luma_bins);
    let mut torch_order = vec![0f32; grid.data.len()];
    for c in 0..COEFFS {
        for z in 0..lb {
            for gy in 0..g {
                for gx in 0..g {
                    torch_order[((c * lb + z) * g + gy) * g + gx] =
                        grid.data[((gy * g + gx) * lb + z) * COEFFS + c];
                }
            }
        }
    }
    let d = max_diff(&torch_order, &io.grid);
    assert!(d < 1e-4, "grid differs by {d}");
    let stage = Hdrnet::new(model);
    let n = io.w * io.h;
    let mut guide = vec![0f32; n];
    for y in 0..io.h {
        let row = |c: usize| &io.input[c * n + y * io.w..c * n + (y + 1) * io.w];
        stage
            .guide()
            .row(row(0), row(1), row(2), &mut guide[y * io.w..(y + 1) * io.w]);
    }
    let d = max_diff(&guide, &io.guide);
    assert!(d < 1e-5, "guide differs by {d}");
    let mut out = io.input.clone();
    stage.apply(&mut out, io.w, io.h).unwrap();
    let d = max_diff(&out, &io.output);
    assert!(d < 1e-4, "output differs by {d}");
    // The output is not the input: the test can fail.
    assert!(max_diff(&out, &io.input) > 0.05);
}

fn image(w: usize, h: usize, data: Vec<f32>) -> Value {
    Value::Image(Arc::new(Image {
        width: w,
        height: h,
        data,
        space: ColorSpace::LinearSrgb,
        wb_applied: None,
        meta: Arc::new(RawMeta::bayer("test", w, h, CfaPattern::Rggb)),
    }))
}

fn run_stage(model: &str, w: usize, h: usize, data: Vec<f32>) -> Vec<f32> {
    let st = compile("hdrnet", serde_json::json!({ "model": model })).unwrap();
    assert_eq!(
        st.infer(&[ValueDesc::image(w, h, ColorSpace::LinearSrgb)])
            .unwrap(),
        ValueDesc::image(w, h, ColorSpace::LinearSrgb)
    );
    let ctx = RunCtx { stage_id: "tm" };
    match st.run_cpu(&ctx, vec![image(w, h, data)]).unwrap() {
        Value::Image(i) => {
            assert_eq!((i.width, i.height), (w, h));
            i.data.clone()
        }
        v => panic!("expected an image, got {:?}", v.kind()),
    }
}

fn constant(w: usize, h: usize, v: f32) -> Vec<f32> {
    vec![v; 3 * w * h]
}

fn edge_cases(model: &str) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    for (w, h, v) in [
        (64, 48, 0.18),
        (64, 48, 0.0),
        (64, 48, 1.0),
        (64, 48, 4.0),
        (1, 1, 0.5),
        (3, 2, 0.5),
        (37, 23, 0.3),
        (250, 17, 0.05),
    ] {
        let o = run_stage(model, w, h, constant(w, h, v));
        assert!(
            o.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)),
            "{w}x{h} at {v}"
        );
        out.push((format!("{w}x{h}@{v}"), o));
    }
    // Hostile values count as black.
    let mut d = constant(20, 20, 0.5);
    d[3] = f32::NAN;
    d[10] = f32::INFINITY;
    d[11] = -5.0;
    let o = run_stage(model, 20, 20, d);
    assert!(o.iter().all(|x| x.is_finite()));
    out
}

#[test]
fn edge_cases_are_finite_with_the_fixture_model() {
    let p = fixture("hdrnet_tiny.safetensors");
    edge_cases(p.to_str().unwrap());
}

#[test]
fn bad_weights_are_typed_errors() {
    let mut bytes = std::fs::read(fixture("hdrnet_tiny.safetensors")).unwrap();
    bytes.truncate(bytes.len() / 2);
    let e = Weights::from_bytes("cut.safetensors", &bytes)
        .and_then(Model::from_weights)
        .unwrap_err();
    assert!(matches!(e, Error::Model { .. }), "{e}");
    // A dmdn file is not an hdrnet file.
    let e = compile(
        "hdrnet",
        serde_json::json!({ "model": fixture("nn_dmdn_tiny.safetensors") }),
    )
    .unwrap_err();
    assert!(e.contains("hdrnet"), "{e}");
    let e = compile(
        "hdrnet",
        serde_json::json!({ "model": "/nonexistent.safetensors" }),
    )
    .unwrap_err();
    assert!(e.contains("nonexistent"), "{e}");
}
