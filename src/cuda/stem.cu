/* kiln CUDA backend: the stem convolution of an image network, float16 channels-last with
 * few input channels (an RGB image: 3), bias and activation fused.
 *
 * cuDNN has no good kernel for 3 input channels: kiln pads them to 8 in a pass, and the
 * best engine then runs the 3x3, 64-filter stem of a UNet at batch 8, 512x512, in about
 * 270 us where writing its 268 MB output takes 56 us. The work is an implicit GEMM with a
 * reduction of only kh*kw*c (27) terms, so here that reduction, zero-padded to a multiple of
 * 16 (at most 128), is gathered straight from the unpadded input into the tensor cores'
 * A fragments (no shared-memory staging: the input is 21x smaller than the output and stays
 * in L1/L2), the weights are read as B fragments from a [k, kp] copy, mma.sync m16n8k16
 * accumulates in float32, and the epilogue (bias, activation) goes through shared memory so
 * that every store is 16 bytes and each block's rows leave as whole lines. A block: 128
 * output pixels (4 warps of 32) by 64 filters; blockIdx.y walks the filters in 64s. */
#include "cuda/kcu_device.cuh"

#define ST_BM 128
#define ST_BN 64
#define ST_THREADS 128
#define ST_LD (ST_BN + 8) /* staged output row, in halves: rows 16 bytes apart in banks */

__device__ __forceinline__ unsigned st_pack(__half lo, __half hi) {
    __half2 v = __halves2half2(lo, hi);
    return *reinterpret_cast<unsigned *>(&v);
}

/* KS: reduction steps of 16 (kp = 16 * KS). */
template <int KS, int ACT>
__global__ void __launch_bounds__(ST_THREADS) k_stem(kcu_stem p, const __half *__restrict__ x,
                                                     const __half *__restrict__ w, const float *__restrict__ bias,
                                                     __half *__restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    /* tap table: reduction index kk -> (row offset, column offset, channel), -1 past kh*kw*c */
    __shared__ int tab[16 * KS];
    __shared__ __align__(16) __half out[ST_BM * ST_LD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int M = p.m, m0 = blockIdx.x * ST_BM, n0 = blockIdx.y * ST_BN;
    for (int kk = tid; kk < 16 * KS; kk += ST_THREADS) {
        int v = -1;
        if (kk < p.kh * p.kw * p.c) {
            int tap = kk / p.c, ch = kk - tap * p.c, r = tap / p.kw, s = tap - r * p.kw;
            v = (r * p.dh) << 20 | (s * p.dw) << 8 | ch;
        }
        tab[kk] = v;
    }
    /* this thread's 4 output pixels: rows g and g + 8 of the warp's two m16 tiles */
    const __half *img[4];
    int iy0[4], ix0[4];
    #pragma unroll
    for (int q = 0; q < 4; q++) {
        int m = m0 + warp * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
        bool ok = m < M;
        int mm = ok ? m : 0;
        int ox = mm % p.ow, t = mm / p.ow, oy = t % p.oh, n = t / p.oh;
        img[q] = x + (int64_t)n * p.h * p.w * p.c;
        iy0[q] = ok ? oy * p.sh - p.pt : -(1 << 28); /* a pixel past the end reads zeros */
        ix0[q] = ox * p.sw - p.pl;
    }
    __syncthreads();

    float acc[2][8][4];
    #pragma unroll
    for (int i = 0; i < 2; i++)
        #pragma unroll
        for (int j = 0; j < 8; j++)
            #pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    const __half zero = __float2half(0.0f);
    #pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        /* A: pixel q's values at kk = 16ks + 2t4 + {0, 1, 8, 9} */
        __half av[4][4];
        #pragma unroll
        for (int e = 0; e < 4; e++) {
            int code = tab[ks * 16 + 2 * t4 + (e & 1) + (e >> 1) * 8];
            int dy = code >> 20, dx = (code >> 8) & 0xFFF, ch = code & 0xFF;
            #pragma unroll
            for (int q = 0; q < 4; q++) {
                int iy = iy0[q] + dy, ix = ix0[q] + dx;
                bool in = code >= 0 && iy >= 0 && iy < p.h && ix >= 0 && ix < p.w;
                av[q][e] = in ? img[q][((int64_t)iy * p.w + ix) * p.c + ch] : zero;
            }
        }
        unsigned a[2][4];
        #pragma unroll
        for (int i = 0; i < 2; i++) {
            a[i][0] = st_pack(av[2 * i][0], av[2 * i][1]);         /* row g, k 2t4..+1 */
            a[i][1] = st_pack(av[2 * i + 1][0], av[2 * i + 1][1]); /* row g + 8 */
            a[i][2] = st_pack(av[2 * i][2], av[2 * i][3]);         /* row g, k 2t4 + 8..+9 */
            a[i][3] = st_pack(av[2 * i + 1][2], av[2 * i + 1][3]);
        }
        #pragma unroll
        for (int j = 0; j < 8; j++) {
            int col = n0 + j * 8 + g;
            unsigned b0 = 0, b1 = 0;
            if (col < p.k) {
                const __half *wr = w + (int64_t)col * (16 * KS) + ks * 16 + 2 * t4;
                b0 = *reinterpret_cast<const unsigned *>(wr);
                b1 = *reinterpret_cast<const unsigned *>(wr + 8);
            }
            kcu_mma16816(acc[0][j], a[0], b0, b1);
            kcu_mma16816(acc[1][j], a[1], b0, b1);
        }
    }

    /* epilogue: bias and activation into the staged tile, then 16-byte stores */
    #pragma unroll
    for (int j = 0; j < 8; j++) {
        int c = j * 8 + 2 * t4, col = n0 + c;
        float b0 = col < p.k ? bias[col] : 0.0f, b1 = col + 1 < p.k ? bias[col + 1] : 0.0f;
        #pragma unroll
        for (int i = 0; i < 2; i++)
            #pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = warp * 32 + i * 16 + h * 8 + g;
                __half2 v = __floats2half2_rn(kcu_epi_act<ACT>(p.act, acc[i][j][2 * h] + b0),
                                              kcu_epi_act<ACT>(p.act, acc[i][j][2 * h + 1] + b1));
                *reinterpret_cast<__half2 *>(out + row * ST_LD + c) = v;
            }
    }
    __syncthreads();
    for (int q = tid; q < ST_BM * (ST_BN / 8); q += ST_THREADS) {
        int row = q / (ST_BN / 8), c = (q % (ST_BN / 8)) * 8, m = m0 + row;
        if (m >= M || n0 + c >= p.k) continue;
        *reinterpret_cast<uint4 *>(y + (int64_t)m * p.ldy + n0 + c) = *reinterpret_cast<const uint4 *>(out + row * ST_LD + c);
    }
