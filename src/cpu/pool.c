/* kiln CPU backend: max and average pooling (windowed and global), NCHW; rank-3 (NCW)
 * tensors run as N, C, 1, W. Window bounds are tabulated at prepare so the run loops have no
 * divisions or bound checks. float32 has separable fast paths; float16 and float64 (max and
 * average) and int8 and uint8 (max) have plain window loops of their own. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "cpu/cpu.h"

typedef struct pool_state {
    int64_t planes, h, w, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw, pt, pl;
    bool max, global;
    kiln_dtype dtype;
    /* per output row / column: valid taps [lo, hi) and the divisor factor */
    int64_t *ilo, *ihi, *jlo, *jhi;
    float *hdiv, *wdiv;
    /* per kernel column: the output columns where that tap is inside the input; [tj0, tj1):
     * the columns from the first such tap to the last (a window far wider than its padded
     * input has millions of taps that reach nothing) */
    int64_t *tlo, *thi;
    int64_t tj0, tj1;
    /* 1 / divisor factors (0 where no tap counts) */
    float *hinv, *winv;
} pool_state;

/* Rows up to this width are pooled separably (rows first, then columns) through a stack
 * buffer; wider ones window by window. */
#define ROW_MAX 4096

/* The t in [0, count) with 0 <= t*stride + off < limit, as [*lo, *hi). */
static void tap_range(int64_t off, int64_t stride, int64_t limit, int64_t count, int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t b = limit - off > 0 ? (limit - off + stride - 1) / stride : 0;
    if (b > count) b = count;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* Fills the tables of one axis. With count_include_pad the divisor counts the taps that
 * fall inside the padded extent [-pad_begin, in + pad_end) (not those beyond it that ceil
 * mode adds), as ONNX Runtime and PyTorch do; otherwise only the taps inside the input. */
static void axis_tables(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe,
                        bool include_pad, int64_t *lo, int64_t *hi, float *cnt) {
    for (int64_t o = 0; o < out; o++) {
        tap_range(o * s - pb, d, in, k, &lo[o], &hi[o]);
        int64_t plo, phi;
        tap_range(o * s, d, in + pb + pe, k, &plo, &phi);
        cnt[o] = (float)(include_pad ? phi - plo : hi[o] - lo[o]);
    }
}

static kiln_status pool_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_pool_desc *d = &l->p.pool;
    const kiln_dims *in = &l->inputs[0]->dims, *out = &l->outputs[0]->dims;
    kiln_dtype t = l->inputs[0]->dtype;
    bool is_float = t == KILN_FLOAT32 || t == KILN_FLOAT16 || t == KILN_FLOAT64;
    bool is_int = t == KILN_INT8 || t == KILN_UINT8;
    if (!is_float && !(is_int && d->type == KILN_POOL_MAX))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for %s pooling of %s (%s)",
                              d->type == KILN_POOL_MAX ? "max" : "average", kiln_dtype_name(t),
                              d->type == KILN_POOL_MAX ? "float32, float16, float64, int8 or uint8"
                                                       : "float32, float16 or float64");
    if (l->outputs[0]->dtype != t)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "output is %s but the input is %s",
                              kiln_dtype_name(l->outputs[0]->dtype), kiln_dtype_name(t));
    bool r3 = in->nb_dims == 3;
    int64_t oh = r3 ? 1 : out->d[2], ow = out->d[r3 ? 2 : 3];
    size_t head = KILN_ALIGN_UP(sizeof(pool_state), 16);
    int64_t kw = d->kernel[1];
    size_t tables = d->global ? 0
                              : (size_t)(oh + ow) * (2 * sizeof(int64_t) + 2 * sizeof(float)) +
                                    (size_t)kw * 2 * sizeof(int64_t);
    pool_state *s = kiln_alloc(env, head + tables);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    memset(s, 0, sizeof *s);
    s->planes = in->d[0] * in->d[1];
    s->h = r3 ? 1 : in->d[2];
    s->w = in->d[r3 ? 2 : 3];
    s->oh = oh;
    s->ow = ow;
    s->max = d->type == KILN_POOL_MAX;
    s->global = d->global != 0;
    s->dtype = t;
    *scratch = 0;
    *state = s;
    if (s->global) return KILN_OK;
    s->kh = r3 ? 1 : d->kernel[0];
    s->kw = d->kernel[1];
    s->sh = r3 ? 1 : d->stride[0];
    s->sw = d->stride[1];
    s->dh = r3 ? 1 : d->dilation[0];
    s->dw = d->dilation[1];
    s->pt = r3 ? 0 : d->pad_begin[0];
    s->pl = d->pad_begin[1];
    int64_t pb = r3 ? 0 : d->pad_end[0], pr = d->pad_end[1];
    char *p = (char *)s + head;
    s->ilo = (int64_t *)p;
    s->ihi = s->ilo + oh;
    s->jlo = s->ihi + oh;
    s->jhi = s->jlo + ow;
    s->tlo = s->jhi + ow;
    s->thi = s->tlo + s->kw;
    s->hdiv = (float *)(s->thi + s->kw);
    s->wdiv = s->hdiv + oh;
    s->hinv = s->wdiv + ow;
    s->winv = s->hinv + oh;
    bool inc = d->count_include_pad != 0;
    axis_tables(s->h, oh, s->kh, s->sh, s->dh, s->pt, pb, inc, s->ilo, s->ihi, s->hdiv);
    axis_tables(s->w, ow, s->kw, s->sw, s->dw, s->pl, pr, inc, s->jlo, s->jhi, s->wdiv);
    /* only taps whose offset j*dw - pl lies in [-(ow-1)*sw, w) can reach the input; the
     * others' table entries are never read */
    int64_t big = INT64_MAX / 4;
    int64_t reach = ow > 1 && s->sw > big / (ow - 1) ? big : (ow - 1) * s->sw;
    int64_t first = s->pl - reach <= 0 ? 0 : (s->pl - reach + s->dw - 1) / s->dw;
    int64_t last = s->pl > big ? s->kw : (s->pl + s->w - 1) / s->dw + 1;
    if (last > s->kw) last = s->kw;
    s->tj0 = s->kw;
    s->tj1 = 0;
    for (int64_t j = first; j < last; j++) {
        tap_range(j * s->dw - s->pl, s->sw, s->w, ow, &s->tlo[j], &s->thi[j]);
        if (s->tlo[j] < s->thi[j]) {
            if (s->tj0 > j) s->tj0 = j;
            s->tj1 = j + 1;
        }
    }
    for (int64_t i = 0; i < oh; i++) s->hinv[i] = s->hdiv[i] > 0 ? 1.0f / s->hdiv[i] : 0.0f;
    for (int64_t i = 0; i < ow; i++) s->winv[i] = s->wdiv[i] > 0 ? 1.0f / s->wdiv[i] : 0.0f;
    return KILN_OK;
}

