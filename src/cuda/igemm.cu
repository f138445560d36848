/* kiln CUDA backend: kiln's own implicit-GEMM convolution for float16 channels-last
 * tensors, with bias, residual and activation in its epilogue.
 *
 * The convolution is the GEMM Y[M, K] = A[M, R*S*C] W[K, R*S*C]^T with M = N*OH*OW output
 * pixels and A's row m the receptive field of pixel m, read from the input on the fly
 * (never materialized): with C a multiple of 8, each 16-byte chunk of a row lies inside one
 * filter tap (r, s), so a chunk is one cp.async from the input, or zeros where the tap falls
 * in the padding. Tiles of BM x BN outputs per block of 4 warps (2 x 2), BK = 32 along the
 * reduction, a 3-stage cp.async pipeline, ldmatrix into mma.sync m16n8k16 (float16 inputs,
 * float32 accumulation), and the epilogue y = act(acc + bias + residual) rounded once to
 * float16. Shared-memory rows are 64 bytes; 16-byte chunks are XOR-swizzled so that the 8
 * rows one ldmatrix reads fall in 8 different bank groups.
 *
 * cuDNN runs the convolution and a separate kernel the activations it cannot fuse (SiLU,
 * LeakyReLU, sigmoid...): at batch 1 a YOLOv5s layer is a few microseconds of work and the
 * second kernel cost as much as the first. The builder times this kernel's tile shapes
 * beside cuDNN and cuBLASLt and keeps the fastest (src/cuda/dnn.c). */
#include "cuda/kcu_device.cuh"

#define IG_BK 32
#define IG_STAGES 3
#define IG_THREADS 128

