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
    /* Kernel choice, as backend-specific bytes (a "tactic"): `hint` offers prepare a choice
     * made before (stored in a plan, or found in the timing cache) so it need not time the
     * candidates again; prepare sets hint_used when it took it. After prepare, `tactic`
     * (engine-owned) records the choice made, for the plan and the timing cache. */
    const uint8_t *hint;
    size_t hint_len;
    bool hint_used;
    uint8_t *tactic;
    size_t tactic_len;
} ke_node;

/* Most bytes a backend's tactic may take. */
#define KE_TACTIC_MAX 512

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
    bool untimed;   /* kernels by the libraries' heuristics, no timing (a range probe) */
    char fingerprint[512];
};

/* Runs a context once, layer by layer (no CUDA graph), calling fn after each node with
 * the addresses of its outputs (valid until a later node reuses the memory). */
typedef kiln_status (*ke_probe_fn)(void *user, kiln_context *c, const ke_node *node, void *const *outs);
kiln_status ke_context_run_probed(kiln_context *c, ke_probe_fn fn, void *user);
/* Copies `bytes` at src (a tensor address of the context's device) into host memory. */
kiln_status ke_context_read(kiln_context *c, void *dst, const void *src, size_t bytes);
/* The largest |x| over n float32 values at src (the backend's memory): KILN_ERR_UNSUPPORTED
 * when the backend has no device-side reduction (then read and scan). */
kiln_status ke_context_absmax(kiln_context *c, const void *src, size_t n, float *out);

/* Asks the backend for the fingerprint of this device (at build and load). */
void ke_fill_fingerprint(kiln_engine *e);
/* Every tensor must fit in this machine's memory (host memory bounds device memory too, and
 * host buffers hold the I/O): a corrupt or hostile model or plan, such as a Resize to a
 * billion channels, fails at build or load naming the tensor (KILN_ERR_OUT_OF_MEMORY), not
 * in an allocator or a kernel's tables. Symbolic dimensions are left to run time. */
kiln_status ke_check_tensor_sizes(const kiln_graph *g, const kiln_env *env);

/* ---- kernel choices (src/runtime/tactics.c) ---- */

/* A timing cache: kernel choices keyed by layer signature and device fingerprint. */
typedef struct ke_tcache ke_tcache;

/* Reads the cache file at `path`; a missing file gives an empty cache, an unreadable or
 * corrupt one an empty cache and a warning (a cache only ever saves time). NULL: out of
 * memory (message set). */
ke_tcache *ke_tcache_open(const kiln_env *env, const char *path);
/* Writes the cache back (atomically: a temporary file renamed over it) if it changed. A
 * failure is logged as a warning (the engine built is fine) and returned. */
kiln_status ke_tcache_save(ke_tcache *c);
void ke_tcache_close(ke_tcache *c);
/* Entries in the cache (for logs and tests). */
int ke_tcache_size(const ke_tcache *c);
/* Raw access by key bytes (the builder keys by layer signature): get returns the value
 * (NULL: absent), put adds or replaces (false: out of memory or over the size limits). */
const uint8_t *ke_tcache_get(ke_tcache *c, const uint8_t *key, size_t key_len, size_t *val_len);
bool ke_tcache_put(ke_tcache *c, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len);

/* Prepares every node with the backend (the builder's and the loader's last step): each
 * node's hint comes from the node's stored tactic when `use_stored` (a plan loaded on the
 * device it was built for), else from `cache` (may be NULL); the choice made is recorded
 * in node->tactic and, when it was timed anew, in the cache. `progress`, when given, is
 * called per node. Logs one line with how many choices were reused. */
kiln_status ke_prepare_nodes(kiln_engine *e, ke_tcache *cache, bool use_stored,
                             void (*progress)(const void *user, int done, int total), const void *user);

/* Drops one reference; frees the engine with the last. */
void ke_engine_release(kiln_engine *e);

#endif
