//! `rawgraph eval` on synthetic raws: reproducible numbers for a seed,
//! high PSNR for noise-free captures through the default pipeline, bad
//! inputs reported per image with a non-zero exit, JSON / CSV / HTML report.

use std::path::Path;

use clap::Parser;
use rawgraph::cli::{self, Cli};

/// Smooth test images (PNG, 8-bit) that the demosaic reconstructs well.
fn write_images(dir: &Path) {
    for k in 0..3u32 {
        let (w, h) = (96u32, 64u32);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let f = |t: f32| (t.clamp(0.0, 1.0) * 255.0).round() as u8;
            image::Rgb([
                f(0.5 + 0.4 * (5.0 * u + k as f32).sin() * v),
                f(0.45 + 0.35 * (4.0 * v + 1.0).cos()),
                f(0.2 + 0.6 * u * (1.0 - v) + 0.05 * k as f32),
            ])
        });
        img.save(dir.join(format!("img{k}.png"))).unwrap();
    }
}

fn run(args: &[&str]) -> i32 {
    let mut argv = vec!["rawgraph"];
    argv.extend_from_slice(args);
    cli::run(Cli::try_parse_from(argv).unwrap()).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// (image, level, cpsnr, ssim, ciede2000) of every scored row.
fn metrics(v: &serde_json::Value) -> Vec<(String, String, f64, f64, f64)> {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["image"].as_str().unwrap().to_string(),
                r["level"].as_str().unwrap().to_string(),
                r["cpsnr"].as_f64().unwrap(),
                r["ssim"].as_f64().unwrap(),
                r["ciede2000"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn synth_protocol_is_reproducible_and_reports_bad_inputs() {
    let t = tempfile::tempdir().unwrap();
    let imgs = t.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    write_images(&imgs);
    std::fs::write(imgs.join("broken.png"), b"not a png").unwrap();
    image::RgbImage::new(8, 8)
        .save(imgs.join("tiny.png"))
        .unwrap();
    let dir = imgs.to_str().unwrap();
    let (j1, j2) = (t.path().join("a.json"), t.path().join("b.json"));
    let csv = t.path().join("a.csv");
    let report = t.path().join("report");
    let common = [
        "eval",
        dir,
        "--protocol",
        "synth",
        "--pipeline",
        "default",
        "--noise",
        "none iso:800",
        "--seed",
        "7",
        "--summary",
    ];
    let mut a1 = common.to_vec();
    a1.extend([
        "--json",
        j1.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let mut a2 = common.to_vec();
    a2.extend(["--json", j2.to_str().unwrap()]);
    // Bad inputs: the run goes on and the exit code is 1.
    assert_eq!(run(&a1), 1);
    assert_eq!(run(&a2), 1);
    let (v1, v2) = (json(&j1), json(&j2));
    let (m1, m2) = (metrics(&v1), metrics(&v2));
    assert_eq!(m1.len(), 6, "3 images x 2 noise levels");
    assert_eq!(m1, m2, "same seed, same numbers");

    for (img, level, psnr, ssim, de) in &m1 {
        if level == "clean" {
            assert!(psnr.is_finite() && *psnr > 38.0, "{img}: {psnr} dB");
            assert!(*ssim > 0.97 && *de < 1.5, "{img}: {ssim} {de}");
        } else {
            assert!(psnr.is_finite() && *psnr > 20.0, "{img}: {psnr} dB");
        }
    }
    let fails = v1["failures"].as_array().unwrap();
    assert_eq!(fails.len(), 4, "broken + tiny at two levels: {fails:?}");
    for f in fails {
        let e = f["error"].as_str().unwrap();
        assert!(e.contains("broken.png") || e.contains("tiny.png"), "{e}");
    }
    let summaries = v1["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    assert!(summaries[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["op"] == "demosaic_rcd_mlri" && s["mean_ms"].as_f64().unwrap() > 0.0));

    let c = std::fs::read_to_string(&csv).unwrap();
    let header = c.lines().next().unwrap();
    assert!(
        header.contains("ciede2000") && header.contains("ms_dm"),
        "{header}"
    );
    assert_eq!(c.lines().count(), 1 + 6 + 4);
    assert!(c
        .lines()
        .any(|l| l.contains("broken.png") && l.contains(",failed,")));

    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("img/0005_error.png"));
    assert!(report.join("img/0000_truth.png").is_file());

    // Another seed gives other noise.
    let j3 = t.path().join("c.json");
    let mut a3 = common.to_vec();
    a3[9] = "8";
    a3.extend(["--json", j3.to_str().unwrap()]);
    run(&a3);
    let m3 = metrics(&json(&j3));
    assert_ne!(m1[1].2, m3[1].2);
}

#[test]
fn dng_protocol_scores_synth_output_and_flags_mismatched_truth() {
    let t = tempfile::tempdir().unwrap();
    let imgs = t.path().join("imgs");
    let dngs = t.path().join("dngs");
    std::fs::create_dir(&imgs).unwrap();
    write_images(&imgs);
    assert_eq!(
        run(&[
            "synth",
            imgs.to_str().unwrap(),
            "-o",
            dngs.to_str().unwrap(),
            "--noise",
            "none",
            "--seed",
            "3",
        ]),
        0
    );
    // A truth of the wrong size, and a DNG without a truth.
    image::RgbImage::new(40, 40)
        .save(dngs.join("img2.ideal.png"))
        .unwrap();
    std::fs::copy(dngs.join("img0.dng"), dngs.join("orphan.dng")).unwrap();
    let j = t.path().join("d.json");
    let code = run(&[
        "eval",
        dngs.to_str().unwrap(),
        "--protocol",
        "dng",
        "--pipeline",
        "default",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let v = json(&j);
    let m = metrics(&v);
    assert_eq!(m.len(), 2, "{m:?}");
    for (img, _, psnr, _, _) in &m {
        assert!(*psnr > 38.0, "{img}: {psnr}");
    }
    let errs: Vec<&str> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["error"].as_str().unwrap())
        .collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs
        .iter()
        .any(|e| e.contains("img2.dng") && e.contains("ground truth is 40x40")));
    assert!(errs
        .iter()
        .any(|e| e.contains("orphan.dng") && e.contains("no ground truth")));
}
