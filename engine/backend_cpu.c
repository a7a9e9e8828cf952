/* The CPU backend: host memory and the kernels of kernels/cpu. It is the reference every other backend is tested
 * against, so it wraps the kernels without adding behaviour of its own; BF16 and F16 activations reach the float
 * kernels as float copies (backend_cpu_lowp.h). */
#include "engine/backend.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/backend_cpu_lowp.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops/batchnorm.h"
#include "kernels/ops/half.h"
#include "kernels/ops/optim.h"
#include "kernels/ops/rng.h"

typedef struct cpu_impl {
    int threads;
} cpu_impl;

static int threads_of(kelp_backend *be) { return ((cpu_impl *)be->impl)->threads; }

static void cpu_destroy(kelp_backend *be)
{
    free(be->impl);
    free(be);
}

/* Every op on float storage; BF16 and F16 activations through float scratch. The optimizers update the float
 * master parameters only. */
static bool cpu_supports(kelp_backend *be, kelp_op op, kelp_dtype dtype)
{
    (void)be;
    if ((unsigned)op >= KELP_OP_COUNT)
        return false;
    if (op == KELP_OP_SGD || op == KELP_OP_ADAMW)
        return dtype == KELP_F32;
    return kelp_dtype_is_float(dtype);
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

/* ---- ops on activations: each names its storage type; BF16 and F16 go through float scratch
 * (backend_cpu_lowp.h), F32 straight to the kernel ---- */

static kelp_status cpu_gemm(kelp_backend *be, kelp_dtype dt, bool ta, bool tb, int m, int n, int k, float alpha,
                            const void *a, int lda, const void *b, int ldb, float beta, void *c, int ldc)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "gemm", dt, threads_of(be));
    /* A is stored (K,M) when transposed, B (N,K) */
    const float *fa = kelp_lowp_in_rows(&s, a, ta ? k : m, ta ? m : k, &lda);
    const float *fb = kelp_lowp_in_rows(&s, b, tb ? n : k, tb ? k : n, &ldb);
    float *fc = kelp_lowp_out_rows(&s, c, m, n, &ldc, beta != 0.0f);
    if (kelp_lowp_ok(&s))
        kelp_cpu_gemm(threads_of(be), ta, tb, m, n, k, alpha, fa, lda, fb, ldb, beta, fc, ldc);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_convert(kelp_backend *be, int64_t n, kelp_dtype src_dt, const void *x, kelp_dtype dst_dt,
                               void *y, bool accumulate)
{
    KELP_TRY(kelp_lowp_check("convert", src_dt));
    KELP_TRY(kelp_lowp_check("convert", dst_dt));
    kelp_lowp_convert(threads_of(be), n, src_dt, x, dst_dt, y, accumulate);
    return KELP_OK;
}

static int64_t conv_x_len(const kelp_conv_desc *d) { return (int64_t)d->n * d->h * d->w * d->c; }
static int64_t conv_w_len(const kelp_conv_desc *d)
{
    return d->groups > 0 ? (int64_t)d->k * d->r * d->s * (d->c / d->groups) : 0;
}
static int64_t conv_y_len(const kelp_conv_desc *d) { return (int64_t)d->n * d->oh * d->ow * d->k; }

static kelp_status cpu_conv2d_workspace(kelp_backend *be, const kelp_conv_desc *d, size_t *out)
{
    KELP_TRY(kelp_lowp_check("conv2d_workspace", d->dtype));
    /* the kernels see float copies, so the float workspace serves every dtype */
    *out = kelp_cpu_conv2d_workspace(threads_of(be), d);
    return KELP_OK;
}

