/* kiln demo: classifies the 10,000 Fashion-MNIST test images with an ONNX model trained by
 * python/train_fashion_mnist.py, and reports accuracy, per-batch latency and throughput.
 *
 *   fashion_mnist_demo MODEL.onnx DATASET_DIR [--batch N] [--min-accuracy PERCENT]
 *
 * --min-accuracy makes it a test: exit status 1 when accuracy falls below PERCENT.
 * DATASET_DIR holds t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (Debian:
 * /usr/share/datasets/fashion-mnist). The model takes "image" [N,1,28,28] float32 = pixel/255
 * and returns "logits" [N,10]; see the training script for the contract. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "kiln/kiln.h"
#include "kiln/onnx.h"

#define PROG "fashion_mnist_demo"
#define NUM_CLASSES 10
#define ROWS 28
#define COLS 28
#define PIXELS (ROWS * COLS)
#define IMAGES_MAGIC 0x00000803u
#define LABELS_MAGIC 0x00000801u

static const char *const class_names[NUM_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* The test split, decompressed. */
typedef struct dataset {
    int64_t count;
    uint8_t *images; /* count x 28 x 28 */
    uint8_t *labels; /* count */
} dataset;

/* Everything main owns, so one function can release it on every path. */
typedef struct demo {
    dataset data;
    kiln_builder *builder;
    kiln_network *net;
    kiln_onnx_parser *parser;
    kiln_config *config;
    kiln_engine *engine;
    kiln_context *ctx;
    float *input, *logits;
    double *latency_ms;
    char *input_name, *output_name;
} demo;

