//! DNG writer round trip: arbitrary metadata and samples -> `encode_dng`
//! -> `decode_bytes`. When the writer accepts a frame, reading the file
//! back must succeed and return `dng_representable(meta)` and the samples
//! (rounded, clamped to 16 bits) exactly.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rawgraph::raw::decode::decode_bytes;
use rawgraph::raw::dng_write::{dng_representable, encode_dng, DngOptions, DngTiling};
use rawgraph::raw::{
    BlackLevel, CfaPattern, ColorMatrix, Illuminant, NoiseProfile, Orientation, RawFrame, RawMeta,
    Rect,
};
use rawgraph_fuzz::{assert_one_line, MAX_MP};

#[derive(Debug, Arbitrary)]
struct Input {
    width: u8,
    height: u8,
    cfa: u8,
    black_dim: (u8, u8),
    black: Vec<f32>,
    white: [f32; 3],
    wb: Option<[f32; 3]>,
    matrices: Vec<(u16, [f32; 9])>,
    cam_to_srgb: Option<[f32; 9]>,
    crop: Option<(u8, u8, u8, u8)>,
    orientation: u8,
    noise: Option<[f64; 6]>,
    make: String,
    model: String,
    iso: Option<u32>,
    exposure: Option<f32>,
    tiles: Option<u8>,
    rows_per_strip: u8,
    samples: Vec<u16>,
    sample_scale: f32,
}

fn m3(v: [f32; 9]) -> [[f32; 3]; 3] {
    [[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]]
}

fuzz_target!(|inp: Input| {
    let (w, h) = (inp.width as usize + 2, inp.height as usize + 2);
    let cfa = CfaPattern::ALL[inp.cfa as usize % 4];
    let mut meta = RawMeta::bayer("fuzz.dng", w, h, cfa);
    let (bw, bh) = (
        inp.black_dim.0 as usize % 4 + 1,
        inp.black_dim.1 as usize % 4 + 1,
    );
    meta.black = if inp.black.len() >= bw * bh {
        BlackLevel {
            repeat_width: bw,
            repeat_height: bh,
            values: inp.black[..bw * bh].to_vec(),
        }
    } else {
        BlackLevel::uniform(inp.black.first().copied().unwrap_or(0.0))
    };
    meta.white = inp.white;
    meta.wb_gains = inp.wb;
    meta.color_matrices = inp
        .matrices
        .iter()
        .take(3)
        .map(|(ill, m)| ColorMatrix {
            illuminant: Illuminant::from_exif(*ill),
            xyz_to_cam: m3(*m),
        })
        .collect();
    meta.cam_to_srgb = inp.cam_to_srgb.map(m3);
    meta.crop = inp.crop.map(|(x, y, cw, ch)| Rect {
        x: x as usize,
        y: y as usize,
        width: cw as usize,
        height: ch as usize,
    });
    meta.orientation = Orientation::from_exif(inp.orientation as u16);
    meta.noise_profile = inp.noise.map(|v| NoiseProfile {
        a: [v[0], v[2], v[4]],
        b: [v[1], v[3], v[5]],
    });
    meta.make = inp.make;
    meta.model = inp.model;
    meta.iso = inp.iso;
    meta.exposure_time = inp.exposure;
    let data: Vec<f32> = (0..w * h)
        .map(|i| {
            let s = inp
                .samples
                .get(i % inp.samples.len().max(1))
                .copied()
                .unwrap_or(0);
            s as f32 * inp.sample_scale
        })
        .collect();
    let frame = RawFrame { meta, data };
    let opts = DngOptions {
        tiling: match inp.tiles {
            Some(t) => DngTiling::Tiles {
                size: (t as u32 % 4 + 1) * 16,
            },
            None => DngTiling::Strips {
                rows_per_strip: inp.rows_per_strip as u32,
            },
        },
        ..Default::default()
    };
    let bytes = match encode_dng(&frame, &opts) {
        Ok(b) => b,
        Err(e) => return assert_one_line(&e),
    };
    let expect =
        dng_representable(&frame.meta).expect("writer accepted what representable refuses");
    let back = decode_bytes(&bytes, Path::new("fuzz.dng"), MAX_MP)
        .unwrap_or_else(|e| panic!("cannot read back our own DNG: {e}"));
    let mut expect = expect;
    expect.source = back.meta.source.clone();
    assert_eq!(back.meta, expect, "metadata differs after the round trip");
    let samples: Vec<f32> = frame
        .data
        .iter()
        .map(|v| v.round().clamp(0.0, 65535.0) as u16 as f32)
        .collect();
    assert!(back.data == samples, "samples differ after the round trip");
});
