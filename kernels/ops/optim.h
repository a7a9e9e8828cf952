/* Per-element optimizer updates with PyTorch's semantics (torch.optim.SGD and torch.optim.AdamW). */
#ifndef KELP_OPS_OPTIM_H
#define KELP_OPS_OPTIM_H

#include <math.h>

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

KELP_HD void kelp_sgd_update(const kelp_sgd_params *p, float *param, float grad, float *buf)
{
    float g = grad + p->weight_decay * *param;
    if (p->momentum != 0.0f) {
        float b = p->first_step ? g : p->momentum * *buf + (1.0f - p->dampening) * g;
        *buf = b;
        g = p->nesterov ? g + p->momentum * b : b;
    }
    *param -= p->lr * g;
}

/* Once per step, not per element; in double, as PyTorch computes them on the host: bc1 = 1 - beta1^t,
 * bc2_sqrt = sqrt(1 - beta2^t). */
KELP_HD void kelp_adamw_bias_corrections(const kelp_adamw_params *p, float *bc1, float *bc2_sqrt)
{
    *bc1 = (float)(1.0 - pow((double)p->beta1, (double)p->step));
    *bc2_sqrt = (float)sqrt(1.0 - pow((double)p->beta2, (double)p->step));
}

/* bias corrections are per step, computed once by the caller with kelp_adamw_bias_corrections */
KELP_HD void kelp_adamw_update(const kelp_adamw_params *p, float bc1, float bc2_sqrt, float *param, float grad,
                               float *m, float *v)
{
    *param *= 1.0f - p->lr * p->weight_decay;
    *m = p->beta1 * *m + (1.0f - p->beta1) * grad;
    *v = p->beta2 * *v + (1.0f - p->beta2) * grad * grad;
    float denom = sqrtf(*v) / bc2_sqrt + p->eps;
    *param -= (p->lr / bc1) * *m / denom;
}

#endif
