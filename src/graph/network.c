/* kiln: the public network definition API. Each add function checks its arguments,
 * records the layer and, when the input shapes are known, infers its outputs at once
 * so mistakes surface at the call that made them. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph/graph.h"
#include "graph/ops.h"

#define NET_ERR(net, st, ...) kiln_error((net) ? &(net)->g.env : NULL, st, __VA_ARGS__)

static bool inputs_known(const kiln_layer *l) {
    for (int i = 0; i < l->nb_inputs; i++)
        if (l->inputs[i] && !kiln_dims_known(&l->inputs[i]->dims)) return false;
    return true;
}

/* Checks that every input is a tensor of this network. */
static bool check_inputs(kiln_network *net, const char *what, kiln_tensor *const *in, int n, int nb_optional_tail) {
    if (!net) {
        kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "add %s: network is NULL", what);
        return false;
    }
    for (int i = 0; i < n; i++) {
        if (!in[i]) {
            if (i >= n - nb_optional_tail) continue;
            NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add %s: input %d is NULL", what, i);
            return false;
        }
        if (in[i]->graph != &net->g) {
            NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add %s: input %d '%s' belongs to another network", what, i,
                    in[i]->name);
            return false;
        }
    }
    if (net->built) {
        NET_ERR(net, KILN_ERR_INVALID_STATE, "add %s: the network was already built", what);
        return false;
    }
    return true;
}

static bool check_weights(kiln_network *net, const char *what, const char *wname, kiln_weights w, bool required) {
    if (w.count == 0 && !required) return true;
    if (w.count <= 0 || !w.values) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add %s: %s weights are %s", what, wname,
                w.count < 0 ? "of negative count" : "missing");
        return false;
    }
    if (kiln_dtype_size(w.dtype) == 0) {
        NET_ERR(net, KILN_ERR_DTYPE, "add %s: %s weights have unknown dtype %d", what, wname, (int)w.dtype);
        return false;
    }
    return true;
}

/* Creates the layer, attaches weights, infers if possible; pops it on failure. */
static kiln_layer *finish(kiln_network *net, kiln_layer_type type, kiln_tensor *const *in, int nb_in, int nb_out,
                          const kg_params *p, const kiln_weights *w, int nb_w) {
    kiln_layer *l = kg_layer_new(&net->g, type, in, nb_in, nb_out, p);
    if (!l) return NULL;
    for (int i = 0; i < nb_w; i++) l->w[i] = w[i];
    if (inputs_known(l) && kg_infer_layer(l) != KILN_OK) {
        kg_layer_pop(&net->g);
        return NULL;
    }
    return l;
}

static kiln_layer *finish1(kiln_network *net, kiln_layer_type type, kiln_tensor *in, const kg_params *p) {
    return finish(net, type, &in, 1, 1, p, NULL, 0);
}

/* ---- network, tensors, layers ---- */

kiln_tensor *kiln_network_add_input(kiln_network *net, const char *name, kiln_dtype dtype, kiln_dims dims) {
    if (!net || !name) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add input: %s is NULL", net ? "name" : "network");
        return NULL;
    }
    if (net->built) {
        NET_ERR(net, KILN_ERR_INVALID_STATE, "add input '%s': the network was already built", name);
        return NULL;
    }
    if (!*name || kg_find_tensor(&net->g, name)) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add input '%s': %s", name,
                *name ? "a tensor of that name exists" : "empty name");
        return NULL;
    }
    if (kiln_dtype_size(dtype) == 0) {
        NET_ERR(net, KILN_ERR_DTYPE, "add input '%s': unknown dtype %d", name, (int)dtype);
        return NULL;
    }
    if (dims.nb_dims < 0 || dims.nb_dims > KILN_MAX_DIMS) {
        NET_ERR(net, KILN_ERR_SHAPE, "add input '%s': rank %d is outside 0..%d", name, dims.nb_dims, KILN_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < dims.nb_dims; i++)
        if (dims.d[i] < -1) {
            NET_ERR(net, KILN_ERR_SHAPE, "add input '%s': dimension %d is %lld", name, i, (long long)dims.d[i]);
            return NULL;
        }
    kiln_graph *g = &net->g;
    if (!kiln_grow(&g->env, (void **)&g->inputs, &g->cap_inputs, g->nb_inputs + 1, sizeof(void *))) goto oom;
    kiln_tensor *t = kg_tensor_new(g, name, dtype, dims);
    if (!t) goto oom;
    t->is_input = true;
    g->inputs[g->nb_inputs++] = t;
    return t;
oom:
    NET_ERR(net, KILN_ERR_OUT_OF_MEMORY, "add input '%s': out of host memory", name);
    return NULL;
}

