/* kiln: kopt_fuse_regions, the pass that runs a group of data-movement and element-wise
 * layers as one KILN_LAYER_FUSED layer (the program format: src/graph/fused.h).
 *
 * A region grows from a root layer up through the producers of its inputs while each
 * producer is fusible and its output is read by that one layer only. The root's output is
 * then described piece by piece, walking down from the root with an affine map of the
 * current tensor's axes over the piece's iteration box:
 *   transpose   permutes the map's rows;
 *   slice       scales and offsets a row (start + step * index);
 *   expand, element-wise broadcast   zero the rows of broadcast axes;
 *   reshape     keeps the row-major linear index: the map becomes a linear function of
 *               the box, which is cut back into the input's axes where every box axis
 *               falls inside one of them (an axis that straddles two is split in the
 *               box, "refined", and the piece walked again; one that does not divide is
 *               a boundary of the region);
 *   concat      picks the input holding the piece's range along its axis; a range over
 *               several inputs splits the piece there, and each part is walked again;
 *   reformat, cast   change nothing logical (the maps address logical axes; backends turn
 *               them into strides of each tensor's memory).
 * Pointwise layers append to the piece's postfix program. A layer the walk cannot
 * describe becomes a boundary (its output is read from memory) and the region is grown
 * again without it. */
#include <stdlib.h>
#include <string.h>

#include "graph/fused.h"
#include "graph/ops.h"
#include "opt/passes.h"

enum { E_OK, E_REFINE, E_SPLIT, E_FAIL, E_NOMEM };

#define FZ_MAX_LEAVES 64
#define FZ_MAX_CUTS 64

typedef struct seed {
    int ni;
    int64_t ext[KF_MAX_IT];
    kf_map root;
} seed;

typedef struct fz {
    kiln_graph *g;
    const kopt_options *o;
    bool *in_region;  /* per layer */
    bool *no;         /* per layer: a boundary (the walk could not describe it) */
    kiln_layer *root;
    kiln_tensor *leaves[FZ_MAX_LEAVES];
    int nb_leaves;
    kf_piece pc; /* the piece being walked */
    int depth;
    /* what a walk that stopped asks for */
    kiln_layer *fail_at;
    int req_dim;
    int64_t req_k;                /* E_REFINE: the inner extent of the split */
    int64_t cuts[FZ_MAX_CUTS];    /* E_SPLIT: positions along req_dim */
    int nb_cuts;
} fz;

static bool float_tensor(const fz *z, const kiln_tensor *t) {
    if (!t || t->dims.nb_dims < 0) return false;
    kiln_dtype s = kg_storage(t);
    bool f16 = z->o->fuse_regions >= 2;
    if (t->dtype != KILN_FLOAT32 && !(f16 && t->dtype == KILN_FLOAT16)) return false;
    if (s != KILN_FLOAT32 && !(f16 && s == KILN_FLOAT16)) return false;
    if (!f16 && (s != t->dtype || t->format != KG_FORMAT_LINEAR)) return false;
    for (int k = 0; k < t->dims.nb_dims; k++)
        if (t->dims.d[k] <= 0) return false;
    return true;
}

