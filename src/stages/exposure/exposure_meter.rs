//! `exposure_meter`: chooses the exposure (EV) and the highlight white
//! point handed to tone mapping, from the linear frame, optional face boxes
//! and an optional sky map.
//!
//! Method (`mode: semantic`), in the spirit of face-priority auto exposure
//! (Android's `CONTROL_SCENE_MODE_FACE_PRIORITY`; Gcam AE as used by
//! ChromiumOS, which returns a total exposure plus an HDR ratio for tone
//! mapping; Google's "Sky Optimization" which segments the sky and treats
//! it separately, Orsic & Sharma 2020):
//! 1. the frame is box-downscaled to a metering grid (`grid` in the tuning);
//! 2. scene EV: the log-average luminance of the non-sky, unclipped pixels
//!    placed at `mid_grey` (the global-histogram fallback);
//! 3. faces: the median luminance of each box's centre, combined as a
//!    geometric mean weighted by the box's linear size, placed at
//!    `face.target`, blended with the scene EV by `face.weight`;
//! 4. highlights: a percentile of the max channel over the sky pixels (or
//!    the whole frame without sky) times `white_margin` sets the white point
//!    the tone curve maps to display white, up to `2^max_highlight_ev`
//!    (Gcam's HDR ratio plays this role); without faces a sky
//!    needing more than `sky.max_compression_ev` of compression, or any
//!    highlight without sky, lowers the EV instead (faces keep priority);
//! 5. EV limits; a frame that is almost all clipped is left at <= 0 EV.
//!
//! Baselines in the same stage: `mode: average` (arithmetic mean luminance
//! at `mid_grey`) and `mode: centre_weighted` (a Gaussian-weighted mean),
//! both with white point 1 (no highlight handling).
//!
//! Temporal smoothing: once a run over a sequence starts
//! ([`Stage::start_sequence`], `rawgraph process --sequence`), each frame's
//! EV moves toward the frame's own target by `temporal.speed` of the error
//! beyond a dead band, at most `max_step_ev` per frame, never past the
//! target: the exposure converges monotonically, without oscillation.
//!
//! Inputs: a linear image (camera RGB or linear sRGB, 1.0 = sensor white),
//! then optionally a `faces` value and/or a `sky_map` value, in any order.
//! Output: an `exposure_control` value (see [`ExposureControl`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use super::tuning::{Temporal, Tuning};
use super::{area_downscale, downcast, grid_size, ExposureControl, Faces, SkyMap};
use super::{EXPOSURE_CONTROL, FACES, SKY_MAP};
use crate::color::luminance;
use crate::error::{Error, Result};
use crate::frame::{ColorSpace, Image, Value, ValueDesc, ValueKind};
use crate::stages::{check_range, parse_params, RunCtx, Stage};

/// Metering method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MeterMode {
    /// Faces, sky and histogram (the method above).
    #[default]
    Semantic,
    /// Baseline: mean luminance to mid grey.
    Average,
    /// Baseline: centre-weighted mean luminance to mid grey.
    CentreWeighted,
}

impl MeterMode {
    /// The YAML name.
    pub fn name(self) -> &'static str {
        match self {
            MeterMode::Semantic => "semantic",
            MeterMode::Average => "average",
            MeterMode::CentreWeighted => "centre_weighted",
        }
    }
}

/// YAML params of `exposure_meter`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub mode: MeterMode,
    /// Tuning file; absent = the shipped calibration/exposure/semantic.yaml.
    pub tuning: Option<PathBuf>,
    /// EV added to the metered result (exposure compensation).
    pub bias_ev: f32,
}

/// The compiled `exposure_meter` op.
#[derive(Debug)]
pub struct ExposureMeter {
    mode: MeterMode,
    bias_ev: f32,
    tuning: Tuning,
    sequence: AtomicBool,
    state: Mutex<Smoother>,
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("bias_ev", self.bias_ev, -8.0, 8.0)?;
        Ok(())
    }
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let tuning = match &p.tuning {
        Some(path) => Tuning::load(path),
        None => Tuning::shipped(),
    }
    .map_err(|e| format!("tuning: {e}"))?;
    Ok(Box::new(ExposureMeter::new(p.mode, tuning, p.bias_ev)))
}

