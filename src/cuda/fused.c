/* kiln CUDA backend, host side of a fused region (src/graph/fused.h): each piece's maps
 * become element strides of the tensors' memory (row-major, channels-last, pitched), the
 * box axes are ordered so the output's strides fall, and the pieces go to the device once.
 * The kernel: src/cuda/fused.cu. */
#include <string.h>

#include "cuda/host.h"
#include "graph/fused.h"

_Static_assert(KCU_FZ_IT == KF_MAX_IT && KCU_FZ_LOADS == KF_MAX_LOADS && KCU_FZ_PROG == KF_MAX_PROG &&
                   KCU_FZ_STACK == KF_MAX_STACK,
               "fused-region limits differ between graph/fused.h and cuda/kcu.h");
_Static_assert((int)KCU_FZ_LOAD == (int)KF_LOAD && (int)KCU_FZ_CONST == (int)KF_CONST && (int)KCU_FZ_ACT == (int)KF_ACT &&
                   (int)KCU_FZ_SCALE == (int)KF_SCALE &&
                   (int)KCU_FZ_BIN == (int)KF_BIN && (int)KCU_FZ_ROUND16 == (int)KF_ROUND16,
               "fused-region instructions differ between graph/fused.h and cuda/kcu.h");

typedef struct fz_state {
    kcu_state base;
    kcu_fz_piece *pieces; /* device */
    int np, big;
    long long total;
    unsigned long long in_f16;
    int out_f16;
} fz_state;

/* Element strides of t's logical axes in memory, a pitched channels-last tensor's too. */
static void mem_strides(const kiln_tensor *t, int64_t *s) {
    kcu_mem_strides(t, s);
    if (t->pitch && kcu_nhwc(t)) {
        s[0] = t->pitch * t->dims.d[2] * t->dims.d[3];
        s[2] = t->pitch * t->dims.d[3];
        s[3] = t->pitch;
    }
}

static void map_strides(const kf_map *m, const kiln_tensor *t, int ni, const int *order, long long *c, long long *b) {
    int64_t s[KILN_MAX_DIMS];
    mem_strides(t, s);
    *b = 0;
    for (int k = 0; k < m->rank; k++) *b += m->b[k] * s[k];
    for (int j = 0; j < ni; j++) {
        c[j] = 0;
        for (int k = 0; k < m->rank; k++) c[j] += m->a[k][order[j]] * s[k];
    }
}

/* x / d as (umulhi(x, mag) + x) >> shf for 0 <= x < 2^31. */
static void magic(unsigned d, unsigned *mag, int *shf) {
    int l = 0;
    while (l < 32 && (1ull << l) < d) l++;
    *shf = l;
    *mag = (unsigned)(((1ull << 32) * ((1ull << l) - d)) / d + 1);
}

