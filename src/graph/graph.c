/* kiln internal: graph construction, cloning and per-layer inference dispatch. */
#include "graph/graph.h"

#include <stdio.h>
#include <string.h>

#include "graph/ops.h"

void kg_graph_init(kiln_graph *g, const kiln_env *env) {
    memset(g, 0, sizeof *g);
    g->env = *env;
}

static void layer_free(const kiln_env *env, kiln_layer *l) {
    for (int i = 0; i < KG_MAX_WEIGHTS; i++)
        if (l->w_owned[i]) kiln_free(env, (void *)l->w[i].values);
    kiln_free(env, l->aux);
    kiln_free(env, l->inputs);
    kiln_free(env, l->outputs);
    kiln_free(env, l->name);
    kiln_free(env, l);
}

void kg_graph_free(kiln_graph *g) {
    const kiln_env *env = &g->env;
    for (int i = 0; i < g->nb_layers; i++) layer_free(env, g->layers[i]);
    for (int i = 0; i < g->nb_tensors; i++) {
        kiln_free(env, g->tensors[i]->name);
        kiln_free(env, g->tensors[i]);
    }
    kiln_free(env, g->layers);
    kiln_free(env, g->tensors);
    kiln_free(env, g->index);
    kiln_free(env, g->inputs);
    kiln_free(env, g->outputs);
    memset(g, 0, sizeof *g);
}

/* ---- the name index ---- */

static kiln_tensor gone_marker;
#define KG_INDEX_GONE (&gone_marker)

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void index_put(kiln_tensor **slots, int cap, kiln_tensor *t) {
    size_t mask = (size_t)cap - 1, i = (size_t)name_hash(t->name) & mask;
    while (slots[i] && slots[i] != KG_INDEX_GONE) i = (i + 1) & mask;
    slots[i] = t;
}

/* Makes room for one more entry: grows (or just rebuilds without removed slots). */
static bool index_reserve(kiln_graph *g) {
    if ((g->index_used + 1) * 4 < g->index_cap * 3) return true;
    int live = 0;
    for (int i = 0; i < g->index_cap; i++) live += g->index[i] && g->index[i] != KG_INDEX_GONE;
    int cap = 64;
    while (cap * 3 <= (live + 1) * 8) cap *= 2; /* at most 3/8 full after the rebuild */
    kiln_tensor **slots = kiln_calloc(&g->env, (size_t)cap, sizeof *slots);
    if (!slots) return false;
    for (int i = 0; i < g->index_cap; i++)
        if (g->index[i] && g->index[i] != KG_INDEX_GONE) index_put(slots, cap, g->index[i]);
    kiln_free(&g->env, g->index);
    g->index = slots;
    g->index_cap = cap;
    g->index_used = live;
    return true;
}

static bool index_insert(kiln_graph *g, kiln_tensor *t) {
    if (!index_reserve(g)) return false;
    index_put(g->index, g->index_cap, t);
    g->index_used++;
    return true;
}

static void index_remove(kiln_graph *g, const kiln_tensor *t) {
    if (!g->index_cap) return;
    size_t mask = (size_t)g->index_cap - 1, i = (size_t)name_hash(t->name) & mask;
    for (; g->index[i]; i = (i + 1) & mask)
        if (g->index[i] == t) {
            g->index[i] = KG_INDEX_GONE;
            return;
        }
}

kiln_tensor *kg_find_tensor(const kiln_graph *g, const char *name) {
    if (!g->index_cap) return NULL;
    size_t mask = (size_t)g->index_cap - 1, i = (size_t)name_hash(name) & mask;
    kiln_tensor *best = NULL;
    for (; g->index[i]; i = (i + 1) & mask) {
        kiln_tensor *t = g->index[i];
        if (t != KG_INDEX_GONE && strcmp(t->name, name) == 0 && (!best || t->id < best->id)) best = t;
    }
    return best;
}

kiln_status kg_tensor_rename(kiln_tensor *t, const char *name) {
    kiln_graph *g = t->graph;
    char *n = kiln_strdup(&g->env, name);
    if (!n || !index_reserve(g)) {
        kiln_free(&g->env, n);
        return kiln_error(&g->env, KILN_ERR_OUT_OF_MEMORY, "renaming tensor '%s': out of host memory", t->name);
    }
    index_remove(g, t);
    kiln_free(&g->env, t->name);
    t->name = n;
    index_put(g->index, g->index_cap, t);
    g->index_used++;
    return KILN_OK;
}

