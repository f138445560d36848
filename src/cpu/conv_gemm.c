/* kiln CPU backend: the convolution GEMM (see conv_gemm.h). A 6 x 16 register block reads W
 * from panels packed at prepare and B from panels that im2col writes (contiguous, so the
 * kernel's loads stream through L1 without TLB or set conflicts) or, for 1x1 layers, from
 * the input itself; bias, residual and activation are applied to the block before it is
 * stored, so the output is written once. */
#include <stdatomic.h>
#include <string.h>

#include "cpu/conv_gemm.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define KCG_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#endif

#define MR KCG_MR
#define NR KCG_NR
/* Inner sizes longer than KC_MAX take passes of about equal length: a pass's B panel
 * (KC x NR floats, 16 KB) and W panel (KC x MR) fit L1 together. */
#define KC_MAX 256
/* A column block's B (one pass) up to this size stays in L2 while W's panels pass over it. */
#define B_BLOCK_BYTES ((size_t)96 << 10)

/* A thread's W panels (one pass) up to this size stay in L2 while B's panels go by. */
#define W_L2_BYTES ((size_t)192 << 10)

enum { INIT_ZERO, INIT_BIAS, INIT_LOAD };
enum { ACT_NONE, ACT_RELU, ACT_OTHER };

/* What a kernel call starts from and does before storing. */
typedef struct epi {
    int init;          /* INIT_*: zero, the bias, or c (a later pass over k) */
    const float *bias; /* the panel's rows, for INIT_BIAS */
    const float *res;  /* residual block, rows ldc apart; NULL: none */
    bool relu;
} epi;

bool kcg_available(void) {
#ifdef KCG_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

size_t kcg_packed_floats(int64_t m, int64_t k) { return (size_t)((m + MR - 1) / MR) * (size_t)k * MR; }

void kcg_pack(const float *w, int64_t lda, int64_t m, int64_t k, float *dst) {
    for (int64_t p = 0; p < (m + MR - 1) / MR; p++)
        for (int64_t i = 0; i < k; i++)
            for (int r = 0; r < MR; r++) {
                int64_t row = p * MR + r;
                *dst++ = row < m ? w[row * lda + i] : 0.0f;
            }
}

#ifdef KCG_X86

static inline __attribute__((always_inline)) AVX2 __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __attribute__((always_inline)) AVX2 __m256 load_v(const float *p, bool masked, __m256i mk) {
    return masked ? _mm256_maskload_ps(p, mk) : _mm256_loadu_ps(p);
}

/* nv vectors (1 or 2) per row, the last one loaded and stored masked to the remaining
 * lanes when `masked` (B read in place may end there); rows past `rows` are computed
 * (their packed W is zero) but never loaded or stored. */
static inline __attribute__((always_inline)) AVX2 void kern(int nv, bool masked, int64_t k, const float *a,
                                                           const float *b, size_t ldb, float *c, size_t ldc,
                                                           int rows, int cols, const epi *e) {
    __m256i mk = masked ? lane_mask(cols - (nv - 1) * 8) : _mm256_set1_epi32(-1);
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            bool last = v == nv - 1 && masked;
            if (r >= rows || e->init == INIT_ZERO) acc[r][v] = _mm256_setzero_ps();
            else if (e->init == INIT_BIAS) acc[r][v] = _mm256_broadcast_ss(e->bias + r);
            else acc[r][v] = load_v(c + r * ldc + v * 8, last, mk);
        }
    for (int64_t i = 0; i < k; i++, a += MR, b += ldb) {
        __m256 b0 = load_v(b, nv == 1 && masked, mk);
        __m256 b1 = nv == 2 ? load_v(b + 8, masked, mk) : b0;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256 ar = _mm256_broadcast_ss(a + r);
            acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
            if (nv == 2) acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            bool last = v == nv - 1 && masked;
            __m256 x = acc[r][v];
            if (e->res) x = _mm256_add_ps(x, load_v(e->res + r * ldc + v * 8, last, mk));
            if (e->relu) x = _mm256_max_ps(x, _mm256_setzero_ps());
            if (last) _mm256_maskstore_ps(c + r * ldc + v * 8, mk, x);
            else _mm256_storeu_ps(c + r * ldc + v * 8, x);
        }
    }
}

