/* kiln CUDA backend: a fused region (src/graph/fused.h; prepared by src/cuda/fused.c). One
 * thread per output element: it finds its piece, splits its index into the piece's box
 * coordinates (multiply-shift division by each extent), and evaluates the piece's program
 * in float32 with loads at the maps' strides. The box's last axis steps along the output's
 * memory, so a warp's stores are contiguous. */
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

__device__ __forceinline__ float fz_load(const kcu_fz_args &a, int t, long long at) {
    if ((a.in_f16 >> t) & 1ull) return __half2float(reinterpret_cast<const __half *>(a.in[t])[at]);
    return reinterpret_cast<const float *>(a.in[t])[at];
}

/* Loops over box axes run unrolled to KCU_FZ_IT with the piece's count as a guard, so the
 * coordinates stay in registers (indexed arrays would live in local memory, and at tens of
 * millions of elements its traffic through L1 and L2 cost more than the data); the
 * evaluation stack is in shared memory, a column per thread. */
/* One thread a run of KCU_FZ_RUN elements along the last box axis (the output's memory):
 * the piece search and the division into coordinates are paid once a run. Loops over box
 * axes run unrolled to KCU_FZ_IT with the piece's count as a guard, so the coordinates
 * stay in registers (indexed arrays would live in local memory, whose traffic through L1
 * and L2 at tens of millions of elements cost more than the data); the evaluation stack
 * is in shared memory, a column per thread. */
template <bool BIG>
__global__ void __launch_bounds__(KCU_THREADS) k_fused(const kcu_fz_args a) {
    __shared__ float stk[KCU_FZ_STACK][KCU_THREADS];
    KCU_LOOP(g, a.total) {
        /* the piece: the last whose start is <= g (binary search) */
        int lo = 0, hi = a.np - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >> 1;
            if (a.pieces[mid].start <= g) lo = mid;
            else hi = mid - 1;
        }
        const kcu_fz_piece *__restrict__ p = a.pieces + lo;
        const int ni = p->ni, last = ni - 1;
        int64_t rest = g - p->start;
        unsigned c[KCU_FZ_IT];
        #pragma unroll
        for (int q = KCU_FZ_IT - 1; q >= 0; q--) {
            c[q] = 0;
            if (q > last) continue;
            if (q == 0) { /* the outermost axis takes what is left */
                c[0] = (unsigned)rest;
                continue;
            }
            unsigned div = q == last ? p->last_runs : p->ext[q];
            if (BIG) {
                c[q] = (unsigned)(rest % div);
                rest /= div;
            } else {
                unsigned x = (unsigned)rest, d = (__umulhi(x, p->mag[q]) + x) >> p->shf[q];
                c[q] = x - d * div;
                rest = d;
            }
        }
        /* c[last] is the run; its first element: */
        const unsigned i0 = c[last] * KCU_FZ_RUN, ext_last = p->ext[last];
        #pragma unroll
        for (int q = 0; q < KCU_FZ_IT; q++)
            if (q == last) c[q] = i0;
        long long o = p->ob;
        #pragma unroll
        for (int q = 0; q < KCU_FZ_IT; q++)
            if (q < ni) o += (long long)c[q] * p->oc[q];
        const long long ostep = p->oc[last];
        const int n = p->nb_instrs;
        float v[KCU_FZ_RUN];
        if (n == 1) { /* a load alone: moving data */
            long long at = p->lb[0];
            #pragma unroll
            for (int q = 0; q < KCU_FZ_IT; q++)
                if (q < ni) at += (long long)c[q] * p->lc[0][q];
            const long long step = p->lc[0][last];
            const int t = p->lt[0];
            #pragma unroll
            for (int e = 0; e < KCU_FZ_RUN; e++)
                if (i0 + e < ext_last) v[e] = fz_load(a, t, at + e * step);
        } else {
            #pragma unroll
            for (int e = 0; e < KCU_FZ_RUN; e++) {
                if (i0 + e >= ext_last) break;
                int sp = 0;
                float top = 0.0f; /* the stack's top in a register, the rest in shared memory */
                for (int q = 0; q < n; q++) {
                    const int op = p->op[q];
                    if (op == KCU_FZ_LOAD || op == KCU_FZ_CONST) {
                        if (sp > 0) stk[sp - 1][threadIdx.x] = top;
                        sp++;
                        if (op == KCU_FZ_CONST) {
                            top = p->f[q][0];
                        } else {
                            const int k = p->arg[q];
                            long long at = p->lb[k] + (long long)e * p->lc[k][last];
                            #pragma unroll
                            for (int j = 0; j < KCU_FZ_IT; j++)
                                if (j < ni) at += (long long)c[j] * p->lc[k][j];
                            top = fz_load(a, p->lt[k], at);
                        }
                    } else if (op == KCU_FZ_ACT) {
                        top = kcu_act_apply(p->arg[q], p->f[q][0], p->f[q][1], top);
                    } else if (op == KCU_FZ_SCALE) {
                        float t = top * p->f[q][0] + p->f[q][1];
                        const float pw = p->f[q][2];
                        top = pw == 1.0f ? t : pw == 2.0f ? t * t : powf(t, pw);
                    } else if (op == KCU_FZ_ROUND16) {
                        top = __half2float(__float2half_rn(top));
                    } else {
                        sp--;
                        top = fz_bin(p->arg[q], stk[sp - 1][threadIdx.x], top);
                    }
                }
                v[e] = top;
            }
        }
        #pragma unroll
        for (int e = 0; e < KCU_FZ_RUN; e++) {
            if (i0 + e >= ext_last) break;
            if (a.out_f16) reinterpret_cast<__half *>(a.out)[o + e * ostep] = __float2half_rn(v[e]);
            else reinterpret_cast<float *>(a.out)[o + e * ostep] = v[e];
        }
    }
}

extern "C" cudaError_t kcu_fused_run(cudaStream_t s, const kcu_fz_args *a, int big) {
    if (a->total <= 0) return cudaSuccess;
    if (big) k_fused<true><<<kcu_blocks(a->total), KCU_THREADS, 0, s>>>(*a);
    else k_fused<false><<<kcu_blocks(a->total), KCU_THREADS, 0, s>>>(*a);
    return kcu_launched();
}
