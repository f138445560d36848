/* kiln CUDA backend internals shared by the host glue (C) and the kernels (.cu): launch
 * parameter structs and the extern "C" launchers. Every launcher enqueues on the given
 * stream, returns the launch status (cudaGetLastError) and never synchronizes. Sizes are
 * in elements unless a name says bytes; dtype/op arguments take kiln's enum values. An
 * `st` argument is a float storage type, KILN_FLOAT32 or KILN_FLOAT16: such kernels load
 * and store that type and compute in float32. Channels-last (NHWC) data goes through the
 * same kernels with its own strides: a per-channel operand of [N, H, W, C] data is
 * outer = N*H*W, channels = C, inner = 1. */
#ifndef KILN_CUDA_KCU_H
#define KILN_CUDA_KCU_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A data-dependent failure found by a kernel (an index out of range, an integer division
 * by zero), in device memory; the host reads it when it synchronizes. The first writer
 * wins (atomicCAS on code). */
typedef struct kcu_err {
    int code; /* KCU_FAULT_*, 0 = none */
    int node; /* index of the engine node that failed */
    long long a, b; /* gather: the raw index and its position */
} kcu_err;

enum { KCU_FAULT_NONE = 0, KCU_FAULT_GATHER_INDEX = 1, KCU_FAULT_INT_DIV = 2 };

/* An activation applied by a kernel: kiln_activation_type and its parameters. */
typedef struct kcu_act {
    int type;
    float alpha, beta;
} kcu_act;

/* numpy broadcasting over the output: collapsed dims and each operand's element strides
 * (0 on broadcast axes). With rank 1 every operand is contiguous or a single value. */
#define KCU_BC_OPS 3
#define KCU_BC_RANK 8
typedef struct kcu_bcast {
    int rank;
    int64_t total;
    int64_t dims[KCU_BC_RANK];
    int64_t st[KCU_BC_OPS][KCU_BC_RANK];
} kcu_bcast;

/* A strided read of a view into a contiguous output: output element (i_0, .., i_nd-1)
 * (outermost first) reads src[src_offset + sum i_k * ss[k]]. Serves slice, transpose,
 * expand, tile and the depth/space rearrangements. */
#define KCU_MV_RANK 16
typedef struct kcu_mv {
    int nd;
    int64_t total;
    int64_t src_offset;
    int64_t dims[KCU_MV_RANK];
    int64_t ss[KCU_MV_RANK];
} kcu_mv;

/* Pad and crop: per output axis a device table maps each output position to an input
 * index (-1: the constant). Axis k's table starts at maps + map_off[k]. */
#define KCU_PAD_RANK 8
typedef struct kcu_pad {
    int rank;
    int64_t total;
    int64_t out[KCU_PAD_RANK];
    int64_t in_stride[KCU_PAD_RANK];
    int64_t map_off[KCU_PAD_RANK];
    const int64_t *maps;
    uint64_t value; /* the constant's bytes, element size of the tensor */
    int64_t row_in; /* > 0: only the last axis grows, at its end, with the constant: rows of
                     * row_in elements into rows of out[rank - 1] (a stem's 3 channels to 8) */
} kcu_pad;

/* Space-to-depth of a zero-padded channels-last float16 image for a strided convolution
 * (see dnn.c): y[n, Y, X, (ry*s + rx)*c + ch] = x[n, s*Y + ry - pt, s*X + rx - pl, ch]
 * (zero outside x), channels cs >= s*s*c (a multiple of 8; the extra ones zero). */
typedef struct kcu_s2d {
    int64_t n, h, w, c; /* input */
    int64_t s, pt, pl;  /* stride (block size), leading pads */
    int64_t hs, ws, cs; /* output */
} kcu_s2d;

/* Windowed pooling over planes of h x w (rank-3 input: h = 1). */
typedef struct kcu_pool {
    int64_t planes, h, w, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int max, include_pad;
    int64_t xp, yp; /* channels-last: elements from one pixel to the next in x and y (0: c) */
} kcu_pool;

/* Resize: per output axis, positions index device tables: idx[off[k] + x] (nearest or
 * lower neighbour, as an element offset), idx[off[k] + out[k] + x] (upper neighbour) and
 * wt[woff[k] + x] (weight of the upper one). */
