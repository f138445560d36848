/* kiln ONNX importer: data-movement ops. Reshape, Flatten, Squeeze, Unsqueeze,
 * Transpose, Concat, Split, Slice, Pad, Gather, Expand, Tile, DepthToSpace,
 * SpaceToDepth, Resize, Upsample. Shape arguments must be constants (after folding);
 * on constant data these ops are evaluated on the host, which is what turns PyTorch's
 * Shape -> Gather -> Unsqueeze -> Concat chains into plain attributes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_internal.h"

static kiln_status finish1(ox_node *n, kiln_layer *l, const char *what) {
    if (!l) return ox_layer_failed(n, what);
    kiln_status st = ox_main_layer(n, l);
    if (st == KILN_OK) st = ox_set_out(n, 0, kiln_layer_output(l, 0));
    return st;
}

/* A constant with the same data and new dims (views need no copy). */
static ox_fold_result fold_view(ox_node *n, const ox_const *c, kiln_dims d) {
    if (ox_volume(&d) != c->count) {
        char b1[96], b2[96];
        ox_node_error(n, KILN_ERR_SHAPE, "cannot view %s as %s", ox_dims_str(&c->dims, b1, sizeof b1),
                      ox_dims_str(&d, b2, sizeof b2));
        return OX_FOLD_ERROR;
    }
    ox_const r = *c;
    r.dims = d;
    return ox_set_const(n, 0, &r) == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR;
}

static ox_fold_result fold_status(kiln_status st) { return st == KILN_OK ? OX_FOLD_DONE : OX_FOLD_ERROR; }

/* ---- Reshape ---- */

static kiln_status reshape_target(ox_node *n, int64_t *shape, int *nb) {
    if (n->opset < 5) return ox_attr_ints(n, "shape", shape, KILN_MAX_DIMS, nb);
    return ox_in_ints(n, 1, "shape", shape, KILN_MAX_DIMS, nb);
}

static ox_fold_result fold_reshape(ox_node *n) {
    int64_t shape[KILN_MAX_DIMS];
    int nb;
    if (reshape_target(n, shape, &nb) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    bool allow_zero = ox_attr_i(n, "allowzero", 0) != 0;
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.nb_dims = nb;
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < nb; i++) {
        int64_t v = shape[i];
        if (v == 0 && !allow_zero) {
            if (i >= c->dims.nb_dims) {
                ox_node_error(n, KILN_ERR_SHAPE, "shape entry %d is 0 but the input has rank %d", i, c->dims.nb_dims);
                return OX_FOLD_ERROR;
            }
            v = c->dims.d[i];
        }
        if (v == -1) {
            if (infer >= 0) {
                ox_node_error(n, KILN_ERR_SHAPE, "shape has more than one -1");
                return OX_FOLD_ERROR;
            }
            infer = i;
            continue;
        }
        if (v < 0) {
            ox_node_error(n, KILN_ERR_SHAPE, "shape entry %d is %lld", i, (long long)v);
            return OX_FOLD_ERROR;
        }
        d.d[i] = v;
        if (__builtin_mul_overflow(known, v, &known)) return OX_FOLD_ERROR;
    }
    if (infer >= 0) {
        if (known == 0 || c->count % known) {
            ox_node_error(n, KILN_ERR_SHAPE, "cannot infer the -1 in the shape from %lld elements",
                          (long long)c->count);
            return OX_FOLD_ERROR;
        }
        d.d[infer] = c->count / known;
    }
    return fold_view(n, c, d);
}

static kiln_status map_reshape(ox_node *n) {
    int64_t shape[KILN_MAX_DIMS];
    int nb;
    kiln_status st = reshape_target(n, shape, &nb);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n,
                   kiln_network_add_reshape(n->p->net, x, kiln_dims_make(nb, shape), (int)ox_attr_i(n, "allowzero", 0)),
                   "reshape");
}

/* ---- Flatten ---- */

static kiln_status flatten_dims(ox_node *n, kiln_dims in, kiln_dims *out) {
    int64_t axis = ox_attr_i(n, "axis", 1);
    if (axis < 0) axis += in.nb_dims;
    if (axis < 0 || axis > in.nb_dims)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                             (long long)ox_attr_i(n, "axis", 1), in.nb_dims);
    memset(out, 0, sizeof *out);
    out->nb_dims = 2;
    out->d[0] = out->d[1] = 1;
    for (int i = 0; i < in.nb_dims; i++) out->d[i < axis ? 0 : 1] *= in.d[i];
    return KILN_OK;
}

