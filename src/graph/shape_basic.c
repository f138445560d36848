/* kiln internal: inference for the basic layers: shuffle (reshape, flatten, squeeze,
 * unsqueeze), constant, identity and cast. */
#include <string.h>

#include "graph/ops.h"

static kiln_status infer_reshape(kiln_layer *l, const kiln_dims *in, kiln_dims *out) {
    const kg_shuffle_params *s = &l->p.shuffle;
    int64_t vin = kiln_dims_volume(in), known = 1;
    int infer_at = -1;
    char a[128], b[128];
    *out = s->shape;
    for (int i = 0; i < s->shape.nb_dims; i++) {
        int64_t d = s->shape.d[i];
        if (d == 0 && !s->allow_zero) {
            if (i >= in->nb_dims)
                return kg_layer_error(l, KILN_ERR_SHAPE, "target dimension %d is 0 (copy) but the input %s has rank %d",
                                      i, kiln_dims_str(in, a, sizeof a), in->nb_dims);
            d = in->d[i];
            out->d[i] = d;
        }
        if (d == -1) {
            if (infer_at >= 0) return kg_layer_error(l, KILN_ERR_SHAPE, "target shape has more than one -1");
            infer_at = i;
            continue;
        }
        if (d < 0) return kg_layer_error(l, KILN_ERR_SHAPE, "target dimension %d is %lld", i, (long long)d);
        if (__builtin_mul_overflow(known, d, &known))
            return kg_layer_error(l, KILN_ERR_SHAPE, "target shape %s has more elements than can be counted",
                                  kiln_dims_str(&s->shape, b, sizeof b));
    }
    if (infer_at >= 0) {
        if (known == 0 || vin % known != 0)
            return kg_layer_error(l, KILN_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s",
                                  kiln_dims_str(in, a, sizeof a), (long long)vin, kiln_dims_str(&s->shape, b, sizeof b));
        out->d[infer_at] = vin / known;
    } else if (known != vin) {
        return kg_layer_error(l, KILN_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                              kiln_dims_str(in, a, sizeof a), (long long)vin, kiln_dims_str(out, b, sizeof b),
                              (long long)known);
    }
    return KILN_OK;
}

KG_INFER(shuffle) {
    const kiln_tensor *x = l->inputs[0];
    const kiln_dims *in = &x->dims;
    const kg_shuffle_params *s = &l->p.shuffle;
    kiln_dims out;
    memset(&out, 0, sizeof out);
    switch (s->kind) {
    case KG_SHUFFLE_RESHAPE: {
        kiln_status st = infer_reshape(l, in, &out);
        if (st != KILN_OK) return st;
        break;
    }
    case KG_SHUFFLE_FLATTEN: {
        int axis = s->axis < 0 ? s->axis + in->nb_dims : s->axis;
        if (axis < 0 || axis > in->nb_dims)
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "flatten axis %d is outside [-%d, %d]", s->axis,
                                  in->nb_dims, in->nb_dims);
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= in->d[i];
        for (int i = axis; i < in->nb_dims; i++) inner *= in->d[i];
        out.nb_dims = 2;
        out.d[0] = outer;
        out.d[1] = inner;
        break;
    }
    case KG_SHUFFLE_SQUEEZE: {
        bool drop[KILN_MAX_DIMS] = {false};
        if (s->nb_axes == 0) {
            for (int i = 0; i < in->nb_dims; i++) drop[i] = in->d[i] == 1;
        }
        for (int k = 0; k < s->nb_axes; k++) {
            int a = kg_axis(s->axes[k], in->nb_dims);
            if (a < 0)
                return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "squeeze axis %lld is outside the rank %d",
                                      (long long)s->axes[k], in->nb_dims);
            if (in->d[a] != 1)
                return kg_layer_error(l, KILN_ERR_SHAPE, "cannot squeeze axis %d of size %lld", a, (long long)in->d[a]);
            drop[a] = true;
        }
        for (int i = 0; i < in->nb_dims; i++)
            if (!drop[i]) out.d[out.nb_dims++] = in->d[i];
        break;
    }
    case KG_SHUFFLE_UNSQUEEZE: {
        int rank = in->nb_dims + s->nb_axes;
        if (rank > KILN_MAX_DIMS)
            return kg_layer_error(l, KILN_ERR_SHAPE, "unsqueeze gives rank %d, more than %d", rank, KILN_MAX_DIMS);
        bool ins[KILN_MAX_DIMS] = {false};
        for (int k = 0; k < s->nb_axes; k++) {
            int a = kg_axis(s->axes[k], rank);
            if (a < 0 || ins[a])
                return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unsqueeze axis %lld is %s", (long long)s->axes[k],
                                      a < 0 ? "outside the output rank" : "repeated");
            ins[a] = true;
        }
        out.nb_dims = rank;
        for (int i = 0, j = 0; i < rank; i++) out.d[i] = ins[i] ? 1 : in->d[j++];
        break;
    }
    default:
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown shuffle kind %d", (int)s->kind);
    }
    l->outputs[0]->dims = out;
    l->outputs[0]->dtype = x->dtype;
    return KILN_OK;
}

KG_INFER(constant) {
    l->outputs[0]->dims = l->p.constant;
    l->outputs[0]->dtype = l->w[0].dtype;
    if (kiln_dims_volume(&l->p.constant) != l->w[0].count)
        return kg_layer_error(l, KILN_ERR_SHAPE, "%lld values for a shape of %lld elements", (long long)l->w[0].count,
                              (long long)kiln_dims_volume(&l->p.constant));
    return KILN_OK;
}

KG_INFER(identity) {
    l->outputs[0]->dims = l->inputs[0]->dims;
    l->outputs[0]->dtype = l->inputs[0]->dtype;
    return KILN_OK;
}

KG_INFER(cast) {
    kiln_dtype to = l->p.cast.to;
    if (kiln_dtype_size(to) == 0) return kg_layer_error(l, KILN_ERR_DTYPE, "unknown target dtype %d", (int)to);
    l->outputs[0]->dims = l->inputs[0]->dims;
    l->outputs[0]->dtype = to;
    return KILN_OK;
}

/* Logically the identity: only the physical storage and layout change. */
KG_INFER(reformat) {
    const kiln_tensor *x = l->inputs[0];
    const kg_reformat_params *r = &l->p.reformat;
    if (r->storage != KG_STORAGE_SAME && r->storage != KILN_FLOAT32 && r->storage != KILN_FLOAT16)
        return kg_layer_error(l, KILN_ERR_DTYPE, "reformat to storage %d is not supported", r->storage);
    if (r->format != KG_FORMAT_LINEAR && !(r->format == KG_FORMAT_NHWC && x->dims.nb_dims == 4))
        return kg_layer_error(l, KILN_ERR_SHAPE, "reformat to format %d needs a 4-D tensor", r->format);
    l->outputs[0]->dims = x->dims;
    l->outputs[0]->dtype = x->dtype;
    return KILN_OK;
}
