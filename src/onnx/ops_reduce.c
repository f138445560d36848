/* kiln ONNX importer: Softmax/LogSoftmax (with the opset<13 flatten-to-2D meaning),
 * the Reduce* family, ArgMax/ArgMin, and LayerNormalization expressed with reductions
 * and element-wise layers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "onnx_internal.h"

static kiln_status finish1(ox_node *n, kiln_layer *l, const char *what) {
    if (!l) return ox_layer_failed(n, what);
    kiln_status st = ox_main_layer(n, l);
    if (st == KILN_OK) st = ox_set_out(n, 0, kiln_layer_output(l, 0));
    return st;
}

static kiln_tensor *aux(ox_node *n, kiln_layer *l, const char *suffix, const char *what) {
    if (!l) {
        ox_layer_failed(n, what);
        return NULL;
    }
    return ox_aux_layer(n, l, suffix) == KILN_OK ? kiln_layer_output(l, 0) : NULL;
}

/* ---- Softmax ---- */

/* Before opset 13 softmax treated the input as 2-D: [d0*..*d(axis-1), d(axis)*..*dn].
 * That equals a softmax over `axis` only when axis is the last one; otherwise
 * reshape, softmax over the flattened tail, reshape back. */
static kiln_status map_softmax(ox_node *n) {
    int log = strcmp(n->n->op_type, "LogSoftmax") == 0;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int64_t axis = ox_attr_i(n, "axis", n->opset < 13 ? 1 : -1);
    if (n->opset >= 13) return finish1(n, kiln_network_add_softmax(n->p->net, x, (int)axis, log), "softmax");
    kiln_dims d;
    kiln_status st = ox_in_known_dims(n, 0, &d);
    if (st != KILN_OK) return st;
    int r = d.nb_dims;
    int a = r == 0 ? 0 : ox_axis(axis, r);
    if (a < 0)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range for rank %d", (long long)axis, r);
    if (r == 0 || a == r - 1) return finish1(n, kiln_network_add_softmax(n->p->net, x, a, log), "softmax");
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++) outer *= d.d[i];
    for (int i = a; i < r; i++) inner *= d.d[i];
    kiln_tensor *f = ox_reshape(n, x, kiln_dims_make(2, (int64_t[]){outer, inner}), "flatten");
    kiln_tensor *s = f ? aux(n, kiln_network_add_softmax(n->p->net, f, 1, log), "softmax", "softmax") : NULL;
    if (!s) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_reshape(n->p->net, s, d, 1), "reshape");
}

/* ---- Reduce* ---- */

static const struct {
    const char *name;
    kiln_reduce_op op;
} reduce_ops[] = {
    {"ReduceSum", KILN_REDUCE_SUM},        {"ReduceMean", KILN_REDUCE_MEAN},
    {"ReduceMax", KILN_REDUCE_MAX},        {"ReduceMin", KILN_REDUCE_MIN},
    {"ReduceProd", KILN_REDUCE_PROD},      {"ReduceL1", KILN_REDUCE_L1},
    {"ReduceL2", KILN_REDUCE_L2},          {"ReduceSumSquare", KILN_REDUCE_SUM_SQUARE},
    {"ReduceLogSum", KILN_REDUCE_LOG_SUM}, {"ReduceLogSumExp", KILN_REDUCE_LOG_SUM_EXP},
};

static kiln_reduce_op reduce_of(const ox_node *n) {
    for (size_t i = 0; i < sizeof reduce_ops / sizeof reduce_ops[0]; i++)
        if (strcmp(n->n->op_type, reduce_ops[i].name) == 0) return reduce_ops[i].op;
    return KILN_REDUCE_SUM;
}

/* Axes: an attribute, except ReduceSum from opset 13 (an optional input). *noop is set
 * when no axes were given and noop_with_empty_axes asks for identity. */
static kiln_status reduce_axes(ox_node *n, int64_t *axes, int *nb, bool *noop) {
    *noop = false;
    bool as_input = reduce_of(n) == KILN_REDUCE_SUM && n->opset >= 13;
    kiln_status st = KILN_OK;
    if (!as_input)
        st = ox_attr_ints(n, "axes", axes, KILN_MAX_DIMS, nb);
    else if (ox_has_in(n, 1))
        st = ox_in_ints(n, 1, "axes", axes, KILN_MAX_DIMS, nb);
    else
        *nb = 0;
    if (st == KILN_OK && *nb == 0 && ox_attr_i(n, "noop_with_empty_axes", 0)) *noop = true;
    return st;
}

