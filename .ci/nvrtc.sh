#!/usr/bin/env bash
# Compiles every CUDA kernel with NVRTC on a machine without a GPU.
#
# Installs PyPI's nvidia-cuda-nvrtc-cu12 (libnvrtc.so.12 + builtins) once
# into a cache directory, then runs `cargo test --features cuda --test
# cuda_nvrtc` with its lib/ on LD_LIBRARY_PATH. Idempotent: a second run
# finds the cached libraries and only runs the test.
#
# Environment:
#   RAWGRAPH_NVRTC_DIR  install dir (default ~/.cache/rawgraph/nvrtc)
#   RAWGRAPH_NVRTC_LIB  use the libnvrtc in this directory instead (no install)
#   NVRTC_PACKAGE       pip requirement (default nvidia-cuda-nvrtc-cu12==12.9.86)
#   CARGO_ARGS          extra cargo test arguments (e.g. --release)
set -euo pipefail

cd "$(dirname "$0")/.."
dir="${RAWGRAPH_NVRTC_DIR:-$HOME/.cache/rawgraph/nvrtc}"
pkg="${NVRTC_PACKAGE:-nvidia-cuda-nvrtc-cu12==12.9.86}"
lib="$dir/nvidia/cuda_nvrtc/lib"

if [ -n "${RAWGRAPH_NVRTC_LIB:-}" ]; then
    # An existing libnvrtc (e.g. /usr/local/cuda/lib64 on a GPU machine).
    lib="$RAWGRAPH_NVRTC_LIB"
elif ! ls "$lib"/libnvrtc.so.12 >/dev/null 2>&1 || ! ls "$lib"/libnvrtc-builtins.so.* >/dev/null 2>&1; then
    echo "nvrtc.sh: installing $pkg into $dir"
    py="$(command -v python3 || command -v python)"
    mkdir -p "$dir"
    "$py" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$dir" --upgrade "$pkg"
fi
if ! ls "$lib"/libnvrtc.so* >/dev/null 2>&1; then
    echo "nvrtc.sh: no libnvrtc.so* under $lib" >&2
    exit 1
fi

export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Fail (rather than skip) if the library still cannot be loaded.
export RAWGRAPH_REQUIRE_NVRTC=1
# shellcheck disable=SC2086
cargo test --features cuda ${CARGO_ARGS:-} --test cuda_nvrtc -- --nocapture
