/* Weights as safetensors: round trip, PyTorch's OIHW layout on disk, strict loading, and a failed load that
 * leaves the parameters untouched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "ref/graph_util.h"

static const char *model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,5,3]}],"
    "\"nodes\":[{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":[3,2]},"
    "{\"name\":\"bn\",\"type\":\"batch_norm\"},{\"name\":\"pool\",\"type\":\"global_avg_pool\"},"
    "{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":%d}]}";

static kelp_graph *build(int classes)
{
    char json[1024];
    snprintf(json, sizeof json, model, classes);
    return test_build(json, 2, false, false, false);
}

static void snapshot(kelp_graph *g, float *out)
{
    kelp_tensor *p = kelp_graph_params(g);
    memcpy(out, p->data, kelp_tensor_bytes(p));
}

static void test_round_trip_and_layout(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    kelp_graph *a = build(3);
    TEST_OK(kelp_graph_save_weights(a, path));

    /* on disk: conv.weight is OIHW (4,3,3,2); in memory it is OHWI (4,3,2,3) */
    kelp_st_file *f;
    TEST_OK(kelp_st_open(path, &f));
    const kelp_st_info *info;
    TEST_OK(kelp_st_find(f, "conv.weight", &info));
    assert_int_equal(info->shape.ndim, 4);
    assert_int_equal(info->shape.dims[1], 3);
    assert_int_equal(info->shape.dims[3], 2);
    float oihw[4 * 3 * 3 * 2];
    TEST_OK(kelp_st_read(f, info, oihw, sizeof oihw));
    kelp_tensor w;
    TEST_OK(kelp_graph_find_param(a, "conv.weight", &w, NULL));
    const float *ohwi = w.data;
    for (int o = 0; o < 4; o++)
        for (int i = 0; i < 3; i++)
            for (int h = 0; h < 3; h++)
                for (int x = 0; x < 2; x++)
                    assert_true(oihw[((o * 3 + i) * 3 + h) * 2 + x] == ohwi[((o * 3 + h) * 2 + x) * 3 + i]);
    TEST_OK(kelp_st_find(f, "bn.num_batches_tracked", &info));
    assert_int_equal(info->dtype, KELP_ST_I64);
    assert_int_equal(info->shape.ndim, 0);
    assert_string_equal(kelp_st_metadata_get(f, "format"), "pt");
    kelp_st_close(f);

    /* a graph with another seed loads exactly the same values */
    kelp_ctx_options o = kelp_ctx_defaults();
    o.seed = 77;
    kelp_ctx *ctx;
    TEST_OK(kelp_ctx_create(&o, &ctx));
    char json[1024];
    snprintf(json, sizeof json, model, 3);
    kelp_graph_options go = kelp_graph_defaults();
    kelp_graph *b;
    TEST_OK(kelp_graph_build(ctx, json, &go, &b));
    size_t n = kelp_tensor_bytes(kelp_graph_params(a)) / sizeof(float);
    float *pa = malloc(n * sizeof(float)), *pb = malloc(n * sizeof(float));
    snapshot(a, pa);
    snapshot(b, pb);
    assert_memory_not_equal(pa, pb, n * sizeof(float));
    TEST_OK(kelp_graph_load_weights(b, path, KELP_LOAD_STRICT));
    snapshot(b, pb);
    assert_memory_equal(pa, pb, n * sizeof(float));
    free(pa);
    free(pb);
    kelp_graph_destroy(a);
    kelp_graph_destroy(b);
    kelp_ctx_destroy(ctx);
    remove(path);
}

static void test_strict_loading(void **state)
{
    (void)state;
    const char *path = test_temp_path(".safetensors");
    kelp_graph *three = build(3), *five = build(5);
    TEST_OK(kelp_graph_save_weights(three, path));
    size_t n = kelp_tensor_bytes(kelp_graph_params(five)) / sizeof(float);
    float *before = malloc(n * sizeof(float)), *after = malloc(n * sizeof(float));
    snapshot(five, before);

    /* another head: refused, and nothing changes */
    TEST_FAILS_WITH(kelp_graph_load_weights(five, path, KELP_LOAD_STRICT), KELP_ERR_SHAPE,
                    "tensor 'fc.weight' has shape [3,4], the model expects [5,4]");
    snapshot(five, after);
    assert_memory_equal(before, after, n * sizeof(float));

    /* fine-tuning: keep the backbone, skip the head */
    TEST_OK(kelp_graph_load_weights(five, path, KELP_LOAD_SKIP_MISMATCHED));
    kelp_tensor w3, w5, fc5;
    TEST_OK(kelp_graph_find_param(three, "conv.weight", &w3, NULL));
    TEST_OK(kelp_graph_find_param(five, "conv.weight", &w5, NULL));
    assert_memory_equal(w3.data, w5.data, kelp_tensor_bytes(&w3));
    TEST_OK(kelp_graph_find_param(five, "fc.weight", &fc5, NULL));
    float *fc_before = before + ((float *)fc5.data - (float *)kelp_graph_params(five)->data);
    assert_memory_equal(fc_before, fc5.data, kelp_tensor_bytes(&fc5));

    /* a file with fewer tensors than the model */
    const char *partial = test_temp_path(".safetensors");
    float bias[4] = {1, 2, 3, 4};
    kelp_st_record r = {"conv.bias", KELP_ST_F32, kelp_shape_make(1, (int64_t[]){4}), bias};
    TEST_OK(kelp_st_write(partial, &r, 1, NULL, 0));
    TEST_FAILS_WITH(kelp_graph_load_weights(five, partial, KELP_LOAD_STRICT), KELP_ERR_NOT_FOUND,
                    "parameter 'conv.weight' is missing");
    TEST_OK(kelp_graph_load_weights(five, partial, KELP_LOAD_ALLOW_MISSING));
    kelp_tensor b5;
    TEST_OK(kelp_graph_find_param(five, "conv.bias", &b5, NULL));
    assert_memory_equal(b5.data, bias, sizeof bias);

    /* a tensor the model does not have */
    kelp_st_record extra[2] = {r, {"head.weight", KELP_ST_F32, kelp_shape_make(1, (int64_t[]){4}), bias}};
    TEST_OK(kelp_st_write(partial, extra, 2, NULL, 0));
    TEST_FAILS_WITH(kelp_graph_load_weights(five, partial, KELP_LOAD_ALLOW_MISSING), KELP_ERR_FORMAT,
                    "tensor 'head.weight' matches no parameter");
    TEST_OK(kelp_graph_load_weights(five, partial, KELP_LOAD_ALLOW_MISSING | KELP_LOAD_ALLOW_UNEXPECTED));

    /* wrong dtype */
    int32_t ibias[4] = {0};
    kelp_st_record wrong = {"conv.bias", KELP_ST_I32, kelp_shape_make(1, (int64_t[]){4}), ibias};
    TEST_OK(kelp_st_write(partial, &wrong, 1, NULL, 0));
    TEST_FAILS_WITH(kelp_graph_load_weights(five, partial, KELP_LOAD_ALLOW_MISSING), KELP_ERR_FORMAT,
                    "dtype I32, the model expects F32");

    /* not a safetensors file at all */
    FILE *f = fopen(partial, "wb");
    fputs("{\"format\":\"kelp-model\"}", f);
    fclose(f);
    TEST_FAILS_WITH(kelp_graph_load_weights(five, partial, KELP_LOAD_STRICT), KELP_ERR_FORMAT, partial);

    free(before);
    free(after);
    kelp_graph_destroy(three);
    kelp_graph_destroy(five);
    remove(path);
    remove(partial);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_layout),
        cmocka_unit_test(test_strict_loading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
