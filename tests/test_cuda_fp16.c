/* kiln tests: the CUDA backend's float16 path (KILN_FLAG_FP16) and its whole-run features.
 * Representative layers and small networks run in float16 on the GPU and in float32 on the
 * CPU backend, compared by relative error (< 1e-2); the engine must really run float16
 * (its kernels say _f16, reformats were inserted). Also: residual fusion in float32 on the
 * GPU, refit into the existing device buffers, CUDA graph replay across runs, a changed
 * address, and profiling (which runs layer by layer). Without a GPU: a clean skip. */
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define MAX_IO 10
#define FP16_TOL 1e-2
/* the CPU and the GPU both in float32, summing in different orders */
#define FP32_TOL 3e-5

static kiln_tensor *out0(kiln_layer *l) { return l ? kiln_layer_output(l, 0) : NULL; }

static kiln_weights wts(const float *v, int64_t n) { return (kiln_weights){KILN_FLOAT32, v, n}; }

static kiln_dims d4(int64_t a, int64_t b, int64_t c, int64_t d) { return kiln_dims_make(4, (int64_t[]){a, b, c, d}); }

/* Random weights that live until the end of the test. */
static float *pool_arrays[256];
static int nb_pool_arrays;
static const float *rnd(int64_t n, float lo, float hi) {
    float *p = th_rand_array(n, lo, hi);
    if (nb_pool_arrays < 256) pool_arrays[nb_pool_arrays++] = p;
    return p;
}

static kiln_tensor *act(kiln_network *net, kiln_tensor *x, kiln_activation_type t) {
    return x ? out0(kiln_network_add_activation(net, x, t, 0.1f, 0.0f)) : NULL;
}

static bool mark(kiln_network *net, kiln_tensor *t, const char *name) {
    if (!t) return false;
    CHECK_OK(kiln_tensor_set_name(t, name));
    CHECK_OK(kiln_network_mark_output(net, t));
    return true;
}

static kiln_engine *build(kiln_builder *b, kiln_network *net, kiln_device dev, bool fp16, kiln_status *status) {
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    kiln_status st = kiln_config_create(b, &cfg);
    if (st == KILN_OK) st = kiln_config_set_device(cfg, dev);
    if (st == KILN_OK && fp16) st = kiln_config_set_flag(cfg, KILN_FLAG_FP16, 1);
    if (st == KILN_OK) st = kiln_builder_build(b, net, cfg, &e);
    kiln_config_destroy(cfg);
    if (status) *status = st;
    return e;
}

enum { RC = 8, RK = 16, RS = 16 };
#define RX (RC * RS * RS)
#define RY (RK * RS * RS)

static kiln_network *make_refit_net(kiln_builder *b, const float *w, const float *bias) {
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(1, RC, RS, RS));
    kiln_conv_desc d = {.out_channels = RK, .kernel = {3, 3}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *c = kiln_network_add_convolution(net, x, &d, wts(w, RK * RC * 9), wts(bias, RK));
    if (c) CHECK_OK(kiln_layer_set_name(c, "conv"));
    kiln_tensor *y = act(net, out0(c), KILN_ACT_RELU);
    kiln_pool_desc mp = {.type = KILN_POOL_MAX, .kernel = {2, 2}, .stride = {1, 1}, .pad_end = {1, 1}};
    kiln_tensor *p = y ? out0(kiln_network_add_pooling(net, y, &mp)) : NULL;
    CHECK(mark(net, p, "y"), "refit network: %s", kiln_last_error());
    return net;
}

#ifdef KILN_HAVE_CUDA

/* Counts the build log's lines saying the range check came from the timing cache. */
typedef struct rc_log {
    int hits;
} rc_log;
static void rc_log_fn(void *user, kiln_log_level level, const char *msg) {
    (void)level;
    if (strstr(msg, "fp16 range check: the timing cache's result")) ((rc_log *)user)->hits++;
}

static kiln_tensor *conv(kiln_network *net, kiln_tensor *x, int64_t cin, int64_t cout, int64_t k, int64_t stride,
                         const int64_t *pads, int64_t groups, bool bias) {
    kiln_conv_desc d = {.out_channels = cout, .kernel = {k, k}, .stride = {stride, stride}, .groups = groups};
    if (pads) {
        d.pad_begin[0] = pads[0];
        d.pad_begin[1] = pads[1];
        d.pad_end[0] = pads[2];
        d.pad_end[1] = pads[3];
    } else {
        d.pad_begin[0] = d.pad_begin[1] = d.pad_end[0] = d.pad_end[1] = k / 2;
    }
    int64_t nw = cout * (cin / (groups ? groups : 1)) * k * k;
    float sc = 1.0f / sqrtf((float)(cin / (groups ? groups : 1) * k * k));
    return out0(kiln_network_add_convolution(net, x, &d, wts(rnd(nw, -sc, sc), nw),
                                             bias ? wts(rnd(cout, -0.2f, 0.2f), cout) : wts(NULL, 0)));
}

/* ---- the networks (each made twice, for each backend, from the same weights) ---- */

typedef kiln_network *(*make_fn)(kiln_builder *b, unsigned seed);

/* A ResNet-style block: conv+bn+relu, 1x1 convs, a residual add, pooling, a strided
 * grouped convolution with asymmetric padding, global pooling and a fully connected head. */
static kiln_network *make_block(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 16, 12, 12));
    kiln_tensor *c1 = conv(net, x, 16, 32, 3, 1, NULL, 1, false);
    kiln_layer *bn = c1 ? kiln_network_add_batch_norm(net, c1, wts(rnd(32, 0.8f, 1.2f), 32), wts(rnd(32, -0.1f, 0.1f), 32),
                                                      wts(rnd(32, -0.1f, 0.1f), 32), wts(rnd(32, 0.5f, 1.5f), 32), 1e-5f)
                        : NULL;
    kiln_tensor *y = act(net, out0(bn), KILN_ACT_RELU);
    y = y ? conv(net, y, 32, 32, 1, 1, NULL, 1, true) : NULL;
    kiln_tensor *sc = conv(net, x, 16, 32, 1, 1, NULL, 1, true);
    kiln_tensor *sum = y && sc ? out0(kiln_network_add_elementwise(net, y, sc, KILN_ELT_ADD)) : NULL;
    kiln_tensor *r = act(net, sum, KILN_ACT_RELU);
    kiln_pool_desc mp = {.type = KILN_POOL_MAX, .kernel = {3, 3}, .stride = {2, 2}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_tensor *p = r ? out0(kiln_network_add_pooling(net, r, &mp)) : NULL;
    static const int64_t asym[4] = {0, 0, 1, 1};
    kiln_tensor *g = p ? act(net, conv(net, p, 32, 16, 3, 2, asym, 2, true), KILN_ACT_SIGMOID) : NULL;
    kiln_pool_desc ap = {.type = KILN_POOL_AVERAGE, .kernel = {2, 2}, .stride = {1, 1}};
    kiln_tensor *a = g ? out0(kiln_network_add_pooling(net, g, &ap)) : NULL;
    kiln_pool_desc gp = {.type = KILN_POOL_AVERAGE, .global = 1};
    kiln_tensor *gl = g ? out0(kiln_network_add_pooling(net, g, &gp)) : NULL;
    kiln_tensor *fc = gl ? out0(kiln_network_add_fully_connected(net, gl, 10, wts(rnd(160, -0.3f, 0.3f), 160),
                                                                 wts(rnd(10, -0.2f, 0.2f), 10)))
                         : NULL;
    fc = act(net, fc, KILN_ACT_RELU);
    bool ok = mark(net, r, "r") && mark(net, g, "g") && mark(net, a, "a") && mark(net, fc, "fc");
    CHECK(ok, "block network: %s", kiln_last_error());
    return net;
}

static kiln_tensor *deconv(kiln_network *net, kiln_tensor *x, int64_t cin, int64_t cout, int64_t k, int64_t stride,
                           int64_t pad, int64_t out_pad, int64_t groups) {
    if (!x) return NULL;
    kiln_conv_desc d = {.out_channels = cout, .kernel = {k, k}, .stride = {stride, stride}, .groups = groups,
                        .pad_begin = {pad, pad}, .pad_end = {pad, pad}, .output_padding = {out_pad, out_pad}};
    int64_t nw = cin * (cout / groups) * k * k;
    float sc = 1.0f / sqrtf((float)(cin / groups * k * k));
    return out0(kiln_network_add_deconvolution(net, x, &d, wts(rnd(nw, -sc, sc), nw), wts(rnd(cout, -0.2f, 0.2f), cout)));
}

/* A UNet-style decoder: transposed convolutions that upsample (exact 2x2 stride 2, one
 * padded with output padding, which crops, and a grouped one), concatenated with a skip
 * connection, with a fused ReLU. */
static kiln_network *make_decoder(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 16, 6, 7));
    kiln_tensor *img = kiln_network_add_input(net, "img", KILN_FLOAT32, d4(2, 3, 12, 14));
    /* a 3-channel stem convolution (its input zero-padded to 8 channels) adds into the skip */
    static const int64_t stem_pads[4] = {1, 2, 1, 0};
    kiln_tensor *stem = conv(net, img, 3, 8, 3, 1, stem_pads, 1, true);
    kiln_tensor *skip0 = kiln_network_add_input(net, "skip", KILN_FLOAT32, d4(2, 8, 12, 14));
    kiln_tensor *skip = stem ? out0(kiln_network_add_elementwise(net, skip0, stem, KILN_ELT_ADD)) : NULL;
    kiln_tensor *c = conv(net, x, 16, 16, 3, 1, NULL, 1, true);
    kiln_tensor *u = act(net, deconv(net, c, 16, 8, 2, 2, 0, 0, 1), KILN_ACT_RELU);
    kiln_tensor *cat_in[2] = {u, skip};
    kiln_tensor *cat = u ? out0(kiln_network_add_concat(net, cat_in, 2, 1)) : NULL;
    kiln_tensor *v = deconv(net, cat, 16, 8, 3, 2, 1, 1, 1);          /* 12x14 -> 24x28, cropped */
    kiln_tensor *w = deconv(net, cat ? conv(net, cat, 16, 8, 3, 1, NULL, 1, true) : NULL, 8, 12, 4, 2, 1, 0, 2);
    bool ok = mark(net, v, "v") && mark(net, w, "w");
    CHECK(ok, "decoder network: %s", kiln_last_error());
    return net;
}

/* Deconvolutions whose kernel equals their stride (UNet's upsampling: kiln's GEMM scatters
 * its columns into the output): a 2x2 stride-2 one with a fused ReLU whose output is a
 * channel slice of the skip concat, a 2x3 stride (2, 3) one of 12 channels (the GEMM's
 * element-wise epilogue) with no bias, and a 3x3 stride-2 padded one that stays on cuDNN. */
static kiln_network *make_upsample(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 16, 5, 6));
    kiln_tensor *img = kiln_network_add_input(net, "img", KILN_FLOAT32, d4(2, 8, 10, 12));
    kiln_tensor *c = act(net, conv(net, x, 16, 16, 3, 1, NULL, 1, true), KILN_ACT_RELU);
    kiln_conv_desc d = {.out_channels = 24, .kernel = {2, 2}, .stride = {2, 2}};
    kiln_layer *up = c ? kiln_network_add_deconvolution(net, c, &d, wts(rnd(16 * 24 * 4, -0.25f, 0.25f), 16 * 24 * 4),
                                                        wts(rnd(24, -0.2f, 0.2f), 24))
                       : NULL;
    if (up) CHECK_OK(kiln_layer_set_name(up, "up"));
    kiln_tensor *u = act(net, up ? out0(up) : NULL, KILN_ACT_RELU);
    kiln_tensor *skip = act(net, conv(net, img, 8, 16, 3, 1, NULL, 1, true), KILN_ACT_RELU);
    kiln_tensor *cat_in[2] = {skip, u};
    kiln_tensor *cat = u && skip ? out0(kiln_network_add_concat(net, cat_in, 2, 1)) : NULL;
    kiln_tensor *y = cat ? conv(net, cat, 40, 8, 3, 1, NULL, 1, true) : NULL;
    kiln_conv_desc d2 = {.out_channels = 12, .kernel = {2, 3}, .stride = {2, 3}};
    kiln_tensor *v = c ? out0(kiln_network_add_deconvolution(net, c, &d2, wts(rnd(16 * 12 * 6, -0.25f, 0.25f), 16 * 12 * 6),
                                                             wts(NULL, 0)))
                       : NULL;
    kiln_tensor *w = deconv(net, c, 16, 8, 3, 2, 1, 1, 1);
    bool ok = mark(net, y, "y") && mark(net, v, "v") && mark(net, w, "w");
    CHECK(ok, "upsample network: %s", kiln_last_error());
    return net;
}

