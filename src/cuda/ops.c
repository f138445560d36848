/* kiln CUDA backend, host side of the layers that run our own kernels (pointwise,
 * normalizations, softmax, reductions, pooling, resize, data movement): checks at
 * prepare, launch plans and lookup tables built once and uploaded, launches at run.
 * The plans mirror the CPU backend's (src/cpu) so both agree element for element. */
#include <math.h>
#include <string.h>

#include "graph/resize_coord.h"
#include "graph/walks.h"
#include "core/half.h"
#include "cuda/host.h"

/* Defined in src/graph/shape_movement.c: the clamped start and step of every axis. */
kiln_status kg_slice_resolve(const kiln_layer *l, int64_t *start, int64_t *step, kiln_dims *out);

static int64_t vol(const kiln_dims *d) { return kiln_dims_volume(d); }

static void strides_of(const kiln_dims *d, int64_t *s) {
    int64_t v = 1;
    for (int i = d->nb_dims - 1; i >= 0; i--) {
        s[i] = v;
        v *= d->d[i];
    }
}

/* A state with no device block: just the plan. */
static void *state_new(const kiln_layer *l, const kcu_build *b, size_t size, kiln_status *st) {
    void *s = kiln_calloc(b->env, 1, size);
    *st = s ? KILN_OK : kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    return s;
}

#define LAUNCH(l, call) KCU_CUDA(l, call)

/* ---- activation ---- */

/* The float storage the layer's tensors share (float32 or float16, any layout), checked. */
static kiln_status float_storage(const kiln_layer *l, int *st) {
    *st = kg_storage(l->outputs[0]);
    if (*st != KILN_FLOAT32 && *st != KILN_FLOAT16)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for %s storage", kiln_dtype_name(*st));
    return kcu_check_formats(l, *st, kcu_nhwc(l->outputs[0]), "CUDA");
}

static kiln_status act_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    (void)b;
    *state = NULL;
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || (unsigned)l->p.act.type >= KILN_ACT_COUNT)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for activation %d on %s", (int)l->p.act.type,
                              kiln_dtype_name(l->inputs[0]->dtype));
    int st;
    return float_storage(l, &st);
}

static kiln_status act_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           const kcu_exec *x) {
    (void)state;
    kcu_act a = {(int)l->p.act.type, l->p.act.alpha, l->p.act.beta};
    int st = kg_storage(l->outputs[0]);
    if (st == KILN_FLOAT16)
        LAUNCH(l, kcu_activation_st(x->stream, st, vol(&l->outputs[0]->dims), in[0], out[0], a));
    else
        LAUNCH(l, kcu_activation(x->stream, vol(&l->outputs[0]->dims), in[0], out[0], a));
    return KILN_OK;
}

const kcu_kernel kcu_k_activation = {act_prepare, act_run, NULL, NULL, NULL};

/* ---- broadcast ops: elementwise, PRelu, select ---- */

/* Collapses the output dims so that operands keep unit or zero inner strides (the CPU's
 * bc_plan_make): same-shape and scalar operands become rank 1. The walk follows the
 * output's order in memory (channels-last: N, H, W, C) with each operand's own strides,
 * so a per-channel operand of channels-last data becomes [N*H*W, C] with strides (0, 1). */
static void bc_plan(kcu_bcast *p, const kiln_tensor *out_t, kiln_tensor *const *in, int nin) {
    const kiln_dims *out = &out_t->dims;
    int n = out->nb_dims;
    int64_t st[KCU_BC_OPS][KILN_MAX_DIMS];
    memset(st, 0, sizeof st);
    for (int k = 0; k < nin; k++) {
        int64_t ms[KILN_MAX_DIMS];
        kcu_mem_strides(in[k], ms);
        for (int i = n - 1; i >= 0; i--) {
            int j = in[k]->dims.nb_dims - n + i;
            int64_t dk = j >= 0 ? in[k]->dims.d[j] : 1;
            st[k][i] = dk == 1 ? 0 : ms[j];
        }
    }
    int order[KILN_MAX_DIMS];
    for (int i = 0; i < n; i++) order[i] = i;
    if (kcu_nhwc(out_t)) {
        order[1] = 2;
        order[2] = 3;
        order[3] = 1;
    }
    memset(p, 0, sizeof *p);
    p->total = vol(out);
    for (int oi = 0; oi < n; oi++) {
        int i = order[oi];
        if (out->d[i] == 1) continue;
        int r = p->rank;
        bool merge = r > 0;
        for (int k = 0; k < KCU_BC_OPS && merge; k++)
            if (p->st[k][r - 1] != st[k][i] * out->d[i]) merge = false;
        if (merge) {
            p->dims[r - 1] *= out->d[i];
            for (int k = 0; k < KCU_BC_OPS; k++) p->st[k][r - 1] = st[k][i];
            continue;
        }
        p->dims[r] = out->d[i];
        for (int k = 0; k < KCU_BC_OPS; k++) p->st[k][r] = st[k][i];
        p->rank++;
    }
    if (p->rank == 0) {
        p->rank = 1;
        p->dims[0] = 1;
    }
}

typedef struct bc_state {
    kcu_state base;
    kcu_bcast plan;
    bool f16; /* float16 storage: the float16 kernel */
} bc_state;

static kiln_status bc_prepare(const kiln_layer *l, const kcu_build *b, void **state) {
    kiln_status st;
    bc_state *s = state_new(l, b, sizeof *s, &st);
    if (!s) return st;
    bc_plan(&s->plan, l->outputs[0], l->inputs, l->nb_inputs);
    s->f16 = kg_storage(l->outputs[0]) == KILN_FLOAT16;
    *state = s;
    return KILN_OK;
}

static bool elt_supported(kiln_dtype t, kiln_elementwise_op op) {
    bool arith = op <= KILN_ELT_POW || op == KILN_ELT_MOD || op == KILN_ELT_FMOD;
    bool cmp = op >= KILN_ELT_EQUAL && op <= KILN_ELT_GREATER_EQUAL;
    bool logic = op >= KILN_ELT_AND && op <= KILN_ELT_XOR;
    switch (t) {
    case KILN_FLOAT32:
    case KILN_INT32:
    case KILN_INT64: return arith || cmp;
    case KILN_BOOL: return cmp || logic;
    default: return false;
    }
}

