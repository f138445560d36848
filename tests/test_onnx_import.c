/* kiln tests: the ONNX importer. Models are built in memory with the protobuf-c types
 * and packed, then parsed: numeric checks of mapped ops against float64 references
 * (Conv1d, legacy Softmax, GELU fusion, shape-chain folding, external data, frozen
 * inputs, legacy broadcast) and error paths (truncated and random bytes, PNG header,
 * several unsupported nodes, missing or escaping external data, unsupported opset and
 * IR versions, bad input shapes), each giving a non-OK status and a message naming
 * the file or node. Then the API around the import: model facts without importing, the
 * model input behind a "must be a constant" problem, value names that collide with the
 * importer's internal ones, and the backend-test runner on test directories made here. */
#include "harness.h"

#ifndef KILN_HAVE_ONNX
int main(void) {
    printf("test_onnx_import: built without the ONNX importer (KILN_ONNX=OFF); nothing to test\n");
    return 0;
}
#else

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/onnx.h"
#include "onnx.pb-c.h"

/* ---- a small model builder over the generated protobuf-c structs ---- */

#define MB_MAX 64

typedef struct mb {
    Onnx__NodeProto *nodes[MB_MAX];
    Onnx__TensorProto *inits[MB_MAX];
    Onnx__ValueInfoProto *ins[MB_MAX], *outs[MB_MAX];
    int nn, ni, nin, nout;
    int64_t ir, opset;
    void **mem;
    int nmem, cap;
} mb;

static void *mb_alloc(mb *b, size_t size) {
    if (b->nmem == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->mem = realloc(b->mem, (size_t)b->cap * sizeof *b->mem);
    }
    void *p = calloc(1, size ? size : 1);
    b->mem[b->nmem++] = p;
    return p;
}

static char *mb_str(mb *b, const char *s) {
    char *r = mb_alloc(b, strlen(s) + 1);
    strcpy(r, s);
    return r;
}

static void mb_init(mb *b, int64_t opset) {
    memset(b, 0, sizeof *b);
    b->ir = 8;
    b->opset = opset;
}

static void mb_free(mb *b) {
    for (int i = 0; i < b->nmem; i++) free(b->mem[i]);
    free(b->mem);
}

/* Splits "a,b,,c" into strings ("" kept: an absent optional input). */
static size_t mb_split(mb *b, const char *list, char ***out) {
    size_t n = *list ? 1 : 0;
    for (const char *s = list; *s; s++) n += *s == ',';
    char **r = mb_alloc(b, (n ? n : 1) * sizeof *r);
    const char *s = list;
    for (size_t i = 0; i < n; i++) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        r[i] = mb_alloc(b, len + 1);
        memcpy(r[i], s, len);
        s = e ? e + 1 : s + len;
    }
    *out = r;
    return n;
}

