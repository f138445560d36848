/* kiln internal: shape and dtype inference for convolution, deconvolution, pooling, matmul and
 * gemm, with ONNX semantics (Conv, ConvTranspose, MaxPool/AveragePool, MatMul, Gemm). */
#include <string.h>

#include "graph/ops.h"

/* Spatial sizes and attributes beyond this are refused so that the output-size formulas
 * (products of two of them plus a few terms) cannot overflow int64. */
#define DIM_LIMIT ((int64_t)1 << 30)

static const char *const axis_name[2] = {"height", "width"};

/* Rank-3 inputs (N, C, W) are treated as N, C, 1, W: the [1] entries of a desc describe the
 * width axis and the [0] entries must be neutral. */
static kiln_status check_input_shape(kiln_layer *l, const kiln_tensor *x) {
    if (x->dims.nb_dims != 4 && x->dims.nb_dims != 3) {
        char buf[128];
        return kg_layer_error(l, KILN_ERR_SHAPE, "input '%s' has shape %s: expected rank 4 (NCHW) or 3 (NCW)",
                              x->name, kiln_dims_str(&x->dims, buf, sizeof buf));
    }
    for (int i = 0; i < x->dims.nb_dims; i++)
        if (x->dims.d[i] > DIM_LIMIT)
            return kg_layer_error(l, KILN_ERR_SHAPE, "input dimension %d (%lld) is too large", i,
                                  (long long)x->dims.d[i]);
    return KILN_OK;
}

static kiln_status check_input_rank(kiln_layer *l, const kiln_tensor *x) {
    if (x->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_DTYPE, "input '%s' is %s, only float32 is supported", x->name,
                              kiln_dtype_name(x->dtype));
    return check_input_shape(l, x);
}

/* Checks the [0] (height) entries of a rank-3 layer: kernel 0 or 1, stride and dilation 1,
 * no padding. */
static kiln_status check_neutral_height(kiln_layer *l, int64_t kernel, int64_t stride, int64_t dilation,
                                        int64_t pad_begin, int64_t pad_end, int64_t out_pad) {
    if ((kernel != 0 && kernel != 1) || stride != 1 || dilation != 1 || pad_begin || pad_end || out_pad)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT,
                              "rank-3 (NCW) input: the height entries ([0]) of kernel/stride/dilation/pads must "
                              "be 1/1/1/0 (got kernel %lld, stride %lld, dilation %lld, pads %lld,%lld)",
                              (long long)kernel, (long long)stride, (long long)dilation, (long long)pad_begin,
                              (long long)pad_end);
    return KILN_OK;
}

static kiln_status check_window(kiln_layer *l, int a, int64_t kernel, int64_t stride, int64_t dilation,
                                int64_t pad_begin, int64_t pad_end) {
    if (kernel <= 0 || kernel > DIM_LIMIT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "kernel %s %lld must be positive", axis_name[a],
                              (long long)kernel);
    if (stride <= 0 || stride > DIM_LIMIT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "stride %s %lld must be positive", axis_name[a],
                              (long long)stride);
    if (dilation <= 0 || dilation > DIM_LIMIT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "dilation %s %lld must be positive", axis_name[a],
                              (long long)dilation);
    if (pad_begin < 0 || pad_end < 0 || pad_begin > DIM_LIMIT || pad_end > DIM_LIMIT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "padding %s (%lld, %lld) must be non-negative",
                              axis_name[a], (long long)pad_begin, (long long)pad_end);
    return KILN_OK;
}

static kiln_status check_weight_dtype(kiln_layer *l, int i, const char *what) {
    if (l->w[i].count && l->w[i].dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_DTYPE, "%s weights are %s, only float32 is supported", what,
                              kiln_dtype_name(l->w[i].dtype));
    return KILN_OK;
}

