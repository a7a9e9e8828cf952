/* Inference fusion (engine/graph_fuse.c): a graph built for inference folds conv2d -> batch_norm -> relu chains
 * into one convolution. Its outputs must match the same weights run layer by layer (a training graph in eval
 * mode), on every convolution path (Winograd, direct, pointwise GEMM, strided im2col, depthwise), the folded layers
 * must not run, the chains must stop where a value has another reader or is an output, and the batch norm's
 * statistics must be read at every forward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/graph_util.h"

#define BATCH 2

/* 16x16 inputs: with 64 channels at batch 2, 128 blocks of 2x2 for the Winograd path. */
static const char *const model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[16,16,3]}],\"nodes\":["
    /* im2col (3 channels) + bias + relu, no batch norm */
    "{\"name\":\"stem\",\"type\":\"conv2d\",\"out_channels\":64,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"stem_relu\",\"type\":\"relu\"},"
    /* Winograd + batch norm + relu */
    "{\"name\":\"wino\",\"type\":\"conv2d\",\"out_channels\":64,\"kernel_size\":3,\"padding\":1,\"bias\":false},"
    "{\"name\":\"wino_bn\",\"type\":\"batch_norm\"},"
    "{\"name\":\"wino_relu\",\"type\":\"relu\"},"
    /* pointwise GEMM + batch norm, read by the add: conv and batch norm only */
    "{\"name\":\"point\",\"type\":\"conv2d\",\"out_channels\":64,\"kernel_size\":1,\"bias\":false},"
    "{\"name\":\"point_bn\",\"type\":\"batch_norm\"},"
    "{\"name\":\"add\",\"type\":\"add\",\"inputs\":[\"point_bn\",\"wino_relu\"]},"
    /* direct kernel (32 channels: below Winograd's minimum) with bias + batch norm + relu6 */
    "{\"name\":\"direct\",\"type\":\"conv2d\",\"out_channels\":32,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"direct_bn\",\"type\":\"batch_norm\"},"
    "{\"name\":\"direct_relu6\",\"type\":\"relu6\"},"
    /* strided im2col; its output has two readers, so nothing folds into it */
    "{\"name\":\"strided\",\"type\":\"conv2d\",\"out_channels\":32,\"kernel_size\":3,\"stride\":2,\"padding\":1},"
    "{\"name\":\"strided_bn\",\"type\":\"batch_norm\"},"
    "{\"name\":\"strided_relu\",\"type\":\"relu\",\"inputs\":[\"strided\"]},"
    "{\"name\":\"join\",\"type\":\"add\",\"inputs\":[\"strided_bn\",\"strided_relu\"]},"
    /* depthwise + batch norm, whose output is a graph output (the chain may end there) */
    "{\"name\":\"depthwise\",\"type\":\"conv2d\",\"out_channels\":32,\"kernel_size\":3,\"padding\":1,"
    "\"groups\":32,\"bias\":false},"
    "{\"name\":\"depthwise_bn\",\"type\":\"batch_norm\"}"
    "],\"outputs\":[\"depthwise_bn\",\"add\"]}";

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Random weights, and batch norms far from the identity, so that a misplaced scale or shift shows. */
static void randomize(kelp_graph *g, uint64_t seed)
{
    TEST_OK(kelp_graph_fill_random(g, seed));
    uint64_t state = seed;
    for (int i = 0; i < kelp_graph_param_count(g); i++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g, i, &info));
        float lo = 0.0f, hi = 0.0f;
        if (strcmp(info.name, "direct_bn.weight") == 0) /* past ReLU6's top */
            lo = 4.0f, hi = 12.0f;
        else if (ends_with(info.name, "_bn.weight"))
            lo = 0.5f, hi = 1.5f;
        else if (ends_with(info.name, "_bn.bias") || ends_with(info.name, "running_mean"))
            lo = -0.5f, hi = 0.5f;
        else if (ends_with(info.name, "running_var"))
            lo = 0.25f, hi = 2.0f;
        else
            continue;
        kelp_tensor value;
        TEST_OK(kelp_graph_find_param(g, info.name, &value, NULL));
        float *p = value.data;
        for (int64_t j = 0; j < kelp_shape_numel(&value.shape); j++)
            p[j] = test_rand_uniform(&state, lo, hi);
    }
}

static void forward_both(kelp_graph *layered, kelp_graph *fused, uint64_t seed)
{
    test_fill_graph_inputs(layered, 0, seed);
    kelp_tensor *in = kelp_graph_input(layered, 0);
    memcpy(kelp_graph_input(fused, 0)->data, in->data, (size_t)kelp_shape_numel(&in->shape) * sizeof(float));
    TEST_OK(kelp_graph_forward(layered));
    TEST_OK(kelp_graph_forward(fused));
}

