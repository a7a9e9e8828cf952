/* Upsampling coordinate maps, shared by the CPU and CUDA kernels. They reproduce PyTorch's CPU arithmetic in float
 * (aten/src/ATen/native/UpSample.h), so kelp and nn.Upsample pick the same source pixels and weights. `scale` maps
 * output to input coordinates (kelp_upsample_desc). */
#ifndef KELP_OPS_UPSAMPLE_H
#define KELP_OPS_UPSAMPLE_H

#include <math.h>

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

/* Legacy "nearest" (OpenCV's INTER_NEAREST): floor(dst * scale), clamped to the last pixel. Equal sizes copy and
 * doubled sizes take dst / 2 whatever the scale factor: PyTorch's nearest_idx, which its backward and its
 * channels-last forward use (its NCHW forward skips these two cases for outputs over 128 pixels, H + W). */
KELP_HD int kelp_upsample_nearest_src(int dst, float scale, int in_size, int out_size)
{
    if (out_size == in_size)
        return dst;
    if (out_size == 2 * in_size)
        return dst >> 1;
    int src = (int)floorf((float)dst * scale);
    return src < in_size - 1 ? src : in_size - 1;
}

/* Two taps: out = l0 * in[i0] + l1 * in[i1]. */
typedef struct kelp_linear_taps {
    int i0, i1;
    float l0, l1;
} kelp_linear_taps;

/* align_corners=False: src = (dst + 0.5) * scale - 0.5, clamped at 0; the right tap collapses onto the last pixel.
 * Equal sizes copy, whatever the scale factor, as PyTorch's compute_source_index_and_lambda does. */
KELP_HD kelp_linear_taps kelp_upsample_linear_taps(int dst, float scale, int in_size, int out_size)
{
    kelp_linear_taps t;
    if (in_size == out_size) {
        t.i0 = t.i1 = dst;
        t.l0 = 1.0f;
        t.l1 = 0.0f;
        return t;
    }
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f)
        src = 0.0f;
    int i = (int)floorf(src);
    if (i > in_size - 1)
        i = in_size - 1;
    float lambda = fminf(fmaxf(src - (float)i, 0.0f), 1.0f);
    t.i0 = i;
    t.i1 = i < in_size - 1 ? i + 1 : i;
    t.l0 = 1.0f - lambda;
    t.l1 = lambda;
    return t;
}

/* The lowest and highest input index output `dst` reads along one axis (equal for nearest). Both never decrease as
 * dst grows (float rounding is monotonic and the clamps keep order), which lets the backward find the outputs that
 * read an input by binary search instead of scanning every output. */
KELP_HD int kelp_upsample_low_src(kelp_upsample_kind kind, int dst, float scale, int in_size, int out_size)
{
    if (kind == KELP_UPSAMPLE_NEAREST)
        return kelp_upsample_nearest_src(dst, scale, in_size, out_size);
    return kelp_upsample_linear_taps(dst, scale, in_size, out_size).i0;
}

KELP_HD int kelp_upsample_high_src(kelp_upsample_kind kind, int dst, float scale, int in_size, int out_size)
{
    if (kind == KELP_UPSAMPLE_NEAREST)
        return kelp_upsample_nearest_src(dst, scale, in_size, out_size);
    return kelp_upsample_linear_taps(dst, scale, in_size, out_size).i1;
}

/* The outputs [*lo, *hi] along one axis that read input i: from the first whose highest tap reaches i to the last
 * whose lowest tap does not pass it (*lo > *hi when none does, as for inputs a downscale skips). The highest tap is
 * at most one past the lowest, so every output in the range reads i, with one tap or both; a caller that filters
 * by tap anyway loses nothing. out_size >= 1. */
KELP_HD void kelp_upsample_readers(kelp_upsample_kind kind, int i, float scale, int in_size, int out_size, int *lo,
                                   int *hi)
{
    int a = 0, b = out_size;
    while (a < b) {
        int mid = (a + b) / 2;
        if (kelp_upsample_high_src(kind, mid, scale, in_size, out_size) >= i)
            b = mid;
        else
            a = mid + 1;
    }
    *lo = a;
    a = 0;
    b = out_size;
    while (a < b) {
        int mid = (a + b) / 2;
        if (kelp_upsample_low_src(kind, mid, scale, in_size, out_size) > i)
            b = mid;
        else
            a = mid + 1;
    }
    *hi = a - 1;
}

/* The weight with which output row oh reads input row ih (0 when it does not read it), and whether it reads it
 * (the backward, gathered per input row). */
KELP_HD bool kelp_upsample_row_weight(const kelp_upsample_desc *d, int oh, int ih, float *weight)
{
    if (d->kind == KELP_UPSAMPLE_NEAREST) {
        *weight = 1.0f;
        return kelp_upsample_nearest_src(oh, d->scale_h, d->h, d->oh) == ih;
    }
    kelp_linear_taps th = kelp_upsample_linear_taps(oh, d->scale_h, d->h, d->oh);
    *weight = (th.i0 == ih ? th.l0 : 0.0f) + (th.i1 == ih ? th.l1 : 0.0f);
    return th.i0 == ih || th.i1 == ih;
}

#endif
