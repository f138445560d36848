/* kiln CPU backend: reductions over any set of axes and arg max/min along one axis.
 * Axes are collapsed at prepare into runs of kept and reduced dimensions so that the
 * inner loop is either a contiguous reduction or a contiguous vector of accumulators.
 * Float inputs (float32, float16, float64) accumulate in double; integers (int8, uint8,
 * int32, int64) in 64 bits that wrap like the output type. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/half.h"
#include "cpu/cpu.h"

#define RED_GRAIN 16384   /* input elements per thread at least */
#define RED_BLOCK 256     /* accumulators kept on the stack when the innermost axis is kept */
#define RED_MAX_PARTS 64  /* pieces a single long contiguous reduction is cut into */
#define RED_SPLIT_MIN 65536
#define RED_SPLIT_ROWS 16 /* at most RED_BLOCK */

/* Accumulation kinds: what is folded in per element. LOG_SUM_EXP runs MAX then EXP. */
enum { K_SUM, K_ABS, K_SQ, K_PROD, K_MAX, K_MIN, K_EXP };

/* double for float input (sums of many floats keep their digits), int64 for integers
 * (wrapping like the output type would). */
typedef union racc {
    double f;
    int64_t i;
} racc;

typedef struct red_plan {
    int nk, nr;                           /* outer kept / outer reduced groups */
    int64_t klen[KILN_MAX_DIMS], kst[KILN_MAX_DIMS];
    int64_t rlen[KILN_MAX_DIMS], rst[KILN_MAX_DIMS];
    int64_t kin;    /* innermost kept run (unit stride), 1 if the innermost axis is reduced */
    int64_t rin;    /* innermost reduced run (unit stride) when kin == 1, else 1 */
    int64_t rows;   /* product of klen: outputs = rows * kin */
    int64_t router; /* product of rlen */
    int64_t count;  /* elements reduced into each output */
    kiln_reduce_op op;
    kiln_dtype dtype;
    bool flt; /* float input: double accumulators */
    int parts; /* > 1: each row's contiguous run is cut into this many pieces */
} red_plan;

/* False if the axes are invalid (inference rejects them; this guards the indexing). */
static bool plan_make(red_plan *p, const kiln_layer *l) {
    const kiln_dims *d = &l->inputs[0]->dims;
    const kg_reduce_params *rp = &l->p.reduce;
    bool red[KILN_MAX_DIMS] = {false};
    if (rp->nb_axes < 0 || rp->nb_axes > KILN_MAX_DIMS) return false;
    for (int i = 0; i < rp->nb_axes; i++) {
        int a = kg_axis(rp->axes[i], d->nb_dims);
        if (a < 0) return false;
        red[a] = true;
    }
    if (rp->nb_axes == 0)
        for (int i = 0; i < d->nb_dims; i++) red[i] = true;
    /* groups of same-kind neighbours, size-1 axes dropped (they change nothing) */
    int ng = 0;
    int64_t glen[KILN_MAX_DIMS];
    bool gred[KILN_MAX_DIMS];
    for (int i = 0; i < d->nb_dims; i++) {
        if (d->d[i] == 1) continue;
        if (ng > 0 && gred[ng - 1] == red[i]) {
            glen[ng - 1] *= d->d[i];
            continue;
        }
        glen[ng] = d->d[i];
        gred[ng] = red[i];
        ng++;
    }
    int64_t gst[KILN_MAX_DIMS], s = 1;
    for (int g = ng - 1; g >= 0; g--) {
        gst[g] = s;
        s *= glen[g];
    }
    memset(p, 0, sizeof *p);
    p->op = rp->op;
    p->dtype = l->inputs[0]->dtype;
    p->flt = p->dtype == KILN_FLOAT32 || p->dtype == KILN_FLOAT16 || p->dtype == KILN_FLOAT64;
    p->kin = p->rin = 1;
    if (ng > 0 && !gred[ng - 1]) p->kin = glen[--ng];
    else if (ng > 0) p->rin = glen[--ng];
    p->rows = p->router = 1;
    for (int g = 0; g < ng; g++) {
        if (gred[g]) {
            p->rlen[p->nr] = glen[g];
            p->rst[p->nr++] = gst[g];
            p->router *= glen[g];
        } else {
            p->klen[p->nk] = glen[g];
            p->kst[p->nk++] = gst[g];
            p->rows *= glen[g];
        }
    }
    p->count = p->router * p->rin;
    p->parts = 1;
    if (p->kin == 1 && p->nr == 0 && p->rows <= RED_SPLIT_ROWS && p->rin >= RED_SPLIT_MIN)
        p->parts = (int)KILN_MIN(RED_MAX_PARTS, p->rin / (RED_SPLIT_MIN / 2));
    return true;
}

