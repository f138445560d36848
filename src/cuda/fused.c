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
    int np, ni, big;
    long long blocks;
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

/* Elements from the first to the last of t's memory, plus one. */
static long long span(const kiln_tensor *t) {
    int64_t st[KILN_MAX_DIMS];
    mem_strides(t, st);
    long long e = 1;
    for (int k = 0; k < t->dims.nb_dims; k++)
        if (t->dims.d[k] > 0) e += (t->dims.d[k] - 1) * (st[k] < 0 ? -st[k] : st[k]);
    return e;
}

static void drop_axis(kcu_fz_piece *d, long long *ext, int ni, int j) {
    for (int q = j; q < ni - 1; q++) {
        ext[q] = ext[q + 1];
        d->oc[q] = d->oc[q + 1];
        for (int k = 0; k < d->nb_loads; k++) d->lc[k][q] = d->lc[k][q + 1];
    }
}

/* Fewer axes, less work a run: drops axes of extent 1 and merges an axis into the next
 * inner one where every map steps over it as over a whole run of the inner one (an
 * output's h and w, say, when both tensors are dense there). Returns the axes left. */
static int merge_axes(kcu_fz_piece *d, long long *ext, int ni) {
    for (int j = ni - 1; j >= 0 && ni > 1; j--)
        if (ext[j] == 1) drop_axis(d, ext, ni--, j);
    for (int j = ni - 2; j >= 0; j--) {
        long long e;
        bool ok = !__builtin_mul_overflow(ext[j], ext[j + 1], &e) && d->oc[j] == d->oc[j + 1] * ext[j + 1];
        for (int k = 0; ok && k < d->nb_loads; k++) ok = d->lc[k][j] == d->lc[k][j + 1] * ext[j + 1];
        if (!ok) continue;
        ext[j + 1] = e;
        drop_axis(d, ext, ni--, j);
    }
    return ni;
}

/* Leading axes of extent 1 up to ni axes in all. */
static void pad_axes(kcu_fz_piece *d, int ni) {
    int add = ni - d->ni;
    if (add <= 0) return;
    for (int q = d->ni - 1; q >= 0; q--) {
        d->ext[q + add] = d->ext[q];
        d->oc[q + add] = d->oc[q];
        for (int k = 0; k < d->nb_loads; k++) d->lc[k][q + add] = d->lc[k][q];
    }
    for (int q = 0; q < add; q++) {
        d->ext[q] = 1;
        d->oc[q] = 0;
        for (int k = 0; k < d->nb_loads; k++) d->lc[k][q] = 0;
    }
    d->ni = ni;
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
    /* Each piece's box in the order the kernel walks it, axes merged where every map allows
     * (kf_decode has checked that there are pieces and that every extent is at least 1). */
    int nimax = 1;
    for (int p = 0; p < n; p++) {
        const kf_piece *src = &ps[p];
        kcu_fz_piece *d = &hp[p];
        /* box axes by falling output stride (a stable insertion sort): the last walks memory */
        int order[KF_MAX_IT];
        long long ext[KF_MAX_IT];
        for (int j = 0; j < src->ni; j++) order[j] = j;
        map_strides(&src->out, o, src->ni, order, d->oc, &d->ob);
        for (int j = 1; j < src->ni; j++)
            for (int q = j; q > 0 && d->oc[order[q - 1]] < d->oc[order[q]]; q--) {
                int t = order[q];
                order[q] = order[q - 1];
                order[q - 1] = t;
            }
        map_strides(&src->out, o, src->ni, order, d->oc, &d->ob);
        d->nb_loads = src->nb_loads;
        d->nb_instrs = src->nb_instrs;
        for (int k = 0; k < src->nb_loads; k++) {
            d->lt[k] = src->loads[k].tensor;
            map_strides(&src->loads[k], l->inputs[d->lt[k]], src->ni, order, d->lc[k], &d->lb[k]);
        }
        for (int j = 0; j < src->ni; j++) ext[j] = src->ext[order[j]];
        int ni = merge_axes(d, ext, src->ni);
        d->ni = ni;
        for (int j = 0; j < ni; j++) {
            if (ext[j] >= (1LL << 31)) s->big = 1;
            d->ext[j] = ext[j] > 0xffffffffLL ? 0 : (unsigned)ext[j];
            if (!d->ext[j]) {
                st = kg_layer_error(l, KILN_ERR_UNSUPPORTED, "fused region axis of 2^32 elements or more");
                goto done;
            }
        }
        long long lr = (ext[ni - 1] + KCU_FZ_RUN - 1) / KCU_FZ_RUN, runs = lr;
        for (int j = 0; j < ni - 1; j++)
            if (__builtin_mul_overflow(runs, ext[j], &runs)) {
                st = kg_layer_error(l, KILN_ERR_UNSUPPORTED, "fused region piece of 2^63 elements or more");
                goto done;
            }
        d->last_runs = (unsigned)lr;
        d->runs = runs;
        if (runs >= (1LL << 31)) s->big = 1;
        for (int k = 0; k < src->nb_instrs; k++) {
            d->op[k] = src->prog[k].op;
            d->arg[k] = src->prog[k].arg;
            memcpy(d->f[k], src->prog[k].f, sizeof d->f[k]);
        }
        if (ni > nimax) nimax = ni;
    }
    /* 32-bit offsets where every tensor's memory holds fewer than 2^31 elements */
    for (int i = 0; i <= l->nb_inputs; i++)
        if (span(i < l->nb_inputs ? l->inputs[i] : o) >= (1LL << 31)) s->big = 1;
    /* one axis count for the launch: the kernel is compiled for 1 to 6 and for KCU_FZ_IT */
    s->ni = s->big || nimax > 6 ? KCU_FZ_IT : nimax;
    long long blocks = 0;
    for (int p = 0; p < n; p++) {
        kcu_fz_piece *d = &hp[p];
        pad_axes(d, s->ni);
        if (!s->big)
            for (int j = 1; j < s->ni; j++)
                magic(j == s->ni - 1 ? d->last_runs : d->ext[j], &d->mag[j], &d->shf[j]);
        d->bstart = blocks;
        blocks += (d->runs + KCU_FZ_THREADS * KCU_FZ_RPT - 1) / (KCU_FZ_THREADS * KCU_FZ_RPT);
    }
    if (blocks >= (1LL << 31)) {
        st = kg_layer_error(l, KILN_ERR_UNSUPPORTED, "fused region of %lld blocks (at most 2^31 - 1)", blocks);
        goto done;
    }
    s->blocks = blocks;
    s->np = n;
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
    a.blocks = s->blocks;
    a.pieces = s->pieces;
    KCU_CUDA(l, kcu_fused_run(x->stream, &a, s->ni, s->big));
    return KILN_OK;
}

const kcu_kernel kcu_k_fused = {fz_prepare, fz_run, NULL, NULL, NULL};
