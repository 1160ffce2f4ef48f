//! Serde types of the pipeline YAML (version 1).
//!
//! ```yaml
//! version: 1
//! name: default
//! stages:
//!   - { id: raw, op: raw_source }
//!   - { id: bl,  op: black_level,   in: [raw] }
//!   - { id: wb,  op: white_balance, in: [bl], params: { mode: as_shot } }
//! outputs: [wb]
//! ```
//! A stage without `in:` takes the previous stage as its input.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::backend::BackendChoice;

/// A whole pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Spec version; only 1 exists.
    pub version: Spanned<u32>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Default backend for every stage.
    #[serde(default)]
    pub backend: Option<BackendChoice>,
    pub stages: Vec<Spanned<StageSpec>>,
    /// Stage ids whose values are the pipeline's results (default: the
    /// last stage).
    #[serde(default)]
    pub outputs: Option<Spanned<Vec<String>>>,
}

/// One stage entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub id: String,
    pub op: String,
    /// Input stage ids, in the op's order.
    #[serde(rename = "in", default)]
    pub inputs: Option<Vec<String>>,
    /// Op parameters; checked against the op's own schema.
    #[serde(default)]
    pub params: Option<Spanned<serde_json::Value>>,
    /// Backend override for this stage.
    #[serde(default)]
    pub backend: Option<BackendChoice>,
}

/// Parses YAML into `T` with strict booleans; errors are
/// `(line, column, one-line message)` with 1-based positions (0 unknown).
pub fn yaml_from_str<T: DeserializeOwned>(text: &str) -> Result<T, (u64, u64, String)> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let full = e.without_snippet().to_string();
        let msg = full
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("invalid YAML")
            .to_string();
        (line, col, strip_location_suffix(&msg))
    })
}

/// serde-saphyr appends " at line L, column C" to some messages; the
/// caller prints the position itself.
fn strip_location_suffix(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
