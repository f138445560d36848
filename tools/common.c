/* kiln command line: the helpers every subcommand uses: one-line errors, the library
 * logger, option parsing, temporary-then-rename files, JSON output, host tensors. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- messages ---- */

static void vline(const cli *c, const char *kind, const char *suffix, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fflush(stdout); /* keep the order of the two streams when both go to one file */
    fprintf(stderr, "kiln%s%s: %s%s%s\n", c && c->cmd ? " " : "", c && c->cmd ? c->cmd : "", kind, msg, suffix);
}

int cli_fail(const cli *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vline(c, "", "", fmt, ap);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage(const cli *c, const char *fmt, ...) {
    char suffix[96];
    snprintf(suffix, sizeof suffix, " (see 'kiln%s%s --help')", c && c->cmd ? " " : "", c && c->cmd ? c->cmd : "");
    va_list ap;
    va_start(ap, fmt);
    vline(c, "", suffix, fmt, ap);
    va_end(ap);
    return CLI_USAGE;
}

void cli_warn(const cli *c, const char *fmt, ...) {
    if (c->verbosity < 1) return;
    va_list ap;
    va_start(ap, fmt);
    vline(c, "warning: ", "", fmt, ap);
    va_end(ap);
}

void cli_info(const cli *c, const char *fmt, ...) {
    if (c->verbosity < 2) return;
    va_list ap;
    va_start(ap, fmt);
    vline(c, "", "", fmt, ap);
    va_end(ap);
}

const char *cli_last_error(void) {
    const char *e = kiln_last_error();
    return e && *e ? e : "unknown error";
}

const char *cli_strip_label(const char *msg, const char *path) {
    size_t plen = strlen(path);
    if (strncmp(msg, "<memory>:", 9) == 0) msg += 9;
    else if (strncmp(msg, path, plen) == 0 && msg[plen] == ':') msg += plen + 1;
    while (*msg == ' ') msg++;
    return msg;
}

void cli_log(void *user, kiln_log_level level, const char *msg) {
    const cli *c = user;
    if (level == KILN_LOG_ERROR && c->verbosity < 2) return; /* reported by the tool itself */
    static const char *names[] = {"error", "warning", "info", "verbose"};
    fprintf(stderr, "kiln%s%s: %s: %s\n", c->cmd ? " " : "", c->cmd ? c->cmd : "",
            names[(unsigned)level <= KILN_LOG_VERBOSE ? level : 0], msg);
}

kiln_log_level cli_log_level(const cli *c) {
    return c->verbosity <= 0 ? KILN_LOG_ERROR : c->verbosity == 1 ? KILN_LOG_WARNING : KILN_LOG_VERBOSE;
}

double cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const char *cli_human_bytes(double b, char *buf, size_t size) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, u++;
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

/* ---- option parsing ---- */

int cli_next(const cli *c, cli_args *a, const cli_opt *opts, const char **value) {
    *value = NULL;
    if (a->i >= a->argc) return CLI_ARG_END;
    const char *arg = a->argv[a->i++];
    if (a->only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
        *value = arg;
        return CLI_ARG_POSITIONAL;
    }
    if (strcmp(arg, "--") == 0) {
        a->only_positional = true;
        return cli_next(c, a, opts, value);
    }
    const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    for (int k = 0; opts[k].name; k++) {
        bool match = (strlen(opts[k].name) == len && strncmp(arg, opts[k].name, len) == 0) ||
                     (opts[k].alias && !eq && strcmp(arg, opts[k].alias) == 0);
        if (!match) continue;
        if (!opts[k].value) {
            if (eq) {
                cli_usage(c, "option %s takes no value", opts[k].name);
                return CLI_ARG_ERROR;
            }
            return k;
        }
        if (eq) {
            *value = eq + 1;
        } else if (a->i < a->argc) {
            *value = a->argv[a->i++];
        } else {
            cli_usage(c, "option %s needs a value", opts[k].name);
            return CLI_ARG_ERROR;
        }
        return k;
    }
    cli_usage(c, "unknown option '%.*s'", (int)len, arg);
    return CLI_ARG_ERROR;
}

bool cli_parse_int(const cli *c, const char *opt, const char *s, int64_t min, int64_t max, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) {
        cli_usage(c, "%s: '%s' is not an integer in [%lld, %lld]", opt, s, (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_double(const cli *c, const char *opt, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= min && v <= max)) {
        cli_usage(c, "%s: '%s' is not a number in [%g, %g]", opt, s, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_device(const cli *c, const char *s, kiln_device *out) {
    if (strcmp(s, "cpu") == 0) *out = KILN_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0 || strcmp(s, "gpu") == 0) *out = KILN_DEVICE_CUDA;
    else {
        cli_usage(c, "--device: '%s' is not cpu or cuda", s);
        return false;
    }
    return true;
}

bool cli_parse_dims(const char *s, kiln_dims *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(s, "scalar") == 0) return true;
    const char *p = s;
    while (*p) {
        if (out->nb_dims == KILN_MAX_DIMS) return false;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > ((int64_t)1 << 40)) return false;
        out->d[out->nb_dims++] = v;
        p = end;
        if (*p == 'x' || *p == 'X' || *p == ',') {
            p++;
            if (!*p) return false;
        } else if (*p) {
            return false;
        }
    }
    return out->nb_dims > 0;
}

const char *cli_dims_str(const kiln_dims *d, char *buf, size_t size) {
    if (d->nb_dims < 0) {
        snprintf(buf, size, "?");
        return buf;
    }
    if (d->nb_dims == 0) {
        snprintf(buf, size, "scalar");
        return buf;
    }
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < d->nb_dims && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? "x%lld" : "%lld", (long long)d->d[i]);
    return buf;
}

bool cli_build_option(const cli *c, const char *name, const char *v, build_opts *o, int *rc) {
    int64_t n = 0;
    if (strcmp(name, "--device") == 0) {
        if (!cli_parse_device(c, v, &o->device)) *rc = CLI_USAGE;
        o->device_set = true;
    } else if (strcmp(name, "--fp16") == 0) {
        o->fp16 = true;
    } else if (strcmp(name, "--tf32") == 0) {
        o->tf32 = true;
    } else if (strcmp(name, "--no-range-check") == 0) {
        o->no_range_check = true;
    } else if (strcmp(name, "--shapes") == 0) {
        if (!cli_add_shapes(c, o, v)) *rc = CLI_USAGE;
    } else if (strcmp(name, "--batch") == 0) {
        if (!cli_parse_int(c, name, v, 1, 1 << 24, &o->batch)) *rc = CLI_USAGE;
    } else if (strcmp(name, "--threads") == 0) {
        if (!cli_parse_int(c, name, v, 0, 1024, &n)) *rc = CLI_USAGE;
        o->threads = (int)n;
    } else if (strcmp(name, "--timing-cache") == 0) {
        o->timing_cache = v;
    } else {
        return false;
    }
    return true;
}

bool cli_add_shapes(const cli *c, build_opts *o, const char *spec) {
    char *copy = strdup(spec);
    if (!copy) return cli_fail(c, "out of memory"), false;
    bool ok = true;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
        /* the name may hold ':' itself (TensorFlow-style "input:0"): split at the last one */
        char *colon = strrchr(item, ':');
        kiln_dims d;
        if (!colon || colon == item || !cli_parse_dims(colon + 1, &d)) {
            cli_usage(c, "--shapes: '%s' is not NAME:DIMS (as input:1x3x224x224)", item);
            ok = false;
            break;
        }
        *colon = 0;
        int at = o->nb_shapes;
        for (int k = 0; k < o->nb_shapes; k++)
            if (strcmp(o->shapes[k].name, item) == 0) at = k;
        if (at == CLI_MAX_IO) {
            cli_usage(c, "--shapes: more than %d inputs", CLI_MAX_IO);
            ok = false;
            break;
        }
        if (at == o->nb_shapes) {
            o->shapes[at].name = strdup(item);
            if (!o->shapes[at].name) {
                ok = false;
                cli_fail(c, "out of memory");
                break;
            }
            o->nb_shapes++;
        }
        o->shapes[at].dims = d;
    }
    free(copy);
    return ok;
}

