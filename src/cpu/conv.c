/* kiln CPU backend: convolution (im2col + OpenBLAS sgemm, Winograd for 3x3 stride 1, direct
 * loops for depthwise) and deconvolution (sgemm + col2im), float32 NCHW. Rank-3 (NCW) tensors
 * run as N, C, 1, W. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "cpu/conv_gemm.h"
#include "cpu/cpu.h"
#include "cpu/winograd.h"

/* Upper bound on the im2col/col2im buffer: bigger layers are processed in bands of output
 * rows so that scratch stays modest and the column buffer stays near the caches. */
#define COL_BYTES_MAX ((size_t)32 << 20)
/* Below this many output pixels per image, several images share one GEMM (wider N). */
#define GEMM_MIN_COLS 1024

/* Geometry of a convolution. For a deconvolution the "input" is the deconvolution's output
 * and vice versa: col2im is the adjoint of im2col over the same window geometry. */
typedef struct conv_geom {
    int64_t n, c, h, w; /* image side (conv input, deconv output) */
    int64_t k, oh, ow;  /* window side (conv output, deconv input) */
    int64_t g, cg, kg;  /* groups; image / window channels per group */
    int64_t kh, kw, sh, sw, dh, dw, pt, pl;
} conv_geom;

static void geom_fill(const kiln_layer *l, conv_geom *g, bool transposed) {
    const kiln_conv_desc *d = &l->p.conv;
    const kiln_dims *in = &l->inputs[0]->dims, *out = &l->outputs[0]->dims;
    const kiln_dims *img = transposed ? out : in, *win = transposed ? in : out;
    bool r3 = in->nb_dims == 3;
    g->n = in->d[0];
    g->c = img->d[1];
    g->h = r3 ? 1 : img->d[2];
    g->w = img->d[r3 ? 2 : 3];
    g->k = win->d[1];
    g->oh = r3 ? 1 : win->d[2];
    g->ow = win->d[r3 ? 2 : 3];
    g->g = d->groups;
    g->cg = g->c / g->g;
    g->kg = g->k / g->g;
    g->kh = r3 ? 1 : d->kernel[0];
    g->kw = d->kernel[1];
    g->sh = r3 ? 1 : d->stride[0];
    g->sw = d->stride[1];
    g->dh = r3 ? 1 : d->dilation[0];
    g->dw = d->dilation[1];
    g->pt = r3 ? 0 : d->pad_begin[0];
    g->pl = d->pad_begin[1];
}

/* The t in [0, count) with 0 <= t*stride + off < limit, as [*lo, *hi). */
static void tap_range(int64_t off, int64_t stride, int64_t limit, int64_t count, int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t b = limit - off > 0 ? (limit - off + stride - 1) / stride : 0;
    if (b > count) b = count;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* cblas takes int sizes and leading dimensions. */
static kiln_status check_int_sizes(const kiln_layer *l, const int64_t *v, int n) {
    for (int i = 0; i < n; i++)
        if (v[i] > INT_MAX)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "a GEMM dimension (%lld) exceeds the BLAS int range",
                                  (long long)v[i]);
    return KILN_OK;
}

