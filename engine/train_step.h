/* One training step of a graph with an optimizer: zero_grad, forward, backward, then on the device GradScaler's
 * finite check, torch.nn.utils.clip_grad_norm_ and the optimizer's update, queued as one unit. A GPU records it
 * once per batch size and replays it with one call (engine/graph_replay.c), the optimizer included: this step's
 * learning rate, bias corrections and loss scale reach the recording through a kelp_step_ctl in backend memory,
 * written before the step, and the host waits once, after it, to read the loss and whether the update applied.
 *
 * The update is skipped, leaving parameters and optimizer state as they were, when the loss is not finite, or
 * (with loss scaling or clipping, which sum the gradients' squares) when a gradient is not finite. Skipped steps do
 * not count as optimizer steps. Unscaling and clipping happen inside the update: after a step the gradient buffer
 * still holds the scaled, unclipped gradients (PyTorch's p.grad would be unscaled and clipped). */
#ifndef KELP_ENGINE_TRAIN_STEP_H
#define KELP_ENGINE_TRAIN_STEP_H

#include <stdbool.h>

#include "engine/optimizer.h"
#include "kelp/kelp.h"

typedef struct kelp_train_step_config {
    const kelp_param_segment *segments; /* the trainable ranges (copied); NULL: the whole parameter buffer */
    int n_segments;
    double clip_norm; /* > 0: clip the global norm of the unscaled gradients to it */
    bool loss_scale;  /* the loss gradient is seeded with the scale given to each step */
} kelp_train_step_config;

typedef struct kelp_train_step_result {
    float loss;
    bool applied;     /* false: the loss or a gradient was not finite and nothing moved */
    double grad_norm; /* of the unscaled gradients before clipping; 0 when nothing summed them (no loss scaling,
                         no clipping) */
} kelp_train_step_result;

typedef struct kelp_train_step kelp_train_step;

/* g: a training graph with a loss; opt: an optimizer over its parameter buffer. Both must outlive the step, which
 * checks the segments against the buffer here. */
kelp_status kelp_train_step_create(kelp_graph *g, kelp_optimizer *opt, const kelp_train_step_config *config,
                                   kelp_train_step **out);
void kelp_train_step_destroy(kelp_train_step *t);

/* One step on the batch already in the graph's input and labels, with learning rate lr and, with loss_scale
 * configured, the loss scale `scale` (ignored otherwise). GradScaler's scales are powers of two, for which the
 * result equals unscaling the gradients in place; another scale is allowed and rounds once more. */
kelp_status kelp_train_step_run(kelp_train_step *t, float lr, float scale, kelp_train_step_result *out);

#endif
