/* PLACEHOLDER: to be written. */
#include "engine/layer.h"

const kelp_layer_type kelp_layer_relu = {.name = "relu"};
const kelp_layer_type kelp_layer_leaky_relu = {.name = "leaky_relu"};
const kelp_layer_type kelp_layer_silu = {.name = "silu"};
const kelp_layer_type kelp_layer_sigmoid = {.name = "sigmoid"};
const kelp_layer_type kelp_layer_gelu = {.name = "gelu"};
