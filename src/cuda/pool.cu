/* kiln CUDA backend: pooling (windowed and global) and resize. Window bounds and average
 * divisors are computed exactly as src/cpu/pool.c tabulates them; resize reads the
 * per-axis index/weight tables the host built at prepare (src/cpu/resize.c's mapping). */
#include "cuda/kcu_pdl.cuh"

/* The t in [0, count) with 0 <= t*stride + off < limit, as [*lo, *hi). */
__device__ inline void tap_range(int64_t off, int64_t stride, int64_t limit, int64_t count, int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t b = limit - off > 0 ? (limit - off + stride - 1) / stride : 0;
    if (b > count) b = count;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

__global__ void k_pool(kcu_pool p, const float *__restrict__ x, float *y) {
    int64_t total = p.planes * p.oh * p.ow;
    KCU_LOOP(idx, total) {
        int64_t ow = idx % p.ow, t = idx / p.ow, oh = t % p.oh, plane = t / p.oh;
        int64_t r0 = oh * p.sh - p.pt, c0 = ow * p.sw - p.pl;
        int64_t i0, i1, j0, j1;
        tap_range(r0, p.dh, p.h, p.kh, &i0, &i1);
        tap_range(c0, p.dw, p.w, p.kw, &j0, &j1);
        const float *xs = x + plane * p.h * p.w;
        float r;
        if (p.max) {
            r = -INFINITY;
            for (int64_t i = i0; i < i1; i++) {
                const float *xr = xs + (r0 + i * p.dh) * p.w + c0;
                for (int64_t j = j0; j < j1; j++) {
                    float v = xr[j * p.dw];
                    if (v > r || v != v) r = v; /* NaN propagates, as in ONNX Runtime and PyTorch */
                }
            }
        } else {
            float acc = 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                const float *xr = xs + (r0 + i * p.dh) * p.w + c0;
                for (int64_t j = j0; j < j1; j++) acc += xr[j * p.dw];
            }
            float hd, wd;
            if (p.include_pad) {
                /* taps inside the padded extent, not those ceil mode adds beyond it */
                int64_t a, b;
                tap_range(oh * p.sh, p.dh, p.h + p.pt + p.pb, p.kh, &a, &b);
                hd = (float)(b - a);
                tap_range(ow * p.sw, p.dw, p.w + p.pl + p.pr, p.kw, &a, &b);
                wd = (float)(b - a);
            } else {
                hd = (float)(i1 - i0);
                wd = (float)(j1 - j0);
            }
            float div = hd * wd;
            r = div > 0 ? acc / div : 0.0f;
        }
        y[idx] = r;
    }
}

extern "C" cudaError_t kcu_pool_run(cudaStream_t s, const kcu_pool *p, const float *x, float *y) {
    int64_t total = p->planes * p->oh * p->ow;
    if (total <= 0) return cudaSuccess;
    k_pool<<<kcu_blocks(total), KCU_THREADS, 0, s>>>(*p, x, y);
    return kcu_launched();
}

/* NaN-propagating max, as the CPU's sequential scan gives. */
__device__ inline float nan_max(float a, float b) { return (a != a) ? a : (b != b) ? b : (b > a ? b : a); }

/* One block per plane; averages accumulate in double like the CPU kernel. */
__global__ void k_global_pool(int max, int64_t planes, int64_t hw, const float *__restrict__ x, float *y) {
    __shared__ double sd[KCU_THREADS];
    __shared__ float sf[KCU_THREADS];
    for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
        const float *xs = x + p * hw;
        double acc = 0;
        float m = -INFINITY;
        for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
            float v = xs[i];
            if (max) m = nan_max(m, v);
            else acc += v;
        }
        sd[threadIdx.x] = acc;
        sf[threadIdx.x] = m;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w /= 2) {
            if ((int)threadIdx.x < w) {
                sd[threadIdx.x] += sd[threadIdx.x + w];
                sf[threadIdx.x] = nan_max(sf[threadIdx.x], sf[threadIdx.x + w]);
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) y[p] = max ? sf[0] : (float)(sd[0] / (double)hw);
        __syncthreads();
    }
}

