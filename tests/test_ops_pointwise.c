/* kiln tests: activations, unary math, binary element-wise ops under numpy broadcasting
 * (float32, float16, float64, int8, uint8, int32, int64, bool), select and PRelu against
 * float64 / exact references; chains the builder runs in place; the errors the add calls
 * must report. */
#include <limits.h>
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

static kiln_dims mk(int n, const int64_t *d) { return kiln_dims_make(n, d); }

/* Marks l's output, builds, runs, destroys the network; returns the output (caller frees)
 * or NULL after a failed CHECK. */

/* The add call must fail and the message must name the layer type and the problem. */

static bool dims_same(const kiln_dims *a, const kiln_dims *b) {
    if (a->nb_dims != b->nb_dims) return false;
    for (int i = 0; i < a->nb_dims; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

/* numpy broadcast of two shapes (the test's own rule, independent of the library). */
static kiln_dims bshape(const kiln_dims *a, const kiln_dims *b) {
    kiln_dims r;
    memset(&r, 0, sizeof r);
    r.nb_dims = a->nb_dims > b->nb_dims ? a->nb_dims : b->nb_dims;
    for (int i = 0; i < r.nb_dims; i++) {
        int ia = a->nb_dims - r.nb_dims + i, ib = b->nb_dims - r.nb_dims + i;
        int64_t x = ia >= 0 ? a->d[ia] : 1, y = ib >= 0 ? b->d[ib] : 1;
        r.d[i] = x == 1 ? y : x;
    }
    return r;
}

/* Flat index into `in` of output element i under broadcasting. */
static int64_t bidx(const kiln_dims *out, const kiln_dims *in, int64_t i) {
    int64_t idx = 0, stride = 1;
    for (int d = out->nb_dims - 1; d >= 0; d--) {
        int64_t c = i % out->d[d];
        i /= out->d[d];
        int j = in->nb_dims - out->nb_dims + d;
        if (j < 0) continue;
        if (in->d[j] != 1) idx += c * stride;
        stride *= in->d[j];
    }
    return idx;
}

static const char *dstr(const kiln_dims *d, char *buf, size_t size) {
    int k = snprintf(buf, size, "[");
    for (int i = 0; i < d->nb_dims && k < (int)size; i++) k += snprintf(buf + k, size - (size_t)k, i ? ",%lld" : "%lld", (long long)d->d[i]);
    if (k < (int)size) snprintf(buf + k, size - (size_t)k, "]");
    return buf;
}

/* v as the type would hold it. */
static double fround(kiln_dtype t, double v) {
    return t == KILN_FLOAT16 ? th_half_round(v) : t == KILN_FLOAT64 ? v : (float)v;
}

/* ---- activations ---- */

static double ref_act(kiln_activation_type t, double x, double a, double b) {
    switch (t) {
    case KILN_ACT_RELU: return x > 0 ? x : 0;
    case KILN_ACT_LEAKY_RELU: return x >= 0 ? x : a * x;
    case KILN_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case KILN_ACT_TANH: return tanh(x);
    case KILN_ACT_CLIP: return fmin(fmax(x, a), b);
    case KILN_ACT_SILU: return x / (1 + exp(-x));
    case KILN_ACT_HARD_SIGMOID: return fmax(0, fmin(1, a * x + b));
    case KILN_ACT_HARD_SWISH: return x * fmax(0, fmin(1, x / 6 + 0.5));
    case KILN_ACT_GELU_ERF: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case KILN_ACT_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case KILN_ACT_ELU: return x >= 0 ? x : a * (exp(x) - 1);
    case KILN_ACT_SELU: return b * (x > 0 ? x : a * (exp(x) - 1));
    case KILN_ACT_SOFTPLUS: return log1p(exp(x));
    case KILN_ACT_SOFTSIGN: return x / (1 + fabs(x));
    case KILN_ACT_THRESHOLDED_RELU: return x > a ? x : 0;
    case KILN_ACT_MISH: return x * tanh(log1p(exp(x)));
    }
    return NAN;
}

static void test_activation_case(kiln_activation_type t, float alpha, float beta, int64_t n0, int64_t n1, float lo,
                                 float hi) {
    int64_t d[2] = {n0, n1}, n = n0 * n1;
    float *x = th_rand_array(n, lo, hi);
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, mk(2, d));
    char what[128];
    snprintf(what, sizeof what, "activation %d alpha %g beta %g [%lldx%lld] in [%g,%g)", (int)t, alpha, beta,
             (long long)n0, (long long)n1, lo, hi);
    kiln_dims od;
    void *in_ptr[1] = {x};
    float *y = run_layer(net, kiln_network_add_activation(net, in, t, alpha, beta), in_ptr, &od, what);
    if (y) {
        double *ref = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) ref[i] = ref_act(t, x[i], alpha, beta);
        CHECK(dims_same(&od, &(kiln_dims){2, {n0, n1}}), "%s: output dims", what);
        th_check_close(what, y, ref, n, 1e-5);
        free(ref);
    }
    free(y);
    free(x);
}

static void test_activations(void) {
    static const float ab[][2] = {{0.1f, 0.5f}, {1.5f, -0.25f}};
    for (int t = 0; t < KILN_ACT_COUNT; t++) {
        for (int k = 0; k < 2; k++) {
            float alpha = ab[k][0], beta = ab[k][1];
            if (t == KILN_ACT_CLIP) { /* a range: [-1, 2] and ReLU6 */
                alpha = k ? 0.0f : -1.0f;
                beta = k ? 6.0f : 2.0f;
            }
            if (t == KILN_ACT_SELU && k == 1) { /* the standard constants */
                alpha = 1.67326319217681884765625f;
                beta = 1.05070102214813232421875f;
            }
            test_activation_case((kiln_activation_type)t, alpha, beta, 3, 77, -6.0f, 6.0f);
        }
        /* saturated tails and a size that spreads over threads */
        test_activation_case((kiln_activation_type)t, 0.2f, 0.5f, 65, 1031, -40.0f, 40.0f);
    }
}

/* ---- unary ---- */

static double ref_unary(kiln_unary_op op, double x) {
    switch (op) {
    case KILN_UNARY_EXP: return exp(x);
    case KILN_UNARY_LOG: return log(x);
    case KILN_UNARY_SQRT: return sqrt(x);
    case KILN_UNARY_ABS: return fabs(x);
    case KILN_UNARY_NEG: return -x;
    case KILN_UNARY_RECIPROCAL: return 1 / x;
    case KILN_UNARY_FLOOR: return floor(x);
    case KILN_UNARY_CEIL: return ceil(x);
    case KILN_UNARY_ERF: return erf(x);
    case KILN_UNARY_SIN: return sin(x);
    case KILN_UNARY_COS: return cos(x);
    case KILN_UNARY_ROUND: return nearbyint(x); /* default mode: half to even */
    case KILN_UNARY_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
    default: return NAN;
    }
}

