/* Error checks for CUDA, cuDNN and cuBLAS calls: a failure becomes KELP_ERR_BACKEND with a message naming the file,
 * line, the call as written and the library's own error string, so a report from a GPU machine says exactly which
 * call failed. Only for functions that return kelp_status. */
#ifndef KELP_CUDA_CHECK_H
#define KELP_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "kelp/status.h"

#define KELP_CUDA_FAIL_(call_text, msg) \
    kelp_set_error(KELP_ERR_BACKEND, "%s:%d: %s: %s", __FILE__, __LINE__, call_text, msg)

/* A failed call also sets the thread's last CUDA error, which the next KELP_CUDA_LAUNCHED would report as its own
 * launch's: reading it here clears it (errors that are sticky stay, as CUDA keeps them). */
#define KELP_CUDA_TRY(call)                                              \
    do {                                                                 \
        cudaError_t kelp_cuda_e_ = (call);                               \
        if (kelp_cuda_e_ != cudaSuccess) {                               \
            (void)cudaGetLastError();                                    \
            return KELP_CUDA_FAIL_(#call, cudaGetErrorString(kelp_cuda_e_)); \
        }                                                                \
    } while (0)

/* cuDNN and cuBLAS failures may come from a CUDA call inside them, which also sets the last error: cleared too. */
#define KELP_CUDNN_TRY(call)                                               \
    do {                                                                   \
        cudnnStatus_t kelp_cudnn_e_ = (call);                              \
        if (kelp_cudnn_e_ != CUDNN_STATUS_SUCCESS) {                       \
            (void)cudaGetLastError();                                      \
            return KELP_CUDA_FAIL_(#call, cudnnGetErrorString(kelp_cudnn_e_)); \
        }                                                                  \
    } while (0)

#define KELP_CUBLAS_TRY(call)                                                 \
    do {                                                                      \
        cublasStatus_t kelp_cublas_e_ = (call);                               \
        if (kelp_cublas_e_ != CUBLAS_STATUS_SUCCESS) {                        \
            (void)cudaGetLastError();                                         \
            return KELP_CUDA_FAIL_(#call, cublasGetStatusString(kelp_cublas_e_)); \
        }                                                                     \
    } while (0)

/* After a kernel launch: catches a bad launch configuration without synchronizing. Errors inside the kernel surface
 * at the next synchronizing call (download, synchronize), as CUDA reports them. */
#define KELP_CUDA_LAUNCHED(kernel_name)                                                \
    do {                                                                               \
        cudaError_t kelp_cuda_e_ = cudaGetLastError();                                 \
        if (kelp_cuda_e_ != cudaSuccess)                                               \
            return KELP_CUDA_FAIL_("launch " #kernel_name, cudaGetErrorString(kelp_cuda_e_)); \
    } while (0)

#endif
