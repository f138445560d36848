#define _GNU_SOURCE
/* kiln tests: engine files. Save/load round trips give bitwise-equal outputs; corrupt,
 * truncated, newer-format and other-device plans are handled; refit swaps weights. Runs
 * on the device under test (KILN_TEST_DEVICE=cuda on a GPU machine: the plan then stores
 * timed kernel choices, and the timing cache is checked too). */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "core/bytes.h"
#include "harness.h"

typedef struct model_weights {
    float conv_w[8 * 3 * 3 * 3], conv_b[8];
    float g[8], be[8], m[8], v[8];
    float fc_w[10 * 8 * 4 * 4], fc_b[10];
    float k[5];
} model_weights;

static void fill_weights(model_weights *w) {
    th_fill(w->conv_w, 216, -0.5f, 0.5f);
    th_fill(w->conv_b, 8, -0.1f, 0.1f);
    th_fill(w->g, 8, 0.5f, 1.5f);
    th_fill(w->be, 8, -0.2f, 0.2f);
    th_fill(w->m, 8, -0.2f, 0.2f);
    th_fill(w->v, 8, 0.5f, 1.5f);
    th_fill(w->fc_w, 1280, -0.1f, 0.1f);
    th_fill(w->fc_b, 10, -0.1f, 0.1f);
    th_fill(w->k, 5, -1, 1);
}

#define W(p, n) ((kiln_weights){KILN_FLOAT32, (p), (n)})

/* conv -> bn -> relu -> maxpool -> flatten -> fc -> softmax; plus a constant output */
static kiln_network *make_net(kiln_builder *b, const model_weights *w) {
    kiln_network *net;
    if (kiln_network_create(b, &net) != KILN_OK) return NULL;
    kiln_tensor *x = kiln_network_add_input(net, "x", KILN_FLOAT32, kiln_dims_make(4, (int64_t[]){2, 3, 8, 8}));
    kiln_conv_desc cd = {.out_channels = 8, .kernel = {3, 3}, .pad_begin = {1, 1}, .pad_end = {1, 1}};
    kiln_layer *c = kiln_network_add_convolution(net, x, &cd, W(w->conv_w, 216), W(w->conv_b, 8));
    kiln_layer_set_name(c, "conv");
    kiln_layer *bn = kiln_network_add_batch_norm(net, kiln_layer_output(c, 0), W(w->g, 8), W(w->be, 8), W(w->m, 8),
                                                 W(w->v, 8), 1e-5f);
    kiln_layer_set_name(bn, "bn");
    kiln_layer *r = kiln_network_add_activation(net, kiln_layer_output(bn, 0), KILN_ACT_RELU, 0, 0);
    kiln_pool_desc pd = {.type = KILN_POOL_MAX, .kernel = {2, 2}, .stride = {2, 2}};
    kiln_layer *p = kiln_network_add_pooling(net, kiln_layer_output(r, 0), &pd);
    kiln_layer *fc = kiln_network_add_fully_connected(net, kiln_layer_output(p, 0), 10, W(w->fc_w, 1280), W(w->fc_b, 10));
    kiln_layer *sm = fc ? kiln_network_add_softmax(net, kiln_layer_output(fc, 0), 1, 0) : NULL;
    kiln_layer *k = kiln_network_add_constant(net, kiln_dims_make(1, (int64_t[]){5}), W(w->k, 5));
    if (!sm || !k) return NULL;
    kiln_layer_set_name(k, "konst");
    kiln_tensor_set_name(kiln_layer_output(sm, 0), "probs");
    kiln_tensor_set_name(kiln_layer_output(k, 0), "k");
    kiln_network_mark_output(net, kiln_layer_output(sm, 0));
    kiln_network_mark_output(net, kiln_layer_output(k, 0));
    return net;
}

static bool on_gpu;

/* Log lines saying how many kernel choices were reused ("kernel choices: ..."). */
static char choices_line[512];

static void catch_choices(void *user, kiln_log_level level, const char *msg) {
    (void)user, (void)level;
    if (strncmp(msg, "kernel choices:", 15) == 0) snprintf(choices_line, sizeof choices_line, "%s", msg);
}

static kiln_builder *logging_builder(void) {
    kiln_builder_desc d = KILN_BUILDER_DESC_INIT;
    d.log = catch_choices;
    d.log_level = KILN_LOG_INFO;
    kiln_builder *b = NULL;
    CHECK_OK(kiln_builder_create(&d, &b));
    return b;
}

