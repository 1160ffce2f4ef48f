//! The stage graph: YAML spec ([`spec`]), validation and compilation
//! ([`build`]), the scheduling pass ([`schedule`]), execution ([`exec`],
//! with fused segments from [`fuse`]) and per-stage timings ([`timing`]).

pub mod build;
pub mod device_segment;
pub mod exec;
pub mod fuse;
pub mod linear_raw;
pub mod schedule;
pub mod spec;
pub mod timing;

pub use build::Pipeline;
pub use exec::{run, RunOptions, RunOutput};
pub use timing::{StageTiming, Timings};
