/* The backend interface: a table of functions plus a context (ggml-backend style).
 *
 * Layers are device-agnostic: they call these functions on backend memory. A backend says which ops it supports
 * (`supports`); the engine never falls back to another device silently. Backward ops ACCUMULATE into their outputs
 * (dx += ...); the graph zeroes gradient buffers before backward. Every function returns a kelp_status and, on
 * failure, sets a message naming the op and the library error.
 *
 * Activations (and their gradients) are `void *` in a storage type the call names, `dt` or the descriptor's
 * `dtype`: F32, or BF16/F16 under mixed precision, where every op widens to float, computes in float and narrows
 * what it stores (kernels/ops/half.h). `supports(op, dtype)` says which storage types an op takes. Parameters,
 * batch-norm statistics, biases, losses and optimizer state are always float. */
#ifndef KELP_ENGINE_BACKEND_H
#define KELP_ENGINE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"
#include "kelp/tensor.h"
#include "kernels/descs.h"

typedef enum kelp_op {
    KELP_OP_GEMM = 0,
    KELP_OP_CONV2D,
    KELP_OP_BIAS,
    KELP_OP_BATCHNORM,
    KELP_OP_ACTIVATION,
    KELP_OP_ELEMENTWISE, /* add, axpy, scale, sum of squares (the last two on float optimizer buffers only) */
    KELP_OP_POOL2D,
    KELP_OP_GLOBAL_AVG_POOL,
    KELP_OP_COPY_ROWS,
    KELP_OP_LAYOUT,      /* NHWC <-> NCHW */
    KELP_OP_UPSAMPLE,
    KELP_OP_DROPOUT,
    KELP_OP_SOFTMAX_XENT,
    KELP_OP_SGD,
    KELP_OP_ADAMW,
    KELP_OP_PREPARE_IMAGES,
    KELP_OP_CONVERT,     /* between F32 and BF16/F16 storage */
    KELP_OP_COUNT
} kelp_op;

const char *kelp_op_name(kelp_op op);

typedef struct kelp_backend kelp_backend;

/* A device backend's memory, in bytes: what its allocations hold now and at most since create, and what it has
 * reserved from the device (its caching allocator keeps freed blocks). */
typedef struct kelp_device_memory {
    size_t in_use, peak, reserved;
} kelp_device_memory;

