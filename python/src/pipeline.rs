//! `Pipeline`, `RunResult`, `imwrite` and `ops`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use numpy::{PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use rawgraph::backend::BackendChoice;
use rawgraph::cli::bench::bench_frame;
use rawgraph::frame::quantize::Depth;
use rawgraph::graph::{self, Pipeline as CorePipeline, RunOptions, Timings};
use rawgraph::input::{self, Limits};
use rawgraph::output::{write_rgb, OutFormat, RgbSamples};
use rawgraph::raw::{RawFrame, DEFAULT_MAX_MEGAPIXELS};
use rawgraph::{Error, Value};

use crate::convert::{encoded_data, image_data, to_json, to_python, ArrayData, Pixels};
use crate::errors::{invalid, to_py_msg, PyResultExt};
use crate::pool::{ForkSafePool, MODULE_POOL};
use crate::raw::{as_bytes, as_path, decode_in_memory, RawImage};

/// A compiled pipeline: YAML parsed, validated and built once, run on any
/// number of frames. Picklable (the YAML text and the parameter overrides
/// travel; the receiver compiles them again).
#[pyclass(module = "rawgraph", name = "Pipeline", frozen)]
#[derive(Debug)]
pub struct Pipeline {
    inner: Arc<CorePipeline>,
    yaml: String,
    file: String,
    /// Overrides as given, normalised to {stage: {param: value}} JSON.
    params: serde_json::Map<String, serde_json::Value>,
    backend: Option<BackendChoice>,
    /// Run chains of row-kernel stages as fused strip segments (default);
    /// `false` runs every stage alone over whole frames (the reference).
    fuse: bool,
    pool: ForkSafePool,
}

/// {"stage.param": v} and {"stage": {"param": v}} -> {"stage": {"param": v}}.
fn normalise_params(
    py: Python<'_>,
    v: serde_json::Value,
) -> PyResult<serde_json::Map<String, serde_json::Value>> {
    let serde_json::Value::Object(m) = v else {
        return Err(invalid(py, "params must be a dict"));
    };
    let mut out = serde_json::Map::new();
    for (k, v) in m {
        let (stage, value) = match k.split_once('.') {
            Some((stage, param)) => {
                let mut o = serde_json::Map::new();
                o.insert(param.to_string(), v);
                (stage.to_string(), serde_json::Value::Object(o))
            }
            None => (k, v),
        };
        let serde_json::Value::Object(add) = value else {
            return Err(invalid(
                py,
                format!("params['{stage}'] must be a dict of the stage's params"),
            ));
        };
        let slot = out
            .entry(stage)
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(o) = slot {
            o.extend(add);
        }
    }
    Ok(out)
}

fn parse_backend(py: Python<'_>, s: Option<&str>) -> PyResult<Option<BackendChoice>> {
    Ok(match s {
        None => None,
        Some("cpu") => Some(BackendChoice::Cpu),
        Some("cuda") => Some(BackendChoice::Cuda),
        Some("auto") => Some(BackendChoice::Auto),
        Some(other) => {
            return Err(invalid(
                py,
                format!("backend '{other}': expected 'cpu', 'cuda' or 'auto'"),
            ))
        }
    })
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Cpu => "cpu",
        BackendChoice::Cuda => "cuda",
        BackendChoice::Auto => "auto",
    }
}

/// Prefixes an error message with the input unless it already names it
/// (as `rawgraph process` does).
fn describe(input: &str, e: &Error) -> String {
    let msg = e.to_string();
    if msg.contains(input) {
        msg
    } else {
        format!("{input}: {msg}")
    }
}

/// The result of one run.
#[pyclass(module = "rawgraph", name = "RunResult", frozen)]
#[derive(Debug)]
pub struct RunResult {
    /// The first output as an HxWx3 array (uint8 / uint16 for sRGB-encoded
    /// outputs, float32 for linear ones), or None if it is not an image.
    #[pyo3(get)]
    image: Py<PyAny>,
    /// Every output by stage id: images as arrays, mosaics as float32 HxW,
    /// scalars as floats, other values as {"kind": ...}.
    #[pyo3(get)]
    outputs: Py<PyAny>,
    /// Per-stage timings, the `--timings-json` schema.
    #[pyo3(get)]
    timings: Py<PyAny>,
}

