/* kiln CPU backend: Winograd F(m x m, 3x3) convolution (m = 2 or 4, see winograd.h). Per chunk
 * of tile rows: the input transform writes V[xi][c][t], a*a GEMMs M[xi] = U[xi] V[xi] run
 * through OpenBLAS on the calling thread, and the output transform writes y with the bias,
 * residual and activation while the chunk is still in cache. */
#include <cblas.h>
#include <string.h>

#include "cpu/winograd.h"

/* Tiles per block in the transforms: bounds their stack buffers. */
#define TB 32
/* Transformed input + GEMM output of one chunk: small enough to stay in the shared L3 with
 * the kernel, large enough that the GEMMs are wide. */
#define CHUNK_BYTES ((size_t)6 << 20)

/* One channel (input transform) or output channel (output transform) of a block of tiles. */
typedef struct in_args {
    const float *plane;  /* input channel plane, h x w */
    int64_t h, w, ih0, col0; /* top input row and left input column of the block's first tile */
    int nb;              /* tiles in the block (<= TB) */
    float *v;            /* V[0][c][t0]: element xi at v[xi * xs] */
    int64_t xs;
} in_args;

typedef struct out_args {
    const float *mm; /* M[0][k][t0]: element xi at mm[xi * xs] */
    int64_t xs;
    int nb;
    float bias;
    float *yb; /* m x m x TB block: yb[(p * m + q) * TB + t] */
} out_args;

typedef void (*in_fn)(const in_args *a);
typedef void (*out_fn)(const out_args *a);

struct kcpu_wino {
    kcpu_wino_shape s;
    int m, a;
    int64_t th, tw;     /* tiles down and across one image */
    int64_t chunk_rows; /* tile rows (counted over the batch) per chunk */
    size_t v_floats;    /* V of one chunk, rounded up for alignment */
    float *u;           /* [a*a][k][c]: the GEMMs' A */
    float *bias;        /* k values or NULL */
    in_fn in;
    out_fn out;
};

#define FORCE_INLINE static inline __attribute__((always_inline))

/* Loads the a input rows of a block as phases: p[(i * m + q) * ld + t] = x[ih0 + i][col0 + t*m + q],
 * zero outside the image; t <= nb since a tile reaches into the next one's first columns. */
FORCE_INLINE void load_phases(const in_args *a, int m, int rows, float *restrict p, int ld) {
    int64_t w = a->w, need = a->col0 + (int64_t)ld * m; /* one past the last column read */
    bool inside = a->col0 >= 0 && need <= w;
    for (int i = 0; i < rows; i++) {
        float *pi = p + i * m * ld;
        int64_t ih = a->ih0 + i;
        if (ih < 0 || ih >= a->h) {
            memset(pi, 0, (size_t)(m * ld) * sizeof(float));
            continue;
        }
        const float *restrict row = a->plane + ih * w;
        if (inside) {
            for (int q = 0; q < m; q++)
                for (int t = 0; t < ld; t++) pi[q * ld + t] = row[a->col0 + t * m + q];
        } else {
            for (int q = 0; q < m; q++)
                for (int t = 0; t < ld; t++) {
                    int64_t col = a->col0 + t * m + q;
                    pi[q * ld + t] = col >= 0 && col < w ? row[col] : 0.0f;
                }
        }
    }
}

/* ---- F(2x2, 3x3): a = 4 ---- */

FORCE_INLINE void in_f2_body(const in_args *a) {
    enum { M = 2, A = 4 };
    int nb = a->nb, ld = nb + 1, len = M * ld;
    float p[A * M * (TB + 1)], r[A * M * (TB + 1)];
    load_phases(a, M, A, p, ld);
    /* rows: B^T d, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] */
    {
        const float *restrict d0 = p, *restrict d1 = p + len, *restrict d2 = p + 2 * len, *restrict d3 = p + 3 * len;
        float *restrict r0 = r, *restrict r1 = r + len, *restrict r2 = r + 2 * len, *restrict r3 = r + 3 * len;
        for (int t = 0; t < len; t++) {
            r0[t] = d0[t] - d2[t];
            r1[t] = d1[t] + d2[t];
            r2[t] = d2[t] - d1[t];
            r3[t] = d1[t] - d3[t];
        }
    }
    /* columns: the same combination of each row's 4 taps, tap s of tile t at phase s % 2 of t + s / 2 */
    for (int j = 0; j < A; j++) {
        const float *restrict ph = r + j * len;
        const float *restrict d0 = ph, *restrict d1 = ph + ld, *restrict d2 = ph + 1, *restrict d3 = ph + ld + 1;
        float *restrict v0 = a->v + (j * A) * a->xs, *restrict v1 = v0 + a->xs, *restrict v2 = v1 + a->xs,
                        *restrict v3 = v2 + a->xs;
        for (int t = 0; t < nb; t++) {
            v0[t] = d0[t] - d2[t];
            v1[t] = d1[t] + d2[t];
            v2[t] = d2[t] - d1[t];
            v3[t] = d1[t] - d3[t];
        }
    }
}

