//! `noise_estimate` stage latency (estimate + sigma map) on normalised
//! synthetic mosaics at 1080p and 12 MP, plus the AWGN sigma estimator on a
//! 768x512 luma plane.
//!
//! `cargo bench --bench noise_estimate`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rawgraph::frame::{Mosaic, MosaicScale, Value};
use rawgraph::noise::awgn::{estimate_sigma, AwgnParams};
use rawgraph::raw::NoiseProfile;
use rawgraph::stages::{self, RunCtx};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};

fn normalised_mosaic(w: usize, h: usize) -> Mosaic {
    let cp = CaptureParams {
        noise: Some(NoiseProfile {
            a: [1e-3; 3],
            b: [1e-5; 3],
        }),
        ..Default::default()
    };
    let f = mosaic_scene(&demo_scene(w, h), &cp, "bench").expect("synth");
    let (black, white) = (f.meta.black.mean(), f.meta.white[0]);
    let data = f
        .data
        .f32()
        .iter()
        .map(|v| (v - black) / (white - black))
        .collect();
    Mosaic {
        width: w,
        height: h,
        cfa: f.meta.cfa().expect("bayer"),
        data,
        scale: MosaicScale::Normalized,
        wb_applied: None,
        meta: Arc::new(f.meta),
    }
}

fn bench(c: &mut Criterion) {
    let stage = stages::compile("noise_estimate", serde_json::Value::Null).expect("compile");
    let ctx = RunCtx { stage_id: "ne" };
    for (name, w, h) in [("1080p", 1920, 1080), ("12MP", 4000, 3000)] {
        let v = Value::Mosaic(Arc::new(normalised_mosaic(w, h)));
        c.bench_function(&format!("noise_estimate/cpu/{name}"), |b| {
            b.iter(|| stage.run_cpu(&ctx, vec![v.clone()]).expect("run"))
        });
    }
    let (w, h) = (768, 512);
    let img: Vec<f32> = (0..w * h)
        .map(|i| (i % w) as f32 * 0.2 + ((i * 7919) % 13) as f32)
        .collect();
    c.bench_function("awgn_sigma/768x512", |b| {
        b.iter(|| estimate_sigma(&img, w, h, &AwgnParams::default()).expect("awgn"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
