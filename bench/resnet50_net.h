/* kiln bench: ResNet-50 (v1.5, torchvision layout) defined through the C network API
 * with random weights, for benchmarks. */
#ifndef KILN_BENCH_RESNET50_NET_H
#define KILN_BENCH_RESNET50_NET_H

#include "kiln/kiln.h"

/* Random weights live here until the build is done. */
typedef struct rn_weights {
    float **blocks;
    int nb, cap;
    unsigned seed;
} rn_weights;

void rn_weights_free(rn_weights *w);

/* Adds input "input" [batch,3,224,224] and output "logits" [batch,1000]. Returns
 * KILN_OK or the first failing status (kiln_last_error() has the message). */
kiln_status rn_build_resnet50(kiln_network *net, int64_t batch, rn_weights *w);

#endif