static bool fusible(const fz *z, const kiln_layer *l) {
    if (l->removed || z->no[l->id] || l->nb_outputs != 1 || !float_tensor(z, l->outputs[0])) return false;
    for (int i = 0; i < l->nb_inputs; i++)
        if (!float_tensor(z, l->inputs[i])) return false;
    switch (l->type) {
    case KILN_LAYER_SHUFFLE:
    case KILN_LAYER_IDENTITY:
    case KILN_LAYER_TRANSPOSE:
    case KILN_LAYER_REFORMAT:
    case KILN_LAYER_CAST:
    case KILN_LAYER_EXPAND: return l->nb_inputs == 1;
    case KILN_LAYER_CONCAT: return l->nb_inputs >= 1;
    case KILN_LAYER_SLICE: {
        int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS];
        kiln_dims od;
        if (l->nb_inputs != 1 || kg_slice_resolve(l, start, step, &od) != KILN_OK) return false;
        for (int k = 0; k < od.nb_dims; k++)
            if (step[k] <= 0) return false;
        return true;
    }
    case KILN_LAYER_ELEMENTWISE:
        return l->nb_inputs == 2 && kf_bin_ok(l->p.elt) &&
               (!l->has_post_act || (unsigned)l->post_act.type < KILN_ACT_COUNT);
    case KILN_LAYER_SCALE:
        /* uniform: three numbers in the program (a refittable engine keeps its weights) */
        return !z->o->keep_weights && l->nb_inputs == 1 && l->p.scale.mode == KILN_SCALE_UNIFORM &&
               l->w[0].count <= 1 && l->w[1].count <= 1 && l->w[2].count <= 1 && !l->has_post_act;
    case KILN_LAYER_ACTIVATION: return l->nb_inputs == 1 && (unsigned)l->p.act.type < KILN_ACT_COUNT;
    default: return false;
    }
}

/* Whether every live reader of t is in the region (t is then only read inside it). */
static bool readers_in(const fz *z, const kiln_tensor *t) {
    if (t->is_output) return false;
    for (int i = 0; i < z->g->nb_layers; i++) {
        const kiln_layer *l = z->g->layers[i];
        if (l->removed || z->in_region[i]) continue;
        for (int k = 0; k < l->nb_inputs; k++)
            if (l->inputs[k] == t) return false;
    }
    return true;
}

static int push(fz *z, const kiln_layer *l, int op, int arg, float f0, float f1, float f2) {
    if (z->pc.nb_instrs == KF_MAX_PROG) {
        z->fail_at = (kiln_layer *)l;
        return E_FAIL;
    }
    int d = op == KF_LOAD || op == KF_CONST ? 1 : op == KF_BIN ? -1 : 0;
    if (z->depth + d > KF_MAX_STACK) {
        z->fail_at = (kiln_layer *)l;
        return E_FAIL;
    }
    z->depth += d;
    z->pc.prog[z->pc.nb_instrs++] = (kf_instr){op, arg, {f0, f1, f2}};
    return E_OK;
}

/* The map of a reshape's input from its output's (see the file comment). */
static int reshape_map(fz *z, const kiln_layer *l, const kf_map *m, const kiln_dims *od, const kiln_dims *id,
                       kf_map *out) {
    int ni = z->pc.ni;
    int64_t so[KILN_MAX_DIMS], si[KILN_MAX_DIMS], c[KF_MAX_IT], bl = 0;
    kg_row_major(od, so);
    kg_row_major(id, si);
    memset(c, 0, sizeof c);
    for (int d = 0; d < od->nb_dims; d++) {
        bl += so[d] * m->b[d];
        for (int j = 0; j < ni; j++) c[j] += so[d] * m->a[d][j];
    }
    memset(out, 0, sizeof *out);
    out->rank = id->nb_dims;
    for (int e = 0; e < id->nb_dims; e++) out->b[e] = (bl / si[e]) % id->d[e];
    for (int j = 0; j < ni; j++) {
        if (!c[j] || z->pc.ext[j] == 1) continue;
        int e = -1;
        for (int k = id->nb_dims - 1; k >= 0; k--)
            if (c[j] >= si[k] && c[j] < si[k] * id->d[k]) {
                e = k;
                break;
            }
        if (e < 0 || c[j] % si[e]) goto fail;
        int64_t q = c[j] / si[e];
        if (q * z->pc.ext[j] > id->d[e]) {
            /* the box axis runs past this input axis: split it where the axis ends */
            int64_t k = id->d[e] / q;
            if (id->d[e] % q || k < 2 || z->pc.ext[j] % k) goto fail;
            z->req_dim = j;
            z->req_k = k;
            return E_REFINE;
        }
        out->a[e][j] = q;
    }
    for (int e = 0; e < id->nb_dims; e++) { /* no carries between input axes */
        int64_t hi = out->b[e];
        for (int j = 0; j < ni; j++) hi += out->a[e][j] * (z->pc.ext[j] - 1);
        if (hi >= id->d[e]) goto fail;
    }
    return E_OK;
fail:
    z->fail_at = (kiln_layer *)l;
    return E_FAIL;
}

