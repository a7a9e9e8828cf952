/* Dropout with a counter-based mask: element i draws kelp_rng_uniform(seed, offset + i). */
#include "kernels/cpu/cpu_kernels.h"

#include "kernels/ops/dropout.h"
#include "kernels/ops/rng.h"

/* Below this many elements a thread team costs more than the loop. */
#define PARALLEL_MIN 16384

/* One Philox block yields the draws of four consecutive indices, so the loop runs over blocks (the first and last
 * may be partial when offset or n is not a multiple of 4) instead of computing a block per element. */
// x (n) -> y (n), mask (n)
void kelp_cpu_dropout_forward(int threads, int64_t n, float p, uint64_t seed, uint64_t offset, const float *x,
                              float *y, uint8_t *mask)
{
    if (n <= 0)
        return;
    float scale = kelp_dropout_scale(p);
    kelp_dropout_range r = kelp_dropout_blocks(offset, n);
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t b = 0; b < r.count; b++)
        kelp_dropout_block(seed, r.first + (uint64_t)b, offset, r.end, p, scale, x, y, mask);
}

// dy (n), mask (n) -> dx (n) +=
void kelp_cpu_dropout_backward(int threads, int64_t n, float p, const uint8_t *mask, const float *dy, float *dx)
{
    float scale = kelp_dropout_scale(p);
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (mask[i])
            dx[i] += dy[i] * scale;
}
