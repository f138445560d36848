/* kiln internal: the CPU backend: its kernel table, indexed by layer type, and the
 * runtime's backend interface over it (host memory, a worker pool per context). */
#include "cpu/exec.h"
#include "runtime/backend.h"

static const kcpu_kernel *const kernels[KILN_LAYER_TYPE_COUNT] = {
    [KILN_LAYER_CONVOLUTION] = &kcpu_convolution,
    [KILN_LAYER_DECONVOLUTION] = &kcpu_deconvolution,
    [KILN_LAYER_POOLING] = &kcpu_pooling,
    [KILN_LAYER_ACTIVATION] = &kcpu_activation,
    [KILN_LAYER_PRELU] = &kcpu_prelu,
    [KILN_LAYER_SCALE] = &kcpu_scale,
    [KILN_LAYER_ELEMENTWISE] = &kcpu_elementwise,
    [KILN_LAYER_UNARY] = &kcpu_unary,
    [KILN_LAYER_MATMUL] = &kcpu_matmul,
    [KILN_LAYER_GEMM] = &kcpu_gemm,
    [KILN_LAYER_CONCAT] = &kcpu_concat,
    [KILN_LAYER_SPLIT] = &kcpu_split,
    [KILN_LAYER_SLICE] = &kcpu_slice,
    [KILN_LAYER_SHUFFLE] = &kcpu_shuffle,
    [KILN_LAYER_TRANSPOSE] = &kcpu_transpose,
    [KILN_LAYER_PAD] = &kcpu_pad,
    [KILN_LAYER_GATHER] = &kcpu_gather,
    [KILN_LAYER_CAST] = &kcpu_cast,
    [KILN_LAYER_CONSTANT] = &kcpu_constant,
    [KILN_LAYER_IDENTITY] = &kcpu_identity,
    [KILN_LAYER_RESIZE] = &kcpu_resize,
    [KILN_LAYER_SOFTMAX] = &kcpu_softmax,
    [KILN_LAYER_REDUCE] = &kcpu_reduce,
    [KILN_LAYER_ARG_REDUCE] = &kcpu_arg_reduce,
    [KILN_LAYER_SELECT] = &kcpu_select,
    [KILN_LAYER_EXPAND] = &kcpu_expand,
    [KILN_LAYER_TILE] = &kcpu_tile,
    [KILN_LAYER_DEPTH_TO_SPACE] = &kcpu_depth_to_space,
    [KILN_LAYER_SPACE_TO_DEPTH] = &kcpu_space_to_depth,
    [KILN_LAYER_INSTANCE_NORM] = &kcpu_instance_norm,
    [KILN_LAYER_LRN] = &kcpu_lrn,
    [KILN_LAYER_REFORMAT] = &kcpu_reformat,
    [KILN_LAYER_FUSED] = &kcpu_fused,
};

const kcpu_kernel *kcpu_kernel_for(kiln_layer_type type) {
    return (unsigned)type < KILN_LAYER_TYPE_COUNT ? kernels[type] : NULL;
}

bool kcpu_can_fuse_act(kiln_layer_type producer, kiln_activation_type act) {
    (void)act; /* kcpu_epilogue applies every activation */
    return producer == KILN_LAYER_CONVOLUTION || producer == KILN_LAYER_GEMM || producer == KILN_LAYER_ELEMENTWISE;
}

static bool cpu_can_fuse_residual(const kiln_layer *conv) {
    (void)conv;
    return true;
}

static kiln_status cpu_prepare(const kiln_engine *e, ke_node *node) {
    const kiln_layer *l = node->layer;
    const kcpu_kernel *k = kcpu_kernel_for(l->type);
    if (!k || !k->run) return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CPU backend has no kernel for this layer type");
    node->kernel = k;
    /* CPU kernels read tensors as their logical dtype, row-major: only a reformat may see
     * another storage or layout (a plan made for a device, loaded here) */
    for (int i = 0; l->type != KILN_LAYER_REFORMAT && i < l->nb_inputs + l->nb_outputs; i++) {
        const kiln_tensor *t = i < l->nb_inputs ? l->inputs[i] : l->outputs[i - l->nb_inputs];
        if (t && (kg_storage(t) != t->dtype || t->format != KG_FORMAT_LINEAR))
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "tensor '%s' is stored as %s%s, which CPU kernels do not read",
                                  t->name, kiln_dtype_name(kg_storage(t)), t->format == KG_FORMAT_NHWC ? " NHWC" : "");
    }
    if (node->skip || !k->prepare) return KILN_OK;
    return k->prepare(l, &e->env, &node->state, &node->scratch_bytes);
}

