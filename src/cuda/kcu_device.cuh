/* kiln CUDA backend: device-side helpers shared by the .cu files: launch geometry,
 * activations (the same formulas as the CPU backend), faults and fp16/bf16 bit
 * conversions that round exactly like src/core/half.h. */
#ifndef KILN_CUDA_KCU_DEVICE_CUH
#define KILN_CUDA_KCU_DEVICE_CUH

#include <math.h>
#include <stdint.h>

#include <cuda_fp16.h>

#include "cuda/kcu.h"
#include "kiln/network.h"

#define KCU_THREADS 256
/* Grid-stride loops: enough blocks to fill a Hopper (132 SMs) several times over. */
#define KCU_MAX_BLOCKS 8192

static inline unsigned kcu_blocks(int64_t n, int threads = KCU_THREADS) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > KCU_MAX_BLOCKS) b = KCU_MAX_BLOCKS;
    return (unsigned)b;
}

#define KCU_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static inline cudaError_t kcu_launched(void) { return cudaGetLastError(); }

/* Whether the current device has compute capability 8.0 or newer (cp.async, ldmatrix,
 * mma.sync m16n8k16: kiln's tensor-core kernels). */
static inline bool kcu_device_sm80(void) {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return major >= 8;
}

/* Records a fault; the first one wins. */
__device__ inline void kcu_fault(kcu_err *err, int code, int node, long long a, long long b) {
    if (!err) return;
    if (atomicCAS(&err->code, 0, code) == 0) {
        err->node = node;
        err->a = a;
        err->b = b;
    }
}

__device__ inline float kcu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
/* SiLU with the fast exponential and division, for kernels that round to float16 (their
 * error is far below float16's); large negative x gives 0. */
__device__ inline float kcu_silu_fast(float x) { return __fdividef(x, 1.0f + __expf(-x)); }

/* The activation formulas of src/cpu/activation.c, with the device's libm. */
__device__ inline float kcu_act_apply(int type, float alpha, float beta, float x) {
    switch (type) {
    case KILN_ACT_RELU: return x < 0 ? 0.0f : x;
    case KILN_ACT_LEAKY_RELU: return x >= 0 ? x : alpha * x;
    case KILN_ACT_SIGMOID: return kcu_sigmoid(x);
    case KILN_ACT_TANH: return tanhf(x);
    case KILN_ACT_CLIP: {
        float v = x < alpha ? alpha : x;
        return v > beta ? beta : v;
    }
    case KILN_ACT_SILU: return x * kcu_sigmoid(x);
    case KILN_ACT_HARD_SIGMOID: {
        float v = alpha * x + beta;
        v = v < 0 ? 0.0f : v;
        return v > 1 ? 1.0f : v;
    }
    case KILN_ACT_HARD_SWISH: {
        float v = x * (1.0f / 6.0f) + 0.5f;
        v = v < 0 ? 0.0f : v;
        return x * (v > 1 ? 1.0f : v);
    }
    case KILN_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case KILN_ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case KILN_ACT_ELU: return x >= 0 ? x : alpha * expm1f(x);
    case KILN_ACT_SELU: return beta * (x > 0 ? x : alpha * expm1f(x));
    case KILN_ACT_SOFTPLUS: return (x > 0 ? x : 0.0f) + log1pf(expf(-fabsf(x)));
    case KILN_ACT_SOFTSIGN: return x / (1.0f + fabsf(x));
    case KILN_ACT_THRESHOLDED_RELU: return x > alpha ? x : 0.0f;
    case KILN_ACT_MISH: {
        /* tanh(log(1 + e)) = (e^2 + 2e) / (e^2 + 2e + 2): one exp, no cancellation */
        if (x > 20.0f) return x;
        float e = expf(x);
        float t = e * (e + 2.0f);
        return x * t / (t + 2.0f);
    }
    default: return x;
    }
}

/* Activations a tensor-core epilogue fixes at compile time (igemm.cu, wgmma.cu): the generic
 * one (a switch over every kiln activation, inlined per output) made those kernels' code
 * ten times larger. kcu_epi_kind picks the variant for an activation. */
enum { KCU_EPI_NONE, KCU_EPI_RELU, KCU_EPI_SILU, KCU_EPI_ANY };

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
/* c += a b on the tensor cores, mma.sync m16n8k16 (float16 in, float32 sums; a: 4
 * registers of the 16x16 A fragment, b0, b1 the 16x8 B fragment): the implicit GEMM's and
 * the stem kernel's product. */
