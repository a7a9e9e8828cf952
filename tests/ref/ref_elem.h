/* Double-precision references for the elementwise layers: activations, softmax cross-entropy, NCHW flatten order. */
#ifndef KELP_REF_ELEM_H
#define KELP_REF_ELEM_H

#include <stdint.h>

#include "kernels/descs.h"

double ref_activation(kelp_act_kind kind, double alpha, double x);
double ref_activation_derivative(kelp_act_kind kind, double alpha, double x);

/* PyTorch's F.cross_entropy(logits, labels, weight, ignore_index, label_smoothing, reduction='mean') over rows
 * (rows, k), written from its formula: nll and smoothing terms both divided by the summed weight of the counted
 * labels. Returns 0 when every row is ignored (kelp's choice). `weights` may be NULL. When `dlogits` is not NULL it
 * receives d loss / d logits (rows, k). */
double ref_softmax_xent(int64_t rows, int k, const float *logits, const int32_t *labels, const float *weights,
                        double label_smoothing, int ignore_index, double *dlogits);

/* Index of NHWC element (b, y, x, c) in a tensor of shape (n, h, w, c) laid out NCHW. */
int64_t ref_nchw_index(int h, int w, int channels, int b, int y, int x, int c);

#endif
