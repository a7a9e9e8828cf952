/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_dropout_forward(int threads, int64_t n, float p, uint64_t seed, uint64_t offset, const float *x,
                              float *y, uint8_t *mask)
{
    (void)threads;
    (void)n;
    (void)p;
    (void)seed;
    (void)offset;
    (void)x;
    (void)y;
    (void)mask;
}

void kelp_cpu_dropout_backward(int threads, int64_t n, float p, const uint8_t *mask, const float *dy, float *dx)
{
    (void)threads;
    (void)n;
    (void)p;
    (void)mask;
    (void)dy;
    (void)dx;
}

