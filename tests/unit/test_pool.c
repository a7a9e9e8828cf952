/* max_pool2d, avg_pool2d and global_avg_pool against the naive double reference (tests/ref/ref_spatial.c), with
 * finite-difference gradient checks and PyTorch's geometry rules. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/layer_harness.h"
#include "ref/ref_spatial.h"

static int64_t numel(const kelp_tensor *t) { return kelp_shape_numel(&t->shape); }

static const char *pool_json(const ref_pool *p, char *buf, size_t len)
{
    int used = snprintf(buf, len, "{\"kernel_size\":[%d,%d],\"stride\":[%d,%d],\"padding\":[%d,%d],\"ceil_mode\":%s",
                        p->kh, p->kw, p->sh, p->sw, p->ph, p->pw, p->ceil_mode ? "true" : "false");
    if (!p->max)
        used += snprintf(buf + used, len - (size_t)used, ",\"count_include_pad\":%s",
                         p->count_include_pad ? "true" : "false");
    snprintf(buf + used, len - (size_t)used, "}");
    return buf;
}

/* Forward and backward (dy = the harness's fixed r) of one configuration against the reference. */
static void check_pool(const ref_pool *p, uint64_t seed)
{
    char json[256], what[320];
    pool_json(p, json, sizeof json);
    snprintf(what, sizeof what, "%s %s on [%d,%d,%d,%d]", p->max ? "max_pool2d" : "avg_pool2d", json, p->n, p->h,
             p->w, p->c);
    kelp_shape shape = kelp_shape4(p->n, p->h, p->w, p->c);
    test_layer t;
    test_layer_setup(&t, p->max ? "max_pool2d" : "avg_pool2d", json, 1, &shape, true, seed);
    int oh = ref_pool_out_size(p->h, p->kh, p->sh, p->ph, p->ceil_mode);
    int ow = ref_pool_out_size(p->w, p->kw, p->sw, p->pw, p->ceil_mode);
    kelp_shape want = kelp_shape4(p->n, oh, ow, p->c);
    if (!kelp_shape_equal(&t.out_shape, &want))
        fail_msg("%s: output shape [%lld,%lld,%lld,%lld], want [%d,%d,%d,%d]", what, (long long)t.out_shape.dims[0],
                 (long long)t.out_shape.dims[1], (long long)t.out_shape.dims[2], (long long)t.out_shape.dims[3],
                 p->n, oh, ow, p->c);

    test_layer_forward(&t);
    double *y = malloc((size_t)numel(&t.out) * sizeof(double));
    ref_pool_forward(p, test_f32(&t.in[0]), y);
    test_assert_close(test_f32(&t.out), y, (size_t)numel(&t.out), 1e-5, 1e-6, what);

    test_layer_backward(&t);
    double *dx = malloc((size_t)numel(&t.in[0]) * sizeof(double));
    ref_pool_backward(p, test_f32(&t.in[0]), test_f32(&t.dout), dx);
    test_assert_close(test_f32(&t.din[0]), dx, (size_t)numel(&t.in[0]), 1e-5, 1e-6, what);
    free(y);
    free(dx);
    test_layer_teardown(&t);
}

/* Hand-picked geometries: odd sizes, batch 1 and 3, strides 1-3, padding, both ceil modes, C across channel blocks,
 * and h=5, k=2, s=2, p=1 where ceil mode drops a last window that would start in the right padding. */
