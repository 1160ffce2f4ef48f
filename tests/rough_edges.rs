//! The rough edges a new user hits (issue 18, item 7): every shipped
//! pipeline by name from any folder, `synth -o OUT.dng` writing that file,
//! and folder inputs to `process` expanding only to raw-looking files.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use rawgraph::graph::build::BUILTIN;
use rawgraph::graph::Pipeline;

fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(common::bin())
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run rawgraph")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_pipeline_file_is_built_in_and_builds_by_name() {
    let dir = common::root().join("pipelines");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        let (_, text) = BUILTIN
            .iter()
            .find(|(name, _)| *name == stem)
            .unwrap_or_else(|| panic!("pipelines/{stem}.yaml is not in graph::BUILTIN"));
        assert_eq!(
            *text,
            std::fs::read_to_string(&p).unwrap(),
            "BUILTIN '{stem}' differs from the file"
        );
        let pl = Pipeline::resolve(&stem).unwrap_or_else(|e| panic!("-p {stem}: {e}"));
        assert_eq!(pl.file, format!("builtin:{stem}"));
        n += 1;
    }
    assert_eq!(n, BUILTIN.len(), "BUILTIN lists a pipeline with no file");
}

#[test]
fn shipped_pipelines_resolve_outside_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, _) in BUILTIN {
        // The pipeline is resolved and built before the input is opened,
        // so a missing input shows how far it got.
        let o = run(
            tmp.path(),
            &["process", "no_such_input.dng", "-p", name, "-o", "x.png"],
        );
        let t = text(&o);
        assert!(!o.status.success());
        assert!(!t.contains("no such pipeline"), "-p {name}: {t}");
        assert!(t.contains("no_such_input.dng"), "-p {name}: {t}");
    }
}

#[test]
fn synth_to_a_dng_path_writes_that_file_and_truth_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sub/one.dng");
    let o = run(
        tmp.path(),
        &[
            "synth",
            "--demo",
            "--demo-size",
            "64x48",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.is_file(), "{} is not a file", out.display());
    for side in ["one.truth.npy", "one.ideal.png", "one.json"] {
        assert!(tmp.path().join("sub").join(side).is_file(), "{side}");
    }
    // Two captures cannot go to one file: a clear error, nothing written.
    let two = tmp.path().join("two.dng");
    let img = tmp.path().join("sub/one.ideal.png");
    let o = run(
        tmp.path(),
        &[
            "synth",
            "--demo",
            "--demo-size",
            "64x48",
            img.to_str().unwrap(),
            "-o",
            two.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("2 captures"), "{}", text(&o));
    assert!(!two.exists());
    // Without a .dng extension the output is a folder, as before.
    let folder = tmp.path().join("caps");
    let o = run(
        tmp.path(),
        &[
            "synth",
            "--demo",
            "--demo-size",
            "64x48",
            "-o",
            folder.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(folder.join("demo.dng").is_file());
}

#[test]
fn process_folder_skips_non_raw_files_and_counts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let caps = tmp.path().join("caps");
    let o = run(
        tmp.path(),
        &[
            "synth",
            "--demo",
            "--demo-size",
            "64x48",
            "-o",
            caps.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // A stray note too: 4 non-raw files next to one DNG.
    std::fs::write(caps.join("notes.txt"), "x").unwrap();
    let outdir = tmp.path().join("out");
    let report = tmp.path().join("report.json");
    let o = run(
        tmp.path(),
        &[
            "process",
            caps.to_str().unwrap(),
            "-p",
            "fast",
            "-o",
            outdir.to_str().unwrap(),
            "--report-json",
            report.to_str().unwrap(),
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("1 ok") && t.contains("4 not raw"), "{t}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["ok"], 1, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["not_raw"], 4, "{r}");
    assert!(outdir.join("demo.png").is_file());
    // A file named explicitly is always tried, whatever its extension.
    let o = run(
        tmp.path(),
        &[
            "process",
            caps.join("demo.json").to_str().unwrap(),
            "-o",
            tmp.path().join("j.png").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("demo.json"), "{}", text(&o));
}
