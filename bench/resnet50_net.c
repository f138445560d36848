/* kiln bench: ResNet-50 through the network API (see resnet50_net.h). */
#include "resnet50_net.h"

#include <math.h>
#include <stdlib.h>

static float *rnd(rn_weights *w, int64_t n, float scale) {
    if (w->nb == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        float **b = realloc(w->blocks, (size_t)cap * sizeof *b);
        if (!b) return NULL;
        w->blocks = b;
        w->cap = cap;
    }
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) return NULL;
    for (int64_t i = 0; i < n; i++) {
        w->seed = w->seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)(w->seed >> 9) / 4194304.0f - 1.0f);
    }
    w->blocks[w->nb++] = p;
    return p;
}

void rn_weights_free(rn_weights *w) {
    for (int i = 0; i < w->nb; i++) free(w->blocks[i]);
    free(w->blocks);
    w->blocks = NULL;
    w->nb = w->cap = 0;
}

/* conv (no bias) + batch norm (+ relu) */
static kiln_tensor *cbr(kiln_network *net, rn_weights *w, kiln_tensor *x, int64_t cin, int64_t cout, int64_t k,
                        int64_t stride, int relu) {
    int64_t p = k / 2;
    kiln_conv_desc d = {.out_channels = cout, .kernel = {k, k}, .stride = {stride, stride}, .pad_begin = {p, p}, .pad_end = {p, p}};
    float *kw = rnd(w, cout * cin * k * k, sqrtf(2.0f / (float)(cin * k * k)));
    float *g = rnd(w, cout, 0.2f), *b = rnd(w, cout, 0.1f), *m = rnd(w, cout, 0.1f), *v = rnd(w, cout, 0.2f);
    if (!kw || !g || !b || !m || !v) return NULL;
    for (int64_t i = 0; i < cout; i++) {
        g[i] += 1.0f;
        v[i] = fabsf(v[i]) + 0.8f;
    }
    kiln_layer *c = kiln_network_add_convolution(net, x, &d, (kiln_weights){KILN_FLOAT32, kw, cout * cin * k * k},
                                                 (kiln_weights){KILN_FLOAT32, NULL, 0});
    if (!c) return NULL;
    kiln_layer *bn = kiln_network_add_batch_norm(net, kiln_layer_output(c, 0), (kiln_weights){KILN_FLOAT32, g, cout},
                                                 (kiln_weights){KILN_FLOAT32, b, cout},
                                                 (kiln_weights){KILN_FLOAT32, m, cout},
                                                 (kiln_weights){KILN_FLOAT32, v, cout}, 1e-5f);
    if (!bn) return NULL;
    if (!relu) return kiln_layer_output(bn, 0);
    kiln_layer *r = kiln_network_add_activation(net, kiln_layer_output(bn, 0), KILN_ACT_RELU, 0, 0);
    return r ? kiln_layer_output(r, 0) : NULL;
}

static kiln_tensor *bottleneck(kiln_network *net, rn_weights *w, kiln_tensor *x, int64_t cin, int64_t width,
                               int64_t stride, int downsample) {
    kiln_tensor *y = cbr(net, w, x, cin, width, 1, 1, 1);
    if (y) y = cbr(net, w, y, width, width, 3, stride, 1);
    if (y) y = cbr(net, w, y, width, width * 4, 1, 1, 0);
    kiln_tensor *id = downsample ? cbr(net, w, x, cin, width * 4, 1, stride, 0) : x;
    if (!y || !id) return NULL;
    kiln_layer *add = kiln_network_add_elementwise(net, y, id, KILN_ELT_ADD);
    if (!add) return NULL;
    kiln_layer *r = kiln_network_add_activation(net, kiln_layer_output(add, 0), KILN_ACT_RELU, 0, 0);
    return r ? kiln_layer_output(r, 0) : NULL;
}

kiln_status rn_build_resnet50(kiln_network *net, int64_t batch, rn_weights *w) {
    if (!w->seed) w->seed = 7;
    kiln_tensor *x = kiln_network_add_input(net, "input", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){batch, 3, 224, 224}));
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    x = cbr(net, w, x, 3, 64, 7, 2, 1);
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    kiln_pool_desc mp = {.type = KILN_POOL_MAX, .kernel = {3, 3}, .stride = {2, 2}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *pool = kiln_network_add_pooling(net, x, &mp);
    if (!pool) return KILN_ERR_INVALID_ARGUMENT;
    x = kiln_layer_output(pool, 0);
    static const int blocks[4] = {3, 4, 6, 3};
    int64_t cin = 64;
    for (int s = 0; s < 4 && x; s++) {
        int64_t width = 64 << s;
        for (int i = 0; i < blocks[s] && x; i++) {
            x = bottleneck(net, w, x, cin, width, (s > 0 && i == 0) ? 2 : 1, i == 0);
            cin = width * 4;
        }
    }
    if (!x) return KILN_ERR_INVALID_ARGUMENT;
    kiln_pool_desc gap = {.type = KILN_POOL_AVERAGE, .global = 1};
    kiln_layer *gp = kiln_network_add_pooling(net, x, &gap);
    if (!gp) return KILN_ERR_INVALID_ARGUMENT;
    float *fw = rnd(w, 1000 * 2048, 0.03f), *fb = rnd(w, 1000, 0.1f);
    if (!fw || !fb) return KILN_ERR_OUT_OF_MEMORY;
    kiln_layer *fc = kiln_network_add_fully_connected(net, kiln_layer_output(gp, 0), 1000,
                                                      (kiln_weights){KILN_FLOAT32, fw, 1000 * 2048},
                                                      (kiln_weights){KILN_FLOAT32, fb, 1000});
    if (!fc) return KILN_ERR_INVALID_ARGUMENT;
    kiln_status st = kiln_tensor_set_name(kiln_layer_output(fc, 0), "logits");
    if (st == KILN_OK) st = kiln_network_mark_output(net, kiln_layer_output(fc, 0));
    return st;
}
