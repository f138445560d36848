/* kiln CUDA backend: point-wise kernels: activations (also as the bias + activation pass
 * after convolutions), unary math, broadcast binary ops, PRelu, select, scale, cast and
 * the Gemm C fill. Semantics follow src/cpu/activation.c, elementwise.c, norm.c, basic.c. */
#include <type_traits>

#include "cuda/kcu_device.cuh"

/* ---- activation ---- */

__global__ void k_activation(int64_t n, const float *__restrict__ x, float *y, kcu_act a) {
    KCU_LOOP(i, n) y[i] = kcu_act_apply(a.type, a.alpha, a.beta, x[i]);
}

/* float4 path for the same-size case: the common conv/gemm outputs are multiples of 4 */
__global__ void k_activation4(int64_t n4, const float4 *__restrict__ x, float4 *y, kcu_act a) {
    KCU_LOOP(i, n4) {
        float4 v = x[i];
        v.x = kcu_act_apply(a.type, a.alpha, a.beta, v.x);
        v.y = kcu_act_apply(a.type, a.alpha, a.beta, v.y);
        v.z = kcu_act_apply(a.type, a.alpha, a.beta, v.z);
        v.w = kcu_act_apply(a.type, a.alpha, a.beta, v.w);
        y[i] = v;
    }
}

extern "C" cudaError_t kcu_activation(cudaStream_t s, int64_t n, const float *x, float *y, kcu_act act) {
    if (n <= 0) return cudaSuccess;
    if (n % 4 == 0 && ((uintptr_t)x % 16) == 0 && ((uintptr_t)y % 16) == 0)
        k_activation4<<<kcu_blocks(n / 4), KCU_THREADS, 0, s>>>(n / 4, (const float4 *)x, (float4 *)y, act);
    else
        k_activation<<<kcu_blocks(n), KCU_THREADS, 0, s>>>(n, x, y, act);
    return kcu_launched();
}

/* Large planes: a block row per plane, the bias loaded once. */
template <bool ACT>
__global__ void k_bias_act_planes(float *y, const float *__restrict__ bias, int64_t planes, int64_t channels,
                                  int64_t inner, kcu_act a) {
    for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
        float bv = bias ? bias[p % channels] : 0.0f;
        float *yp = y + p * inner;
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < inner; i += (int64_t)gridDim.x * blockDim.x) {
            float v = yp[i] + bv;
            if (ACT) v = kcu_act_apply(a.type, a.alpha, a.beta, v);
            yp[i] = v;
        }
    }
}

/* Small planes: flat, with 32-bit index math (the sizes allow it). */
template <bool ACT>
__global__ void k_bias_act_flat(float *y, const float *__restrict__ bias, uint32_t total, uint32_t channels,
                                uint32_t inner, kcu_act a) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        float v = y[i];
        if (bias) v += bias[(i / inner) % channels];
        if (ACT) v = kcu_act_apply(a.type, a.alpha, a.beta, v);
        y[i] = v;
    }
}

template <bool ACT>
static void launch_bias_act(cudaStream_t s, float *y, const float *bias, int64_t planes, int64_t channels,
                            int64_t inner, kcu_act a) {
    int64_t total = planes * inner;
    if (inner >= 512 || total >= ((int64_t)1 << 31)) {
        int64_t gx = (inner + KCU_THREADS * 4 - 1) / (KCU_THREADS * 4);
        dim3 grid((unsigned)(gx < 64 ? gx : 64), (unsigned)(planes < 65535 ? planes : 65535));
        k_bias_act_planes<ACT><<<grid, KCU_THREADS, 0, s>>>(y, bias, planes, channels, inner, a);
    } else {
        k_bias_act_flat<ACT><<<kcu_blocks(total), KCU_THREADS, 0, s>>>(y, bias, (uint32_t)total, (uint32_t)channels,
                                                                        (uint32_t)inner, a);
    }
}

