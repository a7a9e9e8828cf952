/* ONNX export, read back with protobuf-c (no Python needed): the model's frame (IR 8, opset 17, "input" with a
 * symbolic batch, "logits"), parameters as PyTorch-named OIHW initializers equal to the weights file, no training
 * leftovers (loss, dropout, num_batches_tracked), unique value names, and refusals with messages that name the file
 * and the node. tests/onnx/test_onnx.sh checks the numbers against onnxruntime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/onnx_export.h"
#include "io/safetensors.h"
#include "onnx.pb-c.h"
#include "ref/graph_util.h"

static Onnx__ModelProto *read_model(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, (size_t)size, buf);
    free(buf);
    assert_non_null(m);
    return m;
}

static const Onnx__TensorProto *find_initializer(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (strcmp(g->initializer[i]->name, name) == 0)
            return g->initializer[i];
    return NULL;
}

static int count_ops(const Onnx__GraphProto *g, const char *op)
{
    int n = 0;
    for (size_t i = 0; i < g->n_node; i++)
        n += strcmp(g->node[i]->op_type, op) == 0;
    return n;
}

/* every_layer with its PyTorch-made weights: every initializer that is a parameter holds the file's bytes. */
static void test_every_layer_frame_and_weights(void **state)
{
    (void)state;
    char *json = test_read_fixture("every_layer.json");
    kelp_graph *g = test_build(json, 2, false, false, false);
    char weights[1024];
    snprintf(weights, sizeof weights, "%s/tests/fixtures/every_layer.weights.safetensors", KELP_SOURCE_DIR);
    TEST_OK(kelp_graph_load_weights(g, weights, KELP_LOAD_STRICT));
    const char *path = test_temp_path(".onnx");
    TEST_OK(kelp_onnx_export(g, path, "test"));
    Onnx__ModelProto *m = read_model(path);
    assert_int_equal(m->ir_version, KELP_ONNX_IR_VERSION);
    assert_int_equal(m->n_opset_import, 1);
    assert_int_equal(m->opset_import[0]->version, KELP_ONNX_OPSET);
    assert_string_equal(m->producer_name, "kelp");
    assert_string_equal(m->producer_version, "test");
    const Onnx__GraphProto *graph = m->graph;
    assert_int_equal(graph->n_input, 1);
    assert_string_equal(graph->input[0]->name, "input");
    const Onnx__TensorShapeProto *shape = graph->input[0]->type->tensor_type->shape;
    assert_int_equal(shape->n_dim, 4);
    assert_string_equal(shape->dim[0]->dim_param, "batch");
    /* NCHW: the model's [9, 7, 3] image */
    assert_int_equal(shape->dim[1]->dim_value, 3);
    assert_int_equal(shape->dim[2]->dim_value, 9);
    assert_int_equal(shape->dim[3]->dim_value, 7);
    assert_int_equal(graph->n_output, 1);
    assert_string_equal(graph->output[0]->name, "logits");
    assert_int_equal(count_ops(graph, "Dropout"), 0);

    kelp_st_file *file;
    TEST_OK(kelp_st_open(weights, &file));
    int checked = 0;
    for (size_t k = 0; k < kelp_st_count(file); k++) {
        const kelp_st_info *info = kelp_st_info_at(file, k);
        const Onnx__TensorProto *t = find_initializer(graph, info->name);
        if (info->dtype == KELP_ST_I64) {
            assert_null(t); /* num_batches_tracked: no operator reads it */
            continue;
        }
        assert_non_null(t);
        assert_int_equal(t->n_dims, info->shape.ndim);
        for (int d = 0; d < info->shape.ndim; d++)
            assert_int_equal(t->dims[d], info->shape.dims[d]);
        assert_int_equal(t->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        void *bytes = malloc((size_t)info->nbytes);
        assert_non_null(bytes);
        TEST_OK(kelp_st_read(file, info, bytes, (size_t)info->nbytes));
        assert_int_equal(t->raw_data.len, info->nbytes);
        assert_memory_equal(t->raw_data.data, bytes, (size_t)info->nbytes);
        free(bytes);
        checked++;
    }
    assert_true(checked >= 14);
    kelp_st_close(file);
    onnx__model_proto__free_unpacked(m, NULL);
    kelp_graph_destroy(g);
    free(json);
    unlink(path);
}

/* A training graph with its loss exports the inference network; names that collide with "input"/"logits" or a
 * parameter's name are made unique, so every value is defined once. */
static void test_loss_left_out_and_names_unique(void **state)
{
    (void)state;
    const char *model =
        "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,6,3]}],"
        "\"nodes\":[{\"name\":\"input\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3},"
        "{\"name\":\"logits\",\"type\":\"relu\"},{\"name\":\"input.weight\",\"type\":\"sigmoid\"},"
        "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},{\"name\":\"drop\",\"type\":\"dropout\"},"
        "{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":3}],"
        "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";
    kelp_graph *g = test_build(model, 2, true, true, false);
    const char *path = test_temp_path(".onnx");
    TEST_OK(kelp_onnx_export(g, path, NULL));
    Onnx__ModelProto *m = read_model(path);
    const Onnx__GraphProto *graph = m->graph;
    assert_string_equal(m->producer_version, KELP_VERSION_STRING);
    assert_string_equal(graph->input[0]->name, "input");
    assert_string_equal(graph->output[0]->name, "logits");
    assert_non_null(find_initializer(graph, "input.weight"));
    assert_non_null(find_initializer(graph, "fc.weight"));
    /* every output defined once, none named like the graph input or an initializer */
    for (size_t i = 0; i < graph->n_node; i++) {
        const char *out = graph->node[i]->output[0];
        assert_string_not_equal(out, "input");
        assert_null(find_initializer(graph, out));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(out, graph->node[j]->output[0]);
    }
    /* conv, relu, sigmoid, global pool + flatten, gemm: the dropout and the loss add nothing */
    assert_int_equal(graph->n_node, 6);
    assert_int_equal(count_ops(graph, "Gemm"), 1);
    onnx__model_proto__free_unpacked(m, NULL);
    kelp_graph_destroy(g);
    unlink(path);
}

static void test_refusals(void **state)
{
    (void)state;
    char *json = test_read_fixture("every_layer.json");
    kelp_graph *g = test_build(json, 1, false, false, false);
    char path[512];
    snprintf(path, sizeof path, "%s/no-such-folder/model.onnx", KELP_BINARY_DIR);
    TEST_FAILS_WITH(kelp_onnx_export(g, path, NULL), KELP_ERR_IO, "no-such-folder/model.onnx");
    TEST_FAILS_WITH(kelp_onnx_export(g, "", NULL), KELP_ERR_INVALID_ARG, "path");
    kelp_graph_destroy(g);
    free(json);

    /* floor(25 * 1.16) is 28 in double (kelp, PyTorch) but 29 in float (ONNX): refused, and nothing written */
    const char *odd = "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[25,25,3]}],"
                      "\"nodes\":[{\"name\":\"up\",\"type\":\"upsample\",\"scale_factor\":1.16}]}";
    g = test_build(odd, 1, false, false, false);
    const char *target = test_temp_path(".onnx");
    TEST_FAILS_WITH(kelp_onnx_export(g, target, NULL), KELP_ERR_UNSUPPORTED, "node 'up' (upsample): scale_factor");
    assert_int_equal(access(target, F_OK), -1);
    kelp_graph_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_layer_frame_and_weights),
        cmocka_unit_test(test_loss_left_out_and_names_unique),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
