/* kiln command line: entry point. Dispatches to one subcommand per file (cmd_*.c):
 * build, run, bench, compare, inspect, onnx-test. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
    "usage: kiln COMMAND [OPTIONS] ...\n"
    "\n"
    "Builds, runs, benchmarks and checks kiln engines (TensorRT's trtexec and Polygraphy in one tool).\n"
    "\n"
    "commands:\n"
    "  build      MODEL.onnx -o MODEL.plan     optimize a model into an engine file\n"
    "  run        MODEL.plan|MODEL.onnx        run once on given inputs, save outputs as .npy\n"
    "  bench      MODEL.plan|MODEL.onnx        latency, throughput, per-layer profile\n"
    "  compare    MODEL.onnx                   check kiln against a reference (CPU FP32 or saved outputs)\n"
    "  inspect    MODEL.onnx|MODEL.plan        inputs, outputs, ops, unsupported ops; layers of a plan\n"
    "  onnx-test  DIR...                       run ONNX backend test directories\n"
    "\n"
    "Every command takes --help (with examples), --quiet and --verbose.\n"
    "Exit status: 0 success, 1 failure (bad file, build error, tolerance exceeded), 2 bad command line.\n"
    "\n"
    "examples:\n"
    "  kiln build resnet50.onnx -o resnet50.plan\n"
    "  kiln run resnet50.plan --input data=cat.jpg --top5\n"
    "  kiln bench resnet50.plan --duration 10 --profile\n"
    "  kiln compare resnet50.onnx --device cuda --fp16 --random-inputs --atol 1e-2 --rtol 1e-2\n";

int main(int argc, char **argv) {
    /* a closed pipe (kiln inspect m.onnx | head) must end in a write error, not a signal */
    signal(SIGPIPE, SIG_IGN);
    cli c = {NULL, 1, false};
    if (argc < 2) {
        fputs(usage_text, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("kiln %s\n", kiln_version());
        return CLI_OK;
    }
    static const struct {
        const char *name;
        int (*fn)(cli *, int, char **);
    } cmds[] = {{"build", cmd_build},     {"run", cmd_run},         {"bench", cmd_bench},
                {"compare", cmd_compare}, {"inspect", cmd_inspect}, {"onnx-test", cmd_onnx_test}};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (strcmp(cmd, cmds[i].name) == 0) {
            c.cmd = cmds[i].name;
            c.progress = isatty(STDERR_FILENO);
            int rc = cmds[i].fn(&c, argc - 2, argv + 2);
            if (fflush(stdout) != 0 && rc == CLI_OK) rc = cli_fail(&c, "cannot write to standard output");
            return rc;
        }
    return cli_usage(&c, "unknown command '%s'", cmd);
}
