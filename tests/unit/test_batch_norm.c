/* batch_norm (BatchNorm2d on NHWC, BatchNorm1d on (N,C)) against the naive double reference and hand-computed
 * running statistics, with finite-difference gradient checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/layer_harness.h"
#include "ref/ref_spatial.h"

enum { WEIGHT = 0, BIAS, RUNNING_MEAN, RUNNING_VAR, NUM_BATCHES };

static int64_t numel(const kelp_tensor *t) { return kelp_shape_numel(&t->shape); }

static int channels(const test_layer *t) { return (int)t->in_shape[0].dims[t->in_shape[0].ndim - 1]; }

static int64_t num_batches(const test_layer *t) { return *(const int64_t *)t->param[NUM_BATCHES].data; }

static float *param(test_layer *t, int p) { return test_f32(&t->param[p]); }

/* Training forward: y, the saved mean and invstd, the running estimates (unbiased variance) and the counter. */
static void check_train_forward(const kelp_shape *shape, const char *json, float eps, float momentum, uint64_t seed)
{
    char what[128], buf[64];
    snprintf(what, sizeof what, "batch_norm %s on %s", json, kelp_shape_str(shape, buf, sizeof buf));
    test_layer t;
    test_layer_setup(&t, "batch_norm", json, 1, shape, true, seed);
    int c = channels(&t);
    int64_t rows = numel(&t.in[0]) / c;
    float *old_mean = malloc((size_t)c * sizeof(float)), *old_var = malloc((size_t)c * sizeof(float));
    memcpy(old_mean, param(&t, RUNNING_MEAN), (size_t)c * sizeof(float));
    memcpy(old_var, param(&t, RUNNING_VAR), (size_t)c * sizeof(float));

    test_layer_forward(&t);
    double *y = malloc((size_t)numel(&t.out) * sizeof(double));
    double *mean = malloc((size_t)c * sizeof(double)), *var = malloc((size_t)c * sizeof(double));
    double *invstd = malloc((size_t)c * sizeof(double)), *run_mean = malloc((size_t)c * sizeof(double));
    double *run_var = malloc((size_t)c * sizeof(double));
    ref_batchnorm_train(rows, c, test_f32(&t.in[0]), param(&t, WEIGHT), param(&t, BIAS), eps, y, mean, var);
    for (int ch = 0; ch < c; ch++) {
        invstd[ch] = 1.0 / sqrt(var[ch] + eps);
        run_mean[ch] = (1.0 - momentum) * old_mean[ch] + momentum * mean[ch];
        run_var[ch] = (1.0 - momentum) * old_var[ch] + momentum * var[ch] * (double)rows / (double)(rows - 1);
    }
    test_assert_close(test_f32(&t.out), y, (size_t)numel(&t.out), 1e-5, 1e-5, what);
    const float *saved = t.state;
    test_assert_close(saved, mean, (size_t)c, 1e-5, 1e-6, "saved mean");
    test_assert_close(saved + c, invstd, (size_t)c, 1e-5, 0.0, "saved invstd");
    test_assert_close(param(&t, RUNNING_MEAN), run_mean, (size_t)c, 1e-5, 1e-7, "running_mean");
    test_assert_close(param(&t, RUNNING_VAR), run_var, (size_t)c, 1e-5, 0.0, "running_var");
    assert_int_equal(num_batches(&t), 1);
    free(old_mean);
    free(old_var);
    free(y);
    free(mean);
    free(var);
    free(invstd);
    free(run_mean);
    free(run_var);
    test_layer_teardown(&t);
}

static void test_train_forward_matches_reference(void **state)
{
    (void)state;
    const kelp_shape shapes[] = {kelp_shape4(3, 5, 7, 6), kelp_shape4(1, 3, 3, 17), kelp_shape4(2, 1, 1, 33),
                                 kelp_shape2(5, 7), kelp_shape2(2, 40)};
    for (int i = 0; i < 5; i++) {
        check_train_forward(&shapes[i], "{}", 1e-5f, 0.1f, 10 + (uint64_t)i);
        check_train_forward(&shapes[i], "{\"eps\":0.001,\"momentum\":0.25}", 1e-3f, 0.25f, 20 + (uint64_t)i);
    }
}

/* Two steps from PyTorch's initial state, computed by hand: channel 0 sees {1,2,3,4} then {2,4,6,8}, channel 1
 * sees {-2,0,2,4} then {-4,0,4,8}. Unbiased variances 5/3, 20/3 then 20/3, 80/3. */
