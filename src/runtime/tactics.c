/* kiln: kernel choices ("tactics"). Preparing an engine's nodes with a choice made before
 * (stored in the plan, or remembered in a timing cache file keyed by layer signature and
 * device fingerprint) instead of timing every candidate again, and the cache file itself
 * (format in docs/PLAN_FORMAT.md). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/bytes.h"
#include "runtime/backend.h"

#define TC_MAGIC "KILNTCAC"
#define TC_VERSION 1u
#define TC_HEADER 32u
#define TC_MAX_KEY (1u << 16)

typedef struct tc_entry {
    uint64_t hash;
    uint8_t *key, *val;
    uint32_t key_len, val_len;
} tc_entry;

struct ke_tcache {
    kiln_env env;
    char *path;
    tc_entry *e;
    int n, cap;
    bool dirty;
};


int ke_tcache_size(const ke_tcache *c) { return c ? c->n : 0; }

static tc_entry *tc_find(ke_tcache *c, const uint8_t *key, size_t len) {
    uint64_t h = kiln_fnv1a64(key, len);
    for (int i = 0; i < c->n; i++)
        if (c->e[i].hash == h && c->e[i].key_len == len && memcmp(c->e[i].key, key, len) == 0) return &c->e[i];
    return NULL;
}

/* Adds or replaces an entry; false when out of memory (the cache just misses it). */
static bool tc_put(ke_tcache *c, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    if (key_len > TC_MAX_KEY || val_len > KE_TACTIC_MAX) return false;
    tc_entry *x = tc_find(c, key, key_len);
    if (x && x->val_len == val_len && memcmp(x->val, val, val_len) == 0) return true;
    uint8_t *v = kiln_alloc(&c->env, val_len ? val_len : 1);
    if (!v) return false;
    memcpy(v, val, val_len);
    if (!x) {
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 64;
            tc_entry *ne = kiln_alloc(&c->env, (size_t)cap * sizeof *ne);
            if (!ne) {
                kiln_free(&c->env, v);
                return false;
            }
            if (c->n) memcpy(ne, c->e, (size_t)c->n * sizeof *ne);
            kiln_free(&c->env, c->e);
            c->e = ne;
            c->cap = cap;
        }
        uint8_t *k = kiln_alloc(&c->env, key_len ? key_len : 1);
        if (!k) {
            kiln_free(&c->env, v);
            return false;
        }
        memcpy(k, key, key_len);
        x = &c->e[c->n++];
        *x = (tc_entry){kiln_fnv1a64(key, key_len), k, NULL, (uint32_t)key_len, 0};
    }
    kiln_free(&c->env, x->val);
    x->val = v;
    x->val_len = (uint32_t)val_len;
    c->dirty = true;
    return true;
}

const uint8_t *ke_tcache_get(ke_tcache *c, const uint8_t *key, size_t key_len, size_t *val_len) {
    const tc_entry *x = c ? tc_find(c, key, key_len) : NULL;
    if (val_len) *val_len = x ? x->val_len : 0;
    return x ? x->val : NULL;
}

bool ke_tcache_put(ke_tcache *c, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    return c && tc_put(c, key, key_len, val, val_len);
}

static void tc_clear(ke_tcache *c) {
    for (int i = 0; i < c->n; i++) {
        kiln_free(&c->env, c->e[i].key);
        kiln_free(&c->env, c->e[i].val);
    }
    c->n = 0;
}

