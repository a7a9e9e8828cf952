/* The graph: model-file validation with messages that name the node, shape inference, the memory plan, and
 * gradients through a whole network (fan-out, concat, residual add) against finite differences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "ref/graph_util.h"

/* A one-input model around `nodes` (a JSON array body), for the error tests. */
static kelp_status build_nodes(const char *nodes, const char *extra)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[8,8,3]}],"
             "\"nodes\":[%s]%s}",
             nodes, extra ? extra : "");
    kelp_graph_options o = kelp_graph_defaults();
    kelp_graph *g = NULL;
    kelp_status s = kelp_graph_build(test_ctx(), json, &o, &g);
    kelp_graph_destroy(g);
    return s;
}

/* Every layer type the engine promises is registered with a complete vtable. */
static void test_registry_complete(void **state)
{
    (void)state;
    static const char *const promised[] = {"conv2d", "conv_transpose2d", "batch_norm", "relu", "relu6",
                                           "leaky_relu", "silu", "sigmoid", "gelu", "max_pool2d", "avg_pool2d",
                                           "global_avg_pool", "linear", "add", "concat", "upsample", "dropout",
                                           "flatten", "softmax_cross_entropy"};
    size_t n = sizeof promised / sizeof promised[0];
    assert_int_equal(kelp_layer_type_count(), (int)n);
    for (size_t i = 0; i < n; i++) {
        const kelp_layer_type *t = kelp_layer_find(promised[i]);
        assert_non_null(t);
        assert_non_null(t->fields);
        assert_non_null(t->parse);
        assert_non_null(t->infer);
        assert_non_null(t->forward);
        assert_non_null(t->backward);
        assert_true(t->min_inputs >= 1 && t->min_inputs <= t->max_inputs && t->max_inputs <= KELP_MAX_INPUTS);
    }
    assert_null(kelp_layer_type_name((int)n));
}

static void test_every_layer_shapes(void **state)
{
    (void)state;
    char *json = test_read_fixture("every_layer.json");
    kelp_graph *g = test_build(json, 3, false, false, false);
    kelp_tensor *out = kelp_graph_output(g, 0);
    assert_int_equal(out->shape.ndim, 2);
    assert_int_equal(out->shape.dims[0], 3);
    assert_int_equal(out->shape.dims[1], 5);
    kelp_node_info info;
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        TEST_OK(kelp_graph_node_info(g, i, &info));
        if (strcmp(info.name, "cat1") == 0) {
            kelp_shape want = kelp_shape4(3, 9, 7, 10);
            assert_true(kelp_shape_equal(&info.output, &want));
        }
        if (strcmp(info.name, "down") == 0) {
            kelp_shape want = kelp_shape4(3, 4, 3, 8);
            assert_true(kelp_shape_equal(&info.output, &want));
        }
    }
    test_fill_graph_inputs(g, 5, 11);
    TEST_OK(kelp_graph_forward(g));
    float y[15];
    TEST_OK(kelp_tensor_download(out, y, sizeof y));
    for (int i = 0; i < 15; i++)
        assert_true(isfinite(y[i]));
    kelp_graph_destroy(g);
    free(json);
}

static void test_unknown_type_lists_known(void **state)
{
    (void)state;
    TEST_FAILS_WITH(build_nodes("{\"name\":\"c\",\"type\":\"conv3d\"}", NULL), KELP_ERR_FORMAT,
                    "node 'c': unknown layer type 'conv3d'; known types: conv2d");
    assert_non_null(strstr(kelp_last_error(), "softmax_cross_entropy"));
}

static void test_wrong_input_count(void **state)
{
    (void)state;
    TEST_FAILS_WITH(build_nodes("{\"name\":\"sum\",\"type\":\"add\",\"inputs\":[\"image\"]}", NULL), KELP_ERR_FORMAT,
                    "node 'sum' (add): add takes 2 to 8 inputs, got 1");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"r\",\"type\":\"relu\",\"inputs\":[\"image\",\"image\"]}", NULL),
                    KELP_ERR_FORMAT, "node 'r' (relu): relu takes 1 input, got 2");
}

static void test_shape_mismatch_names_node(void **state)
{
    (void)state;
    TEST_FAILS_WITH(build_nodes("{\"name\":\"c\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3},"
                                "{\"name\":\"sum\",\"type\":\"add\",\"inputs\":[\"image\",\"c\"]}",
                                NULL),
                    KELP_ERR_SHAPE, "node 'sum' (add)");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"c\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":11}", NULL),
                    KELP_ERR_SHAPE, "node 'c' (conv2d)");
}