static void fill(float *p, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

/* ---- convolution ---- */

enum { CONV_GEMM = 0, CONV_DEPTHWISE = 1, CONV_WINOGRAD = 2 };

typedef struct conv_state {
    conv_geom geo;
    int mode;
    bool direct;    /* 1x1, stride 1, no padding, one image per GEMM: sgemm reads x itself */
    bool packed;    /* conv_gemm.h runs the GEMMs, wt holds its panels (gpack floats per group) */
    size_t gpack;
    int64_t nb;     /* images per GEMM */
    int64_t band;   /* output rows per GEMM when nb == 1 */
    int64_t crs;    /* cg * kh * kw: the GEMM's inner dimension */
    size_t col_floats, tmp_floats;
    float *wt;      /* [k, crs], row-major: the GEMM's A */
    float *bias;    /* k values, or NULL */
    kcpu_wino *wino; /* CONV_WINOGRAD: its own kernel and bias */
} conv_state;

const char *kcpu_conv_kernel_name(const void *state) {
    const conv_state *s = state;
    if (!s) return "cpu.conv";
    switch (s->mode) {
    case CONV_WINOGRAD: return "cpu.conv_winograd_f2x2_3x3";
    case CONV_DEPTHWISE: return "cpu.conv_depthwise_direct";
    default: return s->packed ? (s->direct ? "cpu.conv_gemm_avx2_direct" : "cpu.conv_im2col_gemm_avx2")
                              : (s->direct ? "cpu.conv_sgemm_direct" : "cpu.conv_im2col_sgemm");
    }
}

static kiln_status check_float(const kiln_layer *l) {
    if (l->inputs[0]->dtype != KILN_FLOAT32 || l->outputs[0]->dtype != KILN_FLOAT32 ||
        l->w[0].dtype != KILN_FLOAT32 || (l->w[1].count && l->w[1].dtype != KILN_FLOAT32))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CPU backend runs this layer in float32 only");
    return KILN_OK;
}

static kiln_status conv_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    kiln_status st = check_float(l);
    if (st != KILN_OK) return st;
    conv_geom g;
    geom_fill(l, &g, false);
    int64_t crs = g.cg * g.kh * g.kw;
    /* Winograd: 3x3, stride 1, dilation 1, one group, and a shape where it pays */
    kcpu_wino_shape ws = {g.n, g.c, g.h, g.w, g.k, g.oh, g.ow, g.pt, g.pl};
    int wm = 0;
    if (l->inputs[0]->dims.nb_dims == 4 && g.g == 1 && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 &&
        g.dh == 1 && g.dw == 1) {
        wm = kcpu_wino_pick(&ws);
    }
    if (wm) {
        conv_state *s = kiln_alloc(env, sizeof *s);
        if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory packing the kernel");
        memset(s, 0, sizeof *s);
        s->geo = g;
        s->mode = CONV_WINOGRAD;
        s->wino = kcpu_wino_create(l, env, &ws, l->w[0].values, l->w[1].count ? l->w[1].values : NULL, scratch);
        if (!s->wino) {
            kiln_free(env, s);
            return KILN_ERR_OUT_OF_MEMORY;
        }
        *state = s;
        return KILN_OK;
    }
    /* Depthwise: one input channel per group, so a GEMM per channel would be tiny. */
    bool depthwise = g.cg == 1 && g.g > 1, packed = !depthwise && kcg_available();
    size_t gpack = packed ? KILN_ALIGN_UP(kcg_packed_floats(g.kg, crs), 16) : 0;
    size_t wcount = packed ? (size_t)g.g * gpack : (size_t)g.k * (size_t)crs;
    size_t bcount = l->w[1].count ? (size_t)g.k : 0;
    size_t head = KILN_ALIGN_UP(sizeof(conv_state), KILN_ALIGN);
    size_t wbytes = KILN_ALIGN_UP(wcount * sizeof(float), KILN_ALIGN);
    conv_state *s = kiln_alloc(env, head + wbytes + bcount * sizeof(float));
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory packing the kernel");
    memset(s, 0, sizeof *s);
    s->geo = g;
    s->crs = crs;
    s->packed = packed;
    s->gpack = gpack;
    s->wt = (float *)((char *)s + head);
    if (packed) {
        for (int64_t gi = 0; gi < g.g; gi++)
            kcg_pack((const float *)l->w[0].values + gi * g.kg * crs, crs, g.kg, crs, s->wt + (size_t)gi * gpack);
    } else {
        memcpy(s->wt, l->w[0].values, wcount * sizeof(float));
    }
    if (bcount) {
        s->bias = (float *)((char *)s + head + wbytes);
        memcpy(s->bias, l->w[1].values, bcount * sizeof(float));
    }
    int64_t p = g.oh * g.ow;
    *scratch = 0;
    if (depthwise) {
        s->mode = CONV_DEPTHWISE;
        *state = s;
        return KILN_OK;
    }
    s->mode = CONV_GEMM;
    size_t row_bytes = (size_t)g.c * (size_t)(g.kh * g.kw) * sizeof(float); /* col bytes per output pixel */
    s->nb = 1;
    if (g.n > 1 && p < GEMM_MIN_COLS) {
        int64_t nb = (GEMM_MIN_COLS + p - 1) / p;
        if (nb > g.n) nb = g.n;
        while (nb > 1 && (size_t)(nb * p) * row_bytes > COL_BYTES_MAX) nb--;
        s->nb = nb;
    }
    bool one = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.h == g.oh &&
               g.w == g.ow;
    if (packed) {
        /* B in panels (conv_gemm.h) that im2col writes, except for 1x1 bands of whole
         * panels, which the GEMM reads from x */
        int64_t band = g.oh;
        while (band > 1 && (size_t)(band * g.ow) * row_bytes > COL_BYTES_MAX) band = (band + 1) / 2;
        s->band = band;
        bool in_place = one && (band * g.ow) % KCG_NR == 0 && ((g.oh % band) * g.ow) % KCG_NR == 0;
        if (!in_place)
            s->col_floats = (size_t)s->nb * (size_t)KILN_ALIGN_UP(band * g.ow, KCG_NR) * (size_t)(g.c * g.kh * g.kw);
    } else if (s->nb > 1) {
        s->band = g.oh;
        s->col_floats = (size_t)(g.c * g.kh * g.kw) * (size_t)(s->nb * p);
        s->tmp_floats = (size_t)g.k * (size_t)(s->nb * p);
    } else if (one) {
        s->direct = true;
        s->band = g.oh;
    } else {
        int64_t band = g.oh;
        while (band > 1 && (size_t)(band * g.ow) * row_bytes > COL_BYTES_MAX) band = (band + 1) / 2;
        s->band = band;
        s->col_floats = (size_t)(g.c * g.kh * g.kw) * (size_t)(band * g.ow);
    }
    int64_t sizes[4] = {g.k, crs * g.g, s->nb * p, g.c * g.h * g.w};
    if ((st = check_int_sizes(l, sizes, 4)) != KILN_OK) {
        kiln_free(env, s);
        return st;
    }
    *scratch = (KILN_ALIGN_UP(s->col_floats, 16) + s->tmp_floats) * sizeof(float);
    *state = s;
    return KILN_OK;
}

