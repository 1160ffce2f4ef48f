//! CPU/CUDA parity: every stage with a kernel runs on both backends on
//! seeded random inputs (odd sizes, values outside [0, 1], all four Bayer
//! phases) and on real inputs (the synthetic scene, and the shared DNGs when
//! present); outputs must agree within the tolerance stated per stage.
//! The convolution kernels and the fused classical chain are checked the
//! same way. Without a CUDA device every test prints
//! "SKIPPED: no CUDA device" and passes, unless `RAWGRAPH_REQUIRE_GPU=1`
//! is set (what `scripts/gpu_check.sh` does): then "no device" fails every
//! test. tests/cuda_emu.rs runs the same kernels through the host
//! emulator on every machine.
//!
//! Tolerances (max absolute difference on values normalised to white = 1):
//! the kernels are compiled without FMA contraction and with IEEE division
//! and evaluate the CPU expressions in the same order, so they agree to a
//! few ulps: 1e-5 (2e-5 where a LUT is interpolated; 1e-4 for auto
//! exposure, whose metering runs on the host either way); the fp16 convolution is compared with
//! a CPU reference on the same fp16-rounded inputs and weights, so only
//! the fp16 rounding of the output and the summation order differ: 2e-3
//! relative.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rawgraph::frame::{ColorSpace, Image, Mosaic, Value};
use rawgraph::graph::exec::{cuda_available, frame_to_value};
use rawgraph::raw::CfaPattern;
use rawgraph::stages::{compile, RunCtx};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};
use serde_json::json;

/// `Some(())` when CUDA can run here; otherwise prints the skip line, or
/// fails the test when `RAWGRAPH_REQUIRE_GPU=1`.
fn device_or_skip(test: &str) -> Option<()> {
    match cuda_available() {
        Ok(()) => Some(()),
        Err(why) if require_gpu() => {
            panic!("RAWGRAPH_REQUIRE_GPU=1 but there is no usable CUDA device ({test}: {why})")
        }
        Err(why) => {
            eprintln!("SKIPPED: no CUDA device ({test}: {why})");
            None
        }
    }
}

/// Whether `RAWGRAPH_REQUIRE_GPU=1` turns "no device" into a failure.
fn require_gpu() -> bool {
    std::env::var("RAWGRAPH_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Without the `cuda` feature every test here would skip; with
/// `RAWGRAPH_REQUIRE_GPU=1` that is a failure too.
#[test]
fn require_gpu_needs_the_cuda_feature() {
    if require_gpu() && !rawgraph::backend::cuda::ENABLED {
        panic!("RAWGRAPH_REQUIRE_GPU=1 but this test binary was built without --features cuda");
    }
}

fn ctx() -> RunCtx<'static> {
    RunCtx { stage_id: "parity" }
}

/// Mosaics in raw DN: a seeded random one per Bayer phase at an odd size,
/// the synthetic scene, and the shared DNGs when present.
fn mosaics_dn() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let base = mosaic_scene(&demo_scene(333, 211), &CaptureParams::default(), "scene").unwrap();
    out.push((
        "scene 333x211".to_string(),
        frame_to_value(base.clone()).unwrap(),
    ));
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let white = base.meta.white[1];
    for (k, cfa) in CfaPattern::ALL.into_iter().enumerate() {
        let (w, h) = (67 + 2 * k, 45 + k);
        let Value::Mosaic(m) = frame_to_value(base.clone()).unwrap() else {
            unreachable!()
        };
        let data = (0..w * h)
            .map(|_| rng.random_range(-0.05f32..1.3) * white)
            .collect();
        let m = Mosaic {
            width: w,
            height: h,
            cfa,
            data,
            ..(*m).clone()
        };
        out.push((
            format!("random {w}x{h} {}", cfa.name()),
            Value::Mosaic(Arc::new(m)),
        ));
    }
    for name in [
        "canon550d_colorchart.dng",
        "photoprism_canon_eos_6d_lossy_linear.dng",
    ] {
        let Some(path) = common::data(&format!("raw/dng/{name}")) else {
            continue;
        };
        match rawgraph::input::open(&path, None, &Default::default()) {
            Ok(f) => match frame_to_value(f) {
                Ok(v) => out.push((name.to_string(), v)),
                Err(e) => eprintln!("{name}: not a Bayer frame ({e}), skipped"),
            },
            Err(e) => eprintln!("{name}: {e}, skipped"),
        }
    }
    out
}