/* Parses a cache file image; false (entries dropped) if anything is off. */
static bool tc_parse(ke_tcache *c, const uint8_t *b, size_t size, char *why, size_t why_size) {
    if (size < TC_HEADER || memcmp(b, TC_MAGIC, 8) != 0) {
        snprintf(why, why_size, "not a kiln timing cache");
        return false;
    }
    kb_reader h = {b, size, 8, false};
    uint32_t version = kbr_u32(&h), count = kbr_u32(&h);
    uint64_t payload = kbr_u64(&h);
    uint32_t crc = kbr_u32(&h), reserved = kbr_u32(&h);
    if (version != TC_VERSION) {
        snprintf(why, why_size, "format version %u, this kiln writes %u", version, TC_VERSION);
        return false;
    }
    if (reserved != 0 || payload != size - TC_HEADER || kiln_crc32(0, b + TC_HEADER, size - TC_HEADER) != crc) {
        snprintf(why, why_size, "truncated or corrupt");
        return false;
    }
    kb_reader r = {b + TC_HEADER, size - TC_HEADER, 0, false};
    for (uint32_t i = 0; i < count && !r.bad; i++) {
        uint32_t kl = kbr_u32(&r);
        const uint8_t *k = kl <= TC_MAX_KEY ? kbr_take(&r, kl) : NULL;
        uint32_t vl = kbr_u32(&r);
        const uint8_t *v = vl <= KE_TACTIC_MAX ? kbr_take(&r, vl) : NULL;
        if (!k || !v || r.bad) {
            r.bad = true;
            break;
        }
        if (!tc_put(c, k, kl, v, vl)) {
            snprintf(why, why_size, "out of host memory");
            return false;
        }
    }
    if (r.bad || r.pos != r.size) {
        snprintf(why, why_size, "bad entry table");
        return false;
    }
    c->dirty = false;
    return true;
}

ke_tcache *ke_tcache_open(const kiln_env *env, const char *path) {
    ke_tcache *c = kiln_calloc(env, 1, sizeof *c);
    size_t pl = path ? strlen(path) : 0;
    if (c) c->path = kiln_alloc(env, pl + 1);
    if (!c || !c->path) {
        kiln_free(env, c);
        kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "timing cache: out of host memory");
        return NULL;
    }
    c->env = *env;
    memcpy(c->path, path ? path : "", pl + 1);
    FILE *f = pl ? fopen(path, "rb") : NULL;
    if (!f) return c; /* a new cache */
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    uint8_t *buf = size >= 0 && fseek(f, 0, SEEK_SET) == 0 ? kiln_alloc(env, (size_t)size + 1) : NULL;
    bool read_ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    char why[128] = "cannot read the file";
    if (read_ok && size == 0) { /* an empty file (made by mktemp, say) is a new cache */
        kiln_free(env, buf);
        return c;
    }
    if (!read_ok || !tc_parse(c, buf, (size_t)size, why, sizeof why)) {
        tc_clear(c);
        kiln_log(env, KILN_LOG_WARNING, "timing cache '%s': %s; ignoring it (kernels are timed again and the file rewritten)",
                 path, why);
        c->dirty = true;
    }
    kiln_free(env, buf);
    return c;
}