FORCE_INLINE void out_f2_body(const out_args *a) {
    enum { M = 2, A = 4 };
    int nb = a->nb;
    float r[M * A * TB]; /* r[(p * A + j) * TB + t] = (A^T M)[p][j] */
    /* A^T = [1 1 1 0; 0 1 -1 -1] */
    for (int j = 0; j < A; j++) {
        const float *restrict m0 = a->mm + j * a->xs, *restrict m1 = m0 + A * a->xs, *restrict m2 = m1 + A * a->xs,
                              *restrict m3 = m2 + A * a->xs;
        float *restrict r0 = r + j * TB, *restrict r1 = r + (A + j) * TB;
        for (int t = 0; t < nb; t++) {
            r0[t] = m0[t] + m1[t] + m2[t];
            r1[t] = m1[t] - m2[t] - m3[t];
        }
    }
    float b = a->bias;
    for (int p = 0; p < M; p++) {
        const float *restrict m0 = r + p * A * TB, *restrict m1 = m0 + TB, *restrict m2 = m1 + TB,
                              *restrict m3 = m2 + TB;
        float *restrict y0 = a->yb + (p * M) * TB, *restrict y1 = y0 + TB;
        for (int t = 0; t < nb; t++) {
            y0[t] = m0[t] + m1[t] + m2[t] + b;
            y1[t] = m1[t] - m2[t] - m3[t] + b;
        }
    }
}

/* ---- F(4x4, 3x3): a = 6, interpolation points 0, 1, -1, 2, -2, inf ---- */

FORCE_INLINE void in_f4_body(const in_args *a) {
    enum { M = 4, A = 6 };
    int nb = a->nb, ld = nb + 1, len = M * ld;
    float p[A * M * (TB + 1)], r[A * M * (TB + 1)];
    load_phases(a, M, A, p, ld);
    /* rows: B^T d with B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
     * 0 2 -1 -2 1 0; 0 4 0 -5 0 1] */
    {
        const float *restrict d0 = p, *restrict d1 = p + len, *restrict d2 = p + 2 * len, *restrict d3 = p + 3 * len,
                              *restrict d4 = p + 4 * len, *restrict d5 = p + 5 * len;
        float *restrict r0 = r, *restrict r1 = r + len, *restrict r2 = r + 2 * len, *restrict r3 = r + 3 * len,
                        *restrict r4 = r + 4 * len, *restrict r5 = r + 5 * len;
        for (int t = 0; t < len; t++) {
            float s13 = d4[t] - 4.0f * d2[t], s24 = d3[t] - 4.0f * d1[t];
            float u13 = d4[t] - d2[t], u24 = 2.0f * (d3[t] - d1[t]);
            r0[t] = 4.0f * d0[t] - 5.0f * d2[t] + d4[t];
            r1[t] = s13 + s24;
            r2[t] = s13 - s24;
            r3[t] = u13 + u24;
            r4[t] = u13 - u24;
            r5[t] = 4.0f * d1[t] - 5.0f * d3[t] + d5[t];
        }
    }
    /* columns: tap s of tile t is phase s % 4 of t + s / 4 */
    for (int j = 0; j < A; j++) {
        const float *restrict ph = r + j * len;
        const float *restrict d0 = ph, *restrict d1 = ph + ld, *restrict d2 = ph + 2 * ld, *restrict d3 = ph + 3 * ld,
                              *restrict d4 = ph + 1, *restrict d5 = ph + ld + 1;
        float *restrict v0 = a->v + (j * A) * a->xs, *restrict v1 = v0 + a->xs, *restrict v2 = v1 + a->xs,
                        *restrict v3 = v2 + a->xs, *restrict v4 = v3 + a->xs, *restrict v5 = v4 + a->xs;
        for (int t = 0; t < nb; t++) {
            float s13 = d4[t] - 4.0f * d2[t], s24 = d3[t] - 4.0f * d1[t];
            float u13 = d4[t] - d2[t], u24 = 2.0f * (d3[t] - d1[t]);
            v0[t] = 4.0f * d0[t] - 5.0f * d2[t] + d4[t];
            v1[t] = s13 + s24;
            v2[t] = s13 - s24;
            v3[t] = u13 + u24;
            v4[t] = u13 - u24;
            v5[t] = 4.0f * d1[t] - 5.0f * d3[t] + d5[t];
        }
    }
}

