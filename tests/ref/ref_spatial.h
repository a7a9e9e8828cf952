/* Naive double-precision references for batch norm, pooling and upsampling, written from PyTorch's definitions and
 * sharing no code with the kernels. Layouts are NHWC, as in kelp. */
#ifndef KELP_REF_SPATIAL_H
#define KELP_REF_SPATIAL_H

#include <stdbool.h>
#include <stdint.h>

/* Training-mode batch norm over rows (rows, C): y, and the batch mean and biased variance per channel. */
void ref_batchnorm_train(int64_t rows, int c, const float *x, const float *gamma, const float *beta, double eps,
                         double *y, double *mean, double *var);
void ref_batchnorm_eval(int64_t rows, int c, const float *x, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, double eps, double *y);
/* Gradients of sum(y * dy) for training-mode batch norm. */
void ref_batchnorm_backward(int64_t rows, int c, const float *x, const float *dy, const float *gamma, double eps,
                            double *dx, double *dgamma, double *dbeta);

typedef struct ref_pool {
    bool max;
    int n, h, w, c;
    int kh, kw, sh, sw, ph, pw;
    bool ceil_mode, count_include_pad;
} ref_pool;

int ref_pool_out_size(int in, int kernel, int stride, int pad, bool ceil_mode);
/* y (N,OH,OW,C) */
void ref_pool_forward(const ref_pool *p, const float *x, double *y);
/* dx (N,H,W,C) of sum(y * dy); max pooling routes dy to the first maximum of each window */
void ref_pool_backward(const ref_pool *p, const float *x, const float *dy, double *dx);

typedef struct ref_upsample {
    bool bilinear;
    int n, h, w, c, oh, ow;
    bool has_scale;
    double scale_h, scale_w; /* the scale factors (output / input) when has_scale */
} ref_upsample;

void ref_upsample_forward(const ref_upsample *u, const float *x, double *y);
void ref_upsample_backward(const ref_upsample *u, const float *dy, double *dx);

#endif