kiln_status ke_tcache_save(ke_tcache *c) {
    if (!c || !c->dirty || !c->path[0]) return KILN_OK;
    const kiln_env *env = &c->env;
    kb_writer w = {.env = env};
    uint8_t header[TC_HEADER] = {0};
    kbw_bytes(&w, header, sizeof header);
    for (int i = 0; i < c->n; i++) {
        kbw_u32(&w, c->e[i].key_len);
        kbw_bytes(&w, c->e[i].key, c->e[i].key_len);
        kbw_u32(&w, c->e[i].val_len);
        kbw_bytes(&w, c->e[i].val, c->e[i].val_len);
    }
    if (w.oom) {
        kiln_free(env, w.data);
        kiln_log(env, KILN_LOG_WARNING, "timing cache '%s' not written: out of host memory", c->path);
        return KILN_ERR_OUT_OF_MEMORY;
    }
    memcpy(w.data, TC_MAGIC, 8);
    kbw_patch_u32(&w, 8, TC_VERSION);
    kbw_patch_u32(&w, 12, (uint32_t)c->n);
    kbw_patch_u64(&w, 16, w.size - TC_HEADER);
    kbw_patch_u32(&w, 24, kiln_crc32(0, w.data + TC_HEADER, w.size - TC_HEADER));
    /* a temporary file renamed over the old one: readers never see half a file */
    size_t tl = strlen(c->path) + 32;
    char *tmp = kiln_alloc(env, tl);
    kiln_status st = KILN_OK;
    if (!tmp) {
        kiln_log(env, KILN_LOG_WARNING, "timing cache '%s' not written: out of host memory", c->path);
        st = KILN_ERR_OUT_OF_MEMORY;
    } else {
        snprintf(tmp, tl, "%s.tmp%ld", c->path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        bool ok = f && fwrite(w.data, 1, w.size, f) == w.size;
        if (f && fclose(f) != 0) ok = false;
        if (ok && rename(tmp, c->path) != 0) ok = false;
        if (!ok) {
            remove(tmp);
            kiln_log(env, KILN_LOG_WARNING, "timing cache '%s' not written: cannot write the file", c->path);
            st = KILN_ERR_IO;
        } else {
            c->dirty = false;
        }
    }
    kiln_free(env, tmp);
    kiln_free(env, w.data);
    return st;
}

void ke_tcache_close(ke_tcache *c) {
    if (!c) return;
    kiln_env env = c->env;
    tc_clear(c);
    kiln_free(&env, c->e);
    kiln_free(&env, c->path);
    kiln_free(&env, c);
}

/* ---- layer signatures ---- */

static void sig_tensor(kb_writer *w, const kiln_engine *e, const kiln_tensor *t) {
    if (!t) {
        kbw_u32(w, UINT32_MAX);
        return;
    }
    kbw_u32(w, (uint32_t)t->dtype);
    kbw_u32(w, (uint32_t)kg_storage(t));
    kbw_u32(w, (uint32_t)t->format);
    kbw_u32(w, (uint32_t)e->plan[t->id].storage == KE_CONST);
    kbw_u32(w, (uint32_t)t->dims.nb_dims);
    for (int k = 0; k < t->dims.nb_dims; k++) kbw_i64(w, t->dims.d[k]);
    if (t->pitch) { /* a channel slice of a concat (cache keys of dense tensors unchanged) */
        kbw_u32(w, 0x48544950u);
        kbw_i64(w, t->pitch);
    }
}

/* Everything a kernel choice may depend on: the device and libraries (the fingerprint),
 * the build flags, and the layer's type, attributes, tensors and weight sizes. Names and
 * weight values are left out, so the same layer in another network hits the cache. */
static void signature(kb_writer *w, const kiln_engine *e, const kiln_layer *l) {
    kbw_str(w, e->backend->name);
    kbw_str(w, e->fingerprint);
    kbw_u32(w, e->flags);
    kbw_u32(w, (uint32_t)l->type);
    kbw_u8(w, (uint8_t)((l->tf32_ok ? 1 : 0) | (l->res_after_act ? 2 : 0)));
    kbw_bytes(w, &l->p, sizeof l->p);
    kbw_u32(w, l->has_post_act ? (uint32_t)l->post_act.type : UINT32_MAX);
    kbw_f32(w, l->has_post_act ? l->post_act.alpha : 0.0f);
    kbw_f32(w, l->has_post_act ? l->post_act.beta : 0.0f);
    kbw_u32(w, (uint32_t)l->nb_aux);
    for (int k = 0; k < l->nb_aux; k++) kbw_i64(w, l->aux[k]);
    kbw_u32(w, (uint32_t)l->nb_inputs);
    for (int k = 0; k < l->nb_inputs; k++) sig_tensor(w, e, l->inputs[k]);
    kbw_u32(w, (uint32_t)l->nb_outputs);
    for (int k = 0; k < l->nb_outputs; k++) sig_tensor(w, e, l->outputs[k]);
    for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
        kbw_u32(w, (uint32_t)l->w[k].dtype);
        kbw_i64(w, l->w[k].count);
    }
}

static double tc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

