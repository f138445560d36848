/* kiln command line: NumPy .npy files (format versions 1 to 3), read and written with
 * every header field checked, so a damaged file gives a message and not a crash. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct npy_type {
    const char *code; /* descr without the byte-order character */
    kiln_dtype dtype; /* what it loads as */
    int size;         /* bytes per element in the file */
} npy_type;

/* uint16 and uint32 have no kiln dtype: they widen to the next signed integer. */
static const npy_type npy_types[] = {
    {"f4", KILN_FLOAT32, 4}, {"f8", KILN_FLOAT64, 8}, {"f2", KILN_FLOAT16, 2}, {"i8", KILN_INT64, 8},
    {"i4", KILN_INT32, 4},   {"i1", KILN_INT8, 1},    {"u1", KILN_UINT8, 1},   {"b1", KILN_BOOL, 1},
    {"u2", KILN_INT32, 2},   {"u4", KILN_INT64, 4},
};

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Finds 'key': in the header dict and returns where its value starts. */
static const char *find_key(const char *h, const char *end, const char *key) {
    char pat[32];
    for (int q = 0; q < 2; q++) {
        snprintf(pat, sizeof pat, q ? "\"%s\"" : "'%s'", key);
        size_t n = strlen(pat);
        for (const char *p = h; p + n <= end; p++)
            if (memcmp(p, pat, n) == 0) {
                p = skip_ws(p + n, end);
                if (p < end && *p == ':') return skip_ws(p + 1, end);
            }
    }
    return NULL;
}

bool npy_read(const char *path, host_tensor *out, char *err, size_t errsz) {
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t size;
    if (!cli_read_file(path, &buf, &size, err, errsz)) return false;
    bool ok = false;
    const char *why = NULL;
    char whybuf[160];
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        why = "not a .npy file (no \\x93NUMPY magic)";
        goto done;
    }
    int major = buf[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) {
            why = "truncated header";
            goto done;
        }
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        snprintf(whybuf, sizeof whybuf, ".npy format version %d is not supported (1 to 3 are)", major);
        why = whybuf;
        goto done;
    }
    if (hlen > size - hstart) {
        why = "truncated header";
        goto done;
    }
    const char *h = (const char *)buf + hstart, *hend = h + hlen;
    const char *d = find_key(h, hend, "descr"), *fo = find_key(h, hend, "fortran_order"), *sh = find_key(h, hend, "shape");
    if (!d || !fo || !sh || (*d != '\'' && *d != '"')) {
        why = "header lacks descr, fortran_order or shape";
        goto done;
    }
    char quote = *d++;
    const char *dq = memchr(d, quote, (size_t)(hend - d));
    if (!dq || dq - d < 2 || dq - d > 8) {
        why = "bad descr";
        goto done;
    }
    char order = d[0];
    char code[8] = {0};
    memcpy(code, d + 1, (size_t)(dq - d - 1));
    const npy_type *ty = NULL;
    for (size_t k = 0; k < sizeof npy_types / sizeof *npy_types; k++)
        if (strcmp(code, npy_types[k].code) == 0) ty = &npy_types[k];
    if (!ty || (order != '<' && order != '>' && order != '|' && order != '=')) {
        snprintf(whybuf, sizeof whybuf, "dtype '%.*s' is not supported (float16/32/64, int8/32/64, uint8/16/32, bool are)",
                 (int)(dq - d), d);
        why = whybuf;
        goto done;
    }
    if (strncmp(fo, "False", 5) != 0) {
        why = "Fortran-order arrays are not supported (save with np.ascontiguousarray)";
        goto done;
    }
    if (*sh != '(') {
        why = "bad shape";
        goto done;
    }
    kiln_dims dims = {0};
    const char *p = skip_ws(sh + 1, hend);
    while (p < hend && *p != ')') {
        if (dims.nb_dims == KILN_MAX_DIMS) {
            snprintf(whybuf, sizeof whybuf, "rank above kiln's %d", KILN_MAX_DIMS);
            why = whybuf;
            goto done;
        }
        char *e;
        errno = 0;
        long long v = strtoll(p, &e, 10);
        if (e == p || errno || v < 0 || (const char *)e > hend) {
            why = "bad shape";
            goto done;
        }
        dims.d[dims.nb_dims++] = v;
        p = skip_ws(e, hend);
        if (p < hend && *p == 'L') p = skip_ws(p + 1, hend); /* Python 2 longs */
        if (p < hend && *p == ',') p = skip_ws(p + 1, hend);
    }
    if (p >= hend) {
        why = "bad shape";
        goto done;
    }
    /* element count without overflow, then compare with the bytes present */
    uint64_t count = 1;
    for (int i = 0; i < dims.nb_dims; i++) {
        if (dims.d[i] && count > UINT64_MAX / 16 / (uint64_t)dims.d[i]) {
            why = "shape too large";
            goto done;
        }
        count *= (uint64_t)dims.d[i];
    }
    size_t have = size - hstart - hlen;
    if (count * (uint64_t)ty->size > have) {
        snprintf(whybuf, sizeof whybuf, "truncated: the shape needs %llu bytes of data, the file has %zu",
                 (unsigned long long)(count * (uint64_t)ty->size), have);
        why = whybuf;
        goto done;
    }
    const uint8_t *src = buf + hstart + hlen;
    size_t es = kiln_dtype_size(ty->dtype);
    out->data = malloc(count ? (size_t)count * es : 1);
    if (!out->data) {
        why = "out of memory";
        goto done;
    }
    bool swap = order == '>';
    for (uint64_t i = 0; i < count; i++) {
        uint8_t v[8];
        memcpy(v, src + i * (uint64_t)ty->size, (size_t)ty->size);
        if (swap)
            for (int a = 0, b = ty->size - 1; a < b; a++, b--) {
                uint8_t tmp = v[a];
                v[a] = v[b];
                v[b] = tmp;
            }
        if (ty->size == (int)es) {
            memcpy((uint8_t *)out->data + i * es, v, es);
        } else if (ty->size == 2) { /* u2 -> int32 */
            ((int32_t *)out->data)[i] = (int32_t)((uint32_t)v[0] | (uint32_t)v[1] << 8);
        } else { /* u4 -> int64 */
            ((int64_t *)out->data)[i] = (int64_t)((uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 |
                                                   (uint32_t)v[3] << 24);
        }
    }
    out->dtype = ty->dtype;
    out->dims = dims;
    ok = true;
done:
    if (!ok) {
        if (why) snprintf(err, errsz, "%s", why);
        free(out->data);
        memset(out, 0, sizeof *out);
    }
    free(buf);
    return ok;
}

