//! Lens shading end to end: `rawgraph calibrate lsc` on synthetic
//! vignetted flat fields written as DNGs, the `lens_shading` op with the
//! fitted file and with DNG GainMaps (OpcodeList2) read back from a DNG,
//! fused and unfused, and the pass-through of shipped pipelines on frames
//! without a map.

mod common;

use std::path::Path;
use std::process::Command;

use rand::{Rng, SeedableRng};

use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::raw::decode::decode_file;
use rawgraph::raw::dng_opcodes::GainMap;
use rawgraph::raw::dng_write::{write_dng, DngOptions};
use rawgraph::raw::{CfaPattern, RawFrame};
use rawgraph::stages::lens_shading::{site_colour, LscCalibration};
use rawgraph::stages::{self, RunCtx};
use rawgraph::Value;

use common::{SYNTH_BLACK as BLACK, SYNTH_WHITE as WHITE};

/// (1 + r^2)^-2 falloff ("cos^4") of colour `c` (R, Gr, Gb, B) at
/// pixel-edge coordinates (px, py) of a w x h frame; `spread` widens it
/// (a different light gives a different colour shading).
fn vignette(c: usize, px: f64, py: f64, w: usize, h: usize, spread: f64) -> f64 {
    let hd = ((w * w + h * h) as f64).sqrt() / 2.0;
    let f = [1.2, 1.35, 1.3, 1.5][c] * spread * hd;
    let cx = if c == 3 { 0.54 } else { 0.5 } * w as f64;
    let r2 = ((px - cx).powi(2) + (py - 0.5 * h as f64).powi(2)) / (f * f);
    1.0 / (1.0 + r2).powi(2)
}

/// A 12-bit flat field at `level` of white under [`vignette`], with a
/// little deterministic noise (+-1%).
fn flat_frame(cfa: CfaPattern, w: usize, h: usize, level: f64, spread: f64) -> RawFrame {
    let meta = common::synth_meta12("Flat", w, h, cfa);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mut noise = move || rng.random::<f64>() - 0.5;
    let data = (0..h)
        .flat_map(|y| (0..w).map(move |x| (y, x)))
        .map(|(y, x)| {
            let c = site_colour(cfa, y & 1, x & 1);
            let v = level * vignette(c, x as f64 + 0.5, y as f64 + 0.5, w, h, spread);
            let v = v * (1.0 + 0.02 * noise());
            (BLACK as f64 + v * (WHITE - BLACK) as f64).round() as f32
        })
        .collect();
    RawFrame { meta, data }
}

/// The injected map's gains at the grid points (outer points on the
/// frame's edges), normalised to gain 1 at the brightest point, as
/// `calibrate lsc` writes them; per colour, row-major.
fn injected(rows: usize, cols: usize, w: usize, h: usize, spread: f64) -> [Vec<f64>; 4] {
    std::array::from_fn(|c| {
        let inv: Vec<f64> = (0..rows * cols)
            .map(|p| {
                let py = (p / cols) as f64 / (rows - 1) as f64 * h as f64;
                let px = (p % cols) as f64 / (cols - 1) as f64 * w as f64;
                1.0 / vignette(c, px, py, w, h, spread)
            })
            .collect();
        let min = inv.iter().cloned().fold(f64::MAX, f64::min);
        inv.iter().map(|v| v / min).collect()
    })
}

fn calibrate(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("calibrate")
        .arg("lsc")
        .args(args)
        .output()
        .unwrap()
}

/// Runs black_level then lens_shading (with `params`) on a frame and
/// returns the corrected normalised mosaic.
fn corrected(frame: RawFrame, params: serde_json::Value) -> Vec<f32> {
    common::after_black_level(frame, "lens_shading", params).1
}

