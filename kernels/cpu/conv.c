/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

size_t kelp_cpu_conv2d_workspace(const kelp_conv_desc *d)
{
    (void)d;
    return 0;
}

void kelp_cpu_conv2d_forward(int threads, const kelp_conv_desc *d, const float *x, const float *w,
                             const float *bias, float *y, float *workspace)
{
    (void)threads;
    (void)d;
    (void)x;
    (void)w;
    (void)bias;
    (void)y;
    (void)workspace;
}

void kelp_cpu_conv2d_backward_data(int threads, const kelp_conv_desc *d, const float *dy, const float *w,
                                   float *dx, float *workspace)
{
    (void)threads;
    (void)d;
    (void)dy;
    (void)w;
    (void)dx;
    (void)workspace;
}

void kelp_cpu_conv2d_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                     float *dw, float *db, float *workspace)
{
    (void)threads;
    (void)d;
    (void)x;
    (void)dy;
    (void)dw;
    (void)db;
    (void)workspace;
}

