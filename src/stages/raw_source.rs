//! `raw_source`: the entry node of a pipeline. The executor feeds it the
//! decoded [`crate::raw::RawFrame`]; it hands the mosaic on in DN.

use serde::Deserialize;

use super::{parse_params, RunCtx, Stage};
use crate::error::{Error, Result};
use crate::frame::{Value, ValueDesc};

/// `raw_source` takes no parameters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The compiled `raw_source` op.
#[derive(Debug)]
pub struct RawSource;

/// Every value serde accepts is valid.
impl crate::stages::Validate for Params {}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let _: Params = parse_params(params)?;
    Ok(Box::new(RawSource))
}

impl Stage for RawSource {
    fn op(&self) -> &'static str {
        "raw_source"
    }

    fn arity(&self) -> (usize, usize) {
        (0, 0)
    }

    fn infer(&self, _inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        // The executor replaces this with the actual frame's descriptor.
        Ok(ValueDesc::mosaic(0, 0))
    }

    fn run_cpu(&self, _ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("raw_source was given no frame"))
    }
}
