//! Golden digests of every shipped pipeline.
//!
//! Each `pipelines/*.yaml` renders a fixed set of synthetic captures (all
//! four Bayer phases, odd and even sizes, 12- and 14-bit, noisy and
//! noise-free, clipped highlights) and every output is compared with the
//! record committed in `tests/golden/pipelines.json`:
//!
//! * **digest**: FNV-1a 64 of the interleaved 16-bit output (what
//!   `process --bits 16` writes), so any change to any pixel shows;
//! * **statistics**: per-channel mean and an 8x6 grid of block means, both
//!   in 8-bit levels (0..255), so a mismatch says *how much* moved and
//!   *where*.
//!
//! Classical pipelines must match bit for bit. Pipelines with a learned
//! stage (their convolutions go through `gemm`, whose kernels and
//! summation order differ between AVX2 and AVX-512 machines) must match
//! the statistics within [`NN_MEAN_TOL`] / [`NN_GRID_TOL`] levels.
//!
//! Every capture is rendered twice, on a 1-thread and a 3-thread rayon pool,
//! and the two must agree bit for bit: a result that depends on the thread
//! count is a bug (an order-dependent reduction).
//!
//! After an intended change of output, regenerate the records with
//! `RAWGRAPH_BLESS=1 cargo test --test golden` and commit the JSON with the
//! change that caused it (the diff shows which pipelines moved).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rawgraph::frame::quantize::{Depth, Samples};
use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::output::{to_rgb16, to_rgb8};
use rawgraph::raw::{CfaPattern, NoiseProfile, RawFrame};
use rawgraph::stages::exposure::downcast;
use rawgraph::stages::yuv_encode::YuvFrame;
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams, LinearImage};
use rawgraph::Value;
use serde::{Deserialize, Serialize};

/// Ops whose arithmetic goes through `gemm` (CPU-dependent kernels).
const NN_OPS: &[&str] = &[
    "demosaic_denoise_learned",
    "hdrnet",
    "sky_segment",
    "face_detect",
];
/// Largest change of a per-channel mean allowed for learned pipelines, in
/// 8-bit levels.
const NN_MEAN_TOL: f64 = 0.1;
/// Largest change of one grid cell's mean for learned pipelines, in 8-bit
/// levels.
const NN_GRID_TOL: f64 = 0.5;
const GRID_W: usize = 8;
const GRID_H: usize = 6;

/// One synthetic capture of the set.
struct Case {
    name: &'static str,
    cfa: CfaPattern,
    width: usize,
    height: usize,
    bits: u32,
    black: f32,
    /// Scene multiplier (> 1 clips the bright parts).
    gain: f32,
    noisy: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "rggb_203x149_12b_noisy",
        cfa: CfaPattern::Rggb,
        width: 203,
        height: 149,
        bits: 12,
        black: 256.0,
        gain: 1.0,
        noisy: true,
    },
    Case {
        name: "bggr_160x96_14b_clean",
        cfa: CfaPattern::Bggr,
        width: 160,
        height: 96,
        bits: 14,
        black: 512.0,
        gain: 1.0,
        noisy: false,
    },
    Case {
        name: "grbg_131x97_12b_clipped",
        cfa: CfaPattern::Grbg,
        width: 131,
        height: 97,
        bits: 12,
        black: 128.0,
        gain: 3.0,
        noisy: true,
    },
    Case {
        name: "gbrg_98x71_10b_noisy",
        cfa: CfaPattern::Gbrg,
        width: 98,
        height: 71,
        bits: 10,
        black: 64.0,
        gain: 1.0,
        noisy: true,
    },
];

fn capture(c: &Case) -> RawFrame {
    let mut scene: LinearImage = demo_scene(c.width, c.height);
    scene.data.iter_mut().for_each(|v| *v *= c.gain);
    let p = CaptureParams {
        cfa: c.cfa,
        bits: c.bits,
        black: c.black,
        noise: c.noisy.then_some(NoiseProfile {
            a: [4e-4; 3],
            b: [4e-6; 3],
        }),
        seed: 7,
        ..Default::default()
    };
    mosaic_scene(&scene, &p, c.name).expect("synthetic capture")
}

