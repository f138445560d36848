/* kiln bench: CPU backend timings, not a test. ResNet-50-shaped convolutions (one-layer
 * networks) and a whole ResNet-50 built through the API with random weights, batch 1
 * and 8. Prints a Markdown table: median and min wall time over the iterations, and the
 * achieved GFLOP/s; --profile adds time per layer type on stderr.
 * Usage: bench_cpu [--threads N] [--iterations N] [--quick] [--profile] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"
#include "resnet50_net.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int threads = 0, iterations = 10, profile = 0;

/* --profile: time per layer type, summed over the timed iterations */
typedef struct type_time {
    const char *type;
    double ms;
    int count;
} type_time;
static type_time prof[64];
static int nb_prof = 0;

typedef struct layer_time {
    char name[64];
    double ms;
} layer_time;
static layer_time per_layer[512];
static int nb_layers_seen = 0;

static void on_layer(void *user, const char *name, const char *type, double ms) {
    (void)user;
    int li = 0;
    while (li < nb_layers_seen && strcmp(per_layer[li].name, name)) li++;
    if (li == nb_layers_seen && li < 512) snprintf(per_layer[nb_layers_seen++].name, 64, "%s", name);
    if (li < 512) per_layer[li].ms += ms;
    for (int i = 0; i < nb_prof; i++)
        if (!strcmp(prof[i].type, type)) {
            prof[i].ms += ms;
            prof[i].count++;
            return;
        }
    if (nb_prof < 64) prof[nb_prof++] = (type_time){type, ms, 1};
}

static void print_profile(int n) {
    double total = 0;
    for (int i = 0; i < nb_prof; i++) total += prof[i].ms;
    for (int i = 0; i < nb_prof; i++)
        fprintf(stderr, "  %-14s %8.2f ms/run  %5.1f%%  (%d layers)\n", prof[i].type, prof[i].ms / n,
                100 * prof[i].ms / total, prof[i].count / n);
    nb_prof = 0;
    if (getenv("KILN_BENCH_LAYERS"))
        for (int i = 0; i < nb_layers_seen; i++) fprintf(stderr, "    %-28s %7.3f ms\n", per_layer[i].name, per_layer[i].ms / n);
    nb_layers_seen = 0;
}

/* Builds net, binds random input and an output buffer, runs warmup + iterations. */
static int time_network(kiln_builder *b, kiln_network *net, double *median, double *min) {
    kiln_config *cfg;
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    if (kiln_config_create(b, &cfg) != KILN_OK) return 1;
    kiln_config_set_num_threads(cfg, threads);
    kiln_status st = kiln_builder_build(b, net, cfg, &e);
    kiln_config_destroy(cfg);
    if (st == KILN_OK) st = kiln_context_create(e, &c);
    void *bufs[8] = {0};
    for (int i = 0; st == KILN_OK && i < kiln_engine_num_io(e) && i < 8; i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dims d;
        kiln_engine_io_dims(e, name, &d);
        size_t n = (size_t)kiln_dims_volume(&d);
        float *p = malloc(n * sizeof *p);
        if (!p) return 1;
        for (size_t k = 0; k < n; k++) p[k] = (float)((k * 2654435761u) % 1000) / 500.0f - 1.0f;
        bufs[i] = p;
        st = kiln_context_set_tensor_address(c, name, p);
    }
    double t[1000];
    int n = iterations > 1000 ? 1000 : iterations;
    for (int i = 0; st == KILN_OK && i < 2; i++) st = kiln_context_execute(c);
    if (profile && st == KILN_OK) kiln_context_set_profiler(c, on_layer, NULL);
    for (int i = 0; st == KILN_OK && i < n; i++) {
        double t0 = now_ms();
        st = kiln_context_execute(c);
        t[i] = now_ms() - t0;
    }
    if (st != KILN_OK) fprintf(stderr, "bench: %s\n", kiln_last_error());
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    for (int i = 0; i < 8; i++) free(bufs[i]);
    if (st != KILN_OK) return 1;
    if (profile) print_profile(n);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *median = t[n / 2];
    *min = t[0];
    return 0;
}

typedef struct conv_case {
    const char *name;
    int64_t cin, cout, hw, k, stride;
} conv_case;

