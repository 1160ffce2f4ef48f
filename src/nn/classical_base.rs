//! The classical demosaic a learned demosaic refines: for a `dmdn_unet`
//! file whose metadata `base` names one (e.g. `rcd_mlri`), the engine's
//! `demosaic_<base>` op with its default params, run once over the whole
//! frame as the stage receives it (its own CFA phase, before any padding);
//! the tiler ([`super::bayer_tiles`]) then cuts its windows exactly as it
//! cuts the mosaic's. training/train_dmdn.py computes the same base through
//! the Python binding `rawgraph.demosaic` (`classical_base`), i.e. the same
//! Rust code, on a normalised mosaic with default metadata.
//!
//! The op is a pixel stage of its own: its cost is not in the network's
//! `flops_per_pixel` (`demosaic_rcd_mlri`: ~0.35 s at 12 MP on 2 vCPUs).

use std::sync::Arc;

use super::bayer_tiles::Cfa2x2;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value};
use crate::raw::{CfaPattern, RawMeta};
use crate::stages::{registry, RunCtx, Stage};

/// A compiled classical demosaic op used as a network's base.
#[derive(Clone, Debug)]
pub struct ClassicalBase {
    /// The metadata name (`rcd_mlri`).
    name: String,
    /// `demosaic_<name>`, compiled with its default params.
    stage: Arc<dyn Stage>,
}

impl ClassicalBase {
    /// The base metadata `name` (the op `demosaic_<name>`, default params).
    /// Errors (as a reason, for the caller to attach to its file) when that
    /// is not a registered classical demosaic op
    /// ([`registry::is_classical_demosaic`]).
    pub fn new(name: &str) -> std::result::Result<Self, String> {
        Self::with_params(&format!("demosaic_{name}"), serde_json::Value::Null)
            .map_err(|reason| format!("base '{name}': {reason}"))
    }

    /// The classical demosaic op `op` (`demosaic_rcd_mlri`, ...) compiled
    /// with its YAML `params` (`Null`: the defaults), as the Python binding
    /// `rawgraph.demosaic` runs it. Errors (as a reason) when `op` is not a
    /// classical demosaic op or its params do not compile.
    pub fn with_params(op: &str, params: serde_json::Value) -> std::result::Result<Self, String> {
        if !registry::is_classical_demosaic(op) {
            return Err(format!(
                "'{op}' is not a classical demosaic op (expected one of {})",
                registry::OPS
                    .iter()
                    .filter(|o| registry::is_classical_demosaic(o))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let stage = registry::compile(op, params).map_err(|e| format!("{op}: {e}"))?;
        Ok(ClassicalBase {
            name: op.trim_start_matches("demosaic_").to_string(),
            stage: Arc::from(stage),
        })
    }

    /// The metadata name (`rcd_mlri`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The op name (`demosaic_rcd_mlri`).
    pub fn op(&self) -> &'static str {
        self.stage.op()
    }

    /// Demosaics a whole mosaic (the stage's input, any phase). Returns
    /// planar RGB, `3 x height x width` row-major, in the mosaic's units.
    pub fn run_mosaic(&self, m: Arc<Mosaic>) -> Result<Vec<f32>> {
        let n = 3 * m.width * m.height;
        let ctx = RunCtx {
            stage_id: "classical_base",
        };
        let out = match self.stage.run_cpu(&ctx, vec![Value::Mosaic(m)])? {
            Value::Image(img) => Arc::try_unwrap(img)
                .map(|i| i.data)
                .unwrap_or_else(|a| a.data.clone()),
            other => {
                return Err(Error::invalid(format!(
                    "{}: returned a {}, not an image",
                    self.op(),
                    other.kind()
                )))
            }
        };
        if out.len() != n {
            return Err(Error::invalid(format!(
                "{}: returned {} values, not {n}",
                self.op(),
                out.len()
            )));
        }
        Ok(out)
    }

    /// Demosaics row-major `h x w` samples (normalised, 1.0 = white) whose
    /// top-left 2x2 cell is `cfa`, as `rawgraph.demosaic` does (default
    /// metadata, no white balance recorded). Returns planar RGB
    /// `3 x h x w`.
    pub fn run(&self, mosaic: &[f32], h: usize, w: usize, cfa: Cfa2x2) -> Result<Vec<f32>> {
        let pattern = CfaPattern::ALL
            .into_iter()
            .find(|p| p.layout().map(|c| c as u8) == cfa)
            .ok_or_else(|| Error::invalid(format!("base: CFA {cfa:?} is not a Bayer pattern")))?;
        self.run_pattern(mosaic, h, w, pattern)
    }

    /// [`Self::run`] for a mosaic whose top-left 2x2 cell is `pattern`.
    pub fn run_pattern(
        &self,
        mosaic: &[f32],
        h: usize,
        w: usize,
        pattern: CfaPattern,
    ) -> Result<Vec<f32>> {
        if h < 2 || w < 2 || mosaic.len() != h * w {
            return Err(Error::invalid(format!(
                "base: mosaic of {} values is not {h}x{w} (at least 2x2)",
                mosaic.len()
            )));
        }
        let m = Mosaic::normalized(
            w,
            h,
            pattern,
            mosaic.to_vec(),
            RawMeta::bayer("<base>", w, h, pattern),
        );
        self.run_mosaic(Arc::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_classical_demosaics() {
        for bad in ["denoise_learned", "none", "", "testing", "bilinear2"] {
            let e = ClassicalBase::new(bad).unwrap_err();
            assert!(e.contains("not a classical demosaic"), "{bad}: {e}");
        }
        let b = ClassicalBase::new("rcd_mlri").unwrap();
        assert_eq!((b.name(), b.op()), ("rcd_mlri", "demosaic_rcd_mlri"));
    }

    /// An op with params compiles them; a non-demosaic op or bad params
    /// give a reason naming the op.
    #[test]
    fn with_params_checks_the_op_and_its_params() {
        let b = ClassicalBase::with_params("demosaic_menon", serde_json::Value::Null).unwrap();
        assert_eq!((b.name(), b.op()), ("menon", "demosaic_menon"));
        for op in ["denoise_profiled", "demosaic_denoise_learned", "menon"] {
            let e = ClassicalBase::with_params(op, serde_json::Value::Null).unwrap_err();
            assert!(e.contains("not a classical demosaic"), "{op}: {e}");
        }
        let e = ClassicalBase::with_params("demosaic_menon", serde_json::json!({"no_such": 1}))
            .unwrap_err();
        assert!(e.starts_with("demosaic_menon: "), "{e}");
    }

    /// The base of a flat grey mosaic is that grey in every channel (to
    /// rounding; any phase), as planar RGB of the frame's size.
    #[test]
    fn flat_mosaic_gives_a_flat_base() {
        let b = ClassicalBase::new("rcd_mlri").unwrap();
        let (h, w) = (21, 34);
        for cfa in [[0u8, 1, 1, 2], [1, 0, 2, 1]] {
            let out = b.run(&vec![0.25; h * w], h, w, cfa).unwrap();
            assert_eq!(out.len(), 3 * h * w);
            let d = out.iter().fold(0f32, |m, v| m.max((v - 0.25).abs()));
            assert!(d < 1e-5, "cfa {cfa:?}: {d}");
        }
        assert!(b.run(&[0.0; 10], 3, 4, [0, 1, 1, 2]).is_err());
        assert!(b.run(&[0.0; 12], 3, 4, [0, 0, 1, 2]).is_err());
    }
}
