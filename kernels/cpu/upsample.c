/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_upsample_forward(int threads, const kelp_upsample_desc *d, const float *x, float *y)
{
    (void)threads;
    (void)d;
    (void)x;
    (void)y;
}

void kelp_cpu_upsample_backward(int threads, const kelp_upsample_desc *d, const float *dy, float *dx)
{
    (void)threads;
    (void)d;
    (void)dy;
    (void)dx;
}