static ox_fold_result fold_flatten(ox_node *n) {
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    kiln_dims d;
    if (flatten_dims(n, c->dims, &d) != KILN_OK) return OX_FOLD_ERROR;
    return fold_view(n, c, d);
}

static kiln_status map_flatten(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int64_t axis = ox_attr_i(n, "axis", 1);
    int rank = kiln_tensor_dims(x).nb_dims;
    if (axis < 0 && rank >= 0) axis += rank;
    return finish1(n, kiln_network_add_flatten(n->p->net, x, (int)axis), "flatten");
}

/* ---- Squeeze, Unsqueeze ---- */

static kiln_status squeeze_axes(ox_node *n, int64_t *axes, int *nb, bool required) {
    if (n->opset < 13) return ox_attr_ints(n, "axes", axes, KILN_MAX_DIMS, nb);
    if (!ox_has_in(n, 1)) {
        *nb = 0;
        return required ? ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "input 'axes' is missing") : KILN_OK;
    }
    return ox_in_ints(n, 1, "axes", axes, KILN_MAX_DIMS, nb);
}

static ox_fold_result fold_squeeze(ox_node *n) {
    int64_t axes[KILN_MAX_DIMS];
    int nb;
    if (squeeze_axes(n, axes, &nb, false) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    bool drop[KILN_MAX_DIMS] = {false};
    int r = c->dims.nb_dims;
    for (int i = 0; i < nb; i++) {
        int a = ox_axis(axes[i], r);
        if (a < 0 || c->dims.d[a] != 1) {
            ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis %lld is not a dimension of size 1", (long long)axes[i]);
            return OX_FOLD_ERROR;
        }
        drop[a] = true;
    }
    kiln_dims d;
    memset(&d, 0, sizeof d);
    for (int i = 0; i < r; i++)
        if (!(nb ? drop[i] : c->dims.d[i] == 1)) d.d[d.nb_dims++] = c->dims.d[i];
    return fold_view(n, c, d);
}

static kiln_status map_squeeze(ox_node *n) {
    int64_t axes[KILN_MAX_DIMS];
    int nb;
    kiln_status st = squeeze_axes(n, axes, &nb, false);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_squeeze(n->p->net, x, nb, nb ? axes : NULL), "squeeze");
}

static ox_fold_result fold_unsqueeze(ox_node *n) {
    int64_t axes[KILN_MAX_DIMS];
    int nb;
    if (squeeze_axes(n, axes, &nb, true) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    int r = c->dims.nb_dims + nb;
    if (r > KILN_MAX_DIMS) {
        ox_node_error(n, KILN_ERR_UNSUPPORTED, "result rank %d exceeds %d", r, KILN_MAX_DIMS);
        return OX_FOLD_ERROR;
    }
    bool ins[KILN_MAX_DIMS] = {false};
    for (int i = 0; i < nb; i++) {
        int a = ox_axis(axes[i], r);
        if (a < 0 || ins[a]) {
            ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range or repeated", (long long)axes[i]);
            return OX_FOLD_ERROR;
        }
        ins[a] = true;
    }
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.nb_dims = r;
    for (int i = 0, k = 0; i < r; i++) d.d[i] = ins[i] ? 1 : c->dims.d[k++];
    return fold_view(n, c, d);
}

static kiln_status map_unsqueeze(ox_node *n) {
    int64_t axes[KILN_MAX_DIMS];
    int nb;
    kiln_status st = squeeze_axes(n, axes, &nb, true);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_unsqueeze(n->p->net, x, nb, axes), "unsqueeze");
}

/* ---- Transpose ---- */

