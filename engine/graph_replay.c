/* Replayed work: on a backend that can record what it queues (CUDA graphs), an inference graph's forward, and a
 * training graph's step (zero_grad, forward, backward, and the optimizer's update when engine/train_step.c runs
 * it), is recorded once and then replayed with one call.
 *
 * Queuing costs the host a few microseconds per kernel, which a GPU at batch 1 finishes faster than they are
 * queued: ResNet-50's forward is about 150 launches, its training step three times that. A replay queues them all
 * at once. What a recording holds is addresses, and a graph's are fixed: its arena, parameters (and their
 * low-precision copy), gradients, workspace, fold scratch and loss seed live as long as the graph, and reading new
 * weights or a new batch writes into the same memory. So a recording stays valid until the batch size changes (or
 * parameters are frozen, which changes what backward computes), and what depends on values (folded batch norms'
 * scale and shift, the low-precision copy of the weights) is recomputed inside it.
 *
 * The first run at a batch size is plain (whatever the backend allocates or measures once happens outside a
 * capture); the second is recorded, then replayed; later ones only replay. A profiled graph (it times each node)
 * stays plain. What changes from step to step reaches a recording through backend memory: the loss scale through
 * the loss seed, written only when it changes, outside the recording; the optimizer's learning rate and step
 * through its scalars (kelp_step_ctl), written before each step; dropout's step through the graph's step counter,
 * which the recorded forward advances itself. A capture that fails (an allocation, a wait or a host copy inside
 * it) turns replay off for the graph, which then runs plainly: a replay is an optimization, never a
 * requirement. */
#include <stdio.h>

#include "engine/graph_internal.h"

bool kelp_graph_replayable(const kelp_graph *g)
{
    return !g->options.training && !g->profile && !g->replay_off && g->be->iface->capture_begin;
}

void kelp_graph_replay_drop(kelp_graph *g)
{
    if (g->replay)
        g->be->iface->replay_destroy(g->be, g->replay);
    g->replay = NULL;
}

/* What a recording holds: a forward, or a training step. */
typedef kelp_status (*replay_unit)(kelp_graph *g);

/* Plain runs from now on, keeping the backend's reason. */
static kelp_status turn_off(kelp_graph *g, replay_unit unit)
{
    g->replay_off = true;
    snprintf(g->replay_off_why, sizeof g->replay_off_why, "%s", kelp_last_error());
    kelp_graph_replay_drop(g);
    return unit(g);
}

/* The second run at this batch: recorded, then replayed (recording runs nothing). Whatever fails inside a capture
 * ran nothing, so the unit then runs plainly; the step counter the recording advanced is put back first. */
static kelp_status record(kelp_graph *g, replay_unit unit)
{
    kelp_backend *be = g->be;
    uint64_t step = g->step;
    if (be->iface->capture_begin(be) != KELP_OK)
        return turn_off(g, unit);
    kelp_status s = unit(g);
    void *recorded = NULL;
    kelp_status ended = be->iface->capture_end(be, s == KELP_OK ? &recorded : NULL);
    if (s != KELP_OK || ended != KELP_OK || !recorded) {
        KELP_TRY(kelp_graph_set_step(g, step)); /* the host's count, and the device's if the backend ran anything */
        return turn_off(g, unit);
    }
    g->replay = recorded;
    g->replay_batch = g->batch;
    g->replay_tail = g->tail;
    if (be->iface->replay(be, recorded) == KELP_OK)
        return KELP_OK;
    KELP_TRY(kelp_graph_set_step(g, step));
    return turn_off(g, unit);
}

static kelp_status run_replayed(kelp_graph *g, replay_unit unit)
{
    kelp_backend *be = g->be;
    if (g->replay && g->replay_batch == g->batch) {
        bool same_tail = g->replay_tail.fn == g->tail.fn && g->replay_tail.ctx == g->tail.ctx;
        if (same_tail && be->iface->replay(be, g->replay) == KELP_OK) {
            if (g->training)
                g->step++; /* what the recorded forward did on the host */
            return KELP_OK;
        }
        /* the step ends differently now (its tail's first call may measure or allocate), or the backend moved
         * memory the recording addresses: warm up and record again */
        g->warm_batch = 0;
    }
    kelp_graph_replay_drop(g);
    if (g->warm_batch != g->batch) {
        /* warm only once a plain run at this batch went through: first-call work (algorithm searches,
         * measurements) must be done before a capture */
        KELP_TRY(unit(g));
        g->warm_batch = g->batch;
        return KELP_OK;
    }
    return record(g, unit);
}

kelp_status kelp_graph_forward_replayed(kelp_graph *g) { return run_replayed(g, kelp_graph_forward_nodes); }

/* A training step node by node, then its tail; recorded whole, the low-precision weights' refresh and gradient
 * fold included. */
static kelp_status step_nodes(kelp_graph *g)
{
    KELP_TRY(kelp_graph_refresh_params_lp(g));
    KELP_TRY(kelp_graph_zero_grad(g));
    KELP_TRY(kelp_graph_forward_nodes(g));
    KELP_TRY(kelp_graph_backward(g));
    return g->tail.fn ? g->tail.fn(g->tail.ctx) : KELP_OK;
}

static bool step_replayable(const kelp_graph *g)
{
    return !g->profile && !g->replay_off && g->be->iface->capture_begin;
}

kelp_status kelp_graph_train_step(kelp_graph *g, kelp_step_tail tail)
{
    if (!g->options.training || g->loss_node < 0 || !g->training)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "graph: a training step needs a graph with a loss, built for and in training mode");
    g->tail = tail;
    if (!step_replayable(g))
        return step_nodes(g);
    KELP_TRY(kelp_graph_write_loss_seed(g)); /* outside the recording, which reads it */
    return run_replayed(g, step_nodes);
}

void kelp_graph_forget_tail(kelp_graph *g, const void *ctx)
{
    if (g->replay_tail.ctx == ctx) {
        kelp_graph_replay_drop(g);
        g->replay_tail = (kelp_step_tail){NULL, NULL};
        g->warm_batch = 0; /* the next step's tail warms up before it is recorded */
    }
    if (g->tail.ctx == ctx)
        g->tail = (kelp_step_tail){NULL, NULL};
}

kelp_status kelp_graph_forward_backward(kelp_graph *g)
{
    return kelp_graph_train_step(g, (kelp_step_tail){NULL, NULL});
}
