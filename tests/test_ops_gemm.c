/* kiln tests: MatMul (numpy semantics: ranks 1..4, batch broadcasting, vector operands),
 * Gemm (transposes, alpha/beta, C broadcast shapes, constant operands) and fully connected
 * layers against float64 references, plus the errors the add calls must report. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

static bool dims_eq(kiln_dims a, kiln_dims b) {
    if (a.nb_dims != b.nb_dims) return false;
    for (int i = 0; i < a.nb_dims; i++)
        if (a.d[i] != b.d[i]) return false;
    return true;
}

static const char *dstr(kiln_dims d, char *buf) {
    char *p = buf;
    p += sprintf(p, "[");
    for (int i = 0; i < d.nb_dims; i++) p += sprintf(p, "%s%lld", i ? "," : "", (long long)d.d[i]);
    sprintf(p, "]");
    return buf;
}

/* numpy matmul, written from the definition: promote 1-D operands, broadcast the batch
 * axes index by index, drop the promoted axes from the result. */
static kiln_dims ref_matmul(kiln_dims a, kiln_dims b, const float *x, const float *y, double *out) {
    kiln_dims pa = a, pb = b;
    if (a.nb_dims == 1) pa = kiln_dims_make(2, (int64_t[]){1, a.d[0]});
    if (b.nb_dims == 1) pb = kiln_dims_make(2, (int64_t[]){b.d[0], 1});
    int rank = pa.nb_dims > pb.nb_dims ? pa.nb_dims : pb.nb_dims;
    int64_t ea[KILN_MAX_DIMS] = {0}, eb[KILN_MAX_DIMS] = {0}, eo[KILN_MAX_DIMS] = {0};
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - pa.nb_dims), ib = i - (rank - pb.nb_dims);
        ea[i] = ia >= 0 ? pa.d[ia] : 1;
        eb[i] = ib >= 0 ? pb.d[ib] : 1;
        eo[i] = ea[i] > eb[i] ? ea[i] : eb[i];
    }
    int64_t m = ea[rank - 2], k = ea[rank - 1], n = eb[rank - 1];
    eo[rank - 2] = m;
    eo[rank - 1] = n;
    int64_t total = 1;
    for (int i = 0; i < rank; i++) total *= eo[i];
    for (int64_t t = 0; t < total; t++) {
        int64_t idx[KILN_MAX_DIMS], r = t;
        for (int i = rank - 1; i >= 0; i--) {
            idx[i] = r % eo[i];
            r /= eo[i];
        }
        int64_t i_m = idx[rank - 2], i_n = idx[rank - 1];
        double acc = 0;
        for (int64_t kk = 0; kk < k; kk++) {
            int64_t oa = 0, ob = 0;
            for (int i = 0; i < rank; i++) {
                int64_t va = i == rank - 2 ? i_m : i == rank - 1 ? kk : (ea[i] == 1 ? 0 : idx[i]);
                int64_t vb = i == rank - 2 ? kk : i == rank - 1 ? i_n : (eb[i] == 1 ? 0 : idx[i]);
                oa = oa * ea[i] + va;
                ob = ob * eb[i] + vb;
            }
            acc += (double)x[oa] * (double)y[ob];
        }
        out[t] = acc;
    }
    kiln_dims od = {.nb_dims = 0};
    for (int i = 0; i < rank - 2; i++) od.d[od.nb_dims++] = eo[i];
    if (a.nb_dims > 1) od.d[od.nb_dims++] = m;
    if (b.nb_dims > 1) od.d[od.nb_dims++] = n;
    return od;
}

static void matmul_case(kiln_builder *b, kiln_dims da, kiln_dims db) {
    char what[160], s1[64], s2[64];
    snprintf(what, sizeof what, "matmul %s x %s", dstr(da, s1), dstr(db, s2));
    int64_t na = kiln_dims_volume(&da), nb = kiln_dims_volume(&db);
    float *x = th_rand_array(na, -1, 1), *y = th_rand_array(nb, -1, 1);
    double *ref = malloc(4096 * 8 * sizeof(double));
    kiln_dims want = ref_matmul(da, db, x, y, ref);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *ta = kiln_network_add_input(net, "a", KILN_FLOAT32, da);
    kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, db);
    kiln_layer *l = kiln_network_add_matmul(net, ta, tb);
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (l) {
        kiln_dims od = kiln_tensor_dims(kiln_layer_output(l, 0));
        CHECK(dims_eq(od, want), "%s: inferred %s, expected %s", what, dstr(od, s1), dstr(want, s2));
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
        void *inputs[2] = {x, y}, *outputs[1] = {NULL};
        kiln_status st = th_run(b, net, inputs, outputs, NULL);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st == KILN_OK) th_check_close(what, outputs[0], ref, kiln_dims_volume(&want), 1e-5);
        free(outputs[0]);
    }
    kiln_network_destroy(net);
    free(x);
    free(y);
    free(ref);
}

