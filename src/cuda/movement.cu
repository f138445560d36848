/* kiln CUDA backend: data-movement kernels: the strided view copy (slice, transpose,
 * expand, tile, depth/space), pad/crop through per-axis tables, and gather. They move
 * bits, so one instantiation per element size serves every dtype. */
#include "cuda/kcu_device.cuh"

/* ---- strided copy ---- */

template <typename E, int ND>
__global__ void k_mv_fixed(kcu_mv p, const E *__restrict__ src, E *dst) {
    KCU_LOOP(i, p.total) {
        int64_t r = i, off = 0;
#pragma unroll
        for (int d = ND - 1; d >= 0; d--) {
            int64_t c = r % p.dims[d];
            r /= p.dims[d];
            off += c * p.ss[d];
        }
        dst[i] = src[off];
    }
}

/* The same with 32-bit index arithmetic, when every index fits: 64-bit division is a long
 * software sequence on the GPU and dominated these copies. */
template <typename E, int ND>
__global__ void k_mv_fixed32(kcu_mv p, const E *__restrict__ src, E *dst) {
    int total = (int)p.total;
    int dims[ND], ss[ND];
#pragma unroll
    for (int d = 0; d < ND; d++) {
        dims[d] = (int)p.dims[d];
        ss[d] = (int)p.ss[d];
    }
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        int r = i, off = 0;
#pragma unroll
        for (int d = ND - 1; d >= 0; d--) {
            int c = r % dims[d];
            r /= dims[d];
            off += c * ss[d];
        }
        dst[i] = src[off];
    }
}

/* Whether every index of p fits in 32 bits: the element count and the largest source offset. */
static bool mv_fits32(const kcu_mv *p) {
    if (p->total >= INT32_MAX) return false;
    int64_t hi = 0;
    for (int d = 0; d < p->nd; d++) {
        if (p->ss[d] < 0) return false;
        hi += (p->dims[d] - 1) * p->ss[d];
    }
    return hi < INT32_MAX;
}

template <typename E>
__global__ void k_mv(kcu_mv p, const E *__restrict__ src, E *dst) {
    KCU_LOOP(i, p.total) {
        int64_t r = i, off = 0;
        for (int d = p.nd - 1; d >= 0; d--) {
            int64_t c = r % p.dims[d];
            r /= p.dims[d];
            off += c * p.ss[d];
        }
        dst[i] = src[off];
    }
}

/* A transpose-like view whose inner output axis reads with a large stride while the axis
 * before it reads contiguously goes through shared-memory tiles, so that both the reads
 * and the writes are coalesced. */
#define TILE 32
template <typename E>
__global__ void k_mv_transpose(int64_t batch, int64_t rows, int64_t cols, int64_t bs, int64_t rs, int64_t cs,
                               const E *__restrict__ src, E *dst) {
    /* output [b, r, c] = src[b*bs + r*rs + c*cs] with rs == 1: read tiles along r, write along c */
    __shared__ E tile[TILE][TILE + 1];
    int64_t tiles_r = (rows + TILE - 1) / TILE, tiles_c = (cols + TILE - 1) / TILE;
    for (int64_t t = blockIdx.x; t < batch * tiles_r * tiles_c; t += gridDim.x) {
        int64_t b = t / (tiles_r * tiles_c), rem = t % (tiles_r * tiles_c);
        int64_t r0 = (rem / tiles_c) * TILE, c0 = (rem % tiles_c) * TILE;
        const E *s = src + b * bs;
        E *d = dst + b * rows * cols;
        /* load: threadIdx.x walks r (contiguous in the source) */
        for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
            int64_t r = r0 + threadIdx.x, c = c0 + j;
            if (r < rows && c < cols) tile[j][threadIdx.x] = s[r * rs + c * cs];
        }
        __syncthreads();
        /* store: threadIdx.x walks c (contiguous in the output) */
        for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
            int64_t r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) d[r * cols + c] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}

