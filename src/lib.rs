//! # rawgraph
//!
//! A camera ISP pipeline engine: raw Bayer captures (DNG and camera raws
//! through `rawler`, headerless sensor dumps through a sidecar) run
//! through a stage graph defined in YAML, with every stage timed.
//!
//! ```
//! use rawgraph::graph::{self, Pipeline, RunOptions};
//! use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};
//!
//! let scene = demo_scene(128, 96);
//! let frame = mosaic_scene(&scene, &CaptureParams::default(), "doc").unwrap();
//! let pipeline = Pipeline::resolve("default").unwrap();
//! let out = graph::run(&pipeline, frame, &RunOptions::default()).unwrap();
//! assert_eq!(out.outputs.len(), 1);
//! println!("{}", out.timings.table());
//! ```

pub mod backend;
pub mod cli;
pub mod color;
pub mod error;
pub mod eval;
pub mod frame;
pub mod graph;
pub mod input;
pub mod memory;
pub mod nn;
pub mod noise;
pub mod output;
pub mod raw;
pub mod stages;
pub mod synth;
pub mod yaml;

pub use error::{Error, Result};
pub use frame::{Image, Mosaic, Value};
pub use graph::{Pipeline, RunOptions, Timings};
pub use raw::{CfaPattern, RawFrame, RawMeta};
