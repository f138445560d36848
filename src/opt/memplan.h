/* kiln internal: activation memory planning. Given buffers with sizes and lifetimes
 * (the first and last step that touch them), assigns offsets in one arena so that
 * buffers alive at the same step never overlap, trying to keep the arena small. */
#ifndef KILN_OPT_MEMPLAN_H
#define KILN_OPT_MEMPLAN_H

#include "core/common.h"

typedef struct kmp_buffer {
    size_t bytes;
    int first, last; /* inclusive step range */
} kmp_buffer;

/* Greedy by size: the largest buffers are placed first, each at the lowest offset that
 * fits between the buffers already placed whose lifetimes overlap its own. offsets[i]
 * are multiples of `align`; *total is the arena size. */
kiln_status kmp_plan(const kiln_env *env, const kmp_buffer *buffers, int n, size_t align, size_t *offsets,
                     size_t *total);

#endif
