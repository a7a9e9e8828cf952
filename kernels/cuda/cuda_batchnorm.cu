/* Batch norm over rows (N*H*W, C), custom: kelp's semantics are PyTorch's CPU ones (statistics in double, two
 * passes, NULL dx/dgamma/dbeta for inputs or parameters without gradient, a backward through the running statistics
 * for frozen layers), which cuDNN's calls do not all offer. cuda_batchnorm_select.cu decides per shape whether these
 * kernels or cuDNN's run. Per-channel sums come from
 * cuda_column_sums (double, fixed chunk order: deterministic); small per-channel kernels then apply the per-channel
 * formulas of kernels/ops/batchnorm.h, which kernels/cpu/batchnorm.c calls too, and an elementwise kernel
 * normalizes. x, y, dx and dy are in the call's storage type (loaded to float, statistics in double, stored once);
 * the parameters, statistics and per-channel factors are float. */
#include "kernels/cuda/cuda_internal.h"
#include "kernels/ops/batchnorm.h"

static unsigned channel_grid(int c) { return (unsigned)((c + CUDA_THREADS - 1) / CUDA_THREADS); }

/* Scratch for one call: the column partials, then 2*C sums, C doubles and three float vectors of C. */
typedef struct bn_scratch {
    double *partials, *sums, *mean;
    float *f0, *f1, *f2;
} bn_scratch;

static kelp_status carve(cuda_impl *ci, int64_t rows, int c, bn_scratch *s)
{
    size_t part = cuda_column_sums_scratch(rows, c), dvec = cuda_align((size_t)c * sizeof(double)),
           fvec = cuda_align((size_t)c * sizeof(float));
    char *p;
    KELP_TRY(cuda_scratch(ci, part + 3 * dvec + 3 * fvec, (void **)&p));
    s->partials = (double *)p;
    s->sums = (double *)(p + part);
    s->mean = (double *)(p + part + 2 * dvec);
    s->f0 = (float *)(p + part + 3 * dvec);
    s->f1 = (float *)(p + part + 3 * dvec + fvec);
    s->f2 = (float *)(p + part + 3 * dvec + 2 * fvec);
    return KELP_OK;
}

__global__ void bn_mean_kernel(int c, int64_t rows, const double *sums, double *mean)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c)
        mean[ch] = kelp_bn_mean(sums[ch], rows);
}

/* save_mean, save_invstd, running statistics and the float scale, from the mean and the centred sum of squares */
__global__ void bn_train_stats_kernel(int c, int64_t rows, const double *mean, const double *sq_sums,
                                      const float *gamma, float momentum, float eps, float *running_mean,
                                      float *running_var, float *save_mean, float *save_invstd, float *scale)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c)
        return;
    kelp_bn_train_channel(mean[ch], kelp_bn_biased_var(sq_sums[ch], rows), rows, gamma[ch], momentum, eps,
                          &running_mean[ch], &running_var[ch], &save_mean[ch], &save_invstd[ch], &scale[ch]);
}

__global__ void bn_infer_scale_kernel(int c, const float *gamma, const float *running_var, float eps, float *scale)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c)
        scale[ch] = kelp_bn_scale(gamma[ch], kelp_bn_invstd(running_var[ch], eps));
}

template <typename T>
__global__ void bn_apply_kernel(int64_t n, int c, const T *x, const float *mean, const float *scale,
                                const float *shift, T *y)
{
    GRID_STRIDE(i, n)
    {
        int ch = (int)(i % c);
        store(y, i, kelp_bn_apply(load(x, i), mean[ch], scale[ch], shift[ch]));
    }
}

static kelp_status apply(cuda_impl *ci, kelp_dtype dt, int64_t rows, int c, const void *x, const float *mean,
                         const float *scale, const float *shift, void *y)
{
    int64_t n = rows * c;
    return cuda_dispatch(dt, "batch_norm", [&](auto tag) {
        using T = typename decltype(tag)::type;
        bn_apply_kernel<<<cuda_grid(n), CUDA_THREADS, 0, ci->stream>>>(n, c, (const T *)x, mean, scale, shift, (T *)y);
        KELP_CUDA_LAUNCHED(bn_apply_kernel);
        return KELP_OK;
    });
}

