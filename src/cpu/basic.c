/* kiln CPU backend: the basic layers. Shuffle and identity run only when the memory
 * planner could not make their output a view of the input (it is a network output);
 * constant runs only when its value is itself a network output; cast converts. */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "cpu/cpu.h"

typedef struct copy_job {
    const char *src;
    char *dst;
} copy_job;

static void copy_range(void *arg, int64_t begin, int64_t end) {
    copy_job *j = arg;
    memcpy(j->dst + begin, j->src + begin, (size_t)(end - begin));
}

static void parallel_copy(kcpu_exec *x, void *dst, const void *src, size_t bytes) {
    if (dst == src || bytes == 0) return;
    copy_job j = {src, dst};
    kcpu_parallel_for(x, (int64_t)bytes, 1 << 20, copy_range, &j);
}

static size_t tensor_bytes(const kiln_tensor *t) {
    return (size_t)kiln_dims_volume(&t->dims) * kiln_dtype_size(t->dtype);
}

static kiln_status run_copy(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            kcpu_exec *x) {
    (void)state;
    parallel_copy(x, out[0], in[0], tensor_bytes(l->outputs[0]));
    return KILN_OK;
}

static kiln_status run_constant(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                                kcpu_exec *x) {
    (void)state;
    (void)in;
    parallel_copy(x, out[0], l->w[0].values, tensor_bytes(l->outputs[0]));
    return KILN_OK;
}

const kcpu_kernel kcpu_shuffle = {NULL, run_copy, NULL};
const kcpu_kernel kcpu_identity = {NULL, run_copy, NULL};
const kcpu_kernel kcpu_constant = {NULL, run_constant, NULL};

/* ---- cast ---- */

static bool is_float(kiln_dtype t) {
    return t == KILN_FLOAT32 || t == KILN_FLOAT16 || t == KILN_FLOAT64 || t == KILN_BFLOAT16;
}

static double load_f(kiln_dtype t, const void *p, int64_t i) {
    switch (t) {
    case KILN_FLOAT32: return ((const float *)p)[i];
    case KILN_FLOAT16: return kiln_half_to_float(((const uint16_t *)p)[i]);
    case KILN_BFLOAT16: return kiln_bf16_to_float(((const uint16_t *)p)[i]);
    case KILN_FLOAT64: return ((const double *)p)[i];
    case KILN_INT8: return ((const int8_t *)p)[i];
    case KILN_UINT8: return ((const uint8_t *)p)[i];
    case KILN_BOOL: return ((const uint8_t *)p)[i] != 0;
    case KILN_INT32: return ((const int32_t *)p)[i];
    case KILN_INT64: return (double)((const int64_t *)p)[i];
    }
    return 0;
}

static int64_t load_i(kiln_dtype t, const void *p, int64_t i) {
    switch (t) {
    case KILN_INT8: return ((const int8_t *)p)[i];
    case KILN_UINT8: return ((const uint8_t *)p)[i];
    case KILN_BOOL: return ((const uint8_t *)p)[i] != 0;
    case KILN_INT32: return ((const int32_t *)p)[i];
    case KILN_INT64: return ((const int64_t *)p)[i];
    default: return 0;
    }
}

/* float -> integer without undefined behaviour: truncate, NaN -> 0, saturate. */
static int64_t f2i(double v, double lo, double hi) {
    if (v != v) return 0;
    v = trunc(v);
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v;
}

static void store(kiln_dtype to, void *p, int64_t i, kiln_dtype from, const void *src) {
    if (to == KILN_BOOL) {
        ((uint8_t *)p)[i] = is_float(from) ? load_f(from, src, i) != 0 : load_i(from, src, i) != 0;
        return;
    }
    if (is_float(to)) {
        double v = is_float(from) ? load_f(from, src, i) : (double)load_i(from, src, i);
        switch (to) {
        case KILN_FLOAT32: ((float *)p)[i] = (float)v; break;
        case KILN_FLOAT64: ((double *)p)[i] = v; break;
        case KILN_FLOAT16: ((uint16_t *)p)[i] = kiln_float_to_half((float)v); break;
        case KILN_BFLOAT16: ((uint16_t *)p)[i] = kiln_float_to_bf16((float)v); break;
        default: break;
        }
        return;
    }
    int64_t v;
    if (is_float(from)) {
        double f = load_f(from, src, i);
        switch (to) {
        case KILN_INT8: v = f2i(f, -128, 127); break;
        case KILN_UINT8: v = f2i(f, 0, 255); break;
        case KILN_INT32: v = f2i(f, -2147483648.0, 2147483647.0); break;
        default: v = f2i(f, -9223372036854775808.0, 9223372036854774784.0); break;
        }
    } else {
        v = load_i(from, src, i);
    }
    switch (to) {
    case KILN_INT8: ((int8_t *)p)[i] = (int8_t)(uint8_t)(uint64_t)v; break; /* wraps like numpy */
    case KILN_UINT8: ((uint8_t *)p)[i] = (uint8_t)(uint64_t)v; break;
    case KILN_INT32: ((int32_t *)p)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
    case KILN_INT64: ((int64_t *)p)[i] = v; break;
    default: break;
    }
}