/* Small planes: one thread per plane keeps every thread busy. */
__global__ void k_global_pool_small(int max, int64_t planes, int64_t hw, const float *__restrict__ x, float *y) {
    KCU_LOOP(p, planes) {
        const float *xs = x + p * hw;
        double acc = 0;
        float m = -INFINITY;
        for (int64_t i = 0; i < hw; i++) {
            float v = xs[i];
            if (max) m = nan_max(m, v);
            else acc += v;
        }
        y[p] = max ? m : (float)(acc / (double)hw);
    }
}

extern "C" cudaError_t kcu_global_pool(cudaStream_t s, int max, int64_t planes, int64_t hw, const float *x, float *y) {
    if (planes <= 0 || hw <= 0) return cudaSuccess;
    if (hw <= 64) {
        k_global_pool_small<<<kcu_blocks(planes), KCU_THREADS, 0, s>>>(max, planes, hw, x, y);
    } else {
        unsigned g = (unsigned)(planes < KCU_MAX_BLOCKS ? planes : KCU_MAX_BLOCKS);
        k_global_pool<<<g, KCU_THREADS, 0, s>>>(max, planes, hw, x, y);
    }
    return kcu_launched();
}

/* ---- channels-last pooling: a thread per output element, channels innermost so that
 * neighbouring threads read neighbouring channels ---- */

template <typename T>
__global__ void k_pool_nhwc(kcu_pool p, int64_t C, const T *__restrict__ x, T *y) {
    int64_t total = p.planes * p.oh * p.ow * C;
    KCU_LOOP(idx, total) {
        int64_t c = idx % C, t = idx / C, ow = t % p.ow, px = t;
        t /= p.ow;
        int64_t oh = t % p.oh, n = t / p.oh;
        int64_t r0 = oh * p.sh - p.pt, c0 = ow * p.sw - p.pl;
        int64_t i0, i1, j0, j1;
        tap_range(r0, p.dh, p.h, p.kh, &i0, &i1);
        tap_range(c0, p.dw, p.w, p.kw, &j0, &j1);
        const T *xs = x + n * p.h * p.w * p.xp + c;
        float r;
        if (p.max) {
            r = -INFINITY;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) {
                    float v = kcu_ld(xs, ((r0 + i * p.dh) * p.w + c0 + j * p.dw) * p.xp);
                    if (v > r || v != v) r = v;
                }
        } else {
            float acc = 0.0f;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) acc += kcu_ld(xs, ((r0 + i * p.dh) * p.w + c0 + j * p.dw) * p.xp);
            float hd, wd;
            if (p.include_pad) {
                int64_t a, b;
                tap_range(oh * p.sh, p.dh, p.h + p.pt + p.pb, p.kh, &a, &b);
                hd = (float)(b - a);
                tap_range(ow * p.sw, p.dw, p.w + p.pl + p.pr, p.kw, &a, &b);
                wd = (float)(b - a);
            } else {
                hd = (float)(i1 - i0);
                wd = (float)(j1 - j0);
            }
            float div = hd * wd;
            r = div > 0 ? acc / div : 0.0f;
        }
        kcu_st(y, px * p.yp + c, r);
    }
}

/* Eight float16 values, one 16-byte load. */
__device__ inline void h8_load(const uint4 *p, float *v) {
    uint4 u = *p;
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
    for (int k = 0; k < 4; k++) {
        float2 f = __half22float2(h[k]);
        v[2 * k] = f.x;
        v[2 * k + 1] = f.y;
    }
}