__device__ __forceinline__ unsigned ig_smem(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

/* cp.async of 16 bytes; src_bytes 0 writes zeros (the padding, rows past the end). */
__device__ __forceinline__ void ig_cp16(unsigned dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void ig_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void ig_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ig_ldsm4(unsigned addr, unsigned &r0, unsigned &r1, unsigned &r2, unsigned &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

__device__ __forceinline__ void ig_mma(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Element offset of 16-byte chunk `chunk` (0-3) of tile row `row`. */
__device__ __forceinline__ int ig_off(int row, int chunk) { return row * IG_BK + ((chunk ^ ((row >> 1) & 3)) << 3); }

template <int BM, int BN>
__global__ void __launch_bounds__(IG_THREADS) k_igemm(kcu_igemm p, const __half *__restrict__ x,
                                                      const __half *__restrict__ wt, const float *__restrict__ bias,
                                                      const __half *__restrict__ res, __half *__restrict__ y) {
    constexpr int MI = BM / 32, NI = BN / 16; /* m16 and n8 tiles per warp (a warp: BM/2 x BN/2) */
    constexpr int A_CH = BM * 4 / IG_THREADS, B_CH = BN * 4 / IG_THREADS; /* chunks a thread loads */
    __shared__ __align__(128) __half sa[IG_STAGES][BM * IG_BK];
    __shared__ __align__(128) __half sb[IG_STAGES][BN * IG_BK];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int C = p.c, KG = p.kg, M = p.m;
    const int kc = tid & 3; /* the chunk column this thread loads, in every row it loads */

    /* the rows this thread loads: image base, top-left input position, validity */
    const __half *a_img[A_CH];
    int a_ih[A_CH], a_iw[A_CH];
    #pragma unroll
    for (int i = 0; i < A_CH; i++) {
        int m = m0 + (tid >> 2) + i * (IG_THREADS / 4);
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
        int n = n0 + (tid >> 2) + i * (IG_THREADS / 4);
        b_ok[i] = n < p.k;
        b_row[i] = wt + (int64_t)(b_ok[i] ? n : 0) * KG;
    }

    const int ktiles = (KG + IG_BK - 1) / IG_BK;
    auto load = [&](int stage, int kt) {
        int k = kt * IG_BK + kc * 8;
        bool kin = k < KG;
        int tap = kin ? k / C : 0, c = k - tap * C;
        int r = tap / p.kw, s = tap - r * p.kw;
        #pragma unroll
        for (int i = 0; i < A_CH; i++) {
            int row = (tid >> 2) + i * (IG_THREADS / 4);
            int ih = a_ih[i] + r * p.dh, iw = a_iw[i] + s * p.dw;
            bool in = kin && ih >= 0 && ih < p.h && iw >= 0 && iw < p.w;
            const __half *src = in ? a_img[i] + ((int64_t)ih * p.w + iw) * C + c : x;
            ig_cp16(ig_smem(&sa[stage][ig_off(row, kc)]), src, in ? 16 : 0);
        }
        #pragma unroll
        for (int i = 0; i < B_CH; i++) {
            int row = (tid >> 2) + i * (IG_THREADS / 4);
            bool in = kin && b_ok[i];
            ig_cp16(ig_smem(&sb[stage][ig_off(row, kc)]), in ? b_row[i] + k : wt, in ? 16 : 0);
        }
    };

    float acc[MI][NI][4];
    #pragma unroll
    for (int i = 0; i < MI; i++)
        #pragma unroll
        for (int j = 0; j < NI; j++)
            #pragma unroll
            for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;

    #pragma unroll
    for (int s = 0; s < IG_STAGES - 1; s++) {
        if (s < ktiles) load(s, s);
        ig_commit();
    }
    for (int kt = 0; kt < ktiles; kt++) {
        ig_wait<IG_STAGES - 2>();
        __syncthreads();
        /* the stage read IG_STAGES - 1 steps ago is free: refill it while this one computes */
        int next = kt + IG_STAGES - 1;
        if (next < ktiles) load(next % IG_STAGES, next);
        ig_commit();
        const __half *ta = sa[kt % IG_STAGES], *tb = sb[kt % IG_STAGES];
        #pragma unroll
        for (int kk = 0; kk < IG_BK / 16; kk++) {
            unsigned af[MI][4], bf[NI][2];
            #pragma unroll
            for (int i = 0; i < MI; i++) {
                int row = wm * (BM / 2) + i * 16 + (lane & 15);
                ig_ldsm4(ig_smem(ta + ig_off(row, kk * 2 + (lane >> 4))), af[i][0], af[i][1], af[i][2], af[i][3]);
            }
            #pragma unroll
            for (int j = 0; j < NI / 2; j++) {
                int row = wn * (BN / 2) + j * 16 + (lane & 7) + ((lane >> 4) << 3);
                ig_ldsm4(ig_smem(tb + ig_off(row, kk * 2 + ((lane >> 3) & 1))), bf[2 * j][0], bf[2 * j][1],
                         bf[2 * j + 1][0], bf[2 * j + 1][1]);
            }
            #pragma unroll
            for (int i = 0; i < MI; i++)
                #pragma unroll
                for (int j = 0; j < NI; j++) ig_mma(acc[i][j], af[i], bf[j][0], bf[j][1]);
        }
    }
    ig_wait<0>();

    /* epilogue: lane (g, t) holds rows g and g + 8, columns 2t and 2t + 1 of each tile */
    const int g = lane >> 2, t4 = lane & 3;
    #pragma unroll
    for (int j = 0; j < NI; j++) {
        int n = n0 + wn * (BN / 2) + j * 8 + t4 * 2;
        if (n >= p.k) continue; /* K is a multiple of 8: n < K means n + 1 < K too */
        float b0 = bias ? bias[n] : 0.0f, b1 = bias ? bias[n + 1] : 0.0f;
        #pragma unroll
        for (int i = 0; i < MI; i++)
            #pragma unroll
            for (int h = 0; h < 2; h++) {
                int m = m0 + wm * (BM / 2) + i * 16 + g + h * 8;
                if (m >= M) continue;
                float v0 = acc[i][j][2 * h] + b0, v1 = acc[i][j][2 * h + 1] + b1;
                int64_t at = (int64_t)m * p.k + n;
                if (res) {
                    float2 r = __half22float2(*reinterpret_cast<const __half2 *>(res + at));
                    v0 += r.x;
                    v1 += r.y;
                }
                if (p.has_act) {
                    v0 = kcu_act_apply(p.act.type, p.act.alpha, p.act.beta, v0);
                    v1 = kcu_act_apply(p.act.type, p.act.alpha, p.act.beta, v1);
                }
                *reinterpret_cast<__half2 *>(y + at) = __floats2half2_rn(v0, v1);
            }
    }
}

/* Tile shapes, in the order configurations are numbered (stored in plans: append only). */
static const int ig_tiles[][2] = {{64, 64}, {128, 64}, {64, 128}, {128, 128}};
#define IG_CONFIGS ((int)(sizeof ig_tiles / sizeof ig_tiles[0]))

extern "C" int kcu_igemm_configs(void) { return IG_CONFIGS; }

extern "C" void kcu_igemm_tile(int cfg, int *bm, int *bn) {
    *bm = ig_tiles[cfg][0];
    *bn = ig_tiles[cfg][1];
}

extern "C" int kcu_igemm_applies(const kcu_igemm *p) {
    if (p->c % 8 || p->k % 8 || p->c <= 0 || p->k <= 0 || p->m <= 0) return false;
    /* 32-bit index arithmetic inside an image and over the reduction */
    int64_t img = (int64_t)p->h * p->w * p->c, kg = (int64_t)p->kh * p->kw * p->c;
    int64_t m = (int64_t)p->n * p->oh * p->ow;
    return img < INT32_MAX && kg == p->kg && kg < INT32_MAX && m == p->m && m < INT32_MAX &&
           (m + 127) / 128 <= INT32_MAX && (p->k + 127) / 128 <= 65535;
}

extern "C" cudaError_t kcu_igemm_run(cudaStream_t s, int cfg, const kcu_igemm *p, const void *x, const void *w,
                                     const float *bias, const void *res, void *y) {
    if (cfg < 0 || cfg >= IG_CONFIGS || !kcu_igemm_applies(p)) return cudaErrorInvalidValue;
    int bm = ig_tiles[cfg][0], bn = ig_tiles[cfg][1];
    dim3 grid((unsigned)((p->m + bm - 1) / bm), (unsigned)((p->k + bn - 1) / bn));
    const __half *xh = (const __half *)x, *wh = (const __half *)w, *rh = (const __half *)res;
    __half *yh = (__half *)y;
    switch (cfg) {
    case 0: k_igemm<64, 64><<<grid, IG_THREADS, 0, s>>>(*p, xh, wh, bias, rh, yh); break;
    case 1: k_igemm<128, 64><<<grid, IG_THREADS, 0, s>>>(*p, xh, wh, bias, rh, yh); break;
    case 2: k_igemm<64, 128><<<grid, IG_THREADS, 0, s>>>(*p, xh, wh, bias, rh, yh); break;
    default: k_igemm<128, 128><<<grid, IG_THREADS, 0, s>>>(*p, xh, wh, bias, rh, yh); break;
    }
    return kcu_launched();
}
