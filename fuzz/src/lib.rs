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
