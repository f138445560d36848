/* kiln internal: the network IR. kiln_network (the public handle) is a graph whose
 * weights are borrowed from the user; the builder deep-copies it into an owned graph
 * that optimisation passes rewrite and the engine keeps. */
#ifndef KILN_GRAPH_GRAPH_H
#define KILN_GRAPH_GRAPH_H

#include "core/common.h"
#include "kiln/network.h"

/* Per-layer attributes. Arrays with a rank index hold KILN_MAX_DIMS entries. */
typedef struct kg_act_params { kiln_activation_type type; float alpha, beta; } kg_act_params;
typedef struct kg_scale_params { kiln_scale_mode mode; } kg_scale_params; /* w: shift, scale, power */
typedef enum kg_shuffle_kind {
    KG_SHUFFLE_RESHAPE = 0,
    KG_SHUFFLE_FLATTEN,
    KG_SHUFFLE_SQUEEZE,
    KG_SHUFFLE_UNSQUEEZE
} kg_shuffle_kind;
typedef struct kg_shuffle_params {
    kg_shuffle_kind kind;
    kiln_dims shape;   /* reshape target (0 and -1 allowed) */
    int allow_zero;
    int axis;          /* flatten */
    int nb_axes;       /* squeeze/unsqueeze; squeeze with nb_axes = 0: all size-1 axes */
    int64_t axes[KILN_MAX_DIMS];
} kg_shuffle_params;
typedef struct kg_slice_params {
    int nb;
    int64_t starts[KILN_MAX_DIMS], ends[KILN_MAX_DIMS], axes[KILN_MAX_DIMS], steps[KILN_MAX_DIMS];
} kg_slice_params;
typedef struct kg_transpose_params { int nb; int64_t perm[KILN_MAX_DIMS]; } kg_transpose_params;
typedef struct kg_pad_params {
    int64_t pads[2 * KILN_MAX_DIMS]; /* rank begins, then rank ends */
    kiln_pad_mode mode;
    float value;
} kg_pad_params;
typedef struct kg_axis_params { int axis; } kg_axis_params; /* concat, gather */
typedef struct kg_split_params { int axis; int nb_outputs; } kg_split_params; /* sizes in layer->aux */
typedef struct kg_softmax_params { int axis; int log; } kg_softmax_params;
typedef struct kg_reduce_params {
    kiln_reduce_op op;
    int nb_axes; /* 0: all */
    int64_t axes[KILN_MAX_DIMS];
    int keep_dims;
} kg_reduce_params;
typedef struct kg_arg_params { int axis, keep_dims, is_min, select_last; } kg_arg_params;
typedef struct kg_expand_params { kiln_dims shape; } kg_expand_params;
typedef struct kg_tile_params { int64_t repeats[KILN_MAX_DIMS]; } kg_tile_params;
typedef struct kg_d2s_params { int64_t block; int crd; } kg_d2s_params;
typedef struct kg_norm_params { float epsilon; } kg_norm_params; /* instance norm; w: scale, bias */
typedef struct kg_lrn_params { int64_t size; float alpha, beta, bias; } kg_lrn_params;
typedef struct kg_cast_params { kiln_dtype to; } kg_cast_params;
/* reformat: the output's storage type and format (the input's are on its tensor) */
typedef struct kg_reformat_params { int storage; int format; } kg_reformat_params;

typedef union kg_params {
    kiln_conv_desc conv;   /* convolution, deconvolution; w: kernel, bias */
    kiln_pool_desc pool;
    kg_act_params act;
    kg_scale_params scale;
    kiln_elementwise_op elt;
    kiln_unary_op unary;
    kiln_gemm_desc gemm;
    kg_shuffle_params shuffle;
    kg_slice_params slice;
    kg_transpose_params transpose;
    kg_pad_params pad;
    kg_axis_params axis;
    kg_split_params split;
    kg_softmax_params softmax;
    kg_reduce_params reduce;
    kg_arg_params arg;
    kg_expand_params expand;
    kg_tile_params tile;
    kg_d2s_params d2s;
    kg_norm_params norm;
    kg_lrn_params lrn;
    kg_cast_params cast;
    kg_reformat_params reformat;
    kiln_resize_desc resize;
    kiln_dims constant;    /* constant: output dims; w[0]: values */
} kg_params;

#define KG_MAX_WEIGHTS 4

typedef struct kiln_graph kiln_graph;

struct kiln_tensor {
    kiln_graph *graph;
    int id;               /* index in graph->tensors */
    char *name;
    kiln_dtype dtype;
    kiln_dims dims;       /* nb_dims = -1 until inferred */
    kiln_layer *producer; /* NULL for network inputs */
    int producer_index;   /* which output of the producer */
    bool is_input, is_output;
    /* Physical representation, chosen by the builder's format pass for device kernels:
     * the element type in memory (KG_STORAGE_SAME: as dtype) and the layout of a 4-D
     * tensor (KG_FORMAT_LINEAR: row-major in logical order; KG_FORMAT_NHWC: channels
     * last). dtype and dims stay logical, so inference is unaffected. */
    int storage;
    int format;
    /* Channels-last tensors placed in a channel slice of a concat's output (the memory
     * planner, place_concat_inputs): elements from one pixel's channels to the next's (the
     * concat output's channel count); 0: dense. Only kernels whose backend accepts it
     * (kb_backend.pitch_ok) ever see a pitched tensor. */
    int64_t pitch;
};

