/* kiln tests: the data-movement layers (concat, split, slice, transpose, pad, gather,
 * expand, tile, depth/space rearrangements) as one-layer networks, checked element by
 * element against index maps computed here from the ONNX definitions, on several dtypes,
 * plus the attribute errors each add_* call must report. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "harness.h"

#define DIMS(...)                                                                          \
    kiln_dims_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static kiln_builder *B;

/* ---- helpers ---- */

static int64_t vol(const kiln_dims *d) { return kiln_dims_volume(d); }

static void unravel(int64_t i, const kiln_dims *d, int64_t *c) {
    for (int k = d->nb_dims - 1; k >= 0; k--) {
        c[k] = d->d[k] ? i % d->d[k] : 0;
        i = d->d[k] ? i / d->d[k] : 0;
    }
}

static int64_t ravel(const int64_t *c, const kiln_dims *d) {
    int64_t i = 0;
    for (int k = 0; k < d->nb_dims; k++) i = i * d->d[k] + c[k];
    return i;
}

static bool dims_eq(const kiln_dims *a, const kiln_dims *b) {
    if (a->nb_dims != b->nb_dims) return false;
    for (int k = 0; k < a->nb_dims; k++)
        if (a->d[k] != b->d[k]) return false;
    return true;
}

static const char *dstr(const kiln_dims *d, char *buf) {
    int n = 0;
    buf[0] = 0;
    for (int k = 0; k < d->nb_dims; k++) n += sprintf(buf + n, "%s%lld", k ? "x" : "", (long long)d->d[k]);
    if (d->nb_dims == 0) strcpy(buf, "scalar");
    return buf;
}

/* Random data of any dtype: float32 through th_fill, halves finite, bools 0/1, the
 * rest random bytes (compared bytewise). */
static void *rand_data(kiln_dtype dt, int64_t n) {
    size_t es = kiln_dtype_size(dt);
    unsigned char *p = malloc((size_t)n * es + 1);
    if (dt == KILN_FLOAT32) {
        th_fill((float *)p, n, -10.0f, 10.0f);
    } else if (dt == KILN_FLOAT16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(th_rand_u64() & 0xFBFF); /* exponent <= 30: finite */
            memcpy(p + 2 * i, &h, 2);
        }
    } else if (dt == KILN_BOOL) {
        for (int64_t i = 0; i < n; i++) p[i] = (unsigned char)(th_rand_u64() & 1);
    } else {
        for (int64_t i = 0; i < n * (int64_t)es; i++) p[i] = (unsigned char)(th_rand_u64() >> 40);
    }
    return p;
}

/* Checks out[i] == in[map[i]] (map[i] < 0: the fill value) for n elements. */
static void check_map(const char *what, kiln_dtype dt, const void *out, const void *in, const int64_t *map, int64_t n,
                      const void *fill) {
    size_t es = kiln_dtype_size(dt);
    if (dt == KILN_FLOAT32) {
        double *ref = malloc((size_t)(n ? n : 1) * sizeof(double));
        for (int64_t i = 0; i < n; i++) ref[i] = map[i] < 0 ? *(const float *)fill : ((const float *)in)[map[i]];
        th_check_close(what, out, ref, n, 1e-5);
        free(ref);
        return;
    }
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        const char *want = map[i] < 0 ? (const char *)fill : (const char *)in + map[i] * (int64_t)es;
        if (memcmp((const char *)out + i * (int64_t)es, want, es) != 0) {
            if (first < 0) first = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s (%s): %lld of %lld elements differ, first at %lld", what, kiln_dtype_name(dt), (long long)bad,
          (long long)n, (long long)first);
}

static kiln_network *new_net(void) {
    kiln_network *net = NULL;
    if (kiln_network_create(B, &net) != KILN_OK) {
        fprintf(stderr, "network create: %s\n", kiln_last_error());
        exit(2);
    }
    return net;
}

/* Marks l's outputs, runs the network once on inputs and checks output j against
 * maps[j] / want[j]. All of l's outputs are network outputs. */
static void run_check(const char *what, kiln_network *net, kiln_layer *l, void *const *inputs, kiln_dtype dt,
                      const void *src, int64_t *const *maps, const kiln_dims *want, const void *fill) {
    int nout = kiln_layer_num_outputs(l);
    char a[128], b[128];
    for (int j = 0; j < nout; j++) {
        kiln_dims td = kiln_tensor_dims(kiln_layer_output(l, j));
        CHECK(dims_eq(&td, &want[j]), "%s: inferred output %d dims %s, want %s", what, j, dstr(&td, a),
              dstr(&want[j], b));
        CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, j)));
    }
    void *outs[64] = {0};
    kiln_dims od[64];
    kiln_status st = th_run(B, net, inputs, outs, od);
    CHECK(st == KILN_OK, "%s: run -> %s: %s", what, kiln_status_string(st), kiln_last_error());
    for (int j = 0; st == KILN_OK && j < nout; j++) {
        CHECK(dims_eq(&od[j], &want[j]), "%s: engine output %d dims %s, want %s", what, j, dstr(&od[j], a),
              dstr(&want[j], b));
        char w[160];
        snprintf(w, sizeof w, "%s out%d", what, j);
        if (dims_eq(&od[j], &want[j])) check_map(w, dt, outs[j], src, maps[j], vol(&want[j]), fill);
    }
    for (int j = 0; j < nout; j++) free(outs[j]);
}

/* For add_* calls that must fail: NULL and a message naming the layer type. */
static void expect_fail(const char *what, kiln_layer *l, const char *type_name) {
    CHECK(l == NULL, "%s: bad attributes were accepted", what);
    const char *e = kiln_last_error();
    CHECK(strstr(e, type_name) != NULL, "%s: message does not name the %s layer: %s", what, type_name, e);
}

static const kiln_dtype ALL_DTYPES[] = {KILN_FLOAT32, KILN_FLOAT16, KILN_INT8,    KILN_INT32, KILN_INT64,
                                        KILN_UINT8,   KILN_BOOL,    KILN_FLOAT64, KILN_BFLOAT16};

