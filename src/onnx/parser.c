/* kiln ONNX importer: model loading and validation, initializers and inputs, the node
 * loop (fold on the host when every input is constant, otherwise map onto the network
 * API), graph outputs, and error collection (every problem, not just the first). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_internal.h"
#include "tensor_io.h"

static void set_last_error(kiln_status st, const char *msg) { kiln_set_last_error(st, msg); }

/* ---- errors ---- */

static bool grow_errors(ox_parser *p) {
    int ncap = p->cap_errors ? 2 * p->cap_errors : 8;
    /* each array keeps its old block when realloc fails; cap_errors moves last */
    char **e = realloc(p->errors, (size_t)ncap * sizeof *e);
    if (!e) return false;
    p->errors = e;
    kiln_status *st = realloc(p->error_status, (size_t)ncap * sizeof *st);
    if (!st) return false;
    p->error_status = st;
    char **v = realloc(p->error_values, (size_t)ncap * sizeof *v);
    if (!v) return false;
    p->error_values = v;
    p->cap_errors = ncap;
    return true;
}

static kiln_status push_error(ox_parser *p, kiln_status st, const char *msg, const char *value) {
    char *copy = strdup(msg);
    if (copy && p->nb_errors == p->cap_errors && !grow_errors(p)) {
        free(copy);
        copy = NULL;
    }
    if (copy) {
        p->error_status[p->nb_errors] = st;
        p->error_values[p->nb_errors] = value ? strdup(value) : NULL; /* NULL on OOM: only the hint is lost */
        p->errors[p->nb_errors++] = copy;
    }
    set_last_error(st, msg);
    return st;
}

static kiln_status verror(ox_parser *p, const char *value, kiln_status st, const char *fmt, va_list ap) {
    char body[900], line[1024];
    vsnprintf(body, sizeof body, fmt, ap);
    snprintf(line, sizeof line, "%s: %s", p->label ? p->label : "onnx", body);
    return push_error(p, st, line, value);
}

kiln_status ox_error(ox_parser *p, kiln_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kiln_status r = verror(p, NULL, st, fmt, ap);
    va_end(ap);
    return r;
}

