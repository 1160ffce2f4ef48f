//! Conversions between rawgraph values and Python objects: pixel buffers
//! to owned numpy arrays, serde values to plain Python data (through
//! `json`, so a dict equals what the CLI's `--json` output parses to).

use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use serde::Serialize;

use rawgraph::frame::quantize::{EncodedImage, Samples};
use rawgraph::frame::{ColorSpace, Image};
use rawgraph::output::{to_rgb16, to_rgb8};

use crate::errors::invalid;

/// Interleaved pixels ready to become a numpy array of `shape`.
#[derive(Debug)]
pub enum Pixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// An array (owned by numpy) with its shape.
#[derive(Debug)]
pub struct ArrayData {
    pub pixels: Pixels,
    pub shape: Vec<usize>,
}

impl ArrayData {
    /// The numpy array (the buffer moves into it; no copy).
    pub fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let shape = self.shape.as_slice();
        Ok(match self.pixels {
            Pixels::U8(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
            Pixels::U16(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
            Pixels::F32(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
        })
    }
}

/// An image as HxWx3: transfer-encoded (sRGB) images quantised as the CLI
/// writes them (8 or 16 bits), linear ones as float32.
pub fn image_data(img: &Image, bits: u8) -> ArrayData {
    let shape = vec![img.height, img.width, 3];
    let pixels = match (img.space, bits) {
        (ColorSpace::Srgb, 16) => Pixels::U16(to_rgb16(img)),
        (ColorSpace::Srgb, _) => Pixels::U8(to_rgb8(img)),
        _ => {
            let [r, g, b] = img.planes();
            let mut v = Vec::with_capacity(3 * r.len());
            for i in 0..r.len() {
                v.extend_from_slice(&[r[i], g[i], b[i]]);
            }
            Pixels::F32(v)
        }
    };
    ArrayData { pixels, shape }
}

/// A delivered (already quantised) sRGB output as HxWx3 (its samples
/// move into the array when this is the last reference).
pub fn encoded_data(e: Arc<EncodedImage>) -> ArrayData {
    let shape = vec![e.height, e.width, 3];
    let samples = Arc::try_unwrap(e).map_or_else(|a| a.samples.clone(), |e| e.samples);
    let pixels = match samples {
        Samples::U8(v) => Pixels::U8(v),
        Samples::U16(v) => Pixels::U16(v),
    };
    ArrayData { pixels, shape }
}

fn json_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static JSON: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    Ok(JSON
        .get_or_try_init(py, || py.import("json").map(Bound::unbind))?
        .bind(py))
}

/// `v` as plain Python data (dicts, lists, numbers, strings, None).
pub fn to_python<'py, T: Serialize>(py: Python<'py>, v: &T) -> PyResult<Bound<'py, PyAny>> {
    let s = serde_json::to_string(v).map_err(|e| invalid(py, e.to_string()))?;
    json_module(py)?.call_method1("loads", (s,))
}

/// A Python object (dicts, lists, numbers, strings, numpy scalars through
/// `.item()`) as JSON.
pub fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let py = obj.py();
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item(
        "default",
        py.eval(
            c"lambda o: o.item() if hasattr(o, 'item') else o.tolist()",
            None,
            None,
        )?,
    )?;
    let s: String = json_module(py)?
        .call_method("dumps", (obj,), Some(&kwargs))?
        .extract()?;
    serde_json::from_str(&s).map_err(|e| invalid(py, format!("params: {e}")))
}

/// Converts numpy arrays (or anything with `.tolist()`) to lists, so they
/// extract like nested sequences.
pub fn plain<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if obj.hasattr("tolist")? {
        obj.call_method0("tolist")
    } else {
        Ok(obj.clone())
    }
}
