/* 2-D max/average pooling and global average pooling on NHWC. Forward parallelizes over output rows. Max pooling's
 * backward gathers, so each task owns rows of dx; average pooling's backward scatters into overlapping windows, so
 * each task owns a block of channels of one image. Either way no two tasks write the same dx element and no atomics
 * are needed. */
#include "kernels/cpu/cpu_kernels.h"

#include <math.h>

#include "kernels/cpu/simd.h"
#include "kernels/ops/pool.h"

/* 16 floats: one cache line of a pixel, so tasks rarely share the lines they write. */
#define CHANNEL_BLOCK 16

static int block_count(int c) { return (c + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK; }

static int block_width(int c, int block)
{
    int left = c - block * CHANNEL_BLOCK;
    return left < CHANNEL_BLOCK ? left : CHANNEL_BLOCK;
}

/* Max pooling, vectorized over the channels (innermost in NHWC): for each tap of the window, one loop over the C
 * channels of the pixel compares and blends without branches, which the compiler vectorizes (AVX-512, AVX2 and SSE
 * clones, simd.h). Loops whose trip count is C, rather than fixed blocks of 16 with a scalar tail, let it pick the
 * vector width of each clone and handle any C.
 *
 * PyTorch's scan: rows then columns, a strictly greater value or a NaN takes over, so ties keep the first maximum
 * and NaN propagates (the last NaN of the window wins, as in PyTorch). The index is h * W + w within the image, as
 * PyTorch's indices. One output row (oh) of one image: img (H,W,C) -> y, argmax (OW,C). */
KELP_VECTOR_CLONES
static void max_row(const kelp_pool_desc *d, const float *restrict img, int oh, float *restrict y,
                    int32_t *restrict argmax)
{
    const int c = d->c;
    for (int ow = 0; ow < d->ow; ow++, y += c, argmax += c) {
        const kelp_pool_window win = kelp_pool_window_at(d, oh, ow);
        const int32_t first = win.h0 * d->w + win.w0;
        for (int ch = 0; ch < c; ch++) {
            y[ch] = -INFINITY;
            argmax[ch] = first;
        }
        for (int ih = win.h0; ih < win.h1; ih++)
            for (int iw = win.w0; iw < win.w1; iw++) {
                const int32_t pos = ih * d->w + iw;
                const float *px = img + (int64_t)pos * c;
                for (int ch = 0; ch < c; ch++) {
                    const float v = px[ch], best = y[ch];
                    const int take = (v > best) | (v != v);
                    y[ch] = take ? v : best;
                    argmax[ch] = take ? pos : argmax[ch];
                }
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
            int64_t row = ((int64_t)n * d->oh + oh) * d->ow * d->c;
            if (d->kind == KELP_POOL_MAX) {
                max_row(d, img, oh, y + row, argmax + row);
                continue;
            }
            for (int ow = 0; ow < d->ow; ow++)
                avg_window(d, img, kelp_pool_window_at(d, oh, ow), y + row + (int64_t)ow * d->c);
        }
}

/* Max pooling's backward as a gather: each input pixel adds dy of the outputs whose window covers it and whose
 * argmax is that pixel, in increasing output order: the same additions in the same order as scattering the outputs
 * one by one, so the same result, but each task owns its rows of dx and the loops over C vectorize. One input row
 * (ih) of one image: dy, argmax (OH,OW,C) -> dx_img (H,W,C) accumulated. */
KELP_VECTOR_CLONES
static void max_backward_row(const kelp_pool_desc *d, const float *restrict dy, const int32_t *restrict argmax, int ih,
                             float *restrict dx_img)
{
    const int c = d->c;
    int oh0, oh1;
    kelp_pool_covering_outputs(ih, d->r, d->stride_h, d->pad_h, d->oh, &oh0, &oh1);
    for (int iw = 0; iw < d->w; iw++) {
        const int32_t pos = ih * d->w + iw;
        float *px = dx_img + (int64_t)pos * c;
        int ow0, ow1;
        kelp_pool_covering_outputs(iw, d->s, d->stride_w, d->pad_w, d->ow, &ow0, &ow1);
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                const int64_t o = ((int64_t)oh * d->ow + ow) * c;
                const float *g = dy + o;
                const int32_t *a = argmax + o;
                for (int ch = 0; ch < c; ch++) {
                    const float old = px[ch], sum = old + g[ch];
                    px[ch] = a[ch] == pos ? sum : old;
                }
            }
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
    if (d->kind == KELP_POOL_MAX) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
        for (int n = 0; n < d->n; n++)
            for (int ih = 0; ih < d->h; ih++) {
                int64_t out = (int64_t)n * d->oh * d->ow * d->c;
                max_backward_row(d, dy + out, argmax + out, ih, dx + (int64_t)n * d->h * d->w * d->c);
            }
        return;
    }
    int blocks = block_count(d->c);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int b = 0; b < blocks; b++) {
            int64_t out = (int64_t)n * d->oh * d->ow * d->c;
            avg_backward_block(d, b * CHANNEL_BLOCK, block_width(d->c, b), dy + out,
                               dx + (int64_t)n * d->h * d->w * d->c);
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
