/* kiln tests: convolution and deconvolution layers against float64 references, over kernel
 * sizes, strides, asymmetric pads, dilations, groups (incl. depthwise), bias, batch and odd
 * sizes; the CPU's Winograd and packed-GEMM paths with a fused residual and activation;
 * plus the errors the add calls must report. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "cpu/conv_gemm.h"
#include "cpu/winograd.h"
#include "harness.h"

typedef struct conv_case {
    int64_t n, c, h, w; /* input; h = 0 means a rank-3 NCW input of width w */
    int64_t k, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, g;
    int64_t oph, opw; /* deconvolution output padding */
    bool bias;
} conv_case;

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe) {
    return (in + pb + pe - ((k - 1) * d + 1)) / s + 1;
}

static int64_t deconv_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe, int64_t op) {
    return s * (in - 1) + op + (k - 1) * d + 1 - pb - pe;
}

/* Direct definition: y[n,k,oh,ow] = b[k] + sum x[n, g*cg+ci, oh*sh-pt+i*dh, ow*sw-pl+j*dw] w[k,ci,i,j]. */
static void ref_conv(const conv_case *t, int64_t h, const float *x, const float *w, const float *b, double *y,
                     int64_t oh, int64_t ow) {
    int64_t cg = t->c / t->g, kg = t->k / t->g;
    for (int64_t n = 0; n < t->n; n++)
        for (int64_t k = 0; k < t->k; k++)
            for (int64_t p = 0; p < oh; p++)
                for (int64_t q = 0; q < ow; q++) {
                    double acc = b ? b[k] : 0.0;
                    int64_t gi = k / kg;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < t->kh; i++)
                            for (int64_t j = 0; j < t->kw; j++) {
                                int64_t ih = p * t->sh - t->pt + i * t->dh, iw = q * t->sw - t->pl + j * t->dw;
                                if (ih < 0 || ih >= h || iw < 0 || iw >= t->w) continue;
                                acc += (double)x[((n * t->c + gi * cg + ci) * h + ih) * t->w + iw] *
                                       (double)w[((k * cg + ci) * t->kh + i) * t->kw + j];
                            }
                    y[((n * t->k + k) * oh + p) * ow + q] = acc;
                }
}

/* Scatter definition: x[n,c,ih,iw] * w[c,co,i,j] lands on y[n, g*kg+co, ih*sh-pt+i*dh, iw*sw-pl+j*dw]. */
static void ref_deconv(const conv_case *t, int64_t h, const float *x, const float *w, const float *b, double *y,
                       int64_t oh, int64_t ow) {
    int64_t cg = t->c / t->g, kg = t->k / t->g;
    for (int64_t n = 0; n < t->n; n++)
        for (int64_t k = 0; k < t->k; k++)
            for (int64_t i = 0; i < oh * ow; i++) y[(n * t->k + k) * oh * ow + i] = b ? b[k] : 0.0;
    for (int64_t n = 0; n < t->n; n++)
        for (int64_t c = 0; c < t->c; c++) {
            int64_t gi = c / cg;
            for (int64_t ih = 0; ih < h; ih++)
                for (int64_t iw = 0; iw < t->w; iw++) {
                    double xv = x[((n * t->c + c) * h + ih) * t->w + iw];
                    for (int64_t co = 0; co < kg; co++)
                        for (int64_t i = 0; i < t->kh; i++)
                            for (int64_t j = 0; j < t->kw; j++) {
                                int64_t p = ih * t->sh - t->pt + i * t->dh, q = iw * t->sw - t->pl + j * t->dw;
                                if (p < 0 || p >= oh || q < 0 || q >= ow) continue;
                                y[((n * t->k + gi * kg + co) * oh + p) * ow + q] +=
                                    xv * (double)w[((c * kg + co) * t->kh + i) * t->kw + j];
                            }
                }
        }
}

