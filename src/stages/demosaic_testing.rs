//! Test support shared by the demosaic ops' unit tests: synthetic mosaics
//! from a scene function, running an op by name, the error against the
//! scene, and the flat-field check every demosaic must pass.

use std::sync::Arc;

use super::RunCtx;
use crate::frame::{Image, Mosaic, Value};
use crate::raw::{CfaPattern, RawMeta};

/// A scene: linear RGB in [0, 1] at pixel (x, y).
pub(crate) type Scene<'a> = &'a dyn Fn(usize, usize) -> [f32; 3];

/// The normalised `w` x `h` mosaic of `rgb` under `cfa` (each photosite
/// keeps its own colour's value).
pub(crate) fn mosaic_of(rgb: Scene, w: usize, h: usize, cfa: CfaPattern) -> Mosaic {
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            data.push(rgb(x, y)[cfa.color_at(y, x)]);
        }
    }
    Mosaic::normalized(w, h, cfa, data, RawMeta::bayer("t", w, h, cfa))
}

/// Op `op` compiled with `params`, run on the CPU on `m`.
pub(crate) fn run_op(op: &str, params: serde_json::Value, m: Mosaic) -> Image {
    let st = super::registry::compile(op, params).unwrap();
    let ctx = RunCtx { stage_id: "dm" };
    match st.run_cpu(&ctx, vec![Value::Mosaic(Arc::new(m))]).unwrap() {
        Value::Image(i) => (*i).clone(),
        _ => panic!("{op}: not an image"),
    }
}

/// Mean squared error of `img` against `truth` over all three planes,
/// `border` pixels excluded on every side.
pub(crate) fn mse(img: &Image, truth: Scene, border: usize) -> f64 {
    let (w, h) = (img.width, img.height);
    let p = img.planes();
    let (mut s, mut k) = (0f64, 0usize);
    for y in border..h - border {
        for x in border..w - border {
            let t = truth(x, y);
            for c in 0..3 {
                let d = (p[c][y * w + x] - t[c]) as f64;
                s += d * d;
            }
            k += 3;
        }
    }
    s / k as f64
}

/// A flat colour field comes back within `tol` everywhere, in every Bayer
/// phase and at even, odd and tiny sizes.
pub(crate) fn assert_flat_fields_exact(op: &str, tol: f32) {
    let col = [0.31f32, 0.55, 0.18];
    for cfa in CfaPattern::ALL {
        for (w, h) in [(64, 48), (37, 29), (5, 3), (2, 2)] {
            let img = run_op(
                op,
                serde_json::Value::Null,
                mosaic_of(&|_, _| col, w, h, cfa),
            );
            for (c, plane) in img.planes().iter().enumerate() {
                for (k, &v) in plane.iter().enumerate() {
                    assert!(
                        (v - col[c]).abs() < tol,
                        "{op} {cfa:?} {w}x{h} plane {c} px {k}: {v} vs {}",
                        col[c]
                    );
                }
            }
        }
    }
}
