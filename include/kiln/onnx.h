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
