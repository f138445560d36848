/* kiln: engine files. Serializes a built engine (graph after optimisation, weights in
 * their final form, kernel choices, memory plan, device fingerprint) into the versioned
 * little-endian format of docs/PLAN_FORMAT.md, and loads it back with every field
 * checked: a corrupt file gives an error, never a crash. Also refit. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bytes.h"
#include "graph/fused.h"
#include "graph/ops.h"
#include "runtime/backend.h"
#include "runtime/config.h"

#define PLAN_MAGIC "KILNPLAN"
#define PLAN_VERSION 5u /* 2: the TACTICS section; 3: layer flag 16 (residual after the activation); 4: tensor pitch;
                            5: fused-region layers (KILN_LAYER_FUSED, aux up to KF_MAX_AUX words) */
#define PLAN_HEADER 64u
#define MAX_NAME 4096

enum { SEC_FINGERPRINT = 1, SEC_GRAPH = 2, SEC_WEIGHTS = 3, SEC_MEMPLAN = 4, SEC_IO = 5, SEC_TACTICS = 6, SEC_COUNT = 6 };
#define SEC_COUNT_V1 5

struct kiln_runtime {
    kiln_env env;
    bool refuse_mismatch;
    int threads;
    char *timing_cache; /* consulted when a plan's kernels are chosen again */
};

/* CRC-32 of the whole file with its own 4 bytes (offset 32) read as zeros. */
static uint32_t plan_crc(const uint8_t *p, size_t n) {
    static const uint8_t zeros[4] = {0};
    uint32_t c = kiln_crc32(0, p, 32);
    c = kiln_crc32(c, zeros, 4);
    return kiln_crc32(c, p + 36, n - 36);
}


/* ---- writing ---- */

static void write_graph(kb_writer *w, const kiln_engine *e, kb_writer *weights) {
    const kiln_graph *g = &e->graph;
    kbw_u32(w, (uint32_t)g->nb_tensors);
    for (int t = 0; t < g->nb_tensors; t++) {
        const kiln_tensor *x = g->tensors[t];
        kbw_str(w, x->name);
        kbw_u32(w, (uint32_t)x->dtype);
        bool unused = !kiln_dims_known(&x->dims); /* left behind by a pass: no shape */
        kbw_u32(w, unused ? UINT32_MAX : (uint32_t)x->dims.nb_dims);
        for (int k = 0; !unused && k < x->dims.nb_dims; k++) kbw_i64(w, x->dims.d[k]);
        kbw_u32(w, (uint32_t)x->storage);
        kbw_u32(w, (uint32_t)x->format);
    }
    kbw_u32(w, (uint32_t)e->nb_nodes);
    for (int n = 0; n < e->nb_nodes; n++) {
        const ke_node *node = &e->nodes[n];
        const kiln_layer *l = node->layer;
        kbw_u32(w, (uint32_t)l->type);
        kbw_str(w, l->name);
        kbw_u32(w, (uint32_t)l->nb_inputs);
        for (int k = 0; k < l->nb_inputs; k++) kbw_u32(w, l->inputs[k] ? (uint32_t)l->inputs[k]->id : UINT32_MAX);
        kbw_u32(w, (uint32_t)l->nb_outputs);
        for (int k = 0; k < l->nb_outputs; k++) kbw_u32(w, (uint32_t)l->outputs[k]->id);
        kbw_u32(w, (uint32_t)sizeof l->p);
        kbw_bytes(w, &l->p, sizeof l->p);
        kbw_u8(w, (uint8_t)((l->has_post_act ? 1 : 0) | (l->weights_rewritten ? 2 : 0) | (node->skip ? 4 : 0) | (l->tf32_ok ? 8 : 0) |
                            (l->res_after_act ? 16 : 0)));
        kbw_u32(w, (uint32_t)l->post_act.type);
        kbw_f32(w, l->post_act.alpha);
        kbw_f32(w, l->post_act.beta);
        kbw_u32(w, (uint32_t)l->nb_aux);
        for (int k = 0; k < l->nb_aux; k++) kbw_i64(w, l->aux[k]);
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
            kbw_u32(w, (uint32_t)l->w[k].dtype);
            kbw_i64(w, l->w[k].count);
            size_t bytes = (size_t)l->w[k].count * kiln_dtype_size(l->w[k].dtype);
            kbw_align(weights, 64);
            kbw_u64(w, weights->size);
            kbw_bytes(weights, l->w[k].values, bytes);
        }
    }
}

/* Where the bytes of a plan go: a buffer of the exact size or a file, with the CRC-32 kept
 * as they pass (the header's CRC field is zero when it passes, as plan_crc reads it). */
typedef struct plan_sink {
    uint8_t *buf;
    size_t cap; /* of buf */
    FILE *f;
    size_t pos;
    uint32_t crc;
    bool failed;
} plan_sink;

static void sink_bytes(plan_sink *s, const void *p, size_t n) {
    if (s->failed || !n) return;
    if (s->buf && n > s->cap - s->pos) { /* layout and emission disagree: reported by the caller */
        s->failed = true;
        return;
    }
    s->crc = kiln_crc32(s->crc, p, n);
    if (s->buf) memcpy(s->buf + s->pos, p, n);
    else if (fwrite(p, 1, n, s->f) != n) s->failed = true;
    s->pos += n;
}

static void sink_align(plan_sink *s, size_t base, size_t a) {
    static const uint8_t zeros[64] = {0};
    while ((s->pos - base) % a) sink_bytes(s, zeros, KILN_MIN(a - (s->pos - base) % a, sizeof zeros));
}

/* The weights section's bytes, in write_graph's order and alignment. */
static void sink_weights(plan_sink *s, const kiln_engine *e) {
    size_t base = s->pos;
    for (int n = 0; n < e->nb_nodes; n++) {
        const kiln_layer *l = e->nodes[n].layer;
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
            sink_align(s, base, 64);
            sink_bytes(s, l->w[k].values, (size_t)l->w[k].count * kiln_dtype_size(l->w[k].dtype));
        }
    }
}