/* numpy broadcasting: input axes align to the right; size-1 axes read index 0. */
static void broadcast_map(const kf_map *m, const kiln_dims *od, const kiln_dims *id, kf_map *out) {
    memset(out, 0, sizeof *out);
    out->rank = id->nb_dims;
    int shift = od->nb_dims - id->nb_dims;
    for (int e = 0; e < id->nb_dims; e++) {
        if (id->d[e] == 1 && od->d[e + shift] != 1) continue;
        memcpy(out->a[e], m->a[e + shift], sizeof out->a[e]);
        out->b[e] = m->b[e + shift];
    }
}

static int emit(fz *z, kiln_tensor *t, const kf_map *m, const kiln_layer *reader);

static int emit_load(fz *z, kiln_tensor *t, const kf_map *m, const kiln_layer *reader) {
    int leaf = -1;
    for (int k = 0; k < z->nb_leaves; k++)
        if (z->leaves[k] == t) leaf = k;
    if (leaf < 0) {
        if (z->nb_leaves == FZ_MAX_LEAVES) goto fail;
        leaf = z->nb_leaves;
        z->leaves[z->nb_leaves++] = t;
    }
    if (z->pc.nb_loads == KF_MAX_LOADS) goto fail;
    kf_map *lm = &z->pc.loads[z->pc.nb_loads];
    *lm = *m;
    lm->tensor = leaf;
    lm->rank = t->dims.nb_dims;
    return push(z, reader, KF_LOAD, z->pc.nb_loads++, 0, 0, 0);
fail:
    z->fail_at = (kiln_layer *)reader;
    return E_FAIL;
}

static int emit_concat(fz *z, kiln_layer *l, const kf_map *m) {
    int rank = l->outputs[0]->dims.nb_dims, ax = kg_axis(l->p.axis.axis, rank), jj = -1, moving = 0;
    if (ax < 0) goto fail;
    int64_t lo = m->b[ax], hi = lo, off = 0;
    for (int j = 0; j < z->pc.ni; j++) {
        if (!m->a[ax][j]) continue;
        hi += m->a[ax][j] * (z->pc.ext[j] - 1);
        moving++;
        jj = j;
    }
    for (int k = 0; k < l->nb_inputs; k++) {
        int64_t size = l->inputs[k]->dims.d[ax];
        if (lo >= off && hi < off + size) {
            kf_map m2 = *m;
            m2.b[ax] -= off;
            return emit(z, l->inputs[k], &m2, l);
        }
        off += size;
    }
    if (moving != 1 || m->a[ax][jj] != 1) goto fail; /* a range this walk cannot cut */
    /* the piece spans inputs: cut it at their boundaries */
    z->nb_cuts = 0;
    off = 0;
    for (int k = 0; k + 1 < l->nb_inputs; k++) {
        off += l->inputs[k]->dims.d[ax];
        if (off > lo && off <= hi) {
            if (z->nb_cuts == FZ_MAX_CUTS) goto fail;
            z->cuts[z->nb_cuts++] = off - lo;
        }
    }
    z->req_dim = jj;
    return E_SPLIT;
fail:
    z->fail_at = l;
    return E_FAIL;
}

static int emit_layer(fz *z, kiln_tensor *t, const kf_map *m);

/* A layer whose logical output is float16 rounds its values there (a cast to float16, or
 * arithmetic on float16 tensors); float16 storage chosen by the builder does not. */
