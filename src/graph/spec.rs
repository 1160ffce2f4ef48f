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
