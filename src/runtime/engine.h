/* kiln internal: what a built engine holds. The engine owns an optimized copy of the
 * graph, the kernel chosen for each executed layer with its prepared state, and the
 * memory plan: where every tensor lives when the engine runs. */
#ifndef KILN_RUNTIME_ENGINE_H
#define KILN_RUNTIME_ENGINE_H

#include <stdatomic.h>

#include "cpu/cpu.h"
#include "graph/graph.h"
#include "kiln/builder.h"

/* Where a tensor's bytes are at run time. */
typedef enum ke_storage {
    KE_ARENA = 0, /* the context's activation arena, at `offset` */
    KE_INPUT,     /* the buffer bound to engine I/O `io` (an input) */
    KE_OUTPUT,    /* the buffer bound to engine I/O `io` (an output) */
    KE_CONST      /* engine-owned constant data at `cdata` */
} ke_storage;

typedef struct ke_tensor_plan {
    ke_storage storage;
    int io;            /* KE_INPUT/KE_OUTPUT */
    size_t offset;     /* KE_ARENA */
    const void *cdata; /* KE_CONST */
    size_t bytes;
    int root;          /* the tensor whose storage this one shares (itself if none) */
} ke_tensor_plan;

typedef struct ke_node {
    kiln_layer *layer; /* in the engine's graph */
    const void *kernel; /* backend-specific (CPU: const kcpu_kernel *) */
    void *state;
    size_t scratch_bytes;
    bool skip; /* its output is a view or a constant: nothing to run */
} ke_node;

typedef struct ke_io {
    const char *name; /* the tensor's name (owned by the graph) */
    int tensor;       /* tensor id */
    kiln_io_mode mode;
} ke_io;

struct kiln_engine {
    kiln_env env;
    atomic_int refs; /* the handle + one per live context */
    kiln_device device;
    const struct kb_backend *backend;
    kiln_graph graph;
    ke_node *nodes;
    int nb_nodes;
    ke_tensor_plan *plan; /* indexed by tensor id */
    ke_io *io;
    int nb_io;
    size_t arena_bytes;
    size_t scratch_bytes; /* max over nodes */
    int max_inputs, max_outputs; /* arity bounds for the run-time pointer arrays */
    int threads; /* CPU worker threads per context; 0 = all cores */
    unsigned flags; /* kiln_builder_flag bits the engine was built with */
    char fingerprint[512];
};

/* Asks the backend for the fingerprint of this device (at build and load). */
void ke_fill_fingerprint(kiln_engine *e);

/* Drops one reference; frees the engine with the last. */
void ke_engine_release(kiln_engine *e);

#endif
