/* PLACEHOLDER: to be written. */
#include "engine/layer.h"

const kelp_layer_type kelp_layer_batch_norm = {.name = "batch_norm"};
