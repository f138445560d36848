/* kiln inspect: what a model holds (inputs, outputs, opsets, op counts, what kiln cannot
 * import) or what a plan holds (layers after optimization with precision, kernel and
 * memory, the device fingerprint, the format and writer versions). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef KILN_CLI_HAVE_ONNX
#include "kiln/onnx.h"
#endif

static const char help[] =
    "usage: kiln inspect MODEL.onnx|MODEL.plan [OPTIONS]\n"
    "\n"
    "ONNX model: IR version, opsets, producer, inputs and outputs (symbolic dimensions by\n"
    "name), op counts, initializers, and whether kiln can import it: every unsupported op or\n"
    "other problem the importer finds, one per line.\n"
    "Plan: format and writer version, device and fingerprint, builder flags, memory, inputs and\n"
    "outputs, and each layer as the engine runs it (after fusion): type, kernel, fused\n"
    "activation, precision, output bytes and weight bytes.\n"
    "\n"
    "options:\n"
    "  --shapes NAME:DIMS,...     shapes for symbolic inputs when checking the import (default:\n"
    "                             every symbolic dimension is 1)\n"
    "  --json FILE                the same as JSON ('-': standard output)\n"
    "  -q, --quiet                errors only     -v, --verbose   library log at verbose level\n"
    "\n"
    "examples:\n"
    "  kiln inspect model.onnx\n"
    "  kiln inspect model.plan --json -\n";

/* ---- plan files: the header, fingerprint and per-layer sizes, read from the format of
 * docs/PLAN_FORMAT.md (the engine API has no call for them); every read bounds-checked ---- */

typedef struct preader {
    const uint8_t *p;
    size_t size, at;
    bool bad;
} preader;

static uint64_t rd_uint(preader *r, int bytes) {
    if (r->bad || r->size - r->at < (size_t)bytes || r->at > r->size) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->at + i] << (8 * i);
    r->at += (size_t)bytes;
    return v;
}

static void rd_skip(preader *r, uint64_t n) {
    if (r->bad || n > r->size - r->at) r->bad = true;
    else r->at += (size_t)n;
}

typedef struct plan_layer {
    char *name;
    uint32_t type;
    int64_t out_bytes, weight_bytes;
    bool skip;
} plan_layer;

typedef struct plan_facts {
    uint32_t version, kv_major, kv_minor, kv_patch;
    char fingerprint[1024];
    uint32_t device, flags, threads;
    bool have_io;
    plan_layer *layers;
    int nb_layers;
} plan_facts;

static void plan_facts_free(plan_facts *f) {
    for (int i = 0; i < f->nb_layers; i++) free(f->layers[i].name);
    free(f->layers);
    memset(f, 0, sizeof *f);
}

