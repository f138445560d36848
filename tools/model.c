/* kiln command line: turning a model file into an engine (a plan is loaded, an ONNX
 * model imported and built with the shapes the user's inputs imply), and host buffers for
 * an engine's inputs and outputs, filled from the user's files. */
#define _GNU_SOURCE
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"

#ifdef KILN_CLI_HAVE_ONNX
#include "kiln/onnx.h"
#endif

/* ---- input specifications ---- */

bool input_set_add(const cli *c, input_set *s, const char *spec, int *code) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) {
        *code = cli_usage(c, "--input: '%s' is not NAME=FILE", spec);
        return false;
    }
    if (s->n == CLI_MAX_IO) {
        *code = cli_usage(c, "--input: more than %d inputs", CLI_MAX_IO);
        return false;
    }
    input_spec *in = &s->in[s->n];
    memset(in, 0, sizeof *in);
    in->name = strndup(spec, (size_t)(eq - spec));
    in->path = strdup(eq + 1);
    if (!in->name || !in->path) {
        free(in->name);
        free(in->path);
        *code = cli_fail(c, "out of memory");
        return false;
    }
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->in[k].name, in->name) == 0) {
            *code = cli_usage(c, "--input: '%s' is given twice", in->name);
            free(in->name);
            free(in->path);
            return false;
        }
    char err[512];
    in->kind = cli_file_kind(in->path);
    bool ok;
    if (in->kind == FILE_IMAGE) ok = image_support(in->path, err, sizeof err) && image_size(in->path, &in->img_w, &in->img_h, err, sizeof err);
    else ok = tensor_read_file(in->path, &in->t, err, sizeof err);
    if (!ok) {
        *code = in->kind == FILE_UNKNOWN ? cli_usage(c, "input '%s': %s: %s", in->name, in->path, err)
                                         : cli_fail(c, "input '%s': %s: %s", in->name, in->path, err);
        free(in->name);
        free(in->path);
        tensor_free(&in->t);
        return false;
    }
    s->n++;
    return true;
}

void input_set_free(input_set *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->in[i].name);
        free(s->in[i].path);
        tensor_free(&s->in[i].t);
    }
    s->n = 0;
}

static const input_spec *find_input(const input_set *s, const char *name) {
    for (int i = 0; s && i < s->n; i++)
        if (strcmp(s->in[i].name, name) == 0) return &s->in[i];
    return NULL;
}

bool is_plan_file(const uint8_t *data, size_t size) { return size >= 8 && memcmp(data, "KILNPLAN", 8) == 0; }

void loaded_model_free(loaded_model *m) {
    kiln_engine_destroy(m->engine);
#ifdef KILN_CLI_HAVE_ONNX
    kiln_onnx_model_info_destroy(m->info);
#endif
    for (int i = 0; i < m->nb_marked; i++) {
        free(m->marked_tensor[i]);
        free(m->marked_layer[i]);
    }
    free(m->marked_tensor);
    free(m->marked_layer);
    memset(m, 0, sizeof *m);
}

/* ---- progress lines (terminal only) ---- */

static void progress_begin(const cli *c, bool on, const char *what, const char *path) {
    if (!on) return;
    fprintf(stderr, "kiln %s: %s %s ...", c->cmd, what, path);
    fflush(stderr);
}

static void progress_end(bool on, const char *what, double ms) {
    if (!on) return;
    fprintf(stderr, "\r\033[K  %-6s %9.1f ms\n", what, ms);
}

static void progress_clear(bool on) {
    if (on) fprintf(stderr, "\r\033[K");
}

static void list_names(char *buf, size_t size, const char *const *names, int n) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && at < size; i++) at += (size_t)snprintf(buf + at, size - at, "%s'%s'", i ? ", " : "", names[i]);
    if (n == 0) snprintf(buf, size, "none");
}

#ifdef KILN_CLI_HAVE_ONNX
/* Does `want` fit the model's declared shape (same rank, fixed dimensions equal)? */
static bool fits(const kiln_onnx_value_info *v, const kiln_dims *want) {
    if (!v->has_shape) return true;
    if (v->rank != want->nb_dims) return false;
    for (int i = 0; i < v->rank; i++)
        if (v->dims[i] >= 0 && v->dims[i] != want->d[i]) return false;
    return true;
}

