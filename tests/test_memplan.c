/* kiln tests: the activation memory planner never overlaps buffers alive at the same
 * step, aligns offsets, and reuses memory (a chain needs about two buffers, not n). */
#include "harness.h"
#include "opt/memplan.h"

static void check_plan(const kmp_buffer *b, int n, const size_t *off, size_t total, size_t align) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (off[i] % align) bad++;
        if (off[i] + b[i].bytes > total) bad++;
        for (int j = i + 1; j < n; j++) {
            bool live = b[i].first <= b[j].last && b[j].first <= b[i].last;
            bool mem = off[i] < off[j] + b[j].bytes && off[j] < off[i] + b[i].bytes;
            if (live && mem && b[i].bytes && b[j].bytes) bad++;
        }
    }
    CHECK(bad == 0, "%d overlapping or misaligned buffers among %d", bad, n);
}

int main(void) {
    kiln_env env;
    kiln_env_default(&env);
    /* a chain: each buffer lives from its step to the next */
    enum { N = 50 };
    kmp_buffer chain[N];
    size_t off[400], total = 0;
    for (int i = 0; i < N; i++) {
        chain[i].bytes = 1000;
        chain[i].first = i;
        chain[i].last = i + 1;
    }
    CHECK_OK(kmp_plan(&env, chain, N, 64, off, &total));
    check_plan(chain, N, off, total, 64);
    CHECK(total <= 2 * 1024, "a chain needs two buffers, planned %zu bytes", total);

    /* random lifetimes and sizes */
    for (int round = 0; round < 50; round++) {
        kmp_buffer b[400];
        int n = 1 + (int)(th_rand_u64() % 400);
        size_t peak_lower = 0;
        for (int i = 0; i < n; i++) {
            b[i].first = (int)(th_rand_u64() % 100);
            b[i].last = b[i].first + (int)(th_rand_u64() % 20);
            b[i].bytes = th_rand_u64() % 7 == 0 ? 0 : 1 + th_rand_u64() % 100000;
        }
        for (int s = 0; s < 120; s++) {
            size_t live = 0;
            for (int i = 0; i < n; i++)
                if (b[i].first <= s && s <= b[i].last) live += b[i].bytes;
            if (live > peak_lower) peak_lower = live;
        }
        CHECK_OK(kmp_plan(&env, b, n, 64, off, &total));
        check_plan(b, n, off, total, 64);
        CHECK(total >= peak_lower, "arena %zu below the live peak %zu", total, peak_lower);
        CHECK(total <= 2 * peak_lower + 64 * (size_t)n, "arena %zu far above the live peak %zu", total, peak_lower);
    }
    CHECK_OK(kmp_plan(&env, NULL, 0, 64, off, &total));
    CHECK(total == 0, "empty plan");
    return th_exit("test_memplan");
}
