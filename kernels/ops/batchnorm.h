/* Batch norm per-channel and per-element math, shared by the CPU and CUDA kernels. Statistics arrive in double
 * (PyTorch's CPU accumulation type for float); the output is y = (x - mean) * scale + shift with
 * scale = gamma * invstd, shift = beta: centring first keeps float accuracy when the mean is large. */
#ifndef KELP_OPS_BATCHNORM_H
#define KELP_OPS_BATCHNORM_H

#include <math.h>
#include <stdint.h>

#include "kernels/ops/hd.h"

/* A channel's batch mean and biased variance from its sums over the rows: sum(x) and sum((x - mean)^2), the second
 * taken around the first (two passes, PyTorch's CPU order). rows >= 1. */
KELP_HD double kelp_bn_mean(double sum, int64_t rows) { return sum / (double)rows; }

KELP_HD double kelp_bn_biased_var(double centred_sq_sum, int64_t rows) { return centred_sq_sum / (double)rows; }

KELP_HD double kelp_bn_invstd(double biased_var, float eps) { return 1.0 / sqrt(biased_var + (double)eps); }

/* The float multiplier of the normalized value, y = (x - mean) * scale + beta; also the backward's dx / dy factor. */
KELP_HD float kelp_bn_scale(float gamma, double invstd) { return (float)(gamma * invstd); }

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

/* One channel of the training forward, from the batch mean and biased variance: the statistics saved for the
 * backward, the running statistics updated in place, and the scale for kelp_bn_apply (whose mean is *save_mean). */
KELP_HD void kelp_bn_train_channel(double mean, double biased_var, int64_t rows, float gamma, float momentum,
                                   float eps, float *running_mean, float *running_var, float *save_mean,
                                   float *save_invstd, float *scale)
{
    double invstd = kelp_bn_invstd(biased_var, eps);
    *save_mean = (float)mean;
    *save_invstd = (float)invstd;
    *running_mean = kelp_bn_running_mean(*running_mean, mean, momentum);
    *running_var = kelp_bn_running_var(*running_var, biased_var, rows, momentum);
    *scale = kelp_bn_scale(gamma, invstd);
}

KELP_HD float kelp_bn_apply(float x, float mean, float scale, float shift) { return (x - mean) * scale + shift; }

/* Inference fusion: one channel of a batch norm as y = sum * scale + shift on a convolution's sum, whose own bias
 * (0 when it has none) the shift absorbs. The scale is batchnorm_forward_infer's to the bit. */
KELP_HD void kelp_bn_fold(float gamma, float beta, float running_mean, float running_var, float eps, double conv_bias,
                          float *scale, float *shift)
{
    *scale = kelp_bn_scale(gamma, kelp_bn_invstd(running_var, eps));
    *shift = (float)((double)beta + (conv_bias - running_mean) * *scale);
}

/* A channel's parameter gradients from sum(dy) and sum(dy * (x - mean)), before they are added: dgamma is the second
 * times invstd, dbeta the first. The same in training and through the running statistics (only mean and invstd
 * differ). */
KELP_HD float kelp_bn_dgamma(double sum_dy_xmu, double invstd) { return (float)(sum_dy_xmu * invstd); }

KELP_HD float kelp_bn_dbeta(double sum_dy) { return (float)sum_dy; }

/* The per-channel factors of kelp_bn_dx in training mode; invstd is the saved float widened to double. */
typedef struct kelp_bn_dx_factors {
    float k, mean_dy, proj;
} kelp_bn_dx_factors;

KELP_HD kelp_bn_dx_factors kelp_bn_backward_factors(double sum_dy, double sum_dy_xmu, float gamma, double invstd,
                                                    int64_t rows)
{
    kelp_bn_dx_factors f;
    f.k = kelp_bn_scale(gamma, invstd);
    f.mean_dy = (float)(sum_dy / (double)rows);
    f.proj = (float)(sum_dy_xmu * invstd * invstd / (double)rows);
    return f;
}

/* dx of the training-mode normalization: k = gamma * invstd, xmu = x - mean, mean_dy = sum(dy) / rows,
 * proj = sum(dy * xmu) * invstd^2 / rows. */
KELP_HD float kelp_bn_dx(float dy, float xmu, float k, float mean_dy, float proj)
{
    return k * (dy - mean_dy - xmu * proj);
}

#endif