impl ExposureMeter {
    /// A meter with the given mode and tuning.
    pub fn new(mode: MeterMode, tuning: Tuning, bias_ev: f32) -> Self {
        let state = Mutex::new(Smoother::new(tuning.temporal.clone()));
        ExposureMeter {
            mode,
            bias_ev,
            tuning,
            sequence: AtomicBool::new(false),
            state,
        }
    }

    /// Meters one frame (no temporal smoothing).
    pub fn meter(
        &self,
        img: &Image,
        faces: Option<&Faces>,
        sky: Option<&SkyMap>,
    ) -> ExposureControl {
        let mut c = meter(img, faces, sky, self.mode, &self.tuning);
        if self.bias_ev != 0.0 {
            c.ev =
                (c.ev + self.bias_ev).clamp(self.tuning.limits.min_ev, self.tuning.limits.max_ev);
            c.frame_ev = c.ev;
            c.white_point = rescale_white(&c, &self.tuning);
        }
        c
    }
}

/// The white point for `c.ev` from the highlight stored in `c`.
fn rescale_white(c: &ExposureControl, t: &Tuning) -> f32 {
    match c.highlight {
        Some(hi) => {
            (hi * 2f32.powf(c.ev) * t.white_margin).clamp(1.0, 2f32.powf(t.max_highlight_ev))
        }
        None => c.white_point,
    }
}

/// Temporal smoother state: the EV in use, `None` before the first frame.
#[derive(Debug, Clone)]
pub struct Smoother {
    cfg: Temporal,
    current: Option<f32>,
}

impl Smoother {
    /// A smoother with no history.
    pub fn new(cfg: Temporal) -> Self {
        Smoother { cfg, current: None }
    }

    /// Forgets the history.
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// The EV to use for a frame whose own target is `target`.
    pub fn step(&mut self, target: f32) -> f32 {
        let cur = match self.current {
            None => target,
            Some(cur) => {
                let err = target - cur;
                let beyond = err.abs() - self.cfg.deadband_ev;
                if beyond <= 0.0 {
                    cur
                } else {
                    let mv = (beyond * self.cfg.speed)
                        .max(beyond.min(0.02))
                        .min(self.cfg.max_step_ev);
                    cur + mv.copysign(err)
                }
            }
        };
        self.current = Some(cur);
        cur
    }
}

