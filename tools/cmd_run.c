/* kiln run: runs an engine once on the user's inputs (.npy, .pb, images), prints a short
 * summary of each output and saves them as .npy files. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: kiln run MODEL.plan|MODEL.onnx [--input NAME=FILE ...] [OPTIONS]\n"
    "\n"
    "Runs the model once and prints each output's shape, min, max and mean. An ONNX model is\n"
    "built first (on --device); its symbolic dimensions take their sizes from the input files.\n"
    "\n"
    "inputs:\n"
    "  --input NAME=FILE          data for input NAME: .npy, .pb (ONNX TensorProto), or a .png /\n"
    "                             .jpg / .jpeg image (decoded to RGB, resized bilinearly to the\n"
    "                             input's H x W, NCHW float; a batch gets the image in every item)\n"
    "  --preprocess P             for images: imagenet ((x/255 - mean) / std, the default), unit\n"
    "                             (x/255) or none (0..255)\n"
    "  --random-inputs            fill inputs not given with random data (floats in [-1, 1),\n"
    "                             integers in [0, 4)); without it a missing input is an error\n"
    "  --seed N                   seed for --random-inputs (default 1)\n"
    "\n"
    "outputs:\n"
    "  --output-dir DIR           write each output as DIR/NAME.npy (NAME with characters other\n"
    "                             than letters, digits, '.', '_' and '-' replaced by '_')\n"
    "  --top5                     for classifier outputs (N x classes): the five best classes per\n"
    "                             item, after a softmax unless the values are probabilities already\n"
    "  --labels FILE              class names for --top5, one per line\n"
    "  --json FILE                outputs' summaries as JSON ('-': standard output)\n"
    "\n"
    "build options (ONNX models): --device cpu|cuda, --fp16, --no-range-check, --tf32,\n"
    "  --shapes NAME:DIMS,..., --batch N, --threads N, --timing-cache FILE (as in 'kiln build')\n"
    "  -q, --quiet   errors only       -v, --verbose   library log at verbose level\n"
    "\n"
    "examples:\n"
    "  kiln run resnet50.plan --input data=cat.jpg --top5 --labels imagenet_classes.txt\n"
    "  kiln run model.onnx --input x=x.npy --input mask=mask.pb --output-dir out/\n"
    "  kiln run model.onnx --random-inputs --shapes x:4x3x32x32 --output-dir out/\n";

typedef struct labels {
    char **names;
    int n;
} labels;

static bool read_labels(const char *path, labels *l, char *err, size_t errsz) {
    uint8_t *data;
    size_t size;
    memset(l, 0, sizeof *l);
    if (!cli_read_file(path, &data, &size, err, errsz)) return false;
    int cap = 0;
    char *p = (char *)data, *end = p + size;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        if (stop > p && stop[-1] == '\r') stop--;
        if (l->n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **nn = realloc(l->names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            l->names = nn;
        }
        l->names[l->n++] = strndup(p, (size_t)(stop - p));
        p = nl ? nl + 1 : end;
    }
    free(data);
    return true;
}

static void free_labels(labels *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
}

/* Prints the five best classes of each row of a [rows, classes] output. */
static void print_top5(const char *name, kiln_dtype dt, const void *data, int64_t rows, int64_t classes,
                       const labels *lab) {
    bool probs = true;
    for (int64_t r = 0; r < rows && probs; r++) {
        double sum = 0;
        for (int64_t k = 0; k < classes; k++) {
            double v = tensor_get(dt, data, r * classes + k);
            if (!(v >= 0 && v <= 1)) probs = false;
            sum += v;
        }
        if (fabs(sum - 1) > 1e-3) probs = false;
    }
    printf("top 5 of '%s'%s:\n", name, probs ? " (probabilities)" : " (softmax of the logits)");
    double *p = malloc((size_t)classes * sizeof *p);
    if (!p) return;
    for (int64_t r = 0; r < rows; r++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < classes; k++) {
            p[k] = tensor_get(dt, data, r * classes + k);
            if (p[k] > mx) mx = p[k];
        }
        if (!probs) {
            for (int64_t k = 0; k < classes; k++) sum += (p[k] = exp(p[k] - mx));
            for (int64_t k = 0; k < classes; k++) p[k] /= sum;
        }
        if (rows > 1) printf("  item %lld\n", (long long)r);
        int64_t best[5];
        int nb = 0;
        for (int t = 0; t < 5 && t < classes; t++) {
            int64_t arg = -1;
            for (int64_t k = 0; k < classes; k++) {
                bool used = false;
                for (int u = 0; u < nb; u++) used |= best[u] == k;
                if (!used && !isnan(p[k]) && (arg < 0 || p[k] > p[arg])) arg = k;
            }
            if (arg < 0) break;
            best[nb++] = arg;
            printf("    %6lld  %.4f", (long long)arg, p[arg]);
            if (lab && arg < lab->n) printf("  %s", lab->names[arg]);
            printf("\n");
        }
    }
    free(p);
}

