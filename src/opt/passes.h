/* kiln internal: graph optimisation passes run by the builder on its own copy of the
 * network, after shape inference and before memory planning. Each pass is a function
 * over the graph that is testable on its own. */
#ifndef KILN_OPT_PASSES_H
#define KILN_OPT_PASSES_H

#include "graph/graph.h"

typedef struct kopt_options {
    /* whether the chosen backend's kernel for this layer type applies a fused
     * activation of this kind (l->has_post_act) */
    bool (*can_fuse_act)(kiln_layer_type producer, kiln_activation_type act);
    /* keep weights as given (refittable engine): skip passes that rewrite them */
    bool keep_weights;
    /* whether the backend's convolution adds a residual input (conv + add fusion) */
    bool (*can_fuse_residual)(const kiln_layer *conv);
    /* The storage type and layout the backend's kernel wants for this layer's float
     * tensors, given the builder flags; false: the logical dtype, row-major. Called in
     * execution order, so the layer's inputs already carry their choices. NULL: every
     * layer takes the default (the CPU). */
    bool (*layer_format)(const kiln_layer *l, unsigned flags, int *storage, int *format);
    unsigned flags; /* kiln_builder_flag bits */
    int fuse_regions; /* kb_backend.fuse_regions */
} kopt_options;

/* Number of layers reading tensor t (not counting removed layers). */
int kopt_consumers(const kiln_graph *g, const kiln_tensor *t);

/* Folds a per-channel or uniform scale/shift (batch norm) that is the only reader of a
 * convolution's output into the convolution's weights and bias. Returns the number of
 * layers folded through *count. */
kiln_status kopt_fold_scale_into_conv(kiln_graph *g, int *count);
/* Rewrites an element-wise ADD, SUB, MUL, DIV or POW of a float32 tensor and a constant
 * that is one value or one per channel (axis 1) as a SCALE layer (x / c becomes x * (1/c),
 * c - x becomes x * -1 + c, x ^ c a scale with power c), so the scale passes below can
 * merge and fold it. */
kiln_status kopt_elementwise_to_scale(kiln_graph *g, int *count);
/* Merges a chain of uniform/per-channel scales, each the only reader of the one before, into
 * its first layer: (x a1 + b1) a2 + b2 = x a1 a2 + (b1 a2 + b2); a scale with a power ends
 * the chain ((x a1 + b1) a2 + b2) ^ p. */
kiln_status kopt_merge_scales(kiln_graph *g, int *count);
/* Moves an activation that is the only reader of a convolution or gemm output into that
 * layer (l->has_post_act) when the backend supports it. */
kiln_status kopt_fuse_activation(kiln_graph *g, const kopt_options *o, int *count);
/* An activation read after reshapes and transposes of a convolution or gemm output (each
 * tensor of the chain read only by the next layer; YOLOv5's detection head: conv, reshape,
 * transpose, sigmoid) moves into that layer, as the activation commutes with moving data:
 * the last layer of the chain then writes the activation's output tensor. */
kiln_status kopt_hoist_activation(kiln_graph *g, const kopt_options *o, int *count);

/* Rewrites x * sigmoid(x) (a Sigmoid activation read only by an element-wise MUL with x,
 * as exported from PyTorch's SiLU by older opsets and by YOLOv5) into one SiLU activation,
 * which kopt_fuse_activation can then move into the producer of x. */
kiln_status kopt_fuse_silu(kiln_graph *g, int *count);

/* Folds an element-wise ADD whose one operand is a convolution's output (read only there)
 * and whose other operand has the output's shape into the convolution as a residual
 * input (inputs[1]), when the backend supports it. */
kiln_status kopt_fuse_residual(kiln_graph *g, const kopt_options *o, int *count);
/* Folds an element-wise ADD that is the only reader of a convolution with a fused
 * activation (y = act(conv(x)) + r, YOLOv5's bottleneck) into the convolution as a
 * residual added after the activation (inputs[1], res_after_act), when the backend
 * supports residuals. Runs after kopt_fuse_activation. */
kiln_status kopt_fuse_residual_after_act(kiln_graph *g, const kopt_options *o, int *count);
/* Gives every float tensor the storage type and layout its reader and writer want and
 * inserts KILN_LAYER_REFORMAT layers where they disagree; network inputs and outputs
 * keep their logical dtype, row-major. */
kiln_status kopt_assign_formats(kiln_graph *g, const kopt_options *o, int *inserted);

/* Replaces each region of data-movement and element-wise layers (reshape, transpose,
 * slice, concat, expand, reformat, cast, element-wise arithmetic, uniform scale,
 * activation) holding two or more that move or compute data by one KILN_LAYER_FUSED layer
 * (src/graph/fused.h), when o->fuse_regions allows their tensors; runs after
 * kopt_assign_formats. KILN_FUSE=off in the environment turns it off. *count: fused
 * layers made, *absorbed: layers they replace. */
kiln_status kopt_fuse_regions(kiln_graph *g, const kopt_options *o, int *count, int *absorbed);

/* All passes in order. */
kiln_status kopt_run(kiln_graph *g, const kopt_options *o);

#endif