/* tap_range in 32 bits. */
__device__ inline void tap_range32(int off, int stride, int limit, int count, int *lo, int *hi) {
    int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int b = limit - off > 0 ? (limit - off + stride - 1) / stride : 0;
    if (b > count) b = count;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* Float16 with channels a multiple of 8: a thread per output pixel and 8 channels (one
 * 16-byte load per tap), a block row per output row (blockIdx.y) and images along
 * blockIdx.z, so that a thread divides once, in 32 bits. A thread per output element with
 * 64-bit index arithmetic (k_pool_nhwc) spent more time dividing than moving memory. The
 * host checks that one image's elements and every extent fit in 32 bits (pool_fits_32);
 * larger tensors take k_pool_nhwc. */
__global__ void k_pool_nhwc_h8_rows(kcu_pool p, int C8, const uint4 *__restrict__ x, uint4 *y) {
    kcu_pdl_wait(); /* launched as a programmatic dependent (kcu_pdl.cuh); the next starts as blocks exit */
    const int oh = blockIdx.y, OW = (int)p.ow, W = (int)p.w, dh = (int)p.dh, dw = (int)p.dw;
    const int XP = (int)(p.xp / 8), YP = (int)(p.yp / 8); /* pixel pitches in 16-byte units */
    const int per_row = OW * C8, in_img = (int)p.h * W * XP, out_img = (int)p.oh * OW * YP;
    const int r0 = oh * (int)p.sh - (int)p.pt;
    int i0, i1;
    tap_range32(r0, dh, (int)p.h, (int)p.kh, &i0, &i1);
    for (int64_t n = blockIdx.z; n < p.planes; n += gridDim.z) {
        const uint4 *xi = x + n * in_img;
        uint4 *yo = y + n * out_img + oh * OW * YP;
        for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < per_row; q += gridDim.x * blockDim.x) {
            int ow = q / C8, c = q - ow * C8;
            int c0 = ow * (int)p.sw - (int)p.pl, j0, j1;
            tap_range32(c0, dw, W, (int)p.kw, &j0, &j1);
            const uint4 *xs = xi + c;
            float r[8], v[8];
            for (int k = 0; k < 8; k++) r[k] = p.max ? -INFINITY : 0.0f;
            for (int i = i0; i < i1; i++)
                for (int j = j0; j < j1; j++) {
                    h8_load(xs + ((r0 + i * dh) * W + c0 + j * dw) * XP, v);
                    if (p.max) {
                        for (int k = 0; k < 8; k++)
                            if (v[k] > r[k] || v[k] != v[k]) r[k] = v[k];
                    } else {
                        for (int k = 0; k < 8; k++) r[k] += v[k];
                    }
                }
            if (!p.max) {
                float hd, wd;
                if (p.include_pad) {
                    int a, b;
                    tap_range32(oh * (int)p.sh, dh, (int)(p.h + p.pt + p.pb), (int)p.kh, &a, &b);
                    hd = (float)(b - a);
                    tap_range32(ow * (int)p.sw, dw, (int)(p.w + p.pl + p.pr), (int)p.kw, &a, &b);
                    wd = (float)(b - a);
                } else {
                    hd = (float)(i1 - i0);
                    wd = (float)(j1 - j0);
                }
                float div = hd * wd;
                for (int k = 0; k < 8; k++) r[k] = div > 0 ? r[k] / div : 0.0f;
            }
            uint4 out;
            __half2 *h = reinterpret_cast<__half2 *>(&out);
            for (int k = 0; k < 4; k++) h[k] = __floats2half2_rn(r[2 * k], r[2 * k + 1]);
            yo[ow * YP + c] = out;
        }
    }
}

/* Max pools of 2x2 and 3x3 windows, undilated (UNet's 2x2/2, ResNet's 3x3/2), float16 with
 * channels in 8s: as the rows kernel, with the taps unrolled so that a thread issues all its
 * 16-byte loads before the first maximum (__hmax2_nan: in float16, NaN kept as the CPU
 * backend keeps it). The rows kernel's run-time tap loop left ResNet-50's pool at batch 256
 * (411 MB in, 103 MB out) at 0.26 ms on an H200, half the memory's speed. */
template <int KH, int KW>
__global__ void k_maxpool_h8(kcu_pool p, int C8, const uint4 *__restrict__ x, uint4 *y) {
    kcu_pdl_wait(); /* launched as a programmatic dependent (kcu_pdl.cuh); the next starts as blocks exit */
    const int oh = blockIdx.y, OW = (int)p.ow, W = (int)p.w, H = (int)p.h;
    const int XP = (int)(p.xp / 8), YP = (int)(p.yp / 8);
    const int per_row = OW * C8, in_img = H * W * XP, out_img = (int)p.oh * OW * YP;
    const int r0 = oh * (int)p.sh - (int)p.pt;
    const __half2 lo = __float2half2_rn(-INFINITY);
    uint4 ninf;
    ninf.x = ninf.y = ninf.z = ninf.w = *reinterpret_cast<const unsigned *>(&lo);
    for (int64_t n = blockIdx.z; n < p.planes; n += gridDim.z) {
        const uint4 *xi = x + n * in_img;
        uint4 *yo = y + n * out_img + oh * OW * YP;
        for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < per_row; q += gridDim.x * blockDim.x) {
            int ow = q / C8, c = q - ow * C8, c0 = ow * (int)p.sw - (int)p.pl;
            uint4 v[KH][KW];
            #pragma unroll
            for (int i = 0; i < KH; i++)
                #pragma unroll
                for (int j = 0; j < KW; j++) {
                    int iy = r0 + i, ix = c0 + j;
                    v[i][j] = iy >= 0 && iy < H && ix >= 0 && ix < W ? xi[(iy * W + ix) * XP + c] : ninf;
                }
            __half2 r[4] = {lo, lo, lo, lo};
            #pragma unroll
            for (int i = 0; i < KH; i++)
                #pragma unroll
                for (int j = 0; j < KW; j++) {
                    const __half2 *h = reinterpret_cast<const __half2 *>(&v[i][j]);
                    #pragma unroll
                    for (int k = 0; k < 4; k++) r[k] = __hmax2_nan(r[k], h[k]);
                }
            yo[ow * YP + c] = *reinterpret_cast<const uint4 *>(r);
        }
    }
}

