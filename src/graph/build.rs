//! Validates a pipeline spec and compiles it into an executable graph.
//!
//! Everything that can be checked without pixels is checked here: unknown
//! fields and ops, parameter types and ranges, dangling `in:` references,
//! cycles, arity, and value types along every edge. Errors name the file,
//! line, column and stage id.

use std::collections::HashMap;
use std::path::Path;

use super::spec::PipelineSpec;
use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use crate::frame::{ValueDesc, ValueKind};
use crate::stages::{self, Stage};

/// Every pipeline shipped in `pipelines/`, compiled into the binary so each
/// is reachable by name from any working directory (`-p NAME`); the file
/// stem is the name. `tests/real_raws_cli.rs` checks that every file in
/// `pipelines/` is listed here and builds.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../pipelines/default.yaml")),
    ("fast", include_str!("../../pipelines/fast.yaml")),
    ("auto", include_str!("../../pipelines/auto.yaml")),
    ("denoise", include_str!("../../pipelines/denoise.yaml")),
    ("hdrnet", include_str!("../../pipelines/hdrnet.yaml")),
    ("learned", include_str!("../../pipelines/learned.yaml")),
    (
        "learned_fast",
        include_str!("../../pipelines/learned_fast.yaml"),
    ),
    (
        "learned_fastc",
        include_str!("../../pipelines/learned_fastc.yaml"),
    ),
    (
        "learned_fastd",
        include_str!("../../pipelines/learned_fastd.yaml"),
    ),
    (
        "learned_quality",
        include_str!("../../pipelines/learned_quality.yaml"),
    ),
    (
        "local_laplacian",
        include_str!("../../pipelines/local_laplacian.yaml"),
    ),
    (
        "semantic_exposure",
        include_str!("../../pipelines/semantic_exposure.yaml"),
    ),
    (
        "semantic_exposure_debug",
        include_str!("../../pipelines/semantic_exposure_debug.yaml"),
    ),
    ("balanced", include_str!("../../pipelines/balanced.yaml")),
    (
        "camera_nv12",
        include_str!("../../pipelines/camera_nv12.yaml"),
    ),
    (
        "quality_classical",
        include_str!("../../pipelines/quality_classical.yaml"),
    ),
    (
        "quality_fast",
        include_str!("../../pipelines/quality_fast.yaml"),
    ),
    ("preview", include_str!("../../pipelines/preview.yaml")),
    (
        "libraw_like",
        include_str!("../../pipelines/libraw_like.yaml"),
    ),
    (
        "video_nv12",
        include_str!("../../pipelines/video_nv12.yaml"),
    ),
];

/// One compiled stage in the graph.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub op: &'static str,
    pub stage: Box<dyn Stage>,
    /// Indices (into `Pipeline::nodes`) of the inputs, in order.
    pub inputs: Vec<usize>,
    pub backend: BackendChoice,
    /// 1-based position of the stage entry in the file.
    pub line: u64,
    pub column: u64,
}

/// A validated, compiled pipeline, nodes in topological order.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    /// File the pipeline came from ("builtin:NAME" for shipped ones).
    pub file: String,
    pub nodes: Vec<Node>,
    /// Node indices whose values are the results.
    pub outputs: Vec<usize>,
    /// Index of the `raw_source` node.
    pub source: usize,
}

impl Pipeline {
    /// A shipped pipeline by name, or a YAML file by path.
    pub fn resolve(name_or_path: &str) -> Result<Pipeline> {
        let (text, file) = Pipeline::resolve_text(name_or_path)?;
        Pipeline::from_yaml(&text, &file)
    }

