/* kiln ONNX importer: what every op mapper uses: attributes, inputs (constants are
 * turned into kiln constant layers only when a layer needs them as tensors), output
 * binding by ONNX name, and small helper layers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "onnx_internal.h"

/* ---- small helpers ---- */

const char *ox_dims_str(const kiln_dims *d, char *buf, size_t size) {
    if (!d || d->nb_dims < 0 || d->nb_dims > KILN_MAX_DIMS) {
        snprintf(buf, size, "?");
        return buf;
    }
    if (d->nb_dims == 0) {
        snprintf(buf, size, "scalar");
        return buf;
    }
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < d->nb_dims && at < size; i++) {
        if (d->d[i] < 0)
            at += (size_t)snprintf(buf + at, size - at, i ? "x?" : "?");
        else
            at += (size_t)snprintf(buf + at, size - at, i ? "x%lld" : "%lld", (long long)d->d[i]);
    }
    return buf;
}

int64_t ox_volume(const kiln_dims *d) {
    if (d->nb_dims < 0 || d->nb_dims > KILN_MAX_DIMS) return -1;
    int64_t v = 1;
    for (int i = 0; i < d->nb_dims; i++) {
        if (d->d[i] < 0 || __builtin_mul_overflow(v, d->d[i], &v)) return -1;
    }
    return v;
}

bool ox_broadcast(const kiln_dims *a, const kiln_dims *b, kiln_dims *out) {
    int n = a->nb_dims > b->nb_dims ? a->nb_dims : b->nb_dims;
    kiln_dims r;
    memset(&r, 0, sizeof r);
    r.nb_dims = n;
    for (int i = 0; i < n; i++) {
        int ia = a->nb_dims - n + i, ib = b->nb_dims - n + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da == db || db == 1)
            r.d[i] = da;
        else if (da == 1)
            r.d[i] = db;
        else
            return false;
    }
    *out = r;
    return true;
}

/* ---- attributes ---- */

const Onnx__AttributeProto *ox_attr(const ox_node *n, const char *name) {
    for (size_t i = 0; i < n->n->n_attribute; i++) {
        const Onnx__AttributeProto *a = n->n->attribute[i];
        if (a && a->name && strcmp(a->name, name) == 0) return a;
    }
    return NULL;
}

int64_t ox_attr_i(const ox_node *n, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a) return def;
    if (a->has_i) return a->i;
    /* an integer given as a float: only when it is one (a NaN or 1e37 is not) */
    if (a->has_f && a->f >= -9.2e18f && a->f <= 9.2e18f) return (int64_t)a->f;
    return def;
}

float ox_attr_f(const ox_node *n, const char *name, float def) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a) return def;
    if (a->has_f) return a->f;
    if (a->has_i) return (float)a->i;
    return def;
}

const char *ox_attr_s(const ox_node *n, const char *name, const char *def, char *buf, size_t size) {
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a || !a->has_s) return def;
    size_t len = a->s.len < size - 1 ? a->s.len : size - 1;
    if (len) memcpy(buf, a->s.data, len);
    buf[len] = 0;
    return buf;
}

kiln_status ox_attr_ints(ox_node *n, const char *name, int64_t *out, int max, int *nb) {
    *nb = 0;
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a) return KILN_OK;
    if (a->n_ints > (size_t)max)
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "attribute '%s' has %zu values, at most %d are supported", name,
                             a->n_ints, max);
    for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
    *nb = (int)a->n_ints;
    return KILN_OK;
}

kiln_status ox_attr_floats(ox_node *n, const char *name, float *out, int max, int *nb) {
    *nb = 0;
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a) return KILN_OK;
    if (a->n_floats > (size_t)max)
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "attribute '%s' has %zu values, at most %d are supported", name,
                             a->n_floats, max);
    for (size_t i = 0; i < a->n_floats; i++) out[i] = a->floats[i];
    *nb = (int)a->n_floats;
    return KILN_OK;
}

/* ---- inputs ---- */

const ox_const *ox_in_const(const ox_node *n, int i) {
    return ox_has_in(n, i) && n->in[i]->is_const ? &n->in[i]->c : NULL;
}