static kiln_status elt_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    kiln_dtype t = l->inputs[0]->dtype;
    if ((unsigned)l->p.elt >= KILN_ELT_COUNT || !elt_supported(t, l->p.elt) || l->inputs[1]->dtype != t)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for op %d on %s inputs", (int)l->p.elt,
                              kiln_dtype_name(t));
    if (l->has_post_act && (l->outputs[0]->dtype != KILN_FLOAT32 || (unsigned)l->post_act.type >= KILN_ACT_COUNT))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "a fused activation needs a float32 result, this op gives %s",
                              kiln_dtype_name(l->outputs[0]->dtype));
    if (t == KILN_FLOAT32 && l->outputs[0]->dtype == KILN_FLOAT32) {
        int st;
        kiln_status s = float_storage(l, &st);
        if (s != KILN_OK) return s;
        bool arith = l->p.elt <= KILN_ELT_POW || l->p.elt == KILN_ELT_MOD || l->p.elt == KILN_ELT_FMOD;
        if (st == KILN_FLOAT16 && !arith)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no float16 CUDA kernel for op %d", (int)l->p.elt);
    } else {
        kiln_status s = kcu_check_formats(l, -1, false, "CUDA");
        if (s != KILN_OK) return s;
    }
    return bc_prepare(l, b, state);
}

static kiln_status elt_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           const kcu_exec *x) {
    const bc_state *s = state;
    kcu_act buf;
    if (s->f16) {
        LAUNCH(l, kcu_binary_f16(x->stream, &s->plan, (int)l->p.elt, out[0], in[0], in[1], kcu_post_act(l, &buf)));
        return KILN_OK;
    }
    LAUNCH(l, kcu_binary(x->stream, &s->plan, (int)l->inputs[0]->dtype, (int)l->p.elt, out[0], in[0], in[1], x->err,
                         x->node, kcu_post_act(l, &buf)));
    return KILN_OK;
}

const kcu_kernel kcu_k_elementwise = {elt_prepare, elt_run, NULL, NULL, NULL};

static kiln_status prelu_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || l->inputs[1]->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA kernel takes float32 only");
    int st;
    kiln_status s = float_storage(l, &st);
    return s != KILN_OK ? s : bc_prepare(l, b, state);
}

static kiln_status prelu_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             const kcu_exec *x) {
    const bc_state *s = state;
    if (s->f16) {
        LAUNCH(l, kcu_binary_f16(x->stream, &s->plan, KCU_OP_PRELU, out[0], in[0], in[1], NULL));
        return KILN_OK;
    }
    LAUNCH(l, kcu_prelu(x->stream, &s->plan, out[0], in[0], in[1]));
    return KILN_OK;
}

const kcu_kernel kcu_k_prelu = {prelu_prepare, prelu_run, NULL, NULL, NULL};

static kiln_status select_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    size_t es = kiln_dtype_size(l->outputs[0]->dtype);
    if ((es != 1 && es != 2 && es != 4 && es != 8) || l->inputs[0]->dtype != KILN_BOOL)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for %s values with a %s condition",
                              kiln_dtype_name(l->outputs[0]->dtype), kiln_dtype_name(l->inputs[0]->dtype));
    kiln_status st = kcu_check_formats(l, -1, false, "CUDA");
    return st != KILN_OK ? st : bc_prepare(l, b, state);
}

static kiln_status select_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x) {
    const bc_state *s = state;
    LAUNCH(l, kcu_select(x->stream, &s->plan, (int)kiln_dtype_size(l->outputs[0]->dtype), out[0], in[0], in[1],
                         in[2]));
    return KILN_OK;
}

const kcu_kernel kcu_k_select = {select_prepare, select_run, NULL, NULL, NULL};

/* ---- unary ---- */

static kiln_status unary_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    (void)b;
    *state = NULL;
    *scratch = 0;
    kiln_unary_op op = l->p.unary;
    bool ok;
    switch (l->inputs[0]->dtype) {
    case KILN_FLOAT32: ok = op != KILN_UNARY_NOT && (unsigned)op < KILN_UNARY_COUNT; break;
    case KILN_INT32:
    case KILN_INT64: ok = op == KILN_UNARY_ABS || op == KILN_UNARY_NEG || op == KILN_UNARY_SIGN; break;
    case KILN_BOOL: ok = op == KILN_UNARY_NOT; break;
    default: ok = false; break;
    }
    if (!ok)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for unary op %d on %s", (int)op,
                              kiln_dtype_name(l->inputs[0]->dtype));
    if (l->inputs[0]->dtype != KILN_FLOAT32) return kcu_check_formats(l, -1, false, "CUDA");
    int st;
    return float_storage(l, &st);
}

static kiln_status unary_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             const kcu_exec *x) {
    (void)state;
    if (kg_storage(l->outputs[0]) == KILN_FLOAT16) {
        LAUNCH(l, kcu_unary_f16(x->stream, (int)l->p.unary, vol(&l->outputs[0]->dims), in[0], out[0]));
        return KILN_OK;
    }
    LAUNCH(l, kcu_unary(x->stream, (int)l->inputs[0]->dtype, (int)l->p.unary, vol(&l->outputs[0]->dims), in[0],
                        out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_unary = {unary_prepare, unary_run, NULL, NULL, NULL};

/* ---- scale ---- */

typedef struct weights_state {
    kcu_state base;
    const float *w[3]; /* device copies of the layer's weights, NULL when absent */
} weights_state;

/* Uploads the layer's float32 weights 0..n-1 (absent ones stay NULL). */
static kiln_status upload_weights(const kiln_layer *l, const kcu_build *b, int n, void **state) {
    kiln_status st;
    weights_state *s = state_new(l, b, sizeof *s, &st);
    if (!s) return st;
    *state = s;
    const void *src[3];
    size_t bytes[3];
    void *dst[3];
    for (int i = 0; i < n; i++) {
        src[i] = l->w[i].values;
        bytes[i] = l->w[i].count ? (size_t)l->w[i].count * sizeof(float) : 0;
    }
    st = kcu_state_upload(l, &s->base, n, src, bytes, dst);
    for (int i = 0; st == KILN_OK && i < n; i++) s->w[i] = dst[i];
    return st;
}

static kiln_status scale_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || (unsigned)l->p.scale.mode > KILN_SCALE_ELEMENTWISE)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for %s input in scale mode %d",
                              kiln_dtype_name(l->inputs[0]->dtype), (int)l->p.scale.mode);
    for (int i = 0; i < 3; i++)
        if (l->w[i].count && l->w[i].dtype != KILN_FLOAT32)
            return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA kernel takes float32 weights only");
    int st;
    kiln_status s = float_storage(l, &st);
    if (s != KILN_OK) return s;
    if (kcu_nhwc(l->outputs[0]) && l->p.scale.mode == KILN_SCALE_ELEMENTWISE)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for an element-wise scale of channels-last data");
    return upload_weights(l, b, 3, state);
}

