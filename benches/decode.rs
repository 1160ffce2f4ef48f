//! Raw decode throughput: a 12 MP 12-bit noisy Bayer frame (the demo scene,
//! ISO ~400 noise) written as an uncompressed DNG and as a lossless-JPEG
//! DNG (256-px tiles, as cameras and Adobe's converter write), read back
//! through `raw::decode::decode_file` (file read, pre-flight checks,
//! rawler, widening to the f32 mosaic). Reported in elements/s = pixels/s;
//! run with `RAYON_NUM_THREADS=1` for the per-core rate.
//!
//! The process runs as the CLI does (`memory::keep_freed_frames` and the
//! huge-page `FrameAllocator`): after the first iteration, frames reuse the
//! freed heap, as every file after the first of a batch does.
//!
//! `cargo bench --bench decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rawgraph::raw::decode::decode_file;
use rawgraph::raw::dng_write::{write_dng, DngOptions};
use rawgraph::raw::DEFAULT_MAX_MEGAPIXELS;
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};

#[global_allocator]
static ALLOC: rawgraph::memory::FrameAllocator = rawgraph::memory::FrameAllocator;

fn bench(c: &mut Criterion) {
    rawgraph::memory::keep_freed_frames();
    let (w, h) = (4000, 3000);
    let frame = mosaic_scene(&demo_scene(w, h), &CaptureParams::default(), "bench").expect("synth");
    let dir = tempfile::tempdir().expect("temp dir");
    let files = [
        ("dng_uncompressed_12mp", DngOptions::default()),
        ("dng_ljpeg_12mp", DngOptions::from_cli(None, true)),
    ];
    let mut g = c.benchmark_group("decode");
    g.sample_size(15);
    g.throughput(Throughput::Elements((w * h) as u64));
    for (name, opts) in files {
        let path = dir.path().join(format!("{name}.dng"));
        write_dng(&frame, &path, &opts).expect("write DNG");
        let back = decode_file(&path, DEFAULT_MAX_MEGAPIXELS, 1 << 30).expect("decode");
        assert_eq!(back.data, frame.data, "{name} does not round-trip");
        g.bench_function(name, |b| {
            b.iter(|| decode_file(&path, DEFAULT_MAX_MEGAPIXELS, 1 << 30).expect("decode"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
