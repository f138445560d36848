/* kiln command line: declarations shared by the subcommands (kiln.c dispatches to the
 * cmd_*.c files) and their helpers: errors and logging, option parsing, host tensors,
 * file formats (.npy, TensorProto .pb, images), model loading, JSON output. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/kiln.h"
#include "kiln/onnx.h" /* declarations only: calls are made when KILN_CLI_HAVE_ONNX */

/* Exit statuses: 2 for a command line the tool cannot act on (unknown option, missing
 * argument, unknown input name), 1 for a failure while doing the work. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

#define CLI_MAX_IO 256

/* ---- the invocation: verbosity and the name errors are reported under ---- */

typedef struct cli {
    const char *cmd;   /* "build", "run", ...; NULL for the top level */
    int verbosity;     /* 0 --quiet, 1 default, 2 --verbose */
    bool progress;     /* stderr is a terminal and not --quiet */
} cli;

/* One line on stderr, "kiln CMD: message", newlines in the message flattened; returns
 * CLI_FAIL. Every failure goes through here (or cli_usage), so a failing command prints
 * exactly one line. */
int cli_fail(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with "(see 'kiln CMD --help')" appended; returns CLI_USAGE. */
int cli_usage(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "kiln CMD: warning: ..." unless --quiet. */
void cli_warn(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Only with --verbose. */
void cli_info(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An importer message without its "<memory>: " or "PATH: " prefix (the tool names the
 * file itself). */
const char *cli_strip_label(const char *msg, const char *path);
/* The library's last error, single line, never empty. */
const char *cli_last_error(void);

/* Logger for builders and runtimes: warnings and info go to stderr; errors are dropped
 * unless --verbose, because the tool reports them itself (one line per failure). */
void cli_log(void *user, kiln_log_level level, const char *msg);
kiln_log_level cli_log_level(const cli *c);

double cli_now_ms(void);
/* "1.5 MiB". */
const char *cli_human_bytes(double bytes, char *buf, size_t size);

/* ---- option parsing ---- */

typedef struct cli_opt {
    const char *name;  /* "--iterations" */
    const char *alias; /* "-n" or NULL */
    bool value;        /* takes a value (--x V or --x=V) */
} cli_opt;

enum { CLI_ARG_END = -1, CLI_ARG_POSITIONAL = -2, CLI_ARG_ERROR = -3 };

typedef struct cli_args {
    int argc;
    char **argv;
    int i;
    bool only_positional; /* after "--" */
} cli_args;

/* The index in opts of the next option (its value in *value), CLI_ARG_POSITIONAL (the
 * argument in *value), CLI_ARG_END, or CLI_ARG_ERROR after printing a usage error.
 * opts ends with a {NULL} entry. */
int cli_next(const cli *c, cli_args *a, const cli_opt *opts, const char **value);

/* Value parsers: false after printing a usage error naming the option. */
bool cli_parse_int(const cli *c, const char *opt, const char *s, int64_t min, int64_t max, int64_t *out);
bool cli_parse_double(const cli *c, const char *opt, const char *s, double min, double max, double *out);
bool cli_parse_device(const cli *c, const char *s, kiln_device *out);
/* "1x3x224x224" (also "1,3,224,224" and "scalar"). */
bool cli_parse_dims(const char *s, kiln_dims *out);
const char *cli_dims_str(const kiln_dims *d, char *buf, size_t size);

/* Options every model-loading command shares. */
typedef struct shape_spec {
    char *name;
    kiln_dims dims;
} shape_spec;

typedef struct layer_precision {
    char *name;
    kiln_dtype dtype;
} layer_precision;

typedef struct build_opts {
    kiln_device device;
    bool fp16, tf32;
    bool no_range_check; /* --no-range-check: KILN_FLAG_NO_RANGE_CHECK */
    size_t workspace_bytes; /* 0: no limit */
    int threads;            /* CPU threads per context; 0: all cores */
    int64_t batch;          /* 0: as the model says */
    shape_spec shapes[CLI_MAX_IO];
    int nb_shapes;
    const char *timing_cache;
    layer_precision precisions[CLI_MAX_IO];
    int nb_precisions;
    bool all_layers; /* mark every tensor as an output (compare --all-layers) */
    bool device_set; /* --device given */
} build_opts;

/* The options of every command that builds an engine from an ONNX model (build, run, bench,
 * compare), for its option table. */
#define CLI_BUILD_OPTS                                                                                        \
    {"--device", NULL, true}, {"--fp16", NULL, false}, {"--tf32", NULL, false}, {"--no-range-check", NULL, false}, \
        {"--shapes", NULL, true}, {"--batch", NULL, true}, {"--threads", NULL, true}, {"--timing-cache", NULL, true}
/* Handles one of CLI_BUILD_OPTS: true when `name` is one (*rc = CLI_USAGE on a bad value). */
bool cli_build_option(const cli *c, const char *name, const char *value, build_opts *o, int *rc);

/* Adds "--shapes a:1x3x8x8,b:2x4" entries. */
bool cli_add_shapes(const cli *c, build_opts *o, const char *spec);
bool cli_add_layer_precision(const cli *c, build_opts *o, const char *spec);
void build_opts_free(build_opts *o);

/* ---- host tensors ---- */

typedef struct host_tensor {
    char *name;
    kiln_dtype dtype;
    kiln_dims dims;
    void *data; /* malloc */
} host_tensor;

size_t tensor_bytes(const host_tensor *t);
int64_t tensor_count(const host_tensor *t);
void tensor_free(host_tensor *t);
double tensor_get(kiln_dtype dt, const void *data, int64_t i);
void tensor_set(kiln_dtype dt, void *data, int64_t i, double v);
bool dtype_is_float(kiln_dtype dt);
bool dims_equal(const kiln_dims *a, const kiln_dims *b);
/* Converts t in place to dtype; false (reason in err) when the conversion would change
 * the meaning (floating point data into an integer input). */
bool tensor_convert(host_tensor *t, kiln_dtype to, char *err, size_t errsz);
/* Deterministic random data for an input: floats uniform in [-1, 1), integers in
 * [0, 4), bools 0/1. */
bool tensor_random(host_tensor *t, const char *name, kiln_dtype dtype, kiln_dims dims, uint64_t *seed);

typedef struct tensor_stats {
    double min, max, mean;
    int64_t nan, inf, count;
} tensor_stats;
tensor_stats tensor_statistics(kiln_dtype dt, const void *data, int64_t n);

/* ---- files ---- */

typedef enum file_kind { FILE_NPY, FILE_PB, FILE_IMAGE, FILE_UNKNOWN } file_kind;
/* By extension; FILE_UNKNOWN when it has none kiln knows. */
file_kind cli_file_kind(const char *path);

/* .npy (npy.c): version 1-3 headers, little-endian or byte-sized types, C order. */
bool npy_read(const char *path, host_tensor *out, char *err, size_t errsz);
/* Writes to a temporary name in the same directory, renamed at the end. */
bool npy_write(const char *path, kiln_dtype dtype, const kiln_dims *dims, const void *data, char *err, size_t errsz);
/* Writes the bytes of an .npy file to f (npy_write's body; tmp handling is the caller's). */
bool npy_write_stream(FILE *f, kiln_dtype dtype, const kiln_dims *dims, const void *data);

/* Tensor files by extension: .npy, or .pb (ONNX TensorProto; needs the importer). */
bool tensor_read_file(const char *path, host_tensor *out, char *err, size_t errsz);

/* Images (image.c): PNG and JPEG, decoded to RGB. */
typedef enum preprocess { PRE_IMAGENET = 0, PRE_UNIT, PRE_NONE } preprocess;
bool cli_parse_preprocess(const cli *c, const char *s, preprocess *out);
/* Width and height of an image file. */
bool image_size(const char *path, int64_t *width, int64_t *height, char *err, size_t errsz);
/* Decodes, converts to `channels` (1: grey, 3: RGB), resizes bilinearly (half-pixel
 * centres, as OpenCV INTER_LINEAR) to height x width and writes channels x height x width
 * float32 values, planar, preprocessed. */
bool image_load(const char *path, int channels, int64_t height, int64_t width, preprocess pre, float *out, char *err,
                size_t errsz);
bool image_support(const char *path, char *err, size_t errsz);

/* Writes through a temporary file: open, write, then commit (rename) or abort (remove). */
typedef struct atomic_file {
    FILE *f;
    char *tmp;
    char *path;
} atomic_file;
bool atomic_open(atomic_file *af, const char *path);
bool atomic_commit(atomic_file *af); /* false: nothing left behind */
void atomic_abort(atomic_file *af);

/* Reads a whole file; false with strerror in err. */
bool cli_read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t errsz);
bool cli_is_dir(const char *path);
bool cli_mkdirs(const char *path, char *err, size_t errsz);
/* A file name for a tensor name: [A-Za-z0-9._-] kept, anything else '_', no leading '.',
 * at most 200 bytes. */
void cli_sanitize_name(const char *name, char *out, size_t size);

/* ---- ONNX model facts (onnx_model.c), from the importer's kiln_onnx_read_model_info ---- */

bool have_onnx(void);
/* Reads the model's facts; false with a reason (not ONNX, truncated; without the "<memory>:"
 * prefix) in err. *out is released with kiln_onnx_model_info_destroy. */
bool model_info_read(const uint8_t *data, size_t size, kiln_onnx_model_info **out, char *err, size_t errsz);
/* "batchx3x224x224" from a declared shape ("scalar", "unknown" when no shape is given). */
const char *model_dims_str(const kiln_onnx_value_info *v, char *buf, size_t size);

/* ---- loading a model (plan or ONNX) into an engine: model.c ---- */

/* What the user gave for an input before the engine exists. */
typedef struct input_spec {
    char *name;
    char *path;
    file_kind kind;
    host_tensor t;        /* .npy / .pb: loaded */
    int64_t img_w, img_h; /* images: size */
} input_spec;

typedef struct input_set {
    input_spec in[CLI_MAX_IO];
    int n;
    bool random;     /* --random-inputs */
    uint64_t seed;
    preprocess pre;
} input_set;

/* Adds "NAME=FILE" (reads tensor files now, images later); false after an error
 * (usage: exit 2 in *code; unreadable file: 1). */
bool input_set_add(const cli *c, input_set *s, const char *spec, int *code);
void input_set_free(input_set *s);

typedef struct loaded_model {
    kiln_engine *engine;
    bool is_plan;
    kiln_onnx_model_info *info; /* ONNX models: the model's facts */
    int layers_before; /* network layers before the build (ONNX only) */
    int consts_before; /* of which constants */
    double parse_ms, build_ms;
    /* compare --all-layers: tensors marked as outputs, with their layer, in network order */
    int nb_marked;
    char **marked_tensor;
    char **marked_layer;
} loaded_model;

/* Is this a kiln plan (magic bytes)? */
bool is_plan_file(const uint8_t *data, size_t size);

/* Loads path (plan or ONNX) into an engine. ONNX inputs with symbolic dimensions take
 * their shapes from --shapes, then from the input files in `inputs` (NULL: none), then
 * --batch for a symbolic first dimension. When `progress`: a line per phase (parse, build)
 * and, while building, the library's progress redrawn in place. Returns CLI_OK or an exit
 * status after printing the error. */
int load_model(const cli *c, const char *path, const build_opts *o, const input_set *inputs, bool progress,
               loaded_model *out);
void loaded_model_free(loaded_model *m);

/* Host buffers for every input and output of an engine, inputs filled from `inputs`
 * (converted to the engine's dtype, shapes checked) or random data when allowed. */
typedef struct io_buffers {
    int n;
    const char *name[CLI_MAX_IO]; /* the engine's strings */
    kiln_io_mode mode[CLI_MAX_IO];
    kiln_dtype dtype[CLI_MAX_IO];
    kiln_dims dims[CLI_MAX_IO];
    void *data[CLI_MAX_IO];
    size_t bytes[CLI_MAX_IO];
    bool random[CLI_MAX_IO];
} io_buffers;

/* random_ok: fill inputs not given with random data (else a usage error names them). */
int io_prepare(const cli *c, kiln_engine *e, const input_set *inputs, bool random_ok, io_buffers *io);
void io_free(io_buffers *io);
/* Creates a context with host I/O memory and binds every buffer. */
int io_bind(const cli *c, kiln_engine *e, io_buffers *io, kiln_context **ctx);
int io_index(const io_buffers *io, const char *name);

/* ---- JSON output ---- */

typedef struct json {
    FILE *f;
    int depth;
    bool first[32];
    bool after_key;
} json;

void json_begin_object(json *j);
void json_end_object(json *j);
void json_begin_array(json *j);
void json_end_array(json *j);
void json_key(json *j, const char *key);
void json_str(json *j, const char *s);
void json_num(json *j, double v); /* null for NaN / Inf */
void json_int(json *j, int64_t v);
void json_bool(json *j, bool v);
void json_null(json *j);
void json_dims(json *j, const kiln_dims *d);
/* Opens FILE for a JSON document ("-": stdout). */
bool json_open(const cli *c, json *j, atomic_file *af, const char *path);
/* Finishes: commits the file. Returns CLI_OK or CLI_FAIL after an error. */
int json_close(const cli *c, json *j, atomic_file *af, const char *path);

/* ---- subcommands ---- */

int cmd_build(cli *c, int argc, char **argv);
int cmd_run(cli *c, int argc, char **argv);
int cmd_bench(cli *c, int argc, char **argv);
int cmd_compare(cli *c, int argc, char **argv);
int cmd_inspect(cli *c, int argc, char **argv);
int cmd_onnx_test(cli *c, int argc, char **argv);

/* Handles --help/--quiet/--verbose, common to every subcommand: returns true when opt
 * was one of them (help printed: *exit_now set). */
bool cli_common_option(cli *c, const char *opt, const char *help, bool *exit_now);
#define CLI_COMMON_OPTS {"--help", "-h", false}, {"--quiet", "-q", false}, {"--verbose", "-v", false}

#endif