static Onnx__NodeProto *mb_node(mb *b, const char *op, const char *name, const char *ins, const char *outs) {
    Onnx__NodeProto *n = mb_alloc(b, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = mb_str(b, op);
    n->name = mb_str(b, name);
    n->n_input = mb_split(b, ins, &n->input);
    n->n_output = mb_split(b, outs, &n->output);
    n->attribute = mb_alloc(b, 16 * sizeof *n->attribute);
    b->nodes[b->nn++] = n;
    return n;
}

static Onnx__AttributeProto *mb_attr(mb *b, Onnx__NodeProto *n, const char *name,
                                     Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = mb_alloc(b, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = mb_str(b, name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void mb_attr_i(mb *b, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void mb_attr_f(mb *b, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static void mb_attr_s(mb *b, Onnx__NodeProto *n, const char *name, const char *v) {
    Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.data = (uint8_t *)mb_str(b, v);
    a->s.len = strlen(v);
}

static void mb_attr_ints(mb *b, Onnx__NodeProto *n, const char *name, int cnt, const int64_t *v) {
    Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)cnt;
    a->ints = mb_alloc(b, (size_t)cnt * sizeof(int64_t));
    memcpy(a->ints, v, (size_t)cnt * sizeof(int64_t));
}

static Onnx__TensorProto *mb_tensor(mb *b, const char *name, int32_t type, int nd, const int64_t *dims, const void *raw,
                                    size_t bytes) {
    Onnx__TensorProto *t = mb_alloc(b, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = mb_str(b, name);
    t->has_data_type = 1;
    t->data_type = type;
    t->n_dims = (size_t)nd;
    t->dims = mb_alloc(b, (size_t)(nd ? nd : 1) * sizeof(int64_t));
    if (nd) memcpy(t->dims, dims, (size_t)nd * sizeof(int64_t));
    if (raw) {
        t->has_raw_data = 1;
        t->raw_data.len = bytes;
        t->raw_data.data = mb_alloc(b, bytes);
        memcpy(t->raw_data.data, raw, bytes);
    }
    return t;
}

static int64_t vol(int nd, const int64_t *d) {
    int64_t v = 1;
    for (int i = 0; i < nd; i++) v *= d[i];
    return v;
}

static Onnx__TensorProto *mb_init_f(mb *b, const char *name, int nd, const int64_t *dims, const float *v) {
    Onnx__TensorProto *t =
        mb_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, nd, dims, v, (size_t)vol(nd, dims) * sizeof(float));
    b->inits[b->ni++] = t;
    return t;
}

/* int64 initializer stored in the typed field (not raw_data), to cover both paths */
static void mb_init_i64(mb *b, const char *name, int nd, const int64_t *dims, const int64_t *v) {
    Onnx__TensorProto *t = mb_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, nd, dims, NULL, 0);
    t->n_int64_data = (size_t)vol(nd, dims);
    t->int64_data = mb_alloc(b, t->n_int64_data * sizeof(int64_t));
    memcpy(t->int64_data, v, t->n_int64_data * sizeof(int64_t));
    b->inits[b->ni++] = t;
}

static Onnx__ValueInfoProto *mb_vi(mb *b, const char *name, int32_t type, int nd, const int64_t *dims) {
    Onnx__ValueInfoProto *v = mb_alloc(b, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = mb_str(b, name);
    Onnx__TypeProto *tp = mb_alloc(b, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = mb_alloc(b, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = type;
    if (nd >= 0) {
        Onnx__TensorShapeProto *sh = mb_alloc(b, sizeof *sh);
        onnx__tensor_shape_proto__init(sh);
        sh->n_dim = (size_t)nd;
        sh->dim = mb_alloc(b, (size_t)(nd ? nd : 1) * sizeof *sh->dim);
        for (int i = 0; i < nd; i++) {
            Onnx__TensorShapeProto__Dimension *d = mb_alloc(b, sizeof *d);
            onnx__tensor_shape_proto__dimension__init(d);
            if (dims[i] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = dims[i];
            } else {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = mb_str(b, "N");
            }
            sh->dim[i] = d;
        }
        tt->shape = sh;
    }
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    return v;
}

static void mb_input(mb *b, const char *name, int nd, const int64_t *dims) {
    b->ins[b->nin++] = mb_vi(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, nd, dims);
}

static void mb_output(mb *b, const char *name) {
    b->outs[b->nout++] = mb_vi(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, -1, NULL);
}

/* Packs the model; caller frees the bytes. */
static uint8_t *mb_pack(mb *b, size_t *len) {
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    g.name = "test";
    g.n_node = (size_t)b->nn;
    g.node = b->nodes;
    g.n_initializer = (size_t)b->ni;
    g.initializer = b->inits;
    g.n_input = (size_t)b->nin;
    g.input = b->ins;
    g.n_output = (size_t)b->nout;
    g.output = b->outs;
    Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT, *osp = &os;
    os.domain = "";
    os.has_version = 1;
    os.version = b->opset;
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1;
    m.ir_version = b->ir;
    m.producer_name = "kiln-test";
    m.graph = &g;
    m.n_opset_import = 1;
    m.opset_import = &osp;
    *len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(*len);
    onnx__model_proto__pack(&m, buf);
    return buf;
}

/* ---- parse helpers ---- */

typedef struct imported {
    kiln_builder *b;
    kiln_network *net;
    kiln_onnx_parser *p;
    kiln_status st;
} imported;

static imported import_bytes(const uint8_t *bytes, size_t len, const kiln_onnx_desc *desc, const char *base_dir) {
    imported r;
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    r.st = kiln_onnx_parser_create(r.net, desc, &r.p);
    if (r.st == KILN_OK) r.st = kiln_onnx_parse_memory(r.p, bytes, len, base_dir);
    return r;
}

static imported import_file(const char *path) {
    imported r;
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    r.st = kiln_onnx_parser_create(r.net, NULL, &r.p);
    if (r.st == KILN_OK) r.st = kiln_onnx_parse_file(r.p, path);
    return r;
}

static imported import_mb(mb *b, const kiln_onnx_desc *desc) {
    size_t len;
    uint8_t *bytes = mb_pack(b, &len);
    imported r = import_bytes(bytes, len, desc, NULL);
    free(bytes);
    return r;
}

static void release(imported *r) {
    kiln_network_destroy(r->net);
    kiln_onnx_parser_destroy(r->p);
    kiln_builder_destroy(r->b);
}

static bool any_error_has(const kiln_onnx_parser *p, const char *text) {
    for (int i = 0; i < kiln_onnx_num_errors(p); i++)
        if (strstr(kiln_onnx_error(p, i), text)) return true;
    return false;
}

static void print_errors(const kiln_onnx_parser *p) {
    for (int i = 0; i < kiln_onnx_num_errors(p); i++) fprintf(stderr, "    %s\n", kiln_onnx_error(p, i));
}

/* Imports, builds and runs; output 0 into a malloc'd buffer (NULL on failure). */
static float *run_mb(mb *b, const kiln_onnx_desc *desc, void *const *inputs, kiln_dims *out_dims, imported *keep) {
    imported r = import_mb(b, desc);
    CHECK(r.st == KILN_OK, "import failed: %s", kiln_last_error());
    if (r.st != KILN_OK) print_errors(r.p);
    void *outs[4] = {NULL};
    float *y = NULL;
    if (r.st == KILN_OK) {
        kiln_status st = th_run(r.b, r.net, inputs, outs, out_dims);
        CHECK(st == KILN_OK, "run failed: %s", kiln_last_error());
        if (st == KILN_OK)
            y = outs[0];
        else
            free(outs[0]);
    }
    if (keep)
        *keep = r;
    else
        release(&r);
    return y;
}

/* ---- a valid model: Conv -> LeakyRelu -> Identity, with an initializer also listed as an input ---- */

static void build_conv_relu(mb *b, float *w, float *bias) {
    mb_init(b, 13);
    int64_t xd[4] = {1, 2, 5, 5}, wd[4] = {3, 2, 3, 3}, bd[1] = {3};
    th_fill(w, 54, -1, 1);
    th_fill(bias, 3, -1, 1);
    mb_input(b, "x", 4, xd);
    mb_input(b, "w", 4, wd); /* IR<4 style: the initializer is listed as an input too */
    mb_init_f(b, "w", 4, wd, w);
    mb_init_f(b, "b", 1, bd, bias);
    Onnx__NodeProto *c = mb_node(b, "Conv", "conv0", "x,w,b", "c");
    mb_attr_ints(b, c, "pads", 4, (int64_t[]){1, 1, 1, 1});
    Onnx__NodeProto *lr = mb_node(b, "LeakyRelu", "relu0", "c", "r");
    mb_attr_f(b, lr, "alpha", 0.125f);
    mb_node(b, "Identity", "id0", "r", "y");
    mb_output(b, "y");
}

static void test_valid_conv(void) {
    mb b;
    float w[54], bias[3], x[50];
    build_conv_relu(&b, w, bias);
    th_fill(x, 50, -1, 1);
    imported r;
    kiln_dims od;
    void *in[1] = {x};
    float *y = run_mb(&b, NULL, in, &od, &r);
    CHECK(kiln_network_num_inputs(r.net) == 1, "initializer listed as input became a network input (%d inputs)",
          kiln_network_num_inputs(r.net));
    CHECK(kiln_network_num_outputs(r.net) == 1 && strcmp(kiln_tensor_name(kiln_network_output(r.net, 0)), "y") == 0,
          "output is not named 'y'");
    CHECK(kiln_network_find_tensor(r.net, "c") != NULL, "tensor names must be the ONNX value names");
    if (y) {
        double ref[75];
        for (int o = 0; o < 3; o++)
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 5; j++) {
                    double s = bias[o];
                    for (int c = 0; c < 2; c++)
                        for (int ki = 0; ki < 3; ki++)
                            for (int kj = 0; kj < 3; kj++) {
                                int ii = i + ki - 1, jj = j + kj - 1;
                                if (ii < 0 || jj < 0 || ii >= 5 || jj >= 5) continue;
                                s += (double)w[((o * 2 + c) * 3 + ki) * 3 + kj] * x[(c * 5 + ii) * 5 + jj];
                            }
                    ref[(o * 5 + i) * 5 + j] = s > 0 ? s : 0.125 * s;
                }
        CHECK(od.nb_dims == 4 && od.d[1] == 3 && od.d[2] == 5, "output dims");
        th_check_close("conv+leaky relu", y, ref, 75, 1e-5);
    }
    free(y);
    release(&r);
    mb_free(&b);
}

/* ---- Conv1d through the 2-D convolution ---- */

static void test_conv1d(void) {
    int64_t xd[3] = {2, 3, 9}, wd[3] = {4, 3, 3};
    float x[54], w[36];
    th_fill(x, 54, -1, 1);
    th_fill(w, 36, -1, 1);
    mb b;
    mb_init(&b, 11);
    mb_input(&b, "x", 3, xd);
    mb_init_f(&b, "w", 3, wd, w);
    Onnx__NodeProto *c = mb_node(&b, "Conv", "conv1d", "x,w", "y");
    mb_attr_ints(&b, c, "strides", 1, (int64_t[]){2});
    mb_attr_ints(&b, c, "dilations", 1, (int64_t[]){2});
    mb_attr_ints(&b, c, "pads", 2, (int64_t[]){2, 1});
    mb_output(&b, "y");
    kiln_dims od;
    void *in[1] = {x};
    float *y = run_mb(&b, NULL, in, &od, NULL);
    /* out = floor((9 + 3 - 2*2 - 1) / 2) + 1 = 4 */
    if (y) {
        CHECK(od.nb_dims == 3 && od.d[0] == 2 && od.d[1] == 4 && od.d[2] == 4, "conv1d dims");
        double ref[32];
        for (int n = 0; n < 2; n++)
            for (int o = 0; o < 4; o++)
                for (int t = 0; t < 4; t++) {
                    double s = 0;
                    for (int c2 = 0; c2 < 3; c2++)
                        for (int k = 0; k < 3; k++) {
                            int at = t * 2 + k * 2 - 2;
                            if (at >= 0 && at < 9) s += (double)w[(o * 3 + c2) * 3 + k] * x[(n * 3 + c2) * 9 + at];
                        }
                    ref[(n * 4 + o) * 4 + t] = s;
                }
        th_check_close("conv1d", y, ref, 32, 1e-5);
    }
    free(y);
    mb_free(&b);
}

/* ---- Softmax before opset 13: softmax over the flattened tail ---- */

static void test_legacy_softmax(void) {
    int64_t xd[3] = {2, 3, 4};
    float x[24];
    th_fill(x, 24, -3, 3);
    mb b;
    mb_init(&b, 11);
    mb_input(&b, "x", 3, xd);
    Onnx__NodeProto *n = mb_node(&b, "Softmax", "sm", "x", "y");
    mb_attr_i(&b, n, "axis", 1);
    mb_output(&b, "y");
    void *in[1] = {x};
    kiln_dims od;
    float *y = run_mb(&b, NULL, in, &od, NULL);
    if (y) {
        double ref[24];
        for (int r = 0; r < 2; r++) {
            double mx = -1e30, sum = 0;
            for (int i = 0; i < 12; i++) mx = fmax(mx, x[r * 12 + i]);
            for (int i = 0; i < 12; i++) sum += exp(x[r * 12 + i] - mx);
            for (int i = 0; i < 12; i++) ref[r * 12 + i] = exp(x[r * 12 + i] - mx) / sum;
        }
        CHECK(od.nb_dims == 3 && od.d[2] == 4, "legacy softmax keeps the input shape");
        th_check_close("legacy softmax", y, ref, 24, 1e-5);
    }
    free(y);
    mb_free(&b);
}

/* ---- GELU as PyTorch writes it becomes one activation ---- */

static void test_gelu(void) {
    int64_t xd[2] = {3, 5}, sd[1] = {1};
    float x[15];
    th_fill(x, 15, -3, 3);
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 2, xd);
    mb_init_f(&b, "sqrt2", 0, sd, (float[]){1.4142135381698608f});
    mb_init_f(&b, "one", 0, sd, (float[]){1.0f});
    mb_init_f(&b, "half", 0, sd, (float[]){0.5f});
    mb_node(&b, "Div", "div", "x,sqrt2", "d");
    mb_node(&b, "Erf", "erf", "d", "e");
    mb_node(&b, "Add", "add", "e,one", "a");
    mb_node(&b, "Mul", "mul", "x,a", "m");
    mb_node(&b, "Mul", "mul_half", "m,half", "y");
    mb_output(&b, "y");
    void *in[1] = {x};
    imported r;
    float *y = run_mb(&b, NULL, in, NULL, &r);
    int acts = 0, others = 0;
    for (int i = 0; i < kiln_network_num_layers(r.net); i++) {
        kiln_layer_type t = kiln_layer_get_type(kiln_network_layer(r.net, i));
        if (t == KILN_LAYER_ACTIVATION)
            acts++;
        else if (t != KILN_LAYER_CONSTANT)
            others++;
    }
    CHECK(acts == 1 && others == 0, "GELU pattern: %d activation and %d other layers (want 1 and 0)", acts, others);
    if (y) {
        double ref[15];
        for (int i = 0; i < 15; i++) ref[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
        th_check_close("gelu", y, ref, 15, 1e-5);
    }
    free(y);
    release(&r);
    mb_free(&b);
}

/* ---- Shape -> Gather -> Unsqueeze -> Concat -> Reshape folds into one reshape ---- */

/* A foldable op whose data input is absent while its other inputs are constants: the
 * import reports the missing input (found by fuzz_onnx: the fold read a NULL constant). */
static void test_fold_missing_input(void) {
    static const char *const ops[] = {"Slice", "Gather", "Reshape", "Unsqueeze"};
    for (int i = 0; i < 4; i++) {
        mb b;
        mb_init(&b, 13);
        int64_t one = 1, two = 2;
        mb_init_i64(&b, "k", 1, &one, &two);
        mb_node(&b, ops[i], "n", i == 0 ? ",k,k" : ",k", "y");
        mb_output(&b, "y");
        imported r = import_mb(&b, NULL);
        CHECK(r.st != KILN_OK && kiln_onnx_num_errors(r.p) > 0 && any_error_has(r.p, "input 0"),
              "%s without its data input: %s", ops[i], r.p ? (print_errors(r.p), kiln_last_error()) : "no parser");
        release(&r);
        mb_free(&b);
    }
}

/* Range over constants of mixed dtypes is refused with a message (found by fuzz_onnx: the
 * element count became NaN). */
static void test_range_mixed_dtypes(void) {
    mb b;
    mb_init(&b, 13);
    int64_t s0 = 0, l0 = 5;
    float half = 0.5f;
    mb_init_i64(&b, "s", 0, NULL, &s0);
    mb_init_i64(&b, "l", 0, NULL, &l0);
    mb_init_f(&b, "d", 0, NULL, &half);
    mb_node(&b, "Range", "r", "s,l,d", "y");
    mb_output(&b, "y");
    imported r = import_mb(&b, NULL);
    CHECK(r.st != KILN_OK && any_error_has(r.p, "one dtype"), "Range of int64 and float: %s", kiln_last_error());
    release(&r);
    mb_free(&b);
}

static void test_shape_chain(void) {
    int64_t xd[3] = {2, 3, 4}, sd[1] = {1};
    float x[24];
    th_fill(x, 24, -1, 1);
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 3, xd);
    mb_init_i64(&b, "idx0", 0, sd, (int64_t[]){0});
    mb_init_i64(&b, "axes0", 1, sd, (int64_t[]){0});
    mb_init_i64(&b, "minus1", 1, sd, (int64_t[]){-1});
    mb_node(&b, "Shape", "shape", "x", "s");
    mb_node(&b, "Gather", "gather", "s,idx0", "n");
    mb_node(&b, "Unsqueeze", "unsq", "n,axes0", "n1");
    mb_node(&b, "Concat", "concat", "n1,minus1", "target");
    Onnx__NodeProto *cat = b.nodes[b.nn - 1];
    mb_attr_i(&b, cat, "axis", 0);
    mb_node(&b, "Cast", "cast", "target,", "target2"); /* an empty optional input name is ignored */
    mb_attr_i(&b, b.nodes[b.nn - 1], "to", ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    mb_node(&b, "Reshape", "reshape", "x,target2", "y");
    mb_output(&b, "y");
    void *in[1] = {x};
    imported r;
    kiln_dims od;
    float *y = run_mb(&b, NULL, in, &od, &r);
    CHECK(kiln_network_num_layers(r.net) == 1 &&
              kiln_layer_get_type(kiln_network_layer(r.net, 0)) == KILN_LAYER_SHUFFLE,
          "the shape computation should fold into a single reshape, got %d layers", kiln_network_num_layers(r.net));
    if (y) {
        CHECK(od.nb_dims == 2 && od.d[0] == 2 && od.d[1] == 12, "reshape target [2, 12] from the folded shape");
        double ref[24];
        for (int i = 0; i < 24; i++) ref[i] = x[i];
        th_check_close("reshape", y, ref, 24, 1e-7);
    }
    free(y);
    release(&r);
    mb_free(&b);
}

/* ---- Range, Equal, Where, ConstantOfShape, Cast, Constant on constants: folded ---- */

static void test_folding(void) {
    int64_t xd[1] = {4}, sd[1] = {1};
    float x[4];
    th_fill(x, 4, -1, 1);
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 1, xd);
    mb_init_i64(&b, "shp", 1, sd, (int64_t[]){4});
    mb_init_i64(&b, "r0", 0, sd, (int64_t[]){0});
    mb_init_i64(&b, "r1", 0, sd, (int64_t[]){4});
    mb_init_i64(&b, "r2", 0, sd, (int64_t[]){1});
    Onnx__NodeProto *cos = mb_node(&b, "ConstantOfShape", "cos", "shp", "z");
    Onnx__AttributeProto *va = mb_attr(&b, cos, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    va->t = mb_tensor(&b, "", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, sd, (float[]){2.0f}, sizeof(float));
    mb_node(&b, "Range", "range", "r0,r1,r2", "rg");
    mb_node(&b, "Cast", "cast", "rg", "rgf");
    mb_attr_i(&b, b.nodes[b.nn - 1], "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    mb_node(&b, "Equal", "eq", "rg,r0", "e");
    mb_node(&b, "Where", "where", "e,z,rgf", "w");
    Onnx__NodeProto *k = mb_node(&b, "Constant", "k", "", "kv");
    Onnx__AttributeProto *vf = mb_attr(&b, k, "value_floats", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
    vf->n_floats = 4;
    vf->floats = mb_alloc(&b, 4 * sizeof(float));
    for (int i = 0; i < 4; i++) vf->floats[i] = (float)(i + 1);
    mb_node(&b, "Mul", "mul", "w,kv", "wk");
    mb_node(&b, "Add", "add", "x,wk", "y");
    mb_output(&b, "y");
    void *in[1] = {x};
    imported r;
    float *y = run_mb(&b, NULL, in, NULL, &r);
    int consts = 0, elts = 0;
    for (int i = 0; i < kiln_network_num_layers(r.net); i++) {
        kiln_layer_type t = kiln_layer_get_type(kiln_network_layer(r.net, i));
        consts += t == KILN_LAYER_CONSTANT;
        elts += t == KILN_LAYER_ELEMENTWISE;
    }
    CHECK(consts == 1 && elts == 1 && kiln_network_num_layers(r.net) == 2,
          "everything but the final Add should fold: %d layers (%d constants, %d elementwise)",
          kiln_network_num_layers(r.net), consts, elts);
    if (y) {
        /* w = where(range == 0, 2, range) = [2, 1, 2, 3]; times [1, 2, 3, 4] */
        double ref[4] = {x[0] + 2.0, x[1] + 2.0, x[2] + 6.0, x[3] + 12.0};
        th_check_close("folded constants", y, ref, 4, 1e-6);
    }
    free(y);
    release(&r);
    mb_free(&b);
}

/* ---- opset 6: Add with broadcast=1, axis=1 ---- */

static void test_legacy_broadcast(void) {
    int64_t xd[4] = {2, 3, 2, 2}, bd[1] = {3};
    float x[24], bias[3];
    th_fill(x, 24, -1, 1);
    th_fill(bias, 3, -1, 1);
    mb b;
    mb_init(&b, 6);
    b.ir = 3;
    mb_input(&b, "x", 4, xd);
    mb_init_f(&b, "bias", 1, bd, bias);
    Onnx__NodeProto *n = mb_node(&b, "Add", "add", "x,bias", "y");
    mb_attr_i(&b, n, "broadcast", 1);
    mb_attr_i(&b, n, "axis", 1);
    mb_output(&b, "y");
    void *in[1] = {x};
    float *y = run_mb(&b, NULL, in, NULL, NULL);
    if (y) {
        double ref[24];
        for (int i = 0; i < 24; i++) ref[i] = (double)x[i] + bias[(i / 4) % 3];
        th_check_close("legacy broadcast add", y, ref, 24, 1e-6);
    }
    free(y);
    mb_free(&b);
}

/* ---- symbolic dims from the desc; frozen inputs ---- */

static void test_desc_shapes_and_frozen(void) {
    int64_t xd[2] = {-1, 4}, sd[1] = {2};
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 2, xd);
    b.ins[b.nin++] = mb_vi(&b, "shape", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, sd);
    mb_node(&b, "Reshape", "reshape", "x,shape", "r");
    mb_node(&b, "Neg", "neg", "r", "y");
    mb_output(&b, "y");

    /* no shape for the symbolic input: an error naming it */
    imported r = import_mb(&b, NULL);
    CHECK(r.st != KILN_OK && any_error_has(r.p, "'x'"), "missing shape for 'x' must be reported: %s",
          kiln_last_error());
    release(&r);

    /* shape given, but 'shape' is a runtime input: the Reshape node says what it needs */
    const char *names[1] = {"x"};
    kiln_dims shapes[1] = {kiln_dims_make(2, (int64_t[]){3, 4})};
    kiln_onnx_desc d = KILN_ONNX_DESC_INIT;
    d.nb_shapes = 1;
    d.shape_names = names;
    d.shapes = shapes;
    r = import_mb(&b, &d);
    CHECK(r.st == KILN_ERR_UNSUPPORTED && any_error_has(r.p, "reshape") && any_error_has(r.p, "'shape'"),
          "a runtime shape input must be reported on the Reshape node: %s", kiln_last_error());
    release(&r);

    /* wrong rank in the desc */
    kiln_dims bad[1] = {kiln_dims_make(3, (int64_t[]){3, 4, 1})};
    d.shapes = bad;
    r = import_mb(&b, &d);
    CHECK(r.st != KILN_OK && any_error_has(r.p, "'x'") && any_error_has(r.p, "3x4x1"),
          "a desc shape of the wrong rank must be rejected naming the input: %s", kiln_last_error());
    release(&r);

    /* a desc shape for an input that does not exist */
    const char *ghost[1] = {"nope"};
    d.shapes = shapes;
    d.shape_names = ghost;
    r = import_mb(&b, &d);
    CHECK(r.st != KILN_OK && any_error_has(r.p, "'nope'"), "unknown desc input must be reported");
    release(&r);

    /* frozen 'shape' input: becomes a constant, the network has one input */
    d.shape_names = names;
    int64_t target[2] = {6, 2};
    const char *fz_names[1] = {"shape"};
    kiln_dims fz_dims[1] = {kiln_dims_make(1, (int64_t[]){2})};
    kiln_weights fz_vals[1] = {{KILN_INT64, target, 2}};
    d.nb_frozen = 1;
    d.frozen_names = fz_names;
    d.frozen_dims = fz_dims;
    d.frozen_values = fz_vals;
    float x[12];
    th_fill(x, 12, -1, 1);
    void *in[1] = {x};
    imported keep;
    kiln_dims od;
    float *y = run_mb(&b, &d, in, &od, &keep);
    CHECK(kiln_network_num_inputs(keep.net) == 1, "frozen input must not be a network input");
    if (y) {
        double ref[12];
        for (int i = 0; i < 12; i++) ref[i] = -(double)x[i];
        CHECK(od.nb_dims == 2 && od.d[0] == 6 && od.d[1] == 2, "frozen reshape target");
        th_check_close("frozen reshape", y, ref, 12, 1e-7);
    }
    free(y);
    release(&keep);
    mb_free(&b);
}

/* ---- external data ---- */

static char tmpdir[256];

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void set_external(mb *b, Onnx__TensorProto *t, const char *location, int64_t offset) {
    t->has_raw_data = 0;
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->n_external_data = 2;
    t->external_data = mb_alloc(b, 2 * sizeof *t->external_data);
    const char *keys[2] = {"location", "offset"};
    char off[32];
    snprintf(off, sizeof off, "%lld", (long long)offset);
    const char *vals[2] = {location, off};
    for (int i = 0; i < 2; i++) {
        Onnx__StringStringEntryProto *e = mb_alloc(b, sizeof *e);
        onnx__string_string_entry_proto__init(e);
        e->key = mb_str(b, keys[i]);
        e->value = mb_str(b, vals[i]);
        t->external_data[i] = e;
    }
}

static void test_external_data(void) {
    int64_t xd[2] = {2, 3};
    float x[6], w[6];
    th_fill(x, 6, -1, 1);
    th_fill(w, 6, -1, 1);
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 2, xd);
    Onnx__TensorProto *t = mb_init_f(&b, "w", 2, xd, w);
    set_external(&b, t, "weights.bin", 16);
    mb_node(&b, "Mul", "mul", "x,w", "y");
    mb_output(&b, "y");
    size_t len;
    uint8_t *bytes = mb_pack(&b, &len);
    char model[512], weights[512];
    snprintf(model, sizeof model, "%s/model.onnx", tmpdir);
    snprintf(weights, sizeof weights, "%s/weights.bin", tmpdir);
    write_file(model, bytes, len);
    unlink(weights);

    /* missing data file: a clear error naming the file, no crash, no leak */
    imported r = import_file(model);
    CHECK(r.st != KILN_OK && any_error_has(r.p, "weights.bin") && strstr(kiln_last_error(), model),
          "missing external data must be reported with the file: %s", kiln_last_error());
    release(&r);

    /* present: 16 bytes of padding then the weights */
    uint8_t file[16 + sizeof w];
    memset(file, 0x55, 16);
    memcpy(file + 16, w, sizeof w);
    write_file(weights, file, sizeof file);
    r = import_file(model);
    CHECK(r.st == KILN_OK, "external data import: %s", kiln_last_error());
    if (r.st == KILN_OK) {
        void *in[1] = {x}, *out[1] = {NULL};
        CHECK_OK(th_run(r.b, r.net, in, out, NULL));
        if (out[0]) {
            double ref[6];
            for (int i = 0; i < 6; i++) ref[i] = (double)x[i] * w[i];
            th_check_close("external weights", out[0], ref, 6, 1e-6);
        }
        free(out[0]);
    }
    release(&r);

    /* too short a file */
    write_file(weights, file, 20);
    r = import_file(model);
    CHECK(r.st == KILN_ERR_FORMAT && any_error_has(r.p, "too short"), "short external data: %s", kiln_last_error());
    release(&r);

    /* huge claimed dims over a short file: refused before anything that size is allocated
     * (the sanitizer build aborts on such an allocation; found by fuzz_onnx) */
    int64_t *saved_dims = t->dims;
    int64_t huge[2] = {(int64_t)1 << 36, (int64_t)1 << 20}; /* 2^58 bytes of float32 */
    t->dims = huge;
    size_t hlen;
    uint8_t *hbytes = mb_pack(&b, &hlen);
    write_file(model, hbytes, hlen);
    free(hbytes);
    t->dims = saved_dims;
    r = import_file(model);
    CHECK(r.st == KILN_ERR_FORMAT && any_error_has(r.p, "too short"), "huge external tensor: %s", kiln_last_error());
    release(&r);
    write_file(model, bytes, len);

    /* locations that escape the model directory */
    const char *escapes[] = {"../weights.bin", "/etc/passwd", "sub/../../x.bin"};
    for (int i = 0; i < 3; i++) {
        set_external(&b, t, escapes[i], 0);
        free(bytes);
        bytes = mb_pack(&b, &len);
        r = import_bytes(bytes, len, NULL, tmpdir);
        CHECK(r.st == KILN_ERR_FORMAT && any_error_has(r.p, "leaves the model directory"),
              "external location '%s' must be refused: %s", escapes[i], kiln_last_error());
        release(&r);
    }
    /* memory parse without base_dir cannot read external data */
    set_external(&b, t, "weights.bin", 16);
    free(bytes);
    bytes = mb_pack(&b, &len);
    r = import_bytes(bytes, len, NULL, NULL);
    CHECK(r.st != KILN_OK && any_error_has(r.p, "base_dir"), "external data without base_dir: %s", kiln_last_error());
    release(&r);
    unlink(weights);
    unlink(model);
    free(bytes);
    mb_free(&b);
}

/* ---- corrupt inputs ---- */

static void test_truncated_and_garbage(void) {
    mb b;
    float w[54], bias[3];
    build_conv_relu(&b, w, bias);
    size_t len;
    uint8_t *bytes = mb_pack(&b, &len);
    int fails = 0;
    for (size_t n = 0; n < len; n++) { /* every proper prefix */
        imported r = import_bytes(bytes, n, NULL, NULL);
        if (r.st != KILN_OK && kiln_onnx_num_errors(r.p) > 0 && strstr(kiln_onnx_error(r.p, 0), "<memory>"))
            fails++;
        else
            fprintf(stderr, "prefix %zu of %zu: status %d, %d errors\n", n, len, r.st, kiln_onnx_num_errors(r.p));
        release(&r);
    }
    CHECK(fails == (int)len, "%d of %zu truncated models were rejected with a message", fails, len);

    /* a truncated file names the file */
    char path[512];
    snprintf(path, sizeof path, "%s/truncated.onnx", tmpdir);
    write_file(path, bytes, len / 2);
    imported r;
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    kiln_onnx_parser_create(r.net, NULL, &r.p);
    r.st = kiln_onnx_parse_file(r.p, path);
    CHECK(r.st == KILN_ERR_FORMAT && strstr(kiln_last_error(), path), "truncated file: %s", kiln_last_error());
    release(&r);
    unlink(path);

    /* random bytes, and random corruption of a valid model */
    int rejected = 0, total = 0;
    for (int k = 0; k < 200; k++) {
        size_t n = 1 + th_rand_u64() % 300;
        uint8_t *junk = malloc(n);
        for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)th_rand_u64();
        r = import_bytes(junk, n, NULL, NULL);
        total++;
        rejected += r.st != KILN_OK && kiln_onnx_num_errors(r.p) > 0;
        release(&r);
        free(junk);
        uint8_t *bad = malloc(len);
        memcpy(bad, bytes, len);
        for (int f = 0; f < 3; f++) bad[th_rand_u64() % len] = (uint8_t)th_rand_u64();
        r = import_bytes(bad, len, NULL, NULL); /* may or may not parse: must not crash or leak */
        CHECK(r.st == KILN_OK || kiln_onnx_num_errors(r.p) > 0, "a failure without a message");
        release(&r);
        free(bad);
    }
    CHECK(rejected == total, "random bytes: %d of %d rejected", rejected, total);

    /* a PNG */
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H',  'D',  'R',
                                  0,    0,   0,   1,   0,    0,    0,    1,    8, 6, 0, 0,  0,   0x1f, 0x15, 0xc4};
    snprintf(path, sizeof path, "%s/picture.onnx", tmpdir);
    write_file(path, png, sizeof png);
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    kiln_onnx_parser_create(r.net, NULL, &r.p);
    r.st = kiln_onnx_parse_file(r.p, path);
    CHECK(r.st == KILN_ERR_FORMAT && strstr(kiln_last_error(), "PNG") && strstr(kiln_last_error(), path),
          "PNG file: %s", kiln_last_error());
    release(&r);
    unlink(path);

    /* messages nested 30000 deep (graph -> node -> attribute -> graph ...): protobuf-c
     * would recurse off the stack; the importer must refuse before unpacking */
    {
        enum { WRAPS = 3 * 30000 };
        static const uint8_t tags[3] = {(6 << 3) | 2, (5 << 3) | 2, (1 << 3) | 2}; /* g, attribute, node */
        size_t *sizes = malloc((WRAPS + 1) * sizeof *sizes);
        sizes[0] = 0;
        for (int k = 1; k <= WRAPS; k++) {
            size_t inner = sizes[k - 1], vl = 1;
            for (size_t v = inner; v >= 0x80; v >>= 7) vl++;
            sizes[k] = 1 + vl + inner;
        }
        uint8_t *deep = malloc(2 + 1 + 5 + sizes[WRAPS]), *q = deep;
        *q++ = 0x08; /* ir_version 8 */
        *q++ = 8;
        *q++ = (7 << 3) | 2; /* graph */
        for (int k = WRAPS;; k--) {
            for (size_t v = sizes[k];; v >>= 7) {
                *q++ = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
                if (v < 0x80) break;
            }
            if (k == 0) break;
            *q++ = tags[(WRAPS - k) % 3 == 0 ? 2 : (WRAPS - k) % 3 == 1 ? 1 : 0];
        }
        r = import_bytes(deep, (size_t)(q - deep), NULL, NULL);
        CHECK(r.st == KILN_ERR_FORMAT && any_error_has(r.p, "nested"), "deep nesting: %s", kiln_last_error());
        release(&r);
        free(deep);
        free(sizes);
    }

    /* a file that does not exist */
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    kiln_onnx_parser_create(r.net, NULL, &r.p);
    r.st = kiln_onnx_parse_file(r.p, "/nonexistent/model.onnx");
    CHECK(r.st == KILN_ERR_IO && strstr(kiln_last_error(), "/nonexistent/model.onnx"), "missing file: %s",
          kiln_last_error());
    /* a second parse on the same parser is refused */
    CHECK(kiln_onnx_parse_memory(r.p, bytes, len, NULL) == KILN_ERR_INVALID_STATE, "second parse must be refused");
    release(&r);
    free(bytes);
    mb_free(&b);
}

/* ---- several unsupported nodes are all reported ---- */

static void test_unsupported_nodes(void) {
    int64_t xd[4] = {1, 1, 4, 4};
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 4, xd);
    mb_node(&b, "FancyOp", "fancy", "x", "a");
    Onnx__NodeProto *rs = mb_node(&b, "Resize", "resize_cubic", "a,,", "c");
    mb_attr_s(&b, rs, "mode", "cubic");
    mb_node(&b, "Relu", "relu", "x", "r");
    Onnx__NodeProto *ms = mb_node(&b, "Relu", "custom_domain", "r", "s");
    ms->domain = mb_str(&b, "com.example");
    Onnx__NodeProto *ad = mb_node(&b, "Add", "add", "s,c", "y");
    (void)ad;
    mb_output(&b, "y");
    imported r = import_mb(&b, NULL);
    CHECK(r.st == KILN_ERR_UNSUPPORTED, "status %s", kiln_status_string(r.st));
    CHECK(kiln_onnx_num_errors(r.p) == 3, "want 3 problems (FancyOp, cubic Resize, custom domain), got %d",
          kiln_onnx_num_errors(r.p));
    CHECK(any_error_has(r.p, "node 'fancy' (FancyOp") && any_error_has(r.p, "opset 13"), "FancyOp not reported");
    CHECK(any_error_has(r.p, "node 'resize_cubic'") && any_error_has(r.p, "Resize mode 'cubic' is not supported"),
          "cubic Resize not reported");
    CHECK(any_error_has(r.p, "com.example"), "custom domain not reported");
    for (int i = 0; i < kiln_onnx_num_errors(r.p); i++)
        CHECK(kiln_onnx_error_status(r.p, i) == KILN_ERR_UNSUPPORTED, "problem %d status", i);
    CHECK(strstr(kiln_last_error(), "FancyOp") && strstr(kiln_last_error(), "more"), "summary: %s", kiln_last_error());
    CHECK(kiln_onnx_error(r.p, 3) == NULL && kiln_onnx_error(r.p, -1) == NULL, "out-of-range error index");
    release(&r);
    mb_free(&b);
}

/* ---- unsupported versions ---- */

static void test_versions(void) {
    mb b;
    float w[54], bias[3];
    build_conv_relu(&b, w, bias);
    b.opset = 18;
    imported r = import_mb(&b, NULL);
    CHECK(r.st == KILN_ERR_UNSUPPORTED && strstr(kiln_last_error(), "opset 18"), "opset 18: %s", kiln_last_error());
    release(&r);
    b.opset = 0;
    r = import_mb(&b, NULL);
    CHECK(r.st == KILN_ERR_UNSUPPORTED && strstr(kiln_last_error(), "opset 0"), "opset 0: %s", kiln_last_error());
    release(&r);
    b.opset = 13;
    b.ir = 10;
    r = import_mb(&b, NULL);
    CHECK(r.st == KILN_ERR_UNSUPPORTED && strstr(kiln_last_error(), "IR version 10"), "IR 10: %s", kiln_last_error());
    release(&r);
    b.ir = 2;
    r = import_mb(&b, NULL);
    CHECK(r.st == KILN_ERR_UNSUPPORTED && strstr(kiln_last_error(), "IR version 2"), "IR 2: %s", kiln_last_error());
    release(&r);
    mb_free(&b);
}

/* ---- a node reading an undefined value, a duplicate output ---- */

static void test_bad_graph(void) {
    int64_t xd[1] = {4};
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 1, xd);
    mb_node(&b, "Relu", "r1", "ghost", "a");
    mb_node(&b, "Relu", "r2", "x", "b");
    mb_node(&b, "Relu", "r3", "x", "b");
    mb_output(&b, "b");
    imported r = import_mb(&b, NULL);
    CHECK(r.st == KILN_ERR_FORMAT && any_error_has(r.p, "'ghost'") && any_error_has(r.p, "produced twice"),
          "undefined input and duplicate output: %s", kiln_last_error());
    release(&r);
    mb_free(&b);
}

/* ---- .pb tensor files ---- */

static void test_tensor_files(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/t.pb", tmpdir);
    float x[6];
    th_fill(x, 6, -1, 1);
    kiln_dims d = kiln_dims_make(2, (int64_t[]){2, 3});
    CHECK_OK(kiln_onnx_write_tensor_file(path, "input_0", KILN_FLOAT32, d, x));
    char *name = NULL;
    kiln_dtype dt;
    kiln_dims rd;
    void *data = NULL;
    CHECK_OK(kiln_onnx_read_tensor_file(path, &name, &dt, &rd, &data));
    CHECK(name && strcmp(name, "input_0") == 0, "name round trip");
    CHECK(dt == KILN_FLOAT32 && rd.nb_dims == 2 && rd.d[0] == 2 && rd.d[1] == 3, "dtype/dims round trip");
    CHECK(data && memcmp(data, x, sizeof x) == 0, "data round trip");
    free(name);
    free(data);
    int64_t iv[3] = {-5, 0, 1ll << 40};
    CHECK_OK(kiln_onnx_write_tensor_file(path, NULL, KILN_INT64, kiln_dims_make(1, (int64_t[]){3}), iv));
    CHECK_OK(kiln_onnx_read_tensor_file(path, &name, &dt, &rd, &data));
    CHECK(name == NULL && dt == KILN_INT64 && data && memcmp(data, iv, sizeof iv) == 0, "int64 round trip");
    free(data);
    /* garbage */
    write_file(path, "\x0a\xff\xff\xff\xff\x0f", 6);
    data = NULL;
    CHECK(kiln_onnx_read_tensor_file(path, NULL, &dt, &rd, &data) != KILN_OK && data == NULL &&
              strstr(kiln_last_error(), path),
          "corrupt tensor file: %s", kiln_last_error());
    unlink(path);
}

/* ---- model facts without importing (kiln_onnx_read_model_info) ---- */

/* Prepends field `field` (length-delimited) around buf[at..end): buf is filled from the
 * back. Returns the new start. */
static size_t wrap_ld(uint8_t *buf, size_t at, size_t end, int field) {
    size_t n = end - at;
    uint8_t v[10];
    int k = 0;
    do {
        v[k++] = (uint8_t)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
        n >>= 7;
    } while (n);
    for (int i = k - 1; i >= 0; i--) buf[--at] = v[i];
    buf[--at] = (uint8_t)(field << 3 | 2);
    return at;
}

/* A model whose graph nests graph -> node -> attribute -> graph `levels` times: valid
 * protobuf that a recursive decoder would need a deep stack for. malloc'd. */
static uint8_t *nesting_bomb(int levels, size_t *len) {
    size_t cap = (size_t)levels * 3 * 6 + 32, end = cap, at = cap;
    uint8_t *buf = malloc(cap);
    for (int i = 0; i < levels; i++) {
        at = wrap_ld(buf, at, end, 6); /* AttributeProto.g */
        at = wrap_ld(buf, at, end, 5); /* NodeProto.attribute */
        at = wrap_ld(buf, at, end, 1); /* GraphProto.node */
    }
    at = wrap_ld(buf, at, end, 7); /* ModelProto.graph */
    buf[--at] = 0x07;
    buf[--at] = 0x08; /* ir_version 7 */
    *len = end - at;
    memmove(buf, buf + at, *len);
    return buf;
}

static void test_model_info(void) {
    int64_t xd[3] = {-1, 3, 8}, wd[2] = {8, 4}, big[9] = {1, 1, 1, 1, 1, 1, 1, 1, 2};
    float w[32];
    th_fill(w, 32, -1, 1);
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 3, xd);
    mb_input(&b, "w", 2, wd); /* also an initializer: a constant, not an input */
    mb_init_f(&b, "w", 2, wd, w);
    b.ins[b.nin++] = mb_vi(&b, "ids", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 9, big);
    Onnx__ValueInfoProto *seq = mb_vi(&b, "seq", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, -1, NULL);
    Onnx__TypeProto__Sequence *st = mb_alloc(&b, sizeof *st);
    onnx__type_proto__sequence__init(st);
    st->elem_type = mb_vi(&b, "elem", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, -1, NULL)->type;
    seq->type->value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE; /* a sequence of float tensors */
    seq->type->sequence_type = st;
    b.ins[b.nin++] = seq;
    b.ins[b.nin++] = mb_vi(&b, "words", ONNX__TENSOR_PROTO__DATA_TYPE__STRING, 0, NULL);
    mb_node(&b, "MatMul", "mm", "x,w", "a");
    mb_node(&b, "Relu", "r1", "a", "b");
    mb_node(&b, "Relu", "r2", "b", "c");
    Onnx__NodeProto *f = mb_node(&b, "Relu", "fancy", "c", "d");
    f->domain = mb_str(&b, "com.example");
    mb_node(&b, "Abs", "abs", "d", "y");
    mb_output(&b, "y");
    size_t len;
    uint8_t *bytes = mb_pack(&b, &len);

    kiln_onnx_model_info *mi = NULL;
    CHECK_OK(kiln_onnx_read_model_info(bytes, len, &mi));
    if (mi) {
        CHECK(mi->ir_version == 8 && strcmp(mi->producer_name, "kiln-test") == 0 && strcmp(mi->producer_version, "") == 0 &&
                  strcmp(mi->graph_name, "test") == 0,
              "model header: ir %lld producer '%s' graph '%s'", (long long)mi->ir_version, mi->producer_name,
              mi->graph_name);
        CHECK(mi->nb_opsets == 1 && strcmp(mi->opsets[0].domain, "ai.onnx") == 0 && mi->opsets[0].version == 13,
              "opsets");
        CHECK(mi->nb_inputs == 4, "initializer 'w' must not count as an input: %d inputs", mi->nb_inputs);
        const kiln_onnx_value_info *x = &mi->inputs[0];
        CHECK(strcmp(x->name, "x") == 0 && x->kind == KILN_ONNX_VALUE_TENSOR && x->onnx_type == 1 &&
                  strcmp(x->type_name, "float32") == 0 && x->dtype_known && x->dtype == KILN_FLOAT32,
              "input x: name '%s' type %s", x->name, x->type_name);
        CHECK(x->has_shape && x->rank == 3 && x->dims[0] == -1 && x->dim_names[0] && strcmp(x->dim_names[0], "N") == 0 &&
                  x->dims[1] == 3 && x->dims[2] == 8 && !x->dim_names[1],
              "x shape: symbolic first dimension named N, then 3x8");
        const kiln_onnx_value_info *ids = &mi->inputs[1];
        CHECK(strcmp(ids->name, "ids") == 0 && ids->rank == 9 && ids->dims[7] == 1 && ids->dtype == KILN_INT64 &&
                  strcmp(ids->type_name, "int64") == 0,
              "rank 9 input: rank %d", ids->rank);
        const kiln_onnx_value_info *sq = &mi->inputs[2];
        CHECK(strcmp(sq->name, "seq") == 0 && sq->kind == KILN_ONNX_VALUE_SEQUENCE && !sq->has_shape &&
                  strcmp(sq->type_name, "undefined") == 0,
              "sequence input: kind %d", (int)sq->kind);
        const kiln_onnx_value_info *wd2 = &mi->inputs[3];
        CHECK(strcmp(wd2->name, "words") == 0 && !wd2->dtype_known && strcmp(wd2->type_name, "string") == 0 &&
                  wd2->has_shape && wd2->rank == 0,
              "string scalar input: %s rank %d", wd2->type_name, wd2->rank);
        CHECK(mi->nb_outputs == 1 && strcmp(mi->outputs[0].name, "y") == 0 && !mi->outputs[0].has_shape, "outputs");
        CHECK(mi->nb_nodes == 5 && mi->nb_initializers == 1 && mi->initializer_bytes == 32 * 4,
              "nodes %d, initializers %d (%lld bytes)", mi->nb_nodes, mi->nb_initializers,
              (long long)mi->initializer_bytes);
        /* by count, then by name: Relu x2, then Abs, MatMul, Relu of com.example */
        CHECK(mi->nb_ops == 4, "op kinds: %d", mi->nb_ops);
        if (mi->nb_ops == 4) {
            CHECK(strcmp(mi->ops[0].op_type, "Relu") == 0 && mi->ops[0].count == 2 &&
                      strcmp(mi->ops[0].domain, "ai.onnx") == 0,
                  "first op: %s x%d", mi->ops[0].op_type, mi->ops[0].count);
            CHECK(strcmp(mi->ops[1].op_type, "Abs") == 0 && strcmp(mi->ops[2].op_type, "MatMul") == 0 &&
                      strcmp(mi->ops[3].op_type, "Relu") == 0 && strcmp(mi->ops[3].domain, "com.example") == 0 &&
                      mi->ops[3].count == 1,
                  "op order: %s %s %s/%s", mi->ops[1].op_type, mi->ops[2].op_type, mi->ops[3].op_type, mi->ops[3].domain);
        }
        kiln_onnx_model_info_destroy(mi);
    }

    /* the file variant gives the same facts; its messages name the file */
    char path[512];
    snprintf(path, sizeof path, "%s/info.onnx", tmpdir);
    write_file(path, bytes, len);
    mi = NULL;
    CHECK_OK(kiln_onnx_read_model_info_file(path, &mi));
    CHECK(mi && mi->nb_inputs == 4 && mi->nb_ops == 4, "model info from a file");
    kiln_onnx_model_info_destroy(mi);
    unlink(path);
    mi = (kiln_onnx_model_info *)&b; /* must be reset on failure */
    CHECK(kiln_onnx_read_model_info_file(path, &mi) == KILN_ERR_IO && mi == NULL && strstr(kiln_last_error(), path),
          "missing file: %s", kiln_last_error());

    /* not a model: truncated protobuf, garbage, nesting bombs */
    CHECK(kiln_onnx_read_model_info(bytes, len / 2, &mi) == KILN_ERR_FORMAT && mi == NULL &&
              strstr(kiln_last_error(), "<memory>: not an ONNX model"),
          "truncated model: %s", kiln_last_error());
    static const uint8_t junk[] = "this is not a model";
    CHECK(kiln_onnx_read_model_info(junk, sizeof junk - 1, &mi) == KILN_ERR_FORMAT, "junk: %s", kiln_last_error());
    size_t dl = 0;
    uint8_t *deep = nesting_bomb(3000, &dl);
    CHECK(kiln_onnx_read_model_info(deep, dl, &mi) == KILN_ERR_FORMAT && strstr(kiln_last_error(), "nested more than"),
          "nesting bomb: %s", kiln_last_error());
    free(deep);
    static const uint8_t nograph[] = {0x08, 0x07}; /* ir_version 7 and nothing else */
    CHECK(kiln_onnx_read_model_info(nograph, sizeof nograph, &mi) == KILN_ERR_FORMAT && strstr(kiln_last_error(), "no graph"),
          "no graph: %s", kiln_last_error());
    CHECK(kiln_onnx_read_model_info(NULL, 4, &mi) == KILN_ERR_INVALID_ARGUMENT &&
              kiln_onnx_read_model_info(bytes, len, NULL) == KILN_ERR_INVALID_ARGUMENT,
          "NULL arguments");
    kiln_onnx_model_info_destroy(NULL);
    free(bytes);
    mb_free(&b);
}

/* ---- kiln_onnx_error_value: the model input to freeze ---- */

static void test_error_value(void) {
    int64_t xd[2] = {3, 4}, sd[1] = {2};
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 2, xd);
    b.ins[b.nin++] = mb_vi(&b, "shape", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, sd);
    b.ins[b.nin++] = mb_vi(&b, "axes", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, (int64_t[]){1});
    b.ins[b.nin++] = mb_vi(&b, "k", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, (int64_t[]){1});
    mb_node(&b, "Reshape", "direct", "x,shape", "r1");          /* the input itself */
    mb_node(&b, "Identity", "alias", "axes", "axes2");          /* an alias of an input */
    mb_node(&b, "Unsqueeze", "via_alias", "x,axes2", "r2");
    mb_node(&b, "Neg", "computed", "k", "k2");                  /* computed from an input */
    mb_node(&b, "Unsqueeze", "via_computed", "x,k2", "r3");
    mb_node(&b, "FancyOp", "fancy", "x", "r4");                 /* another kind of problem */
    mb_node(&b, "Sum", "sum", "r1,r2,r3,r4", "y");
    mb_output(&b, "y");
    imported r = import_mb(&b, NULL);
    CHECK(r.st == KILN_ERR_UNSUPPORTED, "status %s: %s", kiln_status_string(r.st), kiln_last_error());
    int n = kiln_onnx_num_errors(r.p), seen = 0;
    for (int i = 0; i < n; i++) {
        const char *e = kiln_onnx_error(r.p, i), *v = kiln_onnx_error_value(r.p, i);
        if (strstr(e, "node 'direct'")) {
            CHECK(v && strcmp(v, "shape") == 0, "Reshape of a model input: value %s", v ? v : "NULL");
            seen |= 1;
        } else if (strstr(e, "node 'via_alias'")) {
            CHECK(v && strcmp(v, "axes") == 0, "through an Identity: value %s (%s)", v ? v : "NULL", e);
            seen |= 2;
        } else if (strstr(e, "node 'via_computed'")) {
            CHECK(v && strcmp(v, "k") == 0, "computed from an input: value %s (%s)", v ? v : "NULL", e);
            seen |= 4;
        } else if (strstr(e, "node 'fancy'")) {
            CHECK(v == NULL, "an unsupported op names no value: %s", v);
            seen |= 8;
        }
    }
    CHECK(seen == 15, "expected problems on direct, via_alias, via_computed and fancy (seen %d of %d problems)", seen, n);
    CHECK(kiln_onnx_error_value(r.p, n) == NULL && kiln_onnx_error_value(r.p, -1) == NULL &&
              kiln_onnx_error_value(NULL, 0) == NULL,
          "out-of-range error value");
    release(&r);
    mb_free(&b);
}

