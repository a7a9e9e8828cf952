/* Replayed inference forwards: on a backend that can record its queued work (CUDA graphs), an inference graph's
 * forward is recorded once and then replayed with one call.
 *
 * Queuing a forward costs the host a few microseconds per kernel, which a GPU at batch 1 finishes faster than
 * they are queued: ResNet-50's forward is about 150 launches. A replay queues them all at once. What a recording
 * holds is addresses, and an inference graph's are fixed: its arena, parameters, workspace and fold scratch live as
 * long as the graph, and reading new weights or a new input writes into the same memory. So a recording stays
 * valid until the batch size changes, and scale and shift of folded batch norms are recomputed inside it.
 *
 * The first forward at a batch size runs plainly (whatever the backend allocates or measures once happens
 * outside a capture); the second is recorded, then replayed; later ones only replay. Training graphs never replay
 * (their forward reads the dropout step and their loss waits for the device), nor does a profiled graph (it times
 * each node). A capture that fails (an allocation or a wait inside it) turns replay off for the graph and the
 * forward runs plainly: a replay is an optimization, never a requirement. */
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

/* Plain forwards from now on, keeping the backend's reason. */
static kelp_status turn_off(kelp_graph *g)
{
    g->replay_off = true;
    snprintf(g->replay_off_why, sizeof g->replay_off_why, "%s", kelp_last_error());
    kelp_graph_replay_drop(g);
    return kelp_graph_forward_nodes(g);
}

/* The second forward at this batch: recorded, then replayed (recording runs nothing). Whatever fails inside a
 * capture ran nothing, so the forward then runs plainly. */
static kelp_status record(kelp_graph *g)
{
    kelp_backend *be = g->be;
    if (be->iface->capture_begin(be) != KELP_OK)
        return turn_off(g);
    kelp_status s = kelp_graph_forward_nodes(g);
    void *recorded = NULL;
    kelp_status ended = be->iface->capture_end(be, s == KELP_OK ? &recorded : NULL);
    if (s != KELP_OK || ended != KELP_OK || !recorded)
        return turn_off(g);
    g->replay = recorded;
    g->replay_batch = g->batch;
    return be->iface->replay(be, recorded) == KELP_OK ? KELP_OK : turn_off(g);
}

kelp_status kelp_graph_forward_replayed(kelp_graph *g)
{
    kelp_backend *be = g->be;
    if (g->replay && g->replay_batch == g->batch) {
        if (be->iface->replay(be, g->replay) == KELP_OK)
            return KELP_OK;
        g->warm_batch = 0; /* the backend moved memory the recording addresses: warm up and record again */
    }
    kelp_graph_replay_drop(g);
    if (g->warm_batch != g->batch) {
        /* warm only once a plain forward at this batch went through: first-call work (algorithm searches,
         * measurements) must be done before a capture */
        KELP_TRY(kelp_graph_forward_nodes(g));
        g->warm_batch = g->batch;
        return KELP_OK;
    }
    return record(g);
}