static kiln_engine *build_cached(kiln_builder *b, const model_weights *w, int refit, const char *cache) {
    kiln_network *net = make_net(b, w);
    kiln_config *cfg;
    kiln_engine *e = NULL;
    CHECK(net != NULL, "network: %s", kiln_last_error());
    CHECK_OK(kiln_config_create(b, &cfg));
    CHECK_OK(kiln_config_set_device(cfg, th_test_device()));
    if (getenv("KILN_TEST_FP16")) CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_FP16, 1));
    if (cache) CHECK_OK(kiln_config_set_timing_cache(cfg, cache));
    if (refit) CHECK_OK(kiln_config_set_flag(cfg, KILN_FLAG_REFIT, 1));
    if (net) CHECK_OK(kiln_builder_build(b, net, cfg, &e));
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    return e;
}

static kiln_engine *build(kiln_builder *b, const model_weights *w, int refit) { return build_cached(b, w, refit, NULL); }

/* Outputs of engines whose kernels were chosen separately: equal up to rounding. */
static bool close_enough(const float *a, const float *b, int n) {
    double tol = getenv("KILN_TEST_FP16") ? 1e-2 : 1e-5;
    for (int i = 0; i < n; i++)
        if (!(fabs((double)a[i] - (double)b[i]) <= tol * (1.0 + fabs((double)b[i])))) return false;
    return true;
}

static float input[2 * 3 * 8 * 8];

/* Runs e on `input`; probs (20) and k (5) out. */
static kiln_status run(kiln_engine *e, float *probs, float *k) {
    kiln_context *c;
    kiln_status st = kiln_context_create(e, &c);
    if (st != KILN_OK) return st;
    if (on_gpu) st = kiln_context_set_io_memory(c, KILN_MEMORY_HOST);
    memset(probs, 0xFF, 20 * sizeof(float));
    memset(k, 0xFF, 5 * sizeof(float));
    st = kiln_context_set_tensor_address(c, "x", input);
    if (st == KILN_OK) st = kiln_context_set_tensor_address(c, "probs", probs);
    if (st == KILN_OK) st = kiln_context_set_tensor_address(c, "k", k);
    if (st == KILN_OK) st = kiln_context_execute(c);
    kiln_context_destroy(c);
    return st;
}

static kiln_runtime *runtime(int refuse) {
    kiln_runtime_desc d = KILN_RUNTIME_DESC_INIT;
    d.log = catch_choices;
    d.log_level = KILN_LOG_INFO;
    d.refuse_device_mismatch = refuse;
    kiln_runtime *r = NULL;
    CHECK_OK(kiln_runtime_create(&d, &r));
    return r;
}

static void fix_crc(uint8_t *p, size_t n) {
    memset(p + 32, 0, 4);
    uint32_t c = kiln_crc32(0, p, n);
    for (int i = 0; i < 4; i++) p[32 + i] = (uint8_t)(c >> (8 * i));
}

/* CRC-32 against the standard check value and a bit-at-a-time reference, over lengths
 * and start offsets around the eight-byte steps, whole and split in two calls. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

static void test_crc32(void) {
    CHECK(kiln_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value: %08x", kiln_crc32(0, "123456789", 9));
    CHECK(kiln_crc32(0, NULL, 0) == 0, "crc32 of nothing");
    enum { N = 300 };
    uint8_t buf[N + 8];
    th_seed(11);
    for (int i = 0; i < N + 8; i++) buf[i] = (uint8_t)th_rand_int(0, 255);
    int bad = 0;
    for (int off = 0; off < 8; off++)
        for (size_t n = 0; n <= N; n += n < 40 ? 1 : 37) {
            uint32_t want = crc_bitwise(0, buf + off, n);
            uint32_t whole = kiln_crc32(0, buf + off, n);
            size_t cut = n / 3;
            uint32_t split = kiln_crc32(kiln_crc32(0, buf + off, cut), buf + off + cut, n - cut);
            bad += whole != want || split != want;
        }
    CHECK(bad == 0, "crc32 differs from the bitwise reference in %d cases", bad);
}

/* Number of kernel choices made and reused in the last "kernel choices" log line. */
static bool choices(int *reused, int *total, const char *from) {
    return sscanf(choices_line, "kernel choices: %d of %d", reused, total) == 2 && strstr(choices_line, from);
}

