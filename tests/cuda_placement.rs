//! Backend placement without (or with) a CUDA device: `--backend cuda` is a
//! clean one-line "CUDA not available" error on a machine that cannot run
//! CUDA, `auto` runs on the CPU and marks the fallback in the timings, and
//! nothing panics. On a machine with a device the same tests check the
//! opposite: stages with kernels run on CUDA and report device time.

mod common;

use std::process::Command;

use rawgraph::backend::BackendChoice;
use rawgraph::graph::exec::cuda_available;
use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};

fn frame(w: usize, h: usize) -> rawgraph::raw::RawFrame {
    mosaic_scene(&demo_scene(w, h), &CaptureParams::default(), "synthetic").unwrap()
}

fn bench(backend: &str) -> (i32, String, String) {
    let o = Command::new(common::bin())
        .args([
            "bench",
            "--synthetic",
            "1920x1080",
            "-p",
            "fast",
            "--backend",
            backend,
            "--warmup",
            "0",
            "--iters",
            "1",
        ])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn bench_backend_cuda_is_one_clean_line_without_a_device() {
    let (code, stdout, stderr) = bench("cuda");
    assert!(!stderr.contains("panicked"), "{stderr}");
    match cuda_available() {
        Err(why) => {
            eprintln!("no CUDA here ({why}): checking the error path");
            assert_ne!(code, 0, "must fail: {stdout}");
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
            assert!(
                lines[0].starts_with("error: CUDA not available: "),
                "{stderr}"
            );
        }
        Ok(()) => {
            assert_eq!(code, 0, "{stderr}");
            assert!(stdout.contains("cuda"), "{stdout}");
        }
    }
}

#[test]
fn bench_backend_auto_falls_back_and_says_so() {
    let (code, stdout, stderr) = bench("auto");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    if cuda_available().is_err() {
        assert!(stdout.contains("cpu*"), "fallback not marked: {stdout}");
        assert!(stdout.contains("fell back to the CPU"), "{stdout}");
        assert!(!stdout.contains(" cuda "), "{stdout}");
    }
}

#[test]
fn auto_runs_on_cpu_and_marks_fallback_in_timings() {
    let p = Pipeline::resolve("fast").unwrap();
    let opts = RunOptions {
        backend: Some(BackendChoice::Auto),
        ..Default::default()
    };
    let out = graph::run(&p, frame(96, 64), &opts).unwrap();
    let cuda = cuda_available().is_ok();
    for t in &out.timings.stages {
        if t.op.contains("(skipped") {
            // Nothing to do for this frame (orient on an upright frame).
            assert_eq!(t.host_ms, 0.0, "{t:?}");
            continue;
        }
        if t.op.starts_with("copy_") {
            assert!(cuda, "copies only exist on CUDA runs");
            continue;
        }
        let has_kernel = !matches!(t.op.as_str(), "raw_source" | "orient");
        if cuda && has_kernel {
            assert_eq!(t.backend, "cuda", "{t:?}");
            assert!(t.device_ms.is_some(), "{t:?}");
            assert!(!t.fell_back);
        } else {
            assert_eq!(t.backend, "cpu", "{t:?}");
            assert!(t.fell_back, "{t:?}");
            assert!(t.device_ms.is_none());
        }
    }
    let table = out.timings.table();
    assert!(table.contains("cpu*"), "{table}");
    assert!(table.contains("fell back to the CPU"), "{table}");
}

#[test]
fn run_wide_cuda_is_a_typed_error_without_a_device() {
    let p = Pipeline::resolve("fast").unwrap();
    let opts = RunOptions {
        backend: Some(BackendChoice::Cuda),
        ..Default::default()
    };
    let r = graph::run(&p, frame(64, 48), &opts);
    match cuda_available() {
        Err(_) => {
            let e = r.unwrap_err();
            assert!(
                matches!(e, rawgraph::error::Error::CudaUnavailable(_)),
                "{e:?}"
            );
            assert!(e.to_string().starts_with("CUDA not available: "), "{e}");
        }
        Ok(()) => {
            let out = r.unwrap();
            assert!(out.timings.stages.iter().any(|t| t.backend == "cuda"));
        }
    }
}

#[test]
fn stage_level_cuda_in_yaml_is_a_typed_error_without_a_device() {
    let yaml = "version: 1\nname: t\nbackend: cpu\nstages:\n  - { id: raw, op: raw_source }\n  - { id: bl, op: black_level, backend: cuda }\n  - { id: dm, op: demosaic_bilinear }\noutputs: [dm]\n";
    let p = Pipeline::from_yaml(yaml, "t.yaml").unwrap();
    let r = graph::run(&p, frame(32, 32), &RunOptions::default());
    match cuda_available() {
        Err(_) => assert!(matches!(
            r.unwrap_err(),
            rawgraph::error::Error::CudaUnavailable(_)
        )),
        Ok(()) => assert_eq!(r.unwrap().timings.stages[1].backend, "cuda"),
    }
    // An op without a kernel asked for on CUDA by the stage itself.
    let yaml = "version: 1\nname: t\nstages:\n  - { id: raw, op: raw_source, backend: cuda }\n  - { id: bl, op: black_level }\n  - { id: dm, op: demosaic_bilinear }\noutputs: [dm]\n";
    let p = Pipeline::from_yaml(yaml, "t.yaml").unwrap();
    let e = graph::run(&p, frame(32, 32), &RunOptions::default()).unwrap_err();
    let want_no_backend = cuda_available().is_ok();
    match e {
        rawgraph::error::Error::NoBackend { .. } => assert!(want_no_backend),
        rawgraph::error::Error::CudaUnavailable(_) => assert!(!want_no_backend),
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn availability_check_is_stable_and_does_not_panic() {
    let a = cuda_available();
    let b = cuda_available();
    assert_eq!(a, b);
    if let Err(why) = a {
        assert!(!why.is_empty());
        if !rawgraph::backend::cuda::ENABLED {
            assert!(why.contains("without the `cuda` feature"), "{why}");
        }
    }
}

/// Without a device, `auto` runs the CPU fused segments: the same pixels
/// as a CPU run, bit for bit, and the timings say why they fell back. With
/// a device, `auto` makes the classical chain one device segment with one
/// upload and one download.
#[test]
fn auto_without_a_device_is_the_cpu_fused_path_with_the_reason() {
    let p = Pipeline::resolve("fast").unwrap();
    let auto = RunOptions {
        backend: Some(BackendChoice::Auto),
        ..Default::default()
    };
    let out = graph::run(&p, frame(96, 64), &auto).unwrap();
    match cuda_available() {
        Err(why) => {
            let cpu = graph::run(&p, frame(96, 64), &RunOptions::default()).unwrap();
            let (rawgraph::frame::Value::Image(a), rawgraph::frame::Value::Image(b)) =
                (&out.outputs[0].1, &cpu.outputs[0].1)
            else {
                panic!("expected images");
            };
            assert!(a
                .data
                .iter()
                .zip(&b.data)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(out.timings.stages.iter().any(|t| t.fused.is_some()));
            let reason = out.timings.fallback.as_deref().unwrap();
            assert_eq!(reason, format!("CUDA not available: {why}"));
            assert!(
                out.timings.table().contains(reason),
                "{}",
                out.timings.table()
            );
            assert!(cpu.timings.fallback.is_none());
        }
        Ok(()) => {
            let ops: Vec<&str> = out.timings.stages.iter().map(|t| t.op.as_str()).collect();
            let n = |op: &str| ops.iter().filter(|o| **o == op).count();
            assert_eq!((n("copy_h2d"), n("copy_d2h")), (1, 1), "{ops:?}");
        }
    }
}
