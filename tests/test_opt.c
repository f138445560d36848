/* kiln tests: optimisation passes keep results and remove what they promise to:
 * batch norm / scale folded into the convolution before it. */
#include <math.h>
#include <string.h>

#include "graph/fused.h"
#include "graph/graph.h"
#include "harness.h"
#include "opt/passes.h"

/* float64 reference: conv (stride 1, pad p, groups 1) then per-channel scale/shift */
static void ref_conv_bn(const float *x, const float *w, const float *b, const double *sc, const double *sh, int n,
                        int cin, int hw, int cout, int k, int p, double *out) {
    int ho = hw + 2 * p - k + 1;
    for (int in = 0; in < n; in++)
        for (int co = 0; co < cout; co++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < ho; ox++) {
                    double acc = b ? b[co] : 0;
                    for (int ci = 0; ci < cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy + ky - p, ix = ox + kx - p;
                                if (iy < 0 || ix < 0 || iy >= hw || ix >= hw) continue;
                                acc += (double)x[((in * cin + ci) * hw + iy) * hw + ix] *
                                       w[((co * cin + ci) * k + ky) * k + kx];
                            }
                    out[((in * cout + co) * ho + oy) * ho + ox] = acc * sc[co] + sh[co];
                }
}

static void case_conv_bn(int with_bias, int uniform) {
    const int n = 2, cin = 3, hw = 9, cout = 5, k = 3, p = 1;
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){n, cin, hw, hw}));
    float *w = th_rand_array(cout * cin * k * k, -1, 1), *bias = th_rand_array(cout, -1, 1);
    float *g = th_rand_array(cout, 0.5f, 2), *be = th_rand_array(cout, -1, 1), *m = th_rand_array(cout, -1, 1),
          *v = th_rand_array(cout, 0.1f, 2);
    kiln_conv_desc d = {.out_channels = cout, .kernel = {k, k}, .pad_begin = {p, p}, .pad_end = {p, p}};
    kiln_layer *c = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, cout * cin * k * k},
                                                 (kiln_weights){KILN_FLOAT32, with_bias ? bias : NULL, with_bias ? cout : 0});
    kiln_layer *s;
    double sc[5], sh[5];
    if (uniform) {
        s = kiln_network_add_scale(net, kiln_layer_output(c, 0), KILN_SCALE_UNIFORM, (kiln_weights){KILN_FLOAT32, be, 1},
                                   (kiln_weights){KILN_FLOAT32, g, 1}, (kiln_weights){KILN_FLOAT32, NULL, 0});
        for (int i = 0; i < cout; i++) sc[i] = g[0], sh[i] = be[0];
    } else {
        s = kiln_network_add_batch_norm(net, kiln_layer_output(c, 0), (kiln_weights){KILN_FLOAT32, g, cout},
                                        (kiln_weights){KILN_FLOAT32, be, cout}, (kiln_weights){KILN_FLOAT32, m, cout},
                                        (kiln_weights){KILN_FLOAT32, v, cout}, 1e-5f);
        for (int i = 0; i < cout; i++) {
            sc[i] = g[i] / sqrt((double)v[i] + 1e-5);
            sh[i] = be[i] - m[i] * sc[i];
        }
    }
    CHECK(c && s, "layers: %s", kiln_last_error());
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(s, 0)));
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    CHECK(e && kiln_engine_num_layers(e) == 1, "scale folded: %d layers run", e ? kiln_engine_num_layers(e) : -1);
    float *in = th_rand_array(n * cin * hw * hw, -1, 1);
    int64_t nout = (int64_t)n * cout * hw * hw;
    float *out = malloc((size_t)nout * sizeof *out);
    double *ref = malloc((size_t)nout * sizeof *ref);
    memset(out, 0xFF, (size_t)nout * sizeof *out);
    kiln_context *ctx = NULL;
    CHECK_OK(kiln_context_create(e, &ctx));
    CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
    CHECK_OK(kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_layer_output(s, 0)), out));
    CHECK_OK(kiln_context_execute(ctx));
    ref_conv_bn(in, w, with_bias ? bias : NULL, sc, sh, n, cin, hw, cout, k, p, ref);
    th_check_close(uniform ? "conv+uniform scale" : with_bias ? "conv+bias+bn" : "conv+bn", out, ref, nout, 1e-5);
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(w), free(bias), free(g), free(be), free(m), free(v), free(in), free(out), free(ref);
}

/* the conv output is also a network output: nothing may be folded */
static void case_no_fold_when_shared(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, 2, 4, 4}));
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, two = 2;
    kiln_conv_desc d = {.out_channels = 4, .kernel = {1, 1}};
    kiln_layer *c = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, 8}, (kiln_weights){0});
    kiln_layer *s = kiln_network_add_scale(net, kiln_layer_output(c, 0), KILN_SCALE_UNIFORM, (kiln_weights){0},
                                           (kiln_weights){KILN_FLOAT32, &two, 1}, (kiln_weights){0});
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(c, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(s, 0)));
    float in[32];
    th_fill(in, 32, -1, 1);
    void *o[2];
    CHECK_OK(th_run(b, net, (void *[]){in}, o, NULL));
    if (o[0] && o[1]) {
        int ok = 1;
        for (int i = 0; i < 64; i++) ok &= ((float *)o[1])[i] == 2 * ((float *)o[0])[i];
        CHECK(ok, "both the convolution and the scaled output are right");
    }
    free(o[0]);
    free(o[1]);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

/* conv -> SiLU -> add(residual) (YOLOv5's bottleneck) becomes one layer, the residual added
 * after the activation, with the same result on every CPU convolution path: 1x1 (packed
 * GEMM), 3x3 (Winograd or packed), depthwise (direct, then the epilogue). `shared`: the
 * activation's output is read twice, so nothing may be fused into the convolution's add. */
