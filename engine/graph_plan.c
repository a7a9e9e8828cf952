/* Which values need gradients, and where every activation, gradient and layer state lives in the arena.
 *
 * Schedule: forward of node i is step i; backward of node i is step 2n-1-i. A value's data lives from its
 * producer's forward to the producer's backward in training graphs (its consumers' backward steps come earlier, and
 * a layer may read its own output in backward), and to its last consumer in inference graphs. A value's gradient
 * lives from the backward of its last consumer (where it is zeroed, then accumulated into) to its producer's
 * backward. Graph inputs and outputs live through the whole schedule: callers may run forward twice on the same
 * input, read outputs after forward, and seed output gradients before backward. A fused chain's last value lives
 * from the chain's head, which writes it, and its inner values take no memory (graph_fuse.c). */
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "engine/memory_plan.h"

static bool is_output(const kelp_graph *g, int value)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->output_values[i] == value)
            return true;
    return value == g->label_value || (g->loss_node >= 0 && value == g->nodes[g->loss_node].out);
}

void kelp_graph_update_requires_grad(kelp_graph *g)
{
    for (int v = 0; v < g->n_values; v++)
        g->values[v].has_grad = g->values[v].producer < 0 && g->options.input_grads && v != g->label_value;
    for (int i = 0; i < g->n_nodes; i++) {
        kelp_node *node = &g->nodes[i];
        bool needs = false;
        for (int p = 0; p < node->n_params; p++) {
            const kelp_graph_param *gp = &g->params[node->param[p]];
            needs |= gp->spec.kind == KELP_PARAM_TRAINABLE && !gp->frozen;
        }
        for (int k = 0; k < node->n_in; k++)
            needs |= g->values[node->in[k]].has_grad;
        node->needs_backward = needs && g->options.training;
        g->values[node->out].has_grad = node->needs_backward;
    }
}

static size_t value_bytes(const kelp_value *v)
{
    return (size_t)kelp_shape_numel(&v->shape) * kelp_dtype_size(v->dtype);
}

kelp_status kelp_graph_plan_memory(kelp_graph *g)
{
    const bool training = g->options.training;
    const int n = g->n_nodes, last_step = training ? 2 * n - 1 : n - 1;
    /* per value: data and gradient; per node: state */
    int count = 2 * g->n_values + g->n_nodes;
    kelp_plan_buffer *buffers = calloc((size_t)count, sizeof *buffers);
    if (!buffers)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "graph: out of memory planning %d buffers", count);
    for (int v = 0; v < g->n_values; v++) {
        const kelp_value *val = &g->values[v];
        int p = val->producer;
        kelp_plan_buffer *data = &buffers[2 * v], *grad = &buffers[2 * v + 1];
        data->size = val->elided ? 0 : value_bytes(val);
        data->first = val->written_by < 0 ? 0 : val->written_by;
        if (is_output(g, v) || p < 0)
            data->last = last_step;
        else if (training)
            data->last = 2 * n - 1 - p;
        else
            data->last = val->last_consumer > p ? val->last_consumer : (p < 0 ? 0 : p);
        /* every value that could need a gradient gets one: freezing later only leaves some unused */
        /* the loss's gradient is the seed, in a scalar of its own that no other buffer may share */
        bool is_loss = g->loss_node >= 0 && v == g->nodes[g->loss_node].out;
        bool could_need_grad = training && v != g->label_value && !is_loss && (p >= 0 || g->options.input_grads);
        if (could_need_grad) {
            grad->size = value_bytes(val);
            grad->first = (is_output(g, v) || val->last_consumer < 0) ? n : 2 * n - 1 - val->last_consumer;
            grad->last = p < 0 ? last_step : 2 * n - 1 - p;
            if (grad->first > grad->last)
                grad->first = grad->last;
        } else {
            grad->first = grad->last = 0;
        }
    }
    for (int i = 0; i < n; i++) {
        kelp_plan_buffer *state = &buffers[2 * g->n_values + i];
        state->size = g->nodes[i].state_bytes;
        state->first = i;
        state->last = training ? 2 * n - 1 - i : i;
    }
    size_t arena = 0;
    g->arena_unplanned_bytes = 0;
    for (int b = 0; b < count; b++)
        g->arena_unplanned_bytes += buffers[b].size;
    kelp_status s = kelp_memory_plan(buffers, count, &arena);
    if (s == KELP_OK) {
        g->arena_bytes = arena;
        s = g->be->iface->alloc(g->be, arena, &g->arena);
        if (s != KELP_OK)
            kelp_wrap_error(s, "graph: activation memory for batch %d: ", g->options.batch);
    }
    if (s == KELP_OK && g->workspace_bytes > KELP_TENSOR_MAX_BYTES)
        s = kelp_set_error(KELP_ERR_SHAPE, "graph: a layer asks for %zu bytes of workspace", g->workspace_bytes);
    if (s == KELP_OK && g->workspace_bytes) {
        s = g->be->iface->alloc(g->be, g->workspace_bytes, &g->workspace);
        if (s != KELP_OK)
            kelp_wrap_error(s, "graph: shared workspace: ");
    }
    if (s == KELP_OK && g->loss_node >= 0) {
        s = g->be->iface->alloc(g->be, sizeof(float), (void **)&g->loss_seed);
        g->loss_seed_written = 0;
    }
    if (s == KELP_OK && g->options.training) {
        s = g->be->iface->alloc(g->be, sizeof *g->step_counter, (void **)&g->step_counter);
        if (s == KELP_OK)
            s = kelp_graph_set_step(g, g->step);
    }
    if (s == KELP_OK) {
        char *base = g->arena;
        for (int v = 0; v < g->n_values; v++) {
            kelp_value *val = &g->values[v];
            val->t = (kelp_tensor){val->shape, val->dtype, base + buffers[2 * v].offset, g->be};
            if (buffers[2 * v + 1].size)
                val->grad = (kelp_tensor){val->shape, val->dtype, base + buffers[2 * v + 1].offset, g->be};
            else if (g->loss_seed && v == g->nodes[g->loss_node].out)
                val->grad = (kelp_tensor){val->shape, val->dtype, g->loss_seed, g->be};
        }
        for (int i = 0; i < n; i++)
            g->nodes[i].state = g->nodes[i].state_bytes ? base + buffers[2 * g->n_values + i].offset : NULL;
    }
    free(buffers);
    return s;
}