typedef struct im2col_job {
    const conv_geom *g;
    const float *x;  /* whole input tensor */
    float *col;      /* rows c*kh*kw over all channels, each of ld floats */
    int64_t n0, nb;  /* images */
    int64_t oh0, oh1; /* output rows (band) */
    int64_t ld;      /* nb * (oh1 - oh0) * ow */
} im2col_job;

static void im2col_rows(void *arg, int64_t r0, int64_t r1) {
    const im2col_job *j = arg;
    const conv_geom *g = j->g;
    int64_t khw = g->kh * g->kw, hw = g->h * g->w, rows = j->oh1 - j->oh0, seg = rows * g->ow;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / khw, t = r % khw, ki = t / g->kw, kj = t % g->kw;
        int64_t off = kj * g->dw - g->pl, lo, hi;
        tap_range(off, g->sw, g->w, g->ow, &lo, &hi);
        for (int64_t b = 0; b < j->nb; b++) {
            const float *xs = j->x + ((j->n0 + b) * g->c + c) * hw;
            float *dst = j->col + r * j->ld + b * seg;
            for (int64_t oh = j->oh0; oh < j->oh1; oh++, dst += g->ow) {
                int64_t ih = oh * g->sh - g->pt + ki * g->dh;
                if (ih < 0 || ih >= g->h) {
                    memset(dst, 0, (size_t)g->ow * sizeof(float));
                    continue;
                }
                const float *src = xs + ih * g->w + off;
                if (lo) memset(dst, 0, (size_t)lo * sizeof(float));
                if (g->sw == 1) {
                    memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                } else {
                    int64_t sw = g->sw;
                    for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * sw];
                }
                if (hi < g->ow) memset(dst + hi, 0, (size_t)(g->ow - hi) * sizeof(float));
            }
        }
    }
}

/* im2col into conv_gemm.h's panels, a block of column panels at a time (kcg_fill_fn):
 * column jj of image b's B is output pixel oh0 * ow + jj, at kcg_b_index(r, jj, b_panel)
 * from the image's base, the lanes past the last column zero. */
typedef struct im2col_packed_job {
    const conv_geom *g;
    const float *x;   /* image n0 */
    float *col;       /* image n0's B */
    int64_t oh0, cols;
    size_t b_panel, b_img;
} im2col_packed_job;

/* d[i] = s[i * sw], i < len <= KCG_NR: strides 1 and 2 (and whole panels) in vector code. */
static inline void copy_run(float *restrict d, const float *restrict s, int64_t len, int64_t sw) {
    if (len == KCG_NR && sw == 1) {
        for (int i = 0; i < KCG_NR; i++) d[i] = s[i];
    } else if (len == KCG_NR && sw == 2) {
        for (int i = 0; i < KCG_NR; i++) d[i] = s[2 * i];
    } else if (sw == 1) {
        for (int64_t i = 0; i < len; i++) d[i] = s[i];
    } else if (sw == 2) {
        for (int64_t i = 0; i < len; i++) d[i] = s[2 * i];
    } else {
        for (int64_t i = 0; i < len; i++) d[i] = s[i * sw];
    }
}

/* Valid output columns of each kernel column, tabulated per call for kernels up to this
 * wide (wider ones compute theirs per row). */
#define IM2COL_TAB 16