template <typename E>
static void launch_mv(cudaStream_t s, const kcu_mv *p, const E *src, E *dst) {
    unsigned g = kcu_blocks(p->total);
    int nd = p->nd;
    /* transpose tile path: [.., rows (source stride 1), cols (large source stride)] */
    if (nd >= 2 && nd <= 3 && p->ss[nd - 2] == 1 && p->ss[nd - 1] != 1 && p->dims[nd - 1] >= 8 &&
        p->dims[nd - 2] >= 8) {
        int64_t batch = nd == 3 ? p->dims[0] : 1, bs = nd == 3 ? p->ss[0] : 0;
        int64_t rows = p->dims[nd - 2], cols = p->dims[nd - 1];
        int64_t tiles = batch * ((rows + TILE - 1) / TILE) * ((cols + TILE - 1) / TILE);
        dim3 block(TILE, 8);
        unsigned gt = (unsigned)(tiles < KCU_MAX_BLOCKS ? tiles : KCU_MAX_BLOCKS);
        k_mv_transpose<E><<<gt, block, 0, s>>>(batch, rows, cols, bs, 1, p->ss[nd - 1], src, dst);
        return;
    }
    if (nd >= 1 && nd <= 6 && mv_fits32(p)) {
        switch (nd) {
        case 1: k_mv_fixed32<E, 1><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
        case 2: k_mv_fixed32<E, 2><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
        case 3: k_mv_fixed32<E, 3><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
        case 4: k_mv_fixed32<E, 4><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
        case 5: k_mv_fixed32<E, 5><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
        default: k_mv_fixed32<E, 6><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
        }
        return;
    }
    switch (nd) {
    case 1: k_mv_fixed<E, 1><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
    case 2: k_mv_fixed<E, 2><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
    case 3: k_mv_fixed<E, 3><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
    case 4: k_mv_fixed<E, 4><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
    default: k_mv<E><<<g, KCU_THREADS, 0, s>>>(*p, src, dst); break;
    }
}

extern "C" cudaError_t kcu_mv_run(cudaStream_t s, const kcu_mv *p, int es, const void *src, void *dst) {
    if (p->total <= 0) return cudaSuccess;
    KCU_BY_SIZE(es, launch_mv<E>(s, p, (const E *)src + p->src_offset, (E *)dst));
    return kcu_launched();
}

/* ---- 2-D copy (concat and split pieces) ----
 * rows of `width` bytes between pitched buffers, in the widest unit (16, 8, 4, 2 or 1
 * bytes) that divides the width, both pitches and both addresses: cudaMemcpy2DAsync
 * between device buffers moved narrow rows (a piece of a channels-last concat) far below
 * the memory bandwidth. */
template <typename U>
__global__ void k_copy2d(char *dst, int64_t dpitch, const char *__restrict__ src, int64_t spitch, int64_t units,
                         int64_t rows) {
    int64_t total = units * rows;
    if (total < INT32_MAX && units < INT32_MAX) {
        int t = (int)total, u = (int)units;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < t; i += gridDim.x * blockDim.x) {
            int r = i / u, c = i - r * u;
            reinterpret_cast<U *>(dst + r * dpitch)[c] = reinterpret_cast<const U *>(src + r * spitch)[c];
        }
        return;
    }
    KCU_LOOP(i, total) {
        int64_t r = i / units, c = i - r * units;
        reinterpret_cast<U *>(dst + r * dpitch)[c] = reinterpret_cast<const U *>(src + r * spitch)[c];
    }
}

