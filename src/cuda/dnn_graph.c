/* kiln CUDA backend: convolutions through cuDNN 9's backend (graph) API. One operation
 * graph per layer: the convolution (float16 channels-last data, float32 accumulation),
 * then in float32 the residual add, the bias add and ReLU, written once as float16.
 * cuDNN's heuristics list the engine configurations for it; each that finalizes into an
 * execution plan (without run-time compilation, within the workspace limit) is a
 * candidate the caller times (dnn.c). A deconvolution's graph is cuDNN's backward-data with the same
 * epilogue (kcu_cg_desc.dgrad); an output that is a concat's channel slice is described
 * with its pixel pitch (kcu_cg_desc.ldy). The legacy API reaches only eight algorithms, each
 * tied to one engine; this reaches every engine, fused epilogues included. */
#include "cuda/dnn_graph.h"

#include <pthread.h>
#include <string.h>

enum { UID_X = 1, UID_W, UID_Z, UID_B, UID_Y, UID_CONV = 10, UID_RES, UID_BIAS };
#define CG_MAX_OPS 4

struct kcu_cg {
    cudnnHandle_t h; /* the device's shared handle (handle_acquire), NULL if not acquired */
    int dev;
    pthread_mutex_t lock; /* cuDNN does not promise that one plan runs from two threads at once */
    cudnnBackendDescriptor_t graph;
    cudnnBackendDescriptor_t *cfg; /* the heuristics' engine configurations */
    int nb_cfg;   /* usable */
    int nb_alloc; /* created (freed at the end) */
    cudnnBackendDescriptor_t plan[KCU_CG_MAX]; /* execution plans, finalized on demand */
    size_t ws[KCU_CG_MAX];
    int selected;
    bool res, bias;
};

typedef cudnnBackendDescriptor_t bd_t;

/* One cuDNN handle per device for every operation graph and execution plan of the
 * process, alive while any of them is: a handle per layer would hold device memory per
 * layer (cuDNN allocates some for each), and a plan must not outlive the handle it was
 * finalized with. */
#define CG_MAX_DEVICES 64
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static cudnnHandle_t shared_handle[CG_MAX_DEVICES];
static int shared_users[CG_MAX_DEVICES];

static cudnnStatus_t handle_acquire(int *dev, cudnnHandle_t *h) {
    if (cudaGetDevice(dev) != cudaSuccess || *dev < 0 || *dev >= CG_MAX_DEVICES) {
        (void)cudaGetLastError();
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
    pthread_mutex_lock(&shared_lock);
    if (!shared_users[*dev]) s = cudnnCreate(&shared_handle[*dev]);
    if (s == CUDNN_STATUS_SUCCESS) {
        shared_users[*dev]++;
        *h = shared_handle[*dev];
    }
    pthread_mutex_unlock(&shared_lock);
    return s;
}

static void handle_release(int dev) {
    pthread_mutex_lock(&shared_lock);
    if (shared_users[dev] > 0 && --shared_users[dev] == 0) {
        cudnnDestroy(shared_handle[dev]);
        shared_handle[dev] = NULL;
    }
    pthread_mutex_unlock(&shared_lock);
}

static void bd_free(bd_t *d) {
    if (*d) cudnnBackendDestroyDescriptor(*d);
    *d = NULL;
}

static cudnnStatus_t set_i64(bd_t d, cudnnBackendAttributeName_t a, int64_t n, const int64_t *v) {
    return cudnnBackendSetAttribute(d, a, CUDNN_TYPE_INT64, n, v);
}

/* A tensor [d0, d1, d2, d3] (logical NCHW order) stored channels-last, its pixels ld
 * elements apart (0: d1, dense). */
static cudnnStatus_t tensor_ld(bd_t *t, int64_t uid, cudnnDataType_t dt, const int64_t *dims, bool virt, int64_t ld) {
    int64_t p = ld > 0 ? ld : dims[1];
    int64_t st[4] = {p * dims[2] * dims[3], 1, dims[3] * p, p}, align = 16;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, t);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    if (s == CUDNN_STATUS_SUCCESS) s = set_i64(*t, CUDNN_ATTR_TENSOR_DIMENSIONS, 4, dims);
    if (s == CUDNN_STATUS_SUCCESS) s = set_i64(*t, CUDNN_ATTR_TENSOR_STRIDES, 4, st);
    if (s == CUDNN_STATUS_SUCCESS) s = set_i64(*t, CUDNN_ATTR_TENSOR_UNIQUE_ID, 1, &uid);
    if (s == CUDNN_STATUS_SUCCESS) s = set_i64(*t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, 1, &align);
    if (s == CUDNN_STATUS_SUCCESS && virt)
        s = cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(*t);
    return s;
}

