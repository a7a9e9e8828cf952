/* relu, relu6, leaky_relu, silu, sigmoid and gelu layers: forward and backward against double references, finite
 * differences, accumulation into input gradients, and field parsing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/simd.h"
#include "kernels/ops/activation.h"
#include "kernels/ops/conv.h"
#include "ref/layer_harness.h"
#include "ref/ref_elem.h"

typedef struct act_case {
    const char *type;
    const char *fields;
    kelp_act_kind kind;
    double alpha;
    bool has_kink; /* relu-like: keep inputs away from 0 where the derivative jumps */
    float cap;     /* relu6's second kink: inputs also reach past it and keep away from it */
} act_case;

static const act_case cases[] = {
    {"relu", "{}", KELP_ACT_RELU, 0.0, true, 0.0f},
    {"relu6", "{}", KELP_ACT_RELU6, 0.0, true, 6.0f},
    {"leaky_relu", "{\"negative_slope\": 0.2}", KELP_ACT_LEAKY_RELU, 0.2, true, 0.0f},
    {"silu", "{}", KELP_ACT_SILU, 0.0, false, 0.0f},
    {"sigmoid", "{}", KELP_ACT_SIGMOID, 0.0, false, 0.0f},
    {"gelu", "{\"approximate\": \"none\"}", KELP_ACT_GELU, 0.0, false, 0.0f},
};

#define N_CASES (sizeof cases / sizeof cases[0])

/* Odd NHWC sizes so that no loop bound happens to be a multiple of anything. */
static const kelp_shape shape = {4, {2, 3, 5, 7}};

static void setup_case(test_layer *t, const act_case *c, uint64_t seed, float range)
{
    test_layer_setup(t, c->type, c->fields, 1, &shape, true, seed);
    float *x = test_f32(&t->in[0]);
    int64_t n = kelp_shape_numel(&shape);
    test_fill_uniform(x, (size_t)n, seed + 1, -range, c->cap + range);
    for (int64_t i = 0; i < n && c->has_kink; i++) {
        float kink = c->cap > 0.0f && x[i] > 0.5f * c->cap ? c->cap : 0.0f;
        x[i] = x[i] >= kink ? x[i] + 0.05f : x[i] - 0.05f;
    }
}

static void test_forward_matches_reference(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_CASES; k++) {
        test_layer t;
        setup_case(&t, &cases[k], 10 + k, 5.0f);
        assert_true(kelp_shape_equal(&t.out_shape, &shape));
        test_layer_forward(&t);
        int64_t n = kelp_shape_numel(&shape);
        double *want = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            want[i] = ref_activation(cases[k].kind, cases[k].alpha, test_f32(&t.in[0])[i]);
        test_assert_close(test_f32(&t.out), want, (size_t)n, 1e-5, 1e-6, cases[k].type);
        free(want);
        test_layer_teardown(&t);
    }
}

static void test_backward_matches_reference_and_accumulates(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_CASES; k++) {
        test_layer t;
        setup_case(&t, &cases[k], 20 + k, 5.0f);
        test_layer_forward(&t);
        int64_t n = kelp_shape_numel(&shape);
        float *dx = test_f32(&t.din[0]);
        for (int64_t i = 0; i < n; i++)
            dx[i] = 0.5f;
        TEST_OK(t.type->backward(&t.io));
        double *want = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            want[i] = 0.5 + test_f32(&t.dout)[i] *
                                ref_activation_derivative(cases[k].kind, cases[k].alpha, test_f32(&t.in[0])[i]);
        test_assert_close(dx, want, (size_t)n, 1e-5, 1e-6, cases[k].type);
        free(want);
        test_layer_teardown(&t);
    }
}

static void test_gradcheck(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_CASES; k++) {
        test_layer t;
        setup_case(&t, &cases[k], 30 + k, 3.0f);
        test_layer_gradcheck(&t, 1e-3f, 2e-3, 210);
        test_layer_teardown(&t);
    }
}

static void test_leaky_relu_default_slope(void **state)
{
    (void)state;
    test_layer t;
    test_layer_setup(&t, "leaky_relu", "{}", 1, &shape, false, 3);
    test_f32(&t.in[0])[0] = -2.0f;
    test_f32(&t.in[0])[1] = 3.0f;
    test_layer_forward(&t);
    assert_float_equal(test_f32(&t.out)[0], -0.02f, 1e-7);
    assert_float_equal(test_f32(&t.out)[1], 3.0f, 0.0f);
    test_layer_teardown(&t);
}