static void case_residual_after_act(int k, int groups, int shared) {
    const int n = 2, c = 8, hw = 7, p = k / 2, cg = c / groups;
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){n, c, hw, hw}));
    kiln_tensor *r = kiln_network_add_input(net, "r", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){n, c, hw, hw}));
    int64_t nw = (int64_t)c * cg * k * k;
    float *w = th_rand_array(nw, -1, 1), *bias = th_rand_array(c, -1, 1);
    kiln_conv_desc d = {.out_channels = c, .kernel = {k, k}, .pad_begin = {p, p}, .pad_end = {p, p}, .groups = groups};
    kiln_layer *cv = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, nw},
                                                  (kiln_weights){KILN_FLOAT32, bias, c});
    kiln_layer *act = kiln_network_add_activation(net, kiln_layer_output(cv, 0), KILN_ACT_SILU, 0, 0);
    kiln_layer *add = kiln_network_add_elementwise(net, kiln_layer_output(act, 0), r, KILN_ELT_ADD);
    CHECK(cv && act && add, "layers: %s", kiln_last_error());
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(add, 0)));
    if (shared) CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(act, 0)));
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    int want = shared ? 2 : 1;
    CHECK(e && kiln_engine_num_layers(e) == want, "k%d g%d shared %d: %d layers run, want %d", k, groups, shared,
          e ? kiln_engine_num_layers(e) : -1, want);
    kiln_layer_info li;
    if (e && kiln_engine_layer_info(e, 0, &li) == KILN_OK)
        CHECK(!strcmp(li.type, "Convolution") && !strcmp(li.fused, shared ? "SiLU" : "SiLU+Add") &&
                  li.nb_inputs == (shared ? 1 : 2),
              "fused layer %s '%s' %d inputs", li.type, li.fused, li.nb_inputs);
    int64_t vol = (int64_t)n * c * hw * hw;
    float *in = th_rand_array(vol, -2, 2), *res = th_rand_array(vol, -1, 1), *out = malloc((size_t)vol * sizeof *out);
    float *mid = malloc((size_t)vol * sizeof *mid);
    double *ref = malloc((size_t)vol * sizeof *ref), *refmid = malloc((size_t)vol * sizeof *refmid);
    memset(out, 0xFF, (size_t)vol * sizeof *out);
    kiln_context *ctx;
    CHECK_OK(kiln_context_create(e, &ctx));
    CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
    CHECK_OK(kiln_context_set_tensor_address(ctx, "r", res));
    CHECK_OK(kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_layer_output(add, 0)), out));
    if (shared) CHECK_OK(kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_layer_output(act, 0)), mid));
    CHECK_OK(kiln_context_execute(ctx));
    for (int in_ = 0; in_ < n; in_++)
        for (int co = 0; co < c; co++)
            for (int oy = 0; oy < hw; oy++)
                for (int ox = 0; ox < hw; ox++) {
                    double acc = bias[co];
                    int g0 = co / (c / groups) * cg;
                    for (int ci = 0; ci < cg; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy + ky - p, ix = ox + kx - p;
                                if (iy < 0 || ix < 0 || iy >= hw || ix >= hw) continue;
                                acc += (double)in[((in_ * c + g0 + ci) * hw + iy) * hw + ix] *
                                       w[((co * cg + ci) * k + ky) * k + kx];
                            }
                    int64_t at = ((int64_t)(in_ * c + co) * hw + oy) * hw + ox;
                    refmid[at] = acc / (1.0 + exp(-acc));
                    ref[at] = refmid[at] + res[at];
                }
    th_check_close("conv+SiLU+residual", out, ref, vol, 1e-5);
    if (shared) th_check_close("conv+SiLU (also an output)", mid, refmid, vol, 1e-5);
    if (!shared && e) { /* the plan keeps where the residual goes (layer flag 16) */
        kiln_engine *re = th_reload(e, "conv+SiLU+residual");
        kiln_context *rc = NULL;
        float *again = malloc((size_t)vol * sizeof *again);
        if (re && kiln_engine_layer_info(re, 0, &li) == KILN_OK)
            CHECK(!strcmp(li.fused, "SiLU+Add") && li.nb_inputs == 2, "reloaded: '%s', %d inputs", li.fused, li.nb_inputs);
        if (re && kiln_context_create(re, &rc) == KILN_OK) {
            CHECK_OK(kiln_context_set_tensor_address(rc, "x", in));
            CHECK_OK(kiln_context_set_tensor_address(rc, "r", res));
            CHECK_OK(kiln_context_set_tensor_address(rc, kiln_tensor_name(kiln_layer_output(add, 0)), again));
            CHECK_OK(kiln_context_execute(rc));
            CHECK(!memcmp(again, out, (size_t)vol * sizeof *out), "reloaded plan: the same outputs");
        }
        kiln_context_destroy(rc);
        kiln_engine_destroy(re);
        free(again);
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(w), free(bias), free(in), free(res), free(out), free(mid), free(ref), free(refmid);
}

/* conv -> add(residual) -> relu becomes one layer on the CPU, with the same result */
static void case_residual(void) {
    const int n = 1, c = 4, hw = 6;
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){n, c, hw, hw}));
    kiln_tensor *r = kiln_network_add_input(net, "r", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){n, c, hw, hw}));
    float *w = th_rand_array(c * c, -1, 1), *bias = th_rand_array(c, -1, 1);
    kiln_conv_desc d = {.out_channels = c, .kernel = {1, 1}};
    kiln_layer *cv = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, c * c},
                                                  (kiln_weights){KILN_FLOAT32, bias, c});
    kiln_layer *add = kiln_network_add_elementwise(net, r, kiln_layer_output(cv, 0), KILN_ELT_ADD);
    kiln_layer *relu = kiln_network_add_activation(net, kiln_layer_output(add, 0), KILN_ACT_RELU, 0, 0);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(relu, 0)));
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    CHECK(e && kiln_engine_num_layers(e) == 1, "conv+add+relu fused: %d layers", e ? kiln_engine_num_layers(e) : -1);
    kiln_layer_info li;
    if (e && kiln_engine_layer_info(e, 0, &li) == KILN_OK)
        CHECK(!strcmp(li.type, "Convolution") && !strcmp(li.fused, "Relu") && li.nb_inputs == 2, "fused layer %s %s %d",
              li.type, li.fused, li.nb_inputs);
    int64_t vol = n * c * hw * hw;
    float *in = th_rand_array(vol, -1, 1), *res = th_rand_array(vol, -1, 1), *out = malloc((size_t)vol * sizeof *out);
    double *ref = malloc((size_t)vol * sizeof *ref);
    kiln_context *ctx;
    CHECK_OK(kiln_context_create(e, &ctx));
    CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
    CHECK_OK(kiln_context_set_tensor_address(ctx, "r", res));
    CHECK_OK(kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_layer_output(relu, 0)), out));
    CHECK_OK(kiln_context_execute(ctx));
    for (int co = 0; co < c; co++)
        for (int p = 0; p < hw * hw; p++) {
            double acc = bias[co];
            for (int ci = 0; ci < c; ci++) acc += (double)w[co * c + ci] * in[ci * hw * hw + p];
            acc += res[co * hw * hw + p];
            ref[co * hw * hw + p] = acc > 0 ? acc : 0;
        }
    th_check_close("conv+residual+relu", out, ref, vol, 1e-5);
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(w), free(bias), free(in), free(res), free(out), free(ref);
}

/* conv -> sigmoid, mul(conv, sigmoid) becomes one convolution with a fused SiLU (both
 * operand orders); a sigmoid with another reader, or a mul by something else, stays. */
static void case_silu(int order, int shared) {
    const int c = 4, hw = 5;
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){2, c, hw, hw}));
    float *w = th_rand_array(c * c * 9, -1, 1), *bias = th_rand_array(c, -1, 1);
    kiln_conv_desc d = {.out_channels = c, .kernel = {3, 3}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *cv = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, c * c * 9},
                                                  (kiln_weights){KILN_FLOAT32, bias, c});
    kiln_tensor *y = kiln_layer_output(cv, 0);
    kiln_layer *sig = kiln_network_add_activation(net, y, KILN_ACT_SIGMOID, 0, 0);
    kiln_tensor *s = kiln_layer_output(sig, 0);
    kiln_layer *mul = kiln_network_add_elementwise(net, order ? s : y, order ? y : s, KILN_ELT_MUL);
    kiln_tensor_set_name(kiln_layer_output(mul, 0), "out");
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(mul, 0)));
    if (shared) {
        kiln_tensor_set_name(s, "sig");
        CHECK_OK(kiln_network_mark_output(net, s));
    }
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    bool fused = false;
    int convs = 0;
    for (int i = 0; e && i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) != KILN_OK || strcmp(li.type, "Convolution") != 0) continue;
        convs++;
        fused = strcmp(li.fused, "SiLU") == 0;
    }
    CHECK(convs == 1 && fused == !shared, "silu order %d shared %d: convolution fused '%s'", order, shared,
          fused ? "SiLU" : "-");
    int64_t vol = 2 * c * hw * hw;
    float *in = th_rand_array(vol, -2, 2), *out = malloc((size_t)vol * sizeof *out), *so = malloc((size_t)vol * sizeof *so);
    double *ref = malloc((size_t)vol * sizeof *ref);
    kiln_context *ctx = NULL;
    if (e) CHECK_OK(kiln_context_create(e, &ctx));
    if (ctx && th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
    if (ctx) {
        CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "out", out));
        if (shared) CHECK_OK(kiln_context_set_tensor_address(ctx, "sig", so));
        CHECK_OK(kiln_context_execute(ctx));
    }
    for (int n = 0; n < 2; n++)
        for (int co = 0; co < c; co++)
            for (int i = 0; i < hw; i++)
                for (int j = 0; j < hw; j++) {
                    double acc = bias[co];
                    for (int ci = 0; ci < c; ci++)
                        for (int a = 0; a < 3; a++)
                            for (int bb = 0; bb < 3; bb++) {
                                int ii = i + a - 1, jj = j + bb - 1;
                                if (ii < 0 || jj < 0 || ii >= hw || jj >= hw) continue;
                                acc += (double)w[((co * c + ci) * 3 + a) * 3 + bb] * in[((n * c + ci) * hw + ii) * hw + jj];
                            }
                    ref[((n * c + co) * hw + i) * hw + j] = acc / (1.0 + exp(-acc));
                }
    th_check_close("conv + x*sigmoid(x)", out, ref, vol, 1e-5);
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(w), free(bias), free(in), free(out), free(so), free(ref);
}