static ox_fold_result fold_transpose(ox_node *n) {
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    int r = c->dims.nb_dims;
    int64_t perm[KILN_MAX_DIMS];
    int nb;
    if (ox_attr_ints(n, "perm", perm, KILN_MAX_DIMS, &nb) != KILN_OK) return OX_FOLD_ERROR;
    if (!nb) {
        nb = r;
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    }
    bool seen[KILN_MAX_DIMS] = {false};
    if (nb != r) {
        ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "perm has %d entries for rank %d", nb, r);
        return OX_FOLD_ERROR;
    }
    for (int i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || seen[perm[i]]) {
            ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "perm is not a permutation");
            return OX_FOLD_ERROR;
        }
        seen[perm[i]] = true;
    }
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.nb_dims = r;
    for (int i = 0; i < r; i++) d.d[i] = c->dims.d[perm[i]];
    ox_const o;
    if (ox_const_new(n, c->dtype, d, &o) != KILN_OK) return OX_FOLD_ERROR;
    int64_t ist[KILN_MAX_DIMS];
    ox_strides(&c->dims, ist);
    size_t es = kiln_dtype_size(c->dtype);
    for (int64_t i = 0; i < o.count; i++) {
        int64_t rem = i, src = 0;
        for (int k = r - 1; k >= 0; k--) {
            int64_t coord = rem % d.d[k];
            rem /= d.d[k];
            src += coord * ist[perm[k]];
        }
        memcpy((char *)o.data + (size_t)i * es, (const char *)c->data + (size_t)src * es, es);
    }
    return fold_status(ox_set_const(n, 0, &o));
}

static kiln_status map_transpose(ox_node *n) {
    int64_t perm[KILN_MAX_DIMS];
    int nb;
    kiln_status st = ox_attr_ints(n, "perm", perm, KILN_MAX_DIMS, &nb);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_transpose(n->p->net, x, nb, nb ? perm : NULL), "transpose");
}

/* ---- Concat ---- */

static int64_t concat_axis(const ox_node *n) { return ox_attr_i(n, "axis", n->opset < 4 ? 1 : 0); }

static ox_fold_result fold_concat(ox_node *n) {
    const ox_const *first = NULL;
    for (int i = 0; i < n->nin && !first; i++) first = ox_in_const(n, i);
    if (!first) return OX_FOLD_SKIP;
    int r = first->dims.nb_dims;
    int axis = ox_axis(concat_axis(n), r);
    if (axis < 0) {
        ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range for rank %d", (long long)concat_axis(n),
                      r);
        return OX_FOLD_ERROR;
    }
    kiln_dims d = first->dims;
    d.d[axis] = 0;
    for (int i = 0; i < n->nin; i++) {
        const ox_const *c = ox_in_const(n, i);
        if (!c) continue;
        bool ok = c->dims.nb_dims == r && c->dtype == first->dtype;
        for (int k = 0; ok && k < r; k++)
            if (k != axis && c->dims.d[k] != first->dims.d[k]) ok = false;
        if (!ok) {
            ox_node_error(n, KILN_ERR_SHAPE, "input %d does not match the others in shape or dtype", i);
            return OX_FOLD_ERROR;
        }
        d.d[axis] += c->dims.d[axis];
    }
    ox_const o;
    if (ox_const_new(n, first->dtype, d, &o) != KILN_OK) return OX_FOLD_ERROR;
    int64_t outer = 1;
    for (int k = 0; k < axis; k++) outer *= d.d[k];
    size_t es = kiln_dtype_size(first->dtype);
    int64_t inner = 1;
    for (int k = axis + 1; k < r; k++) inner *= d.d[k];
    size_t orow = (size_t)(d.d[axis] * inner) * es, at = 0;
    for (int i = 0; i < n->nin; i++) {
        const ox_const *c = ox_in_const(n, i);
        if (!c) continue;
        size_t row = (size_t)(c->dims.d[axis] * inner) * es;
        for (int64_t o2 = 0; o2 < outer && row; o2++)
            memcpy((char *)o.data + (size_t)o2 * orow + at, (const char *)c->data + (size_t)o2 * row, row);
        at += row;
    }
    return fold_status(ox_set_const(n, 0, &o));
}

static kiln_status map_concat(ox_node *n) {
    kiln_tensor *small[16], **ts = n->nin <= 16 ? small : calloc((size_t)n->nin, sizeof *ts);
    if (!ts) return ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    int nb = 0;
    kiln_status st = KILN_OK;
    for (int i = 0; i < n->nin && st == KILN_OK; i++) {
        if (!ox_has_in(n, i)) continue;
        ts[nb] = ox_in_tensor(n, i);
        if (!ts[nb]) st = KILN_ERR_INVALID_ARGUMENT;
        nb++;
    }
    if (st == KILN_OK) {
        if (nb == 1)
            st = ox_set_alias(n, 0, ts[0]);
        else
            st = finish1(n, kiln_network_add_concat(n->p->net, ts, nb, (int)concat_axis(n)), "concat");
    }
    if (ts != small) free(ts);
    return st;
}

