/* kiln CUDA backend: kiln's Hopper convolution, float16 channels-last, stride 1, on the
 * tensor cores through wgmma with TMA loads (sm_90a: H100, H200).
 *
 * The convolution is the implicit GEMM of igemm.cu (M = output pixels, N = output channels,
 * reduction over kh x kw taps of C input channels) with what Hopper adds:
 * - the layer's weights for one block of BN output channels stay in shared memory for the
 *   whole kernel (loaded once by the tensor copy engine, 128-byte swizzled), so only the
 *   input streams;
 * - a tile is 128 output pixels: one output row of 128, or two rows of 64 where the map
 *   is 64 wide or less; on maps whose padded rows (ow + kw - 1) are 64 pixels or fewer
 *   (batch-1 layers, ResNet's 56 to 7), as many whole padded rows as fit in 128, and whole
 *   images where those fit, the kw - 1 columns past each row computed and dropped. For each
 *   filter row r and each 64-channel block, one TMA copy brings the tile's input rows with
 *   their halo ((tile width + kw - 1) pixels x 64 channels; the padding and the edges arrive
 *   as zeros from the copy engine, which fills what lies outside the tensor), and the kw
 *   taps of that row are the same shared rows shifted by one pixel (128 bytes): each input
 *   pixel crosses from L2 kh times, not kh x kw;
 * - split-K: where the tiles leave SMs idle (batch 1, small maps) or the weights fit shared
 *   memory only in slices (3x3 over 256 or more channels), configurations 2 and 3 split the
 *   reduction's steps (filter row x 64-channel block) into slices, a group of blocks per
 *   slice and block of output channels holding that slice's weights; they write float32
 *   partial sums that igemm.cu's reduce kernel adds up before the epilogue;
 * - two consumer warpgroups take the block's tiles in turn (ping-pong): each issues
 *   wgmma.m64nBNk16 for the tile's two 64-pixel halves, both operands read from shared
 *   memory through descriptors, and their main loops alternate on the tensor cores (named
 *   barriers), so that one's epilogue runs under the other's products. A producer warp
 *   feeds each warpgroup its own ring of input stages on mbarriers; the grid is persistent
 *   (one block per SM, tiles in raster order so neighbouring rows meet in L2);
 * - the accumulators start from the bias; the epilogue adds the residual, applies the
 *   activation and stores float16 (pitched: y may be a concat's channel slice).
 * Measured on an H200 (UNet at batch 8, 512x512, 3x3 64 -> 64 into a concat's slice):
 * 0.332 ms against cuDNN's 0.421 (which writes a dense copy first); without the ping-pong,
 * the descriptors built per instruction and the filter taps in a run-time loop, 0.534.
 * It applies to stride-1, undilated, one-group convolutions of 1 or 3 filter columns with C a
 * multiple of 64 and K of BN; unsplit, where the weights fit in shared memory beside four
 * stages (3x3 up to 128 channels at BN = 64): UNet's and VGG's wide early layers, where
 * cuDNN's best engine reached a third of the tensor cores' peak. The builder times it beside the other candidates; it is
 * numbered as further configurations of kiln's implicit GEMM (its weights, refit and plan
 * entry are the GEMM's). */
#include "cuda/kcu_pdl.cuh"
#include <cuda.h>
#include <cudaTypedefs.h>

#define WG_THREADS 288                 /* warps 0-7: two consumer warpgroups; warp 8: the producer */
#define WG_ROWS 136                    /* 128-byte shared rows of an input stage */
#define WG_STAGE (WG_ROWS * 128)       /* 17408 bytes, a multiple of 1024 (the swizzle's period) */
#define WG_MAX_STAGES 8            /* two rings of up to 4 */

