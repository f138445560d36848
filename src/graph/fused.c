/* kiln internal: a fused region's program (graph/fused.h): decoding with every check a
 * plan read from disk needs, the layer's inference, and the encoder the pass uses. */
#include <string.h>

#include "graph/fused.h"
#include "graph/ops.h"

void kf_put(kf_writer *w, int64_t v) {
    if (w->bad) return;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 256;
        if (cap > KF_MAX_AUX) {
            w->bad = true;
            return;
        }
        int64_t *p = kiln_alloc(w->env, (size_t)cap * sizeof *p);
        if (!p) {
            w->bad = w->oom = true;
            return;
        }
        if (w->n) memcpy(p, w->w, (size_t)w->n * sizeof *p);
        kiln_free(w->env, w->w);
        w->w = p;
        w->cap = cap;
    }
    w->w[w->n++] = v;
}

void kf_put_map(kf_writer *w, const kf_map *m, int ni) {
    kf_put(w, m->tensor);
    kf_put(w, m->rank);
    for (int d = 0; d < m->rank; d++) {
        for (int j = 0; j < ni; j++) kf_put(w, m->a[d][j]);
        kf_put(w, m->b[d]);
    }
}

void kf_put_instr(kf_writer *w, const kf_instr *in) {
    kf_put(w, in->op);
    kf_put(w, in->arg);
    for (int k = 0; k < 3; k++) kf_put(w, kf_fbits(in->f[k]));
}

typedef struct kf_reader {
    const int64_t *w;
    int n, at;
    bool bad;
} kf_reader;

static int64_t rd(kf_reader *r) {
    if (r->at >= r->n) {
        r->bad = true;
        return 0;
    }
    return r->w[r->at++];
}

/* A map of a tensor of dims d over the box ext[ni]: every index in [0, d). */
static bool read_map(kf_reader *r, kf_map *m, int ni, const int64_t *ext, const kiln_dims *d) {
    int64_t rank = rd(r);
    if (r->bad || rank != d->nb_dims) return false;
    m->rank = (int)rank;
    for (int k = 0; k < m->rank; k++) {
        int64_t hi = 0;
        for (int j = 0; j < ni; j++) {
            m->a[k][j] = rd(r);
            int64_t span;
            if (m->a[k][j] < 0 || m->a[k][j] > d->d[k] || __builtin_mul_overflow(m->a[k][j], ext[j] - 1, &span))
                return false;
            hi += span;
            if (hi >= d->d[k]) return false;
        }
        m->b[k] = rd(r);
        if (r->bad || m->b[k] < 0 || m->b[k] >= d->d[k] || hi + m->b[k] >= d->d[k]) return false;
    }
    return !r->bad;
}

