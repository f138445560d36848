/* kiln tests: the public API's contracts: misuse returns errors with messages, objects
 * may be destroyed in any order, failing allocations never crash or leak, dynamic
 * input shapes, memory limits, and the basic layers (shuffle, identity, constant, cast). */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"

static kiln_dims D(int n, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t v[4] = {a, b, c, d};
    return kiln_dims_make(n, v);
}

static void test_null_and_misuse(void) {
    kiln_builder *b = NULL;
    CHECK(kiln_builder_create(NULL, NULL) == KILN_ERR_INVALID_ARGUMENT, "NULL out");
    CHECK(strlen(kiln_last_error()) > 0, "a message is set");
    kiln_builder_desc bad = KILN_BUILDER_DESC_INIT;
    bad.size = 3;
    CHECK(kiln_builder_create(&bad, &b) == KILN_ERR_INVALID_ARGUMENT && !b, "bad desc size");
    b = th_builder();
    kiln_network *net = NULL, *other = NULL;
    CHECK(kiln_network_create(NULL, &net) == KILN_ERR_INVALID_ARGUMENT, "NULL builder");
    CHECK_OK(kiln_network_create(b, &net));
    CHECK_OK(kiln_network_create(b, &other));
    CHECK(kiln_network_add_input(NULL, "x", KILN_FLOAT32, D(1, 4, 0, 0, 0)) == NULL, "NULL network");
    CHECK(kiln_network_add_input(net, NULL, KILN_FLOAT32, D(1, 4, 0, 0, 0)) == NULL, "NULL name");
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, 2, 3, 0, 0));
    CHECK(x != NULL, "add input: %s", kiln_last_error());
    CHECK(kiln_network_add_input(net, "x", KILN_FLOAT32, D(1, 4, 0, 0, 0)) == NULL, "duplicate name");
    CHECK(strstr(kiln_last_error(), "'x'") != NULL, "message names the input: %s", kiln_last_error());
    CHECK(kiln_network_add_input(net, "y", (kiln_dtype)99, D(1, 4, 0, 0, 0)) == NULL, "bad dtype");
    kiln_dims big = {.nb_dims = 9};
    CHECK(kiln_network_add_input(net, "z", KILN_FLOAT32, big) == NULL, "rank too large");
    kiln_dims neg = D(2, 2, -5, 0, 0);
    CHECK(kiln_network_add_input(net, "z", KILN_FLOAT32, neg) == NULL, "negative dim");
    kiln_tensor *ox = kiln_network_add_input(other, "ox", KILN_FLOAT32, D(1, 4, 0, 0, 0));
    CHECK(kiln_network_add_identity(net, ox) == NULL, "tensor from another network");
    CHECK(strstr(kiln_last_error(), "another network") != NULL, "message: %s", kiln_last_error());
    CHECK(kiln_network_add_identity(net, NULL) == NULL, "NULL input");
    CHECK(kiln_network_mark_output(net, NULL) == KILN_ERR_INVALID_ARGUMENT, "NULL output");
    CHECK(kiln_network_mark_output(net, ox) == KILN_ERR_INVALID_ARGUMENT, "output of another network");

    kiln_config *cfg = NULL;
    CHECK_OK(kiln_config_create(b, &cfg));
    kiln_engine *e = NULL;
    CHECK(kiln_builder_build(b, net, cfg, &e) == KILN_ERR_INVALID_STATE && !e, "no outputs marked");
    CHECK(strstr(kiln_last_error(), "output") != NULL, "message: %s", kiln_last_error());
    CHECK(kiln_builder_build(b, NULL, cfg, &e) == KILN_ERR_INVALID_ARGUMENT, "NULL network");
    CHECK(kiln_builder_build(b, net, NULL, &e) == KILN_ERR_INVALID_ARGUMENT, "NULL config");
    CHECK(kiln_builder_build(b, net, cfg, NULL) == KILN_ERR_INVALID_ARGUMENT, "NULL out");

    kiln_layer *id = kiln_network_add_identity(net, x);
    CHECK(id != NULL, "identity: %s", kiln_last_error());
    CHECK_OK(kiln_layer_set_name(id, "copy"));
    CHECK_OK(kiln_tensor_set_name(kiln_layer_output(id, 0), "y"));
    CHECK(kiln_tensor_set_name(kiln_layer_output(id, 0), "x") == KILN_ERR_INVALID_ARGUMENT, "name taken");
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(id, 0)));
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    kiln_engine *e2 = NULL;
    CHECK(kiln_builder_build(b, net, cfg, &e2) == KILN_ERR_INVALID_STATE && !e2, "building twice");
    CHECK(strstr(kiln_last_error(), "already built") != NULL, "message: %s", kiln_last_error());
    CHECK(kiln_network_add_identity(net, x) == NULL, "adding after build");

    CHECK(kiln_engine_num_io(e) == 2, "two bindings");
    CHECK(strcmp(kiln_engine_io_name(e, 0), "x") == 0 && strcmp(kiln_engine_io_name(e, 1), "y") == 0, "io order");
    CHECK(kiln_engine_io_name(e, 2) == NULL, "io out of range");
    CHECK(kiln_engine_io_mode(e, "x") == KILN_IO_INPUT && kiln_engine_io_mode(e, "y") == KILN_IO_OUTPUT, "io modes");
    CHECK(kiln_engine_io_mode(e, "nope") == KILN_IO_NONE, "unknown io");
    kiln_dims dd;
    CHECK(kiln_engine_io_dims(e, "nope", &dd) == KILN_ERR_NOT_FOUND, "unknown dims");
    CHECK(strstr(kiln_last_error(), "'nope'") != NULL, "message names the tensor: %s", kiln_last_error());

    kiln_context *ctx = NULL;
    CHECK_OK(kiln_context_create(e, &ctx));
    float in[6] = {1, 2, 3, 4, 5, 6}, outv[6] = {0};
    CHECK(kiln_context_set_tensor_address(ctx, "nope", in) == KILN_ERR_NOT_FOUND, "unknown binding");
    CHECK(kiln_context_set_tensor_address(ctx, "x", NULL) == KILN_ERR_INVALID_ARGUMENT, "NULL address");
    CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
    CHECK(kiln_context_execute(ctx) == KILN_ERR_INVALID_STATE, "unbound output");
    CHECK(strstr(kiln_last_error(), "'y'") != NULL, "message names the output: %s", kiln_last_error());
    CHECK_OK(kiln_context_set_tensor_address(ctx, "y", outv));
    /* destroy in "wrong" order: engine, network, builder, config first; the context keeps working */
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
    kiln_network_destroy(other);
    kiln_config_destroy(cfg);
    kiln_builder_destroy(b);
    CHECK_OK(kiln_context_execute(ctx));
    CHECK(memcmp(in, outv, sizeof in) == 0, "identity copies");
    /* graphs off: a CPU context runs the same, twice */
    CHECK_OK(kiln_context_set_cuda_graph(ctx, 0));
    memset(outv, 0, sizeof outv);
    CHECK_OK(kiln_context_execute(ctx));
    CHECK_OK(kiln_context_execute(ctx));
    CHECK(memcmp(in, outv, sizeof in) == 0, "identity copies without graphs");
    kiln_context_destroy(ctx);
    CHECK(kiln_context_execute(NULL) == KILN_ERR_INVALID_ARGUMENT, "NULL context");
    CHECK(kiln_context_set_cuda_graph(NULL, 1) == KILN_ERR_INVALID_ARGUMENT, "NULL context (graph switch)");
    kiln_engine_destroy(NULL);
    kiln_context_destroy(NULL);
}

