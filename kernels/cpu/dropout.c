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
    uint64_t end = offset + (uint64_t)n;
    int64_t first = (int64_t)(offset >> 2), blocks = (int64_t)((end - 1) >> 2) - first + 1;
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        uint64_t block = (uint64_t)(first + b);
        kelp_philox_out r = kelp_philox4x32(seed, block);
        for (uint64_t word = 0; word < 4; word++) {
            uint64_t index = block * 4 + word;
            if (index < offset || index >= end)
                continue;
            int64_t i = (int64_t)(index - offset);
            bool keep = kelp_dropout_keep(kelp_uniform01(r.v[word]), p);
            mask[i] = keep;
            y[i] = keep ? x[i] * scale : 0.0f;
        }
    }
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