static int first_kind(kiln_reduce_op op) {
    switch (op) {
    case KILN_REDUCE_L1: return K_ABS;
    case KILN_REDUCE_L2:
    case KILN_REDUCE_SUM_SQUARE: return K_SQ;
    case KILN_REDUCE_PROD: return K_PROD;
    case KILN_REDUCE_MAX:
    case KILN_REDUCE_LOG_SUM_EXP: return K_MAX;
    case KILN_REDUCE_MIN: return K_MIN;
    default: return K_SUM;
    }
}

static bool dtype_is_float(kiln_dtype t) { return t == KILN_FLOAT32 || t == KILN_FLOAT16 || t == KILN_FLOAT64; }

/* Max and min of an empty set are the type's extremes, as ONNX asks. */
static racc identity(int kind, kiln_dtype t) {
    racc a;
    if (dtype_is_float(t)) {
        a.f = kind == K_PROD ? 1.0 : kind == K_MAX ? -INFINITY : kind == K_MIN ? INFINITY : 0.0;
    } else {
        int64_t lo, hi;
        switch (t) {
        case KILN_INT8: lo = INT8_MIN, hi = INT8_MAX; break;
        case KILN_UINT8: lo = 0, hi = UINT8_MAX; break;
        case KILN_INT32: lo = INT32_MIN, hi = INT32_MAX; break;
        default: lo = INT64_MIN, hi = INT64_MAX; break;
        }
        a.i = kind == K_PROD ? 1 : kind == K_MAX ? lo : kind == K_MIN ? hi : 0;
    }
    return a;
}

/* ---- folding one run of input into accumulators ---- */

#define FMAXN(v, a) (((v) > (a) || (v) != (v)) ? (v) : (a)) /* NaN, once seen, stays */
#define FMINN(v, a) (((v) < (a) || (v) != (v)) ? (v) : (a))

/* Folding for float input of storage type T, each element read as double by LD.
 * fold_vec: acc[k] op= x[k] for k < w (a vector of outputs); m: the per-output shift for
 * K_EXP. fold_run: acc op= the n contiguous x (one output); sums use four lanes to vectorize. */