/* ---- Split ---- */

static kiln_status map_split(ox_node *n) {
    int64_t axis = ox_attr_i(n, "axis", 0);
    int64_t sizes_buf[64], *sizes = NULL;
    int nb = 0;
    kiln_status st;
    if (n->nout > 64) return ox_node_error(n, KILN_ERR_UNSUPPORTED, "more than 64 outputs");
    if (n->opset >= 13 || (n->opset < 2 && ox_has_in(n, 1))) {
        if (ox_has_in(n, 1)) {
            if ((st = ox_in_ints(n, 1, "split", sizes_buf, 64, &nb)) != KILN_OK) return st;
            sizes = sizes_buf;
        }
    } else {
        if ((st = ox_attr_ints(n, "split", sizes_buf, 64, &nb)) != KILN_OK) return st;
        if (nb) sizes = sizes_buf;
    }
    if (sizes && nb != n->nout)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "split has %d sizes for %d outputs", nb, n->nout);
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int rank = kiln_tensor_dims(x).nb_dims;
    if (axis < 0 && rank >= 0) axis += rank;
    if (!sizes && rank > 0 && axis >= 0 && axis < rank) {
        /* ONNX before opset 18 requires equal pieces */
        int64_t len = kiln_tensor_dims(x).d[axis];
        if (len >= 0 && n->nout > 0 && len % n->nout)
            return ox_node_error(n, KILN_ERR_SHAPE, "axis of length %lld does not split into %d equal parts",
                                 (long long)len, n->nout);
    }
    kiln_layer *l = kiln_network_add_split(n->p->net, x, (int)axis, n->nout, sizes);
    if (!l) return ox_layer_failed(n, "split");
    st = ox_main_layer(n, l);
    for (int j = 0; j < n->nout && st == KILN_OK; j++) st = ox_set_out(n, j, kiln_layer_output(l, j));
    return st;
}

/* ---- Slice ---- */

typedef struct slice_args {
    int nb;
    int64_t starts[KILN_MAX_DIMS], ends[KILN_MAX_DIMS], axes[KILN_MAX_DIMS], steps[KILN_MAX_DIMS];
} slice_args;

static kiln_status slice_read(ox_node *n, slice_args *s) {
    kiln_status st;
    int ns, ne, na = 0, nst = 0;
    memset(s, 0, sizeof *s);
    if (n->opset < 10) {
        if ((st = ox_attr_ints(n, "starts", s->starts, KILN_MAX_DIMS, &ns)) != KILN_OK ||
            (st = ox_attr_ints(n, "ends", s->ends, KILN_MAX_DIMS, &ne)) != KILN_OK ||
            (st = ox_attr_ints(n, "axes", s->axes, KILN_MAX_DIMS, &na)) != KILN_OK)
            return st;
    } else {
        if ((st = ox_in_ints(n, 1, "starts", s->starts, KILN_MAX_DIMS, &ns)) != KILN_OK ||
            (st = ox_in_ints(n, 2, "ends", s->ends, KILN_MAX_DIMS, &ne)) != KILN_OK)
            return st;
        if (ox_has_in(n, 3) && (st = ox_in_ints(n, 3, "axes", s->axes, KILN_MAX_DIMS, &na)) != KILN_OK) return st;
        if (ox_has_in(n, 4) && (st = ox_in_ints(n, 4, "steps", s->steps, KILN_MAX_DIMS, &nst)) != KILN_OK) return st;
    }
    if (ns != ne || (na && na != ns) || (nst && nst != ns))
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "starts, ends, axes and steps differ in length");
    s->nb = ns;
    for (int i = 0; i < ns; i++) {
        if (!na) s->axes[i] = i;
        if (!nst) s->steps[i] = 1;
        if (s->steps[i] == 0) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "step %d is 0", i);
    }
    return KILN_OK;
}

