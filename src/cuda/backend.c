/* kiln CUDA backend: the runtime's backend table over the CUDA kernels. A context owns a
 * stream, cuDNN and cuBLASLt handles, its activation arena and scratch in device memory,
 * and a fault record that kernels fill when the data is bad (an index out of range). */
#include <stdio.h>
#include <string.h>

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

static size_t tensor_bytes(const kiln_tensor *t) {
    return (size_t)kiln_dims_volume(&t->dims) * kiln_dtype_size(t->dtype);
}

/* A constant's values go to the device at build: they feed other layers by pointer. */
static kiln_status constant_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    kcu_state *s = kiln_calloc(b->env, 1, sizeof *s);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    *state = s;
    const void *src = l->w[0].values;
    size_t bytes = (size_t)l->w[0].count * kiln_dtype_size(l->w[0].dtype);
    return kcu_state_upload(l, s, 1, &src, &bytes, NULL);
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
    kiln_dtype from = l->inputs[0]->dtype, to = l->outputs[0]->dtype;
    int64_t n = kiln_dims_volume(&l->outputs[0]->dims);
    if (from == to) return copy_run(l, state, in, out, x);
    KCU_CUDA(l, kcu_cast(x->stream, (int)from, (int)to, n, in[0], out[0]));
    return KILN_OK;
}

static const kcu_kernel k_constant = {constant_prepare, constant_run, NULL};
static const kcu_kernel k_copy = {NULL, copy_run, NULL};
const kcu_kernel kcu_k_cast = {NULL, cast_run, NULL};

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
};

/* ---- build time ---- */

/* Convolutions, GEMMs and element-wise ops (a residual add then ReLU) apply any activation
 * in their output pass. An activation only follows float32 results, which those all give. */
static bool cu_can_fuse_act(kiln_layer_type producer, kiln_activation_type act) {
    return (producer == KILN_LAYER_CONVOLUTION || producer == KILN_LAYER_GEMM || producer == KILN_LAYER_ELEMENTWISE) &&
           (unsigned)act < KILN_ACT_COUNT;
}

static bool engine_tf32(const kiln_engine *e) { return (e->flags >> KILN_FLAG_TF32) & 1u; }

static kiln_status cu_prepare(const kiln_engine *e, ke_node *node) {
    const kiln_layer *l = node->layer;
    const kcu_kernel *k = (unsigned)l->type < KILN_LAYER_TYPE_COUNT ? kernels[l->type] : NULL;
    if (!k || !k->run)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA backend has no kernel for this layer type");
    node->kernel = k;
    /* skipped nodes are views or constants: only a constant has something to place */
    if ((node->skip && l->type != KILN_LAYER_CONSTANT) || !k->prepare) return KILN_OK;
    kcu_build b = {e, &e->env, engine_tf32(e), (size_t)1 << 30};
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

static const void *cu_const_data(const ke_node *node) {
    const kcu_state *s = node->state;
    return s ? s->dev : NULL;
}

/* ---- contexts ---- */

/* Faults: kernels record into x.err in device memory; a finish copies it into pinned
 * `fault` on the stream before synchronizing (a few bytes, no extra sync). */
struct kb_ctx {
    const kiln_engine *e;
    int device;
    cudaStream_t own;
    kcu_exec x;     /* x.stream: the stream of the current run */
    kcu_err *fault; /* pinned host copy of x.err */
    void *scratch;
};

static void cu_ctx_destroy(const kiln_engine *e, kb_ctx *c, void *arena) {
    if (arena) cudaFree(arena);
    if (c) {
        if (c->scratch) cudaFree(c->scratch);
        if (c->x.dnn) cudnnDestroy(c->x.dnn);
        if (c->x.lt) cublasLtDestroy(c->x.lt);
        if (c->own) cudaStreamDestroy(c->own);
        if (c->fault) cudaFreeHost(c->fault);
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
    ce = cudaStreamCreateWithFlags(&c->own, cudaStreamNonBlocking);
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
    ce = cudaMemset(c->x.err, 0, sizeof *c->x.err);
    CTX_CALL(ce == cudaSuccess, "cudaMemset (fault record)", cudaGetErrorString(ce));
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

/* The first fault a kernel recorded, as the CPU backend words it. */
static kiln_status report_fault(kb_ctx *c) {
    kcu_err f = *c->fault;
    memset(c->fault, 0, sizeof *c->fault);
    /* rare path: clear the device record synchronously, whatever stream runs next */
    if (cudaMemset(c->x.err, 0, sizeof *c->x.err) != cudaSuccess) (void)cudaGetLastError();
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

static const char *cu_kernel_name(const ke_node *node) {
    const char *n = kcu_dnn_kernel_name(node);
    if (n) return n;
    switch (node->layer->type) {
    case KILN_LAYER_CONCAT:
    case KILN_LAYER_SPLIT:
    case KILN_LAYER_SHUFFLE:
    case KILN_LAYER_IDENTITY:
    case KILN_LAYER_CONSTANT: return "cuda.memcpy";
    case KILN_LAYER_SLICE:
    case KILN_LAYER_TRANSPOSE:
    case KILN_LAYER_EXPAND:
    case KILN_LAYER_TILE:
    case KILN_LAYER_DEPTH_TO_SPACE:
    case KILN_LAYER_SPACE_TO_DEPTH: return "cuda.strided_copy";
    case KILN_LAYER_REDUCE:
    case KILN_LAYER_ARG_REDUCE:
    case KILN_LAYER_SOFTMAX:
    case KILN_LAYER_INSTANCE_NORM: return "cuda.reduce";
    default: return "cuda.direct";
    }
}

static const kb_backend kb_cuda_backend = {
    "cuda", KILN_DEVICE_CUDA, cu_can_fuse_act, cu_prepare, cu_release, cu_const_data,
    cu_ctx_create, cu_ctx_destroy, cu_run, cu_finish, cu_set_stream,
    cu_dev_alloc, cu_dev_free, cu_upload, cu_download, cu_fingerprint, cu_kernel_name,
};

const kb_backend *kb_cuda_backend_get(const kiln_env *env) {
    int n = 0, dev = 0, major = 0, minor = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess && n <= 0) e = cudaErrorNoDevice;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        kiln_error(env, KILN_ERR_DEVICE, "CUDA requested but no GPU is usable: cudaGetDeviceCount: %s",
                   cudaGetErrorString(e));
        return NULL;
    }
    e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        kiln_error(env, KILN_ERR_DEVICE, "CUDA requested but GPU %d does not answer: %s", dev, cudaGetErrorString(e));
        return NULL;
    }
    /* the kernels are compiled for sm_90 (plus its PTX, which newer GPUs can compile) */
    if (major < 9) {
        kiln_error(env, KILN_ERR_UNSUPPORTED,
                   "CUDA requested but GPU %d has compute capability %d.%d; this kiln's CUDA kernels need 9.0 or newer",
                   dev, major, minor);
        return NULL;
    }
    return &kb_cuda_backend;
}