__device__ __forceinline__ void kcu_mma16816(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four 8x8 float16 matrices from shared memory (ldmatrix.x4): lanes 8i..8i+7 give the row
 * addresses (16 bytes each, 16-byte aligned) of matrix i, r[i] receives it. */
__device__ __forceinline__ void kcu_ldsm4(unsigned addr, unsigned *r) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
#endif

template <int ACT> __device__ __forceinline__ float kcu_epi_act(const kcu_act &a, float v) {
    if (ACT == KCU_EPI_RELU) return v < 0 ? 0.0f : v;
    if (ACT == KCU_EPI_SILU) return kcu_silu_fast(v);
    if (ACT == KCU_EPI_ANY) return kcu_act_apply(a.type, a.alpha, a.beta, v);
    return v;
}

static inline int kcu_epi_kind(int has_act, const kcu_act &a) {
    return !has_act ? KCU_EPI_NONE
           : a.type == KILN_ACT_RELU ? KCU_EPI_RELU
           : a.type == KILN_ACT_SILU ? KCU_EPI_SILU
                                     : KCU_EPI_ANY;
}

/* The float32 binary formulas of pointwise.cu, chosen at run time (the float16 broadcast
 * kernels, fused regions): op is a float kiln_elementwise_op or KCU_OP_PRELU. */
__device__ inline float kcu_bin_apply(int op, float x, float y) {
    switch (op) {
    case KILN_ELT_ADD: return x + y;
    case KILN_ELT_SUB: return x - y;
    case KILN_ELT_MUL: return x * y;
    case KILN_ELT_DIV: return x / y;
    case KILN_ELT_MAX: return (x > y || x != x) ? x : y;
    case KILN_ELT_MIN: return (x < y || x != x) ? x : y;
    case KILN_ELT_POW: return y == 2.0f ? x * x : powf(x, y);
    case KILN_ELT_MOD: {
        float r = fmodf(x, y);
        return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
    }
    case KILN_ELT_FMOD: return fmodf(x, y);
    case KCU_OP_PRELU: return x >= 0 ? x : x * y;
    default: return x;
    }
}

/* ---- fp16 / bf16 bits, rounding to nearest even exactly as src/core/half.h ---- */

__device__ inline float kcu_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return __uint_as_float(bits);
}

__device__ inline uint16_t kcu_float_to_half(float f) {
    uint32_t x = __float_as_uint(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u) return (uint16_t)(sign | 0x7C00 | (absx > 0x7F800000u ? 0x200 : 0));
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);
    if (absx < 0x38800000u) {
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t mant = (absx & 0x7FFFFF) | 0x800000;
        int shift = 126 - (int)(absx >> 23) + 14;
        uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx >> 13) - ((127 - 15) << 10)), rem = absx & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

__device__ inline float kcu_bf16_to_float(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ inline uint16_t kcu_float_to_bf16(float f) {
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- float32 / float16 storage: kernels compute in float32 whatever the storage ---- */

__device__ inline float kcu_ld(const float *p, int64_t i) { return p[i]; }
__device__ inline float kcu_ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ inline void kcu_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ inline void kcu_st(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

/* Eight halves (16 bytes) at a time: p must be 16-byte aligned. */
__device__ inline void kcu_ld8(const __half *p, float *f) {
    uint4 u = *(const uint4 *)p;
    const __half2 *h = (const __half2 *)&u;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        float2 t = __half22float2(h[k]);
        f[2 * k] = t.x;
        f[2 * k + 1] = t.y;
    }
}

__device__ inline void kcu_st8(__half *p, const float *f) {
    uint4 u;
    __half2 *h = (__half2 *)&u;
#pragma unroll
    for (int k = 0; k < 4; k++) h[k] = __floats2half2_rn(f[2 * k], f[2 * k + 1]);
    *(uint4 *)p = u;
}

/* Dispatches a template launcher on a float storage type (kiln dtype values). */
#define KCU_BY_STORAGE(st, CALL)                                                                           \
    switch (st) {                                                                                          \
    case KILN_FLOAT32: { typedef float T; CALL; } break;                                                   \
    case KILN_FLOAT16: { typedef __half T; CALL; } break;                                                  \
    default: return cudaErrorInvalidValue;                                                                 \
    }

/* Unsigned element types of each size: data movement copies bits. */
template <int ES> struct kcu_bits;
template <> struct kcu_bits<1> { typedef uint8_t T; };
template <> struct kcu_bits<2> { typedef uint16_t T; };
template <> struct kcu_bits<4> { typedef uint32_t T; };
template <> struct kcu_bits<8> { typedef uint64_t T; };

/* Dispatches a template launcher on an element size of 1, 2, 4 or 8 bytes. */
#define KCU_BY_SIZE(es, CALL)                                                                              \
    switch (es) {                                                                                          \
    case 1: { typedef uint8_t E; CALL; } break;                                                            \
    case 2: { typedef uint16_t E; CALL; } break;                                                           \
    case 4: { typedef uint32_t E; CALL; } break;                                                           \
    case 8: { typedef uint64_t E; CALL; } break;                                                           \
    default: return cudaErrorInvalidValue;                                                                 \
    }

#endif
