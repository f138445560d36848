/* kiln tests: the timing cache file (src/runtime/tactics.c). Entries survive a save and a
 * reopen; a corrupt, truncated, foreign or unwritable file never fails a build: a warning,
 * an empty cache, and (when writable) a rewritten file. CUDA builds that use it are
 * checked in test_plan on a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "runtime/engine.h"

static int warnings;

static void count_warnings(void *user, kiln_log_level level, const char *msg) {
    (void)user, (void)msg;
    warnings += level == KILN_LOG_WARNING;
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Opens `path`, expects `entries` and no warning (or one, when `warn`). */
static ke_tcache *reopen(const kiln_env *env, const char *path, int entries, bool warn, const char *what) {
    warnings = 0;
    ke_tcache *c = ke_tcache_open(env, path);
    CHECK(c != NULL, "%s: open", what);
    CHECK(ke_tcache_size(c) == entries, "%s: %d entries, expected %d", what, ke_tcache_size(c), entries);
    CHECK(warnings == (warn ? 1 : 0), "%s: %d warnings", what, warnings);
    return c;
}

static int rand_int(int lo, int hi) { return lo + (int)th_uniform(0, hi - lo + 0.999); }

int main(void) {
    kiln_env env;
    kiln_env_default(&env);
    env.log = count_warnings;
    env.level = KILN_LOG_WARNING;
    char path[] = "/tmp/kiln_test_tactics_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    remove(path);

    /* a missing file is an empty cache; saving an unchanged empty cache writes nothing */
    ke_tcache *c = reopen(&env, path, 0, false, "missing file");
    CHECK(ke_tcache_save(c) == KILN_OK && access(path, F_OK) != 0, "nothing to write");
    /* random keys and values of every size up to the limit */
    enum { N = 300 };
    static uint8_t keys[N][200], vals[N][KE_TACTIC_MAX];
    size_t kl[N], vl[N];
    for (int i = 0; i < N; i++) {
        kl[i] = 1 + (size_t)rand_int(0, 198);
        vl[i] = (size_t)rand_int(0, KE_TACTIC_MAX);
        if (kl[i] < sizeof i) kl[i] = sizeof i;
        for (size_t k = 0; k < kl[i]; k++) keys[i][k] = (uint8_t)rand_int(0, 255);
        memcpy(keys[i], &i, sizeof i); /* distinct keys */
        for (size_t k = 0; k < vl[i]; k++) vals[i][k] = (uint8_t)rand_int(0, 255);
        CHECK(ke_tcache_put(c, keys[i], kl[i], vals[i], vl[i]), "put %d", i);
    }
    uint8_t big[KE_TACTIC_MAX + 1] = {0};
    CHECK(!ke_tcache_put(c, keys[0], kl[0], big, sizeof big), "a value over the limit is refused");
    /* replacing a value keeps one entry */
    CHECK(ke_tcache_put(c, keys[1], kl[1], vals[2], vl[2]) && ke_tcache_size(c) == N, "replace");
    CHECK(ke_tcache_put(c, keys[1], kl[1], vals[1], vl[1]), "restore");
    CHECK_OK(ke_tcache_save(c));
    ke_tcache_close(c);

    c = reopen(&env, path, N, false, "saved cache");
    int bad = 0;
    for (int i = 0; i < N; i++) {
        size_t n = 0;
        const uint8_t *v = ke_tcache_get(c, keys[i], kl[i], &n);
        bad += !v || n != vl[i] || memcmp(v, vals[i], n) != 0;
    }
    CHECK(bad == 0, "%d entries differ after a reopen", bad);
    uint8_t other[3] = {9, 9, 9};
    size_t n = 7;
    CHECK(ke_tcache_get(c, other, 3, &n) == NULL && n == 0, "absent key");
    ke_tcache_close(c);

    /* every byte position corrupted, and every truncation: empty cache, one warning */
    long size = file_size(path);
    FILE *f = fopen(path, "rb");
    uint8_t *image = malloc((size_t)size);
    CHECK(f && image && fread(image, 1, (size_t)size, f) == (size_t)size, "read back");
    if (f) fclose(f);
    int wrong = 0;
    for (long i = 0; image && i < size; i += (i < 64 ? 1 : 211)) {
        for (int trunc = 0; trunc < 2; trunc++) {
            f = fopen(path, "wb");
            if (!f) continue;
            if (trunc) {
                fwrite(image, 1, (size_t)i, f);
            } else {
                image[i] ^= 0x21;
                fwrite(image, 1, (size_t)size, f);
                image[i] ^= 0x21;
            }
            fclose(f);
            warnings = 0;
            c = ke_tcache_open(&env, path);
            /* truncated to nothing reads as a new cache, not as a corrupt one */
            bool expect_warn = !(trunc && i == 0);
            if (!c || ke_tcache_size(c) != 0 || warnings != (expect_warn ? 1 : 0)) {
                fprintf(stderr, "byte %ld%s: %d entries, %d warnings\n", i, trunc ? " (truncated there)" : "",
                        ke_tcache_size(c), warnings);
                wrong++;
            }
            ke_tcache_close(c);
        }
    }
    CHECK(wrong == 0, "%d corrupt or truncated caches not handled", wrong);

    /* a file of another kind: ignored, then replaced by a valid cache when saved */
    f = fopen(path, "wb");
    if (f) {
        fputs("KILNPLAN not a cache at all", f);
        fclose(f);
    }
    c = reopen(&env, path, 0, true, "foreign file");
    CHECK(ke_tcache_put(c, keys[0], kl[0], vals[0], vl[0]), "put");
    CHECK_OK(ke_tcache_save(c));
    ke_tcache_close(c);
    c = reopen(&env, path, 1, false, "rewritten");
    ke_tcache_close(c);

    /* an unwritable place: a warning and an error status, no stray temporary file */
    c = reopen(&env, "/nonexistent-dir/kiln.cache", 0, false, "unwritable");
    CHECK(ke_tcache_put(c, keys[0], kl[0], vals[0], vl[0]), "put");
    warnings = 0;
    CHECK(ke_tcache_save(c) == KILN_ERR_IO && warnings == 1, "unwritable: error and warning");
    ke_tcache_close(c);

    free(image);
    remove(path);
    return th_exit("test_tactics");
}
