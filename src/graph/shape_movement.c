/* kiln: shape and dtype inference for the data-movement layers (concat, split, slice,
 * transpose, pad, gather, expand, tile, depth/space rearrangements) and resize, with
 * ONNX semantics. These layers move bytes, so every dtype is accepted unless noted. */
#include <math.h>
#include <string.h>

#include "graph/ops.h"

#define DSTR(name, dims)                                                                   \
    char name[24 * KILN_MAX_DIMS];                                                         \
    kiln_dims_str((dims), name, sizeof name)

/* Every data-movement kernel indexes by element size; a dtype without one is a bug
 * upstream, but reporting it beats dividing by zero later. */
static kiln_status check_dtype_known(kiln_layer *l, const kiln_tensor *t, int idx) {
    if (kiln_dtype_size(t->dtype) == 0)
        return kg_layer_error(l, KILN_ERR_DTYPE, "input %d '%s' has unknown dtype %d", idx, t->name,
                              (int)t->dtype);
    return KILN_OK;
}

static kiln_status set_output(kiln_layer *l, int j, kiln_dtype dtype, const kiln_dims *dims) {
    l->outputs[j]->dtype = dtype;
    l->outputs[j]->dims = *dims;
    return KILN_OK;
}

/* ---- concat, split ---- */

KG_INFER(concat) {
    if (l->nb_inputs < 1) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "no inputs");
    const kiln_tensor *t0 = l->inputs[0];
    if (!t0) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "input 0 is missing");
    kiln_status st = check_dtype_known(l, t0, 0);
    if (st != KILN_OK) return st;
    int rank = t0->dims.nb_dims;
    if (rank == 0) return kg_layer_error(l, KILN_ERR_SHAPE, "cannot concatenate scalars (input 0 has rank 0)");
    int axis = kg_axis(l->p.axis.axis, rank);
    if (axis < 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %d is out of range for rank %d", l->p.axis.axis,
                              rank);
    kiln_dims out = t0->dims;
    for (int i = 1; i < l->nb_inputs; i++) {
        const kiln_tensor *t = l->inputs[i];
        if (!t) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "input %d is missing", i);
        if (t->dtype != t0->dtype)
            return kg_layer_error(l, KILN_ERR_DTYPE, "input %d '%s' is %s but input 0 is %s", i, t->name,
                                  kiln_dtype_name(t->dtype), kiln_dtype_name(t0->dtype));
        if (t->dims.nb_dims != rank)
            return kg_layer_error(l, KILN_ERR_SHAPE, "input %d '%s' has rank %d but input 0 has rank %d", i,
                                  t->name, t->dims.nb_dims, rank);
        for (int k = 0; k < rank; k++) {
            if (k == axis) continue;
            if (t->dims.d[k] != t0->dims.d[k]) {
                DSTR(a, &t0->dims);
                DSTR(b, &t->dims);
                return kg_layer_error(l, KILN_ERR_SHAPE,
                                      "input %d '%s' (%s) differs from input 0 (%s) in dimension %d, not the concat axis %d",
                                      i, t->name, b, a, k, axis);
            }
        }
        if (__builtin_add_overflow(out.d[axis], t->dims.d[axis], &out.d[axis]))
            return kg_layer_error(l, KILN_ERR_SHAPE, "concatenated axis size overflows");
    }
    return set_output(l, 0, t0->dtype, &out);
}