/* A plan in two steps: every section but the weights is written to memory and the weights
 * are only counted (layout), then the file is emitted once, the weights straight from the
 * engine (emit). A ResNet-50 plan is 100 MB of weights: copying them through growing
 * buffers cost more than writing the file. */
typedef struct plan_layout {
    kb_writer sec[SEC_COUNT + 1];
    kb_writer head; /* header and section table, CRC field zero */
    size_t size;
} plan_layout;

static void layout_free(plan_layout *pl, const kiln_env *env) {
    for (int i = 1; i <= SEC_COUNT; i++) kiln_free(env, pl->sec[i].data);
    kiln_free(env, pl->head.data);
}

static kiln_status plan_layout_make(const kiln_engine *e, plan_layout *pl) {
    const kiln_env *env = &e->env;
    memset(pl, 0, sizeof *pl);
    kb_writer *sec = pl->sec;
    for (int i = 1; i <= SEC_COUNT; i++) sec[i].env = env;
    sec[SEC_WEIGHTS].count_only = true;
    kbw_str(&sec[SEC_FINGERPRINT], e->fingerprint);
    write_graph(&sec[SEC_GRAPH], e, &sec[SEC_WEIGHTS]);
    kb_writer *m = &sec[SEC_MEMPLAN];
    kbw_u64(m, e->arena_bytes);
    kbw_u32(m, (uint32_t)e->graph.nb_tensors);
    for (int t = 0; t < e->graph.nb_tensors; t++) {
        const ke_tensor_plan *p = &e->plan[t];
        kbw_u32(m, (uint32_t)p->storage);
        kbw_u32(m, (uint32_t)p->io);
        kbw_u64(m, p->offset);
        kbw_u64(m, p->bytes);
        kbw_u32(m, (uint32_t)p->root);
    }
    uint32_t npitched = 0; /* version 4: the pitched tensors (channel slices of concats) */
    for (int t = 0; t < e->graph.nb_tensors; t++) npitched += e->graph.tensors[t]->pitch != 0;
    kbw_u32(m, npitched);
    for (int t = 0; t < e->graph.nb_tensors; t++)
        if (e->graph.tensors[t]->pitch) {
            kbw_u32(m, (uint32_t)t);
            kbw_u64(m, (uint64_t)e->graph.tensors[t]->pitch);
        }
    kb_writer *tc = &sec[SEC_TACTICS];
    kbw_u32(tc, (uint32_t)e->nb_nodes);
    for (int n = 0; n < e->nb_nodes; n++) {
        kbw_u32(tc, (uint32_t)e->nodes[n].tactic_len);
        kbw_bytes(tc, e->nodes[n].tactic, e->nodes[n].tactic_len);
    }
    kb_writer *io = &sec[SEC_IO];
    kbw_u32(io, (uint32_t)e->device);
    kbw_u32(io, e->flags);
    kbw_u32(io, (uint32_t)e->threads);
    kbw_u32(io, (uint32_t)e->nb_io);
    for (int i = 0; i < e->nb_io; i++) {
        kbw_u32(io, (uint32_t)e->io[i].tensor);
        kbw_u32(io, (uint32_t)e->io[i].mode);
    }

    kb_writer *h = &pl->head;
    h->env = env;
    uint8_t header[PLAN_HEADER];
    memset(header, 0, sizeof header);
    kbw_bytes(h, header, sizeof header);
    size_t table = h->size, at = table + SEC_COUNT * 24;
    for (int i = 1; i <= SEC_COUNT; i++) { /* id, reserved, offset, size */
        at = (at + 63) / 64 * 64;
        kbw_u32(h, (uint32_t)i);
        kbw_u32(h, 0);
        kbw_u64(h, at);
        kbw_u64(h, sec[i].size);
        at += sec[i].size;
    }
    pl->size = at;
    bool oom = h->oom;
    for (int i = 1; i <= SEC_COUNT; i++) oom |= sec[i].oom;
    if (oom) {
        layout_free(pl, env);
        return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "serialize: out of host memory");
    }
    memcpy(h->data, PLAN_MAGIC, 8);
    kbw_patch_u32(h, 8, PLAN_VERSION);
    kbw_patch_u32(h, 12, PLAN_HEADER);
    kbw_patch_u32(h, 16, KILN_VERSION_MAJOR | (uint32_t)KILN_VERSION_MINOR << 16);
    kbw_patch_u32(h, 20, KILN_VERSION_PATCH);
    kbw_patch_u64(h, 24, pl->size);
    kbw_patch_u32(h, 36, SEC_COUNT);
    kbw_patch_u64(h, 40, table);
    return KILN_OK;
}

