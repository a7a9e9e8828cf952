/* Nearest and bilinear (align_corners=False) upsampling on NHWC with PyTorch's coordinate maps (kernels/ops).
 * Forward gathers per output row. Backward is written as a gather too: each task owns one input row and collects
 * every output row that reads it (kelp_upsample_readers, the CUDA backward's search), in increasing order, so
 * overlapping bilinear taps never race and no atomics are needed. */
#include "kernels/cpu/cpu_kernels.h"

#include <string.h>

#include "kernels/ops/upsample.h"

static void nearest_row(const kelp_upsample_desc *d, const float *x_row, float *y_row)
{
    for (int ow = 0; ow < d->ow; ow++) {
        int iw = kelp_upsample_nearest_src(ow, d->scale_w, d->w, d->ow);
        memcpy(y_row + (int64_t)ow * d->c, x_row + (int64_t)iw * d->c, (size_t)d->c * sizeof(float));
    }
}

static void bilinear_row(const kelp_upsample_desc *d, kelp_linear_taps th, const float *x_img, float *y_row)
{
    const float *r0 = x_img + (int64_t)th.i0 * d->w * d->c;
    const float *r1 = x_img + (int64_t)th.i1 * d->w * d->c;
    for (int ow = 0; ow < d->ow; ow++) {
        kelp_linear_taps tw = kelp_upsample_linear_taps(ow, d->scale_w, d->w, d->ow);
        const float *x00 = r0 + (int64_t)tw.i0 * d->c, *x01 = r0 + (int64_t)tw.i1 * d->c;
        const float *x10 = r1 + (int64_t)tw.i0 * d->c, *x11 = r1 + (int64_t)tw.i1 * d->c;
        float *y = y_row + (int64_t)ow * d->c;
        for (int ch = 0; ch < d->c; ch++)
            y[ch] = th.l0 * (tw.l0 * x00[ch] + tw.l1 * x01[ch]) + th.l1 * (tw.l0 * x10[ch] + tw.l1 * x11[ch]);
    }
}

// x (N,H,W,C) -> y (N,OH,OW,C)
void kelp_cpu_upsample_forward(int threads, const kelp_upsample_desc *d, const float *x, float *y)
{
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int oh = 0; oh < d->oh; oh++) {
            const float *x_img = x + (int64_t)n * d->h * d->w * d->c;
            float *y_row = y + ((int64_t)n * d->oh + oh) * d->ow * d->c;
            if (d->kind == KELP_UPSAMPLE_NEAREST) {
                int ih = kelp_upsample_nearest_src(oh, d->scale_h, d->h, d->oh);
                nearest_row(d, x_img + (int64_t)ih * d->w * d->c, y_row);
            } else {
                bilinear_row(d, kelp_upsample_linear_taps(oh, d->scale_h, d->h, d->oh), x_img, y_row);
            }
        }
}

/* dx_row += weight * (the transpose of one output row's horizontal map applied to dy_row) */
static void scatter_row(const kelp_upsample_desc *d, float weight, const float *dy_row, float *dx_row)
{
    for (int ow = 0; ow < d->ow; ow++) {
        const float *g = dy_row + (int64_t)ow * d->c;
        if (d->kind == KELP_UPSAMPLE_NEAREST) {
            float *px = dx_row + (int64_t)kelp_upsample_nearest_src(ow, d->scale_w, d->w, d->ow) * d->c;
            for (int ch = 0; ch < d->c; ch++)
                px[ch] += weight * g[ch];
            continue;
        }
        kelp_linear_taps tw = kelp_upsample_linear_taps(ow, d->scale_w, d->w, d->ow);
        float *p0 = dx_row + (int64_t)tw.i0 * d->c, *p1 = dx_row + (int64_t)tw.i1 * d->c;
        for (int ch = 0; ch < d->c; ch++) {
            float wg = weight * g[ch];
            p0[ch] += tw.l0 * wg;
            p1[ch] += tw.l1 * wg;
        }
    }
}

// dy (N,OH,OW,C) -> dx (N,H,W,C) accumulated
void kelp_cpu_upsample_backward(int threads, const kelp_upsample_desc *d, const float *dy, float *dx)
{
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int ih = 0; ih < d->h; ih++) {
            float *dx_row = dx + ((int64_t)n * d->h + ih) * d->w * d->c;
            int oh0, oh1;
            kelp_upsample_readers(d->kind, ih, d->scale_h, d->h, d->oh, &oh0, &oh1);
            for (int oh = oh0; oh <= oh1; oh++) {
                float weight;
                if (kelp_upsample_row_weight(d, oh, ih, &weight))
                    scatter_row(d, weight, dy + ((int64_t)n * d->oh + oh) * d->ow * d->c, dx_row);
            }
        }
}
