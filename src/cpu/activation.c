/* kiln CPU backend: activations, unary math and softmax (float32 compute; unary ABS/NEG/
 * SIGN also on integers, NOT on bool). exp, tanh and erf are branch-free approximations
 * (a few ulp) that the compiler vectorizes; log, sin, cos, pow call libm per element. */

/* Lets GCC turn the selects of point-wise loops (x >= 0 ? x : a * x) into vector blends:
 * under its default -ftrapping-math it must assume a skipped multiply could raise a
 * floating-point exception that someone inspects. kiln never reads the FP flags. */
#if defined(__GNUC__) && !defined(__clang__)
#endif
#include <math.h>
#include <string.h>

#include "cpu/cpu.h"

#define PW_GRAIN 8192 /* elements per thread at least */

/* expf with <= 2 ulp error (Cephes polynomial after range reduction to |r| <= ln2/2),
 * written without branches or calls so loops around it vectorize. Overflow gives +inf,
 * underflow below e^-87 flushes to 0, NaN propagates. */
static inline float kexpf(float x) {
    const float hi = 88.3762626647949f, lo = -87.0f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    xc = x != x ? 0.0f : xc; /* keep NaN out of the float->int conversion */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = y * scale;
    e = x > hi ? INFINITY : e;
    e = x < lo ? 0.0f : e;
    return x != x ? x : e;
}

/* tanh: odd polynomial near 0 (where 1 - 2/(e+1) cancels), exp form elsewhere. */
static inline float ktanhf(float x) {
    float ax = fabsf(x), z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    p = p * z * x + x;
    float q = 1.0f - 2.0f / (kexpf(2.0f * ax) + 1.0f);
    q = copysignf(q, x);
    return ax < 0.625f ? p : q;
}

/* erf as a rational function of x on [-4, 4] (beyond, erf is +-1 in float32): the
 * approximation Eigen and TensorFlow use, within 5e-7 of the true value, branch-free so
 * GELU and Erf vectorize instead of calling erff per element. */
static inline float kerff(float a) {
    float x = a > 4.0f ? 4.0f : a;
    x = x < -4.0f ? -4.0f : x;
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return x * p / q;
}

static inline float ksigmoidf(float x) { return 1.0f / (1.0f + kexpf(-x)); }

/* ---- activation ---- */

typedef struct pw_job {
    const kiln_layer *l;
    const void *in;
    void *out;
} pw_job;

/* out may be in (in-place): each loop reads x = in[i] before writing out[i]. */
#define ACT_LOOP(EXPR)                                                                                     \
    for (int64_t i = 0; i < n; i++) {                                                                      \
        const float x = in[i];                                                                             \
        out[i] = (EXPR);                                                                                   \
    }                                                                                                      \
    break;

void kcpu_act_range(const kg_act_params *p, const float *in, float *out, int64_t n) {
    const float alpha = p->alpha, beta = p->beta;
    switch (p->type) {
    case KILN_ACT_RELU: ACT_LOOP(x < 0 ? 0.0f : x)
    case KILN_ACT_LEAKY_RELU: ACT_LOOP(x >= 0 ? x : alpha * x)
    case KILN_ACT_SIGMOID: ACT_LOOP(ksigmoidf(x))
    case KILN_ACT_TANH: ACT_LOOP(ktanhf(x))
    case KILN_ACT_CLIP: {
        for (int64_t i = 0; i < n; i++) {
            float v = in[i];
            v = v < alpha ? alpha : v;
            out[i] = v > beta ? beta : v;
        }
        break;
    }
    case KILN_ACT_SILU: ACT_LOOP(x * ksigmoidf(x))
    case KILN_ACT_HARD_SIGMOID: {
        for (int64_t i = 0; i < n; i++) {
            float v = alpha * in[i] + beta;
            v = v < 0 ? 0.0f : v;
            out[i] = v > 1 ? 1.0f : v;
        }
        break;
    }
    case KILN_ACT_HARD_SWISH: {
        for (int64_t i = 0; i < n; i++) {
            const float x = in[i];
            float v = x * (1.0f / 6.0f) + 0.5f;
            v = v < 0 ? 0.0f : v;
            out[i] = x * (v > 1 ? 1.0f : v);
        }
        break;
    }
    case KILN_ACT_GELU_ERF: ACT_LOOP(0.5f * x * (1.0f + kerff(x * 0.70710678118654752f)))
    case KILN_ACT_GELU_TANH: ACT_LOOP(0.5f * x * (1.0f + ktanhf(0.79788456080286536f * (x + 0.044715f * x * x * x))))
    case KILN_ACT_ELU: ACT_LOOP(x >= 0 ? x : alpha * (kexpf(x) - 1.0f))
    case KILN_ACT_SELU: ACT_LOOP(beta * (x > 0 ? x : alpha * (kexpf(x) - 1.0f)))
    case KILN_ACT_SOFTPLUS: ACT_LOOP((x > 0 ? x : 0.0f) + log1pf(kexpf(-fabsf(x))))
    case KILN_ACT_SOFTSIGN: ACT_LOOP(x / (1.0f + fabsf(x)))
    case KILN_ACT_THRESHOLDED_RELU: ACT_LOOP(x > alpha ? x : 0.0f)
    case KILN_ACT_MISH: {
        /* tanh(log(1 + e)) = (e^2 + 2e) / (e^2 + 2e + 2): one exp, no cancellation */
        for (int64_t i = 0; i < n; i++) {
            const float x = in[i];
            float e = kexpf(x > 20.0f ? 20.0f : x);
            float t = e * (e + 2.0f);
            out[i] = x > 20.0f ? x : x * t / (t + 2.0f);
        }
        break;
    }
    default: break;
    }
}