static KCG_TARGET void im2col_panels(void *arg, int64_t b, int64_t q0, int64_t q1) {
    const im2col_packed_job *j = arg;
    const conv_geom *g = j->g;
    int64_t hw = g->h * g->w, ow = g->ow;
    int64_t j0 = q0 * KCG_NR, j1 = KILN_MIN(q1 * KCG_NR, j->cols);
    const float *xb = j->x + b * g->c * hw;
    float *base = j->col + (size_t)b * j->b_img;
    int64_t tail = j1 < q1 * KCG_NR ? j1 % KCG_NR : KCG_NR; /* first zero lane of the last panel */
    if (g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 && g->h == g->oh &&
        g->w == ow) {
        /* 1x1, stride 1, no padding: the band is contiguous in x, row r is channel r */
        for (int64_t c = 0; c < g->c; c++) {
            const float *src = xb + c * hw + j->oh0 * g->w;
            float *dr = base + (size_t)c * KCG_NR;
            for (int64_t jj = j0; jj < j1; jj += KCG_NR)
                copy_run(dr + (size_t)(jj / KCG_NR) * j->b_panel, src + jj, KILN_MIN((int64_t)KCG_NR, j1 - jj), 1);
            for (int64_t lane = tail; lane < KCG_NR; lane++) dr[(size_t)(j1 / KCG_NR) * j->b_panel + lane] = 0.0f;
        }
        return;
    }
    int64_t tlo[IM2COL_TAB], thi[IM2COL_TAB];
    for (int64_t kj = 0; kj < KILN_MIN(g->kw, (int64_t)IM2COL_TAB); kj++)
        tap_range(kj * g->dw - g->pl, g->sw, g->w, ow, &tlo[kj], &thi[kj]);
    int64_t oh_first = j->oh0 + j0 / ow, o_first = j0 % ow; /* where the block starts */
    int64_t r = 0;
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++, r++) {
                int64_t off = kj * g->dw - g->pl, lo, hi;
                if (kj < IM2COL_TAB) {
                    lo = tlo[kj];
                    hi = thi[kj];
                } else {
                    tap_range(off, g->sw, g->w, ow, &lo, &hi);
                }
                const float *xs = xb + c * hw;
                float *dr = base + (size_t)r * KCG_NR;
                /* output row by output row, in pieces that stay inside one panel */
                for (int64_t jj = j0, oh = oh_first, o = o_first; jj < j1; oh++, o = 0) {
                    int64_t end = jj + KILN_MIN(ow - o, j1 - jj); /* this output row's last column + 1 */
                    int64_t ih = oh * g->sh - g->pt + ki * g->dh;
                    bool inside = ih >= 0 && ih < g->h;
                    const float *src = xs + (inside ? ih * g->w : 0);
                    while (jj < end) {
                        int64_t lane = jj % KCG_NR, len = KILN_MIN(KCG_NR - lane, end - jj);
                        float *d = dr + (size_t)(jj / KCG_NR) * j->b_panel + (size_t)lane;
                        if (!inside) {
                            for (int64_t i = 0; i < len; i++) d[i] = 0.0f;
                        } else if (o >= lo && o + len <= hi) {
                            copy_run(d, src + (off + o * g->sw), len, g->sw);
                        } else {
                            for (int64_t i = 0; i < len; i++) {
                                int64_t oo = o + i;
                                d[i] = oo >= lo && oo < hi ? src[off + oo * g->sw] : 0.0f;
                            }
                        }
                        jj += len;
                        o += len;
                    }
                }
                for (int64_t lane = tail; lane < KCG_NR; lane++) dr[(size_t)(j1 / KCG_NR) * j->b_panel + lane] = 0.0f;
            }
}

/* Fills output rows with the bias before an sgemm with beta = 1. */
typedef struct bias_job {
    float *out;          /* first row */
    const float *bias;   /* per row */
    int64_t len, stride; /* floats per row written, distance between rows */
} bias_job;

static void bias_rows(void *arg, int64_t r0, int64_t r1) {
    const bias_job *j = arg;
    for (int64_t r = r0; r < r1; r++) fill(j->out + r * j->stride, j->len, j->bias[r]);
}

/* Copies the batched GEMM result [k, nb*p] into nb NCHW images, adding the bias. */
typedef struct scatter_job {
    const conv_state *s;
    const float *tmp;
    float *out; /* image n0 */
    int64_t nb;
} scatter_job;

static void scatter_rows(void *arg, int64_t r0, int64_t r1) {
    const scatter_job *j = arg;
    const conv_geom *g = &j->s->geo;
    int64_t p = g->oh * g->ow, ld = j->nb * p;
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / g->k, k = r % g->k;
        const float *src = j->tmp + k * ld + b * p;
        float *dst = j->out + r * p;
        if (j->s->bias) {
            float bv = j->s->bias[k];
            for (int64_t i = 0; i < p; i++) dst[i] = src[i] + bv;
        } else {
            memcpy(dst, src, (size_t)p * sizeof(float));
        }
    }
}

static int64_t grain_for(int64_t work_per_item) {
    int64_t g = 16384 / (work_per_item > 0 ? work_per_item : 1);
    return g > 0 ? g : 1;
}

static void conv_gemm(const conv_state *s, const float *x, float *y, kcpu_exec *xc) {
    const conv_geom *g = &s->geo;
    int64_t p = g->oh * g->ow, crs = s->crs, rows_all = g->c * g->kh * g->kw;
    float *col = kcpu_scratch(xc);
    float *tmp = col ? col + KILN_ALIGN_UP(s->col_floats, 16) : NULL;
    for (int64_t n0 = 0; n0 < g->n; n0 += s->nb) {
        int64_t nb = KILN_MIN(s->nb, g->n - n0);
        if (nb > 1) {
            im2col_job ij = {g, x, col, n0, nb, 0, g->oh, nb * p};
            kcpu_parallel_for(xc, rows_all, grain_for(ij.ld), im2col_rows, &ij);
            for (int64_t gi = 0; gi < g->g; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->kg, (int)(nb * p), (int)crs, 1.0f,
                            s->wt + gi * g->kg * crs, (int)crs, col + gi * crs * ij.ld, (int)ij.ld, 0.0f,
                            tmp + gi * g->kg * ij.ld, (int)ij.ld);
            scatter_job sj = {s, tmp, y + n0 * g->k * p, nb};
            kcpu_parallel_for(xc, nb * g->k, grain_for(p), scatter_rows, &sj);
            continue;
        }
        const float *xn = x + n0 * g->c * g->h * g->w;
        float *yn = y + n0 * g->k * p;
        for (int64_t oh0 = 0; oh0 < g->oh; oh0 += s->band) {
            int64_t oh1 = KILN_MIN(g->oh, oh0 + s->band), cols = (oh1 - oh0) * g->ow;
            const float *bmat;
            int64_t ldb;
            if (s->direct) {
                bmat = xn;
                ldb = p;
            } else {
                im2col_job ij = {g, x, col, n0, 1, oh0, oh1, cols};
                kcpu_parallel_for(xc, rows_all, grain_for(cols), im2col_rows, &ij);
                bmat = col;
                ldb = cols;
            }
            float beta = 0.0f;
            if (s->bias) {
                bias_job bj = {yn + oh0 * g->ow, s->bias, cols, p};
                kcpu_parallel_for(xc, g->k, grain_for(cols), bias_rows, &bj);
                beta = 1.0f;
            }
            for (int64_t gi = 0; gi < g->g; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->kg, (int)cols, (int)crs, 1.0f,
                            s->wt + gi * g->kg * crs, (int)crs, bmat + gi * crs * ldb, (int)ldb, beta,
                            yn + gi * g->kg * p + oh0 * g->ow, (int)p);
        }
    }
}