static cudnnStatus_t tensor(bd_t *t, int64_t uid, cudnnDataType_t dt, const int64_t *dims, bool virt) {
    return tensor_ld(t, uid, dt, dims, virt, 0);
}

/* A point-wise operation y = mode(x[, b]) in float32 math. */
static cudnnStatus_t pointwise(bd_t *op, bd_t *pw, cudnnPointwiseMode_t mode, bd_t x, bd_t b, bd_t y) {
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, pw);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(*pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(*pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(*pw);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                     pw);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (s == CUDNN_STATUS_SUCCESS && b)
        s = cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(*op);
    return s;
}

static cudnnStatus_t build_graph(kcu_cg *g, cudnnHandle_t h, const kcu_cg_desc *d) {
    enum { T_X, T_W, T_Z, T_B, T_Y, T_CONV, T_RES, T_BIAS, T_COUNT };
    bd_t t[T_COUNT] = {0}, conv = NULL, ops[CG_MAX_OPS] = {0}, pws[CG_MAX_OPS] = {0};
    int nops = 0;
    int64_t xd[4] = {d->n, d->c, d->h, d->w}, wd[4] = {d->k, d->c, d->r, d->s}, yd[4] = {d->n, d->k, d->oh, d->ow},
            bdim[4] = {1, d->k, 1, 1};
    if (d->dgrad) { /* the filter of the convolution from y to x */
        wd[0] = d->c;
        wd[1] = d->k;
    }
    bool tail = d->res || d->bias || d->relu; /* point-wise ops after the convolution */
    cudnnStatus_t s = tensor(&t[T_X], UID_X, CUDNN_DATA_HALF, xd, false);
    if (s == CUDNN_STATUS_SUCCESS) s = tensor(&t[T_W], UID_W, CUDNN_DATA_HALF, wd, false);
    if (s == CUDNN_STATUS_SUCCESS) s = tensor_ld(&t[T_Y], UID_Y, CUDNN_DATA_HALF, yd, false, d->ldy);
    if (s == CUDNN_STATUS_SUCCESS && d->res) s = tensor(&t[T_Z], UID_Z, CUDNN_DATA_HALF, yd, false);
    if (s == CUDNN_STATUS_SUCCESS && d->bias) s = tensor(&t[T_B], UID_B, CUDNN_DATA_HALF, bdim, false);
    if (s == CUDNN_STATUS_SUCCESS && tail) s = tensor(&t[T_CONV], UID_CONV, CUDNN_DATA_FLOAT, yd, true);
    if (s == CUDNN_STATUS_SUCCESS && d->res && (d->bias || d->relu))
        s = tensor(&t[T_RES], UID_RES, CUDNN_DATA_FLOAT, yd, true);
    if (s == CUDNN_STATUS_SUCCESS && d->bias && d->relu) s = tensor(&t[T_BIAS], UID_BIAS, CUDNN_DATA_FLOAT, yd, true);
    /* the convolution */
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &conv);
    if (s == CUDNN_STATUS_SUCCESS) {
        cudnnDataType_t ct = CUDNN_DATA_FLOAT;
        cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
        int64_t dims = 2;
        s = cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &ct);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
        if (s == CUDNN_STATUS_SUCCESS) s = set_i64(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, 1, &dims);
        if (s == CUDNN_STATUS_SUCCESS) s = set_i64(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, 2, d->dil);
        if (s == CUDNN_STATUS_SUCCESS) s = set_i64(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, 2, d->stride);
        if (s == CUDNN_STATUS_SUCCESS) s = set_i64(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, 2, d->pad_pre);
        if (s == CUDNN_STATUS_SUCCESS) s = set_i64(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, 2, d->pad_post);
        if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(conv);
    }
    if (s == CUDNN_STATUS_SUCCESS && d->dgrad) {
        s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, &ops[nops]);
        bd_t op = ops[nops++], dx = tail ? t[T_CONV] : t[T_Y];
        float alpha = 1.0f, beta = 0.0f;
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                         1, &t[T_X]);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                         &t[T_W]);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                         1, &dx);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
        if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(op);
    } else if (s == CUDNN_STATUS_SUCCESS) {
        s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, &ops[nops]);
    }
    if (s == CUDNN_STATUS_SUCCESS && !d->dgrad) {
        bd_t op = ops[nops++], y = tail ? t[T_CONV] : t[T_Y];
        float alpha = 1.0f, beta = 0.0f;
        s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                     &t[T_X]);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                         1, &t[T_W]);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                         1, &y);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
        if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(op);
    }
    /* the epilogue: (+ residual) (+ bias) (ReLU), the last writing y */
    bd_t cur = t[T_CONV];
    if (s == CUDNN_STATUS_SUCCESS && d->res) {
        bd_t out = d->bias || d->relu ? t[T_RES] : t[T_Y];
        s = pointwise(&ops[nops], &pws[nops], CUDNN_POINTWISE_ADD, cur, t[T_Z], out);
        nops++;
        cur = out;
    }
    if (s == CUDNN_STATUS_SUCCESS && d->bias) {
        bd_t out = d->relu ? t[T_BIAS] : t[T_Y];
        s = pointwise(&ops[nops], &pws[nops], CUDNN_POINTWISE_ADD, cur, t[T_B], out);
        nops++;
        cur = out;
    }
    if (s == CUDNN_STATUS_SUCCESS && d->relu) {
        s = pointwise(&ops[nops], &pws[nops], CUDNN_POINTWISE_RELU_FWD, cur, NULL, t[T_Y]);
        nops++;
    }
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &g->graph);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(g->graph);
    /* the graph keeps what it needs; the building blocks go */
    for (int i = 0; i < T_COUNT; i++) bd_free(&t[i]);
    for (int i = 0; i < CG_MAX_OPS; i++) {
        bd_free(&ops[i]);
        bd_free(&pws[i]);
    }
    bd_free(&conv);
    return s;
}