static void act_chunk(void *arg, int64_t b, int64_t e) {
    const pw_job *j = arg;
    kcpu_act_range(&j->l->p.act, (const float *)j->in + b, (float *)j->out + b, e - b);
}

static kiln_status act_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env;
    *state = NULL;
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || (unsigned)l->p.act.type >= KILN_ACT_COUNT)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for activation %d on %s", (int)l->p.act.type,
                              kiln_dtype_name(l->inputs[0]->dtype));
    return KILN_OK;
}

static kiln_status pw_run(const kiln_layer *l, const void *const *in, void *const *out, kcpu_exec *x,
                          kcpu_range_fn fn) {
    pw_job j = {l, in[0], out[0]};
    kcpu_parallel_for(x, kiln_dims_volume(&l->outputs[0]->dims), PW_GRAIN, fn, &j);
    return KILN_OK;
}

static kiln_status act_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           kcpu_exec *x) {
    (void)state;
    return pw_run(l, in, out, x, act_chunk);
}

const kcpu_kernel kcpu_activation = {act_prepare, act_run, NULL};

/* ---- unary ---- */

#define UN_LOOP(T, EXPR)                                                                                   \
    {                                                                                                      \
        const T *in = vin;                                                                                 \
        T *out = vout;                                                                                     \
        for (int64_t i = 0; i < n; i++) {                                                                  \
            const T x = in[i];                                                                             \
            out[i] = (EXPR);                                                                               \
        }                                                                                                  \
        return;                                                                                            \
    }

static void unary_f32(kiln_unary_op op, const void *vin, void *vout, int64_t n) {
    switch (op) {
    case KILN_UNARY_EXP: UN_LOOP(float, kexpf(x))
    case KILN_UNARY_LOG: UN_LOOP(float, logf(x))
    case KILN_UNARY_SQRT: UN_LOOP(float, sqrtf(x))
    case KILN_UNARY_ABS: UN_LOOP(float, fabsf(x))
    case KILN_UNARY_NEG: UN_LOOP(float, -x)
    case KILN_UNARY_RECIPROCAL: UN_LOOP(float, 1.0f / x)
    case KILN_UNARY_FLOOR: UN_LOOP(float, floorf(x))
    case KILN_UNARY_CEIL: UN_LOOP(float, ceilf(x))
    case KILN_UNARY_ERF: UN_LOOP(float, kerff(x))
    case KILN_UNARY_SIN: UN_LOOP(float, sinf(x))
    case KILN_UNARY_COS: UN_LOOP(float, cosf(x))
    case KILN_UNARY_ROUND: UN_LOOP(float, nearbyintf(x)) /* default rounding mode: half to even */
    case KILN_UNARY_SIGN: UN_LOOP(float, x > 0 ? 1.0f : x < 0 ? -1.0f : x) /* keeps 0, -0 and NaN */
    default: return;
    }
}