static ox_fold_result fold_reduce(ox_node *n) {
    kiln_reduce_op op = reduce_of(n);
    if (op != KILN_REDUCE_SUM && op != KILN_REDUCE_MEAN && op != KILN_REDUCE_MAX && op != KILN_REDUCE_MIN &&
        op != KILN_REDUCE_PROD)
        return OX_FOLD_SKIP;
    int64_t axes[KILN_MAX_DIMS];
    int nb;
    bool noop;
    if (reduce_axes(n, axes, &nb, &noop) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    if (noop) return ox_set_const(n, 0, c) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
    int r = c->dims.nb_dims;
    bool red[KILN_MAX_DIMS] = {false};
    for (int i = 0; i < nb; i++) {
        int a = ox_axis(axes[i], r);
        if (a < 0) {
            ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range", (long long)axes[i]);
            return OX_FOLD_ERROR;
        }
        red[a] = true;
    }
    if (!nb)
        for (int i = 0; i < r; i++) red[i] = true;
    bool keep = ox_attr_i(n, "keepdims", 1) != 0;
    kiln_dims kd = c->dims, od;
    memset(&od, 0, sizeof od);
    for (int i = 0; i < r; i++) {
        if (red[i]) kd.d[i] = 1;
        if (!red[i] || keep) od.d[od.nb_dims++] = kd.d[i];
    }
    ox_const o;
    if (ox_const_new(n, c->dtype, od, &o) != KILN_OK) return OX_FOLD_ERROR;
    int64_t ost[KILN_MAX_DIMS];
    ox_strides(&kd, ost);
    bool fl = ox_dtype_is_float(c->dtype);
    double *acc = ox_alloc(n->p, (size_t)(o.count ? o.count : 1) * sizeof(double));
    int64_t *cnt = ox_alloc(n->p, (size_t)(o.count ? o.count : 1) * sizeof(int64_t));
    if (!acc || !cnt) {
        ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
        return OX_FOLD_ERROR;
    }
    for (int64_t i = 0; i < c->count; i++) {
        int64_t rem = i, dst = 0;
        for (int k = r - 1; k >= 0; k--) {
            int64_t coord = rem % c->dims.d[k];
            rem /= c->dims.d[k];
            if (!red[k]) dst += coord * ost[k];
        }
        double v = fl ? ox_get_f(c, i) : (double)ox_get_i(c, i);
        if (cnt[dst] == 0)
            acc[dst] = v;
        else if (op == KILN_REDUCE_SUM || op == KILN_REDUCE_MEAN)
            acc[dst] += v;
        else if (op == KILN_REDUCE_PROD)
            acc[dst] *= v;
        else if (op == KILN_REDUCE_MAX)
            acc[dst] = v > acc[dst] ? v : acc[dst];
        else
            acc[dst] = v < acc[dst] ? v : acc[dst];
        cnt[dst]++;
    }
    for (int64_t i = 0; i < o.count; i++) {
        double v = acc[i];
        if (cnt[i] == 0)
            v = op == KILN_REDUCE_PROD ? 1 : op == KILN_REDUCE_MAX ? -INFINITY : op == KILN_REDUCE_MIN ? INFINITY : 0;
        if (op == KILN_REDUCE_MEAN) v = cnt[i] ? v / (double)cnt[i] : NAN;
        if (fl)
            ox_set_f(&o, i, v);
        else
            ox_set_i(&o, i, (int64_t)v);
    }
    return ox_set_const(n, 0, &o) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static kiln_status map_reduce(ox_node *n) {
    int64_t axes[KILN_MAX_DIMS];
    int nb;
    bool noop;
    kiln_status st = reduce_axes(n, axes, &nb, &noop);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    if (noop) return ox_set_alias(n, 0, x);
    return finish1(n,
                   kiln_network_add_reduce(n->p->net, x, reduce_of(n), nb, nb ? axes : NULL,
                                           (int)(ox_attr_i(n, "keepdims", 1) != 0)),
                   "reduce");
}

/* ---- ArgMax, ArgMin ---- */

static kiln_status map_arg(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int is_min = strcmp(n->n->op_type, "ArgMin") == 0;
    return finish1(n,
                   kiln_network_add_arg_reduce(n->p->net, x, (int)ox_attr_i(n, "axis", 0),
                                               (int)(ox_attr_i(n, "keepdims", 1) != 0), is_min,
                                               (int)(ox_attr_i(n, "select_last_index", 0) != 0)),
                   "arg reduce");
}

/* ---- LayerNormalization (opset 17) ---- */

/* y = (x - mean) * invstd * scale + bias, invstd = 1 / sqrt(var + eps), over the axes
 * from `axis` on. The optional Mean and InvStdDev outputs are the intermediates. */
static kiln_status map_ln(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    kiln_tensor *scale = x ? ox_in_tensor(n, 1) : NULL;
    if (!scale) return KILN_ERR_INVALID_ARGUMENT;
    kiln_tensor *bias = NULL;
    if (ox_has_in(n, 2) && !(bias = ox_in_tensor(n, 2))) return KILN_ERR_INVALID_ARGUMENT;
    kiln_dims d = kiln_tensor_dims(x);
    if (d.nb_dims < 0) return ox_node_error(n, KILN_ERR_SHAPE, "the input rank is not known");
    int a = ox_axis(ox_attr_i(n, "axis", -1), d.nb_dims);
    if (a < 0) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis is out of range for rank %d", d.nb_dims);
    int64_t axes[KILN_MAX_DIMS];
    int nb = 0;
    for (int i = a; i < d.nb_dims; i++) axes[nb++] = i;
    kiln_dtype dt = kiln_tensor_dtype(x);
    kiln_network *net = n->p->net;
    kiln_tensor *mean = aux(n, kiln_network_add_reduce(net, x, KILN_REDUCE_MEAN, nb, axes, 1), "mean", "reduce");
    kiln_tensor *dev = mean ? ox_elt(n, x, mean, KILN_ELT_SUB, "centered") : NULL;
    kiln_tensor *sq = dev ? ox_elt(n, dev, dev, KILN_ELT_MUL, "squared") : NULL;
    kiln_tensor *var =
        sq ? aux(n, kiln_network_add_reduce(net, sq, KILN_REDUCE_MEAN, nb, axes, 1), "var", "reduce") : NULL;
    kiln_tensor *eps = var ? ox_scalar_tensor(n, dt, ox_attr_f(n, "epsilon", 1e-5f), "epsilon") : NULL;
    kiln_tensor *ve = eps ? ox_elt(n, var, eps, KILN_ELT_ADD, "var_eps") : NULL;
    kiln_tensor *sd = ve ? aux(n, kiln_network_add_unary(net, ve, KILN_UNARY_SQRT), "std", "sqrt") : NULL;
    kiln_tensor *inv =
        sd ? aux(n, kiln_network_add_unary(net, sd, KILN_UNARY_RECIPROCAL), "invstd", "reciprocal") : NULL;
    kiln_tensor *norm = inv ? ox_elt(n, dev, inv, KILN_ELT_MUL, "normalized") : NULL;
    if (!norm) return KILN_ERR_INVALID_ARGUMENT;
    kiln_status st = KILN_OK;
    if (ox_out_used(n, 1)) st = ox_set_out(n, 1, mean);
    if (st == KILN_OK && ox_out_used(n, 2)) st = ox_set_out(n, 2, inv);
    if (st != KILN_OK) return st;
    if (!bias) return finish1(n, kiln_network_add_elementwise(net, norm, scale, KILN_ELT_MUL), "scale");
    kiln_tensor *scaled = ox_elt(n, norm, scale, KILN_ELT_MUL, "scaled");
    if (!scaled) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_elementwise(net, scaled, bias, KILN_ELT_ADD), "bias");
}

const ox_op ox_ops_reduce[] = {
    {"Softmax", map_softmax, NULL, NULL},
    {"LogSoftmax", map_softmax, NULL, NULL},
    {"ReduceSum", map_reduce, NULL, fold_reduce},
    {"ReduceMean", map_reduce, NULL, fold_reduce},
    {"ReduceMax", map_reduce, NULL, fold_reduce},
    {"ReduceMin", map_reduce, NULL, fold_reduce},
    {"ReduceProd", map_reduce, NULL, fold_reduce},
    {"ReduceL1", map_reduce, NULL, NULL},
    {"ReduceL2", map_reduce, NULL, NULL},
    {"ReduceSumSquare", map_reduce, NULL, NULL},
    {"ReduceLogSum", map_reduce, NULL, NULL},
    {"ReduceLogSumExp", map_reduce, NULL, NULL},
    {"ArgMax", map_arg, NULL, NULL},
    {"ArgMin", map_arg, NULL, NULL},
    {"LayerNormalization", map_ln, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

const ox_op *ox_find_op(const char *op_type) {
    const ox_op *tables[] = {ox_ops_const, ox_ops_pointwise, ox_ops_tensor, ox_ops_conv, ox_ops_reduce};
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const ox_op *o = tables[t]; o->name; o++)
            if (strcmp(o->name, op_type) == 0) return o;
    return NULL;
}
