/* The CUDA backend, callable from C. Built only with KELP_HAVE_CUDA. */
#ifndef KELP_CUDA_BACKEND_CUDA_H
#define KELP_CUDA_BACKEND_CUDA_H

#include <stdbool.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kelp_backend;

/* A backend on CUDA device `device`: its own stream, cuBLAS and cuDNN handles bound to it, and a caching allocator.
 * Fails with KELP_ERR_INVALID_ARG when the device does not exist, KELP_ERR_BACKEND when a library call fails. */
kelp_status kelp_backend_cuda_create(int device, struct kelp_backend **out);

/* Deterministic algorithm choice (the default): cuDNN convolutions use only algorithms whose results do not depend
 * on scheduling, so two runs give the same bits, as on the CPU. false allows faster non-deterministic ones. Clears
 * the per-shape algorithm cache. TODO: a field of kelp_ctx_options once the public API grows one. */
void kelp_backend_cuda_set_deterministic(struct kelp_backend *be, bool deterministic);

#ifdef __cplusplus
}
#endif
#endif
