/* max_pool2d, avg_pool2d (PyTorch's MaxPool2d / AvgPool2d) and global_avg_pool (AdaptiveAvgPool2d(1) + flatten)
 * on NHWC. Max pooling keeps the argmax (N,OH,OW,C) in the layer state for backward. */
#include <limits.h>
#include <stdio.h>

#include "engine/json_attr.h"
#include "engine/layer.h"
#include "engine/layers/attrs.h"

/* Bounds that keep every window product and index inside int. */
#define POOL_KERNEL_MAX 4096
#define POOL_STRIDE_MAX 4096

static const char *const max_pool_fields[] = {"kernel_size", "stride", "padding", "ceil_mode", NULL};
static const char *const avg_pool_fields[] = {"kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                              NULL};
static const char *const no_fields[] = {NULL};

static kelp_status parse_window(const cJSON *json, kelp_pool_attrs *a)
{
    KELP_TRY(kelp_json_require(json, "kernel_size"));
    KELP_TRY(kelp_json_pair(json, "kernel_size", 1, POOL_KERNEL_MAX, a->kernel));
    a->stride[0] = a->kernel[0];
    a->stride[1] = a->kernel[1];
    KELP_TRY(kelp_json_pair(json, "stride", 1, POOL_STRIDE_MAX, a->stride));
    KELP_TRY(kelp_json_pair(json, "padding", 0, POOL_KERNEL_MAX, a->pad));
    KELP_TRY(kelp_json_bool(json, "ceil_mode", &a->ceil_mode));
    /* PyTorch's rule: a window must always hold at least one input element. */
    if (a->pad[0] > a->kernel[0] / 2 || a->pad[1] > a->kernel[1] / 2)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'padding' [%d, %d] must be at most half of kernel_size [%d, %d]",
                              a->pad[0], a->pad[1], a->kernel[0], a->kernel[1]);
    return KELP_OK;
}

static kelp_status max_pool_parse(const cJSON *json, void *attrs)
{
    kelp_pool_attrs *a = attrs;
    a->kind = KELP_POOL_MAX;
    return parse_window(json, a);
}

static kelp_status avg_pool_parse(const cJSON *json, void *attrs)
{
    kelp_pool_attrs *a = attrs;
    a->kind = KELP_POOL_AVG;
    a->count_include_pad = true;
    KELP_TRY(parse_window(json, a));
    return kelp_json_bool(json, "count_include_pad", &a->count_include_pad);
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && a < 0); }

/* PyTorch's pooling_output_shape: with ceil_mode the last window must start inside the input or its left padding. */
static int64_t pool_out_size(int64_t in, int kernel, int stride, int pad, bool ceil_mode)
{
    int64_t out = floor_div(in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0), stride) + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad)
        out--;
    return out;
}

static kelp_status check_nhwc(const kelp_shape *in, const char *layer)
{
    char buf[96];
    if (in->ndim != 4)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: %s needs rank 4 (N,H,W,C)",
                              kelp_shape_str(in, buf, sizeof buf), layer);
    /* argmax holds h * W + w in int32, and the kernels index dimensions with int */
    if (in->dims[1] * in->dims[2] > INT_MAX || in->dims[3] > INT_MAX || in->dims[0] > INT_MAX)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: %s supports at most %d pixels per image and channels",
                              kelp_shape_str(in, buf, sizeof buf), layer, INT_MAX);
    return KELP_OK;
}

static kelp_status pool_infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)n_in;
    const kelp_pool_attrs *a = attrs;
    const char *layer = a->kind == KELP_POOL_MAX ? "max_pool2d" : "avg_pool2d";
    KELP_TRY(check_nhwc(&in[0], layer));
    int64_t oh = pool_out_size(in[0].dims[1], a->kernel[0], a->stride[0], a->pad[0], a->ceil_mode);
    int64_t ow = pool_out_size(in[0].dims[2], a->kernel[1], a->stride[1], a->pad[1], a->ceil_mode);
    if (oh < 1 || ow < 1) {
        char buf[96];
        return kelp_set_error(KELP_ERR_SHAPE,
                              "input 0 %s: %s with kernel_size [%d, %d], stride [%d, %d], padding [%d, %d] gives an "
                              "empty output (%lld x %lld)",
                              kelp_shape_str(&in[0], buf, sizeof buf), layer, a->kernel[0], a->kernel[1],
                              a->stride[0], a->stride[1], a->pad[0], a->pad[1], (long long)oh, (long long)ow);
    }
    *out = kelp_shape4(in[0].dims[0], oh, ow, in[0].dims[3]);
    return KELP_OK;
}

