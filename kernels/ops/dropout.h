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
 * of a call may be partial), so kernels loop over blocks, not elements. */
KELP_HD void kelp_dropout_block(uint64_t seed, uint64_t block, uint64_t offset, uint64_t end, float p, float scale,
                                const float *x, float *y, uint8_t *mask)
{
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

#endif