static void test_input_also_output(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(1, 4, 0, 0, 0));
    CHECK_OK(kiln_network_mark_output(net, x));
    float in[4] = {1, 2, 3, 4};
    void *outs[1];
    CHECK(th_run(b, net, (void *[]){in}, outs, NULL) == KILN_ERR_INVALID_ARGUMENT, "input marked as output");
    CHECK(strstr(kiln_last_error(), "identity") != NULL, "message suggests the fix: %s", kiln_last_error());
    free(outs[0]);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

/* reshape/flatten/squeeze/unsqueeze: shapes and data (views inside, copies at outputs) */
static void test_shuffles(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(4, 2, 3, 1, 4));
    kiln_layer *r = kiln_network_add_reshape(net, x, D(3, 0, -1, 2, 0), 0); /* 2 x 6 x 2 */
    CHECK(r && kiln_tensor_dims(kiln_layer_output(r, 0)).d[1] == 6, "reshape 0/-1: %s", kiln_last_error());
    CHECK(kiln_network_add_reshape(net, x, D(2, 5, -1, 0, 0), 0) == NULL, "reshape volume mismatch");
    CHECK(strstr(kiln_last_error(), "Shuffle") != NULL, "message names the layer type: %s", kiln_last_error());
    CHECK(kiln_network_add_reshape(net, x, D(2, -1, -1, 0, 0), 0) == NULL, "two -1");
    kiln_layer *f = kiln_network_add_flatten(net, kiln_layer_output(r, 0), 1); /* 2 x 12 */
    kiln_layer *sq = kiln_network_add_squeeze(net, x, 1, (int64_t[]){-2}); /* 2x3x4 */
    CHECK(sq && kiln_tensor_dims(kiln_layer_output(sq, 0)).nb_dims == 3, "squeeze: %s", kiln_last_error());
    CHECK(kiln_network_add_squeeze(net, x, 1, (int64_t[]){1}) == NULL, "squeeze of size 3");
    kiln_layer *us = kiln_network_add_unsqueeze(net, kiln_layer_output(sq, 0), 2, (int64_t[]){0, -1}); /* 1x2x3x4x1 */
    CHECK(us && kiln_tensor_dims(kiln_layer_output(us, 0)).nb_dims == 5, "unsqueeze: %s", kiln_last_error());
    kiln_layer *c = kiln_network_add_cast(net, kiln_layer_output(f, 0), KILN_INT32);
    CHECK(c != NULL, "cast: %s", kiln_last_error());
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(f, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(us, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(c, 0)));
    float *in = th_rand_array(24, -50, 50);
    void *outs[3];
    kiln_dims od[3];
    CHECK_OK(th_run(b, net, (void *[]){in}, outs, od));
    if (outs[0] && outs[1] && outs[2]) {
        CHECK(od[0].nb_dims == 2 && od[0].d[0] == 2 && od[0].d[1] == 12, "flatten dims");
        CHECK(od[1].nb_dims == 5 && od[1].d[0] == 1 && od[1].d[4] == 1, "unsqueeze dims");
        CHECK(memcmp(outs[0], in, 24 * 4) == 0 && memcmp(outs[1], in, 24 * 4) == 0, "views keep the data");
        int ok = 1;
        for (int i = 0; i < 24; i++) ok &= ((int32_t *)outs[2])[i] == (int32_t)in[i];
        CHECK(ok, "cast float->int32 truncates");
    }
    for (int i = 0; i < 3; i++) free(outs[i]);
    free(in);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