#define FOLD_FLT(S, T, LD)                                                                                 \
    static void fold_vec_##S(int kind, const T *x, int64_t w, double *acc, const double *m) {              \
        switch (kind) {                                                                                    \
        case K_SUM: for (int64_t k = 0; k < w; k++) acc[k] += LD(x[k]); break;                             \
        case K_ABS: for (int64_t k = 0; k < w; k++) acc[k] += fabs(LD(x[k])); break;                       \
        case K_SQ:                                                                                         \
            for (int64_t k = 0; k < w; k++) {                                                              \
                double v = LD(x[k]);                                                                       \
                acc[k] += v * v;                                                                           \
            }                                                                                              \
            break;                                                                                         \
        case K_PROD: for (int64_t k = 0; k < w; k++) acc[k] *= LD(x[k]); break;                            \
        case K_MAX: for (int64_t k = 0; k < w; k++) acc[k] = FMAXN(LD(x[k]), acc[k]); break;               \
        case K_MIN: for (int64_t k = 0; k < w; k++) acc[k] = FMINN(LD(x[k]), acc[k]); break;               \
        case K_EXP: for (int64_t k = 0; k < w; k++) acc[k] += exp(LD(x[k]) - m[k]); break;                 \
        }                                                                                                  \
    }                                                                                                      \
    static void fold_run_##S(int kind, const T *x, int64_t n, double *acc, const double *m) {              \
        double l0 = 0, l1 = 0, l2 = 0, l3 = 0, a = *acc;                                                   \
        int64_t i = 0;                                                                                     \
        switch (kind) {                                                                                    \
        case K_SUM:                                                                                        \
            for (; i + 4 <= n; i += 4) {                                                                   \
                l0 += LD(x[i]);                                                                            \
                l1 += LD(x[i + 1]);                                                                        \
                l2 += LD(x[i + 2]);                                                                        \
                l3 += LD(x[i + 3]);                                                                        \
            }                                                                                              \
            for (; i < n; i++) l0 += LD(x[i]);                                                             \
            break;                                                                                         \
        case K_ABS:                                                                                        \
            for (; i + 4 <= n; i += 4) {                                                                   \
                l0 += fabs(LD(x[i]));                                                                      \
                l1 += fabs(LD(x[i + 1]));                                                                  \
                l2 += fabs(LD(x[i + 2]));                                                                  \
                l3 += fabs(LD(x[i + 3]));                                                                  \
            }                                                                                              \
            for (; i < n; i++) l0 += fabs(LD(x[i]));                                                       \
            break;                                                                                         \
        case K_SQ:                                                                                         \
            for (; i + 4 <= n; i += 4) {                                                                   \
                double v0 = LD(x[i]), v1 = LD(x[i + 1]), v2 = LD(x[i + 2]), v3 = LD(x[i + 3]);             \
                l0 += v0 * v0;                                                                             \
                l1 += v1 * v1;                                                                             \
                l2 += v2 * v2;                                                                             \
                l3 += v3 * v3;                                                                             \
            }                                                                                              \
            for (; i < n; i++) {                                                                           \
                double v = LD(x[i]);                                                                       \
                l0 += v * v;                                                                               \
            }                                                                                              \
            break;                                                                                         \
        case K_EXP:                                                                                        \
            for (; i < n; i++) l0 += exp(LD(x[i]) - *m);                                                   \
            break;                                                                                         \
        case K_PROD:                                                                                       \
            for (; i < n; i++) a *= LD(x[i]);                                                              \
            *acc = a;                                                                                      \
            return;                                                                                        \
        case K_MAX:                                                                                        \
            for (; i < n; i++) a = FMAXN(LD(x[i]), a);                                                     \
            *acc = a;                                                                                      \
            return;                                                                                        \
        case K_MIN:                                                                                        \
            for (; i < n; i++) a = FMINN(LD(x[i]), a);                                                     \
            *acc = a;                                                                                      \
            return;                                                                                        \
        }                                                                                                  \
        *acc = a + ((l0 + l1) + (l2 + l3));                                                                \
    }
#define LD_F32(v) ((double)(v))
#define LD_F64(v) (v)
#define LD_F16(v) ((double)kiln_half_to_float(v))
FOLD_FLT(f32, float, LD_F32)
FOLD_FLT(f64, double, LD_F64)
FOLD_FLT(f16, uint16_t, LD_F16)

static void combine_float(int kind, racc *acc, racc part) {
    switch (kind) {
    case K_PROD: acc->f *= part.f; break;
    case K_MAX: acc->f = FMAXN(part.f, acc->f); break;
    case K_MIN: acc->f = FMINN(part.f, acc->f); break;
    default: acc->f += part.f; break;
    }
}

/* Integers: SUM, PROD, MAX, MIN, wrapping through unsigned arithmetic. */
#define FOLD_INT(S, T)                                                                                     \
    static void fold_vec_##S(int kind, const T *x, int64_t w, int64_t *acc) {                              \
        uint64_t *u = (uint64_t *)acc;                                                                     \
        switch (kind) {                                                                                    \
        case K_SUM: for (int64_t k = 0; k < w; k++) u[k] += (uint64_t)x[k]; break;                         \
        case K_PROD: for (int64_t k = 0; k < w; k++) u[k] *= (uint64_t)x[k]; break;                        \
        case K_MAX: for (int64_t k = 0; k < w; k++) acc[k] = x[k] > acc[k] ? x[k] : acc[k]; break;         \
        case K_MIN: for (int64_t k = 0; k < w; k++) acc[k] = x[k] < acc[k] ? x[k] : acc[k]; break;         \
        default: break;                                                                                    \
        }                                                                                                  \
    }                                                                                                      \
    static void fold_run_##S(int kind, const T *x, int64_t n, int64_t *acc) {                              \
        uint64_t u = (uint64_t)*acc;                                                                       \
        int64_t a = *acc;                                                                                  \
        switch (kind) {                                                                                    \
        case K_SUM: for (int64_t i = 0; i < n; i++) u += (uint64_t)x[i]; *acc = (int64_t)u; break;         \
        case K_PROD: for (int64_t i = 0; i < n; i++) u *= (uint64_t)x[i]; *acc = (int64_t)u; break;        \
        case K_MAX: for (int64_t i = 0; i < n; i++) a = x[i] > a ? x[i] : a; *acc = a; break;              \
        case K_MIN: for (int64_t i = 0; i < n; i++) a = x[i] < a ? x[i] : a; *acc = a; break;              \
        default: break;                                                                                    \
        }                                                                                                  \
    }