    /// The YAML text of a shipped pipeline (by name) or of a pipeline file
    /// (by path), with the name that errors give it ("builtin:NAME" or the
    /// path).
    pub fn resolve_text(name_or_path: &str) -> Result<(String, String)> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Ok((text.to_string(), format!("builtin:{name}")));
        }
        let p = Path::new(name_or_path);
        if !p.exists() && !name_or_path.contains('/') && !name_or_path.ends_with(".yaml") {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            return Err(Error::invalid(format!(
                "{name_or_path}: no such pipeline file or built-in pipeline (built-ins: {})",
                names.join(", ")
            )));
        }
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        Ok((text, p.display().to_string()))
    }

    /// Loads and compiles a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Pipeline::from_yaml(&text, &path.display().to_string())
    }

    /// Compiles pipeline YAML; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Pipeline> {
        Pipeline::from_yaml_with(text, file, &serde_json::Map::new())
    }

    /// Compiles pipeline YAML with parameter overrides: `overrides` maps a
    /// stage id to an object of params that replace (or add to) the ones
    /// in the file, before the op validates them. An id that names no
    /// stage, or a value that is not an object, is an error.
    pub fn from_yaml_with(
        text: &str,
        file: &str,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Pipeline> {
        let err = |line: u64, column: u64, msg: String| Error::Pipeline {
            file: file.to_string(),
            line,
            column,
            msg,
        };
        let spec: PipelineSpec = crate::yaml::parse(text, file)?;
        if spec.version.value != 1 {
            return Err(err(
                spec.version.referenced.line(),
                spec.version.referenced.column(),
                format!(
                    "unsupported pipeline version {} (expected 1)",
                    spec.version.value
                ),
            ));
        }
        if spec.stages.is_empty() {
            return Err(err(1, 1, "pipeline has no stages".into()));
        }
        let default_backend = spec.backend.unwrap_or_default();

        // Ids first, so references can point forward.
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in spec.stages.iter().enumerate() {
            let loc = &s.referenced;
            let id = s.value.id.as_str();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(err(
                    loc.line(),
                    loc.column(),
                    format!("stage id '{id}' must be non-empty letters, digits, '_' or '-'"),
                ));
            }
            if index.insert(id, i).is_some() {
                return Err(err(
                    loc.line(),
                    loc.column(),
                    format!("duplicate stage id '{id}'"),
                ));
            }
        }

        if let Some(id) = overrides.keys().find(|id| !index.contains_key(id.as_str())) {
            return Err(Error::invalid(format!(
                "{file}: params given for stage '{id}', which is not in the pipeline"
            )));
        }

        // Compile each stage and resolve its inputs.
        let mut compiled: Vec<(Node, Vec<usize>)> = Vec::new();
        for (i, s) in spec.stages.iter().enumerate() {
            let (line, column) = (s.referenced.line(), s.referenced.column());
            let st = &s.value;
            let at = |msg: String| err(line, column, format!("stage '{}': {msg}", st.id));
            let params = st
                .params
                .as_ref()
                .map(|p| p.value.clone())
                .unwrap_or(serde_json::Value::Null);
            let params = match overrides.get(&st.id) {
                Some(o) => merge_params(params, o).map_err(at)?,
                None => params,
            };
            let stage = stages::compile(&st.op, params).map_err(|m| match (&st.params, &m) {
                (Some(p), stages::CompileError::Params(_)) => err(
                    p.referenced.line(),
                    p.referenced.column(),
                    format!("stage '{}' ({}): {m}", st.id, st.op),
                ),
                _ => at(m.to_string()),
            })?;
            let inputs: Vec<usize> = match &st.inputs {
                Some(list) => list
                    .iter()
                    .map(|r| {
                        index
                            .get(r.as_str())
                            .copied()
                            .ok_or_else(|| at(format!("input '{r}' does not name a stage")))
                    })
                    .collect::<Result<_>>()?,
                None if stage.arity().1 == 0 || i == 0 => Vec::new(),
                None => vec![i - 1],
            };
            let (lo, hi) = stage.arity();
            if inputs.len() < lo || inputs.len() > hi {
                return Err(at(format!(
                    "op {} takes {} input(s), got {}",
                    st.op,
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo} to {hi}")
                    },
                    inputs.len()
                )));
            }
            if inputs.contains(&i) {
                return Err(at("stage takes itself as input (cycle)".into()));
            }
            let op = stage.op();
            compiled.push((
                Node {
                    id: st.id.clone(),
                    op,
                    stage,
                    inputs: Vec::new(),
                    backend: st.backend.unwrap_or(default_backend),
                    line,
                    column,
                },
                inputs,
            ));
        }

        // Topological order (Kahn); leftover nodes form a cycle.
        let n = compiled.len();
        let mut indegree: Vec<usize> = compiled.iter().map(|(_, ins)| ins.len()).collect();
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, (_, ins)) in compiled.iter().enumerate() {
            for &j in ins {
                users[j].push(i);
            }
        }
        let mut order = Vec::with_capacity(n);
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
        while let Some(i) = ready.pop() {
            order.push(i);
            for &u in users[i].iter().rev() {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.push(u);
                }
            }
        }
        if order.len() != n {
            let cyc: Vec<&str> = (0..n)
                .filter(|i| indegree[*i] > 0)
                .map(|i| compiled[i].0.id.as_str())
                .collect();
            let first = cyc
                .first()
                .and_then(|id| index.get(id))
                .copied()
                .unwrap_or(0);
            return Err(err(
                compiled[first].0.line,
                compiled[first].0.column,
                format!("stages form a cycle: {}", cyc.join(" -> ")),
            ));
        }
        let mut pos = vec![0usize; n];
        for (k, &i) in order.iter().enumerate() {
            pos[i] = k;
        }
        let mut slots: Vec<Option<(Node, Vec<usize>)>> = compiled.into_iter().map(Some).collect();
        let mut nodes = Vec::with_capacity(n);
        for &i in &order {
            if let Some((mut node, ins)) = slots[i].take() {
                node.inputs = ins.iter().map(|&j| pos[j]).collect();
                nodes.push(node);
            }
        }

        let sources: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, nd)| nd.op == "raw_source")
            .map(|(i, _)| i)
            .collect();
        let source = match sources.as_slice() {
            [s] => *s,
            [] => return Err(err(1, 1, "pipeline has no raw_source stage".into())),
            [_, second, ..] => {
                let nd = &nodes[*second];
                return Err(err(
                    nd.line,
                    nd.column,
                    format!("stage '{}': only one raw_source stage is allowed", nd.id),
                ));
            }
        };

        let outputs = match &spec.outputs {
            Some(o) => {
                if o.value.is_empty() {
                    return Err(err(
                        o.referenced.line(),
                        o.referenced.column(),
                        "outputs is empty".into(),
                    ));
                }
                o.value
                    .iter()
                    .map(|id| {
                        nodes.iter().position(|nd| nd.id == *id).ok_or_else(|| {
                            err(
                                o.referenced.line(),
                                o.referenced.column(),
                                format!("output '{id}' does not name a stage"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => {
                let last = spec
                    .stages
                    .last()
                    .map(|s| s.value.id.as_str())
                    .unwrap_or("");
                vec![nodes
                    .iter()
                    .position(|nd| nd.id == last)
                    .unwrap_or(nodes.len() - 1)]
            }
        };

        let p = Pipeline {
            name: spec.name.unwrap_or_else(|| file.to_string()),
            file: file.to_string(),
            nodes,
            outputs,
            source,
        };
        // Type-check every edge with a placeholder frame.
        p.plan(ValueDesc::mosaic(64, 64))?;
        Ok(p)
    }

    /// Infers every node's output for an input frame; errors name the stage.
    pub fn plan(&self, input: ValueDesc) -> Result<Vec<ValueDesc>> {
        let mut descs: Vec<ValueDesc> = Vec::with_capacity(self.nodes.len());
        for (i, nd) in self.nodes.iter().enumerate() {
            let d = if i == self.source {
                input
            } else {
                let ins: Vec<ValueDesc> = nd.inputs.iter().map(|&j| descs[j]).collect();
                nd.stage.infer(&ins).map_err(|m| Error::Pipeline {
                    file: self.file.clone(),
                    line: nd.line,
                    column: nd.column,
                    msg: format!("stage '{}' ({}): {m}", nd.id, nd.op),
                })?
            };
            descs.push(d);
        }
        for &o in &self.outputs {
            let d = descs[o];
            if d.kind == ValueKind::Mosaic {
                let nd = &self.nodes[o];
                return Err(Error::Pipeline {
                    file: self.file.clone(),
                    line: nd.line,
                    column: nd.column,
                    msg: format!(
                        "output '{}' is a mosaic; outputs must be images (add a demosaic stage)",
                        nd.id
                    ),
                });
            }
        }
        Ok(descs)
    }

    /// Starts a run over a sequence of frames: every stage's
    /// [`Stage::start_sequence`] (temporal exposure smoothing).
    pub fn start_sequence(&self) {
        for nd in &self.nodes {
            nd.stage.start_sequence();
        }
    }

    /// Node index of a stage id.
    pub fn node(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }
}

/// `base` (a stage's YAML params, `Null` when absent) with the keys of
/// `over` (an object) replaced or added.
fn merge_params(
    base: serde_json::Value,
    over: &serde_json::Value,
) -> std::result::Result<serde_json::Value, String> {
    let over = over
        .as_object()
        .ok_or_else(|| format!("params override must be a mapping, got {over}"))?;
    let mut merged = match base {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => serde_json::Map::new(),
        other => return Err(format!("params must be a mapping, got {other}")),
    };
    for (k, v) in over {
        merged.insert(k.clone(), v.clone());
    }
    Ok(serde_json::Value::Object(merged))
}
