/* kiln tests: the CUDA backend's runtime contracts. Without a usable GPU (or without the
 * backend in this build) a CUDA build must fail cleanly with a message saying why. With
 * one: device-pointer I/O, enqueue on a caller's stream, one engine run by two threads,
 * out-of-device-memory at context creation, data faults reported by execute, and every
 * activation fused into convolutions (cuDNN, fused cuDNN, 1x1 as GEMM), Gemm and adds. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#include "graph/graph.h" /* kiln_layer: to request a fused activation by hand */

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

enum { N = 2, CI = 3, HW = 9, CO = 4, K = 3 };
#define XN (N * CI * HW * HW)
#define YN (N * CO * HW * HW)
#define PN (N * CO)

typedef struct net_data {
    float w[CO * CI * K * K], bias[CO];
} net_data;

/* x -> conv 3x3 pad 1 + bias -> relu -> + z (per channel) = y;  y -> global average = p */
static kiln_network *make_net(kiln_builder *b, const net_data *d) {
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    if (!net) return NULL;
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){N, CI, HW, HW}));
    kiln_tensor *z = kiln_network_add_input(net, "z", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, CO, 1, 1}));
    kiln_conv_desc cd = {.out_channels = CO, .kernel = {K, K}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *c = kiln_network_add_convolution(net, x, &cd, (kiln_weights){KILN_FLOAT32, d->w, CO * CI * K * K},
                                                 (kiln_weights){KILN_FLOAT32, d->bias, CO});
    kiln_layer *r = c ? kiln_network_add_activation(net, kiln_layer_output(c, 0), KILN_ACT_RELU, 0, 0) : NULL;
    kiln_layer *a = r ? kiln_network_add_elementwise(net, kiln_layer_output(r, 0), z, KILN_ELT_ADD) : NULL;
    kiln_pool_desc pd = {.type = KILN_POOL_AVERAGE, .global = 1};
    kiln_layer *p = a ? kiln_network_add_pooling(net, kiln_layer_output(a, 0), &pd) : NULL;
    CHECK(p != NULL, "network: %s", kiln_last_error());
    if (!p) return net;
    CHECK_OK(kiln_tensor_set_name(kiln_layer_output(a, 0), "y"));
    CHECK_OK(kiln_tensor_set_name(kiln_layer_output(p, 0), "p"));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(a, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(p, 0)));
    return net;
}

static kiln_status build(kiln_builder *b, kiln_network *net, size_t limit, kiln_engine **e) {
    kiln_config *cfg = NULL;
    kiln_status st = kiln_config_create(b, &cfg);
    if (st == KILN_OK) st = kiln_config_set_device(cfg, KILN_DEVICE_CUDA);
    if (st == KILN_OK && limit) st = kiln_config_set_memory_limit(cfg, limit);
    if (st == KILN_OK) st = kiln_builder_build(b, net, cfg, e);
    kiln_config_destroy(cfg);
    return st;
}

#ifdef KILN_HAVE_CUDA

static void reference(const net_data *d, const float *x, const float *z, double *y, double *p) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < CO; o++) {
            double sum = 0;
            for (int i = 0; i < HW; i++)
                for (int j = 0; j < HW; j++) {
                    double acc = d->bias[o];
                    for (int c = 0; c < CI; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int ii = i + ki - 1, jj = j + kj - 1;
                                if (ii < 0 || jj < 0 || ii >= HW || jj >= HW) continue;
                                acc += (double)x[((n * CI + c) * HW + ii) * HW + jj] * d->w[((o * CI + c) * K + ki) * K + kj];
                            }
                    double v = (acc > 0 ? acc : 0) + z[o];
                    y[((n * CO + o) * HW + i) * HW + j] = v;
                    sum += v;
                }
            p[n * CO + o] = sum / (HW * HW);
        }
}

#define CU(call)                                                                                           \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        CHECK(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));                                 \
    } while (0)

