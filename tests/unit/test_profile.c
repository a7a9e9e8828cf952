/* The per-node profile (kelp_graph_set_profiling, kelp_graph_node_profile): call counts, times, reset, FLOPs of the
 * matrix-product layers against hand-computed values; and kelp_graph_fill_random, the benchmark's data. */
#include <stdlib.h>
#include <string.h>

#include "ref/graph_util.h"

/* (2,6,5,3) -conv 3x3/s2/p1-> (2,3,3,4) -relu-> -conv 1x1 groups 2-> (2,3,3,6) -deconv 2x2/s2-> (2,6,6,2)
 * -flatten-> (2,72) -linear-> (2,7), then the loss. */
static const char *model_json =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,5,3]}],"
    "\"nodes\":["
    "{\"name\":\"conv1\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3,\"stride\":2,\"padding\":1},"
    "{\"name\":\"act\",\"type\":\"relu\"},"
    "{\"name\":\"conv2\",\"type\":\"conv2d\",\"out_channels\":6,\"kernel_size\":1,\"groups\":2},"
    "{\"name\":\"deconv\",\"type\":\"conv_transpose2d\",\"out_channels\":2,\"kernel_size\":2,\"stride\":2},"
    "{\"name\":\"flat\",\"type\":\"flatten\"},"
    "{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":7}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

#define N_NODES 7 /* the six above and the loss */

static kelp_graph *build(bool training)
{
    kelp_graph *g = test_build(model_json, 2, training, training, false);
    TEST_OK(kelp_graph_fill_random(g, 5));
    return g;
}

static kelp_node_profile profile_of(kelp_graph *g, int index)
{
    kelp_node_profile p;
    TEST_OK(kelp_graph_node_profile(g, index, &p));
    return p;
}

static void assert_counts(kelp_graph *g, int64_t forward, int64_t backward)
{
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        kelp_node_profile p = profile_of(g, i);
        assert_int_equal(p.forward_calls, forward);
        assert_int_equal(p.backward_calls, backward);
        assert_true(p.forward_seconds >= 0 && p.backward_seconds >= 0);
        if (forward == 0)
            assert_true(p.forward_seconds == 0);
        if (backward == 0)
            assert_true(p.backward_seconds == 0);
    }
}

static void test_names_match_nodes(void **state)
{
    (void)state;
    kelp_graph *g = build(true);
    assert_int_equal(kelp_graph_node_count(g), N_NODES);
    for (int i = 0; i < N_NODES; i++) {
        kelp_node_info info;
        TEST_OK(kelp_graph_node_info(g, i, &info));
        kelp_node_profile p = profile_of(g, i);
        assert_string_equal(p.name, info.name);
        assert_string_equal(p.type, info.type);
    }
    assert_string_equal(profile_of(g, 3).type, "conv_transpose2d");
    assert_string_equal(profile_of(g, N_NODES - 1).name, "loss");
    kelp_node_profile p;
    TEST_FAILS_WITH(kelp_graph_node_profile(g, N_NODES, &p), KELP_ERR_INVALID_ARG, "node index 7");
    TEST_FAILS_WITH(kelp_graph_node_profile(g, -1, &p), KELP_ERR_INVALID_ARG, "node index -1");
    kelp_graph_destroy(g);
}

static void test_counts_and_reset(void **state)
{
    (void)state;
    kelp_graph *g = build(true);
    /* off by default: runs count nothing */
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_backward(g));
    assert_counts(g, 0, 0);

    TEST_OK(kelp_graph_set_profiling(g, true));
    assert_counts(g, 0, 0);
    TEST_OK(kelp_graph_forward(g));
    assert_counts(g, 1, 0);
    TEST_OK(kelp_graph_backward(g));
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_zero_grad(g));
    TEST_OK(kelp_graph_backward(g));
    TEST_OK(kelp_graph_forward(g));
    assert_counts(g, 3, 2);
    double total = 0;
    for (int i = 0; i < N_NODES; i++)
        total += profile_of(g, i).forward_seconds + profile_of(g, i).backward_seconds;
    assert_true(total > 0);

    /* enabling again keeps the counters; reset clears them and counting goes on */
    TEST_OK(kelp_graph_set_profiling(g, true));
    assert_counts(g, 3, 2);
    kelp_graph_reset_profile(g);
    assert_counts(g, 0, 0);
    TEST_OK(kelp_graph_forward(g));
    assert_counts(g, 1, 0);

    /* disabled: the counters are gone, and runs add nothing when it comes back on */
    TEST_OK(kelp_graph_set_profiling(g, false));
    assert_counts(g, 0, 0);
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_backward(g));
    TEST_OK(kelp_graph_set_profiling(g, true));
    assert_counts(g, 0, 0);
    kelp_graph_destroy(g);
}

