//! Device-resident segments: a chain of stages placed on CUDA (see
//! [`super::schedule::next_member`]) that together form a classical chain
//! (raw prep -> demosaic -> colour pipeline) runs as one
//! [`ClassicalChain`]: one upload of the mosaic, the chain's launches
//! with every intermediate on the device, one download of the image.
//!
//! Each member hands out its [`DeviceStep`] for the frame
//! ([`crate::stages::Stage::device_step`]); the steps go into a
//! [`ChainPlan`] in chain order, and the segment ends before the first
//! member that has no step for this frame (a gray-world white balance,
//! auto exposure) or whose step the chain's fixed launch order cannot run
//! there. Members with nothing to do for the frame
//! ([`crate::stages::Stage::skip_reason`]) are passed over, as in a CPU
//! segment. A segment needs a demosaic and two members with steps;
//! otherwise its stages run one by one as before.
//!
//! Timing rows, in the schema of every run: `<first member>.h2d`
//! (op `copy_h2d`), one row per member, `<last member>.d2h` (op
//! `copy_d2h`), all with the segment's label in `fused`. A member's
//! `device_ms` is the event time of the launch that does its work, shared
//! equally among the members that launch serves (black level and white
//! balance share raw prep; matrix, gain, tone and sRGB share the colour
//! pass); `host_ms` is the segment's wall time shared in proportion to
//! the device times, so the rows add up to the wall time.

use super::build::Pipeline;
use super::exec::skipped_row;
use super::timing::StageTiming;
use crate::backend::cuda::{ChainTimes, ClassicalChain};
use crate::backend::device_step::{ChainPart, ChainPlan};
use crate::error::{Error, Result};
use crate::frame::{Mosaic, Value};
use crate::stages::row_kernel::Header;

/// Where the executor runs device-resident segments: the CUDA backend
/// ([`Cuda`]), or in tests the host emulation of the same kernels
/// (tests/cuda_emu.rs).
pub trait SegmentDevice: Sync {
    /// `Ok` when stages and segments can run on this device; `Err` says
    /// why not (one line).
    fn available(&self) -> std::result::Result<(), String>;

    /// Runs `chain` on `m` (raw DN, W x H): planar RGB (3 planes of
    /// W*H f32) and the device time of each step.
    fn run_chain(&self, chain: &ClassicalChain, m: &Mosaic) -> Result<(Vec<f32>, ChainTimes)>;
}

/// The CUDA backend (`crate::backend::cuda`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cuda;

impl SegmentDevice for Cuda {
    fn available(&self) -> std::result::Result<(), String> {
        crate::backend::cuda::available()
    }

    fn run_chain(&self, chain: &ClassicalChain, m: &Mosaic) -> Result<(Vec<f32>, ChainTimes)> {
        chain.run(m)
    }
}

/// The nodes of a prepared segment in chain order, each with the reason
/// it is skipped for this frame, or `None` (a member that runs).
pub type Covered = Vec<(usize, Option<String>)>;

/// A segment ready to run on one frame.
#[derive(Debug)]
pub struct DeviceSegment {
    /// The launches.
    pub chain: ClassicalChain,
    /// The nodes it covers.
    pub covered: Covered,
    /// For each entry of `covered`: the launch doing its work (`None`
    /// for skipped members and members with nothing to do).
    parts: Vec<Option<ChainPart>>,
    /// Header of the last member's output.
    pub out: Header,
}

/// The longest prefix of `chain` that forms a device-resident segment for
/// the frame `ins` (the first member's inputs), or `None` when it has no
/// demosaic or fewer than two members with work.
pub fn prepare(p: &Pipeline, chain: &[usize], ins: &[Value]) -> Result<Option<DeviceSegment>> {
    let Some(mut hdr) = ins.first().and_then(Header::of) else {
        return Ok(None);
    };
    if hdr.mosaic().is_none() {
        return Ok(None);
    }
    let mut plan = ChainPlan::default();
    let mut covered: Covered = Vec::new();
    let mut parts = Vec::new();
    for &k in chain {
        let nd = &p.nodes[k];
        if let Some(why) = nd.stage.skip_reason(&hdr) {
            covered.push((k, Some(why)));
            parts.push(None);
            continue;
        }
        let Some((step, out)) = nd
            .stage
            .device_step(&hdr)
            .map_err(|e| e.in_stage(&nd.id, nd.op))?
        else {
            break;
        };
        let part = step.part();
        if !plan.push(step) {
            break;
        }
        covered.push((k, None));
        parts.push(part);
        hdr = out;
    }
    // Skipped nodes after the last member stay out (they run on their own).
    while matches!(covered.last(), Some((_, Some(_)))) {
        covered.pop();
        parts.pop();
    }
    let members = covered.iter().filter(|(_, s)| s.is_none()).count();
    if members < 2 || !plan.has_demosaic() {
        return Ok(None);
    }
    let Some(chain) = plan.chain() else {
        return Ok(None);
    };
    Ok(Some(DeviceSegment {
        chain,
        covered,
        parts,
        out: hdr,
    }))
}

