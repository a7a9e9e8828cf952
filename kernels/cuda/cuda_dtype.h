/* Storage types inside the CUDA backend: activations are float, __nv_bfloat16 or __half in memory, and every kernel
 * widens what it loads to float, computes in float with the per-element math of kernels/ops, and narrows what it
 * stores (mixed precision keeps the arithmetic in fp32, as the CPU backend does).
 *
 * Kernels are templates on the storage type T; a host function turns the call's kelp_dtype into T once, with
 * cuda_dispatch, and launches that instance. For T = float the loads and stores are the identity, so the fp32
 * instances compile to what the untemplated kernels did.
 *
 * The narrowing is CUDA's own conversion, __float2bfloat16_rn / __float2half_rn: round to nearest, ties to even,
 * overflow to infinity, subnormal halves kept, exactly kernels/ops/half.h's rule, so a finite value stored by this
 * backend and by the CPU backend is the same bit pattern. (A NaN stays a NaN, but CUDA stores its canonical NaN
 * where half.h keeps the payload's top bits: the bits of a NaN may differ, its NaN-ness does not.) Not a public
 * header. */
#ifndef KELP_CUDA_DTYPE_H
#define KELP_CUDA_DTYPE_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn.h>
#include <library_types.h>

#include "kelp/status.h"
#include "kelp/tensor.h"
#include "kernels/ops/half.h"

__host__ __device__ __forceinline__ float to_float(float v) { return v; }
__host__ __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__host__ __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T> __host__ __device__ __forceinline__ T from_float(float v);
template <> __host__ __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}
template <> __host__ __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

/* Element i of a typed buffer, widened; and v narrowed into it. */
template <typename T> __device__ __forceinline__ float load(const T *p, int64_t i) { return to_float(p[i]); }
template <typename T> __device__ __forceinline__ void store(T *p, int64_t i, float v) { p[i] = from_float<T>(v); }

/* The storage type as a C++ type, for the dispatch's callbacks: `using T = typename decltype(tag)::type;`. */
template <typename T> struct dtype_tag {
    using type = T;
};

static inline size_t cuda_dtype_bytes(kelp_dtype dt) { return dt == KELP_F32 ? 4 : 2; }

static inline const char *cuda_dtype_name(kelp_dtype dt)
{
    return dt == KELP_F32 ? "F32" : dt == KELP_BF16 ? "BF16" : dt == KELP_F16 ? "F16" : "a non-floating type";
}

/* Calls f(dtype_tag<T>{}) for the storage type dt names, or fails naming the op when dt is not one. */
template <typename F> static kelp_status cuda_dispatch(kelp_dtype dt, const char *op, F &&f)
{
    switch (dt) {
    case KELP_F32:
        return f(dtype_tag<float>{});
    case KELP_BF16:
        return f(dtype_tag<__nv_bfloat16>{});
    case KELP_F16:
        return f(dtype_tag<__half>{});
    default:
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s (cuda): storage type %d is not F32, BF16 or F16", op, (int)dt);
    }
}

/* cuDNN's and cuBLAS's names of a storage type (callers check kelp_dtype_is_float first). */
static inline cudnnDataType_t cudnn_data_type(kelp_dtype dt)
{
    return dt == KELP_BF16 ? CUDNN_DATA_BFLOAT16 : dt == KELP_F16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
}

static inline cudaDataType cublas_data_type(kelp_dtype dt)
{
    return dt == KELP_BF16 ? CUDA_R_16BF : dt == KELP_F16 ? CUDA_R_16F : CUDA_R_32F;
}

#endif
