/* Running a graph: batch size, forward, backward, gradients, parameters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/graph_internal.h"
#include "kernels/ops/rng.h"

kelp_status kelp_graph_set_batch(kelp_graph *g, int batch)
{
    if (batch < 1 || batch > g->options.batch)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: batch %d is outside [1, %d] (the planned batch)", batch,
                              g->options.batch);
    g->batch = batch;
    for (int v = 0; v < g->n_values; v++) {
        kelp_value *val = &g->values[v];
        if (!val->batched)
            continue;
        val->t.shape.dims[0] = batch;
        val->grad.shape.dims[0] = batch;
    }
    return KELP_OK;
}

int kelp_graph_batch(const kelp_graph *g) { return g->batch; }

kelp_status kelp_graph_set_training(kelp_graph *g, bool training)
{
    if (training && !g->options.training)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: built for inference; rebuild it with training = true");
    g->training = training;
    kelp_graph_mark_params_changed(g);
    return KELP_OK;
}

int kelp_graph_input_count(const kelp_graph *g) { return g->n_inputs; }
const char *kelp_graph_input_name(const kelp_graph *g, int index)
{
    return index >= 0 && index < g->n_inputs ? g->values[g->input_values[index]].name : NULL;
}
kelp_tensor *kelp_graph_input(kelp_graph *g, int index)
{
    return index >= 0 && index < g->n_inputs ? &g->values[g->input_values[index]].t : NULL;
}
kelp_tensor *kelp_graph_input_grad(kelp_graph *g, int index)
{
    if (index < 0 || index >= g->n_inputs || !g->options.input_grads)
        return NULL;
    return &g->values[g->input_values[index]].grad;
}
int kelp_graph_output_count(const kelp_graph *g) { return g->n_outputs; }
kelp_tensor *kelp_graph_output(kelp_graph *g, int index)
{
    return index >= 0 && index < g->n_outputs ? &g->values[g->output_values[index]].t : NULL;
}
kelp_tensor *kelp_graph_output_grad(kelp_graph *g, int index)
{
    if (index < 0 || index >= g->n_outputs || !g->options.training)
        return NULL;
    return &g->values[g->output_values[index]].grad;
}
kelp_tensor *kelp_graph_label(kelp_graph *g) { return g->label_value >= 0 ? &g->values[g->label_value].t : NULL; }

void kelp_graph_fill_io(kelp_graph *g, int index, kelp_layer_io *io, bool backward)
{
    kelp_node *node = &g->nodes[index];
    memset(io, 0, sizeof *io);
    io->be = g->be;
    io->attrs = node->attrs;
    io->name = node->name;
    io->n_in = node->n_in;
    for (int k = 0; k < node->n_in; k++) {
        kelp_value *v = &g->values[node->in[k]];
        io->in[k] = &v->t;
        if (backward && v->has_grad)
            io->din[k] = &v->grad;
    }
    io->out = &g->values[node->out].t;
    if (backward)
        io->dout = &g->values[node->out].grad;
    for (int p = 0; p < node->n_params; p++) {
        kelp_graph_param *gp = &g->params[node->param[p]];
        bool trainable = gp->spec.kind == KELP_PARAM_TRAINABLE;
        io->param[p] = &gp->value;
        if (trainable && gp->value_lp.data)
            io->param_lp[p] = &gp->value_lp;
        if (backward && trainable && !gp->frozen) {
            io->dparam[p] = &gp->grad;
            if (gp->grad_lp.data)
                io->dparam_lp[p] = &gp->grad_lp;
        }
    }
    io->state = node->state;
    io->workspace = g->workspace;
    io->training = g->training;
    /* read on the backend when the node runs (kelp_rng_seed_value) */
    io->seed = (kelp_rng_seed){kelp_ctx_seed(g->ctx), 0x9E3779B97F4A7C15ull * (uint64_t)(index + 1), g->step_counter};
}

