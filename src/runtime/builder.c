/* kiln: the builder. Build = copy the network, fix input shapes, infer and check every
 * layer, drop what no output needs, plan memory (views, in-place, lifetimes), then let
 * the backend prepare a kernel per layer. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/bytes.h"
#include "graph/ops.h"
#include "opt/memplan.h"
#include "opt/passes.h"
#include "runtime/backend.h"
#include "runtime/config.h"
#include "runtime/engine.h"

kiln_status kiln_builder_create(const kiln_builder_desc *desc, kiln_builder **out) {
    if (!out) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "builder create: out is NULL");
    *out = NULL;
    kiln_env env;
    kiln_env_default(&env);
    if (desc) {
        if (desc->size < sizeof(uint32_t) || desc->size > sizeof *desc)
            return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "builder create: desc.size %u is not sizeof(kiln_builder_desc) %zu",
                              desc->size, sizeof *desc);
        if (desc->log) {
            env.log = desc->log;
            env.log_user = desc->log_user;
        }
        env.level = desc->log_level;
        if (desc->allocator) {
            if (!desc->allocator->alloc || !desc->allocator->free)
                return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "builder create: allocator without alloc or free");
            env.alloc = *desc->allocator;
        }
    }
    kiln_builder *b = kiln_calloc(&env, 1, sizeof *b);
    if (!b) return kiln_error(&env, KILN_ERR_OUT_OF_MEMORY, "builder create: out of host memory");
    b->env = env;
    *out = b;
    return KILN_OK;
}

void kiln_builder_destroy(kiln_builder *b) {
    if (b) kiln_free(&b->env, b);
}

kiln_status kiln_network_create(kiln_builder *b, kiln_network **out) {
    if (!b || !out) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "network create: %s is NULL", b ? "out" : "builder");
    *out = NULL;
    kiln_network *n = kiln_calloc(&b->env, 1, sizeof *n);
    if (!n) return kiln_error(&b->env, KILN_ERR_OUT_OF_MEMORY, "network create: out of host memory");
    kg_graph_init(&n->g, &b->env);
    *out = n;
    return KILN_OK;
}

void kiln_network_destroy(kiln_network *net) {
    if (!net) return;
    kiln_env env = net->g.env;
    kg_graph_free(&net->g);
    kiln_free(&env, net);
}

/* ---- build steps ---- */

static kiln_status apply_input_shapes(kiln_graph *g, const kiln_config *cfg) {
    char a[128], b[128];
    for (int i = 0; i < cfg->nb_shapes; i++) {
        kiln_tensor *t = kg_find_tensor(g, cfg->shapes[i].name);
        if (!t || !t->is_input)
            return kiln_error(&g->env, KILN_ERR_NOT_FOUND, "config gives a shape for '%s', which is no network input",
                              cfg->shapes[i].name);
        const kiln_dims *want = &cfg->shapes[i].dims;
        bool ok = want->nb_dims == t->dims.nb_dims;
        for (int k = 0; ok && k < want->nb_dims; k++) ok = t->dims.d[k] == -1 || t->dims.d[k] == want->d[k];
        if (!ok)
            return kiln_error(&g->env, KILN_ERR_SHAPE, "input '%s': config shape %s does not fit the declared %s",
                              t->name, kiln_dims_str(want, a, sizeof a), kiln_dims_str(&t->dims, b, sizeof b));
        t->dims = *want;
    }
    for (int i = 0; i < g->nb_inputs; i++) {
        kiln_tensor *t = g->inputs[i];
        if (!kiln_dims_known(&t->dims))
            return kiln_error(&g->env, KILN_ERR_SHAPE,
                              "input '%s' has shape %s: give its dimensions with kiln_config_set_input_shape", t->name,
                              kiln_dims_str(&t->dims, a, sizeof a));
    }
    return KILN_OK;
}

/* Marks the layers some network output depends on. */
static void mark_live(const kiln_graph *g, bool *live) {
    memset(live, 0, (size_t)g->nb_layers * sizeof *live);
    for (int i = 0; i < g->nb_outputs; i++)
        if (g->outputs[i]->producer) live[g->outputs[i]->producer->id] = true;
    for (int i = g->nb_layers - 1; i >= 0; i--) {
        if (!live[i]) continue;
        const kiln_layer *l = g->layers[i];
        for (int k = 0; k < l->nb_inputs; k++)
            if (l->inputs[k] && l->inputs[k]->producer) live[l->inputs[k]->producer->id] = true;
    }
}


kiln_status ke_check_tensor_sizes(const kiln_graph *g, const kiln_env *env) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double limit = pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
    for (int i = 0; limit > 0 && i < g->nb_tensors; i++) {
        const kiln_tensor *t = g->tensors[i];
        double bytes = (double)kiln_dtype_size(kg_storage(t));
        bool known = t->dims.nb_dims >= 0;
        for (int d = 0; known && d < t->dims.nb_dims; d++) {
            known = t->dims.d[d] >= 0; /* a dimension left symbolic is checked at run time */
            bytes *= (double)t->dims.d[d];
        }
        if (known && bytes > limit) {
            char dims[128];
            return kiln_error(env, KILN_ERR_OUT_OF_MEMORY,
                              "tensor '%s' (%s %s) needs %.1f GiB, more than this machine's %.1f GiB of memory", t->name,
                              kiln_dtype_name(t->dtype), kiln_dims_str(&t->dims, dims, sizeof dims), bytes / 1073741824.0,
                              limit / 1073741824.0);
        }
    }
    return KILN_OK;
}

