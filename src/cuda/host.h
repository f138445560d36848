/* kiln CUDA backend, host side: the per-layer kernel interface (prepare at build, run on
 * the context's stream), the build and run state a kernel sees, and the status helpers
 * that turn CUDA, cuDNN and cuBLASLt failures into kiln_status with file and line. */
#ifndef KILN_CUDA_HOST_H
#define KILN_CUDA_HOST_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "cuda/kcu.h"
#include "runtime/engine.h"

/* What a kernel's prepare may use. */
/* Programmatic dependent launch (src/cuda/kcu_pdl.cuh, defined in igemm.cu): whether kiln's
 * own kernels launch that way on the current device (KILN_PDL), and a plain launch of an
 * empty kernel, which candidates follow where the engine's kernel before them is plain. */
int kcu_pdl_enabled(void);
cudaError_t kcu_gap(cudaStream_t s);

typedef struct kcu_build {
    const kiln_engine *e;
    const kiln_env *env;
    bool tf32;           /* TF32 tensor-core math allowed for float32 convolutions and GEMMs */
    size_t ws_limit;     /* most workspace a cuDNN/cuBLASLt algorithm may ask for */
    /* A kernel choice made before (the kernel's own tactic bytes, see kcu_kernel.tactic):
     * prepare takes it without timing when it still applies and sets *hint_used. */
    const uint8_t *hint;
    size_t hint_len;
    bool *hint_used;
    bool untimed; /* take the libraries' heuristic choices, time nothing (a range probe) */
    /* A TF32 build (KILN_FLAG_TF32): float32 may also use algorithms whose error grows with
     * the largest value (FFT, Winograd non-fused) and cuDNN's down-conversion math. Layers an
     * FP16 build keeps in float32 for their range get TF32 math (tf32) but not these. */
    bool loose;
    /* The kernel launched before this layer's is one of kiln's programmatic dependent
     * launches (src/cuda/kcu_pdl.cuh), which let the next such kernel start under its tail:
     * candidates are timed back to back then; otherwise each run follows a plain launch
     * (kcu_gap), as it will in the engine. */
    bool after_pdl;
} kcu_build;

/* What a kernel's run sees: the context's stream, library handles and scratch. */
typedef struct kcu_exec {
    cudaStream_t stream;
    cudnnHandle_t dnn;
    cublasLtHandle_t lt;
    void *scratch; /* the engine's scratch_bytes, 256-byte aligned */
    kcu_err *err;  /* device view of the context's fault record */
    int node;      /* index of the node being run (for faults) */
} kcu_exec;

typedef struct kcu_kernel {
    /* Build time: checks the layer is supported, uploads what it needs (weights, tables)
     * into *state and sets *scratch. Unsupported: KILN_ERR_UNSUPPORTED via kg_layer_error.
     * NULL: nothing to prepare. */
    kiln_status (*prepare)(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch);
    /* Run time: in/out are device pointers. Enqueues only; allocates nothing. */
    kiln_status (*run)(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                       const kcu_exec *x);
    /* Frees *state. NULL: kcu_state_free. */
    void (*release)(const kiln_env *env, void *state);
    /* Refit: l->w[slot] has new values (same count); copies them, converted as prepare
     * did, into the device buffers the state already has. NULL: no refittable weights. */
    kiln_status (*refit)(const kiln_layer *l, void *state, int slot);
    /* Whether the layer's last launch, as prepared, is one of kiln's programmatic dependent
     * kernels (they let the next one start early: kcu_build.after_pdl). NULL: never. */
    bool (*pdl_tail)(const void *state);
} kcu_kernel;

/* Every state struct starts with this: one device allocation it owns (or NULL). */
typedef struct kcu_state {
    void *dev;
} kcu_state;

/* Frees a kcu_state-headed state: its device block, then the host struct. */
void kcu_state_free(const kiln_env *env, void *state);
/* Allocates the state's device block of `bytes` (cudaMalloc) and copies the `n` parts
 * (host pointer, byte count) into it one after another, each 256-byte aligned; dst[i]
 * receives each part's device address. */
kiln_status kcu_state_upload(const kiln_layer *l, kcu_state *s, int n, const void *const *src, const size_t *bytes,
                             void **dst);

/* ---- physical representation (the format pass's choices, src/opt/formats.c) ---- */

/* Channels-last applies to 4-D tensors only; other ranks tagged NHWC are row-major. */
static inline bool kcu_nhwc(const kiln_tensor *t) { return t->format == KG_FORMAT_NHWC && t->dims.nb_dims == 4; }
/* The tensor is stored as its logical dtype, row-major. */
/* Bytes a tensor spans in memory: a pitched one (a channel slice of a concat) from its
 * first pixel's channels to its last's. */
