/* Elementwise CPU kernels: activations and the vector arithmetic of residual adds, gradient accumulation and
 * gradient clipping. */
#include "kernels/cpu/cpu_kernels.h"

#include "kernels/ops/activation.h"

/* Below this many elements a thread team costs more than the loop. */
#define PARALLEL_MIN 16384

// x (n) -> y (n)
void kelp_cpu_activation_forward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x, float *y)
{
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = kelp_act_forward(kind, alpha, x[i]);
}

// x, y, dy (n) -> dx (n) +=
void kelp_cpu_activation_backward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x,
                                  const float *y, const float *dy, float *dx)
{
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        dx[i] += dy[i] * kelp_act_derivative(kind, alpha, x[i], y[i]);
}

// a, b (n) -> y (n)
void kelp_cpu_add(int threads, int64_t n, const float *a, const float *b, float *y)
{
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

// x (n) -> y (n) +=
void kelp_cpu_axpy(int threads, int64_t n, float alpha, const float *x, float *y)
{
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

// x (n) in place
void kelp_cpu_scale(int threads, int64_t n, float alpha, float *x)
{
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        x[i] *= alpha;
}

/* Accumulated in double: gradient norms over millions of parameters lose digits in float. */
double kelp_cpu_sum_squares(int threads, int64_t n, const float *x)
{
    double sum = 0.0;
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static) reduction(+ : sum)
    for (int64_t i = 0; i < n; i++)
        sum += (double)x[i] * (double)x[i];
    return sum;
}