typedef struct pool_job {
    const pool_state *s;
    const void *x;
    void *y;
} pool_job;

/* NaN propagates through max, as in ONNX Runtime and PyTorch. */
static inline float max_nan(float r, float v) { return (v > r || v != v) ? v : r; }

/* Separable pooling of one output row: the valid input rows are reduced into `row`
 * (contiguous, vectorizable), then each kernel column adds its taps over the output columns
 * where it is inside. */
static void pool_row_separable(const pool_state *s, const float *xs, int64_t oh, float *orow, float *row) {
    int64_t i0 = s->ilo[oh], i1 = s->ihi[oh], w = s->w, sw = s->sw;
    float init = s->max ? -INFINITY : 0.0f;
    if (i0 >= i1) { /* only reachable with dilated windows whose taps all miss the input */
        for (int64_t t = 0; t < s->ow; t++) orow[t] = init;
        return;
    }
    const float *first = xs + (oh * s->sh - s->pt + i0 * s->dh) * w;
    memcpy(row, first, (size_t)w * sizeof(float));
    for (int64_t i = i0 + 1; i < i1; i++) {
        const float *xr = xs + (oh * s->sh - s->pt + i * s->dh) * w;
        if (s->max)
            for (int64_t t = 0; t < w; t++) row[t] = max_nan(row[t], xr[t]);
        else
            for (int64_t t = 0; t < w; t++) row[t] += xr[t];
    }
    for (int64_t t = 0; t < s->ow; t++) orow[t] = init;
    for (int64_t jj = s->tj0; jj < s->tj1; jj++) {
        int64_t lo = s->tlo[jj], hi = s->thi[jj];
        const float *src = row + jj * s->dw - s->pl; /* indexed from lo, inside the row */
        if (s->max) {
            if (sw == 1)
                for (int64_t t = lo; t < hi; t++) orow[t] = max_nan(orow[t], src[t]);
            else
                for (int64_t t = lo; t < hi; t++) orow[t] = max_nan(orow[t], src[t * sw]);
        } else {
            if (sw == 1)
                for (int64_t t = lo; t < hi; t++) orow[t] += src[t];
            else
                for (int64_t t = lo; t < hi; t++) orow[t] += src[t * sw];
        }
    }
    if (!s->max) {
        float rh = s->hinv[oh];
        for (int64_t t = 0; t < s->ow; t++) orow[t] *= rh * s->winv[t];
    }
}