extern "C" cudaError_t kcu_bias_act(cudaStream_t s, float *y, const float *bias, int64_t outer, int64_t channels,
                                    int64_t inner, const kcu_act *act) {
    int64_t planes = outer * channels;
    if (planes <= 0 || inner <= 0 || (!bias && !act)) return cudaSuccess;
    if (act) launch_bias_act<true>(s, y, bias, planes, channels, inner, *act);
    else launch_bias_act<false>(s, y, bias, planes, channels, inner, kcu_act{0, 0.0f, 0.0f});
    return kcu_launched();
}

/* ---- unary ---- */

__device__ inline float unary_f32(int op, float x) {
    switch (op) {
    case KILN_UNARY_EXP: return expf(x);
    case KILN_UNARY_LOG: return logf(x);
    case KILN_UNARY_SQRT: return sqrtf(x);
    case KILN_UNARY_ABS: return fabsf(x);
    case KILN_UNARY_NEG: return -x;
    case KILN_UNARY_RECIPROCAL: return 1.0f / x;
    case KILN_UNARY_FLOOR: return floorf(x);
    case KILN_UNARY_CEIL: return ceilf(x);
    case KILN_UNARY_ERF: return erff(x);
    case KILN_UNARY_SIN: return sinf(x);
    case KILN_UNARY_COS: return cosf(x);
    case KILN_UNARY_ROUND: return rintf(x); /* half to even */
    case KILN_UNARY_SIGN: return x > 0 ? 1.0f : x < 0 ? -1.0f : x; /* keeps 0, -0 and NaN */
    default: return x;
    }
}

__global__ void k_unary_f32(int op, int64_t n, const float *__restrict__ x, float *y) {
    KCU_LOOP(i, n) y[i] = unary_f32(op, x[i]);
}

/* Integer ABS/NEG wrap at the minimum value, as two's complement hardware does. */
template <typename T, typename U>
__global__ void k_unary_int(int op, int64_t n, const T *__restrict__ x, T *y) {
    KCU_LOOP(i, n) {
        T v = x[i];
        T r;
        switch (op) {
        case KILN_UNARY_ABS: r = v < 0 ? (T)(U(0) - (U)v) : v; break;
        case KILN_UNARY_NEG: r = (T)(U(0) - (U)v); break;
        default: r = (T)((v > 0) - (v < 0)); break; /* SIGN */
        }
        y[i] = r;
    }
}

__global__ void k_not(int64_t n, const uint8_t *__restrict__ x, uint8_t *y) {
    KCU_LOOP(i, n) y[i] = (uint8_t)(x[i] == 0);
}

extern "C" cudaError_t kcu_unary(cudaStream_t s, int dtype, int op, int64_t n, const void *x, void *y) {
    if (n <= 0) return cudaSuccess;
    unsigned g = kcu_blocks(n);
    switch (dtype) {
    case KILN_FLOAT32: k_unary_f32<<<g, KCU_THREADS, 0, s>>>(op, n, (const float *)x, (float *)y); break;
    case KILN_INT32: k_unary_int<int32_t, uint32_t><<<g, KCU_THREADS, 0, s>>>(op, n, (const int32_t *)x, (int32_t *)y); break;
    case KILN_INT64: k_unary_int<int64_t, uint64_t><<<g, KCU_THREADS, 0, s>>>(op, n, (const int64_t *)x, (int64_t *)y); break;
    case KILN_BOOL: k_not<<<g, KCU_THREADS, 0, s>>>(n, (const uint8_t *)x, (uint8_t *)y); break;
    default: return cudaErrorInvalidValue;
    }
    return kcu_launched();
}

__global__ void k_unary_h(int op, int64_t n, const __half *__restrict__ x, __half *y) {
    KCU_LOOP(i, n) y[i] = __float2half_rn(unary_f32(op, __half2float(x[i])));
}

extern "C" cudaError_t kcu_unary_f16(cudaStream_t s, int op, int64_t n, const void *x, void *y) {
    if (n <= 0) return cudaSuccess;
    k_unary_h<<<kcu_blocks(n), KCU_THREADS, 0, s>>>(op, n, (const __half *)x, (__half *)y);
    return kcu_launched();
}

/* ---- broadcast walk ---- */

