/* kiln tests: every reduction over single, multiple, negative, unsorted and all axes with
 * and without keep_dims (float32, float16, float64; int8/uint8/int32/int64 where allowed),
 * long reductions that are split across threads, arg max/min with ties, and the errors the
 * add calls report. float16, float64, int8 and uint8 have CPU kernels only and run there. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

static kiln_builder *B;
#define run_layer(net, l, inputs, od, what) th_run_layer(B, net, l, inputs, od, what)
#define run_threads(net, threads, inputs, out) th_run_threads(B, net, threads, inputs, out)
#define expect_fail th_expect_add_fails

static kiln_network *net_new(void) {
    kiln_network *n = NULL;
    if (kiln_network_create(B, &n) != KILN_OK) {
        fprintf(stderr, "network create failed: %s\n", kiln_last_error());
        exit(2);
    }
    return n;
}

/* The expected output shape and, for each input element, the output element it lands in. */
static kiln_dims reduced_dims(const kiln_dims *d, const bool *red, int keep) {
    kiln_dims o;
    memset(&o, 0, sizeof o);
    for (int i = 0; i < d->nb_dims; i++) {
        if (!red[i]) o.d[o.nb_dims++] = d->d[i];
        else if (keep) o.d[o.nb_dims++] = 1;
    }
    return o;
}

static int64_t out_index(const kiln_dims *d, const bool *red, int64_t i) {
    int64_t idx = 0, stride = 1;
    for (int k = d->nb_dims - 1; k >= 0; k--) {
        int64_t c = i % d->d[k];
        i /= d->d[k];
        if (red[k]) continue;
        idx += c * stride;
        stride *= d->d[k];
    }
    return idx;
}

static bool dims_same(const kiln_dims *a, const kiln_dims *b) {
    if (a->nb_dims != b->nb_dims) return false;
    for (int i = 0; i < a->nb_dims; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

/* ---- float reductions ---- */

static void ref_reduce(kiln_reduce_op op, const kiln_dims *d, const bool *red, const double *x, double *y, int64_t m) {
    int64_t n = kiln_dims_volume(d), cnt = n / (m ? m : 1);
    double *mx = malloc((size_t)(m ? m : 1) * sizeof(double));
    for (int64_t j = 0; j < m; j++) {
        y[j] = op == KILN_REDUCE_PROD ? 1 : op == KILN_REDUCE_MAX ? -INFINITY : op == KILN_REDUCE_MIN ? INFINITY : 0;
        mx[j] = -INFINITY;
    }
    for (int64_t i = 0; i < n; i++) mx[out_index(d, red, i)] = fmax(mx[out_index(d, red, i)], x[i]);
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], *a = &y[out_index(d, red, i)];
        switch (op) {
        case KILN_REDUCE_SUM:
        case KILN_REDUCE_MEAN:
        case KILN_REDUCE_LOG_SUM: *a += v; break;
        case KILN_REDUCE_MAX: *a = fmax(*a, v); break;
        case KILN_REDUCE_MIN: *a = fmin(*a, v); break;
        case KILN_REDUCE_PROD: *a *= v; break;
        case KILN_REDUCE_L1: *a += fabs(v); break;
        case KILN_REDUCE_L2:
        case KILN_REDUCE_SUM_SQUARE: *a += v * v; break;
        case KILN_REDUCE_LOG_SUM_EXP: *a += exp(v - mx[out_index(d, red, i)]); break;
        }
    }
    for (int64_t j = 0; j < m; j++) {
        if (op == KILN_REDUCE_MEAN) y[j] /= (double)cnt;
        if (op == KILN_REDUCE_L2) y[j] = sqrt(y[j]);
        if (op == KILN_REDUCE_LOG_SUM) y[j] = log(y[j]);
        if (op == KILN_REDUCE_LOG_SUM_EXP) y[j] = mx[j] + log(y[j]);
    }
    free(mx);
}

static void input_range(kiln_reduce_op op, float *lo, float *hi) {
    *lo = -3;
    *hi = 3;
    if (op == KILN_REDUCE_LOG_SUM) *lo = 0.1f, *hi = 1;        /* positive sums */
    if (op == KILN_REDUCE_PROD) *lo = 0.85f, *hi = 1.2f;       /* products stay in range */
    if (op == KILN_REDUCE_LOG_SUM_EXP) *lo = -60, *hi = 90;    /* exp would overflow float */
}

