//! YAML parsing for every YAML file the crate reads (pipelines, sidecars,
//! noise profiles, lens-shading calibrations, exposure tunings): one
//! serde-saphyr configuration (strict booleans) and one error shape, with
//! the 1-based line and column of the fault.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A YAML syntax or schema error: 1-based `line` and `column` (0 when
/// unknown) and a one-line message without the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: u64,
    pub column: u64,
    pub msg: String,
}

impl YamlError {
    /// The crate's error for this fault in the YAML file `file`.
    pub fn in_file(self, file: impl Into<String>) -> Error {
        Error::Pipeline {
            file: file.into(),
            line: self.line,
            column: self.column,
            msg: self.msg,
        }
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.msg
        )
    }
}

/// Parses YAML into `T` with strict booleans.
pub fn from_str<T: DeserializeOwned>(text: &str) -> std::result::Result<T, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, column) = e
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
        YamlError {
            line,
            column,
            msg: strip_location_suffix(&msg),
        }
    })
}

/// Parses the YAML file `file` (its text) into `T`; errors name the file.
pub fn parse<T: DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    from_str(text).map_err(|e| e.in_file(file))
}

/// The crate's error for a YAML file that parsed but whose content is
/// wrong as a whole (validation): no position.
pub fn invalid(file: impl Into<String>, msg: String) -> Error {
    Error::Pipeline {
        file: file.into(),
        line: 0,
        column: 0,
        msg,
    }
}

/// serde-saphyr appends " at line L, column C" to some messages; the
/// caller prints the position itself.
fn strip_location_suffix(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
