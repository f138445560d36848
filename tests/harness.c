/* kiln tests: shared helpers (see harness.h). */
#include "harness.h"

#include <math.h>
#include <string.h>

int th_failures = 0;
int th_checks = 0;
static uint64_t rng_state = 0;

int th_exit(const char *name) {
    if (th_checks == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    printf("%s: %d checks, %d failed\n", name, th_checks, th_failures);
    return th_failures ? 1 : 0;
}

void th_seed(uint64_t seed) { rng_state = seed ? seed : 0x9E3779B97F4A7C15ull; }

uint64_t th_rand_u64(void) {
    if (!rng_state) {
        const char *s = getenv("KILN_TEST_SEED");
        th_seed(s ? strtoull(s, NULL, 10) : 12345);
    }
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double th_uniform(double lo, double hi) { return lo + (hi - lo) * ((double)(th_rand_u64() >> 11) / 9007199254740992.0); }

void th_fill(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) {
        float v;
        do v = (float)th_uniform(lo, hi);
        while (v == 0.0f);
        x[i] = v;
    }
}

float *th_rand_array(int64_t n, float lo, float hi) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    th_fill(x, n, lo, hi);
    return x;
}

double th_rel_error(const float *got, const double *ref, int64_t n) {
    double maxref = 1e-30, maxdiff = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(ref[i]) && fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }
    for (int64_t i = 0; i < n; i++) {
        if (isnan(ref[i]) && isnan(got[i])) continue;
        if (isinf(ref[i]) && got[i] == ref[i]) continue;
        if (!isfinite(ref[i])) return INFINITY; /* NaN/Inf expected, something else got */
        if (!isfinite(got[i])) return INFINITY;
        double d = fabs((double)got[i] - ref[i]);
        if (d > maxdiff) maxdiff = d;
    }
    return maxdiff / maxref;
}

double th_check_close(const char *what, const float *got, const double *ref, int64_t n, double tol) {
    double e = th_rel_error(got, ref, n);
    TH_COUNT(th_checks);
    if (!(e < tol)) {
        TH_COUNT(th_failures);
        int64_t worst = 0;
        double wd = -1;
        for (int64_t i = 0; i < n; i++) {
            double d = isfinite(got[i]) ? fabs((double)got[i] - ref[i]) : INFINITY;
            if (d > wd) {
                wd = d;
                worst = i;
            }
        }
        fprintf(stderr, "%s: relative error %.3g >= %.3g (element %lld: got %.9g, want %.9g)\n", what, e, tol,
                (long long)worst, n ? (double)got[worst] : 0.0, n ? ref[worst] : 0.0);
    }
    return e;
}

static void quiet_log(void *user, kiln_log_level level, const char *msg) {
    (void)user;
    if (getenv("KILN_TEST_VERBOSE")) fprintf(stderr, "[kiln %d] %s\n", (int)level, msg);
}

kiln_engine *th_reload(const kiln_engine *e, const char *what) {
    void *data = NULL;
    size_t size = 0;
    kiln_runtime *rt = NULL;
    kiln_engine *copy = NULL;
    kiln_runtime_desc rd = KILN_RUNTIME_DESC_INIT;
    kiln_status st = kiln_engine_serialize(e, &data, &size);
    if (st == KILN_OK) st = kiln_runtime_create(&rd, &rt);
    if (st == KILN_OK) st = kiln_runtime_load(rt, data, size, &copy);
    CHECK(st == KILN_OK && copy, "%s: plan round trip: %s", what, kiln_last_error());
    kiln_runtime_destroy(rt); /* the engine keeps its own copy of the runtime's settings */
    free(data);
    return copy;
}

kiln_builder *th_builder(void) {
    kiln_builder_desc d = KILN_BUILDER_DESC_INIT;
    d.log = quiet_log;
    d.log_level = getenv("KILN_TEST_VERBOSE") ? KILN_LOG_VERBOSE : KILN_LOG_ERROR;
    kiln_builder *b = NULL;
    if (kiln_builder_create(&d, &b) != KILN_OK) {
        fprintf(stderr, "builder create failed: %s\n", kiln_last_error());
        exit(2);
    }
    return b;
}

