/* kiln ONNX importer: a model's facts (opsets, inputs and outputs with symbolic dimension
 * names, op counts, initializer sizes) read without importing, so that tools can choose
 * input shapes first and describe models kiln cannot import, without protobuf types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_internal.h"
#include "tensor_io.h"

/* The public struct first, then what its pointers point into. */
typedef struct ox_info {
    kiln_onnx_model_info pub;
    kiln_onnx_opset *opsets;
    kiln_onnx_value_info *inputs, *outputs;
    kiln_onnx_op_count *ops;
    char **strs; /* every string the info holds */
    int nb_strs, cap_strs;
    bool oom;
} ox_info;

/* A copy owned by the info; "" (static) for NULL and on OOM, which is recorded. */
static const char *keep(ox_info *in, const char *s) {
    if (!s || !*s) return "";
    if (in->nb_strs == in->cap_strs) {
        int ncap = in->cap_strs ? 2 * in->cap_strs : 64;
        char **n = realloc(in->strs, (size_t)ncap * sizeof *n);
        if (!n) {
            in->oom = true;
            return "";
        }
        in->strs = n;
        in->cap_strs = ncap;
    }
    char *c = strdup(s);
    if (!c) {
        in->oom = true;
        return "";
    }
    in->strs[in->nb_strs++] = c;
    return c;
}

void kiln_onnx_model_info_destroy(kiln_onnx_model_info *info) {
    ox_info *in = (ox_info *)info;
    if (!in) return;
    for (int i = 0; i < in->nb_strs; i++) free(in->strs[i]);
    free(in->strs);
    free(in->opsets);
    free(in->inputs);
    free(in->outputs);
    free(in->ops);
    free(in);
}

/* Lower-case element type names, as kiln_dtype_name spells the types kiln has. */
static const char *type_name(int32_t t) {
    static const char *names[] = {"undefined", "float32", "uint8",  "int8",      "uint16",     "int16",
                                  "int32",     "int64",   "string", "bool",      "float16",    "float64",
                                  "uint32",    "uint64",  "complex64", "complex128", "bfloat16"};
    return t >= 0 && t < (int32_t)(sizeof names / sizeof *names) ? names[t] : "?";
}

static int type_size(int32_t t) {
    switch (t) {
    case 2: case 3: case 9: return 1;
    case 4: case 5: case 10: case 16: return 2;
    case 1: case 6: case 12: return 4;
    case 7: case 11: case 13: case 14: return 8;
    case 15: return 16;
    default: return 0;
    }
}

static void read_value(ox_info *in, const Onnx__ValueInfoProto *vi, kiln_onnx_value_info *v) {
    memset(v, 0, sizeof *v);
    v->name = keep(in, vi ? vi->name : NULL);
    v->type_name = type_name(0);
    const Onnx__TypeProto *t = vi ? vi->type : NULL;
    switch (t ? t->value_case : ONNX__TYPE_PROTO__VALUE__NOT_SET) {
    case ONNX__TYPE_PROTO__VALUE__NOT_SET:
    case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE: v->kind = KILN_ONNX_VALUE_TENSOR; break;
    case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE: v->kind = KILN_ONNX_VALUE_SEQUENCE; break;
    case ONNX__TYPE_PROTO__VALUE_MAP_TYPE: v->kind = KILN_ONNX_VALUE_MAP; break;
    case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE: v->kind = KILN_ONNX_VALUE_OPTIONAL; break;
    case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE: v->kind = KILN_ONNX_VALUE_SPARSE_TENSOR; break;
    default: v->kind = KILN_ONNX_VALUE_OTHER; break;
    }
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type) return;
    const Onnx__TypeProto__Tensor *tt = t->tensor_type;
    v->onnx_type = tt->has_elem_type ? tt->elem_type : 0;
    v->type_name = type_name(v->onnx_type);
    v->dtype_known = ox_dtype_from_onnx(v->onnx_type, &v->dtype);
    if (!tt->shape) return;
    v->has_shape = 1;
    v->rank = tt->shape->n_dim > (size_t)1 << 30 ? 1 << 30 : (int)tt->shape->n_dim;
    for (int k = 0; k < v->rank && k < KILN_MAX_DIMS; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        v->dims[k] = -1;
        if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0)
            v->dims[k] = d->dim_value;
        else if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param &&
                 *d->dim_param)
            v->dim_names[k] = keep(in, d->dim_param);
    }
}

typedef struct op_key {
    const char *domain, *op;
} op_key;

static int cmp_key(const void *a, const void *b) {
    const op_key *x = a, *y = b;
    int c = strcmp(x->domain, y->domain);
    return c ? c : strcmp(x->op, y->op);
}

static int cmp_count(const void *a, const void *b) {
    const kiln_onnx_op_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    int c = strcmp(x->op_type, y->op_type);
    return c ? c : strcmp(x->domain, y->domain);
}

static const char *domain_of(const char *d) { return d && *d ? d : "ai.onnx"; }

/* Op counts by sorting (domain, op) pairs: a model of many distinct op types must not
 * cost a quadratic search. */
static bool count_ops(ox_info *in, const Onnx__GraphProto *g) {
    if (!g->n_node) return true;
    op_key *keys = malloc(g->n_node * sizeof *keys);
    if (!keys) return false;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        keys[i].domain = domain_of(n ? n->domain : NULL);
        keys[i].op = n && n->op_type && *n->op_type ? n->op_type : "?";
    }
    qsort(keys, g->n_node, sizeof *keys, cmp_key);
    in->ops = calloc(g->n_node, sizeof *in->ops);
    if (!in->ops) {
        free(keys);
        return false;
    }
    int nb = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        if (i == 0 || cmp_key(&keys[i - 1], &keys[i]) != 0) {
            in->ops[nb].domain = keep(in, keys[i].domain);
            in->ops[nb].op_type = keep(in, keys[i].op);
            nb++;
        }
        in->ops[nb - 1].count++;
    }
    free(keys);
    qsort(in->ops, (size_t)nb, sizeof *in->ops, cmp_count);
    in->pub.ops = in->ops;
    in->pub.nb_ops = nb;
    return true;
}