/// Largest relative deviation of 4x4-site box means from the site's
/// mean, over the four CFA sites of a w x h mosaic (pixel noise is
/// +-1%: boxes, not photosites).
fn flatness(data: &[f32], w: usize, h: usize) -> f64 {
    let mut worst = 0f64;
    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let (sh, sw) = ((h - dy).div_ceil(2), (w - dx).div_ceil(2));
        let at = |y: usize, x: usize| data[(2 * y + dy) * w + 2 * x + dx] as f64;
        let mean = (0..sh)
            .flat_map(|y| (0..sw).map(move |x| (y, x)))
            .map(|(y, x)| at(y, x))
            .sum::<f64>()
            / (sh * sw) as f64;
        for by in (0..sh - 3).step_by(4) {
            for bx in (0..sw - 3).step_by(4) {
                let m = (0..16).map(|k| at(by + k / 4, bx + k % 4)).sum::<f64>() / 16.0;
                worst = worst.max((m / mean - 1.0).abs());
            }
        }
    }
    worst
}

#[test]
fn calibrate_lsc_fits_the_injected_map_and_the_op_flattens_the_flat() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h, rows, cols) = (640, 480, 13, 17);
    let flat = dir.path().join("flat.dng");
    write_dng(
        &flat_frame(CfaPattern::Rggb, w, h, 0.6, 1.0),
        &flat,
        &DngOptions::default(),
    )
    .unwrap();
    let out = dir.path().join("lsc.yaml");
    let o = calibrate(&[
        flat.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--grid",
        "17x13",
        "--ct",
        "5000",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cal = LscCalibration::load(&out).unwrap();
    assert_eq!((cal.dims(), cal.tables.len()), ((rows, cols), 1));
    assert_eq!((cal.make.as_str(), cal.model.as_str()), ("Synth", "Flat"));
    let want = injected(rows, cols, w, h, 1.0);
    let got = cal.at_ct(5000.0);
    let mut fit_err = 0f64;
    for c in 0..4 {
        for (g, t) in got[c].iter().zip(&want[c]) {
            fit_err = fit_err.max((*g as f64 / t - 1.0).abs());
        }
    }
    println!(
        "calibrate lsc: max gain error vs injected map {:.3}%",
        100.0 * fit_err
    );
    assert!(fit_err < 0.01, "fit error {fit_err}");

    // The fitted file flattens the flat (within 1%, 4x4-site means).
    let frame = decode_file(&flat, 100.0, 1 << 30).unwrap();
    let fixed = corrected(
        frame.clone(),
        serde_json::json!({"ct": 5000, "source": "file", "file": out}),
    );
    let raw_flatness = {
        let bl = stages::compile("black_level", serde_json::Value::Null).unwrap();
        let v = graph::exec::frame_to_value(frame).unwrap();
        match bl.run_cpu(&RunCtx { stage_id: "bl" }, vec![v]).unwrap() {
            Value::Mosaic(m) => flatness(&m.data.f32(), w, h),
            _ => unreachable!(),
        }
    };
    let after = flatness(&fixed, w, h);
    println!(
        "lens_shading: flat field deviation {:.2}% before, {:.3}% after",
        100.0 * raw_flatness,
        100.0 * after
    );
    assert!(raw_flatness > 0.3, "{raw_flatness}");
    assert!(after < 0.01, "after correction {after}");
}

#[test]
fn calibrate_lsc_makes_one_table_per_colour_temperature_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (320, 240);
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    for (name, spread) in [("warm.dng", 1.0), ("cool.dng", 1.3), ("mid.dng", 1.15)] {
        write_dng(
            &flat_frame(CfaPattern::Bggr, w, h, 0.5, spread),
            Path::new(&p(name)),
            &DngOptions::default(),
        )
        .unwrap();
    }
    let out = p("lsc.yaml");
    let o = calibrate(&[
        &p("warm.dng"),
        &p("cool.dng"),
        "--out",
        &out,
        "--grid",
        "9x7",
        "--ct",
        "3000",
        "--ct",
        "6500",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cal = LscCalibration::load(Path::new(&out)).unwrap();
    let cts: Vec<f32> = cal.tables.iter().map(|t| t.ct).collect();
    assert_eq!(cts, [3000.0, 6500.0]);
    // Different shading per light: the corner gains differ.
    assert!(cal.tables[0].r[0][0] > cal.tables[1].r[0][0] * 1.1);
    // --merge keeps both and adds the third.
    let o = calibrate(&[
        &p("mid.dng"),
        "--out",
        &out,
        "--grid",
        "9x7",
        "--ct",
        "4500",
        "--merge",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cal = LscCalibration::load(Path::new(&out)).unwrap();
    let cts: Vec<f32> = cal.tables.iter().map(|t| t.ct).collect();
    assert_eq!(cts, [3000.0, 4500.0, 6500.0]);
    // Without --merge the file is replaced; a wrong grid cannot merge.
    let o = calibrate(&[
        &p("mid.dng"),
        "--out",
        &out,
        "--grid",
        "5x5",
        "--ct",
        "4500",
        "--merge",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("cannot merge") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn calibrate_lsc_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat.dng");
    write_dng(
        &flat_frame(CfaPattern::Grbg, 160, 120, 0.5, 1.0),
        &flat,
        &DngOptions::default(),
    )
    .unwrap();
    let out = dir.path().join("lsc.yaml");
    let (f, o) = (flat.to_str().unwrap(), out.to_str().unwrap());
    for (args, want) in [
        (vec![f, "--out", o, "--grid", "17"], "expected COLSxROWS"),
        (vec![f, "--out", o], "no colour temperature"),
        (vec![f, "--out", o, "--ct", "100"], "outside 1000..40000"),
        (
            vec![f, "--out", f, "--ct", "5000"],
            "the output is one of the inputs",
        ),
        (
            vec!["/nonexistent.dng", "--out", o, "--ct", "5000"],
            "/nonexistent.dng",
        ),
    ] {
        let r = calibrate(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?}");
        assert!(
            err.contains(want) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert!(!out.exists());
}

/// Four GainMaps of pitch 2, one per CFA site, the inverse of the
/// flat's vignetting on a 13 x 17 grid.
fn gain_maps(cfa: CfaPattern, w: usize, h: usize) -> Vec<GainMap> {
    let inv = injected(13, 17, w, h, 1.0);
    GainMap::bayer_sites(w, h, (13, 17), |dy, dx| {
        inv[site_colour(cfa, dy, dx)]
            .iter()
            .map(|&g| g as f32)
            .collect()
    })
}

#[test]
fn dng_gain_maps_round_trip_and_flatten_fused_and_unfused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfa, w, h) = (CfaPattern::Gbrg, 322, 242);
    let mut frame = flat_frame(cfa, w, h, 0.4, 1.0);
    frame.meta.gain_maps = gain_maps(cfa, w, h);
    let path = dir.path().join("gainmap.dng");
    write_dng(&frame, &path, &DngOptions::default()).unwrap();

    // Decoded: the GainMaps come back, and info names them.
    let back = decode_file(&path, 100.0, 1 << 30).unwrap();
    assert_eq!(back.meta.gain_maps, frame.meta.gain_maps);
    let o = Command::new(common::bin())
        .args(["info", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ops = v["dng_opcodes"].as_array().unwrap();
    assert_eq!(ops.len(), 4, "{v}");
    for op in ops {
        assert_eq!(
            (op["name"].as_str(), op["list"].as_u64()),
            (Some("GainMap"), Some(2))
        );
        assert_eq!(
            (op["applied"].as_bool(), op["op"].as_str()),
            (Some(false), Some("lens_shading"))
        );
    }
    let o = Command::new(common::bin())
        .arg("info")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("GainMap (applied by lens_shading when the pipeline has it)"),
        "{text}"
    );

    // A linear pipeline with lens_shading (auto: the GainMaps) fused and
    // unfused: identical, and flat.
    let yaml = "version: 1\nname: lsc_test\nstages:\n\
        \x20 - { id: raw, op: raw_source }\n\
        \x20 - { id: bl, op: black_level }\n\
        \x20 - { id: lsc, op: lens_shading }\n\
        \x20 - { id: wb, op: white_balance, params: { mode: none } }\n\
        \x20 - { id: dm, op: demosaic_bilinear }\n\
        outputs: [dm]\n";
    let p = Pipeline::from_yaml(yaml, "lsc_test.yaml").unwrap();
    let run = |no_fuse: bool| {
        let opts = RunOptions {
            no_fuse,
            ..Default::default()
        };
        graph::run(&p, back.clone(), &opts).unwrap()
    };
    let (fused, unfused) = (run(false), run(true));
    let img = |o: &graph::RunOutput| match &o.outputs[0].1 {
        Value::Image(i) => i.data.clone(),
        _ => panic!("not an image"),
    };
    assert_eq!(img(&fused), img(&unfused), "fused and unfused differ");
    let row = fused.timings.stages.iter().find(|t| t.id == "lsc").unwrap();
    assert_eq!(row.op, "lens_shading");
    assert!(
        row.fused.as_deref().unwrap_or("").contains("lsc"),
        "{row:?}"
    );
    // Per-plane flatness of the demosaiced image away from the border.
    let data = img(&fused);
    let n = w * h;
    for c in 0..3 {
        let plane = &data[c * n..(c + 1) * n];
        let inner: Vec<f64> = (8..h - 8)
            .flat_map(|y| (8..w - 8).map(move |x| y * w + x))
            .map(|i| plane[i] as f64)
            .collect();
        let mean = inner.iter().sum::<f64>() / inner.len() as f64;
        // Box means of 8x8 pixels against the mean.
        let iw = w - 16;
        let ih = inner.len() / iw;
        for by in (0..ih - 7).step_by(8) {
            for bx in (0..iw - 7).step_by(8) {
                let m = (0..64)
                    .map(|k| inner[(by + k / 8) * iw + bx + k % 8])
                    .sum::<f64>()
                    / 64.0;
                assert!(
                    (m / mean - 1.0).abs() < 0.01,
                    "plane {c} block ({bx}, {by}): {m} vs {mean}"
                );
            }
        }
    }

    // source: dng on a DNG without GainMaps is a one-line error.
    let plain = dir.path().join("plain.dng");
    write_dng(
        &flat_frame(cfa, 64, 48, 0.4, 1.0),
        &plain,
        &DngOptions::default(),
    )
    .unwrap();
    let pipe = dir.path().join("dng_only.yaml");
    std::fs::write(
        &pipe,
        yaml.replace(
            "op: lens_shading }",
            "op: lens_shading, params: { source: dng } }",
        ),
    )
    .unwrap();
    let o = Command::new(common::bin())
        .arg("process")
        .arg(&plain)
        .arg("-p")
        .arg(&pipe)
        .arg("-o")
        .arg(dir.path().join("out.png"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("stage 'lsc' (lens_shading)") && err.contains("no DNG GainMap"),
        "{err}"
    );
}

#[test]
fn shipped_pipelines_pass_frames_without_a_map_through_and_say_so() {
    let frame = flat_frame(CfaPattern::Rggb, 96, 64, 0.5, 1.0);
    for name in ["default", "balanced"] {
        let p = Pipeline::resolve(name).unwrap();
        assert!(p.node("lsc").is_some(), "{name} has a lens_shading stage");
        for no_fuse in [false, true] {
            let opts = RunOptions {
                no_fuse,
                ..Default::default()
            };
            let out = graph::run(&p, frame.clone(), &opts).unwrap();
            let row = out.timings.stages.iter().find(|t| t.id == "lsc").unwrap();
            assert!(
                row.op
                    .starts_with("lens_shading (skipped: no lens-shading map"),
                "{name}: {}",
                row.op
            );
            assert_eq!(row.host_ms, 0.0);
        }
    }
    // With a map the default pipeline runs it (and renders the flat).
    let mut frame = frame;
    frame.meta.gain_maps = gain_maps(CfaPattern::Rggb, 96, 64);
    let out = graph::run(
        &Pipeline::resolve("default").unwrap(),
        frame,
        &RunOptions::default(),
    )
    .unwrap();
    let row = out.timings.stages.iter().find(|t| t.id == "lsc").unwrap();
    assert_eq!(row.op, "lens_shading");
}