static void test_unknown_field_and_names(void **state)
{
    (void)state;
    TEST_FAILS_WITH(build_nodes("{\"name\":\"c\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3,"
                                "\"strides\":2}",
                                NULL),
                    KELP_ERR_FORMAT, "unknown field 'strides'");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"r\",\"type\":\"relu\"},{\"name\":\"r\",\"type\":\"relu\"}", NULL),
                    KELP_ERR_FORMAT, "'r' is used twice");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"r\",\"type\":\"relu\",\"inputs\":[\"later\"]},"
                                "{\"name\":\"later\",\"type\":\"relu\"}",
                                NULL),
                    KELP_ERR_FORMAT, "input 'later' is neither a graph input nor a node defined before this one");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"r\",\"type\":\"relu\"}", ",\"outputs\":[\"nope\"]"), KELP_ERR_FORMAT,
                    "output 'nope'");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"r\",\"type\":\"relu\"}", ",\"ouputs\":[\"r\"]"), KELP_ERR_FORMAT,
                    "unknown field 'ouputs'");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"x\",\"type\":\"softmax_cross_entropy\"}", NULL), KELP_ERR_FORMAT,
                    "belongs in the model's 'loss' field");
    TEST_FAILS_WITH(build_nodes("{\"name\":\"c\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3,"
                                "\"kernel_size\":5}",
                                NULL),
                    KELP_ERR_FORMAT, "field 'kernel_size' appears twice");
    TEST_FAILS_WITH(build_nodes("{\"name\":7,\"type\":\"relu\"}", NULL), KELP_ERR_FORMAT, "node 0: field 'name'");
}

static void test_hostile_sizes(void **state)
{
    (void)state;
    kelp_graph_options o = kelp_graph_defaults();
    kelp_graph *g = NULL;
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(),
                                     "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\","
                                     "\"shape\":[1048576,1048576,1048576,4]}],\"nodes\":[{\"name\":\"r\","
                                     "\"type\":\"relu\"}]}",
                                     &o, &g),
                    KELP_ERR_SHAPE, "input 'image'");
    /* a weight of 2^20 x 2^24 floats (2^46 bytes) is refused before anything is allocated */
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(),
                                     "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"x\","
                                     "\"shape\":[1048576]}],\"nodes\":[{\"name\":\"fc\",\"type\":\"linear\","
                                     "\"out_features\":16777216}]}",
                                     &o, &g),
                    KELP_ERR_SHAPE, "parameter 'fc.weight'");
    /* many nodes build (the planner is not quadratic in its sort), too many are refused */
    size_t cap = 12000 * 48 + 1024;
    char *json = malloc(cap);
    int n = snprintf(json, cap, "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"x\","
                                "\"shape\":[4]}],\"nodes\":[");
    for (int i = 0; i < 3000; i++)
        n += snprintf(json + n, cap - (size_t)n, "%s{\"name\":\"r%d\",\"type\":\"relu\"}", i ? "," : "", i);
    snprintf(json + n, cap - (size_t)n, "]}");
    TEST_OK(kelp_graph_build(test_ctx(), json, &o, &g));
    kelp_graph_destroy(g);
    /* "]}" was written past n: the array continues from there */
    for (int i = 3000; i < 10001; i++)
        n += snprintf(json + n, cap - (size_t)n, ",{\"name\":\"r%d\",\"type\":\"relu\"}", i);
    snprintf(json + n, cap - (size_t)n, "]}");
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(), json, &o, &g), KELP_ERR_FORMAT, "10001 nodes");
    free(json);
}

static void test_malformed_documents(void **state)
{
    (void)state;
    kelp_graph_options o = kelp_graph_defaults();
    kelp_graph *g = NULL;
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(), "{\"format\":\"kelp-model\",", &o, &g), KELP_ERR_FORMAT,
                    "invalid JSON");
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(), "[1,2]", &o, &g), KELP_ERR_FORMAT, "JSON object");
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(), "{\"format\":\"onnx\",\"version\":1}", &o, &g), KELP_ERR_FORMAT,
                    "'format' must be \"kelp-model\"");
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(), "{\"format\":\"kelp-model\",\"version\":7}", &o, &g),
                    KELP_ERR_FORMAT, "version");
    o.training = o.with_loss = true;
    TEST_FAILS_WITH(kelp_graph_build(test_ctx(),
                                     "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\","
                                     "\"shape\":[4]}],\"nodes\":[{\"name\":\"fc\",\"type\":\"linear\","
                                     "\"out_features\":3}]}",
                                     &o, &g),
                    KELP_ERR_FORMAT, "training needs a 'loss'");
    assert_null(g);
    kelp_graph_destroy(g);
    TEST_FAILS_WITH(kelp_graph_build_file(test_ctx(), "/nonexistent/model.json", &o, &g), KELP_ERR_IO,
                    "/nonexistent/model.json");
}

