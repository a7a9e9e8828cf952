/* CPU kernels: f32 math on host pointers, OpenMP inside, BLAS for GEMM. Backward kernels ACCUMULATE into their
 * outputs (dx += ..., dw += ...): the graph zeroes gradient buffers, so fan-out (residuals) needs no extra pass.
 * Functions that can fail on their input return 0 on success and -1 otherwise (the backend turns that into a
 * kelp_status). `threads` is the OpenMP thread count from the context. */
#ifndef KELP_CPU_KERNELS_H
#define KELP_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/descs.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Inside a parallel region: this thread's slice [begin, end) of n items, the team's slices contiguous and in
 * thread order, cut at multiples of `align` (the last slice takes the rest). */
static inline void kelp_cpu_thread_slice(int64_t n, int64_t align, int64_t *begin, int64_t *end)
{
    int64_t team = 1, me = 0;
#ifdef _OPENMP
    team = omp_get_num_threads();
    me = omp_get_thread_num();
#endif
    *begin = n * me / team / align * align;
    *end = me == team - 1 ? n : n * (me + 1) / team / align * align;
}

/* ---- GEMM (row-major): C = alpha * op(A) op(B) + beta * C, op(A) (M,K), op(B) (K,N) ----
 * BLAS runs single-threaded inside kelp's OpenMP threads; kelp_cpu_gemm_init sets that (process-wide in OpenBLAS,
 * so an application that shares OpenBLAS with kelp sees it too). */
void kelp_cpu_gemm_init(void);
void kelp_cpu_gemm(int threads, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* ---- convolution ---- */
size_t kelp_cpu_conv2d_workspace(int threads, const kelp_conv_desc *d);
/* y = the convolution through the epilogue (bias, folded batch norm, ReLU: kernels/descs.h); ep NULL: none */
void kelp_cpu_conv2d_forward(int threads, const kelp_conv_desc *d, const float *x, const float *w,
                             const kelp_conv_epilogue *ep, float *y, float *workspace);
void kelp_cpu_conv2d_backward_data(int threads, const kelp_conv_desc *d, const float *dy, const float *w,
                                   float *dx, float *workspace);
void kelp_cpu_conv2d_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                     float *dw, float *db, float *workspace);

/* Direct convolution (conv_direct.c) for one group, channel counts that are multiples of 16 and kernels of at most
 * KELP_CONV_DIRECT_MAX_TAPS taps. backward_data takes the flipped convolution dy -> dx (stride 1) and adds to dx;
 * backward_filter adds to dw. */
#define KELP_CONV_DIRECT_MAX_TAPS 64
bool kelp_cpu_conv_direct_fits(const kelp_conv_desc *d);
size_t kelp_cpu_conv_direct_workspace(const kelp_conv_desc *d);
void kelp_cpu_conv_direct_forward(int threads, const kelp_conv_desc *d, const float *x, const float *w,
                                  const kelp_conv_epilogue *ep, float *y, float *workspace);
void kelp_cpu_conv_direct_backward_data(int threads, const kelp_conv_desc *flipped, const float *dy,
                                        const float *w, float *dx, float *workspace);
void kelp_cpu_conv_direct_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                          float *dw, float *workspace);

/* Winograd F(2x2, 3x3) convolution (conv_winograd.c) for 3x3 kernels, stride 1, one group, channel counts that are
 * multiples of 16 and enough 2x2 output blocks to pay for transforming the weights. y = the convolution of x with
 * w (K, 3, 3, C) through the epilogue ep (NULL: none), or y += the convolution with accumulate (ep NULL); with
 * `flipped`, w is (C, 3, 3, K) and the convolution uses it mirrored in space with its channels swapped (the input
 * gradient of w's own convolution). */
bool kelp_cpu_conv_winograd_fits(const kelp_conv_desc *d);
size_t kelp_cpu_conv_winograd_workspace(int threads, const kelp_conv_desc *d);
void kelp_cpu_conv_winograd(int threads, const kelp_conv_desc *d, const float *x, const float *w, bool flipped,
                            const kelp_conv_epilogue *ep, bool accumulate, float *y, float *workspace);
/* dw (K, 3, 3, C) += the weight gradient of that convolution. */
size_t kelp_cpu_conv_winograd_filter_workspace(const kelp_conv_desc *d);
void kelp_cpu_conv_winograd_backward_filter(int threads, const kelp_conv_desc *d, const float *x, const float *dy,
                                            float *dw, float *workspace);

/* ---- per-channel bias over rows (N*H*W, C) ---- */
void kelp_cpu_bias_add(int threads, int64_t rows, int c, const float *bias, float *y);
/* y (rows, C) = a convolution's epilogue applied to y (kernels/descs.h) */
void kelp_cpu_conv_epilogue(int threads, int64_t rows, int c, const kelp_conv_epilogue *ep, float *y);
void kelp_cpu_bias_backward(int threads, int64_t rows, int c, const float *dy, float *db);

/* ---- batch norm over rows (N*H*W, C); PyTorch semantics: biased variance to normalize, unbiased variance into the
 * running estimate, running = (1 - momentum) * running + momentum * batch ---- */
void kelp_cpu_batchnorm_forward_train(int threads, int64_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, float *running_mean, float *running_var, float momentum,
                                      float eps, float *y, float *save_mean, float *save_invstd);
