/* kiln ONNX importer: Conv, ConvTranspose, pooling, normalisations (BatchNorm,
 * InstanceNorm, LRN) and the matrix products MatMul and Gemm. Kiln convolution and
 * pooling are 2-D: 1-D ops run on a [N, C, 1, L] view of their input. */
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

/* ---- spatial attributes ---- */

typedef struct spatial {
    int nsp;
    int64_t kernel[2], stride[2], dil[2], pb[2], pe[2], outpad[2];
} spatial;

typedef enum auto_pad { PAD_NOTSET, PAD_SAME_UPPER, PAD_SAME_LOWER, PAD_VALID } auto_pad;

static kiln_status read_auto_pad(ox_node *n, auto_pad *ap) {
    char buf[32];
    const char *s = ox_attr_s(n, "auto_pad", "NOTSET", buf, sizeof buf);
    if (strcmp(s, "NOTSET") == 0 || !*s)
        *ap = PAD_NOTSET;
    else if (strcmp(s, "SAME_UPPER") == 0)
        *ap = PAD_SAME_UPPER;
    else if (strcmp(s, "SAME_LOWER") == 0)
        *ap = PAD_SAME_LOWER;
    else if (strcmp(s, "VALID") == 0)
        *ap = PAD_VALID;
    else
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "auto_pad '%s' is not supported", s);
    return KILN_OK;
}

static kiln_status check_spatial(ox_node *n) {
    auto_pad ap;
    return read_auto_pad(n, &ap);
}

/* Reads kernel_shape (or takes `wkernel`), strides, dilations, pads and auto_pad for
 * nsp spatial axes of input spatial sizes `in`. */
static kiln_status read_spatial(ox_node *n, int nsp, const int64_t *wkernel, const int64_t *in, spatial *s) {
    memset(s, 0, sizeof *s);
    s->nsp = nsp;
    int64_t v[2 * KILN_MAX_DIMS];
    int nb;
    kiln_status st;
    if ((st = ox_attr_ints(n, "kernel_shape", v, KILN_MAX_DIMS, &nb)) != KILN_OK) return st;
    if (nb == 0 && !wkernel) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "attribute 'kernel_shape' is missing");
    if (nb && nb != nsp)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "kernel_shape has %d values for %d spatial axes", nb, nsp);
    for (int i = 0; i < nsp; i++) {
        s->kernel[i] = nb ? v[i] : wkernel[i];
        if (wkernel && nb && v[i] != wkernel[i])
            return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "kernel_shape does not match the weights");
        s->stride[i] = s->dil[i] = 1;
    }
    static const char *names[] = {"strides", "dilations", "output_padding"};
    int64_t *dst[] = {s->stride, s->dil, s->outpad};
    for (int k = 0; k < 3; k++) {
        if ((st = ox_attr_ints(n, names[k], v, KILN_MAX_DIMS, &nb)) != KILN_OK) return st;
        if (nb && nb != nsp)
            return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "'%s' has %d values for %d spatial axes", names[k], nb,
                                 nsp);
        for (int i = 0; i < nb; i++) dst[k][i] = v[i];
    }
    for (int i = 0; i < nsp; i++)
        if (s->stride[i] <= 0 || s->dil[i] <= 0 || s->kernel[i] <= 0)
            return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "kernel, strides and dilations must be positive");
    if ((st = ox_attr_ints(n, "pads", v, 2 * KILN_MAX_DIMS, &nb)) != KILN_OK) return st;
    if (nb && nb != 2 * nsp)
        return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "'pads' has %d values for %d spatial axes", nb, nsp);
    for (int i = 0; i < nb / 2; i++) {
        s->pb[i] = v[i];
        s->pe[i] = v[nsp + i];
    }
    auto_pad ap;
    if ((st = read_auto_pad(n, &ap)) != KILN_OK) return st;
    if (ap == PAD_VALID) {
        memset(s->pb, 0, sizeof s->pb);
        memset(s->pe, 0, sizeof s->pe);
    } else if (ap != PAD_NOTSET) {
        for (int i = 0; i < nsp; i++) {
            int64_t out = (in[i] + s->stride[i] - 1) / s->stride[i];
            int64_t total = (out - 1) * s->stride[i] + (s->kernel[i] - 1) * s->dil[i] + 1 - in[i];
            if (total < 0) total = 0;
            s->pb[i] = ap == PAD_SAME_UPPER ? total / 2 : total - total / 2;
            s->pe[i] = total - s->pb[i];
        }
    }
    return KILN_OK;
}

