#include "layer_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void alloc_tensor(kelp_backend *be, kelp_tensor *t, const kelp_shape *shape, kelp_dtype dtype)
{
    t->shape = *shape;
    t->dtype = dtype;
    t->backend = be;
    size_t bytes = (size_t)kelp_shape_numel(shape) * kelp_dtype_size(dtype);
    TEST_OK(be->iface->alloc(be, bytes, &t->data));
    memset(t->data, 0, bytes);
}

static int64_t numel(const kelp_tensor *t) { return kelp_shape_numel(&t->shape); }

kelp_status test_layer_try_setup(test_layer *t, const char *type, const char *fields_json, int n_in,
                                 const kelp_shape *in_shapes, bool training, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->be = test_cpu_backend();
    t->type = kelp_layer_find(type);
    if (!t->type)
        fail_msg("layer type '%s' is not registered", type);
    t->json = cJSON_Parse(fields_json ? fields_json : "{}");
    if (!t->json)
        fail_msg("bad JSON in test: %s", fields_json);
    t->attrs = calloc(1, t->type->attrs_size ? t->type->attrs_size : 1);
    t->n_in = n_in;
    for (int i = 0; i < n_in; i++)
        t->in_shape[i] = in_shapes[i];
    KELP_TRY(t->type->parse(t->json, t->attrs));
    KELP_TRY(t->type->infer(t->attrs, t->in_shape, n_in, &t->out_shape));

    kelp_backend *be = t->be;
    uint64_t rng = seed;
    for (int i = 0; i < n_in; i++) {
        bool labels = t->type->is_loss && i == 1;
        alloc_tensor(be, &t->in[i], &in_shapes[i], labels ? KELP_I32 : KELP_F32);
        if (labels) {
            int classes = (int)t->in_shape[0].dims[t->in_shape[0].ndim - 1];
            int32_t *l = t->in[i].data;
            for (int64_t j = 0; j < numel(&t->in[i]); j++)
                l[j] = test_rand_int(&rng, 0, classes - 1);
        } else {
            test_fill_uniform(t->in[i].data, (size_t)numel(&t->in[i]), test_rand_u64(&rng), -1.0f, 1.0f);
            alloc_tensor(be, &t->din[i], &in_shapes[i], KELP_F32);
        }
    }
    alloc_tensor(be, &t->out, &t->out_shape, KELP_F32);
    alloc_tensor(be, &t->dout, &t->out_shape, KELP_F32);
    if (t->type->params)
        t->n_params = t->type->params(t->attrs, t->in_shape, n_in, t->spec);
    for (int p = 0; p < t->n_params; p++) {
        kelp_param_spec *s = &t->spec[p];
        kelp_shape internal = kelp_param_internal_shape(s);
        alloc_tensor(be, &t->param[p], &internal, s->dtype);
        if (s->dtype == KELP_F32) {
            bool variance = strcmp(s->suffix, "running_var") == 0;
            test_fill_uniform(t->param[p].data, (size_t)numel(&t->param[p]), test_rand_u64(&rng),
                              variance ? 0.5f : -0.5f, variance ? 1.5f : 0.5f);
        }
        if (s->kind == KELP_PARAM_TRAINABLE)
            alloc_tensor(be, &t->dparam[p], &internal, KELP_F32);
    }
    if (t->type->state)
        t->state_bytes = t->type->state(t->attrs, t->in_shape, n_in, &t->out_shape);
    if (t->type->workspace)
        TEST_OK(t->type->workspace(t->attrs, be, t->in_shape, n_in, &t->out_shape, KELP_F32, &t->workspace_bytes));
    TEST_OK(be->iface->alloc(be, t->state_bytes + 1, &t->state));
    TEST_OK(be->iface->alloc(be, t->workspace_bytes + 1, &t->workspace));

    kelp_layer_io *io = &t->io;
    io->be = be;
    io->attrs = t->attrs;
    io->name = type;
    io->n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        io->in[i] = &t->in[i];
        io->din[i] = t->din[i].data ? &t->din[i] : NULL;
    }
    io->out = &t->out;
    io->dout = &t->dout;
    for (int p = 0; p < t->n_params; p++) {
        io->param[p] = &t->param[p];
        io->dparam[p] = t->dparam[p].data ? &t->dparam[p] : NULL;
    }
    io->state = t->state;
    io->workspace = t->workspace;
    io->training = training;
    io->seed = (kelp_rng_seed){.seed = seed ^ 0x5EEDull}; /* no step counter: the seed as it is */
    /* r: the fixed projection behind L = sum(out * r) */
    test_fill_uniform(t->dout.data, (size_t)numel(&t->dout), seed * 7 + 3, -1.0f, 1.0f);
    if (t->type->is_loss)
        ((float *)t->dout.data)[0] = 1.0f;
    return KELP_OK;
}