/* Point-wise layers, broadcasts, concat, resize and data movement after a convolution. */
static kiln_network *make_pointwise(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 8, 10, 10));
    kiln_tensor *x2 = kiln_network_add_input(net, "x2", KILN_FLOAT32, d4(2, 8, 10, 10));
    kiln_tensor *c = conv(net, x, 8, 8, 1, 1, NULL, 1, true);
    kiln_tensor *e1 = c ? out0(kiln_network_add_elementwise(net, c, x2, KILN_ELT_SUB)) : NULL;
    kiln_tensor *k = out0(kiln_network_add_constant(net, d4(1, 8, 1, 1), wts(rnd(8, 0.5f, 1.5f), 8)));
    kiln_tensor *e2 = e1 && k ? out0(kiln_network_add_elementwise(net, e1, k, KILN_ELT_MUL)) : NULL;
    kiln_tensor *s = e2 ? out0(kiln_network_add_scale(net, e2, KILN_SCALE_CHANNEL, wts(rnd(8, -0.3f, 0.3f), 8),
                                                      wts(rnd(8, 0.5f, 1.5f), 8), wts(NULL, 0)))
                        : NULL;
    kiln_tensor *t = act(net, s, KILN_ACT_TANH);
    kiln_tensor *u = t ? out0(kiln_network_add_unary(net, t, KILN_UNARY_EXP)) : NULL;
    kiln_tensor *slope = out0(kiln_network_add_constant(net, d4(1, 8, 1, 1), wts(rnd(8, 0.05f, 0.3f), 8)));
    kiln_tensor *pr = e2 && slope ? out0(kiln_network_add_prelu(net, e2, slope)) : NULL;
    kiln_tensor *mx = u && pr ? out0(kiln_network_add_elementwise(net, u, pr, KILN_ELT_MAX)) : NULL;
    kiln_tensor *parts[3] = {u, pr, mx};
    kiln_tensor *cat = mx ? out0(kiln_network_add_concat(net, parts, 3, 1)) : NULL;
    kiln_resize_desc rn = {.mode = KILN_RESIZE_NEAREST, .coord = KILN_COORD_ASYMMETRIC, .nb_scales = 4,
                           .scales = {1, 1, 2, 2}};
    kiln_resize_desc rl = {.mode = KILN_RESIZE_LINEAR, .coord = KILN_COORD_HALF_PIXEL, .nb_scales = 4,
                           .scales = {1, 1, 2, 1.5f}};
    kiln_tensor *r1 = cat ? out0(kiln_network_add_resize(net, cat, &rn)) : NULL;
    kiln_tensor *r2 = cat ? out0(kiln_network_add_resize(net, cat, &rl)) : NULL;
    int64_t st[2] = {1, 2}, en[2] = {20, 9}, ax[2] = {1, 3}, sp[2] = {2, 3};
    kiln_tensor *sl = cat ? out0(kiln_network_add_slice(net, cat, 2, st, en, ax, sp)) : NULL;
    int64_t perm[4] = {0, 2, 3, 1};
    kiln_tensor *tr = cat ? out0(kiln_network_add_transpose(net, cat, 4, perm)) : NULL;
    kiln_tensor *sm = cat ? out0(kiln_network_add_softmax(net, cat, 1, 0)) : NULL;
    kiln_tensor *ch[2] = {NULL, NULL};
    kiln_layer *spl = cat ? kiln_network_add_split(net, cat, 1, 2, (int64_t[]){10, 14}) : NULL;
    if (spl) ch[0] = kiln_layer_output(spl, 0), ch[1] = kiln_layer_output(spl, 1);
    /* a broadcast operand of another rank: that layer runs row-major */
    kiln_tensor *row = out0(kiln_network_add_constant(net, kiln_dims_make(1, (int64_t[]){10}), wts(rnd(10, -1, 1), 10)));
    kiln_tensor *wb = u && row ? out0(kiln_network_add_elementwise(net, u, row, KILN_ELT_MUL)) : NULL;
    /* a split output cannot be a network output under FP16 (formats.c): read it instead */
    kiln_tensor *neg = ch[0] ? out0(kiln_network_add_unary(net, ch[0], KILN_UNARY_NEG)) : NULL;
    kiln_tensor *back = ch[1] ? out0(kiln_network_add_elementwise(net, ch[1], ch[1], KILN_ELT_ADD)) : NULL;
    bool ok = mark(net, r1, "r1") && mark(net, r2, "r2") && mark(net, sl, "sl") && mark(net, tr, "tr") &&
              mark(net, sm, "sm") && mark(net, neg, "s0") && mark(net, back, "s1") && mark(net, wb, "wb");
    CHECK(ok, "pointwise network: %s", kiln_last_error());
    return net;
}

/* Matrix products: a fully connected layer with GELU, batched MatMul by a constant and
 * by an input, Gemm with a broadcast C. */
static kiln_network *make_matmul(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(2, (int64_t[]){5, 40}));
    kiln_tensor *a = kiln_network_add_input(net, "a", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){2, 3, 8, 16}));
    kiln_tensor *p = kiln_network_add_input(net, "p", KILN_FLOAT32, kiln_dims_make(3, (int64_t[]){4, 8, 16}));
    kiln_tensor *q = kiln_network_add_input(net, "q", KILN_FLOAT32, kiln_dims_make(3, (int64_t[]){4, 16, 24}));
    kiln_tensor *fc = out0(kiln_network_add_fully_connected(net, x, 24, wts(rnd(960, -0.2f, 0.2f), 960),
                                                            wts(rnd(24, -0.2f, 0.2f), 24)));
    fc = act(net, fc, KILN_ACT_GELU_ERF);
    kiln_tensor *w = out0(kiln_network_add_constant(net, kiln_dims_make(2, (int64_t[]){16, 12}), wts(rnd(192, -0.3f, 0.3f), 192)));
    kiln_tensor *m1 = w ? out0(kiln_network_add_matmul(net, a, w)) : NULL;
    kiln_tensor *m2 = out0(kiln_network_add_matmul(net, p, q));
    kiln_tensor *cc = out0(kiln_network_add_constant(net, kiln_dims_make(2, (int64_t[]){5, 1}), wts(rnd(5, -1, 1), 5)));
    kiln_tensor *wt = out0(kiln_network_add_constant(net, kiln_dims_make(2, (int64_t[]){8, 40}), wts(rnd(320, -0.2f, 0.2f), 320)));
    kiln_gemm_desc gd = {.trans_a = 0, .trans_b = 1, .alpha = 0.5f, .beta = 2.0f};
    kiln_tensor *gm = cc && wt ? out0(kiln_network_add_gemm(net, x, wt, cc, &gd)) : NULL;
    bool ok = mark(net, fc, "fc") && mark(net, m1, "m1") && mark(net, m2, "m2") && mark(net, gm, "gm");
    CHECK(ok, "matmul network: %s", kiln_last_error());
    return net;
}

/* Constants read by float16 point-wise layers (YOLOv5's anchor grids): stored as float16
 * at build, no reformat at run time; one beyond float16's range stays float32. */
static kiln_network *make_consts(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *a = kiln_network_add_input(net, "a", KILN_FLOAT32, kiln_dims_make(3, (int64_t[]){2, 6, 16}));
    kiln_tensor *w = out0(kiln_network_add_constant(net, kiln_dims_make(2, (int64_t[]){16, 16}), wts(rnd(256, -0.3f, 0.3f), 256)));
    kiln_tensor *m = w ? out0(kiln_network_add_matmul(net, a, w)) : NULL;
    kiln_tensor *g = out0(kiln_network_add_constant(net, kiln_dims_make(3, (int64_t[]){2, 6, 16}), wts(rnd(192, -4, 4), 192)));
    kiln_tensor *k = out0(kiln_network_add_constant(net, kiln_dims_make(3, (int64_t[]){1, 6, 16}), wts(rnd(96, 0.5f, 2), 96)));
    kiln_tensor *s1 = m && g ? out0(kiln_network_add_elementwise(net, m, g, KILN_ELT_ADD)) : NULL;
    kiln_tensor *s2 = s1 && k ? out0(kiln_network_add_elementwise(net, s1, k, KILN_ELT_MUL)) : NULL;
    float *big = (float *)rnd(96, -1, 1); /* the test's own pool array */
    big[7] = 1e6f;
    kiln_tensor *h = out0(kiln_network_add_constant(net, kiln_dims_make(3, (int64_t[]){1, 6, 16}), wts(big, 96)));
    kiln_tensor *s3 = s2 && h ? out0(kiln_network_add_elementwise(net, s2, h, KILN_ELT_MUL)) : NULL;
    kiln_tensor *s4 = s3 ? out0(kiln_network_add_elementwise(net, s3, h, KILN_ELT_DIV)) : NULL;
    bool ok = mark(net, s2, "s2") && mark(net, s4, "s4");
    CHECK(ok, "constants network: %s", kiln_last_error());
    return net;
}

/* Values beyond float16's range in the middle: a convolution with huge weights (outputs in
 * the tens of thousands), then one that scales them back down. */
static kiln_network *make_overflow(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 8, 10, 10));
    kiln_conv_desc d = {.out_channels = 8, .kernel = {3, 3}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *big = kiln_network_add_convolution(net, x, &d, wts(rnd(576, -20000, 20000), 576), wts(NULL, 0));
    if (big) kiln_layer_set_name(big, "big");
    kiln_layer *back = big ? kiln_network_add_convolution(net, kiln_layer_output(big, 0), &d,
                                                          wts(rnd(576, -2e-4f, 2e-4f), 576), wts(rnd(8, -0.2f, 0.2f), 8))
                           : NULL;
    if (back) kiln_layer_set_name(back, "back");
    kiln_tensor *y = act(net, back ? kiln_layer_output(back, 0) : NULL, KILN_ACT_RELU);
    kiln_tensor *z = y ? conv(net, y, 8, 8, 3, 1, NULL, 1, true) : NULL;
    bool ok = mark(net, z, "z");
    CHECK(ok, "overflow network: %s", kiln_last_error());
    return net;
}

/* Strided image stems, where space-to-depth applies (dnn.c): ResNet's 7x7/2, YOLOv5's
 * 6x6/2, a 5x5/2 with asymmetric pads, and on a one-channel image a 3x3/2 and a 4x4/4
 * patchify (a 1x1 kernel after the transform); odd input sizes; two more 7x7/2 of 24 and
 * 72 filters (a second, partial block of 64) concatenated (written into channel slices). */
static kiln_network *make_stems(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 3, 29, 31));
    kiln_tensor *x1 = kiln_network_add_input(net, "x1", KILN_FLOAT32, d4(2, 1, 30, 27));
    static const int64_t p3[4] = {3, 3, 3, 3}, p2[4] = {2, 2, 2, 2}, pa[4] = {2, 1, 1, 2}, p1[4] = {1, 1, 1, 1},
                         p0[4] = {0, 0, 0, 0};
    kiln_tensor *s1 = act(net, conv(net, x, 3, 16, 7, 2, p3, 1, true), KILN_ACT_RELU);
    kiln_tensor *s2 = act(net, conv(net, x, 3, 16, 6, 2, p2, 1, true), KILN_ACT_SIGMOID);
    kiln_tensor *s3 = conv(net, x, 3, 8, 5, 2, pa, 1, false);
    kiln_tensor *s4 = act(net, conv(net, x1, 1, 8, 3, 2, p1, 1, true), KILN_ACT_RELU);
    kiln_tensor *s5 = conv(net, x1, 1, 16, 4, 4, p0, 1, true);
    kiln_tensor *s6 = conv(net, x, 3, 24, 7, 2, p3, 1, true);
    kiln_conv_desc d7 = {.out_channels = 72, .kernel = {7, 7}, .stride = {2, 2}, .pad_begin = {3, 3}, .pad_end = {3, 3}};
    kiln_layer *c7 = kiln_network_add_convolution(net, x, &d7, wts(rnd(72 * 147, -0.2f, 0.2f), 72 * 147),
                                                  wts(rnd(72, -0.2f, 0.2f), 72));
    if (c7) CHECK_OK(kiln_layer_set_name(c7, "stem7"));
    kiln_tensor *s7 = act(net, c7 ? out0(c7) : NULL, KILN_ACT_RELU);
    kiln_tensor *cat_in[2] = {s6, s7};
    kiln_tensor *cat = s6 && s7 ? out0(kiln_network_add_concat(net, cat_in, 2, 1)) : NULL;
    bool ok = mark(net, s1, "s1") && mark(net, s2, "s2") && mark(net, s3, "s3") && mark(net, s4, "s4") &&
              mark(net, s5, "s5") && mark(net, cat, "cat");
    CHECK(ok, "stems network: %s", kiln_last_error());
    return net;
}

/* Stride-1 stems on an RGB image (UNet's and VGG's 3x3, 64 filters; 72 filters: a second,
 * partial block of 64; a 1x1 over 3 channels), the 3x3 two concatenated (kiln's stem
 * kernel writes channel slices), with ReLU, sigmoid and no activation. */
