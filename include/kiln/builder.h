/* kiln: the builder turns a network definition into an engine for one device,
 * under a builder config (device, precision, memory limit, build-time input shapes).
 *
 * Typical use:
 *   kiln_builder *b;  kiln_builder_create(NULL, &b);
 *   kiln_network *n;  kiln_network_create(b, &n);   ... add layers, mark outputs ...
 *   kiln_config *c;   kiln_config_create(b, &c);
 *   kiln_engine *e;   kiln_builder_build(b, n, c, &e);
 *   kiln_config_destroy(c); kiln_network_destroy(n); kiln_builder_destroy(b);
 *   ... use e (runtime.h) ..., kiln_engine_destroy(e);
 * Objects may be destroyed in any order: each keeps what it needs. */
#ifndef KILN_BUILDER_H
#define KILN_BUILDER_H

#include "kiln/network.h"
#include "kiln/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_builder kiln_builder;
typedef struct kiln_config kiln_config;

/* Options for a builder. Start with KILN_BUILDER_DESC_INIT; `size` lets the struct grow. */
typedef struct kiln_builder_desc {
    uint32_t size;            /* sizeof(kiln_builder_desc) */
    kiln_log_fn log;          /* NULL: messages at or below log_level go to stderr */
    void *log_user;
    kiln_log_level log_level; /* default KILN_LOG_WARNING */
    const kiln_allocator *allocator; /* NULL: malloc; copied, must outlive all objects */
} kiln_builder_desc;
#define KILN_BUILDER_DESC_INIT {sizeof(kiln_builder_desc), NULL, NULL, KILN_LOG_WARNING, NULL}

/* desc may be NULL. The builder and everything made from it log and allocate through it. */
KILN_API kiln_status kiln_builder_create(const kiln_builder_desc *desc, kiln_builder **out);
KILN_API void kiln_builder_destroy(kiln_builder *builder);

/* An empty network; the caller owns it (kiln_network_destroy). */
KILN_API kiln_status kiln_network_create(kiln_builder *builder, kiln_network **out);
KILN_API void kiln_network_destroy(kiln_network *net);

KILN_API kiln_status kiln_config_create(kiln_builder *builder, kiln_config **out);
KILN_API void kiln_config_destroy(kiln_config *config);

/* Precision and behaviour flags. Append-only. */
typedef enum kiln_builder_flag {
    KILN_FLAG_FP16 = 0, /* allow FP16 kernels */
    KILN_FLAG_TF32 = 1, /* allow TF32 tensor-core math for FP32 layers */
    KILN_FLAG_INT8 = 2,
    /* keep every weight refittable (kiln_engine_refit): no folding that rewrites
     * weights (batch norm into convolution), at some speed cost */
    KILN_FLAG_REFIT = 3,
    /* FP16 builds for a GPU first build the network in FP32 (untimed kernels), run it once
     * on standard-normal inputs and keep in FP32 every layer that writes or reads values
     * beyond +-16384 (a quarter of FP16's range), with a warning naming them. This flag
     * turns that off (inputs far from unit scale: pin layers by name instead). */
    KILN_FLAG_NO_RANGE_CHECK = 4
} kiln_builder_flag;

/* Device the engine runs on (default CPU). */
KILN_API kiln_status kiln_config_set_device(kiln_config *config, kiln_device device);
KILN_API kiln_status kiln_config_set_flag(kiln_config *config, kiln_builder_flag flag, int on);
KILN_API int kiln_config_get_flag(const kiln_config *config, kiln_builder_flag flag);
/* Upper bound on activation memory of one execution context, in bytes; 0 = none.
 * A network that needs more fails to build with KILN_ERR_OUT_OF_MEMORY. */
KILN_API kiln_status kiln_config_set_memory_limit(kiln_config *config, size_t bytes);
/* CPU worker threads per execution context; 0 (default) = all online cores. */
KILN_API kiln_status kiln_config_set_num_threads(kiln_config *config, int threads);
/* Concrete shape for a network input declared with -1 dimensions. */
KILN_API kiln_status kiln_config_set_input_shape(kiln_config *config, const char *input_name,
                                                 kiln_dims dims);

/* Pins a layer (by the name it has in the network) to a precision: KILN_FLOAT32 keeps it
 * in float32 under KILN_FLAG_FP16 (for layers whose values overflow float16, such as
 * some normalisations). Checked at build: an unknown name fails it. */
KILN_API kiln_status kiln_config_set_layer_precision(kiln_config *config, const char *layer_name,
                                                     kiln_dtype precision);

/* Timing cache: a file that remembers the kernel chosen for each layer signature (layer
 * type, attributes, shapes, precision) on each device and library version, so that a
 * rebuild, or another model with the same layers, skips timing the candidates. Read at
 * the start of the build (missing: created; corrupt: a warning, then rewritten) and
 * written back when the build added to it. One file may serve several GPUs. NULL or ""
 * turns it off (the default). */
KILN_API kiln_status kiln_config_set_timing_cache(kiln_config *config, const char *path);

/* Build progress: fn(user, phase, done, total) is called as the build goes through its
 * phases ("range check" for FP16 on a GPU, "check", "optimize", "plan memory", "kernels"), with done/total counting layers
 * where that means something (else 0/0, then 1/1 when the phase ends). From the
 * building thread; fn must not call back into kiln with this config. */
typedef void (*kiln_progress_fn)(void *user, const char *phase, int done, int total);
KILN_API kiln_status kiln_config_set_progress(kiln_config *config, kiln_progress_fn fn, void *user);

/* Validates the network (shapes and dtypes of every layer; first problem reported
 * with the layer name), optimizes it, plans memory and selects kernels. A network can
 * be built once: its borrowed weights may be gone afterwards, so a second build
 * returns KILN_ERR_INVALID_STATE. The caller owns *out. */
KILN_API kiln_status kiln_builder_build(kiln_builder *builder, kiln_network *net,
                                        const kiln_config *config, kiln_engine **out);

#ifdef __cplusplus
}
#endif
#endif