static kiln_status ox_error_value(ox_parser *p, const char *value, kiln_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kiln_status ox_error_value(ox_parser *p, const char *value, kiln_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kiln_status r = verror(p, value, st, fmt, ap);
    va_end(ap);
    return r;
}

static kiln_status node_verror(ox_node *n, const char *value, kiln_status st, const char *fmt, va_list ap) {
    char body[700];
    vsnprintf(body, sizeof body, fmt, ap);
    const char *dom = n->n->domain && *n->n->domain ? n->n->domain : "ai.onnx";
    return ox_error_value(n->p, value, st, "node '%s' (%s, domain '%s', opset %d): %s", n->name,
                          n->n->op_type ? n->n->op_type : "?", dom, n->opset, body);
}

kiln_status ox_node_error(ox_node *n, kiln_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kiln_status r = node_verror(n, NULL, st, fmt, ap);
    va_end(ap);
    return r;
}

kiln_status ox_node_error_value(ox_node *n, const char *model_input, kiln_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kiln_status r = node_verror(n, model_input, st, fmt, ap);
    va_end(ap);
    return r;
}

kiln_status ox_layer_failed(ox_node *n, const char *what) {
    /* kiln_last_error() names the layer and the problem */
    char reason[600];
    snprintf(reason, sizeof reason, "%s", kiln_last_error());
    return ox_node_error(n, KILN_ERR_INVALID_ARGUMENT, "%s failed: %s", what, reason[0] ? reason : "unknown error");
}

/* ---- ownership ---- */

void *ox_alloc(ox_parser *p, size_t bytes) {
    if (p->nb_bufs == p->cap_bufs) {
        int ncap = p->cap_bufs ? 2 * p->cap_bufs : 64;
        void **n = realloc(p->bufs, (size_t)ncap * sizeof *n);
        if (!n) return NULL;
        p->bufs = n;
        p->cap_bufs = ncap;
    }
    void *b = calloc(1, bytes ? bytes : 1);
    if (b) p->bufs[p->nb_bufs++] = b;
    return b;
}

bool ox_adopt(ox_parser *p, void *b) {
    if (p->nb_bufs == p->cap_bufs) {
        int ncap = p->cap_bufs ? 2 * p->cap_bufs : 64;
        void **n = realloc(p->bufs, (size_t)ncap * sizeof *n);
        if (!n) {
            free(b);
            return false;
        }
        p->bufs = n;
        p->cap_bufs = ncap;
    }
    p->bufs[p->nb_bufs++] = b;
    return true;
}

kiln_status ox_const_new(ox_node *n, kiln_dtype dtype, kiln_dims dims, ox_const *out) {
    memset(out, 0, sizeof *out);
    int64_t count = ox_volume(&dims);
    if (count < 0) return ox_node_error(n, KILN_ERR_SHAPE, "constant result has invalid dims");
    int64_t bytes;
    if (__builtin_mul_overflow(count, (int64_t)kiln_dtype_size(dtype), &bytes) || bytes > OX_MAX_CONST_BYTES ||
        n->p->const_bytes + bytes > n->p->const_limit) {
        char b[128];
        return ox_node_error(n, KILN_ERR_OUT_OF_MEMORY,
                             "folding would create a constant of %s %s elements, over the importer's limit",
                             ox_dims_str(&dims, b, sizeof b), kiln_dtype_name(dtype));
    }
    void *data = ox_alloc(n->p, (size_t)bytes);
    if (!data) return ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    n->p->const_bytes += bytes;
    out->dtype = dtype;
    out->dims = dims;
    out->count = count;
    out->data = data;
    return KILN_OK;
}

/* ---- value and use tables ---- */

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

ox_value *ox_find_value(ox_parser *p, const char *name) {
    if (!p->vhash_cap || !name) return NULL;
    uint32_t mask = (uint32_t)p->vhash_cap - 1;
    for (uint32_t h = hash_str(name) & mask;; h = (h + 1) & mask) {
        int idx = p->vhash[h];
        if (!idx) return NULL;
        if (strcmp(p->values[idx - 1]->name, name) == 0) return p->values[idx - 1];
    }
}

static bool vhash_insert(ox_parser *p, int idx) {
    uint32_t mask = (uint32_t)p->vhash_cap - 1;
    uint32_t h = hash_str(p->values[idx]->name) & mask;
    while (p->vhash[h]) h = (h + 1) & mask;
    p->vhash[h] = idx + 1;
    return true;
}

ox_value *ox_new_value(ox_parser *p, const char *name) {
    if (!name || !*name || ox_find_value(p, name)) return NULL;
    if (p->nb_values == p->cap_values) {
        int ncap = p->cap_values ? 2 * p->cap_values : 64;
        ox_value **n = realloc(p->values, (size_t)ncap * sizeof *n);
        if (!n) return NULL;
        p->values = n;
        p->cap_values = ncap;
    }
    if (2 * (p->nb_values + 1) > p->vhash_cap) {
        int ncap = p->vhash_cap ? 2 * p->vhash_cap : 128;
        int *nh = calloc((size_t)ncap, sizeof *nh);
        if (!nh) return NULL;
        free(p->vhash);
        p->vhash = nh;
        p->vhash_cap = ncap;
        for (int i = 0; i < p->nb_values; i++) vhash_insert(p, i);
    }
    ox_value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->name = strdup(name);
    if (!v->name) {
        free(v);
        return NULL;
    }
    p->values[p->nb_values] = v;
    vhash_insert(p, p->nb_values);
    p->nb_values++;
    return v;
}

const ox_use *ox_find_use(const ox_parser *p, const char *name) {
    if (!p->uhash_cap || !name) return NULL;
    uint32_t mask = (uint32_t)p->uhash_cap - 1;
    for (uint32_t h = hash_str(name) & mask;; h = (h + 1) & mask) {
        int idx = p->uhash[h];
        if (!idx) return NULL;
        if (strcmp(p->uses[idx - 1].name, name) == 0) return &p->uses[idx - 1];
    }
}

/* Counts the readers of every name (node inputs, graph outputs). */
static bool build_uses(ox_parser *p, const Onnx__GraphProto *g) {
    size_t total = g->n_output;
    for (size_t i = 0; i < g->n_node; i++) total += g->node[i] ? g->node[i]->n_input : 0;
    if (total > (size_t)1 << 28) return false;
    p->uses = calloc(total ? total : 1, sizeof *p->uses);
    int cap = 16;
    while ((size_t)cap < 2 * total + 2) cap *= 2;
    p->uhash = calloc((size_t)cap, sizeof *p->uhash);
    if (!p->uses || !p->uhash) return false;
    p->uhash_cap = cap;
    uint32_t mask = (uint32_t)cap - 1;
    for (size_t k = 0; k <= g->n_node; k++) {
        size_t cnt = k < g->n_node ? (g->node[k] ? g->node[k]->n_input : 0) : g->n_output;
        for (size_t j = 0; j < cnt; j++) {
            const char *name = k < g->n_node ? g->node[k]->input[j] : (g->output[j] ? g->output[j]->name : NULL);
            if (!name || !*name) continue;
            uint32_t h = hash_str(name) & mask;
            ox_use *u = NULL;
            for (;; h = (h + 1) & mask) {
                int idx = p->uhash[h];
                if (!idx) break;
                if (strcmp(p->uses[idx - 1].name, name) == 0) {
                    u = &p->uses[idx - 1];
                    break;
                }
            }
            if (!u) {
                u = &p->uses[p->nb_uses];
                u->name = name;
                p->uhash[h] = ++p->nb_uses;
            }
            u->uses++;
            if (k < g->n_node)
                u->consumer = (int)k;
            else
                u->graph_output = true;
        }
    }
    return true;
}

/* ---- tensor names ---- */

/* Inserts t under its current name. Stale entries (renamed tensors) are dropped when the
 * table grows. False when out of memory. */
static bool tnames_put(ox_parser *p, kiln_tensor *t) {
    if (2 * (p->tnames_count + 1) > p->tnames_cap) {
        int ncap = p->tnames_cap ? 2 * p->tnames_cap : 256;
        kiln_tensor **nt = calloc((size_t)ncap, sizeof *nt);
        uint32_t *nh = calloc((size_t)ncap, sizeof *nh);
        if (!nt || !nh) {
            free(nt);
            free(nh);
            return false;
        }
        int live = 0;
        for (int i = 0; i < p->tnames_cap; i++) {
            kiln_tensor *o = p->tnames[i];
            if (!o) continue;
            uint32_t h = hash_str(kiln_tensor_name(o));
            if (h != p->tnames_hash[i]) continue; /* renamed since: its new name has its own entry */
            uint32_t k = h & (uint32_t)(ncap - 1);
            while (nt[k]) k = (k + 1) & (uint32_t)(ncap - 1);
            nt[k] = o;
            nh[k] = h;
            live++;
        }
        free(p->tnames);
        free(p->tnames_hash);
        p->tnames = nt;
        p->tnames_hash = nh;
        p->tnames_cap = ncap;
        p->tnames_count = live;
    }
    uint32_t h = hash_str(kiln_tensor_name(t)), mask = (uint32_t)p->tnames_cap - 1, k = h & mask;
    while (p->tnames[k]) k = (k + 1) & mask;
    p->tnames[k] = t;
    p->tnames_hash[k] = h;
    p->tnames_count++;
    return true;
}

/* Brings the index up to date with the network: the inputs it had before the parser came
 * (first call) and the outputs of layers added since. False when out of memory: the
 * index is then given up for the network's own (slow, but right) lookups. */
static bool tnames_sync(ox_parser *p) {
    if (p->tnames_broken) return false;
    if (!p->tnames_started) {
        p->tnames_started = true;
        for (int i = 0; i < kiln_network_num_inputs(p->net); i++)
            if (!tnames_put(p, kiln_network_input(p->net, i))) goto broken;
    }
    for (int nl = kiln_network_num_layers(p->net); p->tnames_layers < nl; p->tnames_layers++) {
        kiln_layer *l = kiln_network_layer(p->net, p->tnames_layers);
        for (int j = 0; j < kiln_layer_num_outputs(l); j++)
            if (!tnames_put(p, kiln_layer_output(l, j))) goto broken;
    }
    return true;
broken:
    p->tnames_broken = true;
    return false;
}

kiln_tensor *ox_find_tensor(ox_parser *p, const char *name) {
    if (!tnames_sync(p)) return kiln_network_find_tensor(p->net, name);
    if (!p->tnames_cap) return NULL;
    uint32_t h = hash_str(name), mask = (uint32_t)p->tnames_cap - 1;
    for (uint32_t k = h & mask; p->tnames[k]; k = (k + 1) & mask)
        if (p->tnames_hash[k] == h && strcmp(kiln_tensor_name(p->tnames[k]), name) == 0) return p->tnames[k];
    return NULL;
}

void ox_index_tensor(ox_parser *p, kiln_tensor *t) {
    /* a first sync indexes every network input, this one included */
    bool started = p->tnames_started;
    if (tnames_sync(p) && started && !tnames_put(p, t)) p->tnames_broken = true;
}

/* After t got a new name. */
static void tnames_renamed(ox_parser *p, kiln_tensor *t) {
    if (!p->tnames_broken && !tnames_put(p, t)) p->tnames_broken = true;
}

kiln_status ox_name_internal(ox_parser *p, kiln_tensor *t) {
    char buf[48];
    do snprintf(buf, sizeof buf, "onnx_tmp_%d", p->tmp_counter++);
    while (ox_find_tensor(p, buf));
    kiln_status st = kiln_tensor_set_name(t, buf);
    if (st == KILN_OK) tnames_renamed(p, t);
    return st;
}

kiln_status ox_bind_name(ox_parser *p, kiln_tensor *t, const char *name) {
    kiln_tensor *other = ox_find_tensor(p, name);
    if (other == t) return KILN_OK;
    if (other) {
        kiln_status st = ox_name_internal(p, other);
        if (st != KILN_OK) return st;
    }
    kiln_status st = kiln_tensor_set_name(t, name);
    if (st == KILN_OK) tnames_renamed(p, t);
    return st;
}

/* ---- create / destroy ---- */

kiln_status kiln_onnx_parser_create(kiln_network *net, const kiln_onnx_desc *desc, kiln_onnx_parser **out) {
    if (!out || !net) {
        set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_parser_create: network or out is NULL");
        return KILN_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (desc && (desc->size < offsetof(kiln_onnx_desc, nb_frozen) || desc->nb_shapes < 0 ||
                 (desc->nb_shapes > 0 && (!desc->shape_names || !desc->shapes)) ||
                 (desc->size >= sizeof(kiln_onnx_desc) && desc->nb_frozen < 0))) {
        set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_parser_create: bad kiln_onnx_desc (size or shapes)");
        return KILN_ERR_INVALID_ARGUMENT;
    }
    ox_parser *p = calloc(1, sizeof *p);
    if (!p) goto oom;
    p->net = net;
    p->const_limit = (int64_t)4 << 30;
    /* `size` tells which fields the caller's (possibly older) struct has */
    size_t have = desc ? desc->size : 0;
    if (have >= offsetof(kiln_onnx_desc, nb_frozen) && desc->nb_shapes > 0) {
        p->nb_shapes = desc->nb_shapes;
        p->shape_names = calloc((size_t)desc->nb_shapes, sizeof *p->shape_names);
        p->shapes = calloc((size_t)desc->nb_shapes, sizeof *p->shapes);
        p->shape_used = calloc((size_t)desc->nb_shapes, sizeof *p->shape_used);
        if (!p->shape_names || !p->shapes || !p->shape_used) goto oom;
        for (int i = 0; i < desc->nb_shapes; i++) {
            if (!desc->shape_names[i]) {
                kiln_onnx_parser_destroy(p);
                set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_parser_create: shape_names has a NULL entry");
                return KILN_ERR_INVALID_ARGUMENT;
            }
            p->shape_names[i] = strdup(desc->shape_names[i]);
            if (!p->shape_names[i]) goto oom;
            p->shapes[i] = desc->shapes[i];
        }
    }
    if (have >= sizeof(kiln_onnx_desc) && desc->nb_frozen > 0) {
        const char *bad = NULL;
        if (!desc->frozen_names || !desc->frozen_dims || !desc->frozen_values) bad = "frozen arrays are NULL";
        p->nb_frozen = desc->nb_frozen;
        p->frozen_names = calloc((size_t)desc->nb_frozen, sizeof *p->frozen_names);
        p->frozen = calloc((size_t)desc->nb_frozen, sizeof *p->frozen);
        p->frozen_used = calloc((size_t)desc->nb_frozen, sizeof *p->frozen_used);
        if (!p->frozen_names || !p->frozen || !p->frozen_used) goto oom;
        for (int i = 0; !bad && i < desc->nb_frozen; i++) {
            const kiln_weights *w = &desc->frozen_values[i];
            kiln_dims d = desc->frozen_dims[i];
            int64_t vol = ox_volume(&d);
            size_t es = kiln_dtype_size(w->dtype);
            if (!desc->frozen_names[i] || vol < 0 || w->count != vol || !es || (vol && !w->values)) {
                bad = "a frozen input has no name, bad dims, or a value count that does not match its dims";
                break;
            }
            p->frozen_names[i] = strdup(desc->frozen_names[i]);
            void *copy = ox_alloc(p, (size_t)vol * es);
            if (!p->frozen_names[i] || !copy) goto oom;
            if (vol) memcpy(copy, w->values, (size_t)vol * es);
            p->frozen[i] = (ox_const){w->dtype, d, vol, copy};
        }
        if (bad) {
            kiln_onnx_parser_destroy(p);
            char msg[200];
            snprintf(msg, sizeof msg, "kiln_onnx_parser_create: %s", bad);
            set_last_error(KILN_ERR_INVALID_ARGUMENT, msg);
            return KILN_ERR_INVALID_ARGUMENT;
        }
    }
    *out = p;
    return KILN_OK;
oom:
    kiln_onnx_parser_destroy(p);
    set_last_error(KILN_ERR_OUT_OF_MEMORY, "kiln_onnx_parser_create: out of host memory");
    return KILN_ERR_OUT_OF_MEMORY;
}

void kiln_onnx_parser_destroy(kiln_onnx_parser *p) {
    if (!p) return;
    for (int i = 0; i < p->nb_shapes; i++) free(p->shape_names ? p->shape_names[i] : NULL);
    free(p->shape_names);
    free(p->shapes);
    free(p->shape_used);
    for (int i = 0; i < p->nb_frozen; i++) free(p->frozen_names ? p->frozen_names[i] : NULL);
    free(p->frozen_names);
    free(p->frozen);
    free(p->frozen_used);
    free(p->label);
    free(p->base_dir);
    for (int i = 0; i < p->nb_bufs; i++) free(p->bufs[i]);
    free(p->bufs);
    for (int i = 0; i < p->nb_values; i++) {
        free(p->values[i]->name);
        free(p->values[i]);
    }
    free(p->values);
    free(p->vhash);
    free(p->uses);
    free(p->uhash);
    for (int i = 0; i < p->nb_errors; i++) {
        free(p->errors[i]);
        free(p->error_values[i]);
    }
    free(p->errors);
    free(p->error_status);
    free(p->error_values);
    free(p->tnames);
    free(p->tnames_hash);
    free(p->skip);
    free(p);
}

int kiln_onnx_num_errors(const kiln_onnx_parser *p) { return p ? p->nb_errors : 0; }

const char *kiln_onnx_error(const kiln_onnx_parser *p, int i) {
    return p && i >= 0 && i < p->nb_errors ? p->errors[i] : NULL;
}

kiln_status kiln_onnx_error_status(const kiln_onnx_parser *p, int i) {
    return p && i >= 0 && i < p->nb_errors ? p->error_status[i] : KILN_OK;
}

const char *kiln_onnx_error_value(const kiln_onnx_parser *p, int i) {
    return p && i >= 0 && i < p->nb_errors ? p->error_values[i] : NULL;
}

void ox_parser_set_const_limit(kiln_onnx_parser *p, int64_t bytes) {
    if (p) p->const_limit = bytes;
}

/* ---- model ---- */

static const char *S(const char *s) { return s ? s : ""; }

static bool is_default_domain(const char *d) { return !d || !*d || strcmp(d, "ai.onnx") == 0; }

static kiln_status add_initializers(ox_parser *p, const Onnx__GraphProto *g) {
    kiln_status first = KILN_OK;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *tp = g->initializer[i];
        if (!tp) continue;
        const char *name = S(tp->name);
        if (!*name) {
            kiln_status st = ox_error(p, KILN_ERR_FORMAT, "initializer %zu has no name", i);
            if (first == KILN_OK) first = st;
            continue;
        }
        char err[400];
        ox_const c;
        memset(&c, 0, sizeof c);
        void *data = NULL;
        kiln_status st = ox_tensor_decode(tp, p->base_dir, &c.dtype, &c.dims, &data, err, sizeof err);
        if (st == KILN_OK && !ox_adopt(p, data))
            st = KILN_ERR_OUT_OF_MEMORY, snprintf(err, sizeof err, "out of host memory");
        if (st != KILN_OK) {
            ox_value *v = ox_new_value(p, name);
            if (v) v->failed = true;
            st = ox_error(p, st, "initializer '%s': %s", name, err);
            if (first == KILN_OK) first = st;
            continue;
        }
        c.data = data;
        c.count = ox_volume(&c.dims);
        ox_value *v = ox_new_value(p, name);
        if (!v) {
            st = ox_error(p, KILN_ERR_FORMAT, "initializer '%s' is defined twice", name);
            if (first == KILN_OK) first = st;
            continue;
        }
        v->is_const = true;
        v->c = c;
    }
    for (size_t i = 0; i < g->n_sparse_initializer; i++) {
        const Onnx__SparseTensorProto *sp = g->sparse_initializer[i];
        const char *name = sp && sp->values ? S(sp->values->name) : "";
        ox_value *v = ox_new_value(p, name);
        if (v) v->failed = true;
        kiln_status st = ox_error(p, KILN_ERR_UNSUPPORTED, "sparse initializer '%s' is not supported", name);
        if (first == KILN_OK) first = st;
    }
    return first;
}

static kiln_status add_inputs(ox_parser *p, const Onnx__GraphProto *g) {
    kiln_status first = KILN_OK;
/* not do/while(0): `continue` must reach the input loop */
#define FAIL(...)                                                                                                      \
    {                                                                                                                  \
        kiln_status st_ = ox_error(p, __VA_ARGS__);                                                                    \
        if (first == KILN_OK) first = st_;                                                                             \
        if (v) v->failed = true;                                                                                       \
        continue;                                                                                                      \
    }
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        ox_value *v = NULL;
        if (!vi || !vi->name || !*vi->name) FAIL(KILN_ERR_FORMAT, "graph input %zu has no name", i);
        const char *name = vi->name;
        ox_value *existing = ox_find_value(p, name);
        if (existing && existing->is_const) continue; /* an initializer: a constant, not an input */
        if (existing) FAIL(KILN_ERR_FORMAT, "graph input '%s' is listed twice", name);
        v = ox_new_value(p, name);
        if (!v) FAIL(KILN_ERR_OUT_OF_MEMORY, "out of host memory");
        const Onnx__TypeProto *tp = vi->type;
        if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
            FAIL(KILN_ERR_UNSUPPORTED,
                 "graph input '%s' is not a tensor (sequences, maps and optionals are not supported)", name);
        const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
        kiln_dtype dt;
        char tbuf[24];
        if (!tt->has_elem_type || !ox_dtype_from_onnx(tt->elem_type, &dt))
            FAIL(KILN_ERR_UNSUPPORTED, "graph input '%s' has element type %s, which kiln does not support", name,
                 ox_onnx_type_name(tt->has_elem_type ? tt->elem_type : 0, tbuf, sizeof tbuf));
        int fz = -1;
        for (int k = 0; k < p->nb_frozen; k++)
            if (strcmp(p->frozen_names[k], name) == 0) fz = k;
        if (fz >= 0) {
            p->frozen_used[fz] = true;
            for (int k = 0; k < p->nb_shapes; k++)
                if (strcmp(p->shape_names[k], name) == 0) p->shape_used[k] = true;
            if (p->frozen[fz].dtype != dt)
                FAIL(KILN_ERR_DTYPE, "frozen input '%s' is given as %s, the model declares %s", name,
                     kiln_dtype_name(p->frozen[fz].dtype), kiln_dtype_name(dt));
            v->is_const = true;
            v->c = p->frozen[fz];
            continue;
        }
        kiln_dims dims;
        memset(&dims, 0, sizeof dims);
        dims.nb_dims = -1;
        bool symbolic = false;
        if (tt->shape) {
            if (tt->shape->n_dim > KILN_MAX_DIMS)
                FAIL(KILN_ERR_UNSUPPORTED, "graph input '%s' has rank %zu, more than kiln's %d", name, tt->shape->n_dim,
                     KILN_MAX_DIMS);
            dims.nb_dims = (int32_t)tt->shape->n_dim;
            for (size_t k = 0; k < tt->shape->n_dim; k++) {
                const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
                if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0) {
                    dims.d[k] = d->dim_value;
                } else {
                    dims.d[k] = -1;
                    symbolic = true;
                }
            }
        } else {
            symbolic = true;
        }
        int given = -1;
        for (int k = 0; k < p->nb_shapes; k++)
            if (strcmp(p->shape_names[k], name) == 0) given = k;
        char b1[128], b2[128];
        if (given >= 0) {
            const kiln_dims *s = &p->shapes[given];
            p->shape_used[given] = true;
            bool ok =
                s->nb_dims >= 0 && s->nb_dims <= KILN_MAX_DIMS && (dims.nb_dims < 0 || s->nb_dims == dims.nb_dims);
            for (int k = 0; ok && k < s->nb_dims; k++)
                if (s->d[k] < 0 || (dims.nb_dims >= 0 && dims.d[k] >= 0 && dims.d[k] != s->d[k])) ok = false;
            if (!ok)
                FAIL(KILN_ERR_SHAPE, "the shape given for input '%s' (%s) does not fit the model's (%s)", name,
                     ox_dims_str(s, b1, sizeof b1), ox_dims_str(&dims, b2, sizeof b2));
            dims = *s;
        } else if (symbolic) {
            FAIL(KILN_ERR_SHAPE, "input '%s' has %s shape %s: give its shape in kiln_onnx_desc (shape_names/shapes)",
                 name, dims.nb_dims < 0 ? "no" : "a symbolic", ox_dims_str(&dims, b1, sizeof b1));
        }
        kiln_tensor *t = kiln_network_add_input(p->net, name, dt, dims);
        if (!t) FAIL(KILN_ERR_INVALID_ARGUMENT, "graph input '%s': %s", name, kiln_last_error());
        ox_index_tensor(p, t);
        v->t = t;
        v->dep = v->name;
    }