/* argmax (N,OH,OW,C) int32 */
static size_t max_pool_state(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out)
{
    (void)attrs;
    (void)in;
    (void)n_in;
    return (size_t)kelp_shape_numel(out) * sizeof(int32_t);
}

static kelp_pool_desc pool_desc(const kelp_pool_attrs *a, const kelp_tensor *x, const kelp_tensor *y)
{
    kelp_pool_desc d = {
        .kind = a->kind,
        .n = (int)x->shape.dims[0],
        .h = (int)x->shape.dims[1],
        .w = (int)x->shape.dims[2],
        .c = (int)x->shape.dims[3],
        .r = a->kernel[0],
        .s = a->kernel[1],
        .stride_h = a->stride[0],
        .stride_w = a->stride[1],
        .pad_h = a->pad[0],
        .pad_w = a->pad[1],
        .oh = (int)y->shape.dims[1],
        .ow = (int)y->shape.dims[2],
        .count_include_pad = a->count_include_pad,
        .dtype = y->dtype,
    };
    return d;
}

static int32_t *argmax_of(const kelp_layer_io *io)
{
    const kelp_pool_attrs *a = io->attrs;
    return a->kind == KELP_POOL_MAX ? io->state : NULL;
}

static kelp_status pool_forward(const kelp_layer_io *io)
{
    kelp_pool_desc d = pool_desc(io->attrs, io->in[0], io->out);
    return io->be->iface->pool2d_forward(io->be, &d, io->in[0]->data, io->out->data, argmax_of(io));
}

static kelp_status pool_backward(const kelp_layer_io *io)
{
    if (!io->din[0])
        return KELP_OK;
    kelp_pool_desc d = pool_desc(io->attrs, io->in[0], io->out);
    return io->be->iface->pool2d_backward(io->be, &d, io->dout->data, argmax_of(io), io->din[0]->data);
}

const kelp_layer_type kelp_layer_max_pool2d = {
    .name = "max_pool2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = max_pool_fields,
    .attrs_size = sizeof(kelp_pool_attrs),
    .parse = max_pool_parse,
    .infer = pool_infer,
    .state = max_pool_state,
    .forward = pool_forward,
    .backward = pool_backward,
};

const kelp_layer_type kelp_layer_avg_pool2d = {
    .name = "avg_pool2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = avg_pool_fields,
    .attrs_size = sizeof(kelp_pool_attrs),
    .parse = avg_pool_parse,
    .infer = pool_infer,
    .forward = pool_forward,
    .backward = pool_backward,
};

static kelp_status gap_parse(const cJSON *json, void *attrs)
{
    (void)json;
    (void)attrs;
    return KELP_OK;
}

static kelp_status gap_infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)attrs;
    (void)n_in;
    KELP_TRY(check_nhwc(&in[0], "global_avg_pool"));
    *out = kelp_shape2(in[0].dims[0], in[0].dims[3]);
    return KELP_OK;
}

static kelp_status gap_forward(const kelp_layer_io *io)
{
    const kelp_shape *s = &io->in[0]->shape;
    return io->be->iface->global_avg_pool_forward(io->be, io->out->dtype, (int)s->dims[0], (int)(s->dims[1] * s->dims[2]),
                                                  (int)s->dims[3], io->in[0]->data, io->out->data);
}

static kelp_status gap_backward(const kelp_layer_io *io)
{
    if (!io->din[0])
        return KELP_OK;
    const kelp_shape *s = &io->in[0]->shape;
    return io->be->iface->global_avg_pool_backward(io->be, io->dout->dtype, (int)s->dims[0], (int)(s->dims[1] * s->dims[2]),
                                                   (int)s->dims[3], io->dout->data, io->din[0]->data);
}

const kelp_layer_type kelp_layer_global_avg_pool = {
    .name = "global_avg_pool",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = no_fields,
    .parse = gap_parse,
    .infer = gap_infer,
    .forward = gap_forward,
    .backward = gap_backward,
};