#[pymethods]
impl RunResult {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let keys = self.outputs.bind(py).call_method0("keys")?;
        let keys: Vec<String> = keys
            .try_iter()?
            .map(|k| k?.extract())
            .collect::<PyResult<_>>()?;
        Ok(format!("RunResult(outputs={keys:?})"))
    }
}

/// An output value converted off the GIL.
enum OutData {
    Array(ArrayData),
    Scalar(f64),
    Noise(String),
    Other(&'static str),
}

/// What a run hands back before it becomes Python objects.
struct Ran {
    outputs: Vec<(String, OutData)>,
    timings: Timings,
}

fn convert_outputs(out: graph::RunOutput, bits: u8) -> rawgraph::Result<Ran> {
    let mut outputs = Vec::new();
    for (id, v) in out.outputs {
        let d = match &v {
            Value::Image(img) => OutData::Array(image_data(img, bits)),
            Value::Encoded(e) => OutData::Array(encoded_data(e.clone())),
            Value::Mosaic(m) => OutData::Array(ArrayData {
                pixels: Pixels::F32(m.data.clone().into_f32()),
                shape: vec![m.height, m.width],
            }),
            Value::Scalar(s) => OutData::Scalar(*s),
            Value::Noise(n) => OutData::Noise(
                serde_json::to_string(n.as_ref()).map_err(|e| Error::invalid(e.to_string()))?,
            ),
            Value::Other(o) => OutData::Other(o.kind()),
        };
        outputs.push((id, d));
    }
    Ok(Ran {
        outputs,
        timings: out.timings,
    })
}

fn check_bits(py: Python<'_>, bits: u8) -> PyResult<u8> {
    match bits {
        8 | 16 => Ok(bits),
        b => Err(invalid(py, format!("bits {b}: expected 8 or 16"))),
    }
}

impl Pipeline {
    fn build(
        py: Python<'_>,
        yaml: String,
        file: String,
        params: serde_json::Map<String, serde_json::Value>,
        backend: Option<BackendChoice>,
        threads: usize,
        fuse: bool,
    ) -> PyResult<Pipeline> {
        let inner = py
            .detach(|| CorePipeline::from_yaml_with(&yaml, &file, &params))
            .py_err(py)?;
        Ok(Pipeline {
            inner: Arc::new(inner),
            yaml,
            file,
            params,
            backend,
            fuse,
            pool: ForkSafePool::new(threads),
        })
    }

    /// Run options; sRGB outputs are delivered as `bits`-bit samples (the
    /// last fused segment quantises them as it goes).
    fn opts(&self, bits: u8) -> RunOptions {
        RunOptions {
            backend: self.backend,
            no_fuse: !self.fuse,
            deliver: Some(if bits == 16 { Depth::U16 } else { Depth::U8 }),
            stream: None,
        }
    }

    /// Runs on `frame` off the GIL; `decode_ms` goes into the timings.
    fn run_frame(
        &self,
        py: Python<'_>,
        frame: RawFrame,
        decode_ms: Option<f64>,
        bits: u8,
    ) -> rawgraph::Result<Ran> {
        let (p, opts) = (self.inner.clone(), self.opts(bits));
        py.detach(|| {
            self.pool.install(|| {
                let mut out = graph::run(&p, frame, &opts)?;
                out.timings.decode_ms = decode_ms;
                convert_outputs(out, bits)
            })
        })
    }

