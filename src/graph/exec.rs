//! Runs a compiled pipeline on one frame, timing every stage.

use std::sync::Arc;
use std::time::Instant;

use super::build::{Node, Pipeline};
use super::device_segment::{self, Covered, Cuda, SegmentDevice};
use super::fuse::Segment;
use super::schedule;
use super::timing::{StageTiming, Timings};
use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use crate::frame::quantize::{quantize_image, Depth, SampleStream};
use crate::frame::{ColorSpace, Mosaic, MosaicScale, Value, ValueDesc};
use crate::raw::RawFrame;
use crate::stages::row_kernel::Header;
use crate::stages::RunCtx;

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides every stage's backend when set. `Cuda` here requires a
    /// usable device (else [`Error::CudaUnavailable`]) and runs every op
    /// that has a kernel on it; ops without one stay on the CPU, marked as
    /// fallbacks. A stage's own `backend: cuda` on an op without a kernel
    /// is an error. Chains of stages on CUDA that form a classical chain
    /// run as device-resident segments ([`super::device_segment`]).
    pub backend: Option<BackendChoice>,
    /// Run every stage on its own over whole frames (the reference path)
    /// instead of fusing chains of row-kernel stages into strip-scheduled
    /// segments (on CUDA: instead of device-resident segments, every stage
    /// with its own upload and download). CPU runs give identical pixels
    /// either way.
    pub no_fuse: bool,
    /// Deliver the pipeline's finished (sRGB-encoded) image outputs
    /// quantised to these integer samples ([`Value::Encoded`], interleaved
    /// RGB) instead of planar floats: what a file writer or an array
    /// consumer needs. Images in other spaces stay floats. When the
    /// last fused segment feeds an output directly (through stages with
    /// nothing to do for the frame, such as `orient` on an upright frame),
    /// the segment writes the samples itself and the float frame never
    /// exists; otherwise the output is quantised after the run. Both give
    /// identical samples (one rounding rule, `frame::quantize`).
    pub deliver: Option<Depth>,
    /// With `deliver`: where the pipeline's first output goes band by band
    /// when the last fused segment quantises it (see [`SampleStream`]).
    /// That output then comes back with its size but no samples
    /// ([`crate::frame::quantize::EncodedImage::samples`] empty): the
    /// stream got every row. When no fused segment quantises the first
    /// output (another pipeline shape, `no_fuse`, an orientation still to
    /// apply), the stream is never begun and the output comes back whole.
    pub stream: Option<Arc<dyn SampleStream>>,
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
    run_on(p, frame, opts, &Cuda)
}

/// [`run`] with the stages and segments placed on CUDA going to `dev`
/// (the CUDA backend in [`run`]; the tests' host emulation of the same
/// kernels in tests/cuda_emu.rs). Stages run one by one on CUDA still
/// call the CUDA backend.
pub fn run_on(
    p: &Pipeline,
    frame: RawFrame,
    opts: &RunOptions,
    dev: &dyn SegmentDevice,
) -> Result<RunOutput> {
    let source = frame.meta.source.clone();
    if frame.meta.layout == crate::raw::PixelLayout::LinearRgb {
        let (input, steps) = super::linear_raw::prepare(p, frame)?;
        return run_steps(p, input, &source, opts, steps, dev);
    }
    let input = frame_to_value(frame)?;
    run_value_on(p, input, &source, opts, dev)
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
    run_value_on(p, input, source, opts, &Cuda)
}

/// [`run_value`] on `dev` (see [`run_on`]).
pub fn run_value_on(
    p: &Pipeline,
    input: Value,
    source: &str,
    opts: &RunOptions,
    dev: &dyn SegmentDevice,
) -> Result<RunOutput> {
    p.plan(input.desc())?;
    let steps = vec![Step::Run; p.nodes.len()];
    run_steps(p, input, source, opts, steps, dev)
}

