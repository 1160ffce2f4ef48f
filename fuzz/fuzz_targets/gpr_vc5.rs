//! Arbitrary VC-5 bitstreams (GoPro GPR tiles) through the GPR adapter:
//! byte 0 picks the image size (64..256 px square), the rest is the tile's
//! bitstream, wrapped in a minimal one-tile TIFF with DNG Compression 9 and
//! decoded by `raw::gpr::transcode` (flashraw-codecs' VC-5 decoder); a
//! successful transcode goes on through `decode_bytes`. Any panic that
//! escapes, abort, hang or huge allocation is a bug; errors are one line.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rawgraph_fuzz::{assert_one_line, vc5_tiff, MAX_MP};

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let side = 64 * (1 + (size as u32 % 4));
    let tiff = vc5_tiff(stream, side, side);
    match rawgraph::raw::gpr::transcode(&tiff, MAX_MP) {
        Ok(Some(b)) => {
            assert!(b.len() >= tiff.len() + (side * side * 2) as usize);
            match rawgraph::raw::decode::decode_bytes(&b, Path::new("fuzz.gpr"), MAX_MP) {
                Ok(frame) => frame.validate().expect("decoder returned an invalid frame"),
                Err(e) => assert_one_line(&e),
            }
        }
        Ok(None) => panic!("a Compression 9 TIFF was not taken for a GPR"),
        Err(e) => assert!(!e.contains('\n'), "multi-line error: {e:?}"),
    }
});