kiln_status th_run_device(kiln_builder *b, kiln_network *net, kiln_device device, void *const *inputs,
                          void **outputs, kiln_dims *out_dims) {
    kiln_config *cfg = NULL;
    kiln_engine *eng = NULL;
    kiln_context *ctx = NULL;
    int nin = kiln_network_num_inputs(net), nout = kiln_network_num_outputs(net);
    for (int j = 0; j < nout; j++) outputs[j] = NULL;
    kiln_status st = kiln_config_create(b, &cfg);
    if (st == KILN_OK) st = kiln_config_set_device(cfg, device);
    if (st == KILN_OK && getenv("KILN_TEST_FP16")) st = kiln_config_set_flag(cfg, KILN_FLAG_FP16, 1);
    if (st == KILN_OK && getenv("KILN_TEST_TF32")) st = kiln_config_set_flag(cfg, KILN_FLAG_TF32, 1);
    if (st == KILN_OK) st = kiln_builder_build(b, net, cfg, &eng);
    if (st == KILN_OK) st = kiln_context_create(eng, &ctx);
    if (st == KILN_OK) st = kiln_context_set_io_memory(ctx, KILN_MEMORY_HOST);
    for (int i = 0; st == KILN_OK && i < nin; i++)
        st = kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_network_input(net, i)), inputs[i]);
    for (int j = 0; st == KILN_OK && j < nout; j++) {
        const char *name = kiln_tensor_name(kiln_network_output(net, j));
        kiln_dims d;
        kiln_dtype dt;
        st = kiln_engine_io_dims(eng, name, &d);
        if (st == KILN_OK) st = kiln_engine_io_dtype(eng, name, &dt);
        if (st != KILN_OK) break;
        size_t bytes = (size_t)kiln_dims_volume(&d) * kiln_dtype_size(dt);
        void *buf = malloc(bytes ? bytes : 1);
        if (!buf) {
            st = KILN_ERR_OUT_OF_MEMORY;
            break;
        }
        memset(buf, 0xFF, bytes); /* NaN for floats: unwritten elements show */
        outputs[j] = buf;
        if (out_dims) out_dims[j] = d;
        st = kiln_context_set_tensor_address(ctx, name, buf);
    }
    if (st == KILN_OK) st = kiln_context_execute(ctx);
    kiln_context_destroy(ctx);
    kiln_engine_destroy(eng);
    kiln_config_destroy(cfg);
    return st;
}

kiln_device th_test_device(void) {
    const char *d = getenv("KILN_TEST_DEVICE");
    if (!d || !*d || !strcmp(d, "cpu")) return KILN_DEVICE_CPU;
    if (!strcmp(d, "cuda")) return KILN_DEVICE_CUDA;
    fprintf(stderr, "KILN_TEST_DEVICE=%s: expected cpu or cuda\n", d);
    exit(2);
}

kiln_status th_run(kiln_builder *b, kiln_network *net, void *const *inputs, void **outputs, kiln_dims *out_dims) {
    return th_run_device(b, net, th_test_device(), inputs, outputs, out_dims);
}

kiln_status th_run_threads(kiln_builder *b, kiln_network *net, int threads, void *const *inputs, void *out) {
    kiln_config *cfg = NULL;
    kiln_engine *eng = NULL;
    kiln_context *ctx = NULL;
    kiln_status st = kiln_config_create(b, &cfg);
    if (st == KILN_OK) st = kiln_config_set_num_threads(cfg, threads);
    if (st == KILN_OK) st = kiln_builder_build(b, net, cfg, &eng);
    if (st == KILN_OK) st = kiln_context_create(eng, &ctx);
    for (int i = 0; st == KILN_OK && i < kiln_network_num_inputs(net); i++)
        st = kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_network_input(net, i)), inputs[i]);
    if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, kiln_tensor_name(kiln_network_output(net, 0)), out);
    if (st == KILN_OK) st = kiln_context_execute(ctx);
    kiln_context_destroy(ctx);
    kiln_engine_destroy(eng);
    kiln_config_destroy(cfg);
    return st;
}

