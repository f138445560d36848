/* kiln internal: the CPU backend's kernel interface. One kcpu_kernel per layer type,
 * defined in the src/cpu/ file of its op family and listed in src/cpu/backend.c.
 * Float32 is the compute type; data-movement kernels handle every dtype by size. */
#ifndef KILN_CPU_CPU_H
#define KILN_CPU_CPU_H

#include "graph/graph.h"

/* Per-execution-context run state: worker threads and the layer's scratch memory. */
typedef struct kcpu_exec kcpu_exec;

/* Runs fn over [0, n) split into contiguous chunks across the context's threads
 * (thread i of t gets one chunk); grain is the smallest chunk worth a thread.
 * Returns when every chunk is done. fn must not call kcpu_parallel_for again. */
typedef void (*kcpu_range_fn)(void *arg, int64_t begin, int64_t end);
void kcpu_parallel_for(kcpu_exec *x, int64_t n, int64_t grain, kcpu_range_fn fn, void *arg);
int kcpu_num_threads(const kcpu_exec *x);
/* The scratch buffer the layer asked for at prepare (KILN_ALIGN-aligned), or NULL. */
void *kcpu_scratch(const kcpu_exec *x);

typedef struct kcpu_kernel {
    /* Build time. Checks that the layer (already shape-inferred, every dim known) is
     * supported (dtypes, attributes); may pack weights into *state (allocated with
     * kiln_alloc(env, ...)); sets *scratch_bytes to the run-time scratch it needs
     * (shared by all threads of the layer). Unsupported: KILN_ERR_UNSUPPORTED through
     * kg_layer_error. NULL prepare = nothing to prepare. */
    kiln_status (*prepare)(const kiln_layer *l, const kiln_env *env, void **state,
                           size_t *scratch_bytes);
    /* Run time: in[i] / out[j] are the buffers of l->inputs[i] / l->outputs[j]
     * (in[i] NULL for an absent optional input). Must not allocate. Output 0 may be
     * the same buffer as input 0 when the op is KG_OP_INPLACE. Returns KILN_OK, or
     * KILN_ERR_RUNTIME (through kg_layer_error) for data-dependent failures. */
    kiln_status (*run)(const kiln_layer *l, const void *state, const void *const *in,
                       void *const *out, kcpu_exec *x);
    /* Frees *state. NULL = kiln_free(env, state). */
    void (*release)(const kiln_env *env, void *state);
} kcpu_kernel;

#define KCPU_KERNEL(name) extern const kcpu_kernel kcpu_##name
/* conv.c, pool.c, gemm.c */
KCPU_KERNEL(convolution);
KCPU_KERNEL(deconvolution);
KCPU_KERNEL(pooling);
KCPU_KERNEL(matmul);
KCPU_KERNEL(gemm);
/* activation.c, elementwise.c, norm.c, reduce.c */
KCPU_KERNEL(activation);
KCPU_KERNEL(prelu);
KCPU_KERNEL(scale);
KCPU_KERNEL(elementwise);
KCPU_KERNEL(unary);
KCPU_KERNEL(select);
KCPU_KERNEL(instance_norm);
KCPU_KERNEL(lrn);
KCPU_KERNEL(softmax);
KCPU_KERNEL(reduce);
KCPU_KERNEL(arg_reduce);
/* movement.c, resize.c */
KCPU_KERNEL(concat);
KCPU_KERNEL(split);
KCPU_KERNEL(slice);
KCPU_KERNEL(transpose);
KCPU_KERNEL(pad);
KCPU_KERNEL(gather);
KCPU_KERNEL(expand);
KCPU_KERNEL(tile);
KCPU_KERNEL(depth_to_space);
KCPU_KERNEL(space_to_depth);
KCPU_KERNEL(resize);
/* basic.c */
KCPU_KERNEL(shuffle);
KCPU_KERNEL(constant);
KCPU_KERNEL(identity);
KCPU_KERNEL(cast);
KCPU_KERNEL(reformat);
KCPU_KERNEL(fused);

/* Applies an activation to n floats (out may be in). */
void kcpu_act_range(const kg_act_params *p, const float *in, float *out, int64_t n);
/* The epilogue of a layer with a fused residual and/or activation (kiln_layer
 * has_post_act, a convolution's inputs[1]): y = act(y + residual), or act(y) + residual when
 * l->res_after_act, in parallel. */
void kcpu_epilogue(const kiln_layer *l, float *y, const float *residual, kcpu_exec *x);
/* y[i] += residual[i] over n values (a residual added after a fused activation). */
void kcpu_add_residual(float *y, const float *residual, int64_t n, kcpu_exec *x);

/* Whether this backend's kernel for `producer` applies a fused activation `act`
 * (kiln_layer.has_post_act). */
bool kcpu_can_fuse_act(kiln_layer_type producer, kiln_activation_type act);

/* Which path a prepared convolution takes (Winograd, own AVX2 GEMM, OpenBLAS, depthwise). */
const char *kcpu_conv_kernel_name(const void *state);

/* The kernel for a layer type; NULL if the CPU backend has none. */
const kcpu_kernel *kcpu_kernel_for(kiln_layer_type type);

#endif