/* PyTorch's nn.ReLU6 (checked with torch 2.15): clamps at both ends, passes no gradient at either kink (hardtanh's
 * open interval), and NaN through both ways. */
static void test_relu6_values_and_kinks(void **state)
{
    (void)state;
    const kelp_shape row = {2, {1, 8}};
    const float x[8] = {-2.0f, 0.0f, 1e-7f, 3.5f, 6.0f, 5.9999995f, 8.0f, NAN};
    const float want_y[7] = {0.0f, 0.0f, 1e-7f, 3.5f, 6.0f, 5.9999995f, 6.0f};
    const float want_dx[8] = {0.0f, 0.0f, 2.0f, 2.0f, 0.0f, 2.0f, 0.0f, 2.0f};
    test_layer t;
    test_layer_setup(&t, "relu6", "{}", 1, &row, true, 4);
    memcpy(test_f32(&t.in[0]), x, sizeof x);
    test_layer_forward(&t);
    for (int i = 0; i < 7; i++)
        assert_float_equal(test_f32(&t.out)[i], want_y[i], 0.0f);
    assert_true(isnan(test_f32(&t.out)[7]));
    for (int i = 0; i < 8; i++) {
        test_f32(&t.dout)[i] = 2.0f;
        test_f32(&t.din[0])[i] = 0.0f;
    }
    TEST_OK(t.type->backward(&t.io));
    for (int i = 0; i < 8; i++)
        assert_float_equal(test_f32(&t.din[0])[i], want_dx[i], 0.0f);
    test_layer_teardown(&t);
}

/* PyTorch's nn.ReLU: NaN propagates forward (torch.relu(nan) is nan) and its gradient passes backward
 * (threshold_backward zeroes it only where x <= 0); -0 and 0 give 0 and no gradient; where no gradient passes, an
 * infinite or NaN incoming gradient adds 0 (a select, not dy * 0), in ReLU6 too. A ReLU fused into an inference
 * convolution's epilogue (scalar and 16-lane forms) treats NaN the same way. */
static void test_relu_propagates_nan(void **state)
{
    (void)state;
    const kelp_shape row = {2, {1, 5}};
    const float x[5] = {NAN, -0.0f, 0.0f, -3.0f, 2.5f};
    const float want_dx[5] = {2.0f, 0.0f, 0.0f, 0.0f, 2.0f};
    test_layer t;
    test_layer_setup(&t, "relu", "{}", 1, &row, true, 5);
    memcpy(test_f32(&t.in[0]), x, sizeof x);
    test_layer_forward(&t);
    assert_true(isnan(test_f32(&t.out)[0]));
    for (int i = 1; i < 5; i++)
        assert_true(test_f32(&t.out)[i] == (i == 4 ? 2.5f : 0.0f) && !signbit(test_f32(&t.out)[i]));
    for (int i = 0; i < 5; i++) {
        test_f32(&t.dout)[i] = 2.0f;
        test_f32(&t.din[0])[i] = 0.0f;
    }
    TEST_OK(t.type->backward(&t.io));
    for (int i = 0; i < 5; i++)
        assert_float_equal(test_f32(&t.din[0])[i], want_dx[i], 0.0f);
    const float blocked[3] = {INFINITY, -INFINITY, NAN}; /* at x = -3 */
    for (int i = 0; i < 3; i++) {
        test_f32(&t.dout)[3] = blocked[i];
        test_f32(&t.din[0])[3] = 0.0f;
        TEST_OK(t.type->backward(&t.io));
        assert_true(test_f32(&t.din[0])[3] == 0.0f);
        assert_true(kelp_act_grad(KELP_ACT_RELU6, 0.0f, 7.0f, 6.0f, blocked[i]) == 0.0f);
    }
    test_layer_teardown(&t);

    kelp_conv_epilogue ep = {.clamp = KELP_CLAMP_RELU};
    assert_true(isnan(kelp_conv_epilogue_value(&ep, 0, NAN)));
    assert_true(kelp_conv_epilogue_value(&ep, 0, -1.0f) == 0.0f);
    kelp_vec16 v;
    for (int i = 0; i < 16; i++)
        v[i] = i % 2 ? NAN : (float)(i - 8);
    KELP_EPILOGUE16(v, &ep, 0);
    for (int i = 0; i < 16; i++)
        assert_true(i % 2 ? isnan(v[i]) : v[i] == (i > 8 ? (float)(i - 8) : 0.0f));
}

