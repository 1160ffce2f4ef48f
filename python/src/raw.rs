//! `imread`, `from_bayer` and `RawImage`: raw captures with their metadata.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView};

use rawgraph::frame::SensorSamples;
use rawgraph::input::{self, Limits};
use rawgraph::output::Versioned;
use rawgraph::raw::dng_write::{encode_dng, write_dng, DngOptions};
use rawgraph::raw::sidecar::{decode_dump_bytes, Sidecar};
use rawgraph::raw::{decode, BlackLevel, CfaPattern, RawFrame, RawMeta, DEFAULT_MAX_MEGAPIXELS};

use crate::convert::{plain, to_python, ArrayData, Pixels};
use crate::errors::{invalid, PyResultExt};
use crate::pool::MODULE_POOL;

/// A decoded raw capture: the mosaic (DN) and its metadata. Arrays handed
/// out are copies owned by numpy.
#[pyclass(module = "rawgraph", name = "RawImage", frozen)]
#[derive(Debug)]
pub struct RawImage {
    pub frame: Arc<RawFrame>,
}

impl RawImage {
    fn meta(&self) -> &RawMeta {
        &self.frame.meta
    }
}

/// A path-like object as a path (str, bytes or `os.PathLike`).
pub fn as_path(obj: &Bound<'_, PyAny>) -> PyResult<Option<PathBuf>> {
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.hasattr("__fspath__")? {
        return Ok(Some(obj.extract::<PathBuf>()?));
    }
    Ok(None)
}

/// Reads the bytes of a `bytes`-like object or a binary file object.
pub fn as_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Option<(Vec<u8>, String)>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some((b.as_bytes().to_vec(), "<bytes>".into())));
    }
    if obj.hasattr("read")? {
        let name = obj
            .getattr("name")
            .ok()
            .and_then(|n| n.extract::<String>().ok())
            .unwrap_or_else(|| "<file>".into());
        let data = obj.call_method0("read")?;
        let b = data.cast::<PyBytes>().map_err(|_| {
            invalid(
                obj.py(),
                format!("{name}: file object must be opened in binary mode"),
            )
        })?;
        return Ok(Some((b.as_bytes().to_vec(), name)));
    }
    // bytearray and memoryview
    if obj.is_instance_of::<PyByteArray>() || obj.is_instance_of::<PyMemoryView>() {
        let b = obj
            .py()
            .import("builtins")?
            .getattr("bytes")?
            .call1((obj,))?;
        let b = b.cast::<PyBytes>()?;
        return Ok(Some((b.as_bytes().to_vec(), "<bytes>".into())));
    }
    Ok(None)
}

/// Decodes a raw file (DNG or a camera raw), a headerless sensor dump
/// described by a sidecar, raw file contents (`bytes`) or a binary file
/// object.
///
/// `sidecar` is the dump's YAML description (found next to a path as
/// `IN.yaml` / `IN.raw.yaml` when omitted); `max_megapixels` and
/// `max_file_mb` refuse oversized inputs before pixels are decoded.
#[pyfunction]
#[pyo3(signature = (src, sidecar = None, max_megapixels = DEFAULT_MAX_MEGAPIXELS, max_file_mb = 1024))]
pub fn imread(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    sidecar: Option<PathBuf>,
    max_megapixels: f64,
    max_file_mb: u64,
) -> PyResult<RawImage> {
    let limits = Limits {
        max_megapixels,
        max_file_bytes: max_file_mb.saturating_mul(1 << 20),
    };
    let frame = if let Some(path) = as_path(src)? {
        py.detach(|| MODULE_POOL.install(|| input::open(&path, sidecar.as_deref(), &limits)))
    } else if let Some((bytes, name)) = as_bytes(src)? {
        py.detach(|| {
            MODULE_POOL.install(|| decode_in_memory(&bytes, &name, sidecar.as_deref(), &limits))
        })
    } else {
        return Err(invalid(
            py,
            format!(
                "imread takes a path, bytes or a binary file object, not {}",
                src.get_type().name()?
            ),
        ));
    }
    .py_err(py)?;
    Ok(RawImage {
        frame: Arc::new(frame),
    })
}

