/* kiln CPU backend: Winograd F(2x2, 3x3) convolution for conv.c (3x3, stride 1, dilation 1,
 * one group), float32 NCHW, with the bias, residual and activation fused. F(4x4, 3x3) would
 * save more multiplications but misses the float64-referenced 1e-5 bar at 128+ channels. */
#ifndef KILN_CPU_WINOGRAD_H
#define KILN_CPU_WINOGRAD_H

#include "cpu/cpu.h"

/* The convolution's shape, NCHW: input n x c x h x w, output n x k x oh x ow, padding at
 * the top and left (the bottom and right follow from oh, ow). */
typedef struct kcpu_wino_shape {
    int64_t n, c, h, w, k, oh, ow, pt, pl;
} kcpu_wino_shape;

typedef struct kcpu_wino kcpu_wino;

/* The output tile conv.c uses for this shape: 2 for Winograd, 0 for im2col + GEMM. The
 * choice depends on the shape and the CPU alone, so that an engine is deterministic. */
int kcpu_wino_pick(const kcpu_wino_shape *s);

/* Transforms the kernel [k, c, 3, 3] and copies the bias (NULL for none); *scratch receives
 * the run-time scratch bytes. NULL on out of memory (message set for l). Only where
 * kcpu_wino_pick() said 2. */
kcpu_wino *kcpu_wino_create(const kiln_layer *l, const kiln_env *env, const kcpu_wino_shape *s,
                            const float *kernel, const float *bias, size_t *scratch);
void kcpu_wino_destroy(const kiln_env *env, kcpu_wino *w);

/* y = act(conv(x) + bias + residual) for the whole batch; residual may be NULL, and the
 * activation is l's fused one (has_post_act). Uses the scratch of the exec context. */
void kcpu_wino_run(const kcpu_wino *w, const kiln_layer *l, const float *x, const float *residual, float *y,
                   kcpu_exec *xc);

#endif
