/* add and concat layers: forward values, backward accumulation, finite differences, shape errors. */
#include <stdlib.h>
#include <string.h>

#include "ref/layer_harness.h"

/* ---- add ---- */

static void test_add_forward_three_inputs(void **state)
{
    (void)state;
    kelp_shape s[3] = {{4, {2, 3, 4, 5}}, {4, {2, 3, 4, 5}}, {4, {2, 3, 4, 5}}};
    test_layer t;
    test_layer_setup(&t, "add", "{}", 3, s, true, 1);
    assert_true(kelp_shape_equal(&t.out_shape, &s[0]));
    test_layer_forward(&t);
    int64_t n = kelp_shape_numel(&s[0]);
    double *want = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        want[i] = (double)test_f32(&t.in[0])[i] + test_f32(&t.in[1])[i] + test_f32(&t.in[2])[i];
    test_assert_close(test_f32(&t.out), want, (size_t)n, 1e-6, 1e-6, "add");
    free(want);
    test_layer_teardown(&t);
}

static void test_add_backward_accumulates_into_every_input(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape2(3, 7), kelp_shape2(3, 7)};
    test_layer t;
    test_layer_setup(&t, "add", "{}", 2, s, true, 2);
    test_layer_forward(&t);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 21; i++)
            test_f32(&t.din[k])[i] = (float)(k + 1);
    TEST_OK(t.type->backward(&t.io));
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 21; i++)
            assert_float_equal(test_f32(&t.din[k])[i], (float)(k + 1) + test_f32(&t.dout)[i], 1e-6);
    test_layer_teardown(&t);
}

static void test_add_gradcheck(void **state)
{
    (void)state;
    kelp_shape s[4] = {{4, {1, 3, 3, 2}}, {4, {1, 3, 3, 2}}, {4, {1, 3, 3, 2}}, {4, {1, 3, 3, 2}}};
    test_layer t;
    test_layer_setup(&t, "add", "{}", 4, s, true, 3);
    test_layer_gradcheck(&t, 1e-3f, 1e-3, 18);
    test_layer_teardown(&t);
}

static void test_add_shape_mismatch_names_input_and_shapes(void **state)
{
    (void)state;
    kelp_shape s[3] = {{4, {2, 3, 4, 5}}, {4, {2, 3, 4, 5}}, {4, {2, 3, 4, 6}}};
    test_layer t;
    TEST_FAILS_WITH(test_layer_try_setup(&t, "add", "{}", 3, s, true, 4), KELP_ERR_SHAPE, "input 2");
    assert_non_null(strstr(kelp_last_error(), "[2,3,4,6]"));
    assert_non_null(strstr(kelp_last_error(), "[2,3,4,5]"));
    test_layer_teardown(&t);
    kelp_shape ranks[2] = {kelp_shape2(2, 60), {4, {2, 3, 4, 5}}};
    TEST_FAILS_WITH(test_layer_try_setup(&t, "add", "{}", 2, ranks, true, 4), KELP_ERR_SHAPE, "input 1");
    test_layer_teardown(&t);
}

/* ---- concat ---- */

static void test_concat_forward_nhwc_channels(void **state)
{
    (void)state;
    const int n = 2, h = 3, w = 2, c[3] = {3, 1, 5};
    kelp_shape s[3];
    for (int i = 0; i < 3; i++)
        s[i] = kelp_shape4(n, h, w, c[i]);
    test_layer t;
    test_layer_setup(&t, "concat", "{}", 3, s, true, 5);
    kelp_shape want_shape = kelp_shape4(n, h, w, 9);
    assert_true(kelp_shape_equal(&t.out_shape, &want_shape));
    test_layer_forward(&t);
    const float *y = test_f32(&t.out);
    for (int64_t pixel = 0; pixel < n * h * w; pixel++) {
        int offset = 0;
        for (int i = 0; i < 3; i++) {
            for (int ch = 0; ch < c[i]; ch++)
                assert_true(y[pixel * 9 + offset + ch] == test_f32(&t.in[i])[pixel * c[i] + ch]);
            offset += c[i];
        }
    }
    test_layer_teardown(&t);
}