#define KCU_RS_RANK 8
typedef struct kcu_resize {
    int rank, linear;
    int64_t total;
    int64_t out[KCU_RS_RANK];
    int64_t off[KCU_RS_RANK], woff[KCU_RS_RANK];
    int interp[KCU_RS_RANK];
    int64_t inner; /* nearest: the last axis in memory, when unchanged (0: resized) */
    int64_t yc, yp; /* a pitched y: the last axis's size, and elements from one of its runs to the next (0: dense) */
    int hw2; /* linear over H and W only of a channels-last 4-D tensor, channels copied (2: pixel
              * strides and pitches multiples of 8 elements as well), sizes within 32-bit math */
    const int64_t *idx;
    const float *wt;
} kcu_resize;

/* Reduction: outputs are the kept positions in input order; each reads `count` inputs. */
#define KCU_RED_RANK 8
typedef struct kcu_reduce {
    int op, dtype;
    int nk, nr;
    int64_t klen[KCU_RED_RANK], kst[KCU_RED_RANK];
    int64_t rlen[KCU_RED_RANK], rst[KCU_RED_RANK];
    int64_t outputs, count;
    int block_per_output; /* the innermost reduced group is contiguous: a block per output */
} kcu_reduce;

/* An element-wise op that is no kiln_elementwise_op: PRelu (x >= 0 ? x : x * slope). */
#define KCU_OP_PRELU 1000

/* pointwise.cu */
cudaError_t kcu_activation(cudaStream_t s, int64_t n, const float *x, float *y, kcu_act act);
/* y[o, c, i] = act(y + bias[c]) in place over [outer, channels, inner]; bias and act may be NULL. */
cudaError_t kcu_bias_act(cudaStream_t s, float *y, const float *bias, int64_t outer, int64_t channels, int64_t inner,
                         const kcu_act *act);
cudaError_t kcu_unary(cudaStream_t s, int dtype, int op, int64_t n, const void *x, void *y);
/* act (NULL: none) is applied to float32 results. */
cudaError_t kcu_binary(cudaStream_t s, const kcu_bcast *p, int dtype, int op, void *y, const void *a, const void *b,
                       kcu_err *err, int node, const kcu_act *act);
cudaError_t kcu_prelu(cudaStream_t s, const kcu_bcast *p, float *y, const float *x, const float *slope);
cudaError_t kcu_select(cudaStream_t s, const kcu_bcast *p, int es, void *y, const uint8_t *cond, const void *a,
                       const void *b);
/* mode: kiln_scale_mode; shift/scale/power NULL when absent. inner, channels: see the CPU kernel. */
cudaError_t kcu_scale(cudaStream_t s, int mode, int64_t n, int64_t inner, int64_t channels, const float *x, float *y,
                      const float *shift, const float *scale, const float *power);
cudaError_t kcu_cast(cudaStream_t s, int from, int to, int64_t n, const void *x, void *y);
/* y[i, j] = beta * c[i * cs_m + j * cs_n] over [m, n]. */
cudaError_t kcu_fill_c(cudaStream_t s, float *y, const float *c, int64_t m, int64_t n, int64_t cs_m, int64_t cs_n,
                       float beta);

/* float16 unary math (the float32 ops). */
cudaError_t kcu_unary_f16(cudaStream_t s, int op, int64_t n, const void *x, void *y);

/* f16.cu: the float16 (and storage-generic) kernels */
/* Converts storage type and layout at once. 4-D tensors are [n, c, hw] planes (NCHW) or
 * [n, hw, c] (NHWC); any other tensor passes n = volume, c = hw = 1. */
cudaError_t kcu_reformat(cudaStream_t s, int from, int to, int64_t n, int64_t c, int64_t hw, int src_nhwc,
                         int dst_nhwc, const void *x, void *y);
