/* dropout: keep rate, the mask rule, reproducibility from the seed, offsets and thread counts, eval identity, and a
 * backward that uses the saved mask. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops/dropout.h"
#include "kernels/ops/rng.h"
#include "ref/layer_harness.h"

#define BIG 100000

static const kelp_shape big_shape = {2, {100, 1000}};

static int64_t count_kept(const uint8_t *mask, int64_t n)
{
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++)
        kept += mask[i];
    return kept;
}

/* std of the keep rate is sqrt(p(1-p)/n) ~ 0.0015 at n = 100k; 0.01 is more than 6 of them */
static void test_keep_rate_and_scaling(void **state)
{
    (void)state;
    test_layer t;
    test_layer_setup(&t, "dropout", "{\"p\": 0.3}", 1, &big_shape, true, 1);
    test_layer_forward(&t);
    const uint8_t *mask = t.state;
    double rate = (double)count_kept(mask, BIG) / BIG;
    if (fabs(rate - 0.7) > 0.01)
        fail_msg("keep rate %.4f, want 0.7 +- 0.01", rate);
    const float *x = test_f32(&t.in[0]), *y = test_f32(&t.out);
    for (int64_t i = 0; i < BIG; i++) {
        double want = mask[i] ? x[i] / 0.7 : 0.0;
        if (mask[i] > 1 || fabs(y[i] - want) > 1e-6 * fabs(want))
            fail_msg("y[%lld] = %g with mask %d, x %g", (long long)i, y[i], mask[i], x[i]);
    }
    test_layer_teardown(&t);
}

static void test_default_p_is_half(void **state)
{
    (void)state;
    test_layer t;
    test_layer_setup(&t, "dropout", "{}", 1, &big_shape, true, 2);
    test_layer_forward(&t);
    double rate = (double)count_kept(t.state, BIG) / BIG;
    if (fabs(rate - 0.5) > 0.01)
        fail_msg("keep rate %.4f, want 0.5 +- 0.01", rate);
    test_layer_teardown(&t);
}

static void test_mask_follows_the_rng_rule(void **state)
{
    (void)state;
    test_layer t;
    test_layer_setup(&t, "dropout", "{\"p\": 0.3}", 1, &big_shape, true, 3);
    test_layer_forward(&t);
    const uint8_t *mask = t.state;
    for (int64_t i = 0; i < BIG; i++)
        if (mask[i] != (kelp_rng_uniform(t.io.seed.seed, (uint64_t)i) >= 0.3f))
            fail_msg("mask[%lld] = %d disagrees with kelp_rng_uniform(seed, i) >= p", (long long)i, mask[i]);
    test_layer_teardown(&t);
}

static void test_same_seed_same_mask(void **state)
{
    (void)state;
    test_layer t;
    test_layer_setup(&t, "dropout", "{\"p\": 0.3}", 1, &big_shape, true, 4);
    test_layer_forward(&t);
    uint8_t *first = malloc(BIG);
    memcpy(first, t.state, BIG);
    memset(t.state, 7, BIG);
    test_layer_forward(&t);
    assert_memory_equal(first, t.state, BIG);
    t.io.seed.seed += 1;
    test_layer_forward(&t);
    int64_t differ = 0;
    for (int64_t i = 0; i < BIG; i++)
        differ += first[i] != ((uint8_t *)t.state)[i];
    /* independent masks differ in 2 p (1-p) = 42% of the elements */
    assert_true(differ > BIG / 3);
    free(first);
    test_layer_teardown(&t);
}

/* The mask depends on (seed, offset + i) only: not on where a call starts, nor on the thread count. */
static void test_kernel_offsets_and_threads(void **state)
{
    (void)state;
    float *x = malloc(BIG * sizeof(float)), *y1 = malloc(BIG * sizeof(float)), *y2 = malloc(BIG * sizeof(float));
    uint8_t *m1 = malloc(BIG), *m2 = malloc(BIG);
    test_fill_uniform(x, BIG, 5, -1.0f, 1.0f);
    kelp_cpu_dropout_forward(1, BIG, 0.4f, 99, 0, x, y1, m1);
    kelp_cpu_dropout_forward(2, BIG, 0.4f, 99, 0, x, y2, m2);
    assert_memory_equal(m1, m2, BIG);
    assert_memory_equal(y1, y2, BIG * sizeof(float));
    for (uint64_t start = 1; start < 9; start++) {
        int64_t n = (int64_t)(start * 3 + 2);
        kelp_cpu_dropout_forward(2, n, 0.4f, 99, start, x + start, y2, m2);
        assert_memory_equal(m1 + start, m2, (size_t)n);
        assert_memory_equal(y1 + start, y2, (size_t)n * sizeof(float));
    }
    free(x);
    free(y1);
    free(y2);
    free(m1);
    free(m2);
}