FOLD_INT(i8, int8_t)
FOLD_INT(u8, uint8_t)
FOLD_INT(i32, int32_t)
FOLD_INT(i64, int64_t)

static void combine_int(int kind, racc *acc, racc part) {
    switch (kind) {
    case K_PROD: acc->i = (int64_t)((uint64_t)acc->i * (uint64_t)part.i); break;
    case K_MAX: acc->i = part.i > acc->i ? part.i : acc->i; break;
    case K_MIN: acc->i = part.i < acc->i ? part.i : acc->i; break;
    default: acc->i = (int64_t)((uint64_t)acc->i + (uint64_t)part.i); break;
    }
}

/* Accumulators of up to RED_BLOCK outputs: a union of arrays, not an array of unions,
 * so the folding loops vectorize. */
typedef union racc_vec {
    double f[RED_BLOCK];
    int64_t i[RED_BLOCK];
} racc_vec;

/* Dispatch on dtype; offsets are in elements of the input type. */
static void fold_vec(const red_plan *p, int kind, const void *x, int64_t off, int64_t w, racc_vec *acc,
                     const racc_vec *m) {
    switch (p->dtype) {
    case KILN_FLOAT32: fold_vec_f32(kind, (const float *)x + off, w, acc->f, m ? m->f : NULL); break;
    case KILN_FLOAT64: fold_vec_f64(kind, (const double *)x + off, w, acc->f, m ? m->f : NULL); break;
    case KILN_FLOAT16: fold_vec_f16(kind, (const uint16_t *)x + off, w, acc->f, m ? m->f : NULL); break;
    case KILN_INT8: fold_vec_i8(kind, (const int8_t *)x + off, w, acc->i); break;
    case KILN_UINT8: fold_vec_u8(kind, (const uint8_t *)x + off, w, acc->i); break;
    case KILN_INT32: fold_vec_i32(kind, (const int32_t *)x + off, w, acc->i); break;
    default: fold_vec_i64(kind, (const int64_t *)x + off, w, acc->i); break;
    }
}

/* One output: af (float input) or ai (integers) is its accumulator, mf its shift. */
static void fold_run(const red_plan *p, int kind, const void *x, int64_t off, int64_t n, double *af, int64_t *ai,
                     const double *mf) {
    switch (p->dtype) {
    case KILN_FLOAT32: fold_run_f32(kind, (const float *)x + off, n, af, mf); break;
    case KILN_FLOAT64: fold_run_f64(kind, (const double *)x + off, n, af, mf); break;
    case KILN_FLOAT16: fold_run_f16(kind, (const uint16_t *)x + off, n, af, mf); break;
    case KILN_INT8: fold_run_i8(kind, (const int8_t *)x + off, n, ai); break;
    case KILN_UINT8: fold_run_u8(kind, (const uint8_t *)x + off, n, ai); break;
    case KILN_INT32: fold_run_i32(kind, (const int32_t *)x + off, n, ai); break;
    default: fold_run_i64(kind, (const int64_t *)x + off, n, ai); break;
    }
}

/* double -> half with a single rounding: round to float with round-to-odd (float keeps more
 * than 11 + 2 bits, so the final round to nearest even cannot be a double rounding). */
static inline uint16_t half_from_double(double v) {
    float f = (float)v;
    if ((double)f != v && isfinite(f)) {
        uint32_t b;
        memcpy(&b, &f, 4);
        if (!(b & 1)) f = nextafterf(f, v > (double)f ? INFINITY : -INFINITY);
    }
    return kiln_float_to_half(f);
}

/* The output of a float reduction from its accumulator; *m: the maximum of LOG_SUM_EXP
 * (read for that op only). */
static inline double finish_value(const red_plan *p, double a, const double *m) {
    switch (p->op) {
    case KILN_REDUCE_MEAN: return a / (double)p->count;
    case KILN_REDUCE_L2: return sqrt(a);
    case KILN_REDUCE_LOG_SUM: return log(a);
    case KILN_REDUCE_LOG_SUM_EXP: return isfinite(*m) ? *m + log(a) : *m;
    default: return a;
    }
}