static ox_fold_result fold_slice(ox_node *n) {
    slice_args s;
    if (slice_read(n, &s) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    int r = c->dims.nb_dims;
    int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS];
    kiln_dims d = c->dims;
    for (int k = 0; k < r; k++) start[k] = 0, step[k] = 1;
    for (int i = 0; i < s.nb; i++) {
        int a = ox_axis(s.axes[i], r);
        if (a < 0) {
            ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range", (long long)s.axes[i]);
            return OX_FOLD_ERROR;
        }
        int64_t dim = c->dims.d[a], b = s.starts[i], e = s.ends[i], st = s.steps[i];
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        if (st > 0) {
            b = b < 0 ? 0 : b > dim ? dim : b;
            e = e < 0 ? 0 : e > dim ? dim : e;
        } else {
            b = b < 0 ? 0 : b > dim - 1 ? dim - 1 : b;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        }
        int64_t cnt = st > 0 ? (e - b + st - 1) / st : (b - e + (-st) - 1) / (-st);
        d.d[a] = cnt > 0 ? cnt : 0;
        start[a] = b;
        step[a] = st;
    }
    ox_const o;
    if (ox_const_new(n, c->dtype, d, &o) != KILN_OK) return OX_FOLD_ERROR;
    int64_t ist[KILN_MAX_DIMS];
    ox_strides(&c->dims, ist);
    size_t es = kiln_dtype_size(c->dtype);
    for (int64_t i = 0; i < o.count; i++) {
        int64_t rem = i, src = 0;
        for (int k = r - 1; k >= 0; k--) {
            int64_t coord = rem % d.d[k];
            rem /= d.d[k];
            src += (start[k] + coord * step[k]) * ist[k];
        }
        memcpy((char *)o.data + (size_t)i * es, (const char *)c->data + (size_t)src * es, es);
    }
    return fold_status(ox_set_const(n, 0, &o));
}

static kiln_status map_slice(ox_node *n) {
    slice_args s;
    kiln_status st = slice_read(n, &s);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_slice(n->p->net, x, s.nb, s.starts, s.ends, s.axes, s.steps), "slice");
}

/* ---- Pad ---- */

static kiln_status pad_mode(ox_node *n, kiln_pad_mode *mode) {
    char buf[32];
    const char *m = ox_attr_s(n, "mode", "constant", buf, sizeof buf);
    if (strcmp(m, "constant") == 0)
        *mode = KILN_PAD_CONSTANT;
    else if (strcmp(m, "reflect") == 0)
        *mode = KILN_PAD_REFLECT;
    else if (strcmp(m, "edge") == 0)
        *mode = KILN_PAD_EDGE;
    else if (strcmp(m, "wrap") == 0)
        *mode = KILN_PAD_WRAP;
    else
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "Pad mode '%s' is not supported", m);
    return KILN_OK;
}

static kiln_status check_pad(ox_node *n) {
    kiln_pad_mode m;
    return pad_mode(n, &m);
}

static kiln_status map_pad(ox_node *n) {
    kiln_pad_mode mode = KILN_PAD_CONSTANT;
    kiln_status st = pad_mode(n, &mode);
    if (st != KILN_OK) return st;
    int64_t pads[2 * KILN_MAX_DIMS];
    int nb;
    double value = 0;
    if (n->opset < 11) {
        st = ox_attr_ints(n, ox_attr(n, "pads") ? "pads" : "paddings", pads, 2 * KILN_MAX_DIMS, &nb);
        value = ox_attr_f(n, "value", 0.0f);
    } else {
        st = ox_in_ints(n, 1, "pads", pads, 2 * KILN_MAX_DIMS, &nb);
        if (st == KILN_OK && ox_has_in(n, 2)) st = ox_in_scalar_f(n, 2, "constant_value", &value);
    }
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int rank = kiln_tensor_dims(x).nb_dims;
    if (rank < 0) return ox_node_error(n, KILN_ERR_SHAPE, "the input rank is not known");
    if (nb != 2 * rank)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "%d pads for an input of rank %d (need %d)", nb, rank,
                             2 * rank);
    return finish1(n, kiln_network_add_pad(n->p->net, x, pads, mode, (float)value), "pad");
}

/* ---- Gather ---- */