bool cli_add_layer_precision(const cli *c, build_opts *o, const char *spec) {
    char *copy = strdup(spec);
    if (!copy) return cli_fail(c, "out of memory"), false;
    bool ok = true;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(item, ':');
        kiln_dtype dt = KILN_FLOAT32;
        if (colon && strcmp(colon + 1, "fp32") == 0) dt = KILN_FLOAT32;
        else if (colon && strcmp(colon + 1, "fp16") == 0) dt = KILN_FLOAT16;
        else if (colon && strcmp(colon + 1, "bf16") == 0) dt = KILN_BFLOAT16;
        else if (colon && strcmp(colon + 1, "int8") == 0) dt = KILN_INT8;
        else colon = NULL;
        if (!colon || colon == item) {
            cli_usage(c, "--layer-precision: '%s' is not LAYER:fp32|fp16|bf16|int8", item);
            ok = false;
            break;
        }
        *colon = 0;
        if (o->nb_precisions == CLI_MAX_IO) {
            cli_usage(c, "--layer-precision: more than %d layers", CLI_MAX_IO);
            ok = false;
            break;
        }
        o->precisions[o->nb_precisions].name = strdup(item);
        o->precisions[o->nb_precisions].dtype = dt;
        if (!o->precisions[o->nb_precisions].name) {
            cli_fail(c, "out of memory");
            ok = false;
            break;
        }
        o->nb_precisions++;
    }
    free(copy);
    return ok;
}

