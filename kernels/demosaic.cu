// demosaic.cu: classical Bayer demosaicing, one thread per output pixel.
//
// - demosaic_bilinear_f32: bilinear interpolation of each colour plane
//   (green [0 1 0; 1 4 1; 0 1 0]/4, red/blue [1 2 1; 2 4 2; 1 2 1]/4).
// - demosaic_mhc_f32: Malvar, He & Cutler 2004, "High-quality linear
//   interpolation for demosaicing of Bayer-patterned color images"
//   (ICASSP): bilinear plus a Laplacian correction, four fixed 5x5 kernels.
//
// Both read a 2-D tile of the mosaic with a 2-pixel halo into shared memory
// (mirrored at the image border without repeating the edge sample, which
// keeps the Bayer parity, as the CPU backend), then evaluate the same
// expressions as src/stages/demosaic_{bilinear,mhc}.rs.
//
// in: W*H f32 row-major mosaic. out: 3 planes (R, G, B) of W*H f32.
// Block: (DM_BX, DM_BY) threads; grid: ceil(W/DM_BX) x ceil(H/DM_BY).

#include "common.cuh"

#define DM_BX 32
#define DM_BY 8
#define DM_HALO 2
#define DM_TW (DM_BX + 2 * DM_HALO)
#define DM_TH (DM_BY + 2 * DM_HALO)

// Loads the block's tile (with halo) into `t` and syncs.
__device__ __forceinline__ void load_tile(const float* __restrict__ in, int w, int h,
                                          float t[DM_TH][DM_TW]) {
    int x0 = blockIdx.x * DM_BX - DM_HALO;
    int y0 = blockIdx.y * DM_BY - DM_HALO;
    int tid = threadIdx.y * DM_BX + threadIdx.x;
    for (int k = tid; k < DM_TW * DM_TH; k += DM_BX * DM_BY) {
        int ty = k / DM_TW, tx = k - ty * DM_TW;
        int sy = reflect_idx(y0 + ty, h), sx = reflect_idx(x0 + tx, w);
        t[ty][tx] = __ldg(in + (size_t)sy * w + sx);
    }
    __syncthreads();
}

extern "C" __global__ void demosaic_bilinear_f32(const float* __restrict__ in, float* __restrict__ out,
                                                 int w, int h, int cfa) {
    __shared__ float t[DM_TH][DM_TW];
    load_tile(in, w, h, t);
    int x = blockIdx.x * DM_BX + threadIdx.x;
    int y = blockIdx.y * DM_BY + threadIdx.y;
    if (x >= w || y >= h) return;
    int tx = threadIdx.x + DM_HALO, ty = threadIdx.y + DM_HALO;
    float c = t[ty][tx];
    float hz = 0.5f * (t[ty][tx - 1] + t[ty][tx + 1]);
    float vt = 0.5f * (t[ty - 1][tx] + t[ty + 1][tx]);
    float r, g, b;
    int col = cfa_color(cfa, y, x);
    if (col == 1) {
        bool red_row = cfa_color(cfa, y, x + 1) == 0;
        g = c;
        r = red_row ? hz : vt;
        b = red_row ? vt : hz;
    } else {
        float cross = 0.5f * (hz + vt);
        float diag = 0.25f * (t[ty - 1][tx - 1] + t[ty - 1][tx + 1] + t[ty + 1][tx - 1] + t[ty + 1][tx + 1]);
        g = cross;
        r = col == 0 ? c : diag;
        b = col == 0 ? diag : c;
    }
    size_t n = (size_t)w * h, i = (size_t)y * w + x;
    out[i] = r;
    out[n + i] = g;
    out[2 * n + i] = b;
}

extern "C" __global__ void demosaic_mhc_f32(const float* __restrict__ in, float* __restrict__ out,
                                            int w, int h, int cfa) {
    __shared__ float t[DM_TH][DM_TW];
    load_tile(in, w, h, t);
    int x = blockIdx.x * DM_BX + threadIdx.x;
    int y = blockIdx.y * DM_BY + threadIdx.y;
    if (x >= w || y >= h) return;
    int tx = threadIdx.x + DM_HALO, ty = threadIdx.y + DM_HALO;
    float c0 = t[ty][tx];
    float h1 = t[ty][tx - 1] + t[ty][tx + 1];
    float v1 = t[ty - 1][tx] + t[ty + 1][tx];
    float h2 = t[ty][tx - 2] + t[ty][tx + 2];
    float v2 = t[ty - 2][tx] + t[ty + 2][tx];
    float diag = t[ty - 1][tx - 1] + t[ty - 1][tx + 1] + t[ty + 1][tx - 1] + t[ty + 1][tx + 1];
    float r, g, b;
    int col = cfa_color(cfa, y, x);
    if (col == 1) {
        float at_h = (5.0f * c0 + 4.0f * h1 - diag - h2 + 0.5f * v2) * 0.125f;
        float at_v = (5.0f * c0 + 4.0f * v1 - diag - v2 + 0.5f * h2) * 0.125f;
        bool red_row = cfa_color(cfa, y, x + 1) == 0;
        g = c0;
        r = red_row ? at_h : at_v;
        b = red_row ? at_v : at_h;
    } else {
        float gv = (4.0f * c0 + 2.0f * (h1 + v1) - (h2 + v2)) * 0.125f;
        float other = (6.0f * c0 + 2.0f * diag - 1.5f * (h2 + v2)) * 0.125f;
        g = gv;
        r = col == 0 ? c0 : other;
        b = col == 0 ? other : c0;
    }
    size_t n = (size_t)w * h, i = (size_t)y * w + x;
    out[i] = r;
    out[n + i] = g;
    out[2 * n + i] = b;
}
