// demosaic_menon.cu: Menon, Andriani & Calvagno 2007, "Demosaicing with
// directional filtering and a posteriori decision" (IEEE TIP), with the
// paper's refining step; the same passes and expressions as
// src/stages/demosaic_menon.rs.
//
// The CPU stage runs each tile mirror-padded by 12 pixels and lets every
// pass compute only the region its inputs cover (margins 2, 4, 6, 7, 8,
// then 9, 10, 11 for refining). Here the whole image is mirror-padded by
// MN_PAD = 12 once (menon_pad_f32), each pass is one kernel over the padded
// plane with the same margins, and menon_crop_f32 cuts the interior out,
// so every output pixel sees exactly the values the CPU computes.
//
// All planes are Wp x Hp f32 row-major (Wp = W + 24, Hp = H + 24); the
// padding is even, so the Bayer phase `cfa` of the image applies to padded
// coordinates unchanged. Grid: 2-D over the padded plane, one thread per
// pixel (menon_crop_f32: over the W x H image).

#include "common.cuh"

#define MN_PAD 12

__device__ __forceinline__ bool inside(int x, int y, int wp, int hp, int m) {
    return x >= m && x < wp - m && y >= m && y < hp - m;
}

__device__ __forceinline__ bool red_row(int cfa, int y) {
    return cfa_color(cfa, y, 0) == 0 || cfa_color(cfa, y, 1) == 0;
}

// in: W x H mosaic -> p: padded mosaic.
extern "C" __global__ void menon_pad_f32(const float* __restrict__ in, float* __restrict__ p, int w, int h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int wp = w + 2 * MN_PAD, hp = h + 2 * MN_PAD;
    if (x >= wp || y >= hp) return;
    int sx = reflect_idx(x - MN_PAD, w), sy = reflect_idx(y - MN_PAD, h);
    p[(size_t)y * wp + x] = in[(size_t)sy * w + sx];
}

// 1. Directional green estimates and colour differences (margin 2).
extern "C" __global__ void menon_green_f32(const float* __restrict__ s, float* __restrict__ gh,
                                           float* __restrict__ gv, float* __restrict__ ch,
                                           float* __restrict__ cv, int wp, int hp, int cfa) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp) return;
    size_t i = (size_t)y * wp + x;
    if (!inside(x, y, wp, hp, 2)) {
        gh[i] = 0.0f; gv[i] = 0.0f; ch[i] = 0.0f; cv[i] = 0.0f;
        return;
    }
    float v = s[i];
    float isg = cfa_color(cfa, y, x) == 1 ? 1.0f : 0.0f;
    float eh = 0.5f * (s[i - 1] + s[i + 1]) + 0.5f * v - 0.25f * (s[i - 2] + s[i + 2]);
    float ev = 0.5f * (s[i - wp] + s[i + wp]) + 0.5f * v - 0.25f * (s[i - 2 * wp] + s[i + 2 * wp]);
    float a = isg * v + (1.0f - isg) * eh;
    float b = isg * v + (1.0f - isg) * ev;
    gh[i] = a;
    gv[i] = b;
    ch[i] = (1.0f - isg) * (v - a);
    cv[i] = (1.0f - isg) * (v - b);
}

// 2. Gradients of the colour differences two pixels apart (rows and
// columns 2 .. n-4, as the CPU pass).
extern "C" __global__ void menon_grad_f32(const float* __restrict__ ch, const float* __restrict__ cv,
                                          float* __restrict__ dh, float* __restrict__ dv, int wp, int hp) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp) return;
    size_t i = (size_t)y * wp + x;
    if (x < 2 || x >= wp - 4 || y < 2 || y >= hp - 4) {
        dh[i] = 0.0f; dv[i] = 0.0f;
        return;
    }
    dh[i] = fabsf(ch[i] - ch[i + 2]);
    dv[i] = fabsf(cv[i] - cv[i + 2 * wp]);
}