typedef struct fill_job {
    im2col_packed_job *ij;
    int64_t np; /* panels per image */
} fill_job;

static void fill_all(void *arg, int64_t q, int64_t qe) {
    const fill_job *f = arg;
    while (q < qe) {
        int64_t b = q / f->np, q0 = q % f->np, q1 = KILN_MIN(f->np, q0 + qe - q);
        im2col_panels(f->ij, b, q0, q1);
        q += q1 - q0;
    }
}

/* The GEMMs through conv_gemm.h, with the bias, residual and activation fused. */
static void conv_packed(const conv_state *s, const kiln_layer *l, const float *x, const float *res, float *y,
                        kcpu_exec *xc) {
    const conv_geom *g = &s->geo;
    int64_t p = g->oh * g->ow, rows_all = g->c * g->kh * g->kw;
    float *col = kcpu_scratch(xc);
    kcg_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.m = g->kg;
    pr.k = s->crs;
    pr.ldc = (size_t)p;
    pr.c_img = (size_t)(g->k * p);
    pr.l = l;
    size_t b_panel = (size_t)rows_all * KCG_NR;
    bool one = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 && g->h == g->oh &&
               g->w == g->ow;
    for (int64_t n0 = 0; n0 < g->n; n0 += s->nb) {
        int64_t nb = KILN_MIN(s->nb, g->n - n0);
        for (int64_t oh0 = 0; oh0 < g->oh; oh0 += s->band) {
            int64_t oh1 = KILN_MIN(g->oh, oh0 + s->band), cols = (oh1 - oh0) * g->ow;
            size_t b_img = (size_t)((cols + KCG_NR - 1) / KCG_NR) * b_panel;
            im2col_packed_job ij = {g, x + n0 * g->c * g->h * g->w, col, oh0, cols, b_panel, b_img};
            pr.nimg = nb;
            pr.ncols = cols;
            pr.b_panel = b_panel;
            pr.b_img = b_img;
            /* 1x1 with whole panels of columns: the GEMM reads x; one group: im2col fused
             * into the GEMM; several: filled once for all groups */
            pr.ldb = 0;
            if (one && cols % KCG_NR == 0) {
                pr.ldb = (size_t)(g->h * g->w);
                pr.b_img = (size_t)(g->c * g->h * g->w);
                pr.fill = NULL;
            } else if (g->g > 1) {
                int64_t np = (cols + KCG_NR - 1) / KCG_NR;
                fill_job fj = {&ij, np};
                kcpu_parallel_for(xc, nb * np, 1, fill_all, &fj);
                pr.fill = NULL;
            } else {
                pr.fill = im2col_panels;
                pr.fill_arg = &ij;
            }
            for (int64_t gi = 0; gi < g->g; gi++) {
                size_t yoff = (size_t)((n0 * g->k + gi * g->kg) * p + oh0 * g->ow);
                pr.a = s->wt + (size_t)gi * s->gpack;
                pr.b = pr.ldb ? x + (size_t)((n0 * g->c + gi * s->crs) * g->h * g->w + oh0 * g->w)
                              : col + (size_t)(gi * s->crs) * KCG_NR;
                pr.c = y + yoff;
                pr.res = res ? res + yoff : NULL;
                pr.bias = s->bias ? s->bias + gi * g->kg : NULL;
                kcg_run(&pr, xc);
            }
        }
    }
}

/* ---- depthwise ---- */

typedef struct dw_job {
    const conv_state *s;
    const float *x;
    float *y;
} dw_job;

/* One output pixel with every bound checked: the border of the fast paths. */
static float dw_point(const conv_geom *g, const float *xs, const float *wk, float acc, int64_t oh, int64_t ow) {
    for (int64_t i = 0; i < g->kh; i++) {
        int64_t ih = oh * g->sh - g->pt + i * g->dh;
        if (ih < 0 || ih >= g->h) continue;
        for (int64_t j = 0; j < g->kw; j++) {
            int64_t iw = ow * g->sw - g->pl + j * g->dw;
            if (iw >= 0 && iw < g->w) acc += wk[i * g->kw + j] * xs[ih * g->w + iw];
        }
    }
    return acc;
}