impl DeviceSegment {
    /// Runs the segment on `input` (the first member's input, a mosaic);
    /// returns the last member's value and the device times.
    pub fn run(&self, dev: &dyn SegmentDevice, input: Value) -> Result<(Value, ChainTimes)> {
        let Value::Mosaic(m) = input else {
            return Err(Error::invalid("device segment needs a mosaic"));
        };
        let (rgb, t) = dev.run_chain(&self.chain, &m)?;
        if rgb.len() != 3 * m.width * m.height {
            return Err(Error::invalid(format!(
                "device segment returned {} values for a {}x{} frame",
                rgb.len(),
                m.width,
                m.height
            )));
        }
        Ok((Value::Image(self.out.image(rgb).into()), t))
    }

    /// The segment's label: its members' ids joined by `+`.
    pub fn label(&self, p: &Pipeline) -> String {
        self.covered
            .iter()
            .filter(|(_, skip)| skip.is_none())
            .map(|&(k, _)| p.nodes[k].id.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The timing rows of one run (see the module docs): `t` the device
    /// times, `wall_ms` the host wall time of [`DeviceSegment::run`],
    /// `megapixels` the output's.
    pub fn rows(
        &self,
        p: &Pipeline,
        t: &ChainTimes,
        wall_ms: f64,
        megapixels: f64,
    ) -> Vec<StageTiming> {
        let label = self.label(p);
        let serving = |part: ChainPart| self.parts.iter().filter(|q| **q == Some(part)).count();
        let part_ms = |part: ChainPart| {
            let ms = match part {
                ChainPart::Prep => t.raw_prep_ms,
                ChainPart::Demosaic => t.demosaic_ms,
                ChainPart::Color => t.color_ms,
            };
            ms / serving(part).max(1) as f64
        };
        let device_total = t.upload_ms + t.raw_prep_ms + t.demosaic_ms + t.color_ms + t.download_ms;
        let rows_with_time = 2 + self.parts.iter().filter(|q| q.is_some()).count();
        let host = |device_ms: f64| {
            if device_total > 0.0 {
                wall_ms * device_ms / device_total
            } else {
                wall_ms / rows_with_time as f64
            }
        };
        let copy = |id: &str, what: &str, ms: f64| StageTiming {
            id: format!("{id}.{what}"),
            op: format!("copy_{what}"),
            backend: "cuda".into(),
            host_ms: host(ms),
            device_ms: Some(ms),
            megapixels: 0.0,
            fell_back: false,
            fused: Some(label.clone()),
        };
        let mut members = self.covered.iter().filter(|(_, s)| s.is_none());
        let first = members.next().map_or("", |&(k, _)| p.nodes[k].id.as_str());
        let last = members
            .next_back()
            .map_or(first, |&(k, _)| p.nodes[k].id.as_str());
        let mut rows = vec![copy(first, "h2d", t.upload_ms)];
        for ((k, skip), part) in self.covered.iter().zip(&self.parts) {
            let nd = &p.nodes[*k];
            if let Some(why) = skip {
                rows.push(skipped_row(nd, why));
                continue;
            }
            let device_ms = part.map_or(0.0, part_ms);
            rows.push(StageTiming {
                id: nd.id.clone(),
                op: nd.op.to_string(),
                backend: "cuda".into(),
                host_ms: if part.is_some() { host(device_ms) } else { 0.0 },
                device_ms: Some(device_ms),
                megapixels,
                fell_back: false,
                fused: Some(label.clone()),
            });
        }
        rows.push(copy(last, "d2h", t.download_ms));
        rows
    }
}
