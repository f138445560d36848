/* kiln CUDA backend: a fused region (src/graph/fused.h; prepared by src/cuda/fused.c). A
 * thread splits its run's index into the piece's box coordinates and evaluates the piece's
 * program in float32 with loads at the maps' strides. The box's last axis steps along the
 * output's memory, so a warp's stores are close together. */
#include "cuda/kcu_device.cuh"

template <typename off> __device__ __forceinline__ float fz_load(const kcu_fz_args &a, int t, off at) {
    if ((a.in_f16 >> t) & 1ull) return __half2float(reinterpret_cast<const __half *>(a.in[t])[at]);
    return reinterpret_cast<const float *>(a.in[t])[at];
}

template <bool BIG> struct fz_off { typedef unsigned T; }; /* wraps mod 2^32: exact below 2^31 */
template <> struct fz_off<true> { typedef long long T; };

/* A block works on one piece, copied to shared memory; a thread takes KCU_FZ_RPT runs of
 * KCU_FZ_RUN elements along the last box axis (the output's memory), a block apart, so a
 * warp's runs are adjacent. The box has NI axes (known at compile time: the coordinates
 * stay in registers, and the loops over axes unroll without guards); the division of a
 * run's index into coordinates is a multiply-shift per axis, in 32 bits unless BIG. The
 * evaluation stack is in shared memory, a column per thread. */
template <int NI, bool BIG>
__global__ void __launch_bounds__(KCU_FZ_THREADS) k_fused(const kcu_fz_args a) {
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
    const long long first = (blockIdx.x - p.bstart) * (long long)(KCU_FZ_THREADS * KCU_FZ_RPT) + threadIdx.x;
    const unsigned ext_last = p.ext[NI - 1];
    const int n = p.nb_instrs;
    for (int r = 0; r < KCU_FZ_RPT; r++) {
        const long long g = first + r * KCU_FZ_THREADS;
        if (g >= p.runs) break;
        unsigned c[NI];
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
        c[NI - 1] *= KCU_FZ_RUN; /* the run's first element */
        const unsigned i0 = c[NI - 1];
        off o = (off)p.ob;
        #pragma unroll
        for (int q = 0; q < NI; q++) o += (off)c[q] * (off)p.oc[q];
        const off ostep = (off)p.oc[NI - 1];
        float v[KCU_FZ_RUN];
        if (n == 1) { /* a load alone: moving data */
            off at = (off)p.lb[0];
            #pragma unroll
            for (int q = 0; q < NI; q++) at += (off)c[q] * (off)p.lc[0][q];
            const off step = (off)p.lc[0][NI - 1];
            const int t = p.lt[0];
            if ((a.in_f16 >> t) & 1ull) {
                const __half *in = reinterpret_cast<const __half *>(a.in[t]);
                #pragma unroll
                for (int e = 0; e < KCU_FZ_RUN; e++)
                    if (i0 + e < ext_last) v[e] = __half2float(in[at + e * step]);
            } else {
                const float *in = reinterpret_cast<const float *>(a.in[t]);
                #pragma unroll
                for (int e = 0; e < KCU_FZ_RUN; e++)
                    if (i0 + e < ext_last) v[e] = in[at + e * step];
            }
        } else {
            #pragma unroll
            for (int e = 0; e < KCU_FZ_RUN; e++) {
                if (i0 + e >= ext_last) break;
                int sp_ = 0;
                float top = 0.0f; /* the stack's top in a register, the rest in shared memory */
                for (int q = 0; q < n; q++) {
                    const int op = p.op[q];
                    if (op == KCU_FZ_LOAD || op == KCU_FZ_CONST) {
                        if (sp_ > 0) stk[sp_ - 1][threadIdx.x] = top;
                        sp_++;
                        if (op == KCU_FZ_CONST) {
                            top = p.f[q][0];
                        } else {
                            const int k = p.arg[q];
                            off at = (off)p.lb[k] + (off)e * (off)p.lc[k][NI - 1];
                            #pragma unroll
                            for (int j = 0; j < NI; j++) at += (off)c[j] * (off)p.lc[k][j];
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
                        top = kcu_bin_apply(p.arg[q], stk[sp_ - 1][threadIdx.x], top);
                    }
                }
                v[e] = top;
            }
        }
        if (a.out_f16) {
            __half *out = reinterpret_cast<__half *>(a.out);
            #pragma unroll
            for (int e = 0; e < KCU_FZ_RUN; e++)
                if (i0 + e < ext_last) out[o + e * ostep] = __float2half_rn(v[e]);
        } else {
            float *out = reinterpret_cast<float *>(a.out);
            #pragma unroll
            for (int e = 0; e < KCU_FZ_RUN; e++)
                if (i0 + e < ext_last) out[o + e * ostep] = v[e];
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