#define D(...) kiln_dims_make((int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static void matmul_sweep(kiln_builder *b) {
    matmul_case(b, D(7), D(7));                      /* dot product: a scalar */
    matmul_case(b, D(5), D(5, 9));                   /* vector x matrix */
    matmul_case(b, D(6, 5), D(5));                   /* matrix x vector */
    matmul_case(b, D(6, 5), D(5, 9));
    matmul_case(b, D(1, 13), D(13, 11));             /* one row */
    matmul_case(b, D(11, 13), D(13, 1));             /* one column */
    matmul_case(b, D(3, 6, 5), D(5, 9));             /* shared B: one GEMM over the batch */
    matmul_case(b, D(6, 5), D(3, 5, 9));             /* shared A */
    matmul_case(b, D(3, 6, 5), D(3, 5, 9));
    matmul_case(b, D(3, 6, 5), D(1, 5, 9));
    matmul_case(b, D(2, 1, 6, 5), D(3, 5, 4));       /* rank 4 x rank 3 broadcasting */
    matmul_case(b, D(1, 3, 6, 5), D(2, 1, 5, 4));
    matmul_case(b, D(2, 3, 1, 5), D(2, 3, 5, 7));    /* batched rows: gemv per item */
    matmul_case(b, D(5), D(2, 3, 5, 7));             /* vector x batched matrices */
    matmul_case(b, D(2, 3, 6, 5), D(5));             /* batched matrices x vector */
    matmul_case(b, D(4, 1, 2, 3), D(1, 5, 3, 2));
}

/* out = alpha * op(A) op(B) + beta * C, C broadcast (numpy) to [m, n]. */
static void ref_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta, const float *a,
                     const float *bm, const float *c, kiln_dims dc, double *out) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t t = 0; t < k; t++)
                acc += (double)(ta ? a[t * m + i] : a[i * k + t]) * (double)(tb ? bm[j * k + t] : bm[t * n + j]);
            double cv = 0;
            if (c) {
                int64_t ci = 0;
                if (dc.nb_dims == 1) ci = dc.d[0] == 1 ? 0 : j;
                if (dc.nb_dims == 2) ci = (dc.d[0] == 1 ? 0 : i) * dc.d[1] + (dc.d[1] == 1 ? 0 : j);
                cv = c[ci];
            }
            out[i * n + j] = (double)alpha * acc + (double)beta * cv;
        }
}

/* c_kind: 0 none, 1 scalar, 2 [n], 3 [1,n], 4 [m,1], 5 [m,n], 6 [1], 7 [1,1]. Constant
 * operands come from constant layers (as ONNX initializers do). */
