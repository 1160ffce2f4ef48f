//! A loaded joint demosaic + denoise network of either architecture,
//! chosen by the weights file's `arch` metadata: `dmdn` (the flat
//! packed-Bayer net, [`super::dmdn`]) or `dmdn_unet` (the raw-path U-Net,
//! [`super::dmdn_unet`]). Both take the same inputs and tile the same way;
//! a `dmdn_unet` over a classical base also takes that base, a classical
//! demosaic of the whole frame ([`super::classical_base`]), which
//! [`DemosaicNet::run`] computes and [`DemosaicNet::run_frame`] is given.

use std::collections::HashMap;
use std::path::Path;

use super::bayer_tiles::{BayerFrame, Cfa2x2, NoiseInput};
use super::{ClassicalBase, Dmdn, DmdnUnet, Tensor, Weights};
use crate::error::{Error, Result};

/// Either joint demosaic + denoise network.
#[derive(Clone, Debug)]
pub enum DemosaicNet {
    /// `arch = dmdn`.
    Flat(Box<Dmdn>),
    /// `arch = dmdn_unet`.
    Unet(Box<DmdnUnet>),
}

impl DemosaicNet {
    /// Loads a weights file and builds the network its `arch` names.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let w = Weights::load(path)?;
        match w.meta("arch")? {
            "dmdn_unet" => Ok(DemosaicNet::Unet(Box::new(DmdnUnet::from_weights(w)?))),
            // Anything else goes to the flat loader, which names the mismatch.
            _ => Ok(DemosaicNet::Flat(Box::new(Dmdn::from_weights(w)?))),
        }
    }

    /// The weights file's metadata.
    pub fn metadata(&self) -> &HashMap<String, String> {
        match self {
            DemosaicNet::Flat(m) => m.metadata(),
            DemosaicNet::Unet(m) => m.metadata(),
        }
    }

    /// Receptive radius in full-resolution pixels.
    pub fn halo(&self) -> usize {
        match self {
            DemosaicNet::Flat(m) => m.halo(),
            DemosaicNet::Unet(m) => m.halo(),
        }
    }

    /// The model's default output tile edge in pixels.
    pub fn default_tile(&self) -> usize {
        match self {
            DemosaicNet::Flat(m) => m.default_tile(),
            DemosaicNet::Unet(m) => m.default_tile(),
        }
    }

    /// The classical demosaic the network refines, if any (only
    /// `dmdn_unet` files whose metadata `base` is not `bilinear`).
    pub fn classical_base(&self) -> Option<&ClassicalBase> {
        match self {
            DemosaicNet::Flat(_) => None,
            DemosaicNet::Unet(m) => m.classical_base(),
        }
    }

    /// Floating-point operations per output pixel (excluding halo overlap
    /// and the classical base op).
    pub fn flops_per_pixel(&self) -> f64 {
        match self {
            DemosaicNet::Flat(m) => m.flops_per_pixel(),
            DemosaicNet::Unet(m) => m.flops_per_pixel(),
        }
    }

    /// Demosaics and denoises a whole `h x w` frame whose top-left cell is
    /// `cfa`, computing the classical base first when the model has one;
    /// returns `[1, 3, h, w]` RGB in the mosaic's units.
    pub fn run(
        &self,
        mosaic: &[f32],
        h: usize,
        w: usize,
        cfa: Cfa2x2,
        noise: NoiseInput<'_>,
        tile: usize,
    ) -> Result<Tensor> {
        match self {
            DemosaicNet::Flat(m) => m.run(mosaic, h, w, cfa, noise, tile),
            DemosaicNet::Unet(m) => m.run(mosaic, h, w, cfa, noise, tile),
        }
    }

    /// Demosaics and denoises a whole frame with its classical base
    /// already computed (`frame.base`, planar RGB `3 x h x w`, present
    /// exactly when [`DemosaicNet::classical_base`] is); returns
    /// `[1, 3, h, w]` RGB in the mosaic's units.
    pub fn run_frame(&self, frame: BayerFrame<'_>, tile: usize) -> Result<Tensor> {
        match self {
            DemosaicNet::Flat(m) => match frame.base {
                None => m.run(frame.mosaic, frame.h, frame.w, frame.cfa, frame.noise, tile),
                Some(_) => Err(Error::invalid(
                    "dmdn: the flat network takes no classical base",
                )),
            },
            DemosaicNet::Unet(m) => m.run_frame(frame, tile),
        }
    }
}
