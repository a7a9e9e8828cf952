/* A training step queued as one unit (engine/train_step.c): forward, backward, the finite check, clipping and the
 * optimizer's update reading their scalars from backend memory. It computes bit for bit what the separate calls
 * compute (kelp_graph_forward_backward, kelp_unscale_grads, kelp_clip_grad_norm, kelp_optimizer_step), for SGD and
 * AdamW, with changing loss scales and learning rates; a step whose loss (or checked gradients) is not finite moves
 * nothing, not even the optimizer's state or step count; frozen ranges stay; the step check's rules hold on their
 * own. That the update is inside a recorded step is test_graph_replay's; that a GPU replays it, test_cuda_ops'. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/train_step.h"
#include "kernels/ops/optim.h"
#include "ref/graph_util.h"

static const char *const model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,6,2]}],\"nodes\":["
    "{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn\",\"type\":\"batch_norm\"},{\"name\":\"relu\",\"type\":\"relu\"},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":3}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

#define N_PARAMS (4 * 3 * 3 * 2 + 4 + 4 + 4 + 3 * 4 + 3) /* conv, bn, fc */
#define FC_OFFSET (N_PARAMS - 3 * 4 - 3)

static void read_params(kelp_graph *g, float *out)
{
    TEST_OK(kelp_tensor_download(kelp_graph_params(g), out, N_PARAMS * sizeof(float)));
}

/* b starts from a's parameters */
static void copy_params(kelp_graph *a, kelp_graph *b)
{
    float p[N_PARAMS];
    read_params(a, p);
    TEST_OK(kelp_tensor_upload(kelp_graph_params(b), p, sizeof p));
}

static void read_state(kelp_optimizer *opt, float *out)
{
    for (int i = 0; i < kelp_optimizer_state_count(opt); i++) {
        const char *name;
        kelp_tensor t;
        TEST_OK(kelp_optimizer_state(opt, i, &name, &t));
        TEST_OK(kelp_tensor_download(&t, out + i * N_PARAMS, N_PARAMS * sizeof(float)));
    }
}

static kelp_optimizer *make_optimizer(kelp_optimizer_kind kind)
{
    kelp_optimizer_config c = kelp_optimizer_defaults(kind);
    c.momentum = kind == KELP_OPTIM_SGD ? 0.9f : 0.0f;
    c.weight_decay = 1e-2f;
    kelp_optimizer *opt;
    TEST_OK(kelp_optimizer_create(kelp_ctx_backend(test_ctx()), &c, N_PARAMS, &opt));
    return opt;
}

/* What the trainer did before the step was one unit: each part a call of its own. */
static void separate_step(kelp_graph *g, kelp_optimizer *opt, float lr, float scale, double clip, float *loss,
                          double *norm)
{
    kelp_backend *be = kelp_ctx_backend(test_ctx());
    float *grads = kelp_graph_grads(g)->data;
    TEST_OK(kelp_graph_set_loss_scale(g, scale));
    TEST_OK(kelp_graph_forward_backward(g));
    TEST_OK(kelp_graph_loss(g, loss));
    bool finite;
    TEST_OK(kelp_unscale_grads(be, grads, N_PARAMS, NULL, 0, (float)(1.0 / scale), &finite));
    assert_true(finite);
    TEST_OK(kelp_clip_grad_norm(be, grads, N_PARAMS, NULL, 0, clip, norm));
    TEST_OK(kelp_optimizer_step(opt, lr, kelp_graph_params(g)->data, grads, NULL, 0));
}

