/* kiln CUDA backend: the layers that run through NVIDIA libraries. Convolution uses cuDNN
 * on float32 NCHW or, under KILN_FLAG_FP16, float16 channels-last data with float32
 * accumulation (tensor cores), then one pass adds the bias and the fused residual and
 * applies the fused activation; deconvolution uses cuDNN on float32. Gemm and MatMul use
 * cuBLASLt (float32, or float16 with float32 compute) on row-major data by computing the
 * transposed product, with the bias (and ReLU) in the epilogue where it fits. Like
 * TensorRT's tactic selection, the build times the candidates on the device and keeps the
 * fastest: cuDNN's algorithms, cuDNN's fused bias + residual + ReLU call, a 1x1
 * convolution as a cuBLASLt GEMM (channels-last: one GEMM with bias, residual and ReLU in
 * its epilogue), and the cuBLASLt heuristics' top algorithms. */
#include <limits.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/dnn_graph.h"
#include "cuda/host.h"

#define MM_WORKSPACE ((size_t)32 << 20) /* cuBLASLt workspace: what its kernels want at most */

static size_t align256(size_t v) { return KILN_ALIGN_UP(v, 256); }

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* ---- timing candidates at build time ----
 * A bench holds a stream, library handles and scratch buffers for the layer's inputs
 * and output; a candidate is timed by calling the layer's own run function on them. Any
 * failure to set one up just means no timing: the heuristic choice stands. */

#define BENCH_REPS 5

typedef kiln_status (*run_fn)(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x);

typedef struct bench {
    kcu_exec x;
    cudaEvent_t ev[2];
    void *in[4], *out;
    bool ok;
    bool gap;     /* each run follows a plain launch (kcu_build.after_pdl false, PDL on) */
    float gap_ms; /* ... whose own time, measured once, each timing leaves out (-1: not yet) */
} bench;

static void bench_close(bench *bn) {
    if (bn->x.dnn) cudnnDestroy(bn->x.dnn);
    if (bn->x.lt) cublasLtDestroy(bn->x.lt);
    if (bn->ev[0]) cudaEventDestroy(bn->ev[0]);
    if (bn->ev[1]) cudaEventDestroy(bn->ev[1]);
    if (bn->x.stream) {
        cudaStreamSynchronize(bn->x.stream);
        cudaStreamDestroy(bn->x.stream);
    }
    for (int i = 0; i < 4; i++)
        if (bn->in[i]) cudaFree(bn->in[i]);
    if (bn->out) cudaFree(bn->out);
    if (bn->x.scratch) cudaFree(bn->x.scratch);
    if (bn->x.err) cudaFree(bn->x.err);
    memset(bn, 0, sizeof *bn);
    (void)cudaGetLastError();
}

static bool bench_alloc(void **p, size_t bytes) {
    if (cudaMalloc(p, bytes ? bytes : 256) != cudaSuccess) {
        *p = NULL;
        return false;
    }
    return cudaMemset(*p, 0, bytes ? bytes : 256) == cudaSuccess;
}

/* Buffers for every input and the output of l, and `scratch` bytes of scratch. */
static bool bench_open(const kiln_layer *l, const kcu_build *b, bench *bn, size_t scratch) {
    memset(bn, 0, sizeof *bn);
    if (b->untimed) return false;
    size_t total = scratch;
    for (int i = 0; i < l->nb_inputs && i < 4; i++)
        if (l->inputs[i]) total += kcu_span(l->inputs[i]);
    total += kcu_span(l->outputs[0]);
    if (total > 2 * b->ws_limit) return false; /* too big to time; the heuristics will do */
    bool ok = cudaStreamCreateWithFlags(&bn->x.stream, cudaStreamNonBlocking) == cudaSuccess &&
              cudaEventCreate(&bn->ev[0]) == cudaSuccess && cudaEventCreate(&bn->ev[1]) == cudaSuccess &&
              cudnnCreate(&bn->x.dnn) == CUDNN_STATUS_SUCCESS && cublasLtCreate(&bn->x.lt) == CUBLAS_STATUS_SUCCESS &&
              cudnnSetStream(bn->x.dnn, bn->x.stream) == CUDNN_STATUS_SUCCESS &&
              bench_alloc(&bn->x.scratch, scratch) && bench_alloc((void **)&bn->x.err, sizeof(kcu_err));
    for (int i = 0; ok && i < l->nb_inputs && i < 4; i++)
        if (l->inputs[i]) ok = bench_alloc(&bn->in[i], kcu_span(l->inputs[i]));
    if (ok) ok = bench_alloc(&bn->out, kcu_span(l->outputs[0]));
    if (!ok) bench_close(bn);
    bn->ok = ok;
    bn->gap = ok && !b->after_pdl && kcu_pdl_enabled();
    bn->gap_ms = -1.0f;
    (void)cudaGetLastError();
    return ok;
}

/* The device's milliseconds per run: BENCH_REPS runs captured into a CUDA graph, replayed
 * BENCH_ROUNDS times, the fastest replay kept; -1 where capture fails. An engine replays
 * its layers as one graph, so this is the time that counts there; timed as plain
 * launches, the host's launch cost (several microseconds for a library call) hid the
 * difference between small kernels at batch 1, and a choice between them was noise. */
#define BENCH_ROUNDS 3
static kiln_status gap_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           const kcu_exec *x) {
    (void)state, (void)in, (void)out;
    KCU_CUDA(l, kcu_gap(x->stream));
    return KILN_OK;
}

static float bench_graph(bench *bn, const kiln_layer *l, const void *state, run_fn run, const void *const *in,
                         void *const *out) {
    /* where the engine's kernel before this layer is plain, so is the one before each run:
     * a candidate launched as a programmatic dependent gains nothing from the overlap there */
    bool gap = bn->gap && run != gap_run;
    if (gap && bn->gap_ms < 0.0f) { /* the empty kernel's own time, once (its runs take no gap) */
        float g = bench_graph(bn, l, NULL, gap_run, in, out);
        bn->gap_ms = g > 0.0f ? g : 0.0f;
    }
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    float best = -1.0f;
    if (cudaStreamBeginCapture(bn->x.stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1.0f;
    }
    bool ok = true;
    for (int i = 0; ok && i < BENCH_REPS; i++)
        ok = (!gap || gap_run(l, NULL, in, out, &bn->x) == KILN_OK) && run(l, state, in, out, &bn->x) == KILN_OK;
    cudaError_t e = cudaStreamEndCapture(bn->x.stream, &g);
    if (ok && e == cudaSuccess && g && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess) {
        for (int r = 0; r < BENCH_ROUNDS; r++) {
            float ms = 0.0f;
            if (cudaEventRecord(bn->ev[0], bn->x.stream) != cudaSuccess || cudaGraphLaunch(ge, bn->x.stream) != cudaSuccess ||
                cudaEventRecord(bn->ev[1], bn->x.stream) != cudaSuccess || cudaEventSynchronize(bn->ev[1]) != cudaSuccess ||
                cudaEventElapsedTime(&ms, bn->ev[0], bn->ev[1]) != cudaSuccess) {
                best = -1.0f;
                break;
            }
            ms /= BENCH_REPS;
            if (gap) ms = ms > bn->gap_ms ? ms - bn->gap_ms : 0.0f;
            if (best < 0.0f || ms < best) best = ms;
        }
    }
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    cudaStreamSynchronize(bn->x.stream);
    (void)cudaGetLastError();
    return best;
}

/* Milliseconds per run of the layer with `state` as it is set now; INFINITY if it fails. */
static float bench_time(bench *bn, const kiln_layer *l, const void *state, run_fn run) {
    const void *in[4] = {bn->in[0], bn->in[1], bn->in[2], bn->in[3]};
    void *out[1] = {bn->out};
    /* first runs outside any capture: libraries set themselves up on first use */
    for (int i = 0; i < 2; i++)
        if (run(l, state, in, out, &bn->x) != KILN_OK) goto fail;
    if (cudaStreamSynchronize(bn->x.stream) != cudaSuccess) goto fail;
    const char *mode = getenv("KILN_TUNE_GRAPH"); /* =off: plain launches (A/B runs) */
    if (!(mode && !strcmp(mode, "off"))) {
        /* a candidate that cannot be captured would keep the engine from its CUDA graph */
        float ms = bench_graph(bn, l, state, run, in, out);
        return ms >= 0.0f ? ms : INFINITY;
    }
    float ms = 0.0f;
    if (cudaEventRecord(bn->ev[0], bn->x.stream) != cudaSuccess) goto fail;
    for (int i = 0; i < BENCH_REPS; i++)
        if (run(l, state, in, out, &bn->x) != KILN_OK) goto fail;
    if (cudaEventRecord(bn->ev[1], bn->x.stream) != cudaSuccess || cudaEventSynchronize(bn->ev[1]) != cudaSuccess ||
        cudaEventElapsedTime(&ms, bn->ev[0], bn->ev[1]) != cudaSuccess)
        goto fail;
    return ms / BENCH_REPS;
fail:
    cudaStreamSynchronize(bn->x.stream);
    (void)cudaGetLastError();
    return INFINITY;
}

/* ---- kernel choices (tactics) ----
 * A layer's choice as bytes for the plan and the timing cache: kind ('C' convolution,
 * 'D' deconvolution, 'M' matrix product), format version, the path (CONV_*), then the
 * cuDNN algorithm and math type (u32 little-endian each) and, where a cuBLASLt GEMM runs,
 * its algorithm (the library's opaque 64 bytes, valid for the fingerprint's versions). */

#define TACTIC_VERSION 1
#define TACTIC_HEAD 12
#define LT_ALGO_BYTES ((size_t)sizeof(cublasLtMatmulAlgo_t))

typedef struct tactic {
    bool ok;
    int mode;
    uint32_t algo, math;
    const uint8_t *lt; /* cuBLASLt algorithm bytes, NULL if none */
} tactic;

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t tactic_write(uint8_t *buf, size_t cap, char kind, int mode, uint32_t algo, uint32_t math,
                           const cublasLtMatmulAlgo_t *lt) {
    size_t n = TACTIC_HEAD + (lt ? LT_ALGO_BYTES : 0);
    if (n > cap) return 0;
    buf[0] = (uint8_t)kind;
    buf[1] = TACTIC_VERSION;
    buf[2] = (uint8_t)mode;
    buf[3] = lt != NULL;
    put_u32(buf + 4, algo);
    put_u32(buf + 8, math);
    if (lt) memcpy(buf + TACTIC_HEAD, lt, LT_ALGO_BYTES);
    return n;
}

/* The build's hint if it is a well-formed tactic of this kind. */
static tactic tactic_read(const kcu_build *b, char kind) {
    tactic t = {0};
    const uint8_t *p = b->hint;
    if (!p || b->hint_len < TACTIC_HEAD || p[0] != (uint8_t)kind || p[1] != TACTIC_VERSION) return t;
    bool has_lt = p[3] != 0;
    if (b->hint_len != TACTIC_HEAD + (has_lt ? LT_ALGO_BYTES : 0)) return t;
    t.ok = true;
    t.mode = p[2];
    t.algo = get_u32(p + 4);
    t.math = get_u32(p + 8);
    t.lt = has_lt ? p + TACTIC_HEAD : NULL;
    return t;
}

static void hint_taken(const kcu_build *b) {
    if (b->hint_used) *b->hint_used = true;
}

/* ---- Gemm and MatMul through cuBLASLt ----
 * Row-major C[m, n] = A[m, k] B[k, n] is column-major C^T[n, m] = B^T A^T: the first
 * cuBLASLt operand is B, the second A, each read in place as its transpose. */

enum { C_NONE = 0, C_BIAS, C_FILL };
#define MM_CANDIDATES 6

typedef struct mm_state {
    kcu_state base;
    cudaDataType dt; /* of every matrix: CUDA_R_32F, or CUDA_R_16F (float32 compute) */
    size_t es;       /* its element size */
    bool tf32;       /* float32 with TF32 tensor-core math allowed */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t lp, lq, lo; /* first operand (B), second (A), output */
    cublasLtMatmulAlgo_t algo[2];      /* [0]: 16-byte aligned pointers, [1]: any */
    size_t algo_ws[2];
    bool aligned_ok;                   /* batch strides keep 16-byte alignment */
    bool no_fill;                      /* the bias is the caller's own buffer: no op_fill */
    size_t ws;                         /* most any kept algorithm needs */
    /* C_BIAS reads the bias constant through a pointer captured at build; should it move (a
     * refit re-places the constant), the fill path runs on op_fill instead */
    const float *bias;
    bool epi_relu; /* the ReLU is in op's epilogue */
    cublasLtMatmulDesc_t op_fill;
    cublasLtMatmulAlgo_t algo_fill;
    size_t algo_fill_ws;
    int nb_cand;                       /* the heuristics' aligned candidates, for timing */
    cublasLtMatmulAlgo_t cand[MM_CANDIDATES];
    size_t cand_ws[MM_CANDIDATES];
    int64_t m, n, k;
    int64_t ldo;       /* the output's row length (0: n; more: a channel slice of a concat) */
    float alpha, beta; /* of the cuBLASLt call: beta 1 over a C fill */
    int cmode;
    int64_t cs_m, cs_n;
    float cbeta;
    bool skip_mm; /* k == 0 or alpha == 0: only beta * C */
    bool act_pass;
    kcu_act act;
    int64_t outputs; /* elements of the output */
    /* batches: one cuBLASLt call covers a strided batch; outer axes loop on the host */
    int nloop;
    int64_t ldims[KILN_MAX_DIMS], la[KILN_MAX_DIMS], lb[KILN_MAX_DIMS], lc[KILN_MAX_DIMS]; /* elements */
    char name[48]; /* kernel name for engine inspection */
} mm_state;

static kiln_status gemm_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            const kcu_exec *x);
static kiln_status matmul_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x);

static void mm_release(const kiln_env *env, void *state) {
    mm_state *s = state;
    if (!s) return;
    if (s->op) cublasLtMatmulDescDestroy(s->op);
    if (s->op_fill) cublasLtMatmulDescDestroy(s->op_fill);
    if (s->lp) cublasLtMatrixLayoutDestroy(s->lp);
    if (s->lq) cublasLtMatrixLayoutDestroy(s->lq);
    if (s->lo) cublasLtMatrixLayoutDestroy(s->lo);
    kcu_state_free(env, s);
}

static kiln_status layout(const kiln_layer *l, cublasLtMatrixLayout_t *lay, cudaDataType dt, uint64_t rows,
                          uint64_t cols, int64_t ld, int64_t count, int64_t stride) {
    KCU_BLAS(l, cublasLtMatrixLayoutCreate(lay, dt, rows, cols, ld));
    if (count > 1) {
        int32_t c = (int32_t)count;
        KCU_BLAS(l, cublasLtMatrixLayoutSetAttribute(*lay, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &c, sizeof c));
        KCU_BLAS(l, cublasLtMatrixLayoutSetAttribute(*lay, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                     sizeof stride));
    }
    return KILN_OK;
}

