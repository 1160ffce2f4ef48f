//! The embedded kernel sources and their NVRTC compilation.
//!
//! Every `kernels/*.cu` file is compiled into the binary with
//! `include_str!`; `#include "common.cuh"` is replaced by that file's text
//! before compiling (NVRTC has no file system access here and ships no CUDA
//! headers), so the compiled unit is self-contained. PTX is cached per
//! (source hash, architecture) in memory and, best effort, on disk under
//! `$RAWGRAPH_CACHE_DIR` or `~/.cache/rawgraph/ptx/` (written atomically).
//!
//! Nothing here needs a GPU: [`compile_ptx`] only needs libnvrtc, which is
//! how tests/cuda_nvrtc.rs checks every kernel on a CPU-only machine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::{Error, Result};

/// One kernel file: its name and its (un-expanded) source.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File name under `kernels/`, e.g. "demosaic.cu".
    pub file: &'static str,
    /// The file's text.
    pub src: &'static str,
    /// The `extern "C"` entry points the Rust side launches.
    pub entries: &'static [&'static str],
}

/// `kernels/common.cuh`, pasted into every source.
pub const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// Every kernel file of the crate.
pub const KERNELS: &[KernelSource] = &[
    KernelSource {
        file: "raw_prep.cu",
        src: include_str!("../../../kernels/raw_prep.cu"),
        entries: &["raw_prep_f32", "raw_prep_u16"],
    },
    KernelSource {
        file: "demosaic.cu",
        src: include_str!("../../../kernels/demosaic.cu"),
        entries: &["demosaic_bilinear_f32", "demosaic_mhc_f32"],
    },
    KernelSource {
        file: "demosaic_menon.cu",
        src: include_str!("../../../kernels/demosaic_menon.cu"),
        entries: &[
            "menon_pad_f32",
            "menon_green_f32",
            "menon_grad_f32",
            "menon_classify_f32",
            "menon_rb_green_f32",
            "menon_rb_cross_f32",
            "menon_refine_g_f32",
            "menon_refine_rb_green_f32",
            "menon_refine_rb_cross_f32",
            "menon_crop_f32",
        ],
    },
    KernelSource {
        file: "color_pipeline.cu",
        src: include_str!("../../../kernels/color_pipeline.cu"),
        entries: &["color_pipeline_f32"],
    },
    KernelSource {
        file: "bilateral_slice.cu",
        src: include_str!("../../../kernels/bilateral_slice.cu"),
        entries: &["bilateral_slice_apply_f32"],
    },
    KernelSource {
        file: "conv2d.cu",
        src: include_str!("../../../kernels/conv2d.cu"),
        entries: &[
            "conv2d_mma_f16",
            "conv2d_direct_f16",
            "cast_f32_f16",
            "cast_f16_f32",
        ],
    },
];

/// The kernel file named `file`.
pub fn source(file: &str) -> Result<&'static KernelSource> {
    KERNELS
        .iter()
        .find(|k| k.file == file)
        .ok_or_else(|| Error::invalid(format!("CUDA: no embedded kernel file '{file}'")))
}

/// The compilable text of `k`: `common.cuh` pasted in place of its include.
pub fn expanded(k: &KernelSource) -> String {
    k.src.replace("#include \"common.cuh\"", COMMON)
}

/// FNV-1a 64-bit hash (stable across runs and builds, unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Whether libnvrtc can be loaded. cudarc panics on first use when it
/// cannot, so this is checked before every compile.
pub fn nvrtc_available() -> std::result::Result<(), String> {
    // SAFETY: `is_culib_present` only tries to dlopen the candidate library
    // names and drops what it opened; it runs no library code.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "libnvrtc was not found (install the CUDA toolkit or PyPI's \
             nvidia-cuda-nvrtc-cu12 and put its lib/ on LD_LIBRARY_PATH)"
                .into(),
        )
    }
}

/// The NVRTC version `(major, minor)`, part of the cache key; `None`
/// when libnvrtc is missing or does not answer.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    static V: OnceLock<Option<(i32, i32)>> = OnceLock::new();
    *V.get_or_init(|| {
        nvrtc_available().ok()?;
        crate::raw::guard::guarded(|| {
            let (mut major, mut minor) = (0, 0);
            // SAFETY: libnvrtc is present (checked above); nvrtcVersion
            // only writes the two integers it is given pointers to.
            let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
            (r == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
        })
        .ok()
        .flatten()
    })
}

