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
 * output pixels (4 warps of 32) by 64 filters; blockIdx.y walks the filters in 64s.
 *
 * The strided form (kcu_stem_setup): ResNet's 7x7/2 stem has a 147-term reduction, and
 * gathering it per pixel costs more than cuDNN's 0.76 ms at batch 256 (H200), 8x the time
 * its 411 MB output takes to write. There a block stages the input patch of a tile of 8 x
 * 16 output pixels in shared memory, its channels padded to 4 (8 bytes a pixel), and the
 * reduction runs per filter row over 8 taps x 4 channels (two k16 steps; taps past kw have
 * zero weights): at stride 2 the 16-byte run of two taps of every pixel of the tile starts
 * on an even patch column, so ldmatrix reads the A fragments straight from the patch, with
 * no per-element gathering; the weights stay in shared memory, read with ldmatrix too, and
 * the grid is persistent. (An input NaN or infinity may also reach the output beside the
 * ones whose window holds it: the zero-weight taps read real pixels.) */
#include "cuda/kcu_pdl.cuh"

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

/* ---- the strided form ---- */

#define S2_TH 8                        /* a tile: 8 rows of 16 output pixels */
#define S2_TW 16
#define S2_PC ((S2_TW - 1) * 2 + 8)    /* patch columns: the tile's taps at stride 2, 8 a row */
#define S2_THREADS 128                 /* 4 warps, two tile rows (two m16 tiles) each */

/* Shared memory of the strided form: weights [bn][kp + 8], the patch, the staged output. */
static size_t s2_smem(const kcu_stem *p, int bn) {
    int prow = (S2_TH - 1) * p->sh + p->kh;
    return (size_t)bn * (p->kp + 8) * 2 + (size_t)prow * S2_PC * 8 + (size_t)S2_TH * S2_TW * (bn + 8) * 2;
}

