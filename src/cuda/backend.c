/* kiln CUDA backend: the runtime's backend table over the CUDA kernels. A context owns a
 * stream, cuDNN and cuBLASLt handles, its activation arena and scratch in device memory,
 * and a fault record that kernels fill when the data is bad (an index out of range). */
#include <stdio.h>
#include <string.h>

#include "core/half.h"
#include "cuda/host.h"
#include "runtime/backend.h"

/* ---- status helpers ---- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

kiln_status kcu_cuda_fail(const kiln_layer *l, const kiln_env *env, cudaError_t e, const char *call, const char *file,
                          int line) {
    (void)cudaGetLastError(); /* a non-sticky error must not resurface at the next launch check */
    kiln_status st = e == cudaErrorMemoryAllocation ? KILN_ERR_OUT_OF_MEMORY : KILN_ERR_DEVICE;
    if (l)
        return kg_layer_error(l, st, "%s:%d: %s failed: %s (%s)", base_name(file), line, call, cudaGetErrorName(e),
                              cudaGetErrorString(e));
    return kiln_error(env, st, "CUDA backend: %s:%d: %s failed: %s (%s)", base_name(file), line, call,
                      cudaGetErrorName(e), cudaGetErrorString(e));
}

kiln_status kcu_dnn_fail(const kiln_layer *l, cudnnStatus_t s, const char *call, const char *file, int line) {
    char detail[256];
    detail[0] = 0;
    cudnnGetLastErrorString(detail, sizeof detail);
    (void)cudaGetLastError();
    kiln_status st = s == CUDNN_STATUS_ALLOC_FAILED ? KILN_ERR_OUT_OF_MEMORY
                     : s == CUDNN_STATUS_NOT_SUPPORTED ? KILN_ERR_UNSUPPORTED
                                                       : KILN_ERR_DEVICE;
    return kg_layer_error(l, st, "%s:%d: %s failed: %s%s%s", base_name(file), line, call, cudnnGetErrorString(s),
                          detail[0] ? ": " : "", detail);
}

kiln_status kcu_blas_fail(const kiln_layer *l, cublasStatus_t s, const char *call, const char *file, int line) {
    (void)cudaGetLastError();
    kiln_status st = s == CUBLAS_STATUS_ALLOC_FAILED ? KILN_ERR_OUT_OF_MEMORY
                     : s == CUBLAS_STATUS_NOT_SUPPORTED ? KILN_ERR_UNSUPPORTED
                                                        : KILN_ERR_DEVICE;
    return kg_layer_error(l, st, "%s:%d: %s failed: %s (%s)", base_name(file), line, call, cublasLtGetStatusName(s),
                          cublasLtGetStatusString(s));
}

/* ---- physical formats ---- */

kiln_status kcu_check_formats(const kiln_layer *l, int storage, bool nhwc, const char *what) {
    for (int i = 0; i < l->nb_inputs + l->nb_outputs; i++) {
        const kiln_tensor *t = i < l->nb_inputs ? l->inputs[i] : l->outputs[i - l->nb_inputs];
        if (!t) continue;
        bool fl = t->dtype == KILN_FLOAT32 || t->dtype == KILN_FLOAT16;
        bool ok = storage < 0 || !fl ? kcu_logical(t)
                                     : (int)kg_storage(t) == storage && (t->dims.nb_dims != 4 || kcu_nhwc(t) == nhwc);
        if (!ok)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "tensor '%s' is stored as %s%s, which the %s kernel does not read",
                                  t->name, kiln_dtype_name(kg_storage(t)), kcu_nhwc(t) ? " NHWC" : " row-major", what);
    }
    return KILN_OK;
}

void kcu_to_half(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = kiln_float_to_half(src[i]);
}

/* ---- per-layer device state ---- */

void kcu_state_free(const kiln_env *env, void *state) {
    kcu_state *s = state;
    if (!s) return;
    if (s->dev) cudaFree(s->dev);
    kiln_free(env, s);
}

kiln_status kcu_state_upload(const kiln_layer *l, kcu_state *s, int n, const void *const *src, const size_t *bytes,
                             void **dst) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += KILN_ALIGN_UP(bytes[i], 256);
    if (total == 0) total = 256;
    cudaError_t e = cudaMalloc(&s->dev, total);
    if (e != cudaSuccess) {
        s->dev = NULL;
        (void)cudaGetLastError();
        return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of device memory for its weights: %s",
                              total, cudaGetErrorString(e));
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        char *d = (char *)s->dev + off;
        if (bytes[i]) KCU_CUDA(l, cudaMemcpy(d, src[i], bytes[i], cudaMemcpyHostToDevice));
        if (dst) dst[i] = bytes[i] ? d : NULL;
        off += KILN_ALIGN_UP(bytes[i], 256);
    }
    return KILN_OK;
}

/* ---- the basic layers: constant, views that must copy, cast ---- */

static size_t tensor_bytes(const kiln_tensor *t) { return kg_tensor_bytes(t); }

/* A constant's values in its storage type: the given bytes, or float32 made float16
 * (*tmp: the converted copy the caller frees). */
static kiln_status constant_values(const kiln_layer *l, const kiln_env *env, const void **src, size_t *bytes,
                                   void **tmp) {
    const kiln_weights *w = &l->w[0];
    kiln_dtype st = kg_storage(l->outputs[0]);
    *tmp = NULL;
    *src = w->values;
    *bytes = (size_t)w->count * kiln_dtype_size(w->dtype);
    if (kcu_nhwc(l->outputs[0]))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA backend keeps constants row-major");
    if (st == w->dtype) return KILN_OK;
    if (st != KILN_FLOAT16 || w->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "cannot store %s values as %s", kiln_dtype_name(w->dtype),
                              kiln_dtype_name(st));
    uint16_t *h = kiln_alloc(env, (size_t)(w->count ? w->count : 1) * sizeof *h);
    if (!h) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory converting to float16");
    kcu_to_half(h, w->values, w->count);
    *tmp = h;
    *src = h;
    *bytes = (size_t)w->count * sizeof *h;
    return KILN_OK;
}

