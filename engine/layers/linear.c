/* linear: PyTorch's nn.Linear on the last dimension of an input of rank >= 2 (rows = product of the others), with
 * the weight (out, in) row-major exactly as PyTorch stores it. */
#include <limits.h>
#include <string.h>

#include "engine/json_attr.h"
#include "engine/layer.h"

typedef struct linear_attrs {
    int out_features;
    bool bias;
} linear_attrs;

static kelp_status parse(const cJSON *json, void *attrs)
{
    linear_attrs *a = attrs;
    a->bias = true;
    KELP_TRY(kelp_json_require(json, "out_features"));
    KELP_TRY(kelp_json_int(json, "out_features", 1, 1 << 24, &a->out_features));
    KELP_TRY(kelp_json_bool(json, "bias", &a->bias));
    const char *init = "default";
    KELP_TRY(kelp_json_string(json, "init", &init));
    if (strcmp(init, "default") != 0)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'init' is \"%s\"; expected \"default\"", init);
    return KELP_OK;
}

static int64_t in_features(const kelp_shape *x) { return x->dims[x->ndim - 1]; }

static int64_t rows_of(const kelp_shape *x) { return kelp_shape_numel(x) / in_features(x); }

static kelp_status infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)n_in;
    const linear_attrs *a = attrs;
    char buf[96];
    if (in[0].ndim < 2)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: expected rank >= 2 (rows, ..., features)",
                              kelp_shape_str(&in[0], buf, sizeof buf));
    for (int i = 0; i < in[0].ndim; i++)
        if (in[0].dims[i] < 1 || in[0].dims[i] > INT_MAX)
            return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: dimension %d is outside [1, %d]",
                                  kelp_shape_str(&in[0], buf, sizeof buf), i, INT_MAX);
    if (rows_of(&in[0]) > INT_MAX)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: more than %d rows", kelp_shape_str(&in[0], buf, sizeof buf),
                              INT_MAX);
    *out = in[0];
    out->dims[out->ndim - 1] = a->out_features;
    return KELP_OK;
}

static int params(const void *attrs, const kelp_shape *in, int n_in, kelp_param_spec *specs)
{
    (void)n_in;
    const linear_attrs *a = attrs;
    int64_t fan_in = in_features(&in[0]), fan_out = a->out_features;
    specs[0] = (kelp_param_spec){
        .suffix = "weight",
        .shape = kelp_shape2(fan_out, fan_in),
        .dtype = KELP_F32,
        .kind = KELP_PARAM_TRAINABLE,
        .init = KELP_INIT_UNIFORM_FAN_IN,
        .fan_in = fan_in,
        .fan_out = fan_out,
    };
    if (!a->bias)
        return 1;
    specs[1] = (kelp_param_spec){
        .suffix = "bias",
        .shape = kelp_shape_make(1, &fan_out),
        .dtype = KELP_F32,
        .kind = KELP_PARAM_TRAINABLE,
        .init = KELP_INIT_UNIFORM_FAN_IN,
        .fan_in = fan_in,
        .fan_out = fan_out,
    };
    return 2;
}

static int64_t flops(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out)
{
    (void)attrs;
    (void)n_in;
    return 2 * kelp_shape_numel(out) * in_features(&in[0]);
}

// x (M,IN), w (OUT,IN), b (OUT) -> y (M,OUT) = x w^T + b
static kelp_status forward(const kelp_layer_io *io)
{
    const linear_attrs *a = io->attrs;
    kelp_backend *be = io->be;
    int m = (int)rows_of(&io->in[0]->shape), in = (int)in_features(&io->in[0]->shape), out = a->out_features;
    kelp_dtype dt = io->out->dtype;
    void *y = io->out->data;
    KELP_TRY(be->iface->gemm(be, dt, false, true, m, out, in, 1.0f, io->in[0]->data, in, kelp_io_weight(io, 0)->data,
                             in, 0.0f, y, out));
    if (a->bias)
        return be->iface->bias_add(be, dt, m, out, io->param[1]->data, y);
    return KELP_OK;
}

static kelp_status backward(const kelp_layer_io *io)
{
    const linear_attrs *a = io->attrs;
    kelp_backend *be = io->be;
    int m = (int)rows_of(&io->in[0]->shape), in = (int)in_features(&io->in[0]->shape), out = a->out_features;
    kelp_dtype dt = io->dout->dtype;
    const void *dy = io->dout->data;
    // dx (M,IN) += dy (M,OUT) w (OUT,IN)
    if (io->din[0])
        KELP_TRY(be->iface->gemm(be, dt, false, false, m, in, out, 1.0f, dy, out, kelp_io_weight(io, 0)->data, in,
                                 1.0f, io->din[0]->data, in));
    // dw (OUT,IN) += dy^T (OUT,M) x (M,IN)
    kelp_tensor *dw = kelp_io_dweight(io, 0);
    if (dw)
        KELP_TRY(be->iface->gemm(be, dt, true, false, out, in, m, 1.0f, dy, out, io->in[0]->data, in, 1.0f, dw->data,
                                 in));
    if (a->bias && io->dparam[1])
        return be->iface->bias_backward(be, dt, m, out, dy, io->dparam[1]->data);
    return KELP_OK;
}

static const char *const fields[] = {"out_features", "bias", "init", NULL};

const kelp_layer_type kelp_layer_linear = {
    .name = "linear",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = fields,
    .attrs_size = sizeof(linear_attrs),
    .parse = parse,
    .infer = infer,
    .params = params,
    .forward = forward,
    .backward = backward,
    .flops = flops,
};