/* 1-D ops: [N, C, L] viewed as [N, C, 1, L]; spatial values move to the W axis. */
static void spatial_to_2d(spatial *s) {
    if (s->nsp != 1) return;
    s->kernel[1] = s->kernel[0], s->kernel[0] = 1;
    s->stride[1] = s->stride[0], s->stride[0] = 1;
    s->dil[1] = s->dil[0], s->dil[0] = 1;
    s->pb[1] = s->pb[0], s->pb[0] = 0;
    s->pe[1] = s->pe[0], s->pe[0] = 0;
    s->outpad[1] = s->outpad[0], s->outpad[0] = 0;
}

/* The input as 4-D, and its spatial sizes; rank must be 3 or 4. */
static kiln_tensor *input_2d(ox_node *n, int *nsp, int64_t *in_sp) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return NULL;
    kiln_dims d = kiln_tensor_dims(x);
    if (d.nb_dims != 3 && d.nb_dims != 4) {
        if (d.nb_dims < 0)
            ox_node_error(n, KILN_ERR_SHAPE, "the input shape is not known at import");
        else
            ox_node_error(n, KILN_ERR_UNSUPPORTED,
                          "%s over %d spatial dimensions is not supported (kiln supports 1-D and 2-D)", n->n->op_type,
                          d.nb_dims - 2);
        return NULL;
    }
    *nsp = d.nb_dims - 2;
    for (int i = 0; i < *nsp; i++) in_sp[i] = d.d[2 + i];
    if (*nsp == 2) return x;
    kiln_dims d4 = kiln_dims_make(4, (int64_t[]){d.d[0], d.d[1], 1, d.d[2]});
    return ox_reshape(n, x, d4, "to_2d");
}

/* Binds the layer output, dropping the dummy H axis again for 1-D ops. */
static kiln_status finish_2d(ox_node *n, kiln_layer *l, int nsp, const char *what) {
    if (!l) return ox_layer_failed(n, what);
    kiln_status st = ox_main_layer(n, l);
    if (st != KILN_OK) return st;
    kiln_tensor *y = kiln_layer_output(l, 0);
    if (nsp == 2) return ox_set_out(n, 0, y);
    if ((st = ox_name_internal(n->p, y)) != KILN_OK) return st;
    kiln_layer *sq = kiln_network_add_squeeze(n->p->net, y, 1, (int64_t[]){2});
    if (!sq) return ox_layer_failed(n, "squeeze to 1-D");
    char name[300];
    snprintf(name, sizeof name, "%.200s/to_1d", n->name);
    kiln_layer_set_name(sq, name);
    return ox_set_out(n, 0, kiln_layer_output(sq, 0));
}

/* ---- Conv, ConvTranspose ---- */

static kiln_status conv_weights(ox_node *n, int rank, const ox_const **w, const ox_const **b) {
    *w = ox_in_const(n, 1);
    *b = ox_in_const(n, 2);
    if (!*w) return ox_not_const(n, 1, "W");
    if (ox_has_in(n, 2) && !*b) return ox_not_const(n, 2, "B");
    if ((*w)->dims.nb_dims != rank) {
        char b1[96];
        return ox_node_error(n, KILN_ERR_SHAPE, "weights of shape %s for an input of rank %d",
                             ox_dims_str(&(*w)->dims, b1, sizeof b1), rank);
    }
    return KILN_OK;
}

