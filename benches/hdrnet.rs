//! Criterion benches of learned tone mapping at 1080p and 12 MP on the
//! built-in synthetic scene (linear sRGB): HDRnet per part (thumbnail,
//! coefficient network, guide, slice+apply) and whole, next to the
//! local_laplacian teacher. Run: `cargo bench --bench hdrnet`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rawgraph::stages::hdrnet::{coeffs, model_path, slice_apply, Hdrnet};
use rawgraph::stages::local_laplacian::{tone_map, Params};
use rawgraph::synth::demo_scene;

fn bench_tonemap(c: &mut Criterion) {
    let model = rawgraph::nn::hdrnet::Hdrnet::load(model_path("default")).unwrap();
    let stage = Hdrnet::new(model.clone());
    for (label, w, h) in [("1080p", 1920, 1080), ("12mp", 4000, 3000)] {
        let img = demo_scene(w, h).data;
        let mut group = c.benchmark_group(format!("tonemap_{label}"));
        group.sample_size(10);
        let s = model.config().net_size;
        group.bench_function("hdrnet_thumbnail", |b| {
            b.iter(|| coeffs::thumbnail(&img, w, h, s).unwrap())
        });
        let thumb = coeffs::thumbnail(&img, w, h, s).unwrap();
        group.bench_function("hdrnet_network", |b| {
            b.iter(|| model.forward(&thumb).unwrap())
        });
        let grid = coeffs::predict(&model, &img, w, h).unwrap();
        let n = w * h;
        group.bench_function("hdrnet_guide", |b| {
            let mut out = vec![0f32; w];
            b.iter(|| {
                for y in 0..h {
                    let row = |c: usize| &img[c * n + y * w..c * n + (y + 1) * w];
                    stage.guide().row(row(0), row(1), row(2), &mut out);
                }
            })
        });
        group.bench_function("hdrnet_slice_apply", |b| {
            b.iter_batched(
                || img.clone(),
                |mut v| slice_apply::slice_apply(&grid, stage.guide(), &mut v, w, h).unwrap(),
                BatchSize::LargeInput,
            )
        });
        group.bench_function("hdrnet_total", |b| {
            b.iter_batched(
                || img.clone(),
                |mut v| stage.apply(&mut v, w, h).unwrap(),
                BatchSize::LargeInput,
            )
        });
        group.bench_function("local_laplacian", |b| {
            b.iter(|| tone_map(&img, w, h, &Params::default()).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench_tonemap);
criterion_main!(benches);
