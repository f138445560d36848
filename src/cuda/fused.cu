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

template <bool BIG>
__global__ void __launch_bounds__(256) k_fused(const kcu_fz_args a) {
    KCU_LOOP(g, a.total) {
        /* the piece: the last whose start is <= g (binary search) */
        int lo = 0, hi = a.np - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >> 1;
            if (a.pieces[mid].start <= g) lo = mid;
            else hi = mid - 1;
        }
        const kcu_fz_piece *__restrict__ p = a.pieces + lo;
        const int ni = p->ni;
        int64_t rest = g - p->start;
        unsigned c[KCU_FZ_IT];
        for (int j = ni - 1; j > 0; j--) {
            if (BIG) {
                c[j] = (unsigned)(rest % p->ext[j]);
                rest /= p->ext[j];
            } else {
                unsigned x = (unsigned)rest, q = (__umulhi(x, p->mag[j]) + x) >> p->shf[j];
                c[j] = x - q * p->ext[j];
                rest = q;
            }
        }
        c[0] = (unsigned)rest;
        long long o = p->ob;
        for (int j = 0; j < ni; j++) o += (long long)c[j] * p->oc[j];
        float st[KCU_FZ_STACK];
        int sp = 0;
        const int n = p->nb_instrs;
        for (int q = 0; q < n; q++) {
            const int op = p->op[q];
            if (op == KCU_FZ_LOAD) {
                const int k = p->arg[q];
                long long at = p->lb[k];
                for (int j = 0; j < ni; j++) at += (long long)c[j] * p->lc[k][j];
                st[sp++] = fz_load(a, p->lt[k], at);
            } else if (op == KCU_FZ_CONST) {
                st[sp++] = p->f[q][0];
            } else if (op == KCU_FZ_ACT) {
                st[sp - 1] = kcu_act_apply(p->arg[q], p->f[q][0], p->f[q][1], st[sp - 1]);
            } else if (op == KCU_FZ_SCALE) {
                float v = st[sp - 1] * p->f[q][0] + p->f[q][1];
                const float pw = p->f[q][2];
                st[sp - 1] = pw == 1.0f ? v : pw == 2.0f ? v * v : powf(v, pw);
            } else {
                sp--;
                st[sp - 1] = fz_bin(p->arg[q], st[sp - 1], st[sp]);
            }
        }
        if (a.out_f16) reinterpret_cast<__half *>(a.out)[o] = __float2half_rn(st[0]);
        else reinterpret_cast<float *>(a.out)[o] = st[0];
    }
}

extern "C" cudaError_t kcu_fused_run(cudaStream_t s, const kcu_fz_args *a, int big) {
    if (a->total <= 0) return cudaSuccess;
    if (big) k_fused<true><<<kcu_blocks(a->total), KCU_THREADS, 0, s>>>(*a);
    else k_fused<false><<<kcu_blocks(a->total), KCU_THREADS, 0, s>>>(*a);
    return kcu_launched();
}
