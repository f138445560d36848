/* kiln CPU backend: Winograd F(2x2, 3x3) convolution (see winograd.h). Per chunk of tile rows:
 * the input transform writes V[xi] (c x tiles), 16 GEMMs M[xi] = U[xi] V[xi] (k x tiles) run
 * on kiln's threads with conv_gemm.h's kernel over U packed at prepare, and the output
 * transform writes y with the bias, residual and activation. */
#include <string.h>

#include "cpu/conv_gemm.h"
#include "cpu/winograd.h"

#define FORCE_INLINE static inline __attribute__((always_inline))

/* F(2x2, 3x3): 2x2 output tiles from 4x4 input tiles, 16 GEMMs. */
enum { M = 2, A = 4, AA = A * A };
/* Tiles per block in the transforms: bounds their stack buffers. */
#define TB 64
/* GEMM blocks: MR output channels x NR tiles. U is packed per xi as conv_gemm.h's panels;
 * V and M are row-major [xi][c or k][tiles], rows padded to a multiple of NR tiles. */
#define MR KCG_MR
#define NR KCG_NR
/* One xi of V per chunk: the GEMM re-reads V[xi] once per MR output channels, so a chunk
 * keeps it about L2-sized; big images and batches take several chunks. */
#define CHUNK_V_XI_BYTES ((size_t)256 << 10)

enum { ACT_NONE, ACT_RELU, ACT_OTHER };

typedef struct in_args {
    const float *plane;      /* input channel plane, h x w */
    int64_t h, w, ih0, col0; /* top input row and left input column of the block's first tile */
    int nb;                  /* tiles in the block (<= TB) */
    float *v;                /* V[0][c][t0]: element xi at v[xi * xs] */
    size_t xs;
} in_args;

typedef struct out_args {
    const float *mm; /* M[0][k][t0]: element xi at mm[xi * xs] */
    size_t xs;
    int nb;
    float bias;
    float *y;         /* output row of the tile row's top, at the block's first column */
    const float *res; /* residual at the same place, or NULL */
    int64_t ow;       /* row stride of y and res */
    int nr;           /* output rows of this tile row (1 or 2) */
    int64_t ncols;    /* output columns of the block */
    int act;          /* ACT_*: ACT_OTHER is left to the caller */
} out_args;

struct kcpu_wino {
    kcpu_wino_shape s;
    int64_t th, tw;     /* tiles down and across one image */
    int64_t kp;         /* panels of MR output channels */
    int64_t chunk_rows; /* tile rows (counted over the batch) per chunk */
    size_t v_floats;    /* V of one chunk */
    size_t u_xi;        /* floats of U per xi */
    float *u;           /* [AA][kp][c][MR], zero past k */
    float *bias;        /* k values or NULL */
};

/* ---- input transform: V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] ---- */

/* The block's 4 input rows as even and odd columns: p[(i * 2 + q) * ld + t] = x[ih0 + i][col0 + 2t + q],
 * zero outside the image; t <= nb since a tile reaches 2 columns into the next one. */
FORCE_INLINE void load_phases(const in_args *a, float *restrict p, int ld) {
    int64_t w = a->w, c0 = a->col0;
    /* the t whose two columns are both inside [0, w) */
    int lo = c0 >= 0 ? 0 : (int)KILN_MIN((int64_t)ld, (-c0 + 1) / 2);
    int hi = (int)KILN_MAX((int64_t)lo, KILN_MIN((int64_t)ld, (w - c0) / 2));
    for (int i = 0; i < A; i++) {
        float *restrict e = p + i * M * ld, *restrict o = e + ld;
        int64_t ih = a->ih0 + i;
        if (ih < 0 || ih >= a->h) {
            memset(e, 0, (size_t)(M * ld) * sizeof(float));
            continue;
        }
        const float *restrict row = a->plane + ih * w;
        for (int t = 0; t < lo; t++) {
            int64_t c = c0 + 2 * t;
            e[t] = c >= 0 && c < w ? row[c] : 0.0f;
            o[t] = c + 1 >= 0 && c + 1 < w ? row[c + 1] : 0.0f;
        }
        for (int t = lo; t < hi; t++) {
            e[t] = row[c0 + 2 * t];
            o[t] = row[c0 + 2 * t + 1];
        }
        for (int t = hi; t < ld; t++) {
            int64_t c = c0 + 2 * t;
            e[t] = c >= 0 && c < w ? row[c] : 0.0f;
            o[t] = c + 1 >= 0 && c + 1 < w ? row[c + 1] : 0.0f;
        }
    }
}