fn run_steps(
    p: &Pipeline,
    input: Value,
    source: &str,
    opts: &RunOptions,
    mut steps: Vec<Step>,
    dev: &dyn SegmentDevice,
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
    // Chains of CPU row-kernel stages run as fused segments.
    let eligible: Vec<bool> = p
        .nodes
        .iter()
        .zip(&steps)
        .map(|(nd, st)| {
            !opts.no_fuse
                && matches!(st, Step::Run)
                && matches!(placement(nd, opts, dev), Ok((false, _)))
        })
        .collect();
    let next = schedule::next_in_chain(p, &eligible);
    // Chains of stages placed on CUDA run as device-resident segments;
    // members falling back to the CPU may only be passed over (a stage
    // with nothing to do for the frame).
    let device_ok = !opts.no_fuse
        && p.nodes
            .iter()
            .any(|nd| opts.backend.unwrap_or(nd.backend) != BackendChoice::Cpu)
        && dev.available().is_ok();
    let on_device: Vec<bool> = p
        .nodes
        .iter()
        .zip(&steps)
        .map(|(nd, st)| {
            device_ok
                && matches!(st, Step::Run)
                && match placement(nd, opts, dev) {
                    Ok((true, _)) => true,
                    Ok((false, fell_back)) => fell_back && nd.stage.row_shape().is_some(),
                    Err(_) => false,
                }
        })
        .collect();
    let device_next = schedule::next_member(p, &on_device);
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, nd) in p.nodes.iter().enumerate() {
        for &j in &nd.inputs {
            consumers[j].push(k);
        }
    }
    let mut done = vec![false; n];
    for (i, nd) in p.nodes.iter().enumerate() {
        if done[i] {
            continue;
        }
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
            timings.stages.push(skipped_row(nd, &why));
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
        if device_next[i].is_some() {
            let chain = schedule::chain_from(&device_next, i);
            if let Some(seg) = device_segment::prepare(p, &chain, &ins)? {
                let input = ins.pop().ok_or_else(|| Error::invalid("no input"))?;
                let t0 = Instant::now();
                let (out, t) = seg.run(dev, input).map_err(|e| e.in_stage(&nd.id, nd.op))?;
                let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
                let megapixels = out.desc().megapixels();
                timings.stages.extend(seg.rows(p, &t, wall_ms, megapixels));
                for &(k, _) in &seg.covered {
                    done[k] = true;
                }
                if let Some(&(last, _)) = seg.covered.last() {
                    values[last] = Some(out);
                }
                continue;
            }
        }
        if next[i].is_some() {
            if let Some((mut seg, covered)) =
                prepare_segment(p, &schedule::chain_from(&next, i), &ins)?
            {
                if let (Some(depth), Some(&(last, _))) = (opts.deliver, covered.last()) {
                    let output = output_fed(p, &consumers, &steps, last, &seg.out);
                    if seg.out.space() == Some(ColorSpace::Srgb)
                        && seg.makes_image()
                        && output.is_some()
                    {
                        seg.deliver = Some(depth);
                        if output == p.outputs.first().copied() {
                            seg.stream = opts.stream.clone();
                        }
                    }
                }
                let t0 = Instant::now();
                let input = ins.pop().ok_or_else(|| Error::invalid("no input"))?;
                let (out, ns) = seg.run(input).map_err(|e| e.in_stage(&nd.id, nd.op))?;
                let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
                let total_ns = ns.iter().sum::<u64>().max(1) as f64;
                let label = covered
                    .iter()
                    .filter(|(_, skip)| skip.is_none())
                    .map(|&(k, _)| p.nodes[k].id.as_str())
                    .collect::<Vec<_>>()
                    .join("+");
                let megapixels = out.desc().megapixels();
                let mut ns = ns.iter();
                for (k, skip) in &covered {
                    let member = &p.nodes[*k];
                    done[*k] = true;
                    if let Some(why) = skip {
                        timings.stages.push(skipped_row(member, why));
                        continue;
                    }
                    let t = ns.next().copied().unwrap_or(0);
                    timings.stages.push(StageTiming {
                        id: member.id.clone(),
                        op: member.op.to_string(),
                        backend: "cpu".into(),
                        host_ms: wall_ms * t as f64 / total_ns,
                        device_ms: None,
                        megapixels,
                        fell_back: placement(member, opts, dev)?.1,
                        fused: Some(label.clone()),
                    });
                }
                if let (Some(depth), Some(&t)) = (seg.deliver, ns.next()) {
                    timings.stages.push(deliver_row(
                        &p.nodes[covered.last().map_or(i, |c| c.0)].id,
                        depth,
                        wall_ms * t as f64 / total_ns,
                        megapixels,
                        Some(label.clone()),
                    ));
                }
                if let Some(&(last, _)) = covered.last() {
                    values[last] = Some(out);
                }
                continue;
            }
        }
        // A stage with nothing to do for this frame hands its input on.
        if let [input] = ins.as_slice() {
            if let Some(why) = Header::of(input).and_then(|h| nd.stage.skip_reason(&h)) {
                timings.stages.push(skipped_row(nd, &why));
                values[i] = ins.pop();
                continue;
            }
        }
        let ctx = RunCtx { stage_id: &nd.id };
        let (use_cuda, fell_back) = placement(nd, opts, dev)?;
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
            fused: None,
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
                        op: format!("copy_{what}"),
                        backend: "cuda".into(),
                        host_ms: 0.0,
                        device_ms: Some(ms),
                        megapixels: 0.0,
                        fell_back: false,
                        fused: None,
                    });
                }
            }
        }
        values[i] = Some(out);
    }
    timings.total_ms = timings.stages.iter().map(|t| t.host_ms).sum();
    if timings.stages.iter().any(|t| t.fell_back) {
        timings.fallback = Some(match dev.available() {
            Err(why) => format!("CUDA not available: {why}"),
            Ok(()) => "the op has no CUDA kernel".into(),
        });
    }
    let mut outputs = Vec::new();
    for &o in &p.outputs {
        let mut v = values[o].clone().ok_or_else(|| {
            Error::invalid(format!("output '{}' was not produced", p.nodes[o].id))
        })?;
        if let (Some(depth), Value::Image(img)) = (opts.deliver, &v) {
            if img.space != ColorSpace::Srgb {
                outputs.push((p.nodes[o].id.clone(), v));
                continue;
            }
            let t0 = Instant::now();
            v = Value::Encoded(quantize_image(img, depth).into());
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let mp = v.desc().megapixels();
            timings
                .stages
                .push(deliver_row(&p.nodes[o].id, depth, ms, mp, None));
            timings.total_ms += ms;
        }
        outputs.push((p.nodes[o].id.clone(), v));
    }
    Ok(RunOutput { outputs, timings })
}

