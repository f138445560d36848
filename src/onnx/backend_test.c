/* kiln ONNX importer: the ONNX backend-test runner that kiln_onnx_test (CI, with its
 * expected-failure list) and `kiln onnx-test` share: one test directory (model.onnx,
 * test_data_set_N/{input,output}_K.pb) imported, built, run on every data set and
 * compared, optionally in a child process so that a crash fails that test alone. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kiln/builder.h"
#include "onnx_internal.h"
#include "tensor_io.h"

#define MAX_IO 64

typedef struct tfile {
    char *name;
    ox_const c;
} tfile;

static void tf_free(tfile *t) {
    free(t->name);
    free(t->c.data);
    memset(t, 0, sizeof *t);
}

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of the entries of dir starting with prefix (NULL: all); -1 when out of memory. */
static int list_dir(const char *dir, const char *prefix, char ***out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    char **names = NULL;
    struct dirent *e;
    bool oom = false;
    while (!oom && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || (prefix && strncmp(e->d_name, prefix, strlen(prefix)) != 0)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) {
                oom = true;
                break;
            }
            names = nn;
        }
        if ((names[n] = strdup(e->d_name)) != NULL) n++;
        else oom = true;
    }
    closedir(d);
    if (oom) {
        kiln_onnx_test_list_free(names, n);
        return -1;
    }
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

void kiln_onnx_test_list_free(char **dirs, int count) {
    for (int i = 0; dirs && i < count; i++) free(dirs[i]);
    free(dirs);
}

static bool has_model(const char *dir) {
    char p[4200];
    int n = snprintf(p, sizeof p, "%s/model.onnx", dir);
    return n > 0 && (size_t)n < sizeof p && is_file(p);
}

kiln_status kiln_onnx_test_list(const char *path, char ***dirs, int *count) {
    if (dirs) *dirs = NULL;
    if (count) *count = 0;
    if (!path || !dirs || !count)
        return kiln_set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_test_list: path, dirs or count is NULL");
    char msg[4200];
    if (!is_dir(path)) {
        snprintf(msg, sizeof msg, "%s: not a directory", path);
        return kiln_set_last_error(KILN_ERR_IO, msg);
    }
    char **out = NULL;
    int n = 0;
    if (has_model(path)) {
        out = malloc(sizeof *out);
        if (out && (out[0] = strdup(path)) != NULL) n = 1;
        else {
            free(out);
            goto oom;
        }
    } else {
        char **kids;
        int nk = list_dir(path, NULL, &kids);
        if (nk < 0) goto oom;
        out = malloc((size_t)(nk ? nk : 1) * sizeof *out);
        if (!out) {
            kiln_onnx_test_list_free(kids, nk);
            goto oom;
        }
        for (int i = 0; i < nk; i++) {
            char *sub = malloc(strlen(path) + strlen(kids[i]) + 2);
            if (!sub) {
                kiln_onnx_test_list_free(kids, nk);
                kiln_onnx_test_list_free(out, n);
                goto oom;
            }
            sprintf(sub, "%s/%s", path, kids[i]);
            if (is_dir(sub) && has_model(sub)) out[n++] = sub;
            else free(sub);
        }
        kiln_onnx_test_list_free(kids, nk);
    }
    *dirs = out;
    *count = n;
    return KILN_OK;
oom:
    return kiln_set_last_error(KILN_ERR_OUT_OF_MEMORY, "kiln_onnx_test_list: out of host memory");
}

/* Reads prefix_0.pb, prefix_1.pb, ... from dir: the count, or -1 with the reason in err
 * and its status in *st. */
