/* Batch norm per-channel and per-element math, shared by the CPU and CUDA kernels. Statistics arrive in double
 * (PyTorch's CPU accumulation type for float); the output is y = (x - mean) * scale + shift with
 * scale = gamma * invstd, shift = beta: centring first keeps float accuracy when the mean is large. */
#ifndef KELP_OPS_BATCHNORM_H
#define KELP_OPS_BATCHNORM_H

#include <math.h>
#include <stdint.h>

#include "kernels/ops/hd.h"

KELP_HD double kelp_bn_invstd(double biased_var, float eps) { return 1.0 / sqrt(biased_var + (double)eps); }

/* PyTorch's running estimate: the unbiased variance (Bessel's correction) enters running_var. rows >= 2. */
KELP_HD float kelp_bn_running_mean(float running, double batch_mean, float momentum)
{
    return (float)((1.0 - momentum) * running + momentum * batch_mean);
}

KELP_HD float kelp_bn_running_var(float running, double biased_var, int64_t rows, float momentum)
{
    double unbiased = biased_var * (double)rows / (double)(rows - 1);
    return (float)((1.0 - momentum) * running + momentum * unbiased);
}

KELP_HD float kelp_bn_apply(float x, float mean, float scale, float shift) { return (x - mean) * scale + shift; }

/* dx of the training-mode normalization: k = gamma * invstd, xmu = x - mean, mean_dy = sum(dy) / rows,
 * proj = sum(dy * xmu) * invstd^2 / rows. */
KELP_HD float kelp_bn_dx(float dy, float xmu, float k, float mean_dy, float proj)
{
    return k * (dy - mean_dy - xmu * proj);
}

#endif
