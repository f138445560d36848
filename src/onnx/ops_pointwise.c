/* kiln ONNX importer: element-wise ops. Activations, unary math, binary arithmetic,
 * comparisons and logic (with opset<7 legacy broadcasting), variadic Sum/Mean/Max/Min,
 * Clip, PRelu, Where; host folding of all of them on constants. */
#include <math.h>
#include <string.h>

#include "onnx_internal.h"

/* ---- activations ---- */

static kiln_status finish1(ox_node *n, kiln_layer *l, const char *what) {
    if (!l) return ox_layer_failed(n, what);
    kiln_status st = ox_main_layer(n, l);
    if (st == KILN_OK) st = ox_set_out(n, 0, kiln_layer_output(l, 0));
    return st;
}

static kiln_status act(ox_node *n, kiln_activation_type type, float alpha, float beta) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_activation(n->p->net, x, type, alpha, beta), "activation");
}

static kiln_status map_relu(ox_node *n) { return act(n, KILN_ACT_RELU, 0, 0); }
static kiln_status map_leaky(ox_node *n) { return act(n, KILN_ACT_LEAKY_RELU, ox_attr_f(n, "alpha", 0.01f), 0); }
static kiln_status map_sigmoid(ox_node *n) { return act(n, KILN_ACT_SIGMOID, 0, 0); }
static kiln_status map_tanh(ox_node *n) { return act(n, KILN_ACT_TANH, 0, 0); }
static kiln_status map_hsig(ox_node *n) {
    return act(n, KILN_ACT_HARD_SIGMOID, ox_attr_f(n, "alpha", 0.2f), ox_attr_f(n, "beta", 0.5f));
}
static kiln_status map_hswish(ox_node *n) { return act(n, KILN_ACT_HARD_SWISH, 0, 0); }
static kiln_status map_elu(ox_node *n) { return act(n, KILN_ACT_ELU, ox_attr_f(n, "alpha", 1.0f), 0); }
static kiln_status map_selu(ox_node *n) {
    return act(n, KILN_ACT_SELU, ox_attr_f(n, "alpha", 1.67326319217681884765625f),
               ox_attr_f(n, "gamma", 1.05070102214813232421875f));
}
static kiln_status map_softplus(ox_node *n) { return act(n, KILN_ACT_SOFTPLUS, 0, 0); }
static kiln_status map_softsign(ox_node *n) { return act(n, KILN_ACT_SOFTSIGN, 0, 0); }
static kiln_status map_thrrelu(ox_node *n) { return act(n, KILN_ACT_THRESHOLDED_RELU, ox_attr_f(n, "alpha", 1.0f), 0); }
static kiln_status map_mish(ox_node *n) { return act(n, KILN_ACT_MISH, 0, 0); }

/* Celu(x) = alpha * Elu_1(x / alpha) */
static kiln_status map_celu(ox_node *n) {
    float alpha = ox_attr_f(n, "alpha", 1.0f);
    if (alpha == 1.0f) return act(n, KILN_ACT_ELU, 1.0f, 0);
    if (!(alpha != 0)) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "alpha must not be 0");
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    kiln_dtype dt = kiln_tensor_dtype(x);
    kiln_tensor *a = ox_scalar_tensor(n, dt, alpha, "alpha");
    kiln_tensor *s = a ? ox_elt(n, x, a, KILN_ELT_DIV, "scaled") : NULL;
    kiln_layer *e = s ? kiln_network_add_activation(n->p->net, s, KILN_ACT_ELU, 1.0f, 0) : NULL;
    if (s && !e) return ox_layer_failed(n, "elu");
    if (!e || ox_aux_layer(n, e, "elu") != KILN_OK) return KILN_ERR_INVALID_ARGUMENT;
    kiln_layer *l = kiln_network_add_elementwise(n->p->net, kiln_layer_output(e, 0), a, KILN_ELT_MUL);
    return finish1(n, l, "mul");
}

/* Clip: attributes before opset 11, optional inputs after. Float tensors with
 * constant bounds become one clip activation; anything else max/min layers. */
