/* flatten: NHWC in, PyTorch's NCHW flatten order out, checked element by element; the inverse permutation in
 * backward; rank-2 pass-through; rank errors. */
#include <string.h>

#include "ref/layer_harness.h"
#include "ref/ref_elem.h"

static void check_forward_order(kelp_shape s, uint64_t seed)
{
    int n = (int)s.dims[0], h = (int)s.dims[1], w = (int)s.dims[2], c = (int)s.dims[3];
    test_layer t;
    test_layer_setup(&t, "flatten", "{}", 1, &s, true, seed);
    kelp_shape want = kelp_shape2(n, (int64_t)c * h * w);
    assert_true(kelp_shape_equal(&t.out_shape, &want));
    test_layer_forward(&t);
    const float *x = test_f32(&t.in[0]), *y = test_f32(&t.out);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int ch = 0; ch < c; ch++) {
                    int64_t nhwc = (((int64_t)b * h + i) * w + j) * c + ch;
                    int64_t nchw = ref_nchw_index(h, w, c, b, i, j, ch);
                    if (y[nchw] != x[nhwc])
                        fail_msg("flatten of (%d,%d,%d,%d): y[%lld] = %g, want x(n=%d,h=%d,w=%d,c=%d) = %g", n, h,
                                 w, c, (long long)nchw, y[nchw], b, i, j, ch, x[nhwc]);
                }
    test_layer_teardown(&t);
}

static void test_forward_is_nchw_order(void **state)
{
    (void)state;
    check_forward_order(kelp_shape4(2, 3, 4, 5), 1);
    /* large enough for the threaded path */
    check_forward_order(kelp_shape4(3, 17, 19, 23), 2);
}

static void test_backward_is_inverse_and_accumulates(void **state)
{
    (void)state;
    const int n = 2, h = 3, w = 4, c = 5;
    kelp_shape s = kelp_shape4(n, h, w, c);
    test_layer t;
    test_layer_setup(&t, "flatten", "{}", 1, &s, true, 3);
    test_layer_forward(&t);
    float *dx = test_f32(&t.din[0]);
    for (int i = 0; i < n * h * w * c; i++)
        dx[i] = 0.25f;
    TEST_OK(t.type->backward(&t.io));
    const float *dy = test_f32(&t.dout);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int ch = 0; ch < c; ch++) {
                    int64_t nhwc = (((int64_t)b * h + i) * w + j) * c + ch;
                    assert_float_equal(dx[nhwc], 0.25f + dy[ref_nchw_index(h, w, c, b, i, j, ch)], 1e-6);
                }
    test_layer_teardown(&t);
}

static void test_gradcheck(void **state)
{
    (void)state;
    kelp_shape s = kelp_shape4(2, 2, 3, 3);
    test_layer t;
    test_layer_setup(&t, "flatten", "{}", 1, &s, true, 4);
    test_layer_gradcheck(&t, 1e-3f, 1e-3, 36);
    test_layer_teardown(&t);
}

static void test_rank2_passes_through(void **state)
{
    (void)state;
    kelp_shape s = kelp_shape2(3, 7);
    test_layer t;
    test_layer_setup(&t, "flatten", "{}", 1, &s, true, 5);
    assert_true(kelp_shape_equal(&t.out_shape, &s));
    test_layer_forward(&t);
    assert_memory_equal(test_f32(&t.out), test_f32(&t.in[0]), 21 * sizeof(float));
    for (int i = 0; i < 21; i++)
        test_f32(&t.din[0])[i] = 1.0f;
    TEST_OK(t.type->backward(&t.io));
    for (int i = 0; i < 21; i++)
        assert_float_equal(test_f32(&t.din[0])[i], 1.0f + test_f32(&t.dout)[i], 1e-6);
    test_layer_teardown(&t);
}

static void test_other_ranks_fail(void **state)
{
    (void)state;
    kelp_shape s = {3, {2, 3, 4}};
    test_layer t;
    TEST_FAILS_WITH(test_layer_try_setup(&t, "flatten", "{}", 1, &s, true, 6), KELP_ERR_SHAPE, "input 0");
    assert_non_null(strstr(kelp_last_error(), "[2,3,4]"));
    test_layer_teardown(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_is_nchw_order),
        cmocka_unit_test(test_backward_is_inverse_and_accumulates),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_rank2_passes_through),
        cmocka_unit_test(test_other_ranks_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