static kiln_status scale_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             const kcu_exec *x) {
    const weights_state *s = state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int mode = (int)l->p.scale.mode;
    int64_t inner = 1, channels = 1;
    if (mode == KILN_SCALE_CHANNEL) {
        channels = d->d[1];
        /* channels-last: the channel is the innermost index */
        for (int i = 2; i < d->nb_dims && !kcu_nhwc(l->inputs[0]); i++) inner *= d->d[i];
    } else if (mode == KILN_SCALE_ELEMENTWISE) {
        for (int i = 1; i < d->nb_dims; i++) inner *= d->d[i];
    }
    if (kg_storage(l->outputs[0]) == KILN_FLOAT16) {
        LAUNCH(l, kcu_scale_f16(x->stream, mode, vol(d), inner, channels, in[0], out[0], s->w[0], s->w[1], s->w[2]));
        return KILN_OK;
    }
    LAUNCH(l, kcu_scale(x->stream, mode, vol(d), inner, channels, in[0], out[0], s->w[0], s->w[1], s->w[2]));
    return KILN_OK;
}

/* Refit of a weights_state layer: the new values into the same device copy. */
static kiln_status weights_refit(const kiln_layer *l, void *state, int slot) {
    weights_state *s = state;
    if (slot < 0 || slot >= 3 || !s->w[slot])
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "weights %d cannot be refitted", slot);
    KCU_CUDA(l, cudaMemcpy((void *)s->w[slot], l->w[slot].values, (size_t)l->w[slot].count * sizeof(float),
                           cudaMemcpyHostToDevice));
    return KILN_OK;
}

const kcu_kernel kcu_k_scale = {scale_prepare, scale_run, NULL, weights_refit, NULL};

/* ---- instance norm, LRN ---- */

static kiln_status inorm_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_dims *d = &l->inputs[0]->dims;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || d->nb_dims < 3 || l->w[0].dtype != KILN_FLOAT32 ||
        l->w[1].dtype != KILN_FLOAT32 || l->w[0].count != d->d[1] || l->w[1].count != d->d[1])
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for this instance norm");
    return upload_weights(l, b, 2, state);
}

static kiln_status inorm_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             const kcu_exec *x) {
    const weights_state *s = state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int64_t spatial = 1;
    for (int i = 2; i < d->nb_dims; i++) spatial *= d->d[i];
    LAUNCH(l, kcu_instance_norm(x->stream, d->d[0] * d->d[1], d->d[1], spatial, l->p.norm.epsilon, in[0], out[0],
                                s->w[0], s->w[1]));
    return KILN_OK;
}

const kcu_kernel kcu_k_instance_norm = {inorm_prepare, inorm_run, NULL, weights_refit, NULL};

static kiln_status lrn_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    (void)b;
    *state = NULL;
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || l->inputs[0]->dims.nb_dims < 2 || l->p.lrn.size <= 0)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for this LRN");
    return KILN_OK;
}

