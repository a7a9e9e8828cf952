/* Per-element activations and their derivatives, shared by the CPU and CUDA kernels. Backward functions take the
 * input x and the output y so that each uses whichever is cheaper. */
#ifndef KELP_OPS_ACTIVATION_H
#define KELP_OPS_ACTIVATION_H

#include <math.h>

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

KELP_HD float kelp_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

KELP_HD float kelp_act_forward(kelp_act_kind kind, float alpha, float x)
{
    switch (kind) {
    /* comparisons written so that NaN propagates, as in PyTorch (torch.relu(nan) is nan) */
    case KELP_ACT_RELU: return x <= 0.0f ? 0.0f : x;
    case KELP_ACT_LEAKY_RELU: return x > 0.0f ? x : alpha * x;
    case KELP_ACT_SILU: return x * kelp_sigmoidf(x);
    case KELP_ACT_SIGMOID: return kelp_sigmoidf(x);
    case KELP_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case KELP_ACT_RELU6: return x < 0.0f ? 0.0f : x > 6.0f ? 6.0f : x;
    }
    return x;
}

/* d act / d x at input x with output y */
KELP_HD float kelp_act_derivative(kelp_act_kind kind, float alpha, float x, float y)
{
    switch (kind) {
    /* PyTorch's threshold_backward: the gradient passes unless x <= 0, so it passes at NaN */
    case KELP_ACT_RELU: return x <= 0.0f ? 0.0f : 1.0f;
    case KELP_ACT_LEAKY_RELU: return x > 0.0f ? 1.0f : alpha;
    case KELP_ACT_SILU: {
        float s = kelp_sigmoidf(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case KELP_ACT_SIGMOID: return y * (1.0f - y);
    case KELP_ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
        return cdf + x * pdf;
    }
    /* PyTorch's hardtanh backward: no gradient at either kink, and NaN passes the gradient through */
    case KELP_ACT_RELU6: return x <= 0.0f || x >= 6.0f ? 0.0f : 1.0f;
    }
    return 1.0f;
}

/* What backward adds to dx: dy times the derivative, except that where ReLU and ReLU6 pass no gradient they add
 * 0 whatever dy holds (an infinite or NaN dy included), as PyTorch's threshold_backward and hardtanh_backward
 * select rather than multiply. */
KELP_HD float kelp_act_grad(kelp_act_kind kind, float alpha, float x, float y, float dy)
{
    switch (kind) {
    case KELP_ACT_RELU: return x <= 0.0f ? 0.0f : dy;
    case KELP_ACT_RELU6: return x <= 0.0f || x >= 6.0f ? 0.0f : dy;
    default: return dy * kelp_act_derivative(kind, alpha, x, y);
    }
}

#endif
