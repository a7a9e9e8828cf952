/* Naive double-precision references for convolution, transposed convolution and linear layers. Direct loops with
 * no im2col and no GEMM, written independently of the kernels so that they check the kernels' index math. */
#ifndef KELP_REF_CONV_H
#define KELP_REF_CONV_H

#include <stdint.h>

#include "kernels/descs.h"
#include "layer_harness.h"

/* x (N,H,W,C), w (K,R,S,C/G), bias (K) or NULL -> y (N,OH,OW,K) */
void ref_conv2d_forward(const kelp_conv_desc *d, const float *x, const float *w, const float *bias, double *y);

/* PyTorch's ConvTranspose2d, each input pixel scattering into the outputs it reaches. Here d->c is the input's
 * channels, d->k the output's, d->oh/d->ow the output size: x (N,H,W,C), w (C,R,S,K/G), bias (K) or NULL
 * -> y (N,OH,OW,K). */
void ref_conv_transpose2d_forward(const kelp_conv_desc *d, const float *x, const float *w, const float *bias,
                                  double *y);

/* x (M,IN), w (OUT,IN), bias (OUT) or NULL -> y (M,OUT) */
void ref_linear_forward(int64_t rows, int in, int out, const float *x, const float *w, const float *bias, double *y);

/* Layer-test helpers for these layers' tests. */

/* Runs backward twice without zeroing and asserts that every input and parameter gradient is exactly twice the
 * first one: backward accumulates, and adds each sum once. */
void ref_assert_backward_accumulates(test_layer *t);

/* Shrinks the batch of every input and output tensor to `batch` (<= the planned one), as a graph does at run time. */
void ref_set_batch(test_layer *t, int64_t batch);

/* Asserts that every field of `json_text` is in the type's `fields` list, which the graph checks nodes against. */
void ref_assert_fields_listed(const kelp_layer_type *type, const char *json_text);

#endif
