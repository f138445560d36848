/* kiln CUDA backend: kiln's own implicit-GEMM convolution for float16 channels-last
 * tensors, with bias, residual and activation in its epilogue.
 *
 * The convolution is the GEMM Y[M, K] = A[M, R*S*C] W[K, R*S*C]^T with M = N*OH*OW output
 * pixels and A's row m the receptive field of pixel m, read from the input on the fly
 * (never materialized): with C a multiple of 8, each 16-byte chunk of a row lies inside one
 * filter tap (r, s), so a chunk is one cp.async from the input, or zeros where the tap falls
 * in the padding. Tiles of BM x BN outputs per block of 4 warps (2 x 2), BK = 64 along the
 * reduction, a 4-stage cp.async pipeline, ldmatrix into mma.sync m16n8k16 (float16 inputs,
 * float32 accumulation), and the epilogue y = act(acc + bias + residual) (or the residual
 * after the activation) rounded once to float16. Shared-memory rows are 128 bytes; 16-byte
 * chunks are XOR-swizzled so that the 8 rows one ldmatrix reads fall in 8 different bank
 * groups. Where the output tiles alone
 * leave SMs idle (batch 1, small maps, long reductions) the reduction is split over
 * blockIdx.z (split-K): float32 partial sums in scratch, then a reduce kernel runs the
 * epilogue (reducing in the kernel instead, by the last slice of each output tile to finish,
 * measured slower on YOLOv5s at batch 1 on an H200: 0.770 against 0.680 ms, one SM summing a
 * whole tile while the others idle). Needs sm_80 or newer (cp.async, ldmatrix, bf16-era mma).
 *
 * A deconvolution whose kernel equals its stride (kcu_igemm.uh, uw) runs as the 1x1
 * convolution to uh*uw*k columns whose epilogue scatters each 8-channel run to its output
 * pixel (ig_yoff).
 *
 * cuDNN runs the convolution and a separate kernel the activations it cannot fuse (SiLU,
 * LeakyReLU, sigmoid...): at batch 1 a YOLOv5s layer is a few microseconds of work and the
 * second kernel cost as much as the first. The builder times this kernel's tile shapes
 * beside cuDNN and cuBLASLt and keeps the fastest (src/cuda/dnn.c). */
#include "cuda/kcu_pdl.cuh"

