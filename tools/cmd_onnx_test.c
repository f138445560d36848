/* kiln onnx-test: runs ONNX backend test directories (model.onnx plus
 * test_data_set_N/{input,output}_K.pb) through the public API and counts passes,
 * failures and skips. Each test runs in a child process, so a crash or a hang fails that
 * test alone. Same rules as src/onnx/conformance.c (kiln_onnx_test), which is not a
 * library the tool could call. */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#ifdef KILN_CLI_HAVE_ONNX
#include "kiln/onnx.h"
#endif

static const char help[] =
    "usage: kiln onnx-test DIR... [OPTIONS]\n"
    "\n"
    "Runs ONNX backend tests: a DIR holding model.onnx is one test, any other DIR is searched\n"
    "for such subdirectories. Each test_data_set_N's input_K.pb feed the model (by tensor name,\n"
    "else by position) and its output_K.pb are compared: |kiln - expected| <= atol + rtol *\n"
    "|expected| (ONNX's defaults: rtol 1e-3, atol 1e-7; wider for float16 and bfloat16).\n"
    "A test is skipped when kiln reports only unsupported constructs (the reason is printed),\n"
    "and fails on anything else. Prints 'N passed, M failed, K skipped'; exit status 1 when a\n"
    "test failed.\n"
    "\n"
    "options:\n"
    "  --device cpu|cuda          device to run on (default cpu)\n"
    "  --filter TEXT              only tests whose directory name contains TEXT\n"
    "  --atol A, --rtol R         override the tolerances\n"
    "  --timeout S                seconds per test (default 120)\n"
    "  --no-fork                  run tests in this process (for debuggers)\n"
    "  --json FILE                per-test results as JSON ('-': standard output)\n"
    "  -q, --quiet                only the summary   -v, --verbose   passes too, library log\n"
    "\n"
    "examples:\n"
    "  kiln onnx-test /usr/share/libonnx-testdata/data/node\n"
    "  kiln onnx-test /usr/share/libonnx-testdata/data/node --filter conv -v\n";

typedef enum { R_PASS = 0, R_FAIL = 1, R_SKIP = 2 } result_kind;

typedef struct test_opts {
    kiln_device device;
    double atol, rtol; /* < 0: the defaults */
    int timeout_s;
    bool fork;
    const cli *c;
} test_opts;

#ifdef KILN_CLI_HAVE_ONNX
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_dir(const char *dir, const char *prefix, char ***out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || (prefix && strncmp(e->d_name, prefix, strlen(prefix)) != 0)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if ((names[n] = strdup(e->d_name)) != NULL) n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static void free_list(char **l, int n) {
    for (int i = 0; i < n; i++) free(l[i]);
    free(l);
}

static bool has_model(const char *dir) {
    char p[4096];
    int n = snprintf(p, sizeof p, "%s/model.onnx", dir);
    return n > 0 && (size_t)n < sizeof p && access(p, R_OK) == 0;
}

#define MAX_FILES 64

static int read_set(const char *dir, const char *prefix, host_tensor *out, char *err, size_t errsz) {
    int n = 0;
    for (; n < MAX_FILES; n++) {
        char path[4096];
        int len = snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, n);
        if (len < 0 || (size_t)len >= sizeof path || access(path, R_OK) != 0) break;
        if (!tensor_read_file(path, &out[n], err, errsz)) {
            for (int k = 0; k < n; k++) tensor_free(&out[k]);
            return -1;
        }
    }
    return n;
}