/* A few columns (the tail of a 7x7 image's 49): vectors along W's MR rows instead, four
 * accumulators per column to cover the FMA latency, so a lone column costs about a sixth of
 * a full block rather than half. */
static inline __attribute__((always_inline)) AVX2 void kern_narrow(int cols, int64_t k, const float *a,
                                                                  const float *b, size_t ldb, float *c,
                                                                  size_t ldc, int rows, const epi *e) {
    __m256i rmask = lane_mask(MR);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < cols; j++)
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) acc[j][u] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= k; i += 4, a += 4 * MR, b += 4 * ldb)
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            __m256 w = _mm256_maskload_ps(a + u * MR, rmask);
#pragma GCC unroll 4
            for (int j = 0; j < cols; j++)
                acc[j][u] = _mm256_fmadd_ps(w, _mm256_broadcast_ss(b + u * ldb + j), acc[j][u]);
        }
    for (; i < k; i++, a += MR, b += ldb) {
        __m256 w = _mm256_maskload_ps(a, rmask);
#pragma GCC unroll 4
        for (int j = 0; j < cols; j++) acc[j][0] = _mm256_fmadd_ps(w, _mm256_broadcast_ss(b + j), acc[j][0]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < cols; j++) {
        float v[8];
        _mm256_storeu_ps(v, _mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][1]), _mm256_add_ps(acc[j][2], acc[j][3])));
        for (int r = 0; r < rows; r++) {
            float x = v[r] + (e->init == INIT_BIAS ? e->bias[r] : e->init == INIT_LOAD ? c[r * ldc + j] : 0.0f);
            if (e->res) x += e->res[r * ldc + j];
            if (e->relu) x = x < 0.0f ? 0.0f : x;
            c[r * ldc + j] = x;
        }
    }
}

static AVX2 void kern_cols(int64_t k, const float *a, const float *b, size_t ldb, float *c, size_t ldc, int rows,
                           int cols, const epi *e) {
    switch (cols) {
    case 16: kern(2, false, k, a, b, ldb, c, ldc, rows, cols, e); break;
    case 1: kern_narrow(1, k, a, b, ldb, c, ldc, rows, e); break;
    case 2: kern_narrow(2, k, a, b, ldb, c, ldc, rows, e); break;
    case 3: kern_narrow(3, k, a, b, ldb, c, ldc, rows, e); break;
    case 8: kern(1, false, k, a, b, ldb, c, ldc, rows, cols, e); break;
    default:
        if (cols > 8) kern(2, true, k, a, b, ldb, c, ldc, rows, cols, e);
        else kern(1, true, k, a, b, ldb, c, ldc, rows, cols, e);
    }
}

#else

/* Without AVX2 nothing calls these (kcg_available() is false); kept correct all the same. */
static void kern_cols(int64_t k, const float *a, const float *b, size_t ldb, float *c, size_t ldc, int rows,
                      int cols, const epi *e) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            float acc = e->init == INIT_ZERO ? 0.0f : e->init == INIT_BIAS ? e->bias[r] : c[r * ldc + j];
            for (int64_t i = 0; i < k; i++) acc += a[i * MR + r] * b[i * ldb + j];
            if (e->res) acc += e->res[r * ldc + j];
            if (e->relu && acc < 0.0f) acc = 0.0f;
            c[r * ldc + j] = acc;
        }
}

#endif

void kcg_block(int64_t k, const float *a, const float *b, size_t ldb, float *c, size_t ldc, int rows, int cols) {
    epi e = {INIT_ZERO, NULL, NULL, false};
    kern_cols(k, a, b, ldb, c, ldc, rows, cols, &e);
}

/* ---- the driver: threads take work units (a block of column panels x a group of W
 * panels) from a shared counter, so that a core slowed by another process gets fewer ---- */