/* Asks the heuristics for the best algorithm at each pointer alignment. */
static kiln_status mm_pick(const kiln_layer *l, const kcu_build *b, mm_state *s) {
    cublasLtHandle_t h;
    KCU_BLAS(l, cublasLtCreate(&h));
    cublasLtMatmulPreference_t pref;
    cublasStatus_t bs = cublasLtMatmulPreferenceCreate(&pref);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cublasLtDestroy(h);
        return kcu_blas_fail(l, bs, "cublasLtMatmulPreferenceCreate", __FILE__, __LINE__);
    }
    size_t ws = MM_WORKSPACE < b->ws_limit ? MM_WORKSPACE : b->ws_limit;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    kiln_status st = KILN_OK;
    for (int v = 0; v < 2 && st == KILN_OK; v++) {
        if (v == 0 && !s->aligned_ok) continue;
        uint32_t align = v == 0 ? 16 : (uint32_t)s->es;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align, sizeof align);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align, sizeof align);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align, sizeof align);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align, sizeof align);
        cublasLtMatmulHeuristicResult_t res[MM_CANDIDATES];
        int found = 0;
        int want = v == 0 ? MM_CANDIDATES : 1;
        bs = cublasLtMatmulAlgoGetHeuristic(h, s->op, s->lp, s->lq, s->lo, s->lo, pref, want, res, &found);
        if (bs != CUBLAS_STATUS_SUCCESS || found < 1) {
            st = bs != CUBLAS_STATUS_SUCCESS
                     ? kcu_blas_fail(l, bs, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__)
                     : kg_layer_error(l, KILN_ERR_UNSUPPORTED, "cuBLASLt has no algorithm for this %lldx%lldx%lld product",
                                      (long long)s->m, (long long)s->n, (long long)s->k);
            break;
        }
        s->algo[v] = res[0].algo;
        s->algo_ws[v] = res[0].workspaceSize;
        if (v == 0) {
            s->nb_cand = found;
            for (int i = 0; i < found; i++) {
                s->cand[i] = res[i].algo;
                s->cand_ws[i] = res[i].workspaceSize;
            }
        }
    }
    if (st == KILN_OK && s->op_fill) { /* already at element alignment: fits any pointer */
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        bs = cublasLtMatmulAlgoGetHeuristic(h, s->op_fill, s->lp, s->lq, s->lo, s->lo, pref, 1, &res, &found);
        if (bs != CUBLAS_STATUS_SUCCESS || found < 1)
            st = kg_layer_error(l, KILN_ERR_UNSUPPORTED, "cuBLASLt has no algorithm for this %lldx%lldx%lld product",
                                (long long)s->m, (long long)s->n, (long long)s->k);
        else {
            s->algo_fill = res.algo;
            s->algo_fill_ws = res.workspaceSize;
        }
    }
    s->ws = s->algo_ws[0] > s->algo_ws[1] ? s->algo_ws[0] : s->algo_ws[1];
    if (s->algo_fill_ws > s->ws) s->ws = s->algo_fill_ws;
    for (int i = 0; i < s->nb_cand; i++)
        if (s->cand_ws[i] > s->ws) s->ws = s->cand_ws[i];
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtDestroy(h);
    return st;
}

/* Creates the op descriptor and layouts. ta/tb: A and B stored transposed (Gemm);
 * lda/ldb: their row lengths; count/strides: the strided batch of one call. */
static kiln_status mm_setup(const kiln_layer *l, const kcu_build *b, mm_state *s, bool ta, bool tb, int64_t lda,
                            int64_t ldb, int64_t count, int64_t sa, int64_t sb, int64_t sc, const float *bias) {
    /* float16 data accumulates in float32; float32 data may use TF32 tensor cores */
    cublasComputeType_t ct = s->dt == CUDA_R_32F && b->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasOperation_t op_p = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_q = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    for (int d = 0; d < (bias && !s->no_fill ? 2 : 1); d++) {
        cublasLtMatmulDesc_t *op = d == 0 ? &s->op : &s->op_fill;
        KCU_BLAS(l, cublasLtMatmulDescCreate(op, ct, CUDA_R_32F));
        KCU_BLAS(l, cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSA, &op_p, sizeof op_p));
        KCU_BLAS(l, cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSB, &op_q, sizeof op_q));
    }
    bool relu = s->act_pass && s->act.type == KILN_ACT_RELU;
    cublasLtEpilogue_t epi = bias ? (relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                  : (relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
    if (relu) s->act_pass = false;
    s->epi_relu = relu;
    s->bias = bias;
    KCU_BLAS(l, cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) KCU_BLAS(l, cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    /* B stored [k, n] (or [n, k] when tb) is column-major [n, k] (or [k, n]) with ld = its row length */
    kiln_status st =
        layout(l, &s->lp, s->dt, (uint64_t)(tb ? s->k : s->n), (uint64_t)(tb ? s->n : s->k), ldb, count, sb);
    if (st == KILN_OK)
        st = layout(l, &s->lq, s->dt, (uint64_t)(ta ? s->m : s->k), (uint64_t)(ta ? s->k : s->m), lda, count, sa);
    if (st == KILN_OK) st = layout(l, &s->lo, s->dt, (uint64_t)s->n, (uint64_t)s->m, s->ldo ? s->ldo : s->n, count, sc);
    if (st != KILN_OK) return st;
    int64_t es = (int64_t)s->es;
    s->aligned_ok = (sa * es) % 16 == 0 && (sb * es) % 16 == 0 && (sc * es) % 16 == 0;
    for (int i = 0; i < s->nloop; i++)
        if ((s->la[i] * es) % 16 || (s->lb[i] * es) % 16 || (s->lc[i] * es) % 16) s->aligned_ok = false;
    return mm_pick(l, b, s);
}

/* Sets the matrices' type from a float storage type. */
static void mm_type(mm_state *s, int storage) {
    s->dt = storage == KILN_FLOAT16 ? CUDA_R_16F : CUDA_R_32F;
    s->es = storage == KILN_FLOAT16 ? 2 : 4;
}

static kiln_status mm_new(const kiln_layer *l, const kcu_build *b, mm_state **out) {
    mm_state *s = kiln_calloc(b->env, 1, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    mm_type(s, kg_storage(l->outputs[0]));
    s->tf32 = b->tf32 && s->dt == CUDA_R_32F;
    s->alpha = 1.0f;
    if (l->has_post_act) {
        s->act_pass = true;
        kcu_post_act(l, &s->act);
    }
    *out = s;
    return KILN_OK;
}

/* y = alpha * a b + beta * c (c NULL: y itself) through the epilogue. */
static kiln_status mm_call(const kiln_layer *l, const mm_state *s, const kcu_exec *x, const void *a, const void *b,
                           const void *c, void *y) {
    if (!c) c = y;
    int v = s->aligned_ok && (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)y) % 16) == 0 ? 0 : 1;
    KCU_BLAS(l, cublasLtMatmul(x->lt, s->op, &s->alpha, b, s->lp, a, s->lq, &s->beta, c, s->lo, y, s->lo,
                               &s->algo[v], s->algo_ws[v] ? x->scratch : NULL, s->algo_ws[v], x->stream));
    return KILN_OK;
}

/* An activation over the whole output, in its storage type. */
static kiln_status mm_act(const kiln_layer *l, const mm_state *s, const kcu_exec *x, void *y, kcu_act a) {
    if (s->dt == CUDA_R_16F) KCU_CUDA(l, kcu_activation_st(x->stream, KILN_FLOAT16, s->outputs, y, y, a));
    else KCU_CUDA(l, kcu_activation(x->stream, s->outputs, y, y, a));
    return KILN_OK;
}

/* The kernel name: base, "_f16" on float16 data, "_tf32" on float32 with TF32 math allowed. */
static void mm_name(mm_state *s, const char *base) {
    snprintf(s->name, sizeof s->name, "%s%s", base, s->dt == CUDA_R_16F ? "_f16" : s->tf32 ? "_tf32" : "");
}

/* The workspace the kept algorithms need. */
static void mm_ws(mm_state *m) {
    m->ws = m->algo_ws[0] > m->algo_ws[1] ? m->algo_ws[0] : m->algo_ws[1];
    if (m->algo_fill_ws > m->ws) m->ws = m->algo_fill_ws;
}

/* Whether the aligned algorithm is chosen by timing (else the heuristics' first stands). */
static bool mm_timed(const mm_state *m) { return m->aligned_ok && m->nb_cand > 1; }

/* Takes a stored choice: the heuristics' own when none was timed, else the stored
 * cuBLASLt algorithm if the library still accepts it for these descriptors. */
static bool mm_take(const kcu_build *b, mm_state *m, const uint8_t *lt) {
    if (!mm_timed(m)) return lt == NULL;
    if (!lt) return false;
    cublasLtMatmulAlgo_t algo;
    memcpy(&algo, lt, sizeof algo);
    cublasLtHandle_t h;
    if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        (void)cudaGetLastError();
        return false;
    }
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    size_t limit = MM_WORKSPACE < b->ws_limit ? MM_WORKSPACE : b->ws_limit;
    bool ok = cublasLtMatmulAlgoCheck(h, m->op, m->lp, m->lq, m->lo, m->lo, &algo, &res) == CUBLAS_STATUS_SUCCESS &&
              res.workspaceSize <= limit;
    cublasLtDestroy(h);
    (void)cudaGetLastError();
    if (ok) {
        m->algo[0] = algo;
        m->algo_ws[0] = res.workspaceSize;
    }
    return ok;
}

/* Times the heuristics' aligned candidates by running the layer (run, state) on a bench and
 * keeps the fastest; the workspace then shrinks to what the kept algorithms need. */
static void mm_tune(bench *bn, const kiln_layer *l, mm_state *m, const void *state, run_fn run) {
    if (bn->ok && mm_timed(m)) {
        float best = INFINITY;
        int bi = 0;
        for (int i = 0; i < m->nb_cand; i++) {
            m->algo[0] = m->cand[i];
            m->algo_ws[0] = m->cand_ws[i];
            float t = bench_time(bn, l, state, run);
            if (t < best) {
                best = t;
                bi = i;
            }
        }
        m->algo[0] = m->cand[bi];
        m->algo_ws[0] = m->cand_ws[bi];
    }
    mm_ws(m);
}

/* Tunes a Gemm/MatMul layer's own state against its run function, or takes the hint. */
static void mm_tune_layer(const kiln_layer *l, const kcu_build *b, mm_state *s, run_fn run) {
    tactic t = tactic_read(b, 'M');
    if (t.ok && mm_take(b, s, t.lt)) {
        hint_taken(b);
        mm_ws(s);
        return;
    }
    bench bn;
    if (bench_open(l, b, &bn, s->ws)) {
        mm_tune(&bn, l, s, s, run);
        bench_close(&bn);
    } else {
        mm_ws(s);
    }
}

static size_t mm_tactic(const void *state, uint8_t *buf, size_t cap) {
    const mm_state *m = state;
    return tactic_write(buf, cap, 'M', 0, 0, 0, mm_timed(m) ? &m->algo[0] : NULL);
}

/* The device address a constant input will have at run time (NULL if not a constant). */
static const float *const_input(const kcu_build *b, const kiln_tensor *t) {
    const ke_tensor_plan *p = &b->e->plan[t->id];
    if (p->storage != KE_CONST) return NULL;
    return b->e->plan[p->root].cdata;
}

/* Float32 tensors stored as float32 or float16, row-major, all alike. */
static kiln_status mm_check(const kiln_layer *l) {
    for (int i = 0; i < l->nb_inputs; i++)
        if (l->inputs[i] && l->inputs[i]->dtype != KILN_FLOAT32)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA backend multiplies float32 only");
    int st = kg_storage(l->outputs[0]);
    if (l->outputs[0]->dtype != KILN_FLOAT32 || (st != KILN_FLOAT32 && st != KILN_FLOAT16))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA backend multiplies float32 only");
    return kcu_check_formats(l, st, false, "cuBLASLt");
}

static kiln_status gemm_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    kiln_status st0 = mm_check(l);
    if (st0 != KILN_OK) return st0;
    const kiln_gemm_desc *d = &l->p.gemm;
    const kiln_dims *da = &l->inputs[0]->dims, *db = &l->inputs[1]->dims;
    mm_state *s = NULL;
    kiln_status st = mm_new(l, b, &s);
    if (st != KILN_OK) return st;
    *state = s;
    bool ta = d->trans_a != 0, tb = d->trans_b != 0;
    s->m = ta ? da->d[1] : da->d[0];
    s->k = ta ? da->d[0] : da->d[1];
    s->n = tb ? db->d[0] : db->d[1];
    s->outputs = s->m * s->n;
    s->alpha = d->alpha;
    const kiln_tensor *c = l->nb_inputs > 2 ? l->inputs[2] : NULL;
    s->skip_mm = s->k == 0 || d->alpha == 0.0f;
    const float *bias = NULL;
    if (c && d->beta != 0.0f) {
        const kiln_dims *dc = &c->dims;
        int64_t cn = dc->nb_dims >= 1 ? dc->d[dc->nb_dims - 1] : 1;
        int64_t cm = dc->nb_dims >= 2 ? dc->d[0] : 1;
        s->cs_n = cn == 1 ? 0 : 1;
        s->cs_m = cm == 1 ? 0 : cn;
        s->cbeta = d->beta;
        /* a constant row of n values with beta 1 is the epilogue's bias vector */
        bias = !s->skip_mm && d->beta == 1.0f && cm == 1 && cn == s->n && s->n > 1 ? const_input(b, c) : NULL;
        s->cmode = bias ? C_BIAS : C_FILL;
    }
    s->beta = s->cmode == C_FILL ? 1.0f : 0.0f;
    mm_name(s, s->skip_mm || s->outputs == 0 ? "cuda.fill" : s->cmode == C_BIAS ? "cuda.cublaslt_bias" : "cuda.cublaslt");
    if (s->outputs == 0 || s->skip_mm) return KILN_OK;
    st = mm_setup(l, b, s, ta, tb, da->d[1], db->d[1], 1, 0, 0, 0, bias);
    if (st == KILN_OK) mm_tune_layer(l, b, s, gemm_run);
    *scratch = s->ws;
    return st;
}

static kiln_status mm_finish(const kiln_layer *l, const mm_state *s, const kcu_exec *x, void *y) {
    return s->act_pass ? mm_act(l, s, x, y, s->act) : KILN_OK;
}

static kiln_status fill_c(const kiln_layer *l, const mm_state *s, const kcu_exec *x, void *y, const void *c) {
    if (s->dt == CUDA_R_16F) KCU_CUDA(l, kcu_fill_c_f16(x->stream, y, c, s->m, s->n, s->cs_m, s->cs_n, s->cbeta));
    else KCU_CUDA(l, kcu_fill_c(x->stream, y, c, s->m, s->n, s->cs_m, s->cs_n, s->cbeta));
    return KILN_OK;
}

static kiln_status gemm_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            const kcu_exec *x) {
    const mm_state *s = state;
    void *y = out[0];
    kiln_status st;
    if (s->outputs == 0) return KILN_OK;
    if (s->cmode == C_BIAS && in[2] != (const void *)s->bias) {
        /* the bias constant moved since the build: beta * C, then the plain product on top */
        const float one = 1.0f;
        if ((st = fill_c(l, s, x, y, in[2])) != KILN_OK) return st;
        KCU_BLAS(l, cublasLtMatmul(x->lt, s->op_fill, &s->alpha, in[1], s->lp, in[0], s->lq, &one, y, s->lo, y, s->lo,
                                   &s->algo_fill, s->algo_fill_ws ? x->scratch : NULL, s->algo_fill_ws, x->stream));
        if (s->epi_relu && (st = mm_act(l, s, x, y, (kcu_act){KILN_ACT_RELU, 0.0f, 0.0f})) != KILN_OK) return st;
        return mm_finish(l, s, x, y);
    }
    if (s->cmode == C_FILL && (st = fill_c(l, s, x, y, in[2])) != KILN_OK) return st;
    if (s->skip_mm) {
        if (s->cmode != C_FILL) KCU_CUDA(l, cudaMemsetAsync(y, 0, (size_t)s->outputs * s->es, x->stream));
    } else {
        st = mm_call(l, s, x, in[0], in[1], NULL, y);
        if (st != KILN_OK) return st;
    }
    return mm_finish(l, s, x, y);
}

const kcu_kernel kcu_k_gemm = {gemm_prepare, gemm_run, mm_release, NULL, NULL};

/* numpy matmul: batch axes broadcast. Axes whose strides chain are merged; the innermost
 * merged axis is cuBLASLt's strided batch (stride 0 broadcasts), the rest loop here. */
