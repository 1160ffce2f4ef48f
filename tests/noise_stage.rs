//! The `noise_estimate` stage through the graph, its profile sources, the
//! DNG NoiseProfile tag, degenerate frames, and the real Huawei P9 dumps.
//! Tests needing the shared data say loudly when they skip.

use std::path::{Path, PathBuf};

use rawgraph::eval::data_dir;
use rawgraph::frame::{NoiseEstimate, Value};
use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::noise::raw_estimator::{estimate, EstimatorParams};
use rawgraph::noise::{std_at, MID_GREY};
use rawgraph::raw::sidecar::{decode_dump, BlackSpec, Packing, Sidecar};
use rawgraph::raw::{decode, BlackLevel, CfaPattern, NoiseProfile, RawFrame, RawMeta};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams, LinearImage};

fn data(rel: &str) -> Option<PathBuf> {
    let p = data_dir().join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("RAWGRAPH_REQUIRE_DATA").is_some() {
        panic!("required test data {} is missing", p.display());
    }
    eprintln!(
        "\n*** SKIPPED: test data {} not found (set RAWGRAPH_DATA) ***\n",
        p.display()
    );
    None
}

fn pipeline(params: &str) -> Pipeline {
    let y = format!(
        "version: 1\nname: ne\nstages:\n  - {{ id: raw, op: raw_source }}\n  \
         - {{ id: bl, op: black_level }}\n  - {{ id: ne, op: noise_estimate, params: {params} }}\n\
         outputs: [ne]\n"
    );
    Pipeline::from_yaml(&y, "test").expect("pipeline")
}

fn run(p: &Pipeline, f: RawFrame) -> rawgraph::Result<std::sync::Arc<NoiseEstimate>> {
    let out = graph::run(p, f, &RunOptions::default())?;
    match out.outputs.into_iter().next() {
        Some((_, Value::Noise(n))) => Ok(n),
        other => panic!("not a noise value: {other:?}"),
    }
}

fn assert_sane(n: &NoiseEstimate) {
    assert!(
        n.profile
            .a
            .iter()
            .chain(&n.profile.b)
            .all(|v| v.is_finite() && *v >= 0.0),
        "{:?}",
        n.profile
    );
    assert!(n.sigma_map.iter().all(|v| v.is_finite() && *v >= 0.0));
    assert_eq!(n.sigma_map.len(), n.map_width * n.map_height);
}

fn synthetic(w: usize, h: usize, a: f64, b: f64, seed: u64) -> RawFrame {
    let cp = CaptureParams {
        noise: Some(NoiseProfile {
            a: [a; 3],
            b: [b; 3],
        }),
        seed,
        ..Default::default()
    };
    mosaic_scene(&demo_scene(w, h), &cp, "test").expect("synth")
}

/// A frame from DN values with black 64, white 1023, RGGB.
fn frame_from(w: usize, h: usize, dn: impl Fn(usize, usize) -> f32) -> RawFrame {
    let mut meta = RawMeta::bayer("test", w, h, CfaPattern::Rggb);
    meta.black = BlackLevel::uniform(64.0);
    meta.white = [1023.0; 3];
    meta.bits = 10;
    let data = (0..w * h).map(|i| dn(i % w, i / w)).collect();
    RawFrame { meta, data }
}

#[test]
fn estimate_matches_truth_on_demo_scene() {
    let (a, b) = (2e-3, 2e-5);
    let n = run(&pipeline("{}"), synthetic(1024, 768, a, b, 7)).unwrap();
    assert_sane(&n);
    assert_eq!(n.source, "estimate");
    let truth = NoiseProfile {
        a: [a; 3],
        b: [b; 3],
    };
    for c in 0..3 {
        let r = std_at(&n.profile, c, MID_GREY) / std_at(&truth, c, MID_GREY);
        assert!(
            (r - 1.0).abs() < 0.1,
            "colour {c}: ratio {r} ({:?})",
            n.profile
        );
    }
    assert_eq!((n.map_width, n.map_height), (16, 12));
}

