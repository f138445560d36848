/* kiln CUDA backend: reductions, arg max/min, softmax, instance norm and LRN. Float sums
 * accumulate in double (as src/cpu/reduce.c and norm.c do), integers wrap in 64 bits. */
#include "cuda/kcu_device.cuh"

/* Accumulation kinds: what is folded in per element. LOG_SUM_EXP runs MAX then EXP. */
enum { K_SUM, K_ABS, K_SQ, K_PROD, K_MAX, K_MIN, K_EXP };

__device__ inline int first_kind(int op) {
    switch (op) {
    case KILN_REDUCE_L1: return K_ABS;
    case KILN_REDUCE_L2:
    case KILN_REDUCE_SUM_SQUARE: return K_SQ;
    case KILN_REDUCE_PROD: return K_PROD;
    case KILN_REDUCE_MAX:
    case KILN_REDUCE_LOG_SUM_EXP: return K_MAX;
    case KILN_REDUCE_MIN: return K_MIN;
    default: return K_SUM;
    }
}

/* Float inputs: double accumulators. NaN, once seen by MAX/MIN, stays. */
struct acc_f {
    typedef double A;
    __device__ static A identity(int kind) {
        return kind == K_PROD ? 1.0 : kind == K_MAX ? -INFINITY : kind == K_MIN ? INFINITY : 0.0;
    }
    __device__ static A fold(int kind, A a, double v, double m) {
        switch (kind) {
        case K_SUM: return a + v;
        case K_ABS: return a + fabs(v);
        case K_SQ: return a + v * v;
        case K_PROD: return a * v;
        case K_MAX: return (v > a || v != v) ? v : a;
        case K_MIN: return (v < a || v != v) ? v : a;
        default: return a + exp(v - m); /* K_EXP */
        }
    }
    __device__ static A combine(int kind, A a, A b) {
        switch (kind) {
        case K_PROD: return a * b;
        case K_MAX: return (a != a) ? a : (b != b) ? b : (b > a ? b : a);
        case K_MIN: return (a != a) ? a : (b != b) ? b : (b < a ? b : a);
        default: return a + b;
        }
    }
};

/* Integer inputs: SUM, PROD, MAX, MIN wrapping through unsigned 64-bit arithmetic. */
template <typename T>
struct acc_i {
    typedef long long A;
    __device__ static A identity(int kind) {
        long long lo = sizeof(T) == 4 ? INT32_MIN : INT64_MIN, hi = sizeof(T) == 4 ? INT32_MAX : INT64_MAX;
        return kind == K_PROD ? 1 : kind == K_MAX ? lo : kind == K_MIN ? hi : 0;
    }
    __device__ static A fold(int kind, A a, long long v, double m) {
        (void)m;
        switch (kind) {
        case K_PROD: return (A)((unsigned long long)a * (unsigned long long)v);
        case K_MAX: return v > a ? v : a;
        case K_MIN: return v < a ? v : a;
        default: return (A)((unsigned long long)a + (unsigned long long)v);
        }
    }
    __device__ static A combine(int kind, A a, A b) { return fold(kind, a, b, 0); }
};

template <typename T> struct acc_for { typedef acc_i<T> R; };
template <> struct acc_for<float> { typedef acc_f R; };

__device__ inline int64_t kept_base(const kcu_reduce &p, int64_t o) {
    int64_t off = 0;
    for (int g = p.nk - 1; g >= 0; g--) {
        off += (o % p.klen[g]) * p.kst[g];
        o /= p.klen[g];
    }
    return off;
}

/* One thread folds every reduced element of output o (innermost reduced group unrolled). */
template <typename T>
__device__ typename acc_for<T>::R::A fold_all(const kcu_reduce &p, int kind, const T *x, int64_t base, double m) {
    typedef typename acc_for<T>::R R;
    typename R::A a = R::identity(kind);
    int last = p.nr - 1;
    int64_t outer = p.count / (p.rlen[last] ? p.rlen[last] : 1);
    if (p.rlen[last] == 0) return a;
    for (int64_t q = 0; q < outer; q++) {
        int64_t off = base, r = q;
        for (int g = last - 1; g >= 0; g--) {
            off += (r % p.rlen[g]) * p.rst[g];
            r /= p.rlen[g];
        }
        for (int64_t j = 0; j < p.rlen[last]; j++) a = R::fold(kind, a, x[off + j * p.rst[last]], m);
    }
    return a;
}

template <typename T, typename A>
__device__ inline void store_out(const kcu_reduce &p, T *y, int64_t o, A acc, double m);