FORCE_INLINE void in_body(const in_args *a) {
    int nb = a->nb, ld = nb + 1, len = M * ld;
    float p[A * M * (TB + 1)], r[A * M * (TB + 1)];
    load_phases(a, p, ld);
    /* down the columns: r_j = sum_i B^T[j][i] d_i, on both phases at once */
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
    /* along the rows: tap s of tile t is phase s % 2 of t + s / 2 */
    for (int j = 0; j < A; j++) {
        const float *restrict ph = r + j * len;
        const float *restrict d0 = ph, *restrict d1 = ph + ld, *restrict d2 = ph + 1, *restrict d3 = ph + ld + 1;
        float *restrict v0 = a->v + (size_t)(j * A) * a->xs, *restrict v1 = v0 + a->xs, *restrict v2 = v1 + a->xs,
                        *restrict v3 = v2 + a->xs;
        for (int t = 0; t < nb; t++) {
            v0[t] = d0[t] - d2[t];
            v1[t] = d1[t] + d2[t];
            v2[t] = d2[t] - d1[t];
            v3[t] = d1[t] - d3[t];
        }
    }
}

/* ---- output transform: Y = A^T M A + bias, A^T = [1 1 1 0; 0 1 -1 -1] ---- */

/* One output row of the block: row[2t + q] = act(src[q * TB + t] + res[2t + q]). */
FORCE_INLINE void store_row(float *restrict row, const float *restrict res, const float *restrict src, int64_t ncols,
                            bool has_res, bool relu) {
    int64_t full = ncols / M, t = 0;
    for (; t < full; t++)
        for (int q = 0; q < M; q++) {
            float v = src[q * TB + t];
            if (has_res) v += res[t * M + q];
            if (relu) v = v < 0.0f ? 0.0f : v;
            row[t * M + q] = v;
        }
    for (int q = 0; t * M + q < ncols; q++) {
        float v = src[q * TB + t];
        if (has_res) v += res[t * M + q];
        if (relu) v = v < 0.0f ? 0.0f : v;
        row[t * M + q] = v;
    }
}

FORCE_INLINE void out_body(const out_args *a) {
    int nb = a->nb;
    float r[M * A * TB]; /* r[(p * A + j) * TB + t] = (A^T M)[p][j] */
    float yb[M * M * TB]; /* yb[(p * M + q) * TB + t] */
    for (int j = 0; j < A; j++) {
        const float *restrict m0 = a->mm + (size_t)j * a->xs, *restrict m1 = m0 + A * a->xs,
                              *restrict m2 = m1 + A * a->xs, *restrict m3 = m2 + A * a->xs;
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
        float *restrict y0 = yb + (p * M) * TB, *restrict y1 = y0 + TB;
        for (int t = 0; t < nb; t++) {
            y0[t] = m0[t] + m1[t] + m2[t] + b;
            y1[t] = m1[t] - m2[t] - m3[t] + b;
        }
    }
    for (int p = 0; p < a->nr; p++) {
        float *row = a->y + p * a->ow;
        const float *res = a->res ? a->res + p * a->ow : NULL, *src = yb + p * M * TB;
        bool relu = a->act == ACT_RELU;
        if (res && relu) store_row(row, res, src, a->ncols, true, true);
        else if (res) store_row(row, res, src, a->ncols, true, false);
        else if (relu) store_row(row, NULL, src, a->ncols, false, true);
        else store_row(row, NULL, src, a->ncols, false, false);
    }
}

/* Winograd runs only where conv_gemm.h's kernel does: the transforms are compiled for it. */
static KCG_TARGET void in_tile_rows(const in_args *a) { in_body(a); }
static KCG_TARGET void out_tile_rows(const out_args *a) { out_body(a); }

/* ---- choice and kernel transform ---- */

/* A Winograd layer's cost beyond its GEMM, in multiply-adds: two more passes of the pool
 * (about 40 us at this machine's 150 GFLOP/s) and the transforms. */
#define WINO_FIXED_MACS 3.0e6

int kcpu_wino_pick(const kcpu_wino_shape *s) {
    if (!kcg_available()) return 0;
    /* few channels: the GEMMs are too thin to pay for the transforms */
    if (s->c < 16 || s->k < 16 || s->oh < 2 || s->ow < 2) return 0;
    /* multiply-adds: im2col's GEMM against Winograd's 16 GEMMs over the tiles (rounded up
     * to whole NR panels), its transforms (about 4 per transformed value) and its fixed
     * cost: small images with few channels stay with im2col */
    double c = (double)s->c, k = (double)s->k;
    double tiles = (double)s->n * (double)((s->oh + 1) / 2) * (double)((s->ow + 1) / 2);
    double direct = 9.0 * c * k * (double)(s->n * s->oh * s->ow);
    double wino = 16.0 * c * k * (double)KILN_ALIGN_UP((int64_t)tiles, NR) + 16.0 * 4.0 * (c + k) * tiles;
    return wino + WINO_FIXED_MACS < direct ? 2 : 0;
}

