/* kiln tests: Resize as a one-layer network against a float64 reference that follows the
 * ONNX operator definition: the coordinate transform of each mode, nearest rounding
 * modes, and linear interpolation with edge padding, applied one axis at a time. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

#define DIMS(...)                                                                          \
    kiln_dims_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static const char *const COORD_NAMES[] = {"half_pixel", "asymmetric", "pytorch_half_pixel", "align_corners",
                                          "tf_half_pixel_for_nn"};
static const char *const NEAREST_NAMES[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};

static int64_t vol(const kiln_dims *d) { return kiln_dims_volume(d); }

/* ---- reference ---- */

/* ONNX coordinate_transformation_mode: resized coordinate x to original coordinate. */
static double ref_coord(kiln_resize_coord mode, double x, double scale, int64_t len_in, int64_t len_out) {
    switch (mode) {
    case KILN_COORD_HALF_PIXEL: return (x + 0.5) / scale - 0.5;
    case KILN_COORD_PYTORCH_HALF_PIXEL: return len_out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    /* ONNX's reference: the resized length is len_in * scale, unrounded (it equals len_out
     * when sizes define the scale) */
    case KILN_COORD_ALIGN_CORNERS: return len_out == 1 ? 0.0 : x * (double)(len_in - 1) / ((double)len_in * scale - 1.0);
    case KILN_COORD_ASYMMETRIC: return x / scale;
    case KILN_COORD_TF_HALF_PIXEL_FOR_NN: return (x + 0.5) / scale;
    }
    return NAN;
}

/* ONNX nearest_mode: ties (a fraction of exactly one half) go down or up; floor/ceil. */
static double ref_round(kiln_resize_nearest mode, double x) {
    double frac = x - floor(x);
    switch (mode) {
    case KILN_NEAREST_ROUND_PREFER_FLOOR: return frac == 0.5 ? floor(x) : round(x);
    case KILN_NEAREST_ROUND_PREFER_CEIL: return frac == 0.5 ? ceil(x) : round(x);
    case KILN_NEAREST_FLOOR: return floor(x);
    case KILN_NEAREST_CEIL: return ceil(x);
    }
    return NAN;
}

/* data[i] with the axis padded by its edge values, as the ONNX reference pads. */
static double edge(const double *data, int64_t stride, int64_t len, double i) {
    int64_t k = i < 0 ? 0 : i > (double)(len - 1) ? len - 1 : (int64_t)i;
    return data[k * stride];
}

/* Resizes axis `axis` of cur (dims *d, updated) to `len` elements. */
static double *ref_axis(const double *cur, kiln_dims *d, int axis, int64_t len, double scale, const kiln_resize_desc *p) {
    int64_t outer = 1, inner = 1, n = d->d[axis];
    for (int k = 0; k < axis; k++) outer *= d->d[k];
    for (int k = axis + 1; k < d->nb_dims; k++) inner *= d->d[k];
    double *out = malloc((size_t)(outer * len * inner + 1) * sizeof(double));
    for (int64_t o = 0; o < outer; o++)
        for (int64_t x = 0; x < len; x++) {
            double c = ref_coord(p->coord, (double)x, scale, n, len);
            for (int64_t i = 0; i < inner; i++) {
                const double *line = cur + o * n * inner + i;
                double v;
                if (p->mode == KILN_RESIZE_NEAREST) {
                    v = edge(line, inner, n, ref_round(p->nearest, c));
                } else {
                    double x0 = floor(c), r = c - x0;
                    v = (1.0 - r) * edge(line, inner, n, x0) + r * edge(line, inner, n, x0 + 1.0);
                }
                out[(o * len + x) * inner + i] = v;
            }
        }
    d->d[axis] = len;
    return out;
}

/* Full reference: output dims by the ONNX rule, then every axis in turn (linear
 * interpolation is separable, so this equals the n-linear formula). */
static double *ref_resize(const double *in, kiln_dims din, const kiln_resize_desc *p, kiln_dims *dout) {
    kiln_dims d = din;
    double *cur = malloc((size_t)(vol(&din) + 1) * sizeof(double));
    memcpy(cur, in, (size_t)vol(&din) * sizeof(double));
    for (int k = 0; k < din.nb_dims; k++) {
        int64_t len = p->sizes.nb_dims > 0 ? p->sizes.d[k] : (int64_t)floor((double)din.d[k] * (double)p->scales[k]);
        double scale = p->nb_scales > 0 ? (double)p->scales[k] : (double)len / (double)din.d[k];
        double *next = ref_axis(cur, &d, k, len, scale, p);
        free(cur);
        cur = next;
    }
    *dout = d;
    return cur;
}