static int read_tensors(const char *dir, const char *prefix, tfile *out, kiln_status *st, char *err, size_t errsz) {
    int n = 0;
    for (; n < MAX_IO; n++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, n);
        if (!is_file(path)) break;
        memset(&out[n], 0, sizeof out[n]);
        *st = ox_tensor_read_file(path, &out[n].name, &out[n].c.dtype, &out[n].c.dims, &out[n].c.data, err, errsz);
        if (*st != KILN_OK) {
            for (int k = 0; k < n; k++) tf_free(&out[k]);
            return -1;
        }
        out[n].c.count = ox_volume(&out[n].c.dims);
    }
    return n;
}

static bool dims_same(const kiln_dims *a, const kiln_dims *b) {
    if (a->nb_dims != b->nb_dims) return false;
    for (int i = 0; i < a->nb_dims; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

static bool same_values(const tfile *a, const tfile *b) {
    return a->c.dtype == b->c.dtype && dims_same(&a->c.dims, &b->c.dims) &&
           memcmp(a->c.data, b->c.data, (size_t)a->c.count * kiln_dtype_size(a->c.dtype)) == 0;
}

static bool compare(const char *what, const ox_const *got, const ox_const *want, const kiln_onnx_test_desc *o, char *err,
                    size_t errsz) {
    kiln_dtype dt = got->dtype;
    int64_t n = got->count;
    bool fl = ox_dtype_is_float(dt);
    if (o->rel_l2 > 0 && fl) {
        double num = 0, den = 0;
        bool finite = true;
        for (int64_t i = 0; i < n; i++) {
            double g = ox_get_f(got, i), w = ox_get_f(want, i);
            if (!isfinite(g) && !(isnan(g) && isnan(w)) && g != w) finite = false;
            if (isfinite(g) && isfinite(w)) {
                num += (g - w) * (g - w);
                den += w * w;
            }
        }
        double e = den > 0 ? sqrt(num / den) : sqrt(num);
        if (finite && e <= o->rel_l2) return true;
        snprintf(err, errsz, "output '%s': relative L2 error %.3g > %.3g%s", what, e, o->rel_l2,
                 finite ? "" : " (non-finite values where the reference is finite)");
        return false;
    }
    double rtol = 1e-3, atol = 1e-7;
    if (dt == KILN_FLOAT16) rtol = 2e-3, atol = 1e-4;
    if (dt == KILN_BFLOAT16) rtol = 1e-2, atol = 1e-3;
    if (o->rtol >= 0) rtol = o->rtol;
    if (o->atol >= 0) atol = o->atol;
    int64_t bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        bool ok;
        if (fl) {
            double g = ox_get_f(got, i), w = ox_get_f(want, i);
            if (isnan(w)) ok = isnan(g);
            else if (isinf(w)) ok = g == w;
            else {
                double d = fabs(g - w);
                ok = d <= atol + rtol * fabs(w); /* false for a NaN where a number is expected */
                if (!ok && !(d <= worst)) worst = d;
            }
        } else {
            ok = ox_get_i(got, i) == ox_get_i(want, i);
        }
        if (!ok) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (!bad) return true;
    if (fl)
        snprintf(err, errsz,
                 "output '%s': %lld of %lld values differ (first at %lld: got %.9g, want %.9g; worst abs diff %.3g)",
                 what, (long long)bad, (long long)n, (long long)first, ox_get_f(got, first), ox_get_f(want, first),
                 worst);
    else
        snprintf(err, errsz, "output '%s': %lld of %lld values differ (first at %lld: got %lld, want %lld)", what,
                 (long long)bad, (long long)n, (long long)first, (long long)ox_get_i(got, first),
                 (long long)ox_get_i(want, first));
    return false;
}

static void silent_log(void *user, kiln_log_level level, const char *msg) {
    (void)user, (void)level, (void)msg;
}

static const char *dstr(const kiln_dims *d, char *buf, size_t size) { return ox_dims_str(d, buf, size); }

/* msg (at least 1 byte) gets the reason for a failure or a skip. */
static kiln_onnx_test_result run_test(const char *dir, const kiln_onnx_test_desc *opt, int *nb_frozen, char *msg,
                                      size_t msz) {
    char path[4200], err[2048];
    msg[0] = 0;
    *nb_frozen = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    kiln_onnx_model_info *info = NULL;
    if (kiln_onnx_read_model_info_file(path, &info) != KILN_OK) {
        snprintf(msg, msz, "%s", kiln_last_error());
        return KILN_ONNX_TEST_FAIL;
    }
    for (int i = 0; i < info->nb_inputs + info->nb_outputs; i++) {
        bool is_in = i < info->nb_inputs;
        const kiln_onnx_value_info *v = is_in ? &info->inputs[i] : &info->outputs[i - info->nb_inputs];
        if (v->kind != KILN_ONNX_VALUE_TENSOR) {
            snprintf(msg, msz, "%s '%s' is not a tensor (sequence, map or optional)", is_in ? "input" : "output",
                     v->name);
            kiln_onnx_model_info_destroy(info);
            return KILN_ONNX_TEST_SKIP;
        }
    }
    char **sets = NULL;
    int nsets = list_dir(dir, "test_data_set_", &sets);
    size_t nalloc = (size_t)(nsets > 0 ? nsets : 1);
    tfile(*ins)[MAX_IO] = calloc(nalloc, sizeof *ins);
    tfile(*outs)[MAX_IO] = calloc(nalloc, sizeof *outs);
    int *nin = calloc(nalloc, sizeof *nin), *nout = calloc(nalloc, sizeof *nout);
    kiln_onnx_test_result res = KILN_ONNX_TEST_FAIL;
    kiln_builder *b = NULL;
    kiln_network *net = NULL;
    kiln_onnx_parser *parser = NULL;
    kiln_config *cfg = NULL;
    kiln_engine *eng = NULL;
    const char *in_names[MAX_IO];
    bool frozen[MAX_IO] = {false};
    if (nsets < 0 || !ins || !outs || !nin || !nout) {
        snprintf(msg, msz, "out of host memory");
        nsets = nsets < 0 ? 0 : nsets;
        goto done;
    }
    if (nsets == 0) {
        snprintf(msg, msz, "no test_data_set_* directory");
        goto done;
    }
    for (int s = 0; s < nsets; s++) {
        char sd[4200];
        kiln_status st = KILN_OK;
        snprintf(sd, sizeof sd, "%s/%s", dir, sets[s]);
        nin[s] = read_tensors(sd, "input", ins[s], &st, err, sizeof err);
        nout[s] = nin[s] < 0 ? -1 : read_tensors(sd, "output", outs[s], &st, err, sizeof err);
        if (nin[s] < 0 || nout[s] < 0) {
            for (int k = 0; k < nin[s]; k++) tf_free(&ins[s][k]);
            nin[s] = nout[s] = 0;
            snprintf(msg, msz, "test data: %s", err);
            /* a data type kiln has no dtype for (strings, uint16 ...) */
            res = st == KILN_ERR_UNSUPPORTED ? KILN_ONNX_TEST_SKIP : KILN_ONNX_TEST_FAIL;
            goto done;
        }
    }
    /* which model input each input file feeds: by name when it has one, else by position */
    for (int k = 0; k < nin[0]; k++) {
        in_names[k] = k < info->nb_inputs ? info->inputs[k].name : NULL;
        for (int j = 0; j < info->nb_inputs; j++)
            if (ins[0][k].name && strcmp(ins[0][k].name, info->inputs[j].name) == 0) in_names[k] = info->inputs[j].name;
        if (!in_names[k]) {
            snprintf(msg, msz, "input file %d matches no model input", k);
            goto done;
        }
    }
    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    bd.log = opt->log ? opt->log : silent_log;
    bd.log_user = opt->log_user;
    bd.log_level = opt->log_level;
    for (int attempt = 0;; attempt++) {
        const char *fz_names[MAX_IO], *sh_names[MAX_IO];
        kiln_dims fz_dims[MAX_IO], shapes[MAX_IO];
        kiln_weights fz_vals[MAX_IO];
        int nfz = 0, nsh = 0;
        for (int k = 0; k < nin[0]; k++) {
            const ox_const *c = &ins[0][k].c;
            if (frozen[k]) {
                fz_names[nfz] = in_names[k];
                fz_dims[nfz] = c->dims;
                fz_vals[nfz++] = (kiln_weights){c->dtype, c->data, c->count};
            } else {
                sh_names[nsh] = in_names[k];
                shapes[nsh++] = c->dims;
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
            snprintf(msg, msz, "%s", kiln_last_error());
            goto done;
        }
        if (kiln_onnx_parse_file(parser, path) == KILN_OK) break;
        bool all_unsupported = true, more = false;
        size_t at = 0, plen = strlen(path);
        int ne = kiln_onnx_num_errors(parser);
        for (int i = 0; i < ne; i++) {
            if (kiln_onnx_error_status(parser, i) != KILN_ERR_UNSUPPORTED) all_unsupported = false;
            const char *value = kiln_onnx_error_value(parser, i);
            for (int k = 0; value && opt->freeze && k < nin[0]; k++) {
                if (frozen[k] || strcmp(value, in_names[k]) != 0) continue;
                bool same = true;
                for (int s2 = 1; s2 < nsets && same; s2++) same = k < nin[s2] && same_values(&ins[s2][k], &ins[0][k]);
                if (same) frozen[k] = more = true;
            }
            /* the message starts with the model's path, which the caller knows */
            const char *e = kiln_onnx_error(parser, i);
            if (strncmp(e, path, plen) == 0 && e[plen] == ':') e += plen + 1 + (e[plen + 1] == ' ');
            if (at < msz) at += (size_t)snprintf(msg + at, msz - at, "%s%s", i ? " | " : "", e);
        }
        if (ne == 0) snprintf(msg, msz, "%s", kiln_last_error());
        kiln_onnx_parser_destroy(parser);
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
        parser = NULL;
        net = NULL;
        b = NULL;
        if (!more || attempt >= MAX_IO) {
            res = all_unsupported && ne > 0 ? KILN_ONNX_TEST_SKIP : KILN_ONNX_TEST_FAIL;
            goto done;
        }
        msg[0] = 0;
    }
    if (kiln_config_create(b, &cfg) != KILN_OK || kiln_config_set_device(cfg, opt->device) != KILN_OK ||
        kiln_builder_build(b, net, cfg, &eng) != KILN_OK) {
        snprintf(msg, msz, "build: %s", kiln_last_error());
        goto done;
    }
    res = KILN_ONNX_TEST_PASS;
    for (int s = 0; s < nsets && res == KILN_ONNX_TEST_PASS; s++) {
        kiln_context *ctx = NULL;
        void *obuf[MAX_IO] = {NULL};
        const char *onames[MAX_IO];
        kiln_dims odims[MAX_IO];
        kiln_dtype otypes[MAX_IO];
        char b1[128], b2[128];
        /* the test data is host memory: a device engine stages it */
        if (kiln_context_create(eng, &ctx) != KILN_OK || kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST) != KILN_OK) {
            snprintf(msg, msz, "context: %s", kiln_last_error());
            kiln_context_destroy(ctx);
            res = KILN_ONNX_TEST_FAIL;
            break;
        }
        for (int k = 0; k < nin[s] && res == KILN_ONNX_TEST_PASS; k++) {
            kiln_dims d;
            kiln_dtype dt;
            const ox_const *c = &ins[s][k].c;
            const char *name = k < nin[0] ? in_names[k] : NULL;
            if (k < nin[0] && frozen[k]) continue;
            if (!name || kiln_engine_io_dims(eng, name, &d) != KILN_OK || kiln_engine_io_dtype(eng, name, &dt) != KILN_OK) {
                snprintf(msg, msz, "%s: input file %d feeds no input of the engine", sets[s], k);
                res = KILN_ONNX_TEST_FAIL;
            } else if (!dims_same(&d, &c->dims) || dt != c->dtype) {
                snprintf(msg, msz, "%s: input '%s' is %s %s in the engine, %s %s in the data", sets[s], name,
                         kiln_dtype_name(dt), dstr(&d, b1, sizeof b1), kiln_dtype_name(c->dtype),
                         dstr(&c->dims, b2, sizeof b2));
                res = KILN_ONNX_TEST_FAIL;
            } else if (kiln_context_set_tensor_address(ctx, name, c->data) != KILN_OK) {
                snprintf(msg, msz, "bind '%s': %s", name, kiln_last_error());
                res = KILN_ONNX_TEST_FAIL;
            }
        }
        for (int k = 0; k < nout[s] && res == KILN_ONNX_TEST_PASS; k++) {
            onames[k] = k < info->nb_outputs ? info->outputs[k].name : NULL;
            for (int j = 0; j < info->nb_outputs; j++)
                if (outs[s][k].name && strcmp(outs[s][k].name, info->outputs[j].name) == 0)
                    onames[k] = info->outputs[j].name;
            if (!onames[k] || kiln_engine_io_dims(eng, onames[k], &odims[k]) != KILN_OK ||
                kiln_engine_io_dtype(eng, onames[k], &otypes[k]) != KILN_OK) {
                snprintf(msg, msz, "the engine has no output for output file %d", k);
                res = KILN_ONNX_TEST_FAIL;
                break;
            }
            int64_t vol = kiln_dims_volume(&odims[k]);
            size_t bytes = (size_t)(vol > 0 ? vol : 0) * kiln_dtype_size(otypes[k]);
            obuf[k] = malloc(bytes ? bytes : 1);
            if (!obuf[k]) {
                snprintf(msg, msz, "out of host memory");
                res = KILN_ONNX_TEST_FAIL;
                break;
            }
            memset(obuf[k], 0xFF, bytes); /* NaN / -1: values the engine failed to write show */
            if (kiln_context_set_tensor_address(ctx, onames[k], obuf[k]) != KILN_OK) {
                snprintf(msg, msz, "bind '%s': %s", onames[k], kiln_last_error());
                res = KILN_ONNX_TEST_FAIL;
            }
        }
        if (res == KILN_ONNX_TEST_PASS && kiln_context_execute(ctx) != KILN_OK) {
            snprintf(msg, msz, "execute: %s", kiln_last_error());
            res = KILN_ONNX_TEST_FAIL;
        }
        for (int k = 0; k < nout[s] && res == KILN_ONNX_TEST_PASS; k++) {
            const ox_const *w = &outs[s][k].c;
            if (!dims_same(&odims[k], &w->dims) || otypes[k] != w->dtype) {
                snprintf(msg, msz, "%s: output '%s' is %s %s, expected %s %s", sets[s], onames[k],
                         kiln_dtype_name(otypes[k]), dstr(&odims[k], b1, sizeof b1), kiln_dtype_name(w->dtype),
                         dstr(&w->dims, b2, sizeof b2));
                res = KILN_ONNX_TEST_FAIL;
                break;
            }
            ox_const got = {otypes[k], odims[k], w->count, obuf[k]};
            if (!compare(onames[k], &got, w, opt, err, sizeof err)) {
                snprintf(msg, msz, "%s: %s", sets[s], err);
                res = KILN_ONNX_TEST_FAIL;
            }
        }
        for (int k = 0; k < MAX_IO; k++) free(obuf[k]);
        kiln_context_destroy(ctx);
    }
    if (res == KILN_ONNX_TEST_PASS)
        for (int k = 0, at = 0; k < nin[0]; k++)
            if (frozen[k]) {
                (*nb_frozen)++;
                if ((size_t)at < msz)
                    at += snprintf(msg + at, msz - (size_t)at, "%s%s", at ? ", " : "frozen inputs: ", in_names[k]);
            }
done:
    kiln_engine_destroy(eng);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_onnx_parser_destroy(parser);
    kiln_builder_destroy(b);
    for (int s = 0; s < nsets; s++) {
        for (int k = 0; nin && k < nin[s]; k++) tf_free(&ins[s][k]);
        for (int k = 0; nout && k < nout[s]; k++) tf_free(&outs[s][k]);
    }
    free(ins);
    free(outs);
    free(nin);
    free(nout);
    kiln_onnx_test_list_free(sets, nsets);
    kiln_onnx_model_info_destroy(info);
    return res;
}

/* The test in a child, which writes the outcome, the frozen count and the message to a
 * pipe; a crash or a hang (SIGALRM) fails the test alone. */
static kiln_onnx_test_result run_isolated(const char *dir, const kiln_onnx_test_desc *opt, int *nb_frozen, char *msg,
                                          size_t msz) {
    int fds[2];
    if (pipe(fds) != 0) return run_test(dir, opt, nb_frozen, msg, msz);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return run_test(dir, opt, nb_frozen, msg, msz);
    }
    if (pid == 0) {
        close(fds[0]);
        if (opt->timeout_s > 0) alarm((unsigned)opt->timeout_s);
        char m[4096];
        int nf = 0;
        kiln_onnx_test_result r = run_test(dir, opt, &nf, m, sizeof m);
        char head[2] = {(char)('0' + r), (char)('0' + (nf < 64 ? nf : 64))};
        ssize_t w = write(fds[1], head, 2);
        w += write(fds[1], m, strlen(m));
        (void)w;
        close(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    char buf[4099];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) != 0) {
        if (r > 0) got += (size_t)r;
        else if (errno == EINTR) continue;
        else break;
    }
    close(fds[0]);
    buf[got] = 0;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got >= 2 && buf[0] >= '0' && buf[0] <= '2') {
        *nb_frozen = buf[1] - '0';
        snprintf(msg, msz, "%s", buf + 2);
        return (kiln_onnx_test_result)(buf[0] - '0');
    }
    if (WIFSIGNALED(status))
        snprintf(msg, msz, "%s (signal %d)", WTERMSIG(status) == SIGALRM ? "timed out" : "crashed", WTERMSIG(status));
    else
        snprintf(msg, msz, "the test process exited with status %d", WEXITSTATUS(status));
    return KILN_ONNX_TEST_FAIL;
}

