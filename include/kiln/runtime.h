/* kiln: engines and execution contexts.
 *
 * An engine is immutable once built and may be shared between threads. Each thread
 * that runs it creates its own execution context, which holds the activation memory
 * (allocated once, at creation) and the worker threads: running allocates nothing.
 * Inputs and outputs are bound by name to caller-owned buffers of the engine's
 * dtype and shape, contiguous, row-major.
 *
 * Lifetime: a context keeps its engine alive; kiln_engine_destroy may be called
 * before the contexts are destroyed, and the engine is freed with the last one. */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include "kiln/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_engine kiln_engine;
typedef struct kiln_context kiln_context;

typedef enum kiln_io_mode { KILN_IO_NONE = 0, KILN_IO_INPUT = 1, KILN_IO_OUTPUT = 2 } kiln_io_mode;

KILN_API void kiln_engine_destroy(kiln_engine *engine);

KILN_API kiln_device kiln_engine_device(const kiln_engine *engine);
/* Inputs first, then outputs, each in network order. */
KILN_API int kiln_engine_num_io(const kiln_engine *engine);
/* NULL when index is out of range. Valid while the engine lives. */
KILN_API const char *kiln_engine_io_name(const kiln_engine *engine, int index);
/* KILN_IO_NONE for a name that is no input or output. */
KILN_API kiln_io_mode kiln_engine_io_mode(const kiln_engine *engine, const char *name);
KILN_API kiln_status kiln_engine_io_dims(const kiln_engine *engine, const char *name,
                                         kiln_dims *dims);
KILN_API kiln_status kiln_engine_io_dtype(const kiln_engine *engine, const char *name,
                                          kiln_dtype *dtype);
/* Bytes of activation memory each context allocates. */
KILN_API size_t kiln_engine_activation_bytes(const kiln_engine *engine);
/* Layers the engine runs (after optimization). */
KILN_API int kiln_engine_num_layers(const kiln_engine *engine);

/* Allocates the context's activation memory and threads. The caller owns *out. */
KILN_API kiln_status kiln_context_create(kiln_engine *engine, kiln_context **out);
KILN_API void kiln_context_destroy(kiln_context *ctx);

/* Binds a caller-owned buffer to an input or output. It must stay valid through every
 * execute that uses it. Input buffers are only read. */
KILN_API kiln_status kiln_context_set_tensor_address(kiln_context *ctx, const char *name,
                                                     void *address);
/* Runs the engine once on the bound buffers and returns when the outputs are written
 * (CPU engines). Fails with KILN_ERR_INVALID_STATE if an input or output is unbound. */
KILN_API kiln_status kiln_context_execute(kiln_context *ctx);

/* Where buffers bound with kiln_context_set_tensor_address live. */
typedef enum kiln_memory_location { KILN_MEMORY_DEVICE = 0, KILN_MEMORY_HOST = 1 } kiln_memory_location;

/* CPU engines: buffers are host memory, whatever is set here. CUDA engines: device
 * pointers by default (no copies, as TensorRT); KILN_MEMORY_HOST makes the context copy
 * inputs in and outputs out around each execute, through device buffers it allocates
 * here, once. Set it before binding buffers. */
KILN_API kiln_status kiln_context_set_io_memory(kiln_context *ctx, kiln_memory_location where);

/* Enqueues one run on `stream` (a cudaStream_t for CUDA engines; NULL: the context's
 * own stream) and returns without waiting. CPU engines run synchronously. The bound
 * buffers must stay valid until the work is done. */
KILN_API kiln_status kiln_context_enqueue(kiln_context *ctx, void *stream);

/* Per-layer profiling, like TensorRT's IProfiler: after each layer of each execute the
 * callback gets the layer's name, type name and wall time in milliseconds. NULL turns it
 * off (the default; profiling costs two clock reads per layer). Strings are valid during
 * the call only. */
typedef void (*kiln_profile_fn)(void *user, const char *layer_name, const char *layer_type, double ms);
KILN_API kiln_status kiln_context_set_profiler(kiln_context *ctx, kiln_profile_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif
