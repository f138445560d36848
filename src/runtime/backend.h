/* kiln internal: what the runtime needs from a backend (CPU, CUDA). A backend is a table
 * of functions plus its own per-context state; the builder asks it to prepare a kernel
 * per layer, a context asks it for memory and to run the prepared layers in order. */
#ifndef KILN_RUNTIME_BACKEND_H
#define KILN_RUNTIME_BACKEND_H

#include "runtime/engine.h"

typedef struct kb_ctx kb_ctx; /* a backend's per-context state */

typedef struct kb_backend {
    const char *name;
    kiln_device device;
    /* ---- build time ---- */
    /* Whether the kernel for `producer` can apply activation `act` itself. */
    bool (*can_fuse_act)(kiln_layer_type producer, kiln_activation_type act);
    /* Chooses and prepares node->layer's kernel: sets node->kernel, node->state,
     * node->scratch_bytes. Skipped nodes (views, constants) are prepared too, with
     * node->skip set, so a backend can place their data (a constant on the device). */
    kiln_status (*prepare)(const kiln_engine *e, ke_node *node);
    void (*release)(const kiln_env *env, ke_node *node);
    /* Where a skipped constant's values live at run time. */
    const void *(*const_data)(const ke_node *node);
    /* ---- contexts ---- */
    /* Allocates the context's backend state with e->arena_bytes of activation memory
     * (*arena) and e->scratch_bytes of scratch. */
    kiln_status (*ctx_create)(const kiln_engine *e, kb_ctx **out, void **arena);
    void (*ctx_destroy)(const kiln_engine *e, kb_ctx *c, void *arena);
    kiln_status (*run)(kb_ctx *c, const ke_node *node, const void *const *in, void *const *out);
    /* Waits until everything run so far is done. */
    kiln_status (*finish)(kb_ctx *c);
    /* Runs subsequent work on `stream` (backend-specific; NULL: the context's own). */
    kiln_status (*set_stream)(kb_ctx *c, void *stream);
    /* Device memory for host-side I/O staging (NULL for host-memory backends). */
    kiln_status (*dev_alloc)(kb_ctx *c, size_t bytes, void **ptr);
    void (*dev_free)(kb_ctx *c, void *ptr);
    kiln_status (*upload)(kb_ctx *c, void *dst, const void *src, size_t bytes);
    kiln_status (*download)(kb_ctx *c, void *dst, const void *src, size_t bytes);
    /* Describes the device and library versions kernels were chosen for, as one line of
     * "key=value;" pairs; a plan whose fingerprint differs re-chooses its kernels. NULL:
     * nothing device-specific (kernels depend on the layer alone). */
    void (*fingerprint)(const kiln_env *env, char *buf, size_t size);
    /* Name of the kernel chosen for a node ("cpu.Convolution"); NULL: the type name. */
    const char *(*kernel_name)(const ke_node *node);
    /* ---- optional (NULL: not supported) ---- */
    /* Whether the convolution kernel adds a residual input (inputs[1]). */
    bool (*can_fuse_residual)(const kiln_layer *conv);
    /* Storage type and layout wanted for a layer's float tensors (src/opt/passes.h). */
    bool (*layer_format)(const kiln_layer *l, unsigned flags, int *storage, int *format);
    /* Refit: the node's weights slot changed in place (same size); update derived copies
     * without choosing the kernel again. NULL: release and prepare again. */
    kiln_status (*refit)(const kiln_engine *e, ke_node *node, int slot);
    /* Around one run of all nodes, with every tensor's resolved address (ptrs, by tensor
     * id). run_begin may replay the whole run itself (a CUDA graph captured on an earlier
     * run with the same addresses) and set *done; otherwise the runtime runs each node and
     * then calls run_end. `graphable` is false while per-layer profiling is on. */
    kiln_status (*run_begin)(kb_ctx *c, void *const *ptrs, int nb_ptrs, bool graphable, bool *done);
    kiln_status (*run_end)(kb_ctx *c);
    /* The kernel choice made for a prepared node, as at most `cap` bytes into buf (see
     * ke_node.hint): returns the byte count, 0 when the node's kernel involves no choice.
     * NULL: the backend chooses by rule alone (nothing to store or cache). */
    size_t (*tactic)(const ke_node *node, uint8_t *buf, size_t cap);
    /* kiln_host_alloc: host memory the device copies fastest (pinned); NULL: plain memory. */
    kiln_status (*host_alloc)(size_t bytes, void **ptr);
    void (*host_free)(void *ptr);
    /* The largest |x| over n float32 values in device memory (NaN and Inf give +Inf), for
     * the FP16 range check; waits for the context's stream. NULL: the check downloads the
     * values and scans them on the host. */
    kiln_status (*absmax)(kb_ctx *c, const void *src, size_t n, float *out);
    /* Whether the kernel of layer l reads (an input) or writes (an output) tensor t when t
     * lies in a channel slice of a wider channels-last tensor (kiln_tensor.pitch, a
     * multiple of 8 elements, the slice 16-byte aligned). NULL: never; a concat along
     * channels-last channels then copies. */
    bool (*pitch_ok)(const kiln_layer *l, const kiln_tensor *t);
    /* Which regions of data-movement and element-wise layers run as one fused layer
     * (kopt_fuse_regions): 0 none, 1 float32 row-major tensors, 2 float32 and float16
     * tensors in any layout. */
    int fuse_regions;
    /* A small number added to a node's timing-cache key: what its kernels' timing depended
     * on besides the layer itself, read when the nodes before it are prepared (CUDA: whether
     * the kernel before it is one of kiln's programmatic dependent launches, which the
     * node's own such kernels overlap). NULL: nothing. */
    unsigned (*tactic_context)(const kiln_engine *e, const ke_node *node);
} kb_backend;

extern const kb_backend kb_cpu_backend;
#ifdef KILN_HAVE_CUDA
/* The CUDA backend, or NULL with the message set and *why its status (KILN_ERR_DEVICE: no
 * usable GPU or driver; KILN_ERR_UNSUPPORTED: a GPU older than the kernels). */
const kb_backend *kb_cuda_backend_get(const kiln_env *env, kiln_status *why);
#endif

/* The backend for a device; NULL (message set, its status in *why when why is not NULL) if
 * this build or machine has none. */
const kb_backend *kb_backend_for(const kiln_env *env, kiln_device device, kiln_status *why);

#endif
