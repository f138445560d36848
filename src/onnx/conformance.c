/* kiln_onnx_test: runs ONNX backend test directories (model.onnx plus
 * test_data_set_N/{input,output}_K.pb) on the kiln CPU backend and compares outputs.
 *
 *   kiln_onnx_test [--expected FILE] [--filter TEXT] [--rel-l2 TOL] [--timeout S] [--no-fork]
 *                  [--no-freeze] [-v] DIR...
 *
 * Floating outputs are compared element by element (|got - want| <= atol + rtol|want|,
 * the ONNX backend defaults rtol 1e-3, atol 1e-7), or with --rel-l2 TOL by the relative
 * L2 error of the whole tensor, ||got - want|| / ||want|| <= TOL, which suits deep
 * models whose near-zero outputs defeat element-wise tolerances.
 *
 * A DIR holding model.onnx is one test; any other DIR is scanned for such children.
 * A test is skipped when the importer reports only unsupported constructs (the reason
 * is printed), failed on any other problem or mismatch. With --expected, tests listed
 * there ("name reason...") may fail; the run fails on an unlisted failure and on a
 * listed test that passes or is skipped, so the list stays honest. Each test runs in
 * a child process so a crash or a hang (--timeout) is a failure of that test only.
 * Models that take a shape, axes or weights as a graph input get that input frozen to
 * the test data's value (when every data set agrees) unless --no-freeze. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kiln/kiln.h"
#include "kiln/onnx.h"
#include "onnx.pb-c.h"

#define MAX_IO 64

typedef enum { R_PASS = 0, R_FAIL = 1, R_SKIP = 2 } result_kind;

typedef struct tensor_file {
    char *name;
    kiln_dtype dtype;
    kiln_dims dims;
    void *data;
} tensor_file;

typedef struct options {
    const char *expected;
    const char *filter;
    bool fork;
    bool verbose;
    double rel_l2; /* > 0: compare floats by relative L2 error */
    int timeout_s; /* per test, when forked */
    bool freeze;   /* freeze model inputs the importer needs as constants */
} options;

static void tf_free(tensor_file *t) {
    free(t->name);
    free(t->data);
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

/* Sorted names of the entries of dir starting with prefix (NULL: all). */
static int list_dir(const char *dir, const char *prefix, char ***out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (prefix && strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n]) n++;
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

/* The model's real inputs (graph inputs that are not initializers) and outputs. */
typedef struct model_io {
    int nin, nout;
    char *in[MAX_IO];
    char *out[MAX_IO];
    char non_tensor[256]; /* set when an input or output is a sequence, map or optional */
} model_io;

static void check_tensor_type(model_io *io, const Onnx__ValueInfoProto *vi, const char *what) {
    if (io->non_tensor[0] || !vi) return;
    const Onnx__TypeProto *t = vi->type;
    if (t && t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        snprintf(io->non_tensor, sizeof io->non_tensor, "%s '%s' is not a tensor (sequence, map or optional)", what,
                 vi->name ? vi->name : "?");
}

static bool read_model_io(const char *path, model_io *io, char *err, size_t errsz) {
    memset(io, 0, sizeof *io);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "cannot open %s", path);
        return false;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    bool ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    Onnx__ModelProto *m = ok ? onnx__model_proto__unpack(NULL, (size_t)size, buf) : NULL;
    free(buf);
    if (!m || !m->graph) {
        snprintf(err, errsz, "cannot read the model");
        if (m) onnx__model_proto__free_unpacked(m, NULL);
        return false;
    }
    const Onnx__GraphProto *g = m->graph;
    for (size_t i = 0; i < g->n_input && io->nin < MAX_IO; i++) {
        const char *name = g->input[i]->name;
        bool init = false;
        for (size_t k = 0; k < g->n_initializer && !init; k++)
            init = g->initializer[k]->name && name && strcmp(g->initializer[k]->name, name) == 0;
        if (!init && name) {
            io->in[io->nin++] = strdup(name);
            check_tensor_type(io, g->input[i], "input");
        }
    }
    for (size_t i = 0; i < g->n_output && io->nout < MAX_IO; i++)
        if (g->output[i]->name) {
            io->out[io->nout++] = strdup(g->output[i]->name);
            check_tensor_type(io, g->output[i], "output");
        }
    onnx__model_proto__free_unpacked(m, NULL);
    return true;
}

static void model_io_free(model_io *io) {
    for (int i = 0; i < io->nin; i++) free(io->in[i]);
    for (int i = 0; i < io->nout; i++) free(io->out[i]);
}

/* Reads prefix_0.pb, prefix_1.pb, ... from dir. */
static int read_tensors(const char *dir, const char *prefix, tensor_file *out, char *err, size_t errsz) {
    int n = 0;
    for (; n < MAX_IO; n++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, n);
        if (!is_file(path)) break;
        memset(&out[n], 0, sizeof out[n]);
        if (kiln_onnx_read_tensor_file(path, &out[n].name, &out[n].dtype, &out[n].dims, &out[n].data) != KILN_OK) {
            snprintf(err, errsz, "%s", kiln_last_error());
            for (int k = 0; k < n; k++) tf_free(&out[k]);
            return -1;
        }
    }
    return n;
}