static kiln_status lrn_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           const kcu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int64_t spatial = 1;
    for (int i = 2; i < d->nb_dims; i++) spatial *= d->d[i];
    const kg_lrn_params *p = &l->p.lrn;
    LAUNCH(l, kcu_lrn(x->stream, d->d[0], d->d[1], spatial, p->size, p->alpha, p->beta, p->bias, in[0], out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_lrn = {lrn_prepare, lrn_run, NULL, NULL, NULL};

/* ---- softmax, arg reduce: an axis split into outer, len, inner ---- */

static void axis_split(const kiln_dims *d, int axis, int64_t *outer, int64_t *len, int64_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= d->d[i];
    for (int i = axis + 1; i < d->nb_dims; i++) *inner *= d->d[i];
    *len = d->d[axis];
}

static kiln_status sm_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    (void)b;
    *state = NULL;
    *scratch = 0;
    if (l->inputs[0]->dtype != KILN_FLOAT32 || kg_axis(l->p.softmax.axis, l->inputs[0]->dims.nb_dims) < 0)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for this softmax");
    return KILN_OK;
}

static kiln_status sm_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                          const kcu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int64_t outer, len, inner;
    axis_split(d, kg_axis(l->p.softmax.axis, d->nb_dims), &outer, &len, &inner);
    LAUNCH(l, kcu_softmax(x->stream, l->p.softmax.log, outer, len, inner, in[0], out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_softmax = {sm_prepare, sm_run, NULL, NULL, NULL};

static kiln_status arg_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    (void)b;
    *state = NULL;
    *scratch = 0;
    kiln_dtype t = l->inputs[0]->dtype;
    if (!(t == KILN_FLOAT32 || t == KILN_INT32 || t == KILN_INT64) ||
        kg_axis(l->p.arg.axis, l->inputs[0]->dims.nb_dims) < 0)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for arg reduce on %s", kiln_dtype_name(t));
    return KILN_OK;
}

static kiln_status arg_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           const kcu_exec *x) {
    (void)state;
    const kiln_dims *d = &l->inputs[0]->dims;
    int64_t outer, len, inner;
    axis_split(d, kg_axis(l->p.arg.axis, d->nb_dims), &outer, &len, &inner);
    LAUNCH(l, kcu_arg_reduce(x->stream, (int)l->inputs[0]->dtype, l->p.arg.is_min != 0, l->p.arg.select_last != 0,
                             outer, len, inner, in[0], out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_arg_reduce = {arg_prepare, arg_run, NULL, NULL, NULL};

/* ---- reduce ---- */

typedef struct red_state {
    kcu_state base;
    kcu_reduce plan;
} red_state;

static kiln_status red_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    kiln_dtype t = l->inputs[0]->dtype;
    const kg_reduce_params *rp = &l->p.reduce;
    kiln_reduce_op op = rp->op;
    bool int_ok = op == KILN_REDUCE_SUM || op == KILN_REDUCE_MAX || op == KILN_REDUCE_MIN || op == KILN_REDUCE_PROD;
    if ((unsigned)op >= KILN_REDUCE_COUNT || !(t == KILN_FLOAT32 || (int_ok && (t == KILN_INT32 || t == KILN_INT64))))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel for reduce op %d on %s", (int)op,
                              kiln_dtype_name(t));
    kiln_status st;
    red_state *s = state_new(l, b, sizeof *s, &st);
    if (!s) return st;
    *state = s;
    kcu_reduce *p = &s->plan;
    const kiln_dims *d = &l->inputs[0]->dims;
    bool red[KILN_MAX_DIMS] = {false};
    for (int i = 0; i < rp->nb_axes; i++) red[kg_axis(rp->axes[i], d->nb_dims)] = true;
    if (rp->nb_axes == 0)
        for (int i = 0; i < d->nb_dims; i++) red[i] = true;
    /* groups of same-kind neighbours; size-1 axes change nothing */
    int ng = 0;
    int64_t glen[KILN_MAX_DIMS], gst[KILN_MAX_DIMS];
    bool gred[KILN_MAX_DIMS];
    for (int i = 0; i < d->nb_dims; i++) {
        if (d->d[i] == 1) continue;
        if (ng > 0 && gred[ng - 1] == red[i]) {
            glen[ng - 1] *= d->d[i];
            continue;
        }
        glen[ng] = d->d[i];
        gred[ng] = red[i];
        ng++;
    }
    int64_t stride = 1;
    for (int g = ng - 1; g >= 0; g--) {
        gst[g] = stride;
        stride *= glen[g];
    }
    p->op = (int)op;
    p->dtype = (int)t;
    p->outputs = 1;
    p->count = 1;
    for (int g = 0; g < ng; g++) {
        if (gred[g]) {
            p->rlen[p->nr] = glen[g];
            p->rst[p->nr++] = gst[g];
            p->count *= glen[g];
        } else {
            p->klen[p->nk] = glen[g];
            p->kst[p->nk++] = gst[g];
            p->outputs *= glen[g];
        }
    }
    if (p->nr == 0) { /* only size-1 axes reduced: each output reads one input */
        p->rlen[0] = 1;
        p->rst[0] = 0;
        p->nr = 1;
    }
    bool inner_reduced = ng > 0 && gred[ng - 1];
    /* few outputs with much to fold, or a long contiguous run each: a block per output */
    p->block_per_output = (p->outputs <= 2048 && p->count >= 512) || (inner_reduced && p->rlen[p->nr - 1] >= 64);
    return KILN_OK;
}

static kiln_status red_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           const kcu_exec *x) {
    const red_state *s = state;
    LAUNCH(l, kcu_reduce_run(x->stream, &s->plan, in[0], out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_reduce = {red_prepare, red_run, NULL, NULL, NULL};

/* ---- pooling ---- */

typedef struct pool_state {
    kcu_state base;
    kcu_pool p;
    bool global;
    bool nhwc; /* channels-last: p.planes is the batch, c the channels */
    int st;
    int64_t c;
} pool_state;

static kiln_status pool_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_pool_desc *d = &l->p.pool;
    const kiln_dims *in = &l->inputs[0]->dims, *out = &l->outputs[0]->dims;
    if (l->inputs[0]->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "the CUDA backend pools float32 only");
    int fst;
    kiln_status st = float_storage(l, &fst);
    if (st != KILN_OK) return st;
    if (fst != KILN_FLOAT32 && !kcu_nhwc(l->inputs[0]))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "no CUDA kernel pools %s data in row-major layout",
                              kiln_dtype_name(fst));
    pool_state *s = state_new(l, b, sizeof *s, &st);
    if (!s) return st;
    *state = s;
    bool r3 = in->nb_dims == 3;
    kcu_pool *p = &s->p;
    s->nhwc = kcu_nhwc(l->inputs[0]);
    s->st = fst;
    s->c = in->d[1];
    p->planes = s->nhwc ? in->d[0] : in->d[0] * in->d[1];
    p->h = r3 ? 1 : in->d[2];
    p->w = in->d[r3 ? 2 : 3];
    p->oh = r3 ? 1 : out->d[2];
    p->ow = out->d[r3 ? 2 : 3];
    p->max = d->type == KILN_POOL_MAX;
    s->global = d->global != 0;
    if (s->global) return KILN_OK;
    p->kh = r3 ? 1 : d->kernel[0];
    p->kw = d->kernel[1];
    p->sh = r3 ? 1 : d->stride[0];
    p->sw = d->stride[1];
    p->dh = r3 ? 1 : d->dilation[0];
    p->dw = d->dilation[1];
    p->pt = r3 ? 0 : d->pad_begin[0];
    p->pl = d->pad_begin[1];
    p->pb = r3 ? 0 : d->pad_end[0];
    p->pr = d->pad_end[1];
    p->include_pad = d->count_include_pad != 0;
    p->xp = s->nhwc ? l->inputs[0]->pitch : 0; /* channel slices of concats (kcu_pitch_ok) */
    p->yp = s->nhwc ? l->outputs[0]->pitch : 0;
    return KILN_OK;
}

static kiln_status pool_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            const kcu_exec *x) {
    const pool_state *s = state;
    if (s->nhwc) {
        if (s->global)
            LAUNCH(l, kcu_global_pool_nhwc(x->stream, s->st, s->p.max, s->p.planes, s->p.h * s->p.w, s->c, in[0], out[0]));
        else
            LAUNCH(l, kcu_pool_nhwc(x->stream, s->st, &s->p, s->c, in[0], out[0]));
        return KILN_OK;
    }
    if (s->global)
        LAUNCH(l, kcu_global_pool(x->stream, s->p.max, s->p.planes, s->p.h * s->p.w, in[0], out[0]));
    else
        LAUNCH(l, kcu_pool_run(x->stream, &s->p, in[0], out[0]));
    return KILN_OK;
}

/* pool.cu's float16 kernels launch as programmatic dependents but let the next kernel start
 * only as their blocks exit (they are all epilogue): no pdl_tail */
const kcu_kernel kcu_k_pooling = {pool_prepare, pool_run, NULL, NULL, NULL};

/* ---- resize: per-axis tables built as src/cpu/resize.c builds them (graph/resize_coord.h) ---- */

typedef struct rs_state {
    kcu_state base;
    kcu_resize p;
} rs_state;

static kiln_status resize_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_resize_desc *p = &l->p.resize;
    const kiln_dims *in = &l->inputs[0]->dims, *od = &l->outputs[0]->dims;
    bool linear = p->mode == KILN_RESIZE_LINEAR;
    if (linear && l->inputs[0]->dtype != KILN_FLOAT32)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "linear resize of %s data (CUDA: float32 only)",
                              kiln_dtype_name(l->inputs[0]->dtype));
    int rank = in->nb_dims;
    if (rank < 1 || rank > KCU_RS_RANK || od->nb_dims != rank)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "resize of rank %d to rank %d", rank, od->nb_dims);
    kiln_status st;
    if (l->inputs[0]->dtype == KILN_FLOAT32) {
        int fst;
        if ((st = float_storage(l, &fst)) != KILN_OK) return st;
    } else if ((st = kcu_check_formats(l, -1, false, "CUDA")) != KILN_OK) {
        return st;
    }
    /* tables per axis in the order of memory (channels-last: N, H, W, C) */
    int order[KCU_RS_RANK];
    for (int k = 0; k < rank; k++) order[k] = k;
    if (kcu_nhwc(l->inputs[0])) {
        order[1] = 2;
        order[2] = 3;
        order[3] = 1;
    }
    rs_state *s = state_new(l, b, sizeof *s, &st);
    if (!s) return st;
    *state = s;
    /* an empty output needs no tables (its other axes may be huge: a corrupt model);
     * kcu_resize_run returns at once */
    if (vol(od) == 0) {
        s->p.rank = rank;
        s->p.total = 0;
        return KILN_OK;
    }
    int64_t total = 0;
    for (int k = 0; k < rank; k++) total += od->d[k];
    int64_t *ti = kiln_alloc(b->env, (size_t)(2 * total + 1) * sizeof(int64_t));
    float *tw = kiln_alloc(b->env, (size_t)(total + 1) * sizeof(float));
    if (!ti || !tw) {
        kiln_free(b->env, ti);
        kiln_free(b->env, tw);
        return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory preparing resize tables");
    }
    kcu_resize *r = &s->p;
    r->rank = rank;
    r->linear = linear;
    r->total = vol(od);
    int64_t stride = 1, io = 0, wo = 0;
    bool same[KCU_RS_RANK]; /* memory axis k copied: same size, x -> x */
    for (int k = rank - 1; k >= 0; k--) {
        int ax = order[k]; /* logical axis at memory position k */
        int64_t n = in->d[ax], m = od->d[ax];
        r->out[k] = m;
        r->off[k] = io;
        r->woff[k] = wo;
        /* given scales define the mapping even when the size was given too (ONNX) */
        double scale = p->nb_scales > 0 ? (double)p->scales[ax] : (n > 0 ? (double)m / (double)n : 1.0);
        bool identity = m == n;
        for (int64_t x = 0; x < m; x++) {
            double c = rs_coord(p->coord, (double)x, scale, n, m);
            int64_t a, bb;
            float wt = 0.0f;
            if (linear) {
                double f = floor(c);
                a = rs_clamp_index(f, n);
                bb = rs_clamp_index(f + 1, n);
                wt = (float)(c - f);
                if (a == bb) wt = 0.0f;
            } else {
                a = bb = rs_clamp_index((double)rs_nearest(p->nearest, c), n);
            }
            if (a != x || wt != 0.0f) identity = false;
            ti[io + x] = a * stride;
            ti[io + m + x] = bb * stride;
            tw[wo + x] = wt;
        }
        r->interp[k] = linear && !identity;
        same[k] = identity && m == n;
        if (k == rank - 1) r->inner = !linear && identity ? m : 0;
        io += 2 * m;
        wo += m;
        /* a pitched input (channel slice of a concat): pixels are pitch apart */
        stride *= k == rank - 1 && l->inputs[0]->pitch ? l->inputs[0]->pitch : n;
    }
    if (l->outputs[0]->pitch) {
        r->yc = r->out[rank - 1];
        r->yp = l->outputs[0]->pitch;
    }
    /* bilinear over H and W of channels-last data: its own kernel (32-bit index math) */
    if (linear && rank == 4 && kcu_nhwc(l->inputs[0]) && kcu_nhwc(l->outputs[0]) && same[0] && same[3] &&
        r->total <= INT32_MAX && in->d[0] * in->d[2] * in->d[3] <= INT32_MAX) {
        int64_t xp = l->inputs[0]->pitch ? l->inputs[0]->pitch : r->out[3], yp = r->yp ? r->yp : r->out[3];
        r->hw2 = r->out[3] % 8 == 0 && xp % 8 == 0 && yp % 8 == 0 ? 2 : 1;
    }
    const void *src[2] = {ti, tw};
    size_t bytes[2] = {(size_t)io * sizeof(int64_t), (size_t)wo * sizeof(float)};
    void *dst[2];
    st = kcu_state_upload(l, &s->base, 2, src, bytes, dst);
    r->idx = dst[0];
    r->wt = dst[1];
    kiln_free(b->env, ti);
    kiln_free(b->env, tw);
    return st;
}

