/* Inference fusion: a convolution followed by its batch norm and ReLU runs as one convolution.
 *
 * In inference a batch norm is a per-channel affine map with fixed coefficients, and ReLU a clamp, so both fold
 * into the convolution's epilogue: y = clamp(sum * scale + shift), applied in registers before the store (the
 * Winograd and direct kernels) or in one pass after the GEMM. That saves the batch norm's and the ReLU's passes
 * over memory and their activations (ResNet-18 at batch 16: the forward 34 ms faster, planned activations 107 ->
 * 83 MiB).
 *
 * A chain is conv2d -> batch_norm -> relu|relu6 or any two of them starting at the conv2d, in a graph built
 * without training (training graphs keep every layer: backward needs their inputs), on a backend with the fused
 * op. Each inner value must have that one reader and not be an output of the graph. The chain's last value is
 * written when its head runs, so the memory plan gives it a life from there (graph_plan.c), and the inner values
 * get no memory. The coefficients come from the parameters at every forward (the backend's batchnorm_fold, in its
 * own memory: on a GPU a kernel of C threads), never cached: loading weights or writing a parameter between two
 * forwards needs nothing more. */
#include <stdlib.h>

#include "engine/graph_internal.h"
#include "engine/layers/conv_common.h"
#include "engine/layers/fold.h"

/* The node that alone reads `value` as its only input, or -1. */
static int sole_reader(const kelp_graph *g, int value)
{
    int reader = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == value) {
                if (reader >= 0 || g->nodes[i].n_in != 1)
                    return -1;
                reader = i;
            }
    return kelp_graph_is_output(g, value) ? -1 : reader;
}

static bool is_clamp(const kelp_layer_type *t) { return t == &kelp_layer_relu || t == &kelp_layer_relu6; }

kelp_status kelp_graph_plan_fusion(kelp_graph *g)
{
    if (g->options.training || !g->be->iface->conv2d_forward_fused || !g->be->iface->batchnorm_fold)
        return KELP_OK;
    int64_t widest = 0;
    for (int head = 0; head < g->n_nodes; head++) {
        kelp_node *h = &g->nodes[head];
        if (h->type != &kelp_layer_conv2d || h->fused)
            continue;
        int last = head, next = sole_reader(g, h->out);
        if (next >= 0 && g->nodes[next].type == &kelp_layer_batch_norm) {
            g->nodes[last].fused_next = next;
            last = next;
            next = sole_reader(g, g->nodes[last].out);
        }
        if (next >= 0 && is_clamp(g->nodes[next].type)) {
            g->nodes[last].fused_next = next;
            last = next;
        }
        if (last == head)
            continue;
        for (int i = head; i != last; i = g->nodes[i].fused_next) {
            g->values[g->nodes[i].out].elided = true;
            g->nodes[g->nodes[i].fused_next].fused = true;
        }
        g->values[g->nodes[last].out].written_by = head;
        const int64_t channels = g->values[h->out].shape.dims[3];
        widest = channels > widest ? channels : widest;
    }
    if (widest)
        KELP_TRY(g->be->iface->alloc(g->be, 2 * (size_t)widest * sizeof(float), (void **)&g->fold));
    return KELP_OK;
}

kelp_status kelp_graph_forward_fused(kelp_graph *g, int head)
{
    const kelp_node *h = &g->nodes[head];
    int last = head;
    while (g->nodes[last].fused_next)
        last = g->nodes[last].fused_next;
    kelp_layer_io conv;
    kelp_graph_fill_io(g, head, &conv, false);
    conv.out = &g->values[g->nodes[last].out].t;
    const float *bias = ((const kelp_conv_attrs *)h->attrs)->bias ? conv.param[1]->data : NULL;
    kelp_conv_epilogue ep = {.shift = bias};
    for (int index = h->fused_next; index; index = g->nodes[index].fused_next) {
        const kelp_node *inner = &g->nodes[index];
        if (inner->type == &kelp_layer_batch_norm) {
            kelp_layer_io bn;
            kelp_graph_fill_io(g, index, &bn, false);
            const int64_t k = conv.out->shape.dims[3];
            KELP_TRY(kelp_batch_norm_fold(&bn, bias, g->fold, g->fold + k));
            ep.scale = g->fold;
            ep.shift = g->fold + k;
        } else {
            ep.clamp = inner->type == &kelp_layer_relu6 ? KELP_CLAMP_RELU6 : KELP_CLAMP_RELU;
        }
    }
    return kelp_conv2d_forward_fused(&conv, &ep);
}
