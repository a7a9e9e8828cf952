/* KELP_HD marks per-element math that compiles for the host (C) and the device (CUDA). */
#ifndef KELP_OPS_HD_H
#define KELP_OPS_HD_H

#if defined(__CUDACC__)
#define KELP_HD __host__ __device__ __forceinline__
#else
#define KELP_HD static inline
#endif

#endif
