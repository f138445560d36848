/* kiln command line: what needs the ONNX importer (libkiln_onnx): a model's facts before
 * importing it (inputs with their symbolic dimensions, for choosing shapes), and .pb
 * tensor files. Without the importer (KILN_ONNX=OFF) each says so. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool have_onnx(void) {
#ifdef KILN_CLI_HAVE_ONNX
    return true;
#else
    return false;
#endif
}

bool model_info_read(const uint8_t *data, size_t size, kiln_onnx_model_info **out, char *err, size_t errsz) {
    *out = NULL;
#ifdef KILN_CLI_HAVE_ONNX
    if (kiln_onnx_read_model_info(data, size, out) == KILN_OK) return true;
    /* the caller names the file itself */
    snprintf(err, errsz, "%s", cli_strip_label(cli_last_error(), "<memory>"));
    return false;
#else
    (void)data;
    (void)size;
    snprintf(err, errsz, "this kiln was built without the ONNX importer (KILN_ONNX=OFF)");
    return false;
#endif
}

const char *model_dims_str(const kiln_onnx_value_info *v, char *buf, size_t size) {
    if (!v->has_shape) return snprintf(buf, size, "unknown"), buf;
    if (v->rank == 0) return snprintf(buf, size, "scalar"), buf;
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < v->rank && i < KILN_MAX_DIMS && at < size; i++) {
        if (v->dims[i] >= 0) at += (size_t)snprintf(buf + at, size - at, i ? "x%lld" : "%lld", (long long)v->dims[i]);
        else at += (size_t)snprintf(buf + at, size - at, i ? "x%s" : "%s", v->dim_names[i] ? v->dim_names[i] : "?");
    }
    if (v->rank > KILN_MAX_DIMS && at < size) snprintf(buf + at, size - at, "x...");
    return buf;
}

bool tensor_read_file(const char *path, host_tensor *out, char *err, size_t errsz) {
    memset(out, 0, sizeof *out);
    switch (cli_file_kind(path)) {
    case FILE_NPY: return npy_read(path, out, err, errsz);
    case FILE_PB: {
#ifdef KILN_CLI_HAVE_ONNX
        uint8_t *probe;
        size_t size;
        /* the library's message for a missing file is generic: say why first */
        if (!cli_read_file(path, &probe, &size, err, errsz)) return false;
        free(probe);
        char *name = NULL;
        if (kiln_onnx_read_tensor_file(path, &name, &out->dtype, &out->dims, &out->data) != KILN_OK) {
            snprintf(err, errsz, "%s", cli_last_error());
            return false;
        }
        out->name = name;
        return true;
#else
        snprintf(err, errsz, "reading .pb tensors needs the ONNX importer, which this kiln was built without");
        return false;
#endif
    }
    default: snprintf(err, errsz, "unknown file type (expected .npy, .pb, .png, .jpg or .jpeg)"); return false;
    }
}