static void reduce_case(kiln_reduce_op op, kiln_dims d, int nb_axes, const int64_t *axes, int keep) {
    bool red[KILN_MAX_DIMS] = {false};
    for (int i = 0; i < nb_axes; i++) red[axes[i] < 0 ? axes[i] + d.nb_dims : axes[i]] = true;
    if (nb_axes == 0)
        for (int i = 0; i < d.nb_dims; i++) red[i] = true;
    kiln_dims want = reduced_dims(&d, red, keep);
    int64_t n = kiln_dims_volume(&d), m = kiln_dims_volume(&want);
    float lo, hi;
    input_range(op, &lo, &hi);
    float *x = th_rand_array(n, lo, hi);
    double *xd = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) xd[i] = x[i];
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
    char what[128];
    int k = snprintf(what, sizeof what, "reduce op %d rank %d keep %d axes", (int)op, d.nb_dims, keep);
    for (int i = 0; i < nb_axes && k < 100; i++) k += snprintf(what + k, sizeof what - (size_t)k, " %lld", (long long)axes[i]);
    if (!nb_axes) snprintf(what + k, sizeof what - (size_t)k, " (all)");
    void *ip[1] = {x};
    kiln_dims od;
    float *y = run_layer(net, kiln_network_add_reduce(net, in, op, nb_axes, axes, keep), ip, &od, what);
    if (y) {
        CHECK(dims_same(&od, &want), "%s: output dims", what);
        double *ref = malloc((size_t)m * sizeof(double));
        ref_reduce(op, &d, red, xd, ref, m);
        th_check_close(what, y, ref, m, 1e-5);
        free(ref);
    }
    free(y);
    free(x);
    free(xd);
}

/* float16 and float64 input, accumulated in double and rounded once: float64 against the
 * reference to 1e-12 (a float32 accumulation would miss by 1e-7), float16 exactly or, where
 * the summation order tips a rounding, by one half ulp. */
static void reduce_case_typed(kiln_dtype t, kiln_reduce_op op, kiln_dims d, int nb_axes, const int64_t *axes,
                              int keep) {
    bool red[KILN_MAX_DIMS] = {false};
    for (int i = 0; i < nb_axes; i++) red[axes[i] < 0 ? axes[i] + d.nb_dims : axes[i]] = true;
    if (nb_axes == 0)
        for (int i = 0; i < d.nb_dims; i++) red[i] = true;
    kiln_dims want = reduced_dims(&d, red, keep);
    int64_t n = kiln_dims_volume(&d), m = kiln_dims_volume(&want);
    float lo, hi;
    input_range(op, &lo, &hi);
    if (t == KILN_FLOAT64 && op == KILN_REDUCE_LOG_SUM_EXP) lo = -300, hi = 700; /* exp beyond float's range */
    size_t es = kiln_dtype_size(t);
    void *x = malloc((size_t)(n ? n : 1) * es);
    double *xd = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        double v = th_uniform(lo, hi);
        if (v == 0) v = hi;
        th_fput(t, x, i, v);
        xd[i] = th_fget(t, x, i);
    }
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", t, d);
    char what[128];
    int k = snprintf(what, sizeof what, "%s reduce op %d rank %d keep %d axes", kiln_dtype_name(t), (int)op, d.nb_dims,
                     keep);
    for (int i = 0; i < nb_axes && k < 100; i++)
        k += snprintf(what + k, sizeof what - (size_t)k, " %lld", (long long)axes[i]);
    if (!nb_axes) snprintf(what + k, sizeof what - (size_t)k, " (all)");
    void *ip[1] = {x};
    kiln_dims od;
    void *y = th_run_layer_for(B, t, net, kiln_network_add_reduce(net, in, op, nb_axes, axes, keep), ip, &od, what);
    if (y) {
        CHECK(dims_same(&od, &want), "%s: output dims", what);
        double *ref = malloc((size_t)(m ? m : 1) * sizeof(double));
        ref_reduce(op, &d, red, xd, ref, m);
        int64_t bad = 0, first = -1, inexact = 0;
        for (int64_t j = 0; j < m; j++) {
            double got = th_fget(t, y, j), r = t == KILN_FLOAT16 ? th_half_round(ref[j]) : ref[j];
            bool ok = got == r || (t == KILN_FLOAT16 ? fabs(got - r) <= ldexp(fabs(r), -10)
                                                     : fabs(got - r) <= 1e-12 * fabs(r));
            inexact += got != r;
            if (!ok && first < 0) first = j;
            bad += !ok;
        }
        CHECK(bad == 0, "%s: %lld of %lld wrong (first %lld: got %.17g, expected %.17g)", what, (long long)bad,
              (long long)m, (long long)first, first >= 0 ? th_fget(t, y, first) : 0.0, first >= 0 ? ref[first] : 0.0);
        CHECK(t != KILN_FLOAT16 || inexact * 20 <= m, "%s: %lld of %lld off by an ulp", what, (long long)inexact,
              (long long)m);
        free(ref);
    }
    free(y);
    free(x);
    free(xd);
}

