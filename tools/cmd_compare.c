/* kiln compare: runs a model with kiln (any device and precision) and checks every output
 * against a reference: kiln on the CPU in FP32, or outputs saved as files. With
 * --all-layers every intermediate tensor is compared and the first layer that goes beyond
 * tolerance is named (Polygraphy's `run --validate --mark all`). */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: kiln compare MODEL.onnx [OPTIONS]\n"
    "\n"
    "Runs MODEL with kiln as configured (--device, --fp16, ...) and a reference on the same\n"
    "inputs, and reports per output: max absolute and relative error, relative L2 error\n"
    "(||a - r|| / ||r||), cosine similarity, NaN and Inf counts. An element passes when\n"
    "|a - r| <= atol + rtol * |r| (NaN matches NaN, Inf the same Inf). Exit status 1 when any\n"
    "output exceeds the tolerances.\n"
    "\n"
    "options:\n"
    "  --reference cpu|DIR        cpu (default): kiln on the CPU in FP32, built from the same\n"
    "                             model; DIR: outputs saved as NAME.npy or NAME.pb (names\n"
    "                             sanitised as 'kiln run' writes them, or .pb files holding a\n"
    "                             tensor of that name, as ONNX test data); inputs not given with\n"
    "                             --input are taken from DIR the same way\n"
    "  --atol A                   absolute tolerance (default 1e-5)\n"
    "  --rtol R                   relative tolerance (default 1e-5)\n"
    "  --all-layers               mark every intermediate tensor as an output, in both runs, and\n"
    "                             name the first layer (in network order) beyond tolerance\n"
    "  --input NAME=FILE          input data (.npy, .pb, image; see 'kiln run --help'),\n"
    "  --preprocess P             for images (imagenet, unit, none)\n"
    "  --random-inputs            random data for inputs not given; --seed N\n"
    "  --json FILE                results as JSON ('-': standard output)\n"
    "\n"
    "options for the run under test (as in 'kiln build'): --device cpu|cuda, --fp16,\n"
    "  --no-range-check, --tf32, --shapes NAME:DIMS,..., --batch N, --threads N, --timing-cache FILE\n"
    "  -q, --quiet   errors only       -v, --verbose   every compared tensor, library log\n"
    "\n"
    "examples:\n"
    "  kiln compare model.onnx --device cuda --fp16 --random-inputs --atol 1e-2 --rtol 1e-2\n"
    "  kiln compare model.onnx --input x=x.npy --reference expected/\n"
    "  kiln compare model.onnx --reference onnx_test/test_data_set_0\n"
    "  kiln compare model.onnx --device cuda --fp16 --random-inputs --all-layers\n";

typedef struct metrics {
    bool have_ref, shape_ok;
    kiln_dims ref_dims;
    double max_abs, max_rel, rel_l2, cosine;
    int64_t nan_a, inf_a, nan_r, inf_r;
    int64_t bad, count, worst;
    bool pass;
} metrics;

static metrics measure(kiln_dtype dt, const void *a, const host_tensor *r, double atol, double rtol) {
    metrics m;
    memset(&m, 0, sizeof m);
    m.have_ref = m.shape_ok = true;
    m.ref_dims = r->dims;
    m.count = tensor_count(r);
    m.worst = -1;
    double se = 0, sr = 0, sa = 0, dot = 0, worst_excess = -INFINITY;
    for (int64_t i = 0; i < m.count; i++) {
        double x = tensor_get(dt, a, i), y = tensor_get(r->dtype, r->data, i);
        m.nan_a += isnan(x);
        m.inf_a += isinf(x);
        m.nan_r += isnan(y);
        m.inf_r += isinf(y);
        bool ok;
        if (isnan(y) || isnan(x)) ok = isnan(x) && isnan(y);
        else if (isinf(y) || isinf(x)) ok = x == y;
        else {
            double d = fabs(x - y);
            if (d > m.max_abs) m.max_abs = d;
            if (y != 0 && d / fabs(y) > m.max_rel) m.max_rel = d / fabs(y);
            se += d * d;
            sr += y * y;
            sa += x * x;
            dot += x * y;
            double excess = d - (atol + rtol * fabs(y));
            ok = excess <= 0;
            if (!ok && excess > worst_excess) worst_excess = excess, m.worst = i;
        }
        if (!ok) {
            m.bad++;
            if (m.worst < 0) m.worst = i;
        }
    }
    m.rel_l2 = sr > 0 ? sqrt(se / sr) : sqrt(se);
    m.cosine = sa > 0 && sr > 0 ? dot / sqrt(sa * sr) : (sa == 0 && sr == 0 ? 1.0 : 0.0);
    m.pass = m.bad == 0;
    return m;
}

