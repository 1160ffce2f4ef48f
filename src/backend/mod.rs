//! Execution backends. The CPU backend (rayon) is always present; CUDA is
//! behind the `cuda` feature (`cuda_stub.rs`, with the same API, answers
//! "CUDA not available" in builds without it).

pub mod cpu;
pub mod device_step;
pub mod median;
pub mod simd;

use serde::{Deserialize, Serialize};

/// Where a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// Always the CPU.
    #[default]
    Cpu,
    /// CUDA; an error when CUDA is not available.
    Cuda,
    /// CUDA where the stage has a kernel and a device exists, else CPU.
    Auto,
}

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_stub.rs"]
pub mod cuda;

use std::cell::RefCell;

/// Device-side timing of the CUDA work a stage did on this thread
/// (CUDA events; milliseconds). Kernels and copies are kept apart so the
/// executor can report host<->device transfers as their own steps.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeviceTimes {
    /// Kernel time, ms.
    pub kernel_ms: f64,
    /// Host -> device copies, ms.
    pub upload_ms: f64,
    /// Device -> host copies, ms.
    pub download_ms: f64,
    /// Bytes copied host -> device.
    pub upload_bytes: usize,
    /// Bytes copied device -> host.
    pub download_bytes: usize,
}

thread_local! {
    static DEVICE_TIMES: RefCell<Option<DeviceTimes>> = const { RefCell::new(None) };
}

/// Adds `t` to this thread's device times (called by the CUDA backend).
pub fn record_device_times(t: DeviceTimes) {
    DEVICE_TIMES.with(|c| {
        let mut c = c.borrow_mut();
        let acc = c.get_or_insert_with(DeviceTimes::default);
        acc.kernel_ms += t.kernel_ms;
        acc.upload_ms += t.upload_ms;
        acc.download_ms += t.download_ms;
        acc.upload_bytes += t.upload_bytes;
        acc.download_bytes += t.download_bytes;
    });
}

/// Takes (and clears) this thread's device times; `None` when no CUDA work
/// was recorded since the last call.
pub fn take_device_times() -> Option<DeviceTimes> {
    DEVICE_TIMES.with(|c| c.borrow_mut().take())
}