static void run_case(kiln_builder *b, const conv_case *t, bool deconv) {
    char what[256];
    snprintf(what, sizeof what,
             "%s n%lld c%lld %lldx%lld k%lld kernel %lldx%lld stride %lld,%lld dil %lld,%lld pads %lld,%lld,%lld,%lld "
             "g%lld op %lld,%lld bias %d",
             deconv ? "deconv" : "conv", (long long)t->n, (long long)t->c, (long long)t->h, (long long)t->w,
             (long long)t->k, (long long)t->kh, (long long)t->kw, (long long)t->sh, (long long)t->sw,
             (long long)t->dh, (long long)t->dw, (long long)t->pt, (long long)t->pl, (long long)t->pb,
             (long long)t->pr, (long long)t->g, (long long)t->oph, (long long)t->opw, (int)t->bias);
    bool r3 = t->h == 0;
    int64_t h = r3 ? 1 : t->h;
    int64_t oh = deconv ? deconv_out(h, t->kh, t->sh, t->dh, t->pt, t->pb, t->oph)
                        : conv_out(h, t->kh, t->sh, t->dh, t->pt, t->pb);
    int64_t ow = deconv ? deconv_out(t->w, t->kw, t->sw, t->dw, t->pl, t->pr, t->opw)
                        : conv_out(t->w, t->kw, t->sw, t->dw, t->pl, t->pr);
    int64_t xn = t->n * t->c * h * t->w, yn = t->n * t->k * oh * ow;
    int64_t wn = deconv ? t->c * (t->k / t->g) * t->kh * t->kw : t->k * (t->c / t->g) * t->kh * t->kw;
    float *x = th_rand_array(xn, -1, 1), *w = th_rand_array(wn, -1, 1), *bias = th_rand_array(t->k, -1, 1);
    double *ref = malloc((size_t)yn * sizeof(double));
    (deconv ? ref_deconv : ref_conv)(t, h, x, w, t->bias ? bias : NULL, ref, oh, ow);

    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_dims xd = r3 ? kiln_dims_make(3, (int64_t[]){t->n, t->c, t->w})
                      : kiln_dims_make(4, (int64_t[]){t->n, t->c, t->h, t->w});
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, xd);
    kiln_conv_desc d;
    memset(&d, 0, sizeof d);
    d.out_channels = t->k;
    d.kernel[0] = r3 ? 1 : t->kh;
    d.kernel[1] = t->kw;
    d.stride[0] = r3 ? 0 : t->sh;
    d.stride[1] = t->sw;
    d.dilation[0] = r3 ? 0 : t->dh;
    d.dilation[1] = t->dw;
    d.pad_begin[0] = t->pt;
    d.pad_begin[1] = t->pl;
    d.pad_end[0] = t->pb;
    d.pad_end[1] = t->pr;
    d.groups = t->g;
    d.output_padding[0] = t->oph;
    d.output_padding[1] = t->opw;
    kiln_weights kw = {KILN_FLOAT32, w, wn}, bw = {KILN_FLOAT32, t->bias ? bias : NULL, t->bias ? t->k : 0};
    kiln_layer *l = deconv ? kiln_network_add_deconvolution(net, in, &d, kw, bw)
                           : kiln_network_add_convolution(net, in, &d, kw, bw);
    kiln_dims want = r3 ? kiln_dims_make(3, (int64_t[]){t->n, t->k, ow}) : kiln_dims_make(4, (int64_t[]){t->n, t->k, oh, ow});
    th_check_layer(b, net, l, want, x, ref, yn, 1e-5, what);
    kiln_network_destroy(net);
    free(x);
    free(w);
    free(bias);
    free(ref);
}