static double elem_f(kiln_dtype dt, const void *p, int64_t i);
static int64_t elem_i(kiln_dtype dt, const void *p, int64_t i);

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (man << 13);
    else
        bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static double elem_f(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_FLOAT32:
        return ((const float *)p)[i];
    case KILN_FLOAT64:
        return ((const double *)p)[i];
    case KILN_FLOAT16:
        return half_to_float(((const uint16_t *)p)[i]);
    case KILN_BFLOAT16: {
        uint32_t b = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    default:
        return (double)elem_i(dt, p, i);
    }
}

static int64_t elem_i(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_INT64:
        return ((const int64_t *)p)[i];
    case KILN_INT32:
        return ((const int32_t *)p)[i];
    case KILN_INT8:
        return ((const int8_t *)p)[i];
    case KILN_UINT8:
    case KILN_BOOL:
        return ((const uint8_t *)p)[i];
    default:
        return (int64_t)elem_f(dt, p, i);
    }
}

static bool is_float(kiln_dtype t) {
    return t == KILN_FLOAT32 || t == KILN_FLOAT64 || t == KILN_FLOAT16 || t == KILN_BFLOAT16;
}

/* ONNX backend test defaults: |got - want| <= atol + rtol * |want|, rtol 1e-3,
 * atol 1e-7; half types get the tolerance their precision allows. */
static bool compare(const char *what, kiln_dtype dt, const void *got, const tensor_file *want, int64_t n, double rel_l2,
                    char *err, size_t errsz) {
    if (rel_l2 > 0 && is_float(dt)) {
        double num = 0, den = 0;
        bool finite = true;
        for (int64_t i = 0; i < n; i++) {
            double g = elem_f(dt, got, i), w = elem_f(want->dtype, want->data, i);
            if (!isfinite(g) && !(isnan(g) && isnan(w)) && g != w) finite = false;
            if (isfinite(g) && isfinite(w)) {
                num += (g - w) * (g - w);
                den += w * w;
            }
        }
        double e = den > 0 ? sqrt(num / den) : sqrt(num);
        if (finite && e <= rel_l2) return true;
        snprintf(err, errsz, "output '%s': relative L2 error %.3g > %.3g%s", what, e, rel_l2,
                 finite ? "" : " (non-finite values where the reference is finite)");
        return false;
    }
    double rtol = 1e-3, atol = 1e-7;
    if (dt == KILN_FLOAT16) rtol = 2e-3, atol = 1e-4;
    if (dt == KILN_BFLOAT16) rtol = 1e-2, atol = 1e-3;
    int bad = 0;
    int64_t first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        bool ok;
        if (is_float(dt)) {
            double g = elem_f(dt, got, i), w = elem_f(want->dtype, want->data, i);
            if (isnan(w))
                ok = isnan(g);
            else if (isinf(w))
                ok = g == w;
            else {
                double d = fabs(g - w);
                ok = d <= atol + rtol * fabs(w);
                if (!ok && d > worst) worst = d;
            }
        } else {
            ok = elem_i(dt, got, i) == elem_i(want->dtype, want->data, i);
        }
        if (!ok) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (!bad) return true;
    if (is_float(dt))
        snprintf(err, errsz,
                 "output '%s': %d of %lld values differ (first at %lld: got %.9g, want %.9g; worst abs diff %.3g)",
                 what, bad, (long long)n, (long long)first, elem_f(dt, got, first),
                 elem_f(want->dtype, want->data, first), worst);
    else
        snprintf(err, errsz, "output '%s': %d of %lld values differ (first at %lld: got %lld, want %lld)", what, bad,
                 (long long)n, (long long)first, (long long)elem_i(dt, got, first),
                 (long long)elem_i(want->dtype, want->data, first));
    return false;
}

