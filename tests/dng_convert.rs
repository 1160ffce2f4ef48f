//! `rawgraph convert DUMP --sidecar S.yaml -o OUT.dng`: the DNG holds the
//! same samples and levels as the dump and renders the same through the
//! default pipeline; bad requests fail with one clear line.

use clap::Parser;
use rawgraph::cli::{self, Cli};
use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::input;
use rawgraph::Value;

const SIDECAR: &str = "width: 64
height: 48
packing: u16le
cfa: GRBG
black_level: [64, 65, 66, 67]
white_level: 1023
wb_gains: [1.9, 1.0, 1.6]
cam_to_srgb: [[1.6, -0.4, -0.2], [-0.3, 1.5, -0.2], [0.0, -0.5, 1.5]]
make: Acme
model: Board 1
iso: 200
";

fn render(frame: rawgraph::RawFrame) -> Vec<f32> {
    let p = Pipeline::resolve("default").unwrap();
    match graph::run(&p, frame, &RunOptions::default())
        .unwrap()
        .outputs
        .into_iter()
        .next()
    {
        Some((_, Value::Image(i))) => i.data.clone(),
        _ => panic!("no image"),
    }
}

fn convert(args: &[&str]) -> rawgraph::Result<i32> {
    let mut argv = vec!["rawgraph", "convert"];
    argv.extend_from_slice(args);
    cli::run(Cli::try_parse_from(argv).unwrap())
}

#[test]
fn sidecar_dump_to_dng() {
    let t = tempfile::tempdir().unwrap();
    let (w, h) = (64usize, 48usize);
    let dump = t.path().join("board.raw");
    let side = t.path().join("board_desc.yaml");
    let samples: Vec<u16> = (0..w * h)
        .map(|i| 64 + ((i % w) * 7 + (i / w) * 13) as u16 % 900)
        .collect();
    std::fs::write(
        &dump,
        samples
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(&side, SIDECAR).unwrap();
    let out = t.path().join("board.dng");
    let (d, s, o) = (
        dump.to_str().unwrap(),
        side.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    assert_eq!(convert(&[d, "--sidecar", s, "-o", o]).unwrap(), 0);

    let src = input::open(&dump, Some(&side), &Default::default()).unwrap();
    let dng = input::open(&out, None, &Default::default()).unwrap();
    assert_eq!(dng.data, src.data);
    assert_eq!(dng.meta.layout, src.meta.layout);
    assert_eq!(dng.meta.black, src.meta.black);
    assert_eq!(dng.meta.white, src.meta.white);
    assert_eq!(dng.meta.iso, Some(200));
    assert_eq!(
        (dng.meta.make.as_str(), dng.meta.model.as_str()),
        ("Acme", "Board 1")
    );
    let (g0, g1) = (src.meta.wb_gains.unwrap(), dng.meta.wb_gains.unwrap());
    for c in 0..3 {
        assert!((g0[c] - g1[c]).abs() < 1e-5, "{g0:?} {g1:?}");
    }
    // Same rendering: the sidecar's camera -> sRGB matrix became a
    // ColorMatrix that color_correct turns back into it.
    let (a, b) = (render(src), render(dng));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-3, "renderings differ by {worst}");

    // Refusals: not a .dng name, the input as output, a missing input.
    assert!(convert(&[
        d,
        "--sidecar",
        s,
        "-o",
        t.path().join("x.png").to_str().unwrap()
    ])
    .is_err());
    let e = convert(&[o, "-o", o]).unwrap_err().to_string();
    assert!(e.contains("refusing to overwrite"), "{e}");
    let missing = t.path().join("nope.raw");
    let e = convert(&[missing.to_str().unwrap(), "-o", o])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.raw"), "{e}");
}