#undef FAIL
    for (int k = 0; k < p->nb_frozen; k++)
        if (!p->frozen_used[k]) {
            kiln_status st =
                ox_error(p, KILN_ERR_NOT_FOUND, "kiln_onnx_desc freezes '%s', which is not an input of the model",
                         p->frozen_names[k]);
            if (first == KILN_OK) first = st;
        }
    for (int k = 0; k < p->nb_shapes; k++)
        if (!p->shape_used[k]) {
            kiln_status st = ox_error(p, KILN_ERR_NOT_FOUND,
                                      "kiln_onnx_desc gives a shape for '%s', which is not an input of the model",
                                      p->shape_names[k]);
            if (first == KILN_OK) first = st;
        }
    return first;
}

static void poison_outputs(ox_parser *p, const Onnx__NodeProto *nd) {
    for (size_t j = 0; j < nd->n_output; j++) {
        if (!nd->output[j] || !*nd->output[j]) continue;
        ox_value *v = ox_find_value(p, nd->output[j]);
        if (!v) v = ox_new_value(p, nd->output[j]);
        if (v && !v->t && !v->is_const) v->failed = true;
    }
}

/* GELU as PyTorch exports it: y = (x * (erf(x / sqrt 2) + 1)) * 0.5, matched from the
 * Div (or Mul by 1/sqrt 2) and fused into one activation when no intermediate is read
 * elsewhere. */