/* Device buffers of one run. */
typedef struct dev_io {
    float *x, *z, *y, *p;
} dev_io;

static void io_alloc(dev_io *io) {
    CU(cudaMalloc((void **)&io->x, XN * sizeof(float)));
    CU(cudaMalloc((void **)&io->z, CO * sizeof(float)));
    CU(cudaMalloc((void **)&io->y, YN * sizeof(float)));
    CU(cudaMalloc((void **)&io->p, PN * sizeof(float)));
}

static void io_free(dev_io *io) {
    cudaFree(io->x);
    cudaFree(io->z);
    cudaFree(io->y);
    cudaFree(io->p);
}

static kiln_status io_bind(kiln_context *ctx, const dev_io *io) {
    kiln_status st = kiln_context_set_tensor_address(ctx, "x", io->x);
    if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, "z", io->z);
    if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, "y", io->y);
    if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, "p", io->p);
    return st;
}

/* Fresh inputs, the run (execute, or enqueue on `stream`), results compared. */
static void run_and_check(const char *what, kiln_context *ctx, const dev_io *io, const net_data *d,
                          cudaStream_t stream, bool enqueue) {
    float x[XN], z[CO], y[YN], p[PN];
    double ry[YN], rp[PN];
    th_fill(x, XN, -1, 1);
    th_fill(z, CO, -1, 1);
    memset(y, 0xFF, sizeof y);
    memset(p, 0xFF, sizeof p);
    CU(cudaMemcpyAsync(io->x, x, sizeof x, cudaMemcpyHostToDevice, stream));
    CU(cudaMemcpyAsync(io->z, z, sizeof z, cudaMemcpyHostToDevice, stream));
    CU(cudaMemsetAsync(io->y, 0xFF, sizeof y, stream));
    if (enqueue) {
        CHECK_OK(kiln_context_enqueue(ctx, stream));
    } else {
        CU(cudaStreamSynchronize(stream));
        CHECK_OK(kiln_context_execute(ctx));
    }
    CU(cudaMemcpyAsync(y, io->y, sizeof y, cudaMemcpyDeviceToHost, stream));
    CU(cudaMemcpyAsync(p, io->p, sizeof p, cudaMemcpyDeviceToHost, stream));
    CU(cudaStreamSynchronize(stream));
    reference(d, x, z, ry, rp);
    char name[128];
    snprintf(name, sizeof name, "%s: y", what);
    th_check_close(name, y, ry, YN, 1e-5);
    snprintf(name, sizeof name, "%s: p", what);
    th_check_close(name, p, rp, PN, 1e-5);
}

typedef struct thread_job {
    kiln_engine *e;
    const net_data *d;
    int index;
    kiln_status st;
    char msg[256]; /* kiln_last_error() is per thread: the thread's own copy */
} thread_job;

/* A context per thread, each on its own stream and buffers; runs interleave freely. */
static void *thread_main(void *arg) {
    thread_job *j = arg;
    kiln_context *ctx = NULL;
    cudaStream_t s = NULL;
    dev_io io;
    memset(&io, 0, sizeof io);
    j->st = kiln_context_create(j->e, &ctx);
    CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    io_alloc(&io);
    if (j->st == KILN_OK) j->st = io_bind(ctx, &io);
    if (j->st != KILN_OK) snprintf(j->msg, sizeof j->msg, "%s", kiln_last_error());
    for (int it = 0; it < 20 && j->st == KILN_OK; it++) {
        char what[64];
        snprintf(what, sizeof what, "thread %d run %d", j->index, it);
        run_and_check(what, ctx, &io, j->d, s, it % 2 == 0);
    }
    io_free(&io);
    cudaStreamDestroy(s);
    kiln_context_destroy(ctx);
    return NULL;
}


/* ---- every activation fused into its producer ---- */