static void conv_sweep(kiln_builder *b) {
    static const int64_t kernels[] = {1, 3, 5, 7};
    int count = 0;
    for (int ki = 0; ki < 4; ki++)
        for (int64_t s = 1; s <= 2; s++)
            for (int64_t dil = 1; dil <= 2; dil++)
                for (int gm = 0; gm < 3; gm++) {
                    conv_case t;
                    memset(&t, 0, sizeof t);
                    int64_t k = kernels[ki];
                    t.kh = k;
                    t.kw = k == 1 ? 1 : kernels[(ki + count) % 4]; /* rectangular kernels too */
                    if (t.kw == 1 && k > 1) t.kw = 3;
                    t.sh = s;
                    t.sw = (count % 3 == 0) ? 3 - s : s;
                    t.dh = dil;
                    t.dw = (count % 4 == 1) ? 3 - dil : dil;
                    t.n = count % 2 ? 3 : 1;
                    t.c = gm == 2 ? 6 : 4;
                    t.g = gm == 0 ? 1 : gm == 1 ? 2 : t.c;
                    t.k = gm == 2 ? (count % 4 == 2 ? 2 * t.c : t.c) : 6;
                    t.pt = th_rand_int(0, t.kh - 1);
                    t.pb = th_rand_int(0, t.kh - 1);
                    t.pl = th_rand_int(0, t.kw - 1);
                    t.pr = th_rand_int(0, t.kw - 1);
                    int64_t spanh = (t.kh - 1) * t.dh + 1, spanw = (t.kw - 1) * t.dw + 1;
                    t.h = (spanh + th_rand_int(0, 8)) | 1; /* odd sizes */
                    t.w = (spanw + th_rand_int(1, 9)) | 1;
                    t.bias = count % 3 != 2;
                    run_case(b, &t, false);
                    count++;
                }
}

static void conv_special(kiln_builder *b) {
    /* 1x1 stride 1 without padding: sgemm straight on the input, batch 1 ... */
    conv_case t = {.n = 1, .c = 16, .h = 40, .w = 33, .k = 12, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                   .g = 1, .bias = true};
    run_case(b, &t, false);
    /* ... and several small images packed into one GEMM */
    t.n = 3;
    t.h = 7;
    t.w = 5;
    run_case(b, &t, false);
    t.bias = false;
    t.g = 4;
    run_case(b, &t, false);
    /* 1x1 stride 2 (ResNet downsampling) */
    conv_case t2 = {.n = 2, .c = 8, .h = 14, .w = 15, .k = 16, .kh = 1, .kw = 1, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
                    .g = 1, .bias = true};
    run_case(b, &t2, false);
    /* large input: the im2col buffer is split into bands of output rows */
    conv_case t3 = {.n = 1, .c = 64, .h = 129, .w = 127, .k = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1,
                    .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .g = 1, .bias = true};
    run_case(b, &t3, false);
    /* depthwise 3x3, stride 1 and 2, fast interior path; with a channel multiplier; batch 3 */
    for (int64_t s = 1; s <= 2; s++) {
        conv_case t4 = {.n = 3, .c = 5, .h = 17, .w = 19, .k = 5, .kh = 3, .kw = 3, .sh = s, .sw = s, .dh = 1,
                        .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .g = 5, .bias = true};
        run_case(b, &t4, false);
        t4.k = 10;
        t4.pt = 0;
        t4.pr = 2;
        t4.bias = false;
        run_case(b, &t4, false);
        /* tiny planes: every pixel is on the border */
        t4.h = 2;
        t4.w = 3;
        t4.pt = 1;
        t4.pb = 1;
        t4.pl = 2;
        t4.pr = 0;
        run_case(b, &t4, false);
    }
    /* depthwise kernels other than 3x3: whole-row taps for 5 and 7, a generic width, and a
     * kernel wider than the tap table */
    static const int64_t dwk[][4] = {{5, 5, 1, 1}, {7, 7, 1, 1}, {3, 5, 2, 1}, {5, 4, 1, 1}, {1, 17, 1, 1},
                                     {3, 5, 1, 2}};
    for (int i = 0; i < 6; i++) {
        conv_case t8 = {.n = 2, .c = 4, .h = 11, .w = 40, .k = 4, .kh = dwk[i][0], .kw = dwk[i][1],
                        .sh = dwk[i][2], .sw = dwk[i][2], .dh = 1, .dw = dwk[i][3], .pt = dwk[i][0] / 2,
                        .pl = dwk[i][1] / 2, .pb = 0, .pr = dwk[i][1] - 1, .g = 4, .bias = i % 2 == 0};
        run_case(b, &t8, false);
    }
    /* ResNet-style 7x7 stride 2 stem with 3 input channels */
    conv_case t5 = {.n = 1, .c = 3, .h = 45, .w = 45, .k = 8, .kh = 7, .kw = 7, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
                    .pt = 3, .pl = 3, .pb = 3, .pr = 3, .g = 1, .bias = true};
    run_case(b, &t5, false);
    /* rank-3 NCW input (1-D convolution) */
    conv_case t6 = {.n = 2, .c = 4, .h = 0, .w = 23, .k = 6, .kh = 1, .kw = 5, .sh = 1, .sw = 2, .dh = 1, .dw = 2,
                    .pl = 3, .pr = 1, .g = 2, .bias = true};
    run_case(b, &t6, false);
    t6.kw = 1;
    t6.sw = 1;
    t6.pl = t6.pr = 0;
    run_case(b, &t6, false);
    /* C = 1, groups 1 (not depthwise) */
    conv_case t7 = {.n = 2, .c = 1, .h = 9, .w = 8, .k = 3, .kh = 3, .kw = 2, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                    .pt = 1, .g = 1, .bias = false};
    run_case(b, &t7, false);
}