static bool const_scalar_near(ox_parser *p, const char *name, double want, double tol) {
    ox_value *v = ox_find_value(p, name);
    if (!v || !v->is_const || v->c.count != 1 || !ox_dtype_is_float(v->c.dtype)) return false;
    double x = ox_get_f(&v->c, 0);
    return x > want - tol && x < want + tol;
}

static int sole_consumer(ox_parser *p, const Onnx__GraphProto *g, const char *name, const char *op) {
    const ox_use *u = ox_find_use(p, name);
    if (!u || u->uses != 1 || u->graph_output) return -1;
    const Onnx__NodeProto *c = g->node[u->consumer];
    if (!c || !c->op_type || strcmp(c->op_type, op) != 0 || !is_default_domain(c->domain) || c->n_output < 1 ||
        p->skip[u->consumer])
        return -1;
    return u->consumer;
}

static bool try_gelu(ox_node *n) {
    ox_parser *p = n->p;
    const Onnx__NodeProto *d = n->n;
    const Onnx__GraphProto *g = n->g;
    if (d->n_input != 2 || d->n_output != 1 || !n->in[0] || !n->in[0]->t) return false;
    bool is_div = strcmp(d->op_type, "Div") == 0;
    if (!is_div && strcmp(d->op_type, "Mul") != 0) return false;
    if (!const_scalar_near(p, d->input[1], is_div ? 1.4142135623730951 : 0.7071067811865476, 1e-4)) return false;
    const char *x = d->input[0];
    int ie = sole_consumer(p, g, d->output[0], "Erf");
    if (ie < 0) return false;
    int ia = sole_consumer(p, g, g->node[ie]->output[0], "Add");
    if (ia < 0) return false;
    const Onnx__NodeProto *add = g->node[ia];
    if (add->n_input != 2) return false;
    const char *e_out = g->node[ie]->output[0];
    const char *one = strcmp(add->input[0], e_out) == 0 ? add->input[1] : add->input[0];
    if (!const_scalar_near(p, one, 1.0, 1e-6)) return false;
    int im = sole_consumer(p, g, add->output[0], "Mul");
    if (im < 0) return false;
    const Onnx__NodeProto *mul = g->node[im];
    if (mul->n_input != 2) return false;
    const char *other = strcmp(mul->input[0], add->output[0]) == 0 ? mul->input[1] : mul->input[0];
    if (strcmp(other, x) != 0) return false;
    int ih = sole_consumer(p, g, mul->output[0], "Mul");
    if (ih < 0) return false;
    const Onnx__NodeProto *half = g->node[ih];
    if (half->n_input != 2) return false;
    const char *h = strcmp(half->input[0], mul->output[0]) == 0 ? half->input[1] : half->input[0];
    if (!const_scalar_near(p, h, 0.5, 1e-6) || !*half->output[0] || ox_find_value(p, half->output[0])) return false;
    kiln_layer *l = kiln_network_add_activation(p->net, n->in[0]->t, KILN_ACT_GELU_ERF, 0, 0);
    if (!l) return false; /* the plain ops are imported instead, which reports the problem */
    p->skip[ie] = p->skip[ia] = p->skip[im] = p->skip[ih] = true;
    ox_value *v = ox_new_value(p, half->output[0]);
    if (!v || ox_main_layer(n, l) != KILN_OK || ox_bind_name(p, kiln_layer_output(l, 0), v->name) != KILN_OK) {
        ox_node_error(n, KILN_ERR_OUT_OF_MEMORY, "out of host memory naming the fused GELU");
        if (v) v->failed = true;
        return true;
    }
    v->t = kiln_layer_output(l, 0);
    v->dep = n->in[0]->dep;
    return true;
}