KG_INFER(split) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    int rank = in->dims.nb_dims;
    if (rank == 0) return kg_layer_error(l, KILN_ERR_SHAPE, "cannot split a scalar");
    int axis = kg_axis(l->p.split.axis, rank);
    if (axis < 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %d is out of range for rank %d", l->p.split.axis,
                              rank);
    int n = l->nb_outputs;
    if (n < 1 || l->p.split.nb_outputs != n)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%d outputs declared but the layer has %d",
                              l->p.split.nb_outputs, n);
    int64_t dim = in->dims.d[axis];
    int64_t piece = 0, last = 0;
    if (l->aux) {
        if (l->nb_aux != n)
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%d split sizes for %d outputs", l->nb_aux, n);
        int64_t sum = 0;
        for (int j = 0; j < n; j++) {
            if (l->aux[j] < 0)
                return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "split size %d is negative (%lld)", j,
                                      (long long)l->aux[j]);
            if (__builtin_add_overflow(sum, l->aux[j], &sum))
                return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "split sizes overflow");
        }
        if (sum != dim)
            return kg_layer_error(l, KILN_ERR_SHAPE, "split sizes add up to %lld but axis %d has size %lld",
                                  (long long)sum, axis, (long long)dim);
    } else {
        /* ONNX-18 num_outputs rule: pieces of ceil(dim / n), the last one smaller. */
        piece = (dim + n - 1) / n;
        last = dim - piece * (n - 1);
        if (last < 0)
            return kg_layer_error(l, KILN_ERR_SHAPE,
                                  "axis %d of size %lld cannot be split into %d pieces of ceil(%lld/%d) = %lld",
                                  axis, (long long)dim, n, (long long)dim, n, (long long)piece);
    }
    for (int j = 0; j < n; j++) {
        kiln_dims d = in->dims;
        d.d[axis] = l->aux ? l->aux[j] : (j == n - 1 ? last : piece);
        set_output(l, j, in->dtype, &d);
    }
    return KILN_OK;
}

/* ---- slice ---- */

/* Resolves ONNX Slice parameters against the input dims: start and step of every axis
 * (axes not sliced get 0 and 1) and the output dims. Shared with the CPU kernel
 * (src/cpu/movement.c) so both agree on clamping. */

kiln_status kg_slice_resolve(const kiln_layer *l, int64_t *start, int64_t *step, kiln_dims *out) {
    const kiln_dims *in = &l->inputs[0]->dims;
    const kg_slice_params *p = &l->p.slice;
    int rank = in->nb_dims;
    *out = *in;
    for (int k = 0; k < rank; k++) {
        start[k] = 0;
        step[k] = 1;
    }
    if (p->nb < 0 || p->nb > KILN_MAX_DIMS)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%d sliced axes (0..%d)", p->nb, KILN_MAX_DIMS);
    bool seen[KILN_MAX_DIMS] = {false};
    for (int i = 0; i < p->nb; i++) {
        int a = kg_axis(p->axes[i], rank);
        if (a < 0)
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                                  (long long)p->axes[i], rank);
        if (seen[a]) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %d is sliced twice", a);
        seen[a] = true;
        int64_t s = p->steps[i], d = in->d[a];
        if (s == 0) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "step of axis %d is 0", a);
        /* INT64_MIN + d cannot overflow (d >= 0); INT64_MAX stays positive: both end up
         * clamped, which is how ONNX spells "to the end". */
        int64_t b = p->starts[i], e = p->ends[i];
        if (b < 0) b += d;
        if (e < 0) e += d;
        int64_t n;
        if (s > 0) {
            b = KILN_MIN(KILN_MAX(b, 0), d);
            e = KILN_MIN(KILN_MAX(e, 0), d);
            n = e > b ? (int64_t)(((uint64_t)(e - b) - 1) / (uint64_t)s + 1) : 0;
        } else {
            b = KILN_MIN(KILN_MAX(b, -1), d - 1);
            e = KILN_MIN(KILN_MAX(e, -1), d - 1);
            uint64_t ms = (uint64_t)0 - (uint64_t)s; /* |s| without overflow at INT64_MIN */
            n = b > e ? (int64_t)(((uint64_t)(b - e) - 1) / ms + 1) : 0;
        }
        start[a] = n > 0 ? b : 0;
        step[a] = s;
        out->d[a] = n;
    }
    return KILN_OK;
}

KG_INFER(slice) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS];
    kiln_dims out;
    st = kg_slice_resolve(l, start, step, &out);
    if (st != KILN_OK) return st;
    return set_output(l, 0, in->dtype, &out);
}

/* ---- transpose ---- */