/// What is recorded of one output value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Image {
        width: usize,
        height: usize,
        /// FNV-1a 64 of the interleaved u16 samples (little-endian), hex.
        digest: String,
        /// Per-channel mean in 8-bit levels.
        mean: [f64; 3],
        /// GRID_H x GRID_W block means per channel, row-major, in 8-bit
        /// levels, rounded to 0.01.
        grid: Vec<[f64; 3]>,
    },
    Scalar {
        value: f64,
    },
    /// A `yuv_encode` frame: FNV-1a 64 of its file bytes, mean luma code.
    Yuv {
        width: usize,
        height: usize,
        digest: String,
        y_mean: f64,
    },
    /// A value that is neither an image nor a scalar (its kind only).
    Other {
        what: String,
    },
}

fn fnv1a64(samples: &[u16]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in samples {
        for b in s.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn record(v: &Value) -> Record {
    match v {
        Value::Image(img) => image_record(&to_rgb16(img), img.width, img.height),
        Value::Encoded(e) => match &e.samples {
            Samples::U16(q) => image_record(q, e.width, e.height),
            Samples::U8(q) => Record::Other {
                what: format!("8-bit samples {}", fnv1a64(&widen(q))),
            },
        },
        v @ Value::Other(_) if downcast::<YuvFrame>(v).is_some() => {
            let f = downcast::<YuvFrame>(v).unwrap();
            let bytes = f.to_bytes();
            let words: Vec<u16> = bytes.iter().map(|&b| b as u16).collect();
            Record::Yuv {
                width: f.width,
                height: f.height,
                digest: fnv1a64(&words),
                y_mean: round2(
                    f.y.iter().map(|&v| v as f64).sum::<f64>() / f.y.len().max(1) as f64,
                ),
            }
        }
        Value::Scalar(s) => Record::Scalar {
            value: (s * 1e6).round() / 1e6,
        },
        other => Record::Other {
            what: other.kind().to_string(),
        },
    }
}

/// The record of interleaved 16-bit RGB samples (`w` x `h`).
fn image_record(q: &[u16], w: usize, h: usize) -> Record {
    let lv = |s: u16| s as f64 * 255.0 / 65535.0;
    let mut mean = [0f64; 3];
    let mut grid = vec![[0f64; 3]; GRID_W * GRID_H];
    let mut count = vec![0usize; GRID_W * GRID_H];
    for y in 0..h {
        for x in 0..w {
            let cell = (y * GRID_H / h) * GRID_W + x * GRID_W / w;
            count[cell] += 1;
            for c in 0..3 {
                let s = lv(q[3 * (y * w + x) + c]);
                mean[c] += s;
                grid[cell][c] += s;
            }
        }
    }
    let n = (w * h).max(1) as f64;
    Record::Image {
        width: w,
        height: h,
        digest: fnv1a64(q),
        mean: mean.map(|m| round2(m / n)),
        grid: grid
            .iter()
            .zip(&count)
            .map(|(g, &k)| g.map(|s| round2(s / k.max(1) as f64)))
            .collect(),
    }
}

/// 8-bit samples as 16-bit words (for the digest).
fn widen(q: &[u8]) -> Vec<u16> {
    q.iter().map(|&b| u16::from(b)).collect()
}

/// Each image output as a digest of its 8-bit samples (`to_rgb8` of a
/// float image), by stage id.
fn digests8(out: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    out.iter()
        .filter_map(|(id, v)| match v {
            Value::Image(img) => Some((id.clone(), fnv1a64(&widen(&to_rgb8(img))))),
            Value::Encoded(e) => match &e.samples {
                Samples::U8(q) => Some((id.clone(), fnv1a64(&widen(q)))),
                Samples::U16(_) => Some((id.clone(), "16-bit samples".into())),
            },
            _ => None,
        })
        .collect()
}

/// Renders `c` through `p` on a rayon pool of `threads` threads; records
/// every output by stage id.
fn render(p: &Pipeline, c: &Case, threads: usize) -> BTreeMap<String, Record> {
    render_with(p, c, threads, false)
}

/// As [`render`]; `no_fuse` runs every stage on its own (the reference
/// path of the fused executor).
fn render_with(p: &Pipeline, c: &Case, threads: usize, no_fuse: bool) -> BTreeMap<String, Record> {
    let opts = RunOptions {
        no_fuse,
        ..Default::default()
    };
    outputs(p, c, threads, &opts)
        .iter()
        .map(|(id, v)| (id.clone(), record(v)))
        .collect()
}

/// The output values of `c` through `p` with `opts`, by stage id.
fn outputs(p: &Pipeline, c: &Case, threads: usize, opts: &RunOptions) -> BTreeMap<String, Value> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let out = pool
        .install(|| graph::run(p, capture(c), opts))
        .unwrap_or_else(|e| panic!("{} on {}: {e}", p.file, c.name));
    out.outputs.into_iter().collect()
}

/// The golden file: pipeline name -> case -> output id -> record.
type Golden = BTreeMap<String, BTreeMap<String, BTreeMap<String, Record>>>;

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pipelines.json")
}