fn run_cpu(op: &str, params: serde_json::Value, v: Value) -> Value {
    compile(op, params)
        .unwrap()
        .run_cpu(&ctx(), vec![v])
        .unwrap()
}

/// Black-level-normalised mosaics (CPU black level of [`mosaics_dn`]).
fn mosaics_norm() -> Vec<(String, Value)> {
    mosaics_dn()
        .into_iter()
        .map(|(l, v)| (l, run_cpu("black_level", json!(null), v)))
        .collect()
}

/// Camera-RGB images: CPU MHC of the normalised mosaics, plus a random one.
fn images_camera() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = mosaics_norm()
        .into_iter()
        .map(|(l, v)| {
            (
                format!("{l}, demosaiced"),
                run_cpu("demosaic_mhc", json!(null), v),
            )
        })
        .collect();
    let Value::Image(img) = &out[0].1 else {
        unreachable!()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (w, h) = (101, 77);
    let random = Image {
        width: w,
        height: h,
        data: (0..3 * w * h)
            .map(|_| rng.random_range(-0.1f32..1.6))
            .collect(),
        space: ColorSpace::Camera,
        wb_applied: None,
        meta: img.meta.clone(),
    };
    out.push(("random image 101x77".into(), Value::Image(Arc::new(random))));
    out
}

/// Linear sRGB images (CPU colour correction of [`images_camera`]).
fn images_linear() -> Vec<(String, Value)> {
    images_camera()
        .into_iter()
        .map(|(l, v)| {
            (
                format!("{l}, colour-corrected"),
                run_cpu("color_correct", json!(null), v),
            )
        })
        .collect()
}

fn data_of(v: &Value) -> std::borrow::Cow<'_, [f32]> {
    match v {
        Value::Mosaic(m) => m.data.f32(),
        Value::Image(i) => std::borrow::Cow::Borrowed(&i.data),
        other => panic!("unexpected value {other:?}"),
    }
}

/// Runs `op` on both backends and compares.
fn check(op: &str, params: serde_json::Value, label: &str, input: Value, tol: f32) {
    let stage = compile(op, params).unwrap();
    assert!(stage.has_cuda(), "{op} has no kernel");
    let cpu = stage.run_cpu(&ctx(), vec![input.clone()]).unwrap();
    let gpu = stage.run_cuda(&ctx(), vec![input]).unwrap();
    assert_eq!(cpu.desc(), gpu.desc(), "{op} on {label}: shapes differ");
    if let (Value::Mosaic(a), Value::Mosaic(b)) = (&cpu, &gpu) {
        assert_eq!(a.scale, b.scale);
        assert_eq!(a.wb_applied, b.wb_applied);
    }
    let (a, b) = (data_of(&cpu), data_of(&gpu));
    assert_eq!(a.len(), b.len());
    let (mut worst, mut at) = (0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let d = (x - y).abs();
        if d > worst || d.is_nan() {
            worst = d;
            at = i;
        }
    }
    eprintln!("{op} on {label}: max |cpu - cuda| = {worst:.3e}");
    assert!(
        worst <= tol,
        "{op} on {label}: |cpu - cuda| = {worst:e} > {tol:e} at {at} (cpu {}, cuda {})",
        a[at],
        b[at]
    );
}

/// One parity test: `parity!(name, op, params, inputs, tolerance)`.
macro_rules! parity {
    ($name:ident, $op:expr, $params:expr, $inputs:expr, $tol:expr) => {
        #[test]
        fn $name() {
            if device_or_skip(stringify!($name)).is_none() {
                return;
            }
            for (label, input) in $inputs {
                check($op, $params, &label, input, $tol);
            }
        }
    };
}