/* Whether input x of concat node n can live in the concat output's storage: an arena
 * tensor of the output's format and storage type, sharing its storage with nothing else,
 * written by a layer that runs, read by nothing after the concat, and not an earlier
 * input of the same concat. */
static bool concat_input_free(const kiln_engine *e, const int *root, const int *last, int n, int k) {
    const kiln_graph *g = &e->graph;
    const kiln_layer *l = e->nodes[n].layer;
    const kiln_tensor *x = l->inputs[k], *out = l->outputs[0];
    bool ok = x && x->format == out->format && kg_storage(x) == kg_storage(out) && e->plan[x->id].storage == KE_ARENA &&
              root[x->id] == x->id && x->producer && last[x->id] == n && x->pitch == 0;
    for (int j = 0; ok && j < k; j++) ok = l->inputs[j] != x;
    for (int t = 0; ok && t < g->nb_tensors; t++) ok = t == x->id || root[t] != x->id;
    for (int m = 0; ok && m < e->nb_nodes; m++) /* written by a layer that runs */
        if (e->nodes[m].layer == x->producer) ok = !e->nodes[m].skip;
    return ok;
}

/* Channels-last concat along channels: input x becomes channels [c, c + x's) of every
 * pixel of the output (x->pitch = the output's channel count), when the backend's kernels
 * for x's producer and for every other layer reading x take such a tensor. */
static bool concat_slice_ok(const kiln_engine *e, int n, const kiln_tensor *x) {
    if (!e->backend->pitch_ok || !e->backend->pitch_ok(x->producer, x)) return false;
    for (int m = 0; m < e->nb_nodes; m++) {
        const kiln_layer *r = e->nodes[m].layer;
        if (m == n) continue;
        for (int k = 0; k < r->nb_inputs; k++)
            if (r->inputs[k] == x && (e->nodes[m].skip || !e->backend->pitch_ok(r, x))) return false;
    }
    return true;
}

/* Concat without a copy, in two forms. Row-major with every dimension before the axis 1:
 * each input is a contiguous piece of the output. Channels-last along channels: each
 * input is a channel slice of every pixel (a pitched tensor, see concat_slice_ok). Each
 * input is then placed in the output (root = the output, sub = its byte offset there), so
 * its producer writes the output directly; the concat itself runs nothing once every
 * input is placed (all or none: a partly placed concat would still have to copy). Pieces
 * must keep the arena's alignment. Returns the number of concats made free. */
static int place_concat_inputs(kiln_engine *e, int *root, size_t *sub, const int *last) {
    int placed = 0;
    const char *env = getenv("KILN_CONCAT_SLICES"); /* =off: A/B runs */
    bool slices_on = !(env && !strcmp(env, "off"));
    for (int n = 0; n < e->nb_nodes; n++) {
        ke_node *node = &e->nodes[n];
        const kiln_layer *l = node->layer;
        if (l->type != KILN_LAYER_CONCAT || node->skip || l->nb_inputs < 1) continue;
        kiln_tensor *out = l->outputs[0];
        int o = out->id, rank = out->dims.nb_dims, axis = kg_axis(l->p.axis.axis, rank);
        if (axis < 0 || e->plan[o].storage != KE_ARENA || root[o] != o || out->pitch) continue;
        int64_t outer = 1;
        for (int d = 0; d < axis; d++) outer *= out->dims.d[d];
        bool linear = out->format == KG_FORMAT_LINEAR && outer == 1;
        bool slices = slices_on && out->format == KG_FORMAT_NHWC && rank == 4 && axis == 1;
        if (!linear && !slices) continue;
        size_t es = kiln_dtype_size(kg_storage(out)), at = 0;
        bool ok = true;
        for (int k = 0; ok && k < l->nb_inputs; k++) {
            const kiln_tensor *x = l->inputs[k];
            ok = concat_input_free(e, root, last, n, k) && at % (slices ? 16 : KILN_ALIGN) == 0;
            if (ok && slices) ok = concat_slice_ok(e, n, x);
            at += !ok ? 0 : linear ? e->plan[x->id].bytes : (size_t)x->dims.d[1] * es;
        }
        if (!ok || at != (linear ? e->plan[o].bytes : (size_t)out->dims.d[1] * es) || (slices && at % 16)) continue;
        at = 0;
        for (int k = 0; k < l->nb_inputs; k++) {
            kiln_tensor *x = l->inputs[k];
            root[x->id] = o;
            sub[x->id] = at;
            if (slices) x->pitch = out->dims.d[1];
            at += linear ? e->plan[x->id].bytes : (size_t)x->dims.d[1] * es;
        }
        node->skip = true;
        placed++;
    }
    return placed;
}

