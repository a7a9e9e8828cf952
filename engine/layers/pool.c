/* PLACEHOLDER: to be written. */
#include "engine/layer.h"

const kelp_layer_type kelp_layer_max_pool2d = {.name = "max_pool2d"};
const kelp_layer_type kelp_layer_avg_pool2d = {.name = "avg_pool2d"};
const kelp_layer_type kelp_layer_global_avg_pool = {.name = "global_avg_pool"};