void kelp_cpu_batchnorm_forward_infer(int threads, int64_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, const float *running_mean, const float *running_var,
                                      float eps, float *y);
void kelp_cpu_batchnorm_backward(int threads, int64_t rows, int c, const float *x, const float *dy,
                                 const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                                 float *dgamma, float *dbeta);
/* Backward through the running statistics (eval mode, e.g. a frozen backbone): the normalization is a fixed
 * per-channel affine map, so dx = dy * gamma * invstd. dx, dgamma, dbeta may be NULL. */
void kelp_cpu_batchnorm_backward_infer(int threads, int64_t rows, int c, const float *x, const float *dy,
                                       const float *gamma, const float *running_mean, const float *running_var,
                                       float eps, float *dx, float *dgamma, float *dbeta);

/* ---- elementwise ---- */
void kelp_cpu_activation_forward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x, float *y);
void kelp_cpu_activation_backward(int threads, kelp_act_kind kind, float alpha, int64_t n, const float *x,
                                  const float *y, const float *dy, float *dx);
void kelp_cpu_add(int threads, int64_t n, const float *a, const float *b, float *y);     /* y = a + b */
void kelp_cpu_axpy(int threads, int64_t n, float alpha, const float *x, float *y);       /* y += alpha x */
void kelp_cpu_scale(int threads, int64_t n, float alpha, float *x);                      /* x *= alpha */
void kelp_cpu_memset(int threads, void *dst, int value, size_t bytes);                  /* dst = value bytes */
double kelp_cpu_sum_squares(int threads, int64_t n, const float *x);

/* ---- pooling; argmax (N,OH,OW,C) int32 flat input index, only for max pooling ---- */
void kelp_cpu_pool2d_forward(int threads, const kelp_pool_desc *d, const float *x, float *y, int32_t *argmax);
void kelp_cpu_pool2d_backward(int threads, const kelp_pool_desc *d, const float *dy, const int32_t *argmax,
                              float *dx);
/* x (N,HW,C) -> y (N,C) */
void kelp_cpu_global_avg_pool_forward(int threads, int n, int hw, int c, const float *x, float *y);
void kelp_cpu_global_avg_pool_backward(int threads, int n, int hw, int c, const float *dy, float *dx);

/* ---- layout and copies ---- */
/* dst[r*dst_stride + j] (+)= src[r*src_stride + j] for j < cols: channel slices of NHWC tensors (concat). */
void kelp_cpu_copy_rows(int threads, int64_t rows, int cols, const float *src, int src_stride, float *dst,
                        int dst_stride, bool accumulate);
/* (N,H,W,C) <-> (N,C,H,W); the inverse accumulates into its output. */
void kelp_cpu_nhwc_to_nchw(int threads, int n, int h, int w, int c, const float *x, float *y);
void kelp_cpu_nchw_to_nhwc_accumulate(int threads, int n, int h, int w, int c, const float *x, float *y);

/* ---- upsampling ---- */
void kelp_cpu_upsample_forward(int threads, const kelp_upsample_desc *d, const float *x, float *y);
void kelp_cpu_upsample_backward(int threads, const kelp_upsample_desc *d, const float *dy, float *dx);

/* ---- dropout: mask[i] = keep; y = x * mask / (1 - p). The mask comes from a counter-based RNG on
 * (seed, offset + i), so it is the same on every backend and thread count. ---- */
void kelp_cpu_dropout_forward(int threads, int64_t n, float p, uint64_t seed, uint64_t offset, const float *x,
                              float *y, uint8_t *mask);
void kelp_cpu_dropout_backward(int threads, int64_t n, float p, const uint8_t *mask, const float *dy, float *dx);

/* ---- softmax cross-entropy (PyTorch's F.cross_entropy, mean reduction). probs (M,K) and norm (1: the summed
 * weight of counted rows) are saved for backward. Returns -1 when a label is outside [0,K) and not ignored. */
int kelp_cpu_softmax_xent_forward(int threads, const kelp_xent_desc *d, const float *logits, const int32_t *labels,
                                  const float *class_weights, float *loss, float *probs, float *norm);
void kelp_cpu_softmax_xent_backward(int threads, const kelp_xent_desc *d, const float *probs,
                                    const int32_t *labels, const float *class_weights, const float *norm,
                                    float dloss, float *dlogits);

/* ---- optimizers over one flat buffer ---- */
/* Both read this step's scalars from ctl and do nothing when ctl->skip is set. */
void kelp_cpu_sgd_step(int threads, int64_t n, const kelp_sgd_params *p, const kelp_step_ctl *ctl, float *param,
                       const float *grad, float *momentum_buf);
void kelp_cpu_adamw_step(int threads, int64_t n, const kelp_adamw_params *p, const kelp_step_ctl *ctl, float *param,
                         const float *grad, float *exp_avg, float *exp_avg_sq);

/* ---- input preparation: out = (pixel / 255 - mean) / std per channel (kernels/ops/prep.h), stored as d->dtype
 * (F32, BF16 or F16) ---- */
void kelp_cpu_prepare_images(int threads, const kelp_prep_desc *d, const uint8_t *pixels, void *out);

#endif