static void test_running_stats_after_two_steps(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape2(4, 2);
    test_layer t;
    test_layer_setup(&t, "batch_norm", NULL, 1, &shape, true, 3);
    const float x[8] = {1, -2, 2, 0, 3, 2, 4, 4};
    for (int i = 0; i < 2; i++) {
        param(&t, RUNNING_MEAN)[i] = 0.0f;
        param(&t, RUNNING_VAR)[i] = 1.0f;
    }
    memcpy(test_f32(&t.in[0]), x, sizeof x);
    test_layer_forward(&t);
    const double mean1[2] = {0.25, 0.1}, var1[2] = {0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 20.0 / 3.0};
    test_assert_close(param(&t, RUNNING_MEAN), mean1, 2, 1e-6, 0.0, "running_mean after step 1");
    test_assert_close(param(&t, RUNNING_VAR), var1, 2, 1e-6, 0.0, "running_var after step 1");
    for (int i = 0; i < 8; i++)
        test_f32(&t.in[0])[i] = 2.0f * x[i];
    test_layer_forward(&t);
    const double mean2[2] = {0.9 * 0.25 + 0.5, 0.9 * 0.1 + 0.2};
    const double var2[2] = {0.9 * var1[0] + 0.1 * 20.0 / 3.0, 0.9 * var1[1] + 0.1 * 80.0 / 3.0};
    test_assert_close(param(&t, RUNNING_MEAN), mean2, 2, 1e-6, 0.0, "running_mean after step 2");
    test_assert_close(param(&t, RUNNING_VAR), var2, 2, 1e-6, 0.0, "running_var after step 2");
    assert_int_equal(num_batches(&t), 2);
    /* the normalized batch itself: channel 0 is (x - 5) / sqrt(5 + eps) with weight and bias applied */
    float w0 = param(&t, WEIGHT)[0], b0 = param(&t, BIAS)[0];
    const double want0 = (2.0 - 5.0) / sqrt(5.0 + 1e-5) * w0 + b0;
    test_assert_close(test_f32(&t.out), &want0, 1, 1e-5, 1e-6, "y[0]");
    test_layer_teardown(&t);
}

static void test_eval_uses_running_stats(void **state)
{
    (void)state;
    const kelp_shape shapes[] = {kelp_shape4(3, 4, 5, 18), kelp_shape2(1, 5)};
    for (int i = 0; i < 2; i++) {
        test_layer t;
        test_layer_setup(&t, "batch_norm", "{\"eps\":0.01}", 1, &shapes[i], false, 40 + (uint64_t)i);
        int c = channels(&t);
        float *mean_before = malloc((size_t)c * sizeof(float));
        memcpy(mean_before, param(&t, RUNNING_MEAN), (size_t)c * sizeof(float));
        test_layer_forward(&t);
        double *y = malloc((size_t)numel(&t.out) * sizeof(double));
        ref_batchnorm_eval(numel(&t.in[0]) / c, c, test_f32(&t.in[0]), param(&t, WEIGHT), param(&t, BIAS),
                           param(&t, RUNNING_MEAN), param(&t, RUNNING_VAR), 0.01, y);
        test_assert_close(test_f32(&t.out), y, (size_t)numel(&t.out), 1e-5, 1e-6, "eval output");
        assert_memory_equal(mean_before, param(&t, RUNNING_MEAN), (size_t)c * sizeof(float));
        assert_int_equal(num_batches(&t), 0);
        free(mean_before);
        free(y);
        test_layer_teardown(&t);
    }
}

static void check_backward(test_layer *t, bool with_dx, bool with_dparams)
{
    int c = channels(t);
    int64_t rows = numel(&t->in[0]) / c;
    if (!with_dx)
        t->io.din[0] = NULL;
    if (!with_dparams)
        t->io.dparam[WEIGHT] = t->io.dparam[BIAS] = NULL;
    test_layer_forward(t);
    test_layer_backward(t);
    double *dx = malloc((size_t)numel(&t->in[0]) * sizeof(double));
    double *dgamma = malloc((size_t)c * sizeof(double)), *dbeta = malloc((size_t)c * sizeof(double));
    ref_batchnorm_backward(rows, c, test_f32(&t->in[0]), test_f32(&t->dout), param(t, WEIGHT), 1e-5, dx, dgamma,
                           dbeta);
    if (with_dx)
        test_assert_close(test_f32(&t->din[0]), dx, (size_t)numel(&t->in[0]), 1e-4, 1e-5, "dx");
    else
        for (int64_t i = 0; i < numel(&t->din[0]); i++)
            assert_true(test_f32(&t->din[0])[i] == 0.0f);
    if (with_dparams) {
        test_assert_close(test_f32(&t->dparam[WEIGHT]), dgamma, (size_t)c, 1e-4, 1e-5, "dweight");
        test_assert_close(test_f32(&t->dparam[BIAS]), dbeta, (size_t)c, 1e-4, 1e-5, "dbias");
    }
    t->io.din[0] = &t->din[0];
    t->io.dparam[WEIGHT] = &t->dparam[WEIGHT];
    t->io.dparam[BIAS] = &t->dparam[BIAS];
    free(dx);
    free(dgamma);
    free(dbeta);
}

