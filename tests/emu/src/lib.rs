//! Host emulation of the CUDA execution model, for testing rawgraph's
//! `kernels/*.cu` without a GPU (a dev-dependency only; nothing here ships).
//!
//! `build.rs` compiles the kernel files themselves, unchanged, as C++ with
//! the shim `cpp/cuda_emu.h` (threadIdx/blockIdx/blockDim/gridDim,
//! `__shared__`, `__syncthreads()` as a real barrier between fibers, fp16
//! conversions, a warp-collective MMA with the PTX fragment layout) and
//! the runtime `cpp/runtime.cpp` (scheduler, guarded buffers, fault
//! reporting). This crate is the launcher: [`Emu::launch_builder`] takes
//! the same argument list as cudarc's `launch_builder` in
//! `src/backend/cuda/` (buffers by reference, scalars by reference, in the
//! kernel's parameter order) and the same grid and block, and checks the
//! argument types against the kernel's C++ signature.
//!
//! What a launch catches, as an [`EmuError`] instead of a wrong result or a
//! crash: any read or write outside a buffer (guard pages on one side,
//! 0xFF canary bytes, checked after the launch, on the other: run the same
//! launch with both [`Guard`] sides to cover both ends exactly), an index
//! outside a fixed-size array such as a `__shared__` tile (compiled with
//! `-fsanitize=bounds`, trapping), a `__syncthreads()` not reached by the
//! whole block, a warp-collective MMA
//! not reached by the whole warp, any other fault in a kernel. Shared
//! memory starts as NaN in every block; [`Order::Reverse`] runs the threads
//! of a block in the opposite order, so comparing a forward and a reverse
//! run exposes results that depend on scheduling between barriers.
//!
//! One launch runs at a time in the process (the runtime holds a mutex);
//! blocks run one after another on the calling thread.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;

mod ffi {
    use super::*;
    extern "C" {
        pub fn rawgraph_emu_alloc(bytes: usize, guard_before: c_int, id: *mut c_int)
            -> *mut c_void;
        pub fn rawgraph_emu_free(data: *mut c_void);
        pub fn rawgraph_emu_signature(file: *const c_char, name: *const c_char) -> *const c_char;
        #[allow(clippy::too_many_arguments)]
        pub fn rawgraph_emu_launch(
            file: *const c_char,
            name: *const c_char,
            grid: *const u32,
            block: *const u32,
            sig: *const c_char,
            args: *mut *mut c_void,
            reverse: c_int,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
    }
}

/// Why an emulated launch failed (the message names the kernel, block,
/// thread and buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuError(pub String);

impl std::fmt::Display for EmuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CUDA emulator: {}", self.0)
    }
}

impl std::error::Error for EmuError {}

/// Which side of every buffer is flush against a guard page; the other
/// side is covered by canary bytes checked after each launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Data ends at a guard page: an overrun faults at once.
    After,
    /// Data starts at a guard page: an underrun faults at once.
    Before,
}

/// The order in which the scheduler runs a block's ready threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Linear thread index ascending (x fastest).
    Forward,
    /// Descending.
    Reverse,
}

/// One emulated device: the buffer placement and thread order of its
/// launches.
#[derive(Debug, Clone, Copy)]
pub struct Emu {
    pub guard: Guard,
    pub order: Order,
}

impl Emu {
    /// The two configurations every parity test runs: overruns fault and
    /// threads run forward; underruns fault and threads run in reverse.
    pub const BOTH: [Emu; 2] = [
        Emu {
            guard: Guard::After,
            order: Order::Forward,
        },
        Emu {
            guard: Guard::Before,
            order: Order::Reverse,
        },
    ];

    /// A zero-filled buffer of `n` elements (cudarc's `alloc_zeros`).
    pub fn zeros<T: DeviceRepr>(&self, n: usize) -> Result<DevBuf<T>, EmuError> {
        let bytes = n
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| EmuError(format!("a buffer of {n} elements overflows usize bytes")))?;
        let mut id = 0;
        // SAFETY: the runtime maps `bytes` (plus guard pages) and returns
        // the data pointer, aligned to the element size since `bytes` is a
        // multiple of it and the mapping is page-aligned, or null.
        let ptr = unsafe {
            ffi::rawgraph_emu_alloc(bytes, (self.guard == Guard::Before) as c_int, &mut id)
        };
        if ptr.is_null() {
            return Err(EmuError(format!("cannot map a buffer of {bytes} bytes")));
        }
        Ok(DevBuf {
            dptr: ptr as u64,
            len: n,
            id,
            _t: PhantomData,
        })
    }

    /// A buffer holding a copy of `data` (cudarc's `clone_htod`).
    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<DevBuf<T>, EmuError> {
        let mut b = self.zeros(data.len())?;
        b.as_mut_slice().copy_from_slice(data);
        Ok(b)
    }

    /// A launch of `name` from `kernels/<file>` (or the runtime's
    /// "emu_probes"); push the arguments in the kernel's order.
    pub fn launch_builder<'a>(&self, file: &str, name: &str) -> LaunchArgs<'a> {
        LaunchArgs {
            emu: *self,
            file: file.to_string(),
            name: name.to_string(),
            ptrs: Vec::new(),
            tokens: Vec::new(),
            _a: PhantomData,
        }
    }
}