/* The library's build progress, redrawn in place on the terminal: phase, layers done,
 * time so far and, while kernels are chosen (the phase that grows with the model), an
 * estimate of the time left in it. */
typedef struct build_progress {
    const cli *c;
    const char *path;
    double t0;       /* the build started */
    double phase_t0; /* the current phase started */
    double last_draw;
    int phase_first_done; /* `done` of the phase's first call */
    bool phase_counts;    /* the phase counts layers (a phase that does not goes 0/0, then 1/1) */
    bool estimated;       /* an estimate was drawn in this phase */
    char phase[32];
} build_progress;

static const char *seconds_str(double ms, char *buf, size_t size) {
    double s = ms / 1e3;
    if (s < 10) snprintf(buf, size, "%.1f s", s);
    else if (s < 120) snprintf(buf, size, "%.0f s", s);
    else snprintf(buf, size, "%d min %02d s", (int)(s / 60), (int)s % 60);
    return buf;
}

static void on_build_progress(void *user, const char *phase, int done, int total) {
    build_progress *bp = user;
    double now = cli_now_ms();
    bool new_phase = strncmp(bp->phase, phase, sizeof bp->phase - 1) != 0;
    if (new_phase) {
        snprintf(bp->phase, sizeof bp->phase, "%s", phase);
        bp->phase_t0 = now;
        bp->phase_first_done = done;
        bp->phase_counts = total > 0;
        bp->estimated = false;
    }
    bool kernels = strcmp(phase, "kernels") == 0;
    bool can_estimate = kernels && done > bp->phase_first_done && done < total;
    /* a redraw per layer would flood a slow terminal: at phase changes and ends, for the
     * first estimate, else at most every 100 ms */
    if (!new_phase && done != total && !(can_estimate && !bp->estimated) && now - bp->last_draw < 100) return;
    bp->last_draw = now;
    char line[512], b1[32], b2[32];
    const char *base = strrchr(bp->path, '/') ? strrchr(bp->path, '/') + 1 : bp->path;
    size_t at = (size_t)snprintf(line, sizeof line, "kiln %s: building %s: %s", bp->c->cmd, base, phase);
    if (bp->phase_counts && at < sizeof line)
        at += (size_t)snprintf(line + at, sizeof line - at, " %d/%d layers", done, total);
    if (at < sizeof line)
        at += (size_t)snprintf(line + at, sizeof line - at, ", %s", seconds_str(now - bp->t0, b1, sizeof b1));
    if (can_estimate && at < sizeof line) {
        /* the kernels left take as long, each, as those chosen so far */
        double left = (now - bp->phase_t0) / (done - bp->phase_first_done) * (total - done);
        snprintf(line + at, sizeof line - at, ", about %s left", seconds_str(left, b2, sizeof b2));
        bp->estimated = true;
    }
    /* a line wider than the terminal would wrap, and \r would redraw only its end */
    struct winsize ws;
    size_t width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 ? ws.ws_col : 80;
    if (strlen(line) >= width) line[width - 1 < sizeof line ? width - 1 : sizeof line - 1] = 0;
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
}
#endif

