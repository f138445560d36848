/* kiln internal: shape and dtype inference for the point-wise family (activations,
 * element-wise math, select), the normalizations, softmax and the reductions. */
#include <string.h>

#include "graph/ops.h"

static const char *dims_s(const kiln_dims *d, char *buf, size_t n) { return kiln_dims_str(d, buf, n); }

static kiln_status set_out(kiln_layer *l, kiln_dtype dtype, const kiln_dims *dims) {
    l->outputs[0]->dtype = dtype;
    l->outputs[0]->dims = *dims;
    return KILN_OK;
}

static kiln_status want_dtype(kiln_layer *l, int input, kiln_dtype want) {
    kiln_dtype got = l->inputs[input]->dtype;
    if (got == want) return KILN_OK;
    return kg_layer_error(l, KILN_ERR_DTYPE, "input %d '%s' is %s, expected %s", input, l->inputs[input]->name,
                          kiln_dtype_name(got), kiln_dtype_name(want));
}

static bool is_num(kiln_dtype t) { return t == KILN_FLOAT32 || t == KILN_INT32 || t == KILN_INT64; }
static bool is_float_t(kiln_dtype t) { return t == KILN_FLOAT32 || t == KILN_FLOAT16 || t == KILN_FLOAT64; }
static bool is_int_t(kiln_dtype t) {
    return t == KILN_INT8 || t == KILN_UINT8 || t == KILN_INT32 || t == KILN_INT64;
}
/* Element-wise math, reductions and arg max/min: every float and integer type. */
static bool is_arith(kiln_dtype t) { return is_float_t(t) || is_int_t(t); }
#define ARITH_NAMES "float32, float16, float64, int8, uint8, int32 or int64"

/* Checks that a present weight array is float32 with `want` values; `what` names it. */
static kiln_status check_w(kiln_layer *l, int i, const char *what, int64_t want, const char *per) {
    const kiln_weights *w = &l->w[i];
    if (w->count == 0) return KILN_OK;
    if (w->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_DTYPE, "%s weights are %s, expected float32", what, kiln_dtype_name(w->dtype));
    if (w->count != want || !w->values)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%s has %lld values, expected %lld (%s)", what,
                              (long long)w->count, (long long)want, per);
    return KILN_OK;
}

