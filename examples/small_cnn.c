/* kiln example: a small CNN (conv -> batch norm -> relu -> max pool -> fully connected
 * -> softmax) defined layer by layer through the C API, built for the CPU and run on
 * one 1x28x28 image. Weights are random here; a real program loads trained ones. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln/kiln.h"

#define TRY(call)                                                                     \
    do {                                                                              \
        if ((call) != KILN_OK) {                                                      \
            fprintf(stderr, "small_cnn: %s failed: %s\n", #call, kiln_last_error());  \
            return 1;                                                                 \
        }                                                                             \
    } while (0)
#define TRY_PTR(p)                                                                    \
    do {                                                                              \
        if (!(p)) {                                                                   \
            fprintf(stderr, "small_cnn: %s failed: %s\n", #p, kiln_last_error());     \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

static float *random_weights(size_t n, float scale, unsigned *seed) {
    float *w = malloc(n * sizeof *w);
    for (size_t i = 0; w && i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        w[i] = scale * ((float)((*seed >> 8) & 0xFFFF) / 32768.0f - 1.0f);
    }
    return w;
}

int main(void) {
    unsigned seed = 42;
    /* weights must stay alive until kiln_builder_build returns */
    float *conv_w = random_weights(16 * 1 * 3 * 3, 0.5f, &seed), *conv_b = random_weights(16, 0.1f, &seed);
    float *gamma = random_weights(16, 1.0f, &seed), *beta = random_weights(16, 0.1f, &seed);
    float *mean = random_weights(16, 0.1f, &seed), *var = random_weights(16, 0.5f, &seed);
    float *fc_w = random_weights(10 * 16 * 14 * 14, 0.02f, &seed), *fc_b = random_weights(10, 0.1f, &seed);
    float *image = random_weights(28 * 28, 1.0f, &seed);
    if (!conv_w || !conv_b || !gamma || !beta || !mean || !var || !fc_w || !fc_b || !image) return 1;
    for (int i = 0; i < 16; i++) var[i] = fabsf(var[i]) + 0.5f;

    kiln_builder *builder;
    kiln_network *net;
    kiln_config *config;
    kiln_engine *engine;
    kiln_context *ctx;
    TRY(kiln_builder_create(NULL, &builder));
    TRY(kiln_network_create(builder, &net));

    kiln_tensor *x = kiln_network_add_input(net, "image", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){1, 1, 28, 28}));
    TRY_PTR(x);
    kiln_conv_desc conv = {.out_channels = 16, .kernel = {3, 3}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *c1 = kiln_network_add_convolution(net, x, &conv, (kiln_weights){KILN_FLOAT32, conv_w, 16 * 9},
                                                  (kiln_weights){KILN_FLOAT32, conv_b, 16});
    TRY_PTR(c1);
    kiln_layer *bn = kiln_network_add_batch_norm(net, kiln_layer_output(c1, 0), (kiln_weights){KILN_FLOAT32, gamma, 16},
                                                 (kiln_weights){KILN_FLOAT32, beta, 16},
                                                 (kiln_weights){KILN_FLOAT32, mean, 16},
                                                 (kiln_weights){KILN_FLOAT32, var, 16}, 1e-5f);
    TRY_PTR(bn);
    kiln_layer *relu = kiln_network_add_activation(net, kiln_layer_output(bn, 0), KILN_ACT_RELU, 0, 0);
    TRY_PTR(relu);
    kiln_pool_desc pool = {.type = KILN_POOL_MAX, .kernel = {2, 2}, .stride = {2, 2}};
    kiln_layer *mp = kiln_network_add_pooling(net, kiln_layer_output(relu, 0), &pool);
    TRY_PTR(mp);
    kiln_layer *fc = kiln_network_add_fully_connected(net, kiln_layer_output(mp, 0), 10,
                                                      (kiln_weights){KILN_FLOAT32, fc_w, 10 * 16 * 14 * 14},
                                                      (kiln_weights){KILN_FLOAT32, fc_b, 10});
    TRY_PTR(fc);
    kiln_layer *sm = kiln_network_add_softmax(net, kiln_layer_output(fc, 0), 1, 0);
    TRY_PTR(sm);
    TRY(kiln_tensor_set_name(kiln_layer_output(sm, 0), "probabilities"));
    TRY(kiln_network_mark_output(net, kiln_layer_output(sm, 0)));

    TRY(kiln_config_create(builder, &config));
    TRY(kiln_builder_build(builder, net, config, &engine));
    /* the engine owns copies of everything it needs now */
    kiln_network_destroy(net);
    kiln_config_destroy(config);
    kiln_builder_destroy(builder);
    free(conv_w), free(conv_b), free(gamma), free(beta), free(mean), free(var), free(fc_w), free(fc_b);

    float probs[10];
    TRY(kiln_context_create(engine, &ctx));
    TRY(kiln_context_set_tensor_address(ctx, "image", image));
    TRY(kiln_context_set_tensor_address(ctx, "probabilities", probs));
    TRY(kiln_context_execute(ctx));
    printf("engine: %d layers, %zu bytes of activations\n", kiln_engine_num_layers(engine),
           kiln_engine_activation_bytes(engine));
    double sum = 0;
    int best = 0;
    for (int i = 0; i < 10; i++) {
        printf("class %d: %.4f\n", i, (double)probs[i]);
        sum += probs[i];
        if (probs[i] > probs[best]) best = i;
    }
    printf("predicted class %d\n", best);
    kiln_context_destroy(ctx);
    kiln_engine_destroy(engine);
    free(image);
    if (!(fabs(sum - 1.0) < 1e-4)) {
        fprintf(stderr, "small_cnn: probabilities sum to %g, not 1\n", sum);
        return 1;
    }
    return 0;
}