static kelp_status node_failed(const kelp_node *node, kelp_status s, const char *pass)
{
    return kelp_wrap_error(s, "node '%s' (%s) %s: ", node->name, node->type->name, pass);
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef kelp_status (*node_pass)(kelp_graph *g, int index);

/* Runs one pass of node `index` between two synchronizations of the backend and adds its wall time: an
 * asynchronous backend is then timed for the node's work, not for queuing it. */
static kelp_status run_timed(kelp_graph *g, int index, node_pass pass, double *seconds, int64_t *calls)
{
    kelp_backend *be = g->be;
    KELP_TRY(be->iface->synchronize(be));
    double start = now_seconds();
    kelp_status s = pass(g, index);
    if (s == KELP_OK)
        s = be->iface->synchronize(be);
    *seconds += now_seconds() - start;
    (*calls)++;
    return s;
}

static kelp_status forward_node(kelp_graph *g, int index)
{
    kelp_status s;
    if (g->nodes[index].fused_next) { /* the head of a fused chain (graph_fuse.c) */
        s = kelp_graph_forward_fused(g, index);
    } else {
        kelp_layer_io io;
        kelp_graph_fill_io(g, index, &io, false);
        s = g->nodes[index].type->forward(&io);
    }
    return s == KELP_OK ? s : node_failed(&g->nodes[index], s, "forward");
}

void kelp_graph_mark_params_changed(kelp_graph *g) { g->params_lp_stale = true; }

/* The parameters' low-precision copy is converted again before every training forward (the optimizer changed
 * them) and, for inference, once after they were initialized, loaded or handed out for writing. */
kelp_status kelp_graph_refresh_params_lp(kelp_graph *g)
{
    if (!g->params_lp_mem || !(g->training || g->params_lp_stale))
        return KELP_OK;
    int64_t count = (int64_t)(g->params_bytes / sizeof(float));
    KELP_TRY(g->be->iface->convert(g->be, count, KELP_F32, g->params_mem, g->options.precision, g->params_lp_mem,
                                   false));
    g->params_lp_stale = false;
    return KELP_OK;
}

/* Adds a backward's low-precision weight gradients into the float ones and clears them, so that the float
 * gradients accumulate over backwards exactly as in F32. */
static kelp_status fold_grads_lp(kelp_graph *g)
{
    if (!g->grads_lp_mem)
        return KELP_OK;
    kelp_backend *be = g->be;
    int64_t count = (int64_t)(g->params_bytes / sizeof(float));
    KELP_TRY(be->iface->convert(be, count, g->options.precision, g->grads_lp_mem, KELP_F32, g->grads_mem, true));
    return be->iface->memset(be, g->grads_lp_mem, 0, (size_t)count * kelp_dtype_size(g->options.precision));
}

kelp_status kelp_graph_forward(kelp_graph *g)
{
    KELP_TRY(kelp_graph_refresh_params_lp(g));
    return kelp_graph_replayable(g) ? kelp_graph_forward_replayed(g) : kelp_graph_forward_nodes(g);
}

kelp_status kelp_graph_forward_nodes(kelp_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].fused) /* run by its chain's head (graph_fuse.c) */
            continue;
        kelp_node_timing *t = g->profile ? &g->profile[i] : NULL;
        KELP_TRY(t ? run_timed(g, i, forward_node, &t->forward_seconds, &t->forward_calls) : forward_node(g, i));
    }
    if (g->training) {
        KELP_TRY(g->be->iface->counter_add(g->be, g->step_counter, 1)); /* recorded with the step */
        g->step++;
    }
    return KELP_OK;
}

bool kelp_graph_is_output(const kelp_graph *g, int value)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->output_values[i] == value)
            return true;
    return false;
}