static double act_ref(kiln_activation_type t, double a, double b, double x) {
    switch (t) {
    case KILN_ACT_RELU: return x > 0 ? x : 0;
    case KILN_ACT_LEAKY_RELU: return x >= 0 ? x : a * x;
    case KILN_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case KILN_ACT_TANH: return tanh(x);
    case KILN_ACT_CLIP: return x < a ? a : x > b ? b : x;
    case KILN_ACT_SILU: return x / (1 + exp(-x));
    case KILN_ACT_HARD_SIGMOID: return fmax(0, fmin(1, a * x + b));
    case KILN_ACT_HARD_SWISH: return x * fmax(0, fmin(1, x / 6 + 0.5));
    case KILN_ACT_GELU_ERF: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case KILN_ACT_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    case KILN_ACT_ELU: return x >= 0 ? x : a * (exp(x) - 1);
    case KILN_ACT_SELU: return b * (x > 0 ? x : a * (exp(x) - 1));
    case KILN_ACT_SOFTPLUS: return log1p(exp(x));
    case KILN_ACT_SOFTSIGN: return x / (1 + fabs(x));
    case KILN_ACT_THRESHOLDED_RELU: return x > a ? x : 0;
    case KILN_ACT_MISH: return x * tanh(log1p(exp(x)));
    }
    return NAN;
}

enum { FB = 2, FC = 8, FS = 5, FK = 16, FO = 10 };
#define FX (FB * FC * FS * FS)