static kiln_network *make_stems_s1(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 3, 20, 37));
    kiln_conv_desc d = {.out_channels = 64, .kernel = {3, 3}, .stride = {1, 1}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *c1 = kiln_network_add_convolution(net, x, &d, wts(rnd(64 * 27, -0.3f, 0.3f), 64 * 27),
                                                  wts(rnd(64, -0.2f, 0.2f), 64));
    if (c1) CHECK_OK(kiln_layer_set_name(c1, "stem"));
    kiln_tensor *t1 = act(net, c1 ? out0(c1) : NULL, KILN_ACT_RELU);
    kiln_tensor *t2 = act(net, conv(net, x, 3, 72, 3, 1, NULL, 1, true), KILN_ACT_SIGMOID);
    kiln_tensor *t3 = conv(net, x, 3, 16, 1, 1, NULL, 1, true);
    kiln_tensor *t4 = act(net, conv(net, x, 3, 16, 3, 1, NULL, 1, false), KILN_ACT_RELU);
    kiln_tensor *cat_in[2] = {t1, t4};
    kiln_tensor *cat = t1 && t4 ? out0(kiln_network_add_concat(net, cat_in, 2, 1)) : NULL;
    bool ok = mark(net, cat, "cat") && mark(net, t2, "t2") && mark(net, t3, "t3");
    CHECK(ok, "stride-1 stems network: %s", kiln_last_error());
    return net;
}

/* Windowed pooling on channels-last float16: 24 channels (the vector kernels: 8 channels a
 * thread; 2x2 and 3x3 max pools unrolled) and 12 (a channel a thread); max and average,
 * padding counted or not, ceil mode, dilation, asymmetric padding. Global pooling (NB_GLOBAL more): average and max over 264
 * channels (8 a thread, a second block of 256 partly used) and average over 12. */
#define NB_POOLS 7
#define NB_GLOBAL 3
static kiln_network *make_pools(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(3, 8, 13, 15));
    kiln_tensor *c24 = act(net, conv(net, x, 8, 24, 3, 1, NULL, 1, true), KILN_ACT_RELU);
    kiln_tensor *c12 = conv(net, x, 8, 12, 1, 1, NULL, 1, true);
    static const kiln_pool_desc d[NB_POOLS] = {
        {.type = KILN_POOL_MAX, .kernel = {3, 3}, .stride = {2, 2}, .pad_begin = {1, 1}, .pad_end = {1, 1}},
        {.type = KILN_POOL_MAX, .kernel = {2, 3}, .stride = {1, 2}, .dilation = {2, 1}, .ceil_mode = 1},
        {.type = KILN_POOL_AVERAGE, .kernel = {3, 3}, .stride = {2, 2}, .pad_begin = {1, 1}, .pad_end = {1, 1},
         .count_include_pad = 1},
        {.type = KILN_POOL_AVERAGE, .kernel = {3, 2}, .stride = {2, 2}, .pad_begin = {1, 0}, .pad_end = {1, 1},
         .ceil_mode = 1},
        {.type = KILN_POOL_MAX, .kernel = {3, 3}, .stride = {1, 1}, .pad_begin = {1, 0}, .pad_end = {2, 1}},
        {.type = KILN_POOL_AVERAGE, .kernel = {3, 3}, .stride = {2, 2}, .pad_begin = {1, 1}, .pad_end = {1, 1}},
        {.type = KILN_POOL_MAX, .kernel = {2, 2}, .stride = {2, 2}},
    };
    bool ok = c24 && c12;
    for (int i = 0; ok && i < NB_POOLS; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        ok = mark(net, out0(kiln_network_add_pooling(net, i < 4 || i == 6 ? c24 : c12, &d[i])), name);
    }
    kiln_tensor *c264 = ok ? act(net, conv(net, x, 8, 264, 1, 1, NULL, 1, true), KILN_ACT_SIGMOID) : NULL;
    const kiln_pool_desc ga = {.type = KILN_POOL_AVERAGE, .global = 1}, gm = {.type = KILN_POOL_MAX, .global = 1};
    ok = ok && c264 && mark(net, out0(kiln_network_add_pooling(net, c264, &ga)), "g0") &&
         mark(net, out0(kiln_network_add_pooling(net, c264, &gm)), "g1") &&
         mark(net, out0(kiln_network_add_pooling(net, c12, &ga)), "g2");
    CHECK(ok, "pools network: %s", kiln_last_error());
    return net;
}

/* Shapes for kiln's implicit-GEMM kernel: 3x3, strided, dilated, asymmetric padding, 1x1,
 * channel counts that are and are not multiples of its tiles, sizes that leave partial
 * tiles, SiLU / LeakyReLU / sigmoid epilogues, bias or none, a residual before the act, and
 * YOLOv5's bottleneck: a residual added after the SiLU (split-K and 1x1). */