kiln_status ke_prepare_nodes(kiln_engine *e, ke_tcache *cache, bool use_stored,
                             void (*progress)(const void *user, int done, int total), const void *user) {
    const kiln_env *env = &e->env;
    kb_writer key = {.env = env};
    uint8_t buf[KE_TACTIC_MAX];
    int reused = 0, choices = 0;
    kiln_status st = KILN_OK;
    double t_all = tc_now_ms(), slow_ms[3] = {0, 0, 0};
    int slow[3] = {-1, -1, -1};
    for (int n = 0; n < e->nb_nodes && st == KILN_OK; n++) {
        if (progress) progress(user, n, e->nb_nodes);
        double t_node = tc_now_ms();
        ke_node *node = &e->nodes[n];
        bool keyed = false;
        node->hint = NULL;
        node->hint_len = 0;
        node->hint_used = false;
        if (use_stored && node->tactic_len) {
            node->hint = node->tactic;
            node->hint_len = node->tactic_len;
        } else if (cache && e->backend->tactic && !node->skip) {
            key.size = 0;
            signature(&key, e, node->layer);
            if (e->backend->tactic_context) kbw_u32(&key, e->backend->tactic_context(e, node));
            keyed = !key.oom;
            const tc_entry *x = keyed ? tc_find(cache, key.data, key.size) : NULL;
            if (x) {
                node->hint = x->val;
                node->hint_len = x->val_len;
            }
        }
        st = e->backend->prepare(e, node);
        if (st != KILN_OK) break;
        if (node->scratch_bytes > e->scratch_bytes) e->scratch_bytes = node->scratch_bytes;
        if (node->skip && node->layer->type == KILN_LAYER_CONSTANT)
            e->plan[node->layer->outputs[0]->id].cdata = e->backend->const_data(node);
        size_t len = e->backend->tactic && !node->skip ? e->backend->tactic(node, buf, sizeof buf) : 0;
        if (len > sizeof buf) len = 0;
        node->hint = NULL;
        node->hint_len = 0;
        if (len) {
            choices++;
            reused += node->hint_used;
        }
        if (len != node->tactic_len || (len && memcmp(buf, node->tactic, len) != 0)) {
            uint8_t *t = len ? kiln_alloc(env, len) : NULL;
            if (len && !t) {
                st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory recording kernel choices");
                break;
            }
            if (len) memcpy(t, buf, len);
            kiln_free(env, node->tactic);
            node->tactic = t;
            node->tactic_len = len;
        }
        if (keyed && len && !node->hint_used) tc_put(cache, key.data, key.size, buf, len);
        double ms = tc_now_ms() - t_node; /* the three slowest, for the verbose line below */
        for (int k = 0; k < 3; k++)
            if (slow[k] < 0 || ms > slow_ms[k]) {
                for (int j = 2; j > k; j--) slow[j] = slow[j - 1], slow_ms[j] = slow_ms[j - 1];
                slow[k] = n;
                slow_ms[k] = ms;
                break;
            }
    }
    kiln_free(env, key.data);
    if (st != KILN_OK) return st;
    if (e->nb_nodes) {
        char line[600];
        int at = snprintf(line, sizeof line, "%s kernels: %d layers in %.0f ms; slowest", e->untimed ? "probe" : "engine",
                          e->nb_nodes, tc_now_ms() - t_all);
        for (int k = 0; k < 3 && slow[k] >= 0 && at > 0 && (size_t)at < sizeof line; k++)
            at += snprintf(line + at, sizeof line - at, "%s %s (%s) %.1f ms", k ? "," : ":",
                           e->nodes[slow[k]].layer->name, kiln_layer_type_name(e->nodes[slow[k]].layer->type),
                           slow_ms[k]);
        kiln_log(env, KILN_LOG_VERBOSE, "%s", line);
    }
    /* views of constants read the constant's data */
    for (int t = 0; t < e->graph.nb_tensors; t++) {
        ke_tensor_plan *p = &e->plan[t];
        if (p->storage == KE_CONST) p->cdata = e->plan[p->root].cdata;
    }
    if (progress) progress(user, e->nb_nodes, e->nb_nodes);
    if (choices && !e->untimed) /* a range probe's heuristic picks are not worth a line */
        kiln_log(env, KILN_LOG_INFO, "kernel choices: %d of %d reused%s, %d timed", reused, choices,
                 use_stored ? " from the plan" : cache ? " from the timing cache" : "", choices - reused);
    return KILN_OK;
}
