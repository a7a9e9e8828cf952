/* Convolution index math shared by the kernels and the layers of every backend. One spatial axis at a time:
 * output o reads input i = o*stride - pad + tap*dil for tap in [0, kernel). */
#ifndef KELP_OPS_CONV_H
#define KELP_OPS_CONV_H

#include <stdint.h>

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

/* Output size of a convolution; 0 when the dilated kernel does not fit the padded input. */
KELP_HD int64_t kelp_conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil)
{
    int64_t span = in + 2 * pad - dil * (kernel - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

/* Output size of a transposed convolution (PyTorch's ConvTranspose2d); may be < 1 for impossible fields. */
KELP_HD int64_t kelp_conv_transpose_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil,
                                             int64_t output_pad)
{
    return (in - 1) * stride - 2 * pad + dil * (kernel - 1) + output_pad + 1;
}

/* The output o whose tap `tap` reads input i, or -1 when none does: the inverse of i = o*stride - pad + tap*dil,
 * which lets backward gather into each input instead of scattering from each output (no write races). */
KELP_HD int kelp_conv_tap_source(int i, int tap, int stride, int pad, int dil, int out_size)
{
    int span = i + pad - tap * dil;
    if (span < 0 || span % stride != 0)
        return -1;
    int o = span / stride;
    return o < out_size ? o : -1;
}

/* A fused inference convolution's epilogue on output channel k's sum (kelp_conv_epilogue): scale, shift, clamp,
 * with the activations' comparisons (kernels/ops/activation.h). */
KELP_HD float kelp_conv_epilogue_value(const kelp_conv_epilogue *ep, int k, float v)
{
    v = ep->scale ? v * ep->scale[k] : v;
    v = ep->shift ? v + ep->shift[k] : v;
    if (ep->clamp == KELP_CLAMP_RELU)
        return v <= 0.0f ? 0.0f : v;
    if (ep->clamp == KELP_CLAMP_RELU6)
        return v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v;
    return v;
}

#endif
