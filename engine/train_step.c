/* A training step queued as one unit, the optimizer included (engine/train_step.h). */
#include "engine/train_step.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"

struct kelp_train_step {
    kelp_graph *g;
    kelp_optimizer *opt;
    kelp_train_step_config config;
    kelp_param_segment *segments; /* the config's, copied */
    kelp_step_ctl *ctl;           /* backend memory */
};

kelp_status kelp_train_step_create(kelp_graph *g, kelp_optimizer *opt, const kelp_train_step_config *config,
                                   kelp_train_step **out)
{
    if (!kelp_graph_loss_value(g))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train step: the graph has no loss");
    int64_t n = kelp_shape_numel(&kelp_graph_params(g)->shape);
    if (kelp_optimizer_param_count(opt) != n)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "train step: the optimizer is for %" PRId64 " parameters, the graph has %" PRId64,
                              kelp_optimizer_param_count(opt), n);
    if (!isfinite(config->clip_norm) || config->clip_norm < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train step: clip norm %g is not a finite number >= 0",
                              config->clip_norm);
    /* checked here: the gradients' sum of squares runs over them before the optimizer would look */
    KELP_TRY(kelp_param_segments_check("train step", config->segments, config->n_segments, n));
    if ((config->loss_scale || config->clip_norm > 0) &&
        !g->be->iface->supports(g->be, KELP_OP_ELEMENTWISE, KELP_F32))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "train step: backend '%s' cannot sum the gradients' squares",
                              g->be->iface->name);
    kelp_train_step *t = calloc(1, sizeof *t);
    if (!t)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "train step: out of memory");
    *t = (kelp_train_step){.g = g, .opt = opt, .config = *config};
    if (config->segments) {
        size_t bytes = (size_t)config->n_segments * sizeof *t->segments;
        t->segments = malloc(bytes ? bytes : 1); /* an empty list (nothing trains) stays a list */
        if (!t->segments) {
            free(t);
            return kelp_set_error(KELP_ERR_NO_MEMORY, "train step: out of memory");
        }
        memcpy(t->segments, config->segments, bytes);
        t->config.segments = t->segments;
    }
    kelp_status s = g->be->iface->alloc(g->be, sizeof *t->ctl, (void **)&t->ctl);
    if (s != KELP_OK) {
        kelp_train_step_destroy(t);
        return kelp_wrap_error(s, "train step: ");
    }
    *out = t;
    return KELP_OK;
}

void kelp_train_step_destroy(kelp_train_step *t)
{
    if (!t)
        return;
    kelp_graph_forget_tail(t->g, t); /* a recording reads t->ctl, and a new step may get t's address */
    if (t->ctl)
        t->g->be->iface->free(t->g->be, t->ctl);
    free(t->segments);
    free(t);
}

/* What follows backward, recorded with it: the check and the update, reading this step's scalars from t->ctl. */
static kelp_status queue_update(void *ctx)
{
    kelp_train_step *t = ctx;
    kelp_backend *be = t->g->be;
    float *params = kelp_graph_params(t->g)->data;
    const float *grads = kelp_graph_grads(t->g)->data;
    const kelp_train_step_config *c = &t->config;
    if (c->loss_scale || c->clip_norm > 0)
        KELP_TRY(kelp_grads_sum_squares(be, grads, kelp_shape_numel(&kelp_graph_params(t->g)->shape), c->segments,
                                        c->n_segments, &t->ctl->sum_sq));
    KELP_TRY(be->iface->step_check(be, kelp_graph_loss_value(t->g), t->ctl));
    return kelp_optimizer_queue(t->opt, t->ctl, params, grads, c->segments, c->n_segments);
}

kelp_status kelp_train_step_run(kelp_train_step *t, float lr, float scale, kelp_train_step_result *out)
{
    const kelp_train_step_config *c = &t->config;
    kelp_backend *be = t->g->be;
    if (!c->loss_scale)
        scale = 1.0f;
    float inv_scale = (float)(1.0 / (double)scale); /* as GradScaler computes it */
    if (!(scale > 0.0f) || !isfinite(scale) || !isfinite(inv_scale))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train step: loss scale %g has no finite inverse", (double)scale);
    KELP_TRY(kelp_graph_set_loss_scale(t->g, scale));
    kelp_step_ctl ctl;
    KELP_TRY(kelp_optimizer_step_scalars(t->opt, lr, &ctl));
    ctl.inv_scale = inv_scale;
    ctl.max_norm = c->clip_norm;
    ctl.check_grads = c->loss_scale || c->clip_norm > 0;
    /* from pageable memory: a device backend stages the bytes before returning, ordered before the step */
    KELP_TRY(be->iface->upload(be, t->ctl, &ctl, sizeof ctl));
    KELP_TRY(kelp_graph_train_step(t->g, (kelp_step_tail){queue_update, t}));
    /* The one wait. It may fail after the copy (a deferred error of the device, such as another graph's label on
     * the same backend): an update the device applied is counted all the same, or the next steps' bias
     * corrections would be off by one. A copy that did not happen leaves the marker, and counts nothing. */
    ctl.skip = -1;
    kelp_status s = be->iface->download(be, &ctl, t->ctl, sizeof ctl);
    if (ctl.skip == 0)
        KELP_TRY(kelp_optimizer_set_step_count(t->opt, kelp_optimizer_step_count(t->opt) + 1));
    KELP_TRY(s);
    *out = (kelp_train_step_result){.loss = ctl.loss, .applied = !ctl.skip, .grad_norm = ctl.norm};
    return KELP_OK;
}