/* Decides where every tensor lives. root[t] is the tensor whose storage t shares. */
static kiln_status plan_memory(kiln_engine *e, const kiln_config *cfg) {
    kiln_graph *g = &e->graph;
    const kiln_env *env = &e->env;
    int nt = g->nb_tensors, nn = e->nb_nodes;
    int *root = kiln_alloc(env, (size_t)nt * sizeof(int));
    int *first = kiln_alloc(env, (size_t)nt * sizeof(int));
    int *last = kiln_alloc(env, (size_t)nt * sizeof(int));
    kmp_buffer *bufs = kiln_alloc(env, (size_t)nt * sizeof *bufs);
    size_t *offs = kiln_alloc(env, (size_t)nt * sizeof *offs);
    int *buf_of = kiln_alloc(env, (size_t)nt * sizeof(int));
    size_t *sub = kiln_calloc(env, (size_t)(nt ? nt : 1), sizeof *sub);
    kiln_status st = KILN_OK;
    if (!root || !first || !last || !bufs || !offs || !buf_of || !sub) {
        st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory planning activation memory");
        goto done;
    }
    for (int t = 0; t < nt; t++) {
        root[t] = t;
        first[t] = -1;
        last[t] = -1;
        buf_of[t] = -1;
        e->plan[t].bytes = kg_tensor_bytes(g->tensors[t]);
        e->plan[t].storage = KE_ARENA;
    }
    for (int i = 0; i < e->nb_io; i++) {
        ke_tensor_plan *p = &e->plan[e->io[i].tensor];
        p->storage = e->io[i].mode == KILN_IO_INPUT ? KE_INPUT : KE_OUTPUT;
        p->io = i;
    }
    /* lifetimes in node steps */
    for (int n = 0; n < nn; n++) {
        const kiln_layer *l = e->nodes[n].layer;
        for (int k = 0; k < l->nb_inputs; k++)
            if (l->inputs[k]) last[l->inputs[k]->id] = n;
        for (int k = 0; k < l->nb_outputs; k++) {
            first[l->outputs[k]->id] = n;
            if (last[l->outputs[k]->id] < n) last[l->outputs[k]->id] = n;
        }
    }
    /* constants, views and in-place: outputs that share storage with something else */
    for (int n = 0; n < nn; n++) {
        ke_node *node = &e->nodes[n];
        const kiln_layer *l = node->layer;
        int out = l->outputs[0]->id;
        if (e->plan[out].storage != KE_ARENA) continue; /* a network output keeps its own buffer */
        if (l->type == KILN_LAYER_CONSTANT) {
            e->plan[out].storage = KE_CONST;
            node->skip = true;
            continue;
        }
        unsigned flags = kg_ops[l->type].flags;
        if (l->nb_inputs < 1 || !l->inputs[0]) continue;
        int in = l->inputs[0]->id, r = root[in];
        if (flags & KG_OP_VIEW) {
            root[out] = r;
            node->skip = true;
        } else if ((flags & KG_OP_INPLACE) && e->plan[r].storage == KE_ARENA &&
                   e->plan[out].bytes == e->plan[in].bytes && l->outputs[0]->dtype == l->inputs[0]->dtype &&
                   kg_storage(l->outputs[0]) == kg_storage(l->inputs[0]) && l->outputs[0]->format == l->inputs[0]->format) {
            /* in place only if nothing reads the shared storage after this step */
            int group_last = -1;
            for (int t = 0; t < nt; t++)
                if (root[t] == r && last[t] > group_last) group_last = last[t];
            if (group_last <= n) root[out] = r;
        }
    }
    /* not in the FP16 range probe's engine: it must run (and probe) every layer the real
     * engine may run, and an FP16 engine's channels-last concats do copy */
    int free_concats = e->untimed ? 0 : place_concat_inputs(e, root, sub, last);
    if (free_concats)
        kiln_log(env, KILN_LOG_VERBOSE, "memory plan: %d concats need no copy (their inputs are written in place)",
                 free_concats);
    /* one arena buffer per root living in the arena, spanning its group's lifetimes */
    int nb = 0;
    for (int t = 0; t < nt; t++) {
        int r = root[t];
        if (e->plan[r].storage != KE_ARENA || first[t] < 0) continue;
        if (buf_of[r] < 0) {
            buf_of[r] = nb;
            bufs[nb].bytes = e->plan[r].bytes;
            bufs[nb].first = first[t];
            bufs[nb].last = last[t];
            nb++;
        } else {
            kmp_buffer *b = &bufs[buf_of[r]];
            if (first[t] < b->first) b->first = first[t];
            if (last[t] > b->last) b->last = last[t];
        }
    }
    /* tensors no running layer writes (left behind by folding, or of dead layers) take no memory */
    for (int t = 0; t < nt; t++)
        if (first[t] < 0 && e->plan[t].storage == KE_ARENA) e->plan[t].bytes = 0;
    st = kmp_plan(env, bufs, nb, KILN_ALIGN, offs, &e->arena_bytes);
    if (st != KILN_OK) goto done;
    for (int t = 0; t < nt; t++) {
        int r = root[t];
        ke_tensor_plan *p = &e->plan[t];
        if (r != t) {
            size_t bytes = p->bytes;
            *p = e->plan[r];
            p->bytes = bytes;
        }
        p->root = r;
        if (p->storage == KE_ARENA) p->offset = (buf_of[r] >= 0 ? offs[buf_of[r]] : 0) + sub[t];
    }
    if (cfg->memory_limit && e->arena_bytes > cfg->memory_limit)
        st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY,
                        "the network needs %zu bytes of activation memory, over the configured limit of %zu",
                        e->arena_bytes, cfg->memory_limit);
done:
    kiln_free(env, root);
    kiln_free(env, first);
    kiln_free(env, last);
    kiln_free(env, bufs);
    kiln_free(env, offs);
    kiln_free(env, buf_of);
    kiln_free(env, sub);
    return st;
}

static void kernels_progress(const void *user, int done, int total) {
    kc_progress(user, "kernels", done, total);
}

/* Prepares every node's kernel, with the timing cache when the config names one (not for
 * a range probe, whose kernels are untimed). */
