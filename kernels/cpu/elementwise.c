/* Elementwise CPU kernels: activations and the vector arithmetic of residual adds, gradient accumulation and
 * gradient clipping. */
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd.h"
#include "kernels/ops/activation.h"

/* Below this many elements a thread team costs more than the loop. */
#define PARALLEL_MIN 16384

// x (n) -> y (n)
/* The kind is a loop invariant, but a switch inside the element loop keeps the compiler from vectorizing it (ReLU
 * took 5% of a ResNet-18 step). Each case below calls the per-element function with a constant kind, so it
 * folds to straight-line math. */
#define ACTIVATION_CASES(LOOP)                                                                                   \
    switch (kind) {                                                                                              \
    case KELP_ACT_RELU: LOOP(KELP_ACT_RELU); break;                                                             \
    case KELP_ACT_LEAKY_RELU: LOOP(KELP_ACT_LEAKY_RELU); break;                                                 \
    case KELP_ACT_SILU: LOOP(KELP_ACT_SILU); break;                                                             \
    case KELP_ACT_SIGMOID: LOOP(KELP_ACT_SIGMOID); break;                                                       \
    case KELP_ACT_GELU: LOOP(KELP_ACT_GELU); break;                                                             \
    case KELP_ACT_RELU6: LOOP(KELP_ACT_RELU6); break;                                                           \
    }

// x (n) -> y (n)
void kelp_cpu_activation_forward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x, float *y)
{
#define FORWARD_LOOP(KIND)                                                                                       \
    _Pragma("omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)")                   \
    for (int64_t i = 0; i < n; i++)                                                                              \
        y[i] = kelp_act_forward(KIND, alpha, x[i])
    ACTIVATION_CASES(FORWARD_LOOP)
#undef FORWARD_LOOP
}

/* One block of the backward. restrict (dx overlaps nothing the loop reads) and -fno-trapping-math (CMakeLists.txt:
 * both sides of a select may be computed for every element, rather than branched around) let the compiler
 * vectorize it; without them the loop stayed scalar with a branch per element, and ReLU's backward took up to 10
 * times its forward. Compiled for AVX-512, AVX2 and the baseline (simd.h). The arithmetic is the per-element
 * function's, so every backend and clone computes the same values. */
KELP_VECTOR_CLONES
static void activation_backward_block(kelp_act_kind kind, float alpha, int64_t n, const float *restrict x,
                                      const float *restrict y, const float *restrict dy, float *restrict dx)
{
#define BACKWARD_LOOP(KIND)                                                                                      \
    for (int64_t i = 0; i < n; i++)                                                                              \
        dx[i] += kelp_act_grad(KIND, alpha, x[i], y[i], dy[i])
    ACTIVATION_CASES(BACKWARD_LOOP)
#undef BACKWARD_LOOP
}

// x, y, dy (n) -> dx (n) +=
void kelp_cpu_activation_backward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x,
                                  const float *y, const float *dy, float *dx)
{
    if (threads <= 1 || n < PARALLEL_MIN) {
        activation_backward_block(kind, alpha, n, x, y, dy, dx);
        return;
    }
    /* one contiguous slice per thread, as schedule(static) would split it, cut at multiples of 16 elements */
#pragma omp parallel num_threads(threads)
    {
        int64_t begin, end;
        kelp_cpu_thread_slice(n, 16, &begin, &end);
        activation_backward_block(kind, alpha, end - begin, x + begin, y + begin, dy + begin, dx + begin);
    }
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

/* Zeroing a gradient buffer of a few MiB on one thread left the others spinning: about 5% of a small ResNet's
 * training step. One slice per thread. */
#define PARALLEL_MEMSET_MIN (1 << 20)

void kelp_cpu_memset(int threads, void *dst, int value, size_t bytes)
{
    if (threads <= 1 || bytes < PARALLEL_MEMSET_MIN) {
        memset(dst, value, bytes);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; t++) {
        size_t begin = bytes / (size_t)threads * (size_t)t, end = t == threads - 1 ? bytes : begin + bytes / (size_t)threads;
        memset((char *)dst + begin, value, end - begin);
    }
}
