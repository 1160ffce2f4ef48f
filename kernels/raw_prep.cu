// raw_prep.cu: the fused classical front end on the Bayer mosaic:
// black level (per-site repeat pattern) -> normalise to white = 1 ->
// optional clip of negatives -> white-balance gains -> highlight clip.
// One pass, one read and one write per photosite; the `black_level` and
// `white_balance` stages each launch it with their part enabled, the
// fused chain launches it once with both.
//
// out = ((v - b) / (white[c] - b)) [max 0] * gain[c] [min 1]
// with b = black[(y % rh) * rw + (x % rw)], c = cfa_color(y, x).

#include "common.cuh"

#define PREP_BLACK 1        // subtract black, normalise by white
#define PREP_CLIP_NEG 2     // clamp negatives to 0 (after black)
#define PREP_GAINS 4        // multiply by gain[c]
#define PREP_CLIP_HI 8      // clamp to 1 after the gains

// in, out: W*H f32 row-major (may alias). black: rw*rh f32 (DN).
// white, gain: 3 f32 each (R, G, B). Grid: 2-D, one thread per photosite.
extern "C" __global__ void raw_prep_f32(const float* in, float* out,
                                        int w, int h,
                                        const float* __restrict__ black, int rw, int rh,
                                        float white_r, float white_g, float white_b,
                                        float gain_r, float gain_g, float gain_b,
                                        int cfa, int flags) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    size_t i = (size_t)y * w + x;
    int c = cfa_color(cfa, y, x);
    float v = in[i];
    if (flags & PREP_BLACK) {
        float b = __ldg(black + (y % rh) * rw + (x % rw));
        float wl = c == 0 ? white_r : (c == 1 ? white_g : white_b);
        float s = 1.0f / (wl - b);
        v = v * s + (-b * s);
        if (flags & PREP_CLIP_NEG) v = fmaxf(v, 0.0f);
    }
    if (flags & PREP_GAINS) {
        v *= c == 0 ? gain_r : (c == 1 ? gain_g : gain_b);
        if (flags & PREP_CLIP_HI) v = fminf(v, 1.0f);
    }
    out[i] = v;
}

// Same as raw_prep_f32 from 16-bit DN (half the upload of an f32 mosaic).
extern "C" __global__ void raw_prep_u16(const unsigned short* __restrict__ in, float* out,
                                        int w, int h,
                                        const float* __restrict__ black, int rw, int rh,
                                        float white_r, float white_g, float white_b,
                                        float gain_r, float gain_g, float gain_b,
                                        int cfa, int flags) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    size_t i = (size_t)y * w + x;
    int c = cfa_color(cfa, y, x);
    float v = (float)in[i];
    if (flags & PREP_BLACK) {
        float b = __ldg(black + (y % rh) * rw + (x % rw));
        float wl = c == 0 ? white_r : (c == 1 ? white_g : white_b);
        float s = 1.0f / (wl - b);
        v = v * s + (-b * s);
        if (flags & PREP_CLIP_NEG) v = fmaxf(v, 0.0f);
    }
    if (flags & PREP_GAINS) {
        v *= c == 0 ? gain_r : (c == 1 ? gain_g : gain_b);
        if (flags & PREP_CLIP_HI) v = fminf(v, 1.0f);
    }
    out[i] = v;
}
