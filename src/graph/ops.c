/* kiln internal: the layer catalogue table. */
#include "graph/ops.h"

const kg_op_info kg_ops[KILN_LAYER_TYPE_COUNT] = {
    [KILN_LAYER_CONVOLUTION] = {"Convolution", kg_infer_convolution, 0, 1, 2, 1, 2u},
    [KILN_LAYER_DECONVOLUTION] = {"Deconvolution", kg_infer_deconvolution, 0, 1, 1, 1, 0u},
    [KILN_LAYER_POOLING] = {"Pooling", kg_infer_pooling, 0, 1, 1, 1, 0u},
    [KILN_LAYER_ACTIVATION] = {"Activation", kg_infer_activation, KG_OP_INPLACE, 1, 1, 1, 0u},
    [KILN_LAYER_PRELU] = {"PRelu", kg_infer_prelu, KG_OP_INPLACE, 2, 2, 1, 0u},
    [KILN_LAYER_SCALE] = {"Scale", kg_infer_scale, KG_OP_INPLACE, 1, 1, 1, 0u},
    [KILN_LAYER_ELEMENTWISE] = {"Elementwise", kg_infer_elementwise, KG_OP_INPLACE, 2, 2, 1, 0u},
    [KILN_LAYER_UNARY] = {"Unary", kg_infer_unary, KG_OP_INPLACE, 1, 1, 1, 0u},
    [KILN_LAYER_MATMUL] = {"MatMul", kg_infer_matmul, 0, 2, 2, 1, 0u},
    [KILN_LAYER_GEMM] = {"Gemm", kg_infer_gemm, 0, 3, 3, 1, 4u},
    [KILN_LAYER_CONCAT] = {"Concat", kg_infer_concat, 0, 1, -1, 1, 0u},
    [KILN_LAYER_SPLIT] = {"Split", kg_infer_split, 0, 1, 1, -1, 0u},
    [KILN_LAYER_SLICE] = {"Slice", kg_infer_slice, 0, 1, 1, 1, 0u},
    [KILN_LAYER_SHUFFLE] = {"Shuffle", kg_infer_shuffle, KG_OP_VIEW, 1, 1, 1, 0u},
    [KILN_LAYER_TRANSPOSE] = {"Transpose", kg_infer_transpose, 0, 1, 1, 1, 0u},
    [KILN_LAYER_PAD] = {"Pad", kg_infer_pad, 0, 1, 1, 1, 0u},
    [KILN_LAYER_GATHER] = {"Gather", kg_infer_gather, 0, 2, 2, 1, 0u},
    [KILN_LAYER_CAST] = {"Cast", kg_infer_cast, 0, 1, 1, 1, 0u},
    [KILN_LAYER_CONSTANT] = {"Constant", kg_infer_constant, 0, 0, 0, 1, 0u},
    [KILN_LAYER_IDENTITY] = {"Identity", kg_infer_identity, KG_OP_VIEW, 1, 1, 1, 0u},
    [KILN_LAYER_RESIZE] = {"Resize", kg_infer_resize, 0, 1, 1, 1, 0u},
    [KILN_LAYER_SOFTMAX] = {"Softmax", kg_infer_softmax, 0, 1, 1, 1, 0u},
    [KILN_LAYER_REDUCE] = {"Reduce", kg_infer_reduce, 0, 1, 1, 1, 0u},
    [KILN_LAYER_ARG_REDUCE] = {"ArgReduce", kg_infer_arg_reduce, 0, 1, 1, 1, 0u},
    [KILN_LAYER_SELECT] = {"Select", kg_infer_select, 0, 3, 3, 1, 0u},
    [KILN_LAYER_EXPAND] = {"Expand", kg_infer_expand, 0, 1, 1, 1, 0u},
    [KILN_LAYER_TILE] = {"Tile", kg_infer_tile, 0, 1, 1, 1, 0u},
    [KILN_LAYER_DEPTH_TO_SPACE] = {"DepthToSpace", kg_infer_depth_to_space, 0, 1, 1, 1, 0u},
    [KILN_LAYER_SPACE_TO_DEPTH] = {"SpaceToDepth", kg_infer_space_to_depth, 0, 1, 1, 1, 0u},
    [KILN_LAYER_INSTANCE_NORM] = {"InstanceNorm", kg_infer_instance_norm, 0, 1, 1, 1, 0u},
    [KILN_LAYER_LRN] = {"LRN", kg_infer_lrn, 0, 1, 1, 1, 0u},
    [KILN_LAYER_REFORMAT] = {"Reformat", kg_infer_reformat, 0, 1, 1, 1, 0u},
    [KILN_LAYER_FUSED] = {"Fused", kg_infer_fused, 0, 0, -1, 1, 0u},
};

const char *kiln_layer_type_name(kiln_layer_type type) {
    return (unsigned)type < KILN_LAYER_TYPE_COUNT ? kg_ops[type].name : "?";
}
