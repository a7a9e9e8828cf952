/* The mobilenet_v2 zoo model: torchvision's parameter count, names and shapes, zoo options, and a forward and
 * backward pass. The comparison of values with torchvision is tests/torch/make_fixture.py --check-mobilenet_v2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref/graph_util.h"

static kelp_graph *mobilenet(const kelp_zoo_options *o, int batch, bool training)
{
    char *json;
    TEST_OK(kelp_model_zoo_json("mobilenet_v2", o, &json));
    kelp_graph *g = test_build(json, batch, training, training, false);
    kelp_free(json);
    return g;
}

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

static kelp_shape param_shape(kelp_graph *g, const char *name)
{
    for (int i = 0; i < kelp_graph_param_count(g); i++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g, i, &info));
        if (strcmp(info.name, name) == 0)
            return info.shape;
    }
    fail_msg("no parameter '%s'", name);
    return (kelp_shape){0};
}

static kelp_node_info node(kelp_graph *g, const char *name)
{
    kelp_node_info info;
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        TEST_OK(kelp_graph_node_info(g, i, &info));
        if (strcmp(info.name, name) == 0)
            return info;
    }
    fail_msg("no node '%s'", name);
    return info;
}

static void assert_shape(kelp_shape got, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    kelp_shape want = {ndim, {d0, d1, d2, d3}};
    char a[64], b[64];
    if (!kelp_shape_equal(&got, &want))
        fail_msg("shape %s, want %s", kelp_shape_str(&got, a, sizeof a), kelp_shape_str(&want, b, sizeof b));
}

static void test_parameter_count_matches_torchvision(void **state)
{
    (void)state;
    kelp_graph *g = mobilenet(NULL, 1, false);
    /* sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters()) */
    assert_int_equal(trainable(g), 3504872);
    /* len(state_dict()), the 52 batch norms' num_batches_tracked included */
    assert_int_equal(kelp_graph_param_count(g), 314);
    kelp_graph_destroy(g);
}

static void test_torchvision_names_and_shapes(void **state)
{
    (void)state;
    kelp_graph *g = mobilenet(NULL, 1, false);
    /* features.1 has no expansion: its depthwise conv is conv.0 and the projection conv.1 */
    assert_shape(param_shape(g, "features.0.0.weight"), 4, 32, 3, 3, 3);
    assert_shape(param_shape(g, "features.0.1.running_mean"), 1, 32, 0, 0, 0);
    assert_shape(param_shape(g, "features.1.conv.0.0.weight"), 4, 32, 1, 3, 3);
    assert_shape(param_shape(g, "features.1.conv.1.weight"), 4, 16, 32, 1, 1);
    assert_shape(param_shape(g, "features.1.conv.2.running_var"), 1, 16, 0, 0, 0);
    assert_shape(param_shape(g, "features.2.conv.0.0.weight"), 4, 96, 16, 1, 1);
    assert_shape(param_shape(g, "features.2.conv.1.0.weight"), 4, 96, 1, 3, 3);
    assert_shape(param_shape(g, "features.2.conv.2.weight"), 4, 24, 96, 1, 1);
    assert_shape(param_shape(g, "features.2.conv.3.running_var"), 1, 24, 0, 0, 0);
    assert_shape(param_shape(g, "features.17.conv.2.weight"), 4, 320, 960, 1, 1);
    assert_shape(param_shape(g, "features.18.0.weight"), 4, 1280, 320, 1, 1);
    assert_shape(param_shape(g, "classifier.1.weight"), 2, 1000, 1280, 0, 0);
    assert_shape(param_shape(g, "classifier.1.bias"), 1, 1000, 0, 0, 0);
    TEST_OK(kelp_graph_find_param(g, "features.18.1.num_batches_tracked", NULL, NULL));
    TEST_FAILS_WITH(kelp_graph_find_param(g, "features.1.conv.3.weight", NULL, NULL), KELP_ERR_NOT_FOUND,
                    "features.1.conv.3");
    TEST_FAILS_WITH(kelp_graph_find_param(g, "features.19.0.weight", NULL, NULL), KELP_ERR_NOT_FOUND,
                    "features.19");
    kelp_graph_destroy(g);
}

