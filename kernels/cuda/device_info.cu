/* Device and library versions: the first piece of the CUDA backend, and the proof that kelp_cuda compiles and
 * links against cudart, cuDNN and cuBLAS. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <dlfcn.h>
#include <stdio.h>

#include "kernels/cuda/device_info.h"

extern "C" int kelp_cuda_device_count(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess)
        return 0;
    return count;
}

extern "C" int kelp_cuda_device_name(int device, char *buf, size_t len)
{
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) {
        snprintf(buf, len, "%s", cudaGetErrorString(err));
        return -1;
    }
    snprintf(buf, len, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}

/* NCCL is looked up, not linked: nothing of kelp's single-GPU path needs it, so a machine without it still runs
 * kelp, and `kelp info` says which NCCL a multi-GPU run would find (PyTorch's wheels ship one). */
static int nccl_version(void)
{
    void *lib = dlopen("libnccl.so.2", RTLD_LAZY | RTLD_LOCAL);
    if (!lib)
        return 0;
    int version = 0;
    typedef int (*get_version_fn)(int *);
    get_version_fn get = (get_version_fn)dlsym(lib, "ncclGetVersion");
    if (!get || get(&version) != 0) /* ncclSuccess */
        version = 0;
    dlclose(lib);
    return version;
}

extern "C" void kelp_cuda_versions(kelp_cuda_version_info *out)
{
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    out->runtime = runtime;
    out->driver = driver;
    out->cudnn = (int)cudnnGetVersion();
    int cublas = 0;
    cublasHandle_t handle;
    /* cuBLAS reports its version through a handle; without a device there is none, so fall back to the headers. */
    if (cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS) {
        cublasGetVersion(handle, &cublas);
        cublasDestroy(handle);
    } else {
        cublas = CUBLAS_VERSION;
    }
    out->cublas = cublas;
    out->nccl = nccl_version();
}