static void read_graph(preader *g, plan_facts *f) {
    uint32_t nt = (uint32_t)rd_uint(g, 4);
    if (g->bad || nt > g->size) return;
    int64_t *tbytes = calloc(nt ? nt : 1, sizeof *tbytes);
    if (!tbytes) return;
    for (uint32_t t = 0; t < nt && !g->bad; t++) {
        rd_skip(g, rd_uint(g, 4));
        uint32_t dtype = (uint32_t)rd_uint(g, 4), rank = (uint32_t)rd_uint(g, 4);
        if (rank > KILN_MAX_DIMS) g->bad = true;
        int64_t vol = 1;
        for (uint32_t k = 0; k < rank && !g->bad; k++) {
            int64_t d = (int64_t)rd_uint(g, 8);
            vol = d >= 0 && vol < ((int64_t)1 << 50) ? vol * d : 0;
        }
        tbytes[t] = vol * (int64_t)kiln_dtype_size((kiln_dtype)dtype);
    }
    uint32_t nl = (uint32_t)rd_uint(g, 4);
    if (!g->bad && nl <= g->size) f->layers = calloc(nl ? nl : 1, sizeof *f->layers);
    for (uint32_t i = 0; f->layers && i < nl && !g->bad; i++) {
        plan_layer *l = &f->layers[i];
        l->type = (uint32_t)rd_uint(g, 4);
        uint32_t len = (uint32_t)rd_uint(g, 4);
        if (!g->bad && len <= g->size - g->at) l->name = strndup((const char *)g->p + g->at, len);
        rd_skip(g, len);
        uint32_t nin = (uint32_t)rd_uint(g, 4);
        rd_skip(g, (uint64_t)nin * 4);
        uint32_t nout = (uint32_t)rd_uint(g, 4);
        for (uint32_t k = 0; k < nout && !g->bad; k++) {
            uint32_t id = (uint32_t)rd_uint(g, 4);
            if (id < nt) l->out_bytes += tbytes[id];
        }
        rd_skip(g, rd_uint(g, 4)); /* attribute record */
        l->skip = (rd_uint(g, 1) & 4) != 0;
        rd_skip(g, 12); /* fused activation */
        rd_skip(g, rd_uint(g, 4) * 8);
        for (int k = 0; k < 4 && !g->bad; k++) {
            uint32_t dt = (uint32_t)rd_uint(g, 4);
            int64_t count = (int64_t)rd_uint(g, 8);
            rd_uint(g, 8);
            if (count > 0) l->weight_bytes += count * (int64_t)kiln_dtype_size((kiln_dtype)dt);
        }
        if (!g->bad) f->nb_layers = (int)i + 1;
    }
    free(tbytes);
}

static bool read_plan_facts(const uint8_t *p, size_t size, plan_facts *f) {
    memset(f, 0, sizeof *f);
    preader h = {p, size, 8, false};
    f->version = (uint32_t)rd_uint(&h, 4);
    rd_uint(&h, 4);
    uint32_t kv = (uint32_t)rd_uint(&h, 4);
    f->kv_major = kv & 0xFFFF;
    f->kv_minor = kv >> 16;
    f->kv_patch = (uint32_t)rd_uint(&h, 4);
    rd_uint(&h, 8);
    rd_uint(&h, 4);
    uint32_t nsec = (uint32_t)rd_uint(&h, 4);
    uint64_t table = rd_uint(&h, 8);
    if (h.bad || f->version != 1 || table > size || nsec > 64) return !h.bad;
    preader t = {p, size, (size_t)table, false};
    for (uint32_t i = 0; i < nsec && !t.bad; i++) {
        uint32_t id = (uint32_t)rd_uint(&t, 4);
        rd_uint(&t, 4);
        uint64_t off = rd_uint(&t, 8), len = rd_uint(&t, 8);
        if (t.bad || off > size || len > size - off) break;
        preader s = {p + off, (size_t)len, 0, false};
        if (id == 1) {
            uint32_t n = (uint32_t)rd_uint(&s, 4);
            if (!s.bad && n <= s.size - s.at)
                snprintf(f->fingerprint, sizeof f->fingerprint, "%.*s", (int)n, (const char *)s.p + s.at);
        } else if (id == 2) {
            read_graph(&s, f);
        } else if (id == 5) {
            f->device = (uint32_t)rd_uint(&s, 4);
            f->flags = (uint32_t)rd_uint(&s, 4);
            f->threads = (uint32_t)rd_uint(&s, 4);
            f->have_io = !s.bad;
        }
    }
    return true;
}

static const plan_layer *find_plan_layer(const plan_facts *f, const char *name) {
    for (int i = 0; name && i < f->nb_layers; i++)
        if (f->layers[i].name && !f->layers[i].skip && strcmp(f->layers[i].name, name) == 0) return &f->layers[i];
    return NULL;
}

static void flags_str(uint32_t flags, char *buf, size_t size) {
    static const char *names[] = {"fp16", "tf32", "int8", "refit"};
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < 4; i++)
        if (flags & (1u << i)) at += (size_t)snprintf(buf + at, size - at, "%s%s", at ? " " : "", names[i]);
    if (!at) snprintf(buf, size, "none");
}