static kelp_status backward_node(kelp_graph *g, int index)
{
    kelp_node *node = &g->nodes[index];
    /* A gradient is born at its last consumer's backward (the first to run): zero it there, then every consumer
     * accumulates. Without a loss, the caller seeds the outputs' gradients: those are not zeroed. */
    for (int k = 0; k < node->n_in; k++) {
        kelp_value *v = &g->values[node->in[k]];
        bool seeded = g->loss_node < 0 && kelp_graph_is_output(g, node->in[k]);
        if (v->has_grad && v->last_consumer == index && !seeded)
            KELP_TRY(g->be->iface->memset(g->be, v->grad.data, 0, kelp_tensor_bytes(&v->grad)));
    }
    kelp_layer_io io;
    kelp_graph_fill_io(g, index, &io, true);
    kelp_status s = node->type->backward(&io);
    return s == KELP_OK ? s : node_failed(node, s, "backward");
}

kelp_status kelp_graph_backward(kelp_graph *g)
{
    if (!g->options.training)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: backward needs a graph built with training = true");
    kelp_backend *be = g->be;
    /* Gradients that no consumer writes (a dead-end node, a second output beside the loss, an unused input) start
     * at zero; the caller's seeds (outputs of a graph without loss) and the loss's 1 are the only other starts. */
    for (int v = 0; v < g->n_values; v++) {
        kelp_value *val = &g->values[v];
        bool seeded = g->loss_node < 0 ? kelp_graph_is_output(g, v) : v == g->nodes[g->loss_node].out;
        if (val->has_grad && val->last_consumer < 0 && !seeded)
            KELP_TRY(be->iface->memset(be, val->grad.data, 0, kelp_tensor_bytes(&val->grad)));
    }
    KELP_TRY(kelp_graph_write_loss_seed(g));
    kelp_status s = KELP_OK;
    for (int i = g->n_nodes - 1; i >= 0 && s == KELP_OK; i--) {
        if (!g->nodes[i].needs_backward)
            continue;
        kelp_node_timing *t = g->profile ? &g->profile[i] : NULL;
        s = t ? run_timed(g, i, backward_node, &t->backward_seconds, &t->backward_calls) : backward_node(g, i);
    }
    return s == KELP_OK ? fold_grads_lp(g) : s;
}

kelp_status kelp_graph_write_loss_seed(kelp_graph *g)
{
    if (!g->loss_seed || g->loss_seed_written == g->loss_scale)
        return KELP_OK;
    const float seed = g->loss_scale; /* 1, or the loss scale of mixed-precision training */
    KELP_TRY(g->be->iface->upload(g->be, g->loss_seed, &seed, sizeof seed));
    g->loss_seed_written = seed;
    return KELP_OK;
}

kelp_status kelp_graph_set_loss_scale(kelp_graph *g, float scale)
{
    if (!(scale > 0.0f) || !isfinite(scale))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: loss scale %g is not a finite number > 0", (double)scale);
    g->loss_scale = scale;
    return KELP_OK;
}

kelp_status kelp_graph_zero_grad(kelp_graph *g)
{
    if (!g->grads_mem)
        return KELP_OK;
    if (g->grads_lp_mem) /* after a backward that failed half-way */
        KELP_TRY(g->be->iface->memset(g->be, g->grads_lp_mem, 0,
                                      g->params_bytes / sizeof(float) * kelp_dtype_size(g->options.precision)));
    return g->be->iface->memset(g->be, g->grads_mem, 0, g->params_bytes);
}

const float *kelp_graph_loss_value(const kelp_graph *g)
{
    return g->loss_node < 0 ? NULL : g->values[g->nodes[g->loss_node].out].t.data;
}

