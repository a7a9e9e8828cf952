/* conv2d: PyTorch's nn.Conv2d on NHWC activations, with the weight stored OHWI (K, R, S, C/G). Also the fields and
 * checks it shares with conv_transpose2d (conv_common.h). */
#include <limits.h>
#include <string.h>

#include "engine/json_attr.h"
#include "engine/layer.h"
#include "engine/layers/conv_common.h"
#include "engine/layers/fold.h"
#include "kernels/ops/conv.h"

/* Generous caps that keep every product of these in the kernels' int arithmetic. */
#define MAX_WINDOW 4096
#define MAX_CHANNELS (1 << 24)

static kelp_status parse_init(const cJSON *json, bool allow_kaiming, kelp_init_kind *out)
{
    const char *init = "default";
    KELP_TRY(kelp_json_string(json, "init", &init));
    if (strcmp(init, "default") == 0) {
        *out = KELP_INIT_UNIFORM_FAN_IN;
        return KELP_OK;
    }
    if (allow_kaiming && strcmp(init, "kaiming_normal_fan_out") == 0) {
        *out = KELP_INIT_KAIMING_NORMAL_FAN_OUT;
        return KELP_OK;
    }
    return kelp_set_error(KELP_ERR_FORMAT, "field 'init' is \"%s\"; expected \"default\"%s", init,
                          allow_kaiming ? " or \"kaiming_normal_fan_out\"" : "");
}

kelp_status kelp_conv_attrs_parse(const cJSON *json, bool allow_kaiming, kelp_conv_attrs *a)
{
    a->stride[0] = a->stride[1] = 1;
    a->dilation[0] = a->dilation[1] = 1;
    a->groups = 1;
    a->bias = true;
    KELP_TRY(kelp_json_require(json, "out_channels"));
    KELP_TRY(kelp_json_require(json, "kernel_size"));
    KELP_TRY(kelp_json_int(json, "out_channels", 1, MAX_CHANNELS, &a->out_channels));
    KELP_TRY(kelp_json_pair(json, "kernel_size", 1, MAX_WINDOW, a->kernel));
    KELP_TRY(kelp_json_pair(json, "stride", 1, MAX_WINDOW, a->stride));
    KELP_TRY(kelp_json_pair(json, "padding", 0, MAX_WINDOW, a->padding));
    KELP_TRY(kelp_json_pair(json, "dilation", 1, MAX_WINDOW, a->dilation));
    KELP_TRY(kelp_json_int(json, "groups", 1, MAX_CHANNELS, &a->groups));
    KELP_TRY(kelp_json_bool(json, "bias", &a->bias));
    KELP_TRY(parse_init(json, allow_kaiming, &a->weight_init));
    if (a->out_channels % a->groups != 0)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'groups': out_channels %d is not divisible by groups %d",
                              a->out_channels, a->groups);
    return KELP_OK;
}

kelp_status kelp_conv_check_input(const kelp_shape *in, int groups)
{
    char buf[96];
    if (in->ndim != 4)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: expected a rank-4 NHWC tensor",
                              kelp_shape_str(in, buf, sizeof buf));
    for (int i = 0; i < 4; i++)
        if (in->dims[i] < 1 || in->dims[i] > INT_MAX)
            return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: dimension %d is outside [1, %d]",
                                  kelp_shape_str(in, buf, sizeof buf), i, INT_MAX);
    if (in->dims[1] * in->dims[2] > INT_MAX / in->dims[0])
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: more than %d pixels", kelp_shape_str(in, buf, sizeof buf),
                              INT_MAX);
    if (in->dims[3] % groups != 0)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: %lld channels are not divisible by groups %d",
                              kelp_shape_str(in, buf, sizeof buf), (long long)in->dims[3], groups);
    return KELP_OK;
}