/* Emits the laid-out plan; the caller patches the CRC (s->crc) at offset 32. */
static void plan_emit(const kiln_engine *e, const plan_layout *pl, plan_sink *s) {
    sink_bytes(s, pl->head.data, pl->head.size);
    for (int i = 1; i <= SEC_COUNT; i++) {
        sink_align(s, 0, 64);
        if (i == SEC_WEIGHTS) sink_weights(s, e);
        else sink_bytes(s, pl->sec[i].data, pl->sec[i].size);
    }
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

kiln_status kiln_engine_serialize(const kiln_engine *e, void **data, size_t *size) {
    if (!e || !data || !size)
        return kiln_error(e ? &e->env : NULL, KILN_ERR_INVALID_ARGUMENT, "serialize: %s is NULL",
                          !e ? "engine" : !data ? "data" : "size");
    *data = NULL;
    *size = 0;
    plan_layout pl;
    kiln_status st = plan_layout_make(e, &pl);
    if (st != KILN_OK) return st;
    uint8_t *buf = malloc(pl.size);
    if (!buf) {
        layout_free(&pl, &e->env);
        return kiln_error(&e->env, KILN_ERR_OUT_OF_MEMORY, "serialize: out of host memory (%zu bytes)", pl.size);
    }
    plan_sink s = {.buf = buf, .cap = pl.size};
    plan_emit(e, &pl, &s);
    layout_free(&pl, &e->env);
    if (s.failed || s.pos != pl.size) { /* the layout and the emission disagree: a bug, not bad input */
        free(buf);
        return kiln_error(&e->env, KILN_ERR_INTERNAL, "serialize: wrote %zu of %zu bytes", s.pos, pl.size);
    }
    put_u32(buf + 32, s.crc);
    *data = buf;
    *size = pl.size;
    return KILN_OK;
}

kiln_status kiln_engine_save(const kiln_engine *e, const char *path) {
    if (!e || !path) return kiln_error(e ? &e->env : NULL, KILN_ERR_INVALID_ARGUMENT, "save: %s is NULL", e ? "path" : "engine");
    plan_layout pl;
    kiln_status st = plan_layout_make(e, &pl);
    if (st != KILN_OK) return st;
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) {
        layout_free(&pl, &e->env);
        return kiln_error(&e->env, KILN_ERR_OUT_OF_MEMORY, "save '%s': out of host memory", path);
    }
    snprintf(tmp, n, "%s.tmp%d", path, (int)getpid());
    /* written to a temporary name and renamed: a failed save never leaves half a plan */
    FILE *f = fopen(tmp, "wb");
    plan_sink s = {.f = f, .failed = !f};
    if (f) plan_emit(e, &pl, &s);
    bool ok = !s.failed && s.pos == pl.size;
    uint8_t crc[4];
    put_u32(crc, s.crc);
    if (ok) ok = fseek(f, 32, SEEK_SET) == 0 && fwrite(crc, 1, 4, f) == 4;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        remove(tmp);
        st = kiln_error(&e->env, KILN_ERR_IO, "save '%s': cannot write the file", path);
    }
    free(tmp);
    layout_free(&pl, &e->env);
    return st;
}

/* ---- reading ---- */

kiln_status kiln_runtime_create(const kiln_runtime_desc *desc, kiln_runtime **out) {
    if (!out) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "runtime create: out is NULL");
    *out = NULL;
    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    if (desc) {
        if (desc->size < sizeof(uint32_t) || desc->size > sizeof *desc)
            return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "runtime create: desc.size %u is not sizeof(kiln_runtime_desc)",
                              desc->size);
        bd.log = desc->log;
        bd.log_user = desc->log_user;
        bd.log_level = desc->log_level;
        bd.allocator = desc->allocator;
    }
    kiln_builder *b;
    kiln_status st = kiln_builder_create(&bd, &b); /* validates and makes the env */
    if (st != KILN_OK) return st;
    kiln_env env = b->env;
    kiln_builder_destroy(b);
    kiln_runtime *r = kiln_calloc(&env, 1, sizeof *r);
    if (!r) return kiln_error(&env, KILN_ERR_OUT_OF_MEMORY, "runtime create: out of host memory");
    r->env = env;
    r->refuse_mismatch = desc && desc->refuse_device_mismatch;
    r->threads = desc && desc->threads > 0 ? desc->threads : 0;
    if (desc && desc->size >= offsetof(kiln_runtime_desc, timing_cache) + sizeof desc->timing_cache &&
        desc->timing_cache && desc->timing_cache[0] && !(r->timing_cache = kiln_strdup(&env, desc->timing_cache))) {
        kiln_free(&env, r);
        return kiln_error(&env, KILN_ERR_OUT_OF_MEMORY, "runtime create: out of host memory");
    }
    *out = r;
    return KILN_OK;
}

void kiln_runtime_destroy(kiln_runtime *r) {
    if (!r) return;
    kiln_free(&r->env, r->timing_cache);
    kiln_free(&r->env, r);
}

#define BAD(...) kiln_error(env, KILN_ERR_FORMAT, "plan: " __VA_ARGS__)