/* ---- the importer's tensor-name index: names that collide with internal ones ---- */

static void test_name_collisions(void) {
    int64_t xd[2] = {2, 5};
    float x[10];
    th_fill(x, 10, -1, 1);
    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 2, xd);
    /* Sum of three inputs accumulates through a helper layer with an internal name
     * (onnx_tmp_N); the model's own values take that name and a default layer-output name */
    mb_node(&b, "Sum", "sum", "x,x,x", "onnx_tmp_0");
    mb_node(&b, "Relu", "relu", "onnx_tmp_0", "tensor_1");
    mb_node(&b, "Neg", "neg", "tensor_1", "onnx_tmp_1");
    mb_node(&b, "Abs", "abs", "onnx_tmp_1", "y");
    mb_output(&b, "y");
    imported keep;
    void *in[1] = {x};
    kiln_dims od;
    float *y = run_mb(&b, NULL, in, &od, &keep);
    if (y) {
        double ref[10];
        for (int i = 0; i < 10; i++) ref[i] = fabs(-fmax(3.0 * x[i], 0));
        th_check_close("names colliding with internal ones", y, ref, 10, 1e-6);
    }
    free(y);
    if (keep.st == KILN_OK) {
        const char *want[3][2] = {{"relu", "tensor_1"}, {"neg", "onnx_tmp_1"}, {"sum", "onnx_tmp_0"}};
        for (int k = 0; k < 3; k++) {
            kiln_tensor *t = kiln_network_find_tensor(keep.net, want[k][1]);
            bool found = false;
            for (int i = 0; i < kiln_network_num_layers(keep.net); i++) {
                kiln_layer *l = kiln_network_layer(keep.net, i);
                if (strcmp(kiln_layer_name(l), want[k][0]) == 0) found = t && kiln_layer_output(l, 0) == t;
            }
            CHECK(found, "tensor '%s' must be the output of layer '%s'", want[k][1], want[k][0]);
        }
    }
    release(&keep);

    /* a network input that predates the parser holds the first internal name: the importer
     * must know it, or naming its helper tensor fails */
    size_t len;
    uint8_t *bytes = mb_pack(&b, &len);
    imported r;
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    CHECK(kiln_network_add_input(r.net, "onnx_tmp_2", KILN_FLOAT32, kiln_dims_make(1, (int64_t[]){2})) != NULL,
          "pre-existing input: %s", kiln_last_error());
    r.st = kiln_onnx_parser_create(r.net, NULL, &r.p);
    if (r.st == KILN_OK) r.st = kiln_onnx_parse_memory(r.p, bytes, len, NULL);
    CHECK(r.st == KILN_OK, "import next to a pre-existing input named like an internal tensor: %s", kiln_last_error());
    kiln_tensor *pre = kiln_network_find_tensor(r.net, "onnx_tmp_2");
    CHECK(pre && pre == kiln_network_input(r.net, 0), "the pre-existing input keeps its name");
    release(&r);
    free(bytes);
    mb_free(&b);

    /* a long chain grows the index many times over: every value keeps its name */
    enum { N = 1500 };
    mb c;
    mb_init(&c, 13);
    Onnx__NodeProto **nodes = malloc(N * sizeof *nodes);
    char a[32], o[32];
    for (int i = 0; i < N; i++) {
        snprintf(a, sizeof a, i ? "t%d" : "x", i - 1);
        snprintf(o, sizeof o, i == N - 1 ? "y" : "t%d", i);
        Onnx__NodeProto *nd = mb_alloc(&c, sizeof *nd);
        onnx__node_proto__init(nd);
        nd->op_type = mb_str(&c, "Neg");
        snprintf(o + 16, 16, "n%d", i);
        nd->name = mb_str(&c, o + 16);
        nd->n_input = mb_split(&c, a, &nd->input);
        nd->n_output = mb_split(&c, o, &nd->output);
        nodes[i] = nd;
    }
    mb_input(&c, "x", 2, xd);
    mb_output(&c, "y");
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    g.name = "chain";
    g.n_node = N;
    g.node = nodes;
    g.n_input = 1;
    g.input = c.ins;
    g.n_output = 1;
    g.output = c.outs;
    Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT, *osp = &os;
    os.domain = "";
    os.has_version = 1;
    os.version = 13;
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.graph = &g;
    m.n_opset_import = 1;
    m.opset_import = &osp;
    len = onnx__model_proto__get_packed_size(&m);
    bytes = malloc(len);
    onnx__model_proto__pack(&m, bytes);
    r = import_bytes(bytes, len, NULL, NULL);
    CHECK(r.st == KILN_OK, "chain of %d nodes: %s", N, kiln_last_error());
    if (r.st == KILN_OK) {
        int bad = 0;
        for (int i = 0; i < N - 1; i += 7) {
            snprintf(o, sizeof o, "t%d", i);
            kiln_tensor *t = kiln_network_find_tensor(r.net, o);
            kiln_layer *l = kiln_network_layer(r.net, i);
            bad += !t || !l || kiln_layer_output(l, 0) != t;
        }
        CHECK(bad == 0, "%d chain values lost their layer's output", bad);
        void *outs[1] = {NULL};
        kiln_status st = th_run(r.b, r.net, in, outs, &od);
        CHECK(st == KILN_OK, "chain run: %s", kiln_last_error());
        if (st == KILN_OK) {
            double ref[10];
            for (int i = 0; i < 10; i++) ref[i] = N % 2 ? -(double)x[i] : x[i];
            th_check_close("chain of Neg", outs[0], ref, 10, 1e-7);
        }
        free(outs[0]);
    }
    release(&r);
    free(bytes);
    free(nodes);
    mb_free(&c);
}