/* The kernel's arguments beside its two tensor maps. */
typedef struct wg_args {
    int n, oh, ow, k, c, kh, kw, pt, pl;
    /* a tile: ti images of th rows of tw output pixels, their inputs wp pixels a row in shared
     * memory (tw + kw - 1: the halo), 128 pixel rows of it read as two m64 halves, the second
     * from row half1. Wide maps: one row of 128 (wp 130, half1 64) or two of 64 (wp 66, half1
     * 66). Maps of at most 64 padded columns: whole rows, wp = ow + kw - 1, as many as fit in
     * 128 (whole images where those fit): the kw - 1 columns past each row are computed and
     * dropped, so one input row serves every tap of the filter row */
    int tw, th, ti, wp, half1;
    int tiles_w, tiles_h, tiles; /* tiles across a row, down an image, in all */
    int nblocks, cblocks;       /* blocks of BN output channels, of 64 input channels */
    int steps, sper, z;         /* reduction steps (filter row, 64-channel block): kh*cblocks; split-K:
                                   z slices of sper steps (the last may be shorter) */
    int wblocks;                /* sper*kw weight tiles of BN x 64 in shared memory */
    int stages;
    int ldy, vec;               /* vec: y and the residual take 4-byte pairs */
    int uh, uw, co;             /* a deconvolution's scatter (1, 1, k for a convolution): column n = (i, j, c) of
                                   pixel (y, x) goes to output pixel (y*uh + i, x*uw + j), channel c < co */
    int res_after;
    int pdl_early;              /* trigger the next kernel as the block starts (KILN_PDL=early) */
    kcu_act act;
    const float *bias;
    const __half *res;
    __half *y;
    float *part;                /* z > 1: float32 partial sums [z][n*oh*ow][k], finished by kcu_igemm_reduce */
} wg_args;

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_ARCH 1
#endif

#ifdef WG_ARCH
__device__ __forceinline__ uint32_t wg_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void wg_bar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void wg_bar_expect(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void wg_bar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* Waits until the barrier's phase of this parity has completed. */
__device__ __forceinline__ void wg_bar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}

/* Tensor copies into shared memory, completing on an mbarrier; coordinates innermost first,
 * those outside the tensor read as zeros. */
__device__ __forceinline__ void wg_tma4(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, int c3,
                                        uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
                 "%4, %5}], [%6];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}
__device__ __forceinline__ void wg_tma2(uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, "
                 "%3}], [%4];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
                 : "memory");
}

/* A shared-memory matrix descriptor: K-major, 128-byte swizzle (8-row groups 1024 bytes
 * apart), the start address in 16-byte units in the low bits (added to, to step along K or
 * to shift rows). The swizzle follows the address bits: a start off the swizzle's 1024-byte
 * period (an input row shifted by a tap) needs no base offset (measured on an H200: setting
 * the field to the start's phase read wrong rows). */
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N, int R> __device__ __forceinline__ void wg_wait(float *d) {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
    #pragma unroll
    for (int i = 0; i < R; i++) asm volatile("" : "+f"(d[i])::"memory"); /* the sums are read after the wait */
}

__device__ __forceinline__ void wg_mma64(float *d, uint64_t da, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(1));
}

__device__ __forceinline__ void wg_mma128(float *d, uint64_t da, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\nwgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(1));
}

template <int BN> __device__ __forceinline__ void wg_mma(float *d, uint64_t da, uint64_t db) {
    if (BN == 64) wg_mma64(d, da, db);
    else wg_mma128(d, da, db);
}
#endif /* WG_ARCH */