static kiln_network *make_igemm(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 16, 11, 13));
    static const int64_t asym[4] = {0, 0, 1, 1};
    kiln_tensor *c1 = act(net, conv(net, x, 16, 24, 3, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_tensor *c2 = act(net, conv(net, c1, 24, 40, 3, 2, asym, 1, true), KILN_ACT_LEAKY_RELU);
    kiln_tensor *c3 = c2 ? conv(net, c2, 40, 40, 1, 1, NULL, 1, true) : NULL;
    kiln_tensor *sum = c3 ? out0(kiln_network_add_elementwise(net, c3, c2, KILN_ELT_ADD)) : NULL;
    kiln_tensor *r3 = act(net, sum, KILN_ACT_SIGMOID);
    kiln_tensor *c4 = NULL, *c5 = NULL;
    if (c1) {
        kiln_conv_desc d = {.out_channels = 136, .kernel = {3, 3}, .stride = {1, 1}, .pad_begin = {2, 2},
                            .pad_end = {2, 2}, .dilation = {2, 2}, .groups = 1};
        int64_t nw = 136 * 24 * 9;
        c4 = out0(kiln_network_add_convolution(net, c1, &d, wts(rnd(nw, -0.07f, 0.07f), nw), wts(NULL, 0)));
        c5 = act(net, conv(net, c1, 24, 16, 1, 2, (const int64_t[4]){0, 0, 0, 0}, 1, true), KILN_ACT_SILU);
    }
    /* a long reduction on a small map (64 channels, 3x3: 576 per output; 2x6x7 outputs):
     * the output tiles leave the GPU idle, so the kernel splits the reduction (split-K) */
    kiln_tensor *c6a = c1 ? conv(net, c1, 24, 64, 1, 2, (const int64_t[4]){0, 0, 0, 0}, 1, true) : NULL;
    kiln_tensor *c6 = act(net, c6a ? conv(net, c6a, 64, 64, 3, 1, NULL, 1, true) : NULL, KILN_ACT_SILU);
    /* y = SiLU(conv(x)) + x: the add is fused into the convolution, after its activation */
    kiln_tensor *c7a = act(net, c6 ? conv(net, c6, 64, 64, 3, 1, NULL, 1, true) : NULL, KILN_ACT_SILU);
    kiln_tensor *c7 = c7a ? out0(kiln_network_add_elementwise(net, c7a, c6, KILN_ELT_ADD)) : NULL;
    kiln_tensor *c8a = act(net, c1 ? conv(net, c1, 24, 24, 1, 1, NULL, 1, true) : NULL, KILN_ACT_SILU);
    kiln_tensor *c8 = c8a ? out0(kiln_network_add_elementwise(net, c1, c8a, KILN_ELT_ADD)) : NULL;
    bool ok = mark(net, r3, "r3") && mark(net, c4, "c4") && mark(net, c5, "c5") && mark(net, c6, "c6") &&
              mark(net, c7, "c7") && mark(net, c8, "c8");
    CHECK(ok, "igemm network: %s", kiln_last_error());
    return net;
}

/* Shapes for kiln's Hopper kernel (wgmma.cu): 3x3 at 64 and 128 channels on a 150-wide map
 * (128-pixel tiles, the second partial), a 40-wide one (tiles of three whole padded rows),
 * no padding, a 1x1 and a 3x1 kernel, bias or none, ReLU / SiLU / LeakyReLU, a residual
 * before the activation and one after it, outputs written into a concat's channel slices;
 * and batch-1-like small maps whose reduction splits: 7x7 maps of two images in one tile,
 * 3x3 over 256 channels (weights that fit shared memory only in slices), 14x14 at 128
 * channels with a residual. */
static kiln_network *make_wgmma(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 64, 9, 150));
    kiln_tensor *x2 = kiln_network_add_input(net, "x2", KILN_FLOAT32, d4(1, 64, 7, 40));
    kiln_tensor *x3 = kiln_network_add_input(net, "x3", KILN_FLOAT32, d4(2, 256, 7, 7));
    kiln_tensor *x4 = kiln_network_add_input(net, "x4", KILN_FLOAT32, d4(1, 128, 14, 14));
    kiln_tensor *k1 = act(net, conv(net, x3, 256, 64, 3, 1, NULL, 1, true), KILN_ACT_RELU);
    kiln_tensor *k2 = act(net, k1 ? conv(net, k1, 64, 128, 1, 1, NULL, 1, true) : NULL, KILN_ACT_SILU);
    kiln_tensor *k3a = conv(net, x4, 128, 128, 3, 1, NULL, 1, true);
    kiln_tensor *k3 = act(net, k3a ? out0(kiln_network_add_elementwise(net, k3a, x4, KILN_ELT_ADD)) : NULL,
                          KILN_ACT_RELU);
    kiln_tensor *c1 = act(net, conv(net, x, 64, 64, 3, 1, NULL, 1, true), KILN_ACT_RELU);
    kiln_tensor *c2 = act(net, conv(net, c1, 64, 128, 3, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_tensor *c3a = c2 ? conv(net, c2, 128, 64, 3, 1, NULL, 1, false) : NULL;
    kiln_tensor *c3 = act(net, c3a ? out0(kiln_network_add_elementwise(net, c3a, c1, KILN_ELT_ADD)) : NULL, KILN_ACT_RELU);
    kiln_tensor *c4a = act(net, c3 ? conv(net, c3, 64, 64, 3, 1, NULL, 1, true) : NULL, KILN_ACT_SILU);
    kiln_tensor *c4 = c4a ? out0(kiln_network_add_elementwise(net, c4a, c3, KILN_ELT_ADD)) : NULL;
    kiln_tensor *c5 = c2 ? conv(net, c2, 128, 64, 1, 1, NULL, 1, true) : NULL;
    kiln_tensor *c6 = c1 ? act(net, conv(net, x, 64, 64, 3, 1, NULL, 1, true), KILN_ACT_RELU) : NULL;
    kiln_tensor *cat_in[2] = {c4, c6};
    kiln_tensor *cat = c4 && c6 ? out0(kiln_network_add_concat(net, cat_in, 2, 1)) : NULL;
    kiln_tensor *c7 = NULL;
    if (cat) { /* named: the refit case replaces its weights */
        kiln_conv_desc d = {.out_channels = 64, .kernel = {3, 3}, .stride = {1, 1}, .pad_begin = {1, 1},
                            .pad_end = {1, 1}, .dilation = {1, 1}, .groups = 1};
        int64_t nw = 64 * 128 * 9;
        kiln_layer *l = kiln_network_add_convolution(net, cat, &d, wts(rnd(nw, -0.03f, 0.03f), nw),
                                                     wts(rnd(64, -0.2f, 0.2f), 64));
        if (l) CHECK_OK(kiln_layer_set_name(l, "conv7"));
        c7 = out0(l);
    }
    kiln_tensor *w1 = act(net, conv(net, x2, 64, 64, 3, 1, NULL, 1, true), KILN_ACT_LEAKY_RELU);
    kiln_tensor *w2 = w1 ? conv(net, w1, 64, 128, 3, 1, (const int64_t[4]){0, 0, 0, 0}, 1, true) : NULL;
    kiln_tensor *w3 = NULL;
    if (w1) {
        kiln_conv_desc d = {.out_channels = 64, .kernel = {3, 1}, .stride = {1, 1}, .pad_begin = {1, 0},
                            .pad_end = {1, 0}, .dilation = {1, 1}, .groups = 1};
        int64_t nw = 64 * 64 * 3;
        w3 = out0(kiln_network_add_convolution(net, w1, &d, wts(rnd(nw, -0.06f, 0.06f), nw), wts(rnd(64, -0.2f, 0.2f), 64)));
    }
    /* two 2x2 stride-2 deconvolutions (a 1x1 product scattered, 64 and 128 output channels)
     * into one concat's channel slices */
    kiln_tensor *u1 = deconv(net, w1, 64, 64, 2, 2, 0, 0, 1), *u2 = deconv(net, w1, 64, 128, 2, 2, 0, 0, 1);
    kiln_tensor *up_in[2] = {u1, u2};
    kiln_tensor *up = u1 && u2 ? out0(kiln_network_add_concat(net, up_in, 2, 1)) : NULL;
    bool ok = mark(net, c5, "c5") && mark(net, c7, "c7") && mark(net, w2, "w2") && mark(net, w3, "w3") &&
              mark(net, up, "up") && mark(net, k2, "k2") && mark(net, k3, "k3");
    CHECK(ok, "wgmma network: %s", kiln_last_error());
    return net;
}

/* Output channel counts that are not multiples of 8 (YOLOv5's 255-channel heads): kiln's
 * implicit GEMM stores those one element at a time, its split-K reduction too. */
static kiln_network *make_igemm_odd(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 16, 9, 10));
    kiln_tensor *c1 = conv(net, x, 16, 13, 3, 1, NULL, 1, true);                              /* bias only */
    kiln_tensor *c2a = act(net, conv(net, x, 16, 13, 1, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_tensor *c2 = c1 && c2a ? out0(kiln_network_add_elementwise(net, c2a, c1, KILN_ELT_ADD)) : NULL;
    /* 2 x 3 x 3 outputs, 3x3 over 64 channels: a split reduction, 21 channels */
    kiln_tensor *c3a = conv(net, x, 16, 64, 3, 3, (const int64_t[4]){0, 0, 0, 0}, 1, true);
    kiln_tensor *c3 = act(net, c3a ? conv(net, c3a, 64, 21, 3, 1, NULL, 1, true) : NULL, KILN_ACT_SIGMOID);
    bool ok = mark(net, c2, "c2") && mark(net, c3, "c3");
    CHECK(ok, "igemm odd network: %s", kiln_last_error());
    return net;
}

/* Concats along channels-last channels, as YOLOv5 and DeepLabV3+ have them: a bottleneck
 * with its residual after the SiLU beside a 1x1 branch (C3), a convolution and three max
 * pools that read each other (SPPF), nearest and linear upsamplings beside a convolution,
 * a strided convolution beside a tensor the upsamplings also read, DeepLabV3+'s image-pool
 * branch (global pooling, 1x1 convolution, bilinear from one pixel); each concat's inputs can
 * be written into channel slices of its output. And two that cannot: a 4-channel piece
 * leaves the next one 8 bytes into a pixel (not 16-byte aligned); a tensor a convolution
 * also reads (convolutions read dense inputs). Those concats copy. */
static kiln_network *make_concat_slices(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 16, 12, 12));
    kiln_tensor *x2 = kiln_network_add_input(net, "x2", KILN_FLOAT32, d4(2, 16, 24, 24));
    /* C3 */
    kiln_tensor *a = act(net, conv(net, x, 16, 16, 1, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_tensor *ma = act(net, a ? conv(net, a, 16, 16, 3, 1, NULL, 1, true) : NULL, KILN_ACT_SILU);
    kiln_tensor *m = ma ? out0(kiln_network_add_elementwise(net, ma, a, KILN_ELT_ADD)) : NULL;
    kiln_tensor *cv2 = act(net, conv(net, x, 16, 8, 1, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_tensor *p1[2] = {m, cv2};
    kiln_tensor *cat1 = m && cv2 ? out0(kiln_network_add_concat(net, p1, 2, 1)) : NULL;
    kiln_tensor *y1 = cat1 ? conv(net, cat1, 24, 16, 1, 1, NULL, 1, true) : NULL;
    /* SPPF */
    kiln_tensor *sp = act(net, conv(net, x, 16, 16, 1, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_pool_desc mp = {.type = KILN_POOL_MAX, .kernel = {5, 5}, .stride = {1, 1}, .pad_begin = {2, 2}, .pad_end = {2, 2}};
    kiln_tensor *q1 = sp ? out0(kiln_network_add_pooling(net, sp, &mp)) : NULL;
    kiln_tensor *q2 = q1 ? out0(kiln_network_add_pooling(net, q1, &mp)) : NULL;
    kiln_tensor *q3 = q2 ? out0(kiln_network_add_pooling(net, q2, &mp)) : NULL;
    kiln_tensor *p2[4] = {sp, q1, q2, q3};
    kiln_tensor *cat2 = q3 ? out0(kiln_network_add_concat(net, p2, 4, 1)) : NULL;
    kiln_tensor *y2 = cat2 ? conv(net, cat2, 64, 16, 1, 1, NULL, 1, true) : NULL;
    /* head: upsamplings beside convolutions */
    kiln_tensor *t = act(net, conv(net, x, 16, 8, 1, 1, NULL, 1, true), KILN_ACT_RELU);
    kiln_resize_desc rn = {.mode = KILN_RESIZE_NEAREST, .coord = KILN_COORD_ASYMMETRIC, .nb_scales = 4,
                           .scales = {1, 1, 2, 2}};
    kiln_resize_desc rl = {.mode = KILN_RESIZE_LINEAR, .coord = KILN_COORD_HALF_PIXEL, .nb_scales = 4,
                           .scales = {1, 1, 2, 2}};
    kiln_tensor *un = t ? out0(kiln_network_add_resize(net, t, &rn)) : NULL;
    kiln_tensor *ul = t ? out0(kiln_network_add_resize(net, t, &rl)) : NULL;
    kiln_tensor *q = act(net, conv(net, x2, 16, 16, 3, 1, NULL, 1, true), KILN_ACT_SILU);
    /* DeepLabV3+'s image-pool branch: global pooling (max here), a 1x1 convolution,
     * bilinear back to the full size */
    kiln_pool_desc gp = {.type = KILN_POOL_MAX, .global = 1};
    kiln_tensor *g = out0(kiln_network_add_pooling(net, x2, &gp));
    kiln_tensor *gc = g ? act(net, conv(net, g, 16, 8, 1, 1, NULL, 1, true), KILN_ACT_RELU) : NULL;
    kiln_resize_desc rg = {.mode = KILN_RESIZE_LINEAR, .coord = KILN_COORD_ALIGN_CORNERS, .nb_scales = 4,
                           .scales = {1, 1, 24, 24}};
    kiln_tensor *gu = gc ? out0(kiln_network_add_resize(net, gc, &rg)) : NULL;
    kiln_tensor *p3[4] = {un, q, ul, gu};
    kiln_tensor *cat3 = un && q && ul && gu ? out0(kiln_network_add_concat(net, p3, 4, 1)) : NULL;
    kiln_tensor *y3 = cat3 ? conv(net, cat3, 40, 8, 3, 1, NULL, 1, true) : NULL;
    kiln_tensor *d = act(net, conv(net, x2, 16, 8, 3, 2, (const int64_t[4]){1, 1, 1, 1}, 1, true), KILN_ACT_SILU);
    kiln_tensor *p4[2] = {d, t};
    kiln_tensor *cat4 = d && t ? out0(kiln_network_add_concat(net, p4, 2, 1)) : NULL;
    kiln_tensor *y4 = cat4 ? conv(net, cat4, 16, 8, 1, 1, NULL, 1, true) : NULL;
    /* misaligned: copies */
    kiln_tensor *n4 = conv(net, x, 16, 4, 1, 1, NULL, 1, true), *n12 = conv(net, x, 16, 12, 3, 1, NULL, 1, true);
    kiln_tensor *p5[2] = {n4, n12};
    kiln_tensor *cat5 = n4 && n12 ? out0(kiln_network_add_concat(net, p5, 2, 1)) : NULL;
    kiln_tensor *y5 = cat5 ? conv(net, cat5, 16, 8, 1, 1, NULL, 1, true) : NULL;
    /* read by a convolution too: copies */
    kiln_tensor *r1 = act(net, conv(net, x, 16, 8, 1, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_tensor *r2 = r1 ? conv(net, r1, 8, 8, 3, 1, NULL, 1, true) : NULL;
    kiln_tensor *p6[2] = {r1, r2};
    kiln_tensor *cat6 = r1 && r2 ? out0(kiln_network_add_concat(net, p6, 2, 1)) : NULL;
    /* and a bilinear upsampling of 12 channels (one element a thread) */
    kiln_tensor *c6 = cat6 ? conv(net, cat6, 16, 12, 1, 1, NULL, 1, true) : NULL;
    kiln_resize_desc r3 = {.mode = KILN_RESIZE_LINEAR, .coord = KILN_COORD_HALF_PIXEL, .nb_scales = 4,
                           .scales = {1, 1, 2.5f, 2}};
    kiln_tensor *y6 = c6 ? out0(kiln_network_add_resize(net, c6, &r3)) : NULL;
    /* 2 x 3 x 3 outputs of a 3x3 over 64 channels (the implicit GEMM splits the reduction:
     * its reduce kernel writes the slice) beside a 1x1 */
    kiln_tensor *x3 = kiln_network_add_input(net, "x3", KILN_FLOAT32, d4(2, 64, 3, 3));
    kiln_conv_desc d7 = {.out_channels = 16, .kernel = {3, 3}, .stride = {1, 1}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *l7 = x3 ? kiln_network_add_convolution(net, x3, &d7, wts(rnd(16 * 64 * 9, -0.04f, 0.04f), 16 * 64 * 9),
                                                       wts(rnd(16, -0.2f, 0.2f), 16))
                        : NULL;
    if (l7) CHECK_OK(kiln_layer_set_name(l7, "split7"));
    kiln_tensor *a7 = out0(l7);
    kiln_tensor *b7 = act(net, conv(net, x3, 64, 8, 1, 1, NULL, 1, true), KILN_ACT_SILU);
    kiln_tensor *p7[2] = {a7, b7};
    kiln_tensor *cat7 = a7 && b7 ? out0(kiln_network_add_concat(net, p7, 2, 1)) : NULL;
    kiln_tensor *y7 = cat7 ? conv(net, cat7, 24, 8, 1, 1, NULL, 1, true) : NULL;
    bool ok = mark(net, y1, "y1") && mark(net, y2, "y2") && mark(net, y3, "y3") && mark(net, y4, "y4") &&
              mark(net, y5, "y5") && mark(net, y6, "y6") && mark(net, y7, "y7");
    CHECK(ok, "concat slices network: %s", kiln_last_error());
    return net;
}

/* ---- building and running ---- */

typedef struct io_set {
    int nin, nout;
    const char *in_names[MAX_IO], *out_names[MAX_IO];
    float *in[MAX_IO], *out[MAX_IO];
    int64_t in_n[MAX_IO], out_n[MAX_IO];
} io_set;

static void io_free(io_set *s) {
    for (int i = 0; i < s->nin; i++) free(s->in[i]);
    for (int j = 0; j < s->nout; j++) free(s->out[j]);
    memset(s, 0, sizeof *s);
}

/* Random inputs and output buffers for an engine's I/O. */
static void io_make(const kiln_engine *e, io_set *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < kiln_engine_num_io(e); i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dims d;
        CHECK_OK(kiln_engine_io_dims(e, name, &d));
        int64_t n = kiln_dims_volume(&d);
        if (kiln_engine_io_mode(e, name) == KILN_IO_INPUT && s->nin < MAX_IO) {
            s->in_names[s->nin] = name;
            s->in_n[s->nin] = n;
            s->in[s->nin++] = th_rand_array(n, -1, 1);
        } else if (s->nout < MAX_IO) {
            s->out_names[s->nout] = name;
            s->out_n[s->nout] = n;
            s->out[s->nout++] = malloc((size_t)(n ? n : 1) * sizeof(float));
        }
    }
}

/* One run with host buffers; inputs taken from `src` by name when given. */
static kiln_status run_host(kiln_engine *e, io_set *s, const io_set *src) {
    kiln_context *c = NULL;
    kiln_status st = kiln_context_create(e, &c);
    if (st == KILN_OK) st = kiln_context_set_io_memory(c, KILN_MEMORY_HOST);
    for (int i = 0; st == KILN_OK && i < s->nin; i++) {
        float *v = s->in[i];
        for (int k = 0; src && k < src->nin; k++)
            if (!strcmp(src->in_names[k], s->in_names[i]) && src->in_n[k] == s->in_n[i]) v = src->in[k];
        if (v != s->in[i]) memcpy(s->in[i], v, (size_t)s->in_n[i] * sizeof(float));
        st = kiln_context_set_tensor_address(c, s->in_names[i], s->in[i]);
    }
    for (int j = 0; st == KILN_OK && j < s->nout; j++) {
        memset(s->out[j], 0xFF, (size_t)s->out_n[j] * sizeof(float));
        st = kiln_context_set_tensor_address(c, s->out_names[j], s->out[j]);
    }
    if (st == KILN_OK) st = kiln_context_execute(c);
    kiln_context_destroy(c);
    return st;
}

/* Compares every output of `got` with the same-named output of `ref`. */
static void compare(const char *what, const io_set *got, const io_set *ref, double tol) {
    for (int j = 0; j < got->nout; j++) {
        int k = 0;
        while (k < ref->nout && strcmp(ref->out_names[k], got->out_names[j])) k++;
        CHECK(k < ref->nout && ref->out_n[k] == got->out_n[j], "%s: output %s in both", what, got->out_names[j]);
        if (k >= ref->nout || ref->out_n[k] != got->out_n[j]) continue;
        int64_t n = ref->out_n[k];
        double *r = malloc((size_t)(n ? n : 1) * sizeof *r);
        for (int64_t i = 0; i < n; i++) r[i] = ref->out[k][i];
        char name[128];
        snprintf(name, sizeof name, "%s: %s", what, got->out_names[j]);
        double err = th_check_close(name, got->out[j], r, n, tol);
        if (getenv("KILN_TEST_VERBOSE")) printf("  %-32s rel. error %.3g\n", name, err);
        free(r);
    }
}

/* Layers whose kernel name contains `part`. */
static int count_kernels(const kiln_engine *e, const char *part, const char *type) {
    int n = 0;
    for (int i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) != KILN_OK) continue;
        if (strstr(li.kernel, part) && (!type || !strcmp(li.type, type))) n++;
    }
    return n;
}

/* Layers whose fused epilogue is `fused` ("SiLU+Add"). */
static int count_fused(const kiln_engine *e, const char *fused) {
    int n = 0;
    for (int i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) == KILN_OK && !strcmp(li.fused, fused)) n++;
    }
    return n;
}

/* Whether a reloaded engine runs the same kernel in every layer as the one it came from. */
static bool same_kernels(const kiln_engine *e, const kiln_engine *re) {
    int n = kiln_engine_num_layers(e);
    if (!re || kiln_engine_num_layers(re) != n) return false;
    for (int i = 0; i < n; i++) {
        kiln_layer_info a, c;
        if (kiln_engine_layer_info(e, i, &a) != KILN_OK || kiln_engine_layer_info(re, i, &c) != KILN_OK ||
            strcmp(a.kernel, c.kernel))
            return false;
    }
    return true;
}

static void print_layers(const char *what, const kiln_engine *e) {
    if (!getenv("KILN_TEST_VERBOSE")) return;
    printf("%s: %d layers\n", what, kiln_engine_num_layers(e));
    for (int i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) == KILN_OK)
            printf("  %-40s %-12s %-40s %s%s\n", li.name, li.type, li.kernel, kiln_dtype_name(li.precision),
                   *li.fused ? " +act" : "");
    }
}

/* Builds make() for the CPU (float32) and for CUDA (fp16 or not), runs both on the same
 * inputs and compares. Returns the CUDA engine (caller destroys) for further checks. */
static kiln_engine *compare_case(const char *what, kiln_builder *b, make_fn make, bool fp16, double tol) {
    kiln_network *ncpu = make(b, 77), *ngpu = make(b, 77);
    kiln_status st;
    kiln_engine *ecpu = build(b, ncpu, KILN_DEVICE_CPU, false, NULL);
    kiln_engine *egpu = build(b, ngpu, KILN_DEVICE_CUDA, fp16, &st);
    CHECK(ecpu && egpu, "%s: build: %s", what, kiln_last_error());
    if (ecpu && egpu) {
        io_set rc, rg;
        th_seed(99);
        io_make(ecpu, &rc);
        io_make(egpu, &rg);
        CHECK_OK(run_host(ecpu, &rc, NULL));
        kiln_status rs = run_host(egpu, &rg, &rc);
        CHECK(rs == KILN_OK, "%s: CUDA run: %s", what, kiln_last_error());
        if (rs == KILN_OK) compare(what, &rg, &rc, tol);
        print_layers(what, egpu);
        io_free(&rc);
        io_free(&rg);
    }
    kiln_engine_destroy(ecpu);
    kiln_network_destroy(ncpu);
    kiln_network_destroy(ngpu);
    return egpu;
}

/* Space-to-depth stems, forced on and off (KILN_CONV_S2D) and as timed; each within the
 * float16 tolerance of the CPU's float32, and a plan keeps the choice. */
static void test_stems_fp16(kiln_builder *b) {
    static const char *const modes[] = {"on", "off", NULL};
    for (int m = 0; m < 3; m++) {
        if (modes[m]) setenv("KILN_CONV_S2D", modes[m], 1);
        else unsetenv("KILN_CONV_S2D");
        char what[64];
        snprintf(what, sizeof what, "fp16 stems (s2d %s)", modes[m] ? modes[m] : "timed");
        kiln_engine *e = compare_case(what, b, make_stems, true, FP16_TOL);
        if (e) {
            int convs = count_kernels(e, "", "Convolution"), s2d = count_kernels(e, "_s2d", "Convolution");
            CHECK(convs == 7, "%s: %d convolutions", what, convs);
            if (m == 0) CHECK(s2d == 7, "%s: %d of 7 convolutions run space-to-depth", what, s2d);
            if (m == 1) CHECK(s2d == 0, "%s: %d convolutions run space-to-depth", what, s2d);
            if (m < 2) { /* the plan's stored choice decides, not the variable: the same kernels */
                unsetenv("KILN_CONV_S2D");
                kiln_engine *re = th_reload(e, what);
                CHECK(same_kernels(e, re) && count_kernels(re, "_s2d", "Convolution") == s2d,
                      "%s: the reloaded plan runs the same kernels", what);
                kiln_engine_destroy(re);
            }
        }
        kiln_engine_destroy(e);
    }
    unsetenv("KILN_CONV_S2D");
}

static void test_pools_fp16(kiln_builder *b) {
    kiln_engine *e = compare_case("fp16 pools", b, make_pools, true, FP16_TOL);
    if (e) {
        int n = count_kernels(e, "_f16_nhwc", "Pooling");
        CHECK(n == NB_POOLS + NB_GLOBAL, "fp16 pools: %d of %d pools run channels-last float16", n,
              NB_POOLS + NB_GLOBAL);
    }
    kiln_engine_destroy(e);
}

/* Three networks built with one convolution path forced (VAR=only: taken wherever it
 * runs): each within the float16 tolerance of the CPU's float32, `want` convolutions on
 * kernels named KERNEL* (exactly, or at least with at_least), and a reloaded plan running
 * the same kernels without the variable (the plan's stored choice decides). */
static void forced_path_cases_n(kiln_builder *b, const char *var, const char *val, const char *kernel,
                                const char *path, const make_fn *makes, const char *const *names, const int *want,
                                int count, bool at_least) {
    setenv(var, val, 1);
    for (int m = 0; m < count; m++) {
        kiln_engine *e = compare_case(names[m], b, makes[m], true, FP16_TOL);
        if (e) {
            int n = count_kernels(e, kernel, "Convolution");
            CHECK(at_least ? n >= want[m] : n == want[m], "%s: %d convolutions run %s (want %s%d)", names[m], n, path,
                  at_least ? "at least " : "", want[m]);
            unsetenv(var);
            kiln_engine *re = th_reload(e, names[m]);
            CHECK(same_kernels(e, re), "%s: the reloaded plan runs the same kernels", names[m]);
            kiln_engine_destroy(re);
            setenv(var, val, 1);
        }
        kiln_engine_destroy(e);
    }
    unsetenv(var);
}

static void forced_path_cases(kiln_builder *b, const char *var, const char *kernel, const char *path,
                              const make_fn *makes, const char *const *names, const int *want, bool at_least) {
    forced_path_cases_n(b, var, "only", kernel, path, makes, names, want, 3, at_least);
}

/* kiln's implicit-GEMM kernel wherever it applies: every one-group convolution (stems:
 * padded to 8 channels or transformed), split-K included (make_igemm's c6). */
static void test_igemm_fp16(kiln_builder *b) {
    const make_fn makes[3] = {make_igemm, make_block, make_stems};
    const char *const names[3] = {"fp16 igemm shapes", "fp16 igemm block", "fp16 igemm stems"};
    const int want[3] = {9, 3, 7};
    forced_path_cases(b, "KILN_CONV_IGEMM", "cuda.kiln_igemm_", "kiln's implicit GEMM", makes, names, want, true);
    /* make_igemm's c6 splits on every tile shape: the split-K names say so */
    setenv("KILN_CONV_IGEMM", "only", 1);
    kiln_engine *e = compare_case("fp16 igemm split-K", b, make_igemm, true, FP16_TOL);
    if (e) CHECK(count_kernels(e, "_splitk", "Convolution") >= 1, "fp16 igemm: a split-K layer");
    kiln_engine_destroy(e);
    e = compare_case("fp16 igemm odd channels", b, make_igemm_odd, true, FP16_TOL);
    if (e) {
        int n = count_kernels(e, "cuda.kiln_igemm_", "Convolution");
        CHECK(n == 4, "fp16 igemm odd channels: %d of 4 convolutions run kiln's implicit GEMM", n);
        CHECK(count_kernels(e, "_splitk", "Convolution") >= 1, "fp16 igemm odd channels: a split-K layer");
        CHECK(count_kernels(e, "", "Elementwise") == 0, "fp16 igemm odd channels: the residual add is fused");
    }
    kiln_engine_destroy(e);
    unsetenv("KILN_CONV_IGEMM");
}

/* kiln's Hopper kernel (KILN_CONV_IGEMM=wgmma: its configurations wherever one applies)
 * on make_wgmma's shapes: within the float16 tolerance of the CPU, all thirteen of its
 * convolutions on the kernel where the device is a compute capability 9.0 Hopper, a
 * reloaded plan running the same kernels, and a refit read in the kernel's own weight
 * layout; then its split configurations alone (KILN_CONV_WGMMA=split): the twelve
 * convolutions whose reduction can split (all but the 1x1 over 64 channels), each with its
 * partial sums reduced by the epilogue's kernel. */
static void refit_case_val(kiln_builder *b, make_fn make, const char *var, const char *val, const char *layer,
                           int64_t nk, float kr, int64_t nb, unsigned seed);

static void test_wgmma_fp16(kiln_builder *b) {
    int dev = 0, major = 0, minor = 0;
    bool hopper = cudaGetDevice(&dev) == cudaSuccess &&
                  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
                  major == 9 && minor == 0;
    const make_fn makes[1] = {make_wgmma};
    const char *const names[1] = {"fp16 wgmma shapes"};
    const int want[1] = {hopper ? 13 : 0};
    if (!hopper) printf("not a compute capability 9.0 device: kiln's Hopper kernel is not a candidate here\n");
    forced_path_cases_n(b, "KILN_CONV_IGEMM", "wgmma", "cuda.kiln_wgmma_", "kiln's Hopper kernel", makes, names, want,
                        1, false);
    setenv("KILN_CONV_WGMMA", "split", 1);
    const char *const split_names[1] = {"fp16 wgmma split-K"};
    const int want_split[1] = {hopper ? 12 : 0};
    forced_path_cases_n(b, "KILN_CONV_IGEMM", "wgmma", "cuda.kiln_wgmma_", "kiln's Hopper kernel", makes, split_names,
                        want_split, 1, false);
    setenv("KILN_CONV_IGEMM", "wgmma", 1);
    kiln_engine *se = compare_case("fp16 wgmma split-K names", b, make_wgmma, true, FP16_TOL);
    unsetenv("KILN_CONV_IGEMM");
    unsetenv("KILN_CONV_WGMMA");
    if (se) {
        int n = 0;
        for (int i = 0; i < kiln_engine_num_layers(se); i++) {
            kiln_layer_info li;
            if (kiln_engine_layer_info(se, i, &li) == KILN_OK && strstr(li.kernel, "cuda.kiln_wgmma_") &&
                strstr(li.kernel, "_splitk"))
                n++;
        }
        CHECK(n == (hopper ? 12 : 0), "fp16 wgmma split-K: %d of 12 convolutions split on kiln's Hopper kernel", n);
    }
    kiln_engine_destroy(se);
    /* its deconvolutions: both on the kernel, their concat written in place */
    setenv("KILN_CONV_IGEMM", "wgmma", 1);
    kiln_engine *e = compare_case("fp16 wgmma deconvolutions", b, make_wgmma, true, FP16_TOL);
    unsetenv("KILN_CONV_IGEMM");
    if (e) {
        int n = count_kernels(e, "cuda.kiln_wgmma_deconv_", "Deconvolution");
        CHECK(n == (hopper ? 2 : 0), "fp16 wgmma deconvolutions: %d of 2 on kiln's Hopper kernel", n);
        CHECK(count_kernels(e, "", "Concat") == 0, "fp16 wgmma deconvolutions: the concats are written in place");
    }
    kiln_engine_destroy(e);
    if (hopper) refit_case_val(b, make_wgmma, "KILN_CONV_IGEMM", "wgmma", "conv7", 64 * 128 * 9, 0.05f, 64, 8);
}

/* Builds make() for the CPU and, with var=only, for CUDA float16; refits layer's kernel
 * (nk values in [-kr, kr]) and bias (nb values) with the same new values on both and
 * compares their runs: the path var forces reads the refitted weights in its own layout. */
static void refit_case_val(kiln_builder *b, make_fn make, const char *var, const char *val, const char *layer,
                           int64_t nk, float kr, int64_t nb, unsigned seed) {
    char what[96], kname[64], bname[64];
    snprintf(what, sizeof what, "fp16 %s after refit (%s=%s)", layer, var, val);
    snprintf(kname, sizeof kname, "%s.kernel", layer);
    snprintf(bname, sizeof bname, "%s.bias", layer);
    setenv(var, val, 1);
    kiln_network *ncpu = make(b, 77), *ngpu = make(b, 77);
    kiln_engine *ecpu = build(b, ncpu, KILN_DEVICE_CPU, false, NULL), *egpu = build(b, ngpu, KILN_DEVICE_CUDA, true, NULL);
    unsetenv(var);
    CHECK(ecpu && egpu, "%s: build: %s", what, kiln_last_error());
    if (ecpu && egpu) {
        th_seed(seed);
        const float *nw = rnd(nk, -kr, kr), *nbias = rnd(nb, -0.2f, 0.2f);
        for (int k = 0; k < 2; k++) {
            kiln_engine *e = k ? egpu : ecpu;
            CHECK_OK(kiln_engine_refit(e, kname, wts(nw, nk)));
            CHECK_OK(kiln_engine_refit(e, bname, wts(nbias, nb)));
        }
        io_set rc, rg;
        th_seed(99);
        io_make(ecpu, &rc);
        io_make(egpu, &rg);
        CHECK_OK(run_host(ecpu, &rc, NULL));
        CHECK_OK(run_host(egpu, &rg, &rc));
        compare(what, &rg, &rc, FP16_TOL);
        io_free(&rc);
        io_free(&rg);
    }
    kiln_engine_destroy(ecpu);
    kiln_engine_destroy(egpu);
    kiln_network_destroy(ncpu);
    kiln_network_destroy(ngpu);
}

static void refit_case(kiln_builder *b, make_fn make, const char *var, const char *layer, int64_t nk, float kr,
                       int64_t nb, unsigned seed) {
    refit_case_val(b, make, var, "only", layer, nk, kr, nb, seed);
}

/* The upsampling deconvolutions on kiln's GEMM (forced, then as timed) and on cuDNN
 * (KILN_CONV_IGEMM=off): within the float16 tolerance of the CPU, the skip concat not
 * running (the deconvolution writes its channel slice on both paths), a reloaded plan the
 * same; and a refit of the GEMM's weights (its own layout) matching the CPU's refit. */
static void test_upsample_fp16(kiln_builder *b) {
    /* KILN_CONV_IGEMM=only, timed, off (with the graph API off: cuDNN's legacy call), and
     * KILN_CONV_GRAPH=only (the backward-data graph with the bias fused) */
    static const char *const vals[] = {"only", NULL, "off", "off"};
    for (int v = 0; v < 4; v++) {
        char what[80];
        snprintf(what, sizeof what, "fp16 upsample (%s=%s)", v == 3 ? "KILN_CONV_GRAPH" : "KILN_CONV_IGEMM",
                 v == 3 ? "only" : vals[v] ? vals[v] : "timed");
        if (vals[v]) setenv("KILN_CONV_IGEMM", vals[v], 1);
        else unsetenv("KILN_CONV_IGEMM");
        if (v >= 2) setenv("KILN_CONV_GRAPH", v == 3 ? "only" : "off", 1);
        kiln_engine *e = compare_case(what, b, make_upsample, true, FP16_TOL);
        if (e) {
            int gemm = count_kernels(e, "cuda.kiln_igemm_deconv_", "Deconvolution");
            int graph = count_kernels(e, "cuda.cudnn_graph_dgrad_", "Deconvolution");
            CHECK(count_kernels(e, "", "Deconvolution") == 3 && count_kernels(e, "_f16_nhwc", "Deconvolution") == 3,
                  "%s: three float16 channels-last deconvolutions", what);
            if (v == 0) CHECK(gemm == 2, "%s: %d of the 2 stride-sized deconvolutions on kiln's GEMM", what, gemm);
            if (v == 2) CHECK(gemm == 0 && graph == 0, "%s: %d on kiln's GEMM, %d on the graph API", what, gemm, graph);
            /* cuDNN 9.19 on an H200 has an engine for one of the two (as measured) */
            if (v == 3) CHECK(graph >= 1, "%s: %d of the 2 unpadded deconvolutions on the graph API", what, graph);
            CHECK(count_kernels(e, "", "Concat") == 0, "%s: the skip concat is written in place", what);
            unsetenv("KILN_CONV_IGEMM");
            unsetenv("KILN_CONV_GRAPH");
            kiln_engine *re = th_reload(e, what);
            CHECK(same_kernels(e, re), "%s: the reloaded plan runs the same kernels", what);
            kiln_engine_destroy(re);
        }
        kiln_engine_destroy(e);
        unsetenv("KILN_CONV_IGEMM");
        unsetenv("KILN_CONV_GRAPH");
    }
    /* refit on kiln's GEMM and on the graph API: new weights and bias for "up", CPU and
     * CUDA alike */
    refit_case(b, make_upsample, "KILN_CONV_IGEMM", "up", 16 * 24 * 4, 0.25f, 24, 5);
    refit_case(b, make_upsample, "KILN_CONV_GRAPH", "up", 16 * 24 * 4, 0.25f, 24, 5);
}

/* kiln's stem kernel (few input channels read unpadded): forced on every stem it takes
 * (all of make_stems': the stride-2 ones in its strided form, the 4x4/4 packed;
 * space-to-depth off so the plain convolution is the one prepared), off, and as timed;
 * within the float16 tolerance of the CPU, the concats written in place, a reloaded plan
 * the same, and refits of its weights (both forms) matching the CPU's. */
static void test_stem_kernel_fp16(kiln_builder *b) {
    static const char *const vals[] = {"only", "off", NULL};
    setenv("KILN_CONV_S2D", "off", 1);
    for (int v = 0; v < 3; v++) {
        if (vals[v]) setenv("KILN_CONV_STEM", vals[v], 1);
        else unsetenv("KILN_CONV_STEM");
        for (int m = 0; m < 2; m++) {
            char what[96];
            snprintf(what, sizeof what, "fp16 %s (KILN_CONV_STEM=%s)", m ? "strided stems" : "stride-1 stems",
                     vals[v] ? vals[v] : "timed");
            kiln_engine *e = compare_case(what, b, m ? make_stems : make_stems_s1, true, FP16_TOL);
            if (e) {
                int n = count_kernels(e, "cuda.kiln_stem", "Convolution"), want = m ? 7 : 4;
                int n2 = count_kernels(e, "cuda.kiln_stem_s2", "Convolution");
                if (v == 0) CHECK(n == want, "%s: %d of %d convolutions on the stem kernel", what, n, want);
                if (v == 0) CHECK(n2 == (m ? 6 : 0), "%s: %d convolutions in the strided form", what, n2);
                if (v == 1) CHECK(n == 0, "%s: %d convolutions on the stem kernel", what, n);
                CHECK(count_kernels(e, "", "Concat") == 0, "%s: the concat is written in place", what);
                unsetenv("KILN_CONV_STEM");
                kiln_engine *re = th_reload(e, what);
                CHECK(same_kernels(e, re), "%s: the reloaded plan runs the same kernels", what);
                kiln_engine_destroy(re);
                if (vals[v]) setenv("KILN_CONV_STEM", vals[v], 1);
            }
            kiln_engine_destroy(e);
        }
    }
    /* refit on the stem kernel: new weights and bias for "stem" (packed) and "stem7"
     * (strided), CPU and CUDA alike */
    refit_case(b, make_stems_s1, "KILN_CONV_STEM", "stem", 64 * 27, 0.3f, 64, 6);
    refit_case(b, make_stems, "KILN_CONV_STEM", "stem7", 72 * 147, 0.2f, 72, 7);
    unsetenv("KILN_CONV_S2D");
}

/* Concat inputs written into channel slices of the concat's output: on every convolution
 * path (the implicit GEMM writes the slice, cuDNN's paths through their pass after a dense
 * copy, the GEMM with its pitched output), pooling and resize reading and writing slices;
 * against the CPU, five of the seven concats not running, and a reloaded plan the same. */
static void test_concat_slices_fp16(kiln_builder *b) {
    static const char *const vars[] = {NULL, "KILN_CONV_IGEMM", "KILN_CONV_GRAPH", "KILN_CONV_IGEMM"};
    static const char *const vals[] = {NULL, "only", "only", "off"};
    for (int v = 0; v < 4; v++) {
        char what[80];
        snprintf(what, sizeof what, "fp16 concat slices (%s=%s)", vars[v] ? vars[v] : "timed", vals[v] ? vals[v] : "");
        if (vars[v]) setenv(vars[v], vals[v], 1);
        if (v == 3) setenv("KILN_CONV_GRAPH", "off", 1); /* the legacy cuDNN calls and the GEMM */
        kiln_engine *e = compare_case(what, b, make_concat_slices, true, FP16_TOL);
        if (e) {
            int cats = count_kernels(e, "", "Concat");
            CHECK(cats == 2, "%s: %d concats run (want 2: the misaligned one, the one a convolution reads)", what, cats);
            if (v == 1) {
                CHECK(count_kernels(e, "cuda.kiln_igemm_", "Convolution") >= 10, "%s: the implicit GEMM", what);
                bool split = false;
                for (int i = 0; i < kiln_engine_num_layers(e); i++) {
                    kiln_layer_info li;
                    if (kiln_engine_layer_info(e, i, &li) == KILN_OK && !strcmp(li.name, "split7"))
                        split = strstr(li.kernel, "_splitk") != NULL;
                }
                CHECK(split, "%s: split7 splits its reduction into the slice", what);
            }
            if (v == 2) CHECK(count_kernels(e, "cuda.cudnn_graph_eng", "Convolution") >= 10, "%s: the graph API", what);
            kiln_engine *re = th_reload(e, what);
            CHECK(same_kernels(e, re), "%s: the reloaded plan runs the same kernels", what);
            if (re) { /* and computes the same */
                io_set r1, r2;
                th_seed(99);
                io_make(e, &r1);
                io_make(re, &r2);
                CHECK_OK(run_host(e, &r1, NULL));
                CHECK_OK(run_host(re, &r2, &r1));
                compare(what, &r2, &r1, 1e-5);
                io_free(&r1);
                io_free(&r2);
            }
            kiln_engine_destroy(re);
        }
        kiln_engine_destroy(e);
        if (vars[v]) unsetenv(vars[v]);
        unsetenv("KILN_CONV_GRAPH");
    }
}

/* A chain of kiln's own kernels, each reading what the one before wrote: the strided stem
 * kernel, a 3x3 max pool, 3x3 and 1x1 implicit GEMMs, a residual, a 3x3 over 256 channels at
 * 8x8 (split-K: partials, then the reduce kernel), a global pool. */
static kiln_network *make_pdl_chain(kiln_builder *b, unsigned seed) {
    th_seed(seed);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, d4(2, 3, 64, 64));
    static const int64_t p3[4] = {3, 3, 3, 3};
    kiln_tensor *s = act(net, conv(net, x, 3, 64, 7, 2, p3, 1, true), KILN_ACT_RELU);
    kiln_pool_desc mp = {.type = KILN_POOL_MAX, .kernel = {3, 3}, .stride = {2, 2}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_tensor *p = s ? out0(kiln_network_add_pooling(net, s, &mp)) : NULL;
    kiln_tensor *c1 = p ? act(net, conv(net, p, 64, 64, 3, 1, NULL, 1, true), KILN_ACT_RELU) : NULL;
    kiln_tensor *c2a = c1 ? conv(net, c1, 64, 64, 1, 1, NULL, 1, true) : NULL;
    kiln_tensor *c2 = c2a ? act(net, out0(kiln_network_add_elementwise(net, c2a, p, KILN_ELT_ADD)), KILN_ACT_RELU) : NULL;
    kiln_tensor *c3 = c2 ? act(net, conv(net, c2, 64, 256, 1, 1, NULL, 1, true), KILN_ACT_SILU) : NULL;
    kiln_pool_desc mp2 = {.type = KILN_POOL_MAX, .kernel = {2, 2}, .stride = {2, 2}};
    kiln_tensor *p2 = c3 ? out0(kiln_network_add_pooling(net, c3, &mp2)) : NULL;
    kiln_tensor *c4 = p2 ? act(net, conv(net, p2, 256, 256, 3, 1, NULL, 1, true), KILN_ACT_RELU) : NULL;
    kiln_tensor *c5 = c4 ? conv(net, c4, 256, 64, 1, 1, NULL, 1, true) : NULL;
    const kiln_pool_desc ga = {.type = KILN_POOL_AVERAGE, .global = 1};
    kiln_tensor *g = c5 ? out0(kiln_network_add_pooling(net, c5, &ga)) : NULL;
    bool ok = mark(net, c5, "c5") && mark(net, g, "g");
    CHECK(ok, "chain network: %s", kiln_last_error());
    return net;
}

/* Programmatic dependent launches (src/cuda/kcu_pdl.cuh): make_pdl_chain with its
 * convolutions on kiln's portable implicit GEMM, then on its Hopper kernel where it applies
 * (the device a Hopper: the 3x3s and the 1x1 to 64), run by one context eight times with new inputs each time (the first run launches
 * layer by layer, the later ones replay the CUDA graph captured from the second), every
 * run's outputs within the float16 tolerance of the CPU's on the same inputs. A kernel that
 * read its input before the kernel ahead of it had finished writing would see the previous
 * run's values there (outputs are poisoned before each run). */
static void test_pdl_chain(kiln_builder *b) {
    static const char *const modes[2] = {"only", "wgmma"};
    for (int m = 0; m < 2; m++) {
        char what[64];
        snprintf(what, sizeof what, "fp16 chain (KILN_CONV_IGEMM=%s)", modes[m]);
        setenv("KILN_CONV_IGEMM", modes[m], 1);
        setenv("KILN_CONV_STEM", "only", 1); /* the stem's direct form, on the stem kernel */
        setenv("KILN_CONV_S2D", "off", 1);
        kiln_network *ncpu = make_pdl_chain(b, 5), *ngpu = make_pdl_chain(b, 5);
        kiln_engine *ecpu = build(b, ncpu, KILN_DEVICE_CPU, false, NULL);
        kiln_engine *egpu = build(b, ngpu, KILN_DEVICE_CUDA, true, NULL);
        unsetenv("KILN_CONV_IGEMM");
        unsetenv("KILN_CONV_STEM");
        unsetenv("KILN_CONV_S2D");
        CHECK(ecpu && egpu, "%s: build: %s", what, kiln_last_error());
        kiln_context *c = NULL;
        if (egpu) {
            int own = count_kernels(egpu, "cuda.kiln_igemm_", "Convolution") +
                      count_kernels(egpu, "cuda.kiln_wgmma_", "Convolution");
            CHECK(own == 5, "%s: %d of 5 convolutions on kiln's implicit GEMMs", what, own);
            CHECK(count_kernels(egpu, "cuda.kiln_stem_s2", "Convolution") == 1, "%s: the stem on kiln's kernel", what);
            CHECK(count_kernels(egpu, "_f16_nhwc", "Pooling") == 3, "%s: the pools on kiln's float16 kernels", what);
            CHECK_OK(kiln_context_create(egpu, &c));
        }
        if (ecpu && egpu && c) {
            io_set rc, rg;
            th_seed(123);
            io_make(ecpu, &rc);
            io_make(egpu, &rg);
            kiln_status st = kiln_context_set_io_memory(c, KILN_MEMORY_HOST);
            for (int i = 0; st == KILN_OK && i < rg.nin; i++) st = kiln_context_set_tensor_address(c, rg.in_names[i], rg.in[i]);
            for (int j = 0; st == KILN_OK && j < rg.nout; j++)
                st = kiln_context_set_tensor_address(c, rg.out_names[j], rg.out[j]);
            CHECK_OK(st);
            for (int run = 0; st == KILN_OK && run < 8; run++) {
                for (int i = 0; i < rc.nin; i++) { /* new inputs, the same on both */
                    th_fill(rc.in[i], rc.in_n[i], -1.0f, 1.0f);
                    memcpy(rg.in[i], rc.in[i], (size_t)rc.in_n[i] * sizeof(float));
                }
                for (int j = 0; j < rg.nout; j++) memset(rg.out[j], 0xFF, (size_t)rg.out_n[j] * sizeof(float));
                CHECK_OK(run_host(ecpu, &rc, NULL));
                st = kiln_context_execute(c);
                CHECK(st == KILN_OK, "%s: run %d: %s", what, run, kiln_last_error());
                char name[96];
                snprintf(name, sizeof name, "%s, run %d", what, run);
                if (st == KILN_OK) compare(name, &rg, &rc, FP16_TOL);
            }
            io_free(&rc);
            io_free(&rg);
        }
        kiln_context_destroy(c);
        kiln_engine_destroy(ecpu);
        kiln_engine_destroy(egpu);
        kiln_network_destroy(ncpu);
        kiln_network_destroy(ngpu);
    }
}

/* cuDNN's backend-API path: every one-group convolution; bias, residual and ReLU fused, the
 * other activations (the stems' sigmoid, make_igemm's SiLU, LeakyReLU, sigmoid) in a pass
 * after the graph; the stems through space-to-depth. */
static void test_graph_fp16(kiln_builder *b) {
    const make_fn makes[3] = {make_block, make_stems, make_igemm};
    const char *const names[3] = {"fp16 graph block", "fp16 graph stems", "fp16 graph activations"};
    const int want[3] = {3, 7, 9};
    forced_path_cases(b, "KILN_CONV_GRAPH", "cuda.cudnn_graph_eng", "cuDNN's graph API", makes, names, want, false);
}

static void test_layers_fp16(kiln_builder *b) {
    kiln_engine *e = compare_case("fp16 block", b, make_block, true, FP16_TOL);
    if (e) {
        int convs = count_kernels(e, "", "Convolution");
        CHECK(convs >= 3, "fp16 block: %d convolutions", convs);
        CHECK(count_kernels(e, "_f16_nhwc", "Convolution") == convs, "fp16 block: every convolution runs float16 channels-last");
        CHECK(count_kernels(e, "_f16_nhwc", "Pooling") == 3, "fp16 block: pooling runs float16 channels-last");
        CHECK(count_kernels(e, "_f16", "Gemm") == 1, "fp16 block: the fully connected layer runs float16");
        CHECK(count_kernels(e, "cuda.reformat", "Reformat") >= 2, "fp16 block: reformats at the network's edges");
        CHECK(count_kernels(e, "", "Elementwise") == 0, "fp16 block: the residual add is fused into a convolution");
    }
    kiln_engine_destroy(e);

    e = compare_case("fp16 igemm shapes, any path", b, make_igemm, true, FP16_TOL);
    if (e) {
        CHECK(count_kernels(e, "", "Elementwise") == 0, "fp16 igemm shapes: every residual add is fused");
        CHECK(count_fused(e, "SiLU+Add") == 2, "fp16 igemm shapes: two residuals added after the SiLU");
    }
    kiln_engine_destroy(e);

    /* the same network with its point-wise and movement layers fused: outputs only */
    kiln_engine_destroy(compare_case("fp16 constants (fused regions)", b, make_consts, true, FP16_TOL));
    setenv("KILN_FUSE", "off", 1); /* the format pass's choices, layer by layer */
    e = compare_case("fp16 constants", b, make_consts, true, FP16_TOL);
    unsetenv("KILN_FUSE");
    if (e) {
        /* the one reformat to float16 left is a's, the network input: the grids' are folded
         * into their constants (the big one stays float32, its readers too) */
        int ref16 = 0;
        for (int i = 0; i < kiln_engine_num_layers(e); i++) {
            kiln_layer_info li;
            if (kiln_engine_layer_info(e, i, &li) == KILN_OK && !strcmp(li.type, "Reformat") &&
                li.precision == KILN_FLOAT16)
                ref16++;
        }
        CHECK(ref16 == 1, "fp16 constants: %d reformats to float16 run (want 1: the input's)", ref16);
        CHECK(count_kernels(e, "_f16", "Elementwise") >= 2, "fp16 constants: the point-wise layers run float16");
    }
    kiln_engine_destroy(e);

    /* the same network with its point-wise and movement layers fused: outputs only */
    kiln_engine_destroy(compare_case("fp16 pointwise (fused regions)", b, make_pointwise, true, FP16_TOL));
    setenv("KILN_FUSE", "off", 1); /* the format pass's choices, layer by layer */
    e = compare_case("fp16 pointwise", b, make_pointwise, true, FP16_TOL);
    unsetenv("KILN_FUSE");
    if (e) {
        CHECK(count_kernels(e, "_f16_nhwc", "Elementwise") >= 2, "fp16 pointwise: element-wise ops channels-last");
        /* two scales: the network's, and the Mul by a per-channel constant (made a scale by
         * kopt_elementwise_to_scale; not merged, as PRelu reads it too) */
        CHECK(count_kernels(e, "_f16_nhwc", "Scale") == 2 && count_kernels(e, "_f16_nhwc", "Activation") == 1 &&
                  count_kernels(e, "_f16_nhwc", "Unary") == 2 && count_kernels(e, "_f16_nhwc", "PRelu") == 1,
              "fp16 pointwise: scale, activation, unary and prelu channels-last");
        CHECK(count_kernels(e, "_f16_nhwc", "Concat") == 1 && count_kernels(e, "_f16_nhwc", "Resize") == 2 &&
                  count_kernels(e, "_f16_nhwc", "Split") == 1,
              "fp16 pointwise: concat, split and resize channels-last");
        CHECK(count_kernels(e, "_f16", "Slice") == 1 && count_kernels(e, "_f16", "Transpose") == 1,
              "fp16 pointwise: slice and transpose on float16");
        CHECK(count_kernels(e, "_f16", "Softmax") == 0, "fp16 pointwise: softmax stays float32");
        CHECK(count_kernels(e, "cuda.direct_f16", "Elementwise") - count_kernels(e, "_f16_nhwc", "Elementwise") == 1,
              "fp16 pointwise: a broadcast of another rank runs float16 row-major");
    }
    kiln_engine_destroy(e);

    /* the same network with its point-wise and movement layers fused: outputs only */
    kiln_engine_destroy(compare_case("fp16 decoder (fused regions)", b, make_decoder, true, FP16_TOL));
    setenv("KILN_FUSE", "off", 1); /* the format pass's choices, layer by layer */
    e = compare_case("fp16 decoder", b, make_decoder, true, FP16_TOL);
    unsetenv("KILN_FUSE");
    if (e) {
        CHECK(count_kernels(e, "_f16_nhwc", "Deconvolution") == 3, "fp16 decoder: every deconvolution runs float16 channels-last");
        CHECK(count_kernels(e, "_f16_nhwc", "Concat") == 1, "fp16 decoder: the skip concat stays channels-last");
    }
    kiln_engine_destroy(e);

    /* the range check keeps the overflowing layers (and their reader) in float32 */
    e = compare_case("fp16 overflow", b, make_overflow, true, FP16_TOL);
    if (e) {
        CHECK(count_kernels(e, "", "Convolution") == 3 && count_kernels(e, "_f16", "Convolution") == 1,
              "fp16 overflow: the two convolutions around the big values stay float32, the last runs float16");
        for (int i = 0; i < kiln_engine_num_layers(e); i++) {
            kiln_layer_info li;
            if (kiln_engine_layer_info(e, i, &li) == KILN_OK && (!strcmp(li.name, "big") || !strcmp(li.name, "back"))) {
                CHECK(li.precision == KILN_FLOAT32, "fp16 overflow: layer %s runs %s", li.name,
                      kiln_dtype_name(li.precision));
                /* kept in float32 for range only: TF32 math, as the FP16 build allows */
                CHECK(strstr(li.kernel, "_tf32") != NULL, "fp16 overflow: layer %s may use TF32 (kernel %s)", li.name,
                      li.kernel);
            }
        }
        /* the plan keeps that choice: a reloaded engine runs the same kernels */
        kiln_engine *re = th_reload(e, "fp16 overflow");
        CHECK(same_kernels(e, re), "fp16 overflow: the reloaded plan runs the same %d kernels", kiln_engine_num_layers(e));
        kiln_engine_destroy(re);
    }
    kiln_engine_destroy(e);
    {   /* a layer the user pins to float32 stays strict float32 (no TF32) */
        kiln_network *ncpu = make_overflow(b, 77), *net = make_overflow(b, 77);
        kiln_config *cfg = NULL;
        kiln_engine *u = NULL, *ref = build(b, ncpu, KILN_DEVICE_CPU, false, NULL);
        CHECK_OK(kiln_config_create(b, &cfg));
        CHECK_OK(kiln_config_set_device(cfg, KILN_DEVICE_CUDA));
        CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_FP16, 1));
        CHECK_OK(kiln_config_set_layer_precision(cfg, "big", KILN_FLOAT32));
        CHECK_OK(kiln_builder_build(b, net, cfg, &u));
        if (u && ref) {
            for (int i = 0; i < kiln_engine_num_layers(u); i++) {
                kiln_layer_info li;
                if (kiln_engine_layer_info(u, i, &li) != KILN_OK) continue;
                if (!strcmp(li.name, "big"))
                    CHECK(li.precision == KILN_FLOAT32 && !strstr(li.kernel, "_tf32") && !strstr(li.kernel, "_f16"),
                          "user pin: layer big runs strict float32 (kernel %s)", li.kernel);
                if (!strcmp(li.name, "back"))
                    CHECK(strstr(li.kernel, "_tf32") != NULL, "user pin: layer back, kept for range, may use TF32 (kernel %s)",
                          li.kernel);
            }
            io_set r, g;
            th_seed(5);
            io_make(ref, &r);
            io_make(u, &g);
            CHECK_OK(run_host(ref, &r, NULL));
            CHECK(run_host(u, &g, &r) == KILN_OK, "user pin: CUDA run: %s", kiln_last_error());
            compare("user pin", &g, &r, FP16_TOL);
            io_free(&r);
            io_free(&g);
        }
        kiln_engine_destroy(u);
        kiln_engine_destroy(ref);
        kiln_config_destroy(cfg);
        kiln_network_destroy(net);
        kiln_network_destroy(ncpu);
    }
    {   /* the check's result is remembered in a timing cache: a rebuild of the same network
         * takes it from there (the log says so) and keeps the same layers in float32; other
         * weights miss it and run the check again */
        char path[] = "/tmp/kiln-rc-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0, "range-check cache: a temporary file");
        if (fd >= 0) close(fd);
        rc_log rl = {0};
        kiln_builder_desc d = KILN_BUILDER_DESC_INIT;
        d.log = rc_log_fn;
        d.log_user = &rl;
        d.log_level = KILN_LOG_VERBOSE;
        kiln_builder *lb = NULL;
        CHECK_OK(kiln_builder_create(&d, &lb));
        for (int round = 0; lb && fd >= 0 && round < 3; round++) {
            kiln_network *net = make_overflow(lb, round < 2 ? 77 : 78); /* round 2: other weights */
            kiln_config *cfg = NULL;
            kiln_engine *u = NULL;
            CHECK_OK(kiln_config_create(lb, &cfg));
            CHECK_OK(kiln_config_set_device(cfg, KILN_DEVICE_CUDA));
            CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_FP16, 1));
            CHECK_OK(kiln_config_set_timing_cache(cfg, path));
            rl.hits = 0;
            CHECK_OK(kiln_builder_build(lb, net, cfg, &u));
            CHECK(rl.hits == (round == 1), "range-check cache, build %d: %s the cache's result", round,
                  rl.hits ? "took" : "did not take");
            if (u) {
                int f32 = 0;
                for (int i = 0; i < kiln_engine_num_layers(u); i++) {
                    kiln_layer_info li;
                    if (kiln_engine_layer_info(u, i, &li) == KILN_OK && (!strcmp(li.name, "big") || !strcmp(li.name, "back")))
                        f32 += li.precision == KILN_FLOAT32;
                }
                CHECK(f32 == 2, "range-check cache, build %d: big and back kept in float32 (%d)", round, f32);
            }
            kiln_engine_destroy(u);
            kiln_config_destroy(cfg);
            kiln_network_destroy(net);
        }
        kiln_builder_destroy(lb);
        if (fd >= 0) unlink(path);
    }
    {   /* without the check the float16 engine overflows, which is what the check prevents */
        kiln_network *net = make_overflow(b, 77);
        kiln_config *cfg = NULL;
        kiln_engine *u = NULL;
        CHECK_OK(kiln_config_create(b, &cfg));
        CHECK_OK(kiln_config_set_device(cfg, KILN_DEVICE_CUDA));
        CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_FP16, 1));
        CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_NO_RANGE_CHECK, 1));
        CHECK_OK(kiln_builder_build(b, net, cfg, &u));
        if (u) {
            CHECK(count_kernels(u, "_f16", "Convolution") == 3, "no range check: every convolution float16");
            io_set r;
            th_seed(99);
            io_make(u, &r);
            CHECK_OK(run_host(u, &r, NULL));
            bool finite = true;
            for (int64_t i = 0; i < r.out_n[0]; i++) finite &= isfinite(r.out[0][i]) != 0;
            CHECK(!finite, "no range check: float16 overflow shows (the test's premise)");
            io_free(&r);
        }
        kiln_engine_destroy(u);
        kiln_config_destroy(cfg);
        kiln_network_destroy(net);
    }

    e = compare_case("fp16 matmul", b, make_matmul, true, FP16_TOL);
    if (e) {
        CHECK(count_kernels(e, "_f16", "Gemm") == 2 && count_kernels(e, "_f16", "MatMul") == 2,
              "fp16 matmul: every product on float16");
    }
    kiln_engine_destroy(e);
}

