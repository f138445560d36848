/* kiln: builder configuration. */
#include <string.h>

#include "runtime/config.h"

kiln_status kiln_config_create(kiln_builder *b, kiln_config **out) {
    if (!b || !out) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "config create: %s is NULL", b ? "out" : "builder");
    *out = NULL;
    kiln_config *c = kiln_calloc(&b->env, 1, sizeof *c);
    if (!c) return kiln_error(&b->env, KILN_ERR_OUT_OF_MEMORY, "config create: out of host memory");
    c->env = b->env;
    c->device = KILN_DEVICE_CPU;
    *out = c;
    return KILN_OK;
}

void kiln_config_destroy(kiln_config *c) {
    if (!c) return;
    for (int i = 0; i < c->nb_shapes; i++) kiln_free(&c->env, c->shapes[i].name);
    kiln_free(&c->env, c->shapes);
    for (int i = 0; i < c->nb_pins; i++) kiln_free(&c->env, c->pins[i].name);
    kiln_free(&c->env, c->pins);
    kiln_free(&c->env, c->timing_cache);
    kiln_free(&c->env, c);
}

kiln_status kiln_config_set_device(kiln_config *c, kiln_device device) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "config set device: config is NULL");
    if (device != KILN_DEVICE_CPU && device != KILN_DEVICE_CUDA)
        return kiln_error(&c->env, KILN_ERR_INVALID_ARGUMENT, "config set device: unknown device %d", (int)device);
    c->device = device;
    return KILN_OK;
}

kiln_status kiln_config_set_flag(kiln_config *c, kiln_builder_flag flag, int on) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "config set flag: config is NULL");
    if ((unsigned)flag >= 32) return kiln_error(&c->env, KILN_ERR_INVALID_ARGUMENT, "config set flag: unknown flag %d", (int)flag);
    if (on) c->flags |= 1u << flag;
    else c->flags &= ~(1u << flag);
    return KILN_OK;
}

int kiln_config_get_flag(const kiln_config *c, kiln_builder_flag flag) {
    return c && (unsigned)flag < 32 && (c->flags >> flag) & 1u;
}

kiln_status kiln_config_set_memory_limit(kiln_config *c, size_t bytes) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "config set memory limit: config is NULL");
    c->memory_limit = bytes;
    return KILN_OK;
}

kiln_status kiln_config_set_num_threads(kiln_config *c, int threads) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "config set threads: config is NULL");
    if (threads < 0 || threads > 1024)
        return kiln_error(&c->env, KILN_ERR_INVALID_ARGUMENT, "config set threads: %d is outside 0..1024", threads);
    c->threads = threads;
    return KILN_OK;
}

kiln_status kiln_config_set_input_shape(kiln_config *c, const char *name, kiln_dims dims) {
    if (!c || !name) return kiln_error(c ? &c->env : NULL, KILN_ERR_INVALID_ARGUMENT, "config set input shape: %s is NULL",
                                       c ? "name" : "config");
    if (!kiln_dims_known(&dims))
        return kiln_error(&c->env, KILN_ERR_SHAPE, "config set input shape '%s': every dimension must be >= 0", name);
    for (int i = 0; i < c->nb_shapes; i++)
        if (strcmp(c->shapes[i].name, name) == 0) {
            c->shapes[i].dims = dims;
            return KILN_OK;
        }
    if (!kiln_grow(&c->env, (void **)&c->shapes, &c->cap_shapes, c->nb_shapes + 1, sizeof *c->shapes))
        return kiln_error(&c->env, KILN_ERR_OUT_OF_MEMORY, "config set input shape: out of host memory");
    char *n = kiln_strdup(&c->env, name);
    if (!n) return kiln_error(&c->env, KILN_ERR_OUT_OF_MEMORY, "config set input shape: out of host memory");
    c->shapes[c->nb_shapes].name = n;
    c->shapes[c->nb_shapes].dims = dims;
    c->nb_shapes++;
    return KILN_OK;
}

kiln_status kiln_config_set_progress(kiln_config *c, kiln_progress_fn fn, void *user) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "config set progress: config is NULL");
    c->progress = fn;
    c->progress_user = user;
    return KILN_OK;
}

kiln_status kiln_config_set_layer_precision(kiln_config *c, const char *name, kiln_dtype precision) {
    if (!c || !name)
        return kiln_error(c ? &c->env : NULL, KILN_ERR_INVALID_ARGUMENT, "config set layer precision: %s is NULL",
                          c ? "name" : "config");
    if (precision != KILN_FLOAT32 && precision != KILN_FLOAT16)
        return kiln_error(&c->env, KILN_ERR_DTYPE, "config set layer precision '%s': %s is not float32 or float16", name,
                          kiln_dtype_name(precision));
    for (int i = 0; i < c->nb_pins; i++)
        if (strcmp(c->pins[i].name, name) == 0) {
            c->pins[i].dims.d[0] = precision;
            return KILN_OK;
        }
    if (!kiln_grow(&c->env, (void **)&c->pins, &c->cap_pins, c->nb_pins + 1, sizeof *c->pins))
        return kiln_error(&c->env, KILN_ERR_OUT_OF_MEMORY, "config set layer precision: out of host memory");
    char *n = kiln_strdup(&c->env, name);
    if (!n) return kiln_error(&c->env, KILN_ERR_OUT_OF_MEMORY, "config set layer precision: out of host memory");
    c->pins[c->nb_pins].name = n;
    c->pins[c->nb_pins].dims.nb_dims = 1;
    c->pins[c->nb_pins].dims.d[0] = precision;
    c->nb_pins++;
    return KILN_OK;
}

kiln_status kiln_config_set_timing_cache(kiln_config *c, const char *path) {
    if (!c) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "config set timing cache: config is NULL");
    char *p = NULL;
    if (path && path[0] && !(p = kiln_strdup(&c->env, path)))
        return kiln_error(&c->env, KILN_ERR_OUT_OF_MEMORY, "config set timing cache: out of host memory");
    kiln_free(&c->env, c->timing_cache);
    c->timing_cache = p;
    return KILN_OK;
}