static kiln_status read_graph(kiln_engine *e, kb_reader *r, kb_reader *wr) {
    const kiln_env *env = &e->env;
    kiln_graph *g = &e->graph;
    char name[MAX_NAME];
    uint32_t nt = kbr_u32(r);
    if (r->bad || nt > r->size) return BAD("the tensor count %u is impossible", nt);
    for (uint32_t t = 0; t < nt; t++) {
        kbr_str(r, name, sizeof name);
        uint32_t dtype = kbr_u32(r), rank = kbr_u32(r);
        /* rank 0xFFFFFFFF: a tensor a pass left unused, with no shape (no layer may touch it) */
        bool unused = rank == UINT32_MAX;
        kiln_dims d = {.nb_dims = unused ? -1 : (int32_t)rank};
        if (r->bad || (!unused && rank > KILN_MAX_DIMS) || kiln_dtype_size((kiln_dtype)dtype) == 0)
            return BAD("tensor %u is malformed", t);
        for (uint32_t k = 0; !unused && k < rank; k++) d.d[k] = kbr_i64(r);
        int storage = (int)kbr_u32(r), format = (int)kbr_u32(r);
        if (!unused && (!kiln_dims_known(&d) || kiln_dims_volume(&d) < 0))
            return BAD("tensor '%s' has invalid dims", name);
        if ((storage != KG_STORAGE_SAME && storage != KILN_FLOAT32 && storage != KILN_FLOAT16) ||
            (format != KG_FORMAT_LINEAR && !(format == KG_FORMAT_NHWC && rank == 4)))
            return BAD("tensor '%s' has an unknown storage or layout", name);
        kiln_tensor *nt_ = kg_tensor_new(g, name, (kiln_dtype)dtype, d);
        if (!nt_) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
        nt_->storage = storage;
        nt_->format = format;
    }
    uint32_t nl = kbr_u32(r);
    if (r->bad || nl > r->size) return BAD("the layer count %u is impossible", nl);
    e->nodes = kiln_calloc(env, nl ? nl : 1, sizeof *e->nodes);
    if (!e->nodes) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    for (uint32_t i = 0; i < nl; i++) {
        uint32_t type = kbr_u32(r);
        kbr_str(r, name, sizeof name);
        uint32_t nin = kbr_u32(r);
        if (r->bad || type >= KILN_LAYER_TYPE_COUNT || nin > 4096) return BAD("layer %u is malformed", i);
        kiln_tensor *ins[4096];
        for (uint32_t k = 0; k < nin; k++) {
            uint32_t id = kbr_u32(r);
            if (id != UINT32_MAX && id >= nt) return BAD("layer '%s' reads tensor %u of %u", name, id, nt);
            ins[k] = id == UINT32_MAX ? NULL : g->tensors[id];
        }
        uint32_t nout = kbr_u32(r);
        if (r->bad || nout == 0 || nout > 4096) return BAD("layer '%s' has %u outputs", name, nout);
        kiln_layer *l = kg_layer_new(g, (kiln_layer_type)type, ins, (int)nin, 0, NULL);
        if (!l) return KILN_ERR_OUT_OF_MEMORY;
        kiln_free(env, l->name);
        l->name = kiln_strdup(env, name);
        kiln_free(env, l->outputs);
        l->outputs = kiln_calloc(env, nout, sizeof(void *));
        if (!l->name || !l->outputs) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
        l->nb_outputs = (int)nout;
        for (uint32_t k = 0; k < nout; k++) {
            uint32_t id = kbr_u32(r);
            if (r->bad || id >= nt || g->tensors[id]->producer || g->tensors[id]->is_input)
                return BAD("layer '%s' writes tensor %u, which is out of range or written twice", name, id);
            l->outputs[k] = g->tensors[id];
            g->tensors[id]->producer = l;
            g->tensors[id]->producer_index = (int)k;
        }
        uint32_t psize = kbr_u32(r);
        if (psize != sizeof l->p) return BAD("layer '%s' attributes are %u bytes, this kiln expects %zu", name, psize, sizeof l->p);
        const uint8_t *pp = kbr_take(r, psize);
        if (pp) memcpy(&l->p, pp, psize);
        uint8_t flags = kbr_u8(r);
        l->has_post_act = flags & 1;
        l->weights_rewritten = (flags >> 1) & 1;
        e->nodes[i].skip = (flags >> 2) & 1;
        l->tf32_ok = (flags >> 3) & 1;
        l->res_after_act = (flags >> 4) & 1;
        if (flags & ~31u) return BAD("layer '%s' has unknown flags 0x%02x", name, flags);
        if (l->res_after_act && (l->type != KILN_LAYER_CONVOLUTION || l->nb_inputs != 2 || !(flags & 1)))
            return BAD("layer '%s' adds a residual after an activation it does not have", name);
        l->post_act.type = (kiln_activation_type)kbr_u32(r);
        l->post_act.alpha = kbr_f32(r);
        l->post_act.beta = kbr_f32(r);
        if (l->has_post_act && (unsigned)l->post_act.type >= KILN_ACT_COUNT) return BAD("layer '%s' has a bad fused activation", name);
        uint32_t naux = kbr_u32(r);
        if (r->bad || naux > KF_MAX_AUX) return BAD("layer '%s' is malformed", name);
        if (naux) {
            l->aux = kiln_alloc(env, naux * sizeof(int64_t));
            if (!l->aux) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
            l->nb_aux = (int)naux;
            for (uint32_t k = 0; k < naux; k++) l->aux[k] = kbr_i64(r);
        }
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
            uint32_t dt = kbr_u32(r);
            int64_t count = kbr_i64(r);
            uint64_t off = kbr_u64(r);
            size_t es = kiln_dtype_size((kiln_dtype)dt), bytes;
            if (r->bad || es == 0 || count < 0 || !kiln_mul_size((size_t)count, es, &bytes) || off > wr->size ||
                bytes > wr->size - off)
                return BAD("layer '%s' weights %d lie outside the weights section", name, k);
            l->w[k].dtype = (kiln_dtype)dt;
            l->w[k].count = count;
            if (count) {
                void *v = kiln_alloc(env, bytes);
                if (!v) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory (%zu bytes of weights)", bytes);
                memcpy(v, wr->data + off, bytes);
                l->w[k].values = v;
                l->w_owned[k] = true;
            }
        }
        if (r->bad) return BAD("layer '%s' is truncated", name);
        e->nodes[i].layer = l;
        e->nb_nodes++;
        if (l->nb_inputs > e->max_inputs) e->max_inputs = l->nb_inputs;
        if (l->nb_outputs > e->max_outputs) e->max_outputs = l->nb_outputs;
    }
    return KILN_OK;
}

/* Inputs come before their readers, and every layer's attributes and output shapes are
 * checked again exactly as at build time (kg_infer_layer), against the stored shapes. */
static kiln_status validate_graph(kiln_engine *e) {
    const kiln_env *env = &e->env;
    kiln_graph *g = &e->graph;
    int nt = g->nb_tensors;
    kiln_dims *saved = kiln_alloc(env, (size_t)(nt ? nt : 1) * sizeof *saved);
    kiln_dtype *saved_t = kiln_alloc(env, (size_t)(nt ? nt : 1) * sizeof *saved_t);
    bool *ready = kiln_calloc(env, (size_t)(nt ? nt : 1), sizeof *ready);
    kiln_status st = KILN_OK;
    if (!saved || !saved_t || !ready) {
        st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
        goto done;
    }
    for (int t = 0; t < nt; t++) {
        saved[t] = g->tensors[t]->dims;
        saved_t[t] = g->tensors[t]->dtype;
        ready[t] = g->tensors[t]->is_input;
    }
    for (int n = 0; n < e->nb_nodes && st == KILN_OK; n++) {
        kiln_layer *l = e->nodes[n].layer;
        for (int k = 0; k < l->nb_inputs; k++)
            if (l->inputs[k] && !ready[l->inputs[k]->id]) {
                st = BAD("layer '%s' reads '%s' before anything writes it", l->name, l->inputs[k]->name);
                break;
            }
        if (st != KILN_OK) break;
        st = kg_infer_layer(l);
        if (st != KILN_OK) {
            st = BAD("layer '%s' does not check out: %s", l->name, kiln_last_error());
            break;
        }
        for (int k = 0; k < l->nb_outputs; k++) {
            kiln_tensor *t = l->outputs[k];
            if (!kiln_dims_equal(&t->dims, &saved[t->id]) || t->dtype != saved_t[t->id]) {
                st = BAD("layer '%s' output '%s' does not have its stored shape", l->name, t->name);
                break;
            }
            ready[t->id] = true;
        }
    }
done:
    kiln_free(env, saved);
    kiln_free(env, saved_t);
    kiln_free(env, ready);
    return st;
}

