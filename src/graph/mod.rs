//! The stage graph: YAML spec ([`spec`]), validation and compilation
//! ([`build`]), execution ([`exec`]) and per-stage timings ([`timing`]).

pub mod build;
pub mod exec;
pub mod linear_raw;
pub mod spec;
pub mod timing;

pub use build::Pipeline;
pub use exec::{run, RunOptions, RunOutput};
pub use timing::{StageTiming, Timings};