/* A constant's values go to the device at build: they feed other layers by pointer. */
static kiln_status constant_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    kcu_state *s = kiln_calloc(b->env, 1, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    *state = s;
    const void *src;
    size_t bytes;
    void *tmp;
    kiln_status st = constant_values(l, b->env, &src, &bytes, &tmp);
    if (st == KILN_OK) st = kcu_state_upload(l, s, 1, &src, &bytes, NULL);
    kiln_free(b->env, tmp);
    return st;
}

/* In place: readers hold the constant's address (a Gemm bias, a captured CUDA graph). */
static kiln_status constant_refit(const kiln_layer *l, void *state, int slot) {
    kcu_state *s = state;
    const void *src;
    size_t bytes;
    void *tmp;
    if (slot != 0) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "a constant has no weights %d", slot);
    kiln_status st = constant_values(l, &l->graph->env, &src, &bytes, &tmp);
    if (st == KILN_OK && bytes) {
        cudaError_t e = cudaMemcpy(s->dev, src, bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) st = kcu_cuda_fail(l, NULL, e, "cudaMemcpy", __FILE__, __LINE__);
    }
    kiln_free(&l->graph->env, tmp);
    return st;
}

/* Runs only when the constant is itself a network output. */
static kiln_status constant_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                                const kcu_exec *x) {
    (void)in;
    const kcu_state *s = state;
    size_t bytes = tensor_bytes(l->outputs[0]);
    if (bytes) KCU_CUDA(l, cudaMemcpyAsync(out[0], s->dev, bytes, cudaMemcpyDeviceToDevice, x->stream));
    return KILN_OK;
}

/* Shuffle and identity run only when the planner could not alias (a network output). */
static kiln_status copy_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            const kcu_exec *x) {
    (void)state;
    size_t bytes = tensor_bytes(l->outputs[0]);
    if (bytes && out[0] != in[0])
        KCU_CUDA(l, cudaMemcpyAsync(out[0], in[0], bytes, cudaMemcpyDeviceToDevice, x->stream));
    return KILN_OK;
}

static kiln_status cast_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            const kcu_exec *x) {
    (void)state;
    kiln_dtype from = kg_storage(l->inputs[0]), to = kg_storage(l->outputs[0]);
    int64_t n = kiln_dims_volume(&l->outputs[0]->dims);
    if (from == to) return copy_run(l, state, in, out, x);
    KCU_CUDA(l, kcu_cast(x->stream, (int)from, (int)to, n, in[0], out[0]));
    return KILN_OK;
}

static const kcu_kernel k_constant = {constant_prepare, constant_run, NULL, constant_refit, NULL};
static const kcu_kernel k_copy = {NULL, copy_run, NULL, NULL, NULL};
const kcu_kernel kcu_k_cast = {NULL, cast_run, NULL, NULL, NULL};

static const kcu_kernel *const kernels[KILN_LAYER_TYPE_COUNT] = {
    [KILN_LAYER_CONVOLUTION] = &kcu_k_convolution,
    [KILN_LAYER_DECONVOLUTION] = &kcu_k_deconvolution,
    [KILN_LAYER_POOLING] = &kcu_k_pooling,
    [KILN_LAYER_ACTIVATION] = &kcu_k_activation,
    [KILN_LAYER_PRELU] = &kcu_k_prelu,
    [KILN_LAYER_SCALE] = &kcu_k_scale,
    [KILN_LAYER_ELEMENTWISE] = &kcu_k_elementwise,
    [KILN_LAYER_UNARY] = &kcu_k_unary,
    [KILN_LAYER_MATMUL] = &kcu_k_matmul,
    [KILN_LAYER_GEMM] = &kcu_k_gemm,
    [KILN_LAYER_CONCAT] = &kcu_k_concat,
    [KILN_LAYER_SPLIT] = &kcu_k_split,
    [KILN_LAYER_SLICE] = &kcu_k_slice,
    [KILN_LAYER_SHUFFLE] = &k_copy,
    [KILN_LAYER_TRANSPOSE] = &kcu_k_transpose,
    [KILN_LAYER_PAD] = &kcu_k_pad,
    [KILN_LAYER_GATHER] = &kcu_k_gather,
    [KILN_LAYER_CAST] = &kcu_k_cast,
    [KILN_LAYER_CONSTANT] = &k_constant,
    [KILN_LAYER_IDENTITY] = &k_copy,
    [KILN_LAYER_RESIZE] = &kcu_k_resize,
    [KILN_LAYER_SOFTMAX] = &kcu_k_softmax,
    [KILN_LAYER_REDUCE] = &kcu_k_reduce,
    [KILN_LAYER_ARG_REDUCE] = &kcu_k_arg_reduce,
    [KILN_LAYER_SELECT] = &kcu_k_select,
    [KILN_LAYER_EXPAND] = &kcu_k_expand,
    [KILN_LAYER_TILE] = &kcu_k_tile,
    [KILN_LAYER_DEPTH_TO_SPACE] = &kcu_k_depth_to_space,
    [KILN_LAYER_SPACE_TO_DEPTH] = &kcu_k_space_to_depth,
    [KILN_LAYER_INSTANCE_NORM] = &kcu_k_instance_norm,
    [KILN_LAYER_LRN] = &kcu_k_lrn,
    [KILN_LAYER_REFORMAT] = &kcu_k_reformat,
    [KILN_LAYER_FUSED] = &kcu_k_fused,
};

/* ---- build time ---- */

/* Convolutions, GEMMs and element-wise ops (a residual add then ReLU) apply any activation
 * in their output pass. An activation only follows float32 results, which those all give. */
