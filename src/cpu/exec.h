/* kiln internal: the CPU execution state a context owns: a pool of worker threads
 * (created once, sleeping between jobs) and the scratch buffer shared by layers. */
#ifndef KILN_CPU_EXEC_H
#define KILN_CPU_EXEC_H

#include <pthread.h>
#include <stdatomic.h>

#include "cpu/cpu.h"

typedef struct kcpu_pool kcpu_pool;

struct kcpu_exec {
    kcpu_pool *pool; /* NULL: run everything on the calling thread */
    int threads;
    void *scratch;
};

/* Starts threads-1 workers (threads >= 1). NULL with the message set on failure. */
kcpu_pool *kcpu_pool_create(const kiln_env *env, int threads);
void kcpu_pool_destroy(const kiln_env *env, kcpu_pool *pool);
/* Online cores of this machine (at least 1). */
int kcpu_online_cores(void);

#endif
