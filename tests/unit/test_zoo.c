/* The model zoo: torchvision's parameter counts and names, shapes, and `model show` round trips. */
#include <stdlib.h>
#include <string.h>

#include "ref/graph_util.h"

static int64_t trainable(kelp_graph *g)
{
    int64_t total = 0;
    for (int i = 0; i < kelp_graph_param_count(g); i++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g, i, &info));
        if (info.kind == KELP_PARAM_TRAINABLE)
            total += kelp_shape_numel(&info.shape);
    }
    return total;
}

static kelp_graph *zoo_graph(const char *name, const kelp_zoo_options *o, int batch)
{
    char *json;
    TEST_OK(kelp_model_zoo_json(name, o, &json));
    kelp_graph *g = test_build(json, batch, false, false, false);
    kelp_free(json);
    return g;
}

static void test_resnet_parameter_counts(void **state)
{
    (void)state;
    /* sum(p.numel() for p in torchvision.models.resnetNN().parameters()) */
    const struct {
        const char *name;
        int64_t params;
    } cases[] = {{"resnet18", 11689512}, {"resnet34", 21797672}, {"resnet50", 25557032}};
    for (size_t i = 0; i < 3; i++) {
        kelp_graph *g = zoo_graph(cases[i].name, NULL, 1);
        assert_int_equal(trainable(g), cases[i].params);
        kelp_graph_destroy(g);
    }
}

static void test_torchvision_names(void **state)
{
    (void)state;
    kelp_graph *g = zoo_graph("resnet50", NULL, 1);
    const char *names[] = {"conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.downsample.0.weight",
                           "layer3.5.bn3.bias", "layer4.2.conv2.weight", "fc.weight", "fc.bias"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        TEST_OK(kelp_graph_find_param(g, names[i], NULL, NULL));
    /* 1x1 expansion without stride keeps no downsample in later blocks */
    TEST_FAILS_WITH(kelp_graph_find_param(g, "layer1.1.downsample.0.weight", NULL, NULL), KELP_ERR_NOT_FOUND,
                    "layer1.1.downsample");
    /* v1.5: the stride sits in conv2 (3x3) of the first bottleneck of layer2 */
    kelp_node_info info;
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        TEST_OK(kelp_graph_node_info(g, i, &info));
        if (strcmp(info.name, "layer2.0.conv1") == 0)
            assert_int_equal(info.output.dims[1], 56);
        if (strcmp(info.name, "layer2.0.conv2") == 0)
            assert_int_equal(info.output.dims[1], 28);
    }
    assert_int_equal(kelp_graph_output(g, 0)->shape.dims[1], 1000);
    kelp_graph_destroy(g);
}

static void test_options_and_small_resnet(void **state)
{
    (void)state;
    kelp_zoo_options o = {.num_classes = 7, .height = 64, .width = 48, .channels = 3};
    kelp_graph *g = zoo_graph("resnet18", &o, 2);
    assert_int_equal(kelp_graph_output(g, 0)->shape.dims[1], 7);
    test_fill_graph_inputs(g, 7, 1);
    TEST_OK(kelp_graph_forward(g));
    kelp_graph_destroy(g);

    g = zoo_graph("small_resnet", NULL, 4);
    kelp_shape in = kelp_graph_input(g, 0)->shape;
    kelp_shape want = kelp_shape4(4, 28, 28, 1);
    assert_true(kelp_shape_equal(&in, &want));
    test_fill_graph_inputs(g, 10, 2);
    TEST_OK(kelp_graph_forward(g));
    assert_int_equal(kelp_graph_output(g, 0)->shape.dims[1], 10);
    /* each stage halves the resolution: 14, 7, 4 */
    const char *stages[] = {"layer1.0.relu", "layer2.0.relu", "layer3.0.relu"};
    const int sizes[] = {14, 7, 4}, widths[] = {32, 64, 128};
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        kelp_node_info info;
        TEST_OK(kelp_graph_node_info(g, i, &info));
        for (int k = 0; k < 3; k++)
            if (strcmp(info.name, stages[k]) == 0) {
                assert_int_equal(info.output.dims[1], sizes[k]);
                assert_int_equal(info.output.dims[3], widths[k]);
            }
    }
    kelp_graph_destroy(g);

    char *json = NULL;
    TEST_FAILS_WITH(kelp_model_zoo_json("resnet101", NULL, &json), KELP_ERR_NOT_FOUND, "the zoo has: resnet18");
}

static void test_training_memory_is_planned(void **state)
{
    (void)state;
    char *json;
    TEST_OK(kelp_model_zoo_json("resnet18", NULL, &json));
    kelp_graph *g = test_build(json, 2, true, true, false);
    kelp_graph_memory m;
    kelp_graph_memory_usage(g, &m);
    assert_int_equal(m.params, (size_t)11689512 * 4);
    assert_int_equal(m.grads, m.params);
    assert_true(m.activations < m.activations_unplanned);
    kelp_graph_destroy(g);
    kelp_free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet_parameter_counts),
        cmocka_unit_test(test_torchvision_names),
        cmocka_unit_test(test_options_and_small_resnet),
        cmocka_unit_test(test_training_memory_is_planned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