/* A valid plan for a device this kiln cannot run (a CUDA plan on a CPU-only build or
 * machine): what the file says, without kernels. */
static int inspect_unloadable(const cli *c, const char *path, size_t size, const plan_facts *f, const char *why,
                              const char *json_path) {
    char b1[64], b2[64], fl[64];
    flags_str(f->flags, fl, sizeof fl);
    cli_warn(c, "%s cannot be loaded here (%s): showing what the file holds, without kernels", path, why);
    int n = 0;
    for (int i = 0; i < f->nb_layers; i++) n += !f->layers[i].skip;
    if (c->verbosity >= 1) {
        printf("%s: kiln plan, format %u, written by kiln %u.%u.%u, %s\n", path, f->version, f->kv_major, f->kv_minor,
               f->kv_patch, cli_human_bytes((double)size, b1, sizeof b1));
        printf("  device       %s\n", f->device == KILN_DEVICE_CUDA ? "cuda" : f->device == KILN_DEVICE_CPU ? "cpu" : "?");
        printf("  fingerprint  %s\n", f->fingerprint[0] ? f->fingerprint : "(not readable)");
        printf("  flags        %s\n", fl);
        printf("layers (%d run, as stored):\n", n);
        printf("  %4s  %-28s %-14s %10s %10s\n", "#", "name", "type", "output", "weights");
        for (int i = 0, k = 0; i < f->nb_layers; i++) {
            const plan_layer *l = &f->layers[i];
            if (l->skip) continue;
            printf("  %4d  %-28s %-14s %10s %10s\n", k++, l->name ? l->name : "?",
                   l->type < KILN_LAYER_TYPE_COUNT ? kiln_layer_type_name((kiln_layer_type)l->type) : "?",
                   cli_human_bytes((double)l->out_bytes, b1, sizeof b1), cli_human_bytes((double)l->weight_bytes, b2, sizeof b2));
        }
    }
    if (!json_path) return CLI_OK;
    json j;
    atomic_file af;
    if (!json_open(c, &j, &af, json_path)) return CLI_FAIL;
    json_begin_object(&j);
    json_key(&j, "file"), json_str(&j, path);
    json_key(&j, "kind"), json_str(&j, "plan");
    json_key(&j, "loadable"), json_bool(&j, false);
    json_key(&j, "reason"), json_str(&j, why);
    json_key(&j, "format_version"), json_int(&j, f->version);
    json_key(&j, "device"), json_str(&j, f->device == KILN_DEVICE_CUDA ? "cuda" : "cpu");
    json_key(&j, "fingerprint"), json_str(&j, f->fingerprint);
    json_key(&j, "flags"), json_str(&j, fl);
    json_key(&j, "layers");
    json_begin_array(&j);
    for (int i = 0; i < f->nb_layers; i++) {
        const plan_layer *l = &f->layers[i];
        if (l->skip) continue;
        json_begin_object(&j);
        json_key(&j, "name"), json_str(&j, l->name ? l->name : "");
        json_key(&j, "type"), json_str(&j, l->type < KILN_LAYER_TYPE_COUNT ? kiln_layer_type_name((kiln_layer_type)l->type) : "?");
        json_key(&j, "output_bytes"), json_int(&j, l->out_bytes);
        json_key(&j, "weight_bytes"), json_int(&j, l->weight_bytes);
        json_end_object(&j);
    }
    json_end_array(&j);
    json_end_object(&j);
    return json_close(c, &j, &af, json_path);
}