static kiln_status infer_conv_common(kiln_layer *l, bool transposed) {
    const kiln_tensor *x = l->inputs[0];
    kiln_status st = check_input_rank(l, x);
    if (st != KILN_OK) return st;
    const kiln_conv_desc *d = &l->p.conv;
    int rank = x->dims.nb_dims;
    int first = rank == 3 ? 1 : 0; /* first spatial desc entry in use */
    if (rank == 3) {
        st = check_neutral_height(l, d->kernel[0], d->stride[0], d->dilation[0], d->pad_begin[0], d->pad_end[0],
                                  transposed ? d->output_padding[0] : 0);
        if (st != KILN_OK) return st;
    }
    for (int a = first; a < 2; a++) {
        st = check_window(l, a, d->kernel[a], d->stride[a], d->dilation[a], d->pad_begin[a], d->pad_end[a]);
        if (st != KILN_OK) return st;
    }
    int64_t n = x->dims.d[0], c = x->dims.d[1], k = d->out_channels, g = d->groups;
    if (k <= 0 || k > DIM_LIMIT)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "out_channels %lld must be positive", (long long)k);
    if (g <= 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "groups %lld must be positive", (long long)g);
    if (c <= 0) return kg_layer_error(l, KILN_ERR_SHAPE, "input '%s' has no channels", x->name);
    if (c % g != 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "input has %lld channels, not divisible by groups %lld",
                              (long long)c, (long long)g);
    if (k % g != 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "out_channels %lld is not divisible by groups %lld",
                              (long long)k, (long long)g);
    if ((st = check_weight_dtype(l, 0, "kernel")) != KILN_OK || (st = check_weight_dtype(l, 1, "bias")) != KILN_OK)
        return st;
    int64_t kh = rank == 3 ? 1 : d->kernel[0], kw = d->kernel[1];
    /* conv: [K, C/g, kh, kw]; deconv: [C, K/g, kh, kw] */
    int64_t rows = transposed ? c : k, per_group = transposed ? k / g : c / g, want;
    if (__builtin_mul_overflow(rows, per_group, &want) || __builtin_mul_overflow(want, kh, &want) ||
        __builtin_mul_overflow(want, kw, &want))
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "kernel size overflows");
    int64_t per_item = rows * kh * kw; /* values per kernel channel-per-group, over all rows */
    if (l->w[0].count != want && l->w[0].count > 0 && l->w[0].count % per_item == 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT,
                              "kernel has %lld channels per group, the layer needs %lld (%s %lld, groups %lld)",
                              (long long)(l->w[0].count / per_item), (long long)per_group,
                              transposed ? "out_channels" : "input channels", (long long)(transposed ? k : c),
                              (long long)g);
    if (l->w[0].count != want)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT,
                              "kernel has %lld values, expected %lld ([%lld, %lld, %lld, %lld] = %s)",
                              (long long)l->w[0].count, (long long)want, (long long)rows, (long long)per_group,
                              (long long)kh, (long long)kw,
                              transposed ? "[C, out_channels/groups, kh, kw]" : "[out_channels, C/groups, kh, kw]");
    if (l->w[1].count != 0 && l->w[1].count != k)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "bias has %lld values, expected %lld (out_channels) or none",
                              (long long)l->w[1].count, (long long)k);
    kiln_dims out = x->dims;
    out.d[0] = n;
    out.d[1] = k;
    for (int a = first; a < 2; a++) {
        int64_t in = x->dims.d[rank - 2 + a];
        int64_t span = (d->kernel[a] - 1) * d->dilation[a] + 1, o;
        if (transposed) {
            int64_t op = d->output_padding[a];
            int64_t lim = KILN_MAX(d->stride[a], d->dilation[a]);
            if (op < 0 || op >= lim)
                return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT,
                                      "output_padding %s %lld must be in [0, max(stride, dilation) = %lld)",
                                      axis_name[a], (long long)op, (long long)lim);
            o = d->stride[a] * (in - 1) + op + span - d->pad_begin[a] - d->pad_end[a];
            if (in <= 0 || o <= 0)
                return kg_layer_error(l, KILN_ERR_SHAPE,
                                      "output %s would be %lld (input %lld, kernel span %lld, stride %lld, pads "
                                      "%lld+%lld)",
                                      axis_name[a], (long long)(in > 0 ? o : 0), (long long)in, (long long)span,
                                      (long long)d->stride[a], (long long)d->pad_begin[a], (long long)d->pad_end[a]);
        } else {
            int64_t padded = in + d->pad_begin[a] + d->pad_end[a];
            if (padded < span)
                return kg_layer_error(l, KILN_ERR_SHAPE,
                                      "output %s would be <= 0: padded input %lld is smaller than the kernel span "
                                      "%lld",
                                      axis_name[a], (long long)padded, (long long)span);
            o = (padded - span) / d->stride[a] + 1;
        }
        out.d[rank - 2 + a] = o;
    }
    l->outputs[0]->dims = out;
    l->outputs[0]->dtype = KILN_FLOAT32;
    return KILN_OK;
}