KG_INFER(activation) {
    const kiln_tensor *x = l->inputs[0];
    if ((unsigned)l->p.act.type >= KILN_ACT_COUNT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown activation type %d", (int)l->p.act.type);
    kiln_status st = want_dtype(l, 0, KILN_FLOAT32);
    if (st) return st;
    return set_out(l, KILN_FLOAT32, &x->dims);
}

KG_INFER(prelu) {
    const kiln_tensor *x = l->inputs[0], *s = l->inputs[1];
    kiln_status st = want_dtype(l, 0, KILN_FLOAT32);
    if (!st) st = want_dtype(l, 1, KILN_FLOAT32);
    if (st) return st;
    kiln_dims out;
    /* unidirectional: the slope stretches to the input, never the other way */
    if (!kiln_broadcast_dims(&x->dims, &s->dims, &out) || !kiln_dims_equal(&out, &x->dims)) {
        char a[128], b[128];
        return kg_layer_error(l, KILN_ERR_SHAPE, "slope of shape %s does not broadcast to the input shape %s",
                              dims_s(&s->dims, b, sizeof b), dims_s(&x->dims, a, sizeof a));
    }
    return set_out(l, KILN_FLOAT32, &x->dims);
}

KG_INFER(scale) {
    const kiln_tensor *x = l->inputs[0];
    kiln_status st = want_dtype(l, 0, KILN_FLOAT32);
    if (st) return st;
    const kiln_dims *d = &x->dims;
    int64_t want;
    const char *per;
    switch (l->p.scale.mode) {
    case KILN_SCALE_UNIFORM:
        want = 1;
        per = "uniform mode";
        break;
    case KILN_SCALE_CHANNEL:
        if (d->nb_dims < 2)
            return kg_layer_error(l, KILN_ERR_SHAPE, "channel mode needs rank >= 2, input has rank %d", d->nb_dims);
        want = d->d[1];
        per = "one per channel";
        break;
    case KILN_SCALE_ELEMENTWISE:
        if (d->nb_dims < 1)
            return kg_layer_error(l, KILN_ERR_SHAPE, "elementwise mode needs rank >= 1, input is a scalar");
        want = 1;
        for (int i = 1; i < d->nb_dims; i++) want *= d->d[i];
        per = "one per element of dims[1:]";
        break;
    default:
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown scale mode %d", (int)l->p.scale.mode);
    }
    static const char *names[3] = {"shift", "scale", "power"};
    for (int i = 0; i < 3; i++)
        if ((st = check_w(l, i, names[i], want, per))) return st;
    return set_out(l, KILN_FLOAT32, d);
}

static const char *const elt_names[KILN_ELT_COUNT] = {
    "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    "And", "Or", "Xor", "Mod", "Fmod"};
static const char *const unary_names[KILN_UNARY_COUNT] = {
    "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Erf", "Not", "Sin", "Cos", "Round", "Sign"};
static const char *const reduce_names[KILN_REDUCE_COUNT] = {
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare",
    "ReduceLogSum", "ReduceLogSumExp"};

static bool elt_is_compare(kiln_elementwise_op op) { return op >= KILN_ELT_EQUAL && op <= KILN_ELT_GREATER_EQUAL; }
static bool elt_is_logic(kiln_elementwise_op op) { return op >= KILN_ELT_AND && op <= KILN_ELT_XOR; }

KG_INFER(elementwise) {
    const kiln_tensor *a = l->inputs[0], *b = l->inputs[1];
    kiln_elementwise_op op = l->p.elt;
    if ((unsigned)op >= KILN_ELT_COUNT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown elementwise op %d", (int)op);
    if (a->dtype != b->dtype)
        return kg_layer_error(l, KILN_ERR_DTYPE, "inputs have different dtypes: '%s' is %s, '%s' is %s", a->name,
                              kiln_dtype_name(a->dtype), b->name, kiln_dtype_name(b->dtype));
    kiln_dtype t = a->dtype;
    bool ok = elt_is_logic(op) ? t == KILN_BOOL : elt_is_compare(op) ? (is_arith(t) || t == KILN_BOOL) : is_arith(t);
    if (!ok)
        return kg_layer_error(l, KILN_ERR_DTYPE, "%s does not accept %s inputs (%s)", elt_names[op], kiln_dtype_name(t),
                              elt_is_logic(op)     ? "logic ops take bool"
                              : elt_is_compare(op) ? "comparisons take " ARITH_NAMES " or bool"
                                                   : "arithmetic takes " ARITH_NAMES);
    kiln_dims out;
    if (!kiln_broadcast_dims(&a->dims, &b->dims, &out)) {
        char sa[128], sb[128];
        return kg_layer_error(l, KILN_ERR_SHAPE, "shapes %s and %s do not broadcast", dims_s(&a->dims, sa, sizeof sa),
                              dims_s(&b->dims, sb, sizeof sb));
    }
    return set_out(l, elt_is_logic(op) || elt_is_compare(op) ? KILN_BOOL : t, &out);
}

KG_INFER(unary) {
    const kiln_tensor *x = l->inputs[0];
    kiln_unary_op op = l->p.unary;
    if ((unsigned)op >= KILN_UNARY_COUNT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown unary op %d", (int)op);
    kiln_dtype t = x->dtype;
    bool ok;
    const char *allowed;
    if (op == KILN_UNARY_NOT) {
        ok = t == KILN_BOOL;
        allowed = "bool";
    } else if (op == KILN_UNARY_ABS || op == KILN_UNARY_NEG || op == KILN_UNARY_SIGN) {
        ok = is_num(t);
        allowed = "float32, int32 or int64";
    } else {
        ok = t == KILN_FLOAT32;
        allowed = "float32";
    }
    if (!ok)
        return kg_layer_error(l, KILN_ERR_DTYPE, "%s takes %s, input '%s' is %s", unary_names[op], allowed, x->name,
                              kiln_dtype_name(t));
    return set_out(l, t, &x->dims);
}

KG_INFER(select) {
    const kiln_tensor *c = l->inputs[0], *a = l->inputs[1], *b = l->inputs[2];
    kiln_status st = want_dtype(l, 0, KILN_BOOL);
    if (st) return st;
    if (a->dtype != b->dtype)
        return kg_layer_error(l, KILN_ERR_DTYPE, "value inputs have different dtypes: '%s' is %s, '%s' is %s",
                              a->name, kiln_dtype_name(a->dtype), b->name, kiln_dtype_name(b->dtype));
    size_t es = kiln_dtype_size(a->dtype);
    if (es != 1 && es != 2 && es != 4 && es != 8)
        return kg_layer_error(l, KILN_ERR_DTYPE, "unsupported dtype %s", kiln_dtype_name(a->dtype));
    kiln_dims ab, out;
    if (!kiln_broadcast_dims(&a->dims, &b->dims, &ab) || !kiln_broadcast_dims(&c->dims, &ab, &out)) {
        char s0[128], s1[128], s2[128];
        return kg_layer_error(l, KILN_ERR_SHAPE, "shapes %s (cond), %s and %s do not broadcast",
                              dims_s(&c->dims, s0, sizeof s0), dims_s(&a->dims, s1, sizeof s1),
                              dims_s(&b->dims, s2, sizeof s2));
    }
    return set_out(l, a->dtype, &out);
}

KG_INFER(instance_norm) {
    const kiln_tensor *x = l->inputs[0];
    kiln_status st = want_dtype(l, 0, KILN_FLOAT32);
    if (st) return st;
    if (x->dims.nb_dims < 3)
        return kg_layer_error(l, KILN_ERR_SHAPE, "input must have rank >= 3 (N, C, spatial...), it has rank %d",
                              x->dims.nb_dims);
    if (!(l->p.norm.epsilon >= 0))
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "epsilon %g is negative", (double)l->p.norm.epsilon);
    int64_t c = x->dims.d[1];
    if (l->w[0].count == 0 || l->w[1].count == 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "scale and bias are required (%lld values each)",
                              (long long)c);
    if ((st = check_w(l, 0, "scale", c, "one per channel"))) return st;
    if ((st = check_w(l, 1, "bias", c, "one per channel"))) return st;
    return set_out(l, KILN_FLOAT32, &x->dims);
}

KG_INFER(lrn) {
    const kiln_tensor *x = l->inputs[0];
    kiln_status st = want_dtype(l, 0, KILN_FLOAT32);
    if (st) return st;
    if (x->dims.nb_dims < 2)
        return kg_layer_error(l, KILN_ERR_SHAPE, "input must have rank >= 2 (N, C, ...), it has rank %d",
                              x->dims.nb_dims);
    if (l->p.lrn.size <= 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "size %lld must be positive", (long long)l->p.lrn.size);
    return set_out(l, KILN_FLOAT32, &x->dims);
}

KG_INFER(softmax) {
    const kiln_tensor *x = l->inputs[0];
    kiln_status st = want_dtype(l, 0, KILN_FLOAT32);
    if (st) return st;
    if (kg_axis(l->p.softmax.axis, x->dims.nb_dims) < 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %d is out of range for rank %d", l->p.softmax.axis,
                              x->dims.nb_dims);
    return set_out(l, KILN_FLOAT32, &x->dims);
}

KG_INFER(reduce) {
    const kiln_tensor *x = l->inputs[0];
    const kg_reduce_params *p = &l->p.reduce;
    if ((unsigned)p->op >= KILN_REDUCE_COUNT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown reduce op %d", (int)p->op);
    bool int_ok = p->op == KILN_REDUCE_SUM || p->op == KILN_REDUCE_MAX || p->op == KILN_REDUCE_MIN ||
                  p->op == KILN_REDUCE_PROD;
    if (!(is_float_t(x->dtype) || (int_ok && is_int_t(x->dtype))))
        return kg_layer_error(l, KILN_ERR_DTYPE, "%s does not accept %s input '%s' (%s)", reduce_names[p->op],
                              kiln_dtype_name(x->dtype), x->name,
                              int_ok ? ARITH_NAMES : "float32, float16 or float64");
    int rank = x->dims.nb_dims;
    if (p->nb_axes < 0 || p->nb_axes > KILN_MAX_DIMS)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%d axes", p->nb_axes);
    bool red[KILN_MAX_DIMS] = {false};
    for (int i = 0; i < p->nb_axes; i++) {
        int a = kg_axis(p->axes[i], rank);
        if (a < 0)
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                                  (long long)p->axes[i], rank);
        if (red[a])
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %lld is listed twice", (long long)p->axes[i]);
        red[a] = true;
    }
    if (p->nb_axes == 0)
        for (int i = 0; i < rank; i++) red[i] = true;
    kiln_dims out;
    memset(&out, 0, sizeof out);
    for (int i = 0; i < rank; i++) {
        if (!red[i]) out.d[out.nb_dims++] = x->dims.d[i];
        else if (p->keep_dims) out.d[out.nb_dims++] = 1;
    }
    return set_out(l, x->dtype, &out);
}

KG_INFER(arg_reduce) {
    const kiln_tensor *x = l->inputs[0];
    const kg_arg_params *p = &l->p.arg;
    if (!is_arith(x->dtype))
        return kg_layer_error(l, KILN_ERR_DTYPE, "input '%s' is %s, expected " ARITH_NAMES, x->name,
                              kiln_dtype_name(x->dtype));
    int rank = x->dims.nb_dims;
    int a = kg_axis(p->axis, rank);
    if (a < 0) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %d is out of range for rank %d", p->axis, rank);
    kiln_dims out;
    memset(&out, 0, sizeof out);
    for (int i = 0; i < rank; i++) {
        if (i != a) out.d[out.nb_dims++] = x->dims.d[i];
        else if (p->keep_dims) out.d[out.nb_dims++] = 1;
    }
    if (x->dims.d[a] == 0 && kiln_dims_volume(&out) > 0)
        return kg_layer_error(l, KILN_ERR_SHAPE, "axis %d has size 0: no index to return", p->axis);
    return set_out(l, KILN_INT64, &out);
}