kiln_status kiln_network_mark_output(kiln_network *net, kiln_tensor *t) {
    if (!net || !t) return NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "mark output: %s is NULL", net ? "tensor" : "network");
    if (t->graph != &net->g)
        return NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "mark output: tensor '%s' belongs to another network", t->name);
    if (net->built) return NET_ERR(net, KILN_ERR_INVALID_STATE, "mark output '%s': the network was already built", t->name);
    if (t->is_output) return KILN_OK;
    kiln_graph *g = &net->g;
    if (!kiln_grow(&g->env, (void **)&g->outputs, &g->cap_outputs, g->nb_outputs + 1, sizeof(void *)))
        return NET_ERR(net, KILN_ERR_OUT_OF_MEMORY, "mark output '%s': out of host memory", t->name);
    t->is_output = true;
    g->outputs[g->nb_outputs++] = t;
    return KILN_OK;
}

int kiln_network_num_layers(const kiln_network *net) { return net ? net->g.nb_layers : 0; }
kiln_layer *kiln_network_layer(const kiln_network *net, int i) {
    return net && i >= 0 && i < net->g.nb_layers ? net->g.layers[i] : NULL;
}
int kiln_network_num_inputs(const kiln_network *net) { return net ? net->g.nb_inputs : 0; }
kiln_tensor *kiln_network_input(const kiln_network *net, int i) {
    return net && i >= 0 && i < net->g.nb_inputs ? net->g.inputs[i] : NULL;
}
int kiln_network_num_outputs(const kiln_network *net) { return net ? net->g.nb_outputs : 0; }
kiln_tensor *kiln_network_output(const kiln_network *net, int i) {
    return net && i >= 0 && i < net->g.nb_outputs ? net->g.outputs[i] : NULL;
}
kiln_tensor *kiln_network_find_tensor(const kiln_network *net, const char *name) {
    return net && name ? kg_find_tensor(&net->g, name) : NULL;
}

kiln_status kiln_tensor_set_name(kiln_tensor *t, const char *name) {
    if (!t || !name || !*name) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "tensor set name: %s",
                                                 !t ? "tensor is NULL" : "name is NULL or empty");
    const kiln_env *env = &t->graph->env;
    kiln_tensor *other = kg_find_tensor(t->graph, name);
    if (other && other != t)
        return kiln_error(env, KILN_ERR_INVALID_ARGUMENT, "tensor set name: '%s' is already taken", name);
    (void)env;
    return kg_tensor_rename(t, name);
}
const char *kiln_tensor_name(const kiln_tensor *t) { return t ? t->name : NULL; }
kiln_dtype kiln_tensor_dtype(const kiln_tensor *t) { return t ? t->dtype : KILN_FLOAT32; }
kiln_dims kiln_tensor_dims(const kiln_tensor *t) {
    if (t) return t->dims;
    kiln_dims none = {.nb_dims = -1};
    return none;
}

