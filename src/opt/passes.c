/* kiln internal: graph optimisation passes (see passes.h). A folded layer is marked
 * `removed` and its output tensor is handed to the layer it was folded into, so every
 * reader keeps its tensor and the memory planner never sees the intermediate. */
#include "opt/passes.h"

#include <math.h>
#include <string.h>

int kopt_consumers(const kiln_graph *g, const kiln_tensor *t) {
    int n = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        const kiln_layer *l = g->layers[i];
        if (l->removed) continue;
        for (int k = 0; k < l->nb_inputs; k++) n += l->inputs[k] == t;
    }
    return n;
}

/* The single layer reading t, or NULL when t is a network output or read by 0 or 2+. */
static kiln_layer *only_reader(const kiln_graph *g, const kiln_tensor *t) {
    if (t->is_output) return NULL;
    kiln_layer *found = NULL;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *l = g->layers[i];
        if (l->removed) continue;
        for (int k = 0; k < l->nb_inputs; k++)
            if (l->inputs[k] == t) {
                if (found) return NULL;
                found = l;
            }
    }
    return found;
}

/* `into` takes over `folded`'s output tensor; `folded` disappears. */
static void absorb(kiln_layer *into, kiln_layer *folded) {
    kiln_tensor *out = folded->outputs[0];
    into->outputs[0]->producer = NULL; /* the old intermediate is now unused */
    into->outputs[0] = out;
    out->producer = into;
    out->producer_index = 0;
    folded->removed = true;
    folded->nb_inputs = 0;
    folded->nb_outputs = 0;
}

static const float *weight_f32(const kiln_weights *w) { return w->dtype == KILN_FLOAT32 ? w->values : NULL; }

kiln_status kopt_fold_scale_into_conv(kiln_graph *g, int *count) {
    const kiln_env *env = &g->env;
    *count = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *conv = g->layers[i];
        if (conv->removed || conv->type != KILN_LAYER_CONVOLUTION || conv->has_post_act) continue;
        kiln_layer *sc = only_reader(g, conv->outputs[0]);
        if (!sc || sc->type != KILN_LAYER_SCALE || sc->inputs[0] != conv->outputs[0]) continue;
        if (sc->p.scale.mode == KILN_SCALE_ELEMENTWISE || sc->w[2].count) continue; /* power: not linear */
        int64_t cout = conv->p.conv.out_channels;
        const kiln_weights *shift = &sc->w[0], *scale = &sc->w[1];
        int64_t per = sc->p.scale.mode == KILN_SCALE_CHANNEL ? cout : 1;
        if ((shift->count && (shift->count != per || !weight_f32(shift))) ||
            (scale->count && (scale->count != per || !weight_f32(scale))))
            continue;
        kiln_weights *kw = &conv->w[0], *bw = &conv->w[1];
        if (kw->dtype != KILN_FLOAT32 || !conv->w_owned[0] || (bw->count && (bw->dtype != KILN_FLOAT32 || !conv->w_owned[1])))
            continue;
        float *bias = (float *)bw->values;
        if (!bw->count) {
            bias = kiln_calloc(env, (size_t)cout, sizeof(float));
            if (!bias) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory folding '%s' into '%s'",
                                         sc->name, conv->name);
            bw->dtype = KILN_FLOAT32;
            bw->values = bias;
            bw->count = cout;
            conv->w_owned[1] = true;
        }
        float *k = (float *)kw->values;
        int64_t per_out = kw->count / cout;
        const float *s = scale->count ? scale->values : NULL, *t = shift->count ? shift->values : NULL;
        for (int64_t co = 0; co < cout; co++) {
            float a = s ? s[per == 1 ? 0 : co] : 1.0f, b = t ? t[per == 1 ? 0 : co] : 0.0f;
            for (int64_t j = 0; j < per_out; j++) k[co * per_out + j] *= a;
            bias[co] = bias[co] * a + b;
        }
        absorb(conv, sc);
        conv->weights_rewritten = true;
        (*count)++;
    }
    return KILN_OK;
}

