/* End to end on the CPU: graph + loss + optimizer + schedule + clipping drive a small network to memorize a fixed
 * batch (loss below 0.01) with each optimizer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/graph_internal.h"
#include "engine/lr_schedule.h"
#include "engine/optimizer.h"
#include "ref/graph_util.h"

static const char *model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[8,8,3]}],"
    "\"nodes\":["
    "{\"name\":\"conv1\",\"type\":\"conv2d\",\"out_channels\":16,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn1\",\"type\":\"batch_norm\"},{\"name\":\"relu1\",\"type\":\"relu\"},"
    "{\"name\":\"conv2\",\"type\":\"conv2d\",\"out_channels\":16,\"kernel_size\":3,\"stride\":2,\"padding\":1},"
    "{\"name\":\"bn2\",\"type\":\"batch_norm\"},{\"name\":\"relu2\",\"type\":\"silu\"},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},"
    "{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":4}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

/* Trains for at most `steps` and returns the last loss. */
static float train(const kelp_optimizer_config *config, const char *schedule, double lr, int steps)
{
    kelp_graph *g = test_build(model, 8, true, true, false);
    test_fill_graph_inputs(g, 4, 2024);
    int64_t n = kelp_shape_numel(&kelp_graph_params(g)->shape);
    kelp_optimizer *opt;
    TEST_OK(kelp_optimizer_create(kelp_ctx_backend(test_ctx()), config, n, &opt));
    kelp_lr_schedule sched;
    TEST_OK(kelp_lr_schedule_parse_cli(schedule, lr, steps, &sched));
    float loss = INFINITY, first = 0;
    for (int step = 0; step < steps && loss >= 0.01f; step++) {
        TEST_OK(kelp_graph_forward(g));
        TEST_OK(kelp_graph_loss(g, &loss));
        if (step == 0)
            first = loss;
        TEST_OK(kelp_graph_zero_grad(g));
        TEST_OK(kelp_graph_backward(g));
        double norm;
        TEST_OK(kelp_clip_grad_norm(kelp_ctx_backend(test_ctx()), kelp_graph_grads(g)->data, n, NULL, 0, 5.0, &norm));
        TEST_OK(kelp_optimizer_step(opt, (float)kelp_lr_at(&sched, step), kelp_graph_params(g)->data,
                                    kelp_graph_grads(g)->data, NULL, 0));
    }
    print_message("%s (%s): loss %.4f -> %.5f\n", kelp_optimizer_kind_name(config->kind), schedule, first, loss);
    assert_true(first > 1.0f);
    kelp_optimizer_destroy(opt);
    kelp_graph_destroy(g);
    return loss;
}

static void test_sgd_momentum(void **state)
{
    (void)state;
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    c.momentum = 0.9f;
    c.weight_decay = 1e-4f;
    assert_true(train(&c, "warmup:5:0.1+cosine", 0.05, 400) < 0.01f);
}

static void test_sgd_nesterov(void **state)
{
    (void)state;
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    c.momentum = 0.9f;
    c.nesterov = true;
    assert_true(train(&c, "multistep:300,350:0.5", 0.05, 400) < 0.01f);
}

static void test_sgd_plain(void **state)
{
    (void)state;
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    assert_true(train(&c, "constant", 0.5, 600) < 0.01f);
}

static void test_adamw(void **state)
{
    (void)state;
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    assert_true(train(&c, "warmup:10:0.1+step:200:0.5", 0.01, 400) < 0.01f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_adamw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