/* Element-wise ops with constants (per channel, one value, a [C,1,1] constant on the left)
 * become one merged scale, and a per-channel Mul after a convolution folds into it; ops
 * that are not affine in x, or whose constant varies over space, stay element-wise. */
static kiln_tensor *out0(kiln_layer *l) { return l ? kiln_layer_output(l, 0) : NULL; }

static kiln_tensor *constant(kiln_network *net, int nb, const int64_t *dims, float *v) {
    kiln_dims d = kiln_dims_make(nb, dims);
    kiln_layer *l = kiln_network_add_constant(net, d, (kiln_weights){KILN_FLOAT32, v, kiln_dims_volume(&d)});
    return l ? kiln_layer_output(l, 0) : NULL;
}

static int count_type(const kiln_engine *e, const char *type) {
    int n = 0;
    for (int i = 0; e && i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) == KILN_OK && !strcmp(li.type, type)) n++;
    }
    return n;
}

static void case_elementwise_scales(void) {
    enum { N = 2, C = 3, HW = 4, VOL = N * C * HW * HW };
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){N, C, HW, HW}));
    float *c1 = th_rand_array(C, -1, 1), *c2 = th_rand_array(1, 0.5f, 2), *c3 = th_rand_array(C, -1, 1),
          *c4 = th_rand_array(1, -2, -0.5f), *c5 = th_rand_array(C, 0.5f, 2), *c6 = th_rand_array(HW * HW, -1, 1),
          *w = th_rand_array(C * C, -1, 1), *c7 = th_rand_array(C, 0.5f, 2);
    /* a: ((x - c1) / c2), then c3 - a, then * c4: one scale */
    kiln_tensor *t = out0(kiln_network_add_elementwise(net, x, constant(net, 4, (int64_t[]){1, C, 1, 1}, c1), KILN_ELT_SUB));
    t = t ? out0(kiln_network_add_elementwise(net, t, constant(net, 0, NULL, c2), KILN_ELT_DIV)) : NULL;
    t = t ? out0(kiln_network_add_elementwise(net, constant(net, 3, (int64_t[]){C, 1, 1}, c3), t, KILN_ELT_SUB)) : NULL;
    kiln_tensor *a = t ? out0(kiln_network_add_elementwise(net, t, constant(net, 1, (int64_t[]){1}, c4), KILN_ELT_MUL)) : NULL;
    /* b: c5 / a (not affine) and a + c6 (varies over space) stay element-wise */
    kiln_tensor *bq = a ? out0(kiln_network_add_elementwise(net, constant(net, 4, (int64_t[]){1, C, 1, 1}, c5), a, KILN_ELT_DIV))
                        : NULL;
    kiln_tensor *bs = bq ? out0(kiln_network_add_elementwise(net, bq, constant(net, 2, (int64_t[]){HW, HW}, c6), KILN_ELT_ADD))
                         : NULL;
    /* c: 1x1 convolution of a, then * c7 per channel: folded into the convolution */
    kiln_conv_desc d = {.out_channels = C, .kernel = {1, 1}};
    kiln_tensor *cv = a ? out0(kiln_network_add_convolution(net, a, &d, (kiln_weights){KILN_FLOAT32, w, C * C},
                                                            (kiln_weights){KILN_FLOAT32, NULL, 0}))
                        : NULL;
    kiln_tensor *cc = cv ? out0(kiln_network_add_elementwise(net, cv, constant(net, 4, (int64_t[]){1, C, 1, 1}, c7), KILN_ELT_MUL))
                         : NULL;
    bool ok = bs && cc && kiln_tensor_set_name(bs, "b") == KILN_OK && kiln_tensor_set_name(cc, "c") == KILN_OK &&
              kiln_network_mark_output(net, bs) == KILN_OK && kiln_network_mark_output(net, cc) == KILN_OK;
    CHECK(ok, "element-wise scales network: %s", kiln_last_error());
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    kiln_engine *e = NULL;
    setenv("KILN_FUSE", "off", 1); /* the scale passes' own result, before fusion */
    if (ok) CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    unsetenv("KILN_FUSE");
    CHECK(count_type(e, "Scale") == 1 && count_type(e, "Elementwise") == 2 && count_type(e, "Convolution") == 1,
          "element-wise scales: %d scale (want 1), %d element-wise (want 2), %d convolutions (want 1)",
          count_type(e, "Scale"), count_type(e, "Elementwise"), count_type(e, "Convolution"));
    float *in = th_rand_array(VOL, -2, 2), *ob = malloc(VOL * sizeof *ob), *oc = malloc(VOL * sizeof *oc);
    double *rb = malloc(VOL * sizeof *rb), *rc = malloc(VOL * sizeof *rc), ra[VOL];
    kiln_context *ctx = NULL;
    if (e) CHECK_OK(kiln_context_create(e, &ctx));
    if (ctx && th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
    if (ctx) {
        CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "b", ob));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "c", oc));
        CHECK_OK(kiln_context_execute(ctx));
    }
    for (int i = 0; i < VOL; i++) {
        int ch = i / (HW * HW) % C;
        ra[i] = ((double)c3[ch] - ((double)in[i] - c1[ch]) / c2[0]) * c4[0];
        rb[i] = c5[ch] / ra[i] + c6[i % (HW * HW)];
    }
    for (int i = 0; i < VOL; i++) {
        int n = i / (C * HW * HW), co = i / (HW * HW) % C, p = i % (HW * HW);
        double acc = 0;
        for (int ci = 0; ci < C; ci++) acc += (double)w[co * C + ci] * ra[(n * C + ci) * HW * HW + p];
        rc[i] = acc * c7[co];
    }
    if (ctx) {
        th_check_close("element-wise scales: c5 / a + c6", ob, rb, VOL, 1e-4);
        th_check_close("element-wise scales: conv(a) * c7", oc, rc, VOL, 1e-5);
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(c1), free(c2), free(c3), free(c4), free(c5), free(c6), free(c7), free(w), free(in), free(ob), free(oc), free(rb),
        free(rc);
}

/* YOLOv5's box decode: (x * 2) ^ 2, then + c per channel: the Pow becomes the scale's power
 * and merges into the Mul's scale (one layer); the add after it is a scale of its own (a
 * powered scale ends a chain); 2 ^ x (not a power of x) stays element-wise. */