kiln_status kopt_fuse_activation(kiln_graph *g, const kopt_options *o, int *count) {
    *count = 0;
    if (!o || !o->can_fuse_act) return KILN_OK;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *p = g->layers[i];
        if (p->removed || p->has_post_act ||
            (p->type != KILN_LAYER_CONVOLUTION && p->type != KILN_LAYER_GEMM && p->type != KILN_LAYER_ELEMENTWISE))
            continue;
        kiln_layer *act = only_reader(g, p->outputs[0]);
        if (!act || act->type != KILN_LAYER_ACTIVATION || !o->can_fuse_act(p->type, act->p.act.type)) continue;
        p->has_post_act = true;
        p->post_act = act->p.act;
        absorb(p, act);
        (*count)++;
    }
    return KILN_OK;
}

kiln_status kopt_hoist_activation(kiln_graph *g, const kopt_options *o, int *count) {
    *count = 0;
    if (!o || !o->can_fuse_act) return KILN_OK;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *act = g->layers[i];
        if (act->removed || act->type != KILN_LAYER_ACTIVATION || act->nb_inputs != 1) continue;
        /* walk up the chain of data movement to the layer that computed the values */
        kiln_layer *last = act->inputs[0]->producer, *m = last, *p = NULL;
        while (m && !m->removed && (m->type == KILN_LAYER_SHUFFLE || m->type == KILN_LAYER_TRANSPOSE) &&
               m->nb_inputs == 1 && m->nb_outputs == 1 && only_reader(g, m->outputs[0]) &&
               m->outputs[0]->dtype == act->outputs[0]->dtype) {
            kiln_layer *up = m->inputs[0]->producer;
            if (up && !up->removed && only_reader(g, up->outputs[0]) == m &&
                (up->type == KILN_LAYER_CONVOLUTION || up->type == KILN_LAYER_GEMM)) {
                p = up;
                break;
            }
            m = up;
        }
        if (!p || p->has_post_act || p->nb_outputs != 1 || p->pin_fp32 != act->pin_fp32 ||
            !o->can_fuse_act(p->type, act->p.act.type))
            continue;
        p->has_post_act = true;
        p->post_act = act->p.act;
        absorb(last, act);
        (*count)++;
    }
    return KILN_OK;
}

kiln_status kopt_fuse_silu(kiln_graph *g, int *count) {
    *count = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *sig = g->layers[i];
        if (sig->removed || sig->type != KILN_LAYER_ACTIVATION || sig->p.act.type != KILN_ACT_SIGMOID) continue;
        kiln_tensor *x = sig->inputs[0];
        kiln_layer *mul = only_reader(g, sig->outputs[0]);
        if (!mul || mul->type != KILN_LAYER_ELEMENTWISE || mul->p.elt != KILN_ELT_MUL || mul->has_post_act ||
            mul->nb_inputs != 2)
            continue;
        /* x * sigmoid(x) in either order, same shape (no broadcast), float */
        kiln_tensor *other = mul->inputs[0] == sig->outputs[0] ? mul->inputs[1] : mul->inputs[0];
        if (other != x || mul->inputs[0] == mul->inputs[1] || x->dtype != KILN_FLOAT32 ||
            !kiln_dims_equal(&x->dims, &mul->outputs[0]->dims))
            continue;
        sig->p.act.type = KILN_ACT_SILU;
        sig->p.act.alpha = 0.0f;
        sig->p.act.beta = 0.0f;
        absorb(sig, mul);
        (*count)++;
    }
    return KILN_OK;
}

/* Both residual passes: a convolution without (after == false) or with a fused activation
 * takes the add that is the only reader of its output as a second input, added before or
 * after that activation. */
