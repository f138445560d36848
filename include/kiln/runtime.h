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

/* One layer as the engine runs it, after fusion. Strings live as long as the engine. */
typedef struct kiln_layer_info {
    const char *name;
    const char *type;       /* layer type name ("Convolution") */
    const char *kernel;     /* the kernel the backend chose ("cpu.Convolution") */
    const char *fused;      /* activation fused into it ("Relu"), or "" */
    kiln_dtype precision;   /* dtype of its first output */
    int nb_inputs, nb_outputs;
    const char *output;     /* name of its first output tensor */
    size_t output_bytes;    /* bytes of all its outputs */
    size_t weight_bytes;    /* bytes of the weights it holds */
} kiln_layer_info;
/* index in [0, kiln_engine_num_layers). */
KILN_API kiln_status kiln_engine_layer_info(const kiln_engine *engine, int index, kiln_layer_info *info);

/* The device and library versions the engine's kernels were chosen for ("key=value;"
 * pairs, as stored in plan files). Valid while the engine lives. */
KILN_API const char *kiln_engine_fingerprint(const kiln_engine *engine);
/* The kiln_builder_flag bits the engine was built with. */
KILN_API unsigned kiln_engine_flags(const kiln_engine *engine);

/* Memory an engine uses: activations (per context), scratch (per context) and weights
 * (once, shared). Any pointer may be NULL. */
KILN_API void kiln_engine_memory(const kiln_engine *engine, size_t *activations, size_t *scratch,
                                 size_t *weights);

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

/* ---- engine files (.plan; the format is docs/PLAN_FORMAT.md) ---- */

/* Serializes the engine: the optimized graph, its weights in their final form, each
 * layer's kernel choice, the memory plan and the device fingerprint. *data is allocated
 * with malloc and owned by the caller (free()). */
KILN_API kiln_status kiln_engine_serialize(const kiln_engine *engine, void **data, size_t *size);
/* Writes the serialized engine to path (through a temporary file renamed at the end:
 * no partial file is left on failure). */
KILN_API kiln_status kiln_engine_save(const kiln_engine *engine, const char *path);

/* A runtime loads engines, with a logger and allocator like a builder's. */
typedef struct kiln_runtime kiln_runtime;
typedef struct kiln_runtime_desc {
    uint32_t size; /* sizeof(kiln_runtime_desc) */
    kiln_log_fn log;
    void *log_user;
    kiln_log_level log_level;
    const kiln_allocator *allocator;
    /* A plan made on another device or library version normally loads by choosing its
     * kernels again for this device (and says so in one log line); set this to refuse
     * it with KILN_ERR_UNSUPPORTED instead. */
    int refuse_device_mismatch;
    int threads; /* CPU worker threads per context; 0 = the plan's setting */
    /* Timing cache file (see kiln_config_set_timing_cache) used when a plan from another
     * device has its kernels chosen again: makes that fast; NULL: time them. */
    const char *timing_cache;
} kiln_runtime_desc;
#define KILN_RUNTIME_DESC_INIT {sizeof(kiln_runtime_desc), NULL, NULL, KILN_LOG_WARNING, NULL, 0, 0, NULL}

KILN_API kiln_status kiln_runtime_create(const kiln_runtime_desc *desc, kiln_runtime **out);
KILN_API void kiln_runtime_destroy(kiln_runtime *runtime);
/* Loads an engine from bytes (only read during the call). Corrupt, truncated or
 * newer-format data gives KILN_ERR_FORMAT with the reason. The caller owns *out. */
KILN_API kiln_status kiln_runtime_load(kiln_runtime *runtime, const void *data, size_t size,
                                       kiln_engine **out);
KILN_API kiln_status kiln_runtime_load_file(kiln_runtime *runtime, const char *path,
                                            kiln_engine **out);

/* ---- refit: new weights without rebuilding ---- */

/* Weights that can be replaced, named "<layer>.<role>" (role: kernel, bias, scale,
 * shift, power) or "<layer>" for a constant layer. Weights a build pass rewrote (batch
 * norm folded into a convolution) are not listed: build with KILN_FLAG_REFIT to keep
 * them all. */
KILN_API int kiln_engine_num_weights(const kiln_engine *engine);
KILN_API const char *kiln_engine_weights_name(const kiln_engine *engine, int index);
KILN_API kiln_status kiln_engine_weights_info(const kiln_engine *engine, const char *name,
                                              kiln_dtype *dtype, int64_t *count);
/* Replaces the named weights (same dtype and count; values only read during the call).
 * Must not run while a context of this engine executes; contexts created before see the
 * new weights at their next execute. */
KILN_API kiln_status kiln_engine_refit(kiln_engine *engine, const char *name, kiln_weights weights);

/* Where buffers bound with kiln_context_set_tensor_address live. */
typedef enum kiln_memory_location { KILN_MEMORY_DEVICE = 0, KILN_MEMORY_HOST = 1 } kiln_memory_location;

/* CPU engines: buffers are host memory, whatever is set here. CUDA engines: device
 * pointers by default (no copies, as TensorRT); KILN_MEMORY_HOST makes the context copy
 * inputs in and outputs out around each execute, through device buffers it allocates
 * here, once. Set it before binding buffers. */
KILN_API kiln_status kiln_context_set_io_memory(kiln_context *ctx, kiln_memory_location where);

/* For benchmarks (trtexec's --noDataTransfers): with KILN_MEMORY_HOST set and the buffers
 * bound, copies the inputs to the device once, and makes later runs use the context's
 * device copies only, with no transfers (outputs are not copied back). Setting
 * KILN_MEMORY_HOST again turns copying back on. CPU engines: nothing to do. */
KILN_API kiln_status kiln_context_keep_io_on_device(kiln_context *ctx);

/* Host memory for a context's inputs and outputs bound with KILN_MEMORY_HOST: page-locked
 * (pinned) for KILN_DEVICE_CUDA, so the copies around each execute run as DMA without the
 * driver's staging copy; 64-byte-aligned ordinary memory for KILN_DEVICE_CPU. At least 64-byte
 * aligned either way. Fails with KILN_ERR_INVALID_ARGUMENT for 0 bytes, with the device's error
 * when CUDA has no usable GPU, KILN_ERR_OUT_OF_MEMORY when the memory cannot be had. Free with
 * kiln_host_free (NULL is ignored). With pinned buffers the copies are truly asynchronous:
 * after kiln_context_enqueue, the inputs may still be read and the outputs not yet written
 * until kiln_context_synchronize returns (kiln_context_execute does both). */
KILN_API kiln_status kiln_host_alloc(kiln_device device, size_t bytes, void **out);
KILN_API void kiln_host_free(void *ptr);

/* Enqueues one run on `stream` (a cudaStream_t for CUDA engines; NULL: the context's
 * own stream) and returns without waiting. CPU engines run synchronously. The bound
 * buffers must stay valid until the work is done. */
KILN_API kiln_status kiln_context_enqueue(kiln_context *ctx, void *stream);

/* Waits until the work enqueued on the context's stream is done (CPU: returns at once). */
KILN_API kiln_status kiln_context_synchronize(kiln_context *ctx);

/* CUDA engines capture a whole run into a CUDA graph the second time they run with the
 * same buffer addresses and replay it from then on (one launch per inference). on = 0
 * turns that off for this context: every layer is launched each run (slower to launch;
 * for debugging, or tools that cannot see inside graphs). CPU engines ignore it. */
KILN_API kiln_status kiln_context_set_cuda_graph(kiln_context *ctx, int on);

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