template <int BN, int KW, int ACT>
__global__ void __launch_bounds__(WG_THREADS, 1)
    k_wgmma(const __grid_constant__ CUtensorMap xmap, const __grid_constant__ CUtensorMap wmap, const wg_args a) {
#ifndef WG_ARCH
    __trap();
#else
    extern __shared__ uint8_t wg_raw[];
    uint32_t base = (wg_smem(wg_raw) + 1023u) & ~1023u;
    int rs = a.stages / 2;                                     /* stages of each warpgroup's ring */
    uint32_t wsm = base;                                       /* weights: wblocks tiles of BN rows x 128 bytes */
    uint32_t xsm = wsm + (uint32_t)a.wblocks * BN * 128;       /* input stages: ring 0, then ring 1 */
    uint32_t full = xsm + (uint32_t)a.stages * WG_STAGE;       /* mbarriers: full[stages], empty[stages], weights */
    uint32_t empty = full + 8u * a.stages, wbar = empty + 8u * a.stages;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (threadIdx.x == 0) {
        for (int i = 0; i < a.stages; i++) {
            wg_bar_init(full + 8 * i, 1);
            wg_bar_init(empty + 8 * i, 1); /* the ring's warpgroup, once its products are done */
        }
        wg_bar_init(wbar, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (a.pdl_early) kcu_pdl_trigger();
    /* a group of blocks per (block of output channels, slice of the reduction): the slice's
     * weights stay in shared memory, the group's tiles are shared out in raster order */
    const int groups = a.nblocks * a.z, grp = blockIdx.x % groups, nb = grp % a.nblocks, zs = grp / a.nblocks;
    const int t0 = blockIdx.x / groups, tstep = gridDim.x / groups;
    const int st0 = zs * a.sper, nsteps = min(a.steps - st0, a.sper); /* the slice's reduction steps */
    if (warp == 8) { /* the producer: one lane issues every copy, tiles alternating between the rings */
        if (lane == 0) {
            /* weight tile (l, s): tap s of the slice's step l, at l*KW + s */
            wg_bar_expect(wbar, (uint32_t)(nsteps * KW) * BN * 128);
            for (int l = 0; l < nsteps; l++) {
                int r = (st0 + l) / a.cblocks, cb = st0 + l - r * a.cblocks;
                for (int s = 0; s < KW; s++)
                    wg_tma2(wsm + (uint32_t)(l * KW + s) * BN * 128, &wmap, (r * KW + s) * a.c + cb * 64, nb * BN, wbar);
            }
            kcu_pdl_wait(); /* the weights are on their way; the input is the previous kernel's output */
            uint32_t bytes = (uint32_t)(a.wp * a.th * a.ti * 128);
            int it = 0, other = 0; /* stages this ring and the other have taken */
            for (int t = t0, q = 0; t < a.tiles; t += tstep, q++) {
                int g = q & 1, tc = t % a.tiles_w, rest = t / a.tiles_w, tr = rest % a.tiles_h, img = rest / a.tiles_h * a.ti;
                if (q > 0) { /* the other ring's turn */
                    int x = it;
                    it = other;
                    other = x;
                }
                for (int l = 0; l < nsteps; l++) {
                    int r = (st0 + l) / a.cblocks, cb = st0 + l - r * a.cblocks;
                    int slot = g * rs + it % rs;
                    uint32_t ph = (uint32_t)(it / rs) & 1u;
                    it++;
                    wg_bar_wait(empty + 8 * slot, ph ^ 1u); /* the first round passes at once */
                    wg_bar_expect(full + 8 * slot, bytes);
                    wg_tma4(xsm + (uint32_t)slot * WG_STAGE, &xmap, cb * 64, tc * a.tw - a.pl, tr * a.th + r - a.pt, img,
                            full + 8 * slot);
                }
            }
        }
        return;
    }
    /* consumers: warpgroup g takes the block's tiles q = g, g + 2, ... (all 128 pixels, as two
     * m64 halves); their main loops take turns on the tensor cores (named barriers 1 and 2)
     * so that one's epilogue runs under the other's products */
    int g = warp / 4, w4 = warp % 4;
    const uint32_t half1 = (uint32_t)a.half1 * 128u; /* the second half's first shared row */
    /* this block's columns: filter tap (ti, tj) of a deconvolution (0, 0 otherwise), output
     * channels c0.. */
    const int tap = nb * BN / a.co, c0 = nb * BN - tap * a.co, ti = tap / a.uw, tj = tap - ti * a.uw;
    /* the thread's channel pairs 8j + 2*(lane%4) of this block, and their bias (a split's
     * partial sums start from zero: the reduction adds it) */
    const float *br = a.bias && a.z == 1 ? a.bias + c0 + 2 * (lane % 4) : NULL;
    /* at BN = 64 loaded once (every tile starts from them); at 128 per tile: the registers
     * (a 288-thread block gets 168 a thread) hold the 128 sums and little more */
    constexpr int HB = BN <= 64 ? BN / 8 : 1;
    float2 bias[HB];
    #pragma unroll
    for (int j = 0; j < HB; j++)
        bias[j] = br ? *reinterpret_cast<const float2 *>(br + 8 * j) : make_float2(0.0f, 0.0f);
    kcu_pdl_wait(); /* before the residual's reads and the output's writes */
    wg_bar_wait(wbar, 0);
    int it = 0;
    int count = (a.tiles - t0 + tstep - 1) / tstep; /* the block's tiles */
    const int img_rows = a.th * a.wp;                /* shared rows of one image of a tile */
    for (int q = g; q < count; q += 2) {
        int t = t0 + q * tstep;
        float acc[BN];
        #pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            float2 bv = BN <= 64 ? bias[j < HB ? j : 0]
                        : br ? *reinterpret_cast<const float2 *>(br + 8 * j) : make_float2(0.0f, 0.0f);
            #pragma unroll
            for (int x = 0; x < 4; x++) { /* [half][j][row h][pair] */
                acc[(x >> 1) * (BN / 2) + 4 * j + 2 * (x & 1)] = bv.x;
                acc[(x >> 1) * (BN / 2) + 4 * j + 2 * (x & 1) + 1] = bv.y;
            }
        }
        if (q > 0) asm volatile("bar.sync %0, 256;\n" ::"r"(1 + g) : "memory"); /* the other's main loop is issued */
        int prev = -1;
        for (int l = 0; l < nsteps; l++, it++) {
            int slot = g * rs + it % rs;
            wg_bar_wait(full + 8 * slot, (uint32_t)(it / rs) & 1u);
            uint64_t da = wg_desc(xsm + (uint32_t)slot * WG_STAGE);
            uint64_t db = wg_desc(wsm + (uint32_t)(l * KW) * BN * 128);
            wg_fence();
            #pragma unroll
            for (int s = 0; s < KW; s++)
                #pragma unroll
                for (int k = 0; k < 4; k++) { /* descriptor addresses count 16-byte units */
                    uint64_t bk = db + (uint64_t)(s * BN * 8 + k * 2);
                    wg_mma<BN>(acc, da + (uint64_t)(s * 8 + k * 2), bk);
                    wg_mma<BN>(acc + BN / 2, da + (uint64_t)((half1 >> 4) + s * 8 + k * 2), bk);
                }
            wg_commit();
            wg_wait<1, BN>(acc); /* the previous stage's products are done: release it */
            if (prev >= 0 && threadIdx.x % 128 == 0) wg_bar_arrive(empty + 8 * prev);
            prev = slot;
        }
        if (q + 1 < count) asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - g) : "memory"); /* the other's turn */
        wg_wait<0, BN>(acc);
        /* the block's last products are done: the next kernel's blocks may arrive for the
         * epilogues (kcu_pdl.cuh; the first warpgroup here triggers for the block) */
        if (q + 2 >= count) kcu_pdl_trigger();
        if (threadIdx.x % 128 == 0) wg_bar_arrive(empty + 8 * prev);
        /* the epilogue: rows 16*w4 + lane/4 (+8) of each half, channel pairs 8j + 2*(lane%4);
         * shared row sr of the tile is image sr / img_rows of it, row and column by wp */
        int tc = t % a.tiles_w, rest = t / a.tiles_w, tr = rest % a.tiles_h, img0 = rest / a.tiles_h * a.ti;
        #pragma unroll
        for (int x = 0; x < 4; x++) {
            int hf = x >> 1, sr = hf * a.half1 + 16 * w4 + lane / 4 + 8 * (x & 1);
            int il = sr / img_rows, sri = sr - il * img_rows, yy = sri / a.wp, xx = sri - yy * a.wp;
            int img = img0 + il, py = tr * a.th + yy, px = tc * a.tw + xx;
            if (il >= a.ti || xx >= a.tw || img >= a.n || py >= a.oh || px >= a.ow) continue;
            int64_t m = ((int64_t)img * a.oh + py) * a.ow + px;
            if (a.z > 1) { /* float32 partials of this slice, columns nb*BN.. of the GEMM */
                float *pz = a.part + ((int64_t)zs * a.n * a.oh * a.ow + m) * a.k + nb * BN + 2 * (lane % 4);
                #pragma unroll
                for (int j = 0; j < BN / 8; j++)
                    *reinterpret_cast<float2 *>(pz + 8 * j) =
                        make_float2(acc[hf * (BN / 2) + 4 * j + 2 * (x & 1)], acc[hf * (BN / 2) + 4 * j + 2 * (x & 1) + 1]);
                continue;
            }
            int64_t om = (((int64_t)img * a.oh + py) * a.uh + ti) * ((int64_t)a.ow * a.uw) + (int64_t)px * a.uw + tj;
            __half *yr = a.y + om * a.ldy + c0 + 2 * (lane % 4);
            if (!a.res && a.vec) { /* the common case: the activation and 4-byte stores alone */
                #pragma unroll
                for (int j = 0; j < BN / 8; j++) {
                    float v0 = acc[hf * (BN / 2) + 4 * j + 2 * (x & 1)], v1 = acc[hf * (BN / 2) + 4 * j + 2 * (x & 1) + 1];
                    *reinterpret_cast<__half2 *>(yr + 8 * j) =
                        __floats2half2_rn(kcu_epi_act<ACT>(a.act, v0), kcu_epi_act<ACT>(a.act, v1));
                }
                continue;
            }
            const __half *rr = a.res ? a.res + m * a.k + nb * BN + 2 * (lane % 4) : NULL;
            #pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                float v0 = acc[hf * (BN / 2) + 4 * j + 2 * (x & 1)], v1 = acc[hf * (BN / 2) + 4 * j + 2 * (x & 1) + 1];
                float r0 = 0.0f, r1 = 0.0f;
                if (rr) {
                    if (a.vec) {
                        float2 rv = __half22float2(*reinterpret_cast<const __half2 *>(rr + 8 * j));
                        r0 = rv.x, r1 = rv.y;
                    } else {
                        r0 = __half2float(rr[8 * j]), r1 = __half2float(rr[8 * j + 1]);
                    }
                }
                if (a.res_after) {
                    v0 = kcu_epi_act<ACT>(a.act, v0) + r0, v1 = kcu_epi_act<ACT>(a.act, v1) + r1;
                } else {
                    v0 = kcu_epi_act<ACT>(a.act, v0 + r0), v1 = kcu_epi_act<ACT>(a.act, v1 + r1);
                }
                if (a.vec) {
                    *reinterpret_cast<__half2 *>(yr + 8 * j) = __floats2half2_rn(v0, v1);
                } else {
                    yr[8 * j] = __float2half_rn(v0);
                    yr[8 * j + 1] = __float2half_rn(v1);
                }
            }
        }
    }