kiln_tensor *kg_tensor_new(kiln_graph *g, const char *name, kiln_dtype dtype, kiln_dims dims) {
    if (!kiln_grow(&g->env, (void **)&g->tensors, &g->cap_tensors, g->nb_tensors + 1, sizeof(void *)))
        return NULL;
    kiln_tensor *t = kiln_calloc(&g->env, 1, sizeof *t);
    if (!t) return NULL;
    char buf[48];
    if (!name) {
        snprintf(buf, sizeof buf, "tensor_%d", g->nb_tensors);
        name = buf;
    }
    t->name = kiln_strdup(&g->env, name);
    if (!t->name || !index_insert(g, t)) {
        kiln_free(&g->env, t->name);
        kiln_free(&g->env, t);
        return NULL;
    }
    t->graph = g;
    t->id = g->nb_tensors;
    t->dtype = dtype;
    t->dims = dims;
    t->storage = KG_STORAGE_SAME;
    t->format = KG_FORMAT_LINEAR;
    g->tensors[g->nb_tensors++] = t;
    return t;
}

kiln_layer *kg_layer_new(kiln_graph *g, kiln_layer_type type, kiln_tensor *const *inputs,
                         int nb_inputs, int nb_outputs, const kg_params *params) {
    const kiln_env *env = &g->env;
    if (!kiln_grow(env, (void **)&g->layers, &g->cap_layers, g->nb_layers + 1, sizeof(void *)))
        goto oom;
    kiln_layer *l = kiln_calloc(env, 1, sizeof *l);
    if (!l) goto oom;
    l->graph = g;
    l->type = type;
    l->id = g->nb_layers;
    l->nb_inputs = nb_inputs;
    l->nb_outputs = nb_outputs;
    l->inputs = kiln_calloc(env, (size_t)(nb_inputs ? nb_inputs : 1), sizeof(void *));
    l->outputs = kiln_calloc(env, (size_t)(nb_outputs ? nb_outputs : 1), sizeof(void *));
    char name[64];
    snprintf(name, sizeof name, "%s_%d", kg_ops[type].name, g->nb_layers);
    l->name = kiln_strdup(env, name);
    if (!l->inputs || !l->outputs || !l->name) {
        layer_free(env, l);
        goto oom;
    }
    for (int i = 0; i < nb_inputs; i++) l->inputs[i] = inputs[i];
    if (params) l->p = *params;
    int first = g->nb_tensors;
    for (int j = 0; j < nb_outputs; j++) {
        char tname[96];
        if (nb_outputs == 1) snprintf(tname, sizeof tname, "%s_out", name);
        else snprintf(tname, sizeof tname, "%s_out%d", name, j);
        kiln_dims unknown = {.nb_dims = -1};
        kiln_tensor *t = kg_tensor_new(g, tname, KILN_FLOAT32, unknown);
        if (!t) {
            while (g->nb_tensors > first) {
                kiln_tensor *u = g->tensors[--g->nb_tensors];
                index_remove(g, u);
                kiln_free(env, u->name);
                kiln_free(env, u);
            }
            layer_free(env, l);
            goto oom;
        }
        t->producer = l;
        t->producer_index = j;
        l->outputs[j] = t;
    }
    g->layers[g->nb_layers++] = l;
    return l;
oom:
    kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory adding a %s layer", kg_ops[type].name);
    return NULL;
}

void kg_layer_pop(kiln_graph *g) {
    if (g->nb_layers == 0) return;
    kiln_layer *l = g->layers[--g->nb_layers];
    /* its outputs are the newest tensors */
    for (int j = l->nb_outputs - 1; j >= 0; j--) {
        kiln_tensor *t = l->outputs[j];
        if (g->nb_tensors > 0 && g->tensors[g->nb_tensors - 1] == t) g->nb_tensors--;
        index_remove(g, t);
        kiln_free(&g->env, t->name);
        kiln_free(&g->env, t);
    }
    layer_free(&g->env, l);
}

kiln_status kg_layer_error(const kiln_layer *l, kiln_status status, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(&l->graph->env, status, "layer '%s' (%s): %s", l->name, kg_ops[l->type].name, msg);
}