/* The heuristics' configurations (mode A, the fast one), up to KCU_CG_MAX. */
static cudnnStatus_t list_configs(const kiln_env *env, kcu_cg *g) {
    bd_t heur = NULL;
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                     &g->graph);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(heur);
    int64_t count = 0;
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
    if (s == CUDNN_STATUS_SUCCESS && count > KCU_CG_MAX) count = KCU_CG_MAX;
    if (s == CUDNN_STATUS_SUCCESS && count > 0) {
        g->cfg = kiln_calloc(env, (size_t)count, sizeof *g->cfg);
        if (!g->cfg) s = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
        for (int64_t i = 0; s == CUDNN_STATUS_SUCCESS && i < count; i++) {
            s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &g->cfg[i]);
            if (s == CUDNN_STATUS_SUCCESS) g->nb_alloc = (int)i + 1;
        }
        int64_t got = 0;
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                                         g->cfg);
        if (s == CUDNN_STATUS_SUCCESS) g->nb_cfg = (int)(got < count ? got : count);
    }
    bd_free(&heur);
    return s;
}

kiln_status kcu_cg_create(const kiln_layer *l, const kiln_env *env, const kcu_cg_desc *d, kcu_cg **out) {
    *out = NULL;
    kcu_cg *g = kiln_calloc(env, 1, sizeof *g);
    if (!g) return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "out of host memory");
    g->selected = -1;
    g->res = d->res;
    g->bias = d->bias;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        kiln_free(env, g);
        return kg_layer_error(l, KILN_ERR_OUT_OF_MEMORY, "cannot create a mutex");
    }
    cudnnStatus_t s = handle_acquire(&g->dev, &g->h);
    if (s != CUDNN_STATUS_SUCCESS) g->h = NULL;
    if (s == CUDNN_STATUS_SUCCESS) s = build_graph(g, g->h, d);
    if (s == CUDNN_STATUS_SUCCESS) s = list_configs(env, g);
    (void)cudaGetLastError();
    if (s != CUDNN_STATUS_SUCCESS || g->nb_cfg == 0) {
        /* not an error of the build: the other convolution paths remain */
        kiln_log(env, KILN_LOG_VERBOSE, "layer '%s': cuDNN graph API offers no engine (%s)", l->name,
                 s == CUDNN_STATUS_SUCCESS ? "no configuration" : cudnnGetErrorString(s));
        kcu_cg_free(env, g);
        return KILN_ERR_UNSUPPORTED;
    }
    *out = g;
    return KILN_OK;
}

int kcu_cg_count(const kcu_cg *g) { return g ? g->nb_cfg : 0; }