static kiln_status fuse_residuals(kiln_graph *g, const kopt_options *o, bool after, int *count) {
    *count = 0;
    if (!o || !o->can_fuse_residual) return KILN_OK;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *conv = g->layers[i];
        if (conv->removed || conv->type != KILN_LAYER_CONVOLUTION || conv->has_post_act != after ||
            conv->nb_inputs != 1 || !o->can_fuse_residual(conv))
            continue;
        kiln_layer *add = only_reader(g, conv->outputs[0]);
        if (!add || add->type != KILN_LAYER_ELEMENTWISE || add->p.elt != KILN_ELT_ADD || add->has_post_act ||
            add->nb_inputs != 2 || add->pin_fp32 != conv->pin_fp32)
            continue;
        int mine = add->inputs[0] == conv->outputs[0] ? 0 : 1;
        kiln_tensor *res = add->inputs[1 - mine];
        if (res == conv->outputs[0] || !kiln_dims_equal(&res->dims, &conv->outputs[0]->dims) ||
            res->dtype != conv->outputs[0]->dtype)
            continue;
        /* the convolution moves to the add's place, where the residual exists */
        kiln_tensor **ins = kiln_alloc(&g->env, 2 * sizeof *ins);
        if (!ins) return kiln_error(&g->env, KILN_ERR_OUT_OF_MEMORY, "out of host memory fusing '%s'", add->name);
        ins[0] = conv->inputs[0];
        ins[1] = res;
        kiln_free(&g->env, conv->inputs);
        conv->inputs = ins;
        conv->nb_inputs = 2;
        conv->res_after_act = after;
        int at = add->id;
        absorb(conv, add);
        g->layers[i] = add;
        g->layers[at] = conv;
        add->id = i;
        conv->id = at;
        (*count)++;
    }
    return KILN_OK;
}

kiln_status kopt_fuse_residual(kiln_graph *g, const kopt_options *o, int *count) {
    return fuse_residuals(g, o, false, count);
}

kiln_status kopt_fuse_residual_after_act(kiln_graph *g, const kopt_options *o, int *count) {
    return fuse_residuals(g, o, true, count);
}

/* ---- element-wise ops with a constant operand as scales, and chains of scales ---- */

/* The float32 values of a constant tensor (a live CONSTANT layer's output), or NULL. */
static const float *constant_values(const kiln_tensor *t) {
    const kiln_layer *c = t ? t->producer : NULL;
    if (!c || c->removed || c->type != KILN_LAYER_CONSTANT || t->dtype != KILN_FLOAT32 || c->w[0].dtype != KILN_FLOAT32 ||
        c->w[0].count != kiln_dims_volume(&t->dims))
        return NULL;
    return c->w[0].values;
}

/* How a constant of dims c broadcasts over out: 1 (one value), out.d[1] (one per channel,
 * axis 1), or 0 (otherwise). */
static int64_t broadcast_per(const kiln_dims *c, const kiln_dims *out) {
    if (kiln_dims_volume(c) == 1) return 1;
    int r = out->nb_dims, shift = r - c->nb_dims;
    if (r < 2 || shift < 0 || shift > 1) return 0;
    for (int i = 0; i < c->nb_dims; i++) {
        int axis = i + shift;
        if (c->d[i] != (axis == 1 ? out->d[1] : 1)) return 0;
    }
    return out->d[1];
}

/* Gives a layer fresh float32 shift and scale arrays of n values (identity). */
static kiln_status set_scale_weights(kiln_graph *g, kiln_layer *l, int64_t n, float **shift, float **scale) {
    float *t = kiln_alloc(&g->env, (size_t)n * sizeof(float)), *a = kiln_alloc(&g->env, (size_t)n * sizeof(float));
    if (!t || !a) {
        kiln_free(&g->env, t);
        kiln_free(&g->env, a);
        return kiln_error(&g->env, KILN_ERR_OUT_OF_MEMORY, "out of host memory rewriting '%s' as a scale", l->name);
    }
    for (int64_t i = 0; i < n; i++) {
        t[i] = 0.0f;
        a[i] = 1.0f;
    }
    for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
        if (l->w_owned[k]) kiln_free(&g->env, (void *)l->w[k].values);
        l->w_owned[k] = false;
        l->w[k] = (kiln_weights){KILN_FLOAT32, NULL, 0};
    }
    l->w[0] = (kiln_weights){KILN_FLOAT32, t, n};
    l->w[1] = (kiln_weights){KILN_FLOAT32, a, n};
    l->w_owned[0] = l->w_owned[1] = true;
    *shift = t;
    *scale = a;
    return KILN_OK;
}

