//! Process-wide allocator setting for frame-sized buffers.
//!
//! Every stage allocates its output frame (12 MP RGB f32 = 144 MB) and
//! frees its input. glibc serves blocks above its mmap threshold (128 KiB,
//! raised dynamically to at most 32 MiB) with fresh `mmap`s and returns them
//! to the kernel on `free`, so each frame's memory is page-faulted in (and
//! zeroed by the kernel) again on every stage of every run: on this 2-core
//! machine that costs as much time as the arithmetic (issue 19 measured
//! 46,876 faults per 12 MP frame through `fast`). [`keep_freed_frames`]
//! makes glibc serve such blocks from the heap and keep freed memory for the
//! next stage or frame: `bench --synthetic 4000x3000 -p fast` ran 1.7-1.9x
//! faster side by side. Rayon's worker threads would otherwise allocate
//! from thread arenas, whose 64 MiB heaps cannot hold a frame, so all
//! threads share the main arena (the learned demosaic's per-tile
//! activations ran ~5 % faster, kernel page clearing fell from 21 % to 7 %
//! of its profile). The cost is that the process keeps its peak heap until
//! it exits (a batch of frames reuses it).
//!
//! Fresh memory still costs one fault per 4 KiB page the first time (the
//! decoded file, the first frame of a process): [`FrameAllocator`] backs
//! blocks of 4 MiB and more with transparent huge pages, 512x fewer faults
//! (a 12 MP `process` run: 50,700 faults -> ~10,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Environment variable that turns [`keep_freed_frames`] off when set to `0`.
pub const ENV_OPT_OUT: &str = "RAWGRAPH_KEEP_FREED_MEMORY";

/// Whether [`FrameAllocator`] asks for huge pages (set by
/// [`keep_freed_frames`]).
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// Raises glibc's mmap and trim thresholds so freed frame buffers stay in
/// the process for reuse (see the module docs). Called by the CLI and the
/// Python module at start; a no-op on other C libraries and when
/// `RAWGRAPH_KEEP_FREED_MEMORY=0`. Returns whether the setting was applied.
pub fn keep_freed_frames() -> bool {
    if std::env::var(ENV_OPT_OUT).is_ok_and(|v| v == "0") {
        return false;
    }
    let on = apply();
    HUGE_PAGES.store(on, Ordering::Relaxed);
    on
}

/// Transparent-huge-page size on x86-64 and most aarch64 kernels, bytes.
const HUGE_PAGE: usize = 2 << 20;
/// Blocks from this size up (bytes) are advised: frames, planes, file
/// contents and decoded pixels, never the small allocations.
const MIN_ADVISED: usize = 4 << 20;

/// The system allocator, with frame-sized blocks backed by transparent huge
/// pages once [`keep_freed_frames`] has run.
///
/// A 12 MP f32 mosaic (48 MB) first touched in 4 KiB pages costs 12,000
/// page faults; `madvise(MADV_HUGEPAGE)` on the block's whole 2 MiB pages
/// makes that 24 faults (the kernel's `enabled=madvise` default honours the
/// advice; `never` ignores it). Installed as the `#[global_allocator]` of
/// the CLI and of the Python module; blocks under 4 MiB, and every block
/// before [`keep_freed_frames`] or after `RAWGRAPH_KEEP_FREED_MEMORY=0`,
/// are plain [`System`] blocks.
pub struct FrameAllocator;

impl FrameAllocator {
    /// Advises the whole huge pages inside `[p, p + size)`.
    fn advise(p: *mut u8, size: usize) {
        if size < MIN_ADVISED || p.is_null() || !HUGE_PAGES.load(Ordering::Relaxed) {
            return;
        }
        let start = (p as usize).next_multiple_of(HUGE_PAGE);
        let end = (p as usize + size) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            advise_huge(start, end - start);
        }
    }
}