static kiln_status map_clip(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    kiln_dtype dt = kiln_tensor_dtype(x);
    double lo = -INFINITY, hi = INFINITY;
    bool lo_set = false, hi_set = false, dyn = false;
    if (n->opset < 11) {
        if (ox_attr(n, "min")) lo = ox_attr_f(n, "min", 0), lo_set = true;
        if (ox_attr(n, "max")) hi = ox_attr_f(n, "max", 0), hi_set = true;
    } else {
        for (int i = 1; i <= 2; i++) {
            if (!ox_has_in(n, i)) continue;
            const ox_const *c = ox_in_const(n, i);
            if (!c) {
                dyn = true;
                continue;
            }
            if (c->count != 1)
                return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "%s must be a scalar", i == 1 ? "min" : "max");
            if (i == 1)
                lo = ox_get_f(c, 0), lo_set = true;
            else
                hi = ox_get_f(c, 0), hi_set = true;
        }
    }
    if (!dyn && (dt == KILN_FLOAT32 || dt == KILN_FLOAT16 || dt == KILN_BFLOAT16))
        return finish1(n, kiln_network_add_activation(n->p->net, x, KILN_ACT_CLIP, (float)lo, (float)hi), "clip");
    kiln_tensor *bounds[2] = {NULL, NULL};
    int count = 0;
    for (int i = 1; i <= 2; i++) {
        if (n->opset >= 11 && ox_has_in(n, i))
            bounds[i - 1] = ox_in_tensor(n, i);
        else if (i == 1 ? lo_set : hi_set)
            bounds[i - 1] = ox_scalar_tensor(n, dt, i == 1 ? lo : hi, "bound");
        else
            continue;
        if (!bounds[i - 1]) return KILN_ERR_INVALID_ARGUMENT;
        count++;
    }
    kiln_tensor *y = x;
    for (int k = 0; k < 2; k++) {
        if (!bounds[k]) continue;
        kiln_layer *l = kiln_network_add_elementwise(n->p->net, y, bounds[k], k == 0 ? KILN_ELT_MAX : KILN_ELT_MIN);
        if (!l) return ox_layer_failed(n, k == 0 ? "max" : "min");
        if (--count == 0) return finish1(n, l, "clip");
        if (ox_aux_layer(n, l, "lower") != KILN_OK) return KILN_ERR_OUT_OF_MEMORY;
        y = kiln_layer_output(l, 0);
    }
    return ox_set_alias(n, 0, y); /* no bounds at all */
}

/* PRelu: numpy broadcast of the slope since opset 7. Opset 6 exporters wrote a [C]
 * slope meaning "per channel", which numpy would align with the last axis instead. */
static kiln_status map_prelu(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    kiln_tensor *s = x ? ox_in_tensor(n, 1) : NULL;
    if (!s) return KILN_ERR_INVALID_ARGUMENT;
    kiln_dims xd = kiln_tensor_dims(x), sd = kiln_tensor_dims(s);
    if (n->opset < 7 && xd.nb_dims > 2 && sd.nb_dims == 1 && sd.d[0] == xd.d[1] && sd.d[0] > 1) {
        kiln_dims r;
        memset(&r, 0, sizeof r);
        r.nb_dims = xd.nb_dims - 1;
        r.d[0] = sd.d[0];
        for (int i = 1; i < r.nb_dims; i++) r.d[i] = 1;
        s = ox_reshape(n, s, r, "slope");
        if (!s) return KILN_ERR_INVALID_ARGUMENT;
    }
    if (kiln_tensor_dtype(s) != kiln_tensor_dtype(x)) {
        s = ox_cast(n, s, kiln_tensor_dtype(x), "slope_cast");
        if (!s) return KILN_ERR_INVALID_ARGUMENT;
    }
    return finish1(n, kiln_network_add_prelu(n->p->net, x, s), "prelu");
}

/* ---- unary ---- */