static bool check_output(const char *name, kiln_dtype dt, const void *got, const host_tensor *want, const test_opts *o,
                         char *msg, size_t msz) {
    double rtol = 1e-3, atol = 1e-7;
    if (dt == KILN_FLOAT16) rtol = 2e-3, atol = 1e-4;
    if (dt == KILN_BFLOAT16) rtol = 1e-2, atol = 1e-3;
    if (o->rtol >= 0) rtol = o->rtol;
    if (o->atol >= 0) atol = o->atol;
    int64_t n = tensor_count(want), bad = 0, first = -1;
    double worst = 0;
    bool fl = dtype_is_float(dt);
    for (int64_t i = 0; i < n; i++) {
        double g = tensor_get(dt, got, i), w = tensor_get(want->dtype, want->data, i);
        bool ok;
        if (!fl) ok = g == w;
        else if (isnan(w)) ok = isnan(g);
        else if (isinf(w)) ok = g == w;
        else {
            double d = fabs(g - w);
            ok = d <= atol + rtol * fabs(w);
            if (!ok && d > worst) worst = d;
        }
        if (!ok) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (!bad) return true;
    snprintf(msg, msz, "output '%s': %lld of %lld values differ (first at %lld: got %.9g, want %.9g; worst abs diff %.3g)",
             name, (long long)bad, (long long)n, (long long)first, tensor_get(dt, got, first),
             tensor_get(want->dtype, want->data, first), worst);
    return false;
}

static void quiet_log(void *user, kiln_log_level level, const char *msg) {
    const cli *c = user;
    if (c->verbosity >= 2) fprintf(stderr, "  [kiln %d] %s\n", (int)level, msg);
}

/* One test directory; the reason for a failure or skip goes to msg. */
static result_kind run_test(const char *dir, const test_opts *opt, char *msg, size_t msz) {
    char path[4096], err[1024], b1[128], b2[128];
    msg[0] = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    uint8_t *bytes;
    size_t size;
    model_info mi;
    if (!cli_read_file(path, &bytes, &size, err, sizeof err)) {
        snprintf(msg, msz, "model.onnx: %s", err);
        return R_FAIL;
    }
    bool mok = model_info_read(bytes, size, &mi, err, sizeof err);
    free(bytes);
    if (!mok) {
        snprintf(msg, msz, "model.onnx: %s", err);
        return R_FAIL;
    }
    for (int i = 0; i < mi.nb_inputs + mi.nb_outputs; i++) {
        const model_value *v = i < mi.nb_inputs ? &mi.inputs[i] : &mi.outputs[i - mi.nb_inputs];
        if (!v->is_tensor) {
            snprintf(msg, msz, "%s '%s' is not a tensor (sequence, map or optional)", i < mi.nb_inputs ? "input" : "output",
                     v->name);
            model_info_free(&mi);
            return R_SKIP;
        }
    }
    char **sets = NULL;
    int nsets = list_dir(dir, "test_data_set_", &sets);
    host_tensor(*ins)[MAX_FILES] = calloc((size_t)(nsets ? nsets : 1), sizeof *ins);
    host_tensor(*outs)[MAX_FILES] = calloc((size_t)(nsets ? nsets : 1), sizeof *outs);
    int *nin = calloc((size_t)(nsets ? nsets : 1), sizeof *nin), *nout = calloc((size_t)(nsets ? nsets : 1), sizeof *nout);
    result_kind res = R_FAIL;
    kiln_builder *b = NULL;
    kiln_network *net = NULL;
    kiln_onnx_parser *parser = NULL;
    kiln_config *cfg = NULL;
    kiln_engine *eng = NULL;
    const char *in_names[MAX_FILES];
    bool frozen[MAX_FILES] = {false};
    if (!ins || !outs || !nin || !nout) {
        snprintf(msg, msz, "out of memory");
        goto done;
    }
    if (nsets == 0) {
        snprintf(msg, msz, "no test_data_set_* directory");
        goto done;
    }
    for (int s = 0; s < nsets; s++) {
        char sd[4096];
        snprintf(sd, sizeof sd, "%s/%s", dir, sets[s]);
        nin[s] = read_set(sd, "input", ins[s], err, sizeof err);
        nout[s] = nin[s] < 0 ? -1 : read_set(sd, "output", outs[s], err, sizeof err);
        if (nin[s] < 0 || nout[s] < 0) {
            for (int k = 0; k < nin[s]; k++) tensor_free(&ins[s][k]);
            nin[s] = nout[s] = 0;
            snprintf(msg, msz, "%s: %s", sets[s], err);
            /* a data type kiln has no dtype for (strings, uint16 ...) */
            res = strstr(err, "not supported") ? R_SKIP : R_FAIL;
            goto done;
        }
    }
    for (int k = 0; k < nin[0]; k++) {
        in_names[k] = k < mi.nb_inputs ? mi.inputs[k].name : NULL;
        for (int j = 0; j < mi.nb_inputs; j++)
            if (ins[0][k].name && strcmp(ins[0][k].name, mi.inputs[j].name) == 0) in_names[k] = mi.inputs[j].name;
        if (!in_names[k]) {
            snprintf(msg, msz, "input file %d matches no model input", k);
            goto done;
        }
    }
    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    bd.log = quiet_log;
    bd.log_user = (void *)opt->c;
    bd.log_level = opt->c->verbosity >= 2 ? KILN_LOG_INFO : KILN_LOG_ERROR;
    /* Inputs the importer needs as constants (a shape or axes fed as a graph input) are
     * frozen to the test's values when every data set holds the same values; the
     * importer names such a value in its message ("... but value 'X' ..."). */
    for (int attempt = 0;; attempt++) {
        const char *fz_names[MAX_FILES], *sh_names[MAX_FILES];
        kiln_dims fz_dims[MAX_FILES], shapes[MAX_FILES];
        kiln_weights fz_vals[MAX_FILES];
        int nfz = 0, nsh = 0;
        for (int k = 0; k < nin[0]; k++) {
            if (frozen[k]) {
                fz_names[nfz] = in_names[k];
                fz_dims[nfz] = ins[0][k].dims;
                fz_vals[nfz++] = (kiln_weights){ins[0][k].dtype, ins[0][k].data, tensor_count(&ins[0][k])};
            } else {
                sh_names[nsh] = in_names[k];
                shapes[nsh++] = ins[0][k].dims;
            }
        }
        kiln_onnx_desc od = KILN_ONNX_DESC_INIT;
        od.nb_shapes = nsh;
        od.shape_names = sh_names;
        od.shapes = shapes;
        od.nb_frozen = nfz;
        od.frozen_names = fz_names;
        od.frozen_dims = fz_dims;
        od.frozen_values = fz_vals;
        if (kiln_builder_create(&bd, &b) != KILN_OK || kiln_network_create(b, &net) != KILN_OK ||
            kiln_onnx_parser_create(net, &od, &parser) != KILN_OK) {
            snprintf(msg, msz, "%s", cli_last_error());
            goto done;
        }
        if (kiln_onnx_parse_file(parser, path) == KILN_OK) break;
        bool all_unsupported = true, more = false;
        size_t at = 0;
        int ne = kiln_onnx_num_errors(parser);
        for (int i = 0; i < ne; i++) {
            if (kiln_onnx_error_status(parser, i) != KILN_ERR_UNSUPPORTED) all_unsupported = false;
            const char *e = kiln_onnx_error(parser, i);
            const char *val = strstr(e, "but value '");
            for (int k = 0; val && k < nin[0]; k++) {
                size_t len = strlen(in_names[k]);
                if (frozen[k] || strncmp(val + 11, in_names[k], len) != 0 || val[11 + len] != '\'') continue;
                bool same = true;
                for (int s2 = 1; s2 < nsets && same; s2++)
                    same = k < nin[s2] && dims_equal(&ins[s2][k].dims, &ins[0][k].dims) && ins[s2][k].dtype == ins[0][k].dtype &&
                           memcmp(ins[s2][k].data, ins[0][k].data, tensor_bytes(&ins[0][k])) == 0;
                if (same) frozen[k] = more = true;
            }
            const char *node = strstr(e, ": node ");
            if (node) e = node + 2; /* the path is known from the test name */
            if (at < msz) at += (size_t)snprintf(msg + at, msz - at, "%s%s", i ? " | " : "", e);
        }
        if (ne == 0) snprintf(msg, msz, "%s", cli_last_error());
        kiln_onnx_parser_destroy(parser);
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
        parser = NULL;
        net = NULL;
        b = NULL;
        if (!more || attempt >= 4) {
            res = all_unsupported && ne > 0 ? R_SKIP : R_FAIL;
            goto done;
        }
        msg[0] = 0;
    }
    if (kiln_config_create(b, &cfg) != KILN_OK || kiln_config_set_device(cfg, opt->device) != KILN_OK ||
        kiln_builder_build(b, net, cfg, &eng) != KILN_OK) {
        snprintf(msg, msz, "build: %s", cli_last_error());
        goto done;
    }
    res = R_PASS;
    for (int s = 0; s < nsets && res == R_PASS; s++) {
        kiln_context *ctx = NULL;
        void *obuf[MAX_FILES] = {NULL};
        const char *onames[MAX_FILES];
        kiln_dims odims[MAX_FILES];
        kiln_dtype otypes[MAX_FILES];
        if (kiln_context_create(eng, &ctx) != KILN_OK || kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST) != KILN_OK) {
            snprintf(msg, msz, "context: %s", cli_last_error());
            kiln_context_destroy(ctx);
            res = R_FAIL;
            break;
        }
        for (int k = 0; k < nin[s] && res == R_PASS; k++) {
            kiln_dims d;
            kiln_dtype dt;
            if (frozen[k]) continue;
            if (kiln_engine_io_dims(eng, in_names[k], &d) != KILN_OK || kiln_engine_io_dtype(eng, in_names[k], &dt) != KILN_OK) {
                snprintf(msg, msz, "engine has no input '%s': %s", in_names[k], cli_last_error());
                res = R_FAIL;
            } else if (!dims_equal(&d, &ins[s][k].dims) || dt != ins[s][k].dtype) {
                snprintf(msg, msz, "%s: input '%s' is %s %s in the engine, %s %s in the data", sets[s], in_names[k],
                         kiln_dtype_name(dt), cli_dims_str(&d, b1, sizeof b1), kiln_dtype_name(ins[s][k].dtype),
                         cli_dims_str(&ins[s][k].dims, b2, sizeof b2));
                res = R_FAIL;
            } else if (kiln_context_set_tensor_address(ctx, in_names[k], ins[s][k].data) != KILN_OK) {
                snprintf(msg, msz, "bind '%s': %s", in_names[k], cli_last_error());
                res = R_FAIL;
            }
        }
        for (int k = 0; k < nout[s] && res == R_PASS; k++) {
            onames[k] = k < mi.nb_outputs ? mi.outputs[k].name : NULL;
            for (int j = 0; j < mi.nb_outputs; j++)
                if (outs[s][k].name && strcmp(outs[s][k].name, mi.outputs[j].name) == 0) onames[k] = mi.outputs[j].name;
            if (!onames[k] || kiln_engine_io_dims(eng, onames[k], &odims[k]) != KILN_OK ||
                kiln_engine_io_dtype(eng, onames[k], &otypes[k]) != KILN_OK) {
                snprintf(msg, msz, "the engine has no output for output file %d", k);
                res = R_FAIL;
                break;
            }
            int64_t vol = kiln_dims_volume(&odims[k]);
            size_t nbytes = (size_t)(vol > 0 ? vol : 0) * kiln_dtype_size(otypes[k]);
            obuf[k] = malloc(nbytes ? nbytes : 1);
            if (!obuf[k]) {
                snprintf(msg, msz, "out of memory");
                res = R_FAIL;
                break;
            }
            memset(obuf[k], 0xFF, nbytes); /* NaN / -1: unwritten values show */
            if (kiln_context_set_tensor_address(ctx, onames[k], obuf[k]) != KILN_OK) {
                snprintf(msg, msz, "bind '%s': %s", onames[k], cli_last_error());
                res = R_FAIL;
            }
        }
        if (res == R_PASS && kiln_context_execute(ctx) != KILN_OK) {
            snprintf(msg, msz, "execute: %s", cli_last_error());
            res = R_FAIL;
        }
        for (int k = 0; k < nout[s] && res == R_PASS; k++) {
            const host_tensor *w = &outs[s][k];
            if (!dims_equal(&odims[k], &w->dims) || otypes[k] != w->dtype) {
                snprintf(msg, msz, "%s: output '%s' is %s %s, expected %s %s", sets[s], onames[k], kiln_dtype_name(otypes[k]),
                         cli_dims_str(&odims[k], b1, sizeof b1), kiln_dtype_name(w->dtype),
                         cli_dims_str(&w->dims, b2, sizeof b2));
                res = R_FAIL;
            } else if (!check_output(onames[k], otypes[k], obuf[k], w, opt, err, sizeof err)) {
                snprintf(msg, msz, "%s: %s", sets[s], err);
                res = R_FAIL;
            }
        }
        for (int k = 0; k < MAX_FILES; k++) free(obuf[k]);
        kiln_context_destroy(ctx);
    }
    if (res == R_PASS)
        for (int k = 0, at = 0; k < nin[0]; k++)
            if (frozen[k] && (size_t)at < msz)
                at += snprintf(msg + at, msz - (size_t)at, "%s%s", at ? ", " : "frozen inputs: ", in_names[k]);
done:
    kiln_engine_destroy(eng);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_onnx_parser_destroy(parser);
    kiln_builder_destroy(b);
    for (int s = 0; s < nsets; s++) {
        for (int k = 0; nin && k < nin[s]; k++) tensor_free(&ins[s][k]);
        for (int k = 0; nout && k < nout[s]; k++) tensor_free(&outs[s][k]);
    }
    free(ins);
    free(outs);
    free(nin);
    free(nout);
    free_list(sets, nsets);
    model_info_free(&mi);
    return res;
}

