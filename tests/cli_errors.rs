//! Bad input through the CLI: each case gives one clear error line naming
//! the file and the problem, a non-zero exit, no panic and no partial
//! output file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rawgraph::raw::sidecar::{pack, Packing};

struct Out {
    code: i32,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).to_string(),
    }
}

/// Asserts the failure contract and that `needles` all appear.
fn assert_clean_failure(o: &Out, needles: &[&str]) {
    assert_ne!(o.code, 0, "must fail: {}", o.stderr);
    assert!(
        !o.stderr.contains("panicked"),
        "panic text leaked: {}",
        o.stderr
    );
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {}", o.stderr);
    assert!(lines[0].starts_with("error: "), "{}", o.stderr);
    for n in needles {
        assert!(o.stderr.contains(n), "'{n}' missing from: {}", o.stderr);
    }
}

fn no_partials(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        assert!(!n.ends_with(".partial"), "partial file left: {n}");
    }
}

/// Writes a 64x48 RAW10 dump + sidecar into `dir`; returns (dump, sidecar).
fn make_dump(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (w, h) = (64usize, 48usize);
    let samples: Vec<u16> = (0..w * h).map(|i| (64 + (i * 7) % 800) as u16).collect();
    let dump = dir.join(format!("{name}.raw10"));
    std::fs::write(&dump, pack(&samples, w, Packing::Raw10)).unwrap();
    let sc = dir.join(format!("{name}.raw10.yaml"));
    std::fs::write(
        &sc,
        format!("width: {w}\nheight: {h}\npacking: raw10\ncfa: RGGB\nblack_level: 64\nwhite_level: 1023\n"),
    )
    .unwrap();
    (dump, sc)
}

#[test]
fn missing_file() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o.png");
    let o = run(&["process", "/nonexistent/x.dng", "-o", out.to_str().unwrap()]);
    assert_clean_failure(&o, &["/nonexistent/x.dng", "No such file"]);
    assert!(!out.exists());
}

#[test]
fn empty_file_and_random_bytes() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty.dng");
    std::fs::write(&empty, b"").unwrap();
    let out = t.path().join("o.png");
    let o = run(&[
        "process",
        empty.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["empty.dng", "empty"]);
    let rnd = t.path().join("random.nef");
    let bytes: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&rnd, bytes).unwrap();
    let o = run(&[
        "process",
        rnd.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["random.nef", "cannot decode"]);
    assert!(!out.exists());
    no_partials(t.path());
}

#[test]
fn truncated_dng() {
    let Some(src) = common::data("raw/dng/canon550d_colorchart.dng") else {
        return;
    };
    let bytes = std::fs::read(src).unwrap();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o.png");
    for frac in [0.0005, 0.01, 0.3, 0.9] {
        let cut = t.path().join("cut.dng");
        std::fs::write(&cut, &bytes[..(bytes.len() as f64 * frac) as usize]).unwrap();
        let o = run(&[
            "process",
            cut.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_clean_failure(&o, &["cut.dng"]);
        assert!(
            !out.exists(),
            "output written for a truncated file ({frac})"
        );
    }
    no_partials(t.path());
}

#[test]
fn metadata_only_stubs() {
    let Some(dir) = common::data("raw/metadata_stubs") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o.png");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let o = run(&["process", p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_clean_failure(&o, &[&name]);
        let o = run(&["info", p.to_str().unwrap()]);
        assert_clean_failure(&o, &[&name]);
        n += 1;
    }
    assert!(n >= 9);
    assert!(!out.exists());
}

#[test]
fn sidecar_with_wrong_size_or_fields() {
    let t = tempfile::tempdir().unwrap();
    let (dump, sc) = make_dump(t.path(), "d");
    let out = t.path().join("o.png");
    std::fs::write(
        &sc,
        "width: 64\nheight: 49\npacking: raw10\ncfa: RGGB\nwhite_level: 1023\n",
    )
    .unwrap();
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["d.raw10", "bytes"]);
    std::fs::write(
        &sc,
        "width: 64\nheight: 48\npacking: raw11\ncfa: RGGB\nwhite_level: 1023\n",
    )
    .unwrap();
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["d.raw10.yaml", "raw11", "line 3"]);
    std::fs::write(
        &sc,
        "width: 64\nheight: 48\npacking: raw10\ncfa: RGBG\nwhite_level: 1023\n",
    )
    .unwrap();
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["d.raw10.yaml", "RGBG"]);
    assert!(!out.exists());
}

#[test]
fn pipeline_yaml_errors_via_cli() {
    let t = tempfile::tempdir().unwrap();
    let (dump, _) = make_dump(t.path(), "d");
    let out = t.path().join("o.png");
    let pl = t.path().join("bad.yaml");
    std::fs::write(
        &pl,
        "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  - { id: dm, op: demosaic_nope }\n",
    )
    .unwrap();
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-p",
        pl.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["bad.yaml:4:", "'dm'", "demosaic_nope"]);
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-p",
        "no_such_pipeline",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["no_such_pipeline"]);
    assert!(!out.exists());
}