static int emit(fz *z, kiln_tensor *t, const kf_map *m, const kiln_layer *reader) {
    kiln_layer *l = t->producer;
    if (!l || !z->in_region[l->id]) return emit_load(z, t, m, reader);
    int r = emit_layer(z, t, m);
    bool computes = l->type == KILN_LAYER_CAST || l->type == KILN_LAYER_ELEMENTWISE || l->type == KILN_LAYER_SCALE ||
                    l->type == KILN_LAYER_ACTIVATION;
    if (r == E_OK && computes && t->dtype == KILN_FLOAT16) r = push(z, l, KF_ROUND16, 0, 0, 0, 0);
    return r;
}

static int emit_layer(fz *z, kiln_tensor *t, const kf_map *m) {
    kiln_layer *l = t->producer;
    kiln_tensor *x = l->inputs[0];
    kf_map m2;
    int r;
    switch (l->type) {
    case KILN_LAYER_SHUFFLE:
        r = reshape_map(z, l, m, &t->dims, &x->dims, &m2);
        return r == E_OK ? emit(z, x, &m2, l) : r;
    case KILN_LAYER_IDENTITY:
    case KILN_LAYER_REFORMAT:
    case KILN_LAYER_CAST: return emit(z, x, m, l);
    case KILN_LAYER_TRANSPOSE:
        memset(&m2, 0, sizeof m2);
        m2.rank = x->dims.nb_dims;
        for (int d = 0; d < t->dims.nb_dims; d++) {
            int s = (int)l->p.transpose.perm[d];
            memcpy(m2.a[s], m->a[d], sizeof m2.a[s]);
            m2.b[s] = m->b[d];
        }
        return emit(z, x, &m2, l);
    case KILN_LAYER_SLICE: {
        int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS];
        kiln_dims od;
        if (kg_slice_resolve(l, start, step, &od) != KILN_OK) {
            z->fail_at = l;
            return E_FAIL;
        }
        m2 = *m;
        for (int d = 0; d < x->dims.nb_dims; d++) {
            for (int j = 0; j < z->pc.ni; j++) m2.a[d][j] *= step[d];
            m2.b[d] = start[d] + step[d] * m->b[d];
        }
        return emit(z, x, &m2, l);
    }
    case KILN_LAYER_EXPAND: broadcast_map(m, &t->dims, &x->dims, &m2); return emit(z, x, &m2, l);
    case KILN_LAYER_CONCAT: return emit_concat(z, l, m);
    case KILN_LAYER_ELEMENTWISE:
        for (int k = 0; k < 2; k++) {
            broadcast_map(m, &t->dims, &l->inputs[k]->dims, &m2);
            if ((r = emit(z, l->inputs[k], &m2, l)) != E_OK) return r;
        }
        if ((r = push(z, l, KF_BIN, (int)l->p.elt, 0, 0, 0)) != E_OK) return r;
        if (l->has_post_act) return push(z, l, KF_ACT, (int)l->post_act.type, l->post_act.alpha, l->post_act.beta, 0);
        return E_OK;
    case KILN_LAYER_SCALE: {
        if ((r = emit(z, x, m, l)) != E_OK) return r;
        const float *sh = l->w[0].values, *sc = l->w[1].values, *pw = l->w[2].values;
        return push(z, l, KF_SCALE, 0, l->w[1].count ? sc[0] : 1.0f, l->w[0].count ? sh[0] : 0.0f,
                    l->w[2].count ? pw[0] : 1.0f);
    }
    case KILN_LAYER_ACTIVATION:
        if ((r = emit(z, x, m, l)) != E_OK) return r;
        return push(z, l, KF_ACT, (int)l->p.act.type, l->p.act.alpha, l->p.act.beta, 0);
    default: z->fail_at = l; return E_FAIL;
    }
}

/* Splits box axis j of s into (ext / k, k): the outer part steps k times as far. */
static void refine(seed *s, int j, int64_t k) {
    for (int q = s->ni; q > j + 1; q--) s->ext[q] = s->ext[q - 1];
    s->ext[j + 1] = k;
    s->ext[j] /= k;
    for (int d = 0; d < s->root.rank; d++) {
        for (int q = s->ni; q > j + 1; q--) s->root.a[d][q] = s->root.a[d][q - 1];
        s->root.a[d][j + 1] = s->root.a[d][j];
        s->root.a[d][j] *= k;
    }
    s->ni++;
}