/* U = G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] */
static const double g2[A][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

kcpu_wino *kcpu_wino_create(const kiln_layer *l, const kiln_env *env, const kcpu_wino_shape *s,
                            const float *kernel, const float *bias, size_t *scratch) {
    size_t head = KILN_ALIGN_UP(sizeof(kcpu_wino), KILN_ALIGN);
    size_t u_xi = KILN_ALIGN_UP(kcg_packed_floats(s->k, s->c), 16);
    size_t ubytes = (size_t)AA * u_xi * sizeof(float);
    kcpu_wino *w = kiln_alloc(env, head + ubytes + (bias ? (size_t)s->k * sizeof(float) : 0));
    /* U = G g G^T as AA matrices [k][c], then packed */
    float *ug = kiln_alloc(env, (size_t)(s->k * s->c * AA) * sizeof(float));
    if (!w || !ug) {
        kiln_free(env, w);
        kiln_free(env, ug);
        kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory transforming the kernel");
        return NULL;
    }
    memset(w, 0, sizeof *w);
    w->s = *s;
    w->th = (s->oh + M - 1) / M;
    w->tw = (s->ow + M - 1) / M;
    w->kp = (s->k + MR - 1) / MR;
    w->u_xi = u_xi;
    w->u = (float *)((char *)w + head);
    if (bias) {
        w->bias = (float *)((char *)w + head + ubytes);
        memcpy(w->bias, bias, (size_t)s->k * sizeof(float));
    }
    for (int64_t k = 0; k < s->k; k++)
        for (int64_t c = 0; c < s->c; c++) {
            const float *f = kernel + (k * s->c + c) * 9;
            double gg[A][3]; /* G g */
            for (int i = 0; i < A; i++)
                for (int j = 0; j < 3; j++)
                    gg[i][j] = g2[i][0] * f[j] + g2[i][1] * f[3 + j] + g2[i][2] * f[6 + j];
            for (int i = 0; i < A; i++)
                for (int j = 0; j < A; j++)
                    ug[((size_t)(i * A + j) * (size_t)s->k + (size_t)k) * (size_t)s->c + (size_t)c] =
                        (float)(gg[i][0] * g2[j][0] + gg[i][1] * g2[j][1] + gg[i][2] * g2[j][2]);
        }
    for (int xi = 0; xi < AA; xi++)
        kcg_pack(ug + (size_t)xi * (size_t)(s->k * s->c), s->c, s->k, s->c, w->u + (size_t)xi * u_xi);
    kiln_free(env, ug);
    /* chunk: whole tile rows, V[xi] of a chunk near CHUNK_V_XI_BYTES (at least one row) */
    int64_t rows = s->n * w->th;
    int64_t chunk = (int64_t)(CHUNK_V_XI_BYTES / ((size_t)s->c * (size_t)w->tw * sizeof(float)));
    w->chunk_rows = KILN_MAX(1, KILN_MIN(chunk, rows));
    int64_t tp = KILN_ALIGN_UP(w->chunk_rows * w->tw, NR);
    w->v_floats = (size_t)AA * (size_t)s->c * (size_t)tp;
    *scratch = (w->v_floats + (size_t)AA * (size_t)s->k * (size_t)tp) * sizeof(float);
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
    int64_t nt, tp;   /* tiles in the chunk, and rounded up to NR: the GEMMs' N and ld */
} wino_job;

/* Units: (channel, tile row of the chunk), channel-major so that a thread walks down a plane. */
static void wino_input(void *arg, int64_t u0, int64_t u1) {
    const wino_job *j = arg;
    const kcpu_wino *w = j->w;
    const kcpu_wino_shape *s = &w->s;
    in_args a;
    a.h = s->h;
    a.w = s->w;
    a.xs = (size_t)s->c * (size_t)j->tp;
    for (int64_t u = u0; u < u1; u++) {
        int64_t c = u / j->rows, rr = u % j->rows, r = j->r0 + rr, n = r / w->th, ty = r % w->th;
        a.plane = j->x + (n * s->c + c) * s->h * s->w;
        a.ih0 = ty * M - s->pt;
        float *vc = j->v + c * j->tp + rr * w->tw;
        for (int64_t tx0 = 0; tx0 < w->tw; tx0 += TB) {
            a.nb = (int)KILN_MIN(TB, w->tw - tx0);
            a.col0 = tx0 * M - s->pl;
            a.v = vc + tx0;
            in_tile_rows(&a);
        }
        /* the padding tiles of the last row: zeros, so that the kernel reads no garbage */
        if (rr == j->rows - 1)
            for (int xi = 0; xi < AA; xi++)
                for (int64_t t = j->nt; t < j->tp; t++) j->v[xi * a.xs + c * j->tp + t] = 0.0f;
    }
}

/* Units: (xi, panel of MR output channels); each streams V[xi] once. */
static void wino_gemm(void *arg, int64_t u0, int64_t u1) {
    const wino_job *j = arg;
    const kcpu_wino *w = j->w;
    const kcpu_wino_shape *s = &w->s;
    size_t tp = (size_t)j->tp;
    for (int64_t u = u0; u < u1; u++) {
        int64_t xi = u / w->kp, k0 = (u % w->kp) * MR;
        const float *up = w->u + (size_t)xi * w->u_xi + (size_t)(k0 * s->c);
        const float *vx = j->v + (size_t)xi * (size_t)s->c * tp;
        float *mx = j->mm + ((size_t)xi * (size_t)s->k + (size_t)k0) * tp;
        int rows = (int)KILN_MIN((int64_t)MR, s->k - k0);
        for (size_t t = 0; t < tp; t += NR) kcg_block(s->c, up, vx + t, tp, mx + t, tp, rows, NR);
    }
}

/* Units: (output channel, tile row of the chunk). */
static void wino_output(void *arg, int64_t u0, int64_t u1) {
    const wino_job *j = arg;
    const kcpu_wino *w = j->w;
    const kcpu_wino_shape *s = &w->s;
    const kiln_layer *l = j->l;
    out_args a;
    a.xs = (size_t)s->k * (size_t)j->tp;
    a.ow = s->ow;
    a.act = !l->has_post_act ? ACT_NONE : l->post_act.type == KILN_ACT_RELU ? ACT_RELU : ACT_OTHER;
    for (int64_t u = u0; u < u1; u++) {
        int64_t k = u / j->rows, rr = u % j->rows, r = j->r0 + rr, n = r / w->th, ty = r % w->th;
        int64_t off = ((n * s->k + k) * s->oh + ty * M) * s->ow;
        a.nr = (int)KILN_MIN((int64_t)M, s->oh - ty * M);
        a.bias = w->bias ? w->bias[k] : 0.0f;
        for (int64_t tx0 = 0; tx0 < w->tw; tx0 += TB) {
            a.nb = (int)KILN_MIN(TB, w->tw - tx0);
            a.mm = j->mm + k * j->tp + rr * w->tw + tx0;
            a.y = j->y + off + tx0 * M;
            a.res = j->res ? j->res + off + tx0 * M : NULL;
            a.ncols = KILN_MIN(s->ow, (tx0 + a.nb) * M) - tx0 * M;
            out_tile_rows(&a);
            if (a.act == ACT_OTHER)
                for (int p = 0; p < a.nr; p++) kcpu_act_range(&l->post_act, a.y + p * s->ow, a.y + p * s->ow, a.ncols);
        }
    }
}

static int64_t grain(int64_t work) { return KILN_MAX(1, 16384 / KILN_MAX(1, work)); }

/* Chunks for kcg_parallel_dynamic: about 8 per thread, no smaller than min. */
static int64_t dyn_chunk(int64_t n, int64_t threads, int64_t min) {
    return KILN_MAX(min, n / (8 * KILN_MAX((int64_t)1, threads)));
}

void kcpu_wino_run(const kcpu_wino *w, const kiln_layer *l, const float *x, const float *residual, float *y,
                   kcpu_exec *xc) {
    const kcpu_wino_shape *s = &w->s;
    float *v = kcpu_scratch(xc);
    int64_t rows_all = s->n * w->th;
    for (int64_t r0 = 0; r0 < rows_all; r0 += w->chunk_rows) {
        int64_t rows = KILN_MIN(w->chunk_rows, rows_all - r0), nt = rows * w->tw;
        int64_t tp = KILN_ALIGN_UP(nt, NR);
        wino_job j = {w, l, x, residual, y, v, v + w->v_floats, r0, rows, nt, tp};
        int64_t t = kcpu_num_threads(xc);
        kcg_parallel_dynamic(xc, s->c * rows, dyn_chunk(s->c * rows, t, grain(w->tw * M * AA)), wino_input, &j);
        kcg_parallel_dynamic(xc, AA * w->kp, dyn_chunk(AA * w->kp, t, 1), wino_gemm, &j);
        kcg_parallel_dynamic(xc, s->k * rows, dyn_chunk(s->k * rows, t, grain(w->tw * M * AA)), wino_output, &j);
    }
}