/* orow[ow] += sum_j wr[j] * xr[ow*sw + j] for ow in [lo, hi), every tap inside the row. */
static void dw_row_taps(float *orow, const float *xr, const float *wr, int64_t kw, int64_t sw, int64_t lo,
                        int64_t hi) {
    if (kw == 5 && sw == 1) {
        float w0 = wr[0], w1 = wr[1], w2 = wr[2], w3 = wr[3], w4 = wr[4];
        for (int64_t ow = lo; ow < hi; ow++)
            orow[ow] += w0 * xr[ow] + w1 * xr[ow + 1] + w2 * xr[ow + 2] + w3 * xr[ow + 3] + w4 * xr[ow + 4];
    } else if (kw == 3 && sw == 1) {
        float w0 = wr[0], w1 = wr[1], w2 = wr[2];
        for (int64_t ow = lo; ow < hi; ow++) orow[ow] += w0 * xr[ow] + w1 * xr[ow + 1] + w2 * xr[ow + 2];
    } else if (kw == 7 && sw == 1) {
        float w0 = wr[0], w1 = wr[1], w2 = wr[2], w3 = wr[3], w4 = wr[4], w5 = wr[5], w6 = wr[6];
        for (int64_t ow = lo; ow < hi; ow++)
            orow[ow] += w0 * xr[ow] + w1 * xr[ow + 1] + w2 * xr[ow + 2] + w3 * xr[ow + 3] + w4 * xr[ow + 4] +
                        w5 * xr[ow + 5] + w6 * xr[ow + 6];
    } else {
        for (int64_t ow = lo; ow < hi; ow++) {
            const float *x = xr + ow * sw;
            float acc = 0.0f;
            for (int64_t j = 0; j < kw; j++) acc += wr[j] * x[j];
            orow[ow] += acc;
        }
    }
}

/* Valid output columns of each kernel column, tabulated once per thread so the row loops do
 * no divisions (kernels wider than this compute them per row). */
#define DW_TAB 16

/* One kernel row over output columns [c0, c1), tap by tap, each tap only where it is inside;
 * tlo/thi: the valid columns of each tap (NULL: compute). */
static void dw_row_border(const conv_geom *g, float *orow, const float *xr, const float *wr, int64_t c0,
                          int64_t c1, const int64_t *tlo, const int64_t *thi) {
    if (c0 >= c1) return;
    for (int64_t jj = 0; jj < g->kw; jj++) {
        int64_t off = jj * g->dw - g->pl, lo, hi;
        if (tlo) {
            lo = tlo[jj];
            hi = thi[jj];
        } else {
            tap_range(off, g->sw, g->w, g->ow, &lo, &hi);
        }
        lo = KILN_MAX(lo, c0);
        hi = KILN_MIN(hi, c1);
        float wv = wr[jj];
        const float *src = xr + off;
        if (g->sw == 1) {
            for (int64_t ow = lo; ow < hi; ow++) orow[ow] += wv * src[ow];
        } else {
            int64_t sw = g->sw;
            for (int64_t ow = lo; ow < hi; ow++) orow[ow] += wv * src[ow * sw];
        }
    }
}