/* Element offsets of output position i in each operand. */
template <int NOPS>
__device__ inline void bc_offsets(const kcu_bcast &p, int64_t i, int64_t *off) {
    for (int k = 0; k < NOPS; k++) off[k] = 0;
    for (int d = p.rank - 1; d >= 0; d--) {
        int64_t dim = p.dims[d], c = i % dim;
        i /= dim;
        for (int k = 0; k < NOPS; k++) off[k] += c * p.st[k][d];
    }
}

/* ---- binary ops ---- */

/* Max/min that propagate NaN from either side, as numpy and ONNX Runtime do. */
#define FMAX(x, y) (((x) > (y) || (x) != (x)) ? (x) : (y))
#define FMIN(x, y) (((x) < (y) || (x) != (x)) ? (x) : (y))

__device__ inline float mod_f32(float x, float y) {
    float r = fmodf(x, y);
    return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
}

template <typename T, typename U>
struct int_ops {
    /* wrap on overflow and never trap, as the CPU kernels */
    __device__ static T div(T x, T y) { return y == 0 ? 0 : y == -1 ? (T)(U(0) - (U)x) : (T)(x / y); }
    __device__ static T fmod(T x, T y) { return y == 0 || y == -1 ? 0 : (T)(x % y); }
    __device__ static T mod(T x, T y) {
        T r = fmod(x, y);
        return r != 0 && ((r < 0) != (y < 0)) ? (T)(r + y) : r;
    }
    __device__ static T pow(T x, T y) {
        if (y < 0) return x == 1 ? 1 : x == -1 ? ((y & 1) ? -1 : 1) : 0;
        U r = 1, b = (U)x;
        for (; y; y >>= 1) {
            if (y & 1) r *= b;
            b *= b;
        }
        return (T)r;
    }
};

/* One op on one dtype. bad: the element hit an integer division by zero. */
template <typename T, int OP> struct bin_op;

#define BIN_F32(OP, EXPR)                                                                                  \
    template <> struct bin_op<float, OP> {                                                                 \
        typedef float O;                                                                                   \
        __device__ static O f(float x, float y, bool &bad) { (void)bad; return (EXPR); }                  \
    };
BIN_F32(KILN_ELT_ADD, x + y)
BIN_F32(KILN_ELT_SUB, x - y)
BIN_F32(KILN_ELT_MUL, x * y)
BIN_F32(KILN_ELT_DIV, x / y)
BIN_F32(KILN_ELT_MAX, FMAX(x, y))
BIN_F32(KILN_ELT_MIN, FMIN(x, y))
BIN_F32(KILN_ELT_POW, y == 2.0f ? x * x : powf(x, y))
BIN_F32(KILN_ELT_MOD, mod_f32(x, y))
BIN_F32(KILN_ELT_FMOD, fmodf(x, y))

#define BIN_INT(T, U)                                                                                      \
    template <> struct bin_op<T, KILN_ELT_ADD> { typedef T O; __device__ static O f(T x, T y, bool &) { return (T)((U)x + (U)y); } }; \
    template <> struct bin_op<T, KILN_ELT_SUB> { typedef T O; __device__ static O f(T x, T y, bool &) { return (T)((U)x - (U)y); } }; \
    template <> struct bin_op<T, KILN_ELT_MUL> { typedef T O; __device__ static O f(T x, T y, bool &) { return (T)((U)x * (U)y); } }; \
    template <> struct bin_op<T, KILN_ELT_DIV> { typedef T O; __device__ static O f(T x, T y, bool &b) { b = y == 0; return int_ops<T, U>::div(x, y); } }; \
    template <> struct bin_op<T, KILN_ELT_MAX> { typedef T O; __device__ static O f(T x, T y, bool &) { return x > y ? x : y; } }; \
    template <> struct bin_op<T, KILN_ELT_MIN> { typedef T O; __device__ static O f(T x, T y, bool &) { return x < y ? x : y; } }; \
    template <> struct bin_op<T, KILN_ELT_POW> { typedef T O; __device__ static O f(T x, T y, bool &b) { b = y < 0 && x == 0; return int_ops<T, U>::pow(x, y); } }; \
    template <> struct bin_op<T, KILN_ELT_MOD> { typedef T O; __device__ static O f(T x, T y, bool &b) { b = y == 0; return int_ops<T, U>::mod(x, y); } }; \
    template <> struct bin_op<T, KILN_ELT_FMOD> { typedef T O; __device__ static O f(T x, T y, bool &b) { b = y == 0; return int_ops<T, U>::fmod(x, y); } };
