/* kiln ONNX: TensorProto decoding (raw, typed and external data) and .pb tensor files.
 * Everything here treats its input as untrusted: sizes are checked before use. */
#define _GNU_SOURCE /* realpath */
#include "tensor_io.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define T(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x

static kiln_status fail(char *err, size_t errsz, kiln_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kiln_status fail(char *err, size_t errsz, kiln_status st, const char *fmt, ...) {
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return st;
}

bool ox_dtype_from_onnx(int32_t t, kiln_dtype *out) {
    switch (t) {
    case T(FLOAT):
        *out = KILN_FLOAT32;
        return true;
    case T(UINT8):
        *out = KILN_UINT8;
        return true;
    case T(INT8):
        *out = KILN_INT8;
        return true;
    case T(INT32):
        *out = KILN_INT32;
        return true;
    case T(INT64):
        *out = KILN_INT64;
        return true;
    case T(BOOL):
        *out = KILN_BOOL;
        return true;
    case T(FLOAT16):
        *out = KILN_FLOAT16;
        return true;
    case T(DOUBLE):
        *out = KILN_FLOAT64;
        return true;
    case T(BFLOAT16):
        *out = KILN_BFLOAT16;
        return true;
    default:
        return false;
    }
}

int32_t ox_dtype_to_onnx(kiln_dtype d) {
    switch (d) {
    case KILN_FLOAT32:
        return T(FLOAT);
    case KILN_FLOAT16:
        return T(FLOAT16);
    case KILN_INT8:
        return T(INT8);
    case KILN_INT32:
        return T(INT32);
    case KILN_INT64:
        return T(INT64);
    case KILN_UINT8:
        return T(UINT8);
    case KILN_BOOL:
        return T(BOOL);
    case KILN_FLOAT64:
        return T(DOUBLE);
    case KILN_BFLOAT16:
        return T(BFLOAT16);
    }
    return T(UNDEFINED);
}

const char *ox_onnx_type_name(int32_t t, char *buf, size_t size) {
    static const char *names[] = {"UNDEFINED", "FLOAT",  "UINT8",     "INT8",       "UINT16",  "INT16",
                                  "INT32",     "INT64",  "STRING",    "BOOL",       "FLOAT16", "DOUBLE",
                                  "UINT32",    "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
    if (t >= 0 && t < (int32_t)(sizeof names / sizeof names[0])) return names[t];
    snprintf(buf, size, "type %d", (int)t);
    return buf;
}

/* Rejects locations that could leave the model directory: absolute paths and any ".."
 * component. A symlink pointing outside is caught later by comparing real paths. */
static bool location_is_safe(const char *loc) {
    if (!*loc || loc[0] == '/' || loc[0] == '\\') return false;
    const char *s = loc;
    while (*s) {
        const char *e = s;
        while (*e && *e != '/' && *e != '\\') e++;
        if (e - s == 2 && s[0] == '.' && s[1] == '.') return false;
        s = *e ? e + 1 : e;
    }
    return true;
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v)) return false;
    }
    *out = v;
    return true;
}

/* Reads the tensor's bytes from its external file into a buffer allocated only after the
 * file is known to hold them (a hostile model may claim huge dims with no data behind them). */