static kiln_status resize_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x) {
    const rs_state *s = state;
    LAUNCH(l, kcu_resize_run(x->stream, &s->p, (int)kcu_es(l->inputs[0]), in[0], out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_resize = {resize_prepare, resize_run, NULL, NULL, NULL};

/* ---- strided view copies: slice, transpose, expand, tile, depth/space ---- */

typedef struct mv_state {
    kcu_state base;
    kcu_mv plan;
    int es;
} mv_state;

/* Drops size-1 axes and merges neighbours that step through the source contiguously
 * (src/cpu/movement.c's mv_plan_make, strides in elements). */
static void mv_plan(kcu_mv *p, int nd, const int64_t *dims, const int64_t *ss) {
    memset(p, 0, sizeof *p);
    p->total = 1;
    for (int i = 0; i < nd; i++) p->total *= dims[i];
    int64_t md[KCU_MV_RANK], ms[KCU_MV_RANK];
    int n = 0;
    for (int i = nd - 1; i >= 0; i--) { /* innermost first */
        if (dims[i] == 1) continue;
        if (n > 0 && ss[i] == ms[n - 1] * md[n - 1]) {
            md[n - 1] *= dims[i];
            continue;
        }
        md[n] = dims[i];
        ms[n] = ss[i];
        n++;
    }
    if (n == 0) {
        md[0] = 1;
        ms[0] = 1;
        n = 1;
    }
    p->nd = n;
    for (int i = 0; i < n; i++) {
        p->dims[i] = md[n - 1 - i];
        p->ss[i] = ms[n - 1 - i];
    }
}

/* Data movement reads bits: any storage type, row-major (the format pass gives it that). */
static kiln_status linear_any(const kiln_layer *l) {
    const kiln_tensor *t = l->inputs[0];
    bool fl = t->dtype == KILN_FLOAT32 || t->dtype == KILN_FLOAT16;
    return kcu_check_formats(l, fl ? (int)kg_storage(t) : -1, false, "CUDA data movement");
}

static kiln_status mv_new(const kiln_layer *l, const kcu_build *b, void **state, mv_state **out) {
    kiln_status st = linear_any(l);
    if (st != KILN_OK) return st;
    mv_state *s = state_new(l, b, sizeof *s, &st);
    if (!s) return st;
    s->es = (int)kcu_es(l->inputs[0]);
    *state = s;
    *out = s;
    return KILN_OK;
}

static kiln_status mv_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                          const kcu_exec *x) {
    const mv_state *s = state;
    LAUNCH(l, kcu_mv_run(x->stream, &s->plan, s->es, in[0], out[0]));
    return KILN_OK;
}

static kiln_status slice_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_dims *in = &l->inputs[0]->dims;
    int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS], is[KILN_MAX_DIMS], ss[KILN_MAX_DIMS];
    kiln_dims od;
    kiln_status st = kg_slice_resolve(l, start, step, &od);
    mv_state *s = NULL;
    if (st == KILN_OK) st = mv_new(l, b, state, &s);
    if (st != KILN_OK) return st;
    strides_of(in, is);
    int64_t off = 0;
    for (int k = 0; k < in->nb_dims; k++) {
        ss[k] = od.d[k] > 1 ? step[k] * is[k] : 0; /* as the CPU's: a huge step of a 1-element axis */
        off += start[k] * is[k];
    }
    mv_plan(&s->plan, od.nb_dims, od.d, ss);
    s->plan.src_offset = s->plan.total ? off : 0;
    return KILN_OK;
}

