/* kiln fuzz helper: writes a few small engine files (seeds for fuzz_plan) into DIR. */
#include <stdio.h>
#include <stdlib.h>

#include "kiln/kiln.h"

static float w[4096];

static int save(kiln_builder *b, kiln_network *net, const char *dir, const char *name) {
    kiln_config *c;
    kiln_engine *e;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.plan", dir, name);
    if (kiln_config_create(b, &c) || kiln_builder_build(b, net, c, &e) || kiln_engine_save(e, path)) {
        fprintf(stderr, "make_plan_corpus: %s: %s\n", name, kiln_last_error());
        return 1;
    }
    kiln_engine_destroy(e);
    kiln_config_destroy(c);
    kiln_network_destroy(net);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_plan_corpus DIR\n");
        return 2;
    }
    for (int i = 0; i < 4096; i++) w[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    kiln_builder *b;
    kiln_network *n;
    if (kiln_builder_create(NULL, &b)) return 1;
    /* conv + bn + relu + pool + fc + softmax */
    kiln_network_create(b, &n);
    kiln_tensor *x = kiln_network_add_input(n, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, 2, 6, 6}));
    kiln_conv_desc cd = {.out_channels = 4, .kernel = {3, 3}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *l = kiln_network_add_convolution(n, x, &cd, (kiln_weights){KILN_FLOAT32, w, 72}, (kiln_weights){KILN_FLOAT32, w, 4});
    l = kiln_network_add_batch_norm(n, kiln_layer_output(l, 0), (kiln_weights){KILN_FLOAT32, w + 10, 4},
                                    (kiln_weights){KILN_FLOAT32, w, 4}, (kiln_weights){KILN_FLOAT32, w, 4},
                                    (kiln_weights){KILN_FLOAT32, w + 100, 4}, 1e-3f);
    l = kiln_network_add_activation(n, kiln_layer_output(l, 0), KILN_ACT_RELU, 0, 0);
    kiln_pool_desc pd = {.type = KILN_POOL_MAX, .kernel = {2, 2}, .stride = {2, 2}};
    l = kiln_network_add_pooling(n, kiln_layer_output(l, 0), &pd);
    l = kiln_network_add_fully_connected(n, kiln_layer_output(l, 0), 3, (kiln_weights){KILN_FLOAT32, w, 108},
                                         (kiln_weights){KILN_FLOAT32, w, 3});
    l = kiln_network_add_softmax(n, kiln_layer_output(l, 0), 1, 0);
    kiln_network_mark_output(n, kiln_layer_output(l, 0));
    if (save(b, n, argv[1], "cnn")) return 1;
    /* data movement: reshape, transpose, concat, slice, gather with a constant index */
    kiln_network_create(b, &n);
    x = kiln_network_add_input(n, "x", KILN_FLOAT32, kiln_dims_make(3, (int64_t[]){2, 3, 4}));
    kiln_layer *t = kiln_network_add_transpose(n, x, 3, (int64_t[]){2, 0, 1});
    kiln_layer *r = kiln_network_add_reshape(n, kiln_layer_output(t, 0), kiln_dims_make(2, (int64_t[]){4, 6}), 0);
    kiln_tensor *two[2] = {kiln_layer_output(r, 0), kiln_layer_output(r, 0)};
    kiln_layer *c = kiln_network_add_concat(n, two, 2, 1);
    kiln_layer *s = kiln_network_add_slice(n, kiln_layer_output(c, 0), 1, (int64_t[]){1}, (int64_t[]){-1}, (int64_t[]){1},
                                           (int64_t[]){2});
    int64_t idx[2] = {3, 0};
    kiln_layer *k = kiln_network_add_constant(n, kiln_dims_make(1, (int64_t[]){2}), (kiln_weights){KILN_INT64, idx, 2});
    kiln_layer *g = kiln_network_add_gather(n, kiln_layer_output(s, 0), kiln_layer_output(k, 0), 0);
    kiln_network_mark_output(n, kiln_layer_output(g, 0));
    if (save(b, n, argv[1], "movement")) return 1;
    /* element-wise with broadcasting, a reduction and a resize */
    kiln_network_create(b, &n);
    x = kiln_network_add_input(n, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, 3, 4, 4}));
    k = kiln_network_add_constant(n, kiln_dims_make(4, (int64_t[]){1, 3, 1, 1}), (kiln_weights){KILN_FLOAT32, w, 3});
    kiln_layer *m = kiln_network_add_elementwise(n, x, kiln_layer_output(k, 0), KILN_ELT_MUL);
    kiln_resize_desc rd = {.mode = KILN_RESIZE_LINEAR, .coord = KILN_COORD_HALF_PIXEL, .nb_scales = 4,
                           .scales = {1, 1, 2, 2}};
    kiln_layer *z = kiln_network_add_resize(n, kiln_layer_output(m, 0), &rd);
    kiln_layer *red = kiln_network_add_reduce(n, kiln_layer_output(z, 0), KILN_REDUCE_MEAN, 2, (int64_t[]){2, 3}, 1);
    kiln_network_mark_output(n, kiln_layer_output(red, 0));
    if (save(b, n, argv[1], "pointwise")) return 1;
    /* a batch-1 concat the memory planner makes free (its inputs written into its output):
     * the loader's check of such a skipped concat */
    kiln_network_create(b, &n);
    x = kiln_network_add_input(n, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, 4, 4, 4}));
    kiln_layer *sa = kiln_network_add_scale(n, x, KILN_SCALE_UNIFORM, (kiln_weights){KILN_FLOAT32, NULL, 0},
                                            (kiln_weights){KILN_FLOAT32, w + 7, 1}, (kiln_weights){KILN_FLOAT32, NULL, 0});
    kiln_layer *ra = kiln_network_add_activation(n, x, KILN_ACT_RELU, 0, 0);
    kiln_tensor *parts[2] = {kiln_layer_output(sa, 0), kiln_layer_output(ra, 0)};
    c = kiln_network_add_concat(n, parts, 2, 1);
    l = kiln_network_add_activation(n, kiln_layer_output(c, 0), KILN_ACT_SIGMOID, 0, 0);
    kiln_network_mark_output(n, kiln_layer_output(l, 0));
    if (save(b, n, argv[1], "concat_in_place")) return 1;
    kiln_builder_destroy(b);
    return 0;
}