static kiln_status read_external(const Onnx__TensorProto *tp, const char *base_dir, size_t bytes, void **out,
                                 char *err, size_t errsz) {
    *out = NULL;
    const char *loc = NULL, *off_s = NULL, *len_s = NULL;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        if (!e || !e->key) continue;
        if (strcmp(e->key, "location") == 0)
            loc = e->value;
        else if (strcmp(e->key, "offset") == 0)
            off_s = e->value;
        else if (strcmp(e->key, "length") == 0)
            len_s = e->value;
    }
    if (!loc) return fail(err, errsz, KILN_ERR_FORMAT, "external data without a 'location'");
    if (!base_dir)
        return fail(err, errsz, KILN_ERR_INVALID_ARGUMENT,
                    "external data '%s' needs the model's directory (parse from a file, or pass base_dir)", loc);
    if (!location_is_safe(loc))
        return fail(err, errsz, KILN_ERR_FORMAT, "external data location '%s' leaves the model directory", loc);
    uint64_t offset = 0, length = bytes;
    if (off_s && !parse_u64(off_s, &offset))
        return fail(err, errsz, KILN_ERR_FORMAT, "external data offset '%s' is not a number", off_s);
    if (len_s && !parse_u64(len_s, &length))
        return fail(err, errsz, KILN_ERR_FORMAT, "external data length '%s' is not a number", len_s);
    if (length != bytes)
        return fail(err, errsz, KILN_ERR_FORMAT, "external data '%s' has length %llu, the tensor needs %zu bytes", loc,
                    (unsigned long long)length, bytes);
    size_t plen = strlen(base_dir) + strlen(loc) + 2;
    char *path = malloc(plen);
    if (!path) return fail(err, errsz, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    snprintf(path, plen, "%s/%s", base_dir, loc);
    kiln_status st = KILN_OK;
    char *real_base = realpath(base_dir, NULL);
    char *real_file = realpath(path, NULL);
    if (!real_file) {
        st = fail(err, errsz, KILN_ERR_IO, "external data file '%s' cannot be opened: %s", path, strerror(errno));
    } else if (!real_base || strncmp(real_file, real_base, strlen(real_base)) != 0 ||
               (real_file[strlen(real_base)] != '/' && strcmp(real_base, "/") != 0)) {
        st = fail(err, errsz, KILN_ERR_FORMAT, "external data '%s' resolves outside the model directory", loc);
    }
    FILE *f = st == KILN_OK ? fopen(real_file, "rb") : NULL;
    if (st == KILN_OK && !f)
        st = fail(err, errsz, KILN_ERR_IO, "external data file '%s' cannot be opened: %s", path, strerror(errno));
    if (f) {
        struct stat sb;
        if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
            st = fail(err, errsz, KILN_ERR_IO, "external data '%s' is not a regular file", path);
        } else if (offset > (uint64_t)sb.st_size || bytes > (uint64_t)sb.st_size - offset) {
            st = fail(err, errsz, KILN_ERR_FORMAT,
                      "external data '%s' is %lld bytes, too short for %zu bytes at offset %llu", path,
                      (long long)sb.st_size, bytes, (unsigned long long)offset);
        } else if (!(*out = malloc(bytes ? bytes : 1))) {
            st = fail(err, errsz, KILN_ERR_OUT_OF_MEMORY, "out of host memory for %zu bytes of external data '%s'",
                      bytes, path);
        } else if (offset > (uint64_t)LONG_MAX || fseek(f, (long)offset, SEEK_SET) != 0 ||
                   fread(*out, 1, bytes, f) != bytes) {
            st = fail(err, errsz, KILN_ERR_IO, "external data '%s' could not be read", path);
            free(*out);
            *out = NULL;
        }
        fclose(f);
    }
    free(real_base);
    free(real_file);
    free(path);
    return st;
}

