/* kiln build: imports an ONNX model, optimizes it for a device and saves the engine as a
 * plan file, with a summary of what the optimizer did. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: kiln build MODEL.onnx [-o MODEL.plan] [OPTIONS]\n"
    "\n"
    "Imports MODEL.onnx, optimizes it (folding, fusion, memory planning, kernel choice) for one\n"
    "device and writes the engine to a plan file (default: MODEL.plan next to the model). The\n"
    "file is written under a temporary name and renamed, so a failed build leaves nothing.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE          plan file to write\n"
    "  --device cpu|cuda          device the engine runs on (default cpu)\n"
    "  --fp16                     allow FP16 kernels (CUDA); layers whose values pass +-16384 on\n"
    "                             standard-normal inputs stay FP32 (a warning names them)\n"
    "  --no-range-check           FP16 without that check (inputs far from unit scale)\n"
    "  --tf32                     allow TF32 tensor-core math for FP32 layers (CUDA)\n"
    "  --shapes NAME:DIMS,...     shapes for inputs, required for symbolic dimensions\n"
    "                             (e.g. --shapes input:1x3x224x224,mask:1x224)\n"
    "  --batch N                  set the symbolic first dimension of every input to N\n"
    "  --workspace MiB            limit on the activation memory of one context (a build that\n"
    "                             needs more fails); fractions allowed\n"
    "  --threads N                CPU worker threads per context (0: all cores)\n"
    "  --timing-cache FILE        remember timed kernel choices (CUDA) in FILE, keyed by layer,\n"
    "                             GPU and library versions: rebuilds skip the timing runs\n"
    "  --layer-precision NAME:P   per-layer precision (fp32, fp16, bf16, int8); checked against the\n"
    "                             model, and a warning says when this device cannot honour it yet\n"
    "  --json FILE                write the build summary as JSON ('-': standard output)\n"
    "  -q, --quiet                errors only     -v, --verbose   library log at verbose level\n"
    "\n"
    "On a terminal the phases (parse, build, save) are shown as they finish, and the build's\n"
    "progress live: its phase, layers done, time so far and, while kernels are chosen, an\n"
    "estimate of the time left.\n"
    "\n"
    "examples:\n"
    "  kiln build resnet50.onnx -o resnet50.plan\n"
    "  kiln build yolo.onnx -o yolo-fp16.plan --device cuda --fp16 --shapes images:1x3x640x640\n"
    "  kiln build bert.onnx --shapes input_ids:1x128,attention_mask:1x128 --workspace 512\n";

static char *default_output(const char *model) {
    size_t n = strlen(model);
    char *out = malloc(n + 8);
    if (!out) return NULL;
    strcpy(out, model);
    char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (dot && (!slash || dot > slash) && strcmp(dot, ".onnx") == 0) *dot = 0;
    strcat(out, ".plan");
    return out;
}

int cmd_build(cli *c, int argc, char **argv) {
    static const cli_opt opts[] = {CLI_COMMON_OPTS,
                                   {"--output", "-o", true},
                                   CLI_BUILD_OPTS,
                                   {"--workspace", NULL, true},
                                   {"--layer-precision", NULL, true},
                                   {"--json", NULL, true},
                                   {NULL, NULL, false}};
    build_opts o;
    memset(&o, 0, sizeof o);
    const char *model = NULL, *output = NULL, *json_path = NULL;
    cli_args a = {argc, argv, 0, false};
    int rc = CLI_OK, k;
    const char *v;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END) {
        bool stop;
        if (k == CLI_ARG_ERROR) rc = CLI_USAGE;
        else if (k == CLI_ARG_POSITIONAL) {
            if (model) rc = cli_usage(c, "one model at a time ('%s' and '%s')", model, v);
            model = v;
        } else if (cli_common_option(c, opts[k].name, help, &stop)) {
            if (stop) goto out;
        } else if (strcmp(opts[k].name, "--output") == 0) output = v;
        else if (cli_build_option(c, opts[k].name, v, &o, &rc)) {
        } else if (strcmp(opts[k].name, "--workspace") == 0) {
            double mib;
            if (!cli_parse_double(c, "--workspace", v, 1.0 / 1048576, 1 << 30, &mib)) rc = CLI_USAGE;
            o.workspace_bytes = (size_t)(mib * 1048576.0);
        } else if (strcmp(opts[k].name, "--layer-precision") == 0) {
            if (!cli_add_layer_precision(c, &o, v)) rc = CLI_USAGE;
        } else if (strcmp(opts[k].name, "--json") == 0) json_path = v;
    }
    if (rc != CLI_OK) goto out;
    if (!model) {
        rc = cli_usage(c, "no model given");
        goto out;
    }

    char *out_path = output ? strdup(output) : default_output(model);
    if (!out_path) {
        rc = cli_fail(c, "out of memory");
        goto out;
    }
    if (cli_is_dir(out_path)) {
        rc = cli_fail(c, "%s: is a directory; -o takes the plan file's name", out_path);
        free(out_path);
        goto out;
    }
    loaded_model m;
    rc = load_model(c, model, &o, NULL, c->progress, &m);
    if (rc == CLI_OK && m.is_plan) {
        rc = cli_usage(c, "%s is already a plan: build takes an ONNX model", model);
        loaded_model_free(&m);
    }
    if (rc != CLI_OK) {
        free(out_path);
        goto out;
    }
    kiln_engine *e = m.engine;
    double t0 = cli_now_ms();
    if (c->progress) fprintf(stderr, "kiln build: saving %s ...", out_path);
    kiln_status st = kiln_engine_save(e, out_path);
    double save_ms = cli_now_ms() - t0;
    if (c->progress) fprintf(stderr, "\r\033[K");
    if (st != KILN_OK) {
        rc = cli_fail(c, "%s: %s", out_path, cli_last_error());
        free(out_path);
        loaded_model_free(&m);
        goto out;
    }
    if (c->progress) fprintf(stderr, "  %-6s %9.1f ms\n", "save", save_ms);

    int nl = kiln_engine_num_layers(e), fused = 0, per_dtype[KILN_DTYPE_COUNT] = {0};
    for (int i = 0; i < nl; i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) != KILN_OK) continue;
        if (li.fused && *li.fused) fused++;
        if ((unsigned)li.precision < KILN_DTYPE_COUNT) per_dtype[li.precision]++;
    }
    size_t act, scratch, weights;
    kiln_engine_memory(e, &act, &scratch, &weights);
    const char *dev = kiln_engine_device(e) == KILN_DEVICE_CUDA ? "cuda" : "cpu";
    if (c->verbosity >= 1) {
        char b1[32], b2[32], b3[32], prec[256] = "";
        size_t at = 0;
        for (int d = 0; d < KILN_DTYPE_COUNT; d++)
            if (per_dtype[d])
                at += (size_t)snprintf(prec + at, sizeof prec - at, "%s%s x%d", at ? ", " : "", kiln_dtype_name((kiln_dtype)d),
                                       per_dtype[d]);
        printf("%s -> %s (%s)\n", model, out_path, dev);
        printf("  layers     %d in the network (%d constants), %d after optimization (%d with a fused activation)\n",
               m.layers_before, m.consts_before, nl, fused);
        printf("  precision  %s\n", at ? prec : "none");
        printf("  memory     activations %s + scratch %s per context, weights %s\n", cli_human_bytes((double)act, b1, sizeof b1),
               cli_human_bytes((double)scratch, b2, sizeof b2), cli_human_bytes((double)weights, b3, sizeof b3));
        printf("  time       parse %.2f ms, build %.2f ms, save %.2f ms\n", m.parse_ms, m.build_ms, save_ms);
        for (int i = 0; i < kiln_engine_num_io(e); i++) {
            const char *name = kiln_engine_io_name(e, i);
            kiln_dims d;
            kiln_dtype dt;
            kiln_engine_io_dims(e, name, &d);
            kiln_engine_io_dtype(e, name, &dt);
            printf("  %-10s %s %s %s\n", kiln_engine_io_mode(e, name) == KILN_IO_INPUT ? "input" : "output", name,
                   kiln_dtype_name(dt), cli_dims_str(&d, b1, sizeof b1));
        }
    }
    if (json_path) {
        json j;
        atomic_file af;
        if (!json_open(c, &j, &af, json_path)) rc = CLI_FAIL;
        else {
            json_begin_object(&j);
            json_key(&j, "model"), json_str(&j, model);
            json_key(&j, "plan"), json_str(&j, out_path);
            json_key(&j, "device"), json_str(&j, dev);
            json_key(&j, "layers_before"), json_int(&j, m.layers_before);
            json_key(&j, "constants_before"), json_int(&j, m.consts_before);
            json_key(&j, "layers_after"), json_int(&j, nl);
            json_key(&j, "fused_activations"), json_int(&j, fused);
            json_key(&j, "precision");
            json_begin_object(&j);
            for (int d = 0; d < KILN_DTYPE_COUNT; d++)
                if (per_dtype[d]) json_key(&j, kiln_dtype_name((kiln_dtype)d)), json_int(&j, per_dtype[d]);
            json_end_object(&j);
            json_key(&j, "memory");
            json_begin_object(&j);
            json_key(&j, "activations_per_context"), json_int(&j, (int64_t)act);
            json_key(&j, "scratch_per_context"), json_int(&j, (int64_t)scratch);
            json_key(&j, "weights"), json_int(&j, (int64_t)weights);
            json_end_object(&j);
            json_key(&j, "time_ms");
            json_begin_object(&j);
            json_key(&j, "parse"), json_num(&j, m.parse_ms);
            json_key(&j, "build"), json_num(&j, m.build_ms);
            json_key(&j, "save"), json_num(&j, save_ms);
            json_end_object(&j);
            json_end_object(&j);
            rc = json_close(c, &j, &af, json_path);
        }
    }
    free(out_path);
    loaded_model_free(&m);
out:
    build_opts_free(&o);
    return rc;
}
