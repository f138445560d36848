/* kiln internal: the layer catalogue, one entry per kiln_layer_type: its name, its
 * shape/dtype inference and what the memory planner may do with it. Each inference
 * function is defined in the src/graph/shape_*.c file of its op family. */
#ifndef KILN_GRAPH_OPS_H
#define KILN_GRAPH_OPS_H

#include "graph/graph.h"

/* Inference: reads l->inputs[i]->dims/dtype (all known, nb_dims >= 0) and attributes,
 * validates them, writes every l->outputs[j]->dims and ->dtype. On bad input returns
 * kg_layer_error(l, KILN_ERR_SHAPE / KILN_ERR_DTYPE / KILN_ERR_INVALID_ARGUMENT, ...). */
typedef kiln_status (*kg_infer_fn)(kiln_layer *l);

enum {
    /* output 0 may share input 0's buffer (same byte size; kernel reads element i
     * before writing element i) */
    KG_OP_INPLACE = 1u << 0,
    /* output 0 holds input 0's bytes unchanged (reshape, identity): it can alias */
    KG_OP_VIEW = 1u << 1,
};

typedef struct kg_op_info {
    const char *name;
    kg_infer_fn infer;
    unsigned flags;
    /* arity: inputs in [min_in, max_in] (max_in -1: any number), outputs nb_out (-1: one
     * or more); optional: bit i set when input i may be absent (NULL) */
    int min_in, max_in, nb_out;
    unsigned optional;
} kg_op_info;

extern const kg_op_info kg_ops[KILN_LAYER_TYPE_COUNT];

#define KG_INFER(name) kiln_status kg_infer_##name(kiln_layer *l)
/* shape_conv.c */
KG_INFER(convolution);
KG_INFER(deconvolution);
KG_INFER(pooling);
KG_INFER(matmul);
KG_INFER(gemm);
/* shape_pointwise.c */
KG_INFER(activation);
KG_INFER(prelu);
KG_INFER(scale);
KG_INFER(elementwise);
KG_INFER(unary);
KG_INFER(select);
KG_INFER(instance_norm);
KG_INFER(lrn);
KG_INFER(softmax);
KG_INFER(reduce);
KG_INFER(arg_reduce);
/* shape_movement.c */
KG_INFER(concat);
KG_INFER(split);
KG_INFER(slice);
KG_INFER(transpose);
KG_INFER(pad);
KG_INFER(gather);
KG_INFER(expand);
KG_INFER(tile);
KG_INFER(depth_to_space);
KG_INFER(space_to_depth);
KG_INFER(resize);
/* Slice resolved against the input shape: the clamped start and the step of every input
 * axis (untouched axes: 0 and 1) and the output dims. Shared by inference and kernels so
 * they always agree. */
kiln_status kg_slice_resolve(const kiln_layer *l, int64_t *start, int64_t *step, kiln_dims *out);
/* shape_basic.c */
KG_INFER(shuffle);
KG_INFER(constant);
KG_INFER(identity);
KG_INFER(cast);
KG_INFER(reformat);
/* fused.c */
KG_INFER(fused);

#endif