/* Every quantity the rows kernel computes in 32 bits, with room for the padded extents. */
static bool pool_fits_32(const kcu_pool *p, int64_t c8) {
    const int64_t lim = INT32_MAX / 4, xp8 = p->xp / 8 > c8 ? p->xp / 8 : c8, yp8 = p->yp / 8 > c8 ? p->yp / 8 : c8;
    return p->h * p->w * xp8 < lim && p->oh * p->ow * yp8 < lim && p->h + p->pt + p->pb < lim &&
           p->w + p->pl + p->pr < lim && p->kh * p->dh < lim && p->kw * p->dw < lim && p->oh * p->sh < lim &&
           p->ow * p->sw < lim && p->oh <= 65535;
}

extern "C" cudaError_t kcu_pool_nhwc(cudaStream_t s, int st, const kcu_pool *shape, int64_t c, const void *x,
                                     void *y) {
    kcu_pool q = *shape;
    const kcu_pool *p = &q;
    if (!q.xp) q.xp = c;
    if (!q.yp) q.yp = c;
    if (q.xp < c || q.yp < c) return cudaErrorInvalidValue;
    int64_t total = p->planes * p->oh * p->ow * c;
    if (total <= 0) return cudaSuccess;
    if (st == KILN_FLOAT16 && c % 8 == 0 && q.xp % 8 == 0 && q.yp % 8 == 0 && ((uintptr_t)x | (uintptr_t)y) % 16 == 0 &&
        pool_fits_32(p, c / 8)) {
        /* blocks of whole warps that split a row evenly: 448 threads per row run as 2 x 224 */
        int64_t per_row = p->ow * (c / 8), bx = (per_row + KCU_THREADS - 1) / KCU_THREADS;
        int64_t threads = ((per_row + bx - 1) / bx + 31) / 32 * 32;
        dim3 grid((unsigned)bx, (unsigned)p->oh, (unsigned)(p->planes < 65535 ? p->planes : 65535));
        bool small = p->max && p->dh == 1 && p->dw == 1 && p->kh == p->kw && (p->kh == 2 || p->kh == 3);
        dim3 block((unsigned)threads);
        const uint4 *x8 = (const uint4 *)x;
        uint4 *y8 = (uint4 *)y;
        if (small && p->kh == 2) return kcu_pdl_launch(k_maxpool_h8<2, 2>, grid, block, 0, s, *p, (int)(c / 8), x8, y8);
        if (small) return kcu_pdl_launch(k_maxpool_h8<3, 3>, grid, block, 0, s, *p, (int)(c / 8), x8, y8);
        return kcu_pdl_launch(k_pool_nhwc_h8_rows, grid, block, 0, s, *p, (int)(c / 8), x8, y8);
    }
    KCU_BY_STORAGE(st, (k_pool_nhwc<T><<<kcu_blocks(total), KCU_THREADS, 0, s>>>(*p, c, (const T *)x, (T *)y)));
    return kcu_launched();
}

/* Channels-last global pooling: a block per (32 channels, image), its 32 x GP_ROWS threads
 * summing rows of the image (a warp reads 32 neighbouring channels of one pixel), then one
 * sum over the rows in shared memory. A thread per (image, channel), looping over all its
 * pixels, left a 2048-channel image (DeepLabV3+'s ASPP pool, 32 x 32 pixels) with 2,048
 * threads: 112 us for 4 MB. */