/* ---- fused residual + activation, Winograd ---- */

typedef struct fused_act {
    int type; /* kiln_activation_type, or -1 for none */
    float alpha, beta;
} fused_act;

static double ref_act(const fused_act *a, double x) {
    switch (a->type) {
    case KILN_ACT_RELU: return x > 0 ? x : 0;
    case KILN_ACT_LEAKY_RELU: return x >= 0 ? x : a->alpha * x;
    case KILN_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case KILN_ACT_CLIP: return x < a->alpha ? a->alpha : x > a->beta ? a->beta : x;
    default: return x;
    }
}

/* x -> conv -> add(residual) -> activation, built for the CPU with `threads` threads: the
 * optimiser folds the add and the activation into the convolution (checked), so its kernel
 * applies them (Winograd's output transform, the packed GEMM's block store). */
static void run_fused_case(kiln_builder *b, const conv_case *t, const fused_act *act, bool res_first, int threads) {
    char what[256];
    snprintf(what, sizeof what,
             "fused conv n%lld c%lld %lldx%lld k%lld kernel %lldx%lld stride %lld,%lld pads %lld,%lld,%lld,%lld g%lld "
             "bias %d act %d threads %d",
             (long long)t->n, (long long)t->c, (long long)t->h, (long long)t->w, (long long)t->k, (long long)t->kh,
             (long long)t->kw, (long long)t->sh, (long long)t->sw, (long long)t->pt, (long long)t->pl,
             (long long)t->pb, (long long)t->pr, (long long)t->g, (int)t->bias, act->type, threads);
    int64_t oh = conv_out(t->h, t->kh, t->sh, t->dh, t->pt, t->pb), ow = conv_out(t->w, t->kw, t->sw, t->dw, t->pl, t->pr);
    int64_t xn = t->n * t->c * t->h * t->w, yn = t->n * t->k * oh * ow, wn = t->k * (t->c / t->g) * t->kh * t->kw;
    float *x = th_rand_array(xn, -1, 1), *w = th_rand_array(wn, -1, 1), *bias = th_rand_array(t->k, -1, 1);
    float *r = th_rand_array(yn, -2, 2), *out = malloc((size_t)yn * sizeof *out);
    /* weights scaled to the fan-in, as trained ones are: the sums stay near the activation's
     * range (a clip to [-0.5, 0.75] of sums in the tens would judge float32 rounding of the
     * sums against a tiny output) */
    float wscale = 1.0f / sqrtf((float)(t->c / t->g * t->kh * t->kw));
    for (int64_t i = 0; i < wn; i++) w[i] *= wscale;
    double *ref = malloc((size_t)yn * sizeof(double));
    ref_conv(t, t->h, x, w, t->bias ? bias : NULL, ref, oh, ow);
    for (int64_t i = 0; i < yn; i++) ref[i] = ref_act(act, ref[i] + r[i]);
    for (int64_t i = 0; i < yn; i++) out[i] = NAN;

    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){t->n, t->c, t->h, t->w}));
    kiln_tensor *rin = kiln_network_add_input(net, "r", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){t->n, t->k, oh, ow}));
    kiln_conv_desc d;
    memset(&d, 0, sizeof d);
    d.out_channels = t->k;
    d.kernel[0] = t->kh;
    d.kernel[1] = t->kw;
    d.stride[0] = t->sh;
    d.stride[1] = t->sw;
    d.dilation[0] = t->dh;
    d.dilation[1] = t->dw;
    d.pad_begin[0] = t->pt;
    d.pad_begin[1] = t->pl;
    d.pad_end[0] = t->pb;
    d.pad_end[1] = t->pr;
    d.groups = t->g;
    kiln_layer *cv = kiln_network_add_convolution(net, in, &d, (kiln_weights){KILN_FLOAT32, w, wn},
                                                  (kiln_weights){KILN_FLOAT32, t->bias ? bias : NULL, t->bias ? t->k : 0});
    kiln_layer *add = cv ? (res_first ? kiln_network_add_elementwise(net, rin, kiln_layer_output(cv, 0), KILN_ELT_ADD)
                                      : kiln_network_add_elementwise(net, kiln_layer_output(cv, 0), rin, KILN_ELT_ADD))
                         : NULL;
    kiln_layer *last = add && act->type >= 0 ? kiln_network_add_activation(net, kiln_layer_output(add, 0),
                                                                           (kiln_activation_type)act->type, act->alpha,
                                                                           act->beta)
                                             : add;
    CHECK(last != NULL, "%s: building the network failed: %s", what, kiln_last_error());
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    kiln_context *ctx = NULL;
    if (last) {
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(last, 0)));
        CHECK_OK(kiln_config_create(b, &cfg));
        CHECK_OK(kiln_config_set_num_threads(cfg, threads));
        kiln_status st = kiln_builder_build(b, net, cfg, &e);
        CHECK(st == KILN_OK, "%s: build failed: %s", what, kiln_last_error());
    }
    if (e) {
        kiln_layer_info li;
        bool one = kiln_engine_num_layers(e) == 1 && kiln_engine_layer_info(e, 0, &li) == KILN_OK &&
                   !strcmp(li.type, "Convolution") && li.nb_inputs == 2 && (act->type < 0) == !li.fused[0];
        CHECK(one, "%s: the add and activation were not fused into the convolution (%d layers)", what,
              kiln_engine_num_layers(e));
        CHECK_OK(kiln_context_create(e, &ctx));
    }
    if (ctx) {
        CHECK_OK(kiln_context_set_tensor_address(ctx, "x", x));
        CHECK_OK(kiln_context_set_tensor_address(ctx, "r", r));
        CHECK_OK(kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_layer_output(last, 0)), out));
        kiln_status st = kiln_context_execute(ctx);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st == KILN_OK) th_check_close(what, out, ref, yn, 1e-5);
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    free(x), free(w), free(bias), free(r), free(out), free(ref);
}

