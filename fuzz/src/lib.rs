//! Shared pieces of the rawgraph fuzz targets.
//!
//! Without a sanitizer runtime libFuzzer cannot see single huge
//! allocations (`-malloc_limit_mb` needs the sanitizer malloc hooks), and a
//! zero-filled `Vec` that is never touched does not raise the RSS either. So
//! every target runs under [`Capped`], which aborts -- a crash libFuzzer
//! records -- on any single allocation over [`ALLOC_CAP`]. With the decode
//! limit at [`MAX_MP`] megapixels no legitimate buffer comes close.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Megapixel limit the targets decode with.
pub const MAX_MP: f64 = 16.0;

/// Largest single allocation a target may make (bytes).
pub const ALLOC_CAP: usize = 512 << 20;

/// The system allocator with a per-allocation size cap.
pub struct Capped;

#[cold]
fn too_big(size: usize) -> ! {
    // Stderr is unbuffered: this does not allocate.
    let _ = writeln!(
        std::io::stderr(),
        "==fuzz== allocation of {size} bytes exceeds the cap of {ALLOC_CAP} bytes"
    );
    std::process::abort()
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            too_big(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            too_big(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP {
            too_big(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Capped = Capped;

/// Checks that an error renders as one line; rawgraph promises that.
pub fn assert_one_line(e: &rawgraph::Error) {
    let s = e.to_string();
    assert!(
        !s.is_empty() && !s.contains('\n'),
        "multi-line error: {s:?}"
    );
}

/// A minimal little-endian TIFF with one IFD: a `w x h` RGGB Bayer image,
/// white level 16383, in one tile holding `vc5` with DNG Compression 9
/// (VC-5, GoPro GPR), as the gpr_vc5 target feeds `raw::gpr::transcode`.
pub fn vc5_tiff(vc5: &[u8], w: u32, h: u32) -> Vec<u8> {
    let entries: [(u16, u16, u32, u32); 13] = [
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, 1, 16),
        (259, 3, 1, 9),
        (262, 3, 1, 32803),
        (277, 3, 1, 1),
        (322, 4, 1, w),
        (323, 4, 1, h),
        (324, 4, 1, 0), // patched below
        (325, 4, 1, vc5.len() as u32),
        (33421, 3, 2, 2 | (2 << 16)),
        (33422, 1, 4, u32::from_le_bytes([0, 1, 1, 2])),
        (50717, 3, 1, 16383),
    ];
    let data_at = (8 + 2 + 12 * entries.len() + 4) as u32;
    let mut b = b"II*\0".to_vec();
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (t, typ, n, v) in entries {
        let v = if t == 324 { data_at } else { v };
        b.extend_from_slice(&t.to_le_bytes());
        b.extend_from_slice(&typ.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(vc5);
    b
}