static const struct {
    const char *name;
    kiln_unary_op op;
} unary_ops[] = {
    {"Exp", KILN_UNARY_EXP},     {"Log", KILN_UNARY_LOG},   {"Sqrt", KILN_UNARY_SQRT},
    {"Abs", KILN_UNARY_ABS},     {"Neg", KILN_UNARY_NEG},   {"Reciprocal", KILN_UNARY_RECIPROCAL},
    {"Floor", KILN_UNARY_FLOOR}, {"Ceil", KILN_UNARY_CEIL}, {"Erf", KILN_UNARY_ERF},
    {"Not", KILN_UNARY_NOT},     {"Sin", KILN_UNARY_SIN},   {"Cos", KILN_UNARY_COS},
    {"Round", KILN_UNARY_ROUND}, {"Sign", KILN_UNARY_SIGN},
};

static int unary_of(const ox_node *n) {
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++)
        if (strcmp(n->n->op_type, unary_ops[i].name) == 0) return (int)unary_ops[i].op;
    return -1;
}

static kiln_status map_unary(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_unary(n->p->net, x, (kiln_unary_op)unary_of(n)), "unary");
}

static double round_half_even(double x) {
    double r = round(x);
    if (fabs(x - trunc(x)) == 0.5) r = 2.0 * round(x / 2.0);
    return r;
}

static ox_fold_result fold_unary(ox_node *n) {
    const ox_const *a = ox_in_const(n, 0);
    int op = unary_of(n);
    ox_const r;
    if (ox_const_new(n, a->dtype, a->dims, &r) != KILN_OK) return OX_FOLD_ERROR;
    bool fl = ox_dtype_is_float(a->dtype);
    for (int64_t i = 0; i < a->count; i++) {
        if (!fl) {
            int64_t v = ox_get_i(a, i), y;
            switch (op) {
            case KILN_UNARY_ABS:
                y = v < 0 ? -v : v;
                break;
            case KILN_UNARY_NEG:
                y = -v;
                break;
            case KILN_UNARY_NOT:
                y = !v;
                break;
            case KILN_UNARY_SIGN:
                y = (v > 0) - (v < 0);
                break;
            case KILN_UNARY_FLOOR:
            case KILN_UNARY_CEIL:
            case KILN_UNARY_ROUND:
                y = v;
                break;
            default:
                return OX_FOLD_SKIP; /* float math on integers: let the layer report it */
            }
            ox_set_i(&r, i, y);
            continue;
        }
        double v = ox_get_f(a, i), y;
        switch (op) {
        case KILN_UNARY_EXP:
            y = exp(v);
            break;
        case KILN_UNARY_LOG:
            y = log(v);
            break;
        case KILN_UNARY_SQRT:
            y = sqrt(v);
            break;
        case KILN_UNARY_ABS:
            y = fabs(v);
            break;
        case KILN_UNARY_NEG:
            y = -v;
            break;
        case KILN_UNARY_RECIPROCAL:
            y = 1.0 / v;
            break;
        case KILN_UNARY_FLOOR:
            y = floor(v);
            break;
        case KILN_UNARY_CEIL:
            y = ceil(v);
            break;
        case KILN_UNARY_ERF:
            y = erf(v);
            break;
        case KILN_UNARY_SIN:
            y = sin(v);
            break;
        case KILN_UNARY_COS:
            y = cos(v);
            break;
        case KILN_UNARY_ROUND:
            y = round_half_even(v);
            break;
        case KILN_UNARY_SIGN:
            y = (v > 0) - (v < 0);
            break;
        default:
            return OX_FOLD_SKIP;
        }
        ox_set_f(&r, i, y);
    }
    return ox_set_const(n, 0, &r) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

/* ---- binary ---- */

static const struct {
    const char *name;
    kiln_elementwise_op op;
} binary_ops[] = {
    {"Add", KILN_ELT_ADD},
    {"Sub", KILN_ELT_SUB},
    {"Mul", KILN_ELT_MUL},
    {"Div", KILN_ELT_DIV},
    {"Pow", KILN_ELT_POW},
    {"Equal", KILN_ELT_EQUAL},
    {"Less", KILN_ELT_LESS},
    {"Greater", KILN_ELT_GREATER},
    {"LessOrEqual", KILN_ELT_LESS_EQUAL},
    {"GreaterOrEqual", KILN_ELT_GREATER_EQUAL},
    {"And", KILN_ELT_AND},
    {"Or", KILN_ELT_OR},
    {"Xor", KILN_ELT_XOR},
    {"Mod", KILN_ELT_MOD},
    {"Max", KILN_ELT_MAX},
    {"Min", KILN_ELT_MIN},
    {"Sum", KILN_ELT_ADD},
    {"Mean", KILN_ELT_ADD},
};

static kiln_elementwise_op binary_of(const ox_node *n) {
    for (size_t i = 0; i < sizeof binary_ops / sizeof binary_ops[0]; i++)
        if (strcmp(n->n->op_type, binary_ops[i].name) == 0) {
            if (binary_ops[i].op == KILN_ELT_MOD && ox_attr_i(n, "fmod", 0)) return KILN_ELT_FMOD;
            return binary_ops[i].op;
        }
    return KILN_ELT_ADD;
}

static bool is_compare(kiln_elementwise_op op) { return op >= KILN_ELT_EQUAL && op <= KILN_ELT_XOR; }

/* Before opset 7, B broadcast onto A only with broadcast=1, aligned at `axis` (default:
 * trailing). Returns the dims B must take (trailing ones appended), or B's own. */
static kiln_status legacy_b_dims(ox_node *n, kiln_dims ad, kiln_dims bd, kiln_dims *out) {
    *out = bd;
    if (n->opset >= 7 || !ox_attr_i(n, "broadcast", 0) || !ox_attr(n, "axis")) return KILN_OK;
    if (ad.nb_dims < 0 || bd.nb_dims < 0) return ox_node_error(n, KILN_ERR_SHAPE, "legacy broadcast needs known ranks");
    int axis = ox_axis(ox_attr_i(n, "axis", 0), ad.nb_dims);
    if (axis < 0 || axis + bd.nb_dims > ad.nb_dims)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "legacy broadcast axis %lld does not fit ranks %d and %d",
                             (long long)ox_attr_i(n, "axis", 0), ad.nb_dims, bd.nb_dims);
    while (out->nb_dims < ad.nb_dims - axis) out->d[out->nb_dims++] = 1;
    return KILN_OK;
}