/* Integer ABS/NEG wrap at the minimum value like two's complement hardware. */
#define UNARY_INT(S, T, U)                                                                                 \
    static void unary_##S(kiln_unary_op op, const void *vin, void *vout, int64_t n) {                      \
        switch (op) {                                                                                      \
        case KILN_UNARY_ABS: UN_LOOP(T, x < 0 ? (T)(0 - (U)x) : x)                                        \
        case KILN_UNARY_NEG: UN_LOOP(T, (T)(0 - (U)x))                                                    \
        case KILN_UNARY_SIGN: UN_LOOP(T, (T)((x > 0) - (x < 0)))                                          \
        default: return;                                                                                   \
        }                                                                                                  \
    }
UNARY_INT(i32, int32_t, uint32_t)
UNARY_INT(i64, int64_t, uint64_t)

static void unary_b8(kiln_unary_op op, const void *vin, void *vout, int64_t n) {
    if (op == KILN_UNARY_NOT) UN_LOOP(uint8_t, (uint8_t)(x == 0))
}

typedef void (*unary_fn)(kiln_unary_op op, const void *in, void *out, int64_t n);

static unary_fn unary_for(const kiln_layer *l) {
    kiln_unary_op op = l->p.unary;
    switch (l->inputs[0]->dtype) {
    case KILN_FLOAT32: return op != KILN_UNARY_NOT && (unsigned)op < KILN_UNARY_COUNT ? unary_f32 : NULL;
    case KILN_INT32:
    case KILN_INT64: {
        if (op != KILN_UNARY_ABS && op != KILN_UNARY_NEG && op != KILN_UNARY_SIGN) return NULL;
        return l->inputs[0]->dtype == KILN_INT32 ? unary_i32 : unary_i64;
    }
    case KILN_BOOL: return op == KILN_UNARY_NOT ? unary_b8 : NULL;
    default: return NULL;
    }
}

static void unary_chunk(void *arg, int64_t b, int64_t e) {
    const pw_job *j = arg;
    size_t es = kiln_dtype_size(j->l->inputs[0]->dtype);
    unary_for(j->l)(j->l->p.unary, (const char *)j->in + b * (int64_t)es, (char *)j->out + b * (int64_t)es, e - b);
}

static kiln_status unary_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env;
    *state = NULL;
    *scratch = 0;
    if (!unary_for(l))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for unary op %d on %s", (int)l->p.unary,
                              kiln_dtype_name(l->inputs[0]->dtype));
    return KILN_OK;
}

static kiln_status unary_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             kcpu_exec *x) {
    (void)state;
    return pw_run(l, in, out, x, unary_chunk);
}

const kcpu_kernel kcpu_unary = {unary_prepare, unary_run, NULL};

/* ---- softmax ---- */

#define SM_BLOCK 256 /* inner positions handled together when the axis is not innermost */

typedef struct sm_job {
    const float *in;
    float *out;
    int64_t len, inner, nblk;
    int log;
} sm_job;