static void check_matches_separate_calls(kelp_optimizer_kind kind)
{
    kelp_graph *a = test_build(model, 4, true, true, false), *b = test_build(model, 4, true, true, false);
    copy_params(a, b);
    kelp_optimizer *opt_a = make_optimizer(kind), *opt_b = make_optimizer(kind);
    const double clip = 0.5; /* below the first steps' norms: clipping scales them */
    kelp_train_step_config c = {.loss_scale = true, .clip_norm = clip};
    kelp_train_step *t;
    TEST_OK(kelp_train_step_create(b, opt_b, &c, &t));
    const float scales[] = {8.0f, 8.0f, 2.0f, 1.0f, 1024.0f};
    bool clipped = false;
    for (int i = 0; i < 5; i++) {
        float lr = 0.1f / (float)(i + 1), loss;
        double norm;
        test_fill_graph_inputs(a, 3, 40 + (uint64_t)i);
        test_fill_graph_inputs(b, 3, 40 + (uint64_t)i);
        separate_step(a, opt_a, lr, scales[i], clip, &loss, &norm);
        kelp_train_step_result r;
        TEST_OK(kelp_train_step_run(t, lr, scales[i], &r));
        assert_true(r.applied);
        assert_true(r.loss == loss);
        if (r.grad_norm != norm)
            fail_msg("step %d: gradient norm %.17g, separately %.17g", i, r.grad_norm, norm);
        clipped |= norm > clip;
        float want[N_PARAMS], got[N_PARAMS];
        read_params(a, want);
        read_params(b, got);
        test_assert_close_f(got, want, N_PARAMS, 0, 0, "parameters after the step");
    }
    assert_true(clipped);
    float want[2 * N_PARAMS], got[2 * N_PARAMS];
    read_state(opt_a, want);
    read_state(opt_b, got);
    test_assert_close_f(got, want, (size_t)kelp_optimizer_state_count(opt_a) * N_PARAMS, 0, 0, "optimizer state");
    assert_int_equal(kelp_optimizer_step_count(opt_b), 5);
    kelp_train_step_destroy(t);
    kelp_optimizer_destroy(opt_a);
    kelp_optimizer_destroy(opt_b);
    kelp_graph_destroy(a);
    kelp_graph_destroy(b);
}

static void test_matches_the_separate_calls(void **state)
{
    (void)state;
    check_matches_separate_calls(KELP_OPTIM_SGD);
    check_matches_separate_calls(KELP_OPTIM_ADAMW);
}

/* A NaN pixel makes the loss NaN: with or without the gradient check, the step moves no parameter, no optimizer
 * state and no step count, and says so; the next good batch steps as usual. */
static void test_a_non_finite_loss_moves_nothing(void **state)
{
    (void)state;
    for (int checks = 0; checks < 2; checks++) {
        kelp_graph *g = test_build(model, 4, true, true, false);
        kelp_optimizer *opt = make_optimizer(KELP_OPTIM_SGD);
        kelp_train_step_config c = {.loss_scale = checks, .clip_norm = checks ? 1.0 : 0.0};
        kelp_train_step *t;
        TEST_OK(kelp_train_step_create(g, opt, &c, &t));
        kelp_train_step_result r;
        test_fill_graph_inputs(g, 3, 1);
        TEST_OK(kelp_train_step_run(t, 0.1f, 4.0f, &r));
        assert_true(r.applied);
        float before[N_PARAMS], after[N_PARAMS], state_before[N_PARAMS], state_after[N_PARAMS];
        read_params(g, before);
        read_state(opt, state_before);

        test_fill_graph_inputs(g, 3, 2);
        kelp_tensor *x = kelp_graph_input(g, 0);
        float pixels[4 * 6 * 6 * 2];
        assert_int_equal(kelp_tensor_bytes(x), sizeof pixels);
        TEST_OK(kelp_tensor_download(x, pixels, sizeof pixels));
        pixels[7] = NAN;
        TEST_OK(kelp_tensor_upload(x, pixels, sizeof pixels));
        TEST_OK(kelp_train_step_run(t, 0.1f, 4.0f, &r));
        assert_false(r.applied);
        assert_true(isnan(r.loss));
        read_params(g, after);
        read_state(opt, state_after);
        assert_memory_equal(after, before, sizeof before);
        assert_memory_equal(state_after, state_before, sizeof state_before);
        assert_int_equal(kelp_optimizer_step_count(opt), 1);

        test_fill_graph_inputs(g, 3, 3);
        TEST_OK(kelp_train_step_run(t, 0.1f, 4.0f, &r));
        assert_true(r.applied && isfinite(r.loss));
        assert_int_equal(kelp_optimizer_step_count(opt), 2);
        kelp_train_step_destroy(t);
        kelp_optimizer_destroy(opt);
        kelp_graph_destroy(g);
    }
}

