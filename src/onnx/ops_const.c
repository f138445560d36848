/* kiln ONNX importer: ops whose results are usually known at import: Constant,
 * ConstantOfShape, Shape, Size, Range, Cast, CastLike, and the no-ops Identity and
 * Dropout (dropped: their output aliases the input). */
#include <math.h>
#include <string.h>

#include "onnx_internal.h"
#include "tensor_io.h"

/* ---- Constant ---- */

static kiln_status const_from_proto(ox_node *n, const Onnx__TensorProto *tp, ox_const *out) {
    char err[400];
    void *data = NULL;
    memset(out, 0, sizeof *out);
    kiln_status st = ox_tensor_decode(tp, n->p->base_dir, &out->dtype, &out->dims, &data, err, sizeof err);
    if (st != KILN_OK) return ox_node_error(n, st, "tensor attribute: %s", err);
    if (!ox_adopt(n->p, data)) return ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    out->data = data;
    out->count = ox_volume(&out->dims);
    return KILN_OK;
}

static kiln_status check_constant(ox_node *n) {
    static const char *bad[] = {"sparse_value", "value_string", "value_strings"};
    for (int i = 0; i < 3; i++)
        if (ox_attr(n, bad[i]))
            return ox_node_error(n, KILN_ERR_UNSUPPORTED, "attribute '%s' is not supported", bad[i]);
    return KILN_OK;
}

static kiln_status map_constant(ox_node *n) {
    ox_const c;
    kiln_dims d;
    memset(&d, 0, sizeof d);
    const Onnx__AttributeProto *a;
    if ((a = ox_attr(n, "value")) != NULL) {
        if (!a->t) return ox_node_error(n, KILN_ERR_FORMAT, "attribute 'value' holds no tensor");
        if (const_from_proto(n, a->t, &c) != KILN_OK) return KILN_ERR_FORMAT;
    } else if ((a = ox_attr(n, "value_float")) != NULL || (a = ox_attr(n, "value_int")) != NULL) {
        bool f = strcmp(a->name, "value_float") == 0;
        if (ox_const_new(n, f ? KILN_FLOAT32 : KILN_INT64, d, &c) != KILN_OK) return KILN_ERR_OUT_OF_MEMORY;
        if (f)
            ox_set_f(&c, 0, a->f);
        else
            ox_set_i(&c, 0, a->i);
    } else if ((a = ox_attr(n, "value_floats")) != NULL || (a = ox_attr(n, "value_ints")) != NULL) {
        bool f = strcmp(a->name, "value_floats") == 0;
        d.nb_dims = 1;
        d.d[0] = (int64_t)(f ? a->n_floats : a->n_ints);
        if (ox_const_new(n, f ? KILN_FLOAT32 : KILN_INT64, d, &c) != KILN_OK) return KILN_ERR_OUT_OF_MEMORY;
        for (int64_t i = 0; i < d.d[0]; i++) {
            if (f)
                ox_set_f(&c, i, a->floats[i]);
            else
                ox_set_i(&c, i, a->ints[i]);
        }
    } else {
        return ox_node_error(n, KILN_ERR_FORMAT, "no value attribute");
    }
    return ox_set_const(n, 0, &c);
}

/* ---- ConstantOfShape ---- */

static kiln_status map_cos(ox_node *n) {
    int64_t shape[KILN_MAX_DIMS];
    int nb;
    kiln_status st = ox_in_ints(n, 0, "input", shape, KILN_MAX_DIMS, &nb);
    if (st != KILN_OK) return st;
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.nb_dims = nb;
    for (int i = 0; i < nb; i++) {
        if (shape[i] < 0)
            return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "dimension %d is %lld", i, (long long)shape[i]);
        d.d[i] = shape[i];
    }
    kiln_dtype dt = KILN_FLOAT32;
    double fv = 0;
    int64_t iv = 0;
    const Onnx__AttributeProto *a = ox_attr(n, "value");
    if (a && a->t) {
        ox_const v;
        if (const_from_proto(n, a->t, &v) != KILN_OK) return KILN_ERR_FORMAT;
        if (v.count != 1) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "'value' must hold one element");
        dt = v.dtype;
        fv = ox_get_f(&v, 0);
        iv = ox_get_i(&v, 0);
    }
    ox_const c;
    if ((st = ox_const_new(n, dt, d, &c)) != KILN_OK) return st;
    for (int64_t i = 0; i < c.count; i++) {
        if (ox_dtype_is_float(dt))
            ox_set_f(&c, i, fv);
        else
            ox_set_i(&c, i, iv);
    }
    return ox_set_const(n, 0, &c);
}

