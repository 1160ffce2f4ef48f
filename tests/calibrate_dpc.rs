//! Defective pixels end to end: `rawgraph calibrate dpc` on synthetic dark
//! and flat frames written as DNGs (read noise, hot pixels at fixed
//! positions, one-frame noise spikes, dead and stuck photosites on a
//! vignetted flat), the written map read back by `defect_correct`
//! (`dynamic: false, map: FILE`), and the one-line errors.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use rawgraph::raw::dng_write::{write_dng, DngOptions};
use rawgraph::raw::{CfaPattern, RawFrame};
use rawgraph::stages::defect_correct::parse_map;

use common::{SYNTH_BLACK as BLACK, SYNTH_WHITE as WHITE};
const W: usize = 200;
const H: usize = 150;
/// Read noise of the darks, DN.
const READ_NOISE: f64 = 3.0;

fn frame(w: usize, h: usize, data: Vec<f32>) -> RawFrame {
    RawFrame {
        meta: common::synth_meta12("Dark", w, h, CfaPattern::Rggb),
        data: data.into(),
    }
}

fn dn(v: f64) -> f32 {
    v.round().clamp(0.0, WHITE as f64) as f32
}

/// `n` distinct photosite indices of a W x H frame, none in `avoid`.
fn positions(rng: &mut ChaCha8Rng, n: usize, avoid: &BTreeSet<usize>) -> BTreeSet<usize> {
    let mut s = BTreeSet::new();
    while s.len() < n {
        let i = rng.random_range(0..W * H);
        if !avoid.contains(&i) {
            s.insert(i);
        }
    }
    s
}

/// The defect set: hot photosites (index, strength in DN above black at
/// exposure 1; the last two stuck at white).
fn hot_pixels(rng: &mut ChaCha8Rng) -> Vec<(usize, f64)> {
    let pos = positions(rng, W * H / 1000, &BTreeSet::new());
    let n = pos.len();
    pos.into_iter()
        .enumerate()
        .map(|(k, i)| {
            let s = if k + 2 >= n {
                WHITE as f64
            } else {
                40.0 + 1500.0 * (k as f64 / n as f64).powi(2)
            };
            (i, s)
        })
        .collect()
}

/// Writes `n` darks (exposure 1, 1.5, 2, ...: hot pixels scale with it)
/// with [`READ_NOISE`], the hot pixels and 25 one-frame spikes each, at
/// positions never shared by two frames. Returns the paths and the
/// spikes per frame.
fn write_darks(
    dir: &Path,
    n: usize,
    hot: &[(usize, f64)],
    rng: &mut ChaCha8Rng,
) -> (Vec<PathBuf>, Vec<BTreeSet<usize>>) {
    let noise = Normal::new(0.0, READ_NOISE).unwrap();
    let mut used: BTreeSet<usize> = hot.iter().map(|h| h.0).collect();
    let (mut paths, mut spikes) = (Vec::new(), Vec::new());
    for k in 0..n {
        let exposure = 1.0 + 0.5 * k as f64;
        let mut d: Vec<f64> = (0..W * H)
            .map(|_| BLACK as f64 + noise.sample(rng))
            .collect();
        for &(i, s) in hot {
            d[i] += s * exposure;
        }
        let sp = positions(rng, 25, &used);
        for &i in &sp {
            d[i] += rng.random_range(30.0..1000.0);
        }
        used.extend(&sp);
        let path = dir.join(format!("dark{k}.dng"));
        let f = frame(W, H, d.into_iter().map(dn).collect());
        write_dng(&f, &path, &DngOptions::default()).unwrap();
        paths.push(path);
        spikes.push(sp);
    }
    (paths, spikes)
}

/// A temporary folder with `n` darks of [`write_darks`] (seeded by
/// `seed`): (folder, rng, hot pixels, dark paths, spikes per dark).
type Setup = (
    tempfile::TempDir,
    ChaCha8Rng,
    Vec<(usize, f64)>,
    Vec<PathBuf>,
    Vec<BTreeSet<usize>>,
);

fn setup(seed: u64, n: usize, with_hot: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let hot = if with_hot {
        hot_pixels(&mut rng)
    } else {
        Vec::new()
    };
    let (darks, spikes) = write_darks(dir.path(), n, &hot, &mut rng);
    (dir, rng, hot, darks, spikes)
}

fn calibrate(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args(["calibrate", "dpc"])
        .args(args)
        .output()
        .unwrap()
}

