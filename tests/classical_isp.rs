//! The classical ISP ops in the shipped pipelines, on pixels: `balanced`
//! (RCD) renders noise-free synthetic captures close to the ideal in every
//! Bayer phase and beats bilinear (`fast`) on a zone plate and a
//! dead-leaves chart; `preview` (defect_correct, RCD, resize, sharpen)
//! removes injected defective pixels and downscales to the box.

mod common;

use rawgraph::eval::metrics::{cpsnr, Rgb8};
use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::raw::{CfaPattern, RawFrame};
use rawgraph::synth::charts::{dead_leaves, from_fn, zone_plate};
use rawgraph::synth::unprocess::{
    resolve_params, unprocess, CfaSpec, ExposureSpec, MatrixSpec, NoiseSpec, SrgbInput,
    SynthCapture, UnprocessConfig, WbSpec,
};
use rawgraph::Value;

fn pipeline(name: &str) -> Pipeline {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(format!("{name}.yaml"));
    Pipeline::load(&p).unwrap()
}

fn render(p: &Pipeline, frame: RawFrame) -> Rgb8 {
    let out = graph::run(p, frame, &RunOptions::default()).unwrap();
    match out.outputs.first() {
        Some((_, Value::Image(i))) => Rgb8::from_planar(i.width, i.height, &i.data),
        _ => panic!("no image output"),
    }
}

fn capture(img: &SrgbInput, cfa: CfaPattern, seed: u64) -> SynthCapture {
    let cfg = UnprocessConfig {
        cfa: CfaSpec::Fixed(cfa),
        matrix: MatrixSpec::Brooks,
        wb: WbSpec::Brooks,
        exposure: ExposureSpec::Brooks,
        noise: NoiseSpec::None,
        bits: 14,
        ..Default::default()
    };
    let p = resolve_params(&cfg, img.width, img.height, "chart", seed).unwrap();
    unprocess(img, &p).unwrap()
}

fn ideal8(cap: &SynthCapture) -> Rgb8 {
    Rgb8::from_planar(cap.ideal.width, cap.ideal.height, &cap.ideal.data)
}

/// Smooth colour scene (no detail finer than ~16 px).
fn smooth(w: usize, h: usize) -> SrgbInput {
    from_fn(w, h, |x, y| {
        let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
        [
            0.5 + 0.4 * (6.0 * u).sin() * v,
            0.45 + 0.35 * (5.0 * v + 1.0).cos(),
            0.2 + 0.7 * u * (1.0 - v),
        ]
    })
}

#[test]
fn balanced_is_close_to_ideal_in_every_phase() {
    let p = pipeline("balanced");
    let img = smooth(160, 120);
    for cfa in CfaPattern::ALL {
        let cap = capture(&img, cfa, 3);
        let db = cpsnr(&render(&p, cap.frame.clone()), &ideal8(&cap), 10).unwrap();
        println!("{}: balanced vs ideal {db:.2} dB", cfa.name());
        assert!(db > 40.0, "{cfa:?}: {db} dB");
    }
}

#[test]
fn balanced_beats_bilinear_on_zone_plate_and_dead_leaves() {
    let (bal, fast) = (pipeline("balanced"), pipeline("fast"));
    let charts = [
        ("zone_plate", zone_plate(256, 192)),
        ("dead_leaves", dead_leaves(256, 192, 5)),
    ];
    for (name, img) in &charts {
        for cfa in [CfaPattern::ALL[0], CfaPattern::ALL[3]] {
            let cap = capture(img, cfa, 9);
            let ideal = ideal8(&cap);
            let b = cpsnr(&render(&bal, cap.frame.clone()), &ideal, 10).unwrap();
            let f = cpsnr(&render(&fast, cap.frame.clone()), &ideal, 10).unwrap();
            println!(
                "{name} {}: balanced {b:.2} dB, fast (bilinear) {f:.2} dB",
                cfa.name()
            );
            assert!(b > f + 0.5, "{name} {cfa:?}: balanced {b} vs bilinear {f}");
        }
    }
}