static void gemm_case(kiln_builder *b, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                      int c_kind, bool b_const, bool c_const) {
    char what[200];
    snprintf(what, sizeof what, "gemm m%lld n%lld k%lld ta%d tb%d alpha %g beta %g C kind %d const B %d C %d",
             (long long)m, (long long)n, (long long)k, ta, tb, (double)alpha, (double)beta, c_kind, b_const, c_const);
    kiln_dims da = ta ? D(k, m) : D(m, k), db = tb ? D(n, k) : D(k, n);
    kiln_dims dcs[8] = {D(1), {.nb_dims = 0}, D(n), D(1, n), D(m, 1), D(m, n), D(1), D(1, 1)};
    kiln_dims dc = dcs[c_kind];
    float *a = th_rand_array(m * k, -1, 1), *bm = th_rand_array(k * n, -1, 1), *c = th_rand_array(m * n, -1, 1);
    double *ref = malloc((size_t)(m * n) * sizeof(double));
    ref_gemm(ta, tb, m, n, k, alpha, beta, a, bm, c_kind ? c : NULL, dc, ref);

    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    void *inputs[3];
    int nin = 0;
    kiln_tensor *xa = kiln_network_add_input(net, "a", KILN_FLOAT32, da);
    inputs[nin++] = a;
    kiln_tensor *xb = NULL, *xc = NULL;
    if (b_const) {
        kiln_layer *cl = kiln_network_add_constant(net, db, (kiln_weights){KILN_FLOAT32, bm, k * n});
        CHECK(cl != NULL, "%s: constant B: %s", what, kiln_last_error());
        xb = cl ? kiln_layer_output(cl, 0) : NULL;
    } else {
        xb = kiln_network_add_input(net, "b", KILN_FLOAT32, db);
        inputs[nin++] = bm;
    }
    if (c_kind) {
        if (c_const) {
            kiln_layer *cl = kiln_network_add_constant(net, dc, (kiln_weights){KILN_FLOAT32, c, kiln_dims_volume(&dc)});
            CHECK(cl != NULL, "%s: constant C: %s", what, kiln_last_error());
            xc = cl ? kiln_layer_output(cl, 0) : NULL;
        } else {
            xc = kiln_network_add_input(net, "c", KILN_FLOAT32, dc);
            inputs[nin++] = c;
        }
    }
    kiln_gemm_desc d = {ta, tb, alpha, beta};
    kiln_layer *l = xb && (xc || !c_kind) ? kiln_network_add_gemm(net, xa, xb, xc, &d) : NULL;
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (l) {
        CHECK(dims_eq(kiln_tensor_dims(kiln_layer_output(l, 0)), D(m, n)), "%s: wrong output dims", what);
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
        void *outputs[1] = {NULL};
        kiln_status st = th_run(b, net, inputs, outputs, NULL);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st == KILN_OK) th_check_close(what, outputs[0], ref, m * n, 1e-5);
        free(outputs[0]);
    }
    kiln_network_destroy(net);
    free(a);
    free(bm);
    free(c);
    free(ref);
}

static void gemm_sweep(kiln_builder *b) {
    int count = 0;
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++)
            for (int ck = 0; ck < 8; ck++) {
                float alpha = count % 3 == 0 ? 1.0f : count % 3 == 1 ? 0.75f : -1.5f;
                float beta = count % 4 == 0 ? 1.0f : count % 4 == 1 ? 2.5f : count % 4 == 2 ? -0.5f : 0.0f;
                gemm_case(b, ta, tb, 7, 9, 11, alpha, beta, ck, count % 5 == 1, count % 3 == 2);
                count++;
            }
    /* one row (batch-1 fully connected) and one column: the matrix-vector paths */
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++) {
            gemm_case(b, ta, tb, 1, 33, 17, 1.25f, 0.5f, 2, ta, false);
            gemm_case(b, ta, tb, 1, 33, 17, 1.0f, 1.0f, 0, false, false);
            gemm_case(b, ta, tb, 21, 1, 19, -0.5f, 2.0f, 4, false, tb);
            gemm_case(b, ta, tb, 21, 1, 19, 2.0f, 1.0f, 1, false, false);
        }
    /* bigger, with a constant B as a fully connected layer has */
    gemm_case(b, 0, 1, 64, 130, 257, 1.0f, 1.0f, 2, true, true);
}

static void fully_connected(kiln_builder *b, kiln_dims xd, int64_t out_features, bool bias) {
    char what[160], s1[64];
    snprintf(what, sizeof what, "fully connected %s -> %lld bias %d", dstr(xd, s1), (long long)out_features, bias);
    int64_t n = xd.d[0], k = kiln_dims_volume(&xd) / n;
    float *x = th_rand_array(n * k, -1, 1), *w = th_rand_array(out_features * k, -1, 1);
    float *bv = th_rand_array(out_features, -1, 1);
    double *ref = malloc((size_t)(n * out_features) * sizeof(double));
    kiln_dims bd = D(out_features);
    ref_gemm(0, 1, n, out_features, k, 1.0f, 1.0f, x, w, bias ? bv : NULL, bd, ref);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, xd);
    kiln_weights ww = {KILN_FLOAT32, w, out_features * k};
    kiln_weights bw = {KILN_FLOAT32, bias ? bv : NULL, bias ? out_features : 0};
    kiln_layer *l = kiln_network_add_fully_connected(net, in, out_features, ww, bw);
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (l) {
        CHECK(dims_eq(kiln_tensor_dims(kiln_layer_output(l, 0)), D(n, out_features)), "%s: wrong output dims",
              what);
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
        void *inputs[1] = {x}, *outputs[1] = {NULL};
        kiln_status st = th_run(b, net, inputs, outputs, NULL);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st == KILN_OK) th_check_close(what, outputs[0], ref, n * out_features, 1e-5);
        free(outputs[0]);
    }
    kiln_network_destroy(net);
    free(x);
    free(w);
    free(bv);
    free(ref);
}

