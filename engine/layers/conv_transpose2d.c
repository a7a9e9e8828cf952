/* conv_transpose2d: PyTorch's nn.ConvTranspose2d on NHWC activations.
 *
 * PyTorch's weight (Cin, Cout/G, R, S) is stored ohwi as (Cin, R, S, Cout/G): exactly the weight of the "adjoint"
 * conv2d that maps this layer's output (Cout channels) back to its input (Cin channels). A transposed convolution
 * is that conv2d's input gradient, so the three passes are the conv2d kernels with the roles swapped:
 *   forward         = adjoint backward-data   (output := dx of the adjoint, zeroed first since it accumulates)
 *   backward-data   = adjoint forward         (into a scratch copy, then added: backward accumulates)
 *   backward-filter = adjoint backward-filter (x := the output gradient, dy := this layer's input) */
#include <limits.h>

#include "engine/json_attr.h"
#include "engine/layer.h"
#include "engine/layers/conv_common.h"
#include "kernels/ops/conv.h"

static kelp_status parse(const cJSON *json, void *attrs)
{
    kelp_conv_attrs *a = attrs;
    KELP_TRY(kelp_conv_attrs_parse(json, false, a));
    KELP_TRY(kelp_json_pair(json, "output_padding", 0, INT_MAX, a->output_padding));
    for (int i = 0; i < 2; i++)
        if (a->output_padding[i] >= a->stride[i] && a->output_padding[i] >= a->dilation[i])
            return kelp_set_error(KELP_ERR_FORMAT,
                                  "field 'output_padding' (%d) must be smaller than stride (%d) or dilation (%d)",
                                  a->output_padding[i], a->stride[i], a->dilation[i]);
    return KELP_OK;
}

static kelp_status infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)n_in;
    const kelp_conv_attrs *a = attrs;
    KELP_TRY(kelp_conv_check_input(&in[0], a->groups));
    int64_t oh = kelp_conv_transpose_out_size(in[0].dims[1], a->kernel[0], a->stride[0], a->padding[0],
                                              a->dilation[0], a->output_padding[0]);
    int64_t ow = kelp_conv_transpose_out_size(in[0].dims[2], a->kernel[1], a->stride[1], a->padding[1],
                                              a->dilation[1], a->output_padding[1]);
    char buf[96];
    if (oh < 1 || ow < 1)
        return kelp_set_error(KELP_ERR_SHAPE,
                              "input 0 %s: output would be %lldx%lld (kernel %dx%d, stride %dx%d, padding %dx%d, "
                              "dilation %dx%d, output_padding %dx%d)",
                              kelp_shape_str(&in[0], buf, sizeof buf), (long long)oh, (long long)ow, a->kernel[0],
                              a->kernel[1], a->stride[0], a->stride[1], a->padding[0], a->padding[1], a->dilation[0],
                              a->dilation[1], a->output_padding[0], a->output_padding[1]);
    if (oh > INT_MAX || ow > INT_MAX || oh * ow > INT_MAX / in[0].dims[0])
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: output of %lldx%lld pixels per image is too large",
                              kelp_shape_str(&in[0], buf, sizeof buf), (long long)oh, (long long)ow);
    KELP_TRY(kelp_conv_check_columns(a, in[0].dims[0] * in[0].dims[1] * in[0].dims[2], a->out_channels, &in[0]));
    *out = kelp_shape4(in[0].dims[0], oh, ow, a->out_channels);
    return KELP_OK;
}

/* PyTorch computes fans from weight dims 0 and 1 whatever the layer: fan_in = (Cout/G)*R*S, fan_out = Cin*R*S. */
static int params(const void *attrs, const kelp_shape *in, int n_in, kelp_param_spec *specs)
{
    (void)n_in;
    const kelp_conv_attrs *a = attrs;
    int64_t cin = in[0].dims[3], coutg = a->out_channels / a->groups, taps = (int64_t)a->kernel[0] * a->kernel[1];
    return kelp_conv_param_specs(a, cin, coutg, coutg * taps, cin * taps, specs);
}

/* The adjoint conv2d: y (N,OH,OW,Cout) -> x (N,H,W,Cin). Its output size is this layer's input size, set here rather
 * than computed: with output_padding >= stride (allowed when < dilation) the last rows of y feed no input pixel. */