static void test_cast_and_constant(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    float vals[5] = {-2.7f, -0.5f, 0.0f, 1.5f, 70000.0f};
    kiln_weights w = {KILN_FLOAT32, vals, 5};
    kiln_layer *k = kiln_network_add_constant(net, D(1, 5, 0, 0, 0), w);
    CHECK(k != NULL, "constant: %s", kiln_last_error());
    CHECK(kiln_network_add_constant(net, D(1, 4, 0, 0, 0), w) == NULL, "constant count mismatch");
    kiln_tensor *kt = kiln_layer_output(k, 0);
    kiln_layer *c16 = kiln_network_add_cast(net, kt, KILN_FLOAT16);
    kiln_layer *c32 = kiln_network_add_cast(net, kiln_layer_output(c16, 0), KILN_FLOAT32);
    kiln_layer *ci8 = kiln_network_add_cast(net, kt, KILN_INT8);
    kiln_layer *cb = kiln_network_add_cast(net, kt, KILN_BOOL);
    kiln_layer *ci64 = kiln_network_add_cast(net, kt, KILN_INT64);
    CHECK(kiln_network_add_cast(net, kt, (kiln_dtype)42) == NULL, "cast to unknown dtype");
    CHECK_OK(kiln_network_mark_output(net, kt));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(c32, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(ci8, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(cb, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(ci64, 0)));
    void *o[5];
    CHECK_OK(th_run(b, net, NULL, o, NULL));
    if (o[0] && o[1] && o[2] && o[3] && o[4]) {
        CHECK(memcmp(o[0], vals, sizeof vals) == 0, "constant output");
        const float *f = o[1];
        CHECK(f[0] == -2.69921875f && f[1] == -0.5f && f[3] == 1.5f, "fp16 round trip %g", (double)f[0]);
        CHECK(f[4] > 1e30f, "70000 overflows fp16 to inf (got %g)", (double)f[4]);
        const int8_t *i8 = o[2];
        CHECK(i8[0] == -2 && i8[1] == 0 && i8[3] == 1 && i8[4] == 127, "int8 truncation/saturation");
        const uint8_t *bo = o[3];
        CHECK(bo[0] == 1 && bo[2] == 0 && bo[4] == 1, "bool");
        const int64_t *i64 = o[4];
        CHECK(i64[0] == -2 && i64[4] == 70000, "int64");
    }
    for (int i = 0; i < 5; i++) free(o[i]);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

static void test_dynamic_shapes_and_limits(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, -1, 6, 0, 0));
    kiln_layer *r = kiln_network_add_reshape(net, x, D(2, -1, 3, 0, 0), 0);
    CHECK(r && kiln_tensor_dims(kiln_layer_output(r, 0)).nb_dims == -1, "shape unknown until build");
    kiln_layer *i2 = kiln_network_add_cast(net, kiln_layer_output(r, 0), KILN_FLOAT32);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(i2, 0)));
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    kiln_engine *e = NULL;
    CHECK(kiln_builder_build(b, net, cfg, &e) == KILN_ERR_SHAPE, "missing build shape");
    CHECK(strstr(kiln_last_error(), "kiln_config_set_input_shape") != NULL, "message: %s", kiln_last_error());
    /* a failed build still consumes the network (weights may be gone after it) */
    kiln_network_destroy(net);

    CHECK_OK(kiln_network_create(b, &net));
    x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, -1, 6, 0, 0));
    r = kiln_network_add_reshape(net, x, D(2, -1, 3, 0, 0), 0);
    i2 = kiln_network_add_cast(net, kiln_layer_output(r, 0), KILN_FLOAT32);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(i2, 0)));
    CHECK(kiln_config_set_input_shape(cfg, "x", D(2, 4, -1, 0, 0)) == KILN_ERR_SHAPE, "negative config dims");
    CHECK_OK(kiln_config_set_input_shape(cfg, "nope", D(2, 4, 6, 0, 0)));
    CHECK(kiln_builder_build(b, net, cfg, &e) == KILN_ERR_NOT_FOUND, "config shape for unknown input");
    kiln_network_destroy(net);
    kiln_config_destroy(cfg);

    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_network_create(b, &net));
    x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, -1, 6, 0, 0));
    r = kiln_network_add_reshape(net, x, D(2, -1, 3, 0, 0), 0);
    i2 = kiln_network_add_cast(net, kiln_layer_output(r, 0), KILN_FLOAT32);
    kiln_layer *i3 = kiln_network_add_cast(net, kiln_layer_output(i2, 0), KILN_FLOAT32);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(i3, 0)));
    CHECK(kiln_config_set_input_shape(cfg, "x", D(2, 4, 7, 0, 0)) == KILN_OK, "set shape");
    CHECK(kiln_builder_build(b, net, cfg, &e) == KILN_ERR_SHAPE, "config shape contradicts the declared 6");
    kiln_network_destroy(net);

    CHECK_OK(kiln_network_create(b, &net));
    x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, -1, 6, 0, 0));
    r = kiln_network_add_reshape(net, x, D(2, -1, 3, 0, 0), 0);
    i2 = kiln_network_add_cast(net, kiln_layer_output(r, 0), KILN_FLOAT32);
    /* to int32: the two casts stay two layers (float casts alone would fuse into one) */
    i3 = kiln_network_add_cast(net, kiln_layer_output(i2, 0), KILN_INT32);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(i3, 0)));
    CHECK_OK(kiln_config_set_input_shape(cfg, "x", D(2, 1000, 6, 0, 0)));
    CHECK_OK(kiln_config_set_memory_limit(cfg, 1000));
    CHECK(kiln_builder_build(b, net, cfg, &e) == KILN_ERR_OUT_OF_MEMORY, "memory limit");
    CHECK(strstr(kiln_last_error(), "limit") != NULL, "message: %s", kiln_last_error());
    kiln_network_destroy(net);

    CHECK_OK(kiln_network_create(b, &net));
    x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, -1, 6, 0, 0));
    r = kiln_network_add_reshape(net, x, D(2, -1, 3, 0, 0), 0);
    i2 = kiln_network_add_cast(net, kiln_layer_output(r, 0), KILN_FLOAT32);
    i3 = kiln_network_add_cast(net, kiln_layer_output(i2, 0), KILN_INT32);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(i3, 0)));
    CHECK_OK(kiln_config_set_memory_limit(cfg, 0));
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    kiln_dims od;
    CHECK_OK(kiln_engine_io_dims(e, kiln_tensor_name(kiln_layer_output(i3, 0)), &od));
    CHECK(od.nb_dims == 2 && od.d[0] == 2000 && od.d[1] == 3, "build-time shape flows through");
    CHECK(kiln_engine_activation_bytes(e) >= 6000 * 4, "one intermediate of 24 KB is planned");
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
    kiln_config_destroy(cfg);
    kiln_builder_destroy(b);
}