fn strs(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

fn xy(i: usize) -> (usize, usize) {
    (i % W, i / W)
}

/// The map file's entries as photosite indices.
fn read_map(path: &Path) -> BTreeSet<usize> {
    let text = std::fs::read_to_string(path).unwrap();
    parse_map(&text)
        .unwrap()
        .into_iter()
        .map(|(x, y)| y * W + x)
        .collect()
}

/// Clean scene: four flat vertical bands, a different (R, G, B) level
/// each, in DN; `flat(i)` says whether photosite i lies 3+ pixels from a
/// band edge (its same-colour neighbours all in its band).
fn scene() -> (Vec<f32>, impl Fn(usize) -> bool) {
    let levels = [
        [900.0f32, 1400.0, 700.0],
        [2200.0, 2600.0, 1500.0],
        [400.0, 500.0, 450.0],
        [3000.0, 3300.0, 2800.0],
    ];
    let band = |x: usize| (x * 4 / W).min(3);
    let cfa = CfaPattern::Rggb;
    let data = (0..W * H)
        .map(|i| levels[band(i % W)][cfa.color_at(i / W, i % W)])
        .collect();
    let flat = move |i: usize| {
        let x = i % W;
        band(x.saturating_sub(2)) == band(x) && band((x + 2).min(W - 1)) == band(x)
    };
    (data, flat)
}

#[test]
fn calibrate_dpc_finds_every_hot_pixel_and_defect_correct_fixes_them() {
    let (dir, _, hot, darks, spikes) = setup(2024, 4, true);
    let out = dir.path().join("defects.txt");
    let mut args = strs(&darks);
    args.extend(["--out", out.to_str().unwrap()]);
    let o = calibrate(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let want: BTreeSet<usize> = hot.iter().map(|h| h.0).collect();
    let got = read_map(&out);
    let found = want.intersection(&got).count();
    let false_pos: Vec<(usize, usize)> = got.difference(&want).map(|&i| xy(i)).collect();
    println!(
        "calibrate dpc: {found}/{} hot pixels found, {} false positives ({} one-frame spikes injected)",
        want.len(),
        false_pos.len(),
        spikes.iter().map(BTreeSet::len).sum::<usize>()
    );
    assert_eq!(found, want.len(), "missed: {:?}", want.difference(&got));
    assert!(false_pos.is_empty(), "false positives: {false_pos:?}");

    // The header: command, frames, thresholds, counts.
    let text = std::fs::read_to_string(&out).unwrap();
    let header: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    for needle in [
        "calibrate dpc",
        "frames: 4 dark, 0 flat; mosaic 200x150",
        "listed when flagged in 2 of 4 darks",
        "# dark dark0.dng: median+-margin r ",
        "counts: hot 30, dead 0, bright 0; 30 listed",
    ] {
        assert!(
            header.iter().any(|l| l.contains(needle)),
            "{needle}: {text}"
        );
    }

    // One frame alone: its spikes are listed too.
    let one = dir.path().join("one.txt");
    let o = calibrate(&[darks[0].to_str().unwrap(), "--out", one.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expect: BTreeSet<usize> = want.union(&spikes[0]).copied().collect();
    assert_eq!(read_map(&one), expect);

    // A scene with the hot pixels, through defect_correct with the map.
    let (clean, flat) = scene();
    let mut bad = clean.clone();
    for &(i, s) in &hot {
        bad[i] = dn(bad[i] as f64 + s);
    }
    let (before, after) = common::after_black_level(
        frame(W, H, bad),
        "defect_correct",
        serde_json::json!({ "dynamic": false, "map": out }),
    );
    let one_dn = 1.0 / (WHITE - BLACK);
    let clean_norm: Vec<f32> = clean.iter().map(|&v| (v - BLACK) * one_dn).collect();
    let (mut worst_fix, mut worst_clean) = (0f32, 0f32);
    let mut flat_fixed = 0;
    for i in 0..W * H {
        if want.contains(&i) {
            if flat(i) {
                worst_fix = worst_fix.max((after[i] - clean_norm[i]).abs());
                flat_fixed += 1;
            }
        } else {
            worst_clean = worst_clean.max((after[i] - before[i]).abs());
        }
    }
    println!(
        "defect_correct with the map: {flat_fixed} defects on flat areas within {:.3} DN of clean; \
         clean pixels changed by at most {:.3} DN",
        worst_fix / one_dn,
        worst_clean / one_dn
    );
    assert!(flat_fixed >= want.len() / 2, "{flat_fixed}");
    assert!(worst_fix <= one_dn, "{} DN", worst_fix / one_dn);
    assert_eq!(worst_clean, 0.0);
}

/// Flat field at `level` of white with (1 + r^2)^-2 vignetting (about 48%
/// falloff in the corners) and 0.5% Gaussian noise, in DN.
fn flat_field(level: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let noise = Normal::new(0.0, 0.005).unwrap();
    let hd = ((W * W + H * H) as f64).sqrt() / 2.0;
    (0..W * H)
        .map(|i| {
            let (x, y) = ((i % W) as f64 + 0.5, (i / W) as f64 + 0.5);
            let r2 =
                ((x - W as f64 / 2.0).powi(2) + (y - H as f64 / 2.0).powi(2)) / (1.2 * hd).powi(2);
            let v = level / (1.0 + r2).powi(2) * (1.0 + noise.sample(rng));
            BLACK as f64 + v * (WHITE - BLACK) as f64
        })
        .collect()
}

#[test]
fn calibrate_dpc_flats_find_dead_and_stuck_photosites() {
    let (dir, mut rng, hot, darks, _) = setup(7, 3, true);
    let hot_set: BTreeSet<usize> = hot.iter().map(|h| h.0).collect();
    // Dead (0, 10%, 40% of the level) and stuck-bright (1.5x) photosites,
    // corners and edges included.
    let mut dead = positions(&mut rng, 16, &hot_set);
    dead.extend([0, W - 1, (H - 1) * W + 3]);
    let mut avoid = hot_set.clone();
    avoid.extend(&dead);
    let bright = positions(&mut rng, 4, &avoid);
    let mut flats = Vec::new();
    for k in 0..2 {
        let mut f = flat_field(0.5, &mut rng);
        for (n, &i) in dead.iter().enumerate() {
            f[i] = BLACK as f64 + (f[i] - BLACK as f64) * [0.0, 0.1, 0.4][n % 3];
        }
        for &i in &bright {
            f[i] = BLACK as f64 + (f[i] - BLACK as f64) * 1.5;
        }
        let path = dir.path().join(format!("flat{k}.dng"));
        write_dng(
            &frame(W, H, f.into_iter().map(dn).collect()),
            &path,
            &DngOptions::default(),
        )
        .unwrap();
        flats.push(path);
    }
    let out = dir.path().join("defects.txt");
    let mut args = strs(&darks);
    args.extend(["--out", out.to_str().unwrap(), "--flats"]);
    args.extend(strs(&flats));
    let o = calibrate(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_map(&out);
    let mut want: BTreeSet<usize> = hot_set.union(&dead).copied().collect();
    want.extend(&bright);
    let found_dead = dead.intersection(&got).count();
    let found_bright = bright.intersection(&got).count();
    let false_pos: Vec<(usize, usize)> = got.difference(&want).map(|&i| xy(i)).collect();
    println!(
        "calibrate dpc --flats: dead {found_dead}/{}, stuck bright {found_bright}/{}, \
         {} false positives",
        dead.len(),
        bright.len(),
        false_pos.len()
    );
    assert_eq!(found_dead, dead.len(), "missed {:?}", dead.difference(&got));
    assert_eq!(found_bright, bright.len());
    assert!(hot_set.is_subset(&got));
    assert!(false_pos.is_empty(), "false positives: {false_pos:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains(&format!("dead {}, bright {}", dead.len(), bright.len())),
        "{text}"
    );
    // A flat given as a dark is refused.
    let o = calibrate(&[flats[0].to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("flat0.dng: not a dark frame"),
        "{err}"
    );
    // Flats alone: the dead and stuck photosites only.
    let o = calibrate(
        &["--out", out.to_str().unwrap(), "--flats"]
            .into_iter()
            .chain(strs(&flats))
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: BTreeSet<usize> = dead.union(&bright).copied().collect();
    assert_eq!(read_map(&out), want);
}

#[test]
fn calibrate_dpc_errors_are_one_line() {
    let (dir, _, _, darks, _) = setup(1, 1, false);
    let small = dir.path().join("small.dng");
    write_dng(
        &frame(100, 80, vec![BLACK; 100 * 80]),
        &small,
        &DngOptions::default(),
    )
    .unwrap();
    let out = dir.path().join("defects.txt");
    let (d, s, o) = (
        darks[0].to_str().unwrap(),
        small.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    // A path below a regular file cannot be created.
    let unwritable = format!("{d}/defects.txt");
    for (args, want) in [
        (vec!["--out", o], "no frames"),
        (vec![d, s, "--out", o], "100x80 differs from the 200x150"),
        (vec![d, "--out", o, "--flats", s], "small.dng"),
        (vec![d, "--out", &unwritable], "dark0.dng"),
        (vec![d, "--out", d], "the output is one of the inputs"),
        (vec!["/nonexistent.dng", "--out", o], "/nonexistent.dng"),
        (vec![d, "--out", o, "--sigma", "0"], "--sigma 0"),
        (
            vec![d, "--out", o, "--min-frames-frac", "1.5"],
            "--min-frames-frac 1.5",
        ),
        (vec![d, "--out", o, "--flats", d], "too dark for a flat"),
    ] {
        let r = calibrate(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.trim().lines().count() == 1 && err.starts_with("error: "),
            "{args:?}: {err}"
        );
    }
    assert!(!out.exists());
}
