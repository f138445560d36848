/* kiln: engines and execution contexts. A context allocates its arena, scratch and
 * threads once; execute resolves every tensor's address from the memory plan and runs
 * the prepared kernels in order, allocating nothing. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime/backend.h"

struct kiln_context {
    kiln_engine *engine;
    void *arena;
    kb_ctx *backend;
    void **bindings;       /* per engine I/O */
    void **ptrs;           /* per tensor, resolved at each execute */
    const void **in_ptrs;  /* per-node argument arrays */
    void **out_ptrs;
    kiln_profile_fn profile;
    void *profile_user;
    /* KILN_MEMORY_HOST on a device backend: user buffers are host memory, staged here */
    bool host_io;
    bool io_frozen; /* host_io, but skip the copies (kiln_context_keep_io_on_device) */
    void **staging; /* per engine I/O: device buffer */
    bool no_graph;     /* kiln_context_set_cuda_graph(ctx, 0) */
    ke_probe_fn probe; /* ke_context_run_probed: called after each node */
    void *probe_user;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

kiln_status kiln_context_set_cuda_graph(kiln_context *c, int on) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "set cuda graph: context is NULL");
    c->no_graph = !on;
    return KILN_OK;
}

kiln_status kiln_context_set_profiler(kiln_context *c, kiln_profile_fn fn, void *user) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "set profiler: context is NULL");
    c->profile = fn;
    c->profile_user = user;
    return KILN_OK;
}

static void engine_free(kiln_engine *e) {
    kiln_env env = e->env;
    for (int n = 0; n < e->nb_nodes; n++) {
        if (e->backend) e->backend->release(&env, &e->nodes[n]);
        kiln_free(&env, e->nodes[n].tactic);
    }
    kiln_free(&env, e->nodes);
    kiln_free(&env, e->plan);
    kiln_free(&env, e->io);
    kg_graph_free(&e->graph);
    kiln_free(&env, e);
}

void ke_engine_release(kiln_engine *e) {
    if (e && atomic_fetch_sub(&e->refs, 1) == 1) engine_free(e);
}

void kiln_engine_destroy(kiln_engine *e) { ke_engine_release(e); }

kiln_device kiln_engine_device(const kiln_engine *e) { return e ? e->device : KILN_DEVICE_CPU; }
int kiln_engine_num_io(const kiln_engine *e) { return e ? e->nb_io : 0; }
const char *kiln_engine_io_name(const kiln_engine *e, int i) {
    return e && i >= 0 && i < e->nb_io ? e->io[i].name : NULL;
}
size_t kiln_engine_activation_bytes(const kiln_engine *e) { return e ? e->arena_bytes : 0; }
int kiln_engine_num_layers(const kiln_engine *e) {
    if (!e) return 0;
    int n = 0;
    for (int i = 0; i < e->nb_nodes; i++) n += !e->nodes[i].skip;
    return n;
}

static const char *act_name(kiln_activation_type t) {
    static const char *names[KILN_ACT_COUNT] = {"Relu",  "LeakyRelu", "Sigmoid", "Tanh",     "Clip",     "SiLU",
                                                "HardSigmoid", "HardSwish", "GeluErf", "GeluTanh", "Elu", "Selu",
                                                "Softplus", "Softsign", "ThresholdedRelu", "Mish"};
    return (unsigned)t < KILN_ACT_COUNT ? names[t] : "?";
}

/* The same, followed by the residual add (a convolution with res_after_act). */
static const char *act_add_name(kiln_activation_type t) {
    static const char *names[KILN_ACT_COUNT] = {
        "Relu+Add",         "LeakyRelu+Add", "Sigmoid+Add", "Tanh+Add",      "Clip+Add",     "SiLU+Add",
        "HardSigmoid+Add",  "HardSwish+Add", "GeluErf+Add", "GeluTanh+Add",  "Elu+Add",      "Selu+Add",
        "Softplus+Add",     "Softsign+Add",  "ThresholdedRelu+Add", "Mish+Add"};
    return (unsigned)t < KILN_ACT_COUNT ? names[t] : "?";
}

