/* kiln internal: the builder and builder-config structs. */
#ifndef KILN_RUNTIME_CONFIG_H
#define KILN_RUNTIME_CONFIG_H

#include "core/common.h"
#include "kiln/builder.h"

struct kiln_builder {
    kiln_env env;
};

typedef struct kc_shape {
    char *name;
    kiln_dims dims;
} kc_shape;

struct kiln_config {
    kiln_env env;
    kiln_device device;
    unsigned flags; /* bit per kiln_builder_flag */
    size_t memory_limit;
    int threads;
    kc_shape *shapes;
    int nb_shapes, cap_shapes;
    kiln_progress_fn progress;
    void *progress_user;
    kc_shape *pins; /* layer precision pins: name, dims.d[0] = dtype */
    int nb_pins, cap_pins;
    char *timing_cache; /* path of the timing cache file, NULL: none */
};

static inline void kc_progress(const kiln_config *c, const char *phase, int done, int total) {
    if (c->progress) c->progress(c->progress_user, phase, done, total);
}

#endif
