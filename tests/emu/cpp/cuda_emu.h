// cuda_emu.h: the host shim that lets kernels/*.cu compile as C++17 for the
// CUDA emulator (tests only; see tests/emu/src/lib.rs). It is force-included
// before a kernel file, which is compiled unchanged apart from its
// `#ifdef RAWGRAPH_EMU` branches (fp16 conversions and the tensor-core MMA,
// which are inline PTX on the device).
//
// Execution model (tests/emu/cpp/runtime.cpp): blocks run one after another;
// each thread of a block is a fiber with its own stack; `__syncthreads()`
// suspends the fiber until every thread of the block has reached the same
// barrier (a thread that exits first, or one waiting at another barrier, is
// reported as a divergent barrier). `__shared__` variables are statics in
// one linker section that the runtime fills with 0xFF (NaN) before every
// block, so a read of shared memory no thread wrote shows up as NaN.
//
// Arithmetic: compiled with -ffp-contract=off (no FMA contraction, like
// NVRTC's --fmad=false), IEEE division, SSE single precision; fp16
// conversions round to nearest even like `cvt.rn.f16.f32`. `__expf` is the
// host expf (the device one is an approximation; only the sigmoid uses it).

#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define RAWGRAPH_EMU 1

#define __global__
#define __device__ static
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static __attribute__((section("rawgraph_emu_shared")))

struct uint3 {
    unsigned x, y, z;
};
typedef uint3 dim3;

struct __attribute__((aligned(16))) uint4 {
    unsigned x, y, z, w;
};

static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    uint4 v = {x, y, z, w};
    return v;
}

namespace rawgraph_emu {
// The running fiber's indices (set by the scheduler before each switch).
extern uint3 thread_idx, block_idx, block_dim, grid_dim;
// Suspends the calling thread until every thread of its block arrives at
// the barrier at `file`:`line`.
void syncthreads(const char* file, int line);
// Stops the calling thread and fails the launch.
[[noreturn]] void trap(const char* file, int line, const char* what);
// Warp-collective mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 with
// the PTX ISA fragment layout (all 32 lanes of the warp must call it).
void mma_m16n8k16(float d[4], const unsigned a[4], const unsigned b[2]);
// fp16 bits <-> f32, round to nearest even.
float h16_to_f32(unsigned short h);
unsigned short f32_to_h16(float f);
}  // namespace rawgraph_emu

#define threadIdx (rawgraph_emu::thread_idx)
#define blockIdx (rawgraph_emu::block_idx)
#define blockDim (rawgraph_emu::block_dim)
#define gridDim (rawgraph_emu::grid_dim)
#define __syncthreads() rawgraph_emu::syncthreads(__FILE__, __LINE__)
#define __trap() rawgraph_emu::trap(__FILE__, __LINE__, "__trap()")

template <class T>
static inline T __ldg(const T* p) {
    return *p;
}

#define __expf(x) expf(x)  // glibc declares its own __expf
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