static double fold_f(kiln_elementwise_op op, double a, double b) {
    switch (op) {
    case KILN_ELT_ADD:
        return a + b;
    case KILN_ELT_SUB:
        return a - b;
    case KILN_ELT_MUL:
        return a * b;
    case KILN_ELT_DIV:
        return a / b;
    case KILN_ELT_MAX:
        return a != a || a > b ? a : b;
    case KILN_ELT_MIN:
        return a != a || a < b ? a : b;
    case KILN_ELT_POW:
        return pow(a, b);
    case KILN_ELT_EQUAL:
        return a == b;
    case KILN_ELT_LESS:
        return a < b;
    case KILN_ELT_GREATER:
        return a > b;
    case KILN_ELT_LESS_EQUAL:
        return a <= b;
    case KILN_ELT_GREATER_EQUAL:
        return a >= b;
    case KILN_ELT_AND:
        return (a != 0) && (b != 0);
    case KILN_ELT_OR:
        return (a != 0) || (b != 0);
    case KILN_ELT_XOR:
        return (a != 0) != (b != 0);
    case KILN_ELT_FMOD:
        return fmod(a, b);
    case KILN_ELT_MOD: {
        double r = fmod(a, b);
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        return r;
    }
    }
    return 0;
}

/* false on integer division by zero */
static bool fold_i(kiln_elementwise_op op, int64_t a, int64_t b, int64_t *out) {
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    switch (op) {
    case KILN_ELT_ADD:
        *out = (int64_t)(ua + ub);
        return true;
    case KILN_ELT_SUB:
        *out = (int64_t)(ua - ub);
        return true;
    case KILN_ELT_MUL:
        *out = (int64_t)(ua * ub);
        return true;
    case KILN_ELT_DIV:
        if (b == 0) return false;
        *out = (a == INT64_MIN && b == -1) ? a : a / b;
        return true;
    case KILN_ELT_MOD:
    case KILN_ELT_FMOD: {
        if (b == 0) return false;
        int64_t r = (b == -1) ? 0 : a % b;
        if (op == KILN_ELT_MOD && r != 0 && ((r < 0) != (b < 0))) r += b;
        *out = r;
        return true;
    }
    case KILN_ELT_MAX:
        *out = a > b ? a : b;
        return true;
    case KILN_ELT_MIN:
        *out = a < b ? a : b;
        return true;
    case KILN_ELT_POW: {
        int64_t r = 1;
        if (b < 0)
            r = (a == 1) ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);
        else
            for (int64_t k = 0; k < b && k < 64; k++) r = (int64_t)((uint64_t)r * (uint64_t)a);
        *out = r;
        return true;
    }
    case KILN_ELT_EQUAL:
        *out = a == b;
        return true;
    case KILN_ELT_LESS:
        *out = a < b;
        return true;
    case KILN_ELT_GREATER:
        *out = a > b;
        return true;
    case KILN_ELT_LESS_EQUAL:
        *out = a <= b;
        return true;
    case KILN_ELT_GREATER_EQUAL:
        *out = a >= b;
        return true;
    case KILN_ELT_AND:
        *out = a && b;
        return true;
    case KILN_ELT_OR:
        *out = a || b;
        return true;
    case KILN_ELT_XOR:
        *out = (!a) != (!b);
        return true;
    }
    return false;
}