#[cfg(target_os = "linux")]
fn advise_huge(start: usize, len: usize) {
    // SAFETY: the range lies inside a block this allocator just handed
    // out (page-aligned at both ends); MADV_HUGEPAGE changes only how its
    // future page faults are served, never its contents. A kernel without
    // THP returns EINVAL, which is harmless.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_start: usize, _len: usize) {}

// SAFETY: every block comes from `System` with the caller's layout and goes
// back to it unchanged; `advise` only adds a page-fault hint.
unsafe impl GlobalAlloc for FrameAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        Self::advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < MIN_ADVISED || !HUGE_PAGES.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // Advised before the first touch, then zeroed: calloc would zero
        // (or fault in) the block in 4 KiB pages first.
        // SAFETY: forwarded with the caller's layout; the block is
        // `layout.size()` bytes long when not null.
        unsafe {
            let p = System.alloc(layout);
            Self::advise(p, layout.size());
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, layout.size());
            }
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with this layout.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        Self::advise(p, new_size);
        p
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // Blocks up to 1 GiB come from the heap; the heap top is trimmed only
    // above 2 GiB of free memory; every thread allocates from the main
    // (sbrk) arena, because a thread arena's heaps are at most 64 MiB and
    // serve larger blocks with fresh mmaps whatever the threshold.
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before any frame is allocated and takes plain integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
            && libc::mallopt(libc::M_ARENA_MAX, 1) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

/// Hands the pages of freed heap memory back to the kernel (glibc's
/// `malloc_trim`, which releases every free whole page, not only the heap
/// top). For transient buffers that the next allocations cannot reuse
/// because they are smaller: a decoded file's bytes and integer pixels
/// (48 MB at 12 MP) would otherwise stay resident beside the frame and
/// the pipeline's output. A no-op on other C libraries.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; no live allocation
    // moves or changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Initialises `s` to zeros (`T::default()`: 0.0, 0) and returns it as
/// plain values: the way to use part of a frame buffer taken from
/// `Vec::spare_capacity_mut` while it is in cache, instead of zeroing the
/// whole frame first in one serial pass (a 12 MP RGB f32 frame is 144 MB).
pub fn zero_in_place<T: Copy + Default>(s: &mut [std::mem::MaybeUninit<T>]) -> &mut [T] {
    s.fill(std::mem::MaybeUninit::new(T::default()));
    // SAFETY: every element was initialised just above, and
    // `MaybeUninit<T>` has the layout of `T`.
    unsafe { &mut *(s as *mut [std::mem::MaybeUninit<T>] as *mut [T]) }
}

/// A buffer of `n` values made in parallel without zeroing it first:
/// `make(i, chunk)` gets chunk `i` (`chunk` values, the last may be
/// shorter) uninitialised and returns it initialised (for instance from
/// [`crate::frame::SensorSamples::copy_f32_uninit`]), then works on it
/// while it is in cache. A `make` that returns other memory than its
/// chunk leaves the chunk zeroed.
pub fn par_made<T: Copy + Default + Send + Sync>(
    n: usize,
    chunk: usize,
    make: impl for<'c> Fn(usize, &'c mut [std::mem::MaybeUninit<T>]) -> &'c mut [T] + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    let mut out: Vec<T> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| {
            let (at, len) = (c.as_ptr() as usize, c.len());
            let made = make(i, &mut *c);
            if made.as_ptr() as usize != at || made.len() != len {
                zero_in_place(c);
            }
        });
    // SAFETY: the chunks cover all `n` elements, and each was either
    // returned by `make` as initialised values (the same address and
    // length) or initialised by `zero_in_place`.
    unsafe { out.set_len(n) };
    out
}

