/* linear: forward against a double-precision loop, backward against finite differences, accumulation, parameter
 * specs and field/shape errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/layer_harness.h"
#include "ref/ref_conv.h"

/* linear is linear in its input and in each parameter: central differences have no truncation error, only float
 * rounding of the forward sums divided by 2*eps (~1e-5 here); tol 1e-3 still fails any wrong index. */
#define GRAD_EPS 1e-2f
#define GRAD_TOL 1e-3
#define GRAD_SAMPLES 20

typedef struct linear_case {
    int ndim;
    int64_t dims[4];
    int out;
    bool bias;
} linear_case;

static const linear_case cases[] = {
    {2, {5, 7}, 3, true},
    {2, {1, 4}, 6, false},
    {3, {2, 3, 5}, 4, true},       /* (batch, tokens, features) */
    {4, {2, 3, 2, 6}, 5, true},    /* NHWC: a 1x1 convolution */
    {2, {4, 300}, 10, true},       /* a classifier head with a long reduction */
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void setup_case(test_layer *t, const linear_case *c, uint64_t seed)
{
    char json[128];
    snprintf(json, sizeof json, "{\"out_features\":%d,\"bias\":%s}", c->out, c->bias ? "true" : "false");
    kelp_shape in = kelp_shape_make(c->ndim, c->dims);
    test_layer_setup(t, "linear", json, 1, &in, true, seed);
}

static void check_forward(test_layer *t, const linear_case *c, int index)
{
    kelp_shape want = t->in[0].shape;
    want.dims[want.ndim - 1] = c->out;
    assert_true(kelp_shape_equal(&t->out.shape, &want));
    /* poisoned: forward must write every output, not add to what was there */
    for (int64_t i = 0; i < kelp_shape_numel(&t->out.shape); i++)
        test_f32(&t->out)[i] = NAN;
    test_layer_forward(t);
    int in = (int)c->dims[c->ndim - 1];
    int64_t rows = kelp_shape_numel(&t->in[0].shape) / in;
    double *ref = malloc((size_t)(rows * c->out) * sizeof *ref);
    assert_non_null(ref);
    ref_linear_forward(rows, in, c->out, test_f32(&t->in[0]), test_f32(&t->param[0]),
                       c->bias ? test_f32(&t->param[1]) : NULL, ref);
    char what[64];
    snprintf(what, sizeof what, "linear case %d output", index);
    test_assert_close(test_f32(&t->out), ref, (size_t)(rows * c->out), 1e-4, 1e-5, what);
    free(ref);
}

static void test_linear_forward(void **state)
{
    (void)state;
    for (int i = 0; i < COUNT(cases); i++) {
        test_layer t;
        setup_case(&t, &cases[i], 10 + (uint64_t)i);
        check_forward(&t, &cases[i], i);
        test_layer_teardown(&t);
    }
}

static void test_linear_gradcheck(void **state)
{
    (void)state;
    for (int i = 0; i < COUNT(cases); i++) {
        test_layer t;
        setup_case(&t, &cases[i], 20 + (uint64_t)i);
        test_layer_gradcheck(&t, GRAD_EPS, GRAD_TOL, GRAD_SAMPLES);
        test_layer_teardown(&t);
    }
}

static void test_linear_backward_accumulates(void **state)
{
    (void)state;
    for (int i = 0; i < COUNT(cases); i++) {
        test_layer t;
        setup_case(&t, &cases[i], 30 + (uint64_t)i);
        ref_assert_backward_accumulates(&t);
        test_layer_teardown(&t);
    }
}

/* Rows come from the run-time tensor: a graph may run a smaller batch than it planned for. */
static void test_linear_smaller_batch(void **state)
{
    (void)state;
    test_layer t;
    setup_case(&t, &cases[2], 40);
    ref_set_batch(&t, 1);
    check_forward(&t, &cases[2], 2);
    test_layer_gradcheck(&t, GRAD_EPS, GRAD_TOL, GRAD_SAMPLES);
    test_layer_teardown(&t);
}

static void test_linear_params(void **state)
{
    (void)state;
    const char *json = "{\"out_features\":3,\"bias\":true,\"init\":\"default\"}";
    kelp_shape in = kelp_shape2(4, 7);
    test_layer t;
    test_layer_setup(&t, "linear", json, 1, &in, true, 1);
    ref_assert_fields_listed(t.type, json);
    assert_int_equal(t.n_params, 2);
    kelp_shape w = kelp_shape2(3, 7);
    assert_string_equal(t.spec[0].suffix, "weight");
    assert_true(kelp_shape_equal(&t.spec[0].shape, &w));
    assert_false(t.spec[0].ohwi);
    assert_int_equal(t.spec[0].init, KELP_INIT_UNIFORM_FAN_IN);
    assert_int_equal(t.spec[0].fan_in, 7);
    assert_int_equal(t.spec[0].fan_out, 3);
    assert_string_equal(t.spec[1].suffix, "bias");
    assert_int_equal(t.spec[1].shape.ndim, 1);
    assert_int_equal(t.spec[1].shape.dims[0], 3);
    assert_int_equal(t.spec[1].fan_in, 7);
    test_layer_teardown(&t);
}

static kelp_status try_linear(const char *json, kelp_shape in)
{
    test_layer t;
    kelp_status s = test_layer_try_setup(&t, "linear", json, 1, &in, true, 1);
    test_layer_teardown(&t);
    return s;
}

static void test_linear_invalid(void **state)
{
    (void)state;
    kelp_shape in = kelp_shape2(4, 7);
    int64_t flat = 7;
    TEST_FAILS_WITH(try_linear("{}", in), KELP_ERR_FORMAT, "out_features");
    TEST_FAILS_WITH(try_linear("{\"out_features\":0}", in), KELP_ERR_FORMAT, "out_features");
    TEST_FAILS_WITH(try_linear("{\"out_features\":2.5}", in), KELP_ERR_FORMAT, "out_features");
    TEST_FAILS_WITH(try_linear("{\"out_features\":2,\"bias\":1}", in), KELP_ERR_FORMAT, "bias");
    TEST_FAILS_WITH(try_linear("{\"out_features\":2,\"init\":\"kaiming\"}", in), KELP_ERR_FORMAT, "init");
    TEST_FAILS_WITH(try_linear("{\"out_features\":2}", kelp_shape_make(1, &flat)), KELP_ERR_SHAPE,
                    "[7]: expected rank >= 2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_forward),
        cmocka_unit_test(test_linear_gradcheck),
        cmocka_unit_test(test_linear_backward_accumulates),
        cmocka_unit_test(test_linear_smaller_batch),
        cmocka_unit_test(test_linear_params),
        cmocka_unit_test(test_linear_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