static void silent_log(void *user, kiln_log_level level, const char *msg) {
    (void)user;
    (void)level;
    (void)msg;
}

/* An allocator that fails the n-th allocation and counts live blocks. */
typedef struct fail_alloc {
    long calls, fail_at, live;
} fail_alloc;

static void *fa_alloc(void *user, size_t size, size_t align) {
    fail_alloc *f = user;
    if (f->calls++ == f->fail_at) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, size)) return NULL;
    f->live++;
    return p;
}

static void fa_free(void *user, void *p) {
    fail_alloc *f = user;
    if (p) {
        f->live--;
        free(p);
    }
}

/* Builds and runs a small graph with allocation number k failing, for every k. */
static void test_failing_allocator(void) {
    int completed = 0;
    for (long k = 0; k < 400 && !completed; k++) {
        fail_alloc fa = {0, k, 0};
        kiln_allocator al = {fa_alloc, fa_free, &fa};
        kiln_builder_desc d = KILN_BUILDER_DESC_INIT;
        d.allocator = &al;
        d.log_level = KILN_LOG_ERROR;
        d.log = silent_log;
        kiln_builder *b = NULL;
        kiln_network *net = NULL;
        kiln_config *cfg = NULL;
        kiln_engine *e = NULL;
        kiln_context *ctx = NULL;
        kiln_status st = kiln_builder_create(&d, &b);
        if (st == KILN_OK) st = kiln_network_create(b, &net);
        kiln_tensor *x = st == KILN_OK ? kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, 3, 4, 0, 0)) : NULL;
        kiln_layer *r = x ? kiln_network_add_reshape(net, x, D(1, 12, 0, 0, 0), 0) : NULL;
        kiln_layer *c = r ? kiln_network_add_cast(net, kiln_layer_output(r, 0), KILN_FLOAT64) : NULL;
        if (!c) st = KILN_ERR_OUT_OF_MEMORY;
        if (st == KILN_OK) st = kiln_network_mark_output(net, kiln_layer_output(c, 0));
        if (st == KILN_OK) st = kiln_config_create(b, &cfg);
        if (st == KILN_OK) st = kiln_config_set_num_threads(cfg, 2);
        if (st == KILN_OK) st = kiln_builder_build(b, net, cfg, &e);
        if (st == KILN_OK) st = kiln_context_create(e, &ctx);
        float in[12];
        double out[12];
        th_fill(in, 12, -1, 1);
        if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, "x", in);
        if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_layer_output(c, 0)), out);
        if (st == KILN_OK) st = kiln_context_execute(ctx);
        if (st == KILN_OK) {
            completed = 1;
            CHECK(out[5] == (double)in[5], "result after %ld allocations", k);
        } else {
            CHECK(st == KILN_ERR_OUT_OF_MEMORY, "allocation %ld failing gives out-of-memory, got %s: %s", k,
                  kiln_status_string(st), kiln_last_error());
        }
        kiln_context_destroy(ctx);
        kiln_engine_destroy(e);
        kiln_config_destroy(cfg);
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
        CHECK(fa.live == 0, "allocation %ld failing: %ld blocks leaked", k, fa.live);
    }
    CHECK(completed, "the run eventually succeeds");
}