static void test_unary_float(void) {
    for (int op = 0; op < KILN_UNARY_COUNT; op++) {
        if (op == KILN_UNARY_NOT) continue;
        const int64_t n = 40000;
        float lo = -5, hi = 5;
        if (op == KILN_UNARY_LOG || op == KILN_UNARY_SQRT) lo = 0.01f, hi = 20;
        if (op == KILN_UNARY_EXP) lo = -20, hi = 20;
        if (op == KILN_UNARY_SIN || op == KILN_UNARY_COS) lo = -10, hi = 10;
        float *x = th_rand_array(n, lo, hi);
        if (op == KILN_UNARY_RECIPROCAL) /* keep away from 0 */
            for (int64_t i = 0; i < n; i++) x[i] += x[i] < 0 ? -0.25f : 0.25f;
        if (op == KILN_UNARY_ROUND || op == KILN_UNARY_SIGN || op == KILN_UNARY_FLOOR || op == KILN_UNARY_CEIL)
            for (int64_t i = 0; i < n; i += 7) x[i] = (float)th_rand_int(-8, 8) * 0.5f; /* halves, integers, 0 */
        kiln_network *net = net_new();
        kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, mk(1, &n));
        char what[64];
        snprintf(what, sizeof what, "unary %d float32", op);
        void *ip[1] = {x};
        float *y = run_layer(net, kiln_network_add_unary(net, in, (kiln_unary_op)op), ip, NULL, what);
        if (y) {
            double *ref = malloc((size_t)n * sizeof(double));
            for (int64_t i = 0; i < n; i++) ref[i] = ref_unary((kiln_unary_op)op, x[i]);
            th_check_close(what, y, ref, n, 1e-5);
            free(ref);
        }
        free(y);
        free(x);
    }
}

static void test_unary_int_bool(void) {
    static const kiln_unary_op ops[3] = {KILN_UNARY_ABS, KILN_UNARY_NEG, KILN_UNARY_SIGN};
    int64_t d[3] = {3, 5, 7}, n = 105;
    for (int it = 0; it < 2; it++) {
        kiln_dtype t = it ? KILN_INT64 : KILN_INT32;
        for (int k = 0; k < 3; k++) {
            int64_t v[105];
            int32_t v32[105];
            for (int64_t i = 0; i < n; i++) {
                v[i] = i % 9 == 0 ? 0 : th_rand_int(-100000, 100000);
                v32[i] = (int32_t)v[i];
            }
            kiln_network *net = net_new();
            kiln_tensor *in = kiln_network_add_input(net, "x", t, mk(3, d));
            void *ip[1] = {it ? (void *)v : (void *)v32};
            kiln_dims od;
            void *y = run_layer(net, kiln_network_add_unary(net, in, ops[k]), ip, &od, "unary int");
            if (!y) continue;
            int bad = 0;
            for (int64_t i = 0; i < n; i++) {
                int64_t want = ops[k] == KILN_UNARY_ABS ? llabs(v[i]) : ops[k] == KILN_UNARY_NEG ? -v[i]
                                                                                                  : (v[i] > 0) - (v[i] < 0);
                int64_t got = it ? ((int64_t *)y)[i] : ((int32_t *)y)[i];
                bad += got != want;
            }
            CHECK(bad == 0, "unary op %d on %s: %d wrong", (int)ops[k], kiln_dtype_name(t), bad);
            free(y);
        }
    }
    /* NOT on bool */
    uint8_t v[50];
    for (int i = 0; i < 50; i++) v[i] = (uint8_t)(th_rand_u64() & 1);
    int64_t nb = 50;
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_BOOL, mk(1, &nb));
    void *ip[1] = {v};
    uint8_t *y = run_layer(net, kiln_network_add_unary(net, in, KILN_UNARY_NOT), ip, NULL, "not");
    if (y) {
        int bad = 0;
        for (int i = 0; i < 50; i++) bad += y[i] != !v[i];
        CHECK(bad == 0, "not: %d wrong", bad);
    }
    free(y);
}

/* ---- binary ---- */

typedef struct shape_pair {
    int na;
    int64_t a[4];
    int nb;
    int64_t b[4];
} shape_pair;

static const shape_pair pairs[] = {
    {4, {2, 3, 4, 5}, 1, {5}},          {4, {2, 3, 4, 5}, 4, {1, 3, 1, 1}}, {4, {2, 3, 4, 5}, 4, {2, 1, 4, 1}},
    {4, {2, 3, 4, 5}, 0, {0}},          {4, {2, 3, 4, 5}, 4, {2, 3, 4, 5}}, {3, {3, 1, 5}, 3, {1, 4, 1}},
    {2, {64, 1000}, 1, {1000}},         {4, {2, 16, 33, 35}, 4, {1, 16, 1, 1}},
    {3, {300, 7, 11}, 3, {300, 1, 11}}, {1, {70001}, 1, {70001}},
};
#define NPAIRS ((int)(sizeof pairs / sizeof pairs[0]))

static bool is_cmp(kiln_elementwise_op op) { return op >= KILN_ELT_EQUAL && op <= KILN_ELT_GREATER_EQUAL; }

static double ref_fbin(kiln_elementwise_op op, double x, double y) {
    switch (op) {
    case KILN_ELT_ADD: return x + y;
    case KILN_ELT_SUB: return x - y;
    case KILN_ELT_MUL: return x * y;
    case KILN_ELT_DIV: return x / y;
    case KILN_ELT_MAX: return x > y ? x : y;
    case KILN_ELT_MIN: return x < y ? x : y;
    case KILN_ELT_POW: return pow(x, y);
    case KILN_ELT_EQUAL: return x == y;
    case KILN_ELT_LESS: return x < y;
    case KILN_ELT_GREATER: return x > y;
    case KILN_ELT_LESS_EQUAL: return x <= y;
    case KILN_ELT_GREATER_EQUAL: return x >= y;
    case KILN_ELT_FMOD: return fmod(x, y);
    case KILN_ELT_MOD: {
        double r = fmod(x, y);
        return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
    }
    default: return NAN;
    }
}

static void fill_operand(kiln_elementwise_op op, int which, float *v, int64_t n) {
    if (is_cmp(op)) { /* few distinct values so equality happens */
        for (int64_t i = 0; i < n; i++) v[i] = (float)th_rand_int(-2, 2) * 0.5f;
        if (n == 1) v[0] = 0; /* a middle value: some comparisons true, some false */
        return;
    }
    switch (op) {
    case KILN_ELT_POW: th_fill(v, n, which ? -2.0f : 0.25f, which ? 2.0f : 3.0f); break;
    case KILN_ELT_DIV:
    case KILN_ELT_MOD:
    case KILN_ELT_FMOD:
        th_fill(v, n, which ? -3.0f : -10.0f, which ? 3.0f : 10.0f);
        if (which)
            for (int64_t i = 0; i < n; i++) v[i] += v[i] < 0 ? -0.5f : 0.5f;
        break;
    default: th_fill(v, n, -3.0f, 3.0f); break;
    }
}

/* Runs a op b on float32 inputs of the given shapes; checks dims, values or booleans. */
static void run_float_binary(kiln_elementwise_op op, kiln_dims da, kiln_dims db, const float *a, const float *b,
                             const char *what) {
    kiln_dims want = bshape(&da, &db);
    int64_t n = kiln_dims_volume(&want);
    kiln_network *net = net_new();
    kiln_tensor *ta = kiln_network_add_input(net, "a", KILN_FLOAT32, da);
    kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, db);
    void *ip[2] = {(void *)a, (void *)b};
    kiln_dims od;
    void *y = run_layer(net, kiln_network_add_elementwise(net, ta, tb, op), ip, &od, what);
    if (!y) return;
    CHECK(dims_same(&od, &want), "%s: output dims", what);
    double *ref = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) ref[i] = ref_fbin(op, a[bidx(&want, &da, i)], b[bidx(&want, &db, i)]);
    if (is_cmp(op)) {
        int64_t bad = 0, ones = 0;
        for (int64_t i = 0; i < n; i++) {
            bad += ((uint8_t *)y)[i] != (uint8_t)ref[i];
            ones += ref[i] != 0;
        }
        CHECK(bad == 0, "%s: %lld of %lld booleans wrong", what, (long long)bad, (long long)n);
        CHECK(n < 100 || (ones > 0 && ones < n), "%s: degenerate data (%lld true)", what, (long long)ones);
    } else {
        th_check_close(what, y, ref, n, 1e-5);
    }
    free(ref);
    free(y);
}