static kiln_status fz_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    *state = NULL;
    if (l->nb_inputs > KCU_FZ_INPUTS)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "fused region of %d inputs (at most %d)", l->nb_inputs,
                              KCU_FZ_INPUTS);
    const kiln_tensor *o = l->outputs[0];
    for (int i = 0; i <= l->nb_inputs; i++) {
        const kiln_tensor *t = i < l->nb_inputs ? l->inputs[i] : o;
        kiln_dtype s = kg_storage(t);
        if (s != KILN_FLOAT32 && s != KILN_FLOAT16)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "fused region tensor '%s' is stored as %s", t->name,
                                  kiln_dtype_name(s));
        if (t->pitch && (!kcu_nhwc(t) || t == o))
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "fused region tensor '%s' is pitched", t->name);
    }
    kf_piece *ps = NULL;
    int n = 0;
    kiln_status st = kf_decode(l, b->env, &ps, &n, NULL, NULL);
    if (st != KILN_OK) return st;
    fz_state *s = kiln_calloc(b->env, 1, sizeof *s);
    kcu_fz_piece *hp = kiln_calloc(b->env, (size_t)n, sizeof *hp);
    if (!s || !hp) {
        st = kiln_error(b->env, KILN_ERR_OUT_OF_MEMORY, "out of host memory for a fused region");
        goto done;
    }
    s->out_f16 = kg_storage(o) == KILN_FLOAT16;
    for (int i = 0; i < l->nb_inputs; i++)
        if (kg_storage(l->inputs[i]) == KILN_FLOAT16) s->in_f16 |= 1ull << i;
    long long total = 0;
    for (int p = 0; p < n; p++) {
        const kf_piece *src = &ps[p];
        kcu_fz_piece *d = &hp[p];
        /* box axes by falling output stride (a stable insertion sort): the last walks memory */
        int order[KF_MAX_IT];
        long long oc[KF_MAX_IT], ob;
        for (int j = 0; j < src->ni; j++) order[j] = j;
        map_strides(&src->out, o, src->ni, order, oc, &ob);
        for (int j = 1; j < src->ni; j++)
            for (int q = j; q > 0 && oc[order[q - 1]] < oc[order[q]]; q--) {
                int t = order[q];
                order[q] = order[q - 1];
                order[q - 1] = t;
            }
        d->start = total;
        d->ni = src->ni;
        d->nb_loads = src->nb_loads;
        d->nb_instrs = src->nb_instrs;
        long long vol = 1;
        for (int j = 0; j < src->ni; j++) {
            int64_t e = src->ext[order[j]];
            bool last = j == src->ni - 1;
            int64_t div = last ? (e + KCU_FZ_RUN - 1) / KCU_FZ_RUN : e; /* the last axis counts runs */
            vol *= div;
            d->ext[j] = e > 0xffffffffLL ? 0 : (unsigned)e;
            if (last) d->last_runs = (unsigned)div;
            if (e >= (1LL << 31)) s->big = 1;
            else magic((unsigned)div, &d->mag[j], &d->shf[j]);
        }
        map_strides(&src->out, o, src->ni, order, d->oc, &d->ob);
        for (int k = 0; k < src->nb_loads; k++) {
            d->lt[k] = src->loads[k].tensor;
            map_strides(&src->loads[k], l->inputs[d->lt[k]], src->ni, order, d->lc[k], &d->lb[k]);
        }
        for (int q = 0; q < src->nb_instrs; q++) {
            d->op[q] = src->prog[q].op;
            d->arg[q] = src->prog[q].arg;
            memcpy(d->f[q], src->prog[q].f, sizeof d->f[q]);
        }
        total += vol;
    }
    for (int p = 0; s->big && p < n; p++)
        for (int j = 0; j < hp[p].ni; j++)
            if (!hp[p].ext[j]) {
                st = kg_layer_error(l, KILN_ERR_UNSUPPORTED, "fused region axis of 2^32 elements or more");
                goto done;
            }
    s->np = n;
    s->total = total;
    const void *srcs[1] = {hp};
    size_t bytes[1] = {(size_t)n * sizeof *hp};
    void *dst[1];
    st = kcu_state_upload(l, &s->base, 1, srcs, bytes, dst);
    s->pieces = dst[0];
done:
    kiln_free(b->env, ps);
    kiln_free(b->env, hp);
    if (st != KILN_OK) {
        if (s) kcu_state_free(b->env, s);
        return st;
    }
    *state = s;
    return KILN_OK;
}

static kiln_status fz_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                          const kcu_exec *x) {
    const fz_state *s = state;
    kcu_fz_args a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < l->nb_inputs; i++) a.in[i] = in[i];
    a.in_f16 = s->in_f16;
    a.out = out[0];
    a.out_f16 = s->out_f16;
    a.np = s->np;
    a.total = s->total;
    a.pieces = s->pieces;
    KCU_CUDA(l, kcu_fused_run(x->stream, &a, s->big));
    return KILN_OK;
}

const kcu_kernel kcu_k_fused = {fz_prepare, fz_run, NULL, NULL};
