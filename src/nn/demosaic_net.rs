//! A loaded joint demosaic + denoise network of either architecture,
//! chosen by the weights file's `arch` metadata: `dmdn` (the flat
//! packed-Bayer net, [`super::dmdn`]) or `dmdn_unet` (the raw-path U-Net,
//! [`super::dmdn_unet`]). Both take the same inputs and tile the same way.

use std::collections::HashMap;
use std::path::Path;

use super::bayer_tiles::{Cfa2x2, NoiseInput};
use super::{Dmdn, DmdnUnet, Tensor, Weights};
use crate::error::Result;

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

    /// Floating-point operations per output pixel (excluding halo overlap).
    pub fn flops_per_pixel(&self) -> f64 {
        match self {
            DemosaicNet::Flat(m) => m.flops_per_pixel(),
            DemosaicNet::Unet(m) => m.flops_per_pixel(),
        }
    }

    /// Demosaics and denoises a whole `h x w` frame whose top-left cell is
    /// `cfa`; returns `[1, 3, h, w]` RGB in the mosaic's units.
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
}