/* The CPU backward runs vector clones (AVX-512, AVX2, SSE) over a slice per thread and a remainder loop: in every
 * lane it must compute exactly dx + kelp_act_grad(x, y, dy) of the per-element function, kinks, signed zeros, NaN
 * and infinities included. Sizes: vectors plus a remainder,
 * and slices for 2 threads past the parallel threshold. */
static void test_backward_every_lane_matches_per_element_math(void **state)
{
    (void)state;
    const float specials[] = {NAN, -0.0f, 0.0f, 1e-7f, -1e-7f, 6.0f, 5.9999995f, 6.0000005f, 8.0f, -2.0f,
                              INFINITY, -INFINITY, 0.5f, -3.25f, 2.0f, 1.0f, -1.0f};
    const float dys[] = {1.5f, -2.0f, INFINITY, 0.25f, NAN, -0.0f, 3.0f, -INFINITY, 0.0f, 7.0f, -0.5f};
    const int64_t sizes[] = {87, 40003};
    for (size_t k = 0; k < N_CASES; k++)
        for (int s = 0; s < 2; s++) {
            const kelp_shape row = {2, {1, sizes[s]}};
            test_layer t;
            test_layer_setup(&t, cases[k].type, cases[k].fields, 1, &row, true, 70 + k);
            const int64_t n = sizes[s];
            float *x = test_f32(&t.in[0]), *dy = test_f32(&t.dout), *dx = test_f32(&t.din[0]);
            for (int64_t i = 0; i < n; i++)
                x[i] = specials[i % (int64_t)(sizeof specials / sizeof specials[0])];
            test_layer_forward(&t);
            const float *y = test_f32(&t.out);
            float *want = malloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++) {
                dy[i] = dys[i % (int64_t)(sizeof dys / sizeof dys[0])];
                dx[i] = 0.125f * (float)(i % 5) - 0.25f;
                want[i] = dx[i] + kelp_act_grad(cases[k].kind, (float)cases[k].alpha, x[i], y[i], dy[i]);
            }
            TEST_OK(t.type->backward(&t.io));
            for (int64_t i = 0; i < n; i++)
                if (isnan(want[i]) ? !isnan(dx[i]) : memcmp(&dx[i], &want[i], sizeof(float)) != 0)
                    fail_msg("%s, n %lld: dx[%lld] = %g, want %g (x %g, dy %g)", cases[k].type, (long long)n,
                             (long long)i, (double)dx[i], (double)want[i], (double)x[i], (double)dy[i]);
            free(want);
            test_layer_teardown(&t);
        }
}

static void test_fields_are_declared(void **state)
{
    (void)state;
    const kelp_layer_type *leaky = kelp_layer_find("leaky_relu"), *gelu = kelp_layer_find("gelu");
    assert_non_null(leaky);
    assert_non_null(gelu);
    assert_string_equal(leaky->fields[0], "negative_slope");
    assert_null(leaky->fields[1]);
    assert_string_equal(gelu->fields[0], "approximate");
    assert_null(gelu->fields[1]);
    assert_null(kelp_layer_find("relu")->fields[0]);
    assert_null(kelp_layer_find("relu6")->fields[0]);
}

static void test_invalid_fields(void **state)
{
    (void)state;
    test_layer t;
    TEST_FAILS_WITH(test_layer_try_setup(&t, "gelu", "{\"approximate\": \"tanh\"}", 1, &shape, false, 1),
                    KELP_ERR_UNSUPPORTED, "approximate");
    test_layer_teardown(&t);
    TEST_FAILS_WITH(test_layer_try_setup(&t, "gelu", "{\"approximate\": 1}", 1, &shape, false, 1), KELP_ERR_FORMAT,
                    "approximate");
    test_layer_teardown(&t);
    TEST_FAILS_WITH(test_layer_try_setup(&t, "leaky_relu", "{\"negative_slope\": \"big\"}", 1, &shape, false, 1),
                    KELP_ERR_FORMAT, "negative_slope");
    test_layer_teardown(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_backward_matches_reference_and_accumulates),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_leaky_relu_default_slope),
        cmocka_unit_test(test_relu6_values_and_kinks),
        cmocka_unit_test(test_relu_propagates_nan),
        cmocka_unit_test(test_backward_every_lane_matches_per_element_math),
        cmocka_unit_test(test_fields_are_declared),
        cmocka_unit_test(test_invalid_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