/* r = a op b on the host, numpy broadcast; result dtype follows a (bool for compares). */
static ox_fold_result fold_pair(ox_node *n, kiln_elementwise_op op, const ox_const *a, const ox_const *b, ox_const *r) {
    kiln_dims od;
    if (!ox_broadcast(&a->dims, &b->dims, &od)) {
        char b1[96], b2[96];
        ox_node_error(n, KILN_ERR_SHAPE, "shapes %s and %s do not broadcast", ox_dims_str(&a->dims, b1, sizeof b1),
                      ox_dims_str(&b->dims, b2, sizeof b2));
        return OX_FOLD_ERROR;
    }
    kiln_dtype dt = is_compare(op) ? KILN_BOOL : a->dtype;
    if (ox_const_new(n, dt, od, r) != KILN_OK) return OX_FOLD_ERROR;
    ox_bcast ba, bb;
    ox_bcast_init(&ba, &od, &a->dims);
    ox_bcast_init(&bb, &od, &b->dims);
    bool fl = ox_dtype_is_float(a->dtype) || ox_dtype_is_float(b->dtype);
    for (int64_t i = 0; i < r->count; i++) {
        int64_t ia = ox_bcast_index(&ba, i), ib = ox_bcast_index(&bb, i);
        if (fl) {
            ox_set_f(r, i, fold_f(op, ox_get_f(a, ia), ox_get_f(b, ib)));
        } else {
            int64_t v;
            if (!fold_i(op, ox_get_i(a, ia), ox_get_i(b, ib), &v)) {
                ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "integer division by zero in constant inputs");
                return OX_FOLD_ERROR;
            }
            ox_set_i(r, i, v);
        }
    }
    return OX_FOLD_DONE;
}