static void dw_planes(void *arg, int64_t p0, int64_t p1) {
    const dw_job *j = arg;
    const conv_state *s = j->s;
    const conv_geom *g = &s->geo;
    int64_t hw = g->h * g->w, ohw = g->oh * g->ow, khw = g->kh * g->kw;
    bool k3 = g->kh == 3 && g->kw == 3 && g->dh == 1 && g->dw == 1;
    /* output columns whose three taps are all inside the row */
    int64_t lo3 = 0, hi3 = 0;
    if (k3) {
        int64_t lo, hi;
        tap_range(-g->pl, g->sw, g->w - 2, g->ow, &lo, &hi);
        lo3 = lo;
        hi3 = hi;
    }
    /* output columns where a whole (undilated) kernel row is inside the input row */
    int64_t lo_all = 0, hi_all = 0;
    if (g->dw == 1) tap_range(-g->pl, g->sw, g->w - (g->kw - 1), g->ow, &lo_all, &hi_all);
    int64_t tlo_buf[DW_TAB], thi_buf[DW_TAB];
    const int64_t *tlo = NULL, *thi = NULL;
    if (g->kw <= DW_TAB) {
        for (int64_t jj = 0; jj < g->kw; jj++)
            tap_range(jj * g->dw - g->pl, g->sw, g->w, g->ow, &tlo_buf[jj], &thi_buf[jj]);
        tlo = tlo_buf;
        thi = thi_buf;
    }
    for (int64_t pl = p0; pl < p1; pl++) {
        int64_t n = pl / g->k, k = pl % g->k, c = k / g->kg;
        const float *xs = j->x + (n * g->c + c) * hw;
        const float *wk = s->wt + k * khw;
        float *o = j->y + pl * ohw;
        float bv = s->bias ? s->bias[k] : 0.0f;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            float *orow = o + oh * g->ow;
            int64_t ih0 = oh * g->sh - g->pt;
            if (k3 && ih0 >= 0 && ih0 + 2 < g->h) {
                const float *r0 = xs + ih0 * g->w - g->pl, *r1 = r0 + g->w, *r2 = r1 + g->w;
                float w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3], w4 = wk[4], w5 = wk[5], w6 = wk[6],
                      w7 = wk[7], w8 = wk[8];
                for (int64_t ow = 0; ow < lo3; ow++) orow[ow] = dw_point(g, xs, wk, bv, oh, ow);
                if (g->sw == 1) {
                    for (int64_t ow = lo3; ow < hi3; ow++)
                        orow[ow] = bv + w0 * r0[ow] + w1 * r0[ow + 1] + w2 * r0[ow + 2] + w3 * r1[ow] +
                                   w4 * r1[ow + 1] + w5 * r1[ow + 2] + w6 * r2[ow] + w7 * r2[ow + 1] +
                                   w8 * r2[ow + 2];
                } else {
                    int64_t sw = g->sw;
                    for (int64_t ow = lo3; ow < hi3; ow++) {
                        int64_t iw = ow * sw;
                        orow[ow] = bv + w0 * r0[iw] + w1 * r0[iw + 1] + w2 * r0[iw + 2] + w3 * r1[iw] +
                                   w4 * r1[iw + 1] + w5 * r1[iw + 2] + w6 * r2[iw] + w7 * r2[iw + 1] +
                                   w8 * r2[iw + 2];
                    }
                }
                for (int64_t ow = hi3; ow < g->ow; ow++) orow[ow] = dw_point(g, xs, wk, bv, oh, ow);
                continue;
            }
            /* general kernel, one kernel row at a time; without dilation the columns where the
             * whole row of taps is inside take every tap in one pass over the output row */
            fill(orow, g->ow, bv);
            for (int64_t i = 0; i < g->kh; i++) {
                int64_t ih = ih0 + i * g->dh;
                if (ih < 0 || ih >= g->h) continue;
                const float *xr = xs + ih * g->w;
                const float *wr = wk + i * g->kw;
                if (g->dw == 1 && lo_all < hi_all) {
                    dw_row_taps(orow, xr - g->pl, wr, g->kw, g->sw, lo_all, hi_all);
                    dw_row_border(g, orow, xr, wr, 0, lo_all, tlo, thi);
                    dw_row_border(g, orow, xr, wr, hi_all, g->ow, tlo, thi);
                    continue;
                }
                dw_row_border(g, orow, xr, wr, 0, g->ow, tlo, thi);
            }
        }
    }
}

static kiln_status conv_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            kcpu_exec *x) {
    const conv_state *s = state;
    const float *res = l->nb_inputs > 1 ? in[1] : NULL;
    /* a residual after the activation: the kernels fuse the activation, then one add pass */
    const float *fused_res = l->res_after_act ? NULL : res;
    if (s->mode == CONV_WINOGRAD) {
        kcpu_wino_run(s->wino, l, in[0], fused_res, out[0], x);
    } else if (s->packed) {
        conv_packed(s, l, in[0], fused_res, out[0], x);
    } else {
        if (s->mode == CONV_DEPTHWISE) {
            dw_job j = {s, in[0], out[0]};
            const conv_geom *g = &s->geo;
            kcpu_parallel_for(x, g->n * g->k, grain_for(g->oh * g->ow * g->kh * g->kw), dw_planes, &j);
        } else {
            conv_gemm(s, in[0], out[0], x);
        }
        kcpu_epilogue(l, out[0], res, x); /* knows where the residual goes */
        return KILN_OK;
    }
    if (l->res_after_act && res) kcpu_add_residual(out[0], res, kiln_dims_volume(&l->outputs[0]->dims), x);
    return KILN_OK;
}

static void conv_release(const kiln_env *env, void *state) {
    conv_state *s = state;
    if (s && s->wino) kcpu_wino_destroy(env, s->wino);
    kiln_free(env, s);
}

const kcpu_kernel kcpu_convolution = {conv_prepare, conv_run, conv_release};

/* ---- deconvolution ---- */

typedef struct deconv_state {
    conv_geom geo;  /* image = deconv output, window = deconv input */
    int64_t rows;   /* kg * kh * kw: col rows per group */
    int64_t band;   /* input rows per GEMM */
    float *wt;      /* per group: [rows, cg_in] = W_g transposed, the GEMM's A */
    float *bias;
} deconv_state;