/* The test in a child: a crash or a hang fails that test alone. */
static result_kind run_isolated(const char *dir, const test_opts *opt, char *msg, size_t msz) {
    if (!opt->fork) return run_test(dir, opt, msg, msz);
    int fds[2];
    if (pipe(fds) != 0) return run_test(dir, opt, msg, msz);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return run_test(dir, opt, msg, msz);
    }
    if (pid == 0) {
        close(fds[0]);
        alarm((unsigned)opt->timeout_s);
        char m[4096];
        result_kind r = run_test(dir, opt, m, sizeof m);
        char kind = (char)('0' + r);
        ssize_t w = write(fds[1], &kind, 1);
        w += write(fds[1], m, strlen(m));
        (void)w;
        close(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    char buf[4097];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    close(fds[0]);
    buf[got] = 0;
    int status = 0;
    waitpid(pid, &status, 0);
    if (got >= 1 && buf[0] >= '0' && buf[0] <= '2') {
        snprintf(msg, msz, "%s", buf + 1);
        return (result_kind)(buf[0] - '0');
    }
    if (WIFSIGNALED(status))
        snprintf(msg, msz, "%s (signal %d)", WTERMSIG(status) == SIGALRM ? "timed out" : "crashed", WTERMSIG(status));
    else snprintf(msg, msz, "the test process exited with status %d", WEXITSTATUS(status));
    return R_FAIL;
}
#endif

int cmd_onnx_test(cli *c, int argc, char **argv) {
    static const cli_opt opts[] = {CLI_COMMON_OPTS,
                                   {"--device", NULL, true},
                                   {"--filter", NULL, true},
                                   {"--atol", NULL, true},
                                   {"--rtol", NULL, true},
                                   {"--timeout", NULL, true},
                                   {"--no-fork", NULL, false},
                                   {"--json", NULL, true},
                                   {NULL, NULL, false}};
    test_opts to = {KILN_DEVICE_CPU, -1, -1, 120, true, c};
    const char *filter = NULL, *json_path = NULL;
    char **dirs = calloc((size_t)(argc ? argc : 1), sizeof *dirs);
    int ndirs = 0;
    if (!dirs) return cli_fail(c, "out of memory");
    cli_args a = {argc, argv, 0, false};
    int rc = CLI_OK, k;
    const char *v;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END) {
        bool stop;
        int64_t n;
        const char *name = k >= 0 ? opts[k].name : "";
        if (k == CLI_ARG_ERROR) rc = CLI_USAGE;
        else if (k == CLI_ARG_POSITIONAL) dirs[ndirs++] = (char *)v;
        else if (cli_common_option(c, name, help, &stop)) {
            if (stop) goto out;
        } else if (strcmp(name, "--device") == 0) {
            if (!cli_parse_device(c, v, &to.device)) rc = CLI_USAGE;
        } else if (strcmp(name, "--filter") == 0) filter = v;
        else if (strcmp(name, "--atol") == 0) {
            if (!cli_parse_double(c, name, v, 0, INFINITY, &to.atol)) rc = CLI_USAGE;
        } else if (strcmp(name, "--rtol") == 0) {
            if (!cli_parse_double(c, name, v, 0, INFINITY, &to.rtol)) rc = CLI_USAGE;
        } else if (strcmp(name, "--timeout") == 0) {
            if (!cli_parse_int(c, name, v, 1, 86400, &n)) rc = CLI_USAGE;
            to.timeout_s = (int)n;
        } else if (strcmp(name, "--no-fork") == 0) to.fork = false;
        else if (strcmp(name, "--json") == 0) json_path = v;
    }
    if (rc != CLI_OK) goto out;
    if (ndirs == 0) {
        rc = cli_usage(c, "no test directory given");
        goto out;
    }
    if (!have_onnx()) {
        rc = cli_fail(c, "this kiln was built without the ONNX importer (KILN_ONNX=OFF)");
        (void)filter, (void)json_path;
        goto out;
    }
#ifdef KILN_CLI_HAVE_ONNX
    /* the tests: each DIR itself, or its subdirectories holding model.onnx */
    char **tests = NULL;
    int ntests = 0, cap = 0;
    for (int d = 0; d < ndirs && rc == CLI_OK; d++) {
        if (!cli_is_dir(dirs[d])) {
            rc = cli_fail(c, "%s: not a directory", dirs[d]);
            break;
        }
        char **kids = NULL;
        int nk = has_model(dirs[d]) ? 0 : list_dir(dirs[d], NULL, &kids);
        for (int i = -1; i < nk; i++) {
            char p[4096];
            if (i < 0 && !has_model(dirs[d])) continue;
            snprintf(p, sizeof p, i < 0 ? "%s" : "%s/%s", dirs[d], i < 0 ? "" : kids[i]);
            if (i >= 0 && !has_model(p)) continue;
            const char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
            if (filter && !strstr(base, filter)) continue;
            if (ntests == cap) {
                cap = cap ? 2 * cap : 64;
                char **nt = realloc(tests, (size_t)cap * sizeof *nt);
                if (!nt) break;
                tests = nt;
            }
            if ((tests[ntests] = strdup(p)) != NULL) ntests++;
        }
        free_list(kids, nk);
    }
    if (rc == CLI_OK && ntests == 0) rc = cli_fail(c, "no test directories (holding model.onnx) found%s", filter ? " that match --filter" : "");
    result_kind *results = calloc((size_t)(ntests ? ntests : 1), sizeof *results);
    char **msgs = calloc((size_t)(ntests ? ntests : 1), sizeof *msgs);
    int counts[3] = {0, 0, 0};
    if (rc == CLI_OK && (!results || !msgs)) rc = cli_fail(c, "out of memory");
    for (int t = 0; rc == CLI_OK && t < ntests; t++) {
        char msg[4096];
        results[t] = run_isolated(tests[t], &to, msg, sizeof msg);
        msgs[t] = strdup(msg);
        counts[results[t]]++;
        const char *name = strrchr(tests[t], '/') ? strrchr(tests[t], '/') + 1 : tests[t];
        if (results[t] == R_PASS && c->verbosity < 2) continue;
        if (c->verbosity >= 1)
            printf("%s %s%s%s\n", results[t] == R_PASS ? "PASS" : results[t] == R_FAIL ? "FAIL" : "SKIP", name,
                   msg[0] ? ": " : "", msg);
    }
    if (rc == CLI_OK) {
        printf("%d passed, %d failed, %d skipped\n", counts[R_PASS], counts[R_FAIL], counts[R_SKIP]);
        if (json_path) {
            json j;
            atomic_file af;
            if (!json_open(c, &j, &af, json_path)) rc = CLI_FAIL;
            else {
                json_begin_object(&j);
                json_key(&j, "passed"), json_int(&j, counts[R_PASS]);
                json_key(&j, "failed"), json_int(&j, counts[R_FAIL]);
                json_key(&j, "skipped"), json_int(&j, counts[R_SKIP]);
                json_key(&j, "tests");
                json_begin_array(&j);
                for (int t = 0; t < ntests; t++) {
                    json_begin_object(&j);
                    json_key(&j, "dir"), json_str(&j, tests[t]);
                    json_key(&j, "result"), json_str(&j, results[t] == R_PASS ? "pass" : results[t] == R_FAIL ? "fail" : "skip");
                    json_key(&j, "message"), json_str(&j, msgs[t] ? msgs[t] : "");
                    json_end_object(&j);
                }
                json_end_array(&j);
                json_end_object(&j);
                rc = json_close(c, &j, &af, json_path);
            }
        }
        if (rc == CLI_OK && counts[R_FAIL]) rc = cli_fail(c, "%d of %d tests failed", counts[R_FAIL], ntests);
    }
    for (int t = 0; t < ntests; t++) {
        free(tests[t]);
        if (msgs) free(msgs[t]);
    }
    free(tests);
    free(results);
    free(msgs);
#endif
out:
    free(dirs);
    return rc;
}