void *th_run_layer(kiln_builder *b, kiln_network *net, kiln_layer *l, void *const *inputs, kiln_dims *od,
                   const char *what) {
    void *out = NULL;
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (l) {
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
        kiln_status st = th_run(b, net, inputs, &out, od);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st != KILN_OK) {
            free(out);
            out = NULL;
        }
    }
    kiln_network_destroy(net);
    return out;
}

void th_expect_add_fails(const kiln_layer *l, const char *what, const char *type, const char *needle) {
    CHECK(l == NULL, "%s: the add call accepted it", what);
    const char *e = kiln_last_error();
    CHECK(strstr(e, type) != NULL && strstr(e, needle) != NULL, "%s: error '%s' lacks '%s' / '%s'", what, e, type,
          needle);
}

/* ---- typed data ---- */

int64_t th_rand_int(int64_t lo, int64_t hi) { return lo + (int64_t)(th_rand_u64() % (uint64_t)(hi - lo + 1)); }

double th_half_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return h & 0x8000 ? -v : v;
}

double th_half_round(double v) {
    if (isnan(v) || isinf(v) || v == 0) return v;
    int e;
    frexp(v, &e); /* |v| in [2^(e-1), 2^e) */
    double ulp = ldexp(1, (e - 1 < -14 ? -14 : e - 1) - 10);
    double r = nearbyint(v / ulp) * ulp;
    return fabs(r) > 65504 ? copysign(INFINITY, v) : r;
}

uint16_t th_half_bits(double v) {
    uint16_t s = signbit(v) ? 0x8000 : 0;
    v = fabs(v);
    if (isnan(v)) return 0x7E00;
    if (isinf(v)) return s | 0x7C00;
    if (v < ldexp(1, -14)) return (uint16_t)(s | (uint16_t)ldexp(v, 24));
    int e;
    frexp(v, &e);
    return (uint16_t)(s | (uint16_t)((e + 14) << 10) | (uint16_t)(ldexp(v, 11 - e) - 1024));
}

double th_fget(kiln_dtype t, const void *p, int64_t i) {
    switch (t) {
    case KILN_FLOAT16: return th_half_value(((const uint16_t *)p)[i]);
    case KILN_FLOAT64: return ((const double *)p)[i];
    default: return ((const float *)p)[i];
    }
}

void th_fput(kiln_dtype t, void *p, int64_t i, double v) {
    switch (t) {
    case KILN_FLOAT16: ((uint16_t *)p)[i] = th_half_bits(th_half_round(v)); break;
    case KILN_FLOAT64: ((double *)p)[i] = v; break;
    default: ((float *)p)[i] = (float)v; break;
    }
}

bool th_cpu_only(kiln_dtype t) {
    return t == KILN_FLOAT16 || t == KILN_FLOAT64 || t == KILN_INT8 || t == KILN_UINT8;
}

void *th_run_layer_for(kiln_builder *b, kiln_dtype t, kiln_network *net, kiln_layer *l, void *const *inputs,
                       kiln_dims *od, const char *what) {
    if (!th_cpu_only(t)) return th_run_layer(b, net, l, inputs, od, what);
    void *out = NULL;
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (l) {
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
        kiln_status st = th_run_device(b, net, KILN_DEVICE_CPU, inputs, &out, od);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st != KILN_OK) {
            free(out);
            out = NULL;
        }
    }
    kiln_network_destroy(net);
    return out;
}

void th_check_layer(kiln_builder *b, kiln_network *net, kiln_layer *l, kiln_dims want, void *x, const double *ref,
                    int64_t n, double tol, const char *what) {
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (!l) return;
    kiln_dims od = kiln_tensor_dims(kiln_layer_output(l, 0));
    bool same = od.nb_dims == want.nb_dims;
    for (int i = 0; same && i < od.nb_dims; i++) same = od.d[i] == want.d[i];
    CHECK(same, "%s: inferred output dims differ", what);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
    void *inputs[1] = {x}, *outputs[1] = {NULL};
    kiln_status st = th_run(b, net, inputs, outputs, NULL);
    CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
    if (st == KILN_OK) th_check_close(what, outputs[0], ref, n, tol);
    free(outputs[0]);
}