static int inspect_plan(const cli *c, const char *path, const uint8_t *data, size_t size, const char *json_path) {
    plan_facts f;
    read_plan_facts(data, size, &f);
    loaded_model m;
    memset(&m, 0, sizeof m);
    kiln_runtime_desc desc = KILN_RUNTIME_DESC_INIT;
    desc.log = cli_log;
    desc.log_user = (void *)c;
    desc.log_level = cli_log_level(c);
    kiln_runtime *rt = NULL;
    kiln_status st = kiln_runtime_create(&desc, &rt);
    if (st == KILN_OK) st = kiln_runtime_load(rt, data, size, &m.engine);
    kiln_runtime_destroy(rt);
    if (st != KILN_OK) {
        int rc;
        /* valid, but for a backend this kiln lacks: still worth showing */
        if ((st == KILN_ERR_UNSUPPORTED || st == KILN_ERR_DEVICE) && f.nb_layers > 0 && f.have_io)
            rc = inspect_unloadable(c, path, size, &f, cli_last_error(), json_path);
        else
            rc = cli_fail(c, "%s: %s", path, cli_last_error());
        plan_facts_free(&f);
        return rc;
    }
    int rc = CLI_OK;
    kiln_engine *e = m.engine;
    size_t act, scratch, weights;
    kiln_engine_memory(e, &act, &scratch, &weights);
    const char *dev = kiln_engine_device(e) == KILN_DEVICE_CUDA ? "cuda" : "cpu";
    char b1[64], b2[64], b3[64], fl[64];
    flags_str(f.flags, fl, sizeof fl);
    int nl = kiln_engine_num_layers(e);
    if (c->verbosity >= 1) {
        printf("%s: kiln plan, format %u, written by kiln %u.%u.%u, %s\n", path, f.version, f.kv_major, f.kv_minor, f.kv_patch,
               cli_human_bytes((double)size, b1, sizeof b1));
        printf("  device       %s\n", dev);
        printf("  fingerprint  %s\n", f.fingerprint[0] ? f.fingerprint : "(not readable)");
        if (f.have_io) {
            printf("  flags        %s\n", fl);
            if (f.threads) printf("  threads      %u per context\n", f.threads);
            else printf("  threads      all cores\n");
        }
        printf("  memory       activations %s + scratch %s per context, weights %s\n",
               cli_human_bytes((double)act, b1, sizeof b1), cli_human_bytes((double)scratch, b2, sizeof b2),
               cli_human_bytes((double)weights, b3, sizeof b3));
        for (int i = 0; i < kiln_engine_num_io(e); i++) {
            const char *name = kiln_engine_io_name(e, i);
            kiln_dims d;
            kiln_dtype dt;
            kiln_engine_io_dims(e, name, &d);
            kiln_engine_io_dtype(e, name, &dt);
            printf("  %-12s %s %s %s\n", kiln_engine_io_mode(e, name) == KILN_IO_INPUT ? "input" : "output", name,
                   kiln_dtype_name(dt), cli_dims_str(&d, b1, sizeof b1));
        }
        printf("layers (%d, as the engine runs them):\n", nl);
        /* columns as wide as their longest entry */
        int wn = 4, wt = 4, wk = 6, wf = 5;
        for (int i = 0; i < nl; i++) {
            kiln_layer_info li;
            if (kiln_engine_layer_info(e, i, &li) != KILN_OK) continue;
            wn = (int)strlen(li.name) > wn ? (int)strlen(li.name) : wn;
            wt = (int)strlen(li.type) > wt ? (int)strlen(li.type) : wt;
            wk = (int)strlen(li.kernel) > wk ? (int)strlen(li.kernel) : wk;
            wf = li.fused && (int)strlen(li.fused) > wf ? (int)strlen(li.fused) : wf;
        }
        printf("  %4s  %-*s  %-*s  %-*s  %-*s  %-9s %10s %10s\n", "#", wn, "name", wt, "type", wk, "kernel", wf, "fused",
               "precision", "output", "weights");
        for (int i = 0; i < nl; i++) {
            kiln_layer_info li;
            if (kiln_engine_layer_info(e, i, &li) != KILN_OK) continue;
            const plan_layer *pl = find_plan_layer(&f, li.name);
            printf("  %4d  %-*s  %-*s  %-*s  %-*s  %-9s %10s %10s\n", i, wn, li.name, wt, li.type, wk, li.kernel, wf,
                   li.fused && *li.fused ? li.fused : "-", kiln_dtype_name(li.precision),
                   pl ? cli_human_bytes((double)pl->out_bytes, b1, sizeof b1) : "?",
                   pl ? cli_human_bytes((double)pl->weight_bytes, b2, sizeof b2) : "?");
        }
    }
    if (json_path) {
        json j;
        atomic_file af;
        if (!json_open(c, &j, &af, json_path)) {
            rc = CLI_FAIL;
        } else {
            json_begin_object(&j);
            json_key(&j, "file"), json_str(&j, path);
            json_key(&j, "kind"), json_str(&j, "plan");
            json_key(&j, "format_version"), json_int(&j, f.version);
            char ver[64];
            snprintf(ver, sizeof ver, "%u.%u.%u", f.kv_major, f.kv_minor, f.kv_patch);
            json_key(&j, "written_by"), json_str(&j, ver);
            json_key(&j, "device"), json_str(&j, dev);
            json_key(&j, "fingerprint"), json_str(&j, f.fingerprint);
            json_key(&j, "flags"), json_str(&j, fl);
            json_key(&j, "threads"), json_int(&j, f.threads);
            json_key(&j, "memory");
            json_begin_object(&j);
            json_key(&j, "activations_per_context"), json_int(&j, (int64_t)act);
            json_key(&j, "scratch_per_context"), json_int(&j, (int64_t)scratch);
            json_key(&j, "weights"), json_int(&j, (int64_t)weights);
            json_end_object(&j);
            json_key(&j, "io");
            json_begin_array(&j);
            for (int i = 0; i < kiln_engine_num_io(e); i++) {
                const char *name = kiln_engine_io_name(e, i);
                kiln_dims d;
                kiln_dtype dt;
                kiln_engine_io_dims(e, name, &d);
                kiln_engine_io_dtype(e, name, &dt);
                json_begin_object(&j);
                json_key(&j, "name"), json_str(&j, name);
                json_key(&j, "mode"), json_str(&j, kiln_engine_io_mode(e, name) == KILN_IO_INPUT ? "input" : "output");
                json_key(&j, "dtype"), json_str(&j, kiln_dtype_name(dt));
                json_key(&j, "shape"), json_dims(&j, &d);
                json_end_object(&j);
            }
            json_end_array(&j);
            json_key(&j, "layers");
            json_begin_array(&j);
            for (int i = 0; i < nl; i++) {
                kiln_layer_info li;
                if (kiln_engine_layer_info(e, i, &li) != KILN_OK) continue;
                const plan_layer *pl = find_plan_layer(&f, li.name);
                json_begin_object(&j);
                json_key(&j, "name"), json_str(&j, li.name);
                json_key(&j, "type"), json_str(&j, li.type);
                json_key(&j, "kernel"), json_str(&j, li.kernel);
                json_key(&j, "fused"), json_str(&j, li.fused);
                json_key(&j, "precision"), json_str(&j, kiln_dtype_name(li.precision));
                json_key(&j, "output"), json_str(&j, li.output);
                json_key(&j, "output_bytes"), pl ? json_int(&j, pl->out_bytes) : json_null(&j);
                json_key(&j, "weight_bytes"), pl ? json_int(&j, pl->weight_bytes) : json_null(&j);
                json_end_object(&j);
            }
            json_end_array(&j);
            json_end_object(&j);
            rc = json_close(c, &j, &af, json_path);
        }
    }
    plan_facts_free(&f);
    loaded_model_free(&m);
    return rc;
}

