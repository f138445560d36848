/* kiln tests: scale (three modes, partial weights), batch norm, instance norm, LRN and
 * softmax / log-softmax against float64 references, and the errors the add calls report. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

static kiln_builder *B;
#define run_threads(net, threads, inputs, out) th_run_threads(B, net, threads, inputs, out)
#define expect_fail th_expect_add_fails
static const kiln_weights NONE = {KILN_FLOAT32, NULL, 0};

static kiln_network *net_new(void) {
    kiln_network *n = NULL;
    if (kiln_network_create(B, &n) != KILN_OK) {
        fprintf(stderr, "network create failed: %s\n", kiln_last_error());
        exit(2);
    }
    return n;
}

static kiln_weights wf(const float *v, int64_t n) { return (kiln_weights){KILN_FLOAT32, v, v ? n : 0}; }

/* Marks l's output, builds, runs, destroys the network; checks the output dims equal
 * `want`; returns the output (caller frees) or NULL after a failed CHECK. */
static float *run_layer(kiln_network *net, kiln_layer *l, void *const *inputs, const kiln_dims *want,
                        const char *what) {
    void *out = NULL;
    kiln_dims od;
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (l) {
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
        kiln_status st = th_run(B, net, inputs, &out, &od);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st != KILN_OK) {
            free(out);
            out = NULL;
        } else {
            bool same = od.nb_dims == want->nb_dims;
            for (int i = 0; same && i < od.nb_dims; i++) same = od.d[i] == want->d[i];
            CHECK(same, "%s: output dims differ from the input's", what);
        }
    }
    kiln_network_destroy(net);
    return out;
}



/* ---- scale ---- */

static void scale_case(kiln_scale_mode mode, kiln_dims d, int mask /* 1 shift, 2 scale, 4 power */) {
    int64_t n = kiln_dims_volume(&d), count = 1;
    if (mode == KILN_SCALE_CHANNEL) count = d.d[1];
    if (mode == KILN_SCALE_ELEMENTWISE)
        for (int i = 1; i < d.nb_dims; i++) count *= d.d[i];
    /* positive bases so real powers stay defined */
    float *x = th_rand_array(n, 0.5f, 2.0f);
    float *sh = mask & 1 ? th_rand_array(count, 0.1f, 0.5f) : NULL;
    float *sc = mask & 2 ? th_rand_array(count, 0.5f, 1.5f) : NULL;
    float *pw = mask & 4 ? th_rand_array(count, 0.5f, 2.5f) : NULL;
    if (pw) /* the exponents with fast paths */
        for (int64_t i = 0; i < count; i += 3) pw[i] = i % 2 ? 1.0f : 2.0f;
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
    char what[96];
    snprintf(what, sizeof what, "scale mode %d rank %d mask %d (%lld values)", (int)mode, d.nb_dims, mask,
             (long long)n);
    void *ip[1] = {x};
    float *y = run_layer(net, kiln_network_add_scale(net, in, mode, wf(sh, count), wf(sc, count), wf(pw, count)), ip,
                         &d, what);
    if (y) {
        double *ref = malloc((size_t)n * sizeof(double));
        int64_t inner = 1;
        for (int i = 2; i < d.nb_dims; i++) inner *= d.d[i];
        for (int64_t i = 0; i < n; i++) {
            int64_t k = mode == KILN_SCALE_UNIFORM ? 0 : mode == KILN_SCALE_CHANNEL ? (i / inner) % d.d[1] : i % count;
            double v = (double)x[i] * (sc ? sc[k] : 1.0) + (sh ? sh[k] : 0.0);
            ref[i] = pw ? pow(v, pw[k]) : v;
        }
        th_check_close(what, y, ref, n, 1e-5);
        free(ref);
    }
    free(y);
    free(x);
    free(sh);
    free(sc);
    free(pw);
}

static void test_scale(void) {
    static const struct {
        int n;
        int64_t d[5];
    } shapes[] = {{4, {2, 3, 4, 5}}, {2, {6, 7}}, {5, {2, 3, 2, 3, 4}}, {4, {3, 16, 37, 41}}, {3, {1, 5, 1}}};
    for (int mode = 0; mode < 3; mode++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int mask = 0; mask < 8; mask++)
                scale_case((kiln_scale_mode)mode, kiln_dims_make(shapes[s].n, shapes[s].d), mask);
    /* uniform scale of a scalar */
    scale_case(KILN_SCALE_UNIFORM, kiln_dims_make(0, NULL), 7);
}

