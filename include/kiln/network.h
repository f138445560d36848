/* kiln: the network definition API. A network is built layer by layer, like
 * TensorRT's INetworkDefinition; the builder (builder.h) turns it into an engine.
 *
 * Ownership: a network owns its layers and tensors; the kiln_layer and kiln_tensor
 * handles returned here stay valid until kiln_network_destroy. Weights passed in are
 * BORROWED: the caller keeps them alive, unchanged, until kiln_builder_build on this
 * network has returned (the engine copies what it needs). Strings are copied.
 *
 * Errors: functions returning a handle return NULL on failure; functions returning
 * kiln_status return the code. Either way kiln_last_error() names the layer and the
 * problem. Output shapes are inferred as layers are added when input shapes are
 * known; the builder checks every layer again before building. */
#ifndef KILN_NETWORK_H
#define KILN_NETWORK_H

#include "kiln/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_network kiln_network;
typedef struct kiln_layer kiln_layer;
typedef struct kiln_tensor kiln_tensor;

/* Layer kinds. Append-only. */
typedef enum kiln_layer_type {
    KILN_LAYER_CONVOLUTION = 0,
    KILN_LAYER_DECONVOLUTION,
    KILN_LAYER_POOLING,
    KILN_LAYER_ACTIVATION,
    KILN_LAYER_PRELU,
    KILN_LAYER_SCALE,
    KILN_LAYER_ELEMENTWISE,
    KILN_LAYER_UNARY,
    KILN_LAYER_MATMUL,
    KILN_LAYER_GEMM,
    KILN_LAYER_CONCAT,
    KILN_LAYER_SPLIT,
    KILN_LAYER_SLICE,
    KILN_LAYER_SHUFFLE, /* reshape, flatten, squeeze, unsqueeze: a view of the input */
    KILN_LAYER_TRANSPOSE,
    KILN_LAYER_PAD,
    KILN_LAYER_GATHER,
    KILN_LAYER_CAST,
    KILN_LAYER_CONSTANT,
    KILN_LAYER_IDENTITY,
    KILN_LAYER_RESIZE,
    KILN_LAYER_SOFTMAX,
    KILN_LAYER_REDUCE,
    KILN_LAYER_ARG_REDUCE,
    KILN_LAYER_SELECT,  /* where(cond, a, b) */
    KILN_LAYER_EXPAND,
    KILN_LAYER_TILE,
    KILN_LAYER_DEPTH_TO_SPACE,
    KILN_LAYER_SPACE_TO_DEPTH,
    KILN_LAYER_INSTANCE_NORM,
    KILN_LAYER_LRN,
    /* Inserted by the builder only: converts between the storage precisions and memory
     * layouts that device kernels chose (float32 <-> float16, NCHW <-> NHWC). */
    KILN_LAYER_REFORMAT,
    /* Inserted by the builder only: a region of data-movement and element-wise layers run
     * as one pass (see 'kiln inspect'). */
    KILN_LAYER_FUSED
} kiln_layer_type;
#define KILN_LAYER_TYPE_COUNT 33

/* Name of a layer type ("Convolution"). Static storage. */
KILN_API const char *kiln_layer_type_name(kiln_layer_type type);

/* ---- network and tensors ---- */

/* Adds a named network input. Names must be unique among tensors. dims may hold -1
 * for dimensions fixed at build time. */
KILN_API kiln_tensor *kiln_network_add_input(kiln_network *net, const char *name, kiln_dtype dtype,
                                             kiln_dims dims);
/* Marks a tensor as a network output; its name becomes the binding name. */
KILN_API kiln_status kiln_network_mark_output(kiln_network *net, kiln_tensor *tensor);

KILN_API int kiln_network_num_layers(const kiln_network *net);
KILN_API kiln_layer *kiln_network_layer(const kiln_network *net, int index);
KILN_API int kiln_network_num_inputs(const kiln_network *net);
KILN_API kiln_tensor *kiln_network_input(const kiln_network *net, int index);
KILN_API int kiln_network_num_outputs(const kiln_network *net);
KILN_API kiln_tensor *kiln_network_output(const kiln_network *net, int index);
/* Finds a tensor by name; NULL if none. */
KILN_API kiln_tensor *kiln_network_find_tensor(const kiln_network *net, const char *name);

