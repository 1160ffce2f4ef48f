//! `rawgraph.demosaic`: one classical demosaic op on mosaics already in
//! memory, without a pipeline: the same code the pipelines run, for
//! notebooks comparing demosaics and for training scripts that learn a
//! residual over a classical base (training/train_dmdn.py).

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;

use rawgraph::nn::ClassicalBase;
use rawgraph::raw::CfaPattern;

use crate::convert::{to_json, ArrayData, Pixels};
use crate::errors::{invalid, PyResultExt};
use crate::pool::MODULE_POOL;

/// Demosaics normalised Bayer mosaics (float32, 1.0 = white; values
/// outside [0, 1] pass through the op's arithmetic as they are) with the
/// classical op `op` (`demosaic_bilinear`, `demosaic_mhc`,
/// `demosaic_menon`, `demosaic_rcd`, `demosaic_ari`, `demosaic_rcd_mlri`,
/// `demosaic_ahd`) and its YAML `params` (a dict; None: the defaults).
///
/// `mosaic`: shape (H, W) or a batch (N, H, W), all in phase `cfa`.
/// Returns planar float32 RGB in the mosaic's units: (3, H, W) or
/// (N, 3, H, W). A batch runs its frames in parallel on the module's
/// pool, releasing the GIL.
#[pyfunction]
#[pyo3(signature = (mosaic, cfa = "RGGB", op = "demosaic_rcd_mlri", params = None))]
pub fn demosaic<'py>(
    py: Python<'py>,
    mosaic: &Bound<'py, PyAny>,
    cfa: &str,
    op: &str,
    params: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let pattern = CfaPattern::parse(cfa).ok_or_else(|| {
        invalid(
            py,
            format!("cfa '{cfa}': expected RGGB, BGGR, GRBG or GBRG"),
        )
    })?;
    let params = match params {
        Some(p) => to_json(p)?,
        None => serde_json::Value::Null,
    };
    let base = ClassicalBase::with_params(op, params).map_err(|reason| invalid(py, reason))?;
    let arr: PyReadonlyArrayDyn<'py, f32> = mosaic.extract().map_err(|_| {
        invalid(
            py,
            "demosaic needs a float32 numpy array of shape (H, W) or (N, H, W)",
        )
    })?;
    let shape = arr.shape().to_vec();
    let (n, h, w) = match shape.as_slice() {
        [h, w] => (1, *h, *w),
        [n, h, w] => (*n, *h, *w),
        _ => {
            return Err(invalid(
                py,
                format!("mosaic shape {shape:?}: expected (H, W) or (N, H, W)"),
            ))
        }
    };
    if h < 2 || w < 2 {
        return Err(invalid(py, format!("mosaic {w}x{h}: below 2x2")));
    }
    let data: Vec<f32> = arr.as_array().iter().copied().collect();
    let out = py
        .detach(|| {
            MODULE_POOL.install(|| {
                // The frames in parallel, each op itself parallel too.
                data.par_chunks(w * h)
                    .take(n)
                    .map(|m| base.run_pattern(m, h, w, pattern))
                    .collect::<rawgraph::Result<Vec<_>>>()
            })
        })
        .py_err(py)?
        .concat();
    let mut out_shape = vec![3, h, w];
    if shape.len() == 3 {
        out_shape.insert(0, n);
    }
    ArrayData {
        pixels: Pixels::F32(out),
        shape: out_shape,
    }
    .into_py(py)
}