kelp_status kelp_conv_check_columns(const kelp_conv_attrs *a, int64_t pixels, int64_t channels, const kelp_shape *in)
{
    int64_t row = (int64_t)a->kernel[0] * a->kernel[1] * (channels / a->groups);
    char buf[96];
    if (row > INT_MAX || (double)row * (double)pixels * sizeof(float) > (double)KELP_TENSOR_MAX_BYTES)
        return kelp_set_error(KELP_ERR_SHAPE,
                              "input 0 %s: kernel %dx%d over %lld channels makes an im2col matrix of %lld x %lld, "
                              "beyond the limits",
                              kelp_shape_str(in, buf, sizeof buf), a->kernel[0], a->kernel[1], (long long)channels,
                              (long long)pixels, (long long)row);
    return KELP_OK;
}

int kelp_conv_param_specs(const kelp_conv_attrs *a, int64_t dim0, int64_t dim1, int64_t fan_in, int64_t fan_out,
                          kelp_param_spec *specs)
{
    specs[0] = (kelp_param_spec){
        .suffix = "weight",
        .shape = kelp_shape4(dim0, dim1, a->kernel[0], a->kernel[1]),
        .dtype = KELP_F32,
        .kind = KELP_PARAM_TRAINABLE,
        .init = a->weight_init,
        .fan_in = fan_in,
        .fan_out = fan_out,
        .ohwi = true,
    };
    if (!a->bias)
        return 1;
    int64_t channels = a->out_channels;
    /* PyTorch bounds the bias by the weight's fan_in whatever the weight's init */
    specs[1] = (kelp_param_spec){
        .suffix = "bias",
        .shape = kelp_shape_make(1, &channels),
        .dtype = KELP_F32,
        .kind = KELP_PARAM_TRAINABLE,
        .init = KELP_INIT_UNIFORM_FAN_IN,
        .fan_in = fan_in,
        .fan_out = fan_out,
    };
    return 2;
}

static kelp_status parse(const cJSON *json, void *attrs) { return kelp_conv_attrs_parse(json, true, attrs); }

static kelp_status infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)n_in;
    const kelp_conv_attrs *a = attrs;
    KELP_TRY(kelp_conv_check_input(&in[0], a->groups));
    int64_t oh = kelp_conv_out_size(in[0].dims[1], a->kernel[0], a->stride[0], a->padding[0], a->dilation[0]);
    int64_t ow = kelp_conv_out_size(in[0].dims[2], a->kernel[1], a->stride[1], a->padding[1], a->dilation[1]);
    char buf[96];
    if (oh < 1 || ow < 1)
        return kelp_set_error(KELP_ERR_SHAPE,
                              "input 0 %s: kernel %dx%d with dilation %dx%d is larger than the padded input "
                              "(padding %dx%d, stride %dx%d)",
                              kelp_shape_str(&in[0], buf, sizeof buf), a->kernel[0], a->kernel[1], a->dilation[0],
                              a->dilation[1], a->padding[0], a->padding[1], a->stride[0], a->stride[1]);
    if (oh * ow > INT_MAX / in[0].dims[0])
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: output of %lldx%lld pixels per image is too large",
                              kelp_shape_str(&in[0], buf, sizeof buf), (long long)oh, (long long)ow);
    KELP_TRY(kelp_conv_check_columns(a, in[0].dims[0] * oh * ow, in[0].dims[3], &in[0]));
    *out = kelp_shape4(in[0].dims[0], oh, ow, a->out_channels);
    return KELP_OK;
}

static int params(const void *attrs, const kelp_shape *in, int n_in, kelp_param_spec *specs)
{
    (void)n_in;
    const kelp_conv_attrs *a = attrs;
    int64_t cg = in[0].dims[3] / a->groups, taps = (int64_t)a->kernel[0] * a->kernel[1];
    return kelp_conv_param_specs(a, a->out_channels, cg, cg * taps, a->out_channels * taps, specs);
}

