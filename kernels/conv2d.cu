// conv2d.cu: 2-D convolution (cross-correlation, PyTorch semantics) as an
// implicit GEMM, fp16 storage with fp32 accumulation.
//
//   out[n, co, oy, ox] = act(bias[co] + sum_k W[co, k] * X[n, k, (oy, ox)])
//   k = (ci * KH + ky) * KW + kx   (OIHW order, as src/nn/conv2d.rs)
//
// GEMM view: M = Cout, N = output pixels of one image, K = Cin*KH*KW. The
// im2col matrix is never built: each k-tile of X is gathered from the NCHW
// input straight into shared memory (zero or mirrored padding).
//
// Layouts:
//   x:    fp16 [N, Cin, H, W]
//   wgt:  fp16 [Cout, Kpad], row-major, K zero-padded to Kpad (a multiple
//         of 32) so that every 16-byte row load is aligned
//   bias: f32 [Cout]
//   out:  fp16 [N, Cout, Ho, Wo]
//
// Kernels:
// - conv2d_mma_f16: tensor cores through `mma.sync.m16n8k16` (sm_80+),
//   128 threads = 4 warps, block tile 64 (Cout) x 64 (pixels) x 32 (K),
//   each warp 32x32 = 2x4 MMA tiles. Tile sizes are tuned in
//   benches/cuda_stages.rs, not here.
// - conv2d_direct_f16: one thread per output value, any arch; the
//   on-device reference and the fallback for pre-Ampere GPUs.
// - cast_f32_f16 / cast_f16_f32: element-wise conversions.

#include "common.cuh"

#define CM_BM 64
#define CM_BN 64
#define CM_BK 32
#define CM_LD (CM_BK + 8)  // padded row: 80 bytes, 16-byte aligned, conflict-free fragment reads

// d += a * b for one m16n8k16 tile (row-major A, column-major B).
// RAWGRAPH_EMU (the host emulator, tests/emu): the scalar warp-collective
// MMA of tests/emu/cpp/runtime.cpp, which reads the fragments with the PTX
// ISA layout, so this kernel's tiling and fragment indexing run unchanged.
__device__ __forceinline__ void mma_16816(float d[4], const unsigned a[4], const unsigned b[2]) {
#if defined(RAWGRAPH_EMU)
    rawgraph_emu::mma_m16n8k16(d, a, b);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
}

// Input sample for tap k of output pixel (oy, ox), or 0 outside (zero pad).
__device__ __forceinline__ h16 gather(const h16* __restrict__ xin, int k, int K, int khw, int kw,
                                      int iy0, int ix0, int h, int w, int reflect) {
    if (k >= K) return 0;
    int ci = k / khw;
    int r = k - ci * khw;
    int ky = r / kw;
    int kx = r - ky * kw;
    int iy = iy0 + ky, ix = ix0 + kx;
    if (reflect) {
        iy = reflect_idx(iy, h);
        ix = reflect_idx(ix, w);
    } else if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
        return 0;
    }
    return xin[((size_t)ci * h + iy) * w + ix];
}

