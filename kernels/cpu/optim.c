/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_sgd_step(int threads, int64_t n, const kelp_sgd_params *p, float *param, const float *grad,
                       float *momentum_buf)
{
    (void)threads;
    (void)n;
    (void)p;
    (void)param;
    (void)grad;
    (void)momentum_buf;
}

void kelp_cpu_adamw_step(int threads, int64_t n, const kelp_adamw_params *p, float *param, const float *grad,
                         float *exp_avg, float *exp_avg_sq)
{
    (void)threads;
    (void)n;
    (void)p;
    (void)param;
    (void)grad;
    (void)exp_avg;
    (void)exp_avg_sq;
}