/// 0.1 % of the photosites made hot (white level) or dead (black level):
/// the preview pipeline's defect_correct removes them, so the output
/// matches the render of the clean capture; without it (same pipeline,
/// dynamic detection off) they show.
#[test]
fn preview_removes_injected_defects_and_fits_the_box() {
    let (w, h) = (320, 240);
    let cap = capture(&smooth(w, h), CfaPattern::ALL[1], 4);
    let white = cap.frame.meta.white[1];
    let black = cap.frame.meta.black.at(0, 0);
    let mut bad = cap.frame.clone();
    let mut s = 99u64;
    for k in 0..(w * h / 1000) {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = (s >> 33) as usize % (w * h);
        bad.data.f32_mut()[i] = if k % 2 == 0 { white } else { black };
    }
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/preview.yaml"),
    )
    .unwrap();
    // A box smaller than the capture: 160 wide, aspect kept.
    let small = text.replace("width: 1920, height: 1080", "width: 160, height: 160");
    let on = Pipeline::from_yaml(&small, "preview.yaml").unwrap();
    let off_text = small.replace("params: { threshold: 0.08 }", "params: { dynamic: false }");
    assert_ne!(off_text, small);
    let off = Pipeline::from_yaml(&off_text, "preview.yaml").unwrap();
    let clean = render(&on, cap.frame.clone());
    assert_eq!((clean.width, clean.height), (160, 120));
    let fixed = cpsnr(&render(&on, bad.clone()), &clean, 4).unwrap();
    let left = cpsnr(&render(&off, bad), &clean, 4).unwrap();
    println!("defects: with dpc {fixed:.2} dB, without {left:.2} dB (vs clean render)");
    assert!(fixed > 45.0, "{fixed} dB");
    assert!(
        left < fixed - 10.0,
        "without DPC {left} dB, with {fixed} dB"
    );
    // The downscaled, sharpened render still matches the 2x2-mean ideal.
    let ideal = ideal8(&cap);
    let mut down = vec![0f32; 3 * 160 * 120];
    let n = 160 * 120;
    for y in 0..120 {
        for x in 0..160 {
            for c in 0..3 {
                let mut acc = 0f32;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    acc += ideal.data[3 * ((2 * y + dy) * w + 2 * x + dx) + c] as f32 / 255.0;
                }
                down[c * n + y * 160 + x] = acc / 4.0;
            }
        }
    }
    let down = Rgb8::from_planar(160, 120, &down);
    let db = cpsnr(&clean, &down, 4).unwrap();
    println!("preview vs downscaled ideal {db:.2} dB");
    assert!(db > 35.0, "{db} dB");
}

/// `video_nv12` on pixels: the NV12 file bytes read back and decoded match
/// the ideal rendering; the other layouts round-trip through bytes too.
#[test]
fn video_nv12_writes_and_reads_back() {
    use rawgraph::stages::yuv_encode::{Matrix, Range, YuvFormat, YuvFrame};
    let (w, h) = (160, 120);
    let cap = capture(&smooth(w, h), CfaPattern::ALL[0], 6);
    let p = pipeline("video_nv12");
    let out = graph::run(&p, cap.frame.clone(), &RunOptions::default()).unwrap();
    let f = match out.outputs.first() {
        Some((_, Value::Other(o))) => o.as_any().downcast_ref::<YuvFrame>().unwrap().clone(),
        other => panic!("expected a YUV frame, got {other:?}"),
    };
    assert_eq!((f.width, f.height, f.format), (w, h, YuvFormat::Nv12));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.nv12");
    std::fs::write(&path, f.to_bytes()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), w * h * 3 / 2);
    let back =
        YuvFrame::from_bytes(&bytes, w, h, YuvFormat::Nv12, Matrix::Bt709, Range::Limited).unwrap();
    assert_eq!(back, f);
    let meta = std::sync::Arc::new(cap.frame.meta.clone());
    let img = back.to_image(meta);
    let db = cpsnr(&Rgb8::from_planar(w, h, &img.data), &ideal8(&cap), 10).unwrap();
    println!("video_nv12 decoded vs ideal {db:.2} dB");
    assert!(db > 38.0, "{db} dB");
}

/// `rawgraph process` writes the NV12 file (atomically, the size of the
/// 4:2:0 planes) and refuses a YUV extension for an RGB pipeline.
#[test]
fn process_writes_nv12_files() {
    use rawgraph::raw::dng_write::DngOptions;
    use rawgraph::synth::unprocess::write_capture;
    let cap = capture(&smooth(96, 64), CfaPattern::ALL[2], 8);
    let dir = tempfile::tempdir().unwrap();
    let files = write_capture(&cap, dir.path(), "cap", &DngOptions::default()).unwrap();
    let out = dir.path().join("cap.nv12");
    let yaml = common::root().join("pipelines/video_nv12.yaml");
    let st = std::process::Command::new(common::bin())
        .args(["process", "-p"])
        .arg(&yaml)
        .arg(&files.dng)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 96 * 64 * 3 / 2);
    let bad = dir.path().join("rgb.nv12");
    let st = std::process::Command::new(common::bin())
        .args(["process", "-p", "balanced"])
        .arg(&files.dng)
        .arg("-o")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!st.status.success());
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("yuv_encode"), "{err}");
    assert!(!bad.exists());
}