static ox_fold_result fold_gather(ox_node *n) {
    const ox_const *c = ox_in_const(n, 0), *ind = ox_in_const(n, 1);
    if (!c || !ind) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    int r = c->dims.nb_dims;
    int axis = ox_axis(ox_attr_i(n, "axis", 0), r);
    if (axis < 0 || ox_dtype_is_float(ind->dtype)) {
        ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "axis out of range or indices not integers");
        return OX_FOLD_ERROR;
    }
    if (r - 1 + ind->dims.nb_dims > KILN_MAX_DIMS) return OX_FOLD_SKIP;
    kiln_dims d;
    memset(&d, 0, sizeof d);
    for (int k = 0; k < axis; k++) d.d[d.nb_dims++] = c->dims.d[k];
    for (int k = 0; k < ind->dims.nb_dims; k++) d.d[d.nb_dims++] = ind->dims.d[k];
    for (int k = axis + 1; k < r; k++) d.d[d.nb_dims++] = c->dims.d[k];
    ox_const o;
    if (ox_const_new(n, c->dtype, d, &o) != KILN_OK) return OX_FOLD_ERROR;
    int64_t outer = 1, inner = 1, len = c->dims.d[axis];
    for (int k = 0; k < axis; k++) outer *= c->dims.d[k];
    for (int k = axis + 1; k < r; k++) inner *= c->dims.d[k];
    size_t es = kiln_dtype_size(c->dtype), row = (size_t)inner * es;
    for (int64_t o2 = 0; o2 < outer; o2++)
        for (int64_t j = 0; j < ind->count; j++) {
            int64_t idx = ox_get_i(ind, j);
            if (idx < 0) idx += len;
            if (idx < 0 || idx >= len) {
                ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "index %lld is out of range for a dimension of %lld",
                              (long long)ox_get_i(ind, j), (long long)len);
                return OX_FOLD_ERROR;
            }
            if (row)
                memcpy((char *)o.data + ((size_t)(o2 * ind->count + j)) * row,
                       (const char *)c->data + ((size_t)(o2 * len + idx)) * row, row);
        }
    return fold_status(ox_set_const(n, 0, &o));
}

static kiln_status map_gather(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    kiln_tensor *ind = x ? ox_in_tensor(n, 1) : NULL;
    if (!ind) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_gather(n->p->net, x, ind, (int)ox_attr_i(n, "axis", 0)), "gather");
}

/* ---- Expand, Tile ---- */

static ox_fold_result fold_expand(ox_node *n) {
    int64_t shape[KILN_MAX_DIMS];
    int nb;
    if (ox_in_ints(n, 1, "shape", shape, KILN_MAX_DIMS, &nb) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    kiln_dims t = kiln_dims_make(nb, shape), d;
    if (!ox_broadcast(&c->dims, &t, &d)) {
        ox_node_error(n, KILN_ERR_SHAPE, "the input does not broadcast to the shape");
        return OX_FOLD_ERROR;
    }
    ox_const o;
    if (ox_const_new(n, c->dtype, d, &o) != KILN_OK) return OX_FOLD_ERROR;
    ox_bcast b;
    ox_bcast_init(&b, &d, &c->dims);
    size_t es = kiln_dtype_size(c->dtype);
    for (int64_t i = 0; i < o.count; i++)
        memcpy((char *)o.data + (size_t)i * es, (const char *)c->data + (size_t)ox_bcast_index(&b, i) * es, es);
    return fold_status(ox_set_const(n, 0, &o));
}

static kiln_status map_expand(ox_node *n) {
    int64_t shape[KILN_MAX_DIMS];
    int nb;
    kiln_status st = ox_in_ints(n, 1, "shape", shape, KILN_MAX_DIMS, &nb);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_expand(n->p->net, x, kiln_dims_make(nb, shape)), "expand");
}

static ox_fold_result fold_tile(ox_node *n) {
    int64_t rep[KILN_MAX_DIMS];
    int nb;
    if (ox_in_ints(n, 1, "repeats", rep, KILN_MAX_DIMS, &nb) != KILN_OK) return OX_FOLD_ERROR;
    const ox_const *c = ox_in_const(n, 0);
    if (!c) return OX_FOLD_SKIP; /* a required input is absent: the import reports it */
    int r = c->dims.nb_dims;
    if (nb != r) {
        ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "%d repeats for rank %d", nb, r);
        return OX_FOLD_ERROR;
    }
    kiln_dims d = c->dims;
    for (int k = 0; k < r; k++) {
        if (rep[k] < 0 || __builtin_mul_overflow(d.d[k], rep[k], &d.d[k])) {
            ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "repeat %d is invalid", k);
            return OX_FOLD_ERROR;
        }
    }
    ox_const o;
    if (ox_const_new(n, c->dtype, d, &o) != KILN_OK) return OX_FOLD_ERROR;
    int64_t ist[KILN_MAX_DIMS];
    ox_strides(&c->dims, ist);
    size_t es = kiln_dtype_size(c->dtype);
    for (int64_t i = 0; i < o.count; i++) {
        int64_t rem = i, src = 0;
        for (int k = r - 1; k >= 0; k--) {
            int64_t coord = rem % d.d[k];
            rem /= d.d[k];
            src += (coord % c->dims.d[k]) * ist[k];
        }
        memcpy((char *)o.data + (size_t)i * es, (const char *)c->data + (size_t)src * es, es);
    }
    return fold_status(ox_set_const(n, 0, &o));
}