BIN_INT(int32_t, uint32_t)
BIN_INT(int64_t, uint64_t)

#define BIN_CMP(T)                                                                                         \
    template <> struct bin_op<T, KILN_ELT_EQUAL> { typedef uint8_t O; __device__ static O f(T x, T y, bool &) { return x == y; } }; \
    template <> struct bin_op<T, KILN_ELT_LESS> { typedef uint8_t O; __device__ static O f(T x, T y, bool &) { return x < y; } }; \
    template <> struct bin_op<T, KILN_ELT_GREATER> { typedef uint8_t O; __device__ static O f(T x, T y, bool &) { return x > y; } }; \
    template <> struct bin_op<T, KILN_ELT_LESS_EQUAL> { typedef uint8_t O; __device__ static O f(T x, T y, bool &) { return x <= y; } }; \
    template <> struct bin_op<T, KILN_ELT_GREATER_EQUAL> { typedef uint8_t O; __device__ static O f(T x, T y, bool &) { return x >= y; } };
BIN_CMP(float)
BIN_CMP(int32_t)
BIN_CMP(int64_t)
BIN_CMP(uint8_t)

template <> struct bin_op<uint8_t, KILN_ELT_AND> { typedef uint8_t O; __device__ static O f(uint8_t x, uint8_t y, bool &) { return (x != 0) & (y != 0); } };
template <> struct bin_op<uint8_t, KILN_ELT_OR> { typedef uint8_t O; __device__ static O f(uint8_t x, uint8_t y, bool &) { return (x != 0) | (y != 0); } };
template <> struct bin_op<uint8_t, KILN_ELT_XOR> { typedef uint8_t O; __device__ static O f(uint8_t x, uint8_t y, bool &) { return (x != 0) ^ (y != 0); } };

/* RANK1: every operand is contiguous or a single value (stride 1 or 0). ACT: a fused
 * activation on a float result (a residual add followed by ReLU). */
template <typename T, int OP, bool RANK1, bool ACT>
__global__ void k_binary(kcu_bcast p, typename bin_op<T, OP>::O *y, const T *__restrict__ a, const T *__restrict__ b,
                         kcu_err *err, int node, kcu_act act) {
    bool any_bad = false;
    KCU_LOOP(i, p.total) {
        int64_t off[2];
        if (RANK1) {
            off[0] = i * p.st[0][0];
            off[1] = i * p.st[1][0];
        } else {
            bc_offsets<2>(p, i, off);
        }
        bool bad = false;
        typename bin_op<T, OP>::O r = bin_op<T, OP>::f(a[off[0]], b[off[1]], bad);
        if constexpr (ACT) r = kcu_act_apply(act.type, act.alpha, act.beta, r);
        y[i] = r;
        any_bad |= bad;
    }
    if (any_bad) kcu_fault(err, KCU_FAULT_INT_DIV, node, 0, 0);
}

/* float same-shape add/sub/mul/div, four at a time: residual adds are the hot case. */
template <int OP, bool ACT>
__global__ void k_binary4(int64_t n4, float4 *y, const float4 *__restrict__ a, const float4 *__restrict__ b,
                          kcu_act act) {
    KCU_LOOP(i, n4) {
        float4 u = a[i], v = b[i], r;
        bool bad;
        r.x = bin_op<float, OP>::f(u.x, v.x, bad);
        r.y = bin_op<float, OP>::f(u.y, v.y, bad);
        r.z = bin_op<float, OP>::f(u.z, v.z, bad);
        r.w = bin_op<float, OP>::f(u.w, v.w, bad);
        if constexpr (ACT) {
            r.x = kcu_act_apply(act.type, act.alpha, act.beta, r.x);
            r.y = kcu_act_apply(act.type, act.alpha, act.beta, r.y);
            r.z = kcu_act_apply(act.type, act.alpha, act.beta, r.z);
            r.w = kcu_act_apply(act.type, act.alpha, act.beta, r.w);
        }
        y[i] = r;
    }
}

