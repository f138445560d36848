/* kiln_onnx_test: runs ONNX backend test directories (model.onnx plus
 * test_data_set_N/{input,output}_K.pb) on the kiln CPU backend and compares outputs.
 *
 *   kiln_onnx_test [--expected FILE] [--filter TEXT] [--rel-l2 TOL] [--timeout S] [--no-fork]
 *                  [--no-freeze] [-v] DIR...
 *
 * Floating outputs are compared element by element (|got - want| <= atol + rtol|want|,
 * the ONNX backend defaults rtol 1e-3, atol 1e-7), or with --rel-l2 TOL by the relative
 * L2 error of the whole tensor, ||got - want|| / ||want|| <= TOL, which suits deep
 * models whose near-zero outputs defeat element-wise tolerances.
 *
 * A DIR holding model.onnx is one test; any other DIR is scanned for such children.
 * A test is skipped when the importer reports only unsupported constructs (the reason
 * is printed), failed on any other problem or mismatch. With --expected, tests listed
 * there ("name reason...") may fail; the run fails on an unlisted failure and on a
 * listed test that passes or is skipped, so the list stays honest. Each test runs in
 * a child process so a crash or a hang (--timeout) is a failure of that test only.
 * Models that take a shape, axes or weights as a graph input get that input frozen to
 * the test data's value (when every data set agrees) unless --no-freeze. Running a test
 * is the library's kiln_onnx_test_run, which `kiln onnx-test` uses too; this program adds
 * the expected-failure list. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"
#include "kiln/onnx.h"

typedef struct options {
    const char *expected;
    const char *filter;
    bool verbose;
    kiln_onnx_test_desc desc;
} options;

static void verbose_log(void *user, kiln_log_level level, const char *msg) {
    (void)user;
    fprintf(stderr, "  [kiln %d] %s\n", (int)level, msg);
}

/* ---- expected failures ---- */

typedef struct expected {
    char **names;
    bool *seen;
    int n;
} expected;

static bool load_expected(const char *path, expected *e) {
    memset(e, 0, sizeof *e);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "kiln_onnx_test: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    char line[2048];
    int cap = 0, lineno = 0;
    bool ok = true;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '#' || *s == '\n' || !*s) continue;
        char *end = s;
        while (*end && *end != ' ' && *end != '\t' && *end != '\n') end++;
        char *reason = end;
        while (*reason == ' ' || *reason == '\t') reason++;
        if (!*reason || *reason == '\n') {
            fprintf(stderr, "%s:%d: entry without a reason\n", path, lineno);
            ok = false;
        }
        *end = 0;
        if (e->n == cap) {
            cap = cap ? 2 * cap : 64;
            e->names = realloc(e->names, (size_t)cap * sizeof *e->names);
            e->seen = realloc(e->seen, (size_t)cap * sizeof *e->seen);
            if (!e->names || !e->seen) {
                fclose(f);
                return false;
            }
        }
        e->names[e->n] = strdup(s);
        e->seen[e->n] = false;
        e->n++;
    }
    fclose(f);
    return ok;
}

static int find_expected(const expected *e, const char *name) {
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->names[i], name) == 0) return i;
    return -1;
}

typedef struct totals {
    int pass, fail, skip, xfail, bad, frozen;
} totals;

