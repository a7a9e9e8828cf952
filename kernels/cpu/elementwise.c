/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_activation_forward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x, float *y)
{
    (void)threads;
    (void)kind;
    (void)alpha;
    (void)n;
    (void)x;
    (void)y;
}

void kelp_cpu_activation_backward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x,
                                  const float *y, const float *dy, float *dx)
{
    (void)threads;
    (void)kind;
    (void)alpha;
    (void)n;
    (void)x;
    (void)y;
    (void)dy;
    (void)dx;
}

void kelp_cpu_add(int threads, int64_t n, const float *a, const float *b, float *y)
{
    (void)threads;
    (void)n;
    (void)a;
    (void)b;
    (void)y;
}

void kelp_cpu_axpy(int threads, int64_t n, float alpha, const float *x, float *y)
{
    (void)threads;
    (void)n;
    (void)alpha;
    (void)x;
    (void)y;
}

void kelp_cpu_scale(int threads, int64_t n, float alpha, float *x)
{
    (void)threads;
    (void)n;
    (void)alpha;
    (void)x;
}

double kelp_cpu_sum_squares(int threads, int64_t n, const float *x)
{
    (void)threads;
    (void)n;
    (void)x;
    return 0;
}

