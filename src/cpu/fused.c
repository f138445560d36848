/* kiln CPU backend: a fused region (src/graph/fused.h), the reference for the CUDA kernel.
 * Each piece's maps become element strides of row-major tensors once at prepare; a run
 * walks the piece's box row by row (rows split over the threads) and evaluates the
 * program for every element in float32. */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "cpu/cpu.h"
#include "graph/fused.h"

typedef struct fz_piece {
    int ni, nb_loads, nb_instrs;
    int64_t ext[KF_MAX_IT];
    int64_t oc[KF_MAX_IT], ob;                            /* output strides, base */
    int64_t lc[KF_MAX_LOADS][KF_MAX_IT], lb[KF_MAX_LOADS]; /* per load */
    int lt[KF_MAX_LOADS];                                 /* the input it reads */
    kf_instr prog[KF_MAX_PROG];
} fz_piece;

typedef struct fz_state {
    int nb_pieces;
    bool f16_out;
    bool *f16_in; /* per input */
    fz_piece *pieces;
} fz_state;

/* Element strides of a map over a row-major tensor of dims d. */
static void strides_of_map(const kf_map *m, const kiln_dims *d, int ni, int64_t *c, int64_t *b) {
    int64_t rs[KILN_MAX_DIMS];
    kg_row_major(d, rs);
    *b = 0;
    for (int j = 0; j < ni; j++) c[j] = 0;
    for (int k = 0; k < m->rank; k++) {
        *b += m->b[k] * rs[k];
        for (int j = 0; j < ni; j++) c[j] += m->a[k][j] * rs[k];
    }
}

static void fz_release(const kiln_env *env, void *state) {
    fz_state *s = state;
    if (!s) return;
    kiln_free(env, s->f16_in);
    kiln_free(env, s->pieces);
    kiln_free(env, s);
}

static kiln_status fz_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    *scratch = 0;
    *state = NULL;
    kf_piece *ps = NULL;
    int n = 0;
    kiln_status st = kf_decode(l, env, &ps, &n, NULL, NULL);
    if (st != KILN_OK) return st;
    fz_state *s = kiln_calloc(env, 1, sizeof *s);
    if (s) {
        s->pieces = kiln_calloc(env, (size_t)n, sizeof *s->pieces);
        s->f16_in = kiln_calloc(env, (size_t)(l->nb_inputs ? l->nb_inputs : 1), sizeof *s->f16_in);
    }
    if (!s || !s->pieces || !s->f16_in) {
        kiln_free(env, ps);
        fz_release(env, s);
        return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory for a fused region");
    }
    s->nb_pieces = n;
    s->f16_out = l->outputs[0]->dtype == KILN_FLOAT16;
    for (int i = 0; i < l->nb_inputs; i++) s->f16_in[i] = l->inputs[i]->dtype == KILN_FLOAT16;
    for (int p = 0; p < n; p++) {
        const kf_piece *src = &ps[p];
        fz_piece *d = &s->pieces[p];
        d->ni = src->ni;
        d->nb_loads = src->nb_loads;
        d->nb_instrs = src->nb_instrs;
        memcpy(d->ext, src->ext, sizeof d->ext);
        memcpy(d->prog, src->prog, sizeof d->prog);
        strides_of_map(&src->out, &l->outputs[0]->dims, src->ni, d->oc, &d->ob);
        for (int k = 0; k < src->nb_loads; k++) {
            d->lt[k] = src->loads[k].tensor;
            strides_of_map(&src->loads[k], &l->inputs[d->lt[k]]->dims, src->ni, d->lc[k], &d->lb[k]);
        }
    }
    kiln_free(env, ps);
    *state = s;
    return KILN_OK;
}

static inline float fz_bin(int op, float a, float b) {
    switch (op) {
    case KILN_ELT_ADD: return a + b;
    case KILN_ELT_SUB: return a - b;
    case KILN_ELT_MUL: return a * b;
    case KILN_ELT_DIV: return a / b;
    case KILN_ELT_MAX: return (a > b || a != a) ? a : b;
    case KILN_ELT_MIN: return (a < b || a != a) ? a : b;
    default: return b == 2.0f ? a * a : powf(a, b); /* KILN_ELT_POW */
    }
}

typedef struct fz_job {
    const fz_state *s;
    const fz_piece *p;
    const void *const *in;
    void *out;
} fz_job;

/* Rows [b, e) of the piece: every box axis but the last. */
static void fz_rows(void *arg, int64_t b, int64_t e) {
    const fz_job *j = arg;
    const fz_piece *p = j->p;
    const int last = p->ni - 1;
    for (int64_t row = b; row < e; row++) {
        int64_t o = p->ob, lo[KF_MAX_LOADS], rest = row;
        for (int k = 0; k < p->nb_loads; k++) lo[k] = p->lb[k];
        for (int a = last - 1; a >= 0; a--) {
            int64_t i = rest % p->ext[a];
            rest /= p->ext[a];
            o += i * p->oc[a];
            for (int k = 0; k < p->nb_loads; k++) lo[k] += i * p->lc[k][a];
        }
        for (int64_t i = 0; i < p->ext[last]; i++) {
            float st[KF_MAX_STACK];
            int sp = 0;
            for (int q = 0; q < p->nb_instrs; q++) {
                const kf_instr *in = &p->prog[q];
                switch (in->op) {
                case KF_LOAD: {
                    int k = in->arg, t = p->lt[k];
                    int64_t at = lo[k] + i * p->lc[k][last];
                    st[sp++] = j->s->f16_in[t] ? kiln_half_to_float(((const uint16_t *)j->in[t])[at])
                                               : ((const float *)j->in[t])[at];
                    break;
                }
                case KF_CONST: st[sp++] = in->f[0]; break;
                case KF_ACT: {
                    kg_act_params a = {(kiln_activation_type)in->arg, in->f[0], in->f[1]};
                    kcpu_act_range(&a, &st[sp - 1], &st[sp - 1], 1);
                    break;
                }
                case KF_SCALE: {
                    float v = st[sp - 1] * in->f[0] + in->f[1];
                    if (in->f[2] != 1.0f) v = in->f[2] == 2.0f ? v * v : powf(v, in->f[2]);
                    st[sp - 1] = v;
                    break;
                }
                case KF_ROUND16: st[sp - 1] = kiln_half_to_float(kiln_float_to_half(st[sp - 1])); break;
                default: /* KF_BIN (kf_decode checked every instruction) */
                    sp--;
                    st[sp - 1] = fz_bin(in->arg, st[sp - 1], st[sp]);
                    break;
                }
            }
            int64_t at = o + i * p->oc[last];
            if (j->s->f16_out) ((uint16_t *)j->out)[at] = kiln_float_to_half(st[0]);
            else ((float *)j->out)[at] = st[0];
        }
    }
}

static kiln_status fz_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                          kcpu_exec *x) {
    (void)l;
    const fz_state *s = state;
    for (int p = 0; p < s->nb_pieces; p++) {
        const fz_piece *pc = &s->pieces[p];
        int64_t rows = 1;
        for (int a = 0; a + 1 < pc->ni; a++) rows *= pc->ext[a];
        fz_job j = {s, pc, in, out[0]};
        int64_t grain = 4096 / (pc->ext[pc->ni - 1] < 1 ? 1 : pc->ext[pc->ni - 1]) + 1;
        kcpu_parallel_for(x, rows, grain, fz_rows, &j);
    }
    return KILN_OK;
}

const kcpu_kernel kcpu_fused = {fz_prepare, fz_run, fz_release};