static void quiet_log(void *user, kiln_log_level level, const char *msg) {
    if (*(const bool *)user) fprintf(stderr, "  [kiln %d] %s\n", (int)level, msg);
}

static bool dims_same(const kiln_dims *a, const kiln_dims *b) {
    if (a->nb_dims != b->nb_dims) return false;
    for (int i = 0; i < a->nb_dims; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

static const char *dstr(const kiln_dims *d, char *buf, size_t size) {
    size_t at = 0;
    buf[0] = 0;
    if (d->nb_dims == 0) snprintf(buf, size, "scalar");
    for (int i = 0; i < d->nb_dims && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? "x%lld" : "%lld", (long long)d->d[i]);
    return buf;
}

/* Runs one test directory. Writes the reason for a failure or skip into msg. */
static result_kind run_test(const char *dir, const options *opt, char *msg, size_t msz) {
    char path[4096], err[2048];
    msg[0] = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    model_io io;
    if (!read_model_io(path, &io, err, sizeof err)) {
        snprintf(msg, msz, "%s", err);
        return R_FAIL;
    }
    if (io.non_tensor[0]) {
        snprintf(msg, msz, "%s", io.non_tensor);
        model_io_free(&io);
        return R_SKIP;
    }
    char **sets = NULL;
    int nsets = list_dir(dir, "test_data_set_", &sets);
    tensor_file(*ins)[MAX_IO] = calloc((size_t)(nsets ? nsets : 1), sizeof *ins);
    tensor_file(*outs)[MAX_IO] = calloc((size_t)(nsets ? nsets : 1), sizeof *outs);
    int *nin = calloc((size_t)(nsets ? nsets : 1), sizeof *nin),
        *nout = calloc((size_t)(nsets ? nsets : 1), sizeof *nout);
    result_kind res = R_FAIL;
    kiln_builder *b = NULL;
    kiln_network *net = NULL;
    kiln_onnx_parser *parser = NULL;
    kiln_config *cfg = NULL;
    kiln_engine *eng = NULL;
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
        nin[s] = read_tensors(sd, "input", ins[s], err, sizeof err);
        nout[s] = nin[s] < 0 ? -1 : read_tensors(sd, "output", outs[s], err, sizeof err);
        if (nin[s] < 0 || nout[s] < 0) {
            if (nin[s] >= 0) {
                for (int k = 0; k < nin[s]; k++) tf_free(&ins[s][k]);
            }
            nin[s] = nout[s] = 0;
            /* a data type kiln has no dtype for (strings, uint16 ...) */
            snprintf(msg, msz, "test data: %s", err);
            res = strstr(err, "not supported") ? R_SKIP : R_FAIL;
            goto done;
        }
    }
    /* which model input each input file feeds: by name when it has one, else by position */
    const char *in_names[MAX_IO];
    for (int k = 0; k < nin[0]; k++) {
        in_names[k] = k < io.nin ? io.in[k] : NULL;
        for (int j = 0; j < io.nin; j++)
            if (ins[0][k].name && strcmp(ins[0][k].name, io.in[j]) == 0) in_names[k] = io.in[j];
        if (!in_names[k]) {
            snprintf(msg, msz, "input file %d matches no model input", k);
            goto done;
        }
    }
    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    bool verbose = opt->verbose;
    bd.log = quiet_log;
    bd.log_user = &verbose;
    bd.log_level = opt->verbose ? KILN_LOG_INFO : KILN_LOG_ERROR;
    /* Inputs the importer needs as constants (a shape, axes, weights fed as graph
     * inputs) are frozen to the test's values when every data set holds the same
     * values, and the import is retried. */
    bool frozen[MAX_IO] = {false};
    for (int attempt = 0;; attempt++) {
        const char *fz_names[MAX_IO], *sh_names[MAX_IO];
        kiln_dims fz_dims[MAX_IO], shapes[MAX_IO];
        kiln_weights fz_vals[MAX_IO];
        int nfz = 0, nsh = 0;
        for (int k = 0; k < nin[0]; k++) {
            if (frozen[k]) {
                fz_names[nfz] = in_names[k];
                fz_dims[nfz] = ins[0][k].dims;
                fz_vals[nfz] = (kiln_weights){ins[0][k].dtype, ins[0][k].data, kiln_dims_volume(&ins[0][k].dims)};
                nfz++;
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
        if (kiln_builder_create(&bd, &b) != KILN_OK || kiln_network_create(b, &net) != KILN_OK) {
            snprintf(msg, msz, "builder: %s", kiln_last_error());
            goto done;
        }
        if (kiln_onnx_parser_create(net, &od, &parser) != KILN_OK) {
            snprintf(msg, msz, "parser: %s", kiln_last_error());
            goto done;
        }
        if (kiln_onnx_parse_file(parser, path) == KILN_OK) break;
        bool all_unsupported = true, more = false;
        size_t at = 0;
        int ne = kiln_onnx_num_errors(parser);
        for (int i = 0; i < ne; i++) {
            if (kiln_onnx_error_status(parser, i) != KILN_ERR_UNSUPPORTED) all_unsupported = false;
            const char *e = kiln_onnx_error(parser, i);
            /* "... but value 'NAME' is a model input" or "... from model input 'NAME'" */
            const char *v = strstr(e, "from model input '");
            size_t skip = 18;
            if (!v) v = strstr(e, "but value '"), skip = 11;
            for (int k = 0; v && k < nin[0]; k++) {
                size_t len = strlen(in_names[k]);
                if (frozen[k] || strncmp(v + skip, in_names[k], len) != 0 || v[skip + len] != '\'') continue;
                bool same = true;
                for (int s2 = 1; s2 < nsets && same; s2++)
                    same = k < nin[s2] && dims_same(&ins[s2][k].dims, &ins[0][k].dims) &&
                           memcmp(ins[s2][k].data, ins[0][k].data,
                                  (size_t)kiln_dims_volume(&ins[0][k].dims) * kiln_dtype_size(ins[0][k].dtype)) == 0;
                if (same) frozen[k] = more = true;
            }
            const char *colon = strstr(e, ": node ");
            if (colon) e = colon + 2; /* the path is known from the test name */
            if (at < msz) at += (size_t)snprintf(msg + at, msz - at, "%s%s", i ? " | " : "", e);
        }
        kiln_onnx_parser_destroy(parser);
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
        parser = NULL;
        net = NULL;
        b = NULL;
        if (!more || !opt->freeze || attempt >= 4) {
            res = all_unsupported ? R_SKIP : R_FAIL;
            goto done;
        }
        msg[0] = 0;
    }
    if (kiln_config_create(b, &cfg) != KILN_OK || kiln_builder_build(b, net, cfg, &eng) != KILN_OK) {
        snprintf(msg, msz, "build: %s", kiln_last_error());
        goto done;
    }
    res = R_PASS;
    for (int k = 0, at = 0; k < nin[0]; k++)
        if (frozen[k] && (size_t)at < msz)
            at += snprintf(msg + at, msz - (size_t)at, "%s%s", at ? ", " : "frozen inputs: ", in_names[k]);
    for (int s = 0; s < nsets && res == R_PASS; s++) {
        kiln_context *ctx = NULL;
        void *obuf[MAX_IO] = {NULL};
        if (kiln_context_create(eng, &ctx) != KILN_OK) {
            snprintf(msg, msz, "context: %s", kiln_last_error());
            res = R_FAIL;
            break;
        }
        for (int k = 0; k < nin[s] && res == R_PASS; k++) {
            kiln_dims d;
            kiln_dtype dt;
            char b1[128], b2[128];
            if (frozen[k]) continue;
            if (kiln_engine_io_dims(eng, in_names[k], &d) != KILN_OK ||
                kiln_engine_io_dtype(eng, in_names[k], &dt) != KILN_OK) {
                snprintf(msg, msz, "engine has no input '%s': %s", in_names[k], kiln_last_error());
                res = R_FAIL;
            } else if (!dims_same(&d, &ins[s][k].dims) || dt != ins[s][k].dtype) {
                snprintf(msg, msz, "%s: input '%s' is %s %s in the engine, %s %s in the data", sets[s], in_names[k],
                         kiln_dtype_name(dt), dstr(&d, b1, sizeof b1), kiln_dtype_name(ins[s][k].dtype),
                         dstr(&ins[s][k].dims, b2, sizeof b2));
                res = R_FAIL;
            } else if (kiln_context_set_tensor_address(ctx, in_names[k], ins[s][k].data) != KILN_OK) {
                snprintf(msg, msz, "bind '%s': %s", in_names[k], kiln_last_error());
                res = R_FAIL;
            }
        }
        const char *onames[MAX_IO];
        kiln_dims odims[MAX_IO];
        kiln_dtype otypes[MAX_IO];
        for (int k = 0; k < nout[s] && res == R_PASS; k++) {
            onames[k] = k < io.nout ? io.out[k] : NULL;
            for (int j = 0; j < io.nout; j++)
                if (outs[s][k].name && strcmp(outs[s][k].name, io.out[j]) == 0) onames[k] = io.out[j];
            if (!onames[k] || kiln_engine_io_dims(eng, onames[k], &odims[k]) != KILN_OK ||
                kiln_engine_io_dtype(eng, onames[k], &otypes[k]) != KILN_OK) {
                snprintf(msg, msz, "engine has no output for output file %d", k);
                res = R_FAIL;
                break;
            }
            int64_t vol = kiln_dims_volume(&odims[k]);
            size_t bytes = (size_t)(vol > 0 ? vol : 0) * kiln_dtype_size(otypes[k]);
            obuf[k] = malloc(bytes ? bytes : 1);
            if (!obuf[k]) {
                snprintf(msg, msz, "out of memory");
                res = R_FAIL;
                break;
            }
            memset(obuf[k], 0xFF, bytes); /* NaN / -1: unwritten values show */
            if (kiln_context_set_tensor_address(ctx, onames[k], obuf[k]) != KILN_OK) {
                snprintf(msg, msz, "bind '%s': %s", onames[k], kiln_last_error());
                res = R_FAIL;
            }
        }
        if (res == R_PASS && kiln_context_execute(ctx) != KILN_OK) {
            snprintf(msg, msz, "execute: %s", kiln_last_error());
            res = R_FAIL;
        }
        for (int k = 0; k < nout[s] && res == R_PASS; k++) {
            char b1[128], b2[128];
            const tensor_file *w = &outs[s][k];
            bool types_ok = otypes[k] == w->dtype;
            if (!dims_same(&odims[k], &w->dims) || !types_ok) {
                snprintf(msg, msz, "%s: output '%s' is %s %s, expected %s %s", sets[s], onames[k],
                         kiln_dtype_name(otypes[k]), dstr(&odims[k], b1, sizeof b1), kiln_dtype_name(w->dtype),
                         dstr(&w->dims, b2, sizeof b2));
                res = R_FAIL;
            } else if (!compare(onames[k], otypes[k], obuf[k], w, kiln_dims_volume(&odims[k]), opt->rel_l2, err,
                                sizeof err)) {
                snprintf(msg, msz, "%s: %s", sets[s], err);
                res = R_FAIL;
            }
        }
        for (int k = 0; k < MAX_IO; k++) free(obuf[k]);
        kiln_context_destroy(ctx);
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
    free_list(sets, nsets);
    model_io_free(&io);
    return res;
}

/* Runs the test in a child: a crash or a hang fails that test alone. */
static result_kind run_isolated(const char *dir, const options *opt, char *msg, size_t msz) {
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
    else
        snprintf(msg, msz, "the test process exited with status %d", WEXITSTATUS(status));
    return R_FAIL;
}

/* ---- expected failures ---- */

typedef struct expected {
    char **names;
    bool *seen;
    int n;
} expected;

static bool load_expected(const char *path, expected *e) {
    memset(e, 0, sizeof *e);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kiln_onnx_test: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    char line[2048];
    int cap = 0, lineno = 0;
    bool ok = true;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '#' || *s == '\n' || !*s) continue;
        char *end = s;
        while (*end && *end != ' ' && *end != '\t' && *end != '\n') end++;
        char *reason = end;
        while (*reason == ' ' || *reason == '\t') reason++;
        if (!*reason || *reason == '\n') {
            fprintf(stderr, "%s:%d: entry without a reason\n", path, lineno);
            ok = false;
        }
        *end = 0;
        if (e->n == cap) {
            cap = cap ? 2 * cap : 64;
            e->names = realloc(e->names, (size_t)cap * sizeof *e->names);
            e->seen = realloc(e->seen, (size_t)cap * sizeof *e->seen);
            if (!e->names || !e->seen) {
                fclose(f);
                return false;
            }
        }
        e->names[e->n] = strdup(s);
        e->seen[e->n] = false;
        e->n++;
    }
    fclose(f);
    return ok;
}

static int find_expected(const expected *e, const char *name) {
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->names[i], name) == 0) return i;
    return -1;
}