/* Absent optional inputs (empty names) do not stop folding (shape computations pass them);
 * each fold function returns OX_FOLD_SKIP when an input it requires is absent, and the
 * mapping then reports it. */
static bool all_inputs_const(const ox_node *n) {
    bool any = false;
    for (int i = 0; i < n->nin; i++) {
        if (!n->in[i]) continue;
        if (!n->in[i]->is_const) return false;
        any = true;
    }
    return any;
}

static void import_node(ox_parser *p, const Onnx__GraphProto *g, int idx) {
    const Onnx__NodeProto *nd = g->node[idx];
    ox_node n;
    memset(&n, 0, sizeof n);
    n.p = p;
    n.n = nd;
    n.g = g;
    n.index = idx;
    n.opset = p->opset;
    const char *op = nd->op_type && *nd->op_type ? nd->op_type : "?";
    if (nd->name && *nd->name)
        n.name = nd->name;
    else {
        snprintf(n.name_buf, sizeof n.name_buf, "%.60s_%d", op, idx);
        n.name = n.name_buf;
    }
    n.nout = (int)nd->n_output;
    if (!is_default_domain(nd->domain)) {
        ox_node_error(&n, KILN_ERR_UNSUPPORTED, "domain '%s' is not supported (only the default ONNX domain is)",
                      nd->domain);
        poison_outputs(p, nd);
        return;
    }
    const ox_op *o = ox_find_op(op);
    if (!o) {
        ox_node_error(&n, KILN_ERR_UNSUPPORTED, "op '%s' is not supported", op);
        poison_outputs(p, nd);
        return;
    }
    n.nin = (int)nd->n_input;
    ox_value *small[8];
    n.in = n.nin <= 8 ? small : calloc((size_t)n.nin, sizeof *n.in);
    if (!n.in) {
        ox_node_error(&n, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
        poison_outputs(p, nd);
        return;
    }
    bool failed_in = false, missing = false;
    for (int i = 0; i < n.nin; i++) {
        const char *name = nd->input[i];
        n.in[i] = NULL;
        if (!name || !*name) continue;
        ox_value *v = ox_find_value(p, name);
        if (!v) {
            ox_node_error(&n, KILN_ERR_FORMAT,
                          "input '%s' is not a graph input, an initializer or an output of an earlier node", name);
            missing = true;
            continue;
        }
        if (v->failed) failed_in = true;
        n.in[i] = v;
    }
    kiln_status st = KILN_OK;
    if (o->check) st = o->check(&n);
    if (st == KILN_OK && !missing && !failed_in) {
        bool done = false;
        if (o->fold && all_inputs_const(&n)) {
            ox_fold_result r = o->fold(&n);
            if (r == OX_FOLD_ERROR) st = KILN_ERR_UNSUPPORTED;
            done = r != OX_FOLD_SKIP;
        }
        bool fused = !done && try_gelu(&n);
        if (!done && !fused) st = o->map(&n);
        if (st == KILN_OK && !fused) {
            for (int j = 0; j < n.nout; j++) {
                const char *oname = nd->output[j];
                if (!oname || !*oname) continue;
                ox_value *v = ox_find_value(p, oname);
                if (!v || (!v->t && !v->is_const && !v->failed)) {
                    /* an optional output the mapper does not produce; fine unless read */
                    if (ox_out_used(&n, j)) {
                        ox_node_error(&n, KILN_ERR_UNSUPPORTED, "output %d ('%s') is not supported", j, oname);
                        st = KILN_ERR_UNSUPPORTED;
                    }
                }
            }
        }
    }
    if (st != KILN_OK || missing || failed_in) poison_outputs(p, nd);
    /* remember which model input the outputs derive from */
    const char *dep = NULL;
    for (int i = 0; i < n.nin && !dep; i++)
        if (n.in[i]) dep = n.in[i]->dep;
    for (size_t j = 0; dep && j < nd->n_output; j++) {
        ox_value *v = nd->output[j] && *nd->output[j] ? ox_find_value(p, nd->output[j]) : NULL;
        if (v && !v->dep) v->dep = dep;
    }
    if (n.in != small) free(n.in);
}

static kiln_status add_outputs(ox_parser *p, const Onnx__GraphProto *g) {
    kiln_status first = KILN_OK;
    for (size_t i = 0; i < g->n_output; i++) {
        const char *name = g->output[i] ? g->output[i]->name : NULL;
        kiln_status st = KILN_OK;
        if (!name || !*name) {
            st = ox_error(p, KILN_ERR_FORMAT, "graph output %zu has no name", i);
        } else {
            ox_value *v = ox_find_value(p, name);
            if (!v)
                st = ox_error(p, KILN_ERR_FORMAT, "graph output '%s' is not produced by any node", name);
            else if (v->failed)
                continue; /* reported where it failed */
            else {
                ox_node n;
                memset(&n, 0, sizeof n);
                Onnx__NodeProto fake = ONNX__NODE_PROTO__INIT;
                fake.op_type = "Output";
                n.p = p;
                n.n = &fake;
                n.g = g;
                n.opset = p->opset;
                snprintf(n.name_buf, sizeof n.name_buf, "output:%.80s", name);
                n.name = n.name_buf;
                ox_value *in[1] = {v};
                n.in = in;
                n.nin = 1;
                kiln_tensor *t = ox_in_tensor(&n, 0);
                if (!t) continue;
                if (strcmp(kiln_tensor_name(t), name) != 0) {
                    /* an alias (Identity dropped, graph input passed through): give
                     * the output its own tensor so it binds by its ONNX name */
                    kiln_layer *l = kiln_network_add_identity(p->net, t);
                    if (!l) {
                        ox_layer_failed(&n, "identity for the output");
                        continue;
                    }
                    kiln_layer_set_name(l, n.name);
                    t = kiln_layer_output(l, 0);
                    if (ox_bind_name(p, t, name) != KILN_OK) {
                        ox_node_error(&n, KILN_ERR_OUT_OF_MEMORY, "cannot name the output");
                        continue;
                    }
                }
                if (kiln_network_mark_output(p->net, t) != KILN_OK)
                    st = ox_error(p, KILN_ERR_INVALID_ARGUMENT, "graph output '%s': %s", name, kiln_last_error());
            }
        }
        if (st != KILN_OK && first == KILN_OK) first = st;
    }
    return first;
}

static kiln_status parse_model(ox_parser *p, const Onnx__ModelProto *m) {
    if (!m->has_ir_version)
        return ox_error(p, KILN_ERR_FORMAT, "not an ONNX model: no IR version (is this an ONNX file?)");
    p->ir_version = m->ir_version;
    if (m->ir_version < OX_MIN_IR || m->ir_version > OX_MAX_IR)
        return ox_error(p, KILN_ERR_UNSUPPORTED, "IR version %lld is not supported (kiln reads IR versions %d to %d)",
                        (long long)m->ir_version, OX_MIN_IR, OX_MAX_IR);
    if (!m->graph) return ox_error(p, KILN_ERR_FORMAT, "the model has no graph");
    int opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (o && is_default_domain(o->domain) && o->has_version) opset = (int)(o->version > 1000 ? 1000 : o->version);
    }
    if (opset < 0) {
        const char *other = m->n_opset_import && m->opset_import[0] ? S(m->opset_import[0]->domain) : "";
        if (*other)
            return ox_error(p, KILN_ERR_UNSUPPORTED,
                            "the model imports only domain '%s' and no opset of the default ONNX domain", other);
        return ox_error(p, KILN_ERR_FORMAT, "the model imports no opset of the default ONNX domain");
    }
    if (opset < OX_MIN_OPSET || opset > OX_MAX_OPSET)
        return ox_error(p, KILN_ERR_UNSUPPORTED, "opset %d is not supported (kiln reads opsets %d to %d)", opset,
                        OX_MIN_OPSET, OX_MAX_OPSET);
    p->opset = opset;
    const Onnx__GraphProto *g = m->graph;
    for (size_t i = 0; i < g->n_node; i++)
        if (!g->node[i]) return ox_error(p, KILN_ERR_FORMAT, "node %zu is empty", i);
    kiln_status st = add_initializers(p, g);
    kiln_status st2 = add_inputs(p, g);
    if (st == KILN_OK) st = st2;
    p->skip = calloc(g->n_node ? g->n_node : 1, sizeof *p->skip);
    if (!p->skip || !build_uses(p, g)) return ox_error(p, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    for (size_t i = 0; i < g->n_node; i++)
        if (!p->skip[i]) import_node(p, g, (int)i);
    st2 = add_outputs(p, g);
    if (st == KILN_OK) st = st2;
    return st;
}

static kiln_status parse_bytes(ox_parser *p, const void *data, size_t size) {
    if (p->parsed)
        return push_error(p, KILN_ERR_INVALID_STATE, "kiln_onnx: a parser reads one model; create another one", NULL);
    p->parsed = true;
    kiln_status st;
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size == 0) {
        st = ox_error(p, KILN_ERR_FORMAT, "the file is empty");
    } else if (size >= 8 && memcmp(data, png, 8) == 0) {
        st = ox_error(p, KILN_ERR_FORMAT, "this is a PNG image, not an ONNX model");
    } else if (!ox_proto_depth_ok(&onnx__model_proto__descriptor, data, size, OX_MAX_PROTO_DEPTH)) {
        st = ox_error(p, KILN_ERR_FORMAT, "not a valid ONNX model: messages nested more than %d deep",
                      OX_MAX_PROTO_DEPTH);
    } else {
        Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, size, data);
        if (!m) {
            st = ox_error(p, KILN_ERR_FORMAT,
                          "not a valid ONNX model: the protobuf data is truncated or corrupt (%zu bytes)", size);
        } else {
            st = parse_model(p, m);
            onnx__model_proto__free_unpacked(m, NULL);
        }
    }
    if (p->nb_errors == 0) return KILN_OK;
    st = p->error_status[0];
    char msg[1200];
    if (p->nb_errors > 1)
        snprintf(msg, sizeof msg, "%s (and %d more problems)", p->errors[0], p->nb_errors - 1);
    else
        snprintf(msg, sizeof msg, "%s", p->errors[0]);
    set_last_error(st, msg);
    return st;
}