kiln_status kiln_layer_set_name(kiln_layer *l, const char *name) {
    if (!l || !name || !*name) return kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "layer set name: %s",
                                                 !l ? "layer is NULL" : "name is NULL or empty");
    const kiln_env *env = &l->graph->env;
    char *n = kiln_strdup(env, name);
    if (!n) return kiln_error(env, KILN_ERR_OUT_OF_MEMORY, "layer set name '%s': out of host memory", name);
    kiln_free(env, l->name);
    l->name = n;
    return KILN_OK;
}
const char *kiln_layer_name(const kiln_layer *l) { return l ? l->name : NULL; }
kiln_layer_type kiln_layer_get_type(const kiln_layer *l) { return l ? l->type : KILN_LAYER_IDENTITY; }
int kiln_layer_num_inputs(const kiln_layer *l) { return l ? l->nb_inputs : 0; }
kiln_tensor *kiln_layer_input(const kiln_layer *l, int i) { return l && i >= 0 && i < l->nb_inputs ? l->inputs[i] : NULL; }
int kiln_layer_num_outputs(const kiln_layer *l) { return l ? l->nb_outputs : 0; }
kiln_tensor *kiln_layer_output(const kiln_layer *l, int i) {
    return l && i >= 0 && i < l->nb_outputs ? l->outputs[i] : NULL;
}

/* ---- convolution, pooling ---- */

static kiln_layer *add_conv(kiln_network *net, kiln_layer_type type, kiln_tensor *input, const kiln_conv_desc *d,
                            kiln_weights kernel, kiln_weights bias) {
    const char *what = type == KILN_LAYER_CONVOLUTION ? "convolution" : "deconvolution";
    if (!check_inputs(net, what, &input, 1, 0)) return NULL;
    if (!d) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add %s: desc is NULL", what);
        return NULL;
    }
    if (!check_weights(net, what, "kernel", kernel, true) || !check_weights(net, what, "bias", bias, false))
        return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.conv = *d;
    for (int i = 0; i < 2; i++) {
        if (!p.conv.stride[i]) p.conv.stride[i] = 1;
        if (!p.conv.dilation[i]) p.conv.dilation[i] = 1;
    }
    if (!p.conv.groups) p.conv.groups = 1;
    kiln_weights w[2] = {kernel, bias};
    return finish(net, type, &input, 1, 1, &p, w, 2);
}

kiln_layer *kiln_network_add_convolution(kiln_network *net, kiln_tensor *input, const kiln_conv_desc *desc,
                                         kiln_weights kernel, kiln_weights bias) {
    return add_conv(net, KILN_LAYER_CONVOLUTION, input, desc, kernel, bias);
}

kiln_layer *kiln_network_add_deconvolution(kiln_network *net, kiln_tensor *input, const kiln_conv_desc *desc,
                                           kiln_weights kernel, kiln_weights bias) {
    return add_conv(net, KILN_LAYER_DECONVOLUTION, input, desc, kernel, bias);
}

kiln_layer *kiln_network_add_pooling(kiln_network *net, kiln_tensor *input, const kiln_pool_desc *desc) {
    if (!check_inputs(net, "pooling", &input, 1, 0)) return NULL;
    if (!desc) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add pooling: desc is NULL");
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.pool = *desc;
    for (int i = 0; i < 2; i++) {
        if (!p.pool.stride[i]) p.pool.stride[i] = 1;
        if (!p.pool.dilation[i]) p.pool.dilation[i] = 1;
    }
    return finish1(net, KILN_LAYER_POOLING, input, &p);
}

/* ---- point-wise ---- */