KG_INFER(convolution) {
    kiln_status st = infer_conv_common(l, false);
    /* a fused residual (src/opt/passes.c) is added to the output: same shape and dtype */
    const kiln_tensor *r = l->nb_inputs > 1 ? l->inputs[1] : NULL, *y = l->outputs[0];
    if (st == KILN_OK && r && (!kiln_dims_equal(&r->dims, &y->dims) || r->dtype != y->dtype))
        return kg_layer_error(l, KILN_ERR_SHAPE, "residual '%s' does not match the output's shape and dtype", r->name);
    return st;
}
KG_INFER(deconvolution) { return infer_conv_common(l, true); }

/* ONNX MaxPool takes float16/32/64, int8 and uint8; AveragePool the float types. */
static bool pool_dtype_ok(kiln_pool_type type, kiln_dtype t) {
    bool flt = t == KILN_FLOAT32 || t == KILN_FLOAT16 || t == KILN_FLOAT64;
    return flt || (type == KILN_POOL_MAX && (t == KILN_INT8 || t == KILN_UINT8));
}

KG_INFER(pooling) {
    const kiln_tensor *x = l->inputs[0];
    const kiln_pool_desc *d = &l->p.pool;
    if (d->type != KILN_POOL_MAX && d->type != KILN_POOL_AVERAGE)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown pooling type %d", (int)d->type);
    if (!pool_dtype_ok(d->type, x->dtype))
        return kg_layer_error(l, KILN_ERR_DTYPE, "input '%s' is %s: %s pooling takes %s", x->name,
                              kiln_dtype_name(x->dtype), d->type == KILN_POOL_MAX ? "max" : "average",
                              d->type == KILN_POOL_MAX ? "float32, float16, float64, int8 or uint8"
                                                       : "float32, float16 or float64");
    kiln_status st = check_input_shape(l, x);
    if (st != KILN_OK) return st;
    int rank = x->dims.nb_dims;
    kiln_dims out = x->dims;
    if (d->global) {
        for (int i = 2; i < rank; i++) {
            if (x->dims.d[i] <= 0)
                return kg_layer_error(l, KILN_ERR_SHAPE, "global pooling over an empty axis %d", i);
            out.d[i] = 1;
        }
        l->outputs[0]->dims = out;
        l->outputs[0]->dtype = x->dtype;
        return KILN_OK;
    }
    int first = rank == 3 ? 1 : 0;
    if (rank == 3 && (st = check_neutral_height(l, d->kernel[0], d->stride[0], d->dilation[0], d->pad_begin[0],
                                                d->pad_end[0], 0)) != KILN_OK)
        return st;
    for (int a = first; a < 2; a++) {
        st = check_window(l, a, d->kernel[a], d->stride[a], d->dilation[a], d->pad_begin[a], d->pad_end[a]);
        if (st != KILN_OK) return st;
        int64_t span = (d->kernel[a] - 1) * d->dilation[a] + 1;
        /* a pad as wide as the window would allow windows made only of padding */
        if (d->pad_begin[a] >= span || d->pad_end[a] >= span)
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT,
                                  "padding %s (%lld, %lld) must be smaller than the kernel span %lld", axis_name[a],
                                  (long long)d->pad_begin[a], (long long)d->pad_end[a], (long long)span);
        int axis = rank - 2 + a;
        int64_t in = x->dims.d[axis];
        int64_t padded = in + d->pad_begin[a] + d->pad_end[a];
        if (padded < span || in <= 0)
            return kg_layer_error(l, KILN_ERR_SHAPE,
                                  "output %s would be <= 0: padded input %lld is smaller than the kernel span %lld",
                                  axis_name[a], (long long)padded, (long long)span);
        int64_t o;
        if (d->ceil_mode) {
            o = (padded - span + d->stride[a] - 1) / d->stride[a] + 1;
            /* ONNX/PyTorch: the last window must start inside the input or the left padding */
            if ((o - 1) * d->stride[a] >= in + d->pad_begin[a]) o--;
        } else {
            o = (padded - span) / d->stride[a] + 1;
        }
        out.d[axis] = o;
    }
    l->outputs[0]->dims = out;
    l->outputs[0]->dtype = x->dtype;
    return KILN_OK;
}