kiln_status kiln_engine_layer_info(const kiln_engine *e, int index, kiln_layer_info *info) {
    if (!e || !info) return kiln_error(e ? &e->env : NULL, KILN_ERR_INVALID_ARGUMENT, "layer info: %s is NULL", e ? "info" : "engine");
    int k = -1;
    for (int n = 0; n < e->nb_nodes; n++) {
        if (e->nodes[n].skip || ++k != index) continue;
        const kiln_layer *l = e->nodes[n].layer;
        info->name = l->name;
        info->type = kiln_layer_type_name(l->type);
        info->kernel = e->backend->kernel_name ? e->backend->kernel_name(&e->nodes[n]) : info->type;
        info->fused = !l->has_post_act ? ""
                      : l->res_after_act ? act_add_name(l->post_act.type)
                                         : act_name(l->post_act.type);
        info->precision = kg_storage(l->outputs[0]); /* what the kernel writes (float16 under FP16) */
        info->nb_inputs = l->nb_inputs;
        info->nb_outputs = l->nb_outputs;
        info->output = l->outputs[0]->name;
        info->output_bytes = 0;
        for (int j = 0; j < l->nb_outputs; j++) info->output_bytes += e->plan[l->outputs[j]->id].bytes;
        info->weight_bytes = 0;
        for (int j = 0; j < KG_MAX_WEIGHTS; j++) info->weight_bytes += (size_t)l->w[j].count * kiln_dtype_size(l->w[j].dtype);
        return KILN_OK;
    }
    return kiln_error(&e->env, KILN_ERR_INVALID_ARGUMENT, "layer info: index %d is outside [0, %d)", index, k + 1);
}

void ke_fill_fingerprint(kiln_engine *e) {
    if (e->backend->fingerprint) e->backend->fingerprint(&e->env, e->fingerprint, sizeof e->fingerprint);
    else snprintf(e->fingerprint, sizeof e->fingerprint, "device=%s;", e->backend->name);
}

const char *kiln_engine_fingerprint(const kiln_engine *e) { return e ? e->fingerprint : ""; }

unsigned kiln_engine_flags(const kiln_engine *e) { return e ? e->flags : 0; }

void kiln_engine_memory(const kiln_engine *e, size_t *activations, size_t *scratch, size_t *weights) {
    size_t w = 0;
    for (int n = 0; e && n < e->nb_nodes; n++) {
        const kiln_layer *l = e->nodes[n].layer;
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) w += (size_t)l->w[k].count * kiln_dtype_size(l->w[k].dtype);
    }
    if (activations) *activations = e ? e->arena_bytes : 0;
    if (scratch) *scratch = e ? e->scratch_bytes : 0;
    if (weights) *weights = w;
}

static int find_io(const kiln_engine *e, const char *name) {
    if (!e || !name) return -1;
    for (int i = 0; i < e->nb_io; i++)
        if (strcmp(e->io[i].name, name) == 0) return i;
    return -1;
}

kiln_io_mode kiln_engine_io_mode(const kiln_engine *e, const char *name) {
    int i = find_io(e, name);
    return i < 0 ? KILN_IO_NONE : e->io[i].mode;
}

static kiln_status io_lookup(const kiln_engine *e, const char *name, const char *what, int *index) {
    if (!e || !name) return kiln_error(e ? &e->env : NULL, KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", what, e ? "name" : "engine");
    *index = find_io(e, name);
    if (*index < 0) return kiln_error(&e->env, KILN_ERR_NOT_FOUND, "%s: the engine has no input or output named '%s'", what, name);
    return KILN_OK;
}

kiln_status kiln_engine_io_dims(const kiln_engine *e, const char *name, kiln_dims *dims) {
    int i;
    kiln_status st = io_lookup(e, name, "engine io dims", &i);
    if (st != KILN_OK) return st;
    if (!dims) return kiln_error(&e->env, KILN_ERR_INVALID_ARGUMENT, "engine io dims: dims is NULL");
    *dims = e->graph.tensors[e->io[i].tensor]->dims;
    return KILN_OK;
}

kiln_status kiln_engine_io_dtype(const kiln_engine *e, const char *name, kiln_dtype *dtype) {
    int i;
    kiln_status st = io_lookup(e, name, "engine io dtype", &i);
    if (st != KILN_OK) return st;
    if (!dtype) return kiln_error(&e->env, KILN_ERR_INVALID_ARGUMENT, "engine io dtype: dtype is NULL");
    *dtype = e->graph.tensors[e->io[i].tensor]->dtype;
    return KILN_OK;
}

/* ---- contexts ---- */

void kiln_context_destroy(kiln_context *c) {
    if (!c) return;
    kiln_engine *e = c->engine;
    const kiln_env *env = &e->env;
    if (c->staging)
        for (int i = 0; i < e->nb_io; i++)
            if (c->staging[i]) e->backend->dev_free(c->backend, c->staging[i]);
    kiln_free(env, c->staging);
    if (c->backend) e->backend->ctx_destroy(e, c->backend, c->arena);
    kiln_free(env, c->bindings);
    kiln_free(env, c->ptrs);
    kiln_free(env, c->in_ptrs);
    kiln_free(env, c->out_ptrs);
    kiln_free(env, c);
    ke_engine_release(e);
}

kiln_status kiln_context_create(kiln_engine *e, kiln_context **out) {
    if (!e || !out) return kiln_error(e ? &e->env : NULL, KILN_ERR_INVALID_ARGUMENT, "context create: %s is NULL", e ? "out" : "engine");
    *out = NULL;
    const kiln_env *env = &e->env;
    kiln_context *c = kiln_calloc(env, 1, sizeof *c);
    if (!c) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "context create: out of host memory");
    atomic_fetch_add(&e->refs, 1);
    c->engine = e;
    c->bindings = kiln_calloc(env, (size_t)(e->nb_io ? e->nb_io : 1), sizeof(void *));
    c->ptrs = kiln_calloc(env, (size_t)(e->graph.nb_tensors ? e->graph.nb_tensors : 1), sizeof(void *));
    c->in_ptrs = kiln_calloc(env, (size_t)(e->max_inputs ? e->max_inputs : 1), sizeof(void *));
    c->out_ptrs = kiln_calloc(env, (size_t)(e->max_outputs ? e->max_outputs : 1), sizeof(void *));
    if (!c->bindings || !c->ptrs || !c->in_ptrs || !c->out_ptrs) {
        kiln_context_destroy(c);
        return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "context create: out of host memory");
    }
    kiln_status st = e->backend->ctx_create(e, &c->backend, &c->arena);
    if (st != KILN_OK) {
        kiln_context_destroy(c);
        return st;
    }
    *out = c;
    return KILN_OK;
}