kiln_status ox_tensor_decode(const Onnx__TensorProto *tp, const char *base_dir, kiln_dtype *dtype, kiln_dims *dims,
                             void **data, char *err, size_t errsz) {
    *data = NULL;
    char tbuf[24];
    if (!tp->has_data_type || tp->data_type == T(UNDEFINED))
        return fail(err, errsz, KILN_ERR_FORMAT, "tensor has no data type");
    kiln_dtype dt;
    if (!ox_dtype_from_onnx(tp->data_type, &dt))
        return fail(err, errsz, KILN_ERR_UNSUPPORTED, "data type %s is not supported",
                    ox_onnx_type_name(tp->data_type, tbuf, sizeof tbuf));
    if (tp->n_dims > KILN_MAX_DIMS)
        return fail(err, errsz, KILN_ERR_UNSUPPORTED, "rank %zu exceeds kiln's maximum of %d", tp->n_dims,
                    KILN_MAX_DIMS);
    if (tp->segment) return fail(err, errsz, KILN_ERR_UNSUPPORTED, "segmented tensors are not supported");
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.nb_dims = (int32_t)tp->n_dims;
    int64_t count = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0) return fail(err, errsz, KILN_ERR_FORMAT, "dimension %zu is negative", i);
        d.d[i] = tp->dims[i];
        if (__builtin_mul_overflow(count, tp->dims[i], &count))
            return fail(err, errsz, KILN_ERR_FORMAT, "element count overflows");
    }
    if (count > INT64_MAX / 16) return fail(err, errsz, KILN_ERR_FORMAT, "element count overflows");
    size_t bytes = (size_t)count * kiln_dtype_size(dt);

    bool external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    /* Check that the stored data matches before allocating anything: a hostile file
     * may claim huge dims with no data behind them. */
    if (external) {
        /* checked against the file when read */
    } else if (tp->has_raw_data) {
        if (tp->raw_data.len != bytes)
            return fail(err, errsz, KILN_ERR_FORMAT, "raw_data holds %zu bytes, %lld elements of %s need %zu",
                        tp->raw_data.len, (long long)count, kiln_dtype_name(dt), bytes);
    } else {
        const char *field;
        size_t n = 0;
        switch (dt) {
        case KILN_FLOAT32:
            n = tp->n_float_data;
            field = "float_data";
            break;
        case KILN_INT64:
            n = tp->n_int64_data;
            field = "int64_data";
            break;
        case KILN_FLOAT64:
            n = tp->n_double_data;
            field = "double_data";
            break;
        default:
            n = tp->n_int32_data;
            field = "int32_data";
            break;
        }
        if ((int64_t)n != count)
            return fail(err, errsz, KILN_ERR_FORMAT, "%s holds %zu values, dims need %lld", field, n, (long long)count);
    }
    void *buf = NULL;
    if (external) {
        kiln_status st = read_external(tp, base_dir, bytes, &buf, err, errsz);
        if (st != KILN_OK) return st;
    } else if (!(buf = malloc(bytes ? bytes : 1))) {
        return fail(err, errsz, KILN_ERR_OUT_OF_MEMORY, "out of host memory for %zu bytes", bytes);
    } else if (tp->has_raw_data) {
        if (bytes) memcpy(buf, tp->raw_data.data, bytes);
    } else {
        for (int64_t i = 0; i < count; i++) {
            switch (dt) {
            case KILN_FLOAT32:
                ((float *)buf)[i] = tp->float_data[i];
                break;
            case KILN_INT64:
                ((int64_t *)buf)[i] = tp->int64_data[i];
                break;
            case KILN_FLOAT64:
                ((double *)buf)[i] = tp->double_data[i];
                break;
            case KILN_INT32:
                ((int32_t *)buf)[i] = tp->int32_data[i];
                break;
            case KILN_INT8:
                ((int8_t *)buf)[i] = (int8_t)tp->int32_data[i];
                break;
            case KILN_UINT8:
                ((uint8_t *)buf)[i] = (uint8_t)tp->int32_data[i];
                break;
            case KILN_BOOL:
                ((uint8_t *)buf)[i] = tp->int32_data[i] != 0;
                break;
            case KILN_FLOAT16:
            case KILN_BFLOAT16:
                ((uint16_t *)buf)[i] = (uint16_t)tp->int32_data[i];
                break;
            }
        }
    }
    if (dt == KILN_BOOL) /* kiln bools are 0 or 1; raw bytes might not be */
        for (int64_t i = 0; i < count; i++) ((uint8_t *)buf)[i] = ((uint8_t *)buf)[i] != 0;
    *dtype = dt;
    *dims = d;
    *data = buf;
    return KILN_OK;
}

static bool read_varint(const uint8_t *p, size_t len, size_t *at, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*at >= len) return false;
        uint8_t b = p[(*at)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

bool ox_proto_depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, int max_depth) {
    if (max_depth < 0) return false;
    size_t at = 0;
    while (at < len) {
        uint64_t key, v;
        if (!read_varint(data, len, &at, &key)) return true;
        switch (key & 7) {
        case 0:
            if (!read_varint(data, len, &at, &v)) return true;
            break;
        case 1:
            at += 8;
            break;
        case 5:
            at += 4;
            break;
        case 2: {
            if (!read_varint(data, len, &at, &v) || v > len - at) return true;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3)) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !ox_proto_depth_ok(f->descriptor, data + at, (size_t)v, max_depth - 1))
                return false;
            at += (size_t)v;
            break;
        }
        default: return true; /* groups or garbage: unpack rejects them */
        }
    }
    return true;
}

