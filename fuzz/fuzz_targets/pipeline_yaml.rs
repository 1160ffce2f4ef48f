//! Arbitrary text through pipeline parsing, validation and graph build.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawgraph_fuzz::assert_one_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = rawgraph::Pipeline::from_yaml(text, "fuzz.yaml") {
        assert_one_line(&e);
    }
});
