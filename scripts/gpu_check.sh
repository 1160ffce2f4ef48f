#!/usr/bin/env bash
# One-command GPU check, for a machine with an NVIDIA GPU and the CUDA
# toolkit (nvidia-smi, compute-sanitizer). Builds with --features cuda
# (release profile, one build for the tests and the benches), then:
#   1. the emulated kernels and device segments (tests/cuda_emu.rs; only
#      where cargo builds the tests here);
#   2. NVRTC compiles every kernel (tests/cuda_nvrtc.rs);
#   3. CPU/CUDA parity (stages, fused chain, the executor's device
#      segments) and placement on the device with RAWGRAPH_REQUIRE_GPU=1,
#      so a missing device or driver fails instead of skipping;
#   4. the GPU benches: `rawgraph bench --synthetic 4000x3000` for `fast`
#      and `default`, the device segment (--backend cuda) against the CPU
#      fused segment (--backend cpu), and `fast` with --no-fuse on CUDA
#      (every stage with its own upload and download);
#   5. compute-sanitizer memcheck over the parity tests, racecheck over
#      the ones whose kernels use shared memory (demosaic.cu, the conv2d
#      tensor-core kernel, the fused chain and device segments).
# It writes ONE JSON summary (default target/gpu_check.json): per step its
# status and seconds, the test counts (passed, failed, skipped), each
# bench's median total and its full `bench --json` report. It exits 0 only
# when every step passed. About 5-7 minutes on an H200 machine with a warm
# cargo registry (the build is most of it); every step has a time limit.
#
# Usage:
#   scripts/gpu_check.sh [--out FILE]          build here with cargo, run all
#   scripts/gpu_check.sh --build-bins [DIR]    only build the device test
#                                              binaries cuda_nvrtc and
#                                              cuda_parity and the rawgraph
#                                              binary, stripped, into DIR
#                                              (default target/gpu-bins): for
#                                              a GPU machine without a Rust
#                                              toolchain; copy DIR there and
#   RAWGRAPH_GPU_BINS=DIR scripts/gpu_check.sh run steps 2-5 from those
#                                              binaries (not the emulated or
#                                              placement tests)
#
# Environment:
#   CUDA_HOME            toolkit root (default /usr/local/cuda); its lib64/
#                        goes first on LD_LIBRARY_PATH so cudarc finds
#                        libcuda and libnvrtc (it tries libnvrtc.so first,
#                        so a CUDA 13 toolkit's NVRTC is used as well)
#   RACECHECK_FILTER     test-name filters for racecheck (default below)
#   SANITIZER_ARGS       extra compute-sanitizer arguments
#   BENCH_ITERS          timed bench runs (default 9, after 2 warm-up)
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
TESTS=(cuda_nvrtc cuda_parity)
T0=$SECONDS

out_json="target/gpu_check.json"
if [ "${1:-}" = "--out" ]; then
    out_json="${2:?--out needs a file}"
    shift 2
fi