kiln_status kopt_elementwise_to_scale(kiln_graph *g, int *count) {
    *count = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *l = g->layers[i];
        if (l->removed || l->type != KILN_LAYER_ELEMENTWISE || l->has_post_act || l->nb_inputs != 2 ||
            (l->p.elt > KILN_ELT_DIV && l->p.elt != KILN_ELT_POW))
            continue;
        int ci = constant_values(l->inputs[1]) ? 1 : constant_values(l->inputs[0]) ? 0 : -1;
        /* the constant's values move into the scale: only when nothing else reads them (a
         * refit of the constant would otherwise leave the scale's copy stale) */
        if (ci < 0 || only_reader(g, l->inputs[ci]) != l) continue;
        kiln_tensor *x = l->inputs[1 - ci], *y = l->outputs[0];
        const float *c = constant_values(l->inputs[ci]);
        int64_t per = broadcast_per(&l->inputs[ci]->dims, &y->dims);
        if (!per || x->dtype != KILN_FLOAT32 || !kiln_dims_equal(&x->dims, &y->dims) || x == l->inputs[ci]) continue;
        kiln_elementwise_op op = l->p.elt;
        if (op == KILN_ELT_DIV) {
            bool ok = ci == 1; /* c / x is not affine in x */
            for (int64_t k = 0; ok && k < per; k++) ok = c[k] != 0.0f && isfinite(c[k]) && isfinite(1.0f / c[k]);
            if (!ok) continue;
        }
        if (op == KILN_ELT_POW) { /* x ^ c: a scale's power (c ^ x is not one) */
            bool ok = ci == 1;
            for (int64_t k = 0; ok && k < per; k++) ok = isfinite(c[k]);
            if (!ok) continue;
        }
        float *pw = NULL;
        if (op == KILN_ELT_POW) {
            pw = kiln_alloc(&g->env, (size_t)per * sizeof(float));
            if (!pw) return kiln_error(&g->env, KILN_ERR_OUT_OF_MEMORY, "out of host memory rewriting '%s'", l->name);
            memcpy(pw, c, (size_t)per * sizeof(float));
        }
        float *shift = NULL, *scale = NULL;
        kiln_status st = set_scale_weights(g, l, per, &shift, &scale);
        if (st != KILN_OK) {
            kiln_free(&g->env, pw);
            return st;
        }
        if (pw) {
            l->w[2] = (kiln_weights){KILN_FLOAT32, pw, per};
            l->w_owned[2] = true;
        }
        for (int64_t k = 0; k < per; k++) {
            switch (op) {
            case KILN_ELT_ADD: shift[k] = c[k]; break;
            case KILN_ELT_SUB:
                if (ci == 1) shift[k] = -c[k];
                else scale[k] = -1.0f, shift[k] = c[k];
                break;
            case KILN_ELT_MUL: scale[k] = c[k]; break;
            case KILN_ELT_POW: break; /* the power alone */
            default: scale[k] = 1.0f / c[k]; break; /* x / c as x * (1/c) */
            }
        }
        l->type = KILN_LAYER_SCALE;
        memset(&l->p, 0, sizeof l->p);
        l->p.scale.mode = per == 1 ? KILN_SCALE_UNIFORM : KILN_SCALE_CHANNEL;
        l->inputs[0] = x;
        l->inputs[1] = NULL;
        l->nb_inputs = 1;
        l->weights_rewritten = true;
        (*count)++;
    }
    return KILN_OK;
}

/* The n-th value of a scale weight (count 0: `none`, 1: uniform, else per channel). */
static float scale_at(const kiln_weights *w, int64_t k, float none) {
    const float *v = w->values;
    return !w->count ? none : w->count == 1 ? v[0] : v[k];
}

/* A scale the merge can combine: uniform or per channel, no power, no fused activation, its
 * shift and scale float32 or absent. */
static bool affine_scale(const kiln_layer *l) {
    return !l->removed && l->type == KILN_LAYER_SCALE && !l->w[2].count && l->p.scale.mode != KILN_SCALE_ELEMENTWISE &&
           !l->has_post_act && (!l->w[0].count || weight_f32(&l->w[0])) && (!l->w[1].count || weight_f32(&l->w[1]));
}

/* The same with a float32 power: it can end a merged chain, (x a + b) ^ p. */
static bool powered_scale(const kiln_layer *l) {
    if (l->removed || l->type != KILN_LAYER_SCALE || !l->w[2].count || !weight_f32(&l->w[2])) return false;
    kiln_layer probe = *l;
    probe.w[2].count = 0;
    return affine_scale(&probe);
}

