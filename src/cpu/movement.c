/* kiln CPU backend: data-movement kernels (concat, split, slice, transpose, pad, gather,
 * expand, tile, depth/space rearrangements). They copy bytes, so every dtype works. */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "cpu/cpu.h"
#include "graph/ops.h"
#include "graph/walks.h"

/* Defined in src/graph/shape_movement.c: the clamped start and step of every axis. */

#define MV_MAX_DIMS (2 * KILN_MAX_DIMS) /* tile views each axis as (repeat, size) */
#define MV_TILE 32                      /* blocked-transpose tile edge, in elements */
#define MV_CHUNK ((int64_t)1 << 20)     /* bytes one thread copies per concat/split item */
#define MV_GRAIN_ELEMS 16384            /* elements a thread should at least get */

static size_t dsize(const kiln_tensor *t) { return kiln_dtype_size(t->dtype); }

static int64_t volume(const kiln_dims *d) {
    int64_t v = 1;
    for (int i = 0; i < d->nb_dims; i++) v *= d->d[i];
    return v;
}

static void strides_of(const kiln_dims *d, int64_t *s) {
    int64_t v = 1;
    for (int i = d->nb_dims - 1; i >= 0; i--) {
        s[i] = v;
        v *= d->d[i];
    }
}

static int64_t grain_for(int64_t elems_per_item) {
    return KILN_MAX((int64_t)1, MV_GRAIN_ELEMS / KILN_MAX((int64_t)1, elems_per_item));
}

static inline void copy_elem(char *dst, const char *src, size_t es) {
    switch (es) {
    case 1: *dst = *src; break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    default: memcpy(dst, src, es); break;
    }
}

/* n elements from src (stride ss bytes) to dst (stride ds bytes). Fixed-size memcpy
 * compiles to one load and store and sidesteps strict aliasing. */
static void copy_run(char *dst, const char *src, int64_t n, int64_t ss, int64_t ds, size_t es) {
    if (ss == (int64_t)es && ds == (int64_t)es) {
        memcpy(dst, src, (size_t)n * es);
        return;
    }
#define RUN(T)                                                                             \
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * ds, src + i * ss, sizeof(T));         \
    break
    switch (es) {
    case 1: RUN(uint8_t);
    case 2: RUN(uint16_t);
    case 4: RUN(uint32_t);
    case 8: RUN(uint64_t);
    default:
        for (int64_t i = 0; i < n; i++) memcpy(dst + i * ds, src + i * ss, es);
        break;
    }
#undef RUN
}

/* n copies of the es-byte value at val. */
static void fill_run(char *dst, const char *val, int64_t n, size_t es) {
    bool zero = true;
    for (size_t i = 0; i < es; i++) zero = zero && val[i] == 0;
    if (zero) {
        memset(dst, 0, (size_t)n * es);
        return;
    }
    copy_run(dst, val, n, 0, (int64_t)es, es);
}

/* ---- strided copy: output contiguous, source read through per-axis byte strides ----
 * Slice, transpose, expand, tile and the depth/space rearrangements are all this one
 * copy over a view of the input; only the strides differ. */

typedef struct mv_plan {
    int nd;                /* axes left after dropping size-1 ones and merging */
    int64_t dims[MV_MAX_DIMS];
    int64_t ss[MV_MAX_DIMS]; /* source strides, bytes (may be 0 or negative) */
    int64_t ds[MV_MAX_DIMS]; /* destination strides, bytes (contiguous) */
    int64_t total;         /* elements; 0 = nothing to copy */
    int64_t src_offset;    /* bytes from the input buffer to element 0 of the view */
    size_t es;
    int tj; /* blocked transpose: axis whose source is contiguous, or -1 */
} mv_plan;

