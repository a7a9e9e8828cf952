/* batch_norm: PyTorch's BatchNorm2d on (N,H,W,C) and BatchNorm1d on (N,C); channels are the last dimension, so both
 * are the same kernel over rows = numel / C. Parameters follow PyTorch's state_dict: weight, bias, running_mean,
 * running_var, num_batches_tracked. Training normalizes with batch statistics and saves mean and invstd in the
 * layer state for backward; eval uses the running statistics. */
#include <limits.h>
#include <stdio.h>

#include "engine/json_attr.h"
#include "engine/layer.h"
#include "engine/layers/attrs.h"
#include "engine/layers/fold.h"

enum { BN_WEIGHT = 0, BN_BIAS, BN_RUNNING_MEAN, BN_RUNNING_VAR, BN_NUM_BATCHES, BN_PARAM_COUNT };

static const char *const bn_fields[] = {"eps", "momentum", NULL};

static kelp_status bn_parse(const cJSON *json, void *attrs)
{
    kelp_bn_attrs *a = attrs;
    a->eps = 1e-5f;
    a->momentum = 0.1f;
    KELP_TRY(kelp_json_float(json, "eps", 0.0, 1.0, &a->eps));
    if (!(a->eps > 0.0f))
        return kelp_set_error(KELP_ERR_FORMAT, "field 'eps' must be greater than 0");
    return kelp_json_float(json, "momentum", 0.0, 1.0, &a->momentum);
}

static int64_t channels_of(const kelp_shape *s) { return s->dims[s->ndim - 1]; }

static kelp_status bn_infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    (void)attrs;
    (void)n_in;
    char buf[96];
    if (in[0].ndim != 4 && in[0].ndim != 2)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: batch_norm needs rank 4 (N,H,W,C) or rank 2 (N,C)",
                              kelp_shape_str(&in[0], buf, sizeof buf));
    if (channels_of(&in[0]) < 1 || channels_of(&in[0]) > INT_MAX)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 %s: the channel count must be in [1, %d]",
                              kelp_shape_str(&in[0], buf, sizeof buf), INT_MAX);
    *out = in[0];
    return KELP_OK;
}

static kelp_param_spec vector_spec(const char *suffix, int64_t c, kelp_param_kind kind, kelp_init_kind init)
{
    kelp_param_spec s = {.suffix = suffix, .shape = kelp_shape_make(1, &c), .dtype = KELP_F32, .kind = kind,
                         .init = init};
    return s;
}

static int bn_params(const void *attrs, const kelp_shape *in, int n_in, kelp_param_spec *specs)
{
    (void)attrs;
    (void)n_in;
    int64_t c = channels_of(&in[0]);
    specs[BN_WEIGHT] = vector_spec("weight", c, KELP_PARAM_TRAINABLE, KELP_INIT_ONES);
    specs[BN_BIAS] = vector_spec("bias", c, KELP_PARAM_TRAINABLE, KELP_INIT_ZEROS);
    specs[BN_RUNNING_MEAN] = vector_spec("running_mean", c, KELP_PARAM_BUFFER, KELP_INIT_ZEROS);
    specs[BN_RUNNING_VAR] = vector_spec("running_var", c, KELP_PARAM_BUFFER, KELP_INIT_ONES);
    /* PyTorch's counter is a rank-0 int64 tensor. */
    specs[BN_NUM_BATCHES] = (kelp_param_spec){.suffix = "num_batches_tracked", .shape = kelp_shape_make(0, NULL),
                                              .dtype = KELP_I64, .kind = KELP_PARAM_BUFFER,
                                              .init = KELP_INIT_ZEROS};
    return BN_PARAM_COUNT;
}

/* save_mean (C) then save_invstd (C) */
static size_t bn_state(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out)
{
    (void)attrs;
    (void)n_in;
    (void)out;
    return 2 * (size_t)channels_of(&in[0]) * sizeof(float);
}

static const float *f32(const kelp_tensor *t) { return t->data; }

/* The counter lives in backend memory and is counted there: a round trip per layer and step would stall a GPU's
 * queue fifty times a step in ResNet-50. */