static void test_binary_float(void) {
    static const kiln_elementwise_op ops[] = {
        KILN_ELT_ADD,   KILN_ELT_SUB,     KILN_ELT_MUL,        KILN_ELT_DIV,          KILN_ELT_MAX,
        KILN_ELT_MIN,   KILN_ELT_POW,     KILN_ELT_MOD,        KILN_ELT_FMOD,         KILN_ELT_EQUAL,
        KILN_ELT_LESS,  KILN_ELT_GREATER, KILN_ELT_LESS_EQUAL, KILN_ELT_GREATER_EQUAL};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (int p = 0; p < NPAIRS; p++)
            for (int rev = 0; rev < 2; rev++) {
                if (rev && p == 4) continue; /* same shapes */
                kiln_dims da = mk(pairs[p].na, pairs[p].a), db = mk(pairs[p].nb, pairs[p].b);
                if (rev) {
                    kiln_dims t = da;
                    da = db;
                    db = t;
                }
                int64_t na = kiln_dims_volume(&da), nb = kiln_dims_volume(&db);
                float *a = malloc((size_t)na * sizeof(float)), *b = malloc((size_t)nb * sizeof(float));
                fill_operand(ops[o], 0, a, na);
                fill_operand(ops[o], 1, b, nb);
                char what[192], s1[64], s2[64];
                snprintf(what, sizeof what, "float op %d: %s with %s", (int)ops[o], dstr(&da, s1, sizeof s1),
                         dstr(&db, s2, sizeof s2));
                run_float_binary(ops[o], da, db, a, b, what);
                free(a);
                free(b);
            }
    /* the square and square-root fast paths of a scalar exponent */
    static const float expo[3] = {2.0f, 0.5f, 3.0f};
    for (int k = 0; k < 3; k++) {
        int64_t d[2] = {7, 1000};
        float *a = th_rand_array(7000, 0.1f, 4.0f);
        run_float_binary(KILN_ELT_POW, mk(2, d), mk(0, NULL), a, &expo[k], "pow by a scalar");
        free(a);
    }
}

/* float16 and float64: each element against the float64 result of the op on the decoded
 * operands, rounded once to the type. float16 + - * / mod fmod max min must then agree
 * exactly (float32 holds enough bits that rounding through it changes nothing); pow goes
 * through powf, so it may be one half ulp away. float64 agrees exactly but for pow. */
static void run_typed_float_binary(kiln_dtype t, kiln_elementwise_op op, kiln_dims da, kiln_dims db, const void *a,
                                   const void *b, const char *what) {
    kiln_dims want = bshape(&da, &db);
    int64_t n = kiln_dims_volume(&want);
    kiln_network *net = net_new();
    kiln_tensor *ta = kiln_network_add_input(net, "a", t, da);
    kiln_tensor *tb = kiln_network_add_input(net, "b", t, db);
    void *ip[2] = {(void *)a, (void *)b};
    kiln_dims od;
    void *y = th_run_layer_for(B, t, net, kiln_network_add_elementwise(net, ta, tb, op), ip, &od, what);
    if (!y) return;
    CHECK(dims_same(&od, &want), "%s: output dims", what);
    int64_t bad = 0, first = -1, ones = 0;
    double got_first = 0, want_first = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = th_fget(t, a, bidx(&want, &da, i)), v = th_fget(t, b, bidx(&want, &db, i));
        double r = ref_fbin(op, x, v), got;
        bool ok;
        if (is_cmp(op)) {
            got = ((const uint8_t *)y)[i];
            ok = got == r;
            ones += r != 0;
        } else {
            got = th_fget(t, y, i);
            r = fround(t, r);
            if (op == KILN_ELT_POW)
                ok = t == KILN_FLOAT16 ? fabs(got - r) <= ldexp(fabs(r), -10) : fabs(got - r) <= 1e-15 * fabs(r);
            else
                ok = got == r;
        }
        if (!ok && first < 0) {
            first = i;
            got_first = got;
            want_first = r;
        }
        bad += !ok;
    }
    CHECK(bad == 0, "%s: %lld of %lld wrong (first at %lld: got %.17g, expected %.17g)", what, (long long)bad,
          (long long)n, (long long)first, got_first, want_first);
    CHECK(!is_cmp(op) || n < 100 || (ones > 0 && ones < n), "%s: degenerate data (%lld true)", what, (long long)ones);
    free(y);
}

static void test_binary_float_types(void) {
    static const kiln_elementwise_op ops[] = {
        KILN_ELT_ADD,   KILN_ELT_SUB,     KILN_ELT_MUL,        KILN_ELT_DIV,          KILN_ELT_MAX,
        KILN_ELT_MIN,   KILN_ELT_POW,     KILN_ELT_MOD,        KILN_ELT_FMOD,         KILN_ELT_EQUAL,
        KILN_ELT_LESS,  KILN_ELT_GREATER, KILN_ELT_LESS_EQUAL, KILN_ELT_GREATER_EQUAL};
    static const kiln_dtype types[2] = {KILN_FLOAT16, KILN_FLOAT64};
    for (int ti = 0; ti < 2; ti++) {
        kiln_dtype t = types[ti];
        size_t es = kiln_dtype_size(t);
        for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
            for (int p = 0; p < NPAIRS; p++)
                for (int rev = 0; rev < 2; rev++) {
                    if (rev && p == 4) continue;
                    kiln_dims da = mk(pairs[p].na, pairs[p].a), db = mk(pairs[p].nb, pairs[p].b);
                    if (rev) {
                        kiln_dims tmp = da;
                        da = db;
                        db = tmp;
                    }
                    kiln_elementwise_op op = ops[o];
                    int64_t na = kiln_dims_volume(&da), nb = kiln_dims_volume(&db);
                    float *fa = malloc((size_t)na * sizeof(float)), *fb = malloc((size_t)nb * sizeof(float));
                    fill_operand(op, 0, fa, na);
                    fill_operand(op, 1, fb, nb);
                    void *a = malloc((size_t)na * es), *b = malloc((size_t)nb * es);
                    for (int64_t i = 0; i < na; i++) {
                        double v = fa[i];
                        /* float64: bits below float32's, so a float32 computation shows */
                        if (t == KILN_FLOAT64 && !is_cmp(op)) v *= 1 + th_uniform(-1e-6, 1e-6);
                        /* float16: some subnormal operands, and products and quotients below
                         * half's normal range */
                        if (t == KILN_FLOAT16 && i % 4 == 1 && !is_cmp(op) && op != KILN_ELT_POW) {
                            v = ldexp(v, -16);
                            if (th_half_round(v) == 0) v = ldexp(1, -24);
                        }
                        th_fput(t, a, i, v);
                    }
                    for (int64_t i = 0; i < nb; i++) {
                        double v = fb[i];
                        if (t == KILN_FLOAT64 && !is_cmp(op)) v *= 1 + th_uniform(-1e-6, 1e-6);
                        th_fput(t, b, i, v);
                    }
                    char what[192], s1[64], s2[64];
                    snprintf(what, sizeof what, "%s op %d: %s with %s", kiln_dtype_name(t), (int)op,
                             dstr(&da, s1, sizeof s1), dstr(&db, s2, sizeof s2));
                    run_typed_float_binary(t, op, da, db, a, b, what);
                    free(fa);
                    free(fb);
                    free(a);
                    free(b);
                }
        /* max and min propagate NaN from either side; float16 sums overflow to infinity */
        int64_t d4 = 4;
        void *a = malloc(4 * es), *b = malloc(4 * es);
        const double av[4] = {NAN, 1.5, -2.0, 60000}, bv[4] = {2.0, NAN, -3.0, 60000};
        for (int i = 0; i < 4; i++) {
            th_fput(t, a, i, av[i]);
            th_fput(t, b, i, bv[i]);
        }
        static const kiln_elementwise_op nops[3] = {KILN_ELT_MAX, KILN_ELT_MIN, KILN_ELT_ADD};
        for (int k = 0; k < 3; k++) {
            kiln_network *net = net_new();
            kiln_tensor *ta = kiln_network_add_input(net, "a", t, mk(1, &d4));
            kiln_tensor *tb = kiln_network_add_input(net, "b", t, mk(1, &d4));
            void *ip[2] = {a, b};
            char what[64];
            snprintf(what, sizeof what, "%s op %d with NaN", kiln_dtype_name(t), (int)nops[k]);
            void *y = th_run_layer_for(B, t, net, kiln_network_add_elementwise(net, ta, tb, nops[k]), ip, NULL, what);
            if (!y) continue;
            double y2 = th_fget(t, y, 2), y3 = th_fget(t, y, 3);
            CHECK(isnan(th_fget(t, y, 0)) && isnan(th_fget(t, y, 1)), "%s: NaN lost: %g %g", what, th_fget(t, y, 0),
                  th_fget(t, y, 1));
            if (nops[k] == KILN_ELT_ADD)
                CHECK(y2 == -5.0 && y3 == (t == KILN_FLOAT16 ? INFINITY : 120000.0), "%s: got %g %g", what, y2, y3);
            else
                CHECK(y2 == (nops[k] == KILN_ELT_MAX ? -2.0 : -3.0) && y3 == 60000, "%s: got %g %g", what, y2, y3);
            free(y);
        }
        free(a);
        free(b);
    }
}