// 3. The a-posteriori decision (margin 6): hz = 1 for horizontal.
extern "C" __global__ void menon_classify_f32(const float* __restrict__ dh, const float* __restrict__ dv,
                                              const float* __restrict__ gh, const float* __restrict__ gv,
                                              float* __restrict__ g, float* __restrict__ hz, int wp, int hp) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp) return;
    size_t i = (size_t)y * wp + x;
    if (!inside(x, y, wp, hp, 6)) {
        g[i] = 0.0f; hz[i] = 0.0f;
        return;
    }
    const float* h2 = dh + i + 2 * wp;
    const float* h1 = dh + i + wp;
    const float* h0 = dh + i;
    const float* hm1 = dh + i - wp;
    const float* hm2 = dh + i - 2 * wp;
    const float* v0 = dv + i;
    const float* vm1 = dv + i - wp;
    const float* vm2 = dv + i - 2 * wp;
    float sh = h2[0] + h2[-2] + h1[-1] + 3.0f * h0[0] + 3.0f * h0[-2] + hm1[-1] + hm2[0] + hm2[-2];
    float sv = v0[2] + vm2[2] + vm1[1] + 3.0f * v0[0] + 3.0f * vm2[0] + vm1[-1] + v0[-2] + vm2[-2];
    float k = sv >= sh ? 1.0f : 0.0f;
    hz[i] = k;
    g[i] = k * gh[i] + (1.0f - k) * gv[i];
}

// 4. R and B start as the masked CFA; at green sites (margin 7) they come
// from the colour differences of the direct neighbours.
extern "C" __global__ void menon_rb_green_f32(const float* __restrict__ s, const float* __restrict__ g,
                                              float* __restrict__ r, float* __restrict__ b,
                                              int wp, int hp, int cfa) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp) return;
    size_t i = (size_t)y * wp + x;
    int col = cfa_color(cfa, y, x);
    float rv = (col == 0 ? 1.0f : 0.0f) * s[i];
    float bv = (col == 2 ? 1.0f : 0.0f) * s[i];
    if (inside(x, y, wp, hp, 7)) {
        float isg = col == 1 ? 1.0f : 0.0f;
        float hd = 0.5f * (s[i - 1] + s[i + 1]) - 0.5f * (g[i - 1] + g[i + 1]);
        float vd = 0.5f * (s[i - wp] + s[i + wp]) - 0.5f * (g[i - wp] + g[i + wp]);
        bool rr = red_row(cfa, y);
        float rn = g[i] + (rr ? hd : vd);
        float bn = g[i] + (rr ? vd : hd);
        rv = isg * rn + (1.0f - isg) * rv;
        bv = isg * bn + (1.0f - isg) * bv;
    }
    r[i] = rv;
    b[i] = bv;
}

// 5. R at B and B at R sites along the chosen direction (margin 8), in
// place: it reads only green-site neighbours, which it never writes.
extern "C" __global__ void menon_rb_cross_f32(float* r, float* b, const float* __restrict__ hz,
                                              int wp, int hp, int cfa) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp || !inside(x, y, wp, hp, 8)) return;
    size_t i = (size_t)y * wp + x;
    int col = cfa_color(cfa, y, x);
    if (col == 1) return;
    float isr = col == 0 ? 1.0f : 0.0f, isb = col == 2 ? 1.0f : 0.0f, k = hz[i];
    float rh = 0.5f * (r[i - 1] + r[i + 1]);
    float rv = 0.5f * (r[i - wp] + r[i + wp]);
    float bh = 0.5f * (b[i - 1] + b[i + 1]);
    float bv = 0.5f * (b[i - wp] + b[i + wp]);
    float rd = k * (rh - bh) + (1.0f - k) * (rv - bv);
    float ri = isb * (b[i] + rd) + (1.0f - isb) * r[i];
    float bi = isr * (ri - rd) + (1.0f - isr) * b[i];
    r[i] = ri;
    b[i] = bi;
}