void build_opts_free(build_opts *o) {
    for (int i = 0; i < o->nb_shapes; i++) free(o->shapes[i].name);
    for (int i = 0; i < o->nb_precisions; i++) free(o->precisions[i].name);
    o->nb_shapes = o->nb_precisions = 0;
}

bool cli_common_option(cli *c, const char *opt, const char *help, bool *exit_now) {
    *exit_now = false;
    if (strcmp(opt, "--help") == 0) {
        fputs(help, stdout);
        *exit_now = true;
        return true;
    }
    if (strcmp(opt, "--quiet") == 0) {
        c->verbosity = 0;
        c->progress = false;
        return true;
    }
    if (strcmp(opt, "--verbose") == 0) {
        c->verbosity = 2;
        return true;
    }
    return false;
}

/* ---- files ---- */

bool atomic_open(atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->tmp = malloc(n);
    af->path = strdup(path);
    if (!af->tmp || !af->path) {
        free(af->tmp);
        free(af->path);
        errno = ENOMEM;
        return false;
    }
    /* same directory as the target, so the rename cannot cross file systems */
    snprintf(af->tmp, n, "%s.kiln-tmp%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        int e = errno;
        free(af->tmp);
        free(af->path);
        af->tmp = af->path = NULL;
        errno = e;
        return false;
    }
    return true;
}

bool atomic_commit(atomic_file *af) {
    bool ok = af->f != NULL;
    int e = 0;
    if (af->f) {
        if (ferror(af->f)) ok = false, e = EIO;
        if (fclose(af->f) != 0 && ok) ok = false, e = errno;
        af->f = NULL;
    }
    if (ok && rename(af->tmp, af->path) != 0) ok = false, e = errno;
    if (!ok && af->tmp) remove(af->tmp);
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
    if (!ok) errno = e ? e : EIO;
    return ok;
}

void atomic_abort(atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) remove(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

bool cli_read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t errsz) {
    *data = NULL;
    *size = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(err, errsz, "%s", strerror(errno));
        return false;
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(err, errsz, "is a directory");
        return false;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "%s", strerror(errno));
        return false;
    }
    size_t cap = S_ISREG(sb.st_mode) && sb.st_size > 0 ? (size_t)sb.st_size : 65536, n = 0;
    uint8_t *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        uint8_t *nb = realloc(buf, 2 * cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errsz, "%s", buf ? "read error" : "out of memory");
        return false;
    }
    *data = buf;
    *size = n;
    return true;
}

bool cli_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

bool cli_mkdirs(const char *path, char *err, size_t errsz) {
    char buf[4096];
    if (!*path || strlen(path) >= sizeof buf) {
        snprintf(err, errsz, "%s", *path ? "path too long" : "empty directory name");
        return false;
    }
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char keep = *p;
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                snprintf(err, errsz, "cannot create directory '%s': %s", buf, strerror(errno));
                return false;
            }
            if (!keep) break;
            *p = keep;
        }
    }
    if (!cli_is_dir(path)) {
        snprintf(err, errsz, "'%s' exists and is not a directory", path);
        return false;
    }
    return true;
}