static const ref_pool fixed_cases[] = {
    {.n = 1, .h = 7, .w = 9, .c = 3, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1},
    {.n = 3, .h = 8, .w = 5, .c = 4, .kh = 2, .kw = 2, .sh = 2, .sw = 2, .ceil_mode = true},
    {.n = 3, .h = 11, .w = 10, .c = 5, .kh = 3, .kw = 2, .sh = 3, .sw = 3, .ph = 1, .pw = 1, .ceil_mode = true},
    {.n = 1, .h = 5, .w = 5, .c = 17, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
    {.n = 3, .h = 5, .w = 6, .c = 3, .kh = 2, .kw = 2, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .ceil_mode = true},
    {.n = 1, .h = 9, .w = 7, .c = 2, .kh = 4, .kw = 3, .sh = 3, .sw = 2, .ph = 2, .pw = 1, .ceil_mode = true},
    {.n = 3, .h = 1, .w = 4, .c = 33, .kh = 1, .kw = 2, .sh = 1, .sw = 1},
};

static ref_pool random_case(uint64_t *rng)
{
    ref_pool p = {0};
    for (;;) {
        p.n = test_rand_int(rng, 0, 1) ? 3 : 1;
        p.c = test_rand_int(rng, 1, 20);
        p.kh = test_rand_int(rng, 1, 4);
        p.kw = test_rand_int(rng, 1, 4);
        p.sh = test_rand_int(rng, 1, 3);
        p.sw = test_rand_int(rng, 1, 3);
        p.ph = test_rand_int(rng, 0, p.kh / 2);
        p.pw = test_rand_int(rng, 0, p.kw / 2);
        p.h = test_rand_int(rng, 1, 12);
        p.w = test_rand_int(rng, 1, 12);
        p.ceil_mode = test_rand_int(rng, 0, 1);
        p.count_include_pad = test_rand_int(rng, 0, 1);
        if (ref_pool_out_size(p.h, p.kh, p.sh, p.ph, p.ceil_mode) >= 1 &&
            ref_pool_out_size(p.w, p.kw, p.sw, p.pw, p.ceil_mode) >= 1)
            return p;
    }
}

static void pool_forward_backward(bool max)
{
    for (size_t i = 0; i < sizeof fixed_cases / sizeof fixed_cases[0]; i++) {
        ref_pool p = fixed_cases[i];
        p.max = max;
        for (int include = 0; include <= (max ? 0 : 1); include++) {
            p.count_include_pad = include;
            check_pool(&p, 100 + i);
        }
    }
    uint64_t rng = max ? 7 : 8;
    for (int i = 0; i < 25; i++) {
        ref_pool p = random_case(&rng);
        p.max = max;
        check_pool(&p, 200 + (uint64_t)i);
    }
}

static void test_max_pool_matches_reference(void **state)
{
    (void)state;
    pool_forward_backward(true);
}

static void test_avg_pool_matches_reference(void **state)
{
    (void)state;
    pool_forward_backward(false);
}

/* A random permutation of values 0.05 apart: a finite-difference step of 0.01 never reorders a window. */
static void fill_distinct(float *x, int64_t n, uint64_t seed)
{
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(test_rand_u64(&seed) % (uint64_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.05f * (float)(perm[i] - n / 2);
    free(perm);
}

static void test_max_pool_gradcheck(void **state)
{
    (void)state;
    const char *configs[] = {"{\"kernel_size\":3,\"stride\":2,\"padding\":1}",
                             "{\"kernel_size\":[2,3],\"stride\":[1,2],\"padding\":[1,1],\"ceil_mode\":true}"};
    for (int i = 0; i < 2; i++) {
        kelp_shape shape = kelp_shape4(3, 7, 6, 5);
        test_layer t;
        test_layer_setup(&t, "max_pool2d", configs[i], 1, &shape, true, 31 + (uint64_t)i);
        fill_distinct(test_f32(&t.in[0]), numel(&t.in[0]), 77 + (uint64_t)i);
        test_layer_gradcheck(&t, 0.01f, 1e-3, 120);
        test_layer_teardown(&t);
    }
}

static void test_avg_pool_gradcheck(void **state)
{
    (void)state;
    const char *configs[] = {"{\"kernel_size\":3,\"stride\":2,\"padding\":1,\"count_include_pad\":false}",
                             "{\"kernel_size\":[2,3],\"stride\":[3,1],\"padding\":[1,1],\"ceil_mode\":true}"};
    for (int i = 0; i < 2; i++) {
        kelp_shape shape = kelp_shape4(1, 8, 7, 3);
        test_layer t;
        test_layer_setup(&t, "avg_pool2d", configs[i], 1, &shape, true, 41 + (uint64_t)i);
        test_layer_gradcheck(&t, 0.01f, 1e-3, 120);
        test_layer_teardown(&t);
    }
}

/* Equal values: PyTorch's CPU scan keeps the first maximum of each window (rows, then columns). */
static void test_max_pool_ties_take_first_in_window(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(1, 3, 3, 1);
    test_layer t;
    test_layer_setup(&t, "max_pool2d", "{\"kernel_size\":2,\"stride\":1}", 1, &shape, true, 5);
    for (int i = 0; i < 9; i++)
        test_f32(&t.in[0])[i] = 1.0f;
    test_layer_forward(&t);
    for (int i = 0; i < 4; i++)
        test_f32(&t.dout)[i] = 1.0f;
    test_layer_backward(&t);
    const float want[9] = {1, 1, 0, 1, 1, 0, 0, 0, 0};
    test_assert_close_f(test_f32(&t.din[0]), want, 9, 0.0, 0.0, "dx of tied windows");
    test_layer_teardown(&t);
}

/* All inputs negative: a zero from the padding must never be the maximum. */
static void test_max_pool_padding_never_wins(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(1, 4, 4, 2);
    test_layer t;
    test_layer_setup(&t, "max_pool2d", "{\"kernel_size\":3,\"stride\":2,\"padding\":1}", 1, &shape, true, 6);
    for (int64_t i = 0; i < numel(&t.in[0]); i++)
        test_f32(&t.in[0])[i] = -5.0f - (float)i;
    test_layer_forward(&t);
    /* output (0,0) sees input rows/cols 0..1: its maximum is element (0,0) */
    assert_true(test_f32(&t.out)[0] == -5.0f);
    assert_true(test_f32(&t.out)[1] == -6.0f);
    for (int64_t i = 0; i < numel(&t.out); i++)
        assert_true(test_f32(&t.out)[i] < 0.0f);
    test_layer_teardown(&t);
}

static void test_max_pool_propagates_nan(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(1, 4, 4, 1);
    test_layer t;
    test_layer_setup(&t, "max_pool2d", "{\"kernel_size\":2}", 1, &shape, true, 7);
    test_f32(&t.in[0])[5] = NAN; /* (1,1): inside output (0,0) only */
    test_layer_forward(&t);
    assert_true(isnan(test_f32(&t.out)[0]));
    for (int i = 1; i < 4; i++)
        assert_false(isnan(test_f32(&t.out)[i]));
    test_layer_teardown(&t);
}

/* The CPU kernel runs the channels as vectors (16 lanes with AVX-512, 8 with AVX2, 4 with SSE) and the rest in a
 * remainder loop: ties (few distinct values, -0 beside +0) and NaNs in every lane of channel counts that are no
 * multiple of the vector width must pick the same element as the reference's scalar scan, forward and backward. */
static void test_max_pool_ties_and_nan_in_vector_lanes(void **state)
{
    (void)state;
    const ref_pool cases[] = {
        {.max = true, .n = 2, .h = 9, .w = 11, .c = 37, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1},
        {.max = true, .n = 3, .h = 6, .w = 7, .c = 64, .kh = 2, .kw = 2, .sh = 1, .sw = 1},
        {.max = true, .n = 1, .h = 5, .w = 8, .c = 19, .kh = 3, .kw = 2, .sh = 1, .sw = 2, .ph = 1, .pw = 1,
         .ceil_mode = true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const ref_pool *p = &cases[k];
        char json[256], what[320];
        pool_json(p, json, sizeof json);
        snprintf(what, sizeof what, "max_pool2d %s on [%d,%d,%d,%d] with ties and NaN", json, p->n, p->h, p->w, p->c);
        kelp_shape shape = kelp_shape4(p->n, p->h, p->w, p->c);
        test_layer t;
        test_layer_setup(&t, "max_pool2d", json, 1, &shape, true, 60 + (uint64_t)k);
        float *x = test_f32(&t.in[0]);
        uint64_t rng = 900 + k;
        for (int64_t i = 0; i < numel(&t.in[0]); i++) {
            int pick = test_rand_int(&rng, 0, 19);
            x[i] = pick == 0 ? NAN : pick == 1 ? -0.0f : (float)(pick % 3) - 1.0f;
        }
        test_layer_forward(&t);
        double *y = malloc((size_t)numel(&t.out) * sizeof(double));
        ref_pool_forward(p, x, y);
        for (int64_t i = 0; i < numel(&t.out); i++) {
            float got = test_f32(&t.out)[i];
            if (isnan(y[i]) ? !isnan(got) : got != (float)y[i])
                fail_msg("%s: y[%lld] = %g, want %g", what, (long long)i, (double)got, y[i]);
        }
        /* dx shows which element won each window: dy is the harness's random r */
        test_layer_backward(&t);
        double *dx = malloc((size_t)numel(&t.in[0]) * sizeof(double));
        ref_pool_backward(p, x, test_f32(&t.dout), dx);
        test_assert_close(test_f32(&t.din[0]), dx, (size_t)numel(&t.in[0]), 1e-6, 1e-6, what);
        free(y);
        free(dx);
        test_layer_teardown(&t);
    }
}

static void test_pool_default_stride_is_kernel(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(2, 7, 8, 3);
    test_layer t;
    test_layer_setup(&t, "avg_pool2d", "{\"kernel_size\":3}", 1, &shape, true, 8);
    kelp_shape want = kelp_shape4(2, 2, 2, 3);
    assert_true(kelp_shape_equal(&t.out_shape, &want));
    test_layer_teardown(&t);
}

/* Run-time batch smaller than the planned one: descriptors follow the tensors, the rest stays untouched. */
static void test_pool_smaller_batch(void **state)
{
    (void)state;
    ref_pool p = {.max = true, .n = 3, .h = 7, .w = 5, .c = 4, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1};
    kelp_shape shape = kelp_shape4(3, 7, 5, 4);
    test_layer t;
    test_layer_setup(&t, "max_pool2d", "{\"kernel_size\":3,\"stride\":2,\"padding\":1}", 1, &shape, true, 9);
    t.in[0].shape.dims[0] = 2;
    t.out.shape.dims[0] = 2;
    t.dout.shape.dims[0] = 2;
    test_layer_forward(&t);
    p.n = 2;
    int64_t per_image = numel(&t.out) / 2;
    double *y = malloc((size_t)(2 * per_image) * sizeof(double));
    ref_pool_forward(&p, test_f32(&t.in[0]), y);
    test_assert_close(test_f32(&t.out), y, (size_t)(2 * per_image), 1e-6, 0.0, "batch 2 of 3");
    for (int64_t i = 2 * per_image; i < 3 * per_image; i++)
        assert_true(test_f32(&t.out)[i] == 0.0f);
    free(y);
    test_layer_teardown(&t);
}

static void test_global_avg_pool(void **state)
{
    (void)state;
    const kelp_shape shapes[] = {kelp_shape4(3, 5, 7, 19), kelp_shape4(1, 1, 1, 4), kelp_shape4(2, 9, 3, 2)};
    for (int s = 0; s < 3; s++) {
        const kelp_shape *sh = &shapes[s];
        test_layer t;
        test_layer_setup(&t, "global_avg_pool", NULL, 1, sh, true, 50 + (uint64_t)s);
        kelp_shape want = kelp_shape2(sh->dims[0], sh->dims[3]);
        assert_true(kelp_shape_equal(&t.out_shape, &want));
        test_layer_forward(&t);
        ref_pool p = {.n = (int)sh->dims[0], .h = (int)sh->dims[1], .w = (int)sh->dims[2], .c = (int)sh->dims[3],
                      .kh = (int)sh->dims[1], .kw = (int)sh->dims[2], .sh = 1, .sw = 1};
        double *y = malloc((size_t)numel(&t.out) * sizeof(double));
        ref_pool_forward(&p, test_f32(&t.in[0]), y);
        test_assert_close(test_f32(&t.out), y, (size_t)numel(&t.out), 1e-6, 1e-7, "global_avg_pool");
        free(y);
        test_layer_gradcheck(&t, 0.01f, 1e-3, 60);
        test_layer_teardown(&t);
    }
}

static void test_backward_accumulates(void **state)
{
    (void)state;
    const char *types[] = {"max_pool2d", "avg_pool2d", "global_avg_pool"};
    const char *json[] = {"{\"kernel_size\":3,\"stride\":2,\"padding\":1}", "{\"kernel_size\":2,\"stride\":1}", NULL};
    for (int i = 0; i < 3; i++) {
        kelp_shape shape = kelp_shape4(2, 5, 6, 3);
        test_layer t;
        test_layer_setup(&t, types[i], json[i], 1, &shape, true, 130 + (uint64_t)i);
        test_layer_check_accumulates(&t);
        test_layer_teardown(&t);
    }
}

static void expect_setup_fails(const char *type, const char *json, kelp_shape shape, kelp_status status,
                               const char *needle)
{
    test_layer t;
    TEST_FAILS_WITH(test_layer_try_setup(&t, type, json, 1, &shape, true, 1), status, needle);
    test_layer_teardown(&t);
}

static void test_pool_invalid(void **state)
{
    (void)state;
    kelp_shape img = kelp_shape4(1, 6, 6, 2);
    expect_setup_fails("max_pool2d", "{\"kernel_size\":3,\"padding\":2}", img, KELP_ERR_FORMAT,
                       "must be at most half of kernel_size");
    expect_setup_fails("avg_pool2d", "{\"kernel_size\":[4,2],\"padding\":[1,2]}", img, KELP_ERR_FORMAT, "padding");
    expect_setup_fails("max_pool2d", "{\"stride\":2}", img, KELP_ERR_FORMAT, "kernel_size");
    expect_setup_fails("max_pool2d", "{\"kernel_size\":2,\"stride\":0}", img, KELP_ERR_FORMAT, "stride");
    expect_setup_fails("avg_pool2d", "{\"kernel_size\":2,\"count_include_pad\":\"yes\"}", img, KELP_ERR_FORMAT,
                       "count_include_pad");
    expect_setup_fails("max_pool2d", "{\"kernel_size\":2,\"ceil_mode\":1}", img, KELP_ERR_FORMAT, "ceil_mode");
    expect_setup_fails("max_pool2d", "{\"kernel_size\":7}", img, KELP_ERR_SHAPE, "empty output");
    expect_setup_fails("avg_pool2d", "{\"kernel_size\":2}", kelp_shape2(4, 6), KELP_ERR_SHAPE, "rank 4");
    expect_setup_fails("global_avg_pool", NULL, kelp_shape2(4, 6), KELP_ERR_SHAPE, "[4,6]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_pool_matches_reference),
        cmocka_unit_test(test_avg_pool_matches_reference),
        cmocka_unit_test(test_max_pool_gradcheck),
        cmocka_unit_test(test_avg_pool_gradcheck),
        cmocka_unit_test(test_max_pool_ties_take_first_in_window),
        cmocka_unit_test(test_max_pool_padding_never_wins),
        cmocka_unit_test(test_max_pool_propagates_nan),
        cmocka_unit_test(test_max_pool_ties_and_nan_in_vector_lanes),
        cmocka_unit_test(test_pool_default_stride_is_kernel),
        cmocka_unit_test(test_pool_smaller_batch),
        cmocka_unit_test(test_global_avg_pool),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_pool_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
