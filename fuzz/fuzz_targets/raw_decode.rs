//! Arbitrary bytes through the raw decoder (rawler behind our guard).
//! Any panic that escapes, abort, hang or huge allocation is a bug.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rawgraph_fuzz::{assert_one_line, MAX_MP};

fuzz_target!(|data: &[u8]| {
    match rawgraph::raw::decode::decode_bytes(data, Path::new("fuzz.dng"), MAX_MP) {
        Ok(frame) => {
            assert!(frame.meta.width as f64 * frame.meta.height as f64 <= MAX_MP * 1e6);
            frame.validate().expect("decoder returned an invalid frame");
        }
        Err(e) => assert_one_line(&e),
    }
});