cudaError_t kcu_activation_st(cudaStream_t s, int st, int64_t n, const void *x, void *y, kcu_act act);
/* y = act(x + bias[channel] + residual) over [outer, channels, inner], or with res_after
 * act(x + bias[channel]) + residual; residual, bias and act may each be NULL; y may be x.
 * Channels-last (inner 1) tensors may be pitched: pixel p's channels at p * xp in x and
 * p * yp in y (0: channels); the residual dense. A plain copy when nothing else applies
 * and x != y. */
cudaError_t kcu_epilogue(cudaStream_t s, int st, const void *x, int64_t xp, void *y, int64_t yp,
                         const void *residual, const float *bias, int64_t outer, int64_t channels, int64_t inner,
                         const kcu_act *act, int res_after);
/* float16 broadcast op: op is a float kiln_elementwise_op (arithmetic) or KCU_OP_PRELU. */
cudaError_t kcu_binary_f16(cudaStream_t s, const kcu_bcast *p, int op, void *y, const void *a, const void *b,
                           const kcu_act *act);
/* kcu_scale on float16 data (float32 weights). */
cudaError_t kcu_scale_f16(cudaStream_t s, int mode, int64_t n, int64_t inner, int64_t channels, const void *x,
                          void *y, const float *shift, const float *scale, const float *power);
/* kcu_fill_c on float16 data. */
cudaError_t kcu_fill_c_f16(cudaStream_t s, void *y, const void *c, int64_t m, int64_t n, int64_t cs_m, int64_t cs_n,
                           float beta);

/* movement.cu */
cudaError_t kcu_mv_run(cudaStream_t s, const kcu_mv *p, int es, const void *src, void *dst);
cudaError_t kcu_pad_run(cudaStream_t s, const kcu_pad *p, int es, const void *src, void *dst);
cudaError_t kcu_s2d_run(cudaStream_t s, const kcu_s2d *p, const void *x, void *y);
/* `rows` rows of `width` bytes from src (row pitch spitch) to dst (pitch dpitch). */
cudaError_t kcu_copy2d(cudaStream_t s, void *dst, int64_t dpitch, const void *src, int64_t spitch, int64_t width,
                       int64_t rows);
/* out[o, k, i] = data[o, idx[k], i] over [outer, count, inner]; axis size D. */
cudaError_t kcu_gather(cudaStream_t s, int es, const void *data, const void *idx, int idx64, int64_t outer,
                       int64_t count, int64_t D, int64_t inner, void *out, kcu_err *err, int node);

/* pool.cu */
cudaError_t kcu_pool_run(cudaStream_t s, const kcu_pool *p, const float *x, float *y);
cudaError_t kcu_global_pool(cudaStream_t s, int max, int64_t planes, int64_t hw, const float *x, float *y);
/* es: element size of the storage; linear interpolation takes float32 (4) or float16 (2). */
cudaError_t kcu_resize_run(cudaStream_t s, const kcu_resize *p, int es, const void *x, void *y);
/* Channels-last pooling: p->planes holds the batch, c the channels; x is [n, h, w, c]. */
cudaError_t kcu_pool_nhwc(cudaStream_t s, int st, const kcu_pool *p, int64_t c, const void *x, void *y);
cudaError_t kcu_global_pool_nhwc(cudaStream_t s, int st, int max, int64_t n, int64_t hw, int64_t c, const void *x,
                                 void *y);

/* igemm.cu: kiln's implicit-GEMM convolution, float16 channels-last, one group; x is
 * [n, h, w, c], the weights [k, kh, kw, c], y and the residual [n, oh, ow, k]. kg = kh*kw*c,
 * m = n*oh*ow; act applies where has_act is set, the residual before it, or after it with
 * res_after. y may be pitched (ldy).
 * With uh, uw > 0 the product is a deconvolution whose kernel equals its stride (no overlap,
 * no padding): a 1x1 convolution (kh = kw = sh = sw = 1, oh = h, ow = w) whose k = uh*uw*co
 * columns (i, j, c) of input pixel (b, y, x) go to output pixel (b, y*uh + i, x*uw + j),
 * channel c, of a [n, h*uh, w*uw, co] y (pitched by ldy); the bias is indexed by c; no
 * residual. */
