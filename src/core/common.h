/* kiln internal: the environment every object carries (logger + allocator), error
 * reporting into the thread-local last-error buffer, and small helpers. */
#ifndef KILN_CORE_COMMON_H
#define KILN_CORE_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/types.h"

#define KILN_ALIGN 64 /* alignment of every kiln allocation and planned tensor */

typedef struct kiln_env {
    kiln_log_fn log;
    void *log_user;
    kiln_log_level level;
    kiln_allocator alloc;
} kiln_env;

/* The default environment: stderr logging at WARNING, malloc. */
void kiln_env_default(kiln_env *env);

/* Allocation through the env's hook, KILN_ALIGN-aligned. NULL on failure (no message:
 * callers report with context). Size 0 returns a valid unique pointer. */
void *kiln_alloc(const kiln_env *env, size_t size);
void *kiln_calloc(const kiln_env *env, size_t count, size_t size);
void kiln_free(const kiln_env *env, void *ptr);
char *kiln_strdup(const kiln_env *env, const char *s);
/* Grows *arr (element size elem) to hold at least need elements; doubles capacity. */
bool kiln_grow(const kiln_env *env, void **arr, int *cap, int need, size_t elem);

/* Records a failure: formats the message into the thread-local last error, logs it at
 * ERROR through env (if not NULL) and returns status, so callers can write
 * `return kiln_error(env, KILN_ERR_SHAPE, "layer '%s': ...", name);`. */
kiln_status kiln_error(const kiln_env *env, kiln_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
kiln_status kiln_verror(const kiln_env *env, kiln_status status, const char *fmt, va_list ap);
void kiln_log(const kiln_env *env, kiln_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats dims as "1x3x224x224" ("scalar" for rank 0, "?" for unknown) into buf. */
const char *kiln_dims_str(const kiln_dims *dims, char *buf, size_t size);
bool kiln_dims_equal(const kiln_dims *a, const kiln_dims *b);
/* True when every dimension is known (>= 0) and the rank is known. */
bool kiln_dims_known(const kiln_dims *dims);

/* numpy broadcasting of a and b into out; false if they do not broadcast. */
bool kiln_broadcast_dims(const kiln_dims *a, const kiln_dims *b, kiln_dims *out);

/* Overflow-checked size arithmetic: false on overflow. */
static inline bool kiln_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

#define KILN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KILN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KILN_ALIGN_UP(x, a) (((x) + ((a) - 1)) / (a) * (a))

#endif