#[test]
fn profile_sources() {
    // The synthetic frame carries its true profile like a DNG tag.
    let f = synthetic(512, 384, 1e-3, 1e-5, 3);
    let n = run(&pipeline("{ source: profile }"), f.clone()).unwrap();
    assert_eq!(n.source, "dng_profile");
    assert_eq!(n.profile.a, [1e-3; 3]);
    let n = run(&pipeline("{ source: estimate_and_compare }"), f.clone()).unwrap();
    assert!(
        n.source.starts_with("estimate; vs dng_profile: std ratio"),
        "{}",
        n.source
    );
    // No tag and no calibration: a clear error, not a panic.
    let mut g = f.clone();
    g.meta.noise_profile = None;
    g.meta.make = "Nobody".into();
    let e = run(&pipeline("{ source: profile }"), g.clone()).unwrap_err();
    assert!(e.to_string().contains("no DNG NoiseProfile"), "{e}");
    let n = run(&pipeline("{ source: estimate_and_compare }"), g.clone()).unwrap();
    assert!(n.source.contains("no reference"), "{}", n.source);
    // auto: the tag when present, otherwise an estimate.
    let n = run(&pipeline("{ source: auto }"), f.clone()).unwrap();
    assert_eq!(n.source, "dng_profile");
    assert_eq!(n.profile.a, [1e-3; 3]);
    let n = run(&pipeline("{ source: auto }"), g).unwrap();
    assert!(
        n.source.starts_with("estimate") && n.source.ends_with("no profile found"),
        "{}",
        n.source
    );
    assert_sane(&n);
    // Unknown params are build errors.
    let y = "version: 1\nname: x\nstages:\n  - { id: raw, op: raw_source }\n  - { id: ne, op: noise_estimate, params: { sorce: profile } }\noutputs: [ne]\n";
    assert!(Pipeline::from_yaml(y, "x").is_err());
    // A mosaic that skipped black_level is refused.
    let y = "version: 1\nname: x\nstages:\n  - { id: raw, op: raw_source }\n  - { id: ne, op: noise_estimate }\noutputs: [ne]\n";
    let p = Pipeline::from_yaml(y, "x").unwrap();
    assert!(graph::run(&p, f, &RunOptions::default()).is_err());
}

#[test]
fn profile_file_with_iso_fit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cam.yaml");
    std::fs::write(
        &path,
        "version: 1\nmake: rawgraph\nmodel: synthetic\nlevels:\n  - { iso: 100, a: [1e-4, 1e-4, 1e-4], b: [1e-6, 1e-6, 1e-6] }\n  - { iso: 400, a: [4e-4, 4e-4, 4e-4], b: [1e-5, 1e-5, 1e-5] }\n",
    )
    .unwrap();
    let f = synthetic(256, 192, 1e-3, 1e-5, 4);
    let params = format!("{{ source: profile, profile_file: '{}' }}", path.display());
    let n = run(&pipeline(&params), f.clone()).unwrap();
    // ISO 100 (synthetic frames say so): the exact level.
    assert_eq!(n.profile.a, [1e-4; 3]);
    assert!(n.source.contains("level ISO 100"), "{}", n.source);
    // Lookup by make/model in a calibration folder.
    let mut g = f;
    g.meta.noise_profile = None;
    let params = format!(
        "{{ source: profile, calibration_dir: '{}' }}",
        dir.path().display()
    );
    let n = run(&pipeline(&params), g).unwrap();
    assert!(n.source.starts_with("calibration"), "{}", n.source);
    // A broken profile file fails at build time.
    std::fs::write(&path, "version: 1\nmake: x\n").unwrap();
    let y = format!(
        "version: 1\nname: x\nstages:\n  - {{ id: raw, op: raw_source }}\n  - {{ id: ne, op: noise_estimate, params: {{ profile_file: '{}' }} }}\noutputs: [ne]\n",
        path.display()
    );
    assert!(Pipeline::from_yaml(&y, "x").is_err());
}