typedef struct kcu_igemm {
    int n, h, w, c, k, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw;
    int m, kg;
    int has_act;
    int res_after;
    kcu_act act;
    int vec; /* set by kcu_igemm_run: 8 channels a memory access */
    int ldy; /* elements from one output pixel to the next (0: k, or co; a channel slice: more) */
    int uh, uw; /* > 0: the deconvolution's scatter above */
} kcu_igemm;
int kcu_igemm_configs(void);
/* Whether configuration cfg is kiln's Hopper kernel (wgmma.cu), and whether it runs p. */
int kcu_igemm_is_wgmma(int cfg);
int kcu_igemm_config_ok(const kcu_igemm *p, int cfg);
/* A configuration's tile shape and split-K slices for this shape. */
void kcu_igemm_tile(const kcu_igemm *p, int cfg, int *bm, int *bn, int *splits);
int kcu_igemm_applies(const kcu_igemm *p);
/* Scratch bytes a tile shape needs (split-K partial sums; 0 without a split). */
size_t kcu_igemm_workspace(const kcu_igemm *p, int cfg);
cudaError_t kcu_igemm_run(cudaStream_t s, int cfg, const kcu_igemm *p, const void *x, const void *w, const float *bias,
                          const void *res, void *y, void *workspace);

/* Sums `splits` float32 partials part[z][m][k] and runs the epilogue into y: the split-K
 * reduction of kiln's implicit GEMM and of wgmma.cu's split configurations. */
cudaError_t kcu_igemm_reduce(cudaStream_t s, const kcu_igemm *p, int splits, const float *part, const float *bias,
                             const void *res, void *y);

/* wgmma.cu: kiln's Hopper convolution (stride 1, channels multiples of 64, a slice of the
 * weights resident in shared memory; sm_90a), configurations IG_CONFIGS.. of the implicit
 * GEMM above. kcu_wgmma_splits: a configuration's split-K slices on this shape (a function
 * of the shape alone; 1: no split), whose partials take kcu_igemm_workspace's scratch. */
int kcu_wgmma_configs(void);
int kcu_wgmma_bn(int cfg);
int kcu_wgmma_splits(const kcu_igemm *p, int cfg);
int kcu_wgmma_applies(const kcu_igemm *p, int cfg);
cudaError_t kcu_wgmma_run(cudaStream_t s, int cfg, const kcu_igemm *p, const void *x, const void *w, const float *bias,
                          const void *res, void *y, void *workspace);

/* stem.cu: an image network's stem convolution, float16 channels-last with 1-8 input
 * channels read unpadded: x [n, h, w, c], the weights [k, kp] (reduction index
 * kcu_stem_index, zeros elsewhere), y [n, oh, ow, k] pitched by ldy (0: k), the float32
 * bias and the activation fused. Two forms (kcu_stem_setup picks one from the shape):
 * - packed: reduction (r*kw + s)*c + ch, kp = kh*kw*c rounded up to 16, at most 128,
 *   gathered per pixel straight into the tensor cores' fragments;
 * - strided (s2): a stride-2 row of at most 8 taps over at most 4 channels, reduction
 *   r*32 + s*4 + ch, kp = 32*kh (kh <= 8): the input patch of a tile in shared memory, its
 *   taps read with ldmatrix (ResNet's 7x7/2, YOLOv5's 6x6/2). */
typedef struct kcu_stem {
    int n, h, w, c, k, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw;
    int m, kp; /* n*oh*ow; the padded reduction */
    int ldy;
    int has_act;
    kcu_act act;
    int s2; /* the strided form */
} kcu_stem;
/* Sets s2 and kp from the geometry. */
static inline void kcu_stem_setup(kcu_stem *p) {
    p->s2 = p->c >= 1 && p->c <= 4 && p->sw == 2 && (p->sh == 1 || p->sh == 2) && p->dh == 1 && p->dw == 1 &&
            p->kw >= 1 && p->kw <= 8 && p->kh >= 1 && p->kh <= 8;
    p->kp = p->s2 ? 32 * p->kh : (p->kh * p->kw * p->c + 15) / 16 * 16;
}
/* The reduction index of filter tap (r, s), input channel ch. */
static inline int64_t kcu_stem_index(const kcu_stem *p, int64_t r, int64_t s, int64_t ch) {
    return p->s2 ? r * 32 + s * 4 + ch : (r * p->kw + s) * p->c + ch;
}
int kcu_stem_applies(const kcu_stem *p);
cudaError_t kcu_stem_run(cudaStream_t s, const kcu_stem *p, const void *x, const void *w, const float *bias, void *y);

