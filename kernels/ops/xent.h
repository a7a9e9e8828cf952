/* Per-row and per-element math of softmax cross-entropy (PyTorch's F.cross_entropy), shared by the CPU and CUDA
 * kernels. */
#ifndef KELP_OPS_XENT_H
#define KELP_OPS_XENT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

/* A row adds to the loss when its label is a class; the ignore index adds nothing. Anything else is invalid and
 * must never be used as an index. */
KELP_HD bool kelp_xent_label_counts(const kelp_xent_desc *d, int32_t label)
{
    return label != d->ignore_index && label >= 0 && label < d->classes;
}

KELP_HD bool kelp_xent_label_invalid(const kelp_xent_desc *d, int32_t label)
{
    return label != d->ignore_index && (label < 0 || label >= d->classes);
}

KELP_HD float kelp_xent_class_weight(const float *class_weights, int k)
{
    return class_weights ? class_weights[k] : 1.0f;
}

/* d/d logit[c] of (1-eps) * w[y] * -logp[y] + eps/K * sum_k w[k] * -logp[k] for one counted row, before the
 * division by the summed weight of all counted rows. p = softmax(logits)[c], w_sum = sum_k w[k]. */
KELP_HD float kelp_xent_grad(const kelp_xent_desc *d, float p, bool is_label, float w_label, float w_c, float w_sum)
{
    float eps = d->label_smoothing;
    float hard = w_label * (p - (is_label ? 1.0f : 0.0f));
    float smooth = w_sum * p - w_c;
    return (1.0f - eps) * hard + (eps / (float)d->classes) * smooth;
}

#endif