/* Removes box axis j from the piece and every map (coefficients of axis j dropped). */
static void remove_axis(kf_piece *p, kf_map **maps, int nm, int j) {
    for (int q = 0; q < nm; q++)
        for (int d = 0; d < maps[q]->rank; d++) {
            for (int i = j; i + 1 < p->ni; i++) maps[q]->a[d][i] = maps[q]->a[d][i + 1];
            maps[q]->a[d][p->ni - 1] = 0;
        }
    for (int i = j; i + 1 < p->ni; i++) p->ext[i] = p->ext[i + 1];
    p->ni--;
}

/* Drops box axes of extent 1 and merges neighbours that every map steps through as one
 * (fewer divisions per element in the kernels). */
static void coalesce(kf_piece *p) {
    kf_map *maps[KF_MAX_LOADS + 1];
    int nm = 0;
    maps[nm++] = &p->out;
    for (int k = 0; k < p->nb_loads; k++) maps[nm++] = &p->loads[k];
    for (int j = p->ni - 1; j >= 0; j--)
        if (p->ext[j] == 1 && p->ni > 1) remove_axis(p, maps, nm, j);
    for (int j = 0; j + 1 < p->ni;) {
        bool merge = true;
        for (int q = 0; merge && q < nm; q++)
            for (int d = 0; d < maps[q]->rank; d++)
                if (maps[q]->a[d][j] != maps[q]->a[d][j + 1] * p->ext[j + 1]) merge = false;
        if (!merge) {
            j++;
            continue;
        }
        /* axis j + 1 takes the pair (its coefficients step the merged index) */
        p->ext[j + 1] *= p->ext[j];
        remove_axis(p, maps, nm, j);
    }
}

/* Walks every piece of the root's output; the pieces go to *out (kiln_alloc'ed). */
static int walk_region(fz *z, kf_piece **out, int *count) {
    const kiln_env *env = &z->g->env;
    kiln_tensor *o = z->root->outputs[0];
    int cap = 16, n = 0, nseeds = 1, seed_cap = KF_MAX_PIECES;
    kf_piece *ps = kiln_alloc(env, (size_t)cap * sizeof *ps);
    seed *seeds = kiln_alloc(env, (size_t)seed_cap * sizeof *seeds);
    int r = E_NOMEM;
    if (!ps || !seeds) goto done;
    memset(&seeds[0], 0, sizeof seeds[0]);
    seeds[0].ni = o->dims.nb_dims > 0 ? o->dims.nb_dims : 1;
    seeds[0].ext[0] = 1;
    seeds[0].root.rank = o->dims.nb_dims;
    for (int d = 0; d < o->dims.nb_dims; d++) {
        seeds[0].ext[d] = o->dims.d[d];
        seeds[0].root.a[d][d] = 1;
    }
    z->nb_leaves = 0;
    while (nseeds > 0) {
        seed s = seeds[--nseeds];
        for (;;) {
            memset(&z->pc, 0, sizeof z->pc);
            z->pc.ni = s.ni;
            memcpy(z->pc.ext, s.ext, sizeof s.ext);
            z->depth = 0;
            r = emit(z, o, &s.root, z->root);
            if (r == E_REFINE) {
                if (s.ni == KF_MAX_IT) {
                    z->fail_at = z->root;
                    r = E_FAIL;
                    goto done;
                }
                refine(&s, z->req_dim, z->req_k);
                continue;
            }
            if (r == E_SPLIT) {
                if (nseeds + z->nb_cuts + 1 > seed_cap || n + nseeds + z->nb_cuts + 1 > KF_MAX_PIECES) {
                    z->fail_at = z->root;
                    r = E_FAIL;
                    goto done;
                }
                int j = z->req_dim;
                int64_t from = 0;
                for (int c = 0; c <= z->nb_cuts; c++) {
                    int64_t to = c < z->nb_cuts ? z->cuts[c] : s.ext[j];
                    seed part = s;
                    part.ext[j] = to - from;
                    for (int d = 0; d < part.root.rank; d++) part.root.b[d] += part.root.a[d][j] * from;
                    seeds[nseeds++] = part;
                    from = to;
                }
                break;
            }
            if (r != E_OK) goto done;
            z->pc.out = s.root;
            z->pc.out.tensor = -1;
            coalesce(&z->pc);
            if (n == KF_MAX_PIECES) {
                z->fail_at = z->root;
                r = E_FAIL;
                goto done;
            }
            if (n == cap) {
                kf_piece *bigger = kiln_alloc(env, (size_t)cap * 2 * sizeof *ps);
                if (!bigger) {
                    r = E_NOMEM;
                    goto done;
                }
                memcpy(bigger, ps, (size_t)n * sizeof *ps);
                kiln_free(env, ps);
                ps = bigger;
                cap *= 2;
            }
            ps[n++] = z->pc;
            break;
        }
    }
    r = E_OK;
done:
    kiln_free(env, seeds);
    if (r != E_OK) {
        kiln_free(env, ps);
        return r;
    }
    *out = ps;
    *count = n;
    return E_OK;
}