/* Integer semantics: C truncating division, Python-sign MOD, C-sign FMOD, pow by
 * repeated multiplication (negative exponents truncate 1/x^k), all wrapping to the type. */
static int64_t ref_ibin(kiln_elementwise_op op, int64_t x, int64_t y) {
    switch (op) {
    case KILN_ELT_ADD: return (int64_t)((uint64_t)x + (uint64_t)y); /* wraps */
    case KILN_ELT_SUB: return (int64_t)((uint64_t)x - (uint64_t)y);
    case KILN_ELT_MUL: return (int64_t)((uint64_t)x * (uint64_t)y);
    case KILN_ELT_DIV: return x / y;
    case KILN_ELT_MAX: return x > y ? x : y;
    case KILN_ELT_MIN: return x < y ? x : y;
    case KILN_ELT_POW: {
        if (y < 0) return x == 1 ? 1 : x == -1 ? (y % 2 ? -1 : 1) : 0;
        uint64_t r = 1; /* wraps; the low bits are those of the narrower type */
        for (int64_t k = 0; k < y; k++) r *= (uint64_t)x;
        return (int64_t)r;
    }
    case KILN_ELT_FMOD: return x % y;
    case KILN_ELT_MOD: {
        int64_t r = x % y;
        return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
    }
    case KILN_ELT_EQUAL: return x == y;
    case KILN_ELT_LESS: return x < y;
    case KILN_ELT_GREATER: return x > y;
    case KILN_ELT_LESS_EQUAL: return x <= y;
    case KILN_ELT_GREATER_EQUAL: return x >= y;
    default: return 0;
    }
}