/* Timing cache: a second build takes every choice from the cache, with equal outputs. */
static void test_timing_cache(const model_weights *w) {
    char path[] = "/tmp/kiln_test_tcache_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    remove(path); /* a missing file: the build creates it */
    kiln_builder *lb = logging_builder();
    choices_line[0] = 0;
    kiln_engine *e1 = build_cached(lb, w, 0, path);
    int reused = -1, total = -1;
    float p1[20], k1[5];
    if (!on_gpu) {
        /* CPU kernels are chosen by rule: nothing timed, nothing cached */
        CHECK(choices_line[0] == 0 && access(path, F_OK) != 0, "CPU build: no choices, no cache file (%s)", choices_line);
    } else {
        CHECK(choices(&reused, &total, "timing cache") && total >= 2, "cold cache: %s", choices_line);
        float pc[20];
        if (e1) CHECK_OK(run(e1, pc, k1));
        CHECK(access(path, F_OK) == 0, "cache file written");
        choices_line[0] = 0;
        kiln_engine *e2 = build_cached(lb, w, 0, path);
        CHECK(choices(&reused, &total, "timing cache") && reused == total && total >= 2, "warm cache: %s", choices_line);
        if (e2) {
            CHECK_OK(run(e2, p1, k1));
            CHECK(e1 && memcmp(pc, p1, sizeof p1) == 0, "same choices from the cache: bitwise equal outputs");
        }
        kiln_engine_destroy(e2);
        /* a corrupt cache only costs time: a warning, timing again, a rewritten file */
        FILE *f = fopen(path, "r+b");
        if (f) {
            fseek(f, 40, SEEK_SET);
            fputc(0x5A ^ 0xFF, f);
            fclose(f);
        }
        choices_line[0] = 0;
        e2 = build_cached(lb, w, 0, path);
        CHECK(e2 != NULL && choices(&reused, &total, "timing cache") && reused == 0, "corrupt cache ignored: %s",
              choices_line);
        kiln_engine_destroy(e2);
        choices_line[0] = 0;
        e2 = build_cached(lb, w, 0, path);
        CHECK(choices(&reused, &total, "timing cache") && reused == total, "rewritten cache: %s", choices_line);
        kiln_engine_destroy(e2);
    }
    kiln_engine_destroy(e1);
    kiln_builder_destroy(lb);
    remove(path);
}

