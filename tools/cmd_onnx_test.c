/* kiln onnx-test: runs ONNX backend test directories (model.onnx plus
 * test_data_set_N/{input,output}_K.pb) and counts passes, failures and skips. Running a
 * test (in a child process, so that a crash or a hang fails that test alone) is the
 * importer's kiln_onnx_test_run, which CI's kiln_onnx_test uses too: one set of rules. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: kiln onnx-test DIR... [OPTIONS]\n"
    "\n"
    "Runs ONNX backend tests: a DIR holding model.onnx is one test, any other DIR is searched\n"
    "for such subdirectories. Each test_data_set_N's input_K.pb feed the model (by tensor name,\n"
    "else by position) and its output_K.pb are compared: |kiln - expected| <= atol + rtol *\n"
    "|expected| (ONNX's defaults: rtol 1e-3, atol 1e-7; wider for float16 and bfloat16).\n"
    "A test is skipped when kiln reports only unsupported constructs (the reason is printed),\n"
    "and fails on anything else. Prints 'N passed, M failed, K skipped'; exit status 1 when a\n"
    "test failed.\n"
    "\n"
    "options:\n"
    "  --device cpu|cuda          device to run on (default cpu)\n"
    "  --filter TEXT              only tests whose directory name contains TEXT\n"
    "  --atol A, --rtol R         override the tolerances\n"
    "  --timeout S                seconds per test (default 120)\n"
    "  --no-fork                  run tests in this process (for debuggers)\n"
    "  --json FILE                per-test results as JSON ('-': standard output)\n"
    "  -q, --quiet                only the summary   -v, --verbose   passes too, library log\n"
    "\n"
    "examples:\n"
    "  kiln onnx-test /usr/share/libonnx-testdata/data/node\n"
    "  kiln onnx-test /usr/share/libonnx-testdata/data/node --filter conv -v\n";

#ifdef KILN_CLI_HAVE_ONNX
static void verbose_log(void *user, kiln_log_level level, const char *msg) {
    (void)user;
    fprintf(stderr, "  [kiln %d] %s\n", (int)level, msg);
}

static const char *result_word(kiln_onnx_test_result r, bool upper) {
    switch (r) {
    case KILN_ONNX_TEST_PASS: return upper ? "PASS" : "pass";
    case KILN_ONNX_TEST_SKIP: return upper ? "SKIP" : "skip";
    default: return upper ? "FAIL" : "fail";
    }
}
#endif

int cmd_onnx_test(cli *c, int argc, char **argv) {
    static const cli_opt opts[] = {CLI_COMMON_OPTS,
                                   {"--device", NULL, true},
                                   {"--filter", NULL, true},
                                   {"--atol", NULL, true},
                                   {"--rtol", NULL, true},
                                   {"--timeout", NULL, true},
                                   {"--no-fork", NULL, false},
                                   {"--json", NULL, true},
                                   {NULL, NULL, false}};
    kiln_onnx_test_desc to = KILN_ONNX_TEST_DESC_INIT;
    to.isolate = 1;
    to.timeout_s = 120;
    const char *filter = NULL, *json_path = NULL;
    char **dirs = calloc((size_t)(argc ? argc : 1), sizeof *dirs);
    int ndirs = 0;
    if (!dirs) return cli_fail(c, "out of memory");
    cli_args a = {argc, argv, 0, false};
    int rc = CLI_OK, k;
    const char *v;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END) {
        bool stop;
        int64_t n;
        const char *name = k >= 0 ? opts[k].name : "";
        if (k == CLI_ARG_ERROR) rc = CLI_USAGE;
        else if (k == CLI_ARG_POSITIONAL) dirs[ndirs++] = (char *)v;
        else if (cli_common_option(c, name, help, &stop)) {
            if (stop) goto out;
        } else if (strcmp(name, "--device") == 0) {
            if (!cli_parse_device(c, v, &to.device)) rc = CLI_USAGE;
        } else if (strcmp(name, "--filter") == 0) filter = v;
        else if (strcmp(name, "--atol") == 0) {
            if (!cli_parse_double(c, name, v, 0, INFINITY, &to.atol)) rc = CLI_USAGE;
        } else if (strcmp(name, "--rtol") == 0) {
            if (!cli_parse_double(c, name, v, 0, INFINITY, &to.rtol)) rc = CLI_USAGE;
        } else if (strcmp(name, "--timeout") == 0) {
            if (!cli_parse_int(c, name, v, 1, 86400, &n)) rc = CLI_USAGE;
            to.timeout_s = (int)n;
        } else if (strcmp(name, "--no-fork") == 0) to.isolate = 0;
        else if (strcmp(name, "--json") == 0) json_path = v;
    }
    if (rc != CLI_OK) goto out;
    if (ndirs == 0) {
        rc = cli_usage(c, "no test directory given");
        goto out;
    }
    if (!have_onnx()) {
        rc = cli_fail(c, "this kiln was built without the ONNX importer (KILN_ONNX=OFF)");
        (void)filter, (void)json_path;
        goto out;
    }
#ifdef KILN_CLI_HAVE_ONNX
    if (c->verbosity >= 2) {
        to.log = verbose_log;
        to.log_level = KILN_LOG_INFO;
    }
    /* the tests: each DIR itself, or its subdirectories holding model.onnx */
    char **tests = NULL;
    int ntests = 0, cap = 0;
    for (int d = 0; d < ndirs && rc == CLI_OK; d++) {
        char **found;
        int nf;
        if (kiln_onnx_test_list(dirs[d], &found, &nf) != KILN_OK) {
            rc = cli_fail(c, "%s", cli_last_error());
            break;
        }
        for (int i = 0; i < nf && rc == CLI_OK; i++) {
            const char *base = strrchr(found[i], '/') ? strrchr(found[i], '/') + 1 : found[i];
            if (filter && !strstr(base, filter)) continue;
            if (ntests == cap) {
                cap = cap ? 2 * cap : 64;
                char **nt = realloc(tests, (size_t)cap * sizeof *nt);
                if (!nt) {
                    rc = cli_fail(c, "out of memory");
                    break;
                }
                tests = nt;
            }
            tests[ntests++] = found[i];
            found[i] = NULL; /* moved */
        }
        kiln_onnx_test_list_free(found, nf);
    }
    if (rc == CLI_OK && ntests == 0) rc = cli_fail(c, "no test directories (holding model.onnx) found%s", filter ? " that match --filter" : "");
    kiln_onnx_test_result *results = calloc((size_t)(ntests ? ntests : 1), sizeof *results);
    char **msgs = calloc((size_t)(ntests ? ntests : 1), sizeof *msgs);
    int counts[3] = {0, 0, 0};
    if (rc == CLI_OK && (!results || !msgs)) rc = cli_fail(c, "out of memory");
    for (int t = 0; rc == CLI_OK && t < ntests; t++) {
        char msg[4096];
        if (kiln_onnx_test_run(tests[t], &to, &results[t], NULL, msg, sizeof msg) != KILN_OK) {
            rc = cli_fail(c, "%s: %s", tests[t], cli_last_error());
            break;
        }
        msgs[t] = strdup(msg);
        counts[results[t]]++;
        const char *name = strrchr(tests[t], '/') ? strrchr(tests[t], '/') + 1 : tests[t];
        if (results[t] == KILN_ONNX_TEST_PASS && c->verbosity < 2) continue;
        if (c->verbosity >= 1) printf("%s %s%s%s\n", result_word(results[t], true), name, msg[0] ? ": " : "", msg);
        fflush(stdout);
    }
    if (rc == CLI_OK) {
        printf("%d passed, %d failed, %d skipped\n", counts[KILN_ONNX_TEST_PASS], counts[KILN_ONNX_TEST_FAIL],
               counts[KILN_ONNX_TEST_SKIP]);
        if (json_path) {
            json j;
            atomic_file af;
            if (!json_open(c, &j, &af, json_path)) rc = CLI_FAIL;
            else {
                json_begin_object(&j);
                json_key(&j, "passed"), json_int(&j, counts[KILN_ONNX_TEST_PASS]);
                json_key(&j, "failed"), json_int(&j, counts[KILN_ONNX_TEST_FAIL]);
                json_key(&j, "skipped"), json_int(&j, counts[KILN_ONNX_TEST_SKIP]);
                json_key(&j, "tests");
                json_begin_array(&j);
                for (int t = 0; t < ntests; t++) {
                    json_begin_object(&j);
                    json_key(&j, "dir"), json_str(&j, tests[t]);
                    json_key(&j, "result"), json_str(&j, result_word(results[t], false));
                    json_key(&j, "message"), json_str(&j, msgs[t] ? msgs[t] : "");
                    json_end_object(&j);
                }
                json_end_array(&j);
                json_end_object(&j);
                rc = json_close(c, &j, &af, json_path);
            }
        }
        if (rc == CLI_OK && counts[KILN_ONNX_TEST_FAIL])
            rc = cli_fail(c, "%d of %d tests failed", counts[KILN_ONNX_TEST_FAIL], ntests);
    }
    for (int t = 0; msgs && t < ntests; t++) free(msgs[t]);
    kiln_onnx_test_list_free(tests, ntests);
    free(results);
    free(msgs);
#endif
out:
    free(dirs);
    return rc;
}