static kiln_status map_conv_any(ox_node *n, bool transposed) {
    int nsp;
    int64_t in_sp[2];
    kiln_tensor *x = input_2d(n, &nsp, in_sp);
    if (!x) return KILN_ERR_UNSUPPORTED;
    const ox_const *w, *b;
    kiln_status st = conv_weights(n, nsp + 2, &w, &b);
    if (st != KILN_OK) return st;
    spatial s;
    if ((st = read_spatial(n, nsp, &w->dims.d[2], in_sp, &s)) != KILN_OK) return st;
    int64_t group = ox_attr_i(n, "group", 1);
    if (group <= 0) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "group %lld must be positive", (long long)group);
    if (transposed) {
        int64_t os[KILN_MAX_DIMS];
        int nos;
        auto_pad ap;
        if ((st = ox_attr_ints(n, "output_shape", os, KILN_MAX_DIMS, &nos)) != KILN_OK) return st;
        if ((st = read_auto_pad(n, &ap)) != KILN_OK) return st;
        if (nos > nsp) { /* output_shape may include N and C */
            for (int i = 0; i < nsp; i++) os[i] = os[nos - nsp + i];
            nos = nsp;
        }
        if (nos || ap == PAD_SAME_UPPER || ap == PAD_SAME_LOWER) {
            for (int i = 0; i < nsp; i++) {
                int64_t out = nos ? os[i] : in_sp[i] * s.stride[i];
                int64_t total = s.stride[i] * (in_sp[i] - 1) + s.outpad[i] + (s.kernel[i] - 1) * s.dil[i] + 1 - out;
                if (total < 0) {
                    /* a larger output than the padding-free one: the extra goes to output_padding */
                    s.outpad[i] -= total;
                    total = 0;
                }
                s.pb[i] = ap == PAD_SAME_UPPER ? total / 2 : total - total / 2;
                s.pe[i] = total - s.pb[i];
            }
        }
    }
    spatial_to_2d(&s);
    kiln_conv_desc d;
    memset(&d, 0, sizeof d);
    d.out_channels = transposed ? w->dims.d[1] * group : w->dims.d[0];
    for (int i = 0; i < 2; i++) {
        d.kernel[i] = s.kernel[i];
        d.stride[i] = s.stride[i];
        d.dilation[i] = s.dil[i];
        d.pad_begin[i] = s.pb[i];
        d.pad_end[i] = s.pe[i];
        d.output_padding[i] = s.outpad[i];
    }
    d.groups = group;
    kiln_weights kw = {w->dtype, w->data, w->count};
    kiln_weights bw = {KILN_FLOAT32, NULL, 0};
    if (b) bw = (kiln_weights){b->dtype, b->data, b->count};
    kiln_layer *l = transposed ? kiln_network_add_deconvolution(n->p->net, x, &d, kw, bw)
                               : kiln_network_add_convolution(n->p->net, x, &d, kw, bw);
    return finish_2d(n, l, nsp, transposed ? "deconvolution" : "convolution");
}

static kiln_status map_conv(ox_node *n) { return map_conv_any(n, false); }
static kiln_status map_convt(ox_node *n) { return map_conv_any(n, true); }

/* ---- pooling ---- */

static kiln_status check_pool(ox_node *n) {
    kiln_status st = check_spatial(n);
    if (st == KILN_OK && strcmp(n->n->op_type, "MaxPool") == 0 && ox_out_used(n, 1))
        st = ox_node_error(n, KILN_ERR_UNSUPPORTED, "the Indices output of MaxPool is not supported");
    return st;
}

