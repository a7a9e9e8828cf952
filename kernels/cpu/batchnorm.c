/* Batch norm over rows (N*H*W, C). Each task owns a block of channels and makes all its passes over it (mean,
 * centred variance, normalize), so per-channel statistics stay on the stack and no scratch buffer is needed.
 * Statistics are summed in double in two passes: rows of a million values keep full float accuracy even when the
 * mean is large next to the spread. dx, dgamma and dbeta may each be NULL (input or parameter without gradient).
 *
 * The row loops are compiled for AVX-512, AVX2 and the baseline (simd.h) and vectorize across the channels of a
 * block: each channel's sum keeps its order, so every clone gives the same bits. */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd.h"

#include "kernels/ops/batchnorm.h"

/* 16 floats: one cache line of a row, so tasks rarely share the lines they write. */
#define CHANNEL_BLOCK 16

static int block_count(int c) { return (c + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK; }

static int block_width(int c, int block)
{
    int left = c - block * CHANNEL_BLOCK;
    return left < CHANNEL_BLOCK ? left : CHANNEL_BLOCK;
}

KELP_VECTOR_CLONES
static void channel_mean(int64_t rows, int c, int nc, const float *restrict x, double *restrict mean)
{
    for (int j = 0; j < nc; j++)
        mean[j] = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < nc; j++)
            mean[j] += x[r * c + j];
    for (int j = 0; j < nc; j++)
        mean[j] = kelp_bn_mean(mean[j], rows);
}

KELP_VECTOR_CLONES
static void channel_biased_var(int64_t rows, int c, int nc, const float *restrict x, const double *restrict mean,
                               double *restrict var)
{
    for (int j = 0; j < nc; j++)
        var[j] = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < nc; j++) {
            double d = x[r * c + j] - mean[j];
            var[j] += d * d;
        }
    for (int j = 0; j < nc; j++)
        var[j] = kelp_bn_biased_var(var[j], rows);
}

KELP_VECTOR_CLONES
static void normalize_block(int64_t rows, int c, int nc, const float *restrict x, const float *restrict mean,
                            const float *restrict scale, const float *restrict shift, float *restrict y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < nc; j++)
            y[r * c + j] = kelp_bn_apply(x[r * c + j], mean[j], scale[j], shift[j]);
}

// x (rows,C) -> y (rows,C); save_mean, save_invstd (C); running_mean, running_var (C) updated in place
void kelp_cpu_batchnorm_forward_train(int threads, int64_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, float *running_mean, float *running_var, float momentum,
                                      float eps, float *y, float *save_mean, float *save_invstd)
{
    int blocks = block_count(c);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int b = 0; b < blocks; b++) {
        int c0 = b * CHANNEL_BLOCK, nc = block_width(c, b);
        double mean[CHANNEL_BLOCK], var[CHANNEL_BLOCK];
        float scale[CHANNEL_BLOCK];
        channel_mean(rows, c, nc, x + c0, mean);
        channel_biased_var(rows, c, nc, x + c0, mean, var);
        for (int j = 0; j < nc; j++) {
            int ch = c0 + j;
            kelp_bn_train_channel(mean[j], var[j], rows, gamma[ch], momentum, eps, &running_mean[ch],
                                  &running_var[ch], &save_mean[ch], &save_invstd[ch], &scale[j]);
        }
        normalize_block(rows, c, nc, x + c0, save_mean + c0, scale, beta + c0, y + c0);
    }
}

// x (rows,C) -> y (rows,C) with the running statistics
void kelp_cpu_batchnorm_forward_infer(int threads, int64_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, const float *running_mean, const float *running_var,
                                      float eps, float *y)
{
    int blocks = block_count(c);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int b = 0; b < blocks; b++) {
        int c0 = b * CHANNEL_BLOCK, nc = block_width(c, b);
        float scale[CHANNEL_BLOCK];
        for (int j = 0; j < nc; j++)
            scale[j] = kelp_bn_scale(gamma[c0 + j], kelp_bn_invstd(running_var[c0 + j], eps));
        normalize_block(rows, c, nc, x + c0, running_mean + c0, scale, beta + c0, y + c0);
    }
}

