/* kiln bench: CUDA backend timings, not a test. ResNet-50 built through the network API
 * (random weights) and, if given, an ONNX model, in FP32, TF32 and FP16, at batches 1, 32
 * and 256. Inputs and outputs are device buffers (no copies in the timed loop); each
 * iteration is one kiln_context_enqueue between two CUDA events (a CUDA graph replay
 * after the first runs), and the table reports the median and minimum over many
 * iterations, images/s at the median, build time, activation and scratch memory, and
 * the largest deviation of the output from the FP32 engine's (relative to its largest
 * magnitude). Prints a Markdown table on stdout; per-engine kernel choices on stderr.
 * Usage: bench_cuda [--batches 1,32,256] [--precisions fp32,tf32,fp16] [--onnx FILE]
 *                   [--no-resnet] [--seconds S] [--max-iterations N] [--budget S] [--quiet] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "kiln/kiln.h"
#ifdef KILN_BENCH_ONNX
#include "kiln/onnx.h"
#endif
#include "resnet50_net.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef struct options {
    int64_t batches[8];
    int nb_batches;
    int precisions[3]; /* 0 fp32, 1 tf32, 2 fp16 */
    int nb_precisions;
    const char *onnx;
    int resnet;
    double seconds;   /* timed iterations per configuration, about */
    int max_iters;
    double budget;    /* starts no new configuration after this many seconds */
    int quiet;
} options;

static const char *const prec_names[3] = {"FP32", "TF32", "FP16"};

typedef struct result {
    const char *model;
    int64_t batch;
    int prec;
    int ok;
    char msg[200];
    double build_s, median_ms, min_ms, ips;
    size_t act_bytes, scratch_bytes;
    int layers, iters;
    double err; /* vs the FP32 output; < 0: not compared */
} result;

#define CU(call, what)                                                                                     \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            snprintf(r->msg, sizeof r->msg, "%s: %s", what, cudaGetErrorString(e_));                       \
            goto done;                                                                                     \
        }                                                                                                  \
    } while (0)

/* Fills `net` with the model at `batch`; *batch_out: the batch it really has. */
static kiln_status make_model(kiln_network *net, const char *model, int64_t batch, rn_weights *w, int64_t *batch_out) {
    *batch_out = batch;
    if (!strcmp(model, "resnet50")) return rn_build_resnet50(net, batch, w);
#ifdef KILN_BENCH_ONNX
    kiln_onnx_model_info *info = NULL;
    kiln_status st = kiln_onnx_read_model_info_file(model, &info);
    if (st != KILN_OK) return st;
    const char *names[8];
    kiln_dims shapes[8];
    int n = 0;
    for (int i = 0; i < info->nb_inputs && n < 8; i++) {
        const kiln_onnx_value_info *v = &info->inputs[i];
        if (!v->has_shape || v->rank < 1 || v->rank > KILN_MAX_DIMS) continue;
        kiln_dims d = kiln_dims_make(v->rank, v->dims);
        if (d.d[0] < 0) d.d[0] = batch; /* symbolic batch: the one asked for */
        else *batch_out = d.d[0];
        for (int k = 1; k < d.nb_dims; k++)
            if (d.d[k] < 0) d.d[k] = 1;
        names[n] = v->name;
        shapes[n++] = d;
    }
    kiln_onnx_desc desc = KILN_ONNX_DESC_INIT;
    desc.nb_shapes = n;
    desc.shape_names = names;
    desc.shapes = shapes;
    kiln_onnx_parser *p = NULL;
    st = kiln_onnx_parser_create(net, &desc, &p);
    if (st == KILN_OK) st = kiln_onnx_parse_file(p, model);
    if (st != KILN_OK && p && kiln_onnx_num_errors(p) > 0) fprintf(stderr, "onnx: %s\n", kiln_onnx_error(p, 0));
    kiln_onnx_parser_destroy(p);
    kiln_onnx_model_info_destroy(info);
    return st;
#else
    (void)net, (void)w;
    fprintf(stderr, "bench_cuda: built without the ONNX importer\n");
    return KILN_ERR_UNSUPPORTED;
#endif
}