static kiln_status map_pool(ox_node *n) {
    bool is_max = strcmp(n->n->op_type, "MaxPool") == 0;
    int nsp;
    int64_t in_sp[2];
    kiln_tensor *x = input_2d(n, &nsp, in_sp);
    if (!x) return KILN_ERR_UNSUPPORTED;
    spatial s;
    kiln_status st = read_spatial(n, nsp, NULL, in_sp, &s);
    if (st != KILN_OK) return st;
    spatial_to_2d(&s);
    kiln_pool_desc d;
    memset(&d, 0, sizeof d);
    d.type = is_max ? KILN_POOL_MAX : KILN_POOL_AVERAGE;
    for (int i = 0; i < 2; i++) {
        d.kernel[i] = s.kernel[i];
        d.stride[i] = s.stride[i];
        d.dilation[i] = s.dil[i];
        d.pad_begin[i] = s.pb[i];
        d.pad_end[i] = s.pe[i];
    }
    d.ceil_mode = (int32_t)ox_attr_i(n, "ceil_mode", 0);
    d.count_include_pad = (int32_t)ox_attr_i(n, "count_include_pad", 0);
    return finish_2d(n, kiln_network_add_pooling(n->p->net, x, &d), nsp, "pooling");
}

static kiln_status map_global_pool(ox_node *n) {
    bool is_max = strcmp(n->n->op_type, "GlobalMaxPool") == 0;
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    int rank = kiln_tensor_dims(x).nb_dims;
    if (rank < 3) return ox_node_error(n, KILN_ERR_SHAPE, "the input must have rank 3 or more, not %d", rank);
    if (rank == 4) {
        kiln_pool_desc d;
        memset(&d, 0, sizeof d);
        d.type = is_max ? KILN_POOL_MAX : KILN_POOL_AVERAGE;
        d.global = 1;
        return finish1(n, kiln_network_add_pooling(n->p->net, x, &d), "pooling");
    }
    /* other ranks: a reduction over every spatial axis */
    int64_t axes[KILN_MAX_DIMS];
    for (int i = 2; i < rank; i++) axes[i - 2] = i;
    return finish1(
        n, kiln_network_add_reduce(n->p->net, x, is_max ? KILN_REDUCE_MAX : KILN_REDUCE_MEAN, rank - 2, axes, 1),
        "reduce");
}

/* ---- normalisation ---- */

/* A constant input as float32 with `count` values (converted into a parser buffer). */
static const float *const_f32(ox_node *n, int i, const char *what, int64_t count) {
    const ox_const *c = ox_in_const(n, i);
    if (!c) {
        ox_not_const(n, i, what);
        return NULL;
    }
    if (c->count != count) {
        ox_node_error(n, KILN_ERR_SHAPE, "input '%s' has %lld values, expected %lld", what, (long long)c->count,
                      (long long)count);
        return NULL;
    }
    if (c->dtype == KILN_FLOAT32) return c->data;
    ox_const f;
    kiln_dims d = c->dims;
    if (ox_const_new(n, KILN_FLOAT32, d, &f) != KILN_OK) return NULL;
    ox_const_convert(c, &f);
    return f.data;
}

static kiln_status check_bn(ox_node *n) {
    if (n->opset >= 14 && ox_attr_i(n, "training_mode", 0))
        return ox_node_error(n, KILN_ERR_UNSUPPORTED, "training_mode batch normalization is not supported");
    for (int j = 1; j < 5; j++)
        if (ox_out_used(n, j))
            return ox_node_error(n, KILN_ERR_UNSUPPORTED, "the training outputs (mean, var, ...) are not supported");
    return KILN_OK;
}