static void test_reduce_float_types(void) {
    static const kiln_dtype types[2] = {KILN_FLOAT64, KILN_FLOAT16};
    int64_t d4[4] = {3, 4, 5, 6};
    static const struct {
        int n;
        int64_t a[4];
    } sets[] = {{0, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {1, 3}}, {3, {3, -4, 1}}};
    int64_t longrow[2] = {1, 300001}, three[2] = {3, 100003}, tall[2] = {1000, 300}, ax1[1] = {1}, ax0[1] = {0};
    for (int ti = 0; ti < 2; ti++)
        for (int op = 0; op < KILN_REDUCE_COUNT; op++) {
            kiln_dtype t = types[ti];
            for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
                for (int keep = 0; keep < 2; keep++)
                    reduce_case_typed(t, (kiln_reduce_op)op, kiln_dims_make(4, d4), sets[s].n, sets[s].a, keep);
            reduce_case_typed(t, (kiln_reduce_op)op, kiln_dims_make(2, longrow), 0, NULL, 0);
            reduce_case_typed(t, (kiln_reduce_op)op, kiln_dims_make(2, three), 1, ax1, 1);
            reduce_case_typed(t, (kiln_reduce_op)op, kiln_dims_make(2, tall), 1, ax0, 0);
            reduce_case_typed(t, (kiln_reduce_op)op, kiln_dims_make(0, NULL), 0, NULL, 0);
        }
}

static void test_reduce_float(void) {
    int64_t d4[4] = {3, 4, 5, 6};
    static const struct {
        int n;
        int64_t a[4];
    } sets[] = {{0, {0}},     {1, {0}},     {1, {1}},      {1, {3}},        {1, {-1}},          {1, {-3}}, {2, {0, 2}},
                {2, {1, 3}},  {2, {-1, -3}}, {2, {2, 0}},  {3, {0, 1, 3}},  {4, {0, 1, 2, 3}}, {2, {1, 2}}, {3, {3, -4, 1}}};
    for (int op = 0; op < KILN_REDUCE_COUNT; op++)
        for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
            for (int keep = 0; keep < 2; keep++)
                reduce_case((kiln_reduce_op)op, kiln_dims_make(4, d4), sets[s].n, sets[s].a, keep);
    /* shapes that take the other paths: long contiguous runs split across threads, a wide
     * kept innermost axis, size-1 axes, rank 1 and a scalar */
    int64_t longrow[2] = {1, 300001}, three[2] = {3, 100003}, tall[2] = {1000, 300}, ones[5] = {1, 7, 1, 9, 1};
    int64_t ax1[1] = {1}, ax0[1] = {0}, ax13[2] = {1, 3}, r1 = 1000;
    for (int op = 0; op < KILN_REDUCE_COUNT; op++) {
        reduce_case((kiln_reduce_op)op, kiln_dims_make(2, longrow), 0, NULL, 0);
        reduce_case((kiln_reduce_op)op, kiln_dims_make(2, three), 1, ax1, 1);
        reduce_case((kiln_reduce_op)op, kiln_dims_make(2, tall), 1, ax0, 0);
        reduce_case((kiln_reduce_op)op, kiln_dims_make(5, ones), 2, ax13, 1);
        reduce_case((kiln_reduce_op)op, kiln_dims_make(1, &r1), 1, ax0, 0);
        reduce_case((kiln_reduce_op)op, kiln_dims_make(0, NULL), 0, NULL, 0);
    }
}