KILN_API kiln_status kiln_tensor_set_name(kiln_tensor *tensor, const char *name);
KILN_API const char *kiln_tensor_name(const kiln_tensor *tensor);
KILN_API kiln_dtype kiln_tensor_dtype(const kiln_tensor *tensor);
/* Inferred shape; nb_dims = -1 when not yet known (an input dimension is -1). */
KILN_API kiln_dims kiln_tensor_dims(const kiln_tensor *tensor);

KILN_API kiln_status kiln_layer_set_name(kiln_layer *layer, const char *name);
KILN_API const char *kiln_layer_name(const kiln_layer *layer);
KILN_API kiln_layer_type kiln_layer_get_type(const kiln_layer *layer);
KILN_API int kiln_layer_num_inputs(const kiln_layer *layer);
KILN_API kiln_tensor *kiln_layer_input(const kiln_layer *layer, int index);
KILN_API int kiln_layer_num_outputs(const kiln_layer *layer);
KILN_API kiln_tensor *kiln_layer_output(const kiln_layer *layer, int index);

/* ---- convolution ---- */

/* 2-D convolution over NCHW input. Kernel weights are [out_channels, C/groups, kh, kw]
 * for convolution and [C, out_channels/groups, kh, kw] for deconvolution; bias has
 * out_channels values or none. Zeroed fields take defaults: stride 1, dilation 1,
 * groups 1, padding 0. */
typedef struct kiln_conv_desc {
    int64_t out_channels;
    int64_t kernel[2];
    int64_t stride[2];
    int64_t pad_begin[2]; /* top, left */
    int64_t pad_end[2];   /* bottom, right */
    int64_t dilation[2];
    int64_t groups;
    int64_t output_padding[2]; /* deconvolution only */
} kiln_conv_desc;

KILN_API kiln_layer *kiln_network_add_convolution(kiln_network *net, kiln_tensor *input,
                                                  const kiln_conv_desc *desc, kiln_weights kernel,
                                                  kiln_weights bias);
KILN_API kiln_layer *kiln_network_add_deconvolution(kiln_network *net, kiln_tensor *input,
                                                    const kiln_conv_desc *desc, kiln_weights kernel,
                                                    kiln_weights bias);

/* ---- pooling ---- */

typedef enum kiln_pool_type { KILN_POOL_MAX = 0, KILN_POOL_AVERAGE = 1 } kiln_pool_type;

/* 2-D pooling over NCHW. global = 1 pools all of H x W (kernel, stride, pads ignored).
 * Zeroed stride and dilation mean 1. */
typedef struct kiln_pool_desc {
    kiln_pool_type type;
    int32_t global;
    int64_t kernel[2];
    int64_t stride[2];
    int64_t pad_begin[2];
    int64_t pad_end[2];
    int64_t dilation[2];
    int32_t count_include_pad; /* average: padded cells count in the divisor */
    int32_t ceil_mode;         /* output size rounds up (windows starting in padding dropped) */
} kiln_pool_desc;

KILN_API kiln_layer *kiln_network_add_pooling(kiln_network *net, kiln_tensor *input,
                                              const kiln_pool_desc *desc);

/* ---- activations ---- */

typedef enum kiln_activation_type {
    KILN_ACT_RELU = 0,
    KILN_ACT_LEAKY_RELU,   /* x >= 0 ? x : alpha*x */
    KILN_ACT_SIGMOID,
    KILN_ACT_TANH,
    KILN_ACT_CLIP,         /* min(max(x, alpha), beta); ReLU6 is alpha=0, beta=6 */
    KILN_ACT_SILU,         /* x * sigmoid(x) */
    KILN_ACT_HARD_SIGMOID, /* max(0, min(1, alpha*x + beta)) */
    KILN_ACT_HARD_SWISH,   /* x * max(0, min(1, x/6 + 0.5)) */
    KILN_ACT_GELU_ERF,     /* 0.5x(1 + erf(x/sqrt 2)) */
    KILN_ACT_GELU_TANH,    /* 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))) */
    KILN_ACT_ELU,          /* x >= 0 ? x : alpha*(exp(x)-1) */
    KILN_ACT_SELU,         /* beta * (x > 0 ? x : alpha*(exp(x)-1)) (alpha, gamma) */
    KILN_ACT_SOFTPLUS,     /* log(1 + exp(x)) */
    KILN_ACT_SOFTSIGN,     /* x / (1 + |x|) */
    KILN_ACT_THRESHOLDED_RELU, /* x > alpha ? x : 0 */
    KILN_ACT_MISH              /* x * tanh(softplus(x)) */
} kiln_activation_type;
#define KILN_ACT_COUNT 16