int cmd_run(cli *c, int argc, char **argv) {
    static const cli_opt opts[] = {CLI_COMMON_OPTS,
                                   {"--input", "-i", true},
                                   {"--output-dir", "-o", true},
                                   {"--random-inputs", NULL, false},
                                   {"--seed", NULL, true},
                                   {"--preprocess", NULL, true},
                                   {"--top5", NULL, false},
                                   {"--labels", NULL, true},
                                   {"--json", NULL, true},
                                   CLI_BUILD_OPTS,
                                   {NULL, NULL, false}};
    build_opts o;
    memset(&o, 0, sizeof o);
    input_set *ins = calloc(1, sizeof *ins);
    if (!ins) return cli_fail(c, "out of memory");
    ins->seed = 1;
    ins->pre = PRE_IMAGENET;
    const char *model = NULL, *outdir = NULL, *json_path = NULL, *labels_path = NULL;
    bool top5 = false;
    cli_args a = {argc, argv, 0, false};
    int rc = CLI_OK, k;
    const char *v;
    /* options first, so that --preprocess and the model come before files are read */
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END) {
        bool stop;
        int64_t n;
        if (k == CLI_ARG_ERROR) rc = CLI_USAGE;
        else if (k == CLI_ARG_POSITIONAL) {
            if (model) rc = cli_usage(c, "one model at a time ('%s' and '%s')", model, v);
            model = v;
        } else if (cli_common_option(c, opts[k].name, help, &stop)) {
            if (stop) goto out;
        } else if (strcmp(opts[k].name, "--input") == 0) { /* read below */
        } else if (strcmp(opts[k].name, "--output-dir") == 0) outdir = v;
        else if (strcmp(opts[k].name, "--random-inputs") == 0) ins->random = true;
        else if (strcmp(opts[k].name, "--seed") == 0) {
            if (!cli_parse_int(c, "--seed", v, 0, INT64_MAX, &n)) rc = CLI_USAGE;
            ins->seed = (uint64_t)n;
        } else if (strcmp(opts[k].name, "--preprocess") == 0) {
            if (!cli_parse_preprocess(c, v, &ins->pre)) rc = CLI_USAGE;
        } else if (strcmp(opts[k].name, "--top5") == 0) top5 = true;
        else if (strcmp(opts[k].name, "--labels") == 0) labels_path = v;
        else if (strcmp(opts[k].name, "--json") == 0) json_path = v;
        else cli_build_option(c, opts[k].name, v, &o, &rc);
    }
    if (rc != CLI_OK) goto out;
    if (!model) {
        rc = cli_usage(c, "no model given");
        goto out;
    }
    a.i = 0;
    a.only_positional = false;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END)
        if (k >= 0 && strcmp(opts[k].name, "--input") == 0) input_set_add(c, ins, v, &rc);
    if (rc != CLI_OK) goto out;
    labels lab = {NULL, 0};
    if (labels_path) {
        char err[512];
        if (!read_labels(labels_path, &lab, err, sizeof err)) {
            rc = cli_fail(c, "--labels %s: %s", labels_path, err);
            goto out;
        }
    }

    loaded_model m;
    io_buffers *io = calloc(1, sizeof *io);
    kiln_context *ctx = NULL;
    if (!io) {
        rc = cli_fail(c, "out of memory");
        free_labels(&lab);
        goto out;
    }
    rc = load_model(c, model, &o, ins, false, &m);
    if (rc != CLI_OK) goto done_io;
    rc = io_prepare(c, m.engine, ins, ins->random, io);
    if (rc == CLI_OK) rc = io_bind(c, m.engine, io, &ctx);
    if (rc != CLI_OK) goto done;
    double t0 = cli_now_ms();
    if (kiln_context_execute(ctx) != KILN_OK) {
        rc = cli_fail(c, "%s: run failed: %s", model, cli_last_error());
        goto done;
    }
    double run_ms = cli_now_ms() - t0;

    if (outdir) {
        char err[512];
        if (!cli_mkdirs(outdir, err, sizeof err)) {
            rc = cli_fail(c, "--output-dir: %s", err);
            goto done;
        }
        /* every output under a temporary name first: either all files appear or none */
        atomic_file files[CLI_MAX_IO];
        int nfiles = 0;
        char used[CLI_MAX_IO][256];
        for (int i = 0; i < io->n && rc == CLI_OK; i++) {
            if (io->mode[i] != KILN_IO_OUTPUT) continue;
            char base[224], path[4096];
            cli_sanitize_name(io->name[i], base, sizeof base);
            /* two names that sanitise alike ("a/b", "a:b") get a numbered suffix */
            char unique[256];
            snprintf(unique, sizeof unique, "%s", base);
            for (int n = 2;; n++) {
                bool clash = false;
                for (int u = 0; u < nfiles; u++) clash |= strcmp(used[u], unique) == 0;
                if (!clash) break;
                snprintf(unique, sizeof unique, "%s_%d", base, n);
            }
            snprintf(used[nfiles], sizeof used[nfiles], "%s", unique);
            snprintf(path, sizeof path, "%s/%s.npy", outdir, unique);
            if (!atomic_open(&files[nfiles], path)) {
                rc = cli_fail(c, "%s: cannot write: %s", path, strerror(errno));
                break;
            }
            nfiles++;
            if (!npy_write_stream(files[nfiles - 1].f, io->dtype[i], &io->dims[i], io->data[i]))
                rc = cli_fail(c, "%s: cannot write the data", path);
        }
        if (rc != CLI_OK) {
            for (int f = 0; f < nfiles; f++) atomic_abort(&files[f]);
            goto done;
        }
        for (int f = 0; f < nfiles; f++) {
            char path[4096];
            snprintf(path, sizeof path, "%s", files[f].path);
            if (!atomic_commit(&files[f]) && rc == CLI_OK) rc = cli_fail(c, "%s: cannot write: %s", path, strerror(errno));
        }
        if (rc != CLI_OK) goto done;
    }

    if (c->verbosity >= 1) {
        printf("%s: ran in %.3f ms on %s\n", model, run_ms, kiln_engine_device(m.engine) == KILN_DEVICE_CUDA ? "cuda" : "cpu");
        for (int i = 0; i < io->n; i++)
            if (io->random[i]) printf("  input  %s: random data\n", io->name[i]);
        for (int i = 0; i < io->n; i++) {
            if (io->mode[i] != KILN_IO_OUTPUT) continue;
            char b1[128];
            int64_t cnt = kiln_dims_volume(&io->dims[i]);
            tensor_stats s = tensor_statistics(io->dtype[i], io->data[i], cnt);
            printf("  output %s: %s %s  min %.6g  max %.6g  mean %.6g", io->name[i], kiln_dtype_name(io->dtype[i]),
                   cli_dims_str(&io->dims[i], b1, sizeof b1), s.min, s.max, s.mean);
            if (s.nan || s.inf) printf("  (%lld NaN, %lld Inf)", (long long)s.nan, (long long)s.inf);
            printf("\n");
        }
    }
    if (top5) {
        int shown = 0;
        for (int i = 0; i < io->n; i++) {
            const kiln_dims *d = &io->dims[i];
            if (io->mode[i] != KILN_IO_OUTPUT || !dtype_is_float(io->dtype[i]) || d->nb_dims < 1) continue;
            int64_t classes = d->d[d->nb_dims - 1], rows = classes ? kiln_dims_volume(d) / classes : 0;
            /* a classifier output: [classes], [N, classes] or [N, classes, 1, 1] */
            if (d->nb_dims == 4 && d->d[2] == 1 && d->d[3] == 1) classes = d->d[1], rows = d->d[0];
            else if (d->nb_dims > 2) continue;
            if (classes < 2) continue;
            print_top5(io->name[i], io->dtype[i], io->data[i], rows, classes, labels_path ? &lab : NULL);
            shown++;
        }
        if (!shown) cli_warn(c, "--top5: no output looks like a classifier's (N x classes, floating point)");
    }
    if (json_path) {
        json j;
        atomic_file af;
        if (!json_open(c, &j, &af, json_path)) {
            rc = CLI_FAIL;
            goto done;
        }
        json_begin_object(&j);
        json_key(&j, "model"), json_str(&j, model);
        json_key(&j, "time_ms"), json_num(&j, run_ms);
        json_key(&j, "outputs");
        json_begin_array(&j);
        for (int i = 0; i < io->n; i++) {
            if (io->mode[i] != KILN_IO_OUTPUT) continue;
            tensor_stats s = tensor_statistics(io->dtype[i], io->data[i], kiln_dims_volume(&io->dims[i]));
            json_begin_object(&j);
            json_key(&j, "name"), json_str(&j, io->name[i]);
            json_key(&j, "dtype"), json_str(&j, kiln_dtype_name(io->dtype[i]));
            json_key(&j, "shape"), json_dims(&j, &io->dims[i]);
            json_key(&j, "min"), json_num(&j, s.min);
            json_key(&j, "max"), json_num(&j, s.max);
            json_key(&j, "mean"), json_num(&j, s.mean);
            json_key(&j, "nan"), json_int(&j, s.nan);
            json_key(&j, "inf"), json_int(&j, s.inf);
            json_end_object(&j);
        }
        json_end_array(&j);
        json_end_object(&j);
        rc = json_close(c, &j, &af, json_path);
    }
done:
    kiln_context_destroy(ctx);
    io_free(io);
    loaded_model_free(&m);
done_io:
    free(io);
    free_labels(&lab);
out:
    input_set_free(ins);
    free(ins);
    build_opts_free(&o);
    return rc;
}