static void test_batch_norm(void) {
    static const struct {
        int n;
        int64_t d[4];
    } shapes[] = {{4, {2, 3, 4, 5}}, {2, {5, 6}}, {4, {2, 32, 20, 30}}, {3, {1, 4, 9}}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        kiln_dims d = kiln_dims_make(shapes[s].n, shapes[s].d);
        int64_t n = kiln_dims_volume(&d), c = d.d[1], inner = n / (d.d[0] * c);
        float *x = th_rand_array(n, -3, 3), *g = th_rand_array(c, 0.5f, 2), *be = th_rand_array(c, -1, 1);
        float *m = th_rand_array(c, -1, 1), *v = th_rand_array(c, 0.1f, 3);
        const float eps = 1e-3f;
        kiln_network *net = net_new();
        kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
        void *ip[1] = {x};
        float *y = run_layer(net, kiln_network_add_batch_norm(net, in, wf(g, c), wf(be, c), wf(m, c), wf(v, c), eps),
                             ip, &d, "batch norm");
        if (y) {
            double *ref = malloc((size_t)n * sizeof(double));
            for (int64_t i = 0; i < n; i++) {
                int64_t k = (i / inner) % c;
                ref[i] = g[k] * ((double)x[i] - m[k]) / sqrt((double)v[k] + eps) + be[k];
            }
            th_check_close("batch norm", y, ref, n, 1e-5);
            free(ref);
        }
        free(y);
        free(x);
        free(g);
        free(be);
        free(m);
        free(v);
    }
}

/* ---- instance norm ---- */

static void test_instance_norm(void) {
    static const struct {
        int n;
        int64_t d[5];
    } shapes[] = {{4, {2, 3, 4, 5}}, {3, {1, 4, 7}}, {5, {2, 2, 3, 4, 5}}, {4, {1, 3, 64, 65}}, {4, {3, 5, 1, 1}}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        kiln_dims d = kiln_dims_make(shapes[s].n, shapes[s].d);
        int64_t n = kiln_dims_volume(&d), c = d.d[1], S = n / (d.d[0] * c);
        /* an offset mean stresses the variance computation */
        float *x = th_rand_array(n, 9, 11), *sc = th_rand_array(c, 0.5f, 2), *bi = th_rand_array(c, -1, 1);
        const float eps = 1e-5f;
        kiln_network *net = net_new();
        kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
        void *ip[1] = {x};
        char what[64];
        snprintf(what, sizeof what, "instance norm rank %d (%lld values)", d.nb_dims, (long long)n);
        float *y = run_layer(net, kiln_network_add_instance_norm(net, in, wf(sc, c), wf(bi, c), eps), ip, &d, what);
        if (y) {
            double *ref = malloc((size_t)n * sizeof(double));
            for (int64_t r = 0; r < n / S; r++) {
                double mean = 0, var = 0;
                for (int64_t i = 0; i < S; i++) mean += x[r * S + i];
                mean /= (double)S;
                for (int64_t i = 0; i < S; i++) var += (x[r * S + i] - mean) * (x[r * S + i] - mean);
                var /= (double)S;
                for (int64_t i = 0; i < S; i++)
                    ref[r * S + i] = sc[r % c] * (x[r * S + i] - mean) / sqrt(var + eps) + bi[r % c];
            }
            th_check_close(what, y, ref, n, 1e-5);
            free(ref);
        }
        free(y);
        free(x);
        free(sc);
        free(bi);
    }
}

/* ---- LRN ---- */

static void lrn_case(kiln_dims d, int64_t size, float alpha, float beta, float bias) {
    int64_t n = kiln_dims_volume(&d), C = d.d[1], S = n / (d.d[0] * C);
    float *x = th_rand_array(n, -2, 2);
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
    void *ip[1] = {x};
    char what[96];
    snprintf(what, sizeof what, "lrn C %lld size %lld alpha %g beta %g bias %g", (long long)C, (long long)size, alpha,
             beta, bias);
    float *y = run_layer(net, kiln_network_add_lrn(net, in, size, alpha, beta, bias), ip, &d, what);
    if (y) {
        double *ref = malloc((size_t)n * sizeof(double));
        for (int64_t b = 0; b < d.d[0]; b++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t s = 0; s < S; s++) {
                    /* ONNX: channels [c - floor((size-1)/2), c + ceil((size-1)/2)] */
                    int64_t lo = c - (size - 1) / 2, hi = c + (size - 1 + 1) / 2;
                    double sq = 0;
                    for (int64_t i = lo < 0 ? 0 : lo; i <= hi && i < C; i++) {
                        double v = x[(b * C + i) * S + s];
                        sq += v * v;
                    }
                    int64_t at = (b * C + c) * S + s;
                    ref[at] = x[at] / pow(bias + alpha / (double)size * sq, beta);
                }
        th_check_close(what, y, ref, n, 1e-5);
        free(ref);
    }
    free(y);
    free(x);
}