typedef struct thread_job {
    kiln_engine *e;
    float in[64];
    float out[64];
    kiln_status st;
} thread_job;

static void *thread_main(void *p) {
    thread_job *j = p;
    kiln_context *c = NULL;
    j->st = kiln_context_create(j->e, &c);
    for (int it = 0; it < 50 && j->st == KILN_OK; it++) {
        j->st = kiln_context_set_tensor_address(c, "x", j->in);
        if (j->st == KILN_OK) j->st = kiln_context_set_tensor_address(c, "y", j->out);
        if (j->st == KILN_OK) j->st = kiln_context_execute(c);
    }
    kiln_context_destroy(c);
    return NULL;
}

/* One engine, one context per thread, run concurrently. */
static void test_threads(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, 8, 8, 0, 0));
    kiln_layer *c1 = kiln_network_add_cast(net, x, KILN_FLOAT64);
    kiln_layer *c2 = kiln_network_add_cast(net, kiln_layer_output(c1, 0), KILN_FLOAT32);
    CHECK_OK(kiln_tensor_set_name(kiln_layer_output(c2, 0), "y"));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(c2, 0)));
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    thread_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].e = e;
        th_fill(jobs[i].in, 64, -10, 10);
        pthread_create(&th[i], NULL, thread_main, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].st == KILN_OK, "thread %d: %s", i, kiln_status_string(jobs[i].st));
        CHECK(memcmp(jobs[i].in, jobs[i].out, sizeof jobs[i].in) == 0, "thread %d result", i);
    }
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