/* Prints one error line and returns 1, the exit status for every failure. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* zlib's message for the last error on f, without the "path: " it puts in front. */
static const char *gz_message(gzFile f, const char *path) {
    int errnum;
    const char *msg = gzerror(f, &errnum);
    size_t n = strlen(path);
    if (errnum == Z_ERRNO) return strerror(errno);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

/* Reads exactly n bytes; gzread returns less at the end of the stream and -1 on a corrupt one. */
static int gz_read_exact(gzFile f, const char *path, void *buf, size_t n) {
    uint8_t *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got < 0) return fail("%s: corrupt gzip data (%s)", path, gz_message(f, path));
        if (got == 0) return fail("%s: truncated: the file ends before the data its header announces", path);
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads one gzip-compressed idx file: checks the magic and dimensions, returns its payload.
 * `dims` receives the header's nb_dims sizes. Reading to the end makes zlib verify the CRC. */
static uint8_t *read_idx_gz(const char *path, uint32_t magic, int nb_dims, uint32_t *dims,
                            size_t *size) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fail("cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    uint8_t header[4 * 4];
    uint8_t *data = NULL;
    if (gz_read_exact(f, path, header, 4 * (size_t)(1 + nb_dims))) goto fail;
    if (gzdirect(f)) {
        fail("%s: not gzip-compressed", path);
        goto fail;
    }
    if (be32(header) != magic) {
        fail("%s: not an idx file of the expected kind (magic 0x%08x, should be 0x%08x)", path,
             (unsigned)be32(header), (unsigned)magic);
        goto fail;
    }
    size_t n = 1;
    for (int i = 0; i < nb_dims; i++) {
        dims[i] = be32(header + 4 * (i + 1));
        if (dims[i] == 0 || n > SIZE_MAX / dims[i]) {
            fail("%s: implausible dimensions in the idx header", path);
            goto fail;
        }
        n *= dims[i];
    }
    data = malloc(n);
    if (!data) {
        fail("%s: out of memory", path);
        goto fail;
    }
    if (gz_read_exact(f, path, data, n)) goto fail;
    uint8_t extra;
    int got = gzread(f, &extra, 1);
    if (got != 0) {
        fail("%s: %s", path, got > 0 ? "more data than its header announces" : gz_message(f, path));
        goto fail;
    }
    gzclose(f);
    *size = n;
    return data;
fail:
    free(data);
    gzclose(f);
    return NULL;
}

static int load_test_split(const char *dir, dataset *d) {
    char ipath[4096], lpath[4096];
    if ((size_t)snprintf(ipath, sizeof ipath, "%s/t10k-images-idx3-ubyte.gz", dir) >= sizeof ipath ||
        (size_t)snprintf(lpath, sizeof lpath, "%s/t10k-labels-idx1-ubyte.gz", dir) >= sizeof lpath)
        return fail("dataset directory name too long: %s", dir);
    uint32_t idims[3], ldims[1];
    size_t isize, lsize;
    d->images = read_idx_gz(ipath, IMAGES_MAGIC, 3, idims, &isize);
    if (!d->images) return 1;
    d->labels = read_idx_gz(lpath, LABELS_MAGIC, 1, ldims, &lsize);
    if (!d->labels) return 1;
    if (idims[1] != ROWS || idims[2] != COLS)
        return fail("%s: images are not 28x28", ipath);
    if (idims[0] != ldims[0]) return fail("%s and %s hold different numbers of items", ipath, lpath);
    d->count = idims[0];
    for (int64_t i = 0; i < d->count; i++)
        if (d->labels[i] >= NUM_CLASSES) return fail("%s: label out of range 0-9", lpath);
    return 0;
}

static char *dup_string(const char *s) {
    char *c = malloc(strlen(s) + 1);
    return c ? strcpy(c, s) : NULL;
}

static int dims_equal(const kiln_dims *d, int n, const int64_t *want) {
    if (d->nb_dims != n) return 0;
    for (int i = 0; i < n; i++)
        if (d->d[i] != want[i]) return 0;
    return 1;
}

static void dims_string(const kiln_dims *d, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < d->nb_dims && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "", (long long)d->d[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* Parses the model for `batch` images per run and builds it for `device`. */
static int build_engine(demo *s, const char *model_path, int64_t batch, kiln_device device) {
    const int64_t in_shape[4] = {batch, 1, ROWS, COLS}, out_shape[2] = {batch, NUM_CLASSES};
    const char *const names[1] = {"image"};
    const kiln_dims shapes[1] = {kiln_dims_make(4, in_shape)};
    kiln_onnx_desc desc = KILN_ONNX_DESC_INIT;
    desc.nb_shapes = 1;
    desc.shape_names = names;
    desc.shapes = shapes;

    if (kiln_builder_create(NULL, &s->builder) != KILN_OK || kiln_network_create(s->builder, &s->net) != KILN_OK ||
        kiln_onnx_parser_create(s->net, &desc, &s->parser) != KILN_OK)
        return fail("cannot set up the builder: %s", kiln_last_error());
    kiln_status st = kiln_onnx_parse_file(s->parser, model_path);
    if (st != KILN_OK) {
        /* The parser lists every problem (each unsupported node): all are worth showing. */
        int n = kiln_onnx_num_errors(s->parser);
        fail("cannot import %s: %s", model_path, n > 0 ? kiln_onnx_error(s->parser, 0)
                                     : *kiln_last_error() ? kiln_last_error() : kiln_status_string(st));
        for (int i = 1; i < n; i++) fprintf(stderr, "  %s\n", kiln_onnx_error(s->parser, i));
        return 1;
    }
    if (kiln_network_num_inputs(s->net) != 1 || kiln_network_num_outputs(s->net) != 1)
        return fail("%s: expected one input and one output (image -> logits)", model_path);
    kiln_tensor *in = kiln_network_input(s->net, 0), *out = kiln_network_output(s->net, 0);
    s->input_name = dup_string(kiln_tensor_name(in));
    s->output_name = dup_string(kiln_tensor_name(out));
    if (!s->input_name || !s->output_name) return fail("out of memory");

    if (kiln_config_create(s->builder, &s->config) != KILN_OK ||
        kiln_config_set_device(s->config, device) != KILN_OK)
        return fail("cannot configure the build: %s", kiln_last_error());
    if (kiln_builder_build(s->builder, s->net, s->config, &s->engine) != KILN_OK)
        return fail("cannot build %s: %s", model_path, kiln_last_error());

    kiln_dims d;
    kiln_dtype t;
    char got[160];
    if (kiln_engine_io_dims(s->engine, s->input_name, &d) != KILN_OK ||
        kiln_engine_io_dtype(s->engine, s->input_name, &t) != KILN_OK)
        return fail("cannot query the engine: %s", kiln_last_error());
    if (!dims_equal(&d, 4, in_shape) || t != KILN_FLOAT32) {
        dims_string(&d, got, sizeof got);
        return fail("the model's input is %s %s, expected float32 [N,1,28,28]", kiln_dtype_name(t), got);
    }
    if (kiln_engine_io_dims(s->engine, s->output_name, &d) != KILN_OK ||
        kiln_engine_io_dtype(s->engine, s->output_name, &t) != KILN_OK)
        return fail("cannot query the engine: %s", kiln_last_error());
    if (!dims_equal(&d, 2, out_shape) || t != KILN_FLOAT32) {
        dims_string(&d, got, sizeof got);
        return fail("the model's output is %s %s, expected float32 [N,10]", kiln_dtype_name(t), got);
    }
    return 0;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *sorted, int n, double p) {
    int rank = (int)((p / 100.0) * n + 0.999999);
    if (rank < 1) rank = 1;
    return sorted[rank > n ? n - 1 : rank - 1];
}

/* Copies images [first, first+n) into the input as pixel/255; rows past n are zero padding. */
static void fill_batch(const dataset *d, int64_t first, int64_t n, int64_t batch, float *input) {
    const uint8_t *src = d->images + first * PIXELS;
    for (int64_t i = 0; i < n * PIXELS; i++) input[i] = src[i] * (1.0f / 255.0f);
    memset(input + n * PIXELS, 0, (size_t)((batch - n) * PIXELS) * sizeof *input);
}

static void quiet_log(void *user, kiln_log_level level, const char *msg) {
    (void)user, (void)level, (void)msg;
}

/* Whether this kiln has a CUDA backend and a GPU answers: build a one-layer engine. */
static bool cuda_usable(void) {
    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    bd.log = quiet_log;
    kiln_builder *b = NULL;
    kiln_network *n = NULL;
    kiln_config *c = NULL;
    kiln_engine *e = NULL;
    bool ok = kiln_builder_create(&bd, &b) == KILN_OK && kiln_network_create(b, &n) == KILN_OK &&
              kiln_config_create(b, &c) == KILN_OK && kiln_config_set_device(c, KILN_DEVICE_CUDA) == KILN_OK;
    kiln_tensor *x = ok ? kiln_network_add_input(n, "x", KILN_FLOAT32, kiln_dims_make(1, (int64_t[]){4})) : NULL;
    kiln_layer *l = x ? kiln_network_add_activation(n, x, KILN_ACT_RELU, 0, 0) : NULL;
    ok = l && kiln_network_mark_output(n, kiln_layer_output(l, 0)) == KILN_OK &&
         kiln_builder_build(b, n, c, &e) == KILN_OK;
    kiln_engine_destroy(e);
    kiln_config_destroy(c);
    kiln_network_destroy(n);
    kiln_builder_destroy(b);
    return ok;
}

static int run(demo *s, int64_t batch, kiln_device device, const char *model_path, double min_accuracy) {
    const dataset *d = &s->data;
    int64_t nb_batches = (d->count + batch - 1) / batch;
    s->input = malloc((size_t)(batch * PIXELS) * sizeof *s->input);
    s->logits = malloc((size_t)(batch * NUM_CLASSES) * sizeof *s->logits);
    s->latency_ms = malloc((size_t)nb_batches * sizeof *s->latency_ms);
    if (!s->input || !s->logits || !s->latency_ms) return fail("out of memory");
    if (kiln_context_create(s->engine, &s->ctx) != KILN_OK ||
        kiln_context_set_io_memory(s->ctx, KILN_MEMORY_HOST) != KILN_OK || /* our buffers are host memory */
        kiln_context_set_tensor_address(s->ctx, s->input_name, s->input) != KILN_OK ||
        kiln_context_set_tensor_address(s->ctx, s->output_name, s->logits) != KILN_OK)
        return fail("cannot create an execution context: %s", kiln_last_error());

    /* One untimed run: first-touch page faults and thread start-up are not steady-state latency. */
    fill_batch(d, 0, batch < d->count ? batch : d->count, batch, s->input);
    if (kiln_context_execute(s->ctx) != KILN_OK) return fail("inference failed: %s", kiln_last_error());

    int64_t correct = 0, per_class[NUM_CLASSES] = {0}, class_total[NUM_CLASSES] = {0};
    double total_ms = 0;
    for (int64_t b = 0; b < nb_batches; b++) {
        int64_t first = b * batch, n = d->count - first < batch ? d->count - first : batch;
        fill_batch(d, first, n, batch, s->input);
        double t0 = now_ms();
        if (kiln_context_execute(s->ctx) != KILN_OK)
            return fail("inference failed: %s", kiln_last_error());
        s->latency_ms[b] = now_ms() - t0;
        total_ms += s->latency_ms[b];
        for (int64_t i = 0; i < n; i++) {
            const float *z = s->logits + i * NUM_CLASSES;
            int best = 0;
            for (int c = 1; c < NUM_CLASSES; c++)
                if (z[c] > z[best]) best = c;
            int label = d->labels[first + i];
            class_total[label]++;
            if (best == label) {
                correct++;
                per_class[label]++;
            }
        }
    }
    qsort(s->latency_ms, (size_t)nb_batches, sizeof *s->latency_ms, cmp_double);

    printf("model      %s (%d layers after optimisation)\n", model_path, kiln_engine_num_layers(s->engine));
    printf("device     %s, kiln %s\n", device == KILN_DEVICE_CUDA ? "cuda" : "cpu", kiln_version());
    printf("accuracy   %.2f%% (%lld/%lld)\n", 100.0 * correct / d->count, (long long)correct,
           (long long)d->count);
    for (int c = 0; c < NUM_CLASSES; c++)
        printf("  %-12s %5.1f%%\n", class_names[c],
               class_total[c] ? 100.0 * per_class[c] / class_total[c] : 0.0);
    printf("latency    batch %lld: median %.3f ms, p90 %.3f ms over %lld batches\n", (long long)batch,
           percentile(s->latency_ms, (int)nb_batches, 50), percentile(s->latency_ms, (int)nb_batches, 90),
           (long long)nb_batches);
    printf("throughput %.0f images/s\n", total_ms > 0 ? d->count / (total_ms * 1e-3) : 0.0);
    if (100.0 * correct / d->count < min_accuracy)
        return fail("accuracy %.2f%% is below the required %.2f%%", 100.0 * correct / d->count, min_accuracy);
    return 0;
}

static void release(demo *s) {
    if (s->ctx) kiln_context_destroy(s->ctx);
    if (s->engine) kiln_engine_destroy(s->engine);
    if (s->config) kiln_config_destroy(s->config);
    if (s->net) kiln_network_destroy(s->net);
    if (s->parser) kiln_onnx_parser_destroy(s->parser); /* after the network: it owns the weights */
    if (s->builder) kiln_builder_destroy(s->builder);
    free(s->data.images);
    free(s->data.labels);
    free(s->input);
    free(s->logits);
    free(s->latency_ms);
    free(s->input_name);
    free(s->output_name);
}

int main(int argc, char **argv) {
    const char *usage = "usage: " PROG " MODEL.onnx DATASET_DIR [--batch N] [--min-accuracy PERCENT] [--device auto|cpu|cuda]";
    const char *model_path = NULL, *data_dir = NULL;
    int64_t batch = 100;
    double min_accuracy = 0;
    const char *device_arg = "auto"; /* the best device present: CUDA when a GPU answers */

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0) {
            char *end;
            errno = 0;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || errno || *end || end == argv[i + 1] || v < 1 || v > 10000) {
                fprintf(stderr, PROG ": --batch wants a whole number from 1 to 10000\n");
                return 1;
            }
            batch = v;
            i++;
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            device_arg = argv[++i];
            if (strcmp(device_arg, "auto") && strcmp(device_arg, "cpu") && strcmp(device_arg, "cuda")) {
                fprintf(stderr, PROG ": --device wants auto, cpu or cuda\n");
                return 1;
            }
        } else if (strcmp(argv[i], "--min-accuracy") == 0) {
            char *end;
            double v = i + 1 < argc ? strtod(argv[i + 1], &end) : -1;
            if (i + 1 >= argc || *end || end == argv[i + 1] || !(v >= 0 && v <= 100)) {
                fprintf(stderr, PROG ": --min-accuracy wants a percentage from 0 to 100\n");
                return 1;
            }
            min_accuracy = v;
            i++;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, PROG ": unknown option %s (%s)\n", argv[i], usage);
            return 1;
        } else if (!model_path) {
            model_path = argv[i];
        } else if (!data_dir) {
            data_dir = argv[i];
        } else {
            fprintf(stderr, PROG ": unexpected argument %s (%s)\n", argv[i], usage);
            return 1;
        }
    }
    if (!model_path || !data_dir) {
        fprintf(stderr, "%s\n", usage);
        return 1;
    }

    kiln_device device = !strcmp(device_arg, "cuda")                        ? KILN_DEVICE_CUDA
                         : !strcmp(device_arg, "auto") && cuda_usable() ? KILN_DEVICE_CUDA
                                                                        : KILN_DEVICE_CPU;
    demo s;
    memset(&s, 0, sizeof s);
    int rc = load_test_split(data_dir, &s.data);
    if (!rc) rc = build_engine(&s, model_path, batch, device);
    if (!rc) rc = run(&s, batch, device, model_path, min_accuracy);
    release(&s);
    return rc;
}