void test_layer_setup(test_layer *t, const char *type, const char *fields_json, int n_in, const kelp_shape *in_shapes,
                      bool training, uint64_t seed)
{
    TEST_OK(test_layer_try_setup(t, type, fields_json, n_in, in_shapes, training, seed));
}

void test_layer_forward(test_layer *t) { TEST_OK(t->type->forward(&t->io)); }

void test_layer_backward(test_layer *t)
{
    for (int i = 0; i < t->n_in; i++)
        if (t->din[i].data)
            memset(t->din[i].data, 0, (size_t)numel(&t->din[i]) * sizeof(float));
    for (int p = 0; p < t->n_params; p++)
        if (t->dparam[p].data)
            memset(t->dparam[p].data, 0, (size_t)numel(&t->dparam[p]) * sizeof(float));
    TEST_OK(t->type->backward(&t->io));
}

static double objective(test_layer *t)
{
    test_layer_forward(t);
    const float *y = t->out.data, *r = t->dout.data;
    double sum = 0.0;
    for (int64_t i = 0; i < numel(&t->out); i++)
        sum += (double)y[i] * (double)r[i];
    return sum;
}

static void check_tensor(test_layer *t, float *x, const float *analytic, int64_t n, float eps, double tol,
                         int samples, const char *what)
{
    uint64_t rng = 12345;
    int count = n < samples ? (int)n : samples;
    for (int s = 0; s < count; s++) {
        int64_t i = n <= samples ? s : (int64_t)(test_rand_u64(&rng) % (uint64_t)n);
        float saved = x[i];
        x[i] = saved + eps;
        double plus = objective(t);
        x[i] = saved - eps;
        double minus = objective(t);
        x[i] = saved;
        double numeric = (plus - minus) / (2.0 * eps);
        double a = analytic[i];
        double scale = fmax(1.0, fmax(fabs(a), fabs(numeric)));
        if (isnan(a) || fabs(a - numeric) > tol * scale)
            fail_msg("%s gradient of %s[%lld]: analytic %.7g, numeric %.7g (eps %g, tol %g)", t->type->name, what,
                     (long long)i, a, numeric, eps, tol);
    }
}

void test_layer_gradcheck(test_layer *t, float eps, double tol, int samples)
{
    test_layer_forward(t);
    test_layer_backward(t);
    /* Analytic gradients are copied first: the finite differences rerun forward, which may rewrite state. */
    for (int i = 0; i < t->n_in; i++) {
        if (!t->din[i].data)
            continue;
        int64_t n = numel(&t->din[i]);
        float *copy = malloc((size_t)n * sizeof(float));
        memcpy(copy, t->din[i].data, (size_t)n * sizeof(float));
        char what[32];
        snprintf(what, sizeof what, "input %d", i);
        check_tensor(t, t->in[i].data, copy, n, eps, tol, samples, what);
        free(copy);
    }
    for (int p = 0; p < t->n_params; p++) {
        if (!t->dparam[p].data)
            continue;
        int64_t n = numel(&t->dparam[p]);
        float *copy = malloc((size_t)n * sizeof(float));
        memcpy(copy, t->dparam[p].data, (size_t)n * sizeof(float));
        check_tensor(t, t->param[p].data, copy, n, eps, tol, samples, t->spec[p].suffix);
        free(copy);
    }
}

void test_layer_check_accumulates(test_layer *t)
{
    test_layer_forward(t);
    test_layer_backward(t);
    kelp_tensor *grads[KELP_MAX_INPUTS + KELP_MAX_PARAMS];
    int count = 0;
    for (int i = 0; i < t->n_in; i++)
        if (t->din[i].data)
            grads[count++] = &t->din[i];
    for (int p = 0; p < t->n_params; p++)
        if (t->dparam[p].data)
            grads[count++] = &t->dparam[p];
    float *twice[KELP_MAX_INPUTS + KELP_MAX_PARAMS];
    for (int g = 0; g < count; g++) {
        size_t n = (size_t)numel(grads[g]);
        twice[g] = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            twice[g][i] = 2.0f * test_f32(grads[g])[i];
    }
    TEST_OK(t->type->backward(&t->io));
    for (int g = 0; g < count; g++) {
        test_assert_close_f(test_f32(grads[g]), twice[g], (size_t)numel(grads[g]), 1e-6, 1e-7,
                            "gradient after two backward calls");
        free(twice[g]);
    }
}

void test_layer_teardown(test_layer *t)
{
    kelp_backend *be = t->be;
    for (int i = 0; i < t->n_in; i++) {
        be->iface->free(be, t->in[i].data);
        be->iface->free(be, t->din[i].data);
    }
    be->iface->free(be, t->out.data);
    be->iface->free(be, t->dout.data);
    for (int p = 0; p < t->n_params; p++) {
        be->iface->free(be, t->param[p].data);
        be->iface->free(be, t->dparam[p].data);
    }
    be->iface->free(be, t->state);
    be->iface->free(be, t->workspace);
    cJSON_Delete(t->json);
    free(t->attrs);
    memset(t, 0, sizeof *t);
}