/* ---- running ---- */

static kiln_builder *B;

static void rand_bytes(void *p, size_t n) {
    for (size_t i = 0; i < n; i++) ((unsigned char *)p)[i] = (unsigned char)(th_rand_u64() >> 33);
}

/* Runs one resize of `in` and compares with the reference. Float32: values within
 * 1e-5 relative error. Other dtypes (nearest only): the reference runs on element
 * indices, giving which input element each output must be a byte copy of. */
static void resize_case(kiln_dtype dt, kiln_dims in, const kiln_resize_desc *desc, const char *tag) {
    char what[256];
    snprintf(what, sizeof what, "resize %s %s %s %s (%s)", kiln_dtype_name(dt),
             desc->mode == KILN_RESIZE_LINEAR ? "linear" : "nearest", COORD_NAMES[desc->coord],
             desc->mode == KILN_RESIZE_LINEAR ? "" : NEAREST_NAMES[desc->nearest], tag);
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(B, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    kiln_layer *l = kiln_network_add_resize(net, x, desc);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (!l) {
        kiln_network_destroy(net);
        return;
    }
    int64_t n = vol(&in);
    size_t es = kiln_dtype_size(dt);
    void *data = malloc((size_t)n * es + 1);
    double *din = malloc((size_t)(n + 1) * sizeof(double));
    if (dt == KILN_FLOAT32) {
        th_fill(data, n, -1.0f, 1.0f);
        for (int64_t i = 0; i < n; i++) din[i] = ((float *)data)[i];
    } else {
        rand_bytes(data, (size_t)n * es);
        for (int64_t i = 0; i < n; i++) din[i] = (double)i;
    }
    kiln_dims want;
    double *ref = ref_resize(din, in, desc, &want);
    kiln_dims td = kiln_tensor_dims(kiln_layer_output(l, 0));
    CHECK(kiln_dims_volume(&td) == vol(&want) && td.nb_dims == want.nb_dims, "%s: inferred dims", what);
    for (int k = 0; k < want.nb_dims; k++)
        CHECK(td.d[k] == want.d[k], "%s: output dim %d is %lld, want %lld", what, k, (long long)td.d[k],
              (long long)want.d[k]);
    CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
    void *out = NULL;
    kiln_dims od;
    kiln_status st = th_run(B, net, &data, &out, &od);
    CHECK(st == KILN_OK, "%s: run -> %s: %s", what, kiln_status_string(st), kiln_last_error());
    int64_t m = vol(&want);
    if (st == KILN_OK && vol(&od) == m) {
        if (dt == KILN_FLOAT32) {
            th_check_close(what, out, ref, m, 1e-5);
        } else {
            int64_t bad = 0;
            for (int64_t i = 0; i < m; i++)
                bad += memcmp((char *)out + i * (int64_t)es, (char *)data + (int64_t)ref[i] * (int64_t)es, es) != 0;
            CHECK(bad == 0, "%s: %lld of %lld elements are not the expected input element", what, (long long)bad,
                  (long long)m);
        }
    }
    free(out);
    free(ref);
    free(din);
    free(data);
    kiln_network_destroy(net);
}

static kiln_resize_desc desc_sizes(kiln_resize_mode mode, kiln_resize_coord coord, kiln_resize_nearest nm,
                                   kiln_dims sizes) {
    kiln_resize_desc d;
    memset(&d, 0, sizeof d);
    d.mode = mode;
    d.coord = coord;
    d.nearest = nm;
    d.sizes = sizes;
    return d;
}

static kiln_resize_desc desc_scales(kiln_resize_mode mode, kiln_resize_coord coord, kiln_resize_nearest nm, int n,
                                    const float *scales) {
    kiln_resize_desc d = desc_sizes(mode, coord, nm, kiln_dims_make(0, NULL));
    d.nb_scales = n;
    for (int i = 0; i < n; i++) d.scales[i] = scales[i];
    return d;
}

/* The four image cases every mode combination runs: up and down, by sizes and scales. */
static void image_cases(kiln_resize_mode mode, kiln_resize_coord cm, kiln_resize_nearest nm) {
    kiln_resize_desc d;
    d = desc_sizes(mode, cm, nm, DIMS(2, 3, 11, 16));
    resize_case(KILN_FLOAT32, DIMS(2, 3, 5, 7), &d, "sizes up, non-integer ratio");
    d = desc_sizes(mode, cm, nm, DIMS(2, 3, 10, 14));
    resize_case(KILN_FLOAT32, DIMS(2, 3, 5, 7), &d, "sizes up x2");
    d = desc_sizes(mode, cm, nm, DIMS(2, 3, 4, 5));
    resize_case(KILN_FLOAT32, DIMS(2, 3, 9, 11), &d, "sizes down");
    d = desc_scales(mode, cm, nm, 4, (const float[]){1, 1, 2.5f, 1.75f});
    resize_case(KILN_FLOAT32, DIMS(2, 3, 5, 7), &d, "scales up 2.5, 1.75");
    d = desc_scales(mode, cm, nm, 4, (const float[]){1, 1, 0.5f, 0.6f});
    resize_case(KILN_FLOAT32, DIMS(2, 3, 9, 11), &d, "scales down 0.5, 0.6");
    d = desc_scales(mode, cm, nm, 4, (const float[]){1, 1, 2, 3});
    resize_case(KILN_FLOAT32, DIMS(1, 2, 4, 3), &d, "scales 2, 3");
}

static void test_nearest(void) {
    for (int nm = 0; nm < 4; nm++)
        for (int cm = 0; cm < 5; cm++) image_cases(KILN_RESIZE_NEAREST, cm, nm);
    /* any dtype: nearest copies elements */
    const kiln_dtype types[] = {KILN_INT64, KILN_UINT8, KILN_FLOAT16, KILN_INT32, KILN_BOOL, KILN_FLOAT64};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        kiln_resize_desc d = desc_scales(KILN_RESIZE_NEAREST, KILN_COORD_ASYMMETRIC, KILN_NEAREST_FLOOR, 4,
                                         (const float[]){1, 1, 2, 2});
        resize_case(types[t], DIMS(1, 3, 4, 5), &d, "x2");
        d = desc_sizes(KILN_RESIZE_NEAREST, KILN_COORD_HALF_PIXEL, KILN_NEAREST_ROUND_PREFER_CEIL, DIMS(2, 3, 7, 3));
        resize_case(types[t], DIMS(1, 3, 4, 5), &d, "every axis");
    }
    kiln_resize_desc d = desc_sizes(KILN_RESIZE_NEAREST, KILN_COORD_ALIGN_CORNERS, KILN_NEAREST_ROUND_PREFER_FLOOR,
                                    DIMS(12, 7));
    resize_case(KILN_FLOAT32, DIMS(5, 7), &d, "2-D, first axis only");
}