/// Decodes raw file contents (or a dump's, with its sidecar) in memory.
pub fn decode_in_memory(
    bytes: &[u8],
    name: &str,
    sidecar: Option<&Path>,
    limits: &Limits,
) -> rawgraph::Result<RawFrame> {
    let path = Path::new(name);
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(rawgraph::Error::Limit {
            path: path.into(),
            reason: format!(
                "file is {} bytes, over the limit of {} (raise --max-file-mb)",
                bytes.len(),
                limits.max_file_bytes
            ),
        });
    }
    match sidecar {
        Some(s) => {
            let sc = Sidecar::load(s)?;
            decode_dump_bytes(bytes, path, &sc, limits.max_megapixels)
        }
        None => {
            if bytes.is_empty() {
                return Err(rawgraph::Error::decode(path, "file is empty"));
            }
            decode::decode_bytes(bytes, path, limits.max_megapixels)
        }
    }
}

/// One float or four (the 2x2 Bayer sites, row-major).
fn black_level(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<BlackLevel> {
    let obj = plain(obj)?;
    if let Ok(v) = obj.extract::<f32>() {
        return Ok(BlackLevel::uniform(v));
    }
    match obj.extract::<Vec<f32>>() {
        Ok(v) if v.len() == 4 => Ok(BlackLevel {
            repeat_width: 2,
            repeat_height: 2,
            values: v,
        }),
        Ok(v) if v.len() == 1 => Ok(BlackLevel::uniform(v[0])),
        _ => Err(invalid(
            py,
            "black must be a number or 4 numbers (the 2x2 sites, row-major)",
        )),
    }
}

/// The mosaic of an array as f32 DN, with the default bit depth of its
/// dtype (8 for uint8, else 16).
fn mosaic_samples(
    py: Python<'_>,
    array: &Bound<'_, PyAny>,
) -> PyResult<(usize, usize, Vec<f32>, u32)> {
    macro_rules! try_dtype {
        ($t:ty, $bits:expr) => {
            if let Ok(a) = array.extract::<PyReadonlyArray2<'_, $t>>() {
                let shape = a.shape();
                let (h, w) = (shape[0], shape[1]);
                let v: Vec<f32> = a.as_array().iter().map(|&x| x as f32).collect();
                return Ok((w, h, v, $bits));
            }
        };
    }
    try_dtype!(u16, 16);
    try_dtype!(u8, 8);
    try_dtype!(f32, 16);
    try_dtype!(f64, 16);
    try_dtype!(i32, 16);
    try_dtype!(i64, 16);
    try_dtype!(u32, 16);
    Err(invalid(
        py,
        "from_bayer needs a 2-D numpy array of uint8, uint16, int32/64, uint32 or float32/64 samples",
    ))
}