static int64_t get_int(kiln_dtype t, const void *p, int64_t i) {
    switch (t) {
    case KILN_INT8: return ((const int8_t *)p)[i];
    case KILN_INT32: return ((const int32_t *)p)[i];
    case KILN_INT64: return ((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

static void put_int(kiln_dtype t, void *p, int64_t i, int64_t v) {
    switch (t) {
    case KILN_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
    case KILN_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
    case KILN_INT64: ((int64_t *)p)[i] = v; break;
    default: ((uint8_t *)p)[i] = (uint8_t)v; break;
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

/* Runs op on integer/bool inputs and compares exactly with `ref` applied per element. */
static void run_int_binary(kiln_dtype t, kiln_elementwise_op op, kiln_dims da, kiln_dims db, const void *a,
                           const void *b, const char *what) {
    kiln_dims want = bshape(&da, &db);
    int64_t n = kiln_dims_volume(&want);
    kiln_network *net = net_new();
    kiln_tensor *ta = kiln_network_add_input(net, "a", t, da);
    kiln_tensor *tb = kiln_network_add_input(net, "b", t, db);
    void *ip[2] = {(void *)a, (void *)b};
    kiln_dims od;
    void *y = th_run_layer_for(B, t, net, kiln_network_add_elementwise(net, ta, tb, op), ip, &od, what);
    if (!y) return;
    CHECK(dims_same(&od, &want), "%s: output dims", what);
    bool boolean = is_cmp(op) || (op >= KILN_ELT_AND && op <= KILN_ELT_XOR);
    kiln_dtype ot = boolean ? KILN_BOOL : t;
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t x = get_int(t, a, bidx(&want, &da, i)), v = get_int(t, b, bidx(&want, &db, i)), r;
        if (op == KILN_ELT_AND) r = x && v;
        else if (op == KILN_ELT_OR) r = x || v;
        else if (op == KILN_ELT_XOR) r = (x != 0) != (v != 0);
        else r = ref_ibin(op, x, v);
        if (!boolean) r = wrap_int(t, r);
        if (get_int(ot, y, i) != r) {
            bad++;
            if (first < 0) first = i;
        }
    }
    CHECK(bad == 0, "%s: %lld of %lld wrong (first at %lld: got %lld)", what, (long long)bad, (long long)n,
          (long long)first, first >= 0 ? (long long)get_int(ot, y, first) : 0LL);
    free(y);
}

static void test_binary_int(void) {
    static const kiln_elementwise_op ops[] = {
        KILN_ELT_ADD,  KILN_ELT_SUB,  KILN_ELT_MUL,   KILN_ELT_DIV,     KILN_ELT_MAX,        KILN_ELT_MIN,
        KILN_ELT_POW,  KILN_ELT_MOD,  KILN_ELT_FMOD,  KILN_ELT_EQUAL,   KILN_ELT_LESS,       KILN_ELT_GREATER,
        KILN_ELT_LESS_EQUAL, KILN_ELT_GREATER_EQUAL};
    for (int it = 0; it < 2; it++) {
        kiln_dtype t = it ? KILN_INT64 : KILN_INT32;
        size_t es = it ? 8 : 4;
        for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
            for (int p = 0; p < 6; p++)
                for (int rev = 0; rev < 2; rev++) {
                    if (rev && p == 4) continue;
                    kiln_dims da = mk(pairs[p].na, pairs[p].a), db = mk(pairs[p].nb, pairs[p].b);
                    if (rev) {
                        kiln_dims tmp = da;
                        da = db;
                        db = tmp;
                    }
                    int64_t na = kiln_dims_volume(&da), nb = kiln_dims_volume(&db);
                    void *a = malloc((size_t)na * es), *b = malloc((size_t)nb * es);
                    kiln_elementwise_op op = ops[o];
                    for (int64_t i = 0; i < na; i++)
                        put_int(t, a, i, op == KILN_ELT_POW ? th_rand_int(-4, 4) : is_cmp(op) ? th_rand_int(-2, 2)
                                                                                           : th_rand_int(-60, 60));
                    for (int64_t i = 0; i < nb; i++) {
                        int64_t v = op == KILN_ELT_POW ? th_rand_int(-2, 6) : is_cmp(op) ? th_rand_int(-2, 2) : th_rand_int(-7, 7);
                        if (v == 0 && (op == KILN_ELT_DIV || op == KILN_ELT_MOD || op == KILN_ELT_FMOD)) v = 3;
                        if (v < 0 && op == KILN_ELT_POW && nb == 1) v = 3; /* 0 ^ -k is an error */
                        put_int(t, b, i, v);
                    }
                    if (op == KILN_ELT_POW) /* no 0 base meets a negative exponent */
                        for (int64_t i = 0; i < na; i++)
                            if (get_int(t, a, i) == 0) put_int(t, a, i, 2);
                    char what[192], s1[64], s2[64];
                    snprintf(what, sizeof what, "%s op %d: %s with %s", kiln_dtype_name(t), (int)op,
                             dstr(&da, s1, sizeof s1), dstr(&db, s2, sizeof s2));
                    run_int_binary(t, op, da, db, a, b, what);
                    free(a);
                    free(b);
                }
    }
    /* wrap-around instead of undefined behaviour; division of the minimum by -1 */
    int32_t a32[4] = {INT32_MAX, INT32_MIN, INT32_MIN, 5}, b32[4] = {1, -1, -1, -1};
    int64_t d4 = 4;
    run_int_binary(KILN_INT32, KILN_ELT_ADD, mk(1, &d4), mk(1, &d4), a32, b32, "int32 add wraps");
    int64_t a64[4] = {INT64_MAX, INT64_MIN, 7, -7}, b64[4] = {2, -1, 2, 2};
    run_int_binary(KILN_INT64, KILN_ELT_MUL, mk(1, &d4), mk(1, &d4), a64, b64, "int64 mul wraps");
    int32_t q[4];
    kiln_network *net = net_new();
    kiln_tensor *ta = kiln_network_add_input(net, "a", KILN_INT32, mk(1, &d4));
    kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_INT32, mk(1, &d4));
    kiln_layer *l = kiln_network_add_elementwise(net, ta, tb, KILN_ELT_DIV);
    void *ip[2] = {a32, b32}, *out = NULL;
    if (l) kiln_network_mark_output(net, kiln_layer_output(l, 0));
    kiln_status st = l ? th_run(B, net, ip, &out, NULL) : KILN_ERR_INTERNAL;
    CHECK(st == KILN_OK, "INT32_MIN / -1: %s", kiln_last_error());
    if (st == KILN_OK) {
        memcpy(q, out, sizeof q);
        CHECK(q[0] == INT32_MAX && q[1] == INT32_MIN && q[3] == -5, "INT32_MIN / -1 gave %d %d %d", q[0], q[1], q[3]);
    }
    free(out);
    kiln_network_destroy(net);

    /* integer division by zero is reported at run time, not a crash */
    static const kiln_elementwise_op zops[3] = {KILN_ELT_DIV, KILN_ELT_MOD, KILN_ELT_FMOD};
    for (int k = 0; k < 3; k++) {
        int64_t x[4] = {1, 2, 3, 4}, z[4] = {1, 0, 2, 1};
        net = net_new();
        ta = kiln_network_add_input(net, "a", KILN_INT64, mk(1, &d4));
        tb = kiln_network_add_input(net, "b", KILN_INT64, mk(1, &d4));
        l = kiln_network_add_elementwise(net, ta, tb, zops[k]);
        CHECK(l != NULL, "int div layer: %s", kiln_last_error());
        if (l) {
            kiln_network_mark_output(net, kiln_layer_output(l, 0));
            void *zp[2] = {x, z};
            out = NULL;
            st = th_run(B, net, zp, &out, NULL);
            CHECK(st == KILN_ERR_RUNTIME && strstr(kiln_last_error(), "division by zero") &&
                      strstr(kiln_last_error(), "Elementwise"),
                  "op %d by zero: %s, '%s'", (int)zops[k], kiln_status_string(st), kiln_last_error());
            free(out);
        }
        kiln_network_destroy(net);
    }
}

/* int8 and uint8: full-range operands so that + - * and pow wrap around, signed division
 * of the minimum by -1, and the sign rules of MOD (divisor) and FMOD (dividend). */
static void test_binary_int8(void) {
    static const kiln_elementwise_op ops[] = {
        KILN_ELT_ADD,  KILN_ELT_SUB,  KILN_ELT_MUL,   KILN_ELT_DIV,     KILN_ELT_MAX,        KILN_ELT_MIN,
        KILN_ELT_POW,  KILN_ELT_MOD,  KILN_ELT_FMOD,  KILN_ELT_EQUAL,   KILN_ELT_LESS,       KILN_ELT_GREATER,
        KILN_ELT_LESS_EQUAL, KILN_ELT_GREATER_EQUAL};
    for (int it = 0; it < 2; it++) {
        kiln_dtype t = it ? KILN_UINT8 : KILN_INT8;
        int64_t lo = it ? 0 : -128, hi = it ? 255 : 127;
        for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
            for (int p = 0; p < NPAIRS; p++)
                for (int rev = 0; rev < 2; rev++) {
                    if (rev && p == 4) continue;
                    kiln_dims da = mk(pairs[p].na, pairs[p].a), db = mk(pairs[p].nb, pairs[p].b);
                    if (rev) {
                        kiln_dims tmp = da;
                        da = db;
                        db = tmp;
                    }
                    int64_t na = kiln_dims_volume(&da), nb = kiln_dims_volume(&db);
                    uint8_t *a = malloc((size_t)na), *b = malloc((size_t)nb);
                    kiln_elementwise_op op = ops[o];
                    bool divides = op == KILN_ELT_DIV || op == KILN_ELT_MOD || op == KILN_ELT_FMOD;
                    for (int64_t i = 0; i < na; i++) {
                        int64_t v = op == KILN_ELT_POW ? (it ? th_rand_int(0, 255) : th_rand_int(-6, 6))
                                    : is_cmp(op)       ? th_rand_int(lo, lo + 4)
                                                       : th_rand_int(lo, hi);
                        if (!it && divides && i % 5 == 0) v = -128;
                        put_int(t, a, i, v);
                    }
                    for (int64_t i = 0; i < nb; i++) {
                        int64_t v = op == KILN_ELT_POW ? th_rand_int(it ? 0 : -2, 9)
                                    : is_cmp(op)       ? th_rand_int(lo, lo + 4)
                                                       : th_rand_int(lo, hi);
                        if (divides && !it && i % 7 == 3) v = -1;
                        if (divides && v == 0) v = 3;
                        put_int(t, b, i, v);
                    }
                    if (op == KILN_ELT_POW) /* no 0 base meets a negative exponent */
                        for (int64_t i = 0; i < na; i++)
                            if (get_int(t, a, i) == 0 && !it) put_int(t, a, i, 2);
                    char what[192], s1[64], s2[64];
                    snprintf(what, sizeof what, "%s op %d: %s with %s", kiln_dtype_name(t), (int)op,
                             dstr(&da, s1, sizeof s1), dstr(&db, s2, sizeof s2));
                    run_int_binary(t, op, da, db, a, b, what);
                    free(a);
                    free(b);
                }
    }
    /* the ONNX examples: mod_mixed_sign_int8 (sign of the divisor) and its fmod twin */
    int8_t x[6] = {-4, 7, 5, 4, -7, 8}, v[6] = {2, -3, 8, -2, 3, 5};
    const int8_t want_mod[6] = {0, -2, 5, 0, 2, 3}, want_fmod[6] = {0, 1, 5, 0, -1, 3};
    int64_t d6 = 6;
    for (int k = 0; k < 2; k++) {
        kiln_network *net = net_new();
        kiln_tensor *ta = kiln_network_add_input(net, "a", KILN_INT8, mk(1, &d6));
        kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_INT8, mk(1, &d6));
        void *ip[2] = {x, v};
        kiln_layer *l = kiln_network_add_elementwise(net, ta, tb, k ? KILN_ELT_FMOD : KILN_ELT_MOD);
        int8_t *y = th_run_layer_for(B, KILN_INT8, net, l, ip, NULL, "int8 mod example");
        if (y)
            CHECK(memcmp(y, k ? want_fmod : want_mod, 6) == 0, "int8 %s example: %d %d %d %d %d %d",
                  k ? "fmod" : "mod", y[0], y[1], y[2], y[3], y[4], y[5]);
        free(y);
    }
    /* division by zero is reported at run time for these types too */
    for (int it = 0; it < 2; it++) {
        kiln_dtype t = it ? KILN_UINT8 : KILN_INT8;
        uint8_t a[4] = {1, 2, 3, 4}, z[4] = {1, 0, 2, 1};
        int64_t d4 = 4;
        kiln_network *net = net_new();
        kiln_tensor *ta = kiln_network_add_input(net, "a", t, mk(1, &d4));
        kiln_tensor *tb = kiln_network_add_input(net, "b", t, mk(1, &d4));
        kiln_layer *l = kiln_network_add_elementwise(net, ta, tb, it ? KILN_ELT_MOD : KILN_ELT_DIV);
        CHECK(l != NULL, "%s div layer: %s", kiln_dtype_name(t), kiln_last_error());
        if (l) {
            kiln_network_mark_output(net, kiln_layer_output(l, 0));
            void *zp[2] = {a, z}, *out = NULL;
            kiln_status st = th_run_device(B, net, KILN_DEVICE_CPU, zp, &out, NULL);
            CHECK(st == KILN_ERR_RUNTIME && strstr(kiln_last_error(), "division by zero"), "%s by zero: %s, '%s'",
                  kiln_dtype_name(t), kiln_status_string(st), kiln_last_error());
            free(out);
        }
        kiln_network_destroy(net);
    }
}

/* In-place chains on the CPU-only dtypes: t = a - b; u = t * t (both operands the buffer
 * that may become the output); y = max(u, a); each step rounded or wrapped to the type. */
static void test_inplace_types(void) {
    static const kiln_dtype types[4] = {KILN_FLOAT16, KILN_FLOAT64, KILN_INT8, KILN_UINT8};
    const int64_t rows = 13, cols = 1001, n = rows * cols;
    int64_t d[2] = {rows, cols};
    for (int ti = 0; ti < 4; ti++) {
        kiln_dtype t = types[ti];
        bool flt = t == KILN_FLOAT16 || t == KILN_FLOAT64;
        size_t es = kiln_dtype_size(t);
        char *a = malloc((size_t)n * es), *b = malloc((size_t)n * es);
        for (int64_t i = 0; i < n; i++) {
            if (flt) {
                th_fput(t, a, i, th_uniform(-8, 8));
                th_fput(t, b, i, th_uniform(-8, 8));
            } else {
                put_int(t, a, i, th_rand_int(t == KILN_INT8 ? -128 : 0, t == KILN_INT8 ? 127 : 255));
                put_int(t, b, i, th_rand_int(t == KILN_INT8 ? -128 : 0, t == KILN_INT8 ? 127 : 255));
            }
        }
        kiln_network *net = net_new();
        kiln_tensor *ta = kiln_network_add_input(net, "a", t, mk(2, d));
        kiln_tensor *tb = kiln_network_add_input(net, "b", t, mk(2, d));
        kiln_layer *l1 = kiln_network_add_elementwise(net, ta, tb, KILN_ELT_SUB);
        kiln_layer *l2 = l1 ? kiln_network_add_elementwise(net, kiln_layer_output(l1, 0), kiln_layer_output(l1, 0),
                                                           KILN_ELT_MUL)
                            : NULL;
        kiln_layer *l3 = l2 ? kiln_network_add_elementwise(net, kiln_layer_output(l2, 0), ta, KILN_ELT_MAX) : NULL;
        void *ip[2] = {a, b};
        char what[64];
        snprintf(what, sizeof what, "in-place chain %s", kiln_dtype_name(t));
        char *y = th_run_layer_for(B, t, net, l3, ip, NULL, what);
        if (y) {
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) {
                if (flt) {
                    double u = fround(t, th_fget(t, a, i) - th_fget(t, b, i));
                    u = fround(t, u * u);
                    double x = th_fget(t, a, i), r = u > x ? u : x;
                    bad += th_fget(t, y, i) != r;
                } else {
                    int64_t u = wrap_int(t, get_int(t, a, i) - get_int(t, b, i));
                    u = wrap_int(t, u * u);
                    int64_t x = get_int(t, a, i), r = u > x ? u : x;
                    bad += get_int(t, y, i) != r;
                }
            }
            CHECK(bad == 0, "%s: %lld of %lld wrong", what, (long long)bad, (long long)n);
        }
        free(y);
        free(a);
        free(b);
    }
}

static void test_binary_bool(void) {
    static const kiln_elementwise_op ops[] = {KILN_ELT_AND,  KILN_ELT_OR,      KILN_ELT_XOR,
                                              KILN_ELT_EQUAL, KILN_ELT_LESS,   KILN_ELT_GREATER_EQUAL};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (int p = 0; p < NPAIRS; p++)
            for (int rev = 0; rev < 2; rev++) {
                kiln_dims da = mk(pairs[p].na, pairs[p].a), db = mk(pairs[p].nb, pairs[p].b);
                if (rev) {
                    kiln_dims tmp = da;
                    da = db;
                    db = tmp;
                }
                int64_t na = kiln_dims_volume(&da), nb = kiln_dims_volume(&db);
                uint8_t *a = malloc((size_t)na), *b = malloc((size_t)nb);
                for (int64_t i = 0; i < na; i++) a[i] = (uint8_t)(th_rand_u64() & 1);
                for (int64_t i = 0; i < nb; i++) b[i] = (uint8_t)(th_rand_u64() & 1);
                char what[192], s1[64], s2[64];
                snprintf(what, sizeof what, "bool op %d: %s with %s", (int)ops[o], dstr(&da, s1, sizeof s1),
                         dstr(&db, s2, sizeof s2));
                run_int_binary(KILN_BOOL, ops[o], da, db, a, b, what);
                free(a);
                free(b);
            }
}

/* ---- select ---- */

static void test_select(void) {
    static const struct {
        int nc, na, nb;
        int64_t c[4], a[4], b[4];
    } cases[] = {
        {4, 3, 1, {2, 3, 1, 5}, {3, 4, 1}, {1}},
        {4, 4, 4, {2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}},
        {1, 4, 2, {5}, {2, 1, 4, 1}, {4, 5}},
        {0, 2, 2, {0}, {33, 1000}, {33, 1000}},
        {2, 2, 0, {33, 1000}, {1, 1000}, {0}},
    };
    static const kiln_dtype types[3] = {KILN_FLOAT32, KILN_INT64, KILN_BOOL};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int ti = 0; ti < 3; ti++) {
            kiln_dtype t = types[ti];
            size_t es = t == KILN_FLOAT32 ? 4 : t == KILN_INT64 ? 8 : 1;
            kiln_dims dc = mk(cases[k].nc, cases[k].c), da = mk(cases[k].na, cases[k].a), db = mk(cases[k].nb, cases[k].b);
            kiln_dims dab = bshape(&da, &db), want = bshape(&dc, &dab);
            int64_t nc = kiln_dims_volume(&dc), na = kiln_dims_volume(&da), nb = kiln_dims_volume(&db);
            int64_t n = kiln_dims_volume(&want);
            uint8_t *c = malloc((size_t)nc);
            char *a = malloc((size_t)na * es), *b = malloc((size_t)nb * es);
            for (int64_t i = 0; i < nc; i++) c[i] = (uint8_t)(th_rand_u64() & 1);
            if (nc == 1) c[0] = 1;
            for (int64_t i = 0; i < na; i++) {
                if (t == KILN_FLOAT32) ((float *)a)[i] = (float)th_uniform(1, 2);
                else if (t == KILN_INT64) ((int64_t *)a)[i] = th_rand_int(1, 1000000000000LL);
                else a[i] = 1;
            }
            for (int64_t i = 0; i < nb; i++) {
                if (t == KILN_FLOAT32) ((float *)b)[i] = (float)th_uniform(-2, -1);
                else if (t == KILN_INT64) ((int64_t *)b)[i] = -th_rand_int(1, 1000000000000LL);
                else b[i] = 0;
            }
            kiln_network *net = net_new();
            kiln_tensor *tc = kiln_network_add_input(net, "c", KILN_BOOL, dc);
            kiln_tensor *ta = kiln_network_add_input(net, "a", t, da);
            kiln_tensor *tb = kiln_network_add_input(net, "b", t, db);
            void *ip[3] = {c, a, b};
            kiln_dims od;
            char what[64];
            snprintf(what, sizeof what, "select case %d %s", (int)k, kiln_dtype_name(t));
            char *y = run_layer(net, kiln_network_add_select(net, tc, ta, tb), ip, &od, what);
            if (y) {
                CHECK(dims_same(&od, &want), "%s: dims", what);
                int64_t bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    const char *src = c[bidx(&want, &dc, i)] ? a + bidx(&want, &da, i) * (int64_t)es
                                                             : b + bidx(&want, &db, i) * (int64_t)es;
                    bad += memcmp(y + i * (int64_t)es, src, es) != 0;
                }
                CHECK(bad == 0, "%s: %lld of %lld wrong", what, (long long)bad, (long long)n);
            }
            free(y);
            free(c);
            free(a);
            free(b);
        }
}

