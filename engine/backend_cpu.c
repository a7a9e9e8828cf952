/* The CPU backend: host memory and the kernels of kernels/cpu. It is the reference every other backend is tested
 * against, so it wraps the kernels without adding behaviour of its own. */
#include "engine/backend.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops/batchnorm.h"

typedef struct cpu_impl {
    int threads;
} cpu_impl;

static int threads_of(kelp_backend *be) { return ((cpu_impl *)be->impl)->threads; }

static void cpu_destroy(kelp_backend *be)
{
    free(be->impl);
    free(be);
}

static bool cpu_supports(kelp_backend *be, kelp_op op, kelp_dtype dtype)
{
    (void)be;
    return op < KELP_OP_COUNT && dtype == KELP_F32;
}

/* Host buffers are 64-byte aligned: full cache lines and AVX-512 friendly loads. */
static kelp_status cpu_alloc(kelp_backend *be, size_t bytes, void **out)
{
    (void)be;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "cpu: allocation of %zu bytes overflows", bytes);
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "cpu: cannot allocate %zu bytes", bytes);
    *out = p;
    return KELP_OK;
}

static void cpu_free(kelp_backend *be, void *ptr)
{
    (void)be;
    free(ptr);
}

static kelp_status cpu_memset(kelp_backend *be, void *dst, int value, size_t bytes)
{
    if (bytes)
        kelp_cpu_memset(threads_of(be), dst, value, bytes);
    return KELP_OK;
}

static kelp_status cpu_copy(kelp_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes && dst != src)
        memmove(dst, src, bytes);
    return KELP_OK;
}

static kelp_status cpu_synchronize(kelp_backend *be)
{
    (void)be;
    return KELP_OK;
}