static void mv_plan_make(mv_plan *p, int nd, const int64_t *dims, const int64_t *ss_elems, size_t es) {
    memset(p, 0, sizeof *p);
    p->es = es;
    p->tj = -1;
    p->total = 1;
    for (int i = 0; i < nd; i++) p->total *= dims[i];
    int64_t ds[MV_MAX_DIMS];
    int64_t v = (int64_t)es;
    for (int i = nd - 1; i >= 0; i--) {
        ds[i] = v;
        v *= dims[i];
    }
    /* Merge from the innermost axis outwards: axis i folds into the current one when
     * stepping over it is the same as stepping dims[top] times over the current one. */
    int n = 0;
    for (int i = nd - 1; i >= 0; i--) {
        if (dims[i] == 1) continue;
        int64_t s = ss_elems[i] * (int64_t)es;
        if (n > 0) {
            int t = n - 1;
            if (s == p->ss[t] * p->dims[t] && ds[i] == p->ds[t] * p->dims[t]) {
                p->dims[t] *= dims[i];
                continue;
            }
        }
        p->dims[n] = dims[i];
        p->ss[n] = s;
        p->ds[n] = ds[i];
        n++;
    }
    if (n == 0) {
        p->dims[0] = 1;
        p->ss[0] = p->ds[0] = (int64_t)es;
        n = 1;
    }
    /* reverse into outermost-first order */
    for (int i = 0; i < n / 2; i++) {
        int j = n - 1 - i;
        int64_t t;
        t = p->dims[i], p->dims[i] = p->dims[j], p->dims[j] = t;
        t = p->ss[i], p->ss[i] = p->ss[j], p->ss[j] = t;
        t = p->ds[i], p->ds[i] = p->ds[j], p->ds[j] = t;
    }
    p->nd = n;
    /* A transpose whose inner output axis reads with a large stride thrashes the cache
     * one element per line; when another axis reads contiguously, copy tile by tile. */
    int last = n - 1;
    if (n >= 2 && p->ss[last] != (int64_t)es && p->dims[last] >= 8) {
        for (int j = 0; j < last; j++)
            if (p->ss[j] == (int64_t)es && p->dims[j] >= 8) p->tj = j;
    }
}

typedef struct mv_job {
    const mv_plan *p;
    const char *src;
    char *dst;
} mv_job;

static void mv_rows(void *arg, int64_t b, int64_t e) {
    const mv_job *j = arg;
    const mv_plan *p = j->p;
    int outer = p->nd - 1;
    int64_t c[MV_MAX_DIMS];
    int64_t so = 0, dof = 0, r = b;
    for (int k = outer - 1; k >= 0; k--) {
        c[k] = r % p->dims[k];
        r /= p->dims[k];
        so += c[k] * p->ss[k];
        dof += c[k] * p->ds[k];
    }
    for (int64_t row = b; row < e; row++) {
        copy_run(j->dst + dof, j->src + so, p->dims[outer], p->ss[outer], p->ds[outer], p->es);
        for (int k = outer - 1; k >= 0; k--) { /* odometer step */
            so += p->ss[k];
            dof += p->ds[k];
            if (++c[k] < p->dims[k]) break;
            so -= p->ss[k] * p->dims[k];
            dof -= p->ds[k] * p->dims[k];
            c[k] = 0;
        }
    }
}

/* One unit = one MV_TILE-slab of axis tj for one combination of the other axes. */
static void mv_tiles(void *arg, int64_t b, int64_t e) {
    const mv_job *j = arg;
    const mv_plan *p = j->p;
    int last = p->nd - 1, tj = p->tj;
    int64_t nbj = (p->dims[tj] + MV_TILE - 1) / MV_TILE;
    size_t es = p->es;
    for (int64_t u = b; u < e; u++) {
        int64_t jb = u % nbj, rest = u / nbj, so = 0, dof = 0;
        for (int k = last - 1; k >= 0; k--) {
            if (k == tj) continue;
            int64_t ck = rest % p->dims[k];
            rest /= p->dims[k];
            so += ck * p->ss[k];
            dof += ck * p->ds[k];
        }
        int64_t j0 = jb * MV_TILE, j1 = KILN_MIN(j0 + MV_TILE, p->dims[tj]);
        const char *src = j->src + so;
        char *dst = j->dst + dof;
        int64_t sl = p->ss[last], dj = p->ds[tj], nl = p->dims[last];
        /* the element size is hoisted out of the tile loops so each becomes plain moves */
#define TILE(T)                                                                            \
    for (int64_t l0 = 0; l0 < nl; l0 += MV_TILE) {                                         \
        int64_t l1 = KILN_MIN(l0 + MV_TILE, nl);                                           \
        for (int64_t ll = l0; ll < l1; ll++) {                                             \
            const char *s = src + ll * sl;                                                 \
            char *d = dst + ll * (int64_t)sizeof(T);                                       \
            for (int64_t jj = j0; jj < j1; jj++)                                           \
                memcpy(d + jj * dj, s + jj * (int64_t)sizeof(T), sizeof(T));               \
        }                                                                                  \
    }                                                                                      \
    break
        switch (es) {
        case 1: TILE(uint8_t);
        case 2: TILE(uint16_t);
        case 4: TILE(uint32_t);
        case 8: TILE(uint64_t);
        default:
            for (int64_t l0 = 0; l0 < nl; l0 += MV_TILE) {
                int64_t l1 = KILN_MIN(l0 + MV_TILE, nl);
                for (int64_t jj = j0; jj < j1; jj++)
                    for (int64_t ll = l0; ll < l1; ll++)
                        memcpy(dst + jj * dj + ll * (int64_t)es, src + jj * (int64_t)es + ll * sl, es);
            }
            break;
        }
#undef TILE
    }
}