static bool cu_can_fuse_act(kiln_layer_type producer, kiln_activation_type act) {
    return (producer == KILN_LAYER_CONVOLUTION || producer == KILN_LAYER_GEMM || producer == KILN_LAYER_ELEMENTWISE) &&
           (unsigned)act < KILN_ACT_COUNT;
}

/* Every convolution kernel (cuDNN's z input, the GEMM's C matrix, our epilogue) adds it. */
static bool cu_can_fuse_residual(const kiln_layer *conv) { return conv->type == KILN_LAYER_CONVOLUTION; }

static bool engine_tf32(const kiln_engine *e) { return (e->flags >> KILN_FLAG_TF32) & 1u; }

/* ---- formats under KILN_FLAG_FP16 ----
 * The heavy layers run on float16 storage with float32 accumulation: convolutions and
 * pooling channels-last (cuDNN's tensor-core layout), Gemm and MatMul row-major. Point-wise
 * layers, concat, split and resize follow their inputs (channels-last too); data movement
 * follows them row-major; everything else stays float32 row-major. A constant read only by
 * GEMMs is stored as float16 at build, so no reformat runs for it. */

static bool f32(kiln_dtype t) { return t == KILN_FLOAT32; }

/* any16: an input is stored as float16; nhwc_ok: one is channels-last and every float
 * input is 4-D (the format pass reformats each input to the layer's one format, and
 * channels-last exists for 4-D tensors only). */
static void input_formats(const kiln_layer *l, bool *any16, bool *nhwc_ok) {
    bool any_nhwc = false, all4 = true;
    *any16 = false;
    for (int k = 0; k < l->nb_inputs; k++) {
        const kiln_tensor *t = l->inputs[k];
        if (!t || (t->dtype != KILN_FLOAT32 && t->dtype != KILN_FLOAT16)) continue;
        if (kg_storage(t) == KILN_FLOAT16) *any16 = true;
        if (kcu_nhwc(t)) any_nhwc = true;
        if (t->dims.nb_dims != 4) all4 = false;
    }
    *nhwc_ok = any_nhwc && all4;
}

static bool constant_wants_f16(const kiln_layer *c) {
    const kiln_tensor *t = c->outputs[0];
    if (!f32(t->dtype) || t->is_output || !f32(c->w[0].dtype)) return false;
    const kiln_graph *g = c->graph;
    int readers = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        const kiln_layer *r = g->layers[i];
        if (r->removed) continue;
        for (int k = 0; k < r->nb_inputs; k++) {
            if (r->inputs[k] != t) continue;
            if ((r->type != KILN_LAYER_GEMM && r->type != KILN_LAYER_MATMUL) || r->pin_fp32) return false;
            readers++;
        }
    }
    return readers > 0;
}

static bool cu_layer_format(const kiln_layer *l, unsigned flags, int *storage, int *format) {
    if (!((flags >> KILN_FLAG_FP16) & 1u) || l->nb_outputs < 1 || !f32(l->outputs[0]->dtype)) return false;
    bool o4 = l->outputs[0]->dims.nb_dims == 4, in16, in_nhwc;
    input_formats(l, &in16, &in_nhwc);
    for (int k = 1; k < l->nb_outputs; k++) {
        o4 = o4 && l->outputs[k]->dims.nb_dims == 4;
        /* the format pass keeps a network output logical behind a reformat of the single
         * output only: a multi-output layer that writes one stays logical itself */
        for (int j = 0; j < l->nb_outputs; j++)
            if (l->outputs[j]->is_output) return false;
    }
    *storage = KILN_FLOAT16;
    *format = KG_FORMAT_LINEAR;
    switch (l->type) {
    case KILN_LAYER_CONVOLUTION:
    case KILN_LAYER_DECONVOLUTION:
        if (!f32(l->inputs[0]->dtype) || !f32(l->w[0].dtype) || (l->w[1].count && !f32(l->w[1].dtype))) return false;
        if (l->inputs[0]->dims.nb_dims == 4) *format = KG_FORMAT_NHWC;
        return true;
    case KILN_LAYER_POOLING:
        if (!o4 || !f32(l->inputs[0]->dtype)) return false;
        *format = KG_FORMAT_NHWC;
        return true;
    case KILN_LAYER_GEMM:
    case KILN_LAYER_MATMUL:
        for (int k = 0; k < l->nb_inputs; k++)
            if (l->inputs[k] && !f32(l->inputs[k]->dtype)) return false;
        return true;
    case KILN_LAYER_CONSTANT: return constant_wants_f16(l);
    case KILN_LAYER_SCALE:
    case KILN_LAYER_ACTIVATION:
    case KILN_LAYER_UNARY:
    case KILN_LAYER_PRELU:
    case KILN_LAYER_ELEMENTWISE:
    case KILN_LAYER_CONCAT:
    case KILN_LAYER_SPLIT:
    case KILN_LAYER_RESIZE:
        if (!in16) return false;
        if (in_nhwc && o4 && !(l->type == KILN_LAYER_SCALE && l->p.scale.mode == KILN_SCALE_ELEMENTWISE))
            *format = KG_FORMAT_NHWC;
        return true;
    case KILN_LAYER_SLICE:
    case KILN_LAYER_SHUFFLE:
    case KILN_LAYER_TRANSPOSE:
    case KILN_LAYER_PAD:
    case KILN_LAYER_GATHER:
    case KILN_LAYER_IDENTITY:
    case KILN_LAYER_EXPAND:
    case KILN_LAYER_TILE:
    case KILN_LAYER_DEPTH_TO_SPACE:
    case KILN_LAYER_SPACE_TO_DEPTH: return in16;
    default: return false;
    }
}

/* Layers whose kernels check the storage and layout they are given themselves; the rest
 * read their logical dtype, row-major (a plan built for other kernels fails cleanly). */