kiln_status kopt_merge_scales(kiln_graph *g, int *count) {
    *count = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *a = g->layers[i];
        if (!affine_scale(a)) continue;
        for (;;) {
            kiln_layer *b = only_reader(g, a->outputs[0]);
            bool powered = b && powered_scale(b);
            if (!b || !(affine_scale(b) || powered) || b->pin_fp32 != a->pin_fp32) break;
            bool channel = a->p.scale.mode == KILN_SCALE_CHANNEL || b->p.scale.mode == KILN_SCALE_CHANNEL;
            int64_t n = channel ? a->outputs[0]->dims.d[1] : 1;
            float *t = kiln_alloc(&g->env, (size_t)n * sizeof(float)), *s = kiln_alloc(&g->env, (size_t)n * sizeof(float));
            float *p = powered ? kiln_alloc(&g->env, (size_t)n * sizeof(float)) : NULL;
            if (!t || !s || (powered && !p)) {
                kiln_free(&g->env, t);
                kiln_free(&g->env, s);
                kiln_free(&g->env, p);
                return kiln_error(&g->env, KILN_ERR_OUT_OF_MEMORY, "out of host memory merging '%s' into '%s'", b->name,
                                  a->name);
            }
            /* ((x a1 + b1) a2 + b2) ^ p = (x (a1 a2) + (b1 a2 + b2)) ^ p */
            for (int64_t k = 0; k < n; k++) {
                float a1 = scale_at(&a->w[1], k, 1.0f), b1 = scale_at(&a->w[0], k, 0.0f);
                float a2 = scale_at(&b->w[1], k, 1.0f), b2 = scale_at(&b->w[0], k, 0.0f);
                s[k] = a1 * a2;
                t[k] = b1 * a2 + b2;
                if (p) p[k] = scale_at(&b->w[2], k, 1.0f);
            }
            if (p) { /* a scale with a power ends the chain */
                a->w[2] = (kiln_weights){KILN_FLOAT32, p, n};
                a->w_owned[2] = true;
            }
            for (int k = 0; k < 2; k++)
                if (a->w_owned[k]) kiln_free(&g->env, (void *)a->w[k].values);
            a->w[0] = (kiln_weights){KILN_FLOAT32, t, n};
            a->w[1] = (kiln_weights){KILN_FLOAT32, s, n};
            a->w_owned[0] = a->w_owned[1] = true;
            a->p.scale.mode = channel ? KILN_SCALE_CHANNEL : KILN_SCALE_UNIFORM;
            a->weights_rewritten = true;
            absorb(a, b);
            (*count)++;
            if (powered) break;
        }
    }
    return KILN_OK;
}

kiln_status kopt_run(kiln_graph *g, const kopt_options *o) {
    int folded = 0, residual = 0, fused = 0, reformats = 0, silu = 0, scales = 0, merged = 0, after = 0, hoisted = 0;
    bool keep = o && o->keep_weights;
    kiln_status st = keep ? KILN_OK : kopt_elementwise_to_scale(g, &scales);
    if (st == KILN_OK && !keep) st = kopt_merge_scales(g, &merged);
    if (st == KILN_OK && !keep) st = kopt_fold_scale_into_conv(g, &folded);
    if (st == KILN_OK) st = kopt_fuse_silu(g, &silu);
    if (st == KILN_OK) st = kopt_fuse_residual(g, o, &residual);
    if (st == KILN_OK) st = kopt_fuse_activation(g, o, &fused);
    if (st == KILN_OK) st = kopt_hoist_activation(g, o, &hoisted);
    if (st == KILN_OK) st = kopt_fuse_residual_after_act(g, o, &after);
    if (st == KILN_OK) st = kopt_assign_formats(g, o, &reformats);
    int regions = 0, absorbed = 0;
    if (st == KILN_OK) st = kopt_fuse_regions(g, o, &regions, &absorbed);
    if (st == KILN_OK)
        kiln_log(&g->env, KILN_LOG_VERBOSE,
                 "optimise: %d element-wise ops with a constant made scales, %d scales merged, %d scales folded into "
                 "convolutions, %d x*sigmoid(x) made SiLU, %d residual adds and %d activations fused (%d of them read "
                 "through reshapes or transposes), %d residual adds fused after an activation, %d reformats, %d "
                 "regions of %d layers fused",
                 scales, merged, folded, silu, residual, fused + hoisted, hoisted, after, reformats, regions, absorbed);
    return st;
}