typedef struct totals {
    int pass, fail, skip, xfail, bad, frozen;
} totals;

static void one(const char *dir, const options *opt, expected *ex, totals *t) {
    const char *name = strrchr(dir, '/');
    name = name ? name + 1 : dir;
    if (opt->filter && !strstr(name, opt->filter)) return;
    char msg[4096];
    result_kind r = run_isolated(dir, opt, msg, sizeof msg);
    int xi = ex ? find_expected(ex, name) : -1;
    if (xi >= 0) ex->seen[xi] = true;
    switch (r) {
    case R_PASS:
        t->pass++;
        if (msg[0]) t->frozen++;
        if (xi >= 0) {
            t->bad++;
            printf("UNEXPECTED PASS %s: remove it from the expected-failure list\n", name);
        } else if (opt->verbose)
            printf("PASS %s%s%s%s\n", name, msg[0] ? " (" : "", msg, msg[0] ? ")" : "");
        break;
    case R_SKIP:
        t->skip++;
        printf("SKIP %s: %s\n", name, msg);
        if (xi >= 0 && opt->freeze) { /* the list is kept for the default (freezing) mode */
            t->bad++;
            printf("LISTED BUT SKIPPED %s: remove it from the expected-failure list\n", name);
        }
        break;
    case R_FAIL:
        t->fail++;
        if (xi >= 0) {
            t->xfail++;
            printf("XFAIL %s: %s\n", name, msg);
        } else {
            t->bad++;
            printf("FAIL %s: %s\n", name, msg);
        }
        break;
    }
    fflush(stdout);
}