/* Kernel choices of an engine, counted by name, on stderr. */
static void print_kernels(const kiln_engine *e, const char *what) {
    const char *names[64];
    int counts[64], n = 0;
    for (int i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) != KILN_OK) continue;
        int k = 0;
        while (k < n && strcmp(names[k], li.kernel)) k++;
        if (k == n && n < 64) {
            names[n] = li.kernel;
            counts[n++] = 0;
        }
        if (k < n) counts[k]++;
    }
    fprintf(stderr, "%s kernels:", what);
    for (int k = 0; k < n; k++) fprintf(stderr, " %s x%d", names[k], counts[k]);
    fprintf(stderr, "\n");
}

/* Builds and times one configuration. ref/ref_n: the FP32 output for the error column
 * (filled when this is the FP32 run and *ref is NULL). */
static void run_config(const options *o, const char *model, int64_t batch, int prec, result *r, float **ref,
                       int64_t *ref_n) {
    memset(r, 0, sizeof *r);
    r->model = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    r->batch = batch;
    r->prec = prec;
    r->err = -1;
    kiln_builder *b = NULL;
    kiln_network *net = NULL;
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    cudaStream_t s = NULL;
    cudaEvent_t *ev = NULL;
    int nb_ev = 0;
    void *bufs[16] = {0};
    float *host = NULL, *times = NULL;
    rn_weights w = {0};
    kiln_status st = kiln_builder_create(NULL, &b);
    if (st == KILN_OK) st = kiln_network_create(b, &net);
    if (st == KILN_OK) st = make_model(net, model, batch, &w, &r->batch);
    if (st == KILN_OK) st = kiln_config_create(b, &cfg);
    if (st == KILN_OK) st = kiln_config_set_device(cfg, KILN_DEVICE_CUDA);
    if (st == KILN_OK) st = kiln_config_set_flag(cfg, KILN_FLAG_TF32, prec == 1);
    if (st == KILN_OK) st = kiln_config_set_flag(cfg, KILN_FLAG_FP16, prec == 2);
    double t0 = now_s();
    if (st == KILN_OK) st = kiln_builder_build(b, net, cfg, &e);
    r->build_s = now_s() - t0;
    rn_weights_free(&w);
    if (st == KILN_OK) st = kiln_context_create(e, &c);
    if (st != KILN_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", kiln_last_error());
        goto done;
    }
    r->layers = kiln_engine_num_layers(e);
    r->act_bytes = kiln_engine_activation_bytes(e);
    kiln_engine_memory(e, NULL, &r->scratch_bytes, NULL);
    if (!o->quiet) {
        char what[160];
        snprintf(what, sizeof what, "%s batch %lld %s", r->model, (long long)r->batch, prec_names[prec]);
        print_kernels(e, what);
    }
    /* device buffers for every input and output: float32, as the engine's I/O is */
    int nio = kiln_engine_num_io(e), first_out = -1;
    int64_t out_n = 0;
    if (nio > 16) {
        snprintf(r->msg, sizeof r->msg, "%d inputs and outputs (at most 16)", nio);
        goto done;
    }
    for (int i = 0; i < nio; i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dims d;
        kiln_dtype dt;
        kiln_engine_io_dims(e, name, &d);
        kiln_engine_io_dtype(e, name, &dt);
        int64_t n = kiln_dims_volume(&d);
        size_t bytes = (size_t)n * kiln_dtype_size(dt);
        CU(cudaMalloc(&bufs[i], bytes ? bytes : 1), "cudaMalloc");
        if (kiln_engine_io_mode(e, name) == KILN_IO_INPUT) {
            unsigned char *hb = malloc(bytes ? bytes : 1);
            if (!hb) {
                snprintf(r->msg, sizeof r->msg, "out of host memory");
                goto done;
            }
            unsigned seed = 12345u + (unsigned)i;
            if (dt == KILN_FLOAT32)
                for (int64_t k = 0; k < n; k++) {
                    seed = seed * 1664525u + 1013904223u;
                    ((float *)hb)[k] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
                }
            else
                memset(hb, 0, bytes);
            cudaError_t ce = cudaMemcpy(bufs[i], hb, bytes, cudaMemcpyHostToDevice);
            free(hb);
            CU(ce, "cudaMemcpy");
        } else if (first_out < 0 && dt == KILN_FLOAT32) {
            first_out = i;
            out_n = n;
        }
        if ((st = kiln_context_set_tensor_address(c, name, bufs[i])) != KILN_OK) {
            snprintf(r->msg, sizeof r->msg, "%s", kiln_last_error());
            goto done;
        }
    }
    /* warm-up: the first run is direct, the second is captured, later ones replay */
    for (int i = 0; i < 3; i++)
        if ((st = kiln_context_execute(c)) != KILN_OK) {
            snprintf(r->msg, sizeof r->msg, "%s", kiln_last_error());
            goto done;
        }
    CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    /* one timed run to size the loop */
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0), "cudaEventCreate");
    CU(cudaEventCreate(&e1), "cudaEventCreate");
    cudaEventRecord(e0, s);
    st = kiln_context_enqueue(c, s);
    cudaEventRecord(e1, s);
    cudaEventSynchronize(e1);
    float one = 0;
    cudaEventElapsedTime(&one, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (st != KILN_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", kiln_last_error());
        goto done;
    }
    int iters = one > 0 ? (int)(o->seconds * 1000.0 / one) : o->max_iters;
    if (iters < 10) iters = 10;
    if (iters > o->max_iters) iters = o->max_iters;
    ev = calloc((size_t)iters + 1, sizeof *ev);
    times = calloc((size_t)iters, sizeof *times);
    if (!ev || !times) {
        snprintf(r->msg, sizeof r->msg, "out of host memory");
        goto done;
    }
    for (int i = 0; i <= iters; i++, nb_ev++) CU(cudaEventCreate(&ev[i]), "cudaEventCreate");
    /* back to back: event, run, event, run, ... each interval one run's GPU time */
    CU(cudaEventRecord(ev[0], s), "cudaEventRecord");
    for (int i = 0; i < iters; i++) {
        if ((st = kiln_context_enqueue(c, s)) != KILN_OK) {
            snprintf(r->msg, sizeof r->msg, "%s", kiln_last_error());
            goto done;
        }
        CU(cudaEventRecord(ev[i + 1], s), "cudaEventRecord");
    }
    CU(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    if ((st = kiln_context_synchronize(c)) != KILN_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", kiln_last_error());
        goto done;
    }
    for (int i = 0; i < iters; i++) CU(cudaEventElapsedTime(&times[i], ev[i], ev[i + 1]), "cudaEventElapsedTime");
    qsort(times, (size_t)iters, sizeof *times, cmp_float);
    r->iters = iters;
    r->median_ms = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
    r->min_ms = times[0];
    r->ips = r->median_ms > 0 ? (double)r->batch * 1000.0 / r->median_ms : 0;
    /* the output against FP32's */
    if (first_out >= 0 && out_n > 0) {
        host = malloc((size_t)out_n * sizeof *host);
        if (host) {
            CU(cudaMemcpy(host, bufs[first_out], (size_t)out_n * sizeof *host, cudaMemcpyDeviceToHost), "cudaMemcpy");
            if (prec == 0 && !*ref) {
                *ref = host;
                *ref_n = out_n;
                host = NULL;
                r->err = 0;
            } else if (*ref && *ref_n == out_n) {
                double mx = 1e-30, md = 0;
                for (int64_t k = 0; k < out_n; k++) {
                    if (fabs((*ref)[k]) > mx) mx = fabs((*ref)[k]);
                    double d = fabs((double)host[k] - (*ref)[k]);
                    if (!(d <= md)) md = d; /* NaN wins */
                }
                r->err = md / mx;
            }
        }
    }
    r->ok = 1;
done:
    for (int i = 0; i < nb_ev; i++) cudaEventDestroy(ev[i]);
    free(ev);
    free(times);
    free(host);
    for (int i = 0; i < 16; i++)
        if (bufs[i]) cudaFree(bufs[i]);
    if (s) cudaStreamDestroy(s);
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    rn_weights_free(&w);
}

static void print_row(const result *r) {
    if (!r->ok) {
        printf("| %s | %lld | %s | failed: %s | | | | | | | |\n", r->model, (long long)r->batch, prec_names[r->prec],
               r->msg);
        return;
    }
    char err[32] = "-";
    if (r->err >= 0) snprintf(err, sizeof err, "%.2g", r->err);
    printf("| %s | %lld | %s | %.3f | %.3f | %.0f | %.1f | %.1f | %.1f | %d | %s |\n", r->model, (long long)r->batch,
           prec_names[r->prec], r->median_ms, r->min_ms, r->ips, r->build_s, (double)r->act_bytes / (1 << 20),
           (double)r->scratch_bytes / (1 << 20), r->layers, err);
    fflush(stdout);
}

static int parse_list(const char *s, int64_t *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

int main(int argc, char **argv) {
    options o = {{1, 32, 256}, 3, {0, 1, 2}, 3, NULL, 1, 1.0, 300, 1e9, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--batches") && v) {
            o.nb_batches = parse_list(v, o.batches, 8);
            i++;
        } else if (!strcmp(a, "--precisions") && v) {
            static const char *const lower[3] = {"fp32", "tf32", "fp16"};
            o.nb_precisions = 0;
            for (int p = 0; p < 3; p++)
                if (strstr(v, lower[p])) o.precisions[o.nb_precisions++] = p;
            i++;
        } else if (!strcmp(a, "--onnx") && v) {
            o.onnx = v;
            i++;
        } else if (!strcmp(a, "--no-resnet")) {
            o.resnet = 0;
        } else if (!strcmp(a, "--seconds") && v) {
            o.seconds = atof(v);
            i++;
        } else if (!strcmp(a, "--max-iterations") && v) {
            o.max_iters = atoi(v);
            i++;
        } else if (!strcmp(a, "--budget") && v) {
            o.budget = atof(v);
            i++;
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else {
            fprintf(stderr, "usage: %s [--batches 1,32,256] [--precisions fp32,tf32,fp16] [--onnx FILE] [--no-resnet]\n"
                            "       [--seconds S] [--max-iterations N] [--budget S] [--quiet]\n", argv[0]);
            return 2;
        }
    }
    if (o.nb_batches <= 0 || o.nb_precisions <= 0 || o.max_iters < 10) {
        fprintf(stderr, "bench_cuda: bad --batches, --precisions or --max-iterations\n");
        return 2;
    }
    struct cudaDeviceProp prop;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        fprintf(stderr, "bench_cuda: no usable GPU\n");
        return 1;
    }
    printf("GPU: %s (%d SMs), kiln %s; CUDA events around each kiln_context_enqueue (a CUDA graph replay), "
           "device-pointer I/O\n\n",
           prop.name, prop.multiProcessorCount, kiln_version());
    printf("| model | batch | precision | median ms | min ms | images/s | build s | activations MiB | scratch MiB | "
           "layers | max rel. err vs FP32 |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    const char *models[2];
    int nm = 0;
    if (o.resnet) models[nm++] = "resnet50";
    if (o.onnx) models[nm++] = o.onnx;
    double start = now_s();
    int failures = 0;
    for (int m = 0; m < nm; m++)
        for (int bi = 0; bi < o.nb_batches; bi++) {
            float *ref = NULL;
            int64_t ref_n = 0;
            for (int pi = 0; pi < o.nb_precisions; pi++) {
                if (now_s() - start > o.budget) {
                    printf("| %s | %lld | %s | skipped: over the --budget | | | | | | | |\n", models[m],
                           (long long)o.batches[bi], prec_names[o.precisions[pi]]);
                    continue;
                }
                result r;
                run_config(&o, models[m], o.batches[bi], o.precisions[pi], &r, &ref, &ref_n);
                print_row(&r);
                failures += !r.ok;
            }
            free(ref);
        }
    return failures ? 1 : 0;
}