typedef struct plan {
    const kcg_problem *p;
    int64_t kc;       /* inner rows per pass */
    int64_t np;       /* column panels per image */
    int64_t per, cbi; /* column panels per block (its B, kc x per*NR, stays in L2), blocks per image */
    int64_t kp, kpg, kg; /* W panels, panels per group, groups */
    int64_t units;
    _Atomic int64_t *next;
    bool fill;        /* each block fills its B before multiplying */
    bool w_outer;     /* W panels in the outer loop: a unit's W does not stay in L2, so each
                         panel stays in L1 over the block's B (which does) instead */
    int act;
} plan;

/* One kernel call of a pass: W panel kp over the columns at j of the block. */
typedef struct pass {
    const plan *pl;
    const float *b; /* the block's B */
    float *c;
    const float *res;
    int64_t rc, kcl, ncb;
    bool first, last;
} pass;

static void pass_call(const pass *ps, int64_t kp, int64_t j) {
    const plan *pl = ps->pl;
    const kcg_problem *p = pl->p;
    size_t coff = (size_t)(kp * MR) * p->ldc + (size_t)j;
    epi e = {ps->first ? (p->bias ? INIT_BIAS : INIT_ZERO) : INIT_LOAD, p->bias ? p->bias + kp * MR : NULL,
             ps->last && ps->res ? ps->res + coff : NULL, ps->last && pl->act == ACT_RELU};
    const float *bp = p->ldb ? ps->b + (size_t)ps->rc * p->ldb + (size_t)j
                             : ps->b + (size_t)(j / NR) * p->b_panel + (size_t)ps->rc * NR;
    kern_cols(ps->kcl, p->a + ((size_t)kp * (size_t)p->k + (size_t)ps->rc) * MR, bp, p->ldb ? p->ldb : NR,
              ps->c + coff, p->ldc,
              (int)KILN_MIN((int64_t)MR, p->m - kp * MR), (int)KILN_MIN((int64_t)NR, ps->ncb - j), &e);
}

/* Column panels [q0, q1) of one image and W panels [kp0, kp1). */
static void run_block(const plan *pl, int64_t img, int64_t q0, int64_t q1, int64_t kp0, int64_t kp1) {
    const kcg_problem *p = pl->p;
    int64_t col0 = q0 * NR;
    pass ps;
    ps.pl = pl;
    ps.ncb = KILN_MIN(q1 * NR, p->ncols) - col0;
    ps.b = p->b + (size_t)img * p->b_img + (p->ldb ? (size_t)col0 : (size_t)q0 * p->b_panel);
    ps.c = p->c + (size_t)img * p->c_img + (size_t)col0;
    ps.res = p->res ? p->res + (size_t)img * p->c_img + (size_t)col0 : NULL;
    for (ps.rc = 0; ps.rc < p->k; ps.rc += pl->kc) {
        ps.kcl = KILN_MIN(pl->kc, p->k - ps.rc);
        ps.first = ps.rc == 0;
        ps.last = ps.rc + ps.kcl == p->k;
        if (pl->w_outer) {
            for (int64_t kp = kp0; kp < kp1; kp++)
                for (int64_t j = 0; j < ps.ncb; j += NR) pass_call(&ps, kp, j);
        } else {
            /* a column panel of B stays in L1 while the W panels pass over it */
            for (int64_t j = 0; j < ps.ncb; j += NR)
                for (int64_t kp = kp0; kp < kp1; kp++) pass_call(&ps, kp, j);
        }
    }
    if (pl->act == ACT_OTHER)
        for (int64_t r = kp0 * MR; r < KILN_MIN(p->m, kp1 * MR); r++)
            kcpu_act_range(&p->l->post_act, ps.c + (size_t)r * p->ldc, ps.c + (size_t)r * p->ldc, ps.ncb);
}

/* One call per thread: units until there are none left. */
static void run_units(void *arg, int64_t s0, int64_t s1) {
    (void)s0;
    (void)s1;
    const plan *pl = arg;
    const kcg_problem *p = pl->p;
    for (;;) {
        int64_t u = atomic_fetch_add_explicit(pl->next, 1, memory_order_relaxed);
        if (u >= pl->units) break;
        int64_t g = u % pl->kg, rest = u / pl->kg, img = rest / pl->cbi;
        int64_t q0 = rest % pl->cbi * pl->per, q1 = KILN_MIN(pl->np, q0 + pl->per);
        int64_t kp0 = g * pl->kpg, kp1 = KILN_MIN(pl->kp, kp0 + pl->kpg);
        if (pl->fill) p->fill(p->fill_arg, img, q0, q1);
        run_block(pl, img, q0, q1, kp0, kp1);
    }
}