static const char *npy_descr(kiln_dtype dt) {
    switch (dt) {
    case KILN_FLOAT32: return "<f4";
    case KILN_FLOAT64: return "<f8";
    case KILN_FLOAT16: return "<f2";
    case KILN_INT64: return "<i8";
    case KILN_INT32: return "<i4";
    case KILN_INT8: return "|i1";
    case KILN_UINT8: return "|u1";
    case KILN_BOOL: return "|b1";
    case KILN_BFLOAT16: return "<f4"; /* numpy has no bfloat16: widened */
    }
    return NULL;
}

bool npy_write_stream(FILE *f, kiln_dtype dtype, const kiln_dims *dims, const void *data) {
    const char *descr = npy_descr(dtype);
    if (!descr) return false;
    char shape[256] = "";
    size_t at = 0;
    for (int i = 0; i < dims->nb_dims; i++)
        at += (size_t)snprintf(shape + at, sizeof shape - at, "%lld,%s", (long long)dims->d[i],
                               i + 1 < dims->nb_dims ? " " : "");
    if (dims->nb_dims > 1) shape[at - 1] = 0; /* "(2, 3)": the trailing comma only for rank 1 */
    char header[512];
    int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
    /* magic + version + length + header + padding + '\n' is a multiple of 64 */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    size_t hl = (size_t)n + pad + 1;
    pre[8] = (uint8_t)(hl & 0xff);
    pre[9] = (uint8_t)(hl >> 8);
    fwrite(pre, 1, 10, f);
    fwrite(header, 1, (size_t)n, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    int64_t count = kiln_dims_volume(dims);
    if (count < 0) count = 0;
    if (dtype == KILN_BFLOAT16) {
        for (int64_t i = 0; i < count; i++) {
            float v = (float)tensor_get(dtype, data, i);
            fwrite(&v, 4, 1, f);
        }
    } else if (count) {
        fwrite(data, kiln_dtype_size(dtype), (size_t)count, f);
    }
    return !ferror(f);
}

bool npy_write(const char *path, kiln_dtype dtype, const kiln_dims *dims, const void *data, char *err, size_t errsz) {
    atomic_file af;
    if (!atomic_open(&af, path)) {
        snprintf(err, errsz, "cannot write: %s", strerror(errno));
        return false;
    }
    if (!npy_write_stream(af.f, dtype, dims, data)) {
        atomic_abort(&af);
        snprintf(err, errsz, "cannot write the data");
        return false;
    }
    if (!atomic_commit(&af)) {
        snprintf(err, errsz, "cannot write: %s", strerror(errno));
        return false;
    }
    return true;
}