/* Checks the plan against the options that only a build can change. */
static int check_plan(const cli *c, const char *path, kiln_engine *e, const build_opts *o, const input_set *inputs) {
    if (o->device_set && o->device != kiln_engine_device(e))
        return cli_fail(c, "%s: the plan was built for %s; --device %s needs a rebuild from the ONNX model", path,
                        kiln_engine_device(e) == KILN_DEVICE_CUDA ? "cuda" : "cpu",
                        o->device == KILN_DEVICE_CUDA ? "cuda" : "cpu");
    if (o->fp16 || o->tf32 || o->no_range_check || o->workspace_bytes || o->timing_cache || o->nb_precisions)
        cli_warn(c, "%s: build options (--fp16, --tf32, --no-range-check, --workspace, --timing-cache, "
                    "--layer-precision) have no effect on a plan: they were fixed when it was built",
                 path);
    const char *names[CLI_MAX_IO];
    int nin = 0;
    for (int i = 0; i < kiln_engine_num_io(e); i++)
        if (kiln_engine_io_mode(e, kiln_engine_io_name(e, i)) == KILN_IO_INPUT && nin < CLI_MAX_IO)
            names[nin++] = kiln_engine_io_name(e, i);
    char list[1024], b1[128], b2[128];
    list_names(list, sizeof list, names, nin);
    for (int i = 0; i < o->nb_shapes; i++) {
        kiln_dims d;
        if (kiln_engine_io_mode(e, o->shapes[i].name) != KILN_IO_INPUT)
            return cli_usage(c, "--shapes: the plan has no input '%s' (its inputs: %s)", o->shapes[i].name, list);
        kiln_engine_io_dims(e, o->shapes[i].name, &d);
        if (!dims_equal(&d, &o->shapes[i].dims))
            return cli_fail(c, "%s: input '%s' is %s in the plan, --shapes asks for %s: rebuild from the ONNX model", path,
                            o->shapes[i].name, cli_dims_str(&d, b1, sizeof b1), cli_dims_str(&o->shapes[i].dims, b2, sizeof b2));
    }
    for (int i = 0; inputs && i < inputs->n; i++)
        if (kiln_engine_io_mode(e, inputs->in[i].name) != KILN_IO_INPUT)
            return cli_usage(c, "--input: the plan has no input '%s' (its inputs: %s)", inputs->in[i].name, list);
    if (o->batch > 0)
        for (int i = 0; i < nin; i++) {
            kiln_dims d;
            kiln_engine_io_dims(e, names[i], &d);
            if (d.nb_dims < 1 || d.d[0] != o->batch)
                return cli_fail(c, "%s: the plan was built with batch %lld (input '%s' is %s); --batch %lld needs a rebuild "
                                   "from the ONNX model",
                                path, d.nb_dims ? (long long)d.d[0] : 0LL, names[i], cli_dims_str(&d, b1, sizeof b1),
                                (long long)o->batch);
        }
    return CLI_OK;
}

#ifdef KILN_CLI_HAVE_ONNX
/* The shape each model input gets: --shapes, then the user's file, then --batch for a
 * symbolic first dimension. */
