//! `dmdn` inference (the `demosaic_denoise_learned` network) and its
//! building block, a 3x3 conv, on this machine's CPU.
//!
//! - conv3x3 64->64 and 24->24 at 256x256 / 512x512: GFLOP/s of the
//!   im2col + gemm path (compare with the ~100 GFLOP/s gemm peak);
//! - the shipped `fast` model at 1080p and 12 MP and `quality` at 1 MP
//!   (per-megapixel cost), for a few tile sizes.
//!
//! - the gated smoothing of `fastg` (`[1, 3, 1120, 1120]`, a 1024-px tile
//!   with its 48-px halo, radii 2 and 6) against the whole gated model on
//!   one such tile;
//! - the chroma smoothing of `fastc` (the same tile, guided filters of
//!   radii 2 and 4: the colour differences, their filters, the blend and
//!   the recombination), and `fastd`'s (chroma radii 2, 4, 8 and
//!   luminance guided filters of radii 2, 4, 8), at full and at half
//!   resolution.
//!
//! - the shipped `fast_raw` (`dmdn_unet` `fastb`, over the `rcd_mlri`
//!   base) at 12 MP with its default tile, the base included (the
//!   `demosaic_denoise_learned` stage of `pipelines/learned.yaml`), and the
//!   network alone on one default-tile window, with and without a
//!   [`BufferPool`] shared between calls (as the tiler shares one).
//!
//! `cargo bench --bench nn_dmdn`

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rawgraph::nn::chroma_guided::ChromaGuided;
use rawgraph::nn::dmdn::parse_cfa;
use rawgraph::nn::gated_smoothing::gated_smoothing_into;
use rawgraph::nn::logits::Logits;
use rawgraph::nn::{Activation, BufferPool, Conv2d, Dmdn, DmdnUnet, NoiseInput, Padding, Tensor};

fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn conv(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut g = c.benchmark_group("nn_conv3x3");
    g.sample_size(10);
    for &(ch, hw) in &[(64usize, 256usize), (24, 512)] {
        let x = Tensor::from_vec([1, ch, hw, hw], rand_vec(&mut rng, ch * hw * hw)).expect("x");
        let w = rand_vec(&mut rng, ch * ch * 9);
        let layer =
            Conv2d::new(w, vec![0.0; ch], [ch, ch, 3, 3], 1, Padding::Zero(1)).expect("conv");
        // Throughput in "elements" = FLOPs, so criterion reports FLOP/s.
        g.throughput(Throughput::Elements(
            (layer.flops_per_output_pixel() * hw * hw) as u64,
        ));
        g.bench_function(format!("{ch}to{ch}_{hw}x{hw}"), |b| {
            b.iter(|| layer.forward(&x, Activation::Relu).expect("forward"))
        });
    }
    g.finish();
}

fn models(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let cfa = parse_cfa("rggb").expect("cfa");
    let mut g = c.benchmark_group("nn_dmdn");
    g.sample_size(10);
    for (name, w, h, tiles) in [
        ("fast", 1920usize, 1080usize, &[384usize][..]),
        ("fast", 4000, 3000, &[256, 384, 512][..]),
        ("quality", 1000, 1000, &[384, 512][..]),
    ] {
        let p = dir.join(format!("demosaic_{name}.safetensors"));
        let model = match Dmdn::load(&p) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("SKIPPED {name}: {e}");
                continue;
            }
        };
        let mosaic: Vec<f32> = (0..w * h).map(|_| rng.random_range(0.0..1.0)).collect();
        g.throughput(Throughput::Elements((w * h) as u64));
        for &tile in tiles {
            g.bench_function(format!("{name}_{w}x{h}_tile{tile}"), |b| {
                b.iter(|| {
                    model
                        .run(&mosaic, h, w, cfa, NoiseInput::Uniform(0.02), tile)
                        .expect("run")
                })
            });
        }
    }
    g.finish();
}