static kiln_status matmul_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    kiln_status st0 = mm_check(l);
    if (st0 != KILN_OK) return st0;
    const kiln_dims *da = &l->inputs[0]->dims, *db = &l->inputs[1]->dims;
    int ra = da->nb_dims, rb = db->nb_dims;
    mm_state *s = NULL;
    kiln_status st = mm_new(l, b, &s);
    if (st != KILN_OK) return st;
    *state = s;
    s->m = ra == 1 ? 1 : da->d[ra - 2];
    s->k = da->d[ra - 1];
    s->n = rb == 1 ? 1 : db->d[rb - 1];
    int ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0, rank = ba > bb ? ba : bb;
    int64_t dims[KILN_MAX_DIMS], as[KILN_MAX_DIMS], bs[KILN_MAX_DIMS], cs[KILN_MAX_DIMS];
    int64_t acc_a = 1, acc_b = 1, batch = 1;
    int64_t am = s->m * s->k, bm = s->k * s->n, cm = s->m * s->n;
    for (int i = rank - 1; i >= 0; i--) {
        int ia = i - (rank - ba), ib = i - (rank - bb);
        int64_t xa = ia >= 0 ? da->d[ia] : 1, xb = ib >= 0 ? db->d[ib] : 1;
        dims[i] = xa == 1 ? xb : xa;
        as[i] = xa == 1 ? 0 : acc_a * am;
        bs[i] = xb == 1 ? 0 : acc_b * bm;
        cs[i] = batch * cm;
        acc_a *= xa;
        acc_b *= xb;
        batch *= dims[i];
    }
    s->outputs = batch * cm;
    s->skip_mm = s->k == 0;
    mm_name(s, s->skip_mm || s->outputs == 0 ? "cuda.fill" : "cuda.cublaslt");
    if (s->outputs == 0 || s->skip_mm) return KILN_OK;
    if (acc_b == 1 && acc_a == batch) { /* B shared, A not broadcast: one GEMM of batch * m rows */
        s->m *= batch;
        st = mm_setup(l, b, s, false, false, s->k, s->n, 1, 0, 0, 0, NULL);
        if (st == KILN_OK) mm_tune_layer(l, b, s, matmul_run);
        *scratch = s->ws;
        return st;
    }
    /* merge batch axes from the innermost out; size-1 axes move nothing */
    int64_t md[KILN_MAX_DIMS], ma[KILN_MAX_DIMS], mb[KILN_MAX_DIMS], mc[KILN_MAX_DIMS];
    int nm = 0;
    for (int i = rank - 1; i >= 0; i--) {
        if (dims[i] == 1) continue;
        if (nm > 0 && as[i] == ma[nm - 1] * md[nm - 1] && bs[i] == mb[nm - 1] * md[nm - 1] &&
            cs[i] == mc[nm - 1] * md[nm - 1]) {
            md[nm - 1] *= dims[i];
            continue;
        }
        md[nm] = dims[i];
        ma[nm] = as[i];
        mb[nm] = bs[i];
        mc[nm] = cs[i];
        nm++;
    }
    int64_t count = nm ? md[0] : 1, sa = nm ? ma[0] : 0, sb = nm ? mb[0] : 0, sc = nm ? mc[0] : 0;
    if (count > INT32_MAX) return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "batch of %lld matrices", (long long)count);
    s->nloop = nm > 1 ? nm - 1 : 0;
    for (int i = 0; i < s->nloop; i++) { /* outermost first */
        int j = nm - 1 - i;
        s->ldims[i] = md[j];
        s->la[i] = ma[j];
        s->lb[i] = mb[j];
        s->lc[i] = mc[j];
    }
    st = mm_setup(l, b, s, false, false, s->k, s->n, count, sa, sb, sc, NULL);
    if (st == KILN_OK) mm_tune_layer(l, b, s, matmul_run);
    *scratch = s->ws;
    return st;
}

static kiln_status matmul_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x) {
    const mm_state *s = state;
    const char *a = in[0], *b = in[1];
    char *y = out[0];
    if (s->outputs == 0) return KILN_OK;
    if (s->skip_mm) {
        KCU_CUDA(l, cudaMemsetAsync(y, 0, (size_t)s->outputs * s->es, x->stream));
        return mm_finish(l, s, x, y);
    }
    int64_t idx[KILN_MAX_DIMS] = {0}, ao = 0, bo = 0, co = 0;
    size_t es = s->es;
    for (;;) {
        kiln_status st = mm_call(l, s, x, a + ao * es, b + bo * es, NULL, y + co * es);
        if (st != KILN_OK) return st;
        int i = s->nloop - 1;
        for (; i >= 0; i--) { /* odometer over the looped axes */
            ao += s->la[i];
            bo += s->lb[i];
            co += s->lc[i];
            if (++idx[i] < s->ldims[i]) break;
            ao -= s->la[i] * s->ldims[i];
            bo -= s->lb[i] * s->ldims[i];
            co -= s->lc[i] * s->ldims[i];
            idx[i] = 0;
        }
        if (i < 0) break;
    }
    return mm_finish(l, s, x, y);
}

const kcu_kernel kcu_k_matmul = {matmul_prepare, matmul_run, mm_release, NULL, NULL};

/* ---- convolution and deconvolution ---- */

typedef struct conv_state {
    kcu_state base; /* device block: weights, bias (float32 and storage type), pad/crop tables */
    cudnnTensorDescriptor_t xd, yd; /* the layer's input, output (deconv: maybe the full output) */
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd;
    size_t ws;       /* workspace bytes at the start of scratch */
    size_t buf_off;  /* scratch offset of the padded input (conv) or full output (deconv) */
    int st;          /* storage type of input, output and residual: float32, or float16 */
    bool nhwc;       /* channels-last input and output; weights stored K, kh, kw, C/g */
    bool has_res;    /* inputs[1] is a residual added before the activation */
    bool res_after;  /* ... after it (l->res_after_act): fused by kiln's kernel, a pass after the libraries' */
    const void *w;   /* weights in the storage type */
    const float *bias;   /* float32 bias: the layer's, zeros when it has none */
    const void *bias_st; /* the bias in the storage type (cuDNN's fused call, a GEMM epilogue) */
    bool has_bias;
    bool pad_input;    /* conv with asymmetric pads: a pad pass into scratch, cuDNN pads 0 */
    bool crop_output;  /* deconv that cuDNN cannot size directly: full output, then a crop */
    kcu_pad pad;
    int64_t n, k, inner; /* output batch, channels and spatial size for the bias pass */
    int64_t fk;          /* filters: output channels of a convolution, input channels of a deconvolution */
    int64_t cpad;        /* > 0: input channels zero-padded to this many (a float16 stem's 3 to 8) */
    bool s2d;            /* space-to-depth: a strided stem as a stride-1 convolution (conv_s2d_geom) */
    kcu_s2d s2;          /* ... the input transform into scratch at buf_off */
    int64_t s2_kh, s2_kw; /* ... and the transformed kernel's size */
    int64_t e_outer, e_inner; /* the same in memory order: [outer, k, inner] */
    bool has_act;
    kcu_act act;
    int mode;              /* CONV_*: the timed winner */
    uint32_t math;         /* cudnnMathType_t of the chosen algorithm */
    cudnnTensorDescriptor_t bd; /* CONV_FUSED: bias [1, K, 1, 1] and the activation */
    cudnnActivationDescriptor_t ad;
    cudnnConvolutionFwdAlgo_t fused_algo;
    size_t fused_ws;
    kcu_cg *cg;            /* CONV_GRAPH: cuDNN's backend API, the timed engine configuration */
    int cg_index;          /* ... its place in the heuristics' list */
    int64_t cg_engine;     /* ... cuDNN's global engine index (checked when a plan is loaded) */
    size_t cg_ws;          /* ... its workspace bytes */
    bool cg_act_pass;      /* ... an activation the graph does not fuse runs after it */
    bool cg_pitched;       /* ... it writes the pitched output itself (no dense copy) */
    kcu_igemm ig;          /* CONV_IGEMM: kiln's implicit-GEMM kernel (src/cuda/igemm.cu) */
    bool ig_ok;            /* ... applies to this layer */
    int ig_cfg;            /* ... the timed tile shape */
    kcu_stem stem;         /* CONV_STEM: kiln's stem kernel for few input channels (src/cuda/stem.cu) */
    bool stem_ok;          /* ... applies to this layer */
    const void *stem_w;    /* ... its weights [k, kp], float16 (NULL where it does not apply) */
    mm_state *gemm;        /* CONV_GEMM: a 1x1 convolution as a GEMM */
    bool gemm_nhwc;        /* ... one [N*H*W, C] x [C, K] product, bias in its epilogue */
    int64_t yp;            /* output pitch (a channel slice of a concat; 0: dense): the
                            * library paths write a dense copy into scratch after pad_bytes,
                            * and the pass after them writes the slice */
    size_t pad_bytes;      /* scratch bytes of the padded or transformed input, after buf_off */
    char name[64];         /* kernel name for engine inspection */
} conv_state;

/* How a convolution runs: cuDNN then our bias/residual/activation pass; cuDNN's fused
 * bias + residual + ReLU (or identity) call; a 1x1 stride-1 unpadded convolution as a
 * cuBLASLt GEMM (row-major: W[K, C] x X[C, HW] per image; channels-last: X[N*H*W, C] x
 * W[K, C]^T with the bias, residual and ReLU in cuBLASLt's epilogue). */
enum { CONV_CUDNN = 0, CONV_FUSED, CONV_GEMM, CONV_GRAPH, CONV_IGEMM, CONV_STEM };
/* Tactic mode bit: the convolution runs on the space-to-depth transform of its input. */
#define CONV_S2D 0x10
/* Tactic mode bit: the graph writes the concat slice itself (its output tensor pitched). */
#define CONV_GPITCH 0x20

/* ---- cuDNN's backend-API graph as a candidate (convolution and deconvolution) ---- */

/* s->cg for cd: its output pitched as cd->ldy asks, or, where cuDNN offers no engine for
 * that, the dense graph (its output then reaches the slice through the pass); s->cg_pitched
 * says which. s->cg stays NULL where cuDNN has neither. */
static void cg_open(const kiln_layer *l, const kiln_env *env, conv_state *s, kcu_cg_desc cd) {
    s->cg = NULL;
    if (kcu_cg_create(l, env, &cd, &s->cg) != KILN_OK || kcu_cg_count(s->cg) == 0) {
        kcu_cg_free(env, s->cg);
        s->cg = NULL;
        if (cd.ldy) {
            cd.ldy = 0;
            if (kcu_cg_create(l, env, &cd, &s->cg) != KILN_OK) s->cg = NULL;
        }
    }
    s->cg_pitched = s->cg && cd.ldy > 0;
    (void)cudaGetLastError();
}

/* Finalizes every configuration of s->cg (ok[i], its workspace ws[i], *max the largest);
 * when none finalizes for a pitched output, reopens the dense graph (cd, ldy 0) and plans
 * that. Returns the number of configurations (0: no graph). */
static int cg_plan_all(const kiln_layer *l, const kcu_build *b, conv_state *s, kcu_cg_desc cd, bool *ok, size_t *ws,
                       size_t *max) {
    *max = 0;
    for (int pass = 0; pass < 2 && s->cg; pass++) {
        int n = kcu_cg_count(s->cg);
        bool any = false;
        for (int i = 0; i < n; i++) {
            ok[i] = kcu_cg_plan(s->cg, i, b->ws_limit, &ws[i]);
            if (ok[i] && ws[i] > *max) *max = ws[i];
            any = any || ok[i];
        }
        if (any || !s->cg_pitched) return n;
        kcu_cg_free(b->env, s->cg); /* no plan for the pitched output: the dense graph and a pass */
        cd.ldy = 0;
        cg_open(l, b->env, s, cd);
    }
    return 0;
}

/* Times the finalized configurations (ok[i]) with run against *best; a faster one becomes
 * s's choice (CONV_GRAPH, its index and workspace), else s->mode stays. Returns the fastest
 * configuration's time (INFINITY: none ran). */
static float cg_time(bench *bn, const kiln_layer *l, conv_state *s, run_fn run, int n, const bool *ok,
                     const size_t *ws, float *best) {
    int keep = s->mode, won = -1;
    float fastest = INFINITY;
    s->mode = CONV_GRAPH;
    for (int i = 0; i < n; i++) {
        if (!ok[i]) continue;
        kcu_cg_use(s->cg, i);
        float ms = bench_time(bn, l, s, run);
        if (ms < fastest) fastest = ms;
        if (ms < *best) {
            *best = ms;
            won = i;
        }
    }
    if (won >= 0) {
        kcu_cg_use(s->cg, won);
        s->cg_index = won;
        s->cg_ws = ws[won];
    } else {
        s->mode = keep;
    }
    return fastest;
}


/* After timing: the graph the layer chose keeps only its engine configuration; any other
 * choice frees the candidate graphs. */
static void cg_settle(const kcu_build *b, conv_state *s) {
    if (s->mode == CONV_GRAPH) {
        kcu_cg_keep(s->cg);
        s->cg_engine = kcu_cg_engine(s->cg, s->cg_index);
    } else {
        kcu_cg_free(b->env, s->cg);
        s->cg = NULL;
        s->cg_pitched = false;
    }
}

static void conv_release(const kiln_env *env, void *state) {
    conv_state *s = state;
    if (!s) return;
    if (s->xd) cudnnDestroyTensorDescriptor(s->xd);
    if (s->yd) cudnnDestroyTensorDescriptor(s->yd);
    if (s->wd) cudnnDestroyFilterDescriptor(s->wd);
    if (s->cd) cudnnDestroyConvolutionDescriptor(s->cd);
    if (s->bd) cudnnDestroyTensorDescriptor(s->bd);
    if (s->ad) cudnnDestroyActivationDescriptor(s->ad);
    if (s->gemm) mm_release(env, s->gemm);
    kcu_cg_free(env, s->cg);
    kcu_state_free(env, s);
}

/* Window geometry of a convolution layer; rank-3 (NCW) runs as N, C, 1, W. */
typedef struct conv_geom {
    int64_t n, c, h, w;   /* layer input */
    int64_t k, oh, ow;    /* layer output */
    int64_t g, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oph, opw;
} conv_geom;

static void geom_fill(const kiln_layer *l, conv_geom *g) {
    const kiln_conv_desc *d = &l->p.conv;
    const kiln_dims *in = &l->inputs[0]->dims, *out = &l->outputs[0]->dims;
    bool r3 = in->nb_dims == 3;
    g->n = in->d[0];
    g->c = in->d[1];
    g->h = r3 ? 1 : in->d[2];
    g->w = in->d[r3 ? 2 : 3];
    g->k = out->d[1];
    g->oh = r3 ? 1 : out->d[2];
    g->ow = out->d[r3 ? 2 : 3];
    g->g = d->groups;
    g->kh = r3 ? 1 : d->kernel[0];
    g->kw = d->kernel[1];
    g->sh = r3 ? 1 : d->stride[0];
    g->sw = d->stride[1];
    g->dh = r3 ? 1 : d->dilation[0];
    g->dw = d->dilation[1];
    g->pt = r3 ? 0 : d->pad_begin[0];
    g->pl = d->pad_begin[1];
    g->pb = r3 ? 0 : d->pad_end[0];
    g->pr = d->pad_end[1];
    g->oph = r3 ? 0 : d->output_padding[0];
    g->opw = d->output_padding[1];
}

static kiln_status check_conv_sizes(const kiln_layer *l, const int64_t *v, int n) {
    for (int i = 0; i < n; i++)
        if (!fits_int(v[i]))
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "a size (%lld) exceeds what cuDNN takes (int)", (long long)v[i]);
    return KILN_OK;
}