static int resolve_shapes(const cli *c, const char *path, const kiln_onnx_model_info *mi, const build_opts *o,
                          const input_set *inputs, kiln_dims *shapes, bool *given) {
    const char *names[CLI_MAX_IO];
    for (int i = 0; i < mi->nb_inputs; i++) names[i] = mi->inputs[i].name;
    char list[1024], b1[256], b2[256];
    list_names(list, sizeof list, names, mi->nb_inputs);
    for (int i = 0; i < o->nb_shapes; i++) {
        int k = 0;
        while (k < mi->nb_inputs && strcmp(mi->inputs[k].name, o->shapes[i].name) != 0) k++;
        if (k == mi->nb_inputs)
            return cli_usage(c, "--shapes: the model has no input '%s' (its inputs: %s)", o->shapes[i].name, list);
    }
    for (int i = 0; inputs && i < inputs->n; i++) {
        int k = 0;
        while (k < mi->nb_inputs && strcmp(mi->inputs[k].name, inputs->in[i].name) != 0) k++;
        if (k == mi->nb_inputs)
            return cli_usage(c, "--input: the model has no input '%s' (its inputs: %s)", inputs->in[i].name, list);
    }
    /* symbolic dimensions shared by name ("batch") take the size one input's data gives */
    const char *bound_name[CLI_MAX_IO];
    int64_t bound_value[CLI_MAX_IO];
    int nbound = 0;
    for (int i = 0; i < mi->nb_inputs; i++) {
        const kiln_onnx_value_info *v = &mi->inputs[i];
        const input_spec *in = find_input(inputs, v->name);
        const kiln_dims *src = NULL;
        for (int k = 0; k < o->nb_shapes && !src; k++)
            if (strcmp(o->shapes[k].name, v->name) == 0) src = &o->shapes[k].dims;
        if (!src && in && in->kind != FILE_IMAGE) src = &in->t.dims;
        if (!src || !v->has_shape || src->nb_dims != v->rank) continue;
        for (int k = 0; k < v->rank && nbound < CLI_MAX_IO; k++) {
            if (v->dims[k] >= 0 || !v->dim_names[k]) continue;
            bool known = false;
            for (int b = 0; b < nbound; b++) known |= strcmp(bound_name[b], v->dim_names[k]) == 0;
            if (!known) {
                bound_name[nbound] = v->dim_names[k];
                bound_value[nbound++] = src->d[k];
            }
        }
    }
    for (int i = 0; i < mi->nb_inputs; i++) {
        const kiln_onnx_value_info *v = &mi->inputs[i];
        kiln_dims d = {0};
        const char *from = NULL;
        char frombuf[600];
        bool symbolic = !v->has_shape;
        for (int k = 0; v->has_shape && k < v->rank && k < KILN_MAX_DIMS; k++) symbolic |= v->dims[k] < 0;
        const input_spec *in = find_input(inputs, v->name);
        given[i] = true;
        for (int k = 0; k < o->nb_shapes && !from; k++)
            if (strcmp(o->shapes[k].name, v->name) == 0) {
                d = o->shapes[k].dims;
                from = "--shapes";
            }
        if (!from && in && in->kind != FILE_IMAGE) {
            d = in->t.dims;
            snprintf(frombuf, sizeof frombuf, "file %s", in->path);
            from = frombuf;
        }
        if (!from && in && in->kind == FILE_IMAGE) {
            if (v->has_shape && v->rank != 4)
                return cli_fail(c, "input '%s' is %s: an image feeds an NCHW input of rank 4", v->name,
                                model_dims_str(v, b1, sizeof b1));
            d.nb_dims = 4;
            d.d[0] = v->has_shape && v->dims[0] >= 0 ? v->dims[0] : o->batch > 0 ? o->batch : 1;
            d.d[1] = v->has_shape && v->dims[1] >= 0 ? v->dims[1] : 3;
            d.d[2] = v->has_shape && v->dims[2] >= 0 ? v->dims[2] : in->img_h;
            d.d[3] = v->has_shape && v->dims[3] >= 0 ? v->dims[3] : in->img_w;
            snprintf(frombuf, sizeof frombuf, "image %s", in->path);
            from = frombuf;
        }
        if (from) {
            if (!fits(v, &d))
                return cli_fail(c, "input '%s': %s gives %s, the model's input is %s", v->name, from,
                                cli_dims_str(&d, b1, sizeof b1), model_dims_str(v, b2, sizeof b2));
            if (o->batch > 0 && (d.nb_dims < 1 || d.d[0] != o->batch))
                return cli_usage(c, "input '%s': %s gives %s, which disagrees with --batch %lld", v->name, from,
                                 cli_dims_str(&d, b1, sizeof b1), (long long)o->batch);
            shapes[i] = d;
            continue;
        }
        if (!v->has_shape)
            return cli_usage(c, "input '%s' has no shape in the model: give it with --shapes %s:DIMS", v->name, v->name);
        if (v->rank > KILN_MAX_DIMS) return cli_fail(c, "input '%s' has rank %d, more than kiln's %d", v->name, v->rank, KILN_MAX_DIMS);
        d.nb_dims = v->rank;
        for (int k = 0; k < v->rank; k++) {
            d.d[k] = v->dims[k];
            for (int b = 0; b < nbound && d.d[k] < 0 && v->dim_names[k]; b++)
                if (strcmp(bound_name[b], v->dim_names[k]) == 0) d.d[k] = bound_value[b];
        }
        if (o->batch > 0) {
            if (v->rank < 1 || (v->dims[0] >= 0 && v->dims[0] != o->batch))
                return cli_fail(c, "%s: input '%s' is %s: --batch %lld needs a symbolic first dimension", path, v->name,
                                model_dims_str(v, b1, sizeof b1), (long long)o->batch);
            d.d[0] = o->batch;
        }
        bool rest_symbolic = false;
        for (int k = 1; k < v->rank; k++) rest_symbolic |= d.d[k] < 0;
        if (rest_symbolic)
            return cli_usage(c, "input '%s' has the symbolic shape %s: give it with --shapes %s:DIMS", v->name,
                             model_dims_str(v, b1, sizeof b1), v->name);
        if (v->rank >= 1 && d.d[0] < 0) {
            d.d[0] = 1;
            cli_warn(c, "input '%s' has the symbolic shape %s: using batch 1 (set --batch or --shapes)", v->name,
                     model_dims_str(v, b1, sizeof b1));
        }
        given[i] = symbolic || o->batch > 0;
        shapes[i] = d;
    }
    return CLI_OK;
}