#define KG_STORAGE_SAME (-1)
enum { KG_FORMAT_LINEAR = 0, KG_FORMAT_NHWC = 1 };

/* The element type a tensor has in memory. */
static inline kiln_dtype kg_storage(const kiln_tensor *t) {
    return t->storage == KG_STORAGE_SAME ? t->dtype : (kiln_dtype)t->storage;
}
/* Row-major element strides of dims d (the last axis 1). */
static inline void kg_row_major(const kiln_dims *d, int64_t *s) {
    int64_t v = 1;
    for (int k = d->nb_dims - 1; k >= 0; k--) {
        s[k] = v;
        v *= d->d[k];
    }
}
/* Bytes a tensor takes in memory. */
static inline size_t kg_tensor_bytes(const kiln_tensor *t) {
    int64_t v = kiln_dims_volume(&t->dims);
    return v < 0 ? 0 : (size_t)v * kiln_dtype_size(kg_storage(t));
}

struct kiln_layer {
    kiln_graph *graph;
    int id; /* index in graph->layers */
    char *name;
    kiln_layer_type type;
    int nb_inputs, nb_outputs;
    kiln_tensor **inputs;  /* an optional input may be NULL */
    kiln_tensor **outputs;
    kg_params p;
    kiln_weights w[KG_MAX_WEIGHTS]; /* count 0: absent */
    bool w_owned[KG_MAX_WEIGHTS];   /* values allocated by the graph (freed with it) */
    int64_t *aux;                   /* variable-length attribute data (split sizes), owned */
    int nb_aux;
    /* Set by optimisation passes (src/opt): an activation applied to output 0 by the
     * layer's own kernel (convolution, gemm), and a layer folded into another. */
    bool has_post_act;
    kg_act_params post_act;
    bool removed; /* folded away: produces nothing, runs nothing */
    /* convolution: inputs[1] (when nb_inputs == 2) is a residual added after the bias and
     * before post_act, or after post_act when res_after_act; set by the residual passes */
    bool res_after_act;
    bool weights_rewritten; /* a pass changed w[] (folding): not refittable */
    bool pin_fp32;          /* the config pins it to float32: the format pass leaves it logical */
    bool tf32_ok;           /* float32 only for range (FP16 build): TF32 math allowed; plan flag 8 */
};

struct kiln_graph {
    kiln_env env;
    kiln_tensor **tensors;
    int nb_tensors, cap_tensors;
    /* name -> tensor: open addressing, linear probing; KG_INDEX_GONE marks removed slots */
    kiln_tensor **index;
    int index_cap, index_used; /* used counts live entries and removed slots */
    kiln_layer **layers; /* in insertion order, which is topological */
    int nb_layers, cap_layers;
    kiln_tensor **inputs;
    int nb_inputs, cap_inputs;
    kiln_tensor **outputs;
    int nb_outputs, cap_outputs;
};

/* The public network handle. */
struct kiln_network {
    kiln_graph g;
    bool built; /* weights are borrowed until the first build: a second one is refused */
};

void kg_graph_init(kiln_graph *g, const kiln_env *env);
void kg_graph_free(kiln_graph *g);
/* Deep copy: every weight copied into owned memory. */
kiln_status kg_graph_clone(const kiln_graph *src, const kiln_env *env, kiln_graph *dst);

/* Creates a tensor (name copied; NULL name: generated). Returns NULL on out of memory. */
kiln_tensor *kg_tensor_new(kiln_graph *g, const char *name, kiln_dtype dtype, kiln_dims dims);
/* The tensor of that name (the first created, if several share it), or NULL. */
kiln_tensor *kg_find_tensor(const kiln_graph *g, const char *name);
/* Renames a tensor (name copied), keeping the name index right. */
kiln_status kg_tensor_rename(kiln_tensor *t, const char *name);

/* Appends a layer with the given inputs, creating nb_outputs tensors and copying params.
 * Does not infer shapes. Returns NULL (message set) on out of memory. */
kiln_layer *kg_layer_new(kiln_graph *g, kiln_layer_type type, kiln_tensor *const *inputs,
                         int nb_inputs, int nb_outputs, const kg_params *params);
/* Removes the last layer added (and its outputs), used when add-time validation fails. */
void kg_layer_pop(kiln_graph *g);

/* Runs shape and dtype inference for one layer (when its inputs are known).
 * On failure the message names the layer. */
kiln_status kg_infer_layer(kiln_layer *l);

/* Reports a problem with a layer: "layer 'name' (Type): <message>". */
kiln_status kg_layer_error(const kiln_layer *l, kiln_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Normalises a possibly negative axis against rank; -1 if out of range. */
static inline int kg_axis(int64_t axis, int rank) {
    if (axis < -rank || axis >= rank) return -1;
    return (int)(axis < 0 ? axis + rank : axis);
}

#endif