/// Meters `img` (see the module docs); pure, no temporal state.
pub fn meter(
    img: &Image,
    faces: Option<&Faces>,
    sky: Option<&SkyMap>,
    mode: MeterMode,
    t: &Tuning,
) -> ExposureControl {
    let (gw, gh) = grid_size(img.width, img.height, t.grid);
    let rgb = area_downscale(img, gw, gh);
    let n = gw * gh;
    let (r, rest) = rgb.split_at(n);
    let (g, b) = rest.split_at(n);
    let fin = |v: f32| if v.is_finite() { v.max(0.0) } else { 0.0 };
    let y: Vec<f32> = (0..n).map(|i| fin(luminance(r[i], g[i], b[i]))).collect();
    let maxc: Vec<f32> = (0..n).map(|i| fin(r[i].max(g[i]).max(b[i]))).collect();
    let lim = &t.limits;
    let done = |ev: f32, white: f32, method: &'static str, face, hi| {
        let ev = if ev.is_finite() { ev } else { 0.0 }.clamp(lim.min_ev, lim.max_ev);
        ExposureControl {
            ev,
            white_point: white,
            method,
            frame_ev: ev,
            face_luminance: face,
            highlight: hi,
        }
    };
    match mode {
        MeterMode::Average => {
            let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64;
            let ev = (t.mid_grey as f64 / mean.max(1e-6)).log2() as f32;
            return done(ev, 1.0, "average", None, None);
        }
        MeterMode::CentreWeighted => {
            let (cx, cy) = (gw as f32 / 2.0, gh as f32 / 2.0);
            let diag = ((gw * gw + gh * gh) as f32).sqrt();
            let s2 = 2.0 * (t.centre_sigma * diag).powi(2);
            let (mut sw, mut sy) = (0f64, 0f64);
            for yy in 0..gh {
                for xx in 0..gw {
                    let d2 = (xx as f32 + 0.5 - cx).powi(2) + (yy as f32 + 0.5 - cy).powi(2);
                    let w = (-d2 / s2).exp() as f64;
                    sw += w;
                    sy += w * y[yy * gw + xx] as f64;
                }
            }
            let mean = sy / sw.max(1e-12);
            let ev = (t.mid_grey as f64 / mean.max(1e-6)).log2() as f32;
            return done(ev, 1.0, "centre_weighted", None, None);
        }
        MeterMode::Semantic => {}
    }

    let clipped = |i: usize| maxc[i] >= 0.99;
    let n_clipped = (0..n).filter(|&i| clipped(i)).count();
    if n == 0 || n_clipped as f32 >= t.clipped_fraction * n as f32 {
        // Blown out: nothing to meter; darkening clipped white only greys it.
        return done(0f32.min(lim.max_ev), 1.0, "none", None, None);
    }

    // Sky mask on the grid.
    let sky_mask: Option<Vec<bool>> = sky.and_then(|m| {
        let (fw, fh) = (m.frame_width as f32, m.frame_height as f32);
        let mask: Vec<bool> = (0..n)
            .map(|i| {
                let (xx, yy) = ((i % gw) as f32 + 0.5, (i / gw) as f32 + 0.5);
                m.sample(xx / gw as f32 * fw, yy / gh as f32 * fh) >= t.sky.threshold
            })
            .collect();
        let frac = mask.iter().filter(|&&s| s).count() as f32 / n as f32;
        (frac >= t.sky.min_fraction.max(1e-6)).then_some(mask)
    });
    let is_sky = |i: usize| sky_mask.as_ref().is_some_and(|m| m[i]);

    // Scene EV: log-average of the non-sky, unclipped pixels.
    let log_avg = |use_sky: bool| {
        let (mut s, mut c) = (0f64, 0usize);
        for (i, &yi) in y.iter().enumerate() {
            if clipped(i) || (!use_sky && is_sky(i)) {
                continue;
            }
            s += (yi.max(1e-5) as f64).ln();
            c += 1;
        }
        (
            c,
            if c > 0 {
                (s / c as f64).exp() as f32
            } else {
                0.0
            },
        )
    };
    let (c, mut la) = log_avg(false);
    if c < n / 100 + 1 {
        la = log_avg(true).1;
    }
    let ev_scene = (t.mid_grey / la.max(1e-5)).log2();

    // Faces.
    let face_lum = faces.and_then(|f| face_luminance(f, &y, gw, gh, t));
    let mut ev = match face_lum {
        Some(fl) => {
            let ev_face = (t.face.target / fl.max(1e-5)).log2();
            t.face.weight * ev_face + (1.0 - t.face.weight) * ev_scene
        }
        None => ev_scene,
    };
    let method = match (face_lum, &sky_mask) {
        (Some(_), _) => "faces",
        (None, Some(_)) => "sky",
        (None, None) => "histogram",
    };

    // Highlights.
    let (hi, allowed_ev) = match &sky_mask {
        Some(m) => {
            let v: Vec<f32> = (0..n).filter(|&i| m[i]).map(|i| maxc[i]).collect();
            (percentile(v, t.sky.percentile), t.sky.max_compression_ev)
        }
        None => (percentile(maxc.clone(), t.highlight_percentile), 0.0),
    };
    let max_white = 2f32.powf(t.max_highlight_ev);
    if hi > 1e-6 && face_lum.is_none() {
        let cap = (2f32.powf(allowed_ev) / hi).log2();
        ev = ev.min(cap);
    }
    let ev = if ev.is_finite() { ev } else { 0.0 }.clamp(lim.min_ev, lim.max_ev);
    let white = if hi > 1e-6 {
        (hi * 2f32.powf(ev) * t.white_margin).clamp(1.0, max_white)
    } else {
        1.0
    };
    let protected = (hi > 1e-6).then_some(hi);
    done(ev, white, method, face_lum, protected)
}