#[test]
fn degenerate_frames_never_nan_or_panic() {
    let p = pipeline("{}");
    // Constant.
    let n = run(&p, frame_from(256, 256, |_, _| 300.0)).unwrap();
    assert_sane(&n);
    // a = 0; b = the 10-bit quantisation floor, (1 / 959)² / 12.
    let quant = 1.0 / (12.0 * 959.0f64 * 959.0);
    assert!(
        n.profile.a.iter().all(|v| *v < 1e-12)
            && n.profile.b.iter().all(|v| (v / quant - 1.0).abs() < 1e-3),
        "{:?}",
        n.profile
    );
    // Flat noisy (one level): a, b not separable, the std at that level right.
    let scene = LinearImage {
        width: 256,
        height: 256,
        data: vec![0.3; 3 * 256 * 256],
    };
    let cp = CaptureParams {
        noise: Some(NoiseProfile {
            a: [1e-3; 3],
            b: [1e-5; 3],
        }),
        ..Default::default()
    };
    let flat = mosaic_scene(&scene, &cp, "flat").unwrap();
    let n = run(&p, flat).unwrap();
    assert_sane(&n);
    assert!(n.source.contains("not separable"), "{}", n.source);
    // Uniform bounded noise piles up on its extremes exactly like clipping:
    // refused with a typed error or measured, never NaN.
    let mut k = 0u64;
    let uni = frame_from(256, 256, |_, _| 0.0);
    let mut uni = uni;
    for v in uni.data.f32_mut().iter_mut() {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *v = 400.0 + ((k >> 33) % 21) as f32 - 10.0;
    }
    if let Ok(n) = run(&p, uni) {
        assert_sane(&n);
    }
    // Strong texture everywhere: fine colour checks plus noise.
    let (w, h) = (256, 256);
    let mut data = vec![0f32; 3 * w * h];
    for y in 0..h {
        for x in 0..w {
            let on = (x / 3 + y / 5) % 2 == 0;
            for c in 0..3 {
                data[c * w * h + y * w + x] = if on {
                    0.7 - 0.2 * c as f32
                } else {
                    0.08 + 0.1 * c as f32
                };
            }
        }
    }
    let tex = mosaic_scene(
        &LinearImage {
            width: w,
            height: h,
            data,
        },
        &cp,
        "tex",
    )
    .unwrap();
    assert_sane(&run(&p, tex).unwrap());
    // A noiseless bounded pattern (extremes repeat like clipping): Ok or a
    // typed error, never NaN.
    let pat = frame_from(256, 256, |x, y| {
        64.0 + if (x / 3 + y / 5) % 2 == 0 {
            900.0
        } else {
            100.0
        } + ((x * 7 + y * 13) % 5) as f32
    });
    if let Ok(n) = run(&p, pat) {
        assert_sane(&n);
    }
    // Mostly clipped: white everywhere except a noisy ramp strip.
    let mut data = vec![2.0f32; 3 * w * h];
    for y in 200..h {
        for x in 0..w {
            for c in 0..3 {
                data[c * w * h + y * w + x] = 0.1 + 0.5 * x as f32 / w as f32;
            }
        }
    }
    let clip = mosaic_scene(
        &LinearImage {
            width: w,
            height: h,
            data,
        },
        &cp,
        "clip",
    )
    .unwrap();
    let n = run(&p, clip).unwrap();
    assert_sane(&n);
    let truth = NoiseProfile {
        a: [1e-3; 3],
        b: [1e-5; 3],
    };
    let r = std_at(&n.profile, 1, MID_GREY) / std_at(&truth, 1, MID_GREY);
    assert!((r - 1.0).abs() < 0.2, "clipped frame: G std ratio {r}");
    // Entirely clipped: a typed error.
    assert!(run(&p, frame_from(128, 128, |_, _| 1023.0)).is_err());
    // Tiny 64x64.
    assert_sane(&run(&p, synthetic(64, 64, 1e-3, 1e-5, 2)).unwrap());
    // Too small for the estimator: a typed error.
    assert_sane(&run(&p, synthetic(16, 16, 1e-3, 1e-5, 2)).unwrap());
    assert!(run(&p, synthetic(12, 12, 1e-3, 1e-5, 2)).is_err());
}

