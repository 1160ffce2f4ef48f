//! Quality gates on the shared data sets (run by .ci/run with
//! RAWGRAPH_REQUIRE_DATA=1 so missing data fails instead of skipping).
//!
//! Demosaicking, sRGB-domain protocol (RGGB mosaic of the 8-bit image,
//! round to 8 bit, CPSNR over RGB with a 10-pixel border, mean over the
//! set). Reference values measured with colour-demosaicing 0.2.7:
//! bilinear 30.24 / 32.30, Malvar 35.78 / 34.43, Menon 39.27 / 34.20.

mod common;

use std::path::Path;

use rawgraph::eval::image_files;
use rawgraph::eval::srgb_protocol::{score_image, single_op_pipeline, SrgbProtocol};
use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::{input, Value};

fn mean_cpsnr(set: &Path, op: &str) -> f64 {
    mean_cpsnr_of(set, &single_op_pipeline(op).unwrap())
}

fn mean_cpsnr_of(set: &Path, p: &Pipeline) -> f64 {
    mean_cpsnr_with(set, p, &SrgbProtocol::default())
}

fn mean_cpsnr_with(set: &Path, p: &Pipeline, proto: &SrgbProtocol) -> f64 {
    let files = image_files(set).unwrap();
    assert!(!files.is_empty(), "{} holds no images", set.display());
    let v: Vec<f64> = files
        .iter()
        .map(|f| score_image(f, p, proto).unwrap().cpsnr)
        .collect();
    v.iter().sum::<f64>() / v.len() as f64
}

fn gate(op: &str, kodak_ref: f64, mcm_ref: f64, kodak_min: f64, mcm_min: f64) {
    let (Some(k), Some(m)) = (common::data("kodak24"), common::data("mcmaster18")) else {
        return;
    };
    let (pk, pm) = (mean_cpsnr(&k, op), mean_cpsnr(&m, op));
    eprintln!("{op}: kodak24 {pk:.3} dB, mcmaster18 {pm:.3} dB");
    assert!(
        pk >= kodak_min && pm >= mcm_min,
        "{op}: {pk:.3} / {pm:.3} below the gate"
    );
    assert!(
        (pk - kodak_ref).abs() <= 0.3,
        "{op}: kodak24 {pk:.3} vs reference {kodak_ref}"
    );
    assert!(
        (pm - mcm_ref).abs() <= 0.3,
        "{op}: mcmaster18 {pm:.3} vs reference {mcm_ref}"
    );
}

#[test]
fn demosaic_bilinear_matches_reference() {
    gate("demosaic_bilinear", 30.24, 32.30, 29.94, 32.0);
}

#[test]
fn demosaic_mhc_gate() {
    gate("demosaic_mhc", 35.78, 34.43, 35.5, 34.2);
}

#[test]
fn demosaic_menon_gate() {
    gate("demosaic_menon", 39.27, 34.20, 38.8, 33.9);
}

/// RCD: the gate (>= 36.5 dB kodak24); reference 36.91 is the
/// published kodak24 figure (darktable PR #20800), 36.11 our mcmaster18.
#[test]
fn demosaic_rcd_gate() {
    gate("demosaic_rcd", 36.91, 36.11, 36.5, 35.8);
}

/// AHD (`demosaic_ahd`, Hirakawa & Parks 2005): reference values measured
/// here 37.10 / 35.06 (kodak24 / mcmaster18).
#[test]
fn demosaic_ahd_gate() {
    gate("demosaic_ahd", 37.10, 35.06, 36.8, 34.8);
}

/// ARI alone (`demosaic_ari`, default params): reference values measured
/// here 38.96 / 37.27 (kodak24 / mcmaster18).
#[test]
fn demosaic_ari_gate() {
    gate("demosaic_ari", 38.96, 37.27, 38.7, 37.0);
}

/// The fast residual-interpolation hybrid (`demosaic_rcd_mlri`: RCD green,
/// saturation-gated median green correction, MLRI red/blue), shipped in
/// pipelines/quality_fast.yaml: issue 16's >= 39.8 / >= 36.5 dB at ~360 ms
/// per 12 MP frame (measured 39.877 / 36.540).
#[test]
fn demosaic_rcd_mlri_gate() {
    gate("demosaic_rcd_mlri", 39.88, 36.54, 39.8, 36.5);
}

/// The best classical demosaic of issue 16 as shipped in
/// pipelines/quality_classical.yaml: `demosaic_ari` followed by a half-strength
/// `false_color_suppress`. Gate: >= 39.8 dB kodak24 and >= 36.5 dB
/// mcmaster18 (measured 40.11 / 37.15; published ARI on Kodak 39.94).
#[test]
fn ari_with_half_false_color_gate() {
    let (Some(k), Some(m)) = (common::data("kodak24"), common::data("mcmaster18")) else {
        return;
    };
    let yaml = "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  - { id: dm, op: demosaic_ari }\n  - { id: fc, op: false_color_suppress, params: { strength: 0.5 } }\n";
    let p = Pipeline::from_yaml(yaml, "ari_fcs.yaml").unwrap();
    let (pk, pm) = (mean_cpsnr_of(&k, &p), mean_cpsnr_of(&m, &p));
    eprintln!(
        "demosaic_ari + false_color_suppress(0.5): kodak24 {pk:.3} dB, mcmaster18 {pm:.3} dB"
    );
    assert!(pk >= 39.8, "kodak24 {pk:.3} < 39.8");
    assert!(pm >= 36.5, "mcmaster18 {pm:.3} < 36.5");
    assert!(
        (pk - 40.11).abs() <= 0.3 && (pm - 37.15).abs() <= 0.3,
        "{pk:.3} / {pm:.3} vs reference 40.11 / 37.15"
    );
}