kiln_status kg_infer_layer(kiln_layer *l) {
    const kg_op_info *op = &kg_ops[l->type];
    if (l->nb_inputs < op->min_in || (op->max_in >= 0 && l->nb_inputs > op->max_in) ||
        (op->nb_out >= 0 ? l->nb_outputs != op->nb_out : l->nb_outputs < 1))
        return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "%d inputs and %d outputs do not fit this layer type",
                              l->nb_inputs, l->nb_outputs);
    for (int i = 0; i < l->nb_inputs; i++)
        if (!l->inputs[i] && !(i < 32 && (op->optional >> i) & 1u))
            return kg_layer_error(l, KILN_ERR_INVALID_ARGUMENT, "input %d is missing", i);
    for (int i = 0; i < l->nb_inputs; i++) {
        const kiln_tensor *t = l->inputs[i];
        if (t && !kiln_dims_known(&t->dims))
            return kg_layer_error(l, KILN_ERR_SHAPE, "input %d '%s' has no known shape", i, t->name);
    }
    return kg_ops[l->type].infer(l);
}

static void *dup_bytes(const kiln_env *env, const void *src, size_t n) {
    void *p = kiln_alloc(env, n);
    if (p && n) memcpy(p, src, n);
    return p;
}

kiln_status kg_graph_clone(const kiln_graph *src, const kiln_env *env, kiln_graph *dst) {
    kg_graph_init(dst, env);
    for (int i = 0; i < src->nb_tensors; i++) {
        const kiln_tensor *s = src->tensors[i];
        kiln_tensor *t = kg_tensor_new(dst, s->name, s->dtype, s->dims);
        if (!t) goto oom;
        t->is_input = s->is_input;
        t->is_output = s->is_output;
        t->storage = s->storage;
        t->format = s->format;
        t->pitch = s->pitch;
    }
    for (int i = 0; i < src->nb_layers; i++) {
        const kiln_layer *s = src->layers[i];
        if (!kiln_grow(env, (void **)&dst->layers, &dst->cap_layers, dst->nb_layers + 1, sizeof(void *)))
            goto oom;
        kiln_layer *l = kiln_calloc(env, 1, sizeof *l);
        if (!l) goto oom;
        dst->layers[dst->nb_layers++] = l;
        *l = *s;
        l->graph = dst;
        l->name = kiln_strdup(env, s->name);
        l->inputs = kiln_calloc(env, (size_t)(s->nb_inputs ? s->nb_inputs : 1), sizeof(void *));
        l->outputs = kiln_calloc(env, (size_t)(s->nb_outputs ? s->nb_outputs : 1), sizeof(void *));
        l->aux = NULL;
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) l->w_owned[k] = false;
        if (!l->name || !l->inputs || !l->outputs) goto oom;
        if (s->nb_aux) {
            l->aux = dup_bytes(env, s->aux, (size_t)s->nb_aux * sizeof(int64_t));
            if (!l->aux) goto oom;
        }
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
            if (!s->w[k].count) continue;
            size_t bytes = (size_t)s->w[k].count * kiln_dtype_size(s->w[k].dtype);
            void *v = dup_bytes(env, s->w[k].values, bytes);
            if (!v) goto oom;
            l->w[k].values = v;
            l->w_owned[k] = true;
        }
        for (int k = 0; k < s->nb_inputs; k++) l->inputs[k] = s->inputs[k] ? dst->tensors[s->inputs[k]->id] : NULL;
        for (int k = 0; k < s->nb_outputs; k++) {
            kiln_tensor *t = dst->tensors[s->outputs[k]->id];
            t->producer = l;
            t->producer_index = k;
            l->outputs[k] = t;
        }
    }
    for (int i = 0; i < src->nb_inputs; i++) {
        if (!kiln_grow(env, (void **)&dst->inputs, &dst->cap_inputs, dst->nb_inputs + 1, sizeof(void *))) goto oom;
        dst->inputs[dst->nb_inputs++] = dst->tensors[src->inputs[i]->id];
    }
    for (int i = 0; i < src->nb_outputs; i++) {
        if (!kiln_grow(env, (void **)&dst->outputs, &dst->cap_outputs, dst->nb_outputs + 1, sizeof(void *))) goto oom;
        dst->outputs[dst->nb_outputs++] = dst->tensors[src->outputs[i]->id];
    }
    return KILN_OK;
oom:
    kg_graph_free(dst);
    return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory copying the network");
}