static kiln_status prepare_kernels(kiln_engine *e, const kiln_config *cfg, bool probe) {
    ke_tcache *cache = NULL;
    if (cfg->timing_cache && e->backend->tactic && !probe) {
        cache = ke_tcache_open(&e->env, cfg->timing_cache);
        if (!cache) return KILN_ERR_OUT_OF_MEMORY;
    }
    kiln_status st = ke_prepare_nodes(e, cache, false, probe ? NULL : kernels_progress, cfg);
    if (st == KILN_OK) (void)ke_tcache_save(cache); /* a failure only warns: the engine is fine */
    ke_tcache_close(cache);
    return st;
}

static kiln_status add_io(kiln_engine *e, kiln_tensor *t, kiln_io_mode mode) {
    for (int i = 0; i < e->nb_io; i++)
        if (strcmp(e->io[i].name, t->name) == 0)
            return kiln_error(&e->env, KILN_ERR_INVALID_ARGUMENT,
                              "tensor '%s' is both a network input and an output: add an identity layer to copy it",
                              t->name);
    e->io[e->nb_io].name = t->name;
    e->io[e->nb_io].tensor = t->id;
    e->io[e->nb_io].mode = mode;
    e->nb_io++;
    return KILN_OK;
}

/* Builds an engine from a copy of `src`: the whole pipeline of kiln_builder_build with
 * these flags, extra layers pinned to float32, and (probe) untimed kernels, no cache. */
static double build_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Where a build's time went, for the verbose log line (milliseconds). */
typedef struct build_times {
    double optimize, memory, kernels;
} build_times;

static kiln_status build_engine(kiln_builder *b, const kiln_graph *src, const kiln_config *cfg, unsigned flags,
                                char *const *extra_fp32, int nb_extra, bool probe, kiln_engine **out,
                                build_times *bt) {
    double t0 = build_now_ms();
    const kiln_env *env = &b->env;
    kiln_status why = KILN_ERR_UNSUPPORTED;
    const kb_backend *backend = kb_backend_for(env, cfg->device, &why);
    if (!backend) return why;

    kiln_engine *e = kiln_calloc(env, 1, sizeof *e);
    if (!e) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "build: out of host memory");
    e->env = *env;
    atomic_init(&e->refs, 1);
    e->device = cfg->device;
    e->backend = backend;
    ke_fill_fingerprint(e);
    e->threads = cfg->threads > 0 ? cfg->threads : 0;
    e->flags = flags;
    e->untimed = probe;
    kiln_status st = kg_graph_clone(src, env, &e->graph);
    if (st != KILN_OK) {
        kiln_free(env, e);
        return st;
    }
    kiln_graph *g = &e->graph;
    bool *live = NULL;

    st = apply_input_shapes(g, cfg);
    for (int i = 0; st == KILN_OK && i < cfg->nb_pins; i++) {
        bool found = false;
        for (int k = 0; k < g->nb_layers; k++)
            if (strcmp(g->layers[k]->name, cfg->pins[i].name) == 0) {
                g->layers[k]->pin_fp32 = cfg->pins[i].dims.d[0] == KILN_FLOAT32;
                found = true;
            }
        if (!found)
            st = kiln_error(env, KILN_ERR_NOT_FOUND, "config pins the precision of layer '%s', which the network does not have",
                            cfg->pins[i].name);
    }
    for (int i = 0; st == KILN_OK && i < nb_extra; i++) /* the range probe's: float32 */
        for (int k = 0; k < g->nb_layers; k++)
            if (strcmp(g->layers[k]->name, extra_fp32[i]) == 0 && !g->layers[k]->pin_fp32) {
                /* float32 for its range only: TF32 math keeps that range with FP16's
                 * 10-bit mantissa, which the FP16 build accepted; the algorithms stay
                 * those of strict float32 (no FFT, no down-conversion: kcu_build.loose) */
                g->layers[k]->pin_fp32 = true;
                g->layers[k]->tf32_ok = true;
            }
    for (int i = 0; st == KILN_OK && i < g->nb_layers; i++) {
        kc_progress(cfg, "check", i, g->nb_layers);
        st = kg_infer_layer(g->layers[i]);
    }
    kc_progress(cfg, "check", g->nb_layers, g->nb_layers);
    if (st == KILN_OK) st = ke_check_tensor_sizes(g, env);
    if (st == KILN_OK) {
        kc_progress(cfg, "optimize", 0, 0);
        kopt_options opt = {backend->can_fuse_act, (flags >> KILN_FLAG_REFIT) & 1u, backend->can_fuse_residual,
                            backend->layer_format, flags,
                            backend->fuse_regions};
        st = kopt_run(g, &opt);
    }
    if (st != KILN_OK) goto fail;

    e->io = kiln_calloc(env, (size_t)(g->nb_inputs + g->nb_outputs), sizeof *e->io);
    e->plan = kiln_calloc(env, (size_t)(g->nb_tensors ? g->nb_tensors : 1), sizeof *e->plan);
    live = kiln_alloc(env, (size_t)(g->nb_layers ? g->nb_layers : 1) * sizeof *live);
    e->nodes = kiln_calloc(env, (size_t)(g->nb_layers ? g->nb_layers : 1), sizeof *e->nodes);
    if (!e->io || !e->plan || !live || !e->nodes) {
        st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "build: out of host memory");
        goto fail;
    }
    for (int i = 0; st == KILN_OK && i < g->nb_inputs; i++) st = add_io(e, g->inputs[i], KILN_IO_INPUT);
    for (int i = 0; st == KILN_OK && i < g->nb_outputs; i++) st = add_io(e, g->outputs[i], KILN_IO_OUTPUT);
    if (st != KILN_OK) goto fail;

    mark_live(g, live);
    for (int i = 0; i < g->nb_layers; i++) {
        if (!live[i]) continue;
        kiln_layer *l = g->layers[i];
        e->nodes[e->nb_nodes++].layer = l;
        if (l->nb_inputs > e->max_inputs) e->max_inputs = l->nb_inputs;
        if (l->nb_outputs > e->max_outputs) e->max_outputs = l->nb_outputs;
    }
    kc_progress(cfg, "optimize", 1, 1);
    kc_progress(cfg, "plan memory", 0, 0);
    double t1 = build_now_ms();
    st = plan_memory(e, cfg);
    kc_progress(cfg, "plan memory", 1, 1);
    double t2 = build_now_ms();
    if (st == KILN_OK) st = prepare_kernels(e, cfg, probe);
    if (st != KILN_OK) goto fail;
    *bt = (build_times){t1 - t0, t2 - t1, build_now_ms() - t2};
    kiln_free(env, live);
    kiln_log(env, KILN_LOG_INFO, "built engine: %d layers, %zu bytes of activation memory", e->nb_nodes,
             e->arena_bytes);
    *out = e;
    return KILN_OK;
