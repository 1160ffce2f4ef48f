//! Semantic exposure end to end on synthetic raws: the shipped pipeline
//! runs, degenerate frames get finite gains, the face/sky cases behave,
//! and a sequence converges without oscillating.

use std::sync::Arc;

use rawgraph::graph::{self, Pipeline, RunOptions};
use rawgraph::stages::exposure::{downcast, ExposureControl};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams, LinearImage};
use rawgraph::Value;

/// The shipped pipeline with the meter's control value as an extra output.
fn pipeline() -> Pipeline {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/semantic_exposure.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text.replace("outputs: [orient]", "outputs: [orient, meter]");
    assert!(text.contains("outputs: [orient, meter]"));
    Pipeline::from_yaml(&text, "semantic_exposure.yaml").unwrap()
}

fn control(out: &graph::RunOutput) -> ExposureControl {
    let v = &out.outputs.iter().find(|(id, _)| id == "meter").unwrap().1;
    downcast::<ExposureControl>(v).unwrap().clone()
}

fn flat(w: usize, h: usize, v: f32) -> LinearImage {
    LinearImage {
        width: w,
        height: h,
        data: vec![v; 3 * w * h],
    }
}

fn run(p: &Pipeline, scene: &LinearImage, seed: u64) -> (ExposureControl, Arc<rawgraph::Image>) {
    let cp = CaptureParams {
        seed,
        ..CaptureParams::default()
    };
    let frame = mosaic_scene(scene, &cp, "synthetic").unwrap();
    let out = graph::run(p, frame, &RunOptions::default()).unwrap();
    let img = match &out.outputs[0].1 {
        Value::Image(i) => i.clone(),
        v => panic!("output is a {}", v.kind()),
    };
    (control(&out), img)
}

#[test]
fn black_white_and_plain_frames_get_finite_gains() {
    let p = pipeline();
    for (name, scene) in [
        ("black", flat(96, 64, 0.0)),
        ("white", flat(96, 64, 1.0)),
        ("grey", flat(96, 64, 0.05)),
    ] {
        let (c, img) = run(&p, &scene, 3);
        assert!(
            c.ev.is_finite() && c.white_point.is_finite(),
            "{name}: {c:?}"
        );
        assert!((-6.0..=8.0).contains(&c.ev), "{name}: {c:?}");
        assert!(img.data.iter().all(|v| v.is_finite()), "{name}");
        if name == "white" {
            assert!(
                c.ev <= 0.0,
                "a blown-out frame is not pushed down to grey: {c:?}"
            );
        }
        if name == "grey" {
            // Plain grey at 0.05: the histogram fallback lifts it ~1.85 EV.
            assert!((c.ev - (0.18f32 / 0.05).log2()).abs() < 0.3, "{c:?}");
        }
    }
}

#[test]
fn demo_scene_meters_sensibly_at_every_offset() {
    // The same scene 2 EV darker or brighter, nothing clipped at the
    // sensor: the chosen EV compensates the offset.
    let p = pipeline();
    let base = demo_scene(192, 128);
    let mut evs = Vec::new();
    for off in [-2.0f32, 0.0, 2.0] {
        let k = 2f32.powf(off - 4.0);
        let s = LinearImage {
            data: base.data.iter().map(|v| v * k).collect(),
            ..base.clone()
        };
        evs.push(run(&p, &s, 5).0.ev);
    }
    assert!(evs[0] > evs[1] && evs[1] > evs[2], "{evs:?}");
    // Noise at the dark end and the highlight caps make it inexact.
    let span = evs[0] - evs[2];
    assert!((3.0..=5.0).contains(&span), "{evs:?}");
}

#[test]
fn sequence_smoothing_converges_without_oscillation() {
    let p = pipeline();
    p.start_sequence();
    let base = demo_scene(160, 120);
    let dark = LinearImage {
        data: base.data.iter().map(|v| v * 0.03).collect(),
        ..base.clone()
    };
    let bright = LinearImage {
        data: base.data.iter().map(|v| v * 0.25).collect(),
        ..base.clone()
    };
    // 4 dark frames, then the scene brightens by 3 EV for 14 frames.
    let mut evs = Vec::new();
    let mut targets = Vec::new();
    for k in 0..18 {
        let s = if k < 4 { &dark } else { &bright };
        let (c, _) = run(&p, s, 100 + k as u64);
        evs.push(c.ev);
        targets.push(c.frame_ev);
    }
    let tail_target = targets[17];
    // After the step the EV falls monotonically toward the new target,
    // never past it (no overshoot, no oscillation).
    for k in 5..18 {
        assert!(evs[k] <= evs[k - 1] + 1e-4, "frame {k}: {evs:?}");
        assert!(
            evs[k] >= tail_target - 0.2,
            "overshoot at {k}: {evs:?} {targets:?}"
        );
    }
    assert!(
        evs[4] > tail_target + 0.5,
        "the first bright frame is still smoothed: {evs:?}"
    );
    assert!(
        (evs[17] - tail_target).abs() <= 0.25,
        "converged: {evs:?} {targets:?}"
    );
    // The direction of change flips at most once (the step itself).
    let signs: Vec<i32> = evs
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| d.abs() > 1e-4)
        .map(|d| d.signum() as i32)
        .collect();
    let flips = signs.windows(2).filter(|s| s[0] != s[1]).count();
    assert!(flips <= 1, "{evs:?}");
}
