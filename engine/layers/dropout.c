/* Dropout (PyTorch's nn.Dropout): in training each element is zeroed with probability p and survivors are scaled by
 * 1/(1-p); in evaluation it is the identity. The mask is kept as state for backward. */
#include "engine/json_attr.h"
#include "engine/layer.h"

typedef struct dropout_attrs {
    float p;
} dropout_attrs;

static kelp_status parse(const cJSON *json, void *attrs)
{
    dropout_attrs *a = attrs;
    a->p = 0.5f;
    KELP_TRY(kelp_json_float(json, "p", 0.0, 1.0, &a->p));
    /* Checked after the conversion to float: 0.999999999 rounds to 1, which would scale survivors by infinity. */
    if (a->p >= 1.0f)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'p' is %g; it must be in [0, 1)", a->p);
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

/* one u8 mask entry per element */
static size_t state_bytes(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out)
{
    (void)attrs;
    (void)in;
    (void)n_in;
    return (size_t)kelp_shape_numel(out);
}

// x (any shape) -> y (same shape), mask (same shape, u8)
static kelp_status forward(const kelp_layer_io *io)
{
    kelp_backend *be = io->be;
    if (!io->training)
        return be->iface->copy(be, io->out->data, io->in[0]->data, kelp_tensor_bytes(io->out));
    const dropout_attrs *a = io->attrs;
    int64_t n = kelp_shape_numel(&io->out->shape);
    return be->iface->dropout_forward(be, io->out->dtype, n, a->p, io->seed, 0, io->in[0]->data, io->out->data,
                                      io->state);
}

static kelp_status backward(const kelp_layer_io *io)
{
    if (!io->din[0])
        return KELP_OK;
    kelp_backend *be = io->be;
    int64_t n = kelp_shape_numel(&io->out->shape);
    if (!io->training)
        return be->iface->axpy(be, io->dout->dtype, n, 1.0f, io->dout->data, io->din[0]->data);
    const dropout_attrs *a = io->attrs;
    return be->iface->dropout_backward(be, io->dout->dtype, n, a->p, io->state, io->dout->data, io->din[0]->data);
}

static const char *const fields[] = {"p", NULL};

const kelp_layer_type kelp_layer_dropout = {
    .name = "dropout",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = fields,
    .attrs_size = sizeof(dropout_attrs),
    .parse = parse,
    .infer = infer,
    .state = state_bytes,
    .forward = forward,
    .backward = backward,
};