KG_INFER(transpose) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    int rank = in->dims.nb_dims;
    kg_transpose_params *p = &l->p.transpose;
    if (p->nb == -1) { /* no perm given: reverse the axes, resolved once the rank is known */
        p->nb = rank;
        for (int i = 0; i < rank; i++) p->perm[i] = rank - 1 - i;
    }
    if (p->nb != rank)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "perm has %d entries but the input has rank %d", p->nb,
                              rank);
    bool seen[KILN_MAX_DIMS] = {false};
    kiln_dims out = in->dims;
    for (int i = 0; i < rank; i++) {
        int64_t a = p->perm[i];
        if (a < 0 || a >= rank)
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "perm[%d] = %lld is out of range for rank %d", i,
                                  (long long)a, rank);
        if (seen[a])
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "perm is not a permutation: axis %lld appears twice",
                                  (long long)a);
        seen[a] = true;
        out.d[i] = in->dims.d[a];
    }
    return set_output(l, 0, in->dtype, &out);
}

/* ---- pad ---- */

KG_INFER(pad) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    const kg_pad_params *p = &l->p.pad;
    static const char *const mode_names[] = {"constant", "reflect", "edge", "wrap"};
    if ((unsigned)p->mode > KILN_PAD_WRAP)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown pad mode %d", (int)p->mode);
    int rank = in->dims.nb_dims;
    kiln_dims out = in->dims;
    for (int k = 0; k < rank; k++) {
        int64_t b = p->pads[k], e = p->pads[rank + k], d = in->dims.d[k];
        /* Negative pads crop first; the other modes then pad what is left. */
        if (b < -d || e < -d || d + KILN_MIN(b, 0) + KILN_MIN(e, 0) < 0)
            return kg_layer_error(l, KILN_ERR_SHAPE, "pads %lld, %lld crop more than the %lld elements of axis %d",
                                  (long long)b, (long long)e, (long long)d, k);
        int64_t kept = d + KILN_MIN(b, 0) + KILN_MIN(e, 0);
        int64_t pb = KILN_MAX(b, 0), pe = KILN_MAX(e, 0), pads;
        if (p->mode != KILN_PAD_CONSTANT && (pb > 0 || pe > 0)) {
            if (kept == 0)
                return kg_layer_error(l, KILN_ERR_SHAPE, "%s padding of axis %d has no element to copy (size %lld after cropping)",
                                      mode_names[p->mode], k, (long long)kept);
            if (p->mode == KILN_PAD_REFLECT && (pb >= kept || pe >= kept))
                return kg_layer_error(l, KILN_ERR_SHAPE,
                                      "reflect pads %lld, %lld of axis %d must be smaller than its size %lld", (long long)pb,
                                      (long long)pe, k, (long long)kept);
        }
        if (__builtin_add_overflow(pb, pe, &pads) || __builtin_add_overflow(kept, pads, &out.d[k]))
            return kg_layer_error(l, KILN_ERR_SHAPE, "padded size of axis %d overflows", k);
    }
    if (kiln_dims_volume(&out) < 0) return kg_layer_error(l, KILN_ERR_SHAPE, "output volume overflows");
    return set_output(l, 0, in->dtype, &out);
}

/* ---- gather ---- */