static void case_pow_scales(void) {
    enum { N = 2, C = 3, HW = 4, VOL = N * C * HW * HW };
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){N, C, HW, HW}));
    float two = 2.0f, two2 = 2.0f, two3 = 2.0f, *c = th_rand_array(C, -1, 1);
    kiln_tensor *t = out0(kiln_network_add_elementwise(net, x, constant(net, 0, NULL, &two), KILN_ELT_MUL));
    t = t ? out0(kiln_network_add_elementwise(net, t, constant(net, 0, NULL, &two2), KILN_ELT_POW)) : NULL;
    kiln_tensor *y = t ? out0(kiln_network_add_elementwise(net, t, constant(net, 4, (int64_t[]){1, C, 1, 1}, c), KILN_ELT_ADD))
                       : NULL;
    kiln_tensor *z = out0(kiln_network_add_elementwise(net, constant(net, 0, NULL, &two3), x, KILN_ELT_POW));
    bool ok = y && z && kiln_tensor_set_name(y, "y") == KILN_OK && kiln_tensor_set_name(z, "z") == KILN_OK &&
              kiln_network_mark_output(net, y) == KILN_OK && kiln_network_mark_output(net, z) == KILN_OK;
    CHECK(ok, "pow network: %s", kiln_last_error());
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    kiln_engine *e = NULL;
    if (ok) CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    CHECK(count_type(e, "Scale") == 2 && count_type(e, "Elementwise") == 1,
          "pow scales: %d scales (want 2), %d element-wise (want 1)", count_type(e, "Scale"), count_type(e, "Elementwise"));
    float *in = th_rand_array(VOL, -2, 2), *oy = malloc(VOL * sizeof *oy), *oz = malloc(VOL * sizeof *oz);
    double *ry = malloc(VOL * sizeof *ry), *rz = malloc(VOL * sizeof *rz);
    kiln_context *ctx = NULL;
    if (e) CHECK_OK(kiln_context_create(e, &ctx));
    if (ctx && th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
    if (ctx) {
        CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "y", oy));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "z", oz));
        CHECK_OK(kiln_context_execute(ctx));
        for (int i = 0; i < VOL; i++) {
            ry[i] = 4.0 * in[i] * in[i] + c[i / (HW * HW) % C];
            rz[i] = pow(2.0, in[i]);
        }
        th_check_close("pow scales: (2x)^2 + c", oy, ry, VOL, 1e-5);
        th_check_close("pow scales: 2^x", oz, rz, VOL, 1e-5);
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(c), free(in), free(oy), free(oz), free(ry), free(rz);
}

/* YOLOv5's head: a 1x1 convolution, a reshape splitting its channels, a transpose moving
 * them last, then a sigmoid: the sigmoid moves into the convolution. `shared`: the
 * transpose's output is a network output too, so it must keep the values before the
 * sigmoid and nothing moves. */
static void case_hoist_activation(int shared) {
    enum { N = 2, A = 3, P = 2, C = A * P, H = 3, W = 4, CI = 5, VOL = N * C * H * W };
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){N, CI, H, W}));
    float *w = th_rand_array(C * CI, -1, 1), *bias = th_rand_array(C, -1, 1);
    kiln_conv_desc d = {.out_channels = C, .kernel = {1, 1}, .groups = 1};
    kiln_layer *cv = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, C * CI},
                                                  (kiln_weights){KILN_FLOAT32, bias, C});
    kiln_dims five = kiln_dims_make(5, (int64_t[]){N, A, P, H, W});
    kiln_layer *rs = cv ? kiln_network_add_reshape(net, kiln_layer_output(cv, 0), five, 0) : NULL;
    kiln_layer *tr = rs ? kiln_network_add_transpose(net, kiln_layer_output(rs, 0), 5, (int64_t[]){0, 1, 3, 4, 2}) : NULL;
    kiln_layer *sg = tr ? kiln_network_add_activation(net, kiln_layer_output(tr, 0), KILN_ACT_SIGMOID, 0, 0) : NULL;
    CHECK(sg, "hoist network: %s", kiln_last_error());
    if (!sg) {
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
        free(w), free(bias);
        return;
    }
    kiln_tensor *y = kiln_layer_output(sg, 0), *t = kiln_layer_output(tr, 0);
    CHECK_OK(kiln_tensor_set_name(y, "y"));
    CHECK_OK(kiln_network_mark_output(net, y));
    if (shared) {
        CHECK_OK(kiln_tensor_set_name(t, "t"));
        CHECK_OK(kiln_network_mark_output(net, t));
    }
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    kiln_engine *e = NULL;
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    CHECK(count_type(e, "Activation") == (shared ? 1 : 0), "hoist shared %d: %d activations left", shared,
          count_type(e, "Activation"));
    for (int i = 0; e && i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) == KILN_OK && !strcmp(li.type, "Convolution"))
            CHECK(!strcmp(li.fused, shared ? "" : "Sigmoid"),
                  "hoist shared %d: the convolution fuses '%s'", shared, li.fused);
    }
    float *in = th_rand_array(N * CI * H * W, -2, 2), *oy = malloc(VOL * sizeof *oy), *ot = malloc(VOL * sizeof *ot);
    double *ry = malloc(VOL * sizeof *ry), *rt = malloc(VOL * sizeof *rt);
    kiln_context *ctx = NULL;
    if (e) CHECK_OK(kiln_context_create(e, &ctx));
    if (ctx && th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
    if (ctx) {
        CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "y", oy));
        if (shared) CHECK_OK(kiln_context_set_tensor_address(ctx, "t", ot));
        CHECK_OK(kiln_context_execute(ctx));
        /* y[n, a, h, w, p] = sigmoid(conv[n, a * P + p, h, w]) */
        for (int n = 0; n < N; n++)
            for (int a = 0; a < A; a++)
                for (int h = 0; h < H; h++)
                    for (int ww = 0; ww < W; ww++)
                        for (int p = 0; p < P; p++) {
                            int co = a * P + p;
                            double acc = bias[co];
                            for (int ci = 0; ci < CI; ci++) acc += (double)w[co * CI + ci] * in[((n * CI + ci) * H + h) * W + ww];
                            int at = (((n * A + a) * H + h) * W + ww) * P + p;
                            rt[at] = acc;
                            ry[at] = 1.0 / (1.0 + exp(-acc));
                        }
        th_check_close("hoisted sigmoid", oy, ry, VOL, th_test_device() == KILN_DEVICE_CUDA ? 1e-4 : 1e-5);
        if (shared) th_check_close("transpose before the sigmoid", ot, rt, VOL, 1e-4);
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(w), free(bias), free(in), free(oy), free(ot), free(ry), free(rt);
}

/* A constant read by two element-wise layers stays a constant: both stay element-wise, and a
 * refit of it reaches both (a scale holding a copy would go stale). */