/* ---- the backend-test runner (kiln_onnx_test_run, kiln_onnx_test_list) ---- */

static void write_tensor(const char *dir, const char *file, const char *name, kiln_dtype dt, kiln_dims d, const void *v) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    CHECK_OK(kiln_onnx_write_tensor_file(p, name, dt, d, v));
}

/* dir/model.onnx from b, and dir/test_data_set_0 */
static void write_test(const char *dir, mb *b, char *set, size_t setsz) {
    mkdir(dir, 0700);
    char p[600];
    snprintf(p, sizeof p, "%s/model.onnx", dir);
    size_t len;
    uint8_t *bytes = mb_pack(b, &len);
    write_file(p, bytes, len);
    free(bytes);
    snprintf(set, setsz, "%s/test_data_set_0", dir);
    mkdir(set, 0700);
}

static void rm_test(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cannot remove %s", dir);
}

static kiln_onnx_test_result run_one(const char *dir, const kiln_onnx_test_desc *d, int *frozen, char *msg, size_t msz) {
    kiln_onnx_test_result res = (kiln_onnx_test_result)-1;
    int nf = -1;
    CHECK_OK(kiln_onnx_test_run(dir, d, &res, &nf, msg, msz));
    if (frozen) *frozen = nf;
    return res;
}

