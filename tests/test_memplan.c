/* kiln tests: the activation memory planner never overlaps buffers alive at the same
 * step, aligns offsets, and reuses memory (a chain needs about two buffers, not n); the
 * builder places concat inputs in the concat's output when that is exact. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "opt/memplan.h"

static void check_plan(const kmp_buffer *b, int n, const size_t *off, size_t total, size_t align) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (off[i] % align) bad++;
        if (off[i] + b[i].bytes > total) bad++;
        for (int j = i + 1; j < n; j++) {
            bool live = b[i].first <= b[j].last && b[j].first <= b[i].last;
            bool mem = off[i] < off[j] + b[j].bytes && off[j] < off[i] + b[i].bytes;
            if (live && mem && b[i].bytes && b[j].bytes) bad++;
        }
    }
    CHECK(bad == 0, "%d overlapping or misaligned buffers among %d", bad, n);
}

/* ---- concats whose inputs are written in place (builder.c: place_concat_inputs) ---- */

typedef struct concat_case {
    int64_t n, c, side; /* input [n, c, side, side] */
    bool read_after; /* a layer reads the first piece after the concat */
} concat_case;

/* y = sigmoid(concat(2x, relu(x))) (+ z = tanh(2x) read after the concat when asked). Builds
 * it on the device under test, checks it against float64, returns the number of Concat
 * layers that run (0: made free), and checks a serialized copy runs the same. */
static int run_concat_case(concat_case cc) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    int64_t hw = cc.side * cc.side, vol = cc.n * cc.c * hw;
    kiln_tensor *x =
        kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){cc.n, cc.c, cc.side, cc.side}));
    float two = 2.0f;
    kiln_layer *a = kiln_network_add_scale(net, x, KILN_SCALE_UNIFORM, (kiln_weights){KILN_FLOAT32, NULL, 0},
                                           (kiln_weights){KILN_FLOAT32, &two, 1}, (kiln_weights){KILN_FLOAT32, NULL, 0});
    kiln_layer *r = kiln_network_add_activation(net, x, KILN_ACT_RELU, 0, 0);
    kiln_tensor *parts[2] = {a ? kiln_layer_output(a, 0) : NULL, r ? kiln_layer_output(r, 0) : NULL};
    kiln_layer *cat = parts[0] && parts[1] ? kiln_network_add_concat(net, parts, 2, 1) : NULL;
    kiln_layer *y = cat ? kiln_network_add_activation(net, kiln_layer_output(cat, 0), KILN_ACT_SIGMOID, 0, 0) : NULL;
    kiln_layer *z = cc.read_after && y ? kiln_network_add_activation(net, parts[0], KILN_ACT_TANH, 0, 0) : NULL;
    bool ok = y && (!cc.read_after || z) && kiln_tensor_set_name(kiln_layer_output(y, 0), "y") == KILN_OK &&
              kiln_network_mark_output(net, kiln_layer_output(y, 0)) == KILN_OK &&
              (!z || (kiln_tensor_set_name(kiln_layer_output(z, 0), "z") == KILN_OK &&
                      kiln_network_mark_output(net, kiln_layer_output(z, 0)) == KILN_OK));
    CHECK(ok, "concat case network: %s", kiln_last_error());
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    kiln_engine *e = NULL;
    /* the planner's concat placement: the fusion pass would make the whole network one layer */
    setenv("KILN_FUSE", "off", 1);
    if (ok) CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    unsetenv("KILN_FUSE");
    int concats = -1;
    float *in = th_rand_array(vol, -2, 2), *out = malloc((size_t)vol * 2 * sizeof *out),
          *out2 = malloc((size_t)vol * 2 * sizeof *out2), *zo = malloc((size_t)vol * sizeof *zo);
    double *ref = malloc((size_t)vol * 2 * sizeof *ref);
    for (int64_t i = 0; i < cc.n; i++)
        for (int64_t ch = 0; ch < 2 * cc.c; ch++)
            for (int64_t p = 0; p < hw; p++) {
                double v = in[(i * cc.c + ch % cc.c) * hw + p];
                v = ch < cc.c ? 2.0 * v : (v > 0 ? v : 0.0);
                ref[(i * 2 * cc.c + ch) * hw + p] = 1.0 / (1.0 + exp(-v));
            }
    if (e) {
        concats = 0;
        for (int i = 0; i < kiln_engine_num_layers(e); i++) {
            kiln_layer_info li;
            if (kiln_engine_layer_info(e, i, &li) == KILN_OK && !strcmp(li.type, "Concat")) concats++;
        }
        kiln_engine *e2 = th_reload(e, "concat in place");
        kiln_engine *es[2] = {e, e2};
        float *outs[2] = {out, out2};
        for (int k = 0; k < 2; k++) {
            kiln_context *ctx = NULL;
            if (es[k]) CHECK_OK(kiln_context_create(es[k], &ctx));
            if (!ctx) continue;
            if (th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
            memset(outs[k], 0xff, (size_t)vol * 2 * sizeof(float)); /* NaN: unwritten values show */
            CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
            CHECK_OK(kiln_context_set_tensor_address(ctx, "y", outs[k]));
            if (z) CHECK_OK(kiln_context_set_tensor_address(ctx, "z", zo));
            CHECK_OK(kiln_context_execute(ctx));
            kiln_context_destroy(ctx);
        }
        th_check_close("concat in place: y", out, ref, vol * 2, 1e-5);
        CHECK(e2 && !memcmp(out, out2, (size_t)vol * 2 * sizeof(float)), "concat in place: the loaded plan runs the same");
        if (z) {
            double *zr = malloc((size_t)vol * sizeof *zr);
            for (int64_t i = 0; i < vol; i++) zr[i] = tanh(2.0 * in[i]);
            th_check_close("concat in place: z reads the piece after the concat", zo, zr, vol, 1e-5);
            free(zr);
        }
        kiln_engine_destroy(e2);
    }
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(in), free(out), free(out2), free(zo), free(ref);
    return concats;
}