int main(void) {
    th_fill(input, sizeof input / sizeof *input, -1, 1);
    on_gpu = th_test_device() == KILN_DEVICE_CUDA;
    test_crc32();
    kiln_builder *b = th_builder();
    model_weights wa, wb;
    fill_weights(&wa);
    fill_weights(&wb);
    kiln_engine *e = build(b, &wa, 0);
    kiln_runtime *rt = runtime(0);
    if (!e || !rt) return th_exit("test_plan");
    float p0[20], k0[5], p1[20], k1[5];
    CHECK_OK(run(e, p0, k0));

    /* round trip in memory and through a file */
    void *data = NULL;
    size_t size = 0;
    CHECK_OK(kiln_engine_serialize(e, &data, &size));
    kiln_engine *e2 = NULL;
    choices_line[0] = 0;
    CHECK_OK(kiln_runtime_load(rt, data, size, &e2));
    int reused = -1, total = -1;
    if (on_gpu) /* the stored choices, none timed again: that is what makes it bitwise */
        CHECK(choices(&reused, &total, "the plan") && reused == total && total >= 2, "loaded choices: %s", choices_line);
    else
        CHECK(choices_line[0] == 0, "CPU: no kernel choices to store (%s)", choices_line);
    if (e2) {
        CHECK_OK(run(e2, p1, k1));
        CHECK(memcmp(p0, p1, sizeof p0) == 0 && memcmp(k0, k1, sizeof k0) == 0, "loaded engine: bitwise equal outputs");
        CHECK(kiln_engine_num_layers(e2) == kiln_engine_num_layers(e), "same layers after load");
        CHECK(kiln_engine_activation_bytes(e2) == kiln_engine_activation_bytes(e), "same memory plan");
        kiln_engine_destroy(e2);
    }
    char path[] = "/tmp/kiln_test_plan_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK_OK(kiln_engine_save(e, path));
    { /* the file holds exactly the serialized bytes (two emitters: a buffer, a stream) */
        FILE *f = fopen(path, "rb");
        uint8_t *fb = malloc(size + 1);
        size_t got = f && fb ? fread(fb, 1, size + 1, f) : 0;
        CHECK(got == size && memcmp(fb, data, size) == 0, "saved file = serialized bytes (%zu of %zu bytes)", got,
              size);
        if (f) fclose(f);
        free(fb);
    }
    CHECK_OK(kiln_runtime_load_file(rt, path, &e2));
    if (e2) {
        CHECK_OK(run(e2, p1, k1));
        CHECK(memcmp(p0, p1, sizeof p0) == 0, "file round trip: bitwise equal");
        kiln_engine_destroy(e2);
    }
    remove(path);
    CHECK(kiln_runtime_load_file(rt, "/nonexistent/x.plan", &e2) == KILN_ERR_IO && !e2, "missing file");
    CHECK(strstr(kiln_last_error(), "/nonexistent/x.plan") != NULL, "message names the file: %s", kiln_last_error());
    CHECK(kiln_engine_save(e, "/nonexistent-dir/x.plan") == KILN_ERR_IO, "unwritable path");
    CHECK(access("/nonexistent-dir/x.plan", F_OK) != 0, "no partial file");

    /* truncation at every length */
    int bad = 0;
    for (size_t n = 0; n < size; n += (n < 4096 ? 1 : 97)) {
        kiln_status st = kiln_runtime_load(rt, data, n, &e2);
        bad += st != KILN_ERR_FORMAT || e2 != NULL;
    }
    CHECK(bad == 0, "%d truncated plans not refused with a format error", bad);
    /* every byte flipped: the checksum (or the header check) refuses it */
    uint8_t *copy = malloc(size);
    bad = 0;
    for (size_t i = 0; i < size; i += (i < 8192 ? 1 : 31)) {
        memcpy(copy, data, size);
        copy[i] ^= 0x5A;
        kiln_status st = kiln_runtime_load(rt, copy, size, &e2);
        bad += st == KILN_OK;
        if (e2) kiln_engine_destroy(e2);
    }
    CHECK(bad == 0, "%d corrupted plans accepted", bad);
    /* corrupted with a valid checksum: parsing itself must catch it or run safely */
    int refused = 0, loaded = 0;
    for (size_t i = 64; i < size; i += 3) {
        memcpy(copy, data, size);
        copy[i] ^= (uint8_t)(1u << (i % 8));
        fix_crc(copy, size);
        kiln_status st = kiln_runtime_load(rt, copy, size, &e2);
        if (st == KILN_OK) {
            loaded++;
            run(e2, p1, k1); /* weights changed: any result, but no crash (sanitizers watch) */
            kiln_engine_destroy(e2);
        } else {
            refused++;
            /* a flipped device id names a device this build lacks: refused as unsupported */
            CHECK(st == KILN_ERR_FORMAT || st == KILN_ERR_OUT_OF_MEMORY || st == KILN_ERR_UNSUPPORTED ||
                      st == KILN_ERR_DEVICE,
                  "corrupt byte %zu: %s (%s)", i,
                  kiln_status_string(st), kiln_last_error());
        }
    }
    CHECK(refused > 0 && loaded > 0, "structure errors refused (%d), weight changes load (%d)", refused, loaded);
    /* a newer format version */
    memcpy(copy, data, size);
    copy[8] = 99;
    CHECK(kiln_runtime_load(rt, copy, size, &e2) == KILN_ERR_FORMAT, "newer format");
    CHECK(strstr(kiln_last_error(), "version 99") != NULL, "message: %s", kiln_last_error());
    memcpy(copy, "PNG\r\n\x1a\n\0", 8);
    CHECK(kiln_runtime_load(rt, copy, size, &e2) == KILN_ERR_FORMAT && strstr(kiln_last_error(), "not a kiln plan"),
          "wrong file type: %s", kiln_last_error());

    /* another device: edit the fingerprint (same length), fix the checksum */
    memcpy(copy, data, size);
    const char *fp_key = on_gpu ? "gpu=" : "device=cp";
    uint8_t *fp = memmem(copy, size, fp_key, strlen(fp_key));
    CHECK(fp != NULL, "fingerprint present");
    if (fp) {
        fp[strlen(fp_key)] = 'X';
        fix_crc(copy, size);
        choices_line[0] = 0;
        CHECK_OK(kiln_runtime_load(rt, copy, size, &e2));
        if (on_gpu) CHECK(choices(&reused, &total, "timed") && reused == 0, "chosen again: %s", choices_line);
        if (e2) {
            CHECK_OK(run(e2, p1, k1));
            CHECK(on_gpu ? close_enough(p1, p0, 20) : memcmp(p0, p1, sizeof p0) == 0,
                  "re-selected kernels give the same outputs");
            kiln_engine_destroy(e2);
        }
        kiln_runtime *strict = runtime(1);
        CHECK(kiln_runtime_load(strict, copy, size, &e2) == KILN_ERR_UNSUPPORTED && !e2, "refused on mismatch");
        CHECK(strstr(kiln_last_error(), on_gpu ? "gpu=X" : "cpX") != NULL, "message shows the plan's device: %s",
              kiln_last_error());
        kiln_runtime_destroy(strict);
    }
    /* a format 1 plan (no tactics section) still loads: its kernels are chosen again */
    memcpy(copy, data, size);
    copy[8] = 1;
    copy[36] = 5; /* the tactics section is the table's last entry: dropped */
    fix_crc(copy, size);
    CHECK_OK(kiln_runtime_load(rt, copy, size, &e2));
    if (e2) {
        CHECK_OK(run(e2, p1, k1));
        CHECK(on_gpu ? close_enough(p1, p0, 20) : memcmp(p0, p1, sizeof p0) == 0, "format 1 plan runs");
        kiln_engine_destroy(e2);
    }
    free(copy);
    free(data);
    test_timing_cache(&wa);

    /* refit: folded weights are not refittable; a refittable build takes model B's weights */
    CHECK(kiln_engine_weights_info(e, "conv.kernel", NULL, NULL) == KILN_ERR_NOT_FOUND, "folded conv not refittable");
    kiln_engine *ra = build(b, &wa, 1), *rb = build(b, &wb, 1);
    if (ra && rb) {
        CHECK(kiln_engine_num_weights(ra) >= 6, "refittable weights: %d", kiln_engine_num_weights(ra));
        for (int i = 0; i < kiln_engine_num_weights(ra); i++) CHECK(kiln_engine_weights_name(ra, i) != NULL, "name %d", i);
        kiln_dtype dt;
        int64_t count = 0;
        CHECK_OK(kiln_engine_weights_info(ra, "conv.kernel", &dt, &count));
        CHECK(count == 216 && dt == KILN_FLOAT32, "conv.kernel info");
        CHECK(kiln_engine_refit(ra, "conv.kernel", W(wb.conv_w, 215)) == KILN_ERR_INVALID_ARGUMENT, "wrong count");
        CHECK(kiln_engine_refit(ra, "nope", W(wb.conv_w, 216)) == KILN_ERR_NOT_FOUND, "unknown name");
        CHECK_OK(kiln_engine_refit(ra, "conv.kernel", W(wb.conv_w, 216)));
        CHECK_OK(kiln_engine_refit(ra, "conv.bias", W(wb.conv_b, 8)));
        /* batch norm kept as a scale layer: refit its folded scale/shift from B's engine math */
        float sc[8], sh[8];
        for (int i = 0; i < 8; i++) {
            double s = (double)wb.g[i] / sqrt((double)wb.v[i] + 1e-5);
            sc[i] = (float)s;
            sh[i] = (float)((double)wb.be[i] - (double)wb.m[i] * s);
        }
        CHECK_OK(kiln_engine_refit(ra, "bn.scale", W(sc, 8)));
        CHECK_OK(kiln_engine_refit(ra, "bn.shift", W(sh, 8)));
        CHECK_OK(kiln_engine_refit(ra, "konst", W(wb.k, 5)));
        /* the fully connected layer's constants are named after their layers */
        int refit_fc = 0;
        for (int i = 0; i < kiln_engine_num_weights(ra); i++) {
            const char *n = kiln_engine_weights_name(ra, i);
            kiln_engine_weights_info(ra, n, &dt, &count);
            char name[256];
            snprintf(name, sizeof name, "%s", n);
            if (count == 1280) refit_fc += kiln_engine_refit(ra, name, W(wb.fc_w, 1280)) == KILN_OK;
            if (count == 10) refit_fc += kiln_engine_refit(ra, name, W(wb.fc_b, 10)) == KILN_OK;
        }
        CHECK(refit_fc == 2, "fc kernel and bias refit");
        float pb[20], kb[5];
        CHECK_OK(run(ra, p1, k1));
        CHECK_OK(run(rb, pb, kb));
        CHECK((on_gpu ? close_enough(p1, pb, 20) : memcmp(p1, pb, sizeof pb) == 0) && memcmp(k1, kb, sizeof kb) == 0,
              "refit engine gives model B's outputs");
    }
    kiln_engine_destroy(ra);
    kiln_engine_destroy(rb);
    kiln_engine_destroy(e);
    kiln_runtime_destroy(rt);
    kiln_builder_destroy(b);
    return th_exit("test_plan");
}