/* Graph inputs that are initializers are constants, not inputs: found through a sorted
 * copy of the initializer names (models may list thousands). */
static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static bool read_graph(ox_info *in, const Onnx__GraphProto *g) {
    const char **inits = malloc((g->n_initializer ? g->n_initializer : 1) * sizeof *inits);
    if (!inits) return false;
    size_t ninit = 0;
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i] && g->initializer[i]->name) inits[ninit++] = g->initializer[i]->name;
    qsort(inits, ninit, sizeof *inits, cmp_str);
    in->inputs = calloc(g->n_input ? g->n_input : 1, sizeof *in->inputs);
    in->outputs = calloc(g->n_output ? g->n_output : 1, sizeof *in->outputs);
    if (!in->inputs || !in->outputs) {
        free(inits);
        return false;
    }
    int ni = 0, no = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        const char *name = vi && vi->name ? vi->name : "";
        if (ninit && bsearch(&name, inits, ninit, sizeof *inits, cmp_str)) continue;
        read_value(in, vi, &in->inputs[ni++]);
    }
    free(inits);
    for (size_t i = 0; i < g->n_output; i++) read_value(in, g->output[i], &in->outputs[no++]);
    in->pub.inputs = in->inputs;
    in->pub.nb_inputs = ni;
    in->pub.outputs = in->outputs;
    in->pub.nb_outputs = no;
    in->pub.nb_nodes = g->n_node > INT32_MAX ? INT32_MAX : (int)g->n_node;
    in->pub.nb_initializers = g->n_initializer > INT32_MAX ? INT32_MAX : (int)g->n_initializer;
    int64_t total = 0;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        if (!t) continue;
        int64_t n = type_size(t->data_type);
        for (size_t k = 0; k < t->n_dims && n > 0; k++)
            if (t->dims[k] <= 0) n = 0;
            else if (__builtin_mul_overflow(n, t->dims[k], &n)) n = INT64_MAX;
        if (__builtin_add_overflow(total, n, &total)) total = INT64_MAX;
    }
    in->pub.initializer_bytes = total;
    return count_ops(in, g);
}

static kiln_status read_info(const void *data, size_t size, const char *label, kiln_onnx_model_info **out) {
    char msg[1200];
    kiln_status st = KILN_ERR_FORMAT;
    Onnx__ModelProto *m = NULL;
    ox_info *in = NULL;
    if (!ox_proto_depth_ok(&onnx__model_proto__descriptor, data, size, OX_MAX_PROTO_DEPTH)) {
        snprintf(msg, sizeof msg, "%s: not a valid ONNX model: messages nested more than %d deep", label,
                 OX_MAX_PROTO_DEPTH);
        goto fail;
    }
    m = onnx__model_proto__unpack(NULL, size, data);
    if (!m) {
        snprintf(msg, sizeof msg,
                 "%s: not an ONNX model, or a truncated one (the protobuf does not decode; %zu bytes)", label, size);
        goto fail;
    }
    if (!m->graph) {
        snprintf(msg, sizeof msg, "%s: not an ONNX model (no graph)", label);
        goto fail;
    }
    in = calloc(1, sizeof *in);
    if (!in) goto oom;
    in->pub.ir_version = m->has_ir_version ? m->ir_version : 0;
    in->pub.producer_name = keep(in, m->producer_name);
    in->pub.producer_version = keep(in, m->producer_version);
    in->pub.graph_name = keep(in, m->graph->name);
    in->opsets = calloc(m->n_opset_import ? m->n_opset_import : 1, sizeof *in->opsets);
    if (!in->opsets) goto oom;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o) continue;
        kiln_onnx_opset *s = &in->opsets[in->pub.nb_opsets++];
        s->domain = keep(in, domain_of(o->domain));
        s->version = o->has_version ? o->version : 0;
    }
    in->pub.opsets = in->opsets;
    if (!read_graph(in, m->graph) || in->oom) goto oom;
    onnx__model_proto__free_unpacked(m, NULL);
    *out = &in->pub;
    return KILN_OK;
oom:
    st = KILN_ERR_OUT_OF_MEMORY;
    snprintf(msg, sizeof msg, "%s: out of host memory reading the model's facts", label);
fail:
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    kiln_onnx_model_info_destroy(in ? &in->pub : NULL);
    return kiln_set_last_error(st, msg);
}

kiln_status kiln_onnx_read_model_info(const void *data, size_t size, kiln_onnx_model_info **out) {
    if (out) *out = NULL;
    if (!out || (!data && size))
        return kiln_set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_read_model_info: data or out is NULL");
    return read_info(data ? data : "", size, "<memory>", out);
}

kiln_status kiln_onnx_read_model_info_file(const char *path, kiln_onnx_model_info **out) {
    if (out) *out = NULL;
    if (!out || !path)
        return kiln_set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_read_model_info_file: path or out is NULL");
    void *data;
    size_t size;
    char err[700];
    kiln_status st = ox_read_whole_file(path, &data, &size, err, sizeof err);
    if (st != KILN_OK) return kiln_set_last_error(st, err);
    st = read_info(data, size, path, out);
    free(data);
    return st;
}