kelp_status kelp_graph_loss(kelp_graph *g, float *loss)
{
    if (g->loss_node < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: built without a loss (with_loss = false)");
    return g->be->iface->download(g->be, loss, kelp_graph_loss_value(g), sizeof *loss);
}

int kelp_graph_param_count(const kelp_graph *g) { return g->n_params; }

kelp_status kelp_graph_param_info(const kelp_graph *g, int index, kelp_param_info *out)
{
    if (index < 0 || index >= g->n_params)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: parameter index %d outside [0, %d)", index, g->n_params);
    const kelp_graph_param *p = &g->params[index];
    out->name = p->name;
    out->shape = p->spec.shape;
    out->dtype = p->spec.dtype;
    out->kind = p->spec.kind;
    out->offset = p->offset;
    out->frozen = p->frozen;
    return KELP_OK;
}

kelp_status kelp_graph_find_param(kelp_graph *g, const char *name, kelp_tensor *value, kelp_tensor *grad)
{
    for (int i = 0; i < g->n_params; i++)
        if (strcmp(g->params[i].name, name) == 0) {
            if (value) {
                *value = g->params[i].value;
                kelp_graph_mark_params_changed(g); /* the caller may write it */
            }
            if (grad)
                *grad = g->params[i].grad;
            return KELP_OK;
        }
    return kelp_set_error(KELP_ERR_NOT_FOUND, "graph: no parameter named '%s'", name);
}

kelp_tensor *kelp_graph_params(kelp_graph *g)
{
    kelp_graph_mark_params_changed(g); /* the caller may write them */
    return &g->params_tensor;
}
kelp_tensor *kelp_graph_grads(kelp_graph *g) { return g->grads_mem ? &g->grads_tensor : NULL; }

kelp_status kelp_graph_freeze(kelp_graph *g, const char *prefix, bool frozen)
{
    size_t len = strlen(prefix);
    int matched = 0;
    for (int i = 0; i < g->n_params; i++)
        if (strncmp(g->params[i].name, prefix, len) == 0) {
            g->params[i].frozen = frozen;
            matched++;
        }
    if (!matched)
        return kelp_set_error(KELP_ERR_NOT_FOUND, "graph: no parameter name starts with '%s'", prefix);
    kelp_graph_update_requires_grad(g);
    kelp_graph_replay_drop(g); /* a recorded step computes the gradients the old freezing asked for */
    g->warm_batch = 0;
    return KELP_OK;
}

int kelp_graph_trainable_segments(const kelp_graph *g, kelp_param_segment *segments, int max_segments)
{
    int count = 0;
    for (int i = 0; i < g->n_params; i++) {
        const kelp_graph_param *p = &g->params[i];
        if (p->spec.kind != KELP_PARAM_TRAINABLE || p->frozen)
            continue;
        int64_t offset = (int64_t)(p->offset / sizeof(float)), n = kelp_shape_numel(&p->spec.shape);
        if (count > 0 && segments[count - 1].offset + segments[count - 1].count == offset)
            segments[count - 1].count += n;
        else if (count < max_segments)
            segments[count++] = (kelp_param_segment){offset, n};
        else
            return -1;
    }
    return count;
}

void kelp_graph_memory_usage(const kelp_graph *g, kelp_graph_memory *out)
{
    size_t lp = g->params_lp_mem ? g->params_bytes / sizeof(float) * kelp_dtype_size(g->options.precision) : 0;
    out->params = g->params_bytes + lp;
    out->grads = g->grads_mem ? g->params_bytes + (g->grads_lp_mem ? lp : 0) : 0;
    out->buffers = g->buffers_bytes;
    out->activations = g->arena_bytes;
    out->workspace = g->workspace_bytes;
    out->activations_unplanned = g->arena_unplanned_bytes;
}

uint64_t kelp_graph_step(const kelp_graph *g) { return g->step; }
kelp_status kelp_graph_set_step(kelp_graph *g, uint64_t step)
{
    g->step = step;
    if (!g->step_counter)
        return KELP_OK;
    int64_t value = (int64_t)step;
    return g->be->iface->upload(g->be, g->step_counter, &value, sizeof value);
}
const cJSON *kelp_graph_model(const kelp_graph *g) { return g->model; }

int kelp_graph_node_count(const kelp_graph *g) { return g->n_nodes; }

kelp_status kelp_graph_node_info(const kelp_graph *g, int index, kelp_node_info *out)
{
    if (index < 0 || index >= g->n_nodes)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: node index %d outside [0, %d)", index, g->n_nodes);
    const kelp_node *node = &g->nodes[index];
    out->name = node->name;
    out->type = node->type->name;
    out->output = g->values[node->out].shape;
    out->parameters = 0;
    for (int p = 0; p < node->n_params; p++) {
        const kelp_graph_param *gp = &g->params[node->param[p]];
        if (gp->spec.kind == KELP_PARAM_TRAINABLE)
            out->parameters += kelp_shape_numel(&gp->spec.shape);
    }
    return KELP_OK;
}

kelp_status kelp_graph_set_profiling(kelp_graph *g, bool enabled)
{
    if (!enabled) {
        free(g->profile);
        g->profile = NULL;
    } else if (!g->profile) {
        g->profile = calloc((size_t)g->n_nodes + 1, sizeof *g->profile); /* + 1: never calloc(0) */
        if (!g->profile)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "graph: out of memory for the profile");
    }
    return KELP_OK;
}