// Refining 1: green at R and B sites (margin 9), g -> g2 (out of place).
extern "C" __global__ void menon_refine_g_f32(const float* __restrict__ r, const float* __restrict__ g,
                                              const float* __restrict__ b, const float* __restrict__ hz,
                                              float* __restrict__ g2, int wp, int hp, int cfa) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp) return;
    size_t i = (size_t)y * wp + x;
    if (!inside(x, y, wp, hp, 9)) {
        g2[i] = g[i];
        return;
    }
    const float third = 1.0f / 3.0f;
    int col = cfa_color(cfa, y, x);
    float mr = col == 0 ? 1.0f : 0.0f, mg = col == 1 ? 1.0f : 0.0f, mb = col == 2 ? 1.0f : 0.0f;
    float k = hz[i];
#define RG(j) (r[j] - g[j])
#define BG(j) (b[j] - g[j])
    float frg = k * (RG(i - 1) + RG(i) + RG(i + 1)) * third + (1.0f - k) * (RG(i - wp) + RG(i) + RG(i + wp)) * third;
    float fbg = k * (BG(i - 1) + BG(i) + BG(i + 1)) * third + (1.0f - k) * (BG(i - wp) + BG(i) + BG(i + wp)) * third;
#undef RG
#undef BG
    g2[i] = mr * (r[i] - frg) + mb * (b[i] - fbg) + mg * g[i];
}

// Refining 2: R and B at green sites (margin 10), in place (reads only
// non-green neighbours).
extern "C" __global__ void menon_refine_rb_green_f32(float* r, const float* __restrict__ g, float* b,
                                                     int wp, int hp, int cfa) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp || !inside(x, y, wp, hp, 10)) return;
    size_t i = (size_t)y * wp + x;
    if (cfa_color(cfa, y, x) != 1) return;
#define RG(j) (r[j] - g[j])
#define BG(j) (b[j] - g[j])
    float rh = 0.5f * (RG(i - 1) + RG(i + 1)), rv = 0.5f * (RG(i - wp) + RG(i + wp));
    float bh = 0.5f * (BG(i - 1) + BG(i + 1)), bv = 0.5f * (BG(i - wp) + BG(i + wp));
#undef RG
#undef BG
    bool rr = red_row(cfa, y);
    r[i] = g[i] + (rr ? rh : rv);
    b[i] = g[i] + (rr ? bv : bh);
}

// Refining 3: R at B and B at R sites (margin 11), in place (reads only
// green neighbours).
extern "C" __global__ void menon_refine_rb_cross_f32(float* r, float* b, const float* __restrict__ hz,
                                                     int wp, int hp, int cfa) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= wp || y >= hp || !inside(x, y, wp, hp, 11)) return;
    size_t i = (size_t)y * wp + x;
    int col = cfa_color(cfa, y, x);
    if (col == 1) return;
    const float third = 1.0f / 3.0f;
    float k = hz[i];
#define RB(j) (r[j] - b[j])
    float f = k * (RB(i - 1) + RB(i) + RB(i + 1)) * third + (1.0f - k) * (RB(i - wp) + RB(i) + RB(i + wp)) * third;
#undef RB
    float mb = col == 2 ? 1.0f : 0.0f, mr = col == 0 ? 1.0f : 0.0f;
    float ri = mb * (b[i] + f) + (1.0f - mb) * r[i];
    float bi = mr * (ri - f) + (1.0f - mr) * b[i];
    r[i] = ri;
    b[i] = bi;
}

// Interior of the padded R, G, B planes -> out: 3 planes of W x H.
extern "C" __global__ void menon_crop_f32(const float* __restrict__ r, const float* __restrict__ g,
                                          const float* __restrict__ b, float* __restrict__ out, int w, int h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    int wp = w + 2 * MN_PAD;
    size_t s = (size_t)(y + MN_PAD) * wp + x + MN_PAD;
    size_t n = (size_t)w * h, i = (size_t)y * w + x;
    out[i] = r[s];
    out[n + i] = g[s];
    out[2 * n + i] = b[s];
}
