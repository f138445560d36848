/* kiln bench: latency and throughput of an engine, on one or more contexts (one thread
 * each), with the host-latency split, enqueue time, memory and an optional per-layer
 * profile (trtexec's numbers). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static const char help[] =
    "usage: kiln bench MODEL.plan|MODEL.onnx [OPTIONS]\n"
    "\n"
    "Runs the engine repeatedly and reports latency (min, median, mean, p90, p99, max),\n"
    "throughput, the host latency split into upload / compute / download (0 upload and download\n"
    "on the CPU, where inputs are read in place), enqueue time and memory. Inputs are random\n"
    "unless given with --input.\n"
    "\n"
    "options:\n"
    "  --iterations N             timed runs per stream (default: run for --duration)\n"
    "  --duration S               seconds to run per stream (default 3; at least 10 runs)\n"
    "  --warmup N                 untimed runs first, per stream (default 5)\n"
    "  --streams N                N execution contexts on N threads, run concurrently (default 1)\n"
    "  --batch N                  rebuild an ONNX model with its symbolic first dimension set to N\n"
    "                             (a plan must have been built with batch N)\n"
    "  --no-cuda-graph            launch every layer each run instead of replaying the captured CUDA\n"
    "                             graph (kiln_context_set_cuda_graph); no effect on the CPU\n"
    "  --device-io                keep inputs and outputs on the device: inputs are copied once,\n"
    "                             timed runs do no transfers (trtexec --noDataTransfers)\n"
    "  --profile                  per-layer times, sorted, with share of total and kernel\n"
    "  --json FILE                all results as JSON ('-': standard output)\n"
    "  --input NAME=FILE          real data for an input (see 'kiln run --help'); --preprocess P\n"
    "  --seed N                   seed for the random inputs (default 1)\n"
    "\n"
    "build options (ONNX models, as in 'kiln build'): --device cpu|cuda, --fp16, --no-range-check,\n"
    "  --tf32, --shapes NAME:DIMS,..., --timing-cache FILE,\n"
    "  --threads N (CPU threads per context; with --streams, consider cores / streams)\n"
    "  -q, --quiet   errors only       -v, --verbose   library log at verbose level\n"
    "\n"
    "examples:\n"
    "  kiln bench resnet50.plan\n"
    "  kiln bench resnet50.onnx --batch 8 --iterations 200 --profile\n"
    "  kiln bench model.plan --streams 4 --threads 4 --duration 10 --json bench.json\n";

/* Threads warm up, then wait here so that the timed runs of all streams overlap. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go; /* 0 wait, 1 run, -1 abandon */
} gate;