#define GP_ROWS 32
template <typename T>
__global__ void __launch_bounds__(32 * GP_ROWS) k_global_pool_nhwc(int max, int64_t n, int64_t hw, int64_t C,
                                                                   const T *__restrict__ x, T *y) {
    __shared__ float part[GP_ROWS][33];
    const int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    for (int64_t b = blockIdx.y; b < n; b += gridDim.y) {
        float acc = max ? -INFINITY : 0.0f;
        if (c < C)
            for (int64_t i = threadIdx.y; i < hw; i += GP_ROWS) {
                float v = kcu_ld(x, (b * hw + i) * C + c);
                acc = max ? nan_max(acc, v) : acc + v;
            }
        part[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && c < C) {
            float r = part[0][threadIdx.x];
            for (int k = 1; k < GP_ROWS; k++) r = max ? nan_max(r, part[k][threadIdx.x]) : r + part[k][threadIdx.x];
            kcu_st(y, b * C + c, max ? r : r / (float)hw);
        }
        __syncthreads();
    }
}

/* Float16 with channels in 8s: a thread sums 8 channels with 16-byte loads, a warp 256
 * neighbouring channels (512 bytes) of one pixel, GP8_ROWS warps the pixels of an image.
 * The kernel above gave ResNet-50's last pool at batch 256 (7 x 7 pixels, 2048 channels,
 * 51 MB) 0.14 ms on an H200, a tenth of the memory's speed: a 2-byte load a thread. */
#define GP8_ROWS 8
__global__ void __launch_bounds__(32 * GP8_ROWS) k_global_pool_nhwc_h8(int max, int64_t n, int64_t hw, int64_t C,
                                                                       const uint4 *__restrict__ x, uint4 *y) {
    kcu_pdl_wait(); /* launched as a programmatic dependent (kcu_pdl.cuh); the next starts as blocks exit */
    __shared__ float part[GP8_ROWS][32 * 8 + 4];
    const int64_t c8 = (int64_t)blockIdx.x * 32 + threadIdx.x, C8 = C / 8; /* this thread's 8 channels */
    for (int64_t b = blockIdx.y; b < n; b += gridDim.y) {
        float acc[8];
        #pragma unroll
        for (int e = 0; e < 8; e++) acc[e] = max ? -INFINITY : 0.0f;
        if (c8 < C8)
            for (int64_t i = threadIdx.y; i < hw; i += GP8_ROWS) {
                uint4 v = x[(b * hw + i) * C8 + c8];
                const __half2 *h = reinterpret_cast<const __half2 *>(&v);
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    float2 f = __half22float2(h[e]);
                    acc[2 * e] = max ? nan_max(acc[2 * e], f.x) : acc[2 * e] + f.x;
                    acc[2 * e + 1] = max ? nan_max(acc[2 * e + 1], f.y) : acc[2 * e + 1] + f.y;
                }
            }
        #pragma unroll
        for (int e = 0; e < 8; e++) part[threadIdx.y][threadIdx.x * 8 + e] = acc[e];
        __syncthreads();
        /* each of the block's threads finishes one of its 256 channels */
        int t = threadIdx.y * 32 + threadIdx.x;
        int64_t ch = (int64_t)blockIdx.x * 256 + t;
        if (ch < C) {
            float r = part[0][t];
            for (int k = 1; k < GP8_ROWS; k++) r = max ? nan_max(r, part[k][t]) : r + part[k][t];
            reinterpret_cast<__half *>(y)[b * C + ch] = __float2half_rn(max ? r : r / (float)hw);
        }
        __syncthreads();
    }
}

