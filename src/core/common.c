/* kiln internal: environment, allocation, errors and logging. */
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *kiln_version(void) { return "0.1.0"; }

const char *kiln_last_error(void) { return last_error; }

kiln_status kiln_set_last_error(kiln_status status, const char *message) {
    snprintf(last_error, sizeof last_error, "%s", message ? message : "");
    return status;
}

const char *kiln_status_string(kiln_status status) {
    switch (status) {
    case KILN_OK: return "ok";
    case KILN_ERR_INVALID_ARGUMENT: return "invalid argument";
    case KILN_ERR_NOT_FOUND: return "not found";
    case KILN_ERR_SHAPE: return "shape error";
    case KILN_ERR_DTYPE: return "dtype error";
    case KILN_ERR_UNSUPPORTED: return "unsupported";
    case KILN_ERR_OUT_OF_MEMORY: return "out of memory";
    case KILN_ERR_INVALID_STATE: return "invalid state";
    case KILN_ERR_IO: return "i/o error";
    case KILN_ERR_FORMAT: return "format error";
    case KILN_ERR_DEVICE: return "device error";
    case KILN_ERR_INTERNAL: return "internal error";
    case KILN_ERR_RUNTIME: return "runtime error";
    }
    return "unknown status";
}

size_t kiln_dtype_size(kiln_dtype dtype) {
    switch (dtype) {
    case KILN_FLOAT32: return 4;
    case KILN_FLOAT16: return 2;
    case KILN_INT8: return 1;
    case KILN_INT32: return 4;
    case KILN_INT64: return 8;
    case KILN_UINT8: return 1;
    case KILN_BOOL: return 1;
    case KILN_FLOAT64: return 8;
    case KILN_BFLOAT16: return 2;
    }
    return 0;
}

const char *kiln_dtype_name(kiln_dtype dtype) {
    static const char *names[KILN_DTYPE_COUNT] = {"float32", "float16", "int8",  "int32",   "int64",
                                                  "uint8",   "bool",    "float64", "bfloat16"};
    return (unsigned)dtype < KILN_DTYPE_COUNT ? names[dtype] : "?";
}

int64_t kiln_dims_volume(const kiln_dims *dims) {
    if (!dims || dims->nb_dims < 0 || dims->nb_dims > KILN_MAX_DIMS) return -1;
    int64_t v = 1;
    for (int i = 0; i < dims->nb_dims; i++) {
        if (dims->d[i] < 0) return -1;
        if (__builtin_mul_overflow(v, dims->d[i], &v)) return -1;
    }
    return v;
}

kiln_dims kiln_dims_make(int32_t nb_dims, const int64_t *d) {
    kiln_dims r;
    memset(&r, 0, sizeof r);
    if (nb_dims < 0 || nb_dims > KILN_MAX_DIMS) {
        r.nb_dims = -1;
        return r;
    }
    r.nb_dims = nb_dims;
    for (int i = 0; i < nb_dims; i++) r.d[i] = d ? d[i] : 0;
    return r;
}

static void *default_alloc(void *user, size_t size, size_t alignment) {
    (void)user;
    void *p = NULL;
    if (posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *) : alignment, size ? size : 1))
        return NULL;
    return p;
}

static void default_free(void *user, void *ptr) {
    (void)user;
    free(ptr);
}

static void default_log(void *user, kiln_log_level level, const char *msg) {
    (void)user;
    static const char *names[] = {"error", "warning", "info", "verbose"};
    fprintf(stderr, "kiln %s: %s\n", names[level <= KILN_LOG_VERBOSE ? level : 0], msg);
}

void kiln_env_default(kiln_env *env) {
    env->log = default_log;
    env->log_user = NULL;
    env->level = KILN_LOG_WARNING;
    env->alloc.alloc = default_alloc;
    env->alloc.free = default_free;
    env->alloc.user = NULL;
}

void *kiln_alloc(const kiln_env *env, size_t size) {
    return env->alloc.alloc(env->alloc.user, size ? size : 1, KILN_ALIGN);
}

void *kiln_calloc(const kiln_env *env, size_t count, size_t size) {
    size_t bytes;
    if (!kiln_mul_size(count, size, &bytes)) return NULL;
    void *p = kiln_alloc(env, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void kiln_free(const kiln_env *env, void *ptr) {
    if (ptr) env->alloc.free(env->alloc.user, ptr);
}

char *kiln_strdup(const kiln_env *env, const char *s) {
    size_t n = strlen(s) + 1;
    char *r = kiln_alloc(env, n);
    if (r) memcpy(r, s, n);
    return r;
}

bool kiln_grow(const kiln_env *env, void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int ncap = *cap ? *cap : 8;
    while (ncap < need) ncap *= 2;
    void *n = kiln_calloc(env, (size_t)ncap, elem);
    if (!n) return false;
    if (*arr) memcpy(n, *arr, (size_t)*cap * elem);
    kiln_free(env, *arr);
    *arr = n;
    *cap = ncap;
    return true;
}

kiln_status kiln_verror(const kiln_env *env, kiln_status status, const char *fmt, va_list ap) {
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    if (env && env->log && env->level >= KILN_LOG_ERROR) env->log(env->log_user, KILN_LOG_ERROR, last_error);
    return status;
}

kiln_status kiln_error(const kiln_env *env, kiln_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kiln_verror(env, status, fmt, ap);
    va_end(ap);
    return status;
}

void kiln_log(const kiln_env *env, kiln_log_level level, const char *fmt, ...) {
    if (!env || !env->log || level > env->level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    env->log(env->log_user, level, buf);
}

const char *kiln_dims_str(const kiln_dims *dims, char *buf, size_t size) {
    if (!dims || dims->nb_dims < 0 || dims->nb_dims > KILN_MAX_DIMS) {
        snprintf(buf, size, "?");
        return buf;
    }
    if (dims->nb_dims == 0) {
        snprintf(buf, size, "scalar");
        return buf;
    }
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < dims->nb_dims && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? "x%lld" : "%lld", (long long)dims->d[i]);
    return buf;
}

bool kiln_dims_equal(const kiln_dims *a, const kiln_dims *b) {
    if (a->nb_dims != b->nb_dims) return false;
    for (int i = 0; i < a->nb_dims; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

bool kiln_dims_known(const kiln_dims *dims) {
    if (dims->nb_dims < 0 || dims->nb_dims > KILN_MAX_DIMS) return false;
    for (int i = 0; i < dims->nb_dims; i++)
        if (dims->d[i] < 0) return false;
    return true;
}

bool kiln_broadcast_dims(const kiln_dims *a, const kiln_dims *b, kiln_dims *out) {
    int n = KILN_MAX(a->nb_dims, b->nb_dims);
    kiln_dims r;
    memset(&r, 0, sizeof r);
    r.nb_dims = n;
    for (int i = 0; i < n; i++) {
        int ia = a->nb_dims - n + i, ib = b->nb_dims - n + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da == db || db == 1) r.d[i] = da;
        else if (da == 1) r.d[i] = db;
        else return false;
    }
    *out = r;
    return true;
}