/* A frozen node runs no backward, so it counts no backward call. */
static void test_frozen_node_has_no_backward(void **state)
{
    (void)state;
    kelp_graph *g = build(true);
    TEST_OK(kelp_graph_freeze(g, "conv1.", true));
    TEST_OK(kelp_graph_set_profiling(g, true));
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_backward(g));
    assert_int_equal(profile_of(g, 0).forward_calls, 1);
    assert_int_equal(profile_of(g, 0).backward_calls, 0);
    assert_int_equal(profile_of(g, 0).backward_flops, 0);
    assert_int_equal(profile_of(g, 2).backward_calls, 1);
    kelp_graph_destroy(g);
}

/* FLOPs = 2 x multiply-adds of the forward; backward adds one forward's worth per gradient computed (input, weight).
 *   conv1:  2 * N*OH*OW*K * R*S*C/G     = 2 * 2*3*3*4 * 3*3*3 = 3888; input is the image (no gradient) -> 1 x
 *   conv2:  2 * 2*3*3*6 * 1*1*(4/2)     = 432;                     input and weight gradients -> 2 x
 *   deconv: 2 * N*H*W*Cin * R*S*Cout/G  = 2 * 2*3*3*6 * 2*2*2 = 1728                          -> 2 x
 *   fc:     2 * rows * in * out         = 2 * 2 * 72 * 7 = 2016                                -> 2 x */
static void test_flops(void **state)
{
    (void)state;
    static const int64_t forward[N_NODES] = {3888, 0, 432, 1728, 0, 2016, 0};
    static const int64_t backward[N_NODES] = {3888, 0, 864, 3456, 0, 4032, 0};
    kelp_graph *g = build(true);
    for (int i = 0; i < N_NODES; i++) {
        assert_int_equal(profile_of(g, i).forward_flops, forward[i]);
        assert_int_equal(profile_of(g, i).backward_flops, backward[i]);
    }
    /* at the current batch */
    TEST_OK(kelp_graph_set_batch(g, 1));
    for (int i = 0; i < N_NODES; i++) {
        assert_int_equal(profile_of(g, i).forward_flops, forward[i] / 2);
        assert_int_equal(profile_of(g, i).backward_flops, backward[i] / 2);
    }
    kelp_graph_destroy(g);

    /* an inference graph has no backward */
    g = build(false);
    for (int i = 0; i < N_NODES - 1; i++) {
        assert_int_equal(profile_of(g, i).forward_flops, forward[i]);
        assert_int_equal(profile_of(g, i).backward_flops, 0);
    }
    kelp_graph_destroy(g);
}

static void test_fill_random(void **state)
{
    (void)state;
    kelp_graph *a = build(true), *b = build(true);
    float x[2 * 6 * 5 * 3], y[2 * 6 * 5 * 3];
    TEST_OK(kelp_tensor_download(kelp_graph_input(a, 0), x, sizeof x));
    TEST_OK(kelp_tensor_download(kelp_graph_input(b, 0), y, sizeof y));
    assert_memory_equal(x, y, sizeof x); /* same seed, same data */
    float lo = x[0], hi = x[0];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    assert_true(lo >= -1.0f && hi <= 1.0f && hi - lo > 1.0f);
    TEST_OK(kelp_graph_fill_random(b, 6));
    TEST_OK(kelp_tensor_download(kelp_graph_input(b, 0), y, sizeof y));
    assert_memory_not_equal(x, y, sizeof x);
    kelp_graph_destroy(a);
    kelp_graph_destroy(b);

    /* labels: classes of the logits (7), every one drawn from 64 labels */
    kelp_graph *g = test_build(model_json, 64, true, true, false);
    TEST_OK(kelp_graph_fill_random(g, 7));
    int32_t labels[64];
    int seen[7] = {0};
    TEST_OK(kelp_tensor_download(kelp_graph_label(g), labels, sizeof labels));
    for (int i = 0; i < 64; i++) {
        assert_true(labels[i] >= 0 && labels[i] < 7);
        seen[labels[i]]++;
    }
    for (int c = 0; c < 7; c++)
        assert_true(seen[c] > 0);
    kelp_graph_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_match_nodes),
        cmocka_unit_test(test_counts_and_reset),
        cmocka_unit_test(test_frozen_node_has_no_backward),
        cmocka_unit_test(test_flops),
        cmocka_unit_test(test_fill_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