kiln_tensor *ox_in_tensor(ox_node *n, int i) {
    if (!ox_has_in(n, i)) {
        ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "required input %d is missing", i);
        return NULL;
    }
    ox_value *v = n->in[i];
    if (v->t) return v->t;
    if (!v->is_const) {
        ox_node_error(n, KILN_ERR_INTERNAL, "input '%s' has no tensor", v->name);
        return NULL;
    }
    kiln_weights w = {v->c.dtype, v->c.data, v->c.count};
    kiln_layer *l = kiln_network_add_constant(n->p->net, v->c.dims, w);
    if (!l) {
        ox_layer_failed(n, "constant for an input");
        return NULL;
    }
    char name[300];
    snprintf(name, sizeof name, "const:%.280s", v->name);
    kiln_layer_set_name(l, name);
    kiln_tensor *t = kiln_layer_output(l, 0);
    if (ox_bind_name(n->p, t, v->name) != KILN_OK) {
        ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "cannot name constant '%s'", v->name);
        return NULL;
    }
    v->t = t;
    return t;
}

kiln_status ox_in_ints(ox_node *n, int i, const char *what, int64_t *out, int max, int *nb) {
    *nb = 0;
    const ox_const *c = ox_in_const(n, i);
    if (!c) {
        if (!ox_has_in(n, i)) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "input '%s' is missing", what);
        return ox_not_const(n, i, what);
    }
    if (ox_dtype_is_float(c->dtype) || c->dtype == KILN_BOOL)
        return ox_node_error(n, KILN_ERR_DTYPE, "input '%s' must hold integers, not %s", what,
                             kiln_dtype_name(c->dtype));
    if (c->count > max)
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "input '%s' has %lld values, at most %d are supported", what,
                             (long long)c->count, max);
    for (int64_t k = 0; k < c->count; k++) out[k] = ox_get_i(c, k);
    *nb = (int)c->count;
    return KILN_OK;
}

kiln_status ox_not_const(ox_node *n, int i, const char *what) {
    if (!ox_has_in(n, i)) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "input '%s' is missing", what);
    const ox_value *v = n->in[i];
    bool graph_input = false;
    for (int k = 0; v->t && k < kiln_network_num_inputs(n->p->net); k++)
        graph_input |= kiln_network_input(n->p->net, k) == v->t;
    if (graph_input)
        return ox_node_error_value(n, v->dep ? v->dep : v->name, KILN_ERR_UNSUPPORTED,
                                   "input '%s' must be a constant, but value '%s' is a model input "
                                   "(freeze it with kiln_onnx_desc.frozen_names, or make it an initializer)",
                                   what, v->name);
    if (v->dep)
        return ox_node_error_value(
            n, v->dep, KILN_ERR_UNSUPPORTED,
            "input '%s' must be a constant, but value '%s' is computed at run time from model input '%s'", what,
            v->name, v->dep);
    return ox_node_error(n, KILN_ERR_UNSUPPORTED,
                         "input '%s' must be a constant, but value '%s' is computed at run time", what, v->name);
}

kiln_status ox_in_scalar_f(ox_node *n, int i, const char *what, double *out) {
    const ox_const *c = ox_in_const(n, i);
    if (!c) return ox_not_const(n, i, what);
    if (c->count != 1)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "input '%s' must hold one value, it has %lld", what,
                             (long long)c->count);
    *out = ox_get_f(c, 0);
    return KILN_OK;
}

kiln_dtype ox_in_dtype(const ox_node *n, int i) {
    if (!ox_has_in(n, i)) return KILN_FLOAT32;
    const ox_value *v = n->in[i];
    if (v->t) return kiln_tensor_dtype(v->t);
    return v->c.dtype;
}

kiln_dims ox_in_dims(const ox_node *n, int i) {
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.nb_dims = -1;
    if (!ox_has_in(n, i)) return d;
    const ox_value *v = n->in[i];
    if (v->is_const) return v->c.dims;
    if (v->t) return kiln_tensor_dims(v->t);
    return d;
}

kiln_status ox_in_known_dims(ox_node *n, int i, kiln_dims *out) {
    *out = ox_in_dims(n, i);
    if (ox_volume(out) >= 0) return KILN_OK;
    return ox_node_error(n, KILN_ERR_SHAPE, "the shape of input '%s' is not known at import",
                         ox_has_in(n, i) ? n->in[i]->name : "?");
}