/// Wraps a Bayer mosaic already in memory (a sensor dump read by other
/// means) as a `RawImage`, ready for a pipeline or `to_dng`.
///
/// `cfa`: the 2x2 phase ("RGGB", "BGGR", "GRBG", "GBRG"); `bits`:
/// significant bits (default 8 for uint8, else 16); `black`: one level or
/// four (2x2 sites, row-major), DN; `white`: saturation DN (default
/// 2**bits - 1); `wb`: as-shot gains (R, G, B); `cam_to_srgb`: 3x3 camera
/// -> linear sRGB matrix, row-major.
#[pyfunction]
#[pyo3(signature = (array, cfa = "RGGB", bits = None, black = None, white = None, wb = None, cam_to_srgb = None, source = "<array>"))]
#[allow(clippy::too_many_arguments)]
pub fn from_bayer(
    py: Python<'_>,
    array: &Bound<'_, PyAny>,
    cfa: &str,
    bits: Option<u32>,
    black: Option<&Bound<'_, PyAny>>,
    white: Option<f32>,
    wb: Option<&Bound<'_, PyAny>>,
    cam_to_srgb: Option<&Bound<'_, PyAny>>,
    source: &str,
) -> PyResult<RawImage> {
    let pattern = CfaPattern::parse(cfa).ok_or_else(|| {
        invalid(
            py,
            format!("cfa '{cfa}': expected RGGB, BGGR, GRBG or GBRG"),
        )
    })?;
    let (w, h, data, dtype_bits) = mosaic_samples(py, array)?;
    let bits = bits.unwrap_or(dtype_bits);
    if !(1..=32).contains(&bits) {
        return Err(invalid(py, format!("bits {bits}: expected 1 to 32")));
    }
    let mut meta = RawMeta::bayer(source, w, h, pattern);
    meta.bits = bits;
    meta.black = match black {
        Some(b) => black_level(py, b)?,
        None => BlackLevel::uniform(0.0),
    };
    let white = white.unwrap_or(((1u64 << bits) - 1) as f32);
    meta.white = [white; 3];
    if let Some(g) = wb {
        let g: [f32; 3] = plain(g)?
            .extract()
            .map_err(|_| invalid(py, "wb must be 3 gains (R, G, B)"))?;
        if !(g[1].is_finite() && g[1] > 0.0) {
            return Err(invalid(py, format!("invalid white balance gains {g:?}")));
        }
        meta.wb_gains = Some([g[0] / g[1], 1.0, g[2] / g[1]]);
    }
    if let Some(m) = cam_to_srgb {
        let m: [[f32; 3]; 3] = plain(m)?
            .extract()
            .map_err(|_| invalid(py, "cam_to_srgb must be a 3x3 matrix"))?;
        meta.cam_to_srgb = Some(m);
    }
    let frame = RawFrame {
        meta,
        data: data.into(),
    };
    frame.validate().py_err(py)?;
    Ok(RawImage {
        frame: Arc::new(frame),
    })
}

/// An f32 as the f64 of its shortest decimal form (0.404f32 -> 0.404, as
/// in the JSON of `info --json`), not its exact binary widening.
fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// A 3x3 matrix as a float32 array.
fn mat<'py>(py: Python<'py>, m: &[[f32; 3]; 3]) -> PyResult<Bound<'py, PyAny>> {
    let np = py.import("numpy")?;
    np.call_method1("array", (m.map(|r| r.to_vec()).to_vec(), "float32"))
}