static kelp_conv_desc adjoint_desc(const kelp_conv_attrs *a, const kelp_shape *x, const kelp_shape *y,
                                   kelp_dtype dtype)
{
    return (kelp_conv_desc){
        .n = (int)y->dims[0], .h = (int)y->dims[1], .w = (int)y->dims[2], .c = (int)y->dims[3],
        .k = (int)x->dims[3], .r = a->kernel[0], .s = a->kernel[1],
        .stride_h = a->stride[0], .stride_w = a->stride[1],
        .pad_h = a->padding[0], .pad_w = a->padding[1],
        .dil_h = a->dilation[0], .dil_w = a->dilation[1],
        .groups = a->groups,
        .oh = (int)x->dims[1], .ow = (int)x->dims[2],
        .dtype = dtype,
    };
}

static kelp_conv_desc io_desc(const kelp_layer_io *io)
{
    return adjoint_desc(io->attrs, &io->in[0]->shape, &io->out->shape, io->out->dtype);
}

/* The workspace holds the adjoint's scratch, then (from a 64-byte boundary) the input gradient before it is added. */
static kelp_status scratch_offset(kelp_backend *be, const kelp_conv_desc *d, size_t *offset)
{
    size_t bytes = 0;
    KELP_TRY(be->iface->conv2d_workspace(be, d, &bytes));
    *offset = (bytes + 63) & ~(size_t)63;
    return KELP_OK;
}

static kelp_status workspace(const void *attrs, kelp_backend *be, const kelp_shape *in, int n_in,
                             const kelp_shape *out, kelp_dtype dtype, size_t *bytes)
{
    (void)n_in;
    kelp_conv_desc d = adjoint_desc(attrs, &in[0], out, dtype);
    size_t offset;
    KELP_TRY(scratch_offset(be, &d, &offset));
    *bytes = offset + (size_t)kelp_shape_numel(&in[0]) * kelp_dtype_size(dtype);
    return KELP_OK;
}

/* The adjoint conv2d's: each input element (N,H,W,Cin) is a dot product over R*S*Cout/G taps of the output. */
static int64_t flops(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out)
{
    (void)n_in;
    (void)out;
    const kelp_conv_attrs *a = attrs;
    return 2 * kelp_shape_numel(&in[0]) * a->kernel[0] * a->kernel[1] * (a->out_channels / a->groups);
}

// x (N,H,W,Cin), w (Cin,R,S,Cout/G), b (Cout) -> y (N,OH,OW,Cout)
static kelp_status forward(const kelp_layer_io *io)
{
    const kelp_conv_attrs *a = io->attrs;
    kelp_backend *be = io->be;
    kelp_conv_desc d = io_desc(io);
    void *y = io->out->data;
    KELP_TRY(be->iface->memset(be, y, 0, kelp_tensor_bytes(io->out)));
    KELP_TRY(be->iface->conv2d_backward_data(be, &d, io->in[0]->data, kelp_io_weight(io, 0)->data, y,
                                             io->workspace));
    if (a->bias)
        return be->iface->bias_add(be, d.dtype, (int64_t)d.n * d.h * d.w, d.c, io->param[1]->data, y);
    return KELP_OK;
}

static kelp_status backward(const kelp_layer_io *io)
{
    const kelp_conv_attrs *a = io->attrs;
    kelp_backend *be = io->be;
    kelp_conv_desc d = io_desc(io);
    const void *dy = io->dout->data;
    if (io->din[0]) {
        size_t offset;
        KELP_TRY(scratch_offset(be, &d, &offset));
        void *scratch = (char *)io->workspace + offset;
        KELP_TRY(be->iface->conv2d_forward(be, &d, dy, kelp_io_weight(io, 0)->data, NULL, scratch, io->workspace));
        KELP_TRY(be->iface->axpy(be, d.dtype, kelp_shape_numel(&io->in[0]->shape), 1.0f, scratch, io->din[0]->data));
    }
    kelp_tensor *dw = kelp_io_dweight(io, 0);
    if (dw)
        KELP_TRY(be->iface->conv2d_backward_filter(be, &d, dy, io->in[0]->data, dw->data, NULL, io->workspace));
    if (a->bias && io->dparam[1])
        return be->iface->bias_backward(be, d.dtype, (int64_t)d.n * d.h * d.w, d.c, dy, io->dparam[1]->data);
    return KELP_OK;
}

static const char *const fields[] = {"out_channels", "kernel_size", "stride", "padding", "output_padding",
                                     "dilation",     "groups",      "bias",   "init",    NULL};

const kelp_layer_type kelp_layer_conv_transpose2d = {
    .name = "conv_transpose2d",
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