static void test_fused_activations(kiln_builder *b) {
    static const float ab[KILN_ACT_COUNT][2] = {
        [KILN_ACT_LEAKY_RELU] = {0.1f, 0}, [KILN_ACT_CLIP] = {-0.5f, 0.7f}, [KILN_ACT_HARD_SIGMOID] = {0.2f, 0.5f},
        [KILN_ACT_ELU] = {0.8f, 0}, [KILN_ACT_SELU] = {1.6732632f, 1.0507009f}, [KILN_ACT_THRESHOLDED_RELU] = {0.3f, 0}};
    float x[FX], x2[FX], w1[FK * FC], w3[FK * FC * 9], bias[FK], wf[FO * FC * FS * FS], bf[FO];
    th_fill(x, FX, -1.5f, 1.5f);
    th_fill(x2, FX, -1.5f, 1.5f);
    th_fill(w1, FK * FC, -0.5f, 0.5f);
    th_fill(w3, FK * FC * 9, -0.3f, 0.3f);
    th_fill(bias, FK, -0.5f, 0.5f);
    th_fill(wf, FO * FC * FS * FS, -0.1f, 0.1f);
    th_fill(bf, FO, -0.5f, 0.5f);
    /* pre-activation references in double */
    static double p1[FB * FK * FS * FS], p3[FB * FK * FS * FS], pf[FB * FO], pe[FX];
    for (int n = 0; n < FB; n++)
        for (int k = 0; k < FK; k++)
            for (int i = 0; i < FS; i++)
                for (int j = 0; j < FS; j++) {
                    double a1 = bias[k], a3 = bias[k];
                    for (int c = 0; c < FC; c++) {
                        a1 += (double)w1[k * FC + c] * x[((n * FC + c) * FS + i) * FS + j];
                        for (int ki = 0; ki < 3; ki++)
                            for (int kj = 0; kj < 3; kj++) {
                                int ii = i + ki - 1, jj = j + kj - 1;
                                if (ii < 0 || jj < 0 || ii >= FS || jj >= FS) continue;
                                a3 += (double)w3[((k * FC + c) * 3 + ki) * 3 + kj] * x[((n * FC + c) * FS + ii) * FS + jj];
                            }
                    }
                    p1[((n * FK + k) * FS + i) * FS + j] = a1;
                    p3[((n * FK + k) * FS + i) * FS + j] = a3;
                }
    for (int n = 0; n < FB; n++)
        for (int o = 0; o < FO; o++) {
            double a = bf[o];
            for (int i = 0; i < FC * FS * FS; i++) a += (double)wf[o * FC * FS * FS + i] * x[n * FC * FS * FS + i];
            pf[n * FO + o] = a;
        }
    for (int i = 0; i < FX; i++) pe[i] = (double)x[i] + x2[i];

    for (int t = 0; t < KILN_ACT_COUNT; t++) {
        float al = ab[t][0], be = ab[t][1];
        kiln_network *net = NULL;
        CHECK_OK(kiln_network_create(b, &net));
        kiln_tensor *tx = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){FB, FC, FS, FS}));
        kiln_tensor *tx2 = kiln_network_add_input(net, "x2", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){FB, FC, FS, FS}));
        kiln_conv_desc d1 = {.out_channels = FK, .kernel = {1, 1}};
        kiln_conv_desc d3 = {.out_channels = FK, .kernel = {3, 3}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
        kiln_layer *c1 = kiln_network_add_convolution(net, tx, &d1, (kiln_weights){KILN_FLOAT32, w1, FK * FC},
                                                      (kiln_weights){KILN_FLOAT32, bias, FK});
        kiln_layer *c3 = kiln_network_add_convolution(net, tx, &d3, (kiln_weights){KILN_FLOAT32, w3, FK * FC * 9},
                                                      (kiln_weights){KILN_FLOAT32, bias, FK});
        kiln_layer *fc = kiln_network_add_fully_connected(net, tx, FO, (kiln_weights){KILN_FLOAT32, wf, FO * FC * FS * FS},
                                                          (kiln_weights){KILN_FLOAT32, bf, FO});
        kiln_layer *ad = kiln_network_add_elementwise(net, tx, tx2, KILN_ELT_ADD);
        kiln_layer *a1 = c1 ? kiln_network_add_activation(net, kiln_layer_output(c1, 0), (kiln_activation_type)t, al, be) : NULL;
        kiln_layer *a3 = c3 ? kiln_network_add_activation(net, kiln_layer_output(c3, 0), (kiln_activation_type)t, al, be) : NULL;
        kiln_layer *af = fc ? kiln_network_add_activation(net, kiln_layer_output(fc, 0), (kiln_activation_type)t, al, be) : NULL;
        CHECK(a1 && a3 && af && ad, "act %d network: %s", t, kiln_last_error());
        if (!(a1 && a3 && af && ad)) {
            kiln_network_destroy(net);
            continue;
        }
        /* the add carries its activation itself, as a fusion pass would leave it */
        ad->has_post_act = true;
        ad->post_act = (kg_act_params){(kiln_activation_type)t, al, be};
        kiln_network_mark_output(net, kiln_layer_output(a1, 0));
        kiln_network_mark_output(net, kiln_layer_output(a3, 0));
        kiln_network_mark_output(net, kiln_layer_output(af, 0));
        kiln_network_mark_output(net, kiln_layer_output(ad, 0));
        void *ins[2] = {x, x2}, *outs[4] = {0};
        kiln_status st = th_run_device(b, net, KILN_DEVICE_CUDA, ins, outs, NULL);
        CHECK(st == KILN_OK, "act %d run: %s", t, kiln_last_error());
        if (st == KILN_OK) {
            static double r1[FB * FK * FS * FS], r3[FB * FK * FS * FS], rf[FB * FO], re[FX];
            for (int i = 0; i < FB * FK * FS * FS; i++) {
                r1[i] = act_ref((kiln_activation_type)t, al, be, p1[i]);
                r3[i] = act_ref((kiln_activation_type)t, al, be, p3[i]);
            }
            for (int i = 0; i < FB * FO; i++) rf[i] = act_ref((kiln_activation_type)t, al, be, pf[i]);
            for (int i = 0; i < FX; i++) re[i] = act_ref((kiln_activation_type)t, al, be, pe[i]);
            char what[64];
            snprintf(what, sizeof what, "act %d after conv 1x1", t);
            th_check_close(what, outs[0], r1, FB * FK * FS * FS, 1e-5);
            snprintf(what, sizeof what, "act %d after conv 3x3", t);
            th_check_close(what, outs[1], r3, FB * FK * FS * FS, 1e-5);
            snprintf(what, sizeof what, "act %d after fully connected", t);
            th_check_close(what, outs[2], rf, FB * FO, 1e-5);
            snprintf(what, sizeof what, "act %d fused into an add", t);
            th_check_close(what, outs[3], re, FX, 1e-5);
        }
        for (int j = 0; j < 4; j++) free(outs[j]);
        kiln_network_destroy(net);
    }
}