/* One line for a failed import: the first problem, and how many more there are. */
static int parse_failure(const cli *c, const char *path, kiln_onnx_parser *p) {
    int n = kiln_onnx_num_errors(p);
    const char *first = n > 0 ? kiln_onnx_error(p, 0) : cli_last_error();
    /* the importer prefixes the file it was given: drop it, we name the file ourselves */
    first = cli_strip_label(first, path);
    if (n > 1)
        return cli_fail(c, "%s: %s (and %d more problem%s: run 'kiln inspect %s')", path, first, n - 1, n > 2 ? "s" : "",
                        path);
    return cli_fail(c, "%s: %s", path, first);
}

static int build_onnx(const cli *c, const char *path, const uint8_t *data, size_t size, const build_opts *o,
                      const input_set *inputs, bool progress, loaded_model *out) {
    char err[512];
    if (!model_info_read(data, size, &out->info, err, sizeof err)) return cli_fail(c, "%s: %s", path, err);
    const kiln_onnx_model_info *mi = out->info;
    if (mi->nb_inputs > CLI_MAX_IO)
        return cli_fail(c, "%s: the model has %d inputs, more than this tool's %d", path, mi->nb_inputs, CLI_MAX_IO);
    for (int i = 0; i < mi->nb_inputs; i++)
        if (mi->inputs[i].kind != KILN_ONNX_VALUE_TENSOR)
            return cli_fail(c, "%s: input '%s' is not a tensor (sequence, map or optional): kiln cannot feed it", path,
                            mi->inputs[i].name);
    kiln_dims shapes[CLI_MAX_IO];
    bool given[CLI_MAX_IO];
    int rc = resolve_shapes(c, path, mi, o, inputs, shapes, given);
    if (rc != CLI_OK) return rc;
    const char *snames[CLI_MAX_IO];
    kiln_dims sdims[CLI_MAX_IO];
    int ns = 0;
    for (int i = 0; i < mi->nb_inputs; i++)
        if (given[i]) {
            snames[ns] = mi->inputs[i].name;
            sdims[ns++] = shapes[i];
        }

    kiln_builder_desc bd = KILN_BUILDER_DESC_INIT;
    bd.log = cli_log;
    bd.log_user = (void *)c;
    bd.log_level = cli_log_level(c);
    kiln_builder *b = NULL;
    kiln_network *net = NULL;
    kiln_onnx_parser *parser = NULL;
    kiln_config *cfg = NULL;
    rc = CLI_FAIL;
    if (kiln_builder_create(&bd, &b) != KILN_OK || kiln_network_create(b, &net) != KILN_OK ||
        kiln_config_create(b, &cfg) != KILN_OK) {
        cli_fail(c, "%s: %s", path, cli_last_error());
        goto done;
    }
    kiln_onnx_desc od = KILN_ONNX_DESC_INIT;
    od.nb_shapes = ns;
    od.shape_names = snames;
    od.shapes = sdims;
    if (kiln_onnx_parser_create(net, &od, &parser) != KILN_OK) {
        cli_fail(c, "%s: %s", path, cli_last_error());
        goto done;
    }
    double t0 = cli_now_ms();
    progress_begin(c, progress, "parsing", path);
    char *pcopy = strdup(path);
    kiln_status st = pcopy ? kiln_onnx_parse_memory(parser, data, size, dirname(pcopy)) : KILN_ERR_OUT_OF_MEMORY;
    free(pcopy);
    out->parse_ms = cli_now_ms() - t0;
    if (st != KILN_OK) {
        progress_clear(progress);
        parse_failure(c, path, parser);
        goto done;
    }
    progress_end(progress, "parse", out->parse_ms);
    out->layers_before = kiln_network_num_layers(net);
    for (int k = 0; k < out->layers_before; k++)
        out->consts_before += kiln_layer_get_type(kiln_network_layer(net, k)) == KILN_LAYER_CONSTANT;

    for (int i = 0; i < o->nb_precisions; i++) {
        const layer_precision *lp = &o->precisions[i];
        bool found = false;
        for (int k = 0; k < out->layers_before && !found; k++) {
            const char *ln = kiln_layer_name(kiln_network_layer(net, k));
            found = ln && strcmp(ln, lp->name) == 0;
        }
        if (!found) {
            rc = cli_usage(c, "--layer-precision: the model has no layer (node) named '%s'", lp->name);
            goto done;
        }
        if (o->device == KILN_DEVICE_CPU && lp->dtype == KILN_FLOAT32)
            cli_info(c, "--layer-precision %s:fp32: every CPU layer runs in FP32 already", lp->name);
        else if (o->device == KILN_DEVICE_CPU || (lp->dtype != KILN_FLOAT32 && lp->dtype != KILN_FLOAT16))
            cli_warn(c, "--layer-precision %s:%s is accepted but has no effect on this device yet (%s)", lp->name,
                     kiln_dtype_name(lp->dtype),
                     o->device == KILN_DEVICE_CPU ? "CPU kernels are FP32" : "CUDA layers run FP32 or FP16");
        else if (kiln_config_set_layer_precision(cfg, lp->name, lp->dtype) != KILN_OK) {
            cli_fail(c, "%s: %s", path, cli_last_error());
            goto done;
        }
    }

    if (o->all_layers) {
        int nl = kiln_network_num_layers(net), cap = 0;
        for (int i = 0; i < nl; i++) cap += kiln_layer_num_outputs(kiln_network_layer(net, i));
        out->marked_tensor = calloc((size_t)(cap ? cap : 1), sizeof(char *));
        out->marked_layer = calloc((size_t)(cap ? cap : 1), sizeof(char *));
        if (!out->marked_tensor || !out->marked_layer) {
            cli_fail(c, "out of memory");
            goto done;
        }
        for (int i = 0; i < nl; i++) {
            kiln_layer *l = kiln_network_layer(net, i);
            /* constants are weights, not computed values */
            if (kiln_layer_get_type(l) == KILN_LAYER_CONSTANT) continue;
            for (int k = 0; k < kiln_layer_num_outputs(l); k++) {
                kiln_tensor *t = kiln_layer_output(l, k);
                if (!t || kiln_network_mark_output(net, t) != KILN_OK) {
                    cli_fail(c, "%s: cannot mark tensor '%s' as an output: %s", path, t ? kiln_tensor_name(t) : "?",
                             cli_last_error());
                    goto done;
                }
                out->marked_tensor[out->nb_marked] = strdup(kiln_tensor_name(t));
                out->marked_layer[out->nb_marked++] = strdup(kiln_layer_name(l) ? kiln_layer_name(l) : "?");
            }
        }
    }

    if (kiln_config_set_device(cfg, o->device) != KILN_OK || kiln_config_set_num_threads(cfg, o->threads) != KILN_OK ||
        kiln_config_set_memory_limit(cfg, o->workspace_bytes) != KILN_OK ||
        kiln_config_set_flag(cfg, KILN_FLAG_FP16, o->fp16) != KILN_OK ||
        kiln_config_set_flag(cfg, KILN_FLAG_TF32, o->tf32) != KILN_OK ||
        kiln_config_set_flag(cfg, KILN_FLAG_NO_RANGE_CHECK, o->no_range_check) != KILN_OK) {
        cli_fail(c, "%s: %s", path, cli_last_error());
        goto done;
    }
    if (o->device == KILN_DEVICE_CPU && (o->fp16 || o->tf32))
        cli_warn(c, "%s has no effect on the CPU: its kernels are FP32", o->fp16 && o->tf32 ? "--fp16/--tf32" : o->fp16 ? "--fp16" : "--tf32");
    if (o->timing_cache && o->device == KILN_DEVICE_CPU)
        cli_warn(c, "--timing-cache %s has no effect on the CPU: its kernels are chosen by rule, without timing runs",
                 o->timing_cache);
    else if (o->timing_cache && kiln_config_set_timing_cache(cfg, o->timing_cache) != KILN_OK) {
        cli_fail(c, "%s: %s", path, cli_last_error());
        goto done;
    }
    t0 = cli_now_ms();
    progress_begin(c, progress, "building", path);
    build_progress bp = {c, path, t0, t0, t0, 0, false, false, ""};
    if (progress && kiln_config_set_progress(cfg, on_build_progress, &bp) != KILN_OK) {
        progress_clear(progress);
        cli_fail(c, "%s: %s", path, cli_last_error());
        goto done;
    }
    st = kiln_builder_build(b, net, cfg, &out->engine);
    out->build_ms = cli_now_ms() - t0;
    if (st != KILN_OK) {
        progress_clear(progress);
        cli_fail(c, "%s: build failed: %s", path, cli_last_error());
        goto done;
    }
    progress_end(progress, "build", out->build_ms);
    rc = CLI_OK;
done:
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    kiln_onnx_parser_destroy(parser);
    kiln_builder_destroy(b);
    return rc;
}
#endif