/* Every element of dx, dweight and dbias, also when the input or the parameters need no gradient (frozen). */
static void test_backward_matches_reference(void **state)
{
    (void)state;
    const kelp_shape shapes[] = {kelp_shape4(3, 5, 3, 20), kelp_shape2(6, 3)};
    for (int i = 0; i < 2; i++) {
        test_layer t;
        test_layer_setup(&t, "batch_norm", NULL, 1, &shapes[i], true, 50 + (uint64_t)i);
        check_backward(&t, true, true);
        check_backward(&t, false, true);
        check_backward(&t, true, false);
        test_layer_teardown(&t);
    }
}

static void test_gradcheck(void **state)
{
    (void)state;
    const kelp_shape shapes[] = {kelp_shape4(3, 4, 5, 6), kelp_shape4(1, 3, 1, 3), kelp_shape2(5, 7)};
    for (int i = 0; i < 3; i++) {
        test_layer t;
        test_layer_setup(&t, "batch_norm", NULL, 1, &shapes[i], true, 60 + (uint64_t)i);
        test_layer_gradcheck(&t, 1e-2f, 1e-2, 40);
        test_layer_teardown(&t);
    }
}

/* Rows of a million values centred far from zero: a one-pass float variance would lose every digit. */
static void test_large_rows_stay_accurate(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(4, 512, 512, 2);
    test_layer t;
    test_layer_setup(&t, "batch_norm", NULL, 1, &shape, true, 70);
    int64_t n = numel(&t.in[0]), rows = n / 2;
    for (int64_t i = 0; i < n; i++)
        test_f32(&t.in[0])[i] = (i % 2 ? -20.0f : 10.0f) + 0.1f * test_f32(&t.in[0])[i];
    test_layer_forward(&t);
    double *y = malloc((size_t)n * sizeof(double)), mean[2], var[2];
    ref_batchnorm_train(rows, 2, test_f32(&t.in[0]), param(&t, WEIGHT), param(&t, BIAS), 1e-5, y, mean, var);
    test_assert_close(test_f32(&t.out), y, (size_t)n, 1e-4, 1e-4, "y over 1M rows");
    const float *saved = t.state;
    test_assert_close(saved, mean, 2, 1e-7, 0.0, "mean over 1M rows");
    const double invstd[2] = {1.0 / sqrt(var[0] + 1e-5), 1.0 / sqrt(var[1] + 1e-5)};
    test_assert_close(saved + 2, invstd, 2, 1e-6, 0.0, "invstd over 1M rows");
    free(y);
    test_layer_teardown(&t);
}

static void test_smaller_batch(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(3, 2, 3, 4);
    test_layer t;
    test_layer_setup(&t, "batch_norm", NULL, 1, &shape, true, 80);
    t.in[0].shape.dims[0] = 2;
    t.out.shape.dims[0] = 2;
    t.dout.shape.dims[0] = 2;
    test_layer_forward(&t);
    int64_t rows = 2 * 2 * 3;
    double *y = malloc((size_t)(rows * 4) * sizeof(double)), mean[4], var[4];
    ref_batchnorm_train(rows, 4, test_f32(&t.in[0]), param(&t, WEIGHT), param(&t, BIAS), 1e-5, y, mean, var);
    test_assert_close(test_f32(&t.out), y, (size_t)(rows * 4), 1e-5, 1e-5, "batch 2 of 3");
    for (int64_t i = rows * 4; i < kelp_shape_numel(&t.out_shape); i++)
        assert_true(test_f32(&t.out)[i] == 0.0f);
    free(y);
    test_layer_teardown(&t);
}

