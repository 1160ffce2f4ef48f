//! The CUDA backend (feature `cuda`): cudarc with dynamic loading, kernels
//! from `kernels/*.cu` compiled at run time by NVRTC for the device's
//! architecture.
//!
//! | file | what |
//! |---|---|
//! | kernels.rs | embedded sources, NVRTC compile, PTX cache per source hash |
//! | device.rs | guarded device creation, stream, module table, buffers, timed copies, event timers |
//! | ops.rs | stage-facing ops on host values (raw prep, demosaic, colour pipeline) and the fused classical chain |
//! | conv.rs | implicit-GEMM convolution, fp16 storage / fp32 accumulate, tensor cores |
//! | slice.rs | HDRnet guide + bilateral slice + affine apply, fused |
//!
//! Without the libraries or a device every entry point returns
//! [`crate::error::Error::CudaUnavailable`]; nothing panics. The same API
//! exists in `cuda_stub.rs` for builds without the feature.

pub mod conv;
pub mod device;
pub mod kernels;
pub mod ops;
pub mod slice;

pub use conv::{ConvKernel, CudaConv2d, DeviceTensor};
pub use device::{available, device, Device};
pub use kernels::{compile_all, nvrtc_available, KERNELS};
pub use ops::{
    cfa_code, color_pipeline, demosaic, raw_prep, synchronize, ChainTimes, ClassicalChain,
    ColorSteps, DemosaicMethod, PreparedChain, RawPrep,
};
pub use slice::bilateral_slice_apply;

/// Whether this build has the CUDA backend.
pub const ENABLED: bool = true;