static kelp_status cpu_gemm(kelp_backend *be, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                            int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    kelp_cpu_gemm(threads_of(be), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return KELP_OK;
}

static kelp_status cpu_conv2d_workspace(kelp_backend *be, const kelp_conv_desc *d, size_t *out)
{
    *out = kelp_cpu_conv2d_workspace(threads_of(be), d);
    return KELP_OK;
}

static kelp_status cpu_conv2d_forward(kelp_backend *be, const kelp_conv_desc *d, const float *x, const float *w,
                                      const float *bias, float *y, void *ws)
{
    const kelp_conv_epilogue ep = {.shift = bias};
    kelp_cpu_conv2d_forward(threads_of(be), d, x, w, &ep, y, ws);
    return KELP_OK;
}

static kelp_status cpu_conv2d_forward_fused(kelp_backend *be, const kelp_conv_desc *d, const float *x,
                                            const float *w, const kelp_conv_epilogue *ep, float *y, void *ws)
{
    kelp_cpu_conv2d_forward(threads_of(be), d, x, w, ep, y, ws);
    return KELP_OK;
}

static kelp_status cpu_conv2d_backward_data(kelp_backend *be, const kelp_conv_desc *d, const float *dy,
                                            const float *w, float *dx, void *ws)
{
    kelp_cpu_conv2d_backward_data(threads_of(be), d, dy, w, dx, ws);
    return KELP_OK;
}

static kelp_status cpu_conv2d_backward_filter(kelp_backend *be, const kelp_conv_desc *d, const float *x,
                                              const float *dy, float *dw, float *db, void *ws)
{
    kelp_cpu_conv2d_backward_filter(threads_of(be), d, x, dy, dw, db, ws);
    return KELP_OK;
}

static kelp_status cpu_bias_add(kelp_backend *be, int64_t rows, int c, const float *bias, float *y)
{
    kelp_cpu_bias_add(threads_of(be), rows, c, bias, y);
    return KELP_OK;
}

static kelp_status cpu_bias_backward(kelp_backend *be, int64_t rows, int c, const float *dy, float *db)
{
    kelp_cpu_bias_backward(threads_of(be), rows, c, dy, db);
    return KELP_OK;
}

static kelp_status cpu_bn_train(kelp_backend *be, int64_t rows, int c, const float *x, const float *gamma,
                                const float *beta, float *rm, float *rv, float momentum, float eps, float *y,
                                float *save_mean, float *save_invstd)
{
    kelp_cpu_batchnorm_forward_train(threads_of(be), rows, c, x, gamma, beta, rm, rv, momentum, eps, y, save_mean,
                                     save_invstd);
    return KELP_OK;
}

static kelp_status cpu_bn_infer(kelp_backend *be, int64_t rows, int c, const float *x, const float *gamma,
                                const float *beta, const float *rm, const float *rv, float eps, float *y)
{
    kelp_cpu_batchnorm_forward_infer(threads_of(be), rows, c, x, gamma, beta, rm, rv, eps, y);
    return KELP_OK;
}

static kelp_status cpu_bn_backward(kelp_backend *be, int64_t rows, int c, const float *x, const float *dy,
                                   const float *gamma, const float *save_mean, const float *save_invstd, float eps,
                                   float *dx, float *dgamma, float *dbeta)
{
    (void)eps; /* in save_invstd */
    kelp_cpu_batchnorm_backward(threads_of(be), rows, c, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
    return KELP_OK;
}

static kelp_status cpu_bn_backward_infer(kelp_backend *be, int64_t rows, int c, const float *x, const float *dy,
                                         const float *gamma, const float *rm, const float *rv, float eps, float *dx,
                                         float *dgamma, float *dbeta)
{
    kelp_cpu_batchnorm_backward_infer(threads_of(be), rows, c, x, dy, gamma, rm, rv, eps, dx, dgamma, dbeta);
    return KELP_OK;
}

static kelp_status cpu_act_forward(kelp_backend *be, kelp_act_kind kind, float alpha, int64_t n, const float *x,
                                   float *y)
{
    kelp_cpu_activation_forward(threads_of(be), kind, alpha, n, x, y);
    return KELP_OK;
}

static kelp_status cpu_act_backward(kelp_backend *be, kelp_act_kind kind, float alpha, int64_t n, const float *x,
                                    const float *y, const float *dy, float *dx)
{
    kelp_cpu_activation_backward(threads_of(be), kind, alpha, n, x, y, dy, dx);
    return KELP_OK;
}

static kelp_status cpu_add(kelp_backend *be, int64_t n, const float *a, const float *b, float *y)
{
    kelp_cpu_add(threads_of(be), n, a, b, y);
    return KELP_OK;
}

static kelp_status cpu_axpy(kelp_backend *be, int64_t n, float alpha, const float *x, float *y)
{
    kelp_cpu_axpy(threads_of(be), n, alpha, x, y);
    return KELP_OK;
}

static kelp_status cpu_scale(kelp_backend *be, int64_t n, float alpha, float *x)
{
    kelp_cpu_scale(threads_of(be), n, alpha, x);
    return KELP_OK;
}

static kelp_status cpu_sum_squares(kelp_backend *be, int64_t n, const float *x, double *out)
{
    *out = kelp_cpu_sum_squares(threads_of(be), n, x);
    return KELP_OK;
}

static kelp_status cpu_pool_forward(kelp_backend *be, const kelp_pool_desc *d, const float *x, float *y,
                                    int32_t *argmax)
{
    kelp_cpu_pool2d_forward(threads_of(be), d, x, y, argmax);
    return KELP_OK;
}

static kelp_status cpu_pool_backward(kelp_backend *be, const kelp_pool_desc *d, const float *dy,
                                     const int32_t *argmax, float *dx)
{
    kelp_cpu_pool2d_backward(threads_of(be), d, dy, argmax, dx);
    return KELP_OK;
}

static kelp_status cpu_gap_forward(kelp_backend *be, int n, int hw, int c, const float *x, float *y)
{
    kelp_cpu_global_avg_pool_forward(threads_of(be), n, hw, c, x, y);
    return KELP_OK;
}

static kelp_status cpu_gap_backward(kelp_backend *be, int n, int hw, int c, const float *dy, float *dx)
{
    kelp_cpu_global_avg_pool_backward(threads_of(be), n, hw, c, dy, dx);
    return KELP_OK;
}

static kelp_status cpu_copy_rows(kelp_backend *be, int64_t rows, int cols, const float *src, int src_stride,
                                 float *dst, int dst_stride, bool accumulate)
{
    kelp_cpu_copy_rows(threads_of(be), rows, cols, src, src_stride, dst, dst_stride, accumulate);
    return KELP_OK;
}

static kelp_status cpu_nhwc_to_nchw(kelp_backend *be, int n, int h, int w, int c, const float *x, float *y)
{
    kelp_cpu_nhwc_to_nchw(threads_of(be), n, h, w, c, x, y);
    return KELP_OK;
}

static kelp_status cpu_nchw_to_nhwc_acc(kelp_backend *be, int n, int h, int w, int c, const float *x, float *y)
{
    kelp_cpu_nchw_to_nhwc_accumulate(threads_of(be), n, h, w, c, x, y);
    return KELP_OK;
}

static kelp_status cpu_upsample_forward(kelp_backend *be, const kelp_upsample_desc *d, const float *x, float *y)
{
    kelp_cpu_upsample_forward(threads_of(be), d, x, y);
    return KELP_OK;
}

static kelp_status cpu_upsample_backward(kelp_backend *be, const kelp_upsample_desc *d, const float *dy, float *dx)
{
    kelp_cpu_upsample_backward(threads_of(be), d, dy, dx);
    return KELP_OK;
}

static kelp_status cpu_dropout_forward(kelp_backend *be, int64_t n, float p, uint64_t seed, uint64_t offset,
                                       const float *x, float *y, uint8_t *mask)
{
    kelp_cpu_dropout_forward(threads_of(be), n, p, seed, offset, x, y, mask);
    return KELP_OK;
}

static kelp_status cpu_dropout_backward(kelp_backend *be, int64_t n, float p, const uint8_t *mask,
                                        const float *dy, float *dx)
{
    kelp_cpu_dropout_backward(threads_of(be), n, p, mask, dy, dx);
    return KELP_OK;
}

static kelp_status cpu_xent_forward(kelp_backend *be, const kelp_xent_desc *d, const float *logits,
                                    const int32_t *labels, const float *w, float *loss, float *probs, float *norm)
{
    if (kelp_cpu_softmax_xent_forward(threads_of(be), d, logits, labels, w, loss, probs, norm) != 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "softmax_cross_entropy: a label is outside [0, %d) and is not the ignore index %d",
                              d->classes, d->ignore_index);
    return KELP_OK;
}

static kelp_status cpu_xent_backward(kelp_backend *be, const kelp_xent_desc *d, const float *probs,
                                     const int32_t *labels, const float *w, const float *norm, const float *dloss,
                                     float *dlogits)
{
    kelp_cpu_softmax_xent_backward(threads_of(be), d, probs, labels, w, norm, *dloss, dlogits);
    return KELP_OK;
}

static kelp_status cpu_sgd(kelp_backend *be, int64_t n, const kelp_sgd_params *p, float *param, const float *grad,
                           float *buf)
{
    kelp_cpu_sgd_step(threads_of(be), n, p, param, grad, buf);
    return KELP_OK;
}

static kelp_status cpu_adamw(kelp_backend *be, int64_t n, const kelp_adamw_params *p, float *param,
                             const float *grad, float *m, float *v)
{
    kelp_cpu_adamw_step(threads_of(be), n, p, param, grad, m, v);
    return KELP_OK;
}

static kelp_status cpu_prepare_images(kelp_backend *be, const kelp_prep_desc *d, const uint8_t *host_pixels,
                                      float *out)
{
    kelp_cpu_prepare_images(threads_of(be), d, host_pixels, out);
    return KELP_OK;
}

static kelp_status cpu_bn_fold(kelp_backend *be, int c, const float *gamma, const float *beta, const float *mean,
                               const float *var, float eps, const float *conv_bias, float *scale, float *shift)
{
    (void)be;
    for (int k = 0; k < c; k++)
        kelp_bn_fold(gamma[k], beta[k], mean[k], var[k], eps, conv_bias ? (double)conv_bias[k] : 0.0, &scale[k],
                     &shift[k]);
    return KELP_OK;
}

static kelp_status cpu_counter_add(kelp_backend *be, int64_t *counter, int64_t delta)
{
    (void)be;
    *counter += delta;
    return KELP_OK;
}

static const kelp_backend_iface cpu_iface = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .supports = cpu_supports,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset = cpu_memset,
    .copy = cpu_copy,
    .upload = cpu_copy,
    .download = cpu_copy,
    .synchronize = cpu_synchronize,
    .gemm = cpu_gemm,
    .conv2d_workspace = cpu_conv2d_workspace,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_forward_fused = cpu_conv2d_forward_fused,
    .batchnorm_fold = cpu_bn_fold,
    .conv2d_backward_data = cpu_conv2d_backward_data,
    .conv2d_backward_filter = cpu_conv2d_backward_filter,
    .bias_add = cpu_bias_add,
    .bias_backward = cpu_bias_backward,
    .batchnorm_forward_train = cpu_bn_train,
    .batchnorm_forward_infer = cpu_bn_infer,
    .batchnorm_backward = cpu_bn_backward,
    .batchnorm_backward_infer = cpu_bn_backward_infer,
    .activation_forward = cpu_act_forward,
    .activation_backward = cpu_act_backward,
    .add = cpu_add,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .counter_add = cpu_counter_add,
    .sum_squares = cpu_sum_squares,
    .pool2d_forward = cpu_pool_forward,
    .pool2d_backward = cpu_pool_backward,
    .global_avg_pool_forward = cpu_gap_forward,
    .global_avg_pool_backward = cpu_gap_backward,
    .copy_rows = cpu_copy_rows,
    .nhwc_to_nchw = cpu_nhwc_to_nchw,
    .nchw_to_nhwc_accumulate = cpu_nchw_to_nhwc_acc,
    .upsample_forward = cpu_upsample_forward,
    .upsample_backward = cpu_upsample_backward,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .softmax_xent_forward = cpu_xent_forward,
    .softmax_xent_backward = cpu_xent_backward,
    .sgd_step = cpu_sgd,
    .adamw_step = cpu_adamw,
    .prepare_images = cpu_prepare_images,
};

kelp_status kelp_backend_cpu_create(int threads, kelp_backend **out)
{
    if (threads < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "cpu backend: thread count %d is negative", threads);
#ifdef _OPENMP
    /* OpenMP's default team: OMP_NUM_THREADS when set (as a PyTorch user expects), else every core */
    if (threads == 0)
        threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    kelp_backend *be = calloc(1, sizeof *be);
    cpu_impl *impl = calloc(1, sizeof *impl);
    if (!be || !impl) {
        free(be);
        free(impl);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "cpu backend: out of memory");
    }
    impl->threads = threads;
    kelp_cpu_gemm_init();
    be->iface = &cpu_iface;
    be->impl = impl;
    *out = be;
    return KELP_OK;
}

int kelp_backend_cpu_threads(const kelp_backend *be) { return ((const cpu_impl *)be->impl)->threads; }

void kelp_backend_destroy(kelp_backend *be)
{
    if (be)
        be->iface->destroy(be);
}

const char *kelp_op_name(kelp_op op)
{
    static const char *const names[KELP_OP_COUNT] = {
        "gemm",    "conv2d",  "bias",     "batchnorm", "activation",  "elementwise", "pool2d", "global_avg_pool",
        "copy_rows", "layout", "upsample", "dropout",  "softmax_xent", "sgd",        "adamw",
        "prepare_images",
    };
    return op < KELP_OP_COUNT ? names[op] : "unknown";
}
