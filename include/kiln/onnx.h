/* kiln: ONNX importer. Fills a kiln_network from an ONNX model (opsets 7-17 as PyTorch
 * and torchvision export them; older opsets are read too). Its own library
 * (libkiln_onnx); protobuf types never appear here and the runtime does not depend on
 * protobuf. Shape computations (Shape -> Gather -> Concat -> Reshape ...) are folded at
 * import, so every shape, axes or pads argument must be known then: constant, computed
 * from constants and input shapes, or a frozen input (kiln_onnx_desc).
 *
 * Use, like TensorRT's ONNX parser:
 *   kiln_onnx_parser *p;  kiln_onnx_parser_create(net, NULL, &p);
 *   if (kiln_onnx_parse_file(p, "model.onnx") != KILN_OK) { print the errors }
 *   kiln_builder_build(builder, net, config, &engine);
 *   kiln_onnx_parser_destroy(p);     // after the build: it owns the weights
 *
 * Ownership: the parser owns the weight memory the network borrows, so it must be
 * destroyed after kiln_builder_build (or after the network, if never built). */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include "kiln/network.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_onnx_parser kiln_onnx_parser;

/* Options. Start with KILN_ONNX_DESC_INIT; `size` says which fields the caller has. */
typedef struct kiln_onnx_desc {
    uint32_t size; /* sizeof(kiln_onnx_desc) */
    /* Concrete shapes for model inputs whose dimensions are symbolic or -1
     * (nb_shapes entries); other inputs keep the model's shape. A model input with a
     * symbolic dimension and no entry here is an error naming it; so is an entry that
     * contradicts a fixed dimension, or names no input. */
    int nb_shapes;
    const char *const *shape_names;
    const kiln_dims *shapes;
    /* Model inputs to freeze: each named graph input becomes a constant holding
     * frozen_values[i] (of dims frozen_dims[i], the model's dtype) instead of a network
     * input, as if it were an initializer. For models that take a shape, axes or weights
     * as an input: kiln needs those at import. Values are copied while parsing. */
    int nb_frozen;
    const char *const *frozen_names;
    const kiln_dims *frozen_dims;
    const kiln_weights *frozen_values;
} kiln_onnx_desc;
#define KILN_ONNX_DESC_INIT {sizeof(kiln_onnx_desc), 0, NULL, NULL, 0, NULL, NULL, NULL}

/* desc may be NULL (its arrays are copied). The parser adds to `net` while parsing only;
 * the network borrows the parser's weights until it is built. */
KILN_API kiln_status kiln_onnx_parser_create(kiln_network *net, const kiln_onnx_desc *desc,
                                             kiln_onnx_parser **out);
KILN_API void kiln_onnx_parser_destroy(kiln_onnx_parser *parser);

/* A parser reads one model: a second parse call returns KILN_ERR_INVALID_STATE.
 * Names: each ONNX value becomes the kiln tensor of the same name, so inputs and outputs
 * bind by their ONNX names. Graph inputs that are also initializers are constants.
 * Opsets 1 to 17 of the default domain are read (IR versions 3 to 9); ops of opsets
 * before 7 keep their legacy meaning (broadcast attributes, attribute-style inputs).
 * Host buffers the parser hands to the network (weights, folded constants) are plain
 * malloc allocations owned by the parser.
 *
 * Parses a model file; external data files are looked up next to it. On failure every
 * problem found (each unsupported node, not just the first) is listed by
 * kiln_onnx_num_errors/kiln_onnx_error, and kiln_last_error() holds a summary. */
KILN_API kiln_status kiln_onnx_parse_file(kiln_onnx_parser *parser, const char *path);
/* Parses a model held in memory; base_dir (nullable) locates external data. The bytes
 * are only read during the call. */
KILN_API kiln_status kiln_onnx_parse_memory(kiln_onnx_parser *parser, const void *data, size_t size,
                                            const char *base_dir);

KILN_API int kiln_onnx_num_errors(const kiln_onnx_parser *parser);
/* One line per problem: node name, op type, domain, opset and why. NULL when out of range. */
KILN_API const char *kiln_onnx_error(const kiln_onnx_parser *parser, int index);
/* The status of problem `index`: KILN_ERR_UNSUPPORTED when the model is valid but uses
 * something kiln cannot import (an op, attribute value, dtype, data-dependent shape);
 * KILN_ERR_FORMAT / KILN_ERR_IO for a corrupt file or missing data; KILN_OK when out
 * of range. */
