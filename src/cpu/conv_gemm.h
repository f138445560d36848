/* kiln CPU backend: the GEMM behind convolutions (conv.c, winograd.c): y = act(W B + bias +
 * residual) with W packed at prepare, on kiln's own threads, with an AVX2 + FMA kernel. One
 * thread pool for the whole network: OpenBLAS's workers spin between calls and would take
 * the cores from kiln's threads during the layers' other phases. */
#ifndef KILN_CPU_CONV_GEMM_H
#define KILN_CPU_CONV_GEMM_H

#include "cpu/cpu.h"

/* Rows of W per packed panel and columns of B per kernel call. */
#define KCG_MR 6
#define KCG_NR 16

/* Code that only runs where kcg_available() (im2col into panels, Winograd's transforms) may
 * be compiled for AVX2 + FMA too. */
#if defined(__GNUC__) && defined(__x86_64__)
#define KCG_TARGET __attribute__((target("avx2,fma")))
#else
#define KCG_TARGET
#endif

/* Whether this CPU runs the kernel (AVX2 + FMA); when not, conv.c takes OpenBLAS. */
bool kcg_available(void);

/* Floats of W [m, k] packed: panels of KCG_MR rows, [m / MR][k][MR], zero past m. */
size_t kcg_packed_floats(int64_t m, int64_t k);
/* Packs W (row-major, rows lda apart) into dst. */
void kcg_pack(const float *w, int64_t lda, int64_t m, int64_t k, float *dst);

/* c[r][0..cols) = sum_i a[i][r] b[i * ldb + 0..cols), r < rows (<= MR), cols <= NR: one
 * block of a packed panel a ([k][MR]); b's NR columns are all readable; c rows ldc apart.
 * Only with kcg_available(). */
void kcg_block(int64_t k, const float *a, const float *b, size_t ldb, float *c, size_t ldc, int rows, int cols);

/* B is stored in panels of NR columns: element (i, j) of an image's B at
 * b[(j / NR) * b_panel + i * NR + j % NR], the columns of a last partial panel zero. */
static inline size_t kcg_b_index(int64_t i, int64_t j, size_t b_panel) {
    return (size_t)(j / KCG_NR) * b_panel + (size_t)i * KCG_NR + (size_t)(j % KCG_NR);
}

/* Writes column panels [q0, q1) of image img's B (all k rows), e.g. by im2col. */
typedef void (*kcg_fill_fn)(void *arg, int64_t img, int64_t q0, int64_t q1);

/* One GEMM over a batch of images: for image i, C_i = act(W B_i + bias + R_i), W m x k
 * packed, B_i k x ncols in panels (image i at b + i * b_img), C_i and R_i m x ncols (rows
 * ldc apart, image i at c + i * c_img). With fill set, B is written by fill as the GEMM
 * goes, each block of panels by the thread that multiplies it, while it is in cache. */
typedef struct kcg_problem {
    const float *a; /* packed W */
    int64_t m, k;
    const float *b;
    size_t b_panel, b_img;
    size_t ldb; /* nonzero: B row-major instead, rows ldb apart */
    float *c;
    size_t ldc, c_img;
    const float *res;    /* residual, laid out as c; NULL: none */
    const float *bias;   /* m values; NULL: none */
    const kiln_layer *l; /* its fused activation (has_post_act), or NULL */
    int64_t nimg, ncols;
    kcg_fill_fn fill; /* NULL: B is ready */
    void *fill_arg;
} kcg_problem;

/* Runs p across the exec context's threads. Only with kcg_available(). */
void kcg_run(const kcg_problem *p, kcpu_exec *xc);

/* kcpu_parallel_for with the chunks of `chunk` items handed out as threads ask for them
 * rather than split evenly up front: on a shared machine a core that another process slows
 * down takes fewer, instead of holding up the others. */
void kcg_parallel_dynamic(kcpu_exec *xc, int64_t n, int64_t chunk, kcpu_range_fn fn, void *arg);

#endif
