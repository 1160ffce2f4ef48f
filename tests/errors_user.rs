//! Error quality: every error a user can cause gives one line that names
//! the file (or the YAML file:line:column and stage id) and the cause.
//! Complements tests/cli_errors.rs and tests/pipelines.rs.

#[path = "fixtures/fuzz/support.rs"]
mod support;

use std::path::{Path, PathBuf};

use rawgraph::raw::CfaPattern;

use support::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn good_dng(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, small_dng(CfaPattern::Rggb, 12, 1)).unwrap();
    p
}

#[test]
fn megapixel_limit_names_file_size_and_flag() {
    let d = tempfile::tempdir().unwrap();
    let f = good_dng(d.path(), "big.dng");
    let out = d.path().join("o.png");
    let o = run(&["process", s(&f), "-o", s(&out), "--max-megapixels", "0.001"]);
    one_line_failure(
        &o,
        &["big.dng", "48x32", "over the limit", "--max-megapixels"],
    );
    assert!(!out.exists());
}

#[test]
fn file_size_limit_names_file_and_flag_for_raws_and_dumps() {
    let d = tempfile::tempdir().unwrap();
    let f = good_dng(d.path(), "heavy.dng");
    let out = d.path().join("o.png");
    let o = run(&["process", s(&f), "-o", s(&out), "--max-file-mb", "0"]);
    one_line_failure(
        &o,
        &["heavy.dng", "bytes", "over the limit", "--max-file-mb"],
    );
    let dump = write_dump(d.path(), "heavy_dump", 40, 30);
    let o = run(&["process", s(&dump), "-o", s(&out), "--max-file-mb", "0"]);
    one_line_failure(&o, &["heavy_dump.raw10", "over the limit", "--max-file-mb"]);
}

#[test]
fn huge_claimed_dimensions_via_cli() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("claims.dng");
    std::fs::write(&f, huge_claim_dng(100_000, 100_000)).unwrap();
    let out = d.path().join("o.png");
    let o = run(&["process", s(&f), "-o", s(&out)]);
    one_line_failure(&o, &["claims.dng", "100000x100000", "over the limit"]);
    let o = run(&["info", s(&f)]);
    one_line_failure(&o, &["claims.dng", "100000x100000"]);

    let dump = d.path().join("claims.raw16");
    std::fs::write(&dump, [0u8; 64]).unwrap();
    let sc = d.path().join("claims.raw16.yaml");
    std::fs::write(&sc, sidecar_yaml(100_000, 100_000, "u16le", "RGGB", 65535)).unwrap();
    let o = run(&["process", s(&dump), "-o", s(&out)]);
    one_line_failure(&o, &["claims.raw16", "100000x100000", "over the limit"]);
}

#[test]
fn sidecar_errors_name_the_sidecar_and_the_field() {
    let d = tempfile::tempdir().unwrap();
    let dump = write_dump(d.path(), "sc", 40, 30);
    let out = d.path().join("o.png");
    let sc = d.path().join("sc.raw10.yaml");
    let good = std::fs::read_to_string(&sc).unwrap();

    let missing = d.path().join("nope.yaml");
    let o = run(&["process", s(&dump), "-o", s(&out), "--sidecar", s(&missing)]);
    one_line_failure(&o, &["nope.yaml", "No such file"]);

    std::fs::write(&sc, format!("{good}gamma: 2.2\n")).unwrap();
    let o = run(&["process", s(&dump), "-o", s(&out)]);
    one_line_failure(&o, &["sc.raw10.yaml", "line 7", "gamma"]);

    std::fs::write(&sc, format!("{good}stride: 10\n")).unwrap();
    let o = run(&["process", s(&dump), "-o", s(&out)]);
    one_line_failure(&o, &["sc.raw10.yaml", "stride 10", "50 bytes"]);

    std::fs::write(&sc, good.replace("white_level: 1023", "white_level: 10")).unwrap();
    let o = run(&["process", s(&dump), "-o", s(&out)]);
    one_line_failure(&o, &["sc.raw10.yaml", "white_level 10", "black_level 16"]);

    std::fs::write(&sc, good.replace("width: 40", "width: -40")).unwrap();
    let o = run(&["process", s(&dump), "-o", s(&out)]);
    one_line_failure(&o, &["sc.raw10.yaml", "line 1"]);

    std::fs::write(&sc, good.replace("width: 40", "width: 1")).unwrap();
    let o = run(&["process", s(&dump), "-o", s(&out)]);
    one_line_failure(&o, &["sc.raw10.yaml", "at least 2"]);
    assert!(!out.exists());
}

