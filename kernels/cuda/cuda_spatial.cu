/* Pooling, global average pooling and upsampling on NHWC, one thread per output element (channels fastest, so a
 * warp reads and writes consecutive addresses). Backward passes are gathers, as on the CPU: each thread owns one dx
 * element and adds, in increasing output order, exactly what the CPU's loops add to it, so no atomics are needed
 * and the result does not depend on scheduling. Activations are in the descriptor's (or the call's) storage type:
 * loaded to float, summed and weighted in float (global average pooling in double), stored once (cuda_dtype.h).
 *
 * Pooling is custom rather than cuDNN: kelp's max pooling saves PyTorch's argmax (and the graph stores it), follows
 * PyTorch's NaN and tie rules and its ceil-mode windows (kernels/ops/pool.h); cuDNN does none of these. */
#include <math.h>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/ops/pool.h"
#include "kernels/ops/upsample.h"

/* ---- 2-D pooling ---- */

// x (N,H,W,C) -> y (N,OH,OW,C), argmax (flat h*W+w within the image) for max pooling
template <typename T> __global__ void pool_forward_kernel(kelp_pool_desc d, const T *x, T *y, int32_t *argmax)
{
    const int64_t total = (int64_t)d.n * d.oh * d.ow * d.c;
    GRID_STRIDE(i, total)
    {
        int ch = (int)(i % d.c);
        int64_t pixel = i / d.c;
        int ow = (int)(pixel % d.ow), oh = (int)(pixel / d.ow % d.oh), n = (int)(pixel / ((int64_t)d.ow * d.oh));
        const T *img = x + (int64_t)n * d.h * d.w * d.c + ch;
        kelp_pool_window win = kelp_pool_window_at(&d, oh, ow);
        if (d.kind == KELP_POOL_MAX) {
            /* PyTorch's scan: a strictly greater value or a NaN takes over */
            float best = -INFINITY;
            int32_t arg = win.h0 * d.w + win.w0;
            for (int ih = win.h0; ih < win.h1; ih++)
                for (int iw = win.w0; iw < win.w1; iw++) {
                    int32_t pos = ih * d.w + iw;
                    float v = load(img, (int64_t)pos * d.c);
                    if (v > best || v != v) {
                        best = v;
                        arg = pos;
                    }
                }
            store(y, i, best);
            argmax[i] = arg;
        } else {
            float sum = 0.0f;
            for (int ih = win.h0; ih < win.h1; ih++)
                for (int iw = win.w0; iw < win.w1; iw++)
                    sum += load(img, ((int64_t)ih * d.w + iw) * d.c);
            store(y, i, sum / (float)win.divisor);
        }
    }
}

// dy, argmax (N,OH,OW,C) -> dx (N,H,W,C) +=
template <typename T>
__global__ void pool_backward_kernel(kelp_pool_desc d, const T *dy, const int32_t *argmax, T *dx)
{
    const int64_t total = (int64_t)d.n * d.h * d.w * d.c;
    GRID_STRIDE(i, total)
    {
        int ch = (int)(i % d.c);
        int64_t pixel = i / d.c;
        int iw = (int)(pixel % d.w), ih = (int)(pixel / d.w % d.h), n = (int)(pixel / ((int64_t)d.w * d.h));
        int oh0, oh1, ow0, ow1;
        kelp_pool_covering_outputs(ih, d.r, d.stride_h, d.pad_h, d.oh, &oh0, &oh1);
        kelp_pool_covering_outputs(iw, d.s, d.stride_w, d.pad_w, d.ow, &ow0, &ow1);
        const int64_t out_base = (int64_t)n * d.oh * d.ow * d.c + ch;
        const int32_t pos = ih * d.w + iw;
        float v = load(dx, i);
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                int64_t o = out_base + ((int64_t)oh * d.ow + ow) * d.c;
                if (d.kind == KELP_POOL_MAX) {
                    if (argmax[o] == pos)
                        v += load(dy, o);
                    continue;
                }
                kelp_pool_window win = kelp_pool_window_at(&d, oh, ow);
                if (ih >= win.h0 && ih < win.h1 && iw >= win.w0 && iw < win.w1)
                    v += load(dy, o) / (float)win.divisor;
            }
        store(dx, i, v);
    }
}