/* Writes w finished outputs. m: the maxima of LOG_SUM_EXP. Integers keep the low bits of
 * their wrapped 64-bit results. */
static void finish(const red_plan *p, const racc_vec *acc, const racc_vec *m, void *out, int64_t at, int64_t w) {
    switch (p->dtype) {
    case KILN_FLOAT32:
        for (int64_t k = 0; k < w; k++) ((float *)out)[at + k] = (float)finish_value(p, acc->f[k], &m->f[k]);
        break;
    case KILN_FLOAT64:
        for (int64_t k = 0; k < w; k++) ((double *)out)[at + k] = finish_value(p, acc->f[k], &m->f[k]);
        break;
    case KILN_FLOAT16:
        for (int64_t k = 0; k < w; k++)
            ((uint16_t *)out)[at + k] = half_from_double(finish_value(p, acc->f[k], &m->f[k]));
        break;
    case KILN_INT8:
        for (int64_t k = 0; k < w; k++) ((int8_t *)out)[at + k] = (int8_t)(uint8_t)(uint64_t)acc->i[k];
        break;
    case KILN_UINT8:
        for (int64_t k = 0; k < w; k++) ((uint8_t *)out)[at + k] = (uint8_t)(uint64_t)acc->i[k];
        break;
    case KILN_INT32:
        for (int64_t k = 0; k < w; k++) ((int32_t *)out)[at + k] = (int32_t)acc->i[k];
        break;
    default: memcpy((int64_t *)out + at, acc->i, (size_t)w * sizeof(int64_t)); break;
    }
}

/* ---- the walk ---- */

typedef struct red_job {
    const red_plan *p;
    const void *in;
    void *out;
    int64_t nblk; /* column blocks per row when kin > 1 */
    racc *part;   /* split path: rows * parts partial results, then rows maxima */
    int kind;     /* split path: the pass being run */
} red_job;

/* Input offset of the first element of kept row `row`. */
static int64_t row_base(const red_plan *p, int64_t row) {
    int64_t off = 0;
    for (int g = p->nk - 1; g >= 0; g--) {
        off += (row % p->klen[g]) * p->kst[g];
        row /= p->klen[g];
    }
    return off;
}

/* One pass of `kind` over every reduced position of w outputs starting at column k0. */
static void fold_all(const red_plan *p, int kind, const void *x, int64_t base, int64_t k0, int64_t w, racc_vec *acc,
                     const racc_vec *m) {
    racc id = identity(kind, p->dtype);
    for (int64_t k = 0; k < w; k++) {
        if (p->flt) acc->f[k] = id.f;
        else acc->i[k] = id.i;
    }
    int64_t idx[KILN_MAX_DIMS] = {0}, roff = 0;
    for (int64_t t = 0; t < p->router; t++) {
        if (p->kin > 1) fold_vec(p, kind, x, base + roff + k0, w, acc, m);
        else fold_run(p, kind, x, base + roff, p->rin, &acc->f[0], &acc->i[0], m ? &m->f[0] : NULL);
        for (int g = p->nr - 1; g >= 0; g--) { /* odometer over the outer reduced groups */
            roff += p->rst[g];
            if (++idx[g] < p->rlen[g]) break;
            roff -= p->rlen[g] * p->rst[g];
            idx[g] = 0;
        }
    }
}

static void red_units(void *arg, int64_t b, int64_t e) {
    const red_job *j = arg;
    const red_plan *p = j->p;
    racc_vec acc, m;
    for (int64_t u = b; u < e; u++) {
        int64_t row = u / j->nblk, k0 = (u % j->nblk) * RED_BLOCK;
        int64_t w = KILN_MIN(RED_BLOCK, p->kin - k0);
        int64_t base = row_base(p, row);
        if (p->op == KILN_REDUCE_LOG_SUM_EXP) {
            fold_all(p, K_MAX, j->in, base, k0, w, &m, NULL);
            fold_all(p, K_EXP, j->in, base, k0, w, &acc, &m);
        } else {
            fold_all(p, first_kind(p->op), j->in, base, k0, w, &acc, NULL);
        }
        finish(p, &acc, &m, j->out, row * p->kin + k0, w);
    }
}