/* ---- reducing an axis of size 0: every output is the op's identity (ONNX) ---- */
static void test_reduce_empty(void) {
    static const double want[KILN_REDUCE_COUNT] = {0, NAN, -INFINITY, INFINITY, 1, 0, 0, 0, -INFINITY, -INFINITY};
    int64_t d[3] = {2, 0, 3}, ax[1] = {1};
    for (int op = 0; op < KILN_REDUCE_COUNT; op++) {
        kiln_network *net = net_new();
        kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(3, d));
        float dummy[1] = {0};
        void *ip[1] = {dummy};
        kiln_dims od;
        char what[64];
        snprintf(what, sizeof what, "reduce op %d over an empty axis", op);
        float *y = run_layer(net, kiln_network_add_reduce(net, in, (kiln_reduce_op)op, 1, ax, 0), ip, &od, what);
        if (y) {
            CHECK(od.nb_dims == 2 && od.d[0] == 2 && od.d[1] == 3, "%s: output dims", what);
            double ref[6];
            for (int i = 0; i < 6; i++) ref[i] = want[op];
            th_check_close(what, y, ref, 6, 1e-6);
            if (op == KILN_REDUCE_MEAN) /* th_check_close lets a finite value pass for a NaN */
                for (int i = 0; i < 6; i++) CHECK(isnan(y[i]), "%s: element %d is %g, expected NaN", what, i, y[i]);
        }
        free(y);
    }
    /* float16 and float64 the same; integers give 0, 1 and the type's extremes */
    static const kiln_dtype types[6] = {KILN_FLOAT16, KILN_FLOAT64, KILN_INT8, KILN_UINT8, KILN_INT32, KILN_INT64};
    for (int ti = 0; ti < 6; ti++) {
        kiln_dtype t = types[ti];
        bool flt = ti < 2;
        for (int op = 0; op < KILN_REDUCE_COUNT; op++) {
            double w = flt ? want[op] : op == KILN_REDUCE_SUM ? 0 : op == KILN_REDUCE_PROD ? 1 : NAN;
            if (!flt && (op == KILN_REDUCE_MAX || op == KILN_REDUCE_MIN)) {
                double lo = t == KILN_INT8    ? -128
                            : t == KILN_UINT8 ? 0
                            : t == KILN_INT32 ? INT32_MIN
                                              : (double)INT64_MIN;
                double hi = t == KILN_INT8    ? 127
                            : t == KILN_UINT8 ? 255
                            : t == KILN_INT32 ? INT32_MAX
                                              : (double)INT64_MAX;
                w = op == KILN_REDUCE_MAX ? lo : hi;
            }
            if (isnan(w) && !flt) continue; /* integers have no mean, norms or logarithms */
            kiln_network *net = net_new();
            kiln_tensor *in = kiln_network_add_input(net, "x", t, kiln_dims_make(3, d));
            double dummy[1] = {0};
            void *ip[1] = {dummy};
            kiln_layer *l = kiln_network_add_reduce(net, in, (kiln_reduce_op)op, 1, ax, 0);
            char what[64];
            snprintf(what, sizeof what, "%s reduce op %d over an empty axis", kiln_dtype_name(t), op);
            CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
            void *y = NULL;
            if (l) {
                CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
                kiln_status st = th_run_device(B, net, KILN_DEVICE_CPU, ip, &y, NULL);
                CHECK(st == KILN_OK, "%s: %s", what, kiln_last_error());
            }
            kiln_network_destroy(net);
            if (!y) continue;
            int bad = 0;
            for (int i = 0; i < 6; i++) {
                double g;
                switch (t) {
                case KILN_INT8: g = ((int8_t *)y)[i]; break;
                case KILN_UINT8: g = ((uint8_t *)y)[i]; break;
                case KILN_INT32: g = ((int32_t *)y)[i]; break;
                case KILN_INT64: g = (double)((int64_t *)y)[i]; break;
                default: g = th_fget(t, y, i); break;
                }
                bad += !(g == w || (isnan(g) && isnan(w)));
            }
            CHECK(bad == 0, "%s: %d of 6 wrong (expected %g)", what, bad, w);
            free(y);
        }
    }
}

/* ---- integer reductions (exact) ---- */