template <>
__device__ inline void store_out<float, double>(const kcu_reduce &p, float *y, int64_t o, double a, double m) {
    switch (p.op) {
    case KILN_REDUCE_MEAN: a /= (double)p.count; break;
    case KILN_REDUCE_L2: a = sqrt(a); break;
    case KILN_REDUCE_LOG_SUM: a = log(a); break;
    case KILN_REDUCE_LOG_SUM_EXP: a = isfinite(m) ? m + log(a) : m; break;
    default: break;
    }
    y[o] = (float)a;
}
template <>
__device__ inline void store_out<int32_t, long long>(const kcu_reduce &p, int32_t *y, int64_t o, long long a, double m) {
    y[o] = (int32_t)a;
}
template <>
__device__ inline void store_out<int64_t, long long>(const kcu_reduce &p, int64_t *y, int64_t o, long long a, double m) {
    y[o] = a;
}

template <typename T>
__global__ void k_reduce_thread(kcu_reduce p, const T *__restrict__ x, T *y) {
    typedef typename acc_for<T>::R R;
    KCU_LOOP(o, p.outputs) {
        int64_t base = kept_base(p, o);
        double m = 0;
        if (p.op == KILN_REDUCE_LOG_SUM_EXP) {
            m = (double)fold_all<T>(p, K_MAX, x, base, 0);
            store_out<T, typename R::A>(p, y, o, fold_all<T>(p, K_EXP, x, base, m), m);
        } else {
            store_out<T, typename R::A>(p, y, o, fold_all<T>(p, first_kind(p.op), x, base, 0), 0);
        }
    }
}

#define RED_THREADS 256

/* A block folds one output: threads split the reduced positions. */
template <typename T>
__device__ typename acc_for<T>::R::A block_fold(const kcu_reduce &p, int kind, const T *x, int64_t base, double m,
                                               typename acc_for<T>::R::A *sh) {
    typedef typename acc_for<T>::R R;
    typename R::A a = R::identity(kind);
    int last = p.nr - 1;
    int64_t rin = p.rlen[last], outer = rin ? p.count / rin : 0;
    for (int64_t q = 0; q < outer; q++) {
        int64_t off = base, r = q;
        for (int g = last - 1; g >= 0; g--) {
            off += (r % p.rlen[g]) * p.rst[g];
            r /= p.rlen[g];
        }
        for (int64_t j = threadIdx.x; j < rin; j += blockDim.x) a = R::fold(kind, a, x[off + j * p.rst[last]], m);
    }
    sh[threadIdx.x] = a;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] = R::combine(kind, sh[threadIdx.x], sh[threadIdx.x + w]);
        __syncthreads();
    }
    typename R::A r = sh[0];
    __syncthreads();
    return r;
}

template <typename T>
__global__ void k_reduce_block(kcu_reduce p, const T *__restrict__ x, T *y) {
    typedef typename acc_for<T>::R R;
    __shared__ typename R::A sh[RED_THREADS];
    for (int64_t o = blockIdx.x; o < p.outputs; o += gridDim.x) {
        int64_t base = kept_base(p, o);
        double m = 0;
        typename R::A a;
        if (p.op == KILN_REDUCE_LOG_SUM_EXP) {
            m = (double)block_fold<T>(p, K_MAX, x, base, 0, sh);
            a = block_fold<T>(p, K_EXP, x, base, m, sh);
        } else {
            a = block_fold<T>(p, first_kind(p.op), x, base, 0, sh);
        }
        if (threadIdx.x == 0) store_out<T, typename R::A>(p, y, o, a, m);
    }
}

template <typename T>
static void launch_reduce(cudaStream_t s, const kcu_reduce *p, const T *x, T *y) {
    if (p->block_per_output) {
        unsigned g = (unsigned)(p->outputs < KCU_MAX_BLOCKS ? p->outputs : KCU_MAX_BLOCKS);
        k_reduce_block<T><<<g, RED_THREADS, 0, s>>>(*p, x, y);
    } else {
        k_reduce_thread<T><<<kcu_blocks(p->outputs), KCU_THREADS, 0, s>>>(*p, x, y);
    }
}

extern "C" cudaError_t kcu_reduce_run(cudaStream_t s, const kcu_reduce *p, const void *x, void *y) {
    if (p->outputs <= 0) return cudaSuccess;
    switch (p->dtype) {
    case KILN_FLOAT32: launch_reduce<float>(s, p, (const float *)x, (float *)y); break;
    case KILN_INT32: launch_reduce<int32_t>(s, p, (const int32_t *)x, (int32_t *)y); break;
    case KILN_INT64: launch_reduce<int64_t>(s, p, (const int64_t *)x, (int64_t *)y); break;
    default: return cudaErrorInvalidValue;
    }
    return kcu_launched();
}

/* ---- arg max / arg min ---- */