static void mv_run(const mv_plan *p, const void *src, void *dst, kcpu_exec *x) {
    if (p->total == 0) return;
    mv_job j = {p, (const char *)src + p->src_offset, dst};
    if (p->tj >= 0) {
        int64_t units = p->total / p->dims[p->nd - 1] / p->dims[p->tj] * ((p->dims[p->tj] + MV_TILE - 1) / MV_TILE);
        kcpu_parallel_for(x, units, grain_for(MV_TILE * p->dims[p->nd - 1]), mv_tiles, &j);
    } else {
        int64_t inner = p->dims[p->nd - 1];
        kcpu_parallel_for(x, p->total / inner, grain_for(inner), mv_rows, &j);
    }
}

static kiln_status plan_state(const kiln_env *env, const kiln_layer *l, void **state, mv_plan **out) {
    mv_plan *p = kiln_alloc(env, sizeof *p);
    if (!p) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory preparing the copy plan");
    *state = p;
    *out = p;
    return KILN_OK;
}

static kiln_status plan_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                            kcpu_exec *x) {
    mv_run(state, in[0], out[0], x);
    return KILN_OK;
}

/* ---- slice ---- */

static kiln_status slice_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_dims *in = &l->inputs[0]->dims;
    int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS], is[KILN_MAX_DIMS], ss[KILN_MAX_DIMS];
    kiln_dims od;
    kiln_status st = kg_slice_resolve(l, start, step, &od);
    if (st != KILN_OK) return st;
    mv_plan *p = NULL;
    if ((st = plan_state(env, l, state, &p)) != KILN_OK) return st;
    strides_of(in, is);
    size_t es = dsize(l->inputs[0]);
    int64_t off = 0;
    for (int k = 0; k < in->nb_dims; k++) {
        /* an axis that yields one element never steps (its step may be huge: it could
         * overflow times the stride); with more, step * (n - 1) stays inside the axis */
        ss[k] = od.d[k] > 1 ? step[k] * is[k] : 0;
        off += start[k] * is[k];
    }
    mv_plan_make(p, od.nb_dims, od.d, ss, es);
    p->src_offset = p->total ? off * (int64_t)es : 0;
    return KILN_OK;
}

const kcpu_kernel kcpu_slice = {slice_prepare, plan_run, NULL};

/* ---- transpose ---- */

static kiln_status transpose_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_dims *in = &l->inputs[0]->dims;
    const kg_transpose_params *t = &l->p.transpose;
    if (t->nb != in->nb_dims)
        return kg_layer_error(l, KILN_ERR_INTERNAL, "perm of %d entries for rank %d", t->nb, in->nb_dims);
    int64_t is[KILN_MAX_DIMS], ss[KILN_MAX_DIMS], od[KILN_MAX_DIMS];
    strides_of(in, is);
    for (int k = 0; k < t->nb; k++) {
        ss[k] = is[t->perm[k]];
        od[k] = in->d[t->perm[k]];
    }
    mv_plan *p = NULL;
    kiln_status st = plan_state(env, l, state, &p);
    if (st != KILN_OK) return st;
    mv_plan_make(p, t->nb, od, ss, dsize(l->inputs[0]));
    return KILN_OK;
}

const kcpu_kernel kcpu_transpose = {transpose_prepare, plan_run, NULL};

/* ---- expand, tile ---- */