fail:
    kiln_free(env, live);
    ke_engine_release(e);
    return st;
}

/* ---- float16 range check ----
 * Before a float16 build for a device, the network is built in float32 with untimed
 * kernels and run once on standard-normal inputs, layer by layer; every layer that
 * writes or reads values beyond KC_FP16_SAFE is then kept in float32 in the real build
 * (a float16 reformat in front of a reader would overflow just the same). */

#define KC_FP16_SAFE 16384.0f /* a quarter of float16's largest, 65504: headroom for other inputs */

typedef struct range_probe {
    bool *big;     /* per tensor of the probe engine */
    float *host;   /* a host copy of one output (host_bytes, allocated when first needed) */
    size_t host_bytes;
    bool device_max; /* the backend reduces on the device (until it says it cannot) */
    const kiln_env *env;
} range_probe;

static kiln_status probe_node(void *user, kiln_context *c, const ke_node *node, void *const *outs) {
    range_probe *rp = user;
    const kiln_layer *l = node->layer;
    for (int k = 0; k < l->nb_outputs; k++) {
        const kiln_tensor *t = l->outputs[k];
        size_t bytes = kg_tensor_bytes(t);
        if (t->dtype != KILN_FLOAT32 || !bytes || !outs[k] || bytes > rp->host_bytes) continue;
        size_t n = bytes / sizeof(float);
        float m = 0.0f;
        /* on the device where the backend can (a GPU: no gigabytes through PCIe at large
         * batches), else a host copy scanned here */
        kiln_status st = rp->device_max ? ke_context_absmax(c, outs[k], n, &m) : KILN_ERR_UNSUPPORTED;
        if (st == KILN_OK) {
            rp->big[t->id] = !(m <= KC_FP16_SAFE); /* NaN, Inf too */
            continue;
        }
        if (st != KILN_ERR_UNSUPPORTED) return st;
        rp->device_max = false;
        if (!rp->host && !(rp->host = kiln_alloc(rp->env, rp->host_bytes)))
            return kiln_error(rp->env, KILN_ERR_OUT_OF_MEMORY, "range check: out of host memory (%zu bytes)",
                              rp->host_bytes);
        st = ke_context_read(c, rp->host, outs[k], bytes);
        if (st != KILN_OK) return st;
        bool big = false;
        for (size_t i = 0; i < n && !big; i++) big = !(fabsf(rp->host[i]) <= KC_FP16_SAFE); /* NaN, Inf too */
        rp->big[t->id] = big;
    }
    return KILN_OK;
}

/* Deterministic standard-normal values (Box-Muller over a 64-bit LCG). */
static void normal_fill(float *x, size_t n, uint64_t *state) {
    for (size_t i = 0; i < n; i += 2) {
        double u[2];
        for (int k = 0; k < 2; k++) {
            *state = *state * 6364136223846793005ull + 1442695040888963407ull;
            u[k] = ((double)(*state >> 11) + 0.5) / 9007199254740992.0;
        }
        double r = sqrt(-2.0 * log(u[0])), a = 6.283185307179586 * u[1];
        x[i] = (float)(r * cos(a));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(a));
    }
}

/* The range probe's log: errors become verbose lines of the builder's log. */
static void probe_log(void *user, kiln_log_level level, const char *msg) {
    kiln_log(user, level == KILN_LOG_ERROR ? KILN_LOG_VERBOSE : level, "%s", msg);
}

/* Runs the float32 probe engine once; *names (malloc'd by env, each string too) gets the
 * layers to keep in float32. */