static ox_fold_result fold_binary(ox_node *n) {
    const ox_const *a = ox_in_const(n, 0), *b0 = ox_in_const(n, 1);
    if (!a || !b0) return OX_FOLD_SKIP;
    ox_const b = *b0;
    if (legacy_b_dims(n, a->dims, b0->dims, &b.dims) != KILN_OK) return OX_FOLD_ERROR;
    ox_const r;
    ox_fold_result res = fold_pair(n, binary_of(n), a, &b, &r);
    if (res != OX_FOLD_DONE) return res;
    return ox_set_const(n, 0, &r) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static kiln_status map_binary(ox_node *n) {
    kiln_elementwise_op op = binary_of(n);
    kiln_tensor *a = ox_in_tensor(n, 0);
    kiln_tensor *b = a ? ox_in_tensor(n, 1) : NULL;
    if (!b) return KILN_ERR_INVALID_ARGUMENT;
    kiln_dims bd;
    if (legacy_b_dims(n, kiln_tensor_dims(a), kiln_tensor_dims(b), &bd) != KILN_OK) return KILN_ERR_SHAPE;
    if (bd.nb_dims != kiln_tensor_dims(b).nb_dims) {
        b = ox_reshape(n, b, bd, "legacy_broadcast");
        if (!b) return KILN_ERR_SHAPE;
    }
    /* Pow may raise to an exponent of another type; kiln wants one dtype */
    if (op == KILN_ELT_POW && kiln_tensor_dtype(b) != kiln_tensor_dtype(a)) {
        b = ox_cast(n, b, kiln_tensor_dtype(a), "exponent");
        if (!b) return KILN_ERR_DTYPE;
    }
    return finish1(n, kiln_network_add_elementwise(n->p->net, a, b, op), "elementwise");
}

/* Sum, Mean, Max, Min: any number of inputs, folded pairwise left to right. */
static ox_fold_result fold_variadic(ox_node *n) {
    kiln_elementwise_op op = binary_of(n);
    const ox_const *acc = ox_in_const(n, 0);
    if (!acc) return OX_FOLD_SKIP;
    ox_const r = *acc;
    for (int i = 1; i < n->nin; i++) {
        const ox_const *b = ox_in_const(n, i);
        if (!b) return OX_FOLD_SKIP;
        ox_const t;
        ox_fold_result res = fold_pair(n, op, &r, b, &t);
        if (res != OX_FOLD_DONE) return res;
        r = t;
    }
    if (strcmp(n->n->op_type, "Mean") == 0) {
        ox_const t;
        if (ox_const_new(n, r.dtype, r.dims, &t) != KILN_OK) return OX_FOLD_ERROR;
        for (int64_t i = 0; i < r.count; i++) ox_set_f(&t, i, ox_get_f(&r, i) / n->nin);
        r = t;
    }
    return ox_set_const(n, 0, &r) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static kiln_status map_variadic(ox_node *n) {
    kiln_elementwise_op op = binary_of(n);
    bool mean = strcmp(n->n->op_type, "Mean") == 0;
    int count = 0;
    for (int i = 0; i < n->nin; i++) count += ox_has_in(n, i);
    if (!count) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "no inputs");
    kiln_tensor *acc = NULL;
    int done = 0;
    for (int i = 0; i < n->nin; i++) {
        if (!ox_has_in(n, i)) continue;
        kiln_tensor *t = ox_in_tensor(n, i);
        if (!t) return KILN_ERR_INVALID_ARGUMENT;
        done++;
        if (!acc) {
            acc = t;
            if (count == 1) return ox_set_alias(n, 0, acc);
            continue;
        }
        kiln_layer *l = kiln_network_add_elementwise(n->p->net, acc, t, op);
        if (!l) return ox_layer_failed(n, "elementwise");
        if (done == count && !mean) return finish1(n, l, "elementwise");
        if (ox_aux_layer(n, l, "acc") != KILN_OK) return KILN_ERR_OUT_OF_MEMORY;
        acc = kiln_layer_output(l, 0);
    }
    kiln_tensor *k = ox_scalar_tensor(n, kiln_tensor_dtype(acc), count, "count");
    if (!k) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_elementwise(n->p->net, acc, k, KILN_ELT_DIV), "mean");
}

/* ---- where ---- */