/* The root becomes the fused layer reading the leaves; the rest of the region is removed. */
static kiln_status materialize(fz *z, const kf_piece *ps, int n) {
    const kiln_env *env = &z->g->env;
    kiln_layer *root = z->root;
    kiln_tensor *o = root->outputs[0];
    kf_writer w = {env, NULL, 0, 0, false, false};
    kf_put(&w, KF_MAGIC);
    kf_put(&w, o->dtype);
    kf_put(&w, o->dims.nb_dims);
    for (int d = 0; d < o->dims.nb_dims; d++) kf_put(&w, o->dims.d[d]);
    kf_put(&w, n);
    for (int p = 0; p < n; p++) {
        const kf_piece *pc = &ps[p];
        kf_put(&w, pc->ni);
        for (int j = 0; j < pc->ni; j++) kf_put(&w, pc->ext[j]);
        kf_put_map(&w, &pc->out, pc->ni);
        kf_put(&w, pc->nb_loads);
        for (int k = 0; k < pc->nb_loads; k++) kf_put_map(&w, &pc->loads[k], pc->ni);
        kf_put(&w, pc->nb_instrs);
        for (int k = 0; k < pc->nb_instrs; k++) kf_put_instr(&w, &pc->prog[k]);
    }
    kiln_tensor **ins = kiln_calloc(env, (size_t)(z->nb_leaves ? z->nb_leaves : 1), sizeof *ins);
    if (w.bad || !ins) { /* a program past KF_MAX_AUX words: the layers stay as they are */
        kiln_free(env, w.w);
        kiln_free(env, ins);
        return w.oom || !ins ? kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory fusing layers") : KILN_OK;
    }
    memcpy(ins, z->leaves, (size_t)z->nb_leaves * sizeof *ins);
    for (int i = 0; i < z->g->nb_layers; i++) {
        kiln_layer *l = z->g->layers[i];
        if (z->in_region[i] && l != root) l->removed = true;
    }
    kiln_free(env, root->inputs);
    root->inputs = ins;
    root->nb_inputs = z->nb_leaves;
    kiln_free(env, root->aux);
    root->aux = w.w;
    root->nb_aux = w.n;
    for (int k = 0; k < KG_MAX_WEIGHTS; k++) {
        if (root->w_owned[k]) kiln_free(env, (void *)root->w[k].values);
        memset(&root->w[k], 0, sizeof root->w[k]);
        root->w_owned[k] = false;
    }
    root->type = KILN_LAYER_FUSED;
    memset(&root->p, 0, sizeof root->p);
    root->has_post_act = false;
    root->res_after_act = false;
    return kg_infer_layer(root);
}