/* The loss as a function of everything, with the dropout stream pinned so repeated forwards agree. */
static double graph_loss(kelp_graph *g)
{
    TEST_OK(kelp_graph_set_step(g, 5));
    TEST_OK(kelp_graph_forward(g));
    float loss;
    TEST_OK(kelp_graph_loss(g, &loss));
    return loss;
}

static void check_grad(kelp_graph *g, float *x, const float *analytic, int64_t n, const char *what)
{
    /* float32 forward through ~25 layers: eps 3e-3 keeps truncation error and rounding noise both near 1e-4 */
    const float eps = 3e-3f;
    uint64_t rng = 99;
    for (int s = 0; s < 12; s++) {
        int64_t i = (int64_t)(test_rand_u64(&rng) % (uint64_t)n);
        float saved = x[i];
        x[i] = saved + eps;
        double plus = graph_loss(g);
        x[i] = saved - eps;
        double minus = graph_loss(g);
        x[i] = saved;
        double numeric = (plus - minus) / (2.0 * eps);
        if (fabs(numeric - analytic[i]) > 2e-3 + 3e-2 * fabs(numeric))
            fail_msg("%s[%lld]: analytic %.6g, numeric %.6g", what, (long long)i, analytic[i], numeric);
    }
}

static void test_every_layer_gradients(void **state)
{
    (void)state;
    char *json = test_read_fixture("every_layer.json");
    kelp_graph *g = test_build(json, 4, true, true, true);
    test_fill_graph_inputs(g, 5, 3);
    graph_loss(g);
    TEST_OK(kelp_graph_zero_grad(g));
    TEST_OK(kelp_graph_backward(g));

    kelp_tensor *dx = kelp_graph_input_grad(g, 0);
    int64_t nx = kelp_shape_numel(&dx->shape);
    float *dx_copy = malloc((size_t)nx * sizeof(float));
    memcpy(dx_copy, dx->data, (size_t)nx * sizeof(float));
    int64_t np = kelp_shape_numel(&kelp_graph_params(g)->shape);
    float *dp_copy = malloc((size_t)np * sizeof(float));
    memcpy(dp_copy, kelp_graph_grads(g)->data, (size_t)np * sizeof(float));

    check_grad(g, kelp_graph_input(g, 0)->data, dx_copy, nx, "d loss / d image");
    for (int i = 0; i < kelp_graph_param_count(g); i++) {
        kelp_param_info info;
        TEST_OK(kelp_graph_param_info(g, i, &info));
        if (info.kind != KELP_PARAM_TRAINABLE)
            continue;
        size_t off = info.offset / sizeof(float);
        check_grad(g, (float *)kelp_graph_params(g)->data + off, dp_copy + off, kelp_shape_numel(&info.shape),
                   info.name);
    }
    free(dx_copy);
    free(dp_copy);
    kelp_graph_destroy(g);
    free(json);
}

static void test_backward_accumulates_and_freeze(void **state)
{
    (void)state;
    char *json = test_read_fixture("every_layer.json");
    kelp_graph *g = test_build(json, 2, true, true, false);
    test_fill_graph_inputs(g, 5, 4);
    int64_t np = kelp_shape_numel(&kelp_graph_params(g)->shape);
    float *once = malloc((size_t)np * sizeof(float));
    const float *grads = kelp_graph_grads(g)->data;

    graph_loss(g);
    TEST_OK(kelp_graph_zero_grad(g));
    TEST_OK(kelp_graph_backward(g));
    memcpy(once, grads, (size_t)np * sizeof(float));
    graph_loss(g);
    TEST_OK(kelp_graph_backward(g));
    for (int64_t i = 0; i < np; i++)
        assert_float_equal(grads[i], 2.0f * once[i], 1e-5f * (1.0f + fabsf(once[i])));

    /* frozen parameters get no gradient; the others keep theirs */
    TEST_OK(kelp_graph_freeze(g, "conv1.", true));
    TEST_OK(kelp_graph_zero_grad(g));
    graph_loss(g);
    TEST_OK(kelp_graph_backward(g));
    kelp_tensor w, dw, fc, dfc;
    TEST_OK(kelp_graph_find_param(g, "conv1.weight", &w, &dw));
    TEST_OK(kelp_graph_find_param(g, "fc2.weight", &fc, &dfc));
    double frozen = 0, live = 0;
    for (int64_t i = 0; i < kelp_shape_numel(&dw.shape); i++)
        frozen += fabs(((float *)dw.data)[i]);
    for (int64_t i = 0; i < kelp_shape_numel(&dfc.shape); i++)
        live += fabs(((float *)dfc.data)[i]);
    assert_true(frozen == 0.0);
    assert_true(live > 0.0);
    kelp_param_segment segments[64];
    int n = kelp_graph_trainable_segments(g, segments, 64);
    assert_true(n >= 1);
    int64_t w_off = ((float *)w.data - (float *)kelp_graph_params(g)->data);
    for (int i = 0; i < n; i++)
        assert_false(w_off >= segments[i].offset && w_off < segments[i].offset + segments[i].count);
    TEST_FAILS_WITH(kelp_graph_freeze(g, "nothing.", true), KELP_ERR_NOT_FOUND, "nothing.");
    free(once);
    kelp_graph_destroy(g);
    free(json);
}

