/* Pooling windows as PyTorch computes them, shared by the CPU and CUDA kernels. */
#ifndef KELP_OPS_POOL_H
#define KELP_OPS_POOL_H

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

/* The input rows [h0, h1) and columns [w0, w1) under output (oh, ow), and average pooling's divisor. The padded
 * window is first clipped to the padded input (that area is the divisor with count_include_pad), then to the input.
 * The descriptor's geometry (padding <= kernel/2, ceil-mode windows starting inside the input or its left padding)
 * keeps every clipped window non-empty. */
typedef struct kelp_pool_window {
    int h0, h1, w0, w1;
    int divisor;
} kelp_pool_window;

KELP_HD int kelp_pool_min(int a, int b) { return a < b ? a : b; }
KELP_HD int kelp_pool_max(int a, int b) { return a > b ? a : b; }

KELP_HD kelp_pool_window kelp_pool_window_at(const kelp_pool_desc *d, int oh, int ow)
{
    int h0 = oh * d->stride_h - d->pad_h;
    int w0 = ow * d->stride_w - d->pad_w;
    int h1 = kelp_pool_min(h0 + d->r, d->h + d->pad_h);
    int w1 = kelp_pool_min(w0 + d->s, d->w + d->pad_w);
    int padded_area = (h1 - h0) * (w1 - w0);
    kelp_pool_window win;
    win.h0 = kelp_pool_max(h0, 0);
    win.w0 = kelp_pool_max(w0, 0);
    win.h1 = kelp_pool_min(h1, d->h);
    win.w1 = kelp_pool_min(w1, d->w);
    win.divisor = d->count_include_pad ? padded_area : (win.h1 - win.h0) * (win.w1 - win.w0);
    return win;
}

/* The outputs [*lo, *hi] along one axis whose windows cover input i: the clipped window of output o spans
 * [o*stride - pad, o*stride - pad + k) within the input (max pooling's backward, gathered per input). */
KELP_HD void kelp_pool_covering_outputs(int i, int k, int stride, int pad, int out, int *lo, int *hi)
{
    int first = i + pad - k; /* windows of outputs up to first/stride end before i */
    *lo = first < 0 ? 0 : first / stride + 1;
    *hi = (i + pad) / stride;
    if (*hi > out - 1)
        *hi = out - 1;
}

#endif
