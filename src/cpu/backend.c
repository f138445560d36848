/* kiln internal: the CPU backend's kernel table, indexed by layer type. */
#include "cpu/cpu.h"

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
};

const kcpu_kernel *kcpu_kernel_for(kiln_layer_type type) {
    return (unsigned)type < KILN_LAYER_TYPE_COUNT ? kernels[type] : NULL;
}

bool kcpu_can_fuse_act(kiln_layer_type producer, kiln_activation_type act) {
    (void)producer;
    (void)act;
    return false; /* until the convolution and gemm kernels apply post_act */
}