static bool format_aware(kiln_layer_type t) {
    switch (t) {
    case KILN_LAYER_CONVOLUTION:
    case KILN_LAYER_DECONVOLUTION:
    case KILN_LAYER_POOLING:
    case KILN_LAYER_ACTIVATION:
    case KILN_LAYER_PRELU:
    case KILN_LAYER_SCALE:
    case KILN_LAYER_ELEMENTWISE:
    case KILN_LAYER_UNARY:
    case KILN_LAYER_MATMUL:
    case KILN_LAYER_GEMM:
    case KILN_LAYER_CONCAT:
    case KILN_LAYER_SPLIT:
    case KILN_LAYER_SLICE:
    case KILN_LAYER_SHUFFLE:
    case KILN_LAYER_TRANSPOSE:
    case KILN_LAYER_PAD:
    case KILN_LAYER_GATHER:
    case KILN_LAYER_CONSTANT:
    case KILN_LAYER_IDENTITY:
    case KILN_LAYER_RESIZE:
    case KILN_LAYER_EXPAND:
    case KILN_LAYER_TILE:
    case KILN_LAYER_DEPTH_TO_SPACE:
    case KILN_LAYER_SPACE_TO_DEPTH:
    case KILN_LAYER_REFORMAT:
    case KILN_LAYER_FUSED: return true;
    default: return false;
    }
}

/* Whether the kernel the engine launches right before node's is one of kiln's programmatic
 * dependent kernels (the nodes before it are prepared; skipped nodes launch nothing). */
static bool cu_after_pdl(const kiln_engine *e, const ke_node *node) {
    if (!kcu_pdl_enabled()) return false;
    for (const ke_node *p = node - 1; p >= e->nodes; p--) {
        if (p->skip) continue;
        const kcu_kernel *k = p->kernel;
        return k && k->pdl_tail && p->state && k->pdl_tail(p->state);
    }
    return false;
}

static unsigned cu_tactic_context(const kiln_engine *e, const ke_node *node) { return cu_after_pdl(e, node) ? 1u : 0u; }

static kiln_status cu_prepare(const kiln_engine *e, ke_node *node) {
    const kiln_layer *l = node->layer;
    const kcu_kernel *k = (unsigned)l->type < KILN_LAYER_TYPE_COUNT ? kernels[l->type] : NULL;
    if (!k || !k->run)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA backend has no kernel for this layer type");
    node->kernel = k;
    if (!format_aware(l->type)) {
        kiln_status st = kcu_check_formats(l, -1, false, "CUDA");
        if (st != KILN_OK) return st;
    }
    /* skipped nodes are views or constants: only a constant has something to place */
    if ((node->skip && l->type != KILN_LAYER_CONSTANT) || !k->prepare) return KILN_OK;
    kcu_build b = {e, &e->env, engine_tf32(e) || l->tf32_ok, (size_t)1 << 30, node->hint, node->hint_len, &node->hint_used,
                   e->untimed, engine_tf32(e), cu_after_pdl(e, node)};
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && free_b / 4 < b.ws_limit) b.ws_limit = free_b / 4;
    (void)cudaGetLastError();
    return k->prepare(l, &b, &node->state, &node->scratch_bytes);
}

static void cu_release(const kiln_env *env, ke_node *node) {
    const kcu_kernel *k = node->kernel;
    if (!node->state) return;
    if (k && k->release) k->release(env, node->state);
    else kcu_state_free(env, node->state);
    node->state = NULL;
}

/* Refit copies the new values (converted as at build) into the buffers the kernel already
 * reads, so kernel choices, scratch sizes and captured CUDA graphs all stay valid. */
static kiln_status cu_refit(const kiln_engine *e, ke_node *node, int slot) {
    (void)e;
    const kiln_layer *l = node->layer;
    const kcu_kernel *k = node->kernel;
    if (!node->state || !k || !k->refit)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA kernel of this layer has no refittable weights");
    /* no run may read the weights while they change */
    cudaError_t ce = cudaDeviceSynchronize();
    if (ce != cudaSuccess) return kcu_cuda_fail(l, NULL, ce, "cudaDeviceSynchronize", __FILE__, __LINE__);
    return k->refit(l, node->state, slot);
}

static const void *cu_const_data(const ke_node *node) {
    const kcu_state *s = node->state;
    return s ? s->dev : NULL;
}

/* ---- contexts ---- */

/* Faults: kernels record into x.err in device memory; a finish copies it into pinned
 * `fault` on the stream before synchronizing (a few bytes, no extra sync).
 * CUDA graphs: a run whose tensor addresses equal the previous run's is captured into a
 * graph (the first run with new addresses runs directly: it also warms up every library
 * and kernel module, which must not happen inside a capture); later runs with the same
 * addresses replay that graph with one launch. */
struct kb_ctx {
    const kiln_engine *e;
    int device;
    cudaStream_t own;
    /* Non-blocking stream that graphs are captured on (never run on): capturing a blocking
     * stream would make every legacy-default-stream call in any thread of the process
     * (a cudaMemcpy of another context's inputs) fail and break the capture. */
    cudaStream_t cap;
    kcu_exec x;     /* x.stream: the stream of the current run */
    kcu_err *fault; /* pinned host copy of x.err */
    void *scratch;
    int nb_ptrs;
    void **seen;       /* the addresses of the last direct run */
    bool seen_valid;
    void **graph_ptrs; /* the addresses `exec` was captured with */
    cudaGraphExec_t exec;
    bool no_graphs;    /* a capture failed: this context runs directly */
    const void **in_ptrs; /* per-node argument arrays for runs made here */
    void **out_ptrs;
    unsigned *amax;       /* device word for cu_absmax (the range check), made on first use */
};