KG_INFER(gather) {
    const kiln_tensor *data = l->inputs[0], *idx = l->inputs[1];
    if (!idx) return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "indices input is missing");
    kiln_status st = check_dtype_known(l, data, 0);
    if (st != KILN_OK) return st;
    if (idx->dtype != KILN_INT32 && idx->dtype != KILN_INT64)
        return kg_layer_error(l, KILN_ERR_DTYPE, "indices '%s' are %s, not int32 or int64", idx->name,
                              kiln_dtype_name(idx->dtype));
    int r = data->dims.nb_dims, q = idx->dims.nb_dims;
    if (r == 0) return kg_layer_error(l, KILN_ERR_SHAPE, "data '%s' is a scalar: nothing to gather from", data->name);
    int axis = kg_axis(l->p.axis.axis, r);
    if (axis < 0)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "axis %d is out of range for rank %d", l->p.axis.axis, r);
    if (r - 1 + q > KILN_MAX_DIMS)
        return kg_layer_error(l, KILN_ERR_SHAPE, "output rank %d (data rank %d + indices rank %d - 1) exceeds %d",
                              r - 1 + q, r, q, KILN_MAX_DIMS);
    kiln_dims out;
    memset(&out, 0, sizeof out);
    out.nb_dims = r - 1 + q;
    int k = 0;
    for (int i = 0; i < axis; i++) out.d[k++] = data->dims.d[i];
    for (int i = 0; i < q; i++) out.d[k++] = idx->dims.d[i];
    for (int i = axis + 1; i < r; i++) out.d[k++] = data->dims.d[i];
    if (kiln_dims_volume(&out) < 0) return kg_layer_error(l, KILN_ERR_SHAPE, "output volume overflows");
    return set_output(l, 0, data->dtype, &out);
}

/* ---- expand, tile ---- */

KG_INFER(expand) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    const kiln_dims *shape = &l->p.expand.shape;
    if (shape->nb_dims < 0 || shape->nb_dims > KILN_MAX_DIMS)
        return kg_layer_error(l, KILN_ERR_SHAPE, "target rank %d is outside 0..%d", shape->nb_dims, KILN_MAX_DIMS);
    for (int i = 0; i < shape->nb_dims; i++)
        if (shape->d[i] < 0)
            return kg_layer_error(l, KILN_ERR_SHAPE, "target dimension %d is %lld", i, (long long)shape->d[i]);
    kiln_dims out;
    if (!kiln_broadcast_dims(&in->dims, shape, &out)) {
        DSTR(a, &in->dims);
        DSTR(b, shape);
        return kg_layer_error(l, KILN_ERR_SHAPE, "input %s does not broadcast with shape %s", a, b);
    }
    if (kiln_dims_volume(&out) < 0) return kg_layer_error(l, KILN_ERR_SHAPE, "output volume overflows");
    return set_output(l, 0, in->dtype, &out);
}

KG_INFER(tile) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    kiln_dims out = in->dims;
    for (int i = 0; i < in->dims.nb_dims; i++) {
        int64_t r = l->p.tile.repeats[i];
        if (r < 0)
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "repeats[%d] is negative (%lld)", i, (long long)r);
        if (__builtin_mul_overflow(in->dims.d[i], r, &out.d[i]))
            return kg_layer_error(l, KILN_ERR_SHAPE, "tiled size of axis %d overflows", i);
    }
    if (kiln_dims_volume(&out) < 0) return kg_layer_error(l, KILN_ERR_SHAPE, "output volume overflows");
    return set_output(l, 0, in->dtype, &out);
}

/* ---- depth to space, space to depth ---- */

KG_INFER(depth_to_space) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    if (in->dims.nb_dims != 4)
        return kg_layer_error(l, KILN_ERR_SHAPE, "input must be 4-D NCHW, got rank %d", in->dims.nb_dims);
    int64_t b = l->p.d2s.block, bb;
    if (b < 1 || __builtin_mul_overflow(b, b, &bb))
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "block size %lld must be at least 1", (long long)b);
    if (l->p.d2s.crd != 0 && l->p.d2s.crd != 1)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "mode %d is neither 0 (DCR) nor 1 (CRD)", l->p.d2s.crd);
    const int64_t *d = in->dims.d;
    if (d[1] % bb != 0)
        return kg_layer_error(l, KILN_ERR_SHAPE, "%lld channels are not divisible by block*block = %lld",
                              (long long)d[1], (long long)bb);
    kiln_dims out = in->dims;
    out.d[1] = d[1] / bb;
    if (__builtin_mul_overflow(d[2], b, &out.d[2]) || __builtin_mul_overflow(d[3], b, &out.d[3]))
        return kg_layer_error(l, KILN_ERR_SHAPE, "output size overflows");
    return set_output(l, 0, in->dtype, &out);
}