fn shipped() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().to_string(), p))
        .collect();
    v.sort();
    v
}

fn want_size(r: &Record) -> Option<(usize, usize)> {
    match r {
        Record::Image { width, height, .. } | Record::Yuv { width, height, .. } => {
            Some((*width, *height))
        }
        _ => None,
    }
}

/// Why `got` does not match `want` under the pipeline's rule, if it does not.
fn mismatch(want: &Record, got: &Record, exact: bool) -> Option<String> {
    match (want, got) {
        (
            Record::Image {
                width: w0,
                height: h0,
                digest: d0,
                mean: m0,
                grid: g0,
            },
            Record::Image {
                width: w1,
                height: h1,
                digest: d1,
                mean: m1,
                grid: g1,
            },
        ) => {
            if (w0, h0) != (w1, h1) {
                return Some(format!("size {w1}x{h1}, expected {w0}x{h0}"));
            }
            if d0 == d1 {
                return None;
            }
            let dm = m0
                .iter()
                .zip(m1)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let (mut dg, mut at) = (0f64, 0usize);
            for (i, (a, b)) in g0.iter().zip(g1).enumerate() {
                for c in 0..3 {
                    let d = (a[c] - b[c]).abs();
                    if d > dg {
                        (dg, at) = (d, i);
                    }
                }
            }
            let what = format!(
                "digest {d1} != {d0}; mean moved {dm:.2} levels, largest grid cell \
                 change {dg:.2} levels at cell (row {}, col {})",
                at / GRID_W,
                at % GRID_W
            );
            if exact || dm > NN_MEAN_TOL || dg > NN_GRID_TOL {
                Some(what)
            } else {
                None
            }
        }
        (
            Record::Yuv {
                digest: d0,
                y_mean: m0,
                ..
            },
            Record::Yuv {
                digest: d1,
                y_mean: m1,
                ..
            },
        ) if want_size(want) == want_size(got) => {
            let moved = (m0 - m1).abs();
            (d0 != d1 && (exact || moved > NN_MEAN_TOL))
                .then(|| format!("digest {d1} != {d0}; mean luma code moved {moved:.2}"))
        }
        (Record::Scalar { value: a }, Record::Scalar { value: b }) => {
            let tol = if exact { 0.0 } else { 1e-3 };
            ((a - b).abs() > tol).then(|| format!("scalar {b}, expected {a}"))
        }
        (a, b) => (a != b).then(|| format!("{b:?}, expected {a:?}")),
    }
}

/// The golden file's text: one line per output record, so a diff shows
/// which pipeline, case and output moved.
fn golden_json(g: &Golden) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut out = String::from("{\n");
    for (pi, (name, cases)) in g.iter().enumerate() {
        out += &format!("  {}: {{\n", q(name));
        for (ci, (case, outs)) in cases.iter().enumerate() {
            out += &format!("    {}: {{\n", q(case));
            for (oi, (id, r)) in outs.iter().enumerate() {
                let sep = if oi + 1 < outs.len() { "," } else { "" };
                out += &format!(
                    "      {}: {}{sep}\n",
                    q(id),
                    serde_json::to_string(r).unwrap()
                );
            }
            out += if ci + 1 < cases.len() {
                "    },\n"
            } else {
                "    }\n"
            };
        }
        out += if pi + 1 < g.len() { "  },\n" } else { "  }\n" };
    }
    out + "}"
}