static void check_error(const char *what, const void *layer, const char *type, const char *needle) {
    const char *err = kiln_last_error();
    CHECK(layer == NULL, "%s: add succeeded", what);
    CHECK(strstr(err, "layer '") && strstr(err, type), "%s: error does not name the layer: '%s'", what, err);
    CHECK(strstr(err, needle) != NULL, "%s: error '%s' does not mention '%s'", what, err, needle);
}

static void errors(kiln_builder *b) {
    struct {
        const char *what;
        kiln_dims a, b;
        kiln_dtype dt;
        const char *needle;
    } mm[] = {
        {"matmul inner dims", D(3, 4), D(5, 6), KILN_FLOAT32, "inner"},
        {"matmul vector inner dims", D(4), D(3), KILN_FLOAT32, "inner"},
        {"matmul batch", D(2, 3, 4), D(3, 4, 5), KILN_FLOAT32, "broadcast"},
        {"matmul scalar", {.nb_dims = 0}, D(3, 4), KILN_FLOAT32, "scalar"},
        {"matmul int32", D(3, 4), D(4, 5), KILN_INT32, "float32"},
    };
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        kiln_network *net = NULL;
        CHECK_OK(kiln_network_create(b, &net));
        kiln_tensor *ta = kiln_network_add_input(net, "a", mm[i].dt, mm[i].a);
        kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, mm[i].b);
        kiln_layer *l = kiln_network_add_matmul(net, ta, tb);
        check_error(mm[i].what, l, "MatMul", mm[i].needle);
        CHECK(kiln_network_num_layers(net) == 0, "%s: the failed layer was kept", mm[i].what);
        kiln_network_destroy(net);
    }
    struct {
        const char *what;
        kiln_dims a, b, c;
        int ta, tb;
        kiln_dtype dt;
        const char *needle;
    } gm[] = {
        {"gemm inner dims", D(3, 4), D(5, 6), D(6), 0, 0, KILN_FLOAT32, "inner"},
        {"gemm inner dims transposed", D(3, 4), D(4, 5), D(5), 1, 0, KILN_FLOAT32, "inner"},
        {"gemm rank-3 A", D(2, 3, 4), D(4, 5), D(5), 0, 0, KILN_FLOAT32, "matrix"},
        {"gemm C rows", D(3, 4), D(4, 5), D(2, 5), 0, 0, KILN_FLOAT32, "broadcast"},
        {"gemm C cols", D(3, 4), D(4, 5), D(4), 0, 0, KILN_FLOAT32, "broadcast"},
        {"gemm C rank 3", D(3, 4), D(4, 5), D(1, 3, 5), 0, 0, KILN_FLOAT32, "broadcast"},
        {"gemm float16 C", D(3, 4), D(4, 5), D(5), 0, 0, KILN_FLOAT16, "float32"},
    };
    for (size_t i = 0; i < sizeof gm / sizeof gm[0]; i++) {
        kiln_network *net = NULL;
        CHECK_OK(kiln_network_create(b, &net));
        kiln_tensor *ta = kiln_network_add_input(net, "a", KILN_FLOAT32, gm[i].a);
        kiln_tensor *tb = kiln_network_add_input(net, "b", KILN_FLOAT32, gm[i].b);
        kiln_tensor *tc = kiln_network_add_input(net, "c", gm[i].dt, gm[i].c);
        kiln_gemm_desc d = {gm[i].ta, gm[i].tb, 1.0f, 1.0f};
        kiln_layer *l = kiln_network_add_gemm(net, ta, tb, tc, &d);
        check_error(gm[i].what, l, "Gemm", gm[i].needle);
        CHECK(kiln_network_num_layers(net) == 0, "%s: the failed layer was kept", gm[i].what);
        kiln_network_destroy(net);
    }
}

int main(void) {
    kiln_builder *b = th_builder();
    matmul_sweep(b);
    gemm_sweep(b);
    fully_connected(b, D(3, 20), 7, true);
    fully_connected(b, D(1, 2048), 100, true);
    fully_connected(b, D(2, 4, 3, 3), 5, false);
    errors(b);
    kiln_builder_destroy(b);
    return th_exit("test_ops_gemm");
}