static kiln_status probe_ranges(kiln_engine *pe, char ***names, int *count) {
    const kiln_env *env = &pe->env;
    *names = NULL;
    *count = 0;
    range_probe rp = {0};
    rp.device_max = true;
    rp.env = env;
    size_t biggest = 0;
    for (int t = 0; t < pe->graph.nb_tensors; t++) {
        size_t bytes = kg_tensor_bytes(pe->graph.tensors[t]);
        if (bytes > biggest) biggest = bytes;
    }
    rp.big = kiln_calloc(env, (size_t)(pe->graph.nb_tensors ? pe->graph.nb_tensors : 1), sizeof(bool));
    rp.host_bytes = biggest; /* rp.host: made on first use, only where the backend cannot reduce */
    void **io = kiln_calloc(env, (size_t)(pe->nb_io ? pe->nb_io : 1), sizeof(void *));
    kiln_context *c = NULL;
    kiln_status st = rp.big && io ? KILN_OK : kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "range check: out of host memory");
    if (st == KILN_OK) st = kiln_context_create(pe, &c);
    if (st == KILN_OK) st = kiln_context_set_io_memory(c, KILN_MEMORY_HOST);
    uint64_t seed = 0x6b696c6eull;
    for (int i = 0; st == KILN_OK && i < pe->nb_io; i++) {
        size_t bytes = pe->plan[pe->io[i].tensor].bytes;
        io[i] = kiln_calloc(env, bytes ? bytes : 1, 1); /* non-float inputs (indices): zeros */
        if (!io[i]) st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "range check: out of host memory");
        else if (pe->io[i].mode == KILN_IO_INPUT && pe->graph.tensors[pe->io[i].tensor]->dtype == KILN_FLOAT32)
            normal_fill(io[i], bytes / sizeof(float), &seed);
        if (st == KILN_OK) st = kiln_context_set_tensor_address(c, pe->io[i].name, io[i]);
    }
    if (st == KILN_OK) st = ke_context_run_probed(c, probe_node, &rp);
    /* constants are not run either: a big one (weights a GEMM reads as a tensor) would
     * overflow when stored as float16 */
    for (int n = 0; st == KILN_OK && n < pe->nb_nodes; n++) {
        const kiln_layer *l = pe->nodes[n].layer;
        if (l->type != KILN_LAYER_CONSTANT) continue;
        st = probe_node(&rp, c, &pe->nodes[n], (void *const[]){(void *)pe->plan[l->outputs[0]->id].cdata});
    }
    /* views (reshape, flatten) are not run: they carry their input's values */
    for (int n = 0; st == KILN_OK && n < pe->nb_nodes; n++) {
        const kiln_layer *l = pe->nodes[n].layer;
        if (!pe->nodes[n].skip || l->type == KILN_LAYER_CONSTANT || l->nb_inputs < 1 || !l->inputs[0]) continue;
        if (rp.big[l->inputs[0]->id])
            for (int k = 0; k < l->nb_outputs; k++) rp.big[l->outputs[k]->id] = true;
    }
    /* a layer that writes or reads a big tensor stays float32 */
    int cap = 0;
    char list[512] = "";
    for (int n = 0; st == KILN_OK && n < pe->nb_nodes; n++) {
        const kiln_layer *l = pe->nodes[n].layer;
        bool big = false;
        for (int k = 0; k < l->nb_outputs; k++) big |= rp.big[l->outputs[k]->id];
        for (int k = 0; k < l->nb_inputs; k++) big |= l->inputs[k] && rp.big[l->inputs[k]->id];
        if (!big || pe->nodes[n].skip || l->type == KILN_LAYER_CONSTANT) continue;
        char *name = kiln_strdup(env, l->name);
        if (!name || !kiln_grow(env, (void **)names, &cap, *count + 1, sizeof **names)) {
            kiln_free(env, name);
            st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "range check: out of host memory");
            break;
        }
        (*names)[(*count)++] = name;
        size_t at = strlen(list);
        if (at < sizeof list - 64) snprintf(list + at, sizeof list - at, "%s%s", at ? ", " : "", l->name);
    }
    if (st == KILN_OK && *count)
        kiln_log(env, KILN_LOG_WARNING,
                 "fp16: %d layers kept in float32: their values pass +-%.0f on standard-normal inputs, beyond what "
                 "float16 holds safely (%s%s)",
                 *count, (double)KC_FP16_SAFE, list, strlen(list) >= sizeof list - 64 ? ", ..." : "");
    kiln_context_destroy(c);
    for (int i = 0; io && i < pe->nb_io; i++) kiln_free(env, io[i]);
    kiln_free(env, io);
    kiln_free(env, rp.big);
    kiln_free(env, rp.host);
    return st;
}

/* ---- the range check's result in the timing cache ----
 * The check depends on the network (structure, weights, input shapes), the config's pins,
 * the build flags and the device and libraries: the key holds all of them (the weights as
 * a CRC-32 and their size), the value the names of the layers kept in float32. A rebuild
 * of the same network with the same cache then skips the float32 probe build and run. */

#define RC_KEY_MAGIC "kiln fp16 range check 1"