/* The reference tensor for `name` in dir: NAME.npy / NAME.pb (sanitised), else a .pb
 * file holding a tensor of that name. */
static bool find_in_dir(const char *dir, const char *name, host_tensor *out, char *path, size_t psize, char *err,
                        size_t errsz) {
    char base[256];
    cli_sanitize_name(name, base, sizeof base);
    const char *exts[] = {".npy", ".pb"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, psize, "%s/%s%s", dir, base, exts[k]);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fclose(f);
        return tensor_read_file(path, out, err, errsz);
    }
    if (!have_onnx()) return false;
    DIR *d = opendir(dir);
    if (!d) return false;
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 3, ".pb") != 0) continue;
        snprintf(path, psize, "%s/%s", dir, de->d_name);
        host_tensor t;
        char e2[256];
        if (!tensor_read_file(path, &t, e2, sizeof e2)) continue;
        if (t.name && strcmp(t.name, name) == 0) {
            *out = t;
            found = true;
        } else {
            tensor_free(&t);
        }
    }
    closedir(d);
    return found;
}

/* Inputs not given on the command line, from the reference directory. */
static int inputs_from_dir(const cli *c, const char *dir, const char *const *names, int n, input_set *ins) {
    for (int i = 0; i < n; i++) {
        bool have = false;
        for (int k = 0; k < ins->n; k++) have |= strcmp(ins->in[k].name, names[i]) == 0;
        if (have || ins->n == CLI_MAX_IO) continue;
        host_tensor t;
        char path[4096], err[512];
        err[0] = 0;
        if (!find_in_dir(dir, names[i], &t, path, sizeof path, err, sizeof err)) {
            if (err[0]) return cli_fail(c, "input '%s': %s: %s", names[i], path, err);
            continue;
        }
        input_spec *in = &ins->in[ins->n];
        memset(in, 0, sizeof *in);
        in->name = strdup(names[i]);
        in->path = strdup(path);
        in->kind = cli_file_kind(path);
        in->t = t;
        if (!in->name || !in->path) return cli_fail(c, "out of memory");
        ins->n++;
        cli_info(c, "input '%s' from %s", names[i], path);
    }
    return CLI_OK;
}

static void print_row(const char *name, const metrics *m) {
    char b1[128];
    if (!m->have_ref) {
        printf("  %-32s  no reference\n", name);
        return;
    }
    if (!m->shape_ok) {
        printf("  %-32s  FAIL  shape differs: reference %s\n", name, cli_dims_str(&m->ref_dims, b1, sizeof b1));
        return;
    }
    printf("  %-32s  %-4s  max abs %.3e  max rel %.3e  rel L2 %.3e  cosine %.8f", name, m->pass ? "ok" : "FAIL",
           m->max_abs, m->max_rel, m->rel_l2, m->cosine);
    if (m->nan_a || m->inf_a || m->nan_r || m->inf_r)
        printf("  NaN/Inf %lld/%lld (reference %lld/%lld)", (long long)m->nan_a, (long long)m->inf_a, (long long)m->nan_r,
               (long long)m->inf_r);
    if (!m->pass) printf("  (%lld of %lld beyond tolerance)", (long long)m->bad, (long long)m->count);
    printf("\n");
}