static kiln_status expand_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_dims *in = &l->inputs[0]->dims, *od = &l->outputs[0]->dims;
    int64_t is[KILN_MAX_DIMS], ss[KILN_MAX_DIMS];
    strides_of(in, is);
    int shift = od->nb_dims - in->nb_dims;
    for (int k = 0; k < od->nb_dims; k++) {
        int i = k - shift; /* input axis aligned to the right, absent ones broadcast */
        ss[k] = (i < 0 || in->d[i] == 1) ? 0 : is[i];
    }
    mv_plan *p = NULL;
    kiln_status st = plan_state(env, l, state, &p);
    if (st != KILN_OK) return st;
    mv_plan_make(p, od->nb_dims, od->d, ss, dsize(l->inputs[0]));
    return KILN_OK;
}

const kcpu_kernel kcpu_expand = {expand_prepare, plan_run, NULL};

/* Output axis k of size r*d is read as the pair (repeat of size r, stride 0) then
 * (position of size d, input stride): a row-major walk of those 2*rank axes is
 * exactly the row-major order of the tiled output. */
static kiln_status tile_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_dims *in = &l->inputs[0]->dims;
    int64_t is[KILN_MAX_DIMS], dims[MV_MAX_DIMS], ss[MV_MAX_DIMS];
    strides_of(in, is);
    for (int k = 0; k < in->nb_dims; k++) {
        dims[2 * k] = l->p.tile.repeats[k];
        ss[2 * k] = 0;
        dims[2 * k + 1] = in->d[k];
        ss[2 * k + 1] = is[k];
    }
    mv_plan *p = NULL;
    kiln_status st = plan_state(env, l, state, &p);
    if (st != KILN_OK) return st;
    mv_plan_make(p, 2 * in->nb_dims, dims, ss, dsize(l->inputs[0]));
    return KILN_OK;
}

const kcpu_kernel kcpu_tile = {tile_prepare, plan_run, NULL};

/* ---- depth to space, space to depth ----
 * Both are a 6-D transpose of a reshaped view; the output is walked as
 * [N, C', H, b, W, b] (depth to space) or [N, b, b, C, H/b, W/b] (space to depth). */

static kiln_status d2s_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    int64_t dims[6], ss[6];
    kg_depth_to_space_walk(l, dims, ss);
    mv_plan *p = NULL;
    kiln_status st = plan_state(env, l, state, &p);
    if (st != KILN_OK) return st;
    mv_plan_make(p, 6, dims, ss, dsize(l->inputs[0]));
    return KILN_OK;
}

const kcpu_kernel kcpu_depth_to_space = {d2s_prepare, plan_run, NULL};

static kiln_status s2d_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    int64_t dims[6], ss[6];
    kg_space_to_depth_walk(l, dims, ss);
    mv_plan *p = NULL;
    kiln_status st = plan_state(env, l, state, &p);
    if (st != KILN_OK) return st;
    mv_plan_make(p, 6, dims, ss, dsize(l->inputs[0]));
    return KILN_OK;
}

const kcpu_kernel kcpu_space_to_depth = {s2d_prepare, plan_run, NULL};

/* ---- concat, split ----
 * Per outer index (the axes before the concat axis) every piece is one contiguous
 * run of bytes in both tensors. Runs larger than MV_CHUNK are cut so that a concat
 * along axis 0 of two big tensors still spreads over the threads. */

typedef struct seg_state {
    int nb;            /* pieces */
    int64_t outer;     /* product of the axes before the axis */
    int64_t row;       /* bytes of the whole tensor per outer index */
    int64_t items;     /* chunks per outer index */
    int64_t *size;     /* [nb] bytes of piece i per outer index */
    int64_t *offset;   /* [nb] byte offset of piece i within a row */
    int64_t *first;    /* [nb + 1] index of piece i's first chunk */
} seg_state;

static kiln_status seg_prepare(const kiln_layer *l, const kiln_env *env, void **state, const kiln_tensor *whole,
                               const kiln_tensor *const *pieces, int nb, int axis_param) {
    int rank = whole->dims.nb_dims;
    int axis = kg_axis(axis_param, rank);
    if (axis < 0) return kg_layer_error(l, KILN_ERR_INTERNAL, "axis %d out of range for rank %d", axis_param, rank);
    size_t bytes = sizeof(seg_state) + (size_t)(3 * nb + 1) * sizeof(int64_t);
    seg_state *s = kiln_alloc(env, bytes);
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory preparing %d pieces", nb);
    s->size = (int64_t *)(s + 1);
    s->offset = s->size + nb;
    s->first = s->offset + nb;
    s->nb = nb;
    s->outer = 1;
    for (int k = 0; k < axis; k++) s->outer *= whole->dims.d[k];
    int64_t inner = (int64_t)dsize(whole);
    for (int k = axis + 1; k < rank; k++) inner *= whole->dims.d[k];
    int64_t off = 0, items = 0;
    for (int i = 0; i < nb; i++) {
        s->size[i] = pieces[i]->dims.d[axis] * inner;
        s->offset[i] = off;
        s->first[i] = items;
        off += s->size[i];
        items += (s->size[i] + MV_CHUNK - 1) / MV_CHUNK;
    }
    s->first[nb] = items;
    s->row = off;
    s->items = items;
    *state = s;
    return KILN_OK;
}