kelp_status cuda_pool2d_forward(kelp_backend *be, const kelp_pool_desc *d, const void *x, void *y, int32_t *argmax)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    int64_t total = (int64_t)d->n * d->oh * d->ow * d->c;
    if (total <= 0)
        return KELP_OK;
    return cuda_dispatch(d->dtype, "pool2d_forward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        pool_forward_kernel<<<cuda_grid(total), CUDA_THREADS, 0, c->stream>>>(*d, (const T *)x, (T *)y, argmax);
        KELP_CUDA_LAUNCHED(pool_forward_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_pool2d_backward(kelp_backend *be, const kelp_pool_desc *d, const void *dy, const int32_t *argmax,
                                 void *dx)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    int64_t total = (int64_t)d->n * d->h * d->w * d->c;
    if (total <= 0 || d->oh <= 0 || d->ow <= 0)
        return KELP_OK;
    return cuda_dispatch(d->dtype, "pool2d_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        pool_backward_kernel<<<cuda_grid(total), CUDA_THREADS, 0, c->stream>>>(*d, (const T *)dy, argmax, (T *)dx);
        KELP_CUDA_LAUNCHED(pool_backward_kernel);
        return KELP_OK;
    });
}

/* ---- global average pooling: x (N,HW,C) -> y (N,C), summed in double like the CPU ---- */
#define GAP_TX 32
#define GAP_TY 8

template <typename T> __global__ void gap_forward_kernel(int hw, int c, const T *x, T *y)
{
    __shared__ double partial[GAP_TY][GAP_TX];
    const int tx = threadIdx.x, ty = threadIdx.y, ch = blockIdx.x * GAP_TX + tx, n = blockIdx.y;
    double acc = 0.0;
    if (ch < c)
        for (int64_t p = ty; p < hw; p += GAP_TY)
            acc += load(x, ((int64_t)n * hw + p) * c + ch);
    partial[ty][tx] = acc;
    __syncthreads();
    if (ty != 0 || ch >= c)
        return;
    double sum = 0.0;
    for (int k = 0; k < GAP_TY; k++)
        sum += partial[k][tx];
    store(y, (int64_t)n * c + ch, (float)(sum / hw));
}

// dy (N,C) -> dx (N,HW,C) +=
template <typename T> __global__ void gap_backward_kernel(int64_t total, int hw, int c, const T *dy, T *dx)
{
    GRID_STRIDE(i, total)
    {
        int64_t ch = i % c, n = i / c / hw;
        store(dx, i, load(dx, i) + load(dy, n * c + ch) / (float)hw);
    }
}

kelp_status cuda_global_avg_pool_forward(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *x,
                                         void *y)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (n <= 0 || c <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "global_avg_pool_forward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        /* images go in gridDim.y, which holds at most 65535: larger batches are launched in slices */
        for (int first = 0; first < n; first += 65535) {
            int count = n - first < 65535 ? n - first : 65535;
            dim3 grid((unsigned)((c + GAP_TX - 1) / GAP_TX), (unsigned)count), block(GAP_TX, GAP_TY);
            gap_forward_kernel<<<grid, block, 0, ci->stream>>>(hw, c, (const T *)x + (int64_t)first * hw * c,
                                                               (T *)y + (int64_t)first * c);
            KELP_CUDA_LAUNCHED(gap_forward_kernel);
        }
        return KELP_OK;
    });
}

kelp_status cuda_global_avg_pool_backward(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *dy,
                                          void *dx)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    int64_t total = (int64_t)n * hw * c;
    if (total <= 0)
        return KELP_OK;
    return cuda_dispatch(dt, "global_avg_pool_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        gap_backward_kernel<<<cuda_grid(total), CUDA_THREADS, 0, ci->stream>>>(total, hw, c, (const T *)dy, (T *)dx);
        KELP_CUDA_LAUNCHED(gap_backward_kernel);
        return KELP_OK;
    });
}

/* ---- upsampling ---- */

