/* kiln tests: optimisation passes keep results and remove what they promise to:
 * batch norm / scale folded into the convolution before it. */
#include <math.h>
#include <string.h>

#include "harness.h"

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

int main(void) {
    case_conv_bn(0, 0);
    case_conv_bn(1, 0);
    case_conv_bn(1, 1);
    case_no_fold_when_shared();
    return th_exit("test_opt");
}
