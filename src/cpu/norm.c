/* kiln CPU backend: normalizations: scale (also folded batch norm), instance norm and
 * local response normalization, float32. */
#include <math.h>
#include <string.h>

#include "cpu/cpu.h"

#define NORM_GRAIN 16384 /* elements per thread at least */

/* x^p for the exponents networks actually use without calling powf. */
static inline float pow_fast(float v, float p) {
    if (p == 1.0f) return v;
    if (p == 2.0f) return v * v;
    return powf(v, p);
}

/* ---- scale: y = (x * scale + shift) ^ power ---- */

typedef struct scale_job {
    const kiln_layer *l;
    kiln_scale_mode mode;
    const float *in;
    float *out;
    int64_t inner;    /* elements per weight in channel mode; item size in elementwise mode */
    int64_t channels; /* channel mode */
} scale_job;

/* One weight triple over a run; in-place safe (reads x[i] before writing y[i]). */
static void scale_const(const float *x, float *y, int64_t n, float a, float b, const float *p) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;
    if (!p || *p == 1.0f) return;
    const float pw = *p;
    if (pw == 2.0f) {
        for (int64_t i = 0; i < n; i++) y[i] *= y[i];
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = powf(y[i], pw);
    }
}

static void scale_chunk(void *arg, int64_t b, int64_t e) {
    const scale_job *j = arg;
    const kiln_layer *l = j->l;
    const float *sh = l->w[0].count ? l->w[0].values : NULL;
    const float *sc = l->w[1].count ? l->w[1].values : NULL;
    const float *pw = l->w[2].count ? l->w[2].values : NULL;
    switch (j->mode) {
    case KILN_SCALE_UNIFORM:
        scale_const(j->in + b, j->out + b, e - b, sc ? sc[0] : 1.0f, sh ? sh[0] : 0.0f, pw);
        break;
    case KILN_SCALE_CHANNEL: {
        const int64_t inner = j->inner;
        for (int64_t pos = b; pos < e;) {
            int64_t row = pos / inner, c = row % j->channels;
            int64_t n = KILN_MIN((row + 1) * inner, e) - pos;
            scale_const(j->in + pos, j->out + pos, n, sc ? sc[c] : 1.0f, sh ? sh[c] : 0.0f, pw ? pw + c : NULL);
            pos += n;
        }
        break;
    }
    case KILN_SCALE_ELEMENTWISE: {
        const int64_t item = j->inner;
        for (int64_t pos = b; pos < e;) {
            int64_t k0 = pos % item, n = KILN_MIN(item - k0, e - pos);
            const float *x = j->in + pos;
            float *y = j->out + pos;
            if (sc && sh) {
                for (int64_t i = 0; i < n; i++) y[i] = x[i] * sc[k0 + i] + sh[k0 + i];
            } else if (sc) {
                for (int64_t i = 0; i < n; i++) y[i] = x[i] * sc[k0 + i];
            } else if (sh) {
                for (int64_t i = 0; i < n; i++) y[i] = x[i] + sh[k0 + i];
            } else if (y != x) {
                memcpy(y, x, (size_t)n * sizeof(float));
            }
            if (pw)
                for (int64_t i = 0; i < n; i++) y[i] = pow_fast(y[i], pw[k0 + i]);
            pos += n;
        }
        break;
    }
    }
}

static kiln_status scale_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env;
    *state = NULL;
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || (unsigned)l->p.scale.mode > KILN_SCALE_ELEMENTWISE)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for %s input in scale mode %d",
                              kiln_dtype_name(l->inputs[0]->dtype), (int)l->p.scale.mode);
    /* the run indexes weights by channel or element: re-check the counts inference checked,
     * in case a pass rewrote the layer */
    const kiln_dims *d = &l->inputs[0]->dims;
    int64_t want = 1;
    if (l->p.scale.mode == KILN_SCALE_CHANNEL) want = d->nb_dims >= 2 ? d->d[1] : -1;
    if (l->p.scale.mode == KILN_SCALE_ELEMENTWISE)
        for (int i = 1; i < d->nb_dims; i++) want *= d->d[i];
    for (int i = 0; i < 3; i++)
        if (l->w[i].count && (l->w[i].dtype != KILN_FLOAT32 || l->w[i].count != want))
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "weights %d: %lld %s values, the kernel needs %lld float32",
                                  i, (long long)l->w[i].count, kiln_dtype_name(l->w[i].dtype), (long long)want);
    return KILN_OK;
}

static kiln_status scale_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             kcpu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int64_t total = kiln_dims_volume(d);
    scale_job j = {l, l->p.scale.mode, in[0], out[0], 1, 1};
    if (j.mode == KILN_SCALE_CHANNEL) {
        j.channels = d->d[1];
        for (int i = 2; i < d->nb_dims; i++) j.inner *= d->d[i];
        /* [N, C]: one weight per element of a row, which the elementwise walk does
         * without a division per element */
        if (j.inner == 1) {
            j.mode = KILN_SCALE_ELEMENTWISE;
            j.inner = j.channels;
        }
    } else if (j.mode == KILN_SCALE_ELEMENTWISE) {
        for (int i = 1; i < d->nb_dims; i++) j.inner *= d->d[i];
    }
    if (total > 0 && j.inner > 0) kcpu_parallel_for(x, total, NORM_GRAIN, scale_chunk, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_scale = {scale_prepare, scale_run, NULL};

/* ---- instance normalization ---- */

typedef struct inorm_job {
    const kiln_layer *l;
    const float *in;
    float *out;
    int64_t channels, spatial;
} inorm_job;

/* Statistics in double over four lanes: long rows of float32 would lose digits. */
static double sum_lanes(const float *x, int64_t n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 += x[i];
        a1 += x[i + 1];
        a2 += x[i + 2];
        a3 += x[i + 3];
    }
    for (; i < n; i++) a0 += x[i];
    return (a0 + a1) + (a2 + a3);
}