/* Whether an engine compiles kernels at run time (slow to finalize: left out). */
static bool runtime_compiled(bd_t cfg) {
    bd_t eng = NULL;
    int64_t n = 0;
    bool rtc = false;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS) return true;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng) ==
        CUDNN_STATUS_SUCCESS) {
        cudnnBackendBehaviorNote_t notes[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
        int64_t k = 0;
        if (cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                                     CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &k, notes) == CUDNN_STATUS_SUCCESS)
            for (int64_t i = 0; i < k; i++) rtc = rtc || notes[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
    } else {
        rtc = true;
    }
    cudnnBackendDestroyDescriptor(eng);
    return rtc;
}

int64_t kcu_cg_engine(const kcu_cg *g, int i) {
    if (!g || i < 0 || i >= g->nb_cfg) return -1;
    bd_t eng = NULL;
    int64_t n = 0, idx = -1;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS) return -1;
    if (cudnnBackendGetAttribute(g->cfg[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng) ==
        CUDNN_STATUS_SUCCESS)
        (void)cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &idx);
    cudnnBackendDestroyDescriptor(eng);
    return idx;
}

bool kcu_cg_plan(kcu_cg *g, int i, size_t ws_limit, size_t *ws) {
    *ws = 0;
    if (i < 0 || i >= g->nb_cfg) return false;
    if (g->plan[i]) {
        *ws = g->ws[i];
        return g->ws[i] <= ws_limit;
    }
    if (runtime_compiled(g->cfg[i]) || kcu_cg_engine(g, i) < 0) return false;
    int64_t bytes = 0, n = 0;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &g->plan[i]);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(g->plan[i], CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &g->h);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(g->plan[i], CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                     1, &g->cfg[i]);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(g->plan[i]);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(g->plan[i], CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                     &bytes);
    (void)cudaGetLastError();
    if (s != CUDNN_STATUS_SUCCESS || bytes < 0 || (size_t)bytes > ws_limit) {
        bd_free(&g->plan[i]);
        return false;
    }
    g->ws[i] = (size_t)bytes;
    *ws = g->ws[i];
    return true;
}

void kcu_cg_use(kcu_cg *g, int i) { g->selected = i >= 0 && i < g->nb_cfg && g->plan[i] ? i : -1; }

void kcu_cg_keep(kcu_cg *g) {
    for (int i = 0; i < KCU_CG_MAX; i++)
        if (i != g->selected) bd_free(&g->plan[i]);
}

int kcu_cg_selected(const kcu_cg *g) { return g ? g->selected : -1; }

kiln_status kcu_cg_run(const kiln_layer *l, const kcu_cg *g, cudnnHandle_t h, const void *x, const void *w,
                       const void *z, const void *bias, void *y, void *ws) {
    if (g->selected < 0) return kg_layer_error(l, KILN_ERR_INTERNAL, "cuDNN graph: no execution plan selected");
    int64_t uids[5];
    void *ptrs[5];
    int n = 0;
    uids[n] = UID_X, ptrs[n++] = (void *)x;
    uids[n] = UID_W, ptrs[n++] = (void *)w;
    uids[n] = UID_Y, ptrs[n++] = y;
    if (g->res) uids[n] = UID_Z, ptrs[n++] = (void *)z;
    if (g->bias) uids[n] = UID_B, ptrs[n++] = (void *)bias;
    bd_t vp = NULL;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
    if (s == CUDNN_STATUS_SUCCESS) s = set_i64(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, n, uids);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(vp);
    if (s == CUDNN_STATUS_SUCCESS) {
        pthread_mutex_t *lock = (pthread_mutex_t *)&g->lock; /* the state is shared by the engine's contexts */
        pthread_mutex_lock(lock);
        s = cudnnBackendExecute(h, g->plan[g->selected], vp);
        pthread_mutex_unlock(lock);
    }
    bd_free(&vp);
    if (s != CUDNN_STATUS_SUCCESS) return kcu_dnn_fail(l, s, "cudnnBackendExecute", __FILE__, __LINE__);
    return KILN_OK;
}

void kcu_cg_free(const kiln_env *env, kcu_cg *g) {
    if (!g) return;
    for (int i = 0; i < KCU_CG_MAX; i++) bd_free(&g->plan[i]);
    for (int i = 0; i < g->nb_alloc; i++) bd_free(&g->cfg[i]);
    kiln_free(env, g->cfg);
    bd_free(&g->graph);
    if (g->h) handle_release(g->dev);
    pthread_mutex_destroy(&g->lock);
    kiln_free(env, g);
}
