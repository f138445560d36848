/* kiln CPU backend: Resize (ONNX semantics), nearest on any dtype and n-linear on
 * float32. Every coordinate is mapped once at prepare into per-axis index/weight
 * tables, so the hot loop does no float coordinate math. */
#include <math.h>
#include <string.h>

#include "cpu/cpu.h"
#include "graph/resize_coord.h"

#define RS_GRAIN_ELEMS 16384

typedef struct rs_state {
    int rank;
    size_t es;
    bool linear;
    int64_t in[KILN_MAX_DIMS], out[KILN_MAX_DIMS];
    /* [out[k]] per axis: element offsets (index * input stride) of the nearest / lower
     * and upper neighbours, and the weight of the upper one (linear) */
    int64_t *i0[KILN_MAX_DIMS], *i1[KILN_MAX_DIMS];
    float *w[KILN_MAX_DIMS];
    bool interp[KILN_MAX_DIMS]; /* linear: the axis really interpolates (not a copy) */
} rs_state;

static kiln_status resize_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_resize_desc *p = &l->p.resize;
    const kiln_dims *in = &l->inputs[0]->dims, *od = &l->outputs[0]->dims;
    bool linear = p->mode == KILN_RESIZE_LINEAR;
    if (linear && l->inputs[0]->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "linear resize of %s data (CPU: float32 only)",
                              kiln_dtype_name(l->inputs[0]->dtype));
    int rank = in->nb_dims;
    if (rank < 1 || od->nb_dims != rank)
        return kg_layer_error(l, KILN_ERR_INTERNAL, "resize of rank %d to rank %d", rank, od->nb_dims);
    /* an empty output needs no tables (its other axes may be huge: a corrupt model) */
    bool empty = kiln_dims_volume(od) == 0;
    int64_t total = 0;
    for (int k = 0; k < rank && !empty; k++) total += od->d[k];
    size_t per = 2 * sizeof(int64_t) + sizeof(float);
    rs_state *s = (size_t)total > (SIZE_MAX - sizeof(rs_state)) / per ? NULL : kiln_alloc(env, sizeof *s + (size_t)total * per);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory preparing resize tables");
    memset(s, 0, sizeof *s);
    s->rank = rank;
    s->es = kiln_dtype_size(l->inputs[0]->dtype);
    s->linear = linear;
    if (empty) { /* resize_run returns at once */
        for (int k = 0; k < rank; k++) s->out[k] = od->d[k];
        *state = s;
        return KILN_OK;
    }
    int64_t *ti = (int64_t *)(s + 1);
    float *tw = (float *)(ti + 2 * total);
    int64_t stride = 1;
    for (int k = rank - 1; k >= 0; k--) {
        int64_t n = in->d[k], m = od->d[k];
        s->in[k] = n;
        s->out[k] = m;
        s->i0[k] = ti;
        s->i1[k] = ti + m;
        s->w[k] = tw;
        ti += 2 * m;
        tw += m;
        /* Given scales define the mapping even when the size was given too (ONNX). */
        double scale = p->nb_scales > 0 ? (double)p->scales[k] : (n > 0 ? (double)m / (double)n : 1.0);
        bool identity = m == n;
        for (int64_t x = 0; x < m; x++) {
            double c = rs_coord(p->coord, (double)x, scale, n, m);
            int64_t a, b;
            float wt = 0.0f;
            if (linear) {
                double f = floor(c);
                a = rs_clamp_index(f, n);
                b = rs_clamp_index(f + 1, n);
                wt = (float)(c - f);
                if (a == b) wt = 0.0f;
            } else {
                a = b = rs_clamp_index((double)rs_nearest(p->nearest, c), n);
            }
            if (a != x || wt != 0.0f) identity = false;
            s->i0[k][x] = a * stride;
            s->i1[k][x] = b * stride;
            s->w[k][x] = wt;
        }
        s->interp[k] = linear && !identity;
        stride *= n;
    }
    *state = s;
    return KILN_OK;
}

typedef struct rs_job {
    const rs_state *s;
    const char *src;
    char *dst;
} rs_job;

