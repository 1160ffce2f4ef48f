//! Killing a batch mid-run (SIGINT, SIGKILL) leaves only complete outputs,
//! and a rerun finishes the rest.
#![cfg(unix)]

#[path = "fixtures/fuzz/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rawgraph::raw::CfaPattern;

use support::*;

const FILES: usize = 48;

/// A folder of FILES synthetic DNGs (256 x 192, all Bayer phases).
fn corpus(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let frames: Vec<Vec<u8>> = CfaPattern::ALL
        .iter()
        .map(|&cfa| dng_bytes(&synth_frame(256, 192, cfa, 12, 3), false))
        .collect();
    (0..FILES)
        .map(|i| {
            let p = dir.join(format!("f{i:03}.dng"));
            std::fs::write(&p, &frames[i % 4]).unwrap();
            p
        })
        .collect()
}

fn start(input: &Path, out: &Path, report: &Path) -> Child {
    Command::new(bin())
        .args([
            "process",
            "--pipeline",
            "default",
            "--jobs",
            "2",
            "--report-json",
        ])
        .arg(report)
        .arg(input)
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rawgraph")
}

/// Complete (visible) outputs in `out`.
fn outputs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        let n = p.file_name().unwrap().to_string_lossy();
        !n.starts_with('.')
    });
    v.sort();
    v
}

fn wait_first_output(child: &mut Child, out: &Path) {
    let t0 = Instant::now();
    while outputs(out).is_empty() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("batch ended ({s}) before any output appeared");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no output after 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} failed");
}

fn check_complete(out: &Path) -> usize {
    let v = outputs(out);
    for p in &v {
        assert_eq!(p.extension().unwrap(), "png", "stray file {}", p.display());
        assert_complete_png(p);
    }
    v.len()
}

/// Reruns the batch: it must finish everything, skipping what exists.
fn rerun_finishes(input: &Path, out: &Path, report: &Path, done_before: usize) {
    let o = start(input, out, report).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "rerun failed: {stderr}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(
        rep["skipped"].as_u64().unwrap() as usize,
        done_before,
        "{rep}"
    );
    assert_eq!(
        rep["ok"].as_u64().unwrap() as usize,
        FILES - done_before,
        "{rep}"
    );
    assert_eq!(check_complete(out), FILES);
    // Temporaries of the killed run are gone too.
    for e in std::fs::read_dir(out).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        assert!(!n.ends_with(".partial"), "temporary left after rerun: {n}");
    }
}

#[test]
fn sigint_mid_batch_finishes_in_flight_files_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out, report) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("r.json"),
    );
    corpus(&input);
    let mut child = start(&input, &out, &report);
    wait_first_output(&mut child, &out);
    signal(&child, "-INT");
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!stderr.contains("panick"), "{stderr}");
    let done = check_complete(&out);
    // Ctrl-C lets files in flight finish: no temporaries at all.
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        assert!(!n.ends_with(".partial"), "temporary left after SIGINT: {n}");
    }
    if done == FILES {
        eprintln!("NOTE: the batch finished before SIGINT arrived; nothing to resume");
        assert!(matches!(o.status.code(), Some(0) | Some(130)), "{stderr}");
    } else {
        assert_eq!(
            o.status.code(),
            Some(130),
            "interrupted batch exits 130: {stderr}"
        );
        assert!(stderr.contains("interrupted"), "{stderr}");
        let rep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(rep["interrupted"], true);
        assert_eq!(rep["ok"].as_u64().unwrap() as usize, done, "{rep}");
    }
    rerun_finishes(&input, &out, &report, done);
}

#[test]
fn sigkill_mid_batch_leaves_only_complete_outputs_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out, report) = (
        tmp.path().join("in"),
        tmp.path().join("out"),
        tmp.path().join("r.json"),
    );
    corpus(&input);
    let mut child = start(&input, &out, &report);
    wait_first_output(&mut child, &out);
    // Let a few more land, so the kill hits a write in progress often.
    std::thread::sleep(Duration::from_millis(150));
    signal(&child, "-KILL");
    let _ = child.wait().unwrap();
    // Visible files are complete; hidden temporaries may remain.
    let done = check_complete(&out);
    assert!(
        done < FILES,
        "the batch finished before SIGKILL; make the corpus larger"
    );
    rerun_finishes(&input, &out, &report, done);
}