KILN_API kiln_status kiln_onnx_error_status(const kiln_onnx_parser *parser, int index);
/* For a problem "input X of node N must be a constant" whose value is a model input or is
 * computed from one: the name of that model input, which kiln_onnx_desc.frozen_names
 * could freeze so that the import succeeds. NULL for any other problem or when index is
 * out of range. Valid while the parser lives. */
KILN_API const char *kiln_onnx_error_value(const kiln_onnx_parser *parser, int index);

/* ---- model facts, read without importing ---- */

/* What a graph input or output is. Append-only. */
typedef enum kiln_onnx_value_kind {
    KILN_ONNX_VALUE_TENSOR = 0, /* a tensor, or a value whose type the model does not give */
    KILN_ONNX_VALUE_SEQUENCE = 1,
    KILN_ONNX_VALUE_MAP = 2,
    KILN_ONNX_VALUE_OPTIONAL = 3,
    KILN_ONNX_VALUE_SPARSE_TENSOR = 4,
    KILN_ONNX_VALUE_OTHER = 5
} kiln_onnx_value_kind;

/* A graph input or output as the model declares it. */
typedef struct kiln_onnx_value_info {
    const char *name;
    kiln_onnx_value_kind kind;
    int32_t onnx_type;     /* element type, an onnx.TensorProto.DataType code; 0 when not given */
    const char *type_name; /* "float32", "int64", "string", "undefined" ... ("?" for unknown codes) */
    int dtype_known;       /* nonzero when kiln has a dtype for the elements: then */
    kiln_dtype dtype;
    int has_shape; /* 0: the model gives no shape (any rank) */
    int rank;      /* may exceed KILN_MAX_DIMS; only the first KILN_MAX_DIMS are described */
    int64_t dims[KILN_MAX_DIMS];          /* -1: symbolic or unknown */
    const char *dim_names[KILN_MAX_DIMS]; /* name of a symbolic dimension ("batch"), or NULL */
} kiln_onnx_value_info;

typedef struct kiln_onnx_opset {
    const char *domain; /* "ai.onnx" for the default domain */
    int64_t version;
} kiln_onnx_opset;

typedef struct kiln_onnx_op_count {
    const char *domain; /* "ai.onnx" for the default domain */
    const char *op_type;
    int count;
} kiln_onnx_op_count;

/* Facts about a model, for tools that must choose input shapes before importing or that
 * describe a model (kiln inspect). Allocated by kiln; read-only for the caller; fields
 * may be appended. Strings are never NULL ("" when the model has none), except
 * dim_names entries. */
typedef struct kiln_onnx_model_info {
    int64_t ir_version; /* 0 when absent */
    const char *producer_name;
    const char *producer_version;
    const char *graph_name;
    int nb_opsets;
    const kiln_onnx_opset *opsets; /* in model order */
    /* graph inputs that are not initializers, then the graph outputs, in model order */
    int nb_inputs;
    const kiln_onnx_value_info *inputs;
    int nb_outputs;
    const kiln_onnx_value_info *outputs;
    int nb_nodes;
    int nb_ops;
    const kiln_onnx_op_count *ops; /* one per (domain, op type): most frequent first, then by name */
    int nb_initializers;
    int64_t initializer_bytes; /* declared size of the initializers (saturates at INT64_MAX) */
} kiln_onnx_model_info;

/* Reads the facts of a model held in memory (the bytes are only read during the call).
 * Bytes that do not decode as an ONNX model give KILN_ERR_FORMAT with the reason in
 * kiln_last_error() ("<memory>: ..."). Nothing is imported, so unsupported ops and
 * symbolic shapes are fine. Release *out with kiln_onnx_model_info_destroy. */
KILN_API kiln_status kiln_onnx_read_model_info(const void *data, size_t size, kiln_onnx_model_info **out);
/* Same for a file; messages start with its path. */
KILN_API kiln_status kiln_onnx_read_model_info_file(const char *path, kiln_onnx_model_info **out);
KILN_API void kiln_onnx_model_info_destroy(kiln_onnx_model_info *info);

