/* Fields and checks shared by the conv2d and conv_transpose2d layers (implemented in conv2d.c). */
#ifndef KELP_ENGINE_LAYERS_CONV_COMMON_H
#define KELP_ENGINE_LAYERS_CONV_COMMON_H

#include <stdbool.h>

#include "engine/layer.h"

typedef struct kelp_conv_attrs {
    int out_channels;
    int kernel[2], stride[2], padding[2], dilation[2], output_padding[2]; /* (h, w) */
    int groups;
    bool bias;
    kelp_init_kind weight_init;
} kelp_conv_attrs;

/* Reads out_channels, kernel_size, stride, padding, dilation, groups, bias and init ("default", or
 * "kaiming_normal_fan_out" when allow_kaiming). out_channels must be divisible by groups. */
kelp_status kelp_conv_attrs_parse(const cJSON *json, bool allow_kaiming, kelp_conv_attrs *a);

/* Input 0 must be rank-4 NHWC with sizes that fit the kernels' int and channels divisible by groups. */
kelp_status kelp_conv_check_input(const kelp_shape *in, int groups);

/* The im2col matrix of a convolution with `pixels` output pixels (N*OH*OW) over `channels` input channels: its
 * row length R*S*C/G must fit an int and its size the workspace cap. For a transposed convolution the adjoint's
 * input channels are out_channels and its output pixels are the input's. */
kelp_status kelp_conv_check_columns(const kelp_conv_attrs *a, int64_t pixels, int64_t channels, const kelp_shape *in);

/* The (ohwi) weight spec with PyTorch's shape (dim0, dim1, R, S) and, with a bias, the bias spec of out_channels,
 * initialized as PyTorch does with the weight's fan_in. Returns the count. */
int kelp_conv_param_specs(const kelp_conv_attrs *a, int64_t dim0, int64_t dim1, int64_t fan_in, int64_t fan_out,
                          kelp_param_spec *specs);

#endif