static void one(const char *dir, const options *opt, expected *ex, totals *t) {
    const char *name = strrchr(dir, '/');
    name = name ? name + 1 : dir;
    if (opt->filter && !strstr(name, opt->filter)) return;
    char msg[4096];
    kiln_onnx_test_result r;
    int nfrozen = 0;
    if (kiln_onnx_test_run(dir, &opt->desc, &r, &nfrozen, msg, sizeof msg) != KILN_OK) {
        r = KILN_ONNX_TEST_FAIL;
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
    }
    int xi = ex ? find_expected(ex, name) : -1;
    if (xi >= 0) ex->seen[xi] = true;
    switch (r) {
    case KILN_ONNX_TEST_PASS:
        t->pass++;
        if (nfrozen) t->frozen++;
        if (xi >= 0) {
            t->bad++;
            printf("UNEXPECTED PASS %s: remove it from the expected-failure list\n", name);
        } else if (opt->verbose)
            printf("PASS %s%s%s%s\n", name, msg[0] ? " (" : "", msg, msg[0] ? ")" : "");
        break;
    case KILN_ONNX_TEST_SKIP:
        t->skip++;
        printf("SKIP %s: %s\n", name, msg);
        if (xi >= 0 && opt->desc.freeze) { /* the list is kept for the default (freezing) mode */
            t->bad++;
            printf("LISTED BUT SKIPPED %s: remove it from the expected-failure list\n", name);
        }
        break;
    case KILN_ONNX_TEST_FAIL:
        t->fail++;
        if (xi >= 0) {
            t->xfail++;
            printf("XFAIL %s: %s\n", name, msg);
        } else {
            t->bad++;
            printf("FAIL %s: %s\n", name, msg);
        }
        break;
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    options opt = {NULL, NULL, false, KILN_ONNX_TEST_DESC_INIT};
    opt.desc.isolate = 1;
    opt.desc.timeout_s = 300;
    static const char usage[] =
        "usage: %s [--expected FILE] [--filter TEXT] [--rel-l2 TOL] [--timeout S] [--no-fork] [--no-freeze] [-v] DIR...\n"
        "  runs ONNX backend test directories (model.onnx + test_data_set_*/) on the kiln CPU backend\n"
        "  --expected FILE  tests allowed to fail (\"name reason\" per line); listed tests that pass fail the run\n"
        "  --filter TEXT    only tests whose name contains TEXT\n"
        "  --rel-l2 TOL     compare float outputs by whole-tensor relative L2 error instead of rtol/atol\n"
        "  --timeout S      seconds a test may take (default 300)\n"
        "  --no-fork        run tests in this process (for debuggers and leak checkers)\n"
        "  --no-freeze      skip tests that feed a shape, axes or weights as a model input, instead of\n"
        "                   freezing that input to the test's value (kiln_onnx_desc.frozen_*)\n"
        "  -v               print passes and kiln's log\n";
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    int nb_dirs = 0;
    if (!dirs) return 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expected") == 0 && i + 1 < argc)
            opt.expected = argv[++i];
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            opt.filter = argv[++i];
        else if (strcmp(argv[i], "--no-fork") == 0)
            opt.desc.isolate = 0;
        else if (strcmp(argv[i], "--no-freeze") == 0)
            opt.desc.freeze = 0;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            opt.desc.timeout_s = atoi(argv[++i]);
            if (opt.desc.timeout_s <= 0) {
                fprintf(stderr, "%s: --timeout wants a positive number of seconds\n", argv[0]);
                return 2;
            }
        } else if (strcmp(argv[i], "--rel-l2") == 0 && i + 1 < argc) {
            char *end;
            opt.desc.rel_l2 = strtod(argv[++i], &end);
            if (*end || !(opt.desc.rel_l2 > 0)) {
                fprintf(stderr, "%s: --rel-l2 wants a positive number, got '%s'\n", argv[0], argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "-v") == 0) {
            opt.verbose = true;
            opt.desc.log = verbose_log;
            opt.desc.log_level = KILN_LOG_INFO;
        }
        else if (argv[i][0] == '-') {
            fprintf(stderr, usage, argv[0]);
            return 2;
        } else {
            dirs[nb_dirs++] = argv[i];
        }
    }
    if (nb_dirs == 0) {
        fprintf(stderr, usage, argv[0]);
        return 2;
    }
    expected ex;
    bool have_ex = false;
    if (opt.expected) {
        if (!load_expected(opt.expected, &ex)) return 2;
        have_ex = true;
    }
    totals t = {0, 0, 0, 0, 0, 0};
    for (int i = 0; i < nb_dirs; i++) {
        char **tests;
        int n;
        if (kiln_onnx_test_list(dirs[i], &tests, &n) != KILN_OK) {
            fprintf(stderr, "kiln_onnx_test: %s\n", kiln_last_error());
            t.bad++;
            continue;
        }
        for (int k = 0; k < n; k++) one(tests[k], &opt, have_ex ? &ex : NULL, &t);
        kiln_onnx_test_list_free(tests, n);
    }
    if (have_ex && !opt.filter)
        for (int i = 0; i < ex.n; i++)
            if (!ex.seen[i])
                printf("note: expected failure '%s' was not found in the directories given\n", ex.names[i]);
    printf(
        "%d passed, %d failed, %d skipped (%d of the passes with frozen inputs; %d expected failures; %d problems)\n",
        t.pass, t.fail, t.skip, t.frozen, t.xfail, t.bad);
    if (have_ex) {
        for (int i = 0; i < ex.n; i++) free(ex.names[i]);
        free(ex.names);
        free(ex.seen);
    }
    free(dirs);
    return t.bad ? 1 : 0;
}