static ox_fold_result fold_by_map(ox_node *n, ox_map_fn f) { return f(n) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR; }
static ox_fold_result fold_cos(ox_node *n) { return fold_by_map(n, map_cos); }

/* ---- Shape, Size ---- */

static kiln_status map_shape(ox_node *n) {
    kiln_dims d;
    kiln_status st = ox_in_known_dims(n, 0, &d);
    if (st != KILN_OK) return st;
    int64_t r = d.nb_dims;
    int64_t start = ox_attr_i(n, "start", 0), end = ox_attr_i(n, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    kiln_dims od;
    memset(&od, 0, sizeof od);
    od.nb_dims = 1;
    od.d[0] = end > start ? end - start : 0;
    ox_const c;
    if ((st = ox_const_new(n, KILN_INT64, od, &c)) != KILN_OK) return st;
    for (int64_t i = 0; i < od.d[0]; i++) ox_set_i(&c, i, d.d[start + i]);
    return ox_set_const(n, 0, &c);
}

static kiln_status map_size(ox_node *n) {
    kiln_dims d;
    kiln_status st = ox_in_known_dims(n, 0, &d);
    if (st != KILN_OK) return st;
    kiln_dims od;
    memset(&od, 0, sizeof od);
    ox_const c;
    if ((st = ox_const_new(n, KILN_INT64, od, &c)) != KILN_OK) return st;
    ox_set_i(&c, 0, ox_volume(&d));
    return ox_set_const(n, 0, &c);
}

static ox_fold_result fold_shape(ox_node *n) { return fold_by_map(n, map_shape); }
static ox_fold_result fold_size(ox_node *n) { return fold_by_map(n, map_size); }

/* ---- Range ---- */

static ox_fold_result fold_range(ox_node *n) {
    const ox_const *s = ox_in_const(n, 0), *l = ox_in_const(n, 1), *dl = ox_in_const(n, 2);
    if (!s || !l || !dl) return OX_FOLD_SKIP;
    if (s->count != 1 || l->count != 1 || dl->count != 1) {
        ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "start, limit and delta must be scalars");
        return OX_FOLD_ERROR;
    }
    if (l->dtype != s->dtype || dl->dtype != s->dtype) {
        ox_node_error(n, KILN_ERR_DTYPE, "start, limit and delta must have one dtype");
        return OX_FOLD_ERROR;
    }
    bool fl = ox_dtype_is_float(s->dtype);
    double start = ox_get_f(s, 0), limit = ox_get_f(l, 0), delta = ox_get_f(dl, 0);
    if (delta == 0 || !isfinite(start) || !isfinite(limit) || !isfinite(delta)) {
        ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "delta is 0 or a bound is not finite");
        return OX_FOLD_ERROR;
    }
    double cnt = ceil((limit - start) / delta);
    if (!fl) {
        int64_t is = ox_get_i(s, 0), il = ox_get_i(l, 0), id = ox_get_i(dl, 0);
        cnt = id ? ceil(((double)il - (double)is) / (double)id) : 0;
    }
    if (!(cnt >= 0)) cnt = 0; /* NaN too */
    if (cnt > 1e9) {
        ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "range of %.0f elements is too large", cnt);
        return OX_FOLD_ERROR;
    }
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.nb_dims = 1;
    d.d[0] = (int64_t)cnt;
    ox_const r;
    if (ox_const_new(n, s->dtype, d, &r) != KILN_OK) return OX_FOLD_ERROR;
    for (int64_t i = 0; i < d.d[0]; i++) {
        if (fl)
            ox_set_f(&r, i, start + (double)i * delta);
        else
            /* in unsigned arithmetic: i * delta alone may pass int64's range */
            ox_set_i(&r, i, (int64_t)((uint64_t)ox_get_i(s, 0) + (uint64_t)i * (uint64_t)ox_get_i(dl, 0)));
    }
    return ox_set_const(n, 0, &r) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static kiln_status map_range(ox_node *n) {
    static const char *what[] = {"start", "limit", "delta"};
    for (int i = 0; i < 3; i++)
        if (!ox_in_const(n, i)) return ox_not_const(n, i, what[i]);
    return ox_node_error(n, KILN_ERR_INTERNAL, "constant range was not folded");
}

/* ---- Identity, Dropout ---- */