static const conv_case convs[] = {
    {"conv1 7x7/2 3->64 @224", 3, 64, 224, 7, 2},
    {"1x1 64->64 @56", 64, 64, 56, 1, 1},
    {"3x3 64->64 @56", 64, 64, 56, 3, 1},
    {"1x1 64->256 @56", 64, 256, 56, 1, 1},
    {"3x3/2 128->128 @56", 128, 128, 56, 3, 2},
    {"3x3 128->128 @28", 128, 128, 28, 3, 1},
    {"1x1 512->128 @28", 512, 128, 28, 1, 1},
    {"3x3 256->256 @14", 256, 256, 14, 3, 1},
    {"1x1 1024->256 @14", 1024, 256, 14, 1, 1},
    {"3x3 512->512 @7", 512, 512, 7, 3, 1},
    {"1x1 2048->512 @7", 2048, 512, 7, 1, 1},
};

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else {
            fprintf(stderr, "usage: bench_cpu [--threads N] [--iterations N] [--quick] [--profile]\n");
            return 2;
        }
    }
    if (iterations < 1) iterations = 1;
    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    kiln_builder *b;
    if (kiln_builder_create(&bd, &b) != KILN_OK) return 1;
    printf("| case | batch | median ms | min ms | GFLOP/s |\n|---|---|---|---|---|\n");
    int64_t batches[2] = {1, 8};
    for (int bi = 0; bi < 2; bi++) {
        for (size_t ci = 0; !quick && ci < sizeof convs / sizeof *convs; ci++) {
            const conv_case *cc = &convs[ci];
            int64_t batch = batches[bi], p = cc->k / 2;
            kiln_network *net;
            kiln_network_create(b, &net);
            kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){batch, cc->cin, cc->hw, cc->hw}));
            int64_t nw = cc->cout * cc->cin * cc->k * cc->k;
            float *w = malloc((size_t)nw * sizeof *w), *bias = malloc((size_t)cc->cout * sizeof *bias);
            for (int64_t k = 0; k < nw; k++) w[k] = (float)((k * 7919) % 200) / 1000.0f - 0.1f;
            for (int64_t k = 0; k < cc->cout; k++) bias[k] = 0.01f * (float)k;
            kiln_conv_desc d = {.out_channels = cc->cout, .kernel = {cc->k, cc->k}, .stride = {cc->stride, cc->stride},
                                .pad_begin = {p, p}, .pad_end = {p, p}};
            kiln_layer *l = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, nw},
                                                         (kiln_weights){KILN_FLOAT32, bias, cc->cout});
            double med, mn;
            if (!l || kiln_network_mark_output(net, kiln_layer_output(l, 0)) != KILN_OK || time_network(b, net, &med, &mn)) {
                fprintf(stderr, "bench: %s: %s\n", cc->name, kiln_last_error());
                return 1;
            }
            int64_t ho = (cc->hw + 2 * p - cc->k) / cc->stride + 1;
            double flops = 2.0 * (double)batch * (double)(cc->cout * ho * ho) * (double)(cc->cin * cc->k * cc->k);
            printf("| %s | %lld | %.3f | %.3f | %.1f |\n", cc->name, (long long)batch, med, mn, flops / (med * 1e6));
            fflush(stdout);
            kiln_network_destroy(net);
            free(w);
            free(bias);
        }
        kiln_network *net;
        kiln_network_create(b, &net);
        rn_weights rw = {0};
        if (rn_build_resnet50(net, batches[bi], &rw) != KILN_OK) {
            fprintf(stderr, "bench: resnet50: %s\n", kiln_last_error());
            return 1;
        }
        double med, mn;
        if (time_network(b, net, &med, &mn)) return 1;
        rn_weights_free(&rw);
        kiln_network_destroy(net);
        double flops = 8.18e9 * (double)batches[bi];
        printf("| **ResNet-50** (%.1f img/s) | %lld | %.2f | %.2f | %.1f |\n", 1000.0 * (double)batches[bi] / med,
               (long long)batches[bi], med, mn, flops / (med * 1e6));
        fflush(stdout);
    }
    kiln_builder_destroy(b);
    return 0;
}