static void pool_planes(void *arg, int64_t p0, int64_t p1) {
    const pool_job *j = arg;
    const pool_state *s = j->s;
    int64_t hw = s->h * s->w, ohw = s->oh * s->ow;
    for (int64_t p = p0; p < p1; p++) {
        const float *xs = (const float *)j->x + p * hw;
        float *o = (float *)j->y + p * ohw;
        if (s->w <= ROW_MAX) {
            float row[ROW_MAX];
            for (int64_t oh = 0; oh < s->oh; oh++) pool_row_separable(s, xs, oh, o + oh * s->ow, row);
            continue;
        }
        for (int64_t oh = 0; oh < s->oh; oh++) {
            const float *row0 = xs + (oh * s->sh - s->pt) * s->w; /* may point before xs: only offset from */
            int64_t i0 = s->ilo[oh], i1 = s->ihi[oh];
            for (int64_t ow = 0; ow < s->ow; ow++) {
                int64_t j0 = s->jlo[ow], j1 = s->jhi[ow], c0 = ow * s->sw - s->pl;
                float r;
                if (s->max) {
                    r = -INFINITY;
                    for (int64_t i = i0; i < i1; i++) {
                        const float *xr = row0 + i * s->dh * s->w + c0;
                        for (int64_t jj = j0; jj < j1; jj++) {
                            r = max_nan(r, xr[jj * s->dw]);
                        }
                    }
                } else {
                    float acc = 0.0f;
                    for (int64_t i = i0; i < i1; i++) {
                        const float *xr = row0 + i * s->dh * s->w + c0;
                        for (int64_t jj = j0; jj < j1; jj++) acc += xr[jj * s->dw];
                    }
                    float div = s->hdiv[oh] * s->wdiv[ow];
                    r = div > 0 ? acc / div : 0.0f;
                }
                o[oh * s->ow + ow] = r;
            }
        }
    }
}

static void global_planes(void *arg, int64_t p0, int64_t p1) {
    const pool_job *j = arg;
    const pool_state *s = j->s;
    int64_t hw = s->h * s->w;
    for (int64_t p = p0; p < p1; p++) {
        const float *xs = (const float *)j->x + p * hw;
        if (s->max) {
            float r = -INFINITY;
            for (int64_t i = 0; i < hw; i++)
                if (xs[i] > r || xs[i] != xs[i]) r = xs[i];
            ((float *)j->y)[p] = r;
        } else {
            /* four double partial sums: accurate over large planes and still pipelined */
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            int64_t i = 0;
            for (; i + 4 <= hw; i += 4) {
                a0 += xs[i];
                a1 += xs[i + 1];
                a2 += xs[i + 2];
                a3 += xs[i + 3];
            }
            for (; i < hw; i++) a0 += xs[i];
            ((float *)j->y)[p] = (float)(((a0 + a1) + (a2 + a3)) / (double)hw);
        }
    }
}

/* ---- other dtypes: window by window over the same tables ----
 * Max compares in the compute type A (exact: the result is one of the inputs); averages sum
 * in double and round once to the output type. A window whose taps all miss the input gives
 * LOWEST (max) or 0 (average), as the float32 path does. Rows are addressed by element
 * offsets (at + jj * dw is inside the input for jj in [j0, j1), at alone may not be). */

/* NaN propagates through max; for integers v != v is false and folds away. */
#define MAX_NAN(r, v) (((v) > (r) || (v) != (v)) ? (v) : (r))

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
#define LD_ID(v) (v)
#define ST_ID(v) (v)

