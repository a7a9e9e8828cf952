/* Per-element optimizer updates with PyTorch's semantics (torch.optim.SGD and torch.optim.AdamW), and the
 * once-per-step check that decides whether and how they apply (kelp_step_ctl, kernels/descs.h). */
#ifndef KELP_OPS_OPTIM_H
#define KELP_OPS_OPTIM_H

#include <math.h>

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

/* Once per step, on the host, in double as PyTorch computes them: bc1 = 1 - beta1^t, bc2_sqrt = sqrt(1 - beta2^t)
 * for the 1-based step t. */
static inline void kelp_adamw_bias_corrections(const kelp_adamw_params *p, int64_t step, float *bc1,
                                               float *bc2_sqrt)
{
    *bc1 = (float)(1.0 - pow((double)p->beta1, (double)step));
    *bc2_sqrt = (float)sqrt(1.0 - pow((double)p->beta2, (double)step));
}

/* Once per step, after the gradients' sum of squares and before the updates (one thread on a GPU): GradScaler's
 * finite check and torch.nn.utils.clip_grad_norm_ on the unscaled gradients. The loss scale is a power of two, so
 * the norm of the unscaled gradients is the scaled norm times inv_scale, exactly. loss may be NULL (not checked). */
KELP_HD void kelp_step_check(kelp_step_ctl *c, const float *loss)
{
    c->loss = loss ? *loss : 0.0f;
    c->norm = c->check_grads ? sqrt(c->sum_sq) * (double)c->inv_scale : 0.0;
    c->skip = !isfinite(c->loss) || !isfinite(c->norm);
    c->clip_coef = 1.0f;
    if (!c->skip && c->max_norm > 0.0) {
        double coef = c->max_norm / (c->norm + 1e-6);
        if (coef < 1.0)
            c->clip_coef = (float)coef;
    }
}

/* The gradient an update uses: unscaled, then clipped, two roundings as when each pass rewrites the buffer. */
KELP_HD float kelp_step_grad(const kelp_step_ctl *c, float grad) { return grad * c->inv_scale * c->clip_coef; }

KELP_HD void kelp_sgd_update(const kelp_sgd_params *p, const kelp_step_ctl *c, float *param, float grad, float *buf)
{
    float g = kelp_step_grad(c, grad) + p->weight_decay * *param;
    if (p->momentum != 0.0f) {
        float b = c->first_step ? g : p->momentum * *buf + (1.0f - p->dampening) * g;
        *buf = b;
        g = p->nesterov ? g + p->momentum * b : b;
    }
    *param -= c->lr * g;
}

KELP_HD void kelp_adamw_update(const kelp_adamw_params *p, const kelp_step_ctl *c, float *param, float grad,
                               float *m, float *v)
{
    grad = kelp_step_grad(c, grad);
    *param *= 1.0f - c->lr * p->weight_decay;
    *m = p->beta1 * *m + (1.0f - p->beta1) * grad;
    *v = p->beta2 * *v + (1.0f - p->beta2) * grad * grad;
    float denom = sqrtf(*v) / c->bc2_sqrt + p->eps;
    *param -= (c->lr / c->bc1) * *m / denom;
}

#endif