static void case_shared_constant(void) {
    enum { C = 3, HW = 4, VOL = C * HW * HW };
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, C, HW, HW}));
    float *c0 = th_rand_array(C, 0.5f, 2), *c1 = th_rand_array(C, -2, -0.5f);
    kiln_layer *cl = kiln_network_add_constant(net, kiln_dims_make(4, (int64_t[]){1, C, 1, 1}),
                                               (kiln_weights){KILN_FLOAT32, c0, C});
    if (cl) kiln_layer_set_name(cl, "c");
    kiln_tensor *c = out0(cl);
    kiln_tensor *m = c ? out0(kiln_network_add_elementwise(net, x, c, KILN_ELT_MUL)) : NULL;
    kiln_tensor *a = c ? out0(kiln_network_add_elementwise(net, x, c, KILN_ELT_ADD)) : NULL;
    bool ok = m && a && kiln_tensor_set_name(m, "m") == KILN_OK && kiln_tensor_set_name(a, "a") == KILN_OK &&
              kiln_network_mark_output(net, m) == KILN_OK && kiln_network_mark_output(net, a) == KILN_OK;
    CHECK(ok, "shared constant network: %s", kiln_last_error());
    kiln_config *cfg;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    kiln_engine *e = NULL;
    if (ok) CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    CHECK(count_type(e, "Scale") == 0 && count_type(e, "Elementwise") == 2,
          "shared constant: %d scales (want 0), %d element-wise (want 2)", count_type(e, "Scale"),
          count_type(e, "Elementwise"));
    if (e) CHECK_OK(kiln_engine_refit(e, "c", (kiln_weights){KILN_FLOAT32, c1, C}));
    float *in = th_rand_array(VOL, -2, 2), om[VOL], oa[VOL];
    double rm[VOL], ra[VOL];
    for (int i = 0; i < VOL; i++) {
        int ch = i / (HW * HW);
        rm[i] = (double)in[i] * c1[ch];
        ra[i] = (double)in[i] + c1[ch];
    }
    kiln_context *ctx = NULL;
    if (e) CHECK_OK(kiln_context_create(e, &ctx));
    if (ctx && th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
    if (ctx) {
        CHECK_OK(kiln_context_set_tensor_address(ctx, "x", in));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "m", om));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "a", oa));
        CHECK_OK(kiln_context_execute(ctx));
        th_check_close("shared constant refit: x * c", om, rm, VOL, 1e-6);
        th_check_close("shared constant refit: x + c", oa, ra, VOL, 1e-6);
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    free(c0), free(c1), free(in);
}

/* ---- fused regions (kopt_fuse_regions) ---- */

/* The program check a loaded plan gets (kf_decode through inference): a copy of x (2, 3)
 * transposed into y (3, 2), then the same words with one thing wrong each time. */
static void case_fused_decode(void) {
    kiln_env env;
    kiln_env_default(&env);
    kiln_graph g;
    kg_graph_init(&g, &env);
    kiln_tensor *x = kg_tensor_new(&g, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){2, 3}));
    kg_params p;
    memset(&p, 0, sizeof p);
    kiln_layer *l = x ? kg_layer_new(&g, KILN_LAYER_FUSED, &x, 1, 1, &p) : NULL;
    CHECK(l != NULL, "fused layer: %s", kiln_last_error());
    if (!l) {
        kg_graph_free(&g);
        return;
    }
    /* box (3, 2): y[i][j] = x[j][i] */
    const int64_t good[] = {KF_MAGIC, KILN_FLOAT32, 2, 3, 2, 1,     /* header, one piece */
                            2, 3, 2,                                /* ni, ext */
                            -1, 2, 1, 0, 0, 0, 1, 0,                /* out map: rows (1 0 | 0), (0 1 | 0) */
                            1, 0, 2, 0, 1, 0, 1, 0, 0,              /* one load of input 0: (0 1 | 0), (1 0 | 0) */
                            1, KF_LOAD, 0, 0, 0, 0};                /* program: load 0 */
    enum { NW = sizeof good / sizeof good[0] };
    struct {
        int at;
        int64_t v;
        const char *what;
    } bad[] = {{0, 0, "no header"},           {3, 4, "output dims"},        {5, 0, "no pieces"},
               {7, 4, "box past the output"}, {13, 1, "output map base"},   {18, 1, "load of a missing input"},
               {21, 2, "load map past x"},    {27, KF_BIN, "empty stack"},  {28, 1, "load index"},
               {6, 11, "iteration rank"},     {27, 9, "unknown instruction"},
               {9, 0xFFFFFFFFLL, "output map tensor of 32 set bits"},
               {10, (1LL << 32) + 2, "output map rank past 32 bits"}};
    int64_t *w = malloc(NW * sizeof *w);
    memcpy(w, good, sizeof good);
    l->aux = w;
    l->nb_aux = NW;
    CHECK_OK(kg_infer_layer(l));
    CHECK(l->outputs[0]->dims.nb_dims == 2 && l->outputs[0]->dims.d[0] == 3 && l->outputs[0]->dims.d[1] == 2,
          "fused program: output dims from the program");
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memcpy(w, good, sizeof good);
        w[bad[k].at] = bad[k].v;
        kiln_status st = kg_infer_layer(l);
        CHECK(st == KILN_ERR_INVALID_ARGUMENT && strstr(kiln_last_error(), "fused") != NULL,
              "fused program with %s refused (status %d: %s)", bad[k].what, (int)st, kiln_last_error());
    }
    l->nb_aux = NW - 1; /* truncated */
    memcpy(w, good, sizeof good);
    CHECK(kg_infer_layer(l) == KILN_ERR_INVALID_ARGUMENT, "truncated fused program refused");
    kg_graph_free(&g); /* frees w with the layer */
}

/* Builds net (float16 when fp16) on the device under test, runs it on host buffers and
 * returns the engine's layer count of `type` (-1 on failure). */
static int run_net(kiln_network *net, int nin, const char *const *in_names, float *const *ins, const char *out_name,
                   float *out, bool fp16, const char *type) {
    kiln_builder *b = th_builder();
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    kiln_context *ctx = NULL;
    int n = -1;
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    if (fp16) CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_FP16, 1));
    CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    if (e && kiln_context_create(e, &ctx) == KILN_OK) {
        if (th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST));
        for (int i = 0; i < nin; i++) CHECK_OK(kiln_context_set_tensor_address(ctx, in_names[i], ins[i]));
        CHECK_OK(kiln_context_set_tensor_address(ctx, out_name, out));
        CHECK_OK(kiln_context_execute(ctx));
        n = count_type(e, type);
        /* a fused layer's program survives the plan: the reloaded engine gives the same bits */
        kiln_engine *re = count_type(e, "Fused") ? th_reload(e, "fused region plan") : NULL;
        kiln_context *rc = NULL;
        if (re && kiln_context_create(re, &rc) == KILN_OK) {
            if (th_test_device() == KILN_DEVICE_CUDA) CHECK_OK(kiln_context_set_io_memory(rc, KILN_MEMORY_HOST));
            int64_t vol = 0;
            kiln_dims od;
            if (kiln_engine_io_dims(re, out_name, &od) == KILN_OK) vol = kiln_dims_volume(&od);
            float *again = malloc((size_t)(vol ? vol : 1) * sizeof *again);
            for (int i = 0; i < nin; i++) CHECK_OK(kiln_context_set_tensor_address(rc, in_names[i], ins[i]));
            CHECK_OK(kiln_context_set_tensor_address(rc, out_name, again));
            CHECK_OK(kiln_context_execute(rc));
            CHECK(vol > 0 && memcmp(again, out, (size_t)vol * sizeof *out) == 0, "fused region plan: reloaded engine differs");
            free(again);
        }
        kiln_context_destroy(rc);
        kiln_engine_destroy(re);
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_builder_destroy(b);
    return n;
}

/* YOLOv5's detection head, two levels: conv-like input (N, A*K, H, W) -> reshape (N, A, K,
 * H, W) -> transpose (N, A, H, W, K) -> sigmoid; xy = (y[..0:2] * 2 - 0.5 + grid) * stride,
 * wh = (y[..2:4] * 2)^2 * anchor (broadcast over H, W), conf = y[..4:K]; concat on the last
 * axis, reshape (N, A*H*W, K); the levels concatenated on axis 1. */
enum { FH_N = 2, FH_A = 3, FH_K = 7 };
static const int64_t fh_h[2] = {4, 2}, fh_w[2] = {6, 3};
/* scale weights are borrowed until the build: static storage */
static float fh_stride[2] = {8, 16}, fh_two = 2, fh_half = -0.5f;