/* ---- concat ---- */

static void concat_case(kiln_dtype dt, kiln_dims base, int axis, int nin, const int64_t *sizes) {
    kiln_network *net = new_net();
    int a = axis < 0 ? axis + base.nb_dims : axis;
    kiln_tensor *t[8];
    void *data[8];
    kiln_dims di[8];
    kiln_dims out = base;
    out.d[a] = 0;
    for (int i = 0; i < nin; i++) {
        char name[16];
        sprintf(name, "x%d", i);
        di[i] = base;
        di[i].d[a] = sizes[i];
        out.d[a] += sizes[i];
        t[i] = kiln_network_add_input(net, name, dt, di[i]);
        data[i] = rand_data(dt, vol(&di[i]));
    }
    kiln_layer *l = kiln_network_add_concat(net, t, nin, axis);
    char what[96];
    snprintf(what, sizeof what, "concat %s axis %d of %d inputs", kiln_dtype_name(dt), axis, nin);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        /* reference: every input laid out back to back in one buffer; out maps into it */
        size_t es = kiln_dtype_size(dt);
        int64_t total = 0, base_off[8];
        for (int i = 0; i < nin; i++) {
            base_off[i] = total;
            total += vol(&di[i]);
        }
        char *all = malloc((size_t)(total ? total : 1) * es);
        for (int i = 0; i < nin; i++) memcpy(all + base_off[i] * (int64_t)es, data[i], (size_t)vol(&di[i]) * es);
        int64_t n = vol(&out), c[KILN_MAX_DIMS];
        int64_t *map = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
        for (int64_t e = 0; e < n; e++) {
            unravel(e, &out, c);
            int i = 0;
            while (c[a] >= sizes[i]) c[a] -= sizes[i++];
            map[e] = base_off[i] + ravel(c, &di[i]);
        }
        run_check(what, net, l, data, dt, all, &map, &out, NULL);
        free(map);
        free(all);
    }
    for (int i = 0; i < nin; i++) free(data[i]);
    kiln_network_destroy(net);
}

static void test_concat(void) {
    kiln_dims base = DIMS(2, 3, 4, 5);
    const int64_t sz3[3] = {1, 3, 2};
    for (int axis = -4; axis < 4; axis++) concat_case(KILN_FLOAT32, base, axis, 3, sz3);
    const int64_t sz5[5] = {2, 1, 3, 1, 2};
    concat_case(KILN_FLOAT32, base, 1, 5, sz5);
    concat_case(KILN_FLOAT32, base, -1, 1, sz3 + 1);
    const int64_t sz2[2] = {2, 1};
    concat_case(KILN_INT64, DIMS(2, 2, 3), 1, 2, sz2);
    concat_case(KILN_INT64, DIMS(2, 2, 3), 0, 2, sz2);
    concat_case(KILN_FLOAT16, DIMS(3, 5), -1, 2, sz2);
    concat_case(KILN_BOOL, DIMS(3, 5), 0, 3, sz3);
    const int64_t with_empty[3] = {2, 0, 3};
    concat_case(KILN_FLOAT32, DIMS(3, 1, 4), 1, 3, with_empty);
    /* big enough that the copy is cut in chunks across threads */
    const int64_t big[2] = {300, 200};
    concat_case(KILN_FLOAT32, DIMS(1, 4, 1000), 1, 2, big);
    concat_case(KILN_UINT8, DIMS(1, 4, 1000), 0, 2, big);

    kiln_network *net = new_net();
    kiln_tensor *a = kiln_network_add_input(net, "a", KILN_FLOAT32, DIMS(2, 3, 4));
    kiln_tensor *b = kiln_network_add_input(net, "b", KILN_FLOAT32, DIMS(2, 5, 4));
    kiln_tensor *c = kiln_network_add_input(net, "c", KILN_INT32, DIMS(2, 3, 4));
    kiln_tensor *r2 = kiln_network_add_input(net, "r2", KILN_FLOAT32, DIMS(2, 3));
    kiln_tensor *s = kiln_network_add_input(net, "s", KILN_FLOAT32, kiln_dims_make(0, NULL));
    kiln_tensor *ab[2] = {a, b}, *ac[2] = {a, c}, *ar[2] = {a, r2}, *ss[2] = {s, s};
    expect_fail("concat differing off-axis dims", kiln_network_add_concat(net, ab, 2, 2), "Concat");
    CHECK(strstr(kiln_last_error(), "dimension 1") != NULL, "message names the dimension: %s", kiln_last_error());
    CHECK(kiln_network_add_concat(net, ab, 2, -2) != NULL, "concat on the differing axis: %s", kiln_last_error());
    expect_fail("concat mixed dtypes", kiln_network_add_concat(net, ac, 2, 0), "Concat");
    expect_fail("concat mixed ranks", kiln_network_add_concat(net, ar, 2, 0), "Concat");
    expect_fail("concat axis 3 of rank 3", kiln_network_add_concat(net, ab, 2, 3), "Concat");
    expect_fail("concat axis -4 of rank 3", kiln_network_add_concat(net, ab, 2, -4), "Concat");
    expect_fail("concat scalars", kiln_network_add_concat(net, ss, 2, 0), "Concat");
    kiln_network_destroy(net);
}

/* ---- split ---- */

static void split_case(kiln_dtype dt, kiln_dims in, int axis, int n, const int64_t *sizes, const int64_t *expect) {
    kiln_network *net = new_net();
    int a = axis < 0 ? axis + in.nb_dims : axis;
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    void *data = rand_data(dt, vol(&in));
    kiln_layer *l = kiln_network_add_split(net, x, axis, n, sizes);
    char what[96];
    snprintf(what, sizeof what, "split %s axis %d into %d%s", kiln_dtype_name(dt), axis, n, sizes ? " (sizes)" : "");
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        kiln_dims want[16];
        int64_t *maps[16], c[KILN_MAX_DIMS], start = 0;
        for (int j = 0; j < n; j++) {
            want[j] = in;
            want[j].d[a] = expect[j];
            int64_t m = vol(&want[j]);
            maps[j] = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
            for (int64_t e = 0; e < m; e++) {
                unravel(e, &want[j], c);
                c[a] += start;
                maps[j][e] = ravel(c, &in);
            }
            start += expect[j];
        }
        run_check(what, net, l, &data, dt, data, maps, want, NULL);
        for (int j = 0; j < n; j++) free(maps[j]);
    }
    free(data);
    kiln_network_destroy(net);
}