static int64_t iget(kiln_dtype t, const void *p, int64_t i) {
    switch (t) {
    case KILN_INT8: return ((const int8_t *)p)[i];
    case KILN_UINT8: return ((const uint8_t *)p)[i];
    case KILN_INT32: return ((const int32_t *)p)[i];
    default: return ((const int64_t *)p)[i];
    }
}

static void iput(kiln_dtype t, void *p, int64_t i, int64_t v) {
    switch (t) {
    case KILN_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
    case KILN_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case KILN_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
    default: ((int64_t *)p)[i] = v; break;
    }
}

/* v wrapped to t, as two's complement hardware (and numpy) would. */
static int64_t wrap_int(kiln_dtype t, int64_t v) {
    switch (t) {
    case KILN_INT8: return (int8_t)(uint8_t)(uint64_t)v;
    case KILN_UINT8: return (uint8_t)(uint64_t)v;
    case KILN_INT32: return (int32_t)(uint32_t)(uint64_t)v;
    default: return v;
    }
}

static void test_reduce_int(void) {
    static const kiln_reduce_op ops[4] = {KILN_REDUCE_SUM, KILN_REDUCE_MAX, KILN_REDUCE_MIN, KILN_REDUCE_PROD};
    static const kiln_dtype types[4] = {KILN_INT32, KILN_INT64, KILN_INT8, KILN_UINT8};
    int64_t d4[4] = {3, 4, 5, 6}, longrow[2] = {2, 200000};
    static const struct {
        int n;
        int64_t a[4];
    } sets[] = {{0, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {3, 1}}};
    for (int it = 0; it < 4; it++) {
        kiln_dtype t = types[it];
        size_t es = kiln_dtype_size(t);
        for (int o = 0; o < 4; o++)
            for (size_t s = 0; s < sizeof sets / sizeof sets[0] + 1; s++)
                for (int keep = 0; keep < 2; keep++) {
                    bool big = s == sizeof sets / sizeof sets[0];
                    kiln_dims d = kiln_dims_make(big ? 2 : 4, big ? longrow : d4);
                    int nb = big ? 1 : sets[s].n;
                    const int64_t *axes = big ? (const int64_t[]){1} : sets[s].a;
                    bool red[KILN_MAX_DIMS] = {false};
                    for (int i = 0; i < nb; i++) red[axes[i] < 0 ? axes[i] + d.nb_dims : axes[i]] = true;
                    if (!nb)
                        for (int i = 0; i < d.nb_dims; i++) red[i] = true;
                    kiln_dims want = reduced_dims(&d, red, keep);
                    int64_t n = kiln_dims_volume(&d), m = kiln_dims_volume(&want);
                    void *v = malloc((size_t)n * es);
                    for (int64_t i = 0; i < n; i++) {
                        int64_t x;
                        if (t == KILN_INT8) /* full range: sums and products wrap */
                            x = ops[o] == KILN_REDUCE_PROD ? th_rand_int(-64, 63) * 2 + 1 : th_rand_int(-128, 127);
                        else if (t == KILN_UINT8)
                            x = ops[o] == KILN_REDUCE_PROD ? th_rand_int(0, 127) * 2 + 1 : th_rand_int(0, 255);
                        else /* products wrap: both sides wrap the same way */
                            x = ops[o] == KILN_REDUCE_PROD ? th_rand_int(-3, 3) : th_rand_int(-1000000, 1000000);
                        if (t == KILN_INT32 && ops[o] == KILN_REDUCE_SUM) x = th_rand_int(-1000, 1000);
                        iput(t, v, i, x);
                    }
                    uint64_t *acc = malloc((size_t)m * sizeof(uint64_t));
                    int64_t *mm = malloc((size_t)m * sizeof(int64_t));
                    for (int64_t j = 0; j < m; j++) {
                        acc[j] = ops[o] == KILN_REDUCE_PROD ? 1 : 0;
                        mm[j] = ops[o] == KILN_REDUCE_MAX ? INT64_MIN : INT64_MAX;
                    }
                    for (int64_t i = 0; i < n; i++) {
                        int64_t j = out_index(&d, red, i), x = iget(t, v, i);
                        if (ops[o] == KILN_REDUCE_SUM) acc[j] += (uint64_t)x;
                        if (ops[o] == KILN_REDUCE_PROD) acc[j] *= (uint64_t)x;
                        if (ops[o] == KILN_REDUCE_MAX && x > mm[j]) mm[j] = x;
                        if (ops[o] == KILN_REDUCE_MIN && x < mm[j]) mm[j] = x;
                    }
                    kiln_network *net = net_new();
                    kiln_tensor *in = kiln_network_add_input(net, "x", t, d);
                    void *ip[1] = {v};
                    kiln_dims od;
                    char what[96];
                    snprintf(what, sizeof what, "%s reduce op %d set %d keep %d", kiln_dtype_name(t), (int)ops[o], (int)s,
                             keep);
                    void *y = th_run_layer_for(B, t, net, kiln_network_add_reduce(net, in, ops[o], nb, axes, keep), ip, &od,
                                            what);
                    if (y) {
                        CHECK(dims_same(&od, &want), "%s: output dims", what);
                        int64_t bad = 0, wrapped = 0;
                        for (int64_t j = 0; j < m; j++) {
                            int64_t r = ops[o] == KILN_REDUCE_SUM || ops[o] == KILN_REDUCE_PROD ? (int64_t)acc[j] : mm[j];
                            wrapped += wrap_int(t, r) != r;
                            bad += iget(t, y, j) != wrap_int(t, r);
                        }
                        CHECK(bad == 0, "%s: %lld of %lld wrong", what, (long long)bad, (long long)m);
                        /* 8-bit sums and products must have wrapped somewhere */
                        bool narrow_sum = es == 1 && (ops[o] == KILN_REDUCE_SUM || ops[o] == KILN_REDUCE_PROD);
                        CHECK(!narrow_sum || wrapped > 0, "%s: nothing wrapped", what);
                    }
                    free(y);
                    free(v);
                    free(acc);
                    free(mm);
                }
    }
}