/* sum(dy) and sum(dy * (x - mean)) per channel of the block */
KELP_VECTOR_CLONES
static void backward_sums(int64_t rows, int c, int nc, const float *restrict x, const float *restrict dy,
                          const float *restrict mean, double *restrict sum_dy, double *restrict sum_dy_xmu)
{
    for (int j = 0; j < nc; j++)
        sum_dy[j] = sum_dy_xmu[j] = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < nc; j++) {
            double g = dy[r * c + j];
            sum_dy[j] += g;
            sum_dy_xmu[j] += g * ((double)x[r * c + j] - mean[j]);
        }
}

KELP_VECTOR_CLONES
static void input_grad_block(int64_t rows, int c, int nc, const float *restrict x, const float *restrict dy,
                             const float *restrict mean, const float *restrict k, const float *restrict mean_dy,
                             const float *restrict proj, float *restrict dx)
{
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < nc; j++)
            dx[r * c + j] += kelp_bn_dx(dy[r * c + j], x[r * c + j] - mean[j], k[j], mean_dy[j], proj[j]);
}

// x, dy (rows,C) -> dx (rows,C), dgamma, dbeta (C), all accumulated; save_mean, save_invstd from the forward pass
void kelp_cpu_batchnorm_backward(int threads, int64_t rows, int c, const float *x, const float *dy,
                                 const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                                 float *dgamma, float *dbeta)
{
    int blocks = block_count(c);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int b = 0; b < blocks; b++) {
        int c0 = b * CHANNEL_BLOCK, nc = block_width(c, b);
        double sum_dy[CHANNEL_BLOCK], sum_dy_xmu[CHANNEL_BLOCK];
        backward_sums(rows, c, nc, x + c0, dy + c0, save_mean + c0, sum_dy, sum_dy_xmu);
        for (int j = 0; j < nc; j++) {
            if (dgamma)
                dgamma[c0 + j] += kelp_bn_dgamma(sum_dy_xmu[j], save_invstd[c0 + j]);
            if (dbeta)
                dbeta[c0 + j] += kelp_bn_dbeta(sum_dy[j]);
        }
        if (!dx)
            continue;
        float k[CHANNEL_BLOCK], mean_dy[CHANNEL_BLOCK], proj[CHANNEL_BLOCK];
        for (int j = 0; j < nc; j++) {
            kelp_bn_dx_factors f = kelp_bn_backward_factors(sum_dy[j], sum_dy_xmu[j], gamma[c0 + j],
                                                            save_invstd[c0 + j], rows);
            k[j] = f.k;
            mean_dy[j] = f.mean_dy;
            proj[j] = f.proj;
        }
        input_grad_block(rows, c, nc, x + c0, dy + c0, save_mean + c0, k, mean_dy, proj, dx + c0);
    }
}

// x, dy (rows,C) -> dx (rows,C), dgamma, dbeta (C), all accumulated; the running statistics normalize
void kelp_cpu_batchnorm_backward_infer(int threads, int64_t rows, int c, const float *x, const float *dy,
                                       const float *gamma, const float *running_mean, const float *running_var,
                                       float eps, float *dx, float *dgamma, float *dbeta)
{
    int blocks = block_count(c);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int b = 0; b < blocks; b++) {
        int c0 = b * CHANNEL_BLOCK, nc = block_width(c, b);
        double sum_dy[CHANNEL_BLOCK], sum_dy_xmu[CHANNEL_BLOCK];
        backward_sums(rows, c, nc, x + c0, dy + c0, running_mean + c0, sum_dy, sum_dy_xmu);
        float k[CHANNEL_BLOCK];
        for (int j = 0; j < nc; j++) {
            double invstd = kelp_bn_invstd(running_var[c0 + j], eps);
            if (dgamma)
                dgamma[c0 + j] += kelp_bn_dgamma(sum_dy_xmu[j], invstd);
            if (dbeta)
                dbeta[c0 + j] += kelp_bn_dbeta(sum_dy[j]);
            k[j] = kelp_bn_scale(gamma[c0 + j], invstd);
        }
        if (!dx)
            continue;
        for (int64_t r = 0; r < rows; r++)
            for (int j = 0; j < nc; j++) {
                int64_t i = r * c + c0 + j;
                dx[i] += dy[i] * k[j];
            }
    }
}