/* reduce.cu */
cudaError_t kcu_reduce_run(cudaStream_t s, const kcu_reduce *p, const void *x, void *y);
cudaError_t kcu_arg_reduce(cudaStream_t s, int dtype, int is_min, int last, int64_t outer, int64_t len, int64_t inner,
                           const void *x, int64_t *y);
/* *out = the float bits of max |x[i]| over n values (NaN, Inf: +Inf); out in device memory. */
cudaError_t kcu_absmax(cudaStream_t s, const float *x, int64_t n, unsigned *out);
cudaError_t kcu_softmax(cudaStream_t s, int log, int64_t outer, int64_t len, int64_t inner, const float *x, float *y);
cudaError_t kcu_instance_norm(cudaStream_t s, int64_t rows, int64_t channels, int64_t spatial, float eps,
                              const float *x, float *y, const float *scale, const float *bias);
cudaError_t kcu_lrn(cudaStream_t s, int64_t n, int64_t c, int64_t spatial, int64_t size, float alpha, float beta,
                    float bias, const float *x, float *y);

/* ---- fused regions (src/graph/fused.h; host side src/cuda/fused.c) ---- */
#define KCU_FZ_IT 10
#define KCU_FZ_LOADS 16
#define KCU_FZ_PROG 48
#define KCU_FZ_INPUTS 64
#define KCU_FZ_STACK 8
#define KCU_FZ_RUN 4 /* elements a thread takes along the last box axis */
/* the program's instructions, as KF_* of src/graph/fused.h (checked there) */
enum { KCU_FZ_LOAD = 1, KCU_FZ_CONST, KCU_FZ_ACT, KCU_FZ_SCALE, KCU_FZ_BIN, KCU_FZ_ROUND16 };
/* One piece, its maps as element strides of each tensor's memory, box axes ordered so the
 * output's strides fall (the last axis moves along the output's memory). */
#define KCU_FZ_RPT 4 /* runs a thread takes, a block apart */
#define KCU_FZ_THREADS 256
/* A piece as the kernel reads it: a block works on one piece and copies it to shared memory
 * first, so the struct is a whole number of 32-bit words. All pieces of a launch have the
 * same number of box axes (shorter boxes get leading axes of extent 1). */
typedef struct kcu_fz_piece {
    long long bstart; /* the piece's first block in the launch */
    long long runs;   /* its runs of KCU_FZ_RUN elements along the last axis */
    int ni, nb_loads, nb_instrs;
    unsigned last_runs; /* runs along the last axis (its last run may be short) */
    /* extents; x / ext = (umulhi(x, mag) + x) >> shf (the last axis: x / last_runs) */
    unsigned ext[KCU_FZ_IT], mag[KCU_FZ_IT];
    int shf[KCU_FZ_IT];
    long long oc[KCU_FZ_IT], ob;
    long long lc[KCU_FZ_LOADS][KCU_FZ_IT], lb[KCU_FZ_LOADS];
    int lt[KCU_FZ_LOADS]; /* the input a load reads */
    int op[KCU_FZ_PROG], arg[KCU_FZ_PROG];
    float f[KCU_FZ_PROG][3];
} kcu_fz_piece;
typedef struct kcu_fz_args {
    const void *in[KCU_FZ_INPUTS];
    unsigned long long in_f16; /* bit i: input i is float16 */
    void *out;
    int out_f16, np;
    long long blocks; /* the launch's blocks, all pieces' */
    const kcu_fz_piece *pieces; /* device */
} kcu_fz_args;
/* ni: the pieces' box axes. big: a piece of 2^31 runs or more, or a tensor of 2^31 elements
 * or more (64-bit division and offsets). */
cudaError_t kcu_fused_run(cudaStream_t s, const kcu_fz_args *a, int ni, int big);

#ifdef __cplusplus
}
#endif
#endif