/* alpha and beta as documented per type; ignored otherwise. */
KILN_API kiln_layer *kiln_network_add_activation(kiln_network *net, kiln_tensor *input,
                                                 kiln_activation_type type, float alpha,
                                                 float beta);
/* out = x >= 0 ? x : slope * x, slope broadcast (numpy rules) against x. */
KILN_API kiln_layer *kiln_network_add_prelu(kiln_network *net, kiln_tensor *input,
                                            kiln_tensor *slope);

/* ---- scale / batch normalization ---- */

typedef enum kiln_scale_mode {
    KILN_SCALE_UNIFORM = 0, /* one value for the whole tensor */
    KILN_SCALE_CHANNEL = 1, /* one value per channel (axis 1) */
    KILN_SCALE_ELEMENTWISE = 2 /* one value per element of a C x H x W item */
} kiln_scale_mode;

/* out = (x * scale + shift) ^ power, each weight optional (count 0 = identity value). */
KILN_API kiln_layer *kiln_network_add_scale(kiln_network *net, kiln_tensor *input,
                                            kiln_scale_mode mode, kiln_weights shift,
                                            kiln_weights scale, kiln_weights power);
/* Inference batch normalization over axis 1: gamma*(x-mean)/sqrt(var+eps)+beta. The
 * four arrays (float32, C values each) are read during this call only: the layer
 * keeps the folded per-channel scale and shift. */
KILN_API kiln_layer *kiln_network_add_batch_norm(kiln_network *net, kiln_tensor *input,
                                                 kiln_weights gamma, kiln_weights beta,
                                                 kiln_weights mean, kiln_weights var,
                                                 float epsilon);
/* Instance normalization: per (n, c), over the remaining axes, then scale/bias per channel.
 * scale and bias are float32 with C values. */
KILN_API kiln_layer *kiln_network_add_instance_norm(kiln_network *net, kiln_tensor *input,
                                                    kiln_weights scale, kiln_weights bias,
                                                    float epsilon);
/* Local response normalization across channels (ONNX LRN). */
KILN_API kiln_layer *kiln_network_add_lrn(kiln_network *net, kiln_tensor *input, int64_t size,
                                          float alpha, float beta, float bias);

/* ---- element-wise ---- */

typedef enum kiln_elementwise_op {
    KILN_ELT_ADD = 0,
    KILN_ELT_SUB,
    KILN_ELT_MUL,
    KILN_ELT_DIV,
    KILN_ELT_MAX,
    KILN_ELT_MIN,
    KILN_ELT_POW,
    KILN_ELT_EQUAL,   /* comparisons and logic produce KILN_BOOL */
    KILN_ELT_LESS,
    KILN_ELT_GREATER,
    KILN_ELT_LESS_EQUAL,
    KILN_ELT_GREATER_EQUAL,
    KILN_ELT_AND,
    KILN_ELT_OR,
    KILN_ELT_XOR,
    KILN_ELT_MOD,   /* integer modulo, sign of divisor (ONNX Mod fmod=0) */
    KILN_ELT_FMOD   /* C fmod, sign of dividend */
} kiln_elementwise_op;
#define KILN_ELT_COUNT 17

/* Binary op with numpy broadcasting. Both inputs share a dtype. */
KILN_API kiln_layer *kiln_network_add_elementwise(kiln_network *net, kiln_tensor *a,
                                                  kiln_tensor *b, kiln_elementwise_op op);

typedef enum kiln_unary_op {
    KILN_UNARY_EXP = 0,
    KILN_UNARY_LOG,
    KILN_UNARY_SQRT,
    KILN_UNARY_ABS,
    KILN_UNARY_NEG,
    KILN_UNARY_RECIPROCAL,
    KILN_UNARY_FLOOR,
    KILN_UNARY_CEIL,
    KILN_UNARY_ERF,
    KILN_UNARY_NOT, /* bool only */
    KILN_UNARY_SIN,
    KILN_UNARY_COS,
    KILN_UNARY_ROUND, /* half to even */
    KILN_UNARY_SIGN
} kiln_unary_op;
#define KILN_UNARY_COUNT 14

