/* Dropout's per-element rule, shared by the CPU and CUDA kernels so that a seed gives the same mask everywhere. */
#ifndef KELP_OPS_DROPOUT_H
#define KELP_OPS_DROPOUT_H

#include <stdbool.h>

#include "kernels/ops/hd.h"

/* u is kelp_rng_uniform(seed, offset + i), uniform in [0, 1): the element survives with probability 1 - p. */
KELP_HD bool kelp_dropout_keep(float u, float p) { return u >= p; }

/* Survivors are scaled so that the expected output equals the input (inverted dropout, as PyTorch). */
KELP_HD float kelp_dropout_scale(float p) { return 1.0f / (1.0f - p); }

#endif
