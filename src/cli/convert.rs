//! `rawgraph convert`: a headerless sensor dump (with its sidecar) or any
//! raw file rawgraph reads -> DNG (see [`crate::raw::dng_write`]).

use std::path::PathBuf;

use clap::Args;

use super::InputArgs;
use crate::error::{Error, Result};
use crate::input;
use crate::raw::dng_write::{write_dng, DngOptions};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The raw file or sensor dump.
    pub input: PathBuf,
    /// Output DNG file (written atomically; never the input).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Write the DNG in square tiles of this size (multiple of 16)
    /// instead of strips (rawler reads them; dcraw 9.28 and LibRaw 0.20
    /// do not).
    #[arg(long)]
    pub tiles: Option<u32>,
    /// Compress the pixels with lossless JPEG, as cameras and DNG
    /// converters do (in 256-px tiles unless --tiles is given; read by
    /// rawler, LibRaw and dcraw).
    #[arg(long)]
    pub lossless: bool,
    #[command(flatten)]
    pub inputs_opts: InputArgs,
}

pub fn run(a: ConvertArgs) -> Result<i32> {
    let ext = a
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext != "dng" {
        return Err(Error::invalid(format!(
            "{}: output must be a .dng file",
            a.output.display()
        )));
    }
    if let (Ok(i), Ok(o)) = (a.input.canonicalize(), a.output.canonicalize()) {
        if i == o {
            return Err(Error::invalid(format!(
                "{}: output path is the input file; refusing to overwrite an input",
                a.output.display()
            )));
        }
    }
    let frame = input::open(
        &a.input,
        a.inputs_opts.sidecar.as_deref(),
        &a.inputs_opts.limits(),
    )?;
    let opts = DngOptions::from_cli(a.tiles, a.lossless);
    write_dng(&frame, &a.output, &opts)?;
    let m = &frame.meta;
    println!(
        "{} -> {} ({}x{}, {}, black {}, white {})",
        a.input.display(),
        a.output.display(),
        m.width,
        m.height,
        m.cfa().map(|c| c.name()).unwrap_or("?"),
        m.black.mean(),
        m.white[1]
    );
    Ok(0)
}