/* ---- prelu ---- */

static void test_prelu(void) {
    static const struct {
        int nx, ns;
        int64_t x[4], s[4];
    } cases[] = {
        {4, 3, {2, 3, 4, 5}, {3, 1, 1}}, {4, 1, {2, 3, 4, 5}, {5}}, {4, 0, {2, 3, 4, 5}, {0}},
        {4, 4, {2, 3, 4, 5}, {2, 3, 4, 5}}, {4, 4, {2, 16, 30, 31}, {1, 16, 1, 1}}, {2, 1, {300, 64}, {64}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kiln_dims dx = mk(cases[k].nx, cases[k].x), ds = mk(cases[k].ns, cases[k].s);
        int64_t n = kiln_dims_volume(&dx), ns = kiln_dims_volume(&ds);
        float *x = th_rand_array(n, -3, 3), *s = th_rand_array(ns, 0.05f, 0.9f);
        kiln_network *net = net_new();
        kiln_tensor *tx = kiln_network_add_input(net, "x", KILN_FLOAT32, dx);
        kiln_tensor *ts = kiln_network_add_input(net, "slope", KILN_FLOAT32, ds);
        void *ip[2] = {x, s};
        kiln_dims od;
        char what[64];
        snprintf(what, sizeof what, "prelu case %d", (int)k);
        float *y = run_layer(net, kiln_network_add_prelu(net, tx, ts), ip, &od, what);
        if (y) {
            CHECK(dims_same(&od, &dx), "%s: dims", what);
            double *ref = malloc((size_t)n * sizeof(double));
            for (int64_t i = 0; i < n; i++) ref[i] = x[i] >= 0 ? x[i] : (double)x[i] * s[bidx(&dx, &ds, i)];
            th_check_close(what, y, ref, n, 1e-5);
            free(ref);
        }
        free(y);
        free(x);
        free(s);
    }
}

/* ---- worker counts ----
 * The same layers split 1, 3, 5 and 8 ways: chunks start and end inside broadcast rows. */
static void test_threads(void) {
    static const int counts[4] = {1, 3, 5, 8};
    int64_t d3[3] = {3, 7, 1001}, d71[2] = {7, 1}, n = 3 * 7 * 1001;
    float *a = th_rand_array(n, -3, 3), *b = th_rand_array(7, -3, 3), *y = malloc((size_t)n * sizeof(float));
    float s = 0.75f;
    uint8_t *c = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) c[i] = (uint8_t)(th_rand_u64() & 1);
    double *ref = malloc((size_t)n * sizeof(double));
    for (int t = 0; t < 4; t++)
        for (int kind = 0; kind < 4; kind++) {
            kiln_network *net = net_new();
            kiln_tensor *ta = kiln_network_add_input(net, "a", KILN_FLOAT32, mk(3, d3));
            kiln_layer *l = NULL;
            void *ip[3] = {a, b, NULL};
            const char *what = "";
            if (kind == 0) {
                kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, mk(2, d71));
                l = kiln_network_add_elementwise(net, ta, tb, KILN_ELT_SUB);
                what = "threads: [3,7,1001] - [7,1]";
                for (int64_t i = 0; i < n; i++) ref[i] = (double)a[i] - b[(i / 1001) % 7];
            } else if (kind == 1) {
                l = kiln_network_add_activation(net, ta, KILN_ACT_SIGMOID, 0, 0);
                what = "threads: sigmoid";
                for (int64_t i = 0; i < n; i++) ref[i] = 1 / (1 + exp(-(double)a[i]));
            } else if (kind == 2) {
                kiln_tensor *tc = kiln_network_add_input(net, "c", KILN_BOOL, mk(3, d3));
                kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, mk(2, d71));
                kiln_tensor *ts = kiln_network_add_input(net, "s", KILN_FLOAT32, mk(0, NULL));
                /* inputs bind in network order: a, c, b, s */
                l = kiln_network_add_select(net, tc, tb, ts);
                ip[0] = a;
                ip[1] = c;
                ip[2] = b;
                what = "threads: select(c, [7,1], scalar)";
                for (int64_t i = 0; i < n; i++) ref[i] = c[i] ? b[(i / 1001) % 7] : s;
            } else {
                kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, mk(2, d71));
                l = kiln_network_add_prelu(net, ta, tb);
                what = "threads: prelu [7,1]";
                for (int64_t i = 0; i < n; i++) ref[i] = a[i] >= 0 ? a[i] : (double)a[i] * b[(i / 1001) % 7];
            }
            void *ip4[4] = {a, c, b, &s};
            CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
            if (l) {
                kiln_network_mark_output(net, kiln_layer_output(l, 0));
                memset(y, 0xFF, (size_t)n * sizeof(float));
                kiln_status st = run_threads(net, counts[t], kind == 2 ? ip4 : ip, y);
                CHECK(st == KILN_OK, "%s with %d threads: %s", what, counts[t], kiln_last_error());
                if (st == KILN_OK) th_check_close(what, y, ref, n, 1e-5);
            }
            kiln_network_destroy(net);
        }
    free(a);
    free(b);
    free(c);
    free(y);
    free(ref);
}