/* Float32 on the GPU with the same fusions (residual into a convolution) and no float16. */
static void test_layers_fp32(kiln_builder *b) {
    kiln_engine *e = compare_case("fp32 block", b, make_block, false, FP32_TOL);
    if (e) {
        CHECK(count_kernels(e, "_f16", NULL) == 0 && count_kernels(e, "reformat", NULL) == 0,
              "fp32 block: no float16 kernel, no reformat");
        CHECK(count_kernels(e, "", "Elementwise") == 0, "fp32 block: the residual add is fused into a convolution");
    }
    kiln_engine_destroy(e);
    e = compare_case("fp32 igemm shapes", b, make_igemm, false, FP32_TOL);
    if (e) {
        CHECK(count_kernels(e, "", "Elementwise") == 0 && count_fused(e, "SiLU+Add") == 2,
              "fp32 igemm shapes: residual adds fused, two after the SiLU");
    }
    kiln_engine_destroy(e);
    kiln_engine_destroy(compare_case("fp32 pointwise", b, make_pointwise, false, FP32_TOL));
    kiln_engine_destroy(compare_case("fp32 matmul", b, make_matmul, false, FP32_TOL));
    kiln_engine_destroy(compare_case("fp32 decoder", b, make_decoder, false, FP32_TOL));
}