static void rc_describe(kb_writer *w, const kiln_graph *g, const kiln_config *cfg) {
    kbw_u32(w, (uint32_t)cfg->nb_shapes);
    for (int i = 0; i < cfg->nb_shapes; i++) {
        kbw_str(w, cfg->shapes[i].name);
        kbw_u32(w, (uint32_t)cfg->shapes[i].dims.nb_dims);
        for (int d = 0; d < cfg->shapes[i].dims.nb_dims; d++) kbw_i64(w, cfg->shapes[i].dims.d[d]);
    }
    kbw_u32(w, (uint32_t)cfg->nb_pins);
    for (int i = 0; i < cfg->nb_pins; i++) {
        kbw_str(w, cfg->pins[i].name);
        kbw_i64(w, cfg->pins[i].dims.d[0]);
    }
    kbw_u32(w, (uint32_t)g->nb_tensors);
    for (int t = 0; t < g->nb_tensors; t++) {
        const kiln_tensor *x = g->tensors[t];
        kbw_str(w, x->name);
        kbw_u32(w, (uint32_t)x->dtype);
        kbw_u8(w, (uint8_t)((x->is_input ? 1 : 0) | (x->is_output ? 2 : 0)));
        kbw_u32(w, (uint32_t)x->dims.nb_dims);
        for (int d = 0; d < x->dims.nb_dims; d++) kbw_i64(w, x->dims.d[d]);
    }
    kbw_u32(w, (uint32_t)g->nb_layers);
    uint32_t crc = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        const kiln_layer *l = g->layers[i];
        kbw_str(w, l->name);
        kbw_u32(w, (uint32_t)l->type);
        kbw_bytes(w, &l->p, sizeof l->p);
        kbw_u32(w, (uint32_t)l->nb_inputs);
        for (int k = 0; k < l->nb_inputs; k++) kbw_u32(w, l->inputs[k] ? (uint32_t)l->inputs[k]->id : UINT32_MAX);
        kbw_u32(w, (uint32_t)l->nb_outputs);
        for (int k = 0; k < l->nb_outputs; k++) kbw_u32(w, (uint32_t)l->outputs[k]->id);
        kbw_u32(w, (uint32_t)l->nb_aux);
        for (int k = 0; k < l->nb_aux; k++) kbw_i64(w, l->aux[k]);
        kbw_u8(w, (uint8_t)((l->has_post_act ? 1 : 0) | (l->res_after_act ? 2 : 0) | (l->removed ? 4 : 0)));
        kbw_u32(w, (uint32_t)l->post_act.type);
        kbw_f32(w, l->post_act.alpha);
        kbw_f32(w, l->post_act.beta);
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
            const kiln_weights *wt = &l->w[k];
            size_t n = wt->count > 0 && wt->values ? (size_t)wt->count * kiln_dtype_size(wt->dtype) : 0;
            kbw_u32(w, (uint32_t)wt->dtype);
            kbw_i64(w, wt->count);
            if (n) crc = kiln_crc32(crc, wt->values, n);
            bytes += n;
        }
    }
    kbw_u32(w, crc);
    kbw_u64(w, bytes);
}


/* The key: what the check depends on, the network's description digested (a key may not
 * exceed the cache's 64 KiB; YOLOv5s' description is 113 KiB): its size, CRC-32 and
 * FNV-1a 64. */
static void rc_key(kb_writer *w, const kiln_graph *g, const kiln_config *cfg, const kb_backend *backend, unsigned pf) {
    char fp[512];
    if (backend->fingerprint) backend->fingerprint(&g->env, fp, sizeof fp);
    else snprintf(fp, sizeof fp, "device=%s;", backend->name);
    kb_writer d = {.env = w->env};
    rc_describe(&d, g, cfg);
    kbw_str(w, RC_KEY_MAGIC);
    kbw_str(w, kiln_version()); /* another kiln may probe differently */
    kbw_f32(w, KC_FP16_SAFE);
    kbw_str(w, backend->name);
    kbw_str(w, fp);
    kbw_u32(w, pf);
    kbw_u64(w, d.size);
    kbw_u32(w, kiln_crc32(0, d.data, d.size));
    kbw_u64(w, kiln_fnv1a64(d.data, d.size));
    w->oom |= d.oom;
    kiln_free(w->env, d.data);
}

/* The value: u32 layer count, then a bit per layer of the network (in its order), set
 * for the layers kept in float32; names of no layer of the network (none are expected)
 * are dropped, as the build would ignore them. */

