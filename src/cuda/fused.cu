/* kiln CUDA backend: a fused region (src/graph/fused.h; prepared by src/cuda/fused.c). A
 * thread splits its run's index into the piece's box coordinates and evaluates the piece's
 * program in float32 with loads at the maps' strides. The box's last axis steps along the
 * output's memory, so a warp's stores are close together. */
#include "cuda/kcu_device.cuh"

__device__ __forceinline__ float fz_bin(int op, float a, float b) {
    switch (op) {
    case KILN_ELT_ADD: return a + b;
    case KILN_ELT_SUB: return a - b;
    case KILN_ELT_MUL: return a * b;
    case KILN_ELT_DIV: return a / b;
    case KILN_ELT_MAX: return (a > b || a != a) ? a : b;
    case KILN_ELT_MIN: return (a < b || a != a) ? a : b;
    default: return b == 2.0f ? a * a : powf(a, b);
    }
}

template <typename off> __device__ __forceinline__ float fz_load(const kcu_fz_args &a, int t, off at) {
    if ((a.in_f16 >> t) & 1ull) return __half2float(reinterpret_cast<const __half *>(a.in[t])[at]);
    return reinterpret_cast<const float *>(a.in[t])[at];
}

#define KCU_FZ_PF 4 /* loads an element prefetched by the interpreter */

template <bool BIG> struct fz_off { typedef unsigned T; }; /* wraps mod 2^32: exact below 2^31 */
template <> struct fz_off<true> { typedef long long T; };

/* The box coordinates of run g (the last axis: this thread's first element along it), in
 * registers: NI is known at compile time. A multiply-shift division per axis, in 32 bits
 * unless BIG. */
template <int NI, bool BIG>
__device__ __forceinline__ void fz_coords(const kcu_fz_piece &p, long long g, unsigned span, unsigned lane,
                                          unsigned (&c)[NI]) {
    if (BIG) {
        long long rest = g;
        #pragma unroll
        for (int q = NI - 1; q >= 1; q--) {
            const unsigned div = q == NI - 1 ? p.last_runs : p.ext[q];
            c[q] = (unsigned)(rest % div);
            rest /= div;
        }
        c[0] = (unsigned)rest;
    } else {
        unsigned rest = (unsigned)g;
        #pragma unroll
        for (int q = NI - 1; q >= 1; q--) {
            const unsigned div = q == NI - 1 ? p.last_runs : p.ext[q];
            const unsigned d = (__umulhi(rest, p.mag[q]) + rest) >> p.shf[q];
            c[q] = rest - d * div;
            rest = d;
        }
        c[0] = rest;
    }
    c[NI - 1] = c[NI - 1] * span + lane;
}

template <typename off, int NI>
__device__ __forceinline__ off fz_at(long long base, const long long *st, const unsigned (&c)[NI]) {
    off at = (off)base;
    #pragma unroll
    for (int q = 0; q < NI; q++) at += (off)c[q] * (off)st[q];
    return at;
}