/* ---- in-place chains ----
 * Each intermediate dies at its consumer, so the memory planner may hand the consumer its
 * input buffer as output: the kernels must then read each element before writing it. */
static void test_inplace_chain(void) {
    const int64_t rows = 37, cols = 1001, n = rows * cols;
    int64_t d[2] = {rows, cols};
    float *x = th_rand_array(n, -2, 2), *c = th_rand_array(cols, -1, 1), *slope = th_rand_array(cols, 0.1f, 0.5f);
    float shift = 0.25f, scl = -1.5f;
    kiln_network *net = net_new();
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, mk(2, d));
    kiln_layer *cl = kiln_network_add_constant(net, mk(1, &cols), (kiln_weights){KILN_FLOAT32, c, cols});
    kiln_layer *sl = kiln_network_add_constant(net, mk(1, &cols), (kiln_weights){KILN_FLOAT32, slope, cols});
    /* the first layer reads the network input, so it cannot run in place; every later one can */
    kiln_layer *l1 = kiln_network_add_activation(net, in, KILN_ACT_TANH, 0, 0);
    kiln_layer *l2 = l1 ? kiln_network_add_unary(net, kiln_layer_output(l1, 0), KILN_UNARY_NEG) : NULL;
    kiln_layer *l3 = l2 && cl ? kiln_network_add_elementwise(net, kiln_layer_output(l2, 0), kiln_layer_output(cl, 0),
                                                             KILN_ELT_ADD)
                              : NULL;
    kiln_layer *l4 = l3 ? kiln_network_add_scale(net, kiln_layer_output(l3, 0), KILN_SCALE_UNIFORM,
                                                 (kiln_weights){KILN_FLOAT32, &shift, 1},
                                                 (kiln_weights){KILN_FLOAT32, &scl, 1}, (kiln_weights){KILN_FLOAT32, NULL, 0})
                        : NULL;
    kiln_layer *l5 = l4 && sl ? kiln_network_add_prelu(net, kiln_layer_output(l4, 0), kiln_layer_output(sl, 0)) : NULL;
    /* x * x of an intermediate: both operands are the buffer that may become the output */
    kiln_layer *l6 = l5 ? kiln_network_add_elementwise(net, kiln_layer_output(l5, 0), kiln_layer_output(l5, 0),
                                                       KILN_ELT_MUL)
                        : NULL;
    /* the network input is used again here, so it must not have been overwritten */
    kiln_layer *l7 = l6 ? kiln_network_add_elementwise(net, kiln_layer_output(l6, 0), in, KILN_ELT_SUB) : NULL;
    /* built by hand to see the plan: one arena buffer serves the whole chain when the
     * point-wise layers run in place, where separate buffers would need two */
    CHECK(l7 != NULL, "in-place chain: add failed: %s", kiln_last_error());
    float *y = l7 ? malloc((size_t)n * sizeof(float)) : NULL;
    kiln_config *cfg = NULL;
    kiln_engine *eng = NULL;
    kiln_context *ctx = NULL;
    if (l7) {
        kiln_tensor *out = kiln_layer_output(l7, 0);
        CHECK_OK(kiln_network_mark_output(net, out));
        kiln_status st = kiln_config_create(B, &cfg);
        if (st == KILN_OK) st = kiln_builder_build(B, net, cfg, &eng);
        if (st == KILN_OK) {
            size_t act = kiln_engine_activation_bytes(eng);
            CHECK(act < 2 * (size_t)n * sizeof(float), "in-place chain: %zu bytes of activations, expected one buffer of %zu",
                  act, (size_t)n * sizeof(float));
            st = kiln_context_create(eng, &ctx);
        }
        if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, "x", x);
        if (st == KILN_OK) st = kiln_context_set_tensor_address(ctx, kiln_tensor_name(out), y);
        if (st == KILN_OK) st = kiln_context_execute(ctx);
        CHECK(st == KILN_OK, "in-place chain: %s", kiln_last_error());
        if (st != KILN_OK) {
            free(y);
            y = NULL;
        }
    }
    kiln_context_destroy(ctx);
    kiln_engine_destroy(eng);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    if (y) {
        double *ref = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            int64_t j = i % cols;
            double v = -tanh((double)x[i]) + c[j];
            v = v * scl + shift;
            v = v >= 0 ? v : v * slope[j];
            ref[i] = v * v - x[i];
        }
        th_check_close("in-place chain", y, ref, n, 1e-5);
        free(ref);
    }
    free(y);
    free(x);
    free(c);
    free(slope);
}