typedef struct progress_log {
    int calls, kernels_done, kernels_total, phases_seen;
    char last_phase[32];
} progress_log;

static void on_progress(void *user, const char *phase, int done, int total) {
    progress_log *p = user;
    p->calls++;
    if (strcmp(p->last_phase, phase) != 0) p->phases_seen++;
    snprintf(p->last_phase, sizeof p->last_phase, "%s", phase);
    if (!strcmp(phase, "kernels")) {
        p->kernels_done = done;
        p->kernels_total = total;
    }
}

/* progress callback, fingerprint, flags, layer info */
static void test_introspection(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, D(2, 4, 4, 0, 0));
    kiln_layer *c = kiln_network_add_cast(net, x, KILN_FLOAT64);
    kiln_layer *c2 = kiln_network_add_cast(net, kiln_layer_output(c, 0), KILN_FLOAT32);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(c2, 0)));
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    progress_log pl = {0};
    CHECK_OK(kiln_config_set_progress(cfg, on_progress, &pl));
    CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_REFIT, 1));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    CHECK(pl.phases_seen == 4 && !strcmp(pl.last_phase, "kernels") && pl.kernels_done == pl.kernels_total &&
              pl.kernels_total == 2,
          "progress: %d phases, last %s %d/%d", pl.phases_seen, pl.last_phase, pl.kernels_done, pl.kernels_total);
    CHECK(e && !strcmp(kiln_engine_fingerprint(e), "device=cpu;"), "fingerprint '%s'", e ? kiln_engine_fingerprint(e) : "");
    CHECK(e && (kiln_engine_flags(e) >> KILN_FLAG_REFIT & 1u), "flags kept");
    kiln_layer_info li;
    CHECK_OK(kiln_engine_layer_info(e, 1, &li));
    CHECK(!strcmp(li.type, "Cast") && li.output_bytes == 64 && li.weight_bytes == 0 && li.precision == KILN_FLOAT32,
          "layer info: %s %zu", li.type, li.output_bytes);
    CHECK(kiln_engine_layer_info(e, 2, &li) == KILN_ERR_INVALID_ARGUMENT, "index out of range");
    kiln_context *ctx;
    CHECK_OK(kiln_context_create(e, &ctx));
    CHECK_OK(kiln_context_synchronize(ctx));
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