typedef struct worker {
    kiln_context *ctx;
    io_buffers *io;
    int warmup;
    int64_t iterations; /* 0: by duration */
    double duration_ms;
    struct gate *start;
    double *lat;
    int64_t n, cap;
    double t_start, t_end;
    bool failed;
    char err[512];
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int i = 0; i < w->warmup && !w->failed; i++)
        if (kiln_context_execute(w->ctx) != KILN_OK) {
            w->failed = true;
            snprintf(w->err, sizeof w->err, "%s", cli_last_error());
        }
    pthread_mutex_lock(&w->start->mu);
    while (w->start->go == 0) pthread_cond_wait(&w->start->cv, &w->start->mu);
    bool abandon = w->start->go < 0;
    pthread_mutex_unlock(&w->start->mu);
    if (abandon) return NULL;
    w->t_start = cli_now_ms();
    while (!w->failed) {
        double now = cli_now_ms();
        if (w->iterations ? w->n >= w->iterations : (now - w->t_start >= w->duration_ms && w->n >= 10)) break;
        if (w->n == w->cap) {
            int64_t ncap = w->cap ? 2 * w->cap : 4096;
            double *nl = realloc(w->lat, (size_t)ncap * sizeof *nl);
            if (!nl) {
                w->failed = true;
                snprintf(w->err, sizeof w->err, "out of memory for the latency record");
                break;
            }
            w->lat = nl;
            w->cap = ncap;
        }
        double t0 = cli_now_ms();
        if (kiln_context_execute(w->ctx) != KILN_OK) {
            w->failed = true;
            snprintf(w->err, sizeof w->err, "%s", cli_last_error());
            break;
        }
        w->lat[w->n++] = cli_now_ms() - t0;
    }
    w->t_end = cli_now_ms();
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *v, int64_t n, double p) {
    if (n == 0) return NAN;
    int64_t k = (int64_t)ceil(p / 100.0 * (double)n) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

typedef struct summary {
    double min, median, mean, p90, p99, max;
} summary;

static summary summarize(double *v, int64_t n) {
    summary s = {NAN, NAN, NAN, NAN, NAN, NAN};
    if (n == 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    s.min = v[0];
    s.max = v[n - 1];
    s.mean = sum / (double)n;
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.p90 = percentile(v, n, 90);
    s.p99 = percentile(v, n, 99);
    return s;
}

/* ---- per-layer profile ---- */

typedef struct prof_entry {
    char *name;
    char *type;
    double total_ms;
    int64_t calls;
} prof_entry;

typedef struct profile {
    prof_entry *e;
    int n, cap;
    bool oom;
} profile;

static void on_layer(void *user, const char *name, const char *type, double ms) {
    profile *p = user;
    for (int i = p->n - 1; i >= 0; i--) /* layers come in order: the last match is usually near */
        if (strcmp(p->e[i].name, name) == 0) {
            p->e[i].total_ms += ms;
            p->e[i].calls++;
            return;
        }
    if (p->n == p->cap) {
        int ncap = p->cap ? 2 * p->cap : 64;
        prof_entry *ne = realloc(p->e, (size_t)ncap * sizeof *ne);
        if (!ne) {
            p->oom = true;
            return;
        }
        p->e = ne;
        p->cap = ncap;
    }
    p->e[p->n] = (prof_entry){strdup(name), strdup(type), ms, 1};
    p->n++;
}

static int cmp_prof(const void *a, const void *b) {
    double x = ((const prof_entry *)a)->total_ms, y = ((const prof_entry *)b)->total_ms;
    return x > y ? -1 : x < y;
}

static const char *kernel_of(kiln_engine *e, const char *layer, const char **fused) {
    *fused = "";
    for (int i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        if (kiln_engine_layer_info(e, i, &li) == KILN_OK && li.name && strcmp(li.name, layer) == 0) {
            *fused = li.fused ? li.fused : "";
            return li.kernel ? li.kernel : "?";
        }
    }
    return "?";
}

static void print_summary(const char *what, const summary *s) {
    printf("  %-18s min %.4f  median %.4f  mean %.4f  p90 %.4f  p99 %.4f  max %.4f ms\n", what, s->min, s->median, s->mean,
           s->p90, s->p99, s->max);
}

static void json_summary(json *j, const char *key, const summary *s) {
    json_key(j, key);
    json_begin_object(j);
    json_key(j, "min"), json_num(j, s->min);
    json_key(j, "median"), json_num(j, s->median);
    json_key(j, "mean"), json_num(j, s->mean);
    json_key(j, "p90"), json_num(j, s->p90);
    json_key(j, "p99"), json_num(j, s->p99);
    json_key(j, "max"), json_num(j, s->max);
    json_end_object(j);
}

int cmd_bench(cli *c, int argc, char **argv) {
    static const cli_opt opts[] = {CLI_COMMON_OPTS,
                                   {"--iterations", "-n", true},
                                   {"--duration", NULL, true},
                                   {"--warmup", NULL, true},
                                   {"--streams", NULL, true},
                                   {"--no-cuda-graph", NULL, false},
                                   {"--profile", NULL, false},
                                   {"--device-io", NULL, false},
                                   {"--json", NULL, true},
                                   {"--input", "-i", true},
                                   {"--preprocess", NULL, true},
                                   {"--seed", NULL, true},
                                   CLI_BUILD_OPTS,
                                   {NULL, NULL, false}};
    build_opts o;
    memset(&o, 0, sizeof o);
    input_set *ins = calloc(1, sizeof *ins);
    if (!ins) return cli_fail(c, "out of memory");
    ins->seed = 1;
    ins->pre = PRE_IMAGENET;
    const char *model = NULL, *json_path = NULL;
    int64_t iterations = 0, warmup = 5, streams = 1;
    double duration_s = 3;
    bool profile_on = false, no_graph = false, duration_set = false, device_io = false;
    cli_args a = {argc, argv, 0, false};
    int rc = CLI_OK, k;
    const char *v;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END) {
        bool stop;
        int64_t n;
        const char *name = k >= 0 ? opts[k].name : "";
        if (k == CLI_ARG_ERROR) rc = CLI_USAGE;
        else if (k == CLI_ARG_POSITIONAL) {
            if (model) rc = cli_usage(c, "one model at a time ('%s' and '%s')", model, v);
            model = v;
        } else if (cli_common_option(c, name, help, &stop)) {
            if (stop) goto out;
        } else if (strcmp(name, "--iterations") == 0) {
            if (!cli_parse_int(c, name, v, 1, INT64_C(1) << 40, &iterations)) rc = CLI_USAGE;
        } else if (strcmp(name, "--duration") == 0) {
            if (!cli_parse_double(c, name, v, 0.001, 86400, &duration_s)) rc = CLI_USAGE;
            duration_set = true;
        } else if (strcmp(name, "--warmup") == 0) {
            if (!cli_parse_int(c, name, v, 0, 1 << 30, &warmup)) rc = CLI_USAGE;
        } else if (strcmp(name, "--streams") == 0) {
            if (!cli_parse_int(c, name, v, 1, 256, &streams)) rc = CLI_USAGE;
        } else if (strcmp(name, "--no-cuda-graph") == 0) no_graph = true;
        else if (strcmp(name, "--profile") == 0) profile_on = true;
        else if (strcmp(name, "--device-io") == 0) device_io = true;
        else if (strcmp(name, "--json") == 0) json_path = v;
        else if (strcmp(name, "--input") == 0) { /* read below */
        } else if (strcmp(name, "--preprocess") == 0) {
            if (!cli_parse_preprocess(c, v, &ins->pre)) rc = CLI_USAGE;
        } else if (strcmp(name, "--seed") == 0) {
            if (!cli_parse_int(c, name, v, 0, INT64_MAX, &n)) rc = CLI_USAGE;
            ins->seed = (uint64_t)n;
        } else {
            cli_build_option(c, name, v, &o, &rc);
        }
    }
    if (rc != CLI_OK) goto out;
    if (!model) {
        rc = cli_usage(c, "no model given");
        goto out;
    }
    if (iterations && duration_set) {
        rc = cli_usage(c, "give --iterations or --duration, not both");
        goto out;
    }
    a.i = 0;
    a.only_positional = false;
    while (rc == CLI_OK && (k = cli_next(c, &a, opts, &v)) != CLI_ARG_END)
        if (k >= 0 && strcmp(opts[k].name, "--input") == 0) input_set_add(c, ins, v, &rc);
    if (rc != CLI_OK) goto out;

    loaded_model m;
    rc = load_model(c, model, &o, ins, false, &m);
    if (rc != CLI_OK) goto out;
    kiln_engine *e = m.engine;
    bool cuda = kiln_engine_device(e) == KILN_DEVICE_CUDA;
    if (no_graph && !cuda) cli_warn(c, "--no-cuda-graph has no effect: this engine runs on the CPU");

    worker *w = calloc((size_t)streams, sizeof *w);
    io_buffers *ios = calloc((size_t)streams, sizeof *ios);
    pthread_t *th = calloc((size_t)streams, sizeof *th);
    gate start = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int started = 0;
    profile prof = {NULL, 0, 0, false};
    double *all = NULL, *enq = NULL;
    if (!w || !ios || !th) {
        rc = cli_fail(c, "out of memory");
        goto done;
    }
    for (int s = 0; s < streams && rc == CLI_OK; s++) {
        rc = io_prepare(c, e, ins, true, &ios[s]);
        if (rc == CLI_OK) rc = io_bind(c, e, &ios[s], &w[s].ctx);
        if (rc == CLI_OK && device_io && kiln_context_keep_io_on_device(w[s].ctx) != KILN_OK)
            rc = cli_fail(c, "--device-io: %s", cli_last_error());
        if (rc == CLI_OK && no_graph && kiln_context_set_cuda_graph(w[s].ctx, 0) != KILN_OK)
            rc = cli_fail(c, "--no-cuda-graph: %s", cli_last_error());
        w[s].io = &ios[s];
        w[s].warmup = (int)warmup;
        w[s].iterations = iterations;
        w[s].duration_ms = duration_s * 1e3;
        w[s].start = &start;
    }
    if (rc != CLI_OK) goto done;
    if (streams == 1) {
        start.go = 1;
        worker_main(&w[0]);
    } else {
        for (int s = 0; s < streams && rc == CLI_OK; s++) {
            if (pthread_create(&th[s], NULL, worker_main, &w[s]) != 0)
                rc = cli_fail(c, "cannot start thread %d of %lld", s + 1, (long long)streams);
            else started++;
        }
        pthread_mutex_lock(&start.mu);
        start.go = rc == CLI_OK ? 1 : -1;
        pthread_cond_broadcast(&start.cv);
        pthread_mutex_unlock(&start.mu);
        for (int s = 0; s < started; s++) pthread_join(th[s], NULL);
    }
    if (rc != CLI_OK) goto done;
    for (int s = 0; s < streams; s++)
        if (w[s].failed) {
            rc = cli_fail(c, "%s: run failed on stream %d: %s", model, s, w[s].err);
            goto done;
        }

    /* latency over every run of every stream; throughput over the common wall time */
    int64_t total = 0;
    double t_first = INFINITY, t_last = -INFINITY;
    for (int s = 0; s < streams; s++) {
        total += w[s].n;
        if (w[s].t_start < t_first) t_first = w[s].t_start;
        if (w[s].t_end > t_last) t_last = w[s].t_end;
    }
    all = malloc((size_t)(total ? total : 1) * sizeof *all);
    if (!all) {
        rc = cli_fail(c, "out of memory");
        goto done;
    }
    int64_t at = 0;
    for (int s = 0; s < streams; s++) {
        memcpy(all + at, w[s].lat, (size_t)w[s].n * sizeof *all);
        at += w[s].n;
    }
    summary lat = summarize(all, total);
    double wall_s = (t_last - t_first) / 1e3;
    double qps = wall_s > 0 ? (double)total / wall_s : NAN;
    int64_t batch = o.batch;
    if (!batch) {
        batch = 1;
        for (int i = 0; i < ios[0].n; i++)
            if (ios[0].mode[i] == KILN_IO_INPUT) {
                if (ios[0].dims[i].nb_dims >= 1 && ios[0].dims[i].d[0] > 0) batch = ios[0].dims[i].d[0];
                break;
            }
    }

    /* enqueue time: the call alone. CPU engines run inside it; device engines return once
     * the work is queued, and a synchronize then drains the stream. */
    int64_t nenq = iterations ? (iterations < 100 ? iterations : 100) : (w[0].n < 100 ? (w[0].n > 10 ? w[0].n : 10) : 100);
    enq = malloc((size_t)nenq * sizeof *enq);
    if (!enq) {
        rc = cli_fail(c, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < nenq; i++) {
        double t0 = cli_now_ms();
        if (kiln_context_enqueue(w[0].ctx, NULL) != KILN_OK) {
            rc = cli_fail(c, "%s: enqueue failed: %s", model, cli_last_error());
            goto done;
        }
        enq[i] = cli_now_ms() - t0;
    }
    if (kiln_context_synchronize(w[0].ctx) != KILN_OK) {
        rc = cli_fail(c, "%s: run failed: %s", model, cli_last_error());
        goto done;
    }
    summary enqs = summarize(enq, nenq);

    int64_t prof_runs = 0;
    double prof_total = 0;
    if (profile_on) {
        prof_runs = iterations ? (iterations < 1000 ? iterations : 1000) : (w[0].n < 1000 ? w[0].n : 1000);
        if (prof_runs < 1) prof_runs = 1;
        kiln_context_set_profiler(w[0].ctx, on_layer, &prof);
        for (int64_t i = 0; i < prof_runs; i++)
            if (kiln_context_execute(w[0].ctx) != KILN_OK) {
                rc = cli_fail(c, "%s: profiling run failed: %s", model, cli_last_error());
                goto done;
            }
        kiln_context_set_profiler(w[0].ctx, NULL, NULL);
        if (prof.oom) {
            rc = cli_fail(c, "out of memory for the profile");
            goto done;
        }
        qsort(prof.e, (size_t)prof.n, sizeof *prof.e, cmp_prof);
        for (int i = 0; i < prof.n; i++) prof_total += prof.e[i].total_ms;
    }

    size_t act, scratch, weights, iobytes = 0;
    kiln_engine_memory(e, &act, &scratch, &weights);
    for (int i = 0; i < ios[0].n; i++) iobytes += ios[0].bytes[i];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mib = (double)ru.ru_maxrss / 1024.0;

    if (c->verbosity >= 1) {
        printf("%s on %s: %lld stream%s, batch %lld, %lld timed runs in %.1f ms (warmup %lld per stream)\n", model,
               cuda ? "cuda" : "cpu", (long long)streams, streams > 1 ? "s" : "", (long long)batch, (long long)total,
               wall_s * 1e3, (long long)warmup);
        print_summary("latency", &lat);
        printf("  %-18s %.2f runs/s, %.2f inferences/s\n", "throughput", qps, qps * (double)batch);
        if (cuda)
            printf("  %-18s upload n/a, compute n/a, download n/a (total %.4f ms: the public API times the whole run)\n",
                   "host latency split", lat.mean);
        else
            printf("  %-18s upload 0, compute %.4f, download 0 ms (mean; CPU inputs are read in place)\n",
                   "host latency split", lat.mean);
        printf("  %-18s mean %.4f  median %.4f  max %.4f ms (%lld calls%s)\n", "enqueue", enqs.mean, enqs.median,
               enqs.max, (long long)nenq, cuda ? "" : "; synchronous on the CPU");
        char b1[32], b2[32], b3[32], b4[32];
        printf("  %-18s activations %s + scratch %s per context (x%lld), weights %s, I/O %s per stream; host peak RSS "
               "%.1f MiB\n",
               "memory", cli_human_bytes((double)act, b1, sizeof b1), cli_human_bytes((double)scratch, b2, sizeof b2),
               (long long)streams, cli_human_bytes((double)weights, b3, sizeof b3),
               cli_human_bytes((double)iobytes, b4, sizeof b4), rss_mib);
        if (profile_on) {
            printf("per-layer profile (%lld runs, %.4f ms per run in layers):\n", (long long)prof_runs,
                   prof_total / (double)prof_runs);
            int wn = 5, wt = 4, wk = 6; /* columns as wide as their longest entry */
            for (int i = 0; i < prof.n; i++) {
                const char *fused, *kernel = kernel_of(e, prof.e[i].name, &fused);
                int kl = (int)(strlen(kernel) + (*fused ? 1 + strlen(fused) : 0));
                wn = (int)strlen(prof.e[i].name) > wn ? (int)strlen(prof.e[i].name) : wn;
                wt = (int)strlen(prof.e[i].type) > wt ? (int)strlen(prof.e[i].type) : wt;
                wk = kl > wk ? kl : wk;
            }
            printf("  %5s  %-*s  %-*s  %-*s %10s %7s\n", "rank", wn, "layer", wt, "type", wk, "kernel", "ms/run", "share");
            for (int i = 0; i < prof.n; i++) {
                const char *fused, *kernel = kernel_of(e, prof.e[i].name, &fused);
                char kbuf[256];
                snprintf(kbuf, sizeof kbuf, "%s%s%s", kernel, *fused ? "+" : "", fused);
                printf("  %5d  %-*s  %-*s  %-*s %10.4f %6.1f%%\n", i + 1, wn, prof.e[i].name, wt, prof.e[i].type, wk, kbuf,
                       prof.e[i].total_ms / (double)prof_runs,
                       prof_total > 0 ? 100.0 * prof.e[i].total_ms / prof_total : 0.0);
            }
        }
    }
    if (json_path) {
        json j;
        atomic_file af;
        if (!json_open(c, &j, &af, json_path)) {
            rc = CLI_FAIL;
            goto done;
        }
        json_begin_object(&j);
        json_key(&j, "model"), json_str(&j, model);
        json_key(&j, "device"), json_str(&j, cuda ? "cuda" : "cpu");
        json_key(&j, "device_io"), json_bool(&j, device_io && cuda);
        json_key(&j, "streams"), json_int(&j, streams);
        json_key(&j, "batch"), json_int(&j, batch);
        json_key(&j, "runs"), json_int(&j, total);
        json_key(&j, "wall_s"), json_num(&j, wall_s);
        json_summary(&j, "latency_ms", &lat);
        json_key(&j, "throughput");
        json_begin_object(&j);
        json_key(&j, "runs_per_s"), json_num(&j, qps);
        json_key(&j, "inferences_per_s"), json_num(&j, qps * (double)batch);
        json_end_object(&j);
        json_key(&j, "host_latency_ms");
        json_begin_object(&j);
        json_key(&j, "upload"), cuda ? json_null(&j) : json_num(&j, 0);
        json_key(&j, "compute"), cuda ? json_null(&j) : json_num(&j, lat.mean);
        json_key(&j, "download"), cuda ? json_null(&j) : json_num(&j, 0);
        json_key(&j, "total"), json_num(&j, lat.mean);
        json_end_object(&j);
        json_summary(&j, "enqueue_ms", &enqs);
        json_key(&j, "memory_bytes");
        json_begin_object(&j);
        json_key(&j, "activations_per_context"), json_int(&j, (int64_t)act);
        json_key(&j, "scratch_per_context"), json_int(&j, (int64_t)scratch);
        json_key(&j, "weights"), json_int(&j, (int64_t)weights);
        json_key(&j, "io_per_stream"), json_int(&j, (int64_t)iobytes);
        json_key(&j, "engine_total"), json_int(&j, (int64_t)(weights + (size_t)streams * (act + scratch)));
        json_key(&j, "host_peak_rss"), json_int(&j, (int64_t)ru.ru_maxrss * 1024);
        json_end_object(&j);
        if (profile_on) {
            json_key(&j, "profile");
            json_begin_object(&j);
            json_key(&j, "runs"), json_int(&j, prof_runs);
            json_key(&j, "layers");
            json_begin_array(&j);
            for (int i = 0; i < prof.n; i++) {
                const char *fused, *kernel = kernel_of(e, prof.e[i].name, &fused);
                json_begin_object(&j);
                json_key(&j, "name"), json_str(&j, prof.e[i].name);
                json_key(&j, "type"), json_str(&j, prof.e[i].type);
                json_key(&j, "kernel"), json_str(&j, kernel);
                json_key(&j, "fused"), json_str(&j, fused);
                json_key(&j, "ms_per_run"), json_num(&j, prof.e[i].total_ms / (double)prof_runs);
                json_key(&j, "share"), json_num(&j, prof_total > 0 ? prof.e[i].total_ms / prof_total : 0);
                json_end_object(&j);
            }
            json_end_array(&j);
            json_end_object(&j);
        }
        json_end_object(&j);
        rc = json_close(c, &j, &af, json_path);
    }
done:
    for (int i = 0; i < prof.n; i++) {
        free(prof.e[i].name);
        free(prof.e[i].type);
    }
    free(prof.e);
    free(all);
    free(enq);
    for (int s = 0; w && s < streams; s++) {
        kiln_context_destroy(w[s].ctx);
        free(w[s].lat);
        if (ios) io_free(&ios[s]);
    }
    free(w);
    free(ios);
    free(th);
    loaded_model_free(&m);
out:
    input_set_free(ins);
    free(ins);
    build_opts_free(&o);
    return rc;
}