/* B filled ahead of the GEMM, in parallel over column panels (when units share columns). */
static void fill_panels(void *arg, int64_t q, int64_t qe) {
    const plan *pl = arg;
    while (q < qe) {
        int64_t img = q / pl->np, q0 = q % pl->np, q1 = KILN_MIN(pl->np, q0 + qe - q);
        pl->p->fill(pl->p->fill_arg, img, q0, q1);
        q += q1 - q0;
    }
}

typedef struct dyn_job {
    int64_t n, chunk;
    _Atomic int64_t next;
    kcpu_range_fn fn;
    void *arg;
} dyn_job;

static void dyn_slot(void *arg, int64_t s0, int64_t s1) {
    (void)s0;
    (void)s1;
    dyn_job *d = arg;
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&d->next, d->chunk, memory_order_relaxed);
        if (i >= d->n) break;
        d->fn(d->arg, i, KILN_MIN(d->n, i + d->chunk));
    }
}

void kcg_parallel_dynamic(kcpu_exec *xc, int64_t n, int64_t chunk, kcpu_range_fn fn, void *arg) {
    if (n <= 0) return;
    chunk = KILN_MAX((int64_t)1, chunk);
    dyn_job d = {n, chunk, 0, fn, arg};
    kcpu_parallel_for(xc, KILN_MIN((int64_t)kcpu_num_threads(xc), (n + chunk - 1) / chunk), 1, dyn_slot, &d);
}

/* Units per thread to aim for: enough to even out a slowed core. */
#define UNITS_PER_THREAD 4

void kcg_run(const kcg_problem *p, kcpu_exec *xc) {
    if (p->m <= 0 || p->ncols <= 0 || p->nimg <= 0) return;
    plan pl;
    pl.p = p;
    pl.act = !p->l || !p->l->has_post_act ? ACT_NONE : p->l->post_act.type == KILN_ACT_RELU ? ACT_RELU : ACT_OTHER;
    int64_t k = KILN_MAX(p->k, (int64_t)1);
    int64_t passes = (k + KC_MAX - 1) / KC_MAX;
    pl.kc = (k + passes - 1) / passes;
    pl.np = (p->ncols + NR - 1) / NR;
    pl.kp = (p->m + MR - 1) / MR;
    /* column blocks as wide as L2 allows (W is read once per block), of about equal width;
     * then W's panels in groups until there are enough units to share out */
    int64_t per_l2 = KILN_MAX((int64_t)1, (int64_t)(B_BLOCK_BYTES / ((size_t)pl.kc * NR * sizeof(float))));
    int64_t threads = kcpu_num_threads(xc), want = threads > 1 ? UNITS_PER_THREAD * threads : 1;
    int64_t blocks = (pl.np + per_l2 - 1) / per_l2;
    pl.per = (pl.np + blocks - 1) / blocks;
    int64_t total = p->nimg * pl.np, cb_total = p->nimg * ((pl.np + pl.per - 1) / pl.per);
    pl.kg = KILN_MAX((int64_t)1, KILN_MIN(pl.kp, (want + cb_total - 1) / cb_total));
    pl.cbi = (pl.np + pl.per - 1) / pl.per;
    pl.kpg = (pl.kp + pl.kg - 1) / pl.kg;
    pl.kg = (pl.kp + pl.kpg - 1) / pl.kpg;
    pl.units = p->nimg * pl.cbi * pl.kg;
    pl.fill = p->fill && pl.kg == 1;
    pl.w_outer = (size_t)pl.kpg * (size_t)pl.kc * MR * sizeof(float) > W_L2_BYTES;
    _Atomic int64_t next = 0;
    pl.next = &next;
    if (p->fill && !pl.fill) kcpu_parallel_for(xc, total, 1, fill_panels, &pl);
    kcpu_parallel_for(xc, KILN_MIN(threads, pl.units), 1, run_units, &pl);
}
