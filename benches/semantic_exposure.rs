//! Criterion benches of the semantic-exposure stages on a linear frame
//! (the built-in synthetic scene developed to linear sRGB) at 1080p and
//! 12 MP: sky_segment (learned, classical), face_detect (SeetaFace),
//! exposure_meter. Run: `cargo bench --bench semantic_exposure`.
//! The target: sky_segment under 40 ms per 12 MP frame.

use criterion::{criterion_group, criterion_main, Criterion};
use rawgraph::frame::Value;
use rawgraph::graph::exec::frame_to_value;
use rawgraph::stages::{self, RunCtx};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};

fn linear_frame(w: usize, h: usize) -> Value {
    let frame = mosaic_scene(&demo_scene(w, h), &CaptureParams::default(), "bench").unwrap();
    let mut v = frame_to_value(frame).unwrap();
    let ctx = RunCtx { stage_id: "prep" };
    for op in [
        "black_level",
        "white_balance",
        "demosaic_bilinear",
        "color_correct",
    ] {
        let st = stages::compile(op, serde_json::Value::Null).unwrap();
        v = st.run_cpu(&ctx, vec![v]).unwrap();
    }
    v
}

fn bench(c: &mut Criterion) {
    for (label, w, h) in [("1080p", 1920, 1080), ("12mp", 4000, 3000)] {
        let frame = linear_frame(w, h);
        let mut group = c.benchmark_group(format!("semantic_exposure_{label}"));
        group.sample_size(10);
        let ctx = RunCtx { stage_id: "bench" };
        let faces = stages::compile("face_detect", serde_json::Value::Null).unwrap();
        let sky = stages::compile("sky_segment", serde_json::Value::Null).unwrap();
        let face_v = faces.run_cpu(&ctx, vec![frame.clone()]).unwrap();
        let sky_v = sky.run_cpu(&ctx, vec![frame.clone()]).unwrap();
        for (name, params) in [
            (
                "sky_segment_learned",
                serde_json::json!({ "model": "learned" }),
            ),
            (
                "sky_segment_classical",
                serde_json::json!({ "model": "classical" }),
            ),
        ] {
            let st = stages::compile("sky_segment", params).unwrap();
            group.bench_function(name, |b| {
                b.iter(|| st.run_cpu(&ctx, vec![frame.clone()]).unwrap())
            });
        }
        group.bench_function("face_detect_seetaface", |b| {
            b.iter(|| faces.run_cpu(&ctx, vec![frame.clone()]).unwrap())
        });
        let meter = stages::compile("exposure_meter", serde_json::Value::Null).unwrap();
        group.bench_function("exposure_meter", |b| {
            b.iter(|| {
                meter
                    .run_cpu(&ctx, vec![frame.clone(), face_v.clone(), sky_v.clone()])
                    .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