void cli_sanitize_name(const char *name, char *out, size_t size) {
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < size && n < 200; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '_' || ch == '-';
        out[n++] = ok ? ch : '_';
    }
    out[n] = 0;
    if (n == 0) snprintf(out, size, "_");
    else if (out[0] == '.') out[0] = '_'; /* no hidden files, no "." or ".." */
}

file_kind cli_file_kind(const char *path) {
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return FILE_UNKNOWN;
    if (strcasecmp(dot, ".npy") == 0) return FILE_NPY;
    if (strcasecmp(dot, ".pb") == 0) return FILE_PB;
    if (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0)
        return FILE_IMAGE;
    return FILE_UNKNOWN;
}

/* ---- JSON ---- */

static void json_sep(json *j) {
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (j->depth > 0) {
        if (!j->first[j->depth]) fputc(',', j->f);
        j->first[j->depth] = false;
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++) fputs("  ", j->f);
    }
}

static void json_open_c(json *j, char ch) {
    json_sep(j);
    fputc(ch, j->f);
    if (j->depth < 31) j->depth++;
    j->first[j->depth] = true;
}

static void json_close_c(json *j, char ch) {
    bool empty = j->first[j->depth];
    if (j->depth > 0) j->depth--;
    if (!empty) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++) fputs("  ", j->f);
    }
    fputc(ch, j->f);
    if (j->depth == 0) fputc('\n', j->f);
}

void json_begin_object(json *j) { json_open_c(j, '{'); }
void json_end_object(json *j) { json_close_c(j, '}'); }
void json_begin_array(json *j) { json_open_c(j, '['); }
void json_end_array(json *j) { json_close_c(j, ']'); }

static void json_raw_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void json_key(json *j, const char *key) {
    json_sep(j);
    json_raw_str(j->f, key);
    fputs(": ", j->f);
    j->after_key = true;
}

void json_str(json *j, const char *s) {
    json_sep(j);
    json_raw_str(j->f, s);
}

void json_num(json *j, double v) {
    json_sep(j);
    if (isfinite(v)) fprintf(j->f, "%.9g", v);
    else fputs("null", j->f);
}

void json_int(json *j, int64_t v) {
    json_sep(j);
    fprintf(j->f, "%lld", (long long)v);
}

void json_bool(json *j, bool v) {
    json_sep(j);
    fputs(v ? "true" : "false", j->f);
}

void json_null(json *j) {
    json_sep(j);
    fputs("null", j->f);
}

void json_dims(json *j, const kiln_dims *d) {
    json_begin_array(j);
    for (int i = 0; i < d->nb_dims; i++) json_int(j, d->d[i]);
    json_end_array(j);
}

bool json_open(const cli *c, json *j, atomic_file *af, const char *path) {
    memset(j, 0, sizeof *j);
    memset(af, 0, sizeof *af);
    if (strcmp(path, "-") == 0) {
        j->f = stdout;
        return true;
    }
    if (!atomic_open(af, path)) {
        cli_fail(c, "%s: cannot write: %s", path, strerror(errno));
        return false;
    }
    j->f = af->f;
    return true;
}

int json_close(const cli *c, json *j, atomic_file *af, const char *path) {
    if (j->f == stdout) {
        fflush(stdout);
        return CLI_OK;
    }
    if (!atomic_commit(af)) return cli_fail(c, "%s: cannot write: %s", path, strerror(errno));
    return CLI_OK;
}

/* ---- host tensors ---- */

int64_t tensor_count(const host_tensor *t) {
    int64_t v = kiln_dims_volume(&t->dims);
    return v < 0 ? 0 : v;
}

size_t tensor_bytes(const host_tensor *t) { return (size_t)tensor_count(t) * kiln_dtype_size(t->dtype); }

void tensor_free(host_tensor *t) {
    free(t->name);
    free(t->data);
    memset(t, 0, sizeof *t);
}

bool dtype_is_float(kiln_dtype dt) {
    return dt == KILN_FLOAT32 || dt == KILN_FLOAT64 || dt == KILN_FLOAT16 || dt == KILN_BFLOAT16;
}