static void test_split(void) {
    kiln_dims in = DIMS(4, 6, 5);
    split_case(KILN_FLOAT32, in, 1, 3, NULL, (const int64_t[]){2, 2, 2});
    split_case(KILN_FLOAT32, in, -1, 2, NULL, (const int64_t[]){3, 2}); /* ONNX-18: last piece smaller */
    split_case(KILN_FLOAT32, in, 2, 3, NULL, (const int64_t[]){2, 2, 1});
    split_case(KILN_FLOAT32, in, 0, 4, NULL, (const int64_t[]){1, 1, 1, 1});
    split_case(KILN_FLOAT32, in, 1, 4, (const int64_t[]){1, 4, 0, 1}, (const int64_t[]){1, 4, 0, 1});
    split_case(KILN_FLOAT32, in, -3, 2, (const int64_t[]){3, 1}, (const int64_t[]){3, 1});
    split_case(KILN_INT64, in, 2, 2, (const int64_t[]){1, 4}, (const int64_t[]){1, 4});
    split_case(KILN_INT8, in, 1, 1, NULL, (const int64_t[]){6});
    split_case(KILN_FLOAT32, DIMS(2, 900, 800), 1, 2, (const int64_t[]){700, 200}, (const int64_t[]){700, 200});

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(4, 5));
    expect_fail("split sizes not adding up", kiln_network_add_split(net, x, 1, 2, (const int64_t[]){2, 2}), "Split");
    CHECK(strstr(kiln_last_error(), "add up to 4") != NULL, "message gives the sum: %s", kiln_last_error());
    expect_fail("split negative size", kiln_network_add_split(net, x, 1, 2, (const int64_t[]){6, -1}), "Split");
    expect_fail("split 5 into 4 equal pieces", kiln_network_add_split(net, x, 1, 4, NULL), "Split");
    expect_fail("split axis 2 of rank 2", kiln_network_add_split(net, x, 2, 2, NULL), "Split");
    kiln_network_destroy(net);
}

/* ---- slice ---- */

/* The indices ONNX Slice visits along one axis, by walking them one by one. */
static int64_t slice_axis(int64_t d, int64_t start, int64_t end, int64_t step, int64_t *idx) {
    if (start < 0) start += d;
    if (end < 0) end += d;
    if (step > 0) {
        start = start < 0 ? 0 : start > d ? d : start;
        end = end < 0 ? 0 : end > d ? d : end;
    } else {
        start = start < 0 ? 0 : start > d - 1 ? d - 1 : start;
        end = end < -1 ? -1 : end > d - 1 ? d - 1 : end;
    }
    int64_t n = 0;
    for (int64_t i = start; step > 0 ? i < end : i > end;) {
        idx[n++] = i;
        if (__builtin_add_overflow(i, step, &i)) break; /* past any axis */
    }
    return n;
}

static void slice_case(kiln_dtype dt, kiln_dims in, int nb, const int64_t *starts, const int64_t *ends,
                       const int64_t *axes, const int64_t *steps, const char *what) {
    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    void *data = rand_data(dt, vol(&in));
    kiln_layer *l = kiln_network_add_slice(net, x, nb, starts, ends, axes, steps);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        int64_t idx[KILN_MAX_DIMS][64];
        kiln_dims want = in;
        for (int k = 0; k < in.nb_dims; k++)
            for (int64_t i = 0; i < in.d[k]; i++) idx[k][i] = i;
        for (int i = 0; i < nb; i++) {
            int a = (int)(axes ? (axes[i] < 0 ? axes[i] + in.nb_dims : axes[i]) : i);
            want.d[a] = slice_axis(in.d[a], starts[i], ends[i], steps ? steps[i] : 1, idx[a]);
        }
        int64_t m = vol(&want), c[KILN_MAX_DIMS];
        int64_t *map = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
        for (int64_t e = 0; e < m; e++) {
            unravel(e, &want, c);
            for (int k = 0; k < in.nb_dims; k++) c[k] = idx[k][c[k]];
            map[e] = ravel(c, &in);
        }
        char w[160];
        snprintf(w, sizeof w, "slice %s %s", kiln_dtype_name(dt), what);
        run_check(w, net, l, &data, dt, data, &map, &want, NULL);
        free(map);
    }
    free(data);
    kiln_network_destroy(net);
}

