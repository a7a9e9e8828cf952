/* Optimizer steps over one flat f32 buffer. The per-element math is kernels/ops/optim.h, shared with CUDA, so
 * both backends follow torch.optim.SGD and torch.optim.AdamW the same way. */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops/optim.h"

/* A parallel region costs more than updating a few thousand elements, and the graph steps many small segments
 * (biases, batch-norm scales) when some parameters are frozen. */
#define OPTIM_PARALLEL_MIN 16384

// param, grad, momentum_buf (n); momentum_buf is NULL when momentum is 0
void kelp_cpu_sgd_step(int threads, int64_t n, const kelp_sgd_params *p, const kelp_step_ctl *ctl, float *param,
                       const float *grad, float *momentum_buf)
{
    const kelp_step_ctl c = *ctl; /* a copy the updates cannot alias */
    if (c.skip)
        return;
    if (!momentum_buf) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= OPTIM_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            kelp_sgd_update(p, &c, &param[i], grad[i], NULL);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= OPTIM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        kelp_sgd_update(p, &c, &param[i], grad[i], &momentum_buf[i]);
}

// param, grad, exp_avg, exp_avg_sq (n)
void kelp_cpu_adamw_step(int threads, int64_t n, const kelp_adamw_params *p, const kelp_step_ctl *ctl, float *param,
                         const float *grad, float *exp_avg, float *exp_avg_sq)
{
    const kelp_step_ctl c = *ctl;
    if (c.skip)
        return;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= OPTIM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        kelp_adamw_update(p, &c, &param[i], grad[i], &exp_avg[i], &exp_avg_sq[i]);
}