FORCE_INLINE void out_f4_body(const out_args *a) {
    enum { M = 4, A = 6 };
    int nb = a->nb;
    float r[M * A * TB]; /* r[(p * A + j) * TB + t] = (A^T M)[p][j] */
    /* A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */
    for (int j = 0; j < A; j++) {
        int64_t xs = a->xs * A;
        const float *restrict m0 = a->mm + j * a->xs, *restrict m1 = m0 + xs, *restrict m2 = m1 + xs,
                              *restrict m3 = m2 + xs, *restrict m4 = m3 + xs, *restrict m5 = m4 + xs;
        float *restrict r0 = r + j * TB, *restrict r1 = r0 + A * TB, *restrict r2 = r1 + A * TB,
                        *restrict r3 = r2 + A * TB;
        for (int t = 0; t < nb; t++) {
            float s12 = m1[t] + m2[t], d12 = m1[t] - m2[t], s34 = m3[t] + m4[t], d34 = m3[t] - m4[t];
            r0[t] = m0[t] + s12 + s34;
            r1[t] = d12 + 2.0f * d34;
            r2[t] = s12 + 4.0f * s34;
            r3[t] = d12 + 8.0f * d34 + m5[t];
        }
    }
    float b = a->bias;
    for (int p = 0; p < M; p++) {
        const float *restrict m0 = r + p * A * TB, *restrict m1 = m0 + TB, *restrict m2 = m1 + TB,
                              *restrict m3 = m2 + TB, *restrict m4 = m3 + TB, *restrict m5 = m4 + TB;
        float *restrict y0 = a->yb + (p * M) * TB, *restrict y1 = y0 + TB, *restrict y2 = y1 + TB,
                        *restrict y3 = y2 + TB;
        for (int t = 0; t < nb; t++) {
            float s12 = m1[t] + m2[t], d12 = m1[t] - m2[t], s34 = m3[t] + m4[t], d34 = m3[t] - m4[t];
            y0[t] = m0[t] + s12 + s34 + b;
            y1[t] = d12 + 2.0f * d34 + b;
            y2[t] = s12 + 4.0f * s34 + b;
            y3[t] = d12 + 8.0f * d34 + m5[t] + b;
        }
    }
}

/* Each transform twice: for any x86-64 (SSE2) and, chosen at create time, for AVX2 + FMA. */
static void in_f2(const in_args *a) { in_f2_body(a); }
static void out_f2(const out_args *a) { out_f2_body(a); }
static void in_f4(const in_args *a) { in_f4_body(a); }
static void out_f4(const out_args *a) { out_f4_body(a); }
#if defined(__GNUC__) && defined(__x86_64__)
#define WINO_AVX2 1
#define AVX2 __attribute__((target("avx2,fma")))
static AVX2 void in_f2_avx2(const in_args *a) { in_f2_body(a); }
static AVX2 void out_f2_avx2(const out_args *a) { out_f2_body(a); }
static AVX2 void in_f4_avx2(const in_args *a) { in_f4_body(a); }
static AVX2 void out_f4_avx2(const out_args *a) { out_f4_body(a); }
#endif

/* ---- choice and kernel transform ---- */

int kcpu_wino_pick(const kcpu_wino_shape *s) {
    /* few channels: the GEMMs are too thin to pay for the transforms */
    if (s->c < 16 || s->k < 16) return 0;
    if (s->oh < 4 || s->ow < 4) return 0;
    return 4;
}