static void test_slice(void) {
    kiln_dims in = DIMS(5, 6, 7);
    for (size_t t = 0; t < sizeof ALL_DTYPES / sizeof ALL_DTYPES[0]; t++) {
        kiln_dtype dt = ALL_DTYPES[t];
        slice_case(dt, in, 3, (const int64_t[]){1, 0, 2}, (const int64_t[]){4, 6, 7}, NULL, NULL, "plain");
        slice_case(dt, in, 1, (const int64_t[]){-1}, (const int64_t[]){INT64_MIN}, (const int64_t[]){1},
                   (const int64_t[]){-2}, "negative step to the start");
    }
    slice_case(KILN_FLOAT32, in, 2, (const int64_t[]){-100, 2}, (const int64_t[]){100, INT64_MAX},
               (const int64_t[]){0, 2}, (const int64_t[]){2, 3}, "clamped ends");
    slice_case(KILN_FLOAT32, in, 2, (const int64_t[]){6, 4}, (const int64_t[]){0, -6}, (const int64_t[]){-1, -3},
               (const int64_t[]){-1, -3}, "negative axes and steps");
    slice_case(KILN_FLOAT32, in, 3, (const int64_t[]){-2, 1, 0}, (const int64_t[]){INT64_MAX, -1, INT64_MAX},
               (const int64_t[]){2, 0, 1}, (const int64_t[]){1, 2, 4}, "several axes permuted");
    slice_case(KILN_FLOAT32, in, 1, (const int64_t[]){100}, (const int64_t[]){-100}, (const int64_t[]){1},
               (const int64_t[]){-1}, "reversed whole axis");
    slice_case(KILN_FLOAT32, in, 1, (const int64_t[]){2}, (const int64_t[]){3}, (const int64_t[]){2},
               (const int64_t[]){INT64_MAX}, "huge step");
    slice_case(KILN_FLOAT32, in, 1, (const int64_t[]){-1}, (const int64_t[]){INT64_MIN}, (const int64_t[]){2},
               (const int64_t[]){INT64_MIN}, "huge negative step");
    slice_case(KILN_FLOAT32, in, 1, (const int64_t[]){3}, (const int64_t[]){1}, (const int64_t[]){0},
               (const int64_t[]){1}, "empty (start after end)");
    slice_case(KILN_FLOAT32, in, 1, (const int64_t[]){0}, (const int64_t[]){5}, (const int64_t[]){1},
               (const int64_t[]){-1}, "empty (negative step upwards)");
    slice_case(KILN_INT32, in, 2, (const int64_t[]){7, 1}, (const int64_t[]){9, 2}, (const int64_t[]){2, 1},
               NULL, "empty (start clamped to the end)");
    slice_case(KILN_FLOAT32, DIMS(64, 60), 2, (const int64_t[]){1, -1}, (const int64_t[]){63, 0}, NULL,
               (const int64_t[]){1, -1}, "2-D reversed columns");

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(4, 5));
    expect_fail("slice step 0",
                kiln_network_add_slice(net, x, 1, (const int64_t[]){0}, (const int64_t[]){3}, NULL,
                                       (const int64_t[]){0}),
                "Slice");
    expect_fail("slice axis 2 of rank 2",
                kiln_network_add_slice(net, x, 1, (const int64_t[]){0}, (const int64_t[]){3}, (const int64_t[]){2},
                                       NULL),
                "Slice");
    expect_fail("slice same axis twice",
                kiln_network_add_slice(net, x, 2, (const int64_t[]){0, 0}, (const int64_t[]){3, 3},
                                       (const int64_t[]){1, -1}, NULL),
                "Slice");
    kiln_network_destroy(net);
}

/* ---- transpose ---- */

static void transpose_case(kiln_dtype dt, kiln_dims in, const int64_t *perm) {
    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    void *data = rand_data(dt, vol(&in));
    int r = in.nb_dims;
    kiln_layer *l = kiln_network_add_transpose(net, x, r, perm);
    char what[128], ps[64] = "reverse";
    for (int k = 0, n = 0; perm && k < r; k++) n += sprintf(ps + n, "%lld", (long long)perm[k]);
    snprintf(what, sizeof what, "transpose %s perm %s", kiln_dtype_name(dt), ps);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        int64_t p[KILN_MAX_DIMS];
        for (int k = 0; k < r; k++) p[k] = perm ? perm[k] : r - 1 - k;
        kiln_dims want = in;
        for (int k = 0; k < r; k++) want.d[k] = in.d[p[k]];
        int64_t m = vol(&want), c[KILN_MAX_DIMS], ci[KILN_MAX_DIMS];
        int64_t *map = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
        for (int64_t e = 0; e < m; e++) {
            unravel(e, &want, c);
            for (int k = 0; k < r; k++) ci[p[k]] = c[k];
            map[e] = ravel(ci, &in);
        }
        run_check(what, net, l, &data, dt, data, &map, &want, NULL);
        free(map);
    }
    free(data);
    kiln_network_destroy(net);
}

/* Runs transpose_case on every permutation of p[0..k) (Heap's algorithm); seen[]
 * records each one (base-n code) so the caller can check they were all distinct. */
static void each_perm(int64_t *p, int n, int k, kiln_dtype dt, kiln_dims in, bool *seen) {
    if (k == 1) {
        transpose_case(dt, in, p);
        int code = 0;
        for (int i = 0; i < n; i++) code = code * n + (int)p[i];
        seen[code] = true;
        return;
    }
    for (int i = 0; i < k - 1; i++) {
        each_perm(p, n, k - 1, dt, in, seen);
        int j = (k % 2 == 0) ? i : 0;
        int64_t t = p[j];
        p[j] = p[k - 1];
        p[k - 1] = t;
    }
    each_perm(p, n, k - 1, dt, in, seen);
}

static int count_true(const bool *b, int n) {
    int c = 0;
    for (int i = 0; i < n; i++) c += b[i];
    return c;
}

static void test_transpose(void) {
    static bool seen[3125]; /* 5^5 codes */
    int64_t p4[4] = {0, 1, 2, 3};
    each_perm(p4, 4, 4, KILN_FLOAT32, DIMS(2, 3, 4, 5), seen);
    CHECK(count_true(seen, 256) == 24, "24 permutations of 4 axes, ran %d", count_true(seen, 256));
    memset(seen, 0, sizeof seen);
    int64_t p5[5] = {0, 1, 2, 3, 4};
    each_perm(p5, 5, 5, KILN_FLOAT32, DIMS(2, 3, 1, 4, 3), seen);
    CHECK(count_true(seen, 3125) == 120, "120 permutations of 5 axes, ran %d", count_true(seen, 3125));
    for (size_t t = 0; t < sizeof ALL_DTYPES / sizeof ALL_DTYPES[0]; t++) {
        transpose_case(ALL_DTYPES[t], DIMS(2, 3, 4, 5), (const int64_t[]){0, 2, 3, 1});
        transpose_case(ALL_DTYPES[t], DIMS(67, 131), (const int64_t[]){1, 0}); /* blocked path */
    }
    transpose_case(KILN_FLOAT32, DIMS(2, 37, 19, 23), (const int64_t[]){0, 2, 3, 1}); /* NCHW -> NHWC */
    transpose_case(KILN_FLOAT32, DIMS(2, 19, 23, 37), (const int64_t[]){0, 3, 1, 2}); /* NHWC -> NCHW */
    transpose_case(KILN_FLOAT32, DIMS(33, 5, 40), (const int64_t[]){2, 1, 0});
    transpose_case(KILN_INT64, DIMS(3, 4, 5), NULL);
    transpose_case(KILN_FLOAT32, DIMS(3, 0, 5), (const int64_t[]){2, 0, 1});
    transpose_case(KILN_FLOAT32, kiln_dims_make(0, NULL), NULL);

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(2, 3, 4));
    expect_fail("transpose repeated axis", kiln_network_add_transpose(net, x, 3, (const int64_t[]){0, 1, 1}),
                "Transpose");
    expect_fail("transpose axis out of range", kiln_network_add_transpose(net, x, 3, (const int64_t[]){0, 1, 3}),
                "Transpose");
    expect_fail("transpose short perm", kiln_network_add_transpose(net, x, 2, (const int64_t[]){1, 0}), "Transpose");
    kiln_network_destroy(net);
}

