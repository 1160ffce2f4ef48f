//! Runs a compiled pipeline on one frame, timing every stage.

use std::sync::Arc;
use std::time::Instant;

use super::build::Pipeline;
use super::timing::{StageTiming, Timings};
use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, MosaicScale, Value, ValueDesc};
use crate::raw::RawFrame;
use crate::stages::RunCtx;

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides every stage's backend when set. `Cuda` here requires a
    /// usable device (else [`Error::CudaUnavailable`]) and runs every op
    /// that has a kernel on it; ops without one stay on the CPU, marked as
    /// fallbacks. A stage's own `backend: cuda` on an op without a kernel
    /// is an error.
    pub backend: Option<BackendChoice>,
}

/// Results of one run: output values by stage id, plus timings.
#[derive(Debug)]
pub struct RunOutput {
    pub outputs: Vec<(String, Value)>,
    pub timings: Timings,
}

/// Whether a CUDA device can be used by this build on this machine: the
/// driver and NVRTC libraries are present and a device answers (checked
/// once per process, without panicking when the libraries are missing).
pub fn cuda_available() -> std::result::Result<(), String> {
    crate::backend::cuda::available()
}

/// Wraps a raw frame as the `raw_source` value.
pub fn frame_to_value(frame: RawFrame) -> Result<Value> {
    let cfa = frame.meta.cfa()?;
    Ok(Value::Mosaic(Arc::new(Mosaic {
        width: frame.meta.width,
        height: frame.meta.height,
        cfa,
        data: frame.data,
        scale: MosaicScale::Dn,
        wb_applied: None,
        meta: Arc::new(frame.meta),
    })))
}

/// Runs `p` on `frame`. A LinearRaw frame (already demosaiced) skips the
/// mosaic-only stages, see [`super::linear_raw`].
pub fn run(p: &Pipeline, frame: RawFrame, opts: &RunOptions) -> Result<RunOutput> {
    let source = frame.meta.source.clone();
    if frame.meta.layout == crate::raw::PixelLayout::LinearRgb {
        let (input, steps) = super::linear_raw::prepare(p, frame)?;
        return run_steps(p, input, &source, opts, steps);
    }
    let input = frame_to_value(frame)?;
    run_value(p, input, &source, opts)
}

/// What the executor does with one node.
#[derive(Debug, Clone)]
pub enum Step {
    /// Run the stage.
    Run,
    /// Do not run it; its value is this one (a LinearRaw frame's image in
    /// place of a demosaic), or none (a mosaic-only stage). `why` goes
    /// into the timing row's op label.
    Skip { value: Option<Value>, why: String },
}

/// Runs `p` with `input` as the `raw_source` value (a mosaic).
pub fn run_value(p: &Pipeline, input: Value, source: &str, opts: &RunOptions) -> Result<RunOutput> {
    p.plan(input.desc())?;
    let steps = vec![Step::Run; p.nodes.len()];
    run_steps(p, input, source, opts, steps)
}