/// The C++ parameter type of kernel `name` in `file`, space-separated
/// ("f32* i32 ..."), or `None` when there is no such kernel.
pub fn signature(file: &str, name: &str) -> Option<String> {
    let (f, n) = (CString::new(file).ok()?, CString::new(name).ok()?);
    // SAFETY: both strings are NUL-terminated; the runtime returns a static
    // string or null.
    let s = unsafe { ffi::rawgraph_emu_signature(f.as_ptr(), n.as_ptr()) };
    // SAFETY: non-null results point to a NUL-terminated static string.
    (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// Element types a device buffer can hold; `TOKEN` is the C++ pointee
/// (`h16` is `unsigned short`).
pub trait DeviceRepr: Copy + Default + 'static {
    const TOKEN: &'static str;
}

impl DeviceRepr for f32 {
    const TOKEN: &'static str = "f32";
}
impl DeviceRepr for u16 {
    const TOKEN: &'static str = "u16";
}
impl DeviceRepr for u32 {
    const TOKEN: &'static str = "u32";
}
impl DeviceRepr for i32 {
    const TOKEN: &'static str = "i32";
}

/// An emulated device buffer of `len` elements with guard pages; freed on
/// drop.
#[derive(Debug)]
pub struct DevBuf<T: DeviceRepr> {
    /// The "device pointer": the host address of element 0, passed to the
    /// kernel by reference like a `CUdeviceptr`.
    dptr: u64,
    len: usize,
    id: c_int,
    _t: PhantomData<T>,
}

impl<T: DeviceRepr> DevBuf<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's number in emulator messages ("buffer #3").
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The contents (cudarc's `clone_dtoh`).
    pub fn to_vec(&self) -> Vec<T> {
        self.as_slice().to_vec()
    }

    fn as_slice(&self) -> &[T] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `dptr` points to `len` initialised elements owned by this
        // buffer; no launch runs while `&self` is borrowed here (launches
        // borrow their buffers for the builder's lifetime).
        unsafe { std::slice::from_raw_parts(self.dptr as *const T, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as `as_slice`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.dptr as *mut T, self.len) }
    }
}

impl<T: DeviceRepr> Drop for DevBuf<T> {
    fn drop(&mut self) {
        // SAFETY: `dptr` came from rawgraph_emu_alloc and is freed once.
        unsafe { ffi::rawgraph_emu_free(self.dptr as *mut c_void) }
    }
}

/// A kernel argument: its C++ type token and a pointer to its value.
pub trait KernelArg {
    fn token(&self) -> String;
    fn value_ptr(&self) -> *mut c_void;
}

impl<T: DeviceRepr> KernelArg for DevBuf<T> {
    fn token(&self) -> String {
        format!("{}*", T::TOKEN)
    }
    fn value_ptr(&self) -> *mut c_void {
        &self.dptr as *const u64 as *mut c_void
    }
}

macro_rules! scalar_arg {
    ($t:ty, $tok:expr) => {
        impl KernelArg for $t {
            fn token(&self) -> String {
                $tok.to_string()
            }
            fn value_ptr(&self) -> *mut c_void {
                self as *const $t as *mut c_void
            }
        }
    };
}
scalar_arg!(i32, "i32");
scalar_arg!(f32, "f32");
scalar_arg!(i64, "i64");
scalar_arg!(u32, "u32");

/// Grid and block of a launch (cudarc's `LaunchConfig`; dynamic shared
/// memory is not used by any kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid_dim: (u32, u32, u32),
    pub block_dim: (u32, u32, u32),
    pub shared_mem_bytes: u32,
}

/// The argument list of one launch, as cudarc's `LaunchArgs`.
pub struct LaunchArgs<'a> {
    emu: Emu,
    file: String,
    name: String,
    ptrs: Vec<*mut c_void>,
    tokens: Vec<String>,
    _a: PhantomData<&'a ()>,
}

impl<'a> LaunchArgs<'a> {
    /// Pushes the next argument (a buffer or a scalar, by reference).
    pub fn arg<A: KernelArg + ?Sized>(&mut self, a: &'a A) -> &mut Self {
        self.tokens.push(a.token());
        self.ptrs.push(a.value_ptr());
        self
    }

    /// Runs the kernel on every block of `cfg`, returning when all are done.
    pub fn launch(&mut self, cfg: LaunchConfig) -> Result<(), EmuError> {
        if cfg.shared_mem_bytes != 0 {
            return Err(EmuError("dynamic shared memory is not emulated".into()));
        }
        let file = CString::new(self.file.as_str()).map_err(|e| EmuError(e.to_string()))?;
        let name = CString::new(self.name.as_str()).map_err(|e| EmuError(e.to_string()))?;
        let sig = CString::new(self.tokens.join(" ")).map_err(|e| EmuError(e.to_string()))?;
        let grid = [cfg.grid_dim.0, cfg.grid_dim.1, cfg.grid_dim.2];
        let block = [cfg.block_dim.0, cfg.block_dim.1, cfg.block_dim.2];
        let mut err = vec![0 as c_char; 2048];
        // SAFETY: every pointer in `ptrs` points to a value borrowed for
        // 'a (a buffer's device pointer or a scalar) of the type its token
        // names; the runtime checks the tokens against the kernel's
        // parameter types before reading them. Buffers stay mapped while
        // borrowed.
        let rc = unsafe {
            ffi::rawgraph_emu_launch(
                file.as_ptr(),
                name.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                sig.as_ptr(),
                self.ptrs.as_mut_ptr(),
                (self.emu.order == Order::Reverse) as c_int,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            // SAFETY: the runtime wrote a NUL-terminated message into `err`.
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
            Err(EmuError(msg.to_string_lossy().into_owned()))
        }
    }
}