/* The cached result for key: true with the names (allocated) when found and well formed. */
static bool rc_lookup(const kiln_env *env, ke_tcache *c, const kb_writer *key, const kiln_graph *g, char ***names,
                      int *count) {
    size_t len = 0;
    const uint8_t *v = ke_tcache_get(c, key->data, key->size, &len);
    uint32_t nl = (uint32_t)g->nb_layers;
    if (!v || len != 4 + ((size_t)nl + 7) / 8) return false;
    if (((uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24) != nl) return false;
    int n = 0;
    for (uint32_t i = 0; i < nl; i++) n += (v[4 + i / 8] >> (i % 8)) & 1;
    char **out = n ? kiln_calloc(env, (size_t)n, sizeof *out) : NULL;
    if (n && !out) return false;
    int got = 0;
    for (uint32_t i = 0; i < nl && got < n; i++) {
        if (!((v[4 + i / 8] >> (i % 8)) & 1)) continue;
        size_t sl = strlen(g->layers[i]->name);
        if (!(out[got] = kiln_alloc(env, sl + 1))) break;
        memcpy(out[got++], g->layers[i]->name, sl + 1);
    }
    if (got != n) {
        for (int i = 0; i < got; i++) kiln_free(env, out[i]);
        kiln_free(env, out);
        return false;
    }
    *names = out;
    *count = n;
    return true;
}

/* Stores a result; a network too large for an entry's value is not stored (the check
 * runs again next time). */
static bool rc_store(ke_tcache *c, const kb_writer *key, const kiln_graph *g, char *const *names, int count) {
    uint8_t v[KE_TACTIC_MAX] = {0};
    uint32_t nl = (uint32_t)g->nb_layers;
    size_t len = 4 + ((size_t)nl + 7) / 8;
    if (len > sizeof v) return false;
    v[0] = (uint8_t)nl, v[1] = (uint8_t)(nl >> 8), v[2] = (uint8_t)(nl >> 16), v[3] = (uint8_t)(nl >> 24);
    for (uint32_t i = 0; i < nl; i++)
        for (int k = 0; k < count; k++)
            if (!strcmp(g->layers[i]->name, names[k])) {
                v[4 + i / 8] |= (uint8_t)(1u << (i % 8));
                break;
            }
    return ke_tcache_put(c, key->data, key->size, v, len);
}

kiln_status kiln_builder_build(kiln_builder *b, kiln_network *net, const kiln_config *cfg, kiln_engine **out) {
    if (out) *out = NULL;
    if (!b || !net || !cfg || !out)
        return kiln_error(b ? &b->env : NULL, KILN_ERR_INVALID_ARGUMENT, "build: %s is NULL",
                          !b ? "builder" : !net ? "network" : !cfg ? "config" : "out");
    const kiln_env *env = &b->env;
    if (net->built)
        return kiln_error(env, KILN_ERR_INVALID_STATE,
                          "build: this network was already built once (its borrowed weights may be gone); "
                          "define a new network to build again");
    if (net->g.nb_outputs == 0) return kiln_error(env, KILN_ERR_INVALID_STATE, "build: no network output is marked");
    kiln_status why = KILN_ERR_UNSUPPORTED;
    const kb_backend *backend = kb_backend_for(env, cfg->device, &why);
    if (!backend) return why;
    char **pins = NULL;
    int nb_pins = 0;
    unsigned flags = cfg->flags;
    double t0 = build_now_ms(), probe_build = 0, probe_run = 0;
    build_times pbt = {0}, bt = {0};
    bool rc_cached = false;
    if ((flags >> KILN_FLAG_FP16) & 1u && backend->layer_format && !((flags >> KILN_FLAG_NO_RANGE_CHECK) & 1u)) {
        kc_progress(cfg, "range check", 0, 0);
        kiln_engine *pe = NULL;
        unsigned pf = flags & ~(1u << KILN_FLAG_FP16) & ~(1u << KILN_FLAG_TF32);
        /* a result the timing cache remembers for this very network, config and device */
        ke_tcache *cache = cfg->timing_cache && backend->tactic ? ke_tcache_open(env, cfg->timing_cache) : NULL;
        kb_writer key = {.env = env};
        if (cache) rc_key(&key, &net->g, cfg, backend, pf);
        rc_cached = cache && !key.oom && rc_lookup(env, cache, &key, &net->g, &pins, &nb_pins);
        if (rc_cached) {
            kiln_log(env, KILN_LOG_VERBOSE, "fp16 range check: the timing cache's result (%d layers kept in float32)",
                     nb_pins);
            if (nb_pins) { /* the warning the check itself gives */
                char list[512] = "";
                for (int i = 0; i < nb_pins; i++) {
                    size_t at = strlen(list);
                    if (at < sizeof list - 64) snprintf(list + at, sizeof list - at, "%s%s", at ? ", " : "", pins[i]);
                }
                kiln_log(env, KILN_LOG_WARNING,
                         "fp16: %d layers kept in float32: their values pass +-%.0f on standard-normal inputs, beyond "
                         "what float16 holds safely (%s%s; remembered by the timing cache)",
                         nb_pins, (double)KC_FP16_SAFE, list, strlen(list) >= sizeof list - 64 ? ", ..." : "");
            }
            kc_progress(cfg, "range check", 1, 1);
        }
        /* the probe's own failure is reported once, as the warning below: its errors go to
         * the log at verbose level */
        kiln_builder pb = *b;
        if (b->env.log) {
            pb.env.log = probe_log;
            pb.env.log_user = (void *)&b->env;
        }
        kiln_status st = rc_cached ? KILN_OK : build_engine(&pb, &net->g, cfg, pf, NULL, 0, true, &pe, &pbt);
        if (!rc_cached) {
            probe_build = build_now_ms() - t0;
            if (st == KILN_OK) st = probe_ranges(pe, &pins, &nb_pins);
            if (pe) ke_engine_release(pe);
            probe_run = build_now_ms() - t0 - probe_build;
            bool stored = st == KILN_OK && cache && !key.oom && rc_store(cache, &key, &net->g, pins, nb_pins);
            if (stored) stored = ke_tcache_save(cache) == KILN_OK; /* a failure only warns */
            if (st == KILN_OK)
                kiln_log(env, KILN_LOG_VERBOSE, "fp16 range check: %d layers kept in float32%s", nb_pins,
                         stored ? " (result stored in the timing cache)" : "");
            if (st != KILN_OK) { /* the float16 build goes on unchecked; it reports real problems itself */
                kiln_log(env, KILN_LOG_WARNING, "fp16 range check skipped: %s", kiln_last_error());
                for (int i = 0; i < nb_pins; i++) kiln_free(env, pins[i]);
                kiln_free(env, pins);
                pins = NULL;
                nb_pins = 0;
            }
            kc_progress(cfg, "range check", 1, 1);
        }
        kiln_free(env, key.data);
        ke_tcache_close(cache);
    }
    double t1 = build_now_ms();
    kiln_status st = build_engine(b, &net->g, cfg, flags, pins, nb_pins, false, out, &bt);
    net->built = true;
    if (st == KILN_OK) {
        char rc[160] = "";
        if (probe_build > 0)
            snprintf(rc, sizeof rc, "fp16 range check %.0f (float32 build %.0f: kernels %.0f; run %.0f), ", t1 - t0,
                     probe_build, pbt.kernels, probe_run);
        else if (rc_cached)
            snprintf(rc, sizeof rc, "fp16 range check %.0f (from the timing cache), ", t1 - t0);
        kiln_log(env, KILN_LOG_VERBOSE,
                 "build time: %.0f ms: %scheck and optimise %.0f, memory plan %.0f, kernels %.0f (timing cache "
                 "included)",
                 build_now_ms() - t0, rc, bt.optimize, bt.memory, bt.kernels);
    }
    for (int i = 0; i < nb_pins; i++) kiln_free(env, pins[i]);
    kiln_free(env, pins);
    return st;
}