/* NT: filters of a block in 8s (4 or 8). */
template <int NT, int ACT>
__global__ void __launch_bounds__(S2_THREADS) k_stem_s2(kcu_stem p, int tiles_w, int tiles_h, int tiles,
                                                        const __half *__restrict__ x, const __half *__restrict__ w,
                                                        const float *__restrict__ bias, __half *__restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    constexpr int BN = NT * 8, OLD = BN + 8;
    extern __shared__ __align__(16) uint8_t s2_raw[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
    const int kp = p.kp, wld = kp + 8; /* a weight row in halves: 4*kh + 1 (odd) 16-byte units, no bank conflicts */
    const int prow = (S2_TH - 1) * p.sh + p.kh, n0 = blockIdx.y * BN;
    __half *ws = reinterpret_cast<__half *>(s2_raw);
    uint2 *patch = reinterpret_cast<uint2 *>(s2_raw + (size_t)BN * wld * 2);
    __half *out = reinterpret_cast<__half *>(s2_raw + (size_t)BN * wld * 2 + (size_t)prow * S2_PC * 8);
    for (int i = tid; i < BN * (kp / 8); i += S2_THREADS) { /* this block's filters, zero rows past k */
        int n = i / (kp / 8), c8 = i - n * (kp / 8);
        uint4 v = make_uint4(0, 0, 0, 0);
        if (n0 + n < p.k) v = *reinterpret_cast<const uint4 *>(w + (int64_t)(n0 + n) * kp + c8 * 8);
        *reinterpret_cast<uint4 *>(ws + n * wld + c8 * 8) = v;
    }
    float2 bv[NT];
    #pragma unroll
    for (int j = 0; j < NT; j++) {
        int col = n0 + j * 8 + 2 * t4;
        bv[j] = make_float2(col < p.k ? bias[col] : 0.0f, col + 1 < p.k ? bias[col + 1] : 0.0f);
    }
    const unsigned wsm = (unsigned)__cvta_generic_to_shared(ws), psm = (unsigned)__cvta_generic_to_shared(patch);
    /* ldmatrix rows: A row = output column dx of the m16 tile, its taps' 16-byte half kh8;
     * B row = filter (lane & 7) of n8 tile pair member lane >> 4, k half (lane >> 3) & 1 */
    const int dx = lane & 15, kh8 = lane >> 4;
    const unsigned b_lane = wsm + (unsigned)(((8 * (lane >> 4) + (lane & 7)) * wld + 8 * ((lane >> 3) & 1)) * 2);
    const __half zero = __float2half(0.0f);
    kcu_pdl_wait(); /* the weights are staged; the input is the previous kernel's output (kcu_pdl.cuh) */
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        int tx = t % tiles_w, rest = t / tiles_w, ty = rest % tiles_h, img = rest / tiles_h;
        int oy0 = ty * S2_TH, ox0 = tx * S2_TW, iy0 = oy0 * p.sh - p.pt, ix0 = ox0 * 2 - p.pl;
        const __half *xi = x + (int64_t)img * p.h * p.w * p.c;
        __syncthreads(); /* the previous tile's patch and staged output are read */
        for (int i = tid; i < prow * S2_PC; i += S2_THREADS) {
            int pr = i / S2_PC, pc = i - pr * S2_PC, iy = iy0 + pr, ix = ix0 + pc;
            __half v[4] = {zero, zero, zero, zero};
            if (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w) {
                const __half *src = xi + ((int64_t)iy * p.w + ix) * p.c;
                #pragma unroll
                for (int ch = 0; ch < 4; ch++)
                    if (ch < p.c) v[ch] = src[ch];
            }
            __half2 lo = __halves2half2(v[0], v[1]), hi = __halves2half2(v[2], v[3]);
            patch[i] = make_uint2(*reinterpret_cast<unsigned *>(&lo), *reinterpret_cast<unsigned *>(&hi));
        }
        __syncthreads();
        float acc[2][NT][4];
        #pragma unroll
        for (int i = 0; i < 2; i++)
            #pragma unroll
            for (int j = 0; j < NT; j++)
                #pragma unroll
                for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
        for (int r = 0; r < p.kh; r++) {
            #pragma unroll
            for (int h = 0; h < 2; h++) { /* taps 4h..4h+3 of filter row r */
                unsigned a[2][4];
                #pragma unroll
                for (int i = 0; i < 2; i++) {
                    int pr = (2 * warp + i) * p.sh + r;
                    kcu_ldsm4(psm + (unsigned)((pr * S2_PC + 2 * dx + 4 * h + 2 * kh8) * 8), a[i]);
                }
                #pragma unroll
                for (int j = 0; j < NT; j += 2) {
                    unsigned b[4];
                    kcu_ldsm4(b_lane + (unsigned)((8 * j * wld + r * 32 + h * 16) * 2), b);
                    #pragma unroll
                    for (int i = 0; i < 2; i++) {
                        kcu_mma16816(acc[i][j], a[i], b[0], b[1]);
                        kcu_mma16816(acc[i][j + 1], a[i], b[2], b[3]);
                    }
                }
            }
        }
        /* bias and activation into the staged tile (row: the pixel 16*tile row + column) */
        #pragma unroll
        for (int i = 0; i < 2; i++)
            #pragma unroll
            for (int j = 0; j < NT; j++)
                #pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int row = (2 * warp + i) * S2_TW + g + 8 * hh;
                    __half2 v = __floats2half2_rn(kcu_epi_act<ACT>(p.act, acc[i][j][2 * hh] + bv[j].x),
                                                  kcu_epi_act<ACT>(p.act, acc[i][j][2 * hh + 1] + bv[j].y));
                    *reinterpret_cast<__half2 *>(out + row * OLD + j * 8 + 2 * t4) = v;
                }
        __syncthreads();
        for (int q = tid; q < S2_TH * S2_TW * NT; q += S2_THREADS) { /* 16-byte stores, a pixel's filters in a run */
            int row = q / NT, c8 = q - row * NT, oy = oy0 + row / S2_TW, ox = ox0 + row % S2_TW;
            if (oy >= p.oh || ox >= p.ow || n0 + c8 * 8 >= p.k) continue;
            *reinterpret_cast<uint4 *>(y + (((int64_t)img * p.oh + oy) * p.ow + ox) * p.ldy + n0 + c8 * 8) =
                *reinterpret_cast<const uint4 *>(out + row * OLD + c8 * 8);
        }
    }
#endif
}

