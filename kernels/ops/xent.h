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

/* sum_k w[k], in class order and in float: the backward's w_sum (K for no class weights). */
KELP_HD float kelp_xent_weight_sum(const float *class_weights, int classes)
{
    float s = 0.0f;
    for (int k = 0; k < classes; k++)
        s += kelp_xent_class_weight(class_weights, k);
    return s;
}

/* The mean loss from the sums over the counted rows of w[y] * -logp[y] (nll), of sum_k w[k] * -logp[k] (smooth)
 * and of w[y] (weight), in double. When every row is ignored PyTorch returns NaN (0/0); kelp returns 0, so a crop
 * made only of ignored pixels does not poison the weights (its gradient is zero too: no row is counted). */
KELP_HD float kelp_xent_loss(const kelp_xent_desc *d, double nll, double smooth, double weight)
{
    double eps = d->label_smoothing;
    return weight > 0.0 ? (float)(((1.0 - eps) * nll + eps / (double)d->classes * smooth) / weight) : 0.0f;
}

/* The factor of every counted row's gradient: dloss over the forward's norm (the summed weight, as a float). norm
 * is 0 only when every row is ignored, and then no row reaches the result. */
KELP_HD float kelp_xent_grad_scale(float dloss, float norm) { return dloss / norm; }

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
