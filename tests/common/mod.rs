//! Helpers shared by integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared data folder ($RAWGRAPH_DATA, default ../shared/data).
pub fn data_dir() -> PathBuf {
    rawgraph::eval::data_dir()
}

/// Returns the data path when present. When absent: panics if
/// RAWGRAPH_REQUIRE_DATA is set (CI), else prints loudly that the test is
/// skipped and returns None.
pub fn data(rel: &str) -> Option<PathBuf> {
    let p = data_dir().join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("RAWGRAPH_REQUIRE_DATA").is_some() {
        panic!("required test data {} is missing", p.display());
    }
    eprintln!(
        "SKIPPED: test data {} not found (set RAWGRAPH_DATA)",
        p.display()
    );
    None
}

/// Black level (DN) of [`synth_meta12`].
pub const SYNTH_BLACK: f32 = 256.0;
/// White level (DN) of [`synth_meta12`].
pub const SYNTH_WHITE: f32 = 4095.0;

/// Metadata of a synthetic 12-bit Bayer capture by make "Synth": black
/// [`SYNTH_BLACK`], white [`SYNTH_WHITE`] DN.
pub fn synth_meta12(
    model: &str,
    w: usize,
    h: usize,
    cfa: rawgraph::raw::CfaPattern,
) -> rawgraph::raw::RawMeta {
    let mut meta = rawgraph::raw::RawMeta::bayer(&model.to_lowercase(), w, h, cfa);
    meta.black = rawgraph::raw::BlackLevel::uniform(SYNTH_BLACK);
    meta.white = [SYNTH_WHITE; 3];
    meta.bits = 12;
    meta.make = "Synth".into();
    meta.model = model.into();
    meta
}

/// Runs `black_level` then `op` (with `params`) on a frame: the
/// normalised mosaic before and after `op`.
pub fn after_black_level(
    frame: rawgraph::raw::RawFrame,
    op: &str,
    params: serde_json::Value,
) -> (Vec<f32>, Vec<f32>) {
    use rawgraph::stages::{self, RunCtx};
    let data = |v: &rawgraph::Value| match v {
        rawgraph::Value::Mosaic(m) => m.data.clone().into_f32(),
        _ => panic!("not a mosaic"),
    };
    let ctx = RunCtx { stage_id: "t" };
    let bl = stages::compile("black_level", serde_json::Value::Null).unwrap();
    let stage = stages::compile(op, params).unwrap();
    let v = bl
        .run_cpu(
            &ctx,
            vec![rawgraph::graph::exec::frame_to_value(frame).unwrap()],
        )
        .unwrap();
    let before = data(&v);
    (before, data(&stage.run_cpu(&ctx, vec![v]).unwrap()))
}

/// The rawgraph binary built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rawgraph"))
}

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Serialises tensors (f32) + metadata the way the Python exporter does.
pub fn write_st(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: &std::collections::HashMap<String, String>,
) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(meta.clone())).unwrap()
}

/// Loads an 8- or 16-bit RGB image (a peer's TIFF, an ideal PNG) as 8-bit
/// sRGB for [`rawgraph::eval::metrics::cpsnr`].
pub fn load16(path: &std::path::Path) -> rawgraph::eval::metrics::Rgb8 {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_rgb32f();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let mut planar = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            planar[c * n + i] = p.0[c];
        }
    }
    rawgraph::eval::metrics::Rgb8::from_planar(w, h, &planar)
}