/* ---- pad ---- */

static const char *const PAD_MODES[] = {"constant", "reflect", "edge", "wrap"};

/* Source position along one axis, by the mode's definition on the cropped input:
 * reflect bounces off both ends, edge clamps, wrap is periodic. */
static int64_t pad_src(kiln_pad_mode mode, int64_t o, int64_t b, int64_t e, int64_t d) {
    int64_t crop = b < 0 ? -b : 0, kept = d - crop - (e < 0 ? -e : 0);
    int64_t r = o - (b > 0 ? b : 0);
    if (r >= 0 && r < kept) return crop + r;
    switch (mode) {
    case KILN_PAD_CONSTANT: return -1;
    case KILN_PAD_EDGE: return crop + (r < 0 ? 0 : kept - 1);
    case KILN_PAD_WRAP: return crop + ((r % kept) + kept) % kept;
    case KILN_PAD_REFLECT:
        while (r < 0 || r >= kept) {
            if (r < 0) r = -r;
            if (r >= kept) r = 2 * (kept - 1) - r;
        }
        return crop + r;
    }
    return -1;
}

static void pad_case(kiln_dtype dt, kiln_dims in, const int64_t *pads, kiln_pad_mode mode, float value,
                     const void *fill) {
    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    void *data = rand_data(dt, vol(&in));
    kiln_layer *l = kiln_network_add_pad(net, x, pads, mode, value);
    int r = in.nb_dims;
    char what[160], ps[96] = "";
    for (int k = 0, n = 0; k < 2 * r; k++) n += sprintf(ps + n, "%s%lld", k ? "," : "", (long long)pads[k]);
    snprintf(what, sizeof what, "pad %s %s pads %s", kiln_dtype_name(dt), PAD_MODES[mode], ps);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        kiln_dims want = in;
        for (int k = 0; k < r; k++) want.d[k] = in.d[k] + pads[k] + pads[r + k];
        int64_t m = vol(&want), c[KILN_MAX_DIMS];
        int64_t *map = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
        for (int64_t e = 0; e < m; e++) {
            unravel(e, &want, c);
            map[e] = 0;
            for (int k = 0; k < r && map[e] >= 0; k++) {
                c[k] = pad_src(mode, c[k], pads[k], pads[r + k], in.d[k]);
                if (c[k] < 0) map[e] = -1;
            }
            if (map[e] >= 0) map[e] = ravel(c, &in);
        }
        run_check(what, net, l, &data, dt, data, &map, &want, fill);
        free(map);
    }
    free(data);
    kiln_network_destroy(net);
}

static void test_pad(void) {
    kiln_dims in = DIMS(3, 4, 5);
    float v = 2.5f;
    const int64_t cases[][6] = {
        {1, 0, 2, 2, 1, 0},   /* pads only */
        {0, 2, 3, 1, 3, 4},   /* up to size - 1 on both sides (reflect limit) */
        {-1, 1, 1, 0, -2, 3}, /* crop and pad */
        {0, -1, -2, -1, 0, -1} /* crop only */
    };
    for (int m = 0; m < 4; m++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) pad_case(KILN_FLOAT32, in, cases[c], m, v, &v);
    /* wrap and edge may pad more than the axis holds */
    const int64_t wide[6] = {4, 9, 0, 7, 0, 11};
    pad_case(KILN_FLOAT32, in, wide, KILN_PAD_WRAP, v, &v);
    pad_case(KILN_FLOAT32, in, wide, KILN_PAD_EDGE, v, &v);
    pad_case(KILN_FLOAT32, in, wide, KILN_PAD_CONSTANT, v, &v);
    /* NCHW spatial padding, the common case */
    const int64_t nchw[8] = {0, 0, 1, 2, 0, 0, 2, 1};
    for (int m = 0; m < 4; m++) pad_case(KILN_FLOAT32, DIMS(2, 3, 6, 7), nchw, m, -1.0f, &(float){-1.0f});
    /* the constant converted to other dtypes */
    int32_t i7 = 7;
    pad_case(KILN_INT32, in, cases[2], KILN_PAD_CONSTANT, 7.0f, &i7);
    int64_t im3 = -3;
    pad_case(KILN_INT64, in, cases[0], KILN_PAD_CONSTANT, -3.0f, &im3);
    uint16_t h15 = 0x3E00; /* 1.5 in IEEE half */
    pad_case(KILN_FLOAT16, in, cases[0], KILN_PAD_CONSTANT, 1.5f, &h15);
    uint16_t bm2 = 0xC000; /* -2 in bfloat16 */
    pad_case(KILN_BFLOAT16, in, cases[0], KILN_PAD_CONSTANT, -2.0f, &bm2);
    double d25 = 2.5;
    pad_case(KILN_FLOAT64, in, cases[2], KILN_PAD_CONSTANT, 2.5f, &d25);
    uint8_t u1 = 1;
    pad_case(KILN_BOOL, in, cases[0], KILN_PAD_CONSTANT, 1.0f, &u1);
    /* only the last axis grown at its end (the CUDA backend's row kernel: an image's 3
     * channels to 8), in float16 and float32; a pad at its start takes the general path */
    const int64_t rows[8] = {0, 0, 0, 0, 0, 0, 0, 5}, rows_front[8] = {0, 0, 0, 1, 0, 0, 0, 4};
    pad_case(KILN_FLOAT16, DIMS(2, 5, 7, 3), rows, KILN_PAD_CONSTANT, 1.5f, &h15);
    pad_case(KILN_FLOAT32, DIMS(2, 5, 7, 3), rows, KILN_PAD_CONSTANT, v, &v);
    pad_case(KILN_FLOAT32, DIMS(2, 5, 7, 3), rows_front, KILN_PAD_CONSTANT, v, &v);
    for (int m = 1; m < 4; m++) {
        pad_case(KILN_INT8, in, cases[2], m, 0.0f, NULL);
        pad_case(KILN_FLOAT64, in, cases[1], m, 0.0f, NULL);
    }

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(3, 4));
    expect_fail("reflect pad equal to the size",
                kiln_network_add_pad(net, x, (const int64_t[]){0, 4, 0, 0}, KILN_PAD_REFLECT, 0), "Pad");
    expect_fail("crop beyond the size", kiln_network_add_pad(net, x, (const int64_t[]){-2, 0, -2, 0}, KILN_PAD_CONSTANT, 0),
                "Pad");
    expect_fail("edge pad of an axis cropped to nothing",
                kiln_network_add_pad(net, x, (const int64_t[]){-3, 0, 1, 0}, KILN_PAD_EDGE, 0), "Pad");
    expect_fail("unknown pad mode", kiln_network_add_pad(net, x, (const int64_t[]){0, 0, 0, 0}, (kiln_pad_mode)9, 0),
                "Pad");
    CHECK(kiln_network_add_pad(net, x, (const int64_t[]){-3, 0, 1, 0}, KILN_PAD_CONSTANT, 0) != NULL,
          "constant pad of an axis cropped to nothing is fine: %s", kiln_last_error());
    kiln_network_destroy(net);
}