kiln_layer *kiln_network_add_activation(kiln_network *net, kiln_tensor *input, kiln_activation_type type,
                                        float alpha, float beta) {
    if (!check_inputs(net, "activation", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.act.type = type;
    p.act.alpha = alpha;
    p.act.beta = beta;
    return finish1(net, KILN_LAYER_ACTIVATION, input, &p);
}

kiln_layer *kiln_network_add_prelu(kiln_network *net, kiln_tensor *input, kiln_tensor *slope) {
    kiln_tensor *in[2] = {input, slope};
    if (!check_inputs(net, "prelu", in, 2, 0)) return NULL;
    return finish(net, KILN_LAYER_PRELU, in, 2, 1, NULL, NULL, 0);
}

kiln_layer *kiln_network_add_scale(kiln_network *net, kiln_tensor *input, kiln_scale_mode mode, kiln_weights shift,
                                   kiln_weights scale, kiln_weights power) {
    if (!check_inputs(net, "scale", &input, 1, 0)) return NULL;
    if (!check_weights(net, "scale", "shift", shift, false) || !check_weights(net, "scale", "scale", scale, false) ||
        !check_weights(net, "scale", "power", power, false))
        return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.scale.mode = mode;
    kiln_weights w[3] = {shift, scale, power};
    return finish(net, KILN_LAYER_SCALE, &input, 1, 1, &p, w, 3);
}

kiln_layer *kiln_network_add_batch_norm(kiln_network *net, kiln_tensor *input, kiln_weights gamma, kiln_weights beta,
                                        kiln_weights mean, kiln_weights var, float epsilon) {
    if (!check_inputs(net, "batch norm", &input, 1, 0)) return NULL;
    const kiln_weights *all[4] = {&gamma, &beta, &mean, &var};
    static const char *names[4] = {"gamma", "beta", "mean", "var"};
    for (int i = 0; i < 4; i++) {
        if (!check_weights(net, "batch norm", names[i], *all[i], true)) return NULL;
        if (all[i]->dtype != KILN_FLOAT32 || all[i]->count != gamma.count) {
            NET_ERR(net, KILN_ERR_INVALID_ARGUMENT,
                    "add batch norm: %s must be float32 with %lld values like gamma (got %s, %lld)", names[i],
                    (long long)gamma.count, kiln_dtype_name(all[i]->dtype), (long long)all[i]->count);
            return NULL;
        }
    }
    if (!(epsilon >= 0)) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add batch norm: epsilon %g is negative", (double)epsilon);
        return NULL;
    }
    const kiln_env *env = &net->g.env;
    int64_t c = gamma.count;
    float *sc = kiln_alloc(env, (size_t)c * sizeof(float));
    float *sh = kiln_alloc(env, (size_t)c * sizeof(float));
    if (!sc || !sh) {
        kiln_free(env, sc);
        kiln_free(env, sh);
        NET_ERR(net, KILN_ERR_OUT_OF_MEMORY, "add batch norm: out of host memory");
        return NULL;
    }
    const float *g = gamma.values, *b = beta.values, *m = mean.values, *v = var.values;
    for (int64_t i = 0; i < c; i++) {
        double s = (double)g[i] / sqrt((double)v[i] + (double)epsilon);
        sc[i] = (float)s;
        sh[i] = (float)((double)b[i] - (double)m[i] * s);
    }
    kiln_weights shift = {KILN_FLOAT32, sh, c}, scale = {KILN_FLOAT32, sc, c}, none = {KILN_FLOAT32, NULL, 0};
    kiln_layer *l = kiln_network_add_scale(net, input, KILN_SCALE_CHANNEL, shift, scale, none);
    if (!l) {
        kiln_free(env, sc);
        kiln_free(env, sh);
        char msg[800];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        kiln_error(NULL, KILN_ERR_SHAPE, "add batch norm (%lld channels): %s", (long long)c, msg);
        return NULL;
    }
    l->w_owned[0] = l->w_owned[1] = true;
    return l;
}

kiln_layer *kiln_network_add_instance_norm(kiln_network *net, kiln_tensor *input, kiln_weights scale, kiln_weights bias,
                                           float epsilon) {
    if (!check_inputs(net, "instance norm", &input, 1, 0)) return NULL;
    if (!check_weights(net, "instance norm", "scale", scale, true) ||
        !check_weights(net, "instance norm", "bias", bias, true))
        return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.norm.epsilon = epsilon;
    kiln_weights w[2] = {scale, bias};
    return finish(net, KILN_LAYER_INSTANCE_NORM, &input, 1, 1, &p, w, 2);
}

kiln_layer *kiln_network_add_lrn(kiln_network *net, kiln_tensor *input, int64_t size, float alpha, float beta,
                                 float bias) {
    if (!check_inputs(net, "lrn", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.lrn.size = size;
    p.lrn.alpha = alpha;
    p.lrn.beta = beta;
    p.lrn.bias = bias;
    return finish1(net, KILN_LAYER_LRN, input, &p);
}

kiln_layer *kiln_network_add_elementwise(kiln_network *net, kiln_tensor *a, kiln_tensor *b, kiln_elementwise_op op) {
    kiln_tensor *in[2] = {a, b};
    if (!check_inputs(net, "elementwise", in, 2, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.elt = op;
    return finish(net, KILN_LAYER_ELEMENTWISE, in, 2, 1, &p, NULL, 0);
}

kiln_layer *kiln_network_add_unary(kiln_network *net, kiln_tensor *input, kiln_unary_op op) {
    if (!check_inputs(net, "unary", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.unary = op;
    return finish1(net, KILN_LAYER_UNARY, input, &p);
}

kiln_layer *kiln_network_add_select(kiln_network *net, kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b) {
    kiln_tensor *in[3] = {cond, a, b};
    if (!check_inputs(net, "select", in, 3, 0)) return NULL;
    return finish(net, KILN_LAYER_SELECT, in, 3, 1, NULL, NULL, 0);
}

/* ---- matrix products ---- */

kiln_layer *kiln_network_add_matmul(kiln_network *net, kiln_tensor *a, kiln_tensor *b) {
    kiln_tensor *in[2] = {a, b};
    if (!check_inputs(net, "matmul", in, 2, 0)) return NULL;
    return finish(net, KILN_LAYER_MATMUL, in, 2, 1, NULL, NULL, 0);
}

kiln_layer *kiln_network_add_gemm(kiln_network *net, kiln_tensor *a, kiln_tensor *b, kiln_tensor *c,
                                  const kiln_gemm_desc *desc) {
    kiln_tensor *in[3] = {a, b, c};
    if (!check_inputs(net, "gemm", in, 3, 1)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    if (desc) p.gemm = *desc;
    else p.gemm.alpha = p.gemm.beta = 1.0f;
    return finish(net, KILN_LAYER_GEMM, in, 3, 1, &p, NULL, 0);
}

kiln_layer *kiln_network_add_fully_connected(kiln_network *net, kiln_tensor *input, int64_t out_features,
                                             kiln_weights kernel, kiln_weights bias) {
    if (!check_inputs(net, "fully connected", &input, 1, 0)) return NULL;
    if (!check_weights(net, "fully connected", "kernel", kernel, true) ||
        !check_weights(net, "fully connected", "bias", bias, false))
        return NULL;
    if (out_features <= 0 || kernel.count % out_features != 0) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT,
                "add fully connected: kernel has %lld values, not a multiple of out_features %lld",
                (long long)kernel.count, (long long)out_features);
        return NULL;
    }
    if (bias.count && bias.count != out_features) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add fully connected: bias has %lld values, expected %lld",
                (long long)bias.count, (long long)out_features);
        return NULL;
    }
    int added = net->g.nb_layers;
    kiln_tensor *x = input;
    if (x->dims.nb_dims != 2) {
        kiln_layer *f = kiln_network_add_flatten(net, x, 1);
        if (!f) return NULL;
        x = f->outputs[0];
    }
    int64_t k = kernel.count / out_features;
    kiln_layer *wl = kiln_network_add_constant(net, kiln_dims_make(2, (int64_t[]){out_features, k}), kernel);
    kiln_layer *bl = NULL;
    if (wl && bias.count) bl = kiln_network_add_constant(net, kiln_dims_make(1, (int64_t[]){out_features}), bias);
    kiln_layer *g = NULL;
    if (wl && (bl || !bias.count)) {
        kiln_gemm_desc d = {0, 1, 1.0f, 1.0f};
        g = kiln_network_add_gemm(net, x, wl->outputs[0], bl ? bl->outputs[0] : NULL, &d);
    }
    if (!g)
        while (net->g.nb_layers > added) kg_layer_pop(&net->g);
    return g;
}

/* ---- tensor manipulation ---- */

kiln_layer *kiln_network_add_constant(kiln_network *net, kiln_dims dims, kiln_weights weights) {
    if (!net) {
        kiln_error(NULL, KILN_ERR_INVALID_ARGUMENT, "add constant: network is NULL");
        return NULL;
    }
    if (net->built) {
        NET_ERR(net, KILN_ERR_INVALID_STATE, "add constant: the network was already built");
        return NULL;
    }
    int64_t vol = kiln_dims_known(&dims) ? kiln_dims_volume(&dims) : -1;
    if (vol < 0) {
        NET_ERR(net, KILN_ERR_SHAPE, "add constant: dims must be known and non-negative");
        return NULL;
    }
    if (vol > 0 && !check_weights(net, "constant", "values", weights, true)) return NULL;
    if (weights.count != vol) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add constant: %lld values for dims of volume %lld",
                (long long)weights.count, (long long)vol);
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.constant = dims;
    return finish(net, KILN_LAYER_CONSTANT, NULL, 0, 1, &p, &weights, 1);
}

kiln_layer *kiln_network_add_identity(kiln_network *net, kiln_tensor *input) {
    if (!check_inputs(net, "identity", &input, 1, 0)) return NULL;
    return finish1(net, KILN_LAYER_IDENTITY, input, NULL);
}

kiln_layer *kiln_network_add_cast(kiln_network *net, kiln_tensor *input, kiln_dtype to) {
    if (!check_inputs(net, "cast", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.cast.to = to;
    return finish1(net, KILN_LAYER_CAST, input, &p);
}

kiln_layer *kiln_network_add_concat(kiln_network *net, kiln_tensor *const *inputs, int nb_inputs, int axis) {
    if (!inputs || nb_inputs <= 0) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add concat: no inputs");
        return NULL;
    }
    if (!check_inputs(net, "concat", inputs, nb_inputs, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.axis.axis = axis;
    return finish(net, KILN_LAYER_CONCAT, inputs, nb_inputs, 1, &p, NULL, 0);
}

kiln_layer *kiln_network_add_split(kiln_network *net, kiln_tensor *input, int axis, int nb_outputs,
                                   const int64_t *sizes) {
    if (!check_inputs(net, "split", &input, 1, 0)) return NULL;
    if (nb_outputs <= 0) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add split: %d outputs", nb_outputs);
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.split.axis = axis;
    p.split.nb_outputs = nb_outputs;
    kiln_layer *l = kg_layer_new(&net->g, KILN_LAYER_SPLIT, &input, 1, nb_outputs, &p);
    if (!l) return NULL;
    if (sizes) {
        l->aux = kiln_alloc(&net->g.env, (size_t)nb_outputs * sizeof(int64_t));
        if (!l->aux) {
            kg_layer_pop(&net->g);
            NET_ERR(net, KILN_ERR_OUT_OF_MEMORY, "add split: out of host memory");
            return NULL;
        }
        memcpy(l->aux, sizes, (size_t)nb_outputs * sizeof(int64_t));
        l->nb_aux = nb_outputs;
    }
    if (inputs_known(l) && kg_infer_layer(l) != KILN_OK) {
        kg_layer_pop(&net->g);
        return NULL;
    }
    return l;
}

kiln_layer *kiln_network_add_slice(kiln_network *net, kiln_tensor *input, int nb, const int64_t *starts,
                                   const int64_t *ends, const int64_t *axes, const int64_t *steps) {
    if (!check_inputs(net, "slice", &input, 1, 0)) return NULL;
    if (nb < 0 || nb > KILN_MAX_DIMS || (nb && (!starts || !ends))) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add slice: %d axes (0..%d) or NULL starts/ends", nb, KILN_MAX_DIMS);
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.slice.nb = nb;
    for (int i = 0; i < nb; i++) {
        p.slice.starts[i] = starts[i];
        p.slice.ends[i] = ends[i];
        p.slice.axes[i] = axes ? axes[i] : i;
        p.slice.steps[i] = steps ? steps[i] : 1;
    }
    return finish1(net, KILN_LAYER_SLICE, input, &p);
}

static kiln_layer *add_shuffle(kiln_network *net, const char *what, kiln_tensor *input, const kg_shuffle_params *s) {
    if (!check_inputs(net, what, &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.shuffle = *s;
    return finish1(net, KILN_LAYER_SHUFFLE, input, &p);
}

kiln_layer *kiln_network_add_reshape(kiln_network *net, kiln_tensor *input, kiln_dims shape, int allow_zero) {
    if (shape.nb_dims < 0 || shape.nb_dims > KILN_MAX_DIMS) {
        NET_ERR(net, KILN_ERR_SHAPE, "add reshape: target rank %d outside 0..%d", shape.nb_dims, KILN_MAX_DIMS);
        return NULL;
    }
    kg_shuffle_params s = {.kind = KG_SHUFFLE_RESHAPE, .shape = shape, .allow_zero = allow_zero};
    return add_shuffle(net, "reshape", input, &s);
}

kiln_layer *kiln_network_add_flatten(kiln_network *net, kiln_tensor *input, int axis) {
    kg_shuffle_params s = {.kind = KG_SHUFFLE_FLATTEN, .axis = axis};
    return add_shuffle(net, "flatten", input, &s);
}

static kiln_layer *add_squeeze(kiln_network *net, kg_shuffle_kind kind, kiln_tensor *input, int nb_axes,
                               const int64_t *axes) {
    const char *what = kind == KG_SHUFFLE_SQUEEZE ? "squeeze" : "unsqueeze";
    if (nb_axes < 0 || nb_axes > KILN_MAX_DIMS || (nb_axes && !axes) ||
        (kind == KG_SHUFFLE_UNSQUEEZE && nb_axes == 0)) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add %s: %d axes (or NULL axes)", what, nb_axes);
        return NULL;
    }
    kg_shuffle_params s = {.kind = kind, .nb_axes = nb_axes};
    for (int i = 0; i < nb_axes; i++) s.axes[i] = axes[i];
    return add_shuffle(net, what, input, &s);
}

kiln_layer *kiln_network_add_squeeze(kiln_network *net, kiln_tensor *input, int nb_axes, const int64_t *axes) {
    return add_squeeze(net, KG_SHUFFLE_SQUEEZE, input, nb_axes, axes);
}

kiln_layer *kiln_network_add_unsqueeze(kiln_network *net, kiln_tensor *input, int nb_axes, const int64_t *axes) {
    return add_squeeze(net, KG_SHUFFLE_UNSQUEEZE, input, nb_axes, axes);
}

kiln_layer *kiln_network_add_transpose(kiln_network *net, kiln_tensor *input, int nb, const int64_t *perm) {
    if (!check_inputs(net, "transpose", &input, 1, 0)) return NULL;
    if (perm && (nb < 0 || nb > KILN_MAX_DIMS)) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add transpose: perm of %d entries", nb);
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.transpose.nb = perm ? nb : -1; /* -1: reverse, resolved at inference */
    for (int i = 0; perm && i < nb; i++) p.transpose.perm[i] = perm[i];
    return finish1(net, KILN_LAYER_TRANSPOSE, input, &p);
}

kiln_layer *kiln_network_add_pad(kiln_network *net, kiln_tensor *input, const int64_t *pads, kiln_pad_mode mode,
                                 float value) {
    if (!check_inputs(net, "pad", &input, 1, 0)) return NULL;
    if (!pads) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add pad: pads is NULL");
        return NULL;
    }
    if (input->dims.nb_dims < 0) {
        NET_ERR(net, KILN_ERR_SHAPE, "add pad: the input rank must be known to read pads");
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 2 * input->dims.nb_dims; i++) p.pad.pads[i] = pads[i];
    p.pad.mode = mode;
    p.pad.value = value;
    return finish1(net, KILN_LAYER_PAD, input, &p);
}

kiln_layer *kiln_network_add_gather(kiln_network *net, kiln_tensor *data, kiln_tensor *indices, int axis) {
    kiln_tensor *in[2] = {data, indices};
    if (!check_inputs(net, "gather", in, 2, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.axis.axis = axis;
    return finish(net, KILN_LAYER_GATHER, in, 2, 1, &p, NULL, 0);
}

kiln_layer *kiln_network_add_expand(kiln_network *net, kiln_tensor *input, kiln_dims shape) {
    if (!check_inputs(net, "expand", &input, 1, 0)) return NULL;
    if (shape.nb_dims < 0 || shape.nb_dims > KILN_MAX_DIMS) {
        NET_ERR(net, KILN_ERR_SHAPE, "add expand: target rank %d outside 0..%d", shape.nb_dims, KILN_MAX_DIMS);
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.expand.shape = shape;
    return finish1(net, KILN_LAYER_EXPAND, input, &p);
}

kiln_layer *kiln_network_add_tile(kiln_network *net, kiln_tensor *input, const int64_t *repeats) {
    if (!check_inputs(net, "tile", &input, 1, 0)) return NULL;
    if (!repeats || input->dims.nb_dims < 0) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add tile: %s",
                repeats ? "the input rank must be known to read repeats" : "repeats is NULL");
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < input->dims.nb_dims; i++) p.tile.repeats[i] = repeats[i];
    return finish1(net, KILN_LAYER_TILE, input, &p);
}

kiln_layer *kiln_network_add_depth_to_space(kiln_network *net, kiln_tensor *input, int64_t block, int crd) {
    if (!check_inputs(net, "depth to space", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.d2s.block = block;
    p.d2s.crd = crd;
    return finish1(net, KILN_LAYER_DEPTH_TO_SPACE, input, &p);
}

kiln_layer *kiln_network_add_space_to_depth(kiln_network *net, kiln_tensor *input, int64_t block) {
    if (!check_inputs(net, "space to depth", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.d2s.block = block;
    return finish1(net, KILN_LAYER_SPACE_TO_DEPTH, input, &p);
}

kiln_layer *kiln_network_add_resize(kiln_network *net, kiln_tensor *input, const kiln_resize_desc *desc) {
    if (!check_inputs(net, "resize", &input, 1, 0)) return NULL;
    if (!desc) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add resize: desc is NULL");
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.resize = *desc;
    return finish1(net, KILN_LAYER_RESIZE, input, &p);
}

kiln_layer *kiln_network_add_softmax(kiln_network *net, kiln_tensor *input, int axis, int log) {
    if (!check_inputs(net, "softmax", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.softmax.axis = axis;
    p.softmax.log = log;
    return finish1(net, KILN_LAYER_SOFTMAX, input, &p);
}

kiln_layer *kiln_network_add_reduce(kiln_network *net, kiln_tensor *input, kiln_reduce_op op, int nb_axes,
                                    const int64_t *axes, int keep_dims) {
    if (!check_inputs(net, "reduce", &input, 1, 0)) return NULL;
    if (nb_axes < 0 || nb_axes > KILN_MAX_DIMS || (nb_axes && !axes)) {
        NET_ERR(net, KILN_ERR_INVALID_ARGUMENT, "add reduce: %d axes (or NULL axes)", nb_axes);
        return NULL;
    }
    kg_params p;
    memset(&p, 0, sizeof p);
    p.reduce.op = op;
    p.reduce.nb_axes = nb_axes;
    for (int i = 0; i < nb_axes; i++) p.reduce.axes[i] = axes[i];
    p.reduce.keep_dims = keep_dims;
    return finish1(net, KILN_LAYER_REDUCE, input, &p);
}

kiln_layer *kiln_network_add_arg_reduce(kiln_network *net, kiln_tensor *input, int axis, int keep_dims, int is_min,
                                        int select_last) {
    if (!check_inputs(net, "arg reduce", &input, 1, 0)) return NULL;
    kg_params p;
    memset(&p, 0, sizeof p);
    p.arg.axis = axis;
    p.arg.keep_dims = keep_dims;
    p.arg.is_min = is_min;
    p.arg.select_last = select_last;
    return finish1(net, KILN_LAYER_ARG_REDUCE, input, &p);
}
