/* kiln tests: the ONNX importer. Models are built in memory with the protobuf-c types
 * and packed, then parsed: numeric checks of mapped ops against float64 references
 * (Conv1d, legacy Softmax, GELU fusion, shape-chain folding, external data, frozen
 * inputs, legacy broadcast) and error paths (truncated and random bytes, PNG header,
 * several unsupported nodes, missing or escaping external data, unsupported opset and
 * IR versions, bad input shapes), each giving a non-OK status and a message naming
 * the file or node. */
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
    imported r;
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    kiln_onnx_parser_create(r.net, NULL, &r.p);
    r.st = kiln_onnx_parse_file(r.p, model);
    CHECK(r.st != KILN_OK && any_error_has(r.p, "weights.bin") && strstr(kiln_last_error(), model),
          "missing external data must be reported with the file: %s", kiln_last_error());
    release(&r);

    /* present: 16 bytes of padding then the weights */
    uint8_t file[16 + sizeof w];
    memset(file, 0x55, 16);
    memcpy(file + 16, w, sizeof w);
    write_file(weights, file, sizeof file);
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    kiln_onnx_parser_create(r.net, NULL, &r.p);
    r.st = kiln_onnx_parse_file(r.p, model);
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
    r.b = th_builder();
    kiln_network_create(r.b, &r.net);
    kiln_onnx_parser_create(r.net, NULL, &r.p);
    r.st = kiln_onnx_parse_file(r.p, model);
    CHECK(r.st == KILN_ERR_FORMAT && any_error_has(r.p, "too short"), "short external data: %s", kiln_last_error());
    release(&r);

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

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln_onnx_test_%d", (int)getpid());
    mkdir(tmpdir, 0700);
    test_valid_conv();
    test_conv1d();
    test_legacy_softmax();
    test_gelu();
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
    rmdir(tmpdir);
    return th_exit("test_onnx_import");
}
#endif