#[test]
fn png_mosaic_with_wrong_size() {
    let d = tempfile::tempdir().unwrap();
    let dump = d.path().join("m.png");
    image::DynamicImage::ImageLuma16(image::ImageBuffer::new(20, 10))
        .save(&dump)
        .unwrap();
    std::fs::write(
        d.path().join("m.png.yaml"),
        sidecar_yaml(40, 30, "png16", "RGGB", 65535),
    )
    .unwrap();
    let out = d.path().join("o.png");
    let o = run(&["process", s(&dump), "-o", s(&out)]);
    one_line_failure(&o, &["m.png", "20x10", "40x30"]);
}

#[test]
fn directory_named_like_a_raw() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("shot.dng");
    std::fs::create_dir(&dir).unwrap();
    let o = run(&["info", s(&dir)]);
    one_line_failure(&o, &["shot.dng", "directory"]);
}

#[test]
fn output_choices() {
    let d = tempfile::tempdir().unwrap();
    let f = good_dng(d.path(), "a.dng");
    let g = good_dng(d.path(), "b.dng");
    let out = d.path().join("o.png");
    let o = run(&["process", s(&f), "-o", s(&out), "--bits", "12"]);
    one_line_failure(&o, &["o.png", "12-bit"]);
    // A batch whose output folder is an existing file.
    let file_out = d.path().join("taken");
    std::fs::write(&file_out, b"x").unwrap();
    let o = run(&["process", s(&f), s(&g), "-o", s(&file_out)]);
    one_line_failure(&o, &["taken"]);
    // An unknown batch format names the flag value.
    let o = run(&[
        "process",
        s(&f),
        s(&g),
        "-o",
        s(&d.path().join("outs")),
        "--format",
        "bmp",
    ]);
    one_line_failure(&o, &["bmp", "--format"]);
}

#[test]
fn pipeline_file_errors() {
    let d = tempfile::tempdir().unwrap();
    let f = good_dng(d.path(), "a.dng");
    let out = d.path().join("o.png");
    let o = run(&[
        "process",
        s(&f),
        "-o",
        s(&out),
        "--pipeline",
        "/nonexistent/p.yaml",
    ]);
    one_line_failure(&o, &["/nonexistent/p.yaml", "No such file"]);

    // Model weights that do not exist: the stage and the file are named.
    let p = d.path().join("learned.yaml");
    std::fs::write(
        &p,
        "version: 1\nname: x\nstages:\n  - { id: raw, op: raw_source }\n  - { id: dm, op: demosaic_denoise_learned, in: [raw], params: { model: /nonexistent/w.safetensors } }\noutputs: [dm]\n",
    )
    .unwrap();
    let o = run(&["process", s(&f), "-o", s(&out), "--pipeline", s(&p)]);
    one_line_failure(
        &o,
        &["learned.yaml:5:", "'dm'", "/nonexistent/w.safetensors"],
    );

    // A pipeline whose output is not an image: file:line and the stage id.
    let p = d.path().join("mosaic_out.yaml");
    std::fs::write(
        &p,
        "version: 1\nname: x\nstages:\n  - { id: raw, op: raw_source }\n  - { id: bl, op: black_level, in: [raw] }\noutputs: [bl]\n",
    )
    .unwrap();
    let o = run(&["process", s(&f), "-o", s(&out), "--pipeline", s(&p)]);
    one_line_failure(&o, &["mosaic_out.yaml:5:", "'bl'", "mosaic"]);

    // Non-UTF-8 pipeline text.
    let p = d.path().join("binary.yaml");
    std::fs::write(&p, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let o = run(&["process", s(&f), "-o", s(&out), "--pipeline", s(&p)]);
    one_line_failure(&o, &["binary.yaml"]);
    assert!(!out.exists());
}