static ox_fold_result fold_where(ox_node *n) {
    const ox_const *c = ox_in_const(n, 0), *a = ox_in_const(n, 1), *b = ox_in_const(n, 2);
    if (!c || !a || !b) return OX_FOLD_SKIP;
    kiln_dims t, od;
    if (!ox_broadcast(&c->dims, &a->dims, &t) || !ox_broadcast(&t, &b->dims, &od)) {
        ox_node_error(n, KILN_ERR_SHAPE, "condition and values do not broadcast");
        return OX_FOLD_ERROR;
    }
    ox_const r;
    if (ox_const_new(n, a->dtype, od, &r) != KILN_OK) return OX_FOLD_ERROR;
    ox_bcast bc, ba, bb;
    ox_bcast_init(&bc, &od, &c->dims);
    ox_bcast_init(&ba, &od, &a->dims);
    ox_bcast_init(&bb, &od, &b->dims);
    bool fl = ox_dtype_is_float(a->dtype);
    for (int64_t i = 0; i < r.count; i++) {
        bool cond = ox_get_i(c, ox_bcast_index(&bc, i)) != 0;
        const ox_const *s = cond ? a : b;
        int64_t k = ox_bcast_index(cond ? &ba : &bb, i);
        if (fl)
            ox_set_f(&r, i, ox_get_f(s, k));
        else
            ox_set_i(&r, i, ox_get_i(s, k));
    }
    return ox_set_const(n, 0, &r) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static kiln_status map_where(ox_node *n) {
    kiln_tensor *c = ox_in_tensor(n, 0);
    kiln_tensor *a = c ? ox_in_tensor(n, 1) : NULL;
    kiln_tensor *b = a ? ox_in_tensor(n, 2) : NULL;
    if (!b) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_select(n->p->net, c, a, b), "select");
}

const ox_op ox_ops_pointwise[] = {
    {"Relu", map_relu, NULL, NULL},
    {"LeakyRelu", map_leaky, NULL, NULL},
    {"Sigmoid", map_sigmoid, NULL, NULL},
    {"Tanh", map_tanh, NULL, NULL},
    {"HardSigmoid", map_hsig, NULL, NULL},
    {"HardSwish", map_hswish, NULL, NULL},
    {"Elu", map_elu, NULL, NULL},
    {"Selu", map_selu, NULL, NULL},
    {"Celu", map_celu, NULL, NULL},
    {"Softplus", map_softplus, NULL, NULL},
    {"Softsign", map_softsign, NULL, NULL},
    {"ThresholdedRelu", map_thrrelu, NULL, NULL},
    {"Mish", map_mish, NULL, NULL},
    {"Clip", map_clip, NULL, NULL},
    {"PRelu", map_prelu, NULL, NULL},
    {"Exp", map_unary, NULL, fold_unary},
    {"Log", map_unary, NULL, fold_unary},
    {"Sqrt", map_unary, NULL, fold_unary},
    {"Abs", map_unary, NULL, fold_unary},
    {"Neg", map_unary, NULL, fold_unary},
    {"Reciprocal", map_unary, NULL, fold_unary},
    {"Floor", map_unary, NULL, fold_unary},
    {"Ceil", map_unary, NULL, fold_unary},
    {"Erf", map_unary, NULL, fold_unary},
    {"Not", map_unary, NULL, fold_unary},
    {"Sin", map_unary, NULL, fold_unary},
    {"Cos", map_unary, NULL, fold_unary},
    {"Round", map_unary, NULL, fold_unary},
    {"Sign", map_unary, NULL, fold_unary},
    {"Add", map_binary, NULL, fold_binary},
    {"Sub", map_binary, NULL, fold_binary},
    {"Mul", map_binary, NULL, fold_binary},
    {"Div", map_binary, NULL, fold_binary},
    {"Pow", map_binary, NULL, fold_binary},
    {"Mod", map_binary, NULL, fold_binary},
    {"Equal", map_binary, NULL, fold_binary},
    {"Less", map_binary, NULL, fold_binary},
    {"Greater", map_binary, NULL, fold_binary},
    {"LessOrEqual", map_binary, NULL, fold_binary},
    {"GreaterOrEqual", map_binary, NULL, fold_binary},
    {"And", map_binary, NULL, fold_binary},
    {"Or", map_binary, NULL, fold_binary},
    {"Xor", map_binary, NULL, fold_binary},
    {"Max", map_variadic, NULL, fold_variadic},
    {"Min", map_variadic, NULL, fold_variadic},
    {"Sum", map_variadic, NULL, fold_variadic},
    {"Mean", map_variadic, NULL, fold_variadic},
    {"Where", map_where, NULL, fold_where},
    {NULL, NULL, NULL, NULL},
};