/* G for F(2, 3) and F(4, 3): U = G g G^T */
static const double g2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double g4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};

kcpu_wino *kcpu_wino_create(const kiln_layer *l, const kiln_env *env, const kcpu_wino_shape *s, int m,
                            const float *kernel, const float *bias, size_t *scratch) {
    int a = m + 2;
    size_t head = KILN_ALIGN_UP(sizeof(kcpu_wino), KILN_ALIGN);
    size_t ucount = (size_t)(a * a) * (size_t)s->k * (size_t)s->c;
    size_t ubytes = KILN_ALIGN_UP(ucount * sizeof(float), KILN_ALIGN);
    kcpu_wino *w = kiln_alloc(env, head + ubytes + (bias ? (size_t)s->k * sizeof(float) : 0));
    if (!w) {
        kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory transforming the kernel");
        return NULL;
    }
    memset(w, 0, sizeof *w);
    w->s = *s;
    w->m = m;
    w->a = a;
    w->th = (s->oh + m - 1) / m;
    w->tw = (s->ow + m - 1) / m;
    w->u = (float *)((char *)w + head);
    if (bias) {
        w->bias = (float *)((char *)w + head + ubytes);
        memcpy(w->bias, bias, (size_t)s->k * sizeof(float));
    }
    const double(*g)[3] = m == 2 ? g2 : g4;
    for (int64_t k = 0; k < s->k; k++)
        for (int64_t c = 0; c < s->c; c++) {
            const float *f = kernel + (k * s->c + c) * 9;
            double gg[6][3]; /* G g */
            for (int i = 0; i < a; i++)
                for (int j = 0; j < 3; j++)
                    gg[i][j] = g[i][0] * f[j] + g[i][1] * f[3 + j] + g[i][2] * f[6 + j];
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++)
                    w->u[((size_t)(i * a + j) * (size_t)s->k + (size_t)k) * (size_t)s->c + (size_t)c] =
                        (float)(gg[i][0] * g[j][0] + gg[i][1] * g[j][1] + gg[i][2] * g[j][2]);
        }
    /* chunk: whole tile rows, as many as fit CHUNK_BYTES (at least one) */
    int64_t rows = s->n * w->th;
    size_t per_row = (size_t)(a * a) * (size_t)(s->c + s->k) * (size_t)w->tw * sizeof(float);
    int64_t chunk = (int64_t)(CHUNK_BYTES / (per_row ? per_row : 1));
    w->chunk_rows = KILN_MAX(1, KILN_MIN(chunk, rows));
    int64_t ld = w->chunk_rows * w->tw;
    w->v_floats = KILN_ALIGN_UP((size_t)(a * a) * (size_t)s->c * (size_t)ld, 16);
    *scratch = (w->v_floats + (size_t)(a * a) * (size_t)s->k * (size_t)ld) * sizeof(float);
    w->in = m == 2 ? in_f2 : in_f4;
    w->out = m == 2 ? out_f2 : out_f4;
#ifdef WINO_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        w->in = m == 2 ? in_f2_avx2 : in_f4_avx2;
        w->out = m == 2 ? out_f2_avx2 : out_f4_avx2;
    }
#endif
    return w;
}

void kcpu_wino_destroy(const kiln_env *env, kcpu_wino *w) { kiln_free(env, w); }

/* ---- run ---- */

typedef struct wino_job {
    const kcpu_wino *w;
    const kiln_layer *l;
    const float *x, *res;
    float *y, *v, *mm;
    int64_t r0, rows; /* the chunk's first tile row (over the batch) and its count */
    int64_t ld;       /* tiles in the chunk: the GEMMs' N */
} wino_job;

/* Units: (channel, tile row of the chunk), channel-major so that a thread walks down a plane. */
static void wino_input(void *arg, int64_t u0, int64_t u1) {
    const wino_job *j = arg;
    const kcpu_wino *w = j->w;
    const kcpu_wino_shape *s = &w->s;
    in_args a;
    a.h = s->h;
    a.w = s->w;
    a.xs = s->c * j->ld;
    for (int64_t u = u0; u < u1; u++) {
        int64_t c = u / j->rows, rr = u % j->rows, r = j->r0 + rr, n = r / w->th, ty = r % w->th;
        a.plane = j->x + (n * s->c + c) * s->h * s->w;
        a.ih0 = ty * w->m - s->pt;
        for (int64_t tx0 = 0; tx0 < w->tw; tx0 += TB) {
            a.nb = (int)KILN_MIN(TB, w->tw - tx0);
            a.col0 = tx0 * w->m - s->pl;
            a.v = j->v + c * j->ld + rr * w->tw + tx0;
            w->in(&a);
        }
    }
}