#[pymethods]
impl RawImage {
    /// The mosaic in DN as uint16, shape (height, width) ((height, width,
    /// 3) for a LinearRaw frame). A fresh copy on every access.
    #[getter]
    fn mosaic<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let f = self.frame.clone();
        let data = py.detach(move || {
            let v: Vec<u16> = match &f.data {
                SensorSamples::U16(v) => v.clone(),
                SensorSamples::F32(v) => v
                    .iter()
                    .map(|&x| x.round().clamp(0.0, 65535.0) as u16)
                    .collect(),
            };
            let m = &f.meta;
            let shape = match m.samples_per_pixel() {
                1 => vec![m.height, m.width],
                n => vec![m.height, m.width, n],
            };
            ArrayData {
                pixels: Pixels::U16(v),
                shape,
            }
        });
        data.into_py(py)
    }

    /// Width of the mosaic, pixels.
    #[getter]
    fn width(&self) -> usize {
        self.meta().width
    }

    /// Height of the mosaic, pixels.
    #[getter]
    fn height(&self) -> usize {
        self.meta().height
    }

    /// The Bayer phase, e.g. "RGGB" (None for LinearRaw frames).
    #[getter]
    fn cfa(&self) -> Option<&'static str> {
        self.meta().cfa().ok().map(CfaPattern::name)
    }

    /// Colour index (0 = R, 1 = G, 2 = B) of each site of the 2x2 block,
    /// uint8 of shape (2, 2).
    #[getter]
    fn raw_pattern<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(p) = self.meta().cfa() else {
            return Ok(None);
        };
        let l = p.layout().map(|c| c as u8).to_vec();
        Ok(Some(
            ArrayData {
                pixels: Pixels::U8(l),
                shape: vec![2, 2],
            }
            .into_py(py)?,
        ))
    }

    /// Black level of each site of the 2x2 block, row-major (DN).
    #[getter]
    fn black_level_per_channel(&self) -> [f64; 4] {
        let b = &self.meta().black;
        [b.at(0, 0), b.at(0, 1), b.at(1, 0), b.at(1, 1)].map(decimal)
    }

    /// The black level pattern: (repeat_height, repeat_width) values, DN.
    #[getter]
    fn black_level<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let b = &self.meta().black;
        ArrayData {
            pixels: Pixels::F32(b.values.clone()),
            shape: vec![b.repeat_height, b.repeat_width],
        }
        .into_py(py)
    }

    /// Saturation level (DN): the smallest of the per-channel levels.
    #[getter]
    fn white_level(&self) -> f64 {
        decimal(self.meta().white.iter().cloned().fold(f32::MAX, f32::min))
    }

    /// Saturation level per colour (R, G, B), DN.
    #[getter]
    fn white_level_per_channel(&self) -> [f64; 3] {
        self.meta().white.map(decimal)
    }

    /// Significant bits of the samples.
    #[getter]
    fn bits(&self) -> u32 {
        self.meta().bits
    }

    /// As-shot white-balance gains (R, G, B), G = 1, or None.
    #[getter]
    fn camera_whitebalance(&self) -> Option<[f64; 3]> {
        self.meta().wb_gains.map(|g| g.map(decimal))
    }

    /// Camera colour matrices: a list of {"illuminant": ..., "xyz_to_cam":
    /// 3x3 float32 array (XYZ -> camera, DNG ColorMatrixN)}.
    #[getter]
    fn color_matrices<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for cm in &self.meta().color_matrices {
            let d = PyDict::new(py);
            d.set_item("illuminant", to_python(py, &cm.illuminant)?)?;
            d.set_item("xyz_to_cam", mat(py, &cm.xyz_to_cam)?)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// XYZ -> camera matrix of the first illuminant (rawpy's
    /// `rgb_xyz_matrix`, 3x3 float32), or None.
    #[getter]
    fn rgb_xyz_matrix<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.meta()
            .color_matrices
            .first()
            .map(|cm| mat(py, &cm.xyz_to_cam))
            .transpose()
    }

    /// Direct camera -> linear sRGB matrix (sidecars, `from_bayer`), or None.
    #[getter]
    fn cam_to_srgb<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.meta()
            .cam_to_srgb
            .as_ref()
            .map(|m| mat(py, m))
            .transpose()
    }

    /// All metadata as a dict: exactly what `rawgraph info --json` prints.
    #[getter(meta)]
    fn meta_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &Versioned::new(self.meta()))
    }

    /// Where the frame came from (path, "<bytes>", "<array>").
    #[getter]
    fn source(&self) -> &str {
        &self.meta().source
    }

    /// Writes the frame as an uncompressed DNG (atomically) to `path`, or
    /// returns the file's bytes when `path` is None.
    #[pyo3(signature = (path = None))]
    fn to_dng<'py>(
        &self,
        py: Python<'py>,
        path: Option<PathBuf>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let f = self.frame.clone();
        let opts = DngOptions::default();
        match path {
            Some(p) => {
                py.detach(|| MODULE_POOL.install(|| write_dng(&f, &p, &opts)))
                    .py_err(py)?;
                Ok(None)
            }
            None => {
                let bytes = py
                    .detach(|| MODULE_POOL.install(|| encode_dng(&f, &opts)))
                    .py_err(py)?;
                Ok(Some(PyBytes::new(py, &bytes)))
            }
        }
    }

    fn __repr__(&self) -> String {
        let m = self.meta();
        format!(
            "RawImage('{}', {}x{}, {}, {} bits)",
            m.source,
            m.width,
            m.height,
            m.cfa().map(|c| c.name()).unwrap_or("LinearRaw"),
            m.bits
        )
    }
}