int load_model(const cli *c, const char *path, const build_opts *o, const input_set *inputs, bool progress,
               loaded_model *out) {
    memset(out, 0, sizeof *out);
    uint8_t *data;
    size_t size;
    char err[512];
    if (!cli_read_file(path, &data, &size, err, sizeof err)) return cli_fail(c, "%s: cannot read: %s", path, err);
    int rc;
    if (is_plan_file(data, size)) {
        out->is_plan = true;
        kiln_runtime_desc rd = KILN_RUNTIME_DESC_INIT;
        rd.log = cli_log;
        rd.log_user = (void *)c;
        rd.log_level = cli_log_level(c);
        rd.threads = o->threads;
        kiln_runtime *rt = NULL;
        double t0 = cli_now_ms();
        progress_begin(c, progress, "loading", path);
        if (kiln_runtime_create(&rd, &rt) != KILN_OK || kiln_runtime_load(rt, data, size, &out->engine) != KILN_OK) {
            progress_clear(progress);
            rc = cli_fail(c, "%s: %s", path, cli_last_error());
        } else {
            out->build_ms = cli_now_ms() - t0;
            progress_end(progress, "load", out->build_ms);
            rc = check_plan(c, path, out->engine, o, inputs);
        }
        kiln_runtime_destroy(rt);
    } else {
#ifdef KILN_CLI_HAVE_ONNX
        if (size == 0) rc = cli_fail(c, "%s: the file is empty", path);
        else rc = build_onnx(c, path, data, size, o, inputs, progress, out);
#else
        rc = cli_fail(c, "%s: not a kiln plan, and this kiln was built without the ONNX importer (KILN_ONNX=OFF)", path);
#endif
    }
    free(data);
    if (rc != CLI_OK) loaded_model_free(out);
    return rc;
}