/* ---- gather ---- */

/* Runs gather; returns the run status (the output checked when it is KILN_OK). */
static kiln_status gather_case(kiln_dtype dt, kiln_dims dd, kiln_dtype it, kiln_dims id, const int64_t *indices,
                               int axis, bool expect_ok) {
    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "data", dt, dd);
    kiln_tensor *ix = kiln_network_add_input(net, "indices", it, id);
    void *data = rand_data(dt, vol(&dd));
    int64_t q = vol(&id);
    void *idx = malloc((size_t)(q ? q : 1) * 8);
    for (int64_t i = 0; i < q; i++) {
        if (it == KILN_INT64) ((int64_t *)idx)[i] = indices[i];
        else ((int32_t *)idx)[i] = (int32_t)indices[i];
    }
    kiln_layer *l = kiln_network_add_gather(net, x, ix, axis);
    char what[128];
    snprintf(what, sizeof what, "gather %s axis %d, %s indices of rank %d", kiln_dtype_name(dt), axis,
             kiln_dtype_name(it), id.nb_dims);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    kiln_status st = KILN_ERR_INTERNAL;
    if (l) {
        int a = axis < 0 ? axis + dd.nb_dims : axis;
        kiln_dims want;
        memset(&want, 0, sizeof want);
        int r = 0;
        for (int k = 0; k < a; k++) want.d[r++] = dd.d[k];
        for (int k = 0; k < id.nb_dims; k++) want.d[r++] = id.d[k];
        for (int k = a + 1; k < dd.nb_dims; k++) want.d[r++] = dd.d[k];
        want.nb_dims = r;
        int64_t m = vol(&want), c[KILN_MAX_DIMS], ci[KILN_MAX_DIMS], cq[KILN_MAX_DIMS];
        int64_t *map = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
        for (int64_t e = 0; e < m; e++) {
            unravel(e, &want, c);
            for (int k = 0; k < a; k++) ci[k] = c[k];
            for (int k = 0; k < id.nb_dims; k++) cq[k] = c[a + k];
            int64_t v = indices[ravel(cq, &id)];
            ci[a] = v < 0 ? v + dd.d[a] : v;
            for (int k = a + 1; k < dd.nb_dims; k++) ci[k] = c[k - 1 + id.nb_dims];
            map[e] = ravel(ci, &dd);
        }
        void *ins[2] = {data, idx};
        if (expect_ok) {
            run_check(what, net, l, ins, dt, data, &map, &want, NULL);
            st = KILN_OK;
        } else {
            CHECK_OK(kiln_network_mark_output(net, kiln_layer_output(l, 0)));
            void *out = NULL;
            st = th_run(B, net, ins, &out, NULL);
            free(out);
        }
        free(map);
    }
    free(idx);
    free(data);
    kiln_network_destroy(net);
    return st;
}