#define POOL_MAX_FN(S, T, A, LD, ST, LOWEST)                                                              \
    static void max_planes_##S(void *arg, int64_t p0, int64_t p1) {                                        \
        const pool_job *j = arg;                                                                           \
        const pool_state *s = j->s;                                                                        \
        const int64_t hw = s->h * s->w, ohw = s->oh * s->ow;                                               \
        for (int64_t p = p0; p < p1; p++) {                                                                \
            const T *xs = (const T *)j->x + p * hw;                                                        \
            T *o = (T *)j->y + p * ohw;                                                                    \
            for (int64_t oh = 0; oh < s->oh; oh++) {                                                       \
                int64_t i0 = s->ilo[oh], i1 = s->ihi[oh], r0 = oh * s->sh - s->pt;                         \
                for (int64_t ow = 0; ow < s->ow; ow++) {                                                   \
                    int64_t j0 = s->jlo[ow], j1 = s->jhi[ow], c0 = ow * s->sw - s->pl;                     \
                    A r = LOWEST;                                                                          \
                    for (int64_t i = i0; i < i1; i++) {                                                    \
                        const int64_t at = (r0 + i * s->dh) * s->w + c0;                                   \
                        for (int64_t jj = j0; jj < j1; jj++) {                                             \
                            A v = LD(xs[at + jj * s->dw]);                                                 \
                            r = MAX_NAN(r, v);                                                             \
                        }                                                                                  \
                    }                                                                                      \
                    o[oh * s->ow + ow] = ST(r);                                                            \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
    static void gmax_planes_##S(void *arg, int64_t p0, int64_t p1) {                                       \
        const pool_job *j = arg;                                                                           \
        const int64_t hw = j->s->h * j->s->w;                                                              \
        for (int64_t p = p0; p < p1; p++) {                                                                \
            const T *xs = (const T *)j->x + p * hw;                                                        \
            A r = LOWEST;                                                                                  \
            for (int64_t i = 0; i < hw; i++) {                                                             \
                A v = LD(xs[i]);                                                                           \
                r = MAX_NAN(r, v);                                                                         \
            }                                                                                              \
            ((T *)j->y)[p] = ST(r);                                                                        \
        }                                                                                                  \
    }

#define POOL_AVG_FN(S, T, LD, ST)                                                                          \
    static void avg_planes_##S(void *arg, int64_t p0, int64_t p1) {                                        \
        const pool_job *j = arg;                                                                           \
        const pool_state *s = j->s;                                                                        \
        const int64_t hw = s->h * s->w, ohw = s->oh * s->ow;                                               \
        for (int64_t p = p0; p < p1; p++) {                                                                \
            const T *xs = (const T *)j->x + p * hw;                                                        \
            T *o = (T *)j->y + p * ohw;                                                                    \
            for (int64_t oh = 0; oh < s->oh; oh++) {                                                       \
                int64_t i0 = s->ilo[oh], i1 = s->ihi[oh], r0 = oh * s->sh - s->pt;                         \
                for (int64_t ow = 0; ow < s->ow; ow++) {                                                   \
                    int64_t j0 = s->jlo[ow], j1 = s->jhi[ow], c0 = ow * s->sw - s->pl;                     \
                    double acc = 0;                                                                        \
                    for (int64_t i = i0; i < i1; i++) {                                                    \
                        const int64_t at = (r0 + i * s->dh) * s->w + c0;                                   \
                        for (int64_t jj = j0; jj < j1; jj++) acc += (double)LD(xs[at + jj * s->dw]);       \
                    }                                                                                      \
                    double div = (double)s->hdiv[oh] * (double)s->wdiv[ow];                                \
                    o[oh * s->ow + ow] = ST(div > 0 ? acc / div : 0.0);                                    \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
    static void gavg_planes_##S(void *arg, int64_t p0, int64_t p1) {                                       \
        const pool_job *j = arg;                                                                           \
        const int64_t hw = j->s->h * j->s->w;                                                              \
        for (int64_t p = p0; p < p1; p++) {                                                                \
            const T *xs = (const T *)j->x + p * hw;                                                        \
            double acc = 0;                                                                                \
            for (int64_t i = 0; i < hw; i++) acc += (double)LD(xs[i]);                                     \
            ((T *)j->y)[p] = ST(acc / (double)hw);                                                         \
        }                                                                                                  \
    }

POOL_MAX_FN(f64, double, double, LD_ID, ST_ID, -INFINITY)
POOL_MAX_FN(f16, uint16_t, float, kiln_half_to_float, kiln_float_to_half, -INFINITY)
POOL_MAX_FN(i8, int8_t, int8_t, LD_ID, ST_ID, INT8_MIN)
POOL_MAX_FN(u8, uint8_t, uint8_t, LD_ID, ST_ID, 0)
POOL_AVG_FN(f64, double, LD_ID, ST_ID)
POOL_AVG_FN(f16, uint16_t, kiln_half_to_float, half_from_double)

/* The range function for a layer: float32's own paths, else the typed window loops. */
static kcpu_range_fn pool_fn(const pool_state *s) {
    switch (s->dtype) {
    case KILN_FLOAT64:
        return s->max ? (s->global ? gmax_planes_f64 : max_planes_f64) : (s->global ? gavg_planes_f64 : avg_planes_f64);
    case KILN_FLOAT16:
        return s->max ? (s->global ? gmax_planes_f16 : max_planes_f16) : (s->global ? gavg_planes_f16 : avg_planes_f16);
    case KILN_INT8: return s->global ? gmax_planes_i8 : max_planes_i8;
    case KILN_UINT8: return s->global ? gmax_planes_u8 : max_planes_u8;
    default: return s->global ? global_planes : pool_planes;
    }
}

static kiln_status pool_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            kcpu_exec *x) {
    const pool_state *s = state;
    pool_job j = {s, in[0], out[0]};
    int64_t work = s->global ? s->h * s->w : s->oh * s->ow * s->kh * s->kw;
    int64_t grain = 16384 / (work > 0 ? work : 1);
    kcpu_parallel_for(x, s->planes, grain > 0 ? grain : 1, pool_fn(s), &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_pooling = {pool_prepare, pool_run, NULL};