/* ---- ONNX models ---- */

static const char *value_dims(const model_value *v, char *buf, size_t size) {
    if (!v->is_tensor) return snprintf(buf, size, "(not a tensor)"), buf;
    if (!v->has_shape) return snprintf(buf, size, "(no shape)"), buf;
    if (v->rank == 0) return snprintf(buf, size, "scalar"), buf;
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < v->rank && i < KILN_MAX_DIMS && at < size; i++) {
        if (v->dims[i] >= 0) at += (size_t)snprintf(buf + at, size - at, i ? "x%lld" : "%lld", (long long)v->dims[i]);
        else at += (size_t)snprintf(buf + at, size - at, i ? "x%s" : "%s", v->dim_names[i] ? v->dim_names[i] : "?");
    }
    return buf;
}

static void json_value(json *j, const model_value *v) {
    json_begin_object(j);
    json_key(j, "name"), json_str(j, v->name);
    json_key(j, "dtype"), json_str(j, onnx_type_name(v->elem_type));
    json_key(j, "shape");
    if (!v->has_shape) json_null(j);
    else {
        json_begin_array(j);
        for (int i = 0; i < v->rank && i < KILN_MAX_DIMS; i++) {
            if (v->dims[i] >= 0) json_int(j, v->dims[i]);
            else json_str(j, v->dim_names[i] ? v->dim_names[i] : "?");
        }
        json_end_array(j);
    }
    json_end_object(j);
}