static void assert_same_outputs(kelp_graph *layered, kelp_graph *fused, const char *when)
{
    for (int o = 0; o < kelp_graph_output_count(layered); o++) {
        const kelp_tensor *want = kelp_graph_output(layered, o), *got = kelp_graph_output(fused, o);
        size_t n = (size_t)kelp_shape_numel(&want->shape);
        char what[96];
        snprintf(what, sizeof what, "output %d %s", o, when);
        /* the folded batch norm rounds its shift once instead of subtracting the mean from each sum */
        test_assert_close_f(got->data, want->data, n, 1e-5, 1e-5, what);
    }
}

/* The same weights in a training graph (eval mode: running statistics, every layer run) and an inference graph. */
static void build_pair(kelp_graph **layered, kelp_graph **fused)
{
    *layered = test_build(model, BATCH, true, false, false);
    *fused = test_build(model, BATCH, false, false, false);
    randomize(*layered, 7);
    const char *path = test_temp_path(".safetensors");
    TEST_OK(kelp_graph_save_weights(*layered, path));
    TEST_OK(kelp_graph_load_weights(*fused, path, KELP_LOAD_STRICT));
    remove(path);
    TEST_OK(kelp_graph_set_training(*layered, false));
}

static void test_fused_matches_layer_by_layer(void **state)
{
    (void)state;
    kelp_graph *layered, *fused;
    build_pair(&layered, &fused);
    forward_both(layered, fused, 11);
    assert_same_outputs(layered, fused, "with the loaded weights");
    kelp_graph_destroy(layered);
    kelp_graph_destroy(fused);
}

/* The node's forward calls; it is reported folded exactly when it never ran. */
static int64_t forward_calls(kelp_graph *g, const char *name)
{
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        kelp_node_profile p;
        TEST_OK(kelp_graph_node_profile(g, i, &p));
        if (strcmp(p.name, name) == 0) {
            assert_int_equal(p.folded, p.forward_calls == 0);
            return p.forward_calls;
        }
    }
    fail_msg("no node '%s'", name);
    return -1;
}

static void test_which_layers_fold(void **state)
{
    (void)state;
    kelp_graph *g = test_build(model, BATCH, false, false, false);
    TEST_OK(kelp_graph_fill_random(g, 3));
    test_fill_graph_inputs(g, 0, 4);
    TEST_OK(kelp_graph_set_profiling(g, true));
    TEST_OK(kelp_graph_forward(g));
    static const char *const folded[] = {"stem_relu", "wino_bn", "wino_relu", "point_bn", "direct_bn",
                                         "direct_relu6", "depthwise_bn"};
    static const char *const run[] = {"stem", "wino", "point", "add", "direct", "strided", "strided_bn",
                                      "strided_relu", "join", "depthwise"};
    for (size_t i = 0; i < sizeof folded / sizeof *folded; i++)
        if (forward_calls(g, folded[i]) != 0)
            fail_msg("'%s' ran on its own: it should fold into its convolution", folded[i]);
    for (size_t i = 0; i < sizeof run / sizeof *run; i++)
        if (forward_calls(g, run[i]) != 1)
            fail_msg("'%s' did not run once", run[i]);
    kelp_graph_destroy(g);

    /* a training graph folds nothing, even in eval mode */
    g = test_build(model, BATCH, true, false, false);
    TEST_OK(kelp_graph_set_training(g, false));
    test_fill_graph_inputs(g, 0, 4);
    TEST_OK(kelp_graph_set_profiling(g, true));
    TEST_OK(kelp_graph_forward(g));
    for (size_t i = 0; i < sizeof folded / sizeof *folded; i++)
        assert_int_equal(forward_calls(g, folded[i]), 1);
    kelp_graph_destroy(g);
}

/* Nothing is cached: a statistic written between two forwards, and a smaller batch, take effect. */
static void test_parameters_read_at_every_forward(void **state)
{
    (void)state;
    kelp_graph *layered, *fused;
    build_pair(&layered, &fused);
    forward_both(layered, fused, 12);
    kelp_graph *graphs[] = {layered, fused};
    for (int i = 0; i < 2; i++) {
        kelp_tensor var, gamma;
        TEST_OK(kelp_graph_find_param(graphs[i], "wino_bn.running_var", &var, NULL));
        TEST_OK(kelp_graph_find_param(graphs[i], "direct_bn.weight", &gamma, NULL));
        ((float *)var.data)[5] = 9.0f;
        ((float *)gamma.data)[3] = -2.0f;
        TEST_OK(kelp_graph_set_batch(graphs[i], 1));
    }
    forward_both(layered, fused, 13);
    assert_same_outputs(layered, fused, "after writing parameters, at batch 1");
    kelp_graph_destroy(layered);
    kelp_graph_destroy(fused);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_matches_layer_by_layer),
        cmocka_unit_test(test_which_layers_fold),
        cmocka_unit_test(test_parameters_read_at_every_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
