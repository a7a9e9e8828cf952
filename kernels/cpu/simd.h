/* Vector code in the CPU kernels without -march.
 *
 * The project builds for the x86-64 baseline (SSE2), so a plain loop never uses AVX2 or AVX-512. A function marked
 * KELP_VECTOR_CLONES is compiled for AVX-512 (x86-64-v4), AVX2 (x86-64-v3) and the baseline, and the loader picks
 * the clone the CPU supports (an ifunc), once. The clone is a call target, so mark a function that does a good
 * amount of work per call (a row, a tile, a block of elements), not a per-element helper.
 *
 * Two ways to fill a clone with vector code, both checked with objdump on GCC 12:
 * - GCC vector extensions (conv_direct.c's 16-float vectors) for arithmetic: + and * on a vector wider than the
 *   clone's registers are split into register-wide pieces. Comparisons are not: on a clone whose registers are
 *   narrower than the vector type they become one scalar compare per lane.
 * - plain loops whose trip count is a runtime value (the channels, a block of elements), with restrict pointers and
 *   selects (c ? a : b) instead of branches: the vectorizer picks each clone's width and handles any remainder.
 *   Compute both sides of a select unconditionally, or build the file with -fno-trapping-math (CMakeLists.txt), or
 *   only the AVX-512 clone (masked instructions) vectorizes a select with arithmetic on one side. */
#ifndef KELP_CPU_SIMD_H
#define KELP_CPU_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define KELP_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KELP_VECTOR_CLONES
#endif

/* 16 floats as one GCC vector, for the register tiles of the convolutions. Loads, stores and the epilogue are
 * macros, not functions: a 64-byte vector argument or return value would change the ABI between the clones. */
typedef float kelp_vec16 __attribute__((vector_size(64), aligned(4)));
#define KELP_LOAD16(p) (*(const kelp_vec16 *)(p))
#define KELP_STORE16(p, v) (*(kelp_vec16 *)(p) = (v))

/* v (channels k..k+15) = clamp(v * scale + shift) for a kelp_conv_epilogue *ep (kernels/descs.h), with the
 * activations' own comparisons (kernels/ops/activation.h): NaN stays NaN through ReLU and ReLU6, as in PyTorch. */
#define KELP_EPILOGUE16(v, ep, k)                                                                                     \
    do {                                                                                                              \
        if ((ep)->scale)                                                                                              \
            (v) *= KELP_LOAD16((ep)->scale + (k));                                                                    \
        if ((ep)->shift)                                                                                              \
            (v) += KELP_LOAD16((ep)->shift + (k));                                                                    \
        if ((ep)->clamp == KELP_CLAMP_RELU)                                                                           \
            for (int lane_ = 0; lane_ < 16; lane_++)                                                                  \
                (v)[lane_] = (v)[lane_] <= 0.0f ? 0.0f : (v)[lane_];                                                  \
        else if ((ep)->clamp == KELP_CLAMP_RELU6)                                                                     \
            for (int lane_ = 0; lane_ < 16; lane_++)                                                                  \
                (v)[lane_] = (v)[lane_] < 0.0f ? 0.0f : (v)[lane_] > 6.0f ? 6.0f : (v)[lane_];                        \
    } while (0)

#endif