static kiln_status deconv_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    kiln_status st = check_float(l);
    if (st != KILN_OK) return st;
    conv_geom g;
    geom_fill(l, &g, true);
    /* here g.k / g.kg are the deconv input channels, g.c / g.cg its output channels */
    int64_t rows = g.cg * g.kh * g.kw, cin_g = g.kg;
    size_t wcount = (size_t)g.k * (size_t)rows, bcount = l->w[1].count ? (size_t)g.c : 0;
    size_t head = KILN_ALIGN_UP(sizeof(deconv_state), KILN_ALIGN);
    size_t wbytes = KILN_ALIGN_UP(wcount * sizeof(float), KILN_ALIGN);
    deconv_state *s = kiln_alloc(env, head + wbytes + bcount * sizeof(float));
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory packing the kernel");
    memset(s, 0, sizeof *s);
    s->geo = g;
    s->rows = rows;
    s->wt = (float *)((char *)s + head);
    /* kernel [Cin, Cout/g, kh, kw]: group gi holds Cin rows gi*cin_g.. of `rows` values each */
    const float *w = l->w[0].values;
    for (int64_t gi = 0; gi < g.g; gi++)
        for (int64_t ci = 0; ci < cin_g; ci++)
            for (int64_t r = 0; r < rows; r++)
                s->wt[(gi * rows + r) * cin_g + ci] = w[(gi * cin_g + ci) * rows + r];
    if (bcount) {
        s->bias = (float *)((char *)s + head + wbytes);
        memcpy(s->bias, l->w[1].values, bcount * sizeof(float));
    }
    size_t row_bytes = (size_t)g.g * (size_t)rows * sizeof(float); /* col bytes per input pixel */
    int64_t band = g.oh;
    while (band > 1 && (size_t)(band * g.ow) * row_bytes > COL_BYTES_MAX) band = (band + 1) / 2;
    s->band = band;
    int64_t sizes[3] = {rows, g.oh * g.ow, g.k};
    if ((st = check_int_sizes(l, sizes, 3)) != KILN_OK) {
        kiln_free(env, s);
        return st;
    }
    *scratch = (size_t)(band * g.ow) * row_bytes;
    *state = s;
    return KILN_OK;
}

typedef struct col2im_job {
    const deconv_state *s;
    const float *col; /* [c * kh * kw, cols] for input rows ih0..ih1 */
    float *y;         /* output image */
    int64_t ih0, ih1;
} col2im_job;

/* Adds the column buffer into output planes [c0, c1): a plane only receives its own rows,
 * so planes can be split across threads. */
static void col2im_planes(void *arg, int64_t c0, int64_t c1) {
    const col2im_job *j = arg;
    const conv_geom *g = &j->s->geo;
    int64_t cols = (j->ih1 - j->ih0) * g->ow, khw = g->kh * g->kw;
    for (int64_t c = c0; c < c1; c++) {
        float *plane = j->y + c * g->h * g->w;
        for (int64_t ki = 0; ki < g->kh; ki++) {
            for (int64_t kj = 0; kj < g->kw; kj++) {
                const float *src = j->col + (c * khw + ki * g->kw + kj) * cols;
                int64_t off = kj * g->dw - g->pl, lo, hi;
                tap_range(off, g->sw, g->w, g->ow, &lo, &hi);
                for (int64_t ih = j->ih0; ih < j->ih1; ih++, src += g->ow) {
                    int64_t oh = ih * g->sh - g->pt + ki * g->dh;
                    if (oh < 0 || oh >= g->h) continue;
                    float *dst = plane + oh * g->w + off;
                    if (g->sw == 1) {
                        for (int64_t iw = lo; iw < hi; iw++) dst[iw] += src[iw];
                    } else {
                        int64_t sw = g->sw;
                        for (int64_t iw = lo; iw < hi; iw++) dst[iw * sw] += src[iw];
                    }
                }
            }
        }
    }
}

typedef struct plane_fill_job {
    float *y;
    const float *bias;
    int64_t c, len;
} plane_fill_job;

static void plane_fill(void *arg, int64_t p0, int64_t p1) {
    const plane_fill_job *j = arg;
    for (int64_t p = p0; p < p1; p++) fill(j->y + p * j->len, j->len, j->bias ? j->bias[p % j->c] : 0.0f);
}

static kiln_status deconv_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              kcpu_exec *xc) {
    const deconv_state *s = state;
    const conv_geom *g = &s->geo;
    const float *x = in[0];
    float *y = out[0];
    float *col = kcpu_scratch(xc);
    int64_t ihw = g->oh * g->ow, ohw = g->h * g->w, cin_g = g->kg;
    plane_fill_job fj = {y, s->bias, g->c, ohw};
    kcpu_parallel_for(xc, g->n * g->c, grain_for(ohw), plane_fill, &fj);
    for (int64_t n = 0; n < g->n; n++) {
        const float *xn = x + n * g->k * ihw;
        float *yn = y + n * g->c * ohw;
        for (int64_t ih0 = 0; ih0 < g->oh; ih0 += s->band) {
            int64_t ih1 = KILN_MIN(g->oh, ih0 + s->band), cols = (ih1 - ih0) * g->ow;
            for (int64_t gi = 0; gi < g->g; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->rows, (int)cols, (int)cin_g, 1.0f,
                            s->wt + gi * s->rows * cin_g, (int)cin_g, xn + gi * cin_g * ihw + ih0 * g->ow,
                            (int)ihw, 0.0f, col + gi * s->rows * cols, (int)cols);
            col2im_job cj = {s, col, yn, ih0, ih1};
            kcpu_parallel_for(xc, g->c, grain_for(cols * g->kh * g->kw), col2im_planes, &cj);
        }
    }
    return KILN_OK;
}

const kcpu_kernel kcpu_deconvolution = {deconv_prepare, deconv_run, NULL};