bool dims_equal(const kiln_dims *a, const kiln_dims *b) {
    if (a->nb_dims != b->nb_dims) return false;
    for (int i = 0; i < a->nb_dims; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, overflow to infinity, subnormals kept. */
static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xff, man = x & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

double tensor_get(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_FLOAT32: return ((const float *)p)[i];
    case KILN_FLOAT64: return ((const double *)p)[i];
    case KILN_FLOAT16: return half_to_float(((const uint16_t *)p)[i]);
    case KILN_BFLOAT16: {
        uint32_t b = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    case KILN_INT64: return (double)((const int64_t *)p)[i];
    case KILN_INT32: return ((const int32_t *)p)[i];
    case KILN_INT8: return ((const int8_t *)p)[i];
    case KILN_UINT8:
    case KILN_BOOL: return ((const uint8_t *)p)[i];
    }
    return 0;
}

void tensor_set(kiln_dtype dt, void *p, int64_t i, double v) {
    switch (dt) {
    case KILN_FLOAT32: ((float *)p)[i] = (float)v; break;
    case KILN_FLOAT64: ((double *)p)[i] = v; break;
    case KILN_FLOAT16: ((uint16_t *)p)[i] = float_to_half((float)v); break;
    case KILN_BFLOAT16: {
        float f = (float)v;
        uint32_t b;
        memcpy(&b, &f, 4);
        b += 0x7fffu + ((b >> 16) & 1u); /* round to nearest even */
        ((uint16_t *)p)[i] = (uint16_t)(b >> 16);
        break;
    }
    case KILN_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
    case KILN_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
    case KILN_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
    case KILN_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case KILN_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    }
}

bool tensor_convert(host_tensor *t, kiln_dtype to, char *err, size_t errsz) {
    if (t->dtype == to) return true;
    if (dtype_is_float(t->dtype) && !dtype_is_float(to)) {
        snprintf(err, errsz, "holds %s values, the input is %s", kiln_dtype_name(t->dtype), kiln_dtype_name(to));
        return false;
    }
    int64_t n = tensor_count(t);
    void *nd = malloc(n ? (size_t)n * kiln_dtype_size(to) : 1);
    if (!nd) {
        snprintf(err, errsz, "out of memory");
        return false;
    }
    /* integers go through int64 so values above 2^53 survive */
    bool ints = !dtype_is_float(t->dtype) && !dtype_is_float(to);
    for (int64_t i = 0; i < n; i++) {
        if (ints && t->dtype == KILN_INT64) {
            int64_t v = ((const int64_t *)t->data)[i];
            if (to == KILN_INT32) ((int32_t *)nd)[i] = (int32_t)v;
            else tensor_set(to, nd, i, (double)v);
        } else {
            tensor_set(to, nd, i, tensor_get(t->dtype, t->data, i));
        }
    }
    free(t->data);
    t->data = nd;
    t->dtype = to;
    return true;
}

static uint64_t next_rand(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

bool tensor_random(host_tensor *t, const char *name, kiln_dtype dtype, kiln_dims dims, uint64_t *seed) {
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->dims = dims;
    t->name = strdup(name);
    int64_t n = tensor_count(t);
    t->data = malloc(n ? (size_t)n * kiln_dtype_size(dtype) : 1);
    if (!t->name || !t->data) {
        tensor_free(t);
        return false;
    }
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = next_rand(seed);
        double v;
        if (dtype_is_float(dtype)) v = (double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        else if (dtype == KILN_BOOL) v = (double)(r & 1);
        else v = (double)(r % 4);
        tensor_set(dtype, t->data, i, v);
    }
    return true;
}

tensor_stats tensor_statistics(kiln_dtype dt, const void *data, int64_t n) {
    tensor_stats s = {INFINITY, -INFINITY, 0, 0, 0, n};
    double sum = 0;
    int64_t finite = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = tensor_get(dt, data, i);
        if (isnan(v)) {
            s.nan++;
            continue;
        }
        if (isinf(v)) s.inf++;
        if (v < s.min) s.min = v;
        if (v > s.max) s.max = v;
        if (isfinite(v)) {
            sum += v;
            finite++;
        }
    }
    s.mean = finite ? sum / (double)finite : NAN;
    if (s.min > s.max) s.min = s.max = NAN;
    return s;
}