static kelp_status count_batch(kelp_backend *be, kelp_tensor *counter)
{
    return be->iface->counter_add(be, counter->data, 1);
}

static kelp_status bn_forward(const kelp_layer_io *io)
{
    const kelp_bn_attrs *a = io->attrs;
    kelp_backend *be = io->be;
    const kelp_tensor *x = io->in[0];
    int c = (int)channels_of(&x->shape);
    int64_t rows = kelp_shape_numel(&x->shape) / c;
    kelp_tensor *const *p = io->param;
    if (!io->training)
        return be->iface->batchnorm_forward_infer(be, x->dtype, rows, c, x->data, f32(p[BN_WEIGHT]), f32(p[BN_BIAS]),
                                                  f32(p[BN_RUNNING_MEAN]), f32(p[BN_RUNNING_VAR]), a->eps,
                                                  io->out->data);
    if (rows < 2) {
        char buf[96];
        return kelp_set_error(KELP_ERR_SHAPE,
                              "batch_norm '%s': expected more than 1 value per channel when training, got input %s",
                              io->name, kelp_shape_str(&x->shape, buf, sizeof buf));
    }
    float *save_mean = io->state, *save_invstd = save_mean + c;
    KELP_TRY(be->iface->batchnorm_forward_train(be, x->dtype, rows, c, x->data, f32(p[BN_WEIGHT]), f32(p[BN_BIAS]),
                                                p[BN_RUNNING_MEAN]->data, p[BN_RUNNING_VAR]->data, a->momentum,
                                                a->eps, io->out->data, save_mean, save_invstd));
    return count_batch(be, p[BN_NUM_BATCHES]);
}

kelp_status kelp_batch_norm_fold(const kelp_layer_io *io, const float *conv_bias, float *scale, float *shift)
{
    const float eps = ((const kelp_bn_attrs *)io->attrs)->eps;
    kelp_tensor *const *p = io->param;
    int c = (int)kelp_shape_numel(&p[BN_WEIGHT]->shape);
    return io->be->iface->batchnorm_fold(io->be, c, f32(p[BN_WEIGHT]), f32(p[BN_BIAS]), f32(p[BN_RUNNING_MEAN]),
                                         f32(p[BN_RUNNING_VAR]), eps, conv_bias, scale, shift);
}

static float *grad_or_null(kelp_tensor *t) { return t ? t->data : NULL; }

static kelp_status bn_backward(const kelp_layer_io *io)
{
    void *dx = io->din[0] ? io->din[0]->data : NULL;
    float *dgamma = grad_or_null(io->dparam[BN_WEIGHT]), *dbeta = grad_or_null(io->dparam[BN_BIAS]);
    if (!dx && !dgamma && !dbeta)
        return KELP_OK;
    kelp_backend *be = io->be;
    const kelp_tensor *x = io->in[0];
    int c = (int)channels_of(&x->shape);
    int64_t rows = kelp_shape_numel(&x->shape) / c;
    if (!io->training)
        return be->iface->batchnorm_backward_infer(be, x->dtype, rows, c, x->data, io->dout->data,
                                                   f32(io->param[BN_WEIGHT]),
                                                   f32(io->param[BN_RUNNING_MEAN]), f32(io->param[BN_RUNNING_VAR]),
                                                   ((const kelp_bn_attrs *)io->attrs)->eps, dx, dgamma, dbeta);
    const float *save_mean = io->state, *save_invstd = save_mean + c;
    return be->iface->batchnorm_backward(be, x->dtype, rows, c, x->data, io->dout->data, f32(io->param[BN_WEIGHT]),
                                         save_mean, save_invstd, ((const kelp_bn_attrs *)io->attrs)->eps, dx, dgamma, dbeta);
}

const kelp_layer_type kelp_layer_batch_norm = {
    .name = "batch_norm",
    .min_inputs = 1,
    .max_inputs = 1,
    .fields = bn_fields,
    .attrs_size = sizeof(kelp_bn_attrs),
    .parse = bn_parse,
    .infer = bn_infer,
    .params = bn_params,
    .state = bn_state,
    .forward = bn_forward,
    .backward = bn_backward,
};