/// Issue 15's published-comparability bounds: the quality-sized learned
/// demosaic + denoise in the sRGB regime (`qualityd`) on kodak24 under the
/// sRGB protocol with Gaussian noise of sigma 0 / 5 / 10 / 15 (the level
/// reaches the net as the mosaic's NoiseProfile): >= 40.5 / 36.0 / 32.5 /
/// 30.5 dB (demosaicnet, which does not denoise: 42.15 / 34.15 / 28.83 /
/// 25.40).
#[test]
fn learned_quality_srgb_gate() {
    let Some(k) = common::data("kodak24") else {
        return;
    };
    let yaml = "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  - { id: dm, op: demosaic_denoise_learned, params: { model: qualityd } }\n";
    let p = Pipeline::from_yaml(yaml, "srgb_qualityd.yaml").unwrap();
    for (sigma, min) in [(0.0, 40.5), (5.0, 36.0), (10.0, 32.5), (15.0, 30.5)] {
        let proto = SrgbProtocol {
            sigma,
            ..Default::default()
        };
        let db = mean_cpsnr_with(&k, &p, &proto);
        eprintln!("qualityd (sRGB regime): kodak24 sigma {sigma} {db:.3} dB");
        assert!(db >= min, "sigma {sigma}: {db:.3} < {min}");
    }
}

/// `false_color_suppress` (Freeman, 3x3, one pass) after MHC and after
/// Menon adds >= 0.3 dB on kodak24 (measured +1.98 and +0.56).
#[test]
fn false_color_suppress_gate() {
    let Some(k) = common::data("kodak24") else {
        return;
    };
    for op in ["demosaic_mhc", "demosaic_menon"] {
        let yaml = format!(
            "version: 1\nstages:\n  - {{ id: raw, op: raw_source }}\n  - {{ id: dm, op: {op} }}\n  - {{ id: fc, op: false_color_suppress }}\n"
        );
        let with = mean_cpsnr_of(&k, &Pipeline::from_yaml(&yaml, "fcs.yaml").unwrap());
        let without = mean_cpsnr(&k, op);
        eprintln!("{op}: kodak24 {without:.3} dB, + false_color_suppress {with:.3} dB");
        assert!(with >= without + 0.3, "{op}: {without:.3} -> {with:.3}");
    }
}

/// Mean encoded value per channel, fraction clipped (any channel >= 254.5/255)
/// and fraction black (all channels <= 0.5/255).
fn stats(img: &rawgraph::Image) -> ([f64; 3], f64, f64) {
    let [r, g, b] = img.planes();
    let n = r.len() as f64;
    let mean = [r, g, b].map(|p| p.iter().map(|&v| v.clamp(0.0, 1.0) as f64).sum::<f64>() / n);
    let mut clipped = 0usize;
    let mut black = 0usize;
    for i in 0..r.len() {
        let mx = r[i].max(g[i]).max(b[i]);
        if mx >= 254.5 / 255.0 {
            clipped += 1;
        }
        if mx <= 0.5 / 255.0 {
            black += 1;
        }
    }
    (mean, clipped as f64 / n, black as f64 / n)
}