static void test_structure(void **state)
{
    (void)state;
    kelp_graph *g = mobilenet(NULL, 2, false);
    /* stride 2 in the stem and in the depthwise conv of the first block of rows 2, 3, 4 and 6 */
    assert_shape(node(g, "features.0.2").output, 4, 2, 112, 112, 32);
    assert_shape(node(g, "features.2.conv.0.2").output, 4, 2, 112, 112, 96);
    assert_shape(node(g, "features.2.conv.1.2").output, 4, 2, 56, 56, 96);
    assert_shape(node(g, "features.14.conv.3").output, 4, 2, 7, 7, 160);
    assert_shape(node(g, "features.18.2").output, 4, 2, 7, 7, 1280);
    assert_shape(kelp_graph_output(g, 0)->shape, 2, 2, 1000, 0, 0);
    assert_string_equal(node(g, "features.0.2").type, "relu6");
    assert_string_equal(node(g, "classifier.0").type, "dropout");
    /* residual adds exactly where stride 1 keeps the channels: 10 blocks */
    const char *with_add[] = {"features.3.add",  "features.5.add",  "features.6.add",  "features.8.add",
                              "features.9.add",  "features.10.add", "features.12.add", "features.13.add",
                              "features.15.add", "features.16.add"};
    int adds = 0;
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        kelp_node_info info;
        TEST_OK(kelp_graph_node_info(g, i, &info));
        adds += strcmp(info.type, "add") == 0;
    }
    assert_int_equal(adds, 10);
    for (size_t i = 0; i < sizeof with_add / sizeof with_add[0]; i++)
        assert_string_equal(node(g, with_add[i]).type, "add");
    /* the projection is linear: the block ends in its batch norm, with no activation after it */
    assert_string_equal(node(g, "features.4.conv.3").type, "batch_norm");
    kelp_graph_destroy(g);
}

static void test_forward_and_backward_at_64(void **state)
{
    (void)state;
    kelp_zoo_options o = {.num_classes = 5, .height = 64, .width = 64};
    kelp_graph *g = mobilenet(&o, 2, true);
    assert_shape(kelp_graph_input(g, 0)->shape, 4, 2, 64, 64, 3);
    assert_shape(node(g, "features.18.2").output, 4, 2, 2, 2, 1280);
    test_fill_graph_inputs(g, 5, 3);
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_graph_backward(g));
    kelp_tensor *out = kelp_graph_output(g, 0);
    assert_shape(out->shape, 2, 2, 5, 0, 0);
    float y[10];
    TEST_OK(kelp_tensor_download(out, y, sizeof y));
    for (int i = 0; i < 10; i++)
        assert_true(isfinite(y[i]));
    assert_true(y[0] != y[5] || y[1] != y[6]);
    assert_int_equal(trainable(g), 3504872 - 995 * 1281);
    kelp_graph_destroy(g);
}

static void test_listed_in_the_zoo(void **state)
{
    (void)state;
    bool listed = false;
    for (const char *const *z = kelp_model_zoo_names(); *z; z++)
        listed |= strcmp(*z, "mobilenet_v2") == 0;
    assert_true(listed);
    assert_non_null(strstr(kelp_model_zoo_description("mobilenet_v2"), "MobileNetV2"));
    char *json;
    TEST_OK(kelp_model_zoo_json("mobilenet_v2", NULL, &json));
    assert_non_null(strstr(json, "\"mean\""));
    assert_non_null(strstr(json, "0.485"));
    kelp_free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parameter_count_matches_torchvision),
        cmocka_unit_test(test_torchvision_names_and_shapes),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_forward_and_backward_at_64),
        cmocka_unit_test(test_listed_in_the_zoo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