typedef struct seg_job {
    const seg_state *s;
    char *whole;
    char *const *pieces;
    bool gather_into_whole; /* concat: pieces -> whole; split: whole -> pieces */
} seg_job;

static void seg_copy(void *arg, int64_t b, int64_t e) {
    const seg_job *j = arg;
    const seg_state *s = j->s;
    for (int64_t it = b; it < e; it++) {
        int64_t o = it / s->items, c = it % s->items;
        int lo = 0, hi = s->nb - 1; /* piece i with first[i] <= c < first[i+1] */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (s->first[mid] <= c) lo = mid;
            else hi = mid - 1;
        }
        int i = lo;
        int64_t from = (c - s->first[i]) * MV_CHUNK;
        int64_t n = KILN_MIN(MV_CHUNK, s->size[i] - from);
        char *w = j->whole + o * s->row + s->offset[i] + from;
        char *p = j->pieces[i] + o * s->size[i] + from;
        if (j->gather_into_whole) memcpy(w, p, (size_t)n);
        else memcpy(p, w, (size_t)n);
    }
}

static void seg_run(const seg_state *s, char *whole, char *const *pieces, bool into_whole, kcpu_exec *x) {
    if (s->items == 0 || s->outer == 0) return;
    seg_job j = {s, whole, pieces, into_whole};
    int64_t per_item = KILN_MAX((int64_t)1, s->row / s->items);
    int64_t grain = KILN_MAX((int64_t)1, (int64_t)65536 / per_item);
    kcpu_parallel_for(x, s->outer * s->items, grain, seg_copy, &j);
}

static kiln_status concat_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    return seg_prepare(l, env, state, l->outputs[0], (const kiln_tensor *const *)l->inputs, l->nb_inputs,
                       l->p.axis.axis);
}

static kiln_status concat_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              kcpu_exec *x) {
    /* the pieces are only read here: the cast serves the shared copy routine */
    seg_run(state, out[0], (char *const *)in, true, x);
    return KILN_OK;
}

const kcpu_kernel kcpu_concat = {concat_prepare, concat_run, NULL};

static kiln_status split_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    return seg_prepare(l, env, state, l->inputs[0], (const kiln_tensor *const *)l->outputs, l->nb_outputs,
                       l->p.split.axis);
}

static kiln_status split_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                             kcpu_exec *x) {
    /* whole is only read here */
    seg_run(state, (char *)in[0], (char *const *)out, false, x);
    return KILN_OK;
}

const kcpu_kernel kcpu_split = {split_prepare, split_run, NULL};

/* ---- gather ---- */

typedef struct gather_job {
    const char *data;
    const void *idx;
    char *out;
    bool idx64;
    int64_t K, D, inner; /* indices count, axis size, bytes per slice */
} gather_job;

static inline int64_t gather_index(const gather_job *j, int64_t k) {
    int64_t v = j->idx64 ? ((const int64_t *)j->idx)[k] : (int64_t)((const int32_t *)j->idx)[k];
    return v < 0 ? v + j->D : v;
}

static void gather_copy(void *arg, int64_t b, int64_t e) {
    const gather_job *j = arg;
    size_t n = (size_t)j->inner;
    for (int64_t it = b; it < e; it++) {
        int64_t o = it / j->K, k = it % j->K;
        const char *src = j->data + (o * j->D + gather_index(j, k)) * j->inner;
        char *dst = j->out + it * j->inner;
        if (n <= 8) copy_elem(dst, src, n);
        else memcpy(dst, src, n);
    }
}