static void test_gather(void) {
    kiln_dims dd = DIMS(4, 5, 6);
    const int64_t i1[5] = {3, -1, 0, 0, -4};
    const int64_t i2[6] = {1, -2, 3, 0, -1, 2};
    const int64_t i0[1] = {-1};
    for (int axis = -3; axis < 3; axis++) {
        gather_case(KILN_FLOAT32, dd, KILN_INT32, DIMS(5), i1, axis, true);
        gather_case(KILN_FLOAT32, dd, KILN_INT64, DIMS(2, 3), i2, axis, true);
        gather_case(KILN_FLOAT32, dd, KILN_INT64, kiln_dims_make(0, NULL), i0, axis, true);
    }
    gather_case(KILN_INT64, dd, KILN_INT64, DIMS(2, 3), i2, 1, true);
    gather_case(KILN_FLOAT16, dd, KILN_INT32, DIMS(5), i1, 2, true);
    gather_case(KILN_UINT8, DIMS(7), KILN_INT32, DIMS(3, 2), i2, 0, true);
    gather_case(KILN_FLOAT32, dd, KILN_INT64, DIMS(0), i1, 1, true);
    /* an embedding lookup: wide rows */
    const int64_t tok[4] = {9, 0, 9, 3};
    gather_case(KILN_FLOAT32, DIMS(10, 300), KILN_INT64, DIMS(1, 4), tok, 0, true);

    /* indices out of range fail the run (not the build) with KILN_ERR_RUNTIME */
    const int64_t bad_hi[3] = {0, 5, 1}, bad_lo[2] = {-6, 0};
    kiln_status st = gather_case(KILN_FLOAT32, dd, KILN_INT64, DIMS(3), bad_hi, 1, false);
    CHECK(st == KILN_ERR_RUNTIME, "index 5 of an axis of 5: %s (%s)", kiln_status_string(st), kiln_last_error());
    CHECK(strstr(kiln_last_error(), "index 5") && strstr(kiln_last_error(), "Gather"), "message names the index: %s",
          kiln_last_error());
    st = gather_case(KILN_FLOAT32, dd, KILN_INT32, DIMS(2), bad_lo, 1, false);
    CHECK(st == KILN_ERR_RUNTIME, "index -6 of an axis of 5: %s (%s)", kiln_status_string(st), kiln_last_error());
    CHECK(strstr(kiln_last_error(), "index -6") && strstr(kiln_last_error(), "size 5"),
          "message names the index and the bound: %s", kiln_last_error());
    st = gather_case(KILN_FLOAT32, dd, KILN_INT32, DIMS(2), bad_lo, 2, true);
    CHECK(st == KILN_OK, "index -6 of an axis of 6 is fine");

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(3, 4));
    kiln_tensor *fi = kiln_network_add_input(net, "fi", KILN_FLOAT32, DIMS(2));
    kiln_tensor *ii = kiln_network_add_input(net, "ii", KILN_INT64, DIMS(2));
    kiln_tensor *s = kiln_network_add_input(net, "s", KILN_FLOAT32, kiln_dims_make(0, NULL));
    expect_fail("gather float indices", kiln_network_add_gather(net, x, fi, 0), "Gather");
    expect_fail("gather axis 2 of rank 2", kiln_network_add_gather(net, x, ii, 2), "Gather");
    expect_fail("gather from a scalar", kiln_network_add_gather(net, s, ii, 0), "Gather");
    kiln_network_destroy(net);
}

/* ---- expand, tile ---- */

static void expand_case(kiln_dtype dt, kiln_dims in, kiln_dims shape, kiln_dims want) {
    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    void *data = rand_data(dt, vol(&in));
    kiln_layer *l = kiln_network_add_expand(net, x, shape);
    char what[128], a[96], b[96];
    snprintf(what, sizeof what, "expand %s %s to %s", kiln_dtype_name(dt), dstr(&in, a), dstr(&shape, b));
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        int64_t m = vol(&want), c[KILN_MAX_DIMS], ci[KILN_MAX_DIMS];
        int64_t *map = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
        int shift = want.nb_dims - in.nb_dims;
        for (int64_t e = 0; e < m; e++) {
            unravel(e, &want, c);
            for (int k = 0; k < in.nb_dims; k++) ci[k] = in.d[k] == 1 ? 0 : c[k + shift];
            map[e] = ravel(ci, &in);
        }
        run_check(what, net, l, &data, dt, data, &map, &want, NULL);
        free(map);
    }
    free(data);
    kiln_network_destroy(net);
}

static void test_expand(void) {
    expand_case(KILN_FLOAT32, DIMS(3, 1, 5), DIMS(2, 3, 4, 5), DIMS(2, 3, 4, 5));
    expand_case(KILN_FLOAT32, DIMS(3, 4), DIMS(2, 1, 1), DIMS(2, 3, 4)); /* shape smaller than the input */
    expand_case(KILN_FLOAT32, DIMS(3, 4), DIMS(1, 4), DIMS(3, 4));
    expand_case(KILN_FLOAT32, DIMS(1, 4, 1), DIMS(3, 1, 5), DIMS(3, 4, 5)); /* both ways at once */
    expand_case(KILN_FLOAT32, DIMS(5, 1), DIMS(5, 1000), DIMS(5, 1000));
    expand_case(KILN_INT64, DIMS(1), DIMS(2, 3), DIMS(2, 3));
    expand_case(KILN_FLOAT16, kiln_dims_make(0, NULL), DIMS(4, 2), DIMS(4, 2));
    expand_case(KILN_BOOL, DIMS(2, 1, 3), DIMS(4, 2, 3, 3), DIMS(4, 2, 3, 3));
    expand_case(KILN_FLOAT32, DIMS(2, 1), DIMS(2, 0), DIMS(2, 0));

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(3, 4));
    expect_fail("expand 3x4 to 2x4", kiln_network_add_expand(net, x, DIMS(2, 4)), "Expand");
    expect_fail("expand to a negative dim", kiln_network_add_expand(net, x, DIMS(-2, 4)), "Expand");
    kiln_network_destroy(net);
}

static void tile_case(kiln_dtype dt, kiln_dims in, const int64_t *rep) {
    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    void *data = rand_data(dt, vol(&in));
    kiln_layer *l = kiln_network_add_tile(net, x, rep);
    char what[128], a[96], rs[64] = "";
    for (int k = 0, n = 0; k < in.nb_dims; k++) n += sprintf(rs + n, "%s%lld", k ? "," : "", (long long)rep[k]);
    snprintf(what, sizeof what, "tile %s %s by %s", kiln_dtype_name(dt), dstr(&in, a), rs);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        kiln_dims want = in;
        for (int k = 0; k < in.nb_dims; k++) want.d[k] = in.d[k] * rep[k];
        int64_t m = vol(&want), c[KILN_MAX_DIMS];
        int64_t *map = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
        for (int64_t e = 0; e < m; e++) {
            unravel(e, &want, c);
            for (int k = 0; k < in.nb_dims; k++) c[k] %= in.d[k];
            map[e] = ravel(c, &in);
        }
        run_check(what, net, l, &data, dt, data, &map, &want, NULL);
        free(map);
    }
    free(data);
    kiln_network_destroy(net);
}

