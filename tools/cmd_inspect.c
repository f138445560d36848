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

/* ---- plans ---- */

/* What only the file says (the engine API has no call for it): the format version, the
 * kiln version that wrote it, and from the IO section (docs/PLAN_FORMAT.md) the device and
 * the CPU threads per context. Every read is bounds-checked: the bytes are untrusted. */
typedef struct plan_header {
    uint32_t version, kv_major, kv_minor, kv_patch;
    bool have_io;
    uint32_t device, threads;
} plan_header;

static uint32_t rd_u32(const uint8_t *p, size_t size, uint64_t at, bool *bad) {
    if (at > size || size - at < 4) {
        *bad = true;
        return 0;
    }
    return (uint32_t)p[at] | (uint32_t)p[at + 1] << 8 | (uint32_t)p[at + 2] << 16 | (uint32_t)p[at + 3] << 24;
}

static uint64_t rd_u64(const uint8_t *p, size_t size, uint64_t at, bool *bad) {
    uint64_t lo = rd_u32(p, size, at, bad);
    return lo | (uint64_t)rd_u32(p, size, at + 4, bad) << 32;
}

static void read_plan_header(const uint8_t *p, size_t size, plan_header *h) {
    memset(h, 0, sizeof *h);
    bool bad = false;
    h->version = rd_u32(p, size, 8, &bad);
    uint32_t kv = rd_u32(p, size, 16, &bad);
    h->kv_major = kv & 0xFFFF;
    h->kv_minor = kv >> 16;
    h->kv_patch = rd_u32(p, size, 20, &bad);
    uint32_t nsec = rd_u32(p, size, 36, &bad);
    uint64_t table = rd_u64(p, size, 40, &bad);
    for (uint32_t i = 0; !bad && h->version >= 1 && h->version <= 5 && i < nsec && i < 64; i++) {
        uint64_t e = table + 24 * (uint64_t)i;
        uint32_t id = rd_u32(p, size, e, &bad);
        uint64_t off = rd_u64(p, size, e + 8, &bad);
        if (id != 5 || bad) continue;
        bool bad_io = false;
        h->device = rd_u32(p, size, off, &bad_io);
        h->threads = rd_u32(p, size, off + 8, &bad_io);
        h->have_io = !bad_io;
    }
}

static void flags_str(unsigned flags, char *buf, size_t size) {
    static const char *names[] = {"fp16", "tf32", "int8", "refit"};
    size_t at = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < 32 && at < size; i++)
        if (flags & (1u << i))
            at += i < 4 ? (size_t)snprintf(buf + at, size - at, "%s%s", at ? " " : "", names[i])
                        : (size_t)snprintf(buf + at, size - at, "%sflag%u", at ? " " : "", i);
    if (!at) snprintf(buf, size, "none");
}

/* A valid plan for a device this kiln cannot run (a CUDA plan on a CPU-only build or
 * machine) does not load, so the library describes none of it: what the file's header
 * says, and why. */
