/* kiln CPU backend: MatMul (numpy semantics, batched with broadcasting) and Gemm (ONNX:
 * alpha * op(A) op(B) + beta * C) on OpenBLAS, float32. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "cpu/cpu.h"

/* C[m, n] = alpha * op(A) op(B) + beta * C, row-major. Vector shapes go to sgemv: sgemm
 * would repack the whole matrix for a single row or column. */
static void product(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    if (m == 1) {
        /* c[0, :] = op(B)^T a: A's k values are contiguous unless A is a transposed column */
        int64_t inca = ta ? lda : 1;
        if (beta == 0.0f) memset(c, 0, (size_t)n * sizeof(float)); /* never read what beta 0 hides */
        if (tb) /* B is [n, k] */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)k, alpha, b, (int)ldb, a, (int)inca, 1.0f, c, 1);
        else /* B is [k, n] */
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)k, (int)n, alpha, b, (int)ldb, a, (int)inca, 1.0f, c, 1);
        return;
    }
    if (n == 1) {
        int64_t incb = tb ? 1 : ldb;
        if (beta == 0.0f)
            for (int64_t i = 0; i < m; i++) c[i * ldc] = 0.0f;
        if (ta) /* A is [k, m] */
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)k, (int)m, alpha, a, (int)lda, b, (int)incb, 1.0f, c,
                        (int)ldc);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)k, alpha, a, (int)lda, b, (int)incb, 1.0f, c,
                        (int)ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static kiln_status check_blas_sizes(const kiln_layer *l, const int64_t *v, int count) {
    for (int i = 0; i < count; i++)
        if (v[i] > INT_MAX)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "a matrix dimension (%lld) exceeds the BLAS int range",
                                  (long long)v[i]);
    for (int i = 0; i < l->nb_inputs; i++)
        if (l->inputs[i] && l->inputs[i]->dtype != KILN_FLOAT32)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CPU backend multiplies float32 only");
    return KILN_OK;
}

/* ---- MatMul ---- */

typedef struct matmul_state {
    int64_t m, n, k;
    int rank;                              /* output batch rank */
    int64_t dims[KILN_MAX_DIMS];           /* output batch dims */
    int64_t astr[KILN_MAX_DIMS], bstr[KILN_MAX_DIMS]; /* in matrices; 0 on broadcast axes */
    int64_t batch;
    bool collapse; /* B shared by every batch item and A not broadcast: one GEMM of batch*m rows */
} matmul_state;

static kiln_status matmul_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_dims *da = &l->inputs[0]->dims, *db = &l->inputs[1]->dims;
    int ra = da->nb_dims, rb = db->nb_dims;
    matmul_state *s = kiln_alloc(env, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    memset(s, 0, sizeof *s);
    s->m = ra == 1 ? 1 : da->d[ra - 2];
    s->k = da->d[ra - 1];
    s->n = rb == 1 ? 1 : db->d[rb - 1];
    int ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0;
    s->rank = ba > bb ? ba : bb;
    int64_t acc_a = 1, acc_b = 1;
    s->batch = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        int ia = i - (s->rank - ba), ib = i - (s->rank - bb);
        int64_t xa = ia >= 0 ? da->d[ia] : 1, xb = ib >= 0 ? db->d[ib] : 1;
        s->dims[i] = xa == 1 ? xb : xa;
        s->astr[i] = xa == 1 ? 0 : acc_a;
        s->bstr[i] = xb == 1 ? 0 : acc_b;
        acc_a *= xa;
        acc_b *= xb;
        s->batch *= s->dims[i];
    }
    s->collapse = acc_b == 1 && acc_a == s->batch;
    int64_t sizes[4] = {s->collapse ? s->batch * s->m : s->m, s->n, s->k, 0};
    kiln_status st = check_blas_sizes(l, sizes, 4);
    if (st != KILN_OK) {
        kiln_free(env, s);
        return st;
    }
    *scratch = 0;
    *state = s;
    return KILN_OK;
}

