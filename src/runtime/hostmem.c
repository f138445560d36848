/* kiln: host memory for a context's inputs and outputs (kiln_host_alloc). A 64-byte header
 * before the caller's pointer records who allocated the block, so kiln_host_free needs no
 * device argument. */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/backend.h"

#define HOSTMEM_MAGIC 0x6b696c6e686f7374ull /* "kilnhost" */
#define HOSTMEM_HEADER 64

typedef struct hostmem_header {
    uint64_t magic;
    const kb_backend *backend; /* NULL: aligned_alloc */
} hostmem_header;

kiln_status kiln_host_alloc(kiln_device device, size_t bytes, void **out) {
    if (!out) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "host alloc: out is NULL");
    *out = NULL;
    if (!bytes) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "host alloc: 0 bytes asked for");
    if (bytes > SIZE_MAX - 2 * HOSTMEM_HEADER)
        return kiln_error(NULL, KILN_ERR_OUT_OF_MEMORY, "host alloc: %zu bytes is more than can be addressed", bytes);
    kiln_status why = KILN_ERR_UNSUPPORTED;
    const kb_backend *b = kb_backend_for(NULL, device, &why);
    if (!b) return why; /* the message names the reason */
    size_t total = KILN_ALIGN_UP(bytes, HOSTMEM_HEADER) + HOSTMEM_HEADER;
    void *base = NULL;
    if (b->host_alloc) {
        kiln_status st = b->host_alloc(total, &base);
        if (st != KILN_OK) return st;
    } else {
        base = aligned_alloc(HOSTMEM_HEADER, total);
        if (!base) return kiln_error(NULL, KILN_ERR_OUT_OF_MEMORY, "host alloc: cannot allocate %zu bytes", bytes);
    }
    hostmem_header *h = base;
    h->magic = HOSTMEM_MAGIC;
    h->backend = b->host_alloc ? b : NULL;
    *out = (char *)base + HOSTMEM_HEADER;
    return KILN_OK;
}

void kiln_host_free(void *ptr) {
    if (!ptr) return;
    hostmem_header *h = (hostmem_header *)((char *)ptr - HOSTMEM_HEADER);
    /* A pointer kiln_host_alloc did not return, or one freed already, is undefined behaviour
     * (as for free); the magic only turns the likeliest such mistakes into a no-op. */
    if (h->magic != HOSTMEM_MAGIC) return;
    h->magic = 0;
    if (h->backend) h->backend->host_free(h);
    else free(h);
}