kiln_status kiln_onnx_test_run(const char *dir, const kiln_onnx_test_desc *desc, kiln_onnx_test_result *result,
                               int *nb_frozen, char *message, size_t message_size) {
    if (result) *result = KILN_ONNX_TEST_FAIL;
    if (nb_frozen) *nb_frozen = 0;
    if (message && message_size) message[0] = 0;
    if (!dir || !result || (!message && message_size))
        return kiln_set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_test_run: dir, result or message is NULL");
    /* `size` says which fields the caller's (possibly older) struct has */
    kiln_onnx_test_desc o = KILN_ONNX_TEST_DESC_INIT;
    if (desc) {
        if (desc->size < offsetof(kiln_onnx_test_desc, log_level) + sizeof(kiln_log_level))
            return kiln_set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_test_run: bad kiln_onnx_test_desc size");
        memcpy(&o, desc, desc->size < sizeof o ? desc->size : sizeof o);
        o.size = sizeof o;
    }
    if (o.timeout_s < 0)
        return kiln_set_last_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_test_run: negative timeout");
    char local[4096];
    int nf = 0;
    *result = o.isolate ? run_isolated(dir, &o, &nf, local, sizeof local) : run_test(dir, &o, &nf, local, sizeof local);
    if (nb_frozen) *nb_frozen = nf;
    if (message && message_size) snprintf(message, message_size, "%s", local);
    return KILN_OK;
}
