/* kiln command line: facts about an ONNX model read straight from its protobuf (inputs
 * with their symbolic dimensions, outputs, opsets, op counts), which the importer's
 * public API does not give: the tool needs them to pick input shapes before importing,
 * and `kiln inspect` prints them. Uses the C code protoc-c generates for the importer. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef KILN_CLI_HAVE_ONNX
#include "kiln/onnx.h"
#include "onnx.pb-c.h"
#endif

bool have_onnx(void) {
#ifdef KILN_CLI_HAVE_ONNX
    return true;
#else
    return false;
#endif
}

const char *onnx_type_name(int t) {
    static const char *names[] = {"undefined", "float32", "uint8",  "int8",      "uint16",     "int16",
                                  "int32",     "int64",   "string", "bool",      "float16",    "float64",
                                  "uint32",    "uint64",  "complex64", "complex128", "bfloat16"};
    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "?";
}

#ifdef KILN_CLI_HAVE_ONNX
static bool onnx_dtype(int t, kiln_dtype *out) {
    switch (t) {
    case 1: *out = KILN_FLOAT32; return true;
    case 2: *out = KILN_UINT8; return true;
    case 3: *out = KILN_INT8; return true;
    case 6: *out = KILN_INT32; return true;
    case 7: *out = KILN_INT64; return true;
    case 9: *out = KILN_BOOL; return true;
    case 10: *out = KILN_FLOAT16; return true;
    case 11: *out = KILN_FLOAT64; return true;
    case 16: *out = KILN_BFLOAT16; return true;
    default: return false;
    }
}

static int onnx_type_size(int t) {
    switch (t) {
    case 2: case 3: case 9: return 1;
    case 4: case 5: case 10: case 16: return 2;
    case 1: case 6: case 12: return 4;
    case 7: case 11: case 13: case 14: return 8;
    case 15: return 16;
    default: return 0;
    }
}
#endif

void model_info_free(model_info *mi) {
    free(mi->producer);
    free(mi->graph_name);
    for (int i = 0; i < mi->nb_opsets; i++) free(mi->opset_domain[i]);
    for (int i = 0; i < mi->nb_inputs + mi->nb_outputs; i++) {
        model_value *v = i < mi->nb_inputs ? &mi->inputs[i] : &mi->outputs[i - mi->nb_inputs];
        free(v->name);
        for (int k = 0; k < KILN_MAX_DIMS; k++) free(v->dim_names[k]);
    }
    for (int i = 0; i < mi->nb_ops; i++) {
        free(mi->ops[i].domain);
        free(mi->ops[i].op);
    }
    free(mi->ops);
    memset(mi, 0, sizeof *mi);
}

#ifdef KILN_CLI_HAVE_ONNX
static char *dup_or(const char *s, const char *fallback) { return strdup(s && *s ? s : fallback); }

static void read_value(const Onnx__ValueInfoProto *vi, model_value *v) {
    memset(v, 0, sizeof *v);
    v->name = dup_or(vi->name, "");
    const Onnx__TypeProto *t = vi->type;
    v->is_tensor = !t || t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || t->value_case == ONNX__TYPE_PROTO__VALUE__NOT_SET;
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type) return;
    const Onnx__TypeProto__Tensor *tt = t->tensor_type;
    v->elem_type = tt->elem_type;
    v->dtype_ok = onnx_dtype(tt->elem_type, &v->dtype);
    if (!tt->shape) return;
    v->has_shape = true;
    v->rank = (int)(tt->shape->n_dim > KILN_MAX_DIMS ? KILN_MAX_DIMS + 1 : tt->shape->n_dim);
    for (size_t k = 0; k < tt->shape->n_dim && k < KILN_MAX_DIMS; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        v->dims[k] = -1;
        if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0)
            v->dims[k] = d->dim_value;
        else if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param)
            v->dim_names[k] = strdup(d->dim_param);
    }
}

static int cmp_ops(const void *a, const void *b) {
    const model_op_count *x = a, *y = b;
    if (x->count != y->count) return y->count - x->count;
    return strcmp(x->op, y->op);
}
#endif

bool model_info_read(const uint8_t *data, size_t size, model_info *mi, char *err, size_t errsz) {
    memset(mi, 0, sizeof *mi);
#ifdef KILN_CLI_HAVE_ONNX
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, size, data);
    if (!m) {
        snprintf(err, errsz, "not an ONNX model, or a truncated one (the protobuf does not decode)");
        return false;
    }
    if (!m->graph) {
        onnx__model_proto__free_unpacked(m, NULL);
        snprintf(err, errsz, "not an ONNX model (no graph)");
        return false;
    }
    const Onnx__GraphProto *g = m->graph;
    mi->ir_version = m->has_ir_version ? m->ir_version : 0;
    char prod[512];
    const char *pn = m->producer_name ? m->producer_name : "", *pv = m->producer_version ? m->producer_version : "";
    snprintf(prod, sizeof prod, "%s%s%s", pn, *pn && *pv ? " " : "", pv);
    mi->producer = strdup(prod);
    mi->graph_name = dup_or(g->name, "");
    for (size_t i = 0; i < m->n_opset_import && mi->nb_opsets < 32; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        mi->opset_domain[mi->nb_opsets] = dup_or(o->domain, "ai.onnx");
        mi->opset_version[mi->nb_opsets++] = o->has_version ? o->version : 0;
    }
    for (size_t i = 0; i < g->n_input && mi->nb_inputs < CLI_MAX_IO; i++) {
        const char *name = g->input[i]->name;
        bool init = false;
        for (size_t k = 0; k < g->n_initializer && !init; k++)
            init = g->initializer[k]->name && name && strcmp(g->initializer[k]->name, name) == 0;
        if (!init) read_value(g->input[i], &mi->inputs[mi->nb_inputs++]);
    }
    for (size_t i = 0; i < g->n_output && mi->nb_outputs < CLI_MAX_IO; i++) read_value(g->output[i], &mi->outputs[mi->nb_outputs++]);
    mi->nb_nodes = (int)g->n_node;
    mi->ops = calloc(g->n_node ? g->n_node : 1, sizeof *mi->ops);
    for (size_t i = 0; mi->ops && i < g->n_node; i++) {
        const char *op = g->node[i]->op_type ? g->node[i]->op_type : "?";
        const char *dom = g->node[i]->domain && *g->node[i]->domain ? g->node[i]->domain : "ai.onnx";
        int k = 0;
        while (k < mi->nb_ops && (strcmp(mi->ops[k].op, op) != 0 || strcmp(mi->ops[k].domain, dom) != 0)) k++;
        if (k == mi->nb_ops) {
            mi->ops[k].op = strdup(op);
            mi->ops[k].domain = strdup(dom);
            mi->nb_ops++;
        }
        mi->ops[k].count++;
    }
    if (mi->ops && mi->nb_ops) qsort(mi->ops, (size_t)mi->nb_ops, sizeof *mi->ops, cmp_ops);
    mi->nb_initializers = (int)g->n_initializer;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        int64_t n = 1;
        for (size_t k = 0; k < t->n_dims; k++) n *= t->dims[k] > 0 ? t->dims[k] : 0;
        mi->initializer_bytes += n * onnx_type_size(t->data_type);
    }
    onnx__model_proto__free_unpacked(m, NULL);
    return true;
#else
    (void)data;
    (void)size;
    snprintf(err, errsz, "this kiln was built without the ONNX importer (KILN_ONNX=OFF)");
    return false;
#endif
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