#endif
}

/* ---- host side ---- */

/* The configurations, in the order they are numbered (stored in plans: append only): a
 * block of output channels, and whether the reduction is split (split-K: where the tiles
 * leave SMs idle, or the weights need slicing to fit in shared memory; such a
 * configuration applies only where it does split). */
static const struct {
    int bn, split;
} wg_cfg[] = {{64, 0}, {128, 0}, {64, 1}, {128, 1}};
#define WG_CONFIGS ((int)(sizeof wg_cfg / sizeof wg_cfg[0]))
/* sm_90's shared memory per block (opt-in): splits follow from the shape alone, so a plan's
 * configuration gives the same scratch when it is loaded */
#define WG_SMEM_SM90 232448
#define WG_SMS 132 /* an H100 SXM's or H200's SMs: the split fills this many */

extern "C" int kcu_wgmma_configs(void) { return WG_CONFIGS; }
extern "C" int kcu_wgmma_bn(int cfg) { return cfg >= 0 && cfg < WG_CONFIGS ? wg_cfg[cfg].bn : 0; }

static int wg_smem_optin(void) {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return v;
}

/* The geometry of configuration cfg on this shape (false: it does not apply). */
static bool wg_geom(const kcu_igemm *p, int cfg, int smem_max, wg_args *a, int *smem) {
    if (cfg < 0 || cfg >= WG_CONFIGS) return false;
    int bn = wg_cfg[cfg].bn;
    if (p->kw != 1 && p->kw != 3) return false; /* the taps of a row unrolled at compile time */
    /* a deconvolution's scatter (its 1x1 shape checked by igemm.cu's ig_shape_ok before any
     * configuration): bn columns within one filter tap */
    bool up = p->uh > 0;
    if (up && (p->uw <= 0 || p->k % (p->uh * p->uw) || (p->k / (p->uh * p->uw)) % bn)) return false;
    if (p->sh != 1 || p->sw != 1 || p->dh != 1 || p->dw != 1 || p->c % 64 || p->k % bn ||
        p->n <= 0 || p->oh <= 0 || p->ow <= 0 || p->kh <= 0 || p->kw <= 0 || p->pt < 0 || p->pl < 0 ||
        (int64_t)p->kh * p->kw * p->c != p->kg)
        return false;
    memset(a, 0, sizeof *a);
    if (p->ow + p->kw - 1 <= 64) { /* whole padded rows, whole images where they fit */
        a->wp = p->ow + p->kw - 1;
        a->tw = p->ow;
        a->th = 128 / a->wp < p->oh ? 128 / a->wp : p->oh;
        a->ti = a->th == p->oh ? 128 / (a->th * a->wp) : 1;
        if (a->ti > p->n) a->ti = p->n;
        a->half1 = 64;
    } else { /* one row of 128 pixels, or two of 64 */
        a->tw = p->ow > 64 ? 128 : 64;
        a->th = 128 / a->tw;
        a->ti = 1;
        a->wp = a->tw + p->kw - 1;
        a->half1 = a->th == 1 ? 64 : a->wp;
    }
    /* a stage holds the tile's rows, and the second half's reads stay inside it */
    if (a->wp * a->th * a->ti > WG_ROWS || a->half1 + 63 + p->kw - 1 >= WG_ROWS) return false;
    a->cblocks = p->c / 64;
    a->steps = p->kh * a->cblocks;
    a->oh = p->oh, a->ow = p->ow, a->k = p->k, a->c = p->c, a->kh = p->kh, a->kw = p->kw, a->pt = p->pt, a->pl = p->pl;
    a->n = p->n;
    a->tiles_w = (p->ow + a->tw - 1) / a->tw;
    a->tiles_h = (p->oh + a->th - 1) / a->th;
    int64_t tiles = (int64_t)((p->n + a->ti - 1) / a->ti) * a->tiles_w * a->tiles_h;
    if (tiles > INT32_MAX / 2 || (int64_t)p->h * p->w * p->c > ((int64_t)1 << 36)) return false;
    a->tiles = (int)tiles;
    a->nblocks = p->k / bn;
    /* the reduction steps whose weights fit beside four input stages (on any sm_90) */
    int64_t step_bytes = (int64_t)p->kw * bn * 128, base = 1024 + 16 * (WG_MAX_STAGES + 1) + 4 * WG_STAGE;
    int64_t fit = (WG_SMEM_SM90 - base) / step_bytes;
    if (fit < 1) return false;
    int64_t z = 1;
    if (wg_cfg[cfg].split) {
        int64_t items = (int64_t)a->tiles * a->nblocks, want = (WG_SMS + items - 1) / items;
        z = want < a->steps ? want : a->steps;
        if (z < (a->steps + fit - 1) / fit) z = (a->steps + fit - 1) / fit;
        int64_t per = (a->steps + z - 1) / z; /* no empty slices */
        z = (a->steps + per - 1) / per;
        if (z < 2 || (int64_t)a->nblocks * z > 65535) return false; /* unsplit: configurations 0 and 1 */
    } else if (a->steps > fit) {
        return false;
    }
    a->z = (int)z;
    a->sper = (a->steps + a->z - 1) / a->z;
    int64_t wblocks = (int64_t)a->sper * p->kw;
    int64_t wbytes = wblocks * bn * 128, fixed = wbytes + 1024 + 16 * (WG_MAX_STAGES + 1);
    if (fixed + 4 * WG_STAGE > smem_max) return false; /* the weights stay, beside two rings of two stages */
    a->wblocks = (int)wblocks;
    a->stages = (int)((smem_max - fixed) / WG_STAGE) & ~1;
    if (a->stages > WG_MAX_STAGES) a->stages = WG_MAX_STAGES;
    a->uh = up ? p->uh : 1;
    a->uw = up ? p->uw : 1;
    a->co = p->k / (a->uh * a->uw);
    *smem = (int)(wbytes + 1024 + (int64_t)a->stages * WG_STAGE + 16 * a->stages + 8);
    return true;
}

