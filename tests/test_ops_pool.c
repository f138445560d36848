/* kiln tests: max and average pooling against float64 references (kernel sizes, strides,
 * asymmetric pads, dilations, ceil_mode, count_include_pad, global, rank 3), on float32 and
 * on float16, float64, int8 and uint8 (CPU kernels), the ONNX reference examples for
 * ceil_mode, and the errors the add call must report. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

typedef struct pool_case {
    kiln_pool_type type;
    int global, ceil, include_pad;
    int64_t n, c, h, w; /* h = 0: rank-3 NCW input */
    int64_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} pool_case;

/* ONNX output size; in ceil mode the last window must start inside the input or the left pad. */
static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe, int ceil_mode) {
    int64_t span = (k - 1) * d + 1, room = in + pb + pe - span;
    int64_t o = (ceil_mode ? (room + s - 1) / s : room / s) + 1;
    if (ceil_mode && (o - 1) * s >= in + pb) o--;
    return o;
}

static void ref_pool(const pool_case *t, int64_t h, int64_t oh, int64_t ow, const double *x, double *y) {
    for (int64_t p = 0; p < t->n * t->c; p++) {
        const double *xs = x + p * h * t->w;
        for (int64_t a = 0; a < oh; a++)
            for (int64_t b = 0; b < ow; b++) {
                double mx = -INFINITY, sum = 0;
                int64_t valid = 0, padded = 0;
                for (int64_t i = 0; i < t->kh; i++)
                    for (int64_t j = 0; j < t->kw; j++) {
                        int64_t ih = a * t->sh - t->pt + i * t->dh, iw = b * t->sw - t->pl + j * t->dw;
                        if (ih >= -t->pt && ih < h + t->pb && iw >= -t->pl && iw < t->w + t->pr) padded++;
                        if (ih < 0 || ih >= h || iw < 0 || iw >= t->w) continue;
                        double v = xs[ih * t->w + iw];
                        mx = v > mx ? v : mx;
                        sum += v;
                        valid++;
                    }
                y[(p * oh + a) * ow + b] = t->type == KILN_POOL_MAX ? mx : sum / (double)(t->include_pad ? padded : valid);
            }
    }
}

static void ref_global(const pool_case *t, int64_t h, const double *x, double *y) {
    for (int64_t p = 0; p < t->n * t->c; p++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < h * t->w; i++) {
            double v = x[p * h * t->w + i];
            mx = v > mx ? v : mx;
            sum += v;
        }
        y[p] = t->type == KILN_POOL_MAX ? mx : sum / (double)(h * t->w);
    }
}

static kiln_pool_desc make_desc(const pool_case *t) {
    kiln_pool_desc d;
    memset(&d, 0, sizeof d);
    d.type = t->type;
    d.global = t->global;
    d.kernel[0] = t->h ? t->kh : 1;
    d.kernel[1] = t->kw;
    d.stride[0] = t->h ? t->sh : 1;
    d.stride[1] = t->sw;
    d.dilation[0] = t->h ? t->dh : 1;
    d.dilation[1] = t->dw;
    d.pad_begin[0] = t->pt;
    d.pad_begin[1] = t->pl;
    d.pad_end[0] = t->pb;
    d.pad_end[1] = t->pr;
    d.count_include_pad = t->include_pad;
    d.ceil_mode = t->ceil;
    return d;
}

