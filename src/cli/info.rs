//! `rawgraph info`: decoded metadata of a raw file or dump.

use std::path::PathBuf;

use clap::Args;

use super::InputArgs;
use crate::error::Result;
use crate::input;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Raw file or headerless dump.
    pub input: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub inputs: InputArgs,
}

pub fn run(a: InfoArgs) -> Result<i32> {
    let frame = input::open(&a.input, a.inputs.sidecar.as_deref(), &a.inputs.limits())?;
    let m = &frame.meta;
    if a.json {
        let s = serde_json::to_string_pretty(&crate::output::Versioned::new(m))
            .map_err(|e| crate::Error::invalid(e.to_string()))?;
        println!("{s}");
        return Ok(0);
    }
    println!("file:          {}", m.source);
    println!("camera:        {} {}", m.make, m.model);
    println!(
        "size:          {} x {} ({:.2} MP)",
        m.width,
        m.height,
        (m.width * m.height) as f64 / 1e6
    );
    println!("layout:        {:?}", m.layout);
    println!("bits:          {}", m.bits);
    println!(
        "black level:   {:?} (repeat {}x{})",
        m.black.values, m.black.repeat_width, m.black.repeat_height
    );
    println!("black source:  {}", or_dash(&m.provenance.black));
    println!("white level:   {:?}", m.white);
    println!("white source:  {}", or_dash(&m.provenance.white));
    println!("WB gains:      {:?}", m.wb_gains);
    println!(
        "WB source:     {:?}: {}",
        m.provenance.wb,
        or_dash(&m.provenance.wb_why)
    );
    for cm in &m.color_matrices {
        println!("ColorMatrix ({:?}): {:?}", cm.illuminant, cm.xyz_to_cam);
    }
    if let Some(c) = m.cam_to_srgb {
        println!("cam->sRGB:     {c:?}");
    }
    println!("crop:          {:?}", m.crop);
    println!("pixel aspect:  {}", m.pixel_aspect);
    if !m.dng_opcodes.is_empty() {
        let ops: Vec<String> = m
            .dng_opcodes
            .iter()
            .map(|o| {
                let what = match (&o.op, o.applied) {
                    (_, true) => "applied".to_string(),
                    (Some(op), false) => format!("applied by {op} when the pipeline has it"),
                    (None, false) => "not applied".to_string(),
                };
                format!("list {}: {} ({what})", o.list, o.name)
            })
            .collect();
        println!("DNG opcodes:   {}", ops.join(", "));
    }
    println!("orientation:   {:?}", m.orientation);
    println!("noise profile: {:?}", m.noise_profile);
    println!("ISO:           {}", opt(m.iso));
    println!("exposure:      {} s", opt(m.exposure_time));
    let c = &m.capture;
    println!("aperture:      f/{}", opt(c.f_number));
    println!("focal length:  {} mm", opt(c.focal_length_mm));
    println!("lens:          {}", c.lens.as_deref().unwrap_or("-"));
    println!("taken:         {}", c.timestamp.as_deref().unwrap_or("-"));
    Ok(0)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}