/* The shapes the kernel takes: few input channels, filters a multiple of 8, 32-bit pixel
 * indices; packed: a reduction of at most 128 and offsets that fit the tap table's fields;
 * strided: as kcu_stem_setup says, a tile count within 32 bits. */
static bool st_shape_ok(const kcu_stem *p) {
    int64_t red = (int64_t)p->kh * p->kw * p->c;
    int64_t m = (int64_t)p->n * p->oh * p->ow;
    bool common = p->c >= 1 && p->c <= 8 && p->k >= 8 && p->k % 8 == 0 && red >= 1 && m == p->m &&
                  m <= INT32_MAX - ST_BM && (int64_t)p->h * p->w * p->c < INT32_MAX && p->sh >= 1 && p->sw >= 1 &&
                  p->dh >= 1 && p->dw >= 1 && (p->k + ST_BN - 1) / ST_BN <= 65535 &&
                  (p->ldy == 0 || (p->ldy >= p->k && p->ldy % 8 == 0));
    if (!common) return false;
    kcu_stem q = *p;
    kcu_stem_setup(&q);
    if (q.s2 != p->s2 || q.kp != p->kp) return false;
    if (p->s2)
        return (int64_t)p->n * ((p->oh + S2_TH - 1) / S2_TH) * ((p->ow + S2_TW - 1) / S2_TW) <= INT32_MAX &&
               p->pt >= 0 && p->pl >= 0;
    return red <= 128 && (p->kh - 1) * p->dh < 2048 && (p->kw - 1) * p->dw < 4096;
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

template <int NT, int ACT>
static cudaError_t s2_launch_act(cudaStream_t s, const kcu_stem *p, const __half *x, const __half *w,
                                 const float *bias, __half *y) {
    size_t smem = s2_smem(p, NT * 8);
    int dev = 0, sms = 0, per = 0;
    cudaError_t e = cudaFuncSetAttribute(k_stem_s2<NT, ACT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e == cudaSuccess) e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, k_stem_s2<NT, ACT>, S2_THREADS, smem);
    if (e != cudaSuccess) return e;
    if (per < 1) return cudaErrorInvalidConfiguration;
    int tiles_w = (p->ow + S2_TW - 1) / S2_TW, tiles_h = (p->oh + S2_TH - 1) / S2_TH;
    int tiles = p->n * tiles_w * tiles_h, nb = (p->k + NT * 8 - 1) / (NT * 8);
    /* persistent: every SM full, the filter blocks side by side */
    int64_t ctas = (int64_t)per * sms / nb;
    if (ctas < 1) ctas = 1;
    if (ctas > tiles) ctas = tiles;
    return kcu_pdl_launch(k_stem_s2<NT, ACT>, dim3((unsigned)ctas, (unsigned)nb), dim3(S2_THREADS), smem, s, *p,
                          tiles_w, tiles_h, tiles, x, w, bias, y);
}

template <int NT>
static cudaError_t s2_launch(cudaStream_t s, const kcu_stem *p, const __half *x, const __half *w, const float *bias,
                             __half *y) {
    switch (kcu_epi_kind(p->has_act, p->act)) {
    case KCU_EPI_NONE: return s2_launch_act<NT, KCU_EPI_NONE>(s, p, x, w, bias, y);
    case KCU_EPI_RELU: return s2_launch_act<NT, KCU_EPI_RELU>(s, p, x, w, bias, y);
    case KCU_EPI_SILU: return s2_launch_act<NT, KCU_EPI_SILU>(s, p, x, w, bias, y);
    default: return s2_launch_act<NT, KCU_EPI_ANY>(s, p, x, w, bias, y);
    }
}

extern "C" cudaError_t kcu_stem_run(cudaStream_t s, const kcu_stem *shape, const void *x, const void *w,
                                    const float *bias, void *y) {
    if (!st_shape_ok(shape) || !bias || ((uintptr_t)y | (uintptr_t)w) % 16) return cudaErrorInvalidValue;
    kcu_stem q = *shape;
    if (!q.ldy) q.ldy = q.k;
    const __half *xh = (const __half *)x, *wh = (const __half *)w;
    __half *yh = (__half *)y;
    if (q.s2) return q.k <= 32 ? s2_launch<4>(s, &q, xh, wh, bias, yh) : s2_launch<8>(s, &q, xh, wh, bias, yh);
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