parity!(black_level, "black_level", json!(null), mosaics_dn(), 1e-5);
parity!(
    black_level_clip,
    "black_level",
    json!({"clip_negative": true}),
    mosaics_dn(),
    1e-5
);
parity!(
    white_balance_manual,
    "white_balance",
    json!({"mode": "manual", "gains": [2.1, 1.0, 1.6]}),
    mosaics_norm(),
    1e-5
);
parity!(
    white_balance_auto_no_clip,
    "white_balance",
    json!({"clip_highlights": false}),
    mosaics_norm(),
    1e-5
);
parity!(
    demosaic_bilinear,
    "demosaic_bilinear",
    json!(null),
    mosaics_norm(),
    1e-5
);
parity!(
    demosaic_mhc,
    "demosaic_mhc",
    json!(null),
    mosaics_norm(),
    1e-5
);
parity!(
    demosaic_menon,
    "demosaic_menon",
    json!(null),
    mosaics_norm(),
    1e-5
);
parity!(
    demosaic_menon_no_refine,
    "demosaic_menon",
    json!({"refine": false}),
    mosaics_norm(),
    1e-5
);
parity!(
    color_correct,
    "color_correct",
    json!(null),
    images_camera(),
    1e-5
);
parity!(
    exposure_gain_manual,
    "exposure_gain",
    json!({"ev": 1.3}),
    images_linear(),
    2e-5
);
parity!(
    exposure_gain_auto,
    "exposure_gain",
    json!({"mode": "auto"}),
    images_linear(),
    1e-4
);
parity!(tone_curve, "tone_curve", json!(null), images_linear(), 2e-5);
parity!(
    tone_curve_white_point,
    "tone_curve",
    json!({"knee": 0.4, "white_point": 4.0}),
    images_linear(),
    2e-5
);
parity!(
    srgb_encode,
    "srgb_encode",
    json!(null),
    images_linear(),
    2e-5
);

parity!(hdrnet, "hdrnet", json!(null), images_linear(), 1e-5);

