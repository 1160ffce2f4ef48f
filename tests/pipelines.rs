//! Every shipped pipeline builds, and every kind of pipeline error names
//! the file, line, column and stage.

use rawgraph::graph::Pipeline;
use rawgraph::Error;

#[test]
fn every_shipped_pipeline_builds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let pl = Pipeline::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!pl.nodes.is_empty());
            n += 1;
        }
    }
    assert!(n >= 3, "expected the shipped pipelines, found {n}");
    for name in ["default", "fast", "auto"] {
        Pipeline::resolve(name).unwrap();
    }
}

fn err(yaml: &str) -> String {
    match Pipeline::from_yaml(yaml, "t.yaml") {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => {
            assert!(matches!(e, Error::Pipeline { .. }), "{e:?}");
            let s = e.to_string();
            assert!(!s.contains('\n'), "error must be one line: {s}");
            assert!(s.starts_with("t.yaml:"), "{s}");
            s
        }
    }
}

const HEAD: &str = "version: 1\nstages:\n  - { id: raw, op: raw_source }\n";

#[test]
fn unknown_top_level_field() {
    let s = err("version: 1\nstagez: []\n");
    assert!(s.contains("stagez"), "{s}");
}

#[test]
fn unknown_stage_field() {
    let s = err(&format!(
        "{HEAD}  - {{ id: bl, op: black_level, inputz: [raw] }}\n"
    ));
    assert!(s.contains("inputz"), "{s}");
    assert!(s.contains("t.yaml:4:"), "{s}");
}

#[test]
fn unknown_op_names_stage_and_position() {
    let s = err(&format!("{HEAD}  - {{ id: dm, op: demosaic_magic }}\n"));
    assert!(s.contains("t.yaml:4:"), "{s}");
    assert!(s.contains("'dm'") && s.contains("demosaic_magic"), "{s}");
}

#[test]
fn unknown_param() {
    let s = err(&format!(
        "{HEAD}  - id: wb\n    op: white_balance\n    params:\n      modee: as_shot\n"
    ));
    assert!(s.contains("'wb'") && s.contains("modee"), "{s}");
    assert!(s.contains("t.yaml:7:") || s.contains("t.yaml:6:"), "{s}");
}

#[test]
fn wrong_param_type_and_range() {
    let s = err(&format!("{HEAD}  - {{ id: bl, op: black_level }}\n  - {{ id: wb, op: white_balance }}\n  - {{ id: dm, op: demosaic_menon, params: {{ refine: 3 }} }}\n"));
    assert!(s.contains("'dm'") && s.contains("refine"), "{s}");
    let s = err(&format!("{HEAD}  - {{ id: bl, op: black_level }}\n  - {{ id: wb, op: white_balance }}\n  - {{ id: dm, op: demosaic_mhc }}\n  - {{ id: t, op: tone_curve, params: {{ knee: 7.0 }} }}\n"));
    assert!(s.contains("'t'") && s.contains("knee"), "{s}");
}

#[test]
fn strict_booleans() {
    let s = err(&format!(
        "{HEAD}  - {{ id: bl, op: black_level, params: {{ clip_negative: yes }} }}\n"
    ));
    assert!(s.contains("'bl'"), "{s}");
}

#[test]
fn dangling_reference() {
    let s = err(&format!(
        "{HEAD}  - {{ id: bl, op: black_level, in: [rawr] }}\n"
    ));
    assert!(s.contains("'bl'") && s.contains("rawr"), "{s}");
    assert!(s.contains("t.yaml:4:"), "{s}");
}

#[test]
fn cycle() {
    let s = err(&format!(
        "{HEAD}  - {{ id: a, op: black_level, in: [b] }}\n  - {{ id: b, op: white_balance, in: [a] }}\n"
    ));
    assert!(
        s.contains("cycle") && s.contains('a') && s.contains('b'),
        "{s}"
    );
}

#[test]
fn duplicate_ids_and_version() {
    let s = err(&format!("{HEAD}  - {{ id: raw, op: black_level }}\n"));
    assert!(s.contains("duplicate") && s.contains("raw"), "{s}");
    let s = err("version: 2\nstages:\n  - { id: raw, op: raw_source }\n");
    assert!(s.contains("version") && s.contains("t.yaml:1:"), "{s}");
}

#[test]
fn type_mismatch_along_an_edge() {
    // color_correct needs a demosaiced image, not a mosaic.
    let s = err(&format!("{HEAD}  - {{ id: cc, op: color_correct }}\n"));
    assert!(s.contains("'cc'") && s.contains("mosaic"), "{s}");
    // Outputs must be images.
    let s = err(&format!("{HEAD}  - {{ id: bl, op: black_level }}\n"));
    assert!(s.contains("'bl'") && s.contains("mosaic"), "{s}");
}

#[test]
fn yaml_syntax_error_has_position() {
    let s = err("version: 1\nstages:\n  - { id: raw, op: raw_source\n");
    assert!(s.starts_with("t.yaml:"), "{s}");
    assert!(!s.starts_with("t.yaml:0:0"), "{s}");
}

#[test]
fn dag_with_two_outputs_runs() {
    use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};
    let yaml = "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  - { id: bl, op: black_level }\n  - { id: wb, op: white_balance }\n  - { id: a, op: demosaic_bilinear, in: [wb] }\n  - { id: b, op: demosaic_mhc, in: [wb] }\n  - { id: ea, op: srgb_encode, in: [a] }\n  - { id: eb, op: srgb_encode, in: [b] }\noutputs: [ea, eb]\n";
    let p = Pipeline::from_yaml(yaml, "dag.yaml").unwrap();
    let frame = mosaic_scene(&demo_scene(64, 48), &CaptureParams::default(), "t").unwrap();
    let out = rawgraph::graph::run(&p, frame, &Default::default()).unwrap();
    assert_eq!(out.outputs.len(), 2);
    assert_eq!(out.timings.stages.len(), 7);
    assert!(out
        .timings
        .stages
        .iter()
        .all(|t| t.host_ms >= 0.0 && t.backend == "cpu"));
}
