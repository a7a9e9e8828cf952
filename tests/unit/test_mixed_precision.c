/* Mixed precision on the CPU backend: graphs whose activations are BF16 or F16 (kelp_graph_options.precision)
 * compute what the F32 graph computes to within their rounding, keep float parameters and gradients, refresh their
 * low-precision weights whenever the float ones change, and train. The CUDA backend runs the same graph code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/loss_scale.h"
#include "engine/lr_schedule.h"
#include "engine/optimizer.h"
#include "kernels/ops/half.h"
#include "ref/graph_util.h"

static const char *model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[8,8,3]}],"
    "\"nodes\":["
    "{\"name\":\"conv1\",\"type\":\"conv2d\",\"out_channels\":16,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn1\",\"type\":\"batch_norm\"},{\"name\":\"relu1\",\"type\":\"relu\"},"
    "{\"name\":\"pool1\",\"type\":\"max_pool2d\",\"kernel_size\":2,\"stride\":2},"
    "{\"name\":\"conv2\",\"type\":\"conv2d\",\"out_channels\":16,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn2\",\"type\":\"batch_norm\"},{\"name\":\"relu2\",\"type\":\"silu\"},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},"
    "{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":4}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

#define BATCH 8
#define CLASSES 4

static kelp_graph *build(kelp_dtype precision, bool training)
{
    kelp_graph_options o = kelp_graph_defaults();
    o.batch = BATCH;
    o.training = training;
    o.with_loss = training;
    o.precision = precision;
    kelp_graph *g;
    TEST_OK(kelp_graph_build(test_ctx(), model, &o, &g));
    return g;
}

static void output_floats(kelp_graph *g, float *out)
{
    kelp_tensor *y = kelp_graph_output(g, 0);
    TEST_OK(kelp_tensor_download_floats(y, out, kelp_shape_numel(&y->shape)));
}

static int64_t param_count(kelp_graph *g) { return kelp_shape_numel(&kelp_graph_params(g)->shape); }

static float *grads_of(kelp_graph *g)
{
    int64_t n = param_count(g);
    float *host = malloc((size_t)n * sizeof *host);
    TEST_OK(kelp_tensor_download(kelp_graph_grads(g), host, (size_t)n * sizeof *host));
    return host;
}

/* ||a - b|| / ||b|| */
static double relative_error(const float *a, const float *b, int64_t n)
{
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < n; i++) {
        diff += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        norm += (double)b[i] * b[i];
    }
    return sqrt(diff / norm);
}

/* The same weights (one seed) and inputs through an F32 and a low-precision inference graph. */
static void check_forward(kelp_dtype precision, double tolerance)
{
    kelp_graph *ref = build(KELP_F32, false), *g = build(precision, false);
    assert_int_equal(kelp_graph_input(g, 0)->dtype, precision);
    assert_int_equal(kelp_graph_output(g, 0)->dtype, precision);
    test_fill_graph_inputs(ref, 0, 7);
    test_fill_graph_inputs(g, 0, 7);
    TEST_OK(kelp_graph_forward(ref));
    TEST_OK(kelp_graph_forward(g));
    float want[BATCH * CLASSES], got[BATCH * CLASSES];
    output_floats(ref, want);
    output_floats(g, got);
    double err = relative_error(got, want, BATCH * CLASSES);
    print_message("%s forward: relative error %.2e\n", kelp_precision_name(precision), err);
    assert_true(err < tolerance);
    assert_true(err > 0); /* it did round: the low-precision path ran */
    kelp_graph_destroy(ref);
    kelp_graph_destroy(g);
}

static void test_forward_bf16(void **state)
{
    (void)state;
    check_forward(KELP_BF16, 3e-2);
}

static void test_forward_f16(void **state)
{
    (void)state;
    check_forward(KELP_F16, 4e-3);
}

static double norm(const float *x, int64_t n)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)x[i] * x[i];
    return sqrt(sum);
}

/* One training step's float gradients, low precision against F32: the whole vector within `tolerance` and each
 * parameter's difference within `tolerance` of the whole gradient's norm. (Per parameter relative to itself is
 * ill-conditioned: a bias before batch norm has a zero gradient, and batch norm's bias gradient is a sum that
 * cancels, both amplifying rounding without bound.) Catches a weight gradient left out (the matrix products'
 * come from the low-precision buffer) as well as one computed wrongly. */