static kiln_status check_float(const kiln_layer *l) {
    if (l->inputs[0]->dtype != KILN_FLOAT32 || l->outputs[0]->dtype != KILN_FLOAT32 ||
        l->w[0].dtype != KILN_FLOAT32 || (l->w[1].count && l->w[1].dtype != KILN_FLOAT32))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA backend runs this layer in float32 only");
    return KILN_OK;
}

/* Algorithms whose float32 error is well above plain accumulation: kept for TF32 builds. */
static bool fwd_strict_ok(cudnnConvolutionFwdAlgo_t a) {
    return a != CUDNN_CONVOLUTION_FWD_ALGO_FFT && a != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}

static bool bwd_strict_ok(cudnnConvolutionBwdDataAlgo_t a) {
    return a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT && a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}

/* Without the TF32 flag every float32 algorithm runs with FMA math: plain float32
 * products. Float16 data runs on tensor cores (float32 accumulation) where the algorithm
 * has such kernels; otherwise the math cuDNN found. */
static cudnnMathType_t math_for(const kcu_build *b, bool f16, cudnnMathType_t found) {
    if (f16) return found == CUDNN_FMA_MATH ? found : CUDNN_TENSOR_OP_MATH;
    if (!b->tf32) return CUDNN_FMA_MATH;
    return found == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && !b->loose ? CUDNN_DEFAULT_MATH : found;
}

/* Times the forward candidates (cudnnFind on a temporary handle) and keeps the fastest
 * that fits the workspace limit and the precision rules. */
/* A stored algorithm and math type, if still valid for these descriptors and rules. */
static bool math_ok(const kcu_build *b, bool f16, uint32_t math) {
    if (math != CUDNN_DEFAULT_MATH && math != CUDNN_TENSOR_OP_MATH && math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
        math != CUDNN_FMA_MATH)
        return false;
    return f16 || math == CUDNN_FMA_MATH || (b->tf32 && (b->loose || math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION));
}

static bool take_forward(const kcu_build *b, conv_state *s, const tactic *t) {
    if (!t->ok || t->algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT || !math_ok(b, s->st == KILN_FLOAT16, t->math) ||
        (!b->loose && !fwd_strict_ok((cudnnConvolutionFwdAlgo_t)t->algo)))
        return false;
    cudnnHandle_t h;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) return false;
    size_t ws = 0;
    bool ok = cudnnSetConvolutionMathType(s->cd, (cudnnMathType_t)t->math) == CUDNN_STATUS_SUCCESS &&
              cudnnGetConvolutionForwardWorkspaceSize(h, s->xd, s->wd, s->cd, s->yd, (cudnnConvolutionFwdAlgo_t)t->algo,
                                                      &ws) == CUDNN_STATUS_SUCCESS &&
              ws <= b->ws_limit;
    cudnnDestroy(h);
    (void)cudaGetLastError();
    if (ok) {
        s->fwd = (cudnnConvolutionFwdAlgo_t)t->algo;
        s->ws = ws;
        s->math = t->math;
    }
    return ok;
}

static bool take_backward(const kcu_build *b, conv_state *s, const tactic *t) {
    if (!t->ok || t->algo >= CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT || !math_ok(b, s->st == KILN_FLOAT16, t->math) ||
        (!b->loose && !bwd_strict_ok((cudnnConvolutionBwdDataAlgo_t)t->algo)))
        return false;
    cudnnHandle_t h;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) return false;
    size_t ws = 0;
    bool ok = cudnnSetConvolutionMathType(s->cd, (cudnnMathType_t)t->math) == CUDNN_STATUS_SUCCESS &&
              cudnnGetConvolutionBackwardDataWorkspaceSize(h, s->wd, s->xd, s->cd, s->yd,
                                                           (cudnnConvolutionBwdDataAlgo_t)t->algo, &ws) ==
                  CUDNN_STATUS_SUCCESS &&
              ws <= b->ws_limit;
    cudnnDestroy(h);
    (void)cudaGetLastError();
    if (ok) {
        s->bwd = (cudnnConvolutionBwdDataAlgo_t)t->algo;
        s->ws = ws;
        s->math = t->math;
    }
    return ok;
}

/* The math type set on the convolution descriptor now. */
static uint32_t math_now(const conv_state *s) {
    cudnnMathType_t m = CUDNN_DEFAULT_MATH;
    (void)cudnnGetConvolutionMathType(s->cd, &m);
    return (uint32_t)m;
}

static kiln_status pick_forward(const kiln_layer *l, const kcu_build *b, conv_state *s) {
    bool f16 = s->st == KILN_FLOAT16;
    /* float16: the search must be allowed tensor cores (the default math type lets cuDNN
     * use them for TF32 only), as the run is */
    if (f16) (void)cudnnSetConvolutionMathType(s->cd, CUDNN_TENSOR_OP_MATH);
    cudnnHandle_t h;
    KCU_DNN(l, cudnnCreate(&h));
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    cudnnStatus_t ds = b->untimed ? CUDNN_STATUS_NOT_SUPPORTED
                                  : cudnnFindConvolutionForwardAlgorithm(h, s->xd, s->wd, s->cd, s->yd,
                                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf);
    if (ds != CUDNN_STATUS_SUCCESS) { /* e.g. no memory to time with: take the heuristics' order */
        (void)cudaGetLastError();
        found = 0;
        ds = cudnnGetConvolutionForwardAlgorithm_v7(h, s->xd, s->wd, s->cd, s->yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                    &found, perf);
        if (ds != CUDNN_STATUS_SUCCESS) found = 0;
    }
    bool chosen = false;
    for (int i = 0; i < found && !chosen; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || (!b->loose && !fwd_strict_ok(perf[i].algo))) continue;
        size_t ws = 0;
        if (cudnnSetConvolutionMathType(s->cd, math_for(b, f16, perf[i].mathType)) != CUDNN_STATUS_SUCCESS ||
            cudnnGetConvolutionForwardWorkspaceSize(h, s->xd, s->wd, s->cd, s->yd, perf[i].algo, &ws) !=
                CUDNN_STATUS_SUCCESS ||
            ws > b->ws_limit)
            continue;
        s->fwd = perf[i].algo;
        s->ws = ws;
        chosen = true;
    }
    if (!chosen) { /* implicit GEMM needs no workspace and takes every geometry */
        s->fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
        ds = cudnnSetConvolutionMathType(s->cd, f16 ? CUDNN_TENSOR_OP_MATH : b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
        if (ds == CUDNN_STATUS_SUCCESS)
            ds = cudnnGetConvolutionForwardWorkspaceSize(h, s->xd, s->wd, s->cd, s->yd, s->fwd, &s->ws);
        if (ds != CUDNN_STATUS_SUCCESS) {
            cudnnDestroy(h);
            return kcu_dnn_fail(l, ds, "choosing a convolution algorithm", __FILE__, __LINE__);
        }
    }
    cudnnDestroy(h);
    (void)cudaGetLastError();
    s->math = math_now(s);
    return KILN_OK;
}

static kiln_status pick_backward(const kiln_layer *l, const kcu_build *b, conv_state *s) {
    bool f16 = s->st == KILN_FLOAT16;
    if (f16) (void)cudnnSetConvolutionMathType(s->cd, CUDNN_TENSOR_OP_MATH);
    cudnnHandle_t h;
    KCU_DNN(l, cudnnCreate(&h));
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int found = 0;
    /* the deconvolution input is the forward convolution's dy, its output dx */
    cudnnStatus_t ds = b->untimed ? CUDNN_STATUS_NOT_SUPPORTED
                                  : cudnnFindConvolutionBackwardDataAlgorithm(h, s->wd, s->xd, s->cd, s->yd,
                                                                              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                                              &found, perf);
    if (ds != CUDNN_STATUS_SUCCESS) {
        (void)cudaGetLastError();
        found = 0;
        ds = cudnnGetConvolutionBackwardDataAlgorithm_v7(h, s->wd, s->xd, s->cd, s->yd,
                                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf);
        if (ds != CUDNN_STATUS_SUCCESS) found = 0;
    }
    bool chosen = false;
    for (int i = 0; i < found && !chosen; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || (!b->loose && !bwd_strict_ok(perf[i].algo))) continue;
        size_t ws = 0;
        if (cudnnSetConvolutionMathType(s->cd, math_for(b, f16, perf[i].mathType)) != CUDNN_STATUS_SUCCESS ||
            cudnnGetConvolutionBackwardDataWorkspaceSize(h, s->wd, s->xd, s->cd, s->yd, perf[i].algo, &ws) !=
                CUDNN_STATUS_SUCCESS ||
            ws > b->ws_limit)
            continue;
        s->bwd = perf[i].algo;
        s->ws = ws;
        chosen = true;
    }
    if (!chosen) {
        s->bwd = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
        ds = cudnnSetConvolutionMathType(s->cd, f16 ? CUDNN_TENSOR_OP_MATH : b->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
        if (ds == CUDNN_STATUS_SUCCESS)
            ds = cudnnGetConvolutionBackwardDataWorkspaceSize(h, s->wd, s->xd, s->cd, s->yd, s->bwd, &s->ws);
        if (ds != CUDNN_STATUS_SUCCESS) {
            cudnnDestroy(h);
            return kcu_dnn_fail(l, ds, "choosing a deconvolution algorithm", __FILE__, __LINE__);
        }
    }
    cudnnDestroy(h);
    (void)cudaGetLastError();
    s->math = math_now(s);
    return KILN_OK;
}

/* The weights as the kernels read them: float32 as given, or float16, channels-last
 * (K, kh, kw, C/g, zero-padded to s->cpad channels when set) when the data is. *tmp: a
 * converted copy the caller frees. */
static kiln_status conv_weights(const kiln_layer *l, const kiln_env *env, const conv_state *s, const void **src,
                                size_t *bytes, void **tmp) {
    const kiln_weights *w = &l->w[0];
    *tmp = NULL;
    *src = w->values;
    *bytes = (size_t)w->count * sizeof(float);
    if (s->st == KILN_FLOAT32 && !s->nhwc) return KILN_OK;
    const float *f = w->values;
    int64_t K = w->count ? s->fk : 0;
    int64_t per = K ? w->count / K : 0; /* C/g * kh * kw */
    if (s->s2d) { /* W'[k, jy, jx, (ry*S + rx)*C + c] = W[k, c, S*jy + ry, S*jx + rx], zeros past the kernel */
        const kcu_s2d *q = &s->s2;
        int64_t S = q->s, C = q->c, kh = l->p.conv.kernel[0], kw = l->p.conv.kernel[1];
        int64_t KH = s->s2_kh, KW = s->s2_kw, count = K * KH * KW * q->cs;
        uint16_t *h = kiln_calloc(env, (size_t)(count ? count : 1), sizeof(uint16_t));
        if (!h) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory converting the weights");
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t ch = ((i % S) * S + j % S) * C + c;
                        kcu_to_half(h + ((k * KH + i / S) * KW + j / S) * q->cs + ch, f + ((k * C + c) * kh + i) * kw + j, 1);
                    }
        *tmp = h;
        *src = h;
        *bytes = (size_t)count * sizeof(uint16_t);
        return KILN_OK;
    }
    int64_t kh = 1, kw = 1;
    if (s->nhwc) {
        kh = l->p.conv.kernel[0];
        kw = l->p.conv.kernel[1];
    }
    int64_t cg = per / (kh * kw); /* kh, kw >= 1 */
    int64_t cs = s->nhwc && s->cpad > cg ? s->cpad : cg; /* channel stride of the result */
    int64_t count = K * kh * kw * cs;
    size_t es = s->st == KILN_FLOAT16 ? 2 : 4;
    char *h = kiln_calloc(env, (size_t)(count ? count : 1), es); /* zeros in the padding */
    if (!h) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory converting the weights");
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < cg; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++) {
                    int64_t from = ((k * cg + c) * kh + i) * kw + j;
                    int64_t to = s->nhwc ? ((k * kh + i) * kw + j) * cs + c : from;
                    if (es == 2) kcu_to_half((uint16_t *)h + to, f + from, 1);
                    else ((float *)h)[to] = f[from];
                }
    *tmp = h;
    *src = h;
    *bytes = (size_t)count * es;
    return KILN_OK;
}

/* A deconvolution's weights for kiln's GEMM (kcu_igemm with uh, uw): float16 [kh, kw, K, C]
 * from ONNX's [C, K, kh, kw] (one group), so row (i, j, k) holds the C input channels that
 * make output channel k at offset (i, j) of an input pixel's kh x kw output block. Same
 * byte count as the cuDNN layout. *out: the caller frees. */