/* PyTorch's state_dict entries, in order, with their kinds, dtypes and initializers. */
static void test_param_specs(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(2, 3, 3, 8);
    test_layer t;
    test_layer_setup(&t, "batch_norm", NULL, 1, &shape, true, 90);
    assert_int_equal(t.n_params, 5);
    const char *names[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    const kelp_param_kind kinds[] = {KELP_PARAM_TRAINABLE, KELP_PARAM_TRAINABLE, KELP_PARAM_BUFFER, KELP_PARAM_BUFFER,
                                     KELP_PARAM_BUFFER};
    const kelp_init_kind inits[] = {KELP_INIT_ONES, KELP_INIT_ZEROS, KELP_INIT_ZEROS, KELP_INIT_ONES,
                                    KELP_INIT_ZEROS};
    for (int p = 0; p < 5; p++) {
        assert_string_equal(t.spec[p].suffix, names[p]);
        assert_int_equal(t.spec[p].kind, kinds[p]);
        assert_int_equal(t.spec[p].init, inits[p]);
        assert_false(t.spec[p].ohwi);
    }
    for (int p = 0; p < 4; p++) {
        assert_int_equal(t.spec[p].dtype, KELP_F32);
        assert_int_equal(t.spec[p].shape.ndim, 1);
        assert_int_equal(t.spec[p].shape.dims[0], 8);
    }
    assert_int_equal(t.spec[NUM_BATCHES].dtype, KELP_I64);
    assert_int_equal(t.spec[NUM_BATCHES].shape.ndim, 0);
    assert_int_equal(kelp_shape_numel(&t.spec[NUM_BATCHES].shape), 1);
    assert_int_equal(t.state_bytes, 2 * 8 * sizeof(float));
    test_layer_teardown(&t);
}

static void test_single_value_per_channel_in_training(void **state)
{
    (void)state;
    const kelp_shape shapes[] = {kelp_shape2(1, 4), kelp_shape4(1, 1, 1, 3)};
    for (int i = 0; i < 2; i++) {
        test_layer t;
        test_layer_setup(&t, "batch_norm", NULL, 1, &shapes[i], true, 100);
        TEST_FAILS_WITH(t.type->forward(&t.io), KELP_ERR_SHAPE, "more than 1 value per channel when training");
        t.io.training = false;
        test_layer_forward(&t);
        test_layer_teardown(&t);
    }
}

/* Eval mode (a frozen backbone) differentiates through the running statistics: a fixed affine map per channel. */
static void test_backward_in_eval(void **state)
{
    (void)state;
    const kelp_shape shapes[] = {kelp_shape4(2, 3, 5, 4), kelp_shape2(3, 7)};
    for (int i = 0; i < 2; i++) {
        test_layer t;
        test_layer_setup(&t, "batch_norm", "{\"eps\":0.001}", 1, &shapes[i], false, 110 + (uint64_t)i);
        test_layer_gradcheck(&t, 1e-2f, 1e-3, 40);
        /* closed form: dx = dy * gamma / sqrt(running_var + eps) */
        int c = channels(&t);
        test_layer_forward(&t);
        test_layer_backward(&t);
        int64_t n = numel(&t.in[0]);
        double *want = malloc((size_t)n * sizeof(double));
        for (int64_t k = 0; k < n; k++) {
            int j = (int)(k % c);
            want[k] = test_f32(&t.dout)[k] * param(&t, WEIGHT)[j] / sqrt(param(&t, RUNNING_VAR)[j] + 0.001);
        }
        test_assert_close(test_f32(&t.din[0]), want, (size_t)n, 1e-5, 1e-6, "eval dx");
        assert_int_equal(num_batches(&t), 0);
        free(want);
        test_layer_teardown(&t);
    }
}

static void test_backward_accumulates(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(2, 3, 5, 7);
    test_layer t;
    test_layer_setup(&t, "batch_norm", NULL, 1, &shape, true, 120);
    test_layer_check_accumulates(&t);
    test_layer_teardown(&t);
}

static void expect_setup_fails(const char *json, kelp_shape shape, kelp_status status, const char *needle)
{
    test_layer t;
    TEST_FAILS_WITH(test_layer_try_setup(&t, "batch_norm", json, 1, &shape, true, 1), status, needle);
    test_layer_teardown(&t);
}

static void test_invalid(void **state)
{
    (void)state;
    kelp_shape img = kelp_shape4(2, 3, 3, 4);
    expect_setup_fails("{\"momentum\":1.5}", img, KELP_ERR_FORMAT, "momentum");
    expect_setup_fails("{\"momentum\":null}", img, KELP_ERR_FORMAT, "momentum");
    expect_setup_fails("{\"eps\":0}", img, KELP_ERR_FORMAT, "eps");
    expect_setup_fails("{\"eps\":\"small\"}", img, KELP_ERR_FORMAT, "eps");
    int64_t dims3[3] = {2, 3, 4};
    expect_setup_fails(NULL, kelp_shape_make(3, dims3), KELP_ERR_SHAPE, "rank 4 (N,H,W,C) or rank 2 (N,C)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_forward_matches_reference),
        cmocka_unit_test(test_running_stats_after_two_steps),
        cmocka_unit_test(test_eval_uses_running_stats),
        cmocka_unit_test(test_backward_matches_reference),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_large_rows_stay_accurate),
        cmocka_unit_test(test_smaller_batch),
        cmocka_unit_test(test_param_specs),
        cmocka_unit_test(test_single_value_per_channel_in_training),
        cmocka_unit_test(test_backward_in_eval),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
