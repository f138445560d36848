/* kiln internal: the format pass (see passes.h). Device kernels may want float tensors in
 * another storage type (float16) or layout (NHWC) than the logical float32 row-major one.
 * Each layer, in execution order, says what it wants; its outputs get that, and any input
 * that arrived otherwise goes through a REFORMAT layer inserted just before it (one per
 * tensor and target, shared by all readers). Network inputs and outputs stay logical. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph/ops.h"
#include "opt/passes.h"

static bool is_float(kiln_dtype t) { return t == KILN_FLOAT32 || t == KILN_FLOAT16; }

typedef struct fmt_ctx {
    kiln_graph *g;
    kiln_layer **before; /* per original layer: the reformats that must run just before it */
    int *nb_before;
    kiln_layer **after; /* per original layer: a reformat that must run just after it */
    int count;
} fmt_ctx;

static bool same(const kiln_tensor *t, int storage, int format) {
    return kg_storage(t) == (storage == KG_STORAGE_SAME ? t->dtype : (kiln_dtype)storage) && t->format == format;
}

/* A tensor holding t's values as (storage, format): an existing reformat of t, or a new one. */
static kiln_tensor *reformat_of(fmt_ctx *c, kiln_tensor *t, int storage, int format, int for_layer, kiln_status *err) {
    kiln_graph *g = c->g;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *l = g->layers[i];
        if (l->type == KILN_LAYER_REFORMAT && !l->removed && l->inputs[0] == t && same(l->outputs[0], storage, format))
            return l->outputs[0];
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.reformat.storage = storage;
    p.reformat.format = format;
    kiln_layer *r = kg_layer_new(g, KILN_LAYER_REFORMAT, &t, 1, 1, &p);
    if (!r) {
        *err = KILN_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    char name[256];
    snprintf(name, sizeof name, "%s.reformat_%s%s", t->name, storage == KILN_FLOAT16 ? "f16" : "f32",
             format == KG_FORMAT_NHWC ? "_nhwc" : "");
    kiln_free(&g->env, r->name);
    r->name = kiln_strdup(&g->env, name);
    if (!r->name) {
        *err = KILN_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    *err = kg_infer_layer(r);
    if (*err != KILN_OK) return NULL;
    r->outputs[0]->storage = storage;
    r->outputs[0]->format = format;
    int k = c->nb_before[for_layer]++;
    c->before[(size_t)for_layer * KILN_MAX_DIMS + (size_t)k] = r;
    c->count++;
    return r->outputs[0];
}

/* A float32 constant whose every reader is a reformat to float16 row-major becomes a
 * float16 constant (the backend converts its values once, at build) and those reformats go:
 * they would convert the same values on every run. Not where a value would overflow
 * float16, nor in a refittable engine (new values could). */
static int fold_constant_reformats(kiln_graph *g, const kopt_options *o) {
    int folded = 0;
    if (o->keep_weights) return 0;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *c = g->layers[i];
        if (c->removed || c->type != KILN_LAYER_CONSTANT || c->nb_outputs != 1) continue;
        kiln_tensor *t = c->outputs[0];
        const kiln_weights *w = &c->w[0];
        if (t->is_output || t->dtype != KILN_FLOAT32 || kg_storage(t) != KILN_FLOAT32 || t->format != KG_FORMAT_LINEAR ||
            w->dtype != KILN_FLOAT32 || w->count != kiln_dims_volume(&t->dims))
            continue;
        int readers = 0;
        bool ok = true;
        for (int k = 0; ok && k < g->nb_layers; k++) {
            const kiln_layer *r = g->layers[k];
            if (r->removed) continue;
            for (int j = 0; ok && j < r->nb_inputs; j++) {
                if (r->inputs[j] != t) continue;
                readers++;
                ok = r->type == KILN_LAYER_REFORMAT && kg_storage(r->outputs[0]) == KILN_FLOAT16 &&
                     r->outputs[0]->format == KG_FORMAT_LINEAR && !r->outputs[0]->is_output;
            }
        }
        const float *v = w->values;
        for (int64_t k = 0; ok && k < w->count; k++) ok = !(fabsf(v[k]) > 65504.0f) || isinf(v[k]);
        if (!ok || !readers) continue;
        t->storage = KILN_FLOAT16;
        for (int k = 0; k < g->nb_layers; k++) {
            kiln_layer *r = g->layers[k];
            if (r->removed || r->type != KILN_LAYER_REFORMAT || r->inputs[0] != t) continue;
            kiln_tensor *gone = r->outputs[0];
            for (int m = 0; m < g->nb_layers; m++) {
                kiln_layer *u = g->layers[m];
                if (u->removed) continue;
                for (int j = 0; j < u->nb_inputs; j++)
                    if (u->inputs[j] == gone) u->inputs[j] = t;
            }
            gone->producer = NULL;
            r->removed = true;
            r->nb_inputs = 0;
            r->nb_outputs = 0;
            folded++;
        }
    }
    return folded;
}

kiln_status kopt_assign_formats(kiln_graph *g, const kopt_options *o, int *inserted) {
    *inserted = 0;
    if (!o || !o->layer_format) return KILN_OK;
    const kiln_env *env = &g->env;
    int n = g->nb_layers;
    fmt_ctx c = {g, NULL, NULL, NULL, 0};
    /* a layer has at most KILN_MAX_DIMS reformatted inputs before it (more inputs than
     * that share formats in practice; the rest keep working through the shared cache) */
    c.before = kiln_calloc(env, (size_t)n * KILN_MAX_DIMS, sizeof *c.before);
    c.nb_before = kiln_calloc(env, (size_t)n, sizeof *c.nb_before);
    c.after = kiln_calloc(env, (size_t)n, sizeof *c.after);
    kiln_layer **order = NULL;
    kiln_status st = KILN_OK;
    if (!c.before || !c.nb_before || !c.after) goto oom;
    for (int i = 0; i < n; i++) {
        kiln_layer *l = g->layers[i];
        if (l->removed) continue;
        int storage = KG_STORAGE_SAME, format = KG_FORMAT_LINEAR;
        if (l->pin_fp32 || !o->layer_format(l, o->flags, &storage, &format))
            storage = KG_STORAGE_SAME, format = KG_FORMAT_LINEAR;
        for (int k = 0; k < l->nb_inputs; k++) {
            kiln_tensor *t = l->inputs[k];
            /* channels-last applies to 4-D tensors; others keep row-major in that storage */
            int fmt = format == KG_FORMAT_NHWC && (!t || t->dims.nb_dims != 4) ? KG_FORMAT_LINEAR : format;
            if (!t || !is_float(t->dtype) || same(t, storage, fmt)) continue;
            /* a network output written through a reformat: read the layer's own tensor */
            if (t->is_output && t->producer && t->producer->type == KILN_LAYER_REFORMAT &&
                same(t->producer->inputs[0], storage, fmt)) {
                l->inputs[k] = t->producer->inputs[0];
                continue;
            }
            if (c.nb_before[i] >= KILN_MAX_DIMS) {
                st = kg_layer_error(l, KILN_ERR_UNSUPPORTED, "too many inputs to reformat");
                goto done;
            }
            kiln_status err = KILN_OK;
            kiln_tensor *r = reformat_of(&c, t, storage, fmt, i, &err);
            if (!r) {
                if (err == KILN_ERR_OUT_OF_MEMORY) goto oom;
                st = err; /* the message names the reformat and why */
                goto done;
            }
            l->inputs[k] = r;
        }
        for (int k = 0; k < l->nb_outputs; k++) {
            kiln_tensor *t = l->outputs[k];
            int fmt = format == KG_FORMAT_NHWC && t->dims.nb_dims != 4 ? KG_FORMAT_LINEAR : format;
            if (!is_float(t->dtype) || same(t, storage, fmt)) continue;
            if (!t->is_output) {
                t->storage = storage;
                t->format = fmt;
                continue;
            }
            /* a network output stays logical: the layer writes an internal tensor and a
             * reformat after it fills the output */
            if (l->nb_outputs != 1) {
                st = kg_layer_error(l, KILN_ERR_UNSUPPORTED, "cannot reformat output %d of a multi-output layer", k);
                goto done;
            }
            kiln_tensor *inner = kg_tensor_new(g, NULL, t->dtype, t->dims);
            if (!inner) goto oom;
            char name[256];
            snprintf(name, sizeof name, "%s.inner", t->name);
            if (kg_tensor_rename(inner, name) != KILN_OK) goto oom;
            inner->storage = storage;
            inner->format = fmt;
            inner->producer = l;
            inner->producer_index = k;
            l->outputs[k] = inner;
            kg_params p;
            memset(&p, 0, sizeof p);
            p.reformat.storage = KG_STORAGE_SAME;
            p.reformat.format = KG_FORMAT_LINEAR;
            kiln_layer *r = kg_layer_new(g, KILN_LAYER_REFORMAT, &inner, 1, 1, &p);
            if (!r) goto oom;
            /* the new layer's own output tensor is replaced by the network output */
            kiln_tensor *made = r->outputs[0];
            made->producer = NULL;
            r->outputs[0] = t;
            t->producer = r;
            t->producer_index = 0;
            snprintf(name, sizeof name, "%s.reformat_out", t->name);
            kiln_free(env, r->name);
            r->name = kiln_strdup(env, name);
            if (!r->name) goto oom;
            c.after[i] = r;
            c.count++;
        }
    }
    /* execution order: reformats of a layer's inputs just before it, of its output just after */
    int total = g->nb_layers;
    order = kiln_alloc(env, (size_t)total * sizeof *order);
    if (!order) goto oom;
    int at = 0;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < c.nb_before[i]; k++) order[at++] = c.before[(size_t)i * KILN_MAX_DIMS + (size_t)k];
        order[at++] = g->layers[i];
        if (c.after[i]) order[at++] = c.after[i];
    }
    if (at != total) {
        st = kiln_error(env, KILN_ERR_INTERNAL, "format pass: ordered %d of %d layers", at, total);
        goto done;
    }
    memcpy(g->layers, order, (size_t)total * sizeof *order);
    for (int i = 0; i < total; i++) g->layers[i]->id = i;
    *inserted = c.count - fold_constant_reformats(g, o);
    goto done;
oom:
    st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory assigning tensor formats");
done:
    kiln_free(env, c.before);
    kiln_free(env, c.nb_before);
    kiln_free(env, c.after);
    kiln_free(env, order);
    return st;
}