/* ---- ONNX backend tests: model.onnx and test_data_set_N/{input,output}_K.pb ---- */

typedef enum kiln_onnx_test_result {
    KILN_ONNX_TEST_PASS = 0,
    KILN_ONNX_TEST_FAIL = 1,
    KILN_ONNX_TEST_SKIP = 2 /* kiln reported only unsupported constructs (or unsupported data types) */
} kiln_onnx_test_result;

/* How to run a test. Start with KILN_ONNX_TEST_DESC_INIT; `size` lets the struct grow. */
typedef struct kiln_onnx_test_desc {
    uint32_t size; /* sizeof(kiln_onnx_test_desc) */
    kiln_device device;
    /* element-wise check |got - want| <= atol + rtol * |want|; < 0: ONNX's defaults (rtol 1e-3,
     * atol 1e-7; float16 2e-3 and 1e-4; bfloat16 1e-2 and 1e-3). NaN must match NaN, an
     * infinity the same infinity, integers exactly. */
    double rtol, atol;
    /* > 0: floating outputs are checked by ||got - want|| / ||want|| <= rel_l2 instead,
     * which suits deep models whose near-zero outputs defeat element-wise tolerances */
    double rel_l2;
    /* nonzero: a model input the importer needs as a constant (kiln_onnx_error_value) is
     * frozen to the test data's value when every data set holds the same value, and the
     * import is retried */
    int freeze;
    /* nonzero: the test runs in a child process (fork), so that a crash, or a hang past
     * timeout_s (0: no limit), fails this test alone */
    int isolate;
    int timeout_s;
    /* the builds' log (NULL: silent) */
    kiln_log_fn log;
    void *log_user;
    kiln_log_level log_level;
} kiln_onnx_test_desc;
#define KILN_ONNX_TEST_DESC_INIT \
    {sizeof(kiln_onnx_test_desc), KILN_DEVICE_CPU, -1.0, -1.0, 0.0, 1, 0, 0, NULL, NULL, KILN_LOG_ERROR}

/* Runs the backend test in directory `dir`: every input_K.pb feeds the model input of its
 * tensor name (else the K-th input), every output_K.pb is compared with the engine's
 * output of its name (else the K-th). *result gets the outcome; message (message_size
 * bytes, nullable) one line: why it failed or was skipped, or on a pass the inputs that
 * were frozen ("" when none); *nb_frozen (nullable) their number. Returns KILN_OK when
 * the test ran, whatever its outcome; KILN_ERR_INVALID_ARGUMENT for a bad argument. */
KILN_API kiln_status kiln_onnx_test_run(const char *dir, const kiln_onnx_test_desc *desc,
                                        kiln_onnx_test_result *result, int *nb_frozen, char *message,
                                        size_t message_size);

/* The backend tests under `path`: path itself when it holds model.onnx, else each of its
 * subdirectories that does, sorted by name. *dirs (an array of *count paths, all
 * malloc'd) is released with kiln_onnx_test_list_free. A path that is not a directory
 * gives KILN_ERR_IO. */
KILN_API kiln_status kiln_onnx_test_list(const char *path, char ***dirs, int *count);
KILN_API void kiln_onnx_test_list_free(char **dirs, int count);

/* ---- tensor files: a serialized onnx.TensorProto, as in the ONNX test data ---- */

/* Reads a .pb tensor file. On success *data holds the elements (contiguous, row-major,
 * little-endian; bools one byte each) and *name_out (if name_out is not NULL) the
 * tensor's name or NULL when it has none. Both are allocated with plain malloc: the
 * caller releases them with free(). External data is looked up next to the file.
 * Types kiln has no dtype for (string, uint16, complex...) give KILN_ERR_UNSUPPORTED. */
KILN_API kiln_status kiln_onnx_read_tensor_file(const char *path, char **name_out, kiln_dtype *dtype,
                                                kiln_dims *dims, void **data);
/* Writes `data` (volume(dims) elements of dtype) as a TensorProto with raw_data.
 * name may be NULL. */
KILN_API kiln_status kiln_onnx_write_tensor_file(const char *path, const char *name, kiln_dtype dtype,
                                                 kiln_dims dims, const void *data);

#ifdef __cplusplus
}
#endif
#endif