static void rs_nearest_rows(void *arg, int64_t b, int64_t e) {
    const rs_job *j = arg;
    const rs_state *s = j->s;
    int last = s->rank - 1;
    int64_t n = s->out[last];
    const int64_t *xi = s->i0[last];
    size_t es = s->es;
    for (int64_t row = b; row < e; row++) {
        int64_t r = row, off = 0;
        for (int k = last - 1; k >= 0; k--) {
            off += s->i0[k][r % s->out[k]];
            r /= s->out[k];
        }
        const char *src = j->src + off * (int64_t)es;
        char *dst = j->dst + row * n * (int64_t)es;
#define NEAREST_ROW(T)                                                                     \
    for (int64_t x = 0; x < n; x++) memcpy(dst + x * (int64_t)sizeof(T), src + xi[x] * (int64_t)sizeof(T), sizeof(T)); \
    break
        switch (es) {
        case 1: NEAREST_ROW(uint8_t);
        case 2: NEAREST_ROW(uint16_t);
        case 4: NEAREST_ROW(uint32_t);
        case 8: NEAREST_ROW(uint64_t);
        default:
            for (int64_t x = 0; x < n; x++) memcpy(dst + x * (int64_t)es, src + xi[x] * (int64_t)es, es);
            break;
        }
#undef NEAREST_ROW
    }
}

/* n-linear: the outer interpolating axes expand into up to 2^(rank-1) weighted input
 * rows, then the last axis is interpolated (or copied) along each of them. */
static void rs_linear_rows(void *arg, int64_t b, int64_t e) {
    const rs_job *j = arg;
    const rs_state *s = j->s;
    int last = s->rank - 1;
    int64_t n = s->out[last];
    const float *src = (const float *)j->src;
    const int64_t *x0 = s->i0[last], *x1 = s->i1[last];
    const float *xw = s->w[last];
    int64_t coff[1 << (KILN_MAX_DIMS - 1)];
    float cw[1 << (KILN_MAX_DIMS - 1)];
    for (int64_t row = b; row < e; row++) {
        int nc = 1;
        coff[0] = 0;
        cw[0] = 1.0f;
        int64_t r = row;
        for (int k = last - 1; k >= 0; k--) {
            int64_t c = r % s->out[k];
            r /= s->out[k];
            int64_t a = s->i0[k][c];
            if (!s->interp[k]) {
                for (int q = 0; q < nc; q++) coff[q] += a;
                continue;
            }
            int64_t bb = s->i1[k][c];
            float wk = s->w[k][c];
            for (int q = 0; q < nc; q++) {
                coff[q + nc] = coff[q] + bb;
                cw[q + nc] = cw[q] * wk;
                coff[q] += a;
                cw[q] *= 1.0f - wk;
            }
            nc *= 2;
        }
        float *dst = (float *)j->dst + row * n;
        if (s->interp[last] && nc == 1) { /* the common cases, unrolled */
            const float *r0 = src + coff[0];
            for (int64_t x = 0; x < n; x++) dst[x] = (1.0f - xw[x]) * r0[x0[x]] + xw[x] * r0[x1[x]];
        } else if (s->interp[last] && nc == 2) {
            const float *r0 = src + coff[0], *r1 = src + coff[1];
            float a0 = cw[0], a1 = cw[1];
            for (int64_t x = 0; x < n; x++) {
                float w1 = xw[x], w0 = 1.0f - w1;
                float v0 = w0 * r0[x0[x]] + w1 * r0[x1[x]];
                float v1 = w0 * r1[x0[x]] + w1 * r1[x1[x]];
                dst[x] = a0 * v0 + a1 * v1;
            }
        } else if (s->interp[last]) {
            for (int64_t x = 0; x < n; x++) {
                float w1 = xw[x], w0 = 1.0f - w1, acc = 0.0f;
                for (int q = 0; q < nc; q++) {
                    const float *sr = src + coff[q];
                    acc += cw[q] * (w0 * sr[x0[x]] + w1 * sr[x1[x]]);
                }
                dst[x] = acc;
            }
        } else if (nc == 1) {
            memcpy(dst, src + coff[0], (size_t)n * sizeof(float));
        } else {
            for (int64_t x = 0; x < n; x++) {
                float acc = 0.0f;
                for (int q = 0; q < nc; q++) acc += cw[q] * src[coff[q] + x];
                dst[x] = acc;
            }
        }
    }
}

static kiln_status resize_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              kcpu_exec *x) {
    const rs_state *s = state;
    int64_t n = s->out[s->rank - 1], rows = 1;
    for (int k = 0; k < s->rank - 1; k++) rows *= s->out[k];
    if (n == 0 || rows == 0) return KILN_OK;
    rs_job j = {s, in[0], out[0]};
    int64_t grain = KILN_MAX((int64_t)1, RS_GRAIN_ELEMS / n);
    kcpu_parallel_for(x, rows, grain, s->linear ? rs_linear_rows : rs_nearest_rows, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_resize = {resize_prepare, resize_run, NULL};