/* ---- errors ---- */

static void test_errors(void) {
    int64_t d4[4] = {2, 3, 4, 5}, d2[2] = {2, 3}, d1 = 4, dbad[4] = {2, 3, 4, 6};
    kiln_network *net = net_new();
    kiln_tensor *f = kiln_network_add_input(net, "f", KILN_FLOAT32, mk(4, d4));
    kiln_tensor *f2 = kiln_network_add_input(net, "f2", KILN_FLOAT32, mk(2, d2));
    kiln_tensor *f1 = kiln_network_add_input(net, "f1", KILN_FLOAT32, mk(1, &d1));
    kiln_tensor *fb = kiln_network_add_input(net, "fbad", KILN_FLOAT32, mk(4, dbad));
    kiln_tensor *i = kiln_network_add_input(net, "i", KILN_INT32, mk(4, d4));
    kiln_tensor *bo = kiln_network_add_input(net, "bo", KILN_BOOL, mk(4, d4));
    int before = kiln_network_num_layers(net);

    expect_fail(kiln_network_add_elementwise(net, f, i, KILN_ELT_ADD), "float + int", "Elementwise", "dtype");
    expect_fail(kiln_network_add_elementwise(net, f2, f1, KILN_ELT_MUL), "[2,3] * [4]", "Elementwise", "broadcast");
    expect_fail(kiln_network_add_elementwise(net, f, fb, KILN_ELT_SUB), "[2,3,4,5] - [2,3,4,6]", "Elementwise",
                "broadcast");
    expect_fail(kiln_network_add_elementwise(net, f, f, KILN_ELT_AND), "and on float", "Elementwise", "bool");
    expect_fail(kiln_network_add_elementwise(net, bo, bo, KILN_ELT_ADD), "add on bool", "Elementwise", "bool");
    expect_fail(kiln_network_add_elementwise(net, f, f, (kiln_elementwise_op)99), "op 99", "Elementwise", "unknown");
    expect_fail(kiln_network_add_unary(net, f, KILN_UNARY_NOT), "not on float", "Unary", "bool");
    expect_fail(kiln_network_add_unary(net, i, KILN_UNARY_SQRT), "sqrt on int32", "Unary", "int32");
    expect_fail(kiln_network_add_unary(net, bo, KILN_UNARY_ABS), "abs on bool", "Unary", "bool");
    expect_fail(kiln_network_add_unary(net, f, (kiln_unary_op)-1), "unary op -1", "Unary", "unknown");
    expect_fail(kiln_network_add_activation(net, i, KILN_ACT_RELU, 0, 0), "relu on int32", "Activation", "int32");
    expect_fail(kiln_network_add_activation(net, f, (kiln_activation_type)KILN_ACT_COUNT, 0, 0), "activation 16",
                "Activation", "unknown");
    expect_fail(kiln_network_add_select(net, f, f, f), "select on a float condition", "Select", "bool");
    expect_fail(kiln_network_add_select(net, bo, f, i), "select float / int", "Select", "dtype");
    expect_fail(kiln_network_add_select(net, bo, f, fb), "select shapes", "Select", "broadcast");
    expect_fail(kiln_network_add_prelu(net, f, f2), "prelu slope [2,3]", "PRelu", "broadcast");
    expect_fail(kiln_network_add_prelu(net, f1, f2), "prelu slope larger than input", "PRelu", "broadcast");
    expect_fail(kiln_network_add_prelu(net, f, i), "prelu int slope", "PRelu", "int32");
    CHECK(kiln_network_num_layers(net) == before, "failed adds left %d layers behind",
          kiln_network_num_layers(net) - before);
    kiln_network_destroy(net);
}

int main(void) {
    B = th_builder();
    test_activations();
    test_unary_float();
    test_unary_int_bool();
    test_binary_float();
    test_binary_int();
    test_binary_float_types();
    test_binary_int8();
    test_binary_bool();
    test_select();
    test_prelu();
    test_threads();
    test_inplace_chain();
    test_inplace_types();
    test_errors();
    kiln_builder_destroy(B);
    return th_exit("test_ops_pointwise");
}