/* Whether conv.c takes Winograd for a 3x3 stride-1 case (groups 1): the cases below are
 * chosen to, and say so when a change of the choice leaves them testing something else. */
static bool takes_winograd(const conv_case *t) {
    int64_t oh = conv_out(t->h, 3, 1, 1, t->pt, t->pb), ow = conv_out(t->w, 3, 1, 1, t->pl, t->pr);
    kcpu_wino_shape ws = {t->n, t->c, t->h, t->w, t->k, oh, ow, t->pt, t->pl};
    return kcpu_wino_pick(&ws) != 0;
}

static void winograd_cases(kiln_builder *b) {
    /* 3x3, stride 1, big enough for Winograd: odd and even sizes, symmetric, asymmetric and
     * no padding, batches, channel counts that are not multiples of the GEMM blocks, an
     * image wider than a transform block (64 tiles), and tile-row chunks that split a batch
     * inside an image */
    static const int64_t shapes[][9] = {
        /* n, c, h, w, k, pt, pl, pb, pr */
        {1, 32, 28, 28, 32, 1, 1, 1, 1},  {2, 33, 29, 31, 40, 1, 1, 1, 1}, {1, 48, 27, 23, 64, 0, 2, 2, 0},
        {3, 40, 20, 19, 37, 0, 0, 0, 0},  {1, 64, 25, 22, 48, 2, 1, 0, 2}, {1, 16, 15, 150, 32, 1, 1, 1, 1},
        {3, 64, 11, 150, 16, 1, 1, 1, 1}, {2, 128, 14, 14, 40, 1, 1, 1, 1},
    };
    static const fused_act acts[] = {{KILN_ACT_RELU, 0, 0}, {-1, 0, 0}, {KILN_ACT_LEAKY_RELU, 0.1f, 0}};
    for (int i = 0; i < (int)(sizeof shapes / sizeof *shapes); i++) {
        const int64_t *v = shapes[i];
        conv_case t = {.n = v[0], .c = v[1], .h = v[2], .w = v[3], .k = v[4], .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                       .dh = 1, .dw = 1, .pt = v[5], .pl = v[6], .pb = v[7], .pr = v[8], .g = 1, .bias = i % 3 != 1};
        CHECK(takes_winograd(&t) == kcg_available(), "winograd case %d: Winograd %s taken", i,
              takes_winograd(&t) ? "is" : "is not");
        run_case(b, &t, false);
        run_fused_case(b, &t, &acts[i % 3], i % 2 == 0, 1 + i % 3);
    }
    /* few channels, or a small image: im2col */
    conv_case t = {.n = 1, .c = 3, .h = 20, .w = 20, .k = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                   .pt = 1, .pl = 1, .pb = 1, .pr = 1, .g = 1, .bias = true};
    CHECK(!takes_winograd(&t), "3 input channels take Winograd");
    t.c = 64;
    t.k = 64;
    t.h = t.w = 7;
    CHECK(!takes_winograd(&t), "a 7x7 image with 64 channels takes Winograd");
}

