/* kiln ONNX: TensorProto <-> host tensor conversion and the .pb tensor files of the
 * ONNX test data. Shared by the importer (initializers, Constant nodes), the
 * conformance runner and `kiln run`. */
#ifndef KILN_ONNX_TENSOR_IO_H
#define KILN_ONNX_TENSOR_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/types.h"
#include "onnx.pb-c.h"

/* ONNX TensorProto.DataType <-> kiln dtype; false for types kiln has no dtype for. */
bool ox_dtype_from_onnx(int32_t onnx_type, kiln_dtype *out);
int32_t ox_dtype_to_onnx(kiln_dtype dtype);
/* "FLOAT", "STRING", ... ("type 42" style text for unknown codes, in buf). */
const char *ox_onnx_type_name(int32_t onnx_type, char *buf, size_t size);

/* Decodes a tensor into a malloc'd buffer (*data; release with free()): raw_data, the
 * typed fields, or external data read from base_dir (NULL base_dir: external data is
 * refused). Paths in external data must stay inside base_dir. On failure returns the
 * status and writes a one-line reason (without the tensor name) into err. */
kiln_status ox_tensor_decode(const Onnx__TensorProto *tp, const char *base_dir, kiln_dtype *dtype, kiln_dims *dims,
                             void **data, char *err, size_t errsz);

/* protobuf-c unpacks sub-messages recursively, so a file nesting messages thousands
 * deep (graph -> node -> attribute -> graph ...) would overflow the stack. This walks
 * the wire format with the message descriptors and says whether nesting stays within
 * max_depth; malformed bytes pass (unpack reports them). */
bool ox_proto_depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, int max_depth);
#define OX_MAX_PROTO_DEPTH 100

/* Reads a whole file into a malloc'd buffer. */
kiln_status ox_read_whole_file(const char *path, void **data, size_t *size, char *err, size_t errsz);

/* Reads / writes a serialized TensorProto file. *name_out (nullable) is malloc'd. */
kiln_status ox_tensor_read_file(const char *path, char **name_out, kiln_dtype *dtype, kiln_dims *dims, void **data,
                                char *err, size_t errsz);
kiln_status ox_tensor_write_file(const char *path, const char *name, kiln_dtype dtype, kiln_dims dims, const void *data,
                                 char *err, size_t errsz);

#endif