static double sqdev_lanes(const float *x, int64_t n, double mean) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double d0 = x[i] - mean, d1 = x[i + 1] - mean, d2 = x[i + 2] - mean, d3 = x[i + 3] - mean;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    for (; i < n; i++) a0 += (x[i] - mean) * (x[i] - mean);
    return (a0 + a1) + (a2 + a3);
}

static void inorm_rows(void *arg, int64_t b, int64_t e) {
    const inorm_job *j = arg;
    const float *scale = j->l->w[0].values, *bias = j->l->w[1].values;
    const double eps = j->l->p.norm.epsilon;
    const int64_t S = j->spatial;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->in + r * S;
        float *y = j->out + r * S;
        int64_t c = r % j->channels;
        double mean = sum_lanes(x, S) / (double)S;
        double var = sqdev_lanes(x, S, mean) / (double)S;
        /* (x - mean) in double: folding mean into a float shift cancels catastrophically
         * when the variance is small next to the mean */
        const double a = scale[c] / sqrt(var + eps), b0 = bias[c];
        for (int64_t i = 0; i < S; i++) y[i] = (float)((x[i] - mean) * a + b0);
    }
}

static kiln_status inorm_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env;
    *state = NULL;
    *scratch = 0;
    const kiln_dims *d = &l->inputs[0]->dims;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || d->nb_dims < 3 || l->w[0].dtype != KILN_FLOAT32 ||
        l->w[1].dtype != KILN_FLOAT32 || l->w[0].count != d->d[1] || l->w[1].count != d->d[1])
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for this instance norm");
    return KILN_OK;
}

static kiln_status inorm_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             kcpu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    inorm_job j = {l, in[0], out[0], d->d[1], 1};
    for (int i = 2; i < d->nb_dims; i++) j.spatial *= d->d[i];
    int64_t rows = d->d[0] * d->d[1];
    if (rows > 0 && j.spatial > 0) kcpu_parallel_for(x, rows, KILN_MAX(1, NORM_GRAIN / j.spatial), inorm_rows, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_instance_norm = {inorm_prepare, inorm_run, NULL};

/* ---- local response normalization (ONNX): across channels ---- */

#define LRN_BLOCK 256

typedef struct lrn_job {
    const kiln_layer *l;
    const float *in;
    float *out;
    int64_t channels, spatial;
} lrn_job;

/* t^-beta, with the AlexNet/GoogLeNet exponents done by square roots. */
static inline float inv_pow(float t, float beta) {
    if (beta == 0.75f) return 1.0f / sqrtf(t * sqrtf(t));
    if (beta == 0.5f) return 1.0f / sqrtf(t);
    if (beta == 1.0f) return 1.0f / t;
    return powf(t, -beta);
}

static void lrn_rows(void *arg, int64_t b, int64_t e) {
    const lrn_job *j = arg;
    const kg_lrn_params *p = &j->l->p.lrn;
    const int64_t C = j->channels, S = j->spatial;
    const int64_t before = (p->size - 1) / 2, after = p->size - 1 - before; /* floor and ceil of (size-1)/2 */
    const float coef = p->alpha / (float)p->size, bias = p->bias, beta = p->beta;
    float acc[LRN_BLOCK];
    for (int64_t r = b; r < e; r++) {
        int64_t n = r / C, c = r % C;
        int64_t lo = KILN_MAX(0, c - before), hi = KILN_MIN(C - 1, c + after);
        const float *xn = j->in + n * C * S;
        const float *x = xn + c * S;
        float *y = j->out + r * S;
        for (int64_t s0 = 0; s0 < S; s0 += LRN_BLOCK) {
            int64_t w = KILN_MIN(LRN_BLOCK, S - s0);
            for (int64_t k = 0; k < w; k++) acc[k] = 0;
            for (int64_t i = lo; i <= hi; i++) {
                const float *xi = xn + i * S + s0;
                for (int64_t k = 0; k < w; k++) acc[k] += xi[k] * xi[k];
            }
            for (int64_t k = 0; k < w; k++) y[s0 + k] = x[s0 + k] * inv_pow(bias + coef * acc[k], beta);
        }
    }
}

static kiln_status lrn_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env;
    *state = NULL;
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || l->inputs[0]->dims.nb_dims < 2 || l->p.lrn.size <= 0)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CPU kernel for this LRN");
    return KILN_OK;
}

static kiln_status lrn_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           kcpu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    lrn_job j = {l, in[0], out[0], d->d[1], 1};
    for (int i = 2; i < d->nb_dims; i++) j.spatial *= d->d[i];
    int64_t rows = d->d[0] * d->d[1];
    int64_t work = j.spatial * KILN_MIN(l->p.lrn.size, KILN_MAX(d->d[1], 1));
    if (rows > 0 && j.spatial > 0) kcpu_parallel_for(x, rows, KILN_MAX(1, NORM_GRAIN / KILN_MAX(work, 1)), lrn_rows, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_lrn = {lrn_prepare, lrn_run, NULL};