#define IG_BK 64
#define IG_STAGES 4
#define IG_THREADS 128
/* dynamic shared memory of a BM x BN tile shape */
#define IG_SMEM(BM, BN) (IG_STAGES * ((BM) + (BN)) * IG_BK * 2)

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ unsigned ig_smem(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

/* cp.async of 16 bytes; src_bytes 0 writes zeros (the padding, rows past the end). */
__device__ __forceinline__ void ig_cp16(unsigned dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void ig_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void ig_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#endif

/* Element offset of 16-byte chunk `chunk` (0-7) of tile row `row` (128-byte rows). */
__device__ __forceinline__ int ig_off(int row, int chunk) { return row * IG_BK + ((chunk ^ (row & 7)) << 3); }

/* v (the sum with its bias) with residual r added before or after the activation. */
template <int ACT> __device__ __forceinline__ float ig_out(const kcu_igemm &p, float v, float r) {
    return p.res_after ? kcu_epi_act<ACT>(p.act, v) + r : kcu_epi_act<ACT>(p.act, v + r);
}

/* Where the GEMM's element (m, n) goes in y, and its bias channel: m * ldy + n, or, for a
 * deconvolution (uh > 0), column n = (i, j, c) of input pixel m = (b, y, x) at output pixel
 * (b, y*uh + i, x*uw + j), channel c (*bn = c). */
__device__ __forceinline__ int64_t ig_yoff(const kcu_igemm &p, int64_t m, int n, int *bn) {
    if (!p.uh) {
        *bn = n;
        return m * p.ldy + n;
    }
    int co = p.k / (p.uh * p.uw), tap = n / co, c = n - tap * co, i = tap / p.uw, j = tap - i * p.uw;
    int64_t row = m / p.w; /* b*h + y */
    int x = (int)(m - row * p.w);
    *bn = c;
    return ((row * p.uh + i) * ((int64_t)p.w * p.uw) + (int64_t)x * p.uw + j) * p.ldy + c;
}

/* The epilogue of 8 channels n.. of output row m (v: the sums; at = m * k + n, the
 * residual's index): bias, the residual, the activation, one 16-byte store (ig_yoff).
 * Bias buffers are 256-byte aligned, rows 16-byte. */
template <int ACT>
__device__ __forceinline__ void ig_finish8(const kcu_igemm &p, float *v, const float *bias, int n,
                                           const __half *res, int64_t at, int64_t m, __half *y) {
    int bn;
    int64_t yo = ig_yoff(p, m, n, &bn);
    if (bias) {
        float4 b0 = *reinterpret_cast<const float4 *>(bias + bn), b1 = *reinterpret_cast<const float4 *>(bias + bn + 4);
        v[0] += b0.x, v[1] += b0.y, v[2] += b0.z, v[3] += b0.w;
        v[4] += b1.x, v[5] += b1.y, v[6] += b1.z, v[7] += b1.w;
    }
    float r[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (res) kcu_ld8(res + at, r);
    #pragma unroll
    for (int e = 0; e < 8; e++) v[e] = ig_out<ACT>(p, v[e], r[e]);
    kcu_st8(y + yo, v);
}

/* The same for one element. */
template <int ACT>
__device__ __forceinline__ void ig_finish1(const kcu_igemm &p, float v, const float *bias, int n, const __half *res,
                                           int64_t at, int64_t m, __half *y) {
    int bn;
    int64_t yo = ig_yoff(p, m, n, &bn);
    if (bias) v += bias[bn];
    y[yo] = __float2half_rn(ig_out<ACT>(p, v, res ? __half2float(res[at]) : 0.0f));
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define IG_UNSUPPORTED_ARCH 1 /* the kernels trap; kcu_igemm_applies refuses such devices */
#endif

template <int BM, int BN, int ACT>
__global__ void __launch_bounds__(IG_THREADS) k_igemm(kcu_igemm p, const __half *__restrict__ x,
                                                      const __half *__restrict__ wt, const float *__restrict__ bias,
                                                      const __half *__restrict__ res, __half *__restrict__ y,
                                                      float *__restrict__ part, int pdl_early) {
#ifdef IG_UNSUPPORTED_ARCH
    __trap();
#else
    constexpr int MI = BM / 32, NI = BN / 16; /* m16 and n8 tiles per warp (a warp: BM/2 x BN/2) */
    constexpr int CH = IG_BK / 8;                                         /* 16-byte chunks per row */
    constexpr int RS = IG_THREADS / CH;                                   /* rows loaded per pass */
    constexpr int A_CH = BM / RS, B_CH = BN / RS;                         /* chunks a thread loads */
    extern __shared__ __align__(128) __half ig_shared[];
    /* stage s: its A tile, then its B tile (a short reduction allocates only the stages it uses) */
    auto sa = [&](int st) { return ig_shared + st * (BM + BN) * IG_BK; };
    auto sb = [&](int st) { return ig_shared + st * (BM + BN) * IG_BK + BM * IG_BK; };

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int C = p.c, KG = p.kg, M = p.m;
    const int kc = tid % CH; /* the chunk column this thread loads, in every row it loads */

    /* the rows this thread loads: image base, top-left input position, validity */
    const __half *a_img[A_CH];
    int a_ih[A_CH], a_iw[A_CH];
    #pragma unroll
    for (int i = 0; i < A_CH; i++) {
        int m = m0 + tid / CH + i * RS;
        bool ok = m < M;
        int mm = ok ? m : 0;
        int ow = mm % p.ow, t = mm / p.ow, oh = t % p.oh, n = t / p.oh;
        a_img[i] = x + (int64_t)n * p.h * p.w * C;
        a_ih[i] = ok ? oh * p.sh - p.pt : -(1 << 28); /* a row past the end reads zeros */
        a_iw[i] = ow * p.sw - p.pl;
    }
    const __half *b_row[B_CH];
    bool b_ok[B_CH];
    #pragma unroll
    for (int i = 0; i < B_CH; i++) {
        int n = n0 + tid / CH + i * RS;
        b_ok[i] = n < p.k;
        b_row[i] = wt + (int64_t)(b_ok[i] ? n : 0) * KG;
    }

    /* split-K: slice blockIdx.z of gridDim.z takes an even share of the reduction's tiles
     * and writes float32 partial sums to part[z][m][n]; k_igemm_reduce finishes them */
    const int kt_all = (KG + IG_BK - 1) / IG_BK, per = (kt_all + gridDim.z - 1) / gridDim.z;
    const int kt0 = blockIdx.z * per, ktiles = min(kt_all - kt0, per);
    /* a stage's input tile (activations) and weight tile, loaded apart: the prologue issues
     * the first stages' weights before kcu_pdl_wait, under the previous kernel's tail */
    auto load_a = [&](int stage, int kt) {
        int k = kt * IG_BK + kc * 8;
        bool kin = k < KG;
        int tap = kin ? k / C : 0, c = k - tap * C;
        int r = tap / p.kw, s = tap - r * p.kw;
        #pragma unroll
        for (int i = 0; i < A_CH; i++) {
            int row = tid / CH + i * RS;
            int ih = a_ih[i] + r * p.dh, iw = a_iw[i] + s * p.dw;
            bool in = kin && ih >= 0 && ih < p.h && iw >= 0 && iw < p.w;
            const __half *src = in ? a_img[i] + ((int64_t)ih * p.w + iw) * C + c : x;
            ig_cp16(ig_smem(sa(stage) + ig_off(row, kc)), src, in ? 16 : 0);
        }
    };
    auto load_b = [&](int stage, int kt) {
        int k = kt * IG_BK + kc * 8;
        bool kin = k < KG;
        #pragma unroll
        for (int i = 0; i < B_CH; i++) {
            int row = tid / CH + i * RS;
            bool in = kin && b_ok[i];
            ig_cp16(ig_smem(sb(stage) + ig_off(row, kc)), in ? b_row[i] + k : wt, in ? 16 : 0);
        }
    };

    float acc[MI][NI][4];
    #pragma unroll
    for (int i = 0; i < MI; i++)
        #pragma unroll
        for (int j = 0; j < NI; j++)
            #pragma unroll
            for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;

    if (pdl_early) kcu_pdl_trigger();
    #pragma unroll
    for (int s = 0; s < IG_STAGES - 1; s++)
        if (s < ktiles) load_b(s, kt0 + s);
    kcu_pdl_wait(); /* the previous kernel's output is complete from here on (kcu_pdl.cuh) */
    /* commit groups: the first holds the early weight tiles too (waited for no later) */
    #pragma unroll
    for (int s = 0; s < IG_STAGES - 1; s++) {
        if (s < ktiles) load_a(s, kt0 + s);
        ig_commit();
    }
    for (int kt = 0; kt < ktiles; kt++) {
        ig_wait<IG_STAGES - 2>();
        __syncthreads();
        /* the stage read IG_STAGES - 1 steps ago is free: refill it while this one computes */
        int next = kt + IG_STAGES - 1;
        if (next < ktiles) {
            load_a(next % IG_STAGES, kt0 + next);
            load_b(next % IG_STAGES, kt0 + next);
        }
        ig_commit();
        const __half *ta = sa(kt % IG_STAGES), *tb = sb(kt % IG_STAGES);
        #pragma unroll
        for (int kk = 0; kk < IG_BK / 16; kk++) {
            unsigned af[MI][4], bf[NI][2];
            #pragma unroll
            for (int i = 0; i < MI; i++) {
                int row = wm * (BM / 2) + i * 16 + (lane & 15);
                kcu_ldsm4(ig_smem(ta + ig_off(row, kk * 2 + (lane >> 4))), af[i]);
            }
            #pragma unroll
            for (int j = 0; j < NI / 2; j++) {
                int row = wn * (BN / 2) + j * 16 + (lane & 7) + ((lane >> 4) << 3);
                unsigned r[4];
                kcu_ldsm4(ig_smem(tb + ig_off(row, kk * 2 + ((lane >> 3) & 1))), r);
                bf[2 * j][0] = r[0], bf[2 * j][1] = r[1], bf[2 * j + 1][0] = r[2], bf[2 * j + 1][1] = r[3];
            }
            #pragma unroll
            for (int i = 0; i < MI; i++)
                #pragma unroll
                for (int j = 0; j < NI; j++) kcu_mma16816(acc[i][j], af[i], bf[j][0], bf[j][1]);
        }
    }
    ig_wait<0>();
    __syncthreads(); /* every warp is done with the pipeline's shared memory */
    kcu_pdl_trigger(); /* the next kernel's blocks may arrive for the epilogue (kcu_pdl.cuh) */

    /* epilogue, in two steps. First the float32 sums go to shared memory (rows of BN + 8
     * floats: the 8 rows one instruction writes fall in different banks); lane (g, t) holds
     * rows g and g + 8, columns 2t and 2t + 1 of each m16 x n8 tile. */
    constexpr int LD = BN + 8;
    float *st = reinterpret_cast<float *>(ig_shared);
    const int g = lane >> 2, t4 = lane & 3;
    #pragma unroll
    for (int i = 0; i < MI; i++)
        #pragma unroll
        for (int j = 0; j < NI; j++)
            #pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = wm * (BM / 2) + i * 16 + g + h * 8, col = wn * (BN / 2) + j * 8 + t4 * 2;
                *reinterpret_cast<float2 *>(st + row * LD + col) = make_float2(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
            }
    __syncthreads();
    /* Then each thread takes runs of 8 channels of one output row: bias, residual and
     * activation, and one 16-byte store (32 bytes of partial sums under split-K), so a
     * warp writes whole rows. A channel count not a multiple of 8 (or unaligned tensors):
     * one element a thread, consecutive threads on consecutive channels. */
    float *pz = part ? part + (int64_t)blockIdx.z * M * p.k : nullptr;
    if (!p.vec) {
        for (int q = tid; q < BM * BN; q += IG_THREADS) {
            int row = q / BN, col = q % BN, m = m0 + row, n = n0 + col;
            if (m >= M || n >= p.k) continue;
            int64_t at = (int64_t)m * p.k + n;
            float v = st[row * LD + col];
            if (pz) pz[at] = v;
            else ig_finish1<ACT>(p, v, bias, n, res, at, m, y);
        }
        return;
    }
    for (int q = tid; q < BM * BN / 8; q += IG_THREADS) {
        int row = q / (BN / 8), col = (q % (BN / 8)) * 8;
        int m = m0 + row, n = n0 + col;
        if (m >= M || n >= p.k) continue;
        const float *sv = st + row * LD + col;
        int64_t at = (int64_t)m * p.k + n;
        float v[8];
        *reinterpret_cast<float4 *>(v) = *reinterpret_cast<const float4 *>(sv);
        *reinterpret_cast<float4 *>(v + 4) = *reinterpret_cast<const float4 *>(sv + 4);
        if (pz) {
            *reinterpret_cast<float4 *>(pz + at) = *reinterpret_cast<const float4 *>(v);
            *reinterpret_cast<float4 *>(pz + at + 4) = *reinterpret_cast<const float4 *>(v + 4);
        } else {
            ig_finish8<ACT>(p, v, bias, n, res, at, m, y);
        }
    }
#endif
}

/* Sums split-K partials, then the epilogue: eight channels a thread (one where p.vec is
 * off: a channel count not a multiple of 8, or unaligned tensors). */
template <int ACT>
__global__ void k_igemm_reduce(kcu_igemm p, int splits, const float *__restrict__ part, const float *__restrict__ bias,
                               const __half *__restrict__ res, __half *__restrict__ y, int pdl_early) {
    if (pdl_early) kcu_pdl_trigger(); /* otherwise as its blocks exit: it is all epilogue */
    kcu_pdl_wait();
    const int64_t slice = (int64_t)p.m * p.k;
    if (!p.vec) {
        KCU_LOOP(at, slice) {
            float v = 0.0f;
            for (int z = 0; z < splits; z++) v += part[z * slice + at];
            ig_finish1<ACT>(p, v, bias, (int)(at % p.k), res, at, at / p.k, y);
        }
        return;
    }
    KCU_LOOP(i, slice / 8) {
        int64_t at = 8 * i;
        float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int z = 0; z < splits; z++) {
            float4 a = *reinterpret_cast<const float4 *>(part + z * slice + at);
            float4 b = *reinterpret_cast<const float4 *>(part + z * slice + at + 4);
            v[0] += a.x, v[1] += a.y, v[2] += a.z, v[3] += a.w;
            v[4] += b.x, v[5] += b.y, v[6] += b.z, v[7] += b.w;
        }
        ig_finish8<ACT>(p, v, bias, (int)(at % p.k), res, at, at / p.k, y);
    }
}

/* Tile shapes, in the order configurations are numbered (stored in plans: append only). */
static const int ig_tiles[][2] = {{64, 64}, {128, 64}, {64, 128}, {128, 128}, {32, 64}, {64, 32}, {32, 32}, {128, 32}};
#define IG_CONFIGS ((int)(sizeof ig_tiles / sizeof ig_tiles[0]))

/* Configurations IG_CONFIGS.. are kiln's Hopper kernel (wgmma.cu), where it applies. */
extern "C" int kcu_igemm_configs(void) { return IG_CONFIGS + kcu_wgmma_configs(); }

extern "C" int kcu_igemm_is_wgmma(int cfg) { return cfg >= IG_CONFIGS; }

/* Split-K slices for a tile shape: enough blocks for two per SM of a 132-SM Hopper where the
 * output tiles alone leave it idle, each slice keeping 4 or more reduction tiles. A function
 * of the shape only, so a plan's stored tile shape gives the same split when loaded. */
static int ig_splits(const kcu_igemm *p, int cfg) {
    int64_t tiles = (int64_t)((p->m + ig_tiles[cfg][0] - 1) / ig_tiles[cfg][0]) *
                    ((p->k + ig_tiles[cfg][1] - 1) / ig_tiles[cfg][1]);
    int kt = (p->kg + IG_BK - 1) / IG_BK;
    int64_t want = (264 + tiles - 1) / tiles;
    int64_t most = kt / 4 < 16 ? kt / 4 : 16;
    if (want > most) want = most;
    if (want <= 1) return 1;
    int per = (int)((kt + want - 1) / want); /* no empty slices: kt = 70 in 16 would leave two */
    return (kt + per - 1) / per;
}

extern "C" size_t kcu_igemm_workspace(const kcu_igemm *p, int cfg) {
    int z = cfg >= 0 && cfg < IG_CONFIGS ? ig_splits(p, cfg)
            : cfg >= IG_CONFIGS && cfg < kcu_igemm_configs() ? kcu_wgmma_splits(p, cfg - IG_CONFIGS) : 1;
    return z > 1 ? (size_t)z * (size_t)p->m * (size_t)p->k * sizeof(float) : 0;
}

extern "C" void kcu_igemm_tile(const kcu_igemm *p, int cfg, int *bm, int *bn, int *splits) {
    if (cfg >= IG_CONFIGS) {
        *bm = 128;
        *bn = kcu_wgmma_bn(cfg - IG_CONFIGS);
        *splits = kcu_wgmma_splits(p, cfg - IG_CONFIGS);
        return;
    }
    *bm = ig_tiles[cfg][0];
    *bn = ig_tiles[cfg][1];
    *splits = ig_splits(p, cfg);
}

/* The shapes the kernel indexes in 32 bits and can launch (checked by every run). */
static bool ig_shape_ok(const kcu_igemm *p) {
    if (p->c % 8 || p->c <= 0 || p->k <= 0 || p->m <= 0) return false;
    int64_t img = (int64_t)p->h * p->w * p->c, kg = (int64_t)p->kh * p->kw * p->c;
    int64_t m = (int64_t)p->n * p->oh * p->ow;
    /* m0 + a tile row stays below INT32_MAX; the narrowest tiles (32) set the grid's y */
    bool up = p->uh > 0 || p->uw > 0;
    if (up && (p->uh <= 0 || p->uw <= 0 || p->k % (p->uh * p->uw) || p->kh != 1 || p->kw != 1 || p->sh != 1 ||
               p->sw != 1 || p->pt || p->pl || p->oh != p->h || p->ow != p->w))
        return false;
    return img < INT32_MAX && kg == p->kg && kg < INT32_MAX && m == p->m && m <= INT32_MAX - 256 &&
           (p->k + 31) / 32 <= 65535;
}

extern "C" int kcu_pdl_enabled(void) { return kcu_pdl_on(); }

__global__ void k_gap() {}

extern "C" cudaError_t kcu_gap(cudaStream_t s) {
    k_gap<<<1, 32, 0, s>>>();
    return kcu_launched();
}

/* At prepare: the shape, and a device of compute capability 8.0 or newer (cp.async). */
extern "C" int kcu_igemm_applies(const kcu_igemm *p) {
    return kcu_device_sm80() && ig_shape_ok(p);
}

/* Whether configuration cfg runs this shape (kcu_igemm_applies said the GEMM does). */
extern "C" int kcu_igemm_config_ok(const kcu_igemm *p, int cfg) {
    if (cfg < 0 || cfg >= kcu_igemm_configs()) return 0;
    return cfg < IG_CONFIGS || kcu_wgmma_applies(p, cfg - IG_CONFIGS);
}

/* One launch. Every launch raises the kernel's dynamic shared memory limit (above the
 * default 48 KB) for the current device: a host-side attribute, allowed while a stream is
 * captured, and right after a device reset too. A slice of fewer than IG_STAGES reduction
 * tiles touches only that many stages: the launch asks for those (more blocks fit an SM),
 * or for the epilogue's float32 tile where that is larger. */
template <int BM, int BN, int ACT>
static cudaError_t ig_launch(dim3 grid, cudaStream_t s, const kcu_igemm *p, const __half *x, const __half *w,
                             const float *bias, const __half *res, __half *y, float *part) {
    int kt = (p->kg + IG_BK - 1) / IG_BK, per = (kt + (int)grid.z - 1) / (int)grid.z;
    int stages = per < IG_STAGES ? per : IG_STAGES;
    int smem = stages * (BM + BN) * IG_BK * 2, tile = BM * (BN + 8) * 4;
    if (smem < tile) smem = tile;
    cudaError_t e = cudaFuncSetAttribute(k_igemm<BM, BN, ACT>, cudaFuncAttributeMaxDynamicSharedMemorySize, IG_SMEM(BM, BN));
    if (e != cudaSuccess) return e;
    e = kcu_pdl_launch(k_igemm<BM, BN, ACT>, grid, dim3(IG_THREADS), (size_t)smem, s, *p, x, w, bias, res, y,
                       grid.z > 1 ? part : (float *)NULL, kcu_pdl_early());
    if (e != cudaSuccess || grid.z == 1) return e;
    return kcu_igemm_reduce(s, p, (int)grid.z, part, bias, res, y);
}

/* The split-K reduction of both kernels (wgmma.cu's split configurations too): the epilogue's
 * kernel instance from the shape's activation, 8 channels a thread where the layout allows. */
extern "C" cudaError_t kcu_igemm_reduce(cudaStream_t s, const kcu_igemm *shape, int splits, const float *part,
                                        const float *bias, const void *res, void *y) {
    kcu_igemm q = *shape;
    int co = q.uh > 0 ? q.k / (q.uh * q.uw) : q.k;
    if (!q.ldy) q.ldy = co;
    if (splits < 2 || !part || q.ldy < co || (q.uh > 0 && res)) return cudaErrorInvalidValue;
    q.vec = co % 8 == 0 && q.ldy % 8 == 0 && ((uintptr_t)y | (uintptr_t)res | (uintptr_t)part) % 16 == 0;
    int64_t n = (int64_t)q.m * q.k / (q.vec ? 8 : 1);
    const __half *rh = (const __half *)res;
    __half *yh = (__half *)y;
    dim3 g(kcu_blocks(n)), b(KCU_THREADS);
    int early = kcu_pdl_early();
    switch (kcu_epi_kind(q.has_act, q.act)) {
    case KCU_EPI_NONE: return kcu_pdl_launch(k_igemm_reduce<KCU_EPI_NONE>, g, b, 0, s, q, splits, part, bias, rh, yh, early);
    case KCU_EPI_RELU: return kcu_pdl_launch(k_igemm_reduce<KCU_EPI_RELU>, g, b, 0, s, q, splits, part, bias, rh, yh, early);
    case KCU_EPI_SILU: return kcu_pdl_launch(k_igemm_reduce<KCU_EPI_SILU>, g, b, 0, s, q, splits, part, bias, rh, yh, early);
    default: return kcu_pdl_launch(k_igemm_reduce<KCU_EPI_ANY>, g, b, 0, s, q, splits, part, bias, rh, yh, early);
    }
}

extern "C" cudaError_t kcu_igemm_run(cudaStream_t s, int cfg, const kcu_igemm *shape, const void *x, const void *w,
                                     const float *bias, const void *res, void *y, void *workspace) {
    if (cfg >= IG_CONFIGS && cfg < kcu_igemm_configs() && ig_shape_ok(shape))
        return kcu_wgmma_run(s, cfg - IG_CONFIGS, shape, x, w, bias, res, y, workspace);
    if (cfg < 0 || cfg >= IG_CONFIGS || !ig_shape_ok(shape)) return cudaErrorInvalidValue;
    /* 16-byte stores and loads of 8 channels where the rows allow (bias buffers are aligned) */
    kcu_igemm q = *shape;
    int co = q.uh > 0 ? q.k / (q.uh * q.uw) : q.k; /* channels of an output pixel */
    if (!q.ldy) q.ldy = co;
    if (q.ldy < co || (q.uh > 0 && res)) return cudaErrorInvalidValue;
    q.vec = co % 8 == 0 && q.ldy % 8 == 0 && ((uintptr_t)y | (uintptr_t)res | (uintptr_t)workspace) % 16 == 0;
    const kcu_igemm *p = &q;
    int bm = ig_tiles[cfg][0], bn = ig_tiles[cfg][1], z = ig_splits(p, cfg);
    if (z > 1 && !workspace) return cudaErrorInvalidValue;
    dim3 grid((unsigned)((p->m + bm - 1) / bm), (unsigned)((p->k + bn - 1) / bn), (unsigned)z);
    float *part = (float *)workspace;
    const __half *xh = (const __half *)x, *wh = (const __half *)w, *rh = (const __half *)res;
    __half *yh = (__half *)y;
    int act = kcu_epi_kind(p->has_act, p->act);
#define IG_LAUNCH(BM, BN)                                                     \
    switch (act) {                                                            \
    case KCU_EPI_NONE: return ig_launch<BM, BN, KCU_EPI_NONE>(grid, s, p, xh, wh, bias, rh, yh, part); \
    case KCU_EPI_RELU: return ig_launch<BM, BN, KCU_EPI_RELU>(grid, s, p, xh, wh, bias, rh, yh, part); \
    case KCU_EPI_SILU: return ig_launch<BM, BN, KCU_EPI_SILU>(grid, s, p, xh, wh, bias, rh, yh, part); \
    default: return ig_launch<BM, BN, KCU_EPI_ANY>(grid, s, p, xh, wh, bias, rh, yh, part);       \
    }
    switch (cfg) {
    case 0: IG_LAUNCH(64, 64);
    case 1: IG_LAUNCH(128, 64);
    case 2: IG_LAUNCH(64, 128);
    case 3: IG_LAUNCH(128, 128);
    case 4: IG_LAUNCH(32, 64);
    case 5: IG_LAUNCH(64, 32);
    case 6: IG_LAUNCH(32, 32);
    default: IG_LAUNCH(128, 32);
    }
#undef IG_LAUNCH
}