/* ---- arg max / min ---- */

static void arg_case(kiln_dtype t, kiln_dims d, int axis, int keep, int is_min, int last) {
    int64_t n = kiln_dims_volume(&d);
    int ax = axis < 0 ? axis + d.nb_dims : axis;
    int64_t outer = 1, L = d.d[ax], inner = 1;
    for (int i = 0; i < ax; i++) outer *= d.d[i];
    for (int i = ax + 1; i < d.nb_dims; i++) inner *= d.d[i];
    size_t es = kiln_dtype_size(t);
    char *x = malloc((size_t)n * es);
    double *xv = malloc((size_t)n * sizeof(double));
    int64_t *iv = malloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) iv[i] = th_rand_int(-5, 5);
    /* every slice gets its extreme twice, at random places, so ties decide the answer */
    for (int64_t o = 0; o < outer && L > 1; o++)
        for (int64_t k = 0; k < inner; k++) {
            int64_t ext = iv[o * L * inner + k];
            for (int64_t i = 1; i < L; i++) {
                int64_t v = iv[(o * L + i) * inner + k];
                ext = is_min ? (v < ext ? v : ext) : (v > ext ? v : ext);
            }
            int64_t p1 = th_rand_int(0, L - 1), p2 = (p1 + th_rand_int(1, L - 1)) % L;
            iv[(o * L + p1) * inner + k] = iv[(o * L + p2) * inner + k] = ext;
        }
    for (int64_t i = 0; i < n; i++) {
        xv[i] = (double)iv[i];
        switch (t) {
        case KILN_FLOAT32: ((float *)x)[i] = (float)iv[i] * 0.5f; break;
        case KILN_FLOAT16: th_fput(t, x, i, (double)iv[i] * 0.25); break;
        case KILN_FLOAT64: ((double *)x)[i] = (double)iv[i] * (1 + 1e-12); break; /* apart in double only */
        case KILN_INT8: ((int8_t *)x)[i] = (int8_t)(iv[i] * 20); break;
        case KILN_UINT8: ((uint8_t *)x)[i] = (uint8_t)(iv[i] * 20 + 120); break;
        case KILN_INT32: ((int32_t *)x)[i] = (int32_t)iv[i]; break;
        default: ((int64_t *)x)[i] = iv[i] * 1000000000000LL; break;
        }
    }
    free(iv);
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", t, d);
    void *ip[1] = {x};
    kiln_dims od;
    char what[128];
    snprintf(what, sizeof what, "arg%s %s rank %d axis %d keep %d last %d", is_min ? "min" : "max", kiln_dtype_name(t),
             d.nb_dims, axis, keep, last);
    int64_t *y = th_run_layer_for(B, t, net, kiln_network_add_arg_reduce(net, in, axis, keep, is_min, last), ip, &od, what);
    if (y) {
        bool red[KILN_MAX_DIMS] = {false};
        red[ax] = true;
        kiln_dims want = reduced_dims(&d, red, keep);
        CHECK(dims_same(&od, &want), "%s: output dims", what);
        int64_t bad = 0, ties = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t k = 0; k < inner; k++) {
                int64_t best = 0, hits = 1;
                for (int64_t i = 1; i < L; i++) {
                    double v = xv[(o * L + i) * inner + k], b = xv[(o * L + best) * inner + k];
                    bool eq = v == b, better = is_min ? v < b : v > b;
                    if (better) hits = 1;
                    else if (eq) hits++;
                    if (better || (eq && last)) best = i;
                }
                ties += hits > 1;
                bad += y[o * inner + k] != best;
            }
        CHECK(bad == 0, "%s: %lld of %lld indices wrong", what, (long long)bad, (long long)(outer * inner));
        CHECK(L == 1 || ties == outer * inner, "%s: a slice without a tie", what);
    }
    free(y);
    free(x);
    free(xv);
}

