/* What inference fusion (engine/graph_fuse.c) asks of the layers it folds into a convolution. */
#ifndef KELP_ENGINE_LAYERS_FOLD_H
#define KELP_ENGINE_LAYERS_FOLD_H

#include "engine/layer.h"

extern const kelp_layer_type kelp_layer_conv2d, kelp_layer_batch_norm, kelp_layer_relu, kelp_layer_relu6;

/* The conv2d node's forward with its outputs put through `ep` (which then carries the conv's own bias). */
kelp_status kelp_conv2d_forward_fused(const kelp_layer_io *io, const kelp_conv_epilogue *ep);

/* A batch_norm node in inference as y = x * scale + shift per channel, on x = a convolution's sum plus conv_bias
 * (NULL: none): scale = gamma / sqrt(running_var + eps), shift = beta + (conv_bias - running_mean) * scale, into
 * backend memory (the backend's batchnorm_fold). */
kelp_status kelp_batch_norm_fold(const kelp_layer_io *io, const float *conv_bias, float *scale, float *shift);

#endif