static kiln_status deconv_gemm_weights(const kiln_layer *l, const kiln_env *env, const conv_state *s, uint16_t **out,
                                       size_t *bytes) {
    const float *f = l->w[0].values;
    int64_t C = s->fk, K = s->k, kh = l->p.conv.kernel[0], kw = l->p.conv.kernel[1], count = C * K * kh * kw;
    uint16_t *h = kiln_calloc(env, (size_t)(count ? count : 1), sizeof(uint16_t));
    if (!h) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory converting the weights");
    for (int64_t c = 0; c < C; c++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    kcu_to_half(h + ((i * kw + j) * K + k) * C + c, f + ((c * K + k) * kh + i) * kw + j, 1);
    *out = h;
    *bytes = (size_t)count * sizeof(uint16_t);
    return KILN_OK;
}

/* The bias in float32 (zeros when absent) and, for float16 data, as float16 too. */
static kiln_status conv_bias(const kiln_layer *l, const kiln_env *env, const conv_state *s, float **f32,
                             uint16_t **f16) {
    *f32 = kiln_calloc(env, (size_t)(s->k ? s->k : 1), sizeof(float));
    *f16 = s->st == KILN_FLOAT16 ? kiln_calloc(env, (size_t)(s->k ? s->k : 1), sizeof(uint16_t)) : NULL;
    if (!*f32 || (s->st == KILN_FLOAT16 && !*f16)) {
        kiln_free(env, *f32);
        kiln_free(env, *f16);
        return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    if (l->w[1].count) memcpy(*f32, l->w[1].values, (size_t)s->k * sizeof(float));
    if (*f16) kcu_to_half(*f16, *f32, s->k);
    return KILN_OK;
}

/* The stem kernel's weights: float16 [k, kp] from [k, c, kh, kw] at the reduction index
 * of its form (kcu_stem_index), zeros elsewhere. *out: the caller frees. */
static kiln_status stem_weights(const kiln_layer *l, const kiln_env *env, const conv_state *s, uint16_t **out,
                                size_t *bytes) {
    const kcu_stem *q = &s->stem;
    const float *f = l->w[0].values;
    int64_t count = (int64_t)q->k * q->kp;
    uint16_t *h = kiln_calloc(env, (size_t)(count ? count : 1), sizeof(uint16_t));
    if (!h) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory converting the weights");
    for (int64_t k = 0; k < q->k; k++)
        for (int64_t c = 0; c < q->c; c++)
            for (int64_t r = 0; r < q->kh; r++)
                for (int64_t t = 0; t < q->kw; t++)
                    kcu_to_half(h + k * q->kp + kcu_stem_index(q, r, t, c), f + ((k * q->c + c) * q->kh + r) * q->kw + t, 1);
    *out = h;
    *bytes = (size_t)count * sizeof(uint16_t);
    return KILN_OK;
}

/* Uploads weights, bias and (when used) the pad/crop tables into one device block. */
static kiln_status conv_upload(const kiln_layer *l, const kcu_build *b, conv_state *s, const int64_t *maps,
                               size_t map_count) {
    const void *wsrc;
    size_t wbytes;
    void *wtmp;
    float *bf = NULL;
    uint16_t *bh = NULL;
    uint16_t *sw = NULL;
    size_t sbytes = 0;
    kiln_status st = conv_weights(l, b->env, s, &wsrc, &wbytes, &wtmp);
    if (st == KILN_OK) st = conv_bias(l, b->env, s, &bf, &bh);
    if (st == KILN_OK && s->stem_ok) st = stem_weights(l, b->env, s, &sw, &sbytes);
    if (st == KILN_OK) {
        const void *src[5] = {wsrc, bf, bh, maps, sw};
        size_t bytes[5] = {wbytes, (size_t)s->k * sizeof(float), bh ? (size_t)s->k * sizeof(uint16_t) : 0,
                           maps ? map_count * sizeof(int64_t) : 0, sbytes};
        void *dst[5];
        st = kcu_state_upload(l, &s->base, 5, src, bytes, dst);
        if (st == KILN_OK) {
            s->w = dst[0];
            s->bias = dst[1];
            s->bias_st = bh ? dst[2] : dst[1];
            s->pad.maps = dst[3];
            s->stem_w = sw ? dst[4] : NULL;
            s->has_bias = l->w[1].count > 0;
        }
    }
    kiln_free(b->env, sw);
    kiln_free(b->env, wtmp);
    kiln_free(b->env, bf);
    kiln_free(b->env, bh);
    return st;
}

/* New weights or bias into the buffers the kernels read, converted as conv_upload does. */
static kiln_status conv_refit(const kiln_layer *l, void *state, int slot) {
    conv_state *s = state;
    const kiln_env *env = &l->graph->env;
    kiln_status st = KILN_OK;
    if (slot == 0) {
        const void *src;
        size_t bytes;
        void *tmp;
        if (s->mode == CONV_IGEMM && s->ig.uh) { /* a deconvolution on kiln's GEMM: its own layout */
            uint16_t *h = NULL;
            st = deconv_gemm_weights(l, env, s, &h, &bytes);
            src = tmp = h;
        } else {
            st = conv_weights(l, env, s, &src, &bytes, &tmp);
        }
        if (st == KILN_OK && bytes) {
            cudaError_t e = cudaMemcpy((void *)s->w, src, bytes, cudaMemcpyHostToDevice);
            if (e != cudaSuccess) st = kcu_cuda_fail(l, NULL, e, "cudaMemcpy", __FILE__, __LINE__);
        }
        kiln_free(env, tmp);
        if (st == KILN_OK && s->stem_w) { /* the stem kernel's copy, kept whichever path runs */
            uint16_t *h = NULL;
            st = stem_weights(l, env, s, &h, &bytes);
            cudaError_t e = st == KILN_OK ? cudaMemcpy((void *)s->stem_w, h, bytes, cudaMemcpyHostToDevice) : cudaSuccess;
            if (e != cudaSuccess) st = kcu_cuda_fail(l, NULL, e, "cudaMemcpy", __FILE__, __LINE__);
            kiln_free(env, h);
        }
    } else if (slot == 1 && s->has_bias) {
        float *bf;
        uint16_t *bh;
        st = conv_bias(l, env, s, &bf, &bh);
        if (st != KILN_OK) return st;
        cudaError_t e = cudaMemcpy((void *)s->bias, bf, (size_t)s->k * sizeof(float), cudaMemcpyHostToDevice);
        if (e == cudaSuccess && bh)
            e = cudaMemcpy((void *)s->bias_st, bh, (size_t)s->k * sizeof(uint16_t), cudaMemcpyHostToDevice);
        if (e != cudaSuccess) st = kcu_cuda_fail(l, NULL, e, "cudaMemcpy", __FILE__, __LINE__);
        kiln_free(env, bf);
        kiln_free(env, bh);
    } else {
        st = kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "weights %d cannot be refitted", slot);
    }
    return st;
}

static kiln_status conv_descs(const kiln_layer *l, conv_state *s) {
    KCU_DNN(l, cudnnCreateTensorDescriptor(&s->xd));
    KCU_DNN(l, cudnnCreateTensorDescriptor(&s->yd));
    KCU_DNN(l, cudnnCreateFilterDescriptor(&s->wd));
    KCU_DNN(l, cudnnCreateConvolutionDescriptor(&s->cd));
    return KILN_OK;
}

static kiln_status conv_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            const kcu_exec *x);

/* cuDNN's fused call takes a bias, a residual (z) and ReLU or identity (identity only with
 * the implicit precomputed GEMM algorithm); false when it does not apply here. */
static bool prepare_fused(const kiln_layer *l, conv_state *s) {
    (void)l;
    if (s->has_act && s->act.type != KILN_ACT_RELU) return false;
    s->fused_algo = s->has_act ? s->fwd : CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    cudnnHandle_t h;
    bool ok = cudnnCreate(&h) == CUDNN_STATUS_SUCCESS;
    if (ok) {
        ok = cudnnGetConvolutionForwardWorkspaceSize(h, s->xd, s->wd, s->cd, s->yd, s->fused_algo, &s->fused_ws) ==
             CUDNN_STATUS_SUCCESS;
        cudnnDestroy(h);
    }
    cudnnDataType_t dt = s->st == KILN_FLOAT16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    ok = ok && cudnnCreateTensorDescriptor(&s->bd) == CUDNN_STATUS_SUCCESS &&
         cudnnSetTensor4dDescriptor(s->bd, CUDNN_TENSOR_NCHW, dt, 1, (int)s->k, 1, 1) == CUDNN_STATUS_SUCCESS &&
         cudnnCreateActivationDescriptor(&s->ad) == CUDNN_STATUS_SUCCESS &&
         cudnnSetActivationDescriptor(s->ad, s->has_act ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                                      CUDNN_PROPAGATE_NAN, 0.0) == CUDNN_STATUS_SUCCESS;
    if (!ok) s->fused_ws = 0;
    (void)cudaGetLastError();
    return ok;
}

/* A 1x1 convolution as a GEMM. Row-major: Y[n] = W[K, C] X[n][C, HW], one strided-batch
 * GEMM with W shared, the bias after. Channels-last: Y[N*H*W, K] = X[N*H*W, C] W[K, C]^T,
 * one GEMM whose epilogue adds the bias (and applies ReLU); a residual is its C matrix. */
static bool prepare_gemm(const kiln_layer *l, const kcu_build *b, conv_state *s, const conv_geom *g) {
    mm_state *m = kiln_calloc(b->env, 1, sizeof *m);
    if (!m) return false;
    mm_type(m, s->st);
    m->tf32 = b->tf32 && m->dt == CUDA_R_32F;
    int64_t hw = g->h * g->w;
    m->alpha = 1.0f;
    m->beta = s->has_res && !s->res_after ? 1.0f : 0.0f;
    kiln_status st;
    if (s->nhwc) {
        m->m = g->n * hw;
        m->k = g->c;
        m->n = g->k;
        m->ldo = s->yp; /* a pitched output: its C (a residual) would need its own layout: not offered */
        m->outputs = m->m * m->n;
        m->no_fill = true;
        if (s->has_act) {
            m->act_pass = true; /* mm_setup moves a ReLU into the epilogue */
            m->act = s->act;
        }
        st = s->yp && m->beta != 0.0f ? KILN_ERR_UNSUPPORTED
                                       : mm_setup(l, b, m, false, true, g->c, g->c, 1, 0, 0, 0, s->bias_st);
    } else {
        m->m = g->k;
        m->k = g->c;
        m->n = hw;
        m->outputs = g->n * g->k * hw;
        st = g->n > INT32_MAX ? KILN_ERR_UNSUPPORTED
                              : mm_setup(l, b, m, false, false, g->c, hw, g->n, 0, g->c * hw, g->k * hw, NULL);
    }
    if (st != KILN_OK) {
        (void)cudaGetLastError();
        mm_release(b->env, m);
        return false;
    }
    s->gemm = m;
    s->gemm_nhwc = s->nhwc;
    return true;
}

static void conv_name(conv_state *s) {
    static const char *const fwd_n[] = {"implicit_gemm", "implicit_precomp_gemm", "gemm", "direct", "fft",
                                        "fft_tiling", "winograd", "winograd_nonfused"};
    bool tf32 = s->mode == CONV_GEMM ? s->gemm->tf32 : s->math != CUDNN_FMA_MATH;
    const char *fmt = s->st == KILN_FLOAT16 ? (s->s2d ? "_f16_nhwc_s2d" : s->nhwc ? "_f16_nhwc" : "_f16") : tf32 ? "_tf32" : "";
    if (s->mode == CONV_GEMM)
        snprintf(s->name, sizeof s->name, "cuda.cublaslt_1x1%s", fmt);
    else if (s->mode == CONV_GRAPH)
        snprintf(s->name, sizeof s->name, "cuda.cudnn_graph_eng%lld%s", (long long)s->cg_engine, fmt);
    else if (s->mode == CONV_IGEMM) {
        int bm, bn, z;
        kcu_igemm_tile(&s->ig, s->ig_cfg, &bm, &bn, &z);
        char split[24] = "";
        if (z > 1) snprintf(split, sizeof split, "_splitk%d", z);
        snprintf(s->name, sizeof s->name, "cuda.kiln_%s_%dx%d%s%s", kcu_igemm_is_wgmma(s->ig_cfg) ? "wgmma" : "igemm",
                 bm, bn, split, fmt);
    }
    else if (s->mode == CONV_STEM)
        snprintf(s->name, sizeof s->name, "cuda.kiln_stem%s%s", s->stem.s2 ? "_s2" : "", fmt);
    else if (s->mode == CONV_FUSED)
        snprintf(s->name, sizeof s->name, "cuda.cudnn_fused_bias_act%s", fmt);
    else
        snprintf(s->name, sizeof s->name, "cuda.cudnn_fwd%s_%s", fmt,
                 (unsigned)s->fwd < sizeof fwd_n / sizeof fwd_n[0] ? fwd_n[s->fwd] : "other");
}

/* Space-to-depth (the strided stem of an image network: few input channels, a large
 * kernel, stride S): with S x S blocks of the zero-padded input stacked into channels,
 * the convolution becomes a stride-1 unpadded one with a ceil(k/S) kernel over S*S*C
 * channels, which cuDNN's tensor-core kernels serve far better than 3 (or 8 padded)
 * channels at stride 2. Float16 channels-last, one group, no dilation, S*S*C <= 32. */
static bool conv_s2d_applies(const conv_geom *g, int sto, bool nhwc) {
    return nhwc && sto == KILN_FLOAT16 && g->g == 1 && g->sh == g->sw && g->sh >= 2 && g->dh == 1 && g->dw == 1 &&
           g->kh > 1 && g->kw > 1 && g->c * g->sh * g->sh <= 32;
}

/* The transform's parameters and the stride-1 geometry it leaves. */
static void conv_s2d_geom(conv_geom *g, kcu_s2d *q, int64_t *kh2, int64_t *kw2) {
    int64_t S = g->sh;
    *kh2 = (g->kh + S - 1) / S;
    *kw2 = (g->kw + S - 1) / S;
    q->n = g->n;
    q->h = g->h;
    q->w = g->w;
    q->c = g->c;
    q->s = S;
    q->pt = g->pt;
    q->pl = g->pl;
    q->hs = g->oh + *kh2 - 1;
    q->ws = g->ow + *kw2 - 1;
    q->cs = (S * S * g->c + 7) / 8 * 8;
    g->c = q->cs;
    g->h = q->hs;
    g->w = q->ws;
    g->kh = *kh2;
    g->kw = *kw2;
    g->sh = g->sw = 1;
    g->pt = g->pl = g->pb = g->pr = 0;
}

/* Which of kiln's implicit-GEMM configurations a convolution or deconvolution times
 * (KILN_CONV_IGEMM=off|only|wgmma, KILN_CONV_WGMMA=off|split: A/B runs, tests). */
typedef struct ig_pick {
    bool time;     /* the configurations are timed at all */
    bool only;     /* =only or =wgmma: the own kernel wins wherever it runs */
    bool wgmma;    /* =wgmma and a Hopper configuration applies: those alone (else, as =only, the
                      portable kernel's tile shapes) */
    bool wg_off;   /* the Hopper configurations left out */
    bool wg_split; /* of the Hopper configurations, only those that split the reduction */
} ig_pick;

/* Whether the Hopper configuration i is left out by KILN_CONV_WGMMA. */
static bool ig_wg_skip(const kcu_igemm *ig, const ig_pick *p, int i) {
    int bm, bn, z;
    if (p->wg_off) return true;
    if (!p->wg_split) return false;
    kcu_igemm_tile(ig, i, &bm, &bn, &z);
    return z < 2;
}

static ig_pick ig_select(const kcu_igemm *ig, bool candidate) {
    const char *env = getenv("KILN_CONV_IGEMM"), *wg = getenv("KILN_CONV_WGMMA");
    ig_pick p = {candidate && !(env && !strcmp(env, "off")), false, false, wg && !strcmp(wg, "off"),
                 wg && !strcmp(wg, "split")};
    for (int i = 0; p.time && env && !strcmp(env, "wgmma") && i < kcu_igemm_configs(); i++)
        p.wgmma = p.wgmma || (kcu_igemm_is_wgmma(i) && kcu_igemm_config_ok(ig, i) && !ig_wg_skip(ig, &p, i));
    p.only = p.time && env && (!strcmp(env, "only") || !strcmp(env, "wgmma"));
    return p;
}

/* Whether configuration i is timed: it runs the shape, the variables keep it, and its
 * split-K partials fit the workspace limit. */
static bool ig_try(const kcu_build *b, const kcu_igemm *ig, const ig_pick *p, int i) {
    bool wg = kcu_igemm_is_wgmma(i) != 0;
    if (!kcu_igemm_config_ok(ig, i) || (p->wgmma && !wg) || (wg && (ig_wg_skip(ig, p, i) || (p->only && !p->wgmma))))
        return false;
    return kcu_igemm_workspace(ig, i) <= b->ws_limit;
}