/* kiln_host_alloc: aligned, writable memory on the CPU; pinned buffers a CUDA context copies
 * from and to (on the GPU machine); clear errors for bad requests or no GPU. */
static void test_host_memory(void) {
    void *p = NULL;
    CHECK_OK(kiln_host_alloc(KILN_DEVICE_CPU, 1000, &p));
    CHECK(p && (uintptr_t)p % 64 == 0, "host alloc: 64-byte aligned (%p)", p);
    if (p) memset(p, 0x5a, 1000);
    kiln_host_free(p);
    kiln_host_free(NULL);
    p = (void *)1;
    CHECK(kiln_host_alloc(KILN_DEVICE_CPU, 0, &p) == KILN_ERR_INVALID_ARGUMENT && !p, "host alloc: 0 bytes refused");
    CHECK(kiln_host_alloc(KILN_DEVICE_CPU, 8, NULL) == KILN_ERR_INVALID_ARGUMENT, "host alloc: NULL out refused");
    CHECK(kiln_host_alloc((kiln_device)7, 8, &p) == KILN_ERR_INVALID_ARGUMENT, "host alloc: unknown device");
    CHECK(kiln_host_alloc(KILN_DEVICE_CPU, SIZE_MAX - 8, &p) == KILN_ERR_OUT_OF_MEMORY && !p, "host alloc: SIZE_MAX");
    if (th_test_device() != KILN_DEVICE_CUDA) {
        /* a machine without a GPU (or a build without CUDA) says so instead of failing later */
        kiln_status st = kiln_host_alloc(KILN_DEVICE_CUDA, 64, &p);
        if (st == KILN_OK) kiln_host_free(p); /* a GPU is there after all: pinned memory works */
        else
            CHECK((st == KILN_ERR_DEVICE || st == KILN_ERR_UNSUPPORTED) && strstr(kiln_last_error(), "CUDA"),
                  "host alloc without a GPU: status %d, '%s'", (int)st, kiln_last_error());
        return;
    }
    /* on the GPU: pinned input and output of a CUDA context with host I/O */
    enum { N = 4096 };
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){4, N / 4}));
    kiln_layer *a = kiln_network_add_activation(net, x, KILN_ACT_RELU, 0, 0);
    CHECK(a != NULL, "relu: %s", kiln_last_error());
    if (a) kiln_tensor_set_name(kiln_layer_output(a, 0), "y");
    if (a) CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(a, 0)));
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, KILN_DEVICE_CUDA));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    float *in = NULL, *out = NULL;
    CHECK_OK(kiln_host_alloc(KILN_DEVICE_CUDA, N * sizeof(float), (void **)&in));
    CHECK_OK(kiln_host_alloc(KILN_DEVICE_CUDA, N * sizeof(float), (void **)&out));
    kiln_context *ctx = NULL;
    if (e && in && out) {
        for (int i = 0; i < N; i++) in[i] = (float)(i % 7) - 3.0f;
        CHECK_OK(kiln_context_create(e, &ctx));
        if (ctx) {
            CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
            CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
            CHECK_OK(kiln_context_set_tensor_address(ctx, "y", out));
            for (int run = 0; run < 3; run++) {
                memset(out, 0xff, N * sizeof(float));
                CHECK_OK(kiln_context_execute(ctx));
                int bad = 0;
                for (int i = 0; i < N; i++) bad += out[i] != (in[i] > 0 ? in[i] : 0.0f);
                CHECK(bad == 0, "pinned I/O run %d: %d wrong values", run, bad);
            }
        }
    }
    kiln_context_destroy(ctx);
    kiln_host_free(in);
    kiln_host_free(out);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

/* A tensor larger than the machine's memory (a Resize to a billion channels, as a corrupt
 * model can ask) fails the build naming it, before any kernel sizes tables by it. */