kiln_status kiln_context_set_tensor_address(kiln_context *c, const char *name, void *address) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "set tensor address: context is NULL");
    int i;
    kiln_status st = io_lookup(c->engine, name, "set tensor address", &i);
    if (st != KILN_OK) return st;
    const kiln_engine *e = c->engine;
    if (!address && e->plan[e->io[i].tensor].bytes)
        return kiln_error(&e->env, KILN_ERR_INVALID_ARGUMENT, "set tensor address '%s': address is NULL", name);
    c->bindings[i] = address;
    return KILN_OK;
}

kiln_status kiln_context_synchronize(kiln_context *c) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "synchronize: context is NULL");
    return c->engine->backend->finish(c->backend);
}

kiln_status kiln_context_set_io_memory(kiln_context *c, kiln_memory_location where) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "set io memory: context is NULL");
    const kiln_engine *e = c->engine;
    if (where != KILN_MEMORY_DEVICE && where != KILN_MEMORY_HOST)
        return kiln_error(&e->env, KILN_ERR_INVALID_ARGUMENT, "set io memory: unknown location %d", (int)where);
    if (!e->backend->dev_alloc) return KILN_OK; /* host backend: nothing to stage */
    bool want = where == KILN_MEMORY_HOST;
    c->io_frozen = false;
    if (want == c->host_io) return KILN_OK;
    memset(c->bindings, 0, (size_t)e->nb_io * sizeof *c->bindings);
    c->host_io = want;
    if (!want || c->staging) return KILN_OK;
    c->staging = kiln_calloc(&e->env, (size_t)(e->nb_io ? e->nb_io : 1), sizeof(void *));
    if (!c->staging) return kiln_error(&e->env, KILN_ERR_OUT_OF_MEMORY, "set io memory: out of host memory");
    for (int i = 0; i < e->nb_io; i++) {
        size_t bytes = e->plan[e->io[i].tensor].bytes;
        kiln_status st = e->backend->dev_alloc(c->backend, bytes, &c->staging[i]);
        if (st != KILN_OK) return st;
    }
    return KILN_OK;
}

static kiln_status run_all(kiln_context *c);

static kiln_status upload_inputs(kiln_context *c) {
    const kiln_engine *e = c->engine;
    for (int i = 0; i < e->nb_io; i++) {
        size_t bytes = e->plan[e->io[i].tensor].bytes;
        if (e->io[i].mode != KILN_IO_INPUT || !bytes) continue;
        if (!c->bindings[i])
            return kiln_error(&e->env, KILN_ERR_INVALID_STATE, "input '%s' has no buffer bound", e->io[i].name);
        kiln_status st = e->backend->upload(c->backend, c->staging[i], c->bindings[i], bytes);
        if (st != KILN_OK) return st;
    }
    return KILN_OK;
}

kiln_status kiln_context_keep_io_on_device(kiln_context *c) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "keep io on device: context is NULL");
    const kiln_engine *e = c->engine;
    if (!e->backend->dev_alloc) return KILN_OK;
    if (!c->host_io)
        return kiln_error(&e->env, KILN_ERR_INVALID_STATE,
                          "keep io on device: set KILN_MEMORY_HOST and bind host buffers first");
    kiln_status st = e->backend->set_stream(c->backend, NULL);
    if (st == KILN_OK) st = upload_inputs(c);
    if (st == KILN_OK) st = e->backend->finish(c->backend);
    if (st == KILN_OK) c->io_frozen = true;
    return st;
}