/* Ties go to the first index unless select_last; NaN counts as the extreme (numpy). */
template <typename T>
__device__ inline bool better(T v, T b, int is_min, int last) {
    if (last) return (is_min ? v <= b : v >= b) || v != v;
    return (is_min ? v < b : v > b) || (v != v && b == b);
}

template <typename T>
__global__ void k_arg(int is_min, int last, int64_t outer, int64_t len, int64_t inner, const T *__restrict__ x,
                      int64_t *y) {
    KCU_LOOP(i, outer * inner) {
        int64_t o = i / inner, c = i % inner;
        const T *xs = x + o * len * inner + c;
        T best = xs[0];
        int64_t at = 0;
        for (int64_t k = 1; k < len; k++) {
            T v = xs[k * inner];
            if (better(v, best, is_min, last)) {
                best = v;
                at = k;
            }
        }
        y[i] = at;
    }
}

extern "C" cudaError_t kcu_arg_reduce(cudaStream_t s, int dtype, int is_min, int last, int64_t outer, int64_t len,
                                      int64_t inner, const void *x, int64_t *y) {
    if (outer <= 0 || inner <= 0 || len <= 0) return cudaSuccess;
    unsigned g = kcu_blocks(outer * inner);
    switch (dtype) {
    case KILN_FLOAT32: k_arg<float><<<g, KCU_THREADS, 0, s>>>(is_min, last, outer, len, inner, (const float *)x, y); break;
    case KILN_INT32: k_arg<int32_t><<<g, KCU_THREADS, 0, s>>>(is_min, last, outer, len, inner, (const int32_t *)x, y); break;
    case KILN_INT64: k_arg<int64_t><<<g, KCU_THREADS, 0, s>>>(is_min, last, outer, len, inner, (const int64_t *)x, y); break;
    default: return cudaErrorInvalidValue;
    }
    return kcu_launched();
}

/* ---- block helpers ---- */

__device__ inline double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

__device__ inline float block_max(float v, float *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) {
            float o = sh[threadIdx.x + w];
            sh[threadIdx.x] = o > sh[threadIdx.x] ? o : sh[threadIdx.x];
        }
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

/* ---- softmax ---- */

#define SM_THREADS 256

/* The axis is innermost: a block per row. */
__global__ void k_softmax_rows(int log_, int64_t rows, int64_t len, const float *__restrict__ x, float *y) {
    __shared__ double sd[SM_THREADS];
    __shared__ float sf[SM_THREADS];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * len;
        float *yr = y + r * len;
        float m = -INFINITY;
        for (int64_t i = threadIdx.x; i < len; i += blockDim.x) m = xr[i] > m ? xr[i] : m;
        m = block_max(m, sf);
        /* the CPU takes the first element as its start: a NaN there stays the maximum */
        if (xr[0] != xr[0]) m = xr[0];
        double acc = 0;
        for (int64_t i = threadIdx.x; i < len; i += blockDim.x) acc += expf(xr[i] - m);
        double sum = block_sum(acc, sd);
        if (log_) {
            float ls = (float)log(sum);
            for (int64_t i = threadIdx.x; i < len; i += blockDim.x) yr[i] = (xr[i] - m) - ls;
        } else {
            float inv = (float)(1.0 / sum);
            for (int64_t i = threadIdx.x; i < len; i += blockDim.x) yr[i] = expf(xr[i] - m) * inv;
        }
    }
}

/* The axis has an inner stride: a thread per (outer, inner) column, reads coalesced. */
__global__ void k_softmax_cols(int log_, int64_t outer, int64_t len, int64_t inner, const float *__restrict__ x,
                               float *y) {
    KCU_LOOP(i, outer * inner) {
        int64_t o = i / inner, c = i % inner;
        const float *xs = x + o * len * inner + c;
        float *ys = y + o * len * inner + c;
        float m = xs[0];
        for (int64_t k = 1; k < len; k++) m = xs[k * inner] > m ? xs[k * inner] : m;
        double sum = 0;
        for (int64_t k = 0; k < len; k++) sum += expf(xs[k * inner] - m);
        if (log_) {
            float ls = (float)log(sum);
            for (int64_t k = 0; k < len; k++) ys[k * inner] = (xs[k * inner] - m) - ls;
        } else {
            float inv = (float)(1.0 / sum);
            for (int64_t k = 0; k < len; k++) ys[k * inner] = expf(xs[k * inner] - m) * inv;
        }
    }
}

extern "C" cudaError_t kcu_softmax(cudaStream_t s, int log_, int64_t outer, int64_t len, int64_t inner, const float *x,
                                   float *y) {
    if (outer <= 0 || len <= 0 || inner <= 0) return cudaSuccess;
    if (inner == 1) {
        unsigned g = (unsigned)(outer < KCU_MAX_BLOCKS ? outer : KCU_MAX_BLOCKS);
        k_softmax_rows<<<g, SM_THREADS, 0, s>>>(log_, outer, len, x, y);
    } else {
        k_softmax_cols<<<kcu_blocks(outer * inner), KCU_THREADS, 0, s>>>(log_, outer, len, inner, x, y);
    }
    return kcu_launched();
}