kiln_status ox_read_whole_file(const char *path, void **data, size_t *size, char *err, size_t errsz) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errsz, KILN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return fail(err, errsz, KILN_ERR_IO, "'%s' is not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    void *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return fail(err, errsz, KILN_ERR_OUT_OF_MEMORY, "out of host memory reading '%s' (%zu bytes)", path, n);
    }
    size_t got = n ? fread(buf, 1, n, f) : 0;
    fclose(f);
    if (got != n) {
        free(buf);
        return fail(err, errsz, KILN_ERR_IO, "could not read '%s'", path);
    }
    *data = buf;
    *size = n;
    return KILN_OK;
}

kiln_status ox_tensor_read_file(const char *path, char **name_out, kiln_dtype *dtype, kiln_dims *dims, void **data,
                                char *err, size_t errsz) {
    if (name_out) *name_out = NULL;
    *data = NULL;
    void *bytes;
    size_t size;
    kiln_status st = ox_read_whole_file(path, &bytes, &size, err, errsz);
    if (st != KILN_OK) return st;
    Onnx__TensorProto *tp = ox_proto_depth_ok(&onnx__tensor_proto__descriptor, bytes, size, OX_MAX_PROTO_DEPTH)
                                ? onnx__tensor_proto__unpack(NULL, size, bytes)
                                : NULL;
    free(bytes);
    if (!tp) return fail(err, errsz, KILN_ERR_FORMAT, "'%s' is not a serialized ONNX TensorProto", path);
    /* base_dir: the file's directory, for test data that points at external files */
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *slash = 0;
    char inner[400];
    st = ox_tensor_decode(tp, dir ? (slash ? dir : ".") : NULL, dtype, dims, data, inner, sizeof inner);
    free(dir);
    if (st != KILN_OK) {
        fail(err, errsz, st, "'%s': %s", path, inner);
    } else if (name_out && tp->name && *tp->name) {
        *name_out = strdup(tp->name);
        if (!*name_out) {
            free(*data);
            *data = NULL;
            st = fail(err, errsz, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
        }
    }
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return st;
}

kiln_status ox_tensor_write_file(const char *path, const char *name, kiln_dtype dtype, kiln_dims dims, const void *data,
                                 char *err, size_t errsz) {
    int32_t ot = ox_dtype_to_onnx(dtype);
    if (ot == T(UNDEFINED)) return fail(err, errsz, KILN_ERR_DTYPE, "unknown dtype %d", (int)dtype);
    if (dims.nb_dims < 0 || dims.nb_dims > KILN_MAX_DIMS)
        return fail(err, errsz, KILN_ERR_SHAPE, "rank %d is outside 0..%d", dims.nb_dims, KILN_MAX_DIMS);
    int64_t count = kiln_dims_volume(&dims);
    if (count < 0) return fail(err, errsz, KILN_ERR_SHAPE, "dims are not all known and non-negative");
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    int64_t d[KILN_MAX_DIMS];
    for (int i = 0; i < dims.nb_dims; i++) d[i] = dims.d[i];
    tp.n_dims = (size_t)dims.nb_dims;
    tp.dims = d;
    tp.has_data_type = 1;
    tp.data_type = ot;
    tp.name = (char *)(name ? name : "");
    tp.has_raw_data = 1;
    tp.raw_data.len = (size_t)count * kiln_dtype_size(dtype);
    tp.raw_data.data = (uint8_t *)data;
    size_t len = onnx__tensor_proto__get_packed_size(&tp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return fail(err, errsz, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    onnx__tensor_proto__pack(&tp, buf);
    FILE *f = fopen(path, "wb");
    kiln_status st = KILN_OK;
    if (!f)
        st = fail(err, errsz, KILN_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    else {
        if (fwrite(buf, 1, len, f) != len) st = fail(err, errsz, KILN_ERR_IO, "could not write '%s'", path);
        if (fclose(f) != 0 && st == KILN_OK) st = fail(err, errsz, KILN_ERR_IO, "could not write '%s'", path);
    }
    free(buf);
    return st;
}