static void test_oversized_tensor(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, 2, 3, 3}));
    kiln_resize_desc rd = {.mode = KILN_RESIZE_NEAREST, .coord = KILN_COORD_ASYMMETRIC, .nb_scales = 4,
                           .scales = {1, 5e8f, 1000, 1000}}; /* 32 PiB: beyond any machine */
    kiln_layer *r = kiln_network_add_resize(net, x, &rd);
    CHECK(r != NULL, "resize: %s", kiln_last_error());
    if (r) {
        kiln_tensor_set_name(kiln_layer_output(r, 0), "huge");
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(r, 0)));
    }
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    kiln_engine *e = NULL;
    kiln_status st = r ? kiln_builder_build(b, net, cfg, &e) : KILN_OK;
    CHECK(st == KILN_ERR_OUT_OF_MEMORY && !e && strstr(kiln_last_error(), "'huge'") && strstr(kiln_last_error(), "GiB"),
          "oversized tensor: status %d, '%s'", (int)st, kiln_last_error());
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

/* Regressions found by fuzz_build (import, build, run): each must give an error or run. */
static void test_fuzz_build_regressions(void) {
    kiln_builder *b = th_builder();
    /* a reshape target whose element count overflows int64: a shape error, not UB */
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){2, 3}));
    kiln_layer *r = kiln_network_add_reshape(net, x, kiln_dims_make(3, (int64_t[]){3, 7450448019972947967LL, 5}), 0);
    CHECK(!r && strstr(kiln_last_error(), "more elements than can be counted"), "reshape overflow: '%s'", kiln_last_error());
    kiln_network_destroy(net);
    /* a slice whose 1-element axis has a huge step (times the stride it overflowed) */
    CHECK_OK(kiln_network_create(b, &net));
    x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){3, 4}));
    kiln_layer *sl = kiln_network_add_slice(net, x, 2, (int64_t[]){1, 1}, (int64_t[]){3, 4}, (int64_t[]){0, 1},
                                            (int64_t[]){INT64_MAX / 2, 2});
    CHECK(sl != NULL, "slice with a huge step: %s", kiln_last_error());
    float in[12];
    for (int i = 0; i < 12; i++) in[i] = (float)i;
    if (sl) {
        kiln_dims od;
        void *o = NULL;
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(sl, 0)));
        CHECK_OK(th_run(b, net, (void *const[]){in}, &o, &od));
        const float *out = o;
        CHECK(out && od.nb_dims == 2 && od.d[0] == 1 && od.d[1] == 2 && out[0] == 5.0f && out[1] == 7.0f,
              "slice with a huge step: [%g %g]", out ? out[0] : -1.0f, out ? out[1] : -1.0f);
        free(o);
    }
    kiln_network_destroy(net);
    /* a resize to an empty output whose other axis is huge: no tables, nothing to run */
    CHECK_OK(kiln_network_create(b, &net));
    x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){2, 3}));
    kiln_resize_desc rd = {.mode = KILN_RESIZE_NEAREST, .coord = KILN_COORD_ASYMMETRIC,
                           .sizes = kiln_dims_make(2, (int64_t[]){0, 1970324836974597LL})};
    kiln_layer *rz = kiln_network_add_resize(net, x, &rd);
    CHECK(rz != NULL, "resize to an empty output: %s", kiln_last_error());
    if (rz) {
        kiln_dims od;
        void *o = NULL;
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(rz, 0)));
        CHECK_OK(th_run(b, net, (void *const[]){in}, &o, &od));
        free(o);
        CHECK(od.nb_dims == 2 && od.d[0] == 0, "resize to an empty output: %lld x %lld", (long long)od.d[0],
              (long long)od.d[1]);
    }
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

int main(void) {
    test_introspection();
    test_null_and_misuse();
    test_input_also_output();
    test_shuffles();
    test_cast_and_constant();
    test_dynamic_shapes_and_limits();
    test_failing_allocator();
    test_threads();
    test_host_memory();
    test_oversized_tensor();
    test_fuzz_build_regressions();
    return th_exit("test_api");
}