static int inspect_onnx(const cli *c, const char *path, const uint8_t *data, size_t size, const build_opts *o,
                        const char *json_path) {
    model_info mi;
    char err[512];
    if (!model_info_read(data, size, &mi, err, sizeof err)) return cli_fail(c, "%s: %s", path, err);
    int rc = CLI_OK;
    /* the importer's verdict: symbolic dimensions set to 1 (or --shapes) so it gets past the inputs */
    int nerr = 0, nunsup = 0, nlayers = -1;
    char **errs = NULL;
    kiln_status *est = NULL;
#ifdef KILN_CLI_HAVE_ONNX
    {
        const char *names[CLI_MAX_IO];
        kiln_dims dims[CLI_MAX_IO];
        int ns = 0;
        for (int i = 0; i < mi.nb_inputs; i++) {
            const model_value *v = &mi.inputs[i];
            int given = -1;
            for (int k = 0; k < o->nb_shapes; k++)
                if (strcmp(o->shapes[k].name, v->name) == 0) given = k;
            if (given >= 0) {
                names[ns] = v->name;
                dims[ns++] = o->shapes[given].dims;
                continue;
            }
            if (!v->has_shape || v->rank > KILN_MAX_DIMS) continue;
            bool sym = false;
            kiln_dims d = {.nb_dims = v->rank};
            for (int k = 0; k < v->rank; k++) {
                sym |= v->dims[k] < 0;
                d.d[k] = v->dims[k] < 0 ? 1 : v->dims[k];
            }
            if (sym) {
                names[ns] = v->name;
                dims[ns++] = d;
            }
        }
        for (int k = 0; k < o->nb_shapes; k++) {
            bool known = false;
            for (int i = 0; i < mi.nb_inputs; i++) known |= strcmp(mi.inputs[i].name, o->shapes[k].name) == 0;
            if (!known) {
                model_info_free(&mi);
                return cli_usage(c, "--shapes: the model has no input '%s'", o->shapes[k].name);
            }
        }
        kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
        bd.log = cli_log;
        bd.log_user = (void *)c;
        bd.log_level = cli_log_level(c);
        kiln_builder *b = NULL;
        kiln_network *net = NULL;
        kiln_onnx_parser *p = NULL;
        kiln_onnx_desc od = KILN_ONNX_DESC_INIT;
        od.nb_shapes = ns;
        od.shape_names = names;
        od.shapes = dims;
        if (kiln_builder_create(&bd, &b) != KILN_OK || kiln_network_create(b, &net) != KILN_OK ||
            kiln_onnx_parser_create(net, &od, &p) != KILN_OK) {
            rc = cli_fail(c, "%s: %s", path, cli_last_error());
        } else {
            char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
            if (slash) *slash = 0;
            kiln_status st = kiln_onnx_parse_memory(p, data, size, slash ? dir : ".");
            free(dir);
            if (st == KILN_OK) nlayers = kiln_network_num_layers(net);
            nerr = kiln_onnx_num_errors(p);
            errs = calloc((size_t)(nerr ? nerr : 1), sizeof *errs);
            est = calloc((size_t)(nerr ? nerr : 1), sizeof *est);
            for (int i = 0; errs && est && i < nerr; i++) {
                const char *e = kiln_onnx_error(p, i);
                e = cli_strip_label(e, path);
                errs[i] = strdup(e);
                est[i] = kiln_onnx_error_status(p, i);
                nunsup += est[i] == KILN_ERR_UNSUPPORTED;
            }
            if (!errs || !est) nerr = 0;
            if (st != KILN_OK && nerr == 0) {
                errs = errs ? errs : calloc(1, sizeof *errs);
                est = est ? est : calloc(1, sizeof *est);
                if (errs && est) {
                    errs[0] = strdup(cli_last_error());
                    est[0] = st;
                    nerr = 1;
                }
            }
        }
        kiln_onnx_parser_destroy(p);
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
    }
#else
    (void)o;
#endif
    if (rc == CLI_OK && c->verbosity >= 1) {
        char b1[256];
        printf("%s: ONNX model, IR version %lld, producer '%s'%s%s%s\n", path, (long long)mi.ir_version, mi.producer,
               mi.graph_name[0] ? ", graph '" : "", mi.graph_name, mi.graph_name[0] ? "'" : "");
        printf("  opsets       ");
        for (int i = 0; i < mi.nb_opsets; i++) printf("%s%s %lld", i ? ", " : "", mi.opset_domain[i], (long long)mi.opset_version[i]);
        printf("\n");
        for (int i = 0; i < mi.nb_inputs; i++)
            printf("  input        %s %s %s\n", mi.inputs[i].name, onnx_type_name(mi.inputs[i].elem_type),
                   value_dims(&mi.inputs[i], b1, sizeof b1));
        for (int i = 0; i < mi.nb_outputs; i++)
            printf("  output       %s %s %s\n", mi.outputs[i].name, onnx_type_name(mi.outputs[i].elem_type),
                   value_dims(&mi.outputs[i], b1, sizeof b1));
        printf("  nodes        %d\n", mi.nb_nodes);
        printf("  initializers %d (%s)\n", mi.nb_initializers, cli_human_bytes((double)mi.initializer_bytes, b1, sizeof b1));
        printf("ops (%d kinds):\n", mi.nb_ops);
        for (int i = 0; i < mi.nb_ops; i++)
            printf("  %6d  %s%s%s\n", mi.ops[i].count, mi.ops[i].op, strcmp(mi.ops[i].domain, "ai.onnx") ? "  domain " : "",
                   strcmp(mi.ops[i].domain, "ai.onnx") ? mi.ops[i].domain : "");
        if (!have_onnx()) printf("kiln import: not checked (this kiln was built without the ONNX importer)\n");
        else if (nlayers >= 0) printf("kiln import: ok, %d layers\n", nlayers);
        else {
            printf("kiln import: fails: %d unsupported, %d other problem%s\n", nunsup, nerr - nunsup,
                   nerr - nunsup == 1 ? "" : "s");
            for (int i = 0; i < nerr; i++)
                printf("  %-11s  %s\n", est[i] == KILN_ERR_UNSUPPORTED ? "unsupported" : kiln_status_string(est[i]), errs[i]);
        }
    }
    if (rc == CLI_OK && json_path) {
        json j;
        atomic_file af;
        if (!json_open(c, &j, &af, json_path)) {
            rc = CLI_FAIL;
        } else {
            json_begin_object(&j);
            json_key(&j, "file"), json_str(&j, path);
            json_key(&j, "kind"), json_str(&j, "onnx");
            json_key(&j, "ir_version"), json_int(&j, mi.ir_version);
            json_key(&j, "producer"), json_str(&j, mi.producer);
            json_key(&j, "graph"), json_str(&j, mi.graph_name);
            json_key(&j, "opsets");
            json_begin_object(&j);
            for (int i = 0; i < mi.nb_opsets; i++) json_key(&j, mi.opset_domain[i]), json_int(&j, mi.opset_version[i]);
            json_end_object(&j);
            json_key(&j, "inputs");
            json_begin_array(&j);
            for (int i = 0; i < mi.nb_inputs; i++) json_value(&j, &mi.inputs[i]);
            json_end_array(&j);
            json_key(&j, "outputs");
            json_begin_array(&j);
            for (int i = 0; i < mi.nb_outputs; i++) json_value(&j, &mi.outputs[i]);
            json_end_array(&j);
            json_key(&j, "nodes"), json_int(&j, mi.nb_nodes);
            json_key(&j, "initializers"), json_int(&j, mi.nb_initializers);
            json_key(&j, "initializer_bytes"), json_int(&j, mi.initializer_bytes);
            json_key(&j, "ops");
            json_begin_array(&j);
            for (int i = 0; i < mi.nb_ops; i++) {
                json_begin_object(&j);
                json_key(&j, "op"), json_str(&j, mi.ops[i].op);
                json_key(&j, "domain"), json_str(&j, mi.ops[i].domain);
                json_key(&j, "count"), json_int(&j, mi.ops[i].count);
                json_end_object(&j);
            }
            json_end_array(&j);
            json_key(&j, "importable");
            if (!have_onnx()) json_null(&j);
            else json_bool(&j, nlayers >= 0);
            json_key(&j, "kiln_layers"), nlayers >= 0 ? json_int(&j, nlayers) : json_null(&j);
            json_key(&j, "problems");
            json_begin_array(&j);
            for (int i = 0; i < nerr; i++) {
                json_begin_object(&j);
                json_key(&j, "status"), json_str(&j, est[i] == KILN_ERR_UNSUPPORTED ? "unsupported" : kiln_status_string(est[i]));
                json_key(&j, "message"), json_str(&j, errs[i]);
                json_end_object(&j);
            }
            json_end_array(&j);
            json_end_object(&j);
            rc = json_close(c, &j, &af, json_path);
        }
    }
    for (int i = 0; errs && i < nerr; i++) free(errs[i]);
    free(errs);
    free(est);
    model_info_free(&mi);
    return rc;
}