static void cpu_release(const kiln_env *env, ke_node *node) {
    const kcpu_kernel *k = node->kernel;
    if (!node->state) return;
    if (k && k->release) k->release(env, node->state);
    else kiln_free(env, node->state);
    node->state = NULL;
}

static const void *cpu_const_data(const ke_node *node) { return node->layer->w[0].values; }

struct kb_ctx {
    kcpu_exec exec;
};

static void cpu_ctx_destroy(const kiln_engine *e, kb_ctx *c, void *arena) {
    const kiln_env *env = &e->env;
    kiln_free(env, arena);
    if (!c) return;
    kcpu_pool_destroy(env, c->exec.pool);
    kiln_free(env, c->exec.scratch);
    kiln_free(env, c);
}

static kiln_status cpu_ctx_create(const kiln_engine *e, kb_ctx **out, void **arena) {
    const kiln_env *env = &e->env;
    *out = NULL;
    *arena = NULL;
    kb_ctx *c = kiln_calloc(env, 1, sizeof *c);
    void *a = e->arena_bytes ? kiln_alloc(env, e->arena_bytes) : NULL;
    if (c) c->exec.scratch = e->scratch_bytes ? kiln_alloc(env, e->scratch_bytes) : NULL;
    if (!c || (e->arena_bytes && !a) || (e->scratch_bytes && !c->exec.scratch)) {
        cpu_ctx_destroy(e, c, a);
        return kiln_error(env, KILN_ERR_OUT_OF_MEMORY,
                          "context create: out of host memory (%zu bytes of activations, %zu of scratch)", e->arena_bytes,
                          e->scratch_bytes);
    }
    int threads = e->threads > 0 ? e->threads : kcpu_online_cores();
    if (threads > 1) {
        c->exec.pool = kcpu_pool_create(env, threads);
        if (!c->exec.pool) {
            cpu_ctx_destroy(e, c, a);
            return KILN_ERR_OUT_OF_MEMORY; /* message set by the pool */
        }
    }
    c->exec.threads = threads;
    *out = c;
    *arena = a;
    return KILN_OK;
}

static kiln_status cpu_run(kb_ctx *c, const ke_node *node, const void *const *in, void *const *out) {
    const kcpu_kernel *k = node->kernel;
    return k->run(node->layer, node->state, in, out, &c->exec);
}

static kiln_status cpu_finish(kb_ctx *c) {
    (void)c;
    return KILN_OK;
}

static const char *cpu_kernel_name(const ke_node *node) {
    switch (node->layer->type) {
    case KILN_LAYER_CONVOLUTION: return kcpu_conv_kernel_name(node->state);
    case KILN_LAYER_DECONVOLUTION: return "cpu.deconv_sgemm_col2im";
    case KILN_LAYER_GEMM:
    case KILN_LAYER_MATMUL: return "cpu.sgemm";
    default: return "cpu.direct";
    }
}

static kiln_status cpu_set_stream(kb_ctx *c, void *stream) {
    (void)c;
    (void)stream;
    return KILN_OK;
}

const kb_backend kb_cpu_backend = {
    "cpu", KILN_DEVICE_CPU, kcpu_can_fuse_act, cpu_prepare, cpu_release, cpu_const_data,
    cpu_ctx_create, cpu_ctx_destroy, cpu_run, cpu_finish, cpu_set_stream,
    NULL, NULL, NULL, NULL, /* host memory: no staging */
    NULL,                   /* kernels depend on the layer alone */
    cpu_kernel_name,
    cpu_can_fuse_residual,
    NULL, /* float32, row-major everywhere */
    NULL, /* refit: prepare again (repacks the weights) */
    NULL, NULL,
    NULL, /* kernels chosen by rule: no choice to store or cache */
    NULL, NULL, /* kiln_host_alloc: plain aligned memory */
    NULL,       /* no FP16 range check runs on the CPU */
    NULL,       /* row-major tensors: concats along channels copy (or need no copy) */
    1,          /* fused regions of float32 tensors (src/cpu/fused.c) */
    NULL,       /* timings depend on the layer alone */
};
