/* 2-D max/average pooling and global average pooling on NHWC. Forward parallelizes over output rows. Backward
 * scatters into overlapping windows, so each task owns a block of channels of one image: no two tasks write the
 * same dx element and no atomics are needed. */
#include "kernels/cpu/cpu_kernels.h"

#include <math.h>

#include "kernels/ops/pool.h"

/* 16 floats: one cache line of a pixel, so tasks rarely share the lines they write. */
#define CHANNEL_BLOCK 16

static int block_count(int c) { return (c + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK; }

static int block_width(int c, int block)
{
    int left = c - block * CHANNEL_BLOCK;
    return left < CHANNEL_BLOCK ? left : CHANNEL_BLOCK;
}

/* PyTorch's scan: rows then columns, a strictly greater value or a NaN takes over, so ties keep the first maximum
 * and NaN propagates. The index is h * W + w within the image, as PyTorch's indices. */
static void max_window(const kelp_pool_desc *d, const float *img, kelp_pool_window win, float *y, int32_t *argmax)
{
    for (int ch = 0; ch < d->c; ch++) {
        y[ch] = -INFINITY;
        argmax[ch] = win.h0 * d->w + win.w0;
    }
    for (int ih = win.h0; ih < win.h1; ih++)
        for (int iw = win.w0; iw < win.w1; iw++) {
            int32_t pos = ih * d->w + iw;
            const float *px = img + (int64_t)pos * d->c;
            for (int ch = 0; ch < d->c; ch++)
                if (px[ch] > y[ch] || isnan(px[ch])) {
                    y[ch] = px[ch];
                    argmax[ch] = pos;
                }
        }
}

static void avg_window(const kelp_pool_desc *d, const float *img, kelp_pool_window win, float *y)
{
    for (int ch = 0; ch < d->c; ch++)
        y[ch] = 0.0f;
    for (int ih = win.h0; ih < win.h1; ih++)
        for (int iw = win.w0; iw < win.w1; iw++) {
            const float *px = img + ((int64_t)ih * d->w + iw) * d->c;
            for (int ch = 0; ch < d->c; ch++)
                y[ch] += px[ch];
        }
    for (int ch = 0; ch < d->c; ch++)
        y[ch] /= (float)win.divisor;
}

// x (N,H,W,C) -> y (N,OH,OW,C), argmax (N,OH,OW,C) for max pooling
void kelp_cpu_pool2d_forward(int threads, const kelp_pool_desc *d, const float *x, float *y, int32_t *argmax)
{
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int oh = 0; oh < d->oh; oh++) {
            const float *img = x + (int64_t)n * d->h * d->w * d->c;
            for (int ow = 0; ow < d->ow; ow++) {
                int64_t out = (((int64_t)n * d->oh + oh) * d->ow + ow) * d->c;
                kelp_pool_window win = kelp_pool_window_at(d, oh, ow);
                if (d->kind == KELP_POOL_MAX)
                    max_window(d, img, win, y + out, argmax + out);
                else
                    avg_window(d, img, win, y + out);
            }
        }
}

static void max_backward_block(const kelp_pool_desc *d, int c0, int nc, const float *dy, const int32_t *argmax,
                               float *dx_img)
{
    for (int64_t p = 0; p < (int64_t)d->oh * d->ow; p++)
        for (int j = 0; j < nc; j++) {
            int64_t i = p * d->c + c0 + j;
            dx_img[(int64_t)argmax[i] * d->c + c0 + j] += dy[i];
        }
}

static void avg_backward_block(const kelp_pool_desc *d, int c0, int nc, const float *dy, float *dx_img)
{
    for (int oh = 0; oh < d->oh; oh++)
        for (int ow = 0; ow < d->ow; ow++) {
            kelp_pool_window win = kelp_pool_window_at(d, oh, ow);
            const float *g = dy + ((int64_t)oh * d->ow + ow) * d->c + c0;
            for (int ih = win.h0; ih < win.h1; ih++)
                for (int iw = win.w0; iw < win.w1; iw++) {
                    float *px = dx_img + ((int64_t)ih * d->w + iw) * d->c + c0;
                    for (int j = 0; j < nc; j++)
                        px[j] += g[j] / (float)win.divisor;
                }
        }
}

// dy (N,OH,OW,C), argmax (N,OH,OW,C) for max pooling -> dx (N,H,W,C) accumulated
void kelp_cpu_pool2d_backward(int threads, const kelp_pool_desc *d, const float *dy, const int32_t *argmax,
                              float *dx)
{
    int blocks = block_count(d->c);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int b = 0; b < blocks; b++) {
            int64_t out = (int64_t)n * d->oh * d->ow * d->c;
            float *dx_img = dx + (int64_t)n * d->h * d->w * d->c;
            if (d->kind == KELP_POOL_MAX)
                max_backward_block(d, b * CHANNEL_BLOCK, block_width(d->c, b), dy + out, argmax + out, dx_img);
            else
                avg_backward_block(d, b * CHANNEL_BLOCK, block_width(d->c, b), dy + out, dx_img);
        }
}

// x (N,HW,C) -> y (N,C)
void kelp_cpu_global_avg_pool_forward(int threads, int n, int hw, int c, const float *x, float *y)
{
    int blocks = block_count(c);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int i = 0; i < n; i++)
        for (int b = 0; b < blocks; b++) {
            int c0 = b * CHANNEL_BLOCK, nc = block_width(c, b);
            const float *img = x + (int64_t)i * hw * c + c0;
            double sum[CHANNEL_BLOCK] = {0};
            for (int64_t p = 0; p < hw; p++)
                for (int j = 0; j < nc; j++)
                    sum[j] += img[p * c + j];
            for (int j = 0; j < nc; j++)
                y[(int64_t)i * c + c0 + j] = (float)(sum[j] / hw);
        }
}

// dy (N,C) -> dx (N,HW,C) accumulated
void kelp_cpu_global_avg_pool_backward(int threads, int n, int hw, int c, const float *dy, float *dx)
{
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int i = 0; i < n; i++)
        for (int p = 0; p < hw; p++) {
            const float *g = dy + (int64_t)i * c;
            float *px = dx + ((int64_t)i * hw + p) * c;
            for (int ch = 0; ch < c; ch++)
                px[ch] += g[ch] / (float)hw;
        }
}