int cmd_inspect(cli *c, int argc, char **argv) {
    static const cli_opt opts[] = {CLI_COMMON_OPTS, {"--json", NULL, true}, {"--shapes", NULL, true}, {NULL, NULL, false}};
    build_opts o;
    memset(&o, 0, sizeof o);
    const char *model = NULL, *json_path = NULL;
    cli_args a = {argc, argv, 0, false};
    int rc = CLI_OK, k;
    const char *v;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END) {
        bool stop;
        if (k == CLI_ARG_ERROR) rc = CLI_USAGE;
        else if (k == CLI_ARG_POSITIONAL) {
            if (model) rc = cli_usage(c, "one model at a time ('%s' and '%s')", model, v);
            model = v;
        } else if (cli_common_option(c, opts[k].name, help, &stop)) {
            if (stop) goto out;
        } else if (strcmp(opts[k].name, "--json") == 0) json_path = v;
        else if (strcmp(opts[k].name, "--shapes") == 0) {
            if (!cli_add_shapes(c, &o, v)) rc = CLI_USAGE;
        }
    }
    if (rc != CLI_OK) goto out;
    if (!model) {
        rc = cli_usage(c, "no model given");
        goto out;
    }
    uint8_t *data;
    size_t size;
    char err[512];
    if (!cli_read_file(model, &data, &size, err, sizeof err)) {
        rc = cli_fail(c, "%s: cannot read: %s", model, err);
        goto out;
    }
    if (is_plan_file(data, size)) rc = inspect_plan(c, model, data, size, json_path);
    else if (size == 0) rc = cli_fail(c, "%s: the file is empty", model);
    else rc = inspect_onnx(c, model, data, size, &o, json_path);
    free(data);
out:
    build_opts_free(&o);
    return rc;
}
