/* CUDA device queries, callable from C. */
#ifndef KELP_CUDA_DEVICE_INFO_H
#define KELP_CUDA_DEVICE_INFO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kelp_cuda_version_info {
    int runtime, driver, cudnn, cublas; /* as the libraries encode them, e.g. 13000, 90300 */
    int nccl;                           /* e.g. 22703; 0 when no libnccl.so.2 can be loaded */
} kelp_cuda_version_info;

/* Number of visible devices; 0 when there is no driver or no GPU. */
int kelp_cuda_device_count(void);
/* "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"; -1 with the CUDA error string in buf on failure. */
int kelp_cuda_device_name(int device, char *buf, size_t len);
void kelp_cuda_versions(kelp_cuda_version_info *out);

#ifdef __cplusplus
}
#endif
#endif
