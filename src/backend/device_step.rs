//! What a stage contributes to a device-resident classical segment, and
//! the plan that assembles those contributions into one
//! [`ClassicalChain`](crate::backend::cuda::ClassicalChain) (one upload of
//! the mosaic, the raw-prep, demosaic and colour launches, one download).
//!
//! The executor (`graph::device_segment`) asks each member of a scheduled
//! chain for its [`DeviceStep`] (see
//! [`crate::stages::Stage::device_step`]) and pushes them into a
//! [`ChainPlan`] in chain order; the plan refuses a step that the fixed
//! launch order of the chain cannot run after the steps already in it
//! (raw prep: black level, then white balance; demosaic; colour: matrix,
//! exposure gain, tone curve, sRGB encode), and the segment ends there.
//! The types exist in builds with and without the `cuda` feature.

use crate::backend::cuda::{ClassicalChain, ColorSteps, DemosaicMethod, RawPrep};
use crate::color::Mat3;

/// One stage's part of a device-resident classical segment, with its
/// per-frame constants.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceStep {
    /// Nothing to do for this frame (white balance `none`, a linear tone
    /// curve, a gain of exactly 1): the member passes its input on.
    Nothing,
    /// Subtract the black pattern and divide by (white - black)
    /// (`raw_prep.cu`); clamp negatives to 0 when `clip_negative`.
    BlackLevel { clip_negative: bool },
    /// Multiply by the white-balance `gains` (R, G, B; smallest 1)
    /// (`raw_prep.cu`); clamp to 1 when `clip_highlights`.
    WhiteBalance {
        gains: [f32; 3],
        clip_highlights: bool,
    },
    /// Mosaic -> planar camera RGB (`demosaic.cu`, `demosaic_menon.cu`).
    Demosaic(DemosaicMethod),
    /// Camera RGB -> output RGB, row-major (`color_pipeline.cu`).
    Matrix(Mat3),
    /// Linear gain, 2^EV (`color_pipeline.cu`).
    Gain(f32),
    /// Tone LUT of n + 1 entries over [0, `max`] (`color_pipeline.cu`).
    Tone { lut: Vec<f32>, max: f32 },
    /// sRGB encode LUT of n + 1 entries over [0, 1] (`color_pipeline.cu`).
    Srgb { lut: Vec<f32> },
}

/// Which launch of a [`ClassicalChain`] does a step's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainPart {
    /// `raw_prep_f32`.
    Prep,
    /// The demosaic kernel(s).
    Demosaic,
    /// `color_pipeline_f32`.
    Color,
}

impl DeviceStep {
    /// Position in the chain's fixed launch order (`None` for
    /// [`DeviceStep::Nothing`], which fits anywhere).
    fn rank(&self) -> Option<u8> {
        Some(match self {
            DeviceStep::Nothing => return None,
            DeviceStep::BlackLevel { .. } => 0,
            DeviceStep::WhiteBalance { .. } => 1,
            DeviceStep::Demosaic(_) => 2,
            DeviceStep::Matrix(_) => 3,
            DeviceStep::Gain(_) => 4,
            DeviceStep::Tone { .. } => 5,
            DeviceStep::Srgb { .. } => 6,
        })
    }

    /// The launch that does this step's work (`None`: no work).
    pub fn part(&self) -> Option<ChainPart> {
        Some(match self.rank()? {
            0 | 1 => ChainPart::Prep,
            2 => ChainPart::Demosaic,
            _ => ChainPart::Color,
        })
    }
}

/// A [`ClassicalChain`] being assembled from members' steps in chain
/// order.
#[derive(Debug, Clone, Default)]
pub struct ChainPlan {
    prep: RawPrep,
    demosaic: Option<DemosaicMethod>,
    color: ColorSteps,
    /// Rank of the last step taken.
    last: Option<u8>,
}