/* Split path: unit = (row, piece) of a long contiguous run. */
static void red_parts(void *arg, int64_t b, int64_t e) {
    const red_job *j = arg;
    const red_plan *p = j->p;
    const racc *maxima = j->part + p->rows * p->parts;
    for (int64_t u = b; u < e; u++) {
        int64_t row = u / p->parts, piece = u % p->parts;
        int64_t lo = p->rin * piece / p->parts, hi = p->rin * (piece + 1) / p->parts;
        racc a = identity(j->kind, p->dtype);
        fold_run(p, j->kind, j->in, row_base(p, row) + lo, hi - lo, &a.f, &a.i, &maxima[row].f);
        j->part[u] = a;
    }
}

static void run_split(kcpu_exec *x, red_job *j) {
    const red_plan *p = j->p;
    racc *maxima = j->part + p->rows * p->parts;
    racc_vec acc, m;
    bool lse = p->op == KILN_REDUCE_LOG_SUM_EXP;
    for (int pass = 0; pass < (lse ? 2 : 1); pass++) {
        j->kind = lse ? (pass == 0 ? K_MAX : K_EXP) : first_kind(p->op);
        kcpu_parallel_for(x, p->rows * p->parts, 1, red_parts, j);
        for (int64_t r = 0; r < p->rows; r++) {
            racc a = identity(j->kind, p->dtype);
            for (int k = 0; k < p->parts; k++) {
                if (p->flt) combine_float(j->kind, &a, j->part[r * p->parts + k]);
                else combine_int(j->kind, &a, j->part[r * p->parts + k]);
            }
            if (lse && pass == 0) {
                maxima[r] = a;
                m.f[r] = a.f;
            } else if (p->flt) {
                acc.f[r] = a.f;
            } else {
                acc.i[r] = a.i;
            }
        }
    }
    finish(p, &acc, &m, j->out, 0, p->rows);
}

static kiln_status red_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    kiln_dtype t = l->inputs[0]->dtype;
    kiln_reduce_op op = l->p.reduce.op;
    bool int_ok = op == KILN_REDUCE_SUM || op == KILN_REDUCE_MAX || op == KILN_REDUCE_MIN || op == KILN_REDUCE_PROD;
    bool int_t = t == KILN_INT8 || t == KILN_UINT8 || t == KILN_INT32 || t == KILN_INT64;
    if ((unsigned)op >= KILN_REDUCE_COUNT || !(dtype_is_float(t) || (int_ok && int_t)))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for reduce op %d on %s (%s)", (int)op,
                              kiln_dtype_name(t),
                              int_ok ? "float32, float16, float64, int8, uint8, int32 or int64"
                                     : "float32, float16 or float64");
    if (l->outputs[0]->dtype != t)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "output is %s but the input is %s",
                              kiln_dtype_name(l->outputs[0]->dtype), kiln_dtype_name(t));
    red_plan *p = kiln_alloc(env, sizeof *p);
    if (!p) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!plan_make(p, l)) {
        kiln_free(env, p);
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "invalid reduce axes");
    }
    *scratch = p->parts > 1 ? (size_t)(p->rows * (p->parts + 1)) * sizeof(racc) : 0;
    *state = p;
    return KILN_OK;
}

