/* Dropout's per-element rule, shared by the CPU and CUDA kernels so that a seed gives the same mask everywhere. */
#ifndef KELP_OPS_DROPOUT_H
#define KELP_OPS_DROPOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ops/hd.h"
#include "kernels/ops/rng.h"

/* u is kelp_rng_uniform(seed, offset + i), uniform in [0, 1): the element survives with probability 1 - p. */
KELP_HD bool kelp_dropout_keep(float u, float p) { return u >= p; }

/* Survivors are scaled so that the expected output equals the input (inverted dropout, as PyTorch). */
KELP_HD float kelp_dropout_scale(float p) { return 1.0f / (1.0f - p); }

/* The Philox blocks a call of n >= 1 elements at stream offset `offset` touches: blocks first .. first + count - 1,
 * those holding indices offset .. end - 1 (end = offset + n). */
typedef struct kelp_dropout_range {
    uint64_t first, end;
    int64_t count;
} kelp_dropout_range;

KELP_HD kelp_dropout_range kelp_dropout_blocks(uint64_t offset, int64_t n)
{
    kelp_dropout_range r;
    r.end = offset + (uint64_t)n;
    r.first = offset >> 2;
    r.count = (int64_t)(((r.end - 1) >> 2) - r.first + 1);
    return r;
}

/* The elements of one Philox block: indices block*4 .. block*4+3 of the stream, those in [offset, end) being
 * elements index - offset of x, y and mask. One block's four draws serve four elements (the first and last blocks
 * of a call may be partial), so kernels loop over blocks, not elements. Writes the block's mask entries and gives
 * their element range [*lo, *hi), where each backend stores y = mask ? x * scale : 0 in its storage type. */
KELP_HD void kelp_dropout_block_mask(uint64_t seed, uint64_t block, uint64_t offset, uint64_t end, float p,
                                     uint8_t *mask, int64_t *lo, int64_t *hi)
{
    kelp_philox_out r = kelp_philox4x32(seed, block);
    uint64_t first = block * 4 < offset ? offset : block * 4, last = block * 4 + 4 > end ? end : block * 4 + 4;
    for (uint64_t index = first; index < last; index++)
        mask[index - offset] = kelp_dropout_keep(kelp_uniform01(r.v[index - block * 4]), p);
    *lo = (int64_t)(first - offset);
    *hi = (int64_t)(last - offset);
}

KELP_HD void kelp_dropout_block(uint64_t seed, uint64_t block, uint64_t offset, uint64_t end, float p, float scale,
                                const float *x, float *y, uint8_t *mask)
{
    int64_t lo, hi;
    kelp_dropout_block_mask(seed, block, offset, end, p, mask, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        y[i] = mask[i] ? x[i] * scale : 0.0f;
}

#endif