extern "C" cudaError_t kcu_copy2d(cudaStream_t s, void *dst, int64_t dpitch, const void *src, int64_t spitch,
                                  int64_t width, int64_t rows) {
    if (width <= 0 || rows <= 0) return cudaSuccess;
    uint64_t all = (uint64_t)width | (uint64_t)dpitch | (uint64_t)spitch | (uint64_t)(uintptr_t)dst |
                   (uint64_t)(uintptr_t)src;
    int unit = all % 16 == 0 ? 16 : all % 8 == 0 ? 8 : all % 4 == 0 ? 4 : all % 2 == 0 ? 2 : 1;
    int64_t units = width / unit;
    unsigned g = kcu_blocks(units * rows);
    char *d = (char *)dst;
    const char *x = (const char *)src;
    switch (unit) {
    case 16: k_copy2d<uint4><<<g, KCU_THREADS, 0, s>>>(d, dpitch, x, spitch, units, rows); break;
    case 8: k_copy2d<uint2><<<g, KCU_THREADS, 0, s>>>(d, dpitch, x, spitch, units, rows); break;
    case 4: k_copy2d<uint32_t><<<g, KCU_THREADS, 0, s>>>(d, dpitch, x, spitch, units, rows); break;
    case 2: k_copy2d<uint16_t><<<g, KCU_THREADS, 0, s>>>(d, dpitch, x, spitch, units, rows); break;
    default: k_copy2d<uint8_t><<<g, KCU_THREADS, 0, s>>>(d, dpitch, x, spitch, units, rows); break;
    }
    return kcu_launched();
}

/* ---- pad ---- */

template <typename E>
__global__ void k_pad(kcu_pad p, const E *__restrict__ src, E *dst) {
    E value;
    memcpy(&value, &p.value, sizeof(E));
    KCU_LOOP(i, p.total) {
        int64_t r = i, off = 0;
        bool fill = false;
        for (int d = p.rank - 1; d >= 0; d--) {
            int64_t c = r % p.out[d];
            r /= p.out[d];
            int64_t from = p.maps[p.map_off[d] + c];
            if (from < 0) fill = true;
            else off += from * p.in_stride[d];
        }
        dst[i] = fill ? value : src[off];
    }
}

/* Only the last axis grows, at its end (kcu_pad.row_in): element i is column i % w of row
 * i / w, from the source row or the constant; unsigned I indexing (32 bits where the
 * output fits) keeps the division cheap. The general kernel above walks every axis through
 * its map for each element: 7x slower on a UNet stem's 3 -> 8 channels. */
template <typename E, typename I>
__global__ void k_pad_rows(I total, I w, I row_in, uint64_t bits, const E *__restrict__ src, E *dst) {
    E value;
    memcpy(&value, &bits, sizeof(E));
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        I r = i / w, c = i - r * w;
        dst[i] = c < row_in ? src[r * row_in + c] : value;
    }
}

extern "C" cudaError_t kcu_pad_run(cudaStream_t s, const kcu_pad *p, int es, const void *src, void *dst) {
    if (p->total <= 0) return cudaSuccess;
    int64_t w = p->out[p->rank - 1];
    if (p->row_in > 0 && w > 0) {
        if (p->total <= INT32_MAX) { /* i + the grid stays below 2^32 */
            KCU_BY_SIZE(es, (k_pad_rows<E, uint32_t><<<kcu_blocks(p->total), KCU_THREADS, 0, s>>>(
                                (uint32_t)p->total, (uint32_t)w, (uint32_t)p->row_in, p->value, (const E *)src, (E *)dst)));
        } else {
            KCU_BY_SIZE(es, (k_pad_rows<E, uint64_t><<<kcu_blocks(p->total), KCU_THREADS, 0, s>>>(
                                (uint64_t)p->total, (uint64_t)w, (uint64_t)p->row_in, p->value, (const E *)src, (E *)dst)));
        }
        return kcu_launched();
    }
    KCU_BY_SIZE(es, (k_pad<E><<<kcu_blocks(p->total), KCU_THREADS, 0, s>>>(*p, (const E *)src, (E *)dst)));
    return kcu_launched();
}

/* ---- space-to-depth with zero padding (strided float16 convolutions, dnn.c) ----
 * One thread writes 8 consecutive output channels (16 bytes). */

