/* The parsed fields of the layers that other parts of the engine read: the ONNX exporter (engine/onnx_export.c)
 * writes them out, so it takes them, and their defaults, from the layers themselves rather than reading the JSON a
 * second time. Convolutions' fields are in conv_common.h. */
#ifndef KELP_ENGINE_LAYERS_ATTRS_H
#define KELP_ENGINE_LAYERS_ATTRS_H

#include <stdbool.h>

#include "kernels/descs.h"

/* batch_norm */
typedef struct kelp_bn_attrs {
    float eps, momentum;
} kelp_bn_attrs;

/* max_pool2d, avg_pool2d */
typedef struct kelp_pool_attrs {
    kelp_pool_kind kind;
    int kernel[2], stride[2], pad[2];
    bool ceil_mode, count_include_pad;
} kelp_pool_attrs;

/* relu, relu6, leaky_relu, sigmoid, silu, gelu */
typedef struct kelp_act_attrs {
    kelp_act_kind kind;
    float alpha; /* leaky_relu's negative slope */
} kelp_act_attrs;

#endif