extern "C" cudaError_t kcu_global_pool_nhwc(cudaStream_t s, int st, int max, int64_t n, int64_t hw, int64_t c,
                                            const void *x, void *y) {
    if (n * c <= 0 || hw <= 0) return cudaSuccess;
    if (st == KILN_FLOAT16 && c % 8 == 0 && ((uintptr_t)x | (uintptr_t)y) % 16 == 0) {
        dim3 grid((unsigned)((c / 8 + 31) / 32), (unsigned)(n < 65535 ? n : 65535)), block(32, GP8_ROWS);
        if (grid.x == 0 || (int64_t)grid.x != (c / 8 + 31) / 32) return cudaErrorInvalidValue;
        return kcu_pdl_launch(k_global_pool_nhwc_h8, grid, block, 0, s, max, n, hw, c, (const uint4 *)x, (uint4 *)y);
    }
    dim3 grid((unsigned)((c + 31) / 32), (unsigned)(n < 65535 ? n : 65535)), block(32, GP_ROWS);
    if (grid.x == 0 || (int64_t)grid.x != (c + 31) / 32) return cudaErrorInvalidValue;
    KCU_BY_STORAGE(st, (k_global_pool_nhwc<T><<<grid, block, 0, s>>>(max, n, hw, c, (const T *)x, (T *)y)));
    return kcu_launched();
}

/* ---- resize ---- */

/* Output element i's offset (a pitched y: runs of yc elements, yp apart). */
__device__ inline int64_t rs_at(const kcu_resize &p, int64_t i) { return p.yp ? (i / p.yc) * p.yp + i % p.yc : i; }

template <typename E>
__global__ void k_resize_nearest(kcu_resize p, const E *__restrict__ x, E *y) {
    KCU_LOOP(i, p.total) {
        int64_t r = i, off = 0;
        for (int k = p.rank - 1; k >= 0; k--) {
            int64_t c = r % p.out[k];
            r /= p.out[k];
            off += p.idx[p.off[k] + c];
        }
        y[rs_at(p, i)] = x[off];
    }
}

/* Nearest with the last axis in memory unchanged (channels-last upsampling): 16-byte runs
 * of it, copied whole; the other axes' offsets come from the same tables. */
__global__ void k_resize_nearest_v(kcu_resize p, int64_t runs, int64_t ypr, const uint4 *__restrict__ x, uint4 *y) {
    const int64_t per = p.inner / runs; /* elements a run */
    KCU_LOOP(i, p.total / per) {
        int64_t c = i % runs, r = i / runs, off = 0;
        for (int k = p.rank - 2; k >= 0; k--) {
            int64_t q = r % p.out[k];
            r /= p.out[k];
            off += p.idx[p.off[k] + q];
        }
        y[ypr ? (i / runs) * ypr + c : i] = x[off / per + c];
    }
}

/* n-linear: the weighted sum over the 2^m corners of the m interpolating axes. */
template <typename T>
__global__ void k_resize_linear(kcu_resize p, const T *__restrict__ x, T *y) {
    KCU_LOOP(i, p.total) {
        int64_t r = i, base = 0;
        int m = 0;
        int64_t lo[KCU_RS_RANK], hi[KCU_RS_RANK];
        float w[KCU_RS_RANK];
        for (int k = p.rank - 1; k >= 0; k--) {
            int64_t c = r % p.out[k];
            r /= p.out[k];
            int64_t a = p.idx[p.off[k] + c];
            if (!p.interp[k]) {
                base += a;
                continue;
            }
            lo[m] = a;
            hi[m] = p.idx[p.off[k] + p.out[k] + c];
            w[m] = p.wt[p.woff[k] + c];
            m++;
        }
        float acc = 0.0f;
        for (int q = 0; q < (1 << m); q++) {
            float cw = 1.0f;
            int64_t off = base;
            for (int k = 0; k < m; k++) {
                if (q & (1 << k)) {
                    cw *= w[k];
                    off += hi[k];
                } else {
                    cw *= 1.0f - w[k];
                    off += lo[k];
                }
            }
            acc += cw * kcu_ld(x, off);
        }
        kcu_st(y, rs_at(p, i), acc);
    }
}

/* Bilinear over H and W of a channels-last [n, h, w, c] tensor, n and c copied (p.hw2): per
 * output pixel two rows and two columns from the tables, four loads per channel, 32-bit
 * index math (the host checks the sizes). V 8: eight float16 channels a thread (16-byte
 * loads and stores); V 1: one element a thread. The generic kernel's per-element loop over
 * every axis and corner spent ~170 us on DeepLabV3+'s three upsamplings at batch 1. */
/* Two rows (a b, c d) mixed; a weight of 0 takes one side alone (no 0 * Inf). */
__device__ inline float bl_mix(float wy, float wx, float a, float b, float c, float d) {
    float top = wx == 0.0f ? a : (1.0f - wx) * a + wx * b;
    if (wy == 0.0f) return top;
    float bot = wx == 0.0f ? c : (1.0f - wx) * c + wx * d;
    return (1.0f - wy) * top + wy * bot;
}

