/* kiln CUDA backend: a float16 channels-last convolution with its residual add, bias and
 * ReLU as one cuDNN backend-API operation graph, and the engine configurations cuDNN's
 * heuristics offer for it (dnn_graph.c). dnn.c times them beside its other paths. */
#ifndef KILN_CUDA_DNN_GRAPH_H
#define KILN_CUDA_DNN_GRAPH_H

#include "cuda/host.h"

/* engine configurations tried per layer, in the heuristics' order */
#define KCU_CG_MAX 8

typedef struct kcu_cg kcu_cg;

/* x [n, c, h, w], w [k, c, r, s], y [n, k, oh, ow]: all float16 channels-last (w as
 * K, R, S, C); bias [k] float16; z (residual) dense like y. ldy > 0: y's pixels that many
 * elements apart (a concat's channel slice), else k. */
typedef struct kcu_cg_desc {
    int64_t n, c, h, w, k, r, s, oh, ow;
    int64_t pad_pre[2], pad_post[2], stride[2], dil[2];
    bool res, bias, relu;
    int64_t ldy;
    /* a deconvolution: cuDNN's backward-data of the convolution from y to x, so x
     * [n, c, h, w] is its dy and y [n, k, oh, ow] its dx; w [c, k, r, s] (stored C, R, S,
     * K); pads, strides, dilations the deconvolution's; no residual */
    bool dgrad;
} kcu_cg_desc;

/* The operation graph and its engine configurations; KILN_ERR_UNSUPPORTED (a message
 * naming the layer) when cuDNN offers none. */
kiln_status kcu_cg_create(const kiln_layer *l, const kiln_env *env, const kcu_cg_desc *d, kcu_cg **out);
int kcu_cg_count(const kcu_cg *g);
/* cuDNN's global index of configuration i's engine (-1: unknown). */
int64_t kcu_cg_engine(const kcu_cg *g, int i);
/* Finalizes configuration i's execution plan (once) and says its workspace bytes; false
 * when it does not finalize, compiles at run time or needs more than ws_limit. */
bool kcu_cg_plan(kcu_cg *g, int i, size_t ws_limit, size_t *ws);
/* Makes configuration i (its plan finalized) the one that runs; keep frees the others. */
void kcu_cg_use(kcu_cg *g, int i);
void kcu_cg_keep(kcu_cg *g);
int kcu_cg_selected(const kcu_cg *g);
/* Enqueues the selected plan on h's stream; ws: its workspace. */
kiln_status kcu_cg_run(const kiln_layer *l, const kcu_cg *g, cudnnHandle_t h, const void *x, const void *w,
                       const void *z, const void *bias, void *y, void *ws);
void kcu_cg_free(const kiln_env *env, kcu_cg *g);

#endif