fn gate(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 1120;
    let y = Tensor::from_vec([1, 3, n, n], rand_vec(&mut rng, 3 * n * n)).expect("y");
    let z = Tensor::from_vec([1, 2, n, n], rand_vec(&mut rng, 2 * n * n)).expect("z");
    let mut out = Tensor::zeros([1, 3, n, n]).expect("out");
    let mut g = c.benchmark_group("nn_gated_smoothing");
    g.sample_size(20);
    g.throughput(Throughput::Elements((n * n) as u64));
    g.bench_function(format!("r2r6_{n}x{n}"), |b| {
        b.iter(|| gated_smoothing_into(&y, Logits::Full(&z), &[2, 6], &mut out).expect("gate"))
    });
    g.finish();
    // The pool keeps the temporaries between rounds, as the tiler's does.
    let pool = BufferPool::new();
    let half = n.div_ceil(2);
    let noise = Tensor::from_vec(
        [1, 1, half, half],
        rand_vec(&mut rng, half * half)
            .iter()
            .map(|v| 0.02 * v.abs())
            .collect(),
    )
    .expect("noise");
    let filters = ChromaGuided::new(vec![2, 4], 0.5, 1e-6).expect("filters");
    let mut g = c.benchmark_group("nn_chroma_smoothing");
    g.sample_size(20);
    g.throughput(Throughput::Elements((n * n) as u64));
    g.bench_function(format!("gf_r2r4_{n}x{n}"), |b| {
        b.iter(|| {
            filters
                .run_into(&y, &noise, Logits::Full(&z), None, &pool, &mut out)
                .expect("chroma")
        })
    });
    // `fastd`'s stage: chroma radii 2, 4, 8 and luminance ones 2, 4, 8.
    let z3 = Tensor::from_vec([1, 3, n, n], rand_vec(&mut rng, 3 * n * n)).expect("z3");
    let zl = Tensor::from_vec([1, 3, n, n], rand_vec(&mut rng, 3 * n * n)).expect("zl");
    let filters = ChromaGuided::new(vec![2, 4, 8], 0.5, 1e-6)
        .and_then(|f| f.with_lum(vec![2, 4, 8], 0.25))
        .expect("filters");
    g.bench_function(format!("gf_r2r4r8_lum_r2r4r8_{n}x{n}"), |b| {
        b.iter(|| {
            filters
                .run_into(
                    &y,
                    &noise,
                    Logits::Full(&z3),
                    Some(Logits::Full(&zl)),
                    &pool,
                    &mut out,
                )
                .expect("chroma")
        })
    });
    // The same at half resolution (`guided_subsample` 2, `fastd` since run 36).
    let filters = filters.with_subsample(2).expect("filters");
    g.bench_function(format!("gf_half_r2r4r8_lum_r2r4r8_{n}x{n}"), |b| {
        b.iter(|| {
            filters
                .run_into(
                    &y,
                    &noise,
                    Logits::Full(&z3),
                    Some(Logits::Full(&zl)),
                    &pool,
                    &mut out,
                )
                .expect("chroma")
        })
    });
    g.finish();
}

fn unet(c: &mut Criterion) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("calibration/models/demosaic_fast_raw.safetensors");
    let model = match DmdnUnet::load(&p) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED fast_raw: {e}");
            return;
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let cfa = parse_cfa("rggb").expect("cfa");
    let mut g = c.benchmark_group("nn_dmdn_unet");
    g.sample_size(10);
    let (w, h) = (4000usize, 3000usize);
    let mosaic: Vec<f32> = (0..w * h).map(|_| rng.random_range(0.0..1.0)).collect();
    let tile = model.default_tile();
    g.throughput(Throughput::Elements((w * h) as u64));
    g.bench_function(format!("fast_raw_{w}x{h}_tile{tile}"), |b| {
        b.iter(|| {
            model
                .run(&mosaic, h, w, cfa, NoiseInput::Uniform(0.02), tile)
                .expect("run")
        })
    });
    // One window: the tile and its halo on both sides, aligned.
    let n = (tile + 2 * model.halo()).div_ceil(16) * 16;
    let m = Tensor::from_vec(
        [1, 1, n, n],
        (0..n * n).map(|_| rng.random_range(0.0..1.0)).collect(),
    )
    .expect("mosaic");
    let nc = model.config().noise_channels;
    let noise = Tensor::from_vec([1, nc, n / 2, n / 2], vec![0.02; nc * n * n / 4]).expect("noise");
    let base = Tensor::from_vec(
        [1, 3, n, n],
        (0..3 * n * n).map(|_| rng.random_range(0.0..1.0)).collect(),
    )
    .expect("base");
    g.throughput(Throughput::Elements((n * n) as u64));
    g.bench_function(format!("fast_raw_window{n}_unpooled"), |b| {
        b.iter(|| {
            model
                .forward(&m, &noise, Some(base.clone()))
                .expect("forward")
        })
    });
    let pool = BufferPool::new();
    g.bench_function(format!("fast_raw_window{n}_pooled"), |b| {
        b.iter(|| {
            // The base window on a pooled buffer too (as the tiler cuts it).
            let mut v = pool.take(base.data().len());
            v.extend_from_slice(base.data());
            let bw = Tensor::from_vec(base.shape(), v).expect("base window");
            let y = model
                .forward_pooled(&m, &noise, Some(bw), &pool)
                .expect("forward");
            pool.give(y);
        })
    });
    g.finish();
}

criterion_group!(benches, conv, models, gate, unet);
criterion_main!(benches);
