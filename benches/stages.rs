//! Criterion benches: every classical stage at 1080p and 12 MP on the
//! built-in synthetic scene. Run: `cargo bench --bench stages`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rawgraph::frame::Value;
use rawgraph::graph::exec::frame_to_value;
use rawgraph::stages::{self, RunCtx};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};

/// Runs `ops` in order on a fresh frame; returns the input of the last op.
fn prepare(w: usize, h: usize, ops: &[&str]) -> Value {
    let frame = mosaic_scene(&demo_scene(w, h), &CaptureParams::default(), "bench").unwrap();
    let mut v = frame_to_value(frame).unwrap();
    let ctx = RunCtx { stage_id: "prep" };
    for op in ops {
        let st = stages::compile(op, serde_json::Value::Null).unwrap();
        v = st.run_cpu(&ctx, vec![v]).unwrap();
    }
    v
}

fn bench_stages(c: &mut Criterion) {
    let chain = [
        "black_level",
        "white_balance",
        "demosaic_bilinear",
        "color_correct",
        "tone_curve",
        "srgb_encode",
    ];
    for (label, w, h) in [("1080p", 1920, 1080), ("12mp", 4000, 3000)] {
        let mut group = c.benchmark_group(format!("stages_{label}"));
        group.sample_size(10);
        // (op, ops to run first to build its input)
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("black_level", vec![]),
            ("white_balance", vec!["black_level"]),
            ("denoise_profiled", vec!["black_level"]),
            ("demosaic_bilinear", chain[..2].to_vec()),
            ("demosaic_mhc", chain[..2].to_vec()),
            ("demosaic_menon", chain[..2].to_vec()),
            ("color_correct", chain[..3].to_vec()),
            ("exposure_gain", chain[..4].to_vec()),
            ("tone_curve", chain[..4].to_vec()),
            ("srgb_encode", chain[..5].to_vec()),
            ("sharpen", chain.to_vec()),
        ];
        for (op, pre) in cases {
            let input = prepare(w, h, &pre);
            let st = stages::compile(op, serde_json::Value::Null).unwrap();
            let ctx = RunCtx { stage_id: op };
            group.bench_function(op, |b| {
                b.iter_batched(
                    || match &input {
                        // A private copy per iteration so in-place stages
                        // measure their real work, not a clone.
                        Value::Mosaic(m) => Value::Mosaic(Arc::new((**m).clone())),
                        Value::Image(i) => Value::Image(Arc::new((**i).clone())),
                        other => other.clone(),
                    },
                    |v| st.run_cpu(&ctx, vec![v]).unwrap(),
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_stages);
criterion_main!(benches);