impl ChainPlan {
    /// Takes `step` when the chain can run it after the steps already
    /// taken (each kind once, in launch order); `false` leaves the plan
    /// unchanged.
    pub fn push(&mut self, step: DeviceStep) -> bool {
        let Some(rank) = step.rank() else {
            return true;
        };
        if self.last.is_some_and(|l| l >= rank) {
            return false;
        }
        self.last = Some(rank);
        match step {
            DeviceStep::Nothing => {}
            DeviceStep::BlackLevel { clip_negative } => {
                self.prep.black_level = true;
                self.prep.clip_negative = clip_negative;
            }
            DeviceStep::WhiteBalance {
                gains,
                clip_highlights,
            } => {
                self.prep.gains = Some(gains);
                self.prep.clip_highlights = clip_highlights;
            }
            DeviceStep::Demosaic(m) => self.demosaic = Some(m),
            DeviceStep::Matrix(m) => self.color.matrix = Some(m),
            DeviceStep::Gain(g) => self.color.gain = Some(g),
            DeviceStep::Tone { lut, max } => {
                self.color.tone_lut = Some(lut);
                self.color.tone_max = max;
            }
            DeviceStep::Srgb { lut } => self.color.srgb_lut = Some(lut),
        }
        true
    }

    /// Whether a demosaic step was taken (a chain needs one).
    pub fn has_demosaic(&self) -> bool {
        self.demosaic.is_some()
    }

    /// The assembled chain; `None` without a demosaic step.
    pub fn chain(self) -> Option<ClassicalChain> {
        Some(ClassicalChain {
            prep: self.prep,
            demosaic: self.demosaic?,
            color: self.color,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_in_launch_order_make_one_chain() {
        let mut p = ChainPlan::default();
        assert!(p.push(DeviceStep::BlackLevel {
            clip_negative: true
        }));
        assert!(p.push(DeviceStep::Nothing));
        assert!(p.push(DeviceStep::WhiteBalance {
            gains: [2.0, 1.0, 1.5],
            clip_highlights: true
        }));
        assert!(!p.has_demosaic());
        assert!(p.push(DeviceStep::Demosaic(DemosaicMethod::Mhc)));
        assert!(p.push(DeviceStep::Gain(2.0)));
        assert!(p.push(DeviceStep::Srgb {
            lut: vec![0.0, 1.0]
        }));
        let c = p.chain().unwrap();
        assert!(c.prep.black_level && c.prep.clip_negative && c.prep.clip_highlights);
        assert_eq!(c.prep.gains, Some([2.0, 1.0, 1.5]));
        assert_eq!(c.demosaic, DemosaicMethod::Mhc);
        assert_eq!(c.color.gain, Some(2.0));
        assert!(c.color.matrix.is_none() && c.color.tone_lut.is_none());
        assert_eq!(c.color.srgb_lut, Some(vec![0.0, 1.0]));
    }

    #[test]
    fn a_step_out_of_launch_order_is_refused() {
        let mut p = ChainPlan::default();
        assert!(p.push(DeviceStep::Demosaic(DemosaicMethod::Bilinear)));
        assert!(p.push(DeviceStep::Gain(2.0)));
        // A matrix after the gain, a second gain, a raw step after the
        // demosaic: the chain's launches cannot run them there.
        assert!(!p.push(DeviceStep::Matrix(crate::color::IDENTITY)));
        assert!(!p.push(DeviceStep::Gain(3.0)));
        assert!(!p.push(DeviceStep::BlackLevel {
            clip_negative: false
        }));
        let c = p.chain().unwrap();
        assert_eq!(c.color.gain, Some(2.0));
        assert!(c.color.matrix.is_none());
        assert!(!c.prep.black_level);
    }

    #[test]
    fn no_chain_without_a_demosaic() {
        let mut p = ChainPlan::default();
        assert!(p.push(DeviceStep::BlackLevel {
            clip_negative: false
        }));
        assert!(p.chain().is_none());
        assert_eq!(DeviceStep::Nothing.part(), None);
        assert_eq!(DeviceStep::Gain(1.5).part(), Some(ChainPart::Color));
        assert_eq!(
            DeviceStep::WhiteBalance {
                gains: [1.0; 3],
                clip_highlights: false
            }
            .part(),
            Some(ChainPart::Prep)
        );
    }
}