/// A buffer of `n` values filled in parallel: `fill(i, chunk)` gets chunk
/// `i` (`chunk` values, the last may be shorter), zeroed just before, so
/// the buffer is never zeroed in one serial pass and its fresh pages are
/// first touched by the threads that fill them.
pub fn par_filled<T: Copy + Default + Send + Sync>(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    let mut out: Vec<T> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| fill(i, zero_in_place(c)));
    // SAFETY: the chunks cover all `n` elements and `zero_in_place`
    // initialised each of them.
    unsafe { out.set_len(n) };
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn par_filled_gives_every_chunk_zeroed_then_filled() {
        let v: Vec<u16> = super::par_filled(10, 3, |i, c| {
            assert!(c.iter().all(|&x| x == 0));
            if i != 1 {
                c.iter_mut().for_each(|x| *x = i as u16 + 1);
            }
        });
        assert_eq!(v, [1, 1, 1, 0, 0, 0, 3, 3, 3, 4]);
        let empty: Vec<u8> = super::par_filled(0, 0, |_, _| {});
        assert!(empty.is_empty());
    }

    /// Each chunk is what `make` made of it; a `make` that hands back
    /// other memory (here: a part of its chunk) leaves its chunk zeroed.
    #[test]
    fn par_made_keeps_made_chunks_and_zeroes_the_others() {
        let v: Vec<u16> = super::par_made(10, 3, |i, c| {
            if i == 1 {
                return super::zero_in_place(&mut c[..1]);
            }
            let made = super::zero_in_place(c);
            made.fill(i as u16 + 1);
            made
        });
        assert_eq!(v, [1, 1, 1, 0, 0, 0, 3, 3, 3, 4]);
        let empty: Vec<u8> = super::par_made(0, 0, |_, c| super::zero_in_place(c));
        assert!(empty.is_empty());
    }

    #[test]
    fn zero_in_place_initialises_spare_capacity() {
        let mut v: Vec<f32> = vec![7.0; 3];
        v.reserve(10);
        let spare = &mut v.spare_capacity_mut()[..10];
        let z: &mut [f32] = super::zero_in_place(spare);
        z[4] = 2.5;
        // SAFETY: the 10 elements after the 3 were initialised above.
        unsafe { v.set_len(13) };
        assert_eq!(&v[..4], &[7.0, 7.0, 7.0, 0.0]);
        assert_eq!(v[7], 2.5);
        assert!(v[8..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn frame_allocator_zeroes_and_keeps_contents() {
        use std::alloc::{GlobalAlloc, Layout};
        super::HUGE_PAGES.store(true, std::sync::atomic::Ordering::Relaxed);
        let a = super::FrameAllocator;
        let layout = Layout::from_size_align(9 << 20, 64).unwrap();
        // SAFETY: the block is used within its layout and freed once.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            let s = std::slice::from_raw_parts_mut(p, layout.size());
            assert!(s.iter().all(|&b| b == 0));
            s[12345] = 7;
            let q = a.realloc(p, layout, 20 << 20);
            assert!(!q.is_null());
            assert_eq!(*q.add(12345), 7);
            a.dealloc(q, Layout::from_size_align(20 << 20, 64).unwrap());
        }
    }

    /// The advice reaches the kernel: the block's mapping carries the
    /// `hg` (MADV_HUGEPAGE) flag in /proc/self/smaps.
    #[test]
    #[cfg(target_os = "linux")]
    fn frame_allocator_advises_huge_pages() {
        use std::alloc::{GlobalAlloc, Layout};
        super::HUGE_PAGES.store(true, std::sync::atomic::Ordering::Relaxed);
        let a = super::FrameAllocator;
        let layout = Layout::from_size_align(16 << 20, 64).unwrap();
        // SAFETY: allocated and freed with the same layout.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        let probe = (p as usize).next_multiple_of(super::HUGE_PAGE);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut flags = None;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = lo <= probe && probe < hi;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(f) = line.strip_prefix("VmFlags:") {
                    flags = Some(f.to_string());
                }
            }
        }
        // SAFETY: same layout as the allocation.
        unsafe { a.dealloc(p, layout) };
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        match (flags, thp) {
            (Some(f), Ok(_)) => assert!(f.split_whitespace().any(|w| w == "hg"), "{f}"),
            (f, t) => eprintln!("SKIPPED: no smaps entry or no THP ({:?}, {})", f, t.is_ok()),
        }
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_thresholds() {
        assert!(super::apply());
        // Allocation and reuse still work with the thresholds raised.
        let a = vec![1u8; 64 << 20];
        drop(a);
        let b = vec![2u8; 64 << 20];
        assert!(b.iter().all(|&v| v == 2));
    }
}