void kelp_graph_reset_profile(kelp_graph *g)
{
    if (g->profile)
        memset(g->profile, 0, (size_t)g->n_nodes * sizeof *g->profile);
}

/* The input and weight gradients that node's backward computes, each a product as large as its forward. */
static int gradient_products(const kelp_graph *g, const kelp_node *node)
{
    if (!g->options.training || !node->needs_backward)
        return 0;
    int count = g->values[node->in[0]].has_grad ? 1 : 0;
    if (node->n_params > 0) {
        const kelp_graph_param *weight = &g->params[node->param[0]];
        count += weight->spec.kind == KELP_PARAM_TRAINABLE && !weight->frozen;
    }
    return count;
}

kelp_status kelp_graph_node_profile(const kelp_graph *g, int index, kelp_node_profile *out)
{
    if (index < 0 || index >= g->n_nodes)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: node index %d outside [0, %d)", index, g->n_nodes);
    const kelp_node *node = &g->nodes[index];
    memset(out, 0, sizeof *out);
    out->name = node->name;
    out->type = node->type->name;
    out->folded = node->fused;
    if (g->profile) {
        const kelp_node_timing *t = &g->profile[index];
        out->forward_calls = t->forward_calls;
        out->backward_calls = t->backward_calls;
        out->forward_seconds = t->forward_seconds;
        out->backward_seconds = t->backward_seconds;
    }
    if (node->type->flops) {
        kelp_shape in[KELP_MAX_INPUTS];
        for (int k = 0; k < node->n_in; k++)
            in[k] = g->values[node->in[k]].t.shape;
        out->forward_flops = node->type->flops(node->attrs, in, node->n_in, &g->values[node->out].t.shape);
        out->backward_flops = out->forward_flops * gradient_products(g, node);
    }
    return KELP_OK;
}

kelp_status kelp_graph_fill_random(kelp_graph *g, uint64_t seed)
{
    uint64_t state = seed;
    for (int i = 0; i < g->n_inputs; i++) {
        kelp_tensor *x = &g->values[g->input_values[i]].t;
        size_t n = (size_t)kelp_shape_numel(&x->shape);
        float *host = malloc(n * sizeof *host);
        if (!host)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "graph: out of memory for random input");
        for (size_t j = 0; j < n; j++)
            host[j] = (float)((double)(kelp_mix64(state += 0x9E3779B97F4A7C15ull) >> 11) * 0x1.0p-52 - 1.0);
        kelp_status s = kelp_tensor_upload_floats(x, host, (int64_t)n);
        free(host);
        KELP_TRY(s);
    }
    if (g->label_value < 0)
        return KELP_OK;
    kelp_tensor *label = &g->values[g->label_value].t;
    const kelp_shape *logits = &g->values[g->nodes[g->loss_node].in[0]].shape;
    uint64_t classes = (uint64_t)logits->dims[logits->ndim - 1];
    size_t n = (size_t)kelp_shape_numel(&label->shape);
    int32_t *host = malloc(n * sizeof *host);
    if (!host)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "graph: out of memory for random labels");
    for (size_t j = 0; j < n; j++)
        host[j] = (int32_t)(kelp_mix64(state += 0x9E3779B97F4A7C15ull) % classes);
    kelp_status s = kelp_tensor_upload(label, host, n * sizeof *host);
    free(host);
    return s;
}
