//! The one error type of the crate.
//!
//! Every variant renders as a single line that names the thing at fault (a
//! file, a YAML location, a stage id) and the cause, so the CLI can print it
//! as-is. Nothing a user can influence (a file, a pipeline, a CLI argument)
//! may panic: it becomes one of these.

use std::path::{Path, PathBuf};

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// All failures rawgraph reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The raw decoder rejected the file (or panicked on it).
    #[error("{}: cannot decode: {}", path.display(), one_line(reason))]
    Decode { path: PathBuf, reason: String },
    /// The file is valid but uses something rawgraph does not handle.
    #[error("{}: unsupported: {}", path.display(), one_line(reason))]
    Unsupported { path: PathBuf, reason: String },
    /// A sidecar / headerless dump description is wrong or does not match
    /// the dump.
    #[error("{}: {}", path.display(), one_line(reason))]
    Sidecar { path: PathBuf, reason: String },
    /// A pipeline file is malformed; `line`/`column` are 1-based, 0 when the
    /// position is unknown.
    #[error("{file}:{line}:{column}: {}", one_line(msg))]
    Pipeline {
        file: String,
        line: u64,
        column: u64,
        msg: String,
    },
    /// A stage failed while running.
    #[error("stage '{stage}' ({op}): {}", one_line(msg))]
    Stage {
        stage: String,
        op: String,
        msg: String,
    },
    /// A stage has no implementation for the requested backend.
    #[error("stage '{stage}' ({op}): no {backend} implementation")]
    NoBackend {
        stage: String,
        op: String,
        backend: String,
    },
    /// CUDA was requested but the libraries or a device are missing.
    #[error("CUDA not available: {0}")]
    CudaUnavailable(String),
    /// A model weights file is missing, truncated or does not match its
    /// declared architecture.
    #[error("{}: bad model weights: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    /// A resource limit (megapixels, bytes) was exceeded.
    #[error("{}: {reason}", path.display())]
    Limit { path: PathBuf, reason: String },
    /// A caller passed an invalid argument or image.
    #[error("{}", one_line(.0))]
    Invalid(String),
}

/// Keeps a message on one line: user text (a YAML scalar, a file's
/// strings) may hold line breaks; they are shown escaped (fuzz find).
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        s.replace('\n', "\\n").replace('\r', "\\r").into()
    } else {
        s.into()
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Shorthand for [`Error::Decode`].
    pub fn decode(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Decode {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Attaches a stage id and op to an error raised inside a stage. Errors
    /// that already name their source (files, stages) are kept as they are.
    pub fn in_stage(self, stage: &str, op: &str) -> Self {
        match self {
            Error::Invalid(msg) => Error::Stage {
                stage: stage.to_string(),
                op: op.to_string(),
                msg,
            },
            other => other,
        }
    }
}
