// bilateral_slice.cu: HDRnet's guide + bilateral slice + affine apply
// (Gharbi et al. 2017, sec. 3.3-3.4), fused: one read and one write per
// sample. The CPU reference is src/stages/hdrnet/{guide,slice_apply}.rs;
// this kernel evaluates the same expressions in the same order (the crate
// compiles kernels without FMA contraction), so the two agree to a few ulps.
//
// rgb:   3 planes of w*h f32 (planar CHW linear RGB), updated in place.
// grid:  gw*gh*gd cells of 12 f32, layout
//        grid[((gy*gw + gx)*gd + z)*12 + out*4 + in] (in = 3: the bias).
// guide: packed guide weights:
//        [0..9)   3x3 colour matrix, row-major (out, in)
//        [9..12)  colour-matrix bias per channel
//        [12..15) mix weight per channel
//        [15]     mix bias
//        [16..16+3k)      curve knot shifts, [3][k]
//        [16+3k..16+6k)   curve slope increments, [3][k]
// Coordinates (PyTorch grid_sample, align_corners=False, border):
//        gx = clamp((x + 0.5)*gw/w - 0.5, 0, gw-1), same for y,
//        gz = clamp(guide*gd - 0.5, 0, gd-1).
// 2-D grid, one thread per pixel.

#include "common.cuh"

#define BS_COEFFS 12
#define BS_COLS 4

// Negative and non-finite inputs count as 0 (CPU: slice_apply::clean).
__device__ __forceinline__ float bs_clean(float v) {
    return isfinite(v) ? fmaxf(v, 0.0f) : 0.0f;
}

// Clamped grid coordinate of sample i of n on a `cells`-cell axis.
__device__ __forceinline__ void bs_axis(int i, int n, int cells, int* lo, int* hi, float* f) {
    float c = ((float)i + 0.5f) * (float)cells / (float)n - 0.5f;
    c = fminf(fmaxf(c, 0.0f), (float)(cells - 1));
    int l = min((int)c, cells - 1);
    *lo = l;
    *hi = min(l + 1, cells - 1);
    *f = c - (float)l;
}

extern "C" __global__ void bilateral_slice_apply_f32(float* rgb, int w, int h,
                                                     const float* __restrict__ grid,
                                                     int gw, int gh, int gd,
                                                     const float* __restrict__ guide, int knots) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    long long n = (long long)w * h;
    long long i = (long long)y * w + x;
    float px[3] = {bs_clean(rgb[i]), bs_clean(rgb[n + i]), bs_clean(rgb[2 * n + i])};

    // Guide: colour matrix + bias, piecewise-linear curve per channel, mix.
    float acc = __ldg(guide + 15);
    const float* shifts = guide + 16;
    const float* slopes = guide + 16 + 3 * knots;
    for (int c = 0; c < 3; ++c) {
        float yc = __ldg(guide + 3 * c) * px[0] + __ldg(guide + 3 * c + 1) * px[1] +
                   __ldg(guide + 3 * c + 2) * px[2] + __ldg(guide + 9 + c);
        float curve = 0.0f;
        for (int k = 0; k < knots; ++k)
            curve += __ldg(slopes + c * knots + k) * fmaxf(yc - __ldg(shifts + c * knots + k), 0.0f);
        acc += __ldg(guide + 12 + c) * curve;
    }
    float g = isnan(acc) ? 0.0f : fminf(fmaxf(acc, 0.0f), 1.0f);

    // Trilinear lookup: y first (as the CPU's per-row grid), then x, then z.
    int x0, x1, y0, y1;
    float fx, fy;
    bs_axis(x, w, gw, &x0, &x1, &fx);
    bs_axis(y, h, gh, &y0, &y1, &fy);
    float cz = fminf(fmaxf(g * (float)gd - 0.5f, 0.0f), (float)(gd - 1));
    float z0f = floorf(cz);
    float fz = cz - z0f;
    int z0 = (int)z0f;
    int z1 = min(z0 + 1, gd - 1);
    float wz[2] = {1.0f - fz, fz};
    int zs[2] = {z0, z1};
    int nz = (z0 + 1 <= gd - 1) ? 2 : 1;

    float coef[BS_COEFFS];
#pragma unroll
    for (int c = 0; c < BS_COEFFS; ++c) coef[c] = 0.0f;
    for (int k = 0; k < nz; ++k) {
        int z = zs[k];
        const float* a0 = grid + (((long long)y0 * gw + x0) * gd + z) * BS_COEFFS;
        const float* c0 = grid + (((long long)y1 * gw + x0) * gd + z) * BS_COEFFS;
        const float* a1 = grid + (((long long)y0 * gw + x1) * gd + z) * BS_COEFFS;
        const float* c1 = grid + (((long long)y1 * gw + x1) * gd + z) * BS_COEFFS;
#pragma unroll
        for (int c = 0; c < BS_COEFFS; ++c) {
            float lo_a = __ldg(a0 + c), lo_c = __ldg(c0 + c);
            float hi_a = __ldg(a1 + c), hi_c = __ldg(c1 + c);
            float va = lo_a + fy * (lo_c - lo_a);
            float vb = hi_a + fy * (hi_c - hi_a);
            coef[c] += wz[k] * (va + fx * (vb - va));
        }
    }
#pragma unroll
    for (int o = 0; o < 3; ++o) {
        float v = coef[o * BS_COLS] * px[0] + coef[o * BS_COLS + 1] * px[1] +
                  coef[o * BS_COLS + 2] * px[2] + coef[o * BS_COLS + 3];
        rgb[o * n + i] = fminf(fmaxf(v, 0.0f), 1.0f);
    }
}
