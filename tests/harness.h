/* kiln tests: shared helpers. Random inputs, float64 references compared by relative
 * error, poisoned outputs, and a one-call "build this network and run it" on a backend.
 * A test binary returns th_exit() from main: non-zero if any CHECK failed. */
#ifndef KILN_TESTS_HARNESS_H
#define KILN_TESTS_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln/kiln.h"

extern int th_failures;
extern int th_checks;
/* Counts a check (or a failure); atomic, since some tests check from several threads. */
#define TH_COUNT(counter) __atomic_fetch_add(&(counter), 1, __ATOMIC_RELAXED)

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        TH_COUNT(th_checks);                                                               \
        if (!(cond)) {                                                                     \
            TH_COUNT(th_failures);                                                         \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
        }                                                                                  \
    } while (0)

/* CHECK that a kiln call returned KILN_OK, printing kiln_last_error() otherwise. */
#define CHECK_OK(expr)                                                                     \
    do {                                                                                   \
        kiln_status st_ = (expr);                                                          \
        CHECK(st_ == KILN_OK, "%s -> %s: %s", #expr, kiln_status_string(st_), kiln_last_error()); \
    } while (0)

/* Prints a summary and returns the process exit status. */
int th_exit(const char *test_name);

/* Deterministic random numbers (xorshift), seeded by th_seed (default from the
 * KILN_TEST_SEED environment variable, else 12345). */
void th_seed(uint64_t seed);
uint64_t th_rand_u64(void);
/* Uniform in [lo, hi). */
double th_uniform(double lo, double hi);
/* Fills n floats uniformly in [lo, hi), never exactly zero. */
void th_fill(float *x, int64_t n, float lo, float hi);
/* malloc'd array of n random floats in [lo, hi). */
float *th_rand_array(int64_t n, float lo, float hi);

/* max_i |got_i - ref_i| / max(max_i |ref_i|, 1e-30); +inf if got has a NaN/Inf where
 * ref is finite, or n elements were never written (still poisoned). */
double th_rel_error(const float *got, const double *ref, int64_t n);
/* CHECKs th_rel_error < tol and prints the context on failure. Returns the error. */
double th_check_close(const char *what, const float *got, const double *ref, int64_t n, double tol);

/* A quiet builder (errors only to stderr when KILN_TEST_VERBOSE is set). */
kiln_builder *th_builder(void);
/* A copy of e through its plan: serialized, then loaded by a fresh runtime (default
 * settings). NULL, with a failed CHECK naming `what`, if either step fails. */
kiln_engine *th_reload(const kiln_engine *e, const char *what);

/* ---- typed data (float16, float64, int8, uint8 run on CPU kernels only) ---- */

/* A random integer in [lo, hi]. */
int64_t th_rand_int(int64_t lo, int64_t hi);
/* IEEE half written here independently of the library: the value of bits h; v rounded to
 * the nearest half (ties to even, overflow to infinity) as a double; the bits of a value
 * that is already a half. */
double th_half_value(uint16_t h);
double th_half_round(double v);
uint16_t th_half_bits(double v);
/* Element i of a float32/float16/float64 array as a double, and v stored there (rounded once). */
double th_fget(kiln_dtype t, const void *p, int64_t i);
void th_fput(kiln_dtype t, void *p, int64_t i, double v);
/* Whether layers on dtype t have CPU kernels only (float16, float64, int8, uint8). */
bool th_cpu_only(kiln_dtype t);
/* th_run_layer, but on the CPU for th_cpu_only dtypes whatever the device under test. */
void *th_run_layer_for(kiln_builder *b, kiln_dtype t, kiln_network *net, kiln_layer *l, void *const *inputs,
                       kiln_dims *od, const char *what);

/* Builds net for `device` and runs it once. inputs[i] holds the data of network input
 * i; outputs (required) [j] receives a malloc'd buffer (caller frees, also on failure) (poisoned with NaN bytes before the run)
 * sized from the engine, and out_dims[j] its dims (either may be NULL). The network is
 * NOT destroyed. Returns the first failing status (message in kiln_last_error()). */
kiln_status th_run_device(kiln_builder *b, kiln_network *net, kiln_device device, void *const *inputs,
                          void **outputs, kiln_dims *out_dims);
/* th_run_device on the device under test: KILN_TEST_DEVICE=cpu (default) or cuda, so
 * every op test runs unchanged on every backend against its float64 reference.
 * KILN_TEST_FP16 / KILN_TEST_TF32 set the builder flags of the same name. For a CUDA
 * engine, inputs and outputs here are host buffers: the harness copies them. */
kiln_status th_run(kiln_builder *b, kiln_network *net, void *const *inputs, void **outputs, kiln_dims *out_dims);
kiln_device th_test_device(void);

/* Builds net on the CPU with `threads` workers (chunk boundaries then land mid-row) and runs
 * it once; out (room for the single output) receives it. */
kiln_status th_run_threads(kiln_builder *b, kiln_network *net, int threads, void *const *inputs, void *out);
/* Marks l's output, runs net with th_run and destroys it; returns the malloc'd output (NULL,
 * with a failed CHECK, if the add or the run failed). */
void *th_run_layer(kiln_builder *b, kiln_network *net, kiln_layer *l, void *const *inputs, kiln_dims *od,
                   const char *what);
/* For a single-output layer l of net (add result, may be NULL): CHECKs it was added, its
 * inferred output dims equal `want`, then runs net (th_run) on the one input x and compares
 * the output with ref (n values) at tol. Does not destroy net. */
void th_check_layer(kiln_builder *b, kiln_network *net, kiln_layer *l, kiln_dims want, void *x, const double *ref,
                    int64_t n, double tol, const char *what);
/* CHECKs that an add call failed (l == NULL) with a message holding `type` and `needle`. */
void th_expect_add_fails(const kiln_layer *l, const char *what, const char *type, const char *needle);

#endif