/* Builds, runs and compares one case. x may be given (fixed examples); ref may be given too. */
static void run_case(kiln_builder *b, const pool_case *t, const float *xin, const double *ref_in) {
    char what[256];
    snprintf(what, sizeof what,
             "%s%s n%lld c%lld %lldx%lld kernel %lldx%lld stride %lld,%lld dil %lld,%lld pads %lld,%lld,%lld,%lld "
             "ceil %d include_pad %d",
             t->global ? "global " : "", t->type == KILN_POOL_MAX ? "max" : "avg", (long long)t->n, (long long)t->c,
             (long long)t->h, (long long)t->w, (long long)t->kh, (long long)t->kw, (long long)t->sh,
             (long long)t->sw, (long long)t->dh, (long long)t->dw, (long long)t->pt, (long long)t->pl,
             (long long)t->pb, (long long)t->pr, t->ceil, t->include_pad);
    bool r3 = t->h == 0;
    int64_t h = r3 ? 1 : t->h;
    int64_t oh = t->global ? 1 : pool_out(h, t->kh, t->sh, t->dh, t->pt, t->pb, t->ceil);
    int64_t ow = t->global ? 1 : pool_out(t->w, t->kw, t->sw, t->dw, t->pl, t->pr, t->ceil);
    int64_t xn = t->n * t->c * h * t->w, yn = t->n * t->c * oh * ow;
    float *x = th_rand_array(xn, -1, 1);
    if (xin) memcpy(x, xin, (size_t)xn * sizeof(float));
    double *ref = malloc((size_t)yn * sizeof(double)), *xd64 = malloc((size_t)xn * sizeof(double));
    for (int64_t i = 0; i < xn; i++) xd64[i] = x[i];
    if (ref_in) memcpy(ref, ref_in, (size_t)yn * sizeof(double));
    else if (t->global) ref_global(t, h, xd64, ref);
    else ref_pool(t, h, oh, ow, xd64, ref);
    free(xd64);

    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_dims xd = r3 ? kiln_dims_make(3, (int64_t[]){t->n, t->c, t->w})
                      : kiln_dims_make(4, (int64_t[]){t->n, t->c, t->h, t->w});
    kiln_tensor *in = kiln_network_add_input(net, "x", KILN_FLOAT32, xd);
    kiln_pool_desc d = make_desc(t);
    kiln_layer *l = kiln_network_add_pooling(net, in, &d);
    kiln_dims want = r3 ? kiln_dims_make(3, (int64_t[]){t->n, t->c, ow}) : kiln_dims_make(4, (int64_t[]){t->n, t->c, oh, ow});
    th_check_layer(b, net, l, want, x, ref, yn, 1e-5, what);
    kiln_network_destroy(net);
    free(x);
    free(ref);
}

