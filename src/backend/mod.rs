//! Execution backends. The CPU backend (rayon) is always present; CUDA is
//! behind the `cuda` feature.

pub mod cpu;

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