static kelp_conv_desc make_desc(const kelp_conv_attrs *a, const kelp_shape *x, const kelp_shape *y, kelp_dtype dtype)
{
    return (kelp_conv_desc){
        .n = (int)x->dims[0], .h = (int)x->dims[1], .w = (int)x->dims[2], .c = (int)x->dims[3],
        .k = a->out_channels, .r = a->kernel[0], .s = a->kernel[1],
        .stride_h = a->stride[0], .stride_w = a->stride[1],
        .pad_h = a->padding[0], .pad_w = a->padding[1],
        .dil_h = a->dilation[0], .dil_w = a->dilation[1],
        .groups = a->groups,
        .oh = (int)y->dims[1], .ow = (int)y->dims[2],
        .dtype = dtype,
    };
}

static kelp_conv_desc io_desc(const kelp_layer_io *io)
{
    return make_desc(io->attrs, &io->in[0]->shape, &io->out->shape, io->out->dtype);
}

/* Forward and backward use the same descriptor, hence the same workspace. */
static kelp_status workspace(const void *attrs, kelp_backend *be, const kelp_shape *in, int n_in,
                             const kelp_shape *out, kelp_dtype dtype, size_t *bytes)
{
    (void)n_in;
    kelp_conv_desc d = make_desc(attrs, &in[0], out, dtype);
    return be->iface->conv2d_workspace(be, &d, bytes);
}

/* Each output element (N,OH,OW,K) is a dot product over R*S*C/G taps. */
static int64_t flops(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out)
{
    (void)n_in;
    const kelp_conv_attrs *a = attrs;
    return 2 * kelp_shape_numel(out) * a->kernel[0] * a->kernel[1] * (in[0].dims[3] / a->groups);
}

// x (N,H,W,C), w (K,R,S,C/G), b (K) -> y (N,OH,OW,K)
static kelp_status forward(const kelp_layer_io *io)
{
    const kelp_conv_attrs *a = io->attrs;
    kelp_conv_desc d = io_desc(io);
    const float *bias = a->bias ? io->param[1]->data : NULL;
    return io->be->iface->conv2d_forward(io->be, &d, io->in[0]->data, kelp_io_weight(io, 0)->data, bias,
                                         io->out->data, io->workspace);
}

kelp_status kelp_conv2d_forward_fused(const kelp_layer_io *io, const kelp_conv_epilogue *ep)
{
    kelp_conv_desc d = io_desc(io);
    return io->be->iface->conv2d_forward_fused(io->be, &d, io->in[0]->data, kelp_io_weight(io, 0)->data, ep,
                                               io->out->data, io->workspace);
}

static kelp_status backward(const kelp_layer_io *io)
{
    const kelp_conv_attrs *a = io->attrs;
    kelp_backend *be = io->be;
    kelp_conv_desc d = io_desc(io);
    const void *dy = io->dout->data;
    if (io->din[0])
        KELP_TRY(be->iface->conv2d_backward_data(be, &d, dy, kelp_io_weight(io, 0)->data, io->din[0]->data,
                                                 io->workspace));
    float *db = a->bias && io->dparam[1] ? io->dparam[1]->data : NULL;
    kelp_tensor *dw = kelp_io_dweight(io, 0);
    if (dw)
        return be->iface->conv2d_backward_filter(be, &d, io->in[0]->data, dy, dw->data, db, io->workspace);
    if (db)
        return be->iface->bias_backward(be, d.dtype, (int64_t)d.n * d.oh * d.ow, d.k, dy, db);
    return KELP_OK;
}

static const char *const fields[] = {"out_channels", "kernel_size", "stride", "padding", "dilation",
                                     "groups",       "bias",        "init",   NULL};

const kelp_layer_type kelp_layer_conv2d = {
    .name = "conv2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = fields,
    .attrs_size = sizeof(kelp_conv_attrs),
    .parse = parse,
    .infer = infer,
    .params = params,
    .workspace = workspace,
    .forward = forward,
    .backward = backward,
    .flops = flops,
};