kiln_status kiln_context_enqueue(kiln_context *c, void *stream) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "enqueue: context is NULL");
    kiln_status st = c->engine->backend->set_stream(c->backend, stream);
    if (st == KILN_OK) st = run_all(c);
    return st;
}

kiln_status kiln_context_execute(kiln_context *c) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "execute: context is NULL");
    kiln_status st = c->engine->backend->set_stream(c->backend, NULL);
    if (st == KILN_OK) st = run_all(c);
    if (st == KILN_OK) st = c->engine->backend->finish(c->backend);
    return st;
}

static kiln_status run_all(kiln_context *c) {
    const kiln_engine *e = c->engine;
    for (int i = 0; i < e->nb_io; i++)
        if (!c->bindings[i] && e->plan[e->io[i].tensor].bytes)
            return kiln_error(&e->env, KILN_ERR_INVALID_STATE, "execute: %s '%s' has no buffer bound",
                              e->io[i].mode == KILN_IO_INPUT ? "input" : "output", e->io[i].name);
    for (int t = 0; t < e->graph.nb_tensors; t++) {
        const ke_tensor_plan *p = &e->plan[t];
        switch (p->storage) {
        case KE_ARENA: c->ptrs[t] = c->arena ? (char *)c->arena + p->offset : NULL; break; /* no arena: all empty */
        case KE_INPUT:
        case KE_OUTPUT: c->ptrs[t] = c->host_io ? c->staging[p->io] : c->bindings[p->io]; break;
        case KE_CONST: c->ptrs[t] = (void *)p->cdata; break;
        }
    }
    if (c->host_io && !c->io_frozen) {
        kiln_status st = upload_inputs(c);
        if (st != KILN_OK) return st;
    }
    bool done = false;
    if (e->backend->run_begin) {
        kiln_status st =
            e->backend->run_begin(c->backend, c->ptrs, e->graph.nb_tensors, !c->profile && !c->probe && !c->no_graph,
                                  &done);
        if (st != KILN_OK) return st;
    }
    for (int n = 0; !done && n < e->nb_nodes; n++) {
        const ke_node *node = &e->nodes[n];
        if (node->skip) continue;
        const kiln_layer *l = node->layer;
        for (int k = 0; k < l->nb_inputs; k++) c->in_ptrs[k] = l->inputs[k] ? c->ptrs[l->inputs[k]->id] : NULL;
        for (int k = 0; k < l->nb_outputs; k++) c->out_ptrs[k] = c->ptrs[l->outputs[k]->id];
        double t0 = c->profile ? now_ms() : 0;
        kiln_status st = e->backend->run(c->backend, node, c->in_ptrs, c->out_ptrs);
        if (st == KILN_OK && c->profile) st = e->backend->finish(c->backend);
        if (st != KILN_OK) return st;
        if (c->profile) c->profile(c->profile_user, l->name, kiln_layer_type_name(l->type), now_ms() - t0);
        if (c->probe && (st = c->probe(c->probe_user, c, node, c->out_ptrs)) != KILN_OK) return st;
    }
    if (!done && e->backend->run_end) {
        kiln_status st = e->backend->run_end(c->backend);
        if (st != KILN_OK) return st;
    }
    for (int i = 0; c->host_io && !c->io_frozen && i < e->nb_io; i++) {
        size_t bytes = e->plan[e->io[i].tensor].bytes;
        if (e->io[i].mode != KILN_IO_OUTPUT || !bytes) continue;
        kiln_status st = e->backend->download(c->backend, c->bindings[i], c->staging[i], bytes);
        if (st != KILN_OK) return st;
    }
    return KILN_OK;
}

kiln_status ke_context_run_probed(kiln_context *c, ke_probe_fn fn, void *user) {
    c->probe = fn;
    c->probe_user = user;
    kiln_status st = kiln_context_execute(c);
    c->probe = NULL;
    c->probe_user = NULL;
    return st;
}

kiln_status ke_context_absmax(kiln_context *c, const void *src, size_t n, float *out) {
    const kiln_engine *e = c->engine;
    if (!e->backend->absmax) return KILN_ERR_UNSUPPORTED;
    return e->backend->absmax(c->backend, src, n, out);
}

kiln_status ke_context_read(kiln_context *c, void *dst, const void *src, size_t bytes) {
    const kiln_engine *e = c->engine;
    if (!bytes) return KILN_OK;
    if (!e->backend->download) {
        kiln_status st = e->backend->finish(c->backend);
        if (st == KILN_OK) memcpy(dst, src, bytes);
        return st;
    }
    kiln_status st = e->backend->download(c->backend, dst, src, bytes);
    return st == KILN_OK ? e->backend->finish(c->backend) : st;
}