KILN_API kiln_layer *kiln_network_add_unary(kiln_network *net, kiln_tensor *input,
                                            kiln_unary_op op);

/* out = cond ? a : b, all three broadcast; cond is KILN_BOOL. */
KILN_API kiln_layer *kiln_network_add_select(kiln_network *net, kiln_tensor *cond, kiln_tensor *a,
                                             kiln_tensor *b);

/* ---- matrix products ---- */

/* numpy matmul: batched, broadcasting, 1-D operands promoted and the added axis dropped. */
KILN_API kiln_layer *kiln_network_add_matmul(kiln_network *net, kiln_tensor *a, kiln_tensor *b);

typedef struct kiln_gemm_desc {
    int32_t trans_a;
    int32_t trans_b;
    float alpha;
    float beta;
} kiln_gemm_desc;

/* ONNX Gemm: out = alpha * op(a) * op(b) + beta * c; a and b 2-D, c (nullable)
 * broadcast to [M, N]. A NULL desc means no transposes, alpha = beta = 1. */
KILN_API kiln_layer *kiln_network_add_gemm(kiln_network *net, kiln_tensor *a, kiln_tensor *b,
                                           kiln_tensor *c, const kiln_gemm_desc *desc);
/* Fully connected: input [N, K] (higher ranks are flattened from axis 1), kernel
 * [out_features, K], bias out_features values or none. Adds constant and gemm layers
 * and returns the gemm. */
KILN_API kiln_layer *kiln_network_add_fully_connected(kiln_network *net, kiln_tensor *input,
                                                      int64_t out_features, kiln_weights kernel,
                                                      kiln_weights bias);

/* ---- tensor manipulation ---- */

/* Constant tensor of `dims` holding `weights` (count must equal the volume). */
KILN_API kiln_layer *kiln_network_add_constant(kiln_network *net, kiln_dims dims,
                                               kiln_weights weights);
KILN_API kiln_layer *kiln_network_add_identity(kiln_network *net, kiln_tensor *input);
KILN_API kiln_layer *kiln_network_add_cast(kiln_network *net, kiln_tensor *input, kiln_dtype to);

/* Negative axes count from the end. */
KILN_API kiln_layer *kiln_network_add_concat(kiln_network *net, kiln_tensor *const *inputs,
                                             int nb_inputs, int axis);
/* Splits along axis into nb_outputs pieces of the given sizes (NULL sizes: equal
 * pieces, the last one smaller if the axis does not divide). */
KILN_API kiln_layer *kiln_network_add_split(kiln_network *net, kiln_tensor *input, int axis,
                                            int nb_outputs, const int64_t *sizes);
/* ONNX Slice semantics: starts/ends clamped, negative values from the end, steps may be
 * negative (never 0). axes NULL means 0..n-1; steps NULL means 1. */
KILN_API kiln_layer *kiln_network_add_slice(kiln_network *net, kiln_tensor *input, int nb,
                                            const int64_t *starts, const int64_t *ends,
                                            const int64_t *axes, const int64_t *steps);

/* ONNX Reshape: 0 copies the input dimension (unless allow_zero), -1 is inferred. */
KILN_API kiln_layer *kiln_network_add_reshape(kiln_network *net, kiln_tensor *input,
                                              kiln_dims shape, int allow_zero);
/* To 2-D: [d0*..*d(axis-1), d(axis)*..]. */
KILN_API kiln_layer *kiln_network_add_flatten(kiln_network *net, kiln_tensor *input, int axis);
/* axes NULL: every dimension of size 1. */
KILN_API kiln_layer *kiln_network_add_squeeze(kiln_network *net, kiln_tensor *input, int nb_axes,
                                              const int64_t *axes);
/* axes refer to the output rank. */
KILN_API kiln_layer *kiln_network_add_unsqueeze(kiln_network *net, kiln_tensor *input,
                                                int nb_axes, const int64_t *axes);
/* perm NULL reverses the axes. */
KILN_API kiln_layer *kiln_network_add_transpose(kiln_network *net, kiln_tensor *input, int nb,
                                                const int64_t *perm);

