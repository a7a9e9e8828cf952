/* Shared inside the CUDA backend's .cu files: the backend context, memory helpers, launch helpers and the op
 * functions each topic file defines for the iface table (backend_cuda.cu). Not a public header. */
#ifndef KELP_CUDA_INTERNAL_H
#define KELP_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "engine/backend.h"
}
#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_dtype.h"

/* One device allocation known to the caching allocator. */
typedef struct cuda_block {
    void *ptr;
    size_t bytes;
    bool in_use;
} cuda_block;

typedef struct cuda_conv_entry cuda_conv_entry; /* cuda_dnn.cu */

/* A batch-norm shape's implementation choice (cuda_batchnorm_select.cu): -1 not yet chosen, 0 custom, 1 cuDNN. */
typedef struct cuda_bn_choice {
    int64_t rows;
    int c;
    signed char train, infer;
} cuda_bn_choice;

/* One staging buffer pair of prepare_images (cuda_prep.cu): page-locked host bytes, their device copy, and the
 * events that order their reuse. */
typedef struct cuda_prep_slot {
    void *host, *device;
    size_t bytes;
    cudaEvent_t copied;   /* on the copy stream, after the copy out of `host` into `device` */
    cudaEvent_t consumed; /* on the compute stream, after the kernel that read `device` */
    bool used;
} cuda_prep_slot;
#define CUDA_PREP_SLOTS 2

typedef struct cuda_impl {
    int device;
    cudaStream_t stream; /* every op of this backend runs on it, so memory reuse is stream-ordered */
    cublasHandle_t cublas;
    cudnnHandle_t cudnn;
    bool deterministic; /* kelp_cuda_config, fixed at create */
    bool allow_tf32;
    bool autotune;
    bool cuda_graphs;
    kelp_cuda_batchnorm batchnorm;
    /* caching allocator: every block ever cudaMalloc'ed, free or in use */
    cuda_block *blocks;
    int n_blocks, cap_blocks;
    size_t in_use, peak_in_use, reserved; /* bytes of blocks handed out, their most, and all blocks */
    /* per-op scratch (reduction partials, per-channel factors); grows, never shrinks */
    void *scratch;
    size_t scratch_bytes;
    uint64_t scratch_moves; /* times the scratch buffer was released: a captured graph holds its address */
    uint64_t capture_scratch_moves; /* scratch_moves when the capture in progress began */
    void *cublas_workspace;
    void *host_pinned; /* small page-locked buffer for scalars read back by the host */
    /* The loss's label check inside a recording (cuda_loss_optim.cu), where it may not wait: the loss raises
     * `label_flag` on the device, a recording that holds it ends with its copy into `label_flag_host` (so each
     * replay brings it back), and the next wait (download, synchronize) reads it and fails (cuda_deferred_check). */
    int *label_flag;
    int *label_flag_host;
    bool capture_checks_labels;  /* the capture in progress holds a deferred label check */
    bool label_check_pending;    /* a replay copied the flag; not read yet */
    int label_classes, label_ignore_index; /* for the message */
    cuda_conv_entry *conv_cache;
    int n_conv, cap_conv;
    cuda_bn_choice *bn_choices;
    int n_bn, cap_bn;
    /* prepare_images: its own copy stream (created at first use) and staging ring */
    cudaStream_t copy_stream;
    cuda_prep_slot prep[CUDA_PREP_SLOTS];
    int prep_next;
} cuda_impl;

#define CUDA_THREADS 256
/* Grid-stride loops cap the grid: enough blocks to fill any current GPU many times over. */
#define CUDA_MAX_BLOCKS 65536
/* for (i over [0, n)) in a kernel launched with cuda_grid(n) blocks of CUDA_THREADS */
#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static inline unsigned cuda_grid(int64_t n)
{
    int64_t blocks = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    if (blocks < 1)
        blocks = 1;
    return (unsigned)(blocks < CUDA_MAX_BLOCKS ? blocks : CUDA_MAX_BLOCKS);
}

static inline cuda_impl *cuda_of(kelp_backend *be) { return (cuda_impl *)be->impl; }