/// The executor's device-resident segment (src/graph/device_segment.rs)
/// against the CPU fused segment: `fast` and a full classical chain (black
/// level .. sRGB encode, each demosaic with a kernel) with `--backend
/// cuda`, one upload and one download per segment, pixels within 1e-4
/// (the fused chain's tolerance). tests/cuda_emu.rs runs the same
/// comparison through the host emulation.
#[test]
fn device_segment_matches_cpu_fused_segment() {
    use rawgraph::backend::BackendChoice;
    use rawgraph::graph::exec::run_value;
    use rawgraph::graph::{Pipeline, RunOptions};
    if device_or_skip("device_segment_matches_cpu_fused_segment").is_none() {
        return;
    }
    let cuda = RunOptions {
        backend: Some(BackendChoice::Cuda),
        ..Default::default()
    };
    let mut pipelines = vec![("fast".to_string(), Pipeline::resolve("fast").unwrap())];
    for dm in [
        "demosaic_bilinear",
        "demosaic_mhc",
        "demosaic_menon, params: { refine: true }",
    ] {
        let yaml = format!(
            "version: 1\nname: seg\nstages:\n  - {{ id: raw, op: raw_source }}\n  - {{ id: bl, op: black_level }}\n  - {{ id: wb, op: white_balance, params: {{ mode: manual, gains: [2.0, 1.0, 1.5], clip_highlights: true }} }}\n  - {{ id: dm, op: {dm} }}\n  - {{ id: cc, op: color_correct }}\n  - {{ id: exp, op: exposure_gain, params: {{ mode: manual, ev: 0.5 }} }}\n  - {{ id: tone, op: tone_curve }}\n  - {{ id: out, op: srgb_encode }}\noutputs: [out]\n"
        );
        pipelines.push((
            dm.to_string(),
            Pipeline::from_yaml(&yaml, "seg.yaml").unwrap(),
        ));
    }
    let image = |o: &rawgraph::graph::RunOutput| match &o.outputs[0].1 {
        Value::Image(i) => i.data.clone(),
        other => panic!("expected an image, got {other:?}"),
    };
    for (name, p) in &pipelines {
        for (label, v) in mosaics_dn() {
            let cpu = run_value(p, v.clone(), "t", &RunOptions::default()).unwrap();
            let gpu =
                run_value(p, v, "t", &cuda).unwrap_or_else(|e| panic!("{name} on {label}: {e}"));
            let rows = &gpu.timings.stages;
            let count = |op: &str| rows.iter().filter(|t| t.op == op).count();
            assert_eq!(
                (count("copy_h2d"), count("copy_d2h")),
                (1, 1),
                "{name} on {label}: {rows:?}"
            );
            let seg: Vec<_> = rows.iter().filter(|t| t.fused.is_some()).collect();
            assert!(seg.len() >= 4, "{name} on {label}: {rows:?}");
            assert!(
                seg.iter()
                    .all(|t| t.backend == "cuda" && t.device_ms.is_some()),
                "{rows:?}"
            );
            let worst = image(&cpu)
                .iter()
                .zip(&image(&gpu))
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!(
                "device segment {name} on {label}: max |cpu - cuda| = {worst:.2e}, {}",
                seg.iter()
                    .map(|t| format!("{} {:.3} ms", t.id, t.device_ms.unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            assert!(worst <= 1e-4, "{name} on {label}: {worst:e}");
        }
    }
}

#[cfg(feature = "cuda")]
mod device_only {
    use super::*;
    use rawgraph::backend::cuda::{
        ClassicalChain, ColorSteps, ConvKernel, CudaConv2d, DemosaicMethod, RawPrep,
    };
    use rawgraph::nn::{Activation, Conv2d, Padding, Tensor};

    fn round16(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
    }

    /// `ck = [cin, cout, kernel, stride]`.
    fn conv_case(ck: [usize; 4], padding: Padding, act: Activation, hw: (usize, usize), seed: u64) {
        let [cin, cout, k, stride] = ck;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let fan = (cin * k * k) as f32;
        let w: Vec<f32> = (0..cout * cin * k * k)
            .map(|_| rng.random_range(-1f32..1.0) / fan.sqrt())
            .collect();
        let b: Vec<f32> = (0..cout).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let x: Vec<f32> = (0..2 * cin * hw.0 * hw.1)
            .map(|_| rng.random_range(-1f32..1.0))
            .collect();
        let (w16, x16) = (round16(&w), round16(&x));
        let x = Tensor::from_vec([2, cin, hw.0, hw.1], x16).unwrap();
        let cpu = Conv2d::new(w16.clone(), b.clone(), [cout, cin, k, k], stride, padding)
            .unwrap()
            .forward(&x, act)
            .unwrap();
        let gpu = CudaConv2d::new(&w16, &b, [cout, cin, k, k], stride, padding).unwrap();
        for kernel in [ConvKernel::Auto, ConvKernel::Direct] {
            let (y, t) = gpu.forward_host(&x, act, kernel).unwrap();
            assert_eq!(y.shape(), cpu.shape());
            let worst = y
                .data()
                .iter()
                .zip(cpu.data())
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            eprintln!(
                "conv {cin}->{cout} {k}x{k}/{stride} {padding:?} {kernel:?}: max rel diff {worst:.2e}, kernel {:.3} ms",
                t.kernel_ms
            );
            assert!(worst <= 2e-3, "{kernel:?}: {worst}");
        }
    }

    #[test]
    fn conv2d_matches_cpu() {
        if device_or_skip("conv2d_matches_cpu").is_none() {
            return;
        }
        conv_case(
            [64, 64, 3, 1],
            Padding::Zero(1),
            Activation::Relu,
            (37, 70),
            1,
        );
        conv_case(
            [4, 64, 3, 1],
            Padding::Reflect(1),
            Activation::LeakyRelu(0.1),
            (33, 29),
            2,
        );
        conv_case(
            [48, 16, 1, 1],
            Padding::Zero(0),
            Activation::None,
            (20, 31),
            3,
        );
        conv_case(
            [16, 24, 3, 2],
            Padding::Zero(1),
            Activation::Sigmoid,
            (41, 40),
            4,
        );
        conv_case(
            [67, 3, 3, 1],
            Padding::Reflect(1),
            Activation::None,
            (19, 23),
            5,
        );
    }

    /// HDRnet's fused guide + slice + apply kernel against the CPU
    /// `slice_apply` on random grids and guides: odd sizes, an image
    /// smaller than one cell, inputs outside [0, 1]. Tolerance 1e-5.
    #[test]
    fn bilateral_slice_apply_matches_cpu() {
        use rawgraph::nn::hdrnet::GuideWeights;
        use rawgraph::stages::hdrnet::{slice_apply, BilateralGrid, Guide};
        if device_or_skip("bilateral_slice_apply_matches_cpu").is_none() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (k, &(w, h, gw, gh, gd, knots)) in [
            (333usize, 211usize, 16usize, 16usize, 8usize, 16usize),
            (257, 97, 16, 16, 8, 4),
            (7, 5, 16, 16, 8, 16),
            (1, 1, 4, 3, 2, 1),
            (1024, 768, 16, 16, 8, 16),
        ]
        .iter()
        .enumerate()
        {
            let data: Vec<f32> = (0..gw * gh * gd * slice_apply::COEFFS)
                .map(|_| rng.random_range(-0.5f32..1.5))
                .collect();
            let grid = BilateralGrid {
                width: gw,
                height: gh,
                depth: gd,
                data,
            };
            let mut r3 = || [0; 3].map(|_| rng.random_range(-0.3f32..1.2));
            let ccm = [r3(), r3(), r3()];
            let ccm_bias = r3();
            let mix_w = r3();
            let gw8 = GuideWeights {
                ccm,
                ccm_bias,
                shifts: (0..3 * knots)
                    .map(|_| rng.random_range(0f32..1.0))
                    .collect(),
                slopes: (0..3 * knots)
                    .map(|_| rng.random_range(-0.5f32..1.0))
                    .collect(),
                mix_w,
                mix_b: rng.random_range(-0.1f32..0.1),
                knots,
            };
            let img: Vec<f32> = (0..3 * w * h)
                .map(|_| rng.random_range(-0.1f32..2.0))
                .collect();
            let mut cpu = img.clone();
            slice_apply::slice_apply(&grid, &Guide::new(&gw8), &mut cpu, w, h).unwrap();
            let mut gpu = img;
            let t = rawgraph::backend::cuda::bilateral_slice_apply(
                &mut gpu,
                w,
                h,
                &grid.data,
                [gw, gh, gd],
                &gw8,
            )
            .unwrap();
            let worst = cpu
                .iter()
                .zip(&gpu)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!(
                "bilateral_slice_apply case {k} {w}x{h} grid {gw}x{gh}x{gd}: max |cpu - cuda| = {worst:.3e}, kernel {:.3} ms",
                t.kernel_ms
            );
            assert!(worst <= 1e-5, "case {k}: {worst:e}");
        }
    }

    #[test]
    fn fused_chain_matches_cpu_stages() {
        if device_or_skip("fused_chain_matches_cpu_stages").is_none() {
            return;
        }
        let gains = [2.0f32, 1.0, 1.5];
        for (label, input) in mosaics_dn() {
            let Value::Mosaic(m) = &input else {
                unreachable!()
            };
            let mut v = input.clone();
            for (op, p) in [
                ("black_level", json!(null)),
                ("white_balance", json!({"mode": "manual", "gains": gains})),
                ("demosaic_mhc", json!(null)),
                ("color_correct", json!(null)),
                ("exposure_gain", json!({"ev": 0.5})),
                ("tone_curve", json!(null)),
                ("srgb_encode", json!(null)),
            ] {
                v = run_cpu(op, p, v);
            }
            let tone = rawgraph::stages::tone_curve::build(json!(null)).unwrap();
            let srgb: Vec<f32> = (0..=4096)
                .map(|i| rawgraph::color::srgb_encode(i as f32 / 4096.0))
                .collect();
            let chain = ClassicalChain {
                prep: RawPrep {
                    black_level: true,
                    clip_negative: false,
                    gains: Some(gains),
                    clip_highlights: true,
                },
                demosaic: DemosaicMethod::Mhc,
                color: ColorSteps {
                    matrix: Some(m.meta.camera_to_srgb().unwrap()),
                    gain: Some(2f32.powf(0.5)),
                    tone_lut: Some(tone.lut()),
                    tone_max: tone.lut_max(),
                    srgb_lut: Some(srgb),
                },
            };
            let (rgb, t) = chain.run(m).unwrap();
            let worst = rgb
                .iter()
                .zip(data_of(&v).iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!("fused chain on {label}: max diff {worst:.2e}, {t:?}");
            assert!(worst <= 1e-4, "{label}: {worst}");
        }
    }
}