static void check_gradients(kelp_dtype precision, double tolerance)
{
    kelp_graph *ref = build(KELP_F32, true), *g = build(precision, true);
    kelp_graph *graphs[2] = {ref, g};
    float *grads[2];
    for (int i = 0; i < 2; i++) {
        test_fill_graph_inputs(graphs[i], CLASSES, 11);
        TEST_OK(kelp_graph_forward(graphs[i]));
        TEST_OK(kelp_graph_zero_grad(graphs[i]));
        TEST_OK(kelp_graph_backward(graphs[i]));
        grads[i] = grads_of(graphs[i]);
    }
    int64_t n = param_count(g);
    double whole = norm(grads[0], n), err = relative_error(grads[1], grads[0], n);
    print_message("%s gradients: relative error %.2e\n", kelp_precision_name(precision), err);
    assert_true(err < tolerance && err > 0);
    for (int p = 0; p < kelp_graph_param_count(g); p++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g, p, &info));
        if (info.kind != KELP_PARAM_TRAINABLE)
            continue;
        int64_t count = kelp_shape_numel(&info.shape), offset = (int64_t)(info.offset / sizeof(float));
        float *diff = malloc((size_t)count * sizeof *diff);
        for (int64_t i = 0; i < count; i++)
            diff[i] = grads[1][offset + i] - grads[0][offset + i];
        double share = norm(diff, count) / whole;
        free(diff);
        assert_true(share < tolerance);
        assert_true(norm(grads[1] + offset, count) > 0 || norm(grads[0] + offset, count) == 0);
    }
    free(grads[0]);
    free(grads[1]);
    kelp_graph_destroy(ref);
    kelp_graph_destroy(g);
}

static void test_gradients_bf16(void **state)
{
    (void)state;
    /* max pooling's windows tie more often in bf16, sending a gradient to another pixel: conv1's weight gradient
     * differs most (about 10%) */
    check_gradients(KELP_BF16, 6e-2);
}

static void test_gradients_f16(void **state)
{
    (void)state;
    check_gradients(KELP_F16, 3e-3);
}

/* Two steps without zero_grad add up exactly as in F32: the low-precision gradients are added into the float
 * ones and cleared after each. */
static void test_gradients_accumulate(void **state)
{
    (void)state;
    kelp_graph *g = build(KELP_BF16, true);
    test_fill_graph_inputs(g, CLASSES, 3);
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_zero_grad(g));
    TEST_OK(kelp_graph_backward(g));
    float *once = grads_of(g);
    TEST_OK(kelp_graph_forward(g)); /* the same batch again: the same gradients, added */
    TEST_OK(kelp_graph_backward(g));
    float *twice = grads_of(g);
    int64_t n = param_count(g), nonzero = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(twice[i] == 2 * once[i]);
        nonzero += once[i] != 0;
    }
    assert_true(nonzero > n / 2);
    free(once);
    free(twice);
    kelp_graph_destroy(g);
}

static void zero_params(kelp_graph *g)
{
    kelp_tensor *p = kelp_graph_params(g);
    float *zeros = calloc((size_t)param_count(g), sizeof *zeros);
    TEST_OK(kelp_tensor_upload(p, zeros, kelp_tensor_bytes(p)));
    free(zeros);
}

static void expect_zero_output(kelp_graph *g)
{
    float y[BATCH * CLASSES];
    TEST_OK(kelp_graph_forward(g));
    output_floats(g, y);
    for (int i = 0; i < BATCH * CLASSES; i++)
        assert_true(y[i] == 0.0f);
}

/* Zero weights give zero logits: only if the low-precision copy was converted again after they changed. */
static void test_changed_params_reach_forward(void **state)
{
    (void)state;
    kelp_graph *g = build(KELP_BF16, false);
    test_fill_graph_inputs(g, 0, 5);
    float y[BATCH * CLASSES];
    TEST_OK(kelp_graph_forward(g));
    output_floats(g, y);
    assert_true(y[0] != 0.0f);
    zero_params(g);
    expect_zero_output(g);
    kelp_graph_destroy(g);
}

static void test_loaded_weights_reach_forward(void **state)
{
    (void)state;
    kelp_graph *f32 = build(KELP_F32, false);
    zero_params(f32);
    const char *path = test_temp_path("mixed.safetensors");
    TEST_OK(kelp_graph_save_weights(f32, path));
    kelp_graph *g = build(KELP_F16, false);
    test_fill_graph_inputs(g, 0, 5);
    TEST_OK(kelp_graph_forward(g)); /* its own weights, converted once */
    TEST_OK(kelp_graph_load_weights(g, path, KELP_LOAD_STRICT));
    expect_zero_output(g);
    remove(path);
    kelp_graph_destroy(f32);
    kelp_graph_destroy(g);
}