// x (N,H,W,C) -> y (N,OH,OW,C)
template <typename T> __global__ void upsample_forward_kernel(kelp_upsample_desc d, const T *x, T *y)
{
    const int64_t total = (int64_t)d.n * d.oh * d.ow * d.c;
    GRID_STRIDE(i, total)
    {
        int ch = (int)(i % d.c);
        int64_t pixel = i / d.c;
        int ow = (int)(pixel % d.ow), oh = (int)(pixel / d.ow % d.oh), n = (int)(pixel / ((int64_t)d.ow * d.oh));
        const T *img = x + (int64_t)n * d.h * d.w * d.c + ch;
        if (d.kind == KELP_UPSAMPLE_NEAREST) {
            int ih = kelp_upsample_nearest_src(oh, d.scale_h, d.h, d.oh);
            int iw = kelp_upsample_nearest_src(ow, d.scale_w, d.w, d.ow);
            y[i] = img[((int64_t)ih * d.w + iw) * d.c]; /* a copy: no rounding */
            continue;
        }
        kelp_linear_taps th = kelp_upsample_linear_taps(oh, d.scale_h, d.h, d.oh);
        kelp_linear_taps tw = kelp_upsample_linear_taps(ow, d.scale_w, d.w, d.ow);
        float x00 = load(img, ((int64_t)th.i0 * d.w + tw.i0) * d.c);
        float x01 = load(img, ((int64_t)th.i0 * d.w + tw.i1) * d.c);
        float x10 = load(img, ((int64_t)th.i1 * d.w + tw.i0) * d.c);
        float x11 = load(img, ((int64_t)th.i1 * d.w + tw.i1) * d.c);
        store(y, i, th.l0 * (tw.l0 * x00 + tw.l1 * x01) + th.l1 * (tw.l0 * x10 + tw.l1 * x11));
    }
}

// dy (N,OH,OW,C) -> dx (N,H,W,C) +=; the CPU's scatter_row additions, gathered per dx element in the same order
template <typename T> __global__ void upsample_backward_kernel(kelp_upsample_desc d, const T *dy, T *dx)
{
    const int64_t total = (int64_t)d.n * d.h * d.w * d.c;
    GRID_STRIDE(i, total)
    {
        int ch = (int)(i % d.c);
        int64_t pixel = i / d.c;
        int iw = (int)(pixel % d.w), ih = (int)(pixel / d.w % d.h), n = (int)(pixel / ((int64_t)d.w * d.h));
        int oh0, oh1, ow0, ow1;
        kelp_upsample_readers(d.kind, ih, d.scale_h, d.h, d.oh, &oh0, &oh1);
        kelp_upsample_readers(d.kind, iw, d.scale_w, d.w, d.ow, &ow0, &ow1);
        float v = load(dx, i);
        for (int oh = oh0; oh <= oh1; oh++) {
            float weight;
            if (!kelp_upsample_row_weight(&d, oh, ih, &weight))
                continue;
            const T *row = dy + ((int64_t)n * d.oh + oh) * d.ow * d.c + ch;
            for (int ow = ow0; ow <= ow1; ow++) {
                float g = load(row, (int64_t)ow * d.c);
                if (d.kind == KELP_UPSAMPLE_NEAREST) {
                    if (kelp_upsample_nearest_src(ow, d.scale_w, d.w, d.ow) == iw)
                        v += weight * g;
                    continue;
                }
                kelp_linear_taps tw = kelp_upsample_linear_taps(ow, d.scale_w, d.w, d.ow);
                float wg = weight * g;
                if (tw.i0 == iw)
                    v += tw.l0 * wg;
                if (tw.i1 == iw)
                    v += tw.l1 * wg;
            }
        }
        store(dx, i, v);
    }
}

kelp_status cuda_upsample_forward(kelp_backend *be, const kelp_upsample_desc *d, const void *x, void *y)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    int64_t total = (int64_t)d->n * d->oh * d->ow * d->c;
    if (total <= 0)
        return KELP_OK;
    return cuda_dispatch(d->dtype, "upsample_forward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        upsample_forward_kernel<<<cuda_grid(total), CUDA_THREADS, 0, c->stream>>>(*d, (const T *)x, (T *)y);
        KELP_CUDA_LAUNCHED(upsample_forward_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_upsample_backward(kelp_backend *be, const kelp_upsample_desc *d, const void *dy, void *dx)
{
    cuda_impl *c;
    KELP_TRY(cuda_enter(be, &c));
    int64_t total = (int64_t)d->n * d->h * d->w * d->c;
    if (total <= 0 || d->oh <= 0 || d->ow <= 0)
        return KELP_OK;
    return cuda_dispatch(d->dtype, "upsample_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        upsample_backward_kernel<<<cuda_grid(total), CUDA_THREADS, 0, c->stream>>>(*d, (const T *)dy, (T *)dx);
        KELP_CUDA_LAUNCHED(upsample_backward_kernel);
        return KELP_OK;
    });
}