static kiln_status red_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           kcpu_exec *x) {
    (void)l;
    const red_plan *p = state;
    red_job j = {p, in[0], out[0], (p->kin + RED_BLOCK - 1) / RED_BLOCK, NULL, 0};
    if (p->rows == 0 || p->kin == 0) return KILN_OK;
    if (p->parts > 1) {
        j.part = kcpu_scratch(x);
        run_split(x, &j);
        return KILN_OK;
    }
    int64_t units = p->rows * j.nblk;
    int64_t work = KILN_MAX(1, p->count * KILN_MIN(p->kin, RED_BLOCK));
    kcpu_parallel_for(x, units, KILN_MAX(1, RED_GRAIN / work), red_units, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_reduce = {red_prepare, red_run, NULL};

/* ---- arg max / arg min along one axis ---- */

typedef struct arg_job {
    const kiln_layer *l;
    const void *in;
    int64_t *out;
    int64_t len, inner, nblk;
} arg_job;

/* Ties go to the first index unless select_last; NaN counts as the extreme (numpy). */
#define BETTER(v, b, is_min, last)                                                                         \
    ((last) ? ((is_min) ? (v) <= (b) : (v) >= (b)) || (v) != (v)                                           \
            : ((is_min) ? (v) < (b) : (v) > (b)) || ((v) != (v) && (b) == (b)))

/* T: storage type, C: compared as (float16 as float: exact), LD: T -> C. */
#define ARG_FN(S, T, C, LD)                                                                                \
    static void arg_##S(const arg_job *j, int64_t b, int64_t e, int is_min, int last) {                    \
        const T *x0 = j->in;                                                                               \
        const int64_t L = j->len, inner = j->inner;                                                        \
        C best[RED_BLOCK];                                                                                 \
        int64_t at[RED_BLOCK];                                                                             \
        for (int64_t u = b; u < e; u++) {                                                                  \
            int64_t o = u / j->nblk, k0 = (u % j->nblk) * RED_BLOCK;                                       \
            int64_t w = KILN_MIN(RED_BLOCK, inner - k0);                                                   \
            const T *x = x0 + o * L * inner + k0;                                                          \
            for (int64_t k = 0; k < w; k++) {                                                              \
                best[k] = LD(x[k]);                                                                        \
                at[k] = 0;                                                                                 \
            }                                                                                              \
            for (int64_t i = 1; i < L; i++) {                                                              \
                const T *xi = x + i * inner;                                                               \
                for (int64_t k = 0; k < w; k++) {                                                          \
                    const C v = LD(xi[k]);                                                                 \
                    bool take = BETTER(v, best[k], is_min, last);                                          \
                    best[k] = take ? v : best[k];                                                          \
                    at[k] = take ? i : at[k];                                                              \
                }                                                                                          \
            }                                                                                              \
            memcpy(j->out + o * inner + k0, at, (size_t)w * sizeof(int64_t));                             \
        }                                                                                                  \
    }
#define LD_SAME(v) (v)
ARG_FN(f32, float, float, LD_SAME)
ARG_FN(f64, double, double, LD_SAME)
ARG_FN(f16, uint16_t, float, kiln_half_to_float)
ARG_FN(i8, int8_t, int8_t, LD_SAME)
ARG_FN(u8, uint8_t, uint8_t, LD_SAME)
ARG_FN(i32, int32_t, int32_t, LD_SAME)
ARG_FN(i64, int64_t, int64_t, LD_SAME)

static void arg_units(void *arg, int64_t b, int64_t e) {
    const arg_job *j = arg;
    const kg_arg_params *p = &j->l->p.arg;
    int is_min = p->is_min != 0, last = p->select_last != 0;
    switch (j->l->inputs[0]->dtype) {
    case KILN_FLOAT32: arg_f32(j, b, e, is_min, last); break;
    case KILN_FLOAT64: arg_f64(j, b, e, is_min, last); break;
    case KILN_FLOAT16: arg_f16(j, b, e, is_min, last); break;
    case KILN_INT8: arg_i8(j, b, e, is_min, last); break;
    case KILN_UINT8: arg_u8(j, b, e, is_min, last); break;
    case KILN_INT32: arg_i32(j, b, e, is_min, last); break;
    default: arg_i64(j, b, e, is_min, last); break;
    }
}

static kiln_status arg_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env;
    *state = NULL;
    *scratch = 0;
    kiln_dtype t = l->inputs[0]->dtype;
    if (!(dtype_is_float(t) || t == KILN_INT8 || t == KILN_UINT8 || t == KILN_INT32 || t == KILN_INT64) ||
        kg_axis(l->p.arg.axis, l->inputs[0]->dims.nb_dims) < 0)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for arg reduce on %s", kiln_dtype_name(t));
    return KILN_OK;
}

static kiln_status arg_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           kcpu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int axis = kg_axis(l->p.arg.axis, d->nb_dims);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= d->d[i];
    for (int i = axis + 1; i < d->nb_dims; i++) inner *= d->d[i];
    arg_job j = {l, in[0], out[0], d->d[axis], inner, (inner + RED_BLOCK - 1) / RED_BLOCK};
    if (outer == 0 || inner == 0 || j.len == 0) return KILN_OK;
    int64_t work = KILN_MAX(1, j.len * KILN_MIN(inner, RED_BLOCK));
    kcpu_parallel_for(x, outer * j.nblk, KILN_MAX(1, RED_GRAIN / work), arg_units, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_arg_reduce = {arg_prepare, arg_run, NULL};