/* ---- instance normalization: a block per (n, c) ---- */

__global__ void k_instance_norm(int64_t rows, int64_t channels, int64_t S, double eps, const float *__restrict__ x,
                                float *y, const float *__restrict__ scale, const float *__restrict__ bias) {
    __shared__ double sd[SM_THREADS];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * S;
        float *yr = y + r * S;
        int64_t c = r % channels;
        double acc = 0;
        for (int64_t i = threadIdx.x; i < S; i += blockDim.x) acc += xr[i];
        double mean = block_sum(acc, sd) / (double)S;
        acc = 0;
        for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
            double d = xr[i] - mean;
            acc += d * d;
        }
        double var = block_sum(acc, sd) / (double)S;
        /* (x - mean) in double: a float shift cancels when the variance is small */
        double a = scale[c] / sqrt(var + eps), b0 = bias[c];
        for (int64_t i = threadIdx.x; i < S; i += blockDim.x) yr[i] = (float)((xr[i] - mean) * a + b0);
    }
}

extern "C" cudaError_t kcu_instance_norm(cudaStream_t s, int64_t rows, int64_t channels, int64_t spatial, float eps,
                                         const float *x, float *y, const float *scale, const float *bias) {
    if (rows <= 0 || spatial <= 0) return cudaSuccess;
    unsigned g = (unsigned)(rows < KCU_MAX_BLOCKS ? rows : KCU_MAX_BLOCKS);
    k_instance_norm<<<g, SM_THREADS, 0, s>>>(rows, channels, spatial, (double)eps, x, y, scale, bias);
    return kcu_launched();
}

/* ---- local response normalization across channels ---- */

/* t^-beta, with the AlexNet/GoogLeNet exponents done by square roots (as the CPU). */
__device__ inline float inv_pow(float t, float beta) {
    if (beta == 0.75f) return 1.0f / sqrtf(t * sqrtf(t));
    if (beta == 0.5f) return 1.0f / sqrtf(t);
    if (beta == 1.0f) return 1.0f / t;
    return powf(t, -beta);
}

__global__ void k_lrn(int64_t n, int64_t C, int64_t S, int64_t size, float alpha, float beta, float bias,
                      const float *__restrict__ x, float *y) {
    int64_t before = (size - 1) / 2, after = size - 1 - before;
    float coef = alpha / (float)size;
    KCU_LOOP(i, n * C * S) {
        int64_t s = i % S, t = i / S, c = t % C, b = t / C;
        int64_t lo = c - before > 0 ? c - before : 0, hi = c + after < C - 1 ? c + after : C - 1;
        const float *xn = x + b * C * S + s;
        float acc = 0;
        for (int64_t k = lo; k <= hi; k++) {
            float v = xn[k * S];
            acc += v * v;
        }
        y[i] = x[i] * inv_pow(bias + coef * acc, beta);
    }
}

extern "C" cudaError_t kcu_lrn(cudaStream_t s, int64_t n, int64_t c, int64_t spatial, int64_t size, float alpha,
                               float beta, float bias, const float *x, float *y) {
    int64_t total = n * c * spatial;
    if (total <= 0) return cudaSuccess;
    k_lrn<<<kcu_blocks(total), KCU_THREADS, 0, s>>>(n, c, spatial, size, alpha, beta, bias, x, y);
    return kcu_launched();
}

/* ---- largest magnitude (the FP16 range check) ----
 * Non-negative floats order like their bit patterns, so an unsigned atomicMax per warp
 * combines the threads' maxima. */

__global__ void k_absmax(const float *__restrict__ x, int64_t n, unsigned *out) {
    unsigned m = 0;
    KCU_LOOP(i, n) {
        float v = fabsf(x[i]);
        if (!(v <= 3.402823466e38f)) v = __int_as_float(0x7f800000); /* NaN, Inf: +Inf */
        unsigned b = __float_as_uint(v);
        m = b > m ? b : m;
    }
    m = __reduce_max_sync(0xffffffffu, m);
    if ((threadIdx.x & 31) == 0) atomicMax(out, m);
}

extern "C" cudaError_t kcu_absmax(cudaStream_t s, const float *x, int64_t n, unsigned *out) {
    cudaError_t e = cudaMemsetAsync(out, 0, sizeof *out, s);
    if (e != cudaSuccess || n <= 0) return e;
    k_absmax<<<kcu_blocks(n), KCU_THREADS, 0, s>>>(x, n, out);
    return kcu_launched();
}
