/* kiln internal: greedy-by-size activation memory planner (see memplan.h). */
#include "opt/memplan.h"

#include <stdlib.h>
#include <string.h>

typedef struct order_item {
    size_t bytes;
    int index;
} order_item;

static int by_size_desc(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->index - y->index; /* stable: deterministic plans */
}

typedef struct span {
    size_t begin, end;
} span;

static int by_begin(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

kiln_status kmp_plan(const kiln_env *env, const kmp_buffer *buf, int n, size_t align, size_t *offsets, size_t *total) {
    *total = 0;
    if (n <= 0) return KILN_OK;
    order_item *order = kiln_alloc(env, (size_t)n * sizeof *order);
    span *busy = kiln_alloc(env, (size_t)n * sizeof *busy);
    int *placed = kiln_alloc(env, (size_t)n * sizeof *placed);
    if (!order || !busy || !placed) {
        kiln_free(env, order);
        kiln_free(env, busy);
        kiln_free(env, placed);
        return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory planning %d buffers", n);
    }
    for (int i = 0; i < n; i++) {
        order[i].bytes = buf[i].bytes;
        order[i].index = i;
    }
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    int nb_placed = 0;
    size_t top = 0;
    for (int k = 0; k < n; k++) {
        int i = order[k].index;
        size_t need = KILN_ALIGN_UP(buf[i].bytes, align);
        int nb_busy = 0;
        for (int q = 0; q < nb_placed; q++) {
            int j = placed[q];
            if (buf[j].first <= buf[i].last && buf[i].first <= buf[j].last && buf[j].bytes) {
                busy[nb_busy].begin = offsets[j];
                busy[nb_busy].end = offsets[j] + KILN_ALIGN_UP(buf[j].bytes, align);
                nb_busy++;
            }
        }
        qsort(busy, (size_t)nb_busy, sizeof *busy, by_begin);
        /* first gap that fits, scanning spans in address order */
        size_t at = 0;
        for (int q = 0; q < nb_busy; q++) {
            if (busy[q].begin >= at + need) break;
            if (busy[q].end > at) at = busy[q].end;
        }
        offsets[i] = at;
        if (at + need > top) top = at + need;
        placed[nb_placed++] = i;
    }
    kiln_free(env, order);
    kiln_free(env, busy);
    kiln_free(env, placed);
    *total = top;
    return KILN_OK;
}