const kcu_kernel kcu_k_slice = {slice_prepare, mv_run, NULL, NULL, NULL};

static kiln_status transpose_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_dims *in = &l->inputs[0]->dims;
    const kg_transpose_params *t = &l->p.transpose;
    if (t->nb != in->nb_dims)
        return kg_layer_error(l, KILN_ERR_INTERNAL, "perm of %d entries for rank %d", t->nb, in->nb_dims);
    int64_t is[KILN_MAX_DIMS], ss[KILN_MAX_DIMS], od[KILN_MAX_DIMS];
    strides_of(in, is);
    for (int k = 0; k < t->nb; k++) {
        ss[k] = is[t->perm[k]];
        od[k] = in->d[t->perm[k]];
    }
    mv_state *s = NULL;
    kiln_status st = mv_new(l, b, state, &s);
    if (st == KILN_OK) mv_plan(&s->plan, t->nb, od, ss);
    return st;
}

const kcu_kernel kcu_k_transpose = {transpose_prepare, mv_run, NULL, NULL, NULL};

static kiln_status expand_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_dims *in = &l->inputs[0]->dims, *od = &l->outputs[0]->dims;
    int64_t is[KILN_MAX_DIMS], ss[KILN_MAX_DIMS];
    strides_of(in, is);
    int shift = od->nb_dims - in->nb_dims;
    for (int k = 0; k < od->nb_dims; k++) {
        int i = k - shift; /* input axes align to the right; absent ones broadcast */
        ss[k] = (i < 0 || in->d[i] == 1) ? 0 : is[i];
    }
    mv_state *s = NULL;
    kiln_status st = mv_new(l, b, state, &s);
    if (st == KILN_OK) mv_plan(&s->plan, od->nb_dims, od->d, ss);
    return st;
}

const kcu_kernel kcu_k_expand = {expand_prepare, mv_run, NULL, NULL, NULL};

/* Output axis k of size r*d reads as (repeat r, stride 0) then (position d, input stride). */
static kiln_status tile_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_dims *in = &l->inputs[0]->dims;
    int64_t is[KILN_MAX_DIMS], dims[KCU_MV_RANK], ss[KCU_MV_RANK];
    strides_of(in, is);
    for (int k = 0; k < in->nb_dims; k++) {
        dims[2 * k] = l->p.tile.repeats[k];
        ss[2 * k] = 0;
        dims[2 * k + 1] = in->d[k];
        ss[2 * k + 1] = is[k];
    }
    mv_state *s = NULL;
    kiln_status st = mv_new(l, b, state, &s);
    if (st == KILN_OK) mv_plan(&s->plan, 2 * in->nb_dims, dims, ss);
    return st;
}

const kcu_kernel kcu_k_tile = {tile_prepare, mv_run, NULL, NULL, NULL};

/* Both depth/space layers are a 6-D transpose of a reshaped view (graph/walks.h). */
static kiln_status d2s_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    int64_t dims[6], ss[6];
    kg_depth_to_space_walk(l, dims, ss);
    mv_state *s = NULL;
    kiln_status st = mv_new(l, b, state, &s);
    if (st == KILN_OK) mv_plan(&s->plan, 6, dims, ss);
    return st;
}

const kcu_kernel kcu_k_depth_to_space = {d2s_prepare, mv_run, NULL, NULL, NULL};

static kiln_status s2d_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    int64_t dims[6], ss[6];
    kg_space_to_depth_walk(l, dims, ss);
    mv_state *s = NULL;
    kiln_status st = mv_new(l, b, state, &s);
    if (st == KILN_OK) mv_plan(&s->plan, 6, dims, ss);
    return st;
}

const kcu_kernel kcu_k_space_to_depth = {s2d_prepare, mv_run, NULL, NULL, NULL};

/* ---- concat, split: per outer index each piece is one contiguous run in both tensors ---- */

typedef struct seg_state {
    kcu_state base;
    int nb;
    int64_t outer, row; /* row: bytes of the whole tensor per outer index */
    int64_t *size, *offset; /* [nb]: bytes of piece i per outer index, its offset in a row */
} seg_state;