static kiln_status gather_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                              kcpu_exec *x) {
    const kiln_dims *dd = &l->inputs[0]->dims;
    int axis = kg_axis(l->p.axis.axis, dd->nb_dims);
    gather_job j = {in[0], in[1], out[0], l->inputs[1]->dtype == KILN_INT64, volume(&l->inputs[1]->dims),
                    dd->d[axis], (int64_t)dsize(l->inputs[0])};
    int64_t outer = 1;
    for (int k = 0; k < axis; k++) outer *= dd->d[k];
    for (int k = axis + 1; k < dd->nb_dims; k++) j.inner *= dd->d[k];
    /* Every index is checked before anything is read: the data decides, not the build. */
    for (int64_t k = 0; k < j.K; k++) {
        int64_t v = gather_index(&j, k);
        if (v < 0 || v >= j.D) {
            int64_t raw = j.idx64 ? ((const int64_t *)j.idx)[k] : (int64_t)((const int32_t *)j.idx)[k];
            return kg_layer_error(l, KILN_ERR_RUNTIME,
                                  "index %lld (position %lld of '%s') is out of range for axis %d of size %lld",
                                  (long long)raw, (long long)k, l->inputs[1]->name, axis, (long long)j.D);
        }
    }
    if (j.inner == 0 || outer == 0 || j.K == 0) return KILN_OK;
    kcpu_parallel_for(x, outer * j.K, grain_for(j.inner / (int64_t)dsize(l->inputs[0])), gather_copy, &j);
    return KILN_OK;
}

static kiln_status gather_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    kiln_dtype t = l->inputs[1]->dtype;
    if (t != KILN_INT32 && t != KILN_INT64)
        return kg_layer_error(l, KILN_ERR_UNSUPPORTED, "indices of dtype %s", kiln_dtype_name(t));
    return KILN_OK;
}

const kcpu_kernel kcpu_gather = {gather_prepare, gather_run, NULL};

/* ---- pad ---- */

static int64_t clamp_to_int(float v, double lo, double hi) {
    if (isnan(v)) return 0;
    double d = (double)v;
    if (d < lo) d = lo;
    if (d > hi) d = hi;
    return (int64_t)d; /* truncates toward zero, as a C cast */
}

/* The pad value in the tensor's dtype. Integers take the truncated, saturated value. */
static void pad_value_bytes(kiln_dtype t, float v, char *out) {
    switch (t) {
    case KILN_FLOAT32: memcpy(out, &v, 4); break;
    case KILN_FLOAT64: { double d = v; memcpy(out, &d, 8); } break;
    case KILN_FLOAT16: { uint16_t h = kiln_float_to_half(v); memcpy(out, &h, 2); } break;
    case KILN_BFLOAT16: { uint16_t h = kiln_float_to_bf16(v); memcpy(out, &h, 2); } break;
    case KILN_INT8: { int8_t i = (int8_t)clamp_to_int(v, -128, 127); memcpy(out, &i, 1); } break;
    case KILN_UINT8: { uint8_t i = (uint8_t)clamp_to_int(v, 0, 255); memcpy(out, &i, 1); } break;
    case KILN_BOOL: out[0] = v != 0.0f; break;
    case KILN_INT32: { int32_t i = (int32_t)clamp_to_int(v, -2147483648.0, 2147483647.0); memcpy(out, &i, 4); } break;
    case KILN_INT64: {
        int64_t i = clamp_to_int(v, -9223372036854775808.0, 9223372036854774784.0);
        memcpy(out, &i, 8);
    } break;
    default: memset(out, 0, 8); break;
    }
}

typedef struct pad_state {
    int rank;
    size_t es;
    char value[8];
    int64_t out[KILN_MAX_DIMS];
    int64_t in_stride[KILN_MAX_DIMS]; /* elements */
    int64_t *map[KILN_MAX_DIMS];      /* [out[k]]: input index of each output position, -1 = value */
    int64_t mid_begin, mid_len, mid_src; /* last axis: the run copied straight from the input */
} pad_state;

/* Where output position o of an axis reads from, or -1 for the constant. */
static int64_t pad_source(kiln_pad_mode mode, int64_t o, int64_t pb, int64_t crop, int64_t kept) {
    int64_t r = o - pb; /* position in the cropped input */
    if (r >= 0 && r < kept) return crop + r;
    switch (mode) {
    case KILN_PAD_EDGE: r = r < 0 ? 0 : kept - 1; break;
    case KILN_PAD_REFLECT: {
        int64_t period = 2 * (kept - 1);
        if (period == 0) r = 0;
        else {
            r %= period;
            if (r < 0) r += period;
            if (r >= kept) r = period - r;
        }
    } break;
    case KILN_PAD_WRAP:
        r %= kept;
        if (r < 0) r += kept;
        break;
    default: return -1;
    }
    return crop + r;
}