/* Whether the compute stream is being captured (engine/graph_replay.c): no allocation, wait or measurement then. */
static inline bool cuda_capturing(const cuda_impl *c)
{
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    return cudaStreamIsCapturing(c->stream, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone;
}

/* After a wait on the stream: the label check a replayed step deferred, failing like the loss's forward would
 * have (and clearing the flag for the steps after). */
kelp_status cuda_deferred_check(cuda_impl *c);

/* Makes the backend's device current for this thread (cheap when it already is) and returns its context. */
kelp_status cuda_enter(kelp_backend *be, cuda_impl **out);
kelp_status cuda_alloc_impl(cuda_impl *c, size_t bytes, void **out);
void cuda_free_impl(cuda_impl *c, void *ptr);
/* The scratch buffer, at least `bytes` long; valid until the next call that asks for scratch. */
kelp_status cuda_scratch(cuda_impl *c, size_t bytes, void **out);
/* Rounds a scratch carve-out up to 256 bytes so every region stays aligned for doubles and vector loads. */
static inline size_t cuda_align(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* ---- cuda_elementwise.cu ----
 * Activations travel as `void *` in the storage type `dt` names (cuda_dtype.h); parameters and statistics are float. */
kelp_status cuda_activation_forward(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha, int64_t n,
                                    const void *x, void *y);
kelp_status cuda_activation_backward(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha, int64_t n,
                                     const void *x, const void *y, const void *dy, void *dx);
kelp_status cuda_add(kelp_backend *be, kelp_dtype dt, int64_t n, const void *a, const void *b, void *y);
kelp_status cuda_axpy(kelp_backend *be, kelp_dtype dt, int64_t n, float alpha, const void *x, void *y);
kelp_status cuda_scale(kelp_backend *be, int64_t n, float alpha, float *x);
kelp_status cuda_sum_squares(kelp_backend *be, int64_t n, const float *x, double *acc);
kelp_status cuda_counter_add(kelp_backend *be, int64_t *counter, int64_t delta);
kelp_status cuda_convert(kelp_backend *be, int64_t n, kelp_dtype src_dt, const void *x, kelp_dtype dst_dt, void *y,
                         bool accumulate);
kelp_status cuda_bias_add(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const float *bias, void *y);
kelp_status cuda_bias_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *dy, float *db);
/* y (rows, C) in dt = a fused convolution's epilogue applied in place (kernels/ops/conv.h) */
kelp_status cuda_conv_epilogue(cuda_impl *ci, kelp_dtype dt, int64_t rows, int c, const kelp_conv_epilogue *ep,
                               void *y);
kelp_status cuda_copy_rows(kelp_backend *be, kelp_dtype dt, int64_t rows, int cols, const void *src, int src_stride,
                           void *dst, int dst_stride, bool accumulate);
kelp_status cuda_nhwc_to_nchw(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c, const void *x, void *y);
kelp_status cuda_nchw_to_nhwc_accumulate(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c, const void *x,
                                         void *y);
kelp_status cuda_dropout_forward(kelp_backend *be, kelp_dtype dt, int64_t n, float p, kelp_rng_seed seed,
                                 uint64_t offset, const void *x, void *y, uint8_t *mask);
kelp_status cuda_dropout_backward(kelp_backend *be, kelp_dtype dt, int64_t n, float p, const uint8_t *mask,
                                  const void *dy, void *dx);

/* Per-channel sums over rows (rows, C) in double, deterministic (fixed chunks, summed in order); a and b in dt.
 * mode COL_SUM: out[0][c] = sum a; COL_CENTRED_SQ: out[0][c] = sum (a - mean_d)^2; COL_DY_XMU: out[0][c] = sum a,
 * out[1][c] = sum a * (b - mean_f). `out` is device memory of 2*C doubles outside the scratch buffer's first
 * cuda_column_sums_scratch(rows, c) bytes, which the partials use. */
enum { COL_SUM = 0, COL_CENTRED_SQ = 1, COL_DY_XMU = 2 };
size_t cuda_column_sums_scratch(int64_t rows, int c);
kelp_status cuda_column_sums(cuda_impl *ci, kelp_dtype dt, int mode, int64_t rows, int c, const void *a,
                             const void *b, const double *mean_d, const float *mean_f, double *partials, double *out);

/* ---- cuda_spatial.cu (storage type in the descriptor, or dt) ---- */
kelp_status cuda_pool2d_forward(kelp_backend *be, const kelp_pool_desc *d, const void *x, void *y, int32_t *argmax);
kelp_status cuda_pool2d_backward(kelp_backend *be, const kelp_pool_desc *d, const void *dy, const int32_t *argmax,
                                 void *dx);
kelp_status cuda_global_avg_pool_forward(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *x,
                                         void *y);
kelp_status cuda_global_avg_pool_backward(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *dy,
                                          void *dx);
kelp_status cuda_upsample_forward(kelp_backend *be, const kelp_upsample_desc *d, const void *x, void *y);
kelp_status cuda_upsample_backward(kelp_backend *be, const kelp_upsample_desc *d, const void *dy, void *dx);

/* ---- cuda_dnn.cu: x, w, y, dx, dw, dy in d->dtype; bias and db float ---- */
kelp_status cuda_conv2d_workspace(kelp_backend *be, const kelp_conv_desc *d, size_t *out);
kelp_status cuda_conv2d_forward(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *w,
                                const float *bias, void *y, void *workspace);
kelp_status cuda_conv2d_forward_fused(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *w,
                                      const kelp_conv_epilogue *ep, void *y, void *workspace);
kelp_status cuda_conv2d_backward_data(kelp_backend *be, const kelp_conv_desc *d, const void *dy, const void *w,
                                      void *dx, void *workspace);
kelp_status cuda_conv2d_backward_filter(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *dy,
                                        void *dw, float *db, void *workspace);
void cuda_conv_cache_clear(cuda_impl *c);

/* ---- cuda_batchnorm.cu (the custom kernels) and cuda_batchnorm_select.cu (custom or cuDNN, per shape) ----
 * x, y, dx, dy in dt; gamma, beta, statistics and their gradients float. */
kelp_status cuda_bn_forward_train(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                  const float *gamma, const float *beta, float *running_mean, float *running_var,
                                  float momentum, float eps, void *y, float *save_mean, float *save_invstd);
kelp_status cuda_bn_forward_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                  const float *gamma, const float *beta, const float *running_mean,
                                  const float *running_var, float eps, void *y);