/* Refit of a Gemm's bias constant: the Gemm read it through the build-time address. */
static void test_refit_bias(kiln_builder *b) {
    enum { RB = 3, RK = 20, RN = 7 };
    float w[RN * RK], bias[RN], bias2[RN], x[RB * RK];
    th_fill(w, RN * RK, -0.5f, 0.5f);
    th_fill(bias, RN, -1, 1);
    th_fill(bias2, RN, -1, 1);
    th_fill(x, RB * RK, -1, 1);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *tx = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){RB, RK}));
    kiln_layer *fc = kiln_network_add_fully_connected(net, tx, RN, (kiln_weights){KILN_FLOAT32, w, RN * RK},
                                                      (kiln_weights){KILN_FLOAT32, bias, RN});
    CHECK(fc != NULL, "fully connected: %s", kiln_last_error());
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    if (fc) {
        CHECK_OK(kiln_tensor_set_name(kiln_layer_output(fc, 0), "y"));
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(fc, 0)));
        CHECK_OK(build(b, net, 0, &e));
    }
    if (e) CHECK_OK(kiln_context_create(e, &c));
    if (c) {
        CHECK_OK(kiln_context_set_io_memory(c, KILN_MEMORY_HOST));
        float y[RB * RN];
        CHECK_OK(kiln_context_set_tensor_address(c, "x", x));
        CHECK_OK(kiln_context_set_tensor_address(c, "y", y));
        const char *name = NULL;
        for (int i = 0; i < kiln_engine_num_weights(e); i++) {
            const char *nm = kiln_engine_weights_name(e, i);
            kiln_dtype dt;
            int64_t count = 0;
            if (kiln_engine_weights_info(e, nm, &dt, &count) == KILN_OK && count == RN) name = nm;
        }
        CHECK(name != NULL, "the bias constant is refittable");
        for (int round = 0; round < 3; round++) {
            const float *bb = round == 0 ? bias : round == 1 ? bias2 : bias;
            if (round > 0 && name) CHECK_OK(kiln_engine_refit(e, name, (kiln_weights){KILN_FLOAT32, bb, RN}));
            memset(y, 0xFF, sizeof y);
            CHECK_OK(kiln_context_execute(c));
            double ref[RB * RN];
            for (int i = 0; i < RB; i++)
                for (int o = 0; o < RN; o++) {
                    double a = bb[o];
                    for (int k = 0; k < RK; k++) a += (double)x[i * RK + k] * w[o * RK + k];
                    ref[i * RN + o] = a;
                }
            char what[64];
            snprintf(what, sizeof what, "fully connected after %d bias refits", round);
            th_check_close(what, y, ref, RB * RN, 1e-5);
        }
    }
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