static void walk(const char *dir, const options *opt, expected *ex, totals *t) {
    char model[4200];
    snprintf(model, sizeof model, "%s/model.onnx", dir);
    if (is_file(model)) {
        one(dir, opt, ex, t);
        return;
    }
    char **names;
    int n = list_dir(dir, NULL, &names);
    for (int i = 0; i < n; i++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, names[i]);
        snprintf(model, sizeof model, "%s/model.onnx", sub);
        if (is_dir(sub) && is_file(model)) one(sub, opt, ex, t);
    }
    free_list(names, n);
}

int main(int argc, char **argv) {
    options opt = {NULL, NULL, true, false, 0, 300, true};
    static const char usage[] =
        "usage: %s [--expected FILE] [--filter TEXT] [--rel-l2 TOL] [--timeout S] [--no-fork] [--no-freeze] [-v] DIR...\n"
        "  runs ONNX backend test directories (model.onnx + test_data_set_*/) on the kiln CPU backend\n"
        "  --expected FILE  tests allowed to fail (\"name reason\" per line); listed tests that pass fail the run\n"
        "  --filter TEXT    only tests whose name contains TEXT\n"
        "  --rel-l2 TOL     compare float outputs by whole-tensor relative L2 error instead of rtol/atol\n"
        "  --timeout S      seconds a test may take (default 300)\n"
        "  --no-fork        run tests in this process (for debuggers and leak checkers)\n"
        "  --no-freeze      skip tests that feed a shape, axes or weights as a model input, instead of\n"
        "                   freezing that input to the test's value (kiln_onnx_desc.frozen_*)\n"
        "  -v               print passes and kiln's log\n";
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    int nb_dirs = 0;
    if (!dirs) return 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expected") == 0 && i + 1 < argc)
            opt.expected = argv[++i];
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            opt.filter = argv[++i];
        else if (strcmp(argv[i], "--no-fork") == 0)
            opt.fork = false;
        else if (strcmp(argv[i], "--no-freeze") == 0)
            opt.freeze = false;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            opt.timeout_s = atoi(argv[++i]);
            if (opt.timeout_s <= 0) {
                fprintf(stderr, "%s: --timeout wants a positive number of seconds\n", argv[0]);
                return 2;
            }
        } else if (strcmp(argv[i], "--rel-l2") == 0 && i + 1 < argc) {
            char *end;
            opt.rel_l2 = strtod(argv[++i], &end);
            if (*end || !(opt.rel_l2 > 0)) {
                fprintf(stderr, "%s: --rel-l2 wants a positive number, got '%s'\n", argv[0], argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "-v") == 0)
            opt.verbose = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, usage, argv[0]);
            return 2;
        } else {
            dirs[nb_dirs++] = argv[i];
        }
    }
    if (nb_dirs == 0) {
        fprintf(stderr, usage, argv[0]);
        return 2;
    }
    expected ex;
    bool have_ex = false;
    if (opt.expected) {
        if (!load_expected(opt.expected, &ex)) return 2;
        have_ex = true;
    }
    totals t = {0, 0, 0, 0, 0, 0};
    for (int i = 0; i < nb_dirs; i++) {
        if (!is_dir(dirs[i])) {
            fprintf(stderr, "kiln_onnx_test: %s is not a directory\n", dirs[i]);
            t.bad++;
            continue;
        }
        walk(dirs[i], &opt, have_ex ? &ex : NULL, &t);
    }
    if (have_ex && !opt.filter)
        for (int i = 0; i < ex.n; i++)
            if (!ex.seen[i])
                printf("note: expected failure '%s' was not found in the directories given\n", ex.names[i]);
    printf(
        "%d passed, %d failed, %d skipped (%d of the passes with frozen inputs; %d expected failures; %d problems)\n",
        t.pass, t.fail, t.skip, t.frozen, t.xfail, t.bad);
    if (have_ex) {
        for (int i = 0; i < ex.n; i++) free(ex.names[i]);
        free(ex.names);
        free(ex.seen);
    }
    free(dirs);
    return t.bad ? 1 : 0;
}