#[test]
fn linear_raw_dng_noise_profile_read_exactly() {
    let Some(p) = data("raw/dng/photoprism_canon_eos_6d_lossy_linear.dng") else {
        return;
    };
    let f = decode::decode_file(&p, 200.0, 1 << 30).expect("decode");
    let np = f.meta.noise_profile.expect("NoiseProfile tag");
    // The tag holds three (S, O) pairs (doubles, read independently with a
    // plain TIFF walk); shared/data/README.md rounds them to the first pair.
    let want = NoiseProfile {
        a: [
            3.314066762026614e-05,
            3.277994985978379e-05,
            3.257893638385038e-05,
        ],
        b: [
            9.213006845371913e-08,
            9.280768164878003e-08,
            9.374924882098678e-08,
        ],
    };
    assert_eq!(np, want);
    assert!((np.a[0] / 3.314e-05 - 1.0).abs() < 1e-4 && (np.b[0] / 9.213e-08 - 1.0).abs() < 1e-4);
}

/// The P9 dumps' facts (shared/data/README.md) as sidecars.
fn p9_sidecar(ext: &str) -> Sidecar {
    let (packing, white) = match ext {
        "raw8" => (Packing::U8, 255.0),
        "raw10" => (Packing::Raw10, 1023.0),
        "raw12" => (Packing::Raw12, 4095.0),
        _ => (Packing::U16le, 1023.0),
    };
    Sidecar {
        width: 1920,
        height: 1080,
        packing,
        stride: None,
        offset: 0,
        cfa: "RGGB".into(),
        black_level: BlackSpec::One(0.0),
        white_level: white,
        wb_gains: None,
        cam_to_srgb: None,
        make: Some("Huawei".into()),
        model: Some("P9".into()),
        iso: None,
        bits: None,
    }
}

fn p9_frames() -> Option<Vec<(String, RawFrame)>> {
    let dir = data("raw/sensor_dumps")?;
    let names = [
        "bayerRaw2DNG_huaweiP9_RAW_00016.raw10",
        "bayerRaw2DNG_huaweiP9_RAW_00153.raw10",
        "bayerRaw2DNG_huaweiP9_RAW_00017.raw8",
        "bayerRaw2DNG_huaweiP9_RAW_00018.raw12",
        "bayerRaw2DNG_huaweiP9_RAW_00019.raw16",
    ];
    Some(
        names
            .iter()
            .map(|n| {
                let path: &Path = &dir.join(n);
                let ext = n.rsplit('.').next().unwrap_or("");
                (
                    n.to_string(),
                    decode_dump(path, &p9_sidecar(ext), 200.0).expect("decode dump"),
                )
            })
            .collect(),
    )
}

/// The P9 dumps are one sensor: per-frame estimates are printed, and the
/// frames sharing the estimated gain agree (see calibration/README.md).
#[test]
fn huawei_p9_dumps_estimates() {
    let Some(frames) = p9_frames() else {
        return;
    };
    let p = pipeline("{}");
    for (name, f) in frames {
        let n = run(&p, f).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_sane(&n);
        println!(
            "{name:40} a [{:.3e} {:.3e} {:.3e}] b [{:.3e} {:.3e} {:.3e}] std@0.18 G {:.5} {}",
            n.profile.a[0],
            n.profile.a[1],
            n.profile.a[2],
            n.profile.b[0],
            n.profile.b[1],
            n.profile.b[2],
            std_at(&n.profile, 1, MID_GREY),
            n.source
        );
    }
}

/// Same sensor, same frame content: estimates of a frame's sub-images agree
/// (a split-half consistency check that needs no ground truth).
#[test]
fn estimator_split_half_consistency_on_p9() {
    let Some(frames) = p9_frames() else {
        return;
    };
    let (_, f) = &frames[0];
    let (w, h) = (f.meta.width, f.meta.height);
    let norm: Vec<f32> = f.data.f32().iter().map(|v| v / 1023.0).collect();
    let half = |y0: usize| -> NoiseProfile {
        let d = &norm[y0 * w..(y0 + h / 2) * w];
        estimate(d, w, h / 2, CfaPattern::Rggb, &EstimatorParams::default())
            .expect("estimate")
            .profile
    };
    let (top, bottom) = (half(0), half(h / 2));
    for c in 0..3 {
        let r = std_at(&top, c, MID_GREY) / std_at(&bottom, c, MID_GREY);
        println!("colour {c}: top/bottom std ratio {r:.3}");
        assert!((r - 1.0).abs() < 0.25, "colour {c}: {r}");
    }
}