typedef struct kelp_backend_iface {
    const char *name;
    void (*destroy)(kelp_backend *be);
    bool (*supports)(kelp_backend *be, kelp_op op, kelp_dtype dtype);

    /* memory */
    kelp_status (*alloc)(kelp_backend *be, size_t bytes, void **out);
    void (*free)(kelp_backend *be, void *ptr);
    kelp_status (*memset)(kelp_backend *be, void *dst, int value, size_t bytes);
    kelp_status (*copy)(kelp_backend *be, void *dst, const void *src, size_t bytes);
    kelp_status (*upload)(kelp_backend *be, void *dst, const void *host_src, size_t bytes);
    kelp_status (*download)(kelp_backend *be, void *host_dst, const void *src, size_t bytes);
    kelp_status (*synchronize)(kelp_backend *be);
    /* Optional (NULL on the CPU, whose memory the process's peak RSS measures). */
    void (*memory_stats)(kelp_backend *be, kelp_device_memory *out);
    /* Optional (NULL: no capture; graph_replay.c): the work queued between capture_begin and capture_end is
     * recorded instead of run (CUDA graphs), and `replay` queues all of it again in one call. capture_end always
     * ends the capture; with `out` NULL it discards what was recorded. A replay whose recorded memory the backend
     * has since moved fails with KELP_ERR_UNSUPPORTED and must be captured again. */
    kelp_status (*capture_begin)(kelp_backend *be);
    kelp_status (*capture_end)(kelp_backend *be, void **out);
    kelp_status (*replay)(kelp_backend *be, void *recorded);
    void (*replay_destroy)(kelp_backend *be, void *recorded);

    /* GEMM, row-major: C = alpha op(A) op(B) + beta C; A, B and C in dt, accumulation in float */
    kelp_status (*gemm)(kelp_backend *be, kelp_dtype dt, bool trans_a, bool trans_b, int m, int n, int k,
                        float alpha, const void *a, int lda, const void *b, int ldb, float beta, void *c, int ldc);
    /* y = x (accumulate false) or y += x, element by element from src_dt to dst_dt storage, rounding to nearest
     * even: the graph's low-precision copy of the parameters, its gradients added into the float ones, inputs
     * and outputs crossing to and from float. */
    kelp_status (*convert)(kelp_backend *be, int64_t n, kelp_dtype src_dt, const void *x, kelp_dtype dst_dt, void *y,
                           bool accumulate);

    /* convolution; workspace bytes from conv2d_workspace, which may fail (no algorithm for the shape) */
    kelp_status (*conv2d_workspace)(kelp_backend *be, const kelp_conv_desc *d, size_t *out);
    kelp_status (*conv2d_forward)(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *w,
                                  const float *bias, void *y, void *workspace);
    /* Optional, with batchnorm_fold (NULL: inference graphs run the layers one by one): the forward convolution
     * with its outputs put through an epilogue before they are stored, for the batch norm and ReLU folded into it
     * (graph_fuse.c). The epilogue's scale and shift are backend memory, from batchnorm_fold or the conv's bias. */
    kelp_status (*conv2d_forward_fused)(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *w,
                                        const kelp_conv_epilogue *ep, void *y, void *workspace);
    /* A batch norm's inference map as scale and shift per channel on a convolution's sum (kernels/ops/batchnorm.h,
     * kelp_bn_fold); conv_bias NULL when the convolution has none. */
    kelp_status (*batchnorm_fold)(kelp_backend *be, int c, const float *gamma, const float *beta,
                                  const float *running_mean, const float *running_var, float eps,
                                  const float *conv_bias, float *scale, float *shift);
    kelp_status (*conv2d_backward_data)(kelp_backend *be, const kelp_conv_desc *d, const void *dy,
                                        const void *w, void *dx, void *workspace);
    /* dw in d->dtype (a low-precision weight gradient is the graph's, added into the float one once per step);
     * db float */
    kelp_status (*conv2d_backward_filter)(kelp_backend *be, const kelp_conv_desc *d, const void *x,
                                          const void *dy, void *dw, float *db, void *workspace);

    kelp_status (*bias_add)(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const float *bias, void *y);
    kelp_status (*bias_backward)(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *dy, float *db);

    /* x, y, dx, dy in dt; gamma, beta, statistics and their gradients float */
    kelp_status (*batchnorm_forward_train)(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                           const float *gamma, const float *beta, float *running_mean,
                                           float *running_var, float momentum, float eps, void *y,
                                           float *save_mean, float *save_invstd);
    kelp_status (*batchnorm_forward_infer)(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                           const float *gamma, const float *beta, const float *running_mean,
                                           const float *running_var, float eps, void *y);
    /* eps: the forward's (save_invstd already holds it; cuDNN's backward asks for it again) */
    kelp_status (*batchnorm_backward)(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                      const void *dy, const float *gamma, const float *save_mean,
                                      const float *save_invstd, float eps, void *dx, float *dgamma, float *dbeta);
    kelp_status (*batchnorm_backward_infer)(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                            const void *dy, const float *gamma, const float *running_mean,
                                            const float *running_var, float eps, void *dx, float *dgamma,
                                            float *dbeta);

    kelp_status (*activation_forward)(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha, int64_t n,
                                      const void *x, void *y);
    kelp_status (*activation_backward)(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha,
                                       int64_t n, const void *x, const void *y, const void *dy, void *dx);
    kelp_status (*add)(kelp_backend *be, kelp_dtype dt, int64_t n, const void *a, const void *b, void *y);
    kelp_status (*axpy)(kelp_backend *be, kelp_dtype dt, int64_t n, float alpha, const void *x, void *y);
    /* float only: the optimizer's gradients */
    kelp_status (*scale)(kelp_backend *be, int64_t n, float alpha, float *x);
    /* *counter += delta on one int64 in backend memory, without a round trip (batch norm's num_batches_tracked). */
    kelp_status (*counter_add)(kelp_backend *be, int64_t *counter, int64_t delta);
    /* *acc += the sum of squares of x, in double; acc is backend memory (no wait). */
    kelp_status (*sum_squares)(kelp_backend *be, int64_t n, const float *x, double *acc);

    kelp_status (*pool2d_forward)(kelp_backend *be, const kelp_pool_desc *d, const void *x, void *y,
                                  int32_t *argmax);
    kelp_status (*pool2d_backward)(kelp_backend *be, const kelp_pool_desc *d, const void *dy,
                                   const int32_t *argmax, void *dx);
    kelp_status (*global_avg_pool_forward)(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *x,
                                           void *y);
    kelp_status (*global_avg_pool_backward)(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *dy,
                                            void *dx);

    /* strides in elements */
    kelp_status (*copy_rows)(kelp_backend *be, kelp_dtype dt, int64_t rows, int cols, const void *src,
                             int src_stride, void *dst, int dst_stride, bool accumulate);
    kelp_status (*nhwc_to_nchw)(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c, const void *x, void *y);
    kelp_status (*nchw_to_nhwc_accumulate)(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c,
                                           const void *x, void *y);

    kelp_status (*upsample_forward)(kelp_backend *be, const kelp_upsample_desc *d, const void *x, void *y);
    kelp_status (*upsample_backward)(kelp_backend *be, const kelp_upsample_desc *d, const void *dy, void *dx);

    /* seed: by value, its step counter (if any) in backend memory, read when the op runs */
    kelp_status (*dropout_forward)(kelp_backend *be, kelp_dtype dt, int64_t n, float p, kelp_rng_seed seed,
                                   uint64_t offset, const void *x, void *y, uint8_t *mask);
    kelp_status (*dropout_backward)(kelp_backend *be, kelp_dtype dt, int64_t n, float p, const uint8_t *mask,
                                    const void *dy, void *dx);

    /* logits and dlogits in d->dtype; loss is a float device scalar; probs (M,K) float and norm (1) are saved
     * for backward; dloss is a float device scalar */
    kelp_status (*softmax_xent_forward)(kelp_backend *be, const kelp_xent_desc *d, const void *logits,
                                        const int32_t *labels, const float *class_weights, float *loss,
                                        float *probs, float *norm);
    kelp_status (*softmax_xent_backward)(kelp_backend *be, const kelp_xent_desc *d, const float *probs,
                                         const int32_t *labels, const float *class_weights, const float *norm,
                                         const float *dloss, void *dlogits);

    /* An optimizer step (kernels/ops/optim.h). ctl is backend memory: kelp_step_check fills its device half from
     * the loss (a float backend scalar, or NULL) and the sum of squares before the updates, which read this step's
     * learning rate and corrections from it and skip everything when it says so. */
    kelp_status (*step_check)(kelp_backend *be, const float *loss, kelp_step_ctl *ctl);
    kelp_status (*sgd_step)(kelp_backend *be, int64_t n, const kelp_sgd_params *p, const kelp_step_ctl *ctl,
                            float *param, const float *grad, float *momentum_buf);
    kelp_status (*adamw_step)(kelp_backend *be, int64_t n, const kelp_adamw_params *p, const kelp_step_ctl *ctl,
                              float *param, const float *grad, float *exp_avg, float *exp_avg_sq);

    /* A batch's uint8 pixels from HOST memory to the network's input values in backend memory: the host ships
     * bytes (a quarter of the floats) and the device normalizes. The caller may reuse `host_pixels` as soon as
     * this returns; a device backend copies them on a stream of its own, overlapping the work already queued, and
     * orders the normalization after the copy. */
    kelp_status (*prepare_images)(kelp_backend *be, const kelp_prep_desc *d, const uint8_t *host_pixels, void *out);
} kelp_backend_iface;

struct kelp_backend {
    const kelp_backend_iface *iface;
    void *impl; /* the backend's own context (threads, handles, streams) */
};

/* The CPU backend: host memory, OpenMP with `threads` threads (0 = all cores), OpenBLAS GEMM. */
kelp_status kelp_backend_cpu_create(int threads, kelp_backend **out);
int kelp_backend_cpu_threads(const kelp_backend *be);
void kelp_backend_destroy(kelp_backend *be);

#endif
