//! GPU benches (feature `cuda`, a CUDA device): device time per kernel of
//! the fused classical chain at 1080p and 12 MP with the frame resident on
//! the device, the copies, the per-stage path (upload + kernel + download),
//! and the implicit-GEMM convolution (throughput in FLOP: criterion's
//! "elem/s" are FLOP/s). Timings come from CUDA events (`iter_custom`
//! summing device time) or from wall time around a device sync.
//!
//! Run: `cargo bench --features cuda --bench cuda_stages`. Without a device
//! it prints "SKIPPED: no CUDA device" and measures nothing.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rawgraph::backend::cuda::{
    self, ClassicalChain, ColorSteps, ConvKernel, CudaConv2d, DemosaicMethod, DeviceTensor, RawPrep,
};
use rawgraph::frame::Mosaic;
use rawgraph::frame::Value;
use rawgraph::graph::exec::{cuda_available, frame_to_value};
use rawgraph::nn::{Activation, Padding, Tensor};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};

fn mosaic(w: usize, h: usize) -> Mosaic {
    let f = mosaic_scene(&demo_scene(w, h), &CaptureParams::default(), "bench").unwrap();
    match frame_to_value(f).unwrap() {
        Value::Mosaic(m) => (*m).clone(),
        _ => unreachable!(),
    }
}

fn chain(m: &Mosaic, method: DemosaicMethod) -> ClassicalChain {
    let tone = rawgraph::stages::tone_curve::build(serde_json::Value::Null).unwrap();
    ClassicalChain {
        prep: RawPrep {
            black_level: true,
            clip_negative: false,
            gains: Some(m.meta.wb_gains.unwrap_or([2.0, 1.0, 1.5])),
            clip_highlights: true,
        },
        demosaic: method,
        color: ColorSteps {
            matrix: Some(m.meta.camera_to_srgb().unwrap()),
            gain: Some(1.0),
            tone_lut: Some(tone.lut()),
            tone_max: tone.lut_max(),
            srgb_lut: Some(
                (0..=4096)
                    .map(|i| rawgraph::color::srgb_encode(i as f32 / 4096.0))
                    .collect(),
            ),
        },
    }
}

fn secs(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1e3)
}

fn bench_chain(c: &mut Criterion) {
    if let Err(why) = cuda_available() {
        eprintln!("SKIPPED: no CUDA device ({why})");
        return;
    }
    for (label, w, h) in [("1080p", 1920, 1080), ("12mp", 4000, 3000)] {
        let m = mosaic(w, h);
        let mut g = c.benchmark_group(format!("cuda_chain_{label}"));
        g.sample_size(20);
        g.throughput(Throughput::Elements((w * h) as u64));
        for method in [
            DemosaicMethod::Bilinear,
            DemosaicMethod::Mhc,
            DemosaicMethod::Menon { refine: true },
        ] {
            let ch = chain(&m, method);
            let mut p = ch.prepare(&m).unwrap();
            let name = match method {
                DemosaicMethod::Bilinear => "bilinear",
                DemosaicMethod::Mhc => "mhc",
                DemosaicMethod::Menon { .. } => "menon",
            };
            // Device time of each kernel (CUDA events), frame resident.
            type Pick = fn(&cuda::ChainTimes) -> f64;
            let picks: [(&str, Pick); 4] = [
                ("raw_prep", |t| t.raw_prep_ms),
                ("demosaic", |t| t.demosaic_ms),
                ("color_pipeline", |t| t.color_ms),
                ("kernels_total", |t| t.kernels_ms()),
            ];
            for (what, pick) in picks {
                g.bench_function(format!("{name}/{what}"), |b| {
                    b.iter_custom(|iters| {
                        let mut ms = 0.0;
                        for _ in 0..iters {
                            ms += pick(&p.run_kernels().unwrap());
                        }
                        secs(ms)
                    })
                });
            }
            // Wall time of the three launches + sync.
            g.bench_function(format!("{name}/wall_synced"), |b| {
                b.iter_custom(|iters| {
                    cuda::synchronize().unwrap();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        p.run_kernels().unwrap();
                    }
                    t0.elapsed()
                })
            });
        }
        // Copies: upload of the f32 mosaic, download of the f32 image.
        let ch = chain(&m, DemosaicMethod::Bilinear);
        g.bench_function("upload_mosaic_f32", |b| {
            b.iter_custom(|iters| {
                let mut ms = 0.0;
                for _ in 0..iters {
                    ms += ch.prepare(&m).unwrap().run_kernels().unwrap().upload_ms;
                }
                secs(ms)
            })
        });
        let mut p = ch.prepare(&m).unwrap();
        p.run_kernels().unwrap();
        g.bench_function("download_rgb_f32", |b| {
            b.iter_custom(|iters| {
                let mut ms = 0.0;
                for _ in 0..iters {
                    ms += p.download().unwrap().1;
                }
                secs(ms)
            })
        });
        // The per-stage path a pipeline run takes today (upload, kernel,
        // download per stage), wall time.
        g.bench_function("stage_path/demosaic_mhc_with_copies", |b| {
            b.iter(|| cuda::demosaic(&m, DemosaicMethod::Mhc).unwrap())
        });
        g.finish();
    }
}

fn bench_conv(c: &mut Criterion) {
    if cuda_available().is_err() {
        return;
    }
    let mut g = c.benchmark_group("cuda_conv2d");
    g.sample_size(20);
    // (label, cin, cout, k, h, w): the learned stages run on packed Bayer
    // (half resolution): 1080p -> 540x960, 12 MP -> 1500x2000.
    for (label, cin, cout, k, h, w) in [
        ("3x3_64to64_540x960", 64, 64, 3, 540, 960),
        ("3x3_64to64_1500x2000", 64, 64, 3, 1500, 2000),
        ("1x1_64to64_1500x2000", 64, 64, 1, 1500, 2000),
        ("3x3_4to64_1500x2000", 4, 64, 3, 1500, 2000),
    ] {
        let wts: Vec<f32> = (0..cout * cin * k * k)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.05)
            .collect();
        let bias = vec![0.01f32; cout];
        let conv =
            CudaConv2d::new(&wts, &bias, [cout, cin, k, k], 1, Padding::Zero(k / 2)).unwrap();
        let x = Tensor::from_vec(
            [1, cin, h, w],
            (0..cin * h * w).map(|i| (i % 251) as f32 / 251.0).collect(),
        )
        .unwrap();
        let (dx, _) = DeviceTensor::upload(&x).unwrap();
        let mut out = DeviceTensor::zeros(conv.output_shape(dx.shape).unwrap()).unwrap();
        let flops = conv.flops_per_output_pixel() * h * w;
        g.throughput(Throughput::Elements(flops as u64));
        for kernel in [ConvKernel::Auto, ConvKernel::Direct] {
            g.bench_function(format!("{label}/{kernel:?}"), |b| {
                b.iter_custom(|iters| {
                    cuda::synchronize().unwrap();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        conv.forward_into(&dx, &mut out, Activation::Relu, kernel)
                            .unwrap();
                    }
                    cuda::synchronize().unwrap();
                    t0.elapsed()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_chain, bench_conv);
criterion_main!(benches);