extern "C" int kcu_wgmma_splits(const kcu_igemm *p, int cfg) {
    wg_args a;
    int smem;
    return wg_geom(p, cfg, WG_SMEM_SM90, &a, &smem) ? a.z : 1;
}

/* The current device is a Hopper of compute capability 9.0 exactly: the kernel's sm_90a
 * code runs there and nowhere else. */
static bool wg_device_ok(void) {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return major == 9 && minor == 0;
}

extern "C" int kcu_wgmma_applies(const kcu_igemm *p, int cfg) {
    wg_args a;
    int smem;
    return wg_device_ok() && wg_geom(p, cfg, wg_smem_optin(), &a, &smem);
}

/* The driver's tensor-map encoder, looked up once (the runtime is linked statically: no
 * libcuda at link time). */
static PFN_cuTensorMapEncodeTiled_v12000 wg_lookup(void) {
    void *fn = NULL;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return (PFN_cuTensorMapEncodeTiled_v12000)fn;
}


template <int BN, int KW, int ACT>
static cudaError_t wg_launch(cudaStream_t s, const CUtensorMap &xm, const CUtensorMap &wm, const wg_args &a, int smem,
                             int ctas) {
    cudaError_t e = cudaFuncSetAttribute(k_wgmma<BN, KW, ACT>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    return kcu_pdl_launch(k_wgmma<BN, KW, ACT>, dim3(ctas), dim3(WG_THREADS), (size_t)smem, s, xm, wm, a);
}

template <int BN, int KW>
static cudaError_t wg_launch_act(int act, cudaStream_t s, const CUtensorMap &xm, const CUtensorMap &wm,
                                 const wg_args &a, int smem, int ctas) {
    switch (act) {
    case KCU_EPI_NONE: return wg_launch<BN, KW, KCU_EPI_NONE>(s, xm, wm, a, smem, ctas);
    case KCU_EPI_RELU: return wg_launch<BN, KW, KCU_EPI_RELU>(s, xm, wm, a, smem, ctas);
    case KCU_EPI_SILU: return wg_launch<BN, KW, KCU_EPI_SILU>(s, xm, wm, a, smem, ctas);
    default: return wg_launch<BN, KW, KCU_EPI_ANY>(s, xm, wm, a, smem, ctas);
    }
}

extern "C" cudaError_t kcu_wgmma_run(cudaStream_t s, int cfg, const kcu_igemm *p, const void *x, const void *w,
                                     const float *bias, const void *res, void *y, void *workspace) {
    static PFN_cuTensorMapEncodeTiled_v12000 encode = wg_lookup();
    wg_args a;
    int smem, dev = 0, sms = 0;
    if (!encode || !wg_geom(p, cfg, wg_smem_optin(), &a, &smem)) return cudaErrorInvalidValue;
    if ((uintptr_t)x % 16 || (uintptr_t)w % 16 || (uintptr_t)bias % 8) return cudaErrorInvalidValue;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess) return e;
    int bn = wg_cfg[cfg].bn;
    if (a.z > 1 && (!workspace || (uintptr_t)workspace % 16)) return cudaErrorInvalidValue;
    a.part = (float *)workspace;
    a.ldy = p->ldy ? p->ldy : a.co;
    if (a.ldy < a.co || (p->uh > 0 && res)) return cudaErrorInvalidValue; /* a deconvolution adds no residual */
    a.vec = a.ldy % 2 == 0 && ((uintptr_t)y | (uintptr_t)res) % 4 == 0;
    a.res_after = p->res_after;
    a.pdl_early = kcu_pdl_early();
    a.act = p->act;
    a.bias = bias;
    a.res = (const __half *)res;
    a.y = (__half *)y;
    /* x: [n, h, w, c] innermost first; a box is 64 channels x a tile row's halo x th rows */
    CUtensorMap xm, wm;
    cuuint64_t xdim[4] = {(cuuint64_t)p->c, (cuuint64_t)p->w, (cuuint64_t)p->h, (cuuint64_t)p->n};
    cuuint64_t xstr[3] = {(cuuint64_t)p->c * 2, (cuuint64_t)p->w * p->c * 2, (cuuint64_t)p->h * p->w * p->c * 2};
    cuuint32_t xbox[4] = {64, (cuuint32_t)a.wp, (cuuint32_t)a.th, (cuuint32_t)a.ti}, one[4] = {1, 1, 1, 1};
    if (encode(&xm, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4, const_cast<void *>(x), xdim, xstr, xbox, one,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
        return cudaErrorInvalidValue;
    /* the weights: [k, kg] rows; a box is 64 reduction elements x bn output channels */
    cuuint64_t wdim[2] = {(cuuint64_t)p->kg, (cuuint64_t)p->k}, wstr[1] = {(cuuint64_t)p->kg * 2};
    cuuint32_t wbox[2] = {64, (cuuint32_t)bn};
    if (encode(&wm, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void *>(w), wdim, wstr, wbox, one,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
        return cudaErrorInvalidValue;
    /* persistent: one block per SM, each on one block of output channels and one slice of
     * the reduction */
    int64_t groups = (int64_t)a.nblocks * a.z, per = sms / groups > 0 ? sms / groups : 1;
    if (per > a.tiles) per = a.tiles;
    int ctas = (int)(per * groups);
    int act = kcu_epi_kind(p->has_act, p->act);
    if (bn == 64) e = p->kw == 3 ? wg_launch_act<64, 3>(act, s, xm, wm, a, smem, ctas)
                                 : wg_launch_act<64, 1>(act, s, xm, wm, a, smem, ctas);
    else e = p->kw == 3 ? wg_launch_act<128, 3>(act, s, xm, wm, a, smem, ctas)
                        : wg_launch_act<128, 1>(act, s, xm, wm, a, smem, ctas);
    if (e != cudaSuccess || a.z == 1) return e;
    return kcu_igemm_reduce(s, p, a.z, a.part, bias, res, y);
}