template <typename T, int OP, bool ACT>
static cudaError_t launch_binary_act(cudaStream_t s, const kcu_bcast *p, void *y, const void *a, const void *b,
                                     kcu_err *err, int node, kcu_act act) {
    typedef typename bin_op<T, OP>::O O;
    unsigned g = kcu_blocks(p->total);
    if (p->rank == 1) {
        if constexpr (std::is_same<T, float>::value &&
                      (OP == KILN_ELT_ADD || OP == KILN_ELT_SUB || OP == KILN_ELT_MUL || OP == KILN_ELT_DIV)) {
            bool vec = p->st[0][0] == 1 && p->st[1][0] == 1 && p->total % 4 == 0 &&
                       ((uintptr_t)y | (uintptr_t)a | (uintptr_t)b) % 16 == 0;
            if (vec) {
                k_binary4<OP, ACT><<<kcu_blocks(p->total / 4), KCU_THREADS, 0, s>>>(
                    p->total / 4, (float4 *)y, (const float4 *)a, (const float4 *)b, act);
                return kcu_launched();
            }
        }
        k_binary<T, OP, true, ACT><<<g, KCU_THREADS, 0, s>>>(*p, (O *)y, (const T *)a, (const T *)b, err, node, act);
    } else {
        k_binary<T, OP, false, ACT><<<g, KCU_THREADS, 0, s>>>(*p, (O *)y, (const T *)a, (const T *)b, err, node, act);
    }
    return kcu_launched();
}

template <typename T, int OP>
static cudaError_t launch_binary(cudaStream_t s, const kcu_bcast *p, void *y, const void *a, const void *b,
                                 kcu_err *err, int node, const kcu_act *act) {
    typedef typename bin_op<T, OP>::O O;
    if (!act) return launch_binary_act<T, OP, false>(s, p, y, a, b, err, node, kcu_act{0, 0.0f, 0.0f});
    if constexpr (std::is_same<T, float>::value && std::is_same<O, float>::value)
        return launch_binary_act<T, OP, true>(s, p, y, a, b, err, node, *act);
    return cudaErrorInvalidValue; /* activations take float32 */
}

#define CASE_OP(T, OP) \
    case OP: return launch_binary<T, OP>(s, p, y, a, b, err, node, act);
#define ARITH_CASES(T)                                                                                     \
    CASE_OP(T, KILN_ELT_ADD) CASE_OP(T, KILN_ELT_SUB) CASE_OP(T, KILN_ELT_MUL) CASE_OP(T, KILN_ELT_DIV)    \
    CASE_OP(T, KILN_ELT_MAX) CASE_OP(T, KILN_ELT_MIN) CASE_OP(T, KILN_ELT_POW) CASE_OP(T, KILN_ELT_MOD)    \
    CASE_OP(T, KILN_ELT_FMOD)
#define CMP_CASES(T)                                                                                       \
    CASE_OP(T, KILN_ELT_EQUAL) CASE_OP(T, KILN_ELT_LESS) CASE_OP(T, KILN_ELT_GREATER)                     \
    CASE_OP(T, KILN_ELT_LESS_EQUAL) CASE_OP(T, KILN_ELT_GREATER_EQUAL)