kiln_status kf_decode(const kiln_layer *l, const kiln_env *env, kf_piece **pieces, int *count, kiln_dims *out_dims,
                      kiln_dtype *out_dtype) {
    kf_reader r = {l->aux, l->nb_aux, 0, false};
    if (pieces) *pieces = NULL;
    kf_piece *ps = NULL;
    kf_piece scratch;
    kiln_dims od;
    memset(&od, 0, sizeof od);
    if (rd(&r) != KF_MAGIC) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "fused program has no header");
    int64_t dt = rd(&r), rank = rd(&r);
    if (r.bad || (dt != KILN_FLOAT32 && dt != KILN_FLOAT16) || rank < 0 || rank > KILN_MAX_DIMS)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "fused program: bad output type or rank");
    od.nb_dims = (int)rank;
    int64_t vol = 1;
    for (int k = 0; k < rank; k++) {
        od.d[k] = rd(&r);
        if (od.d[k] <= 0 || __builtin_mul_overflow(vol, od.d[k], &vol))
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "fused program: bad output dims");
    }
    int64_t np = rd(&r);
    if (r.bad || np < 1 || np > KF_MAX_PIECES)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "fused program: %lld pieces", (long long)np);
    for (int i = 0; i < l->nb_inputs; i++) {
        const kiln_tensor *t = l->inputs[i];
        if (!t || (t->dtype != KILN_FLOAT32 && t->dtype != KILN_FLOAT16) || t->dims.nb_dims < 0)
            return kg_layer_error(l, KILN_ERR_DTYPE, "fused region input %d is not a float tensor", i);
    }
    if (pieces) {
        ps = kiln_calloc(env, (size_t)np, sizeof *ps);
        if (!ps) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory for a fused region");
    }
    int64_t covered = 0;
    const char *why = NULL;
    for (int p = 0; p < np && !why; p++) {
        kf_piece *pc = ps ? &ps[p] : &scratch;
        memset(pc, 0, sizeof *pc);
        int64_t ni = rd(&r);
        if (r.bad || ni < 1 || ni > KF_MAX_IT) {
            why = "iteration rank";
            break;
        }
        pc->ni = (int)ni;
        int64_t pv = 1;
        for (int j = 0; j < ni; j++) {
            pc->ext[j] = rd(&r);
            if (pc->ext[j] < 1 || __builtin_mul_overflow(pv, pc->ext[j], &pv)) why = "iteration box";
        }
        if (why) break;
        if (__builtin_add_overflow(covered, pv, &covered)) {
            why = "iteration box";
            break;
        }
        pc->out.tensor = -1;
        if (rd(&r) != -1 || !read_map(&r, &pc->out, pc->ni, pc->ext, &od)) {
            why = "output map";
            break;
        }
        int64_t nl = rd(&r);
        if (r.bad || nl < 0 || nl > KF_MAX_LOADS) {
            why = "load count";
            break;
        }
        pc->nb_loads = (int)nl;
        for (int k = 0; k < nl && !why; k++) {
            kf_map *m = &pc->loads[k];
            int64_t t = rd(&r);
            if (r.bad || t < 0 || t >= l->nb_inputs) {
                why = "load tensor";
                break;
            }
            m->tensor = (int)t;
            if (!read_map(&r, m, pc->ni, pc->ext, &l->inputs[t]->dims)) why = "load map";
        }
        if (why) break;
        int64_t nn = rd(&r);
        if (r.bad || nn < 1 || nn > KF_MAX_PROG) {
            why = "program length";
            break;
        }
        pc->nb_instrs = (int)nn;
        int depth = 0;
        for (int k = 0; k < nn; k++) {
            kf_instr *in = &pc->prog[k];
            int64_t op = rd(&r), arg = rd(&r);
            for (int f = 0; f < 3; f++) in->f[f] = kf_bitsf(rd(&r));
            in->op = (int)op;
            in->arg = (int)arg;
            bool ok = !r.bad;
            switch (op) {
            case KF_LOAD: ok = ok && arg >= 0 && arg < nl && ++depth <= KF_MAX_STACK; break;
            case KF_CONST: ok = ok && arg == 0 && ++depth <= KF_MAX_STACK; break;
            case KF_ACT: ok = ok && arg >= 0 && arg < KILN_ACT_COUNT && depth >= 1; break;
            case KF_SCALE: ok = ok && arg == 0 && depth >= 1; break;
            case KF_BIN: ok = ok && kf_bin_ok((int)arg) && depth-- >= 2; break;
            case KF_ROUND16: ok = ok && arg == 0 && depth >= 1; break;
            default: ok = false;
            }
            if (!ok) {
                why = "program";
                break;
            }
        }
        if (!why && depth != 1) why = "program result";
    }
    if (!why && r.at != r.n) why = "trailing words";
    if (!why && covered != vol) why = "pieces do not cover the output";
    if (why) {
        kiln_free(env, ps);
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "fused program is malformed (%s)", why);
    }
    if (pieces) *pieces = ps;
    if (count) *count = (int)np;
    if (out_dims) *out_dims = od;
    if (out_dtype) *out_dtype = (kiln_dtype)dt;
    return KILN_OK;
}

KG_INFER(fused) {
    kiln_dtype dt;
    kiln_dims d;
    kiln_status st = kf_decode(l, &l->graph->env, NULL, NULL, &d, &dt);
    if (st != KILN_OK) return st;
    l->outputs[0]->dims = d;
    l->outputs[0]->dtype = dt;
    return KILN_OK;
}