# Path of the cargo-built test binary `$1` (release, --features cuda).
cargo_bin() {
    cargo test --release --features cuda --test "$1" --no-run 2>&1 |
        sed -n "s/.*Executable .*(\(.*$1-[0-9a-f]*\)).*/\1/p" | tail -n 1
}
target_dir() {
    cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

if [ "${1:-}" = "--build-bins" ]; then
    set -e
    out="${2:-target/gpu-bins}"
    mkdir -p "$out"
    for t in "${TESTS[@]}"; do
        b="$(cargo_bin "$t")"
        [ -x "$b" ] || { echo "gpu_check: building $t failed" >&2; exit 1; }
        strip -o "$out/$t" "$b"
    done
    cargo build --release --features cuda --bin rawgraph
    strip -o "$out/rawgraph" "$(target_dir)/release/rawgraph"
    ls -la "$out"
    exit 0
fi

mkdir -p "$(dirname "$out_json")"
# The summary when there is nothing to run: one line on stderr, exit 1.
refuse() {
    printf '{\n  "ok": false,\n  "reason": "%s",\n  "seconds": %d\n}\n' "$1" $((SECONDS - T0)) >"$out_json"
    echo "gpu_check: $1" >&2
    exit 1
}

cuda_home="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}"
command -v nvidia-smi >/dev/null 2>&1 || refuse "no NVIDIA GPU here (no nvidia-smi)"
nvidia-smi -L >/dev/null 2>&1 || refuse "no NVIDIA GPU here (nvidia-smi -L failed)"
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
for d in "$cuda_home/targets/x86_64-linux/lib" "$cuda_home/lib64"; do
    [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
export RAWGRAPH_REQUIRE_GPU=1 RAWGRAPH_REQUIRE_NVRTC=1
# A fresh PTX cache, so every kernel is compiled by this machine's NVRTC.
RAWGRAPH_CACHE_DIR="$(mktemp -d)"
export RAWGRAPH_CACHE_DIR
logs="$(mktemp -d)"
trap 'rm -rf "$RAWGRAPH_CACHE_DIR" "$logs"' EXIT

steps_json=""   # one JSON object per step, comma-separated
failed_steps=0
passed=0 failed=0 skipped=0

# run_step NAME LIMIT_S CMD...: runs CMD under a time limit, tees its
# output, adds its libtest counts and SKIPPED lines to the totals.
run_step() {
    local name="$1" limit="$2"
    shift 2
    printf '\n=== %s (%s) ===\n' "$name" "$(date -u +%H:%M:%S)" >&2
    local t=$SECONDS log="$logs/$name.log"
    timeout "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local p f s
    p=$(sed -n 's/^test result: .* \([0-9]*\) passed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^test result: .* \([0-9]*\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    s=$(grep -c '^SKIPPED' "$log")
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    local status=passed
    if [ "$rc" -eq 124 ]; then status="timed out after ${limit}s"; elif [ "$rc" -ne 0 ]; then status="failed (exit $rc)"; fi
    [ "$rc" -eq 0 ] || failed_steps=$((failed_steps + 1))
    steps_json+="${steps_json:+,
}    {\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $((SECONDS - t)), \"passed\": $p, \"failed\": $f, \"skipped\": $s}"
    return "$rc"
}

declare -A bin
if [ -n "${RAWGRAPH_GPU_BINS:-}" ]; then
    for t in "${TESTS[@]}" rawgraph; do bin[$t]="$RAWGRAPH_GPU_BINS/$t"; done
    echo "emulated kernels: skipped here (prebuilt binaries; cargo test runs them where they were built)"
else
    run_step build 420 cargo build --release --features cuda --bin rawgraph \
        --test cuda_emu --test cuda_nvrtc --test cuda_parity --test cuda_placement ||
        refuse "the --features cuda build failed (see the log above)"
    for t in "${TESTS[@]}" cuda_placement; do bin[$t]="$(cargo_bin "$t")"; done
    bin[rawgraph]="$(target_dir)/release/rawgraph"
    run_step emulated 120 cargo test --release --features cuda --test cuda_emu
fi
for t in "${TESTS[@]}" rawgraph; do
    [ -x "${bin[$t]}" ] || refuse "no binary for $t (${bin[$t]})"
done

run_step nvrtc 120 "${bin[cuda_nvrtc]}" --nocapture
run_step parity 180 "${bin[cuda_parity]}" --nocapture --test-threads=1
if [ -n "${bin[cuda_placement]:-}" ]; then
    run_step placement 120 "${bin[cuda_placement]}" --nocapture
fi

# Benches: name, then the bench arguments.
benches_json="" medians_json=""
bench() {
    local name="$1"
    shift
    local f="$logs/bench-$name.json"
    run_step "bench_$name" 120 "${bin[rawgraph]}" bench --synthetic 4000x3000 \
        --iters "${BENCH_ITERS:-9}" --warmup 2 --json "$@" >/dev/null
    # run_step's log holds the JSON (stdout and stderr; bench writes the
    # report to stdout and nothing else on success).
    if sed -n '/^{/,/^}/p' "$logs/bench_$name.log" >"$f" && [ -s "$f" ]; then
        local med
        med=$(sed -n 's/^  "total_median_ms": \(.*\),$/\1/p' "$f" | head -n 1)
        benches_json+="${benches_json:+,
}    \"$name\": $(cat "$f")"
        medians_json+="${medians_json:+,
}    \"$name\": ${med:-null}"
    fi
}
bench fast_cpu -p fast --backend cpu
bench fast_cuda -p fast --backend cuda
bench fast_cuda_no_fuse -p fast --backend cuda --no-fuse
bench default_cpu -p default --backend cpu
bench default_cuda -p default --backend cuda

san="$(command -v compute-sanitizer || echo "$cuda_home/bin/compute-sanitizer")"
if [ -x "$san" ]; then
    # shellcheck disable=SC2086
    run_step memcheck 240 "$san" --tool memcheck --error-exitcode 1 --print-limit 20 ${SANITIZER_ARGS:-} \
        "${bin[cuda_parity]}" --test-threads=1
    # shellcheck disable=SC2086
    run_step racecheck 240 "$san" --tool racecheck --racecheck-report hazard --error-exitcode 1 --print-limit 20 ${SANITIZER_ARGS:-} \
        "${bin[cuda_parity]}" --test-threads=1 ${RACECHECK_FILTER:-demosaic_bilinear demosaic_mhc conv2d_matches_cpu fused_chain device_segment}
else
    echo "gpu_check: compute-sanitizer not found (looked in PATH and $cuda_home/bin)" >&2
    failed_steps=$((failed_steps + 1))
    steps_json+=",
    {\"step\": \"sanitizers\", \"status\": \"compute-sanitizer not found\", \"seconds\": 0, \"passed\": 0, \"failed\": 0, \"skipped\": 0}"
fi

ok=false
[ "$failed_steps" -eq 0 ] && [ "$failed" -eq 0 ] && ok=true
cat >"$out_json" <<JSON
{
  "ok": $ok,
  "gpu": "${gpu:-unknown}",
  "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "seconds": $((SECONDS - T0)),
  "tests": {"passed": $passed, "failed": $failed, "skipped": $skipped},
  "steps": [
$steps_json
  ],
  "bench_total_median_ms": {
$medians_json
  },
  "benches": {
$benches_json
  }
}
JSON
echo
echo "gpu_check: summary in $out_json ($((SECONDS - T0)) s)"
if [ "$ok" = true ]; then
    echo "GPU CHECK OK"
else
    echo "GPU CHECK FAILED ($failed_steps step(s), $failed test(s))" >&2
    exit 1
fi