typedef struct cast_job {
    kiln_dtype from, to;
    const void *src;
    void *dst;
} cast_job;

static void cast_range(void *arg, int64_t begin, int64_t end) {
    cast_job *j = arg;
    if (j->from == KILN_FLOAT32 && j->to == KILN_FLOAT16) {
        const float *s = j->src;
        uint16_t *d = j->dst;
        for (int64_t i = begin; i < end; i++) d[i] = kiln_float_to_half(s[i]);
        return;
    }
    for (int64_t i = begin; i < end; i++) store(j->to, j->dst, i, j->from, j->src);
}

static kiln_status run_cast(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            kcpu_exec *x) {
    (void)state;
    kiln_dtype from = l->inputs[0]->dtype, to = l->outputs[0]->dtype;
    int64_t n = kiln_dims_volume(&l->outputs[0]->dims);
    if (from == to) {
        parallel_copy(x, out[0], in[0], (size_t)n * kiln_dtype_size(to));
        return KILN_OK;
    }
    cast_job j = {from, to, in[0], out[0]};
    kcpu_parallel_for(x, n, 1 << 16, cast_range, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_cast = {NULL, run_cast, NULL};

/* ---- reformat: float32 <-> float16 storage, NCHW <-> NHWC layout ---- */

typedef struct reformat_job {
    const kiln_tensor *x, *y;
    const void *src;
    void *dst;
    int64_t n, c, hw; /* 4-D: planes; otherwise n = volume, c = hw = 1 */
} reformat_job;

static float load_elem(kiln_dtype t, const void *p, int64_t i) {
    return t == KILN_FLOAT16 ? kiln_half_to_float(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static void store_elem(kiln_dtype t, void *p, int64_t i, float v) {
    if (t == KILN_FLOAT16) ((uint16_t *)p)[i] = kiln_float_to_half(v);
    else ((float *)p)[i] = v;
}

/* One image (index range over n) at a time: logical (n, c, s) -> physical offsets. */
static void reformat_range(void *arg, int64_t begin, int64_t end) {
    reformat_job *j = arg;
    kiln_dtype ts = kg_storage(j->x), td = kg_storage(j->y);
    bool sn = j->x->format == KG_FORMAT_NHWC, dn = j->y->format == KG_FORMAT_NHWC;
    for (int64_t b = begin; b < end; b++)
        for (int64_t ch = 0; ch < j->c; ch++)
            for (int64_t s = 0; s < j->hw; s++) {
                int64_t lin = (b * j->c + ch) * j->hw + s, nhwc = (b * j->hw + s) * j->c + ch;
                store_elem(td, j->dst, dn ? nhwc : lin, load_elem(ts, j->src, sn ? nhwc : lin));
            }
}

static kiln_status prepare_reformat(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    (void)env, (void)state, (void)scratch;
    const kiln_tensor *x = l->inputs[0], *y = l->outputs[0];
    kiln_dtype ts = kg_storage(x), td = kg_storage(y);
    if ((ts != KILN_FLOAT32 && ts != KILN_FLOAT16) || (td != KILN_FLOAT32 && td != KILN_FLOAT16))
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "reformat between %s and %s storage", kiln_dtype_name(ts),
                              kiln_dtype_name(td));
    return KILN_OK;
}

static kiln_status run_reformat(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                                kcpu_exec *x) {
    (void)state;
    const kiln_tensor *t = l->inputs[0];
    reformat_job j = {t, l->outputs[0], in[0], out[0], kiln_dims_volume(&t->dims), 1, 1};
    if (t->dims.nb_dims == 4) {
        j.n = t->dims.d[0];
        j.c = t->dims.d[1];
        j.hw = t->dims.d[2] * t->dims.d[3];
    }
    kcpu_parallel_for(x, j.n, 1, reformat_range, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_reformat = {prepare_reformat, run_reformat, NULL};
