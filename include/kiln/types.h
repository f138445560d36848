/* kiln: shared public types: status codes, data types, dimensions, weights, logging, allocation.
 * Every other public header includes this one. */
#ifndef KILN_TYPES_H
#define KILN_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define KILN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0

/* Returns the library version as "major.minor.patch". Static storage. */
KILN_API const char *kiln_version(void);

/* Every function that can fail returns one of these. Append-only. */
typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, out-of-range value, bad attribute */
    KILN_ERR_NOT_FOUND = 2,        /* unknown tensor or layer name */
    KILN_ERR_SHAPE = 3,            /* shapes do not agree, or shape inference failed */
    KILN_ERR_DTYPE = 4,            /* data type not allowed here */
    KILN_ERR_UNSUPPORTED = 5,      /* valid request the selected backend cannot do */
    KILN_ERR_OUT_OF_MEMORY = 6,    /* host or device allocation failed, or a memory limit hit */
    KILN_ERR_INVALID_STATE = 7,    /* call not allowed now (building a network twice, ...) */
    KILN_ERR_IO = 8,               /* file could not be opened, read or written */
    KILN_ERR_FORMAT = 9,           /* bytes are not what they claim to be (corrupt file) */
    KILN_ERR_DEVICE = 10,          /* GPU, driver or GPU-library failure */
    KILN_ERR_INTERNAL = 11,        /* a bug in kiln: please report it */
    KILN_ERR_RUNTIME = 12          /* data-dependent failure while running (index out of range) */
} kiln_status;

/* Short fixed name of a status ("invalid argument"). Static storage. */
KILN_API const char *kiln_status_string(kiln_status status);

/* The message of the last failure on the calling thread, with the culprit named
 * (layer, tensor, file). Valid until the next failing kiln call on this thread.
 * Empty string when nothing failed yet. */
KILN_API const char *kiln_last_error(void);

/* Records a failure as the calling thread's kiln_last_error() and returns status. For
 * libraries built on kiln (the ONNX importer) so their callers see one error channel. */
KILN_API kiln_status kiln_set_last_error(kiln_status status, const char *message);

/* Element types. Append-only. */
typedef enum kiln_dtype {
    KILN_FLOAT32 = 0,
    KILN_FLOAT16 = 1,
    KILN_INT8 = 2,
    KILN_INT32 = 3,
    KILN_INT64 = 4,
    KILN_UINT8 = 5,
    KILN_BOOL = 6, /* one byte per element, 0 or 1 */
    KILN_FLOAT64 = 7,
    KILN_BFLOAT16 = 8
} kiln_dtype;
#define KILN_DTYPE_COUNT 9

/* Bytes per element; 0 for an unknown value. */
KILN_API size_t kiln_dtype_size(kiln_dtype dtype);
/* Lower-case name ("float32"); "?" for an unknown value. Static storage. */
KILN_API const char *kiln_dtype_name(kiln_dtype dtype);

#define KILN_MAX_DIMS 8

/* A shape. nb_dims = 0 is a scalar. A dimension of -1 in a network input means
 * "given at build time" (kiln_config_set_input_shape). */
typedef struct kiln_dims {
    int32_t nb_dims;
    int64_t d[KILN_MAX_DIMS];
} kiln_dims;

/* Number of elements of dims (1 for a scalar); -1 if any dimension is unknown. */
KILN_API int64_t kiln_dims_volume(const kiln_dims *dims);

/* Builds dims from a list: kiln_dims_make(4, (int64_t[]){1, 3, 224, 224}). */
KILN_API kiln_dims kiln_dims_make(int32_t nb_dims, const int64_t *d);

/* A borrowed array of weights: `values` points to `count` elements of `dtype`.
 * Unless stated otherwise the caller keeps it alive until kiln_builder_build on
 * the network that uses it has returned. count = 0 with values = NULL means "none". */
typedef struct kiln_weights {
    kiln_dtype dtype;
    const void *values;
    int64_t count;
} kiln_weights;

typedef enum kiln_log_level {
    KILN_LOG_ERROR = 0,
    KILN_LOG_WARNING = 1,
    KILN_LOG_INFO = 2,
    KILN_LOG_VERBOSE = 3
} kiln_log_level;

/* Receives every message at or below the configured level. `msg` is valid only
 * during the call. May be called from any thread that calls into kiln. */
typedef void (*kiln_log_fn)(void *user, kiln_log_level level, const char *msg);

/* Host allocator hook. alloc returns memory aligned to `alignment` (a power of two,
 * at most 4096) or NULL; free accepts NULL. The allocator (and `user`) must outlive
 * every object created with it: builders, networks, engines and contexts. */
typedef struct kiln_allocator {
    void *(*alloc)(void *user, size_t size, size_t alignment);
    void (*free)(void *user, void *ptr);
    void *user;
} kiln_allocator;

/* Devices an engine can target. Append-only. */
typedef enum kiln_device {
    KILN_DEVICE_CPU = 0,
    KILN_DEVICE_CUDA = 1
} kiln_device;

#ifdef __cplusplus
}
#endif
#endif