static kiln_status read_io(kiln_engine *e, kb_reader *r) {
    const kiln_env *env = &e->env;
    kiln_graph *g = &e->graph;
    uint32_t device = kbr_u32(r);
    e->flags = kbr_u32(r);
    e->threads = (int)kbr_u32(r);
    uint32_t nio = kbr_u32(r);
    if (r->bad || device > KILN_DEVICE_CUDA || nio == 0 || nio > (uint32_t)g->nb_tensors || e->threads < 0 || e->threads > 1024)
        return BAD("the I/O section is malformed");
    e->device = (kiln_device)device;
    e->io = kiln_calloc(env, nio, sizeof *e->io);
    if (!e->io) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    for (uint32_t i = 0; i < nio; i++) {
        uint32_t t = kbr_u32(r), mode = kbr_u32(r);
        if (r->bad || t >= (uint32_t)g->nb_tensors || (mode != KILN_IO_INPUT && mode != KILN_IO_OUTPUT))
            return BAD("I/O entry %u is malformed", i);
        kiln_tensor *x = g->tensors[t];
        if (x->is_input || x->is_output || (mode == KILN_IO_INPUT) != (x->producer == NULL))
            return BAD("I/O entry %u ('%s') contradicts the graph", i, x->name);
        if (mode == KILN_IO_INPUT) x->is_input = true;
        else x->is_output = true;
        e->io[i].name = x->name;
        e->io[i].tensor = (int)t;
        e->io[i].mode = (kiln_io_mode)mode;
        e->nb_io++;
    }
    return KILN_OK;
}

/* The bytes a pitched tensor spans (channels-last, 4-D, pitch >= its channels): false if
 * it is not one. */
static bool pitched_span(const kiln_tensor *x, size_t *bytes) {
    if (x->format != KG_FORMAT_NHWC || x->dims.nb_dims != 4 || x->pitch < x->dims.d[1] || x->pitch > INT32_MAX)
        return false;
    int64_t pixels = x->dims.d[0] * x->dims.d[2] * x->dims.d[3];
    if (pixels <= 0 || x->dims.d[1] <= 0) return false;
    double span = ((double)(pixels - 1) * (double)x->pitch + (double)x->dims.d[1]) * (double)kiln_dtype_size(kg_storage(x));
    if (span > 9.0e15) return false;
    *bytes = (size_t)span;
    return true;
}

/* A channels-last concat along channels that does not run: each input is a channel slice
 * of every pixel of the output (pitch = the output's channels), in order, each taken by
 * the backend's kernels for its producer and its other readers. */
static bool concat_slices_in_place(const kiln_engine *e, const kiln_layer *l) {
    const kiln_tensor *out = l->outputs[0];
    const ke_tensor_plan *po = &e->plan[out->id];
    if (out->format != KG_FORMAT_NHWC || out->dims.nb_dims != 4 || kg_axis(l->p.axis.axis, 4) != 1 || out->pitch ||
        po->storage != KE_ARENA || !e->backend->pitch_ok)
        return false;
    size_t es = kiln_dtype_size(kg_storage(out));
    int64_t at = 0;
    for (int k = 0; k < l->nb_inputs; k++) {
        const kiln_tensor *x = l->inputs[k];
        if (!x || !x->producer) return false;
        const ke_tensor_plan *px = &e->plan[x->id];
        if (px->storage != KE_ARENA || px->root != po->root || x->format != KG_FORMAT_NHWC ||
            kg_storage(x) != kg_storage(out) || x->pitch != out->dims.d[1] || px->offset != po->offset + (size_t)at * es ||
            (at * (int64_t)es) % 16 || !e->backend->pitch_ok(x->producer, x))
            return false;
        for (int n = 0; n < e->nb_nodes; n++) {
            const kiln_layer *r = e->nodes[n].layer;
            for (int j = 0; r != l && j < r->nb_inputs; j++)
                if (r->inputs[j] == x && (e->nodes[n].skip || !e->backend->pitch_ok(r, x))) return false;
        }
        at += x->dims.d[1];
    }
    return at == out->dims.d[1] && (at * (int64_t)es) % 16 == 0;
}

/* A concat that does not run: every dimension before its axis is 1, all its tensors are
 * row-major arena tensors of one storage type, and each input lies in the output's storage
 * exactly where the concat would have copied it; or channel slices (above). */
static bool concat_in_place(const kiln_engine *e, const kiln_layer *l) {
    const kiln_tensor *out = l->outputs[0];
    const ke_tensor_plan *po = &e->plan[out->id];
    int axis = kg_axis(l->p.axis.axis, out->dims.nb_dims);
    if (out->format == KG_FORMAT_NHWC) return concat_slices_in_place(e, l);
    if (axis < 0 || po->storage != KE_ARENA || out->format != KG_FORMAT_LINEAR) return false;
    for (int d = 0; d < axis; d++)
        if (out->dims.d[d] != 1) return false;
    uint64_t at = 0;
    for (int k = 0; k < l->nb_inputs; k++) {
        const kiln_tensor *x = l->inputs[k];
        if (!x) return false;
        const ke_tensor_plan *px = &e->plan[x->id];
        if (px->storage != KE_ARENA || px->root != po->root || x->format != KG_FORMAT_LINEAR ||
            kg_storage(x) != kg_storage(out) || px->offset != po->offset + at || x->pitch)
            return false;
        at += px->bytes;
    }
    return at == po->bytes;
}

