/* kiln internal: layers that are a strided walk over their input, described once for every
 * backend: the output is visited as dims[] (row-major) and each step along axis k moves the
 * input by strides[k] elements. src/cpu/movement.c and src/cuda/ops.c build their copy plans
 * from these. */
#ifndef KILN_GRAPH_WALKS_H
#define KILN_GRAPH_WALKS_H

#include "graph/graph.h"

/* DepthToSpace: the output walked as [N, C', H, b, W, b]. */
static inline void kg_depth_to_space_walk(const kiln_layer *l, int64_t dims[6], int64_t strides[6]) {
    const int64_t *d = l->inputs[0]->dims.d;
    int64_t b = l->p.d2s.block, C = d[1], H = d[2], W = d[3], Co = C / (b * b), HW = H * W;
    const int64_t dd[6] = {d[0], Co, H, b, W, b};
    for (int k = 0; k < 6; k++) dims[k] = dd[k];
    strides[0] = C * HW;
    strides[2] = W;
    strides[4] = 1;
    if (l->p.d2s.crd) { /* channel = c' * b*b + i * b + j */
        strides[1] = b * b * HW;
        strides[3] = b * HW;
        strides[5] = HW;
    } else { /* DCR: channel = (i * b + j) * C' + c' */
        strides[1] = HW;
        strides[3] = b * Co * HW;
        strides[5] = Co * HW;
    }
}

/* SpaceToDepth: output channel (i * b + j) * C + c reads input (c, h' * b + i, w' * b + j),
 * so the output is walked as [N, b, b, C, H/b, W/b]. */
static inline void kg_space_to_depth_walk(const kiln_layer *l, int64_t dims[6], int64_t strides[6]) {
    const int64_t *d = l->inputs[0]->dims.d;
    int64_t b = l->p.d2s.block, C = d[1], H = d[2], W = d[3];
    const int64_t dd[6] = {d[0], b, b, C, H / b, W / b}, ss[6] = {C * H * W, W, 1, H * W, b * W, b};
    for (int k = 0; k < 6; k++) dims[k] = dd[k], strides[k] = ss[k];
}

#endif
