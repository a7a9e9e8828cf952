/* Dynamic loss scaling (engine/loss_scale.h) with PyTorch GradScaler's semantics: its schedule (2^16, x2 after 2000
 * clean steps, x0.5 and a skip on inf/NaN), unscaling (finite gradients multiplied, others left alone, frozen
 * segments untouched), a power-of-two scale changing no gradient bit, and its state surviving a checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/loss_scale.h"
#include "engine/optimizer.h"
#include "ref/graph_util.h"

static void test_schedule_follows_gradscaler(void **state)
{
    (void)state;
    kelp_loss_scaler s;
    kelp_loss_scaler_init(&s);
    assert_true(s.scale == 65536.0f);
    assert_true(kelp_loss_scaler_inverse(&s) == (float)(1.0 / 65536.0));
    for (int i = 0; i < 1999; i++)
        kelp_loss_scaler_update(&s, true);
    assert_true(s.scale == 65536.0f);
    kelp_loss_scaler_update(&s, true); /* the 2000th clean step in a row */
    assert_true(s.scale == 131072.0f);
    assert_int_equal(s.clean_steps, 0);
    for (int i = 0; i < 1500; i++)
        kelp_loss_scaler_update(&s, true);
    kelp_loss_scaler_update(&s, false); /* an overflow: halve, restart the count, count the skip */
    assert_true(s.scale == 65536.0f);
    assert_int_equal(s.clean_steps, 0);
    assert_int_equal(s.skipped_steps, 1);
    for (int i = 0; i < 1999; i++)
        kelp_loss_scaler_update(&s, true);
    assert_true(s.scale == 65536.0f); /* 1500 clean steps before the overflow do not count */
    kelp_loss_scaler_update(&s, true);
    assert_true(s.scale == 131072.0f);

    /* a scale that would overflow when doubled stays where it is, and the count restarts */
    s.scale = 0x1p127f;
    s.clean_steps = s.growth_interval - 1;
    kelp_loss_scaler_update(&s, true);
    assert_true(s.scale == 0x1p127f);
    assert_int_equal(s.clean_steps, 0);
}

static void test_unscale_checks_then_scales(void **state)
{
    (void)state;
    kelp_backend *be = test_cpu_backend();
    float g[8] = {1, -2, 4, 8, 16, 32, 64, 128};
    bool finite = false;
    /* two segments, as the trainer passes for a model with a frozen part: [0,2) and [4,8) */
    kelp_param_segment segs[2] = {{.offset = 0, .count = 2}, {.offset = 4, .count = 4}};
    TEST_OK(kelp_unscale_grads(be, g, 8, segs, 2, 0.25f, &finite));
    assert_true(finite);
    const float want[8] = {0.25f, -0.5f, 4, 8, 4, 8, 16, 32};
    assert_memory_equal(g, want, sizeof want);
    float bad[4] = {1, INFINITY, 3, 4}, copy[4];
    memcpy(copy, bad, sizeof bad);
    TEST_OK(kelp_unscale_grads(be, bad, 4, NULL, 0, 0.5f, &finite));
    assert_false(finite);
    assert_memory_equal(bad, copy, sizeof bad); /* the skipped step's gradients are left alone */
    bad[1] = NAN;
    TEST_OK(kelp_unscale_grads(be, bad, 4, NULL, 0, 0.5f, &finite));
    assert_false(finite);
    TEST_FAILS_WITH(kelp_unscale_grads(be, g, 8, NULL, 0, 0.0f, &finite), KELP_ERR_INVALID_ARG, "inverse scale");
}

static const char *model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,6,3]}],"
    "\"nodes\":[{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":8,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn\",\"type\":\"batch_norm\"},{\"name\":\"act\",\"type\":\"relu\"},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":4}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\",\"label_smoothing\":0.1}}";

/* Backward is linear in the loss gradient and a power of two scales every float exactly: the unscaled gradients
 * of a scaled backward are the plain ones, bit for bit. */
static void test_power_of_two_scale_changes_no_bit(void **state)
{
    (void)state;
    kelp_graph *g = test_build(model, 4, true, true, false);
    int64_t n = kelp_shape_numel(&kelp_graph_grads(g)->shape);
    float *plain = malloc((size_t)n * sizeof *plain);
    assert_non_null(plain);
    test_fill_graph_inputs(g, 4, 42);
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_zero_grad(g));
    TEST_OK(kelp_graph_backward(g));
    memcpy(plain, kelp_graph_grads(g)->data, (size_t)n * sizeof *plain);
    kelp_loss_scaler s;
    kelp_loss_scaler_init(&s);
    TEST_OK(kelp_graph_set_loss_scale(g, s.scale));
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_zero_grad(g));
    TEST_OK(kelp_graph_backward(g));
    float *scaled = kelp_graph_grads(g)->data;
    int differ = 0;
    for (int64_t i = 0; i < n; i++)
        differ += scaled[i] != plain[i] * s.scale;
    assert_int_equal(differ, 0);
    bool finite;
    TEST_OK(kelp_unscale_grads(test_cpu_backend(), scaled, n, NULL, 0, kelp_loss_scaler_inverse(&s), &finite));
    assert_true(finite);
    assert_memory_equal(scaled, plain, (size_t)n * sizeof *plain);
    TEST_FAILS_WITH(kelp_graph_set_loss_scale(g, -1.0f), KELP_ERR_INVALID_ARG, "loss scale");
    free(plain);
    kelp_graph_destroy(g);
}

static void test_state_survives_a_checkpoint(void **state)
{
    (void)state;
    kelp_graph *g = test_build(model, 4, true, true, false);
    const char *path = test_temp_path(".ckpt");
    kelp_train_state saved = {.epoch = 2, .best_metric = -1, .best_epoch = -1};
    kelp_loss_scaler_init(&saved.scaler);
    saved.scaler.scale = 512.0f;
    saved.scaler.clean_steps = 7;
    saved.scaler.skipped_steps = 3;
    TEST_OK(kelp_checkpoint_save(path, g, NULL, &saved, NULL));
    kelp_train_state loaded;
    TEST_OK(kelp_checkpoint_load(path, g, NULL, &loaded, NULL));
    assert_true(loaded.scaler.scale == 512.0f);
    assert_int_equal(loaded.scaler.clean_steps, 7);
    assert_int_equal(loaded.scaler.skipped_steps, 3);
    /* a state without a scaler (zeroed, or a checkpoint from before) loads as a fresh one */
    kelp_train_state bare = {.best_metric = -1, .best_epoch = -1};
    TEST_OK(kelp_checkpoint_save(path, g, NULL, &bare, NULL));
    TEST_OK(kelp_checkpoint_load(path, g, NULL, &loaded, NULL));
    assert_true(loaded.scaler.scale == 65536.0f);
    assert_int_equal(loaded.scaler.skipped_steps, 0);
    remove(path);
    kelp_graph_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_follows_gradscaler),
        cmocka_unit_test(test_unscale_checks_then_scales),
        cmocka_unit_test(test_power_of_two_scale_changes_no_bit),
        cmocka_unit_test(test_state_survives_a_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
