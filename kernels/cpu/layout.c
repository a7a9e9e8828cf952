/* Layout kernels: channel slices (concat) and the NHWC <-> NCHW permutation behind PyTorch-ordered flatten. */
#include "kernels/cpu/cpu_kernels.h"

#include <string.h>

/* Below this many elements a thread team costs more than the loop. */
#define PARALLEL_MIN 16384

// src (rows, src_stride)[:, :cols] -> dst (rows, dst_stride)[:, :cols]
void kelp_cpu_copy_rows(int threads, int64_t rows, int cols, const float *src, int src_stride, float *dst,
                        int dst_stride, bool accumulate)
{
#pragma omp parallel for num_threads(threads) if (rows * cols >= PARALLEL_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *s = src + r * src_stride;
        float *d = dst + r * dst_stride;
        if (accumulate) {
            for (int j = 0; j < cols; j++)
                d[j] += s[j];
        } else {
            memcpy(d, s, (size_t)cols * sizeof(float));
        }
    }
}

// x (N,H,W,C) -> y (N,C,H,W)
void kelp_cpu_nhwc_to_nchw(int threads, int n, int h, int w, int c, const float *x, float *y)
{
    int64_t hw = (int64_t)h * w;
    int64_t planes = (int64_t)n * c;
#pragma omp parallel for num_threads(threads) if (planes * hw >= PARALLEL_MIN) schedule(static)
    for (int64_t plane = 0; plane < planes; plane++) {
        int64_t b = plane / c, ch = plane % c;
        const float *src = x + b * hw * c + ch;
        float *dst = y + plane * hw;
        for (int64_t p = 0; p < hw; p++)
            dst[p] = src[p * c];
    }
}

// x (N,C,H,W) -> y (N,H,W,C) +=
void kelp_cpu_nchw_to_nhwc_accumulate(int threads, int n, int h, int w, int c, const float *x, float *y)
{
    int64_t hw = (int64_t)h * w;
    int64_t pixels = (int64_t)n * hw;
#pragma omp parallel for num_threads(threads) if (pixels * c >= PARALLEL_MIN) schedule(static)
    for (int64_t pixel = 0; pixel < pixels; pixel++) {
        int64_t b = pixel / hw, p = pixel % hw;
        const float *src = x + b * c * hw + p;
        float *dst = y + pixel * c;
        for (int ch = 0; ch < c; ch++)
            dst[ch] += src[(int64_t)ch * hw];
    }
}