/// Size-weighted geometric mean of the faces' median luminances on the
/// grid (`y`, `gw x gh`); `None` when no box is usable.
fn face_luminance(f: &Faces, y: &[f32], gw: usize, gh: usize, t: &Tuning) -> Option<f32> {
    if f.width == 0 || f.height == 0 {
        return None;
    }
    let (sx, sy) = (gw as f32 / f.width as f32, gh as f32 / f.height as f32);
    let frame_area = (f.width * f.height) as f32;
    let (mut sw, mut sl) = (0f64, 0f64);
    for b in &f.boxes {
        if !(b.x.is_finite() && b.y.is_finite() && b.w.is_finite() && b.h.is_finite())
            || b.area() < t.face.min_area * frame_area
        {
            continue;
        }
        let m = (1.0 - t.face.inner) / 2.0;
        let x0 = ((b.x + m * b.w) * sx).floor().max(0.0) as usize;
        let y0 = ((b.y + m * b.h) * sy).floor().max(0.0) as usize;
        let x1 = (((b.x + (1.0 - m) * b.w) * sx).ceil().max(0.0) as usize).min(gw);
        let y1 = (((b.y + (1.0 - m) * b.h) * sy).ceil().max(0.0) as usize).min(gh);
        if x1 <= x0 || y1 <= y0 {
            continue;
        }
        let v: Vec<f32> = (y0..y1)
            .flat_map(|yy| (x0..x1).map(move |xx| yy * gw + xx))
            .map(|i| y[i])
            .collect();
        let med = percentile(v, 0.5).max(1e-5);
        let w = b.area().sqrt() as f64;
        sw += w;
        sl += w * (med as f64).ln();
    }
    (sw > 0.0).then(|| (sl / sw).exp() as f32)
}

/// Percentile `q` (0..1) of `v` (0 when empty).
pub fn percentile(mut v: Vec<f32>, q: f32) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() as f32 * q) as usize).min(v.len() - 1);
    let (_, kth, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *kth
}