static void test_lrn(void) {
    int64_t d4[4] = {2, 7, 3, 4}, d3[3] = {2, 5, 11}, big[4] = {1, 16, 27, 29}, d2[2] = {3, 6};
    static const int64_t sizes[] = {1, 2, 3, 4, 5, 9};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        lrn_case(kiln_dims_make(4, d4), sizes[k], 1e-1f, 0.75f, 1.0f);
        lrn_case(kiln_dims_make(4, d4), sizes[k], 2e-1f, 0.6f, 2.0f);
    }
    lrn_case(kiln_dims_make(3, d3), 3, 0.5f, 0.5f, 1.5f);
    lrn_case(kiln_dims_make(3, d3), 5, 0.3f, 1.0f, 1.0f);
    lrn_case(kiln_dims_make(4, big), 5, 1e-4f, 0.75f, 1.0f);
    lrn_case(kiln_dims_make(2, d2), 3, 0.5f, 0.75f, 1.0f);
}

/* ---- softmax ---- */

static void softmax_case(kiln_dims d, int axis, int lg, float lo, float hi) {
    int64_t n = kiln_dims_volume(&d);
    int ax = axis < 0 ? axis + d.nb_dims : axis;
    int64_t outer = 1, L = d.d[ax], inner = 1;
    for (int i = 0; i < ax; i++) outer *= d.d[i];
    for (int i = ax + 1; i < d.nb_dims; i++) inner *= d.d[i];
    float *x = th_rand_array(n, lo, hi);
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
    void *ip[1] = {x};
    char what[96];
    snprintf(what, sizeof what, "%ssoftmax rank %d axis %d in [%g,%g)", lg ? "log-" : "", d.nb_dims, axis, lo, hi);
    float *y = run_layer(net, kiln_network_add_softmax(net, in, axis, lg), ip, &d, what);
    if (y) {
        double *ref = malloc((size_t)n * sizeof(double));
        for (int64_t o = 0; o < outer; o++)
            for (int64_t k = 0; k < inner; k++) {
                const float *xs = x + o * L * inner + k;
                double m = -INFINITY, s = 0;
                for (int64_t i = 0; i < L; i++) m = fmax(m, xs[i * inner]);
                for (int64_t i = 0; i < L; i++) s += exp(xs[i * inner] - m);
                for (int64_t i = 0; i < L; i++) {
                    double v = xs[i * inner] - m;
                    ref[o * L * inner + k + i * inner] = lg ? v - log(s) : exp(v) / s;
                }
            }
        th_check_close(what, y, ref, n, 1e-5);
        /* rows of probabilities sum to one */
        if (!lg) {
            double worst = 0;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t k = 0; k < inner; k++) {
                    double s = 0;
                    for (int64_t i = 0; i < L; i++) s += y[o * L * inner + k + i * inner];
                    worst = fmax(worst, fabs(s - 1));
                }
            CHECK(worst < 1e-5, "%s: a row sums to 1 +- %g", what, worst);
        }
        free(ref);
    }
    free(y);
    free(x);
}

static void test_softmax(void) {
    int64_t d4[4] = {3, 4, 5, 6};
    for (int lg = 0; lg < 2; lg++) {
        for (int axis = -4; axis < 4; axis++) softmax_case(kiln_dims_make(4, d4), axis, lg, -5, 5);
        int64_t rows[2] = {64, 1000}, cols[3] = {7, 1000, 300}, one = 9;
        softmax_case(kiln_dims_make(2, rows), -1, lg, -5, 5);
        softmax_case(kiln_dims_make(2, rows), 0, lg, -5, 5);
        softmax_case(kiln_dims_make(3, cols), 1, lg, -5, 5);
        softmax_case(kiln_dims_make(1, &one), 0, lg, -5, 5);
        /* large logits: only a max-subtracting kernel survives these */
        softmax_case(kiln_dims_make(4, d4), 3, lg, -100, 100);
        softmax_case(kiln_dims_make(4, d4), 1, lg, 80, 120);
    }
}