template <typename T> __device__ __forceinline__ float fz_f(T x) { return x; }
template <> __device__ __forceinline__ float fz_f<__half>(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T fz_to(float x) { return x; }
template <> __device__ __forceinline__ __half fz_to<__half>(float x) { return __float2half_rn(x); }

/* A piece that only moves data: every run's loads are issued before any store, so a thread
 * keeps up to KCU_FZ_RPT * KCU_FZ_RUN loads in flight. */
template <int NI, bool BIG, typename TI, typename TO>
__device__ __forceinline__ void fz_move(const kcu_fz_piece &p, const TI *__restrict__ in, TO *__restrict__ out,
                                        long long first, int rstep, unsigned span, unsigned lane, int nel, int lstep) {
    typedef typename fz_off<BIG>::T off;
    const unsigned ext_last = p.ext[NI - 1];
    const off step = (off)p.lc[0][NI - 1] * (off)lstep, ostep = (off)p.oc[NI - 1] * (off)lstep;
    float v[KCU_FZ_RPT][KCU_FZ_RUN];
    off o[KCU_FZ_RPT];
    unsigned i0[KCU_FZ_RPT];
    #pragma unroll
    for (int r = 0; r < KCU_FZ_RPT; r++) {
        const long long g = first + r * rstep;
        i0[r] = ext_last; /* no element */
        o[r] = 0;
        if (g >= p.runs) continue;
        unsigned c[NI];
        fz_coords<NI, BIG>(p, g, span, lane, c);
        i0[r] = c[NI - 1];
        o[r] = fz_at<off, NI>(p.ob, p.oc, c);
        const off at = fz_at<off, NI>(p.lb[0], p.lc[0], c);
        #pragma unroll
        for (int e = 0; e < KCU_FZ_RUN; e++)
            if (e < nel && i0[r] + e * lstep < ext_last) v[r][e] = fz_f(in[at + e * step]);
    }
    #pragma unroll
    for (int r = 0; r < KCU_FZ_RPT; r++)
        #pragma unroll
        for (int e = 0; e < KCU_FZ_RUN; e++)
            if (e < nel && i0[r] + e * lstep < ext_last) out[o[r] + e * ostep] = fz_to<TO>(v[r][e]);
}

/* A block works on one piece, copied to shared memory; a thread takes KCU_FZ_RPT runs along
 * the last box axis (the output's memory), a block apart: KCU_FZ_RUN adjacent elements a
 * thread, so that a warp's runs are adjacent, or, where the axis is 32 or longer, a warp's
 * run with a lane's elements 32 apart, so that each load and store covers whole sectors.
 * The box has NI axes, known at compile time, so coordinates stay in registers and loops
 * over axes unroll without guards. Programs beyond a single load run on an interpreter
 * whose stack is in shared memory, a column per thread. */
template <int NI, bool BIG>
__global__ void __launch_bounds__(KCU_FZ_THREADS, 4) k_fused(const kcu_fz_args a) {
    typedef typename fz_off<BIG>::T off;
    __shared__ float stk[KCU_FZ_STACK][KCU_FZ_THREADS];
    __shared__ kcu_fz_piece sp;
    {
        /* the block's piece: the last whose first block is <= this one */
        const long long b = blockIdx.x;
        int lo = 0, hi = a.np - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >> 1;
            if (a.pieces[mid].bstart <= b) lo = mid;
            else hi = mid - 1;
        }
        const unsigned *src = reinterpret_cast<const unsigned *>(a.pieces + lo);
        unsigned *dst = reinterpret_cast<unsigned *>(&sp);
        for (int i = threadIdx.x; i < (int)(sizeof(kcu_fz_piece) / 4); i += KCU_FZ_THREADS) dst[i] = src[i];
        __syncthreads();
    }
    const kcu_fz_piece &p = sp;
    const bool wm = p.wl > 0; /* warp runs */
    const int nel = wm ? p.wl : KCU_FZ_RUN, lstep = wm ? 32 : 1;
    const unsigned span = wm ? 32u * p.wl : KCU_FZ_RUN, lane = wm ? threadIdx.x % 32 : 0;
    const int rstep = wm ? KCU_FZ_THREADS / 32 : KCU_FZ_THREADS;
    const long long first =
        (blockIdx.x - p.bstart) * (long long)(rstep * KCU_FZ_RPT) + (wm ? threadIdx.x / 32 : threadIdx.x);
    const int n = p.nb_instrs;
    if (n == 1) { /* a load alone: moving data */
        const int t = p.lt[0];
        const bool hin = (a.in_f16 >> t) & 1ull;
        if (hin && a.out_f16)
            fz_move<NI, BIG>(p, (const __half *)a.in[t], (__half *)a.out, first, rstep, span, lane, nel, lstep);
        else if (hin)
            fz_move<NI, BIG>(p, (const __half *)a.in[t], (float *)a.out, first, rstep, span, lane, nel, lstep);
        else if (a.out_f16)
            fz_move<NI, BIG>(p, (const float *)a.in[t], (__half *)a.out, first, rstep, span, lane, nel, lstep);
        else
            fz_move<NI, BIG>(p, (const float *)a.in[t], (float *)a.out, first, rstep, span, lane, nel, lstep);
        return;
    }
    const unsigned ext_last = p.ext[NI - 1];
    const off ostep = (off)p.oc[NI - 1] * (off)lstep;
    for (int r = 0; r < KCU_FZ_RPT; r++) {
        const long long g = first + r * rstep;
        if (g >= p.runs) break;
        unsigned c[NI];
        fz_coords<NI, BIG>(p, g, span, lane, c);
        const unsigned i0 = c[NI - 1];
        const off o = fz_at<off, NI>(p.ob, p.oc, c);
        /* the first KCU_FZ_PF loads of every element, issued together before evaluating */
        float pf[KCU_FZ_RUN][KCU_FZ_PF];
        #pragma unroll
        for (int e = 0; e < KCU_FZ_RUN; e++)
            #pragma unroll
            for (int k = 0; k < KCU_FZ_PF; k++)
                if (k < p.nb_loads && e < nel && i0 + e * lstep < ext_last)
                    pf[e][k] = fz_load(a, p.lt[k], fz_at<off, NI>(p.lb[k], p.lc[k], c) +
                                                       (off)(e * lstep) * (off)p.lc[k][NI - 1]);
        float v[KCU_FZ_RUN];
        #pragma unroll
        for (int e = 0; e < KCU_FZ_RUN; e++) {
            if (e >= nel || i0 + e * lstep >= ext_last) break;
            int sp_ = 0;
            float top = 0.0f; /* the stack's top in a register, the rest in shared memory */
            for (int q = 0; q < n; q++) {
                const int op = p.op[q];
                if (op == KCU_FZ_LOAD || op == KCU_FZ_CONST) {
                    if (sp_ > 0) stk[sp_ - 1][threadIdx.x] = top;
                    sp_++;
                    const int k = p.arg[q];
                    if (op == KCU_FZ_CONST) {
                        top = p.f[q][0];
                    } else if (k < KCU_FZ_PF) {
                        top = pf[e][0];
                        #pragma unroll
                        for (int j = 1; j < KCU_FZ_PF; j++)
                            if (k == j) top = pf[e][j];
                    } else {
                        const off at = fz_at<off, NI>(p.lb[k], p.lc[k], c) + (off)(e * lstep) * (off)p.lc[k][NI - 1];
                        top = fz_load(a, p.lt[k], at);
                    }
                } else if (op == KCU_FZ_ACT) {
                    top = kcu_act_apply(p.arg[q], p.f[q][0], p.f[q][1], top);
                } else if (op == KCU_FZ_SCALE) {
                    float t = top * p.f[q][0] + p.f[q][1];
                    const float pw = p.f[q][2];
                    top = pw == 1.0f ? t : pw == 2.0f ? t * t : powf(t, pw);
                } else if (op == KCU_FZ_ROUND16) {
                    top = __half2float(__float2half_rn(top));
                } else {
                    sp_--;
                    top = fz_bin(p.arg[q], stk[sp_ - 1][threadIdx.x], top);
                }
            }
            v[e] = top;
        }
        if (a.out_f16) {
            __half *out = reinterpret_cast<__half *>(a.out);
            #pragma unroll
            for (int e = 0; e < KCU_FZ_RUN; e++)
                if (e < nel && i0 + e * lstep < ext_last) out[o + e * ostep] = __float2half_rn(v[e]);
        } else {
            float *out = reinterpret_cast<float *>(a.out);
            #pragma unroll
            for (int e = 0; e < KCU_FZ_RUN; e++)
                if (e < nel && i0 + e * lstep < ext_last) out[o + e * ostep] = v[e];
        }
    }
}

template <int NI, bool BIG> static void fz_launch(cudaStream_t s, const kcu_fz_args *a) {
    k_fused<NI, BIG><<<(unsigned)a->blocks, KCU_FZ_THREADS, 0, s>>>(*a);
}

extern "C" cudaError_t kcu_fused_run(cudaStream_t s, const kcu_fz_args *a, int ni, int big) {
    if (a->blocks <= 0) return cudaSuccess;
    if (big) fz_launch<KCU_FZ_IT, true>(s, a);
    else switch (ni) {
        case 1: fz_launch<1, false>(s, a); break;
        case 2: fz_launch<2, false>(s, a); break;
        case 3: fz_launch<3, false>(s, a); break;
        case 4: fz_launch<4, false>(s, a); break;
        case 5: fz_launch<5, false>(s, a); break;
        case 6: fz_launch<6, false>(s, a); break;
        default: fz_launch<KCU_FZ_IT, false>(s, a); break;
        }
    return kcu_launched();
}