static kiln_status matmul_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              kcpu_exec *x) {
    const matmul_state *s = state;
    const float *a = in[0], *b = in[1];
    float *c = out[0];
    int64_t am = s->m * s->k, bm = s->k * s->n, cm = s->m * s->n;
    if (s->collapse) {
        product(false, false, s->batch * s->m, s->n, s->k, 1.0f, a, s->k, b, s->n, 0.0f, c, s->n);
        return KILN_OK;
    }
    int64_t idx[KILN_MAX_DIMS] = {0}, ao = 0, bo = 0;
    for (int64_t t = 0; t < s->batch; t++) {
        product(false, false, s->m, s->n, s->k, 1.0f, a + ao * am, s->k, b + bo * bm, s->n, 0.0f, c + t * cm, s->n);
        /* odometer over the batch axes, keeping both operand offsets */
        for (int i = s->rank - 1; i >= 0; i--) {
            ao += s->astr[i];
            bo += s->bstr[i];
            if (++idx[i] < s->dims[i]) break;
            ao -= s->astr[i] * s->dims[i];
            bo -= s->bstr[i] * s->dims[i];
            idx[i] = 0;
        }
    }
    return KILN_OK;
}

const kcpu_kernel kcpu_matmul = {matmul_prepare, matmul_run, NULL};

/* ---- Gemm ---- */

typedef struct gemm_state {
    int64_t m, n, k, lda, ldb;
    bool ta, tb;
    float alpha, beta;
    /* C as a broadcast pattern: element (i, j) is c[i * cs_m + j * cs_n] */
    bool has_c;
    int64_t cs_m, cs_n;
} gemm_state;

static kiln_status gemm_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_gemm_desc *d = &l->p.gemm;
    const kiln_dims *da = &l->inputs[0]->dims, *db = &l->inputs[1]->dims;
    gemm_state *s = kiln_alloc(env, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    memset(s, 0, sizeof *s);
    s->ta = d->trans_a != 0;
    s->tb = d->trans_b != 0;
    s->m = s->ta ? da->d[1] : da->d[0];
    s->k = s->ta ? da->d[0] : da->d[1];
    s->n = s->tb ? db->d[0] : db->d[1];
    s->lda = da->d[1];
    s->ldb = db->d[1];
    s->alpha = d->alpha;
    s->beta = d->beta;
    const kiln_tensor *c = l->nb_inputs > 2 ? l->inputs[2] : NULL;
    s->has_c = c && d->beta != 0.0f;
    if (s->has_c) {
        const kiln_dims *dc = &c->dims;
        int64_t cn = dc->nb_dims >= 1 ? dc->d[dc->nb_dims - 1] : 1;
        int64_t cmr = dc->nb_dims >= 2 ? dc->d[0] : 1;
        s->cs_n = cn == 1 ? 0 : 1;
        s->cs_m = cmr == 1 ? 0 : cn;
    }
    int64_t sizes[5] = {s->m, s->n, s->k, s->lda, s->ldb};
    kiln_status st = check_blas_sizes(l, sizes, 5);
    if (st != KILN_OK) {
        kiln_free(env, s);
        return st;
    }
    *scratch = 0;
    *state = s;
    return KILN_OK;
}

typedef struct cfill_job {
    const gemm_state *s;
    const float *c;
    float *y;
} cfill_job;

static void cfill_rows(void *arg, int64_t r0, int64_t r1) {
    const cfill_job *j = arg;
    const gemm_state *s = j->s;
    float beta = s->beta;
    for (int64_t i = r0; i < r1; i++) {
        float *y = j->y + i * s->n;
        const float *c = j->c + i * s->cs_m;
        if (s->cs_n) {
            for (int64_t t = 0; t < s->n; t++) y[t] = beta * c[t];
        } else {
            float v = beta * c[0];
            for (int64_t t = 0; t < s->n; t++) y[t] = v;
        }
    }
}

static kiln_status gemm_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            kcpu_exec *x) {
    const gemm_state *s = state;
    float *y = out[0];
    float beta = 0.0f;
    if (s->has_c) {
        cfill_job j = {s, in[2], y};
        int64_t grain = 16384 / (s->n > 0 ? s->n : 1);
        kcpu_parallel_for(x, s->m, grain > 0 ? grain : 1, cfill_rows, &j);
        beta = 1.0f;
    }
    product(s->ta, s->tb, s->m, s->n, s->k, s->alpha, in[0], s->lda, in[1], s->ldb, beta, y, s->n);
    kcpu_epilogue(l, y, NULL, x);
    return KILN_OK;
}

const kcpu_kernel kcpu_gemm = {gemm_prepare, gemm_run, NULL};