/* ---- worker counts: softmax rows and columns, instance norm and LRN rows split 3 and 7 ways ---- */
static void test_threads(void) {
    static const int counts[3] = {1, 3, 7};
    int64_t rows[2] = {67, 1001}, img[4] = {2, 5, 37, 41};
    for (int t = 0; t < 3; t++)
        for (int kind = 0; kind < 4; kind++) {
            kiln_dims d = kind < 2 ? kiln_dims_make(2, rows) : kiln_dims_make(4, img);
            int64_t n = kiln_dims_volume(&d);
            float *x = th_rand_array(n, -3, 3), *y = malloc((size_t)n * sizeof(float));
            float sc[5] = {1, 2, 0.5f, 1.5f, 0.75f}, bi[5] = {0.1f, -0.2f, 0.3f, 0, 1};
            double *ref = malloc((size_t)n * sizeof(double));
            kiln_network *net = net_new();
            kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
            kiln_layer *l = NULL;
            if (kind < 2) { /* softmax along the rows (kind 0) or down the columns (kind 1) */
                l = kiln_network_add_softmax(net, in, kind ? 0 : 1, 0);
                int64_t L = kind ? d.d[0] : d.d[1], stride = kind ? d.d[1] : 1, lines = kind ? d.d[1] : d.d[0];
                for (int64_t r = 0; r < lines; r++) {
                    int64_t base = kind ? r : r * d.d[1];
                    double m = -INFINITY, s = 0;
                    for (int64_t i = 0; i < L; i++) m = fmax(m, x[base + i * stride]);
                    for (int64_t i = 0; i < L; i++) s += exp(x[base + i * stride] - m);
                    for (int64_t i = 0; i < L; i++) ref[base + i * stride] = exp(x[base + i * stride] - m) / s;
                }
            } else if (kind == 2) {
                l = kiln_network_add_instance_norm(net, in, wf(sc, 5), wf(bi, 5), 1e-5f);
                int64_t S = 37 * 41;
                for (int64_t r = 0; r < 10; r++) {
                    double mean = 0, var = 0;
                    for (int64_t i = 0; i < S; i++) mean += x[r * S + i];
                    mean /= (double)S;
                    for (int64_t i = 0; i < S; i++) var += (x[r * S + i] - mean) * (x[r * S + i] - mean);
                    var /= (double)S;
                    for (int64_t i = 0; i < S; i++) ref[r * S + i] = sc[r % 5] * (x[r * S + i] - mean) / sqrt(var + 1e-5) + bi[r % 5];
                }
            } else {
                l = kiln_network_add_lrn(net, in, 3, 0.5f, 0.75f, 1.0f);
                int64_t S = 37 * 41;
                for (int64_t b = 0; b < 2; b++)
                    for (int64_t c = 0; c < 5; c++)
                        for (int64_t s = 0; s < S; s++) {
                            double sq = 0;
                            for (int64_t i = c - 1; i <= c + 1; i++)
                                if (i >= 0 && i < 5) sq += (double)x[(b * 5 + i) * S + s] * x[(b * 5 + i) * S + s];
                            int64_t at = (b * 5 + c) * S + s;
                            ref[at] = x[at] / pow(1.0 + 0.5 / 3 * sq, 0.75);
                        }
            }
            char what[64];
            snprintf(what, sizeof what, "layer kind %d with %d threads", kind, counts[t]);
            CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
            if (l) {
                kiln_network_mark_output(net, kiln_layer_output(l, 0));
                void *ip[1] = {x};
                memset(y, 0xFF, (size_t)n * sizeof(float));
                kiln_status st = run_threads(net, counts[t], ip, y);
                CHECK(st == KILN_OK, "%s: %s", what, kiln_last_error());
                if (st == KILN_OK) th_check_close(what, y, ref, n, 1e-5);
            }
            kiln_network_destroy(net);
            free(x);
            free(y);
            free(ref);
        }
}

/* ---- errors ---- */