static void test_linear(void) {
    for (int cm = 0; cm < 5; cm++) {
        image_cases(KILN_RESIZE_LINEAR, cm, 0);
        kiln_resize_desc d;
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(2, 3, 13, 4));
        resize_case(KILN_FLOAT32, DIMS(2, 3, 6, 9), &d, "up in H, down in W");
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(2, 5, 7, 3));
        resize_case(KILN_FLOAT32, DIMS(2, 3, 4, 5), &d, "trilinear");
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(5, 2, 7, 4));
        resize_case(KILN_FLOAT32, DIMS(3, 4, 5, 6), &d, "4 axes");
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(2, 9, 3));
        resize_case(KILN_FLOAT32, DIMS(2, 6, 3), &d, "middle axis only");
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(4, 17));
        resize_case(KILN_FLOAT32, DIMS(4, 6), &d, "last axis only");
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(2, 3, 1, 1));
        resize_case(KILN_FLOAT32, DIMS(2, 3, 4, 5), &d, "down to 1x1");
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(2, 3, 3, 8));
        resize_case(KILN_FLOAT32, DIMS(2, 3, 1, 4), &d, "from a single row");
        d = desc_scales(KILN_RESIZE_LINEAR, cm, 0, 4, (const float[]){1, 1, 1.1f, 1.1f});
        resize_case(KILN_FLOAT32, DIMS(1, 2, 5, 5), &d, "scale 1.1 keeping the size");
        d = desc_sizes(KILN_RESIZE_LINEAR, cm, 0, DIMS(2, 3, 6, 6));
        d.nb_scales = 4;
        d.scales[0] = d.scales[1] = 1.0f;
        d.scales[2] = d.scales[3] = 1.3f;
        resize_case(KILN_FLOAT32, DIMS(2, 3, 5, 5), &d, "sizes with scales defining the mapping");
        d = desc_scales(KILN_RESIZE_LINEAR, cm, 0, 5, (const float[]){1.5f, 1, 0.5f, 2, 1.25f});
        resize_case(KILN_FLOAT32, DIMS(2, 2, 4, 3, 4), &d, "5-D");
    }
    kiln_resize_desc d = desc_sizes(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, DIMS(1, 3, 128, 160));
    resize_case(KILN_FLOAT32, DIMS(1, 3, 64, 80), &d, "image x2");
    d = desc_sizes(KILN_RESIZE_NEAREST, KILN_COORD_ASYMMETRIC, KILN_NEAREST_FLOOR, DIMS(1, 3, 128, 160));
    resize_case(KILN_FLOAT32, DIMS(1, 3, 64, 80), &d, "image x2");
}

