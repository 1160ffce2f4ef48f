//! Tiny neural-network inference for the learned stages.
//!
//! Everything is f32 NCHW ([`Tensor`]); weights come from safetensors files
//! whose metadata declares the architecture ([`weights`]). Convolutions are
//! im2col + the `gemm` crate in the pixel-major layout `C[N,M] = P[N,K]·Wᵀ`
//! (N pixels, K = cin·kh·kw taps, M output channels), with the pixels split in
//! bands across rayon threads ([`conv2d`]). No training code lives here: the
//! models are trained by the PyTorch scripts in `training/`.
//!
//! | file | op |
//! |---|---|
//! | tensor.rs | [`Tensor`]: NCHW f32 buffer with checked constructors |
//! | conv2d.rs | [`Conv2d`]: 1x1 / 3x3, stride 1 / 2, zero / reflect padding, fused activation |
//! | conv3x3_direct.rs | 3x3 stride-1 convs with few output channels without im2col (the GEMM path's bits) |
//! | activations.rs | [`Activation`]: ReLU, LeakyReLU, sigmoid |
//! | shuffle.rs | pixel (un)shuffle |
//! | combine.rs | channel concat, element-wise add |
//! | weights.rs | safetensors loading and validation |
//! | bayer_tiles.rs | whole frames of any Bayer phase through a tile network, with halos |
//! | gated_smoothing.rs | per-pixel softmax blend of an image and its box means (exact fixed-point sums) |
//! | chroma_guided.rs | chroma smoothing by guided filters of the luminance (`fastc`'s last stage) |
//! | classical_base.rs | the classical demosaic (an engine op) a `dmdn_unet` may refine |
//! | dmdn.rs | the flat joint demosaic + denoise network (sRGB-regime models) |
//! | dmdn_unet.rs | the raw-path joint demosaic + denoise U-Net |
//! | fullres_tail.rs | `dmdn_unet`'s full-resolution refinement streamed in row bands |
//! | demosaic_net.rs | either of the two, chosen by the weights' `arch` |
//! | hdrnet.rs | HDRnet's coefficient network and guide weights |
//! | sky_seg.rs | the small sky segmenter (sub-pixel-conv decoder) |

pub mod activations;
pub mod bayer_tiles;
pub mod chroma_guided;
pub mod classical_base;
pub mod combine;
pub mod conv2d;
pub mod conv3x3_direct;
pub mod demosaic_net;
pub mod dmdn;
pub mod dmdn_unet;
pub mod fullres_tail;
pub mod gated_smoothing;
pub mod hdrnet;
pub mod logits;
pub mod pool;
pub mod shuffle;
pub mod sky_seg;
pub mod tensor;
pub mod weights;
mod window_sums;

pub use activations::Activation;
pub use bayer_tiles::BayerFrame;
pub use classical_base::ClassicalBase;
pub use conv2d::{Conv2d, Padding};
pub use demosaic_net::DemosaicNet;
pub use dmdn::{Dmdn, DmdnConfig, NoiseInput};
pub use dmdn_unet::{DmdnUnet, DmdnUnetConfig};
pub use pool::BufferPool;
pub use tensor::Tensor;
pub use weights::Weights;
