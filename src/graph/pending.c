/* TEMPORARY during development: weak placeholders so the library links while op
 * families are being written. Each real definition overrides its placeholder.
 * This file is deleted once every family exists. */
#include "cpu/cpu.h"
#include "graph/ops.h"

#define PENDING(name)                                                                      \
    __attribute__((weak)) kiln_status kg_infer_##name(kiln_layer *l) {                    \
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "not implemented yet");             \
    }                                                                                      \
    __attribute__((weak)) const kcpu_kernel kcpu_##name = {0};
PENDING(convolution)
PENDING(deconvolution)
PENDING(pooling)
PENDING(matmul)
PENDING(gemm)
PENDING(activation)
PENDING(prelu)
PENDING(scale)
PENDING(elementwise)
PENDING(unary)
PENDING(select)
PENDING(instance_norm)
PENDING(lrn)
PENDING(softmax)
PENDING(reduce)
PENDING(arg_reduce)
PENDING(concat)
PENDING(split)
PENDING(slice)
PENDING(transpose)
PENDING(pad)
PENDING(gather)
PENDING(expand)
PENDING(tile)
PENDING(depth_to_space)
PENDING(space_to_depth)
PENDING(resize)
PENDING(shuffle)
PENDING(constant)
PENDING(identity)
PENDING(cast)