typedef enum kiln_pad_mode {
    KILN_PAD_CONSTANT = 0,
    KILN_PAD_REFLECT = 1,
    KILN_PAD_EDGE = 2,
    KILN_PAD_WRAP = 3
} kiln_pad_mode;
/* pads: rank begin values then rank end values (ONNX order); negative pads crop. */
KILN_API kiln_layer *kiln_network_add_pad(kiln_network *net, kiln_tensor *input,
                                          const int64_t *pads, kiln_pad_mode mode, float value);
/* ONNX Gather: indices (int32 or int64, negative allowed) select along axis. */
KILN_API kiln_layer *kiln_network_add_gather(kiln_network *net, kiln_tensor *data,
                                             kiln_tensor *indices, int axis);
/* Broadcast to `shape` (numpy rules, both ways, as ONNX Expand). */
KILN_API kiln_layer *kiln_network_add_expand(kiln_network *net, kiln_tensor *input,
                                             kiln_dims shape);
/* repeats has one value per input dimension. */
KILN_API kiln_layer *kiln_network_add_tile(kiln_network *net, kiln_tensor *input,
                                           const int64_t *repeats);
/* crd = 0: DCR mode, 1: CRD mode (DepthToSpace only). */
KILN_API kiln_layer *kiln_network_add_depth_to_space(kiln_network *net, kiln_tensor *input,
                                                     int64_t block, int crd);
KILN_API kiln_layer *kiln_network_add_space_to_depth(kiln_network *net, kiln_tensor *input,
                                                     int64_t block);

/* ---- resize ---- */

typedef enum kiln_resize_mode { KILN_RESIZE_NEAREST = 0, KILN_RESIZE_LINEAR = 1 } kiln_resize_mode;
typedef enum kiln_resize_coord {
    KILN_COORD_HALF_PIXEL = 0,
    KILN_COORD_ASYMMETRIC,
    KILN_COORD_PYTORCH_HALF_PIXEL,
    KILN_COORD_ALIGN_CORNERS,
    KILN_COORD_TF_HALF_PIXEL_FOR_NN
} kiln_resize_coord;
typedef enum kiln_resize_nearest {
    KILN_NEAREST_ROUND_PREFER_FLOOR = 0,
    KILN_NEAREST_ROUND_PREFER_CEIL,
    KILN_NEAREST_FLOOR,
    KILN_NEAREST_CEIL
} kiln_resize_nearest;

/* Output size: `sizes` when sizes.nb_dims > 0, else floor(in * scales[i]). When scales
 * are given they also define the coordinate mapping (as ONNX Resize); linear mode
 * interpolates over every axis whose size changes. */
typedef struct kiln_resize_desc {
    kiln_resize_mode mode;
    kiln_resize_coord coord;
    kiln_resize_nearest nearest;
    kiln_dims sizes;
    int32_t nb_scales;
    float scales[KILN_MAX_DIMS];
} kiln_resize_desc;

KILN_API kiln_layer *kiln_network_add_resize(kiln_network *net, kiln_tensor *input,
                                             const kiln_resize_desc *desc);

/* ---- softmax and reductions ---- */

KILN_API kiln_layer *kiln_network_add_softmax(kiln_network *net, kiln_tensor *input, int axis,
                                              int log);

typedef enum kiln_reduce_op {
    KILN_REDUCE_SUM = 0,
    KILN_REDUCE_MEAN,
    KILN_REDUCE_MAX,
    KILN_REDUCE_MIN,
    KILN_REDUCE_PROD,
    KILN_REDUCE_L1,
    KILN_REDUCE_L2,
    KILN_REDUCE_SUM_SQUARE,
    KILN_REDUCE_LOG_SUM,
    KILN_REDUCE_LOG_SUM_EXP
} kiln_reduce_op;
#define KILN_REDUCE_COUNT 10

/* axes NULL (nb_axes 0) reduces every axis. */
KILN_API kiln_layer *kiln_network_add_reduce(kiln_network *net, kiln_tensor *input,
                                             kiln_reduce_op op, int nb_axes, const int64_t *axes,
                                             int keep_dims);
/* Index of the max (is_min = 0) or min along axis, as int64. */
KILN_API kiln_layer *kiln_network_add_arg_reduce(kiln_network *net, kiln_tensor *input, int axis,
                                                 int keep_dims, int is_min, int select_last);

#ifdef __cplusplus
}
#endif
#endif