static kiln_status conv_prepare_as(const kiln_layer *l, const kcu_build *b, bool use_s2d, const tactic *hintp,
                                   void **state, size_t *scratch) {
    *scratch = 0;
    kiln_status st = check_float(l);
    if (st != KILN_OK) return st;
    int sto = kg_storage(l->outputs[0]);
    bool nhwc = kcu_nhwc(l->inputs[0]);
    if (sto != KILN_FLOAT32 && sto != KILN_FLOAT16)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA convolution on %s storage", kiln_dtype_name(sto));
    if ((st = kcu_check_formats(l, sto, nhwc, "cuDNN convolution")) != KILN_OK) return st;
    bool has_res = l->nb_inputs > 1 && l->inputs[1];
    if (has_res && (l->inputs[1]->dtype != KILN_FLOAT32 || !kiln_dims_equal(&l->inputs[1]->dims, &l->outputs[0]->dims)))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the residual input must be float32 of the output's shape");
    conv_geom g;
    geom_fill(l, &g);
    kcu_s2d s2;
    int64_t s2_kh = 0, s2_kw = 0;
    memset(&s2, 0, sizeof s2);
    if (use_s2d) conv_s2d_geom(&g, &s2, &s2_kh, &s2_kw);
    bool asym = g.pt != g.pb || g.pl != g.pr;
    int64_t ih = asym ? g.h + g.pt + g.pb : g.h, iw = asym ? g.w + g.pl + g.pr : g.w;
    /* a float16 channels-last input with fewer than 8 channels (an image into the stem)
     * leaves cuDNN without a tensor-core kernel: zero-pad it to 8 channels in scratch,
     * with zero weights for the extra ones */
    int64_t cin = g.c;
    if (nhwc && sto == KILN_FLOAT16 && g.g == 1 && g.c < 8 && g.kh * g.kw > 1) cin = 8;
    int64_t sizes[] = {g.n, g.c, ih, iw, g.k, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.g,
                       g.n * g.c * ih * iw, g.n * g.k * g.oh * g.ow, g.k * (g.c / g.g) * g.kh * g.kw};
    if ((st = check_conv_sizes(l, sizes, (int)(sizeof sizes / sizeof sizes[0]))) != KILN_OK) return st;
    conv_state *s = kiln_calloc(b->env, 1, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    *state = s;
    s->st = sto;
    s->nhwc = nhwc;
    s->has_res = has_res;
    s->res_after = has_res && l->res_after_act && l->has_post_act;
    s->yp = l->outputs[0]->pitch; /* only where kcu_pitch_ok said so: float16 channels-last */
    if (s->yp && (!nhwc || s->yp < g.k))
        return kg_layer_error(l, KILN_ERR_INTERNAL, "output pitch %lld on a tensor of %lld channels%s", (long long)s->yp,
                              (long long)g.k, nhwc ? "" : " in row-major layout");
    size_t es = sto == KILN_FLOAT16 ? 2 : 4;
    s->n = g.n;
    s->k = g.k;
    s->fk = g.k;
    s->cpad = cin != g.c ? cin : 0;
    s->s2d = use_s2d;
    s->s2 = s2;
    s->s2_kh = s2_kh;
    s->s2_kw = s2_kw;
    if (use_s2d && (s2.n * s2.hs * s2.ws * (s2.cs / 8) > INT32_MAX || s2.h * s2.w * s2.c > INT32_MAX))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "too large for the space-to-depth kernel");
    s->inner = g.oh * g.ow;
    s->e_outer = nhwc ? g.n * g.oh * g.ow : g.n;
    s->e_inner = nhwc ? 1 : g.oh * g.ow;
    if (l->has_post_act) {
        s->has_act = true;
        kcu_post_act(l, &s->act);
    }
    /* kiln's stem kernel: few input channels read unpadded (KILN_CONV_STEM=off|only: A/B
     * runs, tests) */
    s->stem = (kcu_stem){(int)g.n, (int)g.h, (int)g.w, (int)g.c, (int)g.k, (int)g.oh, (int)g.ow, (int)g.kh, (int)g.kw,
                         (int)g.sh, (int)g.sw, (int)g.pt, (int)g.pl, (int)g.dh, (int)g.dw, (int)(g.n * g.oh * g.ow),
                         0, (int)s->yp, s->has_act, s->act, 0};
    kcu_stem_setup(&s->stem);
    s->stem_ok = !use_s2d && sto == KILN_FLOAT16 && nhwc && g.g == 1 && !has_res && g.c <= 8 &&
                 fits_int(g.n * g.oh * g.ow) && kcu_stem_applies(&s->stem);
    int64_t *maps = NULL;
    size_t map_count = 0;
    if (asym || s->cpad) { /* cuDNN pads symmetrically: pad the input ourselves, then convolve unpadded */
        int64_t at = asym ? g.pt : 0, al = asym ? g.pl : 0, ab = asym ? g.pb : 0, ar = asym ? g.pr : 0;
        int64_t dims[4] = {g.n, g.c, g.h, g.w}, pads[8] = {0, 0, at, al, 0, 0, ab, ar};
        if (nhwc) { /* the same over the axes in memory order, channels padded too */
            int64_t dn[4] = {g.n, g.h, g.w, g.c}, pn[8] = {0, at, al, 0, 0, ab, ar, cin - g.c};
            memcpy(dims, dn, sizeof dims);
            memcpy(pads, pn, sizeof pads);
        }
        st = kcu_pad_plan(l, b->env, 4, dims, pads, KILN_PAD_CONSTANT, &s->pad, &maps, &map_count);
        if (st != KILN_OK) return st;
        s->pad_input = true;
    }
    st = conv_upload(l, b, s, maps, map_count);
    kiln_free(b->env, maps);
    if (st == KILN_OK) st = conv_descs(l, s);
    if (st != KILN_OK) return st;
    int ph = asym ? 0 : (int)g.pt, pw = asym ? 0 : (int)g.pl;
    cudnnDataType_t dt = sto == KILN_FLOAT16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    cudnnTensorFormat_t fmt = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    KCU_DNN(l, cudnnSetTensor4dDescriptor(s->xd, fmt, dt, (int)g.n, (int)cin, (int)ih, (int)iw));
    KCU_DNN(l, cudnnSetTensor4dDescriptor(s->yd, fmt, dt, (int)g.n, (int)g.k, (int)g.oh, (int)g.ow));
    KCU_DNN(l, cudnnSetFilter4dDescriptor(s->wd, dt, fmt, (int)g.k, (int)(cin / g.g), (int)g.kh, (int)g.kw));
    /* float32 accumulation for every storage type */
    KCU_DNN(l, cudnnSetConvolution2dDescriptor(s->cd, ph, pw, (int)g.sh, (int)g.sw, (int)g.dh, (int)g.dw,
                                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    KCU_DNN(l, cudnnSetConvolutionGroupCount(s->cd, (int)g.g));
    int on, ok, ooh, oow;
    KCU_DNN(l, cudnnGetConvolution2dForwardOutputDim(s->cd, s->xd, s->wd, &on, &ok, &ooh, &oow));
    if (on != g.n || ok != g.k || ooh != g.oh || oow != g.ow)
        return kg_layer_error(l, KILN_ERR_INTERNAL, "cuDNN sizes the output %dx%dx%dx%d, the layer %lldx%lldx%lldx%lld",
                              on, ok, ooh, oow, (long long)g.n, (long long)g.k, (long long)g.oh, (long long)g.ow);
    tactic hint = *hintp;
    bool hint_pitch = (hint.mode & CONV_GPITCH) != 0;
    hint.mode &= ~(CONV_S2D | CONV_GPITCH);
    /* kiln's implicit GEMM: float16 channels-last, one group, channels multiples of 8, on the
     * same (padded or transformed) input as cuDNN (KILN_CONV_IGEMM=off|only as below) */
    s->ig = (kcu_igemm){(int)g.n, (int)ih, (int)iw, (int)cin, (int)g.k, (int)g.oh, (int)g.ow, (int)g.kh, (int)g.kw,
                        (int)g.sh, (int)g.sw, ph, pw, (int)g.dh, (int)g.dw, (int)(g.n * g.oh * g.ow),
                        (int)(g.kh * g.kw * cin), s->has_act, s->res_after, s->act, 0, (int)s->yp, 0, 0};
    s->ig_ok = sto == KILN_FLOAT16 && nhwc && g.g == 1 && fits_int(g.n * g.oh * g.ow) && kcu_igemm_applies(&s->ig);
    bool ig_hint = hint.ok && hint.mode == CONV_IGEMM && s->ig_ok && kcu_igemm_config_ok(&s->ig, (int)hint.algo) &&
                   kcu_igemm_workspace(&s->ig, (int)hint.algo) <= b->ws_limit;
    if (hint.ok && hint.mode == CONV_IGEMM && !ig_hint) hint.ok = false; /* not here: time as usual */
    ig_pick igp = ig_select(&s->ig, s->ig_ok && !ig_hint && !b->untimed);
    bool ig_time = igp.time, ig_only = igp.only;
    const char *stem_env = getenv("KILN_CONV_STEM");
    bool stem_hint = hint.ok && hint.mode == CONV_STEM && s->stem_ok;
    if (hint.ok && hint.mode == CONV_STEM && !stem_hint) hint.ok = false; /* not here: time as usual */
    bool stem_time = s->stem_ok && !stem_hint && !ig_hint && !b->untimed && !(stem_env && !strcmp(stem_env, "off"));
    bool stem_only = stem_time && stem_env && !strcmp(stem_env, "only");
    if (stem_only) ig_time = ig_only = false;
    if (ig_only) stem_time = false; /* tests: the implicit GEMM wherever it runs */
    /* cuDNN's backend API: float16 channels-last, one group; ReLU fused, another activation
     * in a pass after it (KILN_CONV_GRAPH=off leaves it out, =only prefers it to the others:
     * A/B runs, tests; a stored choice wins over the variable) */
    bool graph_wanted = hint.ok && hint.mode == CONV_GRAPH;
    const char *graph_env = getenv("KILN_CONV_GRAPH");
    bool graph_on = sto == KILN_FLOAT16 && nhwc && g.g == 1 && !ig_hint && !ig_only && !stem_hint && !stem_only &&
                    (graph_wanted || (!(graph_env && !strcmp(graph_env, "off")) && !b->untimed));
    s->cg_act_pass = s->has_act && s->act.type != KILN_ACT_RELU;
    bool graph_ok[KCU_CG_MAX] = {false};
    size_t graph_ws[KCU_CG_MAX] = {0}, graph_max = 0;
    int graph_n = 0;
    kcu_cg_desc cd;
    if (graph_on) {
        /* a pitched output written by the graph itself where cuDNN has engines for it
         * (KILN_CONV_GRAPH_PITCH=off: the dense copy and a pass, A/B runs), else dense */
        const char *pitch_env = getenv("KILN_CONV_GRAPH_PITCH");
        bool pitch_on = s->yp && (graph_wanted ? hint_pitch : !(pitch_env && !strcmp(pitch_env, "off")));
        cd = (kcu_cg_desc){g.n, cin, ih, iw, g.k, g.kh, g.kw, g.oh, g.ow, {ph, pw}, {ph, pw}, {g.sh, g.sw}, {g.dh, g.dw},
                           has_res && !s->res_after, s->has_bias, s->has_act && !s->cg_act_pass, pitch_on ? s->yp : 0, false};
        cg_open(l, b->env, s, cd);
    }
    bool graph_hint = graph_wanted && s->cg && (int)hint.algo < kcu_cg_count(s->cg) &&
                      kcu_cg_engine(s->cg, (int)hint.algo) == (int64_t)hint.math &&
                      kcu_cg_plan(s->cg, (int)hint.algo, b->ws_limit, &graph_ws[0]);
    if (graph_wanted && !graph_hint) hint.ok = false; /* the stored engine is gone: time as usual */
    bool fwd_taken;
    if (graph_hint || ig_hint || stem_hint) { /* the legacy algorithm is only a fallback here: no timing */
        kcu_build quick = *b;
        quick.untimed = true;
        fwd_taken = true;
        if ((st = pick_forward(l, &quick, s)) != KILN_OK) return st;
    } else {
        fwd_taken = take_forward(b, s, &hint);
        if (!fwd_taken && (st = pick_forward(l, b, s)) != KILN_OK) return st;
    }
    size_t pad_bytes = s->pad_input || use_s2d ? (size_t)(g.n * cin * ih * iw) * es : 0;
    s->pad_bytes = pad_bytes;
    /* a pitched output: the libraries write a dense copy after the input buffer */
    size_t copy_bytes = s->yp ? (size_t)(g.n * g.k * g.oh * g.ow) * es : 0;
    bool fused = prepare_fused(l, s);
    bool gemm = !use_s2d && g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && !asym && g.pt == 0 && g.pl == 0 && g.g == 1 &&
                prepare_gemm(l, b, s, &g);
    if (s->cg && !graph_hint && !(hint.ok && fwd_taken)) graph_n = cg_plan_all(l, b, s, cd, graph_ok, graph_ws, &graph_max);
    size_t cudnn_ws = s->ws > s->fused_ws ? s->ws : s->fused_ws, ig_max = 0;
    for (int i = 0; ig_time && i < kcu_igemm_configs(); i++) {
        size_t w = kcu_igemm_workspace(&s->ig, i);
        if (w > ig_max && w <= b->ws_limit) ig_max = w; /* larger ones are not timed */
    }
    if (ig_max > cudnn_ws) cudnn_ws = ig_max;
    s->buf_off = align256(cudnn_ws > graph_max ? cudnn_ws : graph_max);
    size_t need_cudnn = copy_bytes ? align256(s->buf_off + pad_bytes) + copy_bytes : s->buf_off + pad_bytes;
    size_t need_gemm = gemm ? s->gemm->ws : 0;
    s->mode = CONV_CUDNN;
    bench bn;
    if (graph_hint) {
        s->mode = CONV_GRAPH; /* the stored choice: no timing */
        s->cg_index = (int)hint.algo;
        s->cg_ws = graph_ws[0];
        kcu_cg_use(s->cg, s->cg_index);
        hint_taken(b);
    } else if (ig_hint) {
        s->mode = CONV_IGEMM; /* the stored choice: no timing */
        s->ig_cfg = (int)hint.algo;
        hint_taken(b);
    } else if (stem_hint) {
        s->mode = CONV_STEM; /* the stored choice: no timing */
        hint_taken(b);
    } else if (fwd_taken && (hint.mode == CONV_CUDNN || (hint.mode == CONV_FUSED && fused) ||
                             (hint.mode == CONV_GEMM && gemm && mm_take(b, s->gemm, hint.lt)))) {
        s->mode = hint.mode; /* the stored choice: no timing */
        if (s->mode == CONV_GEMM) mm_ws(s->gemm);
        hint_taken(b);
    } else if ((fused || gemm || graph_max || s->cg || ig_time || stem_time) &&
               bench_open(l, b, &bn, need_cudnn > need_gemm ? need_cudnn : need_gemm)) {
        float best = bench_time(&bn, l, s, conv_run), dnn_ms = best, ig_ms = INFINITY, wg_ms = INFINITY;
        float graph_ms = INFINITY, stem_ms = INFINITY, gemm_ms = INFINITY;
        if (fused) {
            s->mode = CONV_FUSED;
            float t = bench_time(&bn, l, s, conv_run);
            if (t < dnn_ms) dnn_ms = t;
            if (t < best) best = t;
            else s->mode = CONV_CUDNN;
        }
        if (gemm) {
            int keep = s->mode;
            s->mode = CONV_GEMM;
            mm_tune(&bn, l, s->gemm, s, conv_run);
            float t = gemm_ms = bench_time(&bn, l, s, conv_run);
            if (t < best) best = t; /* the mark the later candidates must beat */
            else s->mode = keep;
        }
        if (ig_time) {
            int keep = s->mode, won = -1;
            s->mode = CONV_IGEMM;
            if (ig_only) best = INFINITY; /* tests: the own kernel wherever it runs */
            for (int i = 0; i < kcu_igemm_configs(); i++) {
                if (!ig_try(b, &s->ig, &igp, i)) continue;
                s->ig_cfg = i;
                float t = bench_time(&bn, l, s, conv_run);
                float *fastest = kcu_igemm_is_wgmma(i) ? &wg_ms : &ig_ms;
                if (t < *fastest) *fastest = t;
                if (t < best) {
                    best = t;
                    won = i;
                }
            }
            if (won >= 0) s->ig_cfg = won;
            else s->mode = keep;
        }
        if (stem_time) {
            int keep = s->mode;
            s->mode = CONV_STEM;
            if (stem_only) best = INFINITY; /* tests: the stem kernel wherever it runs */
            float t = stem_ms = bench_time(&bn, l, s, conv_run);
            if (t < best) best = t;
            else s->mode = keep;
        }
        if (s->cg) {
            if (graph_env && !strcmp(graph_env, "only") && !stem_only) best = INFINITY; /* tests: the graph path whenever it runs */
            graph_ms = cg_time(&bn, l, s, conv_run, graph_n, graph_ok, graph_ws, &best);
        }
        kiln_log(b->env, KILN_LOG_VERBOSE,
                 "convolution %s: cuDNN %.4f ms, cuBLASLt %.4f ms, cuDNN graph %.4f ms, kiln's GEMM %.4f ms, "
                 "kiln's Hopper kernel %.4f ms, kiln's stem kernel %.4f ms (%s)",
                 l->name ? l->name : "?", dnn_ms, gemm_ms, graph_ms, ig_ms, wg_ms, stem_ms,
                 s->mode == CONV_GRAPH  ? "cuDNN graph"
                 : s->mode == CONV_GEMM ? "cuBLASLt"
                 : s->mode == CONV_STEM ? "kiln's stem kernel"
                 : s->mode == CONV_IGEMM ? (kcu_igemm_is_wgmma(s->ig_cfg) ? "kiln's Hopper kernel" : "kiln's GEMM")
                                         : "cuDNN");
        bench_close(&bn);
    } else if (gemm && s->nhwc) {
        s->mode = CONV_GEMM; /* untimed: the GEMM with its fused epilogue is the likely winner */
    }
    cg_settle(b, s);
    if (s->mode == CONV_GEMM) {
        *scratch = s->gemm->ws;
    } else {
        mm_release(b->env, s->gemm);
        s->gemm = NULL;
        s->buf_off = align256(s->mode == CONV_FUSED   ? s->fused_ws
                              : s->mode == CONV_GRAPH ? s->cg_ws
                              : s->mode == CONV_IGEMM ? kcu_igemm_workspace(&s->ig, s->ig_cfg)
                                                      : s->ws);
        bool direct = s->mode == CONV_IGEMM || (s->mode == CONV_GRAPH && s->cg_pitched);
        *scratch = copy_bytes && !direct ? align256(s->buf_off + pad_bytes) + copy_bytes : s->buf_off + pad_bytes;
        if (s->mode == CONV_STEM) *scratch = s->buf_off = 0; /* reads the input as it is, writes y itself */
    }
    conv_name(s);
    return KILN_OK;
}

/* The pass after a library call, from src (y itself, or the dense copy of a pitched
 * output) into y. */
static kiln_status conv_pass(const kiln_layer *l, const conv_state *s, const kcu_exec *x, const void *src, void *y,
                             const void *res, const float *bias, const kcu_act *act, int res_after) {
    int64_t yp = s->yp ? s->yp : s->k;
    KCU_CUDA(l, kcu_epilogue(x->stream, s->st, src, src == y ? yp : s->k, y, yp, res, bias, s->e_outer, s->k,
                             s->e_inner, act, res_after));
    return KILN_OK;
}

/* Bias, residual and activation after a plain convolution (into src) or a row-major GEMM. */
static kiln_status conv_epilogue(const kiln_layer *l, const conv_state *s, const kcu_exec *x, const void *src,
                                 void *y, const void *res) {
    const kcu_act *act = s->has_act ? &s->act : NULL;
    const float *bias = s->has_bias ? s->bias : NULL;
    if (s->st == KILN_FLOAT32 && !res && !s->nhwc)
        KCU_CUDA(l, kcu_bias_act(x->stream, y, bias, s->n, s->k, s->inner, act));
    else
        return conv_pass(l, s, x, src, y, res, bias, act, s->res_after);
    return KILN_OK;
}

/* After a library call into src that applied everything but `act` (NULL: nothing left)
 * and the residual `res` (NULL: none left, or it came before the activation): one pass
 * into y (none when nothing is left and src is y). */
static kiln_status conv_finish(const kiln_layer *l, const conv_state *s, const kcu_exec *x, const void *src, void *y,
                               const void *res, const kcu_act *act) {
    if (!act && !res && src == y) return KILN_OK;
    return conv_pass(l, s, x, src, y, res, NULL, act, 1);
}

static kiln_status conv_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            const kcu_exec *x) {
    const conv_state *s = state;
    const float one = 1.0f, zero = 0.0f;
    const void *src = in[0];
    const void *res = s->has_res ? in[1] : NULL;
    /* the residual the libraries add (before the activation), and the one left for after */
    const void *res_in = s->res_after ? NULL : res, *res_post = s->res_after ? res : NULL;
    char *scr = x->scratch;
    kiln_status st;
    if (s->mode == CONV_GEMM) {
        const mm_state *m = s->gemm;
        if (s->gemm_nhwc) {
            if ((st = mm_call(l, m, x, src, s->w, res_in, out[0])) != KILN_OK) return st;
            if (res_post || s->yp) return conv_finish(l, s, x, out[0], out[0], res_post, m->act_pass ? &m->act : NULL);
            return m->act_pass ? mm_act(l, m, x, out[0], m->act) : KILN_OK;
        }
        if ((st = mm_call(l, m, x, s->w, src, res_in, out[0])) != KILN_OK) return st;
        return conv_epilogue(l, s, x, out[0], out[0], res_post);
    }
    if (s->mode == CONV_STEM) {
        KCU_CUDA(l, kcu_stem_run(x->stream, &s->stem, in[0], s->stem_w, s->bias, out[0]));
        return KILN_OK;
    }
    /* where the libraries write: a dense copy in scratch when the output is pitched */
    bool direct = s->mode == CONV_IGEMM || (s->mode == CONV_GRAPH && s->cg_pitched);
    void *yl = s->yp && !direct ? scr + align256(s->buf_off + s->pad_bytes) : out[0];
    if (s->s2d) {
        void *buf = scr + s->buf_off;
        KCU_CUDA(l, kcu_s2d_run(x->stream, &s->s2, in[0], buf));
        src = buf;
    } else if (s->pad_input) {
        void *buf = scr + s->buf_off;
        KCU_CUDA(l, kcu_pad_run(x->stream, &s->pad, s->st == KILN_FLOAT16 ? 2 : 4, in[0], buf));
        src = buf;
    }
    if (s->mode == CONV_IGEMM) {
        KCU_CUDA(l, kcu_igemm_run(x->stream, s->ig_cfg, &s->ig, src, s->w, s->has_bias ? s->bias : NULL, res, out[0],
                                  scr));
        return KILN_OK;
    }
    if (s->mode == CONV_GRAPH) {
        if ((st = kcu_cg_run(l, s->cg, x->dnn, src, s->w, res_in, s->bias_st, yl, scr)) != KILN_OK) return st;
        return conv_finish(l, s, x, yl, out[0], res_post, s->cg_act_pass ? &s->act : NULL);
    }
    if (s->mode == CONV_FUSED) {
        /* no residual: z = y with alpha2 = 0, cuDNN reads none */
        KCU_DNN(l, cudnnConvolutionBiasActivationForward(x->dnn, &one, s->xd, src, s->wd, s->w, s->cd, s->fused_algo,
                                                         s->fused_ws ? scr : NULL, s->fused_ws, res_in ? &one : &zero,
                                                         s->yd, res_in ? res_in : yl, s->bd, s->bias_st, s->ad,
                                                         s->yd, yl));
        return conv_finish(l, s, x, yl, out[0], res_post, NULL);
    }
    KCU_DNN(l, cudnnConvolutionForward(x->dnn, &one, s->xd, src, s->wd, s->w, s->cd, s->fwd, s->ws ? scr : NULL, s->ws,
                                       &zero, s->yd, yl));
    return conv_epilogue(l, s, x, yl, out[0], res);
}

static size_t conv_tactic(const void *state, uint8_t *buf, size_t cap) {
    const conv_state *s = state;
    const cublasLtMatmulAlgo_t *lt = s->mode == CONV_GEMM && mm_timed(s->gemm) ? &s->gemm->algo[0] : NULL;
    bool graph = s->mode == CONV_GRAPH;
    uint32_t algo = graph ? (uint32_t)s->cg_index : s->mode == CONV_IGEMM ? (uint32_t)s->ig_cfg : (uint32_t)s->fwd;
    int bits = (s->s2d ? CONV_S2D : 0) | (graph && s->cg_pitched ? CONV_GPITCH : 0);
    return tactic_write(buf, cap, 'C', s->mode | bits, algo,
                        graph ? (uint32_t)s->cg_engine : s->math, lt);
}

/* Where space-to-depth applies it is a candidate beside the plain convolution: both are
 * prepared (each times its own cuDNN/fused/GEMM choices), timed on the real shapes, and
 * the faster kept; a stored choice says which one without timing. */
static kiln_status conv_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *state = NULL;
    *scratch = 0;
    tactic hint = tactic_read(b, 'C'), none = {0};
    conv_geom g;
    geom_fill(l, &g);
    bool can = l->inputs[0]->dims.nb_dims == 4 && conv_s2d_applies(&g, kg_storage(l->outputs[0]), kcu_nhwc(l->inputs[0]));
    if (can) { /* within the transform kernel's 32-bit indexing */
        conv_geom g2 = g;
        kcu_s2d q;
        int64_t kh2, kw2;
        conv_s2d_geom(&g2, &q, &kh2, &kw2);
        can = q.n * q.hs * q.ws * (q.cs / 8) <= INT32_MAX && q.h * q.w * q.c <= INT32_MAX;
    }
    /* KILN_CONV_S2D=on|off forces the choice at build (A/B runs, tests); a stored choice wins */
    const char *force = getenv("KILN_CONV_S2D");
    if (can && force && !hint.ok && (!strcmp(force, "on") || !strcmp(force, "off")))
        return conv_prepare_as(l, b, !strcmp(force, "on"), &none, state, scratch);
    if (hint.ok) {
        bool want = (hint.mode & CONV_S2D) != 0;
        /* a plain choice always applies; a space-to-depth one only where the transform does */
        return conv_prepare_as(l, b, can && want, !want || can ? &hint : &none, state, scratch);
    }
    if (!can) return conv_prepare_as(l, b, false, &none, state, scratch);
    void *sa = NULL, *sb = NULL;
    size_t ca = 0, cb = 0;
    kiln_status st = conv_prepare_as(l, b, true, &none, &sa, &ca);
    if (st != KILN_OK || b->untimed) {
        if (st == KILN_OK) { /* untimed: the transform is the likely winner */
            *state = sa;
            *scratch = ca;
            return KILN_OK;
        }
        conv_release(b->env, sa);
        (void)cudaGetLastError();
        return conv_prepare_as(l, b, false, &none, state, scratch);
    }
    st = conv_prepare_as(l, b, false, &none, &sb, &cb);
    float ta = 0.0f, tb = INFINITY;
    bench bn;
    if (st == KILN_OK && bench_open(l, b, &bn, ca > cb ? ca : cb)) {
        ta = bench_time(&bn, l, sa, conv_run);
        tb = bench_time(&bn, l, sb, conv_run);
        bench_close(&bn);
    }
    (void)cudaGetLastError();
    bool keep_s2d = st != KILN_OK || !(tb < ta);
    kiln_log(b->env, KILN_LOG_VERBOSE, "convolution %s: space-to-depth %.4f ms, direct %.4f ms (%s)",
             l->name ? l->name : "?", ta, tb, keep_s2d ? "space-to-depth" : "direct");
    conv_release(b->env, keep_s2d ? sb : sa);
    *state = keep_s2d ? sa : sb;
    *scratch = keep_s2d ? ca : cb;
    return KILN_OK;
}

