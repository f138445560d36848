/* libFuzzer target: ONNX bytes through the whole pipeline on the CPU: import, engine build
 * (optimisation passes, memory plan, kernel preparation), one run. Every step may fail, with
 * a message; none may crash, leak or read out of bounds. Seeds: tests/onnx/corpus. To keep
 * each input fast under the sanitizers, graphs with a tensor over 16 MB are only imported,
 * and engines needing more than a little memory are built but not run. */
#include <stdbool.h>
#include <string.h>

#include "fuzz_common.h"
#include "graph/graph.h"

#define RUN_ACTIVATIONS (256u << 10) /* bytes of activations, scratch and I/O for a run */
#define RUN_WEIGHTS (64u << 10)
#define BUILD_TENSOR (16u << 20) /* larger tensors: not built (kernel tables, libFuzzer's malloc limit) */

/* Whether every tensor the importer inferred is small enough to build for. Shapes left
 * symbolic are inferred at build time, against the same limit below. */
static bool small_enough(const kiln_network *net) {
    for (int i = 0; i < net->g.nb_tensors; i++) {
        const kiln_dims *d = &net->g.tensors[i]->dims;
        double bytes = 8.0; /* the widest element */
        for (int k = 0; k < d->nb_dims; k++) bytes *= d->d[k] > 0 ? (double)d->d[k] : 1.0;
        if (bytes > BUILD_TENSOR) return false;
    }
    return true;
}

/* One run with zeroed inputs, when the engine is small enough. */
static void run_once(kiln_engine *e) {
    size_t act = 0, scratch = 0, weights = 0, io = 0;
    kiln_engine_memory(e, &act, &scratch, &weights);
    int n = kiln_engine_num_io(e);
    void **bufs = calloc((size_t)(n > 0 ? n : 1), sizeof *bufs);
    if (!bufs) abort();
    bool ok = weights <= RUN_WEIGHTS;
    for (int i = 0; ok && i < n; i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dims d;
        kiln_dtype t;
        if (!name || kiln_engine_io_dims(e, name, &d) != KILN_OK || kiln_engine_io_dtype(e, name, &t) != KILN_OK) abort();
        int64_t v = kiln_dims_volume(&d);
        ok = v >= 0 && (size_t)v <= RUN_ACTIVATIONS;
        if (!ok) break;
        size_t bytes = (size_t)v * kiln_dtype_size(t);
        io += bytes;
        bufs[i] = calloc(bytes ? bytes : 1, 1);
        if (!bufs[i]) abort();
    }
    if (ok && act + scratch + io <= RUN_ACTIVATIONS) {
        kiln_context *c = NULL;
        if (kiln_context_create(e, &c) == KILN_OK) {
            bool bound = true;
            for (int i = 0; i < n && bound; i++) bound = kiln_context_set_tensor_address(c, kiln_engine_io_name(e, i), bufs[i]) == KILN_OK;
            kiln_status st = bound ? kiln_context_execute(c) : KILN_OK;
            if (st != KILN_OK && !kiln_last_error()[0]) abort(); /* a failure must say why */
            kiln_context_destroy(c);
        }
    }
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kiln_builder *b;
    kiln_network *net;
    kiln_onnx_parser *p;
    fz_open((int64_t)1 << 20, &b, &net, &p);
    if (kiln_onnx_parse_memory(p, data, size, NULL) == KILN_OK && small_enough(net)) {
        kiln_config *cfg = NULL;
        kiln_engine *e = NULL;
        if (kiln_config_create(b, &cfg) != KILN_OK || kiln_config_set_device(cfg, KILN_DEVICE_CPU) != KILN_OK ||
            kiln_config_set_num_threads(cfg, 1) != KILN_OK || kiln_config_set_memory_limit(cfg, (size_t)16 << 20) != KILN_OK)
            abort();
        kiln_status st = kiln_builder_build(b, net, cfg, &e);
        if (st != KILN_OK && (e || !kiln_last_error()[0])) abort(); /* no engine, and a message */
        if (e) run_once(e);
        kiln_engine_destroy(e);
        kiln_config_destroy(cfg);
    }
    kiln_onnx_parser_destroy(p);
    kiln_network_destroy(net);
    kiln_builder_destroy(b);
    return 0;
}
