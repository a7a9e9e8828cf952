/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_bias_add(int threads, int64_t rows, int c, const float *bias, float *y)
{
    (void)threads;
    (void)rows;
    (void)c;
    (void)bias;
    (void)y;
}

void kelp_cpu_bias_backward(int threads, int64_t rows, int c, const float *dy, float *db)
{
    (void)threads;
    (void)rows;
    (void)c;
    (void)dy;
    (void)db;
}