/* kiln's implicit GEMMs trigger the next kernel once their main loop is done, and nothing
 * runs after them in the layer (their split-K reduction, which triggers only as it exits,
 * follows a split GEMM: such a layer is no tail; nor is the stem kernel's) */
static bool conv_pdl_tail(const void *state) {
    const conv_state *s = state;
    int bm = 0, bn = 0, splits = 0;
    if (s->mode != CONV_IGEMM) return false;
    kcu_igemm_tile(&s->ig, s->ig_cfg, &bm, &bn, &splits);
    return splits == 1;
}

const kcu_kernel kcu_k_convolution = {conv_prepare, conv_run, conv_release, conv_refit, conv_pdl_tail};

static const char *const bwd_names[] = {
    "cuda.cudnn_bwd_data_0", "cuda.cudnn_bwd_data_1", "cuda.cudnn_bwd_data_fft", "cuda.cudnn_bwd_data_fft_tiling",
    "cuda.cudnn_bwd_data_winograd", "cuda.cudnn_bwd_data_winograd_nonfused"};

static kiln_status deconv_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x);

/* A deconvolution is cuDNN's backward-data of the convolution from its output to its input,
 * on float32 NCHW or (KILN_FLAG_FP16) float16 channels-last data with float32 accumulation.
 * cuDNN pads both sides alike and has no output padding: other geometries compute the full
 * output (no padding) into scratch and crop [pad_begin, pad_begin + out) from it, zeros
 * where output padding reaches past the full size. */