/// The pipeline output that node `i`'s value (described by `hdr`) reaches
/// unchanged, if any: `i` itself when it is an output with no other
/// consumer, or the one its one consumer reaches when that is a stage with
/// nothing to do for such a value (see
/// [`crate::stages::Stage::skip_reason`]).
fn output_fed(
    p: &Pipeline,
    consumers: &[Vec<usize>],
    steps: &[Step],
    i: usize,
    hdr: &Header,
) -> Option<usize> {
    match consumers[i].as_slice() {
        [] => (p.outputs.iter().filter(|&&o| o == i).count() == 1).then_some(i),
        [k] if !p.outputs.contains(&i) => {
            if matches!(steps[*k], Step::Run) && p.nodes[*k].stage.skip_reason(hdr).is_some() {
                output_fed(p, consumers, steps, *k, hdr)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Where a node runs: `(use_cuda, fell_back)`. A run-wide `--backend
/// cuda` keeps ops without a kernel (raw_source, orient, ...) on the CPU,
/// marked as fallbacks; a stage's own `backend: cuda` on an op without a
/// kernel is an error.
fn placement(nd: &Node, opts: &RunOptions, dev: &dyn SegmentDevice) -> Result<(bool, bool)> {
    let want = opts.backend.unwrap_or(nd.backend);
    Ok(match want {
        BackendChoice::Cpu => (false, false),
        BackendChoice::Cuda => {
            dev.available().map_err(Error::CudaUnavailable)?;
            if !nd.stage.has_cuda() && opts.backend == Some(BackendChoice::Cuda) {
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
            let ok = nd.stage.has_cuda() && dev.available().is_ok();
            (ok, !ok)
        }
    })
}

/// The timing row of quantising the value of stage `id` for delivery
/// (`RunOptions::deliver`): inside a fused segment (`fused` its label) or
/// after the run.
fn deliver_row(
    id: &str,
    depth: Depth,
    ms: f64,
    megapixels: f64,
    fused: Option<String>,
) -> StageTiming {
    StageTiming {
        id: format!("{id}.deliver"),
        op: match depth {
            Depth::U8 => "quantize_u8",
            Depth::U16 => "quantize_u16",
        }
        .into(),
        backend: "cpu".into(),
        host_ms: ms,
        device_ms: None,
        megapixels,
        fell_back: false,
        fused,
    }
}

/// The timing row of a stage that did not run for this frame.
pub(super) fn skipped_row(nd: &Node, why: &str) -> StageTiming {
    StageTiming {
        id: nd.id.clone(),
        op: format!("{} (skipped: {why})", nd.op),
        backend: "cpu".into(),
        host_ms: 0.0,
        device_ms: None,
        megapixels: 0.0,
        fell_back: false,
        fused: None,
    }
}

/// The longest prefix of `chain` whose row kernels are available for
/// this frame (two kernels or more; members that skip this frame, see
/// [`crate::stages::Stage::skip_reason`], are passed over), as a
/// prepared segment with the nodes it covers; `None` when fewer than two
/// kernels are (the stage then runs on its own).
fn prepare_segment(
    p: &Pipeline,
    chain: &[usize],
    ins: &[Value],
) -> Result<Option<(Segment, Covered)>> {
    let Some(mut hdr) = ins.first().and_then(Header::of) else {
        return Ok(None);
    };
    let mut seg = Segment {
        kernels: Vec::new(),
        out: hdr.clone(),
        deliver: None,
        stream: None,
    };
    let mut covered: Covered = Vec::new();
    for &k in chain {
        let nd = &p.nodes[k];
        if let Some(why) = nd.stage.skip_reason(&hdr) {
            covered.push((k, Some(why)));
            continue;
        }
        let Some((kern, out)) = nd
            .stage
            .row_kernel(&hdr)
            .map_err(|e| e.in_stage(&nd.id, nd.op))?
        else {
            break;
        };
        if !seg.accepts(&kern) {
            break;
        }
        seg.kernels.push(kern);
        covered.push((k, None));
        hdr = out;
    }
    // Skipped nodes after the last kernel stay out (they run on their own).
    while matches!(covered.last(), Some((_, Some(_)))) {
        covered.pop();
    }
    if seg.kernels.len() < 2 {
        return Ok(None);
    }
    seg.out = hdr;
    Ok(Some((seg, covered)))
}