static void test_arg_reduce(void) {
    int64_t d3[3] = {3, 4, 5}, wide[2] = {7, 700}, one = 11;
    static const kiln_dtype types[7] = {KILN_FLOAT32, KILN_INT32, KILN_INT64, KILN_FLOAT16,
                                        KILN_FLOAT64, KILN_INT8,  KILN_UINT8};
    for (int ti = 0; ti < 7; ti++)
        for (int axis = -3; axis < 3; axis++)
            for (int keep = 0; keep < 2; keep++)
                for (int is_min = 0; is_min < 2; is_min++)
                    for (int last = 0; last < 2; last++) {
                        arg_case(types[ti], kiln_dims_make(3, d3), axis, keep, is_min, last);
                        if (axis == 0 || axis == -1) arg_case(types[ti], kiln_dims_make(2, wide), axis, keep, is_min, last);
                        if (axis == 0) arg_case(types[ti], kiln_dims_make(1, &one), 0, keep, is_min, last);
                    }
}

/* ---- worker counts: the split path and the column blocks divided 1, 3 and 7 ways ---- */
static void test_threads(void) {
    static const int counts[3] = {1, 3, 7};
    static const struct {
        int n;
        int64_t d[2];
        int nb;
        int64_t axis;
        kiln_reduce_op op;
    } cases[] = {{2, {1, 300001}, 0, 0, KILN_REDUCE_SUM},         {2, {5, 100003}, 1, 1, KILN_REDUCE_LOG_SUM_EXP},
                 {2, {5, 100003}, 1, -1, KILN_REDUCE_MAX},        {2, {1000, 300}, 1, 0, KILN_REDUCE_MEAN},
                 {2, {1000, 301}, 1, 1, KILN_REDUCE_L2}};
    for (int t = 0; t < 3; t++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            kiln_dims d = kiln_dims_make(cases[k].n, cases[k].d);
            bool red[KILN_MAX_DIMS] = {false};
            if (cases[k].nb) red[cases[k].axis < 0 ? cases[k].axis + 2 : cases[k].axis] = true;
            else red[0] = red[1] = true;
            kiln_dims want = reduced_dims(&d, red, 0);
            int64_t n = kiln_dims_volume(&d), m = kiln_dims_volume(&want);
            float *x = th_rand_array(n, -2, 2), *y = malloc((size_t)m * sizeof(float));
            double *ref = malloc((size_t)m * sizeof(double)), *xd = malloc((size_t)n * sizeof(double));
            for (int64_t i = 0; i < n; i++) xd[i] = x[i];
            ref_reduce(cases[k].op, &d, red, xd, ref, m);
            free(xd);
            kiln_network *net = net_new();
            kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, d);
            kiln_layer *l = kiln_network_add_reduce(net, in, cases[k].op, cases[k].nb, &cases[k].axis, 0);
            char what[96];
            snprintf(what, sizeof what, "reduce op %d case %d with %d threads", (int)cases[k].op, (int)k, counts[t]);
            CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
            if (l) {
                kiln_network_mark_output(net, kiln_layer_output(l, 0));
                void *ip[1] = {x};
                memset(y, 0xFF, (size_t)m * sizeof(float));
                kiln_status st = run_threads(net, counts[t], ip, y);
                CHECK(st == KILN_OK, "%s: %s", what, kiln_last_error());
                if (st == KILN_OK) th_check_close(what, y, ref, m, 1e-5);
            }
            kiln_network_destroy(net);
            free(x);
            free(y);
            free(ref);
        }
}