static int inspect_unloadable(const cli *c, const char *path, size_t size, const plan_header *h, const char *why,
                              const char *json_path) {
    char b1[64];
    const char *dev = h->device == KILN_DEVICE_CUDA ? "cuda" : h->device == KILN_DEVICE_CPU ? "cpu" : "?";
    cli_warn(c, "%s cannot be loaded here (%s): showing what its header says", path, why);
    if (c->verbosity >= 1) {
        printf("%s: kiln plan, format %u, written by kiln %u.%u.%u, %s\n", path, h->version, h->kv_major, h->kv_minor,
               h->kv_patch, cli_human_bytes((double)size, b1, sizeof b1));
        printf("  device       %s\n", dev);
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
    json_key(&j, "format_version"), json_int(&j, h->version);
    json_key(&j, "device"), json_str(&j, dev);
    json_end_object(&j);
    return json_close(c, &j, &af, json_path);
}

static int inspect_plan(const cli *c, const char *path, const uint8_t *data, size_t size, const char *json_path) {
    plan_header h;
    read_plan_header(data, size, &h);
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
        /* valid, but for a backend this kiln lacks: still worth showing */
        if ((st == KILN_ERR_UNSUPPORTED || st == KILN_ERR_DEVICE) && h.have_io)
            return inspect_unloadable(c, path, size, &h, cli_last_error(), json_path);
        return cli_fail(c, "%s: %s", path, cli_last_error());
    }
    int rc = CLI_OK;
    kiln_engine *e = m.engine;
    size_t act, scratch, weights;
    kiln_engine_memory(e, &act, &scratch, &weights);
    const char *dev = kiln_engine_device(e) == KILN_DEVICE_CUDA ? "cuda" : "cpu";
    /* the device the kernels were chosen for: this machine's, when the plan came from
     * another one (the loader then logs both) */
    const char *fp = kiln_engine_fingerprint(e);
    char b1[64], b2[64], b3[64], fl[64];
    flags_str(kiln_engine_flags(e), fl, sizeof fl);
    int nl = kiln_engine_num_layers(e);
    if (c->verbosity >= 1) {
        printf("%s: kiln plan, format %u, written by kiln %u.%u.%u, %s\n", path, h.version, h.kv_major, h.kv_minor, h.kv_patch,
               cli_human_bytes((double)size, b1, sizeof b1));
        printf("  device       %s\n", dev);
        printf("  fingerprint  %s\n", fp);
        printf("  flags        %s\n", fl);
        if (h.have_io && h.threads) printf("  threads      %u per context\n", h.threads);
        else if (h.have_io) printf("  threads      all cores\n");
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
            printf("  %4d  %-*s  %-*s  %-*s  %-*s  %-9s %10s %10s\n", i, wn, li.name, wt, li.type, wk, li.kernel, wf,
                   li.fused && *li.fused ? li.fused : "-", kiln_dtype_name(li.precision),
                   cli_human_bytes((double)li.output_bytes, b1, sizeof b1),
                   cli_human_bytes((double)li.weight_bytes, b2, sizeof b2));
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
            json_key(&j, "format_version"), json_int(&j, h.version);
            char ver[64];
            snprintf(ver, sizeof ver, "%u.%u.%u", h.kv_major, h.kv_minor, h.kv_patch);
            json_key(&j, "written_by"), json_str(&j, ver);
            json_key(&j, "device"), json_str(&j, dev);
            json_key(&j, "fingerprint"), json_str(&j, fp);
            json_key(&j, "flags"), json_str(&j, fl);
            json_key(&j, "threads"), h.have_io ? json_int(&j, h.threads) : json_null(&j);
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
                json_begin_object(&j);
                json_key(&j, "name"), json_str(&j, li.name);
                json_key(&j, "type"), json_str(&j, li.type);
                json_key(&j, "kernel"), json_str(&j, li.kernel);
                json_key(&j, "fused"), json_str(&j, li.fused);
                json_key(&j, "precision"), json_str(&j, kiln_dtype_name(li.precision));
                json_key(&j, "output"), json_str(&j, li.output);
                json_key(&j, "output_bytes"), json_int(&j, (int64_t)li.output_bytes);
                json_key(&j, "weight_bytes"), json_int(&j, (int64_t)li.weight_bytes);
                json_end_object(&j);
            }
            json_end_array(&j);
            json_end_object(&j);
            rc = json_close(c, &j, &af, json_path);
        }
    }
    loaded_model_free(&m);
    return rc;
}

/* ---- ONNX models ---- */

static const char *value_dims(const kiln_onnx_value_info *v, char *buf, size_t size) {
    if (v->kind != KILN_ONNX_VALUE_TENSOR) return snprintf(buf, size, "(not a tensor)"), buf;
    if (!v->has_shape) return snprintf(buf, size, "(no shape)"), buf;
    return model_dims_str(v, buf, size);
}

