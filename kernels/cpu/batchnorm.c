/* PLACEHOLDER: to be written. */
#include "kernels/cpu/cpu_kernels.h"

void kelp_cpu_batchnorm_forward_train(int threads, int64_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, float *running_mean, float *running_var, float momentum,
                                      float eps, float *y, float *save_mean, float *save_invstd)
{
    (void)threads;
    (void)rows;
    (void)c;
    (void)x;
    (void)gamma;
    (void)beta;
    (void)running_mean;
    (void)running_var;
    (void)momentum;
    (void)eps;
    (void)y;
    (void)save_mean;
    (void)save_invstd;
}

void kelp_cpu_batchnorm_forward_infer(int threads, int64_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, const float *running_mean, const float *running_var,
                                      float eps, float *y)
{
    (void)threads;
    (void)rows;
    (void)c;
    (void)x;
    (void)gamma;
    (void)beta;
    (void)running_mean;
    (void)running_var;
    (void)eps;
    (void)y;
}

void kelp_cpu_batchnorm_backward(int threads, int64_t rows, int c, const float *x, const float *dy,
                                 const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                                 float *dgamma, float *dbeta)
{
    (void)threads;
    (void)rows;
    (void)c;
    (void)x;
    (void)dy;
    (void)gamma;
    (void)save_mean;
    (void)save_invstd;
    (void)dx;
    (void)dgamma;
    (void)dbeta;
}