static kiln_status map_bn(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    const ox_const *sc = ox_in_const(n, 1);
    if (!sc) return ox_not_const(n, 1, "scale");
    int64_t c = sc->count;
    kiln_dims xd = kiln_tensor_dims(x);
    if (xd.nb_dims >= 2 && xd.d[1] >= 0 && xd.d[1] != c)
        return ox_node_error(n, KILN_ERR_UNSUPPORTED,
                             "%lld statistics for %lld channels (spatial=0 batch norm is not supported)", (long long)c,
                             (long long)xd.d[1]);
    const float *g = const_f32(n, 1, "scale", c), *b = g ? const_f32(n, 2, "B", c) : NULL;
    const float *m = b ? const_f32(n, 3, "mean", c) : NULL, *v = m ? const_f32(n, 4, "var", c) : NULL;
    if (!v) return KILN_ERR_UNSUPPORTED;
    kiln_weights wg = {KILN_FLOAT32, g, c}, wb = {KILN_FLOAT32, b, c}, wm = {KILN_FLOAT32, m, c},
                 wv = {KILN_FLOAT32, v, c};
    return finish1(n, kiln_network_add_batch_norm(n->p->net, x, wg, wb, wm, wv, ox_attr_f(n, "epsilon", 1e-5f)),
                   "batch norm");
}

static kiln_status map_in(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    const ox_const *sc = ox_in_const(n, 1);
    if (!sc) return ox_not_const(n, 1, "scale");
    const float *s = const_f32(n, 1, "scale", sc->count), *b = s ? const_f32(n, 2, "B", sc->count) : NULL;
    if (!b) return KILN_ERR_UNSUPPORTED;
    kiln_weights ws = {KILN_FLOAT32, s, sc->count}, wb = {KILN_FLOAT32, b, sc->count};
    return finish1(n, kiln_network_add_instance_norm(n->p->net, x, ws, wb, ox_attr_f(n, "epsilon", 1e-5f)),
                   "instance norm");
}

static kiln_status map_lrn(ox_node *n) {
    kiln_tensor *x = ox_in_tensor(n, 0);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    if (!ox_attr(n, "size")) return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "attribute 'size' is missing");
    return finish1(n,
                   kiln_network_add_lrn(n->p->net, x, ox_attr_i(n, "size", 1), ox_attr_f(n, "alpha", 1e-4f),
                                        ox_attr_f(n, "beta", 0.75f), ox_attr_f(n, "bias", 1.0f)),
                   "lrn");
}

/* ---- MatMul, Gemm ---- */

static kiln_status map_matmul(ox_node *n) {
    kiln_tensor *a = ox_in_tensor(n, 0);
    kiln_tensor *b = a ? ox_in_tensor(n, 1) : NULL;
    if (!b) return KILN_ERR_INVALID_ARGUMENT;
    return finish1(n, kiln_network_add_matmul(n->p->net, a, b), "matmul");
}

static kiln_status map_gemm(ox_node *n) {
    kiln_tensor *a = ox_in_tensor(n, 0);
    kiln_tensor *b = a ? ox_in_tensor(n, 1) : NULL;
    if (!b) return KILN_ERR_INVALID_ARGUMENT;
    kiln_tensor *c = NULL;
    if (ox_has_in(n, 2) && !(c = ox_in_tensor(n, 2))) return KILN_ERR_INVALID_ARGUMENT;
    kiln_gemm_desc d = {(int32_t)ox_attr_i(n, "transA", 0), (int32_t)ox_attr_i(n, "transB", 0),
                        ox_attr_f(n, "alpha", 1.0f), ox_attr_f(n, "beta", 1.0f)};
    return finish1(n, kiln_network_add_gemm(n->p->net, a, b, c, &d), "gemm");
}

const ox_op ox_ops_conv[] = {
    {"Conv", map_conv, check_spatial, NULL},
    {"ConvTranspose", map_convt, check_spatial, NULL},
    {"MaxPool", map_pool, check_pool, NULL},
    {"AveragePool", map_pool, check_pool, NULL},
    {"GlobalAveragePool", map_global_pool, NULL, NULL},
    {"GlobalMaxPool", map_global_pool, NULL, NULL},
    {"BatchNormalization", map_bn, check_bn, NULL},
    {"InstanceNormalization", map_in, NULL, NULL},
    {"LRN", map_lrn, NULL, NULL},
    {"MatMul", map_matmul, NULL, NULL},
    {"Gemm", map_gemm, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};
