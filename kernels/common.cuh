// common.cuh: helpers shared by every rawgraph kernel.
//
// NVRTC ships no CUDA headers (not even cuda_fp16.h or mma.h), so nothing
// here includes one: fp16 conversions and tensor-core MMAs are inline PTX.
// The Rust side pastes this file in place of the include line before
// compiling, so every kernel file is self-contained for NVRTC.
//
// Conventions:
// - Images are planar f32 (CHW): plane c of a WxH image starts at c*W*H.
// - A Bayer phase is passed as `cfa`: four 2-bit colour codes (0 R, 1 G,
//   2 B) for the 2x2 block positions ((y&1)<<1 | (x&1)), position 0 in the
//   lowest bits (the Rust side builds it from CfaPattern::layout()).
// - fp16 tensors are stored as raw 16-bit patterns (`h16`).

#pragma once

typedef unsigned short h16;

// fp16 bits -> f32. (RAWGRAPH_EMU: the host emulator of tests/emu, which
// compiles these files as C++ and has no PTX.)
__device__ __forceinline__ float h16_to_f32(h16 h) {
#ifdef RAWGRAPH_EMU
    return rawgraph_emu::h16_to_f32(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

// f32 -> fp16 bits, round to nearest even.
__device__ __forceinline__ h16 f32_to_h16(float f) {
#ifdef RAWGRAPH_EMU
    return rawgraph_emu::f32_to_h16(f);
#else
    h16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

// Mirror index into [0, n) without repeating the edge sample
// (d c b | a b c d | c b a), as the CPU backend's `reflect`. n >= 2.
__device__ __forceinline__ int reflect_idx(int i, int n) {
    if (i >= 0 && i < n) return i;
    int period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    if (i >= n) i = period - i;
    return i;
}

// Colour (0 R, 1 G, 2 B) of the photosite at row y, column x.
__device__ __forceinline__ int cfa_color(int cfa, int y, int x) {
    return (cfa >> (2 * (((y & 1) << 1) | (x & 1)))) & 3;
}

// Linear interpolation in a table of n + 1 entries; `t` is already scaled
// to [0, n] (the CPU stages' LUT rule: i = min(floor(t), n - 1)).
__device__ __forceinline__ float lut_lerp(const float* __restrict__ lut, int n, float t) {
    int i = min((int)t, n - 1);
    float f = t - (float)i;
    float a = __ldg(lut + i);
    float b = __ldg(lut + i + 1);
    return a + f * (b - a);
}

// Activation codes shared with src/backend/cuda/conv.rs.
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_LEAKY 2
#define ACT_SIGMOID 3

__device__ __forceinline__ float activate(float v, int act, float slope) {
    switch (act) {
    case ACT_RELU: return fmaxf(v, 0.0f);
    case ACT_LEAKY: return v < 0.0f ? v * slope : v;
    case ACT_SIGMOID: return 1.0f / (1.0f + __expf(-v));
    default: return v;
    }
}
