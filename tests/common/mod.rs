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
