#!/usr/bin/env bash
# One-command GPU check, for a machine with an NVIDIA GPU and the CUDA
# toolkit (nvidia-smi, compute-sanitizer). Fails on anything short of a
# clean pass, including "no device":
#   1. the emulated kernels (tests/cuda_emu.rs, as in plain `cargo test`);
#   2. NVRTC compiles every kernel (tests/cuda_nvrtc.rs);
#   3. CPU/CUDA parity and placement on the device with
#      RAWGRAPH_REQUIRE_GPU=1, so a missing device or driver fails;
#   4. compute-sanitizer memcheck over the parity tests, racecheck over
#      the ones whose kernels use shared memory (demosaic.cu, the conv2d
#      tensor-core kernel, the fused chain).
#
# Environment:
#   CUDA_HOME            toolkit root (default /usr/local/cuda); its lib64/
#                        goes first on LD_LIBRARY_PATH so cudarc finds
#                        libcuda and libnvrtc (it tries libnvrtc.so first)
#   CUDARC_CUDA_VERSION  e.g. 13000 for cudarc's CUDA 13 bindings (cudarc
#                        reads it at build time; default: the crate's 12.8)
#   RACECHECK_FILTER     test-name filters for racecheck (default below)
#   SANITIZER_ARGS       extra compute-sanitizer arguments
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n=== %s (%s) ===\n' "$*" "$(date -u +%H:%M:%S)"; }

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

step "emulated kernels"
cargo test --test cuda_emu

step "NVRTC compiles every kernel"
cargo test --features cuda --test cuda_nvrtc -- --nocapture

step "CPU/CUDA parity and placement on the device (RAWGRAPH_REQUIRE_GPU=1)"
cargo test --features cuda --test cuda_parity -- --nocapture --test-threads=1
cargo test --features cuda --test cuda_placement -- --nocapture

san="$(command -v compute-sanitizer || echo "$cuda_home/bin/compute-sanitizer")"
if [ ! -x "$san" ]; then
    echo "gpu_check: compute-sanitizer not found (looked in PATH and $cuda_home/bin)" >&2
    exit 1
fi
bin="$(cargo test --features cuda --test cuda_parity --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*cuda_parity-[0-9a-f]*\)).*/\1/p' | tail -n 1)"
if [ ! -x "$bin" ]; then
    echo "gpu_check: cannot find the cuda_parity test binary" >&2
    exit 1
fi

step "compute-sanitizer memcheck: $bin"
# shellcheck disable=SC2086
"$san" --tool memcheck --error-exitcode 1 --print-limit 20 ${SANITIZER_ARGS:-} \
    "$bin" --test-threads=1

step "compute-sanitizer racecheck (shared-memory kernels)"
# shellcheck disable=SC2086
"$san" --tool racecheck --racecheck-report hazard --error-exitcode 1 --print-limit 20 ${SANITIZER_ARGS:-} \
    "$bin" --test-threads=1 ${RACECHECK_FILTER:-demosaic_bilinear demosaic_mhc conv2d_matches_cpu fused_chain}

echo
echo "GPU CHECK OK"