    fn to_result(py: Python<'_>, ran: Ran) -> PyResult<RunResult> {
        let outputs = PyDict::new(py);
        let mut image = py.None();
        for (k, (id, d)) in ran.outputs.into_iter().enumerate() {
            let is_image = matches!(&d, OutData::Array(a) if a.shape.len() == 3);
            let obj = match d {
                OutData::Array(a) => a.into_py(py)?,
                OutData::Scalar(s) => s.into_pyobject(py)?.into_any(),
                OutData::Noise(json) => py.import("json")?.call_method1("loads", (json,))?,
                OutData::Other(kind) => {
                    let d = PyDict::new(py);
                    d.set_item("kind", kind)?;
                    d.into_any()
                }
            };
            if k == 0 && is_image {
                image = obj.clone().unbind();
            }
            outputs.set_item(id, obj)?;
        }
        Ok(RunResult {
            image,
            outputs: outputs.into_any().unbind(),
            timings: to_python(py, &ran.timings)?.unbind(),
        })
    }
}

#[pymethods]
impl Pipeline {
    /// A shipped pipeline by name ("default", "fast", "auto") or a YAML
    /// file by path, or YAML text with `yaml=`. `backend`: "cpu", "cuda"
    /// or "auto" for every stage; `params`: overrides, {"stage": {"param":
    /// value}} or {"stage.param": value}; `threads`: worker threads of
    /// this pipeline's pool (default: all CPUs); `fuse`: run chains of
    /// row-kernel stages as fused strip segments (default; timings then
    /// give each member's share and name its segment in `fused`), or
    /// `False` for every stage alone over whole frames (the CLI's
    /// `--no-fuse`; same output).
    #[new]
    #[pyo3(signature = (name_or_path = None, *, yaml = None, backend = None, params = None, threads = None, fuse = true))]
    fn new(
        py: Python<'_>,
        name_or_path: Option<&Bound<'_, PyAny>>,
        yaml: Option<String>,
        backend: Option<&str>,
        params: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
        fuse: bool,
    ) -> PyResult<Pipeline> {
        let (text, file) = match (name_or_path, yaml) {
            (Some(n), None) => {
                let s: PathBuf = n.extract()?;
                let s = s.to_string_lossy().to_string();
                py.detach(|| CorePipeline::resolve_text(&s)).py_err(py)?
            }
            (None, Some(y)) => (y, "<yaml>".to_string()),
            (None, None) => ("".into(), "".into()),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    py,
                    "give a pipeline name or path, or yaml=, not both",
                ))
            }
        };
        let (text, file) = if file.is_empty() {
            CorePipeline::resolve_text("default").py_err(py)?
        } else {
            (text, file)
        };
        let params = match params {
            Some(p) => normalise_params(py, to_json(p)?)?,
            None => serde_json::Map::new(),
        };
        let backend = parse_backend(py, backend)?;
        Pipeline::build(py, text, file, params, backend, threads.unwrap_or(0), fuse)
    }

    /// Whether chains of row-kernel stages run as fused segments.
    #[getter]
    fn fuse(&self) -> bool {
        self.fuse
    }

    /// The pipeline's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where the YAML came from ("builtin:NAME", a path or "<yaml>").
    #[getter]
    fn file(&self) -> &str {
        &self.file
    }

    /// The YAML text.
    #[getter]
    fn yaml(&self) -> &str {
        &self.yaml
    }

    /// Stage ids in execution order.
    #[getter]
    fn stages(&self) -> Vec<(String, &'static str)> {
        self.inner
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.op))
            .collect()
    }

    /// Runs on a `RawImage`; `bits` (8 or 16) is the depth of sRGB-encoded
    /// outputs.
    #[pyo3(signature = (raw, bits = 8))]
    fn run(&self, py: Python<'_>, raw: &Bound<'_, RawImage>, bits: u8) -> PyResult<RunResult> {
        let bits = check_bits(py, bits)?;
        let frame = raw.get().frame.clone();
        // The executor consumes its frame; the RawImage keeps its own.
        let ran = self
            .run_frame(py, (*frame).clone(), None, bits)
            .py_err(py)?;
        Pipeline::to_result(py, ran)
    }

    /// Decodes `src` (path, bytes or binary file, as `imread`) and runs the
    /// pipeline in one call; returns the first output image (HxWx3).
    /// Errors carry the message `rawgraph process` prints.
    #[pyo3(signature = (src, sidecar = None, bits = 8, max_megapixels = DEFAULT_MAX_MEGAPIXELS, max_file_mb = 1024))]
    fn process(
        &self,
        py: Python<'_>,
        src: &Bound<'_, PyAny>,
        sidecar: Option<PathBuf>,
        bits: u8,
        max_megapixels: f64,
        max_file_mb: u64,
    ) -> PyResult<Py<PyAny>> {
        let res = self.process_full(py, src, sidecar, bits, max_megapixels, max_file_mb)?;
        let img = res.image.clone_ref(py);
        if img.is_none(py) {
            return Err(invalid(py, "the pipeline's first output is not an image"));
        }
        Ok(img)
    }

    /// As `process`, returning the whole `RunResult` (timings include the
    /// decode time).
    #[pyo3(signature = (src, sidecar = None, bits = 8, max_megapixels = DEFAULT_MAX_MEGAPIXELS, max_file_mb = 1024))]
    fn process_full(
        &self,
        py: Python<'_>,
        src: &Bound<'_, PyAny>,
        sidecar: Option<PathBuf>,
        bits: u8,
        max_megapixels: f64,
        max_file_mb: u64,
    ) -> PyResult<RunResult> {
        let bits = check_bits(py, bits)?;
        let limits = Limits {
            max_megapixels,
            max_file_bytes: max_file_mb.saturating_mul(1 << 20),
        };
        let (p, opts) = (self.inner.clone(), self.opts(bits));
        let work =
            |decode: &(dyn Fn() -> rawgraph::Result<RawFrame> + Sync)| -> rawgraph::Result<Ran> {
                self.pool.install(|| {
                    let t0 = Instant::now();
                    let frame = decode()?;
                    let decode_ms = t0.elapsed().as_secs_f64() * 1e3;
                    let mut out = graph::run(&p, frame, &opts)?;
                    out.timings.decode_ms = Some(decode_ms);
                    convert_outputs(out, bits)
                })
            };
        let (name, ran) = if let Some(path) = as_path(src)? {
            let name = path.display().to_string();
            let ran = py.detach(|| work(&|| input::open(&path, sidecar.as_deref(), &limits)));
            (name, ran)
        } else if let Some((bytes, name)) = as_bytes(src)? {
            let ran = py
                .detach(|| work(&|| decode_in_memory(&bytes, &name, sidecar.as_deref(), &limits)));
            (name, ran)
        } else {
            return Err(invalid(
                py,
                format!(
                    "process takes a path, bytes or a binary file object, not {}",
                    src.get_type().name()?
                ),
            ));
        };
        let ran = ran.map_err(|e| to_py_msg(py, &e, describe(&name, &e)))?;
        Pipeline::to_result(py, ran)
    }

    /// Per-stage statistics over repeated runs of `raw` (decode excluded):
    /// the `rawgraph bench --json` report as a dict.
    #[pyo3(signature = (raw, warmup = 2, iters = 10))]
    fn bench<'py>(
        &self,
        py: Python<'py>,
        raw: &Bound<'py, RawImage>,
        warmup: usize,
        iters: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let frame = raw.get().frame.clone();
        // As `rawgraph bench`: outputs delivered as 8-bit samples.
        let (p, opts) = (self.inner.clone(), self.opts(8));
        let report = py
            .detach(|| {
                self.pool
                    .install(|| bench_frame(&p, &frame, &opts, warmup, iters))
            })
            .py_err(py)?;
        to_python(py, &report)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let f = py
            .import("rawgraph._rawgraph")?
            .getattr("_pipeline_from_state")?;
        let params = serde_json::Value::Object(self.params.clone()).to_string();
        let args = (
            self.yaml.clone(),
            self.file.clone(),
            params,
            self.backend.map(backend_name),
            self.pool.threads(),
            self.fuse,
        );
        PyTuple::new(py, [f.into_any(), args.into_pyobject(py)?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!("Pipeline('{}', file='{}')", self.inner.name, self.file)
    }
}

