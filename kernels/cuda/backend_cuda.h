/* The CUDA backend, callable from C. Built only with KELP_HAVE_CUDA. */
#ifndef KELP_CUDA_BACKEND_CUDA_H
#define KELP_CUDA_BACKEND_CUDA_H

#include <stdbool.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kelp_backend;

/* Which batch-norm implementation runs (cuda_batchnorm_select.cu). */
typedef enum kelp_cuda_batchnorm {
    KELP_CUDA_BN_AUTO = 0, /* the custom kernels; with autotune and nondeterministic, the faster of them and cuDNN's */
    KELP_CUDA_BN_CUSTOM,   /* always the custom kernels */
    KELP_CUDA_BN_CUDNN,    /* cuDNN's wherever it applies (the tests run both) */
} kelp_cuda_batchnorm;

/* Numerics chosen once, at create: every cached algorithm choice depends on them. */
typedef struct kelp_cuda_config {
    bool deterministic; /* cuDNN algorithms whose results do not depend on scheduling only (two runs, same bits) */
    bool allow_tf32;    /* cuBLAS and cuDNN may use TF32 tensor cores for fp32 data (10-bit mantissa products) */
    bool autotune;      /* time cuDNN's candidates once per shape (cudnnFind*) instead of taking its heuristics */
    bool cuda_graphs;   /* allow capture (the engine replays inference forwards and training steps); false refuses
                         * capture_begin */
    kelp_cuda_batchnorm batchnorm;
} kelp_cuda_config;

/* A backend on CUDA device `device`: its own stream, cuBLAS and cuDNN handles bound to it, and a caching allocator.
 * config NULL: deterministic, fp32 (no TF32), heuristics, CUDA graphs allowed. Fails with KELP_ERR_INVALID_ARG when the device does not
 * exist, KELP_ERR_BACKEND when a library call fails. */
kelp_status kelp_backend_cuda_create(int device, const kelp_cuda_config *config, struct kelp_backend **out);

#ifdef __cplusplus
}
#endif
#endif
