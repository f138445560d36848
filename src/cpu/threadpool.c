/* kiln CPU backend: a fixed pool of worker threads for kcpu_parallel_for. The caller
 * takes chunk 0 itself; workers take the others and sleep on a condition variable
 * between jobs, so an idle context costs no CPU (OpenBLAS needs those cores). */
#include <string.h>
#include <unistd.h>

#include "cpu/exec.h"

struct kcpu_pool {
    int threads; /* including the caller */
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t generation;
    bool stop;
    /* the current job */
    kcpu_range_fn fn;
    void *arg;
    int64_t n;
    int chunks;
    int remaining; /* chunks not finished, under mu */
};

typedef struct worker_arg {
    kcpu_pool *pool;
    int index; /* 1..threads-1 */
} worker_arg;

static void chunk_bounds(int64_t n, int chunks, int i, int64_t *b, int64_t *e) {
    *b = n * i / chunks;
    *e = n * (i + 1) / chunks;
}

static void *worker_main(void *p) {
    worker_arg *wa = p;
    kcpu_pool *pool = wa->pool;
    int me = wa->index;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->stop && pool->generation == seen) pthread_cond_wait(&pool->wake, &pool->mu);
        if (pool->stop) break;
        seen = pool->generation;
        if (me >= pool->chunks) continue;
        kcpu_range_fn fn = pool->fn;
        void *arg = pool->arg;
        int64_t b, e;
        chunk_bounds(pool->n, pool->chunks, me, &b, &e);
        pthread_mutex_unlock(&pool->mu);
        fn(arg, b, e);
        pthread_mutex_lock(&pool->mu);
        if (--pool->remaining == 0) pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int kcpu_online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

kcpu_pool *kcpu_pool_create(const kiln_env *env, int threads) {
    if (threads < 1) threads = 1;
    kcpu_pool *pool = kiln_calloc(env, 1, sizeof *pool);
    worker_arg *args = NULL;
    if (!pool) goto oom;
    pool->threads = threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    if (threads == 1) return pool;
    /* one allocation: thread handles followed by their arguments */
    size_t bytes = (size_t)threads * (sizeof(pthread_t) + sizeof(worker_arg));
    pool->workers = kiln_calloc(env, 1, bytes);
    if (!pool->workers) goto oom;
    args = (worker_arg *)(pool->workers + threads);
    for (int i = 1; i < threads; i++) {
        args[i].pool = pool;
        args[i].index = i;
        if (pthread_create(&pool->workers[i], NULL, worker_main, &args[i]) != 0) {
            pool->threads = i; /* join those started */
            kcpu_pool_destroy(env, pool);
            kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "could not start CPU worker thread %d of %d", i, threads);
            return NULL;
        }
    }
    return pool;
oom:
    if (pool) kcpu_pool_destroy(env, pool);
    kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory creating %d CPU threads", threads);
    return NULL;
}

void kcpu_pool_destroy(const kiln_env *env, kcpu_pool *pool) {
    if (!pool) return;
    if (pool->workers) {
        pthread_mutex_lock(&pool->mu);
        pool->stop = true;
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mu);
        for (int i = 1; i < pool->threads; i++) pthread_join(pool->workers[i], NULL);
        kiln_free(env, pool->workers);
    }
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    kiln_free(env, pool);
}

void kcpu_parallel_for(kcpu_exec *x, int64_t n, int64_t grain, kcpu_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    kcpu_pool *pool = x ? x->pool : NULL;
    int64_t want = (n + grain - 1) / grain;
    int chunks = pool ? (int)KILN_MIN((int64_t)pool->threads, want) : 1;
    if (chunks <= 1) {
        fn(arg, 0, n);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->chunks = chunks;
    pool->remaining = chunks - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    int64_t b, e;
    chunk_bounds(n, chunks, 0, &b, &e);
    fn(arg, b, e);
    pthread_mutex_lock(&pool->mu);
    while (pool->remaining > 0) pthread_cond_wait(&pool->done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

int kcpu_num_threads(const kcpu_exec *x) { return x && x->pool ? x->pool->threads : 1; }
void *kcpu_scratch(const kcpu_exec *x) { return x ? x->scratch : NULL; }
