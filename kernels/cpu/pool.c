/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_pool2d_forward(int threads, const kelp_pool_desc *d, const float *x, float *y, int32_t *argmax)
{
    (void)threads;
    (void)d;
    (void)x;
    (void)y;
    (void)argmax;
}

void kelp_cpu_pool2d_backward(int threads, const kelp_pool_desc *d, const float *dy, const int32_t *argmax,
                              float *dx)
{
    (void)threads;
    (void)d;
    (void)dy;
    (void)argmax;
    (void)dx;
}

void kelp_cpu_global_avg_pool_forward(int threads, int n, int hw, int c, const float *x, float *y)
{
    (void)threads;
    (void)n;
    (void)hw;
    (void)c;
    (void)x;
    (void)y;
}

void kelp_cpu_global_avg_pool_backward(int threads, int n, int hw, int c, const float *dy, float *dx)
{
    (void)threads;
    (void)n;
    (void)hw;
    (void)c;
    (void)dy;
    (void)dx;
}

