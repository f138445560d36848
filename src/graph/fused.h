/* kiln internal: fused regions. kopt_fuse_regions (src/opt/fuse.c) replaces a connected
 * group of data-movement and element-wise layers (reshapes, transposes, slices, concats,
 * reformats, casts, expands, element-wise arithmetic, uniform scales, activations) by one
 * KILN_LAYER_FUSED layer that reads the group's outside inputs once and writes its output
 * once: YOLOv5's detection head (reshape, transpose, slices, arithmetic on some channels,
 * concats, the float32 output) becomes one pass instead of thirty.
 *
 * The layer's output is covered by pieces. A piece has an iteration box of ni axes
 * (ext[0..ni)); every tensor it touches is addressed by a map that gives each logical axis
 * of that tensor as an affine function of the iteration coordinates,
 *     index_d = b[d] + sum_j a[d][j] * i_j,        a >= 0, b >= 0,
 * so a backend turns a map into element strides of the tensor's memory (row-major,
 * channels-last, pitched) once, and walks the box with additions. The piece's value at a
 * point is a postfix program over loads (maps of inputs) evaluated in float32, rounded
 * once to the output's storage type.
 *
 * The program lives in layer->aux as int64 words (so plans store it as they store any
 * attribute):
 *   KF_MAGIC, out dtype, out rank, out dims..., nb_pieces, then per piece:
 *   ni, ext[ni], out map, nb_loads, load maps..., nb_instrs, instrs (5 words each:
 *   op, arg, three float32 bit patterns)
 *   map: tensor (-1: the output; else an input index), rank, then per axis ni
 *   coefficients and the base. */
#ifndef KILN_GRAPH_FUSED_H
#define KILN_GRAPH_FUSED_H

#include "graph/graph.h"

#define KF_MAGIC 0x4b46555345440001LL /* "KFUSED" + version 1 */
#define KF_MAX_IT 10      /* iteration axes of a piece */
#define KF_MAX_LOADS 16   /* loads in one piece's program */
#define KF_MAX_PROG 48    /* instructions of one piece */
#define KF_MAX_STACK 8    /* the program's evaluation depth */
#define KF_MAX_PIECES 256
#define KF_MAX_AUX (1 << 20)

enum {
    KF_LOAD = 1,  /* push load[arg] */
    KF_CONST,     /* push f[0] */
    KF_ACT,       /* x = act(arg: kiln_activation_type, alpha f[0], beta f[1]) */
    KF_SCALE,     /* x = (x * f[0] + f[1]) ^ f[2] */
    KF_BIN,       /* b = pop, a = pop, push a (arg: kiln_elementwise_op) b */
    KF_ROUND16    /* x = x rounded to float16 (a layer whose logical output is float16) */
};

typedef struct kf_map {
    int tensor; /* -1: the layer's output; else the index of an input */
    int rank;
    int64_t a[KILN_MAX_DIMS][KF_MAX_IT];
    int64_t b[KILN_MAX_DIMS];
} kf_map;

typedef struct kf_instr {
    int op, arg;
    float f[3];
} kf_instr;

typedef struct kf_piece {
    int ni;
    int64_t ext[KF_MAX_IT];
    kf_map out;
    int nb_loads;
    kf_map loads[KF_MAX_LOADS];
    int nb_instrs;
    kf_instr prog[KF_MAX_PROG];
} kf_piece;

/* The element-wise ops a program applies (float arithmetic). */
static inline bool kf_bin_ok(int op) {
    return op == KILN_ELT_ADD || op == KILN_ELT_SUB || op == KILN_ELT_MUL || op == KILN_ELT_DIV ||
           op == KILN_ELT_MAX || op == KILN_ELT_MIN || op == KILN_ELT_POW;
}

/* Decodes and checks layer l's program against its inputs (ranks, dims, every map inside
 * its tensor, the program's stack use, the pieces' volumes summing to the output's):
 * *pieces (kiln_alloc'ed, *count of them) or an error naming the layer. pieces may be NULL
 * to check only; out_dims/out_dtype (may be NULL) receive the output's shape. */
kiln_status kf_decode(const kiln_layer *l, const kiln_env *env, kf_piece **pieces, int *count, kiln_dims *out_dims,
                      kiln_dtype *out_dtype);

/* Appends words to a growing aux array (the pass's encoder): false on out of memory or
 * past KF_MAX_AUX. */
typedef struct kf_writer {
    const kiln_env *env;
    int64_t *w;
    int n, cap;
    bool bad; /* a word was dropped: past KF_MAX_AUX, or out of memory (oom also set) */
    bool oom;
} kf_writer;
void kf_put(kf_writer *w, int64_t v);
void kf_put_map(kf_writer *w, const kf_map *m, int ni);
void kf_put_instr(kf_writer *w, const kf_instr *in);

/* Float32 bit patterns in program words. */
static inline int64_t kf_fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (int64_t)u;
}
static inline float kf_bitsf(int64_t v) {
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#endif