#endif
}

/* The shapes the kernel takes: few input channels, a reduction of at most 128, filters a
 * multiple of 8, 32-bit pixel indices, offsets that fit the tap table's fields. */
static bool st_shape_ok(const kcu_stem *p) {
    int64_t red = (int64_t)p->kh * p->kw * p->c;
    int64_t m = (int64_t)p->n * p->oh * p->ow;
    return p->c >= 1 && p->c <= 8 && p->k >= 8 && p->k % 8 == 0 && red >= 1 && red <= 128 &&
           p->kp == (int)((red + 15) / 16 * 16) && m == p->m && m <= INT32_MAX - ST_BM &&
           (int64_t)p->h * p->w * p->c < INT32_MAX && (p->kh - 1) * p->dh < 2048 && (p->kw - 1) * p->dw < 4096 &&
           p->sh >= 1 && p->sw >= 1 && p->dh >= 1 && p->dw >= 1 && (p->k + ST_BN - 1) / ST_BN <= 65535 &&
           (p->ldy == 0 || (p->ldy >= p->k && p->ldy % 8 == 0));
}

extern "C" int kcu_stem_applies(const kcu_stem *p) {
    return kcu_device_sm80() && st_shape_ok(p);
}

template <int KS>
static cudaError_t st_launch(cudaStream_t s, const kcu_stem *p, const __half *x, const __half *w, const float *bias,
                             __half *y) {
    dim3 grid((unsigned)((p->m + ST_BM - 1) / ST_BM), (unsigned)((p->k + ST_BN - 1) / ST_BN));
    int act = !p->has_act ? KCU_EPI_NONE : p->act.type == KILN_ACT_RELU ? KCU_EPI_RELU : KCU_EPI_ANY;
    if (act == KCU_EPI_NONE) k_stem<KS, KCU_EPI_NONE><<<grid, ST_THREADS, 0, s>>>(*p, x, w, bias, y);
    else if (act == KCU_EPI_RELU) k_stem<KS, KCU_EPI_RELU><<<grid, ST_THREADS, 0, s>>>(*p, x, w, bias, y);
    else k_stem<KS, KCU_EPI_ANY><<<grid, ST_THREADS, 0, s>>>(*p, x, w, bias, y);
    return kcu_launched();
}

extern "C" cudaError_t kcu_stem_run(cudaStream_t s, const kcu_stem *shape, const void *x, const void *w,
                                    const float *bias, void *y) {
    if (!st_shape_ok(shape) || !bias || ((uintptr_t)y | (uintptr_t)w) % 16) return cudaErrorInvalidValue;
    kcu_stem q = *shape;
    if (!q.ldy) q.ldy = q.k;
    const __half *xh = (const __half *)x, *wh = (const __half *)w;
    __half *yh = (__half *)y;
    switch (q.kp / 16) {
    case 1: return st_launch<1>(s, &q, xh, wh, bias, yh);
    case 2: return st_launch<2>(s, &q, xh, wh, bias, yh);
    case 3: return st_launch<3>(s, &q, xh, wh, bias, yh);
    case 4: return st_launch<4>(s, &q, xh, wh, bias, yh);
    case 5: return st_launch<5>(s, &q, xh, wh, bias, yh);
    case 6: return st_launch<6>(s, &q, xh, wh, bias, yh);
    case 7: return st_launch<7>(s, &q, xh, wh, bias, yh);
    default: return st_launch<8>(s, &q, xh, wh, bias, yh);
    }
}