// Grid: (ceil(Ho*Wo / 64), ceil(Cout / 64), N); block: 128 threads.
extern "C" __global__ void __launch_bounds__(128)
conv2d_mma_f16(const h16* __restrict__ x, const h16* __restrict__ wgt,
               const float* __restrict__ bias, h16* __restrict__ out,
               int cin, int h, int w, int cout, int kh, int kw,
               int stride, int pad, int reflect, int ho, int wo,
               int K, int Kpad, int act, float slope) {
    __shared__ __align__(16) h16 As[CM_BM][CM_LD];
    __shared__ __align__(16) h16 Bs[CM_BN][CM_LD];
    const int tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 1, wn = warp & 1;
    const int gid = lane >> 2, tig = lane & 3;
    const int m0 = blockIdx.y * CM_BM;
    const int p0 = blockIdx.x * CM_BN;
    const int img = blockIdx.z;
    const int npix = ho * wo;
    const int khw = kh * kw;

    // This thread gathers pixel column `bn`, taps bk0 .. bk0 + 15 of each k-tile.
    const int bn = tid & (CM_BN - 1);
    const int bk0 = (tid >> 6) * 16;
    const int p = p0 + bn;
    const bool pvalid = p < npix;
    const int oy = pvalid ? p / wo : 0;
    const int ox = pvalid ? p - oy * wo : 0;
    const int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
    const h16* xin = x + (size_t)img * cin * h * w;

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    for (int k0 = 0; k0 < Kpad; k0 += CM_BK) {
        // A tile: 64 rows x 32 halves = 256 16-byte chunks, two per thread.
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            int idx = tid + j * 128;
            int row = idx >> 2, c8 = (idx & 3) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (m0 + row < cout) v = *reinterpret_cast<const uint4*>(wgt + (size_t)(m0 + row) * Kpad + k0 + c8);
            *reinterpret_cast<uint4*>(&As[row][c8]) = v;
        }
        // B tile: gathered taps, coalesced along output pixels.
#pragma unroll 4
        for (int j = 0; j < 16; ++j) {
            h16 v = pvalid ? gather(xin, k0 + bk0 + j, K, khw, kw, iy0, ix0, h, w, reflect) : (h16)0;
            Bs[bn][bk0 + j] = v;
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < CM_BK; ks += 16) {
            unsigned a[2][4], b[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                int r = wm * 32 + mi * 16 + gid;
                a[mi][0] = *reinterpret_cast<const unsigned*>(&As[r][ks + tig * 2]);
                a[mi][1] = *reinterpret_cast<const unsigned*>(&As[r + 8][ks + tig * 2]);
                a[mi][2] = *reinterpret_cast<const unsigned*>(&As[r][ks + tig * 2 + 8]);
                a[mi][3] = *reinterpret_cast<const unsigned*>(&As[r + 8][ks + tig * 2 + 8]);
            }
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                int c = wn * 32 + ni * 8 + gid;
                b[ni][0] = *reinterpret_cast<const unsigned*>(&Bs[c][ks + tig * 2]);
                b[ni][1] = *reinterpret_cast<const unsigned*>(&Bs[c][ks + tig * 2 + 8]);
            }
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) mma_16816(acc[mi][ni], a[mi], b[ni]);
        }
        __syncthreads();
    }

    // Epilogue: accumulator element e sits at row gid (+8 for e >= 2),
    // column tig*2 + (e & 1) of its 16x8 tile.
    h16* o = out + (size_t)img * cout * npix;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                int m = m0 + wm * 32 + mi * 16 + gid + (e >= 2 ? 8 : 0);
                int pp = p0 + wn * 32 + ni * 8 + tig * 2 + (e & 1);
                if (m < cout && pp < npix)
                    o[(size_t)m * npix + pp] = f32_to_h16(activate(acc[mi][ni][e] + __ldg(bias + m), act, slope));
            }
}

// Grid: (ceil(Ho*Wo / 128), Cout, N); block: 128 threads.
extern "C" __global__ void conv2d_direct_f16(const h16* __restrict__ x, const h16* __restrict__ wgt,
                                             const float* __restrict__ bias, h16* __restrict__ out,
                                             int cin, int h, int w, int cout, int kh, int kw,
                                             int stride, int pad, int reflect, int ho, int wo,
                                             int K, int Kpad, int act, float slope) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    int co = blockIdx.y;
    int img = blockIdx.z;
    int npix = ho * wo;
    if (p >= npix || co >= cout) return;
    int oy = p / wo, ox = p - oy * wo;
    int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
    const h16* xin = x + (size_t)img * cin * h * w;
    const h16* wr = wgt + (size_t)co * Kpad;
    int khw = kh * kw;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) {
        float xv = h16_to_f32(gather(xin, k, K, khw, kw, iy0, ix0, h, w, reflect));
        acc += h16_to_f32(wr[k]) * xv;
    }
    out[((size_t)img * cout + co) * npix + p] = f32_to_h16(activate(acc + __ldg(bias + co), act, slope));
}

// 1-D grid over n elements.
extern "C" __global__ void cast_f32_f16(const float* __restrict__ in, h16* __restrict__ out, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = f32_to_h16(in[i]);
}

extern "C" __global__ void cast_f16_f32(const h16* __restrict__ in, float* __restrict__ out, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = h16_to_f32(in[i]);
}
