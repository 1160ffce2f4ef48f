//! Python bindings of rawgraph (`import rawgraph`), built with PyO3 and
//! maturin as an abi3 extension (`rawgraph._rawgraph`) for CPython >= 3.10.
//!
//! The API follows rawpy where it can: [`raw::imread`] returns a
//! [`raw::RawImage`] whose arrays are owned copies (valid after the file
//! is closed), [`raw::from_bayer`] wraps a mosaic already in memory, and
//! [`pipeline::Pipeline`] compiles a YAML stage graph once and runs it on
//! any number of frames. Every decode, run and write releases the GIL
//! (`Python::detach`) and runs on a rayon pool owned by this module or by
//! the pipeline, rebuilt when the process id changes, so a forked child
//! never waits on the parent's worker threads (rayon's global pool hangs
//! after `fork`).

mod convert;
mod demosaic;
mod errors;
mod pipeline;
mod pool;
mod raw;

use pyo3::prelude::*;

/// Frame-sized Rust blocks on transparent huge pages (see
/// `rawgraph::memory`).
#[global_allocator]
static ALLOC: rawgraph::memory::FrameAllocator = rawgraph::memory::FrameAllocator;

#[pymodule]
fn _rawgraph(m: &Bound<'_, PyModule>) -> PyResult<()> {
    rawgraph::memory::keep_freed_frames();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "DEFAULT_MAX_MEGAPIXELS",
        rawgraph::raw::DEFAULT_MAX_MEGAPIXELS,
    )?;
    m.add_class::<raw::RawImage>()?;
    m.add_class::<pipeline::Pipeline>()?;
    m.add_class::<pipeline::RunResult>()?;
    m.add_function(wrap_pyfunction!(raw::imread, m)?)?;
    m.add_function(wrap_pyfunction!(raw::from_bayer, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::imwrite, m)?)?;
    m.add_function(wrap_pyfunction!(demosaic::demosaic, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::ops, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::pipelines, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::_pipeline_from_state, m)?)?;
    Ok(())
}