static inline size_t kcu_span(const kiln_tensor *t) {
    if (!t->pitch || !kcu_nhwc(t)) return kg_tensor_bytes(t);
    int64_t pixels = t->dims.d[0] * t->dims.d[2] * t->dims.d[3];
    return pixels <= 0 ? 0 : (size_t)((pixels - 1) * t->pitch + t->dims.d[1]) * kiln_dtype_size(kg_storage(t));
}
static inline bool kcu_logical(const kiln_tensor *t) { return kg_storage(t) == t->dtype && !kcu_nhwc(t); }
/* Bytes of one stored element. */
static inline size_t kcu_es(const kiln_tensor *t) { return kiln_dtype_size(kg_storage(t)); }
/* Element strides of t's logical axes in memory (channels-last or row-major). */
static inline void kcu_mem_strides(const kiln_tensor *t, int64_t *s) {
    const int64_t *d = t->dims.d;
    if (kcu_nhwc(t)) {
        s[0] = d[1] * d[2] * d[3];
        s[1] = 1;
        s[2] = d[3] * d[1];
        s[3] = d[1];
        return;
    }
    int64_t v = 1;
    for (int i = t->dims.nb_dims - 1; i >= 0; i--) {
        s[i] = v;
        v *= d[i];
    }
}
/* Fails a layer whose tensors are not all as `storage`/`nhwc` say (a float tensor) or
 * logical (any other); what: the kernel, for the message. */
kiln_status kcu_check_formats(const kiln_layer *l, int storage, bool nhwc, const char *what);
/* Float32 values as float16 bits (round to nearest even), into dst. */
void kcu_to_half(uint16_t *dst, const float *src, int64_t n);

/* Status helpers. They also clear the CUDA runtime's sticky last-error slot for
 * non-sticky errors, so a later launch check does not see a stale failure. */
kiln_status kcu_cuda_fail(const kiln_layer *l, const kiln_env *env, cudaError_t e, const char *call, const char *file,
                          int line);
kiln_status kcu_dnn_fail(const kiln_layer *l, cudnnStatus_t s, const char *call, const char *file, int line);
kiln_status kcu_blas_fail(const kiln_layer *l, cublasStatus_t s, const char *call, const char *file, int line);

#define KCU_CUDA(l, call)                                                                                  \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) return kcu_cuda_fail((l), NULL, e_, #call, __FILE__, __LINE__);             \
    } while (0)
#define KCU_DNN(l, call)                                                                                   \
    do {                                                                                                   \
        cudnnStatus_t s_ = (call);                                                                         \
        if (s_ != CUDNN_STATUS_SUCCESS) return kcu_dnn_fail((l), s_, #call, __FILE__, __LINE__);           \
    } while (0)
#define KCU_BLAS(l, call)                                                                                  \
    do {                                                                                                   \
        cublasStatus_t s_ = (call);                                                                        \
        if (s_ != CUBLAS_STATUS_SUCCESS) return kcu_blas_fail((l), s_, #call, __FILE__, __LINE__);         \
    } while (0)

/* Builds a pad/crop plan (as src/cpu/movement.c's pad tables): pads holds rank begins then
 * rank ends (negative crops). *maps receives a kiln_alloc'ed host table (p->total of
 * entries counted in *map_count) the caller uploads and points p->maps at. */
kiln_status kcu_pad_plan(const kiln_layer *l, const kiln_env *env, int rank, const int64_t *in_dims,
                         const int64_t *pads, kiln_pad_mode mode, kcu_pad *p, int64_t **maps, size_t *map_count);

/* Kernels, by family: dnn.c (cuDNN, cuBLASLt), ops.c (own kernels), backend.c (basic). */
#define KCU_KERNEL(name) extern const kcu_kernel kcu_k_##name
KCU_KERNEL(convolution);
KCU_KERNEL(fused);
KCU_KERNEL(deconvolution);
KCU_KERNEL(matmul);
KCU_KERNEL(gemm);
KCU_KERNEL(pooling);
KCU_KERNEL(activation);
KCU_KERNEL(prelu);
KCU_KERNEL(scale);
KCU_KERNEL(elementwise);
KCU_KERNEL(unary);
KCU_KERNEL(select);
KCU_KERNEL(instance_norm);
KCU_KERNEL(lrn);
KCU_KERNEL(softmax);
KCU_KERNEL(reduce);
KCU_KERNEL(arg_reduce);
KCU_KERNEL(concat);
KCU_KERNEL(split);
KCU_KERNEL(slice);
KCU_KERNEL(transpose);
KCU_KERNEL(pad);
KCU_KERNEL(gather);
KCU_KERNEL(expand);
KCU_KERNEL(tile);
KCU_KERNEL(depth_to_space);
KCU_KERNEL(space_to_depth);
KCU_KERNEL(resize);
KCU_KERNEL(cast);
KCU_KERNEL(reformat);

/* The kernel chosen for a cuDNN/cuBLASLt layer ("cuda.cudnn_fwd_winograd", with "f16_nhwc"
 * in it on the float16 path); NULL for others. */
const char *kcu_dnn_kernel_name(const ke_node *node);
/* The kernel choice of a cuDNN/cuBLASLt layer as tactic bytes (kb_backend.tactic). */
size_t kcu_dnn_tactic(const ke_node *node, uint8_t *buf, size_t cap);

/* The activation a layer applies to its output (has_post_act), or NULL. */
static inline const kcu_act *kcu_post_act(const kiln_layer *l, kcu_act *buf) {
    if (!l->has_post_act) return NULL;
    buf->type = (int)l->post_act.type;
    buf->alpha = l->post_act.alpha;
    buf->beta = l->post_act.beta;
    return buf;
}

#endif