/* The packed GEMM with its epilogue: bias, residual, activations (ReLU in the kernel, the
 * others after it), inner sizes in several passes, column tails of every width, output
 * channels that are not multiples of the register block, groups, batches, 1..3 threads. */
static void fused_gemm_cases(kiln_builder *b) {
    static const fused_act acts[] = {{KILN_ACT_RELU, 0, 0},
                                     {KILN_ACT_SIGMOID, 0, 0},
                                     {KILN_ACT_CLIP, -0.5f, 0.75f},
                                     {-1, 0, 0},
                                     {KILN_ACT_LEAKY_RELU, 0.2f, 0}};
    static const int64_t shapes[][8] = {
        /* n, c, hw, k, kernel, stride, pad, groups */
        {1, 64, 7, 50, 1, 1, 0, 1},  {2, 16, 5, 13, 1, 1, 0, 1},  {1, 600, 4, 7, 1, 1, 0, 1},
        {1, 80, 9, 12, 3, 2, 1, 1},  {3, 8, 11, 6, 7, 2, 3, 1},   {2, 12, 6, 18, 3, 1, 1, 3},
        {1, 24, 30, 70, 1, 2, 0, 1}, {4, 32, 3, 64, 1, 1, 0, 2},  {1, 3, 33, 20, 7, 2, 3, 1},
        {1, 300, 6, 40, 3, 1, 1, 4},
    };
    for (int i = 0; i < (int)(sizeof shapes / sizeof *shapes); i++) {
        const int64_t *v = shapes[i];
        conv_case t = {.n = v[0], .c = v[1], .h = v[2], .w = v[2] + i % 4, .k = v[3], .kh = v[4], .kw = v[4],
                       .sh = v[5], .sw = v[5], .dh = 1, .dw = 1, .pt = v[6], .pl = v[6], .pb = v[6], .pr = v[6],
                       .g = v[7], .bias = i % 4 != 2};
        for (int threads = 1; threads <= 3; threads++)
            run_fused_case(b, &t, &acts[(i + threads) % 5], (i + threads) % 2 == 0, threads);
    }
    /* 1x1 with padding: the output is larger than the input, so B cannot be read in place */
    static const int64_t pads[][5] = {{0, 0, 1, 2, 6}, {1, 2, 0, 0, 6}, {0, 0, 0, 3, 6}, {0, 0, 2, 0, 6}, {0, 0, 2, 0, 8}};
    for (int i = 0; i < 5; i++) {
        conv_case t = {.n = 2, .c = 20, .h = 6, .w = pads[i][4], .k = 9, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1,
                       .dw = 1, .pt = pads[i][0], .pl = pads[i][1], .pb = pads[i][2], .pr = pads[i][3], .g = 1,
                       .bias = true};
        run_case(b, &t, false);
        run_fused_case(b, &t, &acts[i], i % 2 == 1, 2);
    }
    /* grouped 1x1 read in place (64 pixels: whole panels) */
    conv_case tg = {.n = 2, .c = 24, .h = 8, .w = 8, .k = 18, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                    .g = 3, .bias = true};
    run_case(b, &tg, false);
    run_fused_case(b, &tg, &acts[0], false, 3);
    /* every width of a last column panel (16 + tail output pixels), over two passes of k */
    for (int64_t tail = 1; tail <= 16; tail++) {
        conv_case t = {.n = 1 + tail % 2, .c = 300, .h = 1, .w = 16 + tail, .k = 6 + tail, .kh = 1, .kw = 1, .sh = 1,
                       .sw = 1, .dh = 1, .dw = 1, .g = 1, .bias = tail % 3 != 0};
        run_fused_case(b, &t, &acts[tail % 5], tail % 2 == 0, 2);
    }
}