extern "C" cudaError_t kcu_binary(cudaStream_t s, const kcu_bcast *p, int dtype, int op, void *y, const void *a,
                                  const void *b, kcu_err *err, int node, const kcu_act *act) {
    if (p->total <= 0) return cudaSuccess;
    switch (dtype) {
    case KILN_FLOAT32:
        switch (op) { ARITH_CASES(float) CMP_CASES(float) default: break; }
        break;
    case KILN_INT32:
        switch (op) { ARITH_CASES(int32_t) CMP_CASES(int32_t) default: break; }
        break;
    case KILN_INT64:
        switch (op) { ARITH_CASES(int64_t) CMP_CASES(int64_t) default: break; }
        break;
    case KILN_BOOL:
        switch (op) {
            CMP_CASES(uint8_t)
            CASE_OP(uint8_t, KILN_ELT_AND) CASE_OP(uint8_t, KILN_ELT_OR) CASE_OP(uint8_t, KILN_ELT_XOR)
        default: break;
        }
        break;
    default: break;
    }
    return cudaErrorInvalidValue;
}

/* ---- PRelu, select ---- */

template <bool RANK1>
__global__ void k_prelu(kcu_bcast p, float *y, const float *__restrict__ x, const float *__restrict__ slope) {
    KCU_LOOP(i, p.total) {
        int64_t off[2];
        if (RANK1) {
            off[0] = i * p.st[0][0];
            off[1] = i * p.st[1][0];
        } else {
            bc_offsets<2>(p, i, off);
        }
        float v = x[off[0]];
        y[i] = v >= 0 ? v : v * slope[off[1]];
    }
}

extern "C" cudaError_t kcu_prelu(cudaStream_t s, const kcu_bcast *p, float *y, const float *x, const float *slope) {
    if (p->total <= 0) return cudaSuccess;
    if (p->rank == 1)
        k_prelu<true><<<kcu_blocks(p->total), KCU_THREADS, 0, s>>>(*p, y, x, slope);
    else
        k_prelu<false><<<kcu_blocks(p->total), KCU_THREADS, 0, s>>>(*p, y, x, slope);
    return kcu_launched();
}

template <typename E>
__global__ void k_select(kcu_bcast p, E *y, const uint8_t *__restrict__ c, const E *__restrict__ a,
                         const E *__restrict__ b) {
    KCU_LOOP(i, p.total) {
        int64_t off[3];
        bc_offsets<3>(p, i, off);
        y[i] = c[off[0]] ? a[off[1]] : b[off[2]];
    }
}

extern "C" cudaError_t kcu_select(cudaStream_t s, const kcu_bcast *p, int es, void *y, const uint8_t *cond,
                                  const void *a, const void *b) {
    if (p->total <= 0) return cudaSuccess;
    KCU_BY_SIZE(es, (k_select<E><<<kcu_blocks(p->total), KCU_THREADS, 0, s>>>(*p, (E *)y, cond, (const E *)a,
                                                                            (const E *)b)));
    return kcu_launched();
}

/* ---- scale: y = (x * scale + shift) ^ power ---- */

__device__ inline float pow_fast(float v, float p) {
    if (p == 1.0f) return v;
    if (p == 2.0f) return v * v;
    return powf(v, p);
}

__global__ void k_scale(int mode, int64_t n, int64_t inner, int64_t channels, const float *__restrict__ x, float *y,
                        const float *__restrict__ shift, const float *__restrict__ scale,
                        const float *__restrict__ power) {
    KCU_LOOP(i, n) {
        int64_t w = mode == KILN_SCALE_UNIFORM ? 0 : mode == KILN_SCALE_CHANNEL ? (i / inner) % channels : i % inner;
        float v = x[i];
        if (scale) v *= scale[w];
        if (shift) v += shift[w];
        if (power) v = pow_fast(v, power[w]);
        y[i] = v;
    }
}

extern "C" cudaError_t kcu_scale(cudaStream_t s, int mode, int64_t n, int64_t inner, int64_t channels, const float *x,
                                 float *y, const float *shift, const float *scale, const float *power) {
    if (n <= 0 || inner <= 0) return cudaSuccess;
    k_scale<<<kcu_blocks(n), KCU_THREADS, 0, s>>>(mode, n, inner, channels, x, y, shift, scale, power);
    return kcu_launched();
}

/* ---- cast ---- */

__device__ inline bool is_float_t(int t) {
    return t == KILN_FLOAT32 || t == KILN_FLOAT16 || t == KILN_FLOAT64 || t == KILN_BFLOAT16;
}