static kiln_status read_memplan(kiln_engine *e, kb_reader *r, uint32_t version) {
    const kiln_env *env = &e->env;
    kiln_graph *g = &e->graph;
    e->arena_bytes = kbr_u64(r);
    uint32_t nt = kbr_u32(r);
    if (r->bad || nt != (uint32_t)g->nb_tensors) return BAD("the memory plan does not match the graph");
    e->plan = kiln_calloc(env, nt ? nt : 1, sizeof *e->plan);
    if (!e->plan) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
    for (uint32_t t = 0; t < nt; t++) {
        ke_tensor_plan *p = &e->plan[t];
        p->storage = (ke_storage)kbr_u32(r);
        p->io = (int)kbr_u32(r);
        p->offset = kbr_u64(r);
        p->bytes = kbr_u64(r);
        p->root = (int)kbr_u32(r);
    }
    uint32_t npitched = version >= 4 ? kbr_u32(r) : 0;
    if (!r->bad && npitched > nt) return BAD("the memory plan lists %u pitched tensors of %u", npitched, nt);
    for (uint32_t i = 0; i < npitched && !r->bad; i++) {
        uint32_t t = kbr_u32(r);
        uint64_t pitch = kbr_u64(r);
        if (t >= nt || g->tensors[t]->pitch || pitch == 0) return BAD("the memory plan has a bad pitch record");
        g->tensors[t]->pitch = pitch > INT64_MAX ? -1 : (int64_t)pitch;
    }
    if (r->bad) return BAD("the memory plan is truncated");
    for (uint32_t t = 0; t < nt; t++) {
        ke_tensor_plan *p = &e->plan[t];
        const kiln_tensor *x = g->tensors[t];
        size_t bytes = kg_tensor_bytes(x);
        if (!x->producer && !x->is_input) { /* nothing writes it: it takes no memory */
            if (p->bytes != 0 || p->storage != KE_ARENA || p->root != (int)t)
                return BAD("tensor '%s' is written by no layer but has memory planned", x->name);
            continue;
        }
        if (p->bytes != bytes || p->root < 0 || (uint32_t)p->root >= nt || e->plan[p->root].storage != p->storage ||
            (x->pitch && p->storage != KE_ARENA))
            return BAD("tensor '%s' has an inconsistent memory plan", x->name);
        switch (p->storage) {
        case KE_ARENA:
            if (x->pitch && !pitched_span(x, &bytes))
                return BAD("tensor '%s' has a bad pitch (%lld)", x->name, (long long)x->pitch);
            if (p->offset > e->arena_bytes || bytes > e->arena_bytes - p->offset)
                return BAD("tensor '%s' lies outside the activation arena", x->name);
            /* the planner aligns every buffer: kernels may rely on it (vector loads); a
             * channel slice of a concat is 16-byte aligned */
            if (p->offset % (x->pitch ? 16 : KILN_ALIGN))
                return BAD("tensor '%s' is at arena offset %llu, not %d-byte aligned", x->name,
                           (unsigned long long)p->offset, x->pitch ? 16 : KILN_ALIGN);
            break;
        case KE_INPUT:
        case KE_OUTPUT:
            if (p->io < 0 || p->io >= e->nb_io ||
                e->io[p->io].mode != (p->storage == KE_INPUT ? KILN_IO_INPUT : KILN_IO_OUTPUT) ||
                e->plan[e->io[p->io].tensor].bytes < bytes)
                return BAD("tensor '%s' refers to a bad I/O binding", x->name);
            break;
        case KE_CONST: {
            const kiln_tensor *root = g->tensors[p->root];
            if (!root->producer || root->producer->type != KILN_LAYER_CONSTANT || bytes != e->plan[p->root].bytes)
                return BAD("tensor '%s' claims constant storage it does not have", x->name);
            break;
        }
        default: return BAD("tensor '%s' has unknown storage %u", x->name, (unsigned)p->storage);
        }
    }
    /* the planner never needs more than all arena buffers side by side */
    size_t worst = 0;
    for (uint32_t t = 0; t < nt; t++)
        if (e->plan[t].storage == KE_ARENA && e->plan[t].root == (int)t) worst += KILN_ALIGN_UP(e->plan[t].bytes, KILN_ALIGN);
    if (e->arena_bytes > worst) return BAD("the activation arena (%zu bytes) is larger than all its buffers (%zu)", e->arena_bytes, worst);
    /* every I/O tensor is bound to itself */
    for (int i = 0; i < e->nb_io; i++) {
        const ke_tensor_plan *p = &e->plan[e->io[i].tensor];
        if (p->io != i || p->root != e->io[i].tensor) return BAD("I/O '%s' is not planned as a binding", e->io[i].name);
    }
    /* a skipped node must be a constant or a view of its input */
    for (int n = 0; n < e->nb_nodes; n++) {
        const kiln_layer *l = e->nodes[n].layer;
        if (!e->nodes[n].skip) {
            for (int k = 0; k < l->nb_outputs; k++) {
                ke_storage s = e->plan[l->outputs[k]->id].storage;
                if (s != KE_ARENA && s != KE_OUTPUT) return BAD("layer '%s' would write into read-only storage", l->name);
            }
            continue;
        }
        const ke_tensor_plan *p = &e->plan[l->outputs[0]->id];
        bool ok = l->type == KILN_LAYER_CONSTANT ? p->storage == KE_CONST
                  : l->type == KILN_LAYER_CONCAT ? concat_in_place(e, l)
                  : (kg_ops[l->type].flags & KG_OP_VIEW) && l->inputs[0] &&
                        p->root == e->plan[l->inputs[0]->id].root;
        if (!ok) return BAD("layer '%s' is marked as not running, but its output needs it", l->name);
    }
    /* a pitched tensor is a channel slice of a concat that does not run (checked above) */
    for (uint32_t t = 0; t < nt; t++) {
        const kiln_tensor *x = g->tensors[t];
        bool claimed = x->pitch == 0;
        for (int n = 0; !claimed && n < e->nb_nodes; n++) {
            const kiln_layer *l = e->nodes[n].layer;
            for (int k = 0; e->nodes[n].skip && l->type == KILN_LAYER_CONCAT && k < l->nb_inputs; k++)
                claimed |= l->inputs[k] == x;
        }
        if (!claimed) return BAD("tensor '%s' is pitched but lies in no concat's output", x->name);
    }
    return KILN_OK;
}

