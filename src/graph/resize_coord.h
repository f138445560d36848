/* kiln internal: ONNX Resize coordinate mapping, shared by every backend so they agree
 * on each output element's source (src/cpu/resize.c, src/cuda/ops.c). */
#ifndef KILN_GRAPH_RESIZE_COORD_H
#define KILN_GRAPH_RESIZE_COORD_H

#include <math.h>
#include <stdint.h>

#include "kiln/network.h"

/* Output coordinate x to input coordinate, per ONNX coordinate_transformation_mode;
 * scale is the given scale (or out/in), in and out the axis lengths. */
static inline double rs_coord(kiln_resize_coord mode, double x, double scale, int64_t in, int64_t out) {
    switch (mode) {
    case KILN_COORD_HALF_PIXEL: return (x + 0.5) / scale - 0.5;
    case KILN_COORD_PYTORCH_HALF_PIXEL: return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    /* the resized length is in*scale, unrounded, when scales were given (ONNX) */
    case KILN_COORD_ALIGN_CORNERS: return out > 1 ? x * (double)(in - 1) / ((double)in * scale - 1.0) : 0.0;
    case KILN_COORD_ASYMMETRIC: return x / scale;
    case KILN_COORD_TF_HALF_PIXEL_FOR_NN: return (x + 0.5) / scale;
    }
    return x;
}

/* The nearest input index to coordinate x, per ONNX nearest_mode. */
static inline int64_t rs_nearest(kiln_resize_nearest mode, double x) {
    double f = floor(x);
    switch (mode) {
    case KILN_NEAREST_ROUND_PREFER_FLOOR: return (int64_t)(x - f <= 0.5 ? f : f + 1);
    case KILN_NEAREST_ROUND_PREFER_CEIL: return (int64_t)(x - f < 0.5 ? f : f + 1);
    case KILN_NEAREST_FLOOR: return (int64_t)f;
    case KILN_NEAREST_CEIL: return (int64_t)ceil(x);
    }
    return (int64_t)f;
}

/* v clamped to an index of an axis of n elements. */
static inline int64_t rs_clamp_index(double v, int64_t n) {
    if (v < 0) return 0;
    if (v > (double)(n - 1)) return n - 1;
    return (int64_t)v;
}

#endif
