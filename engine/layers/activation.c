/* Pointwise activations: relu, relu6, leaky_relu, silu, sigmoid and gelu share one implementation over a kind. */
#include <math.h>
#include <string.h>

#include "engine/json_attr.h"
#include "engine/layer.h"
#include "engine/layers/attrs.h"

static kelp_status parse_relu(const cJSON *json, void *attrs)
{
    (void)json;
    ((kelp_act_attrs *)attrs)->kind = KELP_ACT_RELU;
    return KELP_OK;
}

static kelp_status parse_relu6(const cJSON *json, void *attrs)
{
    (void)json;
    ((kelp_act_attrs *)attrs)->kind = KELP_ACT_RELU6;
    return KELP_OK;
}

static kelp_status parse_leaky_relu(const cJSON *json, void *attrs)
{
    kelp_act_attrs *a = attrs;
    a->kind = KELP_ACT_LEAKY_RELU;
    a->alpha = 0.01f;
    return kelp_json_float(json, "negative_slope", -INFINITY, INFINITY, &a->alpha);
}

static kelp_status parse_silu(const cJSON *json, void *attrs)
{
    (void)json;
    ((kelp_act_attrs *)attrs)->kind = KELP_ACT_SILU;
    return KELP_OK;
}

static kelp_status parse_sigmoid(const cJSON *json, void *attrs)
{
    (void)json;
    ((kelp_act_attrs *)attrs)->kind = KELP_ACT_SIGMOID;
    return KELP_OK;
}

/* Only the exact erf form exists in the kernels; the tanh approximation would silently change a model's outputs. */
static kelp_status parse_gelu(const cJSON *json, void *attrs)
{
    ((kelp_act_attrs *)attrs)->kind = KELP_ACT_GELU;
    const char *approximate = "none";
    KELP_TRY(kelp_json_string(json, "approximate", &approximate));
    if (strcmp(approximate, "none") != 0)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "field 'approximate' is \"%s\"; only \"none\" is supported",
                              approximate);
    return KELP_OK;
}

static kelp_status infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)attrs;
    if (n_in != 1)
        return kelp_set_error(KELP_ERR_SHAPE, "takes 1 input, got %d", n_in);
    *out = in[0];
    return KELP_OK;
}

// x (any shape) -> y (same shape)
static kelp_status forward(const kelp_layer_io *io)
{
    const kelp_act_attrs *a = io->attrs;
    int64_t n = kelp_shape_numel(&io->out->shape);
    return io->be->iface->activation_forward(io->be, io->out->dtype, a->kind, a->alpha, n, io->in[0]->data,
                                             io->out->data);
}

static kelp_status backward(const kelp_layer_io *io)
{
    if (!io->din[0])
        return KELP_OK;
    const kelp_act_attrs *a = io->attrs;
    int64_t n = kelp_shape_numel(&io->out->shape);
    return io->be->iface->activation_backward(io->be, io->out->dtype, a->kind, a->alpha, n, io->in[0]->data,
                                              io->out->data, io->dout->data, io->din[0]->data);
}

static const char *const no_fields[] = {NULL};
static const char *const leaky_relu_fields[] = {"negative_slope", NULL};
static const char *const gelu_fields[] = {"approximate", NULL};

#define ACTIVATION_LAYER(type_name, field_list, parse_fn)                                                    \
    {                                                                                                        \
        .name = type_name, .min_inputs = 1, .max_inputs = 1, .fields = field_list,                           \
        .attrs_size = sizeof(kelp_act_attrs), .parse = parse_fn, .infer = infer, .forward = forward,              \
        .backward = backward,                                                                                \
    }

const kelp_layer_type kelp_layer_relu = ACTIVATION_LAYER("relu", no_fields, parse_relu);
const kelp_layer_type kelp_layer_relu6 = ACTIVATION_LAYER("relu6", no_fields, parse_relu6);
const kelp_layer_type kelp_layer_leaky_relu = ACTIVATION_LAYER("leaky_relu", leaky_relu_fields, parse_leaky_relu);
const kelp_layer_type kelp_layer_silu = ACTIVATION_LAYER("silu", no_fields, parse_silu);
const kelp_layer_type kelp_layer_sigmoid = ACTIVATION_LAYER("sigmoid", no_fields, parse_sigmoid);
const kelp_layer_type kelp_layer_gelu = ACTIVATION_LAYER("gelu", gelu_fields, parse_gelu);