static void expect_fail(const char *what, kiln_layer *l) {
    CHECK(l == NULL, "%s: bad attributes were accepted", what);
    CHECK(strstr(kiln_last_error(), "Resize") != NULL, "%s: message does not name the layer: %s", what,
          kiln_last_error());
}

static void test_errors(void) {
    kiln_network *net = NULL;
    CHECK_OK(kiln_network_create(B, &net));
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(1, 3, 4, 4));
    kiln_tensor *xi = kiln_network_add_input(net, "xi", KILN_INT32, DIMS(1, 3, 4, 4));
    kiln_tensor *e = kiln_network_add_input(net, "e", KILN_FLOAT32, DIMS(1, 3, 0, 4));
    kiln_resize_desc d = desc_sizes(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, kiln_dims_make(0, NULL));
    expect_fail("neither sizes nor scales", kiln_network_add_resize(net, x, &d));
    d = desc_sizes(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, DIMS(3, 8, 8));
    expect_fail("3 sizes for rank 4", kiln_network_add_resize(net, x, &d));
    d = desc_sizes(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, DIMS(1, 3, -8, 8));
    expect_fail("negative size", kiln_network_add_resize(net, x, &d));
    d = desc_scales(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, 4, (const float[]){1, 1, 0, 2});
    expect_fail("zero scale", kiln_network_add_resize(net, x, &d));
    d = desc_scales(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, 4, (const float[]){1, 1, NAN, 2});
    expect_fail("NaN scale", kiln_network_add_resize(net, x, &d));
    d = desc_scales(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, 2, (const float[]){2, 2});
    expect_fail("2 scales for rank 4", kiln_network_add_resize(net, x, &d));
    d = desc_scales(KILN_RESIZE_LINEAR, KILN_COORD_HALF_PIXEL, 0, 4, (const float[]){1, 1, 2, 2});
    expect_fail("linear on int32", kiln_network_add_resize(net, xi, &d));
    d.mode = (kiln_resize_mode)7;
    expect_fail("unknown mode", kiln_network_add_resize(net, x, &d));
    d.mode = KILN_RESIZE_NEAREST;
    d.coord = (kiln_resize_coord)9;
    expect_fail("unknown coordinate mode", kiln_network_add_resize(net, x, &d));
    d.coord = KILN_COORD_ASYMMETRIC;
    d.nearest = (kiln_resize_nearest)5;
    expect_fail("unknown nearest mode", kiln_network_add_resize(net, x, &d));
    d = desc_sizes(KILN_RESIZE_NEAREST, KILN_COORD_HALF_PIXEL, 0, DIMS(1, 3, 2, 8));
    expect_fail("growing an empty axis", kiln_network_add_resize(net, e, &d));
    d.nearest = KILN_NEAREST_CEIL;
    CHECK(kiln_network_add_resize(net, xi, &d) != NULL, "nearest on int32 is fine: %s", kiln_last_error());
    kiln_network_destroy(net);
}

int main(void) {
    B = th_builder();
    test_nearest();
    test_linear();
    test_errors();
    kiln_builder_destroy(B);
    return th_exit("test_ops_resize");
}