#[test]
fn every_shipped_pipeline_matches_its_golden_digests() {
    let bless = std::env::var_os("RAWGRAPH_BLESS").is_some();
    let path = golden_path();
    let golden: Golden = match std::fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s).expect("golden file parses"),
        Err(_) if bless => Golden::new(),
        Err(e) => panic!("{}: {e} (create it with RAWGRAPH_BLESS=1)", path.display()),
    };
    let mut fresh = Golden::new();
    let mut failures = Vec::new();
    for (name, file) in shipped() {
        let p = Pipeline::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let exact = !p.nodes.iter().any(|n| NN_OPS.contains(&n.op));
        for c in CASES {
            let one = render(&p, c, 1);
            let three = render(&p, c, 3);
            if one != three {
                failures.push(format!(
                    "{name}/{}: output depends on the thread count (1 vs 3 threads)",
                    c.name
                ));
            }
            if render_with(&p, c, 3, true) != three {
                failures.push(format!(
                    "{name}/{}: the fused executor's output differs from --no-fuse",
                    c.name
                ));
            }
            // Delivered integer samples (written by the last fused segment
            // where it feeds the output) equal the float output quantised.
            let deliver = |depth, no_fuse| RunOptions {
                deliver: Some(depth),
                no_fuse,
                ..Default::default()
            };
            let rec16: BTreeMap<String, Record> = outputs(&p, c, 3, &deliver(Depth::U16, false))
                .iter()
                .map(|(id, v)| (id.clone(), record(v)))
                .collect();
            if rec16 != three {
                failures.push(format!(
                    "{name}/{}: delivered 16-bit samples differ from the float output quantised",
                    c.name
                ));
            }
            let float8 = digests8(&outputs(&p, c, 1, &RunOptions::default()));
            for no_fuse in [false, true] {
                if digests8(&outputs(&p, c, 2, &deliver(Depth::U8, no_fuse))) != float8 {
                    failures.push(format!(
                        "{name}/{}: delivered 8-bit samples (no_fuse {no_fuse}) differ from the \
                         float output quantised",
                        c.name
                    ));
                }
            }
            if !bless {
                match golden.get(&name).and_then(|g| g.get(c.name)) {
                    None => failures.push(format!(
                        "{name}/{}: no golden record (new pipeline? bless with RAWGRAPH_BLESS=1)",
                        c.name
                    )),
                    Some(want) => {
                        let ids: Vec<&String> = want.keys().collect();
                        let got_ids: Vec<&String> = one.keys().collect();
                        if ids != got_ids {
                            failures.push(format!(
                                "{name}/{}: outputs {got_ids:?}, expected {ids:?}",
                                c.name
                            ));
                        }
                        for (id, w) in want {
                            if let Some(why) = one.get(id).and_then(|g| mismatch(w, g, exact)) {
                                failures.push(format!("{name}/{}/{id}: {why}", c.name));
                            }
                        }
                    }
                }
            }
            fresh
                .entry(name.clone())
                .or_default()
                .insert(c.name.to_string(), one);
        }
    }
    if bless {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let s = golden_json(&fresh);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, s + "\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        eprintln!("blessed {}", path.display());
    }
    for k in golden.keys() {
        if !fresh.contains_key(k) {
            failures.push(format!(
                "{k}: golden record of a pipeline that no longer ships"
            ));
        }
    }
    assert!(
        failures.is_empty() || bless,
        "{} golden mismatch(es):\n{}\n(intended? RAWGRAPH_BLESS=1 cargo test --test golden, \
         and commit tests/golden/pipelines.json)",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn digest_and_mismatch_rules_catch_changes() {
    // A one-sample change moves the digest; the rules then tell exact
    // pipelines from tolerant ones.
    let a = [1u16, 2, 3, 4];
    let b = [1u16, 2, 3, 5];
    assert_ne!(fnv1a64(&a), fnv1a64(&b));
    let img = |digest: &str, m: f64, g: f64| Record::Image {
        width: 2,
        height: 2,
        digest: digest.into(),
        mean: [m; 3],
        grid: vec![[g; 3]; 2],
    };
    let want = img("aa", 100.0, 100.0);
    assert!(mismatch(&want, &img("aa", 100.0, 100.0), true).is_none());
    assert!(mismatch(&want, &img("bb", 100.0, 100.0), true).is_some());
    assert!(mismatch(&want, &img("bb", 100.05, 100.3), false).is_none());
    assert!(mismatch(&want, &img("bb", 100.05, 101.0), false).is_some());
    assert!(mismatch(&want, &img("bb", 100.5, 100.0), false).is_some());
}

#[test]
fn shipped_chains_run_fused_and_no_fuse_runs_every_stage_alone() {
    let c = &CASES[0];
    // fast and balanced: the whole classical chain is one segment (as-shot
    // WB; balanced's lens_shading has no map here and is skipped), with
    // bilinear and RCD demosaicking strips inside it. default's
    // `demosaic_rcd_mlri` runs on whole frames (2-D tiles, no row kernel):
    // the raw prep before it and the colour tail after it fuse apart.
    for (name, segment) in [
        ("fast", "bl+wb+dm+cc+out"),
        ("balanced", "bl+wb+dm+cc+exp+out"),
        ("default", "bl+wb"),
        ("default", "cc+exp+out"),
    ] {
        let p = Pipeline::resolve(name).unwrap();
        let fused = graph::run(&p, capture(c), &RunOptions::default()).unwrap();
        let members: Vec<&str> = fused
            .timings
            .stages
            .iter()
            .filter(|t| t.fused.as_deref() == Some(segment))
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(
            members,
            segment.split('+').collect::<Vec<_>>(),
            "{name}: {:?}",
            fused.timings.stages
        );
        // Every stage keeps its row; shares are non-negative and add up.
        let ids = |t: &rawgraph::Timings| t.stages.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        let reference = graph::run(
            &p,
            capture(c),
            &RunOptions {
                no_fuse: true,
                ..Default::default()
            },
        )
        .unwrap();
        let (mut a, mut b) = (ids(&fused.timings), ids(&reference.timings));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: the same stages report in both paths");
        assert!(reference.timings.stages.iter().all(|t| t.fused.is_none()));
        assert!(fused.timings.stages.iter().all(|t| t.host_ms >= 0.0));
        let json = serde_json::to_string(&fused.timings).unwrap();
        assert!(json.contains(&format!("\"fused\":\"{segment}\"")), "{json}");
    }
    // Delivering 8-bit samples: fast's segment quantises as its last step
    // (its own timing row, in the segment) and orient, with nothing to do
    // on an upright frame, passes the samples on.
    let p = Pipeline::resolve("fast").unwrap();
    let opts = RunOptions {
        deliver: Some(Depth::U8),
        ..Default::default()
    };
    let run = graph::run(&p, capture(c), &opts).unwrap();
    let row = |id: &str| run.timings.stages.iter().find(|t| t.id == id).cloned();
    let q = row("out.deliver").expect("a delivery row");
    assert_eq!(q.op, "quantize_u8");
    assert_eq!(q.fused.as_deref(), Some("bl+wb+dm+cc+out"));
    assert!(row("orient").unwrap().op.contains("skipped"));
    let Value::Encoded(e) = &run.outputs[0].1 else {
        panic!(
            "fast delivers encoded samples, got {:?}",
            run.outputs[0].1.kind()
        );
    };
    assert_eq!(e.samples.len(), 3 * CASES[0].width * CASES[0].height);
    // Only finished (sRGB) images are delivered: a linear output stays f32,
    // fused or not.
    let linear = Pipeline::from_yaml(
        "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  - { id: bl, op: black_level }\n  \
         - { id: dm, op: demosaic_bilinear }\n",
        "linear.yaml",
    )
    .unwrap();
    for no_fuse in [false, true] {
        let o = RunOptions {
            no_fuse,
            ..opts.clone()
        };
        let run = graph::run(&linear, capture(c), &o).unwrap();
        assert!(
            matches!(run.outputs[0].1, Value::Image(_)),
            "no_fuse {no_fuse}"
        );
        assert!(run
            .timings
            .stages
            .iter()
            .all(|t| !t.id.ends_with(".deliver")));
    }
}

/// Segments that end in an image stencil (`sharpen`) or an encoder
/// (`yuv_encode`) after the demosaic: the member joins the segment, and on
/// every capture (all Bayer phases, odd sizes) at 1 and 3 threads the
/// fused output equals the reference path's, float and delivered (8-bit
/// images; a YUV frame stays the encoder's value).
#[test]
fn stencil_and_encoder_members_fuse_and_equal_no_fuse() {
    let head =
        "version: 1\nstages:\n  - { id: raw, op: raw_source }\n  - { id: bl, op: black_level }\n  \
                - { id: wb, op: white_balance, params: { mode: auto, clip_highlights: true } }\n  \
                - { id: dm, op: demosaic_bilinear }\n  - { id: cc, op: color_correct }\n  \
                - { id: out, op: srgb_encode }\n";
    for (tail, member) in [
        (
            "  - { id: sharp, op: sharpen, params: { amount: 0.8, radius: 1.3, threshold: 0.002 } }\n",
            "sharp",
        ),
        (
            // the stencil, then the encoder taking its rows
            "  - { id: sharp, op: sharpen, params: { amount: 0.8, radius: 1.3, threshold: 0.002 } }\n  \
             - { id: yuv, op: yuv_encode, params: { matrix: bt709, range: limited, format: nv12 } }\n",
            "sharp+yuv",
        ),
        (
            "  - { id: sharp, op: sharpen, params: { amount: 0.5, radius: 0.3, threshold: 0.0, overshoot: 0.0 } }\n  \
             - { id: yuv, op: yuv_encode, params: { matrix: bt601, range: full, format: i420 } }\n",
            "sharp+yuv",
        ),
        (
            "  - { id: sharp, op: sharpen, params: { amount: 0.5, radius: 0.3, threshold: 0.0, overshoot: 0.0 } }\n",
            "sharp",
        ),
        (
            "  - { id: yuv, op: yuv_encode, params: { matrix: bt709, range: limited, format: nv12 } }\n",
            "yuv",
        ),
        (
            "  - { id: yuv, op: yuv_encode, params: { matrix: bt2020, range: full, format: p010 } }\n",
            "yuv",
        ),
    ] {
        let p = Pipeline::from_yaml(&format!("{head}{tail}"), "t.yaml").unwrap();
        let last = member.rsplit('+').next().unwrap();
        for c in CASES {
            let fused = graph::run(&p, capture(c), &RunOptions::default()).unwrap();
            let label = fused
                .timings
                .stages
                .iter()
                .find(|t| t.id == last)
                .and_then(|t| t.fused.clone());
            assert_eq!(label.as_deref(), Some(&*format!("bl+wb+dm+cc+out+{member}")), "{}", c.name);
            let reference = render_with(&p, c, 3, true);
            for threads in [1, 3] {
                assert_eq!(render_with(&p, c, threads, false), reference, "{} {tail}", c.name);
            }
            let float8 = digests8(&outputs(&p, c, 1, &RunOptions::default()));
            let opts = RunOptions {
                deliver: Some(Depth::U8),
                ..Default::default()
            };
            let delivered = outputs(&p, c, 2, &opts);
            assert_eq!(digests8(&delivered), float8, "{} delivered", c.name);
            if last == "yuv" {
                let got: BTreeMap<String, Record> =
                    delivered.iter().map(|(id, v)| (id.clone(), record(v))).collect();
                assert_eq!(got, reference, "{} delivered", c.name);
            }
        }
    }
}