static void test_concat_in_place(void) {
    int n = run_concat_case((concat_case){1, 4, 4, false});
    CHECK(n == 0, "batch 1, 256-byte pieces: the concat runs nothing (%d concats run)", n);
    n = run_concat_case((concat_case){1, 3, 8, false});
    CHECK(n == 0, "batch 1, 768-byte pieces: the concat runs nothing (%d)", n);
    n = run_concat_case((concat_case){2, 4, 4, false});
    CHECK(n == 1, "batch 2: pieces interleave, the concat copies (%d)", n);
    n = run_concat_case((concat_case){1, 4, 4, true});
    CHECK(n == 1, "a piece read after the concat keeps its own buffer (%d)", n);
    n = run_concat_case((concat_case){1, 4, 3, false});
    CHECK(n == 1, "144-byte first piece: the second would be misaligned, the concat copies (%d)", n);
}

int main(void) {
    kiln_env env;
    kiln_env_default(&env);
    /* a chain: each buffer lives from its step to the next */
    enum { N = 50 };
    kmp_buffer chain[N];
    size_t off[400], total = 0;
    for (int i = 0; i < N; i++) {
        chain[i].bytes = 1000;
        chain[i].first = i;
        chain[i].last = i + 1;
    }
    CHECK_OK(kmp_plan(&env, chain, N, 64, off, &total));
    check_plan(chain, N, off, total, 64);
    CHECK(total <= 2 * 1024, "a chain needs two buffers, planned %zu bytes", total);

    /* random lifetimes and sizes */
    for (int round = 0; round < 50; round++) {
        kmp_buffer b[400];
        int n = 1 + (int)(th_rand_u64() % 400);
        size_t peak_lower = 0;
        for (int i = 0; i < n; i++) {
            b[i].first = (int)(th_rand_u64() % 100);
            b[i].last = b[i].first + (int)(th_rand_u64() % 20);
            b[i].bytes = th_rand_u64() % 7 == 0 ? 0 : 1 + th_rand_u64() % 100000;
        }
        for (int s = 0; s < 120; s++) {
            size_t live = 0;
            for (int i = 0; i < n; i++)
                if (b[i].first <= s && s <= b[i].last) live += b[i].bytes;
            if (live > peak_lower) peak_lower = live;
        }
        CHECK_OK(kmp_plan(&env, b, n, 64, off, &total));
        check_plan(b, n, off, total, 64);
        CHECK(total >= peak_lower, "arena %zu below the live peak %zu", total, peak_lower);
        CHECK(total <= 2 * peak_lower + 64 * (size_t)n, "arena %zu far above the live peak %zu", total, peak_lower);
    }
    CHECK_OK(kmp_plan(&env, NULL, 0, 64, off, &total));
    CHECK(total == 0, "empty plan");
    test_concat_in_place();
    return th_exit("test_memplan");
}