/* ---- errors ---- */

static void test_errors(void) {
    int64_t d4[4] = {2, 3, 4, 5};
    kiln_network *net = net_new();
    kiln_tensor *f = kiln_network_add_input(net, "f", KILN_FLOAT32, kiln_dims_make(4, d4));
    kiln_tensor *i = kiln_network_add_input(net, "i", KILN_INT32, kiln_dims_make(4, d4));
    kiln_tensor *bo = kiln_network_add_input(net, "bo", KILN_BOOL, kiln_dims_make(4, d4));
    kiln_tensor *s = kiln_network_add_input(net, "s", KILN_FLOAT32, kiln_dims_make(0, NULL));
    int before = kiln_network_num_layers(net);
    int64_t a4[1] = {4}, am5[1] = {-5}, dup[2] = {1, -3}, dup2[2] = {2, 2};
    expect_fail(kiln_network_add_reduce(net, f, KILN_REDUCE_SUM, 1, a4, 0), "reduce axis 4", "Reduce", "axis 4");
    expect_fail(kiln_network_add_reduce(net, f, KILN_REDUCE_SUM, 1, am5, 0), "reduce axis -5", "Reduce", "axis -5");
    expect_fail(kiln_network_add_reduce(net, f, KILN_REDUCE_MAX, 2, dup, 1), "reduce axes 1, -3", "Reduce", "twice");
    expect_fail(kiln_network_add_reduce(net, f, KILN_REDUCE_MAX, 2, dup2, 1), "reduce axes 2, 2", "Reduce", "twice");
    expect_fail(kiln_network_add_reduce(net, i, KILN_REDUCE_MEAN, 0, NULL, 0), "mean of int32", "Reduce", "int32");
    expect_fail(kiln_network_add_reduce(net, i, KILN_REDUCE_L2, 0, NULL, 0), "l2 of int32", "Reduce", "int32");
    kiln_tensor *u8 = kiln_network_add_input(net, "u8", KILN_UINT8, kiln_dims_make(4, d4));
    before = kiln_network_num_layers(net);
    expect_fail(kiln_network_add_reduce(net, u8, KILN_REDUCE_LOG_SUM_EXP, 0, NULL, 0), "log-sum-exp of uint8", "Reduce",
                "uint8");
    expect_fail(kiln_network_add_reduce(net, bo, KILN_REDUCE_SUM, 0, NULL, 0), "sum of bool", "Reduce", "bool");
    expect_fail(kiln_network_add_reduce(net, f, (kiln_reduce_op)KILN_REDUCE_COUNT, 0, NULL, 0), "reduce op 10",
                "Reduce", "unknown");
    expect_fail(kiln_network_add_reduce(net, s, KILN_REDUCE_SUM, 1, (const int64_t[]){0}, 0), "reduce axis 0 of a scalar",
                "Reduce", "axis 0");
    expect_fail(kiln_network_add_arg_reduce(net, f, 4, 1, 0, 0), "argmax axis 4", "ArgReduce", "axis 4");
    expect_fail(kiln_network_add_arg_reduce(net, f, -5, 1, 1, 0), "argmin axis -5", "ArgReduce", "axis -5");
    expect_fail(kiln_network_add_arg_reduce(net, bo, 0, 1, 0, 0), "argmax of bool", "ArgReduce", "bool");
    expect_fail(kiln_network_add_arg_reduce(net, s, 0, 1, 0, 0), "argmax of a scalar", "ArgReduce", "axis 0");
    CHECK(kiln_network_num_layers(net) == before, "failed adds left %d layers behind",
          kiln_network_num_layers(net) - before);
    kiln_network_destroy(net);
}

int main(void) {
    B = th_builder();
    test_reduce_float();
    test_reduce_float_types();
    test_reduce_empty();
    test_reduce_int();
    test_arg_reduce();
    test_threads();
    test_errors();
    kiln_builder_destroy(B);
    return th_exit("test_ops_reduce");
}