static void test_concat_rank2(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape2(4, 2), kelp_shape2(4, 3)};
    test_layer t;
    test_layer_setup(&t, "concat", "{}", 2, s, true, 6);
    kelp_shape want_shape = kelp_shape2(4, 5);
    assert_true(kelp_shape_equal(&t.out_shape, &want_shape));
    test_layer_forward(&t);
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 5; j++) {
            float want = j < 2 ? test_f32(&t.in[0])[r * 2 + j] : test_f32(&t.in[1])[r * 3 + j - 2];
            assert_true(test_f32(&t.out)[r * 5 + j] == want);
        }
    test_layer_teardown(&t);
}

static void test_concat_backward_accumulates_slices(void **state)
{
    (void)state;
    kelp_shape s[2] = {kelp_shape4(1, 2, 2, 2), kelp_shape4(1, 2, 2, 3)};
    test_layer t;
    test_layer_setup(&t, "concat", "{}", 2, s, true, 7);
    test_layer_forward(&t);
    for (int i = 0; i < 8; i++)
        test_f32(&t.din[0])[i] = 1.0f;
    for (int i = 0; i < 12; i++)
        test_f32(&t.din[1])[i] = -1.0f;
    TEST_OK(t.type->backward(&t.io));
    const float *dy = test_f32(&t.dout);
    for (int pixel = 0; pixel < 4; pixel++) {
        for (int ch = 0; ch < 2; ch++)
            assert_float_equal(test_f32(&t.din[0])[pixel * 2 + ch], 1.0f + dy[pixel * 5 + ch], 1e-6);
        for (int ch = 0; ch < 3; ch++)
            assert_float_equal(test_f32(&t.din[1])[pixel * 3 + ch], -1.0f + dy[pixel * 5 + 2 + ch], 1e-6);
    }
    test_layer_teardown(&t);
}

static void test_concat_gradcheck(void **state)
{
    (void)state;
    kelp_shape s[3] = {kelp_shape4(2, 2, 3, 1), kelp_shape4(2, 2, 3, 4), kelp_shape4(2, 2, 3, 2)};
    test_layer t;
    test_layer_setup(&t, "concat", "{}", 3, s, true, 8);
    test_layer_gradcheck(&t, 1e-3f, 1e-3, 48);
    test_layer_teardown(&t);
}

static void test_concat_shape_errors(void **state)
{
    (void)state;
    test_layer t;
    kelp_shape spatial[2] = {kelp_shape4(2, 4, 4, 3), kelp_shape4(2, 4, 5, 3)};
    TEST_FAILS_WITH(test_layer_try_setup(&t, "concat", "{}", 2, spatial, true, 9), KELP_ERR_SHAPE, "input 1");
    assert_non_null(strstr(kelp_last_error(), "[2,4,5,3]"));
    assert_non_null(strstr(kelp_last_error(), "[2,4,4,3]"));
    test_layer_teardown(&t);
    kelp_shape ranks[3] = {kelp_shape4(2, 4, 4, 3), kelp_shape4(2, 4, 4, 1), kelp_shape2(2, 3)};
    TEST_FAILS_WITH(test_layer_try_setup(&t, "concat", "{}", 3, ranks, true, 9), KELP_ERR_SHAPE, "input 2");
    test_layer_teardown(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_forward_three_inputs),
        cmocka_unit_test(test_add_backward_accumulates_into_every_input),
        cmocka_unit_test(test_add_gradcheck),
        cmocka_unit_test(test_add_shape_mismatch_names_input_and_shapes),
        cmocka_unit_test(test_concat_forward_nhwc_channels),
        cmocka_unit_test(test_concat_rank2),
        cmocka_unit_test(test_concat_backward_accumulates_slices),
        cmocka_unit_test(test_concat_gradcheck),
        cmocka_unit_test(test_concat_shape_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