/// Rebuilds a pickled pipeline.
#[pyfunction]
#[pyo3(signature = (yaml, file, params, backend, threads, fuse = true))]
pub fn _pipeline_from_state(
    py: Python<'_>,
    yaml: String,
    file: String,
    params: String,
    backend: Option<&str>,
    threads: usize,
    fuse: bool,
) -> PyResult<Pipeline> {
    let params = match serde_json::from_str(&params) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err(invalid(py, "pickled pipeline: bad params")),
    };
    let backend = parse_backend(py, backend)?;
    Pipeline::build(py, yaml, file, params, backend, threads, fuse)
}

/// Writes an HxWx3 image (uint8, uint16 or float in [0, 1]) to a PNG,
/// TIFF or JPEG file, atomically. `bits`: 8 or 16 (PNG); default: 16 for
/// uint16 arrays and TIFF, else 8. Floats are clamped and rounded as the
/// CLI does.
#[pyfunction]
#[pyo3(signature = (path, img, bits = None))]
pub fn imwrite(
    py: Python<'_>,
    path: PathBuf,
    img: &Bound<'_, PyAny>,
    bits: Option<u8>,
) -> PyResult<()> {
    let (h, w, px) = if let Ok(a) = img.extract::<PyReadonlyArray3<'_, u8>>() {
        let s = a.shape();
        (
            s[0],
            s[1],
            (s[2], Pixels::U8(a.as_array().iter().copied().collect())),
        )
    } else if let Ok(a) = img.extract::<PyReadonlyArray3<'_, u16>>() {
        let s = a.shape();
        (
            s[0],
            s[1],
            (s[2], Pixels::U16(a.as_array().iter().copied().collect())),
        )
    } else if let Ok(a) = img.extract::<PyReadonlyArray3<'_, f32>>() {
        let s = a.shape();
        (
            s[0],
            s[1],
            (s[2], Pixels::F32(a.as_array().iter().copied().collect())),
        )
    } else if let Ok(a) = img.extract::<PyReadonlyArray3<'_, f64>>() {
        let s = a.shape();
        (
            s[0],
            s[1],
            (
                s[2],
                Pixels::F32(a.as_array().iter().map(|&v| v as f32).collect()),
            ),
        )
    } else {
        return Err(invalid(
            py,
            "imwrite needs an HxWx3 array of uint8, uint16 or float",
        ));
    };
    let (c, px) = px;
    if c != 3 {
        return Err(invalid(py, format!("imwrite needs 3 channels, got {c}")));
    }
    let default_bits = match (&px, OutFormat::for_path(&path, None)) {
        (_, Ok(OutFormat::Tiff16)) | (Pixels::U16(_), Ok(OutFormat::Png16 | OutFormat::Png8)) => 16,
        _ => 8,
    };
    let fmt = OutFormat::for_path(&path, Some(bits.unwrap_or(default_bits))).py_err(py)?;
    let wide = matches!(fmt, OutFormat::Png16 | OutFormat::Tiff16);
    py.detach(|| {
        MODULE_POOL.install(|| {
            let q8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            let q16 = |v: f32| (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16;
            match (px, wide) {
                (Pixels::U8(v), false) => write_rgb(&path, w, h, RgbSamples::U8(&v), fmt),
                (Pixels::U16(v), true) => write_rgb(&path, w, h, RgbSamples::U16(&v), fmt),
                (Pixels::U8(v), true) => {
                    let v: Vec<u16> = v.iter().map(|&s| s as u16 * 257).collect();
                    write_rgb(&path, w, h, RgbSamples::U16(&v), fmt)
                }
                (Pixels::U16(v), false) => {
                    let v: Vec<u8> = v.iter().map(|&s| ((s as u32 + 128) / 257) as u8).collect();
                    write_rgb(&path, w, h, RgbSamples::U8(&v), fmt)
                }
                (Pixels::F32(v), false) => {
                    let v: Vec<u8> = v.iter().map(|&s| q8(s)).collect();
                    write_rgb(&path, w, h, RgbSamples::U8(&v), fmt)
                }
                (Pixels::F32(v), true) => {
                    let v: Vec<u16> = v.iter().map(|&s| q16(s)).collect();
                    write_rgb(&path, w, h, RgbSamples::U16(&v), fmt)
                }
            }
        })
    })
    .py_err(py)
}

/// Every op name a pipeline may use.
#[pyfunction]
pub fn ops() -> Vec<&'static str> {
    rawgraph::stages::OPS.to_vec()
}

/// Names of the shipped pipelines.
#[pyfunction]
pub fn pipelines() -> Vec<&'static str> {
    rawgraph::graph::build::BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect()
}
