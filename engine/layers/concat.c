/* Concatenation of 2..8 inputs along the last (channel) dimension (U-Net skips, FPN, DenseNet). In NHWC every input
 * is a run of rows of its own width, so each one is a strided copy into a column slice of the output. */
#include <limits.h>

#include "engine/layer.h"

static kelp_status parse(const cJSON *json, void *attrs)
{
    (void)json;
    (void)attrs;
    return KELP_OK;
}

static bool same_leading_dims(const kelp_shape *a, const kelp_shape *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim - 1; d++)
        if (a->dims[d] != b->dims[d])
            return false;
    return true;
}

static kelp_status infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)attrs;
    if (n_in < 2 || n_in > KELP_MAX_INPUTS)
        return kelp_set_error(KELP_ERR_SHAPE, "takes 2 to %d inputs, got %d", KELP_MAX_INPUTS, n_in);
    if (in[0].ndim < 1)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 is a scalar; there is no channel dimension to concatenate");
    int64_t channels = 0;
    for (int i = 0; i < n_in; i++) {
        if (!same_leading_dims(&in[i], &in[0])) {
            char got[64], want[64];
            return kelp_set_error(KELP_ERR_SHAPE,
                                  "input %d has shape %s but input 0 has shape %s; all dimensions but the last "
                                  "(channels) must match",
                                  i, kelp_shape_str(&in[i], got, sizeof got),
                                  kelp_shape_str(&in[0], want, sizeof want));
        }
        if (in[i].dims[in[i].ndim - 1] < 1)
            return kelp_set_error(KELP_ERR_SHAPE, "input %d has no channels", i);
        channels += in[i].dims[in[i].ndim - 1];
    }
    if (channels > INT_MAX)
        return kelp_set_error(KELP_ERR_SHAPE, "the concatenated channels (%lld) exceed %d", (long long)channels,
                              INT_MAX);
    *out = in[0];
    out->dims[out->ndim - 1] = channels;
    return KELP_OK;
}

static int channels_of(const kelp_tensor *t) { return (int)t->shape.dims[t->shape.ndim - 1]; }

// x_i (..., C_i) -> y (..., sum C_i)
static kelp_status forward(const kelp_layer_io *io)
{
    kelp_backend *be = io->be;
    int width = channels_of(io->out);
    int64_t rows = kelp_shape_numel(&io->out->shape) / width;
    kelp_dtype dt = io->out->dtype;
    char *y = io->out->data;
    int offset = 0;
    for (int i = 0; i < io->n_in; i++) {
        int c = channels_of(io->in[i]);
        KELP_TRY(be->iface->copy_rows(be, dt, rows, c, io->in[i]->data, c, y + offset * kelp_dtype_size(dt), width,
                                      false));
        offset += c;
    }
    return KELP_OK;
}

static kelp_status backward(const kelp_layer_io *io)
{
    kelp_backend *be = io->be;
    int width = channels_of(io->out);
    int64_t rows = kelp_shape_numel(&io->out->shape) / width;
    kelp_dtype dt = io->dout->dtype;
    const char *dy = io->dout->data;
    int offset = 0;
    for (int i = 0; i < io->n_in; i++) {
        int c = channels_of(io->in[i]);
        if (io->din[i])
            KELP_TRY(be->iface->copy_rows(be, dt, rows, c, dy + offset * kelp_dtype_size(dt), width, io->din[i]->data,
                                          c, true));
        offset += c;
    }
    return KELP_OK;
}

static const char *const fields[] = {NULL};

const kelp_layer_type kelp_layer_concat = {
    .name = "concat",
    .min_inputs = 2,
    .max_inputs = KELP_MAX_INPUTS,
    .fields = fields,
    .parse = parse,
    .infer = infer,
    .forward = forward,
    .backward = backward,
};