/* out[i] = act(out[i] + res[i]) over one output row segment. */
static void row_epilogue(const kiln_layer *l, float *out, const float *res, int64_t n) {
    if (res)
        for (int64_t i = 0; i < n; i++) out[i] += res[i];
    if (!l->has_post_act) return;
    if (l->post_act.type == KILN_ACT_RELU) {
        for (int64_t i = 0; i < n; i++) out[i] = out[i] < 0 ? 0.0f : out[i];
    } else {
        kcpu_act_range(&l->post_act, out, out, n);
    }
}

static void wino_output(void *arg, int64_t u0, int64_t u1) {
    const wino_job *j = arg;
    const kcpu_wino *w = j->w;
    const kcpu_wino_shape *s = &w->s;
    int m = w->m;
    float yb[4 * 4 * TB];
    out_args a;
    a.xs = s->k * j->ld;
    a.yb = yb;
    for (int64_t u = u0; u < u1; u++) {
        int64_t k = u / j->rows, rr = u % j->rows, r = j->r0 + rr, n = r / w->th, ty = r % w->th;
        int64_t off = ((n * s->k + k) * s->oh + ty * m) * s->ow;
        float *yk = j->y + off;
        const float *rk = j->res ? j->res + off : NULL;
        int nr = (int)KILN_MIN((int64_t)m, s->oh - ty * m);
        a.bias = w->bias ? w->bias[k] : 0.0f;
        for (int64_t tx0 = 0; tx0 < w->tw; tx0 += TB) {
            a.nb = (int)KILN_MIN(TB, w->tw - tx0);
            a.mm = j->mm + k * j->ld + rr * w->tw + tx0;
            w->out(&a);
            int64_t c0 = tx0 * m, c1 = KILN_MIN(s->ow, (tx0 + a.nb) * m);
            for (int p = 0; p < nr; p++) {
                float *dst = yk + p * s->ow;
                const float *src = yb + p * m * TB;
                /* whole tiles, then the columns of a last partial one */
                int64_t full = (c1 - c0) / m, t = 0;
                for (; t < full; t++)
                    for (int q = 0; q < m; q++) dst[c0 + t * m + q] = src[q * TB + t];
                for (int q = 0; c0 + t * m + q < c1; q++) dst[c0 + t * m + q] = src[q * TB + t];
                row_epilogue(j->l, dst + c0, rk ? rk + p * s->ow + c0 : NULL, c1 - c0);
            }
        }
    }
}

static int64_t grain(int64_t work) { return KILN_MAX(1, 16384 / KILN_MAX(1, work)); }

void kcpu_wino_run(const kcpu_wino *w, const kiln_layer *l, const float *x, const float *residual, float *y,
                   kcpu_exec *xc) {
    const kcpu_wino_shape *s = &w->s;
    float *v = kcpu_scratch(xc);
    int64_t rows_all = s->n * w->th, aa = w->a * w->a;
    for (int64_t r0 = 0; r0 < rows_all; r0 += w->chunk_rows) {
        int64_t rows = KILN_MIN(w->chunk_rows, rows_all - r0), ld = rows * w->tw;
        wino_job j = {w, l, x, residual, y, v, v + w->v_floats, r0, rows, ld};
        kcpu_parallel_for(xc, s->c * rows, grain(w->tw * w->m * w->a * w->a), wino_input, &j);
        for (int64_t xi = 0; xi < aa; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->k, (int)ld, (int)s->c, 1.0f,
                        w->u + xi * s->k * s->c, (int)s->c, j.v + xi * s->c * ld, (int)ld, 0.0f,
                        j.mm + xi * s->k * ld, (int)ld);
        kcpu_parallel_for(xc, s->k * rows, grain(w->tw * w->m * w->a * w->a), wino_output, &j);
    }
}