static void deconv_sweep(kiln_builder *b) {
    int count = 0;
    for (int64_t k = 1; k <= 4; k++)
        for (int64_t s = 1; s <= 3; s++)
            for (int64_t dil = 1; dil <= 2; dil++)
                for (int64_t g = 1; g <= 2; g++) {
                    conv_case t;
                    memset(&t, 0, sizeof t);
                    t.kh = k;
                    t.kw = count % 3 == 0 ? (k % 4) + 1 : k;
                    t.sh = s;
                    t.sw = count % 2 ? s : (s % 3) + 1;
                    t.dh = dil;
                    t.dw = count % 5 == 0 ? 3 - dil : dil;
                    t.n = count % 2 ? 1 : 3;
                    t.c = 4;
                    t.g = g;
                    t.k = g == 1 ? 3 : 6;
                    t.h = th_rand_int(2, 7) | 1;
                    t.w = th_rand_int(3, 8);
                    t.pt = th_rand_int(0, (t.kh - 1) * t.dh);
                    t.pb = th_rand_int(0, (t.kh - 1) * t.dh);
                    t.pl = th_rand_int(0, (t.kw - 1) * t.dw);
                    t.pr = th_rand_int(0, (t.kw - 1) * t.dw);
                    t.oph = th_rand_int(0, (t.sh > t.dh ? t.sh : t.dh) - 1);
                    t.opw = th_rand_int(0, (t.sw > t.dw ? t.sw : t.dw) - 1);
                    t.bias = count % 4 != 3;
                    if (deconv_out(t.h, t.kh, t.sh, t.dh, t.pt, t.pb, t.oph) <= 0) t.pt = t.pb = 0;
                    if (deconv_out(t.w, t.kw, t.sw, t.dw, t.pl, t.pr, t.opw) <= 0) t.pl = t.pr = 0;
                    run_case(b, &t, true);
                    count++;
                }
    /* depthwise deconvolution and a 1-D one */
    conv_case t = {.n = 2, .c = 6, .h = 5, .w = 6, .k = 6, .kh = 4, .kw = 4, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
                   .pt = 1, .pl = 1, .pb = 1, .pr = 1, .g = 6, .oph = 1, .opw = 0, .bias = true};
    run_case(b, &t, true);
    conv_case t1 = {.n = 2, .c = 3, .h = 0, .w = 9, .k = 4, .kh = 1, .kw = 3, .sh = 1, .sw = 2, .dh = 1, .dw = 1,
                    .pl = 1, .pr = 0, .g = 1, .opw = 1, .bias = true};
    run_case(b, &t1, true);
}

/* The add call must fail, return NULL, and name the layer and the problem. */
static void expect_error(kiln_builder *b, const char *what, kiln_dtype dt, kiln_dims xd, const kiln_conv_desc *d,
                         int64_t wcount, int64_t bcount, bool deconv, const char *needle) {
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    static float buf[4096];
    for (int i = 0; i < 4096; i++) buf[i] = 0.5f;
    kiln_tensor *in = kiln_network_add_input(net, "x", dt, xd);
    kiln_weights kw = {KILN_FLOAT32, buf, wcount}, bw = {KILN_FLOAT32, bcount ? buf : NULL, bcount};
    kiln_layer *l = deconv ? kiln_network_add_deconvolution(net, in, d, kw, bw)
                           : kiln_network_add_convolution(net, in, d, kw, bw);
    const char *err = kiln_last_error();
    const char *type = deconv ? "Deconvolution" : "Convolution";
    CHECK(l == NULL, "%s: add succeeded", what);
    CHECK(strstr(err, "layer '") && strstr(err, type), "%s: error does not name the layer: '%s'", what, err);
    CHECK(strstr(err, needle) != NULL, "%s: error '%s' does not mention '%s'", what, err, needle);
    CHECK(kiln_network_num_layers(net) == 0, "%s: the failed layer was kept", what);
    kiln_network_destroy(net);
}

