//! Sidecar YAML + headerless dump decode.
//!
//! Input: byte 0 picks the mode.
//! - even: sidecar YAML up to the first NUL byte, the dump after it
//!   (`Sidecar::parse`, then `decode_dump_bytes`);
//! - odd: sidecar fields drawn from the bytes (sizes, stride and offset
//!   anywhere in `usize`), written as JSON (a YAML subset) so they pass
//!   through the same validation, then the dump.
#![no_main]

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rawgraph::raw::sidecar::{decode_dump_bytes, unpack, Sidecar};
use rawgraph_fuzz::{assert_one_line, MAX_MP};

#[derive(Debug, Arbitrary)]
struct Fields {
    width: usize,
    height: usize,
    packing: u8,
    stride: Option<usize>,
    offset: usize,
    cfa: u8,
    black: Vec<f32>,
    white: f32,
    bits: Option<u32>,
}

fn run(text: &str, dump: &[u8]) {
    let path = Path::new("fuzz.raw");
    let sc = match Sidecar::parse(text, Path::new("fuzz.raw.yaml")) {
        Ok(sc) => sc,
        Err(e) => return assert_one_line(&e),
    };
    match decode_dump_bytes(dump, path, &sc, MAX_MP) {
        Ok(frame) => frame.validate().expect("invalid frame from a dump"),
        Err(e) => assert_one_line(&e),
    }
    // unpack is public too: it must refuse a wrong size without panicking
    // even when the geometry was never checked against a limit.
    if let Ok(v) = unpack(dump, &sc) {
        assert_eq!(v.len(), sc.width * sc.height);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let Ok(text) = std::str::from_utf8(&rest[..cut]) else {
            return;
        };
        let dump = rest.get(cut + 1..).unwrap_or(&[]);
        run(text, dump);
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(f) = Fields::arbitrary(&mut u) else {
            return;
        };
        let dump = u.take_rest();
        let packing = ["u8", "u16le", "u16be", "raw10", "raw12", "png16"][f.packing as usize % 6];
        let cfa = ["RGGB", "BGGR", "GRBG", "GBRG", "RGBG"][f.cfa as usize % 5];
        let num = |v: f32| {
            if v.is_finite() {
                format!("{v:?}")
            } else {
                "0".into()
            }
        };
        let black = match f.black.len() {
            0 => "0".to_string(),
            1..=3 => num(f.black[0]),
            _ => format!(
                "[{}]",
                f.black[..4]
                    .iter()
                    .map(|&v| num(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut text = format!(
            "{{\"width\": {}, \"height\": {}, \"packing\": \"{packing}\", \"offset\": {}, \
             \"cfa\": \"{cfa}\", \"black_level\": {black}, \"white_level\": {}",
            f.width,
            f.height,
            f.offset,
            num(f.white)
        );
        if let Some(s) = f.stride {
            text.push_str(&format!(", \"stride\": {s}"));
        }
        if let Some(b) = f.bits {
            text.push_str(&format!(", \"bits\": {b}"));
        }
        text.push('}');
        run(&text, dump);
    }
});