static void test_tile(void) {
    tile_case(KILN_FLOAT32, DIMS(2, 3, 4), (const int64_t[]){2, 1, 3});
    tile_case(KILN_FLOAT32, DIMS(2, 3, 4), (const int64_t[]){1, 1, 1});
    tile_case(KILN_FLOAT32, DIMS(2, 3, 4), (const int64_t[]){3, 2, 1});
    tile_case(KILN_FLOAT32, DIMS(1, 5), (const int64_t[]){4, 1});
    tile_case(KILN_INT8, DIMS(2, 3, 4), (const int64_t[]){1, 4, 2});
    tile_case(KILN_INT64, DIMS(3), (const int64_t[]){5});
    tile_case(KILN_FLOAT32, DIMS(2, 3), (const int64_t[]){0, 2});

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(3, 4));
    expect_fail("tile negative repeat", kiln_network_add_tile(net, x, (const int64_t[]){2, -1}), "Tile");
    kiln_network_destroy(net);
}

/* ---- depth to space, space to depth ---- */

/* out = transpose(reshape(in, rdims), perm): map of the flat output onto the flat
 * input. This is the ONNX definition, literally; the kernels never reshape. */
static int64_t *reshape_transpose_map(kiln_dims rdims, const int64_t *perm, int64_t n) {
    kiln_dims td = rdims;
    for (int k = 0; k < rdims.nb_dims; k++) td.d[k] = rdims.d[perm[k]];
    int64_t *map = malloc((size_t)(n ? n : 1) * sizeof(int64_t)), c[KILN_MAX_DIMS], ci[KILN_MAX_DIMS];
    for (int64_t e = 0; e < n; e++) {
        unravel(e, &td, c);
        for (int k = 0; k < rdims.nb_dims; k++) ci[perm[k]] = c[k];
        map[e] = ravel(ci, &rdims);
    }
    return map;
}

static void d2s_case(kiln_dtype dt, kiln_dims in, int64_t b, int mode /* 0 DCR, 1 CRD, 2 space to depth */) {
    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", dt, in);
    void *data = rand_data(dt, vol(&in));
    kiln_layer *l = mode == 2 ? kiln_network_add_space_to_depth(net, x, b)
                              : kiln_network_add_depth_to_space(net, x, b, mode);
    char what[128], a[96];
    snprintf(what, sizeof what, "%s %s %s block %lld", mode == 2 ? "space_to_depth" : mode ? "d2s CRD" : "d2s DCR",
             kiln_dtype_name(dt), dstr(&in, a), (long long)b);
    CHECK(l != NULL, "%s: %s", what, kiln_last_error());
    if (l) {
        int64_t N = in.d[0], C = in.d[1], H = in.d[2], W = in.d[3];
        kiln_dims want;
        int64_t *map;
        if (mode == 0) {
            want = DIMS(N, C / (b * b), H * b, W * b);
            map = reshape_transpose_map(DIMS(N, b, b, C / (b * b), H, W), (const int64_t[]){0, 3, 4, 1, 5, 2},
                                        vol(&want));
        } else if (mode == 1) {
            want = DIMS(N, C / (b * b), H * b, W * b);
            map = reshape_transpose_map(DIMS(N, C / (b * b), b, b, H, W), (const int64_t[]){0, 1, 4, 2, 5, 3},
                                        vol(&want));
        } else {
            want = DIMS(N, C * b * b, H / b, W / b);
            map = reshape_transpose_map(DIMS(N, C, H / b, b, W / b, b), (const int64_t[]){0, 3, 5, 1, 2, 4},
                                        vol(&want));
        }
        run_check(what, net, l, &data, dt, data, &map, &want, NULL);
        free(map);
    }
    free(data);
    kiln_network_destroy(net);
}

static void test_depth_space(void) {
    for (int mode = 0; mode < 2; mode++) {
        d2s_case(KILN_FLOAT32, DIMS(2, 8, 3, 4), 2, mode);
        d2s_case(KILN_FLOAT32, DIMS(1, 18, 2, 3), 3, mode);
        d2s_case(KILN_FLOAT32, DIMS(1, 5, 2, 3), 1, mode);
        d2s_case(KILN_INT32, DIMS(2, 12, 3, 3), 2, mode);
    }
    d2s_case(KILN_FLOAT32, DIMS(2, 3, 4, 6), 2, 2);
    d2s_case(KILN_FLOAT32, DIMS(1, 2, 9, 6), 3, 2);
    d2s_case(KILN_FLOAT16, DIMS(2, 3, 4, 4), 4, 2);

    kiln_network *net = new_net();
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, DIMS(1, 6, 4, 6));
    kiln_tensor *r3 = kiln_network_add_input(net, "r3", KILN_FLOAT32, DIMS(8, 4, 4));
    expect_fail("d2s channels not divisible", kiln_network_add_depth_to_space(net, x, 2, 0), "DepthToSpace");
    expect_fail("d2s block 0", kiln_network_add_depth_to_space(net, x, 0, 0), "DepthToSpace");
    expect_fail("d2s rank 3", kiln_network_add_depth_to_space(net, r3, 2, 1), "DepthToSpace");
    expect_fail("s2d height not divisible", kiln_network_add_space_to_depth(net, x, 3), "SpaceToDepth");
    expect_fail("s2d rank 3", kiln_network_add_space_to_depth(net, r3, 2), "SpaceToDepth");
    kiln_network_destroy(net);
}

int main(void) {
    B = th_builder();
    test_concat();
    test_split();
    test_slice();
    test_transpose();
    test_pad();
    test_gather();
    test_expand();
    test_tile();
    test_depth_space();
    kiln_builder_destroy(B);
    return th_exit("test_ops_movement");
}
