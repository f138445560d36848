/* kiln ONNX importer internals: the parser state, the table of ONNX values (each a
 * kiln tensor or a host constant) and the helpers the op mappers share. Protobuf types
 * appear here and in no public header. */
#ifndef KILN_ONNX_INTERNAL_H
#define KILN_ONNX_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/onnx.h"
#include "onnx.pb-c.h"

/* Opsets the importer understands for the default domain. Ops of versions before 7
 * (PyTorch's first exporter wrote opset 6) are read with their legacy attributes. */
#define OX_MIN_OPSET 1
#define OX_MAX_OPSET 17
/* IR versions: 3 introduced opset_import; 8 is ONNX 1.12's, 9 only adds types we reject. */
#define OX_MIN_IR 3
#define OX_MAX_IR 9

/* Folded constants are bounded so a hostile model cannot ask for unbounded memory. */
#define OX_MAX_CONST_BYTES ((int64_t)1 << 30)

/* A tensor held on the host: an initializer, a Constant node, or a folded result. */
typedef struct ox_const {
    kiln_dtype dtype;
    kiln_dims dims;
    int64_t count;
    void *data; /* owned by the parser (freed in kiln_onnx_parser_destroy) */
} ox_const;

/* One ONNX value (SSA name). Either `t` is set, or `is_const` (then `t` is created on
 * first use as a kiln constant layer), or `failed` (its producer was reported). */
typedef struct ox_value {
    char *name;
    kiln_tensor *t;
    bool is_const;
    ox_const c;
    bool failed;
    /* a model input this value is computed from (NULL: none), so "must be a
     * constant" errors can say which input would have to be frozen */
    const char *dep;
} ox_value;

/* How often a name is read (by nodes and as a graph output): the GELU matcher only
 * fuses values nobody else reads. */
typedef struct ox_use {
    const char *name;
    int uses;
    int consumer; /* index of the last node reading it */
    bool graph_output;
} ox_use;

struct kiln_onnx_parser {
    kiln_network *net;
    int nb_shapes;
    char **shape_names;
    kiln_dims *shapes;
    bool *shape_used;
    int nb_frozen;
    char **frozen_names;
    ox_const *frozen; /* copies owned through bufs */
    bool *frozen_used;

    char *label;    /* file name used in messages */
    char *base_dir; /* directory for external data, or NULL */
    bool parsed;

    /* every buffer handed to the network lives until destroy */
    void **bufs;
    int nb_bufs, cap_bufs;
    int64_t const_bytes; /* bytes of folded constants so far */
    int64_t const_limit;

    ox_value **values;
    int nb_values, cap_values;
    int *vhash; /* open addressing: index + 1, 0 empty */
    int vhash_cap;

    ox_use *uses;
    int nb_uses;
    int *uhash;
    int uhash_cap;

    char **errors;
    kiln_status *error_status;
    char **error_values; /* kiln_onnx_error_value: a model input to freeze, or NULL */
    int nb_errors, cap_errors;

    /* kiln tensors by name, for the importer's own lookups: the network's are linear
     * scans, which made naming every tensor quadratic in the model's size. Open
     * addressing over (hash of the name when inserted, tensor); an entry whose tensor
     * has since been renamed is stale and skipped. Layers the network gained since the
     * last lookup are added lazily (tnames_layers counts those already in). */
    kiln_tensor **tnames;
    uint32_t *tnames_hash;
    int tnames_cap, tnames_count, tnames_layers;
    bool tnames_started; /* the network's inputs from before the parser are in */
    bool tnames_broken;  /* out of memory once: the network's lookups instead */

    int opset; /* default-domain opset */
    int64_t ir_version;
    int tmp_counter; /* for unique internal tensor names */
    bool *skip;      /* nodes absorbed by a fused pattern */
};

typedef struct kiln_onnx_parser ox_parser;

/* The node being imported. */
typedef struct ox_node {
    ox_parser *p;
    const Onnx__NodeProto *n;
    const Onnx__GraphProto *g;
    int index;
    int opset;
    const char *name; /* node name, or "<op>_<index>" when the model gives none */
    char name_buf[96];
    ox_value **in; /* nin entries; NULL for an absent optional input */
    int nin;
    int nout;
} ox_node;

/* Result of a fold attempt. */
typedef enum ox_fold_result { OX_FOLD_DONE = 0, OX_FOLD_SKIP = 1, OX_FOLD_ERROR = 2 } ox_fold_result;

