/* upsample: PyTorch's nn.Upsample (F.interpolate) on NHWC, modes "nearest" (legacy nearest) and "bilinear"
 * (align_corners=False). Exactly one of scale_factor (output = floor(H * scale_factor)) and size gives the output;
 * a given scale factor also drives the coordinate map (1 / scale_factor), as PyTorch does when
 * recompute_scale_factor is not set. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/json_attr.h"
#include "engine/layer.h"

typedef struct upsample_attrs {
    kelp_upsample_kind kind;
    bool has_scale;
    double scale[2]; /* scale_factor for (H, W) */
    int size[2];     /* output (H, W) when no scale factor */
} upsample_attrs;

static const char *const upsample_fields[] = {"mode", "scale_factor", "size", NULL};

static kelp_status parse_mode(const cJSON *json, kelp_upsample_kind *kind)
{
    const char *mode = "nearest";
    KELP_TRY(kelp_json_string(json, "mode", &mode));
    if (strcmp(mode, "nearest") == 0)
        *kind = KELP_UPSAMPLE_NEAREST;
    else if (strcmp(mode, "bilinear") == 0)
        *kind = KELP_UPSAMPLE_BILINEAR;
    else
        return kelp_set_error(KELP_ERR_FORMAT, "field 'mode' is \"%s\"; expected \"nearest\" or \"bilinear\"", mode);
    return KELP_OK;
}

/* Read as double: 1 / scale_factor must round to float exactly as PyTorch's does from a Python float. */
static kelp_status scale_number(const cJSON *item, double *out)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble <= 0.0)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'scale_factor' must be a number > 0 or a pair [h, w] of them");
    *out = item->valuedouble;
    return KELP_OK;
}

static kelp_status parse_scale(const cJSON *item, double out[2])
{
    if (!cJSON_IsArray(item)) {
        KELP_TRY(scale_number(item, &out[0]));
        out[1] = out[0];
        return KELP_OK;
    }
    if (cJSON_GetArraySize(item) != 2)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'scale_factor' must be a number > 0 or a pair [h, w] of them");
    KELP_TRY(scale_number(cJSON_GetArrayItem(item, 0), &out[0]));
    return scale_number(cJSON_GetArrayItem(item, 1), &out[1]);
}

static kelp_status upsample_parse(const cJSON *json, void *attrs)
{
    upsample_attrs *a = attrs;
    KELP_TRY(parse_mode(json, &a->kind));
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(json, "scale_factor");
    bool has_size = cJSON_GetObjectItemCaseSensitive(json, "size") != NULL;
    if (scale && has_size)
        return kelp_set_error(KELP_ERR_FORMAT, "fields 'scale_factor' and 'size' are both given; give exactly one");
    if (!scale && !has_size)
        return kelp_set_error(KELP_ERR_FORMAT, "missing field 'scale_factor' or 'size' (give exactly one)");
    a->has_scale = scale != NULL;
    if (scale)
        return parse_scale(scale, a->scale);
    return kelp_json_pair(json, "size", 1, INT_MAX, a->size);
}

static int64_t out_size(const upsample_attrs *a, int axis, int64_t in)
{
    return a->has_scale ? (int64_t)floor((double)in * a->scale[axis]) : a->size[axis];
}

static kelp_status upsample_infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)n_in;
    const upsample_attrs *a = attrs;
    char buf[96];
    if (in[0].ndim != 4)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: upsample needs rank 4 (N,H,W,C)",
                              kelp_shape_str(&in[0], buf, sizeof buf));
    int64_t oh = out_size(a, 0, in[0].dims[1]), ow = out_size(a, 1, in[0].dims[2]);
    if (oh < 1 || ow < 1)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: scale_factor [%g, %g] gives an empty output (%lld x %lld)",
                              kelp_shape_str(&in[0], buf, sizeof buf), a->scale[0], a->scale[1], (long long)oh,
                              (long long)ow);
    /* the kernels index pixels with int */
    if (oh * ow > INT_MAX || in[0].dims[1] * in[0].dims[2] > INT_MAX || in[0].dims[3] > INT_MAX)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: upsample to %lld x %lld exceeds %d pixels per image",
                              kelp_shape_str(&in[0], buf, sizeof buf), (long long)oh, (long long)ow, INT_MAX);
    *out = kelp_shape4(in[0].dims[0], oh, ow, in[0].dims[3]);
    return KELP_OK;
}

/* PyTorch's compute_scales_value: 1 / scale_factor when one was given, in / out otherwise, rounded to float. */
static float coordinate_scale(const upsample_attrs *a, int axis, int in, int out)
{
    return a->has_scale ? (float)(1.0 / a->scale[axis]) : (float)in / (float)out;
}

static kelp_upsample_desc upsample_desc(const upsample_attrs *a, const kelp_tensor *x, const kelp_tensor *y)
{
    kelp_upsample_desc d = {
        .kind = a->kind,
        .n = (int)x->shape.dims[0],
        .h = (int)x->shape.dims[1],
        .w = (int)x->shape.dims[2],
        .c = (int)x->shape.dims[3],
        .oh = (int)y->shape.dims[1],
        .ow = (int)y->shape.dims[2],
        .dtype = y->dtype,
    };
    d.scale_h = coordinate_scale(a, 0, d.h, d.oh);
    d.scale_w = coordinate_scale(a, 1, d.w, d.ow);
    return d;
}

static kelp_status upsample_forward(const kelp_layer_io *io)
{
    kelp_upsample_desc d = upsample_desc(io->attrs, io->in[0], io->out);
    return io->be->iface->upsample_forward(io->be, &d, io->in[0]->data, io->out->data);
}

static kelp_status upsample_backward(const kelp_layer_io *io)
{
    if (!io->din[0])
        return KELP_OK;
    kelp_upsample_desc d = upsample_desc(io->attrs, io->in[0], io->out);
    return io->be->iface->upsample_backward(io->be, &d, io->dout->data, io->din[0]->data);
}

const kelp_layer_type kelp_layer_upsample = {
    .name = "upsample",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = upsample_fields,
    .attrs_size = sizeof(upsample_attrs),
    .parse = upsample_parse,
    .infer = upsample_infer,
    .forward = upsample_forward,
    .backward = upsample_backward,
};
