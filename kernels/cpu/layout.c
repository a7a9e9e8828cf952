/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_copy_rows(int threads, int64_t rows, int cols, const float *src, int src_stride, float *dst,
                        int dst_stride, bool accumulate)
{
    (void)threads;
    (void)rows;
    (void)cols;
    (void)src;
    (void)src_stride;
    (void)dst;
    (void)dst_stride;
    (void)accumulate;
}

void kelp_cpu_nhwc_to_nchw(int threads, int n, int h, int w, int c, const float *x, float *y)
{
    (void)threads;
    (void)n;
    (void)h;
    (void)w;
    (void)c;
    (void)x;
    (void)y;
}

void kelp_cpu_nchw_to_nhwc_accumulate(int threads, int n, int h, int w, int c, const float *x, float *y)
{
    (void)threads;
    (void)n;
    (void)h;
    (void)w;
    (void)c;
    (void)x;
    (void)y;
}