/* Only the segments move; the norm is over them alone. */
static void test_frozen_ranges_stay(void **state)
{
    (void)state;
    kelp_graph *g = test_build(model, 4, true, true, false);
    kelp_optimizer *opt = make_optimizer(KELP_OPTIM_ADAMW);
    kelp_param_segment fc = {FC_OFFSET, N_PARAMS - FC_OFFSET};
    kelp_train_step_config c = {.segments = &fc, .n_segments = 1, .clip_norm = 100.0};
    kelp_train_step *t;
    TEST_OK(kelp_train_step_create(g, opt, &c, &t));
    fc.offset = 0; /* the step keeps its own copy */
    float before[N_PARAMS], after[N_PARAMS], grads[N_PARAMS];
    read_params(g, before);
    test_fill_graph_inputs(g, 3, 5);
    kelp_train_step_result r;
    TEST_OK(kelp_train_step_run(t, 0.1f, 1.0f, &r));
    read_params(g, after);
    TEST_OK(kelp_tensor_download(kelp_graph_grads(g), grads, sizeof grads));
    assert_memory_equal(after, before, FC_OFFSET * sizeof(float));
    double sum = 0;
    for (int i = FC_OFFSET; i < N_PARAMS; i++) {
        assert_true(after[i] != before[i]);
        sum += (double)grads[i] * grads[i];
    }
    if (!(fabs(r.grad_norm - sqrt(sum)) <= 1e-12 * sqrt(sum)))
        fail_msg("norm %.17g over the trainable range, want %.17g", r.grad_norm, sqrt(sum));
    kelp_train_step_destroy(t);
    kelp_optimizer_destroy(opt);
    kelp_graph_destroy(g);
}

static void test_refused_configurations(void **state)
{
    (void)state;
    kelp_graph *g = test_build(model, 4, true, true, false);
    kelp_graph *no_loss = test_build(model, 4, true, false, false);
    kelp_optimizer *opt = make_optimizer(KELP_OPTIM_SGD);
    kelp_train_step *t = NULL;
    kelp_train_step_config c = {.clip_norm = -1.0};
    TEST_FAILS_WITH(kelp_train_step_create(g, opt, &c, &t), KELP_ERR_INVALID_ARG, "clip norm -1");
    c.clip_norm = NAN;
    TEST_FAILS_WITH(kelp_train_step_create(g, opt, &c, &t), KELP_ERR_INVALID_ARG, "clip norm");
    c = (kelp_train_step_config){.n_segments = 2};
    TEST_FAILS_WITH(kelp_train_step_create(g, opt, &c, &t), KELP_ERR_INVALID_ARG, "2 segments given as NULL");
    kelp_param_segment past_the_end = {N_PARAMS - 2, 3};
    c = (kelp_train_step_config){.segments = &past_the_end, .n_segments = 1};
    TEST_FAILS_WITH(kelp_train_step_create(g, opt, &c, &t), KELP_ERR_INVALID_ARG, "outside the");
    c = (kelp_train_step_config){0};
    TEST_FAILS_WITH(kelp_train_step_create(no_loss, opt, &c, &t), KELP_ERR_INVALID_ARG, "no loss");
    kelp_optimizer *other;
    kelp_optimizer_config sgd = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    TEST_OK(kelp_optimizer_create(kelp_ctx_backend(test_ctx()), &sgd, N_PARAMS + 1, &other));
    TEST_FAILS_WITH(kelp_train_step_create(g, other, &c, &t), KELP_ERR_INVALID_ARG, "the graph has");
    kelp_optimizer_destroy(other);
    assert_null(t);
    c.loss_scale = true;
    TEST_OK(kelp_train_step_create(g, opt, &c, &t));
    kelp_train_step_result r;
    test_fill_graph_inputs(g, 3, 9);
    TEST_FAILS_WITH(kelp_train_step_run(t, NAN, 1.0f, &r), KELP_ERR_INVALID_ARG, "learning rate");
    TEST_FAILS_WITH(kelp_train_step_run(t, 0.1f, 1e-39f, &r), KELP_ERR_INVALID_ARG, "no finite inverse");
    TEST_FAILS_WITH(kelp_train_step_run(t, 0.1f, -2.0f, &r), KELP_ERR_INVALID_ARG, "loss scale");
    assert_int_equal(kelp_optimizer_step_count(opt), 0);
    kelp_train_step_destroy(t);
    kelp_optimizer_destroy(opt);
    kelp_graph_destroy(no_loss);
    kelp_graph_destroy(g);
}