template <typename T, int V>
__global__ void k_resize_bilinear_nhwc(kcu_resize p, uint32_t n_items, const T *__restrict__ x, T *y) {
    uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_items) return;
    const uint32_t C = (uint32_t)p.out[3], CV = C / V, OW = (uint32_t)p.out[2], OH = (uint32_t)p.out[1];
    uint32_t cv = i % CV, px = i / CV, ox = px % OW, t = px / OW, oy = t % OH, n = t / OH;
    int64_t base = p.idx[p.off[0] + n] + p.idx[p.off[3] + cv * V];
    int64_t r0 = base + p.idx[p.off[1] + oy], r1 = base + p.idx[p.off[1] + OH + oy];
    int64_t c0 = p.idx[p.off[2] + ox], c1 = p.idx[p.off[2] + OW + ox];
    float wy = p.wt[p.woff[1] + oy], wx = p.wt[p.woff[2] + ox];
    int64_t yp = p.yp ? p.yp : C, at = (int64_t)px * yp + cv * V;
    if constexpr (V == 8 && sizeof(T) == 2) {
        float a[8], b[8], c[8], d[8];
        kcu_ld8(x + r0 + c0, a);
        kcu_ld8(x + r0 + c1, b);
        kcu_ld8(x + r1 + c0, c);
        kcu_ld8(x + r1 + c1, d);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] = bl_mix(wy, wx, a[k], b[k], c[k], d[k]);
        kcu_st8(y + at, a);
    } else {
        float v = bl_mix(wy, wx, kcu_ld(x, r0 + c0), kcu_ld(x, r0 + c1), kcu_ld(x, r1 + c0), kcu_ld(x, r1 + c1));
        kcu_st(y, at, v);
    }
}

template <typename T>
static void launch_bilinear_nhwc(cudaStream_t s, const kcu_resize *p, const T *x, T *y, bool vec) {
    uint32_t items = (uint32_t)(vec ? p->total / 8 : p->total);
    unsigned g = (items + KCU_THREADS - 1) / KCU_THREADS;
    if (vec) k_resize_bilinear_nhwc<T, 8><<<g, KCU_THREADS, 0, s>>>(*p, items, x, y);
    else k_resize_bilinear_nhwc<T, 1><<<g, KCU_THREADS, 0, s>>>(*p, items, x, y);
}

extern "C" cudaError_t kcu_resize_run(cudaStream_t s, const kcu_resize *p, int es, const void *x, void *y) {
    if (p->total <= 0) return cudaSuccess;
    unsigned g = kcu_blocks(p->total);
    if (p->linear && p->hw2) {
        bool vec = es == 2 && p->out[3] % 8 == 0 && p->hw2 == 2 && ((uintptr_t)x | (uintptr_t)y) % 16 == 0;
        if (es == 4) launch_bilinear_nhwc<float>(s, p, (const float *)x, (float *)y, false);
        else if (es == 2) launch_bilinear_nhwc<__half>(s, p, (const __half *)x, (__half *)y, vec);
        else return cudaErrorInvalidValue;
    } else if (p->linear) {
        if (es == 4) k_resize_linear<float><<<g, KCU_THREADS, 0, s>>>(*p, (const float *)x, (float *)y);
        else if (es == 2) k_resize_linear<__half><<<g, KCU_THREADS, 0, s>>>(*p, (const __half *)x, (__half *)y);
        else return cudaErrorInvalidValue;
    } else if (p->inner > 0 && (p->inner * es) % 16 == 0 && (p->yp * es) % 16 == 0 &&
               ((uintptr_t)x | (uintptr_t)y) % 16 == 0) {
        int64_t runs = p->inner * es / 16;
        k_resize_nearest_v<<<kcu_blocks(p->total / (p->inner / runs)), KCU_THREADS, 0, s>>>(
            *p, runs, p->yp * es / 16, (const uint4 *)x, (uint4 *)y);
    } else {
        KCU_BY_SIZE(es, (k_resize_nearest<E><<<g, KCU_THREADS, 0, s>>>(*p, (const E *)x, (E *)y)));
    }
    return kcu_launched();
}