fn render(path: &Path, sidecar: Option<&Path>, pipeline: &str) -> rawgraph::Image {
    let frame = input::open(path, sidecar, &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let p = Pipeline::resolve(pipeline).unwrap();
    let out = graph::run(&p, frame, &RunOptions::default()).unwrap();
    match &out.outputs[0].1 {
        Value::Image(i) => (**i).clone(),
        v => panic!("unexpected {:?}", v.kind()),
    }
}

fn assert_plausible(name: &str, img: &rawgraph::Image, max_clip: f64) {
    let (mean, clipped, black) = stats(img);
    let luma = 0.2126 * mean[0] + 0.7152 * mean[1] + 0.0722 * mean[2];
    eprintln!("{name}: mean RGB {mean:.3?}, clipped {clipped:.4}, black {black:.4}");
    assert!(luma > 0.12, "{name}: too dark (mean {luma:.3})");
    assert!(luma < 0.85, "{name}: washed out (mean {luma:.3})");
    assert!(clipped < max_clip, "{name}: {clipped:.3} of pixels clipped");
    assert!(black < 0.2, "{name}: {black:.3} of pixels black");
    // Not tinted: channel means within 25 % of their average.
    let avg = (mean[0] + mean[1] + mean[2]) / 3.0;
    for (c, m) in mean.iter().enumerate() {
        assert!(
            (m / avg - 1.0).abs() < 0.25,
            "{name}: channel {c} tinted ({mean:.3?})"
        );
    }
}

/// Mean encoded RGB of a 30x30 window centred at (x, y).
fn patch(img: &rawgraph::Image, x: usize, y: usize) -> [f64; 3] {
    let [r, g, b] = img.planes();
    let mut m = [0f64; 3];
    for yy in y - 15..y + 15 {
        for xx in x - 15..x + 15 {
            let i = yy * img.width + xx;
            m[0] += r[i] as f64;
            m[1] += g[i] as f64;
            m[2] += b[i] as f64;
        }
    }
    m.map(|v| v / 900.0)
}

#[test]
fn real_dng_renders_plausibly_with_consistent_grays() {
    let Some(dng) = common::data("raw/dng/canon550d_colorchart.dng") else {
        return;
    };
    let auto = render(&dng, None, "auto");
    assert_eq!((auto.width, auto.height), (1734, 1156));
    assert_plausible("canon550d (auto)", &auto, 0.05);
    // The ColorChecker's grey row (centres measured on this file). The
    // capture's as-shot white balance is warm (LibRaw renders it the same,
    // see below), so the check is that every grey level carries the same
    // chromaticity: no level-dependent tint from black level, clipping or
    // matrix errors.
    let img = render(&dng, None, "default");
    let greys: Vec<[f64; 3]> = [710, 815, 925, 1035]
        .iter()
        .map(|&x| patch(&img, x, 930))
        .collect();
    let rg: Vec<f64> = greys.iter().map(|p| p[0] / p[1]).collect();
    let bg: Vec<f64> = greys.iter().map(|p| p[2] / p[1]).collect();
    eprintln!("canon550d grey patches R/G {rg:.3?} B/G {bg:.3?}");
    for w in greys.windows(2) {
        assert!(w[0][1] > w[1][1], "grey patches not in decreasing order");
    }
    let spread = |v: &[f64]| {
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    assert!(
        spread(&rg) < 0.08 && spread(&bg) < 0.1,
        "grey chromaticity drifts with level"
    );
}

#[test]
fn default_pipeline_agrees_with_libraw_on_a_real_dng() {
    let Some(dng) = common::data("raw/dng/canon550d_colorchart.dng") else {
        return;
    };
    let Ok(which) = std::process::Command::new("sh")
        .args(["-c", "command -v dcraw_emu"])
        .output()
    else {
        return;
    };
    if !which.status.success() {
        if std::env::var_os("RAWGRAPH_REQUIRE_DATA").is_some() {
            panic!("dcraw_emu (Debian libraw-bin) is required in CI");
        }
        eprintln!("SKIPPED: dcraw_emu not installed (apt-get install libraw-bin)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("lr.tif");
    let st = std::process::Command::new("dcraw_emu")
        .args([
            "-c", "0", "-w", "-q", "3", "-o", "1", "-g", "2.4", "12.92", "-W", "-T", "-Z",
        ])
        .arg(&out)
        .arg(&dng)
        .status()
        .unwrap();
    assert!(st.success());
    let theirs = rawgraph::eval::metrics::Rgb8::load(&out).unwrap();
    let img = render(&dng, None, "default");
    let ours = rawgraph::eval::metrics::Rgb8::from_planar(img.width, img.height, &img.data);
    let p = rawgraph::eval::metrics::cpsnr(&ours, &theirs, 10).unwrap();
    eprintln!("default.yaml vs LibRaw AHD on canon550d: {p:.2} dB");
    // Different demosaic methods, same colour science: tens of dB apart
    // only by interpolation detail.
    assert!(p > 35.0, "{p:.2} dB");
}

#[test]
fn every_sensor_dump_renders_plausibly() {
    let Some(dir) = common::data("raw/sensor_dumps") else {
        return;
    };
    let sc = common::root().join("tests/sidecars");
    let cases = [
        (
            "bayerRaw2DNG_huaweiP9_RAW_00016.raw10",
            "huaweiP9_raw10.yaml",
            0.05,
        ),
        (
            "bayerRaw2DNG_huaweiP9_RAW_00153.raw10",
            "huaweiP9_raw10.yaml",
            0.12,
        ),
        (
            "bayerRaw2DNG_huaweiP9_RAW_00017.raw8",
            "huaweiP9_raw8.yaml",
            0.05,
        ),
        (
            "bayerRaw2DNG_huaweiP9_RAW_00018.raw12",
            "huaweiP9_raw12.yaml",
            0.05,
        ),
        (
            "bayerRaw2DNG_huaweiP9_RAW_00019.raw16",
            "huaweiP9_raw16.yaml",
            0.05,
        ),
        // The chart is partly clipped in the capture itself.
        ("fast-openISP_test.RAW", "fast_openisp.yaml", 0.45),
        (
            "halide_camera_pipe/bayer_small.png",
            "halide_bayer_small.yaml",
            0.1,
        ),
    ];
    for (file, sidecar, max_clip) in cases {
        let img = render(&dir.join(file), Some(&sc.join(sidecar)), "auto");
        assert_plausible(file, &img, max_clip);
    }
}
