/* Elementwise sum of 2..8 inputs of one shape (residual connections). */
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
    if (n_in < 2 || n_in > KELP_MAX_INPUTS)
        return kelp_set_error(KELP_ERR_SHAPE, "takes 2 to %d inputs, got %d", KELP_MAX_INPUTS, n_in);
    for (int i = 1; i < n_in; i++)
        if (!kelp_shape_equal(&in[i], &in[0])) {
            char got[64], want[64];
            return kelp_set_error(KELP_ERR_SHAPE, "input %d has shape %s but input 0 has shape %s", i,
                                  kelp_shape_str(&in[i], got, sizeof got), kelp_shape_str(&in[0], want, sizeof want));
        }
    *out = in[0];
    return KELP_OK;
}

// x0..x{n-1} (any shape) -> y (same shape)
static kelp_status forward(const kelp_layer_io *io)
{
    kelp_backend *be = io->be;
    int64_t n = kelp_shape_numel(&io->out->shape);
    kelp_dtype dt = io->out->dtype;
    void *y = io->out->data;
    KELP_TRY(be->iface->add(be, dt, n, io->in[0]->data, io->in[1]->data, y));
    for (int i = 2; i < io->n_in; i++)
        KELP_TRY(be->iface->axpy(be, dt, n, 1.0f, io->in[i]->data, y));
    return KELP_OK;
}

static kelp_status backward(const kelp_layer_io *io)
{
    kelp_backend *be = io->be;
    int64_t n = kelp_shape_numel(&io->out->shape);
    for (int i = 0; i < io->n_in; i++)
        if (io->din[i])
            KELP_TRY(be->iface->axpy(be, io->dout->dtype, n, 1.0f, io->dout->data, io->din[i]->data));
    return KELP_OK;
}

static const char *const fields[] = {NULL};

const kelp_layer_type kelp_layer_add = {
    .name = "add",
    .min_inputs = 2,
    .max_inputs = KELP_MAX_INPUTS,
    .fields = fields,
    .parse = parse,
    .infer = infer,
    .forward = forward,
    .backward = backward,
};