/* Trains the small network on a fixed batch; with fp16, through the loss scaler as kelp train does. */
static float train(kelp_dtype precision, int steps)
{
    kelp_graph *g = build(precision, true);
    test_fill_graph_inputs(g, CLASSES, 2024);
    int64_t n = param_count(g);
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    c.momentum = 0.9f;
    kelp_optimizer *opt;
    kelp_backend *be = kelp_ctx_backend(test_ctx());
    TEST_OK(kelp_optimizer_create(be, &c, n, &opt));
    kelp_loss_scaler scaler;
    kelp_loss_scaler_init(&scaler);
    float loss = INFINITY, first = 0;
    for (int step = 0; step < steps; step++) {
        TEST_OK(kelp_graph_forward(g));
        TEST_OK(kelp_graph_loss(g, &loss));
        if (step == 0)
            first = loss;
        TEST_OK(kelp_graph_zero_grad(g));
        if (precision == KELP_F16)
            TEST_OK(kelp_graph_set_loss_scale(g, scaler.scale));
        TEST_OK(kelp_graph_backward(g));
        float *grads = kelp_graph_grads(g)->data;
        if (precision == KELP_F16) {
            bool finite;
            TEST_OK(kelp_unscale_grads(be, grads, n, NULL, 0, kelp_loss_scaler_inverse(&scaler), &finite));
            kelp_loss_scaler_update(&scaler, finite);
            if (!finite)
                continue;
        }
        TEST_OK(kelp_optimizer_step(opt, 0.05f, kelp_graph_params(g)->data, grads, NULL, 0));
    }
    print_message("%s: loss %.4f -> %.4f\n", kelp_precision_name(precision), first, loss);
    assert_true(first > 1.0f);
    kelp_optimizer_destroy(opt);
    kelp_graph_destroy(g);
    return loss;
}

static void test_trains_bf16(void **state)
{
    (void)state;
    assert_true(train(KELP_BF16, 150) < 0.05f);
}

static void test_trains_f16_with_loss_scaling(void **state)
{
    (void)state;
    assert_true(train(KELP_F16, 150) < 0.05f);
}

static void test_tensor_floats(void **state)
{
    (void)state;
    kelp_tensor t;
    kelp_shape s = kelp_shape2(1, 4);
    TEST_OK(kelp_tensor_alloc(test_ctx(), &s, KELP_BF16, &t));
    const float in[4] = {1.0f, 1.0f / 3.0f, -65504.0f, 1e-30f};
    float out[4];
    TEST_OK(kelp_tensor_upload_floats(&t, in, 4));
    TEST_OK(kelp_tensor_download_floats(&t, out, 4));
    for (int i = 0; i < 4; i++)
        assert_true(out[i] == kelp_bf16_to_float(kelp_bf16_from_float(in[i])));
    assert_true(out[1] != in[1]);
    TEST_FAILS_WITH(kelp_tensor_upload_floats(&t, in, 3), KELP_ERR_INVALID_ARG, "3 floats");
    kelp_tensor_free(test_ctx(), &t);
    TEST_OK(kelp_tensor_alloc(test_ctx(), &s, KELP_I32, &t));
    TEST_FAILS_WITH(kelp_tensor_download_floats(&t, out, 4), KELP_ERR_INVALID_ARG, "I32");
    kelp_tensor_free(test_ctx(), &t);
}

static void test_bad_precision(void **state)
{
    (void)state;
    kelp_graph_options o = kelp_graph_defaults();
    o.precision = KELP_U8;
    kelp_graph *g;
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(), model, &o, &g), KELP_ERR_INVALID_ARG, "precision U8");
    kelp_dtype dt;
    TEST_OK(kelp_precision_parse("bf16", &dt));
    assert_int_equal(dt, KELP_BF16);
    TEST_FAILS_WITH(kelp_precision_parse("half", &dt), KELP_ERR_INVALID_ARG, "'half'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_bf16),
        cmocka_unit_test(test_forward_f16),
        cmocka_unit_test(test_gradients_bf16),
        cmocka_unit_test(test_gradients_f16),
        cmocka_unit_test(test_gradients_accumulate),
        cmocka_unit_test(test_changed_params_reach_forward),
        cmocka_unit_test(test_loaded_weights_reach_forward),
        cmocka_unit_test(test_trains_bf16),
        cmocka_unit_test(test_trains_f16_with_loss_scaling),
        cmocka_unit_test(test_tensor_floats),
        cmocka_unit_test(test_bad_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