kiln_status kopt_fuse_regions(kiln_graph *g, const kopt_options *o, int *count, int *absorbed) {
    *count = 0;
    *absorbed = 0;
    if (!o || !o->fuse_regions) return KILN_OK;
    const char *env_off = getenv("KILN_FUSE");
    if (env_off && strcmp(env_off, "off") == 0) return KILN_OK;
    const kiln_env *env = &g->env;
    fz *z = kiln_calloc(env, 1, sizeof *z);
    int nl = g->nb_layers ? g->nb_layers : 1;
    kiln_status st = KILN_OK;
    if (z) {
        z->in_region = kiln_calloc(env, (size_t)nl, sizeof *z->in_region);
        z->no = kiln_calloc(env, (size_t)nl, sizeof *z->no);
    }
    if (!z || !z->in_region || !z->no) {
        st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory fusing layers");
        goto done;
    }
    z->g = g;
    z->o = o;
    kiln_layer **stack = kiln_alloc(env, (size_t)nl * sizeof *stack);
    if (!stack) {
        st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory fusing layers");
        goto done;
    }
    for (int i = g->nb_layers - 1; i >= 0; i--) {
        kiln_layer *root = g->layers[i];
        for (;;) {
            if (!fusible(z, root)) break;
            /* grow the region from the root */
            memset(z->in_region, 0, (size_t)nl * sizeof *z->in_region);
            int sp = 0, work = 0;
            stack[sp++] = root;
            z->in_region[root->id] = true;
            while (sp > 0) {
                kiln_layer *l = stack[--sp];
                work += l->type != KILN_LAYER_SHUFFLE && l->type != KILN_LAYER_IDENTITY;
                for (int k = 0; k < l->nb_inputs; k++) {
                    kiln_tensor *t = l->inputs[k];
                    kiln_layer *p = t->producer;
                    if (!p || z->in_region[p->id] || !fusible(z, p) || !readers_in(z, t)) continue;
                    z->in_region[p->id] = true;
                    stack[sp++] = p;
                }
                if (sp == 0) /* a tensor read by several layers joins once all of them have */
                    for (int q = 0; q < g->nb_layers && sp == 0; q++) {
                        kiln_layer *m = g->layers[q];
                        for (int k = 0; z->in_region[q] && k < m->nb_inputs; k++) {
                            kiln_tensor *t = m->inputs[k];
                            kiln_layer *p = t->producer;
                            if (!p || z->in_region[p->id] || !fusible(z, p) || !readers_in(z, t)) continue;
                            z->in_region[p->id] = true;
                            stack[sp++] = p;
                            break;
                        }
                    }
            }
            if (work < 2) break;
            z->root = root;
            kf_piece *ps = NULL;
            int n = 0, r = walk_region(z, &ps, &n);
            if (r == E_NOMEM) {
                st = kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "out of host memory fusing layers");
                break;
            }
            if (r == E_FAIL) { /* that layer stays outside; grow again */
                kiln_log(env, KILN_LOG_VERBOSE, "fusing from '%s': '%s' stays outside", root->name, z->fail_at->name);
                z->no[z->fail_at->id] = true;
                continue;
            }
            int members = 0;
            for (int q = 0; q < g->nb_layers; q++) members += z->in_region[q];
            st = materialize(z, ps, n);
            kiln_free(env, ps);
            if (st == KILN_OK && root->type == KILN_LAYER_FUSED) {
                (*count)++;
                *absorbed += members;
                kiln_log(env, KILN_LOG_VERBOSE, "fused %d layers into '%s': %d pieces, %d inputs", members, root->name, n,
                         root->nb_inputs);
            }
            break;
        }
        if (st != KILN_OK) break;
    }
    kiln_free(env, stack);
done:
    if (z) {
        kiln_free(env, z->in_region);
        kiln_free(env, z->no);
    }
    kiln_free(env, z);
    return st;
}