#[test]
fn output_not_writable_and_output_equal_to_input() {
    let t = tempfile::tempdir().unwrap();
    let (dump, _) = make_dump(t.path(), "d");
    let before = std::fs::read(&dump).unwrap();
    // The parent of the output is a regular file: cannot be written.
    let blocker = t.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("o.png");
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["o.png"]);
    // Output path equal to the input.
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-o",
        dump.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["d.raw10", "input"]);
    assert_eq!(std::fs::read(&dump).unwrap(), before, "input was modified");
    // Unknown output extension.
    let o = run(&[
        "process",
        dump.to_str().unwrap(),
        "-o",
        t.path().join("o.bmpx").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["o.bmpx", "extension"]);
    no_partials(t.path());
}

#[test]
fn good_dump_renders_and_batch_continues_past_bad_files() {
    let t = tempfile::tempdir().unwrap();
    let inp = t.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    make_dump(&inp, "a");
    make_dump(&inp, "b");
    std::fs::write(inp.join("bad.dng"), b"not a raw file at all").unwrap();
    std::fs::write(inp.join("empty.cr2"), b"").unwrap();
    let outdir = t.path().join("out");
    let report = t.path().join("report.json");
    let o = Command::new(common::bin())
        .args([
            "process",
            inp.to_str().unwrap(),
            "-o",
            outdir.to_str().unwrap(),
            "-p",
            "fast",
        ])
        .args(["--report-json", report.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        outdir.join("a.png").exists() && outdir.join("b.png").exists(),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.dng") && stderr.contains("empty.cr2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 ok") && stderr.contains("2 failed"),
        "{stderr}"
    );
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rep["ok"], 2);
    assert_eq!(rep["failed"], 2);
    no_partials(&outdir);
    // A rerun skips what exists and still reports the bad files.
    let o = Command::new(common::bin())
        .args([
            "process",
            inp.to_str().unwrap(),
            "-o",
            outdir.to_str().unwrap(),
            "-p",
            "fast",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2 skipped"), "{stderr}");
}

#[test]
fn completions_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = Command::new(common::bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{shell}: {:?}", o.stderr);
        let script = String::from_utf8(o.stdout).unwrap();
        for sub in ["process", "bench", "eval", "info", "compare", "completions"] {
            assert!(script.contains(sub), "{shell} script lacks `{sub}`");
        }
    }
    // An unknown shell is refused with a non-zero exit and no panic.
    let o = run(&["completions", "tcsh"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("tcsh") && !o.stderr.contains("panicked"));
}

/// Every JSON the CLI writes carries `schema_version` (1) at its top level.
#[test]
fn every_json_the_cli_writes_has_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let ok = |args: &[&str]| {
        let o = Command::new(common::bin()).args(args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    ok(&["synth", "--demo", "--demo-size", "96x64", "-o", &d("syn")]);
    let dng = d("syn/demo.dng");
    std::fs::create_dir(d("raws")).unwrap();
    std::fs::copy(&dng, d("raws/a.dng")).unwrap();
    let mut texts = vec![
        std::fs::read_to_string(d("syn/demo.json")).unwrap(),
        ok(&["info", &dng, "--json"]),
        ok(&[
            "bench", &dng, "-p", "fast", "--warmup", "0", "--iters", "1", "--json",
        ]),
    ];
    ok(&[
        "process",
        &dng,
        "-p",
        "fast",
        "-o",
        &d("out.png"),
        "--timings-json",
        &d("t.json"),
    ]);
    ok(&[
        "process",
        &d("raws"),
        "-p",
        "fast",
        "-o",
        &d("batch"),
        "--report-json",
        &d("r.json"),
    ]);
    ok(&[
        "compare",
        &dng,
        "-p",
        "fast",
        "-p",
        "default",
        "-o",
        &d("side.png"),
        "--json",
        &d("c.json"),
    ]);
    for f in ["t.json", "r.json", "c.json"] {
        texts.push(std::fs::read_to_string(d(f)).unwrap());
    }
    for t in &texts {
        let v: serde_json::Value = serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}: {t}"));
        assert_eq!(v["schema_version"], 1, "no schema_version in: {t:.300}");
    }
}

/// A whole raw pipeline under the sRGB protocol (whose input is an already
/// normalised mosaic) is refused once, before any image, with the reason
/// and the way out, instead of failing on every image.
#[test]
fn srgb_eval_of_a_raw_pipeline_fails_once_up_front() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("a.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 200]))
        .save(&img)
        .unwrap();
    let o = run(&["eval", t.path().to_str().unwrap(), "-p", "default"]);
    assert_clean_failure(&o, &["'default'", "black_level", "--protocol synth"]);
    let o = run(&[
        "eval",
        t.path().to_str().unwrap(),
        "--op",
        "demosaic_bilinear",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
}

/// Output into a pipe whose reader has gone (`rawgraph info F | head`
/// after `head` quit) ends the process quietly by SIGPIPE, as other
/// command-line tools end, never with a panic message on stderr.
#[cfg(unix)]
#[test]
fn closed_stdout_pipe_ends_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::ExitStatusExt;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let o = Command::new(common::bin())
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::from(write))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        o.status
    );
}
