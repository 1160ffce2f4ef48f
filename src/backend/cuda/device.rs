//! The CUDA device: one context and one stream per process, the loaded
//! kernel modules, device buffers, timed copies and CUDA-event timers.
//!
//! Creation is guarded: the driver and NVRTC libraries are looked for
//! first (cudarc panics when they are missing), and every call that could
//! still panic runs under [`crate::raw::guard::guarded`], so a machine
//! without CUDA gets a typed "CUDA not available" error, never a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr,
    ValidAsZeroBits,
};

use super::kernels;
use crate::backend::{record_device_times, DeviceTimes};
use crate::error::{Error, Result};

/// The process-wide CUDA device.
#[derive(Debug)]
pub struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// e.g. "sm_90".
    arch: String,
    name: String,
    /// Loaded modules by kernel file name.
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// Loaded functions by entry name.
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

/// Wraps a driver error as a stage-level error.
pub(crate) fn drv(e: cudarc::driver::DriverError) -> Error {
    Error::invalid(format!("CUDA: {e}"))
}

fn create() -> std::result::Result<Device, String> {
    // SAFETY: `is_culib_present` only tries to dlopen the candidate library
    // names; it runs no driver code.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("the NVIDIA driver library (libcuda) was not found".into());
    }
    kernels::nvrtc_available()?;
    let made = crate::raw::guard::guarded(|| -> std::result::Result<Device, String> {
        let n = CudaContext::device_count().map_err(|e| format!("no CUDA device ({e})"))?;
        if n < 1 {
            return Err("no CUDA device".into());
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("cannot create a context ({e})"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| format!("cannot query the device ({e})"))?;
        let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
        let stream = ctx
            .new_stream()
            .map_err(|e| format!("cannot create a stream ({e})"))?;
        Ok(Device {
            ctx,
            stream,
            arch: format!("sm_{major}{minor}"),
            name,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    });
    match made {
        Ok(r) => r,
        Err(panic) => Err(format!("the CUDA driver failed: {panic}")),
    }
}

/// The device, created on first use; the error says why CUDA cannot be
/// used (the same message on every call).
pub fn device() -> Result<&'static Device> {
    static DEV: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    DEV.get_or_init(create)
        .as_ref()
        .map_err(|e| Error::CudaUnavailable(e.clone()))
}

/// Ok when a CUDA device and NVRTC can be used by this process.
pub fn available() -> std::result::Result<(), String> {
    device().map(|_| ()).map_err(|e| match e {
        Error::CudaUnavailable(m) => m,
        other => other.to_string(),
    })
}

/// A pair of timing events around some stream work.
#[derive(Debug)]
pub struct Span {
    start: CudaEvent,
    end: CudaEvent,
}

impl Span {
    /// Milliseconds between the two events (waits for the end event).
    pub fn ms(&self) -> Result<f64> {
        self.start.elapsed_ms(&self.end).map(f64::from).map_err(drv)
    }
}

/// Device time of one stage's work: kernel spans and copy spans, read
/// after the final synchronisation so timing never stalls the stream.
#[derive(Debug, Default)]
pub struct StageClock {
    kernels: Vec<Span>,
    uploads: Vec<(Span, usize)>,
    downloads: Vec<(Span, usize)>,
}

impl StageClock {
    /// Sums the spans into [`DeviceTimes`].
    pub fn times(&self) -> Result<DeviceTimes> {
        let mut t = DeviceTimes::default();
        for s in &self.kernels {
            t.kernel_ms += s.ms()?;
        }
        for (s, b) in &self.uploads {
            t.upload_ms += s.ms()?;
            t.upload_bytes += b;
        }
        for (s, b) in &self.downloads {
            t.download_ms += s.ms()?;
            t.download_bytes += b;
        }
        Ok(t)
    }

    /// Records the times for the executor's [`crate::graph::Timings`] row
    /// (see [`crate::backend::take_device_times`]) and returns them.
    pub fn finish(self) -> Result<DeviceTimes> {
        let t = self.times()?;
        record_device_times(t);
        Ok(t)
    }
}

impl Device {
    /// Architecture the kernels are compiled for, e.g. "sm_90".
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream every operation is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The kernel `entry` of kernel file `file`, compiling and loading the
    /// file on first use.
    pub fn function(&self, file: &'static str, entry: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self
            .functions
            .lock()
            .ok()
            .and_then(|m| m.get(entry).cloned())
        {
            return Ok(f);
        }
        let module = {
            let cached = self.modules.lock().ok().and_then(|m| m.get(file).cloned());
            match cached {
                Some(m) => m,
                None => {
                    let ptx = kernels::compile_ptx(kernels::source(file)?, &self.arch)?;
                    let m = self.ctx.load_module(ptx).map_err(|e| {
                        Error::invalid(format!("CUDA: cannot load kernels/{file}: {e}"))
                    })?;
                    if let Ok(mut mods) = self.modules.lock() {
                        mods.insert(file, m.clone());
                    }
                    m
                }
            }
        };
        let f = module
            .load_function(entry)
            .map_err(|e| Error::invalid(format!("CUDA: kernels/{file} has no {entry}: {e}")))?;
        if let Ok(mut fns) = self.functions.lock() {
            fns.insert(entry, f.clone());
        }
        Ok(f)
    }

    /// A timing event (CUDA events are created without timing by default).
    fn event(&self) -> Result<CudaEvent> {
        self.ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(drv)
    }

    /// Runs `f` (which queues work on the stream) between two recorded
    /// events.
    pub fn span<T>(&self, f: impl FnOnce(&Arc<CudaStream>) -> Result<T>) -> Result<(T, Span)> {
        let start = self.event()?;
        start.record(&self.stream).map_err(drv)?;
        let out = f(&self.stream)?;
        let end = self.event()?;
        end.record(&self.stream).map_err(drv)?;
        Ok((out, Span { start, end }))
    }

    /// Queues a kernel launch between timing events, added to `clock`.
    pub fn kernel(
        &self,
        clock: &mut StageClock,
        f: impl FnOnce(&Arc<CudaStream>) -> Result<()>,
    ) -> Result<()> {
        let ((), s) = self.span(f)?;
        clock.kernels.push(s);
        Ok(())
    }

    /// An uninitialised-free (zeroed) device buffer of `n` elements.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros::<T>(n.max(1)).map_err(drv)
    }

    /// Copies `host` to a new device buffer: a timed upload.
    pub fn upload<T: DeviceRepr>(
        &self,
        clock: &mut StageClock,
        host: &[T],
    ) -> Result<CudaSlice<T>> {
        let (buf, s) = self.span(|st| st.clone_htod(host).map_err(drv))?;
        clock.uploads.push((s, std::mem::size_of_val(host)));
        Ok(buf)
    }

    /// Copies `dev` into `host` (same length) and waits for the stream: a
    /// timed download.
    pub fn download<T: DeviceRepr>(
        &self,
        clock: &mut StageClock,
        dev: &CudaSlice<T>,
        host: &mut [T],
    ) -> Result<()> {
        if dev.len() < host.len() {
            return Err(Error::invalid(format!(
                "CUDA: download of {} values from a buffer of {}",
                host.len(),
                dev.len()
            )));
        }
        let view = dev.slice(..host.len());
        let ((), s) = self.span(|st| st.memcpy_dtoh(&view, host).map_err(drv))?;
        clock.downloads.push((s, std::mem::size_of_val(host)));
        self.sync()
    }

    /// Waits for all queued work.
    pub fn sync(&self) -> Result<()> {
        self.stream.synchronize().map_err(drv)
    }
}
