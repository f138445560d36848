/* kiln: ONNX importer. Fills a kiln_network from an ONNX model (opsets 7-17, as
 * PyTorch exports them). Its own library (libkiln_onnx); protobuf types never appear
 * here and the runtime does not depend on protobuf.
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

/* Options. Start with KILN_ONNX_DESC_INIT. */
typedef struct kiln_onnx_desc {
    uint32_t size; /* sizeof(kiln_onnx_desc) */
    /* Concrete shapes for model inputs whose dimensions are symbolic or -1
     * (nb_shapes entries); other inputs keep the model's shape. */
    int nb_shapes;
    const char *const *shape_names;
    const kiln_dims *shapes;
} kiln_onnx_desc;
#define KILN_ONNX_DESC_INIT {sizeof(kiln_onnx_desc), 0, NULL, NULL}

/* desc may be NULL. The parser adds to `net`, which must outlive it. */
KILN_API kiln_status kiln_onnx_parser_create(kiln_network *net, const kiln_onnx_desc *desc,
                                             kiln_onnx_parser **out);
KILN_API void kiln_onnx_parser_destroy(kiln_onnx_parser *parser);

/* Parses a model file; external data files are looked up next to it. On failure every
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

#ifdef __cplusplus
}
#endif
#endif
