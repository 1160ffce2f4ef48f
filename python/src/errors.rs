//! rawgraph errors as Python exceptions.
//!
//! The classes live in `rawgraph/_errors.py` (so they can also derive from
//! `OSError` / `ValueError`); each instance's message is the one line the
//! CLI prints after `error:`, and structured fields (file, line, column,
//! stage, op) are set as attributes.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use rawgraph::Error;

/// Result alias of the binding.
pub type PyRes<T> = PyResult<T>;

/// The exception class called `name` in `rawgraph._errors`.
fn class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let m = MODULE.get_or_try_init(py, || py.import("rawgraph._errors").map(Bound::unbind))?;
    Ok(m.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// Builds the Python exception for `e`.
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    to_py_msg(py, e, e.to_string())
}

/// Builds the Python exception of `e`'s class with the message `msg`
/// (the CLI sometimes prefixes the input file).
pub fn to_py_msg(py: Python<'_>, e: &Error, msg: String) -> PyErr {
    match build(py, e, &msg) {
        Ok(err) => err,
        Err(_) => PyRuntimeError::new_err(msg),
    }
}

fn build(py: Python<'_>, e: &Error, msg: &str) -> PyResult<PyErr> {
    let name = match e {
        Error::Io { .. } => "FileError",
        Error::Decode { .. } => "DecodeError",
        Error::Unsupported { .. } => "UnsupportedError",
        Error::Sidecar { .. } => "SidecarError",
        Error::Pipeline { .. } => "PipelineError",
        Error::Stage { .. } => "StageError",
        Error::NoBackend { .. } | Error::CudaUnavailable(_) => "BackendError",
        Error::Model { .. } => "ModelError",
        Error::Limit { .. } => "LimitError",
        Error::Invalid(_) => "InvalidInputError",
    };
    let inst = class(py, name)?.call1((msg,))?;
    match e {
        Error::Io { path, source } => {
            inst.setattr("filename", path.display().to_string())?;
            if let Some(code) = source.raw_os_error() {
                inst.setattr("errno", code)?;
            }
        }
        Error::Decode { path, .. }
        | Error::Unsupported { path, .. }
        | Error::Sidecar { path, .. }
        | Error::Model { path, .. }
        | Error::Limit { path, .. } => {
            inst.setattr("filename", path.display().to_string())?;
        }
        Error::Pipeline {
            file, line, column, ..
        } => {
            inst.setattr("file", file)?;
            inst.setattr("line", *line)?;
            inst.setattr("column", *column)?;
        }
        Error::Stage { stage, op, .. } | Error::NoBackend { stage, op, .. } => {
            inst.setattr("stage", stage)?;
            inst.setattr("op", op)?;
        }
        Error::CudaUnavailable(_) | Error::Invalid(_) => {}
    }
    Ok(PyErr::from_value(inst))
}

/// `Result<T, rawgraph::Error>` -> `PyResult<T>`.
pub trait PyResultExt<T> {
    fn py_err(self, py: Python<'_>) -> PyRes<T>;
}

impl<T> PyResultExt<T> for rawgraph::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyRes<T> {
        self.map_err(|e| to_py(py, &e))
    }
}

/// An `InvalidInputError` with `msg`.
pub fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    to_py(py, &Error::Invalid(msg.into()))
}