static kiln_tensor *fh_level(kiln_network *net, kiln_tensor *x, int lv, float *grid, float *anchor) {
    int64_t H = fh_h[lv], W = fh_w[lv];
    kiln_weights none = {KILN_FLOAT32, NULL, 0};
    kiln_tensor *t = out0(kiln_network_add_reshape(net, x, kiln_dims_make(5, (int64_t[]){FH_N, FH_A, FH_K, H, W}), 0));
    t = t ? out0(kiln_network_add_transpose(net, t, 5, (int64_t[]){0, 1, 3, 4, 2})) : NULL;
    t = t ? out0(kiln_network_add_activation(net, t, KILN_ACT_SIGMOID, 0, 0)) : NULL;
    if (!t) return NULL;
    kiln_tensor *xy = out0(kiln_network_add_slice(net, t, 1, (int64_t[]){0}, (int64_t[]){2}, (int64_t[]){4}, NULL));
    xy = xy ? out0(kiln_network_add_scale(net, xy, KILN_SCALE_UNIFORM, (kiln_weights){KILN_FLOAT32, &fh_half, 1},
                                          (kiln_weights){KILN_FLOAT32, &fh_two, 1}, none))
            : NULL;
    kiln_tensor *g = constant(net, 5, (int64_t[]){1, FH_A, H, W, 2}, grid);
    xy = xy && g ? out0(kiln_network_add_elementwise(net, xy, g, KILN_ELT_ADD)) : NULL;
    xy = xy ? out0(kiln_network_add_scale(net, xy, KILN_SCALE_UNIFORM, none, (kiln_weights){KILN_FLOAT32, &fh_stride[lv], 1}, none))
            : NULL;
    kiln_tensor *wh = out0(kiln_network_add_slice(net, t, 1, (int64_t[]){2}, (int64_t[]){4}, (int64_t[]){4}, NULL));
    wh = wh ? out0(kiln_network_add_scale(net, wh, KILN_SCALE_UNIFORM, none, (kiln_weights){KILN_FLOAT32, &fh_two, 1},
                                          (kiln_weights){KILN_FLOAT32, &fh_two, 1}))
            : NULL;
    kiln_tensor *an = constant(net, 5, (int64_t[]){1, FH_A, 1, 1, 2}, anchor);
    wh = wh && an ? out0(kiln_network_add_elementwise(net, wh, an, KILN_ELT_MUL)) : NULL;
    kiln_tensor *cf = out0(kiln_network_add_slice(net, t, 1, (int64_t[]){4}, (int64_t[]){FH_K}, (int64_t[]){4}, NULL));
    if (!xy || !wh || !cf) return NULL;
    kiln_tensor *parts[3] = {xy, wh, cf};
    kiln_tensor *c = out0(kiln_network_add_concat(net, parts, 3, -1));
    return c ? out0(kiln_network_add_reshape(net, c, kiln_dims_make(3, (int64_t[]){FH_N, FH_A * H * W, FH_K}), 0)) : NULL;
}

static void case_fused_head(void) {
    float *xs[2], *grid[2], *anchor[2];
    int64_t vin[2], rows = 0;
    for (int lv = 0; lv < 2; lv++) {
        vin[lv] = FH_N * FH_A * FH_K * fh_h[lv] * fh_w[lv];
        xs[lv] = th_rand_array(vin[lv], -4, 4);
        grid[lv] = th_rand_array(FH_A * fh_h[lv] * fh_w[lv] * 2, 0, 8);
        anchor[lv] = th_rand_array(FH_A * 2, 1, 30);
        rows += FH_A * fh_h[lv] * fh_w[lv];
    }
    int64_t vout = FH_N * rows * FH_K;
    double *ref = malloc((size_t)vout * sizeof *ref);
    int64_t r0 = 0;
    for (int lv = 0; lv < 2; lv++) {
        int64_t H = fh_h[lv], W = fh_w[lv];
        for (int64_t n = 0; n < FH_N; n++)
            for (int64_t a = 0; a < FH_A; a++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++)
                        for (int64_t k = 0; k < FH_K; k++) {
                            double v = xs[lv][(((n * FH_A + a) * FH_K + k) * H + h) * W + w];
                            v = 1 / (1 + exp(-v));
                            if (k < 2) v = (v * 2 - 0.5 + grid[lv][((a * H + h) * W + w) * 2 + k]) * fh_stride[lv];
                            else if (k < 4) v = (v * 2) * (v * 2) * anchor[lv][a * 2 + k - 2];
                            ref[(n * rows + r0 + (a * H + h) * W + w) * FH_K + k] = v;
                        }
        r0 += FH_A * H * W;
    }
    const char *names[2] = {"x0", "x1"};
    for (int fp16 = 0; fp16 < 1 + (th_test_device() == KILN_DEVICE_CUDA); fp16++)
        for (int fuse = 0; fuse < 2; fuse++) {
            kiln_builder *b = th_builder();
            kiln_network *net;
            CHECK_OK(kiln_network_create(b, &net));
            kiln_tensor *lvl[2];
            for (int lv = 0; lv < 2; lv++) {
                kiln_tensor *x = kiln_network_add_input(
                    net, names[lv], KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){FH_N, FH_A * FH_K, fh_h[lv], fh_w[lv]}));
                lvl[lv] = x ? fh_level(net, x, lv, grid[lv], anchor[lv]) : NULL;
            }
            kiln_tensor *y = lvl[0] && lvl[1] ? out0(kiln_network_add_concat(net, lvl, 2, 1)) : NULL;
            bool ok = y && kiln_tensor_set_name(y, "y") == KILN_OK && kiln_network_mark_output(net, y) == KILN_OK;
            CHECK(ok, "detection head network: %s", kiln_last_error());
            float *out = malloc((size_t)vout * sizeof *out);
            memset(out, 0xff, (size_t)vout * sizeof *out);
            if (!fuse) setenv("KILN_FUSE", "off", 1);
            int fused = ok ? run_net(net, 2, names, xs, "y", out, fp16, "Fused") : -1;
            unsetenv("KILN_FUSE");
            char what[96];
            snprintf(what, sizeof what, "detection head (%s, fusion %s)", fp16 ? "FP16" : "FP32", fuse ? "on" : "off");
            CHECK(fused == fuse, "%s: %d fused layers (want %d)", what, fused, fuse);
            /* float16 rounds the sigmoid's output (rel. 5e-4) before wh squares and scales it */
            th_check_close(what, out, ref, vout, fp16 ? 1e-2 : 1e-5);
            free(out);
            kiln_network_destroy(net);
            kiln_builder_destroy(b);
        }
    for (int lv = 0; lv < 2; lv++) free(xs[lv]), free(grid[lv]), free(anchor[lv]);
    free(ref);
}

/* Reshapes the walk must refine (a box axis split where an input axis ends) and concats it
 * must split: x (2, 6, 4) -> transpose (6, 2, 4) -> reshape (12, 4), concat with z (3, 4)
 * on axis 0, * 3 then max with 1. And one it cannot describe: u (2, 3) -> transpose (3, 2)
 * -> reshape (2, 3) -> transpose (3, 2), relu, + 1: the region stops at the reshape. */