static kiln_status deconv_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    kiln_status st = check_float(l);
    if (st != KILN_OK) return st;
    int sto = kg_storage(l->outputs[0]);
    bool nhwc = kcu_nhwc(l->inputs[0]);
    if (sto != KILN_FLOAT32 && sto != KILN_FLOAT16)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA deconvolution on %s storage", kiln_dtype_name(sto));
    if ((st = kcu_check_formats(l, sto, nhwc, "cuDNN deconvolution")) != KILN_OK) return st;
    conv_geom g;
    geom_fill(l, &g);
    /* here c is the deconvolution's input channels, k its output channels */
    bool direct = g.pt == g.pb && g.pl == g.pr && g.oph == 0 && g.opw == 0;
    int64_t fh = g.sh * (g.h - 1) + (g.kh - 1) * g.dh + 1, fw = g.sw * (g.w - 1) + (g.kw - 1) * g.dw + 1;
    int64_t yh = direct ? g.oh : fh, yw = direct ? g.ow : fw;
    int64_t sizes[] = {g.n, g.c, g.h, g.w, g.k, yh, yw, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.g,
                       g.n * g.c * g.h * g.w, g.n * g.k * yh * yw, g.c * (g.k / g.g) * g.kh * g.kw};
    if ((st = check_conv_sizes(l, sizes, (int)(sizeof sizes / sizeof sizes[0]))) != KILN_OK) return st;
    conv_state *s = kiln_calloc(b->env, 1, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    *state = s;
    s->st = sto;
    s->nhwc = nhwc;
    s->yp = l->outputs[0]->pitch; /* only where kcu_pitch_ok said so: float16 channels-last */
    if (s->yp && (!nhwc || s->yp < g.k))
        return kg_layer_error(l, KILN_ERR_INTERNAL, "output pitch %lld on a tensor of %lld channels%s", (long long)s->yp,
                              (long long)g.k, nhwc ? "" : " in row-major layout");
    size_t es = sto == KILN_FLOAT16 ? 2 : 4;
    s->n = g.n;
    s->k = g.k;
    s->fk = g.c;
    s->inner = g.oh * g.ow;
    s->e_outer = nhwc ? g.n * g.oh * g.ow : g.n;
    s->e_inner = nhwc ? 1 : g.oh * g.ow;
    if (l->has_post_act) {
        s->has_act = true;
        kcu_post_act(l, &s->act);
    }
    int64_t *maps = NULL;
    size_t map_count = 0;
    if (!direct) {
        int64_t dims[4] = {g.n, g.k, fh, fw};
        int64_t pads[8] = {0, 0, -g.pt, -g.pl, 0, 0, g.oh - (fh - g.pt), g.ow - (fw - g.pl)};
        if (nhwc) { /* the same over the axes in memory order */
            int64_t dn[4] = {g.n, fh, fw, g.k}, pn[8] = {0, -g.pt, -g.pl, 0, 0, g.oh - (fh - g.pt), g.ow - (fw - g.pl), 0};
            memcpy(dims, dn, sizeof dims);
            memcpy(pads, pn, sizeof pads);
        }
        st = kcu_pad_plan(l, b->env, 4, dims, pads, KILN_PAD_CONSTANT, &s->pad, &maps, &map_count);
        if (st != KILN_OK) return st;
        s->crop_output = true;
    }
    st = conv_upload(l, b, s, maps, map_count);
    kiln_free(b->env, maps);
    if (st == KILN_OK) st = conv_descs(l, s);
    if (st != KILN_OK) return st;
    int ph = direct ? (int)g.pt : 0, pw = direct ? (int)g.pl : 0;
    cudnnDataType_t dt = sto == KILN_FLOAT16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    cudnnTensorFormat_t fmt = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    KCU_DNN(l, cudnnSetTensor4dDescriptor(s->xd, fmt, dt, (int)g.n, (int)g.c, (int)g.h, (int)g.w));
    KCU_DNN(l, cudnnSetTensor4dDescriptor(s->yd, fmt, dt, (int)g.n, (int)g.k, (int)yh, (int)yw));
    /* kernel [C_in, C_out/g, kh, kw] is the forward filter from the output to the input */
    KCU_DNN(l, cudnnSetFilter4dDescriptor(s->wd, dt, fmt, (int)g.c, (int)(g.k / g.g), (int)g.kh, (int)g.kw));
    KCU_DNN(l, cudnnSetConvolution2dDescriptor(s->cd, ph, pw, (int)g.sh, (int)g.sw, (int)g.dh, (int)g.dw,
                                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    KCU_DNN(l, cudnnSetConvolutionGroupCount(s->cd, (int)g.g));
    int on, ok, ooh, oow;
    KCU_DNN(l, cudnnGetConvolution2dForwardOutputDim(s->cd, s->yd, s->wd, &on, &ok, &ooh, &oow));
    if (on != g.n || ok != g.c || ooh != g.h || oow != g.w)
        return kg_layer_error(l, KILN_ERR_INTERNAL, "cuDNN maps the %lldx%lldx%lldx%lld output back to %dx%dx%dx%d",
                              (long long)g.n, (long long)g.k, (long long)yh, (long long)yw, on, ok, ooh, oow);
    /* kiln's GEMM where the kernel equals the stride (UNet's 2x2, stride 2: no overlap, no
     * padding): a 1x1 convolution to kh*kw*K channels scattered into the output, bias and
     * activation in its epilogue, a concat's channel slice written directly. Timed beside
     * cuDNN (KILN_CONV_IGEMM=off leaves it out, =only prefers it: A/B runs, tests). */
    s->ig = (kcu_igemm){(int)g.n, (int)g.h, (int)g.w, (int)g.c, (int)(g.kh * g.kw * g.k), (int)g.h, (int)g.w, 1, 1,
                        1, 1, 0, 0, 1, 1, (int)(g.n * g.h * g.w), (int)g.c, s->has_act, 0, s->act, 0, (int)s->yp,
                        (int)g.kh, (int)g.kw};
    bool up_ok = sto == KILN_FLOAT16 && nhwc && g.g == 1 && direct && g.pt == 0 && g.pl == 0 && g.kh == g.sh &&
                 g.kw == g.sw && g.dh == 1 && g.dw == 1 && fits_int(g.n * g.h * g.w) && fits_int(g.kh * g.kw * g.k) &&
                 kcu_igemm_applies(&s->ig);
    tactic t0 = tactic_read(b, 'D'), t = t0;
    int hint_mode = t0.ok ? t0.mode & ~CONV_GPITCH : -1;
    bool ig_hint = hint_mode == CONV_IGEMM && up_ok && kcu_igemm_config_ok(&s->ig, (int)t0.algo) &&
                   kcu_igemm_workspace(&s->ig, (int)t0.algo) <= b->ws_limit;
    /* cuDNN's backend API: backward-data with the bias (and ReLU) in its epilogue, writing
     * a concat's slice itself where an engine takes that pitched output (KILN_CONV_GRAPH=
     * off|only, KILN_CONV_GRAPH_PITCH=off as for convolutions) */
    const char *graph_env = getenv("KILN_CONV_GRAPH"), *pitch_env = getenv("KILN_CONV_GRAPH_PITCH");
    bool graph_wanted = hint_mode == CONV_GRAPH;
    bool graph_on = sto == KILN_FLOAT16 && nhwc && g.g == 1 && direct && !ig_hint &&
                    (graph_wanted || (!(graph_env && !strcmp(graph_env, "off")) && !b->untimed && !t0.ok));
    s->cg_act_pass = s->has_act && s->act.type != KILN_ACT_RELU;
    kcu_cg_desc cd = {g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.oh, g.ow, {g.pt, g.pl}, {g.pt, g.pl}, {g.sh, g.sw},
                      {g.dh, g.dw}, false, s->has_bias, s->has_act && !s->cg_act_pass, 0, true};
    if (graph_on) {
        bool pitch_on = s->yp && (graph_wanted ? (t0.mode & CONV_GPITCH) != 0 : !(pitch_env && !strcmp(pitch_env, "off")));
        cd.ldy = pitch_on ? s->yp : 0;
        cg_open(l, b->env, s, cd);
    }
    size_t graph_ws[KCU_CG_MAX] = {0}, graph_max = 0;
    bool graph_ok[KCU_CG_MAX] = {false};
    bool graph_hint = graph_wanted && s->cg && (int)t0.algo < kcu_cg_count(s->cg) &&
                      kcu_cg_engine(s->cg, (int)t0.algo) == (int64_t)t0.math &&
                      kcu_cg_plan(s->cg, (int)t0.algo, b->ws_limit, &graph_ws[0]);
    if (t.ok && hint_mode != CONV_CUDNN) t.ok = false; /* another path's choice, or one not usable here */
    bool dnn_hint = false;
    if (ig_hint || graph_hint) { /* cuDNN's legacy call only as the fallback: the heuristics' choice, untimed */
        kcu_build quick = *b;
        quick.untimed = true;
        if ((st = pick_backward(l, &quick, s)) != KILN_OK) return st;
    } else if (take_backward(b, s, &t)) {
        dnn_hint = true; /* the stored choice: cuDNN, nothing timed */
        hint_taken(b);
    } else if ((st = pick_backward(l, b, s)) != KILN_OK) {
        return st;
    }
    ig_pick igp = ig_select(&s->ig, up_ok && !ig_hint && !graph_hint && !dnn_hint && !b->untimed);
    bool ig_time = igp.time, ig_only = igp.only;
    int graph_n = 0;
    if (s->cg && !graph_hint && !dnn_hint && !ig_hint && !ig_only)
        graph_n = cg_plan_all(l, b, s, cd, graph_ok, graph_ws, &graph_max);
    bool graph_time = graph_n > 0 && !b->untimed;
    /* scratch: the libraries' workspace, then the full output to crop from, then the dense
     * copy of a pitched output that the bias pass writes into the slice */
    s->buf_off = align256(s->ws > graph_max ? s->ws : graph_max);
    s->pad_bytes = direct ? 0 : (size_t)(g.n * g.k * yh * yw) * es;
    size_t copy_bytes = s->yp ? (size_t)(g.n * g.k * g.oh * g.ow) * es : 0;
    size_t need_cudnn = copy_bytes ? align256(s->buf_off + s->pad_bytes) + copy_bytes : s->buf_off + s->pad_bytes;
    s->mode = CONV_CUDNN;
    if (ig_hint) {
        s->mode = CONV_IGEMM; /* the stored choice: no timing */
        s->ig_cfg = (int)t0.algo;
        hint_taken(b);
    } else if (graph_hint) {
        s->mode = CONV_GRAPH; /* the stored choice: no timing */
        s->cg_index = (int)t0.algo;
        s->cg_ws = graph_ws[0];
        kcu_cg_use(s->cg, s->cg_index);
        hint_taken(b);
    } else if (ig_time || graph_time) {
        size_t ig_max = 0;
        for (int i = 0; ig_time && i < kcu_igemm_configs(); i++) {
            size_t w = kcu_igemm_workspace(&s->ig, i);
            if (w > ig_max && w <= b->ws_limit) ig_max = w; /* larger ones are not timed */
        }
        uint16_t *hw = NULL;
        size_t wbytes = 0;
        void *dw = NULL;
        bench bn;
        if (ig_time && (st = deconv_gemm_weights(l, b->env, s, &hw, &wbytes)) != KILN_OK) return st;
        bool ready = !ig_time || (cudaMalloc(&dw, wbytes) == cudaSuccess &&
                                  cudaMemcpy(dw, hw, wbytes, cudaMemcpyHostToDevice) == cudaSuccess);
        if (ready && bench_open(l, b, &bn, need_cudnn > ig_max ? need_cudnn : ig_max)) {
            float dnn_ms = bench_time(&bn, l, s, deconv_run), gemm_ms = INFINITY, graph_ms = INFINITY, wg_ms = INFINITY;
            float best = ig_only ? INFINITY : dnn_ms;
            int won = -1;
            if (ig_time) {
                const void *w_dnn = s->w;
                s->w = dw; /* the GEMM's layout while its candidates run */
                s->mode = CONV_IGEMM;
                for (int i = 0; i < kcu_igemm_configs(); i++) {
                    if (!ig_try(b, &s->ig, &igp, i)) continue;
                    s->ig_cfg = i;
                    float ms = bench_time(&bn, l, s, deconv_run);
                    float *fastest = kcu_igemm_is_wgmma(i) ? &wg_ms : &gemm_ms;
                    if (ms < *fastest) *fastest = ms;
                    if (ms < best) {
                        best = ms;
                        won = i;
                    }
                }
                s->w = w_dnn;
                s->mode = won >= 0 ? CONV_IGEMM : CONV_CUDNN;
                if (won >= 0) s->ig_cfg = won;
            }
            if (graph_time) {
                if (graph_env && !strcmp(graph_env, "only")) best = INFINITY; /* tests: the graph wherever it runs */
                graph_ms = cg_time(&bn, l, s, deconv_run, graph_n, graph_ok, graph_ws, &best);
            }
            kiln_log(b->env, KILN_LOG_VERBOSE,
                     "deconvolution %s: cuDNN backward-data %.4f ms, cuDNN graph%s %.4f ms, kiln's GEMM %.4f ms, "
                     "kiln's Hopper kernel %.4f ms (%s)",
                     l->name ? l->name : "?", dnn_ms, s->cg_pitched ? " (writing the slice)" : "", graph_ms, gemm_ms,
                     wg_ms,
                     s->mode == CONV_IGEMM    ? (kcu_igemm_is_wgmma(s->ig_cfg) ? "kiln's Hopper kernel" : "kiln's GEMM")
                     : s->mode == CONV_GRAPH ? "cuDNN graph"
                                             : "cuDNN");
            bench_close(&bn);
        }
        if (dw) cudaFree(dw);
        (void)cudaGetLastError();
        kiln_free(b->env, hw);
    }
    cg_settle(b, s);
    if (s->mode == CONV_IGEMM) { /* the weights the GEMM reads, where cuDNN's were */
        uint16_t *hw = NULL;
        size_t wbytes = 0;
        if ((st = deconv_gemm_weights(l, b->env, s, &hw, &wbytes)) != KILN_OK) return st;
        cudaError_t e = cudaMemcpy((void *)s->w, hw, wbytes, cudaMemcpyHostToDevice);
        kiln_free(b->env, hw);
        if (e != cudaSuccess) return kcu_cuda_fail(l, NULL, e, "cudaMemcpy", __FILE__, __LINE__);
        int bm, bn, z;
        kcu_igemm_tile(&s->ig, s->ig_cfg, &bm, &bn, &z);
        char split[24] = "";
        if (z > 1) snprintf(split, sizeof split, "_splitk%d", z);
        snprintf(s->name, sizeof s->name, "cuda.kiln_%s_deconv_%dx%d%s_f16_nhwc",
                 kcu_igemm_is_wgmma(s->ig_cfg) ? "wgmma" : "igemm", bm, bn, split);
        *scratch = kcu_igemm_workspace(&s->ig, s->ig_cfg);
        return KILN_OK;
    }
    if (s->mode == CONV_GRAPH) {
        snprintf(s->name, sizeof s->name, "cuda.cudnn_graph_dgrad_eng%lld_f16_nhwc", (long long)s->cg_engine);
        s->buf_off = align256(s->cg_ws);
        *scratch = s->yp && !s->cg_pitched ? align256(s->buf_off) + copy_bytes : s->buf_off;
        return KILN_OK;
    }
    snprintf(s->name, sizeof s->name, "%s%s",
             (unsigned)s->bwd < sizeof bwd_names / sizeof bwd_names[0] ? bwd_names[s->bwd] : "cuda.cudnn_bwd_data",
             sto == KILN_FLOAT16 ? (nhwc ? "_f16_nhwc" : "_f16") : s->math != CUDNN_FMA_MATH ? "_tf32" : "");
    s->buf_off = align256(s->ws);
    *scratch = copy_bytes ? align256(s->buf_off + s->pad_bytes) + copy_bytes : s->buf_off + s->pad_bytes;
    return KILN_OK;
}

static kiln_status deconv_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x) {
    const conv_state *s = state;
    const float one = 1.0f, zero = 0.0f;
    char *scr = x->scratch;
    if (s->mode == CONV_IGEMM) {
        KCU_CUDA(l, kcu_igemm_run(x->stream, s->ig_cfg, &s->ig, in[0], s->w, s->has_bias ? s->bias : NULL, NULL,
                                  out[0], scr));
        return KILN_OK;
    }
    /* a pitched output: cuDNN (and the crop) write a dense copy, the bias pass the slice */
    void *dense = s->yp ? (void *)(scr + align256(s->buf_off + s->pad_bytes)) : out[0];
    if (s->mode == CONV_GRAPH) {
        void *yl = s->cg_pitched ? out[0] : dense;
        kiln_status st = kcu_cg_run(l, s->cg, x->dnn, in[0], s->w, NULL, s->bias_st, yl, scr);
        if (st != KILN_OK) return st;
        return conv_finish(l, s, x, yl, out[0], NULL, s->cg_act_pass ? &s->act : NULL);
    }
    void *dst = s->crop_output ? (void *)(scr + s->buf_off) : dense;
    KCU_DNN(l, cudnnConvolutionBackwardData(x->dnn, &one, s->wd, s->w, s->xd, in[0], s->cd, s->bwd,
                                            s->ws ? scr : NULL, s->ws, &zero, s->yd, dst));
    if (s->crop_output) KCU_CUDA(l, kcu_pad_run(x->stream, &s->pad, s->st == KILN_FLOAT16 ? 2 : 4, dst, dense));
    return conv_epilogue(l, s, x, dense, out[0], NULL);
}

static size_t deconv_tactic(const void *state, uint8_t *buf, size_t cap) {
    const conv_state *s = state;
    if (s->mode == CONV_GRAPH)
        return tactic_write(buf, cap, 'D', CONV_GRAPH | (s->cg_pitched ? CONV_GPITCH : 0), (uint32_t)s->cg_index,
                            (uint32_t)s->cg_engine, NULL);
    bool ig = s->mode == CONV_IGEMM;
    return tactic_write(buf, cap, 'D', ig ? CONV_IGEMM : CONV_CUDNN, ig ? (uint32_t)s->ig_cfg : (uint32_t)s->bwd,
                        s->math, NULL);
}

const kcu_kernel kcu_k_deconvolution = {deconv_prepare, deconv_run, conv_release, conv_refit, NULL};

/* ---- names of the chosen kernels (engine inspection) ---- */

const char *kcu_dnn_kernel_name(const ke_node *node) {
    const void *state = node->state;
    if (!state) return NULL;
    switch (node->layer->type) {
    case KILN_LAYER_CONVOLUTION:
    case KILN_LAYER_DECONVOLUTION: return ((const conv_state *)state)->name;
    case KILN_LAYER_GEMM:
    case KILN_LAYER_MATMUL: return ((const mm_state *)state)->name;
    default: return NULL;
    }
}

/* The choice prepare made (algorithm, math type, path) for the plan and the timing cache;
 * 0 for layers whose kernel involves no choice. */
size_t kcu_dnn_tactic(const ke_node *node, uint8_t *buf, size_t cap) {
    const void *state = node->state;
    if (!state) return 0;
    switch (node->layer->type) {
    case KILN_LAYER_CONVOLUTION: return conv_tactic(state, buf, cap);
    case KILN_LAYER_DECONVOLUTION: return deconv_tactic(state, buf, cap);
    case KILN_LAYER_GEMM:
    case KILN_LAYER_MATMUL: return mm_tactic(state, buf, cap);
    default: return 0;
    }
}