KG_INFER(matmul) {
    const kiln_tensor *a = l->inputs[0], *b = l->inputs[1];
    char sa[128], sb[128];
    for (int i = 0; i < 2; i++) {
        const kiln_tensor *t = l->inputs[i];
        if (t->dtype != KILN_FLOAT32)
            return kg_layer_error(l, KILN_ERR_DTYPE, "input %d '%s' is %s, only float32 is supported", i, t->name,
                                  kiln_dtype_name(t->dtype));
        if (t->dims.nb_dims < 1)
            return kg_layer_error(l, KILN_ERR_SHAPE, "input %d '%s' is a scalar: matmul needs rank >= 1", i,
                                  t->name);
    }
    kiln_dims da = a->dims, db = b->dims;
    int ra = da.nb_dims, rb = db.nb_dims;
    int64_t m = ra == 1 ? 1 : da.d[ra - 2], ka = da.d[ra - 1];
    int64_t kb = rb == 1 ? db.d[0] : db.d[rb - 2], n = rb == 1 ? 1 : db.d[rb - 1];
    if (ka != kb)
        return kg_layer_error(l, KILN_ERR_SHAPE, "inner dimensions differ: %s x %s (%lld vs %lld)",
                              kiln_dims_str(&da, sa, sizeof sa), kiln_dims_str(&db, sb, sizeof sb), (long long)ka,
                              (long long)kb);
    kiln_dims ba = {.nb_dims = ra > 2 ? ra - 2 : 0}, bb = {.nb_dims = rb > 2 ? rb - 2 : 0}, batch;
    for (int i = 0; i < ba.nb_dims; i++) ba.d[i] = da.d[i];
    for (int i = 0; i < bb.nb_dims; i++) bb.d[i] = db.d[i];
    if (!kiln_broadcast_dims(&ba, &bb, &batch))
        return kg_layer_error(l, KILN_ERR_SHAPE, "batch dimensions of %s and %s do not broadcast",
                              kiln_dims_str(&da, sa, sizeof sa), kiln_dims_str(&db, sb, sizeof sb));
    kiln_dims out = batch;
    if (ra > 1) out.d[out.nb_dims++] = m;
    if (rb > 1) out.d[out.nb_dims++] = n;
    l->outputs[0]->dims = out;
    l->outputs[0]->dtype = KILN_FLOAT32;
    return KILN_OK;
}

KG_INFER(gemm) {
    const kiln_gemm_desc *d = &l->p.gemm;
    char s[128];
    for (int i = 0; i < 3; i++) {
        const kiln_tensor *t = l->inputs[i];
        if (!t) {
            if (i == 2) continue;
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "input %d is missing", i);
        }
        if (t->dtype != KILN_FLOAT32)
            return kg_layer_error(l, KILN_ERR_DTYPE, "input %d '%s' is %s, only float32 is supported", i, t->name,
                                  kiln_dtype_name(t->dtype));
        if (i < 2 && t->dims.nb_dims != 2)
            return kg_layer_error(l, KILN_ERR_SHAPE, "input %c '%s' has shape %s: gemm needs a matrix",
                                  "AB"[i], t->name, kiln_dims_str(&t->dims, s, sizeof s));
    }
    const kiln_dims *da = &l->inputs[0]->dims, *db = &l->inputs[1]->dims;
    int64_t m = d->trans_a ? da->d[1] : da->d[0], ka = d->trans_a ? da->d[0] : da->d[1];
    int64_t kb = d->trans_b ? db->d[1] : db->d[0], n = d->trans_b ? db->d[0] : db->d[1];
    if (ka != kb) {
        char s2[128];
        return kg_layer_error(l, KILN_ERR_SHAPE, "inner dimensions differ: A %s%s, B %s%s (%lld vs %lld)",
                              kiln_dims_str(da, s, sizeof s), d->trans_a ? " transposed" : "",
                              kiln_dims_str(db, s2, sizeof s2), d->trans_b ? " transposed" : "", (long long)ka,
                              (long long)kb);
    }
    const kiln_tensor *c = l->inputs[2];
    if (c) {
        const kiln_dims *dc = &c->dims;
        bool ok = dc->nb_dims <= 2;
        int64_t want[2] = {m, n};
        for (int i = 0; ok && i < dc->nb_dims; i++) {
            int64_t v = dc->d[dc->nb_dims - 1 - i], w = want[1 - i];
            if (v != 1 && v != w) ok = false;
        }
        if (!ok)
            return kg_layer_error(l, KILN_ERR_SHAPE, "C has shape %s, which does not broadcast to [%lld, %lld]",
                                  kiln_dims_str(dc, s, sizeof s), (long long)m, (long long)n);
    }
    l->outputs[0]->dims = kiln_dims_make(2, (int64_t[]){m, n});
    l->outputs[0]->dtype = KILN_FLOAT32;
    return KILN_OK;
}
