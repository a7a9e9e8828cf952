/* Running a graph: batch size, forward, backward, gradients, parameters. */
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

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

static void fill_io(kelp_graph *g, int index, kelp_layer_io *io, bool backward)
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
        io->param[p] = &gp->value;
        if (backward && gp->spec.kind == KELP_PARAM_TRAINABLE && !gp->frozen)
            io->dparam[p] = &gp->grad;
    }
    io->state = node->state;
    io->workspace = g->workspace;
    io->training = g->training;
    io->seed = mix64(kelp_ctx_seed(g->ctx) ^ mix64(g->step + 0x9E3779B97F4A7C15ull * (uint64_t)(index + 1)));
}

static kelp_status node_failed(const kelp_node *node, kelp_status s, const char *pass)
{
    return kelp_wrap_error(s, "node '%s' (%s) %s: ", node->name, node->type->name, pass);
}

kelp_status kelp_graph_forward(kelp_graph *g)
{
    kelp_layer_io io;
    for (int i = 0; i < g->n_nodes; i++) {
        fill_io(g, i, &io, false);
        kelp_status s = g->nodes[i].type->forward(&io);
        if (s != KELP_OK)
            return node_failed(&g->nodes[i], s, "forward");
    }
    if (g->training)
        g->step++;
    return KELP_OK;
}

static bool is_graph_output(const kelp_graph *g, int value)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->output_values[i] == value)
            return true;
    return false;
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
        bool seeded = g->loss_node < 0 && is_graph_output(g, v);
        if (val->has_grad && val->last_consumer < 0 && !seeded)
            KELP_TRY(be->iface->memset(be, val->grad.data, 0, kelp_tensor_bytes(&val->grad)));
    }
    if (g->loss_node >= 0) {
        const float one = 1.0f;
        KELP_TRY(be->iface->upload(be, g->values[g->nodes[g->loss_node].out].grad.data, &one, sizeof one));
    }
    /* The step counter already advanced in forward; backward must see the same dropout stream. */
    uint64_t forward_step = g->step;
    if (g->training && g->step > 0)
        g->step--;
    kelp_layer_io io;
    kelp_status s = KELP_OK;
    for (int i = g->n_nodes - 1; i >= 0 && s == KELP_OK; i--) {
        kelp_node *node = &g->nodes[i];
        if (!node->needs_backward)
            continue;
        /* A gradient is born at its last consumer's backward (the first to run): zero it there, then every
         * consumer accumulates. Without a loss, the caller seeds the outputs' gradients: those are not zeroed. */
        for (int k = 0; k < node->n_in; k++) {
            kelp_value *v = &g->values[node->in[k]];
            bool seeded = g->loss_node < 0 && is_graph_output(g, node->in[k]);
            if (v->has_grad && v->last_consumer == i && !seeded)
                s = be->iface->memset(be, v->grad.data, 0, kelp_tensor_bytes(&v->grad));
        }
        if (s != KELP_OK)
            break;
        fill_io(g, i, &io, true);
        s = node->type->backward(&io);
        if (s != KELP_OK)
            s = node_failed(node, s, "backward");
    }
    g->step = forward_step;
    return s;
}

kelp_status kelp_graph_zero_grad(kelp_graph *g)
{
    if (!g->grads_mem)
        return KELP_OK;
    return g->be->iface->memset(g->be, g->grads_mem, 0, g->params_bytes);
}

kelp_status kelp_graph_loss(kelp_graph *g, float *loss)
{
    if (g->loss_node < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: built without a loss (with_loss = false)");
    return g->be->iface->download(g->be, loss, g->values[g->nodes[g->loss_node].out].t.data, sizeof *loss);
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
            if (value)
                *value = g->params[i].value;
            if (grad)
                *grad = g->params[i].grad;
            return KELP_OK;
        }
    return kelp_set_error(KELP_ERR_NOT_FOUND, "graph: no parameter named '%s'", name);
}

kelp_tensor *kelp_graph_params(kelp_graph *g) { return &g->params_tensor; }
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
    out->params = g->params_bytes;
    out->grads = g->grads_mem ? g->params_bytes : 0;
    out->buffers = g->buffers_bytes;
    out->activations = g->arena_bytes;
    out->workspace = g->workspace_bytes;
    out->activations_unplanned = g->arena_unplanned_bytes;
}

uint64_t kelp_graph_step(const kelp_graph *g) { return g->step; }
void kelp_graph_set_step(kelp_graph *g, uint64_t step) { g->step = step; }
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