kiln_status kiln_onnx_parse_memory(kiln_onnx_parser *p, const void *data, size_t size, const char *base_dir) {
    if (!p || (!data && size)) {
        set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_parse_memory: parser or data is NULL");
        return KILN_ERR_INVALID_ARGUMENT;
    }
    if (!p->label) p->label = strdup("<memory>");
    if (base_dir && !p->base_dir) p->base_dir = strdup(base_dir);
    if (!p->label || (base_dir && !p->base_dir)) {
        set_last_error(KILN_ERR_OUT_OF_MEMORY, "kiln_onnx_parse_memory: out of host memory");
        return KILN_ERR_OUT_OF_MEMORY;
    }
    return parse_bytes(p, data, size);
}

kiln_status kiln_onnx_parse_file(kiln_onnx_parser *p, const char *path) {
    if (!p || !path) {
        set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_parse_file: parser or path is NULL");
        return KILN_ERR_INVALID_ARGUMENT;
    }
    free(p->label);
    free(p->base_dir);
    p->label = strdup(path);
    const char *slash = strrchr(path, '/');
    p->base_dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!p->label || !p->base_dir) {
        set_last_error(KILN_ERR_OUT_OF_MEMORY, "kiln_onnx_parse_file: out of host memory");
        return KILN_ERR_OUT_OF_MEMORY;
    }
    void *data;
    size_t size;
    char err[600];
    kiln_status st = ox_read_whole_file(path, &data, &size, err, sizeof err);
    if (st != KILN_OK) {
        p->parsed = true;
        return push_error(p, st, err, NULL);
    }
    st = parse_bytes(p, data, size);
    free(data);
    return st;
}

/* ---- tensor files (public) ---- */

kiln_status kiln_onnx_read_tensor_file(const char *path, char **name_out, kiln_dtype *dtype, kiln_dims *dims,
                                       void **data) {
    char err[700];
    if (!path || !dtype || !dims || !data) {
        set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_read_tensor_file: NULL argument");
        return KILN_ERR_INVALID_ARGUMENT;
    }
    kiln_status st = ox_tensor_read_file(path, name_out, dtype, dims, data, err, sizeof err);
    if (st != KILN_OK) set_last_error(st, err);
    return st;
}

kiln_status kiln_onnx_write_tensor_file(const char *path, const char *name, kiln_dtype dtype, kiln_dims dims,
                                        const void *data) {
    char err[700];
    if (!path || (!data && kiln_dims_volume(&dims) != 0)) {
        set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_write_tensor_file: NULL argument");
        return KILN_ERR_INVALID_ARGUMENT;
    }
    kiln_status st = ox_tensor_write_file(path, name, dtype, dims, data, err, sizeof err);
    if (st != KILN_OK) set_last_error(st, err);
    return st;
}
