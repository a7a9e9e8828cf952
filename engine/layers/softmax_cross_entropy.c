/* PLACEHOLDER: to be written. */
#include "engine/layer.h"

const kelp_layer_type kelp_layer_softmax_cross_entropy = {.name = "softmax_cross_entropy"};