fn run_steps(
    p: &Pipeline,
    input: Value,
    source: &str,
    opts: &RunOptions,
    mut steps: Vec<Step>,
) -> Result<RunOutput> {
    let n = p.nodes.len();
    // Remaining consumers per value: the last one takes ownership.
    let mut uses = vec![0usize; n];
    for nd in &p.nodes {
        for &j in &nd.inputs {
            uses[j] += 1;
        }
    }
    for &o in &p.outputs {
        uses[o] += 1;
    }
    let mut values: Vec<Option<Value>> = vec![None; n];
    let mut input = Some(input);
    let mut timings = Timings {
        pipeline: p.name.clone(),
        source: source.to_string(),
        ..Default::default()
    };
    for (i, nd) in p.nodes.iter().enumerate() {
        if let Step::Skip { value, why } = std::mem::replace(&mut steps[i], Step::Run) {
            for &j in &nd.inputs {
                uses[j] = uses[j].saturating_sub(1);
                if uses[j] == 0 {
                    values[j] = None;
                }
            }
            if i == p.source {
                input = None;
            }
            timings.stages.push(StageTiming {
                id: nd.id.clone(),
                op: format!("{} (skipped: {why})", nd.op),
                backend: "cpu".into(),
                host_ms: 0.0,
                device_ms: None,
                megapixels: 0.0,
                fell_back: false,
            });
            values[i] = value;
            continue;
        }
        let mut ins = Vec::with_capacity(nd.inputs.len());
        if i == p.source {
            ins.push(
                input
                    .take()
                    .ok_or_else(|| Error::invalid("pipeline input used twice"))?,
            );
        }
        for &j in &nd.inputs {
            uses[j] -= 1;
            let v = if uses[j] == 0 {
                values[j].take()
            } else {
                values[j].clone()
            };
            ins.push(v.ok_or_else(|| {
                Error::invalid(format!(
                    "stage '{}' needs the value of stage '{}', which was skipped or is gone \
                     (a LinearRaw frame skips mosaic-only stages)",
                    nd.id, p.nodes[j].id
                ))
            })?);
        }
        let ctx = RunCtx { stage_id: &nd.id };
        let want = opts.backend.unwrap_or(nd.backend);
        let (use_cuda, fell_back) = match want {
            BackendChoice::Cpu => (false, false),
            BackendChoice::Cuda => {
                cuda_available().map_err(Error::CudaUnavailable)?;
                if !nd.stage.has_cuda() && opts.backend == Some(BackendChoice::Cuda) {
                    // A run-wide `--backend cuda` keeps ops without a kernel
                    // (raw_source, orient, ...) on the CPU, marked in Timings.
                    (false, true)
                } else if !nd.stage.has_cuda() {
                    return Err(Error::NoBackend {
                        stage: nd.id.clone(),
                        op: nd.op.to_string(),
                        backend: "cuda".into(),
                    });
                } else {
                    (true, false)
                }
            }
            BackendChoice::Auto => {
                let ok = nd.stage.has_cuda() && cuda_available().is_ok();
                (ok, !ok)
            }
        };
        let t0 = Instant::now();
        if use_cuda {
            // Clear anything a failed earlier stage left behind.
            crate::backend::take_device_times();
        }
        let out = if use_cuda {
            nd.stage.run_cuda(&ctx, ins)
        } else {
            nd.stage.run_cpu(&ctx, ins)
        }
        .map_err(|e| e.in_stage(&nd.id, nd.op))?;
        let host_ms = t0.elapsed().as_secs_f64() * 1e3;
        let d: ValueDesc = out.desc();
        let dev = if use_cuda {
            crate::backend::take_device_times()
        } else {
            None
        };
        timings.stages.push(StageTiming {
            id: nd.id.clone(),
            op: nd.op.to_string(),
            backend: if use_cuda { "cuda" } else { "cpu" }.into(),
            host_ms,
            device_ms: dev.map(|t| t.kernel_ms),
            megapixels: d.megapixels(),
            fell_back,
        });
        // Host<->device copies are their own timed steps (device time from
        // CUDA events; their host time is already in the stage's row).
        if let Some(t) = dev {
            for (what, ms, bytes) in [
                ("h2d", t.upload_ms, t.upload_bytes),
                ("d2h", t.download_ms, t.download_bytes),
            ] {
                if bytes > 0 {
                    timings.stages.push(StageTiming {
                        id: format!("{}.{what}", nd.id),
                        op: format!("copy_{what} {:.1} MB", bytes as f64 / 1e6),
                        backend: "cuda".into(),
                        host_ms: 0.0,
                        device_ms: Some(ms),
                        megapixels: 0.0,
                        fell_back: false,
                    });
                }
            }
        }
        values[i] = Some(out);
    }
    timings.total_ms = timings.stages.iter().map(|t| t.host_ms).sum();
    let mut outputs = Vec::new();
    for &o in &p.outputs {
        let v = values[o].clone().ok_or_else(|| {
            Error::invalid(format!("output '{}' was not produced", p.nodes[o].id))
        })?;
        outputs.push((p.nodes[o].id.clone(), v));
    }
    Ok(RunOutput { outputs, timings })
}