static void conv_errors(kiln_builder *b) {
    kiln_dims xd = kiln_dims_make(4, (int64_t[]){1, 4, 8, 8});
    kiln_conv_desc d;
    memset(&d, 0, sizeof d);
    d.out_channels = 6;
    d.kernel[0] = d.kernel[1] = 3;
    expect_error(b, "wrong kernel count", KILN_FLOAT32, xd, &d, 6 * 4 * 9 - 1, 0, false, "kernel has");
    expect_error(b, "kernel for 3 input channels", KILN_FLOAT32, xd, &d, 6 * 3 * 9, 0, false,
                 "kernel has 3 channels per group, the layer needs 4");
    expect_error(b, "wrong bias count", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 5, false, "bias");
    d.groups = 3;
    expect_error(b, "groups not dividing channels", KILN_FLOAT32, xd, &d, 6 * 9, 0, false, "groups");
    d.groups = 4;
    expect_error(b, "groups not dividing out_channels", KILN_FLOAT32, xd, &d, 6 * 9, 0, false, "groups");
    d.groups = 1;
    d.kernel[0] = 9;
    expect_error(b, "output size <= 0", KILN_FLOAT32, xd, &d, 6 * 4 * 27, 0, false, "<= 0");
    d.kernel[0] = 3;
    d.dilation[1] = 5;
    expect_error(b, "dilated kernel larger than input", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 0, false, "<= 0");
    d.dilation[1] = 1;
    d.stride[0] = -1;
    expect_error(b, "negative stride", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 0, false, "stride");
    d.stride[0] = 1;
    d.pad_begin[1] = -2;
    expect_error(b, "negative pad", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 0, false, "padding");
    d.pad_begin[1] = 0;
    expect_error(b, "int32 input", KILN_INT32, xd, &d, 6 * 4 * 9, 0, false, "float32");
    expect_error(b, "rank-2 input", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){4, 8}), &d, 6 * 4 * 9, 0, false,
                 "rank");
    d.out_channels = 0;
    expect_error(b, "zero out_channels", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 0, false, "out_channels");
    /* deconvolution: kernel [C, K/g, kh, kw] */
    d.out_channels = 6;
    d.stride[0] = d.stride[1] = 2;
    expect_error(b, "deconv wrong kernel count", KILN_FLOAT32, xd, &d, 6 * 4 * 9 + 1, 0, true, "kernel has");
    d.output_padding[0] = 2;
    expect_error(b, "deconv output_padding too large", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 0, true, "output_padding");
    d.output_padding[0] = 0;
    d.pad_begin[0] = d.pad_end[0] = 10;
    expect_error(b, "deconv output size <= 0", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 0, true, "output height");
    d.pad_begin[0] = d.pad_end[0] = 0;
    d.groups = 3;
    expect_error(b, "deconv groups", KILN_FLOAT32, xd, &d, 6 * 4 * 9, 0, true, "groups");
    /* rank 3 with a height kernel */
    d.groups = 1;
    d.stride[0] = d.stride[1] = 1;
    expect_error(b, "rank-3 input with a 3-high kernel", KILN_FLOAT32, kiln_dims_make(3, (int64_t[]){1, 4, 8}), &d,
                 6 * 4 * 9, 0, false, "rank-3");
}

int main(void) {
    kiln_builder *b = th_builder();
    conv_sweep(b);
    conv_special(b);
    winograd_cases(b);
    fused_gemm_cases(b);
    deconv_sweep(b);
    conv_errors(b);
    kiln_builder_destroy(b);
    return th_exit("test_ops_conv");
}
