/* Flatten (N,H,W,C) to (N, C*H*W) in PyTorch's order (torch.flatten(x, 1) on NCHW), so that a following linear layer
 * takes a PyTorch state_dict's weights unchanged. Rank-2 inputs pass through. */
#include <limits.h>

#include "engine/layer.h"

static kelp_status parse(const cJSON *json, void *attrs)
{
    (void)json;
    (void)attrs;
    return KELP_OK;
}

static kelp_status infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)attrs;
    char buf[64];
    if (n_in != 1)
        return kelp_set_error(KELP_ERR_SHAPE, "takes 1 input, got %d", n_in);
    if (in[0].ndim == 2) {
        *out = in[0];
        return KELP_OK;
    }
    if (in[0].ndim != 4)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 has shape %s; expected rank 4 (N,H,W,C) or rank 2",
                              kelp_shape_str(&in[0], buf, sizeof buf));
    for (int d = 0; d < 4; d++)
        if (in[0].dims[d] > INT_MAX)
            return kelp_set_error(KELP_ERR_SHAPE, "input 0 has shape %s; dimension %d exceeds %d",
                                  kelp_shape_str(&in[0], buf, sizeof buf), d, INT_MAX);
    *out = kelp_shape2(in[0].dims[0], in[0].dims[1] * in[0].dims[2] * in[0].dims[3]);
    return KELP_OK;
}

// x (N,H,W,C) -> y (N, C*H*W), or x (N,F) -> y (N,F)
static kelp_status forward(const kelp_layer_io *io)
{
    kelp_backend *be = io->be;
    const kelp_shape *s = &io->in[0]->shape;
    if (s->ndim == 2)
        return be->iface->copy(be, io->out->data, io->in[0]->data, kelp_tensor_bytes(io->out));
    return be->iface->nhwc_to_nchw(be, io->out->dtype, (int)s->dims[0], (int)s->dims[1], (int)s->dims[2], (int)s->dims[3],
                                   io->in[0]->data, io->out->data);
}

static kelp_status backward(const kelp_layer_io *io)
{
    if (!io->din[0])
        return KELP_OK;
    kelp_backend *be = io->be;
    const kelp_shape *s = &io->in[0]->shape;
    if (s->ndim == 2)
        return be->iface->axpy(be, io->dout->dtype, kelp_shape_numel(s), 1.0f, io->dout->data, io->din[0]->data);
    return be->iface->nchw_to_nhwc_accumulate(be, io->dout->dtype, (int)s->dims[0], (int)s->dims[1], (int)s->dims[2],
                                              (int)s->dims[3], io->dout->data, io->din[0]->data);
}

static const char *const fields[] = {NULL};

const kelp_layer_type kelp_layer_flatten = {
    .name = "flatten",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = fields,
    .parse = parse,
    .infer = infer,
    .forward = forward,
    .backward = backward,
};