/* ---- I/O buffers ---- */

int io_index(const io_buffers *io, const char *name) {
    for (int i = 0; i < io->n; i++)
        if (strcmp(io->name[i], name) == 0) return i;
    return -1;
}

void io_free(io_buffers *io) {
    for (int i = 0; i < io->n; i++) free(io->data[i]);
    memset(io, 0, sizeof *io);
}

static int fill_image(const cli *c, const input_spec *in, kiln_dtype dt, const kiln_dims *d, preprocess pre, void *dst) {
    char b1[128], err[512];
    if (d->nb_dims != 4 || (d->d[1] != 1 && d->d[1] != 3))
        return cli_fail(c, "input '%s' is %s: images feed NCHW inputs with 1 or 3 channels", in->name,
                        cli_dims_str(d, b1, sizeof b1));
    if (!dtype_is_float(dt))
        return cli_fail(c, "input '%s' is %s: images feed floating-point inputs", in->name, kiln_dtype_name(dt));
    int64_t plane = d->d[1] * d->d[2] * d->d[3];
    float *img = malloc((size_t)(plane ? plane : 1) * sizeof(float));
    if (!img) return cli_fail(c, "out of memory");
    if (!image_load(in->path, (int)d->d[1], d->d[2], d->d[3], pre, img, err, sizeof err)) {
        free(img);
        return cli_fail(c, "input '%s': %s: %s", in->name, in->path, err);
    }
    /* one image: every item of the batch gets it */
    for (int64_t n = 0; n < d->d[0]; n++)
        for (int64_t i = 0; i < plane; i++) tensor_set(dt, dst, n * plane + i, img[i]);
    free(img);
    return CLI_OK;
}