static void cu_ctx_destroy(const kiln_engine *e, kb_ctx *c, void *arena) {
    if (arena) cudaFree(arena);
    if (c) {
        if (c->exec) cudaGraphExecDestroy(c->exec);
        kiln_free(&e->env, c->seen);
        kiln_free(&e->env, c->graph_ptrs);
        kiln_free(&e->env, c->in_ptrs);
        kiln_free(&e->env, c->out_ptrs);
        if (c->scratch) cudaFree(c->scratch);
        if (c->x.dnn) cudnnDestroy(c->x.dnn);
        if (c->x.lt) cublasLtDestroy(c->x.lt);
        if (c->own) cudaStreamDestroy(c->own);
        if (c->cap) cudaStreamDestroy(c->cap);
        if (c->fault) cudaFreeHost(c->fault);
        if (c->amax) cudaFree(c->amax);
        if (c->x.err) cudaFree(c->x.err);
        kiln_free(&e->env, c);
    }
    (void)cudaGetLastError();
}

/* Device memory for the context; out of memory names what and how much. */
static kiln_status ctx_alloc(const kiln_env *env, void **p, size_t bytes, const char *what) {
    *p = NULL;
    if (!bytes) return KILN_OK;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e == cudaSuccess) return KILN_OK;
    *p = NULL;
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    (void)cudaGetLastError();
    return kiln_error(env, e == cudaErrorMemoryAllocation ? KILN_ERR_OUT_OF_MEMORY : KILN_ERR_DEVICE,
                      "context create: cannot allocate %zu bytes of device memory for %s (%zu of %zu bytes free): %s",
                      bytes, what, free_b, total_b, cudaGetErrorString(e));
}

/* Fails context creation with the call's name and the library's message. */
#define CTX_CALL(ok, call, detail)                                                                         \
    do {                                                                                                   \
        if (!(ok)) {                                                                                       \
            kiln_status st_ = kiln_error(env, KILN_ERR_DEVICE, "context create: %s failed: %s", call, detail); \
            cu_ctx_destroy(e, c, a);                                                                       \
            return st_;                                                                                    \
        }                                                                                                  \
    } while (0)

static kiln_status cu_ctx_create(const kiln_engine *e, kb_ctx **out, void **arena) {
    const kiln_env *env = &e->env;
    *out = NULL;
    *arena = NULL;
    void *a = NULL;
    kb_ctx *c = kiln_calloc(env, 1, sizeof *c);
    if (!c) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "context create: out of host memory");
    c->e = e;
    cudaError_t ce = cudaGetDevice(&c->device);
    CTX_CALL(ce == cudaSuccess, "cudaGetDevice", cudaGetErrorString(ce));
    /* a blocking stream: kiln_context_execute is ordered after the caller's work on the
     * legacy default stream (a cudaMemcpy of the inputs just before, say) */
    ce = cudaStreamCreateWithFlags(&c->own, cudaStreamDefault);
    CTX_CALL(ce == cudaSuccess, "cudaStreamCreate", cudaGetErrorString(ce));
    ce = cudaStreamCreateWithFlags(&c->cap, cudaStreamNonBlocking);
    CTX_CALL(ce == cudaSuccess, "cudaStreamCreate", cudaGetErrorString(ce));
    cudnnStatus_t ds = cudnnCreate(&c->x.dnn);
    if (ds != CUDNN_STATUS_SUCCESS) c->x.dnn = NULL;
    CTX_CALL(ds == CUDNN_STATUS_SUCCESS, "cudnnCreate", cudnnGetErrorString(ds));
    cublasStatus_t bs = cublasLtCreate(&c->x.lt);
    if (bs != CUBLAS_STATUS_SUCCESS) c->x.lt = NULL;
    CTX_CALL(bs == CUBLAS_STATUS_SUCCESS, "cublasLtCreate", cublasLtGetStatusString(bs));
    ce = cudaHostAlloc((void **)&c->fault, sizeof *c->fault, cudaHostAllocDefault);
    if (ce != cudaSuccess) c->fault = NULL;
    CTX_CALL(ce == cudaSuccess, "cudaHostAlloc", cudaGetErrorString(ce));
    memset(c->fault, 0, sizeof *c->fault);
    ce = cudaMalloc((void **)&c->x.err, sizeof *c->x.err);
    if (ce != cudaSuccess) c->x.err = NULL;
    CTX_CALL(ce == cudaSuccess, "cudaMalloc (fault record)", cudaGetErrorString(ce));
    /* on the context's stream, not the legacy one (which another thread's capture forbids) */
    ce = cudaMemsetAsync(c->x.err, 0, sizeof *c->x.err, c->own);
    if (ce == cudaSuccess) ce = cudaStreamSynchronize(c->own);
    CTX_CALL(ce == cudaSuccess, "cudaMemset (fault record)", cudaGetErrorString(ce));
    c->nb_ptrs = e->graph.nb_tensors;
    c->seen = kiln_calloc(env, (size_t)(c->nb_ptrs ? c->nb_ptrs : 1), sizeof(void *));
    c->graph_ptrs = kiln_calloc(env, (size_t)(c->nb_ptrs ? c->nb_ptrs : 1), sizeof(void *));
    c->in_ptrs = kiln_calloc(env, (size_t)(e->max_inputs ? e->max_inputs : 1), sizeof(void *));
    c->out_ptrs = kiln_calloc(env, (size_t)(e->max_outputs ? e->max_outputs : 1), sizeof(void *));
    if (!c->seen || !c->graph_ptrs || !c->in_ptrs || !c->out_ptrs) {
        cu_ctx_destroy(e, c, a);
        return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "context create: out of host memory");
    }
    kiln_status st = ctx_alloc(env, &a, e->arena_bytes, "activations");
    if (st == KILN_OK) st = ctx_alloc(env, &c->scratch, e->scratch_bytes, "layer scratch");
    if (st != KILN_OK) {
        cu_ctx_destroy(e, c, a);
        return st;
    }
    c->x.scratch = c->scratch;
    c->x.stream = c->own;
    ds = cudnnSetStream(c->x.dnn, c->own);
    CTX_CALL(ds == CUDNN_STATUS_SUCCESS, "cudnnSetStream", cudnnGetErrorString(ds));
    *out = c;
    *arena = a;
    return KILN_OK;
}