/* The block range both backends launch over: exactly the Philox blocks (4 indices each) that hold offset .. end - 1. */
static void test_block_range(void **state)
{
    (void)state;
    const uint64_t bases[] = {0, 1000, (uint64_t)1 << 40};
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++)
        for (uint64_t offset = bases[b]; offset < bases[b] + 12; offset++)
            for (int64_t n = 1; n <= 40; n++) {
                kelp_dropout_range r = kelp_dropout_blocks(offset, n);
                uint64_t last = r.first + (uint64_t)r.count - 1;
                assert_true(r.end == offset + (uint64_t)n);
                assert_true(r.count >= 1);
                assert_true(r.first * 4 <= offset && offset < r.first * 4 + 4);
                assert_true(last * 4 <= r.end - 1 && r.end - 1 < last * 4 + 4);
            }
}

static void test_eval_is_identity(void **state)
{
    (void)state;
    kelp_shape s = kelp_shape4(2, 3, 3, 4);
    test_layer t;
    test_layer_setup(&t, "dropout", "{\"p\": 0.6}", 1, &s, false, 6);
    test_layer_forward(&t);
    assert_memory_equal(test_f32(&t.out), test_f32(&t.in[0]), 72 * sizeof(float));
    for (int i = 0; i < 72; i++)
        test_f32(&t.din[0])[i] = 2.0f;
    TEST_OK(t.type->backward(&t.io));
    for (int i = 0; i < 72; i++)
        assert_float_equal(test_f32(&t.din[0])[i], 2.0f + test_f32(&t.dout)[i], 1e-6);
    test_layer_teardown(&t);
}

static void test_backward_uses_mask(void **state)
{
    (void)state;
    kelp_shape s = kelp_shape4(2, 5, 5, 3);
    test_layer t;
    test_layer_setup(&t, "dropout", "{\"p\": 0.25}", 1, &s, true, 7);
    test_layer_forward(&t);
    for (int i = 0; i < 150; i++)
        test_f32(&t.din[0])[i] = 1.0f;
    TEST_OK(t.type->backward(&t.io));
    const uint8_t *mask = t.state;
    int64_t kept = count_kept(mask, 150);
    assert_true(kept > 0 && kept < 150);
    for (int i = 0; i < 150; i++) {
        double want = 1.0 + (mask[i] ? test_f32(&t.dout)[i] / 0.75 : 0.0);
        assert_float_equal(test_f32(&t.din[0])[i], want, 1e-6);
    }
    test_layer_teardown(&t);
}

static void test_gradcheck_training(void **state)
{
    (void)state;
    kelp_shape s = kelp_shape4(1, 4, 4, 3);
    test_layer t;
    test_layer_setup(&t, "dropout", "{\"p\": 0.4}", 1, &s, true, 8);
    test_layer_gradcheck(&t, 1e-3f, 1e-3, 48);
    test_layer_teardown(&t);
}

static void test_invalid_p(void **state)
{
    (void)state;
    test_layer t;
    const char *bad[] = {"{\"p\": 1}", "{\"p\": -0.1}", "{\"p\": 0.99999999999}", "{\"p\": \"half\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TEST_FAILS_WITH(test_layer_try_setup(&t, "dropout", bad[i], 1, &big_shape, true, 9), KELP_ERR_FORMAT, "'p'");
        test_layer_teardown(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_rate_and_scaling),
        cmocka_unit_test(test_default_p_is_half),
        cmocka_unit_test(test_mask_follows_the_rng_rule),
        cmocka_unit_test(test_same_seed_same_mask),
        cmocka_unit_test(test_kernel_offsets_and_threads),
        cmocka_unit_test(test_block_range),
        cmocka_unit_test(test_eval_is_identity),
        cmocka_unit_test(test_backward_uses_mask),
        cmocka_unit_test(test_gradcheck_training),
        cmocka_unit_test(test_invalid_p),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