/* ---- refit, graph replay, changed addresses, profiling ---- */

/* The CPU's answer for weights (w, bias) on input x. */
static void cpu_ref(kiln_builder *b, const float *w, const float *bias, const float *x, double *ref) {
    kiln_network *net = make_refit_net(b, w, bias);
    kiln_engine *e = build(b, net, KILN_DEVICE_CPU, false, NULL);
    float *y = malloc(RY * sizeof(float));
    kiln_context *c = NULL;
    if (e) CHECK_OK(kiln_context_create(e, &c));
    if (c) {
        CHECK_OK(kiln_context_set_tensor_address(c, "x", (void *)x));
        CHECK_OK(kiln_context_set_tensor_address(c, "y", y));
        CHECK_OK(kiln_context_execute(c));
        for (int i = 0; i < RY; i++) ref[i] = y[i];
    }
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
    free(y);
}

static int profiled;
static void on_layer(void *user, const char *name, const char *type, double ms) {
    (void)user, (void)name, (void)type, (void)ms;
    profiled++;
}

#define CU(call)                                                                                           \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        CHECK(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));                                 \
    } while (0)

/* One execute with device pointers, compared with ref. */
static void run_dev(const char *what, kiln_context *c, float *dy, const double *ref) {
    float y[RY];
    CU(cudaMemset(dy, 0xFF, RY * sizeof(float)));
    CHECK_OK(kiln_context_execute(c));
    CU(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
    th_check_close(what, y, ref, RY, FP16_TOL);
}

static void test_refit_graphs(kiln_builder *b, bool fp16) {
    float w1[RK * RC * 9], w2[RK * RC * 9], b1[RK], b2[RK], x[RX];
    th_fill(w1, RK * RC * 9, -0.3f, 0.3f);
    th_fill(w2, RK * RC * 9, -0.3f, 0.3f);
    th_fill(b1, RK, -0.3f, 0.3f);
    th_fill(b2, RK, -0.3f, 0.3f);
    th_fill(x, RX, -1, 1);
    static double r1[RY], r2[RY];
    cpu_ref(b, w1, b1, x, r1);
    cpu_ref(b, w2, b2, x, r2);
    kiln_network *net = make_refit_net(b, w1, b1);
    kiln_engine *e = build(b, net, KILN_DEVICE_CUDA, fp16, NULL);
    CHECK(e != NULL, "refit engine: %s", kiln_last_error());
    kiln_context *c = NULL;
    if (e) CHECK_OK(kiln_context_create(e, &c));
    float *dx = NULL, *dy = NULL, *dy2 = NULL;
    CU(cudaMalloc((void **)&dx, RX * sizeof(float)));
    CU(cudaMalloc((void **)&dy, RY * sizeof(float)));
    CU(cudaMalloc((void **)&dy2, RY * sizeof(float)));
    if (c && dx && dy && dy2) {
        const char *tag = fp16 ? "fp16" : "fp32";
        char what[96];
        if (fp16) CHECK(count_kernels(e, "_f16_nhwc", "Convolution") == 1, "refit engine runs float16");
        CU(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
        CHECK_OK(kiln_context_set_tensor_address(c, "x", dx));
        CHECK_OK(kiln_context_set_tensor_address(c, "y", dy));
        /* direct, captured, replayed */
        for (int i = 0; i < 4; i++) {
            snprintf(what, sizeof what, "%s run %d", tag, i);
            run_dev(what, c, dy, r1);
        }
        size_t act_before = kiln_engine_activation_bytes(e), scr_before = 0, scr_after = 0;
        kiln_engine_memory(e, NULL, &scr_before, NULL);
        CHECK_OK(kiln_engine_refit(e, "conv.kernel", wts(w2, RK * RC * 9)));
        CHECK_OK(kiln_engine_refit(e, "conv.bias", wts(b2, RK)));
        kiln_engine_memory(e, NULL, &scr_after, NULL);
        CHECK(scr_after == scr_before && kiln_engine_activation_bytes(e) == act_before, "refit keeps the memory sizes");
        /* the replayed graph reads the refitted buffers */
        for (int i = 0; i < 2; i++) {
            snprintf(what, sizeof what, "%s after refit, run %d", tag, i);
            run_dev(what, c, dy, r2);
        }
        /* a new output address: direct, then captured again */
        CHECK_OK(kiln_context_set_tensor_address(c, "y", dy2));
        for (int i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "%s new output buffer, run %d", tag, i);
            run_dev(what, c, dy2, r2);
        }
        /* back to the first address */
        CHECK_OK(kiln_context_set_tensor_address(c, "y", dy));
        for (int i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "%s first buffer again, run %d", tag, i);
            run_dev(what, c, dy, r2);
        }
        /* profiling runs layer by layer: the profiler sees every layer of every run */
        profiled = 0;
        CHECK_OK(kiln_context_set_profiler(c, on_layer, NULL));
        for (int i = 0; i < 2; i++) {
            snprintf(what, sizeof what, "%s profiled run %d", tag, i);
            run_dev(what, c, dy, r2);
        }
        CHECK(profiled == 2 * kiln_engine_num_layers(e), "profiler: %d calls for 2 runs of %d layers", profiled,
              kiln_engine_num_layers(e));
        CHECK_OK(kiln_context_set_profiler(c, NULL, NULL));
        /* refit back while a graph exists, then replay */
        run_dev("graph before the second refit", c, dy, r2);
        run_dev("graph before the second refit, again", c, dy, r2);
        CHECK_OK(kiln_engine_refit(e, "conv.kernel", wts(w1, RK * RC * 9)));
        CHECK_OK(kiln_engine_refit(e, "conv.bias", wts(b1, RK)));
        run_dev("replay after refitting back", c, dy, r1);
        /* a refit of the wrong size is refused and changes nothing */
        kiln_status st = kiln_engine_refit(e, "conv.bias", wts(b2, RK - 1));
        CHECK(st == KILN_ERR_INVALID_ARGUMENT, "refit of the wrong size: %s", kiln_status_string(st));
        run_dev("after a refused refit", c, dy, r1);
    }
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(dy2);
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

#endif

int main(void) {
    kiln_builder *b = th_builder();
    /* is there a GPU? */
    kiln_network *probe = make_refit_net(b, rnd(RK * RC * 9, -1, 1), rnd(RK, -1, 1));
    kiln_status st;
    kiln_engine *pe = build(b, probe, KILN_DEVICE_CUDA, true, &st);
    if (!pe) {
        CHECK(st == KILN_ERR_DEVICE || st == KILN_ERR_UNSUPPORTED, "CUDA build failed with %s: %s",
              kiln_status_string(st), kiln_last_error());
        CHECK(strstr(kiln_last_error(), "CUDA") != NULL, "the message says why: %s", kiln_last_error());
        printf("no GPU: skipping the float16 checks (%s)\n", kiln_last_error());
    } else {
#ifdef KILN_HAVE_CUDA
        test_layers_fp16(b);
        test_pools_fp16(b);
        test_igemm_fp16(b);
        test_wgmma_fp16(b);
        test_pdl_chain(b);
        test_concat_slices_fp16(b);
        test_upsample_fp16(b);
        test_stem_kernel_fp16(b);
        test_stems_fp16(b);
        test_graph_fp16(b);
        test_layers_fp32(b);
        test_refit_graphs(b, true);
        test_refit_graphs(b, false);
#else
        CHECK(0, "a CUDA engine was built, but this test was compiled without the CUDA runtime");
#endif
    }
    kiln_engine_destroy(pe);
    kiln_network_destroy(probe);
    for (int i = 0; i < nb_pool_arrays; i++) free(pool_arrays[i]);
    kiln_builder_destroy(b);
    return th_exit("test_cuda_fp16");
}