__device__ inline double load_f(int t, const void *p, int64_t i) {
    switch (t) {
    case KILN_FLOAT32: return ((const float *)p)[i];
    case KILN_FLOAT16: return kcu_half_to_float(((const uint16_t *)p)[i]);
    case KILN_BFLOAT16: return kcu_bf16_to_float(((const uint16_t *)p)[i]);
    case KILN_FLOAT64: return ((const double *)p)[i];
    default: return 0;
    }
}

__device__ inline int64_t load_i(int t, const void *p, int64_t i) {
    switch (t) {
    case KILN_INT8: return ((const int8_t *)p)[i];
    case KILN_UINT8: return ((const uint8_t *)p)[i];
    case KILN_BOOL: return ((const uint8_t *)p)[i] != 0;
    case KILN_INT32: return ((const int32_t *)p)[i];
    case KILN_INT64: return ((const int64_t *)p)[i];
    default: return 0;
    }
}

/* float -> integer without undefined behaviour: truncate, NaN -> 0, saturate. */
__device__ inline int64_t f2i(double v, double lo, double hi) {
    if (v != v) return 0;
    v = trunc(v);
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v;
}

__global__ void k_cast(int from, int to, int64_t n, const void *__restrict__ src, void *p) {
    KCU_LOOP(i, n) {
        if (to == KILN_BOOL) {
            ((uint8_t *)p)[i] = is_float_t(from) ? load_f(from, src, i) != 0 : load_i(from, src, i) != 0;
            continue;
        }
        if (is_float_t(to)) {
            double v = is_float_t(from) ? load_f(from, src, i) : (double)load_i(from, src, i);
            switch (to) {
            case KILN_FLOAT32: ((float *)p)[i] = (float)v; break;
            case KILN_FLOAT64: ((double *)p)[i] = v; break;
            case KILN_FLOAT16: ((uint16_t *)p)[i] = kcu_float_to_half((float)v); break;
            default: ((uint16_t *)p)[i] = kcu_float_to_bf16((float)v); break;
            }
            continue;
        }
        int64_t v;
        if (is_float_t(from)) {
            double f = load_f(from, src, i);
            switch (to) {
            case KILN_INT8: v = f2i(f, -128, 127); break;
            case KILN_UINT8: v = f2i(f, 0, 255); break;
            case KILN_INT32: v = f2i(f, -2147483648.0, 2147483647.0); break;
            default: v = f2i(f, -9223372036854775808.0, 9223372036854774784.0); break;
            }
        } else {
            v = load_i(from, src, i);
        }
        switch (to) {
        case KILN_INT8: ((int8_t *)p)[i] = (int8_t)(uint8_t)(uint64_t)v; break; /* wraps like numpy */
        case KILN_UINT8: ((uint8_t *)p)[i] = (uint8_t)(uint64_t)v; break;
        case KILN_INT32: ((int32_t *)p)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
        default: ((int64_t *)p)[i] = v; break;
        }
    }
}

extern "C" cudaError_t kcu_cast(cudaStream_t s, int from, int to, int64_t n, const void *x, void *y) {
    if (n <= 0) return cudaSuccess;
    k_cast<<<kcu_blocks(n), KCU_THREADS, 0, s>>>(from, to, n, x, y);
    return kcu_launched();
}

/* ---- Gemm: the output starts as beta * C, broadcast ---- */

__global__ void k_fill_c(float *y, const float *__restrict__ c, int64_t m, int64_t n, int64_t cs_m, int64_t cs_n,
                         float beta) {
    KCU_LOOP(i, m * n) {
        int64_t r = i / n, col = i % n;
        y[i] = beta * c[r * cs_m + col * cs_n];
    }
}

extern "C" cudaError_t kcu_fill_c(cudaStream_t s, float *y, const float *c, int64_t m, int64_t n, int64_t cs_m,
                                  int64_t cs_n, float beta) {
    if (m <= 0 || n <= 0) return cudaSuccess;
    k_fill_c<<<kcu_blocks(m * n), KCU_THREADS, 0, s>>>(y, c, m, n, cs_m, cs_n, beta);
    return kcu_launched();
}
