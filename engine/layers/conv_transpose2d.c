/* PLACEHOLDER: to be written. */
#include "engine/layer.h"

const kelp_layer_type kelp_layer_conv_transpose2d = {.name = "conv_transpose2d"};