static void test_backend_runner(void) {
    char root[400], pass[500], fail[500], skip[500], frz[500], set[600], msg[2048];
    snprintf(root, sizeof root, "%s/backend", tmpdir);
    mkdir(root, 0700);
    snprintf(pass, sizeof pass, "%s/test_relu_pass", root);
    snprintf(fail, sizeof fail, "%s/test_relu_fail", root);
    snprintf(skip, sizeof skip, "%s/test_fancy_skip", root);
    snprintf(frz, sizeof frz, "%s/test_reshape_frozen", root);
    kiln_dims d = kiln_dims_make(2, (int64_t[]){3, 4});
    float x[12], y[12];
    th_fill(x, 12, -1, 1);
    for (int i = 0; i < 12; i++) y[i] = x[i] > 0 ? x[i] : 0;

    mb b;
    mb_init(&b, 13);
    mb_input(&b, "x", 2, (int64_t[]){3, 4});
    mb_node(&b, "Relu", "relu", "x", "y");
    mb_output(&b, "y");
    write_test(pass, &b, set, sizeof set);
    write_tensor(set, "input_0.pb", "x", KILN_FLOAT32, d, x);
    write_tensor(set, "output_0.pb", "y", KILN_FLOAT32, d, y);
    write_test(fail, &b, set, sizeof set);
    write_tensor(set, "input_0.pb", NULL, KILN_FLOAT32, d, x); /* unnamed: fed by position */
    float ywrong[12];
    memcpy(ywrong, y, sizeof y);
    ywrong[5] += 0.01f;
    write_tensor(set, "output_0.pb", "y", KILN_FLOAT32, d, ywrong);
    mb_free(&b);

    mb_init(&b, 13);
    mb_input(&b, "x", 2, (int64_t[]){3, 4});
    mb_node(&b, "FancyOp", "fancy", "x", "y");
    mb_output(&b, "y");
    write_test(skip, &b, set, sizeof set);
    write_tensor(set, "input_0.pb", "x", KILN_FLOAT32, d, x);
    write_tensor(set, "output_0.pb", "y", KILN_FLOAT32, d, y);
    mb_free(&b);

    /* a Reshape target fed as a model input, through a computation: frozen to the data */
    mb_init(&b, 13);
    mb_input(&b, "x", 2, (int64_t[]){3, 4});
    b.ins[b.nin++] = mb_vi(&b, "shape", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, (int64_t[]){2});
    mb_node(&b, "Abs", "abs", "shape", "shape2");
    mb_node(&b, "Reshape", "reshape", "x,shape2", "y");
    mb_output(&b, "y");
    write_test(frz, &b, set, sizeof set);
    int64_t target[2] = {-6, 2}; /* Abs makes it 6x2 */
    write_tensor(set, "input_0.pb", "x", KILN_FLOAT32, d, x);
    write_tensor(set, "input_1.pb", "shape", KILN_INT64, kiln_dims_make(1, (int64_t[]){2}), target);
    write_tensor(set, "output_0.pb", "y", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){6, 2}), x);
    mb_free(&b);

    kiln_onnx_test_desc desc = KILN_ONNX_TEST_DESC_INIT;
    int nf = -1;
    CHECK(run_one(pass, &desc, &nf, msg, sizeof msg) == KILN_ONNX_TEST_PASS && nf == 0 && msg[0] == 0,
          "relu test must pass: %s", msg);
    CHECK(run_one(fail, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_FAIL &&
              strstr(msg, "test_data_set_0: output 'y': 1 of 12 values differ (first at 5"),
          "a wrong value must fail, naming the output and the element: %s", msg);
    CHECK(run_one(skip, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_SKIP &&
              strstr(msg, "op 'FancyOp' is not supported") && !strstr(msg, "model.onnx"),
          "an unsupported op must skip, with the reason and without the path: %s", msg);
    CHECK(run_one(frz, &desc, &nf, msg, sizeof msg) == KILN_ONNX_TEST_PASS && nf == 1 &&
              strcmp(msg, "frozen inputs: shape") == 0,
          "a shape computed from a model input must be frozen: %s (%d frozen)", msg, nf);
    desc.freeze = 0;
    CHECK(run_one(frz, &desc, &nf, msg, sizeof msg) == KILN_ONNX_TEST_SKIP && nf == 0 && strstr(msg, "'shape'"),
          "without freezing the same test is skipped: %s", msg);
    desc.freeze = 1;

    /* tolerances: the 0.01 error passes with atol 0.02, fails with 0.005; relative L2 */
    desc.atol = 0.02;
    CHECK(run_one(fail, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_PASS, "atol 0.02: %s", msg);
    desc.atol = 0.005;
    CHECK(run_one(fail, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_FAIL, "atol 0.005: %s", msg);
    desc.atol = -1;
    desc.rel_l2 = 0.5;
    CHECK(run_one(fail, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_PASS, "rel L2 0.5: %s", msg);
    desc.rel_l2 = 1e-6;
    CHECK(run_one(fail, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_FAIL && strstr(msg, "relative L2 error"),
          "rel L2 1e-6: %s", msg);
    desc.rel_l2 = 0;

    /* in a child process: same outcomes, message and count through the pipe */
    desc.isolate = 1;
    desc.timeout_s = 60;
    CHECK(run_one(frz, &desc, &nf, msg, sizeof msg) == KILN_ONNX_TEST_PASS && nf == 1 &&
              strcmp(msg, "frozen inputs: shape") == 0,
          "isolated frozen test: %s", msg);
    CHECK(run_one(fail, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_FAIL && strstr(msg, "output 'y'"),
          "isolated failing test: %s", msg);
    desc.isolate = 0;

    /* data sets that disagree on the frozen value: nothing to freeze it to */
    char set1[600];
    snprintf(set1, sizeof set1, "%s/test_data_set_1", frz);
    mkdir(set1, 0700);
    int64_t other[2] = {4, 3};
    write_tensor(set1, "input_0.pb", "x", KILN_FLOAT32, d, x);
    write_tensor(set1, "input_1.pb", "shape", KILN_INT64, kiln_dims_make(1, (int64_t[]){2}), other);
    write_tensor(set1, "output_0.pb", "y", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){4, 3}), x);
    CHECK(run_one(frz, &desc, &nf, msg, sizeof msg) == KILN_ONNX_TEST_SKIP && nf == 0,
          "data sets that disagree on a shape input cannot freeze it: %s", msg);

    /* a data type kiln has no dtype for: skipped */
    char p[700];
    snprintf(p, sizeof p, "%s/test_data_set_0/input_0.pb", pass);
    static const uint8_t string_tensor[] = {0x08, 0x01, 0x10, 0x08, 0x32, 0x01, 'a'}; /* dims [1], STRING, "a" */
    write_file(p, string_tensor, sizeof string_tensor);
    CHECK(run_one(pass, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_SKIP && strstr(msg, "STRING"),
          "string test data: %s", msg);
    /* corrupt test data fails */
    write_file(p, "\x0a\xff\xff\xff\xff\x0f", 6);
    CHECK(run_one(pass, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_FAIL && strstr(msg, "input_0.pb"),
          "corrupt test data: %s", msg);
    /* a directory without data sets, and a missing model */
    char empty[500];
    snprintf(empty, sizeof empty, "%s/test_nodata", root);
    mb_init(&b, 13);
    mb_input(&b, "x", 2, (int64_t[]){3, 4});
    mb_node(&b, "Relu", "relu", "x", "y");
    mb_output(&b, "y");
    write_test(empty, &b, set, sizeof set);
    rmdir(set);
    mb_free(&b);
    CHECK(run_one(empty, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_FAIL && strstr(msg, "no test_data_set"),
          "no data sets: %s", msg);
    CHECK(run_one(root, &desc, NULL, msg, sizeof msg) == KILN_ONNX_TEST_FAIL && strstr(msg, "model.onnx"),
          "no model: %s", msg);

    /* arguments */
    kiln_onnx_test_result res;
    CHECK(kiln_onnx_test_run(NULL, &desc, &res, NULL, msg, sizeof msg) == KILN_ERR_INVALID_ARGUMENT, "NULL dir");
    CHECK(kiln_onnx_test_run(pass, &desc, NULL, NULL, msg, sizeof msg) == KILN_ERR_INVALID_ARGUMENT, "NULL result");
    kiln_onnx_test_desc small = desc;
    small.size = 8;
    CHECK(kiln_onnx_test_run(pass, &small, &res, NULL, msg, sizeof msg) == KILN_ERR_INVALID_ARGUMENT, "desc too small");
    CHECK(kiln_onnx_test_run(pass, NULL, &res, NULL, NULL, 0) == KILN_OK && res == KILN_ONNX_TEST_FAIL,
          "NULL desc and message: the defaults");

    /* discovery: the tests under a directory, sorted; a test directory is itself */
    char **dirs = NULL;
    int n = -1;
    mkdir(p, 0700); /* not a test: holds no model.onnx */
    CHECK_OK(kiln_onnx_test_list(root, &dirs, &n));
    CHECK(n == 5 && dirs && strstr(dirs[0], "/test_fancy_skip") && strstr(dirs[1], "/test_nodata") &&
              strstr(dirs[2], "/test_relu_fail") && strstr(dirs[3], "/test_relu_pass") &&
              strstr(dirs[4], "/test_reshape_frozen"),
          "test list under %s: %d entries", root, n);
    kiln_onnx_test_list_free(dirs, n);
    CHECK_OK(kiln_onnx_test_list(pass, &dirs, &n));
    CHECK(n == 1 && strcmp(dirs[0], pass) == 0, "a test directory lists itself");
    kiln_onnx_test_list_free(dirs, n);
    snprintf(p, sizeof p, "%s/nowhere", root);
    CHECK(kiln_onnx_test_list(p, &dirs, &n) == KILN_ERR_IO && dirs == NULL && n == 0 &&
              strstr(kiln_last_error(), "not a directory"),
          "missing directory: %s", kiln_last_error());
    CHECK(kiln_onnx_test_list(root, NULL, &n) == KILN_ERR_INVALID_ARGUMENT, "NULL dirs");
    rm_test(root);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln_onnx_test_%d", (int)getpid());
    mkdir(tmpdir, 0700);
    test_valid_conv();
    test_conv1d();
    test_legacy_softmax();
    test_gelu();
    test_fold_missing_input();
    test_range_mixed_dtypes();
    test_shape_chain();
    test_folding();
    test_legacy_broadcast();
    test_desc_shapes_and_frozen();
    test_external_data();
    test_truncated_and_garbage();
    test_unsupported_nodes();
    test_versions();
    test_bad_graph();
    test_tensor_files();
    test_model_info();
    test_error_value();
    test_name_collisions();
    test_backend_runner();
    rmdir(tmpdir);
    return th_exit("test_onnx_import");
}
#endif