int cmd_compare(cli *c, int argc, char **argv) {
    static const cli_opt opts[] = {CLI_COMMON_OPTS,
                                   {"--reference", NULL, true},
                                   {"--atol", NULL, true},
                                   {"--rtol", NULL, true},
                                   {"--all-layers", NULL, false},
                                   {"--input", "-i", true},
                                   {"--preprocess", NULL, true},
                                   {"--random-inputs", NULL, false},
                                   {"--seed", NULL, true},
                                   {"--json", NULL, true},
                                   CLI_BUILD_OPTS,
                                   {NULL, NULL, false}};
    build_opts o, ro;
    memset(&o, 0, sizeof o);
    memset(&ro, 0, sizeof ro);
    input_set *ins = calloc(1, sizeof *ins);
    io_buffers *io = calloc(1, sizeof *io), *rio = calloc(1, sizeof *rio);
    metrics *res = NULL;
    if (!ins || !io || !rio) {
        free(ins), free(io), free(rio);
        return cli_fail(c, "out of memory");
    }
    ins->seed = 1;
    ins->pre = PRE_IMAGENET;
    const char *model = NULL, *reference = "cpu", *json_path = NULL;
    double atol = 1e-5, rtol = 1e-5;
    cli_args a = {argc, argv, 0, false};
    int rc = CLI_OK, k;
    const char *v;
    loaded_model m, rm;
    memset(&m, 0, sizeof m);
    memset(&rm, 0, sizeof rm);
    kiln_context *ctx = NULL, *rctx = NULL;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END) {
        bool stop;
        int64_t n;
        const char *name = k >= 0 ? opts[k].name : "";
        if (k == CLI_ARG_ERROR) rc = CLI_USAGE;
        else if (k == CLI_ARG_POSITIONAL) {
            if (model) rc = cli_usage(c, "one model at a time ('%s' and '%s')", model, v);
            model = v;
        } else if (cli_common_option(c, name, help, &stop)) {
            if (stop) goto out;
        } else if (strcmp(name, "--reference") == 0) reference = v;
        else if (strcmp(name, "--atol") == 0) {
            if (!cli_parse_double(c, name, v, 0, INFINITY, &atol)) rc = CLI_USAGE;
        } else if (strcmp(name, "--rtol") == 0) {
            if (!cli_parse_double(c, name, v, 0, INFINITY, &rtol)) rc = CLI_USAGE;
        } else if (strcmp(name, "--all-layers") == 0) o.all_layers = true;
        else if (strcmp(name, "--input") == 0) { /* read below */
        } else if (strcmp(name, "--preprocess") == 0) {
            if (!cli_parse_preprocess(c, v, &ins->pre)) rc = CLI_USAGE;
        } else if (strcmp(name, "--random-inputs") == 0) ins->random = true;
        else if (strcmp(name, "--seed") == 0) {
            if (!cli_parse_int(c, name, v, 0, INT64_MAX, &n)) rc = CLI_USAGE;
            ins->seed = (uint64_t)n;
        } else if (strcmp(name, "--json") == 0) json_path = v;
        else cli_build_option(c, name, v, &o, &rc);
    }
    if (rc != CLI_OK) goto out;
    if (!model) {
        rc = cli_usage(c, "no model given");
        goto out;
    }
    bool ref_cpu = strcmp(reference, "cpu") == 0;
    if (!ref_cpu && !cli_is_dir(reference)) {
        rc = cli_usage(c, "--reference: '%s' is neither 'cpu' nor a directory", reference);
        goto out;
    }
    a.i = 0;
    a.only_positional = false;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END)
        if (k >= 0 && strcmp(opts[k].name, "--input") == 0) input_set_add(c, ins, v, &rc);
    if (rc != CLI_OK) goto out;

    /* the model's input names, to take missing inputs from the reference directory */
    uint8_t *bytes;
    size_t size;
    char err[512];
    if (!cli_read_file(model, &bytes, &size, err, sizeof err)) {
        rc = cli_fail(c, "%s: cannot read: %s", model, err);
        goto out;
    }
    bool plan = is_plan_file(bytes, size);
    if (plan && (ref_cpu || o.all_layers)) {
        free(bytes);
        rc = cli_usage(c, "%s is a plan: %s needs the ONNX model (a plan cannot be rebuilt)", model,
                       o.all_layers ? "--all-layers" : "--reference cpu");
        goto out;
    }
    if (!ref_cpu && !plan) {
        kiln_onnx_model_info *mi;
        if (!model_info_read(bytes, size, &mi, err, sizeof err)) {
            free(bytes);
            rc = cli_fail(c, "%s: %s", model, err);
            goto out;
        }
        const char *names[CLI_MAX_IO];
        int n = mi->nb_inputs < CLI_MAX_IO ? mi->nb_inputs : CLI_MAX_IO;
        for (int i = 0; i < n; i++) names[i] = mi->inputs[i].name;
        rc = inputs_from_dir(c, reference, names, n, ins);
#ifdef KILN_CLI_HAVE_ONNX
        kiln_onnx_model_info_destroy(mi);
#endif
    }
    free(bytes);
    if (rc != CLI_OK) goto out;

    rc = load_model(c, model, &o, ins, false, &m);
    if (rc != CLI_OK) goto out;
    if (plan && !ref_cpu) {
        const char *names[CLI_MAX_IO];
        int n = 0;
        for (int i = 0; i < kiln_engine_num_io(m.engine) && n < CLI_MAX_IO; i++)
            if (kiln_engine_io_mode(m.engine, kiln_engine_io_name(m.engine, i)) == KILN_IO_INPUT)
                names[n++] = kiln_engine_io_name(m.engine, i);
        rc = inputs_from_dir(c, reference, names, n, ins);
        if (rc != CLI_OK) goto out;
    }
    rc = io_prepare(c, m.engine, ins, ins->random, io);
    if (rc == CLI_OK) rc = io_bind(c, m.engine, io, &ctx);
    if (rc != CLI_OK) goto out;
    if (kiln_context_execute(ctx) != KILN_OK) {
        rc = cli_fail(c, "%s: run failed: %s", model, cli_last_error());
        goto out;
    }

    if (ref_cpu) {
        ro.device = KILN_DEVICE_CPU;
        ro.threads = o.threads;
        ro.batch = o.batch;
        ro.all_layers = o.all_layers;
        for (int i = 0; i < o.nb_shapes; i++) {
            ro.shapes[i].name = strdup(o.shapes[i].name);
            ro.shapes[i].dims = o.shapes[i].dims;
            ro.nb_shapes++;
        }
        cli quiet = *c;
        if (quiet.verbosity == 1) quiet.verbosity = 0; /* warnings were shown for the first build */
        rc = load_model(&quiet, model, &ro, ins, false, &rm);
        if (rc != CLI_OK) goto out;
        /* the same input data, whatever produced it */
        rc = io_prepare(c, rm.engine, ins, true, rio);
        for (int i = 0; rc == CLI_OK && i < rio->n; i++) {
            if (rio->mode[i] != KILN_IO_INPUT) continue;
            int t = io_index(io, rio->name[i]);
            if (t < 0 || io->dtype[t] != rio->dtype[i] || !dims_equal(&io->dims[t], &rio->dims[i]))
                rc = cli_fail(c, "input '%s' differs between the run and the reference", rio->name[i]);
            else memcpy(rio->data[i], io->data[t], io->bytes[t]);
        }
        if (rc == CLI_OK) rc = io_bind(c, rm.engine, rio, &rctx);
        if (rc != CLI_OK) goto out;
        if (kiln_context_execute(rctx) != KILN_OK) {
            rc = cli_fail(c, "%s: reference run failed: %s", model, cli_last_error());
            goto out;
        }
    }

    /* every output of the run under test, against the reference */
    res = calloc((size_t)(io->n ? io->n : 1), sizeof *res);
    if (!res) {
        rc = cli_fail(c, "out of memory");
        goto out;
    }
    int compared = 0, failed = 0, missing_model_outputs = 0;
    for (int i = 0; i < io->n; i++) {
        if (io->mode[i] != KILN_IO_OUTPUT) continue;
        host_tensor r;
        memset(&r, 0, sizeof r);
        bool have = false;
        if (ref_cpu) {
            int t = io_index(rio, io->name[i]);
            if (t >= 0) {
                r.dtype = rio->dtype[t];
                r.dims = rio->dims[t];
                r.data = rio->data[t];
                have = true;
            }
        } else {
            char path[4096];
            err[0] = 0;
            have = find_in_dir(reference, io->name[i], &r, path, sizeof path, err, sizeof err);
            if (!have && err[0]) {
                rc = cli_fail(c, "reference '%s': %s: %s", io->name[i], path, err);
                goto out;
            }
        }
        bool model_output = !m.info || !o.all_layers;
        for (int k2 = 0; m.info && o.all_layers && k2 < m.info->nb_outputs; k2++)
            model_output |= strcmp(m.info->outputs[k2].name, io->name[i]) == 0;
        if (!have) {
            res[i].have_ref = false;
            if (model_output) missing_model_outputs++;
            continue;
        }
        if (!dims_equal(&r.dims, &io->dims[i])) {
            res[i].have_ref = true;
            res[i].shape_ok = false;
            res[i].ref_dims = r.dims;
            res[i].pass = false;
        } else {
            res[i] = measure(io->dtype[i], io->data[i], &r, atol, rtol);
        }
        compared++;
        failed += !res[i].pass;
        if (!ref_cpu) tensor_free(&r);
    }

    /* the first layer beyond tolerance, in network order */
    const char *first_layer = NULL, *first_tensor = NULL;
    for (int i = 0; o.all_layers && i < m.nb_marked && !first_layer; i++) {
        int t = io_index(io, m.marked_tensor[i]);
        if (t >= 0 && res[t].have_ref && !res[t].pass) first_layer = m.marked_layer[i], first_tensor = m.marked_tensor[i];
    }

    if (c->verbosity >= 1) {
        printf("%s: %s vs %s (atol %g, rtol %g)\n", model,
               kiln_engine_device(m.engine) == KILN_DEVICE_CUDA ? (o.fp16 ? "cuda fp16" : "cuda") : "cpu",
               ref_cpu ? "cpu fp32" : reference, atol, rtol);
        for (int i = 0; i < io->n; i++) {
            if (io->mode[i] != KILN_IO_OUTPUT) continue;
            bool model_output = !o.all_layers;
            for (int k2 = 0; m.info && k2 < m.info->nb_outputs; k2++)
                model_output |= strcmp(m.info->outputs[k2].name, io->name[i]) == 0;
            /* with --all-layers: the model's outputs and failures, or everything with -v */
            if (model_output || c->verbosity >= 2 || (res[i].have_ref && !res[i].pass)) print_row(io->name[i], &res[i]);
        }
        if (o.all_layers) {
            printf("%d tensors compared, %d beyond tolerance", compared, failed);
            if (first_layer) printf("; first: layer '%s' (tensor '%s')", first_layer, first_tensor);
            printf("\n");
        }
    }
    if (json_path) {
        json j;
        atomic_file af;
        if (!json_open(c, &j, &af, json_path)) {
            rc = CLI_FAIL;
            goto out;
        }
        json_begin_object(&j);
        json_key(&j, "model"), json_str(&j, model);
        json_key(&j, "reference"), json_str(&j, ref_cpu ? "cpu" : reference);
        json_key(&j, "atol"), json_num(&j, atol);
        json_key(&j, "rtol"), json_num(&j, rtol);
        json_key(&j, "passed"), json_bool(&j, failed == 0 && missing_model_outputs == 0);
        json_key(&j, "first_failing_layer");
        if (first_layer) json_str(&j, first_layer);
        else json_null(&j);
        json_key(&j, "outputs");
        json_begin_array(&j);
        for (int i = 0; i < io->n; i++) {
            if (io->mode[i] != KILN_IO_OUTPUT) continue;
            const metrics *r = &res[i];
            json_begin_object(&j);
            json_key(&j, "name"), json_str(&j, io->name[i]);
            json_key(&j, "has_reference"), json_bool(&j, r->have_ref);
            if (r->have_ref) {
                json_key(&j, "shape_matches"), json_bool(&j, r->shape_ok);
                json_key(&j, "passed"), json_bool(&j, r->pass);
            }
            if (r->have_ref && r->shape_ok) {
                json_key(&j, "max_abs_error"), json_num(&j, r->max_abs);
                json_key(&j, "max_rel_error"), json_num(&j, r->max_rel);
                json_key(&j, "rel_l2_error"), json_num(&j, r->rel_l2);
                json_key(&j, "cosine_similarity"), json_num(&j, r->cosine);
                json_key(&j, "nan"), json_int(&j, r->nan_a);
                json_key(&j, "inf"), json_int(&j, r->inf_a);
                json_key(&j, "reference_nan"), json_int(&j, r->nan_r);
                json_key(&j, "reference_inf"), json_int(&j, r->inf_r);
                json_key(&j, "beyond_tolerance"), json_int(&j, r->bad);
                json_key(&j, "count"), json_int(&j, r->count);
            }
            json_end_object(&j);
        }
        json_end_array(&j);
        json_end_object(&j);
        rc = json_close(c, &j, &af, json_path);
        if (rc != CLI_OK) goto out;
    }
    if (missing_model_outputs) {
        rc = cli_fail(c, "%d output%s of the model %s no reference in %s", missing_model_outputs,
                      missing_model_outputs > 1 ? "s" : "", missing_model_outputs > 1 ? "have" : "has", reference);
    } else if (failed) {
        if (first_layer)
            rc = cli_fail(c, "%d of %d tensors beyond tolerance (atol %g, rtol %g); the first is layer '%s' (tensor '%s')",
                          failed, compared, atol, rtol, first_layer, first_tensor);
        else
            rc = cli_fail(c, "%d of %d outputs beyond tolerance (atol %g, rtol %g)", failed, compared, atol, rtol);
    }
out:
    free(res);
    kiln_context_destroy(ctx);
    kiln_context_destroy(rctx);
    io_free(io);
    io_free(rio);
    free(io);
    free(rio);
    loaded_model_free(&m);
    loaded_model_free(&rm);
    input_set_free(ins);
    free(ins);
    build_opts_free(&o);
    build_opts_free(&ro);
    return rc;
}