/* ---- outputs ---- */

static ox_value *out_value(ox_node *n, int i, kiln_status *st) {
    *st = KILN_OK;
    if (i >= n->nout || !n->n->output[i] || !*n->n->output[i]) return NULL;
    ox_value *v = ox_new_value(n->p, n->n->output[i]);
    if (!v) {
        *st = ox_find_value(n->p, n->n->output[i])
                  ? ox_node_error(n, KILN_ERR_FORMAT, "output '%s' is produced twice", n->n->output[i])
                  : ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    return v;
}

kiln_status ox_set_out(ox_node *n, int i, kiln_tensor *t) {
    kiln_status st;
    ox_value *v = out_value(n, i, &st);
    if (!v) return st != KILN_OK ? st : ox_name_internal(n->p, t);
    if (ox_bind_name(n->p, t, v->name) != KILN_OK)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "cannot name tensor '%s': %s", v->name, kiln_last_error());
    v->t = t;
    return KILN_OK;
}

kiln_status ox_set_alias(ox_node *n, int i, kiln_tensor *t) {
    kiln_status st;
    ox_value *v = out_value(n, i, &st);
    if (v) v->t = t;
    return st;
}

kiln_status ox_set_const(ox_node *n, int i, const ox_const *c) {
    kiln_status st;
    ox_value *v = out_value(n, i, &st);
    if (v) {
        v->is_const = true;
        v->c = *c;
    }
    return st;
}

bool ox_out_used(const ox_node *n, int i) {
    if (i >= n->nout || !n->n->output[i] || !*n->n->output[i]) return false;
    const ox_use *u = ox_find_use(n->p, n->n->output[i]);
    return u && u->uses > 0;
}

kiln_status ox_main_layer(ox_node *n, kiln_layer *l) { return kiln_layer_set_name(l, n->name); }

kiln_status ox_aux_layer(ox_node *n, kiln_layer *l, const char *suffix) {
    char name[300];
    snprintf(name, sizeof name, "%.200s/%.90s", n->name, suffix);
    kiln_status st = kiln_layer_set_name(l, name);
    for (int j = 0; st == KILN_OK && j < kiln_layer_num_outputs(l); j++)
        st = ox_name_internal(n->p, kiln_layer_output(l, j));
    return st;
}

/* ---- helper layers ---- */

static kiln_tensor *aux_out(ox_node *n, kiln_layer *l, const char *suffix, const char *what) {
    if (!l) {
        ox_layer_failed(n, what);
        return NULL;
    }
    if (ox_aux_layer(n, l, suffix) != KILN_OK) {
        ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
        return NULL;
    }
    return kiln_layer_output(l, 0);
}

kiln_tensor *ox_const_tensor(ox_node *n, kiln_dtype dtype, kiln_dims dims, const double *values, const char *suffix) {
    ox_const c;
    if (ox_const_new(n, dtype, dims, &c) != KILN_OK) return NULL;
    for (int64_t i = 0; i < c.count; i++) ox_set_f(&c, i, values[i]);
    kiln_weights w = {dtype, c.data, c.count};
    return aux_out(n, kiln_network_add_constant(n->p->net, dims, w), suffix, "constant");
}

kiln_tensor *ox_scalar_tensor(ox_node *n, kiln_dtype dtype, double v, const char *suffix) {
    kiln_dims d;
    memset(&d, 0, sizeof d);
    return ox_const_tensor(n, dtype, d, &v, suffix);
}

kiln_tensor *ox_reshape(ox_node *n, kiln_tensor *t, kiln_dims shape, const char *suffix) {
    return aux_out(n, kiln_network_add_reshape(n->p->net, t, shape, 1), suffix, "reshape");
}

kiln_tensor *ox_elt(ox_node *n, kiln_tensor *a, kiln_tensor *b, kiln_elementwise_op op, const char *suffix) {
    return aux_out(n, kiln_network_add_elementwise(n->p->net, a, b, op), suffix, "elementwise");
}

kiln_tensor *ox_cast(ox_node *n, kiln_tensor *t, kiln_dtype to, const char *suffix) {
    return aux_out(n, kiln_network_add_cast(n->p->net, t, to), suffix, "cast");
}