static kiln_status seg_prepare(const kiln_layer *l, const kcu_build *b, void **state, const kiln_tensor *whole,
                               kiln_tensor *const *pieces, int nb, int axis_param) {
    int rank = whole->dims.nb_dims;
    int axis = kg_axis(axis_param, rank);
    if (axis < 0) return kg_layer_error(l, KILN_ERR_INTERNAL, "axis %d out of range for rank %d", axis_param, rank);
    bool fl = whole->dtype == KILN_FLOAT32 || whole->dtype == KILN_FLOAT16;
    kiln_status st = kcu_check_formats(l, fl ? (int)kg_storage(whole) : -1, kcu_nhwc(whole), "CUDA");
    if (st != KILN_OK) return st;
    /* channels-last: the same runs over the axes in memory order N, H, W, C */
    int perm[KILN_MAX_DIMS];
    for (int k = 0; k < rank; k++) perm[k] = k;
    if (kcu_nhwc(whole)) {
        perm[1] = 2;
        perm[2] = 3;
        perm[3] = 1;
    }
    int pos = 0;
    for (int k = 0; k < rank; k++)
        if (perm[k] == axis) pos = k;
    seg_state *s = state_new(l, b, sizeof *s + (size_t)(2 * nb) * sizeof(int64_t), &st);
    if (!s) return st;
    *state = s;
    s->size = (int64_t *)(s + 1);
    s->offset = s->size + nb;
    s->nb = nb;
    s->outer = 1;
    for (int k = 0; k < pos; k++) s->outer *= whole->dims.d[perm[k]];
    int64_t inner = (int64_t)kcu_es(whole);
    for (int k = pos + 1; k < rank; k++) inner *= whole->dims.d[perm[k]];
    int64_t off = 0;
    for (int i = 0; i < nb; i++) {
        s->size[i] = pieces[i]->dims.d[axis] * inner;
        s->offset[i] = off;
        off += s->size[i];
    }
    s->row = off;
    return KILN_OK;
}

/* Copies piece i between the whole tensor and its own buffer, as a 2-D copy of `outer`
 * rows (kcu_copy2d). */
static kiln_status seg_copy(const kiln_layer *l, const seg_state *s, char *whole, char *piece, int i, bool into_whole,
                            cudaStream_t stream) {
    int64_t w = s->size[i];
    if (w == 0 || s->outer == 0) return KILN_OK;
    char *wp = whole + s->offset[i];
    if (s->outer == 1 || w == s->row) {
        size_t bytes = (size_t)(w * s->outer);
        if (into_whole) KCU_CUDA(l, cudaMemcpyAsync(wp, piece, bytes, cudaMemcpyDeviceToDevice, stream));
        else KCU_CUDA(l, cudaMemcpyAsync(piece, wp, bytes, cudaMemcpyDeviceToDevice, stream));
        return KILN_OK;
    }
    if (into_whole) KCU_CUDA(l, kcu_copy2d(stream, wp, s->row, piece, w, w, s->outer));
    else KCU_CUDA(l, kcu_copy2d(stream, piece, w, wp, s->row, w, s->outer));
    return KILN_OK;
}

static kiln_status concat_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    return seg_prepare(l, b, state, l->outputs[0], l->inputs, l->nb_inputs, l->p.axis.axis);
}

static kiln_status concat_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x) {
    const seg_state *s = state;
    for (int i = 0; i < s->nb; i++) {
        kiln_status st = seg_copy(l, s, out[0], (char *)in[i], i, true, x->stream);
        if (st != KILN_OK) return st;
    }
    return KILN_OK;
}

const kcu_kernel kcu_k_concat = {concat_prepare, concat_run, NULL, NULL, NULL};

static kiln_status split_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    return seg_prepare(l, b, state, l->inputs[0], l->outputs, l->nb_outputs, l->p.split.axis);
}

static kiln_status split_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             const kcu_exec *x) {
    const seg_state *s = state;
    for (int i = 0; i < s->nb; i++) {
        kiln_status st = seg_copy(l, s, (char *)in[0], out[i], i, false, x->stream);
        if (st != KILN_OK) return st;
    }
    return KILN_OK;
}

const kcu_kernel kcu_k_split = {split_prepare, split_run, NULL, NULL, NULL};

/* ---- gather ---- */

static kiln_status gather_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    (void)b;
    *state = NULL;
    *scratch = 0;
    kiln_dtype t = l->inputs[1]->dtype;
    size_t es = kcu_es(l->inputs[0]);
    if (t != KILN_INT32 && t != KILN_INT64)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "indices of dtype %s", kiln_dtype_name(t));
    if (es != 1 && es != 2 && es != 4 && es != 8)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "data of dtype %s", kiln_dtype_name(l->inputs[0]->dtype));
    return linear_any(l);
}

/* Out-of-range indices are found on the device and reported at the next finish. */
static kiln_status gather_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              const kcu_exec *x) {
    (void)state;
    const kiln_dims *dd = &l->inputs[0]->dims;
    int axis = kg_axis(l->p.axis.axis, dd->nb_dims);
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < axis; k++) outer *= dd->d[k];
    for (int k = axis + 1; k < dd->nb_dims; k++) inner *= dd->d[k];
    LAUNCH(l, kcu_gather(x->stream, (int)kcu_es(l->inputs[0]), in[0], in[1],
                         l->inputs[1]->dtype == KILN_INT64, outer, vol(&l->inputs[1]->dims), dd->d[axis], inner,
                         out[0], x->err, x->node));
    return KILN_OK;
}

const kcu_kernel kcu_k_gather = {gather_prepare, gather_run, NULL, NULL, NULL};

/* ---- pad ---- */

/* Where output position o of an axis reads from, or -1 for the constant. */
static int64_t pad_source(kiln_pad_mode mode, int64_t o, int64_t pb, int64_t crop, int64_t kept) {
    int64_t r = o - pb; /* position in the cropped input */
    if (r >= 0 && r < kept) return crop + r;
    switch (mode) {
    case KILN_PAD_EDGE: r = r < 0 ? 0 : kept - 1; break;
    case KILN_PAD_REFLECT: {
        int64_t period = 2 * (kept - 1);
        if (period == 0) {
            r = 0;
        } else {
            r %= period;
            if (r < 0) r += period;
            if (r >= kept) r = period - r;
        }
    } break;
    case KILN_PAD_WRAP:
        if (kept == 0) return -1;
        r %= kept;
        if (r < 0) r += kept;
        break;
    default: return -1;
    }
    return crop + r;
}

