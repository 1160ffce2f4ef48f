//! Every kernel in kernels/ compiles with NVRTC, for the architectures the
//! lent GPUs and their predecessors have. Needs libnvrtc only (no GPU):
//! `.ci/nvrtc.sh` installs PyPI's nvidia-cuda-nvrtc-cu12 into a cache and
//! runs this test with it on LD_LIBRARY_PATH. Without libnvrtc (or without
//! the `cuda` feature) the test prints that it was skipped.

#[cfg(not(feature = "cuda"))]
#[test]
fn every_kernel_compiles_with_nvrtc() {
    eprintln!(
        "SKIPPED: built without the `cuda` feature (cargo test --features cuda --test cuda_nvrtc)"
    );
}

#[cfg(feature = "cuda")]
mod with_cuda {
    use rawgraph::backend::cuda::kernels::{compile_ptx_uncached as compile_ptx, KERNELS};
    use rawgraph::backend::cuda::nvrtc_available;

    /// sm_90: H100/H200; sm_80: A100 (first with mma.m16n8k16 f16);
    /// sm_75: the tensor-core kernel compiles to a trap, the rest runs.
    const ARCHS: &[&str] = &["sm_90", "sm_89", "sm_80", "sm_75"];

    fn nvrtc_or_skip() -> bool {
        match nvrtc_available() {
            Ok(()) => true,
            Err(why) => {
                if std::env::var_os("RAWGRAPH_REQUIRE_NVRTC").is_some() {
                    panic!("RAWGRAPH_REQUIRE_NVRTC is set but {why}");
                }
                eprintln!("SKIPPED: {why}");
                false
            }
        }
    }

    #[test]
    fn every_kernel_compiles_with_nvrtc() {
        if !nvrtc_or_skip() {
            return;
        }
        for arch in ARCHS {
            for k in KERNELS {
                let ptx = compile_ptx(k, arch)
                    .unwrap_or_else(|e| panic!("{} for {arch}: {e}", k.file))
                    .to_src();
                for entry in k.entries {
                    assert!(
                        ptx.contains(&format!(".entry {entry}(")),
                        "{} for {arch}: no entry {entry} in the PTX",
                        k.file
                    );
                }
                eprintln!("{:<20} {arch}: {} bytes of PTX", k.file, ptx.len());
            }
        }
    }

    #[test]
    fn tensor_core_kernel_uses_mma_on_sm80_and_newer() {
        if !nvrtc_or_skip() {
            return;
        }
        let k = KERNELS.iter().find(|k| k.file == "conv2d.cu").unwrap();
        let ptx = compile_ptx(k, "sm_90").unwrap().to_src();
        assert!(
            ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"),
            "no tensor-core instruction in the sm_90 PTX"
        );
        let ptx75 = compile_ptx(k, "sm_75").unwrap().to_src();
        assert!(!ptx75.contains("mma.sync.aligned.m16n8k16"));
    }

    #[test]
    fn cached_compile_matches_a_fresh_one() {
        if !nvrtc_or_skip() {
            return;
        }
        let v = rawgraph::backend::cuda::kernels::nvrtc_version();
        eprintln!("NVRTC {v:?}");
        assert!(v.is_some());
        for k in KERNELS {
            let fresh = compile_ptx(k, "sm_90").unwrap().to_src();
            let a = rawgraph::backend::cuda::kernels::compile_ptx(k, "sm_90")
                .unwrap()
                .to_src();
            let b = rawgraph::backend::cuda::kernels::compile_ptx(k, "sm_90")
                .unwrap()
                .to_src();
            assert_eq!(a, b, "{}", k.file);
            assert_eq!(a, fresh, "{}: cached PTX is stale", k.file);
        }
    }

    #[test]
    fn a_syntax_error_is_a_typed_error_with_the_log() {
        if !nvrtc_or_skip() {
            return;
        }
        let bad = rawgraph::backend::cuda::kernels::KernelSource {
            file: "bad.cu",
            src: "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }",
            entries: &[],
        };
        let e = compile_ptx(&bad, "sm_90").unwrap_err().to_string();
        assert!(e.contains("bad.cu") && e.contains("undefined_name"), "{e}");
    }
}