static kiln_status cu_run(kb_ctx *c, const ke_node *node, const void *const *in, void *const *out) {
    const kcu_kernel *k = node->kernel;
    (void)cudaGetLastError(); /* a launch check must see this layer's launch only */
    c->x.node = (int)(node - c->e->nodes);
    return k->run(node->layer, node->state, in, out, &c->x);
}

/* ---- whole runs: direct, or captured into a CUDA graph and replayed ---- */

/* Every node in order on the current stream, as the runtime's own loop does. */
static kiln_status run_nodes(kb_ctx *c, void *const *ptrs) {
    const kiln_engine *e = c->e;
    for (int n = 0; n < e->nb_nodes; n++) {
        const ke_node *node = &e->nodes[n];
        if (node->skip) continue;
        const kiln_layer *l = node->layer;
        for (int k = 0; k < l->nb_inputs; k++) c->in_ptrs[k] = l->inputs[k] ? ptrs[l->inputs[k]->id] : NULL;
        for (int k = 0; k < l->nb_outputs; k++) c->out_ptrs[k] = ptrs[l->outputs[k]->id];
        kiln_status st = cu_run(c, node, c->in_ptrs, c->out_ptrs);
        if (st != KILN_OK) return st;
    }
    return KILN_OK;
}

/* Captures the run into a graph, instantiates it and launches it. A capture that fails
 * (a library call that cannot be captured) turns graphs off for this context and the run
 * happens directly: the result is the same, only slower to launch. */