static kelp_status cpu_conv2d_forward_fused(kelp_backend *be, const kelp_conv_desc *d, const void *x,
                                            const void *w, const kelp_conv_epilogue *ep, void *y, void *ws)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "conv2d_forward", d->dtype, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, conv_x_len(d)), *fw = kelp_lowp_in(&s, w, conv_w_len(d));
    float *fy = kelp_lowp_out(&s, y, conv_y_len(d), false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_conv2d_forward(threads_of(be), d, fx, fw, ep, fy, ws);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_conv2d_forward(kelp_backend *be, const kelp_conv_desc *d, const void *x, const void *w,
                                      const float *bias, void *y, void *ws)
{
    const kelp_conv_epilogue ep = {.shift = bias};
    return cpu_conv2d_forward_fused(be, d, x, w, &ep, y, ws);
}

static kelp_status cpu_conv2d_backward_data(kelp_backend *be, const kelp_conv_desc *d, const void *dy,
                                            const void *w, void *dx, void *ws)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "conv2d_backward_data", d->dtype, threads_of(be));
    const float *fdy = kelp_lowp_in(&s, dy, conv_y_len(d)), *fw = kelp_lowp_in(&s, w, conv_w_len(d));
    float *fdx = kelp_lowp_out(&s, dx, conv_x_len(d), true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_conv2d_backward_data(threads_of(be), d, fdy, fw, fdx, ws);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_conv2d_backward_filter(kelp_backend *be, const kelp_conv_desc *d, const void *x,
                                              const void *dy, void *dw, float *db, void *ws)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "conv2d_backward_filter", d->dtype, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, conv_x_len(d)), *fdy = kelp_lowp_in(&s, dy, conv_y_len(d));
    float *fdw = kelp_lowp_out(&s, dw, conv_w_len(d), true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_conv2d_backward_filter(threads_of(be), d, fx, fdy, fdw, db, ws);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_bias_add(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const float *bias, void *y)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "bias_add", dt, threads_of(be));
    float *fy = kelp_lowp_out(&s, y, rows * c, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_bias_add(threads_of(be), rows, c, bias, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_bias_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *dy,
                                     float *db)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "bias_backward", dt, threads_of(be));
    const float *fdy = kelp_lowp_in(&s, dy, rows * c);
    if (kelp_lowp_ok(&s))
        kelp_cpu_bias_backward(threads_of(be), rows, c, fdy, db);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_bn_train(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                const float *gamma, const float *beta, float *rm, float *rv, float momentum,
                                float eps, void *y, float *save_mean, float *save_invstd)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "batchnorm_forward_train", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, rows * c);
    float *fy = kelp_lowp_out(&s, y, rows * c, false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_batchnorm_forward_train(threads_of(be), rows, c, fx, gamma, beta, rm, rv, momentum, eps, fy,
                                         save_mean, save_invstd);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_bn_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                const float *gamma, const float *beta, const float *rm, const float *rv, float eps,
                                void *y)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "batchnorm_forward_infer", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, rows * c);
    float *fy = kelp_lowp_out(&s, y, rows * c, false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_batchnorm_forward_infer(threads_of(be), rows, c, fx, gamma, beta, rm, rv, eps, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_bn_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                   const void *dy, const float *gamma, const float *save_mean,
                                   const float *save_invstd, float eps, void *dx, float *dgamma, float *dbeta)
{
    (void)eps; /* in save_invstd */
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "batchnorm_backward", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, rows * c), *fdy = kelp_lowp_in(&s, dy, rows * c);
    float *fdx = kelp_lowp_out(&s, dx, rows * c, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_batchnorm_backward(threads_of(be), rows, c, fx, fdy, gamma, save_mean, save_invstd, fdx, dgamma,
                                    dbeta);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_bn_backward_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                         const void *dy, const float *gamma, const float *rm, const float *rv,
                                         float eps, void *dx, float *dgamma, float *dbeta)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "batchnorm_backward_infer", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, rows * c), *fdy = kelp_lowp_in(&s, dy, rows * c);
    float *fdx = kelp_lowp_out(&s, dx, rows * c, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_batchnorm_backward_infer(threads_of(be), rows, c, fx, fdy, gamma, rm, rv, eps, fdx, dgamma, dbeta);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_act_forward(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha, int64_t n,
                                   const void *x, void *y)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "activation_forward", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, n);
    float *fy = kelp_lowp_out(&s, y, n, false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_activation_forward(threads_of(be), kind, alpha, n, fx, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_act_backward(kelp_backend *be, kelp_dtype dt, kelp_act_kind kind, float alpha, int64_t n,
                                    const void *x, const void *y, const void *dy, void *dx)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "activation_backward", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, n), *fy = kelp_lowp_in(&s, y, n), *fdy = kelp_lowp_in(&s, dy, n);
    float *fdx = kelp_lowp_out(&s, dx, n, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_activation_backward(threads_of(be), kind, alpha, n, fx, fy, fdy, fdx);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_add(kelp_backend *be, kelp_dtype dt, int64_t n, const void *a, const void *b, void *y)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "add", dt, threads_of(be));
    const float *fa = kelp_lowp_in(&s, a, n), *fb = kelp_lowp_in(&s, b, n);
    float *fy = kelp_lowp_out(&s, y, n, false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_add(threads_of(be), n, fa, fb, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_axpy(kelp_backend *be, kelp_dtype dt, int64_t n, float alpha, const void *x, void *y)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "axpy", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, n);
    float *fy = kelp_lowp_out(&s, y, n, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_axpy(threads_of(be), n, alpha, fx, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_scale(kelp_backend *be, int64_t n, float alpha, float *x)
{
    kelp_cpu_scale(threads_of(be), n, alpha, x);
    return KELP_OK;
}

static kelp_status cpu_sum_squares(kelp_backend *be, int64_t n, const float *x, double *acc)
{
    *acc += kelp_cpu_sum_squares(threads_of(be), n, x);
    return KELP_OK;
}

static int64_t pool_x_len(const kelp_pool_desc *d) { return (int64_t)d->n * d->h * d->w * d->c; }
static int64_t pool_y_len(const kelp_pool_desc *d) { return (int64_t)d->n * d->oh * d->ow * d->c; }

static kelp_status cpu_pool_forward(kelp_backend *be, const kelp_pool_desc *d, const void *x, void *y,
                                    int32_t *argmax)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "pool2d_forward", d->dtype, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, pool_x_len(d));
    float *fy = kelp_lowp_out(&s, y, pool_y_len(d), false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_pool2d_forward(threads_of(be), d, fx, fy, argmax);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_pool_backward(kelp_backend *be, const kelp_pool_desc *d, const void *dy,
                                     const int32_t *argmax, void *dx)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "pool2d_backward", d->dtype, threads_of(be));
    const float *fdy = kelp_lowp_in(&s, dy, pool_y_len(d));
    float *fdx = kelp_lowp_out(&s, dx, pool_x_len(d), true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_pool2d_backward(threads_of(be), d, fdy, argmax, fdx);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_gap_forward(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *x, void *y)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "global_avg_pool_forward", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, (int64_t)n * hw * c);
    float *fy = kelp_lowp_out(&s, y, (int64_t)n * c, false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_global_avg_pool_forward(threads_of(be), n, hw, c, fx, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_gap_backward(kelp_backend *be, kelp_dtype dt, int n, int hw, int c, const void *dy,
                                    void *dx)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "global_avg_pool_backward", dt, threads_of(be));
    const float *fdy = kelp_lowp_in(&s, dy, (int64_t)n * c);
    float *fdx = kelp_lowp_out(&s, dx, (int64_t)n * hw * c, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_global_avg_pool_backward(threads_of(be), n, hw, c, fdy, fdx);
    return kelp_lowp_end(&s);
}

/* Only the copied columns are widened and narrowed: the rest of a concat's rows belongs to other inputs. */
static kelp_status cpu_copy_rows(kelp_backend *be, kelp_dtype dt, int64_t rows, int cols, const void *src,
                                 int src_stride, void *dst, int dst_stride, bool accumulate)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "copy_rows", dt, threads_of(be));
    const float *fsrc = kelp_lowp_in_rows(&s, src, rows, cols, &src_stride);
    float *fdst = kelp_lowp_out_rows(&s, dst, rows, cols, &dst_stride, accumulate);
    if (kelp_lowp_ok(&s))
        kelp_cpu_copy_rows(threads_of(be), rows, cols, fsrc, src_stride, fdst, dst_stride, accumulate);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_nhwc_to_nchw(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c, const void *x,
                                    void *y)
{
    const int64_t len = (int64_t)n * h * w * c;
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "nhwc_to_nchw", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, len);
    float *fy = kelp_lowp_out(&s, y, len, false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_nhwc_to_nchw(threads_of(be), n, h, w, c, fx, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_nchw_to_nhwc_acc(kelp_backend *be, kelp_dtype dt, int n, int h, int w, int c,
                                        const void *x, void *y)
{
    const int64_t len = (int64_t)n * h * w * c;
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "nchw_to_nhwc_accumulate", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, len);
    float *fy = kelp_lowp_out(&s, y, len, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_nchw_to_nhwc_accumulate(threads_of(be), n, h, w, c, fx, fy);
    return kelp_lowp_end(&s);
}

static int64_t upsample_x_len(const kelp_upsample_desc *d) { return (int64_t)d->n * d->h * d->w * d->c; }
static int64_t upsample_y_len(const kelp_upsample_desc *d) { return (int64_t)d->n * d->oh * d->ow * d->c; }

static kelp_status cpu_upsample_forward(kelp_backend *be, const kelp_upsample_desc *d, const void *x, void *y)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "upsample_forward", d->dtype, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, upsample_x_len(d));
    float *fy = kelp_lowp_out(&s, y, upsample_y_len(d), false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_upsample_forward(threads_of(be), d, fx, fy);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_upsample_backward(kelp_backend *be, const kelp_upsample_desc *d, const void *dy, void *dx)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "upsample_backward", d->dtype, threads_of(be));
    const float *fdy = kelp_lowp_in(&s, dy, upsample_y_len(d));
    float *fdx = kelp_lowp_out(&s, dx, upsample_x_len(d), true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_upsample_backward(threads_of(be), d, fdy, fdx);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_dropout_forward(kelp_backend *be, kelp_dtype dt, int64_t n, float p, kelp_rng_seed seed,
                                       uint64_t offset, const void *x, void *y, uint8_t *mask)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "dropout_forward", dt, threads_of(be));
    const float *fx = kelp_lowp_in(&s, x, n);
    float *fy = kelp_lowp_out(&s, y, n, false);
    if (kelp_lowp_ok(&s))
        kelp_cpu_dropout_forward(threads_of(be), n, p, kelp_rng_seed_value(&seed), offset, fx, fy, mask);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_dropout_backward(kelp_backend *be, kelp_dtype dt, int64_t n, float p, const uint8_t *mask,
                                        const void *dy, void *dx)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "dropout_backward", dt, threads_of(be));
    const float *fdy = kelp_lowp_in(&s, dy, n);
    float *fdx = kelp_lowp_out(&s, dx, n, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_dropout_backward(threads_of(be), n, p, mask, fdy, fdx);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_xent_forward(kelp_backend *be, const kelp_xent_desc *d, const void *logits,
                                    const int32_t *labels, const float *w, float *loss, float *probs, float *norm)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "softmax_xent_forward", d->dtype, threads_of(be));
    const float *flogits = kelp_lowp_in(&s, logits, d->rows * d->classes);
    int bad_label = 0;
    if (kelp_lowp_ok(&s))
        bad_label = kelp_cpu_softmax_xent_forward(threads_of(be), d, flogits, labels, w, loss, probs, norm);
    KELP_TRY(kelp_lowp_end(&s));
    if (bad_label)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "softmax_cross_entropy: a label is outside [0, %d) and is not the ignore index %d",
                              d->classes, d->ignore_index);
    return KELP_OK;
}

static kelp_status cpu_xent_backward(kelp_backend *be, const kelp_xent_desc *d, const float *probs,
                                     const int32_t *labels, const float *w, const float *norm, const float *dloss,
                                     void *dlogits)
{
    kelp_lowp_scope s;
    kelp_lowp_begin(&s, "softmax_xent_backward", d->dtype, threads_of(be));
    float *fdlogits = kelp_lowp_out(&s, dlogits, d->rows * d->classes, true);
    if (kelp_lowp_ok(&s))
        kelp_cpu_softmax_xent_backward(threads_of(be), d, probs, labels, w, norm, *dloss, fdlogits);
    return kelp_lowp_end(&s);
}

static kelp_status cpu_step_check(kelp_backend *be, const float *loss, kelp_step_ctl *ctl)
{
    (void)be;
    kelp_step_check(ctl, loss);
    return KELP_OK;
}

static kelp_status cpu_sgd(kelp_backend *be, int64_t n, const kelp_sgd_params *p, const kelp_step_ctl *ctl,
                           float *param, const float *grad, float *buf)
{
    kelp_cpu_sgd_step(threads_of(be), n, p, ctl, param, grad, buf);
    return KELP_OK;
}

static kelp_status cpu_adamw(kelp_backend *be, int64_t n, const kelp_adamw_params *p, const kelp_step_ctl *ctl,
                             float *param, const float *grad, float *m, float *v)
{
    kelp_cpu_adamw_step(threads_of(be), n, p, ctl, param, grad, m, v);
    return KELP_OK;
}

/* The kernel stores d->dtype itself: there is nothing to widen. */
static kelp_status cpu_prepare_images(kelp_backend *be, const kelp_prep_desc *d, const uint8_t *host_pixels,
                                      void *out)
{
    KELP_TRY(kelp_lowp_check("prepare_images", d->dtype));
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
    .convert = cpu_convert,
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
    .step_check = cpu_step_check,
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
        "prepare_images", "convert",
    };
    return op < KELP_OP_COUNT ? names[op] : "unknown";
}