static void case_fused_walks(void) {
    float *x = th_rand_array(48, -3, 3), *z = th_rand_array(12, -3, 3), *u = th_rand_array(6, -3, 3);
    double r1[60], r2[6];
    for (int i = 0; i < 12; i++)
        for (int c = 0; c < 4; c++) { /* row i of the reshape: (a, b) = (i / 2, i % 2) of (6, 2) */
            int a = i / 2, bb = i % 2;
            double v = 3.0 * x[(bb * 6 + a) * 4 + c];
            r1[i * 4 + c] = v > 1 ? v : 1;
        }
    for (int i = 0; i < 12; i++) {
        double v = 3.0 * z[i];
        r1[48 + i] = v > 1 ? v : 1;
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            /* t = u^T (3, 2), flat t as (2, 3): s[p][q] = t.flat[p * 3 + q]; out = s^T (3, 2) */
            int flat = j * 3 + i, ti = flat / 2, tj = flat % 2;
            double v = u[tj * 3 + ti];
            r2[i * 2 + j] = (v > 0 ? v : 0) + 1;
        }
    for (int fuse = 0; fuse < 2; fuse++) {
        kiln_builder *b = th_builder();
        kiln_network *net;
        CHECK_OK(kiln_network_create(b, &net));
        float three = 3, one = 1;
        kiln_weights none = {KILN_FLOAT32, NULL, 0};
        kiln_tensor *tx = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(3, (int64_t[]){2, 6, 4}));
        kiln_tensor *tz = kiln_network_add_input(net, "z", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){3, 4}));
        kiln_tensor *t = out0(kiln_network_add_transpose(net, tx, 3, (int64_t[]){1, 0, 2}));
        t = t ? out0(kiln_network_add_reshape(net, t, kiln_dims_make(2, (int64_t[]){12, 4}), 0)) : NULL;
        kiln_tensor *parts[2] = {t, tz};
        t = t ? out0(kiln_network_add_concat(net, parts, 2, 0)) : NULL;
        t = t ? out0(kiln_network_add_scale(net, t, KILN_SCALE_UNIFORM, none, (kiln_weights){KILN_FLOAT32, &three, 1},
                                            none))
              : NULL;
        kiln_tensor *c1 = constant(net, 1, (int64_t[]){1}, &one);
        t = t && c1 ? out0(kiln_network_add_elementwise(net, t, c1, KILN_ELT_MAX)) : NULL;
        bool ok = t && kiln_tensor_set_name(t, "y") == KILN_OK && kiln_network_mark_output(net, t) == KILN_OK;
        CHECK(ok, "fused walks network: %s", kiln_last_error());
        float o1[60];
        memset(o1, 0xff, sizeof o1);
        if (!fuse) setenv("KILN_FUSE", "off", 1);
        const char *n1[2] = {"x", "z"};
        float *i1[2] = {x, z};
        int fused = ok ? run_net(net, 2, n1, i1, "y", o1, false, "Fused") : -1;
        CHECK(fused == fuse, "refined reshape + split concat: %d fused layers (want %d)", fused, fuse);
        th_check_close(fuse ? "refined reshape + split concat, fused" : "refined reshape + split concat", o1, r1, 60, 1e-6);
        kiln_network_destroy(net);

        CHECK_OK(kiln_network_create(b, &net));
        kiln_tensor *tu = kiln_network_add_input(net, "u", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){2, 3}));
        t = out0(kiln_network_add_transpose(net, tu, 2, (int64_t[]){1, 0}));
        t = t ? out0(kiln_network_add_reshape(net, t, kiln_dims_make(2, (int64_t[]){2, 3}), 0)) : NULL;
        t = t ? out0(kiln_network_add_transpose(net, t, 2, (int64_t[]){1, 0})) : NULL;
        t = t ? out0(kiln_network_add_activation(net, t, KILN_ACT_RELU, 0, 0)) : NULL;
        t = t ? out0(kiln_network_add_scale(net, t, KILN_SCALE_UNIFORM, (kiln_weights){KILN_FLOAT32, &one, 1}, none, none))
              : NULL;
        ok = t && kiln_tensor_set_name(t, "y") == KILN_OK && kiln_network_mark_output(net, t) == KILN_OK;
        CHECK(ok, "undescribable reshape network: %s", kiln_last_error());
        float o2[6];
        memset(o2, 0xff, sizeof o2);
        const char *n2[1] = {"u"};
        float *i2[1] = {u};
        fused = ok ? run_net(net, 1, n2, i2, "y", o2, false, "Transpose") : -1;
        /* fused: the transpose before the reshape stays, the one after joins the region */
        CHECK(fused == (fuse ? 1 : 2), "undescribable reshape: %d transposes left (want %d)", fused, fuse ? 1 : 2);
        th_check_close("undescribable reshape", o2, r2, 6, 1e-6);
        unsetenv("KILN_FUSE");
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
    }
    free(x), free(z), free(u);
}

/* Boxes of many shapes for the backends' fused kernels: a rank-7 transpose (seven box axes
 * that no two maps let merge) with ReLU; and a transpose to channels-last concatenated with
 * a dense tensor, then ReLU, large enough to take many blocks a piece (the CUDA kernel
 * merges the first piece's h and w and the second's whole rows, and pads the shorter box). */
static void case_fused_shapes(void) {
    enum { R = 7 };
    const int64_t ud[R] = {2, 3, 2, 3, 2, 2, 3}, perm[R] = {6, 4, 2, 0, 1, 3, 5};
    int64_t uvol = 1, us[R], od[R], os[R];
    for (int i = R - 1; i >= 0; i--) us[i] = uvol, uvol *= ud[i];
    for (int i = 0; i < R; i++) od[i] = ud[perm[i]];
    for (int i = R - 1, v = 1; i >= 0; i--) os[i] = v, v *= (int)od[i];
    enum { N = 3, C = 5, H = 37, W = 41 };
    const int64_t av = N * C * H * W, yv = N * 2 * H * W * C;
    float *u = th_rand_array(uvol, -3, 3), *a = th_rand_array(av, -3, 3), *bb = th_rand_array(av, -3, 3);
    double *ru = malloc((size_t)uvol * sizeof *ru), *ry = malloc((size_t)yv * sizeof *ry);
    for (int64_t i = 0; i < uvol; i++) { /* output element i: its index along each output axis */
        int64_t src = 0;
        for (int k = 0; k < R; k++) src += (i / os[k] % od[k]) * us[perm[k]];
        ru[i] = u[src] > 0 ? u[src] : 0;
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < 2 * H; h++)
            for (int64_t w = 0; w < W; w++)
                for (int64_t c = 0; c < C; c++) {
                    double v = h < H ? a[((n * C + c) * H + h) * W + w] : bb[((n * H + h - H) * W + w) * C + c];
                    ry[((n * 2 * H + h) * W + w) * C + c] = v > 0 ? v : 0;
                }
    for (int fuse = 0; fuse < 2; fuse++) {
        if (!fuse) setenv("KILN_FUSE", "off", 1);
        kiln_builder *b = th_builder();
        kiln_network *net;
        CHECK_OK(kiln_network_create(b, &net));
        kiln_tensor *t = kiln_network_add_input(net, "u", KILN_FLOAT32, kiln_dims_make(R, ud));
        t = t ? out0(kiln_network_add_transpose(net, t, R, perm)) : NULL;
        t = t ? out0(kiln_network_add_activation(net, t, KILN_ACT_RELU, 0, 0)) : NULL;
        bool ok = t && kiln_tensor_set_name(t, "y") == KILN_OK && kiln_network_mark_output(net, t) == KILN_OK;
        CHECK(ok, "rank-7 network: %s", kiln_last_error());
        float *o = malloc((size_t)uvol * sizeof *o);
        memset(o, 0xff, (size_t)uvol * sizeof *o);
        const char *n1[1] = {"u"};
        int fused = ok ? run_net(net, 1, n1, &u, "y", o, false, "Fused") : -1;
        CHECK(fused == fuse, "rank-7 transpose + relu: %d fused layers (want %d)", fused, fuse);
        th_check_close(fuse ? "rank-7 transpose + relu, fused" : "rank-7 transpose + relu", o, ru, uvol, 1e-6);
        free(o);
        kiln_network_destroy(net);

        CHECK_OK(kiln_network_create(b, &net));
        kiln_tensor *ta = kiln_network_add_input(net, "a", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){N, C, H, W}));
        kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){N, H, W, C}));
        t = ta ? out0(kiln_network_add_transpose(net, ta, 4, (int64_t[]){0, 2, 3, 1})) : NULL;
        kiln_tensor *parts[2] = {t, tb};
        t = t && tb ? out0(kiln_network_add_concat(net, parts, 2, 1)) : NULL;
        t = t ? out0(kiln_network_add_activation(net, t, KILN_ACT_RELU, 0, 0)) : NULL;
        ok = t && kiln_tensor_set_name(t, "y") == KILN_OK && kiln_network_mark_output(net, t) == KILN_OK;
        CHECK(ok, "channels-last concat network: %s", kiln_last_error());
        o = malloc((size_t)yv * sizeof *o);
        memset(o, 0xff, (size_t)yv * sizeof *o);
        const char *n2[2] = {"a", "b"};
        float *i2[2] = {a, bb};
        fused = ok ? run_net(net, 2, n2, i2, "y", o, false, "Fused") : -1;
        CHECK(fused == fuse, "channels-last concat + relu: %d fused layers (want %d)", fused, fuse);
        th_check_close(fuse ? "channels-last concat + relu, fused" : "channels-last concat + relu", o, ry, yv, 1e-6);
        free(o);
        unsetenv("KILN_FUSE");
        kiln_network_destroy(net);
        kiln_builder_destroy(b);
    }
    free(u), free(a), free(bb), free(ru), free(ry);
}