kelp_status cuda_bn_custom_forward_train(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                         const float *gamma, const float *beta, float *running_mean,
                                         float *running_var, float momentum, float eps, void *y, float *save_mean,
                                         float *save_invstd)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    bn_scratch s;
    KELP_TRY(carve(ci, rows, c, &s));
    KELP_TRY(cuda_column_sums(ci, dt, COL_SUM, rows, c, x, NULL, NULL, NULL, s.partials, s.sums));
    bn_mean_kernel<<<channel_grid(c), CUDA_THREADS, 0, ci->stream>>>(c, rows, s.sums, s.mean);
    KELP_CUDA_LAUNCHED(bn_mean_kernel);
    KELP_TRY(cuda_column_sums(ci, dt, COL_CENTRED_SQ, rows, c, x, NULL, s.mean, NULL, s.partials, s.sums));
    bn_train_stats_kernel<<<channel_grid(c), CUDA_THREADS, 0, ci->stream>>>(
        c, rows, s.mean, s.sums, gamma, momentum, eps, running_mean, running_var, save_mean, save_invstd, s.f0);
    KELP_CUDA_LAUNCHED(bn_train_stats_kernel);
    return apply(ci, dt, rows, c, x, save_mean, s.f0, beta, y);
}

kelp_status cuda_bn_custom_forward_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                         const float *gamma, const float *beta, const float *running_mean,
                                         const float *running_var, float eps, void *y)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    float *scale;
    KELP_TRY(cuda_scratch(ci, (size_t)c * sizeof(float), (void **)&scale));
    bn_infer_scale_kernel<<<channel_grid(c), CUDA_THREADS, 0, ci->stream>>>(c, gamma, running_var, eps, scale);
    KELP_CUDA_LAUNCHED(bn_infer_scale_kernel);
    return apply(ci, dt, rows, c, x, running_mean, scale, beta, y);
}

__global__ void bn_fold_kernel(int c, const float *gamma, const float *beta, const float *mean, const float *var,
                               float eps, const float *conv_bias, float *scale, float *shift)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c)
        kelp_bn_fold(gamma[ch], beta[ch], mean[ch], var[ch], eps, conv_bias ? (double)conv_bias[ch] : 0.0,
                     &scale[ch], &shift[ch]);
}

// gamma, beta, running stats (C), conv_bias (C) or NULL -> scale, shift (C): inference fusion (graph_fuse.c)
kelp_status cuda_bn_fold(kelp_backend *be, int c, const float *gamma, const float *beta, const float *running_mean,
                         const float *running_var, float eps, const float *conv_bias, float *scale, float *shift)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (c <= 0)
        return KELP_OK;
    bn_fold_kernel<<<channel_grid(c), CUDA_THREADS, 0, ci->stream>>>(c, gamma, beta, running_mean, running_var, eps,
                                                                     conv_bias, scale, shift);
    KELP_CUDA_LAUNCHED(bn_fold_kernel);
    return KELP_OK;
}

/* dgamma, dbeta += and the per-channel factors of dx; sums = [sum dy | sum dy*(x-mean)] */
__global__ void bn_backward_stats_kernel(int c, int64_t rows, const double *sums, const float *gamma,
                                         const float *save_invstd, float *dgamma, float *dbeta, float *k,
                                         float *mean_dy, float *proj)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c)
        return;
    double sum_dy = sums[ch], sum_dy_xmu = sums[c + ch];
    if (dgamma)
        dgamma[ch] += kelp_bn_dgamma(sum_dy_xmu, save_invstd[ch]);
    if (dbeta)
        dbeta[ch] += kelp_bn_dbeta(sum_dy);
    kelp_bn_dx_factors f = kelp_bn_backward_factors(sum_dy, sum_dy_xmu, gamma[ch], save_invstd[ch], rows);
    k[ch] = f.k;
    mean_dy[ch] = f.mean_dy;
    proj[ch] = f.proj;
}