static kiln_status capture_run(kb_ctx *c, void *const *ptrs) {
    const kiln_env *env = &c->e->env;
    cudaStream_t s = c->x.stream; /* where the run goes; the capture happens on c->cap */
    cudaError_t ce = cudaStreamBeginCapture(c->cap, cudaStreamCaptureModeThreadLocal);
    cudnnStatus_t ds = ce == cudaSuccess ? cudnnSetStream(c->x.dnn, c->cap) : CUDNN_STATUS_SUCCESS;
    if (ce != cudaSuccess || ds != CUDNN_STATUS_SUCCESS) {
        if (ce == cudaSuccess) {
            cudaGraph_t g = NULL;
            if (cudaStreamEndCapture(c->cap, &g) == cudaSuccess && g) cudaGraphDestroy(g);
        }
        (void)cudaGetLastError();
        c->no_graphs = true;
        kiln_log(env, KILN_LOG_WARNING, "CUDA graphs off for this context: %s",
                 ce != cudaSuccess ? cudaGetErrorString(ce) : cudnnGetErrorString(ds));
        return run_nodes(c, ptrs);
    }
    c->x.stream = c->cap;
    kiln_status st = run_nodes(c, ptrs);
    c->x.stream = s;
    cudaGraph_t g = NULL;
    ce = cudaStreamEndCapture(c->cap, &g);
    ds = cudnnSetStream(c->x.dnn, s);
    if (ds != CUDNN_STATUS_SUCCESS)
        return kiln_error(env, KILN_ERR_DEVICE, "cudnnSetStream failed after a capture: %s", cudnnGetErrorString(ds));
    cudaGraphExec_t exec = NULL;
    if (st == KILN_OK && ce == cudaSuccess && g) ce = cudaGraphInstantiate(&exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (st != KILN_OK || ce != cudaSuccess || !exec) {
        (void)cudaGetLastError();
        c->no_graphs = true;
        kiln_log(env, KILN_LOG_WARNING, "CUDA graphs off for this context: the run could not be captured (%s)",
                 st != KILN_OK ? kiln_last_error() : cudaGetErrorString(ce));
        return run_nodes(c, ptrs); /* a real failure fails again here, with its own message */
    }
    if (c->exec) cudaGraphExecDestroy(c->exec);
    c->exec = exec;
    memcpy(c->graph_ptrs, ptrs, (size_t)c->nb_ptrs * sizeof *ptrs);
    ce = cudaGraphLaunch(c->exec, s);
    if (ce != cudaSuccess) return kcu_cuda_fail(NULL, env, ce, "cudaGraphLaunch", __FILE__, __LINE__);
    return KILN_OK;
}

static kiln_status cu_run_begin(kb_ctx *c, void *const *ptrs, int nb_ptrs, bool graphable, bool *done) {
    *done = false;
    if (!graphable || c->no_graphs || nb_ptrs != c->nb_ptrs) return KILN_OK;
    size_t bytes = (size_t)nb_ptrs * sizeof *ptrs;
    if (c->exec && memcmp(ptrs, c->graph_ptrs, bytes) == 0) {
        cudaError_t ce = cudaGraphLaunch(c->exec, c->x.stream);
        if (ce != cudaSuccess) return kcu_cuda_fail(NULL, &c->e->env, ce, "cudaGraphLaunch", __FILE__, __LINE__);
        *done = true;
        return KILN_OK;
    }
    if (c->seen_valid && memcmp(ptrs, c->seen, bytes) == 0) {
        *done = true;
        return capture_run(c, ptrs);
    }
    memcpy(c->seen, ptrs, bytes); /* new addresses: this run is direct */
    c->seen_valid = true;
    return KILN_OK;
}

static kiln_status cu_run_end(kb_ctx *c) {
    (void)c;
    return KILN_OK;
}

/* The first fault a kernel recorded, as the CPU backend words it. */
static kiln_status report_fault(kb_ctx *c) {
    kcu_err f = *c->fault;
    memset(c->fault, 0, sizeof *c->fault);
    /* rare path: clear the device record synchronously, whatever stream runs next */
    if (cudaMemsetAsync(c->x.err, 0, sizeof *c->x.err, c->x.stream) != cudaSuccess ||
        cudaStreamSynchronize(c->x.stream) != cudaSuccess)
        (void)cudaGetLastError();
    const kiln_engine *e = c->e;
    if (f.node < 0 || f.node >= e->nb_nodes)
        return kiln_error(&e->env, KILN_ERR_RUNTIME, "a kernel reported fault %d at unknown node %d", f.code, f.node);
    const kiln_layer *l = e->nodes[f.node].layer;
    switch (f.code) {
    case KCU_FAULT_GATHER_INDEX: {
        const kiln_dims *dd = &l->inputs[0]->dims;
        int axis = kg_axis(l->p.axis.axis, dd->nb_dims);
        return kg_layer_error(l, KILN_ERR_RUNTIME,
                              "index %lld (position %lld of '%s') is out of range for axis %d of size %lld", f.a, f.b,
                              l->inputs[1]->name, axis, (long long)(axis >= 0 ? dd->d[axis] : -1));
    }
    case KCU_FAULT_INT_DIV:
        return kg_layer_error(l, KILN_ERR_RUNTIME, "integer division by zero (%s)",
                              l->p.elt == KILN_ELT_POW ? "zero to a negative power" : "zero divisor");
    default: return kg_layer_error(l, KILN_ERR_RUNTIME, "a kernel reported fault %d", f.code);
    }
}

/* Faults of work enqueued without a finish (kiln_context_enqueue) surface at the next finish. */
static kiln_status cu_finish(kb_ctx *c) {
    cudaError_t e = cudaMemcpyAsync(c->fault, c->x.err, sizeof *c->fault, cudaMemcpyDeviceToHost, c->x.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->x.stream);
    if (e != cudaSuccess) return kcu_cuda_fail(NULL, &c->e->env, e, "cudaStreamSynchronize", __FILE__, __LINE__);
    if (c->fault->code) return report_fault(c);
    return KILN_OK;
}

static kiln_status cu_set_stream(kb_ctx *c, void *stream) {
    cudaError_t e = cudaSetDevice(c->device);
    if (e != cudaSuccess) return kcu_cuda_fail(NULL, &c->e->env, e, "cudaSetDevice", __FILE__, __LINE__);
    cudaStream_t s = stream ? (cudaStream_t)stream : c->own;
    if (s != c->x.stream) {
        cudnnStatus_t ds = cudnnSetStream(c->x.dnn, s);
        if (ds != CUDNN_STATUS_SUCCESS)
            return kiln_error(&c->e->env, KILN_ERR_DEVICE, "enqueue: cudnnSetStream failed: %s", cudnnGetErrorString(ds));
        c->x.stream = s;
    }
    return KILN_OK;
}

static kiln_status cu_dev_alloc(kb_ctx *c, size_t bytes, void **ptr) {
    *ptr = NULL;
    if (!bytes) return KILN_OK;
    cudaError_t e = cudaMalloc(ptr, bytes);
    if (e == cudaSuccess) return KILN_OK;
    *ptr = NULL;
    (void)cudaGetLastError();
    return kiln_error(&c->e->env, e == cudaErrorMemoryAllocation ? KILN_ERR_OUT_OF_MEMORY : KILN_ERR_DEVICE,
                      "cannot allocate %zu bytes of device memory for host I/O staging: %s", bytes,
                      cudaGetErrorString(e));
}

static void cu_dev_free(kb_ctx *c, void *ptr) {
    (void)c;
    if (ptr) cudaFree(ptr);
}

static kiln_status cu_host_alloc(size_t bytes, void **ptr) {
    cudaError_t e = cudaHostAlloc(ptr, bytes, cudaHostAllocPortable);
    if (e == cudaSuccess) return KILN_OK;
    *ptr = NULL;
    (void)cudaGetLastError();
    return kiln_error(NULL, e == cudaErrorMemoryAllocation ? KILN_ERR_OUT_OF_MEMORY : KILN_ERR_DEVICE,
                      "cannot allocate %zu bytes of pinned host memory: %s", bytes, cudaGetErrorString(e));
}

static void cu_host_free(void *ptr) {
    if (cudaFreeHost(ptr) != cudaSuccess) (void)cudaGetLastError();
}

static kiln_status cu_upload(kb_ctx *c, void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->x.stream);
    if (e != cudaSuccess) return kcu_cuda_fail(NULL, &c->e->env, e, "cudaMemcpyAsync (input)", __FILE__, __LINE__);
    return KILN_OK;
}

static kiln_status cu_download(kb_ctx *c, void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->x.stream);
    if (e != cudaSuccess) return kcu_cuda_fail(NULL, &c->e->env, e, "cudaMemcpyAsync (output)", __FILE__, __LINE__);
    return KILN_OK;
}

static kiln_status cu_absmax(kb_ctx *c, const void *src, size_t n, float *out) {
    const kiln_env *env = &c->e->env;
    cudaError_t e = c->amax ? cudaSuccess : cudaMalloc((void **)&c->amax, sizeof *c->amax);
    if (e != cudaSuccess) {
        c->amax = NULL;
        return kcu_cuda_fail(NULL, env, e, "cudaMalloc (range check)", __FILE__, __LINE__);
    }
    unsigned bits = 0;
    e = kcu_absmax(c->x.stream, src, (int64_t)n, c->amax);
    if (e == cudaSuccess) e = cudaMemcpyAsync(&bits, c->amax, sizeof bits, cudaMemcpyDeviceToHost, c->x.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->x.stream);
    if (e != cudaSuccess) return kcu_cuda_fail(NULL, env, e, "range check reduction", __FILE__, __LINE__);
    memcpy(out, &bits, sizeof *out);
    return KILN_OK;
}