/* The check on its own (kernels/ops/optim.h, the CPU backend's step_check): the loss and, when checked, the sum of
 * squares decide the skip; the norm is of the unscaled gradients; clipping only ever scales down. */
static void test_step_check_rules(void **state)
{
    (void)state;
    kelp_backend *be = kelp_ctx_backend(test_ctx());
    float loss = 2.0f;
    kelp_step_ctl c = {.inv_scale = 0.25f, .max_norm = 3.0, .check_grads = 1, .sum_sq = 400.0};
    TEST_OK(be->iface->step_check(be, &loss, &c));
    assert_false(c.skip);
    assert_true(c.loss == 2.0f && c.norm == 5.0);
    assert_true(c.clip_coef == (float)(3.0 / (5.0 + 1e-6)));
    c.max_norm = 6.0;
    TEST_OK(be->iface->step_check(be, &loss, &c));
    assert_true(c.clip_coef == 1.0f);
    c.sum_sq = INFINITY;
    TEST_OK(be->iface->step_check(be, &loss, &c));
    assert_true(c.skip && c.clip_coef == 1.0f);
    c.check_grads = 0; /* not summed: not checked */
    TEST_OK(be->iface->step_check(be, &loss, &c));
    assert_true(!c.skip && c.norm == 0.0);
    loss = INFINITY;
    TEST_OK(be->iface->step_check(be, &loss, &c));
    assert_true(c.skip);
    TEST_OK(be->iface->step_check(be, NULL, &c));
    assert_true(!c.skip && c.loss == 0.0f);

    /* a skipped step leaves parameters and state alone; an applied one uses the unscaled, clipped gradient */
    float param = 1.0f, grad = 8.0f, buf = 0.5f;
    kelp_sgd_params p = {.momentum = 0.5f};
    c = (kelp_step_ctl){.lr = 0.1f, .inv_scale = 0.5f, .clip_coef = 0.5f, .skip = 1};
    TEST_OK(be->iface->sgd_step(be, 1, &p, &c, &param, &grad, &buf));
    assert_true(param == 1.0f && buf == 0.5f);
    c.skip = 0;
    TEST_OK(be->iface->sgd_step(be, 1, &p, &c, &param, &grad, &buf));
    assert_true(buf == 0.5f * 0.5f + 2.0f);
    assert_true(param == 1.0f - 0.1f * buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_the_separate_calls),
        cmocka_unit_test(test_a_non_finite_loss_moves_nothing),
        cmocka_unit_test(test_frozen_ranges_stay),
        cmocka_unit_test(test_refused_configurations),
        cmocka_unit_test(test_step_check_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
