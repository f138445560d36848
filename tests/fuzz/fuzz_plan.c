/* kiln fuzz target: the engine-file loader. Any bytes must load cleanly or fail with an
 * error; a plan that loads (small enough) is also run once on zeroed inputs. */
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"

static void quiet(void *user, kiln_log_level level, const char *msg) {
    (void)user, (void)level, (void)msg;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static kiln_runtime *rt;
    if (!rt) {
        kiln_runtime_desc d = KILN_RUNTIME_DESC_INIT;
        d.log = quiet;
        d.threads = 1;
        if (kiln_runtime_create(&d, &rt) != KILN_OK) abort();
    }
    kiln_engine *e = NULL;
    if (kiln_runtime_load(rt, data, size, &e) != KILN_OK) {
        if (e) abort(); /* a failed load must not hand out an engine */
        return 0;
    }
    size_t act = 0, scratch = 0, weights = 0;
    kiln_engine_memory(e, &act, &scratch, &weights);
    kiln_context *c = NULL;
    void *bufs[16] = {0};
    int nio = kiln_engine_num_io(e);
    if (act + scratch < (64u << 20) && nio <= 16 && kiln_context_create(e, &c) == KILN_OK) {
        int ok = 1;
        for (int i = 0; i < nio && ok; i++) {
            const char *name = kiln_engine_io_name(e, i);
            kiln_dims d;
            kiln_dtype t;
            ok = kiln_engine_io_dims(e, name, &d) == KILN_OK && kiln_engine_io_dtype(e, name, &t) == KILN_OK;
            int64_t v = ok ? kiln_dims_volume(&d) : -1;
            ok = ok && v >= 0 && (uint64_t)v * kiln_dtype_size(t) < (16u << 20);
            if (ok) bufs[i] = calloc((size_t)v * kiln_dtype_size(t) + 1, 1);
            ok = ok && bufs[i] && kiln_context_set_tensor_address(c, name, bufs[i]) == KILN_OK;
        }
        if (ok) (void)kiln_context_execute(c);
        kiln_context_destroy(c);
        for (int i = 0; i < 16; i++) free(bufs[i]);
    }
    kiln_engine_destroy(e);
    return 0;
}