kiln_status kcu_pad_plan(const kiln_layer *l, const kiln_env *env, int rank, const int64_t *in_dims,
                         const int64_t *pads, kiln_pad_mode mode, kcu_pad *p, int64_t **maps, size_t *map_count) {
    memset(p, 0, sizeof *p);
    *maps = NULL;
    *map_count = 0;
    if (rank > KCU_PAD_RANK) return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "pad of rank %d", rank);
    p->rank = rank;
    int64_t stride = 1, count = 0, out[KCU_PAD_RANK];
    for (int k = rank - 1; k >= 0; k--) {
        p->in_stride[k] = stride;
        stride *= in_dims[k];
    }
    p->total = 1;
    for (int k = 0; k < rank; k++) {
        int64_t b = pads[k], e = pads[rank + k];
        int64_t kept = in_dims[k] + (b < 0 ? b : 0) + (e < 0 ? e : 0);
        out[k] = kept + (b > 0 ? b : 0) + (e > 0 ? e : 0);
        p->out[k] = out[k];
        p->map_off[k] = count;
        count += out[k];
        p->total *= out[k];
    }
    int64_t *t = kiln_alloc(env, (size_t)(count + 1) * sizeof(int64_t));
    if (!t) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory preparing pad tables");
    for (int k = 0; k < rank; k++) {
        int64_t b = pads[k], e = pads[rank + k];
        int64_t crop = b < 0 ? -b : 0, pb = b > 0 ? b : 0;
        int64_t kept = in_dims[k] - crop - (e < 0 ? -e : 0);
        for (int64_t o = 0; o < out[k]; o++) t[p->map_off[k] + o] = pad_source(mode, o, pb, crop, kept);
    }
    bool rows = mode == KILN_PAD_CONSTANT && rank >= 1 && pads[rank - 1] == 0 && pads[2 * rank - 1] >= 0;
    for (int k = 0; rows && k < rank - 1; k++) rows = pads[k] == 0 && pads[rank + k] == 0;
    if (rows && in_dims[rank - 1] > 0) p->row_in = in_dims[rank - 1];
    *maps = t;
    *map_count = (size_t)count;
    return KILN_OK;
}

static int64_t clamp_to_int(float v, double lo, double hi) {
    if (isnan(v)) return 0;
    double d = (double)v;
    if (d < lo) d = lo;
    if (d > hi) d = hi;
    return (int64_t)d;
}

/* The pad value in the tensor's dtype (src/cpu/movement.c): integers truncate and saturate. */
static uint64_t pad_value_bits(kiln_dtype t, float v) {
    uint64_t bits = 0;
    switch (t) {
    case KILN_FLOAT32: memcpy(&bits, &v, 4); break;
    case KILN_FLOAT64: { double d = v; memcpy(&bits, &d, 8); } break;
    case KILN_FLOAT16: bits = kiln_float_to_half(v); break;
    case KILN_BFLOAT16: bits = kiln_float_to_bf16(v); break;
    case KILN_INT8: { int8_t i = (int8_t)clamp_to_int(v, -128, 127); memcpy(&bits, &i, 1); } break;
    case KILN_UINT8: bits = (uint8_t)clamp_to_int(v, 0, 255); break;
    case KILN_BOOL: bits = v != 0.0f; break;
    case KILN_INT32: { int32_t i = (int32_t)clamp_to_int(v, -2147483648.0, 2147483647.0); memcpy(&bits, &i, 4); } break;
    case KILN_INT64: {
        int64_t i = clamp_to_int(v, -9223372036854775808.0, 9223372036854774784.0);
        memcpy(&bits, &i, 8);
    } break;
    default: break;
    }
    return bits;
}

typedef struct pad_state {
    kcu_state base;
    kcu_pad plan;
    int es;
} pad_state;

static kiln_status pad_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    *scratch = 0;
    const kiln_dims *in = &l->inputs[0]->dims;
    size_t es = kcu_es(l->inputs[0]);
    if (es != 1 && es != 2 && es != 4 && es != 8)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "pad of dtype %s", kiln_dtype_name(l->inputs[0]->dtype));
    kiln_status st = linear_any(l);
    if (st != KILN_OK) return st;
    pad_state *s = state_new(l, b, sizeof *s, &st);
    if (!s) return st;
    *state = s;
    s->es = (int)es;
    int64_t *maps = NULL;
    size_t count = 0;
    st = kcu_pad_plan(l, b->env, in->nb_dims, in->d, l->p.pad.pads, l->p.pad.mode, &s->plan, &maps, &count);
    if (st != KILN_OK) return st;
    s->plan.value = pad_value_bits(kg_storage(l->inputs[0]), l->p.pad.value);
    const void *src = maps;
    size_t bytes = count * sizeof(int64_t);
    void *dst;
    st = kcu_state_upload(l, &s->base, 1, &src, &bytes, &dst);
    s->plan.maps = dst;
    kiln_free(b->env, maps);
    return st;
}

static kiln_status pad_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           const kcu_exec *x) {
    const pad_state *s = state;
    LAUNCH(l, kcu_pad_run(x->stream, &s->plan, s->es, in[0], out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_pad = {pad_prepare, pad_run, NULL, NULL, NULL};

/* ---- reformat: storage type and layout in one pass ---- */

static kiln_status reformat_prepare(const kiln_layer *l, const kcu_build *b, void **state, size_t *scratch) {
    (void)b;
    *state = NULL;
    *scratch = 0;
    const kiln_tensor *x = l->inputs[0], *y = l->outputs[0];
    kiln_dtype ts = kg_storage(x), td = kg_storage(y);
    if ((ts != KILN_FLOAT32 && ts != KILN_FLOAT16) || (td != KILN_FLOAT32 && td != KILN_FLOAT16))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "reformat between %s and %s storage", kiln_dtype_name(ts),
                              kiln_dtype_name(td));
    if (!kiln_dims_equal(&x->dims, &y->dims))
        return kg_layer_error(l, KILN_ERR_INTERNAL, "reformat changes the shape");
    return KILN_OK;
}

static kiln_status reformat_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                                const kcu_exec *x) {
    (void)state;
    const kiln_tensor *t = l->inputs[0], *y = l->outputs[0];
    int64_t n = vol(&t->dims), c = 1, hw = 1;
    if (t->dims.nb_dims == 4) {
        n = t->dims.d[0];
        c = t->dims.d[1];
        hw = t->dims.d[2] * t->dims.d[3];
    }
    LAUNCH(l, kcu_reformat(x->stream, (int)kg_storage(t), (int)kg_storage(y), n, c, hw, kcu_nhwc(t), kcu_nhwc(y), in[0],
                           out[0]));
    return KILN_OK;
}

const kcu_kernel kcu_k_reformat = {reformat_prepare, reformat_run, NULL, NULL, NULL};
