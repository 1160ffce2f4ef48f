#!/usr/bin/env bash
# One-command GPU check, for a machine with an NVIDIA GPU and the CUDA
# toolkit (nvidia-smi, compute-sanitizer). Fails on anything short of a
# clean pass, including "no device":
#   1. the emulated kernels (tests/cuda_emu.rs, as in plain `cargo test`;
#      only where cargo builds the tests here);
#   2. NVRTC compiles every kernel (tests/cuda_nvrtc.rs);
#   3. CPU/CUDA parity and placement on the device with
#      RAWGRAPH_REQUIRE_GPU=1, so a missing device or driver fails;
#   4. compute-sanitizer memcheck over the parity tests, racecheck over
#      the ones whose kernels use shared memory (demosaic.cu, the conv2d
#      tensor-core kernel, the fused chain).
#
# Usage:
#   .ci/gpu_check.sh                     build the tests with cargo here, run all
#   .ci/gpu_check.sh --build-bins [DIR]  only build the device test binaries
#                                        cuda_nvrtc and cuda_parity, stripped
#                                        (~18 MB together), into
#                                        DIR (default target/gpu-bins): for a GPU
#                                        machine without a Rust toolchain or
#                                        crates.io access; copy DIR there and
#   RAWGRAPH_GPU_BINS=DIR .ci/gpu_check.sh   run steps 2-4 from those binaries
#                                        (not the placement test: it runs the
#                                        rawgraph binary at its build path)
#
# Environment:
#   CUDA_HOME            toolkit root (default /usr/local/cuda); its lib64/
#                        goes first on LD_LIBRARY_PATH so cudarc finds
#                        libcuda and libnvrtc (it tries libnvrtc.so first,
#                        so a CUDA 13 toolkit's NVRTC is used as well)
#   RACECHECK_FILTER     test-name filters for racecheck (default below)
#   SANITIZER_ARGS       extra compute-sanitizer arguments
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n=== %s (%s) ===\n' "$*" "$(date -u +%H:%M:%S)"; }
TESTS=(cuda_nvrtc cuda_parity)

# Path of the cargo-built test binary `$1` (built with --features cuda).
cargo_bin() {
    cargo test --features cuda --test "$1" --no-run 2>&1 |
        sed -n "s/.*Executable .*(\(.*$1-[0-9a-f]*\)).*/\1/p" | tail -n 1
}

if [ "${1:-}" = "--build-bins" ]; then
    out="${2:-target/gpu-bins}"
    mkdir -p "$out"
    for t in "${TESTS[@]}"; do
        b="$(cargo_bin "$t")"
        [ -x "$b" ] || { echo "gpu_check: building $t failed" >&2; exit 1; }
        strip -o "$out/$t" "$b"
    done
    ls -la "$out"
    exit 0
fi

cuda_home="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi -L failed)" >&2
    exit 1
fi
for d in "$cuda_home/targets/x86_64-linux/lib" "$cuda_home/lib64"; do
    [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
export RAWGRAPH_REQUIRE_GPU=1 RAWGRAPH_REQUIRE_NVRTC=1
# A fresh PTX cache, so every kernel is compiled by this machine's NVRTC.
RAWGRAPH_CACHE_DIR="$(mktemp -d)"
export RAWGRAPH_CACHE_DIR
trap 'rm -rf "$RAWGRAPH_CACHE_DIR"' EXIT

declare -A bin
if [ -n "${RAWGRAPH_GPU_BINS:-}" ]; then
    for t in "${TESTS[@]}"; do bin[$t]="$RAWGRAPH_GPU_BINS/$t"; done
    step "emulated kernels: skipped here (prebuilt binaries; cargo test runs them where they were built)"
else
    step "emulated kernels"
    cargo test --test cuda_emu
    for t in "${TESTS[@]}" cuda_placement; do bin[$t]="$(cargo_bin "$t")"; done
fi
for t in "${TESTS[@]}"; do
    [ -x "${bin[$t]}" ] || { echo "gpu_check: no test binary for $t (${bin[$t]})" >&2; exit 1; }
done

step "NVRTC compiles every kernel"
"${bin[cuda_nvrtc]}" --nocapture

step "CPU/CUDA parity and placement on the device (RAWGRAPH_REQUIRE_GPU=1)"
"${bin[cuda_parity]}" --nocapture --test-threads=1
if [ -n "${bin[cuda_placement]:-}" ]; then
    "${bin[cuda_placement]}" --nocapture
fi

san="$(command -v compute-sanitizer || echo "$cuda_home/bin/compute-sanitizer")"
if [ ! -x "$san" ]; then
    echo "gpu_check: compute-sanitizer not found (looked in PATH and $cuda_home/bin)" >&2
    exit 1
fi

step "compute-sanitizer memcheck"
# shellcheck disable=SC2086
"$san" --tool memcheck --error-exitcode 1 --print-limit 20 ${SANITIZER_ARGS:-} \
    "${bin[cuda_parity]}" --test-threads=1

step "compute-sanitizer racecheck (shared-memory kernels)"
# shellcheck disable=SC2086
"$san" --tool racecheck --racecheck-report hazard --error-exitcode 1 --print-limit 20 ${SANITIZER_ARGS:-} \
    "${bin[cuda_parity]}" --test-threads=1 ${RACECHECK_FILTER:-demosaic_bilinear demosaic_mhc conv2d_matches_cpu fused_chain}

echo
echo "GPU CHECK OK"