__global__ void k_s2d(kcu_s2d p, const __half *__restrict__ x, uint4 *__restrict__ y) {
    /* 32-bit index arithmetic (kcu_s2d_run checks the sizes fit) */
    const int groups = (int)(p.cs / 8), ws = (int)p.ws, hs = (int)p.hs, c = (int)p.c, s = (int)p.s;
    const int h = (int)p.h, w = (int)p.w, pt = (int)p.pt, pl = (int)p.pl, used = s * s * c;
    const int64_t total = p.n * hs * ws * groups;
    KCU_LOOP(i64, total) {
        int i = (int)i64; /* < 2^31 */
        int g = i % groups, t = i / groups, X = t % ws;
        t /= ws;
        int Y = t % hs, n = t / hs;
        const __half *img = x + (int64_t)n * h * w * c;
        __align__(16) __half v[8];
        int ch = g * 8, r = ch / c, cc = ch - r * c; /* r: the block position ry * s + rx */
        for (int j = 0; j < 8; j++, ch++) {
            int ry = r / s, iy = s * Y + ry - pt, ix = s * X + (r - ry * s) - pl;
            bool in = ch < used && iy >= 0 && iy < h && ix >= 0 && ix < w;
            v[j] = in ? img[(iy * w + ix) * c + cc] : __float2half(0.0f);
            if (++cc == c) cc = 0, r++;
        }
        y[i64] = *(const uint4 *)v;
    }
}

extern "C" cudaError_t kcu_s2d_run(cudaStream_t s, const kcu_s2d *p, const void *x, void *y) {
    int64_t total = p->n * p->hs * p->ws * (p->cs / 8);
    if (total <= 0) return cudaSuccess;
    if (p->cs % 8 || total > INT32_MAX || p->h * p->w * p->c > INT32_MAX || p->s * p->s * p->c > p->cs)
        return cudaErrorInvalidValue;
    k_s2d<<<kcu_blocks(total), KCU_THREADS, 0, s>>>(*p, (const __half *)x, (uint4 *)y);
    return kcu_launched();
}

/* ---- gather ---- */

template <typename E, typename I>
__global__ void k_gather(const E *__restrict__ data, const I *__restrict__ idx, int64_t outer, int64_t count,
                         int64_t D, int64_t inner, E *out, kcu_err *err, int node) {
    int64_t total = outer * count * inner;
    KCU_LOOP(i, total) {
        int64_t in = i % inner, t = i / inner, k = t % count, o = t / count;
        int64_t raw = (int64_t)idx[k], v = raw < 0 ? raw + D : raw;
        if (v < 0 || v >= D) {
            /* never read out of bounds; the host reports the fault after the run */
            kcu_fault(err, KCU_FAULT_GATHER_INDEX, node, raw, k);
            out[i] = E(0);
            continue;
        }
        out[i] = data[(o * D + v) * inner + in];
    }
}

/* Checks the indices even when there is nothing to copy, as the CPU kernel does. */
template <typename I>
__global__ void k_check_indices(const I *__restrict__ idx, int64_t count, int64_t D, kcu_err *err, int node) {
    KCU_LOOP(k, count) {
        int64_t raw = (int64_t)idx[k], v = raw < 0 ? raw + D : raw;
        if (v < 0 || v >= D) kcu_fault(err, KCU_FAULT_GATHER_INDEX, node, raw, k);
    }
}

extern "C" cudaError_t kcu_gather(cudaStream_t s, int es, const void *data, const void *idx, int idx64, int64_t outer,
                                  int64_t count, int64_t D, int64_t inner, void *out, kcu_err *err, int node) {
    if (count <= 0) return cudaSuccess;
    int64_t total = outer * count * inner;
    if (total <= 0) {
        if (idx64)
            k_check_indices<int64_t><<<kcu_blocks(count), KCU_THREADS, 0, s>>>((const int64_t *)idx, count, D, err, node);
        else
            k_check_indices<int32_t><<<kcu_blocks(count), KCU_THREADS, 0, s>>>((const int32_t *)idx, count, D, err, node);
        return kcu_launched();
    }
    unsigned g = kcu_blocks(total);
    if (idx64) {
        KCU_BY_SIZE(es, (k_gather<E, int64_t><<<g, KCU_THREADS, 0, s>>>((const E *)data, (const int64_t *)idx, outer,
                                                                       count, D, inner, (E *)out, err, node)));
    } else {
        KCU_BY_SIZE(es, (k_gather<E, int32_t><<<g, KCU_THREADS, 0, s>>>((const E *)data, (const int32_t *)idx, outer,
                                                                       count, D, inner, (E *)out, err, node)));
    }
    return kcu_launched();
}