int io_prepare(const cli *c, kiln_engine *e, const input_set *inputs, bool random_ok, io_buffers *io) {
    memset(io, 0, sizeof *io);
    int n = kiln_engine_num_io(e);
    if (n > CLI_MAX_IO) return cli_fail(c, "the engine has %d inputs and outputs, more than this tool's %d", n, CLI_MAX_IO);
    const char *missing[CLI_MAX_IO], *in_names[CLI_MAX_IO];
    int nmissing = 0, nin = 0;
    uint64_t seed = inputs ? inputs->seed : 1;
    char b1[128], b2[128], err[256];
    for (int i = 0; i < n; i++) {
        const char *name = kiln_engine_io_name(e, i);
        io->name[i] = name;
        io->mode[i] = kiln_engine_io_mode(e, name);
        kiln_engine_io_dtype(e, name, &io->dtype[i]);
        kiln_engine_io_dims(e, name, &io->dims[i]);
        int64_t vol = kiln_dims_volume(&io->dims[i]);
        io->bytes[i] = (size_t)(vol > 0 ? vol : 0) * kiln_dtype_size(io->dtype[i]);
        io->data[i] = malloc(io->bytes[i] ? io->bytes[i] : 1);
        io->n = i + 1;
        if (!io->data[i]) return cli_fail(c, "out of memory for '%s' (%zu bytes)", name, io->bytes[i]);
        if (io->mode[i] == KILN_IO_OUTPUT) {
            memset(io->data[i], 0xFF, io->bytes[i]); /* NaN / -1: values the engine failed to write show */
            continue;
        }
        in_names[nin++] = name;
        const input_spec *in = find_input(inputs, name);
        if (!in) {
            if (!random_ok) {
                missing[nmissing++] = name;
                continue;
            }
            host_tensor t;
            if (!tensor_random(&t, name, io->dtype[i], io->dims[i], &seed)) return cli_fail(c, "out of memory");
            memcpy(io->data[i], t.data, io->bytes[i]);
            tensor_free(&t);
            io->random[i] = true;
            continue;
        }
        if (in->kind == FILE_IMAGE) {
            int rc = fill_image(c, in, io->dtype[i], &io->dims[i], inputs->pre, io->data[i]);
            if (rc != CLI_OK) return rc;
            continue;
        }
        if (!dims_equal(&in->t.dims, &io->dims[i]))
            return cli_fail(c, "input '%s': %s holds %s, the engine expects %s", name, in->path,
                            cli_dims_str(&in->t.dims, b1, sizeof b1), cli_dims_str(&io->dims[i], b2, sizeof b2));
        host_tensor t = in->t;
        t.name = NULL;
        t.data = malloc(tensor_bytes(&in->t) ? tensor_bytes(&in->t) : 1);
        if (!t.data) return cli_fail(c, "out of memory");
        memcpy(t.data, in->t.data, tensor_bytes(&in->t));
        if (!tensor_convert(&t, io->dtype[i], err, sizeof err)) {
            tensor_free(&t);
            return cli_fail(c, "input '%s': %s %s", name, in->path, err);
        }
        if (in->t.dtype != io->dtype[i])
            cli_info(c, "input '%s': %s converted from %s to %s", name, in->path, kiln_dtype_name(in->t.dtype),
                     kiln_dtype_name(io->dtype[i]));
        memcpy(io->data[i], t.data, io->bytes[i]);
        tensor_free(&t);
    }
    for (int k = 0; inputs && k < inputs->n; k++)
        if (kiln_engine_io_mode(e, inputs->in[k].name) != KILN_IO_INPUT) {
            char list[1024];
            list_names(list, sizeof list, in_names, nin);
            return cli_usage(c, "--input: the model has no input '%s' (its inputs: %s)", inputs->in[k].name, list);
        }
    if (nmissing) {
        char list[1024];
        list_names(list, sizeof list, missing, nmissing);
        return cli_usage(c, "no data for input%s %s: give --input NAME=FILE, or --random-inputs", nmissing > 1 ? "s" : "",
                         list);
    }
    return CLI_OK;
}

int io_bind(const cli *c, kiln_engine *e, io_buffers *io, kiln_context **ctx) {
    *ctx = NULL;
    if (kiln_context_create(e, ctx) != KILN_OK) return cli_fail(c, "cannot create an execution context: %s", cli_last_error());
    /* the tool's buffers are host memory: a device engine stages them */
    if (kiln_context_set_io_memory(*ctx, KILN_MEMORY_HOST) != KILN_OK) {
        kiln_context_destroy(*ctx);
        *ctx = NULL;
        return cli_fail(c, "cannot set up host I/O: %s", cli_last_error());
    }
    for (int i = 0; i < io->n; i++)
        if (kiln_context_set_tensor_address(*ctx, io->name[i], io->data[i]) != KILN_OK) {
            kiln_context_destroy(*ctx);
            *ctx = NULL;
            return cli_fail(c, "cannot bind '%s': %s", io->name[i], cli_last_error());
        }
    return CLI_OK;
}