static kiln_status pad_prepare(const kiln_layer *l, const kiln_env *env, void **state, size_t *scratch) {
    const kiln_dims *in = &l->inputs[0]->dims, *od = &l->outputs[0]->dims;
    int rank = in->nb_dims;
    int64_t total = 0;
    for (int k = 0; k < rank; k++) total += od->d[k];
    pad_state *s = kiln_alloc(env, sizeof *s + (size_t)total * sizeof(int64_t));
    if (!s) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory preparing pad tables");
    memset(s, 0, sizeof *s);
    s->rank = rank;
    s->es = dsize(l->inputs[0]);
    pad_value_bytes(l->inputs[0]->dtype, l->p.pad.value, s->value);
    strides_of(in, s->in_stride);
    int64_t *t = (int64_t *)(s + 1);
    for (int k = 0; k < rank; k++) {
        int64_t b = l->p.pad.pads[k], e = l->p.pad.pads[rank + k];
        int64_t crop = b < 0 ? -b : 0, pb = b > 0 ? b : 0;
        int64_t kept = in->d[k] - crop - (e < 0 ? -e : 0);
        s->out[k] = od->d[k];
        s->map[k] = t;
        for (int64_t o = 0; o < od->d[k]; o++) t[o] = pad_source(l->p.pad.mode, o, pb, crop, kept);
        t += od->d[k];
        if (k == rank - 1) {
            s->mid_begin = pb;
            s->mid_len = kept;
            s->mid_src = crop;
        }
    }
    *state = s;
    return KILN_OK;
}

typedef struct pad_job {
    const pad_state *s;
    const char *src;
    char *dst;
} pad_job;

static void pad_rows(void *arg, int64_t b, int64_t e) {
    const pad_job *j = arg;
    const pad_state *s = j->s;
    int last = s->rank - 1;
    int64_t n = s->out[last];
    size_t es = s->es;
    const int64_t *lm = s->map[last];
    for (int64_t row = b; row < e; row++) {
        char *d = j->dst + row * n * (int64_t)es;
        int64_t r = row, off = 0;
        bool fill = false;
        for (int k = last - 1; k >= 0; k--) {
            int64_t src = s->map[k][r % s->out[k]];
            r /= s->out[k];
            if (src < 0) fill = true;
            else off += src * s->in_stride[k];
        }
        if (fill) {
            fill_run(d, s->value, n, es);
            continue;
        }
        const char *sr = j->src + off * (int64_t)es;
        int64_t m0 = s->mid_begin, m1 = s->mid_begin + s->mid_len;
        for (int64_t x = 0; x < m0; x++) {
            if (lm[x] < 0) copy_elem(d + x * (int64_t)es, s->value, es);
            else copy_elem(d + x * (int64_t)es, sr + lm[x] * (int64_t)es, es);
        }
        if (s->mid_len > 0) memcpy(d + m0 * (int64_t)es, sr + s->mid_src * (int64_t)es, (size_t)s->mid_len * es);
        for (int64_t x = m1; x < n; x++) {
            if (lm[x] < 0) copy_elem(d + x * (int64_t)es, s->value, es);
            else copy_elem(d + x * (int64_t)es, sr + lm[x] * (int64_t)es, es);
        }
    }
}

static kiln_status pad_run(const kiln_layer *l, const void *state, const void *const *in, void *const *out,
                           kcpu_exec *x) {
    const pad_state *s = state;
    if (s->rank == 0) { /* a scalar pads to itself */
        memcpy(out[0], in[0], s->es);
        return KILN_OK;
    }
    int64_t n = s->out[s->rank - 1], rows = 1;
    for (int k = 0; k < s->rank - 1; k++) rows *= s->out[k];
    if (n == 0 || rows == 0) return KILN_OK;
    pad_job j = {s, in[0], out[0]};
    kcpu_parallel_for(x, rows, grain_for(n), pad_rows, &j);
    return KILN_OK;
}

const kcpu_kernel kcpu_pad = {pad_prepare, pad_run, NULL};