/* Past the walk's limits: a concat of 100 inputs would cut a piece 99 times and read 100
 * outside tensors (the walk allows 64 of each), so the concat stays outside the region and
 * only the ReLU and the scale after it fuse. */
static void case_fused_limits(void) {
    enum { NI = 100, R = 2, C = 3 };
    float *xs[NI];
    char names[NI][8];
    const char *np[NI];
    double ref[R * NI * C];
    for (int i = 0; i < NI; i++) {
        xs[i] = th_rand_array(R * C, -3, 3);
        snprintf(names[i], sizeof names[i], "x%d", i);
        np[i] = names[i];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                double v = xs[i][r * C + c];
                ref[r * NI * C + i * C + c] = 2 * (v > 0 ? v : 0);
            }
    }
    float two = 2;
    kiln_weights none = {KILN_FLOAT32, NULL, 0};
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *parts[NI];
    bool ok = true;
    for (int i = 0; i < NI; i++) {
        parts[i] = kiln_network_add_input(net, names[i], KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){R, C}));
        ok &= parts[i] != NULL;
    }
    kiln_tensor *t = ok ? out0(kiln_network_add_concat(net, parts, NI, 1)) : NULL;
    t = t ? out0(kiln_network_add_activation(net, t, KILN_ACT_RELU, 0, 0)) : NULL;
    t = t ? out0(kiln_network_add_scale(net, t, KILN_SCALE_UNIFORM, none, (kiln_weights){KILN_FLOAT32, &two, 1}, none))
          : NULL;
    ok = t && kiln_tensor_set_name(t, "y") == KILN_OK && kiln_network_mark_output(net, t) == KILN_OK;
    CHECK(ok, "100-input concat network: %s", kiln_last_error());
    float o[R * NI * C];
    memset(o, 0xff, sizeof o);
    int concats = ok ? run_net(net, NI, np, xs, "y", o, false, "Concat") : -1;
    CHECK(concats == 1, "100-input concat: %d concat layers left (want 1: past the walk's cuts)", concats);
    th_check_close("100-input concat + relu + scale", o, ref, R * NI * C, 1e-6);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    for (int i = 0; i < NI; i++) free(xs[i]);
}

/* The format pass with a made-up backend: convolutions want float16 NHWC, the rest logical. */
static bool fake_format(const kiln_layer *l, unsigned flags, int *storage, int *format) {
    (void)flags;
    if (l->type != KILN_LAYER_CONVOLUTION) return false;
    *storage = KILN_FLOAT16;
    *format = KG_FORMAT_NHWC;
    return true;
}

static void case_formats(void) {
    kiln_builder *b = th_builder();
    kiln_network *net;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, 2, 4, 4}));
    float w[4] = {1, 2, 3, 4};
    kiln_conv_desc d = {.out_channels = 2, .kernel = {1, 1}};
    kiln_layer *c1 = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, w, 4}, (kiln_weights){0});
    kiln_layer *c2 = kiln_network_add_convolution(net, kiln_layer_output(c1, 0), &d, (kiln_weights){KILN_FLOAT32, w, 4},
                                                  (kiln_weights){0});
    kiln_layer *sm = kiln_network_add_softmax(net, kiln_layer_output(c2, 0), 1, 0);
    kiln_layer *c3 = kiln_network_add_convolution(net, kiln_layer_output(c2, 0), &d, (kiln_weights){KILN_FLOAT32, w, 4},
                                                  (kiln_weights){0});
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(sm, 0)));
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(c3, 0)));
    kiln_graph *g = &net->g;
    kopt_options o = {.layer_format = fake_format};
    int inserted = 0;
    CHECK_OK(kopt_assign_formats(g, &o, &inserted));
    /* x -> f16 before c1; c2's output back to f32 linear for softmax (shared); c3's network
     * output gets an internal tensor and a reformat after */
    CHECK(inserted == 3, "%d reformats inserted", inserted);
    int bad = 0;
    for (int i = 0; i < g->nb_layers; i++) {
        kiln_layer *l = g->layers[i];
        CHECK(l->id == i, "ids renumbered");
        for (int k = 0; k < l->nb_inputs; k++) /* every input is written earlier */
            if (l->inputs[k] && l->inputs[k]->producer && l->inputs[k]->producer->id >= i) bad++;
        if (l->type == KILN_LAYER_CONVOLUTION)
            CHECK(kg_storage(l->inputs[0]) == KILN_FLOAT16 && l->inputs[0]->format == KG_FORMAT_NHWC &&
                      kg_storage(l->outputs[0]) == KILN_FLOAT16,
                  "conv '%s' reads and writes f16 NHWC", l->name);
        if (l->type == KILN_LAYER_SOFTMAX)
            CHECK(kg_storage(l->inputs[0]) == KILN_FLOAT32 && l->inputs[0]->format == KG_FORMAT_LINEAR, "softmax reads f32");
    }
    CHECK(bad == 0, "%d layers read tensors written later", bad);
    for (int i = 0; i < g->nb_outputs; i++)
        CHECK(kg_storage(g->outputs[i]) == KILN_FLOAT32 && g->outputs[i]->format == KG_FORMAT_LINEAR &&
                  g->outputs[i]->producer->type == (i == 0 ? KILN_LAYER_SOFTMAX : KILN_LAYER_REFORMAT),
              "network output %d stays logical", i);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
}

int main(void) {
    case_fused_decode();
    case_fused_head();
    case_fused_walks();
    case_fused_shapes();
    case_fused_limits();
    case_residual();
    case_residual_after_act(1, 1, 0);
    case_residual_after_act(3, 1, 0);
    case_residual_after_act(3, 8, 0);
    case_residual_after_act(3, 1, 1);
    case_pow_scales();
    case_hoist_activation(0);
    case_hoist_activation(1);
    for (int order = 0; order < 2; order++) case_silu(order, 0);
    case_silu(0, 1);
    case_formats();
    case_conv_bn(0, 0);
    case_conv_bn(1, 0);
    case_conv_bn(1, 1);
    case_no_fold_when_shared();
    case_elementwise_scales();
    case_shared_constant();
    return th_exit("test_opt");
}