/* Each node's stored kernel choice (hints for prepare on the device it was made for). */
static kiln_status read_tactics(kiln_engine *e, kb_reader *r) {
    const kiln_env *env = &e->env;
    if (kbr_u32(r) != (uint32_t)e->nb_nodes || r->bad) return BAD("the tactics section does not match the layers");
    for (int n = 0; n < e->nb_nodes; n++) {
        uint32_t len = kbr_u32(r);
        const uint8_t *p = len <= KE_TACTIC_MAX ? kbr_take(r, len) : NULL;
        if (!p || r->bad) return BAD("layer %d: bad kernel choice record", n);
        if (!len) continue;
        ke_node *node = &e->nodes[n];
        if (!(node->tactic = kiln_alloc(env, len))) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "plan: out of host memory");
        memcpy(node->tactic, p, len);
        node->tactic_len = len;
    }
    return r->pos == r->size ? KILN_OK : BAD("trailing bytes in the tactics section");
}

kiln_status kiln_runtime_load(kiln_runtime *rt, const void *data, size_t size, kiln_engine **out) {
    if (out) *out = NULL;
    if (!rt || !data || !out)
        return kiln_error(rt ? &rt->env : NULL, KILN_ERR_INVALID_ARGUMENT, "load plan: %s is NULL",
                          !rt ? "runtime" : !data ? "data" : "out");
    const kiln_env *env = &rt->env;
    const uint8_t *b = data;
    if (size < PLAN_HEADER || memcmp(b, PLAN_MAGIC, 8) != 0)
        return BAD("not a kiln plan (%s)", size < 8 ? "too short" : "wrong magic bytes");
    kb_reader h = {b, size, 8, false};
    uint32_t version = kbr_u32(&h), hsize = kbr_u32(&h), kv1 = kbr_u32(&h), kv2 = kbr_u32(&h);
    uint64_t fsize = kbr_u64(&h);
    uint32_t crc = kbr_u32(&h), nsec = kbr_u32(&h);
    uint64_t table = kbr_u64(&h);
    if (version > PLAN_VERSION)
        return kiln_error(env, KILN_ERR_FORMAT, "plan: format version %u was written by kiln %u.%u.%u; this kiln %s reads up to %u",
                          version, kv1 & 0xFFFF, kv1 >> 16, kv2, kiln_version(), PLAN_VERSION);
    if (version == 0 || hsize != PLAN_HEADER) return BAD("bad header (version %u, header size %u)", version, hsize);
    if (fsize != size) return BAD("the file is %zu bytes but says %llu: truncated or padded", size, (unsigned long long)fsize);
    if (plan_crc(b, size) != crc) return BAD("checksum mismatch: the file is corrupt");
    if (nsec != (version == 1 ? SEC_COUNT_V1 : SEC_COUNT) || table > size || (uint64_t)nsec * 24 > size - table) return BAD("bad section table");
    kb_reader sec[SEC_COUNT + 1];
    memset(sec, 0, sizeof sec);
    kb_reader tr = {b, size, (size_t)table, false};
    for (uint32_t i = 0; i < nsec; i++) {
        uint32_t id = kbr_u32(&tr);
        kbr_u32(&tr);
        uint64_t off = kbr_u64(&tr), len = kbr_u64(&tr);
        if (id < 1 || id > nsec || sec[id].data || off > size || len > size - off)
            return BAD("section %u is out of bounds or repeated", id);
        sec[id] = (kb_reader){b + off, (size_t)len, 0, false};
    }

    kiln_engine *e = kiln_calloc(env, 1, sizeof *e);
    if (!e) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "load plan: out of host memory");
    e->env = *env;
    atomic_init(&e->refs, 1);
    kg_graph_init(&e->graph, env);
    char fp[512];
    kbr_str(&sec[SEC_FINGERPRINT], fp, sizeof fp);
    kiln_status st = sec[SEC_FINGERPRINT].bad ? BAD("bad fingerprint section") : KILN_OK;
    if (st == KILN_OK) st = read_graph(e, &sec[SEC_GRAPH], &sec[SEC_WEIGHTS]);
    if (st == KILN_OK) st = read_io(e, &sec[SEC_IO]);
    if (st == KILN_OK) st = validate_graph(e);
    if (st == KILN_OK) st = ke_check_tensor_sizes(&e->graph, env);
    if (st == KILN_OK) {
        kiln_status why = KILN_ERR_UNSUPPORTED;
        e->backend = kb_backend_for(env, e->device, &why);
        if (!e->backend) st = why;
    }
    if (st == KILN_OK) st = read_memplan(e, &sec[SEC_MEMPLAN], version);
    if (st == KILN_OK) {
        ke_fill_fingerprint(e);
        if (strcmp(fp, e->fingerprint) != 0) {
            if (rt->refuse_mismatch)
                st = kiln_error(env, KILN_ERR_UNSUPPORTED, "plan: built for [%s], this machine is [%s] (refusing, as asked)", fp,
                                e->fingerprint);
            else
                kiln_log(env, KILN_LOG_WARNING, "plan: built for [%s], this machine is [%s]: choosing kernels again", fp,
                         e->fingerprint);
        }
    }
    bool same_device = strcmp(fp, e->fingerprint) == 0;
    if (st == KILN_OK && nsec > SEC_TACTICS - 1) st = read_tactics(e, &sec[SEC_TACTICS]);
    if (rt->threads) e->threads = rt->threads;
    if (st == KILN_OK) {
        /* this device: the stored kernel choices; another: choose again, helped by the cache */
        ke_tcache *cache = NULL;
        if (!same_device && rt->timing_cache && e->backend->tactic &&
            !(cache = ke_tcache_open(env, rt->timing_cache)))
            st = KILN_ERR_OUT_OF_MEMORY;
        if (st == KILN_OK) st = ke_prepare_nodes(e, cache, same_device, NULL, NULL);
        if (st == KILN_OK) (void)ke_tcache_save(cache);
        ke_tcache_close(cache);
    }
    if (st != KILN_OK) {
        ke_engine_release(e);
        return st;
    }
    *out = e;
    return KILN_OK;
}

