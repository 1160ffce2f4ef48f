// color_pipeline.cu: the fused pointwise colour chain on planar RGB:
// 3x3 colour matrix -> exposure gain -> tone curve (LUT) -> sRGB encode
// (LUT), one read and one write per sample. Each of `color_correct`,
// `exposure_gain`, `tone_curve` and `srgb_encode` launches it with its own
// step enabled; the fused chain enables all of them in one pass. The LUTs
// are the CPU stages' own tables (n + 1 entries, linear interpolation), so
// both backends evaluate the same curve.
//
// rgb: 3 planes of n f32, updated in place. mat: 9 f32 row-major
// (out = mat * in). tone: tone_n + 1 entries over [0, tone_max]; srgb:
// srgb_n + 1 entries over [0, 1]. 1-D grid, one thread per pixel.

#include "common.cuh"

#define CP_MATRIX 1
#define CP_GAIN 2
#define CP_TONE 4
#define CP_SRGB 8

extern "C" __global__ void color_pipeline_f32(float* rgb, long long n,
                                              const float* __restrict__ mat, float gain,
                                              const float* __restrict__ tone, int tone_n, float tone_scale,
                                              const float* __restrict__ srgb, int srgb_n,
                                              int flags) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v[3] = {rgb[i], rgb[n + i], rgb[2 * n + i]};
    if (flags & CP_MATRIX) {
        float o[3];
#pragma unroll
        for (int r = 0; r < 3; ++r)
            o[r] = __ldg(mat + 3 * r) * v[0] + __ldg(mat + 3 * r + 1) * v[1] + __ldg(mat + 3 * r + 2) * v[2];
        v[0] = o[0]; v[1] = o[1]; v[2] = o[2];
    }
#pragma unroll
    for (int c = 0; c < 3; ++c) {
        float x = v[c];
        if (flags & CP_GAIN) x *= gain;
        if (flags & CP_TONE) x = lut_lerp(tone, tone_n, fminf(fmaxf(x, 0.0f) * tone_scale, (float)tone_n));
        if (flags & CP_SRGB) x = lut_lerp(srgb, srgb_n, fminf(fmaxf(x, 0.0f), 1.0f) * (float)srgb_n);
        v[c] = x;
    }
    rgb[i] = v[0];
    rgb[n + i] = v[1];
    rgb[2 * n + i] = v[2];
}