KG_INFER(space_to_depth) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    if (in->dims.nb_dims != 4)
        return kg_layer_error(l, KILN_ERR_SHAPE, "input must be 4-D NCHW, got rank %d", in->dims.nb_dims);
    int64_t b = l->p.d2s.block, bb;
    if (b < 1 || __builtin_mul_overflow(b, b, &bb))
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "block size %lld must be at least 1", (long long)b);
    const int64_t *d = in->dims.d;
    if (d[2] % b != 0 || d[3] % b != 0)
        return kg_layer_error(l, KILN_ERR_SHAPE, "height %lld and width %lld must be divisible by the block size %lld",
                              (long long)d[2], (long long)d[3], (long long)b);
    kiln_dims out = in->dims;
    if (__builtin_mul_overflow(d[1], bb, &out.d[1]))
        return kg_layer_error(l, KILN_ERR_SHAPE, "output channel count overflows");
    out.d[2] = d[2] / b;
    out.d[3] = d[3] / b;
    return set_output(l, 0, in->dtype, &out);
}

/* ---- resize ---- */

static bool is_float_dtype(kiln_dtype t) {
    return t == KILN_FLOAT32 || t == KILN_FLOAT16 || t == KILN_BFLOAT16 || t == KILN_FLOAT64;
}

KG_INFER(resize) {
    const kiln_tensor *in = l->inputs[0];
    kiln_status st = check_dtype_known(l, in, 0);
    if (st != KILN_OK) return st;
    const kiln_resize_desc *p = &l->p.resize;
    if ((unsigned)p->mode > KILN_RESIZE_LINEAR)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown mode %d", (int)p->mode);
    if ((unsigned)p->coord > KILN_COORD_TF_HALF_PIXEL_FOR_NN)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown coordinate transformation %d", (int)p->coord);
    if (p->mode == KILN_RESIZE_NEAREST && (unsigned)p->nearest > KILN_NEAREST_CEIL)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "unknown nearest rounding mode %d", (int)p->nearest);
    if (p->mode == KILN_RESIZE_LINEAR && !is_float_dtype(in->dtype))
        return kg_layer_error(l, KILN_ERR_DTYPE, "linear resize needs floating-point data, input is %s",
                              kiln_dtype_name(in->dtype));
    int rank = in->dims.nb_dims;
    bool have_sizes = p->sizes.nb_dims > 0, have_scales = p->nb_scales > 0;
    if (!have_sizes && !have_scales)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "neither sizes nor scales are given");
    if (have_sizes && p->sizes.nb_dims != rank)
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%d sizes for an input of rank %d", p->sizes.nb_dims,
                              rank);
    if (p->nb_scales < 0 || (have_scales && p->nb_scales != rank))
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%d scales for an input of rank %d", p->nb_scales, rank);
    kiln_dims out = in->dims;
    for (int k = 0; k < rank; k++) {
        int64_t d = in->dims.d[k];
        if (have_scales) {
            float s = p->scales[k];
            if (!(s > 0.0f) || !isfinite(s))
                return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "scale %d is %g: must be positive and finite", k,
                                      (double)s);
        }
        if (have_sizes) {
            out.d[k] = p->sizes.d[k];
            if (out.d[k] < 0)
                return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "size %d is negative (%lld)", k,
                                      (long long)out.d[k]);
        } else {
            /* floor(in * scale) in double, as the ONNX reference computes it */
            double o = floor((double)d * (double)p->scales[k]);
            if (o >= 9.2e18) return kg_layer_error(l, KILN_ERR_SHAPE, "output size of axis %d overflows", k);
            out.d[k] = (int64_t)o;
        }
        if (d == 0 && out.d[k] > 0)
            return kg_layer_error(l, KILN_ERR_SHAPE, "axis %d is empty and cannot be resized to %lld", k,
                                  (long long)out.d[k]);
    }
    if (kiln_dims_volume(&out) < 0) return kg_layer_error(l, KILN_ERR_SHAPE, "output volume overflows");
    return set_output(l, 0, in->dtype, &out);
}