static kiln_status map_tile(ox_node *n) {
    int64_t rep[KILN_MAX_DIMS];
    int nb;
    kiln_status st = ox_in_ints(n, 1, "repeats", rep, KILN_MAX_DIMS, &nb);
    if (st != KILN_OK) return st;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int rank = kiln_tensor_dims(x).nb_dims;
    if (nb != rank) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "%d repeats for an input of rank %d", nb, rank);
    return finish1(n, kiln_network_add_tile(n->p->net, x, rep), "tile");
}

/* ---- DepthToSpace, SpaceToDepth ---- */

static kiln_status check_d2s(ox_node *n) {
    char buf[16];
    const char *m = ox_attr_s(n, "mode", "DCR", buf, sizeof buf);
    if (strcmp(m, "DCR") && strcmp(m, "CRD"))
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "DepthToSpace mode '%s' is not supported", m);
    return KILN_OK;
}

static kiln_status map_d2s(ox_node *n) {
    char buf[16];
    int crd = strcmp(ox_attr_s(n, "mode", "DCR", buf, sizeof buf), "CRD") == 0;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_depth_to_space(n->p->net, x, ox_attr_i(n, "blocksize", 0), crd),
                   "depth to space");
}

static kiln_status map_s2d(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_space_to_depth(n->p->net, x, ox_attr_i(n, "blocksize", 0)), "space to depth");
}

/* ---- Resize, Upsample ---- */

static kiln_status resize_modes(ox_node *n, kiln_resize_desc *d) {
    char b1[40], b2[40], b3[40];
    bool legacy = strcmp(n->n->op_type, "Upsample") == 0 || n->opset < 11;
    const char *mode = ox_attr_s(n, "mode", "nearest", b1, sizeof b1);
    if (strcmp(mode, "nearest") == 0)
        d->mode = KILN_RESIZE_NEAREST;
    else if (strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0)
        d->mode = KILN_RESIZE_LINEAR;
    else
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "%s mode '%s' is not supported", n->n->op_type, mode);
    if (legacy) { /* Upsample and Resize-10: asymmetric coordinates, nearest rounds down */
        d->coord = KILN_COORD_ASYMMETRIC;
        d->nearest = KILN_NEAREST_FLOOR;
        return KILN_OK;
    }
    const char *coord = ox_attr_s(n, "coordinate_transformation_mode", "half_pixel", b2, sizeof b2);
    static const struct {
        const char *s;
        kiln_resize_coord c;
    } coords[] = {{"half_pixel", KILN_COORD_HALF_PIXEL},
                  {"asymmetric", KILN_COORD_ASYMMETRIC},
                  {"pytorch_half_pixel", KILN_COORD_PYTORCH_HALF_PIXEL},
                  {"align_corners", KILN_COORD_ALIGN_CORNERS},
                  {"tf_half_pixel_for_nn", KILN_COORD_TF_HALF_PIXEL_FOR_NN}};
    int found = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(coord, coords[i].s) == 0) found = i;
    if (found < 0)
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "Resize coordinate_transformation_mode '%s' is not supported",
                             coord);
    d->coord = coords[found].c;
    const char *nm = ox_attr_s(n, "nearest_mode", "round_prefer_floor", b3, sizeof b3);
    if (strcmp(nm, "round_prefer_floor") == 0)
        d->nearest = KILN_NEAREST_ROUND_PREFER_FLOOR;
    else if (strcmp(nm, "round_prefer_ceil") == 0)
        d->nearest = KILN_NEAREST_ROUND_PREFER_CEIL;
    else if (strcmp(nm, "floor") == 0)
        d->nearest = KILN_NEAREST_FLOOR;
    else if (strcmp(nm, "ceil") == 0)
        d->nearest = KILN_NEAREST_CEIL;
    else
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "Resize nearest_mode '%s' is not supported", nm);
    if (ox_attr_i(n, "antialias", 0))
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "Resize antialias is not supported");
    return KILN_OK;
}