static void json_value(json *j, const kiln_onnx_value_info *v) {
    json_begin_object(j);
    json_key(j, "name"), json_str(j, v->name);
    json_key(j, "dtype"), json_str(j, v->type_name);
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
    kiln_onnx_model_info *info;
    char err[512];
    if (!model_info_read(data, size, &info, err, sizeof err)) return cli_fail(c, "%s: %s", path, err);
    const kiln_onnx_model_info *mi = info;
    int rc = CLI_OK;
    /* the importer's verdict: symbolic dimensions set to 1 (or --shapes) so it gets past the inputs */
    int nerr = 0, nunsup = 0, nlayers = -1;
    char **errs = NULL;
    kiln_status *est = NULL;
#ifdef KILN_CLI_HAVE_ONNX
    {
        int nin = mi->nb_inputs;
        const char **names = calloc((size_t)(nin ? nin : 1), sizeof *names);
        kiln_dims *dims = calloc((size_t)(nin ? nin : 1), sizeof *dims);
        int ns = 0;
        if (!names || !dims) {
            free(names);
            free(dims);
            kiln_onnx_model_info_destroy(info);
            return cli_fail(c, "out of memory");
        }
        for (int i = 0; i < nin; i++) {
            const kiln_onnx_value_info *v = &mi->inputs[i];
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
            for (int i = 0; i < nin; i++) known |= strcmp(mi->inputs[i].name, o->shapes[k].name) == 0;
            if (!known) {
                free(names);
                free(dims);
                kiln_onnx_model_info_destroy(info);
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
        free(names);
        free(dims);
    }
#else
    (void)o;
#endif
    char producer[512];
    snprintf(producer, sizeof producer, "%s%s%s", mi->producer_name, *mi->producer_name && *mi->producer_version ? " " : "",
             mi->producer_version);
    if (rc == CLI_OK && c->verbosity >= 1) {
        char b1[256];
        printf("%s: ONNX model, IR version %lld, producer '%s'%s%s%s\n", path, (long long)mi->ir_version, producer,
               mi->graph_name[0] ? ", graph '" : "", mi->graph_name, mi->graph_name[0] ? "'" : "");
        printf("  opsets       ");
        for (int i = 0; i < mi->nb_opsets; i++)
            printf("%s%s %lld", i ? ", " : "", mi->opsets[i].domain, (long long)mi->opsets[i].version);
        printf("\n");
        for (int i = 0; i < mi->nb_inputs; i++)
            printf("  input        %s %s %s\n", mi->inputs[i].name, mi->inputs[i].type_name,
                   value_dims(&mi->inputs[i], b1, sizeof b1));
        for (int i = 0; i < mi->nb_outputs; i++)
            printf("  output       %s %s %s\n", mi->outputs[i].name, mi->outputs[i].type_name,
                   value_dims(&mi->outputs[i], b1, sizeof b1));
        printf("  nodes        %d\n", mi->nb_nodes);
        printf("  initializers %d (%s)\n", mi->nb_initializers, cli_human_bytes((double)mi->initializer_bytes, b1, sizeof b1));
        printf("ops (%d kinds):\n", mi->nb_ops);
        for (int i = 0; i < mi->nb_ops; i++) {
            bool other = strcmp(mi->ops[i].domain, "ai.onnx") != 0;
            printf("  %6d  %s%s%s\n", mi->ops[i].count, mi->ops[i].op_type, other ? "  domain " : "",
                   other ? mi->ops[i].domain : "");
        }
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
            json_key(&j, "ir_version"), json_int(&j, mi->ir_version);
            json_key(&j, "producer"), json_str(&j, producer);
            json_key(&j, "graph"), json_str(&j, mi->graph_name);
            json_key(&j, "opsets");
            json_begin_object(&j);
            for (int i = 0; i < mi->nb_opsets; i++) json_key(&j, mi->opsets[i].domain), json_int(&j, mi->opsets[i].version);
            json_end_object(&j);
            json_key(&j, "inputs");
            json_begin_array(&j);
            for (int i = 0; i < mi->nb_inputs; i++) json_value(&j, &mi->inputs[i]);
            json_end_array(&j);
            json_key(&j, "outputs");
            json_begin_array(&j);
            for (int i = 0; i < mi->nb_outputs; i++) json_value(&j, &mi->outputs[i]);
            json_end_array(&j);
            json_key(&j, "nodes"), json_int(&j, mi->nb_nodes);
            json_key(&j, "initializers"), json_int(&j, mi->nb_initializers);
            json_key(&j, "initializer_bytes"), json_int(&j, mi->initializer_bytes);
            json_key(&j, "ops");
            json_begin_array(&j);
            for (int i = 0; i < mi->nb_ops; i++) {
                json_begin_object(&j);
                json_key(&j, "op"), json_str(&j, mi->ops[i].op_type);
                json_key(&j, "domain"), json_str(&j, mi->ops[i].domain);
                json_key(&j, "count"), json_int(&j, mi->ops[i].count);
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
#ifdef KILN_CLI_HAVE_ONNX
    kiln_onnx_model_info_destroy(info);
#endif
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