/* A node nobody reads (an auxiliary head) and a second output beside the loss: their gradients start at zero, so
 * repeated steps give identical gradients instead of feeding stale arena bytes upstream. */
static void test_unconsumed_values_have_zero_gradient(void **state)
{
    (void)state;
    const char *json =
        "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,6,2]}],"
        "\"nodes\":[{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3},"
        "{\"name\":\"aux\",\"type\":\"conv2d\",\"out_channels\":3,\"kernel_size\":1,\"inputs\":[\"conv\"]},"
        "{\"name\":\"dead\",\"type\":\"sigmoid\",\"inputs\":[\"conv\"]},"
        "{\"name\":\"pool\",\"type\":\"global_avg_pool\",\"inputs\":[\"conv\"]},"
        "{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":3}],"
        "\"outputs\":[\"fc\",\"aux\"],\"loss\":{\"type\":\"softmax_cross_entropy\"}}";
    kelp_graph *g = test_build(json, 2, true, true, false);
    test_fill_graph_inputs(g, 3, 9);
    kelp_tensor dw;
    TEST_OK(kelp_graph_find_param(g, "conv.weight", NULL, &dw));
    size_t bytes = kelp_tensor_bytes(&dw);
    float *first = malloc(bytes);
    for (int step = 0; step < 3; step++) {
        /* dirty the arena between steps as another graph or an earlier batch would */
        TEST_OK(kelp_graph_forward(g));
        TEST_OK(kelp_graph_zero_grad(g));
        TEST_OK(kelp_graph_backward(g));
        if (step == 0)
            memcpy(first, dw.data, bytes);
        else
            assert_memory_equal(first, dw.data, bytes);
        memset(kelp_graph_output_grad(g, 1)->data, 0x7f, kelp_tensor_bytes(kelp_graph_output_grad(g, 1)));
    }
    kelp_tensor aux;
    TEST_OK(kelp_graph_find_param(g, "aux.weight", NULL, &aux));
    for (int64_t i = 0; i < kelp_shape_numel(&aux.shape); i++)
        assert_true(((float *)aux.data)[i] == 0.0f);
    free(first);
    kelp_graph_destroy(g);
}

static void test_smaller_batch_matches(void **state)
{
    (void)state;
    char *json = test_read_fixture("every_layer.json");
    kelp_graph *g = test_build(json, 4, false, false, false);
    test_fill_graph_inputs(g, 5, 8);
    TEST_OK(kelp_graph_forward(g));
    float full[20], one[5];
    TEST_OK(kelp_tensor_download(kelp_graph_output(g, 0), full, sizeof full));
    TEST_OK(kelp_graph_set_batch(g, 1));
    assert_int_equal(kelp_graph_output(g, 0)->shape.dims[0], 1);
    TEST_OK(kelp_graph_forward(g));
    TEST_OK(kelp_tensor_download(kelp_graph_output(g, 0), one, sizeof one));
    test_assert_close_f(one, full, 5, 1e-5, 1e-6, "batch-1 logits");
    TEST_FAILS_WITH(kelp_graph_set_batch(g, 5), KELP_ERR_INVALID_ARG, "planned batch");
    kelp_graph_destroy(g);
    free(json);
}

static void test_liveness_saves_memory(void **state)
{
    (void)state;
    char *json = test_read_fixture("every_layer.json");
    kelp_graph *g = test_build(json, 8, false, false, false);
    kelp_graph_memory m;
    kelp_graph_memory_usage(g, &m);
    assert_true(m.activations < m.activations_unplanned / 2);
    kelp_graph_destroy(g);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_complete),
        cmocka_unit_test(test_every_layer_shapes),
        cmocka_unit_test(test_unknown_type_lists_known),
        cmocka_unit_test(test_wrong_input_count),
        cmocka_unit_test(test_shape_mismatch_names_node),
        cmocka_unit_test(test_unknown_field_and_names),
        cmocka_unit_test(test_malformed_documents),
        cmocka_unit_test(test_every_layer_gradients),
        cmocka_unit_test(test_backward_accumulates_and_freeze),
        cmocka_unit_test(test_unconsumed_values_have_zero_gradient),
        cmocka_unit_test(test_hostile_sizes),
        cmocka_unit_test(test_smaller_batch_matches),
        cmocka_unit_test(test_liveness_saves_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