kelp_status cuda_bn_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x, const void *dy,
                             const float *gamma, const float *save_mean, const float *save_invstd, float eps, void *dx,
                             float *dgamma, float *dbeta);
kelp_status cuda_bn_custom_forward_train(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                         const float *gamma, const float *beta, float *running_mean,
                                         float *running_var, float momentum, float eps, void *y, float *save_mean,
                                         float *save_invstd);
kelp_status cuda_bn_custom_forward_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                         const float *gamma, const float *beta, const float *running_mean,
                                         const float *running_var, float eps, void *y);
kelp_status cuda_bn_custom_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                    const void *dy, const float *gamma, const float *save_mean,
                                    const float *save_invstd, void *dx, float *dgamma, float *dbeta);
kelp_status cuda_bn_fold(kelp_backend *be, int c, const float *gamma, const float *beta, const float *running_mean,
                         const float *running_var, float eps, const float *conv_bias, float *scale, float *shift);
kelp_status cuda_bn_backward_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                   const void *dy, const float *gamma, const float *running_mean,
                                   const float *running_var, float eps, void *dx, float *dgamma, float *dbeta);

/* ---- cuda_loss_optim.cu: logits and dlogits in d->dtype; probs, losses and optimizer state float ---- */
kelp_status cuda_xent_forward(kelp_backend *be, const kelp_xent_desc *d, const void *logits, const int32_t *labels,
                              const float *class_weights, float *loss, float *probs, float *norm);
kelp_status cuda_xent_backward(kelp_backend *be, const kelp_xent_desc *d, const float *probs, const int32_t *labels,
                               const float *class_weights, const float *norm, const float *dloss, void *dlogits);
kelp_status cuda_step_check(kelp_backend *be, const float *loss, kelp_step_ctl *ctl);
kelp_status cuda_sgd_step(kelp_backend *be, int64_t n, const kelp_sgd_params *p, const kelp_step_ctl *ctl,
                          float *param, const float *grad, float *momentum_buf);
kelp_status cuda_adamw_step(kelp_backend *be, int64_t n, const kelp_adamw_params *p, const kelp_step_ctl *ctl,
                            float *param, const float *grad, float *exp_avg, float *exp_avg_sq);

/* ---- cuda_prep.cu: writes d->dtype ---- */
kelp_status cuda_prepare_images(kelp_backend *be, const kelp_prep_desc *d, const uint8_t *host_pixels, void *out);
void cuda_prep_destroy(cuda_impl *c);

#endif