static void pool_sweep(kiln_builder *b) {
    static const int64_t kernels[] = {1, 2, 3, 5};
    int count = 0;
    for (int ki = 0; ki < 4; ki++)
        for (int64_t s = 1; s <= 3; s++)
            for (int ceil_mode = 0; ceil_mode <= 1; ceil_mode++)
                for (int kind = 0; kind < 3; kind++) {
                    pool_case t;
                    memset(&t, 0, sizeof t);
                    t.type = kind == 0 ? KILN_POOL_MAX : KILN_POOL_AVERAGE;
                    t.include_pad = kind == 2;
                    t.ceil = ceil_mode;
                    t.kh = kernels[ki];
                    t.kw = kernels[(ki + count) % 4];
                    t.sh = s;
                    t.sw = count % 2 ? s : (s % 3) + 1;
                    t.dh = count % 3 == 1 ? 2 : 1;
                    t.dw = count % 4 == 2 ? 2 : 1;
                    t.n = count % 2 ? 3 : 1;
                    t.c = 3;
                    int64_t spanh = (t.kh - 1) * t.dh + 1, spanw = (t.kw - 1) * t.dw + 1;
                    t.pt = th_rand_int(0, spanh - 1);
                    t.pb = th_rand_int(0, spanh - 1);
                    t.pl = th_rand_int(0, spanw - 1);
                    t.pr = th_rand_int(0, spanw - 1);
                    t.h = (spanh + th_rand_int(0, 8)) | 1;
                    t.w = spanw + th_rand_int(0, 9);
                    run_case(b, &t, NULL, NULL);
                    count++;
                }
    /* ResNet's max pool: 3x3 stride 2 pad 1, ceil off and on, even input */
    pool_case r = {.type = KILN_POOL_MAX, .n = 1, .c = 8, .h = 112, .w = 112, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
                   .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    run_case(b, &r, NULL, NULL);
    r.ceil = 1;
    r.h = r.w = 113;
    run_case(b, &r, NULL, NULL);
    /* rank-3 (1-D) pooling */
    pool_case r3 = {.type = KILN_POOL_AVERAGE, .n = 2, .c = 3, .h = 0, .w = 17, .kh = 1, .kw = 4, .sh = 1, .sw = 3,
                    .dh = 1, .dw = 1, .pl = 2, .pr = 1, .ceil = 1, .include_pad = 1};
    run_case(b, &r3, NULL, NULL);
    r3.type = KILN_POOL_MAX;
    r3.dw = 2;
    run_case(b, &r3, NULL, NULL);
    /* a dilated window whose taps all fall in the padding: max gives -inf, an average that
     * counts the padding gives 0 */
    pool_case hole = {.type = KILN_POOL_MAX, .n = 1, .c = 2, .h = 1, .w = 5, .kh = 2, .kw = 1, .sh = 1, .sw = 1,
                      .dh = 2, .dw = 1, .pt = 1, .pb = 1};
    run_case(b, &hole, NULL, NULL);
    hole.type = KILN_POOL_AVERAGE;
    hole.include_pad = 1;
    run_case(b, &hole, NULL, NULL);
    /* rows wider than the separable path's buffer: pooled window by window */
    for (int type = 0; type <= 1; type++) {
        pool_case wide = {.type = (kiln_pool_type)type, .n = 1, .c = 2, .h = 3, .w = 4200, .kh = 2, .kw = 5,
                          .sh = 1, .sw = 3, .dh = 2, .dw = 1, .pt = 1, .pl = 2, .pr = 4, .ceil = 1};
        run_case(b, &wide, NULL, NULL);
    }
}

static void pool_global(kiln_builder *b) {
    for (int type = 0; type <= 1; type++) {
        pool_case t = {.type = (kiln_pool_type)type, .global = 1, .n = 3, .c = 5, .h = 7, .w = 7};
        run_case(b, &t, NULL, NULL);
        t.h = 57;
        t.w = 55;
        t.n = 1;
        /* kernel/stride/pads are ignored for global pooling */
        t.kh = 99;
        t.pt = 5;
        run_case(b, &t, NULL, NULL);
        pool_case t3 = {.type = (kiln_pool_type)type, .global = 1, .n = 2, .c = 4, .h = 0, .w = 13};
        run_case(b, &t3, NULL, NULL);
    }
}

/* The examples of the ONNX operator tests (maxpool_2d_ceil, averagepool_2d_ceil,
 * averagepool_2d_precomputed_pads): fixed inputs and outputs. */
static void pool_onnx_examples(kiln_builder *b) {
    float x16[16], x25[25];
    for (int i = 0; i < 16; i++) x16[i] = (float)(i + 1);
    for (int i = 0; i < 25; i++) x25[i] = (float)(i + 1);
    pool_case t = {.type = KILN_POOL_MAX, .ceil = 1, .n = 1, .c = 1, .h = 4, .w = 4, .kh = 3, .kw = 3, .sh = 2,
                   .sw = 2, .dh = 1, .dw = 1};
    const double max_ceil[4] = {11, 12, 15, 16};
    run_case(b, &t, x16, max_ceil);
    t.type = KILN_POOL_AVERAGE;
    const double avg_ceil[4] = {6, 7.5, 12, 13.5};
    run_case(b, &t, x16, avg_ceil);
    pool_case p = {.type = KILN_POOL_AVERAGE, .n = 1, .c = 1, .h = 5, .w = 5, .kh = 5, .kw = 5, .sh = 1, .sw = 1,
                   .dh = 1, .dw = 1, .pt = 2, .pl = 2, .pb = 2, .pr = 2};
    const double avg_pads[25] = {7,    7.5, 8,    8.5, 9,  9.5,  10, 10.5, 11, 11.5, 12,   12.5, 13,
                                 13.5, 14,  14.5, 15,  15.5, 16, 16.5, 17,  17.5, 18, 18.5, 19};
    run_case(b, &p, x25, avg_pads);
    /* ceil mode with count_include_pad: the last window overhangs the (empty) padding and
     * counts only its one real tap (onnxruntime and onnx.reference give 1.5, 3.5, 5) */
    float x5[5] = {1, 2, 3, 4, 5};
    pool_case o = {.type = KILN_POOL_AVERAGE, .ceil = 1, .include_pad = 1, .n = 1, .c = 1, .h = 0, .w = 5, .kh = 1,
                   .kw = 2, .sh = 1, .sw = 2, .dh = 1, .dw = 1};
    const double overhang[3] = {1.5, 3.5, 5.0};
    run_case(b, &o, x5, overhang);
    /* ceil mode dropping a window that would start in the end padding: 5 -> 3, not 4 */
    pool_case q = {.type = KILN_POOL_MAX, .ceil = 1, .n = 1, .c = 2, .h = 5, .w = 5, .kh = 2, .kw = 2, .sh = 2,
                   .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    CHECK(pool_out(5, 2, 2, 1, 1, 1, 1) == 3, "ceil-mode rule in the test itself");
    run_case(b, &q, NULL, NULL);
}

/* ---- float16, float64, int8, uint8 (CPU kernels only: run there whatever the device) ---- */

static double tget(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_FLOAT16: return th_half_value(((const uint16_t *)p)[i]);
    case KILN_FLOAT64: return ((const double *)p)[i];
    case KILN_INT8: return ((const int8_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

/* The reference value as the type holds it: averages rounded once, an empty max window the
 * type's lowest value. */
static double tround(kiln_dtype dt, double v) {
    if (dt == KILN_FLOAT16) return th_half_round(v);
    if (dt == KILN_INT8 && v == -INFINITY) return -128;
    if (dt == KILN_UINT8 && v == -INFINITY) return 0;
    return v;
}

/* One case on dtype dt: random data (float64 with bits below float32's, halves up to +-4
 * with some subnormals, full-range integers), float64 reference, exact comparison (float64
 * averages to 1e-14: the window sums run in another order). */
static void run_case_typed(kiln_builder *b, const pool_case *t, kiln_dtype dt) {
    char what[256];
    snprintf(what, sizeof what,
             "%s %s%s %lldx%lld kernel %lldx%lld stride %lld,%lld dil %lld,%lld pads %lld,%lld,%lld,%lld "
             "ceil %d include_pad %d",
             kiln_dtype_name(dt), t->global ? "global " : "", t->type == KILN_POOL_MAX ? "max" : "avg", (long long)t->h,
             (long long)t->w, (long long)t->kh, (long long)t->kw, (long long)t->sh, (long long)t->sw, (long long)t->dh,
             (long long)t->dw, (long long)t->pt, (long long)t->pl, (long long)t->pb, (long long)t->pr, t->ceil,
             t->include_pad);
    bool r3 = t->h == 0;
    int64_t h = r3 ? 1 : t->h;
    int64_t oh = t->global ? 1 : pool_out(h, t->kh, t->sh, t->dh, t->pt, t->pb, t->ceil);
    int64_t ow = t->global ? 1 : pool_out(t->w, t->kw, t->sw, t->dw, t->pl, t->pr, t->ceil);
    int64_t xn = t->n * t->c * h * t->w, yn = t->n * t->c * oh * ow;
    size_t es = kiln_dtype_size(dt);
    void *x = malloc((size_t)xn * es);
    double *xv = malloc((size_t)xn * sizeof(double)), *ref = malloc((size_t)yn * sizeof(double));
    for (int64_t i = 0; i < xn; i++) {
        switch (dt) {
        case KILN_FLOAT64: ((double *)x)[i] = th_uniform(-1, 1); break;
        case KILN_FLOAT16: {
            double v = th_half_round(th_uniform(-4, 4) * (i % 9 == 4 ? ldexp(1, -17) : 1));
            if (v == 0) v = ldexp(1, -24);
            ((uint16_t *)x)[i] = th_half_bits(v);
            break;
        }
        case KILN_INT8: ((int8_t *)x)[i] = (int8_t)(th_rand_u64() >> 56); break;
        default: ((uint8_t *)x)[i] = (uint8_t)(th_rand_u64() >> 56); break;
        }
        xv[i] = tget(dt, x, i);
    }
    if (t->global) ref_global(t, h, xv, ref);
    else ref_pool(t, h, oh, ow, xv, ref);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_dims xd = r3 ? kiln_dims_make(3, (int64_t[]){t->n, t->c, t->w})
                      : kiln_dims_make(4, (int64_t[]){t->n, t->c, t->h, t->w});
    kiln_tensor *in = kiln_network_add_input(net, "x", dt, xd);
    kiln_pool_desc d = make_desc(t);
    kiln_layer *l = kiln_network_add_pooling(net, in, &d);
    CHECK(l != NULL, "%s: add failed: %s", what, kiln_last_error());
    if (l) {
        CHECK(kiln_tensor_dtype(kiln_layer_output(l, 0)) == dt, "%s: output dtype %s", what,
              kiln_dtype_name(kiln_tensor_dtype(kiln_layer_output(l, 0))));
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
        void *inputs[1] = {x}, *outputs[1] = {NULL};
        kiln_dims od;
        kiln_status st = th_run_device(b, net, KILN_DEVICE_CPU, inputs, outputs, &od);
        CHECK(st == KILN_OK, "%s: run failed: %s", what, kiln_last_error());
        if (st == KILN_OK) {
            CHECK(kiln_dims_volume(&od) == yn, "%s: %lld outputs, expected %lld", what,
                  (long long)kiln_dims_volume(&od), (long long)yn);
            int64_t bad = 0, first = -1;
            double tol = dt == KILN_FLOAT64 && t->type == KILN_POOL_AVERAGE ? 1e-14 : 0;
            for (int64_t i = 0; i < yn; i++) {
                double want = tround(dt, ref[i]), got = tget(dt, outputs[0], i);
                if (!(fabs(got - want) <= tol * fabs(want) || got == want)) {
                    if (first < 0) first = i;
                    bad++;
                }
            }
            CHECK(bad == 0, "%s: %lld of %lld wrong (first %lld: got %.17g, expected %.17g)", what, (long long)bad,
                  (long long)yn, (long long)first, first >= 0 ? tget(dt, outputs[0], first) : 0.0,
                  first >= 0 ? tround(dt, ref[first]) : 0.0);
        }
        free(outputs[0]);
    }
    kiln_network_destroy(net);
    free(x);
    free(xv);
    free(ref);
}

static void pool_types(kiln_builder *b) {
    static const kiln_dtype types[4] = {KILN_FLOAT16, KILN_FLOAT64, KILN_INT8, KILN_UINT8};
    static const int64_t kernels[] = {1, 2, 3, 5};
    for (int ti = 0; ti < 4; ti++) {
        kiln_dtype dt = types[ti];
        bool ints = dt == KILN_INT8 || dt == KILN_UINT8;
        int count = 0;
        for (int ki = 0; ki < 4; ki++)
            for (int64_t s = 1; s <= 3; s++)
                for (int kind = 0; kind < 3; kind++) {
                    if (ints && kind > 0) continue; /* integers: max pooling only (ONNX) */
                    pool_case t;
                    memset(&t, 0, sizeof t);
                    t.type = kind == 0 ? KILN_POOL_MAX : KILN_POOL_AVERAGE;
                    t.include_pad = kind == 2;
                    t.ceil = count % 2;
                    t.kh = kernels[ki];
                    t.kw = kernels[(ki + count) % 4];
                    t.sh = s;
                    t.sw = (s % 3) + 1;
                    t.dh = count % 3 == 1 ? 2 : 1;
                    t.dw = count % 4 == 2 ? 2 : 1;
                    t.n = 2;
                    t.c = 3;
                    int64_t spanh = (t.kh - 1) * t.dh + 1, spanw = (t.kw - 1) * t.dw + 1;
                    t.pt = th_rand_int(0, spanh - 1);
                    t.pb = th_rand_int(0, spanh - 1);
                    t.pl = th_rand_int(0, spanw - 1);
                    t.pr = th_rand_int(0, spanw - 1);
                    t.h = (spanh + th_rand_int(0, 8)) | 1;
                    t.w = spanw + th_rand_int(0, 9);
                    run_case_typed(b, &t, dt);
                    count++;
                }
        for (int type = 0; type <= (ints ? 0 : 1); type++) {
            pool_case g = {.type = (kiln_pool_type)type, .global = 1, .n = 3, .c = 5, .h = 57, .w = 55};
            run_case_typed(b, &g, dt);
            pool_case g3 = {.type = (kiln_pool_type)type, .global = 1, .n = 2, .c = 4, .h = 0, .w = 13};
            run_case_typed(b, &g3, dt);
            pool_case r3 = {.type = (kiln_pool_type)type, .n = 2, .c = 3, .h = 0, .w = 17, .kh = 1, .kw = 4, .sh = 1,
                            .sw = 3, .dh = 1, .dw = 2, .pl = 2, .pr = 1, .ceil = 1, .include_pad = 1};
            run_case_typed(b, &r3, dt);
            /* every tap of a dilated window in the padding: the type's lowest value, or 0 */
            pool_case hole = {.type = (kiln_pool_type)type, .n = 1, .c = 2, .h = 1, .w = 5, .kh = 2, .kw = 1, .sh = 1,
                              .sw = 1, .dh = 2, .dw = 1, .pt = 1, .pb = 1, .include_pad = 1};
            run_case_typed(b, &hole, dt);
            /* ResNet's stem pool, enough planes to spread over the workers */
            pool_case big = {.type = (kiln_pool_type)type, .n = 1, .c = 16, .h = 56, .w = 56, .kh = 3, .kw = 3,
                             .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
            run_case_typed(b, &big, dt);
        }
    }
}

static void expect_error(kiln_builder *b, const char *what, kiln_dtype dt, kiln_dims xd, const kiln_pool_desc *d,
                         const char *needle) {
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(b, &net));
    kiln_tensor *in = kiln_network_add_input(net, "x", dt, xd);
    kiln_layer *l = kiln_network_add_pooling(net, in, d);
    const char *err = kiln_last_error();
    CHECK(l == NULL, "%s: add succeeded", what);
    CHECK(strstr(err, "layer '") && strstr(err, "Pooling"), "%s: error does not name the layer: '%s'", what, err);
    CHECK(strstr(err, needle) != NULL, "%s: error '%s' does not mention '%s'", what, err, needle);
    CHECK(kiln_network_num_layers(net) == 0, "%s: the failed layer was kept", what);
    kiln_network_destroy(net);
}

static void pool_errors(kiln_builder *b) {
    kiln_dims xd = kiln_dims_make(4, (int64_t[]){1, 3, 6, 6});
    kiln_pool_desc d;
    memset(&d, 0, sizeof d);
    d.type = KILN_POOL_MAX;
    d.kernel[0] = d.kernel[1] = 3;
    d.kernel[0] = 9;
    expect_error(b, "output size <= 0", KILN_FLOAT32, xd, &d, "<= 0");
    d.kernel[0] = 0;
    expect_error(b, "zero kernel", KILN_FLOAT32, xd, &d, "kernel");
    d.kernel[0] = 3;
    d.pad_end[1] = 3;
    expect_error(b, "pad as wide as the kernel", KILN_FLOAT32, xd, &d, "padding");
    d.pad_end[1] = -1;
    expect_error(b, "negative pad", KILN_FLOAT32, xd, &d, "padding");
    d.pad_end[1] = 0;
    d.stride[1] = -2;
    expect_error(b, "negative stride", KILN_FLOAT32, xd, &d, "stride");
    d.stride[1] = 1;
    expect_error(b, "int32 input", KILN_INT32, xd, &d, "float32");
    expect_error(b, "bool input", KILN_BOOL, xd, &d, "bool");
    d.type = KILN_POOL_AVERAGE;
    expect_error(b, "average of uint8", KILN_UINT8, xd, &d, "uint8");
    expect_error(b, "average of int8", KILN_INT8, xd, &d, "int8");
    d.type = KILN_POOL_MAX;
    expect_error(b, "rank-5 input", KILN_FLOAT32, kiln_dims_make(5, (int64_t[]){1, 3, 6, 6, 6}), &d, "rank");
    d.type = (kiln_pool_type)7;
    expect_error(b, "unknown type", KILN_FLOAT32, xd, &d, "type");
}

/* A window far wider than its padded input (a fuzzer's find: 27 million columns took the
 * CPU kernel seconds, tap by tap): every output covers all of its rows' inputs. */
static void pool_wide_window(kiln_builder *b) {
    for (int type = 0; type < 2; type++) {
        pool_case t = {type ? KILN_POOL_AVERAGE : KILN_POOL_MAX, 0, 0, 0, 1, 2, 3, 5, 2, 400001, 1, 1, 1, 1,
                       0, 200000, 0, 200000};
        float x[2 * 3 * 5];
        th_fill(x, 30, -1, 1);
        double ref[2 * 2 * 5];
        for (int64_t p = 0; p < 2; p++)
            for (int64_t a = 0; a < 2; a++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t i = a; i < a + 2; i++)
                    for (int64_t j = 0; j < 5; j++) {
                        double v = x[(p * 3 + i) * 5 + j];
                        mx = v > mx ? v : mx;
                        sum += v;
                    }
                for (int64_t o = 0; o < 5; o++) ref[(p * 2 + a) * 5 + o] = type ? sum / 10.0 : mx;
            }
        run_case(b, &t, x, ref);
    }
}

int main(void) {
    kiln_builder *b = th_builder();
    pool_wide_window(b);
    pool_sweep(b);
    pool_global(b);
    pool_onnx_examples(b);
    pool_types(b);
    pool_errors(b);
    kiln_builder_destroy(b);
    return th_exit("test_ops_pool");
}