/* Kernel choices depend on the GPU and on the cuDNN and cuBLASLt builds. */
static void cu_fingerprint(const kiln_env *env, char *buf, size_t size) {
    (void)env;
    int dev = 0, major = 0, minor = 0, sms = 0, driver = 0, runtime = 0;
    char name[256] = "?";
    if (cudaGetDevice(&dev) == cudaSuccess) {
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
            snprintf(name, sizeof name, "%s", prop.name);
            major = prop.major;
            minor = prop.minor;
            sms = prop.multiProcessorCount;
        }
    }
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    (void)cudaGetLastError();
    snprintf(buf, size, "backend=cuda;gpu=%s;cc=%d.%d;sms=%d;driver=%d;cudart=%d;cudnn=%zu;cublaslt=%zu;", name, major,
             minor, sms, driver, runtime, cudnnGetVersion(), cublasLtGetVersion());
}

/* Kernel names say float16 storage (_f16) and channels-last (_nhwc). */
static const char *cu_kernel_name(const ke_node *node) {
    const char *n = kcu_dnn_kernel_name(node);
    if (n) return n;
    const kiln_layer *l = node->layer;
    const kiln_tensor *y = l->nb_outputs ? l->outputs[0] : NULL;
    int v = y && kg_storage(y) == KILN_FLOAT16 ? (kcu_nhwc(y) ? 2 : 1) : 0;
    static const char *const memcpy_n[3] = {"cuda.memcpy", "cuda.memcpy_f16", "cuda.memcpy_f16_nhwc"};
    static const char *const strided_n[3] = {"cuda.strided_copy", "cuda.strided_copy_f16", "cuda.strided_copy_f16_nhwc"};
    static const char *const direct_n[3] = {"cuda.direct", "cuda.direct_f16", "cuda.direct_f16_nhwc"};
    switch (l->type) {
    case KILN_LAYER_REFORMAT: return "cuda.reformat";
    case KILN_LAYER_FUSED: return "cuda.fused_region";
    case KILN_LAYER_CONCAT:
    case KILN_LAYER_SPLIT:
    case KILN_LAYER_SHUFFLE:
    case KILN_LAYER_IDENTITY:
    case KILN_LAYER_CONSTANT: return memcpy_n[v];
    case KILN_LAYER_SLICE:
    case KILN_LAYER_TRANSPOSE:
    case KILN_LAYER_EXPAND:
    case KILN_LAYER_TILE:
    case KILN_LAYER_DEPTH_TO_SPACE:
    case KILN_LAYER_SPACE_TO_DEPTH: return strided_n[v];
    case KILN_LAYER_REDUCE:
    case KILN_LAYER_ARG_REDUCE:
    case KILN_LAYER_SOFTMAX:
    case KILN_LAYER_INSTANCE_NORM: return "cuda.reduce";
    default: return direct_n[v];
    }
}

/* Channel slices of a concat (kiln_tensor.pitch): float16 channels-last outputs of
 * convolutions and deconvolutions (kiln's implicit GEMM, its stem kernel, the cuBLASLt GEMM
 * and a cuDNN graph whose engine takes a pitched output write them directly; after cuDNN's
 * other paths the bias/activation pass writes the slice from a dense copy), inputs and
 * outputs of windowed pooling and of resize. */
static bool cu_pitch_ok(const kiln_layer *l, const kiln_tensor *t) {
    if (!kcu_nhwc(t) || kg_storage(t) != KILN_FLOAT16 || l->nb_inputs < 1 || !l->inputs[0]) return false;
    bool out = l->nb_outputs == 1 && l->outputs[0] == t, in = l->inputs[0] == t;
    switch (l->type) {
    case KILN_LAYER_CONVOLUTION:
    case KILN_LAYER_DECONVOLUTION: return out && !in;
    case KILN_LAYER_POOLING:
        return (out != in) && !l->p.pool.global && kcu_nhwc(l->inputs[0]) && kcu_nhwc(l->outputs[0]);
    case KILN_LAYER_RESIZE: return (out != in) && kcu_nhwc(l->inputs[0]) && kcu_nhwc(l->outputs[0]);
    default: return false;
    }
}

static const kb_backend kb_cuda_backend = {
    "cuda", KILN_DEVICE_CUDA, cu_can_fuse_act, cu_prepare, cu_release, cu_const_data,
    cu_ctx_create, cu_ctx_destroy, cu_run, cu_finish, cu_set_stream,
    cu_dev_alloc, cu_dev_free, cu_upload, cu_download, cu_fingerprint, cu_kernel_name,
    cu_can_fuse_residual, cu_layer_format, cu_refit, cu_run_begin, cu_run_end, kcu_dnn_tactic,
    cu_host_alloc, cu_host_free, cu_absmax, cu_pitch_ok, 2, cu_tactic_context,
};

const kb_backend *kb_cuda_backend_get(const kiln_env *env, kiln_status *why) {
    int n = 0, dev = 0, major = 0, minor = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess && n <= 0) e = cudaErrorNoDevice;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *why = kiln_error(env, KILN_ERR_DEVICE, "CUDA requested but no GPU is usable: cudaGetDeviceCount: %s",
                   cudaGetErrorString(e));
        return NULL;
    }
    e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *why = kiln_error(env, KILN_ERR_DEVICE, "CUDA requested but GPU %d does not answer: %s", dev, cudaGetErrorString(e));
        return NULL;
    }
    /* the kernels are compiled for sm_90 (plus its PTX, which newer GPUs can compile) */
    if (major < 9) {
        *why = kiln_error(env, KILN_ERR_UNSUPPORTED,
                   "CUDA requested but GPU %d has compute capability %d.%d; this kiln's CUDA kernels need 9.0 or newer",
                   dev, major, minor);
        return NULL;
    }
    return &kb_cuda_backend;
}