kiln_status kiln_runtime_load_file(kiln_runtime *rt, const char *path, kiln_engine **out) {
    if (out) *out = NULL;
    if (!rt || !path || !out)
        return kiln_error(rt ? &rt->env : NULL, KILN_ERR_INVALID_ARGUMENT, "load plan file: %s is NULL",
                          !rt ? "runtime" : !path ? "path" : "out");
    const kiln_env *env = &rt->env;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(env, KILN_ERR_IO, "load plan '%s': cannot open the file", path);
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return kiln_error(env, KILN_ERR_IO, "load plan '%s': cannot read the file", path);
    }
    void *buf = kiln_alloc(env, (size_t)size);
    if (!buf) {
        fclose(f);
        return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "load plan '%s': out of host memory (%ld bytes)", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    kiln_status st = got == (size_t)size ? kiln_runtime_load(rt, buf, (size_t)size, out)
                                         : kiln_error(env, KILN_ERR_IO, "load plan '%s': short read", path);
    kiln_free(env, buf);
    if (st != KILN_OK && st != KILN_ERR_IO) {
        /* name the file in the message */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        kiln_error(NULL, st, "'%s': %s", path, msg);
    }
    return st;
}

/* ---- refit ---- */

static const char *role_name(kiln_layer_type type, int k) {
    switch (type) {
    case KILN_LAYER_CONVOLUTION:
    case KILN_LAYER_DECONVOLUTION: return k == 0 ? "kernel" : k == 1 ? "bias" : NULL;
    case KILN_LAYER_SCALE: return k == 0 ? "shift" : k == 1 ? "scale" : k == 2 ? "power" : NULL;
    case KILN_LAYER_INSTANCE_NORM: return k == 0 ? "scale" : k == 1 ? "bias" : NULL;
    case KILN_LAYER_CONSTANT: return k == 0 ? "" : NULL;
    default: return NULL;
    }
}

/* Calls fn for each refittable weight until it returns true; gives its node and slot. */
static bool find_weight(const kiln_engine *e, int index, const char *name, int *node, int *slot, char *buf, size_t size) {
    int i = 0;
    for (int n = 0; n < e->nb_nodes; n++) {
        const kiln_layer *l = e->nodes[n].layer;
        if (l->weights_rewritten) continue;
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
            const char *role = role_name(l->type, k);
            if (!role || !l->w[k].count) continue;
            snprintf(buf, size, *role ? "%s.%s" : "%s", l->name, role);
            if ((name && strcmp(buf, name) == 0) || (!name && i == index)) {
                *node = n;
                *slot = k;
                return true;
            }
            i++;
        }
    }
    return false;
}

int kiln_engine_num_weights(const kiln_engine *e) {
    if (!e) return 0;
    int n = 0;
    for (int i = 0; i < e->nb_nodes; i++) {
        const kiln_layer *l = e->nodes[i].layer;
        if (l->weights_rewritten) continue;
        for (int k = 0; k < KG_MAX_WEIGHTS; k++) n += role_name(l->type, k) && l->w[k].count;
    }
    return n;
}

const char *kiln_engine_weights_name(const kiln_engine *e, int index) {
    static _Thread_local char buf[MAX_NAME + 16];
    int n, k;
    if (!e || index < 0 || !find_weight(e, index, NULL, &n, &k, buf, sizeof buf)) return NULL;
    return buf;
}

kiln_status kiln_engine_weights_info(const kiln_engine *e, const char *name, kiln_dtype *dtype, int64_t *count) {
    char buf[MAX_NAME + 16];
    int n, k;
    if (!e || !name) return kiln_error(e ? &e->env : NULL, KILN_ERR_INVALID_ARGUMENT, "weights info: %s is NULL", e ? "name" : "engine");
    if (!find_weight(e, -1, name, &n, &k, buf, sizeof buf))
        return kiln_error(&e->env, KILN_ERR_NOT_FOUND, "weights info: the engine has no refittable weights named '%s'", name);
    if (dtype) *dtype = e->nodes[n].layer->w[k].dtype;
    if (count) *count = e->nodes[n].layer->w[k].count;
    return KILN_OK;
}

kiln_status kiln_engine_refit(kiln_engine *e, const char *name, kiln_weights w) {
    char buf[MAX_NAME + 16];
    int n, k;
    if (!e || !name) return kiln_error(e ? &e->env : NULL, KILN_ERR_INVALID_ARGUMENT, "refit: %s is NULL", e ? "name" : "engine");
    const kiln_env *env = &e->env;
    if (!find_weight(e, -1, name, &n, &k, buf, sizeof buf))
        return kiln_error(env, KILN_ERR_NOT_FOUND,
                          "refit: the engine has no refittable weights named '%s' (folded weights need KILN_FLAG_REFIT)", name);
    ke_node *node = &e->nodes[n];
    kiln_layer *l = node->layer;
    if (w.dtype != l->w[k].dtype || w.count != l->w[k].count || !w.values)
        return kiln_error(env, KILN_ERR_INVALID_ARGUMENT, "refit '%s': expected %lld %s values, got %lld %s%s", name,
                          (long long)l->w[k].count, kiln_dtype_name(l->w[k].dtype), (long long)w.count,
                          kiln_dtype_name(w.dtype), w.values ? "" : " (NULL)");
    memcpy((void *)l->w[k].values, w.values, (size_t)w.count * kiln_dtype_size(w.dtype));
    kiln_status st;
    if (e->backend->refit) {
        st = e->backend->refit(e, node, k); /* the backend updates its copies in place */
        if (st != KILN_OK) return st;
    } else { /* prepare again: packed copies follow the new values */
        e->backend->release(env, node);
        node->scratch_bytes = 0;
        st = e->backend->prepare(e, node);
        if (st != KILN_OK) return st;
    }
    if (node->scratch_bytes > e->scratch_bytes)
        return kiln_error(env, KILN_ERR_INTERNAL, "refit '%s': the kernel now needs more scratch memory", name);
    if (node->skip && l->type == KILN_LAYER_CONSTANT) {
        const void *cd = e->backend->const_data(node);
        int root = l->outputs[0]->id;
        for (int t = 0; t < e->graph.nb_tensors; t++)
            if (e->plan[t].storage == KE_CONST && e->plan[t].root == root) e->plan[t].cdata = cd;
    }
    return KILN_OK;
}