impl Stage for ExposureMeter {
    fn op(&self) -> &'static str {
        "exposure_meter"
    }

    fn arity(&self) -> (usize, usize) {
        (1, 3)
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        let d = inputs.first().ok_or("expects an image input")?;
        if d.kind != ValueKind::Image || d.space == Some(ColorSpace::Srgb) {
            return Err("expects a linear image as first input".into());
        }
        let mut seen = Vec::new();
        for s in &inputs[1..] {
            match s.kind {
                ValueKind::Other(k) if (k == FACES || k == SKY_MAP) && !seen.contains(&k) => {
                    seen.push(k)
                }
                k => {
                    return Err(format!(
                    "inputs after the image must be one faces and/or one sky_map value, got a {k}"
                ))
                }
            }
        }
        Ok(ValueDesc::other(ValueKind::Other(EXPOSURE_CONTROL)))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let img = match inputs.first() {
            Some(Value::Image(i)) => i.clone(),
            _ => return Err(Error::invalid("expects an image as first input")),
        };
        let faces = inputs[1..].iter().find_map(downcast::<Faces>);
        let sky = inputs[1..].iter().find_map(downcast::<SkyMap>);
        let mut c = self.meter(&img, faces, sky);
        if self.sequence.load(Ordering::SeqCst) {
            let mut st = self
                .state
                .lock()
                .map_err(|_| Error::invalid("exposure meter state poisoned"))?;
            c.ev = st.step(c.frame_ev);
            c.white_point = rescale_white(&c, &self.tuning);
        }
        Ok(Value::Other(std::sync::Arc::new(c)))
    }

    fn start_sequence(&self) {
        self.sequence.store(true, Ordering::SeqCst);
        if let Ok(mut st) = self.state.lock() {
            st.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::FaceBox;
    use super::*;

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> [f32; 3]) -> Image {
        let mut data = vec![0f32; 3 * w * h];
        for y in 0..h {
            for x in 0..w {
                let v = f(x, y);
                for c in 0..3 {
                    data[c * w * h + y * w + x] = v[c];
                }
            }
        }
        super::super::planar_image(w, h, data, ColorSpace::LinearSrgb)
    }

    fn t() -> Tuning {
        Tuning::shipped().unwrap()
    }

    #[test]
    fn flat_grey_frame_goes_to_mid_grey() {
        let img = image(64, 48, |_, _| [0.045; 3]);
        for mode in [
            MeterMode::Semantic,
            MeterMode::Average,
            MeterMode::CentreWeighted,
        ] {
            let c = meter(&img, None, None, mode, &t());
            assert!((c.ev - 2.0).abs() < 0.02, "{mode:?}: {c:?}");
        }
    }

    #[test]
    fn black_white_and_empty_frames_get_finite_sensible_gains() {
        let tt = t();
        let black = image(64, 48, |_, _| [0.0; 3]);
        let white = image(64, 48, |_, _| [1.0; 3]);
        let nan = image(8, 8, |_, _| [f32::NAN; 3]);
        for mode in [
            MeterMode::Semantic,
            MeterMode::Average,
            MeterMode::CentreWeighted,
        ] {
            for img in [&black, &white, &nan] {
                let c = meter(img, None, None, mode, &tt);
                assert!(c.ev.is_finite() && c.white_point.is_finite(), "{c:?}");
                assert!(c.ev >= tt.limits.min_ev && c.ev <= tt.limits.max_ev);
                assert!(c.white_point >= 1.0);
            }
            assert_eq!(meter(&black, None, None, mode, &tt).ev, tt.limits.max_ev);
        }
        let c = meter(&white, None, None, MeterMode::Semantic, &tt);
        assert_eq!(c.ev, 0.0, "blown-out frame stays at 0 EV: {c:?}");
    }

    #[test]
    fn face_lands_on_target_in_a_backlit_scene() {
        // Bright top half (sky, 0.8), face box at 0.02 in the lower half,
        // mid-dark surroundings 0.05.
        let tt = t();
        let img = image(200, 150, |x, y| {
            if y < 60 {
                [0.6, 0.7, 0.8]
            } else if (80..120).contains(&x) && (80..130).contains(&y) {
                [0.02; 3]
            } else {
                [0.05; 3]
            }
        });
        let faces = Faces {
            width: 200,
            height: 150,
            detector: "test".into(),
            boxes: vec![FaceBox {
                x: 80.0,
                y: 80.0,
                w: 40.0,
                h: 50.0,
                score: 1.0,
                landmarks: None,
            }],
        };
        let sky = SkyMap {
            width: 20,
            height: 15,
            frame_width: 200,
            frame_height: 150,
            prob: (0..300)
                .map(|i| if i / 20 < 6 { 1.0 } else { 0.0 })
                .collect(),
            model: "test".into(),
        };
        let c = meter(&img, Some(&faces), Some(&sky), MeterMode::Semantic, &tt);
        let face_after = 0.02 * 2f32.powf(c.ev);
        assert!(
            (face_after / tt.face.target).log2().abs() < 0.05,
            "face at {face_after}: {c:?}"
        );
        assert_eq!(c.method, "faces");
        // The sky's highlights (0.8 * 10) are handed to tone mapping.
        let want = (0.8 * 2f32.powf(c.ev) * tt.white_margin).min(2f32.powf(tt.max_highlight_ev));
        assert!((c.white_point - want).abs() < 1e-3, "{c:?}");
        // Average metering leaves the face far too dark.
        let a = meter(&img, Some(&faces), Some(&sky), MeterMode::Average, &tt);
        assert!(0.02 * 2f32.powf(a.ev) < tt.face.target / 2.0, "{a:?}");
        // Without the face, the sky keeps the EV down.
        let s = meter(&img, None, Some(&sky), MeterMode::Semantic, &tt);
        assert_eq!(s.method, "sky");
        assert!(0.8 * 2f32.powf(s.ev) <= 2f32.powf(tt.sky.max_compression_ev) + 1e-3);
    }

    #[test]
    fn smoother_converges_without_oscillation() {
        let cfg = t().temporal;
        let mut s = Smoother::new(cfg.clone());
        assert_eq!(s.step(1.0), 1.0);
        // Step change to +3 EV: monotone approach, never past the target.
        let mut prev = 1.0;
        let mut reached = None;
        for k in 0..60 {
            let e = s.step(3.0);
            assert!(e >= prev - 1e-6 && e <= 3.0 + 1e-6, "frame {k}: {e}");
            assert!(e - prev <= cfg.max_step_ev + 1e-6);
            if reached.is_none() && (3.0 - e).abs() <= cfg.deadband_ev + 1e-3 {
                reached = Some(k);
            }
            prev = e;
        }
        assert!(reached.is_some_and(|k| k < 30), "{reached:?}");
        // Flickering targets inside the dead band: the output holds still.
        let held = prev;
        for k in 0..20 {
            let e = s.step(held + if k % 2 == 0 { 0.1 } else { -0.1 });
            assert_eq!(e, held);
        }
        // Alternating +-1 EV targets: the output never swings by more than
        // the step limit and its direction changes only with the target's.
        let mut last = s.step(held);
        for k in 0..20 {
            let tgt = held + if k % 2 == 0 { 1.0 } else { -1.0 };
            let e = s.step(tgt);
            assert!((e - last).abs() <= cfg.max_step_ev + 1e-6);
            assert!((e - last) * (tgt - last) >= 0.0, "moved away from target");
            last = e;
        }
    }
}