/* Sum with eight double lanes: exact enough for long rows and still vectorizable. */
static double sum_f32(const float *p, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += p[i + k];
    for (; i < n; i++) acc[0] += p[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* The axis is innermost: each row is contiguous. */
static void sm_rows(void *arg, int64_t b, int64_t e) {
    const sm_job *j = arg;
    const int64_t L = j->len;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->in + r * L;
        float *y = j->out + r * L;
        float m = x[0];
        for (int64_t i = 1; i < L; i++) m = x[i] > m ? x[i] : m;
        for (int64_t i = 0; i < L; i++) y[i] = kexpf(x[i] - m);
        double s = sum_f32(y, L);
        if (j->log) {
            const float ls = (float)log(s);
            for (int64_t i = 0; i < L; i++) y[i] = (x[i] - m) - ls;
        } else {
            const float inv = (float)(1.0 / s);
            for (int64_t i = 0; i < L; i++) y[i] *= inv;
        }
    }
}

/* The axis has an inner stride: SM_BLOCK neighbouring columns advance together, so
 * every access is contiguous. A unit is (outer index, column block). */
static void sm_cols(void *arg, int64_t b, int64_t e) {
    const sm_job *j = arg;
    const int64_t L = j->len, inner = j->inner;
    float m[SM_BLOCK];
    double s[SM_BLOCK];
    for (int64_t u = b; u < e; u++) {
        int64_t o = u / j->nblk, c0 = (u % j->nblk) * SM_BLOCK;
        int64_t w = KILN_MIN(SM_BLOCK, inner - c0);
        const float *x = j->in + o * L * inner + c0;
        float *y = j->out + o * L * inner + c0;
        for (int64_t k = 0; k < w; k++) {
            m[k] = x[k];
            s[k] = 0;
        }
        for (int64_t i = 1; i < L; i++)
            for (int64_t k = 0; k < w; k++) m[k] = x[i * inner + k] > m[k] ? x[i * inner + k] : m[k];
        for (int64_t i = 0; i < L; i++)
            for (int64_t k = 0; k < w; k++) {
                float v = kexpf(x[i * inner + k] - m[k]);
                y[i * inner + k] = v;
                s[k] += v;
            }
        if (j->log) {
            for (int64_t k = 0; k < w; k++) m[k] += (float)log(s[k]);
            for (int64_t i = 0; i < L; i++)
                for (int64_t k = 0; k < w; k++) y[i * inner + k] = x[i * inner + k] - m[k];
        } else {
            for (int64_t k = 0; k < w; k++) m[k] = (float)(1.0 / s[k]);
            for (int64_t i = 0; i < L; i++)
                for (int64_t k = 0; k < w; k++) y[i * inner + k] *= m[k];
        }
    }
}

static kiln_status sm_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env;
    *state = NULL;
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || kg_axis(l->p.softmax.axis, l->inputs[0]->dims.nb_dims) < 0)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for this softmax");
    return KILN_OK;
}

static kiln_status sm_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                          kcpu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int axis = kg_axis(l->p.softmax.axis, d->nb_dims);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= d->d[i];
    for (int i = axis + 1; i < d->nb_dims; i++) inner *= d->d[i];
    sm_job j = {in[0], out[0], d->d[axis], inner, 0, l->p.softmax.log};
    if (j.len == 0 || outer == 0 || inner == 0) return KILN_OK;
    /* a unit touches len * width elements; aim for PW_GRAIN elements per thread */
    if (inner == 1) {
        kcpu_parallel_for(x, outer, KILN_MAX(1, PW_GRAIN / j.len), sm_rows, &j);
    } else {
        j.nblk = (inner + SM_BLOCK - 1) / SM_BLOCK;
        int64_t width = KILN_MIN(inner, SM_BLOCK);
        kcpu_parallel_for(x, outer * j.nblk, KILN_MAX(1, PW_GRAIN / (j.len * width)), sm_cols, &j);
    }
    return KILN_OK;
}

const kcpu_kernel kcpu_softmax = {sm_prepare, sm_run, NULL};

/* ---- fused epilogue (residual add, activation) ---- */

typedef struct epi_job {
    const kiln_layer *l;
    float *y;
    const float *r;
} epi_job;

static void add_range(float *y, const float *r, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += r[i];
}

static void epi_chunk(void *arg, int64_t b, int64_t e) {
    const epi_job *j = arg;
    float *y = j->y + b;
    bool after = j->l->res_after_act;
    if (j->r && !after) add_range(y, j->r + b, e - b);
    if (j->l->has_post_act) kcpu_act_range(&j->l->post_act, y, y, e - b);
    if (j->r && after) add_range(y, j->r + b, e - b);
}

void kcpu_epilogue(const kiln_layer *l, float *y, const float *residual, kcpu_exec *x) {
    if (!residual && !l->has_post_act) return;
    epi_job j = {l, y, residual};
    kcpu_parallel_for(x, kiln_dims_volume(&l->outputs[0]->dims), 1 << 14, epi_chunk, &j);
}

typedef struct add_job {
    float *y;
    const float *r;
} add_job;

static void add_chunk(void *arg, int64_t b, int64_t e) {
    const add_job *j = arg;
    add_range(j->y + b, j->r + b, e - b);
}

void kcpu_add_residual(float *y, const float *residual, int64_t n, kcpu_exec *x) {
    add_job j = {y, residual};
    kcpu_parallel_for(x, n, 1 << 14, add_chunk, &j);
}
