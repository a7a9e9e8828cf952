/* Counter-based random numbers (Philox4x32-10, Salmon et al. 2011): the value at (seed, counter) is the same on
 * every backend, thread count and schedule, which makes dropout and augmentation reproducible and resumable. */
#ifndef KELP_OPS_RNG_H
#define KELP_OPS_RNG_H

#include <stdint.h>

#include "kernels/descs.h"
#include "kernels/ops/hd.h"

/* SplitMix64's finalizer: a bijection that spreads every input bit over the output. */
KELP_HD uint64_t kelp_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The seed a kelp_rng_seed stands for now (kernels/descs.h). */
KELP_HD uint64_t kelp_rng_seed_value(const kelp_rng_seed *s)
{
    return s->step ? kelp_mix64(s->seed ^ kelp_mix64((uint64_t)*s->step + s->stream)) : s->seed;
}

typedef struct kelp_philox_out {
    uint32_t v[4];
} kelp_philox_out;

KELP_HD uint32_t kelp_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Philox4x32-10 on a full 4-word counter and 2-word key: the function Random123's known-answer vectors test. */
KELP_HD kelp_philox_out kelp_philox4x32_10(const uint32_t counter[4], const uint32_t key[2])
{
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = kelp_mulhilo32(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = kelp_mulhilo32(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    kelp_philox_out out = {{c0, c1, c2, c3}};
    return out;
}

/* The 64-bit counter fills words 0 and 1; words 2 and 3 stay 0. */
KELP_HD kelp_philox_out kelp_philox4x32(uint64_t seed, uint64_t counter)
{
    const uint32_t c[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0u, 0u};
    const uint32_t k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    return kelp_philox4x32_10(c, k);
}

/* Uniform float in [0, 1) from 24 random bits. */
KELP_HD float kelp_uniform01(uint32_t bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

/* One uniform [0,1) float per index: element i uses word i%4 of block i/4. */
KELP_HD float kelp_rng_uniform(uint64_t seed, uint64_t index)
{
    kelp_philox_out r = kelp_philox4x32(seed, index >> 2);
    return kelp_uniform01(r.v[index & 3]);
}

#endif