/// NVRTC options used for every kernel; part of the cache key.
fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        // No contraction into FMA and IEEE division: the kernels then
        // round like the CPU stages (which Rust never contracts), so parity
        // holds to the last bits and Menon's direction decisions agree.
        "--fmad=false".into(),
    ]
}

type PtxCache = Mutex<HashMap<u64, Ptx>>;

fn memory_cache() -> &'static PtxCache {
    static CACHE: OnceLock<PtxCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn disk_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RAWGRAPH_CACHE_DIR") {
        return Some(PathBuf::from(d).join("ptx"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rawgraph/ptx"))
}

/// Compiles kernel file `k` for `arch` (e.g. "sm_90"), from the cache when
/// the same source and options were compiled before. Errors carry the NVRTC
/// log.
pub fn compile_ptx(k: &KernelSource, arch: &str) -> Result<Ptx> {
    nvrtc_available().map_err(Error::CudaUnavailable)?;
    let src = expanded(k);
    let opts = options(arch);
    let (major, minor) = nvrtc_version().unwrap_or((0, 0));
    let key = fnv1a(format!("{src}\0{}\0nvrtc {major}.{minor}", opts.join(" ")).as_bytes());
    if let Ok(c) = memory_cache().lock() {
        if let Some(p) = c.get(&key) {
            return Ok(p.clone());
        }
    }
    let disk = disk_cache_dir().map(|d| d.join(format!("{}-{arch}-{key:016x}.ptx", k.file)));
    if let Some(text) = disk.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        let ptx = Ptx::from_src(text);
        if let Ok(mut c) = memory_cache().lock() {
            c.insert(key, ptx.clone());
        }
        return Ok(ptx);
    }
    let ptx = nvrtc(k.file, &src, opts, arch)?;
    if let Some(path) = disk {
        store(&path, &ptx.to_src());
    }
    if let Ok(mut c) = memory_cache().lock() {
        c.insert(key, ptx.clone());
    }
    Ok(ptx)
}

/// Compiles kernel file `k` for `arch` with NVRTC, bypassing both caches
/// (what tests/cuda_nvrtc.rs uses, so a cached PTX never hides an NVRTC
/// error).
pub fn compile_ptx_uncached(k: &KernelSource, arch: &str) -> Result<Ptx> {
    nvrtc_available().map_err(Error::CudaUnavailable)?;
    nvrtc(k.file, &expanded(k), options(arch), arch)
}

/// One NVRTC run; a panic inside cudarc becomes CudaUnavailable, a
/// compile error carries the NVRTC log.
fn nvrtc(file: &str, src: &str, opts: Vec<String>, arch: &str) -> Result<Ptx> {
    let copts = CompileOptions {
        options: opts,
        name: Some(file.to_string()),
        ..Default::default()
    };
    let compiled = crate::raw::guard::guarded(|| cudarc::nvrtc::compile_ptx_with_opts(src, copts))
        .map_err(|panic| Error::CudaUnavailable(format!("NVRTC panicked: {panic}")))?;
    compiled.map_err(|e| {
        let log = match &e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        };
        Error::invalid(format!(
            "CUDA: kernels/{file} does not compile for {arch}: {}",
            log.trim()
        ))
    })
}

/// Best-effort atomic write of a cache file (temp file + rename); failures
/// only cost a recompile next time.
fn store(path: &std::path::Path, text: &str) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(mut f) = tempfile::NamedTempFile::new_in(dir) {
        use std::io::Write;
        if f.write_all(text.as_bytes()).is_ok() {
            let _ = f.persist(path);
        }
    }
}

/// Compiles every kernel file for `arch`; returns (file, PTX bytes) per file.
pub fn compile_all(arch: &str) -> Result<Vec<(&'static str, usize)>> {
    KERNELS
        .iter()
        .map(|k| compile_ptx(k, arch).map(|p| (k.file, p.to_src().len())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_includes_common_and_names_its_entries() {
        for k in KERNELS {
            let s = expanded(k);
            assert!(!s.contains("#include \"common.cuh\""), "{}", k.file);
            assert!(s.contains("__device__ __forceinline__ float h16_to_f32"));
            for e in k.entries {
                assert!(
                    s.contains(&format!("extern \"C\" __global__ void {e}("))
                        || s.contains(&format!("\n{e}(")),
                    "{}: entry {e} not found",
                    k.file
                );
            }
        }
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