static void test_errors(void) {
    int64_t d4[4] = {2, 3, 4, 5}, d2[2] = {3, 4}, d1 = 6;
    float w[200];
    th_fill(w, 200, 0.5f, 1.5f);
    int32_t wi[3] = {1, 2, 3};
    kiln_network *net = net_new();
    kiln_tensor *f = kiln_network_add_input(net, "f", KILN_FLOAT32, kiln_dims_make(4, d4));
    kiln_tensor *f2 = kiln_network_add_input(net, "f2", KILN_FLOAT32, kiln_dims_make(2, d2));
    kiln_tensor *f1 = kiln_network_add_input(net, "f1", KILN_FLOAT32, kiln_dims_make(1, &d1));
    kiln_tensor *i = kiln_network_add_input(net, "i", KILN_INT32, kiln_dims_make(4, d4));
    int before = kiln_network_num_layers(net);

    expect_fail(kiln_network_add_scale(net, f, KILN_SCALE_UNIFORM, wf(w, 2), NONE, NONE), "uniform shift of 2", "Scale",
                "shift has 2 values, expected 1");
    expect_fail(kiln_network_add_scale(net, f, KILN_SCALE_CHANNEL, NONE, wf(w, 4), NONE), "channel scale of 4", "Scale",
                "scale has 4 values, expected 3");
    expect_fail(kiln_network_add_scale(net, f, KILN_SCALE_CHANNEL, wf(w, 3), wf(w, 3), wf(w, 2)), "channel power of 2",
                "Scale", "power has 2 values");
    expect_fail(kiln_network_add_scale(net, f, KILN_SCALE_ELEMENTWISE, wf(w, 60), wf(w, 59), NONE),
                "elementwise scale of 59", "Scale", "scale has 59 values, expected 60");
    expect_fail(kiln_network_add_scale(net, f1, KILN_SCALE_CHANNEL, wf(w, 6), NONE, NONE), "channel mode on rank 1",
                "Scale", "rank");
    expect_fail(kiln_network_add_scale(net, f, KILN_SCALE_CHANNEL, (kiln_weights){KILN_INT32, wi, 3}, NONE, NONE),
                "int32 shift", "Scale", "int32");
    expect_fail(kiln_network_add_scale(net, i, KILN_SCALE_UNIFORM, wf(w, 1), NONE, NONE), "scale of int32 input",
                "Scale", "int32");
    expect_fail(kiln_network_add_scale(net, f, (kiln_scale_mode)5, wf(w, 1), NONE, NONE), "scale mode 5", "Scale",
                "mode");
    expect_fail(kiln_network_add_batch_norm(net, f, wf(w, 4), wf(w, 4), wf(w, 4), wf(w, 4), 1e-5f),
                "batch norm of 4 channels on 3", "Scale", "expected 3");
    expect_fail(kiln_network_add_instance_norm(net, f2, wf(w, 4), wf(w, 4), 1e-5f), "instance norm rank 2",
                "InstanceNorm", "rank");
    expect_fail(kiln_network_add_instance_norm(net, f, wf(w, 3), wf(w, 2), 1e-5f), "instance norm bias of 2",
                "InstanceNorm", "bias has 2 values, expected 3");
    expect_fail(kiln_network_add_instance_norm(net, f, wf(w, 3), wf(w, 3), -1.0f), "instance norm epsilon -1",
                "InstanceNorm", "epsilon");
    expect_fail(kiln_network_add_instance_norm(net, i, wf(w, 3), wf(w, 3), 1e-5f), "instance norm on int32",
                "InstanceNorm", "int32");
    expect_fail(kiln_network_add_lrn(net, f, 0, 1e-4f, 0.75f, 1.0f), "lrn size 0", "LRN", "size");
    expect_fail(kiln_network_add_lrn(net, f1, 3, 1e-4f, 0.75f, 1.0f), "lrn rank 1", "LRN", "rank");
    expect_fail(kiln_network_add_softmax(net, f, 4, 0), "softmax axis 4", "Softmax", "axis 4");
    expect_fail(kiln_network_add_softmax(net, f, -5, 1), "softmax axis -5", "Softmax", "axis -5");
    expect_fail(kiln_network_add_softmax(net, i, 1, 0), "softmax on int32", "Softmax", "int32");
    CHECK(kiln_network_num_layers(net) == before, "failed adds left %d layers behind",
          kiln_network_num_layers(net) - before);
    kiln_network_destroy(net);
}

int main(void) {
    B = th_builder();
    test_scale();
    test_batch_norm();
    test_instance_norm();
    test_lrn();
    test_softmax();
    test_threads();
    test_errors();
    kiln_builder_destroy(B);
    return th_exit("test_ops_norm");
}
