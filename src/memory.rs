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

/// Environment variable that turns [`keep_freed_frames`] off when set to `0`.
pub const ENV_OPT_OUT: &str = "RAWGRAPH_KEEP_FREED_MEMORY";

/// Raises glibc's mmap and trim thresholds so freed frame buffers stay in
/// the process for reuse (see the module docs). Called by the CLI and the
/// Python module at start; a no-op on other C libraries and when
/// `RAWGRAPH_KEEP_FREED_MEMORY=0`. Returns whether the setting was applied.
pub fn keep_freed_frames() -> bool {
    if std::env::var(ENV_OPT_OUT).is_ok_and(|v| v == "0") {
        return false;
    }
    apply()
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

/// Initialises `s` to zeros and returns it as plain values: the way to
/// use part of a frame buffer taken from `Vec::spare_capacity_mut` while it
/// is in cache, instead of zeroing the whole frame first in one serial
/// pass (a 12 MP RGB f32 frame is 144 MB).
pub fn zero_in_place(s: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    s.fill(std::mem::MaybeUninit::new(0.0));
    // SAFETY: every element was initialised just above, and
    // `MaybeUninit<f32>` has the layout of `f32`.
    unsafe { &mut *(s as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_in_place_initialises_spare_capacity() {
        let mut v: Vec<f32> = vec![7.0; 3];
        v.reserve(10);
        let spare = &mut v.spare_capacity_mut()[..10];
        let z = super::zero_in_place(spare);
        z[4] = 2.5;
        // SAFETY: the 10 elements after the 3 were initialised above.
        unsafe { v.set_len(13) };
        assert_eq!(&v[..4], &[7.0, 7.0, 7.0, 0.0]);
        assert_eq!(v[7], 2.5);
        assert!(v[8..].iter().all(|&x| x == 0.0));
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
