/* The registry of layer types: one line per layer. */
#include <stdio.h>
#include <string.h>

#include "engine/layer.h"

extern const kelp_layer_type kelp_layer_conv2d, kelp_layer_conv_transpose2d, kelp_layer_linear;
extern const kelp_layer_type kelp_layer_batch_norm, kelp_layer_max_pool2d, kelp_layer_avg_pool2d,
    kelp_layer_global_avg_pool, kelp_layer_upsample;
extern const kelp_layer_type kelp_layer_relu, kelp_layer_relu6, kelp_layer_leaky_relu, kelp_layer_silu,
    kelp_layer_sigmoid, kelp_layer_gelu, kelp_layer_add, kelp_layer_concat, kelp_layer_flatten, kelp_layer_dropout,
    kelp_layer_softmax_cross_entropy;

static const kelp_layer_type *const registry[] = {
    &kelp_layer_conv2d,
    &kelp_layer_conv_transpose2d,
    &kelp_layer_linear,
    &kelp_layer_batch_norm,
    &kelp_layer_relu,
    &kelp_layer_relu6,
    &kelp_layer_leaky_relu,
    &kelp_layer_silu,
    &kelp_layer_sigmoid,
    &kelp_layer_gelu,
    &kelp_layer_max_pool2d,
    &kelp_layer_avg_pool2d,
    &kelp_layer_global_avg_pool,
    &kelp_layer_add,
    &kelp_layer_concat,
    &kelp_layer_upsample,
    &kelp_layer_dropout,
    &kelp_layer_flatten,
    &kelp_layer_softmax_cross_entropy,
};

#define REGISTRY_SIZE (sizeof registry / sizeof registry[0])

const kelp_layer_type *kelp_layer_find(const char *name)
{
    for (size_t i = 0; i < REGISTRY_SIZE; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

const char *kelp_layer_list(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < REGISTRY_SIZE && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", registry[i]->name);
    return buf;
}

int kelp_layer_type_count(void) { return (int)REGISTRY_SIZE; }

const char *kelp_layer_type_name(int index)
{
    return index >= 0 && index < (int)REGISTRY_SIZE ? registry[index]->name : NULL;
}

kelp_shape kelp_param_internal_shape(const kelp_param_spec *spec)
{
    kelp_shape s = spec->shape;
    if (spec->ohwi && s.ndim == 4) {
        s.dims[1] = spec->shape.dims[2];
        s.dims[2] = spec->shape.dims[3];
        s.dims[3] = spec->shape.dims[1];
    }
    return s;
}