static void test_gpu(kiln_builder *b, kiln_engine *e, const net_data *d) {
    test_fused_activations(b);
    test_refit_bias(b);

    /* device-pointer I/O on the context's own stream */
    kiln_context *ctx = NULL;
    CHECK_OK(kiln_context_create(e, &ctx));
    dev_io io;
    memset(&io, 0, sizeof io);
    io_alloc(&io);
    if (ctx) {
        CHECK_OK(io_bind(ctx, &io));
        for (int it = 0; it < 3; it++) run_and_check("execute, device pointers", ctx, &io, d, NULL, false);
        /* enqueue on a caller's stream, twice without a sync in between */
        cudaStream_t s;
        CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        run_and_check("enqueue on a user stream", ctx, &io, d, s, true);
        run_and_check("enqueue again", ctx, &io, d, s, true);
        /* back to execute: the context's own stream again */
        run_and_check("execute after enqueue", ctx, &io, d, NULL, false);
        cudaStreamDestroy(s);
    }
    kiln_context_destroy(ctx);
    io_free(&io);

    /* two contexts of one engine on two threads */
    thread_job jobs[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (thread_job){e, d, i, KILN_OK, ""};
        pthread_create(&th[i], NULL, thread_main, &jobs[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].st == KILN_OK, "thread %d: %s: %s", i, kiln_status_string(jobs[i].st), jobs[i].msg);
    }

    /* out of device memory: an intermediate of 1.1x the GPU's memory (the unary chain runs in place; it is
     * smaller than host memory, so the builder's size check lets them through; where the
     * host has less memory than that, the build itself must refuse with OUT_OF_MEMORY) */
    size_t dev_free = 0, dev_total = 0;
    CHECK(cudaMemGetInfo(&dev_free, &dev_total) == cudaSuccess && dev_total > 0, "cudaMemGetInfo");
    int64_t huge = (int64_t)(dev_total / 10 * 11 / sizeof(float));
    double host_bytes = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    bool host_fits = (double)huge * sizeof(float) < host_bytes;
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(1, (int64_t[]){huge}));
    kiln_layer *u1 = kiln_network_add_unary(net, x, KILN_UNARY_ABS);
    kiln_layer *u2 = u1 ? kiln_network_add_unary(net, kiln_layer_output(u1, 0), KILN_UNARY_NEG) : NULL;
    kiln_layer *u3 = u2 ? kiln_network_add_unary(net, kiln_layer_output(u2, 0), KILN_UNARY_EXP) : NULL;
    CHECK(u3 != NULL, "huge network: %s", kiln_last_error());
    if (u3) {
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(u3, 0)));
        kiln_engine *big = NULL;
        if (!host_fits) {
            kiln_status bs = build(b, net, 0, &big);
            CHECK(bs == KILN_ERR_OUT_OF_MEMORY && !big && strstr(kiln_last_error(), "'x'"),
                  "tensor larger than host memory: %s (%s)", kiln_status_string(bs), kiln_last_error());
        } else {
            CHECK_OK(build(b, net, 0, &big));
        }
        if (host_fits) {
            kiln_context *bc = NULL;
            kiln_status st = big ? kiln_context_create(big, &bc) : KILN_ERR_INTERNAL;
            CHECK(st == KILN_ERR_OUT_OF_MEMORY && !bc, "huge arena: %s (%s)", kiln_status_string(st),
                  kiln_last_error());
            CHECK(strstr(kiln_last_error(), "bytes") && strstr(kiln_last_error(), "device memory"),
                  "message names the bytes: %s", kiln_last_error());
            kiln_context_destroy(bc);
        }
        /* the failure left nothing behind: a normal context still works */
        kiln_context *ok = NULL;
        CHECK_OK(kiln_context_create(e, &ok));
        kiln_context_destroy(ok);
        kiln_engine_destroy(big);
    }
    kiln_network_destroy(net);

    /* a memory limit below the activations fails the build */
    net_data d2 = *d;
    net = make_net(b, &d2);
    kiln_engine *lim = NULL;
    kiln_status st = build(b, net, 64, &lim);
    CHECK(st == KILN_ERR_OUT_OF_MEMORY && !lim, "memory limit: %s (%s)", kiln_status_string(st), kiln_last_error());
    kiln_engine_destroy(lim);
    kiln_network_destroy(net);

    /* a data fault (gather index out of range) fails execute, and the next run is clean */
    CHECK_OK(kiln_network_create(b, &net));
    x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){5, 3}));
    kiln_tensor *ix = kiln_network_add_input(net, "i", KILN_INT64, kiln_dims_make(1, (int64_t[]){2}));
    kiln_layer *g = kiln_network_add_gather(net, x, ix, 0);
    CHECK(g != NULL, "gather: %s", kiln_last_error());
    kiln_engine *ge = NULL;
    if (g) {
        CHECK_OK(kiln_tensor_set_name(kiln_layer_output(g, 0), "g"));
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(g, 0)));
        CHECK_OK(build(b, net, 0, &ge));
    }
    kiln_context *gc = NULL;
    if (ge) CHECK_OK(kiln_context_create(ge, &gc));
    if (gc) {
        float hx[15], hg[6];
        th_fill(hx, 15, -1, 1);
        int64_t bad[2] = {1, 7}, good[2] = {4, -5};
        float *dx = NULL, *dg = NULL;
        int64_t *di = NULL;
        CU(cudaMalloc((void **)&dx, sizeof hx));
        CU(cudaMalloc((void **)&dg, sizeof hg));
        CU(cudaMalloc((void **)&di, sizeof bad));
        CU(cudaMemcpy(dx, hx, sizeof hx, cudaMemcpyHostToDevice));
        CU(cudaMemcpy(di, bad, sizeof bad, cudaMemcpyHostToDevice));
        CHECK_OK(kiln_context_set_tensor_address(gc, "x", dx));
        CHECK_OK(kiln_context_set_tensor_address(gc, "i", di));
        CHECK_OK(kiln_context_set_tensor_address(gc, "g", dg));
        st = kiln_context_execute(gc);
        CHECK(st == KILN_ERR_RUNTIME && strstr(kiln_last_error(), "index 7") && strstr(kiln_last_error(), "size 5"),
              "bad index: %s (%s)", kiln_status_string(st), kiln_last_error());
        CU(cudaMemcpy(di, good, sizeof good, cudaMemcpyHostToDevice));
        CHECK_OK(kiln_context_execute(gc));
        CU(cudaMemcpy(hg, dg, sizeof hg, cudaMemcpyDeviceToHost));
        CHECK(memcmp(hg, hx + 12, 3 * sizeof(float)) == 0 && memcmp(hg + 3, hx, 3 * sizeof(float)) == 0,
              "gather after a fault: rows 4 and 0");
        cudaFree(dx);
        cudaFree(dg);
        cudaFree(di);
    }
    kiln_context_destroy(gc);
    kiln_engine_destroy(ge);
    kiln_network_destroy(net);
}
#endif

int main(void) {
    kiln_builder *b = th_builder();
    net_data d;
    th_fill(d.w, CO * CI * K * K, -0.5f, 0.5f);
    th_fill(d.bias, CO, -0.5f, 0.5f);
    kiln_network *net = make_net(b, &d);
    kiln_engine *e = NULL;
    kiln_status st = net ? build(b, net, 0, &e) : KILN_ERR_INTERNAL;
    if (st != KILN_OK) {
        /* no GPU, no driver, or no CUDA backend in this build: a clean failure that says why */
        CHECK(st == KILN_ERR_DEVICE || st == KILN_ERR_UNSUPPORTED, "CUDA build failed with %s: %s",
              kiln_status_string(st), kiln_last_error());
        CHECK(strstr(kiln_last_error(), "CUDA") != NULL, "the message says why: %s", kiln_last_error());
        CHECK(e == NULL, "no engine on failure");
        printf("no GPU: skipping GPU checks (%s)\n", kiln_last_error());
    } else {
#ifdef KILN_HAVE_CUDA
        test_gpu(b, e, &d);
#else
        CHECK(0, "a CUDA engine was built, but this test was compiled without the CUDA runtime");
#endif
    }
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    return th_exit("test_cuda_backend");
}