template <typename T>
__global__ void bn_dx_kernel(int64_t n, int c, const T *x, const T *dy, const float *mean, const float *k,
                             const float *mean_dy, const float *proj, T *dx)
{
    GRID_STRIDE(i, n)
    {
        int ch = (int)(i % c);
        store(dx, i, load(dx, i) + kelp_bn_dx(load(dy, i), load(x, i) - mean[ch], k[ch], mean_dy[ch], proj[ch]));
    }
}

kelp_status cuda_bn_custom_backward(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                    const void *dy, const float *gamma, const float *save_mean,
                                    const float *save_invstd, void *dx, float *dgamma, float *dbeta)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    bn_scratch s;
    KELP_TRY(carve(ci, rows, c, &s));
    KELP_TRY(cuda_column_sums(ci, dt, COL_DY_XMU, rows, c, dy, x, NULL, save_mean, s.partials, s.sums));
    bn_backward_stats_kernel<<<channel_grid(c), CUDA_THREADS, 0, ci->stream>>>(c, rows, s.sums, gamma, save_invstd,
                                                                             dgamma, dbeta, s.f0, s.f1, s.f2);
    KELP_CUDA_LAUNCHED(bn_backward_stats_kernel);
    if (!dx)
        return KELP_OK;
    int64_t n = rows * c;
    return cuda_dispatch(dt, "batch_norm backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        bn_dx_kernel<<<cuda_grid(n), CUDA_THREADS, 0, ci->stream>>>(n, c, (const T *)x, (const T *)dy, save_mean, s.f0,
                                                                    s.f1, s.f2, (T *)dx);
        KELP_CUDA_LAUNCHED(bn_dx_kernel);
        return KELP_OK;
    });
}

/* Through the running statistics: a fixed affine map per channel, dx += dy * gamma * invstd. */
__global__ void bn_backward_infer_stats_kernel(int c, const double *sums, const float *gamma,
                                               const float *running_var, float eps, float *dgamma, float *dbeta,
                                               float *k)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c)
        return;
    double invstd = kelp_bn_invstd(running_var[ch], eps);
    if (dgamma)
        dgamma[ch] += kelp_bn_dgamma(sums[c + ch], invstd);
    if (dbeta)
        dbeta[ch] += kelp_bn_dbeta(sums[ch]);
    k[ch] = kelp_bn_scale(gamma[ch], invstd);
}

template <typename T> __global__ void bn_dx_infer_kernel(int64_t n, int c, const T *dy, const float *k, T *dx)
{
    GRID_STRIDE(i, n) store(dx, i, load(dx, i) + load(dy, i) * k[i % c]);
}

kelp_status cuda_bn_backward_infer(kelp_backend *be, kelp_dtype dt, int64_t rows, int c, const void *x,
                                   const void *dy, const float *gamma, const float *running_mean,
                                   const float *running_var, float eps, void *dx, float *dgamma, float *dbeta)
{
    cuda_impl *ci;
    KELP_TRY(cuda_enter(be, &ci));
    if (rows <= 0 || c <= 0)
        return KELP_OK;
    bn_scratch s;
    KELP_TRY(carve(ci, rows, c, &s));
    KELP_TRY(cuda_column_sums(ci, dt, COL_DY_XMU, rows, c, dy, x, NULL, running_mean, s.partials, s.sums));
    bn_backward_infer_stats_kernel<<<channel_grid(c), CUDA_THREADS, 0, ci->stream>>>(c, s.sums, gamma, running_var,
                                                                                   eps, dgamma, dbeta, s.f0);
    KELP_CUDA_LAUNCHED(bn_backward_infer_stats_kernel);
    if (!dx)
        return KELP_OK;
    int64_t n = rows * c;
    return cuda_dispatch(dt, "batch_norm backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        bn_dx_infer_kernel<<<cuda_grid(n), CUDA_THREADS, 0, ci->stream>>>(n, c, (const T *)dy, s.f0, (T *)dx);
        KELP_CUDA_LAUNCHED(bn_dx_infer_kernel);
        return KELP_OK;
    });
}
