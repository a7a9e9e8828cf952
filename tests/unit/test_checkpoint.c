/* Checkpoints: resuming continues bit for bit, a checkpoint loads as plain weights, and a mismatched optimizer or a
 * non-checkpoint file is refused without changing the model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/graph_internal.h"
#include "ref/graph_util.h"

static const char *model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,6,3]}],"
    "\"nodes\":[{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":8,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn\",\"type\":\"batch_norm\"},{\"name\":\"act\",\"type\":\"relu\"},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},{\"name\":\"drop\",\"type\":\"dropout\",\"p\":0.3},"
    "{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":4}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

typedef struct run {
    kelp_graph *g;
    kelp_optimizer *opt;
} run;

static run start(void)
{
    run r = {.g = test_build(model, 4, true, true, false)};
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    TEST_OK(kelp_optimizer_create(kelp_ctx_backend(test_ctx()), &c,
                                  kelp_shape_numel(&kelp_graph_params(r.g)->shape), &r.opt));
    return r;
}

static void stop(run *r)
{
    kelp_optimizer_destroy(r->opt);
    kelp_graph_destroy(r->g);
}

/* One step on batch `k` of a fixed stream; returns the loss. */
static float step(run *r, int k)
{
    test_fill_graph_inputs(r->g, 4, 1000 + (uint64_t)k);
    TEST_OK(kelp_graph_forward(r->g));
    float loss;
    TEST_OK(kelp_graph_loss(r->g, &loss));
    TEST_OK(kelp_graph_zero_grad(r->g));
    TEST_OK(kelp_graph_backward(r->g));
    TEST_OK(kelp_optimizer_step(r->opt, 0.01f, kelp_graph_params(r->g)->data, kelp_graph_grads(r->g)->data, NULL, 0));
    return loss;
}

static void test_resume_is_exact(void **state)
{
    (void)state;
    const char *path = test_temp_path(".ckpt");
    float straight[10], resumed[10];
    run a = start();
    for (int k = 0; k < 10; k++) {
        straight[k] = step(&a, k);
        if (k == 4) {
            kelp_train_state st = {.epoch = 1, .next_batch = 5, .optimizer_steps = kelp_optimizer_step_count(a.opt),
                                   .graph_step = kelp_graph_step(a.g), .best_metric = 0.5, .best_epoch = 0};
            TEST_OK(kelp_checkpoint_save(path, a.g, a.opt, &st, "{\"lr\":0.01}"));
        }
    }
    stop(&a);

    run b = start();
    kelp_train_state st;
    char *config = NULL;
    TEST_OK(kelp_checkpoint_load(path, b.g, b.opt, &st, &config));
    assert_int_equal(st.epoch, 1);
    assert_int_equal(st.next_batch, 5);
    assert_int_equal(st.optimizer_steps, 5);
    assert_int_equal(kelp_optimizer_step_count(b.opt), 5);
    assert_true(st.best_metric == 0.5);
    assert_string_equal(config, "{\"lr\":0.01}");
    free(config);
    for (int k = 5; k < 10; k++)
        resumed[k] = step(&b, k);
    for (int k = 5; k < 10; k++)
        if (resumed[k] != straight[k])
            fail_msg("step %d: resumed loss %.9g, uninterrupted %.9g", k, resumed[k], straight[k]);
    stop(&b);

    /* the model JSON travels with the checkpoint, and the file is also plain weights */
    char *json;
    TEST_OK(kelp_checkpoint_model(path, &json, NULL));
    kelp_graph *g = test_build(json, 1, false, false, false);
    TEST_OK(kelp_graph_load_weights(g, path, KELP_LOAD_STRICT));
    kelp_graph_destroy(g);
    free(json);
    remove(path);
}

static void test_refusals_leave_the_model_alone(void **state)
{
    (void)state;
    const char *path = test_temp_path(".ckpt");
    run a = start();
    step(&a, 0);
    kelp_train_state st = {.best_metric = -1};
    TEST_OK(kelp_checkpoint_save(path, a.g, a.opt, &st, NULL));

    /* an SGD-with-momentum run cannot resume an AdamW checkpoint */
    kelp_graph *g = test_build(model, 4, true, true, false);
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    c.momentum = 0.9f;
    kelp_optimizer *sgd;
    TEST_OK(kelp_optimizer_create(kelp_ctx_backend(test_ctx()), &c, kelp_shape_numel(&kelp_graph_params(g)->shape),
                                  &sgd));
    size_t bytes = kelp_tensor_bytes(kelp_graph_params(g));
    float *before = malloc(bytes);
    memcpy(before, kelp_graph_params(g)->data, bytes);
    TEST_FAILS_WITH(kelp_checkpoint_load(path, g, sgd, NULL, NULL), KELP_ERR_FORMAT, "another optimizer");
    assert_memory_equal(before, kelp_graph_params(g)->data, bytes);

    /* plain weights are not a checkpoint */
    const char *weights = test_temp_path(".safetensors");
    TEST_OK(kelp_graph_save_weights(a.g, weights));
    TEST_FAILS_WITH(kelp_checkpoint_load(weights, g, NULL, NULL, NULL), KELP_ERR_FORMAT, "not a kelp checkpoint");
    char *json = NULL;
    TEST_FAILS_WITH(kelp_checkpoint_model(weights, &json, NULL), KELP_ERR_FORMAT, "not a kelp checkpoint");
    assert_memory_equal(before, kelp_graph_params(g)->data, bytes);

    free(before);
    kelp_optimizer_destroy(sgd);
    kelp_graph_destroy(g);
    stop(&a);
    remove(path);
    remove(weights);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_refusals_leave_the_model_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