static kiln_status check_resize(ox_node *n) {
    kiln_resize_desc d;
    memset(&d, 0, sizeof d);
    return resize_modes(n, &d);
}

static kiln_status scales_from_input(ox_node *n, int i, kiln_resize_desc *d) {
    const ox_const *c = ox_in_const(n, i);
    if (!c) return ox_not_const(n, i, "scales");
    if (c->count > KILN_MAX_DIMS) return ox_node_error(n, KILN_ERR_UNSUPPORTED, "too many scales");
    d->nb_scales = (int32_t)c->count;
    for (int64_t k = 0; k < c->count; k++) d->scales[k] = (float)ox_get_f(c, k);
    return KILN_OK;
}

static kiln_status map_resize(ox_node *n) {
    kiln_resize_desc d;
    memset(&d, 0, sizeof d);
    kiln_status st = resize_modes(n, &d);
    if (st != KILN_OK) return st;
    bool upsample = strcmp(n->n->op_type, "Upsample") == 0;
    if (upsample && n->opset < 9) {
        int nb;
        if ((st = ox_attr_floats(n, "scales", d.scales, KILN_MAX_DIMS, &nb)) != KILN_OK) return st;
        d.nb_scales = nb;
        if (!nb && (ox_attr(n, "height_scale") || ox_attr(n, "width_scale"))) { /* opset 1 */
            d.nb_scales = 4;
            d.scales[0] = d.scales[1] = 1.0f;
            d.scales[2] = ox_attr_f(n, "height_scale", 1.0f);
            d.scales[3] = ox_attr_f(n, "width_scale", 1.0f);
        }
    } else if (upsample || n->opset < 11) {
        if ((st = scales_from_input(n, 1, &d)) != KILN_OK) return st;
    } else {
        const ox_const *sz = ox_in_const(n, 3);
        if (ox_has_in(n, 3) && !sz) return ox_not_const(n, 3, "sizes");
        if (sz && sz->count > 0) {
            int64_t v[KILN_MAX_DIMS];
            int nb;
            if ((st = ox_in_ints(n, 3, "sizes", v, KILN_MAX_DIMS, &nb)) != KILN_OK) return st;
            d.sizes = kiln_dims_make(nb, v);
        } else if (ox_has_in(n, 2)) {
            if ((st = scales_from_input(n, 2, &d)) != KILN_OK) return st;
        }
    }
    if (d.nb_scales == 0 && d.sizes.nb_dims <= 0)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "neither scales nor sizes are given");
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int rank = kiln_tensor_dims(x).nb_dims;
    int given = d.nb_scales ? d.nb_scales : d.sizes.nb_dims;
    if (rank >= 0 && given != rank)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "%d %s for an input of rank %d", given,
                             d.nb_scales ? "scales" : "sizes", rank);
    return finish1(n, kiln_network_add_resize(n->p->net, x, &d), "resize");
}

const ox_op ox_ops_tensor[] = {
    {"Reshape", map_reshape, NULL, fold_reshape},
    {"Flatten", map_flatten, NULL, fold_flatten},
    {"Squeeze", map_squeeze, NULL, fold_squeeze},
    {"Unsqueeze", map_unsqueeze, NULL, fold_unsqueeze},
    {"Transpose", map_transpose, NULL, fold_transpose},
    {"Concat", map_concat, NULL, fold_concat},
    {"Split", map_split, NULL, NULL},
    {"Slice", map_slice, NULL, fold_slice},
    {"Pad", map_pad, check_pad, NULL},
    {"Gather", map_gather, NULL, fold_gather},
    {"Expand", map_expand, NULL, fold_expand},
    {"Tile", map_tile, NULL, fold_tile},
    {"DepthToSpace", map_d2s, check_d2s, NULL},
    {"SpaceToDepth", map_s2d, NULL, NULL},
    {"Resize", map_resize, check_resize, NULL},
    {"Upsample", map_resize, check_resize, NULL},
    {NULL, NULL, NULL, NULL},
};