typedef kiln_status (*ox_map_fn)(ox_node *n);
typedef kiln_status (*ox_check_fn)(ox_node *n);
typedef ox_fold_result (*ox_fold_fn)(ox_node *n);

typedef struct ox_op {
    const char *name;
    ox_map_fn map;     /* adds layers */
    ox_check_fn check; /* nullable: attribute-level support check that needs no inputs */
    ox_fold_fn fold;   /* nullable: host evaluation when every input is constant */
} ox_op;

/* Op tables of each group (NULL-name terminated). */
extern const ox_op ox_ops_pointwise[];
extern const ox_op ox_ops_conv[];
extern const ox_op ox_ops_tensor[];
extern const ox_op ox_ops_reduce[];
extern const ox_op ox_ops_const[];

const ox_op *ox_find_op(const char *op_type);

/* ---- parser services ---- */

/* Caps the bytes of folded constants (default 4 GiB); the fuzz target lowers it. */
void ox_parser_set_const_limit(kiln_onnx_parser *p, int64_t bytes);

/* Records one problem line (formatted, prefixed with the file label). Returns status. */
kiln_status ox_error(ox_parser *p, kiln_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records a problem with the node: "file: node 'n' (Op, domain 'ai.onnx', opset v): ...". */
kiln_status ox_node_error(ox_node *n, kiln_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Same, for a value that must be a constant: `model_input` (nullable) is the model input
 * it is (or is computed from), reported by kiln_onnx_error_value. */
kiln_status ox_node_error_value(ox_node *n, const char *model_input, kiln_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A layer call failed: records the node error with kiln_last_error() as the reason. */
kiln_status ox_layer_failed(ox_node *n, const char *what);

/* Parser-owned allocation (zeroed); NULL on failure. Freed at destroy. */
void *ox_alloc(ox_parser *p, size_t bytes);
/* Takes ownership of a malloc'd buffer; frees it and returns false on failure. */
bool ox_adopt(ox_parser *p, void *buf);
/* A new constant of dims, zeroed; checks the size limit. On failure records a node error. */
kiln_status ox_const_new(ox_node *n, kiln_dtype dtype, kiln_dims dims, ox_const *out);

ox_value *ox_find_value(ox_parser *p, const char *name);
/* Creates a value (name copied). NULL when the name exists already or on OOM. */
ox_value *ox_new_value(ox_parser *p, const char *name);
const ox_use *ox_find_use(const ox_parser *p, const char *name);

/* The network's tensor of that name, or NULL (the parser's index, not a network scan). */
kiln_tensor *ox_find_tensor(ox_parser *p, const char *name);
/* Adds a tensor the parser created outside a layer (a network input) to the index. */
void ox_index_tensor(ox_parser *p, kiln_tensor *t);
/* Unique name for an internal tensor and the rename. */
kiln_status ox_name_internal(ox_parser *p, kiln_tensor *t);
/* Gives t the name, moving an internal tensor that holds it out of the way. */
kiln_status ox_bind_name(ox_parser *p, kiln_tensor *t, const char *name);

/* ---- node helpers (ox_node.c) ---- */

const Onnx__AttributeProto *ox_attr(const ox_node *n, const char *name);
int64_t ox_attr_i(const ox_node *n, const char *name, int64_t def);
float ox_attr_f(const ox_node *n, const char *name, float def);
/* String attribute copied into buf (truncated); def when absent. */
const char *ox_attr_s(const ox_node *n, const char *name, const char *def, char *buf, size_t size);
/* Integer list: count written to *nb (0 when absent). Error if more than max entries. */
kiln_status ox_attr_ints(ox_node *n, const char *name, int64_t *out, int max, int *nb);
kiln_status ox_attr_floats(ox_node *n, const char *name, float *out, int max, int *nb);

/* Input i present (non-empty name)? */
static inline bool ox_has_in(const ox_node *n, int i) { return i < n->nin && n->in[i] != NULL; }
/* Constant input i, or NULL (absent or not constant). */
const ox_const *ox_in_const(const ox_node *n, int i);
/* Kiln tensor of input i, creating a constant layer for a host constant. Records an
 * error and returns NULL on failure (or if absent). */
kiln_tensor *ox_in_tensor(ox_node *n, int i);
/* Input i must be a constant: its values as int64 (at most max). Records an error
 * naming the input otherwise. */
kiln_status ox_in_ints(ox_node *n, int i, const char *what, int64_t *out, int max, int *nb);
/* Records "input 'what' must be a constant, but value 'name' is computed at run time",
 * with the model input behind it as the error's value (kiln_onnx_error_value), which the
 * backend-test runner freezes. */
kiln_status ox_not_const(ox_node *n, int i, const char *what);
/* Same for a scalar (or one-element) float constant. */
kiln_status ox_in_scalar_f(ox_node *n, int i, const char *what, double *out);

/* dtype and dims of an input, from its constant or its tensor. Dims nb_dims = -1 when
 * unknown. */
kiln_dtype ox_in_dtype(const ox_node *n, int i);
kiln_dims ox_in_dims(const ox_node *n, int i);
/* Input dims that must be fully known (records an error otherwise). */
kiln_status ox_in_known_dims(ox_node *n, int i, kiln_dims *out);

/* Binds output i to a layer output just created (names it) or to an existing tensor
 * (alias: keeps its name; the final pass adds identity layers for graph outputs). */
kiln_status ox_set_out(ox_node *n, int i, kiln_tensor *t);
kiln_status ox_set_alias(ox_node *n, int i, kiln_tensor *t);
kiln_status ox_set_const(ox_node *n, int i, const ox_const *c);
/* Output i exists and is read by something? */
bool ox_out_used(const ox_node *n, int i);

/* Names a helper layer "node/suffix" and its outputs with internal names. */
kiln_status ox_aux_layer(ox_node *n, kiln_layer *l, const char *suffix);
/* Names the node's main layer (outputs are named by ox_set_out). */
kiln_status ox_main_layer(ox_node *n, kiln_layer *l);

/* A scalar/array constant tensor of dtype with the given values, as a kiln tensor. */
kiln_tensor *ox_const_tensor(ox_node *n, kiln_dtype dtype, kiln_dims dims, const double *values, const char *suffix);
kiln_tensor *ox_scalar_tensor(ox_node *n, kiln_dtype dtype, double v, const char *suffix);
/* Helper layers on tensors (named node/suffix); NULL and error recorded on failure. */
kiln_tensor *ox_reshape(ox_node *n, kiln_tensor *t, kiln_dims shape, const char *suffix);
kiln_tensor *ox_elt(ox_node *n, kiln_tensor *a, kiln_tensor *b, kiln_elementwise_op op, const char *suffix);
kiln_tensor *ox_cast(ox_node *n, kiln_tensor *t, kiln_dtype to, const char *suffix);

/* ---- host constants (ox_const.c) ---- */

double ox_get_f(const ox_const *c, int64_t i);
int64_t ox_get_i(const ox_const *c, int64_t i);
void ox_set_f(ox_const *c, int64_t i, double v);
void ox_set_i(ox_const *c, int64_t i, int64_t v);
bool ox_dtype_is_float(kiln_dtype t);
float ox_half_to_float(uint16_t h);
uint16_t ox_float_to_half(float f);
float ox_bf16_to_float(uint16_t h);
uint16_t ox_float_to_bf16(float f);
/* Converts every element into dst (same count). */
void ox_const_convert(const ox_const *src, ox_const *dst);

/* numpy broadcasting on the host: maps output element i to the element of `in`. */
typedef struct ox_bcast {
    int rank;
    int64_t out_d[KILN_MAX_DIMS];
    int64_t in_stride[KILN_MAX_DIMS]; /* 0 along broadcast axes */
} ox_bcast;
void ox_bcast_init(ox_bcast *b, const kiln_dims *out, const kiln_dims *in);
int64_t ox_bcast_index(const ox_bcast *b, int64_t i);
/* Row-major strides of dims. */
void ox_strides(const kiln_dims *d, int64_t *strides);

/* ---- shared small helpers ---- */

/* "1x3x224x224" */
const char *ox_dims_str(const kiln_dims *d, char *buf, size_t size);
int64_t ox_volume(const kiln_dims *d);
bool ox_broadcast(const kiln_dims *a, const kiln_dims *b, kiln_dims *out);
/* Normalises an axis against rank; -1 if out of range. */
static inline int ox_axis(int64_t axis, int rank) {
    if (axis < -rank || axis >= rank) return -1;
    return (int)(axis < 0 ? axis + rank : axis);
}

#endif