static ox_fold_result fold_identity(ox_node *n) {
    return ox_set_const(n, 0, ox_in_const(n, 0)) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static kiln_status map_identity(ox_node *n) {
    kiln_tensor *t = ox_in_tensor(n, 0);
    return t ? ox_set_alias(n, 0, t) : KILN_ERR_INVALID_ARGUMENT;
}

static kiln_status check_dropout(ox_node *n) {
    if (n->opset >= 12 && ox_has_in(n, 2)) {
        const ox_const *tm = ox_in_const(n, 2);
        if (!tm) return ox_not_const(n, 2, "training_mode");
        if (tm->count == 1 && ox_get_i(tm, 0) != 0)
            return ox_node_error(n, KILN_ERR_UNSUPPORTED, "training_mode dropout is not supported (inference only)");
    }
    return KILN_OK;
}

/* The mask output of inference-mode dropout is all true. */
static kiln_status dropout_mask(ox_node *n) {
    if (!ox_out_used(n, 1)) return KILN_OK;
    kiln_dims d;
    kiln_status st = ox_in_known_dims(n, 0, &d);
    ox_const c;
    if (st == KILN_OK) st = ox_const_new(n, KILN_BOOL, d, &c);
    if (st != KILN_OK) return st;
    memset(c.data, 1, (size_t)c.count);
    return ox_set_const(n, 1, &c);
}

static ox_fold_result fold_dropout(ox_node *n) {
    if (ox_set_const(n, 0, ox_in_const(n, 0)) != KILN_OK || dropout_mask(n) != KILN_OK) return OX_FOLD_ERROR;
    return OX_FOLD_DONE;
}

static kiln_status map_dropout(ox_node *n) {
    kiln_status st = map_identity(n);
    return st == KILN_OK ? dropout_mask(n) : st;
}

/* ---- Cast, CastLike ---- */

static kiln_status cast_target(ox_node *n, kiln_dtype *to) {
    if (strcmp(n->n->op_type, "CastLike") == 0) {
        if (!ox_has_in(n, 1)) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "target_type input is missing");
        *to = ox_in_dtype(n, 1);
        return KILN_OK;
    }
    const Onnx__AttributeProto *a = ox_attr(n, "to");
    if (!a) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "attribute 'to' is missing");
    int32_t t = -1;
    if (a->has_i)
        t = (int32_t)a->i;
    else if (a->has_s) { /* opset 1 wrote the type name */
        static const char *names[] = {"UNDEFINED", "FLOAT",  "UINT8",     "INT8",       "UINT16",  "INT16",
                                      "INT32",     "INT64",  "STRING",    "BOOL",       "FLOAT16", "DOUBLE",
                                      "UINT32",    "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
        for (int i = 0; i < 17; i++)
            if (a->s.len == strlen(names[i]) && memcmp(a->s.data, names[i], a->s.len) == 0) t = i;
    }
    char b[24];
    if (!ox_dtype_from_onnx(t, to))
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "cast to %s is not supported", ox_onnx_type_name(t, b, sizeof b));
    return KILN_OK;
}

static kiln_status check_cast(ox_node *n) {
    kiln_dtype to;
    if (strcmp(n->n->op_type, "CastLike") == 0) return KILN_OK;
    return cast_target(n, &to);
}

static ox_fold_result fold_cast(ox_node *n) {
    kiln_dtype to;
    if (cast_target(n, &to) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *a = ox_in_const(n, 0);
    ox_const r;
    if (ox_const_new(n, to, a->dims, &r) != KILN_OK) return OX_FOLD_ERROR;
    ox_const_convert(a, &r);
    return ox_set_const(n, 0, &r) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static kiln_status map_cast(ox_node *n) {
    kiln_dtype to;
    kiln_status st = cast_target(n, &to);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    if (kiln_tensor_dtype(x) == to) return ox_set_alias(n, 0, x);
    kiln_layer *l = kiln_network_add_cast(n->p->net, x, to);
    if (!l) return ox_layer_failed(n, "cast");
    st = ox_main_layer(n, l);
    return st == KILN_OK ? ox_set_out(n, 0, kiln_layer_output(l, 0)) : st;
}

const ox_op ox_ops_const[] = {
    {"Constant", map_constant, check_constant, NULL},
    {"ConstantOfShape", map_cos, NULL, fold_cos},
    {"Shape", map_shape, NULL, fold_shape},
    {"Size", map_size, NULL, fold_size},
    {"Range", map_range, NULL, fold_range},
    {"Identity", map_identity, NULL, fold_identity},
    {"Dropout", map_dropout, check_dropout, fold_dropout},
    {"Cast", map_cast, check_cast, fold_cast},
    {"CastLike", map_cast, check_cast, fold_cast},
    {NULL, NULL, NULL, NULL},
};
